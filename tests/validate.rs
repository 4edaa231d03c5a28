//! `validate`: every problem names file, line and key; no Docker needed; exit 0 / 2.
mod common;

use common::validate_offline;

fn validate(repo: &std::path::Path) -> (i32, String) {
    // A Docker host that does not exist: validate must not need the engine.
    let out = validate_offline(repo, std::path::Path::new("/nonexistent/state"), &[]);
    (out.code, out.combined())
}

fn stack(compose: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("web")).unwrap();
    std::fs::write(dir.path().join("web/compose.yaml"), compose).unwrap();
    dir
}

#[test]
fn the_shipped_example_is_valid_without_docker() {
    let (code, text) = validate(std::path::Path::new("desired-state"));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("valid: 1 stack, 3 services"), "{text}");
}

#[test]
fn a_misspelled_key_is_named_with_file_line_and_a_suggestion() {
    let repo = stack("services:\n  web:\n    imagee: web:v1\n");
    let (code, text) = validate(repo.path());
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains(
            "web/compose.yaml:3: services.web.imagee: unknown key 'imagee' (did you mean 'image'?)"
        ),
        "{text}"
    );
}

#[test]
fn build_is_refused_with_what_to_do_instead() {
    let repo = stack("services:\n  web:\n    build: .\n");
    let (code, text) = validate(repo.path());
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("web/compose.yaml:3: services.web.build:") && text.contains("registry"),
        "{text}"
    );
}

#[test]
fn yaml_broken_in_the_usual_ways_is_reported_with_its_line() {
    for (broken, line) in [
        ("services:\n  web:\n    image: a\n   ports: []\n", ":4:"),
        ("services:\n\tweb:\n    image: a\n", ":2:"),
        ("services:\n  web:\n    image: \"unterminated\n", ":3:"),
        ("services:\n  web:\n    image: a\n    image: b\n", ":4:"),
        ("services:\n  web: [a\n", ":"),
    ] {
        let repo = stack(broken);
        let (code, text) = validate(repo.path());
        assert_eq!(code, 2, "{broken}\n{text}");
        assert!(
            text.contains(&format!("web/compose.yaml{line}")),
            "{broken}\n{text}"
        );
    }
}

#[test]
fn yaml_syntax_errors_say_what_is_wrong_where_and_what_to_check() {
    for (broken, expected) in [
        (
            "services:\n  web:\n    image: a\n   ports: []\n",
            "web/compose.yaml:4: not valid YAML at column 9 (the line's text starts at column 4): this line does not fit the mapping it is in",
        ),
        (
            "services:\n  web:\n    command: echo a: b\n",
            "web/compose.yaml:3: not valid YAML at column 20 (the line's text starts at column 5): a ': ' here would start a mapping where one cannot start; quote a value that holds ': '",
        ),
        (
            "services:\n\tweb:\n    image: a\n",
            "web/compose.yaml:2: not valid YAML at column 2: a tab character is used where YAML allows only spaces",
        ),
    ] {
        let repo = stack(broken);
        let (code, text) = validate(repo.path());
        assert_eq!(code, 2, "{broken}\n{text}");
        assert!(text.contains(expected), "{broken}\nexpected: {expected}\n{text}");
        assert!(text.contains("(the parser said: "), "{text}");
    }
}

#[test]
fn a_misspelled_variable_is_named_where_it_is_used_with_the_one_that_is_set() {
    let repo = stack(
        "services:\n  web:\n    image: web:${WEB_TAGG}\n    environment: {MODE: \"${MODDE}\"}\n",
    );
    std::fs::write(repo.path().join("web/.env"), "WEB_TAG=v1\nMODE=fast\n").unwrap();
    let (code, text) = validate(repo.path());
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("web/compose.yaml:3: services.web.image: 'web:' is not an image reference: the tag after ':' is empty (it uses the variable 'WEB_TAGG' (did you mean 'WEB_TAG'?), which is not set and was replaced by an empty string)"),
        "{text}"
    );

    let repo =
        stack("services:\n  web:\n    image: web:v1\n    environment: {MODE: \"${MODDE}\"}\n");
    std::fs::write(repo.path().join("web/.env"), "MODE=fast\n").unwrap();
    let (code, text) = validate(repo.path());
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("warning: web/compose.yaml:4: services.web.environment.MODE: the variable 'MODDE' (did you mean 'MODE'?) is not set: it is replaced by an empty string"),
        "{text}"
    );
}

#[test]
fn a_required_variable_that_is_unset_is_an_error_naming_the_key() {
    let repo = stack("services:\n  web:\n    image: web:${TAG:?set TAG in .env}\n");
    let (code, text) = validate(repo.path());
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("web/compose.yaml:3: services.web.image:")
            && text.contains("set TAG in .env"),
        "{text}"
    );
}

#[test]
fn a_path_that_leaves_the_stack_folder_is_refused() {
    let repo = stack("services:\n  web:\n    image: web:v1\n    env_file: ../secrets.env\n");
    std::fs::write(repo.path().join("secrets.env"), "A=1\n").unwrap();
    let (code, text) = validate(repo.path());
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("leaves the stack folder"), "{text}");
}

#[test]
fn host_policy_refuses_the_docker_socket_and_privileged() {
    let repo = stack("services:\n  web:\n    image: web:v1\n    privileged: true\n    volumes:\n      - /var/run/docker.sock:/var/run/docker.sock\n");
    let (code, text) = validate(repo.path());
    assert_eq!(code, 2, "{text}");
    assert!(text.contains(":4: services.web.privileged"), "{text}");
    assert!(text.contains("Docker socket"), "{text}");
}
