//! The stack's data folder (`<state-dir>/data/<stack>`), where writable relative binds point:
//! kept across every revision, never pruned, nothing in it ever deleted. Containers write
//! there, possibly as root, so any entry may be a link or a FIFO planted to redirect the
//! reconciler: the folder is walked one level at a time with `openat(O_NOFOLLOW)`, each tracked
//! file is written to a temp name (`O_CREAT|O_EXCL|O_NOFOLLOW`) and renamed over the old one,
//! and whatever is in the way is left and reported, never followed.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// What git had at each tracked path (stack-relative) when it was last written to the data
/// folder. A file that differs from git while git did not change is the container's: kept.
pub type Applied = BTreeMap<String, String>;

/// What a bind source in the data folder must be, as git has it: a missing source is a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Folder,
    File,
}

impl Expect {
    /// What `rel` is in the stack folder `source`.
    pub fn of(source: &Path, rel: &str) -> Self {
        match std::fs::symlink_metadata(source.join(rel)) {
            Ok(meta) if meta.is_file() => Self::File,
            _ => Self::Folder,
        }
    }
}

/// Write what the stack folder `source` has at `rel` into `data_root/rel`: a file, or a
/// folder's files, folders and links, creating the folders on the way; a path git does not
/// have becomes an empty folder. A tracked file is written when it is absent or git changed it
/// since it was last written here ([`Applied`]); it is never deleted, so a file git stopped
/// tracking stays. Returns what was left alone and why, for the operator; an error is a failure
/// to write (disk full), not something a container put in the way.
pub fn write_tracked(
    source: &Path,
    data_root: &Path,
    rel: &str,
    applied: &mut Applied,
) -> Result<Vec<String>, String> {
    let parts = parts_of(rel)?;
    let from = source.join(rel);
    let failed = |e: io::Error| format!("writing '{rel}' in {}: {e}", data_root.display());
    let meta = match std::fs::symlink_metadata(&from) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("cannot read '{rel}' in the repository: {e}")),
    };
    let expect = match &meta {
        Some(m) if m.is_file() => Expect::File,
        Some(m) if !m.is_dir() => {
            return Err(format!(
                "'{rel}' is neither a file nor a folder in the repository"
            ))
        }
        _ => Expect::Folder,
    };
    let mut writer = Writer {
        applied,
        notes: Vec::new(),
    };
    match open_path(data_root, &parts, expect, rel).map_err(failed)? {
        Err(conflict) => writer.notes.push(conflict),
        Ok(Opened::Folder(dir)) if meta.is_some() => {
            writer.tree(&dir, &from, rel).map_err(failed)?;
        }
        Ok(Opened::Folder(_)) => {}
        Ok(Opened::File(parent, name)) => {
            writer.file(&parent, &name, &from, rel).map_err(failed)?;
            parent.sync();
        }
    }
    Ok(writer.notes)
}

/// Make sure `data_root/rel` can be given to the engine as a bind source: every folder on the
/// way a real folder (never a link: the engine would follow it on the host), the source itself
/// what git has; a missing folder is created, empty, as Compose does.
pub fn check_bind_source(data_root: &Path, rel: &str, expect: Expect) -> Result<PathBuf, String> {
    let parts = parts_of(rel)?;
    let opened = open_path(data_root, &parts, expect, rel)
        .map_err(|e| format!("the data folder '{rel}' cannot be used: {e}"))?;
    match opened {
        Err(conflict) => Err(format!("the data folder cannot be bound: {conflict}")),
        Ok(Opened::File(parent, name)) => match parent.entry(&name) {
            Ok(Entry::File(_)) => Ok(data_root.join(rel)),
            _ => Err(format!("the data folder has no file '{rel}'")),
        },
        Ok(Opened::Folder(_)) if parts.is_empty() => Ok(data_root.to_path_buf()),
        Ok(Opened::Folder(_)) => Ok(data_root.join(rel)),
    }
}

/// The components of a validated stack-relative path; `.` is the folder itself.
fn parts_of(rel: &str) -> Result<Vec<OsString>, String> {
    let mut parts = Vec::new();
    for c in Path::new(rel).components() {
        match c {
            Component::CurDir => {}
            Component::Normal(p) => parts.push(p.to_os_string()),
            _ => {
                return Err(format!(
                    "'{rel}' is not a plain path inside the stack folder"
                ))
            }
        }
    }
    Ok(parts)
}

enum Opened {
    Folder(Dir),
    /// The folder that holds the file, and its name (the file may not exist yet).
    File(Dir, OsString),
}

/// Open `data_root` (created if needed: it is the reconciler's own) and walk `parts` in it,
/// creating missing folders. `Ok(Err(_))` says what is in the way, and where.
fn open_path(
    data_root: &Path,
    parts: &[OsString],
    expect: Expect,
    rel: &str,
) -> io::Result<Result<Opened, String>> {
    std::fs::create_dir_all(data_root)?;
    let mut dir = Dir::open(data_root)?;
    let (last, folders) = match (expect, parts.split_last()) {
        (Expect::File, Some((last, folders))) => (Some(last), folders),
        _ => (None, parts),
    };
    let mut walked = PathBuf::new();
    for part in folders {
        walked.push(part);
        dir = match dir.child(part, true)? {
            Ok(child) => child,
            Err(kind) => {
                return Ok(Err(format!(
                    "'{}' is {kind} in the data folder, not a folder: not followed (a container may have put it there); '{rel}' is not written",
                    walked.display()
                )))
            }
        };
    }
    let Some(last) = last else {
        return Ok(Ok(Opened::Folder(dir)));
    };
    match dir.entry(last)? {
        Entry::Missing | Entry::File(_) => Ok(Ok(Opened::File(dir, last.clone()))),
        other => Ok(Err(format!(
            "'{rel}' is {} in the data folder, not a file as in git: left as it is",
            other.kind()
        ))),
    }
}

struct Writer<'a> {
    applied: &'a mut Applied,
    notes: Vec<String>,
}

impl Writer<'_> {
    /// The folder `from` (in the repository) into `dir`, entry by entry, links never followed on
    /// either side.
    fn tree(&mut self, dir: &Dir, from: &Path, rel: &str) -> io::Result<()> {
        let mut names: Vec<OsString> = std::fs::read_dir(from)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for name in names {
            let path = from.join(&name);
            let child_rel = join(rel, &name);
            let meta = std::fs::symlink_metadata(&path)?;
            if meta.is_dir() {
                match dir.child(&name, true)? {
                    Ok(child) => self.tree(&child, &path, &child_rel)?,
                    Err(kind) => self.notes.push(format!(
                        "'{child_rel}' is {kind} in the data folder, not a folder as in git: not followed, and the files git has under it are not written"
                    )),
                }
            } else if meta.is_file() {
                self.file(dir, &name, &path, &child_rel)?;
            } else if meta.is_symlink() {
                self.link(dir, &name, &path, &child_rel)?;
            }
            // Anything else was refused by the loader; nothing to write.
        }
        dir.sync();
        Ok(())
    }

    fn file(&mut self, dir: &Dir, name: &OsStr, from: &Path, rel: &str) -> io::Result<()> {
        let mut input = open_source_file(from)?;
        let mode = input.metadata()?.permissions();
        let wanted = file_digest(&mut input)?;
        input.rewind()?;
        let owner = match dir.entry(name)? {
            Entry::Missing => None,
            Entry::File(stat) => {
                let mut current = match dir.open_file(name)? {
                    Ok(file) => file,
                    Err(kind) => {
                        self.in_the_way(rel, kind);
                        return Ok(());
                    }
                };
                if file_digest(&mut current)? == wanted || !self.git_changed(rel, &wanted) {
                    self.applied.insert(rel.to_string(), wanted);
                    return Ok(());
                }
                Some((stat.st_uid, stat.st_gid))
            }
            other => {
                self.in_the_way(rel, other.kind());
                return Ok(());
            }
        };
        use std::os::unix::fs::PermissionsExt;
        let mode = mode.mode() & 0o777;
        let written = dir.replace(name, |tmp| {
            let mut out = dir.create_new(tmp, mode)?;
            io::copy(&mut input, &mut out)?;
            // umask may have taken bits away; the owner is kept as the container set it.
            fchmod(&out, mode)?;
            if let Some((uid, gid)) = owner {
                let _ = unsafe { libc::fchown(out.as_raw_fd(), uid, gid) };
            }
            out.sync_all()
        });
        self.record(written, rel, wanted)
    }

    fn link(&mut self, dir: &Dir, name: &OsStr, from: &Path, rel: &str) -> io::Result<()> {
        let target = std::fs::read_link(from)?;
        let wanted = format!("link:{}", target.display());
        match dir.entry(name)? {
            Entry::Missing => {}
            Entry::Link => {
                let current = dir.read_link(name)?;
                if current == target || !self.git_changed(rel, &wanted) {
                    self.applied.insert(rel.to_string(), wanted);
                    return Ok(());
                }
            }
            other => {
                self.in_the_way(rel, other.kind());
                return Ok(());
            }
        }
        let written = dir.replace(name, |tmp| dir.symlink(&target, tmp));
        self.record(written, rel, wanted)
    }

    /// Git's content differs from what was last written here. Never written here: what is
    /// there came from elsewhere (moved in from a checkout), and is kept until git changes it.
    fn git_changed(&mut self, rel: &str, wanted: &str) -> bool {
        match self.applied.get(rel) {
            Some(last) => last != wanted,
            None => {
                self.notes.push(format!(
                    "'{rel}' differs from git and was not written by the reconciler: left as it is until git changes it"
                ));
                false
            }
        }
    }

    fn record(&mut self, written: io::Result<()>, rel: &str, wanted: String) -> io::Result<()> {
        match written {
            Ok(()) => {
                self.applied.insert(rel.to_string(), wanted);
                Ok(())
            }
            // Something put in the way meanwhile (a folder, say): left, like any other.
            Err(e) if in_the_way(&e) => {
                self.notes.push(format!(
                    "'{rel}' is not written: {e} (something is in the way)"
                ));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn in_the_way(&mut self, rel: &str, kind: &str) {
        self.notes.push(format!(
            "'{rel}' is {kind} in the data folder, not what git has: left as it is, not followed"
        ));
    }
}

/// Errors that mean an entry of another kind took the name, not that writing failed.
fn in_the_way(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EISDIR
                | libc::ENOTDIR
                | libc::ELOOP
                | libc::EEXIST
                | libc::ENOTEMPTY
                | libc::EBUSY
        )
    )
}

fn join(rel: &str, name: &OsStr) -> String {
    let name = name.to_string_lossy();
    if rel == "." || rel.is_empty() {
        name.into_owned()
    } else {
        format!("{rel}/{name}")
    }
}

/// A repository file, opened as the loader reads them: not through a link, never blocking on
/// a FIFO, a regular file.
fn open_source_file(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    Ok(file)
}

fn file_digest(file: &mut File) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!(
        "sha256:{}",
        crate::desired::hex(&hasher.finalize())
    ))
}

fn fchmod(file: &File, mode: u32) -> io::Result<()> {
    check(unsafe { libc::fchmod(file.as_raw_fd(), mode as libc::mode_t) })
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn c_name(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// What one name in a folder is, looked at without following it.
enum Entry {
    Missing,
    Folder,
    File(libc::stat),
    Link,
    Other(&'static str),
}

impl Entry {
    fn kind(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Folder => "a folder",
            Self::File(_) => "a file",
            Self::Link => "a symlink",
            Self::Other(kind) => kind,
        }
    }
}

/// An open folder: every name is looked up in it (`*at` calls), never through a path.
struct Dir(OwnedFd);

impl Dir {
    /// A folder of the reconciler's own (the data root): its last component not followed.
    fn open(path: &Path) -> io::Result<Self> {
        let path = c_name(path.as_os_str())?;
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        check(fd)?;
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn entry(&self, name: &OsStr) -> io::Result<Entry> {
        let c = c_name(name)?;
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::fstatat(
                self.0.as_raw_fd(),
                c.as_ptr(),
                &mut stat,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::NotFound => Ok(Entry::Missing),
                _ => Err(e),
            };
        }
        Ok(match stat.st_mode & libc::S_IFMT {
            libc::S_IFDIR => Entry::Folder,
            libc::S_IFREG => Entry::File(stat),
            libc::S_IFLNK => Entry::Link,
            libc::S_IFIFO => Entry::Other("a FIFO"),
            libc::S_IFSOCK => Entry::Other("a socket"),
            libc::S_IFCHR | libc::S_IFBLK => Entry::Other("a device"),
            _ => Entry::Other("not a file or folder"),
        })
    }

    /// The sub-folder `name`, created (0755, as the engine creates a missing bind source) when
    /// asked. `Ok(Err(kind))`: something else is there.
    fn child(&self, name: &OsStr, create: bool) -> io::Result<Result<Self, &'static str>> {
        let c = c_name(name)?;
        for attempt in 0..2 {
            let fd = unsafe {
                libc::openat(
                    self.0.as_raw_fd(),
                    c.as_ptr(),
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            };
            if fd >= 0 {
                return Ok(Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) })));
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ENOENT) if create && attempt == 0 => {
                    let rc = unsafe { libc::mkdirat(self.0.as_raw_fd(), c.as_ptr(), 0o755) };
                    if rc < 0 {
                        let e = io::Error::last_os_error();
                        if e.raw_os_error() != Some(libc::EEXIST) {
                            return Err(e);
                        }
                    }
                }
                Some(libc::ELOOP | libc::ENOTDIR) => return Ok(Err(self.entry(name)?.kind())),
                _ => return Err(e),
            }
        }
        Ok(Err(self.entry(name)?.kind()))
    }

    /// A regular file to read, opened without following a link or waiting on a FIFO.
    /// `Ok(Err(kind))`: something else took the name since it was looked at.
    fn open_file(&self, name: &OsStr) -> io::Result<Result<File, &'static str>> {
        let c = c_name(name)?;
        let fd = unsafe {
            libc::openat(
                self.0.as_raw_fd(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ELOOP) => Ok(Err("a symlink")),
                _ => Err(e),
            };
        }
        let file = unsafe { File::from_raw_fd(fd) };
        if !file.metadata()?.is_file() {
            return Ok(Err("not a regular file"));
        }
        Ok(Ok(file))
    }

    fn create_new(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        let c = c_name(name)?;
        let fd = unsafe {
            libc::openat(
                self.0.as_raw_fd(),
                c.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                mode as libc::c_uint,
            )
        };
        check(fd)?;
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    fn read_link(&self, name: &OsStr) -> io::Result<PathBuf> {
        let c = c_name(name)?;
        let mut buf = vec![0u8; libc::PATH_MAX as usize];
        let n = unsafe {
            libc::readlinkat(
                self.0.as_raw_fd(),
                c.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        buf.truncate(n as usize);
        Ok(PathBuf::from(
            <OsString as std::os::unix::ffi::OsStringExt>::from_vec(buf),
        ))
    }

    fn symlink(&self, target: &Path, name: &OsStr) -> io::Result<()> {
        let (t, c) = (c_name(target.as_os_str())?, c_name(name)?);
        check(unsafe { libc::symlinkat(t.as_ptr(), self.0.as_raw_fd(), c.as_ptr()) })
    }

    fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        let (f, t) = (c_name(from)?, c_name(to)?);
        let fd = self.0.as_raw_fd();
        check(unsafe { libc::renameat(fd, f.as_ptr(), fd, t.as_ptr()) })
    }

    fn unlink(&self, name: &OsStr) -> io::Result<()> {
        let c = c_name(name)?;
        check(unsafe { libc::unlinkat(self.0.as_raw_fd(), c.as_ptr(), 0) })
    }

    /// Put `name` in place atomically: `make` writes the temp name, which is then renamed over
    /// it (a rename replaces a file or link, never follows it). A crash leaves the old entry
    /// and, at worst, the temp one, which the next write of that name clears.
    fn replace(&self, name: &OsStr, make: impl FnOnce(&OsStr) -> io::Result<()>) -> io::Result<()> {
        let tmp = temp_name(name);
        match self.unlink(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let done = make(&tmp).and_then(|()| self.rename(&tmp, name));
        if done.is_err() {
            let _ = self.unlink(&tmp);
        }
        done
    }

    /// Renames and new names reach the disk (a crash after this keeps them).
    fn sync(&self) {
        unsafe { libc::fsync(self.0.as_raw_fd()) };
    }
}

/// The temp name a file is written under: one per name, so a crash leaves at most one, and
/// short whatever the name's length.
fn temp_name(name: &OsStr) -> OsString {
    let digest = crate::desired::hex(&Sha256::digest(name.as_bytes()));
    OsString::from(format!(".reconciler-{}.tmp", &digest[..16]))
}

#[cfg(test)]
mod tests;
