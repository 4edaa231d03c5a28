//! `deploy:` as Compose reads it on one host.

use super::*;

fn warnings(body: &str) -> Vec<String> {
    parts(&web(body))
        .warnings
        .iter()
        .map(|w| w.to_string())
        .collect()
}

#[test]
fn restart_policy_conditions_map_onto_the_engines_policies() {
    for (condition, want) in [
        ("none", "no"),
        ("on-failure", "on-failure"),
        ("any", "always"),
    ] {
        let s = spec(&format!(
            "image: web:1\ndeploy:\n  restart_policy:\n    condition: {condition}"
        ));
        assert_eq!(s.restart.as_deref(), Some(want), "{condition}");
    }
    // The specification's default condition is `any`.
    let s = spec("image: web:1\ndeploy:\n  restart_policy: {}");
    assert_eq!(s.restart.as_deref(), Some("always"));
}

#[test]
fn max_attempts_counts_on_failure_restarts_and_is_ignored_with_a_warning_otherwise() {
    let s = spec(
        "image: web:1\ndeploy:\n  restart_policy:\n    condition: on-failure\n    max_attempts: 3",
    );
    assert_eq!(s.restart.as_deref(), Some("on-failure:3"));
    let body = "image: web:1\ndeploy:\n  restart_policy:\n    condition: any\n    max_attempts: 3";
    assert_eq!(spec(body).restart.as_deref(), Some("always"));
    assert!(warnings(body)
        .iter()
        .any(|w| w.contains("max_attempts") && w.contains("only for on-failure")));
}

#[test]
fn restart_policy_wins_over_restart_as_in_compose_and_says_so() {
    let body = "image: web:1\nrestart: unless-stopped\ndeploy:\n  restart_policy:\n    condition: on-failure";
    assert_eq!(spec(body).restart.as_deref(), Some("on-failure"));
    assert!(warnings(body)
        .iter()
        .any(|w| w.contains("wins over `restart: unless-stopped`")));
}

#[test]
fn restart_delay_and_window_are_ignored_with_a_warning() {
    let said =
        warnings("image: web:1\ndeploy:\n  restart_policy:\n    delay: 5s\n    window: 120s");
    assert!(said
        .iter()
        .any(|w| w.contains("restart_policy.delay: 'delay' is ignored")));
    assert!(said
        .iter()
        .any(|w| w.contains("restart_policy.window: 'window' is ignored")));
}

#[test]
fn an_unknown_restart_condition_is_an_error() {
    let p = problem(&web(
        "image: web:1\ndeploy:\n  restart_policy:\n    condition: sometimes",
    ));
    assert_eq!(
        (p.line, p.key.as_str()),
        (6, "services.web.deploy.restart_policy.condition")
    );
}

#[test]
fn reservations_give_a_soft_memory_limit_and_ignore_cpus_with_a_warning() {
    let body = "image: web:1\ndeploy:\n  resources:\n    reservations:\n      memory: 64m\n      cpus: '0.25'";
    assert_eq!(spec(body).resources.mem_reservation, Some(64 * 1024 * 1024));
    assert!(warnings(body)
        .iter()
        .any(|w| w.contains("reservations.cpus: 'cpus' is ignored")));
}

#[test]
fn limits_pids_is_the_containers_pids_limit() {
    let s = spec("image: web:1\ndeploy:\n  resources:\n    limits:\n      pids: 100");
    assert_eq!(s.resources.pids_limit, Some(100));
}

#[test]
fn a_limit_given_twice_with_distinct_values_is_refused_as_compose_refuses_it() {
    let p = problem(&web(
        "image: web:1\nmem_limit: 1g\ndeploy:\n  resources:\n    limits:\n      memory: 2g",
    ));
    assert_eq!(p.key, "services.web.deploy.resources.limits.memory");
    assert_eq!(
        p.message,
        "can't set distinct values on 'mem_limit' and 'deploy.resources.limits.memory'"
    );
    let same = spec(
        "image: web:1\nmem_limit: 1g\ndeploy:\n  resources:\n    limits:\n      memory: 1024m",
    );
    assert_eq!(same.mem_limit, Some(1024 * 1024 * 1024));
}

#[test]
fn device_reservations_become_device_requests_with_compose_defaults() {
    let s = spec("image: web:1\ndeploy:\n  resources:\n    reservations:\n      devices:\n        - capabilities: [gpu]\n          driver: nvidia\n        - capabilities: [gpu, utility]\n          device_ids: ['0', '3']\n        - capabilities: [gpu]\n          count: 2\n          options:\n            virtualization: 'false'");
    let request = |capabilities: &[&str]| GpuRequest {
        driver: None,
        count: None,
        device_ids: vec![],
        capabilities: strings(capabilities),
        options: BTreeMap::new(),
    };
    assert_eq!(
        s.device_requests,
        vec![
            GpuRequest {
                driver: Some("nvidia".into()),
                count: Some(-1),
                ..request(&["gpu"])
            },
            GpuRequest {
                device_ids: strings(&["0", "3"]),
                ..request(&["gpu", "utility"])
            },
            GpuRequest {
                count: Some(2),
                options: env(&[("virtualization", "false")]),
                ..request(&["gpu"])
            },
        ]
    );
}

#[test]
fn a_device_reservation_needs_capabilities_and_one_of_count_or_ids() {
    let problems = problems(&web("image: web:1\ndeploy:\n  resources:\n    reservations:\n      devices:\n        - driver: nvidia\n        - capabilities: [gpu]\n          count: 1\n          device_ids: ['0']\n        - capabilities: [gpu]\n          count: some"));
    let got: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
    assert_eq!(got.len(), 3, "{problems:#?}");
    assert!(got[0].contains("needs 'capabilities'"));
    assert!(got[1].contains("'count' and 'device_ids' cannot be set together"));
    assert!(got[2].contains("'all' or a number"));
}

#[test]
fn swarm_only_keys_are_accepted_with_a_warning_naming_each() {
    let said = warnings("image: web:1\ndeploy:\n  mode: global\n  replicas: 1\n  endpoint_mode: dnsrr\n  labels:\n    team: a\n  placement:\n    constraints: [node.role == manager]\n    max_replicas_per_node: 1\n  rollback_config:\n    parallelism: 1\n  update_config:\n    delay: 10s\n    max_failure_ratio: 0.1");
    for key in [
        "deploy.mode",
        "deploy.endpoint_mode",
        "deploy.labels",
        "deploy.placement",
        "deploy.rollback_config",
        "update_config.delay",
        "update_config.max_failure_ratio",
    ] {
        assert!(said.iter().any(|w| w.contains(key)), "{key}: {said:#?}");
    }
    assert!(said
        .iter()
        .any(|w| w.contains("deploy.labels")
            && w.contains("Compose does not put them on containers")));
    // `replicas` is not a Swarm-only key: it is read where containers are counted.
    assert!(!said.iter().any(|w| w.contains("deploy.replicas")));
}

#[test]
fn a_replicated_mode_is_said_nothing_about() {
    assert!(warnings("image: web:1\ndeploy:\n  mode: replicated").is_empty());
}

#[test]
fn deploy_fields_left_out_keep_the_hash_of_a_spec_without_them() {
    let before = hash(&web("image: web:1"));
    let spec = spec("image: web:1");
    assert_eq!(spec.resources.mem_reservation, None);
    assert!(spec.device_requests.is_empty());
    let json = serde_json::to_string(&spec).unwrap();
    for field in [
        "mem_reservation",
        "pids_limit",
        "device_requests",
        "network_endpoints",
    ] {
        assert!(!json.contains(field), "{field} in {json}");
    }
    assert_eq!(before, spec.hash());
}
