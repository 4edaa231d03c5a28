//! Host policy: what a commit may ask of the host (binds, capabilities, devices, namespaces) is
//! refused by default, each refusal located in the file, and only host flags loosen it.
mod common;
use common::*;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

/// `validate` without an engine: policy is judged without Docker.
fn validate(repo: &Path, state: &Path, extra: &[&str]) -> (i32, String) {
    let out = validate_offline(repo, state, extra);
    (out.code, out.combined())
}

/// A repo with one stack `web` whose service `web` has `body` (4-space indent) after its image
/// on line 3, so the body starts on line 4.
struct Repo {
    dir: tempfile::TempDir,
    state: std::path::PathBuf,
}

impl Repo {
    fn new(body: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("repo/web")).unwrap();
        std::fs::write(
            dir.path().join("repo/web/compose.yaml"),
            format!("services:\n  web:\n    image: web:v1\n{body}"),
        )
        .unwrap();
        let state = dir.path().join("state");
        Repo { dir, state }
    }

    /// `<dir>/repo`, beside the state dir `<dir>/state`.
    fn repo(&self) -> std::path::PathBuf {
        self.dir.path().join("repo")
    }

    fn validate(&self, extra: &[&str]) -> (i32, String) {
        validate(&self.repo(), &self.state, extra)
    }

    #[track_caller]
    fn refused(&self, extra: &[&str]) -> String {
        let (code, text) = self.validate(extra);
        assert_eq!(code, 2, "{text}");
        text
    }

    #[track_caller]
    fn valid(&self, extra: &[&str]) {
        let (code, text) = self.validate(extra);
        assert_eq!(code, 0, "{text}");
    }
}

#[track_caller]
fn assert_line(text: &str, located: &str, reason: &str) {
    assert!(
        text.lines()
            .any(|l| l.contains(located) && l.contains(reason)),
        "expected a line with `{located}` and `{reason}` in:\n{text}"
    );
}

#[test]
fn the_socket_folders_and_dockers_data_are_refused_as_bind_sources() {
    let repo = Repo::new(
        // Read-only where one holds another: a writable outer folder is refused for that alone.
        "    volumes:\n      - /var/run:/a\n      - /run:/b\n      - /var/lib/docker:/c:ro\n      - /var:/d:ro\n      - /var/lib/docker/volumes/x/_data:/e\n",
    );
    let text = repo.refused(&[]);
    assert_line(
        &text,
        "web/compose.yaml:5: services.web.volumes:",
        "bind source '/var/run'",
    );
    assert_line(
        &text,
        "web/compose.yaml:6: services.web.volumes:",
        "bind source '/run'",
    );
    assert_line(
        &text,
        "web/compose.yaml:7: services.web.volumes:",
        "/var/lib/docker (the Docker Engine's data)",
    );
    assert_line(
        &text,
        "web/compose.yaml:8: services.web.volumes:",
        "--allow system-binds,docker-socket",
    );
    assert_line(
        &text,
        "web/compose.yaml:9: services.web.volumes:",
        "lies in /var/lib/docker",
    );
    // `/run` holds the socket: allowing system folders alone does not allow it.
    let text = repo.refused(&["--allow", "system-binds"]);
    assert_line(&text, "web/compose.yaml:6:", "Docker socket");
    repo.valid(&["--allow", "system-binds,docker-socket"]);
}

#[test]
fn the_engine_socket_named_by_docker_host_is_guarded_like_the_usual_one() {
    // `validate` here runs with `--docker-host unix:///nonexistent.sock`.
    let repo = Repo::new("    volumes:\n      - /nonexistent.sock:/engine.sock\n");
    let text = repo.refused(&[]);
    assert_line(
        &text,
        "web/compose.yaml:5: services.web.volumes:",
        "--allow docker-socket",
    );
    repo.valid(&["--allow", "docker-socket"]);
}

#[test]
fn the_state_dir_and_the_folders_around_it_are_refused_as_bind_sources() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(state.join("env")).unwrap();
    let repo = Repo::new(&format!(
        "    volumes:\n      - {s}:/a:ro\n      - {s}/env:/b:ro\n      - {p}:/c:ro\n      - {s}/checkouts/abc:/d\n",
        s = state.display(),
        p = dir.path().display()
    ));
    let (code, text) = validate(&repo.repo(), &state, &[]);
    assert_eq!(code, 2, "{text}");
    for line in 5..=8 {
        assert_line(
            &text,
            &format!("web/compose.yaml:{line}: services.web.volumes:"),
            "the reconciler's state dir",
        );
    }
    assert!(text.contains("--allow state-dir"), "{text}");
    // A relative --state-dir is guarded as the absolute folder it names.
    let out = Command::new(env!("CARGO_BIN_EXE_reconciler"))
        .current_dir(dir.path())
        .args(["--state-dir", "state", "validate", "--repo"])
        .arg(repo.repo())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let (code, text) = validate(&repo.repo(), &state, &["--allow", "state-dir"]);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn a_bind_source_that_links_to_etc_or_the_socket_is_refused_in_short_and_long_form() {
    let host = tempfile::tempdir().unwrap();
    let h = host.path();
    symlink("/etc", h.join("config")).unwrap();
    symlink("/var/run/docker.sock", h.join("engine")).unwrap();
    symlink("/", h.join("root")).unwrap();
    std::fs::create_dir(h.join("plain")).unwrap();
    let repo = Repo::new(&format!(
        "    volumes:\n      - {h}/config:/a\n      - {h}/engine:/b\n      - {h}/root/etc/ssl:/c\n      - type: bind\n        source: {h}/config/ssl\n        target: /d\n      - type: bind\n        source: {h}/root/run\n        target: /e\n      - {h}/plain:/f\n",
        h = h.display()
    ));
    let text = repo.refused(&[]);
    let at = |line: usize| format!("web/compose.yaml:{line}: services.web.volumes:");
    assert_line(&text, &at(5), "resolving to '/etc'");
    assert_line(&text, &at(6), "the Docker socket");
    assert_line(&text, &at(7), "resolving to '/etc/ssl'");
    assert_line(&text, &at(8), "resolving to '/etc/ssl'");
    assert_line(&text, &at(11), "the Docker socket");
    assert!(
        !text.contains(&at(14)),
        "a plain folder is allowed:\n{text}"
    );
}

#[test]
fn capabilities_beyond_dockers_defaults_are_refused_in_any_spelling() {
    let repo = Repo::new(
        "    cap_add:\n      - ALL\n      - sys_admin\n      - CAP_NET_ADMIN\n      - SYS_MODULE\n      - NET_BIND_SERVICE\n      - cap_sys_ptrace\n      - BPF\n",
    );
    let text = repo.refused(&[]);
    let at = |line: usize| format!("web/compose.yaml:{line}: services.web.cap_add:");
    assert_line(&text, &at(5), "cap_add ALL is refused by host policy");
    assert_line(
        &text,
        &at(6),
        "capability SYS_ADMIN is refused by host policy",
    );
    assert_line(&text, &at(7), "--allow cap:NET_ADMIN");
    assert_line(&text, &at(8), "SYS_MODULE");
    assert!(
        !text.contains(&at(9)),
        "a default capability is fine:\n{text}"
    );
    assert_line(&text, &at(10), "SYS_PTRACE");
    assert_line(&text, &at(11), "BPF");
    // One capability allowed by name: only that one passes.
    let text = repo.refused(&["--allow", "cap:net_admin"]);
    assert!(!text.contains(&at(7)), "{text}");
    assert!(text.contains(&at(6)), "{text}");
    repo.valid(&["--allow", "capabilities"]);
}

#[test]
fn joining_another_containers_namespaces_is_refused_unless_the_host_allows_it() {
    let repo = Repo::new(
        "    network_mode: \"container:outside\"\n    pid: \"container:outside\"\n    ipc: container:outside\n",
    );
    let text = repo.refused(&[]);
    for (line, key) in [(4, "network_mode"), (5, "pid"), (6, "ipc")] {
        assert_line(
            &text,
            &format!("web/compose.yaml:{line}: services.web.{key}:"),
            "another container's namespace",
        );
    }
    assert!(text.contains("--allow container-namespaces"), "{text}");
    // Host namespaces are a separate permission.
    repo.refused(&["--allow", "host-namespaces"]);
    repo.valid(&["--allow", "container-namespaces"]);
}

#[test]
fn devices_are_a_supported_key_refused_unless_the_host_allows_them() {
    let repo = Repo::new(
        "    devices:\n      - /dev/zero:/dev/extra-zero:r\n      - source: /dev/fuse\n        permissions: rw\n",
    );
    let text = repo.refused(&[]);
    assert_line(
        &text,
        "web/compose.yaml:5: services.web.devices:",
        "device /dev/zero is refused by host policy",
    );
    assert_line(
        &text,
        "web/compose.yaml:6: services.web.devices:",
        "--allow device:/dev/fuse",
    );
    let text = repo.refused(&["--allow", "device:/dev/zero"]);
    assert!(!text.contains(":5:"), "{text}");
    repo.valid(&["--allow", "device:/dev/zero,device:/dev/fuse"]);
    repo.valid(&["--allow", "devices"]);
}

#[test]
fn a_named_volume_binding_etc_through_driver_opts_is_judged_as_a_bind_of_etc() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("web")).unwrap();
    std::fs::write(
        dir.path().join("web/compose.yaml"),
        "services:\n  web:\n    image: web:v1\n    volumes: [\"etc:/host-etc\"]\nvolumes:\n  etc:\n    driver_opts: {type: none, o: bind, device: /etc}\n",
    )
    .unwrap();
    let state = dir.path().join("state");
    let (code, text) = validate(dir.path(), &state, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("web/compose.yaml:7: volumes.etc.driver_opts: the volume binds a host path")
            && text.contains("--allow system-binds"),
        "{text}"
    );
    // Allowed exactly when the same bind written as a bind would be.
    let (code, text) = validate(dir.path(), &state, &["--allow", "system-binds"]);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn a_volume_the_host_mounts_from_a_server_or_a_device_needs_the_hosts_consent() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("web")).unwrap();
    std::fs::write(
        dir.path().join("web/compose.yaml"),
        "services:\n  web:\n    image: web:v1\n    volumes: [\"share:/share\"]\nvolumes:\n  share:\n    driver_opts: {type: nfs, o: \"addr=10.0.0.1,rw\", device: \":/export\"}\n",
    )
    .unwrap();
    let state = dir.path().join("state");
    let (code, text) = validate(dir.path(), &state, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("web/compose.yaml:7: volumes.share.driver_opts: the volume makes the host mount a filesystem of type 'nfs'")
            && text.contains("--allow volume-mounts"),
        "{text}"
    );
    let (code, text) = validate(dir.path(), &state, &["--allow", "volume-mounts"]);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn an_unknown_allow_value_lists_every_known_one() {
    let repo = Repo::new("");
    let text = repo.refused(&["--allow", "cap_add"]);
    for known in [
        "privileged",
        "host-namespaces",
        "container-namespaces",
        "docker-socket",
        "system-binds",
        "state-dir",
        "capabilities",
        "cap:<NAME>",
        "devices",
        "device:<PATH>",
        "volume-mounts",
    ] {
        assert!(text.contains(known), "{known} missing from:\n{text}");
    }
    assert!(text.contains("--allow cap_add"), "{text}");
}

#[test]
fn an_allowed_device_and_capability_reach_the_container_and_a_refused_one_touches_nothing() {
    let env = TestEnv::new("policydevice");
    let image = env.registry.push(WORKER, "worker:v1");
    env.write_compose(&format!(
        "services:\n  worker:\n    image: {image}\n    cap_add: [NET_ADMIN]\n    devices: [\"/dev/zero:/dev/extra-zero:r\"]\n    x-reconciler: {{min_ready: 1s}}\n"
    ));
    let refused = env.run("apply", &[]);
    assert_eq!(refused.code, 2, "{refused}");
    assert!(
        refused.combined().contains("services.worker.cap_add")
            && refused.combined().contains("services.worker.devices"),
        "{refused}"
    );
    assert!(env.containers().is_empty(), "a refused stack must not run");

    let out = env.run("apply", &["--allow", "cap:NET_ADMIN,device:/dev/zero"]);
    assert_eq!(out.code, 0, "{out}");
    let container = env.container("worker");
    let host = &container.inspect["HostConfig"];
    assert_eq!(host["Devices"][0]["PathOnHost"], "/dev/zero", "{host}");
    assert_eq!(host["Devices"][0]["PathInContainer"], "/dev/extra-zero");
    assert_eq!(host["Devices"][0]["CgroupPermissions"], "r");
    assert!(host["CapAdd"].to_string().contains("NET_ADMIN"), "{host}");
    // Inside: the device node is there, and the process holds CAP_NET_ADMIN (bit 12).
    docker_ok(&["exec", &container.id, "test", "-c", "/dev/extra-zero"]);
    let status = docker_ok(&["exec", &container.id, "cat", "/proc/1/status"]);
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|hex| u64::from_str_radix(hex.trim(), 16).unwrap())
        .expect("CapEff in /proc/1/status");
    assert_ne!(cap_eff & (1 << 12), 0, "CapEff {cap_eff:x}");
}

#[test]
fn a_bind_inside_a_folder_another_container_mounts_writable_is_refused() {
    // The writer could replace `data/evil` by a link to `/`; the engine follows links in bind
    // sources, so the second service would get the host's root.
    let host = tempfile::tempdir().unwrap();
    let (outer, inner) = (host.path().join("srv"), host.path().join("srv/inner"));
    std::fs::create_dir_all(&inner).unwrap();
    let repo = Repo::new(&format!(
        "    volumes:\n      - ./data:/data\n      - {0}:/srv\n  b:\n    image: web:v1\n    volumes:\n      - ./data/evil:/host:ro\n      - {1}:/inner:ro\n",
        outer.display(),
        inner.display()
    ));
    std::fs::create_dir_all(repo.repo().join("web/data/evil")).unwrap();
    let text = repo.refused(&[]);
    assert_line(
        &text,
        "web/compose.yaml:10: services.b.volumes",
        "bind source './data/evil' lies inside './data', which service 'web' mounts writable",
    );
    // Through a link inside the stack folder the copy keeps: still inside `./data`.
    let linked = Repo::new(
        "    volumes:\n      - ./data:/data\n  b:\n    image: web:v1\n    volumes:\n      - ./alias/evil:/host:ro\n",
    );
    std::fs::create_dir_all(linked.repo().join("web/data/evil")).unwrap();
    symlink("data", linked.repo().join("web/alias")).unwrap();
    let through_link = linked.refused(&[]);
    assert_line(
        &through_link,
        "web/compose.yaml:9: services.b.volumes",
        "bind source './data/evil' lies inside './data'",
    );
    assert_line(
        &text,
        "web/compose.yaml:11: services.b.volumes",
        &format!("lies inside '{}'", outer.display()),
    );
    // Read-only, the outer folder cannot be changed from inside: the same layout is fine.
    let repo = Repo::new(&format!(
        "    volumes:\n      - ./data:/data:ro\n      - {0}:/srv:ro\n  b:\n    image: web:v1\n    volumes:\n      - ./data/evil:/host:ro\n      - {1}:/inner\n",
        outer.display(),
        inner.display()
    ));
    std::fs::create_dir_all(repo.repo().join("web/data/evil")).unwrap();
    repo.valid(&[]);
}

#[test]
fn a_network_named_host_or_container_is_refused_like_the_namespace_it_joins() {
    let repo = Repo::new(
        "    networks: [x, y]\nnetworks:\n  x:\n    name: \"container:victim\"\n  y:\n    name: host\n",
    );
    let text = repo.refused(&[]);
    assert_line(
        &text,
        "web/compose.yaml:4: services.web.networks",
        "network 'x' is named 'container:victim' is refused by host policy",
    );
    assert_line(
        &text,
        "web/compose.yaml:4: services.web.networks",
        "network 'y' is named 'host' is refused",
    );
    repo.valid(&["--allow", "container-namespaces,host-namespaces"]);
}
