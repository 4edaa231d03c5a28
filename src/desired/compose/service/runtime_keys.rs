//! Compose's runtime keys, read once the core keys are: resources, confinement, addressing and
//! storage (each by its own file), `platform`, `tty`, `stdin_open`, `label_file`, and the keys
//! accepted with a warning because they have no effect here.

use crate::desired::compose::{join, Cx};
use crate::desired::model::ContainerSpec;
use crate::desired::yaml::Node;
use std::collections::BTreeMap;

/// Keys with no effect on a host the reconciler runs, and why.
const NO_EFFECT: &[(&str, &str)] = &[
    ("attach", "it chooses whose logs `docker compose up` prints; the reconciler attaches to no container"),
    ("develop", "it configures `docker compose watch` for development; the reconciler deploys what git holds"),
    ("isolation", "it applies to Windows containers only"),
    ("credential_spec", "it applies to Windows containers only"),
    ("cpu_count", "it applies to Windows containers only"),
    ("cpu_percent", "it applies to Windows containers only"),
];

impl Cx<'_> {
    /// Read after `volumes`, `network_mode` and `ipc`, which some of these keys are checked
    /// against.
    pub(super) fn runtime_keys(&mut self, node: &Node, path: &str, spec: &mut ContainerSpec) {
        let key = |k: &str| join(path, k);
        spec.resources = self.resources(node, path);
        spec.confinement = self.confinement(node, path, spec);
        spec.networking = self.addressing(node, path, spec);
        spec.storage = self.storage(node, path, spec);
        if let Some(n) = node.get("platform") {
            spec.platform = self.platform(n, &key("platform"));
        }
        if let Some(n) = node.get("tty") {
            spec.tty = self.bool(n, &key("tty")).unwrap_or(false);
        }
        if let Some(n) = node.get("stdin_open") {
            spec.stdin_open = self.bool(n, &key("stdin_open")).unwrap_or(false);
        }
        if let Some(n) = node.get("label_file") {
            let from_files = self.label_files(n, &key("label_file"), &key("labels"));
            // `labels:` wins over the files, as in Compose.
            let mut labels = from_files;
            labels.append(&mut spec.labels);
            spec.labels = labels;
        }
        for (field, why) in NO_EFFECT {
            if let Some((k, _)) = node
                .as_map()
                .and_then(|entries| entries.iter().find(|(k, _)| k.key_text() == *field))
            {
                self.warn(k, &key(field), format!("'{field}' is ignored: {why}"));
            }
        }
    }

    /// `os[/arch[/variant]]`, lower case, as the OCI image spec writes platforms.
    fn platform(&mut self, node: &Node, key: &str) -> Option<String> {
        let value = self.string(node, key)?;
        let parts: Vec<&str> = value.split('/').collect();
        let valid = (1..=3).contains(&parts.len())
            && parts.iter().all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            });
        if valid {
            Some(value)
        } else {
            self.problem(
                node,
                key,
                format!(
                    "'{value}' is not a platform (write os[/arch[/variant]], e.g. linux/arm64)"
                ),
            );
            None
        }
    }

    /// `label_file`: files of `KEY=VALUE` lines, read confined like `env_file`, later files
    /// winning; labels reserved for Compose and the reconciler are refused.
    fn label_files(
        &mut self,
        node: &Node,
        key: &str,
        labels_key: &str,
    ) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        self.env_files(node, key, &mut labels);
        self.refuse_reserved_labels(node, key, &labels);
        // `API_TOKEN=...` in a label file: the labels' values are not shown or digested unkeyed.
        if labels.keys().any(|k| crate::mask::is_secret_key(k)) {
            self.sensitive_keys.push(labels_key.to_string());
        }
        labels
    }
}
