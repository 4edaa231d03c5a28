//! A service's `x-reconciler:` settings for replacing it (`health_timeout`, `min_ready`), its
//! `http_probe`, which may reach only the service's own port on loopback, its `pre_deploy` job,
//! and the volumes it backs up before its container is replaced (`backup`, `backup_keep`).

use crate::desired::compose::{join, Cx};
use crate::desired::model::{
    PortSpec, PreDeploy, Service, VolumeDef, VolumeMount, MAX_BACKUP_KEEP,
};
use crate::desired::yaml::Node;
use std::collections::BTreeMap;

impl Cx<'_> {
    pub(super) fn x_reconciler(
        &mut self,
        node: &Node,
        key: &str,
        service: &mut Service,
        volumes: &BTreeMap<String, VolumeDef>,
    ) {
        let Some(entries) = self.map(node, key) else {
            return;
        };
        self.check_keys(
            entries,
            key,
            &[
                "health_timeout",
                "min_ready",
                "http_probe",
                "backup",
                "backup_keep",
                "pre_deploy",
            ],
        );
        if let Some(n) = node.get("backup") {
            service.backup = self.backup_volumes(n, &join(key, "backup"), volumes);
        }
        if let Some(n) = node.get("backup_keep") {
            let k = join(key, "backup_keep");
            match self.integer::<u32>(n, &k) {
                Some(keep) if (1..=MAX_BACKUP_KEEP).contains(&keep) => service.backup_keep = keep,
                Some(keep) => self.problem(
                    n,
                    &k,
                    format!("backup_keep must be 1 to {MAX_BACKUP_KEEP}, found {keep}"),
                ),
                None => {}
            }
        }
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

impl Cx<'_> {
    /// Keys of the stack's `volumes:` whose data is on the host to copy: a tmpfs volume holds
    /// nothing once stopped, and an external one is not the stack's to put back.
    fn backup_volumes(
        &mut self,
        node: &Node,
        key: &str,
        volumes: &BTreeMap<String, VolumeDef>,
    ) -> Vec<String> {
        let mut kept = Vec::new();
        for (item, k, name) in self.located_strings(node, key, "a list of volume names") {
            let refusal = match volumes.get(&name) {
                None => Some(format!(
                    "'{name}' is not a volume of this stack's top-level `volumes:`"
                )),
                Some(v) if v.external => Some(format!(
                    "'{name}' is external: it is not this stack's to back up and restore"
                )),
                Some(v) if v.driver.as_deref().is_some_and(|d| d != "local") => Some(format!(
                    "'{name}' uses the volume driver '{}': only local volumes are backed up",
                    v.driver.as_deref().unwrap_or_default()
                )),
                Some(v) if v.driver_opts.get("type").is_some_and(|t| t == "tmpfs") => Some(
                    format!("'{name}' is a tmpfs: it holds no data to copy once stopped"),
                ),
                Some(v) if !matches!(v.host_mount(), VolumeMount::Nothing) => Some(format!(
                    "'{name}' mounts a host path or filesystem: back that up where it lives"
                )),
                // Its backups live in a folder named after it: never a path.
                Some(_) if crate::state::check_volume_key(&name).is_err() => Some(format!(
                    "'{name}' cannot name a backup folder: a backed-up volume's key starts with a letter or digit and holds only letters, digits, '.', '-' and '_'"
                )),
                Some(_) if kept.contains(&name) => Some(format!("'{name}' is listed twice")),
                Some(_) => None,
            };
            match refusal {
                Some(why) => self.problem(item, &k, why),
                None => kept.push(name),
            }
        }
        kept
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
