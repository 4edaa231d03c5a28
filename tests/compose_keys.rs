//! Compose's runtime keys against the real engine: one stack that uses many of them is applied,
//! each created container is inspected (and looked into) for what the key must have done, and a
//! second apply changes nothing.
mod common;
use common::*;
use serde_json::Value;

fn compose(image: &str) -> String {
    format!(
        r#"services:
  web:
    image: {image}
    platform: linux/amd64
    hostname: web
    domainname: example.com
    sysctls:
      net.core.somaxconn: 1024
    ulimits:
      nofile:
        soft: 1024
        hard: 2048
    tmpfs:
      - /scratch:size=1m,mode=1777
    dns: [192.0.2.53]
    dns_search: search.example.com
    dns_opt: [ndots:2]
    expose:
      - "8080"
      - "9000-9001/udp"
    shm_size: 32m
    pids_limit: 100
    group_add: ["1234"]
    security_opt:
      - no-new-privileges:true
    cap_drop: [NET_RAW]
    cpu_shares: 512
    cpuset: "0"
    cpu_period: 100000
    cpu_quota: 50ms
    mem_reservation: 32m
    oom_score_adj: 100
    cgroup: private
    tty: true
    stdin_open: true
    label_file: ./web.labels
    links:
      - db:database
    volumes_from:
      - data:ro
{HEALTHCHECK}    x-reconciler: {{health_timeout: 20s}}
  db:
    image: {image}
{HEALTHCHECK}    x-reconciler: {{health_timeout: 20s}}
  data:
    image: {image}
    volumes:
      - /shared
{HEALTHCHECK}    x-reconciler: {{health_timeout: 20s}}
  locked:
    image: {image}
    security_opt:
      - seccomp=./seccomp/no-mkdir.json
{HEALTHCHECK}    x-reconciler: {{health_timeout: 20s}}
"#
    )
}

/// Docker's default action with one refusal, so the test can see the profile at work.
const NO_MKDIR: &str = r#"{
  "defaultAction": "SCMP_ACT_ALLOW",
  "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
}"#;

/// `docker exec <container> sh -c <script>`, its stdout.
#[track_caller]
fn exec(container: &str, script: &str) -> String {
    docker_ok(&["exec", container, "sh", "-c", script])
}

fn at<'v>(inspect: &'v Value, pointer: &str) -> &'v Value {
    inspect
        .pointer(pointer)
        .unwrap_or_else(|| panic!("no {pointer} in the inspect output"))
}

#[test]
fn a_stack_using_the_runtime_keys_gets_each_of_them_and_a_second_apply_changes_nothing() {
    let env = TestEnv::new("i8k-keys");
    let image = env.registry.push(WEB_V1, "web:v1");
    env.write("web.labels", "com.example.team=ops\n");
    env.write("seccomp/no-mkdir.json", NO_MKDIR);
    env.write_compose(&compose(&image));
    // A repository seccomp profile replaces Docker's: the host must allow it.
    let refused = env.run("apply", &[]);
    assert_eq!(refused.code, 2, "{refused}");
    assert!(refused.stderr.contains("--allow security-opt"), "{refused}");
    env.run("apply", &["--allow", "security-opt"])
        .assert_code(0);

    let web = env.container("web");
    let db = env.container("db");
    let i = &web.inspect;
    let host = at(i, "/HostConfig");

    // sysctls: set in the container's own network namespace.
    assert_eq!(at(host, "/Sysctls/net.core.somaxconn"), "1024");
    assert_eq!(
        exec(&web.name, "cat /proc/sys/net/core/somaxconn").trim(),
        "1024"
    );
    // ulimits: the soft limit is what the process gets, the hard one its ceiling.
    assert_eq!(
        exec(&web.name, "ulimit -n; ulimit -Hn").trim(),
        "1024\n2048"
    );
    // tmpfs: mounted with its options.
    let mounts = exec(&web.name, "cat /proc/mounts");
    assert!(
        mounts
            .lines()
            .any(|l| l.starts_with("tmpfs /scratch tmpfs") && l.contains("size=1024k")),
        "{mounts}"
    );
    // dns, dns_search, dns_opt: in the engine's config and the container's resolver file.
    assert_eq!(at(host, "/Dns"), &serde_json::json!(["192.0.2.53"]));
    let resolv = exec(&web.name, "cat /etc/resolv.conf");
    assert!(
        resolv.contains("search search.example.com") && resolv.contains("ndots:2"),
        "{resolv}"
    );
    assert_eq!(at(i, "/Config/Domainname"), "example.com");
    // expose: ranges spelled out, the image's own EXPOSE kept.
    let exposed = at(i, "/Config/ExposedPorts").as_object().unwrap();
    for port in ["80/tcp", "8080/tcp", "9000/udp", "9001/udp"] {
        assert!(exposed.contains_key(port), "{port} not in {exposed:?}");
    }
    // shm_size, pids_limit, group_add, CPU and memory settings.
    assert_eq!(at(host, "/ShmSize"), 32 << 20);
    assert!(exec(&web.name, "df -k /dev/shm").contains("32768"));
    assert_eq!(at(host, "/PidsLimit"), 100);
    assert!(exec(&web.name, "id").contains("1234"), "group_add");
    assert_eq!(at(host, "/CpuShares"), 512);
    assert_eq!(at(host, "/CpusetCpus"), "0");
    assert_eq!(
        (at(host, "/CpuPeriod"), at(host, "/CpuQuota")),
        (&100000.into(), &50000.into())
    );
    assert_eq!(at(host, "/MemoryReservation"), 32 << 20);
    assert_eq!(at(host, "/OomScoreAdj"), 100);
    assert_eq!(exec(&web.name, "cat /proc/1/oom_score_adj").trim(), "100");
    assert_eq!(at(host, "/CgroupnsMode"), "private");
    // security_opt no-new-privileges (with a capability dropped beside it).
    assert_eq!(
        at(host, "/SecurityOpt"),
        &serde_json::json!(["no-new-privileges=true"])
    );
    assert!(exec(&web.name, "grep NoNewPrivs /proc/self/status").contains('1'));
    // tty, stdin_open, label_file.
    assert_eq!(
        (at(i, "/Config/Tty"), at(i, "/Config/OpenStdin")),
        (&true.into(), &true.into())
    );
    assert_eq!(web.label("com.example.team"), Some("ops"));
    // volumes_from: the data service's volume, read-only here.
    let shared = at(i, "/Mounts")
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Destination"] == "/shared")
        .unwrap_or_else(|| panic!("no /shared mount: {}", i["Mounts"]));
    assert_eq!(shared["RW"], false);
    // links: `database` is db's container, from web only.
    let db_ip = at(&db.inspect, "/NetworkSettings/Networks")
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    let lookup = exec(&web.name, "nslookup database 127.0.0.11 || true");
    assert!(lookup.contains(&db_ip), "database -> {db_ip}:\n{lookup}");
    let elsewhere = exec(&db.name, "nslookup database 127.0.0.11 || true");
    assert!(
        !elsewhere.contains(&db_ip),
        "a link is private to its container:\n{elsewhere}"
    );

    // security_opt seccomp=<file>: the profile's content reaches the engine and the kernel.
    let locked = env.container("locked");
    let options = at(&locked.inspect, "/HostConfig/SecurityOpt").to_string();
    assert!(options.contains("SCMP_ACT_ERRNO"), "{options}");
    let denied = docker(&["exec", &locked.name, "mkdir", "/tmp/x"]);
    assert!(
        !denied.success() && denied.stderr.contains("Operation not permitted"),
        "{denied}"
    );

    // Every key reads back as it was written: nothing drifts, nothing is recreated.
    let again = env.run("apply", &["--allow", "security-opt"]);
    again.assert_code(0);
    assert!(again.stdout.contains("0 services changed"), "{again}");
    assert_eq!(env.container_id("web"), web.id);
}

#[test]
fn a_service_joins_another_services_network_namespace_as_in_compose() {
    let env = TestEnv::new("i8k-netns");
    let (web, worker) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(WORKER, "worker:v1"),
    );
    env.write_compose(&format!(
        "services:\n  web:\n    image: {web}\n{HEALTHCHECK}  sidecar:\n    image: {worker}\n    network_mode: \"service:web\"\n    x-reconciler: {{min_ready: 1s}}\n"
    ));
    env.apply_ok();
    let web_id = env.container_id("web");
    let sidecar = inspect(&env.container("sidecar").name);
    assert_eq!(
        at(&sidecar, "/HostConfig/NetworkMode").as_str(),
        Some(format!("container:{web_id}").as_str()),
        "the sidecar joins web's network namespace"
    );
    // web serves on its own loopback, which the sidecar shares.
    assert_eq!(
        exec(
            &env.container("sidecar").name,
            "wget -q -O - http://127.0.0.1/"
        ),
        "v1\n"
    );
}
