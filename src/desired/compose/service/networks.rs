//! A service's `networks:`: which declared networks it joins, with its aliases on each.

use crate::desired::compose::{join, Cx};
use crate::desired::model::NetworkDef;
use crate::desired::yaml::{Node, Value};
use std::collections::BTreeMap;

impl Cx<'_> {
    pub(super) fn service_networks(
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
}
