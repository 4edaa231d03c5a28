//! How a service's container is confined: `security_opt` (a seccomp profile of the repository
//! read confined, its content sent), `sysctls` (namespaced ones only), the user, UTS and cgroup
//! namespaces, `cgroup_parent`, `runtime`, `group_add`, `device_cgroup_rules` and `gpus`.
//! Whether the host allows what loosens isolation is the policy's call.

use crate::desired::compose::{join, Cx};
use crate::desired::model::{hex, ConfinementSpec, ContainerSpec, GpuRequest, SeccompProfile};
use crate::desired::yaml::{Node, Value};
use sha2::Digest as _;
use std::collections::BTreeMap;

/// A seccomp profile is a few dozen KiB; anything near this is not one.
const MAX_SECCOMP_PROFILE_BYTES: usize = 1 << 20;

/// The security options the engine knows.
const SECURITY_OPTIONS: &[&str] = &[
    "no-new-privileges",
    "seccomp",
    "apparmor",
    "label",
    "systempaths",
];

/// Kernel parameters that belong to the container's IPC namespace.
const IPC_SYSCTLS: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

impl Cx<'_> {
    /// Read after the namespaces (`network_mode`, `ipc`), which decide which sysctls may be set.
    pub(super) fn confinement(
        &mut self,
        node: &Node,
        path: &str,
        spec: &ContainerSpec,
    ) -> ConfinementSpec {
        let key = |k: &str| join(path, k);
        let mut c = ConfinementSpec::default();
        if let Some(n) = node.get("security_opt") {
            (c.security_opt, c.seccomp_profile) = self.security_opt(n, &key("security_opt"));
        }
        if let Some(n) = node.get("sysctls") {
            c.sysctls = self.sysctls(n, &key("sysctls"), spec);
        }
        for (field, slot, allowed) in [
            ("userns_mode", &mut c.userns_mode, &["host"][..]),
            ("uts", &mut c.uts, &["host"][..]),
            ("cgroup", &mut c.cgroup, &["host", "private"][..]),
        ] {
            if let Some(n) = node.get(field) {
                *slot = self.one_of(n, &key(field), allowed);
            }
        }
        if c.uts.is_some() && (spec.hostname.is_some() || node.get("domainname").is_some()) {
            let n = node.get("uts").unwrap_or(node);
            self.problem(n, &key("uts"), "uts: host shares the host's name: it cannot be set together with hostname or domainname");
        }
        if let Some(n) = node.get("cgroup_parent") {
            c.cgroup_parent = self.name_like(n, &key("cgroup_parent"), "a cgroup path", |c| {
                c.is_ascii_alphanumeric() || "/_.:-@".contains(c)
            });
        }
        if let Some(n) = node.get("runtime") {
            c.runtime = self.name_like(n, &key("runtime"), "a runtime name", |c| {
                c.is_ascii_alphanumeric() || "_.-".contains(c)
            });
        }
        if let Some(n) = node.get("group_add") {
            c.group_add = self.sorted_strings(n, &key("group_add"));
        }
        if let Some(n) = node.get("device_cgroup_rules") {
            c.device_cgroup_rules = self.device_cgroup_rules(n, &key("device_cgroup_rules"));
        }
        if let Some(n) = node.get("gpus") {
            c.gpus = self.gpus(n, &key("gpus"));
        }
        c
    }

    /// A value from a short list (`host`), or nothing when the file leaves it empty.
    fn one_of(&mut self, node: &Node, key: &str, allowed: &[&str]) -> Option<String> {
        let value = self.string(node, key)?;
        if value.is_empty() {
            return None;
        }
        if allowed.contains(&value.as_str()) {
            return Some(value);
        }
        let field = key.rsplit('.').next().unwrap_or(key);
        self.problem(
            node,
            key,
            format!(
                "'{value}' is not a {field} mode (use {})",
                allowed.join(" or ")
            ),
        );
        None
    }

    /// A non-empty word of the characters `valid` allows.
    fn name_like(
        &mut self,
        node: &Node,
        key: &str,
        what: &str,
        valid: impl Fn(char) -> bool,
    ) -> Option<String> {
        let value = self.string(node, key)?;
        if !value.is_empty() && value.len() <= 255 && value.chars().all(valid) {
            return Some(value);
        }
        self.problem(node, key, format!("'{value}' is not {what}"));
        None
    }

    /// A string or a list, sorted and without repeats (order carries no meaning).
    pub(super) fn sorted_strings(&mut self, node: &Node, key: &str) -> Vec<String> {
        let mut out = self.string_or_list(node, key).unwrap_or_default();
        out.sort();
        out.dedup();
        out
    }

    /// `security_opt`, each entry with its line for the policy; `seccomp=<file>` read from the
    /// stack folder.
    fn security_opt(&mut self, node: &Node, key: &str) -> (Vec<String>, Option<SeccompProfile>) {
        let mut options = Vec::new();
        let mut profile = None;
        for (item, k, written) in self.located_strings(node, key, "a list of options") {
            let option = match normalize_security_opt(&written) {
                Ok(option) => option,
                Err(e) => {
                    self.problem(item, &k, e);
                    continue;
                }
            };
            if let Some(file) = option
                .strip_prefix("seccomp=")
                .filter(|v| is_profile_path(v))
            {
                if profile.is_some() {
                    self.problem(item, &k, "only one seccomp profile may be given");
                    continue;
                }
                profile = self.seccomp_profile(item, &k, file);
                if profile.is_none() {
                    continue;
                }
            }
            self.mount_lines
                .insert(format!("security_opt:{option}"), item.line);
            options.push(option);
        }
        options.sort();
        options.dedup();
        (options, profile)
    }

    /// A seccomp profile file of the stack folder, read as every other file the loader reads
    /// (confined, bounded), checked to be JSON and compacted as Compose sends it.
    fn seccomp_profile(&mut self, node: &Node, key: &str, file: &str) -> Option<SeccompProfile> {
        let read = self
            .files
            .resolve(file)
            .and_then(|rel| self.files.read(&rel));
        let bytes = match read {
            Ok(bytes) => bytes,
            Err(e) => {
                self.problem(
                    node,
                    key,
                    format!("seccomp profile: {e} (a profile must be a file of the stack folder)"),
                );
                return None;
            }
        };
        if bytes.len() > MAX_SECCOMP_PROFILE_BYTES {
            self.problem(
                node,
                key,
                format!(
                    "seccomp profile '{file}' is larger than {MAX_SECCOMP_PROFILE_BYTES} bytes"
                ),
            );
            return None;
        }
        match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(value) if value.is_object() => {
                let json = value.to_string();
                Some(SeccompProfile {
                    path: file.to_string(),
                    digest: hex(&sha2::Sha256::digest(json.as_bytes())),
                    json,
                })
            }
            _ => {
                self.problem(
                    node,
                    key,
                    format!("seccomp profile '{file}' is not a JSON object"),
                );
                None
            }
        }
    }

    /// `sysctls` as a map or `KEY=VALUE` list: only parameters of the container's own
    /// namespaces, and none of a namespace it shares with the host.
    fn sysctls(
        &mut self,
        node: &Node,
        key: &str,
        spec: &ContainerSpec,
    ) -> BTreeMap<String, String> {
        let sysctls = self.string_map(node, key);
        let host_network = spec.network_mode.as_deref() == Some("host");
        let other_network = spec
            .network_mode
            .as_deref()
            .is_some_and(|m| m.to_ascii_lowercase().starts_with("container:"));
        let host_ipc = spec.ipc.as_deref() == Some("host");
        for name in sysctls.keys() {
            let ipc = IPC_SYSCTLS.contains(&name.as_str()) || name.starts_with("fs.mqueue.");
            let net = name.starts_with("net.");
            let refusal = if !ipc && !net {
                Some(format!("sysctl '{name}' is not namespaced: it would change the host's kernel, which Docker refuses (namespaced: net.*, fs.mqueue.*, kernel.msg*, kernel.sem, kernel.shm*)"))
            } else if net && host_network {
                Some(format!("sysctl '{name}' cannot be set with network_mode: host: it would change the host's network settings"))
            } else if net && other_network {
                Some(format!("sysctl '{name}' cannot be set with network_mode: container:...: it would change the network settings of another container"))
            } else if ipc && host_ipc {
                Some(format!("sysctl '{name}' cannot be set with ipc: host: it would change the host's IPC settings"))
            } else {
                None
            };
            if let Some(message) = refusal {
                let at = entry_node(node, name).unwrap_or(node);
                self.problem(at, &join(key, name), message);
            }
        }
        sysctls
    }

    /// `c 1:3 mr`, `a 7:* rmw`: type, major:minor, access, as the devices cgroup reads them.
    fn device_cgroup_rules(&mut self, node: &Node, key: &str) -> Vec<String> {
        let rules = self.sorted_strings(node, key);
        for rule in &rules {
            if !valid_device_cgroup_rule(rule) {
                self.problem(
                    node,
                    key,
                    format!("'{rule}' is not a device cgroup rule (write e.g. 'c 1:3 mr' or 'a 7:* rwm')"),
                );
            }
        }
        rules
    }

    /// `gpus: all`, or a list of device requests.
    fn gpus(&mut self, node: &Node, key: &str) -> Vec<GpuRequest> {
        let all = || GpuRequest {
            driver: None,
            count: Some(-1),
            device_ids: Vec::new(),
            capabilities: vec!["gpu".into()],
            options: BTreeMap::new(),
        };
        let items = match &node.value {
            Value::Seq(items) => items,
            _ => {
                match self.string(node, key).as_deref() {
                    Some("all") => return vec![all()],
                    Some(other) => self.problem(
                        node,
                        key,
                        format!("'{other}' is not a GPU request: write 'all' or a list of {{driver, count, device_ids, capabilities, options}}"),
                    ),
                    None => {}
                }
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let k = format!("{key}[{i}]");
            let Some(fields) = self.map(item, &k) else {
                continue;
            };
            self.check_keys(
                fields,
                &k,
                &["driver", "count", "device_ids", "capabilities", "options"],
            );
            let count = item.get("count").and_then(|n| {
                let ck = join(&k, "count");
                match self.string(n, &ck)?.as_str() {
                    "all" => Some(-1),
                    _ => self.ranged(n, &ck, -1, i64::from(u16::MAX)),
                }
            });
            let mut request = GpuRequest {
                driver: item
                    .get("driver")
                    .and_then(|n| self.string(n, &join(&k, "driver"))),
                count,
                device_ids: item
                    .get("device_ids")
                    .map(|n| self.sorted_strings(n, &join(&k, "device_ids")))
                    .unwrap_or_default(),
                capabilities: item
                    .get("capabilities")
                    .map(|n| self.sorted_strings(n, &join(&k, "capabilities")))
                    .unwrap_or_default(),
                options: item
                    .get("options")
                    .map(|n| self.string_map(n, &join(&k, "options")))
                    .unwrap_or_default(),
            };
            if request.count.is_some() && !request.device_ids.is_empty() {
                self.problem(item, &k, "'count' and 'device_ids' cannot both be set");
                continue;
            }
            if request.count.is_none() && request.device_ids.is_empty() {
                // Compose's default: every GPU the driver has.
                request.count = Some(-1);
            }
            if !request.capabilities.iter().any(|c| c == "gpu") {
                request.capabilities.push("gpu".into());
                request.capabilities.sort();
            }
            out.push(request);
        }
        out.sort();
        out.dedup();
        out
    }
}

/// Check one `security_opt` entry and spell it as the engine reads it: `name=value`
/// (`label:user:U` is `label=user:U`), `no-new-privileges` alone or with true/false.
fn normalize_security_opt(written: &str) -> Result<String, String> {
    let written = written.trim();
    let (name, value) = match (written.split_once('='), written.split_once(':')) {
        (Some((n, v)), Some((n2, _))) if n.len() < n2.len() => (n, Some(v)),
        (_, Some((n, v))) => (n, Some(v)),
        (Some((n, v)), None) => (n, Some(v)),
        (None, None) => (written, None),
    };
    if !SECURITY_OPTIONS.contains(&name) {
        return Err(format!(
            "'{written}' is not a security option ({})",
            SECURITY_OPTIONS.join(", ")
        ));
    }
    match (name, value) {
        ("no-new-privileges", None) => Ok(name.to_string()),
        ("no-new-privileges", Some(v)) if matches!(v, "true" | "false") => {
            Ok(format!("{name}={v}"))
        }
        ("systempaths", Some("unconfined")) => Ok("systempaths=unconfined".into()),
        ("systempaths", _) => Err(format!(
            "'{written}': the only systempaths option is systempaths=unconfined"
        )),
        (_, Some(v)) if !v.is_empty() && name != "no-new-privileges" => Ok(format!("{name}={v}")),
        _ => Err(format!("'{written}' needs a value (write e.g. {name}=...)")),
    }
}

/// `seccomp=` names a file unless it is one of the engine's own words.
fn is_profile_path(value: &str) -> bool {
    !matches!(value, "unconfined" | "builtin")
}

fn valid_device_cgroup_rule(rule: &str) -> bool {
    let parts: Vec<&str> = rule.split_whitespace().collect();
    let [kind, numbers, access] = parts.as_slice() else {
        return false;
    };
    let number = |n: &str| {
        n == "*" || (!n.is_empty() && n.len() <= 10 && n.bytes().all(|b| b.is_ascii_digit()))
    };
    matches!(*kind, "a" | "b" | "c")
        && numbers
            .split_once(':')
            .is_some_and(|(major, minor)| number(major) && number(minor))
        && !access.is_empty()
        && access.len() <= 3
        && access.chars().all(|c| "rwm".contains(c))
}

/// The node of `name`'s own entry in a map or `KEY=VALUE` list, for its line.
fn entry_node<'n>(node: &'n Node, name: &str) -> Option<&'n Node> {
    match &node.value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.key_text() == name)
            .map(|(k, _)| k),
        Value::Seq(items) => items.iter().find(|item| match &item.value {
            Value::Scalar { text, .. } => text.split('=').next() == Some(name),
            _ => false,
        }),
        _ => None,
    }
}
