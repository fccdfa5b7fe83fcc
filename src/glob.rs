//! Shell-style globs (`*`, `?`, `[a-z]`, `[!x]`) for package name patterns, matched the way
//! dnf's fnmatch-based excludes match them.

/// Whether `name` matches the glob `pattern` (the whole name, case-sensitive).
pub fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_from(&p, &n)
}

/// Whether the text has glob metacharacters at all.
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

fn match_from(p: &[char], n: &[char]) -> bool {
    // Iterative matching with one backtrack point for the last `*`: linear in practice and
    // never exponential, whatever the pattern.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = class(&p[pi..], n[ni]) {
                        if matched {
                            pi += next;
                            ni += 1;
                            continue;
                        }
                    } else if n[ni] == '[' {
                        // An unclosed `[` is a literal.
                        pi += 1;
                        ni += 1;
                        continue;
                    }
                }
                c if c == n[ni] => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches one character against a `[...]` class at the start of `p`. Returns whether it
/// matched and the class's length, or `None` if the class is not closed.
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            if p[i] <= c && c <= p[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if p[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn basics() {
        assert!(matches("kernel*", "kernel-core"));
        assert!(matches("kernel*", "kernel"));
        assert!(!matches("kernel*", "xkernel"));
        assert!(matches("*-devel", "glibc-devel"));
        assert!(matches("python3.1?", "python3.12"));
        assert!(matches("lib[a-c]z", "libbz"));
        assert!(!matches("lib[!a-c]z", "libbz"));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("a*b*c", "aXXbYY"));
        assert!(matches("[]x]", "]"));
        assert!(matches("a[b", "a[b"));
        assert!(matches("*", ""));
        assert!(!matches("?", ""));
    }

    proptest! {
        #[test]
        fn literal_patterns_match_only_themselves(s in "[a-z0-9._+-]{0,20}", t in "[a-z0-9._+-]{0,20}") {
            prop_assert!(matches(&s, &s));
            prop_assert_eq!(matches(&s, &t), s == t);
        }

        #[test]
        fn star_prefix_and_suffix(pre in "[a-z]{0,6}", mid in "[a-z]{0,6}", suf in "[a-z]{0,6}") {
            let name = format!("{pre}{mid}{suf}");
            let pattern = format!("{pre}*{suf}");
            prop_assert!(matches(&pattern, &name));
        }

        #[test]
        fn never_panics(p in "\\PC{0,16}", n in "\\PC{0,16}") {
            let _ = matches(&p, &n);
        }
    }
}
