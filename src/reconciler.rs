//! One reconcile pass, and the loop that repeats it: every pass is level-triggered
//! (fetch, load, observe, plan, apply), returns when to come back, and one error policy decides
//! the retry. Failed releases are not retried (the plan marks them), transient errors back off.

use crate::config::ApplySettings;
use crate::desired::load::{load, LoadOptions};
use crate::desired::policy::Policy;
use crate::desired::{Desired, LabelKey};
use crate::engine::Engine;
use crate::executor::{ExecError, Executor};
use crate::observed::observe;
use crate::plan::{plan, Action, Plan, PlanOptions};
use crate::source::{Credentials, GitSource, Snapshot, SourceError, SourceSpec};
use crate::state::StateDir;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

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
            Self::Exec(ExecError::Engine(e)) => e.is_transient(),
            Self::Exec(ExecError::Pull { source, .. }) => source.is_transient(),
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
}

/// Read the desired state: fetch (git) or read (directory), then parse. Blocking work runs on
/// the blocking pool so the runtime keeps serving `/healthz` meanwhile.
pub async fn read_desired(
    source: &SourceSettings,
    state_dir: &StateDir,
) -> Result<(Desired, Snapshot), PassError> {
    let snapshot = match &source.spec {
        SourceSpec::Directory(dir) => {
            if source.rev.is_some() {
                return Err(SourceError::RevOnDirectory(dir.display().to_string()).into());
            }
            if !dir.is_dir() {
                return Err(SourceError::NoDirectory(dir.clone()).into());
            }
            Snapshot {
                dir: dir.clone(),
                commit: None,
            }
        }
        SourceSpec::Git { url } => {
            let git = GitSource {
                url: url.clone(),
                branch: source.branch.clone(),
                credentials: source.credentials.clone(),
                state_dir: state_dir.root().to_path_buf(),
            };
            let rev = source.rev.clone();
            let allow = source.allow_non_fast_forward;
            let previous = state_dir.load()?.source_commit;
            crate::source::run_bounded(url, move || -> Result<Snapshot, SourceError> {
                let tip = git.fetch()?;
                let commit = match rev {
                    Some(rev) => git.resolve(&rev)?,
                    None => {
                        if let Some(previous) = previous {
                            git.check_fast_forward(&previous, &tip, allow)?;
                        }
                        tip
                    }
                };
                git.checkout(&commit)
            })
            .await?
        }
    };
    let mut dir = snapshot.dir.clone();
    if let Some(sub) = &source.path {
        dir = dir.join(sub);
    }
    let options = LoadOptions {
        stacks: source.stacks.clone(),
        host_env_dir: Some(state_dir.env_dir()),
        policy: source.policy.clone(),
        revision: snapshot.commit.clone(),
        repo_root: Some(snapshot.dir.clone()),
    };
    let shown = dir.clone();
    // A bug in the loader must fail this pass, not end the loop: the next commit may fix it.
    let mut desired = tokio::task::spawn_blocking(move || load(&dir, &options))
        .await
        .map_err(|e| crate::desired::DesiredError::Io {
            path: shown,
            source: std::io::Error::other(format!("the loader failed unexpectedly: {e}")),
        })??;
    let key = LabelKey::load(state_dir.root()).map_err(|source| state_io(state_dir, source))?;
    for service in desired
        .stacks
        .iter_mut()
        .flat_map(|s| s.services.values_mut())
    {
        service.label_key = key.clone();
    }
    Ok((desired, snapshot))
}

/// A stack whose project already runs containers the reconciler did not create (started by
/// Compose, or by hand with Compose's labels) would take them over, and their volumes with
/// them. `name:` is the pusher's to choose, so that needs the host's word: `--adopt PROJECT`,
/// or the project recorded in state as the reconciler's already. Nothing is touched otherwise.
fn refuse_foreign_projects(
    desired: &Desired,
    observed: &crate::observed::Observed,
    state: &crate::state::State,
    adopt: &[String],
) -> Result<(), PassError> {
    for stack in &desired.stacks {
        if adopt.contains(&stack.name) || state.stacks.contains_key(&stack.name) {
            continue;
        }
        let foreign: Vec<String> = observed
            .containers
            .iter()
            .filter(|c| c.project == stack.name && !c.is_managed())
            .map(|c| c.name.clone())
            .collect();
        if !foreign.is_empty() {
            return Err(PassError::Foreign {
                stack: stack.name.clone(),
                file: stack.file.clone(),
                containers: foreign.join(", "),
            });
        }
    }
    Ok(())
}

fn state_io(state_dir: &StateDir, source: std::io::Error) -> PassError {
    PassError::State(crate::state::StateError::Io {
        path: state_dir.root().join(crate::label_key::FILE_NAME),
        source,
    })
}

/// What one pass found and did, for `/status`, `/metrics` and the log.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PassReport {
    pub commit: Option<String>,
    pub plan: Plan,
    pub changed: Vec<String>,
    pub failed: Vec<String>,
    /// Updates that returned a service to the image it ran before (a revert).
    pub rollbacks: Vec<String>,
    /// Health of each service's container as observed at the start of the pass:
    /// (stack, service, healthy | unhealthy | starting | none | missing).
    pub health: Vec<(String, String, String)>,
    pub suspended: Vec<String>,
}

/// One pass: read, observe (resolving leftovers of a crash first), plan, apply.
/// `on_plan` sees the plan before anything is changed (`apply` prints it there).
pub async fn reconcile_once<E: Engine>(
    engine: &E,
    source: &SourceSettings,
    state_dir: &StateDir,
    settings: &ApplySettings,
    on_plan: &dyn Fn(&Plan),
) -> Result<PassReport, PassError> {
    if !settings.dry_run {
        // A pass that cannot record what it does must not start doing it.
        state_dir.check_writable()?;
        // Made before anything is created with it; `diff` and `--dry-run` only read it.
        LabelKey::ensure(state_dir.root()).map_err(|source| state_io(state_dir, source))?;
    }
    let (mut desired, snapshot) = read_desired(source, state_dir).await?;
    let mut state = state_dir.load()?;
    let suspended = state_dir.suspended();
    desired.stacks.retain(|s| !suspended.contains(&s.name));
    let mut retries = state_dir.take_retries();
    if settings.retry_failed {
        for stack in &desired.stacks {
            retries.extend(
                stack
                    .services
                    .keys()
                    .map(|s| (stack.name.clone(), s.clone())),
            );
        }
    }
    for (stack, service) in retries {
        if let Some(s) = state
            .stacks
            .get_mut(&stack)
            .and_then(|st| st.services.get_mut(&service))
        {
            s.failed = None;
        }
    }
    let executor = Executor {
        engine,
        state_dir,
        settings,
    };
    let mut observed = observe(engine, &desired).await?;
    refuse_foreign_projects(&desired, &observed, &state, &source.adopt)?;
    // From here the pass changes containers and state: shutdown waits for it (the executor
    // stops between services). Before, it only read, and shutdown may drop it.
    let _changing = (!settings.dry_run).then(Changing::enter);
    if !settings.dry_run && executor.recover(&observed).await? {
        observed = observe(engine, &desired).await?;
    }
    let health = desired
        .stacks
        .iter()
        .flat_map(|stack| stack.services.keys().map(move |svc| (stack, svc)))
        .map(|(stack, svc)| {
            let h = match observed.primary(&stack.name, svc) {
                Some(c) if c.is_running() => serde_json::to_value(c.health)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                Some(c) => c.state.clone(),
                None => "missing".to_string(),
            };
            (stack.name.clone(), svc.clone(), h)
        })
        .collect();
    let mut plan = plan(
        &desired,
        &observed,
        &state,
        &PlanOptions {
            prune: settings.prune,
        },
    );
    if !settings.self_heal {
        plan.without_self_heal(|stack, service| {
            state
                .stacks
                .get(stack)
                .and_then(|s| s.services.get(service))
                .is_some_and(|s| s.running_revision.is_some())
        });
    }
    on_plan(&plan);
    if !settings.dry_run {
        for stack in &desired.stacks {
            for service in stack.services.values() {
                state.service_mut(&stack.name, &service.name).desired_image =
                    Some(service.spec.image.clone());
            }
        }
        // A failure is history once the desired state runs again (e.g. the bad commit was
        // reverted): status must not keep saying Failed.
        for sp in &plan.stacks {
            for s in sp.services.iter().filter(|s| s.action == Action::InSync) {
                state.service_mut(&sp.stack, &s.service).failed = None;
            }
        }
    }
    let outcome = if plan.has_drift() && !settings.dry_run {
        executor
            .apply(&desired, &observed, &plan, &mut state)
            .await?
    } else {
        Default::default()
    };
    if !settings.dry_run {
        // Checkouts appear only for a commit not read before, revision folders only when a pass
        // applies something: an idle pass has nothing to prune and asks the engine nothing more.
        let wrote_files = plan.has_drift()
            || (snapshot.commit.is_some() && snapshot.commit != state.source_commit);
        state.source_commit = snapshot.commit.clone().or(state.source_commit);
        state_dir.save(&state)?;
        // Housekeeping: a pass that did its work is not failed by it.
        if wrote_files {
            let commit = snapshot.commit.as_deref();
            if let Err(e) = prune_state_dir(engine, state_dir, &state, commit).await {
                tracing::warn!("not pruning the state dir this pass: {e}");
            }
        }
    }
    Ok(PassReport {
        commit: snapshot.commit,
        failed: outcome.failed,
        changed: outcome.changed,
        rollbacks: outcome.rollbacks,
        health,
        suspended,
        plan,
    })
}

static CHANGING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether a pass is past reading and is changing containers or state. The loop drops a pass
/// at shutdown only while this is false.
pub fn pass_is_changing() -> bool {
    CHANGING.load(std::sync::atomic::Ordering::SeqCst)
}

/// Marks the changing part of a pass; cleared when the pass ends, however it ends.
struct Changing;

impl Changing {
    fn enter() -> Self {
        CHANGING.store(true, std::sync::atomic::Ordering::SeqCst);
        Changing
    }
}

impl Drop for Changing {
    fn drop(&mut self) {
        CHANGING.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Remove the checkouts and revision folders nothing needs any more (see [`StateDir::prune`]).
/// Kept: what any container of these stacks was created from (running or not: a stopped one
/// still mounts its folder), what state names (last applied, last good, running), the commit
/// just read. When the engine cannot say which containers exist, nothing is pruned.
async fn prune_state_dir<E: Engine>(
    engine: &E,
    state_dir: &StateDir,
    state: &crate::state::State,
    commit: Option<&str>,
) -> Result<(), crate::engine::EngineError> {
    let mut projects: std::collections::BTreeSet<String> =
        state_dir.stacks_with_files().into_iter().collect();
    projects.extend(state.stacks.keys().cloned());
    let projects: Vec<String> = projects.into_iter().collect();
    let containers = if projects.is_empty() {
        vec![]
    } else {
        engine.list_containers(&projects).await?
    };
    let mut keep = crate::state::Keep::default();
    let mut note = |stack: &str, revision: &str| {
        keep.revisions
            .entry(stack.to_string())
            .or_default()
            .insert(revision.to_string());
        keep.commits.insert(revision.to_string());
    };
    for c in &containers {
        if let Some(revision) = c.revision() {
            note(&c.project, revision);
        }
    }
    for (name, st) in &state.stacks {
        let running = st
            .services
            .values()
            .filter_map(|s| s.running_revision.as_deref());
        for revision in st
            .last_applied
            .iter()
            .chain(st.last_good.iter())
            .map(String::as_str)
            .chain(running)
        {
            note(name, revision);
        }
    }
    keep.commits.extend(commit.map(str::to_string));
    keep.commits.extend(state.source_commit.clone());
    let state_dir_root = state_dir.root().to_path_buf();
    let pruned = {
        let dir = StateDir::new(state_dir_root);
        tokio::task::spawn_blocking(move || dir.prune(&keep))
            .await
            .expect("prune task panicked")
    };
    for path in pruned.checkouts.iter().chain(&pruned.revisions) {
        tracing::debug!("pruned {}", path.display());
    }
    Ok(())
}

/// What the loop shares with the HTTP server.
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
    /// Seconds per pass, for the histogram.
    pub durations: Vec<f64>,
}

pub type SharedStatus = Arc<Mutex<LoopStatus>>;

/// Exponential backoff for transient errors: 1 s, 2 s, 4 s ... capped, never a hot loop.
pub fn backoff(failures_in_a_row: u32, cap: Duration) -> Duration {
    let secs = 1u64 << failures_in_a_row.min(16);
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

/// Record a pass in the shared status.
pub fn record_pass(
    status: &SharedStatus,
    started: Instant,
    result: &Result<PassReport, PassError>,
) {
    let mut s = status.lock().expect("status lock");
    s.passes += 1;
    s.durations.push(started.elapsed().as_secs_f64());
    match result {
        Ok(report) => {
            s.last_success = Some(SystemTime::now());
            s.last_fetch = Some(SystemTime::now());
            s.last_error = None;
            s.applies += report.changed.len() as u64;
            s.failures += report.failed.len() as u64;
            s.rollbacks += report.rollbacks.len() as u64;
            s.last_report = Some(report.clone());
        }
        Err(e) => {
            s.last_error = Some(e.to_string());
            // A release whose image cannot be pulled is a failure too, not only an error.
            if matches!(e, PassError::Exec(ExecError::Pull { .. })) && !e.is_transient() {
                s.failures += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let cap = Duration::from_secs(300);
        assert_eq!(backoff(0, cap), Duration::from_secs(1));
        assert_eq!(backoff(3, cap), Duration::from_secs(8));
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
}
