//! `links`, `volumes_from` and `service:NAME` namespaces name services of the stack: once every
//! service is read, each name becomes that service's container (for namespaces, when the
//! executor creates the container), and the service an implicit `depends_on`, since Compose
//! starts it first.

use super::Cx;
use crate::desired::model::{DependsCondition, Service};
use crate::desired::yaml::Node;
use std::collections::BTreeMap;

impl Cx<'_> {
    pub(super) fn resolve_service_references(
        &mut self,
        doc: &Node,
        project: &str,
        services: &mut BTreeMap<String, Service>,
    ) {
        // `None`: the service runs no container (replicas: 0), so its name may be any
        // container's of the host, outside the stack and its policy.
        let containers: BTreeMap<String, Option<String>> = services
            .iter()
            .map(|(name, s)| {
                let container = (s.replicas > 0).then(|| {
                    crate::labels::container_name(project, name, s.spec.container_name.as_deref())
                });
                (name.clone(), container)
            })
            .collect();
        // A service left out for its own problems is still a service of the file: no second error.
        let in_file: Vec<String> = doc
            .get("services")
            .and_then(Node::as_map)
            .map(|entries| {
                entries
                    .iter()
                    .map(|(k, _)| k.key_text().to_string())
                    .collect()
            })
            .unwrap_or_default();
        for (name, service) in services.iter_mut() {
            let at = |field: &str| {
                doc.get("services")
                    .and_then(|s| s.get(name))
                    .and_then(|s| s.get(field))
                    .unwrap_or(doc)
            };
            let mut needs = Vec::new();
            let mut resolve = |cx: &mut Self, field: &str, entry: &str| -> Option<String> {
                // `SERVICE:ALIAS` (links) or `SERVICE[:ro]` (volumes_from).
                let (target, rest) = match entry.split_once(':') {
                    Some((t, r)) => (t, format!(":{r}")),
                    None => (entry, String::new()),
                };
                match containers.get(target) {
                    Some(Some(container)) => {
                        needs.push(target.to_string());
                        Some(format!("{container}{rest}"))
                    }
                    Some(None) => {
                        cx.problem(
                            at(field),
                            &format!("services.{name}.{field}"),
                            format!("'{target}' runs no container (replicas: 0): there is nothing of this stack to take from, and its name could be another container's"),
                        );
                        None
                    }
                    None => {
                        if !in_file.iter().any(|s| s == target) {
                            cx.problem(
                                at(field),
                                &format!("services.{name}.{field}"),
                                format!("'{target}' is not a service of this stack"),
                            );
                        }
                        None
                    }
                }
            };
            let links = std::mem::take(&mut service.spec.networking.links);
            let mut resolved: Vec<String> = links
                .iter()
                .filter_map(|l| resolve(self, "links", l))
                .collect();
            resolved.sort();
            resolved.dedup();
            service.spec.networking.links = resolved;

            let from = std::mem::take(&mut service.spec.storage.volumes_from);
            let mut resolved: Vec<String> = from
                .iter()
                .filter_map(|v| {
                    if v.starts_with("container:") {
                        Some(v.clone())
                    } else {
                        resolve(self, "volumes_from", v)
                    }
                })
                .collect();
            resolved.sort();
            resolved.dedup();
            service.spec.storage.volumes_from = resolved;

            // `service:NAME` namespaces join that service's container (the executor names it).
            for field in ["network_mode", "pid", "ipc"] {
                let mode = match field {
                    "network_mode" => &service.spec.network_mode,
                    "pid" => &service.spec.pid,
                    _ => &service.spec.ipc,
                };
                if let Some(target) = mode.as_deref().and_then(|m| m.strip_prefix("service:")) {
                    let target = target.to_string();
                    if target == *name {
                        self.problem(
                            at(field),
                            &format!("services.{name}.{field}"),
                            "a service cannot join its own namespace",
                        );
                    } else {
                        resolve(self, field, &target);
                    }
                }
            }
            for dependency in needs {
                service
                    .depends_on
                    .entry(dependency)
                    .or_insert(DependsCondition::ServiceStarted);
            }
        }
    }
}
