//! A serde deserializer over located nodes: typed definitions are read from the merged tree, and
//! every type error, unknown key or bad value comes back with its file, line, column and key path.

use std::fmt;

use serde::de::{
    self, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess, VariantAccess,
    Visitor,
};

use super::error::{Problem, did_you_mean};
use super::node::{Key, Loc, Node, NodeKind, PathSeg};

/// Separates a message from its help text inside `de::Error::custom` strings, so value parsers
/// (modes, sizes…) can give advice through serde's one-string error API.
pub const HELP_SEPARATOR: &str = "\n@help: ";

/// Builds a custom serde error with a help line.
pub fn custom_with_help<E: de::Error>(message: impl fmt::Display, help: impl fmt::Display) -> E {
    E::custom(format!("{message}{HELP_SEPARATOR}{help}"))
}

#[derive(Debug)]
pub struct DeError {
    message: String,
    help: Option<String>,
    loc: Option<Loc>,
    path: Vec<PathSeg>,
    /// The key a "missing required key" error is about.
    missing: Option<&'static str>,
}

impl DeError {
    fn new(message: impl Into<String>, loc: &Loc) -> Self {
        DeError {
            message: message.into(),
            help: None,
            loc: Some(loc.clone()),
            path: Vec::new(),
            missing: None,
        }
    }

    fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    fn or_loc(mut self, loc: &Loc) -> Self {
        if self.loc.is_none() {
            self.loc = Some(loc.clone());
        }
        self
    }

    fn within(mut self, seg: PathSeg) -> Self {
        self.path.insert(0, seg);
        self
    }

    pub fn into_problem(self, prefix: &[PathSeg]) -> Problem {
        let mut path = prefix.to_vec();
        path.extend(self.path);
        let mut p = Problem::error(self.message).at_path(&path);
        if let Some(loc) = self.loc {
            p = p.at(loc);
        }
        if let Some(h) = self.help {
            p = p.help(h);
        }
        p
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

fn one_of(expected: &[&str]) -> String {
    let quoted: Vec<String> = expected.iter().map(|e| format!("`{e}`")).collect();
    quoted.join(", ")
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        let text = msg.to_string();
        let (message, help) = match text.split_once(HELP_SEPARATOR) {
            Some((m, h)) => (m.to_string(), Some(h.to_string())),
            None => (text, None),
        };
        DeError {
            message,
            help,
            loc: None,
            path: Vec::new(),
            missing: None,
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let help = match did_you_mean(field, expected.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None if expected.is_empty() => "this mapping takes no keys".to_string(),
            None => format!("valid keys here: {}", one_of(expected)),
        };
        DeError {
            message: format!("unknown key `{field}`"),
            help: Some(help),
            loc: None,
            path: Vec::new(),
            missing: None,
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let help = match did_you_mean(variant, expected.iter().copied()) {
            Some(s) => format!("did you mean `{s}`? (one of {})", one_of(expected)),
            None => format!("expected one of {}", one_of(expected)),
        };
        DeError {
            message: format!("unknown value `{variant}`"),
            help: Some(help),
            loc: None,
            path: Vec::new(),
            missing: None,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        DeError {
            missing: Some(field),
            ..DeError::custom(format!("missing required key `{field}`"))
        }
    }

    fn duplicate_field(field: &'static str) -> Self {
        DeError::custom(format!("key `{field}` is given twice"))
    }
}

/// Deserializes a typed value from a node.
pub fn from_node<'a, T: de::Deserialize<'a>>(node: &'a Node) -> Result<T, DeError> {
    T::deserialize(NodeDe(node))
}

/// How many problems one typing pass reports before giving up.
const MAX_TYPE_PROBLEMS: usize = 20;

/// Deserializes a typed value, reporting every misplaced key and wrongly typed value instead of
/// only the first: after each error at a mapping key, that key is set aside and typing retried.
pub fn from_node_all<T: de::DeserializeOwned>(node: &Node) -> Result<T, Vec<Problem>> {
    let mut tree = node.clone();
    let mut problems = Vec::new();
    // Keys set aside, so "missing required key" for one of them is not reported twice.
    let mut removed: Vec<Vec<PathSeg>> = Vec::new();
    loop {
        let err = match T::deserialize(NodeDe(&tree)) {
            Ok(v) if problems.is_empty() => return Ok(v),
            Ok(_) => return Err(problems),
            Err(e) => e,
        };
        let follows_removal = err.missing.is_some_and(|k| {
            let mut p = err.path.clone();
            p.push(PathSeg::Key(k.to_string()));
            removed.contains(&p)
        });
        let path = err.path.clone();
        if !follows_removal {
            problems.push(err.into_problem(&[]));
        }
        let Some(PathSeg::Key(last)) = path.last() else {
            return Err(problems);
        };
        let parent = &path[..path.len() - 1];
        if follows_removal
            || problems.len() >= MAX_TYPE_PROBLEMS
            || !remove_at(&mut tree, parent, last)
        {
            return Err(problems);
        }
        removed.push(path);
    }
}

fn remove_at(tree: &mut Node, parent: &[PathSeg], key: &str) -> bool {
    let mut node = tree;
    for seg in parent {
        let next = match (seg, &mut node.kind) {
            (PathSeg::Key(k), NodeKind::Map(m)) => {
                m.iter_mut().find(|(kk, _)| kk.name == *k).map(|(_, v)| v)
            }
            (PathSeg::Index(i), NodeKind::Seq(s)) => s.get_mut(*i),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return false,
        }
    }
    node.remove(key).is_some()
}

#[derive(Clone, Copy)]
pub struct NodeDe<'a>(pub &'a Node);

impl<'a> NodeDe<'a> {
    fn wrong(&self, expected: &str) -> DeError {
        let node = self.0;
        let err = DeError::new(
            format!("expected {expected}, found {}", node.describe()),
            &node.loc,
        );
        match (&node.kind, expected) {
            (NodeKind::Str(s), "true or false") => err.with_help(format!(
                "only `true` and `false` are booleans here; `{s}` is text (YAML 1.1 spellings like yes/no/on/off are not accepted)"
            )),
            (NodeKind::Str(s), e) if e.contains("number") && s.trim().parse::<i128>().is_ok() => {
                err.with_help("remove the quotes: numbers are written without them")
            }
            (NodeKind::Bool(b), "text") => {
                err.with_help(format!("quote it if you mean the text: \"{b}\""))
            }
            (NodeKind::Null, _) => {
                err.with_help("give a value, or remove the key to use the default")
            }
            (NodeKind::Str(_) | NodeKind::Int(_) | NodeKind::Float(_), "a list") => {
                err.with_help("write a list, even of one item: `[item]` or `- item`")
            }
            _ => err,
        }
    }

    fn int<T: TryFrom<i128>>(&self, what: &str) -> Result<T, DeError> {
        match self.0.kind {
            NodeKind::Int(i) => T::try_from(i).map_err(|_| {
                DeError::new(
                    format!(
                        "the number {} is out of range for {what}",
                        self.0.literal.as_deref().unwrap_or("?")
                    ),
                    &self.0.loc,
                )
            }),
            _ => Err(self.wrong(&format!("a number ({what})"))),
        }
    }
}

macro_rules! de_int {
    ($method:ident, $visit:ident, $ty:ty, $what:literal) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let v: $ty = self.int($what)?;
            visitor
                .$visit(v)
                .map_err(|e: DeError| e.or_loc(&self.0.loc))
        }
    };
}

impl<'de> de::Deserializer<'de> for NodeDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let node = self.0;
        let r = match &node.kind {
            NodeKind::Null => visitor.visit_unit(),
            NodeKind::Bool(b) => visitor.visit_bool(*b),
            NodeKind::Int(i) => match i64::try_from(*i) {
                Ok(v) => visitor.visit_i64(v),
                Err(_) => visitor.visit_i128(*i),
            },
            NodeKind::Float(f) => visitor.visit_f64(*f),
            NodeKind::Str(s) => visitor.visit_str(s),
            NodeKind::Seq(items) => visitor.visit_seq(SeqAcc::new(items)),
            NodeKind::Map(entries) => visitor.visit_map(MapAcc::new(entries)),
        };
        r.map_err(|e| e.or_loc(&node.loc))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0.kind {
            NodeKind::Bool(b) => visitor.visit_bool(b),
            _ => Err(self.wrong("true or false")),
        }
    }

    de_int!(deserialize_i8, visit_i8, i8, "a small signed integer");
    de_int!(deserialize_i16, visit_i16, i16, "a 16-bit signed integer");
    de_int!(deserialize_i32, visit_i32, i32, "a 32-bit signed integer");
    de_int!(deserialize_i64, visit_i64, i64, "a 64-bit signed integer");
    de_int!(deserialize_u8, visit_u8, u8, "0 to 255");
    de_int!(deserialize_u16, visit_u16, u16, "0 to 65535");
    de_int!(deserialize_u32, visit_u32, u32, "0 to 4294967295");
    de_int!(
        deserialize_u64,
        visit_u64,
        u64,
        "a non-negative 64-bit integer"
    );

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0.kind {
            NodeKind::Float(f) => visitor.visit_f64(f),
            NodeKind::Int(i) => visitor.visit_f64(i as f64),
            _ => Err(self.wrong("a number")),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0.as_text() {
            Some(s) => visitor
                .visit_str(s)
                .map_err(|e: DeError| e.or_loc(&self.0.loc)),
            None => Err(self.wrong("text")),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0.kind {
            NodeKind::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0.kind {
            NodeKind::Null => visitor.visit_unit(),
            _ => Err(self.wrong("nothing (null)")),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor
            .visit_newtype_struct(self)
            .map_err(|e| e.or_loc(&self.0.loc))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.kind {
            NodeKind::Seq(items) => visitor
                .visit_seq(SeqAcc::new(items))
                .map_err(|e| e.or_loc(&self.0.loc)),
            _ => Err(self.wrong("a list")),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.kind {
            NodeKind::Map(entries) => visitor
                .visit_map(MapAcc::new(entries))
                .map_err(|e| e.or_loc(&self.0.loc)),
            _ => Err(self.wrong("a mapping of keys to values")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.0.as_text() {
            Some(_) => visitor
                .visit_enum(UnitEnum(self.0))
                .map_err(|e| e.or_loc(&self.0.loc)),
            None => Err(self.wrong("one of the listed words")),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct SeqAcc<'a> {
    items: std::slice::Iter<'a, Node>,
    index: usize,
}

impl<'a> SeqAcc<'a> {
    fn new(items: &'a [Node]) -> Self {
        SeqAcc {
            items: items.iter(),
            index: 0,
        }
    }
}

impl<'de> SeqAccess<'de> for SeqAcc<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(node) = self.items.next() else {
            return Ok(None);
        };
        let i = self.index;
        self.index += 1;
        seed.deserialize(NodeDe(node))
            .map(Some)
            .map_err(|e| e.or_loc(&node.loc).within(PathSeg::Index(i)))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapAcc<'a> {
    entries: std::slice::Iter<'a, (Key, Node)>,
    value: Option<&'a (Key, Node)>,
}

impl<'a> MapAcc<'a> {
    fn new(entries: &'a [(Key, Node)]) -> Self {
        MapAcc {
            entries: entries.iter(),
            value: None,
        }
    }
}

impl<'de> MapAccess<'de> for MapAcc<'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(entry);
        let key = &entry.0;
        seed.deserialize(key.name.as_str().into_deserializer())
            .map(Some)
            .map_err(|e: DeError| e.or_loc(&key.loc).within(PathSeg::Key(key.name.clone())))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (key, node) = self
            .value
            .take()
            .expect("serde calls next_value_seed only after next_key_seed returned a key");
        seed.deserialize(NodeDe(node))
            .map_err(|e| e.or_loc(&node.loc).within(PathSeg::Key(key.name.clone())))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct UnitEnum<'a>(&'a Node);

impl<'de> EnumAccess<'de> for UnitEnum<'de> {
    type Error = DeError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), DeError> {
        let text = self.0.as_text().unwrap_or_default();
        let v = seed
            .deserialize(text.into_deserializer())
            .map_err(|e: DeError| e.or_loc(&self.0.loc))?;
        Ok((v, self))
    }
}

impl<'de> VariantAccess<'de> for UnitEnum<'de> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, _seed: T) -> Result<T::Value, DeError> {
        Err(DeError::new("expected a plain word here", &self.0.loc))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value, DeError> {
        Err(DeError::new("expected a plain word here", &self.0.loc))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, DeError> {
        Err(DeError::new("expected a plain word here", &self.0.loc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::node::{SourceFile, parse};
    use serde::Deserialize;

    // Fields are read through Debug in failure messages only.
    #[allow(dead_code)]
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    struct T {
        name: String,
        #[serde(default)]
        weak_deps: Option<bool>,
        #[serde(default)]
        items: Vec<Item>,
        #[serde(default)]
        color: Option<Color>,
    }

    #[allow(dead_code)]
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Item {
        uid: u32,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Color {
        Red,
        Green,
    }

    fn load(text: &str) -> Result<T, Problem> {
        let node = parse(&SourceFile::new("x.yaml", text)).unwrap();
        from_node(&node).map_err(|e| e.into_problem(&[]))
    }

    #[test]
    fn unknown_key_has_hint_and_location() {
        let p = load("name: a\nweak-dep: true\n").unwrap_err();
        assert_eq!(
            p.to_string(),
            "x.yaml:2:1: `weak-dep`: unknown key `weak-dep`"
        );
        assert_eq!(p.help.as_deref(), Some("did you mean `weak-deps`?"));
    }

    #[test]
    fn strict_booleans() {
        let p = load("name: a\nweak-deps: yes\n").unwrap_err();
        assert_eq!(
            p.to_string(),
            "x.yaml:2:12: `weak-deps`: expected true or false, found the string \"yes\""
        );
        assert!(load("name: a\nweak-deps: false\n").unwrap().weak_deps == Some(false));
    }

    #[test]
    fn nested_paths_and_ranges() {
        let p = load("name: a\nitems:\n  - uid: 1\n  - uid: -4\n").unwrap_err();
        assert_eq!(
            p.to_string(),
            "x.yaml:4:10: `items[1].uid`: the number -4 is out of range for 0 to 4294967295"
        );
    }

    #[test]
    fn missing_field_points_at_the_mapping() {
        let p = load("items: []\n").unwrap_err();
        assert_eq!(p.to_string(), "x.yaml:1:1: missing required key `name`");
    }

    #[test]
    fn numbers_read_as_written_into_text() {
        assert_eq!(load("name: 4.10\n").unwrap().name, "4.10");
        let p = load("name: true\n").unwrap_err();
        assert!(p.help.unwrap().contains("\"true\""));
    }

    #[test]
    fn reports_every_bad_key() {
        let node = parse(&SourceFile::new(
            "x.yaml",
            "nam: a\nweak-deps: yes\nitems:\n  - uid: x\n    gid: 1\n",
        ))
        .unwrap();
        let problems = from_node_all::<T>(&node).unwrap_err();
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            text,
            [
                "x.yaml:1:1: `nam`: unknown key `nam`",
                "x.yaml:2:12: `weak-deps`: expected true or false, found the string \"yes\"",
                "x.yaml:4:10: `items[0].uid`: expected a number (0 to 4294967295), found the string \"x\"",
                "x.yaml:5:5: `items[0].gid`: unknown key `gid`",
            ]
        );
    }

    #[test]
    fn unknown_variant_suggests() {
        let p = load("name: a\ncolor: gren\n").unwrap_err();
        assert_eq!(p.to_string(), "x.yaml:2:8: `color`: unknown value `gren`");
        assert!(p.help.unwrap().starts_with("did you mean `green`?"));
    }
}
