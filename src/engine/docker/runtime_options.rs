//! Compose's runtime keys (resources, confinement, addressing, storage) as Engine API 1.41
//! fields: the `HostConfig` they fill, and the exposed ports and links the create body and every
//! network endpoint take.

use crate::desired::{ContainerSpec, DeviceRate};
use bollard::models::{
    DeviceRequest, HostConfig, HostConfigCgroupnsModeEnum, ResourcesBlkioWeightDevice,
    ResourcesUlimits, ThrottleDevice,
};
use std::collections::HashMap;

/// The host config of the runtime keys; the adapter's own fields go on top of it.
pub(super) fn runtime_host_config(spec: &ContainerSpec) -> HostConfig {
    let (r, c, n, s) = (
        &spec.resources,
        &spec.confinement,
        &spec.networking,
        &spec.storage,
    );
    let some_vec = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let unconfined_paths = c.security_opt.iter().any(|o| o == "systempaths=unconfined");
    let blkio = r.blkio_config.clone().unwrap_or_default();
    let throttle = |list: &Vec<DeviceRate>| {
        (!list.is_empty()).then(|| {
            list.iter()
                .map(|d| ThrottleDevice {
                    path: Some(d.path.clone()),
                    rate: Some(d.rate),
                })
                .collect()
        })
    };
    HostConfig {
        cpu_shares: r.cpu_shares,
        cpuset_cpus: r.cpuset.clone(),
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_realtime_period: r.cpu_rt_period,
        cpu_realtime_runtime: r.cpu_rt_runtime,
        memory_reservation: r.mem_reservation,
        memory_swap: r.memswap_limit,
        memory_swappiness: r.mem_swappiness,
        oom_kill_disable: r.oom_kill_disable.then_some(true),
        oom_score_adj: r.oom_score_adj,
        pids_limit: r.pids_limit,
        shm_size: r.shm_size,
        ulimits: (!r.ulimits.is_empty()).then(|| {
            r.ulimits
                .iter()
                .map(|(name, u)| ResourcesUlimits {
                    name: Some(name.clone()),
                    soft: Some(u.soft),
                    hard: Some(u.hard),
                })
                .collect()
        }),
        blkio_weight: blkio.weight,
        blkio_weight_device: (!blkio.weight_device.is_empty()).then(|| {
            blkio
                .weight_device
                .iter()
                .map(|d| ResourcesBlkioWeightDevice {
                    path: Some(d.path.clone()),
                    weight: Some(d.rate as usize),
                })
                .collect()
        }),
        blkio_device_read_bps: throttle(&blkio.device_read_bps),
        blkio_device_read_iops: throttle(&blkio.device_read_iops),
        blkio_device_write_bps: throttle(&blkio.device_write_bps),
        blkio_device_write_iops: throttle(&blkio.device_write_iops),
        security_opt: security_options(spec),
        // `systempaths=unconfined` is the CLI's word for "mask and protect nothing".
        masked_paths: unconfined_paths.then(Vec::new),
        readonly_paths: unconfined_paths.then(Vec::new),
        sysctls: (!c.sysctls.is_empty())
            .then(|| c.sysctls.clone().into_iter().collect::<HashMap<_, _>>()),
        userns_mode: c.userns_mode.clone(),
        uts_mode: c.uts.clone(),
        cgroupns_mode: c.cgroup.as_deref().map(|mode| match mode {
            "host" => HostConfigCgroupnsModeEnum::HOST,
            _ => HostConfigCgroupnsModeEnum::PRIVATE,
        }),
        cgroup_parent: c.cgroup_parent.clone(),
        runtime: c.runtime.clone(),
        group_add: some_vec(&c.group_add),
        device_cgroup_rules: some_vec(&c.device_cgroup_rules),
        // `gpus:` and `deploy.resources.reservations.devices`, as Compose sends both.
        device_requests: (!c.gpus.is_empty() || !spec.device_requests.is_empty()).then(|| {
            c.gpus
                .iter()
                .chain(&spec.device_requests)
                .map(|g| DeviceRequest {
                    driver: g.driver.clone(),
                    count: g.count,
                    device_ids: (!g.device_ids.is_empty()).then(|| g.device_ids.clone()),
                    capabilities: Some(vec![g.capabilities.clone()]),
                    options: (!g.options.is_empty())
                        .then(|| g.options.clone().into_iter().collect()),
                })
                .collect()
        }),
        dns: some_vec(&n.dns),
        dns_options: some_vec(&n.dns_opt),
        dns_search: some_vec(&n.dns_search),
        // Legacy links, for the default bridge; user networks take them per endpoint.
        links: links(spec),
        tmpfs: (!s.tmpfs.is_empty())
            .then(|| s.tmpfs.clone().into_iter().collect::<HashMap<_, _>>()),
        volumes_from: (!s.volumes_from.is_empty()).then(|| {
            s.volumes_from
                .iter()
                .map(|v| v.strip_prefix("container:").unwrap_or(v).to_string())
                .collect()
        }),
        storage_opt: (!s.storage_opt.is_empty())
            .then(|| s.storage_opt.clone().into_iter().collect::<HashMap<_, _>>()),
        ..Default::default()
    }
}

/// `security_opt` as the engine takes it: a repository seccomp profile as its JSON content,
/// `systempaths=unconfined` left to the masked and read-only paths.
fn security_options(spec: &ContainerSpec) -> Option<Vec<String>> {
    let c = &spec.confinement;
    let options: Vec<String> = c
        .security_opt
        .iter()
        .filter(|o| *o != "systempaths=unconfined")
        .map(|o| match (&c.seccomp_profile, o.strip_prefix("seccomp=")) {
            (Some(profile), Some(path)) if path == profile.path => {
                format!("seccomp={}", profile.json)
            }
            _ => o.clone(),
        })
        .collect();
    (!options.is_empty()).then_some(options)
}

/// `links` and `external_links` together, `CONTAINER:ALIAS` each.
pub(super) fn links(spec: &ContainerSpec) -> Option<Vec<String>> {
    let n = &spec.networking;
    let all: Vec<String> = n.links.iter().chain(&n.external_links).cloned().collect();
    (!all.is_empty()).then_some(all)
}

/// `expose` entries as the engine's `PORT/PROTO` keys, ranges spelled out.
pub(super) fn exposed_ports(spec: &ContainerSpec) -> Vec<String> {
    let mut out = Vec::new();
    for entry in &spec.networking.expose {
        let (ports, proto) = entry.split_once('/').unwrap_or((entry, "tcp"));
        let (start, end) = match ports.split_once('-') {
            Some((a, b)) => (a.parse::<u16>(), b.parse::<u16>()),
            None => (ports.parse(), ports.parse()),
        };
        if let (Ok(start), Ok(end)) = (start, end) {
            out.extend((start..=end).map(|p| format!("{p}/{proto}")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::create_body;
    use crate::desired::{ContainerSpec, GpuRequest, SeccompProfile, UlimitSpec};
    use crate::engine::CreateRequest;
    use std::collections::BTreeMap;

    fn body(spec: ContainerSpec) -> bollard::models::ContainerCreateBody {
        create_body(&CreateRequest {
            name: "web-app-1".into(),
            project: "web".into(),
            service: "app".into(),
            spec: ContainerSpec {
                image: "web:1".into(),
                networks: BTreeMap::from([("default".into(), vec![])]),
                ..spec
            },
            labels: BTreeMap::new(),
            networks: BTreeMap::from([("default".into(), "web_default".into())]),
            volumes: BTreeMap::new(),
            repo_root: None,
            content_files: BTreeMap::new(),
            data_root: None,
        })
    }

    #[test]
    fn kernel_parameters_limits_and_tmpfs_reach_the_host_config() {
        let mut spec = ContainerSpec::default();
        spec.confinement
            .sysctls
            .insert("net.core.somaxconn".into(), "1024".into());
        spec.resources.ulimits.insert(
            "nofile".into(),
            UlimitSpec {
                soft: 1024,
                hard: 2048,
            },
        );
        spec.resources.pids_limit = Some(100);
        spec.resources.shm_size = Some(64 << 20);
        spec.storage.tmpfs.insert("/run".into(), "size=1m".into());
        let host = body(spec).host_config.unwrap();
        assert_eq!(host.sysctls.unwrap()["net.core.somaxconn"], "1024");
        let ulimit = &host.ulimits.unwrap()[0];
        assert_eq!(
            (ulimit.name.as_deref(), ulimit.soft, ulimit.hard),
            (Some("nofile"), Some(1024), Some(2048))
        );
        assert_eq!(
            (host.pids_limit, host.shm_size),
            (Some(100), Some(64 << 20))
        );
        assert_eq!(host.tmpfs.unwrap()["/run"], "size=1m");
    }

    #[test]
    fn a_spec_without_runtime_keys_sends_none_of_their_fields() {
        let host = body(ContainerSpec::default()).host_config.unwrap();
        assert!(host.sysctls.is_none() && host.security_opt.is_none() && host.links.is_none());
        assert!(host.oom_kill_disable.is_none() && host.masked_paths.is_none());
    }

    #[test]
    fn a_repository_seccomp_profile_is_sent_as_its_content() {
        let mut spec = ContainerSpec::default();
        spec.confinement.security_opt = vec![
            "no-new-privileges".into(),
            "seccomp=./profile.json".into(),
            "systempaths=unconfined".into(),
        ];
        spec.confinement.seccomp_profile = Some(SeccompProfile {
            path: "./profile.json".into(),
            digest: "d".into(),
            json: r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#.into(),
        });
        let host = body(spec).host_config.unwrap();
        assert_eq!(
            host.security_opt.unwrap(),
            [
                "no-new-privileges".to_string(),
                r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW"}"#.to_string()
            ]
        );
        assert_eq!(host.masked_paths, Some(vec![]));
        assert_eq!(host.readonly_paths, Some(vec![]));
    }

    #[test]
    fn links_go_to_every_endpoint_and_exposed_ranges_are_spelled_out() {
        let mut spec = ContainerSpec::default();
        spec.networking.links = vec!["web-db-1:database".into()];
        spec.networking.external_links = vec!["redis:cache".into()];
        spec.networking.expose = vec!["53/udp".into(), "8000-8002/tcp".into()];
        let body = body(spec);
        let endpoint = &body.networking_config.unwrap().endpoints_config.unwrap()["web_default"];
        let links = vec!["web-db-1:database".to_string(), "redis:cache".to_string()];
        assert_eq!(endpoint.links.as_ref(), Some(&links));
        assert_eq!(body.host_config.unwrap().links, Some(links));
        assert_eq!(
            body.exposed_ports.unwrap(),
            ["53/udp", "8000/tcp", "8001/tcp", "8002/tcp"]
        );
    }

    #[test]
    fn gpus_become_device_requests_and_volumes_from_drops_the_container_prefix() {
        let mut spec = ContainerSpec::default();
        spec.confinement.gpus = vec![GpuRequest {
            driver: Some("nvidia".into()),
            count: Some(-1),
            device_ids: vec![],
            capabilities: vec!["gpu".into()],
            options: BTreeMap::new(),
        }];
        spec.storage.volumes_from = vec!["container:legacy:ro".into(), "web-db-1".into()];
        spec.confinement.cgroup = Some("host".into());
        let host = body(spec).host_config.unwrap();
        let request = &host.device_requests.unwrap()[0];
        assert_eq!(request.count, Some(-1));
        assert_eq!(request.capabilities, Some(vec![vec!["gpu".to_string()]]));
        assert_eq!(host.volumes_from.unwrap(), ["legacy:ro", "web-db-1"]);
        assert_eq!(
            host.cgroupns_mode,
            Some(bollard::models::HostConfigCgroupnsModeEnum::HOST)
        );
    }

    #[test]
    fn terminal_and_domain_keys_go_to_the_container_config() {
        let mut spec = ContainerSpec {
            tty: true,
            stdin_open: true,
            ..Default::default()
        };
        spec.networking.domainname = Some("example.com".into());
        let body = body(spec);
        assert_eq!((body.tty, body.open_stdin), (Some(true), Some(true)));
        assert_eq!(body.domainname.as_deref(), Some("example.com"));
    }
}
