//! The controller: one pass (read, observe, plan, apply) returns what it found and did; one
//! error policy says when to come back; the loop ([`run_loop`]) repeats passes on a timer, on
//! triggers (webhook, engine events, SIGHUP, file changes) and stops on a shutdown token.
//! Failed releases are not retried (the plan marks them); transient errors back off.

mod error_policy;
mod image_cleanup;
mod observe;
mod pass;
mod prune;
mod run_loop;
mod status;

pub use error_policy::{backoff, error_policy, jittered};
pub use observe::{observe, DetailsCache};
pub use pass::{clear_retried_failures, read_desired, reconcile_once, PassReport, WarningsSaid};
pub use run_loop::{run_loop, LoopConfig, Triggers};
pub use status::{Heartbeat, LoopStatus, PassRecord, SharedStatus};

use crate::config::ApplySettings;
use crate::desired::policy::Policy;
use crate::engine::Engine;
use crate::executor::ExecError;
use crate::source::{Credentials, FetchControl, SourceError, SourceSpec};
use crate::state::StateDir;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Desired(#[from] crate::desired::DesiredError),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("stopped before anything was changed")]
    Stopped,
    #[error("{file}: stack '{stack}' names a Compose project that already runs containers the reconciler did not create ({containers}); nothing was changed. If this host's project '{stack}' is meant to move under the reconciler, run with --adopt {stack}")]
    Foreign {
        stack: String,
        file: String,
        containers: String,
    },
}

impl PassError {
    /// Worth trying again soon by itself; the rest waits for a new commit or a person.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Source(e) => e.is_transient(),
            Self::Engine(e) => e.is_transient(),
            Self::Exec(e) => e.is_transient(),
            _ => false,
        }
    }

    /// A container removed by hand mid-pass: an ordinary case the next pass settles.
    pub fn is_container_gone(&self) -> bool {
        match self {
            Self::Engine(e) | Self::Exec(ExecError::Engine(e)) => e.is_gone(),
            _ => false,
        }
    }
}

/// Where desired state comes from, and how to read it.
pub struct SourceSettings {
    pub spec: SourceSpec,
    pub branch: String,
    pub rev: Option<String>,
    pub path: Option<PathBuf>,
    pub stacks: Vec<String>,
    pub credentials: Credentials,
    pub allow_non_fast_forward: bool,
    pub policy: Policy,
    /// Compose projects whose containers the host allows taking over (`--adopt`).
    pub adopt: Vec<String>,
    /// Limits, shutdown and one-at-a-time rule for git fetches.
    pub fetch: FetchControl,
}

/// Everything a pass needs, owned by the caller (a command or the loop) for as long as it runs.
pub struct PassContext<'a, E: Engine> {
    pub engine: &'a E,
    pub source: &'a SourceSettings,
    pub state_dir: &'a StateDir,
    pub settings: &'a ApplySettings,
    /// Cancelled at shutdown: a pass that is still reading returns at once; one that is
    /// changing containers finishes the services in progress and starts no other.
    pub shutdown: CancellationToken,
    /// What inspects told of containers, kept from pass to pass.
    pub details: DetailsCache,
    /// The loader's warnings logged so far, so each is said once.
    pub warned: WarningsSaid,
    /// Where outcomes are told as they are recorded (`--notify-url`; off by default).
    pub notifier: crate::notify::Notifier,
}
