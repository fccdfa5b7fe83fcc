//! Semantic checks of a typed definition (names, ids, paths, disk layouts, outputs), each problem
//! located through the merged tree at the key the user wrote.

use std::collections::HashMap;
use std::path::Path;

use super::error::Problem;
use super::node::{Node, PathSeg};
use super::types::*;
use super::values::{Arch, PartSize, PartitionType, Size};
use crate::path;

/// Linux login names as useradd accepts them by default (shadow-utils' is_valid_user_name),
/// at most 32 characters.
pub fn is_valid_account_name(s: &str) -> bool {
    let body = s.strip_suffix('$').unwrap_or(s);
    let mut chars = body.chars();
    !s.is_empty()
        && s.len() <= 32
        && matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn is_word(s: &str, extra: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

/// An absolute, clean path: `/a/b`, no `.`/`..` components, no `//`, no trailing `/`.
fn clean_absolute(p: &str) -> Result<(), &'static str> {
    if !p.starts_with('/') {
        return Err("must be an absolute path (starting with `/`)");
    }
    if p.contains('\0') || p.contains('\n') {
        return Err("must not contain NUL or newline characters");
    }
    if p.len() > 1 && p.ends_with('/') {
        return Err("must not end with `/`");
    }
    if p.contains("//") {
        return Err("must not contain `//`");
    }
    if p.split('/').any(|c| c == "." || c == "..") {
        return Err("must not contain `.` or `..` components");
    }
    Ok(())
}

fn is_hostname(h: &str) -> bool {
    h.len() <= 64
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

const UNIT_TYPES: &[&str] = &[
    "service",
    "socket",
    "target",
    "timer",
    "path",
    "mount",
    "automount",
    "swap",
    "slice",
    "scope",
    "device",
];

const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// Whether an authorized_keys line has a key type followed by base64 key data (options such as
/// `from="…"` may come first).
fn is_ssh_public_key(line: &str) -> bool {
    let fields: Vec<&str> = line.split_whitespace().collect();
    fields.windows(2).any(|w| {
        SSH_KEY_TYPES.contains(&w[0])
            && w[1].len() >= 16
            && w[1]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '=')
    })
}

/// crypt(3) hashes: `$id$…$…` (yescrypt, SHA-512, SHA-256, bcrypt, …).
pub(crate) fn is_crypt_hash(h: &str) -> bool {
    let parts: Vec<&str> = h.split('$').collect();
    h.starts_with('$')
        && parts.len() >= 4
        && matches!(
            parts[1],
            "1" | "2a" | "2b" | "2y" | "5" | "6" | "7" | "y" | "gy"
        )
        && parts.last().is_some_and(|s| !s.is_empty())
}

/// A package install spec: `name`, `name.arch`, `provide(x)`, `/file/path`, `@group`, or a
/// versioned `name >= 1.2`.
fn package_spec_problem(spec: &str) -> Option<&'static str> {
    let tokens: Vec<&str> = spec.split_whitespace().collect();
    let bad_char = |t: &str| {
        t.chars()
            .any(|c| c.is_control() || c == ',' || c == '\'' || c == '"')
    };
    match tokens.as_slice() {
        [] => Some("is empty"),
        [one] if one.starts_with('-') => Some(
            "starts with `-` (to leave a package out, use `packages.remove` or `packages.exclude`)",
        ),
        [one] if one.starts_with('(') => Some("is a rich dependency; list the packages themselves"),
        [one] if one.starts_with('@') && !is_word(&one[1..], "_.-") => {
            Some("is not a group id (`@core`, `@standard`)")
        }
        [one] if bad_char(one) => {
            Some("contains a comma, quote or control character (list one package per item)")
        }
        [_] => None,
        [name, op, evr]
            if ["=", "<", ">", "<=", ">="].contains(op)
                && !bad_char(name)
                && !bad_char(evr)
                && !name.starts_with('@') =>
        {
            None
        }
        _ => Some("is not a package name, provide, path or `name OP version`"),
    }
}

struct Checker<'a> {
    tree: &'a Node,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn error(&mut self, path: Vec<PathSeg>, message: impl Into<String>, help: Option<String>) {
        self.push(Problem::error(message), path, help);
    }

    fn warn(&mut self, path: Vec<PathSeg>, message: impl Into<String>, help: Option<String>) {
        self.push(Problem::warning(message), path, help);
    }

    fn push(&mut self, mut p: Problem, path: Vec<PathSeg>, help: Option<String>) {
        let (loc, _) = self.tree.locate(&path);
        p = p.at(loc.clone()).at_path(&path);
        if let Some(h) = help {
            p = p.help(h);
        }
        self.problems.push(p);
    }

    /// Where something was written, for "first defined at" notes.
    fn where_is(&self, path: Vec<PathSeg>) -> String {
        let (loc, _) = self.tree.locate(&path);
        format!("{}:{}", loc.file.path.display(), loc.line)
    }
}

/// Checks a definition for one architecture. Returns the problems and whether it is usable
/// (no errors).
pub fn check(def: &Definition, tree: &Node, arch: Arch) -> (Vec<Problem>, bool) {
    let mut c = Checker {
        tree,
        problems: Vec::new(),
    };
    identity(&mut c, def);
    repositories(&mut c, def);
    packages(&mut c, def);
    system(&mut c, &def.system);
    if let Some(disk) = &def.outputs.disk {
        disk_output(&mut c, disk, arch);
    }
    if let Some(oci) = &def.outputs.oci {
        oci_output(&mut c, oci, &def.architectures);
    }
    if let Some(wsl) = &def.outputs.wsl {
        wsl_output(&mut c, wsl);
    }
    let ok = !c.problems.iter().any(Problem::is_error);
    (c.problems, ok)
}

fn identity(c: &mut Checker, def: &Definition) {
    let n = &def.name;
    if n.len() > 64
        || !n.starts_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
        || !is_word(n, "._-")
        || n.chars().any(|ch| ch.is_ascii_uppercase())
    {
        c.error(
            path!["name"],
            format!("`{n}` is not a valid image name"),
            Some("use lower-case letters, digits, `.`, `_` and `-`, starting with a letter or digit (at most 64 characters)".into()),
        );
    }
    if let Some(v) = &def.version
        && (v.is_empty() || v.len() > 128 || !is_word(v, "._+~^-"))
    {
        c.error(
            path!["version"],
            format!("`{v}` is not a valid version"),
            Some(
                "use letters, digits and `.`, `_`, `+`, `~`, `^`, `-` (e.g. \"4.0.20261130\")"
                    .into(),
            ),
        );
    }
    if !is_word(&def.releasever, "._-") {
        c.error(
            path!["releasever"],
            format!("`{}` is not a valid release version", def.releasever),
            Some("use something like \"4.0\"".into()),
        );
    }
    let mut seen = Vec::new();
    for (i, a) in def.architectures.iter().enumerate() {
        if seen.contains(a) {
            c.error(
                path!["architectures", i],
                format!("architecture `{a}` is listed twice"),
                None,
            );
        }
        seen.push(*a);
    }
}

fn url_scheme(url: &str) -> Option<&str> {
    url.split_once("://").map(|(s, _)| s)
}

fn repositories(c: &mut Checker, def: &Definition) {
    let mut ids: HashMap<&str, usize> = HashMap::new();
    for (i, r) in def.repositories.iter().enumerate() {
        if !is_word(&r.id, "_.:-") {
            c.error(
                path!["repositories", i, "id"],
                format!("`{}` is not a valid repository id", r.id),
                Some("use letters, digits, `_`, `.`, `:` and `-`".into()),
            );
        }
        if let Some(first) = ids.insert(&r.id, i) {
            let at = c.where_is(path!["repositories", first, "id"]);
            c.error(
                path!["repositories", i, "id"],
                format!("repository id `{}` is used twice (first at {at})", r.id),
                Some("give each repository its own id".into()),
            );
        }
        if r.baseurl.is_empty() && r.metalink.is_none() && r.mirrorlist.is_none() {
            c.error(
                path!["repositories", i],
                format!(
                    "repository `{}` has no `baseurl`, `metalink` or `mirrorlist`",
                    r.id
                ),
                Some("add `baseurl: [https://…]` (or a local path)".into()),
            );
        }
        for (j, u) in r.baseurl.iter().enumerate() {
            match url_scheme(u) {
                Some("http" | "https") => {}
                Some("file") => {
                    let local = &u["file://".len()..];
                    if r.enabled && !Path::new(local).is_dir() {
                        c.warn(
                            path!["repositories", i, "baseurl", j],
                            format!("local repository {local} does not exist (yet)"),
                            None,
                        );
                    }
                }
                _ => c.error(
                    path!["repositories", i, "baseurl", j],
                    format!("`{u}` is not an http, https or file URL"),
                    None,
                ),
            }
        }
        for (key, value) in [("metalink", &r.metalink), ("mirrorlist", &r.mirrorlist)] {
            if let Some(u) = value
                && !matches!(url_scheme(u), Some("http" | "https"))
            {
                c.error(
                    path!["repositories", i, key],
                    format!("`{u}` is not an http or https URL"),
                    None,
                );
            }
        }
        for (j, k) in r.gpgkey.iter().enumerate() {
            match url_scheme(k) {
                Some("http" | "https") => {}
                Some("file") => {
                    let local = &k["file://".len()..];
                    // Keys are read on the build host; a definition may be validated elsewhere.
                    if r.enabled && !Path::new(local).is_file() {
                        c.warn(
                            path!["repositories", i, "gpgkey", j],
                            format!("key file {local} does not exist on this machine; building will need it"),
                            Some("local key paths are relative to the file that names them".into()),
                        );
                    }
                }
                _ => c.error(
                    path!["repositories", i, "gpgkey", j],
                    format!("`{k}` is not an http, https or file URL"),
                    None,
                ),
            }
        }
        if r.gpgcheck && r.gpgkey.is_empty() {
            c.error(
                path!["repositories", i],
                format!("repository `{}` checks signatures but names no `gpgkey`", r.id),
                Some("add the repository's public key under `gpgkey`, or set `gpgcheck: false` to build from unsigned packages".into()),
            );
        }
        if !r.gpgcheck && r.enabled {
            c.warn(
                path!["repositories", i, "gpgcheck"],
                format!("package signatures from `{}` will not be checked", r.id),
                None,
            );
        }
        if !(1..=99).contains(&r.priority) {
            c.error(
                path!["repositories", i, "priority"],
                format!("priority {} is out of range", r.priority),
                Some("priorities go from 1 (highest) to 99 (the default)".into()),
            );
        }
        for (j, e) in r.excludes.iter().enumerate() {
            if e.trim().is_empty() || e.contains(char::is_whitespace) {
                c.error(
                    path!["repositories", i, "excludes", j],
                    format!("`{e}` is not a package name glob"),
                    None,
                );
            }
        }
    }
    if !def.packages.install.is_empty() && !def.repositories.iter().any(|r| r.enabled) {
        c.error(
            path!["packages", "install"],
            "packages are listed, but no repository is enabled to install them from",
            Some("add a repository under `repositories` or `repo-files`".into()),
        );
    }
}

fn packages(c: &mut Checker, def: &Definition) {
    let p = &def.packages;
    for (i, spec) in p.install.iter().enumerate() {
        if let Some(why) = package_spec_problem(spec) {
            c.error(
                path!["packages", "install", i],
                format!("`{spec}` {why}"),
                None,
            );
            continue;
        }
        let name = spec.split_whitespace().next().unwrap_or_default();
        if let Some(j) = p.remove.iter().position(|r| r == name) {
            let at = c.where_is(path!["packages", "remove", j]);
            c.error(
                path!["packages", "install", i],
                format!("`{name}` is both installed and removed (removed at {at})"),
                Some("keep it in one list".into()),
            );
        }
        if let Some(g) = p.exclude.iter().find(|g| crate::glob::matches(g, name)) {
            c.error(
                path!["packages", "install", i],
                format!("`{name}` is installed but also excluded by `{g}`"),
                Some(
                    "an excluded package can never be installed; narrow the exclude pattern".into(),
                ),
            );
        }
    }
    for (key, list) in [("remove", &p.remove), ("exclude", &p.exclude)] {
        for (i, name) in list.iter().enumerate() {
            if name.trim().is_empty()
                || name.contains(char::is_whitespace)
                || name.starts_with(['@', '/', '-'])
            {
                c.error(
                    path!["packages", key, i],
                    format!(
                        "`{name}` is not a package name{}",
                        if key == "exclude" { " or glob" } else { "" }
                    ),
                    None,
                );
            }
        }
    }
    for (i, l) in p.languages.iter().enumerate() {
        let (base, _) = l.split_once('.').unwrap_or((l, ""));
        let lang = base.split(['_', '@']).next().unwrap_or_default();
        if !(l == "C"
            || l == "POSIX"
            || (2..=3).contains(&lang.len())
                && lang.chars().all(|c| c.is_ascii_lowercase())
                && is_word(l, "_.@-"))
        {
            c.error(
                path!["packages", "languages", i],
                format!("`{l}` is not a language code"),
                Some("use codes like `en`, `en_US` or `de_DE`".into()),
            );
        }
    }
}

fn system(c: &mut Checker, s: &System) {
    if let Some(h) = &s.hostname
        && !is_hostname(h)
    {
        c.error(
                path!["system", "hostname"],
                format!("`{h}` is not a valid hostname"),
                Some("use letters, digits and `-` in dot-separated labels of 1–63 characters, at most 64 in all".into()),
            );
    }
    if let Some(l) = &s.locale {
        let lang = l.split(['_', '.', '@']).next().unwrap_or_default();
        if !(is_word(l, "_.@-")
            && (l == "C" || l == "POSIX" || l.starts_with("C.") || (2..=3).contains(&lang.len())))
        {
            c.error(
                path!["system", "locale"],
                format!("`{l}` is not a locale"),
                Some("use e.g. `C.UTF-8` or `en_US.UTF-8`".into()),
            );
        }
    }
    if let Some(k) = &s.keymap
        && !is_word(k, "_.-")
    {
        c.error(
            path!["system", "keymap"],
            format!("`{k}` is not a keymap name"),
            Some("use e.g. `us` or `de-nodeadkeys`".into()),
        );
    }
    if let Some(tz) = &s.timezone
        && tz
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == ".." || !is_word(p, "_+-"))
    {
        c.error(
            path!["system", "timezone"],
            format!("`{tz}` is not a time zone name"),
            Some("use a tz database name such as `UTC` or `Europe/Berlin`".into()),
        );
    }
    accounts(c, s);
    services(c, &s.services);
    files(c, s);
    for (i, arg) in s.kernel_cmdline.iter().enumerate() {
        let unquoted: String = arg.split('"').step_by(2).collect();
        if arg.trim().is_empty()
            || unquoted.contains(char::is_whitespace)
            || arg.matches('"').count() % 2 == 1
        {
            c.error(
                path!["system", "kernel-cmdline", i],
                format!("`{arg}` is not one kernel argument"),
                Some(
                    "give each argument as its own item: [console=ttyS0, earlyprintk=ttyS0]".into(),
                ),
            );
        }
    }
    for (kind, list) in [
        ("post-install", &s.scripts.post_install),
        ("finalize", &s.scripts.finalize),
    ] {
        for (i, script) in list.iter().enumerate() {
            let p = path!["system", "scripts", kind, i];
            source_or_content(
                c,
                p.clone(),
                script.content.is_some(),
                script.source.as_deref(),
            );
            if let Some(interp) = &script.interpreter
                && clean_absolute(interp).is_err()
            {
                c.error(
                    [p, path!["interpreter"]].concat(),
                    format!("interpreter `{interp}` must be an absolute path in the image"),
                    Some("e.g. /bin/sh or /usr/bin/python3".into()),
                );
            }
        }
    }
}

/// Exactly one of `content` and `source`; a source must be a readable file.
fn source_or_content(c: &mut Checker, p: Vec<PathSeg>, has_content: bool, source: Option<&str>) {
    match (has_content, source) {
        (true, Some(_)) => c.error(p, "give either `content` or `source`, not both", None),
        (false, None) => c.error(
            p,
            "needs `content` (inline text) or `source` (a file to copy)",
            None,
        ),
        (false, Some(src)) => {
            if !Path::new(src).is_file() {
                c.error(
                    [p, path!["source"]].concat(),
                    format!("source file {src} does not exist"),
                    Some(
                        "`source` paths are relative to the definition file that names them".into(),
                    ),
                );
            }
        }
        (true, None) => {}
    }
}

fn id_problem(id: u32) -> Option<&'static str> {
    match id {
        u32::MAX => Some("is -1 as an unsigned id, which means \"no id\""),
        65535 => Some("is -1 as a 16-bit id, which older tools treat as \"no id\""),
        _ => None,
    }
}

fn accounts(c: &mut Checker, s: &System) {
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut gids: HashMap<u32, usize> = HashMap::new();
    for (i, g) in s.groups.iter().enumerate() {
        if !is_valid_account_name(&g.name) {
            c.error(path!["system", "groups", i, "name"], format!("`{}` is not a valid group name", g.name), Some("use lower-case letters, digits, `_` and `-`, starting with a letter or `_` (at most 32 characters)".into()));
        }
        if let Some(first) = names.insert(&g.name, i) {
            let at = c.where_is(path!["system", "groups", first]);
            c.error(
                path!["system", "groups", i, "name"],
                format!("group `{}` is defined twice (first at {at})", g.name),
                None,
            );
        }
        if let Some(gid) = g.gid {
            if let Some(why) = id_problem(gid) {
                c.error(
                    path!["system", "groups", i, "gid"],
                    format!("gid {gid} {why}"),
                    None,
                );
            }
            if let Some(first) = gids.insert(gid, i) {
                let other = &s.groups[first].name;
                c.error(
                    path!["system", "groups", i, "gid"],
                    format!("gid {gid} is already used by group `{other}`"),
                    Some("give each group its own gid".into()),
                );
            }
        }
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut uids: HashMap<u32, usize> = HashMap::new();
    for (i, u) in s.users.iter().enumerate() {
        let p = |k: &str| path!["system", "users", i, k];
        if !is_valid_account_name(&u.name) {
            c.error(p("name"), format!("`{}` is not a valid user name", u.name), Some("use lower-case letters, digits, `_` and `-`, starting with a letter or `_` (at most 32 characters)".into()));
        }
        if let Some(first) = names.insert(&u.name, i) {
            let at = c.where_is(path!["system", "users", first]);
            c.error(
                p("name"),
                format!("user `{}` is defined twice (first at {at})", u.name),
                None,
            );
        }
        if let Some(uid) = u.uid {
            if let Some(why) = id_problem(uid) {
                c.error(p("uid"), format!("uid {uid} {why}"), None);
            }
            if u.name == "root" && uid != 0 {
                c.error(p("uid"), "root's uid is 0", None);
            } else if u.name != "root" && uid == 0 {
                c.error(
                    p("uid"),
                    format!("user `{}` would get uid 0 and be a second root", u.name),
                    Some("give it another uid; to configure root, use `name: root`".into()),
                );
            }
            if let Some(first) = uids.insert(uid, i) {
                let other = &s.users[first].name;
                c.error(
                    p("uid"),
                    format!("uid {uid} is already used by user `{other}`"),
                    Some("give each user its own uid".into()),
                );
            }
        }
        if let Some(gid) = u.gid
            && let Some(why) = id_problem(gid)
        {
            c.error(p("gid"), format!("gid {gid} {why}"), None);
        }
        for (j, g) in u.groups.iter().enumerate() {
            if !is_valid_account_name(g) {
                c.error(
                    path!["system", "users", i, "groups", j],
                    format!("`{g}` is not a valid group name"),
                    None,
                );
            }
        }
        for (key, value) in [("home", &u.home), ("shell", &u.shell)] {
            if let Some(v) = value
                && let Err(why) = clean_absolute(v)
            {
                c.error(p(key), format!("{key} `{v}` {why}"), None);
            }
        }
        if let Some(h) = &u.password_hash
            && !is_crypt_hash(h)
        {
            c.error(
                    p("password-hash"),
                    "this is not a crypt(3) password hash",
                    Some("never put a plain password here: make a hash with `openssl passwd -6` or `mkpasswd -m yescrypt`".into()),
                );
        }
        if u.password_locked == Some(false) && u.password_hash.is_none() {
            c.error(
                p("password-locked"),
                format!("user `{}` would have no password at all: anyone could log in on the console", u.name),
                Some("give a `password-hash`, or leave the password locked and use `ssh-authorized-keys`".into()),
            );
        }
        for (j, key) in u.ssh_authorized_keys.iter().enumerate() {
            if !is_ssh_public_key(key) {
                c.error(
                    path!["system", "users", i, "ssh-authorized-keys", j],
                    "this is not an OpenSSH public key",
                    Some(
                        "paste the whole line of the `.pub` file: `ssh-ed25519 AAAA… comment`"
                            .into(),
                    ),
                );
            }
        }
    }
}

fn services(c: &mut Checker, s: &Services) {
    let mut seen: HashMap<String, (&str, usize)> = HashMap::new();
    for (list_name, list) in [
        ("enable", &s.enable),
        ("disable", &s.disable),
        ("mask", &s.mask),
    ] {
        for (i, unit) in list.iter().enumerate() {
            let p = path!["system", "services", list_name, i];
            let suffix = unit.rsplit_once('.').map(|(_, s)| s);
            let valid = is_word(unit, ":_.\\@-")
                && suffix.is_none_or(|s| {
                    UNIT_TYPES.contains(&s) || !s.chars().all(|c| c.is_ascii_lowercase())
                });
            if !valid {
                c.error(
                    p.clone(),
                    format!("`{unit}` is not a systemd unit name"),
                    Some("use e.g. `sshd`, `sshd.service` or `fstrim.timer`".into()),
                );
                continue;
            }
            let full = if suffix.is_some_and(|s| UNIT_TYPES.contains(&s)) {
                unit.clone()
            } else {
                format!("{unit}.service")
            };
            if let Some((other, _)) = seen.get(&full) {
                if *other != list_name {
                    c.error(
                        p,
                        format!("`{full}` is listed under both `{other}` and `{list_name}`"),
                        Some("keep each unit in one list".into()),
                    );
                }
            } else {
                seen.insert(full, (list_name, i));
            }
        }
    }
}

fn files(c: &mut Checker, s: &System) {
    let mut paths: HashMap<&str, Vec<PathSeg>> = HashMap::new();
    let entries = s
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| (path!["system", "files", i], &f.path))
        .chain(
            s.directories
                .iter()
                .enumerate()
                .map(|(i, d)| (path!["system", "directories", i], &d.path)),
        );
    for (p, file_path) in entries {
        if let Err(why) = clean_absolute(file_path) {
            c.error(
                [p.clone(), path!["path"]].concat(),
                format!("`{file_path}` {why}"),
                None,
            );
        } else if file_path == "/" {
            c.error(
                [p.clone(), path!["path"]].concat(),
                "`/` cannot be written as a file or directory",
                None,
            );
        }
        if let Some(first) = paths.get(file_path.as_str()) {
            let at = c.where_is(first.clone());
            c.error(
                [p.clone(), path!["path"]].concat(),
                format!("`{file_path}` is given twice (first at {at})"),
                None,
            );
        } else {
            paths.insert(file_path, p);
        }
    }
    for (i, f) in s.files.iter().enumerate() {
        source_or_content(
            c,
            path!["system", "files", i],
            f.content.is_some(),
            f.source.as_deref(),
        );
    }
}

/// GPT keeps its primary table in the first MiB (with alignment) and the backup in the last.
const GPT_OVERHEAD: u64 = 2 * Size::MIB;

fn disk_output(c: &mut Checker, d: &DiskOutput, arch: Arch) {
    let base = path!["outputs", "disk"];
    let at = |rest: Vec<PathSeg>| [base.clone(), rest].concat();
    if d.formats.is_empty() {
        c.error(
            at(path!["formats"]),
            "`formats` is empty",
            Some("list at least one of vhd, vhdx, raw, qcow2".into()),
        );
    }
    let size = d.size.bytes();
    if !size.is_multiple_of(Size::MIB) {
        c.error(at(path!["size"]), format!("disk size {} is not a whole number of MiB", d.size), Some("Azure requires the virtual size of a VHD to be a whole number of MiB; e.g. 5GiB or 30720MiB".into()));
    }
    if !matches!(d.azure_generation, 1 | 2) {
        c.error(
            at(path!["azure-generation"]),
            format!("Azure generation {} does not exist", d.azure_generation),
            Some("use 2 (UEFI, the default) or 1 (BIOS)".into()),
        );
    }
    let parts = d.effective_partitions();
    // Partitions defaulted from the Azure layout are not in the tree; point at `disk` then.
    let ppath = |i: usize, k: &str| {
        if d.partitions.is_empty() {
            base.clone()
        } else {
            [base.clone(), path!["partitions", i, k]].concat()
        }
    };
    if parts.len() > 128 {
        c.error(
            at(path!["partitions"]),
            format!("{} partitions: GPT holds at most 128", parts.len()),
            None,
        );
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut mounts: HashMap<&str, usize> = HashMap::new();
    let mut fixed_total: u64 = 0;
    let mut rest: Vec<usize> = Vec::new();
    if let Some(g) = &d.disk_guid
        && uuid::Uuid::parse_str(g).is_err()
    {
        c.error(
            at(path!["disk-guid"]),
            format!("`{g}` is not a GUID"),
            Some("write it as 8-4-4-4-12 hex digits, or leave it out to derive one".into()),
        );
    }
    for (i, p) in parts.iter().enumerate() {
        if let Some(g) = &p.part_uuid
            && uuid::Uuid::parse_str(g).is_err()
        {
            c.error(
                ppath(i, "part-uuid"),
                format!("`{g}` is not a GUID"),
                Some("write it as 8-4-4-4-12 hex digits, or leave it out to derive one".into()),
            );
        }
        if let Some(u) = &p.fs_uuid {
            let ok = match p.filesystem {
                Some(Filesystem::Vfat) => crate::emit::disk::layout::parse_volume_id(u).is_some(),
                _ => uuid::Uuid::parse_str(u).is_ok(),
            };
            if !ok {
                c.error(
                    ppath(i, "fs-uuid"),
                    format!("`{u}` is not a filesystem UUID for this partition"),
                    Some(
                        "ext4 takes a UUID (8-4-4-4-12 hex digits), vfat a volume id as XXXX-XXXX"
                            .into(),
                    ),
                );
            }
        }
        if !is_word(&p.name, "_-") {
            c.error(
                ppath(i, "name"),
                format!("`{}` is not a valid partition name", p.name),
                Some("use letters, digits, `_` and `-`".into()),
            );
        }
        if let Some(first) = names.insert(&p.name, i) {
            let at_first = c.where_is(ppath(first, "name"));
            c.error(
                ppath(i, "name"),
                format!(
                    "partition name `{}` is used twice (first at {at_first})",
                    p.name
                ),
                Some("give each partition its own name".into()),
            );
        }
        let label = p.label.as_deref().unwrap_or(&p.name);
        if label.encode_utf16().count() > 36 {
            c.error(
                ppath(i, "label"),
                format!("partition label `{label}` is longer than GPT's 36 characters"),
                None,
            );
        }
        match p.size {
            PartSize::Rest => rest.push(i),
            PartSize::Fixed(s) => {
                if s.bytes() == 0 {
                    c.error(ppath(i, "size"), "a partition cannot be empty", None);
                } else if s.bytes() % Size::MIB != 0 {
                    c.error(
                        ppath(i, "size"),
                        format!("partition size {s} is not a whole number of MiB"),
                        Some("partitions are 1 MiB aligned; give sizes in MiB or GiB".into()),
                    );
                }
                fixed_total = fixed_total.saturating_add(s.bytes());
            }
        }
        if let Some(fl) = &p.fs_label {
            let max = match p.filesystem {
                Some(Filesystem::Vfat) => 11,
                _ => 16,
            };
            if fl.len() > max {
                c.error(
                    ppath(i, "fs-label"),
                    format!("filesystem label `{fl}` is longer than {max} bytes"),
                    None,
                );
            }
        }
        match (&p.part_type, p.filesystem) {
            (PartitionType::Esp, fs) if fs != Some(Filesystem::Vfat) => c.error(
                ppath(i, "filesystem"),
                "an EFI system partition must be `filesystem: vfat`",
                None,
            ),
            (PartitionType::BiosBoot | PartitionType::Swap, Some(_)) => c.error(
                ppath(i, "filesystem"),
                format!("a {} partition holds no filesystem", p.part_type),
                Some("remove `filesystem` (and `mount`)".into()),
            ),
            _ => {}
        }
        if let Some(m) = &p.mount {
            if let Err(why) = clean_absolute(m) {
                c.error(ppath(i, "mount"), format!("mount point `{m}` {why}"), None);
            }
            if p.filesystem.is_none() {
                c.error(
                    ppath(i, "mount"),
                    format!("partition `{}` is mounted but has no filesystem", p.name),
                    Some("add `filesystem: ext4` (or vfat)".into()),
                );
            }
            if let Some(first) = mounts.insert(m, i) {
                let other = &parts[first].name;
                c.error(
                    ppath(i, "mount"),
                    format!("mount point `{m}` is also used by partition `{other}`"),
                    Some("each mount point can be used once".into()),
                );
            }
        }
        if p.part_type == PartitionType::Swap {
            c.warn(
                ppath(i, "type"),
                "Azure recommends no swap partition on the OS disk",
                Some(
                    "use the resource disk for swap (cloud-init or WALinuxAgent can set it up)"
                        .into(),
                ),
            );
        }
        if arch == Arch::Aarch64 && p.part_type == PartitionType::BiosBoot {
            c.error(
                ppath(i, "type"),
                "aarch64 has no BIOS: a bios-boot partition is never used there",
                None,
            );
        }
    }
    if rest.len() > 1 {
        let first = &parts[rest[0]].name;
        c.error(
            ppath(rest[1], "size"),
            format!("only one partition can take the `rest` (`{first}` already does)"),
            None,
        );
    }
    let needed = fixed_total
        .saturating_add(GPT_OVERHEAD)
        .saturating_add(if rest.is_empty() { 0 } else { Size::MIB });
    if needed > size {
        c.error(
            at(path!["size"]),
            format!(
                "the partitions need {} but the disk is {}",
                Size(needed.div_ceil(Size::MIB) * Size::MIB),
                d.size
            ),
            Some(format!(
                "GPT needs 2MiB of the disk{}; grow `size` or shrink the partitions",
                if rest.is_empty() {
                    ""
                } else {
                    " and the `rest` partition at least 1MiB"
                }
            )),
        );
    }
    match mounts.get("/") {
        None => c.error(at(path!["partitions"]), "no partition is mounted at `/`", Some("the image is written to the partition with `mount: /`; add one (type root, filesystem ext4)".into())),
        Some(&i) if parts[i].filesystem != Some(Filesystem::Ext4) => c.error(ppath(i, "filesystem"), "the root partition must be ext4 (the filesystem kiln writes)", None),
        Some(_) => {}
    }
    let has = |t: PartitionType| parts.iter().any(|p| p.part_type == t);
    let uefi = d.azure_generation == 2 || d.bootloader == Bootloader::SystemdBoot;
    if d.bootloader != Bootloader::None && uefi && !has(PartitionType::Esp) {
        c.error(
            at(path!["partitions"]),
            "UEFI boot needs an EFI system partition, and there is none",
            Some(
                "add `{name: esp, type: esp, size: 200MiB, filesystem: vfat, mount: /boot/efi}`"
                    .into(),
            ),
        );
    }
    if d.azure_generation == 1 {
        match d.bootloader {
            Bootloader::SystemdBoot => c.error(
                at(path!["bootloader"]),
                "systemd-boot needs UEFI, but Azure generation 1 boots with BIOS",
                Some("use `azure-generation: 2`, or `bootloader: grub2`".into()),
            ),
            Bootloader::Grub2 if !has(PartitionType::BiosBoot) => c.error(
                at(path!["partitions"]),
                "GRUB on a BIOS (generation 1) GPT disk needs a bios-boot partition",
                Some(
                    "add `{name: bios, type: bios-boot, size: 1MiB}` as the first partition".into(),
                ),
            ),
            _ => {}
        }
    }
    let mut seen_formats = Vec::new();
    for (i, f) in d.formats.iter().enumerate() {
        if seen_formats.contains(f) {
            c.error(at(path!["formats", i]), "this format is listed twice", None);
        }
        seen_formats.push(*f);
    }
}

fn oci_output(c: &mut Checker, o: &OciOutput, arches: &[Arch]) {
    let at = |rest: Vec<PathSeg>| [path!["outputs", "oci"], rest].concat();
    match (o.variant, o.runtime_packages.is_empty()) {
        (OciVariant::Runtime, true) => c.error(
            at(path!["runtime-packages"]),
            "a `runtime` image needs `runtime-packages` (e.g. [python3])",
            None,
        ),
        (OciVariant::Base | OciVariant::Distroless, false) => c.error(
            at(path!["runtime-packages"]),
            "`runtime-packages` only applies to `variant: runtime`",
            Some("for other variants list packages under `packages.install`".into()),
        ),
        _ => {}
    }
    if let Some(u) = &o.user {
        let (user, group) = u.split_once(':').unwrap_or((u, ""));
        let ok = |s: &str| {
            is_valid_account_name(s) || (!s.is_empty() && s.chars().all(|c| c.is_ascii_digit()))
        };
        if !ok(user) || (!group.is_empty() && !ok(group)) || u.ends_with(':') {
            c.error(
                at(path!["user"]),
                format!("`{u}` is not a user"),
                Some("use a name, uid, or uid:gid (e.g. nonroot or 65532:65532)".into()),
            );
        }
    }
    if let Some(w) = &o.workdir
        && let Err(why) = clean_absolute(w)
    {
        c.error(at(path!["workdir"]), format!("workdir `{w}` {why}"), None);
    }
    for k in o.env.keys() {
        if !is_word(k, "_") || k.starts_with(|ch: char| ch.is_ascii_digit()) {
            c.error(
                at(path!["env", k.as_str()]),
                format!("`{k}` is not an environment variable name"),
                None,
            );
        }
    }
    for (i, port) in o.exposed_ports.iter().enumerate() {
        let (num, proto) = port.split_once('/').unwrap_or((port, "tcp"));
        let valid_num = num.parse::<u16>().is_ok_and(|n| n > 0);
        if !valid_num || !matches!(proto, "tcp" | "udp" | "sctp") {
            c.error(
                at(path!["exposed-ports", i]),
                format!("`{port}` is not a port"),
                Some("use `8080`, `8080/tcp`, `53/udp` (ports 1–65535)".into()),
            );
        }
    }
    for (i, t) in o.tags.iter().enumerate() {
        let valid = t.len() <= 128
            && t.starts_with(|ch: char| ch.is_ascii_alphanumeric() || ch == '_')
            && is_word(t, "_.-");
        if !valid {
            c.error(at(path!["tags", i]), format!("`{t}` is not a valid tag"), Some("tags use letters, digits, `_`, `.` and `-` (at most 128), not starting with `.` or `-`".into()));
        }
    }
    for (i, p) in o.platforms.iter().enumerate() {
        let arch = match p.as_str() {
            "linux/amd64" => Some(Arch::X86_64),
            "linux/arm64" | "linux/arm64/v8" => Some(Arch::Aarch64),
            _ => None,
        };
        match arch {
            None => c.error(
                at(path!["platforms", i]),
                format!("`{p}` is not a platform kiln builds"),
                Some("use linux/amd64 or linux/arm64".into()),
            ),
            Some(a) if !arches.contains(&a) => c.error(
                at(path!["platforms", i]),
                format!(
                    "platform `{p}` needs architecture {a}, which `architectures` does not list"
                ),
                None,
            ),
            _ => {}
        }
    }
}

fn wsl_output(c: &mut Checker, w: &WslOutput) {
    let at = |rest: Vec<PathSeg>| [path!["outputs", "wsl"], rest].concat();
    if let Some(n) = &w.default_name
        && !is_word(n, "._-")
    {
        c.error(
            at(path!["default-name"]),
            format!("`{n}` is not a valid WSL distribution name"),
            Some("use letters, digits, `.`, `_` and `-`".into()),
        );
    }
    if w.default_uid == 0 {
        c.warn(
            at(path!["default-uid"]),
            "WSL will log in as root by default",
            Some("use the uid of the first user (1000) and let the OOBE create it".into()),
        );
    }
    if let Some(icon) = &w.icon {
        let p = Path::new(icon);
        if !icon.to_ascii_lowercase().ends_with(".ico") {
            c.error(at(path!["icon"]), "the icon must be an `.ico` file", None);
        }
        match std::fs::metadata(p) {
            Err(_) => c.error(
                at(path!["icon"]),
                format!("icon {icon} does not exist"),
                Some("paths are relative to the definition file".into()),
            ),
            Ok(m) if m.len() > 1024 * 1024 => c.error(
                at(path!["icon"]),
                format!(
                    "icon {icon} is {} bytes; WSL accepts at most 1 MiB",
                    m.len()
                ),
                None,
            ),
            Ok(_) => {}
        }
    }
    if let Some(tp) = &w.terminal_profile {
        match std::fs::read_to_string(tp) {
            Err(_) => c.error(
                at(path!["terminal-profile"]),
                format!("terminal profile {tp} does not exist"),
                Some("paths are relative to the definition file".into()),
            ),
            Ok(text) => {
                if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
                    c.error(
                        at(path!["terminal-profile"]),
                        format!("terminal profile {tp} is not JSON: {e}"),
                        None,
                    );
                }
            }
        }
    }
    if let Some(cmd) = &w.oobe.command
        && !cmd.starts_with('/')
    {
        c.error(
            at(path!["oobe", "command"]),
            format!("OOBE command `{cmd}` must start with an absolute path in the image"),
            None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names() {
        for ok in ["root", "azureuser", "_apt", "a-b_c1", "machine$"] {
            assert!(is_valid_account_name(ok), "{ok}");
        }
        for bad in [
            "",
            "Root",
            "1abc",
            "a b",
            "-x",
            "averyveryveryveryveryverylongname1",
        ] {
            assert!(!is_valid_account_name(bad), "{bad}");
        }
    }

    #[test]
    fn paths() {
        assert!(clean_absolute("/etc/motd").is_ok());
        assert!(clean_absolute("/").is_ok());
        assert!(clean_absolute("etc/motd").is_err());
        assert!(clean_absolute("/etc/../x").is_err());
        assert!(clean_absolute("/etc/").is_err());
        assert!(clean_absolute("/a//b").is_err());
    }

    #[test]
    fn hostnames() {
        assert!(is_hostname("azl-vm-01"));
        assert!(is_hostname("a.b.c"));
        assert!(!is_hostname("-bad"));
        assert!(!is_hostname("under_score"));
        assert!(!is_hostname(&"a".repeat(65)));
        assert!(!is_hostname("a..b"));
    }

    #[test]
    fn package_specs() {
        for ok in [
            "bash",
            "bash.x86_64",
            "@core",
            "/usr/bin/python3",
            "pkgconfig(zlib)",
            "libfoo >= 2.0",
            "perl(Foo::Bar)",
        ] {
            assert_eq!(package_spec_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "-vim",
            "(a or b)",
            "a, b",
            "@ core x",
            "a >> 1",
            "@bad group!",
        ] {
            assert!(package_spec_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn ssh_keys_and_hashes() {
        assert!(is_ssh_public_key(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ4vJk user@host"
        ));
        assert!(is_ssh_public_key(
            "from=\"10.0.0.0/8\" ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAB"
        ));
        assert!(!is_ssh_public_key("hunter2"));
        assert!(!is_ssh_public_key("ssh-ed25519"));
        assert!(is_crypt_hash("$6$salt$abcdefghijkl"));
        assert!(is_crypt_hash("$y$j9T$salt$hash"));
        assert!(!is_crypt_hash("password"));
        assert!(!is_crypt_hash("$6$salt$"));
    }
}
