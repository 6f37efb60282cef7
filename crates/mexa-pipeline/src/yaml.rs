//! A YAML tree that remembers where every node came from (file, line, column), so that
//! validation errors can point at the exact place. Built on yaml-rust2's event parser.
use crate::error::{Pos, SpecError};
use serde_json::Value;
use std::sync::Arc;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A YAML node with its position.
#[derive(Debug, Clone)]
pub struct Node {
    pub pos: Pos,
    pub kind: NodeKind,
}

#[derive(Debug, Clone)]
pub enum NodeKind {
    /// A scalar; `quoted` scalars are always strings.
    Scalar {
        text: String,
        quoted: bool,
    },
    Seq(Vec<Node>),
    /// Keys are scalars (other keys are rejected while loading); order is kept.
    Map(Vec<(Node, Node)>),
}

impl Node {
    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The text of a scalar node.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// Looks a key up in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
    }

    /// What kind of node this is, for error messages.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar { .. } => match self.to_json() {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                _ => "a string",
            },
            NodeKind::Seq(items) if items.is_empty() => "an empty list",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }

    /// The node as JSON, scalars typed by YAML 1.2's core schema.
    pub fn to_json(&self) -> Value {
        match &self.kind {
            NodeKind::Scalar { text, quoted: true } => Value::String(text.clone()),
            NodeKind::Scalar { text, quoted: false } => plain_scalar(text),
            NodeKind::Seq(s) => Value::Array(s.iter().map(Node::to_json).collect()),
            NodeKind::Map(m) => Value::Object(
                m.iter().map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), v.to_json())).collect(),
            ),
        }
    }
}

fn plain_scalar(t: &str) -> Value {
    match t {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = t.parse::<i64>() {
        return Value::from(i);
    }
    let looks_numeric = t.chars().next().is_some_and(|c| c.is_ascii_digit() || "+-.".contains(c));
    if looks_numeric {
        if let Ok(f) = t.parse::<f64>() {
            if f.is_finite() {
                return Value::from(f);
            }
        }
    }
    Value::String(t.to_string())
}

/// Deepest nesting of lists and mappings accepted (pipelines need a handful of levels).
pub const MAX_DEPTH: usize = 64;
/// Indentation plus compact entries one line may open before parsing is refused (a bound on
/// the parser's recursion; the tree itself stops at MAX_DEPTH).
const MAX_LINE_NESTING: usize = 1_000;
/// Most nodes that aliases may add by expansion (an "alias bomb" grows exponentially).
pub const MAX_ALIAS_NODES: usize = 100_000;

struct Builder {
    file: Arc<str>,
    stack: Vec<(Node, Option<Node>, usize)>, // container being built, pending map key, anchor
    anchors: Vec<(usize, Node, usize)>,      // anchor id, node, its node count
    root: Option<Node>,
    error: Option<SpecError>,
    documents: usize,
    alias_nodes: usize,
    /// Nesting beyond MAX_DEPTH: events are counted but nothing more is built.
    too_deep: usize,
}

fn count_nodes(n: &Node) -> usize {
    1 + match &n.kind {
        NodeKind::Scalar { .. } => 0,
        NodeKind::Seq(s) => s.iter().map(count_nodes).sum(),
        NodeKind::Map(m) => m.iter().map(|(k, v)| count_nodes(k) + count_nodes(v)).sum(),
    }
}

impl Builder {
    fn pos(&self, m: Marker) -> Pos {
        Pos { file: self.file.clone(), line: m.line(), col: m.col() + 1 }
    }

    fn push_value(&mut self, node: Node) {
        if self.error.is_some() {
            return;
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some((parent, pending, _)) => match &mut parent.kind {
                NodeKind::Seq(items) => items.push(node),
                NodeKind::Map(entries) => match pending.take() {
                    None => {
                        let key_text = node.as_str().map(str::to_string);
                        match key_text {
                            None => {
                                self.error =
                                    Some(SpecError::new(node.pos.clone(), "mapping keys must be plain strings"));
                            }
                            Some(k) => {
                                if let Some((first, _)) = entries.iter().find(|(e, _)| e.as_str() == Some(&k)) {
                                    self.error = Some(
                                        SpecError::new(node.pos.clone(), format!("duplicate key `{k}`"))
                                            .hint(format!("`{k}` is already defined at line {}", first.pos.line)),
                                    );
                                } else {
                                    *pending = Some(node);
                                }
                            }
                        }
                    }
                    Some(key) => entries.push((key, node)),
                },
                NodeKind::Scalar { .. } => unreachable!("scalars are never on the stack"),
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = self.pos(mark);
        if self.error.is_some() {
            return;
        }
        if self.too_deep > 0 {
            match ev {
                Event::SequenceStart(..) | Event::MappingStart(..) => self.too_deep += 1,
                Event::SequenceEnd | Event::MappingEnd => self.too_deep -= 1,
                _ => {}
            }
            return;
        }
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    self.error = Some(
                        SpecError::new(pos, "a second YAML document (after `---`)")
                            .hint("a pipeline file holds exactly one document; put other pipelines in their own files"),
                    );
                }
                return;
            }
            Event::SequenceStart(..) | Event::MappingStart(..) if self.stack.len() >= MAX_DEPTH => {
                self.error = Some(SpecError::new(pos, format!("lists and mappings nested more than {MAX_DEPTH} deep")));
                self.too_deep = 1;
                return;
            }
            _ => {}
        }
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                let quoted = !matches!(style, TScalarStyle::Plain);
                let n = Node { pos, kind: NodeKind::Scalar { text, quoted } };
                if anchor > 0 {
                    self.anchors.push((anchor, n.clone(), 1));
                }
                self.push_value(n);
            }
            Event::SequenceStart(anchor, _) => {
                self.stack.push((Node { pos, kind: NodeKind::Seq(vec![]) }, None, anchor));
            }
            Event::MappingStart(anchor, _) => {
                self.stack.push((Node { pos, kind: NodeKind::Map(vec![]) }, None, anchor));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, _, anchor) = self.stack.pop().expect("balanced events");
                if anchor > 0 {
                    let size = count_nodes(&node);
                    self.anchors.push((anchor, node.clone(), size));
                }
                self.push_value(node);
            }
            Event::Alias(id) => {
                let found = self.anchors.iter().rev().find(|(a, ..)| *a == id).map(|(_, n, size)| (n.clone(), *size));
                match found {
                    Some((n, size)) => {
                        self.alias_nodes += size;
                        if self.alias_nodes > MAX_ALIAS_NODES {
                            self.error = Some(SpecError::new(pos, format!("aliases expand to more than {MAX_ALIAS_NODES} nodes")).hint("an alias of an alias of … grows exponentially (an \"alias bomb\"); write the values out"));
                        } else {
                            self.push_value(n);
                        }
                    }
                    None => self.error = Some(SpecError::new(pos, "unknown alias")),
                }
            }
            _ => {}
        }
    }
}

/// Parses one YAML document into a [`Node`] tree. An empty document is an error.
pub fn parse(file: &str, text: &str) -> Result<Node, SpecError> {
    // A UTF-8 byte order mark (some Windows editors write one) is not content.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some(at) = text.find('\0') {
        let line = text[..at].matches('\n').count() + 1;
        let col = text[..at].rfind('\n').map_or(at, |nl| at - nl - 1) + 1;
        return Err(SpecError::new(Pos { file: Arc::from(file), line, col }, "a NUL byte: this is not a text file")
            .hint("YAML files are UTF-8 text; was a binary file named here?"));
    }
    // yaml-rust2 recurses once per level of block nesting, so a pathological file would
    // overflow the stack inside the parser: bound the nesting a line can open (its
    // indentation plus compact `- ` / `? ` entries) before parsing.
    for (i, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let mut rest = &line[indent..];
        let mut compact = 0;
        while let Some(r) = rest.strip_prefix("- ").or_else(|| rest.strip_prefix("? ")) {
            compact += 1;
            rest = r.trim_start_matches(' ');
        }
        if indent + compact > MAX_LINE_NESTING {
            return Err(SpecError::new(
                Pos { file: Arc::from(file), line: i + 1, col: 1 },
                format!("lists and mappings nested more than {MAX_DEPTH} deep"),
            )
            .hint(format!("this line opens {} levels", indent + compact)));
        }
    }
    let mut b = Builder {
        file: Arc::from(file),
        stack: vec![],
        anchors: vec![],
        root: None,
        error: None,
        documents: 0,
        alias_nodes: 0,
        too_deep: 0,
    };
    let mut p = Parser::new_from_str(text);
    if let Err(e) = p.load(&mut b, true) {
        let m = e.marker();
        return Err(SpecError::new(
            Pos { file: Arc::from(file), line: m.line(), col: m.col() + 1 },
            format!("invalid YAML: {}", e.info()),
        ));
    }
    if let Some(e) = b.error {
        return Err(e);
    }
    b.root.ok_or_else(|| SpecError::new(Pos { file: Arc::from(file), line: 1, col: 1 }, "the file is empty"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_types() {
        let n = parse("f.yaml", "a: 1\nb:\n  - x\n  - '2'\n  - 2.5\nc: true\n").unwrap();
        assert_eq!(n.get("a").unwrap().to_json(), Value::from(1));
        let b = n.get("b").unwrap();
        let items = b.as_seq().unwrap();
        assert_eq!(items[1].to_json(), Value::from("2"));
        assert_eq!(items[2].to_json(), Value::from(2.5));
        assert_eq!((items[0].pos.line, items[0].pos.col), (3, 5));
        assert_eq!(n.get("c").unwrap().to_json(), Value::Bool(true));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let e = parse("f.yaml", "a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!((e.pos.line, e.pos.col), (3, 1));
        assert!(e.to_string().contains("duplicate key `a`"), "{e}");
    }

    #[test]
    fn hostile_yaml_is_refused_with_limits() {
        // An alias bomb: each level doubles the previous one.
        let mut bomb = String::from("a0: &a0 [x, x]\n");
        for i in 1..40 {
            bomb.push_str(&format!("a{i}: &a{i} [*a{}, *a{}]\n", i - 1, i - 1));
        }
        assert!(parse("f", &bomb).unwrap_err().to_string().contains("aliases expand to more than"));
        let deep = format!("{}x{}", "[".repeat(100_000), "]".repeat(100_000));
        let e = parse("f", &deep).unwrap_err().to_string();
        assert!(e.contains("nested more than 64 deep") || e.contains("recursion limit"), "{e}");
        // 100,000 nested block sequences on one line: an error, not a stack overflow.
        let deep_block = format!("{}x\n", "- ".repeat(100_000));
        assert!(parse("f", &deep_block).unwrap_err().to_string().contains("nested more than 64 deep"));
        // Just under the line bound: the parser copes, and the tree stops at MAX_DEPTH.
        let e = parse("f", &format!("{}x\n", "- ".repeat(999))).unwrap_err();
        assert!(e.to_string().contains("nested more than 64 deep"), "{e}");
        let e = parse("f", "a: 1\n---\nb: 2\n").unwrap_err();
        assert!(e.to_string().contains("second YAML document") && e.pos.line == 2, "{e}");
        let e = parse("f", "a: 1\nb: x\0y\n").unwrap_err();
        assert_eq!((e.pos.line, e.pos.col), (2, 5));
        assert_eq!(parse("f", "\u{feff}pipeline: p\n").unwrap().get("pipeline").unwrap().as_str(), Some("p"));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = parse("f.yaml", "a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.to_string().starts_with("f.yaml:"), "{e}");
        assert!(e.to_string().contains("invalid YAML"), "{e}");
    }
}
