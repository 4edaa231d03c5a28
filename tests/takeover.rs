//! A stack first started by docker-compose is taken over without a restart and without losing
//! its named volumes, when the host says so (`--adopt`): `name:` is the pusher's to choose.
mod common;
use common::*;

#[test]
fn a_compose_started_stack_is_adopted_without_restart_and_keeps_its_volume_data() {
    let env = TestEnv::new("takeover");
    let (v1, v2) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(WEB_V2, "web:v2"),
    );
    let compose = |image: &str| {
        format!("services:\n  db:\n    image: {image}\n    environment:\n      MODE: primary\n    volumes:\n      - data:/data\n    x-reconciler: {{min_ready: 1s}}\nvolumes:\n  data:\n")
    };
    env.write("compose.yaml", &compose(&v1));
    env.compose("up -d");
    let id = env.containers()[0].1.clone();
    sh(&format!(
        "docker exec {id} sh -c 'echo precious > /data/file'"
    ));

    let diff = env.run("diff", &[]);
    assert_eq!(diff.code, 0, "image and env match, so no drift:\n{diff}");
    env.run("apply", &["--adopt", env.project()]).assert_code(0);
    assert_eq!(env.containers()[0].1, id, "adopting must not recreate");

    env.write("compose.yaml", &compose(&v2));
    env.apply_ok();
    let containers = env.containers();
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert_ne!(containers[0].1, id);
    let (_, data) = sh(&format!("docker exec {} cat /data/file", containers[0].1));
    assert_eq!(
        data.trim(),
        "precious",
        "the named volume and its data survive the takeover"
    );
}

#[test]
fn a_stack_naming_a_compose_project_it_was_not_given_touches_nothing() {
    let env = TestEnv::new("foreignproject");
    let (v1, v2) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(WEB_V2, "web:v2"),
    );
    let compose = |image: &str| {
        format!("services:\n  db:\n    image: {image}\n    volumes:\n      - data:/data\nvolumes:\n  data:\n")
    };
    // Someone else's project, started by hand with Compose.
    env.write("compose.yaml", &compose(&v1));
    env.compose("up -d");
    let id = env.containers()[0].1.clone();
    // A push that names it (here by its folder; `name:` does the same) with another image.
    env.write("compose.yaml", &compose(&v2));
    let out = env.run("apply", &[]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("did not create") && out.stderr.contains("--adopt"),
        "{out}"
    );
    let containers = env.containers();
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert_eq!(containers[0].1, id, "the foreign container is untouched");
    assert_eq!(containers[0].3, "running");
    // With the host's word, it is taken over.
    env.run("apply", &["--adopt", env.project()]).assert_code(0);
    assert_ne!(env.containers()[0].1, id);
}
