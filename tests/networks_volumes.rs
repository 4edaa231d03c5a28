//! Networks, volumes and `deploy:` keys reach the real engine as the file defines them, and a
//! network that exists with another definition is reported and left alone.
mod common;
use common::*;
use serde_json::Value;

/// A /24 of 10.231.0.0/16 of this process's own, so a parallel or stale run cannot overlap it.
fn subnet_octet() -> u32 {
    std::process::id() % 250 + 1
}

fn stack(image: &str, octet: u32, host_dir: &str) -> String {
    format!(
        r#"services:
  web:
    image: {image}
    networks:
      front:
        aliases: [www]
        ipv4_address: 10.231.{octet}.10
        driver_opts:
          com.example.endpoint: "yes"
      default:
    volumes:
      - scratch:/scratch
      - type: bind
        source: {host_dir}/made-by-the-engine
        target: /made
        bind:
          create_host_path: true
      - type: tmpfs
        target: /cache
        tmpfs:
          size: 1m
          mode: 1777
    deploy:
      restart_policy:
        condition: on-failure
        max_attempts: 3
      resources:
        reservations:
          memory: 32m
        limits:
          pids: 200
networks:
  front:
    driver: bridge
    driver_opts:
      com.docker.network.driver.mtu: "1400"
    labels:
      com.example.team: shop
    ipam:
      config:
        - subnet: 10.231.{octet}.0/24
          gateway: 10.231.{octet}.1
volumes:
  scratch:
    driver_opts:
      type: tmpfs
      device: tmpfs
      o: size=10m
    labels:
      com.example.team: shop
"#
    )
}

fn inspect_one(kind: &str, name: &str) -> Value {
    let text = docker_ok(&[kind, "inspect", name]);
    let mut all: Vec<Value> = serde_json::from_str(&text).expect("docker inspect prints JSON");
    all.swap_remove(0)
}

#[test]
fn a_stack_with_every_network_volume_and_deploy_key_reaches_the_engine() {
    let env = TestEnv::new("i8n-nets");
    let image = env.registry.push(WEB_V1, "web:v1");
    let octet = subnet_octet();
    let host = tempfile::tempdir().unwrap();
    let host_dir = host.path().to_str().unwrap();
    env.write_compose(&stack(&image, octet, host_dir));
    env.apply_ok();
    let project = env.project().to_string();

    let network = inspect_one("network", &format!("{project}_front"));
    assert_eq!(network["Driver"], "bridge");
    assert_eq!(network["Options"]["com.docker.network.driver.mtu"], "1400");
    assert_eq!(network["Labels"]["com.example.team"], "shop");
    assert_eq!(network["Labels"][PROJECT_LABEL], project.as_str());
    let pool = &network["IPAM"]["Config"][0];
    assert_eq!(pool["Subnet"], format!("10.231.{octet}.0/24").as_str());
    assert_eq!(pool["Gateway"], format!("10.231.{octet}.1").as_str());

    let volume = inspect_one("volume", &format!("{project}_scratch"));
    assert_eq!(volume["Options"]["type"], "tmpfs");
    assert_eq!(volume["Options"]["o"], "size=10m");
    assert_eq!(volume["Labels"]["com.example.team"], "shop");

    let container = inspect(&format!("{project}-web-1"));
    let endpoint = &container["NetworkSettings"]["Networks"][format!("{project}_front")];
    assert_eq!(
        endpoint["IPAMConfig"]["IPv4Address"],
        format!("10.231.{octet}.10").as_str()
    );
    assert_eq!(endpoint["IPAddress"], format!("10.231.{octet}.10").as_str());
    let aliases: Vec<&str> = endpoint["Aliases"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        aliases.contains(&"www") && aliases.contains(&"web"),
        "{aliases:?}"
    );
    assert_eq!(endpoint["DriverOpts"]["com.example.endpoint"], "yes");
    let host = &container["HostConfig"];
    assert_eq!(host["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(host["RestartPolicy"]["MaximumRetryCount"], 3);
    assert_eq!(host["MemoryReservation"], 32 * 1024 * 1024);
    assert_eq!(host["PidsLimit"], 200);
    // A bind that may create its host folder goes the legacy way, which creates it.
    let made = format!("{host_dir}/made-by-the-engine");
    assert!(std::path::Path::new(&made).is_dir());
    assert!(
        host["Binds"]
            .as_array()
            .unwrap()
            .contains(&Value::from(format!("{made}:/made:rw"))),
        "{}",
        host["Binds"]
    );
    let tmpfs = host["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Target"] == "/cache")
        .unwrap();
    assert_eq!(tmpfs["TmpfsOptions"]["Mode"], 0o1777);
    // The volume is the tmpfs its driver options asked for, of that size.
    let mounts = docker_ok(&["exec", &format!("{project}-web-1"), "cat", "/proc/mounts"]);
    assert!(
        mounts
            .lines()
            .any(|l| l.contains(" /scratch tmpfs ") && l.contains("size=10240k")),
        "{mounts}"
    );

    // What the engine made compares equal to the file: nothing to do, nothing reported.
    let diff = env.run("diff", &[]);
    assert_eq!(diff.code, 0, "{diff}");

    // Another subnet: reported by diff, and apply changes nothing (Compose refuses it too).
    let id = env.container_id("web");
    env.write_compose(&stack(&image, octet, host_dir).replace(
        &format!("10.231.{octet}."),
        &format!("10.231.{}.", octet + 1),
    ));
    let diff = env.run("diff", &[]);
    assert_eq!(diff.code, 1, "{diff}");
    assert!(
        diff.stdout.contains(&format!(
            "! network front ({project}_front) exists with another definition: ipam.config.subnet 10.231.{octet}.0/24 -> 10.231.{}.0/24",
            octet + 1
        )),
        "{diff}"
    );
    let apply = env.run("apply", &[]);
    assert_eq!(apply.code, 2, "{apply}");
    assert!(
        apply.stderr.contains("is not applied, nothing was changed")
            && apply
                .stderr
                .contains(&format!("docker network rm {project}_front")),
        "{apply}"
    );
    assert_eq!(env.container_id("web"), id);
    let unchanged = inspect_one("network", &format!("{project}_front"));
    assert_eq!(unchanged["Id"], network["Id"]);
}
