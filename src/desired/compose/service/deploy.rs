//! A service's `deploy:` as Compose reads it on one host: resource limits and reservations, the
//! restart policy, and the update order, failure action and monitor window. The Swarm-only keys
//! (placement, mode global, endpoint mode, rollback settings, ...) are accepted with a warning
//! saying they are ignored, as Compose ignores them.

use crate::desired::compose::{join, Cx};
use crate::desired::model::{GpuRequest, Service, UpdateOrder};
use crate::desired::yaml::{Node, Value};
use std::collections::BTreeMap;

const DEPLOY_KEYS: &[&str] = &[
    "mode",
    "replicas",
    "labels",
    "update_config",
    "rollback_config",
    "resources",
    "restart_policy",
    "placement",
    "endpoint_mode",
];
const UPDATE_KEYS: &[&str] = &[
    "parallelism",
    "delay",
    "failure_action",
    "monitor",
    "max_failure_ratio",
    "order",
];
const LIMIT_KEYS: &[&str] = &["cpus", "memory", "pids"];
const RESERVATION_KEYS: &[&str] = &["cpus", "memory", "generic_resources", "devices"];
const DEVICE_KEYS: &[&str] = &["capabilities", "count", "device_ids", "driver", "options"];
const RESTART_KEYS: &[&str] = &["condition", "delay", "max_attempts", "window"];

impl Cx<'_> {
    pub(super) fn deploy(&mut self, node: &Node, key: &str, service: &mut Service) {
        let Some(entries) = self.map(node, key) else {
            return;
        };
        self.check_keys(entries, key, DEPLOY_KEYS);
        // `replicas` is read where the containers of a service are counted.
        for (k, v) in entries {
            let field = k.key_text();
            let path = join(key, field);
            match field {
                "mode" => self.deploy_mode(v, &path),
                "labels" => {
                    self.string_map(v, &path);
                    self.warn(k, &path, "'deploy.labels' is ignored: they label a Swarm service, and Compose does not put them on containers either; use `labels:`");
                }
                "placement" | "endpoint_mode" | "rollback_config" => self.warn(
                    k,
                    &path,
                    format!("'{field}' is ignored: it is a Swarm setting, with no meaning on one host (Compose ignores it too)"),
                ),
                "resources" => self.deploy_resources(v, &path, service),
                "restart_policy" => self.restart_policy(v, &path, service),
                "update_config" => self.update_config(v, &path, service),
                _ => {}
            }
        }
    }

    fn deploy_mode(&mut self, node: &Node, key: &str) {
        match self.string(node, key).as_deref() {
            Some("replicated") | None => {}
            Some(mode) => self.warn(
                node,
                key,
                format!("'mode: {mode}' is ignored: it is a Swarm mode; on one host the service runs as replicated, as with Compose"),
            ),
        }
    }

    fn deploy_resources(&mut self, node: &Node, key: &str, service: &mut Service) {
        let Some(fields) = self.map(node, key) else {
            return;
        };
        self.check_keys(fields, key, &["limits", "reservations"]);
        if let Some(limits) = node.get("limits") {
            self.limits(limits, &join(key, "limits"), service);
        }
        if let Some(reservations) = node.get("reservations") {
            self.reservations(reservations, &join(key, "reservations"), service);
        }
    }

    /// `limits`: the same as `mem_limit`, `cpus` and `pids_limit`; both spellings with distinct
    /// values are refused, as Compose refuses them.
    fn limits(&mut self, node: &Node, key: &str, service: &mut Service) {
        let Some(fields) = self.map(node, key) else {
            return;
        };
        self.check_keys(fields, key, LIMIT_KEYS);
        let spec = &mut service.spec;
        if let Some(m) = node.get("memory") {
            let bytes = self.bytes(m, &join(key, "memory"));
            spec.mem_limit = self.one_value(m, key, "mem_limit", "memory", spec.mem_limit, bytes);
        }
        if let Some(c) = node.get("cpus") {
            let cpus = self.cpus(c, &join(key, "cpus"));
            spec.nano_cpus = self.one_value(c, key, "cpus", "cpus", spec.nano_cpus, cpus);
        }
        if let Some(p) = node.get("pids") {
            let pids = self.integer::<i64>(p, &join(key, "pids"));
            spec.resources.pids_limit = self.one_value(
                p,
                key,
                "pids_limit",
                "pids",
                spec.resources.pids_limit,
                pids,
            );
        }
    }

    /// What a service key and its `deploy.resources` spelling give together.
    fn one_value(
        &mut self,
        node: &Node,
        key: &str,
        service_key: &str,
        field: &str,
        service_value: Option<i64>,
        deploy_value: Option<i64>,
    ) -> Option<i64> {
        match (service_value, deploy_value) {
            (Some(a), Some(b)) if a != b => {
                let path = join(key, field);
                let short = path
                    .split_once(".deploy.")
                    .map_or(path.as_str(), |(_, p)| p);
                self.problem(
                    node,
                    &path,
                    format!("can't set distinct values on '{service_key}' and 'deploy.{short}'"),
                );
                service_value
            }
            (a, b) => a.or(b),
        }
    }

    /// `reservations`: memory becomes the container's soft limit and devices its device
    /// requests (GPUs); a CPU reservation is a Swarm scheduling hint, ignored as Compose does.
    fn reservations(&mut self, node: &Node, key: &str, service: &mut Service) {
        let Some(fields) = self.map(node, key) else {
            return;
        };
        self.check_keys(fields, key, RESERVATION_KEYS);
        if let Some(m) = node.get("memory") {
            let bytes = self.bytes(m, &join(key, "memory"));
            let current = service.spec.resources.mem_reservation;
            service.spec.resources.mem_reservation =
                self.one_value(m, key, "mem_reservation", "memory", current, bytes);
        }
        for field in ["cpus", "generic_resources"] {
            if let Some((k, _)) = fields.iter().find(|(k, _)| k.key_text() == field) {
                self.warn(k, &join(key, field), format!("'{field}' is ignored: a reservation of it only guides Swarm's scheduling (Compose ignores it too)"));
            }
        }
        if let Some(d) = node.get("devices") {
            let dkey = join(key, "devices");
            let Value::Seq(items) = &d.value else {
                self.problem(
                    d,
                    &dkey,
                    format!("expected a list of device requests, found {}", d.kind()),
                );
                return;
            };
            for (i, item) in items.iter().enumerate() {
                let k = format!("{dkey}[{i}]");
                if let Some(request) = self.device_request(item, &k) {
                    // The host policy's message about it points here.
                    self.mount_lines
                        .insert(format!("deploy:device_requests[{i}]"), item.line);
                    service.spec.device_requests.push(request);
                }
            }
        }
    }

    /// One `devices` reservation: which devices (by count or ids) with which capabilities.
    fn device_request(&mut self, node: &Node, key: &str) -> Option<GpuRequest> {
        let fields = self.map(node, key)?;
        self.check_keys(fields, key, DEVICE_KEYS);
        let mut request = GpuRequest {
            driver: None,
            count: None,
            device_ids: Vec::new(),
            capabilities: Vec::new(),
            options: BTreeMap::new(),
        };
        match node.get("capabilities") {
            Some(c) => {
                request.capabilities = self
                    .string_or_list(c, &join(key, "capabilities"))
                    .unwrap_or_default();
                request.capabilities.sort();
                request.capabilities.dedup();
            }
            None => {
                self.problem(
                    node,
                    key,
                    "a device reservation needs 'capabilities' (e.g. [gpu])",
                );
                return None;
            }
        }
        if let Some(d) = node.get("driver") {
            request.driver = self.string(d, &join(key, "driver"));
        }
        if let Some(ids) = node.get("device_ids") {
            request.device_ids = self
                .string_or_list(ids, &join(key, "device_ids"))
                .unwrap_or_default();
        }
        if let Some(o) = node.get("options") {
            request.options = self.string_map(o, &join(key, "options"));
        }
        let count_key = join(key, "count");
        request.count = match node.get("count") {
            Some(c) => {
                match self.string(c, &count_key) {
                    Some(s) if s.eq_ignore_ascii_case("all") => Some(-1),
                    Some(s) => match s.parse::<i64>() {
                        Ok(n) if n >= 0 => Some(n),
                        _ => {
                            self.problem(c, &count_key, format!("invalid value '{s}', the only value allowed is 'all' or a number"));
                            None
                        }
                    },
                    None => None,
                }
            }
            // Neither a count nor ids: every device of the kind, as Compose reads it.
            None if node.get("device_ids").is_none() => Some(-1),
            None => None,
        };
        if node.get("count").is_some() && node.get("device_ids").is_some() {
            self.problem(
                node,
                key,
                "'count' and 'device_ids' cannot be set together: the engine takes one or the other",
            );
            return None;
        }
        Some(request)
    }

    /// `restart_policy` as Compose maps it onto the engine's restart policy; where `restart:`
    /// is also given, this one wins, as in Compose.
    fn restart_policy(&mut self, node: &Node, key: &str, service: &mut Service) {
        let Some(fields) = self.map(node, key) else {
            return;
        };
        self.check_keys(fields, key, RESTART_KEYS);
        for field in ["delay", "window"] {
            if let Some((k, v)) = fields.iter().find(|(k, _)| k.key_text() == field) {
                self.duration(v, &join(key, field));
                self.warn(k, &join(key, field), format!("'{field}' is ignored: the engine restarts a container at once (Compose ignores it too)"));
            }
        }
        let ckey = join(key, "condition");
        // The specification's default condition is `any`.
        let condition = match node.get("condition") {
            Some(c) => match self.string(c, &ckey).as_deref() {
                Some("none") | Some("no") => "no",
                Some("on-failure") => "on-failure",
                Some("any") | Some("always") => "always",
                Some("unless-stopped") => "unless-stopped",
                Some(other) => {
                    self.problem(
                        c,
                        &ckey,
                        format!("'{other}' is not a restart condition (none, on-failure, any)"),
                    );
                    return;
                }
                None => return,
            },
            None => "always",
        };
        let mut policy = condition.to_string();
        if let Some(m) = node.get("max_attempts") {
            let mkey = join(key, "max_attempts");
            match self.integer::<u32>(m, &mkey) {
                Some(n) if condition == "on-failure" => policy = format!("on-failure:{n}"),
                Some(_) => self.warn(m, &mkey, format!("'max_attempts' is ignored with condition '{condition}': the engine counts restarts only for on-failure")),
                None => {}
            }
        }
        if let Some(restart) = service.spec.restart.as_ref().filter(|r| **r != policy) {
            self.warn(
                node,
                key,
                format!("'deploy.restart_policy' ({policy}) wins over `restart: {restart}`, as in Compose"),
            );
        }
        service.spec.restart = Some(policy);
    }

    fn update_config(&mut self, node: &Node, key: &str, service: &mut Service) {
        let Some(fields) = self.map(node, key) else {
            return;
        };
        self.check_keys(fields, key, UPDATE_KEYS);
        for field in ["parallelism", "delay", "max_failure_ratio"] {
            if let Some((k, _)) = fields.iter().find(|(k, _)| k.key_text() == field) {
                self.warn(k, &join(key, field), format!("'{field}' is ignored: it paces a Swarm rollout across tasks (Compose ignores it too)"));
            }
        }
        if let Some(o) = node.get("order") {
            service.order = match self.string(o, &join(key, "order")).as_deref() {
                Some("stop-first") => Some(UpdateOrder::StopFirst),
                Some("start-first") => Some(UpdateOrder::StartFirst),
                Some(other) => {
                    self.problem(
                        o,
                        &join(key, "order"),
                        format!("'{other}' is not an order (stop-first, start-first)"),
                    );
                    None
                }
                None => None,
            };
        }
        if let Some(f) = node.get("failure_action") {
            let fkey = join(key, "failure_action");
            match self.string(f, &fkey).as_deref() {
                Some("rollback") | Some("pause") | None => {}
                Some("continue") => self.warn(f, &fkey, "'continue' is not followed: a failed update always restores the last good version (rollback)"),
                Some(other) => self.problem(f, &fkey, format!("'{other}' is not a failure action (rollback, pause, continue); a failed update always restores the last good version (rollback)")),
            }
        }
        if let Some(m) = node.get("monitor") {
            service.monitor = self.duration(m, &join(key, "monitor")).unwrap_or_default();
        }
    }
}
