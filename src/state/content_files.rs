//! Secrets and configs given by content (`environment:`, `content:`) as files the engine can
//! bind: `<state-dir>/files/<stack>/<name>`. A name is a keyed digest of everything the file is
//! (see [`crate::desired::FileMount::content_file_name`]), so a new revision never overwrites a
//! file an old container still mounts. Written atomically, never through a link; pruned once no
//! container names it in its `reconciler.files` label.

use super::{check_stack_name, StateDir, StateError};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Owner and permissions of a written file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileAttributes {
    pub mode: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl StateDir {
    fn content_files_root(&self) -> PathBuf {
        self.root().join("files")
    }

    /// Where a stack's content files are.
    pub fn content_files_dir(&self, stack: &str) -> PathBuf {
        self.content_files_root().join(stack)
    }

    /// Write `content` as the stack's file `name` unless it is there already, and return its
    /// path. Temp file, fsync, rename: a crash leaves no half-written file under a final name.
    /// No link is followed: the folders must be real folders, the temp file is created new.
    pub fn write_content_file(
        &self,
        stack: &str,
        name: &str,
        content: &[u8],
        attributes: FileAttributes,
    ) -> Result<PathBuf, StateError> {
        check_stack_name(stack)?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError::Io { path, source }
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            let path = self.content_files_dir(stack).join(name);
            return Err(io(&path)(std::io::Error::other("not a content file name")));
        }
        fs::create_dir_all(self.root()).map_err(io(self.root()))?;
        let dir = self.content_files_dir(stack);
        for folder in [self.content_files_root(), dir.clone()] {
            private_folder(&folder).map_err(io(&folder))?;
        }
        let path = dir.join(name);
        if is_written(&path, content.len() as u64, attributes) {
            return Ok(path);
        }
        let tmp = dir.join(format!(".tmp-{}-{name}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let written = write_new(&tmp, content, attributes)
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(io(&path));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written.map(|()| path)
    }

    /// Stacks that have content files, for looking up the containers that use them.
    pub fn stacks_with_content_files(&self) -> Vec<String> {
        super::subdirectories(&self.content_files_root())
            .into_iter()
            .filter(|s| check_stack_name(s).is_ok())
            .collect()
    }

    /// Remove each content file that no container names (`keep`: names by stack), and temp
    /// files a crash left. Returns what was removed.
    pub(super) fn prune_content_files(
        &self,
        keep: &BTreeMap<String, BTreeSet<String>>,
    ) -> Vec<PathBuf> {
        let mut removed = Vec::new();
        for stack in self.stacks_with_content_files() {
            let dir = self.content_files_dir(&stack);
            let kept = keep.get(&stack);
            for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                let is_file = entry.file_type().is_ok_and(|t| t.is_file());
                if !is_file || kept.is_some_and(|k| k.contains(&name)) {
                    continue;
                }
                match fs::remove_file(entry.path()) {
                    Ok(()) => removed.push(entry.path()),
                    Err(e) => tracing::warn!("cannot prune {}: {e}", entry.path().display()),
                }
            }
        }
        removed
    }
}

/// A folder only the state dir's owner can enter, made if missing; a link or anything else in
/// its place is refused, never followed.
fn private_folder(path: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(std::io::Error::other(
            "not a folder (a link is never followed here)",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match fs::DirBuilder::new().mode(0o700).create(path) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
                _ => private_folder_exists(path),
            }
        }
        Err(e) => Err(e),
    }
}

fn private_folder_exists(path: &Path) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.is_dir() {
        Ok(())
    } else {
        Err(std::io::Error::other(
            "not a folder (a link is never followed here)",
        ))
    }
}

/// The file is there as it would be written: a regular file (not a link) of that size, mode
/// and owner. Its name is a digest of its content, so the content is not read again.
fn is_written(path: &Path, len: u64, attributes: FileAttributes) -> bool {
    fs::symlink_metadata(path).is_ok_and(|meta| {
        meta.is_file()
            && meta.len() == len
            && meta.permissions().mode() & 0o7777 == attributes.mode
            && attributes.uid.is_none_or(|uid| meta.uid() == uid)
            && attributes.gid.is_none_or(|gid| meta.gid() == gid)
    })
}

/// Create `path` (which must not exist; a link there is not followed), write, own, chmod, sync.
fn write_new(path: &Path, content: &[u8], attributes: FileAttributes) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    file.write_all(content)?;
    if attributes.uid.is_some() || attributes.gid.is_some() {
        // -1 leaves that id as it is.
        let uid = attributes.uid.unwrap_or(u32::MAX);
        let gid = attributes.gid.unwrap_or(u32::MAX);
        // SAFETY: a valid open descriptor; fchown has no memory arguments.
        if unsafe { libc::fchown(file.as_raw_fd(), uid, gid) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(std::io::Error::new(
                e.kind(),
                format!(
                    "cannot give the file to uid {} gid {}: {e} (giving a file away needs CAP_CHOWN)",
                    shown(attributes.uid),
                    shown(attributes.gid)
                ),
            ));
        }
    }
    file.set_permissions(fs::Permissions::from_mode(attributes.mode))?;
    file.sync_all()
}

fn shown(id: Option<u32>) -> String {
    id.map_or_else(|| "(unchanged)".to_string(), |id| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const READ_ONLY: FileAttributes = FileAttributes {
        mode: 0o444,
        uid: None,
        gid: None,
    };

    #[test]
    fn a_content_file_is_written_once_with_its_mode_in_a_private_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path());
        let path = dir
            .write_content_file("web", "ab12", b"hunter22", READ_ONLY)
            .unwrap();
        assert_eq!(path, tmp.path().join("files/web/ab12"));
        assert_eq!(fs::read(&path).unwrap(), b"hunter22");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&path), 0o444);
        assert_eq!(mode(&tmp.path().join("files")), 0o700);
        assert_eq!(mode(&tmp.path().join("files/web")), 0o700);
        let inode = fs::metadata(&path).unwrap().ino();
        dir.write_content_file("web", "ab12", b"hunter22", READ_ONLY)
            .unwrap();
        assert_eq!(fs::metadata(&path).unwrap().ino(), inode, "not rewritten");
        let tight = FileAttributes {
            mode: 0o400,
            uid: Some(0),
            gid: Some(0),
        };
        let other = dir.write_content_file("web", "cd34", b"x", tight).unwrap();
        assert_eq!(mode(&other), 0o400);
        let left: Vec<_> = fs::read_dir(tmp.path().join("files/web"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 2, "no temp file is left: {left:?}");
    }

    #[test]
    fn a_link_in_place_of_a_folder_or_file_is_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        fs::create_dir_all(state.join("files")).unwrap();
        std::os::unix::fs::symlink(outside.path(), state.join("files/web")).unwrap();
        let dir = StateDir::new(&state);
        assert!(dir
            .write_content_file("web", "ab12", b"x", READ_ONLY)
            .is_err());
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
        fs::remove_file(state.join("files/web")).unwrap();
        fs::create_dir(state.join("files/web")).unwrap();
        let target = outside.path().join("victim");
        std::os::unix::fs::symlink(&target, state.join("files/web/ab12")).unwrap();
        dir.write_content_file("web", "ab12", b"x", READ_ONLY)
            .unwrap();
        assert!(!target.exists(), "the link's target was written");
        assert!(fs::symlink_metadata(state.join("files/web/ab12"))
            .unwrap()
            .is_file());
        for bad in ["../x", "", "ab/12"] {
            assert!(dir.write_content_file("web", bad, b"x", READ_ONLY).is_err());
        }
        assert!(dir
            .write_content_file("../web", "ab12", b"x", READ_ONLY)
            .is_err());
    }

    #[test]
    fn pruning_removes_only_the_files_no_container_names() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path());
        for name in ["aa", "bb"] {
            dir.write_content_file("web", name, b"x", READ_ONLY)
                .unwrap();
        }
        dir.write_content_file("db", "cc", b"x", READ_ONLY).unwrap();
        fs::write(tmp.path().join("files/web/.tmp-1-dd"), "x").unwrap();
        let keep = BTreeMap::from([("web".to_string(), BTreeSet::from(["aa".to_string()]))]);
        let mut removed = dir.prune_content_files(&keep);
        removed.sort();
        let root = tmp.path().join("files");
        assert_eq!(
            removed,
            [
                root.join("db/cc"),
                root.join("web/.tmp-1-dd"),
                root.join("web/bb")
            ]
        );
        assert!(root.join("web/aa").exists());
    }
}
