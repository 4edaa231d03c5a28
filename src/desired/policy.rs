//! Host policy: what a stack may ask of the host. Strict by default; each rule can be
//! loosened by a host setting (`--allow`), never by the repository.
//!
//! Bind sources and devices are judged as written AND as they resolve on this host (every
//! symlink followed, also in parent components), so a link planted by anyone cannot turn
//! `/srv/x` into `/etc`.

mod runtime_keys;

use super::error::Problem;
use super::file_mount::FileSource;
use super::model::{MountKind, Stack, VolumeMount};
use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub allow_privileged: bool,
    /// `network_mode`/`pid`/`ipc: host`.
    pub allow_host_namespaces: bool,
    /// `network_mode`/`pid`/`ipc: container:<name>`: joining any container's namespaces.
    pub allow_container_namespaces: bool,
    pub allow_docker_socket: bool,
    pub allow_system_binds: bool,
    /// Binds of the state dir (host secrets, checkouts) or of a folder holding it.
    pub allow_state_dir_binds: bool,
    /// Any capability may be added (`cap_add: [ALL]` included).
    pub allow_all_capabilities: bool,
    /// Capabilities allowed beyond Docker's default set, normalized (`NET_ADMIN`).
    pub allowed_capabilities: BTreeSet<String>,
    /// Any host device may be given to a container.
    pub allow_all_devices: bool,
    /// Host devices that may be given to a container.
    pub allowed_devices: Vec<PathBuf>,
    /// `security_opt` entries that loosen confinement (seccomp, AppArmor, SELinux, system paths).
    pub allow_security_opt: bool,
    /// Runtimes other than runc that a service may choose.
    pub allowed_runtimes: BTreeSet<String>,
    pub allow_cgroup_parent: bool,
    pub allow_gpus: bool,
    /// A negative `oom_score_adj`, or `oom_kill_disable` without a memory limit.
    pub allow_oom_protection: bool,
    /// Volumes whose driver options make the host mount a filesystem (nfs, cifs, a device).
    pub allow_volume_mounts: bool,
    /// The reconciler's own state dir, absolute; never a bind source unless allowed.
    pub state_dir: Option<PathBuf>,
    /// The engine's socket when `--docker-host` names one elsewhere than the usual places.
    pub engine_socket: Option<PathBuf>,
    /// When set, absolute bind sources must lie under one of these.
    pub bind_roots: Vec<PathBuf>,
    /// When set, images must come from one of these registries (host[:port]).
    pub registries: Vec<String>,
}

/// Every `--allow` value, as the unknown-value message lists them.
pub const ALLOW_VALUES: &str = "privileged, host-namespaces, container-namespaces, docker-socket, system-binds, state-dir, capabilities, cap:<NAME> (e.g. cap:NET_ADMIN), devices, device:<PATH> (e.g. device:/dev/fuse), gpus, security-opt, runtime:<NAME> (e.g. runtime:nvidia), cgroup-parent, oom-protection, volume-mounts";

impl Policy {
    /// Apply one `--allow` value; `Err` names the value and lists the known ones.
    pub fn allow(&mut self, value: &str) -> Result<(), String> {
        let value = value.trim();
        match value {
            "" => {}
            "privileged" => self.allow_privileged = true,
            "host-namespaces" => self.allow_host_namespaces = true,
            "container-namespaces" => self.allow_container_namespaces = true,
            "docker-socket" => self.allow_docker_socket = true,
            "system-binds" => self.allow_system_binds = true,
            "state-dir" => self.allow_state_dir_binds = true,
            "capabilities" => self.allow_all_capabilities = true,
            "devices" => self.allow_all_devices = true,
            "gpus" => self.allow_gpus = true,
            "security-opt" => self.allow_security_opt = true,
            "cgroup-parent" => self.allow_cgroup_parent = true,
            "oom-protection" => self.allow_oom_protection = true,
            "volume-mounts" => self.allow_volume_mounts = true,
            _ => {
                if let Some(cap) = value.strip_prefix("cap:") {
                    let cap = normalize_capability(cap);
                    if cap.is_empty() || !cap.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        return Err(format!("--allow {value}: '{cap}' is not a capability name (write e.g. cap:NET_ADMIN)"));
                    }
                    self.allowed_capabilities.insert(cap);
                } else if let Some(device) = value.strip_prefix("device:") {
                    if !device.starts_with('/') {
                        return Err(format!("--allow {value}: a device is an absolute host path (write e.g. device:/dev/fuse)"));
                    }
                    self.allowed_devices.push(PathBuf::from(device));
                } else if let Some(runtime) = value.strip_prefix("runtime:") {
                    if runtime.is_empty()
                        || !runtime
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                    {
                        return Err(format!("--allow {value}: '{runtime}' is not a runtime name (write e.g. runtime:nvidia)"));
                    }
                    self.allowed_runtimes.insert(runtime.to_string());
                } else {
                    return Err(format!(
                        "--allow {value}: unknown value; expected {ALLOW_VALUES}"
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn check(&self, stack: &Stack) -> Vec<Problem> {
        let guarded = self.guarded_paths();
        let mut problems = Vec::new();
        for (name, service) in &stack.services {
            // `key` is a service key, or `key:detail` for one entry of it (a mount target, a
            // capability, a device) whose own line the converter recorded.
            let mut refuse = |key: &str, message: String| {
                let base = key.split(':').next().unwrap_or(key);
                problems.push(Problem {
                    file: stack.file.clone(),
                    line: service
                        .lines
                        .get(key)
                        .or_else(|| service.lines.get(base))
                        .or_else(|| service.lines.get("image"))
                        .copied()
                        .unwrap_or(1),
                    key: format!("services.{name}.{base}"),
                    message,
                });
            };
            let spec = &service.spec;
            if spec.privileged && !self.allow_privileged {
                refuse(
                    "privileged",
                    "privileged containers are refused by host policy (they get every device and capability of the host); the host can allow them with --allow privileged".into(),
                );
            }
            for (key, value) in [
                ("network_mode", &spec.network_mode),
                ("pid", &spec.pid),
                ("ipc", &spec.ipc),
            ] {
                if let Some(message) = value.as_deref().and_then(|v| self.namespace_refusal(v)) {
                    refuse(key, message);
                }
            }
            // A top-level network's `name:` is what the engine gets as the network mode of the
            // first network: `host` or `container:x` there is a namespace, not a network.
            if spec.network_mode.is_none() {
                for key in spec.networks.keys() {
                    let Some(network) = stack.networks.get(key) else {
                        continue;
                    };
                    if let Some(message) = self.namespace_refusal(&network.name) {
                        refuse("networks", format!("network '{key}' is named {message}"));
                    }
                }
            }
            for cap in &spec.cap_add {
                if let Some(message) = self.capability_refusal(cap) {
                    refuse(&format!("cap_add:{cap}"), message);
                }
            }
            for device in &spec.devices {
                if let Some(message) = self.device_refusal(&device.host_path) {
                    refuse(&format!("devices:{}", device.host_path), message);
                }
            }
            if !spec.device_requests.is_empty() && !self.allow_gpus && !self.allow_all_devices {
                let first = service
                    .lines
                    .keys()
                    .find(|k| k.starts_with("deploy:device_requests"))
                    .cloned()
                    .unwrap_or_else(|| "deploy".into());
                refuse(&first, "deploy.resources.reservations.devices is refused by host policy (it gives host devices, such as GPUs, to the container); the host can allow it with --allow gpus, or every device with --allow devices".into());
            }
            for (key, message) in self.runtime_key_refusals(spec) {
                refuse(&key, message);
            }
            for mount in spec
                .mounts
                .iter()
                .filter(|m| m.kind == MountKind::Bind && m.repo_relative.is_none())
            {
                let source = mount.source.as_deref().unwrap_or("/");
                if let Some(message) = self.bind_refusal(source, &guarded) {
                    refuse(&format!("volumes:{}", mount.target), message);
                }
            }
            // A secret or config from an absolute `file:` is a bind of a host path like any other.
            for (kind, file) in spec.file_mounts() {
                if let FileSource::Host { path } = &file.from {
                    if let Some(message) = self.bind_refusal(path, &guarded) {
                        refuse(&format!("{}:{}", kind.key(), file.target), message);
                    }
                }
            }
            if !self.registries.is_empty() {
                let registry = registry_of(&spec.image);
                if !self.registries.iter().any(|r| r == &registry) {
                    refuse("image", format!("image registry '{registry}' is not in the host's allowed registries ({})", self.registries.join(", ")));
                }
            }
        }
        problems.extend(self.volume_refusals(stack, &guarded));
        problems.sort_by_key(|p| p.line);
        problems
    }

    /// A volume's driver options make the host mount something when the volume is created: a
    /// host path (judged as a bind source of that path), or a filesystem (a remote server the
    /// file names, a host block device), which the host must allow.
    fn volume_refusals(&self, stack: &Stack, guarded: &[Guarded]) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (key, volume) in &stack.volumes {
            let message = match volume.host_mount() {
                VolumeMount::Nothing => None,
                VolumeMount::Bind(device) if device.starts_with('/') => self
                    .bind_refusal(device, guarded)
                    .map(|m| format!("the volume binds a host path: {m}")),
                VolumeMount::Bind(device) => Some(format!("the volume binds '{device}', which is not an absolute host path")),
                VolumeMount::Filesystem(what) if !self.allow_volume_mounts => Some(format!("the volume makes the host mount {what} (the host's kernel mounts it as root: a server the file names, a host device, or host folders layered by overlay) and is refused by host policy; the host can allow it with --allow volume-mounts")),
                VolumeMount::Filesystem(_) => None,
            };
            if let Some(message) = message {
                problems.push(Problem {
                    file: stack.file.clone(),
                    line: volume.driver_opts_line.max(1),
                    key: format!("volumes.{key}.driver_opts"),
                    message,
                });
            }
        }
        problems
    }

    fn namespace_refusal(&self, value: &str) -> Option<String> {
        if value == "host" && !self.allow_host_namespaces {
            return Some("'host' is refused by host policy (it shares the host's namespace); the host can allow it with --allow host-namespaces".into());
        }
        // The engine reads `container:<name|id>`; any case is refused, to be safe.
        if value.to_ascii_lowercase().starts_with("container:") && !self.allow_container_namespaces
        {
            return Some(format!("'{value}' is refused by host policy (it joins another container's namespace, possibly one outside this stack); the host can allow it with --allow container-namespaces"));
        }
        None
    }

    fn capability_refusal(&self, written: &str) -> Option<String> {
        let cap = normalize_capability(written);
        if self.allow_all_capabilities
            || self.allowed_capabilities.contains(&cap)
            || DOCKER_DEFAULT_CAPABILITIES.contains(&cap.as_str())
        {
            return None;
        }
        if cap == "ALL" {
            return Some("cap_add ALL is refused by host policy (it gives every capability of the host's root); the host can allow it with --allow capabilities".into());
        }
        Some(format!("capability {cap} is refused by host policy (only Docker's default capabilities may be added); the host can allow it with --allow cap:{cap}, or every capability with --allow capabilities"))
    }

    fn device_refusal(&self, written: &str) -> Option<String> {
        if self.allow_all_devices {
            return None;
        }
        let resolved = match resolve_on_host(Path::new(written)) {
            Ok(p) => p,
            Err(e) => return Some(format!("device '{written}' is refused by host policy: it cannot be resolved on this host ({e})")),
        };
        let allowed = self.allowed_devices.iter().any(|a| {
            resolve_on_host(a).is_ok_and(|a| a == resolved)
                || normalize(a) == normalize(Path::new(written))
        });
        if allowed {
            return None;
        }
        Some(format!("device {written} is refused by host policy (a device gives the container direct access to host hardware); the host can allow it with --allow device:{written}, or every device with --allow devices"))
    }

    /// What a bind source may not be, hold or lie in, with the flag that allows each.
    fn guarded_paths(&self) -> Vec<Guarded> {
        let mut list: Vec<(PathBuf, Guard, &'static str)> =
            vec![(PathBuf::from("/"), Guard::System, "the host's root folder")];
        for dir in SYSTEM_DIRS {
            list.push((PathBuf::from(dir), Guard::System, "a system folder"));
        }
        list.push((
            PathBuf::from("/var/lib/docker"),
            Guard::System,
            "the Docker Engine's data",
        ));
        for socket in DOCKER_SOCKETS {
            list.push((
                PathBuf::from(socket),
                Guard::DockerSocket,
                "the Docker socket, which gives root on the host",
            ));
        }
        if let Some(socket) = &self.engine_socket {
            list.push((
                socket.clone(),
                Guard::DockerSocket,
                "the Docker socket this host uses, which gives root on the host",
            ));
        }
        if let Some(dir) = &self.state_dir {
            list.push((
                dir.clone(),
                Guard::StateDir,
                "the reconciler's state dir, holding host secrets and checkouts",
            ));
        }
        list.into_iter()
            .map(|(path, guard, what)| {
                let mut forms = vec![normalize(&path)];
                if let Ok(resolved) = resolve_on_host(&path) {
                    forms.push(resolved);
                }
                forms.dedup();
                Guarded {
                    path,
                    forms,
                    guard,
                    what,
                }
            })
            .collect()
    }

    fn allows(&self, guard: Guard) -> bool {
        match guard {
            Guard::System => self.allow_system_binds,
            Guard::DockerSocket => self.allow_docker_socket,
            Guard::StateDir => self.allow_state_dir_binds,
        }
    }

    /// Why an absolute bind source is refused, judged as written (`..` applied) and as it
    /// resolves on this host; `None` when it is allowed.
    fn bind_refusal(&self, source: &str, guarded: &[Guarded]) -> Option<String> {
        let written = normalize(Path::new(source));
        let resolved = match resolve_on_host(Path::new(source)) {
            Ok(p) => p,
            Err(e) => {
                return Some(format!(
                    "bind source '{}' is refused by host policy: it cannot be resolved on this host ({e})",
                    written.display()
                ))
            }
        };
        let mut forms = vec![written.clone()];
        if resolved != written {
            forms.push(resolved.clone());
        }
        let shown = if resolved == written {
            format!("'{}'", written.display())
        } else {
            format!(
                "'{}' (resolving to '{}' on this host)",
                written.display(),
                resolved.display()
            )
        };

        let mut reasons = Vec::new();
        let mut flags: Vec<&str> = Vec::new();
        for g in guarded.iter().filter(|g| !self.allows(g.guard)) {
            let hit = forms.iter().find_map(|s| {
                g.forms
                    .iter()
                    .find_map(|p| overlap(s, p))
                    .map(|relation| (s, relation))
            });
            let Some((s, relation)) = hit else { continue };
            if flags.contains(&g.guard.flag()) {
                continue;
            }
            flags.push(g.guard.flag());
            reasons.push(match relation {
                Relation::Same if g.path == Path::new("/") => format!("it is {}", g.what),
                Relation::Same => format!("it is {} ({})", g.path.display(), g.what),
                Relation::Inside => format!(
                    "'{}' lies in {} ({})",
                    s.display(),
                    g.path.display(),
                    g.what
                ),
                Relation::Holds => format!("it holds {} ({})", g.path.display(), g.what),
            });
        }
        if !reasons.is_empty() {
            return Some(format!(
                "bind source {shown} is refused by host policy: {}; the host can allow it with --allow {}",
                reasons.join("; "),
                flags.join(",")
            ));
        }

        if !self.bind_roots.is_empty() {
            let roots: Vec<PathBuf> = self
                .bind_roots
                .iter()
                .flat_map(|r| [Some(normalize(r)), resolve_on_host(r).ok()])
                .flatten()
                .collect();
            if !forms.iter().all(|s| roots.iter().any(|r| s.starts_with(r))) {
                return Some(format!(
                    "bind source {shown} is refused by host policy: it is outside the allowed bind roots ({}); the host sets them with --bind-root",
                    self.bind_roots
                        .iter()
                        .map(|r| r.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        None
    }
}

const SYSTEM_DIRS: &[&str] = &[
    "/etc", "/proc", "/sys", "/boot", "/dev", "/root", "/run", "/var/run",
];
const DOCKER_SOCKETS: &[&str] = &["/var/run/docker.sock", "/run/docker.sock"];

/// What Docker gives every container anyway, so adding one changes nothing the host must judge.
const DOCKER_DEFAULT_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guard {
    System,
    DockerSocket,
    StateDir,
}

impl Guard {
    fn flag(self) -> &'static str {
        match self {
            Guard::System => "system-binds",
            Guard::DockerSocket => "docker-socket",
            Guard::StateDir => "state-dir",
        }
    }
}

struct Guarded {
    /// As listed, for messages.
    path: PathBuf,
    /// As listed and as resolved on this host (`/var/run` is often a link to `/run`).
    forms: Vec<PathBuf>,
    guard: Guard,
    what: &'static str,
}

enum Relation {
    Same,
    /// The source lies in the guarded path.
    Inside,
    /// The source is a folder holding the guarded path.
    Holds,
}

fn overlap(source: &Path, guarded: &Path) -> Option<Relation> {
    if source == guarded {
        Some(Relation::Same)
    } else if guarded == Path::new("/") {
        // Everything lies in `/`; only `/` itself is refused by that entry.
        None
    } else if source.starts_with(guarded) {
        Some(Relation::Inside)
    } else if guarded.starts_with(source) {
        Some(Relation::Holds)
    } else {
        None
    }
}

/// `cap_sys_admin`, `CAP_SYS_ADMIN` and `SYS_ADMIN` are one capability to the engine.
pub fn normalize_capability(cap: &str) -> String {
    let upper = cap.trim().to_ascii_uppercase();
    upper
        .strip_prefix("CAP_")
        .map(str::to_string)
        .unwrap_or(upper)
}

/// Resolve `.` and `..` lexically, so `/srv/../etc` is seen as `/etc`.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(p) => out.push(p),
            _ => {}
        }
    }
    out
}

/// One bind of the desired state, as [`nested_binds`] compares them.
struct Bind<'a> {
    stack: &'a Stack,
    service: &'a str,
    /// The service key that mounts it: `volumes`, `secrets` or `configs`.
    key: &'static str,
    target: &'a str,
    /// Repository binds: the path inside the stack folder (`data/evil`, `` for the folder).
    /// Host binds: the path as it resolves on the host.
    path: PathBuf,
    in_repo: bool,
    writable: bool,
}

/// Binds whose source lies inside a folder that a container mounts writable. The container can
/// replace that source with a link (to `/`, say) and the engine follows links in bind sources on
/// the host at every create and restart, so such a bind is a way out of every rule above.
/// Repository binds are compared within their stack (each stack's files are written to its own
/// folder), host binds across every stack.
pub fn nested_binds(stacks: &[Stack]) -> Vec<Problem> {
    let mut binds = Vec::new();
    for stack in stacks {
        for (name, service) in &stack.services {
            for mount in &service.spec.mounts {
                let (path, in_repo) = match (mount.kind, &mount.repo_relative, &mount.source) {
                    (MountKind::Bind, Some(rel), _) => (in_stack_folder(&stack.dir, rel), true),
                    (MountKind::Bind, None, Some(source)) => {
                        match resolve_on_host(Path::new(source)) {
                            Ok(path) => (path, false),
                            Err(_) => continue, // refused by the policy check already
                        }
                    }
                    // A named volume the local driver binds from a host path is a bind of it.
                    (MountKind::Volume, _, Some(key)) => {
                        let Some(VolumeMount::Bind(device)) =
                            stack.volumes.get(key).map(|def| def.host_mount())
                        else {
                            continue;
                        };
                        match resolve_on_host(Path::new(device)) {
                            Ok(path) => (path, false),
                            Err(_) => continue, // refused by the policy check already
                        }
                    }
                    _ => continue,
                };
                binds.push(Bind {
                    stack,
                    service: name,
                    key: "volumes",
                    target: &mount.target,
                    path,
                    in_repo,
                    writable: !mount.read_only,
                });
            }
            // Secrets and configs from files are read-only binds: never outer, but inner ones.
            for (kind, file) in service.spec.file_mounts() {
                let (path, in_repo) = match &file.from {
                    FileSource::Repository { path, .. } => {
                        (in_stack_folder(&stack.dir, path), true)
                    }
                    FileSource::Host { path } => match resolve_on_host(Path::new(path)) {
                        Ok(path) => (path, false),
                        Err(_) => continue, // refused by the policy check already
                    },
                    FileSource::Content { .. } => continue,
                };
                binds.push(Bind {
                    stack,
                    service: name,
                    key: kind.key(),
                    target: &file.target,
                    path,
                    in_repo,
                    writable: false,
                });
            }
        }
    }
    let mut problems = Vec::new();
    for inner in &binds {
        let outer = binds.iter().find(|outer| {
            outer.writable
                && outer.in_repo == inner.in_repo
                && (!inner.in_repo || std::ptr::eq(outer.stack, inner.stack))
                && inner.path != outer.path
                && inner.path.starts_with(&outer.path)
        });
        let Some(outer) = outer else { continue };
        let shown = |b: &Bind| {
            if b.in_repo {
                format!("./{}", b.path.display())
            } else {
                b.path.display().to_string()
            }
        };
        let whose = if std::ptr::eq(outer.stack, inner.stack) {
            format!("service '{}'", outer.service)
        } else {
            format!(
                "service '{}' of stack '{}'",
                outer.service, outer.stack.name
            )
        };
        let service = &inner.stack.services[inner.service];
        problems.push(Problem {
            file: inner.stack.file.clone(),
            line: service
                .lines
                .get(&format!("{}:{}", inner.key, inner.target))
                .or_else(|| service.lines.get(inner.key))
                .copied()
                .unwrap_or(1),
            key: format!("services.{}.{}", inner.service, inner.key),
            message: format!(
                "bind source '{}' lies inside '{}', which {whose} mounts writable: that container could replace it with a link the engine would follow on the host; mount '{}' read-only (:ro) or bind a folder outside it",
                shown(inner),
                shown(outer),
                shown(outer)
            ),
        });
    }
    problems
}

/// Where a repository bind source really is inside its stack folder, links within the folder
/// followed (`alias/evil` with `alias -> data` is `data/evil`): the copy the engine binds keeps
/// those links. `.` is the folder itself, the empty path, which holds every other bind.
fn in_stack_folder(dir: &Path, rel: &str) -> PathBuf {
    let lexical = || {
        PathBuf::from(rel)
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect::<PathBuf>()
    };
    match (dir.canonicalize(), dir.join(rel).canonicalize()) {
        (Ok(root), Ok(real)) => real
            .strip_prefix(&root)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| lexical()),
        _ => lexical(),
    }
}

/// The path the kernel would reach on this host: every symlink followed (in parent components
/// too, `..` applied after the link it follows), as `realpath` does; components that do not exist
/// are kept as written. A component that cannot be inspected (e.g. permission denied) is an
/// error: the engine, as root, could follow what we cannot see.
pub fn resolve_on_host(path: &Path) -> Result<PathBuf, String> {
    let mut pending: std::collections::VecDeque<PathBuf> = parts(path).into_iter().collect();
    let mut out = PathBuf::from("/");
    let mut links = 0;
    let mut missing = false;
    while let Some(part) = pending.pop_front() {
        if part == Path::new("..") {
            out.pop();
            continue;
        }
        out.push(&part);
        if missing {
            continue;
        }
        match std::fs::symlink_metadata(&out) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(format!("too many symbolic links at {}", out.display()));
                }
                let target = std::fs::read_link(&out)
                    .map_err(|e| format!("cannot read the link {}: {e}", out.display()))?;
                out.pop();
                if target.is_absolute() {
                    out = PathBuf::from("/");
                }
                for p in parts(&target).into_iter().rev() {
                    pending.push_front(p);
                }
            }
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                missing = true
            }
            Err(e) => return Err(format!("cannot inspect {}: {e}", out.display())),
        }
    }
    Ok(out)
}

/// Normal and `..` components of a path; `/` and `.` mean nothing to the walk.
fn parts(path: &Path) -> Vec<PathBuf> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(PathBuf::from(p)),
            Component::ParentDir => Some(PathBuf::from("..")),
            _ => None,
        })
        .collect()
}

/// The registry host of an image reference, `docker.io` when it names none.
pub fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_string()
        }
        _ => "docker.io".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn refusal(policy: &Policy, source: &str) -> Option<String> {
        policy.bind_refusal(source, &policy.guarded_paths())
    }

    #[test]
    fn registry_is_the_first_component_only_when_it_looks_like_a_host() {
        assert_eq!(registry_of("nginx:1"), "docker.io");
        assert_eq!(registry_of("library/nginx"), "docker.io");
        assert_eq!(registry_of("127.0.0.1:5000/web:v1"), "127.0.0.1:5000");
        assert_eq!(registry_of("localhost/web"), "localhost");
        assert_eq!(registry_of("ghcr.io/org/app@sha256:00"), "ghcr.io");
    }

    #[test]
    fn system_folders_are_refused_even_through_dot_dot() {
        let policy = Policy::default();
        for refused in [
            "/srv/../etc/passwd",
            "/",
            "/var/run/docker.sock",
            "/run/docker.sock",
            "/var/run",
            "/run",
            "/run/user",
            "/var/lib/docker",
            "/var/lib/docker/volumes",
            "/proc/1",
        ] {
            assert!(refusal(&policy, refused).is_some(), "{refused}");
        }
        assert!(refusal(&policy, "/srv/data").is_none());
    }

    #[test]
    fn the_engine_socket_the_host_names_is_guarded_like_the_usual_one() {
        let policy = Policy {
            engine_socket: Some(PathBuf::from("/srv/engine/docker.sock")),
            ..Policy::default()
        };
        let message = refusal(&policy, "/srv/engine").unwrap();
        assert!(message.contains("--allow docker-socket"), "{message}");
        assert!(refusal(&policy, "/srv/data").is_none());
    }

    #[test]
    fn a_folder_holding_a_guarded_path_is_refused_with_every_flag_it_needs() {
        let policy = Policy::default();
        let var = refusal(&policy, "/var").unwrap();
        assert!(
            var.contains("docker-socket") && var.contains("system-binds"),
            "{var}"
        );
        assert!(refusal(&policy, "/var/lib")
            .unwrap()
            .contains("/var/lib/docker"));
        let root = refusal(&policy, "/").unwrap();
        assert!(root.contains("the host's root folder"), "{root}");
    }

    #[test]
    fn the_state_dir_its_parents_and_its_children_are_refused_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let mut policy = Policy {
            state_dir: Some(state.clone()),
            ..Policy::default()
        };
        // A stack's data folder too: by an absolute path another stack could read its data.
        for refused in [
            state.clone(),
            state.join("env"),
            state.join("data/web/data"),
            dir.path().to_path_buf(),
        ] {
            let message = refusal(&policy, refused.to_str().unwrap()).unwrap();
            assert!(message.contains("--allow state-dir"), "{message}");
        }
        assert!(refusal(&policy, dir.path().join("other").to_str().unwrap()).is_none());
        policy.allow("state-dir").unwrap();
        assert!(refusal(&policy, state.join("env").to_str().unwrap()).is_none());
    }

    #[test]
    fn links_are_followed_in_the_last_and_in_parent_components() {
        let dir = tempfile::tempdir().unwrap();
        symlink("/etc", dir.path().join("etc-link")).unwrap();
        symlink("etc-link/ssl", dir.path().join("relative")).unwrap();
        let policy = Policy::default();
        for source in [
            "etc-link",
            "etc-link/ssl/certs",
            "relative",
            "relative/../hosts",
        ] {
            let path = dir.path().join(source);
            let message = refusal(&policy, path.to_str().unwrap());
            assert!(
                message.as_deref().is_some_and(|m| m.contains("/etc")),
                "{source}: {message:?}"
            );
        }
        assert_eq!(
            resolve_on_host(&dir.path().join("relative/../hosts")).unwrap(),
            resolve_on_host(Path::new("/etc/hosts")).unwrap()
        );
    }

    #[test]
    fn a_link_loop_is_refused_not_followed_forever() {
        let dir = tempfile::tempdir().unwrap();
        symlink(dir.path().join("b"), dir.path().join("a")).unwrap();
        symlink(dir.path().join("a"), dir.path().join("b")).unwrap();
        let message = refusal(&Policy::default(), dir.path().join("a/x").to_str().unwrap());
        assert!(
            message
                .as_deref()
                .is_some_and(|m| m.contains("too many symbolic links")),
            "{message:?}"
        );
    }

    #[test]
    fn bind_roots_confine_absolute_binds_also_once_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("srv");
        std::fs::create_dir(&root).unwrap();
        symlink("/opt", root.join("out")).unwrap();
        let policy = Policy {
            bind_roots: vec![root.clone()],
            ..Policy::default()
        };
        assert!(refusal(&policy, root.join("app").to_str().unwrap()).is_none());
        assert!(refusal(&policy, "/opt/app").is_some());
        assert!(refusal(&policy, root.join("out/app").to_str().unwrap()).is_some());
    }

    #[test]
    fn capabilities_beyond_dockers_defaults_are_refused_in_any_spelling() {
        let policy = Policy::default();
        for cap in [
            "ALL",
            "all",
            "SYS_ADMIN",
            "cap_sys_admin",
            "CAP_NET_ADMIN",
            "bpf",
            "NOT_A_CAP",
        ] {
            assert!(policy.capability_refusal(cap).is_some(), "{cap}");
        }
        for cap in ["NET_BIND_SERVICE", "cap_chown", "kill"] {
            assert!(policy.capability_refusal(cap).is_none(), "{cap}");
        }
        let mut one = Policy::default();
        one.allow("cap:net_admin").unwrap();
        assert!(one.capability_refusal("CAP_NET_ADMIN").is_none());
        assert!(one.capability_refusal("SYS_ADMIN").is_some());
        assert!(one.capability_refusal("ALL").is_some());
        let mut all = Policy::default();
        all.allow("capabilities").unwrap();
        assert!(all.capability_refusal("ALL").is_none());
    }

    #[test]
    fn joining_another_containers_namespace_is_refused_unless_allowed() {
        let mut policy = Policy::default();
        assert!(policy.namespace_refusal("container:db").is_some());
        assert!(policy.namespace_refusal("host").is_some());
        assert!(policy.namespace_refusal("shareable").is_none());
        assert!(policy.namespace_refusal("web_default").is_none());
        policy.allow("container-namespaces").unwrap();
        assert!(policy.namespace_refusal("container:db").is_none());
        assert!(policy.namespace_refusal("host").is_some());
    }

    #[test]
    fn devices_are_refused_unless_that_device_or_all_are_allowed() {
        let mut policy = Policy::default();
        assert!(policy.device_refusal("/dev/null").is_some());
        policy.allow("device:/dev/null").unwrap();
        assert!(policy.device_refusal("/dev/null").is_none());
        assert!(policy.device_refusal("/dev/zero").is_some());
        policy.allow("devices").unwrap();
        assert!(policy.device_refusal("/dev/zero").is_none());
    }

    #[test]
    fn an_unknown_allow_value_lists_the_known_ones() {
        let e = Policy::default().allow("capability").unwrap_err();
        assert!(
            e.contains("cap:<NAME>") && e.contains("container-namespaces"),
            "{e}"
        );
        assert!(Policy::default().allow("device:dev/fuse").is_err());
        assert!(Policy::default().allow("cap:").is_err());
    }
}
