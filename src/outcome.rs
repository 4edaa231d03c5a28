//! What a pass did to each service, as values: the executor returns them, the state
//! transitions ([`crate::state::transition`]) record them, `/status`, `/metrics` and the log
//! read them. Pure data, no engine.

use serde::{Deserialize, Serialize};

/// The kind of change made to a service (also the journal's `action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// A first container for the service.
    Create,
    /// An existing, right container started again (self-heal).
    Start,
    /// A new container replacing the old one.
    Update,
    /// An update back to the image the service ran before (a revert).
    Rollback,
    /// Replicas added or removed (`deploy.replicas`, `scale`); none replaced.
    Scale,
    /// The service left the desired state and pruning is on.
    Remove,
    /// Its image could not be pulled; nothing was touched.
    Pull,
    /// `reconciler restore` put a volume it mounts back as a backup had it.
    Restore,
    /// Its volumes were copied before its container was replaced (`x-reconciler.backup`).
    Backup,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Start => "start",
            Self::Update => "update",
            Self::Rollback => "rollback",
            Self::Scale => "scale",
            Self::Remove => "remove",
            Self::Pull => "pull",
            Self::Restore => "restore",
            Self::Backup => "backup",
        }
    }
}

/// How it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ServiceResult {
    /// The new container is running and proven (or the removal is done).
    Done,
    /// The change was not accepted; the previous container, if any, keeps running.
    Failed {
        reason: String,
        /// The failed container's last log lines, declared secrets scrubbed. Kept for the
        /// journal (root-only); never served by `/status`, since an app may log what it read
        /// from anywhere.
        #[serde(skip)]
        log_tail: Vec<String>,
    },
    /// Not tried in this pass: a dependency failed or was not ready.
    Skipped { reason: String },
}

/// One service's outcome in a pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceOutcome {
    pub stack: String,
    pub service: String,
    pub revision: String,
    pub step: Step,
    /// The spec that was tried: a failure blocks retries of this spec only.
    #[serde(skip)]
    pub spec_hash: String,
    pub from_image: Option<String>,
    pub to_image: Option<String>,
    #[serde(flatten)]
    pub result: ServiceResult,
    pub elapsed_ms: u64,
}

impl ServiceOutcome {
    /// `stack/service`, as the log and the CLI name a service.
    pub fn who(&self) -> String {
        format!("{}/{}", self.stack, self.service)
    }

    /// The service was changed and the change was accepted.
    pub fn changed(&self) -> bool {
        self.result == ServiceResult::Done
    }

    /// Failed or skipped: the desired state does not run for this service.
    pub fn failed(&self) -> bool {
        !self.changed()
    }

    pub fn reason(&self) -> Option<&str> {
        match &self.result {
            ServiceResult::Done => None,
            ServiceResult::Failed { reason, .. } | ServiceResult::Skipped { reason } => {
                Some(reason)
            }
        }
    }
}

/// Whether a service runs what the desired state says, as `status`, `/status` and `/metrics`
/// report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncStatus {
    /// Runs the desired image.
    Synced,
    /// Differs from the desired state and the next pass will change it.
    OutOfSync,
    /// Its release failed; the last good version runs, and the spec is not retried.
    Failed,
    /// The operator suspended its stack.
    Suspended,
}

impl SyncStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Synced => "Synced",
            Self::OutOfSync => "OutOfSync",
            Self::Failed => "Failed",
            Self::Suspended => "Suspended",
        }
    }
}

/// One service after a pass: the same rule as `reconciler status` ([`sync_status`]).
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    pub stack: String,
    pub service: String,
    pub sync: SyncStatus,
    /// healthy | unhealthy | starting | none (no healthcheck) for a running container, else
    /// its engine state, or `missing`.
    pub health: String,
}

/// The one rule for [`SyncStatus`]: suspended first, then a recorded failure, then whether the
/// running container is the desired image.
pub fn sync_status(
    suspended: bool,
    failed: bool,
    desired_image: Option<&str>,
    running_image: Option<&str>,
) -> SyncStatus {
    use crate::observed::normalize_reference;
    let runs_desired = match (desired_image, running_image) {
        (Some(want), Some(runs)) => normalize_reference(want) == normalize_reference(runs),
        _ => false,
    };
    match () {
        _ if suspended => SyncStatus::Suspended,
        _ if failed => SyncStatus::Failed,
        _ if runs_desired => SyncStatus::Synced,
        _ => SyncStatus::OutOfSync,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_status_puts_suspension_before_failure_before_the_image() {
        let sync = |s, f, want, runs| sync_status(s, f, want, runs);
        assert_eq!(
            sync(true, true, Some("a"), Some("a")),
            SyncStatus::Suspended
        );
        assert_eq!(sync(false, true, Some("a"), Some("a")), SyncStatus::Failed);
        assert_eq!(
            sync(
                false,
                false,
                Some("nginx"),
                Some("docker.io/library/nginx:latest")
            ),
            SyncStatus::Synced
        );
        assert_eq!(
            sync(false, false, Some("app:2"), Some("app:1")),
            SyncStatus::OutOfSync
        );
        assert_eq!(
            sync(false, false, Some("app:2"), None),
            SyncStatus::OutOfSync,
            "nothing running is out of sync"
        );
    }

    #[test]
    fn an_outcome_serializes_with_its_result_flattened_and_no_spec_hash() {
        let o = ServiceOutcome {
            stack: "shop".into(),
            service: "web".into(),
            revision: "abc".into(),
            step: Step::Update,
            spec_hash: "h".into(),
            from_image: Some("web:1".into()),
            to_image: Some("web:2".into()),
            result: ServiceResult::Failed {
                reason: "turned unhealthy".into(),
                log_tail: vec![],
            },
            elapsed_ms: 5,
        };
        let json = serde_json::to_value(&o).unwrap();
        assert_eq!(json["result"], "failed");
        assert_eq!(json["reason"], "turned unhealthy");
        assert_eq!(json["step"], "update");
        assert!(json.get("spec_hash").is_none());
        assert!(o.failed() && !o.changed());
    }
}
