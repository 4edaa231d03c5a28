//! A service's `ports:`, short (`8080:80/tcp`) and long form, sorted and without repeats.

use crate::desired::compose::parse::parse_port;
use crate::desired::compose::{join, Cx};
use crate::desired::model::PortSpec;
use crate::desired::yaml::{Node, Value};

impl Cx<'_> {
    pub(super) fn ports(&mut self, node: &Node, key: &str) -> Vec<PortSpec> {
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
                    if !self.spend_ports(item, &k, 1) {
                        continue;
                    }
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
                        Ok(ports) => {
                            let count: usize = ports.iter().map(published_count).sum();
                            if self.spend_ports(item, &k, count) {
                                out.extend(ports);
                            }
                        }
                        Err(e) => self.problem(item, &k, format!("'{text}': {e}")),
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// How many ports one entry takes: a host port range for one container port binds one of them
/// per replica, and may bind all of them.
fn published_count(port: &PortSpec) -> usize {
    port.published
        .as_deref()
        .and_then(|p| p.split_once('-'))
        .and_then(|(a, b)| Some(b.parse::<usize>().ok()?.saturating_sub(a.parse().ok()?) + 1))
        .unwrap_or(1)
}
