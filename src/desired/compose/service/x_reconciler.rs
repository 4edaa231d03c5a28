//! A service's `x-reconciler:` settings for replacing it (`health_timeout`, `min_ready`), its
//! `http_probe`, which may reach only the service's own port on loopback, and its `pre_deploy`
//! job.

use crate::desired::compose::{join, Cx};
use crate::desired::model::{PortSpec, PreDeploy, Service};
use crate::desired::yaml::Node;

impl Cx<'_> {
    pub(super) fn x_reconciler(&mut self, node: &Node, key: &str, service: &mut Service) {
        let Some(entries) = self.map(node, key) else {
            return;
        };
        self.check_keys(
            entries,
            key,
            &["health_timeout", "min_ready", "http_probe", "pre_deploy"],
        );
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
        if let Some(n) = node.get("pre_deploy") {
            service.pre_deploy = self.pre_deploy(n, &join(key, "pre_deploy"));
        }
    }

    /// `pre_deploy: { command: [...] or "a string", timeout: 5m }`; the command is repository
    /// input, so its size is bounded, and so is the timeout.
    fn pre_deploy(&mut self, node: &Node, key: &str) -> Option<PreDeploy> {
        let entries = self.map(node, key)?;
        self.check_keys(entries, key, &["command", "timeout"]);
        let command_key = join(key, "command");
        let command = match node.get("command") {
            None => {
                self.problem(
                    node,
                    key,
                    "pre_deploy needs a command (a list of words or a string)",
                );
                None
            }
            Some(n) => {
                self.command(n, &command_key)
                    .and_then(|words| match command_refusal(&words) {
                        None => Some(words),
                        Some(why) => {
                            self.problem(n, &command_key, why);
                            None
                        }
                    })
            }
        };
        let mut timeout = PreDeploy::DEFAULT_TIMEOUT;
        if let Some(n) = node.get("timeout") {
            let timeout_key = join(key, "timeout");
            match self.duration(n, &timeout_key)? {
                d if d.is_zero() || d > PreDeploy::MAX_TIMEOUT => {
                    self.problem(
                        n,
                        &timeout_key,
                        "the timeout must be more than 0s and at most 24h",
                    );
                    return None;
                }
                d => timeout = d,
            }
        }
        Some(PreDeploy {
            command: command?,
            timeout,
        })
    }
}

fn command_refusal(words: &[String]) -> Option<String> {
    let bytes: usize = words.iter().map(|w| w.len() + 1).sum();
    if words.is_empty() || words[0].is_empty() {
        Some("the command is empty; give the program to run and its arguments".into())
    } else if words.len() > PreDeploy::MAX_COMMAND_WORDS || bytes > PreDeploy::MAX_COMMAND_BYTES {
        Some(format!(
            "the command is too long (at most {} words and {} KiB); put a long script in the image",
            PreDeploy::MAX_COMMAND_WORDS,
            PreDeploy::MAX_COMMAND_BYTES / 1024
        ))
    } else {
        None
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
