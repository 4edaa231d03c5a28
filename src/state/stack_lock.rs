//! `locks/<stack>.lock`: held by a pass while it changes a stack and by `reconciler restore`
//! while it puts a volume back, so neither touches containers the other is working on. flock(2):
//! the kernel releases it when the holder dies, so nothing goes stale.

use super::{StateDir, StateError};
use std::fs;
use std::os::fd::AsRawFd;

/// Released when dropped. Also what holds the runbook counters' lock file.
#[derive(Debug)]
pub struct StackLock {
    file: fs::File,
}

impl StackLock {
    /// Hold `file`'s lock, waiting while another process has it.
    pub(super) fn wait_for(file: fs::File) -> std::io::Result<Self> {
        // SAFETY: as in Drop.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self { file })
    }
}

impl Drop for StackLock {
    fn drop(&mut self) {
        // SAFETY: the descriptor is valid while `file` lives.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

impl StateDir {
    /// The stack's lock, or `None` when another process holds it now. `stack` is a checked name.
    pub fn try_lock_stack(&self, stack: &str) -> Result<Option<StackLock>, StateError> {
        let dir = self.root.join("locks");
        fs::create_dir_all(&dir).map_err(self.io(&dir))?;
        let path = dir.join(format!("{stack}.lock"));
        let file = self.open_lock_file(&path)?;
        // SAFETY: as in Drop.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(Some(StackLock { file }));
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Ok(None);
        }
        Err(self.io(&path)(e))
    }
}
