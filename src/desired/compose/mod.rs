//! Compose file -> validated, normalized [`Stack`] parts (the Compose subset the reconciler supports).
//!
//! Pure apart from [`StackFiles`], through which `env_file` contents and mounted repository files
//! are read. All problems are collected, not just the first, so one `validate` run lists them all.

mod context;
mod depends_on;
mod keys;
mod networks_volumes;
mod parse;
mod values;

pub use parse::{
    parse_bytes, parse_device, parse_duration, parse_port, parse_short_mount, shell_split,
    MAX_DURATION,
};

use super::dotenv;
use super::error::Problem;
use super::model::*;
use super::yaml::{Node, Value};
use crate::mask::is_secret_key;
use context::{Cx, Text};
use parse::check_device;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Variables for `${VAR}` interpolation, and which of them came from the host-local (secret) file.
#[derive(Debug, Clone, Default)]
pub struct Variables {
    pub values: BTreeMap<String, String>,
    pub host_local: BTreeSet<String>,
}

/// Read access to the files of one stack folder, confined to it.
pub trait StackFiles {
    /// Normalize a path the file names, relative to the stack folder; refuse escapes and symlinks
    /// that leave the repository. Returns the normalized relative path.
    fn resolve(&self, rel: &str) -> Result<String, String>;
    fn read(&self, rel: &str) -> Result<Vec<u8>, String>;
    /// Digest of a file's content, or of a folder's whole tree.
    fn digest(&self, rel: &str) -> Result<String, String>;
    /// Whether a path the file names exists at all (an optional `env_file` may be absent).
    fn exists(&self, rel: &str) -> bool;
}

pub struct StackParts {
    pub name: Option<String>,
    pub services: BTreeMap<String, Service>,
    pub volumes: BTreeMap<String, VolumeDef>,
    pub networks: BTreeMap<String, NetworkDef>,
}

/// Convert a parsed Compose document. `file` is the path shown in messages.
pub fn convert(
    doc: &Node,
    file: &str,
    project: &str,
    vars: &Variables,
    files: &dyn StackFiles,
) -> Result<StackParts, Vec<Problem>> {
    let mut cx = Cx::new(file, vars, files);
    let parts = cx.stack(doc, project);
    cx.finish(parts)
}

impl Cx<'_> {
    /// The whole document: volumes and networks first, as the services refer to them.
    fn stack(&mut self, doc: &Node, project: &str) -> StackParts {
        let mut parts = StackParts {
            name: None,
            services: BTreeMap::new(),
            volumes: BTreeMap::new(),
            networks: BTreeMap::new(),
        };
        if doc.value == Value::Null {
            self.problem(
                doc,
                "",
                "the Compose file is empty: it needs a `services:` section",
            );
            return parts;
        }
        let Some(top) = self.map(doc, "") else {
            return parts;
        };
        self.check_top_keys(top);

        if let Some(n) = doc.get("name") {
            parts.name = self.string(n, "name");
        }
        let project = parts.name.clone().unwrap_or_else(|| project.to_string());
        if let Some(n) = doc.get("volumes") {
            parts.volumes = self.volumes(n, &project);
        }
        parts.networks = self.networks(doc.get("networks"), &project);
        match doc.get("services") {
            None => self.problem(
                doc,
                "services",
                "the Compose file has no `services:` section",
            ),
            Some(services) => {
                parts.services = self.services(services, &parts.volumes, &parts.networks);
            }
        }
        self.check_dependencies(doc, &parts.services);
        parts
    }

    /// Each service under `services:`; one with problems is reported and left out.
    fn services(
        &mut self,
        node: &Node,
        volumes: &BTreeMap<String, VolumeDef>,
        networks: &BTreeMap<String, NetworkDef>,
    ) -> BTreeMap<String, Service> {
        let mut services = BTreeMap::new();
        let Some(entries) = self.map(node, "services") else {
            return services;
        };
        for (k, v) in entries {
            let name = k.key_text().to_string();
            if !valid_service_name(&name) {
                self.problem(
                    k,
                    &join("services", &name),
                    "a service name may hold only letters, digits, '.', '_' and '-'",
                );
                continue;
            }
            if let Some(service) = self.service(v, &name, volumes, networks) {
                services.insert(name, service);
            }
        }
        services
    }

    fn service(
        &mut self,
        node: &Node,
        name: &str,
        volumes: &BTreeMap<String, VolumeDef>,
        networks: &BTreeMap<String, NetworkDef>,
    ) -> Option<Service> {
        let path = join("services", name);
        let entries = self.map(node, &path)?;
        let before = self.problems_kept();
        self.sensitive_keys.clear();
        self.check_service_keys(entries, &path);

        let key = |k: &str| join(&path, k);
        let mut spec = ContainerSpec::default();
        match node.get("image") {
            Some(n) => {
                if let Some(image) = self.string(n, &key("image")) {
                    if image.is_empty() || image.contains(char::is_whitespace) {
                        self.problem(
                            n,
                            &key("image"),
                            format!("'{image}' is not an image reference"),
                        );
                    }
                    spec.image = image;
                }
            }
            None if node.get("build").is_none() => {
                self.problem(
                    node,
                    &key("image"),
                    "missing 'image': every service needs an image from a registry",
                );
            }
            None => {}
        }
        let mut pull_policy = PullPolicy::Missing;
        if let Some(n) = node.get("pull_policy") {
            match self.string(n, &key("pull_policy")).as_deref() {
                Some("missing") | Some("if_not_present") => pull_policy = PullPolicy::Missing,
                Some("always") => pull_policy = PullPolicy::Always,
                Some(other) => self.problem(
                    n,
                    &key("pull_policy"),
                    format!("'{other}' is not supported: use 'missing' or 'always'"),
                ),
                None => {}
            }
        }
        if let Some(n) = node.get("command") {
            spec.command = self.command(n, &key("command"));
        }
        if let Some(n) = node.get("entrypoint") {
            spec.entrypoint = self.command(n, &key("entrypoint"));
        }

        let mut secret_env = BTreeSet::new();
        if let Some(n) = node.get("env_file") {
            self.env_files(n, &key("env_file"), &mut spec.environment);
        }
        if let Some(n) = node.get("environment") {
            for (k, v, _) in self.key_values(n, &key("environment")) {
                // `KEY` without a value takes it from the stack's variables, as Compose takes it
                // from the shell; unset means the key is left out.
                let value = match v {
                    Some(t) => Some(t),
                    None => self.vars.values.get(&k).map(|value| Text {
                        value: value.clone(),
                        secret: self.vars.host_local.contains(&k),
                        sensitive: self.vars.host_local.contains(&k) || is_secret_key(&k),
                    }),
                };
                if let Some(t) = value {
                    // `DSN: postgres://app:${DB_PASSWORD}@db` holds the password too.
                    if t.secret || t.sensitive {
                        secret_env.insert(k.clone());
                    }
                    spec.environment.insert(k, t.value);
                }
            }
        }
        secret_env.extend(
            spec.environment
                .keys()
                .filter(|k| is_secret_key(k))
                .cloned(),
        );

        if let Some(n) = node.get("ports") {
            spec.ports = self.ports(n, &key("ports"));
        }
        let mut repo_binds = Vec::new();
        if let Some(n) = node.get("volumes") {
            spec.mounts = self.mounts(n, &key("volumes"), volumes, &mut repo_binds);
        }
        if !repo_binds.is_empty() {
            let mut digests = Vec::new();
            for rel in &repo_binds {
                match self.files.digest(rel) {
                    Ok(d) => digests.push(format!("{rel}={d}")),
                    Err(e) => self.problem(node, &key("volumes"), e),
                }
            }
            spec.mounted_content = Some(hex(&sha2::Sha256::digest(digests.join("\n"))));
        }
        spec.networks = match node.get("networks") {
            Some(n) => self.service_networks(n, &key("networks"), networks),
            None => BTreeMap::from([("default".to_string(), Vec::new())]),
        };
        if let Some(n) = node.get("healthcheck") {
            spec.healthcheck = self.healthcheck(n, &key("healthcheck"));
        }
        if let Some(n) = node.get("restart") {
            if let Some(r) = self.string(n, &key("restart")) {
                let valid = matches!(
                    r.as_str(),
                    "no" | "always" | "unless-stopped" | "on-failure"
                ) || r
                    .strip_prefix("on-failure:")
                    .is_some_and(|c| c.parse::<u32>().is_ok());
                if valid {
                    spec.restart = Some(r);
                } else {
                    self.problem(n, &key("restart"), format!("'{r}' is not a restart policy (no, always, unless-stopped, on-failure[:N])"));
                }
            }
        }
        if let Some(n) = node.get("labels") {
            spec.labels = self.string_map(n, &key("labels"));
            // `API_TOKEN: ...` as a label: its value is not shown or digested unkeyed either.
            if spec.labels.keys().any(|k| is_secret_key(k)) {
                self.sensitive_keys.push(key("labels"));
            }
            if let Some(bad) = spec.labels.keys().find(|l| {
                l.starts_with("com.docker.compose.") || l.starts_with(crate::labels::PREFIX)
            }) {
                self.problem(
                    n,
                    &key("labels"),
                    format!("label '{bad}' is reserved for the reconciler and Compose"),
                );
            }
        }
        for (field, slot) in [
            ("user", &mut spec.user),
            ("working_dir", &mut spec.working_dir),
            ("hostname", &mut spec.hostname),
            ("container_name", &mut spec.container_name),
            ("stop_signal", &mut spec.stop_signal),
            ("network_mode", &mut spec.network_mode),
            ("pid", &mut spec.pid),
            ("ipc", &mut spec.ipc),
        ] {
            if let Some(n) = node.get(field) {
                *slot = self.string(n, &key(field));
            }
        }
        if let Some(n) = node.get("stop_grace_period") {
            spec.stop_grace_period_ms = self.duration(n, &key("stop_grace_period")).map(ms);
        }
        if let Some(n) = node.get("extra_hosts") {
            spec.extra_hosts = self.extra_hosts(n, &key("extra_hosts"));
        }
        if let Some(n) = node.get("init") {
            spec.init = self.bool(n, &key("init"));
        }
        if let Some(n) = node.get("read_only") {
            spec.read_only = self.bool(n, &key("read_only")).unwrap_or(false);
        }
        if let Some(n) = node.get("privileged") {
            spec.privileged = self.bool(n, &key("privileged")).unwrap_or(false);
        }
        for (field, slot) in [
            ("cap_add", &mut spec.cap_add),
            ("cap_drop", &mut spec.cap_drop),
        ] {
            if let Some(n) = node.get(field) {
                let mut caps = self.string_or_list(n, &key(field)).unwrap_or_default();
                // Each entry's own line, for the host policy's message about it.
                if let Value::Seq(items) = &n.value {
                    for (item, cap) in items.iter().zip(&caps) {
                        self.mount_lines.insert(format!("{field}:{cap}"), item.line);
                    }
                }
                caps.sort();
                caps.dedup();
                *slot = caps;
            }
        }
        if let Some(n) = node.get("devices") {
            spec.devices = self.devices(n, &key("devices"));
        }
        if let Some(n) = node.get("mem_limit") {
            spec.mem_limit = self.bytes(n, &key("mem_limit"));
        }
        if let Some(n) = node.get("cpus") {
            spec.nano_cpus = self.cpus(n, &key("cpus"));
        }
        if let Some(n) = node.get("logging") {
            spec.logging = self.logging(n, &key("logging"));
        }

        let mut service = Service {
            name: name.to_string(),
            spec,
            pull_policy,
            depends_on: BTreeMap::new(),
            order: None,
            monitor: Duration::ZERO,
            health_timeout: Duration::from_secs(60),
            min_ready: Duration::from_secs(5),
            http_probe: None,
            secret_env,
            secret_fields: BTreeSet::new(),
            label_key: LabelKey::default(),
            repo_binds,
            lines: entries
                .iter()
                .map(|(k, _)| (k.key_text().to_string(), k.line))
                .collect(),
        };
        if let Some(n) = node.get("depends_on") {
            service.depends_on = self.depends_on(n, &key("depends_on"));
        }
        if let Some(n) = node.get("deploy") {
            self.deploy(n, &key("deploy"), &mut service);
        }
        if let Some(n) = node.get("x-reconciler") {
            self.x_reconciler(n, &key("x-reconciler"), &mut service);
        }
        service.lines.append(&mut self.mount_lines);
        let prefix = format!("{path}.");
        service.secret_fields = std::mem::take(&mut self.sensitive_keys)
            .iter()
            .filter_map(|k| k.strip_prefix(&prefix))
            .map(|k| k.split(['.', '[']).next().unwrap_or(k).to_string())
            .filter(|k| k != "environment")
            .collect();
        if service.spec.container_name.is_some() && service.order == Some(UpdateOrder::StartFirst) {
            // Two containers cannot hold one name; start-first would always fail at create.
            let n = node.get("container_name").unwrap_or(node);
            self.problem(n, &key("container_name"), "a service with a fixed container_name cannot use deploy.update_config.order: start-first");
        }
        (self.problems_kept() == before).then_some(service)
    }

    fn env_files(&mut self, node: &Node, key: &str, env: &mut BTreeMap<String, String>) {
        let items: Vec<(String, bool, &Node)> = match &node.value {
            Value::Seq(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    let k = format!("{key}[{i}]");
                    match &item.value {
                        Value::Map(_) => {
                            let path = item
                                .get("path")
                                .and_then(|p| self.string(p, &join(&k, "path")));
                            let required = item
                                .get("required")
                                .and_then(|r| self.bool(r, &join(&k, "required")))
                                .unwrap_or(true);
                            path.map(|p| (p, required, item))
                        }
                        _ => self.string(item, &k).map(|p| (p, true, item)),
                    }
                })
                .collect(),
            _ => self
                .string(node, key)
                .map(|p| vec![(p, true, node)])
                .unwrap_or_default(),
        };
        for (path, required, item) in items {
            let rel = match self.files.resolve(&path) {
                Ok(rel) => rel,
                // An optional file may be absent; one that leaves the folder is refused anyway.
                Err(_) if !required && !self.files.exists(&path) => continue,
                Err(e) => {
                    self.problem(item, key, e);
                    continue;
                }
            };
            let bytes = match self.files.read(&rel) {
                Ok(b) => b,
                Err(_) if !required => continue,
                Err(e) => {
                    self.problem(item, key, e);
                    continue;
                }
            };
            let text = String::from_utf8_lossy(&bytes);
            match dotenv::parse(&text) {
                Ok(entries) => {
                    for e in entries {
                        env.insert(e.key, e.value);
                    }
                }
                Err(e) => self.problem(item, key, format!("{path}: {e}")),
            }
        }
    }

    fn ports(&mut self, node: &Node, key: &str) -> Vec<PortSpec> {
        let mut out = Vec::new();
        let Value::Seq(items) = &node.value else {
            self.problem(
                node,
                key,
                format!("expected a list of ports, found {}", node.kind()),
            );
            return out;
        };
        for (i, item) in items.iter().enumerate() {
            let k = format!("{key}[{i}]");
            match &item.value {
                Value::Map(entries) => {
                    self.check_keys(
                        entries,
                        &k,
                        &[
                            "target",
                            "published",
                            "host_ip",
                            "protocol",
                            "mode",
                            "name",
                            "app_protocol",
                        ],
                    );
                    let Some(target) = item
                        .get("target")
                        .and_then(|t| self.integer::<u16>(t, &join(&k, "target")))
                    else {
                        if item.get("target").is_none() {
                            self.problem(item, &k, "a long-form port needs 'target'");
                        }
                        continue;
                    };
                    out.push(PortSpec {
                        host_ip: item
                            .get("host_ip")
                            .and_then(|n| self.string(n, &join(&k, "host_ip"))),
                        published: item
                            .get("published")
                            .and_then(|n| self.string(n, &join(&k, "published"))),
                        target,
                        protocol: item
                            .get("protocol")
                            .and_then(|n| self.string(n, &join(&k, "protocol")))
                            .unwrap_or_else(|| "tcp".into()),
                    });
                }
                _ => {
                    let Some(text) = self.string(item, &k) else {
                        continue;
                    };
                    match parse_port(&text) {
                        Ok(ports) => out.extend(ports),
                        Err(e) => self.problem(item, &k, format!("'{text}': {e}")),
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    fn mounts(
        &mut self,
        node: &Node,
        key: &str,
        volumes: &BTreeMap<String, VolumeDef>,
        repo_binds: &mut Vec<String>,
    ) -> Vec<MountSpec> {
        let mut out = Vec::new();
        let Value::Seq(items) = &node.value else {
            self.problem(
                node,
                key,
                format!("expected a list of volumes, found {}", node.kind()),
            );
            return out;
        };
        for (i, item) in items.iter().enumerate() {
            let k = format!("{key}[{i}]");
            let parsed = match &item.value {
                Value::Map(entries) => {
                    self.check_keys(
                        entries,
                        &k,
                        &[
                            "type",
                            "source",
                            "target",
                            "read_only",
                            "bind",
                            "volume",
                            "tmpfs",
                            "consistency",
                        ],
                    );
                    self.long_mount(item, &k)
                }
                _ => self
                    .string(item, &k)
                    .and_then(|text| match parse_short_mount(&text) {
                        Ok(m) => Some(m),
                        Err(e) => {
                            self.problem(item, &k, format!("'{text}': {e}"));
                            None
                        }
                    }),
            };
            let Some(mut mount) = parsed else { continue };
            if !mount.target.starts_with('/') {
                self.problem(
                    item,
                    &k,
                    format!(
                        "the mount target '{}' must be an absolute path",
                        mount.target
                    ),
                );
                continue;
            }
            match mount.kind {
                MountKind::Volume => {
                    if let Some(source) = &mount.source {
                        if !volumes.contains_key(source) {
                            self.problem(item, &k, format!("volume '{source}' is not declared under the top-level `volumes:`"));
                            continue;
                        }
                    }
                }
                MountKind::Bind => {
                    let source = mount.source.clone().unwrap_or_default();
                    // Short form binds start with `.`; a long-form `source: conf/x` is relative too.
                    if !source.starts_with('/') && !source.starts_with('~') {
                        match self.files.resolve(&source) {
                            Ok(rel) => {
                                repo_binds.push(rel.clone());
                                mount.source = Some(format!("./{rel}"));
                                mount.repo_relative = Some(rel);
                            }
                            Err(e) => {
                                self.problem(item, &k, e);
                                continue;
                            }
                        }
                    } else if source.starts_with('~') {
                        self.problem(item, &k, "bind sources starting with '~' are not supported: the reconciler runs as a service, write an absolute path");
                        continue;
                    }
                }
                MountKind::Tmpfs => {}
            }
            self.mount_lines
                .insert(format!("volumes:{}", mount.target), item.line);
            out.push(mount);
        }
        out.sort();
        out
    }

    fn long_mount(&mut self, node: &Node, key: &str) -> Option<MountSpec> {
        let kind = match node
            .get("type")
            .and_then(|t| self.string(t, &join(key, "type")))
            .as_deref()
        {
            Some("volume") => MountKind::Volume,
            Some("bind") => MountKind::Bind,
            Some("tmpfs") => MountKind::Tmpfs,
            Some(other) => {
                self.problem(
                    node,
                    &join(key, "type"),
                    format!("mount type '{other}' is not supported (volume, bind, tmpfs)"),
                );
                return None;
            }
            None => {
                self.problem(
                    node,
                    key,
                    "a long-form volume needs 'type' (volume, bind or tmpfs)",
                );
                return None;
            }
        };
        let Some(target) = node
            .get("target")
            .and_then(|t| self.string(t, &join(key, "target")))
        else {
            self.problem(node, key, "a long-form volume needs 'target'");
            return None;
        };
        let source = node
            .get("source")
            .and_then(|s| self.string(s, &join(key, "source")));
        if kind == MountKind::Bind && source.is_none() {
            self.problem(node, key, "a bind mount needs 'source'");
            return None;
        }
        let read_only = node
            .get("read_only")
            .and_then(|r| self.bool(r, &join(key, "read_only")))
            .unwrap_or(false);
        let no_copy = node
            .get("volume")
            .and_then(|v| v.get("nocopy"))
            .and_then(|n| self.bool(n, &join(key, "volume.nocopy")))
            .unwrap_or(false);
        let tmpfs_size = node
            .get("tmpfs")
            .and_then(|t| t.get("size"))
            .and_then(|n| self.bytes(n, &join(key, "tmpfs.size")));
        Some(MountSpec {
            target,
            kind,
            source,
            read_only,
            repo_relative: None,
            tmpfs_size,
            no_copy,
        })
    }

    fn service_networks(
        &mut self,
        node: &Node,
        key: &str,
        declared: &BTreeMap<String, NetworkDef>,
    ) -> BTreeMap<String, Vec<String>> {
        let mut out = BTreeMap::new();
        let check = |cx: &mut Self, n: &Node, name: &str| {
            if declared.contains_key(name) {
                true
            } else {
                cx.problem(
                    n,
                    &join(key, name),
                    format!("network '{name}' is not declared under the top-level `networks:`"),
                );
                false
            }
        };
        match &node.value {
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(name) = self.string(item, &format!("{key}[{i}]")) {
                        if check(self, item, &name) {
                            out.insert(name, Vec::new());
                        }
                    }
                }
            }
            Value::Map(entries) => {
                for (k, v) in entries {
                    let name = k.key_text().to_string();
                    if !check(self, k, &name) {
                        continue;
                    }
                    let mut aliases = Vec::new();
                    if let Some(fields) = v.as_map() {
                        let path = join(key, &name);
                        self.check_keys(
                            fields,
                            &path,
                            &["aliases", "ipv4_address", "ipv6_address", "priority"],
                        );
                        if let Some(a) = v.get("aliases") {
                            aliases = self
                                .string_or_list(a, &join(&path, "aliases"))
                                .unwrap_or_default();
                        }
                    }
                    aliases.sort();
                    aliases.dedup();
                    out.insert(name, aliases);
                }
            }
            _ => self.problem(
                node,
                key,
                format!(
                    "expected a list or mapping of networks, found {}",
                    node.kind()
                ),
            ),
        }
        out
    }

    fn healthcheck(&mut self, node: &Node, key: &str) -> Option<HealthSpec> {
        let entries = self.map(node, key)?;
        self.check_keys(
            entries,
            key,
            &[
                "test",
                "interval",
                "timeout",
                "start_period",
                "start_interval",
                "retries",
                "disable",
            ],
        );
        if let Some(d) = node.get("disable") {
            if self.bool(d, &join(key, "disable")) == Some(true) {
                return Some(HealthSpec {
                    test: vec!["NONE".into()],
                    interval_ms: None,
                    timeout_ms: None,
                    start_period_ms: None,
                    retries: None,
                });
            }
        }
        let test = match node.get("test") {
            Some(
                t @ Node {
                    value: Value::Seq(_),
                    ..
                },
            ) => {
                let words = self.string_or_list(t, &join(key, "test"))?;
                if !matches!(
                    words.first().map(String::as_str),
                    Some("CMD" | "CMD-SHELL" | "NONE")
                ) {
                    self.problem(
                        t,
                        &join(key, "test"),
                        "a healthcheck test list must start with CMD, CMD-SHELL or NONE",
                    );
                    return None;
                }
                words
            }
            Some(t) => vec!["CMD-SHELL".to_string(), self.string(t, &join(key, "test"))?],
            None => {
                self.problem(node, key, "a healthcheck needs 'test' (or 'disable: true')");
                return None;
            }
        };
        let mut d = |name: &str| {
            node.get(name)
                .and_then(|n| self.duration(n, &join(key, name)))
                .map(ms)
        };
        let (interval_ms, timeout_ms, start_period_ms) =
            (d("interval"), d("timeout"), d("start_period"));
        let retries = node
            .get("retries")
            .and_then(|n| self.integer(n, &join(key, "retries")));
        Some(HealthSpec {
            test,
            interval_ms,
            timeout_ms,
            start_period_ms,
            retries,
        })
    }

    fn extra_hosts(&mut self, node: &Node, key: &str) -> Vec<String> {
        let mut out: Vec<String> = match &node.value {
            Value::Map(_) => self
                .string_map(node, key)
                .into_iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect(),
            _ => self
                .string_or_list(node, key)
                .unwrap_or_default()
                .into_iter()
                .map(|h| h.replacen('=', ":", 1))
                .collect(),
        };
        out.sort();
        out.dedup();
        out
    }

    /// `devices:` in Compose's forms: `HOST[:CONTAINER][:PERMISSIONS]` or `{source, target,
    /// permissions}`. Whether the host gives them is the policy's call.
    fn devices(&mut self, node: &Node, key: &str) -> Vec<DeviceSpec> {
        let mut out = Vec::new();
        let Value::Seq(items) = &node.value else {
            self.problem(
                node,
                key,
                format!("expected a list of devices, found {}", node.kind()),
            );
            return out;
        };
        for (i, item) in items.iter().enumerate() {
            let k = format!("{key}[{i}]");
            let parsed = match &item.value {
                Value::Map(entries) => {
                    self.check_keys(entries, &k, &["source", "target", "permissions"]);
                    let field = |cx: &mut Self, name: &str| {
                        item.get(name).and_then(|n| cx.string(n, &join(&k, name)))
                    };
                    match field(self, "source") {
                        Some(source) => {
                            let target = field(self, "target").unwrap_or_else(|| source.clone());
                            let permissions =
                                field(self, "permissions").unwrap_or_else(|| "rwm".into());
                            check_device(source, target, permissions)
                        }
                        None => {
                            if item.get("source").is_none() {
                                self.problem(item, &k, "a long-form device needs 'source'");
                            }
                            continue;
                        }
                    }
                }
                _ => match self.string(item, &k) {
                    Some(text) => parse_device(&text),
                    None => continue,
                },
            };
            match parsed {
                Ok(device) => {
                    self.mount_lines
                        .insert(format!("devices:{}", device.host_path), item.line);
                    out.push(device);
                }
                Err(e) => self.problem(item, &k, e),
            }
        }
        out.sort();
        out.dedup();
        out
    }

    fn cpus(&mut self, node: &Node, key: &str) -> Option<i64> {
        let s = self.string(node, key)?;
        match s.parse::<f64>() {
            Ok(c) if c > 0.0 => Some((c * 1e9).round() as i64),
            _ => {
                self.problem(
                    node,
                    key,
                    format!("'{s}' is not a CPU count (write e.g. 0.5 or 2)"),
                );
                None
            }
        }
    }

    fn logging(&mut self, node: &Node, key: &str) -> Option<LoggingSpec> {
        let entries = self.map(node, key)?;
        self.check_keys(entries, key, &["driver", "options"]);
        Some(LoggingSpec {
            driver: node
                .get("driver")
                .and_then(|d| self.string(d, &join(key, "driver"))),
            options: node
                .get("options")
                .map(|o| self.string_map(o, &join(key, "options")))
                .unwrap_or_default(),
        })
    }

    fn deploy(&mut self, node: &Node, key: &str, service: &mut Service) {
        let Some(entries) = self.map(node, key) else {
            return;
        };
        self.check_keys(entries, key, &["resources", "update_config"]);
        if let Some(res) = node.get("resources") {
            let rkey = join(key, "resources");
            if let Some(fields) = self.map(res, &rkey) {
                self.check_keys(fields, &rkey, &["limits"]);
            }
            if let Some(limits) = res.get("limits") {
                let lkey = join(&rkey, "limits");
                if let Some(fields) = self.map(limits, &lkey) {
                    self.check_keys(fields, &lkey, &["cpus", "memory"]);
                }
                if let Some(m) = limits.get("memory") {
                    let bytes = self.bytes(m, &join(&lkey, "memory"));
                    service.spec.mem_limit = service.spec.mem_limit.or(bytes);
                }
                if let Some(c) = limits.get("cpus") {
                    let cpus = self.cpus(c, &join(&lkey, "cpus"));
                    service.spec.nano_cpus = service.spec.nano_cpus.or(cpus);
                }
            }
        }
        if let Some(update) = node.get("update_config") {
            let ukey = join(key, "update_config");
            let Some(fields) = self.map(update, &ukey) else {
                return;
            };
            self.check_keys(fields, &ukey, &["order", "failure_action", "monitor"]);
            if let Some(o) = update.get("order") {
                service.order = match self.string(o, &join(&ukey, "order")).as_deref() {
                    Some("stop-first") => Some(UpdateOrder::StopFirst),
                    Some("start-first") => Some(UpdateOrder::StartFirst),
                    Some(other) => {
                        self.problem(
                            o,
                            &join(&ukey, "order"),
                            format!("'{other}' is not an order (stop-first, start-first)"),
                        );
                        None
                    }
                    None => None,
                };
            }
            if let Some(f) = update.get("failure_action") {
                match self.string(f, &join(&ukey, "failure_action")).as_deref() {
                    Some("rollback") | Some("pause") | None => {}
                    Some(other) => self.problem(f, &join(&ukey, "failure_action"), format!("'{other}' is not supported: a failed update always restores the last good version (rollback)")),
                }
            }
            if let Some(m) = update.get("monitor") {
                service.monitor = self
                    .duration(m, &join(&ukey, "monitor"))
                    .unwrap_or_default();
            }
        }
    }

    fn x_reconciler(&mut self, node: &Node, key: &str, service: &mut Service) {
        let Some(entries) = self.map(node, key) else {
            return;
        };
        self.check_keys(entries, key, &["health_timeout", "min_ready", "http_probe"]);
        if let Some(n) = node.get("health_timeout") {
            if let Some(d) = self.duration(n, &join(key, "health_timeout")) {
                service.health_timeout = d;
            }
        }
        if let Some(n) = node.get("min_ready") {
            if let Some(d) = self.duration(n, &join(key, "min_ready")) {
                service.min_ready = d;
            }
        }
        if let Some(n) = node.get("http_probe") {
            if let Some(url) = self.string(n, &join(key, "http_probe")) {
                match probe_refusal(&url, &service.spec.ports) {
                    None => service.http_probe = Some(url),
                    Some(why) => self.problem(n, &join(key, "http_probe"), why),
                }
            }
        }
    }
}

use sha2::Digest as _;

/// The probe is sent from the host, as root, on the host's network: it may reach the service's
/// own published port on loopback and nothing else, and its path is sent as it is, so it must be
/// plain visible ASCII (a CR/LF would let the file write its own HTTP requests).
fn probe_refusal(url: &str, ports: &[PortSpec]) -> Option<String> {
    let usage = "http_probe must be http://127.0.0.1:PORT/PATH (or localhost, [::1]) with a port this service publishes";
    let Some(rest) = url.strip_prefix("http://") else {
        return Some(usage.to_string());
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Some(format!(
            "{usage}: the path may hold visible ASCII only, no space or control character"
        ));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse::<u16>().ok()),
        None => (authority, Some(80)),
    };
    if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
        return Some(format!("{usage}: '{host}' is not a loopback host"));
    }
    let Some(port) = port else {
        return Some(format!("{usage}: the port is not a number"));
    };
    // Only a single TCP port the engine publishes on loopback (or on every address): a range or
    // a UDP port would let the probe reach whatever else listens there on the host.
    let published = ports.iter().any(|p| {
        p.protocol == "tcp"
            && p.host_ip
                .as_deref()
                .is_none_or(|ip| matches!(ip, "" | "0.0.0.0" | "::" | "127.0.0.1" | "::1"))
            && p.published.as_deref().and_then(|p| p.parse::<u16>().ok()) == Some(port)
    });
    (!published)
        .then(|| format!("{usage}: this service publishes no single TCP port {port} on loopback"))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

fn valid_service_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
