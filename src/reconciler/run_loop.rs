//! The loop: pass after pass until shutdown. It owns no signal handling and no server: the
//! caller hands it a trigger (webhook, engine events, SIGHUP, file changes all notify it) and a
//! shutdown token, and learns of each pass through the shared status and `on_report`.

use super::error_policy::{after_success, error_policy};
use super::{reconcile_once, Heartbeat, PassContext, PassError, PassReport, SharedStatus};
use crate::engine::Engine;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Passes started by triggers are at least this far apart, so a stream of triggers cannot keep
/// the loop (and the engine, and the remote) permanently busy.
pub const MIN_TRIGGERED_SPACING: Duration = Duration::from_secs(1);

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
    trigger: Arc<Notify>,
    status: &SharedStatus,
    heartbeat: &Heartbeat,
    on_report: impl Fn(&PassReport),
) {
    let mut failures_in_a_row = 0u32;
    loop {
        let started = tokio::time::Instant::now();
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
                tracing::error!(
                    retry_in_s = wait.as_secs(),
                    "pass failed (next pass in {}): {e}",
                    humantime::format_duration(wait)
                );
                wait
            }
        };
        heartbeat.beat(wait, config.unhealthy_after);
        if ctx.shutdown.is_cancelled() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => continue,
            // Triggers that come while a pass runs collapse into one permit, so a burst never
            // means a pass per trigger.
            _ = trigger.notified() => {}
            () = ctx.shutdown.cancelled() => break,
        }
        // ... and no sooner than MIN_TRIGGERED_SPACING after the last one started.
        let spacing = MIN_TRIGGERED_SPACING.saturating_sub(started.elapsed());
        tokio::select! {
            _ = tokio::time::sleep(spacing) => {}
            () = ctx.shutdown.cancelled() => break,
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
