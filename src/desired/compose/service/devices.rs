//! A service's `devices:`, short and long form, with each entry's line for the host policy.

use crate::desired::compose::parse::{check_device, parse_device};
use crate::desired::compose::{join, Cx};
use crate::desired::model::DeviceSpec;
use crate::desired::yaml::{Node, Value};

impl Cx<'_> {
    /// `devices:` in Compose's forms: `HOST[:CONTAINER][:PERMISSIONS]` or `{source, target,
    /// permissions}`. Whether the host gives them is the policy's call.
    pub(super) fn devices(&mut self, node: &Node, key: &str) -> Vec<DeviceSpec> {
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
}
