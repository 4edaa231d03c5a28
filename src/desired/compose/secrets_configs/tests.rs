//! `secrets:` and `configs:`: each source kind and spelling lands in the model where Compose
//! mounts it, its content goes into the hash, and a secret's value is in no label, hash input
//! or message.

use crate::desired::compose::{convert, StackParts, Variables};
use crate::desired::error::Problem;
use crate::desired::load::DirFiles;
use crate::desired::model::*;
use crate::desired::yaml;
use crate::desired::{FileMount, FileSource};
use sha2::Digest as _;
use std::collections::BTreeSet;

/// A stack folder `web/` with the given files, converted with the given variables; the names
/// in `host_local` count as coming from the host-local env file.
fn convert_in(
    files: &[(&str, &str)],
    text: &str,
    vars: &[(&str, &str)],
    host_local: &[&str],
) -> Result<StackParts, Vec<Problem>> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("web");
    std::fs::create_dir_all(&dir).unwrap();
    for (rel, body) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    let variables = Variables {
        values: vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        host_local: host_local.iter().map(|k| k.to_string()).collect(),
    };
    let doc = yaml::parse(text).expect("the test's YAML parses");
    convert(
        &doc,
        "web/compose.yaml",
        "web",
        &variables,
        &DirFiles::new(&dir).unwrap(),
    )
}

fn web_in(files: &[(&str, &str)], text: &str, vars: &[(&str, &str)]) -> Service {
    match convert_in(files, text, vars, &[]) {
        Ok(mut parts) => parts.services.remove("web").expect("service web"),
        Err(problems) => panic!("expected a valid file, got {problems:#?}"),
    }
}

fn problems_in(files: &[(&str, &str)], text: &str, vars: &[(&str, &str)]) -> Vec<String> {
    match convert_in(files, text, vars, &[]) {
        Ok(_) => panic!("expected problems, the file was accepted:\n{text}"),
        Err(problems) => problems.iter().map(Problem::to_string).collect(),
    }
}

fn sha(text: &str) -> String {
    hex(&sha2::Sha256::digest(text.as_bytes()))
}

fn content_of(file: &FileMount) -> String {
    String::from_utf8(file.content().expect("written content").to_vec()).unwrap()
}

const FILE_SECRET: &str = "services:
  web:
    image: web:1
    secrets:
      - db_password
secrets:
  db_password:
    file: ./secrets/db.txt
";

#[test]
fn a_short_form_secret_from_a_repository_file_is_bound_under_run_secrets() {
    let web = web_in(&[("secrets/db.txt", "hunter22\n")], FILE_SECRET, &[]);
    let [secret] = web.spec.secrets.as_slice() else {
        panic!("{:?}", web.spec.secrets)
    };
    assert_eq!(secret.target, "/run/secrets/db_password");
    assert_eq!(secret.source, "db_password");
    assert!(secret.secret);
    let FileSource::Repository { path, digest } = &secret.from else {
        panic!("{:?}", secret.from)
    };
    assert_eq!(path, "secrets/db.txt");
    assert!(!digest.is_empty());
    assert_eq!(
        web.repo_binds,
        ["secrets/db.txt"],
        "written out with the revision"
    );
}

#[test]
fn the_long_form_sets_target_owner_and_mode_of_a_written_secret() {
    let text = "services:
  web:
    image: web:1
    secrets:
      - source: token
        target: api-token
        uid: \"1000\"
        gid: 1000
        mode: 0440
      - source: token
        target: /etc/app/token
        mode: \"400\"
      - source: token
        target: decimal
        mode: 288
secrets:
  token:
    environment: API_TOKEN
";
    let web = web_in(&[], text, &[("API_TOKEN", "t0k3n-value")]);
    let found: Vec<_> = web
        .spec
        .secrets
        .iter()
        .map(|s| (s.target.as_str(), s.uid, s.gid, s.mode))
        .collect();
    assert_eq!(
        found,
        [
            ("/etc/app/token", None, None, Some(0o400)),
            (
                "/run/secrets/api-token",
                Some(1000),
                Some(1000),
                Some(0o440)
            ),
            ("/run/secrets/decimal", None, None, Some(0o440)),
        ]
    );
    assert!(web
        .spec
        .secrets
        .iter()
        .all(|s| content_of(s) == "t0k3n-value"));
}

#[test]
fn configs_land_at_the_root_and_inline_content_is_interpolated() {
    let text = "services:
  web:
    image: web:1
    configs:
      - app
      - source: app
        target: etc/app.conf
      - source: nginx
        target: /etc/nginx/nginx.conf
configs:
  app:
    content: |
      level=${LEVEL}
  nginx:
    file: ./nginx.conf
";
    let web = web_in(
        &[("nginx.conf", "server {}\n")],
        text,
        &[("LEVEL", "debug")],
    );
    let targets: Vec<&str> = web.spec.configs.iter().map(|c| c.target.as_str()).collect();
    assert_eq!(targets, ["/app", "/etc/app.conf", "/etc/nginx/nginx.conf"]);
    assert_eq!(content_of(&web.spec.configs[0]), "level=debug\n");
    assert!(web.spec.configs.iter().all(|c| !c.secret), "plain configs");
    assert!(web.spec.secrets.is_empty());
    assert_eq!(
        web.spec_hash(),
        web.spec.hash(),
        "nothing secret: hashed as it is"
    );
}

#[test]
fn an_environment_secret_takes_the_host_local_value_and_unset_is_refused_as_compose_does() {
    let text = "services:
  web:
    image: web:1
    secrets: [db]
secrets:
  db:
    environment: DB_PASSWORD
";
    let parts = convert_in(&[], text, &[("DB_PASSWORD", "host-pw-1")], &["DB_PASSWORD"]).unwrap();
    let web = &parts.services["web"];
    assert_eq!(content_of(&web.spec.secrets[0]), "host-pw-1");
    let problems = problems_in(&[], text, &[]);
    assert_eq!(
        problems,
        ["web/compose.yaml:7: secrets.db.environment: environment variable 'DB_PASSWORD' required by secret 'db' is not set: set it in the stack's .env or in the host-local env file (<state-dir>/env/<stack>.env)"]
    );
}

#[test]
fn a_changed_secret_changes_the_hash_yet_no_label_or_hash_input_holds_it() {
    let text = "services:
  web:
    image: web:1
    secrets: [db]
    configs: [app]
secrets:
  db:
    environment: DB_PASS_VALUE
configs:
  app:
    content: \"token=${API_TOKEN}\"
";
    let value = |pw: &str, token: &str| {
        let mut web = convert_in(
            &[],
            text,
            &[("DB_PASS_VALUE", pw), ("API_TOKEN", token)],
            &[],
        )
        .unwrap()
        .services
        .remove("web")
        .unwrap();
        web.label_key = LabelKey::from_bytes([9; 32]);
        web
    };
    let first = value("pw-one-1234", "tok-one-1234");
    assert!(
        first.spec.configs[0].secret,
        "took a secret-looking variable"
    );
    assert_ne!(
        first.spec_hash(),
        value("pw-two-1234", "tok-one-1234").spec_hash()
    );
    assert_ne!(
        first.spec_hash(),
        value("pw-one-1234", "tok-two-1234").spec_hash()
    );
    assert_ne!(
        first.spec_hash(),
        first.spec.hash(),
        "an unkeyed hash is an oracle"
    );
    let label = first.label_spec().to_string();
    for leak in [
        "pw-one-1234".to_string(),
        "tok-one-1234".to_string(),
        sha("pw-one-1234")[..16].to_string(),
        sha("token=tok-one-1234")[..16].to_string(),
    ] {
        assert!(!label.contains(&leak), "{leak} in {label}");
    }
    assert!(label.contains("\"target\":\"/run/secrets/db\""), "{label}");
}

#[test]
fn a_secret_from_a_repository_variable_is_never_quoted_by_a_message() {
    let text = "services:
  web:
    image: web:1
    mem_limit: ${DB_PASS_VALUE}
    secrets: [db]
secrets:
  db:
    environment: DB_PASS_VALUE
";
    let problems = problems_in(&[], text, &[("DB_PASS_VALUE", "xyzzy-pw-99")]).join("\n");
    assert!(problems.contains("services.web.mem_limit"), "{problems}");
    assert!(!problems.contains("xyzzy-pw-99"), "{problems}");
}

#[test]
fn an_undeclared_secret_or_config_is_named_with_its_key_and_line() {
    let text = "services:
  web:
    image: web:1
    secrets:
      - db
    configs:
      - source: app
secrets:
  other:
    file: ./x
";
    let problems = problems_in(&[("x", "1")], text, &[]);
    assert_eq!(
        problems,
        [
            "web/compose.yaml:5: services.web.secrets[0]: secret 'db' is not declared under the top-level `secrets:`",
            "web/compose.yaml:7: services.web.configs[0]: config 'app' is not declared under the top-level `configs:`",
        ]
    );
}

#[test]
fn external_and_driver_secrets_are_swarm_objects_and_refused() {
    let text = "services:
  web:
    image: web:1
    secrets: [a, b]
    configs: [c]
secrets:
  a:
    external: true
  b:
    driver: vault
configs:
  c:
    external:
      name: shared
";
    let problems = problems_in(&[], text, &[]).join("\n");
    assert!(problems.contains("web/compose.yaml:8: secrets.a.external: an external secret is a Swarm object: Docker Compose has none on a single host; give the secret's `file:` or `environment:` instead"), "{problems}");
    assert!(
        problems.contains("web/compose.yaml:10: secrets.b.driver: 'driver' is Swarm's"),
        "{problems}"
    );
    assert!(
        problems.contains(
            "web/compose.yaml:13: configs.c.external: an external config is a Swarm object"
        ),
        "{problems}"
    );
    assert!(
        !problems.contains("not declared"),
        "one problem per cause: {problems}"
    );
}

#[test]
fn a_declaration_needs_exactly_one_source() {
    let text = "services:
  web:
    image: web:1
secrets:
  none: {}
  both:
    file: ./x
    environment: X
  inline:
    content: abc
";
    let problems = problems_in(&[("x", "1")], text, &[("X", "1")]).join("\n");
    assert!(
        problems
            .contains(":5: secrets.none: a secret needs exactly one of `file:` or `environment:`"),
        "{problems}"
    );
    assert!(
        problems.contains(":6: secrets.both: a secret needs exactly one of"),
        "{problems}"
    );
    assert!(
        problems.contains(":10: secrets.inline.content: unknown key 'content'"),
        "{problems}"
    );
    assert!(
        !problems.contains(":9: secrets.inline: a secret needs"),
        "{problems}"
    );
}

#[test]
fn owner_and_mode_of_a_bound_file_are_ignored_with_a_warning_and_the_name_too() {
    let text = "services:
  web:
    image: web:1
    secrets:
      - source: db
        mode: 0400
secrets:
  db:
    file: ./db.txt
    name: prod_db
";
    let parts = convert_in(&[("db.txt", "x")], text, &[], &[]).unwrap();
    let secret = &parts.services["web"].spec.secrets[0];
    assert_eq!(secret.mode, None);
    let warnings: Vec<String> = parts.warnings.iter().map(Problem::to_string).collect();
    assert!(
        warnings.iter().any(|w| w.contains(
            ":5: services.web.secrets[0]: uid, gid and mode are ignored for a secret from `file:`"
        )),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(":10: secrets.db.name: 'name' is ignored")),
        "{warnings:?}"
    );
}

#[test]
fn a_target_taken_twice_or_by_a_volume_is_refused() {
    let text = "services:
  web:
    image: web:1
    volumes:
      - ./conf:/app.conf:ro
    configs:
      - app
      - source: other
        target: /app.conf
    secrets:
      - source: db
        target: /run/secrets/x
      - source: db
        target: x
configs:
  app:
    content: a
  other:
    content: b
secrets:
  db:
    file: ./conf
";
    let problems = problems_in(&[("conf/a", "1")], text, &[]).join("\n");
    assert!(
        problems.contains(":8: services.web.configs[1]: '/app.conf' is already a mount target"),
        "{problems}"
    );
    assert!(
        problems
            .contains(":13: services.web.secrets[1]: '/run/secrets/x' is already a mount target"),
        "{problems}"
    );
}

#[test]
fn bad_modes_names_and_paths_are_refused() {
    let text = "services:
  web:
    image: web:1
    secrets:
      - source: db
        mode: 0999
      - source: db
        target: /a
        mode: 04755
secrets:
  db:
    environment: X
  ../up:
    file: ./x
  home:
    file: ~/db.txt
  out:
    file: ../outside.txt
";
    let problems = problems_in(&[("x", "1")], text, &[("X", "1")]).join("\n");
    for want in [
        ":6: services.web.secrets[0].mode: '0999' is not a file mode",
        ":9: services.web.secrets[1].mode: '04755' is not a file mode",
        ":13: secrets.../up: a secret name may hold only letters",
        ":16: secrets.home.file: paths starting with '~' are not supported",
        ":18: secrets.out.file: '../outside.txt' leaves the stack folder",
    ] {
        assert!(problems.contains(want), "no {want:?} in {problems}");
    }
}

#[test]
fn services_without_secrets_or_configs_hash_as_before() {
    let web = web_in(&[], "services:\n  web:\n    image: web:1\n", &[]);
    let json = serde_json::to_string(&web.spec).unwrap();
    assert!(
        !json.contains("secrets") && !json.contains("configs"),
        "{json}"
    );
    let none: BTreeSet<String> = BTreeSet::new();
    assert_eq!(web.secret_fields, none);
}

#[test]
fn a_secret_file_linked_out_of_the_stack_folder_or_a_fifo_is_refused_unread() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("web");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(tmp.path().join("host-only.txt"), "host-only-value").unwrap();
    std::os::unix::fs::symlink(tmp.path().join("host-only.txt"), dir.join("leak")).unwrap();
    let fifo = std::ffi::CString::new(dir.join("pipe").to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let text = "services:
  web:
    image: web:1
    secrets: [leak, pipe]
secrets:
  leak:
    file: ./leak
  pipe:
    file: ./pipe
";
    let doc = yaml::parse(text).unwrap();
    let files = DirFiles::new(&dir).unwrap();
    let problems = convert(
        &doc,
        "web/compose.yaml",
        "web",
        &Variables::default(),
        &files,
    )
    .err()
    .expect("refused");
    let problems: Vec<String> = problems.iter().map(Problem::to_string).collect();
    assert_eq!(
        problems,
        [
            "web/compose.yaml:7: secrets.leak.file: './leak' is a symlink that leaves the stack folder",
            "web/compose.yaml:9: secrets.pipe.file: './pipe' is a FIFO, not a regular file",
        ]
    );
}

#[test]
fn editing_a_repository_secret_file_changes_the_hash_but_not_the_label_in_the_clear() {
    let hash_with = |content: &str| {
        let mut web = web_in(&[("secrets/db.txt", content)], FILE_SECRET, &[]);
        web.label_key = LabelKey::from_bytes([5; 32]);
        (web.spec_hash(), web.label_spec().to_string())
    };
    let (first, label) = hash_with("hunter22\n");
    assert_ne!(first, hash_with("hunter23\n").0);
    assert!(!label.contains("hunter22"), "{label}");
    assert!(label.contains("\"path\":\"secrets/db.txt\""), "{label}");
    assert!(label.contains("\"digest\":\"hidden:"), "{label}");
}
