//! Filesystems beyond `volumes:`: the service-level `tmpfs`, `volumes_from` (services of the
//! stack, or `container:NAME` outside it) and `storage_opt`.

use crate::desired::compose::{join, valid_service_name, Cx};
use crate::desired::model::{ContainerSpec, StorageSpec};
use crate::desired::yaml::{Node, Value};
use std::collections::BTreeMap;

/// Mount flags the engine takes for a tmpfs.
const TMPFS_FLAGS: &[&str] = &[
    "ro",
    "rw",
    "exec",
    "noexec",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "sync",
    "async",
    "dirsync",
    "atime",
    "noatime",
    "diratime",
    "nodiratime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "mand",
    "nomand",
    "tmpcopyup",
    "notmpcopyup",
];
/// `KEY=VALUE` options of tmpfs itself.
const TMPFS_DATA: &[&str] = &[
    "size",
    "mode",
    "uid",
    "gid",
    "nr_inodes",
    "nr_blocks",
    "mpol",
];

impl Cx<'_> {
    /// Read after `volumes:`, whose targets a tmpfs may not repeat.
    pub(super) fn storage(&mut self, node: &Node, path: &str, spec: &ContainerSpec) -> StorageSpec {
        let key = |k: &str| join(path, k);
        let mut s = StorageSpec::default();
        if let Some(n) = node.get("tmpfs") {
            s.tmpfs = self.service_tmpfs(n, &key("tmpfs"), spec);
        }
        if let Some(n) = node.get("volumes_from") {
            s.volumes_from = self.volumes_from(n, &key("volumes_from"));
        }
        if let Some(n) = node.get("storage_opt") {
            s.storage_opt = self.string_map(n, &key("storage_opt"));
        }
        s
    }

    /// `tmpfs: /run` or a list of `PATH[:OPTIONS]`.
    fn service_tmpfs(
        &mut self,
        node: &Node,
        key: &str,
        spec: &ContainerSpec,
    ) -> BTreeMap<String, String> {
        let items: Vec<&Node> = match &node.value {
            Value::Seq(items) => items.iter().collect(),
            _ => vec![node],
        };
        let mut out: BTreeMap<String, String> = BTreeMap::new();
        for (i, item) in items.into_iter().enumerate() {
            let k = if matches!(node.value, Value::Seq(_)) {
                format!("{key}[{i}]")
            } else {
                key.to_string()
            };
            let Some(text) = self.string(item, &k) else {
                continue;
            };
            let (target, options) = text.split_once(':').unwrap_or((&text, ""));
            if let Err(e) = check_tmpfs(target, options) {
                self.problem(item, &k, format!("'{text}': {e}"));
                continue;
            }
            if spec.mounts.iter().any(|m| m.target == target) {
                self.problem(
                    item,
                    &k,
                    format!("'{target}' is also a target of `volumes:`; a path can hold one mount"),
                );
                continue;
            }
            match out.get(target) {
                Some(other) if other != options => {
                    self.problem(
                        item,
                        &k,
                        format!("'{target}' is given twice with different options"),
                    );
                }
                _ => {
                    out.insert(target.to_string(), options.to_string());
                }
            }
        }
        out
    }

    /// `SERVICE[:ro|:rw]` or `container:NAME[:ro|:rw]`; `:rw` (the default) is dropped, so
    /// both spellings hash alike. Services are resolved to their containers later.
    fn volumes_from(&mut self, node: &Node, key: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (item, k, text) in self.located_strings(node, key, "a list") {
            let (container, rest) = match text.strip_prefix("container:") {
                Some(rest) => (true, rest),
                None => (false, text.as_str()),
            };
            let (name, mode) = match rest.rsplit_once(':') {
                Some((name, mode)) if matches!(mode, "ro" | "rw") => (name, mode),
                _ => (rest, "rw"),
            };
            let name_ok = !name.is_empty()
                && (container || valid_service_name(name))
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !name_ok {
                self.problem(item, &k, format!("'{text}' is not a volumes_from entry (write SERVICE[:ro|:rw] or container:NAME[:ro|:rw])"));
                continue;
            }
            let prefix = if container { "container:" } else { "" };
            let suffix = if mode == "ro" { ":ro" } else { "" };
            if container {
                self.mount_lines
                    .insert(format!("volumes_from:{name}"), item.line);
            }
            out.push(format!("{prefix}{name}{suffix}"));
        }
        out.sort();
        out.dedup();
        out
    }
}

fn check_tmpfs(target: &str, options: &str) -> Result<(), String> {
    if !target.starts_with('/') {
        return Err("the tmpfs path must be absolute".into());
    }
    for option in options.split(',').filter(|o| !o.is_empty()) {
        match option.split_once('=') {
            Some((name, value)) if TMPFS_DATA.contains(&name) && !value.is_empty() => {}
            None if TMPFS_FLAGS.contains(&option) => {}
            _ => {
                return Err(format!(
                    "unknown tmpfs option '{option}' (size=, mode=, uid=, gid=, nr_inodes=, or a mount flag such as noexec)"
                ))
            }
        }
    }
    Ok(())
}
