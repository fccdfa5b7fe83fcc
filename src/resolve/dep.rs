//! Dependency expressions: simple `name [op evr]` dependencies and rpm's rich (boolean)
//! dependencies — and, or, if/else, unless/else, with, without, nested — parsed and printed.

use std::fmt;

use super::evr::{Evr, Sense};

/// A simple dependency: a capability name and an optional version range.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Simple {
    pub name: String,
    pub range: Option<(Sense, Evr)>,
}

impl fmt::Display for Simple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some((sense, evr)) = &self.range {
            write!(f, " {} {evr}", sense.op())?;
        }
        Ok(())
    }
}

/// A dependency expression.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dep {
    Simple(Simple),
    And(Vec<Dep>),
    Or(Vec<Dep>),
    /// One package must satisfy all of them.
    With(Vec<Dep>),
    /// A package satisfying the first but not the second.
    Without(Box<Dep>, Box<Dep>),
    If {
        then: Box<Dep>,
        cond: Box<Dep>,
        otherwise: Option<Box<Dep>>,
    },
    Unless {
        then: Box<Dep>,
        cond: Box<Dep>,
        otherwise: Option<Box<Dep>>,
    },
}

impl fmt::Display for Dep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, items: &[Dep], op: &str| {
            f.write_str("(")?;
            for (i, d) in items.iter().enumerate() {
                if i > 0 {
                    write!(f, " {op} ")?;
                }
                write!(f, "{d}")?;
            }
            f.write_str(")")
        };
        match self {
            Dep::Simple(s) => write!(f, "{s}"),
            Dep::And(items) => join(f, items, "and"),
            Dep::Or(items) => join(f, items, "or"),
            Dep::With(items) => join(f, items, "with"),
            Dep::Without(a, b) => write!(f, "({a} without {b})"),
            Dep::If {
                then,
                cond,
                otherwise,
            } => match otherwise {
                Some(o) => write!(f, "({then} if {cond} else {o})"),
                None => write!(f, "({then} if {cond})"),
            },
            Dep::Unless {
                then,
                cond,
                otherwise,
            } => match otherwise {
                Some(o) => write!(f, "({then} unless {cond} else {o})"),
                None => write!(f, "({then} unless {cond})"),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse dependency `{text}`: {reason}")]
pub struct DepError {
    pub text: String,
    pub reason: String,
}

const OPS: [&str; 7] = ["and", "or", "if", "unless", "else", "with", "without"];

/// Parses a dependency as written in a spec, repodata or on the command line:
/// `name`, `name >= 1.2-3`, or a rich dependency in parentheses.
pub fn parse(text: &str) -> Result<Dep, DepError> {
    let err = |reason: &str| DepError {
        text: text.to_string(),
        reason: reason.to_string(),
    };
    let t = text.trim();
    if t.starts_with('(') {
        let mut p = Parser { s: t, pos: 0 };
        let dep = p.rich().map_err(|r| err(&r))?;
        p.skip_ws();
        if p.pos != t.len() {
            return Err(err("unexpected text after the closing `)`"));
        }
        return Ok(dep);
    }
    let tokens: Vec<&str> = t.split_whitespace().collect();
    match tokens.as_slice() {
        [name] => Ok(Dep::Simple(Simple {
            name: name.to_string(),
            range: None,
        })),
        [name, op, evr] => {
            let sense = Sense::from_op(op).ok_or_else(|| err("unknown comparison operator"))?;
            Ok(Dep::Simple(Simple {
                name: name.to_string(),
                range: Some((sense, Evr::parse(evr))),
            }))
        }
        [] => Err(err("empty")),
        _ => Err(err("expected `name` or `name OP version`")),
    }
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && self.s.as_bytes()[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    /// A token: a run of non-space characters where parentheses must balance (`perl(Foo)`);
    /// an unbalanced `)` ends it.
    fn token(&mut self) -> &str {
        let start = self.pos;
        let mut depth = 0i32;
        while let Some(c) = self.peek() {
            match c {
                b'(' => depth += 1,
                b')' => {
                    if depth == 0 {
                        break;
                    }
                    depth -= 1;
                }
                c if c.is_ascii_whitespace() && depth == 0 => break,
                _ => {}
            }
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    /// `( term [op term]... )`
    fn rich(&mut self) -> Result<Dep, String> {
        self.skip_ws();
        if self.peek() != Some(b'(') {
            return Err("expected `(`".into());
        }
        self.pos += 1;
        let first = self.term()?;
        self.skip_ws();
        if self.peek() == Some(b')') {
            self.pos += 1;
            return Ok(first);
        }
        let op = self.token().to_string();
        let dep = match op.as_str() {
            "and" | "or" | "with" => {
                let mut items = vec![first];
                loop {
                    items.push(self.term()?);
                    self.skip_ws();
                    if self.peek() == Some(b')') {
                        break;
                    }
                    let next = self.token();
                    if next != op {
                        return Err(format!(
                            "`{op}` and `{next}` cannot be mixed without parentheses"
                        ));
                    }
                }
                match op.as_str() {
                    "and" => Dep::And(items),
                    "or" => Dep::Or(items),
                    _ => Dep::With(items),
                }
            }
            "without" => {
                let second = self.term()?;
                Dep::Without(Box::new(first), Box::new(second))
            }
            "if" | "unless" => {
                let cond = self.term()?;
                self.skip_ws();
                let otherwise = if self.peek() != Some(b')') {
                    let kw = self.token();
                    if kw != "else" {
                        return Err(format!("expected `else` or `)`, found `{kw}`"));
                    }
                    Some(Box::new(self.term()?))
                } else {
                    None
                };
                let (then, cond) = (Box::new(first), Box::new(cond));
                if op == "if" {
                    Dep::If {
                        then,
                        cond,
                        otherwise,
                    }
                } else {
                    Dep::Unless {
                        then,
                        cond,
                        otherwise,
                    }
                }
            }
            "" => return Err("missing `)`".into()),
            other => return Err(format!("unknown operator `{other}`")),
        };
        self.skip_ws();
        if self.peek() != Some(b')') {
            return Err("missing `)` (or operators mixed without parentheses)".into());
        }
        self.pos += 1;
        Ok(dep)
    }

    /// A nested rich dependency, or `name [op evr]`.
    fn term(&mut self) -> Result<Dep, String> {
        self.skip_ws();
        if self.peek() == Some(b'(') {
            return self.rich();
        }
        let name = self.token().to_string();
        if name.is_empty() {
            return Err("missing a dependency".into());
        }
        if OPS.contains(&name.as_str()) {
            return Err(format!("`{name}` where a dependency was expected"));
        }
        let save = self.pos;
        self.skip_ws();
        let op: String = self.token().to_string();
        if let Some(sense) = Sense::from_op(&op) {
            self.skip_ws();
            let evr = self.token().to_string();
            if evr.is_empty() {
                return Err(format!("missing version after `{name} {op}`"));
            }
            return Ok(Dep::Simple(Simple {
                name,
                range: Some((sense, Evr::parse(&evr))),
            }));
        }
        self.pos = save;
        Ok(Dep::Simple(Simple { name, range: None }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn simple(name: &str) -> Dep {
        Dep::Simple(Simple {
            name: name.into(),
            range: None,
        })
    }

    #[test]
    fn parses_simple_and_versioned() {
        assert_eq!(parse("bash").unwrap(), simple("bash"));
        let d = parse("libfoo >= 2.0-1").unwrap();
        assert_eq!(d.to_string(), "libfoo >= 2.0-1");
        assert!(parse("a >> 1").is_err());
    }

    #[test]
    fn parses_rich_forms() {
        for text in [
            "(a or b)",
            "(a and b and c)",
            "(a if b)",
            "(a if b else c)",
            "(a unless b)",
            "(a unless b else c)",
            "(fx-libfoo >= 1.0 with fx-libfoo < 3.0)",
            "(a without b)",
            "((a or b) if (c and d >= 2) else (e with f))",
            "(perl(Foo::Bar) >= 1.2 or pkgconfig(zlib))",
        ] {
            let d = parse(text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(d.to_string(), text);
        }
        assert_eq!(parse("(a)").unwrap(), simple("a"));
        assert_eq!(
            parse("(a or (b and c))").unwrap(),
            Dep::Or(vec![simple("a"), Dep::And(vec![simple("b"), simple("c")])])
        );
    }

    #[test]
    fn rejects_malformed() {
        for text in [
            "(a or b",
            "(a or b and c)",
            "(a if)",
            "(or b)",
            "(a xor b)",
            "(a if b then c)",
            "(a or b) c",
            "()",
        ] {
            assert!(parse(text).is_err(), "{text} parsed");
        }
    }

    fn arb_dep() -> impl Strategy<Value = Dep> {
        // Names that are operator words cannot be written in rich dependencies (rpm reads
        // them as operators too).
        let name = "[a-z][a-z0-9_.+-]{0,6}(\\([a-z:]{1,5}\\))?"
            .prop_filter("not an operator", |n: &String| !OPS.contains(&n.as_str()));
        let leaf = (
            name,
            proptest::option::of((0usize..5, "[0-9]{1,3}(\\.[0-9]{1,2})?(-[0-9a-z]{1,3})?")),
        )
            .prop_map(|(name, range)| {
                let ops = ["=", "<", "<=", ">", ">="];
                Dep::Simple(Simple {
                    name,
                    range: range.map(|(i, v)| (Sense::from_op(ops[i]).unwrap(), Evr::parse(&v))),
                })
            });
        leaf.prop_recursive(4, 24, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 2..4).prop_map(Dep::And),
                prop::collection::vec(inner.clone(), 2..4).prop_map(Dep::Or),
                prop::collection::vec(inner.clone(), 2..3).prop_map(Dep::With),
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| Dep::Without(Box::new(a), Box::new(b))),
                (
                    inner.clone(),
                    inner.clone(),
                    proptest::option::of(inner.clone())
                )
                    .prop_map(|(a, b, c)| Dep::If {
                        then: Box::new(a),
                        cond: Box::new(b),
                        otherwise: c.map(Box::new)
                    }),
                (inner.clone(), inner.clone(), proptest::option::of(inner)).prop_map(
                    |(a, b, c)| Dep::Unless {
                        then: Box::new(a),
                        cond: Box::new(b),
                        otherwise: c.map(Box::new)
                    }
                ),
            ]
        })
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(dep in arb_dep()) {
            let text = match &dep { Dep::Simple(_) => format!("({dep})"), _ => dep.to_string() };
            let parsed = parse(&text).unwrap();
            prop_assert_eq!(parsed.to_string(), dep.to_string());
        }

        #[test]
        fn parser_never_panics(s in "\\PC{0,40}") {
            let _ = parse(&s);
            let _ = parse(&format!("({s})"));
        }
    }
}
