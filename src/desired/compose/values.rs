//! Readers of typed values (strings, booleans, durations, sizes, lists, key=value maps), each
//! reporting a problem and returning nothing when the file gives something else.

use super::context::Text;
use super::parse::{parse_bytes, parse_duration, shell_split};
use super::{join, Cx};
use crate::desired::interpolate::{interpolate, raw_key};
use crate::desired::yaml::{Node, Value};
use crate::mask::is_secret_key;
use std::collections::BTreeMap;
use std::time::Duration;

const SECRET_IN_KEY: &str =
    "a host-local or secret-looking variable may be used in values only: keys and labels are shown and stored as they are";
pub(super) const SECRET_OUTSIDE_ENV: &str =
    "a host-local (secret) variable may be used only in `environment` values, where it is masked";

impl Cx<'_> {
    /// A value outside `environment`. Host-local variables hold secrets, and only env values are
    /// masked everywhere (labels, commands and the like are shown in `diff` and stored in labels).
    pub(super) fn string(&mut self, node: &Node, key: &str) -> Option<String> {
        let text = self.text(node, key)?;
        if text.secret {
            // Refused, and the value goes no further: no later message can quote it.
            self.problem(node, key, SECRET_OUTSIDE_ENV);
            return None;
        }
        if text.sensitive {
            self.sensitive_keys.push(key.to_string());
        }
        Some(text.value)
    }

    pub(super) fn bool(&mut self, node: &Node, key: &str) -> Option<bool> {
        let s = self.string(node, key)?;
        match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => Some(true),
            "false" | "no" | "off" => Some(false),
            _ => {
                self.problem(node, key, format!("expected true or false, found '{s}'"));
                None
            }
        }
    }

    pub(super) fn duration(&mut self, node: &Node, key: &str) -> Option<Duration> {
        let s = self.string(node, key)?;
        match parse_duration(&s) {
            Some(d) => Some(d),
            None => {
                self.problem(
                    node,
                    key,
                    format!(
                        "'{s}' is not a duration of at most a year (write e.g. 30s, 1m30s, 500ms)"
                    ),
                );
                None
            }
        }
    }

    pub(super) fn integer<T: std::str::FromStr>(&mut self, node: &Node, key: &str) -> Option<T> {
        let s = self.string(node, key)?;
        match s.parse() {
            Ok(v) => Some(v),
            Err(_) => {
                self.problem(node, key, format!("expected a whole number, found '{s}'"));
                None
            }
        }
    }

    pub(super) fn bytes(&mut self, node: &Node, key: &str) -> Option<i64> {
        let s = self.string(node, key)?;
        match parse_bytes(&s) {
            Some(b) => Some(b),
            None => {
                self.problem(
                    node,
                    key,
                    format!("'{s}' is not a size (write e.g. 512m, 1g)"),
                );
                None
            }
        }
    }

    /// A string, or a list of strings: Compose accepts both for many keys.
    pub(super) fn string_or_list(&mut self, node: &Node, key: &str) -> Option<Vec<String>> {
        match &node.value {
            Value::Seq(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    out.push(self.string(item, &format!("{key}[{i}]"))?);
                }
                Some(out)
            }
            _ => self.string(node, key).map(|s| vec![s]),
        }
    }

    /// The entries of a list of strings, each with its node and its key (`key[i]`), for readers
    /// that judge entries one by one. Not a list is a problem: "expected `what`, found ...".
    /// An entry that is not a string is reported by [`Self::string`] and left out.
    pub(super) fn located_strings<'n>(
        &mut self,
        node: &'n Node,
        key: &str,
        what: &str,
    ) -> Vec<(&'n Node, String, String)> {
        let Value::Seq(items) = &node.value else {
            self.problem(node, key, format!("expected {what}, found {}", node.kind()));
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let k = format!("{key}[{i}]");
                let text = self.string(item, &k)?;
                Some((item, k, text))
            })
            .collect()
    }

    /// `command`/`entrypoint`: a list, or a string split like a shell would.
    pub(super) fn command(&mut self, node: &Node, key: &str) -> Option<Vec<String>> {
        match &node.value {
            Value::Seq(_) => self.string_or_list(node, key),
            _ => {
                let s = self.string(node, key)?;
                match shell_split(&s) {
                    Some(words) => Some(words),
                    None => {
                        self.problem(node, key, "unbalanced quotes in command string");
                        None
                    }
                }
            }
        }
    }

    /// A map of strings, or a list of `KEY=VALUE` (labels, environment, logging options).
    /// Values are `None` where the file gives only the key.
    pub(super) fn key_values(
        &mut self,
        node: &Node,
        key: &str,
    ) -> Vec<(String, Option<Text>, usize)> {
        let mut out = Vec::new();
        match &node.value {
            Value::Map(entries) => {
                for (k, v) in entries {
                    let path = join(key, k.key_text());
                    let value = match v.value {
                        Value::Null => None,
                        _ => self.text(v, &path),
                    };
                    out.push((k.key_text().to_string(), value, k.line));
                }
            }
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let path = format!("{key}[{i}]");
                    if let Value::Scalar { text: raw, .. } = &item.value {
                        if self.takes_secret(item, raw_key(raw)) {
                            // Only values are masked: a key (`X_${TOKEN}=1`, a label without
                            // `=`) is shown and stored as it is.
                            self.problem(item, &path, SECRET_IN_KEY);
                            continue;
                        }
                    }
                    if let Some(t) = self.text(item, &path) {
                        match t.value.split_once('=') {
                            Some((k, v)) => out.push((
                                k.to_string(),
                                Some(Text {
                                    value: v.to_string(),
                                    secret: t.secret,
                                    sensitive: t.sensitive,
                                }),
                                item.line,
                            )),
                            None => out.push((t.value, None, item.line)),
                        }
                    }
                }
            }
            Value::Null => {}
            _ => self.problem(
                node,
                key,
                format!(
                    "expected a mapping or a list of KEY=VALUE, found {}",
                    node.kind()
                ),
            ),
        }
        out
    }

    /// Whether interpolating `raw` (written in `node`'s file) would use a host-local or secret-looking variable.
    pub(super) fn takes_secret(&self, node: &Node, raw: &str) -> bool {
        if !raw.contains('$') {
            return false;
        }
        let vars = self.vars_for(node);
        let lookup = |name: &str| vars.values.get(name).cloned();
        interpolate(raw, &lookup).is_ok_and(|out| {
            out.used
                .iter()
                .any(|v| vars.host_local.contains(v) || is_secret_key(v))
        })
    }

    pub(super) fn string_map(&mut self, node: &Node, key: &str) -> BTreeMap<String, String> {
        let entries = self.key_values(node, key);
        if entries
            .iter()
            .any(|(_, v, _)| v.as_ref().is_some_and(|t| t.secret))
        {
            self.problem(node, key, SECRET_OUTSIDE_ENV);
        } else if entries
            .iter()
            .any(|(_, v, _)| v.as_ref().is_some_and(|t| t.sensitive))
        {
            self.sensitive_keys.push(key.to_string());
        }
        entries
            .into_iter()
            .map(|(k, v, _)| (k, v.map(|t| t.value).unwrap_or_default()))
            .collect()
    }

    /// Labels Compose and the reconciler set themselves may not come from a file: they decide
    /// which project and service a container or resource belongs to.
    pub(super) fn refuse_reserved_labels(
        &mut self,
        node: &Node,
        key: &str,
        labels: &BTreeMap<String, String>,
    ) {
        if let Some(bad) = labels
            .keys()
            .find(|l| l.starts_with("com.docker.compose.") || l.starts_with(crate::labels::PREFIX))
        {
            self.problem(
                node,
                key,
                format!("label '{bad}' is reserved for the reconciler and Compose"),
            );
        }
    }
}
