//! `<state-dir>/state.json` (written atomically) and `<state-dir>/journal.jsonl` (append-only).
//! Losing the state dir loses history, never correctness: the engine's labels are the truth.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot use state dir {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is corrupt ({source}); move it aside to start over (history is lost, correctness is not)")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    #[serde(default)]
    pub stacks: BTreeMap<String, StackState>,
    /// The last commit of a git source the loop read: a tip that does not descend from it means
    /// history was rewritten.
    #[serde(default)]
    pub source_commit: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StackState {
    pub last_applied: Option<String>,
    pub last_good: Option<String>,
    #[serde(default)]
    pub services: BTreeMap<String, ServiceState>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ServiceState {
    /// A release that failed; not tried again while the desired spec hash is the same.
    pub failed: Option<Failure>,
    pub running_revision: Option<String>,
    /// The image the desired state names, as of the last pass (for `status` without --repo).
    #[serde(default)]
    pub desired_image: Option<String>,
    /// RFC 3339 time the running container was proven.
    pub since: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Failure {
    pub revision: String,
    pub spec_hash: String,
    pub reason: String,
    pub at: String,
}

impl State {
    pub fn failure(&self, stack: &str, service: &str) -> Option<&Failure> {
        self.stacks
            .get(stack)?
            .services
            .get(service)?
            .failed
            .as_ref()
    }

    pub fn service_mut(&mut self, stack: &str, service: &str) -> &mut ServiceState {
        self.stacks
            .entry(stack.to_string())
            .or_default()
            .services
            .entry(service.to_string())
            .or_default()
    }
}

/// One journal line (DESIGN 8). Never holds a secret value: `from`/`to` are image references
/// and revisions, and log tails are scrubbed before they get here.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JournalEntry {
    pub at: String,
    pub revision: String,
    pub stack: String,
    pub service: String,
    pub action: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub result: String,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
}

/// The state directory's files.
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn env_dir(&self) -> PathBuf {
        self.root.join("env")
    }

    /// Where a stack's files of one revision are written out for relative bind mounts.
    pub fn stack_files_dir(&self, stack: &str, revision: &str) -> PathBuf {
        self.root.join("stacks").join(stack).join(revision)
    }

    fn io(&self, path: &Path) -> impl FnOnce(std::io::Error) -> StateError {
        let path = path.to_path_buf();
        move |source| StateError::Io { path, source }
    }

    pub fn load(&self) -> Result<State, StateError> {
        let path = self.root.join("state.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| StateError::Corrupt { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(self.io(&path)(e)),
        }
    }

    /// Temp file, fsync, rename: a crash leaves the old or the new file, never half of one.
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        fs::create_dir_all(&self.root).map_err(self.io(&self.root))?;
        let path = self.root.join("state.json");
        let tmp = self.root.join("state.json.tmp");
        let bytes = serde_json::to_vec_pretty(state).expect("state serializes");
        let mut file = fs::File::create(&tmp).map_err(self.io(&tmp))?;
        file.write_all(&bytes).map_err(self.io(&tmp))?;
        file.sync_all().map_err(self.io(&tmp))?;
        fs::rename(&tmp, &path).map_err(self.io(&path))?;
        if let Ok(dir) = fs::File::open(&self.root) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    pub fn append_journal(&self, entry: &JournalEntry) -> Result<(), StateError> {
        fs::create_dir_all(&self.root).map_err(self.io(&self.root))?;
        let path = self.root.join("journal.jsonl");
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(self.io(&path))?;
        let mut line = serde_json::to_vec(entry).expect("entry serializes");
        line.push(b'\n');
        file.write_all(&line).map_err(self.io(&path))
    }

    /// Journal entries, oldest first. A torn last line (crash mid-write) is skipped.
    pub fn journal(&self) -> Result<Vec<JournalEntry>, StateError> {
        let path = self.root.join("journal.jsonl");
        match fs::read_to_string(&path) {
            Ok(text) => Ok(text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(self.io(&path)(e)),
        }
    }
}

/// Requests from the shell to a running loop are marker files, not edits of state.json, so they
/// never race the loop's own read-modify-write of it.
impl StateDir {
    fn control(&self, kind: &str) -> PathBuf {
        self.root.join("control").join(kind)
    }

    pub fn suspend(&self, stack: &str, suspended: bool) -> Result<(), StateError> {
        let dir = self.control("suspended");
        let path = dir.join(stack);
        if suspended {
            fs::create_dir_all(&dir).map_err(self.io(&dir))?;
            fs::write(&path, now_rfc3339()).map_err(self.io(&path))
        } else {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(self.io(&path)(e)),
                _ => Ok(()),
            }
        }
    }

    /// Stacks the operator paused (`reconciler suspend`): the loop leaves them alone.
    pub fn suspended(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.control("suspended"))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        names
    }

    /// Ask the next pass to try a failed service again (`reconciler retry`).
    pub fn request_retry(&self, stack: &str, service: &str) -> Result<(), StateError> {
        let dir = self.control("retry");
        fs::create_dir_all(&dir).map_err(self.io(&dir))?;
        let path = dir.join(format!("{stack}--{service}"));
        fs::write(&path, now_rfc3339()).map_err(self.io(&path))
    }

    /// The pending retry requests, removed as they are taken.
    pub fn take_retries(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for entry in fs::read_dir(self.control("retry"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().to_string();
            if let Some((stack, service)) = name.split_once("--") {
                out.push((stack.to_string(), service.to_string()));
            }
            let _ = fs::remove_file(entry.path());
        }
        out
    }

    /// The running loop's pid, so `reconciler sync` can signal it.
    pub fn pid_file(&self) -> PathBuf {
        self.root.join("run.pid")
    }
}

/// Now, as RFC 3339 UTC, without pulling in a date crate.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_a_save_and_load() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path());
        let mut state = State::default();
        state.service_mut("web", "app").failed = Some(Failure {
            revision: "abc".into(),
            spec_hash: "h".into(),
            reason: "unhealthy".into(),
            at: now_rfc3339(),
        });
        dir.save(&state).unwrap();
        assert_eq!(dir.load().unwrap(), state);
    }

    #[test]
    fn a_torn_journal_line_is_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path());
        let entry = JournalEntry {
            at: now_rfc3339(),
            revision: "r".into(),
            stack: "s".into(),
            service: "x".into(),
            action: "create".into(),
            from: None,
            to: Some("img:1".into()),
            result: "ok".into(),
            duration_ms: 1,
            reason: None,
            log_tail: vec![],
        };
        dir.append_journal(&entry).unwrap();
        fs::OpenOptions::new()
            .append(true)
            .open(tmp.path().join("journal.jsonl"))
            .unwrap()
            .write_all(b"{\"at\":")
            .unwrap();
        assert_eq!(dir.journal().unwrap(), vec![entry]);
    }
}
