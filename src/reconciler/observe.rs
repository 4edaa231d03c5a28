//! Look at the engine: one container listing per pass, and an inspect only for the containers
//! whose changes must be explained (drifted, or not created by us). What an inspect tells of a
//! container (its env, its image's env) never changes for that container id, so it is kept
//! across passes: an adopted, Compose-created stack costs inspects once, not on every pass.

use crate::desired::{Desired, PullPolicy};
use crate::engine::{Engine, EngineError};
use crate::observed::{network_drift, volume_drift, Details, Observed, ResourceDrift, Role};
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
        resources: observe_resources(engine, desired).await?,
    })
}

/// Each stack's networks and volumes in use that exist with another definition than its file
/// gives: one inspect each. A missing one is no drift: it is made when a service needs it.
async fn observe_resources<E: Engine>(
    engine: &E,
    desired: &Desired,
) -> Result<BTreeMap<String, Vec<ResourceDrift>>, EngineError> {
    let mut out = BTreeMap::new();
    for stack in &desired.stacks {
        let mut drifts = Vec::new();
        for key in stack.networks_in_use() {
            let Some(def) = stack.networks.get(key).filter(|d| !d.external) else {
                continue;
            };
            if let Some(found) = engine.inspect_network(&def.name).await? {
                drifts.extend(network_drift(&stack.name, key, def, &found));
            }
        }
        for key in stack.volumes_in_use() {
            let Some(def) = stack.volumes.get(key).filter(|d| !d.external) else {
                continue;
            };
            if let Some(found) = engine.inspect_volume(&def.name).await? {
                drifts.extend(volume_drift(&stack.name, key, def, &found));
            }
        }
        if !drifts.is_empty() {
            out.insert(stack.name.clone(), drifts);
        }
    }
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fake::{compose_request, Behaviour, FakeEngine};

    /// A container Compose created (its labels, not ours), as an adopted stack has.
    async fn compose_created(engine: &FakeEngine, project: &str, service: &str) -> String {
        let image = "127.0.0.1:5000/web:v1";
        engine.publish(image, Behaviour::NoHealthcheck);
        engine.preload(image);
        let id = engine
            .create_container(&compose_request(
                project,
                service,
                &format!("{project}-{service}-1"),
                image,
            ))
            .await
            .unwrap();
        engine.start_container(&id).await.unwrap();
        id
    }

    fn desired(project: &str) -> Desired {
        let repo = tempfile::tempdir().unwrap();
        let dir = repo.path().join(project);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("compose.yaml"),
            "services:\n  web:\n    image: 127.0.0.1:5000/web:v1\n",
        )
        .unwrap();
        let options = crate::desired::load::LoadOptions {
            stacks: vec![],
            host_env_dir: None,
            policy: Default::default(),
            revision: None,
            repo_root: Some(repo.path().to_path_buf()),
        };
        crate::desired::load::load(repo.path(), &options).unwrap()
    }

    fn inspects(engine: &FakeEngine) -> usize {
        engine
            .calls()
            .iter()
            .filter(|c| c.starts_with("inspect "))
            .count()
    }

    #[tokio::test]
    async fn an_adopted_container_is_inspected_once_not_on_every_pass() {
        let engine = FakeEngine::new();
        let id = compose_created(&engine, "shop", "web").await;
        let desired = desired("shop");
        let cache = DetailsCache::default();
        engine.clear_calls();

        let first = observe(&engine, &desired, &cache).await.unwrap();
        let after_first = inspects(&engine);
        let second = observe(&engine, &desired, &cache).await.unwrap();

        assert_eq!(after_first, 1, "{:?}", engine.calls());
        assert_eq!(inspects(&engine), 1, "the second pass asked again");
        let details = |o: &Observed| o.primary("shop", "web").unwrap().details.clone();
        assert!(details(&first).is_some());
        assert_eq!(details(&first).unwrap().env, details(&second).unwrap().env);
        // A new container under the same name is a new id: asked about again.
        engine.remove_container(&id).await.unwrap();
        compose_created(&engine, "shop", "web").await;
        observe(&engine, &desired, &cache).await.unwrap();
        assert_eq!(inspects(&engine), 2);
    }
}
