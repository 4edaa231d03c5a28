//! Validated settings, built once from flags and environment, and small host facts.

use crate::desired::policy::Policy;
use std::path::{Path, PathBuf};

/// Where the reconciler keeps its state when no `--state-dir` is given (DESIGN 4).
pub fn default_state_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/reconciler");
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(dir).join("reconciler");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/state/reconciler"),
        None => PathBuf::from(".reconciler-state"),
    }
}

/// Free bytes on the filesystem holding `path`, if it can be told.
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a valid NUL-terminated string and stat a valid out-pointer.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    (rc == 0).then(|| stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// What `apply` may do, and how it talks.
#[derive(Debug, Clone)]
pub struct ApplySettings {
    pub dry_run: bool,
    pub prune: bool,
    /// Refuse to pull when the engine's disk has less free space than this.
    pub min_free_disk: u64,
    /// Try services whose current spec failed before.
    pub retry_failed: bool,
    /// Start or recreate a managed container that was stopped or removed by hand.
    pub self_heal: bool,
}

pub fn policy_from_flags(
    allow: &[String],
    bind_roots: &[PathBuf],
    registries: &[String],
) -> Result<Policy, String> {
    let mut policy = Policy {
        bind_roots: bind_roots.to_vec(),
        registries: registries.to_vec(),
        ..Policy::default()
    };
    for item in allow.iter().flat_map(|a| a.split(',')) {
        match item.trim() {
            "privileged" => policy.allow_privileged = true,
            "host-namespaces" => policy.allow_host_namespaces = true,
            "docker-socket" => policy.allow_docker_socket = true,
            "system-binds" => policy.allow_system_binds = true,
            other => {
                return Err(format!(
                    "--allow {other}: expected privileged, host-namespaces, docker-socket or system-binds"
                ))
            }
        }
    }
    Ok(policy)
}
