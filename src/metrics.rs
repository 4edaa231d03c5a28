//! What `/metrics` shows: the Prometheus registry and its metric handles, updated once per pass
//! and encoded in the Prometheus text format (0.0.4), the format Prometheus always accepts.

use crate::outcome::ServiceStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::{Duration, SystemTime};

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds (seconds) of the pass-duration histogram.
pub const DURATION_BUCKETS: &[f64] =
    &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SyncLabels {
    stack: String,
    service: String,
    sync: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct HealthLabels {
    stack: String,
    service: String,
    health: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StackLabels {
    stack: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// What one pass changed, as the counters count it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassCounts {
    pub applied: u64,
    pub failed: u64,
    pub rolled_back: u64,
    pub images_removed: u64,
}

/// The registry and the handles that fill it. Counters and the histogram only grow; the
/// per-service and per-stack families show the last successful pass alone.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    service_sync: Family<SyncLabels, Gauge>,
    service_health: Family<HealthLabels, Gauge>,
    stack_suspended: Family<StackLabels, Gauge>,
    duration: Histogram,
    applies: Counter,
    failures: Counter,
    rollbacks: Counter,
    passes: Counter,
    images_removed: Counter,
    /// A family of one unlabelled series, so the metric is absent until the first fetch
    /// rather than claiming one in 1970.
    last_fetch: Family<Vec<(String, String)>, Gauge>,
    /// Runbook steps, counted in the state dir by whichever process did them
    /// ([`Metrics::show_runbook_counts`]).
    backups: Family<ResultLabels, Counter>,
    restores: Family<ResultLabels, Counter>,
    jobs: Family<ResultLabels, Counter>,
    window_failures: Counter,
    /// Messages to `--notify-url`, counted by the queue ([`Metrics::show_notification_counts`]).
    notifications: Family<ResultLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let metrics = Self {
            registry: Registry::default(),
            service_sync: Family::default(),
            service_health: Family::default(),
            stack_suspended: Family::default(),
            duration: Histogram::new(DURATION_BUCKETS.iter().copied()),
            applies: Counter::default(),
            failures: Counter::default(),
            rollbacks: Counter::default(),
            passes: Counter::default(),
            images_removed: Counter::default(),
            last_fetch: Family::default(),
            backups: Family::default(),
            restores: Family::default(),
            jobs: Family::default(),
            window_failures: Counter::default(),
            notifications: Family::default(),
        };
        let mut registry = Registry::default();
        // The registry adds the final "." to each help text, and "_total" to each counter.
        registry.register(
            "reconciler_service_sync",
            "Sync state per service (1 for the current state)",
            metrics.service_sync.clone(),
        );
        registry.register(
            "reconciler_service_health",
            "Container health per service after the last pass (1 for the current state)",
            metrics.service_health.clone(),
        );
        registry.register(
            "reconciler_stack_suspended",
            "Stacks the operator suspended (1 while suspended)",
            metrics.stack_suspended.clone(),
        );
        registry.register(
            "reconciler_reconcile_duration_seconds",
            "Duration of a reconcile pass",
            metrics.duration.clone(),
        );
        registry.register(
            "reconciler_applies",
            "Services changed",
            metrics.applies.clone(),
        );
        registry.register(
            "reconciler_failures",
            "Service updates that failed",
            metrics.failures.clone(),
        );
        registry.register(
            "reconciler_rollbacks",
            "Updates that put a service back on the image it ran before (a git revert)",
            metrics.rollbacks.clone(),
        );
        registry.register(
            "reconciler_passes",
            "Reconcile passes",
            metrics.passes.clone(),
        );
        registry.register(
            "reconciler_images_removed",
            "Old images the clean-up after a pass deleted",
            metrics.images_removed.clone(),
        );
        registry.register(
            "reconciler_last_successful_fetch_timestamp_seconds",
            "When desired state was last read",
            metrics.last_fetch.clone(),
        );
        registry.register(
            "reconciler_backups",
            "Volume backups taken before an update, by result",
            metrics.backups.clone(),
        );
        registry.register(
            "reconciler_restores",
            "Volume restores (reconciler restore), by result",
            metrics.restores.clone(),
        );
        registry.register(
            "reconciler_jobs",
            "pre_deploy jobs run, by result",
            metrics.jobs.clone(),
        );
        registry.register(
            "reconciler_watch_window_failures",
            "New containers that failed inside their monitor window and were rolled back",
            metrics.window_failures.clone(),
        );
        registry.register(
            "reconciler_notifications",
            "Messages to the notification webhook, by result (sent, failed after retries, dropped when the queue was full)",
            metrics.notifications.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    /// Bring the runbook counters up to the state dir's counts (kept there so a restore run by
    /// hand counts too, and counts survive a restart); they only ever grow.
    pub fn show_runbook_counts(&self, counts: &crate::state::runbook::Counts) {
        use crate::state::runbook::RunbookCounter as C;
        let raise = |counter: &Counter, to: u64| {
            let now = counter.get();
            if to > now {
                counter.inc_by(to - now);
            }
        };
        for c in C::ALL {
            let n = counts.get(c.key()).copied().unwrap_or(0);
            let result = |r: &'static str| ResultLabels { result: r };
            match c {
                C::BackupOk => raise(&self.backups.get_or_create(&result("ok")), n),
                C::BackupFailed => raise(&self.backups.get_or_create(&result("failed")), n),
                C::RestoreOk => raise(&self.restores.get_or_create(&result("ok")), n),
                C::RestoreFailed => raise(&self.restores.get_or_create(&result("failed")), n),
                C::JobOk => raise(&self.jobs.get_or_create(&result("ok")), n),
                C::JobFailed => raise(&self.jobs.get_or_create(&result("failed")), n),
                C::WindowFailure => raise(&self.window_failures, n),
            }
        }
    }

    /// Bring the notification counters up to the queue's `(sent, failed, dropped)`.
    pub fn show_notification_counts(&self, (sent, failed, dropped): (u64, u64, u64)) {
        for (result, to) in [("sent", sent), ("failed", failed), ("dropped", dropped)] {
            let counter = self.notifications.get_or_create(&ResultLabels { result });
            let now = counter.get();
            if to > now {
                counter.inc_by(to - now);
            }
        }
    }

    /// A pass ended, successfully or not, after `duration`, having changed what `counts` says.
    pub fn record_pass(&self, duration: Duration, counts: PassCounts) {
        self.passes.inc();
        self.duration.observe(duration.as_secs_f64());
        self.applies.inc_by(counts.applied);
        self.failures.inc_by(counts.failed);
        self.rollbacks.inc_by(counts.rolled_back);
        self.images_removed.inc_by(counts.images_removed);
    }

    /// Show these services and suspended stacks, and no others: a service that left the
    /// desired state loses its series here rather than reporting its last state forever.
    pub fn show_services(&self, services: &[ServiceStatus], suspended: &[String]) {
        self.service_sync.clear();
        self.service_health.clear();
        self.stack_suspended.clear();
        for sv in services {
            self.service_sync
                .get_or_create(&SyncLabels {
                    stack: sv.stack.clone(),
                    service: sv.service.clone(),
                    sync: sv.sync.as_str(),
                })
                .set(1);
            self.service_health
                .get_or_create(&HealthLabels {
                    stack: sv.stack.clone(),
                    service: sv.service.clone(),
                    health: sv.health.clone(),
                })
                .set(1);
        }
        for stack in suspended {
            self.stack_suspended
                .get_or_create(&StackLabels {
                    stack: stack.clone(),
                })
                .set(1);
        }
    }

    /// Desired state was read at `at`.
    pub fn fetched(&self, at: SystemTime) {
        if let Ok(since_epoch) = at.duration_since(SystemTime::UNIX_EPOCH) {
            let secs = i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX);
            self.last_fetch.get_or_create(&Vec::new()).set(secs);
        }
    }

    /// Passes recorded so far.
    pub fn passes(&self) -> u64 {
        self.passes.get()
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::SyncStatus;

    fn service(stack: &str, name: &str, sync: SyncStatus, health: &str) -> ServiceStatus {
        ServiceStatus {
            stack: stack.into(),
            service: name.into(),
            sync,
            health: health.into(),
        }
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn two_passes_show_the_counts_the_histogram_and_only_the_services_still_desired() {
        let metrics = Metrics::new();
        metrics.record_pass(
            Duration::from_millis(300),
            PassCounts {
                applied: 2,
                failed: 1,
                rolled_back: 1,
                images_removed: 2,
            },
        );
        metrics.show_services(
            &[
                service("shop", "web", SyncStatus::Synced, "healthy"),
                service("shop", "worker", SyncStatus::Failed, "none"),
            ],
            &["blog".to_string()],
        );
        metrics.fetched(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let first = metrics.encode();
        for line in [
            r#"reconciler_service_sync{stack="shop",service="web",sync="Synced"} 1"#,
            r#"reconciler_service_sync{stack="shop",service="worker",sync="Failed"} 1"#,
            r#"reconciler_service_health{stack="shop",service="web",health="healthy"} 1"#,
            r#"reconciler_service_health{stack="shop",service="worker",health="none"} 1"#,
            r#"reconciler_stack_suspended{stack="blog"} 1"#,
            "reconciler_last_successful_fetch_timestamp_seconds 1700000000",
        ] {
            assert!(lines(&first).contains(&line), "{line} in:\n{first}");
        }

        metrics.record_pass(
            Duration::from_secs(3),
            PassCounts {
                applied: 1,
                ..PassCounts::default()
            },
        );
        metrics.show_services(
            &[service("shop", "web", SyncStatus::OutOfSync, "starting")],
            &[],
        );
        let second = metrics.encode();
        for line in [
            "# HELP reconciler_service_sync Sync state per service (1 for the current state).",
            "# TYPE reconciler_service_sync gauge",
            r#"reconciler_service_sync{stack="shop",service="web",sync="OutOfSync"} 1"#,
            r#"reconciler_service_health{stack="shop",service="web",health="starting"} 1"#,
            "# TYPE reconciler_reconcile_duration_seconds histogram",
            r#"reconciler_reconcile_duration_seconds_bucket{le="0.25"} 0"#,
            r#"reconciler_reconcile_duration_seconds_bucket{le="0.5"} 1"#,
            r#"reconciler_reconcile_duration_seconds_bucket{le="1"} 1"#,
            r#"reconciler_reconcile_duration_seconds_bucket{le="5"} 2"#,
            r#"reconciler_reconcile_duration_seconds_bucket{le="120"} 2"#,
            r#"reconciler_reconcile_duration_seconds_bucket{le="+Inf"} 2"#,
            "reconciler_reconcile_duration_seconds_sum 3.3",
            "reconciler_reconcile_duration_seconds_count 2",
            "# HELP reconciler_applies_total Services changed.",
            "# TYPE reconciler_applies_total counter",
            "reconciler_applies_total 3",
            "reconciler_failures_total 1",
            "reconciler_rollbacks_total 1",
            "reconciler_passes_total 2",
            "# HELP reconciler_images_removed_total Old images the clean-up after a pass deleted.",
            "reconciler_images_removed_total 2",
            "reconciler_last_successful_fetch_timestamp_seconds 1700000000",
        ] {
            assert!(lines(&second).contains(&line), "{line} in:\n{second}");
        }
        for gone in ["worker", "sync=\"Synced\"", "healthy", "blog"] {
            assert!(!second.contains(gone), "{gone} still in:\n{second}");
        }
        assert_eq!(metrics.passes(), 2);
    }

    #[test]
    fn no_fetch_timestamp_is_shown_before_the_first_fetch() {
        let metrics = Metrics::new();
        metrics.record_pass(Duration::from_millis(10), PassCounts::default());
        let text = metrics.encode();
        assert!(
            !lines(&text)
                .iter()
                .any(|l| l.starts_with("reconciler_last_successful_fetch_timestamp_seconds")),
            "{text}"
        );
        assert!(
            lines(&text).contains(&"reconciler_passes_total 1"),
            "{text}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let metrics = Metrics::new();
        metrics.show_services(
            &[service("s", "web", SyncStatus::Synced, "say \"hi\"\n")],
            &[],
        );
        let text = metrics.encode();
        assert!(
            text.contains(r#"health="say \"hi\"\n"} 1"#),
            "a quote or newline in a value cannot break the line:\n{text}"
        );
    }
}
