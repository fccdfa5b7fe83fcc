//! Variable expansion: `${name}` in text values (built-ins releasever, basearch, arch, plus the
//! definition's own `variables:`), and dnf's `$basearch` spelling inside repository URLs.

use std::collections::BTreeMap;

/// What went wrong expanding one string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarError {
    Undefined { name: String, known: Vec<String> },
    Unterminated,
    BadName(String),
    Cycle(Vec<String>),
}

impl VarError {
    pub fn message(&self) -> String {
        match self {
            VarError::Undefined { name, .. } => format!("undefined variable `${{{name}}}`"),
            VarError::Unterminated => "`${` without a closing `}`".into(),
            VarError::BadName(n) => format!(
                "`{n}` is not a variable name (letters, digits and `_`, not starting with a digit)"
            ),
            VarError::Cycle(chain) => {
                format!(
                    "variables refer to each other in a loop: {}",
                    chain.join(" → ")
                )
            }
        }
    }

    pub fn help(&self) -> String {
        match self {
            VarError::Undefined { name, known } => {
                let hint = super::error::did_you_mean(name, known.iter().map(String::as_str))
                    .map(|s| format!("did you mean `${{{s}}}`? "))
                    .unwrap_or_default();
                format!(
                    "{hint}define it under `variables:`, or write `$${{` for a literal `${{`; known: {}",
                    known.join(", ")
                )
            }
            VarError::Unterminated => "close it with `}`, or write `$${` for a literal `${`".into(),
            VarError::BadName(_) => "variable names look like `mirror_url`".into(),
            VarError::Cycle(_) => "make one of them a plain value".into(),
        }
    }
}

pub fn is_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Expands `${name}` references; `$${` is a literal `${`. A `$` not followed by `{` is kept.
pub fn expand(text: &str, vars: &BTreeMap<String, String>) -> Result<String, VarError> {
    if !text.contains('$') {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix("${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let end = tail.find('}').ok_or(VarError::Unterminated)?;
            let name = &tail[..end];
            if !is_var_name(name) {
                return Err(VarError::BadName(name.to_string()));
            }
            let value = vars.get(name).ok_or_else(|| VarError::Undefined {
                name: name.to_string(),
                known: vars.keys().cloned().collect(),
            })?;
            out.push_str(value);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Expands dnf's brace-less `$name` form (as in `.repo` files: `.../$releasever/$basearch/`)
/// for the given names only; other `$` text is left alone, since URLs may contain it.
pub fn expand_dnf(text: &str, vars: &BTreeMap<String, String>) -> String {
    if !text.contains('$') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        match vars.get(&after[..len]) {
            Some(v) if len > 0 => {
                out.push_str(v);
                rest = &after[len..];
            }
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Resolves user variables that refer to each other (and to built-ins), detecting loops.
/// Returns the complete table, or the variable that failed and why.
pub fn resolve_table(
    builtins: &BTreeMap<String, String>,
    user: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, (String, VarError)> {
    let mut done = builtins.clone();
    let all_names: Vec<String> = builtins.keys().chain(user.keys()).cloned().collect();
    for name in user.keys() {
        let mut stack = Vec::new();
        resolve_one(name, user, &mut done, &mut stack, &all_names)?;
    }
    Ok(done)
}

fn resolve_one(
    name: &str,
    user: &BTreeMap<String, String>,
    done: &mut BTreeMap<String, String>,
    stack: &mut Vec<String>,
    all_names: &[String],
) -> Result<(), (String, VarError)> {
    if done.contains_key(name) {
        return Ok(());
    }
    if let Some(pos) = stack.iter().position(|s| s == name) {
        let mut chain = stack[pos..].to_vec();
        chain.push(name.to_string());
        return Err((stack[pos].clone(), VarError::Cycle(chain)));
    }
    let raw = &user[name];
    stack.push(name.to_string());
    // Resolve what this value refers to first, so its expansion sees final values.
    let mut rest = raw.as_str();
    while let Some(i) = rest.find("${") {
        let is_escape = i > 0 && rest.as_bytes()[i - 1] == b'$';
        let tail = &rest[i + 2..];
        let Some(end) = tail.find('}') else { break };
        let refname = &tail[..end];
        if !is_escape && user.contains_key(refname) && !done.contains_key(refname) {
            resolve_one(refname, user, done, stack, all_names)?;
        }
        rest = &tail[end + 1..];
    }
    stack.pop();
    let value = expand(raw, done).map_err(|e| match e {
        VarError::Undefined { name: missing, .. } => (
            name.to_string(),
            VarError::Undefined {
                name: missing,
                known: all_names.to_vec(),
            },
        ),
        other => (name.to_string(), other),
    })?;
    done.insert(name.to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expands_and_escapes() {
        let v = vars(&[("basearch", "x86_64"), ("releasever", "4.0")]);
        assert_eq!(
            expand("a/${releasever}/${basearch}/", &v).unwrap(),
            "a/4.0/x86_64/"
        );
        assert_eq!(
            expand("$${basearch} costs $5", &v).unwrap(),
            "${basearch} costs $5"
        );
        assert_eq!(expand("no vars", &v).unwrap(), "no vars");
        assert_eq!(
            expand("${nope}", &v).unwrap_err(),
            VarError::Undefined {
                name: "nope".into(),
                known: vec!["basearch".into(), "releasever".into()]
            }
        );
        assert_eq!(expand("${open", &v).unwrap_err(), VarError::Unterminated);
        assert_eq!(
            expand("${a b}", &v).unwrap_err(),
            VarError::BadName("a b".into())
        );
    }

    #[test]
    fn dnf_form() {
        let v = vars(&[("basearch", "aarch64"), ("releasever", "4.0")]);
        assert_eq!(
            expand_dnf("https://x/$releasever/base/$basearch/?a=$other", &v),
            "https://x/4.0/base/aarch64/?a=$other"
        );
        assert_eq!(expand_dnf("$basearchfoo", &v), "$basearchfoo");
    }

    #[test]
    fn user_variables_refer_to_each_other() {
        let b = vars(&[("releasever", "4.0")]);
        let u = vars(&[("mirror", "https://m"), ("base", "${mirror}/${releasever}")]);
        let t = resolve_table(&b, &u).unwrap();
        assert_eq!(t["base"], "https://m/4.0");
    }

    #[test]
    fn loops_are_reported() {
        let u = vars(&[("a", "${b}"), ("b", "x${a}")]);
        let (name, err) = resolve_table(&BTreeMap::new(), &u).unwrap_err();
        assert_eq!(name, "a");
        assert_eq!(
            err,
            VarError::Cycle(vec!["a".into(), "b".into(), "a".into()])
        );
    }

    proptest! {
        // Text without `$` is never changed; escaped references always come out literal.
        #[test]
        fn plain_text_is_untouched(s in "[^$]{0,40}") {
            prop_assert_eq!(expand(&s, &BTreeMap::new()).unwrap(), s.clone());
            prop_assert_eq!(expand_dnf(&s, &BTreeMap::new()), s);
        }

        #[test]
        fn escapes_survive(name in "[a-z_][a-z0-9_]{0,10}", pre in "[a-z /]{0,10}") {
            let text = format!("{pre}$${{{name}}}");
            prop_assert_eq!(expand(&text, &BTreeMap::new()).unwrap(), format!("{pre}${{{name}}}"));
        }

        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let v = vars(&[("a", "1")]);
            let _ = expand(&s, &v);
            let _ = expand_dnf(&s, &v);
        }
    }
}
