//! The loop as a controller: stacks and services converge concurrently without giving up any
//! per-service safety, a container removed by hand mid-flight is an ordinary case, and every
//! event can be shipped as JSON.
mod common;
use common::*;
use std::time::Duration;

fn web(image: &str, port: u16, timeout: &str, extra: &str) -> String {
    format!("services:\n  web:\n    image: {image}\n    ports: [\"127.0.0.1:{port}:80\"]\n{HEALTHCHECK}    x-reconciler: {{health_timeout: {timeout}}}\n{extra}")
}

/// A release that stays in health "starting" for its whole health timeout: its failed checks
/// fall in the start period, so only the timeout ends the wait.
fn stuck(image: &str, port: u16, timeout: &str) -> String {
    format!("services:\n  web:\n    image: {image}\n    ports: [\"127.0.0.1:{port}:80\"]\n{HEALTHCHECK}      start_period: 5m\n    x-reconciler: {{health_timeout: {timeout}}}\n")
}

#[test]
fn a_stack_whose_release_never_turns_healthy_does_not_delay_another_stack() {
    let env = TestEnv::new("headofline");
    let (broken, good) = (
        env.registry.push(UNHEALTHY, "broken:v1"),
        env.registry.push(WEB_V1, "web:v1"),
    );
    let (slow_port, good_port) = (free_port(), free_port());
    // The main stack sorts first, so a one-at-a-time executor would wait out its 20 s first.
    env.write_compose(&stuck(&broken, slow_port, "20s"));
    let other = env.extra_project("good");
    env.write_in(&other, "compose.yaml", &web(&good, good_port, "40s", ""));
    let repo = env.repo.path().to_str().unwrap().to_string();
    let apply = env.spawn_reconciler(&["apply", "--repo", &repo], &[]);
    wait_for("the good stack to serve", WAIT, || {
        http_get(&format!("127.0.0.1:{good_port}"), "/").as_deref() == Some("v1\n")
    });
    // Served while the broken release is still inside its health wait.
    assert!(
        !env.journal()
            .iter()
            .any(|e| e["stack"] == env.project() && e["result"] == "failed"),
        "the broken stack's failure was recorded before the good stack served"
    );
    let out = apply.wait(Duration::from_secs(90));
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout
            .contains(&format!("failed: {}/web", env.project())),
        "{out}"
    );
    assert!(
        out.stdout
            .contains("nothing ran before, so nothing runs now"),
        "a first deploy that fails has no last good version to speak of:\n{out}"
    );
    // Nothing of the failed stack is left, so neither is the network its pass created; the
    // good stack keeps its own.
    let failed_network = format!("{}_default", env.project());
    assert!(
        !docker(&["network", "inspect", &failed_network]).success(),
        "{failed_network} outlived the failed first deploy:\n{out}"
    );
    assert!(docker(&["network", "inspect", &format!("{other}_default")]).success());
}

/// When the journal recorded a service as proven (millisecond precision).
fn proven_at(env: &TestEnv, service: &str) -> std::time::SystemTime {
    let at = env
        .journal()
        .iter()
        .find(|e| e["service"] == service && e["result"] == "ok")
        .and_then(|e| e["at"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no journal entry for {service}"));
    humantime::parse_rfc3339(&at).unwrap()
}

/// When the engine started a service's container.
fn started_at(env: &TestEnv, service: &str) -> std::time::SystemTime {
    let at = inspect(&format!("{}-{service}-1", env.project()))["State"]["StartedAt"]
        .as_str()
        .unwrap()
        .to_string();
    humantime::parse_rfc3339(&at).unwrap()
}

#[test]
fn independent_services_start_together_and_a_dependent_waits_for_its_dependency() {
    let env = TestEnv::new("concurrent");
    let image = env.registry.push(WEB_V1, "web:v1");
    let service = |name: &str, extra: &str| {
        format!("  {name}:\n    image: {image}\n{HEALTHCHECK}    x-reconciler: {{health_timeout: 40s}}\n{extra}")
    };
    env.write_compose(&format!(
        "services:\n{}{}{}",
        service("a", ""),
        service("b", ""),
        service(
            "c",
            "    depends_on:\n      a: {condition: service_healthy}\n"
        )
    ));
    env.apply_ok();
    // b was started before a was proven healthy: they were waited for side by side.
    assert!(
        started_at(&env, "b") < proven_at(&env, "a"),
        "b started at {:?}, a was proven at {:?}",
        started_at(&env, "b"),
        proven_at(&env, "a")
    );
    // c depends on a being healthy: it was started only after a was proven.
    assert!(
        started_at(&env, "c") > proven_at(&env, "a"),
        "c started at {:?}, a was proven at {:?}",
        started_at(&env, "c"),
        proven_at(&env, "a")
    );
}

#[test]
fn a_running_container_removed_by_hand_is_recreated_without_waiting_for_the_interval() {
    let env = TestEnv::new("rmforce");
    let image = env.registry.push(WEB_V1, "web:v1");
    let port = free_port();
    env.write_compose(&web(&image, port, "30s", ""));
    let repo = env.repo.path().to_str().unwrap().to_string();
    // An hour between passes: only events and the error policy can explain a prompt repair.
    let run = env.spawn_reconciler(&["run", "--repo", &repo, "--interval", "1h"], &[]);
    wait_for("the first deploy", WAIT, || {
        http_get(&format!("127.0.0.1:{port}"), "/").as_deref() == Some("v1\n")
    });
    let first = env.container_id("web");
    for round in 0..3 {
        sh(&format!("docker rm -f {}-web-1", env.project()));
        wait_for(
            &format!("round {round}: a new container serving"),
            Duration::from_secs(60),
            || {
                env.try_container("web")
                    .is_some_and(|c| c.id != first && c.is_running())
                    && http_get(&format!("127.0.0.1:{port}"), "/").as_deref() == Some("v1\n")
            },
        );
    }
    let out = run.signal_and_wait("TERM", Duration::from_secs(30));
    assert_eq!(out.code, 0, "{out}");
}

#[test]
fn json_logs_are_one_object_per_line_with_stack_service_and_revision() {
    let env = TestEnv::new("jsonlogs");
    let image = env.registry.push(WEB_V1, "web:v1");
    env.write_compose(&web(&image, free_port(), "30s", ""));
    let out = env.run("apply", &["--log-format", "json"]);
    assert_eq!(out.code, 0, "{out}");
    let events: Vec<serde_json::Value> = out
        .stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let creating = events
        .iter()
        .find(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("creating "))
        })
        .unwrap_or_else(|| panic!("no 'creating' event in:\n{}", out.stderr));
    assert_eq!(creating["stack"], env.project());
    assert_eq!(creating["service"], "web");
    assert!(
        creating["revision"].as_str().is_some_and(|r| r.len() == 12),
        "{creating}"
    );
    assert_eq!(creating["level"], "INFO");
    assert!(
        events.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.contains("ready after"))),
        "{}",
        out.stderr
    );
}

/// The lines of `stderr` that are JSON events whose message starts with `prefix`.
fn json_events(stderr: &str, prefix: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .filter(|e: &serde_json::Value| {
            e["message"].as_str().is_some_and(|m| m.starts_with(prefix))
        })
        .collect()
}

#[test]
fn a_health_wait_reports_elapsed_timeout_and_health_as_it_goes_in_text_and_json() {
    let env = TestEnv::new("waitprogress");
    let image = env.registry.push(UNHEALTHY, "broken:v1");
    env.write_compose(&stuck(&image, free_port(), "12s"));

    let text = env.run("apply", &[]);
    assert_eq!(text.code, 1, "{text}");
    let progress = format!("{}/web: waiting for it to be ready: ", env.project());
    assert!(
        text.stderr
            .lines()
            .any(|l| l.contains(&progress) && l.ends_with("s of 12s, starting")),
        "no progress line while waiting:\n{}",
        text.stderr
    );

    // The failed first deploy left nothing behind, its network included.
    let (_, networks) = sh(&format!(
        "docker network ls -q --filter label=com.docker.compose.project={}",
        env.project()
    ));
    assert_eq!(
        networks.trim(),
        "",
        "the first deploy's network is still there"
    );

    let json = env.run("apply", &["--retry-failed", "--log-format", "json"]);
    assert_eq!(json.code, 1, "{json}");
    let waits = json_events(&json.stderr, "waiting for it to be ready");
    assert!(waits.len() >= 2, "{}", json.stderr);
    for wait in &waits {
        assert_eq!(wait["stack"], env.project(), "{wait}");
        assert_eq!(wait["service"], "web", "{wait}");
        assert_eq!(wait["timeout_s"], 12, "{wait}");
        assert_eq!(wait["health"], "starting", "{wait}");
    }
    let elapsed: Vec<u64> = waits
        .iter()
        .map(|w| w["elapsed_s"].as_u64().unwrap())
        .collect();
    assert!(elapsed.windows(2).all(|p| p[0] < p[1]), "{elapsed:?}");
    assert!(
        elapsed.iter().all(|&s| (5..=12).contains(&s)),
        "{elapsed:?}"
    );
}
