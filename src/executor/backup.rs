//! Named volumes copied to the state dir before a service's container is replaced
//! (`x-reconciler.backup`), through the engine's archive endpoint on a holder container: no
//! helper image, nothing started. Running containers of the stack that write the volume are
//! paused while it is copied, so the copy is of one moment.

use super::wait_progress::WaitProgress;
use super::{ExecError, Executor};
use crate::desired::{Service, Stack};
use crate::engine::{Engine, HolderRequest, HOLDER_PATH};
use crate::logging::Who;
use crate::observed::{Health, Observed, ObservedContainer};
use crate::outcome::Step;
use crate::state::runbook::{Activity, ActivityKind, RunbookCounter};
use crate::state::{now_rfc3339, JournalEntry, JournalResult, StateDir};
use std::path::PathBuf;

/// The name of the holder of a stack's volume: one at a time per volume.
pub fn holder_name(stack: &str, volume: &str) -> String {
    format!("{stack}-{volume}-reconciler-holder")
}

/// Whether a container of ours mounts the stack's volume `key`, and writable: from the spec it
/// was created with (its label), which is what runs, whatever the repository says now.
pub fn mounts_volume(container: &ObservedContainer, key: &str) -> Option<bool> {
    let spec: serde_json::Value =
        serde_json::from_str(container.labels.get(crate::labels::SPEC)?).ok()?;
    spec.get("mounts")?
        .as_array()?
        .iter()
        .filter(|m| m.get("kind").and_then(|k| k.as_str()) == Some("volume"))
        .filter(|m| m.get("source").and_then(|s| s.as_str()) == Some(key))
        .map(|m| m.get("read_only").and_then(|r| r.as_bool()) != Some(true))
        .reduce(|a, b| a || b)
}

/// One volume to copy: the stack's key and the engine's name for it.
pub struct VolumeCopy<'a> {
    pub stack: &'a str,
    pub service: &'a str,
    pub key: &'a str,
    pub engine_name: &'a str,
    /// A local image to create the holder from.
    pub image: &'a str,
    /// Running containers to pause while copying.
    pub pause: Vec<String>,
    /// `""`, or [`crate::state::backups::BEFORE_RESTORE`].
    pub suffix: &'a str,
}

/// Copy one volume into a new backup file; the holder is removed and every paused container
/// unpaused whatever happens. Returns the file, or why there is none.
pub async fn copy_volume<E: Engine>(
    engine: &E,
    state_dir: &StateDir,
    copy: &VolumeCopy<'_>,
) -> Result<PathBuf, String> {
    let mut writer = state_dir
        .new_backup(copy.stack, copy.key, copy.suffix)
        .map_err(|e| format!("cannot write the backup of volume {}: {e}", copy.key))?;
    record_engine_name(state_dir, copy);
    let request = HolderRequest {
        name: holder_name(copy.stack, copy.key),
        project: copy.stack.to_string(),
        service: copy.service.to_string(),
        image: copy.image.to_string(),
        volume: copy.engine_name.to_string(),
        read_only: true,
    };
    let holder = engine
        .create_holder(&request)
        .await
        .map_err(|e| format!("cannot reach volume {} to back it up: {e}", copy.key))?;
    let mut paused = Vec::new();
    let mut result = Ok(0);
    for id in &copy.pause {
        match engine.pause_container(id).await {
            Ok(()) => paused.push(id.clone()),
            // Gone or stopped since it was seen: it writes nothing now.
            Err(e) if e.is_gone() => {}
            Err(e) => {
                result = Err(format!(
                    "cannot pause a container that writes volume {}: {e}",
                    copy.key
                ));
                break;
            }
        }
    }
    if result.is_ok() {
        result = engine
            .download_archive(&holder, HOLDER_PATH, &mut writer)
            .await
            .map_err(|e| format!("copying volume {} failed: {e}", copy.key));
    }
    let mut cleanup = Vec::new();
    for id in &paused {
        if let Err(e) = engine.unpause_container(id).await {
            cleanup.push(format!("cannot unpause {id}: {e}"));
        }
    }
    if let Err(e) = engine.remove_container(&holder).await {
        // The next pass removes it (a one-off of the stack).
        cleanup.push(format!("cannot remove the holder {}: {e}", request.name));
    }
    for problem in &cleanup {
        tracing::error!(stack = %copy.stack, service = %copy.service, "{problem}");
    }
    result?;
    writer
        .finish()
        .map_err(|e| format!("cannot write the backup of volume {}: {e}", copy.key))
}

/// `reconciler restore` runs without the repository: the engine's name of the volume is kept
/// beside its backups.
fn record_engine_name(state_dir: &StateDir, copy: &VolumeCopy<'_>) {
    let path = engine_name_file(state_dir, copy.stack, copy.key);
    if let Err(e) = std::fs::write(&path, copy.engine_name) {
        tracing::warn!("cannot record the engine name of volume {}: {e}", copy.key);
    }
}

pub fn engine_name_file(state_dir: &StateDir, stack: &str, key: &str) -> PathBuf {
    state_dir
        .backups_dir()
        .join(stack)
        .join(key)
        .join(".engine-name")
}

impl<E: Engine> Executor<'_, E> {
    /// A `backup` entry: the journal is where a skipped update's reason stays.
    fn journal_backup(
        &self,
        stack: &Stack,
        service: &Service,
        key: &str,
        result: &Result<PathBuf, String>,
        started: std::time::Instant,
    ) {
        let entry = JournalEntry {
            at: now_rfc3339(),
            revision: stack.revision.clone(),
            stack: stack.name.clone(),
            service: service.name.clone(),
            action: Step::Backup,
            from: None,
            to: result.as_ref().ok().and_then(|p| {
                p.file_name()
                    .map(|n| format!("{key}@{}", n.to_string_lossy().trim_end_matches(".tar.gz")))
            }),
            result: match result {
                Ok(_) => JournalResult::Ok,
                Err(_) => JournalResult::Failed,
            },
            duration_ms: started.elapsed().as_millis() as u64,
            reason: result.as_ref().err().cloned(),
            log_tail: vec![],
        };
        if let Err(e) = self.state_dir.append_journal(&entry) {
            tracing::warn!("cannot journal the backup: {e}");
        }
    }

    /// Copy the volumes `x-reconciler.backup` names before the service's container is
    /// replaced. `Ok(Err(reason))`: a backup failed and the update must not go on (nothing was
    /// touched); the next pass tries again.
    pub async fn backup_before_update(
        &self,
        stack: &Stack,
        service: &Service,
        observed: &Observed,
    ) -> Result<Result<(), String>, ExecError> {
        let who = Who::of(stack, &service.name);
        for key in &service.backup {
            let Some(def) = stack.volumes.get(key) else {
                continue;
            };
            let pause: Vec<String> = observed
                .containers
                .iter()
                .filter(|c| c.project == stack.name && c.is_running())
                .filter(|c| mounts_volume(c, key) == Some(true))
                .map(|c| c.id.clone())
                .collect();
            crate::progress!(
                who,
                "backing up volume {key} ({} container(s) paused meanwhile)",
                pause.len()
            );
            let activity = Activity::now(ActivityKind::BackingUp, key.clone());
            if let Err(e) = self
                .state_dir
                .set_activity(&stack.name, &service.name, Some(&activity))
            {
                tracing::warn!("cannot record the backup activity: {e}");
            }
            let copy = VolumeCopy {
                stack: &stack.name,
                service: &service.name,
                key,
                engine_name: &def.name,
                image: &service.spec.image,
                pause,
                suffix: "",
            };
            // Docker calls a paused container unhealthy until its next health check.
            let healthy_before: Vec<&ObservedContainer> = observed
                .containers
                .iter()
                .filter(|c| copy.pause.contains(&c.id) && c.health == Health::Healthy)
                .collect();
            let started = std::time::Instant::now();
            let result = copy_volume(self.engine, self.state_dir, &copy).await;
            self.wait_healthy_again(&who, &healthy_before, service.health_timeout)
                .await?;
            self.journal_backup(stack, service, key, &result, started);
            if let Err(e) = self
                .state_dir
                .set_activity(&stack.name, &service.name, None)
            {
                tracing::warn!("cannot clear the backup activity: {e}");
            }
            match result {
                Ok(path) => {
                    self.state_dir.count(RunbookCounter::BackupOk);
                    crate::progress!(who, "volume {key} backed up to {}", path.display());
                    let keep = service.backup_keep.max(1) as usize;
                    for old in self.state_dir.prune_backups(&stack.name, key, keep) {
                        tracing::info!("deleted old backup {}", old.display());
                    }
                }
                Err(reason) => {
                    self.state_dir.count(RunbookCounter::BackupFailed);
                    return Ok(Err(format!(
                        "not updated, the old container keeps serving: {reason}; tried again at the next pass"
                    )));
                }
            }
        }
        Ok(Ok(()))
    }

    /// The engine says a container was unhealthy from its pause until its next health check
    /// (a probe interval later): wait for that (at most `timeout`), so a service depending on
    /// it is not turned away meanwhile. One that does not recover is said, not a failed backup.
    async fn wait_healthy_again(
        &self,
        who: &Who,
        containers: &[&ObservedContainer],
        timeout: std::time::Duration,
    ) -> Result<(), ExecError> {
        let deadline = tokio::time::Instant::now() + timeout;
        for c in containers {
            let what = format!("waiting for {} to be healthy again after the pause", c.name);
            let mut progress = WaitProgress::until(who, what, deadline);
            loop {
                let status = match self.engine.inspect_container(&c.id).await {
                    Ok(status) => status,
                    Err(e) if e.is_gone() => break,
                    Err(e) => return Err(e.into()),
                };
                if status.health == Health::Healthy || !status.running {
                    break;
                }
                progress.tick(status.health, status.running);
                if tokio::time::Instant::now() >= deadline {
                    tracing::warn!(
                        stack = %who.stack, service = %who.service,
                        "{} is not healthy again {}s after the backup's pause",
                        c.name,
                        timeout.as_secs()
                    );
                    break;
                }
                tokio::time::sleep(super::readiness::POLL).await;
            }
        }
        Ok(())
    }
}
