//! Compose file -> validated, normalized [`Stack`] parts (the Compose subset the reconciler supports).
//!
//! Pure apart from [`StackFiles`], through which `env_file` contents and mounted repository files
//! are read. All problems are collected, not just the first, so one `validate` run lists them all.

mod context;
mod depends_on;
mod ip;
mod keys;
mod networks_volumes;
mod parse;
mod references;
#[cfg(test)]
mod runtime_keys_tests;
mod secrets_configs;
mod service;
#[cfg(test)]
mod tests;
mod values;

pub use parse::{
    parse_bytes, parse_device, parse_duration, parse_mode, parse_port, parse_short_mount,
    shell_split, MAX_DURATION,
};

use super::error::Problem;
use super::model::*;
use super::yaml::{Node, Value};
use context::Cx;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Most containers one stack may run, replicas counted: a commit is one line away from asking
/// for thousands.
pub const MAX_CONTAINERS_PER_STACK: u64 = 1000;

/// Variables for `${VAR}` interpolation, and which of them came from the host-local (secret) file.
#[derive(Debug, Clone, Default)]
pub struct Variables {
    pub values: BTreeMap<String, String>,
    pub host_local: BTreeSet<String>,
}

impl Variables {
    /// Values never part of a message: host-local ones and those of secret-looking names.
    pub fn secret_values(&self) -> impl Iterator<Item = &str> {
        self.values
            .iter()
            .filter(|(name, _)| self.host_local.contains(*name) || crate::mask::is_secret_key(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Read access to the files of one stack folder, confined to it.
pub trait StackFiles {
    /// Normalize a path the file names, relative to the stack folder; refuse escapes and symlinks
    /// that leave the repository. Returns the normalized relative path.
    fn resolve(&self, rel: &str) -> Result<String, String>;
    fn read(&self, rel: &str) -> Result<Vec<u8>, String>;
    /// Digest of a file's content, or of a folder's whole tree.
    fn digest(&self, rel: &str) -> Result<String, String>;
    /// Whether a path the file names exists at all (an optional `env_file` may be absent).
    fn exists(&self, rel: &str) -> bool;
    /// A relative bind source: checked as [`resolve`](Self::resolve) does when it exists; when
    /// it does not, accepted (Compose creates it, empty) if what exists of its path is folders
    /// inside the stack folder. By default, only what [`resolve`](Self::resolve) accepts.
    fn bind_source(&self, rel: &str) -> Result<BindSource, String> {
        let rel = self.resolve(rel)?;
        Ok(BindSource {
            real: rel.clone(),
            rel,
            exists: true,
        })
    }
}

/// Where a relative bind source is in the stack folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindSource {
    /// Normalized as written (`data/db`); `.` for the stack folder itself.
    pub rel: String,
    /// The same path with the links inside the stack folder followed (`alias/db` with
    /// `alias -> data` is `data/db`): where the stack's data folder keeps it.
    pub real: String,
    /// Whether the repository has it.
    pub exists: bool,
}

/// One of the files a stack is made of, by [`Node::file`](crate::desired::yaml::Node::file).
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// As messages name it: `folder/compose.override.yaml`.
    pub shown: String,
    /// The folder its relative paths are resolved from, relative to the stack folder.
    pub dir: String,
    /// Which set of variables interpolates it.
    pub vars: usize,
}

pub struct StackParts {
    pub name: Option<String>,
    /// What was accepted but deserves a word: ignored keys, unset variables.
    pub warnings: Vec<Problem>,
    pub services: BTreeMap<String, Service>,
    pub volumes: BTreeMap<String, VolumeDef>,
    pub networks: BTreeMap<String, NetworkDef>,
}

/// Convert a parsed Compose document. `file` is the path shown in messages.
pub fn convert(
    doc: &Node,
    file: &str,
    project: &str,
    vars: &Variables,
    files: &dyn StackFiles,
) -> Result<StackParts, Vec<Problem>> {
    finish(Cx::new(file, vars, files), doc, project, &BTreeMap::new())
}

/// Convert a stack assembled from several files ([`crate::desired::assemble`]).
pub fn convert_assembled(
    assembled: &crate::desired::assemble::Assembled,
    project: &str,
    files: &dyn StackFiles,
) -> Result<StackParts, Vec<Problem>> {
    let cx = Cx::with_sources(
        &assembled.sources[0].shown,
        &assembled.sources,
        &assembled.var_sets,
        files,
    );
    finish(cx, &assembled.doc, project, &assembled.inactive)
}

fn finish(
    mut cx: Cx,
    doc: &Node,
    project: &str,
    inactive: &BTreeMap<String, Vec<String>>,
) -> Result<StackParts, Vec<Problem>> {
    cx.inactive = inactive.clone();
    let parts = cx.stack(doc, project);
    let (mut parts, warnings) = cx.finish(parts)?;
    parts.warnings = warnings;
    Ok(parts)
}

impl Cx<'_> {
    /// The whole document: volumes and networks first, as the services refer to them.
    fn stack(&mut self, doc: &Node, project: &str) -> StackParts {
        let mut parts = StackParts {
            name: None,
            warnings: Vec::new(),
            services: BTreeMap::new(),
            volumes: BTreeMap::new(),
            networks: BTreeMap::new(),
        };
        if doc.value == Value::Null {
            self.problem(
                doc,
                "",
                "the Compose file is empty: it needs a `services:` section",
            );
            return parts;
        }
        let Some(top) = self.map(doc, "") else {
            return parts;
        };
        self.check_top_keys(top);
        // First: a secret's value is hidden from every message from here on.
        self.file_defs(doc);

        if let Some(n) = doc.get("name") {
            parts.name = self.string(n, "name");
        }
        let project = parts.name.clone().unwrap_or_else(|| project.to_string());
        if let Some(n) = doc.get("volumes") {
            parts.volumes = self.volumes(n, &project);
        }
        parts.networks = self.networks(doc.get("networks"), &project);
        match doc.get("services") {
            None => self.problem(
                doc,
                "services",
                "the Compose file has no `services:` section",
            ),
            Some(services) => {
                parts.services = self.services(services, &parts.volumes, &parts.networks);
                self.share_written_folders(&mut parts.services);
                self.resolve_service_references(doc, &project, &mut parts.services);
            }
        }
        self.check_dependencies(doc, &mut parts.services);
        let containers: u64 = parts.services.values().map(|s| u64::from(s.replicas)).sum();
        if containers > MAX_CONTAINERS_PER_STACK {
            self.problem(
                doc.get("services").unwrap_or(doc),
                "services",
                format!("the stack asks for {containers} containers (replicas counted), more than the {MAX_CONTAINERS_PER_STACK} one host runs for a stack; split it"),
            );
        }
        parts
    }

    /// Each service under `services:`; one with problems is reported and left out.
    fn services(
        &mut self,
        node: &Node,
        volumes: &BTreeMap<String, VolumeDef>,
        networks: &BTreeMap<String, NetworkDef>,
    ) -> BTreeMap<String, Service> {
        let mut services = BTreeMap::new();
        let Some(entries) = self.map(node, "services") else {
            return services;
        };
        for (k, v) in entries {
            let name = k.key_text().to_string();
            if !valid_service_name(&name) {
                self.problem(
                    k,
                    &join("services", &name),
                    "a service name may hold only letters, digits, '.', '_' and '-'",
                );
                continue;
            }
            if let Some(service) = self.service(v, &name, volumes, networks) {
                services.insert(name, service);
            }
        }
        services
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

fn valid_service_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
