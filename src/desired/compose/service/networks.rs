//! A service's `networks:`: which declared networks it joins, with its aliases on each and, in
//! the long form, its fixed addresses, driver options and priority there.

use crate::desired::compose::ip::{parse_address, subnet_contains};
use crate::desired::compose::{join, Cx};
use crate::desired::model::{EndpointSpec, NetworkDef};
use crate::desired::yaml::{Node, Value};
use std::collections::BTreeMap;
use std::net::IpAddr;

const ENDPOINT_KEYS: &[&str] = &[
    "aliases",
    "ipv4_address",
    "ipv6_address",
    "link_local_ips",
    "driver_opts",
    "priority",
];
/// Compose keys of an endpoint that need a newer Engine API than the 1.41 the reconciler speaks.
const ENDPOINT_NEWER_API: &[(&str, &str)] = &[
    ("mac_address", "1.44 (Engine 25)"),
    ("gw_priority", "1.48 (Engine 28)"),
    ("interface_name", "1.49 (Engine 28.1)"),
];

/// The networks a service joins: aliases by network key, and the endpoint settings of those
/// that ask for more.
#[derive(Default)]
pub(super) struct ServiceNetworks {
    pub(super) aliases: BTreeMap<String, Vec<String>>,
    pub(super) endpoints: BTreeMap<String, EndpointSpec>,
}

impl Cx<'_> {
    pub(super) fn service_networks(
        &mut self,
        node: &Node,
        key: &str,
        declared: &BTreeMap<String, NetworkDef>,
    ) -> ServiceNetworks {
        let mut out = ServiceNetworks::default();
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
                            out.aliases.insert(name, Vec::new());
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
                    let path = join(key, &name);
                    let (aliases, endpoint) = match v.value {
                        Value::Null => (Vec::new(), EndpointSpec::default()),
                        _ => self.endpoint(v, &path, &declared[&name]),
                    };
                    if endpoint != EndpointSpec::default() {
                        out.endpoints.insert(name.clone(), endpoint);
                    }
                    out.aliases.insert(name, aliases);
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

    /// One network's long form: aliases (sorted, no repeats) and the endpoint settings.
    fn endpoint(
        &mut self,
        node: &Node,
        path: &str,
        network: &NetworkDef,
    ) -> (Vec<String>, EndpointSpec) {
        let mut endpoint = EndpointSpec::default();
        let Some(fields) = self.map(node, path) else {
            return (Vec::new(), endpoint);
        };
        let newer: Vec<&str> = ENDPOINT_NEWER_API.iter().map(|(k, _)| *k).collect();
        self.check_keys_refusing(fields, path, ENDPOINT_KEYS, &newer);
        for (k, _) in fields {
            if let Some((field, api)) = ENDPOINT_NEWER_API
                .iter()
                .find(|(field, _)| *field == k.key_text())
            {
                self.problem(k, &join(path, field), format!("'{field}' is a Compose key the reconciler cannot apply: it needs Docker Engine API {api}, and the reconciler speaks API 1.41"));
            }
        }
        let key = |k: &str| join(path, k);
        let mut aliases = node
            .get("aliases")
            .and_then(|a| self.string_or_list(a, &key("aliases")))
            .unwrap_or_default();
        aliases.sort();
        aliases.dedup();
        if let Some(n) = node.get("ipv4_address") {
            endpoint.ipv4_address = self.fixed_address(n, &key("ipv4_address"), network, false);
        }
        if let Some(n) = node.get("ipv6_address") {
            endpoint.ipv6_address = self.fixed_address(n, &key("ipv6_address"), network, true);
        }
        if let Some(n) = node.get("link_local_ips") {
            let lkey = key("link_local_ips");
            endpoint.link_local_ips = self.string_or_list(n, &lkey).unwrap_or_default();
            for ip in &endpoint.link_local_ips {
                if parse_address(ip).is_none() {
                    self.problem(n, &lkey, format!("'{ip}' is not an IP address"));
                }
            }
            endpoint.link_local_ips.sort();
            endpoint.link_local_ips.dedup();
        }
        if let Some(n) = node.get("driver_opts") {
            endpoint.driver_opts = self.string_map(n, &key("driver_opts"));
        }
        if let Some(n) = node.get("priority") {
            endpoint.priority = self.integer(n, &key("priority"));
        }
        (aliases, endpoint)
    }

    /// `ipv4_address`/`ipv6_address`: an address of that family, inside a subnet the stack set
    /// for the network (the engine gives a fixed address only on such a network).
    fn fixed_address(
        &mut self,
        node: &Node,
        key: &str,
        network: &NetworkDef,
        v6: bool,
    ) -> Option<String> {
        let text = self.string(node, key)?;
        let family = if v6 { "IPv6" } else { "IPv4" };
        match parse_address(&text) {
            Some(IpAddr::V4(_)) if !v6 => {}
            Some(IpAddr::V6(_)) if v6 => {}
            _ => {
                self.problem(node, key, format!("'{text}' is not an {family} address"));
                return None;
            }
        }
        // An external network's subnets are the engine's to tell, not the file's.
        if network.external {
            return Some(text);
        }
        if v6 && !network.enable_ipv6 {
            self.problem(
                node,
                key,
                "a fixed IPv6 address needs `enable_ipv6: true` on the network",
            );
            return None;
        }
        let subnets: Vec<&str> = network
            .ipam
            .iter()
            .flat_map(|i| &i.config)
            .filter_map(|p| p.subnet.as_deref())
            .collect();
        if !subnets.iter().any(|s| subnet_contains(s, &text)) {
            let message = if subnets.is_empty() {
                "a fixed address needs a subnet set for the network (`ipam: {config: [{subnet: ...}]}`): the engine gives fixed addresses only on such networks".to_string()
            } else {
                format!(
                    "'{text}' is not in the network's {family} subnets ({})",
                    subnets.join(", ")
                )
            };
            self.problem(node, key, message);
            return None;
        }
        Some(text)
    }
}
