//! `depends_on`: each service's list of the services it waits for, and the stack-wide check
//! that they exist and form no cycle.

use super::{join, Cx};
use crate::desired::model::{DependsCondition, Service};
use crate::desired::order::startup_order;
use crate::desired::yaml::{Node, Value};
use std::collections::BTreeMap;

impl Cx<'_> {
    pub(super) fn depends_on(
        &mut self,
        node: &Node,
        key: &str,
    ) -> BTreeMap<String, DependsCondition> {
        let mut out = BTreeMap::new();
        match &node.value {
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(name) = self.string(item, &format!("{key}[{i}]")) {
                        out.insert(name, DependsCondition::ServiceStarted);
                    }
                }
            }
            Value::Map(entries) => {
                for (k, v) in entries {
                    let path = join(key, k.key_text());
                    let mut condition = DependsCondition::ServiceStarted;
                    if let Some(fields) = v.as_map() {
                        self.check_keys(fields, &path, &["condition", "restart", "required"]);
                        if let Some(r) = v.get("restart") {
                            if self.bool(r, &join(&path, "restart")) == Some(true) {
                                self.warn(r, &join(&path, "restart"), "'restart: true' is ignored: the reconciler replaces a service only when its own definition changes");
                            }
                        }
                        if let Some(r) = v.get("required") {
                            self.bool(r, &join(&path, "required"));
                        }
                        if let Some(c) = v.get("condition") {
                            condition = match self.string(c, &join(&path, "condition")).as_deref() {
                                Some("service_started") => DependsCondition::ServiceStarted,
                                Some("service_healthy") => DependsCondition::ServiceHealthy,
                                Some("service_completed_successfully") => {
                                    DependsCondition::ServiceCompletedSuccessfully
                                }
                                Some(other) => {
                                    self.problem(c, &join(&path, "condition"), format!("'{other}' is not a condition (service_started, service_healthy, service_completed_successfully)"));
                                    continue;
                                }
                                None => continue,
                            };
                        }
                    }
                    out.insert(k.key_text().to_string(), condition);
                }
            }
            _ => self.problem(
                node,
                key,
                format!(
                    "expected a list or mapping of services, found {}",
                    node.kind()
                ),
            ),
        }
        out
    }

    /// Every `depends_on` names a service of the stack, and there is no cycle.
    pub(super) fn check_dependencies(
        &mut self,
        doc: &Node,
        services: &mut BTreeMap<String, Service>,
    ) {
        // A service left out for its own problems is still a service of the file: no second error.
        // By name, so a stack of many services is not scanned once per service.
        let in_file: BTreeMap<&str, &Node> = doc
            .get("services")
            .and_then(Node::as_map)
            .map(|entries| entries.iter().map(|(k, v)| (k.key_text(), v)).collect())
            .unwrap_or_default();
        for (name, service) in services.iter_mut() {
            let at = in_file
                .get(name.as_str())
                .and_then(|s| s.get("depends_on"))
                .unwrap_or(doc);
            let missing: Vec<String> = service
                .depends_on
                .keys()
                .filter(|dep| !in_file.contains_key(dep.as_str()))
                .cloned()
                .collect();
            for dep in missing {
                let key = format!("services.{name}.depends_on");
                // `required: false`: a dependency that is not there is skipped, as in Compose.
                let optional = at
                    .get(&dep)
                    .and_then(|d| d.get("required"))
                    .is_some_and(|r| {
                        matches!(
                            r.key_text().to_ascii_lowercase().as_str(),
                            "false" | "no" | "off"
                        )
                    });
                if optional {
                    service.depends_on.remove(&dep);
                    self.warn(at, &key, format!("'{dep}' is not a service of this stack; skipped, as it is not required"));
                } else {
                    let message = match self.inactive.get(&dep) {
                        Some(profiles) => format!(
                            "'{dep}' is not deployed: its profiles ({}) are not active; list one in COMPOSE_PROFILES in the stack's .env",
                            profiles.join(", ")
                        ),
                        None => format!("'{dep}' is not a service of this stack"),
                    };
                    self.problem(at, &key, message);
                }
            }
        }
        if let Err(cycle) = startup_order(services) {
            let at = doc.get("services").unwrap_or(doc);
            self.problem(
                at,
                "services",
                format!("depends_on forms a cycle: {}", cycle.join(" -> ")),
            );
        }
    }
}
