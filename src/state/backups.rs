//! Volume backups in the state dir: `backups/<stack>/<volume>/<UTC time>[-before-restore].tar.gz`,
//! folders 0700 and files 0600 (a volume may hold anything). A file is written under a temporary
//! name, synced, then renamed: a listed backup is always whole; a failed one leaves nothing.

use super::{StateDir, StateError};
use flate2::write::GzEncoder;
use serde::Serialize;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const SUFFIX: &str = ".tar.gz";
/// The copy `reconciler restore` takes of what it is about to replace.
pub const BEFORE_RESTORE: &str = "-before-restore";

/// One backup file, as `reconciler backups` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Backup {
    pub stack: String,
    pub volume: String,
    /// The file name without `.tar.gz`: what `reconciler restore` takes.
    pub name: String,
    /// RFC 3339, from the name.
    pub time: String,
    pub size: u64,
    pub file: PathBuf,
}

impl Backup {
    pub fn before_restore(&self) -> bool {
        self.name.ends_with(BEFORE_RESTORE)
    }
}

/// Free space a backup leaves on the state dir's filesystem: a volume as big as the disk (a
/// container controls what it holds) must not take the room state, journal and the next pass
/// need.
pub const BACKUP_RESERVE_BYTES: u64 = 64 * 1024 * 1024;
/// How much is written between two looks at the free space.
const CHECK_EVERY: u64 = 8 * 1024 * 1024;

/// A backup being written: gzip over a temporary file, removed unless [`finish`](Self::finish)ed.
pub struct BackupWriter {
    encoder: Option<GzEncoder<fs::File>>,
    tmp: PathBuf,
    path: PathBuf,
    reserve: u64,
    /// Bytes taken since the free space was last looked at; `None`: never looked.
    since_check: Option<u64>,
}

impl Write for BackupWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.since_check.is_none_or(|n| n >= CHECK_EVERY) {
            let free = super::free_bytes(&self.tmp)?;
            if free < self.reserve {
                return Err(std::io::Error::other(format!(
                    "the state dir's filesystem has {free} bytes free, less than the {} a backup leaves; the volume is bigger than the room for its backup: free space or back it up elsewhere",
                    self.reserve
                )));
            }
            self.since_check = Some(0);
        }
        self.since_check = self.since_check.map(|n| n + buf.len() as u64);
        self.encoder
            .as_mut()
            .expect("written before finish")
            .write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.encoder
            .as_mut()
            .expect("flushed before finish")
            .flush()
    }
}

impl BackupWriter {
    /// Complete the gzip, sync, and give the file its name. Returns it.
    pub fn finish(mut self) -> std::io::Result<PathBuf> {
        let file = self.encoder.take().expect("finished once").finish()?;
        file.sync_all()?;
        drop(file);
        fs::rename(&self.tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(self.path.clone())
    }
}

impl Drop for BackupWriter {
    fn drop(&mut self) {
        if self.encoder.is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl StateDir {
    pub fn backups_dir(&self) -> PathBuf {
        self.root.join("backups")
    }

    /// A new backup of `volume` (a key of the stack's `volumes:`), named by the time now.
    pub fn new_backup(
        &self,
        stack: &str,
        volume: &str,
        suffix: &str,
    ) -> Result<BackupWriter, StateError> {
        super::check_stack_name(stack)?;
        super::check_volume_key(volume)?;
        let dir = self.backups_dir().join(stack).join(volume);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(self.io(&dir))?;
        remove_unfinished(&dir);
        let name = format!("{}{suffix}", file_time(std::time::SystemTime::now()));
        let path = dir.join(format!("{name}{SUFFIX}"));
        let tmp = dir.join(format!(".{name}{SUFFIX}.tmp"));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(self.io(&tmp))?;
        Ok(BackupWriter {
            encoder: Some(GzEncoder::new(file, flate2::Compression::fast())),
            tmp,
            path,
            reserve: BACKUP_RESERVE_BYTES,
            since_check: None,
        })
    }

    /// Every backup, or one stack's, oldest first by stack and volume.
    pub fn backups(&self, stack: Option<&str>) -> Vec<Backup> {
        let mut found = Vec::new();
        for stack_dir in entries(&self.backups_dir()) {
            let stack_name = name_of(&stack_dir);
            if stack.is_some_and(|s| s != stack_name) {
                continue;
            }
            for volume_dir in entries(&stack_dir) {
                for file in entries(&volume_dir) {
                    let file_name = name_of(&file);
                    let Some(name) = file_name.strip_suffix(SUFFIX) else {
                        continue;
                    };
                    let Ok(meta) = fs::symlink_metadata(&file) else {
                        continue;
                    };
                    if name.starts_with('.') || !meta.is_file() {
                        continue;
                    }
                    found.push(Backup {
                        stack: stack_name.clone(),
                        volume: name_of(&volume_dir),
                        name: name.to_string(),
                        time: rfc3339_of(name),
                        size: meta.len(),
                        file: file.clone(),
                    });
                }
            }
        }
        found.sort_by(|a, b| (&a.stack, &a.volume, &a.name).cmp(&(&b.stack, &b.volume, &b.name)));
        found
    }

    /// The newest backup of each volume, by stack and volume: what `status` and `/status` show.
    pub fn last_backups(&self) -> Vec<Backup> {
        let mut newest: Vec<Backup> = Vec::new();
        for backup in self.backups(None) {
            match newest.last_mut() {
                // Names are times, so within a volume the list is oldest first.
                Some(last) if last.stack == backup.stack && last.volume == backup.volume => {
                    *last = backup
                }
                _ => newest.push(backup),
            }
        }
        newest
    }

    /// Delete the oldest backups of a volume taken before updates beyond the newest `keep`;
    /// copies taken before a restore are a person's and stay. Returns what was deleted.
    pub fn prune_backups(&self, stack: &str, volume: &str, keep: usize) -> Vec<PathBuf> {
        let mine: Vec<Backup> = self
            .backups(Some(stack))
            .into_iter()
            .filter(|b| b.volume == volume && !b.before_restore())
            .collect();
        let extra = mine.len().saturating_sub(keep);
        let mut deleted = Vec::new();
        for old in &mine[..extra] {
            match fs::remove_file(&old.file) {
                Ok(()) => deleted.push(old.file.clone()),
                Err(e) => tracing::warn!("cannot delete old backup {}: {e}", old.file.display()),
            }
        }
        deleted
    }
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    paths.sort();
    paths
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
}

/// `20261201T223901.123Z`: sorts as time does and holds no ':'.
fn file_time(at: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(at)
        .to_string()
        .replace(['-', ':'], "")
}

/// The RFC 3339 time a backup's name starts with.
fn rfc3339_of(name: &str) -> String {
    let t = name.strip_suffix(BEFORE_RESTORE).unwrap_or(name);
    if t.len() < 15 || !t.is_ascii() {
        return t.to_string();
    }
    format!(
        "{}-{}-{}T{}:{}:{}",
        &t[0..4],
        &t[4..6],
        &t[6..8],
        &t[9..11],
        &t[11..13],
        &t[13..]
    )
}

/// Temporary files of backups a killed process never finished: the stack's lock (held by the
/// pass or the restore writing a backup) says no one else writes in this folder now.
fn remove_unfinished(dir: &Path) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') && name.ends_with(&format!("{SUFFIX}.tmp")) {
            if let Err(e) = fs::remove_file(entry.path()) {
                tracing::warn!("cannot remove the unfinished backup {name}: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_backup_is_listed_private_and_a_dropped_one_leaves_nothing() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state_dir = StateDir::new(dir.path());
        let mut writer = state_dir.new_backup("shop", "data", "").unwrap();
        writer.write_all(b"tar bytes").unwrap();
        let path = writer.finish().unwrap();
        let dropped = state_dir.new_backup("shop", "data", "-x").unwrap();
        drop(dropped);
        let listed = state_dir.backups(None);
        assert_eq!(listed.len(), 1, "{listed:#?}");
        assert_eq!(listed[0].file, path);
        assert_eq!(
            (listed[0].stack.as_str(), listed[0].volume.as_str()),
            ("shop", "data")
        );
        assert!(listed[0].time.ends_with('Z') && listed[0].time.contains('T'));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(fs::File::open(&path).unwrap()),
            &mut text,
        )
        .unwrap();
        assert_eq!(text, "tar bytes");
    }

    #[test]
    fn a_volume_key_that_would_leave_the_backups_folder_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = StateDir::new(dir.path().join("state"));
        let outside = dir.path().join("outside");
        for key in [
            "../../../outside".to_string(),
            outside.display().to_string(),
            "..".to_string(),
            "a/b".to_string(),
        ] {
            let refused = state_dir.new_backup("shop", &key, "");
            assert!(
                matches!(refused, Err(StateError::BadName { .. })),
                "{key}: {:?}",
                refused.map(|_| ())
            );
        }
        assert!(state_dir.new_backup("..", "data", "").is_err());
        assert!(!outside.exists(), "a folder was made outside the state dir");
        assert!(!state_dir.backups_dir().exists());
    }

    #[test]
    fn a_backup_that_would_eat_the_state_dirs_last_free_space_stops_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = StateDir::new(dir.path());
        let mut writer = state_dir.new_backup("shop", "data", "").unwrap();
        // A disk with less free than the reserve, as a volume as big as the disk leaves it.
        writer.reserve = u64::MAX;
        let chunk = vec![0u8; 1024 * 1024];
        let failed = (0..32).find_map(|_| writer.write_all(&chunk).err());
        let error = failed.expect("the writer refuses to fill the disk");
        assert!(error.to_string().contains("bytes free"), "{error}");
        let folder = state_dir.backups_dir().join("shop").join("data");
        drop(writer);
        assert_eq!(fs::read_dir(&folder).unwrap().count(), 0);
    }

    #[test]
    fn pruning_keeps_the_newest_and_every_copy_taken_before_a_restore() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = StateDir::new(dir.path());
        let folder = state_dir.backups_dir().join("shop").join("data");
        fs::create_dir_all(&folder).unwrap();
        for name in [
            "20261201T100000.000Z",
            "20261201T110000.000Z",
            "20261201T113000.000Z-before-restore",
            "20261201T120000.000Z",
        ] {
            fs::write(folder.join(format!("{name}.tar.gz")), b"x").unwrap();
        }
        let deleted = state_dir.prune_backups("shop", "data", 1);
        assert_eq!(deleted.len(), 2);
        let left: Vec<String> = state_dir
            .backups(None)
            .into_iter()
            .map(|b| b.name)
            .collect();
        assert_eq!(
            left,
            vec![
                "20261201T113000.000Z-before-restore",
                "20261201T120000.000Z"
            ]
        );
    }

    #[test]
    fn the_last_backup_of_each_volume_is_its_newest_one() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = StateDir::new(dir.path());
        for (volume, name) in [
            ("data", "20261201T100000.000Z"),
            ("data", "20261201T120000.000Z"),
            ("logs", "20261201T110000.000Z"),
        ] {
            let folder = state_dir.backups_dir().join("shop").join(volume);
            fs::create_dir_all(&folder).unwrap();
            fs::write(folder.join(format!("{name}.tar.gz")), b"x").unwrap();
        }
        let last: Vec<(String, String)> = state_dir
            .last_backups()
            .into_iter()
            .map(|b| (b.volume, b.name))
            .collect();
        assert_eq!(
            last,
            [
                ("data".to_string(), "20261201T120000.000Z".to_string()),
                ("logs".to_string(), "20261201T110000.000Z".to_string())
            ]
        );
    }

    #[test]
    fn a_new_backup_removes_what_a_killed_process_left_unfinished() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = StateDir::new(dir.path());
        let folder = state_dir.backups_dir().join("shop").join("data");
        fs::create_dir_all(&folder).unwrap();
        let left = folder.join(".20261201T100000.000Z.tar.gz.tmp");
        fs::write(&left, b"half a tar").unwrap();
        let kept = folder.join("20261201T090000.000Z.tar.gz");
        fs::write(&kept, b"x").unwrap();
        let mut writer = state_dir.new_backup("shop", "data", "").unwrap();
        writer.write_all(b"tar").unwrap();
        writer.finish().unwrap();
        assert!(!left.exists());
        assert!(kept.exists());
        assert_eq!(state_dir.backups(None).len(), 2);
    }
}
