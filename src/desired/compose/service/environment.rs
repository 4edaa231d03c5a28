//! A service's environment: `env_file` contents first, then `environment` over them, and which
//! keys hold secrets (masked wherever the environment is shown).

use crate::desired::compose::context::Text;
use crate::desired::compose::{join, Cx};
use crate::desired::dotenv;
use crate::desired::interpolate::raw_key;
use crate::desired::yaml::{Node, Value};
use crate::mask::is_secret_key;
use std::collections::{BTreeMap, BTreeSet, HashMap};

impl Cx<'_> {
    /// Fills `env` and returns the keys whose values are secret.
    pub(super) fn environment(
        &mut self,
        node: &Node,
        path: &str,
        env: &mut BTreeMap<String, String>,
    ) -> BTreeSet<String> {
        let mut secret_env = BTreeSet::new();
        if let Some(n) = node.get("env_file") {
            self.env_files(n, &join(path, "env_file"), env);
        }
        if let Some(n) = node.get("environment") {
            self.repeated_entries(n, &join(path, "environment"));
            self.environment_values(n, &join(path, "environment"), env, &mut secret_env);
        }
        secret_env.extend(env.keys().filter(|k| is_secret_key(k)).cloned());
        secret_env
    }

    fn environment_values(
        &mut self,
        node: &Node,
        key: &str,
        env: &mut BTreeMap<String, String>,
        secret_env: &mut BTreeSet<String>,
    ) {
        let vars = self.vars_for(node);
        for (k, v, _) in self.key_values(node, key) {
            // `KEY` without a value takes it from the stack's variables, as Compose takes it
            // from the shell; unset means the key is left out.
            let value = match v {
                Some(t) => Some(t),
                None => vars.values.get(&k).map(|value| Text {
                    value: value.clone(),
                    secret: vars.host_local.contains(&k),
                    sensitive: vars.host_local.contains(&k) || is_secret_key(&k),
                }),
            };
            if let Some(t) = value {
                // `DSN: postgres://app:${DB_PASSWORD}@db` holds the password too.
                if t.secret || t.sensitive {
                    secret_env.insert(k.clone());
                }
                env.insert(k, t.value);
            }
        }
    }

    /// Compose refuses a list holding one entry twice (its schema wants unique items), in its
    /// words; the same key with another value is allowed, the later one winning. Values are
    /// never quoted: they may be secret.
    fn repeated_entries(&mut self, node: &Node, key: &str) {
        let Value::Seq(items) = &node.value else {
            return;
        };
        let mut entries: HashMap<&str, usize> = HashMap::new();
        let mut keys: HashMap<&str, usize> = HashMap::new();
        for (j, item) in items.iter().enumerate() {
            let Value::Scalar { text, .. } = &item.value else {
                continue;
            };
            let name = raw_key(text);
            if let Some(i) = entries.insert(text, j) {
                self.problem(
                    item,
                    key,
                    format!("array items[{i},{j}] must be unique: '{name}' is listed twice with the same value"),
                );
            } else if let Some(i) = keys.insert(name, j) {
                self.warn(
                    item,
                    key,
                    format!("'{name}' is set twice (items {i} and {j}); the later value wins, as in Compose"),
                );
            }
        }
    }

    pub(super) fn env_files(&mut self, node: &Node, key: &str, env: &mut BTreeMap<String, String>) {
        let items: Vec<(String, bool, &Node)> = match &node.value {
            Value::Seq(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    let k = format!("{key}[{i}]");
                    match &item.value {
                        Value::Map(_) => {
                            let path = item
                                .get("path")
                                .and_then(|p| self.string(p, &join(&k, "path")));
                            let required = item
                                .get("required")
                                .and_then(|r| self.bool(r, &join(&k, "required")))
                                .unwrap_or(true);
                            path.map(|p| (p, required, item))
                        }
                        _ => self.string(item, &k).map(|p| (p, true, item)),
                    }
                })
                .collect(),
            _ => self
                .string(node, key)
                .map(|p| vec![(p, true, node)])
                .unwrap_or_default(),
        };
        for (path, required, item) in items {
            let path = self.path_from(item, &path);
            let rel = match self.files.resolve(&path) {
                Ok(rel) => rel,
                // An optional file may be absent; one that leaves the folder is refused anyway.
                Err(_) if !required && !self.files.exists(&path) => continue,
                Err(e) => {
                    self.problem(item, key, e);
                    continue;
                }
            };
            let bytes = match self.files.read(&rel) {
                Ok(b) => b,
                Err(_) if !required => continue,
                Err(e) => {
                    self.problem(item, key, e);
                    continue;
                }
            };
            let text = String::from_utf8_lossy(&bytes);
            match dotenv::parse(&text) {
                Ok(entries) => {
                    for e in entries {
                        env.insert(e.key, e.value);
                    }
                }
                Err(e) => self.problem(item, key, format!("{path}: {e}")),
            }
        }
    }
}
