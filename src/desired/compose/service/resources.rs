//! A service's resource keys beyond `mem_limit`/`cpus`: CPU shares, sets, periods and quotas,
//! memory reservation and swap, the OOM killer, PIDs, `/dev/shm`, `ulimits` and `blkio_config`.

use crate::desired::compose::parse::parse_duration;
use crate::desired::compose::{join, Cx};
use crate::desired::model::{BlkioSpec, ContainerSpec, DeviceRate, ResourceSpec, UlimitSpec};
use crate::desired::yaml::{Node, Value};
use std::collections::BTreeMap;

/// The resource limits the kernel knows (`ulimit -a`), as the engine names them.
const ULIMIT_NAMES: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

impl Cx<'_> {
    pub(super) fn resources(&mut self, node: &Node, path: &str) -> ResourceSpec {
        let key = |k: &str| join(path, k);
        let mut r = ResourceSpec::default();
        if let Some(n) = node.get("cpu_shares") {
            r.cpu_shares = self.ranged(n, &key("cpu_shares"), 0, i64::from(u32::MAX));
        }
        if let Some(n) = node.get("cpuset") {
            r.cpuset = self.cpuset(n, &key("cpuset"));
        }
        // The kernel's CFS bounds: a period of 1ms to 1s, a quota of at least 1ms (-1: none).
        for (field, slot, min, max) in [
            ("cpu_period", &mut r.cpu_period, 1000, 1_000_000),
            ("cpu_quota", &mut r.cpu_quota, 1000, i64::MAX),
            ("cpu_rt_period", &mut r.cpu_rt_period, 1, i64::MAX),
            ("cpu_rt_runtime", &mut r.cpu_rt_runtime, -1, i64::MAX),
        ] {
            if let Some(n) = node.get(field) {
                let k = key(field);
                *slot = self.microseconds(n, &k).filter(|v| {
                    let ok = (min..=max).contains(v) || (field == "cpu_quota" && *v == -1);
                    if !ok {
                        self.problem(
                            n,
                            &k,
                            format!("{v} microseconds is out of range for {field}"),
                        );
                    }
                    ok
                });
            }
        }
        if let Some(n) = node.get("mem_reservation") {
            r.mem_reservation = self.bytes(n, &key("mem_reservation"));
        }
        if let Some(n) = node.get("memswap_limit") {
            r.memswap_limit = self.bytes_or_unlimited(n, &key("memswap_limit"));
        }
        if let Some(n) = node.get("mem_swappiness") {
            r.mem_swappiness = self.ranged(n, &key("mem_swappiness"), 0, 100);
        }
        if let Some(n) = node.get("oom_kill_disable") {
            r.oom_kill_disable = self.bool(n, &key("oom_kill_disable")).unwrap_or(false);
        }
        if let Some(n) = node.get("oom_score_adj") {
            r.oom_score_adj = self
                .ranged(n, &key("oom_score_adj"), -1000, 1000)
                .filter(|v| *v != 0);
        }
        if let Some(n) = node.get("pids_limit") {
            r.pids_limit = self.pids_limit(n, &key("pids_limit"));
        }
        if let Some(n) = node.get("shm_size") {
            r.shm_size = self.bytes(n, &key("shm_size"));
        }
        if let Some(n) = node.get("ulimits") {
            r.ulimits = self.ulimits(n, &key("ulimits"));
        }
        if let Some(n) = node.get("blkio_config") {
            r.blkio_config = self.blkio(n, &key("blkio_config"));
        }
        r
    }

    /// What the engine would refuse at create, once `deploy` has had its say on the limits:
    /// found now, it is a file to fix rather than a failed release.
    pub(super) fn check_resource_conflicts(
        &mut self,
        node: &Node,
        path: &str,
        spec: &ContainerSpec,
    ) {
        let r = &spec.resources;
        let at = |field: &str| node.get(field).unwrap_or(node);
        if let Some(swap) = r.memswap_limit.filter(|s| *s > 0) {
            match spec.mem_limit {
                None => self.problem(at("memswap_limit"), &join(path, "memswap_limit"), "memswap_limit needs mem_limit (or deploy.resources.limits.memory): it is the limit of memory and swap together"),
                Some(memory) if swap < memory => self.problem(at("memswap_limit"), &join(path, "memswap_limit"), "memswap_limit is memory and swap together: it cannot be below mem_limit"),
                _ => {}
            }
        }
        if let (Some(reservation), Some(memory)) = (r.mem_reservation, spec.mem_limit) {
            if reservation > memory {
                self.problem(
                    at("mem_reservation"),
                    &join(path, "mem_reservation"),
                    "mem_reservation cannot be above mem_limit",
                );
            }
        }
        if spec.nano_cpus.is_some() {
            for field in ["cpu_period", "cpu_quota"] {
                if node.get(field).is_some() {
                    self.problem(at(field), &join(path, field), format!("{field} cannot be set together with cpus (or deploy.resources.limits.cpus): the engine takes one or the other"));
                }
            }
        }
    }

    /// A whole number within `min..=max`.
    pub(super) fn ranged(&mut self, node: &Node, key: &str, min: i64, max: i64) -> Option<i64> {
        let v: i64 = self.integer(node, key)?;
        if (min..=max).contains(&v) {
            Some(v)
        } else {
            self.problem(
                node,
                key,
                format!("{v} is out of range: write a whole number from {min} to {max}"),
            );
            None
        }
    }

    /// `0-3,5`: CPU numbers and ranges.
    fn cpuset(&mut self, node: &Node, key: &str) -> Option<String> {
        let s = self.string(node, key)?;
        let valid = !s.is_empty()
            && s.split(',').all(|part| {
                let mut ends = part.splitn(2, '-');
                ends.all(|n| !n.is_empty() && n.len() <= 5 && n.bytes().all(|b| b.is_ascii_digit()))
            });
        if valid {
            Some(s)
        } else {
            self.problem(
                node,
                key,
                format!("'{s}' is not a set of CPUs (write e.g. 0-3 or 0,2)"),
            );
            None
        }
    }

    /// Microseconds as a whole number, or a duration (`400ms`), as Compose reads the CPU
    /// period, quota and realtime keys.
    fn microseconds(&mut self, node: &Node, key: &str) -> Option<i64> {
        let s = self.string(node, key)?;
        if let Ok(v) = s.parse::<i64>() {
            if v >= -1 {
                return Some(v);
            }
        } else if let Some(d) = parse_duration(&s) {
            return i64::try_from(d.as_micros()).ok();
        }
        self.problem(
            node,
            key,
            format!(
                "'{s}' is not a number of microseconds or a duration (write e.g. 100000 or 100ms)"
            ),
        );
        None
    }

    /// A size, or -1 for no limit.
    fn bytes_or_unlimited(&mut self, node: &Node, key: &str) -> Option<i64> {
        if let Value::Scalar { text, .. } = &node.value {
            if text.trim() == "-1" {
                return Some(-1);
            }
        }
        self.bytes(node, key)
    }

    /// -1 (unlimited) or a positive count; 0 means unset, as in Compose.
    fn pids_limit(&mut self, node: &Node, key: &str) -> Option<i64> {
        let v: i64 = self.integer(node, key)?;
        match v {
            0 => None,
            -1 => Some(-1),
            v if v > 0 => Some(v),
            _ => {
                self.problem(
                    node,
                    key,
                    format!("{v} is not a PIDs limit: write -1 (unlimited) or a positive number"),
                );
                None
            }
        }
    }

    /// `ulimits: {nofile: {soft: 1024, hard: 4096}, nproc: 512}`.
    fn ulimits(&mut self, node: &Node, key: &str) -> BTreeMap<String, UlimitSpec> {
        let mut out = BTreeMap::new();
        let Some(entries) = self.map(node, key) else {
            return out;
        };
        for (k, v) in entries {
            let name = k.key_text();
            let path = join(key, name);
            if !ULIMIT_NAMES.contains(&name) {
                self.problem(
                    k,
                    &path,
                    format!("'{name}' is not a ulimit ({})", ULIMIT_NAMES.join(", ")),
                );
                continue;
            }
            let limit = match &v.value {
                Value::Map(fields) => {
                    self.check_keys(fields, &path, &["soft", "hard"]);
                    let mut read = |field: &str| match v.get(field) {
                        Some(n) => self.integer::<i64>(n, &join(&path, field)),
                        None => {
                            self.problem(v, &path, "a ulimit mapping needs both 'soft' and 'hard'");
                            None
                        }
                    };
                    match (read("soft"), read("hard")) {
                        (Some(soft), Some(hard)) => UlimitSpec { soft, hard },
                        _ => continue,
                    }
                }
                _ => match self.integer::<i64>(v, &path) {
                    Some(n) => UlimitSpec { soft: n, hard: n },
                    None => continue,
                },
            };
            // -1 is "unlimited" to the engine, above every number.
            let rank = |n: i64| if n < 0 { i64::MAX } else { n };
            if limit.soft < -1 || limit.hard < -1 || rank(limit.soft) > rank(limit.hard) {
                self.problem(
                    v,
                    &path,
                    format!(
                        "soft limit {} must not exceed hard limit {} (-1 is unlimited)",
                        limit.soft, limit.hard
                    ),
                );
                continue;
            }
            out.insert(name.to_string(), limit);
        }
        out
    }

    fn blkio(&mut self, node: &Node, key: &str) -> Option<BlkioSpec> {
        let entries = self.map(node, key)?;
        const LISTS: [&str; 5] = [
            "weight_device",
            "device_read_bps",
            "device_read_iops",
            "device_write_bps",
            "device_write_iops",
        ];
        let allowed: Vec<&str> = std::iter::once("weight").chain(LISTS).collect();
        self.check_keys(entries, key, &allowed);
        let mut spec = BlkioSpec::default();
        if let Some(n) = node.get("weight") {
            spec.weight = self
                .ranged(n, &join(key, "weight"), 10, 1000)
                .map(|w| w as u16);
        }
        for field in LISTS {
            let Some(n) = node.get(field) else { continue };
            let list = self.device_rates(n, &join(key, field), field);
            match field {
                "weight_device" => spec.weight_device = list,
                "device_read_bps" => spec.device_read_bps = list,
                "device_read_iops" => spec.device_read_iops = list,
                "device_write_bps" => spec.device_write_bps = list,
                _ => spec.device_write_iops = list,
            }
        }
        Some(spec)
    }

    /// `[{path: /dev/sda, rate: 12mb}]` (or `weight:` for `weight_device`), sorted by path.
    fn device_rates(&mut self, node: &Node, key: &str, field: &str) -> Vec<DeviceRate> {
        // By path: a device given twice takes the later value, as Compose merges these lists.
        let mut out: BTreeMap<String, i64> = BTreeMap::new();
        let Value::Seq(items) = &node.value else {
            self.problem(node, key, format!("expected a list, found {}", node.kind()));
            return Vec::new();
        };
        let value_key = if field == "weight_device" {
            "weight"
        } else {
            "rate"
        };
        for (i, item) in items.iter().enumerate() {
            let k = format!("{key}[{i}]");
            let Some(fields) = self.map(item, &k) else {
                continue;
            };
            self.check_keys(fields, &k, &["path", value_key]);
            let path = item
                .get("path")
                .and_then(|p| self.string(p, &join(&k, "path")));
            let vkey = join(&k, value_key);
            let rate = match item.get(value_key) {
                None => None,
                Some(n) if field == "weight_device" => self.ranged(n, &vkey, 10, 1000),
                Some(n) if field.ends_with("_bps") => self.bytes(n, &vkey),
                Some(n) => self.ranged(n, &vkey, 0, i64::MAX),
            };
            match (path, rate) {
                (Some(path), Some(rate)) if path.starts_with('/') => {
                    out.insert(path, rate);
                }
                (Some(path), Some(_)) => self.problem(
                    item,
                    &k,
                    format!("'{path}' is not a device path (write e.g. /dev/sda)"),
                ),
                (None, _) if item.get("path").is_none() => self.problem(
                    item,
                    &k,
                    format!("each entry needs 'path' and '{value_key}'"),
                ),
                (_, None) if item.get(value_key).is_none() => self.problem(
                    item,
                    &k,
                    format!("each entry needs 'path' and '{value_key}'"),
                ),
                _ => {}
            }
        }
        out.into_iter()
            .map(|(path, rate)| DeviceRate { path, rate })
            .collect()
    }
}
