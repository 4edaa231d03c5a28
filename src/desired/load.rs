//! Load the desired state from a folder of stacks: discover, read `.env` and the host-local env,
//! parse, convert, check policy. Every repository file is read only through [`DirFiles`]: the path
//! must resolve inside the stack folder, name a regular file (never a device, FIFO or socket), and
//! be no larger than a named limit; it is opened without following a link and without blocking.

use super::compose::{self, BindSource, StackFiles, Variables};
use super::dotenv;
use super::error::{DesiredError, Problem};
use super::interpolate::{interpolate_within, Budget};
use super::model::{hex, Desired, Stack};
use super::policy::Policy;
use super::yaml::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// Largest Compose file or `.env` read: far beyond any hand-written definition.
pub const MAX_DEFINITION_BYTES: u64 = 1 << 20;
/// Largest other file read whole into memory (`env_file`).
pub const MAX_READ_BYTES: u64 = 16 << 20;
/// Largest single file digested (mounted into a container); streamed, so this bounds time only.
pub const MAX_DIGESTED_FILE_BYTES: u64 = 1 << 30;
/// Most warnings the env files of a stack give, as a Compose file's are capped: each is logged.
const MAX_ENV_WARNINGS: usize = 200;

pub const COMPOSE_FILE_NAMES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Only these stacks (`--stack`); all when empty.
    pub stacks: Vec<String>,
    /// Folder of host-local env files, `<dir>/<stack>.env`, kept outside git for secrets.
    pub host_env_dir: Option<PathBuf>,
    pub policy: Policy,
    /// The commit id when the folder is a git checkout of one; else each stack's files are digested.
    pub revision: Option<String>,
    /// The repository root (`root` is it, or a folder in it named by `--path`): nothing outside
    /// it is read, whatever the links say. `None`: `root` itself.
    pub repo_root: Option<PathBuf>,
}

/// Load every stack under `root`. All problems of all stacks are reported together.
pub fn load(root: &Path, options: &LoadOptions) -> Result<Desired, DesiredError> {
    let canonical = |path: &Path| {
        path.canonicalize().map_err(|source| DesiredError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let repo_root = canonical(options.repo_root.as_deref().unwrap_or(root))?;
    let real_root = canonical(root)?;
    // `--path` may name a link in the repository: it must stay in it too.
    if !real_root.starts_with(&repo_root) {
        return Err(DesiredError::Io {
            path: root.to_path_buf(),
            source: std::io::Error::other("a symlink that leaves the repository"),
        });
    }
    let (stack_dirs, mut problems) = discover(&real_root, &repo_root)?;
    if stack_dirs.is_empty() && problems.is_empty() {
        return Err(DesiredError::NoStacks(root.to_path_buf()));
    }
    for wanted in &options.stacks {
        if !stack_dirs.iter().any(|s| &s.folder == wanted) {
            return Err(DesiredError::UnknownStack(wanted.clone()));
        }
    }
    let mut desired = Desired::default();
    for found in stack_dirs {
        if !options.stacks.is_empty() && !options.stacks.contains(&found.folder) {
            continue;
        }
        match load_stack(&found, options) {
            Ok(stack) => desired.stacks.push(stack),
            Err(mut p) => problems.append(&mut p),
        }
    }
    problems.extend(super::policy::nested_binds(&desired.stacks));
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for stack in &desired.stacks {
        if let Some(other) = seen.insert(&stack.name, &stack.file) {
            problems.push(Problem {
                file: stack.file.clone(),
                line: 1,
                key: "name".into(),
                message: format!("project name '{}' is also used by {other}", stack.name),
            });
        }
    }
    if problems.is_empty() {
        Ok(desired)
    } else {
        Err(DesiredError::Invalid(problems))
    }
}

/// A stack folder found by discovery.
struct FoundStack {
    /// Its name in the repository (a link's own name when the folder is a link).
    folder: String,
    /// Where it really is: inside the repository, no link left in the path.
    dir: PathBuf,
    /// The Compose file's name in it.
    file: String,
}

/// Direct subfolders holding a Compose file, sorted by name. A subfolder that is a link must
/// resolve inside the repository; one that leaves it is a problem, and is never looked into.
fn discover(
    root: &Path,
    repo_root: &Path,
) -> Result<(Vec<FoundStack>, Vec<Problem>), DesiredError> {
    let io = |source| DesiredError::Io {
        path: root.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for entry in fs::read_dir(root).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let dir = if meta.is_dir() {
            path
        } else if meta.is_symlink() {
            match path.canonicalize() {
                Ok(real) if !real.starts_with(repo_root) => {
                    problems.push(Problem {
                        file: name,
                        line: 1,
                        key: String::new(),
                        message: "a symlink that leaves the repository".into(),
                    });
                    continue;
                }
                Ok(real) if real.is_dir() => real,
                _ => continue,
            }
        } else {
            continue;
        };
        // The file is picked by its own entry (not followed): load_stack reads it confined.
        let file = COMPOSE_FILE_NAMES
            .iter()
            .find(|f| fs::symlink_metadata(dir.join(f)).is_ok_and(|m| !m.is_dir()))
            .map(|f| f.to_string())
            .or_else(|| compose_file_from_dot_env(&dir));
        if let Some(file) = file {
            out.push(FoundStack {
                folder: name,
                dir,
                file,
            });
        }
    }
    out.sort_by(|a, b| a.folder.cmp(&b.folder));
    Ok((out, problems))
}

/// A folder with no Compose file of the usual names is a stack when its `.env` names its files
/// in `COMPOSE_FILE`: the first of them. Read confined; anything unreadable is no stack.
fn compose_file_from_dot_env(dir: &Path) -> Option<String> {
    let text = DirFiles::new(dir)
        .ok()?
        .read_text(".env", MAX_DEFINITION_BYTES)
        .ok()?;
    let entries = dotenv::parse(&text).ok()?;
    let list = entries
        .into_iter()
        .rev()
        .find(|e| e.key == "COMPOSE_FILE")?;
    let first = list.value.split(':').next()?.trim().to_string();
    (!first.is_empty()).then_some(first)
}

fn load_stack(found: &FoundStack, options: &LoadOptions) -> Result<Stack, Vec<Problem>> {
    let FoundStack {
        folder,
        dir,
        file: file_name,
    } = found;
    let file = format!("{folder}/{file_name}");
    let whole_file = |file: &str, line: usize, message: String| {
        vec![Problem {
            file: file.to_string(),
            line,
            key: String::new(),
            message,
        }]
    };
    let files = DirFiles::new(dir).map_err(|e| whole_file(&file, 1, e))?;
    let mut warnings = Vec::new();
    let vars = variables(&files, folder, options, &mut warnings)?;
    let mut assembled = super::assemble::assemble(&files, folder, file_name, vars)?;
    // As in Compose, COMPOSE_PROJECT_NAME (the host's env file or `.env`) wins over `name:`.
    let default_name = match assembled.var_sets[0].values.get("COMPOSE_PROJECT_NAME") {
        Some(name) if !name.is_empty() => {
            if let Value::Map(entries) = &mut assembled.doc.value {
                entries.retain(|(k, _)| k.key_text() != "name");
            }
            name.clone()
        }
        _ => folder.to_ascii_lowercase(),
    };
    let parts = compose::convert_assembled(&assembled, &default_name, &files)?;
    let doc = &assembled.doc;
    let file = assembled.sources[0].shown.clone();
    let name = parts.name.unwrap_or(default_name);
    if !valid_project_name(&name) {
        return Err(whole_file(
            &file,
            doc.get("name").map_or(1, |n| n.line),
            format!("'{name}' is not a valid project name: use lowercase letters, digits, '-' and '_', starting with a letter or digit"),
        ));
    }
    let revision = match &options.revision {
        Some(rev) => rev.clone(),
        None => {
            directory_digest(files.root()).map_err(|e| whole_file(&file, 1, e.in_folder(folder)))?
        }
    };
    let stack = Stack {
        name,
        dir: files.root().to_path_buf(),
        file,
        revision,
        services: parts.services,
        volumes: parts.volumes,
        networks: parts.networks,
        warnings: warnings
            .into_iter()
            .chain(assembled.warnings)
            .chain(parts.warnings)
            .collect(),
    };
    let problems = options.policy.check(&stack);
    if problems.is_empty() {
        Ok(stack)
    } else {
        Err(problems)
    }
}

/// The stack's variables: the host-local file (the operator's, outside the repository, like
/// the environment Compose runs in), then the repository's `.env` for what the host does not
/// set. `.env` values are expanded as Compose expands them (`DATA=${BASE:-/srv}/data`), each
/// from the variables before it; single-quoted values are literal. A value built from a
/// host-local or secret-looking variable is secret too.
fn variables(
    files: &DirFiles,
    folder: &str,
    options: &LoadOptions,
    warnings: &mut Vec<Problem>,
) -> Result<Variables, Vec<Problem>> {
    let mut vars = Variables::default();
    // `.env` values are expanded: a few bytes may name a megabyte, and thousands may do so.
    let mut budget = Budget::per_file();
    let unreadable = |shown: String, message: String| {
        vec![Problem {
            file: shown,
            line: 1,
            key: String::new(),
            message,
        }]
    };
    // The host-local file is the operator's (trusted), outside the repository.
    if let Some(env_dir) = &options.host_env_dir {
        let path = env_dir.join(format!("{folder}.env"));
        let shown = path.display().to_string();
        match fs::read_to_string(&path) {
            Ok(text) => read_env_file(&text, &shown, true, &mut vars, warnings, &mut budget)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(unreadable(shown, format!("cannot read: {e}"))),
        }
    }
    // An absent `.env` is fine; anything there (a link too) is read confined.
    let shown = format!("{folder}/.env");
    if fs::symlink_metadata(files.root().join(".env")).is_ok() {
        let text = files
            .read_text(".env", MAX_DEFINITION_BYTES)
            .map_err(|e| unreadable(shown.clone(), e))?;
        read_env_file(&text, &shown, false, &mut vars, warnings, &mut budget)?;
    }
    Ok(vars)
}

/// Add one env file's entries to `vars`, expanded within `budget`. The host-local file is read
/// first and wins: a repository entry for a variable it sets is skipped.
pub(super) fn read_env_file(
    text: &str,
    shown: &str,
    host_local: bool,
    vars: &mut Variables,
    warnings: &mut Vec<Problem>,
    budget: &mut Budget,
) -> Result<(), Vec<Problem>> {
    let located = |line: usize, message: String| Problem {
        file: shown.to_string(),
        line,
        key: String::new(),
        message,
    };
    let entries = dotenv::parse(text).map_err(|e| vec![located(e.line, e.reason.clone())])?;
    let from_host: std::collections::BTreeSet<String> = if host_local {
        Default::default()
    } else {
        vars.host_local.clone()
    };
    for entry in entries {
        if from_host.contains(&entry.key) {
            continue;
        }
        // The host-local file stands for the environment Compose runs in, whose values Compose
        // never expands: a password holding `$` stays as written.
        let (value, derived_secret) = if entry.literal || host_local {
            (entry.value, false)
        } else {
            let lookup = |name: &str| vars.values.get(name).cloned();
            let out = interpolate_within(&entry.value, &lookup, budget).map_err(|e| {
                // An .env value is often a secret: the message names the variable, not the text,
                // and a required variable's message (`${X:?${DB_PASS}}`) is scrubbed.
                let message = match e {
                    super::interpolate::InterpolateError::Syntax { .. } => {
                        format!("{}: invalid interpolation syntax in its value", entry.key)
                    }
                    other => {
                        crate::mask::scrub(&format!("{}: {other}", entry.key), vars.secret_values())
                    }
                };
                vec![located(entry.line, message)]
            })?;
            for name in out
                .unset
                .iter()
                .take(MAX_ENV_WARNINGS.saturating_sub(warnings.len()))
            {
                warnings.push(Problem {
                    key: entry.key.clone(),
                    ..located(
                        entry.line,
                        format!(
                            "the variable '{name}' is not set: it is replaced by an empty string"
                        ),
                    )
                });
            }
            let secret = out
                .used
                .iter()
                .any(|v| vars.host_local.contains(v) || crate::mask::is_secret_key(v));
            if secret && entry.key.starts_with("COMPOSE_") {
                // These name the stack's files and project: shown in messages, names and labels.
                return Err(vec![located(
                    entry.line,
                    format!("{}: may not be built from a host-local or secret-looking variable: it names files or the project, which are shown", entry.key),
                )]);
            }
            (out.text, secret)
        };
        if host_local || derived_secret {
            vars.host_local.insert(entry.key.clone());
        } else {
            vars.host_local.remove(&entry.key);
        }
        vars.values.insert(entry.key, value);
    }
    Ok(())
}

fn valid_project_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Digest of a stack folder's files: the revision of a plain-directory source.
pub fn directory_digest(dir: &Path) -> Result<String, Refused> {
    let mut hasher = Sha256::new();
    walk(dir, dir, "", Some(&mut hasher))?;
    Ok(hex(&hasher.finalize())[..16].to_string())
}

/// A file in a stack folder that is not read: where it is (relative to the folder walked) and
/// what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub rel: String,
    pub what: String,
}

impl Refused {
    /// `'web/pipe' is a FIFO, ...`, naming the file from the repository root.
    fn in_folder(&self, folder: &str) -> String {
        format!("'{folder}/{}' is {}", self.rel, self.what)
    }
}

/// What a directory entry is, when it is not something the loader reads.
fn special_kind(meta: &fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_fifo() {
        Some("a FIFO, not a regular file")
    } else if t.is_char_device() || t.is_block_device() {
        Some("a device, not a regular file")
    } else if t.is_socket() {
        Some("a socket, not a regular file")
    } else if !t.is_file() && !t.is_dir() && !t.is_symlink() {
        Some("not a regular file")
    } else {
        None
    }
}

const LEAVES: &str = "a symlink that leaves the stack folder";
const DANGLING: &str = "a symlink to nothing";

/// Whether the link at `path` (inside `root`, canonical) leads to something inside `root`. A
/// dangling link is refused too: Docker creates a missing bind source where a link points.
fn link_stays_inside(root: &Path, path: &Path) -> bool {
    path.canonicalize().is_ok_and(|real| real.starts_with(root))
}

/// Walk `dir` (real, inside `root`) without following any link: folders are entered, regular
/// files hashed (when hashing), links checked to stay inside `root` and hashed by their text,
/// anything else refused. `rel` is `dir` relative to the walk's start, for names and the digest.
fn walk(
    root: &Path,
    dir: &Path,
    rel: &str,
    mut hasher: Option<&mut Sha256>,
) -> Result<(), Refused> {
    let refuse = |rel: &str, what: String| Refused {
        rel: rel.to_string(),
        what,
    };
    let shown = if rel.is_empty() { "." } else { rel };
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(|e| refuse(shown, format!("unreadable: {e}")))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    entries.sort();
    for name in entries {
        let path = dir.join(&name);
        let rel = if rel.is_empty() {
            name.to_string_lossy().to_string()
        } else {
            format!("{rel}/{}", name.to_string_lossy())
        };
        let meta =
            fs::symlink_metadata(&path).map_err(|e| refuse(&rel, format!("unreadable: {e}")))?;
        if let Some(kind) = special_kind(&meta) {
            return Err(refuse(&rel, kind.into()));
        }
        if meta.is_dir() {
            walk(root, &path, &rel, hasher.as_deref_mut())?;
        } else if meta.is_symlink() {
            if !link_stays_inside(root, &path) {
                let what = if path.exists() { LEAVES } else { DANGLING };
                return Err(refuse(&rel, what.into()));
            }
            if let Some(h) = hasher.as_deref_mut() {
                use std::os::unix::ffi::OsStrExt;
                let target =
                    fs::read_link(&path).map_err(|e| refuse(&rel, format!("unreadable: {e}")))?;
                // u64::MAX as the length marks a link: no file is that long.
                h.update(rel.as_bytes());
                h.update([0]);
                h.update(u64::MAX.to_le_bytes());
                h.update(target.as_os_str().as_bytes());
            }
        } else if let Some(h) = hasher.as_deref_mut() {
            hash_file(&path, &rel, h).map_err(|what| refuse(&rel, what))?;
        }
    }
    Ok(())
}

/// Hash a regular file as `rel \0 len content`, streamed, opened as [`open_regular`] does.
fn hash_file(path: &Path, rel: &str, hasher: &mut Sha256) -> Result<(), String> {
    let (file, len) = open_regular(path)?;
    if len > MAX_DIGESTED_FILE_BYTES {
        return Err(format!("larger than {MAX_DIGESTED_FILE_BYTES} bytes"));
    }
    hasher.update(rel.as_bytes());
    hasher.update([0]);
    hasher.update(len.to_le_bytes());
    let mut reader = file.take(len);
    let mut buf = vec![0u8; 64 * 1024];
    let mut read = 0u64;
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| format!("unreadable: {e}"))?;
        if n == 0 {
            break;
        }
        read += n as u64;
        hasher.update(&buf[..n]);
    }
    if read != len {
        return Err("changed while it was read".into());
    }
    Ok(())
}

/// Open a regular file for reading: the last component is not followed (O_NOFOLLOW) and the
/// open does not wait (O_NONBLOCK: a FIFO swapped in answers at once), then fstat says what it
/// is. Returns the file and its length.
fn open_regular(path: &Path) -> Result<(fs::File, u64), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => LEAVES.to_string(),
            _ => format!("unreadable: {e}"),
        })?;
    let meta = file.metadata().map_err(|e| format!("unreadable: {e}"))?;
    if let Some(kind) = special_kind(&meta) {
        return Err(kind.into());
    }
    if meta.is_dir() {
        return Err("a folder, not a file".into());
    }
    Ok((file, meta.len()))
}

/// Normalize a path a file names, relative to the stack folder, lexically: `.` dropped, `..`
/// may not climb above the folder, absolute paths refused.
pub(super) fn normalize(rel: &str) -> Result<String, String> {
    if rel.starts_with('/') {
        return Err(format!("'{rel}' must be relative to the stack folder"));
    }
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(rel).components() {
        match c {
            Component::CurDir => {}
            Component::Normal(p) => parts.push(p.to_string_lossy().to_string()),
            Component::ParentDir if parts.pop().is_some() => {}
            _ => return Err(format!("'{rel}' leaves the stack folder")),
        }
    }
    Ok(parts.join("/"))
}

/// The files of one stack folder: the one way the loader reads the repository. Paths are
/// resolved lexically first (no `..` above the folder), then through links (none may leave the
/// folder); only regular files are read, each up to a named limit.
pub struct DirFiles {
    root: PathBuf,
}

impl DirFiles {
    pub fn new(root: &Path) -> Result<Self, String> {
        let root = root
            .canonicalize()
            .map_err(|e| format!("cannot open stack folder {}: {e}", root.display()))?;
        Ok(Self { root })
    }

    /// The folder, canonical (no link in its path).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `rel` really is: normalized, every link followed, still inside the folder.
    fn locate(&self, rel: &str) -> Result<(String, PathBuf), String> {
        let normalized = normalize(rel)?;
        let full = self.root.join(&normalized);
        let real = match full.canonicalize() {
            Ok(real) => real,
            Err(_) if fs::symlink_metadata(&full).is_ok() => {
                return Err(format!("'{rel}' is {DANGLING}"))
            }
            Err(_) => return Err(format!("'{rel}' does not exist in the stack folder")),
        };
        if !real.starts_with(&self.root) {
            return Err(format!("'{rel}' is {LEAVES}"));
        }
        Ok((normalized, real))
    }

    /// Read a regular file of at most `limit` bytes.
    pub fn read_bounded(&self, rel: &str, limit: u64) -> Result<Vec<u8>, String> {
        let (_, real) = self.locate(rel)?;
        let (file, _) = open_regular(&real).map_err(|what| format!("'{rel}' is {what}"))?;
        let mut bytes = Vec::new();
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read '{rel}': {e}"))?;
        if bytes.len() as u64 > limit {
            return Err(format!("'{rel}' is larger than {limit} bytes"));
        }
        Ok(bytes)
    }

    /// [`read_bounded`](Self::read_bounded), as UTF-8 text.
    pub fn read_text(&self, rel: &str, limit: u64) -> Result<String, String> {
        String::from_utf8(self.read_bounded(rel, limit)?)
            .map_err(|_| format!("'{rel}' is not UTF-8 text"))
    }
}

impl StackFiles for DirFiles {
    fn resolve(&self, rel: &str) -> Result<String, String> {
        let (normalized, real) = self.locate(rel)?;
        // A folder (a bind source) is checked whole: a link in it may not leave either, and
        // nothing but files, folders and links may be in it.
        let meta = fs::metadata(&real).map_err(|e| format!("cannot read '{rel}': {e}"))?;
        if let Some(kind) = special_kind(&meta) {
            return Err(format!("'{rel}' is {kind}"));
        }
        if meta.is_dir() {
            let base = if normalized.is_empty() {
                "."
            } else {
                &normalized
            };
            walk(&self.root, &real, "", None).map_err(|r| {
                format!(
                    "'{rel}' holds '{}', {}",
                    Path::new(base).join(&r.rel).display(),
                    r.what
                )
            })?;
        }
        Ok(if normalized.is_empty() {
            ".".into()
        } else {
            normalized
        })
    }

    fn read(&self, rel: &str) -> Result<Vec<u8>, String> {
        self.read_bounded(rel, MAX_READ_BYTES)
    }

    fn digest(&self, rel: &str) -> Result<String, String> {
        let (_, real) = self.locate(rel)?;
        let mut hasher = Sha256::new();
        let meta = fs::metadata(&real).map_err(|e| format!("cannot read '{rel}': {e}"))?;
        if meta.is_dir() {
            walk(&self.root, &real, "", Some(&mut hasher))
                .map_err(|r| format!("'{rel}' holds '{}', {}", r.rel, r.what))?;
        } else {
            hash_file(&real, "", &mut hasher).map_err(|what| format!("'{rel}' is {what}"))?;
        }
        Ok(hex(&hasher.finalize()))
    }

    fn exists(&self, rel: &str) -> bool {
        // A path that leaves the folder "exists" for this purpose, so it is refused, not skipped.
        match normalize(rel) {
            Ok(normalized) => fs::symlink_metadata(self.root.join(normalized)).is_ok(),
            Err(_) => true,
        }
    }

    fn bind_source(&self, rel: &str) -> Result<BindSource, String> {
        let normalized = normalize(rel)?;
        let inside = |real: &Path| {
            let rel = real.strip_prefix(&self.root).unwrap_or(real);
            match rel.to_string_lossy() {
                shown if shown.is_empty() => ".".to_string(),
                shown => shown.into_owned(),
            }
        };
        if fs::symlink_metadata(self.root.join(&normalized)).is_ok() {
            let checked = self.resolve(rel)?;
            let (_, real) = self.locate(rel)?;
            return Ok(BindSource {
                rel: checked,
                real: inside(&real),
                exists: true,
            });
        }
        // Missing: what exists of its path must be folders inside the stack folder (links that
        // stay inside followed); the rest is created, empty, in the stack's data folder.
        let parts: Vec<&str> = normalized.split('/').collect();
        let mut real = self.root.clone();
        for (i, part) in parts.iter().enumerate() {
            let next = real.join(part);
            let walked = parts[..=i].join("/");
            match fs::symlink_metadata(&next) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Ok(BindSource {
                        rel: normalized.clone(),
                        real: inside(&real.join(parts[i..].join("/"))),
                        exists: false,
                    });
                }
                Err(e) => return Err(format!("cannot read '{walked}': {e}")),
                Ok(_) => {}
            }
            let resolved = next
                .canonicalize()
                .map_err(|_| format!("'{walked}' is {DANGLING}"))?;
            if !resolved.starts_with(&self.root) {
                return Err(format!("'{walked}' is {LEAVES}"));
            }
            if !resolved.is_dir() {
                return Err(format!(
                    "'{rel}' does not exist and cannot be created: '{walked}' is not a folder"
                ));
            }
            real = resolved;
        }
        Err(format!("'{rel}' cannot be read"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let path = dir.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    #[test]
    fn paths_that_leave_the_stack_folder_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "web/conf/app.conf", "x");
        write(tmp.path(), "secret.txt", "x");
        let files = DirFiles::new(&tmp.path().join("web")).unwrap();
        assert_eq!(
            files.resolve("./conf/../conf/app.conf").unwrap(),
            "conf/app.conf"
        );
        assert!(files
            .resolve("../secret.txt")
            .unwrap_err()
            .contains("leaves"));
        assert!(files.resolve("/etc/passwd").is_err());
        std::os::unix::fs::symlink(tmp.path().join("secret.txt"), tmp.path().join("web/link"))
            .unwrap();
        assert!(files.resolve("./link").unwrap_err().contains("symlink"));
    }

    fn mkfifo(path: &Path) {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    }

    #[test]
    fn a_bound_folder_holding_a_link_out_or_a_fifo_is_refused_naming_the_entry() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "web/conf/app.conf", "x");
        write(tmp.path(), "secret.txt", "x");
        let files = DirFiles::new(&tmp.path().join("web")).unwrap();
        assert_eq!(files.resolve("./conf").unwrap(), "conf");
        std::os::unix::fs::symlink(
            tmp.path().join("secret.txt"),
            tmp.path().join("web/conf/leak"),
        )
        .unwrap();
        assert_eq!(
            files.resolve("./conf").unwrap_err(),
            "'./conf' holds 'conf/leak', a symlink that leaves the stack folder"
        );
        fs::remove_file(tmp.path().join("web/conf/leak")).unwrap();
        mkfifo(&tmp.path().join("web/conf/pipe"));
        assert_eq!(
            files.resolve("./conf").unwrap_err(),
            "'./conf' holds 'conf/pipe', a FIFO, not a regular file"
        );
        assert!(files.digest("conf").unwrap_err().contains("a FIFO"));
    }

    #[test]
    fn links_inside_the_folder_are_kept_and_a_loop_is_not_walked_forever() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "web/conf/app.conf", "x");
        let web = tmp.path().join("web");
        std::os::unix::fs::symlink("app.conf", web.join("conf/alias.conf")).unwrap();
        std::os::unix::fs::symlink("..", web.join("conf/up")).unwrap();
        let files = DirFiles::new(&web).unwrap();
        assert_eq!(files.resolve("./conf").unwrap(), "conf");
        assert_eq!(files.read("conf/alias.conf").unwrap(), b"x");
        let before = files.digest("conf").unwrap();
        fs::remove_file(web.join("conf/alias.conf")).unwrap();
        std::os::unix::fs::symlink("up/conf/app.conf", web.join("conf/alias.conf")).unwrap();
        assert_ne!(
            files.digest("conf").unwrap(),
            before,
            "a link's target is part of the digest"
        );
        std::os::unix::fs::symlink("../../elsewhere", web.join("conf/out")).unwrap();
        fs::create_dir(tmp.path().join("elsewhere")).unwrap();
        assert!(files
            .resolve("./conf")
            .unwrap_err()
            .contains("'conf/out', a symlink that leaves"));
        fs::remove_dir(tmp.path().join("elsewhere")).unwrap();
        assert!(files
            .resolve("./conf")
            .unwrap_err()
            .contains("'conf/out', a symlink to nothing"));
    }

    #[test]
    fn only_regular_files_within_the_limit_are_read() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "web/big", &"x".repeat(100));
        let web = tmp.path().join("web");
        mkfifo(&web.join("pipe"));
        std::os::unix::fs::symlink("/dev/zero", web.join("zero")).unwrap();
        let files = DirFiles::new(&web).unwrap();
        assert_eq!(files.read_bounded("big", 100).unwrap().len(), 100);
        assert_eq!(
            files.read_bounded("big", 99).unwrap_err(),
            "'big' is larger than 99 bytes"
        );
        assert_eq!(
            files.read("pipe").unwrap_err(),
            "'pipe' is a FIFO, not a regular file"
        );
        assert_eq!(
            files.read("zero").unwrap_err(),
            "'zero' is a symlink that leaves the stack folder"
        );
        let refused = directory_digest(files.root()).unwrap_err();
        assert_eq!(
            refused.in_folder("web"),
            "'web/pipe' is a FIFO, not a regular file"
        );
    }

    #[test]
    fn a_dot_env_or_stack_folder_linked_out_of_the_repository_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "repo/web/compose.yaml", "services: {}\n");
        write(tmp.path(), "outside/web.env", "PASS=s3cr3t-value\n");
        write(tmp.path(), "outside/app/compose.yaml", "services: {}\n");
        let repo = tmp.path().join("repo");
        std::os::unix::fs::symlink(tmp.path().join("outside/web.env"), repo.join("web/.env"))
            .unwrap();
        std::os::unix::fs::symlink(tmp.path().join("outside/app"), repo.join("app")).unwrap();
        let err = load(&repo, &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("app:1: a symlink that leaves the repository"),
            "{err}"
        );
        assert!(
            err.contains("web/.env:1: '.env' is a symlink that leaves the stack folder"),
            "{err}"
        );
        assert!(!err.contains("s3cr3t-value"), "{err}");
        // `--path` naming a link out of the repository.
        let options = LoadOptions {
            repo_root: Some(repo.clone()),
            ..LoadOptions::default()
        };
        let err = load(&repo.join("app"), &options).unwrap_err().to_string();
        assert!(
            err.contains("a symlink that leaves the repository"),
            "{err}"
        );
    }

    #[test]
    fn a_stack_folder_linked_inside_the_repository_is_loaded() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "apps/web/compose.yaml",
            "services:\n  web:\n    image: web:1\n",
        );
        std::os::unix::fs::symlink("apps/web", tmp.path().join("web")).unwrap();
        let desired = load(tmp.path(), &LoadOptions::default()).unwrap();
        assert_eq!(desired.stacks[0].name, "web");
    }

    #[test]
    fn stacks_are_the_subfolders_with_a_compose_file() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "web/compose.yaml",
            "services:\n  web:\n    image: web:1\n",
        );
        write(
            tmp.path(),
            "db/docker-compose.yml",
            "services:\n  db:\n    image: db:1\n",
        );
        write(tmp.path(), "notes/readme.md", "not a stack");
        let desired = load(tmp.path(), &LoadOptions::default()).unwrap();
        let names: Vec<_> = desired.stacks.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["db", "web"]);
    }

    #[test]
    fn host_local_variables_override_the_repository_and_are_marked_secret() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "repo/web/compose.yaml", "services:\n  web:\n    image: web:${TAG}\n    environment:\n      DSN: postgres://app:${DB_PASS}@db\n      LEVEL: ${LEVEL}\n");
        write(
            tmp.path(),
            "repo/web/.env",
            "TAG=v1\nLEVEL=info\nDB_PASS=placeholder\n",
        );
        write(tmp.path(), "env/web.env", "DB_PASS=s3cr3t-value\n");
        let options = LoadOptions {
            host_env_dir: Some(tmp.path().join("env")),
            ..LoadOptions::default()
        };
        let desired = load(&tmp.path().join("repo"), &options).unwrap();
        let web = &desired.stacks[0].services["web"];
        assert_eq!(web.spec.image, "web:v1");
        assert_eq!(
            web.spec.environment["DSN"],
            "postgres://app:s3cr3t-value@db"
        );
        assert!(web.secret_env.contains("DSN"));
        assert!(!web.secret_env.contains("LEVEL"));
    }

    #[test]
    fn dot_env_values_are_expanded_as_compose_expands_them_and_host_values_are_not() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "repo/web/compose.yaml", "services:\n  web:\n    image: ${IMG}\n    environment:\n      DATA: ${DATA}\n      LITERAL: ${LITERAL}\n      URL: ${URL}\n      RAW: ${RAW}\n");
        write(
            tmp.path(),
            "repo/web/.env",
            "REG=registry.example:5000\nDATA=${BASE:-/srv}/data\nIMG=${REG}/app:1\nLITERAL='${REG}'\nURL=postgres://app:${DB_PASS}@db\nRAW=from-repo\n",
        );
        write(
            tmp.path(),
            "env/web.env",
            "DB_PASS=pa$word\nRAW=from-$host\n",
        );
        let options = LoadOptions {
            host_env_dir: Some(tmp.path().join("env")),
            ..LoadOptions::default()
        };
        let desired = load(&tmp.path().join("repo"), &options).unwrap();
        let web = &desired.stacks[0].services["web"];
        assert_eq!(web.spec.image, "registry.example:5000/app:1");
        let env = &web.spec.environment;
        assert_eq!(env["DATA"], "/srv/data");
        assert_eq!(env["LITERAL"], "${REG}");
        // The host's values are the environment: never expanded, and they win over `.env`.
        assert_eq!(env["URL"], "postgres://app:pa$word@db");
        assert_eq!(env["RAW"], "from-$host");
        // Built from a secret, so a secret: masked like the host value itself.
        assert!(web.secret_env.contains("URL"));
        assert!(!web.secret_env.contains("DATA"));
    }

    #[test]
    fn a_host_local_variable_outside_environment_is_refused_because_it_would_not_be_masked() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "repo/web/compose.yaml",
            "services:\n  web:\n    image: web:1\n    command: [\"run\", \"--token=${API_TOKEN}\"]\n",
        );
        write(tmp.path(), "env/web.env", "API_TOKEN=s3cr3t-value\n");
        let options = LoadOptions {
            host_env_dir: Some(tmp.path().join("env")),
            ..LoadOptions::default()
        };
        let err = load(&tmp.path().join("repo"), &options)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "web/compose.yaml:4: services.web.command[1]: a host-local (secret) variable"
            ),
            "{err}"
        );
        assert!(!err.contains("s3cr3t-value"), "{err}");
    }

    #[test]
    fn every_problem_of_every_stack_is_reported_with_file_and_line() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "a/compose.yaml",
            "services:\n  web:\n    imagee: web:1\n",
        );
        write(
            tmp.path(),
            "b/compose.yaml",
            "services:\n  db:\n    image: db:1\n    privileged: true\n",
        );
        let err = load(tmp.path(), &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("a/compose.yaml:3: services.web.imagee: unknown key 'imagee' (did you mean 'image'?)"), "{err}");
        assert!(
            err.contains("b/compose.yaml:4: services.db.privileged"),
            "{err}"
        );
    }

    #[test]
    fn editing_any_file_of_a_plain_directory_stack_changes_its_revision() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "web/compose.yaml", "services: {}\n");
        let before = directory_digest(&tmp.path().join("web")).unwrap();
        write(tmp.path(), "web/Caddyfile", "x");
        assert_ne!(before, directory_digest(&tmp.path().join("web")).unwrap());
    }
}
