//! One service of the stack: its keys are read in a fixed order (problems keep that order within
//! a line), each group by its own file; the keys that take a few lines each are read here.

mod addressing;
mod confinement;
mod deploy;
mod devices;
mod environment;
mod files;
mod healthcheck;
mod mounts;
mod networks;
mod ports;
mod replicas;
mod resources;
mod runtime_keys;
mod storage;
mod x_reconciler;

use super::{join, ms, Cx};
use crate::desired::model::*;
use crate::desired::yaml::{Node, Value};
use crate::mask::is_secret_key;
use std::collections::{BTreeMap, BTreeSet};

/// What the container keys give, before the keys about ordering and rollout are read.
struct Container {
    spec: ContainerSpec,
    pull_policy: PullPolicy,
    secret_env: BTreeSet<String>,
    repo_binds: Vec<String>,
}

impl Cx<'_> {
    /// The service, or `None` when any of its keys had a problem (all of them are reported).
    pub(super) fn service(
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
        let container = self.container(node, &path, volumes, networks);
        let mut service = Service {
            pull_policy: container.pull_policy,
            secret_env: container.secret_env,
            repo_binds: container.repo_binds,
            lines: entries
                .iter()
                .map(|(k, _)| (k.key_text().to_string(), k.line))
                .collect(),
            ..Service::new(name, container.spec)
        };
        self.ordering_and_rollout(node, &path, &mut service, volumes);
        self.finish_service(node, &path, &mut service);
        self.check_resource_conflicts(node, &path, &service.spec);
        (self.problems_kept() == before).then_some(service)
    }

    /// The keys that make up the container itself.
    fn container(
        &mut self,
        node: &Node,
        path: &str,
        volumes: &BTreeMap<String, VolumeDef>,
        networks: &BTreeMap<String, NetworkDef>,
    ) -> Container {
        let key = |k: &str| join(path, k);
        let mut spec = ContainerSpec::default();
        if let Some(image) = self.image(node, path) {
            spec.image = image;
        }
        let pull_policy = self.pull_policy(node, path);
        if let Some(n) = node.get("command") {
            spec.command = self.command(n, &key("command"));
        }
        if let Some(n) = node.get("entrypoint") {
            spec.entrypoint = self.command(n, &key("entrypoint"));
        }
        let secret_env = self.environment(node, path, &mut spec.environment);
        if let Some(n) = node.get("ports") {
            spec.ports = self.ports(n, &key("ports"));
        }
        let mut repo_binds = self.service_volumes(node, path, volumes, &mut spec);
        self.service_files(node, path, &mut spec, &mut repo_binds);
        match node.get("networks") {
            Some(n) => {
                let joined = self.service_networks(n, &key("networks"), networks);
                spec.networks = joined.aliases;
                spec.network_endpoints = joined.endpoints;
            }
            None => spec.networks = BTreeMap::from([("default".to_string(), Vec::new())]),
        }
        if let Some(n) = node.get("healthcheck") {
            spec.healthcheck = self.healthcheck(n, &key("healthcheck"));
        }
        if let Some(n) = node.get("restart") {
            if let Some(r) = self.restart(n, &key("restart")) {
                spec.restart = Some(r);
            }
        }
        if let Some(n) = node.get("labels") {
            spec.labels = self.labels(n, &key("labels"));
        }
        self.process_options(node, path, &mut spec);
        self.host_access(node, path, &mut spec);
        self.runtime_keys(node, path, &mut spec);
        Container {
            spec,
            pull_policy,
            secret_env,
            repo_binds,
        }
    }

    /// `image`, required unless `build` is there (which is refused on its own).
    fn image(&mut self, node: &Node, path: &str) -> Option<String> {
        let key = join(path, "image");
        match node.get("image") {
            Some(n) => {
                if let Some(what) = not_a_string(n) {
                    // Compose's words; a plain `1.5` or `true` is a number or a boolean in YAML.
                    let hint = if what.starts_with("a number") || what.starts_with("a boolean") {
                        " (quote it if it is meant as an image name)"
                    } else {
                        ""
                    };
                    self.problem(n, &key, format!("must be a string, found {what}{hint}"));
                    return None;
                }
                let image = self.string(n, &key)?;
                if image.is_empty() || image.contains(char::is_whitespace) {
                    self.problem(n, &key, format!("'{image}' is not an image reference"));
                } else if image.ends_with(':') || image.contains(":@") {
                    // Usually a variable that is not set: `web:${TAG}`.
                    self.problem(
                        n,
                        &key,
                        format!("'{image}' is not an image reference: the tag after ':' is empty"),
                    );
                }
                Some(image)
            }
            None if node.get("build").is_none() => {
                self.problem(
                    node,
                    &key,
                    "missing 'image': every service needs an image from a registry",
                );
                None
            }
            None => None,
        }
    }

    fn pull_policy(&mut self, node: &Node, path: &str) -> PullPolicy {
        let mut pull_policy = PullPolicy::Missing;
        if let Some(n) = node.get("pull_policy") {
            let key = join(path, "pull_policy");
            match self.string(n, &key).as_deref() {
                Some("missing") | Some("if_not_present") => pull_policy = PullPolicy::Missing,
                Some("always") => pull_policy = PullPolicy::Always,
                Some(other) => self.problem(
                    n,
                    &key,
                    format!("'{other}' is not supported: use 'missing' or 'always'"),
                ),
                None => {}
            }
        }
        pull_policy
    }

    fn restart(&mut self, node: &Node, key: &str) -> Option<String> {
        let r = self.string(node, key)?;
        let valid = matches!(
            r.as_str(),
            "no" | "always" | "unless-stopped" | "on-failure"
        ) || r
            .strip_prefix("on-failure:")
            .is_some_and(|c| c.parse::<u32>().is_ok());
        if valid {
            Some(r)
        } else {
            self.problem(
                node,
                key,
                format!(
                    "'{r}' is not a restart policy (no, always, unless-stopped, on-failure[:N])"
                ),
            );
            None
        }
    }

    fn labels(&mut self, node: &Node, key: &str) -> BTreeMap<String, String> {
        let labels = self.string_map(node, key);
        // `API_TOKEN: ...` as a label: its value is not shown or digested unkeyed either.
        if labels.keys().any(|k| is_secret_key(k)) {
            self.sensitive_keys.push(key.to_string());
        }
        self.refuse_reserved_labels(node, key, &labels);
        labels
    }

    /// How the process runs: user, names, namespaces, stop, hosts, init, read-only, privileged.
    fn process_options(&mut self, node: &Node, path: &str, spec: &mut ContainerSpec) {
        let key = |k: &str| join(path, k);
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
    }

    /// What the container may take from the host: capabilities, devices, memory, CPUs, logging.
    fn host_access(&mut self, node: &Node, path: &str, spec: &mut ContainerSpec) {
        let key = |k: &str| join(path, k);
        for (field, slot) in [
            ("cap_add", &mut spec.cap_add),
            ("cap_drop", &mut spec.cap_drop),
        ] {
            if let Some(n) = node.get(field) {
                *slot = self.capabilities(n, field, &key(field));
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
    }

    /// `cap_add` or `cap_drop` (`field`), sorted and without repeats.
    fn capabilities(&mut self, node: &Node, field: &str, key: &str) -> Vec<String> {
        let mut caps = self.string_or_list(node, key).unwrap_or_default();
        // Each entry's own line, for the host policy's message about it.
        if let Value::Seq(items) = &node.value {
            for (item, cap) in items.iter().zip(&caps) {
                self.mount_lines.insert(format!("{field}:{cap}"), item.line);
            }
        }
        caps.sort();
        caps.dedup();
        caps
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

    /// `depends_on`, `deploy` and `x-reconciler`: when and how the service is started and replaced.
    fn ordering_and_rollout(
        &mut self,
        node: &Node,
        path: &str,
        service: &mut Service,
        volumes: &BTreeMap<String, VolumeDef>,
    ) {
        let key = |k: &str| join(path, k);
        if let Some(n) = node.get("depends_on") {
            service.depends_on = self.depends_on(n, &key("depends_on"));
        }
        if let Some(n) = node.get("deploy") {
            self.deploy(n, &key("deploy"), service);
        }
        if let Some(n) = node.get("x-reconciler") {
            self.x_reconciler(n, &key("x-reconciler"), service, volumes);
        }
        self.replicas(node, path, service);
    }

    /// Lines of entries and secret-holding keys gathered while reading, and the one check that
    /// needs keys from two groups.
    fn finish_service(&mut self, node: &Node, path: &str, service: &mut Service) {
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
            self.problem(n, &join(path, "container_name"), "a service with a fixed container_name cannot use deploy.update_config.order: start-first");
        }
        if service.spec.has_fixed_address() && service.order == Some(UpdateOrder::StartFirst) {
            // Two containers cannot hold one address; start-first would always fail at create.
            let n = node.get("networks").unwrap_or(node);
            self.problem(n, &join(path, "networks"), "a service with a fixed ipv4_address or ipv6_address cannot use deploy.update_config.order: start-first");
        }
    }
}

/// What a node is when YAML would not read it as a string: a number or boolean written plain
/// (YAML 1.2 core schema, plus the underscores, hex, octal and binary Compose's parser takes),
/// null, a list or a mapping.
fn not_a_string(node: &Node) -> Option<&'static str> {
    let text = match &node.value {
        Value::Scalar { text, plain: true } => text.as_str(),
        Value::Scalar { .. } => return None,
        Value::Null => return Some("null"),
        Value::Seq(_) => return Some("a list"),
        Value::Map(_) => return Some("a mapping"),
    };
    if matches!(text, "true" | "True" | "TRUE" | "false" | "False" | "FALSE") {
        return Some("a boolean");
    }
    let unsigned = text.trim_start_matches(['+', '-']).replace('_', "");
    let radix = |prefix: &str, radix: u32| {
        unsigned
            .strip_prefix(prefix)
            .is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_digit(radix)))
    };
    let special = matches!(
        unsigned.as_str(),
        ".inf" | ".Inf" | ".INF" | ".nan" | ".NaN" | ".NAN"
    );
    let number = !unsigned.is_empty()
        && (radix("0x", 16)
            || radix("0o", 8)
            || radix("0b", 2)
            || special
            || is_decimal(&unsigned));
    number.then_some("a number")
}

/// `1`, `1.5`, `.5`, `1.`, `1e3`, `1.5E-3`.
fn is_decimal(text: &str) -> bool {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    let mantissa_ok =
        digits(whole) && digits(fraction) && !(whole.is_empty() && fraction.is_empty());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.trim_start_matches(['+', '-']);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}
