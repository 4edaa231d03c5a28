//! Where the desired state comes from: a local directory (its files as they are, so edits can be
//! previewed before commit) or a git remote fetched with git2 into `<state-dir>/git/`. A fetched
//! commit's tree is written out once per commit (no work tree, nothing to get dirty), and the
//! loader reads that folder like any other.

use git2::{Cred, CredentialType, FetchOptions, Oid, RemoteCallbacks, Repository};
use sha2::{Digest, Sha256};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot fetch {url}: {message}")]
    Fetch { url: String, message: String },
    #[error("branch '{branch}' does not exist in {url}")]
    NoBranch { url: String, branch: String },
    #[error("revision '{rev}' is not in {url}: {message}")]
    NoRevision {
        url: String,
        rev: String,
        message: String,
    },
    #[error("history of {url} was rewritten: the branch moved from {from} to {to}, which does not contain it (force-push). Nothing is applied; pass --allow-non-fast-forward to follow it")]
    NonFastForward {
        url: String,
        from: String,
        to: String,
    },
    #[error("cannot write out commit {commit}: {message}")]
    Checkout { commit: String, message: String },
    #[error("--repo {0}: no such directory")]
    NoDirectory(PathBuf),
    #[error("--rev needs a git source; {0} is a plain directory, read as it is")]
    RevOnDirectory(String),
    #[error("fetch of {url} stopped: shutting down")]
    Cancelled { url: String },
}

impl SourceError {
    /// A remote that cannot be reached now may answer later; the rest needs a person.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Fetch { .. })
    }
}

/// How long a fetch may take. A remote that accepts the connection and then says nothing must
/// not hold the loop: each connect and each read waits at most `idle`, the whole fetch `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    pub idle: Duration,
    pub total: Duration,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(60),
            total: Duration::from_secs(600),
        }
    }
}

/// What fetches of one loop share: the limits, the shutdown, and the rule of one fetch at a
/// time (a fetch abandoned at its deadline may still hold its thread, since libgit2 cannot be
/// interrupted inside a read, and must not be joined by another, then another).
#[derive(Debug, Clone, Default)]
pub struct FetchControl {
    pub limits: FetchLimits,
    /// Cancelled at shutdown: a fetch in flight gives up at its next callback.
    pub cancel: tokio_util::sync::CancellationToken,
    pub one_at_a_time: std::sync::Arc<Mutex<()>>,
}

/// libgit2's socket timeouts are process globals: set them once, before the first connection.
fn apply_socket_timeouts(limits: FetchLimits) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let ms = |d: Duration| d.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
        // SAFETY: these write two C ints libgit2 reads when it opens a socket. The Once runs
        // before any fetch (every fetch passes here first), so no socket is being opened.
        unsafe {
            let _ = git2::opts::set_server_connect_timeout_in_milliseconds(ms(limits.idle));
            let _ = git2::opts::set_server_timeout_in_milliseconds(ms(limits.idle));
        }
    });
}

/// Run blocking git work (fetch, resolve, checkout) off the runtime and wait for it at most the
/// fetch limit plus one idle period: libgit2 enforces the limits itself where it can, this
/// catches what it cannot (a remote that trickles a byte just before each idle timeout).
pub async fn run_bounded<T: Send + 'static>(
    url: &str,
    limits: FetchLimits,
    work: impl FnOnce() -> Result<T, SourceError> + Send + 'static,
) -> Result<T, SourceError> {
    let bound = limits.total + limits.idle;
    match tokio::time::timeout(bound, tokio::task::spawn_blocking(work)).await {
        Ok(joined) => joined.expect("git task panicked"),
        Err(_) => Err(SourceError::Fetch {
            url: crate::mask::redact_url(url),
            message: format!(
                "no result after {}; the remote is too slow or stopped answering",
                humantime::format_duration(bound)
            ),
        }),
    }
}

/// One fetch may bring at most this much: a desired-state repository is Compose files and
/// config, and the clone lives on the host's disk.
pub const MAX_FETCH_BYTES: usize = 1 << 30;
pub const MAX_FETCH_OBJECTS: usize = 1_000_000;

/// What `--repo` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    Directory(PathBuf),
    Git { url: String },
}

impl SourceSpec {
    pub fn parse(repo: &str) -> Self {
        let scp_like = !repo.contains("://")
            && repo.contains('@')
            && repo
                .split_once(':')
                .is_some_and(|(host, _)| !host.contains('/'));
        if repo.contains("://") || scp_like {
            Self::Git {
                url: repo.to_string(),
            }
        } else {
            Self::Directory(PathBuf::from(repo))
        }
    }
}

/// A desired-state folder ready to load, and the commit it came from (git sources).
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub dir: PathBuf,
    pub commit: Option<String>,
}

/// How to authenticate to a remote: a token for https, a key (or the agent) for ssh.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub token: Option<String>,
    pub ssh_key: Option<PathBuf>,
}

pub struct GitSource {
    pub url: String,
    pub branch: String,
    pub credentials: Credentials,
    /// `<state-dir>`: the clone lives in `git/<digest of url>`, trees in `checkouts/<commit>`.
    pub state_dir: PathBuf,
    pub control: FetchControl,
}

impl GitSource {
    /// The URL as messages show it: no password or token.
    fn shown_url(&self) -> String {
        crate::mask::redact_url(&self.url)
    }

    /// libgit2's messages may echo the URL or the credentials it was given.
    fn scrub(&self, message: &str) -> String {
        let mut secrets = crate::mask::url_secrets(&self.url);
        secrets.extend(self.credentials.token.clone());
        crate::mask::scrub(message, secrets.iter().map(String::as_str))
    }

    fn clone_dir(&self) -> PathBuf {
        let digest = crate::desired::hex(&Sha256::digest(self.url.as_bytes()));
        self.state_dir.join("git").join(&digest[..16])
    }

    fn open(&self) -> Result<Repository, SourceError> {
        let dir = self.clone_dir();
        let fail = |e: git2::Error| SourceError::Fetch {
            url: self.shown_url(),
            message: self.scrub(e.message()),
        };
        match Repository::open_bare(&dir) {
            Ok(repo) => Ok(repo),
            Err(_) => {
                fs::create_dir_all(&dir).map_err(|e| SourceError::Fetch {
                    url: self.shown_url(),
                    message: format!("{}: {e}", dir.display()),
                })?;
                Repository::init_bare(&dir).map_err(fail)
            }
        }
    }

    /// Fetch the branch and return its tip. Blocking: call it through [`run_bounded`].
    pub fn fetch(&self) -> Result<String, SourceError> {
        if self.control.cancel.is_cancelled() {
            return Err(SourceError::Cancelled {
                url: self.shown_url(),
            });
        }
        let limits = self.control.limits;
        apply_socket_timeouts(limits);
        let _only_fetch =
            self.control
                .one_at_a_time
                .try_lock()
                .map_err(|_| SourceError::Fetch {
                    url: self.shown_url(),
                    message: "the previous fetch has not ended yet (the remote stopped answering?)"
                        .to_string(),
                })?;
        let deadline = Instant::now() + limits.total;
        let repo = self.open()?;
        let mut remote = repo
            .remote_anonymous(&self.url)
            .map_err(|e| SourceError::Fetch {
                url: self.shown_url(),
                message: self.scrub(e.message()),
            })?;
        let mut options = FetchOptions::new();
        let too_big = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        options.remote_callbacks(self.callbacks(deadline, too_big.clone()));
        let refspec = format!("+refs/heads/{0}:refs/remotes/origin/{0}", self.branch);
        remote
            .fetch(&[refspec.as_str()], Some(&mut options), None)
            .map_err(|e| {
                if self.control.cancel.is_cancelled() {
                    return SourceError::Cancelled {
                        url: self.shown_url(),
                    };
                }
                let message = if too_big.load(std::sync::atomic::Ordering::SeqCst) {
                    format!(
                        "the fetch is larger than {} MiB or {MAX_FETCH_OBJECTS} objects; nothing was applied",
                        MAX_FETCH_BYTES >> 20
                    )
                } else if Instant::now() >= deadline {
                    format!(
                        "took longer than {} (the fetch limit)",
                        humantime::format_duration(limits.total)
                    )
                } else {
                    self.scrub(e.message())
                };
                SourceError::Fetch {
                    url: self.shown_url(),
                    message,
                }
            })?;
        let tip = repo
            .refname_to_id(&format!("refs/remotes/origin/{}", self.branch))
            .map_err(|_| SourceError::NoBranch {
                url: self.shown_url(),
                branch: self.branch.clone(),
            })?;
        Ok(tip.to_string())
    }

    /// Resolve `--rev` (a commit id, tag or ref name) in the fetched clone.
    pub fn resolve(&self, rev: &str) -> Result<String, SourceError> {
        let repo = self.open()?;
        repo.revparse_single(rev)
            .and_then(|o| o.peel_to_commit())
            .map(|c| c.id().to_string())
            .map_err(|e| SourceError::NoRevision {
                url: self.shown_url(),
                rev: rev.to_string(),
                message: self.scrub(e.message()),
            })
    }

    /// Refuse a tip that does not descend from the last one applied (history rewritten).
    pub fn check_fast_forward(
        &self,
        previous: &str,
        tip: &str,
        allow: bool,
    ) -> Result<(), SourceError> {
        if previous == tip || allow {
            return Ok(());
        }
        let repo = self.open()?;
        let (Ok(old), Ok(new)) = (Oid::from_str(previous), Oid::from_str(tip)) else {
            return Ok(());
        };
        // An unknown previous commit (clone recreated, state from elsewhere) cannot be judged.
        if repo.find_commit(old).is_err() {
            return Ok(());
        }
        match repo.graph_descendant_of(new, old) {
            Ok(true) => Ok(()),
            _ => Err(SourceError::NonFastForward {
                url: self.shown_url(),
                from: previous.to_string(),
                to: tip.to_string(),
            }),
        }
    }

    /// Write the commit's tree to `<state-dir>/checkouts/<commit>` (once) and return it.
    pub fn checkout(&self, commit: &str) -> Result<Snapshot, SourceError> {
        let checkouts = self.state_dir.join("checkouts");
        forget_unchecked_checkouts(&checkouts).map_err(|e| SourceError::Checkout {
            commit: commit.to_string(),
            message: format!("{}: {e}", checkouts.display()),
        })?;
        let target = checkouts.join(commit);
        if !target.exists() {
            let fail = |message: String| SourceError::Checkout {
                commit: commit.to_string(),
                message,
            };
            let repo = self.open()?;
            let oid = Oid::from_str(commit).map_err(|e| fail(e.message().to_string()))?;
            let tree = repo
                .find_commit(oid)
                .and_then(|c| c.tree())
                .map_err(|e| fail(e.message().to_string()))?;
            let parent = target.parent().expect("checkouts has a parent");
            fs::create_dir_all(parent).map_err(|e| fail(e.to_string()))?;
            let tmp = parent.join(format!(".tmp-{commit}-{}", std::process::id()));
            // remove_dir_all does not follow links, so a half-written tree is safe to remove.
            let _ = fs::remove_dir_all(&tmp);
            let written = write_tree(&repo, &tree, &tmp, "", &mut Budget::default())
                .and_then(|()| fs::rename(&tmp, &target).map_err(|e| e.to_string()));
            if let Err(message) = written {
                let _ = fs::remove_dir_all(&tmp);
                return Err(fail(message));
            }
        }
        Ok(Snapshot {
            dir: target,
            commit: Some(commit.to_string()),
        })
    }

    /// Credentials, and a check on every progress report: past `deadline` or at shutdown the
    /// fetch is aborted (returning false makes libgit2 stop the transfer).
    fn callbacks(
        &self,
        deadline: Instant,
        too_big: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> RemoteCallbacks<'_> {
        let mut callbacks = RemoteCallbacks::new();
        let cancel = &self.control.cancel;
        let go_on = move || !cancel.is_cancelled() && Instant::now() < deadline;
        callbacks.transfer_progress(move |p| {
            // A push of gigabytes would fill the disk the state dir is on, commit after commit.
            if p.received_bytes() > MAX_FETCH_BYTES || p.total_objects() > MAX_FETCH_OBJECTS {
                too_big.store(true, std::sync::atomic::Ordering::SeqCst);
                return false;
            }
            go_on()
        });
        callbacks.sideband_progress(move |_| go_on());
        let creds = self.credentials.clone();
        let mut tried = 0;
        callbacks.credentials(move |_url, username, allowed| {
            // libgit2 asks again after a refusal; a second ask means the credentials are wrong.
            tried += 1;
            if tried > 2 {
                return Err(git2::Error::from_str("authentication failed"));
            }
            let user = username.unwrap_or("git");
            if allowed.contains(CredentialType::SSH_KEY) {
                return match &creds.ssh_key {
                    Some(key) => Cred::ssh_key(user, None, key, None),
                    None => Cred::ssh_key_from_agent(user),
                };
            }
            if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
                if let Some(token) = &creds.token {
                    return Cred::userpass_plaintext(username.unwrap_or("x-access-token"), token);
                }
            }
            Cred::default()
        });
        callbacks
    }
}

/// Marks a `checkouts/` folder whose trees were all written by the checking writer.
const CHECKED_CHECKOUTS: &str = ".checked-writer";

/// Trees written before entries were checked (an earlier version) may hold whatever a hostile
/// commit put there, and a tree is never written twice: drop them all once. They are only
/// copies of git objects; the next pass writes what it needs anew.
fn forget_unchecked_checkouts(checkouts: &Path) -> std::io::Result<()> {
    if checkouts.join(CHECKED_CHECKOUTS).exists() {
        return Ok(());
    }
    if checkouts.exists() {
        fs::remove_dir_all(checkouts)?;
    }
    fs::create_dir_all(checkouts)?;
    fs::write(checkouts.join(CHECKED_CHECKOUTS), b"")
}

/// Watch a directory source: `on_change` runs (on the watcher's thread) for any change under
/// it, so an edit is reconciled at once. The watch lasts as long as the returned watcher.
pub fn watch_directory(
    dir: &Path,
    on_change: impl Fn() + Send + 'static,
) -> Result<notify::RecommendedWatcher, notify::Error> {
    use notify::Watcher;
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reads (access events) change nothing; everything else may.
        if event.is_ok_and(|e| !e.kind.is_access()) {
            on_change();
        }
    })?;
    watcher.watch(dir, notify::RecursiveMode::Recursive)?;
    Ok(watcher)
}

/// Most entries one commit may write out: far beyond any desired-state repository.
pub const MAX_CHECKOUT_ENTRIES: usize = 100_000;
/// Most bytes one commit may write out, all files together.
pub const MAX_CHECKOUT_BYTES: u64 = 1 << 30;
/// Deepest folder nesting written out (recursion and path length stay bounded).
pub const MAX_CHECKOUT_DEPTH: usize = 64;

/// Why a tree entry name cannot be written as a file name, if it cannot: `.`, `..` and `.git`
/// (any case) would step out of or into what we do not own, `/` and NUL are not one name.
fn refused_name(name: &[u8]) -> Option<&'static str> {
    if name.is_empty() {
        return Some("an empty name");
    }
    if name == b"." || name == b".." {
        return Some("'.' and '..' are not file names");
    }
    if name.eq_ignore_ascii_case(b".git") {
        return Some("'.git' is git's own folder");
    }
    if name.contains(&b'/') {
        return Some("a name holding '/'");
    }
    if name.contains(&0) {
        return Some("a name holding NUL");
    }
    if std::str::from_utf8(name).is_err() {
        return Some("a name that is not UTF-8");
    }
    None
}

/// What writing one commit has used so far, against the limits above.
#[derive(Default)]
struct Budget {
    entries: usize,
    bytes: u64,
}

/// Write `tree` into the fresh folder `dir`. Never follows a symlink: every folder is created
/// by us (`create_dir` fails on anything already there), every file with O_CREAT|O_EXCL|
/// O_NOFOLLOW. Errors name the offending path relative to the commit's root.
fn write_tree(
    repo: &Repository,
    tree: &git2::Tree<'_>,
    dir: &Path,
    shown: &str,
    budget: &mut Budget,
) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let depth = shown.split('/').filter(|p| !p.is_empty()).count();
    if depth > MAX_CHECKOUT_DEPTH {
        return Err(format!(
            "'{shown}' is nested deeper than {MAX_CHECKOUT_DEPTH} folders"
        ));
    }
    fs::create_dir(dir).map_err(|e| format!("'{}': {e}", or_root(shown)))?;
    let mut seen = std::collections::HashSet::new();
    for entry in tree.iter() {
        let raw = entry.name_bytes();
        let name = String::from_utf8_lossy(raw);
        let rel = if shown.is_empty() {
            name.to_string()
        } else {
            format!("{shown}/{name}")
        };
        if let Some(why) = refused_name(raw) {
            return Err(format!(
                "'{}': refused entry name ({why})",
                rel.escape_debug()
            ));
        }
        if !seen.insert(raw.to_vec()) {
            return Err(format!("'{rel}': the tree holds two entries of this name"));
        }
        budget.entries += 1;
        if budget.entries > MAX_CHECKOUT_ENTRIES {
            return Err(format!(
                "'{rel}': more than {MAX_CHECKOUT_ENTRIES} entries in one commit"
            ));
        }
        let path = dir.join(&*name);
        let git = |e: git2::Error| format!("'{rel}': {}", e.message());
        match entry.filemode() {
            0o040000 => {
                let sub = entry
                    .to_object(repo)
                    .and_then(|o| o.peel_to_tree())
                    .map_err(git)?;
                write_tree(repo, &sub, &path, &rel, budget)?;
            }
            0o160000 => {} // submodules are not part of the desired state
            mode @ (0o120000 | 0o100644 | 0o100755 | 0o100664) => {
                // The size is read from the object header first, so an oversized blob is
                // refused before it is loaded into memory.
                let (size, _) = repo
                    .odb()
                    .and_then(|o| o.read_header(entry.id()))
                    .map_err(git)?;
                budget.bytes += size as u64;
                if budget.bytes > MAX_CHECKOUT_BYTES {
                    return Err(format!(
                        "'{rel}': the commit's files exceed {MAX_CHECKOUT_BYTES} bytes"
                    ));
                }
                let blob = repo.find_blob(entry.id()).map_err(git)?;
                if mode == 0o120000 {
                    // Kept as a link, never followed here; the loader refuses one that leaves
                    // the stack folder.
                    use std::os::unix::ffi::OsStrExt;
                    let target = blob.content();
                    if target.is_empty() || target.contains(&0) {
                        return Err(format!(
                            "'{rel}': a symlink target that is empty or holds NUL"
                        ));
                    }
                    std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), &path)
                        .map_err(|e| format!("'{rel}': {e}"))?;
                } else {
                    let mut file = fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .custom_flags(libc::O_NOFOLLOW)
                        .mode(if mode == 0o100755 { 0o755 } else { 0o644 })
                        .open(&path)
                        .map_err(|e| format!("'{rel}': {e}"))?;
                    file.write_all(blob.content())
                        .map_err(|e| format!("'{rel}': {e}"))?;
                }
            }
            mode => return Err(format!("'{rel}': unsupported entry mode {mode:o}")),
        }
    }
    Ok(())
}

fn or_root(shown: &str) -> &str {
    if shown.is_empty() {
        "."
    } else {
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_step_out_or_into_git_are_refused_and_ordinary_ones_pass() {
        for bad in [
            &b""[..],
            b".",
            b"..",
            b".git",
            b".GIT",
            b".gIt",
            b"a/b",
            b"../x",
            b"a\0b",
            b"\xff",
        ] {
            assert!(
                refused_name(bad).is_some(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        for good in [
            &b"compose.yaml"[..],
            b".env",
            b"...",
            b".gitignore",
            b"git",
            b"..a",
        ] {
            assert_eq!(
                refused_name(good),
                None,
                "{}",
                String::from_utf8_lossy(good)
            );
        }
    }

    #[test]
    fn urls_are_git_and_paths_are_directories() {
        for url in [
            "file:///srv/repo.git",
            "https://git.example/ops.git",
            "ssh://git@host/ops",
            "git@host:ops/desired.git",
        ] {
            assert!(
                matches!(SourceSpec::parse(url), SourceSpec::Git { .. }),
                "{url}"
            );
        }
        for dir in ["desired-state", "/srv/desired", "./a:b"] {
            assert!(
                matches!(SourceSpec::parse(dir), SourceSpec::Directory(_)),
                "{dir}"
            );
        }
    }

    #[test]
    fn checkouts_written_before_the_checking_writer_are_dropped_once() {
        let tmp = tempfile::tempdir().unwrap();
        let checkouts = tmp.path().join("checkouts");
        fs::create_dir_all(checkouts.join("0123abcd/web")).unwrap();
        forget_unchecked_checkouts(&checkouts).unwrap();
        assert!(!checkouts.join("0123abcd").exists());
        fs::create_dir_all(checkouts.join("4567cdef")).unwrap();
        forget_unchecked_checkouts(&checkouts).unwrap();
        assert!(
            checkouts.join("4567cdef").exists(),
            "a checked tree is kept"
        );
    }
}
