//! Tests of Compose's runtime keys (`sysctls`, `ulimits`, `security_opt`, `tmpfs`, `links`,
//! `expose`, `dns`, ...): each spelling lands normalized in the spec, cosmetic edits hash alike,
//! and every malformed value is named with its line and key.

use super::{convert, StackParts, Variables};
use crate::desired::error::Problem;
use crate::desired::load::DirFiles;
use crate::desired::model::*;
use crate::desired::yaml;
use std::collections::BTreeMap;
use std::fs;

/// A stack folder `web/` in a temporary repository, with the files a test writes into it.
struct Stack {
    tmp: tempfile::TempDir,
}

impl Stack {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("web")).unwrap();
        Self { tmp }
    }

    /// Write `rel` (relative to the repository root; `web/...` is in the stack).
    fn with(self, rel: &str, text: &str) -> Self {
        let path = self.tmp.path().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
        self
    }

    fn convert(&self, text: &str) -> Result<StackParts, Vec<Problem>> {
        let doc = yaml::parse(text).expect("the test's YAML parses");
        let files = DirFiles::new(&self.tmp.path().join("web")).unwrap();
        convert(
            &doc,
            "web/compose.yaml",
            "web",
            &Variables::default(),
            &files,
        )
    }
}

/// A file with one service `web` whose body is `body`. Body line N is file line N + 2.
fn web(body: &str) -> String {
    let mut out = String::from("services:\n  web:\n    image: web:1\n");
    for line in body.lines() {
        out.push_str("    ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn parts(text: &str) -> StackParts {
    Stack::new()
        .convert(text)
        .unwrap_or_else(|p| panic!("expected a valid file, got {p:#?}"))
}

fn service_of(text: &str, name: &str) -> Service {
    parts(text).services.remove(name).expect("the service")
}

fn spec(body: &str) -> ContainerSpec {
    service_of(&web(body), "web").spec
}

fn problems(text: &str) -> Vec<String> {
    match Stack::new().convert(text) {
        Ok(_) => panic!("expected problems, the file was accepted:\n{text}"),
        Err(problems) => problems.iter().map(|p| p.to_string()).collect(),
    }
}

/// The one problem of a web service with this body, rendered `file:line: key: message`.
fn problem(body: &str) -> String {
    let all = problems(&web(body));
    assert_eq!(all.len(), 1, "expected one problem, got {all:#?}");
    all[0].clone()
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// ---- expose ----------------------------------------------------------------------------------

#[test]
fn expose_takes_ports_ranges_and_protocols_sorted_with_tcp_by_default() {
    let s = spec(
        "expose:\n  - \"8080-8085/tcp\"\n  - 3000\n  - 53/udp\n  - \"9000-9000\"\n  - 3000/tcp",
    );
    assert_eq!(
        s.networking.expose,
        strings(&["3000/tcp", "53/udp", "8080-8085/tcp", "9000/tcp"])
    );
}

#[test]
fn a_malformed_exposed_port_is_named_with_its_line() {
    for (bad, message) in [
        ("0", "'0' is not a port number"),
        ("80/http", "unknown protocol 'http'"),
        ("90-80", "runs backwards"),
        ("70000", "'70000' is not a port number"),
    ] {
        let p = problem(&format!("expose:\n  - \"{bad}\""));
        assert!(
            p.starts_with("web/compose.yaml:5: services.web.expose[0]:") && p.contains(message),
            "{bad}: {p}"
        );
    }
}

// ---- security_opt ----------------------------------------------------------------------------

#[test]
fn security_options_are_spelled_with_equals_and_sorted_so_both_spellings_hash_alike() {
    let colon = spec(
        "security_opt:\n  - no-new-privileges:true\n  - label:user:USER\n  - apparmor:unconfined",
    );
    let equals = spec(
        "security_opt:\n  - apparmor=unconfined\n  - label=user:USER\n  - no-new-privileges=true",
    );
    assert_eq!(
        colon.confinement.security_opt,
        strings(&[
            "apparmor=unconfined",
            "label=user:USER",
            "no-new-privileges=true"
        ])
    );
    assert_eq!(colon.hash(), equals.hash());
}

#[test]
fn an_unknown_or_empty_security_option_is_refused() {
    let p = problem("security_opt:\n  - seccomp");
    assert!(
        p.contains("services.web.security_opt[0]") && p.contains("needs a value"),
        "{p}"
    );
    let p = problem("security_opt: [privileged=true]");
    assert!(p.contains("is not a security option"), "{p}");
    let p = problem("security_opt: no-new-privileges");
    assert!(p.contains("expected a list of options"), "{p}");
}

#[test]
fn a_seccomp_profile_is_read_from_the_stack_and_its_content_is_hashed() {
    let text = web("security_opt:\n  - seccomp=./profile.json");
    let profile = |json: &str| {
        let stack = Stack::new().with("web/profile.json", json);
        let mut parts = stack.convert(&text).unwrap_or_else(|p| panic!("{p:#?}"));
        parts.services.remove("web").unwrap().spec
    };
    let a = profile("{\n  \"defaultAction\": \"SCMP_ACT_ERRNO\"\n}\n");
    let same = profile("{\"defaultAction\":\"SCMP_ACT_ERRNO\"}");
    let other = profile("{\"defaultAction\":\"SCMP_ACT_ALLOW\"}");
    let seccomp = a.confinement.seccomp_profile.as_ref().unwrap();
    assert_eq!(seccomp.path, "./profile.json");
    assert_eq!(seccomp.json, "{\"defaultAction\":\"SCMP_ACT_ERRNO\"}");
    assert_eq!(
        a.confinement.security_opt,
        strings(&["seccomp=./profile.json"])
    );
    assert_eq!(a.hash(), same.hash(), "the same JSON, spelled otherwise");
    assert_ne!(
        a.hash(),
        other.hash(),
        "an edited profile recreates the service"
    );
    let label = serde_json::to_string(&a).unwrap();
    assert!(
        !label.contains("SCMP_ACT"),
        "the profile is hashed by digest: {label}"
    );
}

#[test]
fn a_seccomp_profile_outside_the_stack_missing_or_not_json_is_refused() {
    let text = |file: &str| web(&format!("security_opt: [\"seccomp={file}\"]"));
    let refused = |stack: Stack, file: &str, needle: &str| {
        let problems = stack.convert(&text(file)).err().expect("refused");
        let all = problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(all.contains(needle), "{file}: {all}");
    };
    refused(
        Stack::new(),
        "/etc/docker/seccomp.json",
        "a profile must be a file of the stack folder",
    );
    refused(
        Stack::new().with("secret.json", "{}"),
        "../secret.json",
        "seccomp profile",
    );
    refused(Stack::new(), "missing.json", "seccomp profile");
    refused(
        Stack::new().with("web/p.json", "[1]"),
        "p.json",
        "is not a JSON object",
    );
    assert!(spec("security_opt: [seccomp=unconfined]")
        .confinement
        .seccomp_profile
        .is_none());
}

// ---- sysctls ---------------------------------------------------------------------------------

#[test]
fn sysctls_as_a_map_or_a_list_are_the_same_spec() {
    let as_map = spec("sysctls:\n  net.core.somaxconn: 1024\n  net.ipv4.tcp_syncookies: 0");
    let as_list = spec("sysctls:\n  - net.ipv4.tcp_syncookies=0\n  - net.core.somaxconn=1024");
    assert_eq!(
        as_map.confinement.sysctls,
        map(&[
            ("net.core.somaxconn", "1024"),
            ("net.ipv4.tcp_syncookies", "0")
        ])
    );
    assert_eq!(as_map.hash(), as_list.hash());
}

#[test]
fn only_namespaced_sysctls_of_namespaces_not_shared_with_the_host_are_accepted() {
    let p = problem("sysctls:\n  kernel.panic: 1");
    assert!(
        p.starts_with("web/compose.yaml:5: services.web.sysctls.kernel.panic:")
            && p.contains("not namespaced"),
        "{p}"
    );
    let p = problem("network_mode: host\nsysctls:\n  - net.core.somaxconn=1024");
    assert!(
        p.contains("network_mode: host") && p.contains("host's network settings"),
        "{p}"
    );
    let p = problem("ipc: host\nsysctls:\n  kernel.shmmax: 1024");
    assert!(p.contains("ipc: host"), "{p}");
    let ok = spec("ipc: shareable\nsysctls:\n  kernel.shmmax: 1024\n  fs.mqueue.msg_max: 20");
    assert_eq!(ok.confinement.sysctls.len(), 2);
}

// ---- ulimits and resources -------------------------------------------------------------------

#[test]
fn ulimits_take_a_single_number_or_soft_and_hard() {
    let s = spec(
        "ulimits:\n  nproc: 65535\n  nofile:\n    soft: 20000\n    hard: 40000\n  memlock: -1",
    );
    let u = &s.resources.ulimits;
    assert_eq!(
        u["nproc"],
        UlimitSpec {
            soft: 65535,
            hard: 65535
        }
    );
    assert_eq!(
        u["nofile"],
        UlimitSpec {
            soft: 20000,
            hard: 40000
        }
    );
    assert_eq!(u["memlock"], UlimitSpec { soft: -1, hard: -1 });
}

#[test]
fn a_wrong_ulimit_is_refused_with_its_line() {
    let p = problem("ulimits:\n  nofiles: 10");
    assert!(
        p.contains("services.web.ulimits.nofiles") && p.contains("is not a ulimit"),
        "{p}"
    );
    let p = problem("ulimits:\n  nofile:\n    soft: 50\n    hard: 10");
    assert!(p.contains("must not exceed hard limit"), "{p}");
    let p = problem("ulimits:\n  nofile:\n    soft: 50");
    assert!(p.contains("needs both 'soft' and 'hard'"), "{p}");
}

#[test]
fn resource_keys_land_in_the_units_the_engine_takes() {
    let s = spec(
        "cpu_shares: 512\ncpuset: 0-1,3\ncpu_period: 100000\ncpu_quota: 50ms\ncpu_rt_period: 1400us\ncpu_rt_runtime: 400ms\nmem_reservation: 64m\nmemswap_limit: -1\nmem_swappiness: 10\noom_score_adj: 500\npids_limit: 100\nshm_size: 256m",
    );
    let r = &s.resources;
    assert_eq!(r.cpu_shares, Some(512));
    assert_eq!(r.cpuset.as_deref(), Some("0-1,3"));
    assert_eq!((r.cpu_period, r.cpu_quota), (Some(100_000), Some(50_000)));
    assert_eq!(
        (r.cpu_rt_period, r.cpu_rt_runtime),
        (Some(1400), Some(400_000))
    );
    assert_eq!(r.mem_reservation, Some(64 << 20));
    assert_eq!(r.memswap_limit, Some(-1));
    assert_eq!(r.mem_swappiness, Some(10));
    assert_eq!(r.oom_score_adj, Some(500));
    assert_eq!(r.pids_limit, Some(100));
    assert_eq!(r.shm_size, Some(256 << 20));
}

#[test]
fn defaults_written_out_hash_as_if_left_out() {
    let plain = spec("");
    let defaults = spec("pids_limit: 0\noom_score_adj: 0\noom_kill_disable: false\ntty: false\nstdin_open: false\nuts: \"\"");
    assert_eq!(plain.hash(), defaults.hash());
}

#[test]
fn out_of_range_resources_are_refused() {
    for (body, needle) in [
        ("mem_swappiness: 101", "from 0 to 100"),
        ("oom_score_adj: -1001", "from -1000 to 1000"),
        ("pids_limit: -2", "not a PIDs limit"),
        ("cpuset: 0-a", "not a set of CPUs"),
        (
            "cpu_quota: soon",
            "not a number of microseconds or a duration",
        ),
        ("shm_size: lots", "not a size"),
    ] {
        let p = problem(body);
        assert!(p.contains(needle), "{body}: {p}");
    }
}

#[test]
fn blkio_config_is_read_with_sizes_and_sorted_by_device() {
    let s = spec("blkio_config:\n  weight: 300\n  weight_device:\n    - path: /dev/sda\n      weight: 400\n  device_read_bps:\n    - path: /dev/sdb\n      rate: 12mb\n    - path: /dev/sda\n      rate: 1024k\n  device_write_iops:\n    - path: /dev/sdb\n      rate: 30");
    let b = s.resources.blkio_config.unwrap();
    assert_eq!(b.weight, Some(300));
    assert_eq!(
        b.weight_device,
        [DeviceRate {
            path: "/dev/sda".into(),
            rate: 400
        }]
    );
    assert_eq!(
        b.device_read_bps,
        [
            DeviceRate {
                path: "/dev/sda".into(),
                rate: 1 << 20
            },
            DeviceRate {
                path: "/dev/sdb".into(),
                rate: 12 << 20
            },
        ]
    );
    assert_eq!(
        b.device_write_iops,
        [DeviceRate {
            path: "/dev/sdb".into(),
            rate: 30
        }]
    );
    let p = problem("blkio_config:\n  weight: 5");
    assert!(
        p.contains("services.web.blkio_config.weight") && p.contains("from 10 to 1000"),
        "{p}"
    );
}

// ---- tmpfs, volumes_from, storage_opt --------------------------------------------------------

#[test]
fn service_tmpfs_takes_a_string_or_a_list_with_options() {
    assert_eq!(spec("tmpfs: /run").storage.tmpfs, map(&[("/run", "")]));
    let s = spec("tmpfs:\n  - /data:mode=755,uid=1009,gid=1009\n  - /tmp:size=64m,noexec");
    assert_eq!(
        s.storage.tmpfs,
        map(&[
            ("/data", "mode=755,uid=1009,gid=1009"),
            ("/tmp", "size=64m,noexec")
        ])
    );
}

#[test]
fn a_tmpfs_that_is_relative_unknown_or_clashing_is_refused() {
    let p = problem("tmpfs: run");
    assert!(p.contains("must be absolute"), "{p}");
    let p = problem("tmpfs: [\"/run:sizee=1m\"]");
    assert!(p.contains("unknown tmpfs option 'sizee=1m'"), "{p}");
    let p = problem("volumes: [\"/run\"]\ntmpfs: [/run]");
    assert!(p.contains("also a target of `volumes:`"), "{p}");
}

#[test]
fn volumes_from_resolves_services_to_their_containers_and_waits_for_them() {
    let text = "services:\n  web:\n    image: web:1\n    volumes_from:\n      - data:rw\n      - cache:ro\n      - container:legacy-box\n  data:\n    image: web:1\n    container_name: the-data\n  cache:\n    image: web:1\n";
    let web = service_of(text, "web");
    assert_eq!(
        web.spec.storage.volumes_from,
        strings(&["container:legacy-box", "the-data", "web-cache-1:ro"])
    );
    assert_eq!(
        web.depends_on.keys().collect::<Vec<_>>(),
        ["cache", "data"],
        "a service whose volumes are used starts first"
    );
    assert_eq!(
        web.effective_order(),
        UpdateOrder::StopFirst,
        "shares writable volumes"
    );
    let p = problems("services:\n  web:\n    image: web:1\n    volumes_from: [nothere]\n");
    assert!(
        p[0].contains("'nothere' is not a service of this stack"),
        "{p:?}"
    );
}

#[test]
fn volumes_from_or_links_to_a_service_that_runs_no_container_are_refused() {
    // Its container name is free for any container of the host (`container_name: victim`,
    // someone's database): the engine would take that one's volumes or environment.
    for field in ["volumes_from", "links"] {
        let text = format!("services:\n  web:\n    image: web:1\n    {field}: [a]\n  a:\n    image: web:1\n    container_name: victim\n    deploy: {{replicas: 0}}\n");
        let p = problems(&text);
        assert!(
            p.iter().any(|p| p.contains(&format!(
                "services.web.{field}: 'a' runs no container (replicas: 0)"
            ))),
            "{p:?}"
        );
    }
}

#[test]
fn storage_opt_is_a_map() {
    assert_eq!(
        spec("storage_opt:\n  size: 1G").storage.storage_opt,
        map(&[("size", "1G")])
    );
}

// ---- links, external_links, dns --------------------------------------------------------------

#[test]
fn links_name_the_linked_services_container_and_make_it_start_first() {
    let text = "services:\n  web:\n    image: web:1\n    links:\n      - db:database\n      - cache\n      - db\n  db:\n    image: web:1\n  cache:\n    image: web:1\n    container_name: redis\n";
    let web = service_of(text, "web");
    assert_eq!(
        web.spec.networking.links,
        strings(&["redis:cache", "web-db-1:database", "web-db-1:db"])
    );
    assert!(web.depends_on.contains_key("db") && web.depends_on.contains_key("cache"));
}

#[test]
fn a_link_to_a_missing_service_or_without_a_network_is_refused() {
    let p = problems("services:\n  web:\n    image: web:1\n    links: [db]\n");
    assert!(
        p[0].contains("services.web.links: 'db' is not a service of this stack"),
        "{p:?}"
    );
    let p = problem("network_mode: host\nexternal_links: [other]");
    assert!(p.contains("cannot be used with network_mode: host"), "{p}");
    let p = problem("external_links: [\"bad name\"]");
    assert!(p.contains("is not a link"), "{p}");
}

#[test]
fn a_link_cycle_is_a_dependency_cycle() {
    let p = problems("services:\n  a:\n    image: web:1\n    links: [b]\n  b:\n    image: web:1\n    links: [a]\n");
    assert!(p.iter().any(|p| p.contains("cycle")), "{p:?}");
}

#[test]
fn external_links_keep_the_container_and_default_the_alias_to_it() {
    let s = spec("external_links:\n  - redis\n  - database:mysql");
    assert_eq!(
        s.networking.external_links,
        strings(&["database:mysql", "redis:redis"])
    );
}

#[test]
fn dns_servers_and_search_domains_keep_their_order() {
    let s = spec("dns: [9.9.9.9, 8.8.8.8, \"2001:4860:4860::8888\"]\ndns_search: [dc2.example.com, dc1.example.com]\ndns_opt: [use-vc, ndots:2]\ndomainname: example.com");
    let n = &s.networking;
    assert_eq!(
        n.dns,
        strings(&["9.9.9.9", "8.8.8.8", "2001:4860:4860::8888"])
    );
    assert_eq!(
        n.dns_search,
        strings(&["dc2.example.com", "dc1.example.com"])
    );
    assert_eq!(n.dns_opt, strings(&["ndots:2", "use-vc"]));
    assert_eq!(n.domainname.as_deref(), Some("example.com"));
    assert_eq!(spec("dns: 1.1.1.1").networking.dns, strings(&["1.1.1.1"]));
    let p = problem("dns: dns.google");
    assert!(p.contains("'dns.google' is not an IP address"), "{p}");
}

// ---- confinement -----------------------------------------------------------------------------

#[test]
fn namespace_modes_take_only_the_values_docker_knows() {
    let s = spec("userns_mode: host\nuts: host\ncgroup: private\ncgroup_parent: /custom\nruntime: runc\ngroup_add: [mail, \"1001\", mail]");
    let c = &s.confinement;
    assert_eq!(
        (
            c.userns_mode.as_deref(),
            c.uts.as_deref(),
            c.cgroup.as_deref()
        ),
        (Some("host"), Some("host"), Some("private"))
    );
    assert_eq!(c.cgroup_parent.as_deref(), Some("/custom"));
    assert_eq!(c.runtime.as_deref(), Some("runc"));
    assert_eq!(c.group_add, strings(&["1001", "mail"]));
    let p = problem("uts: private");
    assert!(p.contains("'private' is not a uts mode (use host)"), "{p}");
    let p = problem("cgroup: shared");
    assert!(p.contains("use host or private"), "{p}");
    let p = problem("hostname: web\nuts: host");
    assert!(p.contains("cannot be set together with hostname"), "{p}");
}

#[test]
fn device_cgroup_rules_are_checked_and_sorted() {
    let s = spec("device_cgroup_rules:\n  - 'c 1:3 mr'\n  - 'a 7:* rmw'");
    assert_eq!(
        s.confinement.device_cgroup_rules,
        strings(&["a 7:* rmw", "c 1:3 mr"])
    );
    let p = problem("device_cgroup_rules: ['x 1:3 r']");
    assert!(p.contains("is not a device cgroup rule"), "{p}");
}

#[test]
fn gpus_all_and_device_requests_always_ask_for_the_gpu_capability() {
    let all = spec("gpus: all").confinement.gpus;
    assert_eq!(all.len(), 1);
    assert_eq!(
        (all[0].count, all[0].capabilities.clone()),
        (Some(-1), strings(&["gpu"]))
    );
    let s = spec(
        "gpus:\n  - driver: nvidia\n    device_ids: [\"1\", \"0\"]\n    capabilities: [compute]",
    );
    let g = &s.confinement.gpus[0];
    assert_eq!(g.driver.as_deref(), Some("nvidia"));
    assert_eq!(g.device_ids, strings(&["0", "1"]));
    assert_eq!(g.capabilities, strings(&["compute", "gpu"]));
    let p = problem("gpus:\n  - count: 1\n    device_ids: [\"0\"]");
    assert!(p.contains("cannot both be set"), "{p}");
}

// ---- platform, tty, label_file, ignored and refused keys -------------------------------------

#[test]
fn platform_tty_and_stdin_open_are_read() {
    let s = spec("platform: linux/arm64/v8\ntty: true\nstdin_open: true");
    assert_eq!(s.platform.as_deref(), Some("linux/arm64/v8"));
    assert!(s.tty && s.stdin_open);
    let p = problem("platform: Linux/AMD64");
    assert!(p.contains("is not a platform"), "{p}");
}

#[test]
fn label_files_are_read_confined_and_labels_win_over_them() {
    let stack = Stack::new()
        .with(
            "web/app.labels",
            "com.example.team=ops\ncom.example.tier=back\n",
        )
        .with("web/more.labels", "com.example.tier=front\n");
    let text = web("label_file: [./app.labels, ./more.labels]\nlabels:\n  com.example.team: dev");
    let parts = stack.convert(&text).unwrap_or_else(|p| panic!("{p:#?}"));
    assert_eq!(
        parts.services["web"].spec.labels,
        map(&[("com.example.team", "dev"), ("com.example.tier", "front")])
    );
    let stack = Stack::new().with("web/bad.labels", "com.docker.compose.project=other\n");
    let problems = stack.convert(&web("label_file: bad.labels")).err().unwrap();
    assert!(problems[0].message.contains("is reserved"), "{problems:?}");
    let escape = Stack::new().with("outside.labels", "a=b\n");
    assert!(escape
        .convert(&web("label_file: ../outside.labels"))
        .is_err());
}

#[test]
fn keys_with_no_effect_here_are_accepted_with_a_warning_saying_why() {
    let parts = parts(&web("attach: false\ndevelop:\n  watch: []\nisolation: default\ncpu_count: 2\ncpu_percent: 50\ncredential_spec:\n  file: spec.json"));
    let warnings: Vec<String> = parts.warnings.iter().map(|w| w.to_string()).collect();
    for (key, why) in [
        ("attach", "attaches to no container"),
        ("develop", "docker compose watch"),
        ("isolation", "Windows containers only"),
        ("cpu_count", "Windows containers only"),
        ("cpu_percent", "Windows containers only"),
        ("credential_spec", "Windows containers only"),
    ] {
        assert!(
            warnings.iter().any(|w| w
                .contains(&format!("services.web.{key}: '{key}' is ignored: "))
                && w.contains(why)),
            "{key}: {warnings:#?}"
        );
    }
}

#[test]
fn refused_compose_keys_say_why_and_are_never_unknown() {
    for (body, why) in [
        ("annotations:\n  com.example.foo: bar", "API 1.43"),
        ("mac_address: 02:42:ac:11:65:43", "MAC address"),
        ("post_start:\n  - command: ./hook.sh", "lifecycle hooks"),
        ("pre_stop:\n  - command: ./hook.sh", "lifecycle hooks"),
        ("use_api_socket: true", "--allow docker-socket"),
    ] {
        let p = problem(body);
        assert!(p.contains("is not supported: ") && p.contains(why), "{p}");
        assert!(!p.contains("unknown key"), "{p}");
    }
}

#[test]
fn limits_the_engine_would_refuse_together_are_refused_at_validate() {
    for (body, needle) in [
        ("memswap_limit: 1g", "memswap_limit needs mem_limit"),
        (
            "mem_limit: 1g\nmemswap_limit: 512m",
            "cannot be below mem_limit",
        ),
        (
            "mem_limit: 64m\nmem_reservation: 128m",
            "cannot be above mem_limit",
        ),
        (
            "cpus: 0.5\ncpu_quota: 50000",
            "cannot be set together with cpus",
        ),
        ("cpu_period: 500", "out of range for cpu_period"),
        ("cpu_quota: 10us", "out of range for cpu_quota"),
    ] {
        let p = problem(body);
        assert!(p.contains(needle), "{body}: {p}");
    }
    let deploy = "memswap_limit: 2g\ndeploy:\n  resources:\n    limits:\n      memory: 1g";
    assert_eq!(
        spec(deploy).resources.memswap_limit,
        Some(2 << 30),
        "deploy's memory counts"
    );
    assert_eq!(spec("cpu_quota: -1").resources.cpu_quota, Some(-1));
}
