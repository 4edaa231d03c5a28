//! Housekeeping after a pass that changed something: remove the images the reconciler ran that
//! nothing needs any more ([`crate::image_retention`] decides), and say what went.

use crate::desired::Desired;
use crate::engine::{Engine, EngineError};
use crate::image_retention::{removable, Inputs};
use crate::state::{StateDir, StateError};
use std::collections::BTreeSet;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error("the engine cannot say which images its containers use ({0}), so none is removed")]
    InUse(#[source] EngineError),
    #[error("the engine cannot list its images ({0})")]
    List(#[source] EngineError),
    #[error(
        "the journal cannot be read ({0}), so it is not known which images the reconciler ran"
    )]
    Journal(#[source] StateError),
}

/// What the clean-up removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cleaned {
    /// Images deleted from disk.
    pub images: u64,
    /// Their sizes added up, as the engine lists them.
    pub bytes: u64,
}

/// Remove what [`removable`] allows, keeping `keep` good images per service. A removal the
/// engine refuses (a container started on it meanwhile, a conflict) is logged and skipped; at
/// shutdown the rest waits for the next pass.
pub(super) async fn clean_up_images<E: Engine>(
    engine: &E,
    state_dir: &StateDir,
    desired: &Desired,
    keep: usize,
    shutdown: &CancellationToken,
) -> Result<Cleaned, CleanupError> {
    let journal = state_dir.journal().map_err(CleanupError::Journal)?;
    // First: without every container's image nothing is known to be free.
    let in_use = engine.images_in_use().await.map_err(CleanupError::InUse)?;
    let images = engine.list_images().await.map_err(CleanupError::List)?;
    let wanted: BTreeSet<String> = desired
        .stacks
        .iter()
        .flat_map(|s| s.services.values())
        .map(|s| s.spec.image.clone())
        .collect();
    let removals = removable(&Inputs {
        journal: &journal,
        images: &images,
        in_use: &in_use,
        wanted: &wanted,
        keep,
    });
    let mut cleaned = Cleaned::default();
    for removal in removals {
        if shutdown.is_cancelled() {
            break;
        }
        let mut deleted = false;
        let mut untagged = Vec::new();
        for reference in &removal.references {
            match engine.remove_image(reference).await {
                Ok(done) => {
                    deleted |= !done.deleted.is_empty();
                    untagged.push(reference.as_str());
                }
                Err(e) => {
                    tracing::warn!("not removing old image {reference}: {e}; skipped");
                    break;
                }
            }
        }
        let short = short_id(&removal.image_id);
        if deleted {
            cleaned.images += 1;
            let size = removal.size.unwrap_or(0);
            cleaned.bytes += size;
            tracing::info!(
                "removed old image {} ({short}, {})",
                untagged.join(", "),
                megabytes(size)
            );
        } else if !untagged.is_empty() {
            tracing::info!(
                "untagged old image {} ({short}); another tag keeps the image",
                untagged.join(", ")
            );
        }
    }
    if cleaned.images > 0 {
        tracing::info!(
            "image clean-up: {} old image{} removed, {} at most freed (layers other images share stay)",
            cleaned.images,
            if cleaned.images == 1 { "" } else { "s" },
            megabytes(cleaned.bytes)
        );
    }
    Ok(cleaned)
}

fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.get(..12).unwrap_or(hex)
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

#[cfg(test)]
mod tests {
    use crate::config::ApplySettings;
    use crate::engine::fake::{compose_request, Behaviour, FakeEngine};
    use crate::engine::{Engine, EngineError};
    use crate::reconciler::{
        reconcile_once, DetailsCache, PassContext, PassReport, SourceSettings,
    };
    use crate::source::{FetchControl, SourceSpec};
    use crate::state::StateDir;
    use std::time::Duration;

    const V0: &str = "127.0.0.1:5000/web:v0";
    const V1: &str = "127.0.0.1:5000/web:v1";
    const V2: &str = "127.0.0.1:5000/web:v2";
    const V3: &str = "127.0.0.1:5000/web:v3";
    const OPERATORS: &str = "127.0.0.1:5000/web:operator";

    /// A repository of one stack, a state dir and the engine; passes as `apply` makes them.
    struct Host {
        engine: FakeEngine,
        repo: tempfile::TempDir,
        state: tempfile::TempDir,
        settings: ApplySettings,
    }

    impl Host {
        fn new() -> Self {
            let engine = FakeEngine::new();
            for image in [V0, V1, V2, V3, OPERATORS] {
                engine.publish(
                    image,
                    Behaviour::Healthy {
                        after: Duration::from_secs(1),
                    },
                );
            }
            Self {
                engine,
                repo: tempfile::tempdir().unwrap(),
                state: tempfile::tempdir().unwrap(),
                settings: ApplySettings {
                    dry_run: false,
                    prune: false,
                    min_free_disk: 0,
                    retry_failed: false,
                    self_heal: true,
                    parallel_stacks: 4,
                    parallel_services: 16,
                    keep_images: 2,
                },
            }
        }

        /// Commit `image` as the web service's image and run one pass.
        async fn release(&self, image: &str) -> PassReport {
            let dir = self.repo.path().join("shop");
            std::fs::create_dir_all(&dir).unwrap();
            let compose = format!(
                "services:\n  web:\n    image: {image}\n    volumes: [\"data:/data\"]\n    x-reconciler: {{health_timeout: 30s}}\nvolumes:\n  data: {{}}\n"
            );
            std::fs::write(dir.join("compose.yaml"), compose).unwrap();
            let source = SourceSettings {
                spec: SourceSpec::Directory(self.repo.path().to_path_buf()),
                branch: "main".into(),
                rev: None,
                path: None,
                stacks: vec![],
                credentials: Default::default(),
                allow_non_fast_forward: false,
                policy: Default::default(),
                adopt: vec![],
                fetch: FetchControl::default(),
            };
            let state_dir = StateDir::new(self.state.path());
            let ctx = PassContext {
                engine: &self.engine,
                source: &source,
                state_dir: &state_dir,
                settings: &self.settings,
                shutdown: Default::default(),
                details: DetailsCache::default(),
                warned: Default::default(),
                notifier: Default::default(),
            };
            let report = reconcile_once(&ctx, &|_| {}).await.unwrap();
            assert_eq!(report.failed().count(), 0, "{report:?}");
            report
        }

        fn has(&self, image: &str) -> bool {
            self.engine.local_images().iter().any(|i| i == image)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_fourth_release_only_the_image_before_the_last_two_goes_and_a_revert_needs_no_pull(
    ) {
        let host = Host::new();
        host.engine.preload(OPERATORS);
        host.release(V0).await;
        host.release(V1).await;
        // Someone's container, never started and no part of a stack, made from v0.
        let mut theirs = compose_request("elsewhere", "tool", "tool", V0);
        theirs.labels.clear();
        host.engine.create_container(&theirs).await.unwrap();
        let report = host.release(V2).await;
        assert_eq!(report.images_removed, 0, "v0 is in use, v1 is kept");
        let report = host.release(V3).await;
        assert_eq!(report.images_removed, 1);
        assert!(!host.has(V1), "{:?}", host.engine.local_images());
        for kept in [V0, V2, V3, OPERATORS] {
            assert!(
                host.has(kept),
                "{kept} gone: {:?}",
                host.engine.local_images()
            );
        }
        assert!(host.engine.container("tool").is_some());
        assert!(host.engine.volumes().contains_key("shop_data"));

        // The registry is down; going back to v2 uses the image kept for it.
        host.engine.fail_always(
            "pull",
            "",
            EngineError::RegistryUnreachable {
                reference: V2.into(),
                message: "connection refused".into(),
            },
        );
        host.engine.clear_calls();
        let report = host.release(V2).await;
        assert_eq!(report.changed().count(), 1);
        assert_eq!(host.engine.container("shop-web-1").unwrap().image, V2);
        assert!(!host.engine.calls().iter().any(|c| c.starts_with("pull ")));
        assert!(
            host.has(V3),
            "v3 is now the good one before the running one"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_image_goes_in_a_dry_run_with_keep_images_zero_or_when_containers_cannot_be_listed()
    {
        let mut host = Host::new();
        for image in [V0, V1, V2] {
            host.release(image).await;
        }
        assert!(!host.has(V0), "the clean-up runs at all");
        host.settings.keep_images = 0;
        host.release(V3).await;
        assert!(host.has(V1));

        host.settings.keep_images = 2;
        host.settings.dry_run = true;
        host.release(V0).await;
        assert!(host.has(V1));

        host.settings.dry_run = false;
        host.engine.fail_next(
            "images-in-use",
            "",
            EngineError::Unreachable {
                endpoint: "unix:///var/run/docker.sock".into(),
                message: "gone".into(),
            },
        );
        host.engine.clear_calls();
        let report = host.release(V0).await;
        assert_eq!(report.changed().count(), 1, "the pass itself succeeds");
        assert!(host.has(V1));
        assert!(!host
            .engine
            .calls()
            .iter()
            .any(|c| c.starts_with("remove-image")));
        assert!(!host
            .engine
            .calls()
            .iter()
            .any(|c| c.starts_with("list-local-images")));

        // An idle pass asks the engine about no image.
        host.engine.clear_calls();
        host.release(V0).await;
        assert!(!host
            .engine
            .calls()
            .iter()
            .any(|c| c.starts_with("images-in-use")));
        // The next change cleans up: v0 runs, v3 was good before it; v1 and v2 go.
        host.release(V3).await;
        assert!(
            !host.has(V1) && !host.has(V2),
            "{:?}",
            host.engine.local_images()
        );
    }
}
