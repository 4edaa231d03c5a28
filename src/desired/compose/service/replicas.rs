//! A service's `deploy.replicas` and `scale`: how many containers run (`<project>-<service>-1`
//! .. `-N`, none for 0), with Compose's refusals (the two keys disagreeing, a custom
//! `container_name`) and one of ours: a fixed host port that every replica would bind.

use crate::desired::compose::{join, Cx};
use crate::desired::model::{Service, UpdateOrder};
use crate::desired::yaml::Node;

/// A hostile or mistyped file must not start thousands of containers on the host.
pub const MAX_REPLICAS: u32 = 100;

impl Cx<'_> {
    pub(super) fn replicas(&mut self, node: &Node, path: &str, service: &mut Service) {
        let scale_key = join(path, "scale");
        let deploy_key = join(&join(path, "deploy"), "replicas");
        let scale = node
            .get("scale")
            .and_then(|n| Some((n, self.replica_count(n, &scale_key)?)));
        let deployed = node
            .get("deploy")
            .and_then(|d| d.get("replicas"))
            .and_then(|n| Some((n, self.replica_count(n, &deploy_key)?)));
        let (at, key, count) = match (scale, deployed) {
            (Some((n, a)), Some((_, b))) if a != b => {
                // Compose's own words, so a search for them finds the answer.
                self.problem(
                    n,
                    &scale_key,
                    format!(
                        "can't set distinct values on 'scale' and 'deploy.replicas' ({a} and {b})"
                    ),
                );
                return;
            }
            (_, Some((n, count))) => (n, deploy_key, count),
            (Some((n, count)), None) => (n, scale_key, count),
            (None, None) => return,
        };
        service.replicas = count;
        if count > 1 {
            self.check_replicas_can_coexist(node, path, at, &key, service);
        }
    }

    fn replica_count(&mut self, node: &Node, key: &str) -> Option<u32> {
        let text = self.string(node, key)?;
        match text.parse::<u32>() {
            Ok(n) if n <= MAX_REPLICAS => Some(n),
            Ok(n) => {
                self.problem(
                    node,
                    key,
                    format!(
                        "{n} replicas is more than the {MAX_REPLICAS} one host runs for a service"
                    ),
                );
                None
            }
            Err(_) => {
                self.problem(
                    node,
                    key,
                    format!(
                        "expected a number of containers (0 to {MAX_REPLICAS}), found '{text}'"
                    ),
                );
                None
            }
        }
    }

    /// N containers of one service run side by side: they cannot share a name or a host port.
    fn check_replicas_can_coexist(
        &mut self,
        node: &Node,
        path: &str,
        at: &Node,
        key: &str,
        service: &Service,
    ) {
        let count = service.replicas;
        if let Some(name) = &service.spec.container_name {
            self.problem(
                at,
                key,
                format!("{count} replicas cannot share the custom container name '{name}': Docker requires each container to have a unique name. Remove the custom name to scale the service"),
            );
        }
        let ports_node = node.get("ports").unwrap_or(node);
        let ports_key = join(path, "ports");
        for port in &service.spec.ports {
            let Some(published) = &port.published else {
                continue;
            };
            let ports_in_range = match published.split_once('-') {
                Some((a, b)) => match (a.parse::<u32>(), b.parse::<u32>()) {
                    (Ok(a), Ok(b)) if a <= b => b - a + 1,
                    _ => continue,
                },
                None => 1,
            };
            if ports_in_range == 1 {
                let range = match published.parse::<u32>() {
                    Ok(first) => format!("'{first}-{}:{}'", first + count - 1, port.target),
                    Err(_) => "'8000-8002:80'".to_string(),
                };
                self.problem(
                    ports_node,
                    &ports_key,
                    format!("host port {published} cannot be published by {count} replicas: only one container can bind it. Publish a range with a port per replica (e.g. {range}), or leave out the host port"),
                );
            } else if ports_in_range < count {
                self.problem(
                    ports_node,
                    &ports_key,
                    format!("host port range {published} has {ports_in_range} ports for {count} replicas: each replica binds one"),
                );
            } else if ports_in_range == count && service.order == Some(UpdateOrder::StartFirst) {
                // The new container of a replica starts while the old one still holds its port.
                self.problem(
                    ports_node,
                    &ports_key,
                    format!("host port range {published} has no spare port for start-first: each new replica starts beside the old one, so {count} replicas need {} ports", count + 1),
                );
            }
        }
    }
}
