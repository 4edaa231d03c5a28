//! The watch window (`deploy.update_config.monitor`), the `x-reconciler.http_probe` and the
//! free-disk check against the real engine: a release that fails after it looked healthy gives
//! its place back to the very container it replaced.
mod common;
use common::*;
use std::time::Duration;

/// The web app on `port`, watched for `monitor` once healthy; `command` replaces its start.
fn web(
    image: &str,
    port: u16,
    monitor: &str,
    command: Option<&str>,
    probe: Option<&str>,
) -> String {
    let command = command
        .map(|c| format!("    command: [\"sh\", \"-c\", {c:?}]\n"))
        .unwrap_or_default();
    // A probe that keeps failing is tried until health_timeout: short, so the test is.
    let (timeout, probe) = match probe {
        Some(p) => (
            "10s",
            format!(", http_probe: \"http://127.0.0.1:{port}{p}\""),
        ),
        None => ("30s", String::new()),
    };
    format!(
        "services:\n  web:\n    image: {image}\n{command}    ports: [\"127.0.0.1:{port}:80\"]\n    deploy: {{update_config: {{order: stop-first, monitor: {monitor}}}}}\n{HEALTHCHECK}    x-reconciler: {{health_timeout: {timeout}{probe}}}\n"
    )
}

/// Serves like the web image, turns healthy, then exits with code 3 twelve seconds in.
const CRASHES_AFTER_12S: &str =
    "trap 'exit 0' TERM; httpd -p 80 -h /www; sleep 12 & wait $!; echo 'web: giving up'; exit 3";

/// Serves like the web image, but its /cgi-bin/health answers 500.
const HEALTH_500: &str = "mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho \"HTTP/1.0 500 Internal Server Error\"\\necho\\n' > /www/cgi-bin/health && chmod +x /www/cgi-bin/health && trap 'exit 0' TERM; httpd -p 80 -h /www; while :; do sleep 1 & wait $!; done";

fn serves(port: u16) -> Option<String> {
    http_get(&format!("127.0.0.1:{port}"), "/")
}

#[test]
fn a_container_that_crashes_inside_its_window_gives_its_place_back_to_the_old_one() {
    let env = TestEnv::new("ww-crash");
    let port = free_port();
    let (v1, v2) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(WEB_V2, "web:v2"),
    );
    env.write_compose(&web(&v1, port, "30s", None, None));
    env.apply_ok();
    let old = env.container_id("web");
    assert_eq!(serves(port).as_deref(), Some("v1\n"));

    env.write_compose(&web(&v2, port, "30s", Some(CRASHES_AFTER_12S), None));
    let repo = env.repo.path().to_str().unwrap().to_string();
    let apply = env.spawn_reconciler(&["apply", "--repo", &repo], &[]);

    // Inside the window, `status` says so.
    let mut seen = String::new();
    wait_for("the watching activity in status -o json", WAIT, || {
        seen = env.reconciler(&["status", "-o", "json"]).stdout;
        seen.contains("\"kind\": \"watching\"")
    });
    assert!(seen.contains("\"until\""), "{seen}");
    assert_eq!(
        serves(port).as_deref(),
        Some("v2\n"),
        "the new one serves in its window"
    );

    let out = apply.wait(Duration::from_secs(120));
    assert_ne!(out.code, 0, "a failed release is not a clean apply:\n{out}");
    let back = env.container("web");
    assert_eq!(back.id, old, "the old container itself is back");
    assert!(back.is_running());
    assert_eq!(back.image, v1);
    assert_eq!(env.containers().len(), 1, "{:?}", env.containers());
    assert!(wait_until(WAIT, || serves(port).as_deref() == Some("v1\n")));

    let history = env.reconciler(&["history"]).stdout;
    assert!(
        history.contains("exited with code 3") && history.contains("into the 30s monitor window"),
        "{history}"
    );
    let status = env.reconciler(&["status", "-o", "json"]).stdout;
    assert!(!status.contains("\"kind\": \"watching\""), "{status}");
    let metrics_counted =
        std::fs::read_to_string(env.state.path().join("counters.json")).unwrap_or_default();
    assert!(
        metrics_counted.contains("\"window_failure\":1"),
        "{metrics_counted}"
    );
}

#[test]
fn an_http_probe_answering_500_fails_the_release_and_200_lets_it_through() {
    let env = TestEnv::new("ww-probe");
    let port = free_port();
    let (v1, v2) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(WEB_V2, "web:v2"),
    );
    env.write_compose(&web(&v1, port, "0s", None, Some("/health")));
    env.apply_ok();
    let old = env.container_id("web");

    env.write_compose(&web(
        &v2,
        port,
        "0s",
        Some(HEALTH_500),
        Some("/cgi-bin/health"),
    ));
    let out = env.run("apply", &[]);
    assert_ne!(out.code, 0, "{out}");
    let said = out.combined();
    assert!(
        said.contains(&format!(
            "http probe http://127.0.0.1:{port}/cgi-bin/health failed: answered 500 Internal Server Error"
        )),
        "{said}"
    );
    assert_eq!(env.container_id("web"), old);
    assert!(wait_until(WAIT, || serves(port).as_deref() == Some("v1\n")));

    env.write_compose(&web(&v2, port, "0s", None, Some("/health")));
    env.apply_ok();
    assert_ne!(env.container_id("web"), old);
    assert_eq!(serves(port).as_deref(), Some("v2\n"));
}

#[test]
fn too_little_free_disk_refuses_the_apply_and_changes_nothing() {
    let env = TestEnv::new("ww-disk");
    let port = free_port();
    let (v1, v2) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(WEB_V2, "web:v2"),
    );
    env.write_compose(&web(&v1, port, "0s", None, None));
    env.apply_ok();
    let before = env.containers();

    env.write_compose(&web(&v2, port, "0s", None, None));
    let out = env.run("apply", &["--min-free-disk", "1000000GiB"]);

    assert_ne!(out.code, 0, "{out}");
    let said = out.combined();
    let root = docker_ok(&["info", "--format", "{{.DockerRootDir}}"]);
    for part in [
        "is not updated, nothing was changed",
        &format!("free on {}", root.trim()),
        "the Docker Engine's data root",
        "--min-free-disk asks for at least 1024000000 MiB",
    ] {
        assert!(said.contains(part), "{part:?} not in:\n{said}");
    }
    assert_eq!(env.containers(), before);
    assert!(!image_exists(&v2), "{v2} was pulled");
    // The same apply with the default threshold goes through.
    env.apply_ok();
    assert_eq!(serves(port).as_deref(), Some("v2\n"));
}

#[test]
fn a_reconciler_killed_inside_the_window_leaves_the_old_container_to_come_back_at_the_next_apply() {
    let env = TestEnv::new("ww-killed");
    let port = free_port();
    let (v1, v2) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(WEB_V2, "web:v2"),
    );
    env.write_compose(&web(&v1, port, "15s", None, None));
    env.apply_ok();
    let old = env.container_id("web");

    env.write_compose(&web(&v2, port, "15s", None, None));
    let repo = env.repo.path().to_str().unwrap().to_string();
    let apply = env.spawn_reconciler(&["apply", "--repo", &repo], &[]);
    wait_for("the watching activity in status -o json", WAIT, || {
        env.reconciler(&["status", "-o", "json"])
            .stdout
            .contains("\"kind\": \"watching\"")
    });
    apply.signal_and_wait("KILL", WAIT);
    let unproven = env.container_id("web");
    assert_ne!(unproven, old);
    let names: Vec<String> = env.containers().into_iter().map(|c| c.0).collect();
    assert!(
        names.contains(&format!("{}-web-1-reconciler-old", env.project())),
        "{names:?}"
    );
    // A dead process's activity is not shown.
    let status = env.reconciler(&["status", "-o", "json"]).stdout;
    assert!(!status.contains("\"kind\": \"watching\""), "{status}");

    // The next apply brings the old container back first, then updates again, whole window.
    let out = env.apply_ok();
    assert!(
        out.combined()
            .contains("interrupted inside its monitor window; restoring the old container"),
        "{out}"
    );
    assert!(
        try_inspect(&unproven).is_none(),
        "the unproven container is left"
    );
    assert!(
        try_inspect(&old).is_none(),
        "the old container outlived a proven update"
    );
    let now = env.container("web");
    assert_eq!(now.image, v2);
    assert_eq!(env.containers().len(), 1, "{:?}", env.containers());
    assert_eq!(serves(port).as_deref(), Some("v2\n"));
}
