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

/// The first pass has finished: the container was proven, not just answering.
fn wait_created(env: &TestEnv) {
    wait_for(
        "the first create to be proven",
        Duration::from_secs(45),
        || {
            env.journal()
                .iter()
                .any(|e| e["action"] == "create" && e["result"] == "ok")
        },
    );
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
    wait_for(
        "the revert recorded as a rollback",
        Duration::from_secs(10),
        || {
            env.journal()
                .iter()
                .any(|e| e["action"] == "rollback" && e["result"] == "ok")
        },
    );
    let history = env.reconciler(&["history"]);
    assert!(history.stdout.contains("rollback"), "{history}");

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
    assert!(
        metrics.contains(&format!(
            "reconciler_service_health{{stack=\"{}\",service=\"web\",health=",
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
    let status = env.reconciler(&["status", "-o", "json"]);
    assert!(status.stdout.contains("\"Suspended\""), "{status}");
    assert_eq!(env.reconciler(&["resume", env.project()]).code, 0);
    wait_served(port, "v2\n", "updated after resume");
    run.signal_and_wait("TERM", Duration::from_secs(20));
}

#[test]
fn a_run_killed_in_the_middle_of_an_update_converges_when_started_again() {
    // A fresh stack per failpoint, so each kill starts from the same proven v1.
    for failpoint in [
        "after-stop-old",
        "after-rename-old",
        "after-start",
        "before-remove-old",
    ] {
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
    }
}

#[test]
fn a_container_stopped_or_removed_by_hand_is_brought_back_at_once() {
    let env = TestEnv::new("selfheal");
    let remote = GitRemote::new(&env);
    let v1 = env.registry.push(WEB_V1, "web:v1");
    let port = free_port();
    env.write_compose(&web(&v1, port));
    remote.commit_and_push("v1");
    let url = remote.url();
    // An hour between passes: only the engine's events can explain a prompt repair.
    let run = env.spawn_reconciler(&["run", "--repo", &url, "--interval", "1h"], &[]);
    wait_created(&env);
    let name = format!("{}-web-1", env.project());
    sh(&format!("docker stop -t 1 {name}"));
    wait_served(port, "v1\n", "serving again after a docker stop by hand");
    wait_for("the restart to be proven", Duration::from_secs(45), || {
        env.journal()
            .iter()
            .any(|e| e["action"] == "start" && e["result"] == "ok")
    });
    sh(&format!("docker rm -f {name}"));
    wait_served(port, "v1\n", "serving again after a docker rm by hand");
    assert_eq!(env.containers().len(), 1);
    run.signal_and_wait("TERM", Duration::from_secs(20));
}

#[test]
fn with_no_self_heal_a_container_stopped_by_hand_is_only_reported() {
    let env = TestEnv::new("noheal");
    let remote = GitRemote::new(&env);
    let v1 = env.registry.push(WEB_V1, "web:v1");
    let port = free_port();
    env.write_compose(&web(&v1, port));
    remote.commit_and_push("v1");
    let url = remote.url();
    let run = env.spawn_reconciler(
        &["run", "--repo", &url, "--interval", "1s", "--no-self-heal"],
        &[],
    );
    wait_created(&env);
    let name = format!("{}-web-1", env.project());
    sh(&format!("docker stop -t 1 {name}"));
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        env.container("web").state,
        "exited",
        "not restarted:\n{}",
        run.output_so_far()
    );
    let status = env.reconciler(&["status", "-o", "json"]);
    assert!(status.stdout.contains("\"OutOfSync\""), "{status}");
    run.signal_and_wait("TERM", Duration::from_secs(20));
}

#[test]
fn a_remote_served_over_the_git_protocol_is_followed() {
    let env = TestEnv::new("gitdaemon");
    let remote = GitRemote::new(&env);
    let v1 = env.registry.push(WEB_V1, "web:v1");
    let port = free_port();
    env.write_compose(&web(&v1, port));
    remote.commit_and_push("v1");
    // git daemon on loopback: a network transport, not just file://.
    let daemon_port = free_port();
    let (base, name) = remote.served_as();
    let mut daemon = std::process::Command::new("git")
        .args([
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--listen=127.0.0.1",
            &format!("--port={daemon_port}"),
        ])
        .arg(format!("--base-path={}", base.display()))
        .arg(&base)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("git daemon");
    wait_for("git daemon", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", daemon_port)).is_ok()
    });
    let url = format!("git://127.0.0.1:{daemon_port}/{name}");
    let applied = env.reconciler(&["apply", "--repo", &url]);
    let _ = daemon.kill();
    let _ = daemon.wait();
    applied.assert_code(0);
    assert_eq!(served(port).as_deref(), Some("v1\n"));
}

#[test]
fn a_local_directory_source_is_watched_and_an_edit_is_reconciled_at_once() {
    let env = TestEnv::new("watchdir");
    let (v1, v2) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(WEB_V2, "web:v2"),
    );
    let port = free_port();
    env.write_compose(&web(&v1, port));
    let repo = env.repo.path().to_str().unwrap().to_string();
    // An hour between passes: only the file watch can explain a prompt update.
    let run = env.spawn_reconciler(&["run", "--repo", &repo, "--interval", "1h"], &[]);
    wait_created(&env);
    env.write_compose(&web(&v2, port));
    wait_served(port, "v2\n", "v2 after editing the compose file");
    run.signal_and_wait("TERM", Duration::from_secs(20));
}

#[test]
fn an_http_remote_that_needs_a_token_is_read_with_the_token_and_refused_without() {
    let env = TestEnv::new("gittoken");
    let remote = GitRemote::new(&env);
    let v1 = env.registry.push(WEB_V1, "web:v1");
    let port = free_port();
    env.write_compose(&web(&v1, port));
    remote.commit_and_push("v1");
    let http_port = free_port();
    let (root, name) = remote.served_as();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/git-http-server.py");
    let mut server = std::process::Command::new("python3")
        .arg(script)
        .arg(http_port.to_string())
        .arg(&root)
        .arg("t0ken-value")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3");
    wait_for("the git http server", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", http_port)).is_ok()
    });
    let url = format!("http://127.0.0.1:{http_port}/git/{name}");
    let refused = env.reconciler(&["validate", "--repo", &url]);
    let wrong = env.reconciler_with_env(
        &["validate", "--repo", &url],
        &[("RECONCILER_GIT_TOKEN", "wrong")],
    );
    let applied = env.reconciler_with_env(
        &["apply", "--repo", &url],
        &[("RECONCILER_GIT_TOKEN", "t0ken-value")],
    );
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(refused.code, 2, "no token:\n{refused}");
    assert_eq!(wrong.code, 2, "wrong token:\n{wrong}");
    assert!(
        wrong.stderr.contains("authentication failed") && wrong.stderr.contains(&url),
        "a refusal says what and where:\n{wrong}"
    );
    applied.assert_code(0);
    assert_eq!(served(port).as_deref(), Some("v1\n"));
    assert!(
        !applied.combined().contains("t0ken-value"),
        "the token never reaches the output"
    );
}

#[test]
fn an_ssh_remote_is_read_with_a_key_and_refused_with_the_wrong_one() {
    let env = TestEnv::new("gitssh");
    let remote = GitRemote::new(&env);
    let v1 = env.registry.push(WEB_V1, "web:v1");
    let port = free_port();
    env.write_compose(&web(&v1, port));
    remote.commit_and_push("v1");
    let ssh = SshServer::start();
    let url = format!(
        "ssh://root@127.0.0.1:{}{}",
        ssh.port,
        remote.bare.path().display()
    );
    let home = ssh.home.to_str().unwrap();
    let key = ssh.client_key.to_str().unwrap();
    let wrong_key = ssh.unauthorized_key.to_str().unwrap();
    let refused = env.reconciler_with_env(
        &["validate", "--repo", &url, "--ssh-key", wrong_key],
        &[("HOME", home)],
    );
    assert_eq!(refused.code, 2, "{refused}");
    assert!(refused.stderr.contains("cannot fetch"), "{refused}");
    env.reconciler_with_env(
        &["apply", "--repo", &url, "--ssh-key", key],
        &[("HOME", home)],
    )
    .assert_code(0);
    assert_eq!(served(port).as_deref(), Some("v1\n"));
}

#[test]
fn sigterm_during_an_update_finishes_that_service_leaves_the_rest_and_nothing_half_done() {
    let env = TestEnv::new("sigterm");
    let remote = GitRemote::new(&env);
    let (v1, v2) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(WEB_V2, "web:v2"),
    );
    let two = |image: &str| {
        format!("services:\n  a:\n    image: {image}\n{HEALTHCHECK}  b:\n    image: {image}\n{HEALTHCHECK}    depends_on: [a]\n")
    };
    env.write_compose(&two(&v1));
    remote.commit_and_push("v1");
    let url = remote.url();
    env.reconciler(&["apply", "--repo", &url]).assert_code(0);
    env.write_compose(&two(&v2));
    remote.commit_and_push("v2");
    let run = env.spawn_reconciler(&["run", "--repo", &url, "--interval", "1s"], &[]);
    run.wait_for_output(
        &format!("{}/a: creating", env.project()),
        Duration::from_secs(30),
    );
    let stopped = run.signal_and_wait("TERM", Duration::from_secs(30));
    assert_eq!(stopped.code, 0, "{stopped}");
    let containers = env.containers();
    assert_eq!(
        containers.len(),
        2,
        "no leftovers (no -reconciler-old/-new): {containers:?}"
    );
    let image_of = |svc: &str| {
        containers
            .iter()
            .find(|c| c.0.ends_with(&format!("-{svc}-1")))
            .map(|c| c.2.clone())
            .unwrap()
    };
    assert!(
        image_of("a").ends_with("web:v2"),
        "the service in progress was finished: {containers:?}"
    );
    assert!(
        image_of("b").ends_with("web:v1"),
        "the next one was not started: {containers:?}"
    );
    // The next start picks up where it stopped.
    env.reconciler(&["apply", "--repo", &url]).assert_code(0);
    assert!(env.containers().iter().all(|c| c.2.ends_with("web:v2")));
}
