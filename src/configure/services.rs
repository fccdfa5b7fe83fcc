//! systemd unit enablement in the staging tree: what `systemctl --root=… enable|disable|mask` and
//! `preset-all` do (systemd 258's src/shared/install.c), reproduced natively without systemctl.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::ffi::CString;

use crate::tree::{Entry, Kind, Tree, TreeError};

/// Unit directories of the system scope, highest priority first: systemd's lookup paths under
/// `--root`, without the generator, transient, control and attached directories, which only
/// exist on a running system.
const UNIT_DIRS: [&str; 5] = [
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    // Split-/usr layouts only: with merged /usr it resolves to /usr/lib/systemd/system and is
    // dropped as a duplicate.
    "/lib/systemd/system",
];
const CONFIG_DIR: &str = "/etc/systemd/system";
const RUNTIME_DIR: &str = "/run/systemd/system";
const PRESET_DIRS: [&str; 5] = [
    "/etc/systemd/system-preset",
    "/run/systemd/system-preset",
    "/usr/local/lib/systemd/system-preset",
    "/usr/lib/systemd/system-preset",
    // Split-/usr layouts (Debian 12) keep vendor presets here; merged /usr drops it as the
    // same directory.
    "/lib/systemd/system-preset",
];
const UNIT_TYPES: [&str; 11] = [
    "service",
    "mount",
    "swap",
    "socket",
    "target",
    "device",
    "automount",
    "timer",
    "path",
    "slice",
    "scope",
];
/// Sections install.c reads silently without taking anything from them.
const OTHER_SECTIONS: [&str; 12] = [
    "Unit",
    "Automount",
    "Device",
    "Mount",
    "Path",
    "Scope",
    "Service",
    "Slice",
    "Socket",
    "Swap",
    "Target",
    "Timer",
];
/// systemd's UNIT_NAME_MAX, which counts the terminating NUL.
const UNIT_NAME_MAX: usize = 256;
/// install.c's UNIT_FILE_FOLLOW_SYMLINK_MAX.
const MAX_ALIAS_HOPS: usize = 64;
/// Linux's MAXSYMLINKS, as chase() uses.
const MAX_SYMLINK_HOPS: usize = 40;
const WS: &[char] = &[' ', '\t', '\n', '\r'];
const NO_INSTALL_INFO: &str = "the unit file has no installation config (WantedBy=, \
     RequiredBy=, UpheldBy=, Also= or Alias= in [Install], or DefaultInstance= for a template), \
     so it is not meant to be enabled or disabled; it is static, pulled in by other units or \
     activated on demand";

/// What an operation did to the tree. Lists are sorted and free of duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Units whose install symlinks are in place afterwards (created now or already there).
    pub enabled: Vec<String>,
    /// Units whose install symlinks were removed (or were already absent).
    pub disabled: Vec<String>,
    /// Units linked to /dev/null.
    pub masked: Vec<String>,
    /// Symlinks created, as image paths.
    pub links: Vec<String>,
    /// Symlinks removed, or replaced by one in `links`, as image paths.
    pub removed: Vec<String>,
    /// What systemctl prints as a notice or warning without failing, in the order it came up.
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(
        "unit {unit}{} not found in {}; install the package that ships it",
        template.as_ref().map(|t| format!(" (nor its template {t})")).unwrap_or_default(),
        searched.join(", ")
    )]
    NotFound {
        unit: String,
        template: Option<String>,
        searched: Vec<String>,
    },
    #[error("{file}:{line}: {message}")]
    BadUnit {
        file: String,
        line: usize,
        message: String,
    },
    #[error("invalid unit name {name:?}: {message}")]
    InvalidName { name: String, message: String },
    #[error("unit {unit} is masked ({path} is empty or links to /dev/null)")]
    Masked { unit: String, path: String },
    #[error("unit {unit} is a symlink to {target}, which does not exist")]
    Dangling { unit: String, target: String },
    #[error(
        "cannot link {path} to {wanted}: it already exists{}, and systemctl replaces it only \
         with --force",
        existing.as_ref().map(|e| format!(" as a symlink to {e}")).unwrap_or_default()
    )]
    Exists {
        path: String,
        existing: Option<String>,
        wanted: String,
    },
    #[error("unit {unit}: {message}")]
    Refused { unit: String, message: String },
    #[error(transparent)]
    Tree(#[from] TreeError),
}

/// Like `systemctl --root=… preset-all`: every unit file in the search path is enabled or
/// disabled as the system preset files say (enabled when no rule matches).
pub fn apply_presets(tree: &mut Tree, epoch: i64) -> Result<Report, ServiceError> {
    let mut install = Install::new(tree, epoch);
    install.preset_all()?;
    Ok(install.finish())
}

/// Like `systemctl --root=… enable UNITS`. Names without a suffix mean `.service`.
pub fn enable(tree: &mut Tree, units: &[String], epoch: i64) -> Result<Report, ServiceError> {
    let mut install = Install::new(tree, epoch);
    install.enable(units)?;
    Ok(install.finish())
}

/// Like `systemctl --root=… disable UNITS`.
pub fn disable(tree: &mut Tree, units: &[String], epoch: i64) -> Result<Report, ServiceError> {
    let mut install = Install::new(tree, epoch);
    install.disable(units)?;
    Ok(install.finish())
}

/// Like `systemctl --root=… mask UNITS`. The units need not exist.
pub fn mask(tree: &mut Tree, units: &[String], epoch: i64) -> Result<Report, ServiceError> {
    let mut install = Install::new(tree, epoch);
    install.mask(units)?;
    Ok(install.finish())
}

// ---------------------------------------------------------------------------------------------
// Unit names (systemd's unit-name.c)

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameKind {
    Plain,
    Template,
    Instance,
}

/// What kind of unit name this is, or `None` when systemd would not accept it.
fn classify(name: &str) -> Option<NameKind> {
    if name.is_empty() || name.len() >= UNIT_NAME_MAX {
        return None;
    }
    let dot = name.rfind('.')?;
    if dot == 0 || !UNIT_TYPES.contains(&&name[dot + 1..]) {
        return None;
    }
    let mut at = None;
    for (i, c) in name[..dot].char_indices() {
        if c == '@' && at.is_none() {
            at = Some(i);
        }
        if !(c.is_ascii_alphanumeric() || ":-_.\\@".contains(c)) {
            return None;
        }
    }
    match at {
        None => Some(NameKind::Plain),
        Some(0) => None,
        Some(i) if i + 1 == dot => Some(NameKind::Template),
        Some(_) => Some(NameKind::Instance),
    }
}

fn unit_type(name: &str) -> &str {
    name.rsplit_once('.').map_or("", |(_, t)| t)
}

fn may_alias(unit_type: &str) -> bool {
    matches!(
        unit_type,
        "service" | "socket" | "target" | "device" | "timer" | "path"
    )
}

fn may_template(unit_type: &str) -> bool {
    matches!(
        unit_type,
        "service" | "socket" | "target" | "timer" | "path"
    )
}

/// Position of the `@` and of the suffix's dot in a valid name.
fn at_and_dot(name: &str) -> (Option<usize>, usize) {
    let dot = name.rfind('.').unwrap_or(name.len());
    (name[..dot].find('@'), dot)
}

/// The instance of `foo@bar.service` (`bar`), empty for templates and plain names.
fn instance(name: &str) -> &str {
    match at_and_dot(name) {
        (Some(at), dot) => &name[at + 1..dot],
        (None, _) => "",
    }
}

/// `foo@.service` for `foo@bar.service` or `foo@.service`; `None` for plain names.
fn template_of(name: &str) -> Option<String> {
    let (at, dot) = at_and_dot(name);
    at.map(|at| format!("{}{}", &name[..=at], &name[dot..]))
}

fn replace_instance(name: &str, inst: &str) -> String {
    let (at, dot) = at_and_dot(name);
    let at = at.unwrap_or(dot);
    format!("{}@{inst}{}", &name[..at], &name[dot..])
}

/// `foo` for `foo@bar.service` and `foo.service`.
fn prefix(name: &str) -> &str {
    let (at, dot) = at_and_dot(name);
    &name[..at.unwrap_or(dot)]
}

fn instance_is_valid(inst: &str) -> bool {
    !inst.is_empty()
        && inst
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":-_.\\@".contains(c))
}

/// The unit name systemctl makes of a command-line argument (`foo` means `foo.service`).
/// systemctl would also escape invalid characters and link unit files given by path; both are
/// refused here, since a definition should name units plainly.
fn mangle(arg: &str) -> Result<String, ServiceError> {
    let invalid = |message: &str| ServiceError::InvalidName {
        name: arg.to_string(),
        message: message.to_string(),
    };
    if classify(arg).is_some() {
        return Ok(arg.to_string());
    }
    if arg.is_empty() {
        return Err(invalid("empty"));
    }
    if arg.contains('/') {
        return Err(invalid(
            "give the unit's name, not a path (only units in the unit search path are handled)",
        ));
    }
    if arg.contains(['*', '?', '[']) {
        return Err(invalid("globs are not supported here"));
    }
    let name = if UNIT_TYPES.contains(&unit_type(arg)) {
        arg.to_string()
    } else {
        format!("{arg}.service")
    };
    if classify(&name).is_some() {
        Ok(name)
    } else {
        Err(invalid(
            "not a valid unit name (escape special characters with systemd-escape)",
        ))
    }
}

/// Why an alias name cannot stand for a unit.
enum AliasError {
    /// The alias is the unit's own name, which systemd quietly skips.
    SelfAlias,
    Invalid(String),
}

/// unit_validate_alias_symlink_or_warn(): may the symlink named `alias` stand for `target`?
fn validate_alias(alias: &str, target: &str) -> Result<(), AliasError> {
    let invalid = |m: String| Err(AliasError::Invalid(m));
    let Some(src) = classify(alias) else {
        return invalid(format!("{alias:?} is not a valid unit name"));
    };
    let ty = unit_type(alias);
    if !may_alias(ty) {
        return invalid(format!("{ty} units cannot have aliases"));
    }
    if src != NameKind::Plain && !may_template(ty) {
        return invalid(format!("{ty} units cannot be templates"));
    }
    if alias == target {
        return Err(AliasError::SelfAlias);
    }
    let Some(dst) = classify(target) else {
        return invalid(format!("{target:?} is not a valid unit name"));
    };
    if !(dst == src || (src == NameKind::Instance && dst == NameKind::Template)) {
        return invalid(format!(
            "{alias} and {target} are not both plain, template or instance names"
        ));
    }
    if dst == NameKind::Instance && instance(alias) != instance(target) {
        return invalid(format!("{alias} and {target} have different instances"));
    }
    if unit_type(target) != ty {
        return invalid(format!("{alias} and {target} are different unit types"));
    }
    Ok(())
}

/// unit_symlink_name_compatible(): may `symlink` in a .wants/.requires directory stand for the
/// unit `target`?
fn symlink_name_compatible(symlink: &str, target: &str, instance_propagation: bool) -> bool {
    let k1 = classify(symlink);
    if symlink == target && matches!(k1, Some(NameKind::Plain | NameKind::Instance)) {
        return true;
    }
    let Some(template) = template_of(symlink) else {
        return false;
    };
    let k2 = classify(target);
    template == target
        && k2 == Some(NameKind::Template)
        && (k1 == Some(NameKind::Instance)
            || (instance_propagation && k1 == Some(NameKind::Template)))
}

// ---------------------------------------------------------------------------------------------
// Paths inside the image

fn parent(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((dir, _)) => dir,
    }
}

fn basename(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, b)| b)
}

fn components(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty() && *c != ".")
}

/// path_startswith() by components, `..` taken literally as systemd does.
fn path_starts_with(path: &str, prefix: &str) -> bool {
    let mut p = components(path);
    components(prefix).all(|c| p.next() == Some(c))
}

fn path_equal(a: &str, b: &str) -> bool {
    components(a).eq(components(b))
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// systemd's chase() under a root: symlinks are followed inside the image (the last one only if
/// `follow_last`), `..` stops at `/`, and missing components are allowed. `None` on a loop.
fn chase(tree: &Tree, path: &str, follow_last: bool) -> Option<String> {
    let mut out: Vec<String> = Vec::new();
    let mut todo: Vec<String> = path.split('/').rev().map(str::to_string).collect();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "" | "." => continue,
            ".." => {
                out.pop();
                continue;
            }
            _ => {}
        }
        out.push(c);
        let last = todo.iter().all(|c| c.is_empty() || c == ".");
        if last && !follow_last {
            continue;
        }
        let here = format!("/{}", out.join("/"));
        if let Some(Entry {
            kind: Kind::Symlink { target },
            ..
        }) = tree.get(&here)
        {
            hops += 1;
            if hops > MAX_SYMLINK_HOPS {
                return None;
            }
            out.pop();
            if target.starts_with('/') {
                out.clear();
            }
            todo.extend(target.split('/').rev().map(str::to_string));
        }
    }
    Some(format!("/{}", out.join("/")))
}

/// The entries directly inside a (resolved) directory, by name.
fn children<'a>(tree: &'a Tree, dir: &str) -> Vec<(&'a str, &'a Entry)> {
    let prefix = join(dir, "");
    tree.entries()
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter_map(|(k, e)| {
            let rest = &k[prefix.len()..];
            (!rest.is_empty() && !rest.contains('/')).then_some((rest, e))
        })
        .collect()
}

fn is_dir(tree: &Tree, path: &str) -> bool {
    matches!(
        tree.get(path),
        Some(Entry {
            kind: Kind::Dir,
            ..
        })
    )
}

/// null_or_empty(): an empty file or /dev/null masks.
fn null_or_empty(kind: &Kind) -> bool {
    matches!(
        kind,
        Kind::File { size: 0, .. } | Kind::CharDev { major: 1, minor: 3 }
    )
}

/// Like systemd's path_strv_resolve(): an existing directory stands for its canonical path, so
/// two names of one directory (merged /usr) are searched once; a missing one keeps its name.
fn canonical_dir(tree: &Tree, dir: &str) -> String {
    match chase(tree, dir, true) {
        Some(p) if is_dir(tree, &p) => p,
        _ => dir.to_string(),
    }
}

/// conf_files_list(): the files ending in `suffix` in `dirs`, where a name in an earlier
/// directory hides the same name in later ones, sorted by file name.
fn conf_files(tree: &Tree, dirs: &[String], suffix: &str) -> Vec<String> {
    let mut chosen: BTreeMap<String, String> = BTreeMap::new();
    for dir in dirs {
        let Some(resolved) = chase(tree, dir, true) else {
            continue;
        };
        for (name, _) in children(tree, &resolved) {
            if !name.starts_with('.') && name.ends_with(suffix) {
                chosen
                    .entry(name.to_string())
                    .or_insert_with(|| join(dir, name));
            }
        }
    }
    chosen.into_values().collect()
}

fn fnmatch(pattern: &str, name: &str) -> bool {
    let (Ok(p), Ok(n)) = (CString::new(pattern), CString::new(name)) else {
        return false;
    };
    // SAFETY: both are NUL-terminated strings that outlive the call.
    unsafe { libc::fnmatch(p.as_ptr(), n.as_ptr(), libc::FNM_NOESCAPE) == 0 }
}

/// extract_first_word() repeated: whitespace-separated words, quotes removed if `unquote`,
/// backslashes kept if `retain_escape`. `Err` carries the words before a syntax error.
fn split_words(s: &str, unquote: bool, retain_escape: bool) -> Result<Vec<String>, Vec<String>> {
    let mut words = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| WS.contains(c)).is_some() {}
        if chars.peek().is_none() {
            return Ok(words);
        }
        let mut word = String::new();
        let mut quote = None;
        loop {
            let Some(c) = chars.next() else {
                if quote.is_some() {
                    return Err(words);
                }
                break;
            };
            if c == '\\' {
                let Some(next) = chars.next() else {
                    return Err(words);
                };
                if retain_escape {
                    word.push('\\');
                }
                word.push(next);
            } else if let Some(q) = quote {
                if c == q {
                    quote = None;
                } else {
                    word.push(c);
                }
            } else if unquote && (c == '\'' || c == '"') {
                quote = Some(c);
            } else if WS.contains(&c) {
                break;
            } else {
                word.push(c);
            }
        }
        words.push(word);
    }
}

/// Whether a line ends in a backslash that is not itself escaped (a continuation).
fn ends_escaped(s: &str) -> bool {
    let mut escaped = false;
    for c in s.chars() {
        escaped = !escaped && c == '\\';
    }
    escaped
}

/// first_word(): the rest of `line` if it starts with `word` and then whitespace or its end.
fn first_word<'a>(line: &'a str, word: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(word)?;
    if rest.is_empty() {
        return Some(rest);
    }
    let trimmed = rest.trim_start_matches(WS);
    (trimmed.len() < rest.len()).then_some(trimmed)
}

// ---------------------------------------------------------------------------------------------
// Install state (install.c's InstallInfo and InstallContext)

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Regular,
    /// A symlink to a file outside the unit search path.
    Linked,
    /// A symlink to another unit inside the search path.
    Alias,
    Masked,
}

#[derive(Debug, Default)]
struct Info {
    name: String,
    /// Where the unit file was found (the directory canonical, the file name as looked up).
    path: Option<String>,
    mode: Option<Mode>,
    symlink_target: Option<String>,
    aliases: Vec<String>,
    wanted_by: Vec<String>,
    required_by: Vec<String>,
    upheld_by: Vec<String>,
    also: Vec<String>,
    default_instance: Option<String>,
    /// Only pulled in by Also=: failures are warnings.
    auxiliary: bool,
}

impl Info {
    fn new(name: &str) -> Info {
        Info {
            name: name.to_string(),
            ..Info::default()
        }
    }

    fn has_rules(&self) -> bool {
        !(self.aliases.is_empty()
            && self.wanted_by.is_empty()
            && self.required_by.is_empty()
            && self.upheld_by.is_empty())
    }

    fn has_install_info(&self) -> bool {
        self.has_rules() || !self.also.is_empty()
    }

    /// The name the install symlinks carry: a template's default instance if it has one.
    fn link_name(&self) -> String {
        match (&self.default_instance, classify(&self.name)) {
            (Some(inst), Some(NameKind::Template)) => replace_instance(&self.name, inst),
            _ => self.name.clone(),
        }
    }
}

/// The units an operation works through, each once, in the order they came up (which decides
/// who wins when two units claim one alias).
#[derive(Default)]
struct Ctx {
    infos: Vec<Info>,
    index: HashMap<String, usize>,
    pending: VecDeque<usize>,
}

impl Ctx {
    fn find(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// install_info_add(): the unit's entry, new ones queued for processing.
    fn add(&mut self, name: &str, auxiliary: bool) -> usize {
        if let Some(i) = self.find(name) {
            self.infos[i].auxiliary &= auxiliary;
            return i;
        }
        let mut info = Info::new(name);
        info.auxiliary = auxiliary;
        self.infos.push(info);
        let i = self.infos.len() - 1;
        self.index.insert(name.to_string(), i);
        self.pending.push_back(i);
        i
    }

    fn add_also(&mut self, names: Vec<String>) {
        for name in names {
            self.add(&name, true);
        }
    }
}

/// One preset rule.
struct Rule {
    pattern: String,
    action: Action,
    /// `enable foo@.service a b`: the instances to enable.
    instances: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Enable,
    Disable,
    Ignore,
}

struct Install<'t> {
    tree: &'t mut Tree,
    epoch: i64,
    /// The unit search path, canonical and without duplicates.
    search: Vec<String>,
    config: String,
    runtime: String,
    report: Report,
}

impl<'t> Install<'t> {
    fn new(tree: &'t mut Tree, epoch: i64) -> Install<'t> {
        let mut search = Vec::new();
        for dir in UNIT_DIRS {
            let dir = canonical_dir(tree, dir);
            if !search.contains(&dir) {
                search.push(dir);
            }
        }
        Install {
            config: canonical_dir(tree, CONFIG_DIR),
            runtime: canonical_dir(tree, RUNTIME_DIR),
            tree,
            epoch,
            search,
            report: Report::default(),
        }
    }

    fn finish(self) -> Report {
        let mut r = self.report;
        for list in [
            &mut r.enabled,
            &mut r.disabled,
            &mut r.masked,
            &mut r.links,
            &mut r.removed,
        ] {
            list.sort();
            list.dedup();
        }
        let mut seen = HashSet::new();
        r.warnings.retain(|w| seen.insert(w.clone()));
        r
    }

    fn warn(&mut self, message: String) {
        self.report.warnings.push(message);
    }

    // --- the operations --------------------------------------------------------------------

    fn enable(&mut self, units: &[String]) -> Result<(), ServiceError> {
        let mut ctx = Ctx::default();
        let mut requested = Vec::new();
        for unit in units {
            let name = mangle(unit)?;
            let found = self.discover_and_check(&mut ctx, &name)?;
            requested.push((name, found));
        }
        self.apply(&mut ctx, false)?;
        for (name, found) in requested {
            if !ctx.infos[found].has_install_info() {
                self.warn(format!("{name}: {NO_INSTALL_INFO}"));
            }
        }
        Ok(())
    }

    fn disable(&mut self, units: &[String]) -> Result<(), ServiceError> {
        let mut ctx = Ctx::default();
        let mut without_info = Vec::new();
        for unit in units {
            let name = mangle(unit)?;
            let i = ctx.add(&name, false);
            let found = self.traverse(&mut ctx, i, true, true)?;
            if !ctx.infos[found].has_install_info() {
                without_info.push(name);
            }
        }
        let removed_before = self.report.removed.len();
        let (marked, regular) = self.mark_for_removal(&mut ctx)?;
        self.remove_marked(marked)?;
        for i in regular {
            self.report.disabled.push(ctx.infos[i].name.clone());
        }
        // Like systemctl, only a disable that changed nothing is worth the notice.
        if self.report.removed.len() == removed_before {
            for name in without_info {
                self.warn(format!("{name}: {NO_INSTALL_INFO}"));
            }
        }
        Ok(())
    }

    fn mask(&mut self, units: &[String]) -> Result<(), ServiceError> {
        for unit in units {
            let name = mangle(unit)?;
            let link = join(&self.config, &name);
            self.create_link("/dev/null", &link, false)?;
            self.report.masked.push(name);
        }
        Ok(())
    }

    fn preset_all(&mut self) -> Result<(), ServiceError> {
        let rules = self.read_presets();
        let mut plus = Ctx::default();
        let mut minus = Ctx::default();
        for dir in self.search.clone() {
            let names: Vec<String> = children(self.tree, &dir)
                .into_iter()
                .filter(|(name, e)| {
                    !name.starts_with('.')
                        && matches!(e.kind, Kind::File { .. } | Kind::Symlink { .. })
                        && classify(name).is_some()
                })
                .map(|(name, _)| name.to_string())
                .collect();
            for name in names {
                match self.preset_one(&mut plus, &mut minus, &name, &rules) {
                    Ok(()) => {}
                    Err(e @ (ServiceError::Tree(_) | ServiceError::BadUnit { .. })) => {
                        return Err(e);
                    }
                    // Stays queued; applying the presets reports it once.
                    Err(ServiceError::Masked { .. }) => {}
                    // Like preset-all, which skips masked, generated, missing and invalid
                    // units.
                    Err(e) => self.warn(format!("{e}; not applying presets to {name}")),
                }
            }
        }
        let (marked, regular) = self.mark_for_removal(&mut minus)?;
        self.remove_marked(marked)?;
        for i in regular {
            let name = minus.infos[i].name.clone();
            // Static units match `disable *` too; only those with something to disable count.
            if self.peek_install_info(&name) {
                self.report.disabled.push(name);
            }
        }
        self.apply(&mut plus, true)
    }

    /// preset_prepare_one().
    fn preset_one(
        &mut self,
        plus: &mut Ctx,
        minus: &mut Ctx,
        name: &str,
        rules: &[Rule],
    ) -> Result<(), ServiceError> {
        if plus.find(name).is_some() || minus.find(name).is_some() {
            return Ok(());
        }
        let mut probe = Ctx::default();
        let found = self.discover(&mut probe, name, true, false)?;
        if probe.infos[found].name != name {
            // An alias; its unit comes up under its own name.
            return Ok(());
        }
        match query_presets(rules, name) {
            (Action::Enable, Some(instances)) => {
                for inst in instances {
                    self.discover_and_check(plus, &inst)?;
                }
            }
            (Action::Enable, None) => {
                self.discover_and_check(plus, name)?;
            }
            (Action::Disable, _) => {
                self.discover(minus, name, true, false)?;
            }
            (Action::Ignore, _) => {}
        }
        Ok(())
    }

    /// Whether a unit has anything to enable, without side effects on the report.
    fn peek_install_info(&mut self, name: &str) -> bool {
        let saved = std::mem::take(&mut self.report.warnings);
        let mut ctx = Ctx::default();
        let has = self
            .discover(&mut ctx, name, true, true)
            .is_ok_and(|i| ctx.infos[i].has_install_info());
        self.report.warnings = saved;
        has
    }

    // --- finding units ---------------------------------------------------------------------

    /// install_info_discover(): the unit's entry and, through aliases, the unit it stands for.
    fn discover(
        &mut self,
        ctx: &mut Ctx,
        name: &str,
        follow_config: bool,
        load: bool,
    ) -> Result<usize, ServiceError> {
        if classify(name).is_none() {
            return Err(ServiceError::InvalidName {
                name: name.to_string(),
                message: "not a valid unit name".into(),
            });
        }
        let i = ctx.add(name, false);
        self.traverse(ctx, i, follow_config, load)
    }

    /// install_info_discover_and_check(): a loaded unit that may be enabled.
    fn discover_and_check(&mut self, ctx: &mut Ctx, name: &str) -> Result<usize, ServiceError> {
        let i = self.discover(ctx, name, true, true)?;
        let info = &ctx.infos[i];
        if info.mode == Some(Mode::Masked) {
            return Err(ServiceError::Masked {
                unit: info.name.clone(),
                path: info.path.clone().unwrap_or_default(),
            });
        }
        Ok(i)
    }

    /// install_info_traverse(): finds the unit file and follows aliases to the unit they name.
    /// An alias to a different name gets an entry of its own (queued too).
    fn traverse(
        &mut self,
        ctx: &mut Ctx,
        start: usize,
        follow_config: bool,
        load: bool,
    ) -> Result<usize, ServiceError> {
        self.search_ctx(ctx, start, load)?;
        let mut i = start;
        let mut hops = 0;
        while matches!(ctx.infos[i].mode, Some(Mode::Alias | Mode::Linked)) {
            let name = ctx.infos[i].name.clone();
            let path = ctx.infos[i].path.clone().unwrap_or_default();
            hops += 1;
            if hops > MAX_ALIAS_HOPS {
                return Err(ServiceError::Refused {
                    unit: name,
                    message: "too many levels of aliases".into(),
                });
            }
            // systemctl enables units, not the aliases and links that enabling made.
            if !follow_config && self.is_config_path(&path) {
                return Err(ServiceError::Refused {
                    unit: name,
                    message: format!("refusing to operate on the linked unit file {path}"),
                });
            }
            let linked = ctx.infos[i].mode == Some(Mode::Linked);
            let target = ctx.infos[i].symlink_target.clone().unwrap_or_default();
            if linked || basename(&target) == name {
                self.follow(ctx, i, load)?;
                continue;
            }
            let mut next = basename(&target).to_string();
            if classify(&name) == Some(NameKind::Instance)
                && classify(&next) == Some(NameKind::Template)
            {
                let filled = replace_instance(&next, instance(&name));
                if filled == name {
                    // foo@bar.service → foo@.service: the template, not an alias.
                    self.follow(ctx, i, load)?;
                    continue;
                }
                next = filled;
            }
            if classify(&next).is_none() {
                return Err(ServiceError::Refused {
                    unit: name,
                    message: format!("{path} links to {target}, which is not a unit name"),
                });
            }
            i = ctx.add(&next, false);
            match self.search_ctx(ctx, i, load) {
                Err(ServiceError::NotFound { .. }) => {
                    return Err(ServiceError::Dangling { unit: name, target });
                }
                r => r?,
            }
        }
        Ok(i)
    }

    fn search_ctx(&mut self, ctx: &mut Ctx, i: usize, load: bool) -> Result<(), ServiceError> {
        let mut also = Vec::new();
        let r = self.search(&mut ctx.infos[i], load, &mut also);
        ctx.add_also(also);
        r
    }

    /// install_info_follow(): loads what a symlinked unit file points to, under the same name.
    fn follow(&mut self, ctx: &mut Ctx, i: usize, load: bool) -> Result<(), ServiceError> {
        let mut also = Vec::new();
        let info = &mut ctx.infos[i];
        let target = info.symlink_target.take().unwrap_or_default();
        info.path = Some(target.clone());
        info.mode = None;
        let found = self.load_main(info, &target, load, &mut also);
        let name = info.name.clone();
        ctx.add_also(also);
        if found? {
            Ok(())
        } else {
            Err(ServiceError::Dangling { unit: name, target })
        }
    }

    fn is_config_path(&self, path: &str) -> bool {
        let dir = parent(path);
        dir == self.config || dir == self.runtime
    }

    /// unit_file_search(): the unit file (an instance falls back to its template) in the first
    /// search directory that has it, then its drop-ins, which may carry [Install] too.
    fn search(
        &mut self,
        info: &mut Info,
        load: bool,
        also: &mut Vec<String>,
    ) -> Result<(), ServiceError> {
        if info.mode.is_some() {
            return Ok(());
        }
        let template = if classify(&info.name) == Some(NameKind::Instance) {
            template_of(&info.name)
        } else {
            None
        };
        let dirs = self.search.clone();
        let mut found = None;
        'names: for candidate in std::iter::once(info.name.clone()).chain(template.clone()) {
            for dir in &dirs {
                let path = join(dir, &candidate);
                if self.load_main(info, &path, load, also)? {
                    found = Some(path);
                    break 'names;
                }
            }
        }
        let Some(path) = found else {
            return Err(ServiceError::NotFound {
                unit: info.name.clone(),
                template,
                searched: dirs,
            });
        };
        info.path = Some(path);
        if info.mode == Some(Mode::Masked) || !load {
            return Ok(());
        }
        let mut dropin_dirs: Vec<String> = dirs
            .iter()
            .map(|d| join(d, &format!("{}.d", info.name)))
            .collect();
        if let Some(t) = &template {
            dropin_dirs.extend(dirs.iter().map(|d| join(d, &format!("{t}.d"))));
        }
        for file in conf_files(self.tree, &dropin_dirs, ".conf") {
            self.load_dropin(info, &file, also)?;
        }
        Ok(())
    }

    /// unit_file_load_or_readlink(): reads the unit file at `path` (parsing [Install] if
    /// `load`), or the symlink there. `Ok(false)` when nothing is there.
    fn load_main(
        &mut self,
        info: &mut Info,
        path: &str,
        load: bool,
        also: &mut Vec<String>,
    ) -> Result<bool, ServiceError> {
        let ty = unit_type(&info.name).to_string();
        if classify(&info.name) != Some(NameKind::Plain) && !may_template(&ty) {
            return Err(ServiceError::Refused {
                unit: info.name.clone(),
                message: format!("{ty} units cannot be templated"),
            });
        }
        let Some(resolved) = chase(self.tree, path, false) else {
            return Err(ServiceError::Refused {
                unit: info.name.clone(),
                message: format!("{path}: too many levels of symbolic links"),
            });
        };
        let Some(entry) = self.tree.get(&resolved) else {
            return Ok(false);
        };
        match entry.kind.clone() {
            Kind::Symlink { target } => self.read_unit_link(info, &resolved, &target)?,
            kind if null_or_empty(&kind) => info.mode = Some(Mode::Masked),
            Kind::File { .. } => {
                if load {
                    let text = String::from_utf8_lossy(&self.tree.read(&resolved)?).into_owned();
                    self.parse(info, path, &text, also)?;
                }
                info.mode = Some(Mode::Regular);
            }
            kind => {
                return Err(ServiceError::Refused {
                    unit: info.name.clone(),
                    message: format!("{path} is a {}, not a unit file", kind.name()),
                });
            }
        }
        Ok(true)
    }

    /// unit_file_resolve_symlink(): a unit file that is a symlink is an alias (target in the
    /// search path), a linked unit file (outside it) or a mask.
    fn read_unit_link(
        &mut self,
        info: &mut Info,
        link: &str,
        target: &str,
    ) -> Result<(), ServiceError> {
        let joined = if target.starts_with('/') {
            target.to_string()
        } else {
            join(parent(link), target)
        };
        let Some(simplified) = chase(self.tree, &joined, false) else {
            return Err(ServiceError::Refused {
                unit: info.name.clone(),
                message: format!("{link}: too many levels of symbolic links"),
            });
        };
        let in_search = self.search.iter().any(|d| path_starts_with(&simplified, d));
        if in_search {
            match validate_alias(basename(link), basename(&simplified)) {
                Ok(()) => {}
                Err(AliasError::SelfAlias) => {
                    return Err(ServiceError::Refused {
                        unit: info.name.clone(),
                        message: format!(
                            "refusing to operate on the linked unit file {link} (it links to \
                             {simplified}, a unit of the same name)"
                        ),
                    });
                }
                Err(AliasError::Invalid(m)) => {
                    return Err(ServiceError::Refused {
                        unit: info.name.clone(),
                        message: format!("{link} links to {simplified}: {m}"),
                    });
                }
            }
        }
        // Under a root, /dev/null need not exist: the link's text is what masks.
        let masked = simplified == "/dev/null"
            || chase(self.tree, &simplified, true)
                .and_then(|p| self.tree.get(&p))
                .is_some_and(|e| null_or_empty(&e.kind));
        info.mode = Some(if masked {
            Mode::Masked
        } else if in_search {
            Mode::Alias
        } else {
            Mode::Linked
        });
        info.symlink_target = Some(simplified);
        Ok(())
    }

    fn load_dropin(
        &mut self,
        info: &mut Info,
        file: &str,
        also: &mut Vec<String>,
    ) -> Result<(), ServiceError> {
        let unreadable = |why: &str| ServiceError::Refused {
            unit: info.name.clone(),
            message: format!("cannot read the drop-in {file}: {why}"),
        };
        let Some(resolved) = chase(self.tree, file, true) else {
            return Err(unreadable("too many levels of symbolic links"));
        };
        if resolved == "/dev/null" {
            return Ok(());
        }
        match self.tree.get(&resolved).map(|e| e.kind.clone()) {
            None => Err(unreadable("it does not exist")),
            Some(kind) if null_or_empty(&kind) => Ok(()),
            Some(Kind::File { .. }) => {
                let text = String::from_utf8_lossy(&self.tree.read(&resolved)?).into_owned();
                self.parse(info, file, &text, also)
            }
            Some(kind) => Err(unreadable(&format!("it is a {}", kind.name()))),
        }
    }

    // --- parsing [Install] (config_parse() with install.c's table) -------------------------

    fn parse(
        &mut self,
        info: &mut Info,
        file: &str,
        text: &str,
        also: &mut Vec<String>,
    ) -> Result<(), ServiceError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut section = Section::default();
        let mut continuation: Option<String> = None;
        let mut line = 0;
        for raw in text.lines() {
            line += 1;
            // Comment lines are dropped even in the middle of a continuation.
            if raw.trim_start_matches(WS).starts_with(['#', ';']) {
                continue;
            }
            let mut joined = match continuation.take() {
                Some(mut c) => {
                    c.push_str(raw);
                    c
                }
                None => raw.to_string(),
            };
            if ends_escaped(&joined) {
                joined.pop();
                joined.push(' ');
                continuation = Some(joined);
                continue;
            }
            self.parse_line(info, file, line, &joined, &mut section, also)?;
        }
        if let Some(last) = continuation {
            self.parse_line(info, file, line + 1, &last, &mut section, also)?;
        }
        Ok(())
    }

    fn parse_line(
        &mut self,
        info: &mut Info,
        file: &str,
        line: usize,
        text: &str,
        section: &mut Section,
        also: &mut Vec<String>,
    ) -> Result<(), ServiceError> {
        let l = text.trim_matches(WS);
        if l.is_empty() {
            return Ok(());
        }
        if let Some(header) = l.strip_prefix('[') {
            let Some(name) = header.strip_suffix(']') else {
                return Err(ServiceError::BadUnit {
                    file: file.to_string(),
                    line,
                    message: format!("invalid section header {l:?}"),
                });
            };
            section.install = name == "Install";
            section.ignored = !section.install;
            if !section.install && !name.starts_with("X-") && !OTHER_SECTIONS.contains(&name) {
                self.warn(format!("{file}:{line}: unknown section [{name}], ignoring"));
            }
            return Ok(());
        }
        if !section.install {
            if !section.ignored {
                self.warn(format!(
                    "{file}:{line}: assignment outside of a section, ignoring"
                ));
            }
            return Ok(());
        }
        let Some((key, value)) = l.split_once('=') else {
            self.warn(format!("{file}:{line}: missing '=', ignoring the line"));
            return Ok(());
        };
        if key.is_empty() {
            self.warn(format!(
                "{file}:{line}: missing key name before '=', ignoring the line"
            ));
            return Ok(());
        }
        let (key, value) = (key.trim_matches(WS), value.trim_matches(WS));
        let bad = |message: String| ServiceError::BadUnit {
            file: file.to_string(),
            line,
            message,
        };
        match key {
            "Alias" if !may_alias(unit_type(&info.name)) => self.warn(format!(
                "{file}:{line}: Alias= is not allowed for {} units, ignoring",
                unit_type(&info.name)
            )),
            "Alias" => self.assign_list(&mut info.aliases, value, file, line),
            "WantedBy" => self.assign_list(&mut info.wanted_by, value, file, line),
            "RequiredBy" => self.assign_list(&mut info.required_by, value, file, line),
            "UpheldBy" => self.assign_list(&mut info.upheld_by, value, file, line),
            "DefaultInstance" => match classify(&info.name) {
                // Enabling an instance through its template's file.
                Some(NameKind::Instance) => {}
                Some(NameKind::Template) => {
                    let printed = self
                        .printf(info, value)
                        .map_err(|m| bad(format!("cannot resolve DefaultInstance={value}: {m}")))?;
                    if printed.is_empty() {
                        info.default_instance = None;
                    } else if instance_is_valid(&printed) {
                        info.default_instance = Some(printed);
                    } else {
                        return Err(bad(format!("invalid DefaultInstance= value {printed:?}")));
                    }
                }
                _ => self.warn(format!(
                    "{file}:{line}: DefaultInstance= only makes sense for template units, \
                     ignoring"
                )),
            },
            "Also" => {
                let words = split_words(value, false, false)
                    .map_err(|_| bad(format!("invalid syntax in Also={value}")))?;
                for word in words {
                    let printed = self
                        .printf(info, &word)
                        .map_err(|m| bad(format!("cannot resolve Also={word}: {m}")))?;
                    if classify(&printed).is_none() {
                        return Err(bad(format!("Also= names {printed:?}, not a unit name")));
                    }
                    info.also.push(printed.clone());
                    also.push(printed);
                }
            }
            _ if key.starts_with("X-") => {}
            _ => self.warn(format!(
                "{file}:{line}: unknown key {key}= in [Install], ignoring"
            )),
        }
        Ok(())
    }

    /// config_parse_strv(): words add up over lines; an empty value empties the list.
    fn assign_list(&mut self, list: &mut Vec<String>, value: &str, file: &str, line: usize) {
        if value.is_empty() {
            list.clear();
            return;
        }
        match split_words(value, true, true) {
            Ok(words) => list.extend(words),
            Err(words) => {
                list.extend(words);
                self.warn(format!("{file}:{line}: invalid syntax, ignoring: {value}"));
            }
        }
    }

    /// install_name_printf(): expands specifiers for the unit. Those describing the running
    /// host (%a %b %H %l %q %v) would make the image depend on the build machine: refused.
    fn printf(&self, info: &Info, format: &str) -> Result<String, String> {
        let name = &info.name;
        let default = info.default_instance.as_deref();
        let mut out = String::new();
        let mut chars = format.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let Some(spec) = chars.next() else {
                out.push('%');
                break;
            };
            match spec {
                '%' => out.push('%'),
                'n' => out.push_str(&info.link_name()),
                'N' => {
                    let stem = &name[..at_and_dot(name).1];
                    out.push_str(stem);
                    if let (true, Some(d)) = (stem.ends_with('@'), default) {
                        out.push_str(d);
                    }
                }
                'p' => out.push_str(prefix(name)),
                'i' => match instance(name) {
                    "" => out.push_str(default.unwrap_or("")),
                    inst => out.push_str(inst),
                },
                'j' => {
                    let p = prefix(name);
                    out.push_str(p.rsplit_once('-').map_or(p, |(_, last)| last));
                }
                'u' | 'g' => out.push_str("root"),
                'U' | 'G' => out.push('0'),
                'm' => out.push_str(&self.machine_id()?),
                'o' => out.push_str(&self.os_release("ID")?),
                'w' => out.push_str(&self.os_release("VERSION_ID")?),
                'W' => out.push_str(&self.os_release("VARIANT_ID")?),
                'A' => out.push_str(&self.os_release("IMAGE_VERSION")?),
                'M' => out.push_str(&self.os_release("IMAGE_ID")?),
                'B' => out.push_str(&self.os_release("BUILD_ID")?),
                'a' | 'b' | 'H' | 'l' | 'q' | 'v' => {
                    return Err(format!(
                        "%{spec} describes the machine running the build, not the image"
                    ));
                }
                _ => return Err(format!("invalid specifier %{spec}")),
            }
        }
        Ok(out)
    }

    fn machine_id(&self) -> Result<String, String> {
        let id = self.tree.read_text("/etc/machine-id").unwrap_or_default();
        let id = id.trim();
        if id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()) {
            Ok(id.to_ascii_lowercase())
        } else {
            Err("%m needs /etc/machine-id in the image, which is missing or uninitialized".into())
        }
    }

    /// A field of the image's os-release (the last assignment counts); empty if the file lacks
    /// it, as systemd does.
    fn os_release(&self, key: &str) -> Result<String, String> {
        let text = self
            .tree
            .read_text("/etc/os-release")
            .or_else(|| self.tree.read_text("/usr/lib/os-release"))
            .ok_or("the image has no os-release file")?;
        let mut found = String::new();
        for line in text.lines() {
            let Some((k, v)) = line.trim().split_once('=') else {
                continue;
            };
            if k.trim() != key {
                continue;
            }
            let v = v.trim();
            let unquoted = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            found.clear();
            let mut chars = unquoted.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    found.extend(chars.next());
                } else {
                    found.push(c);
                }
            }
        }
        Ok(found)
    }

    // --- enabling (install_context_apply()) -------------------------------------------------

    fn apply(&mut self, ctx: &mut Ctx, presets: bool) -> Result<(), ServiceError> {
        while let Some(i) = ctx.pending.pop_front() {
            match self.traverse(ctx, i, false, true) {
                Ok(_) => {}
                Err(e @ ServiceError::Tree(_)) => return Err(e),
                Err(e) if ctx.infos[i].auxiliary => {
                    let name = &ctx.infos[i].name;
                    self.warn(format!(
                        "not enabling the auxiliary unit {name} (Also=): {e}"
                    ));
                    continue;
                }
                Err(e) => return Err(e),
            }
            let info = &ctx.infos[i];
            match info.mode {
                Some(Mode::Regular) => self.apply_info(info, presets)?,
                Some(Mode::Masked) => {
                    let path = info.path.clone().unwrap_or_default();
                    self.warn(format!("unit {} is masked ({path}), ignoring", info.name));
                }
                // An alias: the unit it names was queued under its own name.
                _ => {}
            }
        }
        Ok(())
    }

    /// install_info_apply(): the unit's symlinks, in systemctl's order.
    fn apply_info(&mut self, info: &Info, presets: bool) -> Result<(), ServiceError> {
        let path = info.path.clone().unwrap_or_default();
        let refused = |message: String| ServiceError::Refused {
            unit: info.name.clone(),
            message,
        };
        // A unit file outside the search path (reached through a symlink) stays findable only
        // through a link in /etc, as `systemctl link` makes.
        if !self.search.iter().any(|d| parent(&path) == d) {
            let link = join(&self.config, &info.name);
            self.create_link(&path, &link, false)?;
        }
        let mut linked = 0;
        for alias in &info.aliases {
            let dst = self
                .printf(info, alias)
                .map_err(|m| refused(format!("cannot resolve Alias={alias}: {m}")))?;
            let dst = match verify_alias(info, &dst) {
                Ok(updated) => updated.unwrap_or(dst),
                Err(AliasError::SelfAlias) => continue,
                Err(AliasError::Invalid(m)) => {
                    return Err(refused(format!("cannot alias it as {dst}: {m}")));
                }
            };
            let link = join(&self.config, &dst);
            // A dangling symlink in the way is replaced even without --force.
            let broken = chase(self.tree, &link, true)
                .ok_or_else(|| refused(format!("{link}: too many levels of symbolic links")))
                .map(|p| self.tree.get(&p).is_none())?;
            self.create_link(&path, &link, broken)?;
            linked += 1;
        }
        linked += self.link_dependents(info, &info.wanted_by, "WantedBy", ".wants", presets)?;
        linked +=
            self.link_dependents(info, &info.required_by, "RequiredBy", ".requires", presets)?;
        linked += self.link_dependents(info, &info.upheld_by, "UpheldBy", ".upholds", presets)?;
        if linked > 0 {
            self.report.enabled.push(info.link_name());
        }
        Ok(())
    }

    /// install_info_symlink_wants(): `<config>/<target><suffix>/<unit>` for each target; how
    /// many are in place.
    fn link_dependents(
        &mut self,
        info: &Info,
        targets: &[String],
        key: &str,
        suffix: &str,
        presets: bool,
    ) -> Result<usize, ServiceError> {
        if targets.is_empty() {
            return Ok(0);
        }
        let path = info.path.clone().unwrap_or_default();
        let name = info.link_name();
        // A template without DefaultInstance can only hang below template or instance targets
        // (foo@.target.wants/bar@.service), which instantiate it.
        let only_templated = match classify(&info.name) {
            Some(NameKind::Template) if info.default_instance.is_some() => {
                let mut probe = Info::new(&name);
                self.search(&mut probe, false, &mut Vec::new())?;
                if probe.mode == Some(Mode::Masked) {
                    return Err(ServiceError::Masked {
                        unit: name,
                        path: probe.path.unwrap_or_default(),
                    });
                }
                false
            }
            Some(NameKind::Template) => true,
            _ => false,
        };
        let mut linked = 0;
        for target in targets {
            let dst = self
                .printf(info, target)
                .map_err(|m| ServiceError::Refused {
                    unit: info.name.clone(),
                    message: format!("cannot resolve {key}={target}: {m}"),
                })?;
            match classify(&dst) {
                Some(NameKind::Plain) if only_templated => {
                    // preset-all skips templates it cannot instantiate.
                    if presets {
                        continue;
                    }
                    return Err(ServiceError::Refused {
                        unit: info.name.clone(),
                        message: format!(
                            "{key}={dst} names a non-template unit, so enable an instance of this \
                             template (e.g. {}) or give it DefaultInstance=",
                            replace_instance(&info.name, "INSTANCE")
                        ),
                    });
                }
                Some(_) => {}
                None if presets => continue,
                None => {
                    return Err(ServiceError::Refused {
                        unit: info.name.clone(),
                        message: format!("{key}={dst}: not a valid unit name"),
                    });
                }
            }
            let link = format!("{}/{dst}{suffix}/{name}", self.config);
            self.create_link(&path, &link, true)?;
            linked += 1;
            if !self.unit_exists(&dst) {
                self.warn(format!(
                    "unit {path} is added as a dependency to a non-existent unit {dst}"
                ));
            }
        }
        Ok(linked)
    }

    /// unit_file_exists().
    fn unit_exists(&mut self, name: &str) -> bool {
        let mut ctx = Ctx::default();
        !matches!(
            self.discover(&mut ctx, name, false, false),
            Err(ServiceError::NotFound { .. })
        )
    }

    /// create_symlink(): an existing symlink that means the same is left alone; any other
    /// existing file is an error unless `force` (then a symlink is replaced).
    fn create_link(&mut self, target: &str, link: &str, force: bool) -> Result<(), ServiceError> {
        self.tree.mkdir_p(parent(link), 0o755, self.epoch)?;
        let resolved = self.tree.resolve_parent(link)?;
        let existing = self.tree.get(&resolved).map(|e| e.kind.clone());
        match existing {
            None => {}
            Some(Kind::Symlink { target: existing }) => {
                if self.equivalent(&resolved, &existing, target) {
                    return Ok(());
                }
                if !force {
                    return Err(ServiceError::Exists {
                        path: resolved,
                        existing: Some(existing),
                        wanted: target.to_string(),
                    });
                }
                self.tree.remove(&resolved)?;
                self.report.removed.push(resolved.clone());
            }
            Some(_) => {
                return Err(ServiceError::Exists {
                    path: resolved,
                    existing: None,
                    wanted: target.to_string(),
                });
            }
        }
        let entry = Entry {
            kind: Kind::Symlink {
                target: target.to_string(),
            },
            mode: 0o777,
            uid: 0,
            gid: 0,
            mtime: self.epoch,
            xattrs: BTreeMap::new(),
        };
        let created = self.tree.symlink(&resolved, target, entry)?;
        self.report.links.push(created);
        Ok(())
    }

    /// chroot_unit_symlinks_equivalent(): the same path, the same file, or the same unit name
    /// inside the search path.
    fn equivalent(&self, link: &str, a: &str, b: &str) -> bool {
        let absolute = |t: &str| {
            if t.starts_with('/') {
                t.to_string()
            } else {
                join(parent(link), t)
            }
        };
        let (a, b) = (absolute(a), absolute(b));
        if path_equal(&a, &b) {
            return true;
        }
        let (ra, rb) = (chase(self.tree, &a, true), chase(self.tree, &b, true));
        if let (Some(ra), Some(rb)) = (ra, rb)
            && ra == rb
            && self.tree.get(&ra).is_some()
        {
            return true;
        }
        let in_search = |p: &str| self.search.iter().any(|d| path_starts_with(p, d));
        basename(&a) == basename(&b) && in_search(&a) && in_search(&b)
    }

    // --- disabling (install_context_mark_for_removal(), remove_marked_symlinks()) ----------

    /// The names (and later paths) whose symlinks go, and the regular units among them.
    fn mark_for_removal(
        &mut self,
        ctx: &mut Ctx,
    ) -> Result<(BTreeSet<String>, Vec<usize>), ServiceError> {
        let mut marked = BTreeSet::new();
        let mut regular = Vec::new();
        while let Some(i) = ctx.pending.pop_front() {
            let name = ctx.infos[i].name.clone();
            match self.traverse(ctx, i, true, true) {
                Ok(_) => match ctx.infos[i].mode {
                    Some(Mode::Regular) => regular.push(i),
                    Some(Mode::Masked) => {
                        self.warn(format!("unit {name} is masked, ignoring"));
                        continue;
                    }
                    _ => continue,
                },
                Err(e @ ServiceError::Tree(_)) => return Err(e),
                // Leftover symlinks of a unit that is gone still go.
                Err(ServiceError::NotFound { .. }) if ctx.infos[i].auxiliary => {}
                Err(e @ ServiceError::NotFound { .. }) => return Err(e),
                Err(e) => self.warn(format!("{e}; removing the symlinks named {name} anyway")),
            }
            marked.insert(name);
        }
        Ok((marked, regular))
    }

    fn remove_marked(&mut self, mut marked: BTreeSet<String>) -> Result<(), ServiceError> {
        if marked.is_empty() || !is_dir(self.tree, &self.config) {
            return Ok(());
        }
        let config = self.config.clone();
        // A removed symlink's path is marked in turn, so links to it go on the next pass.
        while self.remove_in(&config, &mut marked)? {}
        Ok(())
    }

    /// One pass over a directory of the configuration tree; whether anything new was marked.
    fn remove_in(
        &mut self,
        dir: &str,
        marked: &mut BTreeSet<String>,
    ) -> Result<bool, ServiceError> {
        let mut again = false;
        let names: Vec<String> = children(self.tree, dir)
            .into_iter()
            .filter(|(name, _)| !name.starts_with('.'))
            .map(|(name, _)| name.to_string())
            .collect();
        for name in names {
            let path = join(dir, &name);
            match self.tree.get(&path).map(|e| &e.kind) {
                Some(Kind::Dir) => again |= self.remove_in(&path, marked)?,
                Some(Kind::Symlink { .. }) if classify(&name).is_some() => {
                    let found = marked.contains(&name)
                        || template_of(&name).is_some_and(|t| marked.contains(&t))
                        || match chase(self.tree, &path, true) {
                            Some(dest) => {
                                marked.contains(&dest) || marked.contains(basename(&dest))
                            }
                            None => {
                                self.warn(format!("{path}: too many levels of symbolic links"));
                                false
                            }
                        };
                    if !found {
                        continue;
                    }
                    self.tree.remove(&path)?;
                    self.rmdir_parents(&path)?;
                    self.report.removed.push(path.clone());
                    again |= marked.insert(path);
                }
                _ => {}
            }
        }
        Ok(again)
    }

    /// rmdir_parents(): directories left empty up to the configuration directory go too.
    fn rmdir_parents(&mut self, path: &str) -> Result<(), ServiceError> {
        let mut dir = parent(path).to_string();
        while !path_starts_with(&self.config, &dir)
            && is_dir(self.tree, &dir)
            && children(self.tree, &dir).is_empty()
        {
            self.tree.remove(&dir)?;
            dir = parent(&dir).to_string();
        }
        Ok(())
    }

    // --- presets ----------------------------------------------------------------------------

    /// read_presets(): the rules of all preset files, files in name order.
    fn read_presets(&mut self) -> Vec<Rule> {
        let mut dirs: Vec<String> = Vec::new();
        for d in PRESET_DIRS {
            let canonical = canonical_dir(self.tree, d);
            if !dirs
                .iter()
                .any(|x| canonical_dir(self.tree, x) == canonical)
            {
                dirs.push(d.to_string());
            }
        }
        let mut rules = Vec::new();
        for file in conf_files(self.tree, &dirs, ".preset") {
            let text = match chase(self.tree, &file, true) {
                Some(p) if p == "/dev/null" => continue,
                Some(p) => match self.tree.get(&p).map(|e| &e.kind) {
                    Some(Kind::File { .. }) => self.tree.read_text(&p).unwrap_or_default(),
                    _ => {
                        self.warn(format!("{file}: not a readable file, ignoring"));
                        continue;
                    }
                },
                None => {
                    self.warn(format!(
                        "{file}: too many levels of symbolic links, ignoring"
                    ));
                    continue;
                }
            };
            for (n, raw) in text.lines().enumerate() {
                let line = raw.trim_matches(WS);
                if line.is_empty() || line.starts_with(['#', ';']) {
                    continue;
                }
                match parse_preset_line(line) {
                    Some(rule) => rules.push(rule),
                    None => self.warn(format!(
                        "{file}:{}: couldn't parse line {line:?}, ignoring",
                        n + 1
                    )),
                }
            }
        }
        rules
    }
}

#[derive(Default)]
struct Section {
    install: bool,
    /// In a section other than [Install], whose assignments are skipped silently.
    ignored: bool,
}

/// unit_file_verify_alias(): checks an Alias= value; `Some` when the instance of the unit was
/// filled into a template alias.
fn verify_alias(info: &Info, dst: &str) -> Result<Option<String>, AliasError> {
    if let Some((dir, file)) = dst.rsplit_once('/') {
        // The legacy form Alias=foo.target.wants/bar.service.
        let Some(unit) = dir
            .strip_suffix(".wants")
            .or_else(|| dir.strip_suffix(".requires"))
        else {
            return Err(AliasError::Invalid(format!(
                "{dir:?} is not a .wants or .requires directory"
            )));
        };
        let Some(kind) = classify(unit) else {
            return Err(AliasError::Invalid(format!("{unit:?} is not a unit name")));
        };
        if !symlink_name_compatible(file, &info.name, kind == NameKind::Template) {
            return Err(AliasError::Invalid(format!(
                "{file} does not name {}",
                info.name
            )));
        }
        return Ok(None);
    }
    let updated = (classify(dst) == Some(NameKind::Template)
        && classify(&info.name) == Some(NameKind::Instance))
    .then(|| replace_instance(dst, instance(&info.name)));
    validate_alias(updated.as_deref().unwrap_or(dst), &info.name)?;
    Ok(updated)
}

/// One non-empty, non-comment line of a preset file.
fn parse_preset_line(line: &str) -> Option<Rule> {
    if let Some(rest) = first_word(line, "enable") {
        let (pattern, instances) = match rest.split_once(WS) {
            Some((p, more)) => (p, more.trim_start_matches(WS)),
            None => (rest, ""),
        };
        if pattern.is_empty() {
            return None;
        }
        let instances = if instances.is_empty() {
            None
        } else if classify(pattern) == Some(NameKind::Template) {
            Some(
                instances
                    .split(WS)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
            )
        } else {
            return None;
        };
        return Some(Rule {
            pattern: pattern.to_string(),
            action: Action::Enable,
            instances,
        });
    }
    let (action, pattern) = if let Some(rest) = first_word(line, "disable") {
        (Action::Disable, rest)
    } else {
        (Action::Ignore, first_word(line, "ignore")?)
    };
    Some(Rule {
        pattern: pattern.to_string(),
        action,
        instances: None,
    })
}

/// query_presets(): the first matching rule decides; none means enable. A template matched by
/// `enable foo@.service a b` is enabled as those instances.
fn query_presets(rules: &[Rule], name: &str) -> (Action, Option<Vec<String>>) {
    for rule in rules {
        if let Some(instances) = &rule.instances
            && template_of(name).is_some_and(|t| t == rule.pattern)
        {
            if classify(name) == Some(NameKind::Template) {
                let names = instances
                    .iter()
                    .map(|i| replace_instance(name, i))
                    .collect();
                return (rule.action, Some(names));
            }
            if instances.iter().any(|i| i == instance(name)) {
                return (rule.action, None);
            }
        }
        if fnmatch(&rule.pattern, name) {
            return (rule.action, None);
        }
    }
    (Action::Enable, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const EPOCH: i64 = 1_700_000_000;
    const LIB: &str = "/usr/lib/systemd/system";
    const ETC: &str = "/etc/systemd/system";

    fn tree() -> (tempfile::TempDir, Tree) {
        let d = tempfile::tempdir().unwrap();
        let t = Tree::create(&d.path().join("root"))
            .unwrap()
            .without_real_owners();
        (d, t)
    }

    fn file_entry() -> Entry {
        Entry {
            kind: Kind::File {
                size: 0,
                link: None,
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1,
            xattrs: BTreeMap::new(),
        }
    }

    fn write(t: &mut Tree, path: &str, text: &str) {
        t.write_file(path, &mut text.as_bytes(), file_entry())
            .unwrap();
    }

    fn unit(t: &mut Tree, name: &str, text: &str) {
        write(t, &format!("{LIB}/{name}"), text);
    }

    fn symlink(t: &mut Tree, path: &str, target: &str) {
        let mut e = file_entry();
        e.mode = 0o777;
        t.symlink(path, target, e).unwrap();
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// Every symlink under /etc, path → target.
    fn links(t: &Tree) -> BTreeMap<String, String> {
        t.entries()
            .iter()
            .filter(|(p, _)| p.starts_with("/etc/"))
            .filter_map(|(p, e)| match &e.kind {
                Kind::Symlink { target } => Some((p.clone(), target.clone())),
                _ => None,
            })
            .collect()
    }

    fn expect(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(p, t)| (format!("{ETC}/{p}"), t.to_string()))
            .collect()
    }

    fn web_units(t: &mut Tree) {
        unit(
            t,
            "web.service",
            "[Unit]\nDescription=Web\n\n[Service]\nExecStart=/usr/bin/web\n\n[Install]\n\
             WantedBy=multi-user.target\nAlias=www.service\nAlso=web.socket\n",
        );
        unit(
            t,
            "web.socket",
            "[Socket]\nListenStream=80\n[Install]\nWantedBy=sockets.target\n",
        );
    }

    #[test]
    fn enables_wanted_by_alias_and_also() {
        let (_d, mut t) = tree();
        web_units(&mut t);
        let r = enable(&mut t, &names(&["web"]), EPOCH).unwrap();
        let want = expect(&[
            (
                "multi-user.target.wants/web.service",
                "/usr/lib/systemd/system/web.service",
            ),
            (
                "sockets.target.wants/web.socket",
                "/usr/lib/systemd/system/web.socket",
            ),
            ("www.service", "/usr/lib/systemd/system/web.service"),
        ]);
        assert_eq!(links(&t), want);
        assert_eq!(r.enabled, ["web.service", "web.socket"]);
        assert_eq!(r.links, want.keys().cloned().collect::<Vec<_>>());
        assert!(r.removed.is_empty());
        let e = t.get(&format!("{ETC}/www.service")).unwrap();
        assert_eq!((e.mode, e.uid, e.gid, e.mtime), (0o777, 0, 0, EPOCH));
        let dir = t.get(&format!("{ETC}/multi-user.target.wants")).unwrap();
        assert_eq!((dir.kind.clone(), dir.mtime), (Kind::Dir, EPOCH));
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("non-existent unit multi-user.target")),
            "{:?}",
            r.warnings
        );

        // Again: nothing new, nothing fails.
        let again = enable(&mut t, &names(&["web.service"]), EPOCH).unwrap();
        assert!(
            again.links.is_empty() && again.removed.is_empty(),
            "{again:?}"
        );
        assert_eq!(again.enabled, ["web.service", "web.socket"]);
        assert_eq!(links(&t), want);
    }

    #[test]
    fn required_by_and_upheld_by() {
        let (_d, mut t) = tree();
        unit(&mut t, "db.target", "[Unit]\nDescription=db\n");
        unit(
            &mut t,
            "db.service",
            "[Install]\nRequiredBy=db.target app.service\nUpheldBy=db.target\n",
        );
        let r = enable(&mut t, &names(&["db.service"]), EPOCH).unwrap();
        let target = "/usr/lib/systemd/system/db.service";
        assert_eq!(
            links(&t),
            expect(&[
                ("app.service.requires/db.service", target),
                ("db.target.requires/db.service", target),
                ("db.target.upholds/db.service", target),
            ])
        );
        // db.target exists, app.service does not.
        let missing: Vec<_> = r
            .warnings
            .iter()
            .filter(|w| w.contains("non-existent"))
            .collect();
        assert_eq!(missing.len(), 1, "{:?}", r.warnings);
        assert!(missing[0].ends_with("non-existent unit app.service"));
    }

    #[test]
    fn templates_instances_and_specifiers() {
        let (_d, mut t) = tree();
        unit(
            &mut t,
            "getty@.service",
            "[Install]\nWantedBy=getty.target\nDefaultInstance=tty1\nAlias=console@.service\n",
        );
        let r = enable(&mut t, &names(&["getty@.service", "getty@ttyS0"]), EPOCH).unwrap();
        let target = "/usr/lib/systemd/system/getty@.service";
        assert_eq!(
            links(&t),
            expect(&[
                ("console@.service", target),
                ("console@ttyS0.service", target),
                ("getty.target.wants/getty@tty1.service", target),
                ("getty.target.wants/getty@ttyS0.service", target),
            ])
        );
        assert_eq!(r.enabled, ["getty@tty1.service", "getty@ttyS0.service"]);

        unit(
            &mut t,
            "foo-bar@.service",
            "[Install]\nWantedBy=%j-%i.target %p.target\nRequiredBy=x-%N.service\n\
             Alias=%%lit-%n\n",
        );
        let e = enable(&mut t, &names(&["foo-bar@a.service"]), EPOCH).unwrap_err();
        // %%lit-foo-bar@a.service is not a unit name.
        assert!(e.to_string().contains("%lit-foo-bar@a.service"), "{e}");
        unit(
            &mut t,
            "foo-bar@.service",
            "[Install]\nWantedBy=%j-%i.target %p.target\nRequiredBy=x-%N.service\n",
        );
        enable(&mut t, &names(&["foo-bar@a.service"]), EPOCH).unwrap();
        let all = links(&t);
        for link in [
            "bar-a.target.wants/foo-bar@a.service",
            "foo-bar.target.wants/foo-bar@a.service",
            "x-foo-bar@a.service.requires/foo-bar@a.service",
        ] {
            assert!(
                all.contains_key(&format!("{ETC}/{link}")),
                "{link}: {all:?}"
            );
        }

        // %I is not an [Install] specifier for systemd either.
        unit(&mut t, "i@.service", "[Install]\nWantedBy=%I.target\n");
        let e = enable(&mut t, &names(&["i@x.service"]), EPOCH).unwrap_err();
        assert!(e.to_string().contains("invalid specifier %I"), "{e}");

        // A bare template without DefaultInstance cannot be enabled.
        unit(
            &mut t,
            "bare@.service",
            "[Install]\nWantedBy=multi-user.target\n",
        );
        let e = enable(&mut t, &names(&["bare@.service"]), EPOCH).unwrap_err();
        assert!(e.to_string().contains("bare@INSTANCE.service"), "{e}");
    }

    #[test]
    fn static_units_warn() {
        let (_d, mut t) = tree();
        unit(
            &mut t,
            "helper.service",
            "[Unit]\nDescription=helper\n[Service]\nType=oneshot\n",
        );
        let r = enable(&mut t, &names(&["helper"]), EPOCH).unwrap();
        assert!(links(&t).is_empty());
        assert!(r.enabled.is_empty());
        assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
        assert!(
            r.warnings[0].starts_with("helper.service: the unit file has no installation config")
        );
        let r = disable(&mut t, &names(&["helper"]), EPOCH).unwrap();
        assert!(r.warnings[0].contains("no installation config"));
    }

    #[test]
    fn missing_units_name_the_search_path() {
        let (_d, mut t) = tree();
        let e = enable(&mut t, &names(&["nginx"]), EPOCH).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, ServiceError::NotFound { .. }));
        assert!(msg.contains("nginx.service"), "{msg}");
        assert!(
            msg.contains("/etc/systemd/system, /run/systemd/system"),
            "{msg}"
        );
        assert!(msg.contains("/usr/lib/systemd/system"), "{msg}");
        assert!(msg.contains("install the package that ships it"), "{msg}");
        let e = enable(&mut t, &names(&["getty@tty1"]), EPOCH).unwrap_err();
        assert!(
            e.to_string().contains("nor its template getty@.service"),
            "{e}"
        );
        assert!(matches!(
            disable(&mut t, &names(&["nginx"]), EPOCH),
            Err(ServiceError::NotFound { .. })
        ));
        assert!(matches!(
            enable(&mut t, &names(&["a/b.service"]), EPOCH),
            Err(ServiceError::InvalidName { .. })
        ));
    }

    #[test]
    fn disable_removes_every_link_to_the_unit() {
        let (_d, mut t) = tree();
        web_units(&mut t);
        unit(
            &mut t,
            "other.service",
            "[Install]\nWantedBy=multi-user.target\n",
        );
        enable(&mut t, &names(&["web", "other"]), EPOCH).unwrap();
        // Links systemctl enable did not make but that point to the unit, or carry its name.
        symlink(
            &mut t,
            &format!("{ETC}/extra.target.wants/web.service"),
            "../web-elsewhere",
        );
        symlink(
            &mut t,
            &format!("{ETC}/by-path.target.wants/w.service"),
            "/usr/lib/systemd/system/web.service",
        );
        symlink(
            &mut t,
            &format!("{ETC}/keep.target.wants/k.service"),
            "/usr/lib/systemd/system/other.service",
        );
        let r = disable(&mut t, &names(&["web"]), EPOCH).unwrap();
        assert_eq!(
            links(&t),
            expect(&[
                (
                    "keep.target.wants/k.service",
                    "/usr/lib/systemd/system/other.service"
                ),
                (
                    "multi-user.target.wants/other.service",
                    "/usr/lib/systemd/system/other.service"
                ),
            ])
        );
        assert_eq!(r.disabled, ["web.service", "web.socket"]);
        assert_eq!(r.removed.len(), 5, "{:?}", r.removed);
        for gone in [
            "sockets.target.wants",
            "extra.target.wants",
            "by-path.target.wants",
        ] {
            assert!(t.get(&format!("{ETC}/{gone}")).is_none(), "{gone} is left");
        }
        assert!(t.get(ETC).is_some());
        // Through an alias name.
        enable(&mut t, &names(&["web"]), EPOCH).unwrap();
        disable(&mut t, &names(&["www.service"]), EPOCH).unwrap();
        assert_eq!(links(&t).len(), 2);
    }

    #[test]
    fn mask_links_to_dev_null() {
        let (_d, mut t) = tree();
        web_units(&mut t);
        let r = mask(&mut t, &names(&["web.socket", "absent"]), EPOCH).unwrap();
        assert_eq!(r.masked, ["absent.service", "web.socket"]);
        assert_eq!(
            links(&t),
            expect(&[("absent.service", "/dev/null"), ("web.socket", "/dev/null")])
        );
        // Twice is fine.
        let again = mask(&mut t, &names(&["web.socket"]), EPOCH).unwrap();
        assert!(again.links.is_empty());
        // Masked units are not enabled, neither asked for nor through Also=.
        let e = enable(&mut t, &names(&["web.socket"]), EPOCH).unwrap_err();
        assert!(matches!(e, ServiceError::Masked { .. }), "{e}");
        let r = enable(&mut t, &names(&["web"]), EPOCH).unwrap();
        assert_eq!(r.enabled, ["web.service"]);
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("web.socket is masked")),
            "{:?}",
            r.warnings
        );
        // Disabling leaves masks alone.
        disable(&mut t, &names(&["web"]), EPOCH).unwrap();
        assert_eq!(
            links(&t).get(&format!("{ETC}/web.socket")).unwrap(),
            "/dev/null"
        );

        // An alias or a file in the way: systemctl refuses without --force.
        enable(&mut t, &names(&["web"]), EPOCH).unwrap();
        let e = mask(&mut t, &names(&["www.service"]), EPOCH).unwrap_err();
        assert!(
            e.to_string()
                .contains("as a symlink to /usr/lib/systemd/system/web.service"),
            "{e}"
        );
        write(&mut t, &format!("{ETC}/local.service"), "[Service]\n");
        let e = mask(&mut t, &names(&["local"]), EPOCH).unwrap_err();
        assert!(
            matches!(e, ServiceError::Exists { existing: None, .. }),
            "{e}"
        );
    }

    #[test]
    fn alias_conflicts_and_dangling_aliases() {
        let (_d, mut t) = tree();
        web_units(&mut t);
        unit(&mut t, "other.service", "[Service]\n");
        symlink(
            &mut t,
            &format!("{ETC}/www.service"),
            "/usr/lib/systemd/system/other.service",
        );
        let e = enable(&mut t, &names(&["web"]), EPOCH).unwrap_err();
        assert!(matches!(e, ServiceError::Exists { .. }), "{e}");
        assert_eq!(
            links(&t)[&format!("{ETC}/www.service")],
            "/usr/lib/systemd/system/other.service"
        );
        // Once the symlink in the way dangles, it is replaced.
        t.remove(&format!("{LIB}/other.service")).unwrap();
        let r = enable(&mut t, &names(&["web"]), EPOCH).unwrap();
        assert_eq!(r.removed, [format!("{ETC}/www.service")]);
        assert_eq!(
            links(&t)[&format!("{ETC}/www.service")],
            "/usr/lib/systemd/system/web.service"
        );
        // Enabling through the alias systemctl made is refused, as systemctl does.
        let e = enable(&mut t, &names(&["www"]), EPOCH).unwrap_err();
        assert!(e.to_string().contains("linked unit file"), "{e}");
    }

    #[test]
    fn vendor_aliases_lead_to_their_unit() {
        let (_d, mut t) = tree();
        unit(
            &mut t,
            "dbus-broker.service",
            "[Install]\nAlias=dbus.service\nWantedBy=multi-user.target\n",
        );
        symlink(
            &mut t,
            &format!("{LIB}/dbus.service"),
            "dbus-broker.service",
        );
        let r = enable(&mut t, &names(&["dbus"]), EPOCH).unwrap();
        assert_eq!(r.enabled, ["dbus-broker.service"]);
        assert_eq!(
            links(&t),
            expect(&[
                (
                    "dbus.service",
                    "/usr/lib/systemd/system/dbus-broker.service"
                ),
                (
                    "multi-user.target.wants/dbus-broker.service",
                    "/usr/lib/systemd/system/dbus-broker.service"
                ),
            ])
        );
        symlink(&mut t, &format!("{LIB}/gone.service"), "nothere.service");
        let e = enable(&mut t, &names(&["gone"]), EPOCH).unwrap_err();
        assert!(matches!(e, ServiceError::Dangling { .. }), "{e}");
    }

    #[test]
    fn also_loops_end() {
        let (_d, mut t) = tree();
        unit(
            &mut t,
            "a.service",
            "[Install]\nAlso=b.service\nWantedBy=x.target\n",
        );
        unit(&mut t, "b.service", "[Install]\nAlso=a.service c.service\n");
        let r = enable(&mut t, &names(&["a"]), EPOCH).unwrap();
        assert_eq!(r.enabled, ["a.service"]);
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("auxiliary unit c.service")),
            "{:?}",
            r.warnings
        );
        // b has only Also=, which counts as installation config.
        let r = enable(&mut t, &names(&["b"]), EPOCH).unwrap();
        assert!(
            !r.warnings
                .iter()
                .any(|w| w.contains("no installation config"))
        );
    }

    #[test]
    fn install_section_syntax_and_drop_ins() {
        let (_d, mut t) = tree();
        unit(
            &mut t,
            "s.service",
            "[Unit]\nWantedBy=ignored.target\n[Install]\n# WantedBy=commented.target\n\
             WantedBy=gone.target\nWantedBy=\nWantedBy=a.target \\\n; comment inside\n  \
             \"b.target\" \\\n  c.target\nFrobnicate=1\nX-Custom=1\n[X-Vendor]\nWantedBy=no.target\n",
        );
        write(
            &mut t,
            &format!("{LIB}/s.service.d/10-more.conf"),
            "[Install]\nRequiredBy=d.target\n",
        );
        // Same name higher up hides it; a /dev/null link masks a drop-in.
        write(
            &mut t,
            &format!("{ETC}/s.service.d/20-x.conf"),
            "[Install]\nWantedBy=e.target\n",
        );
        write(
            &mut t,
            &format!("{LIB}/s.service.d/20-x.conf"),
            "[Install]\nWantedBy=hidden.target\n",
        );
        symlink(
            &mut t,
            &format!("{ETC}/s.service.d/30-null.conf"),
            "/dev/null",
        );
        write(
            &mut t,
            &format!("{LIB}/s.service.d/30-null.conf"),
            "[Install]\nWantedBy=hidden.target\n",
        );
        let r = enable(&mut t, &names(&["s"]), EPOCH).unwrap();
        let got: BTreeSet<String> = links(&t)
            .keys()
            .filter(|k| k.ends_with("/s.service"))
            .map(|k| k.trim_start_matches("/etc/systemd/system/").to_string())
            .collect();
        let want: BTreeSet<String> = [
            "a.target.wants/s.service",
            "b.target.wants/s.service",
            "c.target.wants/s.service",
            "d.target.requires/s.service",
            "e.target.wants/s.service",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(got, want);
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains(":11: unknown key Frobnicate=")),
            "{:?}",
            r.warnings
        );

        unit(&mut t, "broken.service", "[Install\nWantedBy=x.target\n");
        let e = enable(&mut t, &names(&["broken"]), EPOCH).unwrap_err();
        assert!(
            matches!(&e, ServiceError::BadUnit { line: 1, file, .. } if file == "/usr/lib/systemd/system/broken.service"),
            "{e}"
        );
        assert!(e.to_string().contains("invalid section header"));
    }

    fn preset_units(t: &mut Tree) {
        for name in ["a", "bar", "cat", "dog", "eel"] {
            unit(
                t,
                &format!("{name}.service"),
                "[Install]\nWantedBy=multi-user.target\n",
            );
        }
        unit(t, "static.service", "[Service]\nExecStart=/bin/true\n");
        unit(t, "t@.service", "[Install]\nWantedBy=multi-user.target\n");
        unit(
            t,
            "u@.service",
            "[Install]\nWantedBy=multi-user.target\nDefaultInstance=x\n",
        );
        unit(t, "v@.service", "[Install]\nWantedBy=multi-user.target\n");
        write(
            t,
            "/usr/lib/systemd/system-preset/10-x.preset",
            "enable a.service\n",
        );
        write(
            t,
            "/etc/systemd/system-preset/10-x.preset",
            "# local\ndisable a.service\n",
        );
        write(
            t,
            "/usr/lib/systemd/system-preset/90-default.preset",
            "enable b*.service\nenable v@.service one two\ndisable c*\nbogus line\n",
        );
        write(
            t,
            "/usr/local/lib/systemd/system-preset/50-mid.preset",
            "disable dog.service\n",
        );
        write(
            t,
            "/run/systemd/system-preset/95-late.preset",
            "disable bar.service\nignore eel.service\n",
        );
    }

    #[test]
    fn presets_override_by_file_name_glob_and_default_to_enable() {
        let (_d, mut t) = tree();
        preset_units(&mut t);
        // Already enabled units the presets disable lose their links.
        symlink(
            &mut t,
            &format!("{ETC}/multi-user.target.wants/a.service"),
            "/usr/lib/systemd/system/a.service",
        );
        symlink(
            &mut t,
            &format!("{ETC}/multi-user.target.wants/cat.service"),
            "/usr/lib/systemd/system/cat.service",
        );
        let r = apply_presets(&mut t, EPOCH).unwrap();
        let wants = |n: &str| format!("multi-user.target.wants/{n}");
        let lib = |n: &str| format!("/usr/lib/systemd/system/{n}");
        let want: BTreeMap<String, String> = [
            (wants("bar.service"), lib("bar.service")),
            (wants("u@x.service"), lib("u@.service")),
            (wants("v@one.service"), lib("v@.service")),
            (wants("v@two.service"), lib("v@.service")),
        ]
        .into_iter()
        .map(|(p, t)| (format!("{ETC}/{p}"), t))
        .collect();
        // eel.service: `ignore` leaves it as it is (not enabled).
        assert_eq!(links(&t), want);
        assert_eq!(
            r.enabled,
            [
                "bar.service",
                "u@x.service",
                "v@one.service",
                "v@two.service"
            ]
        );
        assert_eq!(r.disabled, ["a.service", "cat.service", "dog.service"]);
        assert_eq!(r.removed.len(), 2);
        assert!(
            r.warnings.iter().any(|w| w.contains("90-default.preset:4")),
            "{:?}",
            r.warnings
        );

        // Without preset files everything with [Install] is enabled; templates without
        // DefaultInstance are skipped quietly.
        let (_d2, mut t2) = tree();
        preset_units(&mut t2);
        for f in [
            "/usr/lib/systemd/system-preset/10-x.preset",
            "/etc/systemd/system-preset/10-x.preset",
            "/usr/lib/systemd/system-preset/90-default.preset",
            "/usr/local/lib/systemd/system-preset/50-mid.preset",
            "/run/systemd/system-preset/95-late.preset",
        ] {
            t2.remove(f).unwrap();
        }
        let r = apply_presets(&mut t2, EPOCH).unwrap();
        assert_eq!(
            r.enabled,
            [
                "a.service",
                "bar.service",
                "cat.service",
                "dog.service",
                "eel.service",
                "u@x.service"
            ]
        );
        assert!(
            !links(&t2)
                .keys()
                .any(|k| k.contains("t@") || k.contains("v@"))
        );
        assert!(
            r.warnings
                .iter()
                .all(|w| w.contains("non-existent unit multi-user.target")),
            "{:?}",
            r.warnings
        );
    }

    #[test]
    fn merged_usr_is_searched_once() {
        let (_d, mut t) = tree();
        t.mkdir_p(LIB, 0o755, 0).unwrap();
        symlink(&mut t, "/lib", "usr/lib");
        // Written through /lib, lands in /usr/lib.
        write(
            &mut t,
            "/lib/systemd/system/m.service",
            "[Install]\nWantedBy=multi-user.target\nAlias=mm.service\n",
        );
        unit(&mut t, "multi-user.target", "[Unit]\n");
        let install = Install::new(&mut t, EPOCH);
        assert_eq!(
            install.search,
            [
                "/etc/systemd/system",
                "/run/systemd/system",
                "/usr/local/lib/systemd/system",
                LIB
            ]
        );
        let r = apply_presets(&mut t, EPOCH).unwrap();
        assert_eq!(r.enabled, ["m.service"]);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        assert_eq!(
            links(&t),
            expect(&[
                ("mm.service", "/usr/lib/systemd/system/m.service"),
                (
                    "multi-user.target.wants/m.service",
                    "/usr/lib/systemd/system/m.service"
                ),
            ])
        );
        // Links made through the /lib name are the same thing.
        let (_d2, mut t2) = tree();
        t2.mkdir_p(LIB, 0o755, 0).unwrap();
        symlink(&mut t2, "/lib", "usr/lib");
        unit(
            &mut t2,
            "m.service",
            "[Install]\nWantedBy=multi-user.target\n",
        );
        symlink(
            &mut t2,
            &format!("{ETC}/multi-user.target.wants/m.service"),
            "/lib/systemd/system/m.service",
        );
        let r = enable(&mut t2, &names(&["m"]), EPOCH).unwrap();
        assert!(r.links.is_empty() && r.removed.is_empty(), "{r:?}");
    }

    /// A tree for the comparison with systemctl, the same one on each call.
    fn comparison_tree(t: &mut Tree) {
        web_units(t);
        unit(t, "multi-user.target", "[Unit]\nDescription=Multi-User\n");
        unit(
            t,
            "web.socket",
            "[Socket]\nListenStream=80\n[Install]\nWantedBy=sockets.target\nRequiredBy=web.service\n",
        );
        unit(
            t,
            "getty@.service",
            "[Install]\nWantedBy=getty.target\nDefaultInstance=tty1\nAlias=console@.service\n",
        );
        // No UpheldBy=: systemd learnt it in [Install] after 252, which Debian 12 has.
        unit(t, "watch.service", "[Install]\nWantedBy=%p-extra.target\n");
        write(
            t,
            &format!("{ETC}/watch.service.d/10-more.conf"),
            "[Install]\nRequiredBy=more.target\n",
        );
        unit(t, "helper.service", "[Unit]\nDescription=static\n");
    }

    fn disk_links(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in rd {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_symlink() {
                let image = format!("/{}", path.strip_prefix(root).unwrap().display());
                let target = std::fs::read_link(&path).unwrap().display().to_string();
                out.insert(image, target);
            } else if meta.is_dir() {
                disk_links(root, &path, out);
            }
        }
    }

    #[test]
    fn matches_systemctl_enable() {
        if !systemctl_available() {
            println!("systemctl is not installed here; skipping the comparison");
            return;
        }
        let units = names(&[
            "web",
            "getty@.service",
            "getty@ttyS0.service",
            "watch.service",
        ]);
        let (_d, mut ours) = tree();
        comparison_tree(&mut ours);
        let r = enable(&mut ours, &units, EPOCH).unwrap();
        assert!(!r.links.is_empty());

        let (d2, mut theirs) = tree();
        comparison_tree(&mut theirs);
        let root = d2.path().join("root");
        let out = std::process::Command::new("systemctl")
            .arg(format!("--root={}", root.display()))
            .arg("enable")
            .args(&units)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut disk = BTreeMap::new();
        disk_links(&root, &root.join("etc"), &mut disk);
        assert_eq!(links(&ours), disk);

        // And disabling again.
        disable(&mut ours, &names(&["web", "watch"]), EPOCH).unwrap();
        let out = std::process::Command::new("systemctl")
            .arg(format!("--root={}", root.display()))
            .args(["disable", "web", "watch"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut disk = BTreeMap::new();
        disk_links(&root, &root.join("etc"), &mut disk);
        assert_eq!(links(&ours), disk);
    }

    #[test]
    fn matches_systemctl_preset_all() {
        if !systemctl_available() {
            println!("systemctl is not installed here; skipping the comparison");
            return;
        }
        let build = |t: &mut Tree| {
            comparison_tree(t);
            preset_units(t);
            // `ignore` and UpheldBy= are newer than Debian 12's systemd 252.
            write(
                t,
                "/run/systemd/system-preset/95-late.preset",
                "disable bar.service\n",
            );
            unit(
                t,
                "dbus-broker.service",
                "[Install]\nAlias=dbus.service\nWantedBy=multi-user.target\n",
            );
            symlink(t, &format!("{LIB}/dbus.service"), "dbus-broker.service");
            unit(
                t,
                "sshd.socket",
                "[Install]\nWantedBy=sockets.target\nAlso=sshd.service\n",
            );
            unit(t, "sshd.service", "[Install]\nWantedBy=multi-user.target\n");
            write(
                t,
                "/etc/systemd/system-preset/20-ssh.preset",
                "disable sshd.*\n",
            );
            symlink(
                t,
                &format!("{ETC}/multi-user.target.wants/cat.service"),
                "/usr/lib/systemd/system/cat.service",
            );
            symlink(t, &format!("{ETC}/masked.service"), "/dev/null");
            unit(
                t,
                "masked.service",
                "[Install]\nWantedBy=multi-user.target\n",
            );
        };
        let (_d, mut ours) = tree();
        build(&mut ours);
        let r = apply_presets(&mut ours, EPOCH).unwrap();
        assert!(r.links.len() >= 15 && r.removed.len() == 1, "{r:?}");
        let (d2, mut theirs) = tree();
        build(&mut theirs);
        let root = d2.path().join("root");
        let out = std::process::Command::new("systemctl")
            .arg(format!("--root={}", root.display()))
            .arg("preset-all")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut disk = BTreeMap::new();
        disk_links(&root, &root.join("etc"), &mut disk);
        assert_eq!(links(&ours), disk);
    }

    fn systemctl_available() -> bool {
        std::process::Command::new("sh")
            .args(["-c", "command -v systemctl"])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    #[test]
    fn specifiers_describe_the_image_not_the_host() {
        let (_d, mut t) = tree();
        write(
            &mut t,
            "/usr/lib/os-release",
            "ID=old\nID=\"azurelinux\"\nVERSION_ID='4.0'\n",
        );
        unit(
            &mut t,
            "os.service",
            "[Install]\nWantedBy=%o-%w%W.target %u-%U.target\n",
        );
        enable(&mut t, &names(&["os"]), EPOCH).unwrap();
        assert!(links(&t).contains_key(&format!("{ETC}/azurelinux-4.0.target.wants/os.service")));
        assert!(links(&t).contains_key(&format!("{ETC}/root-0.target.wants/os.service")));
        unit(&mut t, "host.service", "[Install]\nWantedBy=%H.target\n");
        let e = enable(&mut t, &names(&["host"]), EPOCH).unwrap_err();
        assert!(e.to_string().contains("machine running the build"), "{e}");
        unit(&mut t, "mid.service", "[Install]\nWantedBy=%m.target\n");
        write(&mut t, "/etc/machine-id", "uninitialized\n");
        assert!(enable(&mut t, &names(&["mid"]), EPOCH).is_err());
        write(
            &mut t,
            "/etc/machine-id",
            "0123456789ABCDEF0123456789abcdef\n",
        );
        enable(&mut t, &names(&["mid"]), EPOCH).unwrap();
        assert!(links(&t).contains_key(&format!(
            "{ETC}/0123456789abcdef0123456789abcdef.target.wants/mid.service"
        )));
    }

    #[test]
    fn names_and_words() {
        assert_eq!(classify("a.service"), Some(NameKind::Plain));
        assert_eq!(classify("a@.service"), Some(NameKind::Template));
        assert_eq!(classify("a@b@c.service"), Some(NameKind::Instance));
        assert_eq!(classify("@a.service"), None);
        assert_eq!(classify("a.wants"), None);
        assert_eq!(mangle("sshd").unwrap(), "sshd.service");
        assert_eq!(mangle("x.target").unwrap(), "x.target");
        assert_eq!(mangle("my.app").unwrap(), "my.app.service");
        assert!(mangle("ssh*").is_err());
        assert_eq!(instance("a@b@c.service"), "b@c");
        assert_eq!(template_of("a@b.service").unwrap(), "a@.service");
        assert_eq!(replace_instance("a@.socket", "x"), "a@x.socket");
        assert_eq!(
            split_words(r#"a "b c" d\ e 'f'"#, true, true).unwrap(),
            ["a", "b c", "d\\ e", "f"]
        );
        assert!(split_words("a \"b", true, true).is_err());
        assert_eq!(first_word("enable  x", "enable"), Some("x"));
        assert_eq!(first_word("enablex", "enable"), None);
        assert!(fnmatch("foo.*", "foo.service") && !fnmatch("foo.*", "bar.service"));
        assert!(fnmatch("[!a]*", "b.service") && !fnmatch("\\*", "x"));
    }
}
