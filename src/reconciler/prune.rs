//! Housekeeping after a pass: drop checkouts and revision folders nothing needs any more.

use crate::engine::Engine;
use crate::state::StateDir;

/// Remove the checkouts and revision folders nothing needs any more (see [`StateDir::prune`]).
/// Kept: what any container of these stacks was created from (running or not: a stopped one
/// still mounts its folder), what state names (last applied, last good, running), the commit
/// just read. When the engine cannot say which containers exist, nothing is pruned.
pub(super) async fn prune_state_dir<E: Engine>(
    engine: &E,
    state_dir: &StateDir,
    state: &crate::state::State,
    commit: Option<&str>,
) -> Result<(), crate::engine::EngineError> {
    let mut projects: std::collections::BTreeSet<String> =
        state_dir.stacks_with_files().into_iter().collect();
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
    let state_dir_root = state_dir.root().to_path_buf();
    let pruned = {
        let dir = StateDir::new(state_dir_root);
        tokio::task::spawn_blocking(move || dir.prune(&keep))
            .await
            .expect("prune task panicked")
    };
    for path in pruned.checkouts.iter().chain(&pruned.revisions) {
        tracing::debug!("pruned {}", path.display());
    }
    Ok(())
}
