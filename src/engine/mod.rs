//! The container engine behind a trait: the executor and observer speak only these calls, so the
//! core is tested without Docker and the adapter ([`docker`]) is tested against the real engine.

pub mod docker;
#[cfg(test)]
pub mod fake;

use crate::desired::{ContainerSpec, NetworkDef, VolumeDef};
use crate::observed::{Health, ObservedContainer, ObservedNetwork, ObservedVolume};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot reach the Docker Engine at {endpoint}: {message}")]
    Unreachable { endpoint: String, message: String },
    #[error("image {reference} not found in its registry ({message})")]
    ImageNotFound { reference: String, message: String },
    #[error("registry refused access to {reference}: {message}")]
    Unauthorized { reference: String, message: String },
    #[error("registry for {reference} is unreachable: {message}")]
    RegistryUnreachable { reference: String, message: String },
    /// The container is gone or being removed (by hand, most likely).
    #[error("{call} {target}: {message}")]
    Gone {
        call: &'static str,
        target: String,
        message: String,
    },
    #[error("{call} {target}: {message}")]
    Call {
        call: &'static str,
        target: String,
        message: String,
    },
}

impl EngineError {
    /// Worth retrying later (engine or registry down), as opposed to a broken release.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. } | Self::RegistryUnreachable { .. } | Self::Gone { .. }
        )
    }

    /// A container vanished or is being removed mid-pass: settled by the next pass.
    pub fn is_gone(&self) -> bool {
        matches!(self, Self::Gone { .. })
    }
}

pub type Result<T> = std::result::Result<T, EngineError>;

/// A container's live state, from inspect.
#[derive(Debug, Clone, Default)]
pub struct ContainerStatus {
    pub running: bool,
    pub state: String,
    /// [`Health::None`] when the container has no healthcheck.
    pub health: Health,
    pub exit_code: i64,
    /// The kernel killed it for want of memory (its exit code is then 137).
    pub oom_killed: bool,
    pub restart_count: i64,
    pub started_at: String,
    pub env: BTreeMap<String, String>,
    pub image_id: String,
}

#[derive(Debug, Clone, Default)]
pub struct ImageInfo {
    pub id: String,
    pub repo_digests: Vec<String>,
    pub env: BTreeMap<String, String>,
}

/// A local image as the engine lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalImage {
    /// `sha256:...`.
    pub id: String,
    /// Its tags and digest references (`127.0.0.1:5000/web:v1`, `127.0.0.1:5000/web@sha256:...`).
    pub references: Vec<String>,
    /// Bytes, as the engine counts them (layers shared with other images included).
    pub size: Option<u64>,
}

/// What one image removal did, as the engine tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageRemoval {
    /// References that were taken off.
    pub untagged: Vec<String>,
    /// Image ids (and untagged parents) deleted from disk; empty when another reference keeps
    /// the image.
    pub deleted: Vec<String>,
}

/// Everything needed to create one container of a service.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub name: String,
    pub project: String,
    pub service: String,
    pub spec: ContainerSpec,
    /// Labels beyond the spec's own: Compose's and ours (hash, revision, digest).
    pub labels: BTreeMap<String, String>,
    /// Engine names of the networks, by the key used in the spec.
    pub networks: BTreeMap<String, String>,
    /// Engine names of the named volumes, by the key used in the spec.
    pub volumes: BTreeMap<String, String>,
    /// Where relative (repository) bind sources are found on the host.
    pub repo_root: Option<PathBuf>,
    /// Host files the executor wrote for secrets and configs given by content, by target.
    pub content_files: BTreeMap<String, PathBuf>,
    /// The stack's data folder, where the repository binds that are
    /// [`in_data_folder`](crate::desired::MountSpec::in_data_folder) point.
    pub data_root: Option<PathBuf>,
}

/// A one-off container the reconciler made for a step of a service (see
/// [`labels::ONEOFF_ROLE`](crate::labels::ONEOFF_ROLE)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneOffContainer {
    pub id: String,
    pub name: String,
    pub project: String,
    pub service: String,
    /// The [`labels::ONEOFF_ROLE`](crate::labels::ONEOFF_ROLE) value.
    pub role: String,
    pub running: bool,
}

/// Free space on the file system of the engine's data root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreeDisk {
    /// The engine's data root (`docker info`'s DockerRootDir), e.g. `/var/lib/docker`.
    pub path: PathBuf,
    pub bytes: u64,
}

/// Where a volume holder mounts its volume.
pub const HOLDER_PATH: &str = "/reconciler-volume";

/// A container created (never started) only so the engine's archive endpoint reaches a volume:
/// labelled a Compose one-off of the stack with role
/// [`labels::ONEOFF_VOLUME_HOLDER`](crate::labels::ONEOFF_VOLUME_HOLDER), no network, the
/// volume at [`HOLDER_PATH`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderRequest {
    pub name: String,
    pub project: String,
    pub service: String,
    /// A local image (the service's): nothing is pulled for a holder.
    pub image: String,
    /// Engine name of the volume.
    pub volume: String,
    pub read_only: bool,
}

impl HolderRequest {
    /// Compose's one-off labels, so `docker compose` and the observer leave it alone, and ours,
    /// so the next pass removes one a crash left.
    pub fn labels(&self) -> BTreeMap<String, String> {
        use crate::labels;
        BTreeMap::from([
            (labels::PROJECT.to_string(), self.project.clone()),
            (labels::SERVICE.to_string(), self.service.clone()),
            (labels::ONEOFF.to_string(), "True".to_string()),
            (
                labels::ONEOFF_ROLE.to_string(),
                labels::ONEOFF_VOLUME_HOLDER.to_string(),
            ),
            (labels::MANAGED.to_string(), "true".to_string()),
        ])
    }
}

/// Pull progress, as the engine streams it.
#[derive(Debug, Clone)]
pub struct PullProgress {
    pub layer: Option<String>,
    pub status: String,
    pub current: Option<i64>,
    pub total: Option<i64>,
}

#[allow(async_fn_in_trait)]
pub trait Engine {
    /// The containers of the given Compose projects, in any state, from one list call. No
    /// projects means no containers: nothing outside the desired stacks is ever looked at.
    async fn list_containers(&self, projects: &[String]) -> Result<Vec<ObservedContainer>>;
    /// The reconciler's own one-off containers (volume holders, jobs) of the given projects;
    /// [`list_containers`](Self::list_containers) never shows them.
    async fn list_oneoffs(&self, projects: &[String]) -> Result<Vec<OneOffContainer>>;
    async fn inspect_container(&self, id: &str) -> Result<ContainerStatus>;
    /// References of every local image (tags and digests).
    async fn list_image_references(&self) -> Result<Vec<String>>;
    async fn inspect_image(&self, reference: &str) -> Result<Option<ImageInfo>>;
    /// Every local image (top-level ones, as `docker images` shows them).
    async fn list_images(&self) -> Result<Vec<LocalImage>>;
    /// The image of every container on the host, in any state and whoever made it, as its id
    /// and as the reference it was created from: the image clean-up never removes one of them.
    async fn images_in_use(&self) -> Result<std::collections::BTreeSet<String>>;
    /// Remove one reference (or an image id), never forced: an image a container uses, or one
    /// an id names in several repositories, is refused by the engine. The image goes when its
    /// last reference does; no volume or container is touched. A reference that is already
    /// gone is no error.
    async fn remove_image(&self, reference: &str) -> Result<ImageRemoval>;
    /// The digest the registry now gives for a reference (`pull_policy: always`).
    async fn registry_digest(&self, reference: &str) -> Result<String>;
    /// `platform` (`linux/arm64`) picks one image of a multi-platform reference.
    async fn pull(
        &self,
        reference: &str,
        platform: Option<&str>,
        progress: &mut (dyn FnMut(PullProgress) + Send),
    ) -> Result<()>;
    /// How a network or volume is defined on the engine, or `None` when there is none of that
    /// name.
    async fn inspect_network(&self, name: &str) -> Result<Option<ObservedNetwork>>;
    async fn inspect_volume(&self, name: &str) -> Result<Option<ObservedVolume>>;
    /// Create what is missing; an existing network or volume is left as it is. True when the
    /// network was created by this call.
    async fn ensure_network(&self, project: &str, key: &str, def: &NetworkDef) -> Result<bool>;
    /// Remove a network unless a container, in any state and of any project, is attached to it
    /// (the engine itself refuses only running ones: a stopped container would lose its network).
    /// True when it was removed or was already gone.
    async fn remove_network_if_unused(&self, name: &str) -> Result<bool>;
    async fn ensure_volume(&self, project: &str, key: &str, def: &VolumeDef) -> Result<()>;
    async fn create_container(&self, request: &CreateRequest) -> Result<String>;
    async fn start_container(&self, id: &str) -> Result<()>;
    async fn stop_container(&self, id: &str, grace: Option<Duration>) -> Result<()>;
    async fn rename_container(&self, id: &str, new_name: &str) -> Result<()>;
    /// Removes the container and never its volumes.
    async fn remove_container(&self, id: &str) -> Result<()>;
    async fn logs_tail(&self, id: &str, lines: usize) -> Result<Vec<String>>;
    /// Free space where the engine keeps its data (images, containers), when it can be told:
    /// a remote engine's disk is not this host's to measure.
    async fn free_disk(&self) -> Result<Option<FreeDisk>>;
    async fn create_holder(&self, request: &HolderRequest) -> Result<String>;
    /// The tar of `path` in container `id` (GET /containers/{id}/archive), chunk by chunk into
    /// `sink`, so memory stays bounded. A sink error ends the copy with that error's message.
    async fn download_archive(
        &self,
        id: &str,
        path: &str,
        sink: &mut (dyn std::io::Write + Send),
    ) -> Result<u64>;
    /// Extract the tar read from `source` at `path` in container `id` (PUT archive), streamed.
    async fn upload_archive(
        &self,
        id: &str,
        path: &str,
        source: Box<dyn std::io::Read + Send>,
    ) -> Result<()>;
    async fn pause_container(&self, id: &str) -> Result<()>;
    async fn unpause_container(&self, id: &str) -> Result<()>;
    /// The host folder of a volume of the local driver without options when the engine runs on
    /// this host (unix socket); `None` when it is elsewhere or not a plain local volume.
    async fn local_volume_path(&self, name: &str) -> Result<Option<PathBuf>>;
}
