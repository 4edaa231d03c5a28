//! Networks and volumes as the engine has them, and how they differ from what the file says.
//!
//! The engine cannot change a network or a volume in place. Compose refuses to use a network
//! whose definition changed ("needs to be recreated") and never silently drops a volume's data;
//! the reconciler recreates neither: it says what differs and leaves the choice to a person.

use crate::desired::{IpamPool, NetworkDef, VolumeDef};
use crate::labels;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedNetwork {
    pub driver: String,
    pub driver_opts: BTreeMap<String, String>,
    pub enable_ipv6: bool,
    pub internal: bool,
    pub ipam_driver: String,
    pub ipam_config: Vec<IpamPool>,
    pub ipam_options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedVolume {
    pub driver: String,
    pub driver_opts: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    Network,
    Volume,
}

/// A stack's network or volume that exists with another definition than the file's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceDrift {
    pub kind: ResourceKind,
    /// The key in the file (`front`), and the engine's name (`shop_front`).
    pub key: String,
    pub name: String,
    /// What the engine would have to change, `field from -> to`: the stack is not applied
    /// while any is left.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<String>,
    /// Worth a word, not a stop: labels that differ, a resource made outside the stack.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl ResourceDrift {
    pub fn blocks(&self) -> bool {
        !self.differences.is_empty()
    }

    /// What a person can do about it, said once under the differences.
    pub fn remedy(&self) -> String {
        match self.kind {
            ResourceKind::Network => format!("the reconciler does not recreate a network: revert the change, or remove the network by hand (stop its containers, `docker network rm {}`) and apply again", self.name),
            ResourceKind::Volume => format!("the reconciler never deletes a volume: revert the change, give the volume a new `name:` (a new volume is made, the old one kept), or move the data out and remove it by hand (`docker volume rm {}`)", self.name),
        }
    }
}

impl std::fmt::Display for ResourceDrift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            ResourceKind::Network => "network",
            ResourceKind::Volume => "volume",
        };
        write!(f, "{kind} {} ({})", self.key, self.name)?;
        if self.blocks() {
            write!(
                f,
                " exists with another definition: {}; {}",
                self.differences.join(", "),
                self.remedy()
            )?;
        }
        if !self.notes.is_empty() {
            let sep = if self.blocks() { "; " } else { ": " };
            write!(f, "{sep}{}", self.notes.join("; "))?;
        }
        Ok(())
    }
}

/// Driver options the engine sets itself on some networks (Compose skips the same ones).
const ENGINE_NETWORK_OPTIONS: &[&str] = &[
    "com.docker.network.driver.overlay.vxlanid_list",
    "com.docker.network.windowsshim.hnsid",
    "com.docker.network.windowsshim.networkname",
];

/// How `found` differs from `def` (never for an external network: it is not the stack's).
pub fn network_drift(
    project: &str,
    key: &str,
    def: &NetworkDef,
    found: &ObservedNetwork,
) -> Option<ResourceDrift> {
    if def.external {
        return None;
    }
    let mut c = Comparison::new(&def.secret_fields);
    if let Some(driver) = &def.driver {
        c.value("driver", &found.driver, driver);
    }
    c.options("driver_opts", &found.driver_opts, &def.driver_opts, |k| {
        ENGINE_NETWORK_OPTIONS.contains(&k)
    });
    // `attachable` is not compared, as Compose does not: it only lets Swarm services join, and
    // Compose 1.x made every network attachable.
    c.value(
        "internal",
        &found.internal.to_string(),
        &def.internal.to_string(),
    );
    // IPv6 the file asks for must be there; IPv6 the file does not mention may be a daemon's
    // default (Engine 27+ can turn it on for every network), so it is said, not a stop.
    if def.enable_ipv6 && !found.enable_ipv6 {
        c.value("enable_ipv6", "false", "true");
    } else if found.enable_ipv6 && !def.enable_ipv6 {
        c.notes.push("enable_ipv6 is on but not in the file: the engine's default, or a setting since removed; not changed".into());
    }
    if let Some(ipam) = &def.ipam {
        if let Some(driver) = &ipam.driver {
            c.value("ipam.driver", &found.ipam_driver, driver);
        }
        c.pools(&found.ipam_config, &ipam.config);
        c.options("ipam.options", &found.ipam_options, &ipam.options, |_| {
            false
        });
    }
    c.labels_and_owner(project, (labels::NETWORK, key), &def.labels, &found.labels);
    c.drift(ResourceKind::Network, key, &def.name)
}

/// How `found` differs from `def` (never for an external volume).
pub fn volume_drift(
    project: &str,
    key: &str,
    def: &VolumeDef,
    found: &ObservedVolume,
) -> Option<ResourceDrift> {
    if def.external {
        return None;
    }
    let mut c = Comparison::new(&def.secret_fields);
    if let Some(driver) = &def.driver {
        c.value("driver", &found.driver, driver);
    }
    // `com.docker.*` options are the engine's own (Compose skips them too).
    c.options("driver_opts", &found.driver_opts, &def.driver_opts, |k| {
        k.starts_with("com.docker.")
    });
    c.labels_and_owner(project, (labels::VOLUME, key), &def.labels, &found.labels);
    c.drift(ResourceKind::Volume, key, &def.name)
}

/// What differs, said field by field; the values of fields that took a secret are never shown.
struct Comparison<'a> {
    /// Fields (`driver_opts`, `labels`, ...) whose values took a secret-looking variable.
    secret_fields: &'a BTreeSet<String>,
    differences: Vec<String>,
    notes: Vec<String>,
}

impl<'a> Comparison<'a> {
    fn new(secret_fields: &'a BTreeSet<String>) -> Self {
        Self {
            secret_fields,
            differences: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn drift(self, kind: ResourceKind, key: &str, name: &str) -> Option<ResourceDrift> {
        (!self.differences.is_empty() || !self.notes.is_empty()).then(|| ResourceDrift {
            kind,
            key: key.to_string(),
            name: name.to_string(),
            differences: self.differences,
            notes: self.notes,
        })
    }

    fn hidden(&self, field: &str) -> bool {
        let root = field.split(['.', '[']).next().unwrap_or(field);
        self.secret_fields
            .iter()
            .any(|f| f == field || f == root || field.starts_with(&format!("{f}.")))
    }

    fn change(&self, field: &str, from: &str, to: &str) -> String {
        if self.hidden(field) {
            return format!("{field} changed (value hidden)");
        }
        let show = |v: &str| {
            if v.is_empty() {
                "(unset)".to_string()
            } else {
                v.to_string()
            }
        };
        format!("{field} {} -> {}", show(from), show(to))
    }

    fn value(&mut self, field: &str, found: &str, wanted: &str) {
        if found != wanted {
            let change = self.change(field, found, wanted);
            self.differences.push(change);
        }
    }

    /// Options the file gives must hold its values. One only the engine has (a daemon's
    /// `default-network-opts`, or one since removed from the file) is said, not a stop: the
    /// engine adds its own, and blocking every stack for them would help no one.
    fn options(
        &mut self,
        field: &str,
        found: &BTreeMap<String, String>,
        wanted: &BTreeMap<String, String>,
        skip: impl Fn(&str) -> bool,
    ) {
        for (k, now) in wanted {
            let was = found.get(k).map_or("", String::as_str);
            self.value(&format!("{field}.{k}"), was, now);
        }
        for (k, was) in found {
            if !wanted.contains_key(k) && !skip(k) {
                let shown = if self.hidden(field) {
                    String::new()
                } else {
                    format!(" ({was})")
                };
                self.notes.push(format!("{field}.{k} is set{shown} but not in the file: the engine's default, or an option since removed; not changed"));
            }
        }
    }

    /// Pools are matched by subnet. A pool the engine chose itself for a family the file gives
    /// no subnet of (an IPv6 pool from the daemon's defaults) is not a difference.
    fn pools(&mut self, found: &[IpamPool], wanted: &[IpamPool]) {
        if wanted.is_empty() {
            return;
        }
        let family = |p: &IpamPool| p.subnet.as_deref().map(|s| s.contains(':'));
        let families: BTreeSet<Option<bool>> = wanted.iter().map(family).collect();
        let in_families: Vec<&IpamPool> = found
            .iter()
            .filter(|f| families.contains(&family(f)))
            .collect();
        let (was, now) = (subnets(in_families.into_iter()), subnets(wanted.iter()));
        if was != now {
            self.value("ipam.config.subnet", &was, &now);
            return;
        }
        for w in wanted {
            let Some(f) = found.iter().find(|f| f.subnet == w.subnet) else {
                continue;
            };
            let at = format!("ipam.config[{}]", w.subnet.as_deref().unwrap_or_default());
            let text = |v: &Option<String>| v.clone().unwrap_or_default();
            // The engine picks a gateway when the file gives none.
            if w.gateway.is_some() {
                self.value(
                    &format!("{at}.gateway"),
                    &text(&f.gateway),
                    &text(&w.gateway),
                );
            }
            self.value(
                &format!("{at}.ip_range"),
                &text(&f.ip_range),
                &text(&w.ip_range),
            );
            let aux = format!("{at}.aux_addresses");
            for (k, now) in &w.aux_addresses {
                let was = f.aux_addresses.get(k).map_or("", String::as_str);
                self.value(&format!("{aux}.{k}"), was, now);
            }
            for (k, was) in &f.aux_addresses {
                if !w.aux_addresses.contains_key(k) {
                    self.value(&format!("{aux}.{k}"), was, "");
                }
            }
        }
    }

    /// Labels the file gives that the resource lacks or holds otherwise (Compose only warns:
    /// they cannot be changed in place), and a resource another project or a person made.
    fn labels_and_owner(
        &mut self,
        project: &str,
        (key_label, key): (&str, &str),
        wanted: &BTreeMap<String, String>,
        found: &BTreeMap<String, String>,
    ) {
        let user = |k: &String| !k.starts_with("com.docker.") && !k.starts_with(labels::PREFIX);
        let keys: BTreeSet<&String> = found
            .keys()
            .chain(wanted.keys())
            .filter(|k| user(k))
            .collect();
        let labels: Vec<String> = keys
            .into_iter()
            .filter(|k| found.get(*k) != wanted.get(*k))
            .map(|k| {
                self.change(
                    &format!("labels.{k}"),
                    found.get(k).map_or("", String::as_str),
                    wanted.get(k).map_or("", String::as_str),
                )
            })
            .collect();
        if !labels.is_empty() {
            self.notes.push(format!(
                "{} (labels cannot be changed in place; not applied)",
                labels.join(", ")
            ));
        }
        match found.get(labels::PROJECT) {
            Some(p) if p == project && found.get(key_label).is_some_and(|k| k == key) => {}
            Some(p) if p != project => self.notes.push(format!("it was made for project '{p}': set `external: true` to use a network or volume made elsewhere")),
            Some(_) => {}
            None => self.notes.push("it was not made by the reconciler or Compose: set `external: true` to use a network or volume made elsewhere".into()),
        }
    }
}

fn subnets<'p>(pools: impl Iterator<Item = &'p IpamPool>) -> String {
    let set: BTreeSet<&str> = pools.filter_map(|p| p.subnet.as_deref()).collect();
    set.into_iter().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::IpamDef;

    fn ours(key: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (labels::PROJECT.to_string(), "shop".to_string()),
            (labels::NETWORK.to_string(), key.to_string()),
        ])
    }

    fn pool(subnet: &str) -> IpamPool {
        IpamPool {
            subnet: Some(subnet.into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_network_made_from_the_same_definition_does_not_differ() {
        let def = NetworkDef {
            name: "shop_front".into(),
            driver_opts: BTreeMap::from([("com.docker.network.driver.mtu".into(), "1400".into())]),
            ipam: Some(IpamDef {
                config: vec![pool("172.31.7.0/24")],
                ..Default::default()
            }),
            ..Default::default()
        };
        let found = ObservedNetwork {
            driver: "bridge".into(),
            driver_opts: def.driver_opts.clone(),
            ipam_driver: "default".into(),
            // The engine adds the gateway it chose, and an IPv6 pool from its defaults.
            ipam_config: vec![
                IpamPool {
                    gateway: Some("172.31.7.1".into()),
                    ..pool("172.31.7.0/24")
                },
                pool("fd00:1::/64"),
            ],
            labels: ours("front"),
            ..Default::default()
        };
        assert_eq!(network_drift("shop", "front", &def, &found), None);
    }

    #[test]
    fn a_changed_subnet_option_or_flag_blocks_and_is_named() {
        let def = NetworkDef {
            name: "shop_front".into(),
            internal: true,
            driver_opts: BTreeMap::from([("com.docker.network.driver.mtu".into(), "1400".into())]),
            ipam: Some(IpamDef {
                config: vec![pool("172.31.8.0/24")],
                ..Default::default()
            }),
            ..Default::default()
        };
        let found = ObservedNetwork {
            driver: "bridge".into(),
            ipam_config: vec![pool("172.31.7.0/24")],
            labels: ours("front"),
            ..Default::default()
        };
        let drift = network_drift("shop", "front", &def, &found).unwrap();
        assert!(drift.blocks());
        assert_eq!(
            drift.differences,
            vec![
                "driver_opts.com.docker.network.driver.mtu (unset) -> 1400",
                "internal false -> true",
                "ipam.config.subnet 172.31.7.0/24 -> 172.31.8.0/24",
            ]
        );
        assert!(drift.to_string().contains("docker network rm shop_front"));
    }

    #[test]
    fn attachable_is_not_compared_as_compose_made_every_network_attachable() {
        let def = NetworkDef {
            name: "shop_default".into(),
            attachable: true,
            ..Default::default()
        };
        let found = ObservedNetwork {
            driver: "bridge".into(),
            labels: ours("default"),
            ..Default::default()
        };
        assert_eq!(network_drift("shop", "default", &def, &found), None);
    }

    #[test]
    fn labels_and_ownership_are_said_but_do_not_block() {
        let def = NetworkDef {
            name: "shared".into(),
            labels: BTreeMap::from([("team".into(), "a".into())]),
            ..Default::default()
        };
        let found = ObservedNetwork {
            driver: "bridge".into(),
            ..Default::default()
        };
        let drift = network_drift("shop", "shared", &def, &found).unwrap();
        assert!(!drift.blocks());
        let text = drift.to_string();
        assert!(text.contains("labels.team (unset) -> a"), "{text}");
        assert!(text.contains("external: true"), "{text}");
    }

    #[test]
    fn a_volume_with_other_driver_options_blocks_and_is_never_to_be_deleted_by_us() {
        let def = VolumeDef {
            name: "shop_data".into(),
            driver_opts: BTreeMap::from([("o".into(), "size=20m".into())]),
            ..Default::default()
        };
        let found = ObservedVolume {
            driver: "local".into(),
            driver_opts: BTreeMap::from([("o".into(), "size=10m".into())]),
            labels: BTreeMap::from([
                (labels::PROJECT.to_string(), "shop".to_string()),
                (labels::VOLUME.to_string(), "data".to_string()),
            ]),
        };
        let drift = volume_drift("shop", "data", &def, &found).unwrap();
        assert_eq!(
            drift.differences,
            vec!["driver_opts.o size=10m -> size=20m"]
        );
        assert!(drift.to_string().contains("never deletes a volume"));
    }

    #[test]
    fn an_option_only_the_engine_has_is_said_but_does_not_block() {
        let def = NetworkDef {
            name: "shop_front".into(),
            ..Default::default()
        };
        let found = ObservedNetwork {
            driver: "bridge".into(),
            driver_opts: BTreeMap::from([("com.docker.network.driver.mtu".into(), "1400".into())]),
            labels: ours("front"),
            ..Default::default()
        };
        let drift = network_drift("shop", "front", &def, &found).unwrap();
        assert!(!drift.blocks());
        assert!(drift.notes[0]
            .contains("com.docker.network.driver.mtu is set (1400) but not in the file"));
    }

    #[test]
    fn values_of_options_that_took_a_secret_are_never_shown() {
        let def = VolumeDef {
            name: "shop_share".into(),
            driver_opts: BTreeMap::from([("o".into(), "password=new-secret".into())]),
            secret_fields: BTreeSet::from(["driver_opts".to_string()]),
            ..Default::default()
        };
        let found = ObservedVolume {
            driver: "local".into(),
            driver_opts: BTreeMap::from([
                ("o".into(), "password=old-secret".into()),
                ("extra".into(), "old-secret".into()),
            ]),
            labels: BTreeMap::from([
                (labels::PROJECT.to_string(), "shop".to_string()),
                (labels::VOLUME.to_string(), "share".to_string()),
            ]),
        };
        let text = volume_drift("shop", "share", &def, &found)
            .unwrap()
            .to_string();
        assert!(
            text.contains("driver_opts.o changed (value hidden)"),
            "{text}"
        );
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn ipv6_the_file_asks_for_must_be_there_and_ipv6_it_does_not_mention_is_only_said() {
        let found = |enable_ipv6| ObservedNetwork {
            driver: "bridge".into(),
            enable_ipv6,
            labels: ours("front"),
            ..Default::default()
        };
        let def = |enable_ipv6| NetworkDef {
            name: "shop_front".into(),
            enable_ipv6,
            ..Default::default()
        };
        let asked = network_drift("shop", "front", &def(true), &found(false)).unwrap();
        assert_eq!(asked.differences, vec!["enable_ipv6 false -> true"]);
        let unasked = network_drift("shop", "front", &def(false), &found(true)).unwrap();
        assert!(!unasked.blocks());
    }

    #[test]
    fn external_resources_are_not_compared() {
        let def = NetworkDef {
            name: "proxy".into(),
            external: true,
            ..Default::default()
        };
        assert_eq!(
            network_drift("shop", "proxy", &def, &ObservedNetwork::default()),
            None
        );
    }
}
