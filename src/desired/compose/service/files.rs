//! A service's `secrets:` and `configs:`: which declared ones it receives, where (secrets under
//! `/run/secrets/`, configs under `/` unless `target` says otherwise), and with what owner and
//! mode. The short form names one; the long form adds `target`, `uid`, `gid` and `mode`.

use crate::desired::compose::parse::parse_mode;
use crate::desired::compose::{join, Cx};
use crate::desired::file_mount::{FileKind, FileMount, FileSource};
use crate::desired::model::ContainerSpec;
use crate::desired::yaml::{Node, Value};
use std::collections::BTreeSet;

impl Cx<'_> {
    /// Sets the spec's secrets and configs; a repository file among them joins `repo_binds`,
    /// so it is written out with the revision like any repository bind.
    pub(super) fn service_files(
        &mut self,
        node: &Node,
        path: &str,
        spec: &mut ContainerSpec,
        repo_binds: &mut Vec<String>,
    ) {
        // One path in the container holds one mount: a volume's target is taken already.
        let mut taken: BTreeSet<String> = spec.mounts.iter().map(|m| m.target.clone()).collect();
        for kind in [FileKind::Secret, FileKind::Config] {
            let Some(n) = node.get(kind.key()) else {
                continue;
            };
            let mut mounts = self.file_mounts(n, &join(path, kind.key()), kind, &mut taken);
            for mount in &mounts {
                if let FileSource::Repository { path, .. } = &mount.from {
                    if !repo_binds.contains(path) {
                        repo_binds.push(path.clone());
                    }
                }
            }
            mounts.sort();
            match kind {
                FileKind::Secret => spec.secrets = mounts,
                FileKind::Config => spec.configs = mounts,
            }
        }
    }

    fn file_mounts(
        &mut self,
        node: &Node,
        key: &str,
        kind: FileKind,
        taken: &mut BTreeSet<String>,
    ) -> Vec<FileMount> {
        let Value::Seq(items) = &node.value else {
            self.problem(
                node,
                key,
                format!("expected a list of {}, found {}", kind.key(), node.kind()),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let k = format!("{key}[{i}]");
            let Some(mount) = self.file_mount(item, &k, kind) else {
                continue;
            };
            if !taken.insert(mount.target.clone()) {
                self.problem(
                    item,
                    &k,
                    format!(
                        "'{}' is already a mount target of this service: each path in the container holds one mount",
                        mount.target
                    ),
                );
                continue;
            }
            self.mount_lines
                .insert(format!("{}:{}", kind.key(), mount.target), item.line);
            out.push(mount);
        }
        out
    }

    /// One entry: a declared name, short or long form.
    fn file_mount(&mut self, item: &Node, k: &str, kind: FileKind) -> Option<FileMount> {
        let noun = kind.noun();
        let (source, target, mut uid, mut gid, mut mode) = match &item.value {
            Value::Map(entries) => {
                self.check_keys(entries, k, &["source", "target", "uid", "gid", "mode"]);
                let Some(source_node) = item.get("source") else {
                    self.problem(item, k, format!("a long-form {noun} needs 'source'"));
                    return None;
                };
                let source = self.string(source_node, &join(k, "source"));
                let target = item
                    .get("target")
                    .and_then(|n| self.string(n, &join(k, "target")));
                let uid = item
                    .get("uid")
                    .and_then(|n| self.integer::<u32>(n, &join(k, "uid")));
                let gid = item
                    .get("gid")
                    .and_then(|n| self.integer::<u32>(n, &join(k, "gid")));
                let mode = item
                    .get("mode")
                    .and_then(|n| self.mode(n, &join(k, "mode")));
                (source?, target, uid, gid, mode)
            }
            _ => (self.string(item, k)?, None, None, None, None),
        };
        let def = match self.file_defs.of(kind).get(&source) {
            Some(Some(def)) => def.clone(),
            // Its declaration's problem is reported already.
            Some(None) => return None,
            None => {
                self.problem(
                    item,
                    k,
                    format!(
                        "{noun} '{source}' is not declared under the top-level `{}:`",
                        kind.key()
                    ),
                );
                return None;
            }
        };
        let target = match target {
            None => format!("{}{source}", kind.default_dir()),
            Some(t) if t.trim().is_empty() => {
                self.problem(item, k, format!("a {noun}'s target may not be empty"));
                return None;
            }
            Some(t) if t.starts_with('/') => t,
            Some(t) => format!("{}{t}", kind.default_dir()),
        };
        let written = matches!(def.from, FileSource::Content { .. });
        if !written && (uid.is_some() || gid.is_some() || mode.is_some()) {
            self.warn(
                item,
                k,
                format!("uid, gid and mode are ignored for a {noun} from `file:`: the file is bind-mounted as it is, as Docker Compose does"),
            );
            (uid, gid, mode) = (None, None, None);
        }
        Some(FileMount {
            target,
            source,
            from: def.from,
            uid,
            gid,
            mode,
            secret: def.secret,
        })
    }

    /// `mode: 0440`, read as Compose reads it; only permission bits.
    fn mode(&mut self, node: &Node, key: &str) -> Option<u32> {
        let plain = matches!(node.value, Value::Scalar { plain: true, .. });
        let text = self.string(node, key)?;
        match parse_mode(&text, plain) {
            Some(mode) if mode <= 0o777 => Some(mode),
            _ => {
                self.problem(
                    node,
                    key,
                    format!(
                        "'{text}' is not a file mode: write permission bits in octal, e.g. 0440"
                    ),
                );
                None
            }
        }
    }
}
