//! The harness the end-to-end tests stand on, checked against the real engine: if one of these
//! fails, the other e2e failures say nothing about the reconciler.

mod common;

use common::*;
use std::panic::{catch_unwind, AssertUnwindSafe};

#[test]
fn test_images_are_rebuilt_only_when_their_content_changes() {
    ensure_images();
    let before: Vec<_> = ALL_IMAGES.iter().map(|i| image_id(i)).collect();
    assert!(
        before.iter().all(Option::is_some),
        "images missing after build: {before:?}"
    );

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/images/build.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let after: Vec<_> = ALL_IMAGES.iter().map(|i| image_id(i)).collect();
    assert_eq!(
        before, after,
        "a second build with the same content must keep the same images"
    );
}

#[test]
fn web_images_serve_their_version_and_only_unhealthy_fails_the_compose_healthcheck() {
    let env = TestEnv::new("selftest-images");
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    // Exec-form healthcheck from a Compose file, as the e2e tests write it.
    env.write_compose(
        "web",
        &format!(
            "services:\n\
             \x20 v1:\n    image: {WEB_V1}\n    ports: [\"127.0.0.1:{p1}:80\"]\n{WEB_HEALTHCHECK}\
             \x20 v2:\n    image: {WEB_V2}\n    ports: [\"127.0.0.1:{p2}:80\"]\n{WEB_HEALTHCHECK}\
             \x20 sick:\n    image: {UNHEALTHY}\n    ports: [\"127.0.0.1:{p3}:80\"]\n{WEB_HEALTHCHECK}"
        ),
    );
    env.compose_ok("web", &["up", "-d"]);

    let health = |service: &str| {
        env.containers("web")
            .into_iter()
            .find(|c| c.service() == Some(service))
            .and_then(|c| c.health)
    };
    wait_for("v1 and v2 to be healthy", WAIT, || {
        health("v1").as_deref() == Some("healthy") && health("v2").as_deref() == Some("healthy")
    });
    wait_for("the unhealthy image to be unhealthy", WAIT, || {
        health("sick").as_deref() == Some("unhealthy")
    });

    assert_eq!(http_body(p1, "/").as_deref(), Some("v1"));
    assert_eq!(http_body(p2, "/").as_deref(), Some("v2"));
    assert_eq!(
        http_body(p3, "/").as_deref(),
        Some("unhealthy"),
        "it still serves /"
    );
    assert_eq!(http_get(p3, "/health").map(|r| r.status), Some(404));

    let v1 = env
        .containers("web")
        .into_iter()
        .find(|c| c.service() == Some("v1"))
        .unwrap();
    assert_eq!(v1.env_var("IMAGE_DEFAULT").as_deref(), Some("from-image"));
}

#[test]
fn workloads_exit_cleanly_on_sigterm_and_the_crasher_fails_with_its_logs() {
    let env = TestEnv::new("selftest-signals");
    let crasher = env.docker_run(&[CRASHER]);
    let worker = env.docker_run(&[WORKER]);
    let web = env.docker_run(&[WEB_V1]);

    wait_for("the crasher to exit", WAIT, || {
        inspect(&crasher)["State"]["Status"] == "exited"
    });
    assert_eq!(inspect(&crasher)["State"]["ExitCode"], 1);
    let logs = container_logs(&crasher);
    assert!(
        logs.contains("crasher starting") && logs.contains("fatal"),
        "crasher logs:\n{logs}"
    );

    wait_for("the worker to log", WAIT, || {
        container_logs(&worker).contains("worker: tick 1")
    });
    // Exit code 0 rather than 137 shows the trap ran: the stop did not wait for SIGKILL.
    docker_ok(&["stop", "-t", "20", &worker, &web]);
    for id in [&worker, &web] {
        assert_eq!(
            inspect(id)["State"]["ExitCode"],
            0,
            "logs:\n{}",
            container_logs(id)
        );
        assert!(container_logs(id).contains("stopping on SIGTERM"));
    }
}

#[test]
fn registry_serves_pushed_images_and_pulls_fail_while_it_is_down() {
    let env = TestEnv::new("selftest-registry");
    let registry = env.registry();
    let image = registry.push(WEB_V1, "selftest/web:v1");
    assert_eq!(image, format!("{}/selftest/web:v1", registry.addr()));
    assert!(
        !image_exists(&image),
        "push must leave no local copy, so the engine has to pull"
    );

    docker_ok(&["pull", &image]);
    assert_eq!(image_id(&image), image_id(WEB_V1));
    let port = free_port();
    env.docker_run(&["-p", &format!("127.0.0.1:{port}:80"), &image]);
    wait_for("the pulled image to serve", WAIT, || {
        http_body(port, "/").as_deref() == Some("v1")
    });

    let digest = registry.digest_ref("selftest/web:v1");
    docker_ok(&["pull", &digest]);

    docker_ok(&["image", "rm", &image, &digest]);
    registry.stop();
    assert!(!registry.is_up());
    let pull = docker(&["pull", &image]);
    assert!(
        !pull.success(),
        "a pull must fail while the registry is down:\n{pull}"
    );

    registry.start_again();
    docker_ok(&["pull", &image]);

    // Moving a tag: the same reference now pulls the other image.
    registry.push(WEB_V2, "selftest/web:v1");
    docker_ok(&["pull", &image]);
    assert_eq!(image_id(&image), image_id(WEB_V2));
}

#[test]
fn guard_removes_what_the_test_created_even_when_the_test_panics() {
    let bystanders = TestEnv::new("selftest-bystander");
    let bystander = bystanders.docker_run(&[WORKER]);

    let env = TestEnv::new("selftest-guard");
    let project = env.project("doomed");
    let label = format!("{PROJECT_LABEL}={project}");
    // Made the way the reconciler or Compose would make them, not through the harness helpers,
    // so only the project label ties them to the test.
    docker_ok(&[
        "network",
        "create",
        "--label",
        &label,
        &format!("{project}_default"),
    ]);
    docker_ok(&[
        "volume",
        "create",
        "--label",
        &label,
        &format!("{project}_data"),
    ]);
    docker_ok(&["volume", "create", &format!("{project}_unlabelled")]);
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &format!("{project}-web-1"),
        "--label",
        &label,
        "--network",
        &format!("{project}_default"),
        "-v",
        &format!("{project}_data:/data"),
        WORKER,
    ]);
    let pushed = env.registry().push(WEB_V1, "doomed/web:v1");
    docker_ok(&["pull", &pushed]);
    let registry_port = env.registry().port();

    let outcome = catch_unwind(AssertUnwindSafe(move || {
        let _env = env;
        panic!("the test body fails");
    }));
    assert!(outcome.is_err());

    assert!(
        containers_with_label(&label).is_empty(),
        "containers left behind"
    );
    for kind in ["network", "volume"] {
        let left = docker_ok(&[kind, "ls", "-q", "--filter", &format!("name={project}_")]);
        assert!(left.trim().is_empty(), "{kind}s left behind: {left}");
    }
    assert!(!image_exists(&pushed), "registry reference left behind");
    assert!(image_exists(WEB_V1), "the base test image must survive");
    assert!(
        http_get(registry_port, "/v2/").is_none(),
        "registry still running"
    );
    assert!(
        try_inspect(&bystander).is_some(),
        "another env's container was removed"
    );
}

#[test]
fn reconciler_binary_runs_from_the_harness() {
    let env = TestEnv::new("selftest-binary");
    let out = env.reconciler(&["--version"]);
    out.assert_code(0);
    assert!(out.stdout.contains("reconciler"), "{out}");
}
