//! Carries out a [`Plan`] on the engine, safely:
//! every image is pulled before any container is touched; a service is replaced stop-first or
//! start-first; the new container must prove itself healthy; on failure the old one is back.

use crate::config::ApplySettings;
use crate::desired::{DependsCondition, Desired, Service, Stack, UpdateOrder};
use crate::engine::{CreateRequest, Engine, EngineError, PullProgress};
use crate::labels;
use crate::observed::{Observed, ObservedContainer, Role};
use crate::plan::{spec_label, Action, Plan, ServicePlan};
use crate::state::{now_rfc3339, Failure, JournalEntry, State, StateDir};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::time::Duration;
// tokio's clock, so tests with paused time drive every deadline and wait.
use tokio::time::Instant;

/// Log lines of a failed container kept for the journal and the operator.
const LOG_TAIL_LINES: usize = 50;
const POLL: Duration = Duration::from_millis(250);

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
    #[error("only {free_mib} MiB free where the engine keeps images (at least {min_mib} MiB wanted); nothing was changed. Free some space (old images: `docker image prune`), or lower --min-free-disk")]
    DiskFull { free_mib: u64, min_mib: u64 },
    #[error("cannot write out the files of stack {stack}: {message}")]
    StackFiles { stack: String, message: String },
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("stopped while pulling {image}; nothing was changed")]
    StoppedWhilePulling { image: String },
}

/// What one apply did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub changed: Vec<String>,
    /// `stack/service: reason` for each service that failed and was restored.
    pub failed: Vec<String>,
    /// `stack/service` of updates back to the image the service ran before.
    pub rollbacks: Vec<String>,
}

pub struct Executor<'a, E: Engine> {
    pub engine: &'a E,
    pub state_dir: &'a StateDir,
    pub settings: &'a ApplySettings,
}

impl<E: Engine> Executor<'_, E> {
    /// Finish or undo updates a previous run left half-done, from names and labels alone.
    /// Returns whether anything was changed (then observe again).
    pub async fn recover(&self, observed: &Observed) -> Result<bool, ExecError> {
        let mut changed = false;
        for leftover in observed
            .containers
            .iter()
            .filter(|c| c.role() != Role::Primary)
            // A candidate is always one we created: a look-alike name is not ours to touch.
            .filter(|c| c.role() != Role::Candidate || c.is_managed())
        {
            let primary = observed.primary(&leftover.project, &leftover.service);
            let original = leftover
                .name
                .trim_end_matches(labels::BACKUP_SUFFIX)
                .trim_end_matches(labels::CANDIDATE_SUFFIX)
                .to_string();
            let who = format!("{}/{}", leftover.project, leftover.service);
            match (leftover.role(), primary) {
                (Role::Backup, Some(new))
                    if new.is_running()
                        && new.health != crate::observed::Health::Unhealthy
                        && new.health != crate::observed::Health::Starting =>
                {
                    progress(
                        &who,
                        "an earlier update finished but left the old container; removing it",
                    );
                    self.engine.remove_container(&leftover.id).await?;
                }
                (Role::Backup, new) => {
                    progress(
                        &who,
                        "an earlier update was interrupted; restoring the old container",
                    );
                    if let Some(new) = new {
                        self.engine.remove_container(&new.id).await?;
                    }
                    self.engine
                        .rename_container(&leftover.id, &original)
                        .await?;
                    self.engine.start_container(&leftover.id).await?;
                }
                (Role::Candidate, Some(_)) => {
                    progress(
                        &who,
                        "removing an unproven container from an interrupted update",
                    );
                    self.engine.remove_container(&leftover.id).await?;
                }
                (Role::Candidate, None)
                    if leftover.is_running()
                        && leftover.health != crate::observed::Health::Unhealthy =>
                {
                    progress(&who, "an interrupted update had replaced the old container; promoting the new one");
                    self.engine
                        .rename_container(&leftover.id, &original)
                        .await?;
                }
                (Role::Candidate, None) => {
                    self.engine.remove_container(&leftover.id).await?;
                }
                (Role::Primary, _) => {}
            }
            changed = true;
        }
        Ok(changed)
    }

    pub async fn apply(
        &self,
        desired: &Desired,
        observed: &Observed,
        plan: &Plan,
        state: &mut State,
    ) -> Result<Outcome, ExecError> {
        let digests = self.pull_all(desired, plan, state).await?;
        let mut outcome = Outcome::default();
        for stack_plan in &plan.stacks {
            let Some(stack) = desired.stacks.iter().find(|s| s.name == stack_plan.stack) else {
                continue;
            };
            let work: Vec<&ServicePlan> = stack_plan
                .services
                .iter()
                .filter(|s| {
                    matches!(
                        s.action,
                        Action::Create | Action::Update | Action::Start | Action::Remove
                    )
                })
                .collect();
            if work.is_empty() {
                let st = state.stacks.entry(stack.name.clone()).or_default();
                st.last_applied = Some(stack.revision.clone());
                if !stack_plan
                    .services
                    .iter()
                    .any(|s| s.action == Action::Failed)
                {
                    st.last_good = Some(stack.revision.clone());
                }
                continue;
            }
            self.prepare_stack(stack, &work).await?;
            let mut failed_here: BTreeSet<String> = BTreeSet::new();
            for sp in work {
                if stop_requested() {
                    // SIGTERM: the service in progress has finished; the rest waits for the next
                    // start, which will find it as drift. Nothing is left half-done.
                    progress(
                        &stack.name,
                        "stopping: remaining services are left for the next run",
                    );
                    break;
                }
                let who = format!("{}/{}", stack.name, sp.service);
                if sp.action == Action::Remove {
                    self.remove(stack, sp, observed, state).await?;
                    outcome.changed.push(who);
                    continue;
                }
                let service = &stack.services[&sp.service];
                if let Some(dep) = service.depends_on.keys().find(|d| failed_here.contains(*d)) {
                    progress(&who, &format!("skipped: its dependency {dep} failed"));
                    failed_here.insert(sp.service.clone());
                    outcome
                        .failed
                        .push(format!("{who}: skipped, dependency {dep} failed"));
                    continue;
                }
                if let Err(reason) = self.wait_dependencies(stack, service, observed).await? {
                    progress(&who, &format!("skipped: {reason}"));
                    failed_here.insert(sp.service.clone());
                    outcome.failed.push(format!("{who}: {reason}"));
                    continue;
                }
                let started = Instant::now();
                let current = observed.primary(&stack.name, &sp.service);
                let digest = digests.get(&service.spec.image).cloned();
                let result = match sp.action {
                    Action::Create => {
                        self.create_new(stack, service, None, digest.as_deref())
                            .await?
                    }
                    Action::Start => {
                        self.start_existing(service, current.expect("start needs a container"))
                            .await?
                    }
                    _ => {
                        self.update(
                            stack,
                            service,
                            sp,
                            current.expect("update needs a container"),
                            digest.as_deref(),
                        )
                        .await?
                    }
                };
                let rollback = self.record(
                    stack,
                    service,
                    sp,
                    current,
                    &result,
                    started.elapsed(),
                    state,
                )?;
                if rollback {
                    outcome.rollbacks.push(who.clone());
                }
                match result {
                    Ok(()) => outcome.changed.push(who),
                    Err(f) => {
                        failed_here.insert(sp.service.clone());
                        outcome.failed.push(format!("{who}: {}", f.reason));
                    }
                }
            }
            let st = state.stacks.entry(stack.name.clone()).or_default();
            st.last_applied = Some(stack.revision.clone());
            if failed_here.is_empty() {
                st.last_good = Some(stack.revision.clone());
            }
            self.state_dir.save(state)?;
        }
        Ok(outcome)
    }

    /// Pull every image the plan needs, before any container is touched. Returns the digest
    /// each reference resolved to.
    async fn pull_all(
        &self,
        desired: &Desired,
        plan: &Plan,
        state: &mut State,
    ) -> Result<BTreeMap<String, String>, ExecError> {
        let mut needed: Vec<(&Stack, &Service)> = Vec::new();
        for sp in &plan.stacks {
            let Some(stack) = desired.stacks.iter().find(|s| s.name == sp.stack) else {
                continue;
            };
            for s in sp
                .services
                .iter()
                .filter(|s| matches!(s.action, Action::Create | Action::Update))
            {
                needed.push((stack, &stack.services[&s.service]));
            }
        }
        // Asked only when there is work: an in-sync pass costs one container listing, no more.
        let local = if needed.is_empty() {
            Vec::new()
        } else {
            self.engine.list_image_references().await?
        };
        let to_pull: Vec<&(&Stack, &Service)> = needed
            .iter()
            .filter(|(_, s)| {
                s.pull_policy == crate::desired::PullPolicy::Always
                    || !crate::observed::image_present(&local, &s.spec.image)
            })
            .collect();
        if !to_pull.is_empty() {
            if let Some(free) = self.engine.free_disk_bytes().await? {
                if free < self.settings.min_free_disk {
                    return Err(ExecError::DiskFull {
                        free_mib: free / (1 << 20),
                        min_mib: self.settings.min_free_disk / (1 << 20),
                    });
                }
            }
        }
        let mut pulled: BTreeSet<&str> = BTreeSet::new();
        for (stack, service) in to_pull {
            let image = service.spec.image.as_str();
            if !pulled.insert(image) {
                continue;
            }
            let who = format!("{}/{}", stack.name, service.name);
            progress(&who, &format!("pulling {image}"));
            let mut bar = PullBar::new(&who);
            // A registry that never answers must not hold up a shutdown: nothing is changed yet.
            let mut on_progress = |p| bar.update(p);
            let pulled_or_stopped = tokio::select! {
                result = self.engine.pull(image, &mut on_progress) => Some(result),
                () = until_stop_requested() => None,
            };
            let Some(result) = pulled_or_stopped else {
                bar.finish();
                return Err(ExecError::StoppedWhilePulling {
                    image: image.to_string(),
                });
            };
            if let Err(source) = result {
                bar.finish();
                if !source.is_transient() {
                    // A missing tag or refused access is the release's fault: do not loop on it.
                    let failure = Failure {
                        revision: stack.revision.clone(),
                        spec_hash: service.spec_hash(),
                        reason: format!("pull failed: {source}"),
                        at: now_rfc3339(),
                    };
                    state.service_mut(&stack.name, &service.name).failed = Some(failure);
                    self.state_dir.save(state)?;
                    self.journal(
                        stack,
                        &service.name,
                        "pull",
                        None,
                        Some(image),
                        "failed",
                        Duration::ZERO,
                        Some(source.to_string()),
                        vec![],
                    )?;
                }
                return Err(ExecError::Pull {
                    stack: stack.name.clone(),
                    service: service.name.clone(),
                    image: image.to_string(),
                    source: Box::new(source),
                });
            }
            bar.finish();
        }
        let mut digests = BTreeMap::new();
        for (_, service) in &needed {
            if let Some(info) = self.engine.inspect_image(&service.spec.image).await? {
                let digest = info.repo_digests.first().cloned().unwrap_or(info.id);
                digests.insert(service.spec.image.clone(), digest);
            }
        }
        Ok(digests)
    }

    /// Networks, volumes and the repository files that services mount.
    async fn prepare_stack(&self, stack: &Stack, work: &[&ServicePlan]) -> Result<(), ExecError> {
        let services: Vec<&Service> = work
            .iter()
            .filter(|sp| sp.action != Action::Remove)
            .filter_map(|sp| stack.services.get(&sp.service))
            .collect();
        let mut networks = BTreeSet::new();
        let mut volumes = BTreeSet::new();
        for s in &services {
            if s.spec.network_mode.is_none() {
                networks.extend(s.spec.networks.keys().cloned());
            }
            volumes.extend(
                s.spec
                    .mounts
                    .iter()
                    .filter(|m| m.kind == crate::desired::MountKind::Volume)
                    .filter_map(|m| m.source.clone()),
            );
        }
        for key in networks {
            self.engine
                .ensure_network(&stack.name, &key, &stack.networks[&key])
                .await?;
        }
        for key in volumes {
            self.engine
                .ensure_volume(&stack.name, &key, &stack.volumes[&key])
                .await?;
        }
        if services.iter().any(|s| !s.repo_binds.is_empty()) {
            let target = self.state_dir.stack_files_dir(&stack.name, &stack.revision);
            // What was written is recorded, so pruning can tell it from data a container wrote.
            let record = |written: &std::path::Path| {
                self.state_dir
                    .record_stack_files(&stack.name, &stack.revision, written)
                    .map_err(|e| e.to_string())
            };
            write_out_stack(&stack.dir, &target, record).map_err(|message| {
                ExecError::StackFiles {
                    stack: stack.name.clone(),
                    message,
                }
            })?;
        }
        Ok(())
    }

    /// `depends_on` conditions of dependencies that were not touched in this pass.
    async fn wait_dependencies(
        &self,
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
            loop {
                let status = self.engine.inspect_container(&container).await?;
                let done = match condition {
                    DependsCondition::ServiceHealthy => match status.health.as_deref() {
                        Some("healthy") => Some(Ok(())),
                        Some("unhealthy") => Some(Err(format!("dependency {dep} is unhealthy"))),
                        None if status.running => Some(Ok(())),
                        _ if !status.running => {
                            Some(Err(format!("dependency {dep} is not running")))
                        }
                        _ => None,
                    },
                    _ => match (status.running, status.exit_code) {
                        (false, 0) if !status.started_at.starts_with("0001") => Some(Ok(())),
                        (false, code) if code != 0 => {
                            Some(Err(format!("dependency {dep} exited with code {code}")))
                        }
                        _ => None,
                    },
                };
                if let Some(result) = done {
                    return Ok(result);
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

    fn request(
        &self,
        stack: &Stack,
        service: &Service,
        name: String,
        digest: Option<&str>,
    ) -> CreateRequest {
        let hash = service.spec_hash();
        let mut extra = BTreeMap::from([
            (labels::PROJECT.to_string(), stack.name.clone()),
            (labels::SERVICE.to_string(), service.name.clone()),
            (labels::NUMBER.to_string(), "1".to_string()),
            (labels::ONEOFF.to_string(), "False".to_string()),
            (labels::CONFIG_HASH.to_string(), hash.clone()),
            (labels::COMPOSE_VERSION.to_string(), "1.29.2".to_string()),
            (labels::SPEC_HASH.to_string(), hash),
            (labels::REVISION.to_string(), stack.revision.clone()),
            (labels::SPEC.to_string(), spec_label(service)),
            (labels::MANAGED.to_string(), "true".to_string()),
        ]);
        if let Some(d) = digest {
            extra.insert(labels::IMAGE_DIGEST.to_string(), d.to_string());
        }
        CreateRequest {
            name,
            project: stack.name.clone(),
            service: service.name.clone(),
            spec: service.spec.clone(),
            labels: extra,
            networks: stack
                .networks
                .iter()
                .map(|(k, n)| (k.clone(), n.name.clone()))
                .collect(),
            volumes: stack
                .volumes
                .iter()
                .map(|(k, v)| (k.clone(), v.name.clone()))
                .collect(),
            repo_root: (!service.repo_binds.is_empty())
                .then(|| self.state_dir.stack_files_dir(&stack.name, &stack.revision)),
        }
    }

    fn target_name(stack: &Stack, service: &Service) -> String {
        labels::container_name(
            &stack.name,
            &service.name,
            service.spec.container_name.as_deref(),
        )
    }

    /// Create and start a container, then wait for it to prove itself. On failure it is removed
    /// (its last log lines kept), so a broken release never lingers.
    async fn create_new(
        &self,
        stack: &Stack,
        service: &Service,
        name: Option<String>,
        digest: Option<&str>,
    ) -> Result<Result<(), Failed>, ExecError> {
        let who = format!("{}/{}", stack.name, service.name);
        let name = name.unwrap_or_else(|| Self::target_name(stack, service));
        progress(
            &who,
            &format!("creating {name} from {}", service.spec.image),
        );
        let id = match self
            .engine
            .create_container(&self.request(stack, service, name, digest))
            .await
        {
            Ok(id) => id,
            Err(e) if !e.is_transient() => {
                return Ok(Err(Failed::new(format!("create failed: {e}"), vec![])))
            }
            Err(e) => return Err(e.into()),
        };
        if let Err(e) = self.engine.start_container(&id).await {
            if e.is_transient() {
                return Err(e.into());
            }
            let logs = self
                .engine
                .logs_tail(&id, LOG_TAIL_LINES)
                .await
                .unwrap_or_default();
            self.engine.remove_container(&id).await?;
            return Ok(Err(Failed::new(format!("start failed: {e}"), logs)));
        }
        failpoint("after-start");
        match self.wait_ready(&who, &id, service).await? {
            Ok(()) => Ok(Ok(())),
            Err(reason) => {
                let logs = self
                    .engine
                    .logs_tail(&id, LOG_TAIL_LINES)
                    .await
                    .unwrap_or_default();
                self.engine.remove_container(&id).await?;
                Ok(Err(Failed::new(reason, logs)))
            }
        }
    }

    async fn start_existing(
        &self,
        service: &Service,
        container: &ObservedContainer,
    ) -> Result<Result<(), Failed>, ExecError> {
        let who = format!("{}/{}", container.project, service.name);
        progress(
            &who,
            &format!("starting {} (it was {})", container.name, container.state),
        );
        if let Err(e) = self.engine.start_container(&container.id).await {
            return Ok(Err(Failed::new(format!("start failed: {e}"), vec![])));
        }
        match self.wait_ready(&who, &container.id, service).await? {
            Ok(()) => Ok(Ok(())),
            Err(reason) => {
                let logs = self
                    .engine
                    .logs_tail(&container.id, LOG_TAIL_LINES)
                    .await
                    .unwrap_or_default();
                Ok(Err(Failed::new(reason, logs)))
            }
        }
    }

    async fn update(
        &self,
        stack: &Stack,
        service: &Service,
        sp: &ServicePlan,
        old: &ObservedContainer,
        digest: Option<&str>,
    ) -> Result<Result<(), Failed>, ExecError> {
        let who = format!("{}/{}", stack.name, service.name);
        let target = Self::target_name(stack, service);
        let grace = service.spec.stop_grace_period_ms.map(Duration::from_millis);
        match sp.order.unwrap_or(UpdateOrder::StopFirst) {
            UpdateOrder::StartFirst => {
                let candidate = format!("{target}{}", labels::CANDIDATE_SUFFIX);
                let result = self
                    .create_new(stack, service, Some(candidate), digest)
                    .await?;
                if let Err(f) = result {
                    progress(
                        &who,
                        &format!(
                            "FAILED: {}; the old container {} was never stopped",
                            f.reason, old.name
                        ),
                    );
                    return Ok(Err(f));
                }
                progress(
                    &who,
                    &format!("new container is healthy; stopping {}", old.name),
                );
                self.engine.stop_container(&old.id, grace).await?;
                failpoint("after-stop-old");
                self.engine.remove_container(&old.id).await?;
                let new_id = self
                    .find_primary_by_name(
                        &stack.name,
                        &format!("{target}{}", labels::CANDIDATE_SUFFIX),
                    )
                    .await?;
                if let Some(id) = new_id {
                    self.engine.rename_container(&id, &target).await?;
                }
                Ok(Ok(()))
            }
            UpdateOrder::StopFirst => {
                let backup = format!("{}{}", old.name, labels::BACKUP_SUFFIX);
                progress(&who, &format!("stopping {}", old.name));
                self.engine.stop_container(&old.id, grace).await?;
                failpoint("after-stop-old");
                self.engine.rename_container(&old.id, &backup).await?;
                failpoint("after-rename-old");
                let result = self.create_new(stack, service, None, digest).await?;
                match result {
                    Ok(()) => {
                        failpoint("before-remove-old");
                        self.engine.remove_container(&old.id).await?;
                        Ok(Ok(()))
                    }
                    Err(f) => {
                        progress(
                            &who,
                            &format!("FAILED: {}; restoring {}", f.reason, old.name),
                        );
                        self.engine.rename_container(&old.id, &old.name).await?;
                        self.engine.start_container(&old.id).await?;
                        match self.wait_ready(&who, &old.id, service).await? {
                            Ok(()) => {
                                progress(&who, &format!("restored {} ({})", old.name, old.image))
                            }
                            Err(reason) => progress(
                                &who,
                                &format!(
                                    "restored {} but it is not ready either: {reason}",
                                    old.name
                                ),
                            ),
                        }
                        Ok(Err(f))
                    }
                }
            }
        }
    }

    async fn find_primary_by_name(
        &self,
        project: &str,
        name: &str,
    ) -> Result<Option<String>, ExecError> {
        let now = self.engine.list_containers(&[project.to_string()]).await?;
        Ok(now.into_iter().find(|c| c.name == name).map(|c| c.id))
    }

    async fn remove(
        &self,
        stack: &Stack,
        sp: &ServicePlan,
        observed: &Observed,
        state: &mut State,
    ) -> Result<(), ExecError> {
        let who = format!("{}/{}", stack.name, sp.service);
        let Some(container) = observed.primary(&stack.name, &sp.service) else {
            return Ok(());
        };
        progress(
            &who,
            &format!(
                "removing {} (pruning is on; volumes are kept)",
                container.name
            ),
        );
        self.engine.stop_container(&container.id, None).await?;
        self.engine.remove_container(&container.id).await?;
        if let Some(st) = state.stacks.get_mut(&stack.name) {
            st.services.remove(&sp.service);
        }
        self.journal(
            stack,
            &sp.service,
            "remove",
            Some(&container.image),
            None,
            "ok",
            Duration::ZERO,
            None,
            vec![],
        )?;
        Ok(())
    }

    /// A revert: the service goes back to the image its last successful update replaced.
    fn returns_to_previous_image(
        &self,
        stack: &Stack,
        service: &Service,
    ) -> Result<bool, ExecError> {
        let journal = self.state_dir.journal()?;
        let last = journal.iter().rev().find(|e| {
            e.stack == stack.name
                && e.service == service.name
                && e.result == "ok"
                && (e.action == "update" || e.action == "rollback")
        });
        Ok(last.is_some_and(|e| e.from.as_deref() == Some(service.spec.image.as_str())))
    }

    /// Healthy per the healthcheck; with none, running `min_ready` without a restart. Fails at
    /// once when the container exits or turns unhealthy. Then the http probe, then `monitor`.
    async fn wait_ready(
        &self,
        who: &str,
        id: &str,
        service: &Service,
    ) -> Result<Result<(), String>, ExecError> {
        let started = Instant::now();
        let deadline = started + service.health_timeout;
        let first = self.engine.inspect_container(id).await?;
        let restarts = first.restart_count;
        loop {
            let s = match self.engine.inspect_container(id).await {
                Ok(s) => s,
                Err(e) if !e.is_transient() => {
                    return Ok(Err(format!("the container went away: {e}")))
                }
                Err(e) => return Err(e.into()),
            };
            if !s.running {
                return Ok(Err(format!("exited with code {}", s.exit_code)));
            }
            if s.restart_count > restarts {
                return Ok(Err("restarted while starting".into()));
            }
            let ready = match s.health.as_deref() {
                Some("healthy") => true,
                Some("unhealthy") => return Ok(Err("turned unhealthy".into())),
                Some(_) => false,
                None => started.elapsed() >= service.min_ready,
            };
            if ready {
                break;
            }
            if Instant::now() >= deadline {
                return Ok(Err(format!(
                    "not healthy within {}",
                    humantime::format_duration(service.health_timeout)
                )));
            }
            tokio::time::sleep(POLL).await;
        }
        if let Some(url) = &service.http_probe {
            if let Err(e) = probe_until(url, deadline).await {
                return Ok(Err(format!("http probe {url} failed: {e}")));
            }
        }
        progress(
            who,
            &format!("ready after {:.1}s", started.elapsed().as_secs_f64()),
        );
        let watch_until = Instant::now() + service.monitor;
        while Instant::now() < watch_until {
            tokio::time::sleep(POLL).await;
            let s = match self.engine.inspect_container(id).await {
                Ok(s) => s,
                Err(e) if !e.is_transient() => {
                    return Ok(Err(format!("the container went away: {e}")))
                }
                Err(e) => return Err(e.into()),
            };
            if !s.running || s.restart_count > restarts || s.health.as_deref() == Some("unhealthy")
            {
                return Ok(Err("failed during the monitor period".into()));
            }
        }
        Ok(Ok(()))
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        stack: &Stack,
        service: &Service,
        sp: &ServicePlan,
        old: Option<&ObservedContainer>,
        result: &Result<(), Failed>,
        elapsed: Duration,
        state: &mut State,
    ) -> Result<bool, ExecError> {
        let rollback = sp.action == Action::Update
            && result.is_ok()
            && self.returns_to_previous_image(stack, service)?;
        let action = match sp.action {
            Action::Create => "create",
            Action::Start => "start",
            _ if rollback => "rollback",
            _ => "update",
        };
        let secrets: Vec<&str> = service
            .secret_env
            .iter()
            .filter_map(|k| service.spec.environment.get(k).map(String::as_str))
            .collect();
        let entry = state.service_mut(&stack.name, &service.name);
        let (outcome, reason, logs) = match result {
            Ok(()) => {
                entry.failed = None;
                entry.running_revision = Some(stack.revision.clone());
                entry.since = Some(now_rfc3339());
                ("ok", None, vec![])
            }
            Err(f) => {
                let reason = crate::mask::scrub(&f.reason, secrets.iter().copied());
                // Starting an existing container again (self-heal) is not a release: its failure
                // must not block the next pass from creating the service anew.
                if sp.action != Action::Start {
                    entry.failed = Some(Failure {
                        revision: stack.revision.clone(),
                        spec_hash: service.spec_hash(),
                        reason: reason.clone(),
                        at: now_rfc3339(),
                    });
                }
                let logs: Vec<String> = f
                    .logs
                    .iter()
                    .map(|l| crate::mask::scrub(l, secrets.iter().copied()))
                    .collect();
                if !logs.is_empty() {
                    eprintln!("  last log lines of the failed container:");
                    for line in &logs {
                        eprintln!("  | {line}");
                    }
                }
                ("failed", Some(reason), logs)
            }
        };
        self.state_dir.save(state)?;
        self.journal(
            stack,
            &service.name,
            action,
            old.map(|o| o.image.as_str()),
            Some(&service.spec.image),
            outcome,
            elapsed,
            reason,
            logs,
        )?;
        Ok(rollback)
    }

    #[allow(clippy::too_many_arguments)]
    fn journal(
        &self,
        stack: &Stack,
        service: &str,
        action: &str,
        from: Option<&str>,
        to: Option<&str>,
        result: &str,
        elapsed: Duration,
        reason: Option<String>,
        log_tail: Vec<String>,
    ) -> Result<(), ExecError> {
        self.state_dir.append_journal(&JournalEntry {
            at: now_rfc3339(),
            revision: stack.revision.clone(),
            stack: stack.name.clone(),
            service: service.to_string(),
            action: action.to_string(),
            from: from.map(str::to_string),
            to: to.map(str::to_string),
            result: result.to_string(),
            duration_ms: elapsed.as_millis() as u64,
            reason,
            log_tail,
        })?;
        Ok(())
    }
}

/// Why a service's new container was not accepted.
#[derive(Debug)]
pub struct Failed {
    pub reason: String,
    pub logs: Vec<String>,
}

impl Failed {
    fn new(reason: String, logs: Vec<String>) -> Self {
        Self { reason, logs }
    }
}

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Asked to stop (SIGTERM): finish the service being updated, start no other.
pub fn request_stop() {
    STOP.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn stop_requested() -> bool {
    STOP.load(std::sync::atomic::Ordering::Relaxed)
}

/// Resolves once a stop was requested (checked a few times a second).
async fn until_stop_requested() {
    while !stop_requested() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `-q`: progress lines are not printed; errors still are.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, std::sync::atomic::Ordering::Relaxed);
}

fn progress(who: &str, message: &str) {
    if !QUIET.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!("{who}: {message}");
    }
}

/// Crash-safety tests stop the process at a named step: `RECONCILER_FAILPOINT=after-stop-old`.
fn failpoint(name: &str) {
    if std::env::var("RECONCILER_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("failpoint {name}: exiting");
        std::process::exit(99);
    }
}

/// Copy the stack folder to where relative binds point, once per revision. Written to a temp
/// folder and renamed, so a crash never leaves a half-written revision; removed on failure.
/// `record` sees the complete folder before it is put in place.
fn write_out_stack(
    source: &std::path::Path,
    target: &std::path::Path,
    record: impl FnOnce(&std::path::Path) -> Result<(), String>,
) -> Result<(), String> {
    if target.exists() {
        return Ok(());
    }
    let parent = target.parent().ok_or("state dir has no parent")?;
    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    let tmp = parent.join(format!(".tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let copied = copy_tree(source, &tmp, std::path::Path::new(""))
        .and_then(|()| links_stay_inside(&tmp))
        .map_err(|e| format!("{}: {e}", source.display()))
        .and_then(|()| record(&tmp))
        .and_then(|()| std::fs::rename(&tmp, target).map_err(|e| e.to_string()));
    if copied.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    copied
}

/// Copy a folder without following any link: folders and regular files are copied, links are
/// recreated as links (never followed, so neither a loop nor a link out makes us read anything),
/// anything else is refused. Links are kept rather than refused because in-folder links are
/// legitimate (`current -> v2`); [`links_stay_inside`] then checks where they lead in the copy,
/// since Docker resolves a bind source's links on the host. The loader refused all of this
/// already: this is the second lock.
fn copy_tree(
    from: &std::path::Path,
    to: &std::path::Path,
    rel: &std::path::Path,
) -> Result<(), String> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let fail =
        |rel: &std::path::Path, e: &dyn std::fmt::Display| format!("'{}': {e}", rel.display());
    std::fs::create_dir(to).map_err(|e| fail(rel, &e))?;
    for entry in std::fs::read_dir(from).map_err(|e| fail(rel, &e))? {
        let entry = entry.map_err(|e| fail(rel, &e))?;
        let path = entry.path();
        let dest = to.join(entry.file_name());
        let rel = rel.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&path).map_err(|e| fail(&rel, &e))?;
        if meta.is_dir() {
            copy_tree(&path, &dest, &rel)?;
        } else if meta.is_symlink() {
            let target = std::fs::read_link(&path).map_err(|e| fail(&rel, &e))?;
            if target.is_absolute() {
                return Err(fail(&rel, &"a symlink to an absolute path"));
            }
            std::os::unix::fs::symlink(&target, &dest).map_err(|e| fail(&rel, &e))?;
        } else if meta.is_file() {
            // O_NONBLOCK: a FIFO swapped in since the check answers at once, and is refused.
            let mut input = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(&path)
                .map_err(|e| fail(&rel, &e))?;
            if !input.metadata().is_ok_and(|m| m.is_file()) {
                return Err(fail(&rel, &"not a regular file"));
            }
            let mut output = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .mode(meta.permissions().mode() & 0o777)
                .open(&dest)
                .map_err(|e| fail(&rel, &e))?;
            std::io::copy(&mut input, &mut output).map_err(|e| fail(&rel, &e))?;
        } else {
            return Err(fail(&rel, &"not a regular file, folder or symlink"));
        }
    }
    Ok(())
}

/// Every link in the copy leads to something inside it (checked where it is, after the copy).
fn links_stay_inside(root: &std::path::Path) -> Result<(), String> {
    let root = root.canonicalize().map_err(|e| e.to_string())?;
    let mut pending = vec![root.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| e.to_string())? {
            let path = entry.map_err(|e| e.to_string())?.path();
            let meta = std::fs::symlink_metadata(&path).map_err(|e| e.to_string())?;
            if meta.is_dir() {
                pending.push(path);
            } else if meta.is_symlink()
                && !path
                    .canonicalize()
                    .is_ok_and(|real| real.starts_with(&root))
            {
                let rel = path.strip_prefix(&root).unwrap_or(&path);
                return Err(format!(
                    "'{}': a symlink that leaves the stack folder or leads nowhere",
                    rel.display()
                ));
            }
        }
    }
    Ok(())
}

/// GET the URL until it answers 2xx or the deadline passes (plain HTTP/1.0 over TCP).
async fn probe_until(url: &str, deadline: Instant) -> Result<(), String> {
    let rest = url.strip_prefix("http://").ok_or("not an http:// URL")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(2), http_status(host, &path)).await {
            Ok(Ok(code)) if (200..300).contains(&code) => return Ok(()),
            Ok(Ok(code)) => last = format!("status {code}"),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "timed out".into(),
        }
        tokio::time::sleep(POLL).await;
    }
    Err(last)
}

async fn http_status(host: &str, path: &str) -> std::io::Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await?;
    let mut head = vec![0u8; 64];
    let n = stream.read(&mut head).await?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP answer"))
}

/// Pull progress: one updating line on a terminal, a line per layer event otherwise.
struct PullBar {
    who: String,
    tty: bool,
    layers: BTreeMap<String, (i64, i64)>,
    last_line: Instant,
}

impl PullBar {
    fn new(who: &str) -> Self {
        Self {
            who: who.to_string(),
            tty: std::io::stderr().is_terminal(),
            layers: BTreeMap::new(),
            last_line: Instant::now(),
        }
    }

    fn update(&mut self, p: PullProgress) {
        if let (Some(layer), Some(cur), Some(total)) = (&p.layer, p.current, p.total) {
            self.layers.insert(layer.clone(), (cur, total));
        }
        if self.tty {
            let (cur, total) = self
                .layers
                .values()
                .fold((0, 0), |(a, b), (c, t)| (a + c, b + t));
            eprint!(
                "\r{}: {} {:.1}/{:.1} MB   ",
                self.who,
                p.status,
                cur as f64 / 1e6,
                total as f64 / 1e6
            );
            let _ = std::io::stderr().flush();
        } else if p.current.is_none() && self.last_line.elapsed() > Duration::from_millis(0) {
            // Plain output: only the state changes (no byte counters), one per line.
            eprintln!(
                "{}: {}{}",
                self.who,
                p.layer.map(|l| format!("{l}: ")).unwrap_or_default(),
                p.status
            );
            self.last_line = Instant::now();
        }
    }

    fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod write_out_tests {
    use super::write_out_stack;
    use std::os::unix::fs::symlink;

    #[test]
    fn in_folder_links_are_kept_as_links_and_nothing_is_followed_out() {
        let tmp = tempfile::tempdir().unwrap();
        let stack = tmp.path().join("web");
        std::fs::create_dir_all(stack.join("conf/v2")).unwrap();
        std::fs::write(stack.join("conf/v2/app.conf"), "x").unwrap();
        symlink("v2", stack.join("conf/current")).unwrap();
        symlink(".", stack.join("conf/loop")).unwrap();
        let target = tmp.path().join("files/rev1");
        write_out_stack(&stack, &target, |_| Ok(())).unwrap();
        assert_eq!(
            std::fs::read_link(target.join("conf/current")).unwrap(),
            std::path::Path::new("v2")
        );
        assert_eq!(
            std::fs::read(target.join("conf/current/app.conf")).unwrap(),
            b"x"
        );
    }

    #[test]
    fn a_link_out_a_dangling_link_or_a_fifo_is_refused_and_leaves_no_copy() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("secret"), "host-only").unwrap();
        for (name, make) in [
            (
                "abs",
                (|p: &std::path::Path| symlink("/etc/hostname", p))
                    as fn(&std::path::Path) -> std::io::Result<()>,
            ),
            ("up", |p: &std::path::Path| symlink("../../secret", p)),
            ("dangling", |p: &std::path::Path| symlink("missing", p)),
            ("pipe", |p: &std::path::Path| {
                use std::os::unix::ffi::OsStrExt;
                let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
                Ok(())
            }),
        ] {
            let stack = tmp.path().join(format!("stack-{name}"));
            std::fs::create_dir_all(stack.join("conf")).unwrap();
            make(&stack.join("conf").join(name)).unwrap();
            let files = tmp.path().join(format!("files-{name}"));
            let err = write_out_stack(&stack, &files.join("rev"), |_| Ok(())).unwrap_err();
            assert!(err.contains(&format!("conf/{name}")), "{name}: {err}");
            let left: Vec<_> = std::fs::read_dir(&files).unwrap().flatten().collect();
            assert!(left.is_empty(), "{name}: {left:?}");
        }
    }
}
