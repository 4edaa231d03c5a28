//! What the runbook steps leave for `status`, `/status` and `/metrics`, in the state dir so the
//! loop and a command run by hand (`reconciler restore`) both show:
//! - `activity/<stack>/<service>.json`: what is going on for a service right now (a backup, a
//!   migration job, a watch window, a restore); an entry whose process is gone is ignored;
//! - `counters.json`: how many backups, restores, jobs and watch-window failures there were.

use super::{StateDir, StateError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;

/// What a service is doing now, beyond its container's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivityKind {
    /// Copying named volumes before its container is replaced.
    BackingUp,
    /// Its `pre_deploy` job runs.
    Migrating,
    /// Its new container is inside the `deploy.update_config.monitor` window.
    Watching,
    /// `reconciler restore` puts a volume back.
    Restoring,
}

impl ActivityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BackingUp => "backing up",
            Self::Migrating => "migrating",
            Self::Watching => "watching",
            Self::Restoring => "restoring",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    pub kind: ActivityKind,
    /// What exactly, for people: the volume, the job's command's first word, the container.
    pub detail: String,
    /// RFC 3339.
    pub since: String,
    /// RFC 3339, when the activity has a known end (a watch window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// The process doing it: an entry left by a process that is gone is stale.
    pub pid: u32,
}

impl Activity {
    pub fn now(kind: ActivityKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            since: super::now_rfc3339(),
            until: None,
            pid: std::process::id(),
        }
    }

    /// One line for a table: `watching web-1 until 12:00:30Z`.
    pub fn summary(&self) -> String {
        match &self.until {
            Some(until) => format!("{} {} until {until}", self.kind.as_str(), self.detail),
            None => format!(
                "{} {} since {}",
                self.kind.as_str(),
                self.detail,
                self.since
            ),
        }
    }
}

/// A service's activity, as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceActivity {
    pub stack: String,
    pub service: String,
    #[serde(flatten)]
    pub activity: Activity,
}

/// The runbook counters shown on `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RunbookCounter {
    BackupOk,
    BackupFailed,
    RestoreOk,
    RestoreFailed,
    JobOk,
    JobFailed,
    WindowFailure,
}

impl RunbookCounter {
    pub const ALL: [Self; 7] = [
        Self::BackupOk,
        Self::BackupFailed,
        Self::RestoreOk,
        Self::RestoreFailed,
        Self::JobOk,
        Self::JobFailed,
        Self::WindowFailure,
    ];

    /// The key in `counters.json`.
    pub fn key(self) -> &'static str {
        match self {
            Self::BackupOk => "backup_ok",
            Self::BackupFailed => "backup_failed",
            Self::RestoreOk => "restore_ok",
            Self::RestoreFailed => "restore_failed",
            Self::JobOk => "job_ok",
            Self::JobFailed => "job_failed",
            Self::WindowFailure => "window_failure",
        }
    }
}

/// Counts by [`RunbookCounter::key`].
pub type Counts = BTreeMap<String, u64>;

impl StateDir {
    fn activity_file(&self, stack: &str, service: &str) -> std::path::PathBuf {
        self.root
            .join("activity")
            .join(stack)
            .join(format!("{service}.json"))
    }

    /// Say what a service is doing now (`Some`) or that it is done (`None`). `stack` and
    /// `service` are names the loader checked.
    pub fn set_activity(
        &self,
        stack: &str,
        service: &str,
        activity: Option<&Activity>,
    ) -> Result<(), StateError> {
        let path = self.activity_file(stack, service);
        let Some(activity) = activity else {
            return match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(self.io(&path)(e)),
                _ => Ok(()),
            };
        };
        let dir = path.parent().expect("an activity file is in a folder");
        fs::create_dir_all(dir).map_err(self.io(dir))?;
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(activity).expect("an activity serializes");
        fs::write(&tmp, bytes).map_err(self.io(&tmp))?;
        fs::rename(&tmp, &path).map_err(self.io(&path))
    }

    /// What services are doing now, by stack and service; entries of processes that are gone
    /// (a crash) are left out.
    pub fn activities(&self) -> Vec<ServiceActivity> {
        let mut found = Vec::new();
        let Ok(stacks) = fs::read_dir(self.root.join("activity")) else {
            return found;
        };
        for stack in stacks.flatten() {
            let stack_name = stack.file_name().to_string_lossy().to_string();
            for file in fs::read_dir(stack.path()).into_iter().flatten().flatten() {
                let name = file.file_name().to_string_lossy().to_string();
                let Some(service) = name.strip_suffix(".json") else {
                    continue;
                };
                let activity: Option<Activity> = fs::read(file.path())
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok());
                if let Some(activity) = activity.filter(|a| process_alive(a.pid)) {
                    found.push(ServiceActivity {
                        stack: stack_name.clone(),
                        service: service.to_string(),
                        activity,
                    });
                }
            }
        }
        found.sort_by(|a, b| (&a.stack, &a.service).cmp(&(&b.stack, &b.service)));
        found
    }

    /// The activity recorded for a service, even one a process that died left: crash recovery
    /// reads what the dead process was doing.
    pub fn activity_left(&self, stack: &str, service: &str) -> Option<Activity> {
        let bytes = fs::read(self.activity_file(stack, service)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Add one to a counter. Counting never fails a release: a problem is logged.
    pub fn count(&self, counter: RunbookCounter) {
        if let Err(e) = self.try_count(counter) {
            tracing::warn!("cannot count {} in the state dir: {e}", counter.key());
        }
    }

    fn try_count(&self, counter: RunbookCounter) -> Result<(), StateError> {
        let path = self.root.join("counters.json");
        fs::create_dir_all(&self.root).map_err(self.io(&self.root))?;
        // The loop and a command run by hand may count at once: one at a time, by a lock file.
        let lock_path = self.root.join("counters.lock");
        let lock = self.open_lock_file(&lock_path)?;
        let _held = super::stack_lock::StackLock::wait_for(lock).map_err(self.io(&lock_path))?;
        let mut counts = self.counters();
        *counts.entry(counter.key().to_string()).or_default() += 1;
        let tmp = path.with_extension("json.tmp");
        let mut file = fs::File::create(&tmp).map_err(self.io(&tmp))?;
        file.write_all(&serde_json::to_vec(&counts).expect("counts serialize"))
            .map_err(self.io(&tmp))?;
        fs::rename(&tmp, &path).map_err(self.io(&path))
    }

    /// Every counter so far; missing or unreadable is none.
    pub fn counters(&self) -> Counts {
        fs::read(self.root.join("counters.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }
}

fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_activity_shows_until_it_is_cleared_and_a_dead_process_leaves_none() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = StateDir::new(dir.path());
        let watching = Activity {
            until: Some("2026-12-01T12:00:30Z".into()),
            ..Activity::now(ActivityKind::Watching, "shop-web-1")
        };
        state_dir
            .set_activity("shop", "web", Some(&watching))
            .unwrap();
        let listed = state_dir.activities();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].stack.as_str(), listed[0].service.as_str()),
            ("shop", "web")
        );
        assert_eq!(
            listed[0].activity.summary(),
            "watching shop-web-1 until 2026-12-01T12:00:30Z"
        );
        state_dir.set_activity("shop", "web", None).unwrap();
        assert!(state_dir.activities().is_empty());

        // A crash leaves the file: a pid that is not running is not shown.
        let stale = Activity {
            pid: i32::MAX as u32,
            ..Activity::now(ActivityKind::Migrating, "migrate")
        };
        state_dir.set_activity("shop", "db", Some(&stale)).unwrap();
        assert!(state_dir.activities().is_empty());
    }

    #[test]
    fn counters_add_up_across_calls_and_start_at_none() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = StateDir::new(dir.path());
        assert!(state_dir.counters().is_empty());
        state_dir.count(RunbookCounter::BackupOk);
        state_dir.count(RunbookCounter::BackupOk);
        state_dir.count(RunbookCounter::WindowFailure);
        let counts = state_dir.counters();
        assert_eq!(counts["backup_ok"], 2);
        assert_eq!(counts["window_failure"], 1);
        assert!(!counts.contains_key("job_ok"));
    }
}
