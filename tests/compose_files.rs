//! A stack made of several Compose files, as operators write them for `docker compose up`:
//! an override file, `extends`, `include` with its own `.env`, `profiles` and `build:` next to
//! `image:`. Applied against the real engine; the created containers are inspected.
mod common;
use common::*;

#[test]
fn override_extends_include_and_profiles_reach_the_containers() {
    let env = TestEnv::new("composefiles");
    let (v1, v2) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(WEB_V2, "web:v2"),
    );
    let worker = env.registry.push(WORKER, "worker:v1");
    let port = free_port();
    env.write(
        ".env",
        &format!("WEB_IMAGE={v1}\nWORKER_IMAGE={worker}\nLEVEL=${{BASE_LEVEL:-info}}\n"),
    );
    env.write(
        "compose.yaml",
        &format!(
            "include:\n  - jobs/compose.yaml\nservices:\n  web:\n    extends:\n      file: common.yaml\n      service: app\n    image: ${{WEB_IMAGE}}\n    build: ./web\n    ports: [\"127.0.0.1:{port}:80\"]\n{HEALTHCHECK}  debug:\n    image: ${{WEB_IMAGE}}\n    profiles: [debug]\n"
        ),
    );
    env.write(
        "common.yaml",
        "services:\n  app:\n    environment:\n      LEVEL: ${LEVEL}\n      ROLE: app\n    labels:\n      com.example.from: common\n",
    );
    // The override file swaps the image, as a host-specific override would.
    env.write(
        "compose.override.yaml",
        &format!("services:\n  web:\n    image: {v2}\n    environment:\n      ROLE: web\n"),
    );
    env.write("jobs/.env", "JOB_NAME=nightly\n");
    env.write(
        "jobs/compose.yaml",
        "services:\n  worker:\n    image: ${WORKER_IMAGE}\n    environment:\n      JOB: ${JOB_NAME}\n    x-reconciler: {min_ready: 1s}\n",
    );

    let out = env.apply_ok();
    assert!(
        out.stderr.contains("'build' is ignored"),
        "build next to image is said to be ignored:\n{out}"
    );
    let web = env.container("web");
    assert_eq!(web.image, v2, "the override file's image wins");
    assert_eq!(web.env_var("LEVEL").as_deref(), Some("info"));
    assert_eq!(web.env_var("ROLE").as_deref(), Some("web"));
    assert_eq!(web.label("com.example.from"), Some("common"));
    assert_eq!(
        http_get(&format!("127.0.0.1:{port}"), "/").as_deref(),
        Some("v2\n")
    );
    let worker_container = env.container("worker");
    assert_eq!(worker_container.env_var("JOB").as_deref(), Some("nightly"));
    assert!(
        env.try_container("debug").is_none(),
        "a service of an inactive profile is not deployed"
    );

    // Naming the profile deploys the service too.
    env.write(
        ".env",
        &format!("WEB_IMAGE={v1}\nWORKER_IMAGE={worker}\nCOMPOSE_PROFILES=debug\n"),
    );
    env.apply_ok();
    assert_eq!(env.container("debug").image, v1);
}
