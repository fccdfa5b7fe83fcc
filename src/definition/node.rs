//! Located YAML nodes: each definition file is parsed by serde-saphyr into a tree that keeps the
//! file, line and column of every key and value, so merged and expanded definitions still point home.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use super::error::Problem;

/// The text of one input file (a definition, a `.repo` file, or a command-line value), kept so
/// diagnostics can show the offending line.
#[derive(Debug)]
pub struct SourceFile {
    /// The path as the user would recognise it (relative paths stay relative).
    pub path: PathBuf,
    pub text: String,
}

impl SourceFile {
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Arc<Self> {
        Arc::new(SourceFile {
            path: path.into(),
            text: text.into(),
        })
    }

    /// Byte offset of a 1-based line and character column, clamped to the text.
    pub fn offset_of(&self, line: u32, col: u32) -> usize {
        let mut offset = 0;
        for (i, l) in self.text.split_inclusive('\n').enumerate() {
            if i + 1 == line as usize {
                let within: usize = l
                    .chars()
                    .take(col.saturating_sub(1) as usize)
                    .map(char::len_utf8)
                    .sum();
                return offset + within;
            }
            offset += l.len();
        }
        self.text.len()
    }
}

impl miette::SourceCode for SourceFile {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let inner = self.text.read_span(span, before, after)?;
        let language = match self.path.extension().and_then(|e| e.to_str()) {
            Some("repo") => "ini",
            _ => "yaml",
        };
        Ok(Box::new(
            miette::MietteSpanContents::new_named(
                self.path.display().to_string(),
                inner.data(),
                *inner.span(),
                inner.line(),
                inner.column(),
                inner.line_count(),
            )
            .with_language(language),
        ))
    }
}

/// Where a node was written: file, 1-based line and column (in characters), and the length of the
/// token in bytes (0 when unknown).
#[derive(Clone)]
pub struct Loc {
    pub file: Arc<SourceFile>,
    pub line: u32,
    pub col: u32,
    pub len: usize,
}

impl Loc {
    pub fn new(file: &Arc<SourceFile>, line: u32, col: u32, len: usize) -> Self {
        Loc {
            file: Arc::clone(file),
            line,
            col,
            len,
        }
    }

    /// The directory relative paths written at this location are resolved against.
    pub fn base_dir(&self) -> &Path {
        self.file.path.parent().unwrap_or(Path::new(""))
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.path.display(), self.line, self.col)
    }
}

impl fmt::Debug for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A mapping key: always text in a definition.
#[derive(Debug, Clone)]
pub struct Key {
    pub name: String,
    pub loc: Loc,
}

#[derive(Debug, Clone)]
pub enum NodeKind {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// One YAML node. `literal` keeps the source spelling of plain (unquoted) scalars, so a string
/// field given `4.10` or `0755` reads exactly what was written, not what a number would print as.
#[derive(Debug, Clone)]
pub struct Node {
    pub kind: NodeKind,
    pub loc: Loc,
    pub literal: Option<String>,
}

impl Node {
    pub fn new(kind: NodeKind, loc: Loc) -> Self {
        Node {
            kind,
            loc,
            literal: None,
        }
    }

    pub fn str(value: impl Into<String>, loc: Loc) -> Self {
        Node::new(NodeKind::Str(value.into()), loc)
    }

    /// What kind of value this is, for messages ("expected a list, found a string").
    pub fn describe(&self) -> String {
        match &self.kind {
            NodeKind::Null => "nothing (null)".into(),
            NodeKind::Bool(b) => format!("the boolean {b}"),
            NodeKind::Int(_) | NodeKind::Float(_) => {
                format!("the number {}", self.literal.as_deref().unwrap_or("?"))
            }
            NodeKind::Str(s) => format!("the string {s:?}"),
            NodeKind::Seq(_) => "a list".into(),
            NodeKind::Map(_) => "a mapping".into(),
        }
    }

    /// The text of a scalar as a string field would read it: strings as they are, numbers as
    /// written. Booleans and null are not text.
    pub fn as_text(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Str(s) => Some(s),
            NodeKind::Int(_) | NodeKind::Float(_) => self.literal.as_deref(),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&Vec<(Key, Node)>> {
        match &self.kind {
            NodeKind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_map_mut(&mut self) -> Option<&mut Vec<(Key, Node)>> {
        match &mut self.kind {
            NodeKind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&Vec<Node>> {
        match &self.kind {
            NodeKind::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The value under `key` when this is a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.as_map_mut()?
            .iter_mut()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    /// Removes `key` from a mapping and returns its key and value.
    pub fn remove(&mut self, key: &str) -> Option<(Key, Node)> {
        let map = self.as_map_mut()?;
        let i = map.iter().position(|(k, _)| k.name == key)?;
        Some(map.remove(i))
    }

    /// The location of the deepest node along `path` (keys and list indexes), and whether the
    /// whole path was found. Used to point semantic errors at what the user wrote.
    pub fn locate(&self, path: &[PathSeg]) -> (&Loc, bool) {
        let mut node = self;
        let mut loc = &self.loc;
        for seg in path {
            let next = match seg {
                PathSeg::Key(k) => node
                    .as_map()
                    .and_then(|m| m.iter().find(|(key, _)| key.name == *k)),
                PathSeg::Index(i) => match node.as_seq().and_then(|s| s.get(*i)) {
                    Some(n) => {
                        node = n;
                        loc = &n.loc;
                        continue;
                    }
                    None => return (loc, false),
                },
            };
            match next {
                Some((key, value)) => {
                    // A mapping value that is itself a collection is best shown by its key.
                    loc = match value.kind {
                        NodeKind::Map(_) | NodeKind::Seq(_) => &key.loc,
                        _ => &value.loc,
                    };
                    node = value;
                }
                None => return (loc, false),
            }
        }
        (loc, true)
    }
}

/// One step of a path into a definition: a mapping key or a list index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}

impl From<&str> for PathSeg {
    fn from(s: &str) -> Self {
        PathSeg::Key(s.to_string())
    }
}

impl From<usize> for PathSeg {
    fn from(i: usize) -> Self {
        PathSeg::Index(i)
    }
}

/// Renders a path the way users write it: `system.users[2].uid`.
pub fn path_to_string(path: &[PathSeg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            PathSeg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            PathSeg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Builds a path from mixed keys and indexes: `path!["system", "users", 2, "uid"]`.
#[macro_export]
macro_rules! path {
    ($($seg:expr),* $(,)?) => {
        vec![$($crate::definition::node::PathSeg::from($seg)),*]
    };
}

// ---------------------------------------------------------------------------------------------
// Parsing: serde-saphyr does the YAML work (syntax, anchors and aliases, merge keys, duplicate
// keys, strict booleans); `Raw` captures every node with its location, and `to_node` turns that
// into our tree, recovering the literal text of plain scalars from the source.

#[derive(Debug)]
enum Raw {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<Raw>, Spanned<Raw>)>),
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RawVisitor;
        impl<'de> Visitor<'de> for RawVisitor {
            type Value = Raw;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_none<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
                Raw::deserialize(d)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Raw, E> {
                Ok(Raw::Bool(b))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
                Ok(Raw::Int(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
                Ok(Raw::Int(v.into()))
            }
            fn visit_i128<E>(self, v: i128) -> Result<Raw, E> {
                Ok(Raw::Int(v))
            }
            fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Raw, E> {
                i128::try_from(v)
                    .map(Raw::Int)
                    .map_err(|_| E::custom("integer too large"))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
                Ok(Raw::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
                Ok(Raw::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Raw, E> {
                Ok(Raw::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Raw, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = a.next_element()? {
                    items.push(item);
                }
                Ok(Raw::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Raw, A::Error> {
                let mut entries = Vec::new();
                while let Some(k) = a.next_key()? {
                    let v = a.next_value()?;
                    entries.push((k, v));
                }
                Ok(Raw::Map(entries))
            }
        }
        d.deserialize_any(RawVisitor)
    }
}

fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        // Only true/false are booleans: `country: no` must stay the string "no".
        strict_booleans: true,
        // `mode: 0755` and `version: 1_0` keep their spelling instead of becoming numbers.
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
    }
}

/// Parses one YAML document into a located node tree.
pub fn parse(file: &Arc<SourceFile>) -> Result<Node, Problem> {
    if file.text.trim().is_empty() || is_only_comments(&file.text) {
        return Err(
            Problem::error("the file is empty: a definition needs at least `name:`")
                .at(Loc::new(file, 1, 1, 0)),
        );
    }
    let raw: Spanned<Raw> = serde_saphyr::from_str_with_options(&file.text, yaml_options())
        .map_err(|e| {
            let (line, col) = e
                .location()
                .map(|l| (l.line() as u32, l.column() as u32))
                .unwrap_or((1, 1));
            Problem::error(yaml_message(&e, line, col)).at(Loc::new(file, line, col, 1))
        })?;
    to_node(raw, file)
}

fn is_only_comments(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..."
    })
}

/// serde-saphyr's message without its own location suffix (we render locations ourselves),
/// reworded where its text speaks to programmers rather than users.
fn yaml_message(e: &serde_saphyr::Error, line: u32, col: u32) -> String {
    let text = e.without_snippet().to_string();
    let text = text
        .strip_suffix(&format!(" at line {line}, column {col}"))
        .unwrap_or(&text)
        .to_string();
    if let Some(rest) = text.strip_prefix("duplicate mapping key: ") {
        let key = rest
            .split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or(rest);
        return format!("duplicate key `{key}`: each key may appear only once in a mapping");
    }
    format!("invalid YAML: {text}")
}

fn loc_of(span: &Spanned<Raw>, file: &Arc<SourceFile>) -> Loc {
    let r = &span.referenced;
    let len = r.span().byte_len().unwrap_or(0) as usize;
    Loc::new(file, r.line() as u32, r.column() as u32, len)
}

/// The source text of a plain scalar, taken from where it was defined (through aliases).
fn literal_of(span: &Spanned<Raw>, file: &Arc<SourceFile>) -> Option<String> {
    let d = &span.defined;
    let start = d.span().byte_offset()? as usize;
    let len = d.span().byte_len()? as usize;
    file.text.get(start..start + len).map(str::to_string)
}

fn to_node(raw: Spanned<Raw>, file: &Arc<SourceFile>) -> Result<Node, Problem> {
    let loc = loc_of(&raw, file);
    let literal = match raw.value {
        Raw::Int(_) | Raw::Float(_) => literal_of(&raw, file),
        _ => None,
    };
    let kind = match raw.value {
        Raw::Null => NodeKind::Null,
        Raw::Bool(b) => NodeKind::Bool(b),
        Raw::Int(i) => NodeKind::Int(i),
        Raw::Float(f) => NodeKind::Float(f),
        Raw::Str(s) => NodeKind::Str(s),
        Raw::Seq(items) => NodeKind::Seq(
            items
                .into_iter()
                .map(|i| to_node(i, file))
                .collect::<Result<_, _>>()?,
        ),
        Raw::Map(entries) => {
            let mut out = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                let key_loc = loc_of(&k, file);
                let key_literal = literal_of(&k, file);
                let name = match k.value {
                    Raw::Str(s) => s,
                    Raw::Int(_) | Raw::Float(_) | Raw::Bool(_) => key_literal.unwrap_or_default(),
                    Raw::Null => {
                        return Err(Problem::error("a mapping key is empty").at(key_loc));
                    }
                    Raw::Seq(_) | Raw::Map(_) => {
                        return Err(Problem::error(
                            "a mapping key must be plain text, not a list or mapping",
                        )
                        .at(key_loc));
                    }
                };
                out.push((Key { name, loc: key_loc }, to_node(v, file)?));
            }
            NodeKind::Map(out)
        }
    };
    Ok(Node { kind, loc, literal })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Node, Problem> {
        parse(&SourceFile::new("t.yaml", text))
    }

    #[test]
    fn keeps_literal_spelling_and_locations() {
        let n = parse_str("version: 4.10\nmode: 0755\nflag: yes\nb: true\n").unwrap();
        let v = n.get("version").unwrap();
        assert_eq!(v.as_text(), Some("4.10"));
        assert_eq!((v.loc.line, v.loc.col), (1, 10));
        assert_eq!(n.get("mode").unwrap().as_text(), Some("0755"));
        // Strict booleans: `yes` is a string, only `true`/`false` are booleans.
        assert!(matches!(n.get("flag").unwrap().kind, NodeKind::Str(ref s) if s == "yes"));
        assert!(matches!(n.get("b").unwrap().kind, NodeKind::Bool(true)));
    }

    #[test]
    fn aliases_point_at_use_and_keep_literal() {
        let n = parse_str("a: &x 1.50\nb: *x\n").unwrap();
        let b = n.get("b").unwrap();
        assert_eq!(b.as_text(), Some("1.50"));
        assert_eq!(b.loc.line, 2);
    }

    #[test]
    fn duplicate_keys_are_rejected_with_location() {
        let e = parse_str("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert!(e.message.contains("duplicate key `a`"), "{}", e.message);
        assert_eq!(e.loc.as_ref().unwrap().line, 3);
    }

    #[test]
    fn syntax_errors_have_locations() {
        let e = parse_str("a:\n  b: 1\n c: 2\n").unwrap_err();
        assert!(e.message.starts_with("invalid YAML"), "{}", e.message);
        assert_eq!(e.loc.as_ref().unwrap().line, 3);
    }

    #[test]
    fn empty_file_is_an_error() {
        let e = parse_str("# nothing\n").unwrap_err();
        assert!(e.message.contains("empty"));
    }

    #[test]
    fn locate_finds_deepest_node() {
        let n = parse_str("system:\n  users:\n    - name: a\n      uid: 5\n").unwrap();
        let uid = crate::path!["system", "users", 0, "uid"];
        let (loc, found) = n.locate(&uid);
        assert!(found);
        assert_eq!((loc.line, loc.col), (4, 12));
        let shell = crate::path!["system", "users", 0, "shell"];
        let (loc, found) = n.locate(&shell);
        assert!(!found);
        assert_eq!(loc.line, 3);
    }

    #[test]
    fn offsets_from_line_and_column() {
        let f = SourceFile::new("x", "ab\ncdé\nf");
        assert_eq!(f.offset_of(2, 3), 5);
        assert_eq!(f.offset_of(3, 1), 8);
        assert_eq!(f.offset_of(9, 1), 9);
    }
}
