//! Crash recovery: finish or undo what an interrupted update left, from names and labels alone.

use super::{ExecError, Executor};
use crate::desired::Desired;
use crate::engine::Engine;
use crate::labels;
use crate::logging::Who;
use crate::observed::{Health, Observed, ObservedContainer, Role};
use crate::state::runbook::ActivityKind;

impl<E: Engine> Executor<'_, E> {
    /// Finish or undo updates a previous run left half-done, from names and labels alone, and
    /// remove the one-off containers (volume holders, jobs) it left. Returns whether anything
    /// was changed (then observe again).
    pub async fn recover(&self, desired: &Desired, observed: &Observed) -> Result<bool, ExecError> {
        let mut changed = self.remove_leftover_oneoffs(desired).await?;
        changed |= self.unpause_left_by_a_backup(desired, observed).await?;
        for leftover in observed
            .containers
            .iter()
            .filter(|c| c.role() != Role::Primary)
            // A candidate is always one we created: a look-alike name is not ours to touch.
            .filter(|c| c.role() != Role::Candidate || c.is_managed())
        {
            // The same replica under its own name: of a service of several containers, only
            // the one with the leftover's number tells whether its update finished.
            let primary = observed
                .replicas(&leftover.project, &leftover.service)
                .into_iter()
                .find(|c| c.number() == leftover.number());
            let original = leftover
                .name
                .trim_end_matches(labels::BACKUP_SUFFIX)
                .trim_end_matches(labels::CANDIDATE_SUFFIX)
                .to_string();
            let who = Who::new(
                &leftover.project,
                &leftover.service,
                leftover.revision().unwrap_or(""),
            );
            // A process that died inside a monitor window leaves its Watching activity: the
            // new container was not proven, so the old one comes back (the next pass tries the
            // update again, with a whole window).
            let watched = self.watch_left(leftover);
            let window_cut = primary.is_some_and(|new| watched.as_deref() == Some(&new.name));
            match (leftover.role(), primary) {
                (Role::Backup, Some(new))
                    if new.is_running()
                        && new.health != Health::Unhealthy
                        && new.health != Health::Starting
                        && !window_cut =>
                {
                    crate::progress!(
                        who,
                        "an earlier update finished but left the old container; removing it"
                    );
                    self.engine.remove_container(&leftover.id).await?;
                }
                (Role::Backup, new) => {
                    let when = if window_cut {
                        " inside its monitor window"
                    } else {
                        ""
                    };
                    crate::progress!(
                        who,
                        "an earlier update was interrupted{when}; restoring the old container"
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
                    crate::progress!(
                        who,
                        "removing an unproven container from an interrupted update"
                    );
                    self.engine.remove_container(&leftover.id).await?;
                }
                (Role::Candidate, None)
                    if leftover.is_running() && leftover.health != Health::Unhealthy =>
                {
                    crate::progress!(who, "an interrupted update had replaced the old container; promoting the new one");
                    self.engine
                        .rename_container(&leftover.id, &original)
                        .await?;
                }
                (Role::Candidate, None) => {
                    self.engine.remove_container(&leftover.id).await?;
                }
                (Role::Primary, _) => {}
            }
            // What the dead process was watching (this replacement, or the candidate itself) is
            // settled now.
            if watched.is_some_and(|w| w == leftover.name || w == original) {
                self.state_dir
                    .set_activity(&leftover.project, &leftover.service, None)?;
            }
            changed = true;
        }
        Ok(changed)
    }

    /// The container a process that is gone was watching in the leftover's service when it
    /// died, if it was.
    fn watch_left(&self, leftover: &ObservedContainer) -> Option<String> {
        self.state_dir
            .activity_left(&leftover.project, &leftover.service)
            .filter(|a| a.kind == ActivityKind::Watching && a.pid != std::process::id())
            .map(|a| a.detail)
    }

    /// A process that died while copying a volume left its writers paused: the planner sees a
    /// paused container as in sync, so nothing else would ever unpause them.
    async fn unpause_left_by_a_backup(
        &self,
        desired: &Desired,
        observed: &Observed,
    ) -> Result<bool, ExecError> {
        let suspended = self.state_dir.suspended();
        let mut changed = false;
        for stack in desired
            .stacks
            .iter()
            .filter(|s| !suspended.contains(&s.name))
        {
            for service in stack.services.keys() {
                let Some(left) = self
                    .state_dir
                    .activity_left(&stack.name, service)
                    .filter(|a| a.kind == ActivityKind::BackingUp && a.pid != std::process::id())
                else {
                    continue;
                };
                for c in observed.containers.iter().filter(|c| {
                    c.project == stack.name
                        && c.is_managed()
                        && c.state == "paused"
                        && super::backup::mounts_volume(c, &left.detail) == Some(true)
                }) {
                    let who = Who::new(&c.project, &c.service, c.revision().unwrap_or(""));
                    crate::progress!(
                        who,
                        "unpausing {}, left paused by a backup of volume {} that was interrupted",
                        c.name,
                        left.detail
                    );
                    match self.engine.unpause_container(&c.id).await {
                        Err(e) if !e.is_gone() => return Err(e.into()),
                        _ => changed = true,
                    }
                }
                self.state_dir.set_activity(&stack.name, service, None)?;
            }
        }
        Ok(changed)
    }

    /// A one-off container outlives its step only when the process doing the step died; a
    /// stack being restored by hand is suspended, so it is not in `desired` here.
    async fn remove_leftover_oneoffs(&self, desired: &Desired) -> Result<bool, ExecError> {
        // Read again: `reconciler restore` may have suspended a stack since the pass began.
        let suspended = self.state_dir.suspended();
        let projects: Vec<String> = desired
            .stacks
            .iter()
            .map(|s| s.name.clone())
            .filter(|name| !suspended.contains(name))
            .collect();
        let leftovers = self.engine.list_oneoffs(&projects).await?;
        for leftover in &leftovers {
            let who = Who::new(&leftover.project, &leftover.service, "");
            crate::progress!(
                who,
                "removing {} ({}), left by an interrupted run",
                leftover.name,
                leftover.role
            );
            if leftover.running {
                self.engine
                    .stop_container(&leftover.id, Some(std::time::Duration::from_secs(10)))
                    .await?;
            }
            self.remove_old(&leftover.id).await?;
        }
        Ok(!leftovers.is_empty())
    }
}
