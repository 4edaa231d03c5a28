//! The GitOps loop against a real git remote: push converges, revert rolls back, a broken
//! release is tried once, the webhook needs its secret, history rewrites are refused, a
//! suspended stack is left alone, and a killed `run` converges on restart.
mod common;
use common::*;
use std::time::Duration;

fn web(image: &str, port: u16) -> String {
    format!("services:\n  web:\n    image: {image}\n    ports: [\"127.0.0.1:{port}:80\"]\n{HEALTHCHECK}    x-reconciler: {{health_timeout: 15s}}\n")
}

fn served(port: u16) -> Option<String> {
    http_get(&format!("127.0.0.1:{port}"), "/")
}

fn wait_served(port: u16, body: &str, what: &str) {
    wait_for(what, Duration::from_secs(45), || {
        served(port).as_deref() == Some(body)
    });
}

#[test]
fn run_follows_pushes_rolls_back_on_revert_and_tries_a_broken_release_once() {
    let env = TestEnv::new("loop");
    let remote = GitRemote::new(&env);
    let (v1, v2) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(WEB_V2, "web:v2"),
    );
    let broken = env.registry.push(UNHEALTHY, "web:broken");
    let port = free_port();
    env.write_compose(&web(&v1, port));
    remote.commit_and_push("web v1");
    let url = remote.url();
    let run = env.spawn_reconciler(&["run", "--repo", &url, "--interval", "1s"], &[]);
    wait_served(port, "v1\n", "v1 served after the first pass");

    env.write_compose(&web(&v2, port));
    let release = remote.commit_and_push("web v2");
    wait_served(port, "v2\n", "v2 served after the push");
    let running = env.container("web");
    assert_eq!(
        running.label("reconciler.revision"),
        Some(release.as_str()),
        "the container records the commit it came from"
    );

    remote.git("revert --no-edit HEAD");
    remote.git("push -q origin main");
    wait_served(port, "v1\n", "v1 served again after git revert + push");

    env.write_compose(&web(&broken, port));
    remote.commit_and_push("broken release");
    wait_for(
        "the broken release to fail",
        Duration::from_secs(45),
        || env.journal().iter().any(|e| e["result"] == "failed"),
    );
    // Several more passes: the broken commit is not tried again, v1 keeps serving.
    std::thread::sleep(Duration::from_secs(5));
    let failures = env
        .journal()
        .iter()
        .filter(|e| e["result"] == "failed")
        .count();
    assert_eq!(
        failures,
        1,
        "tried once, not in a loop:\n{}",
        run.output_so_far()
    );
    assert_eq!(served(port).as_deref(), Some("v1\n"));
    let status = env.reconciler(&["status", "-o", "json"]);
    assert!(status.stdout.contains("\"Failed\""), "{status}");

    let stopped = run.signal_and_wait("TERM", Duration::from_secs(20));
    assert_eq!(
        stopped.code, 0,
        "SIGTERM stops the loop cleanly:\n{stopped}"
    );
}

#[test]
fn the_webhook_triggers_a_pass_when_signed_and_refuses_a_bad_signature() {
    let env = TestEnv::new("hook");
    let remote = GitRemote::new(&env);
    let (v1, v2) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(WEB_V2, "web:v2"),
    );
    let (port, listen) = (free_port(), format!("127.0.0.1:{}", free_port()));
    env.write_compose(&web(&v1, port));
    remote.commit_and_push("v1");
    let url = remote.url();
    // An hour between passes: only the webhook can explain a prompt update.
    let run = env.spawn_reconciler(
        &[
            "run",
            "--repo",
            &url,
            "--interval",
            "1h",
            "--listen",
            &listen,
            "--webhook-secret",
            "s3cret",
        ],
        &[],
    );
    wait_served(port, "v1\n", "the first pass");
    env.write_compose(&web(&v2, port));
    remote.commit_and_push("v2");

    let bad = http_send(
        &listen,
        "POST",
        "/hooks/git",
        &[("X-Gitlab-Token", "wrong")],
        b"{}",
    )
    .expect("server answers");
    assert_eq!(bad.status, 401);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        served(port).as_deref(),
        Some("v1\n"),
        "a refused webhook changes nothing"
    );

    let good = http_send(
        &listen,
        "POST",
        "/hooks/git",
        &[("X-Gitlab-Token", "s3cret")],
        b"{}",
    )
    .expect("server answers");
    assert_eq!(good.status, 202);
    wait_served(port, "v2\n", "v2 after the signed webhook");

    let health = http_request(&listen, "/healthz").expect("healthz");
    assert_eq!(health.status, 200);
    let metrics = http_get(&listen, "/metrics").expect("metrics");
    assert!(
        metrics.contains("reconciler_reconcile_duration_seconds_count"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "reconciler_service_sync{{stack=\"{}\",service=\"web\",sync=\"Synced\"",
            env.project()
        )),
        "{metrics}"
    );
    let status = http_get(&listen, "/status").expect("status");
    assert!(status.contains("\"last_pass\""), "{status}");
    run.signal_and_wait("TERM", Duration::from_secs(20));
}

#[test]
fn diff_and_apply_read_a_git_remote_at_the_branch_tip_or_a_given_revision() {
    let env = TestEnv::new("gitsrc");
    let remote = GitRemote::new(&env);
    let (v1, v2) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(WEB_V2, "web:v2"),
    );
    let port = free_port();
    env.write_compose(&web(&v1, port));
    let first = remote.commit_and_push("v1");
    env.write_compose(&web(&v2, port));
    remote.commit_and_push("v2");
    let url = remote.url();
    let applied = env.reconciler(&["apply", "--repo", &url, "--rev", &first]);
    assert_eq!(applied.code, 0, "{applied}");
    assert_eq!(served(port).as_deref(), Some("v1\n"));
    let diff = env.reconciler(&["diff", "--repo", &url]);
    assert_eq!(diff.code, 1, "{diff}");
    assert!(
        diff.stdout.contains(&format!("image {v1} -> {v2}")),
        "{diff}"
    );
}

#[test]
fn a_rewritten_history_is_reported_and_not_applied_unless_allowed() {
    let env = TestEnv::new("forcepush");
    let remote = GitRemote::new(&env);
    let (v1, v2) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(WEB_V2, "web:v2"),
    );
    let port = free_port();
    env.write_compose(&web(&v1, port));
    remote.commit_and_push("v1");
    let url = remote.url();
    env.reconciler(&["apply", "--repo", &url]).assert_code(0);
    // A new root commit force-pushed over main: the applied commit is no longer in its history.
    remote.git("checkout -q --orphan rewritten");
    env.write_compose(&web(&v2, port));
    remote.git("add -A");
    remote.git("commit -q -m rewritten");
    remote.git("push -q -f origin rewritten:main");
    let refused = env.reconciler(&["apply", "--repo", &url]);
    assert_eq!(refused.code, 2, "{refused}");
    assert!(
        refused.stderr.contains("history") && refused.stderr.contains("--allow-non-fast-forward"),
        "{refused}"
    );
    assert_eq!(served(port).as_deref(), Some("v1\n"), "nothing applied");
    let allowed = env.reconciler(&["apply", "--repo", &url, "--allow-non-fast-forward"]);
    assert_eq!(allowed.code, 0, "{allowed}");
    assert_eq!(served(port).as_deref(), Some("v2\n"));
}

#[test]
fn a_suspended_stack_is_left_alone_until_resumed() {
    let env = TestEnv::new("suspend");
    let remote = GitRemote::new(&env);
    let (v1, v2) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(WEB_V2, "web:v2"),
    );
    let port = free_port();
    env.write_compose(&web(&v1, port));
    remote.commit_and_push("v1");
    let url = remote.url();
    let run = env.spawn_reconciler(&["run", "--repo", &url, "--interval", "1s"], &[]);
    wait_served(port, "v1\n", "the first pass");
    assert_eq!(env.reconciler(&["suspend", env.project()]).code, 0);
    env.write_compose(&web(&v2, port));
    remote.commit_and_push("v2");
    assert_eq!(
        env.reconciler(&["sync"]).code,
        0,
        "sync finds the running loop"
    );
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        served(port).as_deref(),
        Some("v1\n"),
        "suspended: not updated"
    );
    assert_eq!(env.reconciler(&["resume", env.project()]).code, 0);
    wait_served(port, "v2\n", "updated after resume");
    run.signal_and_wait("TERM", Duration::from_secs(20));
}

#[test]
fn a_run_killed_in_the_middle_of_an_update_converges_when_started_again() {
    let env = TestEnv::new("killrun");
    let remote = GitRemote::new(&env);
    let (v1, v2) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(WEB_V2, "web:v2"),
    );
    let port = free_port();
    env.write_compose(&web(&v1, port));
    remote.commit_and_push("v1");
    let url = remote.url();
    env.reconciler(&["apply", "--repo", &url]).assert_code(0);
    env.write_compose(&web(&v2, port));
    remote.commit_and_push("v2");
    for failpoint in [
        "after-stop-old",
        "after-rename-old",
        "after-start",
        "before-remove-old",
    ] {
        let killed = env.spawn_reconciler(
            &["run", "--repo", &url, "--interval", "1s"],
            &[("RECONCILER_FAILPOINT", failpoint)],
        );
        let out = killed.wait(Duration::from_secs(60));
        assert_eq!(
            out.code, 99,
            "{failpoint}: the failpoint stops the process mid-update\n{out}"
        );
        let run = env.spawn_reconciler(&["run", "--repo", &url, "--interval", "1s"], &[]);
        // Converged: one container, v2, serving (leftovers resolved from names and labels).
        wait_for(
            &format!("{failpoint}: one v2 container"),
            Duration::from_secs(60),
            || {
                let containers = env.containers();
                containers.len() == 1
                    && containers[0].2.ends_with("web:v2")
                    && containers[0].3 == "running"
            },
        );
        wait_served(port, "v2\n", failpoint);
        let stopped = run.signal_and_wait("TERM", Duration::from_secs(30));
        assert_eq!(stopped.code, 0, "{failpoint}:\n{stopped}");
        // Back to v1 for the next round.
        env.write_compose(&web(&v1, port));
        remote.commit_and_push("back to v1");
        env.reconciler(&["apply", "--repo", &url]).assert_code(0);
        env.write_compose(&web(&v2, port));
        remote.commit_and_push("v2 again");
    }
}
