//! No secret reaches any output: host-local values, values of secret-looking
//! variables, credentials in a repository URL and the git token stay out of stdout, logs,
//! `/status`, the journal, state files and container labels.
mod common;
use common::*;
use std::path::Path;
use std::time::Duration;

/// Every file under `dir` except the operator's own host-local env files, as one text.
fn state_files_text(dir: &Path) -> String {
    let mut out = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if path.file_name().is_some_and(|n| n == "env") {
                continue;
            }
            for entry in std::fs::read_dir(&path).unwrap().flatten() {
                stack.push(entry.path());
            }
        } else if meta.is_file() {
            out.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        }
    }
    out
}

#[test]
fn a_host_local_value_refused_outside_environment_is_never_printed() {
    let repo = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let secret = "hl-s3cr3t-4a1b";
    std::fs::create_dir_all(repo.path().join("web")).unwrap();
    std::fs::write(
        repo.path().join("web/compose.yaml"),
        "services:\n  web:\n    image: web:1\n    mem_limit: ${X}\n    cpus: ${X}\n    restart: ${X}\n    ports:\n      - \"${X}:80\"\n    environment:\n      A: ${NOPE:?see ${X}}\n",
    )
    .unwrap();
    std::fs::create_dir_all(state.path().join("env")).unwrap();
    std::fs::write(state.path().join("env/web.env"), format!("X={secret}\n")).unwrap();
    let out = validate_offline(repo.path(), state.path(), &[]);
    let text = out.combined();
    assert_eq!(out.code, 2, "{text}");
    for key in ["mem_limit", "cpus", "restart", "ports[0]", "environment.A"] {
        assert!(
            text.contains(&format!("services.web.{key}")),
            "{key}: {text}"
        );
    }
    assert!(!text.contains(secret), "{text}");
}

#[test]
fn credentials_in_the_repo_url_and_the_git_token_are_never_printed() {
    let env = TestEnv::new("secreturl");
    // Nothing listens there: every pass fails to fetch, and says so.
    let dead = free_port();
    let listen = format!("127.0.0.1:{}", free_port());
    let url = format!("https://ops:glpat-url-s3cr3t@127.0.0.1:{dead}/ops/desired.git");
    let run = env.spawn_reconciler(
        &[
            "run",
            "--repo",
            &url,
            "--git-token",
            "tok-flag-s3cr3t",
            "--interval",
            "1s",
            "--listen",
            &listen,
        ],
        &[],
    );
    run.wait_for_output("ops:(hidden)@127.0.0.1", WAIT);
    wait_for("a failed pass in /status", WAIT, || {
        http_get(&listen, "/status").is_some_and(|s| s.contains("cannot fetch"))
    });
    let status = http_get(&listen, "/status").unwrap();
    let metrics = http_get(&listen, "/metrics").unwrap_or_default();
    let out = run.signal_and_wait("TERM", Duration::from_secs(20));
    let everything = format!(
        "{out}\n{status}\n{metrics}\n{}",
        state_files_text(env.state.path())
    );
    assert!(status.contains("ops:(hidden)@"), "{status}");
    for secret in ["glpat-url-s3cr3t", "tok-flag-s3cr3t"] {
        assert!(!everything.contains(secret), "{secret} in:\n{everything}");
    }
}

#[test]
fn a_secret_looking_variable_in_command_is_never_shown_in_diff_labels_or_journal() {
    let env = TestEnv::new("secretcmd");
    let image = env.registry.push(WORKER, "worker:v1");
    let compose = format!(
        "services:\n  worker:\n    image: {image}\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do sleep 1 & wait $$!; done\", \"--\", \"${{WORKER_PASSWORD}}\"]\n    environment:\n      DSN: postgres://app:${{DB_PASS}}@db/app\n      LEVEL: info\n"
    );
    env.write("compose.yaml", &compose);
    env.write(".env", "WORKER_PASSWORD=first-hunter2-pw\n");
    env.write_host_env("DB_PASS=host-local-pw-77\n");
    env.apply_ok();
    env.write(".env", "WORKER_PASSWORD=second-hunter2-pw\n");
    let diff = env.run("diff", &[]);
    assert_eq!(diff.code, 1, "{diff}");
    assert!(
        diff.stdout.contains("command changed (value hidden)"),
        "{diff}"
    );
    env.apply_ok();
    let worker = env.container("worker");
    let labels = inspect(&worker.name)["Config"]["Labels"].to_string();
    // The unkeyed digest the label used to hold for a value is an offline-guessing oracle.
    let unkeyed = |value: &str| {
        let out = sh(&format!("printf %s '{value}' | sha256sum"));
        out.1[..16].to_string()
    };
    for value in [
        "first-hunter2-pw",
        "second-hunter2-pw",
        "host-local-pw-77",
        unkeyed("host-local-pw-77").as_str(),
        unkeyed("postgres://app:host-local-pw-77@db/app").as_str(),
    ] {
        assert!(!labels.contains(value), "{value} in labels {labels}");
        assert!(!diff.to_string().contains(value), "{value} in {diff}");
        let files = state_files_text(env.state.path());
        assert!(!files.contains(value), "{value} in the state dir");
    }
}

#[test]
fn a_secret_in_a_key_or_a_label_name_is_refused_and_never_printed() {
    let repo = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(repo.path().join("web")).unwrap();
    std::fs::write(
        repo.path().join("web/compose.yaml"),
        "services:\n  web:\n    image: web:1\n    environment: [\"X_${API_TOKEN}=1\", \"Y_${DB_PASSWORD}=1\", \"E_${API_TOKEN:-=}=x\"]\n    labels: [\"L_${API_TOKEN}\"]\n    extra_hosts:\n      h1: \"${API_TOKEN}\"\n    logging:\n      options: [\"max-size=10m\", \"${API_TOKEN}\"]\n",
    )
    .unwrap();
    std::fs::write(repo.path().join("web/.env"), "DB_PASSWORD=repo-pass-123\n").unwrap();
    std::fs::create_dir_all(state.path().join("env")).unwrap();
    std::fs::write(state.path().join("env/web.env"), "API_TOKEN=hunter2-host\n").unwrap();
    let out = validate_offline(repo.path(), state.path(), &[]);
    let text = out.combined();
    assert_eq!(out.code, 2, "{text}");
    for key in [
        "environment[0]",
        "environment[1]",
        "environment[2]",
        "labels[0]",
        "extra_hosts",
        "logging.options[1]",
    ] {
        assert!(
            text.contains(&format!("services.web.{key}")),
            "{key}: {text}"
        );
    }
    assert!(
        !text.contains("hunter2-host") && !text.contains("repo-pass-123"),
        "{text}"
    );
}
