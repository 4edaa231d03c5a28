//! One pass: read the desired state, observe, plan, apply, and report what it did.

use super::image_cleanup::clean_up_images;
use super::prune::prune_state_dir;
use super::{observe, PassContext, PassError, SourceSettings};
use crate::desired::load::{load, LoadOptions};
use crate::desired::{Desired, LabelKey};
use crate::engine::Engine;
use crate::executor::Executor;
use crate::observed::{Health, Observed, ReplicaSummary};
use crate::outcome::{sync_status, ServiceOutcome, ServiceStatus, Step};
use crate::plan::{plan, Action, Plan, PlanOptions};
use crate::source::{GitSource, Snapshot, SourceError, SourceSpec};
use crate::state::{State, StateDir};

/// Read the desired state: fetch (git) or read (directory), then parse. Blocking work runs on
/// the blocking pool so the runtime keeps serving `/healthz` meanwhile.
pub async fn read_desired(
    source: &SourceSettings,
    state_dir: &StateDir,
    warned: &WarningsSaid,
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
                control: source.fetch.clone(),
            };
            let rev = source.rev.clone();
            let allow = source.allow_non_fast_forward;
            let previous = state_dir.load()?.source_commit;
            crate::source::run_bounded(
                url,
                source.fetch.limits,
                move || -> Result<Snapshot, SourceError> {
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
                },
            )
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
    warned.say(&desired);
    Ok((desired, snapshot))
}

/// The loader's warnings already logged: a loop that reads the same files every minute says
/// each once, not once a pass. Only the last pass's are kept: every push may move them.
#[derive(Debug, Default)]
pub struct WarningsSaid(std::sync::Mutex<std::collections::BTreeSet<String>>);

impl WarningsSaid {
    fn say(&self, desired: &Desired) {
        let mut said = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut now = std::collections::BTreeSet::new();
        for warning in desired.stacks.iter().flat_map(|s| &s.warnings) {
            let text = warning.to_string();
            if !said.contains(&text) && !now.contains(&text) {
                tracing::warn!("{text}");
            }
            now.insert(text);
        }
        *said = now;
    }
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
    /// What was done to each service, in the order it ended.
    pub outcomes: Vec<ServiceOutcome>,
    /// Each desired service as the pass left it.
    pub services: Vec<ServiceStatus>,
    pub suspended: Vec<String>,
    /// Old images the clean-up after this pass deleted.
    pub images_removed: u64,
}

impl PassReport {
    pub fn changed(&self) -> impl Iterator<Item = &ServiceOutcome> {
        self.outcomes.iter().filter(|o| o.changed())
    }

    pub fn failed(&self) -> impl Iterator<Item = &ServiceOutcome> {
        self.outcomes.iter().filter(|o| o.failed())
    }

    pub fn rollbacks(&self) -> impl Iterator<Item = &ServiceOutcome> {
        self.changed().filter(|o| o.step == Step::Rollback)
    }
}

/// One pass: read, observe (resolving leftovers of a crash first), plan, apply.
/// `on_plan` sees the plan before anything is changed (`apply` prints it there).
pub async fn reconcile_once<E: Engine>(
    ctx: &PassContext<'_, E>,
    on_plan: &dyn Fn(&Plan),
) -> Result<PassReport, PassError> {
    let (engine, state_dir, settings) = (ctx.engine, ctx.state_dir, ctx.settings);
    if !settings.dry_run {
        // A pass that cannot record what it does must not start doing it.
        state_dir.check_writable()?;
        // Made before anything is created with it; `diff` and `--dry-run` only read it.
        LabelKey::ensure(state_dir.root()).map_err(|source| state_io(state_dir, source))?;
    }
    // Reading changes nothing: at shutdown it is dropped where it is.
    let read = async {
        let (mut desired, snapshot) = read_desired(ctx.source, state_dir, &ctx.warned).await?;
        let suspended = state_dir.suspended();
        desired.stacks.retain(|s| !suspended.contains(&s.name));
        let observed = observe(engine, &desired, &ctx.details).await?;
        Ok::<_, PassError>((desired, snapshot, suspended, observed))
    };
    let (desired, snapshot, suspended, mut observed) = tokio::select! {
        read = read => read?,
        () = ctx.shutdown.cancelled() => return Err(PassError::Stopped),
    };
    let mut state = state_dir.load()?;
    clear_retried_failures(&mut state, state_dir, &desired, settings.retry_failed);
    refuse_foreign_projects(&desired, &observed, &state, &ctx.source.adopt)?;
    let executor = Executor {
        engine,
        state_dir,
        settings,
        shutdown: &ctx.shutdown,
        data_writer: Default::default(),
        notifier: &ctx.notifier,
    };
    let recovered = !settings.dry_run && executor.recover(&desired, &observed).await?;
    if recovered {
        observed = observe(engine, &desired, &ctx.details).await?;
    }
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
    if settings.dry_run {
        return Ok(PassReport {
            commit: snapshot.commit,
            services: service_statuses(&desired, &observed, &state),
            plan,
            outcomes: vec![],
            suspended,
            images_removed: 0,
        });
    }
    note_desired_images(&mut state, &desired, &plan);
    let applied = if plan.has_drift() {
        executor.apply(&desired, &observed, &plan, &mut state).await
    } else {
        Ok(Default::default())
    };
    // Checkouts appear only for a commit not read before, revision folders only when a pass
    // applies something: an idle pass has nothing to prune and asks the engine nothing more.
    let wrote_files =
        plan.has_drift() || (snapshot.commit.is_some() && snapshot.commit != state.source_commit);
    state.source_commit = snapshot.commit.clone().or(state.source_commit);
    state_dir.save(&state)?;
    let outcome = applied?;
    if wrote_files {
        // Housekeeping: a pass that did its work is not failed by it.
        let commit = snapshot.commit.as_deref();
        if let Err(e) = prune_state_dir(engine, state_dir, &state, commit).await {
            tracing::warn!("not pruning the state dir this pass: {e}");
        }
    }
    // What runs now: listed again only when this pass changed something.
    if !outcome.services.is_empty() {
        observed.containers = engine
            .list_containers(
                &desired
                    .stacks
                    .iter()
                    .map(|s| s.name.clone())
                    .collect::<Vec<_>>(),
            )
            .await?;
    }
    // Images go only after a pass that changed a service: an idle pass asks the engine nothing.
    let mut images_removed = 0;
    if settings.keep_images > 0 && outcome.services.iter().any(|o| o.changed()) {
        match clean_up_images(
            engine,
            state_dir,
            &desired,
            settings.keep_images,
            &ctx.shutdown,
        )
        .await
        {
            Ok(cleaned) => images_removed = cleaned.images,
            Err(e) => tracing::warn!("not removing old images this pass: {e}"),
        }
    }
    Ok(PassReport {
        commit: snapshot.commit,
        services: service_statuses(&desired, &observed, &state),
        plan,
        outcomes: outcome.services,
        suspended,
        images_removed,
    })
}

/// `reconciler retry` and `apply --retry-failed`: forget recorded failures (and failed
/// `pre_deploy` jobs), so the plan tries those services again.
pub fn clear_retried_failures(
    state: &mut State,
    state_dir: &StateDir,
    desired: &Desired,
    retry_all: bool,
) {
    let mut retries = state_dir.take_retries();
    if retry_all {
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
        // A person's ask runs a failed pre_deploy job again; one that succeeded stays done.
        if let Err(e) = state_dir.forget_failed_jobs(&stack, &service) {
            tracing::warn!("cannot clear the failed job of {stack}/{service} for the retry: {e}");
        }
        if let Some(s) = state
            .stacks
            .get_mut(&stack)
            .and_then(|st| st.services.get_mut(&service))
        {
            s.failed = None;
        }
    }
}

/// What `status` shows without a source, and failures that are history once the desired state
/// runs again (the bad commit was reverted): status must not keep saying Failed.
fn note_desired_images(state: &mut State, desired: &Desired, plan: &Plan) {
    for stack in &desired.stacks {
        for service in stack.services.values() {
            let recorded = state.service_mut(&stack.name, &service.name);
            recorded.desired_image = Some(service.spec.image.clone());
            recorded.desired_replicas = (service.replicas != 1).then_some(service.replicas);
        }
    }
    for sp in &plan.stacks {
        for s in sp.services.iter().filter(|s| s.action == Action::InSync) {
            state.service_mut(&sp.stack, &s.service).failed = None;
        }
    }
}

fn service_statuses(desired: &Desired, observed: &Observed, state: &State) -> Vec<ServiceStatus> {
    desired
        .stacks
        .iter()
        .flat_map(|stack| stack.services.values().map(move |svc| (stack, svc)))
        .map(|(stack, svc)| {
            let summary = ReplicaSummary::of(&observed.replicas(&stack.name, &svc.name));
            let health = match summary.state.as_deref() {
                Some("running") => summary.health.as_str().to_string(),
                Some(other) => other.to_string(),
                None if svc.replicas == 0 => Health::None.as_str().to_string(),
                None => "missing".to_string(),
            };
            ServiceStatus {
                stack: stack.name.clone(),
                service: svc.name.clone(),
                sync: sync_status(
                    false,
                    state.failure(&stack.name, &svc.name).is_some(),
                    Some(&svc.spec.image),
                    summary.sync_image(svc.replicas, Some(&svc.spec.image)),
                ),
                health,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{Problem, Stack};

    fn warning_at(line: usize) -> Desired {
        Desired {
            stacks: vec![Stack {
                name: "shop".into(),
                dir: "/repo/shop".into(),
                file: "shop/compose.yaml".into(),
                revision: "r1".into(),
                services: Default::default(),
                volumes: Default::default(),
                networks: Default::default(),
                warnings: vec![Problem {
                    file: "shop/compose.yaml".into(),
                    line,
                    key: "services.web.build".into(),
                    message: "'build' is ignored".into(),
                }],
            }],
        }
    }

    #[test]
    fn warnings_said_are_only_those_of_the_last_pass_so_pushes_do_not_grow_them() {
        let said = WarningsSaid::default();
        // Each push moves the warning to another line: a new text each time.
        for line in 1..=100 {
            said.say(&warning_at(line));
        }
        let kept = said.0.lock().unwrap();
        assert_eq!(kept.len(), 1, "{} kept", kept.len());
        assert!(kept.contains("shop/compose.yaml:100: services.web.build: 'build' is ignored"));
    }
}
