//! Compose's own wording where it is clearer: repeated environment entries, a non-string
//! image, and real Compose keys never called unknown.

use super::*;

#[test]
fn an_environment_entry_listed_twice_is_refused_in_composes_words_without_its_value() {
    let p = problem(&web(
        "image: web:1\nenvironment:\n  - A=1\n  - B=2\n  - A=1",
    ));
    assert_eq!((p.line, p.key.as_str()), (7, "services.web.environment"));
    assert_eq!(
        p.message,
        "array items[0,2] must be unique: 'A' is listed twice with the same value"
    );
}

#[test]
fn a_key_set_twice_with_other_values_takes_the_later_one_with_a_warning() {
    let parts = parts(&web("image: web:1\nenvironment:\n  - A=1\n  - A=2"));
    assert_eq!(parts.services["web"].spec.environment, env(&[("A", "2")]));
    assert!(parts.warnings[0].message.contains("'A' is set twice"));
}

#[test]
fn a_secret_listed_twice_is_refused_without_quoting_its_value() {
    let p = problem(&web(
        "image: web:1\nenvironment:\n  - API_TOKEN=hunter2\n  - API_TOKEN=hunter2",
    ));
    assert!(!p.message.contains("hunter2"), "{}", p.message);
}

#[test]
fn a_plain_number_boolean_or_list_as_image_is_refused_as_compose_refuses_it() {
    for (value, what) in [
        ("1.5", "a number"),
        ("80", "a number"),
        ("1e3", "a number"),
        ("0x1F", "a number"),
        ("true", "a boolean"),
        ("[busybox, latest]", "a list"),
    ] {
        let p = problem(&web(&format!("image: {value}")));
        assert_eq!(p.key, "services.web.image", "{value}");
        assert!(
            p.message
                .starts_with(&format!("must be a string, found {what}")),
            "{value}: {}",
            p.message
        );
    }
    for quoted in ["\"1.5\"", "'true'", "registry:5000/app", "app.1"] {
        assert!(
            Repo::new()
                .convert(&web(&format!("image: {quoted}")))
                .is_ok(),
            "{quoted}"
        );
    }
}

#[test]
fn depends_on_restart_is_said_to_be_ignored_and_an_optional_missing_service_is_skipped() {
    let text = "services:\n  web:\n    image: web:1\n    depends_on:\n      db:\n        condition: service_started\n        restart: true\n      cache:\n        condition: service_started\n        required: false\n  db:\n    image: db:1\n";
    let parts = parts(text);
    assert_eq!(
        parts.services["web"].depends_on.keys().collect::<Vec<_>>(),
        ["db"]
    );
    let said: Vec<&str> = parts.warnings.iter().map(|w| w.message.as_str()).collect();
    assert!(
        said.iter()
            .any(|w| w.contains("'restart: true' is ignored")),
        "{said:?}"
    );
    assert!(
        said.iter()
            .any(|w| w.contains("'cache' is not a service of this stack; skipped")),
        "{said:?}"
    );
}

#[test]
fn healthcheck_start_interval_is_accepted_with_a_warning() {
    let parts = parts(&web(
        "image: web:1\nhealthcheck:\n  test: [CMD, 'true']\n  start_interval: 1s",
    ));
    assert!(parts.warnings[0]
        .message
        .contains("'start_interval' is ignored"));
}

/// Every nested key the Compose specification defines under `networks`, `volumes`, `deploy`,
/// `healthcheck`, `logging`, `depends_on` and long-form mounts: none may be called unknown.
#[test]
fn no_real_compose_key_is_called_unknown() {
    let text = "services:
  web:
    image: web:1
    networks:
      front:
        aliases: [a]
        ipv4_address: 172.31.9.5
        ipv6_address: fd00:9::5
        link_local_ips: [169.254.1.1]
        mac_address: 02:42:ac:11:00:02
        driver_opts: {a: b}
        priority: 1
        gw_priority: 1
        interface_name: eth1
    volumes:
      - type: bind
        source: /srv
        target: /a
        read_only: true
        consistency: cached
        bind: {propagation: rprivate, create_host_path: true, selinux: z, recursive: enabled}
      - type: volume
        source: data
        target: /b
        volume: {nocopy: true, subpath: x, labels: {a: b}}
      - type: tmpfs
        target: /c
        tmpfs: {size: 1m, mode: 1777}
    healthcheck: {test: [CMD, 'true'], interval: 1s, timeout: 1s, retries: 1, start_period: 1s, start_interval: 1s}
    logging: {driver: json-file, options: {max-size: 1m}}
    depends_on:
      db: {condition: service_started, restart: true, required: true}
    deploy:
      mode: replicated
      replicas: 1
      labels: {a: b}
      endpoint_mode: vip
      placement: {constraints: [a], preferences: [{spread: b}], max_replicas_per_node: 1}
      resources:
        limits: {cpus: '1', memory: 1g, pids: 10}
        reservations:
          cpus: '0.5'
          memory: 1m
          generic_resources: [{discrete_resource_spec: {kind: gpu, value: 1}}]
          devices: [{capabilities: [gpu], driver: nvidia, count: 1, options: {a: b}}]
      restart_policy: {condition: any, delay: 1s, max_attempts: 1, window: 1s}
      update_config: {parallelism: 1, delay: 1s, failure_action: rollback, monitor: 1s, max_failure_ratio: 0, order: stop-first}
      rollback_config: {parallelism: 1, delay: 1s, failure_action: pause, monitor: 1s, max_failure_ratio: 0, order: stop-first}
  db:
    image: db:1
networks:
  front:
    driver: bridge
    driver_opts: {a: b}
    attachable: true
    enable_ipv4: true
    enable_ipv6: true
    internal: false
    labels: {a: b}
    ipam:
      driver: default
      config: [{subnet: 172.31.9.0/24, ip_range: 172.31.9.0/25, gateway: 172.31.9.1, aux_addresses: {r: 172.31.9.2}}, {subnet: 'fd00:9::/64'}]
      options: {a: b}
  legacy:
    external: {name: x}
volumes:
  data: {driver: local, driver_opts: {a: b}, labels: {a: b}, name: data}
  old: {external: true}
";
    let all = match Repo::new().convert(text) {
        Ok(_) => vec![],
        Err(problems) => problems,
    };
    let unknown: Vec<String> = all
        .iter()
        .filter(|p| p.message.contains("unknown key"))
        .map(|p| p.to_string())
        .collect();
    assert!(unknown.is_empty(), "{unknown:#?}");
}
