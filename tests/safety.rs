//! Nothing outside the desired stacks is touched, no volume is deleted, and an update killed
//! half-way is finished or undone by the next run.
mod common;
use common::*;

#[test]
fn containers_outside_the_desired_stacks_are_never_touched() {
    let env = TestEnv::new("safeoutside");
    let v1 = env.registry.push(WEB_V1, "web:v1");
    // A stranger with no labels, and one of another Compose project.
    let stranger = format!("{}-stranger", env.project());
    let other = format!("{}-other", env.project());
    sh(&format!("docker run -d --name {stranger} {WEB_V1}"));
    sh(&format!("docker run -d --name {other} --label com.docker.compose.project={other} --label com.docker.compose.service=x {WEB_V1}"));
    env.write(
        "compose.yaml",
        &format!("services:\n  web:\n    image: {v1}\n    x-reconciler: {{min_ready: 1s}}\n"),
    );
    env.run("apply", &["--prune"]);
    let (_, states) = sh(&format!(
        "docker inspect -f '{{{{.State.Status}}}}' {stranger} {other}"
    ));
    sh(&format!("docker rm -f {stranger} {other}"));
    assert_eq!(states.trim(), "running\nrunning");
}

#[test]
fn pruning_a_removed_service_keeps_its_volume() {
    let env = TestEnv::new("safeprune");
    let v1 = env.registry.push(WEB_V1, "web:v1");
    let service = |name: &str| {
        format!("  {name}:\n    image: {v1}\n    volumes: [data:/data]\n    x-reconciler: {{min_ready: 1s}}\n")
    };
    env.write(
        "compose.yaml",
        &format!(
            "services:\n{}{}volumes:\n  data:\n",
            service("a"),
            service("b")
        ),
    );
    env.apply_ok();
    env.write(
        "compose.yaml",
        &format!("services:\n{}volumes:\n  data:\n", service("a")),
    );
    let diff = env.run("diff", &[]);
    assert!(
        diff.stdout.contains("? b: orphan"),
        "without --prune b is only reported:\n{diff}"
    );
    let run = env.run("apply", &["--prune"]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(env.containers().len(), 1);
    let (ok, _) = sh(&format!("docker volume inspect {}_data", env.project()));
    assert!(ok, "the volume must survive");
}

#[test]
fn an_update_killed_after_the_old_container_was_renamed_is_restored_by_the_next_run() {
    let env = TestEnv::new("safecrash");
    let (v1, v2) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(WEB_V2, "web:v2"),
    );
    let port = free_port();
    let compose = |image: &str| {
        format!("services:\n  web:\n    image: {image}\n    ports: [\"127.0.0.1:{port}:80\"]\n{HEALTHCHECK}")
    };
    env.write("compose.yaml", &compose(&v1));
    env.apply_ok();
    env.write("compose.yaml", &compose(&v2));
    for failpoint in ["after-rename-old", "after-start", "before-remove-old"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_reconciler"))
            .env("RECONCILER_FAILPOINT", failpoint)
            .args([
                "--state-dir",
                env.state.path().to_str().unwrap(),
                "apply",
                "--repo",
                env.repo.path().to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(99),
            "{failpoint}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The next run resolves the leftovers from names and labels alone and converges.
        let run = env.apply_ok();
        let containers = env.containers();
        assert_eq!(
            containers.len(),
            1,
            "{failpoint}: no duplicates: {containers:?}\n{run}"
        );
        assert!(
            containers[0].2.ends_with("web:v2") && containers[0].3 == "running",
            "{failpoint}: {containers:?}"
        );
        assert_eq!(
            http_get(&format!("127.0.0.1:{port}"), "/").as_deref(),
            Some("v2\n")
        );
        // Back to v1 for the next failpoint.
        env.write("compose.yaml", &compose(&v1));
        env.apply_ok();
        env.write("compose.yaml", &compose(&v2));
    }
}

#[test]
fn with_every_stack_suspended_other_projects_leftovers_are_not_touched() {
    let env = TestEnv::new("safesuspended");
    let v1 = env.registry.push(WEB_V1, "web:v1");
    env.write(
        "compose.yaml",
        &format!("services:\n  web:\n    image: {v1}\n    x-reconciler: {{min_ready: 1s}}\n"),
    );
    env.apply_ok();
    // Another project's container that looks like an interrupted update's backup.
    let other = env.extra_project("other");
    let leftover = format!("{other}-web-1-reconciler-old");
    env.docker_run(&[
        "--name",
        &leftover,
        "--label",
        &format!("com.docker.compose.project={other}"),
        "--label",
        "com.docker.compose.service=web",
        WEB_V1,
    ]);
    assert_eq!(env.reconciler(&["suspend", env.project()]).code, 0);
    env.run("apply", &[]).assert_code(0);
    let (ok, state) = sh(&format!(
        "docker inspect -f '{{{{.Name}}}} {{{{.State.Status}}}}' {leftover}"
    ));
    assert!(
        ok && state.trim() == format!("/{leftover} running"),
        "untouched: {state}"
    );
}
