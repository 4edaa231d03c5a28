//! The Docker Engine through bollard. Thin: translate our types to API calls and API errors to
//! [`EngineError`]; every decision lives in the planner and executor.

mod archive;
mod runtime_options;

use super::{
    ContainerStatus, CreateRequest, Engine, EngineError, FreeDisk, HolderRequest, ImageInfo,
    ImageRemoval, LocalImage, OneOffContainer, PullProgress, Result,
};
use crate::desired::{
    FileMount, FileSource, IpamPool, MountKind, MountSpec, NetworkDef, VolumeDef,
};
use crate::labels;
use crate::observed::{
    health_from_status, Health, ObservedContainer, ObservedNetwork, ObservedVolume,
};
use bollard::errors::Error as BollardError;
use bollard::models::MountBindOptions;
use bollard::models::{
    ContainerCreateBody, DeviceMapping, EndpointIpamConfig, EndpointSettings, HealthConfig,
    HostConfig, HostConfigLogConfig, Ipam, IpamConfig, Mount, MountTmpfsOptions, MountType,
    MountVolumeOptions, NetworkConnectRequest, NetworkCreateRequest, NetworkingConfig, PortBinding,
    RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, ListImagesOptions,
    LogsOptions, RemoveContainerOptions, RemoveImageOptions, RenameContainerOptions,
    StopContainerOptions,
};
use bollard::{ClientVersion, Docker};
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// API 1.41 (Engine 20.10) is the oldest we support; newer engines accept it too.
const API_VERSION: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};

pub struct DockerEngine {
    docker: Docker,
    endpoint: String,
}

impl DockerEngine {
    /// Connect to `host` (`unix:///path` or `tcp://host:port`), or the local default socket.
    pub fn connect(host: Option<&str>) -> Result<Self> {
        let endpoint = host.unwrap_or("unix:///var/run/docker.sock").to_string();
        let unreachable = |e: BollardError| EngineError::Unreachable {
            endpoint: endpoint.clone(),
            message: e.to_string(),
        };
        let docker = if let Some(path) = endpoint.strip_prefix("unix://") {
            Docker::connect_with_unix(path, 120, &API_VERSION).map_err(unreachable)?
        } else if endpoint.starts_with("tcp://") || endpoint.starts_with("http://") {
            Docker::connect_with_http(&endpoint, 120, &API_VERSION).map_err(unreachable)?
        } else {
            return Err(EngineError::Unreachable {
                endpoint,
                message: "unsupported DOCKER_HOST scheme (use unix:// or tcp://)".into(),
            });
        };
        Ok(Self { docker, endpoint })
    }

    /// Every container, in any state, that the engine's list filter `key` matches with `value`
    /// (`label` with `key` or `key=value`, `network` with a network's name).
    async fn containers_where(
        &self,
        key: &str,
        value: String,
    ) -> Result<Vec<bollard::models::ContainerSummary>> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(key.to_string(), vec![value])])),
            ..Default::default()
        };
        self.docker
            .list_containers(Some(options))
            .await
            .map_err(|e| self.error("list containers", "", e))
    }

    /// Call `on_event(project)` whenever a Compose-labelled container stops, dies or is removed, so a
    /// hand-made change is healed at once rather than at the next interval. Reconnects (every
    /// 5 s) when the engine goes away; runs until the runtime stops.
    pub fn watch_container_events(&self, on_event: impl Fn(&str) + Send + 'static) {
        let docker = self.docker.clone();
        tokio::spawn(async move {
            loop {
                let filters = HashMap::from([
                    ("type".to_string(), vec!["container".to_string()]),
                    ("label".to_string(), vec![labels::PROJECT.to_string()]),
                    (
                        "event".to_string(),
                        ["die", "stop", "destroy", "kill"]
                            .map(String::from)
                            .to_vec(),
                    ),
                ]);
                let options = bollard::query_parameters::EventsOptions {
                    filters: Some(filters),
                    ..Default::default()
                };
                let mut events = docker.events(Some(options));
                while let Some(Ok(event)) = events.next().await {
                    let project = event
                        .actor
                        .and_then(|a| a.attributes)
                        .and_then(|mut a| a.remove(labels::PROJECT))
                        .unwrap_or_default();
                    on_event(&project);
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        });
    }

    fn error(&self, call: &'static str, target: &str, e: BollardError) -> EngineError {
        match &e {
            // Removed meanwhile, or being removed (`docker rm -f` by hand): an ordinary case
            // the next pass settles, not a broken release.
            BollardError::DockerResponseServerError {
                status_code,
                message,
            } if CALLS_ON_A_CONTAINER.contains(&call)
                && ((*status_code == 404 && is_no_such_container(message))
                    || is_removal_in_progress(message)) =>
            {
                EngineError::Gone {
                    call,
                    target: target.to_string(),
                    message: message.clone(),
                }
            }
            BollardError::DockerResponseServerError { message, .. } => EngineError::Call {
                call,
                target: target.to_string(),
                message: message.clone(),
            },
            // A refused or failed connection (`tcp://` to nothing) comes as the client's error.
            BollardError::HyperResponseError { .. }
            | BollardError::HyperLegacyError { .. }
            | BollardError::SocketNotFoundError(_)
            | BollardError::IOError { .. }
            | BollardError::RequestTimeoutError => EngineError::Unreachable {
                endpoint: self.endpoint.clone(),
                message: e.to_string(),
            },
            _ => EngineError::Call {
                call,
                target: target.to_string(),
                message: e.to_string(),
            },
        }
    }

    fn pull_error(&self, reference: &str, e: BollardError) -> EngineError {
        let message = match &e {
            BollardError::DockerResponseServerError { message, .. } => message.clone(),
            BollardError::DockerStreamError { error } => error.clone(),
            _ => return self.error("pull", reference, e),
        };
        let lower = message.to_ascii_lowercase();
        let reference = reference.to_string();
        if lower.contains("not found") || lower.contains("manifest unknown") {
            EngineError::ImageNotFound { reference, message }
        } else if lower.contains("unauthorized") || lower.contains("denied") {
            EngineError::Unauthorized { reference, message }
        } else {
            // Connection refused, timeouts, DNS: the registry may come back.
            EngineError::RegistryUnreachable { reference, message }
        }
    }
}

/// Calls on an existing container: a 404 there means the container went away. (A 404 from
/// create means a missing image or network: a broken release, not a vanished container.)
const CALLS_ON_A_CONTAINER: &[&str] = &[
    "inspect container",
    "start container",
    "stop container",
    "rename container",
    "remove container",
];

/// A 404 can also name a missing network or image (starting a container whose network was
/// removed): only a missing container is "gone".
fn is_no_such_container(message: &str) -> bool {
    message.to_ascii_lowercase().contains("no such container")
}

fn is_removal_in_progress(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("removal of container") || lower.contains("marked for removal")
}

fn is_not_found(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn env_map(env: Option<Vec<String>>) -> BTreeMap<String, String> {
    env.unwrap_or_default()
        .into_iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv, String::new()),
        })
        .collect()
}

fn nanos(ms: Option<u64>) -> Option<i64> {
    ms.map(|ms| ms as i64 * 1_000_000)
}

impl Engine for DockerEngine {
    async fn list_containers(&self, projects: &[String]) -> Result<Vec<ObservedContainer>> {
        if projects.is_empty() {
            return Ok(Vec::new());
        }
        let label_filter = if projects.len() == 1 {
            format!("{}={}", labels::PROJECT, projects[0])
        } else {
            labels::PROJECT.to_string()
        };
        let summaries = self.containers_where("label", label_filter).await?;
        let mut out = Vec::new();
        for s in summaries {
            let labels: BTreeMap<String, String> =
                s.labels.unwrap_or_default().into_iter().collect();
            let project = labels.get(labels::PROJECT).cloned().unwrap_or_default();
            if !projects.contains(&project) {
                continue;
            }
            // One-off containers (`docker compose run`) are not the service.
            if labels
                .get(labels::ONEOFF)
                .is_some_and(|v| v.eq_ignore_ascii_case("true"))
            {
                continue;
            }
            let name = first_name(s.names);
            out.push(ObservedContainer {
                id: s.id.unwrap_or_default(),
                service: labels.get(labels::SERVICE).cloned().unwrap_or_default(),
                project,
                name,
                image: s.image.unwrap_or_default(),
                state: s.state.map(|st| st.to_string()).unwrap_or_default(),
                health: health_from_status(s.status.as_deref().unwrap_or_default()),
                labels,
                details: None,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn list_oneoffs(&self, projects: &[String]) -> Result<Vec<OneOffContainer>> {
        if projects.is_empty() {
            return Ok(Vec::new());
        }
        let summaries = self
            .containers_where("label", labels::ONEOFF_ROLE.to_string())
            .await?;
        let mut out: Vec<OneOffContainer> = summaries
            .into_iter()
            .filter_map(|s| {
                let labels = s.labels.unwrap_or_default();
                // A container inherits its image's labels, `reconciler.oneoff` too; ours that
                // are no one-offs say `oneoff=False` explicitly, which the image cannot change.
                if !labels
                    .get(labels::ONEOFF)
                    .is_some_and(|v| v.eq_ignore_ascii_case("true"))
                {
                    return None;
                }
                let project = labels.get(labels::PROJECT)?.clone();
                projects.contains(&project).then(|| OneOffContainer {
                    id: s.id.unwrap_or_default(),
                    name: first_name(s.names),
                    project,
                    service: labels.get(labels::SERVICE).cloned().unwrap_or_default(),
                    role: labels.get(labels::ONEOFF_ROLE).cloned().unwrap_or_default(),
                    running: s.state.is_some_and(|st| st.to_string() == "running"),
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn inspect_container(&self, id: &str) -> Result<ContainerStatus> {
        let c = self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(|e| self.error("inspect container", id, e))?;
        let state = c.state.unwrap_or_default();
        Ok(ContainerStatus {
            running: state.running.unwrap_or(false),
            state: state.status.map(|s| s.to_string()).unwrap_or_default(),
            health: Health::from_engine(
                state
                    .health
                    .and_then(|h| h.status)
                    .map(|s| s.to_string())
                    .as_deref(),
            ),
            exit_code: state.exit_code.unwrap_or(0),
            oom_killed: state.oom_killed.unwrap_or(false),
            restart_count: c.restart_count.unwrap_or(0),
            started_at: state.started_at.unwrap_or_default(),
            env: env_map(c.config.and_then(|c| c.env)),
            image_id: c.image.unwrap_or_default(),
        })
    }

    async fn list_image_references(&self) -> Result<Vec<String>> {
        let images = self
            .docker
            .list_images(Some(ListImagesOptions::default()))
            .await
            .map_err(|e| self.error("list images", "", e))?;
        Ok(images
            .into_iter()
            .flat_map(|i| i.repo_tags.into_iter().chain(i.repo_digests))
            .filter(|r| r != "<none>:<none>" && r != "<none>@<none>")
            .collect())
    }

    async fn inspect_image(&self, reference: &str) -> Result<Option<ImageInfo>> {
        match self.docker.inspect_image(reference).await {
            Ok(i) => Ok(Some(ImageInfo {
                id: i.id.unwrap_or_default(),
                repo_digests: i.repo_digests.unwrap_or_default(),
                env: env_map(i.config.and_then(|c| c.env)),
            })),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.error("inspect image", reference, e)),
        }
    }

    async fn list_images(&self) -> Result<Vec<LocalImage>> {
        let images = self
            .docker
            .list_images(Some(ListImagesOptions::default()))
            .await
            .map_err(|e| self.error("list images", "", e))?;
        Ok(images
            .into_iter()
            .map(|i| LocalImage {
                id: i.id,
                references: i
                    .repo_tags
                    .into_iter()
                    .chain(i.repo_digests)
                    .filter(|r| r != "<none>:<none>" && r != "<none>@<none>")
                    .collect(),
                size: u64::try_from(i.size).ok(),
            })
            .collect())
    }

    async fn images_in_use(&self) -> Result<std::collections::BTreeSet<String>> {
        // Every container, with no filter: an operator's stopped container counts as much as ours.
        let options = ListContainersOptions {
            all: true,
            ..Default::default()
        };
        let summaries = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| self.error("list containers", "", e))?;
        Ok(summaries
            .into_iter()
            .flat_map(|s| [s.image_id, s.image])
            .flatten()
            .filter(|i| !i.is_empty())
            .collect())
    }

    async fn remove_image(&self, reference: &str) -> Result<ImageRemoval> {
        // Not forced: the engine itself refuses an image a container uses. `noprune`: only what
        // is named goes, never an untagged parent.
        let options = RemoveImageOptions {
            force: false,
            noprune: true,
            ..Default::default()
        };
        match self
            .docker
            .remove_image(reference, Some(options), None)
            .await
        {
            Ok(items) => Ok(ImageRemoval {
                untagged: items.iter().filter_map(|i| i.untagged.clone()).collect(),
                deleted: items.into_iter().filter_map(|i| i.deleted).collect(),
            }),
            Err(e) if is_not_found(&e) => Ok(ImageRemoval::default()),
            Err(e) => Err(self.error("remove image", reference, e)),
        }
    }

    async fn registry_digest(&self, reference: &str) -> Result<String> {
        let info = self
            .docker
            .inspect_registry_image(reference, None)
            .await
            .map_err(|e| self.pull_error(reference, e))?;
        Ok(info.descriptor.digest.unwrap_or_default())
    }

    async fn pull(
        &self,
        reference: &str,
        platform: Option<&str>,
        progress: &mut (dyn FnMut(PullProgress) + Send),
    ) -> Result<()> {
        let options = CreateImageOptions {
            from_image: Some(reference.to_string()),
            platform: platform.unwrap_or_default().to_string(),
            ..Default::default()
        };
        let mut stream = self.docker.create_image(Some(options), None, None);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| self.pull_error(reference, e))?;
            let detail = info.progress_detail.unwrap_or_default();
            progress(PullProgress {
                layer: info.id,
                status: info.status.unwrap_or_default(),
                current: detail.current,
                total: detail.total,
            });
        }
        Ok(())
    }

    async fn inspect_network(&self, name: &str) -> Result<Option<ObservedNetwork>> {
        match self.docker.inspect_network(name, None).await {
            Ok(n) => Ok(Some(observed_network(n))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.error("inspect network", name, e)),
        }
    }

    async fn inspect_volume(&self, name: &str) -> Result<Option<ObservedVolume>> {
        match self.docker.inspect_volume(name).await {
            Ok(v) => Ok(Some(ObservedVolume {
                driver: v.driver,
                driver_opts: v.options.into_iter().collect(),
                labels: v.labels.into_iter().collect(),
            })),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.error("inspect volume", name, e)),
        }
    }

    async fn ensure_network(&self, project: &str, key: &str, def: &NetworkDef) -> Result<bool> {
        match self.docker.inspect_network(&def.name, None).await {
            Ok(_) => return Ok(false),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(self.error("inspect network", &def.name, e)),
        }
        if def.external {
            return Err(EngineError::Call {
                call: "use external network",
                target: def.name.clone(),
                message: "it does not exist; external networks are created outside the stack"
                    .into(),
            });
        }
        match self
            .docker
            .create_network(network_request(project, key, def))
            .await
        {
            Ok(_) => Ok(true),
            // Lost a race with another creator: the network is there, which is all we want.
            Err(BollardError::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(false),
            Err(e) => Err(self.error("create network", &def.name, e)),
        }
    }

    async fn remove_network_if_unused(&self, name: &str) -> Result<bool> {
        // The caller's message names the network when this listing fails.
        if !self
            .containers_where("network", name.to_string())
            .await?
            .is_empty()
        {
            return Ok(false);
        }
        match self.docker.remove_network(name).await {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(true),
            Err(e) => Err(self.error("remove network", name, e)),
        }
    }

    async fn ensure_volume(&self, project: &str, key: &str, def: &VolumeDef) -> Result<()> {
        match self.docker.inspect_volume(&def.name).await {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(self.error("inspect volume", &def.name, e)),
        }
        if def.external {
            return Err(EngineError::Call {
                call: "use external volume",
                target: def.name.clone(),
                message: "it does not exist; external volumes are created outside the stack".into(),
            });
        }
        self.docker
            .create_volume(volume_request(project, key, def))
            .await
            .map(|_| ())
            .map_err(|e| self.error("create volume", &def.name, e))
    }

    async fn create_container(&self, request: &CreateRequest) -> Result<String> {
        let body = create_body(request);
        let options = CreateContainerOptions {
            name: Some(request.name.clone()),
            platform: request.spec.platform.clone().unwrap_or_default(),
        };
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| self.error("create container", &request.name, e))?;
        // API 1.41 attaches one network at create; the others are connected before start, in
        // priority order.
        let spec = &request.spec;
        for key in spec.networks_by_priority().into_iter().skip(1) {
            let name = request
                .networks
                .get(key)
                .cloned()
                .unwrap_or_else(|| key.clone());
            let connect = NetworkConnectRequest {
                container: created.id.clone(),
                endpoint_config: Some(endpoint(request, key)),
            };
            self.docker
                .connect_network(&name, connect)
                .await
                .map_err(|e| self.error("connect network", &name, e))?;
        }
        Ok(created.id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        self.docker
            .start_container(id, None)
            .await
            .map_err(|e| self.error("start container", id, e))
    }

    async fn stop_container(&self, id: &str, grace: Option<Duration>) -> Result<()> {
        let options = StopContainerOptions {
            t: grace.map(|g| g.as_secs().max(1) as i32),
            ..Default::default()
        };
        match self.docker.stop_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            // 304: already stopped.
            Err(BollardError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(self.error("stop container", id, e)),
        }
    }

    async fn rename_container(&self, id: &str, new_name: &str) -> Result<()> {
        let options = RenameContainerOptions {
            name: new_name.to_string(),
        };
        self.docker
            .rename_container(id, options)
            .await
            .map_err(|e| self.error("rename container", id, e))
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        // `v: false`: anonymous volumes survive too; no volume is ever deleted.
        let options = RemoveContainerOptions {
            force: true,
            v: false,
            ..Default::default()
        };
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(self.error("remove container", id, e)),
        }
    }

    async fn logs_tail(&self, id: &str, lines: usize) -> Result<Vec<String>> {
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            tail: lines.to_string(),
            ..Default::default()
        };
        let mut stream = self.docker.logs(id, Some(options));
        let mut text = String::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(output) => text.push_str(&String::from_utf8_lossy(&output.into_bytes())),
                Err(e) => return Err(self.error("logs", id, e)),
            }
        }
        Ok(text.lines().map(str::to_string).collect())
    }

    async fn free_disk(&self) -> Result<Option<FreeDisk>> {
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| self.error("info", "", e))?;
        let Some(root) = info.docker_root_dir else {
            return Ok(None);
        };
        // Only meaningful when the engine is local; a remote engine's path is not ours to stat.
        if !self.endpoint.starts_with("unix://") {
            return Ok(None);
        }
        let path = std::path::PathBuf::from(root);
        Ok(crate::config::free_bytes(&path).map(|bytes| FreeDisk { path, bytes }))
    }

    async fn create_holder(&self, request: &HolderRequest) -> Result<String> {
        self.holder(request).await
    }

    async fn download_archive(
        &self,
        id: &str,
        path: &str,
        sink: &mut (dyn std::io::Write + Send),
    ) -> Result<u64> {
        self.download(id, path, sink).await
    }

    async fn upload_archive(
        &self,
        id: &str,
        path: &str,
        source: Box<dyn std::io::Read + Send>,
    ) -> Result<()> {
        self.upload(id, path, source).await
    }

    async fn pause_container(&self, id: &str) -> Result<()> {
        self.pause(id).await
    }

    async fn unpause_container(&self, id: &str) -> Result<()> {
        self.unpause(id).await
    }

    async fn local_volume_path(&self, name: &str) -> Result<Option<std::path::PathBuf>> {
        self.volume_path(name).await
    }
}

/// The network as the file defines it, with Compose's labels so `docker compose` knows it.
fn network_request(project: &str, key: &str, def: &NetworkDef) -> NetworkCreateRequest {
    let mut labels: HashMap<String, String> = def.labels.clone().into_iter().collect();
    labels.insert(labels::PROJECT.into(), project.into());
    labels.insert(labels::NETWORK.into(), key.into());
    let map =
        |m: &BTreeMap<String, String>| (!m.is_empty()).then(|| m.clone().into_iter().collect());
    NetworkCreateRequest {
        name: def.name.clone(),
        driver: def.driver.clone().or(Some("bridge".into())),
        internal: Some(def.internal),
        attachable: Some(def.attachable),
        enable_ipv6: Some(def.enable_ipv6),
        options: map(&def.driver_opts),
        ipam: def.ipam.as_ref().map(|ipam| Ipam {
            driver: ipam.driver.clone(),
            config: Some(
                ipam.config
                    .iter()
                    .map(|pool| IpamConfig {
                        subnet: pool.subnet.clone(),
                        ip_range: pool.ip_range.clone(),
                        gateway: pool.gateway.clone(),
                        auxiliary_addresses: map(&pool.aux_addresses),
                    })
                    .collect(),
            ),
            options: map(&ipam.options),
        }),
        labels: Some(labels),
        ..Default::default()
    }
}

fn volume_request(project: &str, key: &str, def: &VolumeDef) -> VolumeCreateRequest {
    let mut labels: HashMap<String, String> = def.labels.clone().into_iter().collect();
    labels.insert(labels::PROJECT.into(), project.into());
    labels.insert(labels::VOLUME.into(), key.into());
    VolumeCreateRequest {
        name: Some(def.name.clone()),
        driver: def.driver.clone(),
        driver_opts: (!def.driver_opts.is_empty())
            .then(|| def.driver_opts.clone().into_iter().collect()),
        labels: Some(labels),
        ..Default::default()
    }
}

fn observed_network(n: bollard::models::NetworkInspect) -> ObservedNetwork {
    let ipam = n.ipam.unwrap_or_default();
    let map = |m: Option<HashMap<String, String>>| m.unwrap_or_default().into_iter().collect();
    ObservedNetwork {
        driver: n.driver.unwrap_or_default(),
        driver_opts: map(n.options),
        enable_ipv6: n.enable_ipv6.unwrap_or(false),
        internal: n.internal.unwrap_or(false),
        ipam_driver: ipam.driver.unwrap_or_default(),
        ipam_config: ipam
            .config
            .unwrap_or_default()
            .into_iter()
            .map(|c| IpamPool {
                subnet: c.subnet.filter(|s| !s.is_empty()),
                ip_range: c.ip_range.filter(|s| !s.is_empty()),
                gateway: c.gateway.filter(|s| !s.is_empty()),
                aux_addresses: map(c.auxiliary_addresses),
            })
            .collect(),
        ipam_options: map(ipam.options),
        labels: map(n.labels),
    }
}

/// The service's endpoint on one network: its name and aliases, its links there (on a user
/// network a link is an alias of the linked container that resolves from this container only),
/// and what the file asks of it (a fixed address, driver options).
fn endpoint(request: &CreateRequest, key: &str) -> EndpointSettings {
    let spec = &request.spec;
    // A one-off container (a job) answers to no service name, as `docker compose run`: traffic
    // for the service must not reach it.
    let mut all = Vec::new();
    if !request.labels.contains_key(labels::ONEOFF_ROLE) {
        all.push(request.service.clone());
        all.extend(spec.networks.get(key).into_iter().flatten().cloned());
    }
    let settings = spec.network_endpoints.get(key).cloned().unwrap_or_default();
    let ipam_config = (settings.ipv4_address.is_some()
        || settings.ipv6_address.is_some()
        || !settings.link_local_ips.is_empty())
    .then(|| EndpointIpamConfig {
        ipv4_address: settings.ipv4_address,
        ipv6_address: settings.ipv6_address,
        link_local_ips: (!settings.link_local_ips.is_empty()).then_some(settings.link_local_ips),
    });
    EndpointSettings {
        aliases: (!all.is_empty()).then_some(all),
        ipam_config,
        driver_opts: (!settings.driver_opts.is_empty())
            .then(|| settings.driver_opts.into_iter().collect()),
        links: runtime_options::links(spec),
        ..Default::default()
    }
}

/// A repository bind's source is the stack's data folder or the revision's copy on the host;
/// an absolute one is as written.
fn bind_source(request: &CreateRequest, m: &MountSpec) -> Option<String> {
    let root = match m.in_data_folder() {
        true => &request.data_root,
        false => &request.repo_root,
    };
    match (&m.repo_relative, root) {
        (Some(rel), Some(root)) if rel == "." => Some(root.display().to_string()),
        (Some(rel), Some(root)) => Some(root.join(rel).display().to_string()),
        _ => m.source.clone(),
    }
}

/// `source:target:options` of the engine's legacy bind form.
fn legacy_bind(m: &MountSpec, source: &str) -> String {
    let mut options = vec![if m.read_only { "ro" } else { "rw" }];
    options.extend(m.options.selinux.as_deref());
    options.extend(m.options.propagation.as_deref());
    format!("{source}:{}:{}", m.target, options.join(","))
}

fn mount(request: &CreateRequest, m: &MountSpec) -> Mount {
    let (typ, source) = match m.kind {
        MountKind::Volume => (
            MountType::VOLUME,
            m.source.as_ref().map(|key| {
                request
                    .volumes
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| key.clone())
            }),
        ),
        MountKind::Bind => (MountType::BIND, bind_source(request, m)),
        MountKind::Tmpfs => (MountType::TMPFS, None),
    };
    let o = &m.options;
    let bind_options = (m.kind == MountKind::Bind && (o.propagation.is_some() || o.non_recursive))
        .then(|| MountBindOptions {
            propagation: o.propagation.as_deref().and_then(|p| p.parse().ok()),
            non_recursive: o.non_recursive.then_some(true),
            ..Default::default()
        });
    let volume_options = (m.kind == MountKind::Volume
        && (m.no_copy || !o.volume_labels.is_empty()))
    .then(|| MountVolumeOptions {
        no_copy: m.no_copy.then_some(true),
        labels: (!o.volume_labels.is_empty())
            .then(|| o.volume_labels.clone().into_iter().collect()),
        ..Default::default()
    });
    let tmpfs_options =
        (m.tmpfs_size.is_some() || o.tmpfs_mode.is_some()).then(|| MountTmpfsOptions {
            size_bytes: m.tmpfs_size,
            mode: o.tmpfs_mode.map(i64::from),
            ..Default::default()
        });
    Mount {
        target: Some(m.target.clone()),
        source,
        typ: Some(typ),
        read_only: Some(m.read_only),
        bind_options,
        volume_options,
        tmpfs_options,
        ..Default::default()
    }
}

/// A secret or config: a read-only bind of the repository's copy, the host file, or the file
/// the executor wrote. A source that is missing stays missing: the engine refuses the create.
fn file_bind(request: &CreateRequest, file: &FileMount) -> Mount {
    let source = match &file.from {
        FileSource::Repository { path, .. } => request.repo_root.as_ref().map(|r| r.join(path)),
        FileSource::Host { path } => Some(path.into()),
        FileSource::Content { .. } => request.content_files.get(&file.target).cloned(),
    };
    Mount {
        target: Some(file.target.clone()),
        source: source.map(|s| s.display().to_string()),
        typ: Some(MountType::BIND),
        read_only: Some(true),
        ..Default::default()
    }
}

fn create_body(request: &CreateRequest) -> ContainerCreateBody {
    let spec = &request.spec;
    let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
    labels.extend(request.labels.clone());

    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &spec.ports {
        let key = format!("{}/{}", p.target, p.protocol);
        let binding = PortBinding {
            host_ip: p.host_ip.clone(),
            host_port: p.published.clone(),
        };
        port_bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(binding);
    }
    let mut exposed: Vec<String> = port_bindings.keys().cloned().collect();
    exposed.extend(runtime_options::exposed_ports(spec));
    exposed.sort();
    exposed.dedup();

    // Binds that must create their host folder or be relabelled go the legacy way (as Compose
    // sends them); the rest as mounts.
    let (legacy, modern): (Vec<_>, Vec<_>) =
        spec.mounts.iter().partition(|m| m.needs_legacy_bind());
    let binds: Vec<String> = legacy
        .iter()
        .map(|m| legacy_bind(m, &bind_source(request, m).unwrap_or_default()))
        .collect();
    let mut mounts: Vec<Mount> = modern.iter().map(|m| mount(request, m)).collect();
    mounts.extend(spec.file_mounts().map(|(_, file)| file_bind(request, file)));

    let restart_policy = spec.restart.as_deref().map(|r| {
        let (name, count) = match r.split_once(':') {
            Some((n, c)) => (n, c.parse().ok()),
            None => (r, None),
        };
        RestartPolicy {
            name: Some(match name {
                "always" => RestartPolicyNameEnum::ALWAYS,
                "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
                "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
                _ => RestartPolicyNameEnum::NO,
            }),
            maximum_retry_count: count,
        }
    });

    let first_network = spec.networks_by_priority().first().copied();
    let network_mode = spec.network_mode.clone().or_else(|| {
        first_network.map(|key| {
            request
                .networks
                .get(key)
                .cloned()
                .unwrap_or_else(|| key.clone())
        })
    });
    let networking_config = match (&spec.network_mode, first_network) {
        (None, Some(key)) => {
            let name = request
                .networks
                .get(key)
                .cloned()
                .unwrap_or_else(|| key.clone());
            Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(name, endpoint(request, key))])),
            })
        }
        _ => None,
    };

    let host_config = HostConfig {
        port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
        mounts: (!mounts.is_empty()).then_some(mounts),
        binds: (!binds.is_empty()).then_some(binds),
        restart_policy,
        extra_hosts: (!spec.extra_hosts.is_empty()).then(|| spec.extra_hosts.clone()),
        init: spec.init,
        readonly_rootfs: Some(spec.read_only),
        cap_add: (!spec.cap_add.is_empty()).then(|| spec.cap_add.clone()),
        cap_drop: (!spec.cap_drop.is_empty()).then(|| spec.cap_drop.clone()),
        devices: (!spec.devices.is_empty()).then(|| {
            spec.devices
                .iter()
                .map(|d| DeviceMapping {
                    path_on_host: Some(d.host_path.clone()),
                    path_in_container: Some(d.container_path.clone()),
                    cgroup_permissions: Some(d.permissions.clone()),
                })
                .collect()
        }),
        privileged: Some(spec.privileged),
        network_mode,
        pid_mode: spec.pid.clone(),
        ipc_mode: spec.ipc.clone(),
        memory: spec.mem_limit,
        nano_cpus: spec.nano_cpus,
        log_config: spec.logging.as_ref().map(|l| HostConfigLogConfig {
            typ: l.driver.clone(),
            config: Some(l.options.clone().into_iter().collect()),
        }),
        ..runtime_options::runtime_host_config(spec)
    };

    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: spec.command.clone(),
        entrypoint: spec.entrypoint.clone(),
        env: Some(
            spec.environment
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
        ),
        labels: Some(labels),
        user: spec.user.clone(),
        working_dir: spec.working_dir.clone(),
        hostname: spec.hostname.clone(),
        domainname: spec.networking.domainname.clone(),
        tty: spec.tty.then_some(true),
        open_stdin: spec.stdin_open.then_some(true),
        stop_signal: spec.stop_signal.clone(),
        stop_timeout: spec
            .stop_grace_period_ms
            .map(|ms| (ms / 1000).max(1) as i64),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        healthcheck: spec.healthcheck.as_ref().map(|h| HealthConfig {
            test: Some(h.test.clone()),
            interval: nanos(h.interval_ms),
            timeout: nanos(h.timeout_ms),
            start_period: nanos(h.start_period_ms),
            retries: h.retries.map(i64::from),
            ..Default::default()
        }),
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    }
}

/// A container's name as a listing gives it (`/shop-web-1`), without the slash.
fn first_name(names: Option<Vec<String>>) -> String {
    names
        .unwrap_or_default()
        .first()
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{ContainerSpec, MountSpec, PortSpec};
    use std::path::PathBuf;

    fn request(spec: ContainerSpec) -> CreateRequest {
        CreateRequest {
            name: "web-app-1".into(),
            project: "web".into(),
            service: "app".into(),
            spec,
            labels: BTreeMap::new(),
            networks: BTreeMap::from([("default".into(), "web_default".into())]),
            volumes: BTreeMap::from([("data".into(), "web_data".into())]),
            repo_root: Some(PathBuf::from("/state/stacks/web/abc")),
            content_files: BTreeMap::new(),
            data_root: Some(PathBuf::from("/state/data/web")),
        }
    }

    #[test]
    fn named_volumes_and_repository_binds_resolve_to_engine_names_and_host_paths() {
        let spec = ContainerSpec {
            image: "web:1".into(),
            mounts: vec![
                MountSpec {
                    target: "/data".into(),
                    kind: MountKind::Volume,
                    source: Some("data".into()),
                    read_only: false,
                    repo_relative: None,
                    tmpfs_size: None,
                    no_copy: false,
                    shared_data: false,
                    options: Default::default(),
                },
                MountSpec {
                    target: "/etc/app.conf".into(),
                    kind: MountKind::Bind,
                    source: Some("./app.conf".into()),
                    read_only: true,
                    repo_relative: Some("app.conf".into()),
                    tmpfs_size: None,
                    no_copy: false,
                    shared_data: false,
                    options: Default::default(),
                },
            ],
            networks: BTreeMap::from([("default".into(), vec![])]),
            ..Default::default()
        };
        let body = create_body(&request(spec));
        let mounts = body.host_config.unwrap().mounts.unwrap();
        assert_eq!(mounts[0].source.as_deref(), Some("web_data"));
        assert_eq!(
            mounts[1].source.as_deref(),
            Some("/state/stacks/web/abc/app.conf")
        );
        assert_eq!(mounts[1].read_only, Some(true));
    }

    #[test]
    fn secrets_and_configs_are_read_only_binds_of_the_repository_copy_the_host_file_or_the_written_file(
    ) {
        use crate::desired::{FileContent, FileMount, FileSource};
        let file = |target: &str, from: FileSource| FileMount {
            target: target.into(),
            source: "x".into(),
            from,
            uid: None,
            gid: None,
            mode: None,
            secret: true,
        };
        let spec = ContainerSpec {
            image: "web:1".into(),
            secrets: vec![
                file(
                    "/run/secrets/db",
                    FileSource::Repository {
                        path: "secrets/db.txt".into(),
                        digest: "d".into(),
                    },
                ),
                file(
                    "/run/secrets/tls",
                    FileSource::Host {
                        path: "/srv/tls/key.pem".into(),
                    },
                ),
            ],
            configs: vec![file(
                "/app.conf",
                FileSource::Content {
                    digest: "d".into(),
                    content: FileContent::new(b"level=info"),
                },
            )],
            ..Default::default()
        };
        let mut request = request(spec);
        request.content_files = BTreeMap::from([(
            "/app.conf".to_string(),
            PathBuf::from("/state/files/web/0123abcd"),
        )]);
        let mounts = create_body(&request).host_config.unwrap().mounts.unwrap();
        let binds: Vec<(&str, &str, bool)> = mounts
            .iter()
            .map(|m| {
                assert_eq!(m.typ, Some(MountType::BIND));
                (
                    m.target.as_deref().unwrap(),
                    m.source.as_deref().unwrap(),
                    m.read_only.unwrap(),
                )
            })
            .collect();
        assert_eq!(
            binds,
            [
                (
                    "/run/secrets/db",
                    "/state/stacks/web/abc/secrets/db.txt",
                    true
                ),
                ("/run/secrets/tls", "/srv/tls/key.pem", true),
                ("/app.conf", "/state/files/web/0123abcd", true),
            ]
        );
    }

    #[test]
    fn writable_and_shared_repository_binds_point_to_the_stack_data_folder() {
        let bind = |target: &str, rel: &str, read_only: bool, shared_data: bool| MountSpec {
            target: target.into(),
            kind: MountKind::Bind,
            source: Some(format!("./{rel}")),
            read_only,
            repo_relative: Some(rel.into()),
            tmpfs_size: None,
            no_copy: false,
            shared_data,
            options: Default::default(),
        };
        let spec = ContainerSpec {
            image: "web:1".into(),
            mounts: vec![
                bind("/a", "data/db", false, false),
                bind("/b", "uploads", true, true),
                bind("/c", "conf", true, false),
                bind("/d", ".", false, false),
            ],
            ..Default::default()
        };
        let body = create_body(&request(spec));
        let sources: Vec<_> = body
            .host_config
            .unwrap()
            .mounts
            .unwrap()
            .into_iter()
            .map(|m| m.source.unwrap())
            .collect();
        assert_eq!(
            sources,
            [
                "/state/data/web/data/db",
                "/state/data/web/uploads",
                "/state/stacks/web/abc/conf",
                "/state/data/web",
            ]
        );
    }

    #[test]
    fn devices_are_passed_to_the_engine_with_their_permissions() {
        let spec = ContainerSpec {
            image: "web:1".into(),
            devices: vec![crate::desired::DeviceSpec {
                host_path: "/dev/fuse".into(),
                container_path: "/dev/fuse".into(),
                permissions: "rw".into(),
            }],
            ..Default::default()
        };
        let devices = create_body(&request(spec))
            .host_config
            .unwrap()
            .devices
            .unwrap();
        assert_eq!(devices[0].path_on_host.as_deref(), Some("/dev/fuse"));
        assert_eq!(devices[0].path_in_container.as_deref(), Some("/dev/fuse"));
        assert_eq!(devices[0].cgroup_permissions.as_deref(), Some("rw"));
    }

    #[test]
    fn ports_are_exposed_and_bound_and_the_service_is_a_network_alias() {
        let spec = ContainerSpec {
            image: "web:1".into(),
            ports: vec![PortSpec {
                host_ip: Some("127.0.0.1".into()),
                published: Some("8080".into()),
                target: 80,
                protocol: "tcp".into(),
            }],
            networks: BTreeMap::from([("default".into(), vec!["www".into()])]),
            ..Default::default()
        };
        let body = create_body(&request(spec));
        assert_eq!(body.exposed_ports, Some(vec!["80/tcp".to_string()]));
        let host = body.host_config.unwrap();
        let binding = &host.port_bindings.unwrap()["80/tcp"].clone().unwrap()[0];
        assert_eq!(binding.host_port.as_deref(), Some("8080"));
        assert_eq!(host.network_mode.as_deref(), Some("web_default"));
        let endpoints = body.networking_config.unwrap().endpoints_config.unwrap();
        assert_eq!(
            endpoints["web_default"].aliases,
            Some(vec!["app".to_string(), "www".to_string()])
        );
    }

    #[test]
    fn the_network_of_the_highest_priority_is_created_on_with_its_fixed_address_and_options() {
        use crate::desired::EndpointSpec;
        let spec = ContainerSpec {
            image: "web:1".into(),
            networks: BTreeMap::from([
                ("back".into(), vec![]),
                ("front".into(), vec!["www".into()]),
            ]),
            network_endpoints: BTreeMap::from([(
                "front".into(),
                EndpointSpec {
                    ipv4_address: Some("172.31.7.10".into()),
                    link_local_ips: vec!["169.254.8.8".into()],
                    driver_opts: BTreeMap::from([("k".into(), "v".into())]),
                    priority: Some(10),
                    ..Default::default()
                },
            )]),
            ..Default::default()
        };
        let mut req = request(spec);
        req.networks = BTreeMap::from([
            ("back".into(), "web_back".into()),
            ("front".into(), "web_front".into()),
        ]);
        let body = create_body(&req);
        assert_eq!(
            body.host_config.unwrap().network_mode.as_deref(),
            Some("web_front")
        );
        let endpoint = &body.networking_config.unwrap().endpoints_config.unwrap()["web_front"];
        let ipam = endpoint.ipam_config.clone().unwrap();
        assert_eq!(ipam.ipv4_address.as_deref(), Some("172.31.7.10"));
        assert_eq!(ipam.link_local_ips, Some(vec!["169.254.8.8".to_string()]));
        assert_eq!(endpoint.driver_opts.clone().unwrap()["k"], "v");
        assert_eq!(
            endpoint.aliases,
            Some(vec!["app".to_string(), "www".to_string()])
        );
    }

    #[test]
    fn binds_that_create_their_folder_or_relabel_take_the_legacy_form_and_the_rest_mount() {
        use crate::desired::MountOptions;
        let bind = |target: &str, options: MountOptions| MountSpec {
            target: target.into(),
            kind: MountKind::Bind,
            source: Some("/srv/app".into()),
            read_only: true,
            repo_relative: None,
            tmpfs_size: None,
            no_copy: false,
            shared_data: false,
            options,
        };
        let spec = ContainerSpec {
            image: "web:1".into(),
            mounts: vec![
                bind(
                    "/a",
                    MountOptions {
                        create_host_path: Some(true),
                        selinux: Some("z".into()),
                        propagation: Some("rshared".into()),
                        ..Default::default()
                    },
                ),
                bind(
                    "/b",
                    MountOptions {
                        propagation: Some("rslave".into()),
                        non_recursive: true,
                        ..Default::default()
                    },
                ),
                MountSpec {
                    kind: MountKind::Tmpfs,
                    source: None,
                    tmpfs_size: Some(1024),
                    options: MountOptions {
                        tmpfs_mode: Some(0o1777),
                        ..Default::default()
                    },
                    ..bind("/c", MountOptions::default())
                },
            ],
            ..Default::default()
        };
        let host = create_body(&request(spec)).host_config.unwrap();
        assert_eq!(
            host.binds,
            Some(vec!["/srv/app:/a:ro,z,rshared".to_string()])
        );
        let mounts = host.mounts.unwrap();
        let b = mounts[0].bind_options.clone().unwrap();
        assert_eq!(
            b.propagation.map(|p| p.to_string()).as_deref(),
            Some("rslave")
        );
        assert_eq!(b.non_recursive, Some(true));
        let t = mounts[1].tmpfs_options.clone().unwrap();
        assert_eq!((t.size_bytes, t.mode), (Some(1024), Some(0o1777)));
    }

    #[test]
    fn device_reservations_are_sent_beside_gpus_as_compose_sends_both() {
        use crate::desired::GpuRequest;
        let request_of = |capabilities: &[&str]| GpuRequest {
            driver: None,
            count: Some(-1),
            device_ids: vec![],
            capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
            options: BTreeMap::new(),
        };
        let mut spec = ContainerSpec {
            image: "web:1".into(),
            device_requests: vec![request_of(&["compute", "gpu"])],
            ..Default::default()
        };
        spec.confinement.gpus = vec![request_of(&["gpu"])];
        let host = create_body(&request(spec)).host_config.unwrap();
        let capabilities: Vec<_> = host
            .device_requests
            .unwrap()
            .into_iter()
            .map(|d| d.capabilities.unwrap())
            .collect();
        assert_eq!(
            capabilities,
            vec![
                vec![vec!["gpu".to_string()]],
                vec![vec!["compute".to_string(), "gpu".to_string()]]
            ]
        );
    }

    #[test]
    fn networks_and_volumes_are_created_as_the_file_defines_them_with_composes_labels() {
        use crate::desired::{IpamDef, IpamPool};
        let def = NetworkDef {
            name: "web_front".into(),
            driver_opts: BTreeMap::from([("com.docker.network.driver.mtu".into(), "1400".into())]),
            attachable: true,
            enable_ipv6: true,
            ipam: Some(IpamDef {
                config: vec![IpamPool {
                    subnet: Some("172.31.7.0/24".into()),
                    gateway: Some("172.31.7.1".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            labels: BTreeMap::from([("team".into(), "a".into())]),
            ..Default::default()
        };
        let n = network_request("web", "front", &def);
        assert_eq!(n.driver.as_deref(), Some("bridge"));
        assert_eq!((n.attachable, n.enable_ipv6), (Some(true), Some(true)));
        assert_eq!(n.options.unwrap()["com.docker.network.driver.mtu"], "1400");
        let pool = &n.ipam.unwrap().config.unwrap()[0];
        assert_eq!(pool.subnet.as_deref(), Some("172.31.7.0/24"));
        assert_eq!(pool.gateway.as_deref(), Some("172.31.7.1"));
        let labels = n.labels.unwrap();
        assert_eq!(labels["team"], "a");
        assert_eq!(labels[labels::NETWORK], "front");
        let v = volume_request(
            "web",
            "data",
            &VolumeDef {
                name: "web_data".into(),
                driver_opts: BTreeMap::from([("type".into(), "tmpfs".into())]),
                ..Default::default()
            },
        );
        assert_eq!(v.driver_opts.unwrap()["type"], "tmpfs");
        assert_eq!(v.labels.unwrap()[labels::VOLUME], "data");
    }
}
