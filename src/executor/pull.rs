//! Every image a stack's changes need, pulled before any of its containers is touched (a few at
//! once), with the free disk checked first.

use super::{ExecError, Executor};
use crate::desired::{PullPolicy, Stack};
use crate::engine::{Engine, EngineError, PullProgress};
use crate::logging::Who;
use crate::outcome::{ServiceOutcome, ServiceResult, Step};
use crate::plan::{Action, ServicePlan};
use futures_util::StreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Pulls of one stack that run at once.
const PARALLEL_PULLS: usize = 4;

/// A pull that failed for the release's own sake (missing tag, refused access): recorded as the
/// service's failure, so the same spec is not pulled again and again.
pub(super) struct PullFailure {
    pub outcome: ServiceOutcome,
    pub error: ExecError,
}

impl<E: Engine> Executor<'_, E> {
    /// Returns the digest each needed reference resolved to.
    pub(super) async fn pull_stack(
        &self,
        stack: &Stack,
        work: &[&ServicePlan],
    ) -> Result<Result<BTreeMap<String, String>, PullFailure>, ExecError> {
        let needed: Vec<(&ServicePlan, &crate::desired::Service)> = work
            .iter()
            .filter(|sp| matches!(sp.action, Action::Create | Action::Update))
            .filter_map(|sp| Some((*sp, stack.services.get(&sp.service)?)))
            .collect();
        // Before any pull, and before any container is made (its writable layer is there too).
        let creates = work
            .iter()
            .any(|sp| matches!(sp.action, Action::Create | Action::Update | Action::Scale));
        if creates {
            self.check_free_disk(stack).await?;
        }
        if needed.is_empty() {
            return Ok(Ok(BTreeMap::new()));
        }
        let local = self.engine.list_image_references().await?;
        let mut seen = BTreeSet::new();
        let to_pull: Vec<&(&ServicePlan, &crate::desired::Service)> = needed
            .iter()
            .filter(|(_, s)| {
                s.pull_policy == PullPolicy::Always
                    || !crate::observed::image_present(&local, &s.spec.image)
            })
            .filter(|(_, s)| seen.insert((s.spec.image.clone(), s.spec.platform.clone())))
            .collect();
        let pulls = to_pull.iter().map(|(_, service)| async move {
            let who = Who::of(stack, &service.name);
            let platform = service.spec.platform.as_deref();
            (
                *service,
                self.pull_one(&who, &service.spec.image, platform).await,
            )
        });
        let results: Vec<_> = futures_util::stream::iter(pulls)
            .buffer_unordered(PARALLEL_PULLS)
            .collect()
            .await;
        for (service, result) in results {
            let source = match result {
                Some(Ok(())) => continue,
                Some(Err(source)) => source,
                None => {
                    return Err(ExecError::StoppedWhilePulling {
                        image: service.spec.image.clone(),
                    })
                }
            };
            let reason = format!("pull failed: {source}");
            let error = ExecError::Pull {
                stack: stack.name.clone(),
                service: service.name.clone(),
                image: service.spec.image.clone(),
                source: Box::new(source),
            };
            if error.is_transient() {
                return Err(error);
            }
            let outcome = ServiceOutcome {
                stack: stack.name.clone(),
                service: service.name.clone(),
                revision: stack.revision.clone(),
                step: Step::Pull,
                spec_hash: service.spec_hash(),
                from_image: None,
                to_image: Some(service.spec.image.clone()),
                result: ServiceResult::Failed {
                    reason,
                    log_tail: vec![],
                },
                elapsed_ms: 0,
            };
            return Ok(Err(PullFailure { outcome, error }));
        }
        let mut digests = BTreeMap::new();
        for (_, service) in &needed {
            if digests.contains_key(&service.spec.image) {
                continue;
            }
            if let Some(info) = self.engine.inspect_image(&service.spec.image).await? {
                let digest = info.repo_digests.first().cloned().unwrap_or(info.id);
                digests.insert(service.spec.image.clone(), digest);
            }
        }
        Ok(Ok(digests))
    }

    async fn check_free_disk(&self, stack: &Stack) -> Result<(), ExecError> {
        let Some(disk) = self.engine.free_disk().await? else {
            return Ok(());
        };
        if disk.bytes < self.settings.min_free_disk {
            return Err(ExecError::DiskFull {
                stack: stack.name.clone(),
                path: disk.path,
                free_mib: disk.bytes / (1 << 20),
                min_mib: self.settings.min_free_disk / (1 << 20),
            });
        }
        Ok(())
    }

    /// One pull, logged as it goes; `None` when stopped. A registry that never answers must not
    /// hold up a shutdown: nothing is changed yet, so the pull is dropped.
    async fn pull_one(
        &self,
        who: &Who,
        image: &str,
        platform: Option<&str>,
    ) -> Option<Result<(), EngineError>> {
        crate::progress!(who, "pulling {image}");
        let mut log = PullLog::default();
        let mut on_progress = |p: PullProgress| log.update(who, &p);
        tokio::select! {
            result = self.engine.pull(image, platform, &mut on_progress) => Some(result),
            () = self.shutdown.cancelled() => None,
        }
    }
}

/// Pull progress as log events: each layer's state changes, and a byte count at most every
/// few seconds, so several pulls at once stay readable.
#[derive(Default)]
struct PullLog {
    layers: BTreeMap<String, (i64, i64)>,
    last_bytes: Option<tokio::time::Instant>,
}

impl PullLog {
    fn update(&mut self, who: &Who, p: &PullProgress) {
        if let (Some(layer), Some(current), Some(total)) = (&p.layer, p.current, p.total) {
            self.layers.insert(layer.clone(), (current, total));
            let due = self
                .last_bytes
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(3));
            if due {
                self.last_bytes = Some(tokio::time::Instant::now());
                let (current, total) = self
                    .layers
                    .values()
                    .fold((0, 0), |(a, b), (c, t)| (a + c, b + t));
                crate::progress!(
                    who,
                    current_mb = current / 1_000_000,
                    total_mb = total / 1_000_000,
                    "{} {:.1}/{:.1} MB",
                    p.status,
                    current as f64 / 1e6,
                    total as f64 / 1e6
                );
            }
        } else if p.current.is_none() {
            match &p.layer {
                Some(layer) => tracing::debug!(
                    stack = %who.stack, service = %who.service, "{layer}: {}", p.status
                ),
                None => crate::progress!(who, "{}", p.status),
            }
        }
    }
}
