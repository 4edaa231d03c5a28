//! How a service's container is named and reached beyond its network aliases: `dns`,
//! `dns_opt`, `dns_search`, `domainname`, `expose`, `links` and `external_links`.
//!
//! `links` name services of the stack; they are written here as `SERVICE:ALIAS` and turned
//! into `CONTAINER:ALIAS` once every service is known ([`Cx::resolve_service_references`]).

use crate::desired::compose::{join, valid_service_name, Cx};
use crate::desired::model::{ContainerSpec, NetworkingSpec};
use crate::desired::yaml::Node;
use std::net::IpAddr;

impl Cx<'_> {
    pub(super) fn addressing(
        &mut self,
        node: &Node,
        path: &str,
        spec: &ContainerSpec,
    ) -> NetworkingSpec {
        let key = |k: &str| join(path, k);
        let mut n = NetworkingSpec::default();
        if let Some(v) = node.get("dns") {
            n.dns = self.dns_servers(v, &key("dns"));
        }
        if let Some(v) = node.get("dns_opt") {
            n.dns_opt = self.sorted_strings(v, &key("dns_opt"));
        }
        if let Some(v) = node.get("dns_search") {
            n.dns_search = self.domains(v, &key("dns_search"));
        }
        if let Some(v) = node.get("domainname") {
            let k = key("domainname");
            n.domainname = self.string(v, &k).filter(|d| {
                let valid = valid_domain(d);
                if !valid {
                    self.problem(v, &k, format!("'{d}' is not a domain name"));
                }
                valid
            });
        }
        if let Some(v) = node.get("expose") {
            n.expose = self.expose(v, &key("expose"));
        }
        for field in ["links", "external_links"] {
            let Some(v) = node.get(field) else { continue };
            let k = key(field);
            if let Some(mode) = spec.network_mode.as_deref().filter(|m| {
                *m == "host"
                    || *m == "none"
                    || m.starts_with("container:")
                    || m.starts_with("service:")
            }) {
                self.problem(v, &k, format!("'{field}' cannot be used with network_mode: {mode}: a link is a name on the container's own network"));
                continue;
            }
            let links = self.links(v, &k, field == "links");
            match field {
                "links" => n.links = links,
                _ => n.external_links = links,
            }
        }
        n
    }

    /// DNS servers in the order given, each an IP address.
    fn dns_servers(&mut self, node: &Node, key: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for server in self.string_or_list(node, key).unwrap_or_default() {
            if server.parse::<IpAddr>().is_err() {
                self.problem(node, key, format!("'{server}' is not an IP address"));
            } else if !out.contains(&server) {
                out.push(server);
            }
        }
        out
    }

    /// Search domains in the order given.
    fn domains(&mut self, node: &Node, key: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for domain in self.string_or_list(node, key).unwrap_or_default() {
            if !valid_domain(&domain) {
                self.problem(node, key, format!("'{domain}' is not a domain name"));
            } else if !out.contains(&domain) {
                out.push(domain);
            }
        }
        out
    }

    /// `expose`: `PORT`, `START-END`, either with `/tcp`, `/udp` or `/sctp`; sorted.
    fn expose(&mut self, node: &Node, key: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (item, k, text) in self.located_strings(node, key, "a list of ports") {
            match parse_expose(&text) {
                Ok(port) => {
                    if self.spend_ports(item, &k, expose_count(&port)) {
                        out.push(port);
                    }
                }
                Err(e) => self.problem(item, &k, e),
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// `NAME[:ALIAS]` entries as `NAME:ALIAS`, sorted; `NAME` is a service of the stack for
    /// `links`, a container for `external_links`.
    fn links(&mut self, node: &Node, key: &str, services: bool) -> Vec<String> {
        let mut out = Vec::new();
        for (item, k, text) in self.located_strings(node, key, "a list") {
            let (name, alias) = text.split_once(':').unwrap_or((&text, &text));
            let name_ok = if services {
                valid_service_name(name)
            } else {
                valid_container_name(name)
            };
            if !name_ok || !valid_container_name(alias) {
                let what = if services {
                    "SERVICE[:ALIAS]"
                } else {
                    "CONTAINER[:ALIAS]"
                };
                self.problem(item, &k, format!("'{text}' is not a link (write {what})"));
                continue;
            }
            out.push(format!("{name}:{alias}"));
        }
        out.sort();
        out.dedup();
        out
    }
}

fn parse_expose(text: &str) -> Result<String, String> {
    let (ports, protocol) = match text.split_once('/') {
        Some((p, proto)) if matches!(proto, "tcp" | "udp" | "sctp") => (p, proto),
        Some((_, proto)) => return Err(format!("unknown protocol '{proto}' (tcp, udp, sctp)")),
        None => (text, "tcp"),
    };
    let port = |s: &str| match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("'{s}' is not a port number (1-65535)")),
    };
    match ports.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            match a.cmp(&b) {
                std::cmp::Ordering::Less => Ok(format!("{a}-{b}/{protocol}")),
                std::cmp::Ordering::Equal => Ok(format!("{a}/{protocol}")),
                std::cmp::Ordering::Greater => Err(format!("port range {a}-{b} runs backwards")),
            }
        }
        None => Ok(format!("{}/{protocol}", port(ports)?)),
    }
}

/// How many ports an `expose` entry (`80/tcp`, `8000-8010/tcp`) stands for.
fn expose_count(port: &str) -> usize {
    let ports = port.split('/').next().unwrap_or(port);
    ports
        .split_once('-')
        .and_then(|(a, b)| Some(b.parse::<usize>().ok()?.saturating_sub(a.parse().ok()?) + 1))
        .unwrap_or(1)
}

/// What the engine accepts as a container name or alias.
fn valid_container_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= 255
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn valid_domain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}
