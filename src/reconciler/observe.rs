//! Look at the engine: one container listing per pass, and an inspect only for the containers
//! whose changes must be explained (drifted, or not created by us). What an inspect tells of a
//! container (its env, its image's env) never changes for that container id, so it is kept
//! across passes: an adopted, Compose-created stack costs inspects once, not on every pass.

use crate::desired::{Desired, PullPolicy};
use crate::engine::{Engine, EngineError};
use crate::observed::{Details, Observed, Role};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// [`Details`] by container id, for the containers seen in the last pass.
#[derive(Debug, Default)]
pub struct DetailsCache(Mutex<BTreeMap<String, Details>>);

/// Containers in state `removing` are on their way out (`docker rm -f`): not observed, so the
/// plan treats the service as missing and the executor waits for the name.
const GOING_AWAY: &str = "removing";

pub async fn observe<E: Engine>(
    engine: &E,
    desired: &Desired,
    cache: &DetailsCache,
) -> Result<Observed, EngineError> {
    let projects: Vec<String> = desired.stacks.iter().map(|s| s.name.clone()).collect();
    let mut containers = engine.list_containers(&projects).await?;
    containers.retain(|c| c.state != GOING_AWAY);
    let mut known = std::mem::take(&mut *cache.0.lock().expect("details cache"));
    let mut image_envs: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut kept = BTreeMap::new();
    for c in containers.iter_mut().filter(|c| c.role() == Role::Primary) {
        let Some(service) = desired
            .stacks
            .iter()
            .find(|s| s.name == c.project)
            .and_then(|s| s.services.get(&c.service))
        else {
            continue;
        };
        let in_sync = c.is_managed() && c.spec_hash() == Some(service.spec_hash().as_str());
        if in_sync {
            continue;
        }
        let details = match known.remove(&c.id) {
            Some(details) => details,
            None => inspect(engine, &c.id, &mut image_envs).await?,
        };
        kept.insert(c.id.clone(), details.clone());
        c.details = Some(details);
    }
    // Only what this pass saw is kept: the cache never outgrows the host's containers.
    *cache.0.lock().expect("details cache") = kept;
    let mut registry_digests = BTreeMap::new();
    for service in desired.stacks.iter().flat_map(|s| s.services.values()) {
        if service.pull_policy == PullPolicy::Always {
            // A registry that cannot be asked means "no news", not "moved": keep what runs.
            match engine.registry_digest(&service.spec.image).await {
                Ok(digest) => {
                    registry_digests.insert(service.spec.image.clone(), digest);
                }
                Err(e) => {
                    tracing::warn!("cannot check {} in its registry: {e}", service.spec.image)
                }
            }
        }
    }
    Ok(Observed {
        containers,
        registry_digests,
    })
}

async fn inspect<E: Engine>(
    engine: &E,
    id: &str,
    image_envs: &mut BTreeMap<String, BTreeMap<String, String>>,
) -> Result<Details, EngineError> {
    let status = engine.inspect_container(id).await?;
    // Services of a stack often share an image: ask once per image, not once per container.
    let image_env = match image_envs.get(&status.image_id) {
        Some(env) => env.clone(),
        None => {
            let env = engine
                .inspect_image(&status.image_id)
                .await?
                .map(|image| image.env)
                .unwrap_or_default();
            image_envs.insert(status.image_id.clone(), env.clone());
            env
        }
    };
    Ok(Details {
        env: status.env,
        image_env,
    })
}
