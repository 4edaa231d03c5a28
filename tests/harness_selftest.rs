//! The harness the end-to-end tests stand on, checked against the real engine: if one of these
//! fails, the other e2e failures say nothing about the reconciler.

mod common;

use common::*;
use std::panic::{catch_unwind, AssertUnwindSafe};

fn local(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

#[test]
fn test_images_are_rebuilt_only_when_their_content_changes() {
    ensure_images();
    let before: Vec<_> = ALL_IMAGES.iter().map(|i| image_id(i)).collect();
    assert!(
        before.iter().all(Option::is_some),
        "images missing after the build: {before:?}"
    );

    let (ok, out) = sh(concat!(
        "bash ",
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/images/build.sh"
    ));
    assert!(ok, "{out}");

    let after: Vec<_> = ALL_IMAGES.iter().map(|i| image_id(i)).collect();
    assert_eq!(
        before, after,
        "a second build of the same content must keep the images"
    );
}

#[test]
fn a_port_handed_to_one_test_process_is_held_against_every_other() {
    let port = free_port();
    assert_ne!(
        free_port(),
        port,
        "never the same port twice in one process"
    );
    // Another process (util-linux's flock, as a second test process would) cannot claim it.
    let claim = format!("/tmp/reconciler-test-ports/{port}");
    let (taken, out) = sh(&format!("flock -n {claim} true"));
    assert!(
        !taken && out.trim().is_empty(),
        "another process took the claim on {port}, or flock failed:\n{out}"
    );
}

#[test]
fn web_images_serve_their_version_and_only_unhealthy_fails_the_compose_healthcheck() {
    let env = TestEnv::new("selftest-images");
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    // The exec-form healthcheck from a Compose file, as the e2e tests write it.
    let service = |name: &str, image: &str, port: u16| {
        format!(
            "  {name}:\n    image: {image}\n    ports: [\"127.0.0.1:{port}:80\"]\n{HEALTHCHECK}"
        )
    };
    env.write_compose(&format!(
        "services:\n{}{}{}",
        service("v1", WEB_V1, p1),
        service("v2", WEB_V2, p2),
        service("sick", UNHEALTHY, p3)
    ));
    env.compose("up -d");

    let of = |service: &str| {
        env.project_containers(env.project())
            .into_iter()
            .find(|c| c.service() == Some(service))
            .unwrap_or_else(|| panic!("docker-compose did not create {service}"))
    };
    let health = |service: &str| of(service).health.unwrap_or_default();
    wait_for("v1 and v2 to be healthy", WAIT, || {
        health("v1") == "healthy" && health("v2") == "healthy"
    });
    wait_for("the unhealthy image to turn unhealthy", WAIT, || {
        health("sick") == "unhealthy"
    });

    assert_eq!(http_get(&local(p1), "/").as_deref(), Some("v1\n"));
    assert_eq!(http_get(&local(p2), "/").as_deref(), Some("v2\n"));
    assert_eq!(
        http_get(&local(p3), "/").as_deref(),
        Some("broken\n"),
        "it still serves /"
    );
    assert_eq!(
        http_request(&local(p3), "/health").map(|r| r.status),
        Some(404)
    );
    assert!(container_logs(&of("sick").id).contains("web broken starting"));

    let v1 = of("v1");
    assert_eq!(v1.env_var("IMAGE_DEFAULT").as_deref(), Some("from-image"));
    assert!(v1.is_running());
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
        logs.contains("crasher starting") && logs.contains("cannot open database"),
        "crasher logs:\n{logs}"
    );

    wait_for("the worker to log", WAIT, || {
        container_logs(&worker).contains("worker: tick 1")
    });
    // Exit code 0, not 137, shows the trap ran: the stop did not wait for SIGKILL.
    docker_ok(&["stop", "-t", "20", &worker, &web]);
    for id in [&worker, &web] {
        let logs = container_logs(id);
        assert_eq!(inspect(id)["State"]["ExitCode"], 0, "logs:\n{logs}");
        assert!(logs.contains("stopping on SIGTERM"), "logs:\n{logs}");
    }
}

#[test]
fn registry_serves_pushed_images_and_pulls_fail_while_it_is_down() {
    let mut env = TestEnv::new("selftest-registry");
    let image = env.registry.push(WEB_V1, "selftest/web:v1");
    assert_eq!(image, format!("{}/selftest/web:v1", env.registry.addr));
    assert!(
        !image_exists(&image),
        "a push leaves no local copy, so the engine has to pull"
    );

    docker_ok(&["pull", &image]);
    assert_eq!(image_id(&image), image_id(WEB_V1));
    let port = free_port();
    env.docker_run(&["-p", &format!("127.0.0.1:{port}:80"), &image]);
    wait_for("the pulled image to serve", WAIT, || {
        http_get(&local(port), "/").as_deref() == Some("v1\n")
    });
    let by_digest = env.registry.digest_ref("selftest/web:v1");
    docker_ok(&["pull", &by_digest]);

    // Untagging the last tag of the repository drops its digest reference too.
    docker_ok(&["image", "rm", &image]);
    assert!(!image_exists(&by_digest));
    env.registry.stop();
    assert!(!env.registry.is_up());
    let pull = docker(&["pull", &image]);
    assert!(
        !pull.success(),
        "a pull must fail while the registry is down:\n{pull}"
    );

    env.registry.restart();
    assert!(env.registry.is_up());
    docker_ok(&["pull", &image]);

    // Moving a tag: the same reference now pulls the other image.
    env.registry.push(WEB_V2, "selftest/web:v1");
    docker_ok(&["pull", &image]);
    assert_eq!(image_id(&image), image_id(WEB_V2));
}

#[test]
fn guard_removes_what_the_test_created_even_when_the_test_panics() {
    let bystanders = TestEnv::new("selftest-bystander");
    let bystander = bystanders.docker_run(&[WORKER]);

    let env = TestEnv::new("selftest-guard");
    let main = env.project().to_string();
    let extra = env.extra_project("second");
    let started_by_test = env.docker_run(&[WORKER]);
    // Made the way the reconciler or Compose would make them, not through the harness, so only
    // the project label or name ties them to the test.
    for project in [&main, &extra] {
        let label = format!("{PROJECT_LABEL}={project}");
        let network = format!("{project}_default");
        let volume = format!("{project}_data");
        docker_ok(&["network", "create", "--label", &label, &network]);
        docker_ok(&["volume", "create", "--label", &label, &volume]);
        docker_ok(&[
            "run",
            "-d",
            "--name",
            &format!("{project}-web-1"),
            "--label",
            &label,
            "--network",
            &network,
            "-v",
            &format!("{volume}:/data"),
            WORKER,
        ]);
    }
    docker_ok(&["volume", "create", &format!("{main}_unlabelled")]);
    let pushed = env.registry.push(WEB_V1, "doomed/web:v1");
    docker_ok(&["pull", &pushed]);
    let registry = env.registry.addr.clone();

    let outcome = catch_unwind(AssertUnwindSafe(move || {
        let _env = env;
        panic!("the test body fails");
    }));
    assert!(outcome.is_err());

    for project in [&main, &extra] {
        let left = containers_with_label(&format!("{PROJECT_LABEL}={project}"));
        assert!(left.is_empty(), "containers left behind: {left:?}");
        for kind in ["network", "volume"] {
            let left = docker_ok(&[kind, "ls", "-q", "--filter", &format!("name={project}_")]);
            assert!(left.trim().is_empty(), "{kind}s left behind: {left}");
        }
    }
    assert!(
        try_inspect(&started_by_test).is_none(),
        "docker_run container left behind"
    );
    assert!(!image_exists(&pushed), "registry reference left behind");
    assert!(image_exists(WEB_V1), "the base test image must survive");
    assert!(
        http_request(&registry, "/v2/").is_none(),
        "registry still running"
    );
    assert!(
        try_inspect(&bystander).is_some(),
        "another env's container was removed"
    );
}

#[test]
fn the_reconciler_binary_runs_with_the_env_state_dir() {
    let env = TestEnv::new("selftest-binary");
    let out = env.reconciler(&["--version"]);
    out.assert_code(0);
    assert!(out.stdout.contains("reconciler"), "{out}");
}
