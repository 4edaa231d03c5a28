//! The validated, interpolated, normalized desired state.
//!
//! Normalized means: maps are sorted, lists whose order has no meaning are sorted and deduplicated,
//! durations are milliseconds. Two spellings of the same Compose file give equal values here, so
//! the spec hash never changes for cosmetic edits.

use super::file_mount::{FileKind, FileMount};
mod container_options;

pub use crate::label_key::LabelKey;
pub use container_options::*;
use serde::Serialize;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

/// Every stack found in the desired-state source.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Desired {
    pub stacks: Vec<Stack>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Stack {
    /// The Compose project name: the folder name, or the file's top-level `name:`.
    pub name: String,
    /// Folder of the stack in the source, as read (local dir or materialized git tree).
    pub dir: PathBuf,
    /// Compose file path relative to the source root, for messages.
    pub file: String,
    /// Commit id for a git source; digest of the stack's files for a plain directory.
    pub revision: String,
    pub services: BTreeMap<String, Service>,
    pub volumes: BTreeMap<String, VolumeDef>,
    pub networks: BTreeMap<String, NetworkDef>,
    /// What the loader accepted but has a word about (an ignored key, an unset variable),
    /// located like a problem.
    #[serde(skip)]
    pub warnings: Vec<super::error::Problem>,
}

impl Stack {
    /// Keys of the networks its services join (services in a `network_mode` join none).
    pub fn networks_in_use(&self) -> BTreeSet<&str> {
        self.services
            .values()
            .filter(|s| s.spec.network_mode.is_none())
            .flat_map(|s| s.spec.networks.keys())
            .map(String::as_str)
            .collect()
    }

    /// Keys of the named volumes its services mount.
    pub fn volumes_in_use(&self) -> BTreeSet<&str> {
        self.services
            .values()
            .flat_map(|s| &s.spec.mounts)
            .filter(|m| m.kind == MountKind::Volume)
            .filter_map(|m| m.source.as_deref())
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct VolumeDef {
    /// Engine name: `<project>_<key>` unless `name:` or `external`.
    pub name: String,
    pub external: bool,
    pub driver: Option<String>,
    /// Options for the volume driver (`type`, `device`, `o` for the local driver).
    pub driver_opts: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// Fields (`driver_opts`, `labels`) whose values took a secret-looking variable (a CIFS
    /// password in `o:`): never shown.
    #[serde(skip)]
    pub secret_fields: BTreeSet<String>,
    /// Line of `driver_opts` in the file, for the host policy's message about it.
    #[serde(skip)]
    pub driver_opts_line: usize,
}

/// What a volume's driver options make the host do when the volume is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeMount<'a> {
    /// No driver options, or a `tmpfs`: memory only.
    Nothing,
    /// `type: none, o: bind, device: /path`: a bind of a host path under another name.
    Bind(&'a str),
    /// Any other filesystem the host mounts (nfs, cifs, a block device), or options of a
    /// driver plugin, which the reconciler cannot judge.
    Filesystem(String),
}

impl VolumeDef {
    /// How the host policy must judge this volume's driver options.
    pub fn host_mount(&self) -> VolumeMount<'_> {
        if self.external || self.driver_opts.is_empty() {
            return VolumeMount::Nothing;
        }
        if let Some(driver) = self.driver.as_deref().filter(|d| *d != "local") {
            return VolumeMount::Filesystem(format!("options of the volume driver '{driver}'"));
        }
        let opt = |k: &str| self.driver_opts.get(k).map(String::as_str).unwrap_or("");
        let binds = opt("o")
            .split(',')
            .any(|flag| matches!(flag.trim(), "bind" | "rbind"));
        match (opt("type"), opt("device")) {
            _ if binds => VolumeMount::Bind(opt("device")),
            ("tmpfs", _) | ("", "") => VolumeMount::Nothing,
            // Without a bind flag, `device` is still what the host mounts.
            ("" | "none", device) => VolumeMount::Bind(device),
            (other, _) => VolumeMount::Filesystem(format!("a filesystem of type '{other}'")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct NetworkDef {
    pub name: String,
    pub external: bool,
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub attachable: bool,
    pub enable_ipv6: bool,
    /// `None`: the engine assigns a subnet from its default pools.
    pub ipam: Option<IpamDef>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    /// Fields (`driver_opts`, `ipam.options`, `labels`, ...) whose values took a secret-looking
    /// variable: never shown.
    #[serde(skip)]
    pub secret_fields: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct IpamDef {
    pub driver: Option<String>,
    pub config: Vec<IpamPool>,
    pub options: BTreeMap<String, String>,
}

/// One `ipam.config` entry: an address pool of the network.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Default)]
pub struct IpamPool {
    pub subnet: Option<String>,
    pub ip_range: Option<String>,
    pub gateway: Option<String>,
    pub aux_addresses: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PullPolicy {
    Missing,
    Always,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    StopFirst,
    StartFirst,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DependsCondition {
    ServiceStarted,
    ServiceHealthy,
    ServiceCompletedSuccessfully,
}

/// Backups kept per volume when `x-reconciler.backup_keep` is not given.
pub const DEFAULT_BACKUP_KEEP: u32 = 5;
/// The most `x-reconciler.backup_keep` may ask: each backup is a full copy on the host's disk.
pub const MAX_BACKUP_KEEP: u32 = 100;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    pub name: String,
    /// The part of the service the container is created from; hashed.
    pub spec: ContainerSpec,
    pub pull_policy: PullPolicy,
    pub depends_on: BTreeMap<String, DependsCondition>,
    /// `deploy.update_config.order`, or `None` to choose from statefulness.
    pub order: Option<UpdateOrder>,
    pub monitor: Duration,
    pub health_timeout: Duration,
    pub min_ready: Duration,
    pub http_probe: Option<String>,
    /// `x-reconciler.pre_deploy`: a job run in a one-off container of the new image before the
    /// service is switched. Not part of the spec: adding or editing it recreates nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_deploy: Option<PreDeploy>,
    /// `x-reconciler.backup`: keys of the stack's top-level volumes copied to the state dir
    /// before the service's container is replaced.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backup: Vec<String>,
    /// `x-reconciler.backup_keep`: backups kept per volume.
    #[serde(skip)]
    pub backup_keep: u32,
    /// `deploy.replicas` or `scale`: containers `<project>-<service>-1` .. `-N` (0: none). Not
    /// part of the spec, so scaling never recreates a replica.
    #[serde(skip_serializing_if = "is_one")]
    pub replicas: u32,
    /// Env keys whose values must never be shown (secret-looking or from the host-local env file).
    pub secret_env: BTreeSet<String>,
    /// Service keys (`command`, `healthcheck`, ...) whose values took a secret-looking or
    /// host-local variable: no diff shows them and no label holds them.
    pub secret_fields: BTreeSet<String>,
    /// The host's key for label digests of secret values; set once the state dir is known.
    #[serde(skip)]
    pub label_key: LabelKey,
    /// Source files (relative to the stack dir) the service bind-mounts from the repository.
    pub repo_binds: Vec<String>,
    /// Line of each service key (`privileged`, `volumes:/target`, ...) for later checks' messages.
    #[serde(skip)]
    pub lines: BTreeMap<String, usize>,
}

/// A `pre_deploy` job (a migration): run to its end in a one-off container of the new image,
/// with the service's environment, networks and volumes, before the old container is stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreDeploy {
    pub command: Vec<String>,
    /// How long it may run; past it the job is stopped and the release failed.
    pub timeout: Duration,
}

impl PreDeploy {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5 * 60);
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
    /// Bytes of the whole command, words included: repository input, kept well under ARG_MAX.
    pub const MAX_COMMAND_BYTES: usize = 64 * 1024;
    pub const MAX_COMMAND_WORDS: usize = 4096;
}

/// Everything a container is created from. Its hash decides whether a service must be recreated.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct ContainerSpec {
    pub image: String,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub environment: BTreeMap<String, String>,
    pub ports: Vec<PortSpec>,
    pub mounts: Vec<MountSpec>,
    /// Network key (as in the file) -> aliases, sorted.
    pub networks: BTreeMap<String, Vec<String>>,
    /// Network key -> what the service asks of its endpoint there beyond aliases (a fixed
    /// address, driver options, priority); only networks that ask something, and left out of
    /// the hash when none does.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub network_endpoints: BTreeMap<String, EndpointSpec>,
    pub healthcheck: Option<HealthSpec>,
    pub restart: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub hostname: Option<String>,
    pub container_name: Option<String>,
    pub stop_signal: Option<String>,
    pub stop_grace_period_ms: Option<u64>,
    pub extra_hosts: Vec<String>,
    pub init: Option<bool>,
    pub read_only: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// Host devices given to the container; left out of the hash when empty, so adding the
    /// field did not change the hash (and recreate) every existing service.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceSpec>,
    /// Compose's runtime keys, grouped; each field is left out of the hash when empty.
    #[serde(flatten)]
    pub resources: ResourceSpec,
    #[serde(flatten)]
    pub confinement: ConfinementSpec,
    #[serde(flatten)]
    pub networking: NetworkingSpec,
    #[serde(flatten)]
    pub storage: StorageSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stdin_open: bool,
    pub privileged: bool,
    pub network_mode: Option<String>,
    pub pid: Option<String>,
    pub ipc: Option<String>,
    pub mem_limit: Option<i64>,
    pub nano_cpus: Option<i64>,
    /// Devices the engine's device drivers give (GPUs), from
    /// `deploy.resources.reservations.devices`; sent beside `gpus:` as Compose sends them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_requests: Vec<GpuRequest>,
    pub logging: Option<LoggingSpec>,
    /// Digest of the content of every repository file the service mounts, so editing a mounted
    /// config file in git recreates the service (Compose misses this).
    pub mounted_content: Option<String>,
    /// Compose `secrets:` and `configs:`, each a read-only file in the container; sorted by
    /// target. Left out when empty, so services without them hash as before.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<FileMount>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<FileMount>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PortSpec {
    pub host_ip: Option<String>,
    /// `None`: the engine picks a free host port.
    pub published: Option<String>,
    pub target: u16,
    pub protocol: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MountKind {
    Volume,
    Bind,
    Tmpfs,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct MountSpec {
    pub target: String,
    pub kind: MountKind,
    /// Volume key (named volume) or absolute host path (bind); `None` for tmpfs/anonymous.
    pub source: Option<String>,
    pub read_only: bool,
    /// Bind source relative to the stack folder, when it points into the repository. For a
    /// bind in the data folder ([`in_data_folder`](Self::in_data_folder)), links inside the
    /// folder are followed (`alias/db` with `alias -> data` is `data/db`): the data folder keeps
    /// no link on a bind's way.
    pub repo_relative: Option<String>,
    pub tmpfs_size: Option<i64>,
    pub no_copy: bool,
    /// A read-only repository bind that sees the stack's data folder rather than the revision's
    /// files: its source is missing from git, or a service of the stack writes there. Left out
    /// of the hash when false, so read-only binds of plain repository files keep their hash.
    #[serde(skip_serializing_if = "is_false")]
    pub shared_data: bool,
    /// The long form's finer settings; each left out of the hash when not given.
    #[serde(flatten)]
    pub options: MountOptions,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl MountSpec {
    /// A repository bind that points to the stack's data folder (`<state-dir>/data/<stack>`),
    /// kept across revisions, rather than to the revision's copy of the repository: every
    /// writable one (what a container writes there is data), and read-only ones that share it.
    pub fn in_data_folder(&self) -> bool {
        self.kind == MountKind::Bind
            && self.repo_relative.is_some()
            && (!self.read_only || self.shared_data)
    }

    /// Only the engine's legacy bind form (`src:dst:opts`) creates a missing host folder or
    /// relabels for SELinux under API 1.41, as Compose uses it for these.
    pub fn needs_legacy_bind(&self) -> bool {
        self.kind == MountKind::Bind
            && (self.options.create_host_path == Some(true) || self.options.selinux.is_some())
    }
}

/// `bind:`, `volume:` and `tmpfs:` settings of a long-form mount beyond the common ones.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Default)]
pub struct MountOptions {
    /// `rprivate`, `shared`, ... : how mounts below the bind propagate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub propagation: Option<String>,
    /// `Some(true)`: a missing host folder is created (through the engine's legacy bind form,
    /// the only one that can under API 1.41).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create_host_path: Option<bool>,
    /// `z` (shared) or `Z` (private) SELinux relabelling of the bind source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selinux: Option<String>,
    /// `bind.recursive: disabled`: mounts below the source are not bound along.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub non_recursive: bool,
    /// Permission bits of a tmpfs mount's root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs_mode: Option<u32>,
    /// Labels of the volume the mount creates (an anonymous one).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub volume_labels: BTreeMap<String, String>,
}

/// A service's settings on one network (`services.x.networks.y` long form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct EndpointSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub link_local_ips: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    /// Higher first: the network of the highest priority is the one the container is created
    /// on (its default route), as Compose orders them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
}

impl EndpointSpec {
    /// A fixed address: no second container may hold it at the same time.
    pub fn has_fixed_address(&self) -> bool {
        self.ipv4_address.is_some() || self.ipv6_address.is_some()
    }
}

/// One `devices:` entry: a host device node made available inside the container.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct DeviceSpec {
    pub host_path: String,
    pub container_path: String,
    /// cgroup permissions, some of `rwm`.
    pub permissions: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthSpec {
    /// `["NONE"]` disables an image healthcheck.
    pub test: Vec<String>,
    pub interval_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub start_period_ms: Option<u64>,
    pub retries: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoggingSpec {
    pub driver: Option<String>,
    pub options: BTreeMap<String, String>,
}

impl ContainerSpec {
    /// Hex sha256 of the normalized spec. Stored on the container; a change means recreate.
    pub fn hash(&self) -> String {
        let json = serde_json::to_vec(self).expect("spec serializes");
        hex(&Sha256::digest(&json))
    }

    /// Network keys in the order the container joins them: by `priority` (highest first), then
    /// by name, as Compose orders them. The first is the one it is created on.
    pub fn networks_by_priority(&self) -> Vec<&String> {
        let priority = |key: &String| {
            self.network_endpoints
                .get(key)
                .and_then(|e| e.priority)
                .unwrap_or(0)
        };
        let mut keys: Vec<&String> = self.networks.keys().collect();
        keys.sort_by(|a, b| priority(b).cmp(&priority(a)).then(a.cmp(b)));
        keys
    }

    /// A fixed IP address on some network: two containers of the service cannot run at once.
    pub fn has_fixed_address(&self) -> bool {
        self.network_endpoints
            .values()
            .any(EndpointSpec::has_fixed_address)
    }

    /// Every secret and config file, with what it is.
    pub fn file_mounts(&self) -> impl Iterator<Item = (FileKind, &FileMount)> {
        let secrets = self.secrets.iter().map(|f| (FileKind::Secret, f));
        secrets.chain(self.configs.iter().map(|f| (FileKind::Config, f)))
    }

    /// Whether a secret's (or a secret config's) content goes into this spec.
    pub fn holds_secret_files(&self) -> bool {
        self.file_mounts().any(|(_, f)| f.secret)
    }

    /// A mount that writes to the host (volume or bind, not read-only): two copies of the service
    /// must never run at once on it.
    pub fn has_writable_storage(&self) -> bool {
        self.mounts
            .iter()
            .any(|m| m.kind != MountKind::Tmpfs && !m.read_only)
            || self.storage.shares_writable_volumes()
    }
}

/// Label digests of secret values start with this, so a diff knows to show no value.
pub const HIDDEN_PREFIX: &str = "hidden:";

/// The Compose key a field of [`ContainerSpec`] comes from.
pub fn compose_key(spec_field: &str) -> &str {
    match spec_field {
        "mounts" | "mounted_content" => "volumes",
        "stop_grace_period_ms" => "stop_grace_period",
        "nano_cpus" => "cpus",
        "network_endpoints" => "networks",
        "device_requests" => "deploy",
        "seccomp_profile" => "security_opt",
        other => other,
    }
}

impl Service {
    /// The spec as the `reconciler.spec` label holds it: env values and fields that took a
    /// secret reduced to digests, keyed with the host's key where the value is secret, so the
    /// label tells which fields changed without holding (or letting anyone guess) a value.
    pub fn label_spec(&self) -> Json {
        let mut json = serde_json::to_value(&self.spec).expect("spec serializes");
        let Some(fields) = json.as_object_mut() else {
            return json;
        };
        if let Some(env) = fields.get_mut("environment").and_then(Json::as_object_mut) {
            for (key, value) in env.iter_mut() {
                let text = value.as_str().unwrap_or_default();
                *value = Json::String(if self.secret_env.contains(key) {
                    let digest = self.label_key.digest(&[key.as_bytes(), text.as_bytes()]);
                    format!("{HIDDEN_PREFIX}{digest}")
                } else {
                    hex(&Sha256::digest(text.as_bytes()))[..16].to_string()
                });
            }
        }
        for (field, value) in fields.iter_mut() {
            if field != "environment" && self.secret_fields.contains(compose_key(field)) {
                let digest = self
                    .label_key
                    .digest(&[field.as_bytes(), value.to_string().as_bytes()]);
                *value = Json::String(format!("{HIDDEN_PREFIX}{digest}"));
            }
        }
        for kind in [FileKind::Secret, FileKind::Config] {
            let entries = fields.get_mut(kind.key()).and_then(Json::as_array_mut);
            for entry in entries.into_iter().flatten() {
                self.hide_file_digest(entry);
            }
        }
        json
    }

    /// A secret file's content digest, keyed: the plain sha256 of a short secret is an
    /// offline-guessing oracle for anyone who can read labels.
    fn hide_file_digest(&self, entry: &mut Json) {
        if entry.get("secret") != Some(&Json::Bool(true)) {
            return;
        }
        if let Some(digest) = entry.get_mut("digest") {
            let text = digest.as_str().unwrap_or_default();
            let keyed = self.label_key.digest(&[b"file content", text.as_bytes()]);
            *digest = Json::String(format!("{HIDDEN_PREFIX}{keyed}"));
        }
    }

    /// What decides a recreate. A spec holding no secret hashes as it always has; one holding a
    /// secret is hashed in its label form, so the hash is no offline oracle for the secret.
    pub fn spec_hash(&self) -> String {
        if self.secret_env.is_empty()
            && self.secret_fields.is_empty()
            && !self.spec.holds_secret_files()
        {
            return self.spec.hash();
        }
        hex(&Sha256::digest(self.label_spec().to_string().as_bytes()))
    }

    /// A service as a file gives it when it says nothing but its container: Compose's and the
    /// reconciler's defaults for everything else.
    pub fn new(name: &str, spec: ContainerSpec) -> Self {
        Service {
            name: name.to_string(),
            spec,
            pull_policy: PullPolicy::Missing,
            depends_on: BTreeMap::new(),
            order: None,
            monitor: Duration::ZERO,
            health_timeout: Duration::from_secs(60),
            min_ready: Duration::from_secs(5),
            http_probe: None,
            pre_deploy: None,
            backup: Vec::new(),
            backup_keep: DEFAULT_BACKUP_KEEP,
            replicas: 1,
            secret_env: BTreeSet::new(),
            secret_fields: BTreeSet::new(),
            label_key: LabelKey::default(),
            repo_binds: vec![],
            lines: BTreeMap::new(),
        }
    }

    /// `start-first` only for a plainly stateless service, unless the file says otherwise.
    pub fn effective_order(&self) -> UpdateOrder {
        if let Some(order) = self.order {
            return order;
        }
        let stateless = self.spec.ports.iter().all(|p| p.published.is_none())
            && self.spec.container_name.is_none()
            && !self.spec.has_fixed_address()
            && !self.spec.has_writable_storage();
        if stateless {
            UpdateOrder::StartFirst
        } else {
            UpdateOrder::StopFirst
        }
    }
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_specs_hash_equally_and_any_field_change_changes_the_hash() {
        let a = ContainerSpec {
            image: "web:v1".into(),
            ..Default::default()
        };
        let mut b = a.clone();
        assert_eq!(a.hash(), b.hash());
        b.environment.insert("A".into(), "1".into());
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn a_published_port_makes_a_service_stop_first() {
        let mut spec = ContainerSpec {
            image: "web:v1".into(),
            ..Default::default()
        };
        let mut service = Service::new("web", spec.clone());
        assert_eq!(service.effective_order(), UpdateOrder::StartFirst);
        spec.ports.push(PortSpec {
            host_ip: None,
            published: Some("8080".into()),
            target: 80,
            protocol: "tcp".into(),
        });
        service.spec = spec;
        assert_eq!(service.effective_order(), UpdateOrder::StopFirst);
        service.order = Some(UpdateOrder::StartFirst);
        assert_eq!(service.effective_order(), UpdateOrder::StartFirst);
    }
}
