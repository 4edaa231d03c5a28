//! A service's `deploy:`: resource limits (where `mem_limit`/`cpus` are not set) and the
//! update order, failure action and monitor window.

use crate::desired::compose::{join, Cx};
use crate::desired::model::{Service, UpdateOrder};
use crate::desired::yaml::Node;

impl Cx<'_> {
    pub(super) fn deploy(&mut self, node: &Node, key: &str, service: &mut Service) {
        let Some(entries) = self.map(node, key) else {
            return;
        };
        self.check_keys(entries, key, &["resources", "update_config", "replicas"]);
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
}
