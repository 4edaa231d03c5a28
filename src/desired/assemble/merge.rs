//! Compose's merge rules on YAML trees: an override file onto its base, a service onto the one it
//! `extends`. Mappings merge key by key; sequences append; `command`, `entrypoint` and
//! `healthcheck.test` are replaced, and `logging` is when it names another driver; `volumes`,
//! `secrets`, `configs` and `ports` keep one entry per unique key; key=value lists
//! (`environment`, `labels`, ...) merge as mappings.
//!
//! Nodes keep their line and file, so a problem in a merged value still names where it was written.

use crate::desired::interpolate::raw_key;
use crate::desired::yaml::{Node, Value};
use std::collections::{HashMap, HashSet};

/// Service keys whose value the later file replaces whole.
const REPLACED: &[&str] = &["command", "entrypoint"];
/// Service keys written as a mapping or a `KEY=VALUE` list: merged as mappings.
const KEY_VALUE: &[&str] = &["environment", "labels", "sysctls", "annotations"];
/// Service keys written as a mapping or a list of names: merged as mappings.
const NAMED: &[&str] = &["depends_on", "networks"];
/// Service keys whose list entries are unique by a key: a later entry replaces an earlier one.
const UNIQUE: &[&str] = &["volumes", "secrets", "configs", "ports", "devices"];

/// `over` merged onto `base`, both whole Compose documents.
pub fn merge_documents(base: Node, over: Node) -> Node {
    merge_at(&[], base, over, &|path, base, over| {
        if path.len() == 2 && path[0] == "services" {
            Ok(merge_service(base, over))
        } else {
            Err((base, over))
        }
    })
}

/// A service definition `over` merged onto `base` (the service it extends, or its definition in
/// an earlier file).
pub fn merge_service(base: Node, over: Node) -> Node {
    merge_at(&[], base, over, &|path, base, over| {
        let key = path[0];
        match path.len() {
            1 if REPLACED.contains(&key) => Ok(over),
            // Options belong to their driver: another driver's would stop the container.
            1 if key == "logging" && other_driver(&base, &over) => Ok(over),
            2 if key == "healthcheck" && path[1] == "test" => Ok(over),
            1 if KEY_VALUE.contains(&key) => {
                Ok(merge_plain(key_value_map(base), key_value_map(over)))
            }
            1 if NAMED.contains(&key) => Ok(merge_plain(named_map(base), named_map(over))),
            1 if UNIQUE.contains(&key) => Ok(merge_unique(key, base, over)),
            _ => Err((base, over)),
        }
    })
}

/// Whether both `logging` mappings name a driver, and not the same one.
fn other_driver(base: &Node, over: &Node) -> bool {
    match (base.get("driver"), over.get("driver")) {
        (Some(a), Some(b)) => a.key_text() != b.key_text(),
        _ => false,
    }
}

/// A special rule for the key at `path` (never empty): the merged node, or both nodes back for
/// the default rules.
type Rule<'r> = dyn Fn(&[&str], Node, Node) -> Result<Node, (Node, Node)> + 'r;

fn merge_at(path: &[&str], base: Node, over: Node, rule: &Rule) -> Node {
    let (base, over) = if path.is_empty() {
        (base, over)
    } else {
        match rule(path, base, over) {
            Ok(merged) => return merged,
            Err(both) => both,
        }
    };
    merge_default(path, base, over, rule)
}

/// Mappings merge key by key, sequences append, anything else is replaced by `over`. Keys and
/// items are looked up by hash: a hostile file's lists and mappings may be 100k long.
fn merge_default(path: &[&str], base: Node, over: Node, rule: &Rule) -> Node {
    match (base.value, over.value) {
        (Value::Map(base_entries), Value::Map(over_entries)) => {
            let mut entries = base_entries;
            let mut index: HashMap<String, usize> = HashMap::new();
            for (i, (k, _)) in entries.iter().enumerate() {
                index.entry(k.key_text().to_string()).or_insert(i);
            }
            for (k, v) in over_entries {
                match index.get(k.key_text()) {
                    Some(&i) => {
                        let bv = std::mem::replace(&mut entries[i].1, base_header(0, 0));
                        let mut child = path.to_vec();
                        child.push(k.key_text());
                        entries[i].1 = merge_at(&child, bv, v, rule);
                    }
                    None => {
                        index.insert(k.key_text().to_string(), entries.len());
                        entries.push((k, v));
                    }
                }
            }
            Node {
                value: Value::Map(entries),
                ..base_header(base.line, base.file)
            }
        }
        (Value::Seq(items), Value::Seq(more)) => Node {
            value: Value::Seq(append_new(items, more)),
            ..base_header(base.line, base.file)
        },
        // A scalar and a one-item list mean the same for list keys (`dns: 1.1.1.1`).
        (Value::Seq(items), scalar @ Value::Scalar { .. }) => {
            let item = Node {
                line: over.line,
                file: over.file,
                value: scalar,
            };
            Node {
                value: Value::Seq(append_new(items, vec![item])),
                ..base_header(base.line, base.file)
            }
        }
        // As in Compose, a key left empty (its entries commented out) changes nothing.
        (base_value, Value::Null) => Node {
            value: base_value,
            ..base_header(base.line, base.file)
        },
        (_, over_value) => Node {
            line: over.line,
            file: over.file,
            value: over_value,
        },
    }
}

/// `items` then `more`, leaving out a scalar already in the list (`dns`, `cap_add`: Compose keeps
/// one of each).
fn append_new(mut items: Vec<Node>, more: Vec<Node>) -> Vec<Node> {
    let mut seen: HashSet<String> = items.iter().filter_map(scalar_text).collect();
    for item in more {
        if scalar_text(&item).is_none_or(|text| seen.insert(text)) {
            items.push(item);
        }
    }
    items
}

fn scalar_text(node: &Node) -> Option<String> {
    match &node.value {
        Value::Scalar { text, .. } => Some(text.clone()),
        _ => None,
    }
}

fn base_header(line: usize, file: u16) -> Node {
    Node {
        line,
        file,
        value: Value::Null,
    }
}

/// Mappings merged with `over` winning per key, no rule below.
fn merge_plain(base: Node, over: Node) -> Node {
    merge_default(&[], base, over, &|_, base, over| Err((base, over)))
}

/// A `KEY=VALUE` list as a mapping (`- A=1` -> `A: "1"`, `- A` -> `A:`), one entry per key
/// (the later value in the earlier place, as Compose keeps them); a mapping as it is.
fn key_value_map(node: Node) -> Node {
    let Value::Seq(items) = node.value else {
        return node;
    };
    let entries = items
        .into_iter()
        .map(|item| {
            let text = match &item.value {
                Value::Scalar { text, .. } => text.clone(),
                _ => {
                    return (
                        item.clone(),
                        Node {
                            value: Value::Null,
                            ..item
                        },
                    )
                }
            };
            let key = raw_key(&text).to_string();
            let value = match text.get(key.len() + 1..) {
                Some(rest) if text[key.len()..].starts_with('=') => Value::Scalar {
                    text: rest.to_string(),
                    plain: false,
                },
                _ => Value::Null,
            };
            (
                Node {
                    line: item.line,
                    file: item.file,
                    value: Value::Scalar {
                        text: key,
                        plain: true,
                    },
                },
                Node {
                    line: item.line,
                    file: item.file,
                    value,
                },
            )
        })
        .collect();
    Node {
        line: node.line,
        file: node.file,
        value: Value::Map(one_per_key(entries)),
    }
}

/// `entries` with a repeated key's later value put in place of the earlier one: merging looks a
/// key up once, so a repeat left behind would win over the override.
fn one_per_key(entries: Vec<(Node, Node)>) -> Vec<(Node, Node)> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut out: Vec<(Node, Node)> = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        match index.get(k.key_text()) {
            Some(&i) => out[i].1 = v,
            None => {
                index.insert(k.key_text().to_string(), out.len());
                out.push((k, v));
            }
        }
    }
    out
}

/// A list of names as a mapping of each name to nothing (`[db]` -> `db:`).
fn named_map(node: Node) -> Node {
    let Value::Seq(items) = node.value else {
        return node;
    };
    let entries = items
        .into_iter()
        .map(|item| {
            let null = Node {
                line: item.line,
                file: item.file,
                value: Value::Null,
            };
            (item, null)
        })
        .collect();
    Node {
        line: node.line,
        file: node.file,
        value: Value::Map(entries),
    }
}

/// `over`'s entries replace `base`'s entries with the same unique key, the rest append.
fn merge_unique(key: &str, base: Node, over: Node) -> Node {
    if over.value == Value::Null {
        return base;
    }
    let (Value::Seq(mut items), Value::Seq(more)) = (base.value.clone(), over.value.clone()) else {
        return over;
    };
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(id) = unique_key(key, item) {
            index.entry(id).or_insert(i);
        }
    }
    let mut seen: HashSet<String> = items.iter().filter_map(scalar_text).collect();
    for item in more {
        match unique_key(key, &item) {
            Some(id) => match index.get(&id) {
                Some(&i) => items[i] = item,
                None => {
                    index.insert(id, items.len());
                    items.push(item);
                }
            },
            None if scalar_text(&item).is_none_or(|text| seen.insert(text)) => items.push(item),
            None => {}
        }
    }
    Node {
        line: base.line,
        file: base.file,
        value: Value::Seq(items),
    }
}

/// What makes a list entry unique, as written (before interpolation): a mount's or device's
/// target, a secret's or config's target, a port's whole definition (Compose's defaults filled
/// in for the long form).
fn unique_key(key: &str, item: &Node) -> Option<String> {
    let scalar = |n: &Node| match &n.value {
        Value::Scalar { text, .. } => Some(text.clone()),
        _ => None,
    };
    match (&item.value, key) {
        (Value::Scalar { text, .. }, "volumes" | "devices") => {
            let parts: Vec<&str> = text.split(':').collect();
            Some(match parts.len() {
                1 => parts[0].to_string(),
                _ => parts[1].to_string(),
            })
        }
        (Value::Scalar { text, .. }, "ports") => Some(text.clone()),
        (Value::Map(_), "ports") => {
            let field = |name: &str, default: &str| {
                item.get(name)
                    .and_then(scalar)
                    .unwrap_or_else(|| default.to_string())
            };
            Some(format!(
                "{}:{}:{}/{}",
                field("host_ip", "0.0.0.0"),
                field("published", ""),
                field("target", ""),
                field("protocol", "tcp")
            ))
        }
        (Value::Scalar { text, .. }, "secrets" | "configs") => Some(mounted_at(key, text.clone())),
        (Value::Map(_), "volumes" | "devices") => item.get("target").and_then(scalar),
        (Value::Map(_), "secrets" | "configs") => item
            .get("target")
            .or_else(|| item.get("source"))
            .and_then(scalar)
            .map(|t| mounted_at(key, t)),
        _ => None,
    }
}

/// Where Compose mounts a secret or config named or targeted `t`: an absolute target as it is,
/// else under `/run/secrets/` (secrets) or `/` (configs).
fn mounted_at(key: &str, t: String) -> String {
    match (t.starts_with('/'), key) {
        (true, _) => t,
        (false, "secrets") => format!("/run/secrets/{t}"),
        (false, _) => format!("/{t}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::yaml::parse;

    fn merged(base: &str, over: &str) -> Node {
        let mut over = parse(over).unwrap();
        over.set_file(1);
        merge_documents(parse(base).unwrap(), over)
    }

    fn texts(node: &Node) -> Vec<String> {
        match &node.value {
            Value::Seq(items) => items
                .iter()
                .map(|i| match &i.value {
                    Value::Scalar { text, .. } => text.clone(),
                    other => format!("{other:?}"),
                })
                .collect(),
            other => panic!("not a list: {other:?}"),
        }
    }

    fn text(node: &Node) -> &str {
        node.key_text()
    }

    #[test]
    fn an_override_adds_keys_replaces_scalars_and_appends_lists() {
        let doc = merged(
            "services:\n  web:\n    image: web:1\n    dns: [1.1.1.1]\n    restart: always\n",
            "services:\n  web:\n    image: web:2\n    dns: [8.8.8.8]\n  db:\n    image: db:1\n",
        );
        let web = doc.get("services").unwrap().get("web").unwrap();
        assert_eq!(text(web.get("image").unwrap()), "web:2");
        assert_eq!(web.get("image").unwrap().file, 1);
        assert_eq!(text(web.get("restart").unwrap()), "always");
        assert_eq!(texts(web.get("dns").unwrap()), ["1.1.1.1", "8.8.8.8"]);
        assert!(doc.get("services").unwrap().get("db").is_some());
    }

    #[test]
    fn an_empty_key_in_an_override_keeps_the_base_value_as_in_compose() {
        // `environment:` with its entries commented out is null, not "no environment".
        let doc = merged(
            "services:\n  web:\n    image: web:1\n    environment:\n      A: \"1\"\n    volumes: [./a:/data]\n    restart: always\n    command: [run]\n",
            "services:\n  web:\n    environment:\n    volumes:\n    restart:\n    command:\n",
        );
        let web = doc.get("services").unwrap().get("web").unwrap();
        assert_eq!(text(web.get("environment").unwrap().get("A").unwrap()), "1");
        assert_eq!(texts(web.get("volumes").unwrap()), ["./a:/data"]);
        assert_eq!(text(web.get("restart").unwrap()), "always");
        // As in Compose, command, entrypoint and healthcheck.test are replaced, even by nothing.
        assert_eq!(web.get("command").unwrap().value, Value::Null);
    }

    #[test]
    fn logging_options_are_kept_only_for_the_same_driver_as_in_compose() {
        let base = "services:\n  web:\n    logging:\n      driver: json-file\n      options:\n        max-size: 10m\n";
        let doc = merged(
            base,
            "services:\n  web:\n    logging:\n      driver: syslog\n      options:\n        tag: web\n",
        );
        let logging = doc
            .get("services")
            .unwrap()
            .get("web")
            .unwrap()
            .get("logging")
            .unwrap();
        assert_eq!(text(logging.get("driver").unwrap()), "syslog");
        // json-file's max-size would make syslog refuse to start the container.
        assert!(logging.get("options").unwrap().get("max-size").is_none());
        let doc = merged(
            base,
            "services:\n  web:\n    logging:\n      options:\n        max-file: \"3\"\n",
        );
        let options = doc
            .get("services")
            .unwrap()
            .get("web")
            .unwrap()
            .get("logging")
            .unwrap()
            .get("options")
            .unwrap();
        assert!(options.get("max-size").is_some() && options.get("max-file").is_some());
    }

    #[test]
    fn the_same_port_in_an_override_is_published_once() {
        let doc = merged(
            "services:\n  web:\n    ports:\n      - \"8080:80\"\n      - target: 443\n        published: \"8443\"\n",
            "services:\n  web:\n    ports:\n      - \"8080:80\"\n      - target: 443\n        published: \"8443\"\n        protocol: tcp\n      - \"9090:90\"\n",
        );
        let ports = doc
            .get("services")
            .unwrap()
            .get("web")
            .unwrap()
            .get("ports")
            .unwrap();
        let Value::Seq(items) = &ports.value else {
            panic!()
        };
        assert_eq!(items.len(), 3, "{items:?}");
        assert_eq!(
            items[1].get("protocol").unwrap().file,
            1,
            "the later one wins"
        );
    }

    #[test]
    fn a_value_already_in_a_list_is_not_repeated_as_compose_keeps_one() {
        let doc = merged(
            "services:\n  web:\n    cap_add: [CHOWN]\n    dns: [1.1.1.1]\n",
            "services:\n  web:\n    cap_add: [CHOWN, NET_RAW]\n    dns: 1.1.1.1\n",
        );
        let web = doc.get("services").unwrap().get("web").unwrap();
        assert_eq!(texts(web.get("cap_add").unwrap()), ["CHOWN", "NET_RAW"]);
        assert_eq!(texts(web.get("dns").unwrap()), ["1.1.1.1"]);
    }

    #[test]
    fn commands_and_healthcheck_tests_are_replaced_not_appended() {
        let doc = merged(
            "services:\n  web:\n    command: [a, b]\n    healthcheck:\n      test: [CMD, x]\n      interval: 5s\n",
            "services:\n  web:\n    command: [c]\n    healthcheck:\n      test: [CMD, y]\n",
        );
        let web = doc.get("services").unwrap().get("web").unwrap();
        assert_eq!(texts(web.get("command").unwrap()), ["c"]);
        let health = web.get("healthcheck").unwrap();
        assert_eq!(texts(health.get("test").unwrap()), ["CMD", "y"]);
        assert_eq!(text(health.get("interval").unwrap()), "5s");
    }

    #[test]
    fn environment_merges_by_key_across_list_and_mapping_forms() {
        let doc = merged(
            "services:\n  web:\n    environment:\n      - A=1\n      - B=2\n",
            "services:\n  web:\n    environment:\n      B: three\n      C: \"4\"\n",
        );
        let env = doc
            .get("services")
            .unwrap()
            .get("web")
            .unwrap()
            .get("environment")
            .unwrap();
        assert_eq!(text(env.get("A").unwrap()), "1");
        assert_eq!(text(env.get("B").unwrap()), "three");
        assert_eq!(text(env.get("C").unwrap()), "4");
    }

    #[test]
    fn a_mount_for_the_same_target_replaces_the_earlier_one() {
        let doc = merged(
            "services:\n  web:\n    volumes:\n      - ./a:/data\n      - logs:/logs\n",
            "services:\n  web:\n    volumes:\n      - type: bind\n        source: ./b\n        target: /data\n      - ./c:/cache:ro\n",
        );
        let volumes = doc
            .get("services")
            .unwrap()
            .get("web")
            .unwrap()
            .get("volumes")
            .unwrap();
        let Value::Seq(items) = &volumes.value else {
            panic!()
        };
        assert_eq!(items.len(), 3);
        assert_eq!(text(items[0].get("source").unwrap()), "./b");
        assert_eq!(text(&items[1]), "logs:/logs");
        assert_eq!(text(&items[2]), "./c:/cache:ro");
    }

    #[test]
    fn depends_on_merges_list_and_mapping_forms() {
        let doc = merged(
            "services:\n  web:\n    depends_on: [db]\n",
            "services:\n  web:\n    depends_on:\n      cache:\n        condition: service_started\n",
        );
        let deps = doc
            .get("services")
            .unwrap()
            .get("web")
            .unwrap()
            .get("depends_on")
            .unwrap();
        assert!(deps.get("db").is_some());
        assert!(deps.get("cache").unwrap().get("condition").is_some());
    }
}
