//! Carries out a [`Plan`] on the engine, safely and concurrently:
//! - stacks are applied concurrently (`--parallel-stacks`), so a slow health wait or a failing
//!   release in one never delays another;
//! - in a stack, every image is pulled before any container is touched; then each service
//!   starts as soon as the services it depends on (in this pass) are done, at most
//!   `--parallel-services` at once;
//! - a service's `pre_deploy` job runs before its old container is touched ([`job`]);
//! - a service is replaced stop-first or start-first, the new container must prove itself
//!   healthy, and on failure the old one is back ([`service`]);
//! - each outcome is recorded (state, then journal) as soon as it is known, so a crash loses
//!   nothing ([`crate::state::transition`]).

pub mod backup;
mod data_folder;
mod http_probe;
mod job;
mod pull;
mod readiness;
mod recover;
mod replicas;
pub mod restore;
mod service;
mod stack;
mod stack_files;
#[cfg(test)]
mod tests;
mod wait_progress;

use crate::config::ApplySettings;
use crate::desired::Desired;
use crate::engine::{Engine, EngineError};
use crate::observed::Observed;
use crate::outcome::ServiceOutcome;
use crate::plan::Plan;
use crate::state::{now_rfc3339, transition, State, StateDir};
use futures_util::StreamExt;
use std::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// Log lines of a failed container kept for the journal and the operator.
const LOG_TAIL_LINES: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("pulling {image} for {stack}/{service} failed, so nothing was changed: {source}")]
    Pull {
        stack: String,
        service: String,
        image: String,
        source: Box<EngineError>,
    },
    /// Checked before each stack's pulls: an update must not fill the disk the engine keeps
    /// its images and containers on.
    #[error("stack {stack} is not updated, nothing was changed: only {free_mib} MiB free on {} (the Docker Engine's data root, where images and containers are kept), and --min-free-disk asks for at least {min_mib} MiB. Free some space there (`docker system df` shows what uses it; `docker image prune` removes unused images) or lower --min-free-disk; the stack is tried again at the next pass", path.display())]
    DiskFull {
        stack: String,
        path: std::path::PathBuf,
        free_mib: u64,
        min_mib: u64,
    },
    #[error("cannot write out the files of stack {stack}: {message}")]
    StackFiles { stack: String, message: String },
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// A network or volume of the stack exists with another definition; recreating it is a
    /// person's call (a network's containers stop; a volume's data would go).
    #[error("stack {stack} is not applied, nothing was changed: {drift}")]
    ResourceDiffers { stack: String, drift: String },
    #[error("stopped while pulling {image}; nothing was changed")]
    StoppedWhilePulling { image: String },
}

impl ExecError {
    /// Worth trying again soon by itself (engine or registry down, a container removed by hand
    /// mid-pass); the rest waits for a new commit or a person.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Engine(e) => e.is_transient(),
            Self::Pull { source, .. } => source.is_transient(),
            _ => false,
        }
    }
}

/// What one apply did, service by service, in the order the outcomes were known.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub services: Vec<ServiceOutcome>,
}

impl Outcome {
    /// Services that failed or were skipped.
    pub fn failed(&self) -> Vec<&ServiceOutcome> {
        self.services.iter().filter(|o| o.failed()).collect()
    }
}

pub struct Executor<'a, E: Engine> {
    pub engine: &'a E,
    pub state_dir: &'a StateDir,
    pub settings: &'a ApplySettings,
    /// SIGTERM: services in progress finish, no other starts; pulls in flight are dropped.
    pub shutdown: &'a CancellationToken,
    /// Held while git's files are written into a stack's data folder: services of a stack may
    /// put their old revision's files back side by side, and the record of what was written is
    /// one file per stack.
    pub data_writer: std::sync::Mutex<()>,
    /// Told each outcome as it is recorded; it only queues (never waits on the receiver).
    pub notifier: &'a crate::notify::Notifier,
}

impl<E: Engine> Executor<'_, E> {
    /// Apply the plan. Every stack runs to its end even when another fails; the first stack
    /// error (a pull that failed, the engine gone) is returned after all of them, with every
    /// outcome already recorded in `state` and the state dir.
    pub async fn apply(
        &self,
        desired: &Desired,
        observed: &Observed,
        plan: &Plan,
        state: &mut State,
    ) -> Result<Outcome, ExecError> {
        let recorder = Recorder {
            state_dir: self.state_dir,
            state: Mutex::new(std::mem::take(state)),
            outcomes: Mutex::new(Vec::new()),
            notifier: self.notifier,
        };
        let stacks = plan.stacks.iter().filter_map(|stack_plan| {
            let stack = desired.stacks.iter().find(|s| s.name == stack_plan.stack)?;
            Some(self.apply_stack(stack, stack_plan, observed, &recorder))
        });
        let results: Vec<Result<(), ExecError>> = futures_util::stream::iter(stacks)
            .buffer_unordered(self.settings.parallel_stacks.max(1))
            .collect()
            .await;
        *state = recorder.state.into_inner().expect("state lock");
        let outcome = Outcome {
            services: recorder.outcomes.into_inner().expect("outcomes lock"),
        };
        match results.into_iter().find_map(Result::err) {
            Some(error) => Err(error),
            None => Ok(outcome),
        }
    }

    fn stopping(&self) -> bool {
        self.shutdown.is_cancelled()
    }
}

/// Records outcomes as they come from concurrent stacks: the pure transition, then state.json,
/// then the journal, then the notification queue, one outcome at a time.
struct Recorder<'a> {
    state_dir: &'a StateDir,
    state: Mutex<State>,
    outcomes: Mutex<Vec<ServiceOutcome>>,
    notifier: &'a crate::notify::Notifier,
}

impl Recorder<'_> {
    fn record(&self, outcome: ServiceOutcome) -> Result<(), ExecError> {
        let now = now_rfc3339();
        {
            let mut state = self.state.lock().expect("state lock");
            transition::record_outcome(&mut state, &outcome, &now);
            self.state_dir.save(&state)?;
        }
        if let Some(entry) = transition::journal_entry(&outcome, &now) {
            self.state_dir.append_journal(&entry)?;
        }
        // After the journal: a message never tells of what the state dir does not hold.
        self.notifier.outcome(&outcome);
        self.outcomes.lock().expect("outcomes lock").push(outcome);
        Ok(())
    }

    fn finish_stack(&self, stack: &str, revision: &str, all_good: bool) -> Result<(), ExecError> {
        let mut state = self.state.lock().expect("state lock");
        transition::finish_stack(&mut state, stack, revision, all_good);
        self.state_dir.save(&state)?;
        Ok(())
    }
}

/// Crash-safety tests stop the process at a named step: `RECONCILER_FAILPOINT=after-stop-old`.
fn failpoint(name: &str) {
    if std::env::var("RECONCILER_FAILPOINT").is_ok_and(|v| v == name) {
        tracing::warn!("failpoint {name}: exiting");
        std::process::exit(99);
    }
}
