//! One stack's part of a pass: pull, prepare, then the services in dependency order, each as
//! soon as what it depends on is done, a bounded number at once.

use super::{ExecError, Executor, Recorder};
use crate::desired::{Service, Stack};
use crate::engine::Engine;
use crate::logging::Who;
use crate::observed::Observed;
use crate::outcome::{ServiceOutcome, ServiceResult, Step};
use crate::plan::{Action, ServicePlan, StackPlan};
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use std::collections::{BTreeMap, BTreeSet};

impl<E: Engine> Executor<'_, E> {
    pub(super) async fn apply_stack(
        &self,
        stack: &Stack,
        stack_plan: &StackPlan,
        observed: &Observed,
        recorder: &Recorder<'_>,
    ) -> Result<(), ExecError> {
        let work: Vec<&ServicePlan> = stack_plan
            .services
            .iter()
            .filter(|s| crate::plan::Plan::is_work(s.action))
            .collect();
        let failed_before = stack_plan
            .services
            .iter()
            .any(|s| s.action == Action::Failed);
        // Checked before anything is pulled or touched; said on every pass until a person acts.
        if let Some(drift) = stack_plan.blocked_by() {
            return Err(ExecError::ResourceDiffers {
                stack: stack.name.clone(),
                drift: drift.to_string(),
            });
        }
        if work.is_empty() {
            return recorder.finish_stack(&stack.name, &stack.revision, !failed_before);
        }
        // `reconciler restore` holds the stack (and suspends it, which a pass that read the
        // suspended list before it did has not seen): its containers are left to it.
        let Some(_held) = self.state_dir.try_lock_stack(&stack.name)? else {
            tracing::warn!(stack = %stack.name, "a volume of this stack is being restored; left for a later pass");
            return Ok(());
        };
        if self.state_dir.suspended().contains(&stack.name) {
            tracing::info!(stack = %stack.name, "suspended meanwhile; left alone");
            return Ok(());
        }
        let digests = match self.pull_stack(stack, &work).await? {
            Ok(digests) => digests,
            Err(pull_failure) => {
                let error = pull_failure.error;
                recorder.record(pull_failure.outcome)?;
                return Err(error);
            }
        };
        let created_networks = self.prepare_stack(stack, &work).await?;
        let all_good = self
            .run_services(stack, &work, observed, &digests, recorder)
            .await?;
        if !all_good && !created_networks.is_empty() {
            self.remove_networks_of_a_failed_first_deploy(&stack.name, &created_networks)
                .await;
        }
        recorder.finish_stack(&stack.name, &stack.revision, all_good && !failed_before)
    }

    /// A first deploy that failed leaves nothing running: the networks this pass created for it
    /// go too, so a failed try leaves the host as it found it. Only when the stack has no
    /// container at all, and only a network no container of any project is attached to (a
    /// stopped one would lose it); trouble here is only said.
    async fn remove_networks_of_a_failed_first_deploy(&self, stack: &str, created: &[String]) {
        let projects = [stack.to_string()];
        let containers = self.engine.list_containers(&projects).await;
        let oneoffs = self.engine.list_oneoffs(&projects).await;
        match (containers, oneoffs) {
            (Ok(c), Ok(o)) if c.is_empty() && o.is_empty() => {}
            (Ok(_), Ok(_)) => return,
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(stack = %stack, "networks created by this pass are kept: {e}");
                return;
            }
        }
        for name in created {
            match self.engine.remove_network_if_unused(name).await {
                Ok(true) => tracing::info!(
                    stack = %stack,
                    "removed network {name}: it was created for this deploy and nothing runs"
                ),
                Ok(false) => {
                    tracing::info!(stack = %stack, "network {name} is kept: a container uses it")
                }
                Err(e) => tracing::warn!(stack = %stack, "network {name} is kept: {e}"),
            }
        }
    }

    /// Start each service when the services it depends on in this pass are done; skip it when
    /// one of them failed. Returns whether every service succeeded. At shutdown, services in
    /// progress finish and no other starts (the next run finds them as drift).
    async fn run_services(
        &self,
        stack: &Stack,
        work: &[&ServicePlan],
        observed: &Observed,
        digests: &BTreeMap<String, String>,
        recorder: &Recorder<'_>,
    ) -> Result<bool, ExecError> {
        let in_pass: BTreeSet<&str> = work.iter().map(|sp| sp.service.as_str()).collect();
        let mut waiting: Vec<&ServicePlan> = work.to_vec();
        let mut done: BTreeMap<String, bool> = BTreeMap::new();
        let mut running = FuturesUnordered::new();
        // The first error ends the launching; services in flight always finish (dropping one
        // mid-update would leave its old container stopped), and their outcomes are recorded.
        let mut first_error: Option<ExecError> = None;
        let limit = self.settings.parallel_services.max(1);
        loop {
            if first_error.is_none() && !self.stopping() {
                let mut i = 0;
                while i < waiting.len() && running.len() < limit {
                    let sp = waiting[i];
                    let deps = dependencies_in_pass(stack, sp, &in_pass);
                    if let Some(dep) = deps.iter().find(|d| done.get(**d) == Some(&false)) {
                        waiting.remove(i);
                        let reason = format!("its dependency {dep} failed");
                        crate::progress!(Who::of(stack, &sp.service), "skipped: {reason}");
                        done.insert(sp.service.clone(), false);
                        if let Err(e) = recorder.record(skipped(stack, sp, &reason)) {
                            first_error.get_or_insert(e);
                            break;
                        }
                        continue;
                    }
                    // Removals (pruning) come last, as the plan orders them: what replaces a
                    // removed service is up before the old one goes.
                    let removal_waits = sp.action == Action::Remove
                        && work
                            .iter()
                            .any(|w| w.action != Action::Remove && !done.contains_key(&w.service));
                    if deps.iter().all(|d| done.contains_key(*d)) && !removal_waits {
                        waiting.remove(i);
                        let digest = stack
                            .services
                            .get(&sp.service)
                            .and_then(|s| digests.get(&s.spec.image))
                            .map(String::as_str);
                        running.push(self.converge_service(stack, sp, observed, digest));
                        continue;
                    }
                    i += 1;
                }
            } else if !waiting.is_empty() {
                if first_error.is_none() {
                    crate::progress!(
                        Who::stack(stack),
                        "stopping: {} service(s) left for the next run",
                        waiting.len()
                    );
                }
                waiting.clear();
            }
            let Some(result) = running.next().await else {
                break;
            };
            let recorded = result.and_then(|outcome| {
                done.insert(outcome.service.clone(), outcome.changed());
                recorder.record(outcome)
            });
            if let Err(e) = recorded {
                first_error.get_or_insert(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        // Services never started (shutdown, or a dependency cycle) keep the revision from
        // being the last good one.
        Ok(done.len() == work.len() && done.values().all(|ok| *ok))
    }
}

/// The services `sp` depends on that this pass also changes: it waits for them to finish.
/// Dependencies not in the pass are waited for by their `depends_on` condition instead.
fn dependencies_in_pass<'a>(
    stack: &'a Stack,
    sp: &ServicePlan,
    in_pass: &BTreeSet<&str>,
) -> Vec<&'a str> {
    stack
        .services
        .get(&sp.service)
        .map(|s: &Service| {
            s.depends_on
                .keys()
                .map(String::as_str)
                .filter(|d| in_pass.contains(d))
                .collect()
        })
        .unwrap_or_default()
}

fn skipped(stack: &Stack, sp: &ServicePlan, reason: &str) -> ServiceOutcome {
    let service = stack.services.get(&sp.service);
    ServiceOutcome {
        stack: stack.name.clone(),
        service: sp.service.clone(),
        revision: stack.revision.clone(),
        step: step_of(sp.action),
        spec_hash: service.map(|s| s.spec_hash()).unwrap_or_default(),
        from_image: None,
        to_image: service.map(|s| s.spec.image.clone()),
        result: ServiceResult::Skipped {
            reason: reason.to_string(),
        },
        elapsed_ms: 0,
    }
}

pub(super) fn step_of(action: Action) -> Step {
    match action {
        Action::Create => Step::Create,
        Action::Start => Step::Start,
        Action::Remove => Step::Remove,
        Action::Scale => Step::Scale,
        _ => Step::Update,
    }
}
