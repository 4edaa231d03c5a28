//! The host policy for Compose's runtime keys: what loosens the confinement Docker gives every
//! container (security options, host namespaces, another runtime, a cgroup parent, device
//! rules, GPUs, protection from the OOM killer) or reaches a container outside the stack.
//!
//! Limits that only tighten (`pids_limit`, `cpu_shares`, `ulimits`, `shm_size`, ...) and what
//! stays inside the container's own namespaces (namespaced `sysctls`, `dns`, `tmpfs`,
//! `group_add`) need no allowance.

use super::Policy;
use crate::desired::model::ContainerSpec;

/// The runtime Docker uses unless told otherwise, by its usual names.
const DEFAULT_RUNTIMES: &[&str] = &["runc", "io.containerd.runc.v2"];

impl Policy {
    /// Each refusal as (`key` or `key:detail` whose line the converter recorded, message).
    pub(super) fn runtime_key_refusals(&self, spec: &ContainerSpec) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let c = &spec.confinement;
        if !self.allow_security_opt {
            for option in &c.security_opt {
                if let Some(why) = loosening(option) {
                    out.push((
                        format!("security_opt:{option}"),
                        format!("security_opt '{option}' is refused by host policy ({why}); the host can allow it with --allow security-opt"),
                    ));
                }
            }
        }
        if !self.allow_host_namespaces {
            for (key, value) in [
                ("userns_mode", &c.userns_mode),
                ("uts", &c.uts),
                ("cgroup", &c.cgroup),
            ] {
                if value.as_deref() == Some("host") {
                    out.push((key.into(), format!("{key} 'host' is refused by host policy (it shares the host's namespace); the host can allow it with --allow host-namespaces")));
                }
            }
        }
        if let Some(runtime) = c.runtime.as_deref() {
            if !DEFAULT_RUNTIMES.contains(&runtime) && !self.allowed_runtimes.contains(runtime) {
                out.push(("runtime".into(), format!("runtime '{runtime}' is refused by host policy (a runtime other than Docker's default decides how, and whether, the container is isolated); the host can allow it with --allow runtime:{runtime}")));
            }
        }
        if c.cgroup_parent.is_some() && !self.allow_cgroup_parent {
            out.push(("cgroup_parent".into(), "cgroup_parent is refused by host policy (it places the container in a host cgroup of the file's choosing, outside the limits the host sets for containers); the host can allow it with --allow cgroup-parent".into()));
        }
        if !c.device_cgroup_rules.is_empty() && !self.allow_all_devices {
            out.push(("device_cgroup_rules".into(), "device_cgroup_rules are refused by host policy (they let the container create and use host device nodes); the host can allow them with --allow devices".into()));
        }
        if !c.gpus.is_empty() && !self.allow_gpus && !self.allow_all_devices {
            out.push(("gpus".into(), "gpus are refused by host policy (they give the container the host's GPU devices); the host can allow them with --allow gpus, or every device with --allow devices".into()));
        }
        let r = &spec.resources;
        if !self.allow_oom_protection {
            if r.oom_score_adj.is_some_and(|v| v < 0) {
                out.push(("oom_score_adj".into(), "a negative oom_score_adj is refused by host policy (when memory runs out the kernel would kill the host's own processes before this container's); the host can allow it with --allow oom-protection".into()));
            }
            if r.oom_kill_disable && spec.mem_limit.is_none() {
                out.push(("oom_kill_disable".into(), "oom_kill_disable without mem_limit is refused by host policy (a container the OOM killer spares, with no memory limit, can exhaust the host's memory); set mem_limit, or the host can allow it with --allow oom-protection".into()));
            }
        }
        if !self.allow_container_namespaces {
            for from in &spec.storage.volumes_from {
                if let Some(name) = from.strip_prefix("container:") {
                    let name = name.strip_suffix(":ro").unwrap_or(name);
                    out.push((format!("volumes_from:{name}"), format!("volumes_from '{from}' is refused by host policy (it mounts the volumes of a container outside this stack); the host can allow it with --allow container-namespaces")));
                }
            }
            let default_bridge = matches!(spec.network_mode.as_deref(), Some("bridge" | "default"));
            if default_bridge && !spec.networking.external_links.is_empty() {
                out.push(("external_links".into(), "external_links on the default bridge are refused by host policy (a legacy link copies the linked container's environment, its passwords included, into this one); use a shared network, or the host can allow it with --allow container-namespaces".into()));
            }
        }
        out
    }
}

/// Why a security option loosens confinement; `None` for what only tightens or restates
/// Docker's default.
fn loosening(option: &str) -> Option<&'static str> {
    let (name, value) = option.split_once('=').unwrap_or((option, ""));
    match (name, value) {
        ("no-new-privileges", _) => None,
        ("seccomp", "builtin") | ("apparmor", "docker-default") => None,
        ("seccomp", "unconfined") => Some("it turns off the filter on the system calls the container may make"),
        ("seccomp", _) => Some("it replaces Docker's seccomp profile with one from the repository, which may allow any system call"),
        ("apparmor", "unconfined") => Some("it turns off AppArmor for the container"),
        ("apparmor", _) => Some("it replaces Docker's AppArmor profile with another profile of the host"),
        ("label", "disable") => Some("it turns off SELinux separation for the container"),
        ("label", _) => Some("it changes the container's SELinux label, which decides the host files it may reach"),
        ("systempaths", _) => Some("it unmasks the /proc and /sys paths Docker hides from containers"),
        _ => Some("it changes how the container is confined"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::model::{ConfinementSpec, GpuRequest};

    fn refused(policy: &Policy, spec: &ContainerSpec) -> Vec<String> {
        policy
            .runtime_key_refusals(spec)
            .into_iter()
            .map(|(key, message)| format!("{key}: {message}"))
            .collect()
    }

    fn with_security_opt(options: &[&str]) -> ContainerSpec {
        ContainerSpec {
            confinement: ConfinementSpec {
                security_opt: options.iter().map(|o| o.to_string()).collect(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn allowing(value: &str) -> Policy {
        let mut policy = Policy::default();
        policy.allow(value).unwrap();
        policy
    }

    #[test]
    fn security_options_that_loosen_confinement_need_the_host_to_allow_them() {
        let loosening = [
            "seccomp=unconfined",
            "seccomp=./profile.json",
            "apparmor=unconfined",
            "apparmor=my-profile",
            "label=disable",
            "label=type:spc_t",
            "systempaths=unconfined",
        ];
        for option in loosening {
            let message = refused(&Policy::default(), &with_security_opt(&[option])).join("\n");
            assert!(
                message.starts_with(&format!(
                    "security_opt:{option}: security_opt '{option}' is refused by host policy"
                )) && message.ends_with("--allow security-opt"),
                "{option}: {message}"
            );
        }
        assert!(refused(&allowing("security-opt"), &with_security_opt(&loosening)).is_empty());
    }

    #[test]
    fn no_new_privileges_and_dockers_own_profiles_are_always_fine() {
        let tightening = with_security_opt(&[
            "no-new-privileges",
            "no-new-privileges=true",
            "seccomp=builtin",
            "apparmor=docker-default",
        ]);
        assert!(refused(&Policy::default(), &tightening).is_empty());
    }

    #[test]
    fn host_user_uts_and_cgroup_namespaces_need_host_namespaces() {
        let spec = ContainerSpec {
            confinement: ConfinementSpec {
                userns_mode: Some("host".into()),
                uts: Some("host".into()),
                cgroup: Some("host".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let all = refused(&Policy::default(), &spec);
        assert_eq!(all.len(), 3, "{all:#?}");
        assert!(
            all.iter().all(|m| m.contains("--allow host-namespaces")),
            "{all:#?}"
        );
        assert!(refused(&allowing("host-namespaces"), &spec).is_empty());
        let private = ContainerSpec {
            confinement: ConfinementSpec {
                cgroup: Some("private".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(refused(&Policy::default(), &private).is_empty());
    }

    #[test]
    fn another_runtime_is_allowed_by_name_and_runc_always() {
        let with_runtime = |name: &str| ContainerSpec {
            confinement: ConfinementSpec {
                runtime: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(refused(&Policy::default(), &with_runtime("runc")).is_empty());
        let message = refused(&Policy::default(), &with_runtime("nvidia")).join("");
        assert!(message.contains("--allow runtime:nvidia"), "{message}");
        assert!(refused(&allowing("runtime:nvidia"), &with_runtime("nvidia")).is_empty());
        assert!(!refused(&allowing("runtime:kata"), &with_runtime("nvidia")).is_empty());
        assert!(Policy::default().allow("runtime:").is_err());
        assert!(Policy::default().allow("runtime:a b").is_err());
    }

    #[test]
    fn cgroup_parent_device_rules_and_gpus_are_host_access() {
        let spec = ContainerSpec {
            confinement: ConfinementSpec {
                cgroup_parent: Some("/system.slice".into()),
                device_cgroup_rules: vec!["c 1:3 mr".into()],
                gpus: vec![GpuRequest {
                    driver: None,
                    count: Some(-1),
                    device_ids: vec![],
                    capabilities: vec!["gpu".into()],
                    options: Default::default(),
                }],
                ..Default::default()
            },
            ..Default::default()
        };
        let all = refused(&Policy::default(), &spec).join("\n");
        for flag in ["--allow cgroup-parent", "--allow devices", "--allow gpus"] {
            assert!(all.contains(flag), "{flag}: {all}");
        }
        let mut policy = allowing("cgroup-parent");
        policy.allow("devices").unwrap();
        assert!(
            refused(&policy, &spec).is_empty(),
            "devices covers GPUs too"
        );
        let mut gpus_only = allowing("gpus");
        gpus_only.allow("cgroup-parent").unwrap();
        assert_eq!(
            refused(&gpus_only, &spec).len(),
            1,
            "device rules still need devices"
        );
    }

    #[test]
    fn protection_from_the_oom_killer_needs_the_host_to_allow_it() {
        let mut spec = ContainerSpec::default();
        spec.resources.oom_score_adj = Some(-500);
        spec.resources.oom_kill_disable = true;
        let all = refused(&Policy::default(), &spec);
        assert_eq!(all.len(), 2, "{all:#?}");
        assert!(all.iter().all(|m| m.contains("--allow oom-protection")));
        spec.mem_limit = Some(1 << 30);
        spec.resources.oom_score_adj = Some(500);
        assert!(
            refused(&Policy::default(), &spec).is_empty(),
            "a positive score and a limited container harm only themselves"
        );
        spec.mem_limit = None;
        assert!(refused(&allowing("oom-protection"), &spec).is_empty());
    }

    #[test]
    fn containers_outside_the_stack_need_container_namespaces() {
        let mut spec = ContainerSpec::default();
        spec.storage.volumes_from = vec!["container:other:ro".into(), "web-db-1".into()];
        spec.networking.external_links = vec!["other:db".into()];
        let all = refused(&Policy::default(), &spec);
        assert_eq!(
            all.len(),
            1,
            "a user network's link is only a name: {all:#?}"
        );
        assert!(
            all[0].starts_with("volumes_from:other: volumes_from 'container:other:ro'"),
            "{all:#?}"
        );
        spec.network_mode = Some("bridge".into());
        let all = refused(&Policy::default(), &spec).join("\n");
        assert!(
            all.contains("copies the linked container's environment"),
            "{all}"
        );
        assert!(refused(&allowing("container-namespaces"), &spec).is_empty());
    }
}
