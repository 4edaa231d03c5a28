//! Top-level `networks:`/`volumes:` with every single-host key, and a service's endpoints.

use super::*;

const FULL: &str = "services:
  web:
    image: web:1
    networks:
      front:
        aliases: [www]
        ipv4_address: 172.31.7.10
        ipv6_address: fd00:7::10
        link_local_ips: [169.254.8.8]
        driver_opts:
          com.docker.network.endpoint.sysctls: net.ipv4.conf.IFNAME.log_martians=1
        priority: 100
      back:
networks:
  front:
    driver: bridge
    driver_opts:
      com.docker.network.driver.mtu: 1400
    attachable: true
    enable_ipv6: true
    internal: false
    labels:
      team: shop
    ipam:
      driver: default
      config:
        - subnet: 172.31.7.0/24
          ip_range: 172.31.7.128/25
          gateway: 172.31.7.1
          aux_addresses:
            router: 172.31.7.2
        - subnet: fd00:7::/64
      options:
        foo: bar
  back:
    internal: true
volumes:
  data:
    driver: local
    driver_opts:
      type: tmpfs
      device: tmpfs
      o: size=10m
    labels:
      - backup=daily
";

#[test]
fn every_single_host_network_key_is_read() {
    let parts = parts(FULL);
    let front = &parts.networks["front"];
    assert_eq!(front.name, "web_front");
    assert_eq!(front.driver.as_deref(), Some("bridge"));
    assert_eq!(
        front.driver_opts,
        env(&[("com.docker.network.driver.mtu", "1400")])
    );
    assert!(front.attachable && front.enable_ipv6 && !front.internal);
    assert_eq!(front.labels, env(&[("team", "shop")]));
    assert_eq!(
        front.ipam,
        Some(IpamDef {
            driver: Some("default".into()),
            config: vec![
                IpamPool {
                    subnet: Some("172.31.7.0/24".into()),
                    ip_range: Some("172.31.7.128/25".into()),
                    gateway: Some("172.31.7.1".into()),
                    aux_addresses: env(&[("router", "172.31.7.2")]),
                },
                IpamPool {
                    subnet: Some("fd00:7::/64".into()),
                    ..Default::default()
                },
            ],
            options: env(&[("foo", "bar")]),
        })
    );
    assert!(parts.networks["back"].internal);
}

#[test]
fn every_single_host_volume_key_is_read() {
    let data = &parts(FULL).volumes["data"];
    assert_eq!(data.driver.as_deref(), Some("local"));
    assert_eq!(
        data.driver_opts,
        env(&[("device", "tmpfs"), ("o", "size=10m"), ("type", "tmpfs")])
    );
    assert_eq!(data.labels, env(&[("backup", "daily")]));
}

#[test]
fn a_service_endpoint_takes_addresses_link_local_ips_driver_opts_and_priority() {
    let spec = parts(FULL).services.remove("web").unwrap().spec;
    assert_eq!(spec.networks["front"], strings(&["www"]));
    assert_eq!(
        spec.network_endpoints["front"],
        EndpointSpec {
            ipv4_address: Some("172.31.7.10".into()),
            ipv6_address: Some("fd00:7::10".into()),
            link_local_ips: strings(&["169.254.8.8"]),
            driver_opts: env(&[(
                "com.docker.network.endpoint.sysctls",
                "net.ipv4.conf.IFNAME.log_martians=1"
            )]),
            priority: Some(100),
        }
    );
    // A network with nothing beyond aliases adds nothing to the hash.
    assert!(!spec.network_endpoints.contains_key("back"));
}

#[test]
fn the_network_of_the_highest_priority_is_joined_first_then_by_name() {
    let spec = parts(FULL).services.remove("web").unwrap().spec;
    assert_eq!(spec.networks_by_priority(), ["front", "back"]);
    let plain = spec_of_networks("networks: [front, back]");
    assert_eq!(plain.networks_by_priority(), ["back", "front"]);
}

fn spec_of_networks(service_networks: &str) -> ContainerSpec {
    let text = format!("services:\n  web:\n    image: web:1\n    {service_networks}\nnetworks:\n  front:\n  back:\n");
    parts(&text).services.remove("web").unwrap().spec
}

#[test]
fn a_fixed_address_makes_a_service_stop_first_and_refuses_start_first() {
    let service = parts(FULL).services.remove("web").unwrap();
    assert_eq!(service.effective_order(), UpdateOrder::StopFirst);
    let text = FULL.replace(
        "    image: web:1\n",
        "    image: web:1\n    deploy:\n      update_config:\n        order: start-first\n",
    );
    let p = problems(&text);
    assert!(
        p.iter().any(|p| p.key == "services.web.networks"
            && p.message
                .contains("cannot use deploy.update_config.order: start-first")),
        "{p:#?}"
    );
}

#[test]
fn a_fixed_address_needs_a_subnet_of_the_stack_that_holds_it() {
    let text = "services:\n  web:\n    image: web:1\n    networks:\n      front:\n        ipv4_address: 172.31.7.10\n      back:\n        ipv4_address: 10.0.0.5\n      v6:\n        ipv6_address: fd00::5\nnetworks:\n  front:\n  back:\n    ipam:\n      config:\n        - subnet: 172.31.7.0/24\n  v6:\n";
    let p = problems(text);
    let got: Vec<(usize, &str)> = p.iter().map(|p| (p.line, p.key.as_str())).collect();
    assert_eq!(
        got,
        [
            (6, "services.web.networks.front.ipv4_address"),
            (8, "services.web.networks.back.ipv4_address"),
            (10, "services.web.networks.v6.ipv6_address"),
        ]
    );
    assert!(p[0].message.contains("needs a subnet set for the network"));
    assert!(p[1]
        .message
        .contains("not in the network's IPv4 subnets (172.31.7.0/24)"));
    assert!(p[2].message.contains("enable_ipv6: true"));
}

#[test]
fn an_external_networks_subnets_are_not_the_files_to_check() {
    let text = "services:\n  web:\n    image: web:1\n    networks:\n      proxy:\n        ipv4_address: 10.9.0.5\nnetworks:\n  proxy:\n    external: true\n";
    let spec = parts(text).services.remove("web").unwrap().spec;
    assert_eq!(
        spec.network_endpoints["proxy"].ipv4_address.as_deref(),
        Some("10.9.0.5")
    );
}

#[test]
fn endpoint_keys_that_need_a_newer_engine_api_are_refused_naming_it() {
    let text = "services:\n  web:\n    image: web:1\n    networks:\n      front:\n        mac_address: 02:42:ac:11:00:02\n        gw_priority: 10\n        interface_name: eth7\nnetworks:\n  front:\n";
    let p = problems(text);
    let got: Vec<(&str, bool)> = p
        .iter()
        .map(|p| {
            (
                p.key.as_str(),
                p.message.contains(
                    "is a Compose key the reconciler cannot apply: it needs Docker Engine API",
                ),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("services.web.networks.front.mac_address", true),
            ("services.web.networks.front.gw_priority", true),
            ("services.web.networks.front.interface_name", true),
        ]
    );
}

#[test]
fn the_legacy_external_name_is_read_with_a_warning_and_a_conflict_is_refused() {
    let text = "services:\n  web:\n    image: web:1\nnetworks:\n  proxy:\n    external:\n      name: traefik_proxy\nvolumes:\n  old:\n    external:\n      name: old_data\n";
    let parts = parts(text);
    assert_eq!(parts.networks["proxy"].name, "traefik_proxy");
    assert!(parts.networks["proxy"].external);
    assert_eq!(parts.volumes["old"].name, "old_data");
    assert!(parts
        .warnings
        .iter()
        .any(|w| w.key == "networks.proxy.external.name" && w.message.contains("deprecated")));
    let p = problem("services:\n  web:\n    image: web:1\nvolumes:\n  old:\n    name: a\n    external:\n      name: b\n");
    assert_eq!(
        (p.key.as_str(), p.message.as_str()),
        (
            "volumes.old.external.name",
            "name and external.name conflict; only use name"
        )
    );
}

#[test]
fn definition_keys_of_an_external_resource_are_ignored_with_a_warning() {
    let text = "services:\n  web:\n    image: web:1\nnetworks:\n  proxy:\n    external: true\n    driver: overlay\nvolumes:\n  old:\n    external: true\n    driver_opts:\n      type: nfs\n";
    let parts = parts(text);
    assert_eq!(parts.networks["proxy"].driver, None);
    let keys: Vec<&str> = parts.warnings.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(keys, ["volumes.old.driver_opts", "networks.proxy.driver"]);
}

#[test]
fn bad_subnets_and_addresses_are_errors_naming_the_pool_key() {
    let text = "services:\n  web:\n    image: web:1\nnetworks:\n  front:\n    ipam:\n      config:\n        - subnet: 172.31.7.0\n          gateway: 172.31.7.300\n          aux_addresses:\n            a: nowhere\n        - gateway: 10.0.0.1\n";
    let p = problems(text);
    let got: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        got,
        [
            "networks.front.ipam.config[0].subnet",
            "networks.front.ipam.config[0].gateway",
            "networks.front.ipam.config[0].aux_addresses.a",
            "networks.front.ipam.config[1]",
        ]
    );
}

#[test]
fn enable_ipv4_false_needs_a_newer_api_and_true_is_the_default() {
    let ok = "services:\n  web:\n    image: web:1\nnetworks:\n  front:\n    enable_ipv4: true\n";
    parts(ok);
    let p = problem(&ok.replace("true", "false"));
    assert_eq!(p.key, "networks.front.enable_ipv4");
    assert!(p.message.contains("API 1.47"));
}

#[test]
fn a_network_or_volume_that_is_not_a_mapping_is_an_error() {
    let p = problem("services:\n  web:\n    image: web:1\nvolumes:\n  data: local\n");
    assert_eq!(p.key, "volumes.data");
}

#[test]
fn a_volume_option_that_took_a_secret_is_marked_so_no_comparison_shows_it() {
    let text = "services:\n  web:\n    image: web:1\nvolumes:\n  share:\n    driver_opts:\n      type: cifs\n      o: username=app,password=${SMB_PASSWORD}\n    labels:\n      team: a\n";
    let parts = Repo::new()
        .convert_with(text, &vars(&[("SMB_PASSWORD", "hunter2")]))
        .unwrap();
    let share = &parts.volumes["share"];
    assert_eq!(share.driver_opts["o"], "username=app,password=hunter2");
    assert_eq!(
        share.secret_fields,
        BTreeSet::from(["driver_opts".to_string()])
    );
}
