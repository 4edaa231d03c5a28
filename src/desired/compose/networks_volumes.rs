//! The stack's top-level `volumes:` and `networks:`: what the services may then refer to, with
//! every key of the Compose specification that means something on one host.

use super::ip::{parse_address, parse_cidr};
use super::{join, Cx};
use crate::desired::model::{IpamDef, IpamPool, NetworkDef, VolumeDef};
use crate::desired::yaml::{Node, Value};
use crate::mask::is_secret_key;
use std::collections::{BTreeMap, BTreeSet};

const VOLUME_KEYS: &[&str] = &["name", "external", "driver", "driver_opts", "labels"];
const NETWORK_KEYS: &[&str] = &[
    "name",
    "external",
    "driver",
    "driver_opts",
    "attachable",
    "enable_ipv4",
    "enable_ipv6",
    "ipam",
    "internal",
    "labels",
];
const IPAM_KEYS: &[&str] = &["driver", "config", "options"];
const IPAM_POOL_KEYS: &[&str] = &["subnet", "ip_range", "gateway", "aux_addresses"];

/// What `name:` and `external:` give: the engine name and whether the stack owns it.
struct Identity {
    name: String,
    external: bool,
}

impl Cx<'_> {
    /// Top-level `volumes:`: each named `{project}_{key}` unless it names itself or is external.
    pub(super) fn volumes(&mut self, node: &Node, project: &str) -> BTreeMap<String, VolumeDef> {
        let mut out = BTreeMap::new();
        for (k, v) in self.resource_entries(node, "volumes") {
            let key = k.key_text().to_string();
            let path = join("volumes", &key);
            let identity = self.identity(v, &path, &key, project);
            let mut def = VolumeDef {
                name: identity.name,
                external: identity.external,
                ..Default::default()
            };
            let fields = match v.value {
                Value::Null => None,
                _ => self.map(v, &path),
            };
            if let Some(fields) = fields {
                self.check_keys(fields, &path, VOLUME_KEYS);
                if def.external {
                    self.ignored_for_external(fields, &path, "volume");
                } else {
                    let before = self.sensitive_keys.len();
                    self.volume_fields(v, &path, &mut def);
                    def.secret_fields = self.secret_fields_since(before, &path, &def.labels);
                }
            }
            out.insert(key, def);
        }
        out
    }

    fn volume_fields(&mut self, v: &Node, path: &str, def: &mut VolumeDef) {
        if let Some(d) = v.get("driver") {
            def.driver = self.string(d, &join(path, "driver"));
        }
        if let Some(o) = v.get("driver_opts") {
            def.driver_opts = self.string_map(o, &join(path, "driver_opts"));
            def.driver_opts_line = v
                .as_map()
                .and_then(|m| m.iter().find(|(k, _)| k.key_text() == "driver_opts"))
                .map_or(o.line, |(k, _)| k.line);
        }
        if let Some(l) = v.get("labels") {
            def.labels = self.resource_labels(l, &join(path, "labels"));
        }
    }

    /// Top-level `networks:`, plus the `default` network every stack has unless it declares one.
    pub(super) fn networks(
        &mut self,
        node: Option<&Node>,
        project: &str,
    ) -> BTreeMap<String, NetworkDef> {
        let mut networks = match node {
            Some(n) => self.declared_networks(n, project),
            None => BTreeMap::new(),
        };
        networks
            .entry("default".into())
            .or_insert_with(|| NetworkDef {
                name: format!("{project}_default"),
                ..Default::default()
            });
        networks
    }

    fn declared_networks(&mut self, node: &Node, project: &str) -> BTreeMap<String, NetworkDef> {
        let mut out = BTreeMap::new();
        for (k, v) in self.resource_entries(node, "networks") {
            let key = k.key_text().to_string();
            let path = join("networks", &key);
            let identity = self.identity(v, &path, &key, project);
            let mut def = NetworkDef {
                name: identity.name,
                external: identity.external,
                ..Default::default()
            };
            let fields = match v.value {
                Value::Null => None,
                _ => self.map(v, &path),
            };
            if let Some(fields) = fields {
                self.check_keys(fields, &path, NETWORK_KEYS);
                if def.external {
                    self.ignored_for_external(fields, &path, "network");
                } else {
                    let before = self.sensitive_keys.len();
                    self.network_fields(v, &path, &mut def);
                    def.secret_fields = self.secret_fields_since(before, &path, &def.labels);
                }
            }
            out.insert(key, def);
        }
        out
    }

    fn network_fields(&mut self, v: &Node, path: &str, def: &mut NetworkDef) {
        let key = |k: &str| join(path, k);
        if let Some(d) = v.get("driver") {
            def.driver = self.string(d, &key("driver"));
        }
        if let Some(o) = v.get("driver_opts") {
            def.driver_opts = self.string_map(o, &key("driver_opts"));
        }
        for (field, slot) in [
            ("attachable", &mut def.attachable),
            ("enable_ipv6", &mut def.enable_ipv6),
            ("internal", &mut def.internal),
        ] {
            if let Some(n) = v.get(field) {
                *slot = self.bool(n, &key(field)).unwrap_or(false);
            }
        }
        if let Some(n) = v.get("enable_ipv4") {
            // IPv4 is always on before Engine API 1.47; only turning it off needs the newer API.
            if self.bool(n, &key("enable_ipv4")) == Some(false) {
                self.problem(n, &key("enable_ipv4"), "'enable_ipv4: false' is a Compose key the reconciler cannot apply: it needs Docker Engine API 1.47 (Engine 28), and the reconciler speaks API 1.41");
            }
        }
        if let Some(n) = v.get("ipam") {
            def.ipam = self.ipam(n, &key("ipam"));
        }
        if let Some(l) = v.get("labels") {
            def.labels = self.resource_labels(l, &key("labels"));
        }
    }

    fn ipam(&mut self, node: &Node, key: &str) -> Option<IpamDef> {
        let fields = self.map(node, key)?;
        self.check_keys(fields, key, IPAM_KEYS);
        let mut ipam = IpamDef::default();
        if let Some(d) = node.get("driver") {
            ipam.driver = self.string(d, &join(key, "driver"));
        }
        if let Some(o) = node.get("options") {
            ipam.options = self.string_map(o, &join(key, "options"));
        }
        if let Some(c) = node.get("config") {
            let ckey = join(key, "config");
            match &c.value {
                Value::Seq(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if let Some(pool) = self.ipam_pool(item, &format!("{ckey}[{i}]")) {
                            ipam.config.push(pool);
                        }
                    }
                }
                _ => self.problem(
                    c,
                    &ckey,
                    format!("expected a list of address pools, found {}", c.kind()),
                ),
            }
        }
        Some(ipam)
    }

    /// One address pool: a subnet, and addresses that lie in it.
    fn ipam_pool(&mut self, node: &Node, key: &str) -> Option<IpamPool> {
        let fields = self.map(node, key)?;
        self.check_keys(fields, key, IPAM_POOL_KEYS);
        let mut pool = IpamPool::default();
        let cidr = |cx: &mut Self, field: &str| {
            let n = node.get(field)?;
            let text = cx.string(n, &join(key, field))?;
            match parse_cidr(&text) {
                Some(_) => Some(text),
                None => {
                    cx.problem(
                        n,
                        &join(key, field),
                        format!("'{text}' is not a subnet in CIDR form (write e.g. 172.28.0.0/16)"),
                    );
                    None
                }
            }
        };
        pool.subnet = cidr(self, "subnet");
        pool.ip_range = cidr(self, "ip_range");
        if let Some(n) = node.get("gateway") {
            pool.gateway = self.address(n, &join(key, "gateway"));
        }
        if let Some(n) = node.get("aux_addresses") {
            let akey = join(key, "aux_addresses");
            pool.aux_addresses = self.string_map(n, &akey);
            for (name, address) in &pool.aux_addresses {
                if parse_address(address).is_none() {
                    self.problem(
                        n,
                        &join(&akey, name),
                        format!("'{address}' is not an IP address"),
                    );
                }
            }
        }
        if pool.subnet.is_none() && (pool.ip_range.is_some() || pool.gateway.is_some()) {
            self.problem(
                node,
                key,
                "an address pool with 'ip_range' or 'gateway' needs its 'subnet'",
            );
        }
        Some(pool)
    }

    /// An IP address (v4 or v6), as written.
    pub(super) fn address(&mut self, node: &Node, key: &str) -> Option<String> {
        let text = self.string(node, key)?;
        if parse_address(&text).is_none() {
            self.problem(node, key, format!("'{text}' is not an IP address"));
            return None;
        }
        Some(text)
    }

    /// The entries of a top-level `volumes:` or `networks:` (`None` values included).
    fn resource_entries<'n>(&mut self, node: &'n Node, key: &str) -> &'n [(Node, Node)] {
        match node.value {
            Value::Null => &[],
            _ => self.map(node, key).unwrap_or(&[]),
        }
    }

    /// `name:` and `external:` (true, or the legacy `external: {name: x}`), as Compose reads them.
    fn identity(&mut self, v: &Node, path: &str, key: &str, project: &str) -> Identity {
        let mut name = None;
        let mut external = false;
        if let Some(n) = v.get("name") {
            name = self.string(n, &join(path, "name"));
        }
        if let Some(e) = v.get("external") {
            let ekey = join(path, "external");
            match &e.value {
                Value::Map(fields) => {
                    self.check_keys(fields, &ekey, &["name"]);
                    external = true;
                    if let Some(n) = e.get("name") {
                        let legacy = self.string(n, &join(&ekey, "name"));
                        self.warn(n, &join(&ekey, "name"), "'external.name' is deprecated (as in Compose): write `name: ...` and `external: true`");
                        match (&name, legacy) {
                            (Some(a), Some(b)) if *a != b => self.problem(
                                n,
                                &join(&ekey, "name"),
                                "name and external.name conflict; only use name",
                            ),
                            (None, legacy) => name = legacy,
                            _ => {}
                        }
                    }
                }
                _ => external = self.bool(e, &ekey).unwrap_or(false),
            }
        }
        let name = name.unwrap_or_else(|| {
            if external {
                key.to_string()
            } else {
                format!("{project}_{key}")
            }
        });
        Identity { name, external }
    }

    /// Keys that define how a resource is made mean nothing when it is made outside the stack.
    fn ignored_for_external(&mut self, fields: &[(Node, Node)], path: &str, what: &str) {
        for (k, _) in fields {
            let field = k.key_text();
            if !matches!(field, "name" | "external") && !field.starts_with("x-") {
                self.warn(
                    k,
                    &join(path, field),
                    format!("'{field}' is ignored: an external {what} is made outside the stack, as it is"),
                );
            }
        }
    }

    /// The fields of a network or volume (`driver_opts`, `ipam`, `labels`) whose values took a
    /// secret-looking variable since `before`, or labels named like a secret: their values are
    /// never shown when the resource is compared with the engine's.
    fn secret_fields_since(
        &mut self,
        before: usize,
        path: &str,
        labels: &BTreeMap<String, String>,
    ) -> BTreeSet<String> {
        let prefix = format!("{path}.");
        let mut fields: BTreeSet<String> = self
            .sensitive_keys
            .drain(before.min(self.sensitive_keys.len())..)
            .filter_map(|k| {
                let field = k.strip_prefix(&prefix)?;
                field.split(['.', '[']).next().map(str::to_string)
            })
            .collect();
        if labels.keys().any(|k| is_secret_key(k)) {
            fields.insert("labels".into());
        }
        fields
    }

    /// Labels of a network or volume: Compose's own are refused, as on services.
    fn resource_labels(&mut self, node: &Node, key: &str) -> BTreeMap<String, String> {
        let labels = self.string_map(node, key);
        self.refuse_reserved_labels(node, key, &labels);
        labels
    }
}
