//! When a container counts as ready, and when a dependency does: polled on tokio's clock, so
//! tests drive the timeouts with paused time. Long waits say how far along they are.

use super::http_probe::probe_until;
use super::wait_progress::WaitProgress;
use super::{ExecError, Executor};
use crate::desired::{DependsCondition, Service, Stack};
use crate::engine::{ContainerStatus, Engine, EngineError};
use crate::logging::Who;
use crate::observed::{Health, Observed, Role};
use crate::state::runbook::{Activity, ActivityKind, RunbookCounter};
use crate::state::StateDir;
use std::time::Duration;
use tokio::time::Instant;

pub(super) const POLL: Duration = Duration::from_millis(250);

/// Why a container is not (yet) ready, from one inspect.
enum Verdict {
    Ready,
    Waiting,
    Failed(String),
}

impl<E: Engine> Executor<'_, E> {
    /// Healthy per the healthcheck; with none, running `min_ready` without a restart. Fails at
    /// once when the container exits or turns unhealthy. Then the http probe, then the
    /// `monitor` window ([`Self::watch_window`]) when `watch` names the container.
    pub(super) async fn wait_ready(
        &self,
        who: &Who,
        id: &str,
        service: &Service,
        watch: Option<&str>,
    ) -> Result<Result<(), String>, ExecError> {
        let started = Instant::now();
        let deadline = started + service.health_timeout;
        let mut progress =
            WaitProgress::new(who, "waiting for it to be ready", service.health_timeout);
        let restarts = self.inspect(id).await?.restart_count;
        loop {
            let s = self.inspect(id).await?;
            if !s.running {
                self.removed_by_hand(id, &s).await?;
            }
            let verdict = match s.health {
                _ if !s.running => Verdict::Failed(exited(&s)),
                _ if s.restart_count > restarts => {
                    Verdict::Failed("restarted while starting".into())
                }
                Health::Healthy => Verdict::Ready,
                Health::Unhealthy => Verdict::Failed("turned unhealthy".into()),
                Health::Starting => Verdict::Waiting,
                Health::None if started.elapsed() >= service.min_ready => Verdict::Ready,
                Health::None => Verdict::Waiting,
            };
            match verdict {
                Verdict::Ready => break,
                Verdict::Failed(reason) => return Ok(Err(reason)),
                Verdict::Waiting => {}
            }
            if Instant::now() >= deadline {
                return Ok(Err(format!(
                    "not healthy within {}",
                    humantime::format_duration(service.health_timeout)
                )));
            }
            progress.tick(s.health, s.running);
            tokio::time::sleep(POLL).await;
        }
        if let Some(url) = &service.http_probe {
            crate::progress!(who, "probing {url}");
            if let Err(e) = probe_until(url, deadline).await {
                return Ok(Err(format!("http probe {url} failed: {e}")));
            }
        }
        crate::progress!(
            who,
            elapsed_s = started.elapsed().as_secs_f64(),
            "ready after {:.1}s",
            started.elapsed().as_secs_f64()
        );
        match watch {
            Some(name) if !service.monitor.is_zero() => {
                self.watch_window(who, id, name, service.monitor, restarts)
                    .await
            }
            _ => Ok(Ok(())),
        }
    }

    /// `deploy.update_config.monitor`: a ready container must keep running, without a restart
    /// and without turning unhealthy, for this long. The service shows as watching meanwhile;
    /// a failure says what happened and when, and is counted.
    async fn watch_window(
        &self,
        who: &Who,
        id: &str,
        name: &str,
        window: Duration,
        restarts: i64,
    ) -> Result<Result<(), String>, ExecError> {
        let until = std::time::SystemTime::now() + window;
        crate::progress!(
            who,
            "watching {name} for {} (deploy.update_config.monitor)",
            humantime::format_duration(window)
        );
        let _watching = ActivityGuard::set(
            self.state_dir,
            who,
            Activity {
                until: Some(humantime::format_rfc3339_seconds(until).to_string()),
                ..Activity::now(ActivityKind::Watching, name)
            },
        );
        let started = Instant::now();
        let mut progress = WaitProgress::new(who, format!("watching {name}"), window);
        while started.elapsed() < window {
            tokio::time::sleep(POLL.min(window - started.elapsed())).await;
            let s = self.inspect(id).await?;
            if !s.running {
                self.removed_by_hand(id, &s).await?;
            }
            progress.tick(s.health, s.running);
            if let Some(what) = window_failure(&s, restarts) {
                let reason = format!(
                    "{what} {}s into the {} monitor window",
                    started.elapsed().as_secs(),
                    humantime::format_duration(window)
                );
                self.state_dir.count(RunbookCounter::WindowFailure);
                return Ok(Err(reason));
            }
        }
        crate::progress!(who, "{name} stayed up through its monitor window");
        Ok(Ok(()))
    }

    /// `docker rm -f` kills the container before removing it: for a moment it looks like one
    /// that exited (137). Look once more; a container on its way out is
    /// [`EngineError::Gone`](crate::engine::EngineError::Gone), not a failed release.
    async fn removed_by_hand(&self, id: &str, stopped: &ContainerStatus) -> Result<(), ExecError> {
        let gone = |state: &str| EngineError::Gone {
            call: "inspect container",
            target: id.to_string(),
            message: format!("the container is being removed (state {state})"),
        };
        if stopped.state == "removing" {
            return Err(gone(&stopped.state).into());
        }
        tokio::time::sleep(POLL).await;
        let again = self.inspect(id).await?;
        if again.state == "removing" {
            return Err(gone(&again.state).into());
        }
        Ok(())
    }

    /// Inspect. A container that went away (removed by hand) is not a verdict on the release:
    /// it ends the pass as [`EngineError::Gone`](crate::engine::EngineError::Gone), which the
    /// error policy retries within seconds (and recovery puts back an old container first).
    async fn inspect(&self, id: &str) -> Result<ContainerStatus, ExecError> {
        Ok(self.engine.inspect_container(id).await?)
    }

    /// `depends_on` conditions of dependencies that this pass does not change.
    pub(super) async fn wait_dependencies(
        &self,
        who: &Who,
        stack: &Stack,
        service: &Service,
        observed: &Observed,
    ) -> Result<Result<(), String>, ExecError> {
        for (dep, condition) in &service.depends_on {
            if *condition == DependsCondition::ServiceStarted {
                continue;
            }
            let Some(container) = self.find_primary(&stack.name, dep, observed).await? else {
                return Ok(Err(format!("dependency {dep} has no container")));
            };
            let timeout = stack
                .services
                .get(dep)
                .map_or(Duration::from_secs(60), |d| d.health_timeout);
            let deadline = Instant::now() + timeout;
            let mut progress =
                WaitProgress::new(who, format!("waiting for its dependency {dep}"), timeout);
            loop {
                let status = self.inspect(&container).await?;
                if let Some(result) = dependency_verdict(dep, condition, &status) {
                    return Ok(result);
                }
                progress.tick(status.health, status.running);
                // Nothing was changed for this service yet: at shutdown it stops waiting.
                if self.stopping() {
                    return Ok(Err("stopping: left for the next run".into()));
                }
                if Instant::now() > deadline {
                    return Ok(Err(format!(
                        "dependency {dep} did not become ready within {}",
                        humantime::format_duration(timeout)
                    )));
                }
                tokio::time::sleep(POLL).await;
            }
        }
        Ok(Ok(()))
    }

    /// The container id of a service now (it may have been replaced earlier in this pass).
    async fn find_primary(
        &self,
        project: &str,
        service: &str,
        observed: &Observed,
    ) -> Result<Option<String>, ExecError> {
        let now = self.engine.list_containers(&[project.to_string()]).await?;
        Ok(now
            .iter()
            .find(|c| c.service == service && c.role() == Role::Primary)
            .or_else(|| observed.primary(project, service))
            .map(|c| c.id.clone()))
    }
}

/// What went wrong with a container that was ready, if anything.
fn window_failure(s: &ContainerStatus, restarts: i64) -> Option<String> {
    if !s.running {
        Some(exited(s))
    } else if s.restart_count > restarts {
        Some("restarted".into())
    } else if s.health == Health::Unhealthy {
        Some("turned unhealthy".into())
    } else {
        None
    }
}

/// `exited with code 137 (OOM killed)`.
fn exited(s: &ContainerStatus) -> String {
    let oom = if s.oom_killed { " (OOM killed)" } else { "" };
    format!("exited with code {}{oom}", s.exit_code)
}

/// A service's activity in the state dir, cleared when dropped: every way out of a watch
/// window (passed, failed, an engine error, a dropped future) clears it.
struct ActivityGuard<'a> {
    state_dir: &'a StateDir,
    stack: String,
    service: String,
}

impl<'a> ActivityGuard<'a> {
    fn set(state_dir: &'a StateDir, who: &Who, activity: Activity) -> Self {
        if let Err(e) = state_dir.set_activity(&who.stack, &who.service, Some(&activity)) {
            tracing::warn!(stack = %who.stack, service = %who.service, "cannot record the activity: {e}");
        }
        Self {
            state_dir,
            stack: who.stack.to_string(),
            service: who.service.to_string(),
        }
    }
}

impl Drop for ActivityGuard<'_> {
    fn drop(&mut self) {
        if let Err(e) = self
            .state_dir
            .set_activity(&self.stack, &self.service, None)
        {
            tracing::warn!(stack = %self.stack, service = %self.service, "cannot clear the activity: {e}");
        }
    }
}

/// Whether a dependency meets its condition (`Some(Ok)`), never will (`Some(Err)`), or may yet.
fn dependency_verdict(
    dep: &str,
    condition: &DependsCondition,
    status: &ContainerStatus,
) -> Option<Result<(), String>> {
    match condition {
        DependsCondition::ServiceHealthy => match status.health {
            _ if !status.running => Some(Err(format!("dependency {dep} is not running"))),
            Health::Healthy | Health::None => Some(Ok(())),
            Health::Unhealthy => Some(Err(format!("dependency {dep} is unhealthy"))),
            Health::Starting => None,
        },
        _ => match (status.running, status.exit_code) {
            (false, 0) if !status.started_at.starts_with("0001") => Some(Ok(())),
            (false, code) if code != 0 => {
                Some(Err(format!("dependency {dep} exited with code {code}")))
            }
            _ => None,
        },
    }
}
