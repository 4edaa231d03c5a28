//! What the loop shares with the HTTP server: the last pass, bounded history, and the metrics.

use super::{PassError, PassReport};
use crate::executor::ExecError;
use crate::metrics::{Metrics, PassCounts};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Passes kept in [`LoopStatus::recent`].
pub const RECENT_PASSES: usize = 20;

#[derive(Debug, Default)]
pub struct LoopStatus {
    pub last_report: Option<PassReport>,
    pub last_error: Option<String>,
    pub last_success: Option<SystemTime>,
    /// The last [`RECENT_PASSES`] passes, newest last.
    pub recent: VecDeque<PassRecord>,
    /// Counters, the duration histogram and the last pass's services, for `/metrics`.
    pub metrics: Metrics,
    /// The notification queue's counts (`--notify-url`), read at each scrape.
    pub notifications: Option<std::sync::Arc<crate::notify::Counts>>,
}

/// One pass in the history.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PassRecord {
    pub ended_at: String,
    pub duration_ms: u64,
    pub commit: Option<String>,
    pub changed: usize,
    pub failed: usize,
    pub error: Option<String>,
}

pub type SharedStatus = Arc<Mutex<LoopStatus>>;

impl LoopStatus {
    /// Passes recorded so far.
    pub fn passes(&self) -> u64 {
        self.metrics.passes()
    }

    /// Record a pass that took `duration`.
    pub fn record(&mut self, duration: Duration, result: &Result<PassReport, PassError>) {
        let mut counts = PassCounts::default();
        let mut record = PassRecord {
            ended_at: crate::state::now_rfc3339(),
            duration_ms: duration.as_millis() as u64,
            commit: None,
            changed: 0,
            failed: 0,
            error: None,
        };
        match result {
            Ok(report) => {
                let now = SystemTime::now();
                self.last_success = Some(now);
                self.metrics.fetched(now);
                self.last_error = None;
                record.changed = report.changed().count();
                record.failed = report.failed().count();
                record.commit = report.commit.clone();
                counts.applied = record.changed as u64;
                counts.failed = record.failed as u64;
                counts.rolled_back = report.rollbacks().count() as u64;
                counts.images_removed = report.images_removed;
                self.metrics
                    .show_services(&report.services, &report.suspended);
                self.last_report = Some(report.clone());
            }
            Err(e) => {
                self.last_error = Some(e.to_string());
                record.error = self.last_error.clone();
                // A release whose image cannot be pulled is a failure too, not only an error.
                if matches!(e, PassError::Exec(ExecError::Pull { .. })) && !e.is_transient() {
                    counts.failed = 1;
                }
            }
        }
        self.metrics.record_pass(duration, counts);
        if self.recent.len() == RECENT_PASSES {
            self.recent.pop_front();
        }
        self.recent.push_back(record);
    }
}

/// When the loop last finished a pass, and by when it should finish the next one, shared
/// with the HTTP server.
#[derive(Clone)]
pub struct Heartbeat(Arc<Mutex<Beat>>);

struct Beat {
    last: Instant,
    /// Allowed silence: the wait before the next pass (interval or backoff) plus the limit.
    allowed: Duration,
}

impl Heartbeat {
    /// At start: the first pass must complete within `limit`.
    pub fn new(limit: Duration) -> Self {
        Self(Arc::new(Mutex::new(Beat {
            last: Instant::now(),
            allowed: limit,
        })))
    }

    /// A pass completed; the next starts after `wait` and must complete within `limit`.
    pub fn beat(&self, wait: Duration, limit: Duration) {
        *self.0.lock().expect("heartbeat lock") = Beat {
            last: Instant::now(),
            allowed: wait + limit,
        };
    }

    /// Since the last completed pass, when that is longer than allowed.
    pub fn overdue(&self) -> Option<Duration> {
        let beat = self.0.lock().expect("heartbeat lock");
        let age = beat.last.elapsed();
        (age > beat.allowed).then_some(age)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heartbeat_is_overdue_only_past_the_wait_plus_the_limit() {
        let beat = Heartbeat::new(Duration::from_secs(60));
        assert_eq!(beat.overdue(), None);
        beat.beat(Duration::ZERO, Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
        assert!(beat.overdue().is_some());
        beat.beat(Duration::from_secs(300), Duration::ZERO);
        assert_eq!(beat.overdue(), None, "a long backoff is not a stall");
    }

    use crate::engine::EngineError;
    use crate::outcome::ServiceStatus;
    use crate::outcome::SyncStatus;

    fn pull_failure(registry_down: bool) -> PassError {
        let message = "no".to_string();
        let reference = "app:v2".to_string();
        let source = if registry_down {
            EngineError::RegistryUnreachable { reference, message }
        } else {
            EngineError::ImageNotFound { reference, message }
        };
        PassError::Exec(ExecError::Pull {
            stack: "shop".into(),
            service: "web".into(),
            image: "app:v2".into(),
            source: Box::new(source),
        })
    }

    fn exposed(status: &LoopStatus) -> Vec<String> {
        status.metrics.encode().lines().map(String::from).collect()
    }

    #[test]
    fn images_the_clean_up_removed_add_up_on_metrics() {
        let mut status = LoopStatus::default();
        for removed in [2, 0, 1] {
            let report = PassReport {
                images_removed: removed,
                ..PassReport::default()
            };
            status.record(Duration::from_millis(10), &Ok(report));
        }
        let lines = exposed(&status);
        assert!(
            lines.contains(&"reconciler_images_removed_total 3".into()),
            "{lines:#?}"
        );
    }

    #[test]
    fn history_is_bounded_and_every_pass_is_counted() {
        let mut status = LoopStatus::default();
        for _ in 0..(RECENT_PASSES + 5) {
            status.record(Duration::from_millis(300), &Ok(PassReport::default()));
        }
        assert_eq!(status.recent.len(), RECENT_PASSES);
        assert_eq!(status.passes(), RECENT_PASSES as u64 + 5);
        let lines = exposed(&status);
        let in_half_second = format!(
            "reconciler_reconcile_duration_seconds_bucket{{le=\"0.5\"}} {}",
            RECENT_PASSES + 5
        );
        assert!(lines.contains(&in_half_second), "{lines:#?}");
    }

    #[test]
    fn a_release_whose_image_is_missing_counts_as_a_failure_and_a_registry_outage_does_not() {
        let mut status = LoopStatus::default();
        status.record(Duration::from_secs(1), &Err(pull_failure(false)));
        status.record(Duration::from_secs(1), &Err(pull_failure(true)));
        let lines = exposed(&status);
        assert!(
            lines.contains(&"reconciler_failures_total 1".into()),
            "{lines:#?}"
        );
        assert!(
            lines.contains(&"reconciler_passes_total 2".into()),
            "{lines:#?}"
        );
        assert_eq!(status.last_error, Some(pull_failure(true).to_string()));
    }

    #[test]
    fn a_failed_pass_keeps_showing_the_services_of_the_last_successful_one() {
        let mut status = LoopStatus::default();
        let report = PassReport {
            services: vec![ServiceStatus {
                stack: "shop".into(),
                service: "web".into(),
                sync: SyncStatus::Synced,
                health: "healthy".into(),
            }],
            ..PassReport::default()
        };
        status.record(Duration::from_secs(1), &Ok(report));
        status.record(Duration::from_secs(1), &Err(PassError::Stopped));
        let synced = r#"reconciler_service_sync{stack="shop",service="web",sync="Synced"} 1"#;
        let lines = exposed(&status);
        assert!(lines.contains(&synced.into()), "{lines:#?}");
        assert!(status.last_report.is_some());
    }
}
