//! A service's `healthcheck:`, or its `disable: true`.

use crate::desired::compose::{join, ms, Cx};
use crate::desired::model::HealthSpec;
use crate::desired::yaml::{Node, Value};

impl Cx<'_> {
    pub(super) fn healthcheck(&mut self, node: &Node, key: &str) -> Option<HealthSpec> {
        let entries = self.map(node, key)?;
        self.check_keys(
            entries,
            key,
            &[
                "test",
                "interval",
                "timeout",
                "start_period",
                "start_interval",
                "retries",
                "disable",
            ],
        );
        if let Some((k, _)) = entries
            .iter()
            .find(|(k, _)| k.key_text() == "start_interval")
        {
            self.warn(k, &join(key, "start_interval"), "'start_interval' is ignored: it needs Docker Engine API 1.44 (Engine 25), and the reconciler speaks API 1.41; the check runs at 'interval' from the start");
        }
        if let Some(d) = node.get("disable") {
            if self.bool(d, &join(key, "disable")) == Some(true) {
                return Some(HealthSpec {
                    test: vec!["NONE".into()],
                    interval_ms: None,
                    timeout_ms: None,
                    start_period_ms: None,
                    retries: None,
                });
            }
        }
        let test = match node.get("test") {
            Some(
                t @ Node {
                    value: Value::Seq(_),
                    ..
                },
            ) => {
                let words = self.string_or_list(t, &join(key, "test"))?;
                if !matches!(
                    words.first().map(String::as_str),
                    Some("CMD" | "CMD-SHELL" | "NONE")
                ) {
                    self.problem(
                        t,
                        &join(key, "test"),
                        "a healthcheck test list must start with CMD, CMD-SHELL or NONE",
                    );
                    return None;
                }
                words
            }
            Some(t) => vec!["CMD-SHELL".to_string(), self.string(t, &join(key, "test"))?],
            None => {
                self.problem(node, key, "a healthcheck needs 'test' (or 'disable: true')");
                return None;
            }
        };
        let mut d = |name: &str| {
            node.get(name)
                .and_then(|n| self.duration(n, &join(key, name)))
                .map(ms)
        };
        let (interval_ms, timeout_ms, start_period_ms) =
            (d("interval"), d("timeout"), d("start_period"));
        let retries = node
            .get("retries")
            .and_then(|n| self.integer(n, &join(key, "retries")));
        Some(HealthSpec {
            test,
            interval_ms,
            timeout_ms,
            start_period_ms,
            retries,
        })
    }
}
