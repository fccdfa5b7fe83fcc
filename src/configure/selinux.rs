//! SELinux file labels: works out every staging-tree path's context from the image's own policy
//! (file_contexts, read as libselinux does for `setfiles`) and records it as `security.selinux`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;

use regex::bytes::{Regex, RegexBuilder};

use crate::tree::{Kind, Tree};

/// The extended attribute the kernel keeps a file's context in.
pub const XATTR: &str = "security.selinux";

const CONFIG: &str = "/etc/selinux/config";
/// libselinux's SELINUXDEFAULT, used when the config names no policy.
const DEFAULT_TYPE: &str = "targeted";
const NONE: &str = "<<none>>";
/// libselinux refuses longer patterns so that a malformed line cannot make compilation explode.
const MAX_REGEX_LEN: usize = 4096;
/// read_spec_entry() refuses longer fields.
const MAX_FIELD_LEN: usize = u16::MAX as usize;
/// How many leading directories of a pattern place it in the spec tree (SPEC_NODE_MAX_DEPTH):
/// where a pattern sits decides which paths ever try it, so this is behaviour, not tuning.
const MAX_NODE_DEPTH: usize = 3;
/// Generous for any real file_contexts pattern, small enough that a pathological one fails fast.
const REGEX_SIZE_LIMIT: usize = 1 << 22;

/// The policy found in the image: /etc/selinux/config SELINUXTYPE (default "targeted"), then
/// /etc/selinux/<type>/contexts/files/file_contexts, file_contexts.homedirs and
/// file_contexts.local, with file_contexts.subs_dist and file_contexts.subs for path
/// equivalences.
#[derive(Debug)]
pub struct Policy {
    /// The spec tree; index 0 is the root. Regex specs live in the node of their leading fixed
    /// directories, and a path only tries the specs of its own node and that node's ancestors.
    nodes: Vec<Node>,
    /// Specs without regex meta characters, by the exact path they name, in input order. They
    /// always win over regex specs, whatever their place in the file.
    literals: HashMap<Box<str>, Vec<Spec>>,
    /// Substitution files in the order they apply (file_contexts.subs before .subs_dist), each
    /// with its lines last first.
    stages: Vec<Vec<(String, String)>>,
}

#[derive(Debug, Default)]
struct Node {
    parent: Option<usize>,
    children: HashMap<Box<str>, usize>,
    /// In input order: a later spec beats an earlier one.
    regexes: Vec<RegexSpec>,
}

#[derive(Debug)]
struct Spec {
    /// `None` for `<<none>>`.
    context: Option<Box<str>>,
    kind: FileKind,
    /// Input number in the high half, line number in the low: the later, the stronger.
    seq: u64,
}

#[derive(Debug)]
struct RegexSpec {
    spec: Spec,
    regex: Regex,
    /// Bytes every match starts with; checking them first skips most specs without running
    /// the regex.
    prefix: Box<[u8]>,
}

/// The FILETYPE column of file_contexts(5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    All,
    Regular,
    Dir,
    Symlink,
    Char,
    Block,
    Fifo,
    Socket,
}

impl FileKind {
    fn from_flag(flag: &str) -> Option<FileKind> {
        Some(match flag {
            "--" => FileKind::Regular,
            "-d" => FileKind::Dir,
            "-l" => FileKind::Symlink,
            "-c" => FileKind::Char,
            "-b" => FileKind::Block,
            "-p" => FileKind::Fifo,
            "-s" => FileKind::Socket,
            _ => return None,
        })
    }

    fn of(kind: &Kind) -> FileKind {
        match kind {
            Kind::File { .. } => FileKind::Regular,
            Kind::Dir => FileKind::Dir,
            Kind::Symlink { .. } => FileKind::Symlink,
            Kind::CharDev { .. } => FileKind::Char,
            Kind::BlockDev { .. } => FileKind::Block,
            Kind::Fifo => FileKind::Fifo,
            Kind::Socket => FileKind::Socket,
        }
    }

    fn applies_to(self, kind: FileKind) -> bool {
        self == FileKind::All || self == kind
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SelinuxError {
    /// A line `setfiles` would refuse too (it then labels nothing).
    #[error("{file}:{line}: {problem}: `{text}`\n  {hint}")]
    BadLine {
        file: String,
        line: usize,
        text: String,
        problem: String,
        hint: String,
    },
}

const HINT_FORMAT: &str = "a file_contexts line is `REGEX [FILETYPE] CONTEXT` (file_contexts(5)); fix or remove \
     the line in the policy package, the module that adds it, or `semanage fcontext`";

/// One file_contexts input: its name for messages and its place in precedence.
struct Input<'a> {
    name: &'a str,
    text: &'a str,
    number: u8,
}

impl Policy {
    /// None when no policy is installed in the tree (then labelling is skipped and the caller
    /// says so). `policy_type` overrides SELINUXTYPE from /etc/selinux/config.
    pub fn load(tree: &Tree, policy_type: Option<&str>) -> Result<Option<Policy>, SelinuxError> {
        let ty = match policy_type {
            Some(t) => t.to_string(),
            None => config(tree).map_or_else(|| DEFAULT_TYPE.to_string(), |(_, t)| t),
        };
        // An empty or nested name would make the path point at another file of the image.
        if ty.is_empty() || ty.contains('/') {
            return Ok(None);
        }
        let base = format!("/etc/selinux/{ty}/contexts/files/file_contexts");
        let Some(main) = tree.read_text(&base) else {
            return Ok(None);
        };
        // libselinux reads .homedirs (genhomedircon's expansion of HOME_DIR entries, e.g.
        // ~/.ssh) and .local after the main file, unless told to read the base file only;
        // setfiles and restorecon do not tell it that.
        let homedirs_name = format!("{base}.homedirs");
        let local_name = format!("{base}.local");
        let homedirs = tree.read_text(&homedirs_name);
        let local = tree.read_text(&local_name);
        let mut inputs = vec![Input {
            name: &base,
            text: &main,
            number: 0,
        }];
        if let Some(text) = &homedirs {
            inputs.push(Input {
                name: &homedirs_name,
                text,
                number: 1,
            });
        }
        if let Some(text) = &local {
            inputs.push(Input {
                name: &local_name,
                text,
                number: 2,
            });
        }
        let dist = tree
            .read_text(&format!("{base}.subs_dist"))
            .unwrap_or_default();
        let subs = tree.read_text(&format!("{base}.subs")).unwrap_or_default();
        Policy::build(&inputs, &[&dist, &subs]).map(Some)
    }

    /// Parses a policy from file_contexts text, optional file_contexts.local text, and the
    /// substitution files in the order `[subs_dist, subs]`: later ones apply first, as
    /// libselinux applies file_contexts.subs before file_contexts.subs_dist.
    pub fn parse(
        file_contexts: &str,
        local: Option<&str>,
        subs: &[&str],
    ) -> Result<Policy, SelinuxError> {
        let mut inputs = vec![Input {
            name: "file_contexts",
            text: file_contexts,
            number: 0,
        }];
        if let Some(text) = local {
            inputs.push(Input {
                name: "file_contexts.local",
                text,
                number: 2,
            });
        }
        Policy::build(&inputs, subs)
    }

    fn build(inputs: &[Input], subs: &[&str]) -> Result<Policy, SelinuxError> {
        let mut policy = Policy {
            nodes: vec![Node::default()],
            literals: HashMap::new(),
            stages: subs.iter().rev().map(|text| parse_subs(text)).collect(),
        };
        for input in inputs {
            for (i, line) in input.text.split('\n').enumerate() {
                policy.add_line(input, i + 1, line)?;
            }
        }
        Ok(policy)
    }

    fn add_line(&mut self, input: &Input, number: usize, raw: &str) -> Result<(), SelinuxError> {
        let bad = |problem: String, hint: &str| SelinuxError::BadLine {
            file: input.name.to_string(),
            line: number,
            text: raw.trim_end().to_string(),
            problem,
            hint: hint.to_string(),
        };
        // libselinux sees each line as a C string.
        let line = raw.split('\0').next().unwrap_or("");
        let line = line.trim_start_matches(is_c_space);
        if line.is_empty() || line.starts_with('#') {
            return Ok(());
        }
        let mut fields = Vec::with_capacity(3);
        // Like read_spec_entries(), anything after the third field is never looked at.
        for field in line.split(is_c_space).filter(|f| !f.is_empty()).take(3) {
            if !field.is_ascii() {
                return Err(bad(
                    "non-ASCII characters".into(),
                    "libselinux only reads ASCII here; write other bytes as escapes (`\\xc3\\xa9`)",
                ));
            }
            if field.len() >= MAX_FIELD_LEN {
                return Err(bad("a field is too long".into(), HINT_FORMAT));
            }
            fields.push(field);
        }
        let (pattern, kind, context) = match fields[..] {
            [pattern, context] => (pattern, FileKind::All, context),
            [pattern, flag, context] => {
                let kind = FileKind::from_flag(flag).ok_or_else(|| {
                    bad(
                        format!("invalid file type `{flag}`"),
                        "the file type is one of --, -d, -l, -c, -b, -p, -s (or left out for any kind)",
                    )
                })?;
                (pattern, kind, context)
            }
            _ => return Err(bad("missing fields".into(), HINT_FORMAT)),
        };
        if let Some(problem) = context_problem(context) {
            return Err(bad(
                format!("`{context}` {problem}"),
                "a context is `user:role:type[:range]` (e.g. system_u:object_r:etc_t:s0) or <<none>>",
            ));
        }
        let spec = Spec {
            context: (context != NONE).then(|| Box::from(context)),
            kind,
            seq: (u64::from(input.number) << 32) | number as u64,
        };
        if let Some(literal) = simplify(pattern) {
            self.literals.entry(literal.into()).or_default().push(spec);
            return Ok(());
        }
        let hint = "file_contexts patterns are PCRE2 regular expressions; fix the pattern in the policy \
             package, the module that adds it, or `semanage fcontext`";
        if pattern.len() >= MAX_REGEX_LEN {
            return Err(bad(
                format!("the pattern is longer than {} bytes", MAX_REGEX_LEN - 1),
                hint,
            ));
        }
        let regex = compile(pattern).map_err(|e| bad(format!("invalid pattern: {e}"), hint))?;
        let node = self.node_for(pattern);
        self.nodes[node].regexes.push(RegexSpec {
            spec,
            regex,
            prefix: fixed_prefix(pattern.as_bytes()).into(),
        });
        Ok(())
    }

    /// The node a regex spec belongs to, as libselinux's insert_spec() places it: each
    /// following `/`-delimited piece that is literal becomes a level. Like libselinux, the first
    /// byte is skipped whatever it is, and pieces inside groups count too, so `(/usr/x|/opt)`
    /// lands under `usr`; matching where libselinux looks keeps even those results the same.
    fn node_for(&mut self, pattern: &str) -> usize {
        let bytes = pattern.as_bytes();
        let (mut node, mut p, mut depth) = (0, 0, 0);
        while depth < MAX_NODE_DEPTH {
            let Some(offset) = bytes[p + 1..].iter().position(|&b| b == b'/') else {
                break;
            };
            let q = p + 1 + offset;
            if q == p + 1 {
                p = q;
                continue;
            }
            let Some(stem) = simplify(&pattern[p + 1..q]) else {
                break;
            };
            node = match self.nodes[node].children.get(stem.as_str()) {
                Some(&child) => child,
                None => {
                    let child = self.nodes.len();
                    self.nodes.push(Node {
                        parent: Some(node),
                        ..Node::default()
                    });
                    self.nodes[node].children.insert(stem.into(), child);
                    child
                }
            };
            p = q;
            depth += 1;
        }
        node
    }

    /// The deepest node whose directories lead `key` (lookup_find_deepest_node()).
    fn deepest(&self, key: &str) -> usize {
        let bytes = key.as_bytes();
        let (mut node, mut p) = (0, 0);
        while bytes.get(p) == Some(&b'/') {
            let Some(offset) = bytes[p + 1..].iter().position(|&b| b == b'/') else {
                break;
            };
            let q = p + 1 + offset;
            if q == p + 1 {
                p = q;
                continue;
            }
            match self.nodes[node].children.get(&key[p + 1..q]) {
                Some(&child) => {
                    node = child;
                    p = q;
                }
                None => break,
            }
        }
        node
    }

    /// The context for a path of this kind, or None for <<none>> or no match.
    pub fn lookup(&self, path: &str, kind: &Kind) -> Option<&str> {
        let key = self.key(path)?;
        let kind = FileKind::of(kind);
        if let Some(specs) = self.literals.get(key.as_ref())
            && let Some(spec) = specs.iter().rev().find(|s| s.kind.applies_to(kind))
        {
            return spec.context.as_deref();
        }
        // lookup_check_node(): the latest matching spec of the deepest node, then any later
        // matching spec of each ancestor in turn. A <<none>> met on the way ends the lookup
        // there, even if an ancestor holds a later match: libselinux does the same.
        let bytes = key.as_bytes();
        let mut best: Option<&Spec> = None;
        let mut node = Some(self.deepest(&key));
        while let Some(n) = node {
            for r in self.nodes[n].regexes.iter().rev() {
                if best.is_some_and(|b| r.spec.seq < b.seq) {
                    break;
                }
                if !r.spec.kind.applies_to(kind)
                    || !bytes.starts_with(&r.prefix)
                    || !r.regex.is_match(bytes)
                {
                    continue;
                }
                r.spec.context.as_ref()?;
                best = Some(&r.spec);
                break;
            }
            node = self.nodes[n].parent;
        }
        best.and_then(|s| s.context.as_deref())
    }

    /// The path libselinux matches for `path`: slashes collapsed, no trailing slash, then the
    /// substitutions.
    fn key<'a>(&self, path: &'a str) -> Option<Cow<'a, str>> {
        let mut key = Cow::Borrowed(path);
        if key.contains("//") {
            let mut clean = String::with_capacity(key.len());
            for c in key.chars() {
                if !(c == '/' && clean.ends_with('/')) {
                    clean.push(c);
                }
            }
            key = Cow::Owned(clean);
        }
        if key.is_empty() {
            return None;
        }
        if key.len() > 1 && key.ends_with('/') {
            key.to_mut().pop();
        }
        for stage in &self.stages {
            if let Some(substituted) = substitute(stage, &key) {
                key = Cow::Owned(substituted);
            }
        }
        Some(key)
    }
}

/// What labelling did.
#[derive(Debug, Default, Clone)]
pub struct LabelReport {
    /// Paths that got `security.selinux`.
    pub labelled: usize,
    /// Paths the policy gives no context (<<none>> or no match); they carry no label.
    pub unlabelled: Vec<String>,
    /// Hardlinks whose own context differs from the one their inode got (the first path of the
    /// link group that has one, as setfiles keeps the first it meets and warns about the rest).
    pub conflicts: Vec<String>,
}

/// Sets `security.selinux` on every path of the manifest (replacing any previous label),
/// except paths the policy gives no context, which are left without one.
pub fn label(tree: &mut Tree, policy: &Policy) -> LabelReport {
    let mut report = LabelReport::default();
    // Hardlinks are one inode, so one label: whichever path the backend writes, the result is
    // the same.
    let mut groups: HashMap<u32, &str> = HashMap::new();
    let mut decided = Vec::with_capacity(tree.entries().len());
    for (path, entry) in tree.entries() {
        let link = match entry.kind {
            Kind::File { link, .. } => link,
            _ => None,
        };
        let context = policy.lookup(path, &entry.kind);
        if let (Some(group), Some(context)) = (link, context) {
            groups.entry(group).or_insert(context);
        }
        decided.push((path.clone(), context, link));
    }
    for (path, own, link) in decided {
        let context = match link.and_then(|g| groups.get(&g).copied()) {
            Some(shared) => {
                if own.is_some_and(|c| c != shared) {
                    report.conflicts.push(path.clone());
                }
                Some(shared)
            }
            None => own,
        };
        let Some(entry) = tree.get_mut(&path) else {
            continue;
        };
        match context {
            Some(context) => {
                // The kernel stores (and getxattr returns) the context with its NUL.
                let mut value = Vec::with_capacity(context.len() + 1);
                value.extend_from_slice(context.as_bytes());
                value.push(0);
                entry.xattrs.insert(XATTR.to_string(), value);
                report.labelled += 1;
            }
            None => {
                entry.xattrs.remove(XATTR);
                report.unlabelled.push(path);
            }
        }
    }
    report
}

/// Reads SELINUX and SELINUXTYPE from /etc/selinux/config in the tree: (mode, type). The mode
/// is "enforcing", "permissive", "disabled", or empty when the file names none; the type
/// defaults to "targeted". None when the file does not exist.
pub fn config(tree: &Tree) -> Option<(String, String)> {
    const TAG: &str = "SELINUXTYPE=";
    let text = tree.read_text(CONFIG)?;
    let mut mode = None;
    let mut ty = None;
    for raw in text.split('\n') {
        // selinux_getenforcemode(): SELINUX= only at the very start of a line, the first
        // recognised value wins, compared by prefix and case-insensitively.
        if mode.is_none()
            && let Some(value) = raw.strip_prefix("SELINUX=")
        {
            let value = value.trim_start_matches(is_c_space).as_bytes();
            mode = ["enforcing", "permissive", "disabled"]
                .into_iter()
                .find(|m| {
                    value
                        .get(..m.len())
                        .is_some_and(|v| v.eq_ignore_ascii_case(m.as_bytes()))
                });
        }
        // init_selinux_config(): the tag case-insensitively after leading blanks, last one wins.
        let line = raw.trim_start_matches(is_c_space);
        if line
            .as_bytes()
            .get(..TAG.len())
            .is_some_and(|t| t.eq_ignore_ascii_case(TAG.as_bytes()))
        {
            let value = line[TAG.len()..]
                .trim_start_matches(is_c_space)
                .trim_end_matches(|c: char| is_c_space(c) || c.is_control());
            ty = Some(value.to_string());
        }
    }
    Some((
        mode.unwrap_or_default().to_string(),
        ty.unwrap_or_else(|| DEFAULT_TYPE.to_string()),
    ))
}

/// C's isspace() in the "C" locale, which is what libselinux splits on.
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// Why a context column cannot be a context. setfiles checks contexts against the binary
/// policy; without one, a syntax check at least catches a missing or shifted column.
fn context_problem(context: &str) -> Option<&'static str> {
    if context == NONE {
        return None;
    }
    let mut parts = context.splitn(4, ':');
    let named = (0..3).all(|_| parts.next().is_some_and(|p| !p.is_empty()));
    if !named {
        return Some("is not a context");
    }
    if parts.next().is_some_and(str::is_empty) {
        return Some("has an empty MLS range");
    }
    None
}

/// A substitution file: `SRC DST` lines, `#` comments. libselinux tries them last line first.
fn parse_subs(text: &str) -> Vec<(String, String)> {
    let mut subs = Vec::new();
    for line in text.split('\n') {
        let line = line.trim_start_matches(is_c_space);
        if line.starts_with('#') {
            continue;
        }
        let mut fields = line.split(is_c_space).filter(|f| !f.is_empty());
        if let (Some(src), Some(dst)) = (fields.next(), fields.next()) {
            subs.push((src.to_string(), dst.to_string()));
        }
    }
    subs.reverse();
    subs
}

/// selabel_apply_subs(): the first substitution whose source is a whole-component prefix.
fn substitute(subs: &[(String, String)], key: &str) -> Option<String> {
    for (src, dst) in subs {
        let Some(rest) = key.strip_prefix(src.as_str()) else {
            continue;
        };
        if !(rest.is_empty() || rest.starts_with('/')) {
            continue;
        }
        let rest = if dst == "/" && rest.starts_with('/') {
            &rest[1..]
        } else {
            rest
        };
        return Some(format!("{dst}{rest}"));
    }
    None
}

/// The path a meta-character-free pattern names (regex_simplify()), or None when the pattern
/// is a real regex. Only escapes libselinux knows to be plain characters keep it literal.
fn simplify(pattern: &str) -> Option<String> {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '.' | '^' | '$' | '?' | '*' | '+' | '|' | '[' | '(' | '{' | ']' | ')' | '}' => {
                return None;
            }
            '\\' => match chars.next()? {
                c @ ('.' | '^' | '$' | '?' | '*' | '+' | '|' | '[' | '(' | '{' | ']' | ')'
                | '}' | '-' | '_' | ',') => out.push(c),
                _ => return None,
            },
            c => out.push(c),
        }
    }
    Some(out)
}

/// The bytes every match of `pattern` (anchored at its start) begins with. Empty when unsure:
/// it only ever lets the regex run.
fn fixed_prefix(pattern: &[u8]) -> Vec<u8> {
    if top_level_alternation(pattern) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = pattern.get(i) {
        match c {
            b'.' | b'^' | b'$' | b'[' | b'(' | b')' | b'|' | b']' | b'}' | b'+' => break,
            // These may repeat the previous byte zero times.
            b'?' | b'*' | b'{' => {
                out.pop();
                break;
            }
            b'\\' => match pattern.get(i + 1) {
                Some(&e) if !e.is_ascii_alphanumeric() => {
                    out.push(e);
                    i += 2;
                    continue;
                }
                _ => break,
            },
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// Whether `pattern` has a `|` outside any group: anchoring it as `^…$` then anchors only the
/// first and last alternatives.
fn top_level_alternation(pattern: &[u8]) -> bool {
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&c) = pattern.get(i) {
        match c {
            b'\\' if pattern.get(i + 1) == Some(&b'Q') => {
                let (_, used) = quoted(pattern, i);
                i += used;
                continue;
            }
            b'\\' => {
                i += 2;
                continue;
            }
            b'[' => match class(pattern, i) {
                Ok((_, used)) => {
                    i += used;
                    continue;
                }
                Err(_) => return true,
            },
            b'(' if pattern[i + 1..].starts_with(b"?#") => {
                match pattern[i..].iter().position(|&b| b == b')') {
                    Some(end) => {
                        i += end + 1;
                        continue;
                    }
                    None => return true,
                }
            }
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            b'|' if depth == 0 => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// Compiles a file_contexts pattern the way libselinux does: `^PATTERN$` with PCRE2_DOTALL and
/// no UTF mode, so it matches bytes.
fn compile(pattern: &str) -> Result<Regex, String> {
    let translated = translate(format!("^{pattern}$").as_bytes())?;
    RegexBuilder::new(&translated)
        .unicode(false)
        .dot_matches_new_line(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| match e {
            // The syntax message quotes the translated pattern; only its last line is about
            // what the user wrote.
            regex::Error::Syntax(text) => text
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix("error: "))
                .unwrap_or("invalid regular expression")
                .to_string(),
            regex::Error::CompiledTooBig(_) => "the pattern compiles too big".to_string(),
            other => other.to_string(),
        })
}

/// Rewrites a PCRE2 pattern into the `regex` crate's syntax (bytes, Unicode off) where the two
/// differ; constructs with no equivalent are refused rather than approximated.
fn translate(p: &[u8]) -> Result<String, String> {
    let mut out = String::with_capacity(p.len() * 2);
    let mut i = 0;
    let mut quantified = false;
    while let Some(&c) = p.get(i) {
        let after_quantifier = std::mem::replace(&mut quantified, false);
        match c {
            b'\\' => {
                i += escape(p, i, &mut out)?;
                continue;
            }
            b'[' => {
                let (class, used) = class(p, i)?;
                out.push_str(&class);
                i += used;
                continue;
            }
            b'(' => {
                i += group(p, i, &mut out)?;
                continue;
            }
            b'+' if after_quantifier => {
                return Err("possessive quantifiers are not supported".into());
            }
            // Laziness cannot change whether a whole-string match exists.
            b'?' if after_quantifier => out.push('?'),
            b'*' | b'+' | b'?' => {
                out.push(c as char);
                quantified = true;
            }
            b'{' => match quantifier(p, i) {
                Some((text, used)) => {
                    out.push_str(&text);
                    i += used;
                    quantified = true;
                    continue;
                }
                // PCRE takes a brace that does not start a quantifier literally.
                None => out.push_str(r"\{"),
            },
            b'}' => out.push_str(r"\}"),
            b']' => out.push_str(r"\]"),
            // PCRE's `$` also matches before a final newline.
            b'$' => out.push_str(r"(?:\n?\z)"),
            b'^' | b'.' | b'|' | b')' => out.push(c as char),
            _ => push_literal(&mut out, c),
        }
        i += 1;
    }
    Ok(out)
}

fn push_literal(out: &mut String, b: u8) {
    if b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'/' | b'_' | b'-' | b',' | b':' | b'=' | b'@' | b'%' | b'!'
        )
    {
        out.push(b as char);
    } else {
        let _ = write!(out, r"\x{b:02X}");
    }
}

const HSPACE: &str = r"\t\x20\xA0";
const VSPACE: &str = r"\n\x0B\x0C\r\x85";

/// An escape outside a class; returns how many bytes it took.
fn escape(p: &[u8], i: usize, out: &mut String) -> Result<usize, String> {
    let Some(&c) = p.get(i + 1) else {
        return Err("`\\` at the end of the pattern".into());
    };
    match c {
        b'd' | b'D' | b'w' | b'W' | b's' | b'S' | b'b' | b'B' | b'A' | b'z' | b'n' | b'r'
        | b't' | b'f' | b'a' => {
            out.push('\\');
            out.push(c as char);
        }
        b'Z' => out.push_str(r"(?:\n?\z)"),
        // Matches start at offset 0, where \G is the start of the subject.
        b'G' => out.push_str(r"\A"),
        b'h' => {
            let _ = write!(out, "[{HSPACE}]");
        }
        b'H' => {
            let _ = write!(out, "[^{HSPACE}]");
        }
        b'v' => {
            let _ = write!(out, "[{VSPACE}]");
        }
        b'V' => {
            let _ = write!(out, "[^{VSPACE}]");
        }
        b'R' => {
            let _ = write!(out, r"(?:\r\n|[{VSPACE}])");
        }
        b'N' if p.get(i + 2) != Some(&b'{') => out.push_str(r"[^\n]"),
        b'e' => push_literal(out, 0x1b),
        b'E' => {}
        b'Q' => {
            let (bytes, used) = quoted(p, i);
            for &b in bytes {
                push_literal(out, b);
            }
            return Ok(used);
        }
        b'1'..=b'9' => return Err("back-references are not supported".into()),
        _ => match code(p, i)? {
            Some((b, used)) => {
                push_literal(out, b);
                return Ok(used);
            }
            None if c.is_ascii_alphanumeric() => {
                return Err(format!("unsupported escape `\\{}`", c as char));
            }
            None => push_literal(out, c),
        },
    }
    Ok(2)
}

/// The text of `\Q…\E` (or to the end) starting at `i`, and the bytes it took.
fn quoted(p: &[u8], i: usize) -> (&[u8], usize) {
    let body = &p[i + 2..];
    match body.windows(2).position(|w| w == b"\\E") {
        Some(end) => (&body[..end], end + 4),
        None => (body, p.len() - i),
    }
}

/// A byte given by code (`\x41`, `\x{41}`, `\0101`, `\o{101}`, `\cA`) at `i`, and the bytes it
/// took; None when the escape is not one of these.
fn code(p: &[u8], i: usize) -> Result<Option<(u8, usize)>, String> {
    let braced = |radix: u32| -> Result<(u8, usize), String> {
        let body = &p[i + 3..];
        let end = body
            .iter()
            .position(|&b| b == b'}')
            .ok_or("missing `}` in a character code")?;
        Ok((byte(number(&body[..end], radix)?)?, end + 4))
    };
    let run = |from: usize, max: usize, valid: fn(&u8) -> bool| {
        p[from..].iter().take(max).take_while(|b| valid(b)).count()
    };
    Ok(Some(match p[i + 1] {
        b'x' if p.get(i + 2) == Some(&b'{') => braced(16)?,
        b'x' => {
            let n = run(i + 2, 2, u8::is_ascii_hexdigit);
            let value = if n == 0 {
                0
            } else {
                number(&p[i + 2..i + 2 + n], 16)?
            };
            (byte(value)?, 2 + n)
        }
        b'o' if p.get(i + 2) == Some(&b'{') => braced(8)?,
        b'0' => {
            let n = run(i + 2, 2, is_octal);
            (byte(number(&p[i + 1..i + 2 + n], 8)?)?, 2 + n)
        }
        b'c' => match p.get(i + 2) {
            Some(&x) if (0x20..0x7f).contains(&x) => (x.to_ascii_uppercase() ^ 0x40, 3),
            _ => return Err("`\\c` must be followed by a printable ASCII character".into()),
        },
        _ => return Ok(None),
    }))
}

fn is_octal(b: &u8) -> bool {
    (b'0'..=b'7').contains(b)
}

fn number(digits: &[u8], radix: u32) -> Result<u32, String> {
    std::str::from_utf8(digits)
        .ok()
        .filter(|d| !d.is_empty())
        .and_then(|d| u32::from_str_radix(d, radix).ok())
        .ok_or_else(|| "invalid character code".to_string())
}

/// Patterns match bytes (PCRE2 without UTF), so no code can exceed one.
fn byte(value: u32) -> Result<u8, String> {
    u8::try_from(value).map_err(|_| "character code above \\xff in a non-UTF pattern".to_string())
}

/// `{n}`, `{n,}`, `{n,m}` or `{,m}` at `i`, rewritten for `regex`, and the bytes it took.
fn quantifier(p: &[u8], i: usize) -> Option<(String, usize)> {
    let rest = &p[i + 1..];
    let digits = |from: usize| {
        rest[from.min(rest.len())..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let text = |from: usize, n: usize| String::from_utf8_lossy(&rest[from..from + n]).into_owned();
    let min = digits(0);
    match rest.get(min) {
        Some(b'}') if min > 0 => Some((format!("{{{}}}", text(0, min)), min + 2)),
        Some(b',') => {
            let max = digits(min + 1);
            if rest.get(min + 1 + max) != Some(&b'}') || (min == 0 && max == 0) {
                return None;
            }
            let low = if min == 0 {
                "0".to_string()
            } else {
                text(0, min)
            };
            Some((format!("{{{low},{}}}", text(min + 1, max)), min + max + 3))
        }
        _ => None,
    }
}

/// A group opening at `i`; returns how many bytes it took.
fn group(p: &[u8], i: usize, out: &mut String) -> Result<usize, String> {
    match p.get(i + 1) {
        Some(b'*') => return Err("PCRE verbs `(*…)` are not supported".into()),
        Some(b'?') => {}
        _ => {
            out.push('(');
            return Ok(1);
        }
    }
    let unsupported = |what: &str| Err(format!("{what} are not supported"));
    // Names only matter to captures, which labelling never reads.
    let named = |from: usize, close: u8, out: &mut String| -> Result<usize, String> {
        let end = p[from..]
            .iter()
            .position(|&b| b == close)
            .ok_or("unterminated group name")?;
        out.push_str("(?:");
        Ok(from + end + 1 - i)
    };
    match p.get(i + 2) {
        Some(b'#') => {
            let end = p[i + 3..]
                .iter()
                .position(|&b| b == b')')
                .ok_or("missing `)` after a comment")?;
            Ok(end + 4)
        }
        // Branch reset only renumbers captures.
        Some(b':' | b'|') => {
            out.push_str("(?:");
            Ok(3)
        }
        Some(b'=' | b'!' | b'>') => unsupported("lookahead assertions and atomic groups"),
        Some(b'<') => match p.get(i + 3) {
            Some(b'=' | b'!') => unsupported("lookbehind assertions"),
            _ => named(i + 3, b'>', out),
        },
        Some(b'P') => match p.get(i + 3) {
            Some(b'<') => named(i + 4, b'>', out),
            _ => unsupported("back-references and recursion"),
        },
        Some(b'\'') => named(i + 3, b'\'', out),
        _ => flags(p, i, out),
    }
}

/// An option setting `(?imsxU-imsxU)` or `(?imsxU-imsxU:` at `i`.
fn flags(p: &[u8], i: usize, out: &mut String) -> Result<usize, String> {
    let (mut on, mut off, mut negated) = (String::new(), String::new(), false);
    let mut k = i + 2;
    loop {
        match p.get(k) {
            Some(b'-') if !negated => negated = true,
            Some(&f @ (b'i' | b'm' | b's' | b'x' | b'U')) => {
                let set = if negated { &mut off } else { &mut on };
                if !set.contains(f as char) {
                    set.push(f as char);
                }
            }
            // No auto-capture and duplicate names change nothing for matching.
            Some(b'n' | b'J') => {}
            Some(&end @ (b')' | b':')) => {
                let mut text = String::from("(?");
                text.push_str(&on);
                if !off.is_empty() {
                    text.push('-');
                    text.push_str(&off);
                }
                match end {
                    b':' => {
                        text.push(':');
                        out.push_str(&text);
                    }
                    _ if text.len() > 2 => {
                        text.push(')');
                        out.push_str(&text);
                    }
                    _ => {}
                }
                return Ok(k + 1 - i);
            }
            Some(b)
                if b.is_ascii_digit() || matches!(b, b'R' | b'&' | b'(' | b'C' | b'+' | b'-') =>
            {
                return Err("recursion, conditionals and callouts are not supported".into());
            }
            _ => return Err("unsupported `(?` group".into()),
        }
        k += 1;
    }
}

enum ClassItem {
    Byte(u8),
    Set(String),
    Bytes(Vec<u8>),
    Nothing,
}

/// A bracket expression at `start`, rewritten with every member spelled out so that the
/// `regex` crate's extra class syntax (nested `[`, `&&`, `--`, `~~`) never applies.
fn class(p: &[u8], start: usize) -> Result<(String, usize), String> {
    let mut out = String::from("[");
    let mut i = start + 1;
    if p.get(i) == Some(&b'^') {
        out.push('^');
        i += 1;
    }
    let first = i;
    loop {
        let Some(&c) = p.get(i) else {
            return Err("missing `]` at the end of a character class".into());
        };
        if c == b']' && i != first {
            i += 1;
            break;
        }
        let (item, used) = class_item(p, i)?;
        i += used;
        match item {
            ClassItem::Byte(low) => {
                let range = p.get(i) == Some(&b'-') && p.get(i + 1).is_some_and(|&n| n != b']');
                if !range {
                    push_class_byte(&mut out, low);
                    continue;
                }
                let (high, used) = class_item(p, i + 1)?;
                i += 1 + used;
                match high {
                    ClassItem::Byte(high) if high < low => {
                        return Err("range out of order in a character class".into());
                    }
                    ClassItem::Byte(high) => {
                        push_class_byte(&mut out, low);
                        out.push('-');
                        push_class_byte(&mut out, high);
                    }
                    // PCRE takes the `-` literally before a class escape.
                    other => {
                        push_class_byte(&mut out, low);
                        push_class_byte(&mut out, b'-');
                        push_class_item(&mut out, other);
                    }
                }
            }
            other => push_class_item(&mut out, other),
        }
    }
    out.push(']');
    Ok((out, i - start))
}

fn push_class_item(out: &mut String, item: ClassItem) {
    match item {
        ClassItem::Byte(b) => push_class_byte(out, b),
        ClassItem::Set(set) => out.push_str(&set),
        ClassItem::Bytes(bytes) => bytes.into_iter().for_each(|b| push_class_byte(out, b)),
        ClassItem::Nothing => {}
    }
}

fn push_class_byte(out: &mut String, b: u8) {
    if b.is_ascii_alphanumeric() {
        out.push(b as char);
    } else {
        let _ = write!(out, r"\x{b:02X}");
    }
}

const POSIX_CLASSES: [&str; 14] = [
    "alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph", "lower", "print", "punct",
    "space", "upper", "word", "xdigit",
];

fn class_item(p: &[u8], i: usize) -> Result<(ClassItem, usize), String> {
    match p[i] {
        b'[' => posix_class(p, i).map(|found| found.unwrap_or((ClassItem::Byte(b'['), 1))),
        b'\\' => class_escape(p, i),
        c => Ok((ClassItem::Byte(c), 1)),
    }
}

/// `[:name:]` or `[:^name:]` at `i`; None when the bytes are not one (the `[` is literal).
fn posix_class(p: &[u8], i: usize) -> Result<Option<(ClassItem, usize)>, String> {
    if p.get(i + 1) != Some(&b':') {
        return Ok(None);
    }
    let negated = p.get(i + 2) == Some(&b'^');
    let from = i + 2 + usize::from(negated);
    let len = p[from.min(p.len())..]
        .iter()
        .take_while(|b| b.is_ascii_lowercase())
        .count();
    if len == 0 || !p[from + len..].starts_with(b":]") {
        return Ok(None);
    }
    let name = String::from_utf8_lossy(&p[from..from + len]);
    if !POSIX_CLASSES.contains(&name.as_ref()) {
        return Err(format!("unknown POSIX class `{name}`"));
    }
    let set = format!("[:{}{name}:]", if negated { "^" } else { "" });
    Ok(Some((ClassItem::Set(set), from + len + 2 - i)))
}

fn class_escape(p: &[u8], i: usize) -> Result<(ClassItem, usize), String> {
    let Some(&c) = p.get(i + 1) else {
        return Err("missing `]` at the end of a character class".into());
    };
    let item = match c {
        b'd' | b'D' | b'w' | b'W' | b's' | b'S' => ClassItem::Set(format!("\\{}", c as char)),
        b'h' => ClassItem::Set(format!("[{HSPACE}]")),
        b'H' => ClassItem::Set(format!("[^{HSPACE}]")),
        b'v' => ClassItem::Set(format!("[{VSPACE}]")),
        b'V' => ClassItem::Set(format!("[^{VSPACE}]")),
        b'b' => ClassItem::Byte(0x08),
        b'n' => ClassItem::Byte(b'\n'),
        b'r' => ClassItem::Byte(b'\r'),
        b't' => ClassItem::Byte(b'\t'),
        b'f' => ClassItem::Byte(0x0c),
        b'a' => ClassItem::Byte(0x07),
        b'e' => ClassItem::Byte(0x1b),
        b'E' => ClassItem::Nothing,
        b'Q' => {
            let (bytes, used) = quoted(p, i);
            return Ok((ClassItem::Bytes(bytes.to_vec()), used));
        }
        // Inside a class these are octal, never back-references.
        b'1'..=b'7' => {
            let n = p[i + 1..]
                .iter()
                .take(3)
                .take_while(|b| is_octal(b))
                .count();
            return Ok((
                ClassItem::Byte(byte(number(&p[i + 1..i + 1 + n], 8)?)?),
                1 + n,
            ));
        }
        _ => match code(p, i)? {
            Some((b, used)) => return Ok((ClassItem::Byte(b), used)),
            None if c.is_ascii_alphanumeric() => {
                return Err(format!(
                    "unsupported escape `\\{}` in a character class",
                    c as char
                ));
            }
            None => ClassItem::Byte(c),
        },
    };
    Ok((item, 2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Entry;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const FILE: Kind = Kind::File {
        size: 0,
        link: None,
    };
    const CHAR: Kind = Kind::CharDev { major: 1, minor: 3 };

    /// Ordered as the policy build (fc_sort) orders a real file: least specific first.
    const FILE_CONTEXTS: &str = r#"
# file_contexts excerpt
/.*						system_u:object_r:default_t:s0
/				-d	system_u:object_r:root_t:s0
/[^/]+				--	system_u:object_r:etc_runtime_t:s0
/etc(/.*)?					system_u:object_r:etc_t:s0
/dev(/.*)?					system_u:object_r:device_t:s0
/tmp/.*						<<none>>
/home/[^/]+/.+					system_u:object_r:user_home_t:s0
/usr/bin/passwd			--	system_u:object_r:passwd_exec_t:s0
/usr/bin(/.*)?					system_u:object_r:bin_t:s0
/usr/lib(/.*)?					system_u:object_r:lib_t:s0
/etc/shadow.*			--	system_u:object_r:shadow_t:s0
/home/[^/]+/\.ssh(/.*)?				system_u:object_r:ssh_home_t:s0
/dev/null			-c	system_u:object_r:null_device_t:s0
/tmp				-d	system_u:object_r:tmp_t:s0
/etc/ld\.so\.cache		--	system_u:object_r:ld_so_cache_t:s0
/var/log(/.*)?					system_u:object_r:var_log_t:s0
/.*\.lock			--	system_u:object_r:lock_t:s0
"#;

    fn policy() -> Policy {
        Policy::parse(FILE_CONTEXTS, None, &[]).unwrap()
    }

    #[test]
    fn later_specs_win_and_exact_paths_beat_regexes() {
        let p = policy();
        assert_eq!(
            p.lookup("/etc/passwd", &FILE),
            Some("system_u:object_r:etc_t:s0")
        );
        assert_eq!(
            p.lookup("/etc", &Kind::Dir),
            Some("system_u:object_r:etc_t:s0")
        );
        // A later regex beats an earlier one.
        assert_eq!(
            p.lookup("/etc/shadow-", &FILE),
            Some("system_u:object_r:shadow_t:s0")
        );
        // The exact path wins although `/usr/bin(/.*)?` comes after it.
        assert_eq!(
            p.lookup("/usr/bin/passwd", &FILE),
            Some("system_u:object_r:passwd_exec_t:s0")
        );
        assert_eq!(
            p.lookup("/usr/bin/ls", &FILE),
            Some("system_u:object_r:bin_t:s0")
        );
        // Escaped dots keep a path exact, and exact means exact.
        assert_eq!(
            p.lookup("/etc/ld.so.cache", &FILE),
            Some("system_u:object_r:ld_so_cache_t:s0")
        );
        assert_eq!(
            p.lookup("/etc/ldXsoXcache", &FILE),
            Some("system_u:object_r:etc_t:s0")
        );
        assert_eq!(
            p.lookup("/opt", &Kind::Dir),
            Some("system_u:object_r:default_t:s0")
        );
        assert_eq!(
            p.lookup("/home/alice/.ssh/authorized_keys", &FILE),
            Some("system_u:object_r:ssh_home_t:s0")
        );
        assert_eq!(
            p.lookup("/home/alice/.sshx", &FILE),
            Some("system_u:object_r:user_home_t:s0")
        );
        // Anchored at both ends.
        assert_eq!(
            p.lookup("/xetc/passwd", &FILE),
            Some("system_u:object_r:default_t:s0")
        );
    }

    #[test]
    fn file_types_filter_specs() {
        let p = policy();
        assert_eq!(
            p.lookup("/dev/null", &CHAR),
            Some("system_u:object_r:null_device_t:s0")
        );
        assert_eq!(
            p.lookup("/dev/null", &FILE),
            Some("system_u:object_r:device_t:s0")
        );
        assert_eq!(
            p.lookup("/usr/bin/passwd", &Kind::Dir),
            Some("system_u:object_r:bin_t:s0")
        );
        assert_eq!(
            p.lookup("/tmp", &Kind::Dir),
            Some("system_u:object_r:tmp_t:s0")
        );
        assert_eq!(
            p.lookup("/tmp", &FILE),
            Some("system_u:object_r:etc_runtime_t:s0")
        );
        let link = Kind::Symlink { target: "x".into() };
        assert_eq!(
            p.lookup("/tmp", &link),
            Some("system_u:object_r:default_t:s0")
        );
        assert_eq!(
            p.lookup("/etc/shadow", &Kind::Dir),
            Some("system_u:object_r:etc_t:s0")
        );
    }

    #[test]
    fn none_and_no_match_give_no_context() {
        let p = policy();
        assert_eq!(p.lookup("/tmp/x", &FILE), None);
        assert_eq!(p.lookup("/tmp/a/b", &Kind::Dir), None);
        let q = Policy::parse("/etc(/.*)? system_u:object_r:etc_t:s0\n", None, &[]).unwrap();
        assert_eq!(q.lookup("/usr", &Kind::Dir), None);
        assert_eq!(q.lookup("", &Kind::Dir), None);
        let literal = Policy::parse("/.* a:b:c\n/etc/x <<none>>\n", None, &[]).unwrap();
        assert_eq!(literal.lookup("/etc/x", &FILE), None);
        assert_eq!(literal.lookup("/etc/y", &FILE), Some("a:b:c"));
    }

    #[test]
    fn deeper_nodes_are_searched_first_like_libselinux() {
        let p = policy();
        // `/var/log(/.*)?` sits under `var`, `/.*\.lock` at the root but later: the later wins.
        assert_eq!(
            p.lookup("/var/log/x.lock", &FILE),
            Some("system_u:object_r:lock_t:s0")
        );
        assert_eq!(
            p.lookup("/var/log/x.lock", &Kind::Dir),
            Some("system_u:object_r:var_log_t:s0")
        );
        // libselinux ≥ 3.8 stops at a <<none>> found in a deeper node, although the root's
        // `/.*\.lock` comes later (≤ 3.7 would have said lock_t).
        assert_eq!(p.lookup("/tmp/x.lock", &FILE), None);
    }

    #[test]
    fn paths_are_normalised() {
        let p = policy();
        assert_eq!(
            p.lookup("/etc//ld.so.cache", &FILE),
            Some("system_u:object_r:ld_so_cache_t:s0")
        );
        assert_eq!(
            p.lookup("/usr/bin/", &Kind::Dir),
            Some("system_u:object_r:bin_t:s0")
        );
        assert_eq!(
            p.lookup("/", &Kind::Dir),
            Some("system_u:object_r:root_t:s0")
        );
    }

    #[test]
    fn local_entries_win_over_the_main_file() {
        let local = "/usr/bin(/.*)? system_u:object_r:usr_t:s0\n/usr/bin/passwd -- system_u:object_r:bin_t:s0\n";
        let p = Policy::parse(FILE_CONTEXTS, Some(local), &[]).unwrap();
        assert_eq!(
            p.lookup("/usr/bin/ls", &FILE),
            Some("system_u:object_r:usr_t:s0")
        );
        assert_eq!(
            p.lookup("/usr/bin/passwd", &FILE),
            Some("system_u:object_r:bin_t:s0")
        );
        // But a main-file exact path still beats a local regex.
        let local = "/etc/.* system_u:object_r:usr_t:s0\n";
        let p = Policy::parse(FILE_CONTEXTS, Some(local), &[]).unwrap();
        assert_eq!(
            p.lookup("/etc/ld.so.cache", &FILE),
            Some("system_u:object_r:ld_so_cache_t:s0")
        );
        assert_eq!(
            p.lookup("/etc/passwd", &FILE),
            Some("system_u:object_r:usr_t:s0")
        );
    }

    #[test]
    fn substitutions_make_paths_equivalent() {
        let dist = "/lib /usr/lib\n/lib64 /usr/lib\n# comment\n/run /var/run\n/bin /usr/bin\n";
        let subs = "/lib64 /opt/lib64\n/srv\t/\n";
        let p = Policy::parse(FILE_CONTEXTS, None, &[dist, subs]).unwrap();
        assert_eq!(
            p.lookup("/lib/libc.so.6", &FILE),
            Some("system_u:object_r:lib_t:s0")
        );
        assert_eq!(
            p.lookup("/lib", &Kind::Dir),
            Some("system_u:object_r:lib_t:s0")
        );
        assert_eq!(
            p.lookup("/bin/passwd", &FILE),
            Some("system_u:object_r:passwd_exec_t:s0")
        );
        // Whole components only.
        assert_eq!(
            p.lookup("/library", &Kind::Dir),
            Some("system_u:object_r:default_t:s0")
        );
        // file_contexts.subs applies first, and wins.
        assert_eq!(
            p.lookup("/lib64/x", &FILE),
            Some("system_u:object_r:default_t:s0")
        );
        assert_eq!(p.key("/srv//etc/passwd").as_deref(), Some("/etc/passwd"));
        assert_eq!(
            p.lookup("/srv/etc/passwd", &FILE),
            Some("system_u:object_r:etc_t:s0")
        );
        // Substitution files never fail: a lone field is skipped.
        assert!(Policy::parse("", None, &["/lonely\n"]).is_ok());
    }

    #[test]
    fn bad_lines_are_reported_with_file_and_line() {
        let err = |text: &str, local: Option<&str>| match Policy::parse(text, local, &[]) {
            Err(SelinuxError::BadLine {
                file,
                line,
                text,
                problem,
                ..
            }) => (file, line, text, problem),
            Ok(_) => panic!("{text:?} parsed"),
        };
        let (file, line, text, problem) =
            err("/.* a:b:c\n\n/usr/(bin\tsystem_u:object_r:bin_t:s0\n", None);
        assert_eq!((file.as_str(), line), ("file_contexts", 3));
        assert_eq!(text, "/usr/(bin\tsystem_u:object_r:bin_t:s0");
        assert!(problem.contains("invalid pattern"), "{problem}");
        let (file, line, _, problem) = err(
            "/.* a:b:c\n",
            Some("# x\n/usr -x system_u:object_r:usr_t:s0\n"),
        );
        assert_eq!((file.as_str(), line), ("file_contexts.local", 2));
        assert!(problem.contains("invalid file type `-x`"), "{problem}");
        assert!(err("/usr\n", None).3.contains("missing fields"));
        assert!(err("/usr --\n", None).3.contains("is not a context"));
        assert!(
            err("/usr -- system_u::usr_t\n", None)
                .3
                .contains("is not a context")
        );
        assert!(err("/caf\u{e9} a:b:c\n", None).3.contains("non-ASCII"));
        assert!(err("/a\\1 a:b:c\n", None).3.contains("back-references"));
        assert!(err("/a(?=b) a:b:c\n", None).3.contains("lookahead"));
        assert!(err("/a*+ a:b:c\n", None).3.contains("possessive"));
        assert!(
            err(&format!("/{} a:b:c\n", "a*".repeat(2100)), None)
                .3
                .contains("longer than")
        );
        let shown = Policy::parse("/x[ a:b:c", None, &[])
            .unwrap_err()
            .to_string();
        assert!(
            shown.starts_with("file_contexts:1: invalid pattern: "),
            "{shown}"
        );
        assert!(shown.contains("`/x[ a:b:c`"), "{shown}");
        // Anything after the context is ignored, as libselinux does.
        assert!(Policy::parse("/x -- a:b:c trailing junk\n", None, &[]).is_ok());
    }

    fn matches(pattern: &str, path: &[u8]) -> bool {
        compile(pattern).unwrap().is_match(path)
    }

    #[test]
    fn pcre_syntax_is_translated() {
        assert!(matches(r"/a[[]b", b"/a[b"));
        assert!(matches(r"/a[]x]b", b"/a]b"));
        assert!(matches(r"/a[^]x]b", b"/a-b") && !matches(r"/a[^]x]b", b"/a]b"));
        assert!(matches(r"/a[a&&b]", b"/a&") && !matches(r"/a[a&&b]", b"/ab/"));
        assert!(matches(r"/a[%--]", b"/a,") && matches(r"/a[a-]", b"/a-"));
        assert!(matches(r"/a[[:digit:]x]+", b"/a1x2"));
        assert!(matches(r"/a[\d.]+", b"/a1.2") && matches(r"/a\d{2,}", b"/a123"));
        assert!(
            matches(r"/a{b}", b"/a{b}") && matches(r"/a{,2}", b"/aa") && matches(r"/x{", b"/x{")
        );
        assert!(matches(r"/a\.b\-c\_d\,e", b"/a.b-c_d,e"));
        assert!(matches(r"/\Q.*\E", b"/.*") && !matches(r"/\Q.*\E", b"/ab"));
        assert!(matches(r"/a\x41\x{42}\o{101}\cA\0", b"/aABA\x01\x00"));
        // `\0` takes at most two more octal digits.
        assert!(matches(r"/\0101", b"/\x081"));
        assert!(matches(r"/(?i)usr", b"/USR") && matches(r"/(?#note)x", b"/x"));
        assert!(matches(r"/(?<n>ab)+", b"/abab") && matches(r"/(?|a|b)", b"/b"));
        assert!(matches(r"/a\<b\>", b"/a<b>"));
        // PCRE `$` also matches before a final newline; `.` matches newlines (DOTALL).
        assert!(matches(r"/a", b"/a\n") && matches(r"/a.b", b"/a\nb"));
        // Bytes, not characters: é is two.
        assert!(!matches(r"/x/.", "/x/é".as_bytes()) && matches(r"/x/..", "/x/é".as_bytes()));
        assert!(matches(r"/x/[^/]+", "/x/é".as_bytes()));
        // As libselinux anchors without a group, a top-level `|` anchors only its ends.
        assert!(matches(r"/a|/b", b"/abc") && matches(r"/a|/b", b"x/b"));
    }

    #[test]
    fn literal_prefixes_never_exclude_a_match() {
        for (pattern, prefix) in [
            (r"/usr/lib/foo(/.*)?", "/usr/lib/foo"),
            (r"/usr/s?bin/x", "/usr/"),
            (r"/etc/ld\.so\.cache.*", "/etc/ld.so.cache"),
            (r"/a+b", "/a"),
            (r"/a{2}", "/"),
            (r"/a|/b", ""),
            (r"/a[|]b", "/a"),
            (r"/a(?#|)b|c", ""),
            (r"^/x", ""),
            (r"/a\d", "/a"),
        ] {
            assert_eq!(
                fixed_prefix(pattern.as_bytes()),
                prefix.as_bytes(),
                "{pattern}"
            );
        }
    }

    #[test]
    fn specs_sit_in_libselinux_nodes() {
        let mut p = Policy::parse("", None, &[]).unwrap();
        let usr = p.node_for(r"/usr/lib(64)?/x");
        assert_eq!(p.node_for(r"/usr/(bin|lib)"), usr);
        let deep = p.node_for(r"/usr/lib/systemd/system/foo.*");
        assert_eq!(p.deepest("/usr/lib/systemd/system/foo.service"), deep);
        assert_eq!(p.deepest("/usr/lib/systemd"), p.nodes[deep].parent.unwrap());
        assert_eq!(p.node_for(r"/etc(/.*)?"), 0);
        assert_eq!(p.node_for(r"(/usr/x|/opt)"), usr);
        assert_eq!(p.node_for(r"/a\.b/.*"), p.deepest("/a.b/c"));
    }

    #[test]
    fn config_reads_mode_and_type() {
        let (_d, mut t) = tree();
        assert_eq!(config(&t), None);
        let text = "# comment\n  SELINUX=enforcing\nSELINUX=bogus\nSELINUX=Permissive\nSELINUX=enforcing\n selinuxtype=  mls \r\n";
        t.put_text(CONFIG, text, file_entry()).unwrap();
        assert_eq!(config(&t), Some(("permissive".into(), "mls".into())));
        t.put_text(CONFIG, "SELINUXTYPE=mls\n", file_entry())
            .unwrap();
        assert_eq!(config(&t), Some(("".into(), "mls".into())));
        t.put_text(CONFIG, "SELINUX=disabled\n", file_entry())
            .unwrap();
        assert_eq!(config(&t), Some(("disabled".into(), "targeted".into())));
    }

    fn tree() -> (tempfile::TempDir, Tree) {
        let d = tempfile::tempdir().unwrap();
        let t = Tree::create(&d.path().join("root"))
            .unwrap()
            .without_real_owners();
        (d, t)
    }

    fn file_entry() -> Entry {
        Entry {
            kind: FILE,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: BTreeMap::new(),
        }
    }

    fn label_of(t: &Tree, path: &str) -> Option<Vec<u8>> {
        t.get(path).unwrap().xattrs.get(XATTR).cloned()
    }

    #[test]
    fn labels_a_tree_from_its_installed_policy() {
        let (_d, mut t) = tree();
        assert!(Policy::load(&t, None).unwrap().is_none());
        let files = "/etc/selinux/mls/contexts/files/file_contexts";
        t.put_text(CONFIG, "SELINUX=enforcing\nSELINUXTYPE=mls\n", file_entry())
            .unwrap();
        t.put_text(files, FILE_CONTEXTS, file_entry()).unwrap();
        t.put_text(
            &format!("{files}.homedirs"),
            "/home/[^/]+ -d system_u:object_r:user_home_dir_t:s0\n",
            file_entry(),
        )
        .unwrap();
        t.put_text(
            &format!("{files}.local"),
            "/srv(/.*)? system_u:object_r:var_t:s0\n",
            file_entry(),
        )
        .unwrap();
        t.put_text(
            &format!("{files}.subs_dist"),
            "/lib /usr/lib\n",
            file_entry(),
        )
        .unwrap();
        t.mkdir_p("/usr/lib", 0o755, 0).unwrap();
        t.symlink("/lib", "usr/lib", file_entry()).unwrap();
        t.mkdir_p("/usr/bin", 0o755, 0).unwrap();
        t.put_text("/usr/bin/passwd", "", file_entry()).unwrap();
        t.hardlink("/usr/bin/passwd2", "/usr/bin/passwd").unwrap();
        t.mkdir_p("/tmp/cache", 0o1777, 0).unwrap();
        t.mkdir_p("/home/alice/.ssh", 0o700, 0).unwrap();
        t.mkdir_p("/srv", 0o755, 0).unwrap();
        let mut null = file_entry();
        null.kind = CHAR;
        t.special("/dev/null", null).unwrap();
        let mut stale = file_entry();
        stale
            .xattrs
            .insert(XATTR.into(), b"system_u:object_r:old_t:s0\0".to_vec());
        t.put_text("/tmp/cache/x", "", stale).unwrap();

        let policy = Policy::load(&t, None).unwrap().expect("a policy");
        assert!(Policy::load(&t, Some("targeted")).unwrap().is_none());
        let report = label(&mut t, &policy);

        let ctx = |c: &str| Some(format!("system_u:object_r:{c}:s0\0").into_bytes());
        assert_eq!(label_of(&t, "/"), ctx("root_t"));
        assert_eq!(label_of(&t, "/etc/selinux/config"), ctx("etc_t"));
        assert_eq!(label_of(&t, "/lib"), ctx("lib_t"));
        assert_eq!(label_of(&t, "/usr/bin"), ctx("bin_t"));
        assert_eq!(label_of(&t, "/usr/bin/passwd"), ctx("passwd_exec_t"));
        // One inode, one label: the first path of the link group decides.
        assert_eq!(label_of(&t, "/usr/bin/passwd2"), ctx("passwd_exec_t"));
        assert_eq!(report.conflicts, ["/usr/bin/passwd2"]);
        assert_eq!(label_of(&t, "/dev/null"), ctx("null_device_t"));
        assert_eq!(label_of(&t, "/tmp"), ctx("tmp_t"));
        assert_eq!(label_of(&t, "/home/alice"), ctx("user_home_dir_t"));
        assert_eq!(label_of(&t, "/home/alice/.ssh"), ctx("ssh_home_t"));
        assert_eq!(label_of(&t, "/srv"), ctx("var_t"));
        assert_eq!(label_of(&t, "/tmp/cache/x"), None);
        assert_eq!(report.unlabelled, ["/tmp/cache", "/tmp/cache/x"]);
        assert_eq!(report.labelled, t.entries().len() - 2);
    }

    fn line() -> impl Strategy<Value = String> {
        let pattern = r"[/a-z.*+?()\[\]{}|^$\\0-9:,<>=!#'PQEx-]{1,24}";
        let context = r"(system_u:object_r:[a-z_]{1,8}:s0|<<none>>|[a-z:]{0,10})";
        prop_oneof![
            any::<String>(),
            "[ -~\t]{0,40}",
            (pattern, prop::option::of("--|-[dlcbpsx]"), context).prop_map(|(p, t, c)| match t {
                Some(t) => format!("{p}\t{t}\t{c}"),
                None => format!("{p} {c}"),
            }),
        ]
    }

    proptest! {
        #[test]
        fn parsing_never_panics(
            lines in prop::collection::vec(line(), 0..8),
            path in "(/[a-z.é]{0,4}){0,4}/?",
        ) {
            let text = lines.join("\n");
            if let Ok(p) = Policy::parse(&text, Some(&text), &[&text]) {
                for kind in [FILE, Kind::Dir, CHAR] {
                    let _ = p.lookup(&path, &kind);
                }
            }
        }
    }
}
