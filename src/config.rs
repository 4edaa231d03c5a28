//! Validated settings, built once from flags and environment, and small host facts.

use crate::desired::policy::Policy;
use std::path::{Path, PathBuf};

/// Where the reconciler keeps its state when no `--state-dir` is given.
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
    /// Stacks converged at once (`--parallel-stacks`).
    pub parallel_stacks: usize,
    /// Services of a stack changed at once (`--parallel-services`).
    pub parallel_services: usize,
    /// Good images kept per service by the clean-up after a pass that changed something
    /// (`--keep-images`); 0 switches the clean-up off.
    pub keep_images: usize,
}

/// The host policy from `--allow`, `--bind-root` and `--allowed-registry`; `state_dir` (made
/// absolute, as the engine would see it) and the socket of a `unix://` `docker_host` are guarded
/// as bind sources.
pub fn policy_from_flags(
    allow: &[String],
    bind_roots: &[PathBuf],
    registries: &[String],
    state_dir: &Path,
    docker_host: Option<&str>,
) -> Result<Policy, String> {
    let state_dir = if state_dir.is_absolute() {
        state_dir.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| format!("the current folder cannot be read: {e}"))?
            .join(state_dir)
    };
    let mut policy = Policy {
        bind_roots: bind_roots.to_vec(),
        registries: registries.to_vec(),
        state_dir: Some(state_dir),
        engine_socket: docker_host
            .and_then(|h| h.strip_prefix("unix://"))
            .map(PathBuf::from),
        ..Policy::default()
    };
    for item in allow.iter().flat_map(|a| a.split(',')) {
        policy.allow(item)?;
    }
    Ok(policy)
}
