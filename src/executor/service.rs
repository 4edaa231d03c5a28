//! One service's change, with the same safety whatever runs beside it: a new container is
//! created, started and proven; stop-first keeps the old one (renamed) until then, start-first
//! never stops it before; on failure the old one is back under its name.

use super::data_folder::{self, Expect};
use super::job::JobVerdict;
use super::stack_files::data_binds;
use super::{failpoint, ExecError, Executor, LOG_TAIL_LINES};
use crate::desired::{Service, Stack, UpdateOrder};
use crate::engine::{CreateRequest, Engine};
use crate::labels;
use crate::logging::Who;
use crate::observed::{Observed, ObservedContainer};
use crate::outcome::{ServiceOutcome, ServiceResult, Step};
use crate::plan::{replica_name, spec_label, Action, ServicePlan};
use crate::state::JournalResult;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::time::Instant;

/// Why a service's new container was not accepted (recorded as a [`crate::state::Failure`]
/// once scrubbed).
#[derive(Debug)]
pub(super) struct Rejected {
    pub reason: String,
    pub logs: Vec<String>,
}

impl Rejected {
    pub(super) fn new(reason: impl Into<String>, logs: Vec<String>) -> Self {
        Self {
            reason: reason.into(),
            logs,
        }
    }
}

/// The same service's container after a change, or why it was not accepted.
type Changed = Result<(), Rejected>;

/// How long a name held by a container being removed (`docker rm -f` by hand) is waited for.
const NAME_RELEASE_WAIT: Duration = Duration::from_secs(30);

impl<E: Engine> Executor<'_, E> {
    /// Carry out one service's plan and say how it ended.
    pub(super) async fn converge_service(
        &self,
        stack: &Stack,
        sp: &ServicePlan,
        observed: &Observed,
        digest: Option<&str>,
    ) -> Result<ServiceOutcome, ExecError> {
        let who = Who::of(stack, &sp.service);
        let started = Instant::now();
        let current = observed.primary(&stack.name, &sp.service);
        if sp.action == Action::Remove {
            return self.remove(stack, sp, observed).await;
        }
        let service = &stack.services[&sp.service];
        let mut step = super::stack::step_of(sp.action);
        let ready = match self
            .wait_dependencies(&who, stack, service, observed)
            .await?
        {
            // Before a container is replaced (once for all replicas), never on create or start.
            Ok(()) if replaces_a_container(stack, sp, observed) => {
                self.backup_before_update(stack, service, observed).await?
            }
            other => other,
        };
        let job = match ready {
            Err(reason) => {
                crate::progress!(who, "skipped: {reason}");
                return Ok(outcome(
                    stack,
                    service,
                    step,
                    current,
                    skipped(reason),
                    started,
                ));
            }
            Ok(()) => self.run_pre_deploy(stack, service, sp.action).await?,
        };
        let result = match job {
            JobVerdict::Stopped(reason) => {
                let skipped = skipped(reason);
                return Ok(outcome(stack, service, step, current, skipped, started));
            }
            JobVerdict::Failed(rejected) => Err(rejected),
            JobVerdict::Go if !sp.replicas.is_empty() => {
                self.roll_replicas(stack, service, sp, observed, digest)
                    .await?
            }
            JobVerdict::Go => match (sp.action, current) {
                (Action::Start, Some(current)) => {
                    self.start_existing(&who, stack, service, current).await?
                }
                (Action::Update, Some(current)) => {
                    let order = sp.order.unwrap_or(UpdateOrder::StopFirst);
                    self.update(stack, service, order, current, 1, digest)
                        .await?
                }
                _ => self.create_new(stack, service, 1, None, digest).await?,
            },
        };
        if step == Step::Update
            && result.is_ok()
            && self.returns_to_previous_image(stack, service)?
        {
            step = Step::Rollback;
        }
        let result = match result {
            Ok(()) => ServiceResult::Done,
            Err(f) => failed_result(&who, service, f),
        };
        Ok(outcome(stack, service, step, current, result, started))
    }

    pub(super) fn request(
        &self,
        stack: &Stack,
        service: &Service,
        name: String,
        number: u32,
        digest: Option<&str>,
    ) -> CreateRequest {
        let hash = service.spec_hash();
        let mut extra = BTreeMap::from([
            (labels::PROJECT.to_string(), stack.name.clone()),
            (labels::SERVICE.to_string(), service.name.clone()),
            (labels::NUMBER.to_string(), number.to_string()),
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
        let content_files = self.content_files(stack, service);
        if !content_files.is_empty() {
            let names: std::collections::BTreeSet<&str> = content_files
                .values()
                .filter_map(|path| path.file_name()?.to_str())
                .collect();
            let names: Vec<&str> = names.into_iter().collect();
            extra.insert(labels::FILES.to_string(), names.join(","));
        }
        CreateRequest {
            name,
            project: stack.name.clone(),
            service: service.name.clone(),
            spec: joined_namespaces(stack, service),
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
            content_files,
            data_root: data_binds(service)
                .next()
                .map(|_| self.state_dir.data_dir(&stack.name)),
        }
    }

    /// Every bind source in the data folder is what git has (a missing one a folder, created
    /// empty) with no link on its way: the engine follows links in bind sources on the host,
    /// and containers write in that folder. Checked right before the engine gets the paths.
    pub(super) fn check_data_binds(&self, stack: &Stack, service: &Service) -> Result<(), String> {
        let root = self.state_dir.data_dir(&stack.name);
        for rel in data_binds(service) {
            data_folder::check_bind_source(&root, rel, Expect::of(&stack.dir, rel))?;
        }
        Ok(())
    }

    /// This revision's tracked files into the service's folders in the data folder, right
    /// before its container is created (the old one already stopped, stop-first): a service
    /// skipped or left for later keeps the files its container was made with.
    pub(super) fn write_data_binds(
        &self,
        stack: &Stack,
        service: &Service,
    ) -> Result<(), ExecError> {
        let rels: BTreeSet<&str> = data_binds(service).collect();
        self.write_data_folder(&stack.name, &stack.dir, &rels)
            .map_err(|message| ExecError::StackFiles {
                stack: stack.name.clone(),
                message,
            })
    }

    /// A failed release leaves the old container on its own revision's tracked files in the
    /// data folder, taken from that revision's folder while it is still as written. Files only
    /// the failed revision had stay (nothing is deleted).
    fn put_back_tracked_files(
        &self,
        who: &Who,
        stack: &Stack,
        service: &Service,
        old: &ObservedContainer,
    ) {
        let rels: BTreeSet<&str> = data_binds(service).collect();
        let Some(revision) = old.revision().filter(|r| *r != stack.revision) else {
            return;
        };
        if rels.is_empty() {
            return;
        }
        let Some(folder) = self.state_dir.stack_files_as_written(&stack.name, revision) else {
            // Created before it had binds in the data folder: the old container does not use it.
            tracing::debug!(stack = %who.stack, service = %who.service, "no files of revision {revision} to put back in the data folder");
            return;
        };
        if let Err(e) = self.write_data_folder(&stack.name, &folder, &rels) {
            tracing::warn!(
                stack = %who.stack, service = %who.service,
                "the data folder keeps the failed release's tracked files: {e}"
            );
        }
    }

    /// Where the files of secrets and configs given by content are (written by
    /// `prepare_stack`), by target.
    fn content_files(
        &self,
        stack: &Stack,
        service: &Service,
    ) -> BTreeMap<String, std::path::PathBuf> {
        let dir = self.state_dir.content_files_dir(&stack.name);
        service
            .spec
            .file_mounts()
            .filter_map(|(_, f)| {
                let name = f.content_file_name(&service.label_key)?;
                Some((f.target.clone(), dir.join(name)))
            })
            .collect()
    }

    /// Create and start replica `number`'s container (under `name`, or its own name), then wait
    /// for it to prove itself. On failure it is removed (its last log lines kept), so a broken
    /// release never lingers.
    pub(super) async fn create_new(
        &self,
        stack: &Stack,
        service: &Service,
        number: u32,
        name: Option<String>,
        digest: Option<&str>,
    ) -> Result<Changed, ExecError> {
        let who = Who::of(stack, &service.name);
        let name = name.unwrap_or_else(|| replica_name(stack, service, number));
        crate::progress!(who, "creating {name} from {}", service.spec.image);
        self.write_data_binds(stack, service)?;
        if let Err(reason) = self.check_data_binds(stack, service) {
            return Ok(Err(Rejected::new(reason, vec![])));
        }
        let request = self.request(stack, service, name.clone(), number, digest);
        let id = match self.create_when_name_is_free(&request).await {
            Ok(id) => id,
            Err(e) if !e.is_transient() => {
                return Ok(Err(Rejected::new(format!("create failed: {e}"), vec![])))
            }
            Err(e) => return Err(e.into()),
        };
        if let Err(e) = self.engine.start_container(&id).await {
            if e.is_transient() {
                return Err(e.into());
            }
            let logs = self.logs_of(&id).await;
            self.engine.remove_container(&id).await?;
            return Ok(Err(Rejected::new(format!("start failed: {e}"), logs)));
        }
        failpoint("after-start");
        match self.wait_ready(&who, &id, service, Some(&name)).await? {
            Ok(()) => Ok(Ok(())),
            Err(reason) => {
                let logs = self.logs_of(&id).await;
                self.engine.remove_container(&id).await?;
                Ok(Err(Rejected::new(reason, logs)))
            }
        }
    }

    /// A container removed by hand (`docker rm -f`) keeps its name until the engine is done
    /// removing it: wait for that, bounded, instead of failing the release on the name.
    async fn create_when_name_is_free(
        &self,
        request: &CreateRequest,
    ) -> crate::engine::Result<String> {
        let deadline = Instant::now() + NAME_RELEASE_WAIT;
        loop {
            let error = match self.engine.create_container(request).await {
                Ok(id) => return Ok(id),
                Err(e) => e,
            };
            // Only a name conflict is worth waiting for; any other refusal is the release's.
            if !error.to_string().contains("already in use") {
                return Err(error);
            }
            let holder = self.engine.inspect_container(&request.name).await;
            let being_removed = match &holder {
                Err(e) => e.is_gone(),
                Ok(status) => status.state == "removing",
            };
            if !being_removed || Instant::now() >= deadline {
                return Err(error);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub(super) async fn logs_of(&self, id: &str) -> Vec<String> {
        self.engine
            .logs_tail(id, LOG_TAIL_LINES)
            .await
            .unwrap_or_default()
    }

    pub(super) async fn start_existing(
        &self,
        who: &Who,
        stack: &Stack,
        service: &Service,
        container: &ObservedContainer,
    ) -> Result<Changed, ExecError> {
        crate::progress!(
            who,
            "starting {} (it was {})",
            container.name,
            container.state
        );
        // The engine resolves bind sources again at each start.
        if let Err(reason) = self.check_data_binds(stack, service) {
            return Ok(Err(Rejected::new(reason, vec![])));
        }
        if let Err(e) = self.engine.start_container(&container.id).await {
            // Removed by hand meanwhile: the next pass creates it anew, soon.
            if e.is_transient() {
                return Err(e.into());
            }
            return Ok(Err(Rejected::new(format!("start failed: {e}"), vec![])));
        }
        match self
            .wait_ready(who, &container.id, service, Some(&container.name))
            .await?
        {
            Ok(()) => Ok(Ok(())),
            Err(reason) => Ok(Err(Rejected::new(
                reason,
                self.logs_of(&container.id).await,
            ))),
        }
    }

    /// Replace replica `number`'s container `old` with a new one, proven before `old` goes.
    pub(super) async fn update(
        &self,
        stack: &Stack,
        service: &Service,
        order: UpdateOrder,
        old: &ObservedContainer,
        number: u32,
        digest: Option<&str>,
    ) -> Result<Changed, ExecError> {
        let who = Who::of(stack, &service.name);
        let target = replica_name(stack, service, number);
        let grace = service.spec.stop_grace_period_ms.map(Duration::from_millis);
        match order {
            UpdateOrder::StartFirst => {
                let candidate = format!("{target}{}", labels::CANDIDATE_SUFFIX);
                let result = self
                    .create_new(stack, service, number, Some(candidate.clone()), digest)
                    .await?;
                if let Err(f) = result {
                    crate::progress!(
                        who,
                        "FAILED: {}; the old container {} was never stopped",
                        scrubbed(service, &f.reason),
                        old.name
                    );
                    self.put_back_tracked_files(&who, stack, service, old);
                    return Ok(Err(f));
                }
                crate::progress!(who, "new container is healthy; stopping {}", old.name);
                self.engine.stop_container(&old.id, grace).await?;
                failpoint("after-stop-old");
                self.remove_old(&old.id).await?;
                if let Some(id) = self.find_by_name(&stack.name, &candidate).await? {
                    self.engine.rename_container(&id, &target).await?;
                }
                Ok(Ok(()))
            }
            UpdateOrder::StopFirst => {
                let backup = format!("{}{}", old.name, labels::BACKUP_SUFFIX);
                crate::progress!(who, "stopping {}", old.name);
                self.engine.stop_container(&old.id, grace).await?;
                failpoint("after-stop-old");
                self.engine.rename_container(&old.id, &backup).await?;
                failpoint("after-rename-old");
                let result = match self.create_new(stack, service, number, None, digest).await {
                    Ok(result) => result,
                    // The engine failed us mid-way (or the new container was removed by hand):
                    // the old one comes back now, not at the next pass's recovery.
                    Err(e) => {
                        tracing::warn!(
                            stack = %who.stack, service = %who.service,
                            "the update was interrupted ({e}); restoring {}", old.name
                        );
                        if let Some(new) =
                            self.find_by_name(&stack.name, &target).await.ok().flatten()
                        {
                            let _ = self.engine.remove_container(&new).await;
                        }
                        self.put_back_tracked_files(&who, stack, service, old);
                        let _ = self.restore(&who, service, old).await;
                        return Err(e);
                    }
                };
                if let Err(f) = result {
                    let reason = scrubbed(service, &f.reason);
                    crate::progress!(who, "FAILED: {reason}; restoring {}", old.name);
                    self.put_back_tracked_files(&who, stack, service, old);
                    self.restore(&who, service, old).await?;
                    return Ok(Err(f));
                }
                failpoint("before-remove-old");
                self.remove_old(&old.id).await?;
                Ok(Ok(()))
            }
        }
    }

    /// Put the old container back under its name and start it again.
    async fn restore(
        &self,
        who: &Who,
        service: &Service,
        old: &ObservedContainer,
    ) -> Result<(), ExecError> {
        self.engine.rename_container(&old.id, &old.name).await?;
        self.engine.start_container(&old.id).await?;
        // The old container proved itself before: no monitor window for it.
        match self.wait_ready(who, &old.id, service, None).await? {
            Ok(()) => crate::progress!(who, "restored {} ({})", old.name, old.image),
            Err(reason) => tracing::warn!(
                stack = %who.stack, service = %who.service,
                "restored {} but it is not ready either: {reason}", old.name
            ),
        }
        Ok(())
    }

    /// The old container after its replacement is proven; already gone (removed by hand) is
    /// just as good.
    pub(super) async fn remove_old(&self, id: &str) -> Result<(), ExecError> {
        match self.engine.remove_container(id).await {
            Err(e) if !e.is_gone() => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn find_by_name(&self, project: &str, name: &str) -> Result<Option<String>, ExecError> {
        let now = self.engine.list_containers(&[project.to_string()]).await?;
        Ok(now.into_iter().find(|c| c.name == name).map(|c| c.id))
    }

    /// A service that left the desired state (pruning is on): every container of it, the
    /// highest number first.
    async fn remove(
        &self,
        stack: &Stack,
        sp: &ServicePlan,
        observed: &Observed,
    ) -> Result<ServiceOutcome, ExecError> {
        let who = Who::of(stack, &sp.service);
        let started = Instant::now();
        let mut names: Vec<(u32, &str)> = sp
            .replicas
            .iter()
            .map(|r| (r.number, r.container.as_str()))
            .collect();
        if names.is_empty() {
            names.extend(sp.container.as_deref().map(|name| (1, name)));
        }
        names.sort_by_key(|(number, _)| std::cmp::Reverse(*number));
        let containers: Vec<&ObservedContainer> = names
            .iter()
            .filter_map(|(_, name)| observed.named(&stack.name, name))
            .collect();
        for container in &containers {
            crate::progress!(
                who,
                "removing {} (pruning is on; volumes are kept)",
                container.name
            );
            self.engine.stop_container(&container.id, None).await?;
            self.engine.remove_container(&container.id).await?;
        }
        let container = containers.last();
        Ok(ServiceOutcome {
            stack: stack.name.clone(),
            service: sp.service.clone(),
            revision: stack.revision.clone(),
            step: Step::Remove,
            spec_hash: String::new(),
            from_image: container.map(|c| c.image.clone()),
            to_image: None,
            result: ServiceResult::Done,
            elapsed_ms: started.elapsed().as_millis() as u64,
        })
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
                && e.result == JournalResult::Ok
                && matches!(e.action, Step::Update | Step::Rollback)
        });
        Ok(last.is_some_and(|e| e.from.as_deref() == Some(service.spec.image.as_str())))
    }
}

/// An update of the service's container, or of one of its replicas.
fn replaces_a_container(stack: &Stack, sp: &ServicePlan, observed: &Observed) -> bool {
    if sp.replicas.is_empty() {
        return sp.action == Action::Update && observed.primary(&stack.name, &sp.service).is_some();
    }
    sp.replicas
        .iter()
        .any(|r| r.action == Action::Update && observed.named(&stack.name, &r.container).is_some())
}

fn skipped(reason: String) -> ServiceResult {
    ServiceResult::Skipped { reason }
}

/// A text with the service's secret values masked: what a failure may say in a log, the
/// journal or `/status`.
pub(super) fn scrubbed(service: &Service, text: &str) -> String {
    let secrets = service
        .secret_env
        .iter()
        .filter_map(|k| service.spec.environment.get(k).map(String::as_str));
    crate::mask::scrub(text, secrets)
}

/// The failure as recorded: secret values scrubbed from the reason and the log tail, which is
/// also logged for the operator.
fn failed_result(who: &Who, service: &Service, f: Rejected) -> ServiceResult {
    let reason = scrubbed(service, &f.reason);
    let log_tail: Vec<String> = f.logs.iter().map(|l| scrubbed(service, l)).collect();
    if !log_tail.is_empty() {
        let shown: Vec<String> = log_tail.iter().map(|l| format!("  | {l}")).collect();
        tracing::warn!(
            stack = %who.stack, service = %who.service,
            "last log lines of the failed container:\n{}", shown.join("\n")
        );
    }
    ServiceResult::Failed { reason, log_tail }
}

fn outcome(
    stack: &Stack,
    service: &Service,
    step: Step,
    current: Option<&ObservedContainer>,
    result: ServiceResult,
    started: Instant,
) -> ServiceOutcome {
    ServiceOutcome {
        stack: stack.name.clone(),
        service: service.name.clone(),
        revision: stack.revision.clone(),
        step,
        spec_hash: service.spec_hash(),
        from_image: current.map(|c| c.image.clone()),
        to_image: Some(service.spec.image.clone()),
        result,
        elapsed_ms: started.elapsed().as_millis() as u64,
    }
}

/// The spec with `service:NAME` namespaces (`network_mode`, `pid`, `ipc`) turned into the
/// engine's `container:<its first replica>`, as Compose turns them; the spec (and its hash)
/// keeps the service's name, which does not change when that container is recreated.
fn joined_namespaces(stack: &Stack, service: &Service) -> crate::desired::ContainerSpec {
    let mut spec = service.spec.clone();
    for mode in [&mut spec.network_mode, &mut spec.pid, &mut spec.ipc] {
        let joined = mode
            .as_deref()
            .and_then(|m| m.strip_prefix("service:"))
            .and_then(|name| stack.services.get(name))
            .map(|other| format!("container:{}", replica_name(stack, other, 1)));
        if let Some(joined) = joined {
            *mode = Some(joined);
        }
    }
    spec
}
