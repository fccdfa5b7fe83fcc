//! The names inside a rich dependency as rpm indexes them (`(a if b)` is also filed under `a`
//! and `!b`): a port of rpm's `rpmrichParse` driving rpmdb.c's `updateRichDepCB`.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Single,
    And,
    Or,
    If,
    Unless,
    Else,
    With,
    Without,
}

const CHECK: u32 = 1 << 0;
const NO_WITH: u32 = 1 << 1;
const NO_AND: u32 = 1 << 2;
const NO_OR: u32 = 1 << 3;

/// C's `isspace` in the "C" locale, which rpm's `risspace` is.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// What `updateRichDepCB` collects: names prefixed with ' ' (positive) or '!' (negated).
struct Collector {
    argv: Vec<Vec<u8>>,
    neg: bool,
    /// Where each open parenthesis level's condition block starts in `argv`.
    level_start: Vec<usize>,
}

impl Collector {
    fn enter(&mut self) {
        self.level_start.push(self.argv.len());
    }

    fn leave(&mut self, op: Op) {
        self.level_start.pop();
        if matches!(op, Op::If | Op::Unless) {
            self.neg = !self.neg;
        }
    }

    fn simple(&mut self, name: &[u8]) {
        if name.is_empty() || (name.len() > 7 && name.starts_with(b"rpmlib(")) {
            return;
        }
        let mut s = Vec::with_capacity(name.len() + 1);
        s.push(if self.neg { b'!' } else { b' ' });
        s.extend_from_slice(name);
        self.argv.push(s);
    }

    fn op(&mut self, op: Op) {
        let level = self.level_start.len();
        match op {
            Op::If | Op::Unless => {
                if let Some(start) = self.level_start.get_mut(level.wrapping_sub(1)) {
                    *start = self.argv.len();
                }
                self.neg = !self.neg;
            }
            Op::Else => {
                // The condition block again, inverted: `(a if b else c)` is also about `b`.
                let start = self.level_start.last().copied().unwrap_or(0);
                let end = self.argv.len();
                for i in start..end {
                    let mut s = self.argv[i].clone();
                    s[0] = if s[0] == b' ' { b'!' } else { b' ' };
                    self.argv.push(s);
                }
                self.neg = !self.neg;
            }
            _ => {}
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    out: Collector,
}

impl Parser<'_> {
    /// The byte at `i`, with the end of the string reading as NUL like the C code.
    fn at(&self, i: usize) -> u8 {
        self.s.get(i).copied().unwrap_or(0)
    }

    /// SKIPWHITE: spaces and commas.
    fn skip_white(&self, mut p: usize) -> usize {
        while self.at(p) != 0 && (is_space(self.at(p)) || self.at(p) == b',') {
            p += 1;
        }
        p
    }

    /// SKIPNONWHITEX: a word, where parentheses nest and an unmatched ')' ends it.
    fn skip_nonwhite(&self, mut p: usize) -> usize {
        let mut depth: i32 = 0;
        loop {
            let c = self.at(p);
            if c == 0 || is_space(c) || c == b',' {
                break;
            }
            if c == b')' {
                let stop = depth <= 0;
                depth -= 1;
                if stop {
                    break;
                }
            }
            p += 1;
            if c == b'(' {
                depth += 1;
            }
        }
        p
    }

    fn parse_simple(&mut self, mut p: usize) -> Option<usize> {
        let n = p;
        p = self.skip_nonwhite(p);
        if p == n {
            return None;
        }
        let name = n..p;
        p = self.skip_white(p);
        if self.at(p) != 0 {
            let pe = self.skip_nonwhite(p);
            let sense = matches!(
                &self.s[p..pe],
                b"<=" | b"=<" | b"<" | b"==" | b"=" | b">=" | b"=>" | b">"
            );
            if sense {
                p = self.skip_white(pe);
                let e = p;
                p = self.skip_nonwhite(p);
                if p == e {
                    return None;
                }
            }
        }
        let name = self.s[name].to_vec();
        self.out.simple(&name);
        Some(p)
    }

    fn parse_op(&self, p: usize) -> Option<(Op, usize)> {
        let mut pe = p;
        while self.at(pe) != 0 && !is_space(self.at(pe)) && self.at(pe) != b')' {
            pe += 1;
        }
        let op = match &self.s[p..pe] {
            b"and" => Op::And,
            b"or" => Op::Or,
            b"if" => Op::If,
            b"unless" => Op::Unless,
            b"else" => Op::Else,
            b"with" => Op::With,
            b"without" => Op::Without,
            _ => return None,
        };
        Some((op, pe))
    }

    /// rpmrichParseInternal; `checkp` carries the context checks between levels.
    fn parse_rich(&mut self, mut p: usize, checkp: Option<&mut u32>) -> Option<usize> {
        let mut op = Op::Single;
        let mut firstop = Op::Single;
        let mut chainop: Option<Op> = None;
        let mut check = checkp.as_ref().map_or(0, |c| **c);

        self.out.enter();
        if self.at(p) != b'(' {
            return None;
        }
        p += 1;
        loop {
            p = self.skip_white(p);
            if self.at(p) == b')' {
                return None;
            }
            if self.at(p) == b'(' {
                let mut subcheck = check & CHECK;
                p = self.parse_rich(p, Some(&mut subcheck))?;
                if matches!(op, Op::If | Op::Unless) {
                    subcheck &= !(NO_AND | NO_OR);
                }
                check |= subcheck;
            } else {
                p = self.parse_simple(p)?;
            }
            p = self.skip_white(p);
            if self.at(p) == 0 {
                return None;
            }
            if self.at(p) == b')' {
                break;
            }
            let (next, pe) = self.parse_op(p)?;
            op = next;
            if firstop == Op::Single {
                firstop = op;
            }
            if op == Op::Else && matches!(chainop, Some(Op::If | Op::Unless)) {
                chainop = None;
            }
            if let Some(chain) = chainop
                && (op != chain || !matches!(op, Op::And | Op::Or | Op::With))
            {
                return None;
            }
            self.out.op(op);
            chainop = Some(op);
            p = pe;
        }

        if !check_ops(firstop, check) {
            return None;
        }
        if firstop == Op::If {
            check |= NO_OR;
        }
        if firstop == Op::Unless {
            check |= NO_AND;
        }
        if matches!(op, Op::And | Op::Or) {
            check &= !(NO_AND | NO_OR);
        }
        if !matches!(op, Op::Single | Op::With | Op::Without | Op::Or) {
            check |= NO_WITH;
        }
        p += 1;
        self.out.leave(op);
        if let Some(c) = checkp {
            *c |= check;
        }
        Some(p)
    }
}

/// rpmrichParseCheck.
fn check_ops(op: Op, check: u32) -> bool {
    if matches!(op, Op::With | Op::Without) && check & NO_WITH != 0 {
        return false;
    }
    if check & CHECK == 0 {
        return true;
    }
    if matches!(op, Op::And | Op::If) && check & NO_AND != 0 {
        return false;
    }
    if matches!(op, Op::Or | Op::Unless) && check & NO_OR != 0 {
        return false;
    }
    true
}

/// The extra index keys rpm files a rich dependency under (updateRichDep): sorted, without
/// duplicates, negated names keeping their '!'. Empty when rpm's parser rejects the string.
pub(super) fn index_names(dep: &[u8]) -> Vec<Vec<u8>> {
    let mut parser = Parser {
        s: dep,
        out: Collector {
            argv: Vec::new(),
            neg: false,
            level_start: Vec::new(),
        },
    };
    if parser.parse_rich(0, None).is_none() {
        return Vec::new();
    }
    let mut argv = parser.out.argv;
    argv.sort();
    argv.dedup();
    argv.into_iter()
        .map(|mut s| {
            if s.first() == Some(&b' ') {
                s.remove(0);
            }
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::index_names;

    fn names(dep: &str) -> Vec<String> {
        index_names(dep.as_bytes())
            .into_iter()
            .map(|s| String::from_utf8(s).unwrap())
            .collect()
    }

    #[test]
    fn rich_dependency_index_keys_follow_rpm() {
        assert_eq!(names("(a or b)"), ["a", "b"]);
        assert_eq!(names("(b >= 2.0 and a)"), ["a", "b"]);
        assert_eq!(names("(a if b)"), ["a", "!b"]);
        assert_eq!(names("(a if b else c)"), ["a", "b", "c", "!b"]);
        assert_eq!(names("(a unless b else c)"), ["a", "b", "c", "!b"]);
        assert_eq!(
            names("((a or b) and (c if d >= 2.0 else a))"),
            ["a", "b", "c", "d", "!d"]
        );
        assert_eq!(names("(x with rpmlib(Foo) )"), ["x"]);
        assert_eq!(names("(pkgconfig(foo) or b)"), ["b", "pkgconfig(foo)"]);
        // rpm's parser rejects these: nothing beyond the whole string is indexed.
        assert!(names("((a and b) with c)").is_empty());
        assert!(names("(a and b or c)").is_empty());
        assert!(names("(a and").is_empty());
        assert!(names("()").is_empty());
        assert!(names("(a >=)").is_empty());
    }
}
