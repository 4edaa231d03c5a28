//! What a stack needs before its services: networks, volumes, the repository files that
//! relative binds mount (written once per revision without following any link), the files
//! of secrets and configs given by content, and the writer of the files git tracks in the
//! stack's data folder, where writable relative binds point.

use super::data_folder;
use super::{ExecError, Executor};
use crate::desired::{Service, Stack};
use crate::engine::Engine;
use crate::plan::{Action, ServicePlan};
use crate::state::content_files::FileAttributes;
use std::collections::BTreeSet;
use std::path::Path;

impl<E: Engine> Executor<'_, E> {
    /// Networks, volumes and the repository files that services mount. Returns the names of
    /// the networks it created.
    pub(super) async fn prepare_stack(
        &self,
        stack: &Stack,
        work: &[&ServicePlan],
    ) -> Result<Vec<String>, ExecError> {
        let services: Vec<&Service> = work
            .iter()
            .filter(|sp| sp.action != Action::Remove)
            .filter_map(|sp| stack.services.get(&sp.service))
            .collect();
        let mut networks = BTreeSet::new();
        let mut volumes = BTreeSet::new();
        for s in &services {
            if s.spec.network_mode.is_none() {
                networks.extend(s.spec.networks.keys().cloned());
            }
            volumes.extend(
                s.spec
                    .mounts
                    .iter()
                    .filter(|m| m.kind == crate::desired::MountKind::Volume)
                    .filter_map(|m| m.source.clone()),
            );
        }
        let mut created = Vec::new();
        for key in networks {
            let def = &stack.networks[&key];
            if self.engine.ensure_network(&stack.name, &key, def).await? {
                created.push(def.name.clone());
            }
        }
        for key in volumes {
            self.engine
                .ensure_volume(&stack.name, &key, &stack.volumes[&key])
                .await?;
        }
        if services.iter().any(|s| !s.repo_binds.is_empty()) {
            let target = self.state_dir.stack_files_dir(&stack.name, &stack.revision);
            // What was written is recorded, so pruning can tell it from data a container wrote.
            let record = |written: &std::path::Path| {
                self.state_dir
                    .record_stack_files(&stack.name, &stack.revision, written)
                    .map_err(|e| e.to_string())
            };
            write_out_stack(&stack.dir, &target, record).map_err(|message| {
                ExecError::StackFiles {
                    stack: stack.name.clone(),
                    message,
                }
            })?;
        }
        for service in &services {
            self.write_content_files(stack, service)?;
        }
        Ok(created)
    }

    /// The secrets and configs given by content, as the files the service's container binds.
    fn write_content_files(&self, stack: &Stack, service: &Service) -> Result<(), ExecError> {
        for (kind, file) in service.spec.file_mounts() {
            let (Some(name), Some(content)) =
                (file.content_file_name(&service.label_key), file.content())
            else {
                continue;
            };
            let attributes = FileAttributes {
                mode: file.file_mode(),
                uid: file.uid,
                gid: file.gid,
            };
            self.state_dir
                .write_content_file(&stack.name, &name, content, attributes)
                .map_err(|e| ExecError::StackFiles {
                    stack: stack.name.clone(),
                    message: format!(
                        "{} '{}' of service {}: {e}",
                        kind.noun(),
                        file.source,
                        service.name
                    ),
                })?;
        }
        Ok(())
    }

    /// Write what the stack folder `source` (of any revision) has at `rels` into the stack's
    /// data folder ([`data_folder::write_tracked`]); what was left alone is logged. One writer
    /// at a time: services of a stack may put their old revision's files back side by side.
    pub(super) fn write_data_folder(
        &self,
        stack: &str,
        source: &Path,
        rels: &BTreeSet<&str>,
    ) -> Result<(), String> {
        if rels.is_empty() {
            return Ok(());
        }
        let _writing = self.data_writer.lock().unwrap_or_else(|p| p.into_inner());
        let root = self.state_dir.data_dir(stack);
        let mut applied = self.state_dir.load_applied(stack);
        let mut written = Ok(());
        for rel in rels {
            match data_folder::write_tracked(source, &root, rel, &mut applied) {
                Ok(notes) => {
                    for note in notes {
                        tracing::warn!(stack = %stack, "data folder {}: {note}", root.display());
                    }
                }
                Err(e) => {
                    written = Err(e);
                    break;
                }
            }
        }
        // What was written is recorded even when a later path failed.
        self.state_dir
            .save_applied(stack, &applied)
            .map_err(|e| e.to_string())?;
        written
    }
}

/// The repository paths of a service's binds that point to the stack's data folder.
pub(super) fn data_binds(service: &Service) -> impl Iterator<Item = &str> {
    service
        .spec
        .mounts
        .iter()
        .filter(|m| m.in_data_folder())
        .filter_map(|m| m.repo_relative.as_deref())
}

/// Copy the stack folder to where relative binds point, once per revision. Written to a temp
/// folder and renamed, so a crash never leaves a half-written revision; removed on failure.
/// `record` sees the complete folder before it is put in place.
fn write_out_stack(
    source: &std::path::Path,
    target: &std::path::Path,
    record: impl FnOnce(&std::path::Path) -> Result<(), String>,
) -> Result<(), String> {
    if target.exists() {
        return Ok(());
    }
    let parent = target.parent().ok_or("state dir has no parent")?;
    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    let tmp = parent.join(format!(".tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let copied = copy_tree(source, &tmp, std::path::Path::new(""))
        .and_then(|()| links_stay_inside(&tmp))
        .map_err(|e| format!("{}: {e}", source.display()))
        .and_then(|()| record(&tmp))
        .and_then(|()| std::fs::rename(&tmp, target).map_err(|e| e.to_string()));
    if copied.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    copied
}

/// Copy a folder without following any link: folders and regular files are copied, links are
/// recreated as links (never followed, so neither a loop nor a link out makes us read anything),
/// anything else is refused. Links are kept rather than refused because in-folder links are
/// legitimate (`current -> v2`); [`links_stay_inside`] then checks where they lead in the copy,
/// since Docker resolves a bind source's links on the host. The loader refused all of this
/// already: this is the second lock.
fn copy_tree(
    from: &std::path::Path,
    to: &std::path::Path,
    rel: &std::path::Path,
) -> Result<(), String> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let fail =
        |rel: &std::path::Path, e: &dyn std::fmt::Display| format!("'{}': {e}", rel.display());
    std::fs::create_dir(to).map_err(|e| fail(rel, &e))?;
    for entry in std::fs::read_dir(from).map_err(|e| fail(rel, &e))? {
        let entry = entry.map_err(|e| fail(rel, &e))?;
        let path = entry.path();
        let dest = to.join(entry.file_name());
        let rel = rel.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&path).map_err(|e| fail(&rel, &e))?;
        if meta.is_dir() {
            copy_tree(&path, &dest, &rel)?;
        } else if meta.is_symlink() {
            let target = std::fs::read_link(&path).map_err(|e| fail(&rel, &e))?;
            if target.is_absolute() {
                return Err(fail(&rel, &"a symlink to an absolute path"));
            }
            std::os::unix::fs::symlink(&target, &dest).map_err(|e| fail(&rel, &e))?;
        } else if meta.is_file() {
            // O_NONBLOCK: a FIFO swapped in since the check answers at once, and is refused.
            let mut input = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(&path)
                .map_err(|e| fail(&rel, &e))?;
            if !input.metadata().is_ok_and(|m| m.is_file()) {
                return Err(fail(&rel, &"not a regular file"));
            }
            let mut output = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .mode(meta.permissions().mode() & 0o777)
                .open(&dest)
                .map_err(|e| fail(&rel, &e))?;
            std::io::copy(&mut input, &mut output).map_err(|e| fail(&rel, &e))?;
        } else {
            return Err(fail(&rel, &"not a regular file, folder or symlink"));
        }
    }
    Ok(())
}

/// Every link in the copy leads to something inside it (checked where it is, after the copy).
fn links_stay_inside(root: &std::path::Path) -> Result<(), String> {
    let root = root.canonicalize().map_err(|e| e.to_string())?;
    let mut pending = vec![root.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| e.to_string())? {
            let path = entry.map_err(|e| e.to_string())?.path();
            let meta = std::fs::symlink_metadata(&path).map_err(|e| e.to_string())?;
            if meta.is_dir() {
                pending.push(path);
            } else if meta.is_symlink()
                && !path
                    .canonicalize()
                    .is_ok_and(|real| real.starts_with(&root))
            {
                let rel = path.strip_prefix(&root).unwrap_or(&path);
                return Err(format!(
                    "'{}': a symlink that leaves the stack folder or leads nowhere",
                    rel.display()
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod write_out_tests {
    use super::write_out_stack;
    use std::os::unix::fs::symlink;

    #[test]
    fn in_folder_links_are_kept_as_links_and_nothing_is_followed_out() {
        let tmp = tempfile::tempdir().unwrap();
        let stack = tmp.path().join("web");
        std::fs::create_dir_all(stack.join("conf/v2")).unwrap();
        std::fs::write(stack.join("conf/v2/app.conf"), "x").unwrap();
        symlink("v2", stack.join("conf/current")).unwrap();
        symlink(".", stack.join("conf/loop")).unwrap();
        let target = tmp.path().join("files/rev1");
        write_out_stack(&stack, &target, |_| Ok(())).unwrap();
        assert_eq!(
            std::fs::read_link(target.join("conf/current")).unwrap(),
            std::path::Path::new("v2")
        );
        assert_eq!(
            std::fs::read(target.join("conf/current/app.conf")).unwrap(),
            b"x"
        );
    }

    #[test]
    fn a_link_out_a_dangling_link_or_a_fifo_is_refused_and_leaves_no_copy() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("secret"), "host-only").unwrap();
        for (name, make) in [
            (
                "abs",
                (|p: &std::path::Path| symlink("/etc/hostname", p))
                    as fn(&std::path::Path) -> std::io::Result<()>,
            ),
            ("up", |p: &std::path::Path| symlink("../../secret", p)),
            ("dangling", |p: &std::path::Path| symlink("missing", p)),
            ("pipe", |p: &std::path::Path| {
                use std::os::unix::ffi::OsStrExt;
                let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
                Ok(())
            }),
        ] {
            let stack = tmp.path().join(format!("stack-{name}"));
            std::fs::create_dir_all(stack.join("conf")).unwrap();
            make(&stack.join("conf").join(name)).unwrap();
            let files = tmp.path().join(format!("files-{name}"));
            let err = write_out_stack(&stack, &files.join("rev"), |_| Ok(())).unwrap_err();
            assert!(err.contains(&format!("conf/{name}")), "{name}: {err}");
            let left: Vec<_> = std::fs::read_dir(&files).unwrap().flatten().collect();
            assert!(left.is_empty(), "{name}: {left:?}");
        }
    }
}
