//! The parts of a [`super::ContainerSpec`] read from Compose's runtime keys (`sysctls`,
//! `ulimits`, `security_opt`, `dns`, `links`, `tmpfs`, ...), grouped by what they govern.
//!
//! Each group is flattened into the spec and every field is left out when empty, so a service
//! that uses none of these keys hashes exactly as before they existed.

use serde::Serialize;
use std::collections::BTreeMap;

fn is_false(b: &bool) -> bool {
    !*b
}

/// What the container may use of the host's CPU, memory, processes and disks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct ResourceSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<i64>,
    /// CPUs the container may run on, as the kernel writes them (`0-3,5`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpuset: Option<String>,
    /// Microseconds, as the engine takes them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_period: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_quota: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_rt_period: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_rt_runtime: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_reservation: Option<i64>,
    /// Memory and swap together; -1 for unlimited swap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memswap_limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_swappiness: Option<i64>,
    /// Only `true` is kept: `false` is the engine's default.
    #[serde(skip_serializing_if = "is_false")]
    pub oom_kill_disable: bool,
    /// 0 (the default) is left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i64>,
    /// -1 for unlimited; 0 (Compose's "unset") is left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<i64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ulimits: BTreeMap<String, UlimitSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blkio_config: Option<BlkioSpec>,
}

/// One `ulimits:` entry; a single number sets both limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UlimitSpec {
    pub soft: i64,
    pub hard: i64,
}

/// `blkio_config`: block IO weight and throttles, each list sorted by device path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct BlkioSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u16>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub weight_device: Vec<DeviceRate>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_read_bps: Vec<DeviceRate>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_read_iops: Vec<DeviceRate>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_write_bps: Vec<DeviceRate>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_write_iops: Vec<DeviceRate>,
}

/// A host block device and a weight, bytes or operations per second for it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct DeviceRate {
    pub path: String,
    pub rate: i64,
}

/// How the container is confined: security options, kernel parameters, namespaces and cgroups,
/// runtime, groups, device access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct ConfinementSpec {
    /// As written, `:` after the option name spelled `=`, sorted: `seccomp=./profile.json`
    /// names a profile of the repository, whose content goes in [`Self::seccomp_profile`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub security_opt: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<SeccompProfile>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userns_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uts: Option<String>,
    /// The cgroup namespace: `host` or `private`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_parent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_cgroup_rules: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<GpuRequest>,
}

/// A seccomp profile file of the repository: its digest is hashed (an edit recreates the
/// service), its compact JSON is what the engine gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeccompProfile {
    /// As written in `security_opt`.
    pub path: String,
    pub digest: String,
    #[serde(skip)]
    pub json: String,
}

/// One `gpus:` request (`gpus: all` is one request for every GPU).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct GpuRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// -1 for all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_ids: Vec<String>,
    /// Sorted; `gpu` is always among them when sent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// How the container is named and reached on its networks beyond its aliases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct NetworkingSpec {
    /// DNS servers, in the order given (the resolver tries them in order).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_opt: Vec<String>,
    /// Search domains, in the order given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domainname: Option<String>,
    /// `PORT/PROTO` or `START-END/PROTO`, sorted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expose: Vec<String>,
    /// `CONTAINER:ALIAS` for services of the stack, sorted: each alias resolves to that
    /// container from this one only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    /// `CONTAINER:ALIAS` for containers outside the stack, sorted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub external_links: Vec<String>,
}

/// Filesystems beyond `volumes:`: service-level tmpfs, volumes of other containers, the
/// storage driver's options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct StorageSpec {
    /// Target -> mount options (`size=64m,mode=1777`), empty for none.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tmpfs: BTreeMap<String, String>,
    /// `CONTAINER[:ro|:rw]`, sorted: a service of the stack by its container name, or a
    /// container outside it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes_from: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub storage_opt: BTreeMap<String, String>,
}

impl StorageSpec {
    /// Whether some `volumes_from` entry is writable: two copies of the service must then never
    /// run at once, as with a writable volume of its own.
    pub fn shares_writable_volumes(&self) -> bool {
        self.volumes_from.iter().any(|v| !v.ends_with(":ro"))
    }
}

#[cfg(test)]
mod tests {
    use crate::desired::model::ContainerSpec;

    /// The spec of a service that uses none of these keys serializes (and so hashes) exactly as
    /// it did before they existed: no container is recreated by an upgrade.
    #[test]
    fn a_spec_without_runtime_keys_serializes_as_before_they_existed() {
        let spec = ContainerSpec {
            image: "web:1".into(),
            ..Default::default()
        };
        let before = r#"{"image":"web:1","command":null,"entrypoint":null,"environment":{},"ports":[],"mounts":[],"networks":{},"healthcheck":null,"restart":null,"labels":{},"user":null,"working_dir":null,"hostname":null,"container_name":null,"stop_signal":null,"stop_grace_period_ms":null,"extra_hosts":[],"init":null,"read_only":false,"cap_add":[],"cap_drop":[],"privileged":false,"network_mode":null,"pid":null,"ipc":null,"mem_limit":null,"nano_cpus":null,"logging":null,"mounted_content":null}"#;
        assert_eq!(serde_json::to_string(&spec).unwrap(), before);
    }

    #[test]
    fn a_runtime_key_appears_in_the_spec_under_its_compose_name() {
        let mut spec = ContainerSpec::default();
        spec.confinement
            .sysctls
            .insert("net.core.somaxconn".into(), "1024".into());
        spec.resources.pids_limit = Some(100);
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["sysctls"]["net.core.somaxconn"], "1024");
        assert_eq!(json["pids_limit"], 100);
    }
}
