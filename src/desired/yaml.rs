//! A YAML document as a tree that remembers where each node came from.
//!
//! Serde-based loaders lose line numbers by the time a value is typed; every error we report must
//! name the line, so we build our own tree from the parser's marked events. Anchors, aliases and
//! `<<` merge keys are resolved here, as Compose does.
//!
//! The text comes from whoever can push to the repository, so the tree is bounded: nesting depth
//! ([`MAX_DEPTH`]) and the size the document expands to once every alias is copied in
//! ([`MAX_NODES`], [`MAX_TEXT_BYTES`]). Events are pulled one at a time (yaml-rust2's own
//! `Parser::load` recurses once per nesting level) and parsing stops at the first limit hit.

use std::collections::{HashMap, HashSet};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

mod syntax;

/// Deepest nesting of mappings and sequences, aliases expanded. A Compose file needs a handful of
/// levels; 64 leaves room for deep `x-` extensions while keeping every recursive walk of the tree
/// (clone, drop, conversion) far from the stack's end.
pub const MAX_DEPTH: usize = 64;
/// Most nodes a document may hold with every alias expanded to its full size (an alias bomb is a
/// few hundred bytes that expand to billions of nodes). Anchored copies count too.
pub const MAX_NODES: usize = 250_000;
/// Most scalar text (bytes) a document may hold with every alias expanded.
pub const MAX_TEXT_BYTES: usize = 16 << 20;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub line: usize,
    /// Which of the stack's files the node came from (0: the main Compose file); set when an
    /// override, `extends` or `include` file is merged in, so problems name the right file.
    pub file: u16,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    /// `plain` is false for quoted or block scalars: `"true"` is a string, `true` a boolean.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct YamlError {
    pub line: usize,
    pub message: String,
}

impl Node {
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The key text of a mapping key (keys are always scalars in Compose files).
    pub fn key_text(&self) -> &str {
        match &self.value {
            Value::Scalar { text, .. } => text,
            _ => "",
        }
    }

    /// Mark this node and everything under it as coming from file `file`.
    pub fn set_file(&mut self, file: u16) {
        self.file = file;
        match &mut self.value {
            Value::Seq(items) => items.iter_mut().for_each(|n| n.set_file(file)),
            Value::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
                k.set_file(file);
                v.set_file(file);
            }),
            Value::Null | Value::Scalar { .. } => {}
        }
    }

    /// How many nodes the tree holds (keys count).
    pub fn size(&self) -> usize {
        1 + match &self.value {
            Value::Seq(items) => items.iter().map(Node::size).sum(),
            Value::Map(entries) => entries.iter().map(|(k, v)| k.size() + v.size()).sum(),
            Value::Null | Value::Scalar { .. } => 0,
        }
    }

    /// How many bytes of scalar text the tree holds (keys count), as [`MAX_TEXT_BYTES`] counts.
    pub fn text_bytes(&self) -> usize {
        match &self.value {
            Value::Scalar { text, .. } => text.len(),
            Value::Seq(items) => items.iter().map(Node::text_bytes).sum(),
            Value::Map(entries) => entries
                .iter()
                .map(|(k, v)| k.text_bytes() + v.text_bytes())
                .sum(),
            Value::Null => 0,
        }
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        match &mut self.value {
            Value::Map(entries) => entries
                .iter_mut()
                .find(|(k, _)| k.key_text() == key)
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.key_text() == key)
            .map(|(_, v)| v)
    }
}

/// Parse one YAML document. An empty file yields a `Null` node at line 1.
pub fn parse(text: &str) -> Result<Node, YamlError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    loop {
        let (event, mark) = parser.next_token().map_err(|e| YamlError {
            line: e.marker().line(),
            message: match e.info() {
                // The scanner reads ahead in flow style and has its own cap at 255 levels, which
                // it may reach before we see the 65th: name our limit, the one that matters.
                "recursion limit exceeded" => too_deep(),
                info => syntax::explain(
                    info,
                    e.marker().col() + 1,
                    text.lines()
                        .nth(e.marker().line().saturating_sub(1))
                        .unwrap_or(""),
                ),
            },
        })?;
        if event == Event::StreamEnd {
            break;
        }
        builder.on_event(event, mark);
        // Stop at the first problem: past a limit, going on is exactly what the attacker wants.
        if let Some(err) = builder.error.take() {
            return Err(err);
        }
    }
    Ok(builder.document.unwrap_or(Node {
        line: 1,
        file: 0,
        value: Value::Null,
    }))
}

fn too_deep() -> String {
    format!("mappings and lists are nested deeper than {MAX_DEPTH} levels, the limit for a Compose file")
}

/// What a node costs once every alias inside it is expanded.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    nodes: usize,
    text_bytes: usize,
    /// Levels of collections: 0 for a scalar, 1 for `[x]`, 2 for `[[x]]`.
    height: usize,
}

/// A collection being built. `nodes_before`/`text_before` are the document's running totals when
/// it started: the difference at its end is its expanded size.
struct Frame {
    line: usize,
    anchor: usize,
    nodes_before: usize,
    text_before: usize,
    child_height: usize,
    kind: FrameKind,
}

enum FrameKind {
    Seq(Vec<Node>),
    Map {
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Node, Size)>,
    document: Option<Node>,
    /// Nodes and scalar bytes in the tree so far, aliases counted at their full size.
    nodes: usize,
    text_bytes: usize,
    /// Nodes and bytes copied into the anchor table (each anchor keeps its own copy).
    copied_nodes: usize,
    copied_text_bytes: usize,
    error: Option<YamlError>,
}

impl Builder {
    fn fail(&mut self, line: usize, message: String) {
        if self.error.is_none() {
            self.error = Some(YamlError { line, message });
        }
    }

    /// Adds `size` to the running totals; false (and an error) when a limit is passed.
    fn spend(&mut self, line: usize, size: Size) -> bool {
        self.nodes = self.nodes.saturating_add(size.nodes);
        self.text_bytes = self.text_bytes.saturating_add(size.text_bytes);
        self.within_limits(line)
    }

    fn within_limits(&mut self, line: usize) -> bool {
        if self.nodes.saturating_add(self.copied_nodes) > MAX_NODES {
            self.fail(line, format!("the document expands to more than {MAX_NODES} nodes, the limit for a Compose file (an alias counts as the full size of what it refers to)"));
            return false;
        }
        if self.text_bytes.saturating_add(self.copied_text_bytes) > MAX_TEXT_BYTES {
            self.fail(line, format!("the document's text expands to more than {MAX_TEXT_BYTES} bytes, the limit for a Compose file (an alias counts as the full size of what it refers to)"));
            return false;
        }
        true
    }

    /// Nesting depth a node of `height` reaches where it is placed now, checked against MAX_DEPTH.
    fn fits_depth(&mut self, line: usize, height: usize) -> bool {
        if self.stack.len() + height > MAX_DEPTH {
            self.fail(line, too_deep());
            return false;
        }
        true
    }

    fn push_node(&mut self, line: usize, node: Node, size: Size, anchor: usize) {
        if anchor > 0 {
            self.copied_nodes = self.copied_nodes.saturating_add(size.nodes);
            self.copied_text_bytes = self.copied_text_bytes.saturating_add(size.text_bytes);
            if !self.within_limits(line) {
                return;
            }
            self.anchors.insert(anchor, (node.clone(), size));
        }
        let Some(frame) = self.stack.last_mut() else {
            self.document = Some(node);
            return;
        };
        frame.child_height = frame.child_height.max(size.height);
        match &mut frame.kind {
            FrameKind::Seq(items) => items.push(node),
            FrameKind::Map {
                entries,
                pending_key,
            } => match pending_key.take() {
                None => *pending_key = Some(node),
                Some(key) => entries.push((key, node)),
            },
        }
    }

    fn start(&mut self, line: usize, anchor: usize, kind: FrameKind) {
        if !self.fits_depth(line, 1)
            || !self.spend(
                line,
                Size {
                    nodes: 1,
                    ..Size::default()
                },
            )
        {
            return;
        }
        self.stack.push(Frame {
            line,
            anchor,
            nodes_before: self.nodes - 1,
            text_before: self.text_bytes,
            child_height: 0,
            kind,
        });
    }

    fn end(&mut self, end_line: usize) {
        let Some(frame) = self.stack.pop() else {
            return;
        };
        let size = Size {
            nodes: self.nodes - frame.nodes_before,
            text_bytes: self.text_bytes - frame.text_before,
            height: frame.child_height + 1,
        };
        let value = match frame.kind {
            FrameKind::Seq(items) => Value::Seq(items),
            FrameKind::Map { entries, .. } => Value::Map(self.finish_map(entries)),
        };
        let node = Node {
            line: frame.line,
            file: 0,
            value,
        };
        self.push_node(end_line, node, size, frame.anchor);
    }

    fn finish_map(&mut self, entries: Vec<(Node, Node)>) -> Vec<(Node, Node)> {
        let mut own: Vec<(Node, Node)> = Vec::new();
        // Key text -> line of its first definition; a map lookup keeps a many-key file linear.
        let mut first_line: HashMap<String, usize> = HashMap::new();
        let mut merged: Vec<(Node, Node)> = Vec::new();
        let mut merged_keys: HashSet<String> = HashSet::new();
        for (key, value) in entries {
            if !matches!(key.value, Value::Scalar { .. }) {
                self.fail(key.line, "mapping keys must be plain text".into());
                continue;
            }
            if key.key_text() == "<<" && matches!(key.value, Value::Scalar { plain: true, .. }) {
                self.collect_merge(&value, &mut merged, &mut merged_keys);
                continue;
            }
            if let Some(first) = first_line.get(key.key_text()) {
                let message = format!(
                    "duplicate key '{}' (first defined on line {first})",
                    key.key_text(),
                );
                self.fail(key.line, message);
                continue;
            }
            first_line.insert(key.key_text().to_string(), key.line);
            own.push((key, value));
        }
        // Explicit keys win over merged ones; among merged sources the first wins, as in YAML 1.1.
        for (key, value) in merged {
            if !first_line.contains_key(key.key_text()) {
                own.push((key, value));
            }
        }
        own
    }

    fn collect_merge(
        &mut self,
        value: &Node,
        out: &mut Vec<(Node, Node)>,
        seen: &mut HashSet<String>,
    ) {
        match &value.value {
            Value::Map(entries) => {
                for (k, v) in entries {
                    if seen.insert(k.key_text().to_string()) {
                        out.push((k.clone(), v.clone()));
                    }
                }
            }
            // A list of mappings only: a list inside the list is not a merge source (and the
            // recursion stays one level deep).
            Value::Seq(items) => {
                for item in items {
                    match &item.value {
                        Value::Map(_) => self.collect_merge(item, out, seen),
                        _ => self.fail(
                            item.line,
                            "a `<<` merge key takes a mapping or a list of mappings".into(),
                        ),
                    }
                }
            }
            _ => self.fail(
                value.line,
                "a `<<` merge key takes a mapping or a list of mappings".into(),
            ),
        }
    }

    /// Compose's merge tags change what an override does; read as plain values they would merge
    /// what the author meant to remove or replace, so they are refused until supported.
    fn tag_known(&mut self, line: usize, tag: Option<&Tag>) -> bool {
        match tag {
            Some(Tag { handle, suffix })
                if handle == "!" && matches!(suffix.as_str(), "reset" | "override") =>
            {
                let meant = if suffix == "reset" {
                    "removed"
                } else {
                    "replaced"
                };
                self.fail(
                    line,
                    format!("Compose's `!{suffix}` tag is not supported: the value would be merged, not {meant}; edit the file that sets it instead"),
                );
                false
            }
            _ => true,
        }
    }

    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::DocumentStart if self.document.is_some() => self.fail(
                line,
                "a Compose file holds one YAML document; found a second one (`---`)".into(),
            ),
            Event::Scalar(text, style, anchor, tag) => {
                if !self.tag_known(line, tag.as_ref()) {
                    return;
                }
                let size = Size {
                    nodes: 1,
                    text_bytes: text.len(),
                    height: 0,
                };
                if !self.spend(line, size) {
                    return;
                }
                let plain = style == TScalarStyle::Plain;
                let value = if plain && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL")
                {
                    Value::Null
                } else {
                    Value::Scalar { text, plain }
                };
                self.push_node(
                    line,
                    Node {
                        line,
                        file: 0,
                        value,
                    },
                    size,
                    anchor,
                );
            }
            Event::Alias(id) => {
                let Some(size) = self.anchors.get(&id).map(|(_, size)| *size) else {
                    self.fail(line, "alias refers to an unknown anchor".into());
                    return;
                };
                // Checked before the copy is made: the copy is what exhausts memory.
                if !self.fits_depth(line, size.height) || !self.spend(line, size) {
                    return;
                }
                let node = self.anchors[&id].0.clone();
                self.push_node(line, node, size, 0);
            }
            Event::SequenceStart(_, tag) | Event::MappingStart(_, tag)
                if !self.tag_known(line, tag.as_ref()) => {}
            Event::SequenceStart(anchor, _) => self.start(line, anchor, FrameKind::Seq(Vec::new())),
            Event::MappingStart(anchor, _) => self.start(
                line,
                anchor,
                FrameKind::Map {
                    entries: Vec::new(),
                    pending_key: None,
                },
            ),
            Event::SequenceEnd | Event::MappingEnd => self.end(line),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(node: &Node) -> &str {
        match &node.value {
            Value::Scalar { text, .. } => text,
            other => panic!("expected scalar, got {other:?}"),
        }
    }

    #[test]
    fn composes_merge_tags_are_refused_at_their_line_and_other_tags_are_read_as_values() {
        for (text, line) in [
            ("a: 1\nports: !reset []\n", 2),
            ("a: 1\nimage: !reset null\n", 2),
            ("env: !override\n  A: 1\n", 2),
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.line, line, "{text}: {err}");
            assert!(err.message.contains("tag is not supported"), "{err}");
        }
        let doc = parse("port: !!str 80\n").unwrap();
        assert_eq!(scalar(doc.get("port").unwrap()), "80");
    }

    #[test]
    fn nodes_remember_their_line() {
        let doc = parse("services:\n  web:\n    image: nginx\n").unwrap();
        let web = doc.get("services").unwrap().get("web").unwrap();
        assert_eq!(web.get("image").unwrap().line, 3);
        assert_eq!(scalar(web.get("image").unwrap()), "nginx");
    }

    #[test]
    fn quoted_scalars_are_not_plain() {
        let doc = parse("a: \"true\"\nb: true\n").unwrap();
        assert!(matches!(
            doc.get("a").unwrap().value,
            Value::Scalar { plain: false, .. }
        ));
        assert!(matches!(
            doc.get("b").unwrap().value,
            Value::Scalar { plain: true, .. }
        ));
    }

    #[test]
    fn merge_keys_fill_in_without_overriding_explicit_keys() {
        let text = "x-base: &base\n  restart: always\n  image: a\nweb:\n  <<: *base\n  image: b\n";
        let doc = parse(text).unwrap();
        let web = doc.get("web").unwrap();
        assert_eq!(scalar(web.get("image").unwrap()), "b");
        assert_eq!(scalar(web.get("restart").unwrap()), "always");
    }

    #[test]
    fn merge_key_accepts_a_list_of_mappings() {
        let text = "a: &a {x: 1}\nb: &b {y: 2}\nc:\n  <<: [*a, *b]\n";
        let doc = parse(text).unwrap();
        let c = doc.get("c").unwrap();
        assert_eq!(scalar(c.get("x").unwrap()), "1");
        assert_eq!(scalar(c.get("y").unwrap()), "2");
    }

    #[test]
    fn duplicate_keys_are_an_error_naming_both_lines() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.message.contains("line 1"), "{}", err.message);
    }

    #[test]
    fn broken_indentation_is_an_error_with_a_line() {
        let err = parse("services:\n  web:\n    image: a\n   ports: []\n").unwrap_err();
        assert!(err.line >= 3, "{err}");
    }

    #[test]
    fn tabs_for_indentation_are_an_error() {
        assert!(parse("services:\n\tweb: {}\n").is_err());
    }

    #[test]
    fn a_second_document_is_refused() {
        let err = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(err.line, 2);
    }

    #[test]
    fn empty_text_is_null() {
        assert_eq!(parse("").unwrap().value, Value::Null);
    }
    /// The classic "billion laughs": nine levels of nine aliases each, a few hundred bytes.
    pub(crate) fn alias_bomb() -> String {
        let mut text = String::from("a: &a [x,x,x,x,x,x,x,x,x]\n");
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
        for pair in names.windows(2) {
            let refs = vec![format!("*{}", pair[0]); 9].join(",");
            text.push_str(&format!("{}: &{} [{refs}]\n", pair[1], pair[1]));
        }
        text
    }

    fn nested_flow(depth: usize) -> String {
        format!("{}x{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn an_alias_bomb_is_refused_naming_the_node_limit() {
        let started = std::time::Instant::now();
        let err = parse(&alias_bomb()).unwrap_err();
        assert!(
            err.message
                .contains(&format!("more than {MAX_NODES} nodes")),
            "{err}"
        );
        assert!(err.line >= 6, "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn a_long_scalar_aliased_many_times_is_refused_naming_the_text_limit() {
        let long = "x".repeat(1 << 20);
        let refs = vec!["*s"; 20].join(", ");
        let text = format!("s: &s {long}\nl: [{refs}]\n");
        let err = parse(&text).unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        assert!(
            err.message
                .contains(&format!("more than {MAX_TEXT_BYTES} bytes")),
            "{err}"
        );
    }

    #[test]
    fn nested_anchors_count_every_copy_they_keep() {
        // Each anchor keeps its own copy of everything inside it: 64 nested anchors over a list
        // of 10,000 items would otherwise hold 640,000 nodes without a single alias.
        let items = vec!["x"; 10_000].join(",");
        let open: String = (0..60).map(|i| format!("&a{i} [")).collect();
        let text = format!("{open}{items}{}", "]".repeat(60));
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("nodes"), "{err}");
    }

    #[test]
    fn nesting_up_to_the_limit_parses() {
        let mut node = parse(&nested_flow(MAX_DEPTH)).unwrap();
        for _ in 0..MAX_DEPTH {
            node = match node.value {
                Value::Seq(mut items) => items.pop().unwrap(),
                other => panic!("expected a list, got {other:?}"),
            };
        }
        assert_eq!(scalar(&node), "x");
    }

    #[test]
    fn flow_nesting_past_the_limit_is_refused_naming_the_limit() {
        // 100 levels stop at ours; 100,000 at the scanner's own cap, reported as ours.
        for text in [
            "[".repeat(100),
            "{".repeat(100),
            "[".repeat(100_000),
            "{a: ".repeat(100_000),
        ] {
            let err = parse(&text).unwrap_err();
            assert_eq!(err.line, 1, "{err}");
            assert!(
                err.message
                    .contains(&format!("deeper than {MAX_DEPTH} levels")),
                "{err}"
            );
        }
    }

    #[test]
    fn block_nesting_past_the_limit_is_refused_on_the_line_it_happens() {
        let text: String = (0..4000)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        let err = parse(&text).unwrap_err();
        assert_eq!(err.line, MAX_DEPTH + 1, "{err}");
        assert!(err.message.contains("deeper than"), "{err}");
    }

    #[test]
    fn an_alias_that_would_nest_past_the_limit_is_refused() {
        let half = MAX_DEPTH / 2 + 1;
        let text = format!(
            "a: &a {}\nb: {}*a{}\n",
            nested_flow(half),
            "[".repeat(half),
            "]".repeat(half)
        );
        let err = parse(&text).unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        assert!(err.message.contains("deeper than"), "{err}");
    }

    #[test]
    fn a_mapping_with_many_keys_parses_in_linear_time() {
        let text: String = (0..20_000).map(|i| format!("k{i}: {i}\n")).collect();
        let started = std::time::Instant::now();
        let doc = parse(&text).unwrap();
        assert_eq!(doc.as_map().unwrap().len(), 20_000);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn a_merge_list_holding_a_list_is_refused() {
        let err = parse("a: &a {x: 1}\nc:\n  <<: [[*a]]\n").unwrap_err();
        assert!(err.message.contains("merge"), "{err}");
    }

    #[test]
    fn anchors_and_aliases_within_the_limits_are_copied() {
        let doc = parse("a: &a {x: [1, 2]}\nb: *a\nc: [*a, *a]\n").unwrap();
        assert_eq!(doc.get("b"), doc.get("a"));
        match &doc.get("c").unwrap().value {
            Value::Seq(items) => assert_eq!(items[1], *doc.get("a").unwrap()),
            other => panic!("{other:?}"),
        }
    }
}
