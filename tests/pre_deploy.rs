//! `x-reconciler.pre_deploy` against the real engine: the job runs in a one-off container of
//! the new image, on the service's volume, before the old container is stopped; a failing one
//! runs once, however many passes follow, and the old version keeps serving.
mod common;
use common::*;
use std::time::Duration;

const SECRET: &str = "hunter2-very-secret";

/// The web service on `port`, with the volume `data`, a host-local secret in its env and the
/// `pre_deploy` command `job` (a YAML flow list).
fn web(image: &str, port: u16, job: &str) -> String {
    format!(
        "services:\n  web:\n    image: {image}\n    ports: [\"127.0.0.1:{port}:80\"]\n    environment:\n      DB_PASSWORD: ${{DB_PASSWORD}}\n    volumes: [\"data:/data\"]\n{HEALTHCHECK}    x-reconciler:\n      health_timeout: 30s\n      pre_deploy:\n        command: {job}\n        timeout: 1m\nvolumes:\n  data: {{}}\n"
    )
}

/// A file in the volume, read through the service's running container.
fn read_in_service(env: &TestEnv, path: &str) -> String {
    let id = env.container_id("web");
    let out = docker(&["exec", &id, "cat", path]);
    assert!(out.success(), "cat {path}: {out}");
    out.stdout
}

/// The stack's one-off containers, whatever their state.
fn one_offs(env: &TestEnv) -> Vec<Container> {
    env.project_containers(env.project())
        .into_iter()
        .filter(|c| c.label("com.docker.compose.oneoff") == Some("True"))
        .collect()
}

#[test]
fn a_failing_migration_runs_once_across_passes_and_the_old_version_keeps_serving() {
    let env = TestEnv::new("pre-deploy-fail");
    env.write_host_env(&format!("DB_PASSWORD={SECRET}\n"));
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let (v1, v2) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(WEB_V2, "web:v2"),
    );
    env.write_compose(&web(&v1, port, r#"["sh", "-c", "echo v1 >> /data/runs"]"#));
    env.apply_ok();
    let old = env.container_id("web");
    assert_eq!(read_in_service(&env, "/data/runs"), "v1\n");

    // Each run of the failing job leaves a line; its output names the secret.
    env.write_compose(&web(
        &v2,
        port,
        r#"["sh", "-c", "echo v2 >> /data/runs; echo \"cannot log in with $$DB_PASSWORD\"; exit 3"]"#,
    ));
    let first = env.run("apply", &[]);
    assert_ne!(first.code, 0, "a failed job fails the release:\n{first}");
    for _ in 0..2 {
        env.run("apply", &[]);
    }

    assert_eq!(
        read_in_service(&env, "/data/runs"),
        "v1\nv2\n",
        "the failing job ran exactly once"
    );
    assert_eq!(
        env.container_id("web"),
        old,
        "the old container was never replaced"
    );
    assert!(env.container("web").is_running());
    assert_eq!(http_get(&addr, "/").as_deref(), Some("v1\n"));
    assert!(
        one_offs(&env).is_empty(),
        "{:?}",
        container_names(&one_offs(&env))
    );

    let history = env.reconciler(&["history"]);
    assert!(
        history.stdout.contains("pre_deploy job exited with code 3"),
        "{history}"
    );
    assert!(!history.combined().contains(SECRET), "{history}");
    let history = env.reconciler(&["history", "-o", "json"]);
    assert!(
        history.stdout.contains("cannot log in with (hidden)"),
        "{history}"
    );
    assert!(!history.combined().contains(SECRET), "{history}");
    let journal = std::fs::read_to_string(env.state.path().join("journal.jsonl")).unwrap();
    assert!(journal.contains("cannot log in with (hidden)"), "{journal}");
    assert!(!journal.contains(SECRET));
    for out in [&first, &env.reconciler(&["status", "-o", "json"])] {
        assert!(!out.combined().contains(SECRET), "{out}");
    }

    // A person's retry runs it once more.
    env.reconciler(&["retry", env.project(), "web"]);
    env.run("apply", &[]);
    assert_eq!(read_in_service(&env, "/data/runs"), "v1\nv2\nv2\n");
}

#[test]
fn a_passing_migration_writes_into_the_volume_before_the_new_container_starts() {
    let env = TestEnv::new("pre-deploy-pass");
    env.write_host_env(&format!("DB_PASSWORD={SECRET}\n"));
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let (v1, v2) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(WEB_V2, "web:v2"),
    );
    env.write_compose(&web(&v1, port, r#"["true"]"#));
    env.apply_ok();
    let old = env.container_id("web");

    // The job takes a few seconds, so a watcher sees its container while it runs.
    env.write_compose(&web(
        &v2,
        port,
        r#"["sh", "-c", "sleep 3; echo schema-v2 > /data/schema"]"#,
    ));
    let watcher = {
        let project = env.project().to_string();
        std::thread::spawn(move || {
            let filter = format!("{PROJECT_LABEL}={project}");
            let mut seen = None;
            wait_until(Duration::from_secs(60), || {
                seen = containers_with_label(&filter)
                    .into_iter()
                    .find(|c| c.label("reconciler.oneoff").is_some());
                seen.is_some()
            });
            seen
        })
    };
    let apply = env.apply_ok();
    let job = watcher
        .join()
        .unwrap()
        .expect("the job's container was seen");

    assert!(
        job.name
            .starts_with(&format!("{}-web-pre-deploy-", env.project())),
        "{}",
        job.name
    );
    assert_eq!(job.image, v2);
    for (label, value) in [
        (PROJECT_LABEL, env.project()),
        (SERVICE_LABEL, "web"),
        ("com.docker.compose.oneoff", "True"),
        ("reconciler.oneoff", "pre-deploy"),
    ] {
        assert_eq!(job.label(label), Some(value), "{label} on {}", job.name);
    }
    assert!(job.inspect["HostConfig"]["PortBindings"]
        .as_object()
        .is_none_or(|p| p.is_empty()));
    // Traffic for the service never reaches the job: it answers to no service alias.
    let networks = job.inspect["NetworkSettings"]["Networks"]
        .as_object()
        .unwrap();
    assert!(!networks.is_empty());
    for (network, endpoint) in networks {
        let aliases = endpoint["Aliases"].to_string();
        assert!(!aliases.contains("\"web\""), "{network}: {aliases}");
    }
    assert!(one_offs(&env).is_empty(), "removed afterwards");

    // The new container sees what the job wrote, and it was written before it started.
    let new = env.container("web");
    assert_ne!(new.id, old);
    assert_eq!(read_in_service(&env, "/data/schema"), "schema-v2\n");
    let written: i64 = docker(&["exec", &new.id, "stat", "-c", "%Y", "/data/schema"])
        .stdout
        .trim()
        .parse()
        .unwrap();
    let started_at = new.inspect["State"]["StartedAt"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, started) = sh(&format!("date -d '{started_at}' +%s"));
    let started: i64 = started.trim().parse().unwrap();
    assert!(written <= started, "written {written}, started {started}");
    assert_eq!(http_get(&addr, "/").as_deref(), Some("v2\n"));
    assert!(!apply.combined().contains(SECRET));
}

#[test]
fn validate_names_the_file_line_and_key_of_a_bad_pre_deploy() {
    let repo = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let dir = repo.path().join("shop");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("compose.yaml"),
        "services:\n  web:\n    image: web:1\n    x-reconciler:\n      pre_deploy:\n        command: []\n        timout: 1m\n",
    )
    .unwrap();

    let out = validate_offline(repo.path(), state.path(), &[]);

    assert_ne!(out.code, 0, "{out}");
    let text = out.combined();
    assert!(
        text.contains("compose.yaml:6: services.web.x-reconciler.pre_deploy.command"),
        "{text}"
    );
    assert!(text.contains("the command is empty"), "{text}");
    assert!(
        text.contains("compose.yaml:7: services.web.x-reconciler.pre_deploy.timout"),
        "{text}"
    );
}

#[test]
fn a_job_a_crash_left_running_is_removed_by_the_next_pass_which_runs_the_job_again() {
    let env = TestEnv::new("pre-deploy-crash");
    env.write_host_env(&format!("DB_PASSWORD={SECRET}\n"));
    let port = free_port();
    let (v1, v2) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(WEB_V2, "web:v2"),
    );
    env.write_compose(&web(&v1, port, r#"["true"]"#));
    env.apply_ok();
    let old = env.container_id("web");
    env.write_compose(&web(
        &v2,
        port,
        r#"["sh", "-c", "echo run >> /data/runs; sleep 2"]"#,
    ));
    let repo = env.repo.path().to_str().unwrap().to_string();

    let crashed = env.reconciler_with_env(
        &["apply", "--repo", &repo],
        &[("RECONCILER_FAILPOINT", "after-start-pre-deploy")],
    );

    assert_eq!(crashed.code, 99, "{crashed}");
    assert_eq!(one_offs(&env).len(), 1, "the job's container was left");
    assert_eq!(
        env.container_id("web"),
        old,
        "the old container still serves"
    );

    env.apply_ok();

    assert!(
        one_offs(&env).is_empty(),
        "{:?}",
        container_names(&one_offs(&env))
    );
    let new = env.container("web");
    assert_eq!(new.image, v2);
    // The crashed run recorded nothing; the next pass ran the job to its end.
    let records = env
        .state
        .path()
        .join("jobs")
        .join(env.project())
        .join("web.json");
    let records = std::fs::read_to_string(&records).unwrap();
    assert_eq!(
        records.matches("\"result\": \"ok\"").count(),
        2,
        "{records}"
    );
    let runs = read_in_service(&env, "/data/runs");
    assert!(
        runs.ends_with("run\n") && runs.lines().count() <= 2,
        "{runs}"
    );
}
