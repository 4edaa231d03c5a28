//! A service of several containers (`deploy.replicas`, `scale`): one replica at a time, each
//! with the one-container procedure of [`super::service`], so the others keep serving. The
//! first replica that fails ends the rollout (it is back as it was; the ones after it were
//! never touched); containers beyond the wanted number go last, highest number first, once
//! every kept one is proven.

use super::service::Rejected;
use super::{ExecError, Executor};
use crate::desired::{Service, Stack, UpdateOrder};
use crate::engine::Engine;
use crate::logging::Who;
use crate::observed::{Observed, ObservedContainer};
use crate::plan::{Action, ReplicaPlan, ServicePlan};
use std::cmp::Reverse;
use std::time::Duration;

impl<E: Engine> Executor<'_, E> {
    pub(super) async fn roll_replicas(
        &self,
        stack: &Stack,
        service: &Service,
        sp: &ServicePlan,
        observed: &Observed,
        digest: Option<&str>,
    ) -> Result<Result<(), Rejected>, ExecError> {
        let who = Who::of(stack, &service.name);
        let order = sp.order.unwrap_or(UpdateOrder::StopFirst);
        let total = service.replicas;
        let current = |r: &ReplicaPlan| observed.named(&stack.name, &r.container);
        for r in &sp.replicas {
            let result = match (r.action, current(r)) {
                (Action::Update, Some(old)) => {
                    crate::progress!(
                        who,
                        "replica {} of {total}: replacing {}",
                        r.number,
                        old.name
                    );
                    self.update(stack, service, order, old, r.number, digest)
                        .await?
                }
                (Action::Start, Some(stopped)) => {
                    self.start_existing(&who, stack, service, stopped).await?
                }
                (Action::Create, _) => {
                    crate::progress!(who, "replica {} of {total}: adding it", r.number);
                    self.create_new(stack, service, r.number, None, digest)
                        .await?
                }
                _ => continue,
            };
            if let Err(rejected) = result {
                // Which replica failed, for the journal and `status`; later ones keep what runs.
                return Ok(Err(Rejected {
                    reason: format!("{}: {}", r.container, rejected.reason),
                    logs: rejected.logs,
                }));
            }
        }
        let mut extras: Vec<&ObservedContainer> = sp
            .replicas
            .iter()
            .filter(|r| r.action == Action::Remove)
            .filter_map(current)
            .collect();
        extras.sort_by_key(|c| Reverse(c.number()));
        let grace = service.spec.stop_grace_period_ms.map(Duration::from_millis);
        for extra in extras {
            crate::progress!(
                who,
                "scaling down to {total}: removing {} (volumes are kept)",
                extra.name
            );
            match self.engine.stop_container(&extra.id, grace).await {
                // Removed by hand meanwhile: what was wanted.
                Err(e) if !e.is_gone() => return Err(e.into()),
                _ => self.remove_old(&extra.id).await?,
            }
        }
        Ok(Ok(()))
    }
}
