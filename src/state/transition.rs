//! How a pass's outcomes change the recorded state: pure functions of (state, outcome, time),
//! so the rules (what blocks a retry, what counts as the last good revision) are tested without
//! a disk or an engine. The executor saves the result after each service.

use super::{Failure, JournalEntry, JournalResult, State};
use crate::outcome::{ServiceOutcome, ServiceResult, Step};

/// Record one service's outcome. `now` is an RFC 3339 time.
pub fn record_outcome(state: &mut State, o: &ServiceOutcome, now: &str) {
    match (&o.result, o.step) {
        (ServiceResult::Done, Step::Remove) => {
            if let Some(stack) = state.stacks.get_mut(&o.stack) {
                stack.services.remove(&o.service);
            }
        }
        (ServiceResult::Done, _) => {
            let entry = state.service_mut(&o.stack, &o.service);
            entry.failed = None;
            entry.running_revision = Some(o.revision.clone());
            entry.since = Some(now.to_string());
        }
        // Starting an existing container again (self-heal) is not a release: its failure must
        // not block the next pass from creating the service anew.
        (ServiceResult::Failed { .. }, Step::Start) => {}
        (ServiceResult::Failed { reason, .. }, _) => {
            state.service_mut(&o.stack, &o.service).failed = Some(Failure {
                revision: o.revision.clone(),
                spec_hash: o.spec_hash.clone(),
                reason: reason.clone(),
                at: now.to_string(),
            });
        }
        // Not tried: nothing about this spec is known yet.
        (ServiceResult::Skipped { .. }, _) => {}
    }
}

/// A stack's pass is over: it was applied at `revision`, and that revision is the last good one
/// when nothing of it failed.
pub fn finish_stack(state: &mut State, stack: &str, revision: &str, all_good: bool) {
    let st = state.stacks.entry(stack.to_string()).or_default();
    st.last_applied = Some(revision.to_string());
    if all_good {
        st.last_good = Some(revision.to_string());
    }
}

/// The journal line for an outcome; a skipped service changed nothing and has none.
pub fn journal_entry(o: &ServiceOutcome, now: &str) -> Option<JournalEntry> {
    let (result, reason, log_tail) = match &o.result {
        ServiceResult::Done => (JournalResult::Ok, None, vec![]),
        ServiceResult::Failed { reason, log_tail } => (
            JournalResult::Failed,
            Some(reason.clone()),
            log_tail.clone(),
        ),
        ServiceResult::Skipped { .. } => return None,
    };
    Some(JournalEntry {
        at: now.to_string(),
        revision: o.revision.clone(),
        stack: o.stack.clone(),
        service: o.service.clone(),
        action: o.step,
        from: o.from_image.clone(),
        to: o.to_image.clone(),
        result,
        duration_ms: o.elapsed_ms,
        reason,
        log_tail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(step: Step, result: ServiceResult) -> ServiceOutcome {
        ServiceOutcome {
            stack: "shop".into(),
            service: "web".into(),
            revision: "r2".into(),
            step,
            spec_hash: "hash2".into(),
            from_image: Some("web:1".into()),
            to_image: Some("web:2".into()),
            result,
            elapsed_ms: 10,
        }
    }

    fn failed(reason: &str) -> ServiceResult {
        ServiceResult::Failed {
            reason: reason.into(),
            log_tail: vec!["boom".into()],
        }
    }

    #[test]
    fn a_failed_update_blocks_its_spec_and_keeps_the_running_revision() {
        let mut state = State::default();
        state.service_mut("shop", "web").running_revision = Some("r1".into());
        record_outcome(&mut state, &outcome(Step::Update, failed("unhealthy")), "t");
        let web = &state.stacks["shop"].services["web"];
        assert_eq!(web.running_revision.as_deref(), Some("r1"));
        let f = web.failed.as_ref().unwrap();
        assert_eq!(
            (f.spec_hash.as_str(), f.reason.as_str()),
            ("hash2", "unhealthy")
        );
    }

    #[test]
    fn a_done_update_clears_the_failure_and_records_the_revision() {
        let mut state = State::default();
        record_outcome(&mut state, &outcome(Step::Update, failed("x")), "t1");
        record_outcome(
            &mut state,
            &outcome(Step::Update, ServiceResult::Done),
            "t2",
        );
        let web = &state.stacks["shop"].services["web"];
        assert!(web.failed.is_none());
        assert_eq!(web.running_revision.as_deref(), Some("r2"));
        assert_eq!(web.since.as_deref(), Some("t2"));
    }

    #[test]
    fn a_failed_self_heal_start_and_a_skip_block_nothing() {
        let mut state = State::default();
        record_outcome(&mut state, &outcome(Step::Start, failed("exited")), "t");
        let skipped = ServiceResult::Skipped {
            reason: "dependency db failed".into(),
        };
        record_outcome(&mut state, &outcome(Step::Create, skipped.clone()), "t");
        assert_eq!(state.failure("shop", "web"), None);
        assert!(journal_entry(&outcome(Step::Create, skipped), "t").is_none());
    }

    #[test]
    fn a_removal_forgets_the_service() {
        let mut state = State::default();
        state.service_mut("shop", "web").running_revision = Some("r1".into());
        record_outcome(&mut state, &outcome(Step::Remove, ServiceResult::Done), "t");
        assert!(!state.stacks["shop"].services.contains_key("web"));
    }

    #[test]
    fn last_good_moves_only_when_the_whole_stack_went_well() {
        let mut state = State::default();
        finish_stack(&mut state, "shop", "r1", true);
        finish_stack(&mut state, "shop", "r2", false);
        let st = &state.stacks["shop"];
        assert_eq!(st.last_applied.as_deref(), Some("r2"));
        assert_eq!(st.last_good.as_deref(), Some("r1"));
    }

    #[test]
    fn the_journal_line_carries_the_reason_and_log_tail_of_a_failure() {
        let e = journal_entry(&outcome(Step::Update, failed("unhealthy")), "t").unwrap();
        assert_eq!(e.action, Step::Update);
        assert_eq!(e.result, JournalResult::Failed);
        assert_eq!(e.reason.as_deref(), Some("unhealthy"));
        assert_eq!(e.log_tail, vec!["boom".to_string()]);
        let line = serde_json::to_string(&e).unwrap();
        assert!(line.contains(r#""action":"update""#) && line.contains(r#""result":"failed""#));
    }
}
