//! Housekeeping after a pass: drop checkouts, revision folders and secret files nothing needs
//! any more.

use crate::engine::Engine;
use crate::state::StateDir;

/// Remove the checkouts, revision folders and content files nothing needs any more (see
/// [`StateDir::prune`]). Kept: what any container of these stacks was created from or mounts
/// (running or not: a stopped one still mounts its folder and its secret files), what state
/// names (last applied, last good, running), the commit just read. When the engine cannot say
/// which containers exist, nothing is pruned.
pub(super) async fn prune_state_dir<E: Engine>(
    engine: &E,
    state_dir: &StateDir,
    state: &crate::state::State,
    commit: Option<&str>,
) -> Result<(), crate::engine::EngineError> {
    let mut projects: std::collections::BTreeSet<String> =
        state_dir.stacks_with_files().into_iter().collect();
    projects.extend(state_dir.stacks_with_content_files());
    projects.extend(state.stacks.keys().cloned());
    let projects: Vec<String> = projects.into_iter().collect();
    let containers = if projects.is_empty() {
        vec![]
    } else {
        engine.list_containers(&projects).await?
    };
    let mut keep = crate::state::Keep::default();
    let mut note = |stack: &str, revision: &str| {
        keep.revisions
            .entry(stack.to_string())
            .or_default()
            .insert(revision.to_string());
        keep.commits.insert(revision.to_string());
    };
    for c in &containers {
        if let Some(revision) = c.revision() {
            note(&c.project, revision);
        }
    }
    for (name, st) in &state.stacks {
        let running = st
            .services
            .values()
            .filter_map(|s| s.running_revision.as_deref());
        for revision in st
            .last_applied
            .iter()
            .chain(st.last_good.iter())
            .map(String::as_str)
            .chain(running)
        {
            note(name, revision);
        }
    }
    keep.commits.extend(commit.map(str::to_string));
    keep.commits.extend(state.source_commit.clone());
    // A secret's file stays while any container (running, stopped, a backup) mounts it.
    for c in &containers {
        keep.files
            .entry(c.project.clone())
            .or_default()
            .extend(c.content_files().map(str::to_string));
    }
    let state_dir_root = state_dir.root().to_path_buf();
    let pruned = {
        let dir = StateDir::new(state_dir_root);
        tokio::task::spawn_blocking(move || dir.prune(&keep))
            .await
            .expect("prune task panicked")
    };
    for path in pruned
        .checkouts
        .iter()
        .chain(&pruned.revisions)
        .chain(&pruned.files)
    {
        tracing::debug!("pruned {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fake::{compose_request, Behaviour, FakeEngine};
    use crate::state::content_files::FileAttributes;

    #[tokio::test]
    async fn a_content_file_is_kept_while_any_container_mounts_it_and_removed_after() {
        let tmp = tempfile::tempdir().unwrap();
        let state_dir = StateDir::new(tmp.path());
        let attributes = FileAttributes {
            mode: 0o444,
            uid: None,
            gid: None,
        };
        for name in ["aa11", "bb22", "cc33"] {
            state_dir
                .write_content_file("shop", name, b"x", attributes)
                .unwrap();
        }
        let engine = FakeEngine::new();
        engine.publish(
            "web:v1",
            Behaviour::Healthy {
                after: std::time::Duration::ZERO,
            },
        );
        engine.pull("web:v1", None, &mut |_| {}).await.unwrap();
        for (name, files) in [
            ("shop-web-1", "aa11"),
            ("shop-web-1-reconciler-old", "bb22"),
        ] {
            let mut request = compose_request("shop", "web", name, "web:v1");
            request
                .labels
                .insert(crate::labels::FILES.to_string(), files.to_string());
            // Created, never started: a stopped container still mounts its files.
            engine.create_container(&request).await.unwrap();
        }
        prune_state_dir(&engine, &state_dir, &crate::state::State::default(), None)
            .await
            .unwrap();
        let dir = state_dir.content_files_dir("shop");
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        left.sort();
        assert_eq!(left, ["aa11", "bb22"]);
    }
}
