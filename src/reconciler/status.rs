//! What the loop shares with the HTTP server: the last pass, bounded history and counters.

use super::{PassError, PassReport};
use crate::executor::ExecError;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Passes kept in [`LoopStatus::recent`].
pub const RECENT_PASSES: usize = 20;

/// Upper bounds (seconds) of the pass-duration histogram.
pub const DURATION_BUCKETS: &[f64] =
    &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

#[derive(Debug, Default)]
pub struct LoopStatus {
    pub last_report: Option<PassReport>,
    pub last_error: Option<String>,
    pub last_success: Option<SystemTime>,
    pub last_fetch: Option<SystemTime>,
    pub passes: u64,
    pub applies: u64,
    pub failures: u64,
    pub rollbacks: u64,
    /// The last [`RECENT_PASSES`] passes, newest last.
    pub recent: VecDeque<PassRecord>,
    /// Pass durations: count per bucket of [`DURATION_BUCKETS`] (not cumulative), and the sum.
    pub duration_buckets: [u64; 11],
    pub duration_sum: f64,
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
    /// Record a pass that took `duration`.
    pub fn record(&mut self, duration: Duration, result: &Result<PassReport, PassError>) {
        self.passes += 1;
        let secs = duration.as_secs_f64();
        self.duration_sum += secs;
        if let Some(i) = DURATION_BUCKETS.iter().position(|b| secs <= *b) {
            self.duration_buckets[i] += 1;
        }
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
                self.last_success = Some(SystemTime::now());
                self.last_fetch = Some(SystemTime::now());
                self.last_error = None;
                record.changed = report.changed().count();
                record.failed = report.failed().count();
                record.commit = report.commit.clone();
                self.applies += record.changed as u64;
                self.failures += record.failed as u64;
                self.rollbacks += report.rollbacks().count() as u64;
                self.last_report = Some(report.clone());
            }
            Err(e) => {
                self.last_error = Some(e.to_string());
                record.error = self.last_error.clone();
                // A release whose image cannot be pulled is a failure too, not only an error.
                if matches!(e, PassError::Exec(ExecError::Pull { .. })) && !e.is_transient() {
                    self.failures += 1;
                }
            }
        }
        if self.recent.len() == RECENT_PASSES {
            self.recent.pop_front();
        }
        self.recent.push_back(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_bounded_and_every_pass_is_counted() {
        let mut status = LoopStatus::default();
        for _ in 0..(RECENT_PASSES + 5) {
            status.record(Duration::from_millis(300), &Ok(PassReport::default()));
        }
        assert_eq!(status.recent.len(), RECENT_PASSES);
        assert_eq!(status.passes, RECENT_PASSES as u64 + 5);
        assert_eq!(
            status.duration_buckets[3],
            RECENT_PASSES as u64 + 5,
            "0.3 s is in le=0.5"
        );
    }
}
