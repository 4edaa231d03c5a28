//! When the next pass comes: one rule for passes that went well and one for every failed pass,
//! after kube-rs's `error_policy`. Triggers (webhook, events, SIGHUP) may bring it sooner.

use super::{PassError, PassReport};
use std::time::{Duration, SystemTime};

/// After a pass that went well: the interval (spread), whatever it changed.
pub fn after_success(_report: &PassReport, interval: Duration) -> Duration {
    jittered(interval)
}

/// After a failed pass. Transient trouble (engine or registry down, a container removed by hand
/// mid-pass) comes back soon, doubling up to `max(interval, 5 min)`; bad input or a rewritten
/// history waits for the interval (a new commit, or a person).
pub fn error_policy(error: &PassError, failures_in_a_row: u32, interval: Duration) -> Duration {
    if error.is_transient() {
        backoff(failures_in_a_row, interval.max(Duration::from_secs(300)))
    } else {
        jittered(interval)
    }
}

/// Exponential backoff for transient errors: 1 s, 2 s, 4 s ... capped, never a hot loop.
pub fn backoff(failures_in_a_row: u32, cap: Duration) -> Duration {
    let secs = 1u64 << failures_in_a_row.saturating_sub(1).min(16);
    Duration::from_secs(secs).min(cap)
}

/// The interval, spread by up to ±10% so many hosts do not fetch in lockstep.
pub fn jittered(interval: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let spread = (nanos % 2001) as f64 / 1000.0 - 1.0; // -1.0 ..= 1.0
    interval.mul_f64(1.0 + 0.1 * spread)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineError;
    use crate::executor::ExecError;

    #[test]
    fn backoff_starts_at_one_second_doubles_and_is_capped() {
        let cap = Duration::from_secs(300);
        assert_eq!(backoff(1, cap), Duration::from_secs(1));
        assert_eq!(backoff(4, cap), Duration::from_secs(8));
        assert_eq!(backoff(30, cap), cap);
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let d = jittered(Duration::from_secs(30));
        assert!(
            d >= Duration::from_secs(27) && d <= Duration::from_secs(33),
            "{d:?}"
        );
    }

    #[test]
    fn a_container_removed_mid_pass_comes_back_in_a_second_not_at_the_interval() {
        let gone = PassError::Exec(ExecError::Engine(EngineError::Gone {
            call: "start container",
            target: "web-1".into(),
            message: "removal of container web-1 is already in progress".into(),
        }));
        let hour = Duration::from_secs(3600);
        assert_eq!(error_policy(&gone, 1, hour), Duration::from_secs(1));
    }

    #[test]
    fn bad_input_waits_for_the_interval() {
        let bad = PassError::Foreign {
            stack: "shop".into(),
            file: "shop/compose.yaml".into(),
            containers: "shop-web-1".into(),
        };
        let wait = error_policy(&bad, 1, Duration::from_secs(60));
        assert!(wait >= Duration::from_secs(54), "{wait:?}");
    }
}
