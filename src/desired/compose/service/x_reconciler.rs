//! A service's `x-reconciler:` settings for replacing it (`health_timeout`, `min_ready`) and
//! its `http_probe`, which may reach only the service's own port on loopback.

use crate::desired::compose::{join, Cx};
use crate::desired::model::{PortSpec, Service};
use crate::desired::yaml::Node;

impl Cx<'_> {
    pub(super) fn x_reconciler(&mut self, node: &Node, key: &str, service: &mut Service) {
        let Some(entries) = self.map(node, key) else {
            return;
        };
        self.check_keys(entries, key, &["health_timeout", "min_ready", "http_probe"]);
        if let Some(n) = node.get("health_timeout") {
            if let Some(d) = self.duration(n, &join(key, "health_timeout")) {
                service.health_timeout = d;
            }
        }
        if let Some(n) = node.get("min_ready") {
            if let Some(d) = self.duration(n, &join(key, "min_ready")) {
                service.min_ready = d;
            }
        }
        if let Some(n) = node.get("http_probe") {
            if let Some(url) = self.string(n, &join(key, "http_probe")) {
                match probe_refusal(&url, &service.spec.ports) {
                    None => service.http_probe = Some(url),
                    Some(why) => self.problem(n, &join(key, "http_probe"), why),
                }
            }
        }
    }
}

/// The probe is sent from the host, as root, on the host's network: it may reach the service's
/// own published port on loopback and nothing else, and its path is sent as it is, so it must be
/// plain visible ASCII (a CR/LF would let the file write its own HTTP requests).
fn probe_refusal(url: &str, ports: &[PortSpec]) -> Option<String> {
    let usage = "http_probe must be http://127.0.0.1:PORT/PATH (or localhost, [::1]) with a port this service publishes";
    let Some(rest) = url.strip_prefix("http://") else {
        return Some(usage.to_string());
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Some(format!(
            "{usage}: the path may hold visible ASCII only, no space or control character"
        ));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse::<u16>().ok()),
        None => (authority, Some(80)),
    };
    if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
        return Some(format!("{usage}: '{host}' is not a loopback host"));
    }
    let Some(port) = port else {
        return Some(format!("{usage}: the port is not a number"));
    };
    // Only a single TCP port the engine publishes on loopback (or on every address): a range or
    // a UDP port would let the probe reach whatever else listens there on the host.
    let published = ports.iter().any(|p| {
        p.protocol == "tcp"
            && p.host_ip
                .as_deref()
                .is_none_or(|ip| matches!(ip, "" | "0.0.0.0" | "::" | "127.0.0.1" | "::1"))
            && p.published.as_deref().and_then(|p| p.parse::<u16>().ok()) == Some(port)
    });
    (!published)
        .then(|| format!("{usage}: this service publishes no single TCP port {port} on loopback"))
}
