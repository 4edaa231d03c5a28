//! `apply`: pull first, recreate only what changed, wait for health, restore on failure.
mod common;
use common::*;

fn web(image: &str, port: u16, extra: &str) -> String {
    format!("services:\n  web:\n    image: {image}\n    ports: [\"127.0.0.1:{port}:80\"]\n    environment:\n      LOG_LEVEL: info\n{HEALTHCHECK}    x-reconciler: {{health_timeout: 20s}}\n{extra}")
}

fn worker(image: &str) -> String {
    format!("  worker:\n    image: {image}\n    x-reconciler: {{min_ready: 1s}}\n")
}

#[test]
fn apply_pulls_creates_and_serves_then_changes_nothing_on_a_second_run() {
    let env = TestEnv::new("applycreate");
    let image = env.registry.push(WEB_V1, "web:v1");
    let port = free_port();
    env.write("compose.yaml", &web(&image, port, ""));
    let run = env.apply_ok();
    assert!(run.stderr.contains(&format!("pulling {image}")), "{run}");
    assert_eq!(
        http_get(&format!("127.0.0.1:{port}"), "/").as_deref(),
        Some("v1\n")
    );
    let id = env.container_id("web");
    let again = env.apply_ok();
    assert!(
        again.stdout.contains("= web") && again.stdout.contains("0 services changed"),
        "{again}"
    );
    assert_eq!(env.container_id("web"), id);
    // docker-compose 1.29 sees our containers as its own.
    assert!(env
        .compose("ps")
        .contains(&format!("{}-web-1", env.project())));
}

#[test]
fn a_one_tag_change_recreates_that_service_only() {
    let env = TestEnv::new("applytag");
    let (v1, v2) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(WEB_V2, "web:v2"),
    );
    let port = free_port();
    env.write("compose.yaml", &web(&v1, port, &worker(&v1)));
    env.apply_ok();
    let (web_id, worker_id) = (env.container_id("web"), env.container_id("worker"));
    env.write("compose.yaml", &web(&v2, port, &worker(&v1)));
    env.apply_ok();
    assert_ne!(env.container_id("web"), web_id);
    assert_eq!(
        env.container_id("worker"),
        worker_id,
        "worker did not change and must not be touched"
    );
    assert_eq!(
        http_get(&format!("127.0.0.1:{port}"), "/").as_deref(),
        Some("v2\n")
    );
    assert_eq!(
        env.containers().len(),
        2,
        "no leftover containers: {:?}",
        env.containers()
    );
}

#[test]
fn an_env_only_change_recreates_the_container_so_the_new_value_is_applied() {
    let env = TestEnv::new("applyenv");
    let v1 = env.registry.push(WEB_V1, "web:v1");
    let port = free_port();
    env.write("compose.yaml", &web(&v1, port, ""));
    env.apply_ok();
    let id = env.container_id("web");
    env.write(
        "compose.yaml",
        &web(&v1, port, "").replace("LOG_LEVEL: info", "LOG_LEVEL: debug"),
    );
    env.apply_ok();
    let new_id = env.container_id("web");
    assert_ne!(
        new_id, id,
        "an env change must recreate, never just restart"
    );
    let (_, env_now) = sh(&format!(
        "docker inspect -f '{{{{json .Config.Env}}}}' {new_id}"
    ));
    assert!(env_now.contains("LOG_LEVEL=debug"), "{env_now}");
}

#[test]
fn apply_keeps_old_container_when_new_one_is_unhealthy() {
    let env = TestEnv::new("applyunhealthy");
    let (v1, bad) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(UNHEALTHY, "web:broken"),
    );
    let port = free_port();
    env.write("compose.yaml", &web(&v1, port, ""));
    env.apply_ok();
    env.write("compose.yaml", &web(&bad, port, ""));
    let run = env.run("apply", &[]);
    assert_eq!(run.code, 1, "{run}");
    assert!(
        run.stderr.contains("unhealthy") || run.stderr.contains("not healthy"),
        "{run}"
    );
    assert!(
        run.stderr.contains("last log lines") && run.stderr.contains("web broken starting"),
        "log tail shown:\n{run}"
    );
    // The old version is back and serving; nothing else is left behind.
    assert_eq!(
        http_get(&format!("127.0.0.1:{port}"), "/").as_deref(),
        Some("v1\n")
    );
    let containers = env.containers();
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert!(
        containers[0].2.ends_with("web:v1") && containers[0].3 == "running",
        "{containers:?}"
    );
    // The broken release is not tried again.
    let again = env.run("apply", &[]);
    assert_eq!(again.code, 1, "{again}");
    assert!(
        again.stdout.contains("! web: failed") && !again.stderr.contains("creating"),
        "{again}"
    );
    let history = env.reconciler(&["history", "-o", "json"]);
    assert!(
        history.stdout.contains("\"result\": \"failed\""),
        "{history}"
    );
}

#[test]
fn a_new_container_that_exits_fails_fast_and_the_old_one_returns() {
    let env = TestEnv::new("applycrash");
    let (v1, crasher) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(CRASHER, "web:crash"),
    );
    let port = free_port();
    env.write("compose.yaml", &web(&v1, port, ""));
    env.apply_ok();
    env.write(
        "compose.yaml",
        &web(&crasher, port, "").replace("health_timeout: 20s", "health_timeout: 120s"),
    );
    let started = std::time::Instant::now();
    let run = env.run("apply", &[]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("exited with code 1"), "{run}");
    assert!(run.stderr.contains("cannot open database"), "{run}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "did not wait for the 120s timeout"
    );
    assert_eq!(
        http_get(&format!("127.0.0.1:{port}"), "/").as_deref(),
        Some("v1\n")
    );
}

#[test]
fn a_missing_tag_fails_the_pull_and_touches_nothing() {
    let env = TestEnv::new("applynotag");
    let v1 = env.registry.push(WEB_V1, "web:v1");
    let port = free_port();
    env.write("compose.yaml", &web(&v1, port, &worker(&v1)));
    env.apply_ok();
    let before = env.containers();
    // web's tag does not exist; worker changes too but must not be touched either.
    let missing = format!("{}/web:v404", env.registry.addr);
    env.write(
        "compose.yaml",
        &web(
            &missing,
            port,
            &worker(&v1).replace("min_ready: 1s", "min_ready: 2s"),
        )
        .replace("LOG_LEVEL: info", "LOG_LEVEL: x"),
    );
    let run = env.run("apply", &[]);
    assert_eq!(run.code, 1, "{run}");
    assert!(
        run.stderr.contains("not found") && run.stderr.contains("nothing was changed"),
        "{run}"
    );
    assert_eq!(env.containers(), before);
}

#[test]
fn a_registry_that_is_down_fails_the_pull_and_touches_nothing() {
    let mut env = TestEnv::new("applyregdown");
    let (v1, v2) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(WEB_V2, "web:v2"),
    );
    let port = free_port();
    env.write("compose.yaml", &web(&v1, port, ""));
    env.apply_ok();
    let before = env.containers();
    env.registry.stop();
    env.write("compose.yaml", &web(&v2, port, ""));
    let run = env.run("apply", &[]);
    assert_eq!(run.code, 2, "a transient error: {run}");
    assert!(run.stderr.contains("nothing was changed"), "{run}");
    assert_eq!(env.containers(), before);
    // Transient: not recorded as a failed release, so it converges once the registry is back.
    env.registry.restart();
    env.apply_ok();
    assert_eq!(
        http_get(&format!("127.0.0.1:{port}"), "/").as_deref(),
        Some("v2\n")
    );
}

#[test]
fn dry_run_prints_the_plan_and_touches_nothing() {
    let env = TestEnv::new("applydry");
    let v1 = env.registry.push(WEB_V1, "web:v1");
    env.write("compose.yaml", &web(&v1, free_port(), ""));
    let run = env.run("apply", &["--dry-run"]);
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stdout.contains("+ web: create") && run.stdout.contains("nothing was changed"),
        "{run}"
    );
    assert!(env.containers().is_empty());
}

#[test]
fn a_stateless_service_is_replaced_start_first_so_it_never_stops_before_the_new_one_is_ready() {
    let env = TestEnv::new("applystartfirst");
    let (v1, v2) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(WEB_V2, "web:v2"),
    );
    env.write("compose.yaml", &format!("services:\n{}", worker(&v1)));
    env.apply_ok();
    env.write("compose.yaml", &format!("services:\n{}", worker(&v2)));
    let run = env.apply_ok();
    let create = run
        .stderr
        .find("reconciler-new")
        .expect("new container made under a temporary name");
    let stop = run.stderr.find("stopping").expect("old one stopped");
    assert!(
        create < stop,
        "start-first: new before old is stopped\n{run}"
    );
    assert_eq!(env.containers().len(), 1);
    assert!(env.containers()[0].2.ends_with("web:v2"));
}

#[test]
fn depends_on_service_healthy_starts_the_dependency_first_and_waits_for_it() {
    let env = TestEnv::new("applydeps");
    let v1 = env.registry.push(WEB_V1, "web:v1");
    env.write(
        "compose.yaml",
        &format!("services:\n  app:\n    image: {v1}\n    depends_on:\n      db: {{condition: service_healthy}}\n    x-reconciler: {{min_ready: 1s}}\n  db:\n    image: {v1}\n{HEALTHCHECK}"),
    );
    let run = env.apply_ok();
    let db_ready = run
        .stderr
        .find(&format!("{}/db: ready", env.project()))
        .expect("db ready");
    let app_created = run
        .stderr
        .find(&format!("{}/app: creating", env.project()))
        .expect("app created");
    assert!(db_ready < app_created, "{run}");
}

#[test]
fn pull_policy_always_recreates_when_the_tag_moves_in_the_registry() {
    let env = TestEnv::new("applyalways");
    let moving = env.registry.push(WEB_V1, "web:stable");
    let port = free_port();
    env.write(
        "compose.yaml",
        &web(&moving, port, "").replace("    ports:", "    pull_policy: always\n    ports:"),
    );
    env.apply_ok();
    assert_eq!(
        http_get(&format!("127.0.0.1:{port}"), "/").as_deref(),
        Some("v1\n")
    );
    let in_sync = env.run("diff", &[]);
    assert_eq!(in_sync.code, 0, "same digest, no drift:\n{in_sync}");
    // The same tag now points at v2.
    env.registry.push(WEB_V2, "web:stable");
    let diff = env.run("diff", &[]);
    assert_eq!(diff.code, 1, "{diff}");
    assert!(diff.stdout.contains("image digest"), "{diff}");
    env.apply_ok();
    assert_eq!(
        http_get(&format!("127.0.0.1:{port}"), "/").as_deref(),
        Some("v2\n")
    );
}
