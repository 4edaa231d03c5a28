//! Small text parsers for Compose's short forms: durations, sizes, command strings, ports,
//! mounts and devices. Pure functions over one string each.

use crate::desired::model::{DeviceSpec, MountKind, MountOptions, MountSpec, PortSpec};
use std::time::Duration;

/// Go-style durations as Compose writes them: `1m30s`, `500ms`, `2h`, `1.5s`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (num, tail) = rest.split_at(num_end);
        let value: f64 = num.parse().ok()?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let factor = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * factor;
        rest = tail;
    }
    // No wait in a Compose file needs a year; beyond it, deadlines computed from it overflow.
    Duration::try_from_secs_f64(total)
        .ok()
        .filter(|d| *d <= MAX_DURATION)
}

/// The longest duration a file may give (grace periods, health waits, watch windows).
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// Byte sizes as Compose writes them: `512m`, `1g`, `1024`, `100kb`.
pub fn parse_bytes(s: &str) -> Option<i64> {
    let s = s.trim().to_ascii_lowercase();
    let digits_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(digits_end);
    let value: f64 = num.parse().ok()?;
    let factor: f64 = match unit.trim_end_matches('b') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((value * factor) as i64)
}

/// A file mode as Compose reads one: a YAML number in any base Go's YAML reader takes (`0440`
/// and `0o440` are octal, `288` decimal), or a quoted string, which is octal.
pub fn parse_mode(text: &str, plain: bool) -> Option<u32> {
    let text = text.trim();
    let octal = |digits: &str| {
        (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| u32::from_str_radix(digits, 8).ok())
            .flatten()
    };
    if let Some(digits) = text.strip_prefix("0o") {
        return octal(digits);
    }
    if !plain {
        return octal(text);
    }
    if let Some(digits) = text.strip_prefix("0x") {
        return u32::from_str_radix(digits, 16).ok();
    }
    if text.len() > 1 && text.starts_with('0') {
        return octal(text);
    }
    text.parse().ok()
}

/// Split a command string into words as a POSIX shell would (quotes and backslashes only).
pub fn shell_split(s: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => word.push(chars.next()?),
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next()?);
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

/// Short port syntax: `[HOST_IP:][HOST[-HOST2]:]CONTAINER[-CONTAINER2][/PROTOCOL]`.
pub fn parse_port(text: &str) -> Result<Vec<PortSpec>, String> {
    let (rest, protocol) = match text.rsplit_once('/') {
        Some((r, p)) if matches!(p, "tcp" | "udp" | "sctp") => (r, p.to_string()),
        Some((_, p)) => return Err(format!("unknown protocol '{p}' (tcp, udp, sctp)")),
        None => (text, "tcp".to_string()),
    };
    // An IPv6 host address is written in brackets: [::1]:8080:80
    let (host_ip, rest) = if let Some(after) = rest.strip_prefix('[') {
        let (ip, tail) = after.split_once("]:").ok_or("unterminated IPv6 address")?;
        (Some(ip.to_string()), tail)
    } else {
        (None, rest)
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (host_ip, published, target) = match (host_ip, parts.as_slice()) {
        (None, [t]) => (None, None, *t),
        (None, [p, t]) => (None, Some(*p), *t),
        (None, [ip, p, t]) => (Some(ip.to_string()), Some(*p), *t),
        (Some(ip), [p, t]) => (Some(ip), Some(*p), *t),
        _ => return Err("expected [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]".into()),
    };
    let published = published.filter(|p| !p.is_empty());
    let targets = port_range(target)?;
    let hosts = match published {
        Some(p) => Some(port_range(p)?),
        None => None,
    };
    let host_ip = host_ip.filter(|ip| !ip.is_empty());
    match hosts {
        // One container port, a range of host ports: the engine binds a free one of them, so
        // replicas of a service each get their own (`8000-8002:80`), as with Compose.
        Some(hosts) if targets.len() == 1 && hosts.len() > 1 => Ok(vec![PortSpec {
            host_ip,
            published: published.map(str::to_string),
            target: targets[0],
            protocol,
        }]),
        Some(hosts) if hosts.len() != targets.len() && hosts.len() != 1 => {
            Err("host and container port ranges differ in length".into())
        }
        Some(hosts) if hosts.len() == targets.len() => Ok(targets
            .iter()
            .zip(hosts)
            .map(|(t, h)| PortSpec {
                host_ip: host_ip.clone(),
                published: Some(h.to_string()),
                target: *t,
                protocol: protocol.clone(),
            })
            .collect()),
        Some(hosts) => Ok(targets
            .iter()
            .map(|t| PortSpec {
                host_ip: host_ip.clone(),
                published: Some(hosts[0].to_string()),
                target: *t,
                protocol: protocol.clone(),
            })
            .collect()),
        None => Ok(targets
            .iter()
            .map(|t| PortSpec {
                host_ip: host_ip.clone(),
                published: None,
                target: *t,
                protocol: protocol.clone(),
            })
            .collect()),
    }
}

fn port_range(text: &str) -> Result<Vec<u16>, String> {
    let parse = |s: &str| {
        s.parse::<u16>()
            .map_err(|_| format!("'{s}' is not a port number"))
    };
    match text.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (parse(a)?, parse(b)?);
            if a > b {
                return Err(format!("port range {a}-{b} runs backwards"));
            }
            Ok((a..=b).collect())
        }
        None => Ok(vec![parse(text)?]),
    }
}

/// Short volume syntax: `SOURCE:TARGET[:MODE]` or an anonymous `TARGET`.
pub fn parse_short_mount(text: &str) -> Result<MountSpec, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => (None, *t, ""),
        [s, t] => (Some(*s), *t, ""),
        [s, t, m] => (Some(*s), *t, *m),
        _ => return Err("expected SOURCE:TARGET[:MODE]".into()),
    };
    let kind = match source {
        None => MountKind::Volume,
        Some(s) if s.starts_with('/') || s.starts_with('.') || s.starts_with('~') => {
            MountKind::Bind
        }
        Some(_) => MountKind::Volume,
    };
    let mut read_only = false;
    let mut options = MountOptions::default();
    for flag in mode.split(',').filter(|f| !f.is_empty()) {
        match flag {
            "ro" => read_only = true,
            // `z`/`Z` were always accepted and not applied; applying them now would change the
            // hash (and recreate) every service that has them. The long form's `selinux` applies.
            "rw" | "z" | "Z" | "nocopy" | "cached" | "delegated" | "consistent" => {}
            p if PROPAGATIONS.contains(&p) && kind == MountKind::Bind => {
                options.propagation = Some(p.to_string())
            }
            p if PROPAGATIONS.contains(&p) => {
                return Err(format!("'{p}' is a bind propagation; a volume has none"))
            }
            other => {
                return Err(format!(
                    "unknown mount mode '{other}' (ro, rw, nocopy, z, Z, or a propagation: {})",
                    PROPAGATIONS.join(", ")
                ))
            }
        }
    }
    Ok(MountSpec {
        target: target.to_string(),
        kind,
        source: source.map(str::to_string),
        read_only,
        repo_relative: None,
        tmpfs_size: None,
        no_copy: mode.split(',').any(|f| f == "nocopy"),
        shared_data: false,
        options,
    })
}

/// How mounts below a bind propagate, as the engine names it.
pub const PROPAGATIONS: &[&str] = &[
    "rprivate", "private", "rshared", "shared", "rslave", "slave",
];

/// Short device syntax, read as the Docker CLI does: `HOST`, `HOST:CONTAINER`,
/// `HOST:PERMISSIONS` or `HOST:CONTAINER:PERMISSIONS`.
pub fn parse_device(text: &str) -> Result<DeviceSpec, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (host, container, permissions) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, p] if valid_device_permissions(p) => (*h, *h, *p),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] => (*h, *c, *p),
        _ => return Err(format!("'{text}': expected HOST[:CONTAINER][:PERMISSIONS]")),
    };
    check_device(host.into(), container.into(), permissions.into())
        .map_err(|e| format!("'{text}': {e}"))
}

pub(super) fn check_device(
    host: String,
    container: String,
    permissions: String,
) -> Result<DeviceSpec, String> {
    if !host.starts_with('/') || !container.starts_with('/') {
        return Err("a device's host and container paths must be absolute (e.g. /dev/fuse)".into());
    }
    if !valid_device_permissions(&permissions) {
        return Err(format!(
            "device permissions '{permissions}' must be some of r, w, m"
        ));
    }
    Ok(DeviceSpec {
        host_path: host,
        container_path: container,
        permissions,
    })
}

fn valid_device_permissions(p: &str) -> bool {
    !p.is_empty() && p.len() <= 3 && p.chars().all(|c| "rwm".contains(c))
}
