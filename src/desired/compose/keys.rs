//! Which keys the reconciler knows: the key tables, and the reports of keys that are
//! unsupported or unknown (with a "did you mean" for a likely typo).

use super::{join, Cx};
use crate::desired::yaml::Node;

const TOP_KEYS: &[&str] = &[
    "name", "services", "volumes", "networks", "secrets", "configs", "version", "include",
];
const TOP_UNSUPPORTED: &[&str] = &["models"];
const SERVICE_KEYS: &[&str] = &[
    "image",
    "pull_policy",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "volumes",
    "networks",
    "healthcheck",
    "restart",
    "depends_on",
    "labels",
    "user",
    "working_dir",
    "hostname",
    "container_name",
    "stop_signal",
    "stop_grace_period",
    "extra_hosts",
    "init",
    "read_only",
    "cap_add",
    "cap_drop",
    "privileged",
    "mem_limit",
    "cpus",
    "logging",
    "deploy",
    "devices",
    "network_mode",
    "pid",
    "ipc",
    // Runtime keys (service/runtime_keys.rs and the files it calls).
    "expose",
    "security_opt",
    "tmpfs",
    "links",
    "external_links",
    "sysctls",
    "ulimits",
    "dns",
    "dns_opt",
    "dns_search",
    "domainname",
    "shm_size",
    "group_add",
    "pids_limit",
    "mem_reservation",
    "memswap_limit",
    "mem_swappiness",
    "oom_kill_disable",
    "oom_score_adj",
    "cpu_shares",
    "cpuset",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "platform",
    "tty",
    "stdin_open",
    "runtime",
    "userns_mode",
    "uts",
    "cgroup",
    "cgroup_parent",
    "storage_opt",
    "device_cgroup_rules",
    "blkio_config",
    "volumes_from",
    "gpus",
    "label_file",
    "attach",
    "develop",
    "isolation",
    "credential_spec",
    "cpu_count",
    "cpu_percent",
    // Applied when the stack's files are assembled (`desired::assemble`).
    "extends",
    "profiles",
    "secrets",
    "configs",
    // Read with `deploy.replicas` (service/replicas.rs).
    "scale",
];
/// Compose keys the reconciler refuses, each with the reason a user needs to act on.
const SERVICE_REFUSED: &[(&str, &str)] = &[
    ("annotations", "Docker Engine 20.10 (API 1.41, which the reconciler speaks) cannot set OCI annotations (they need API 1.43), and runtimes act on them, so they are not dropped silently"),
    ("mac_address", "Docker Engine 20.10 (API 1.41) takes a MAC address only in a container field the reconciler's engine client (bollard 0.21) no longer sends; a fixed address would be silently lost"),
    ("post_start", "lifecycle hooks are not run by the reconciler yet; run the command from the image's entrypoint instead"),
    ("pre_stop", "lifecycle hooks are not run by the reconciler yet; handle the stop signal (stop_signal, stop_grace_period) in the service instead"),
    ("use_api_socket", "it hands the container the Docker API socket and the user's registry credentials; bind the socket explicitly (the host must allow it with --allow docker-socket)"),
    ("provider", "the service's lifecycle is delegated to a Compose plugin binary, which the reconciler does not run"),
    ("models", "AI models are served by Docker Model Runner through Compose, which the reconciler does not drive"),
];
/// Compose keys outside our subset: named as unsupported rather than as typos.
const SERVICE_UNSUPPORTED: &[&str] = &[];

impl Cx<'_> {
    /// Report keys of a mapping that are not in `allowed` (and not `x-*`).
    pub(super) fn check_keys(&mut self, entries: &[(Node, Node)], path: &str, allowed: &[&str]) {
        self.check_keys_refusing(entries, path, allowed, &[]);
    }

    /// As [`Self::check_keys`], where the `refused` keys are reported elsewhere: they are not
    /// unknown and may be suggested for a typo, but are never listed as allowed.
    pub(super) fn check_keys_refusing(
        &mut self,
        entries: &[(Node, Node)],
        path: &str,
        allowed: &[&str],
        refused: &[&str],
    ) {
        let known: Vec<&str> = allowed.iter().chain(refused).copied().collect();
        for (k, _) in entries {
            let key = k.key_text();
            if known.contains(&key) || key.starts_with("x-") {
                continue;
            }
            let message = match suggest(key, &known) {
                Some(s) => format!("unknown key '{key}' (did you mean '{s}'?)"),
                None => format!("unknown key '{key}' (allowed here: {})", allowed.join(", ")),
            };
            self.problem(k, &join(path, key), message);
        }
    }

    /// Top-level keys: Compose features outside the subset are named as such, others as unknown.
    pub(super) fn check_top_keys(&mut self, top: &[(Node, Node)]) {
        for (k, _) in top {
            if TOP_UNSUPPORTED.contains(&k.key_text()) {
                self.problem(
                    k,
                    k.key_text(),
                    format!(
                        "top-level '{}' is not supported by the reconciler",
                        k.key_text()
                    ),
                );
            }
        }
        self.check_keys_refusing(top, "", TOP_KEYS, TOP_UNSUPPORTED);
    }

    /// A service's keys: `build` and the Compose keys outside the subset are refused with a
    /// reason, anything else not in [`SERVICE_KEYS`] is unknown.
    pub(super) fn check_service_keys(&mut self, entries: &[(Node, Node)], path: &str) {
        let has_image = entries.iter().any(|(k, _)| k.key_text() == "image");
        if let Some((k, _)) = entries.iter().find(|(k, _)| k.key_text() == "build") {
            if has_image {
                // Compose builds, then runs `image`; a host has no build context, so it runs
                // the image as pushed.
                self.warn(
                    k,
                    &join(path, "build"),
                    "'build' is ignored: the reconciler deploys `image:` from its registry; build and push it in CI",
                );
            } else {
                self.problem(
                    k,
                    &join(path, "build"),
                    "'build' is not supported: the reconciler runs images from a registry; build and push the image in CI, then set `image:` to its tag or digest",
                );
            }
        }
        for (k, _) in entries {
            if let Some((key, reason)) =
                SERVICE_REFUSED.iter().find(|(key, _)| *key == k.key_text())
            {
                self.problem(
                    k,
                    &join(path, key),
                    format!("'{key}' is not supported: {reason}"),
                );
            }
            if SERVICE_UNSUPPORTED.contains(&k.key_text()) {
                self.problem(
                    k,
                    &join(path, k.key_text()),
                    format!(
                        "'{}' is a Compose key the reconciler does not support",
                        k.key_text()
                    ),
                );
            }
        }
        let allowed: Vec<&str> = SERVICE_KEYS
            .iter()
            .chain(&["x-reconciler"])
            .copied()
            .collect();
        let refused: Vec<&str> = SERVICE_UNSUPPORTED
            .iter()
            .chain(&["build"])
            .copied()
            .chain(SERVICE_REFUSED.iter().map(|(key, _)| *key))
            .collect();
        self.check_keys_refusing(entries, path, &allowed, &refused);
    }
}

/// The closest allowed key within a small edit distance, for "did you mean" hints.
pub(super) fn suggest<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
    // No Compose key is this long: a typo of one is not either, and the distance costs length².
    if key.len() > 40 {
        return None;
    }
    allowed
        .iter()
        .map(|a| (edit_distance(key, a), *a))
        .filter(|(d, a)| *d <= 2.max(a.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
