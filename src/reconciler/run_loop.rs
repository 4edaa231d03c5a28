//! The loop: pass after pass until shutdown. It owns no signal handling and no server: the
//! caller hands it triggers (webhook and SIGHUP ask; engine events and file changes say
//! something changed) and a shutdown token, and learns of each pass through the shared status
//! and `on_report`.

use super::error_policy::{after_success, error_policy};
use super::{reconcile_once, Heartbeat, PassContext, PassError, PassReport, SharedStatus};
use crate::engine::Engine;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Passes started by the same kind of trigger are at least this far apart, so a stream of
/// triggers cannot keep the loop (and the engine, and the remote) permanently busy.
pub const MIN_TRIGGERED_SPACING: Duration = Duration::from_secs(1);

/// What can start a pass before the interval is up. Each kind is spaced on its own: a webhook
/// right after the pass that the reconciler's own engine events started is not made to wait.
#[derive(Debug, Clone, Default)]
pub struct Triggers {
    /// Someone asks for a pass: the webhook, SIGHUP (`reconciler sync`).
    pub asked: Arc<Notify>,
    /// Something changed under us: engine events of our stacks, edits of a watched directory.
    pub changed: Arc<Notify>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Asked,
    Changed,
}

pub struct LoopConfig {
    pub interval: Duration,
    /// `/healthz` turns unhealthy when no pass completes this long after one was due.
    pub unhealthy_after: Duration,
}

/// Run passes until `ctx.shutdown` is cancelled. A pass that is still reading is dropped at
/// once; one that is changing containers finishes the services in progress and starts no
/// other, so nothing is left half-done (a `kill -9` is resolved by the next start's recovery).
pub async fn run_loop<E: Engine>(
    ctx: &PassContext<'_, E>,
    config: &LoopConfig,
    triggers: &Triggers,
    status: &SharedStatus,
    heartbeat: &Heartbeat,
    on_report: impl Fn(&PassReport),
) {
    let mut failures_in_a_row = 0u32;
    // When the last pass started by each kind of trigger started.
    let mut last_by_kind: [Option<tokio::time::Instant>; 2] = [None, None];
    let mut kind: Option<Kind> = None;
    loop {
        let started = tokio::time::Instant::now();
        if let Some(kind) = kind {
            last_by_kind[kind as usize] = Some(started);
        }
        let result = reconcile_once(ctx, &|_| {}).await;
        if matches!(result, Err(PassError::Stopped)) {
            break;
        }
        status
            .lock()
            .expect("status lock")
            .record(started.elapsed(), &result);
        let wait = match &result {
            Ok(report) => {
                failures_in_a_row = 0;
                on_report(report);
                log_pass(report);
                after_success(report, config.interval)
            }
            Err(e) => {
                failures_in_a_row += 1;
                let wait = error_policy(e, failures_in_a_row, config.interval);
                let next = humantime::format_duration(wait);
                if e.is_container_gone() {
                    tracing::warn!(
                        retry_in_s = wait.as_secs(),
                        "a container went away during the pass, which ends here; the next one (in {next}) puts things right: {e}"
                    );
                } else {
                    tracing::error!(
                        retry_in_s = wait.as_secs(),
                        "pass failed (next pass in {next}): {e}"
                    );
                }
                wait
            }
        };
        heartbeat.beat(wait, config.unhealthy_after);
        if ctx.shutdown.is_cancelled() {
            break;
        }
        kind = tokio::select! {
            _ = tokio::time::sleep(wait) => None,
            // Triggers that come while a pass runs collapse into one permit per kind, so a
            // burst never means a pass per trigger.
            _ = triggers.asked.notified() => Some(Kind::Asked),
            _ = triggers.changed.notified() => Some(Kind::Changed),
            () = ctx.shutdown.cancelled() => break,
        };
        // ... and no sooner than MIN_TRIGGERED_SPACING after the last pass of that kind started.
        // A request (webhook, SIGHUP) that comes while an event-started pass is held back takes
        // its place at once, under its own spacing: it is never made to wait for events.
        loop {
            let since = kind
                .and_then(|k| last_by_kind[k as usize])
                .map(|t| t.elapsed());
            let spacing = since.map_or(Duration::ZERO, |s| MIN_TRIGGERED_SPACING.saturating_sub(s));
            if spacing.is_zero() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(spacing) => break,
                _ = triggers.asked.notified(), if kind == Some(Kind::Changed) => {
                    kind = Some(Kind::Asked);
                }
                () = ctx.shutdown.cancelled() => return,
            }
        }
    }
}

fn log_pass(report: &PassReport) {
    let (changed, failed) = (report.changed().count(), report.failed().count());
    if changed + failed == 0 {
        return;
    }
    let commit = report
        .commit
        .as_deref()
        .map(|c| &c[..c.len().min(12)])
        .unwrap_or("working copy");
    tracing::info!(
        revision = commit,
        changed,
        failed,
        "pass at {commit}: {changed} changed, {failed} failed"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApplySettings;
    use crate::engine::fake::FakeEngine;
    use crate::reconciler::{DetailsCache, SourceSettings};
    use crate::source::{FetchControl, SourceSpec};
    use crate::state::StateDir;
    use tokio::time::Instant;

    fn settings() -> ApplySettings {
        ApplySettings {
            dry_run: false,
            prune: false,
            min_free_disk: 0,
            retry_failed: false,
            self_heal: true,
            parallel_stacks: 4,
            parallel_services: 16,
            keep_images: 2,
        }
    }

    /// Waits (on the paused clock) until the loop has completed `n` passes; returns when.
    async fn passes(status: &SharedStatus, n: u64) -> Instant {
        while status.lock().unwrap().passes() < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Instant::now()
    }

    #[tokio::test(start_paused = true)]
    async fn an_asked_pass_does_not_wait_behind_an_event_pass_but_asked_passes_are_spaced() {
        let (repo, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let timings = drive_loop(&repo, &state, |triggers, status| async move {
            passes(&status, 1).await;
            triggers.changed.notify_one();
            let event_pass = passes(&status, 2).await;
            triggers.asked.notify_one();
            let asked_pass = passes(&status, 3).await;
            triggers.asked.notify_one();
            let second_asked = passes(&status, 4).await;
            (event_pass, asked_pass, second_asked)
        })
        .await;
        let (event_pass, asked_pass, second_asked) = timings;
        assert!(
            asked_pass - event_pass < Duration::from_millis(500),
            "the webhook waited {:?} behind the event pass",
            asked_pass - event_pass
        );
        assert!(
            second_asked - asked_pass >= Duration::from_millis(900),
            "asked passes came {:?} apart",
            second_asked - asked_pass
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_asked_pass_that_comes_while_an_event_pass_is_held_back_goes_at_once() {
        let (repo, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (event_pass, asked_pass) = drive_loop(&repo, &state, |triggers, status| async move {
            passes(&status, 1).await;
            triggers.changed.notify_one();
            let event_pass = passes(&status, 2).await;
            // A second event right away: its pass is held back for the spacing ...
            triggers.changed.notify_one();
            tokio::time::sleep(Duration::from_millis(100)).await;
            // ... and a webhook meanwhile must not wait for it.
            triggers.asked.notify_one();
            (event_pass, passes(&status, 3).await)
        })
        .await;
        assert!(
            asked_pass - event_pass < Duration::from_millis(500),
            "the webhook waited {:?} behind a held-back event pass",
            asked_pass - event_pass
        );
    }

    /// Runs the loop (hour-long interval) on an empty directory until `driver`, given the
    /// loop's triggers and status, returns; then stops it.
    async fn drive_loop<T, F>(
        repo: &tempfile::TempDir,
        state: &tempfile::TempDir,
        driver: impl FnOnce(Triggers, SharedStatus) -> F,
    ) -> T
    where
        F: std::future::Future<Output = T>,
    {
        let source = SourceSettings {
            spec: SourceSpec::Directory(repo.path().to_path_buf()),
            branch: "main".into(),
            rev: None,
            path: None,
            stacks: vec![],
            credentials: Default::default(),
            allow_non_fast_forward: false,
            policy: Default::default(),
            adopt: vec![],
            fetch: FetchControl::default(),
        };
        let (engine, state_dir, settings) =
            (FakeEngine::new(), StateDir::new(state.path()), settings());
        let ctx = PassContext {
            engine: &engine,
            source: &source,
            state_dir: &state_dir,
            settings: &settings,
            shutdown: Default::default(),
            details: DetailsCache::default(),
            warned: crate::reconciler::WarningsSaid::default(),
            notifier: Default::default(),
        };
        let config = LoopConfig {
            interval: Duration::from_secs(3600),
            unhealthy_after: Duration::from_secs(3600),
        };
        let (triggers, status) = (Triggers::default(), SharedStatus::default());
        let heartbeat = Heartbeat::new(Duration::from_secs(3600));
        let driven = driver(triggers.clone(), status.clone());
        let driver = async {
            let result = driven.await;
            ctx.shutdown.cancel();
            result
        };
        let ((), result) = tokio::join!(
            run_loop(&ctx, &config, &triggers, &status, &heartbeat, |_| {}),
            driver
        );
        result
    }
}
