//! Label and name conventions: Compose's own, so `docker compose ps/logs` keep working,
//! plus our `reconciler.` labels for what Compose does not record.

pub const PREFIX: &str = "reconciler.";

pub const PROJECT: &str = "com.docker.compose.project";
pub const SERVICE: &str = "com.docker.compose.service";
pub const NUMBER: &str = "com.docker.compose.container-number";
pub const ONEOFF: &str = "com.docker.compose.oneoff";
/// On a one-off container: what tells it from others of its service (Compose: a random id).
pub const SLUG: &str = "com.docker.compose.slug";
pub const CONFIG_HASH: &str = "com.docker.compose.config-hash";
pub const COMPOSE_VERSION: &str = "com.docker.compose.version";
pub const NETWORK: &str = "com.docker.compose.network";
pub const VOLUME: &str = "com.docker.compose.volume";

/// sha256 of the normalized container spec: a difference means recreate.
pub const SPEC_HASH: &str = "reconciler.spec-hash";
/// The revision (commit id or directory digest) the container was created from.
pub const REVISION: &str = "reconciler.revision";
/// The image digest the reference resolved to when the container was created.
pub const IMAGE_DIGEST: &str = "reconciler.image-digest";
/// The normalized spec without env values (JSON), so `diff` can show old -> new per field.
pub const SPEC: &str = "reconciler.spec";
/// The files under `<state-dir>/files/<project>/` the container mounts (secrets and configs
/// given by content), comma-separated: pruning keeps what any container names here.
pub const FILES: &str = "reconciler.files";
/// Marks a container as created by the reconciler (as opposed to adopted from Compose).
pub const MANAGED: &str = "reconciler.managed";
/// On a one-off container the reconciler makes for a service (with Compose's `oneoff=True`):
/// what it is for, one of the `ONEOFF_*` values. Such a container never outlives its step; one
/// a crash left behind is removed by the next pass.
pub const ONEOFF_ROLE: &str = "reconciler.oneoff";
/// A container created (never started) only to read or write a volume through the engine.
pub const ONEOFF_VOLUME_HOLDER: &str = "volume-holder";
/// A `pre_deploy` job.
pub const ONEOFF_JOB: &str = "pre-deploy";

/// Suffixes of the transient names used during an update. A restart after a crash finds them
/// by name and finishes or undoes the update.
pub const BACKUP_SUFFIX: &str = "-reconciler-old";
pub const CANDIDATE_SUFFIX: &str = "-reconciler-new";

/// Compose's container name: `<project>-<service>-1` unless `container_name` is set.
pub fn container_name(project: &str, service: &str, fixed: Option<&str>) -> String {
    replica_name(project, service, fixed, 1)
}

/// Compose's name for replica `number`: `<project>-<service>-<number>` unless `container_name`
/// is set (which only a service of one replica may do).
pub fn replica_name(project: &str, service: &str, fixed: Option<&str>, number: u32) -> String {
    match fixed {
        Some(name) => name.to_string(),
        None => format!("{project}-{service}-{number}"),
    }
}
