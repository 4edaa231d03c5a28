//! `diff`: one line per service, changed fields, secrets masked, noise-free; exit 0 / 1 / 2.
mod common;
use common::*;

fn compose(image: &str, env: &str) -> String {
    format!("services:\n  web:\n    image: {image}\n    environment:\n{env}")
}

#[test]
fn an_in_sync_stack_shows_no_drift_whatever_the_spelling() {
    let env = TestEnv::new("diffsync");
    let image = env.registry.push(WEB_V1, "web:v1");
    env.write(
        "compose.yaml",
        &compose(&image, "      A: \"1\"\n      B: two\n"),
    );
    env.apply_ok();
    // Same content, other spelling: list form, other order.
    env.write(
        "compose.yaml",
        &format!("services:\n  web:\n    environment: [B=two, A=1]\n    image: {image}\n"),
    );
    let run = env.run("diff", &[]);
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("= web"), "{run}");
}

#[test]
fn a_tag_and_env_change_show_each_field_and_secrets_stay_hidden() {
    let env = TestEnv::new("difffields");
    let v1 = env.registry.push(WEB_V1, "web:v1");
    let v2 = env.registry.push(WEB_V2, "web:v2");
    env.write(
        "compose.yaml",
        &compose(
            &v1,
            "      LOG_LEVEL: info\n      DB_PASSWORD: first-secret-value\n      DSN: ${DSN}\n",
        ),
    );
    std::fs::create_dir_all(env.state.path().join("env")).unwrap();
    std::fs::write(
        env.state.path().join(format!("env/{}.env", env.project())),
        "DSN=pg://u:host-local-one@db\n",
    )
    .unwrap();
    env.apply_ok();
    env.write(
        "compose.yaml",
        &compose(
            &v2,
            "      LOG_LEVEL: debug\n      DB_PASSWORD: second-secret-value\n      DSN: ${DSN}\n",
        ),
    );
    std::fs::write(
        env.state.path().join(format!("env/{}.env", env.project())),
        "DSN=pg://u:host-local-two@db\n",
    )
    .unwrap();
    let run = env.run("diff", &[]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stdout.contains("~ web: update"), "{run}");
    assert!(run.stdout.contains(&format!("image {v1} -> {v2}")), "{run}");
    assert!(run.stdout.contains("env LOG_LEVEL info -> debug"), "{run}");
    assert!(
        run.stdout
            .contains("env DB_PASSWORD changed (value hidden)"),
        "{run}"
    );
    assert!(
        run.stdout.contains("env DSN changed (value hidden)"),
        "{run}"
    );
    let json = env.run("diff", &["-o", "json"]);
    assert_eq!(json.code, 1, "{json}");
    let plan: serde_json::Value = serde_json::from_str(&json.stdout).expect("diff -o json is JSON");
    assert_eq!(plan["stacks"][0]["services"][0]["action"], "update");
    for out in [&run.stdout, &run.stderr, &json.stdout] {
        for secret in [
            "first-secret-value",
            "second-secret-value",
            "host-local-one",
            "host-local-two",
        ] {
            assert!(!out.contains(secret), "secret {secret} leaked:\n{out}");
        }
    }
}

#[test]
fn a_new_service_is_a_create_and_an_unmanaged_leftover_is_only_reported() {
    let env = TestEnv::new("diffcreate");
    let image = env.registry.push(WEB_V1, "web:v1");
    env.write("compose.yaml", &compose(&image, "      A: \"1\"\n"));
    let run = env.run("diff", &[]);
    assert_eq!(run.code, 1, "{run}");
    assert!(
        run.stdout.contains(&format!("+ web: create {image}")),
        "{run}"
    );
}

#[test]
fn diff_fails_with_exit_2_when_the_engine_is_unreachable() {
    let env = TestEnv::new("diffnoengine");
    env.write("compose.yaml", "services:\n  web:\n    image: web:v1\n");
    let run = env.reconciler(&[
        "--docker-host",
        "unix:///nonexistent.sock",
        "diff",
        "--repo",
        env.repo.path().to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("nonexistent.sock"), "{run}");
}
