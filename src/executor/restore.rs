//! `reconciler restore STACK VOLUME [BACKUP]`: the volume's content made exactly the backup's.
//! The stack is suspended and held (see [`crate::state::stack_lock`]) so the loop neither heals
//! nor updates it meanwhile; the containers that mount the volume are stopped, what the volume
//! holds now is saved (`-before-restore`), the volume is emptied on the host (the archive
//! endpoint only adds files), the backup is written through the engine, the containers are
//! started and their health awaited.

use super::backup::{copy_volume, engine_name_file, holder_name, mounts_volume, VolumeCopy};
use super::wait_progress::WaitProgress;
use crate::engine::{Engine, HolderRequest};
use crate::observed::{Health, ObservedContainer};
use crate::outcome::Step;
use crate::state::backups::{Backup, BEFORE_RESTORE};
use crate::state::runbook::{Activity, ActivityKind, RunbookCounter};
use crate::state::{now_rfc3339, JournalEntry, JournalResult, StateDir};
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

pub struct RestoreRequest<'a> {
    pub stack: &'a str,
    pub volume: &'a str,
    /// A backup's name as `reconciler backups` lists it; `None`: the newest.
    pub backup: Option<&'a str>,
    /// For the stack's lock, and for health once started.
    pub timeout: Duration,
}

#[derive(Debug)]
pub enum Restored {
    /// Restored, and every container started again is healthy (or runs, without healthcheck).
    Healthy {
        backup: Backup,
        saved: std::path::PathBuf,
    },
    /// Restored, but a container is not healthy within the timeout.
    NotHealthy {
        backup: Backup,
        saved: std::path::PathBuf,
        reason: String,
    },
}

/// Why nothing (or, said so, not everything) was done.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RestoreError(pub String);

fn fail(message: impl Into<String>) -> RestoreError {
    RestoreError(message.into())
}

/// Which backup: by name (with or without `.tar.gz`) or the newest taken before an update.
pub fn pick_backup(
    state_dir: &StateDir,
    stack: &str,
    volume: &str,
    name: Option<&str>,
) -> Result<Backup, RestoreError> {
    let all: Vec<Backup> = state_dir
        .backups(Some(stack))
        .into_iter()
        .filter(|b| b.volume == volume)
        .collect();
    let found = match name {
        Some(name) => {
            let name = name.strip_suffix(".tar.gz").unwrap_or(name);
            all.into_iter().find(|b| b.name == name)
        }
        None => all.into_iter().rev().find(|b| !b.before_restore()),
    };
    found.ok_or_else(|| {
        fail(format!(
            "no backup {} of volume {volume} of stack {stack} in {}; see `reconciler backups {stack}`",
            name.unwrap_or("taken before an update"),
            state_dir.backups_dir().display()
        ))
    })
}

/// Restore, counted on `/metrics` whatever the result (a refusal is a failed restore).
pub async fn restore<E: Engine>(
    engine: &E,
    state_dir: &StateDir,
    request: &RestoreRequest<'_>,
) -> Result<Restored, RestoreError> {
    let result = attempt(engine, state_dir, request).await;
    let counter = match &result {
        Ok(Restored::Healthy { .. }) => RunbookCounter::RestoreOk,
        _ => RunbookCounter::RestoreFailed,
    };
    state_dir.count(counter);
    result
}

async fn attempt<E: Engine>(
    engine: &E,
    state_dir: &StateDir,
    request: &RestoreRequest<'_>,
) -> Result<Restored, RestoreError> {
    let (stack, volume) = (request.stack, request.volume);
    let backup = pick_backup(state_dir, stack, volume, request.backup)?;
    let engine_name = std::fs::read_to_string(engine_name_file(state_dir, stack, volume))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| format!("{stack}_{volume}"));
    let Some(folder) = engine
        .local_volume_path(&engine_name)
        .await
        .map_err(|e| fail(format!("cannot inspect volume {engine_name}: {e}")))?
    else {
        return Err(fail(format!("volume {engine_name} is not a plain local volume of an engine on this host: restore empties the volume's folder on the host (the engine cannot delete files through its API), so it needs the engine on its unix socket and the local driver without options; nothing was changed")));
    };
    let was_suspended = state_dir.suspended().iter().any(|s| s == stack);
    if !was_suspended {
        state_dir
            .suspend(stack, true)
            .map_err(|e| fail(format!("cannot suspend stack {stack}: {e}")))?;
    }
    let result = held(engine, state_dir, request, backup, &engine_name, &folder).await;
    if !was_suspended {
        if let Err(e) = state_dir.suspend(stack, false) {
            tracing::error!("cannot resume stack {stack}; run `reconciler resume {stack}`: {e}");
        }
    }
    result
}

/// The part done with the stack suspended: wait for a pass on it to end, then hold it.
async fn held<E: Engine>(
    engine: &E,
    state_dir: &StateDir,
    request: &RestoreRequest<'_>,
    backup: Backup,
    engine_name: &str,
    folder: &Path,
) -> Result<Restored, RestoreError> {
    let (stack, volume) = (request.stack, request.volume);
    let deadline = Instant::now() + request.timeout;
    let _lock = loop {
        match state_dir.try_lock_stack(stack) {
            Ok(Some(lock)) => break lock,
            Ok(None) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Ok(None) => {
                return Err(fail(format!(
                    "a pass is still changing stack {stack}; nothing was changed, try again"
                )))
            }
            Err(e) => return Err(fail(e.to_string())),
        }
    };
    let containers = engine
        .list_containers(&[stack.to_string()])
        .await
        .map_err(|e| fail(e.to_string()))?;
    let users: Vec<&ObservedContainer> = containers
        .iter()
        .filter(|c| mounts_volume(c, volume).is_some())
        .collect();
    let Some(image) = users.first().map(|c| c.image.clone()) else {
        return Err(fail(format!(
            "no container of stack {stack} mounts volume {volume}; nothing was changed"
        )));
    };
    let services: Vec<&str> = users.iter().map(|c| c.service.as_str()).collect();
    let activity = Activity::now(ActivityKind::Restoring, volume);
    for service in &services {
        let _ = state_dir.set_activity(stack, service, Some(&activity));
    }
    let started = Instant::now();
    let result = replace_content(
        engine,
        state_dir,
        request,
        &backup,
        engine_name,
        folder,
        &users,
        &image,
    )
    .await;
    for service in &services {
        let _ = state_dir.set_activity(stack, service, None);
    }
    let (journal_result, reason) = match &result {
        Ok(Restored::Healthy { .. }) => (JournalResult::Ok, None),
        Ok(Restored::NotHealthy { reason, .. }) => (JournalResult::Failed, Some(reason.clone())),
        Err(e) => (JournalResult::Failed, Some(e.0.clone())),
    };
    for service in services.iter().collect::<std::collections::BTreeSet<_>>() {
        let entry = JournalEntry {
            at: now_rfc3339(),
            revision: String::new(),
            stack: stack.to_string(),
            service: service.to_string(),
            action: Step::Restore,
            from: None,
            to: Some(format!("{volume}@{}", backup.name)),
            result: journal_result,
            duration_ms: started.elapsed().as_millis() as u64,
            reason: reason.clone(),
            log_tail: vec![],
        };
        if let Err(e) = state_dir.append_journal(&entry) {
            tracing::warn!("cannot journal the restore: {e}");
        }
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn replace_content<E: Engine>(
    engine: &E,
    state_dir: &StateDir,
    request: &RestoreRequest<'_>,
    backup: &Backup,
    engine_name: &str,
    folder: &Path,
    users: &[&ObservedContainer],
    image: &str,
) -> Result<Restored, RestoreError> {
    let (stack, volume) = (request.stack, request.volume);
    let running: Vec<&ObservedContainer> =
        users.iter().copied().filter(|c| c.is_running()).collect();
    for c in &running {
        println!("stopping {}", c.name);
        engine
            .stop_container(&c.id, None)
            .await
            .map_err(|e| fail(format!("cannot stop {}: {e}", c.name)))?;
    }
    let start_again = || async {
        for c in &running {
            if let Err(e) = engine.start_container(&c.id).await {
                tracing::error!("cannot start {} again: {e}", c.name);
            }
        }
    };
    let copy = VolumeCopy {
        stack,
        service: &users[0].service,
        key: volume,
        engine_name,
        image,
        pause: vec![],
        suffix: BEFORE_RESTORE,
    };
    let saved = match copy_volume(engine, state_dir, &copy).await {
        Ok(saved) => saved,
        Err(reason) => {
            start_again().await;
            return Err(fail(format!("{reason}; nothing was changed")));
        }
    };
    println!("saved what volume {volume} held to {}", saved.display());
    let written = match empty_folder(folder) {
        Ok(()) => write_back(engine, &copy, &backup.file).await,
        Err(e) => Err(format!("cannot empty {}: {e}", folder.display())),
    };
    if let Err(reason) = written {
        // The volume may be half empty: what it held goes back.
        let put_back = match empty_folder(folder) {
            Ok(()) => write_back(engine, &copy, &saved).await,
            Err(e) => Err(e.to_string()),
        };
        start_again().await;
        return Err(fail(match put_back {
            Ok(()) => format!("{reason}; the volume holds what it held before"),
            Err(e) => format!(
                "{reason}; putting back what it held failed too ({e}): it is in {}",
                saved.display()
            ),
        }));
    }
    println!("volume {volume} holds backup {} now", backup.name);
    start_again().await;
    match wait_healthy(engine, &running, request.timeout).await {
        Ok(()) => Ok(Restored::Healthy {
            backup: backup.clone(),
            saved,
        }),
        Err(reason) => Ok(Restored::NotHealthy {
            backup: backup.clone(),
            saved,
            reason,
        }),
    }
}

/// Every entry of the volume's folder removed; links are removed, never followed.
fn empty_folder(folder: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(folder)? {
        let path = entry?.path();
        if std::fs::symlink_metadata(&path)?.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// The backup's tar written into the volume through a holder, streamed from the file.
async fn write_back<E: Engine>(
    engine: &E,
    copy: &VolumeCopy<'_>,
    file: &Path,
) -> Result<(), String> {
    let (stack, service, engine_name, image) =
        (copy.stack, copy.service, copy.engine_name, copy.image);
    let request = HolderRequest {
        name: holder_name(stack, copy.key),
        project: stack.to_string(),
        service: service.to_string(),
        image: image.to_string(),
        volume: engine_name.to_string(),
        read_only: false,
    };
    let holder = engine
        .create_holder(&request)
        .await
        .map_err(|e| e.to_string())?;
    let result = match std::fs::File::open(file) {
        // The archive's top folder is the holder's mount point: extracted at `/`, it lands there.
        Ok(f) => engine
            .upload_archive(&holder, "/", Box::new(flate2::read::GzDecoder::new(f)))
            .await
            .map_err(|e| format!("writing the backup into the volume failed: {e}")),
        Err(e) => Err(format!("cannot read {}: {e}", file.display())),
    };
    if let Err(e) = engine.remove_container(&holder).await {
        tracing::error!("cannot remove the holder {}: {e}", request.name);
    }
    result
}

async fn wait_healthy<E: Engine>(
    engine: &E,
    containers: &[&ObservedContainer],
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    for c in containers {
        let who = crate::logging::Who::new(&c.project, &c.service, c.revision().unwrap_or("-"));
        let what = format!("waiting for {} to be ready after the restore", c.name);
        let mut progress = WaitProgress::until(&who, what, deadline);
        loop {
            let status = engine
                .inspect_container(&c.id)
                .await
                .map_err(|e| e.to_string())?;
            let ready = status.running && matches!(status.health, Health::Healthy | Health::None);
            if ready {
                break;
            }
            progress.tick(status.health, status.running);
            if status.health == Health::Unhealthy || !status.running || Instant::now() >= deadline {
                return Err(format!(
                    "{} is {}{} after the restore",
                    c.name,
                    status.state,
                    if status.running {
                        format!(" ({:?})", status.health).to_lowercase()
                    } else {
                        String::new()
                    }
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(())
}
