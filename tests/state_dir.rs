//! The state dir under hostile or unlucky conditions: control commands take names, never paths;
//! one writer at a time, and `sync` signals only the loop that holds the lock; a torn or damaged
//! journal line costs that line only; a state dir that cannot be written stops a pass before it
//! touches a container; old checkouts and revision folders are pruned, never data a container
//! wrote.
mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// `reconciler --state-dir <state> <args>` without a TestEnv (for tests that need no engine).
fn reconciler_in(state: &Path, args: &[&str]) -> CmdOutput {
    let out = Command::new(env!("CARGO_BIN_EXE_reconciler"))
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env_remove("RECONCILER_STATE_DIR")
        .env_remove("RECONCILER_REPO")
        .env("NO_COLOR", "1")
        .output()
        .expect("run reconciler");
    CmdOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every path under `dir`, for "nothing was touched" checks.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                pending.push(e.path());
            }
            out.push(e.path());
        }
    }
    out.sort();
    out
}

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

#[test]
fn control_commands_refuse_stack_and_service_names_that_are_paths_and_touch_nothing() {
    let outer = tempfile::tempdir().unwrap();
    let state = outer.path().join("a/state");
    std::fs::create_dir_all(&state).unwrap();
    // `control/suspended/../../../../victim` is `<outer>/victim`.
    let victim = outer.path().join("victim");
    std::fs::write(&victim, "not the reconciler's").unwrap();
    let before = tree(outer.path());
    let attempts: [&[&str]; 6] = [
        &["resume", "../../../../victim"],
        &["suspend", "../../../../planted"],
        &["suspend", "Web"],
        &["retry", "../../../../planted", "web"],
        &["retry", "web", "../../../../../planted"],
        &["retry", "web", ".."],
    ];
    for args in attempts {
        let out = reconciler_in(&state, args);
        out.assert_code(2);
        assert!(
            out.stderr.contains("is not a valid stack name")
                || out.stderr.contains("is not a valid service name"),
            "{args:?} should say which name is wrong:\n{out}"
        );
        assert_eq!(tree(outer.path()), before, "{args:?} touched files:\n{out}");
    }
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "not the reconciler's"
    );
    // Valid names still work.
    reconciler_in(&state, &["suspend", "web"]).assert_code(0);
    // A valid name passes the check and gets to the state dir, which has no such service.
    let retry = reconciler_in(&state, &["retry", "web", "app.v2"]);
    assert!(
        retry.stderr.contains("nothing is recorded for web/app.v2"),
        "{retry}"
    );
}

#[test]
fn status_history_and_retry_on_an_empty_state_dir_say_which_state_dir_they_read() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let shown = state.display().to_string();
    for args in [&["status"][..], &["status", "-o", "json"], &["history"]] {
        let out = reconciler_in(&state, args);
        out.assert_code(0);
        assert!(
            out.stderr.contains("is recorded in the state dir") && out.stderr.contains(&shown),
            "{args:?}:\n{out}"
        );
        assert!(out.stderr.contains("--state-dir"), "{args:?}:\n{out}");
    }
    let json = reconciler_in(&state, &["status", "-o", "json"]);
    assert_eq!(json.stdout.trim(), "[]", "scripts still read JSON: {json}");

    let retry = reconciler_in(&state, &["retry", "nosuch", "svc"]);
    retry.assert_code(2);
    assert!(
        retry.stderr.contains("nothing is recorded for nosuch/svc")
            && retry.stderr.contains(&shown),
        "{retry}"
    );
    assert!(!retry.stdout.contains("will be tried again"), "{retry}");
}

#[test]
fn an_engine_that_cannot_be_reached_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("state.json"),
        r#"{"stacks":{"shop":{"last_applied":null,"last_good":null,"services":{"web":{"failed":null,"running_revision":null,"since":null}}}}}"#,
    )
    .unwrap();
    // Port 1 on loopback: nothing listens there.
    let out = reconciler_in(&state, &["--docker-host", "tcp://127.0.0.1:1", "status"]);
    out.assert_code(2);
    assert!(
        out.stderr
            .contains("cannot reach the Docker Engine at tcp://127.0.0.1:1"),
        "{out}"
    );
}

/// A `run` on an empty desired state (no stacks): it holds the state dir and touches nothing.
fn idle_loop(env: &TestEnv, empty_repo: &Path) -> Spawned {
    let run = env.spawn_reconciler(
        &[
            "run",
            "--repo",
            empty_repo.to_str().unwrap(),
            "--interval",
            "1h",
        ],
        &[],
    );
    run.wait_for_output("following", Duration::from_secs(30));
    run
}

#[test]
fn sync_signals_only_the_loop_holding_the_state_dir_never_a_pid_from_a_stale_file() {
    let env = TestEnv::new("stalepid");
    let state = env.state.path();
    let mut unrelated = Command::new("sleep").arg("120").spawn().unwrap();
    let pid = unrelated.id();
    std::fs::write(state.join("run.pid"), pid.to_string()).unwrap();

    let out = env.reconciler(&["sync"]);
    out.assert_code(2);
    assert!(out.stderr.contains("no running `reconciler run`"), "{out}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(pid), "sync signalled an unrelated process:\n{out}");

    let empty = tempfile::tempdir().unwrap();
    let run = idle_loop(&env, empty.path());
    // The loop wrote its own pid; a stale one (e.g. a pid reused after a crash) replaces it.
    std::fs::write(state.join("run.pid"), pid.to_string()).unwrap();
    env.reconciler(&["sync"]).assert_code(0);
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(pid), "sync signalled the pid in run.pid");
    assert!(
        alive(run.pid()),
        "the loop takes SIGHUP as `sync`:\n{}",
        run.output_so_far()
    );
    let _ = unrelated.kill();
    let _ = unrelated.wait();
    run.signal_and_wait("TERM", Duration::from_secs(30))
        .assert_code(0);
}

#[test]
fn a_second_writer_fails_at_once_naming_the_holder_and_touches_nothing() {
    let env = TestEnv::new("lock");
    let v1 = env.registry.push(WEB_V1, "web:v1");
    env.write_compose(&format!("services:\n  web:\n    image: {v1}\n"));
    let empty = tempfile::tempdir().unwrap();
    let run = idle_loop(&env, empty.path());
    let journal_before = env.journal();

    let started = std::time::Instant::now();
    let out = env.run("apply", &[]);
    out.assert_code(2);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "it should fail at once"
    );
    let expected = format!(
        "state dir {} is in use by reconciler pid {}",
        env.state.path().display(),
        run.pid()
    );
    assert!(out.stderr.contains(&expected), "want {expected:?}:\n{out}");
    assert!(env.containers().is_empty(), "apply created containers");
    assert_eq!(env.journal(), journal_before);
    // A second loop is refused the same way.
    let second = env.run("run", &["--interval", "1h"]);
    second.assert_code(2);
    assert!(second.stderr.contains(&expected), "{second}");
    // Readers need no lock.
    env.reconciler(&["status"]).assert_code(0);
    env.reconciler(&["history"]).assert_code(0);
    env.run("validate", &[]).assert_code(0);

    run.signal_and_wait("TERM", Duration::from_secs(30))
        .assert_code(0);
    // The lock went with the process: apply works now.
    env.apply_ok();
}

#[test]
fn a_torn_journal_line_does_not_swallow_the_next_entry() {
    let env = TestEnv::new("tornjournal");
    let v1 = env.registry.push(WEB_V1, "web:v1");
    env.write_compose(&format!(
        "services:\n  web:\n    image: {v1}\n    x-reconciler: {{min_ready: 1s}}\n"
    ));
    // A crash mid-write leaves half a line and no newline.
    std::fs::write(
        env.state.path().join("journal.jsonl"),
        "{\"at\":\"2024-01-01T00:00:00Z\",\"revis",
    )
    .unwrap();
    env.apply_ok();
    let out = env.reconciler(&["history", "-o", "json"]);
    out.assert_code(0);
    let entries: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["service"] == "web" && e["action"] == "create" && e["result"] == "ok"),
        "the create after the torn line is lost:\n{out}"
    );
    assert!(out.stderr.contains("skipped 1 line"), "{out}");
}

#[test]
fn history_reads_past_a_line_with_a_byte_that_is_not_utf8() {
    let state = tempfile::tempdir().unwrap();
    let line = |service: &str| {
        format!("{{\"at\":\"2024-01-01T00:00:00Z\",\"revision\":\"r1\",\"stack\":\"s\",\"service\":\"{service}\",\"action\":\"create\",\"from\":null,\"to\":\"img:1\",\"result\":\"ok\",\"duration_ms\":1}}\n")
    };
    let mut bytes = line("first").into_bytes();
    bytes.extend(b"{\"at\":\"\xff\"}\n");
    bytes.extend(line("second").into_bytes());
    std::fs::write(state.path().join("journal.jsonl"), bytes).unwrap();
    let out = reconciler_in(state.path(), &["history", "-o", "json"]);
    out.assert_code(0);
    let entries: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
    let services: Vec<&str> = entries
        .iter()
        .map(|e| e["service"].as_str().unwrap())
        .collect();
    assert_eq!(services, ["second", "first"], "{out}");
    assert!(out.stderr.contains("skipped 1 line"), "{out}");
}

/// A mount over the test's state dir, undone on drop (before the TestEnv removes the folder).
struct Mounted(PathBuf);

impl Mounted {
    fn sh(script: &str) {
        let (ok, out) = sh(script);
        assert!(ok, "`{script}` failed: {out}");
    }

    fn tmpfs(dir: &Path, size: &str) -> Self {
        Self::sh(&format!(
            "mount -t tmpfs -o size={size} tmpfs '{}'",
            dir.display()
        ));
        Self(dir.to_path_buf())
    }

    fn read_only_bind(dir: &Path) -> Self {
        let d = dir.display();
        Self::sh(&format!(
            "mount --bind '{d}' '{d}' && mount -o remount,bind,ro '{d}'"
        ));
        Self(dir.to_path_buf())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = sh(&format!("umount '{}'", self.0.display()));
    }
}

fn web_v(image: &str) -> String {
    format!("services:\n  web:\n    image: {image}\n    x-reconciler: {{min_ready: 1s}}\n")
}

#[test]
fn names_the_state_dir_does_not_record_are_said_by_history_suspend_and_resume() {
    let env = TestEnv::new("unknownname");
    let image = env.registry.push(WEB_V1, "web:v1");
    env.write_compose(&web_v(&image));
    env.apply_ok();
    let shown = env.state.path().display().to_string();

    let history = env.reconciler(&["history", "--stack", "nosuch"]);
    history.assert_code(0);
    assert!(
        history
            .stderr
            .contains("no change of stack nosuch is recorded in the state dir")
            && history.stderr.contains(&shown),
        "{history}"
    );
    let known = env.reconciler(&["history", "--stack", env.project()]);
    assert!(!known.stderr.contains("is recorded"), "{known}");

    let suspend = env.reconciler(&["suspend", "nosuch"]);
    suspend.assert_code(0);
    assert!(
        suspend
            .stderr
            .contains("no stack nosuch is recorded in the state dir"),
        "a typo is said, though a stack may be suspended before its first pass: {suspend}"
    );
    env.reconciler(&["resume", "nosuch"]).assert_code(0);
    let again = env.reconciler(&["resume", "nosuch"]);
    again.assert_code(0);
    assert!(again.stdout.contains("nosuch was not suspended"), "{again}");

    let ours = env.reconciler(&["suspend", env.project()]);
    ours.assert_code(0);
    assert!(!ours.stderr.contains("is recorded"), "{ours}");
    env.reconciler(&["resume", env.project()]).assert_code(0);
}

#[test]
fn a_full_state_dir_stops_the_pass_before_the_running_container_is_touched() {
    let env = TestEnv::new("fullstate");
    let _tmpfs = Mounted::tmpfs(env.state.path(), "16m");
    let (v1, v2) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(WEB_V2, "web:v2"),
    );
    env.write_compose(&web_v(&v1));
    env.apply_ok();
    let before = env.container("web");
    // Fill it: dd stops at ENOSPC.
    let fill = env.state.path().join("fill");
    let _ = sh(&format!(
        "dd if=/dev/zero of='{}' bs=1M 2>/dev/null",
        fill.display()
    ));

    env.write_compose(&web_v(&v2));
    let out = env.run("apply", &[]);
    let after = env.container("web");
    assert_eq!(
        (&after.id, &after.image, after.is_running()),
        (&before.id, &before.image, true),
        "the running container was touched:\n{out}"
    );
    out.assert_code(2);
    assert!(
        out.stderr.contains("nothing was changed")
            && out.stderr.contains(&env.state.path().display().to_string()),
        "a clear error naming the state dir:\n{out}"
    );

    std::fs::remove_file(&fill).unwrap();
    env.apply_ok();
    assert_eq!(env.container("web").image, v2);
}

#[test]
fn a_read_only_state_dir_stops_the_pass_before_the_running_container_is_touched() {
    let env = TestEnv::new("rostate");
    let (v1, v2) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(WEB_V2, "web:v2"),
    );
    env.write_compose(&web_v(&v1));
    env.apply_ok();
    let before = env.container("web");
    let _ro = Mounted::read_only_bind(env.state.path());

    env.write_compose(&web_v(&v2));
    let out = env.run("apply", &[]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("Read-only file system"),
        "a clear error:\n{out}"
    );
    let after = env.container("web");
    assert_eq!(
        (&after.id, &after.image, after.is_running()),
        (&before.id, &before.image, true),
        "the running container was touched:\n{out}"
    );
}

fn subfolders(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().unwrap().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn old_checkouts_and_revision_folders_are_pruned_but_never_data_a_container_wrote() {
    let env = TestEnv::new("prune");
    let remote = GitRemote::new(&env);
    let v1 = env.registry.push(WEB_V1, "web:v1");
    let url = remote.url();
    let compose = |n: usize, command: &str| {
        format!(
            "services:\n  web:\n    image: {v1}\n    volumes: [\"./data:/data\"]\n    environment: {{N: \"{n}\"}}\n{command}    x-reconciler: {{min_ready: 1s}}\n"
        )
    };
    env.write("data/.keep", "");
    // Only the first release's container writes, into the stack's data folder.
    env.write_compose(&compose(
        1,
        "    command: [\"sh\", \"-c\", \"echo precious > /data/note; exec /bin/start\"]\n",
    ));
    let mut commits = vec![remote.commit_and_push("writes data")];
    let apply = || {
        let out = env.reconciler(&["apply", "--repo", &url]);
        assert_eq!(out.code, 0, "apply should converge:\n{out}");
    };
    apply();
    let stacks = env.state.path().join("stacks").join(env.project());
    let note = env
        .state
        .path()
        .join("data")
        .join(env.project())
        .join("data/note");
    wait_for("the container to write its note", WAIT, || note.exists());
    // A container of an older reconciler wrote into its revision folder.
    let written = stacks.join(&commits[0]).join("data/note");
    std::fs::write(&written, "precious\n").unwrap();
    for n in 2..=6 {
        env.write_compose(&compose(n, ""));
        commits.push(remote.commit_and_push(&format!("release {n}")));
        apply();
    }
    // Commits that change nothing still make checkouts.
    for n in 0..3 {
        env.write("README", &format!("{n}"));
        commits.push(remote.commit_and_push(&format!("readme {n}")));
        apply();
    }
    let running = env.container("web");
    assert_eq!(
        running.label("reconciler.revision"),
        Some(commits[5].as_str())
    );

    let checkouts = subfolders(&env.state.path().join("checkouts"));
    assert!(
        !checkouts.contains(&commits[0]) && !checkouts.contains(&commits[4]),
        "old checkouts are pruned; left: {checkouts:?}"
    );
    assert!(checkouts.contains(commits.last().unwrap()), "{checkouts:?}");
    assert!(checkouts.len() <= 5, "{checkouts:?}");

    let revisions = subfolders(&stacks);
    assert!(
        revisions.contains(&commits[5]),
        "the running container's folder is kept: {revisions:?}"
    );
    assert!(
        !revisions.contains(&commits[1]) && !revisions.contains(&commits[2]),
        "unchanged old revision folders are pruned: {revisions:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&written).unwrap(),
        "precious\n",
        "a folder a container wrote to is kept: {revisions:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&note).unwrap(),
        "precious\n",
        "the stack's data folder is never pruned"
    );
}
