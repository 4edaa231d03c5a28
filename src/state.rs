//! `<state-dir>/state.json` (written atomically) and `<state-dir>/journal.jsonl` (append-only).
//! Losing the state dir loses history, never correctness: the engine's labels are the truth.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

pub mod backups;
pub mod content_files;
pub mod jobs;
pub mod runbook;
pub mod stack_lock;
pub mod transition;

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
    #[error("'{name}' is not a valid {what} name: {rule}")]
    BadName {
        what: &'static str,
        name: String,
        rule: &'static str,
    },
    #[error("state dir {path} is in use by reconciler pid {pid}")]
    InUse { path: PathBuf, pid: i32 },
    #[error("state dir {path} is not writable ({reason}); nothing was changed")]
    NotWritable { path: PathBuf, reason: String },
    #[error("state dir {path} has {free} bytes free, less than the {need} bytes ({MIN_FREE_STATE_BYTES_TEXT}) a pass needs to record what it does; nothing was changed")]
    LowSpace { path: PathBuf, free: u64, need: u64 },
}

/// Free space the state dir must have before a pass changes anything: room for state.json,
/// journal lines and a stack's files, so a pass never replaces a container it cannot record.
pub const MIN_FREE_STATE_BYTES: u64 = 4 * 1024 * 1024;
const MIN_FREE_STATE_BYTES_TEXT: &str = "4 MiB";

const STACK_NAME_RULE: &str =
    "use lowercase letters, digits, '-' and '_', starting with a letter or digit";
const SERVICE_NAME_RULE: &str =
    "use letters, digits, '.', '-' and '_', starting with a letter or digit";

/// A Compose project name (as `load` accepts it); checked before a name becomes a path.
pub fn check_stack_name(name: &str) -> Result<(), StateError> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    ok.then_some(()).ok_or_else(|| StateError::BadName {
        what: "stack",
        name: name.to_string(),
        rule: STACK_NAME_RULE,
    })
}

/// A Compose service name, starting with a letter or digit so it is never `.`, `..` or hidden.
pub fn check_service_name(name: &str) -> Result<(), StateError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    ok.then_some(()).ok_or_else(|| StateError::BadName {
        what: "service",
        name: name.to_string(),
        rule: SERVICE_NAME_RULE,
    })
}

/// A stack's volume key, the same rule: it names a folder under `backups/<stack>/`, so a key
/// from the repository such as `../x` or `/etc` must never become a path.
pub fn check_volume_key(name: &str) -> Result<(), StateError> {
    check_service_name(name).map_err(|_| StateError::BadName {
        what: "volume",
        name: name.to_string(),
        rule: SERVICE_NAME_RULE,
    })
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
    /// How many containers the desired state wants, when not one (for `status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<u32>,
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

/// One journal line. Never holds a secret value: `from`/`to` are image references
/// and revisions, and log tails are scrubbed before they get here.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JournalEntry {
    pub at: String,
    pub revision: String,
    pub stack: String,
    pub service: String,
    pub action: crate::outcome::Step,
    pub from: Option<String>,
    pub to: Option<String>,
    pub result: JournalResult,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
}

/// How a journaled change ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalResult {
    Ok,
    Failed,
}

impl JournalResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
        }
    }
}

/// The journal's readable entries, and how many lines were not entries.
#[derive(Debug, Default)]
pub struct Journal {
    pub entries: Vec<JournalEntry>,
    pub skipped: usize,
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

    /// The stack's data folder: where its writable relative binds point (`./data` is
    /// `<this>/data`), kept across every revision and never pruned. `stack` is a project name
    /// the loader checked: no `/`, never `.` or `..`.
    pub fn data_dir(&self, stack: &str) -> PathBuf {
        self.root.join("data").join(stack)
    }

    /// What git had at each path last written to the stack's data folder; kept beside the
    /// folders, out of every container's reach.
    fn applied_record(&self, stack: &str) -> PathBuf {
        self.root
            .join("data")
            .join(".applied")
            .join(format!("{stack}.json"))
    }

    /// See [`applied_record`](Self::applied_record). Missing or unreadable is empty: the next
    /// write then keeps every file that differs from git, which loses nothing.
    pub fn load_applied(&self, stack: &str) -> BTreeMap<String, String> {
        fs::read(self.applied_record(stack))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Temp file, fsync, rename, as for `state.json`.
    pub fn save_applied(
        &self,
        stack: &str,
        applied: &BTreeMap<String, String>,
    ) -> Result<(), StateError> {
        let path = self.applied_record(stack);
        let dir = path.parent().expect("the record is in a folder");
        fs::create_dir_all(dir).map_err(self.io(dir))?;
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(applied).expect("record serializes");
        let mut file = fs::File::create(&tmp).map_err(self.io(&tmp))?;
        file.write_all(&bytes).map_err(self.io(&tmp))?;
        file.sync_all().map_err(self.io(&tmp))?;
        fs::rename(&tmp, &path).map_err(self.io(&path))
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

    /// One line per entry, in one write. A file left without a final newline (a crash
    /// mid-write) gets one first, so the torn line never swallows this entry.
    pub fn append_journal(&self, entry: &JournalEntry) -> Result<(), StateError> {
        use std::io::{Read, Seek, SeekFrom};
        fs::create_dir_all(&self.root).map_err(self.io(&self.root))?;
        let path = self.root.join("journal.jsonl");
        let mut file = fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(self.io(&path))?;
        let mut line = Vec::new();
        let len = file.metadata().map_err(self.io(&path))?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1))
                .and_then(|_| file.read_exact(&mut last))
                .map_err(self.io(&path))?;
            if last[0] != b'\n' {
                line.push(b'\n');
            }
        }
        line.extend(serde_json::to_vec(entry).expect("entry serializes"));
        line.push(b'\n');
        file.write_all(&line).map_err(self.io(&path))
    }

    /// Journal entries, oldest first; lines that are not entries are skipped.
    pub fn journal(&self) -> Result<Vec<JournalEntry>, StateError> {
        Ok(self.read_journal()?.entries)
    }

    /// The journal read per line from bytes: a torn line (crash mid-write) or a damaged byte
    /// costs that line only, and is counted so the reader can be told.
    pub fn read_journal(&self) -> Result<Journal, StateError> {
        let path = self.root.join("journal.jsonl");
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Journal::default()),
            Err(e) => return Err(self.io(&path)(e)),
        };
        let mut journal = Journal::default();
        for line in bytes.split(|b| *b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice(line) {
                Ok(entry) => journal.entries.push(entry),
                Err(_) => journal.skipped += 1,
            }
        }
        Ok(journal)
    }

    pub fn journal_path(&self) -> PathBuf {
        self.root.join("journal.jsonl")
    }
}

/// Requests from the shell to a running loop are marker files, not edits of state.json, so they
/// never race the loop's own read-modify-write of it.
impl StateDir {
    fn control(&self, kind: &str) -> PathBuf {
        self.root.join("control").join(kind)
    }

    pub fn suspend(&self, stack: &str, suspended: bool) -> Result<(), StateError> {
        check_stack_name(stack)?;
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
            .filter(|name| check_stack_name(name).is_ok())
            .collect();
        names.sort();
        names
    }

    /// Ask the next pass to try a failed service again (`reconciler retry`).
    /// The marker is `<stack>.<service>`: a stack name has no '.', so the split is unambiguous
    /// (`--` was not: both names may contain it).
    pub fn request_retry(&self, stack: &str, service: &str) -> Result<(), StateError> {
        check_stack_name(stack)?;
        check_service_name(service)?;
        let dir = self.control("retry");
        fs::create_dir_all(&dir).map_err(self.io(&dir))?;
        let path = dir.join(format!("{stack}.{service}"));
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
            if let Some((stack, service)) = name.split_once('.') {
                if check_stack_name(stack).is_ok() && check_service_name(service).is_ok() {
                    out.push((stack.to_string(), service.to_string()));
                }
            }
            let _ = fs::remove_file(entry.path());
        }
        out
    }

    /// The running loop's pid, for people only: `sync` asks the kernel who holds the lock
    /// (see [`StateDir::loop_holder`]), since a stale pid file may name an unrelated process.
    pub fn pid_file(&self) -> PathBuf {
        self.root.join("run.pid")
    }
}

/// Which lock a command takes on the state dir (`<state-dir>/run.lock`, a POSIX record lock:
/// the kernel drops it when the process dies and reports its holder, so nothing goes stale).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// `apply`: byte 0, exclusive with any other writer.
    Writer,
    /// `run`: byte 0 too, plus byte 1, which says "this process takes SIGHUP as `sync`": a
    /// one-off `apply` must never get a SIGHUP (it would die of it).
    Loop,
}

const WRITER_BYTE: i64 = 0;
const LOOP_BYTE: i64 = 1;

/// Held while the process works on the state dir; released on drop or death.
#[derive(Debug)]
pub struct StateLock {
    _file: fs::File,
}

fn record_lock(kind: libc::c_short, start: i64) -> libc::flock {
    // SAFETY: flock is plain data; every field that matters is set below.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = start as libc::off_t;
    lock.l_len = 1;
    lock
}

/// F_SETLK one byte: Ok(true) taken, Ok(false) held by another process.
fn try_lock_byte(file: &fs::File, start: i64) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    let lock = record_lock(libc::F_WRLCK as libc::c_short, start);
    // SAFETY: a valid fd and a valid flock struct that outlives the call.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &lock) } == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(e),
    }
}

/// F_GETLK one byte: the pid of the process holding it, if any.
fn lock_holder(file: &fs::File, start: i64) -> std::io::Result<Option<i32>> {
    use std::os::fd::AsRawFd;
    let mut lock = record_lock(libc::F_WRLCK as libc::c_short, start);
    // SAFETY: as above; the kernel fills `lock` in.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut lock) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((lock.l_type != libc::F_UNLCK as libc::c_short && lock.l_pid > 0).then_some(lock.l_pid))
}

impl StateDir {
    fn lock_path(&self) -> PathBuf {
        self.root.join("run.lock")
    }

    /// A lock file, made when missing and never truncated (it may say who holds it).
    fn open_lock_file(&self, path: &Path) -> Result<fs::File, StateError> {
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(self.io(path))
    }

    /// Take the state dir for a command that changes things (`apply`, `run`). Fails at once,
    /// naming the holder, when another process has it: two writers would race on everything.
    pub fn lock(&self, kind: LockKind) -> Result<StateLock, StateError> {
        fs::create_dir_all(&self.root).map_err(self.io(&self.root))?;
        let path = self.lock_path();
        let file = self.open_lock_file(&path)?;
        let in_use = |file: &fs::File| -> StateError {
            match lock_holder(file, WRITER_BYTE) {
                Ok(Some(pid)) => StateError::InUse {
                    path: self.root.clone(),
                    pid,
                },
                Ok(None) => StateError::Io {
                    path: path.clone(),
                    source: std::io::Error::other(
                        "locked by another process, which just let go; try again",
                    ),
                },
                Err(source) => StateError::Io {
                    path: path.clone(),
                    source,
                },
            }
        };
        if !try_lock_byte(&file, WRITER_BYTE).map_err(self.io(&path))? {
            return Err(in_use(&file));
        }
        if kind == LockKind::Loop && !try_lock_byte(&file, LOOP_BYTE).map_err(self.io(&path))? {
            return Err(in_use(&file));
        }
        Ok(StateLock { _file: file })
    }

    /// The pid of the running `reconciler run` on this state dir, as the kernel knows it.
    /// Must not be called by a process that holds the lock: closing any descriptor of the lock
    /// file drops a POSIX record lock.
    pub fn loop_holder(&self) -> Result<Option<i32>, StateError> {
        let path = self.lock_path();
        let file = match fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(&path)(e)),
        };
        lock_holder(&file, LOOP_BYTE).map_err(self.io(&path))
    }

    /// Before a pass changes anything: a probe file can be created, written and synced, and
    /// at least [`MIN_FREE_STATE_BYTES`] are free. Otherwise a container could be replaced and
    /// the pass then fail to record it.
    pub fn check_writable(&self) -> Result<(), StateError> {
        let not_writable = |e: std::io::Error| StateError::NotWritable {
            path: self.root.clone(),
            reason: e.to_string(),
        };
        fs::create_dir_all(&self.root).map_err(not_writable)?;
        let probe = self
            .root
            .join(format!(".write-probe-{}", std::process::id()));
        let written = fs::File::create(&probe).and_then(|mut f| {
            f.write_all(b"probe")?;
            f.sync_all()
        });
        let removed = fs::remove_file(&probe);
        written.map_err(not_writable)?;
        removed.map_err(not_writable)?;
        let free = free_bytes(&self.root).map_err(not_writable)?;
        if free < MIN_FREE_STATE_BYTES {
            return Err(StateError::LowSpace {
                path: self.root.clone(),
                free,
                need: MIN_FREE_STATE_BYTES,
            });
        }
        Ok(())
    }
}

/// Bytes an unprivileged writer may still use on the filesystem holding `path`.
fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("path has a NUL byte"))?;
    // SAFETY: a NUL-terminated path and a zeroed statvfs the kernel fills in.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// Revision folders and checkouts kept beyond those something refers to, newest first.
pub const KEEP_RECENT: usize = 3;

/// What pruning must keep: per stack, the revisions that containers were created from or that
/// state names (last applied, last good, running); commits likewise for `checkouts/`.
#[derive(Debug, Default)]
pub struct Keep {
    pub revisions: BTreeMap<String, BTreeSet<String>>,
    pub commits: BTreeSet<String>,
    /// Per stack, the content files (secrets, configs) some container mounts.
    pub files: BTreeMap<String, BTreeSet<String>>,
}

/// What [`StateDir::prune`] removed and what it kept although nothing refers to it.
#[derive(Debug, Default)]
pub struct Pruned {
    pub checkouts: Vec<PathBuf>,
    pub revisions: Vec<PathBuf>,
    pub files: Vec<PathBuf>,
    /// Folders kept because their content is not what was written (a container may have
    /// written there), or because there is no record of what was written.
    pub kept_modified: Vec<(PathBuf, &'static str)>,
}

/// What was written to a revision folder, recorded beside it when it was written. A folder is
/// pruned only while its content is still exactly this: data a container wrote is never lost.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct WrittenMarker {
    sha256: String,
    entries: usize,
    bytes: u64,
}

impl StateDir {
    fn written_marker(&self, stack: &str, revision: &str) -> PathBuf {
        self.root
            .join("stacks")
            .join(stack)
            .join(format!(".{revision}.written"))
    }

    /// Record what `written` (the folder about to become `stack_files_dir(stack, revision)`)
    /// holds. Called before the folder is put in place, so a folder without a record is never
    /// taken for one that is safe to delete.
    pub fn record_stack_files(
        &self,
        stack: &str,
        revision: &str,
        written: &Path,
    ) -> Result<(), StateError> {
        let marker = self.written_marker(stack, revision);
        let fingerprint = tree_fingerprint(written, usize::MAX, u64::MAX)
            .map_err(self.io(written))?
            .ok_or_else(|| {
                self.io(written)(std::io::Error::other(
                    "holds something other than files, folders and links",
                ))
            })?;
        let bytes = serde_json::to_vec(&fingerprint).expect("marker serializes");
        fs::write(&marker, bytes).map_err(self.io(&marker))
    }

    /// The revision folder of `stack` at `revision` when it holds exactly what was written
    /// there (the repository's files, nothing a container wrote): a source of that revision's
    /// tracked files.
    pub fn stack_files_as_written(&self, stack: &str, revision: &str) -> Option<PathBuf> {
        let folder = self.stack_files_dir(stack, revision);
        let recorded: WrittenMarker = fs::read(self.written_marker(stack, revision))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())?;
        let now = tree_fingerprint(&folder, recorded.entries, recorded.bytes)
            .ok()
            .flatten()?;
        (now == recorded).then_some(folder)
    }

    /// Remove checkouts and revision folders that nothing needs: not in `keep`, not among the
    /// [`KEEP_RECENT`] newest, and (revision folders) unchanged since they were written.
    pub fn prune(&self, keep: &Keep) -> Pruned {
        let mut pruned = Pruned::default();
        let checkouts = self.root.join("checkouts");
        for (name, path) in newest_first(&checkouts, |name| name.to_string())
            .into_iter()
            .skip(KEEP_RECENT)
        {
            if keep.commits.contains(&name) {
                continue;
            }
            match fs::remove_dir_all(&path) {
                Ok(()) => pruned.checkouts.push(path),
                Err(e) => tracing::warn!("cannot prune {}: {e}", path.display()),
            }
        }
        let stacks = self.root.join("stacks");
        for stack in subdirectories(&stacks) {
            if check_stack_name(&stack).is_err() {
                continue;
            }
            let dir = stacks.join(&stack);
            let kept = keep.revisions.get(&stack);
            let by_age = newest_first(&dir, |revision| format!(".{revision}.written"));
            for (revision, path) in by_age.into_iter().skip(KEEP_RECENT) {
                if kept.is_some_and(|k| k.contains(&revision)) {
                    continue;
                }
                let marker = self.written_marker(&stack, &revision);
                let recorded: Option<WrittenMarker> = fs::read(&marker)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok());
                let Some(recorded) = recorded else {
                    tracing::debug!(
                        "keeping {}: no record of what was written there",
                        path.display()
                    );
                    pruned
                        .kept_modified
                        .push((path, "no record of what was written"));
                    continue;
                };
                let now = tree_fingerprint(&path, recorded.entries, recorded.bytes)
                    .ok()
                    .flatten();
                if now.as_ref() != Some(&recorded) {
                    tracing::debug!(
                        "keeping {}: it changed since it was written (a container may have written data there)",
                        path.display()
                    );
                    pruned
                        .kept_modified
                        .push((path, "changed since it was written"));
                    continue;
                }
                match fs::remove_dir_all(&path) {
                    Ok(()) => {
                        let _ = fs::remove_file(&marker);
                        pruned.revisions.push(path);
                    }
                    Err(e) => tracing::warn!("cannot prune {}: {e}", path.display()),
                }
            }
        }
        pruned.files = self.prune_content_files(&keep.files);
        pruned
    }

    /// Stack names that have revision folders, for looking up the containers that use them.
    pub fn stacks_with_files(&self) -> Vec<String> {
        subdirectories(&self.root.join("stacks"))
            .into_iter()
            .filter(|s| check_stack_name(s).is_ok())
            .collect()
    }
}

/// Names of the folders in `dir` (no symlinks, no hidden or temporary ones), sorted.
fn subdirectories(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// The folders in `dir`, newest first by the mtime of `dated(name)` in `dir` (or of the folder
/// itself when that is missing).
fn newest_first(dir: &Path, dated: impl Fn(&str) -> String) -> Vec<(String, PathBuf)> {
    let mut all: Vec<(std::time::SystemTime, String, PathBuf)> = subdirectories(dir)
        .into_iter()
        .map(|name| {
            let path = dir.join(&name);
            let time = fs::symlink_metadata(dir.join(dated(&name)))
                .or_else(|_| fs::symlink_metadata(&path))
                .and_then(|m| m.modified())
                .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
            (time, name, path)
        })
        .collect();
    all.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
    all.into_iter()
        .map(|(_, name, path)| (name, path))
        .collect()
}

/// sha256 over every entry's relative path, kind, size and content, in sorted order. `None`
/// when the tree holds anything but folders and regular files (which a write-out never makes),
/// or more than `max_entries` entries or `max_bytes` bytes (so a folder a container filled costs
/// little to judge).
/// Nothing is followed: links and special files are never opened.
fn tree_fingerprint(
    root: &Path,
    max_entries: usize,
    max_bytes: u64,
) -> std::io::Result<Option<WrittenMarker>> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::OpenOptionsExt;
    /// What an entry is; a link is fingerprinted by its target text, never followed.
    #[derive(PartialEq, Eq, PartialOrd, Ord)]
    enum Kind {
        Dir,
        File(u64),
        Link(PathBuf),
    }
    let mut entries: Vec<(PathBuf, Kind)> = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        for entry in fs::read_dir(root.join(&rel))? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let child = rel.join(entry.file_name());
            if kind.is_dir() {
                pending.push(child.clone());
                entries.push((child, Kind::Dir));
            } else if kind.is_file() {
                entries.push((child, Kind::File(entry.metadata()?.len())));
            } else if kind.is_symlink() {
                let target = fs::read_link(entry.path())?;
                entries.push((child, Kind::Link(target)));
            } else {
                return Ok(None);
            }
            if entries.len() > max_entries {
                return Ok(None);
            }
        }
    }
    let total: u64 = entries
        .iter()
        .map(|(_, kind)| match kind {
            Kind::File(size) => *size,
            _ => 0,
        })
        .sum();
    if total > max_bytes {
        return Ok(None);
    }
    entries.sort();
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    for (rel, kind) in &entries {
        hasher.update(rel.as_os_str().as_encoded_bytes());
        hasher.update([0u8]);
        let size = match kind {
            Kind::Dir => {
                hasher.update(b"d");
                continue;
            }
            Kind::Link(target) => {
                hasher.update(b"l");
                hasher.update(target.as_os_str().as_encoded_bytes());
                hasher.update([0u8]);
                continue;
            }
            Kind::File(size) => size,
        };
        hasher.update(b"f");
        hasher.update(size.to_le_bytes());
        let mut file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(root.join(rel))?;
        if !file.metadata()?.is_file() {
            return Ok(None);
        }
        bytes += std::io::copy(&mut file, &mut hasher)?;
    }
    let sha256 = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Some(WrittenMarker {
        sha256,
        entries: entries.len(),
        bytes,
    }))
}

/// Now, as RFC 3339 UTC, without pulling in a date crate.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
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
        let entry = entry("x");
        dir.append_journal(&entry).unwrap();
        fs::OpenOptions::new()
            .append(true)
            .open(tmp.path().join("journal.jsonl"))
            .unwrap()
            .write_all(b"{\"at\":")
            .unwrap();
        assert_eq!(dir.journal().unwrap(), vec![entry]);
    }

    fn entry(service: &str) -> JournalEntry {
        JournalEntry {
            at: now_rfc3339(),
            revision: "r".into(),
            stack: "s".into(),
            service: service.into(),
            action: crate::outcome::Step::Create,
            from: None,
            to: Some("img:1".into()),
            result: JournalResult::Ok,
            duration_ms: 1,
            reason: None,
            log_tail: vec![],
        }
    }

    #[test]
    fn an_entry_after_a_torn_line_starts_on_its_own_line() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path());
        fs::write(dir.journal_path(), b"{\"at\":\"20").unwrap();
        dir.append_journal(&entry("a")).unwrap();
        let journal = dir.read_journal().unwrap();
        let services: Vec<&str> = journal.entries.iter().map(|e| e.service.as_str()).collect();
        assert_eq!(services, ["a"]);
        assert_eq!(journal.skipped, 1);
    }

    #[test]
    fn a_non_utf8_line_costs_that_line_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path());
        dir.append_journal(&entry("a")).unwrap();
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(dir.journal_path())
            .unwrap();
        f.write_all(b"{\"at\":\"\xff\"}\n").unwrap();
        dir.append_journal(&entry("b")).unwrap();
        let journal = dir.read_journal().unwrap();
        let services: Vec<&str> = journal.entries.iter().map(|e| e.service.as_str()).collect();
        assert_eq!(services, ["a", "b"]);
        assert_eq!(journal.skipped, 1);
    }

    #[test]
    fn names_that_could_leave_the_control_folder_are_refused() {
        for bad in [
            "../../x", "..", ".", "", "a/b", "A", "-x", "_x", "x y", "x.y",
        ] {
            assert!(check_stack_name(bad).is_err(), "{bad:?}");
        }
        for good in ["web", "my-app_2", "0x"] {
            check_stack_name(good).unwrap();
        }
        for bad in ["..", ".", "../x", "a/b", "", ".hidden", "-x"] {
            assert!(check_service_name(bad).is_err(), "{bad:?}");
        }
        for good in ["web", "Web.v2", "db_1-a"] {
            check_service_name(good).unwrap();
        }
    }

    #[test]
    fn a_retry_request_round_trips_even_with_dashes_in_names() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path());
        dir.request_retry("my--stack", "svc--1.a").unwrap();
        assert_eq!(
            dir.take_retries(),
            vec![("my--stack".to_string(), "svc--1.a".to_string())]
        );
    }

    #[test]
    fn a_writable_state_dir_passes_the_probe_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path().join("state"));
        dir.check_writable().unwrap();
        assert_eq!(fs::read_dir(dir.root()).unwrap().count(), 0);
    }

    /// A revision folder written out (with its record), its mtime set so the order is known.
    fn write_revision(dir: &StateDir, stack: &str, revision: &str, age_secs: u64) -> PathBuf {
        let stacks = dir.root().join("stacks").join(stack);
        fs::create_dir_all(&stacks).unwrap();
        let tmp = stacks.join(".tmp");
        fs::create_dir_all(tmp.join("data")).unwrap();
        fs::write(tmp.join("compose.yaml"), revision).unwrap();
        dir.record_stack_files(stack, revision, &tmp).unwrap();
        let target = dir.stack_files_dir(stack, revision);
        fs::rename(&tmp, &target).unwrap();
        let when = std::time::SystemTime::now() - std::time::Duration::from_secs(age_secs);
        fs::File::options()
            .write(true)
            .open(dir.written_marker(stack, revision))
            .unwrap()
            .set_modified(when)
            .unwrap();
        target
    }

    #[test]
    fn pruning_keeps_recent_referenced_and_written_to_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path());
        // r0 is the newest; r3..r6 are old enough to be pruned unless something keeps them.
        let paths: Vec<PathBuf> = (0..7)
            .map(|i| write_revision(&dir, "web", &format!("r{i}"), i * 100))
            .collect();
        fs::write(paths[4].join("data/db"), "a container wrote this").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", paths[5].join("link")).unwrap();
        let mut keep = Keep::default();
        keep.revisions
            .entry("web".into())
            .or_default()
            .insert("r6".into());
        let pruned = dir.prune(&keep);
        let exists: Vec<bool> = paths.iter().map(|p| p.exists()).collect();
        assert_eq!(exists, [true, true, true, false, true, true, true]);
        assert_eq!(pruned.revisions, vec![paths[3].clone()]);
        assert_eq!(pruned.kept_modified.len(), 2);
        assert!(!dir.written_marker("web", "r3").exists());
    }

    #[test]
    fn pruning_never_touches_a_stack_data_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path());
        let data = dir.data_dir("web");
        fs::create_dir_all(data.join("data")).unwrap();
        fs::write(data.join("data/table"), "rows").unwrap();
        dir.save_applied("web", &BTreeMap::from([("data/a".into(), "x".into())]))
            .unwrap();
        for i in 0..7 {
            write_revision(&dir, "web", &format!("r{i}"), i * 100);
        }
        let pruned = dir.prune(&Keep::default());
        assert!(!pruned.revisions.is_empty());
        assert_eq!(fs::read_to_string(data.join("data/table")).unwrap(), "rows");
        assert_eq!(dir.load_applied("web").len(), 1);
    }

    #[test]
    fn a_revision_folder_is_a_source_of_tracked_files_only_while_it_is_as_written() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path());
        let folder = write_revision(&dir, "web", "r1", 0);
        assert_eq!(
            dir.stack_files_as_written("web", "r1"),
            Some(folder.clone())
        );
        fs::write(folder.join("data/db"), "a container wrote this").unwrap();
        assert_eq!(dir.stack_files_as_written("web", "r1"), None);
        assert_eq!(dir.stack_files_as_written("web", "never-written"), None);
    }

    #[test]
    fn pruning_checkouts_keeps_the_named_and_the_recent() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path());
        let checkouts = tmp.path().join("checkouts");
        for (i, name) in ["c0", "c1", "c2", "c3", "c4"].iter().enumerate() {
            fs::create_dir_all(checkouts.join(name)).unwrap();
            let when =
                std::time::SystemTime::now() - std::time::Duration::from_secs(i as u64 * 100);
            fs::File::open(checkouts.join(name))
                .unwrap()
                .set_modified(when)
                .unwrap();
        }
        fs::create_dir_all(checkouts.join(".tmp-c9-1")).unwrap();
        let keep = Keep {
            commits: BTreeSet::from(["c4".to_string()]),
            ..Keep::default()
        };
        dir.prune(&keep);
        let mut left = subdirectories(&checkouts);
        left.sort();
        assert_eq!(left, ["c0", "c1", "c2", "c4"]);
        assert!(checkouts.join(".tmp-c9-1").exists());
    }
}
