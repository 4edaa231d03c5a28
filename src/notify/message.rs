//! What a notification says: built from an outcome or a suspension, pure. The `text` field is
//! what Slack (and most chat webhooks) show; the other fields are for machines.
//!
//! Only what `/status` may show goes out: the reason (secret values already scrubbed by the
//! executor), never the failed container's log lines, since an app may log what it read from
//! anywhere.

use crate::outcome::{ServiceOutcome, ServiceResult, Step};
use serde::Serialize;

/// Why a message is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A change was made and accepted (release, revert excepted; self-heal, scale, removal).
    Applied,
    /// A release failed and nothing older was there to keep (or nothing was touched: a pull).
    Failed,
    /// A failed release whose old container was put back, or a deployed revert.
    RolledBack,
    /// Not tried: a service it depends on failed.
    Skipped,
    /// The loop noticed a stack the operator suspended.
    Suspended,
    /// The loop noticed a stack the operator resumed.
    Resumed,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Failed => "failed",
            Self::RolledBack => "rolled_back",
            Self::Skipped => "skipped",
            Self::Suspended => "suspended",
            Self::Resumed => "resumed",
        }
    }
}

/// One notification, as its JSON body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// One line for people (Slack's `text`).
    pub text: String,
    pub event: Event,
    /// The journal's name for what was done (`update`, `rollback`, ...); none for a stack.
    pub action: Option<&'static str>,
    pub stack: String,
    pub service: Option<String>,
    pub revision: Option<String>,
    /// The image before and after (the one tried, for a failure).
    pub from: Option<String>,
    pub to: Option<String>,
    pub reason: Option<String>,
    /// The host the reconciler runs on.
    pub host: String,
    /// RFC 3339.
    pub at: String,
}

/// The first 12 characters of a commit, as the log shows it.
fn short(revision: &str) -> &str {
    &revision[..revision.len().min(12)]
}

impl Message {
    /// What a service's outcome says.
    pub fn of_outcome(o: &ServiceOutcome, host: &str, at: &str) -> Self {
        let who = o.who();
        let to = o.to_image.as_deref().unwrap_or("-");
        let from = o.from_image.as_deref();
        let at_rev = match o.revision.as_str() {
            "" => String::new(),
            r => format!(" (revision {})", short(r)),
        };
        let (event, text) = match (&o.result, o.step) {
            (ServiceResult::Done, Step::Rollback) => (
                Event::RolledBack,
                format!("{who} rolled back to {to}{at_rev}"),
            ),
            (ServiceResult::Done, step) => (
                Event::Applied,
                match step {
                    Step::Create => format!("{who} created with {to}{at_rev}"),
                    Step::Start => format!("{who} started again: its container had stopped"),
                    Step::Scale => format!("{who} scaled ({to}){at_rev}"),
                    Step::Remove => format!("{who} removed: it left the desired state"),
                    _ => format!("{who} updated to {to}{at_rev}"),
                },
            ),
            (ServiceResult::Failed { reason, .. }, Step::Pull) => (
                Event::Failed,
                format!("{who}: pulling {to} failed, nothing was changed: {reason}"),
            ),
            (ServiceResult::Failed { reason, .. }, Step::Update | Step::Rollback)
                if from.is_some() =>
            {
                (
                    Event::RolledBack,
                    format!(
                        "{who}: release {to}{at_rev} failed: {reason}; rolled back, {} keeps running",
                        from.unwrap_or_default()
                    ),
                )
            }
            (ServiceResult::Failed { reason, .. }, Step::Create | Step::Update | Step::Rollback) => (
                Event::Failed,
                format!(
                    "{who}: release {to}{at_rev} failed: {reason}; nothing ran before, so nothing runs now"
                ),
            ),
            // Self-heal, scaling, removal: no release, so nothing to roll back.
            (ServiceResult::Failed { reason, .. }, step) => (
                Event::Failed,
                format!("{who}: {} failed: {reason}", step.as_str()),
            ),
            (ServiceResult::Skipped { reason }, _) => {
                (Event::Skipped, format!("{who} not changed: {reason}"))
            }
        };
        Self {
            text: format!("[{host}] {text}"),
            event,
            action: Some(o.step.as_str()),
            stack: o.stack.clone(),
            service: Some(o.service.clone()),
            revision: (!o.revision.is_empty()).then(|| o.revision.clone()),
            from: o.from_image.clone(),
            to: o.to_image.clone(),
            reason: o.reason().map(str::to_string),
            host: host.to_string(),
            at: at.to_string(),
        }
    }

    /// A stack suspended (`suspended`) or resumed, as the loop noticed it.
    pub fn of_stack(stack: &str, suspended: bool, host: &str, at: &str) -> Self {
        let (event, text) = if suspended {
            (
                Event::Suspended,
                format!("stack {stack} suspended: the reconciler leaves it alone until `reconciler resume {stack}`"),
            )
        } else {
            (
                Event::Resumed,
                format!("stack {stack} resumed: the reconciler converges it again"),
            )
        };
        Self {
            text: format!("[{host}] {text}"),
            event,
            action: None,
            stack: stack.to_string(),
            service: None,
            revision: None,
            from: None,
            to: None,
            reason: None,
            host: host.to_string(),
            at: at.to_string(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a message serializes")
    }
}

/// Stacks suspended and resumed since the last pass the loop reported. The first pass only
/// learns what is suspended: a restart does not say it all again.
#[derive(Debug, Default)]
pub struct SuspensionWatch(std::sync::Mutex<Option<std::collections::BTreeSet<String>>>);

impl SuspensionWatch {
    /// `(newly suspended, resumed)` given the stacks suspended now.
    pub fn changes(&self, now: &[String]) -> (Vec<String>, Vec<String>) {
        let now: std::collections::BTreeSet<String> = now.iter().cloned().collect();
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let changes = match seen.as_ref() {
            None => (vec![], vec![]),
            Some(before) => (
                now.difference(before).cloned().collect(),
                before.difference(&now).cloned().collect(),
            ),
        };
        *seen = Some(now);
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(step: Step, from: Option<&str>, result: ServiceResult) -> ServiceOutcome {
        ServiceOutcome {
            stack: "shop".into(),
            service: "web".into(),
            revision: "0123456789abcdef0123".into(),
            step,
            spec_hash: "h".into(),
            from_image: from.map(str::to_string),
            to_image: Some("web:v2".into()),
            result,
            elapsed_ms: 3,
        }
    }

    fn failed(reason: &str, log: &[&str]) -> ServiceResult {
        ServiceResult::Failed {
            reason: reason.into(),
            log_tail: log.iter().map(|l| l.to_string()).collect(),
        }
    }

    fn message(o: &ServiceOutcome) -> Message {
        Message::of_outcome(o, "host1", "2026-12-01T00:00:00Z")
    }

    #[test]
    fn an_applied_release_says_what_now_runs_with_every_field() {
        let m = message(&outcome(Step::Update, Some("web:v1"), ServiceResult::Done));
        assert_eq!(m.event, Event::Applied);
        assert_eq!(
            m.text,
            "[host1] shop/web updated to web:v2 (revision 0123456789ab)"
        );
        let json: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
        assert_eq!(json["event"], "applied");
        assert_eq!(json["action"], "update");
        assert_eq!(json["stack"], "shop");
        assert_eq!(json["service"], "web");
        assert_eq!(json["revision"], "0123456789abcdef0123");
        assert_eq!(json["from"], "web:v1");
        assert_eq!(json["to"], "web:v2");
        assert_eq!(json["reason"], serde_json::Value::Null);
        assert_eq!(json["host"], "host1");
        assert_eq!(json["at"], "2026-12-01T00:00:00Z");
        assert_eq!(json["text"], m.text);
    }

    #[test]
    fn a_failed_update_whose_old_container_was_restored_is_a_rollback_naming_both_images() {
        let m = message(&outcome(
            Step::Update,
            Some("web:v1"),
            failed("turned unhealthy", &[]),
        ));
        assert_eq!(m.event, Event::RolledBack);
        assert_eq!(m.reason.as_deref(), Some("turned unhealthy"));
        assert!(m.text.contains("release web:v2"), "{}", m.text);
        assert!(m.text.contains("turned unhealthy"), "{}", m.text);
        assert!(m.text.contains("web:v1 keeps running"), "{}", m.text);
    }

    #[test]
    fn a_deployed_revert_is_a_rollback_too() {
        let m = message(&outcome(
            Step::Rollback,
            Some("web:v3"),
            ServiceResult::Done,
        ));
        assert_eq!(m.event, Event::RolledBack);
        assert_eq!(m.action, Some("rollback"));
        assert!(m.text.contains("rolled back to web:v2"), "{}", m.text);
    }

    #[test]
    fn a_first_release_that_fails_and_a_failed_pull_are_failures() {
        let first = message(&outcome(
            Step::Create,
            None,
            failed("exited with code 1", &[]),
        ));
        assert_eq!(first.event, Event::Failed);
        assert!(first.text.contains("nothing runs now"), "{}", first.text);
        let pull = message(&outcome(
            Step::Pull,
            Some("web:v1"),
            failed("manifest unknown", &[]),
        ));
        assert_eq!(pull.event, Event::Failed);
        assert!(pull.text.contains("nothing was changed"), "{}", pull.text);
        let heal = message(&outcome(
            Step::Start,
            Some("web:v2"),
            failed("exited with code 1", &[]),
        ));
        assert_eq!(heal.event, Event::Failed);
        assert!(
            heal.text
                .ends_with("shop/web: start failed: exited with code 1"),
            "{}",
            heal.text
        );
    }

    #[test]
    fn a_skipped_service_says_why() {
        let m = message(&outcome(
            Step::Update,
            Some("web:v1"),
            ServiceResult::Skipped {
                reason: "db failed".into(),
            },
        ));
        assert_eq!(m.event, Event::Skipped);
        assert!(m.text.ends_with("not changed: db failed"), "{}", m.text);
    }

    #[test]
    fn the_failed_containers_log_lines_never_go_out() {
        // Declared secrets are scrubbed from logs, but an app may log what it read from
        // anywhere: logs stay in the root-only journal.
        let m = message(&outcome(
            Step::Update,
            Some("web:v1"),
            failed(
                "exited with code 1",
                &["connecting with password pw-undeclared-123"],
            ),
        ));
        let body = String::from_utf8(m.to_json()).unwrap();
        assert!(!body.contains("pw-undeclared-123"), "{body}");
    }

    #[test]
    fn a_scrubbed_reason_stays_masked() {
        let reason = crate::mask::scrub("env DB_PASSWORD=hunter22 refused", ["hunter22"]);
        let m = message(&outcome(Step::Update, Some("web:v1"), failed(&reason, &[])));
        let body = String::from_utf8(m.to_json()).unwrap();
        assert!(!body.contains("hunter22"), "{body}");
        assert!(body.contains("DB_PASSWORD=(hidden)"), "{body}");
    }

    #[test]
    fn suspension_and_resumption_name_the_stack() {
        let m = Message::of_stack("shop", true, "host1", "t");
        assert_eq!(m.event, Event::Suspended);
        assert_eq!(m.service, None);
        assert!(m.text.contains("stack shop suspended"), "{}", m.text);
        let json: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
        assert_eq!(json["event"], "suspended");
        assert_eq!(json["stack"], "shop");
        assert_eq!(
            Message::of_stack("shop", false, "h", "t").event,
            Event::Resumed
        );
    }

    #[test]
    fn suspensions_are_told_once_when_they_change_and_not_at_the_first_pass() {
        let watch = SuspensionWatch::default();
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(watch.changes(&s(&["old"])), (vec![], vec![]));
        assert_eq!(watch.changes(&s(&["old", "shop"])), (s(&["shop"]), vec![]));
        assert_eq!(watch.changes(&s(&["old", "shop"])), (vec![], vec![]));
        assert_eq!(watch.changes(&s(&["shop"])), (vec![], s(&["old"])));
    }
}
