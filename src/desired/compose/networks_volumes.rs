//! The stack's top-level `volumes:` and `networks:`: what the services may then refer to.

use super::{join, Cx};
use crate::desired::model::{NetworkDef, VolumeDef};
use crate::desired::yaml::{Node, Value};
use std::collections::BTreeMap;

impl Cx<'_> {
    /// Top-level `volumes:`: each named `{project}_{key}` unless it names itself or is external.
    pub(super) fn volumes(&mut self, node: &Node, project: &str) -> BTreeMap<String, VolumeDef> {
        let mut out = BTreeMap::new();
        let Some(entries) = (match node.value {
            Value::Null => return out,
            _ => self.map(node, "volumes"),
        }) else {
            return out;
        };
        for (k, v) in entries {
            let key = k.key_text().to_string();
            let path = join("volumes", &key);
            let mut def = VolumeDef {
                name: format!("{project}_{key}"),
                external: false,
                driver: None,
                labels: BTreeMap::new(),
            };
            if let Some(fields) = match v.value {
                Value::Null => None,
                _ => self.map(v, &path),
            } {
                self.check_keys(fields, &path, &["name", "external", "driver", "labels"]);
                if let Some(n) = v.get("name") {
                    def.name = self.string(n, &join(&path, "name")).unwrap_or_default();
                }
                if let Some(e) = v.get("external") {
                    def.external = self.bool(e, &join(&path, "external")).unwrap_or(false);
                    if def.external && v.get("name").is_none() {
                        def.name = key.clone();
                    }
                }
                if let Some(d) = v.get("driver") {
                    def.driver = self.string(d, &join(&path, "driver"));
                }
                if let Some(l) = v.get("labels") {
                    def.labels = self.string_map(l, &join(&path, "labels"));
                }
            }
            out.insert(key, def);
        }
        out
    }

    /// Top-level `networks:`, plus the `default` network every stack has unless it declares one.
    pub(super) fn networks(
        &mut self,
        node: Option<&Node>,
        project: &str,
    ) -> BTreeMap<String, NetworkDef> {
        let mut networks = match node {
            Some(n) => self.declared_networks(n, project),
            None => BTreeMap::new(),
        };
        networks
            .entry("default".into())
            .or_insert_with(|| NetworkDef {
                name: format!("{project}_default"),
                external: false,
                driver: None,
                internal: false,
                labels: BTreeMap::new(),
            });
        networks
    }

    fn declared_networks(&mut self, node: &Node, project: &str) -> BTreeMap<String, NetworkDef> {
        let mut out = BTreeMap::new();
        let Some(entries) = (match node.value {
            Value::Null => return out,
            _ => self.map(node, "networks"),
        }) else {
            return out;
        };
        for (k, v) in entries {
            let key = k.key_text().to_string();
            let path = join("networks", &key);
            let mut def = NetworkDef {
                name: format!("{project}_{key}"),
                external: false,
                driver: None,
                internal: false,
                labels: BTreeMap::new(),
            };
            if let Some(fields) = match v.value {
                Value::Null => None,
                _ => self.map(v, &path),
            } {
                self.check_keys(
                    fields,
                    &path,
                    &["name", "external", "driver", "internal", "labels"],
                );
                if let Some(n) = v.get("name") {
                    def.name = self.string(n, &join(&path, "name")).unwrap_or_default();
                }
                if let Some(e) = v.get("external") {
                    def.external = self.bool(e, &join(&path, "external")).unwrap_or(false);
                    if def.external && v.get("name").is_none() {
                        def.name = key.clone();
                    }
                }
                if let Some(d) = v.get("driver") {
                    def.driver = self.string(d, &join(&path, "driver"));
                }
                if let Some(i) = v.get("internal") {
                    def.internal = self.bool(i, &join(&path, "internal")).unwrap_or(false);
                }
                if let Some(l) = v.get("labels") {
                    def.labels = self.string_map(l, &join(&path, "labels"));
                }
            }
            out.insert(key, def);
        }
        out
    }
}
