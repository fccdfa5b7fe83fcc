//! RPM version semantics: rpmvercmp (segments, tilde, caret), epoch:version-release comparison,
//! and whether a provide's version range overlaps a requirement's, exactly as rpm decides.

use std::cmp::Ordering;
use std::fmt;

/// Compares two version (or release) strings the way rpm's `rpmvercmp` does.
pub fn vercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let is_sep = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    while i < a.len() || j < b.len() {
        while i < a.len() && is_sep(a[i]) {
            i += 1;
        }
        while j < b.len() && is_sep(b[j]) {
            j += 1;
        }
        let (ca, cb) = (a.get(i).copied(), b.get(j).copied());
        // Tilde sorts before everything, even the end of the string.
        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        // Caret sorts after the end of the string but before anything else.
        if ca == Some(b'^') || cb == Some(b'^') {
            if ca.is_none() {
                return Ordering::Less;
            }
            if cb.is_none() {
                return Ordering::Greater;
            }
            if ca != Some(b'^') {
                return Ordering::Greater;
            }
            if cb != Some(b'^') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        if i >= a.len() || j >= b.len() {
            break;
        }
        let numeric = a[i].is_ascii_digit();
        let class = |c: u8| {
            if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        let (si, sj) = (i, j);
        while i < a.len() && class(a[i]) {
            i += 1;
        }
        while j < b.len() && class(b[j]) {
            j += 1;
        }
        let (mut seg_a, mut seg_b) = (&a[si..i], &b[sj..j]);
        // A numeric segment is newer than an alphabetic one.
        if seg_b.is_empty() {
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        if numeric {
            while seg_a.first() == Some(&b'0') {
                seg_a = &seg_a[1..];
            }
            while seg_b.first() == Some(&b'0') {
                seg_b = &seg_b[1..];
            }
            match seg_a.len().cmp(&seg_b.len()) {
                Ordering::Equal => {}
                other => return other,
            }
        }
        match seg_a.cmp(seg_b) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    match (i >= a.len(), j >= b.len()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

/// An epoch:version-release. A missing epoch is 0; a missing release means "any release" when
/// matching dependencies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Evr {
    pub epoch: u32,
    pub version: String,
    pub release: Option<String>,
}

impl Evr {
    pub fn new(epoch: u32, version: impl Into<String>, release: Option<String>) -> Self {
        Evr {
            epoch,
            version: version.into(),
            release: release.filter(|r| !r.is_empty()),
        }
    }

    /// Parses `[epoch:]version[-release]` (the release is after the last `-`).
    pub fn parse(s: &str) -> Evr {
        let (epoch, rest) = match s.split_once(':') {
            Some((e, rest)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
                (e.parse().unwrap_or(u32::MAX), rest)
            }
            _ => (0, s),
        };
        match rest.rsplit_once('-') {
            Some((v, r)) => Evr::new(epoch, v, Some(r.to_string())),
            None => Evr::new(epoch, rest, None),
        }
    }

    /// Total order of two package versions (both with releases): epoch, then version, then
    /// release; a missing release sorts as equal.
    pub fn cmp_full(&self, other: &Evr) -> Ordering {
        compare(
            self.epoch,
            &self.version,
            self.release.as_deref(),
            other.epoch,
            &other.version,
            other.release.as_deref(),
        )
    }
}

/// Compares two EVRs given as parts; a missing release on either side compares equal.
pub fn compare(
    e1: u32,
    v1: &str,
    r1: Option<&str>,
    e2: u32,
    v2: &str,
    r2: Option<&str>,
) -> Ordering {
    e1.cmp(&e2)
        .then_with(|| vercmp(v1, v2))
        .then_with(|| match (r1, r2) {
            (Some(a), Some(b)) => vercmp(a, b),
            _ => Ordering::Equal,
        })
}

impl fmt::Display for Evr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch > 0 {
            write!(f, "{}:", self.epoch)?;
        }
        f.write_str(&self.version)?;
        if let Some(r) = &self.release {
            write!(f, "-{r}")?;
        }
        Ok(())
    }
}

/// A version comparison in a dependency (rpm's RPMSENSE_LESS/GREATER/EQUAL bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sense(pub u8);

impl Sense {
    pub const LESS: u8 = 2;
    pub const GREATER: u8 = 4;
    pub const EQUAL: u8 = 8;
    pub const ANY: Sense = Sense(0);

    pub fn lt(self) -> bool {
        self.0 & Self::LESS != 0
    }
    pub fn gt(self) -> bool {
        self.0 & Self::GREATER != 0
    }
    pub fn eq(self) -> bool {
        self.0 & Self::EQUAL != 0
    }

    /// From repodata's `flags` attribute (`EQ`, `LT`, `LE`, `GT`, `GE`).
    pub fn from_flags(flags: &str) -> Option<Sense> {
        Some(Sense(match flags {
            "EQ" => Self::EQUAL,
            "LT" => Self::LESS,
            "LE" => Self::LESS | Self::EQUAL,
            "GT" => Self::GREATER,
            "GE" => Self::GREATER | Self::EQUAL,
            _ => return None,
        }))
    }

    /// From an operator as written in specs and rich dependencies.
    pub fn from_op(op: &str) -> Option<Sense> {
        Some(Sense(match op {
            "=" | "==" => Self::EQUAL,
            "<" => Self::LESS,
            "<=" | "=<" => Self::LESS | Self::EQUAL,
            ">" => Self::GREATER,
            ">=" | "=>" => Self::GREATER | Self::EQUAL,
            _ => return None,
        }))
    }

    pub fn op(self) -> &'static str {
        match (self.lt(), self.gt(), self.eq()) {
            (true, false, true) => "<=",
            (true, false, false) => "<",
            (false, true, true) => ">=",
            (false, true, false) => ">",
            (false, false, true) => "=",
            _ => "",
        }
    }
}

/// A version range side: a sense with an EVR (`>= 1.2-3`). `None` EVR means unversioned.
pub type Range<'a> = Option<(Sense, u32, &'a str, Option<&'a str>)>;

/// Whether a provide with range `p` satisfies a requirement with range `r`, by rpm's rules:
/// an unversioned side matches anything; releases are compared only when both sides have one,
/// and a side without a release matches any release when the other side includes EQUAL.
pub fn ranges_overlap(p: Range, r: Range) -> bool {
    let (Some((pf, pe, pv, pr)), Some((rf, re, rv, rr))) = (p, r) else {
        return true;
    };
    if pf.0 == 0 || rf.0 == 0 {
        return true;
    }
    let mut sense = pe.cmp(&re).then_with(|| vercmp(pv, rv));
    if sense == Ordering::Equal {
        match (pr.filter(|s| !s.is_empty()), rr.filter(|s| !s.is_empty())) {
            (Some(a), Some(b)) => sense = vercmp(a, b),
            (Some(_), None) if rf.eq() => return true,
            (None, Some(_)) if pf.eq() => return true,
            _ => {}
        }
    }
    match sense {
        Ordering::Less => pf.gt() || rf.lt(),
        Ordering::Greater => pf.lt() || rf.gt(),
        Ordering::Equal => (pf.eq() && rf.eq()) || (pf.lt() && rf.lt()) || (pf.gt() && rf.gt()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;
    use proptest::prelude::*;

    #[test]
    fn rpm_test_suite_cases() {
        // From rpm's own rpmvercmp tests (tests/rpmvercmp.at).
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0", "2.0", Less),
            ("2.0", "1.0", Greater),
            ("2.0.1", "2.0.1", Equal),
            ("2.0", "2.0.1", Less),
            ("2.0.1", "2.0", Greater),
            ("2.0.1a", "2.0.1a", Equal),
            ("2.0.1a", "2.0.1", Greater),
            ("2.0.1", "2.0.1a", Less),
            ("5.5p1", "5.5p1", Equal),
            ("5.5p1", "5.5p2", Less),
            ("5.5p2", "5.5p1", Greater),
            ("5.5p10", "5.5p10", Equal),
            ("5.5p1", "5.5p10", Less),
            ("5.5p10", "5.5p1", Greater),
            ("10xyz", "10.1xyz", Less),
            ("10.1xyz", "10xyz", Greater),
            ("xyz10", "xyz10", Equal),
            ("xyz10", "xyz10.1", Less),
            ("xyz10.1", "xyz10", Greater),
            ("xyz.4", "xyz.4", Equal),
            ("xyz.4", "8", Less),
            ("8", "xyz.4", Greater),
            ("xyz.4", "2", Less),
            ("2", "xyz.4", Greater),
            ("5.5p2", "5.6p1", Less),
            ("5.6p1", "5.5p2", Greater),
            ("5.6p1", "6.5p1", Less),
            ("6.5p1", "5.6p1", Greater),
            ("6.0.rc1", "6.0", Greater),
            ("6.0", "6.0.rc1", Less),
            ("10b2", "10a1", Greater),
            ("10a2", "10b2", Less),
            ("1.0aa", "1.0aa", Equal),
            ("1.0a", "1.0aa", Less),
            ("1.0aa", "1.0a", Greater),
            ("10.0001", "10.0001", Equal),
            ("10.0001", "10.1", Equal),
            ("10.1", "10.0001", Equal),
            ("10.0001", "10.0039", Less),
            ("10.0039", "10.0001", Greater),
            ("4.999.9", "5.0", Less),
            ("5.0", "4.999.9", Greater),
            ("20101121", "20101121", Equal),
            ("20101121", "20101122", Less),
            ("2_0", "2_0", Equal),
            ("2.0", "2_0", Equal),
            ("2_0", "2.0", Equal),
            ("a", "a", Equal),
            ("a+", "a+", Equal),
            ("a+", "a_", Equal),
            ("a_", "a+", Equal),
            ("+a", "+a", Equal),
            ("+a", "_a", Equal),
            ("_a", "+a", Equal),
            ("+_", "+_", Equal),
            ("_+", "+_", Equal),
            ("_+", "_+", Equal),
            ("+", "_", Equal),
            ("_", "+", Equal),
            ("1.0~rc1", "1.0~rc1", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0", "1.0~rc1", Greater),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0~rc2", "1.0~rc1", Greater),
            ("1.0~rc1~git123", "1.0~rc1~git123", Equal),
            ("1.0~rc1~git123", "1.0~rc1", Less),
            ("1.0~rc1", "1.0~rc1~git123", Greater),
            ("1.0^", "1.0^", Equal),
            ("1.0^", "1.0", Greater),
            ("1.0", "1.0^", Less),
            ("1.0^git1", "1.0^git1", Equal),
            ("1.0^git1", "1.0", Greater),
            ("1.0", "1.0^git1", Less),
            ("1.0^git1", "1.0^git2", Less),
            ("1.0^git2", "1.0^git1", Greater),
            ("1.0^git1", "1.01", Less),
            ("1.01", "1.0^git1", Greater),
            ("1.0^20160101", "1.0^20160101", Equal),
            ("1.0^20160101", "1.0.1", Less),
            ("1.0.1", "1.0^20160101", Greater),
            ("1.0^20160101^git1", "1.0^20160101^git1", Equal),
            ("1.0^20160102", "1.0^20160101^git1", Greater),
            ("1.0^20160101^git1", "1.0^20160102", Less),
            ("1.0~rc1^git1", "1.0~rc1^git1", Equal),
            ("1.0~rc1^git1", "1.0~rc1", Greater),
            ("1.0~rc1", "1.0~rc1^git1", Less),
            ("1.0^git1~pre", "1.0^git1~pre", Equal),
            ("1.0^git1", "1.0^git1~pre", Greater),
            ("1.0^git1~pre", "1.0^git1", Less),
        ];
        for (a, b, want) in cases {
            assert_eq!(vercmp(a, b), want, "{a} vs {b}");
        }
    }

    fn r(op: &str, evr: &str) -> (Sense, Evr) {
        (Sense::from_op(op).unwrap(), Evr::parse(evr))
    }

    fn overlap(p: (Sense, Evr), q: (Sense, Evr)) -> bool {
        ranges_overlap(
            Some((p.0, p.1.epoch, &p.1.version, p.1.release.as_deref())),
            Some((q.0, q.1.epoch, &q.1.version, q.1.release.as_deref())),
        )
    }

    #[test]
    fn ranges() {
        // provide = 2.0-1 against various requirements
        assert!(overlap(r("=", "2.0-1"), r(">=", "2.0")));
        assert!(overlap(r("=", "2.0-1"), r("=", "2.0")));
        assert!(!overlap(r("=", "2.0-1"), r("<", "2.0")));
        assert!(overlap(r("=", "2.0-1"), r("<=", "2.0-1")));
        assert!(!overlap(r("=", "2.0-1"), r(">", "2.0-1")));
        assert!(!overlap(r("=", "1.9-5"), r(">=", "2")));
        assert!(overlap(r("=", "1:1.0-1"), r(">", "2.0")));
        assert!(!overlap(r("=", "1.0~rc1-1"), r(">=", "1.0")));
        // Unversioned provides satisfy anything; two open ranges the same way always overlap.
        assert!(ranges_overlap(
            None,
            Some((Sense(Sense::GREATER), 0, "9", None))
        ));
        assert!(overlap(r(">=", "1"), r(">=", "5")));
        assert!(!overlap(r("<", "1"), r(">", "5")));
        // A provide without release = 2.0 against a requirement with release.
        assert!(overlap(r("=", "2.0"), r(">=", "2.0-5")));
        // rpm: "always matches if the side with no release has SENSE_EQUAL".
        assert!(overlap(r("=", "2.0"), r(">", "2.0-5")));
        assert!(!overlap(r("<", "2.0"), r(">", "2.0-5")));
    }

    #[test]
    fn evr_parse_and_display() {
        let e = Evr::parse("2:1.0-3.azl4");
        assert_eq!(e, Evr::new(2, "1.0", Some("3.azl4".into())));
        assert_eq!(e.to_string(), "2:1.0-3.azl4");
        assert_eq!(Evr::parse("1.0").to_string(), "1.0");
        assert_eq!(Evr::parse("a:b-c").epoch, 0);
        assert_eq!(Evr::parse("0:1-1").to_string(), "1-1");
    }

    proptest! {
        #[test]
        fn reflexive_and_antisymmetric(a in "[0-9a-z.~^+_-]{0,12}", b in "[0-9a-z.~^+_-]{0,12}") {
            prop_assert_eq!(vercmp(&a, &a), Equal);
            prop_assert_eq!(vercmp(&a, &b), vercmp(&b, &a).reverse());
        }

        #[test]
        fn transitive(a in "[0-9a.~^]{0,6}", b in "[0-9a.~^]{0,6}", c in "[0-9a.~^]{0,6}") {
            if vercmp(&a, &b) != Greater && vercmp(&b, &c) != Greater {
                prop_assert_ne!(vercmp(&a, &c), Greater);
            }
        }

        #[test]
        fn numbers_compare_numerically(x in 0u64..1_000_000, y in 0u64..1_000_000) {
            prop_assert_eq!(vercmp(&x.to_string(), &y.to_string()), x.cmp(&y));
            prop_assert_eq!(vercmp(&format!("1.{x}"), &format!("1.{y}")), x.cmp(&y));
        }

        #[test]
        fn tilde_is_older_caret_is_newer(v in "[0-9]{1,3}(\\.[0-9]{1,3}){0,2}", s in "[a-z0-9]{1,5}") {
            prop_assert_eq!(vercmp(&format!("{v}~{s}"), &v), Less);
            prop_assert_eq!(vercmp(&format!("{v}^{s}"), &v), Greater);
        }
    }
}
