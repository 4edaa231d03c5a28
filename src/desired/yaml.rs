//! A YAML document as a tree that remembers where each node came from.
//!
//! Serde-based loaders lose line numbers by the time a value is typed; every error we report must
//! name the line, so we build our own tree from the parser's marked events. Anchors, aliases and
//! `<<` merge keys are resolved here, as Compose does.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub line: usize,
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
    parser.load(&mut builder, true).map_err(|e| YamlError {
        line: e.marker().line(),
        message: e.info().to_string(),
    })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    match builder.documents.len() {
        0 => Ok(Node {
            line: 1,
            value: Value::Null,
        }),
        1 => Ok(builder.documents.pop().expect("one document")),
        _ => Err(YamlError {
            line: builder.second_document_line,
            message: "a Compose file holds one YAML document; found a second one (`---`)".into(),
        }),
    }
}

enum Frame {
    Seq {
        line: usize,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        line: usize,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    documents: Vec<Node>,
    second_document_line: usize,
    error: Option<YamlError>,
}

impl Builder {
    fn fail(&mut self, line: usize, message: String) {
        if self.error.is_none() {
            self.error = Some(YamlError { line, message });
        }
    }

    fn push_node(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.documents.push(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                pending_key,
                ..
            }) => match pending_key.take() {
                None => *pending_key = Some(node),
                Some(key) => entries.push((key, node)),
            },
        }
    }

    fn finish_map(&mut self, line: usize, entries: Vec<(Node, Node)>) -> Node {
        let mut own: Vec<(Node, Node)> = Vec::new();
        let mut merged: Vec<(Node, Node)> = Vec::new();
        for (key, value) in entries {
            if !matches!(key.value, Value::Scalar { .. }) {
                self.fail(key.line, "mapping keys must be plain text".into());
                continue;
            }
            if key.key_text() == "<<" && matches!(key.value, Value::Scalar { plain: true, .. }) {
                self.collect_merge(&value, &mut merged);
                continue;
            }
            if let Some((first, _)) = own.iter().find(|(k, _)| k.key_text() == key.key_text()) {
                let message = format!(
                    "duplicate key '{}' (first defined on line {})",
                    key.key_text(),
                    first.line
                );
                self.fail(key.line, message);
                continue;
            }
            own.push((key, value));
        }
        // Explicit keys win over merged ones; among merged sources the first wins, as in YAML 1.1.
        for (key, value) in merged {
            if !own.iter().any(|(k, _)| k.key_text() == key.key_text()) {
                own.push((key, value));
            }
        }
        Node {
            line,
            value: Value::Map(own),
        }
    }

    fn collect_merge(&mut self, value: &Node, out: &mut Vec<(Node, Node)>) {
        match &value.value {
            Value::Map(entries) => {
                for (k, v) in entries {
                    if !out.iter().any(|(seen, _)| seen.key_text() == k.key_text()) {
                        out.push((k.clone(), v.clone()));
                    }
                }
            }
            Value::Seq(items) => {
                for item in items {
                    self.collect_merge(item, out);
                }
            }
            _ => self.fail(
                value.line,
                "a `<<` merge key takes a mapping or a list of mappings".into(),
            ),
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::DocumentStart
                if !self.documents.is_empty() && self.second_document_line == 0 =>
            {
                self.second_document_line = line;
            }
            Event::Scalar(text, style, anchor, _tag) => {
                let plain = style == TScalarStyle::Plain;
                let value = if plain && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL")
                {
                    Value::Null
                } else {
                    Value::Scalar { text, plain }
                };
                self.push_node(Node { line, value }, anchor);
            }
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(node) => self.push_node(node, 0),
                None => self.fail(line, "alias refers to an unknown anchor".into()),
            },
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq {
                line,
                anchor,
                items: Vec::new(),
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map {
                line,
                anchor,
                entries: Vec::new(),
                pending_key: None,
            }),
            Event::SequenceEnd => {
                if let Some(Frame::Seq {
                    line,
                    anchor,
                    items,
                }) = self.stack.pop()
                {
                    self.push_node(
                        Node {
                            line,
                            value: Value::Seq(items),
                        },
                        anchor,
                    );
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map {
                    line,
                    anchor,
                    entries,
                    ..
                }) = self.stack.pop()
                {
                    let node = self.finish_map(line, entries);
                    self.push_node(node, anchor);
                }
            }
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
}
