use super::*;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

/// A stack folder (the repository's files) and a data folder, side by side.
struct Setup {
    tmp: tempfile::TempDir,
    applied: Applied,
}

impl Setup {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("repo")).unwrap();
        Self {
            tmp,
            applied: Applied::new(),
        }
    }

    fn repo(&self) -> PathBuf {
        self.tmp.path().join("repo")
    }

    fn data(&self) -> PathBuf {
        self.tmp.path().join("data/web")
    }

    /// Somewhere a planted link could lead: it must never be written.
    fn outside(&self) -> PathBuf {
        let dir = self.tmp.path().join("outside");
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn git_has(&self, rel: &str, text: &str) {
        let path = self.repo().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    /// What a container writes into the data folder.
    fn container_writes(&self, rel: &str, text: &str) {
        let path = self.data().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn write(&mut self, rel: &str) -> Vec<String> {
        write_tracked(&self.repo(), &self.data(), rel, &mut self.applied).unwrap()
    }

    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.data().join(rel)).unwrap()
    }

    fn leftovers(&self, rel: &str) -> Vec<String> {
        fs::read_dir(self.data().join(rel))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".reconciler-"))
            .collect()
    }
}

#[test]
fn tracked_files_follow_git_and_what_a_container_wrote_is_left_alone() {
    let mut s = Setup::new();
    s.git_has("data/conf/app.conf", "v1\n");
    assert!(s.write("data").is_empty());
    assert_eq!(s.read("data/conf/app.conf"), "v1\n");
    s.container_writes("data/db/table", "rows\n");
    s.container_writes("data/conf/cache", "warm\n");

    s.git_has("data/conf/app.conf", "v2\n");
    assert!(s.write("data").is_empty());
    assert_eq!(s.read("data/conf/app.conf"), "v2\n");
    assert_eq!(s.read("data/db/table"), "rows\n");
    assert_eq!(s.read("data/conf/cache"), "warm\n");
    assert!(s.leftovers("data/conf").is_empty());
}

#[test]
fn a_file_git_stopped_tracking_stays() {
    let mut s = Setup::new();
    s.git_has("data/old.conf", "x\n");
    s.write("data");
    fs::remove_file(s.repo().join("data/old.conf")).unwrap();
    s.git_has("data/new.conf", "y\n");
    s.write("data");
    assert_eq!(s.read("data/old.conf"), "x\n");
    assert_eq!(s.read("data/new.conf"), "y\n");
}

#[test]
fn a_tracked_file_a_container_changed_is_kept_until_git_changes_it() {
    let mut s = Setup::new();
    s.git_has("data/settings.json", "{}\n");
    s.write("data");
    s.container_writes("data/settings.json", "{\"theme\":\"dark\"}\n");
    // Another release of the service (an image bump): git did not change the file.
    s.write("data");
    assert_eq!(s.read("data/settings.json"), "{\"theme\":\"dark\"}\n");
    // Git changes it: the revision wins, as for every tracked file.
    s.git_has("data/settings.json", "{\"v\":2}\n");
    s.write("data");
    assert_eq!(s.read("data/settings.json"), "{\"v\":2}\n");
}

#[test]
fn data_moved_in_from_a_checkout_is_kept_where_it_differs_from_git() {
    let mut s = Setup::new();
    s.git_has("data/app.conf", "from git\n");
    s.container_writes("data/app.conf", "edited by the app\n");
    let notes = s.write("data");
    assert_eq!(s.read("data/app.conf"), "edited by the app\n");
    assert!(
        notes[0].contains("'data/app.conf' differs from git"),
        "{notes:?}"
    );
    s.git_has("data/app.conf", "changed in git\n");
    s.write("data");
    assert_eq!(s.read("data/app.conf"), "changed in git\n");
}

#[test]
fn a_link_planted_in_the_data_folder_is_never_followed() {
    let mut s = Setup::new();
    let outside = s.outside();
    fs::write(outside.join("app.conf"), "host file\n").unwrap();
    s.git_has("data/conf/app.conf", "v1\n");
    s.git_has("data/top.conf", "v1\n");
    s.write("data");
    // A container replaces a folder and a file by links to the host.
    fs::remove_dir_all(s.data().join("data/conf")).unwrap();
    symlink(&outside, s.data().join("data/conf")).unwrap();
    fs::remove_file(s.data().join("data/top.conf")).unwrap();
    symlink(outside.join("app.conf"), s.data().join("data/top.conf")).unwrap();
    s.git_has("data/conf/app.conf", "v2\n");
    s.git_has("data/conf/new.conf", "new\n");
    s.git_has("data/top.conf", "v2\n");

    let notes = s.write("data");
    assert_eq!(
        fs::read_to_string(outside.join("app.conf")).unwrap(),
        "host file\n"
    );
    assert!(!outside.join("new.conf").exists());
    assert!(
        notes
            .iter()
            .any(|n| n.contains("'data/conf' is a symlink in the data folder")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("'data/top.conf' is a symlink")),
        "{notes:?}"
    );
    // The links are reported and left, not replaced.
    assert!(fs::symlink_metadata(s.data().join("data/top.conf"))
        .unwrap()
        .is_symlink());
}

#[test]
fn a_link_planted_on_the_way_to_the_bound_folder_is_refused() {
    let mut s = Setup::new();
    let outside = s.outside();
    s.git_has("data/db/seed.sql", "x\n");
    fs::create_dir_all(s.data()).unwrap();
    symlink(&outside, s.data().join("data")).unwrap();
    let notes = s.write("data/db");
    assert!(notes[0].contains("'data' is a symlink"), "{notes:?}");
    assert!(!outside.join("db").exists());
    let refused = check_bind_source(&s.data(), "data/db", Expect::Folder).unwrap_err();
    assert!(refused.contains("'data' is a symlink"), "{refused}");
    assert!(!outside.join("db").exists());
    // The bound folder itself replaced by a link: refused too, never handed to the engine.
    let err = check_bind_source(&s.data(), "data", Expect::Folder).unwrap_err();
    assert!(err.contains("is a symlink"), "{err}");
}

#[test]
fn a_link_planted_at_the_temp_name_is_replaced_not_followed() {
    let mut s = Setup::new();
    let outside = s.outside();
    fs::write(outside.join("target"), "host file\n").unwrap();
    s.git_has("data/app.conf", "v1\n");
    s.write("data");
    symlink(
        outside.join("target"),
        s.data()
            .join("data")
            .join(temp_name(OsStr::new("app.conf"))),
    )
    .unwrap();
    s.git_has("data/app.conf", "v2\n");
    s.write("data");
    assert_eq!(s.read("data/app.conf"), "v2\n");
    assert_eq!(
        fs::read_to_string(outside.join("target")).unwrap(),
        "host file\n"
    );
}

#[test]
fn a_fifo_where_git_has_a_file_is_reported_and_never_opened() {
    let mut s = Setup::new();
    s.git_has("data/app.conf", "v1\n");
    fs::create_dir_all(s.data().join("data")).unwrap();
    let fifo = CString::new(s.data().join("data/app.conf").as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let notes = s.write("data");
    assert!(notes[0].contains("'data/app.conf' is a FIFO"), "{notes:?}");
}

#[test]
fn a_crash_mid_write_leaves_the_old_file_and_the_next_write_the_new_one() {
    let mut s = Setup::new();
    s.git_has("data/app.conf", "old\n");
    s.write("data");
    // A crash while the new content was being written leaves the temp file half done.
    let tmp = s
        .data()
        .join("data")
        .join(temp_name(OsStr::new("app.conf")));
    fs::write(&tmp, "ne").unwrap();
    assert_eq!(s.read("data/app.conf"), "old\n");

    s.git_has("data/app.conf", "new\n");
    s.write("data");
    assert_eq!(s.read("data/app.conf"), "new\n");
    assert!(!tmp.exists(), "the leftover temp file is cleared");
}

#[test]
fn a_source_git_does_not_have_becomes_an_empty_folder_once() {
    let mut s = Setup::new();
    assert!(s.write("data/db").is_empty());
    assert!(s.data().join("data/db").is_dir());
    s.container_writes("data/db/table", "rows\n");
    s.write("data/db");
    assert_eq!(s.read("data/db/table"), "rows\n");
    assert_eq!(
        check_bind_source(&s.data(), "data/db", Expect::Folder).unwrap(),
        s.data().join("data/db")
    );
}

#[test]
fn a_tracked_single_file_bind_is_written_and_checked_as_a_file() {
    let mut s = Setup::new();
    s.git_has("app.db", "seed\n");
    s.write("app.db");
    assert_eq!(s.read("app.db"), "seed\n");
    assert!(check_bind_source(&s.data(), "app.db", Expect::File).is_ok());
    assert_eq!(Expect::of(&s.repo(), "app.db"), Expect::File);
    let err = check_bind_source(&s.data(), "app.db", Expect::Folder).unwrap_err();
    assert!(err.contains("'app.db' is a file"), "{err}");
}

#[test]
fn a_tracked_link_is_written_as_a_link_and_modes_follow_git() {
    let mut s = Setup::new();
    s.git_has("data/v2/app.conf", "x\n");
    symlink("v2", s.repo().join("data/current")).unwrap();
    s.git_has("data/run.sh", "#!/bin/sh\n");
    fs::set_permissions(
        s.repo().join("data/run.sh"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    s.write("data");
    assert_eq!(
        fs::read_link(s.data().join("data/current")).unwrap(),
        Path::new("v2")
    );
    let mode = fs::metadata(s.data().join("data/run.sh")).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o755);
}

#[test]
fn a_replaced_file_keeps_the_owner_a_container_gave_it() {
    if unsafe { libc::geteuid() } != 0 {
        return; // only root can give a file away; the rest is covered above
    }
    let mut s = Setup::new();
    s.git_has("data/app.conf", "v1\n");
    s.write("data");
    std::os::unix::fs::chown(s.data().join("data/app.conf"), Some(999), Some(999)).unwrap();
    s.git_has("data/app.conf", "v2\n");
    s.write("data");
    let meta = fs::metadata(s.data().join("data/app.conf")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (999, 999));
}
