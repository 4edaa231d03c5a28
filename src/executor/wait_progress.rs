//! A wait that may take a while (health, a dependency, a monitor window, a volume's writers
//! after a backup or restore) says every few seconds how long it has waited, of how long, and
//! the health it saw last: in text, and as JSON fields `elapsed_s`, `timeout_s` and `health`.

use crate::logging::Who;
use crate::observed::Health;
use std::time::Duration;
use tokio::time::Instant;

/// How often a wait that is still going says so.
const REPORT_EVERY: Duration = Duration::from_secs(5);

pub(crate) struct WaitProgress<'a> {
    who: &'a Who,
    what: String,
    timeout: Duration,
    started: Instant,
    last_report: Instant,
}

impl<'a> WaitProgress<'a> {
    /// `what` starts each line: "waiting for it to be ready", "watching shop-web-1".
    pub(crate) fn new(who: &'a Who, what: impl Into<String>, timeout: Duration) -> Self {
        let now = Instant::now();
        Self {
            who,
            what: what.into(),
            timeout,
            started: now,
            last_report: now,
        }
    }

    /// A wait that shares `deadline` with others before it: its timeout is what is left.
    pub(crate) fn until(who: &'a Who, what: impl Into<String>, deadline: Instant) -> Self {
        Self::new(
            who,
            what,
            deadline.saturating_duration_since(Instant::now()),
        )
    }

    /// Called at each poll; says where the wait is once every [`REPORT_EVERY`].
    pub(crate) fn tick(&mut self, health: Health, running: bool) {
        if self.last_report.elapsed() < REPORT_EVERY {
            return;
        }
        self.last_report = Instant::now();
        let elapsed = self.started.elapsed().as_secs();
        let timeout = self.timeout.as_secs();
        let health = health_words(health, running);
        crate::progress!(
            self.who,
            elapsed_s = elapsed,
            timeout_s = timeout,
            health,
            "{}: {elapsed}s of {timeout}s, {health}",
            self.what
        );
    }
}

fn health_words(health: Health, running: bool) -> &'static str {
    match health {
        _ if !running => "not running",
        Health::None => "running, no healthcheck",
        Health::Starting => "starting",
        Health::Healthy => "healthy",
        Health::Unhealthy => "unhealthy",
    }
}
