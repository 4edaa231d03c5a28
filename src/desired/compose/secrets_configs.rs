//! The top-level `secrets:` and `configs:`: where each one's content comes from (a repository
//! file, a host file, a variable, inline content). Services receive them by name
//! (service/files.rs). Compose's single-host semantics: no Swarm object, no driver.

use super::{join, Cx};
use crate::desired::file_mount::{FileContent, FileKind, FileSource};
use crate::desired::model::hex;
use crate::desired::yaml::{Node, Value};
use crate::mask::is_secret_key;
use sha2::Digest as _;
use std::collections::BTreeMap;

/// One declared secret or config.
#[derive(Debug, Clone)]
pub(super) struct FileDef {
    pub(super) from: FileSource,
    /// Its content is secret: every secret, and a config that took a secret variable.
    pub(super) secret: bool,
}

/// The declarations by name; `None` for one whose declaration had a problem (reported once
/// there, so a service receiving it adds no second one).
#[derive(Debug, Default)]
pub(super) struct FileDefs {
    secrets: BTreeMap<String, Option<FileDef>>,
    configs: BTreeMap<String, Option<FileDef>>,
}

impl FileDefs {
    pub(super) fn of(&self, kind: FileKind) -> &BTreeMap<String, Option<FileDef>> {
        match kind {
            FileKind::Secret => &self.secrets,
            FileKind::Config => &self.configs,
        }
    }
}

/// Keys by which Swarm, not the file, gives the content: there is nothing to mount on one host.
const SWARM_SOURCES: &[&str] = &["driver", "driver_opts", "template_driver"];

impl Cx<'_> {
    /// Reads both sections of the document into [`Cx::file_defs`].
    pub(super) fn file_defs(&mut self, doc: &Node) {
        for kind in [FileKind::Secret, FileKind::Config] {
            let Some(node) = doc.get(kind.key()) else {
                continue;
            };
            let defs = self.declarations(node, kind);
            match kind {
                FileKind::Secret => self.file_defs.secrets = defs,
                FileKind::Config => self.file_defs.configs = defs,
            }
        }
    }

    fn declarations(&mut self, node: &Node, kind: FileKind) -> BTreeMap<String, Option<FileDef>> {
        let mut out = BTreeMap::new();
        if node.value == Value::Null {
            return out;
        }
        let Some(entries) = self.map(node, kind.key()) else {
            return out;
        };
        for (k, v) in entries {
            let name = k.key_text().to_string();
            let path = join(kind.key(), &name);
            if !valid_name(&name) {
                self.problem(
                    k,
                    &path,
                    format!(
                        "a {} name may hold only letters, digits, '.', '_' and '-'",
                        kind.noun()
                    ),
                );
                continue;
            }
            let def = self.declaration(k, v, &path, kind, &name);
            out.insert(name, def);
        }
        out
    }

    /// `key` is the name's node, where a problem with the whole declaration is shown.
    fn declaration(
        &mut self,
        key: &Node,
        node: &Node,
        path: &str,
        kind: FileKind,
        name: &str,
    ) -> Option<FileDef> {
        let before = self.problems_kept();
        let entries = self.map(node, path)?;
        let sources: &[&str] = match kind {
            FileKind::Secret => &["file", "environment"],
            FileKind::Config => &["file", "environment", "content"],
        };
        let others = ["external", "name", "labels"];
        let allowed: Vec<&str> = sources
            .iter()
            .chain(&others)
            .chain(SWARM_SOURCES)
            .copied()
            .collect();
        self.check_keys(entries, path, &allowed);
        let choices = match sources {
            [first @ .., last] => {
                let first: Vec<String> = first.iter().map(|s| format!("`{s}:`")).collect();
                format!("{} or `{last}:`", first.join(", "))
            }
            [] => String::new(),
        };
        if let Some((k, n)) = entries.iter().find(|(k, _)| k.key_text() == "external") {
            let key = join(path, "external");
            if self.external(n, &key) {
                self.problem(
                    k,
                    &key,
                    format!(
                        "an external {noun} is a Swarm object: Docker Compose has none on a single host; give the {noun}'s {choices} instead",
                        noun = kind.noun()
                    ),
                );
                return None;
            }
        }
        for key in SWARM_SOURCES {
            if let Some(n) = node.get(key) {
                self.problem(
                    n,
                    &join(path, key),
                    format!(
                        "'{key}' is Swarm's: Docker Compose does not support {}.*.{key} on a single host; give the {}'s {choices} instead",
                        kind.key(),
                        kind.noun()
                    ),
                );
            }
        }
        for key in ["name", "labels"] {
            if let Some(n) = node.get(key) {
                self.warn(
                    n,
                    &join(path, key),
                    format!(
                        "'{key}' is ignored: it names or labels a Swarm object, and on a single host a {} is only a file",
                        kind.noun()
                    ),
                );
            }
        }
        let given: Vec<(&str, &Node)> = sources
            .iter()
            .filter_map(|s| node.get(s).map(|n| (*s, n)))
            .collect();
        let [(source, source_node)] = given.as_slice() else {
            // No source beside a problem already said (an unknown key, a driver) is that problem.
            if !given.is_empty() || self.problems_kept() == before {
                self.problem(
                    key,
                    path,
                    format!("a {} needs exactly one of {choices}", kind.noun()),
                );
            }
            return None;
        };
        if self.problems_kept() != before {
            return None;
        }
        let source_key = join(path, source);
        match *source {
            "file" => self.file_source(source_node, &source_key, kind),
            "environment" => self.environment_source(source_node, &source_key, kind, name),
            _ => self.content_source(source_node, &source_key),
        }
    }

    /// `external: true`, or Compose's older `external: {name: ...}`.
    fn external(&mut self, node: &Node, key: &str) -> bool {
        match &node.value {
            Value::Map(_) => true,
            _ => self.bool(node, key).unwrap_or(false),
        }
    }

    /// `file:` inside the stack folder (read confined, content digested) or an absolute host
    /// path (bound as it is; the host policy judges it as it judges any bind).
    fn file_source(&mut self, node: &Node, key: &str, kind: FileKind) -> Option<FileDef> {
        let file = self.string(node, key)?;
        let secret = kind == FileKind::Secret;
        if file.starts_with('/') {
            return Some(FileDef {
                from: FileSource::Host { path: file },
                secret,
            });
        }
        if file.starts_with('~') {
            self.problem(node, key, "paths starting with '~' are not supported: the reconciler runs as a service; write an absolute path or one inside the stack folder");
            return None;
        }
        let found = self
            .files
            .resolve(&self.path_from(node, &file))
            .and_then(|rel| self.files.digest(&rel).map(|digest| (rel, digest)));
        match found {
            Ok((path, digest)) => Some(FileDef {
                from: FileSource::Repository { path, digest },
                secret,
            }),
            Err(e) => {
                self.problem(node, key, e);
                None
            }
        }
    }

    /// `environment: VAR`: the value of a variable of the stack (`.env` or, for secrets kept
    /// out of git, the host-local env file). Unset is refused, as Compose refuses it.
    fn environment_source(
        &mut self,
        node: &Node,
        key: &str,
        kind: FileKind,
        name: &str,
    ) -> Option<FileDef> {
        let variable = self.string(node, key)?;
        let Some(value) = self.vars.values.get(&variable).cloned() else {
            self.problem(
                node,
                key,
                format!(
                    "environment variable '{variable}' required by {} '{name}' is not set: set it in the stack's .env or in the host-local env file (<state-dir>/env/<stack>.env)",
                    kind.noun()
                ),
            );
            return None;
        };
        let secret = kind == FileKind::Secret
            || self.vars.host_local.contains(&variable)
            || is_secret_key(&variable);
        Some(self.content_def(&value, secret))
    }

    /// A config's inline `content:`, interpolated; secret when a secret variable went into it.
    fn content_source(&mut self, node: &Node, key: &str) -> Option<FileDef> {
        let text = self.text(node, key)?;
        Some(self.content_def(&text.value, text.secret || text.sensitive))
    }

    fn content_def(&mut self, value: &str, secret: bool) -> FileDef {
        if secret {
            self.hide(value);
        }
        FileDef {
            from: FileSource::Content {
                digest: hex(&sha2::Sha256::digest(value.as_bytes())),
                content: FileContent::new(value.as_bytes()),
            },
            secret,
        }
    }
}

/// Compose's pattern for these names; `.` and `..` would name a folder as the default target.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests;
