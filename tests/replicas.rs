//! `deploy.replicas` / `scale` against the real engine: numbered containers as Compose makes
//! them, rolled one at a time, scaled back down without losing a volume.
mod common;
use common::*;

const NUMBER_LABEL: &str = "com.docker.compose.container-number";

/// `replicas` containers of `image` sharing the named volume `data`, with `ports` lines.
fn web(image: &str, replicas: u32, ports: &str) -> String {
    format!(
        "services:\n  web:\n    image: {image}\n    volumes: [\"data:/data\"]\n{ports}    deploy:\n      replicas: {replicas}\n{HEALTHCHECK}    x-reconciler: {{health_timeout: 30s}}\nvolumes:\n  data: {{}}\n"
    )
}

/// Replica `n` of the main stack's `web`, by Compose's name.
#[track_caller]
fn replica(env: &TestEnv, n: u32) -> Container {
    let name = format!("{}-web-{n}", env.project());
    let all = env.project_containers(env.project());
    let names = container_names(&all);
    all.into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no {name}; the stack has {names:?}"))
}

fn started_at(c: &Container) -> String {
    c.inspect["State"]["StartedAt"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn volume_exists(name: &str) -> bool {
    docker(&["volume", "inspect", name]).success()
}

#[test]
fn three_replicas_run_roll_one_at_a_time_and_scale_back_to_one() {
    let env = TestEnv::new("i8r-replicas");
    let (v1, v2) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(WEB_V2, "web:v2"),
    );
    env.write_compose(&web(&v1, 3, ""));

    env.apply_ok();

    let volume = format!("{}_data", env.project());
    let first: Vec<Container> = (1..=3).map(|n| replica(&env, n)).collect();
    for (c, n) in first.iter().zip(1..) {
        assert_eq!(
            c.label(NUMBER_LABEL),
            Some(n.to_string().as_str()),
            "{}",
            c.name
        );
        assert_eq!(c.service(), Some("web"));
        assert_eq!(c.label(PROJECT_LABEL), Some(env.project()));
        assert_eq!(
            (c.state.as_str(), c.health.as_deref(), c.image.as_str()),
            ("running", Some("healthy"), v1.as_str())
        );
        let mounts = c.inspect["Mounts"].to_string();
        assert!(mounts.contains(&volume), "{} mounts {mounts}", c.name);
    }
    assert_eq!(env.containers().len(), 3, "{:?}", env.containers());
    let status = env.reconciler(&["status", "-o", "json"]);
    assert!(status.stdout.contains("\"replicas\": \"3/3\""), "{status}");
    assert!(status.stdout.contains("\"sync\": \"Synced\""), "{status}");

    // An image update replaces each replica in turn, under the same names and numbers.
    env.write_compose(&web(&v2, 3, ""));
    let diff = env.run("diff", &[]);
    assert_eq!(diff.code, 1, "{diff}");
    assert!(
        diff.stdout
            .contains(&format!("{}-web-3: update", env.project())),
        "{diff}"
    );
    env.apply_ok();
    let second: Vec<Container> = (1..=3).map(|n| replica(&env, n)).collect();
    for (new, old) in second.iter().zip(&first) {
        assert_ne!(new.id, old.id, "{} was not replaced", new.name);
        assert_eq!(new.label(NUMBER_LABEL), old.label(NUMBER_LABEL));
        assert_eq!(new.image, v2);
        assert!(old.refresh().is_none(), "old {} is left", old.name);
    }
    // One at a time: each replacement started after the one before it was proven healthy.
    let starts: Vec<String> = second.iter().map(started_at).collect();
    assert!(starts[0] < starts[1] && starts[1] < starts[2], "{starts:?}");
    assert_eq!(env.containers().len(), 3, "{:?}", env.containers());
    let update = env.journal().pop().unwrap();
    assert_eq!(
        (update["action"].as_str(), update["result"].as_str()),
        (Some("update"), Some("ok"))
    );

    // Back to one: -3 and -2 go, -1 and the volume stay.
    env.write_compose(&web(&v2, 1, ""));
    let diff = env.run("diff", &[]);
    assert!(diff.stdout.contains("scale 3 -> 1"), "{diff}");
    env.apply_ok();
    let names: Vec<String> = env.containers().into_iter().map(|c| c.0).collect();
    assert_eq!(names, [format!("{}-web-1", env.project())]);
    assert_eq!(
        replica(&env, 1).id,
        second[0].id,
        "replica 1 was kept as it was"
    );
    assert!(volume_exists(&volume), "the volume {volume} was removed");
    let scale = env.journal().pop().unwrap();
    assert_eq!(
        (scale["action"].as_str(), scale["result"].as_str()),
        (Some("scale"), Some("ok"))
    );
    let again = env.apply_ok();
    assert!(again.stdout.contains("0 services changed"), "{again}");
}

#[test]
fn replicas_published_on_a_host_port_range_each_bind_their_own() {
    let env = TestEnv::new("i8r-replica-ports");
    let v1 = env.registry.push(WEB_V1, "web:v1");
    env.write_compose(&web(&v1, 3, "    ports: [\"127.0.0.1:18450-18452:80\"]\n"));

    env.apply_ok();

    let mut bound: Vec<String> = (1..=3)
        .map(|n| {
            let c = replica(&env, n);
            c.inspect["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"]
                .as_str()
                .unwrap_or_else(|| {
                    panic!(
                        "{} binds no host port: {}",
                        c.name, c.inspect["NetworkSettings"]["Ports"]
                    )
                })
                .to_string()
        })
        .collect();
    bound.sort();
    assert_eq!(bound, ["18450", "18451", "18452"]);
    for port in bound {
        assert_eq!(
            http_get(&format!("127.0.0.1:{port}"), "/").as_deref(),
            Some("v1\n"),
            "port {port}"
        );
    }
}
