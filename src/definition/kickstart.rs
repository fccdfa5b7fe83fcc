//! Kickstart import: reads an Anaconda kickstart file (with `%include`) the way pykickstart does,
//! and turns it into the same located definition tree a YAML file gives, refusing what kiln cannot represent.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::error::Problem;
use super::node::{Key, Loc, Node, NodeKind, SourceFile};
use super::validate::is_crypt_hash;

/// How deep `%include` may nest before kiln assumes something is wrong.
const MAX_INCLUDE_DEPTH: usize = 32;

/// Whether a path names a kickstart file (by its extension) rather than a YAML definition.
pub fn is_kickstart(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "ks")
}

// ---------------------------------------------------------------------------------------------
// What a kickstart says, as pykickstart reads it. Serialized (`kiln import kickstart --json`)
// in the shape `tests/kickstart/pyks_dump.py` prints from pykickstart, so the two can be compared.
// ---------------------------------------------------------------------------------------------

/// A parsed kickstart: the commands and sections kiln reads, plus everything else it saw.
#[derive(Debug, Default, Serialize)]
pub struct Kickstart {
    pub packages: Packages,
    pub users: Vec<User>,
    pub groups: Vec<Group>,
    pub rootpw: Option<RootPw>,
    pub sshkeys: Vec<SshKey>,
    pub services: Option<Services>,
    pub timezone: Option<Timezone>,
    pub lang: Option<String>,
    pub keyboard: Option<Keyboard>,
    pub hostname: Option<String>,
    pub selinux: Option<String>,
    pub bootloader: Option<Bootloader>,
    pub partitions: Vec<Partition>,
    pub autopart: Option<Autopart>,
    pub repos: Vec<Repo>,
    pub url: Option<Url>,
    pub firewall: Option<Firewall>,
    pub scripts: Vec<Script>,
    /// Where `lang`, `network --hostname` and `selinux` were last given.
    #[serde(skip)]
    locs: BTreeMap<&'static str, Loc>,
    /// Where `timesource --ntp-disable` was given.
    #[serde(skip)]
    ntp_disabled: Option<Loc>,
    /// The file read first.
    #[serde(skip)]
    root: Option<Arc<SourceFile>>,
    /// Commands and sections kiln does not model, with their classification.
    #[serde(skip)]
    pub other: Vec<Other>,
    /// Where commands that kiln models only partly were written, with the options it cannot
    /// carry into the image (checked when converting).
    #[serde(skip)]
    pub notes: Vec<Problem>,
}

#[derive(Debug, Default, Serialize)]
pub struct Packages {
    /// Individual packages (and globs), sorted, as pykickstart keeps them.
    pub packages: Vec<String>,
    pub groups: Vec<PkgGroup>,
    pub environment: Option<String>,
    pub excluded: Vec<String>,
    pub excluded_groups: Vec<String>,
    pub nocore: bool,
    pub excludedocs: bool,
    pub inst_langs: Option<String>,
    pub exclude_weakdeps: bool,
    pub seen: bool,
    /// Every package line in file order (for the definition's order and for messages).
    #[serde(skip)]
    order: Vec<(String, Loc)>,
    #[serde(skip)]
    header: Option<Loc>,
    #[serde(skip)]
    env_loc: Option<Loc>,
    #[serde(skip)]
    refused: Vec<Problem>,
}

#[derive(Debug, Serialize)]
pub struct PkgGroup {
    pub name: String,
    /// `default`, `required` (`--nodefaults`) or `all` (`--optional`).
    pub include: &'static str,
    #[serde(skip)]
    loc: Loc,
}

#[derive(Debug, Serialize)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
    pub uid: Option<i64>,
    pub gid: Option<i64>,
    pub homedir: Option<String>,
    pub shell: Option<String>,
    pub password: Option<String>,
    pub iscrypted: bool,
    pub lock: bool,
    pub gecos: Option<String>,
    #[serde(skip)]
    loc: Loc,
}

#[derive(Debug, Serialize)]
pub struct Group {
    pub name: String,
    pub gid: Option<i64>,
    #[serde(skip)]
    loc: Loc,
}

#[derive(Debug, Serialize)]
pub struct RootPw {
    pub password: Option<String>,
    pub iscrypted: bool,
    pub lock: bool,
    #[serde(skip)]
    loc: Loc,
    #[serde(skip)]
    allow_ssh: bool,
}

#[derive(Debug, Serialize)]
pub struct SshKey {
    pub username: String,
    pub key: String,
    #[serde(skip)]
    loc: Loc,
}

#[derive(Debug, Serialize)]
pub struct Services {
    pub enabled: Vec<String>,
    pub disabled: Vec<String>,
    #[serde(skip)]
    loc: Loc,
}

#[derive(Debug, Serialize)]
pub struct Timezone {
    pub timezone: Option<String>,
    pub utc: bool,
    pub nontp: bool,
    pub ntpservers: Vec<String>,
    #[serde(skip)]
    loc: Loc,
}

#[derive(Debug, Serialize)]
pub struct Keyboard {
    /// The bare argument (`keyboard us`).
    pub keyboard: Option<String>,
    pub vckeymap: Option<String>,
    pub xlayouts: Vec<String>,
    #[serde(skip)]
    loc: Loc,
}

#[derive(Debug, Serialize)]
pub struct Bootloader {
    pub append: Option<String>,
    pub disabled: bool,
    pub sdboot: bool,
    pub timeout: Option<i64>,
    pub location: Option<String>,
    #[serde(skip)]
    loc: Loc,
}

#[derive(Debug, Serialize)]
pub struct Partition {
    pub mountpoint: String,
    pub size: Option<i64>,
    pub grow: bool,
    pub maxsize: Option<i64>,
    pub fstype: Option<String>,
    pub label: Option<String>,
    pub fsoptions: Option<String>,
    pub ondisk: Option<String>,
    #[serde(skip)]
    loc: Loc,
    #[serde(skip)]
    refused: Vec<Problem>,
}

#[derive(Debug, Serialize)]
pub struct Autopart {
    pub r#type: Option<String>,
    pub fstype: Option<String>,
    pub encrypted: bool,
    #[serde(skip)]
    loc: Loc,
}

#[derive(Debug, Serialize)]
pub struct Repo {
    pub name: String,
    pub baseurl: Option<String>,
    pub mirrorlist: Option<String>,
    pub metalink: Option<String>,
    pub cost: Option<i64>,
    pub excludepkgs: Vec<String>,
    pub includepkgs: Vec<String>,
    pub install: bool,
    #[serde(skip)]
    loc: Loc,
}

#[derive(Debug, Serialize)]
pub struct Url {
    pub url: Option<String>,
    pub mirrorlist: Option<String>,
    pub metalink: Option<String>,
    #[serde(skip)]
    loc: Loc,
}

#[derive(Debug, Serialize)]
pub struct Firewall {
    /// `true` for `--enabled`, `false` for `--disabled`, `None` when neither is given.
    pub enabled: Option<bool>,
    pub services: Vec<String>,
    pub ports: Vec<String>,
    pub trusts: Vec<String>,
    pub remove_services: Vec<String>,
    pub use_system_defaults: bool,
    #[serde(skip)]
    loc: Loc,
}

#[derive(Debug, Serialize)]
pub struct Script {
    /// `pre`, `pre-install`, `post`, `onerror` or `traceback`.
    pub r#type: &'static str,
    pub interpreter: String,
    pub chroot: bool,
    pub error_on_fail: bool,
    pub log: Option<String>,
    pub body: String,
    #[serde(skip)]
    loc: Loc,
}

/// A command or section kiln does not model.
#[derive(Debug)]
pub struct Other {
    pub name: String,
    pub loc: Loc,
}

// ---------------------------------------------------------------------------------------------
// Lines: files read with %include followed, each line knowing where it came from.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Line {
    /// The raw text, with its line ending.
    text: String,
    file: Arc<SourceFile>,
    number: u32,
}

impl Line {
    fn loc(&self, col: u32, len: usize) -> Loc {
        Loc::new(&self.file, self.number, col, len)
    }

    /// The location of the first word.
    fn start(&self) -> Loc {
        let indent = self.text.len() - self.text.trim_start().len();
        let word = self.text.split_whitespace().next().unwrap_or("");
        self.loc(self.text[..indent].chars().count() as u32 + 1, word.len())
    }
}

struct Reader {
    lines: Vec<Line>,
    problems: Vec<Problem>,
    /// Canonical paths of every file read.
    sources: Vec<PathBuf>,
    /// The include chain being read: canonical path and display path.
    chain: Vec<(PathBuf, PathBuf)>,
}

impl Reader {
    /// Reads `display` into `lines`, following `%include`s. `from` is the `%include` line.
    fn file(&mut self, display: &Path, from: Option<&Line>) -> bool {
        let at = |p: Problem| match from {
            Some(l) => p.at(l.start()),
            None => p,
        };
        let canonical = match std::fs::canonicalize(display) {
            Ok(c) => c,
            Err(e) => {
                self.problems.push(
                    at(Problem::error(format!(
                        "cannot read {}: {e}",
                        display.display()
                    )))
                    .help("`%include` paths are relative to the file that includes them"),
                );
                return false;
            }
        };
        if let Some(pos) = self.chain.iter().position(|(c, _)| *c == canonical) {
            let mut names: Vec<String> = self.chain[pos..]
                .iter()
                .map(|(_, d)| d.display().to_string())
                .collect();
            names.push(display.display().to_string());
            self.problems.push(
                at(Problem::error(format!(
                    "`%include` loops back on itself: {}",
                    names.join(" → ")
                )))
                .help(
                    "a kickstart cannot include itself, directly or through the files it includes",
                ),
            );
            return false;
        }
        if self.chain.len() >= MAX_INCLUDE_DEPTH {
            self.problems.push(at(Problem::error(format!(
                "`%include` nests more than {MAX_INCLUDE_DEPTH} files deep"
            ))));
            return false;
        }
        let text = match std::fs::read(display) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(t) => t,
                Err(_) => {
                    self.problems.push(at(Problem::error(format!(
                        "{} is not UTF-8 text",
                        display.display()
                    ))));
                    return false;
                }
            },
            Err(e) => {
                self.problems.push(
                    at(Problem::error(format!(
                        "cannot read {}: {e}",
                        display.display()
                    )))
                    .help("`%include` paths are relative to the file that includes them"),
                );
                return false;
            }
        };
        if !self.sources.contains(&canonical) {
            self.sources.push(canonical.clone());
        }
        let file = SourceFile::new(display, text);
        self.chain.push((canonical, display.to_path_buf()));
        let mut ok = true;
        for (i, raw) in file.text.split_inclusive('\n').enumerate() {
            let line = Line {
                text: raw.to_string(),
                file: Arc::clone(&file),
                number: i as u32 + 1,
            };
            let first = raw.split_whitespace().next();
            if first == Some("%ksappend") {
                continue;
            }
            if first != Some("%include") {
                self.lines.push(line);
                continue;
            }
            // pykickstart splits an %include line with shlex (comments allowed).
            let target = match split(raw.trim_end_matches(['\n', '\r']), true) {
                Ok(toks) => toks.get(1).map(|t| t.text.clone()),
                Err(e) => {
                    self.problems.push(e.problem(&line));
                    ok = false;
                    continue;
                }
            };
            let Some(target) = target.filter(|t| !t.is_empty()) else {
                self.problems.push(
                    Problem::error("`%include` needs a file name")
                        .at(line.start())
                        .help("write `%include other.ks` (relative to this file)"),
                );
                ok = false;
                continue;
            };
            let path = super::normalize(
                &line
                    .file
                    .path
                    .parent()
                    .unwrap_or(Path::new(""))
                    .join(&target),
            );
            ok &= self.file(&path, Some(&line));
        }
        self.chain.pop();
        ok
    }
}

// ---------------------------------------------------------------------------------------------
// Words: shlex's POSIX rules, as pykickstart splits command lines.
// ---------------------------------------------------------------------------------------------

/// One word of a command line and where it starts and ends in the line (bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub text: String,
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SplitError {
    /// A quote opened at this byte offset is never closed.
    NoClosingQuote(usize),
    /// The line ends with a lone backslash.
    NoEscapedCharacter(usize),
}

impl SplitError {
    fn problem(&self, line: &Line) -> Problem {
        let (at, msg, help) = match *self {
            SplitError::NoClosingQuote(at) => (
                at,
                "this quote is never closed",
                "close it on the same line: kickstart quotes do not span lines",
            ),
            SplitError::NoEscapedCharacter(at) => (
                at,
                "the line ends with a backslash that escapes nothing",
                "remove it, or write `\\\\` for a literal backslash",
            ),
        };
        let text = line.text.trim_end_matches(['\n', '\r']);
        Problem::error(msg)
            .at(line.loc(text[..at].chars().count() as u32 + 1, 1))
            .help(help)
    }
}

#[derive(Clone, Copy)]
enum St {
    Space,
    Word,
    Quote(char),
    Escape(Option<char>),
}

/// Splits a line into words as Python's `shlex.split(line, comments=…)` does: whitespace
/// separates, `'…'` is literal, `"…"` keeps `\"` and `\\` escapes, a backslash outside quotes
/// escapes any character, and with `comments` a `#` outside quotes ends the line.
pub fn split(line: &str, comments: bool) -> Result<Vec<Token>, SplitError> {
    let mut out = Vec::new();
    let mut st = St::Space;
    let mut tok = String::new();
    let mut quoted = false;
    let mut start = 0;
    let mut open = 0;
    let is_ws = |c: char| matches!(c, ' ' | '\t' | '\r' | '\n');
    let mut end_at = line.len();
    for (i, c) in line.char_indices() {
        match st {
            St::Space => {
                if is_ws(c) {
                    continue;
                }
                if comments && c == '#' {
                    end_at = i;
                    break;
                }
                start = i;
                match c {
                    '\\' => st = St::Escape(None),
                    '\'' | '"' => {
                        quoted = true;
                        open = i;
                        st = St::Quote(c);
                    }
                    _ => {
                        tok.push(c);
                        st = St::Word;
                    }
                }
            }
            St::Word => {
                if is_ws(c) || (comments && c == '#') {
                    out.push(Token {
                        text: std::mem::take(&mut tok),
                        start,
                        end: i,
                    });
                    quoted = false;
                    st = St::Space;
                    if c == '#' {
                        end_at = i;
                        break;
                    }
                    continue;
                }
                match c {
                    '\\' => st = St::Escape(None),
                    '\'' | '"' => {
                        quoted = true;
                        open = i;
                        st = St::Quote(c);
                    }
                    _ => tok.push(c),
                }
            }
            St::Quote(q) => {
                if c == q {
                    st = St::Word;
                } else if q == '"' && c == '\\' {
                    st = St::Escape(Some('"'));
                } else {
                    tok.push(c);
                }
            }
            St::Escape(inside) => {
                if inside.is_some() && c != '"' && c != '\\' {
                    tok.push('\\');
                }
                tok.push(c);
                st = match inside {
                    Some(q) => St::Quote(q),
                    None => St::Word,
                };
            }
        }
    }
    match st {
        St::Quote(_) | St::Escape(Some(_)) => return Err(SplitError::NoClosingQuote(open)),
        St::Escape(None) => return Err(SplitError::NoEscapedCharacter(end_at.saturating_sub(1))),
        St::Word => out.push(Token {
            text: tok,
            start,
            end: end_at,
        }),
        St::Space => {
            if quoted {
                out.push(Token {
                    text: tok,
                    start,
                    end: end_at,
                });
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Options: argparse's rules as pykickstart's option parsers apply them.
// ---------------------------------------------------------------------------------------------

/// A command as written: its words and where each is.
struct Cmd {
    name: String,
    words: Vec<(String, Loc)>,
    loc: Loc,
}

#[derive(Clone, Copy)]
struct Opt {
    names: &'static [&'static str],
    value: bool,
}

const fn flag(names: &'static [&'static str]) -> Opt {
    Opt {
        names,
        value: false,
    }
}

const fn val(names: &'static [&'static str]) -> Opt {
    Opt { names, value: true }
}

/// A command's options after parsing: the canonical (first) name of each, in order, with its
/// value; and the positional arguments.
struct Parsed {
    opts: Vec<(&'static str, Option<String>, Loc)>,
    args: Vec<(String, Loc)>,
}

impl Parsed {
    fn flag(&self, name: &str) -> bool {
        self.opts.iter().any(|(n, _, _)| *n == name)
    }

    /// The last value given (argparse's `store`).
    fn value(&self, name: &str) -> Option<&str> {
        self.opts
            .iter()
            .rev()
            .find(|(n, _, _)| *n == name)
            .and_then(|(_, v, _)| v.as_deref())
    }

    fn loc_of(&self, name: &str) -> Option<&Loc> {
        self.opts
            .iter()
            .rev()
            .find(|(n, _, _)| *n == name)
            .map(|(_, _, l)| l)
    }

    fn list(&self, name: &str) -> Vec<String> {
        self.value(name).map(comma_split).unwrap_or_default()
    }

    fn int(&self, name: &str, cmd: &Cmd) -> Result<Option<i64>, Problem> {
        match self.value(name) {
            None => Ok(None),
            Some(v) => v.trim().parse::<i64>().map(Some).map_err(|_| {
                Problem::error(format!(
                    "`{}`: {name} takes a whole number, not `{v}`",
                    cmd.name
                ))
                .at(self.loc_of(name).unwrap_or(&cmd.loc).clone())
            }),
        }
    }
}

/// pykickstart's `commaSplit`: comma-separated, blanks dropped.
fn comma_split(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn parse_opts(cmd: &Cmd, spec: &[Opt]) -> Result<Parsed, Problem> {
    let mut opts = Vec::new();
    let mut args = Vec::new();
    let mut words = cmd.words.iter().skip(1);
    let mut only_args = false;
    let known = || {
        spec.iter()
            .map(|o| o.names[0])
            .collect::<Vec<_>>()
            .join(", ")
    };
    while let Some((w, loc)) = words.next() {
        if only_args
            || !w.starts_with('-')
            || w == "-"
            || w[1..].starts_with(|c: char| c.is_ascii_digit())
        {
            args.push((w.clone(), loc.clone()));
            continue;
        }
        if w == "--" {
            only_args = true;
            continue;
        }
        let (name, inline) = match w.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (w.as_str(), None),
        };
        // Exact names first, then a unique prefix (argparse's abbreviations).
        let found = spec.iter().find(|o| o.names.contains(&name)).or_else(|| {
            let matches: Vec<&Opt> = spec
                .iter()
                .filter(|o| o.names.iter().any(|n| n.starts_with(name)))
                .collect();
            (matches.len() == 1 && name.starts_with("--") && name.len() > 2).then(|| matches[0])
        });
        let Some(opt) = found else {
            let help = match super::error::did_you_mean(
                name,
                spec.iter().flat_map(|o| o.names.iter().copied()),
            ) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("`{}` takes {}", cmd.name, known()),
            };
            return Err(
                Problem::error(format!("`{}` has no option `{name}`", cmd.name))
                    .at(loc.clone())
                    .help(help),
            );
        };
        let value = if opt.value {
            match inline {
                Some(v) => Some(v),
                None => match words.next() {
                    Some((v, _)) if !v.starts_with('-') || v.len() == 1 => Some(v.clone()),
                    _ => {
                        return Err(Problem::error(format!(
                            "`{}`: {} needs a value",
                            cmd.name, opt.names[0]
                        ))
                        .at(loc.clone())
                        .help(format!("write `{}=VALUE`", opt.names[0])));
                    }
                },
            }
        } else {
            if inline.is_some() {
                return Err(Problem::error(format!(
                    "`{}`: {} takes no value",
                    cmd.name, opt.names[0]
                ))
                .at(loc.clone()));
            }
            None
        };
        opts.push((opt.names[0], value, loc.clone()));
    }
    Ok(Parsed { opts, args })
}

// Options of the commands kiln reads (pykickstart's current version).
const PART: &[Opt] = &[
    flag(&["--asprimary"]),
    val(&["--fstype", "--type"]),
    flag(&["--grow"]),
    val(&["--maxsize"]),
    flag(&["--noformat"]),
    val(&["--onbiosdisk"]),
    val(&["--ondisk", "--ondrive"]),
    val(&["--onpart", "--usepart"]),
    flag(&["--recommended"]),
    val(&["--size"]),
    val(&["--fsoptions"]),
    val(&["--label"]),
    val(&["--fsprofile"]),
    flag(&["--encrypted"]),
    val(&["--passphrase"]),
    val(&["--escrowcert"]),
    flag(&["--backuppassphrase"]),
    flag(&["--resize"]),
    flag(&["--hibernation"]),
    val(&["--cipher"]),
    val(&["--mkfsoptions"]),
    val(&["--luks-version"]),
    val(&["--pbkdf"]),
    val(&["--pbkdf-memory"]),
    val(&["--pbkdf-time"]),
    val(&["--pbkdf-iterations"]),
    val(&["--hw-passphrase"]),
];
const AUTOPART: &[Opt] = &[
    flag(&["--encrypted"]),
    val(&["--passphrase"]),
    val(&["--escrowcert"]),
    flag(&["--backuppassphrase"]),
    flag(&["--nolvm"]),
    val(&["--type"]),
    val(&["--cipher"]),
    val(&["--fstype"]),
    flag(&["--nohome"]),
    flag(&["--noboot"]),
    flag(&["--noswap"]),
    val(&["--luks-version"]),
    val(&["--pbkdf"]),
    val(&["--pbkdf-memory"]),
    val(&["--pbkdf-time"]),
    val(&["--pbkdf-iterations"]),
    flag(&["--hibernation"]),
    val(&["--hw-passphrase"]),
];
const BOOTLOADER: &[Opt] = &[
    val(&["--append"]),
    val(&["--location"]),
    val(&["--password"]),
    val(&["--driveorder"]),
    val(&["--timeout"]),
    val(&["--default"]),
    flag(&["--iscrypted"]),
    val(&["--md5pass"]),
    val(&["--boot-drive"]),
    flag(&["--leavebootorder"]),
    flag(&["--extlinux"]),
    flag(&["--disabled"]),
    flag(&["--nombr"]),
    flag(&["--sdboot"]),
];
/// `network` options that only describe the installer's own connection (DHCP on a device):
/// the image gets its network configuration from its packages (cloud-init, systemd-networkd).
const NETWORK_INSTALLER_ONLY: &[&str] = &[
    "--bootproto",
    "--device",
    "--activate",
    "--no-activate",
    "--onboot",
    "--noipv6",
    "--noipv4",
    "--notksdevice",
];
const NETWORK: &[Opt] = &[
    val(&["--bootproto"]),
    val(&["--dhcpclass"]),
    val(&["--device"]),
    val(&["--essid"]),
    val(&["--ethtool"]),
    val(&["--gateway"]),
    val(&["--hostname"]),
    val(&["--ip"]),
    val(&["--mtu"]),
    val(&["--nameserver"]),
    val(&["--netmask"]),
    flag(&["--nodns"]),
    val(&["--onboot"]),
    val(&["--wepkey"]),
    flag(&["--notksdevice"]),
    flag(&["--noipv4"]),
    flag(&["--noipv6"]),
    val(&["--ipv6"]),
    flag(&["--activate"]),
    flag(&["--nodefroute"]),
    val(&["--wpakey"]),
    val(&["--bondslaves"]),
    val(&["--bondopts"]),
    val(&["--vlanid"]),
    val(&["--ipv6gateway"]),
    val(&["--teamslaves"]),
    val(&["--teamconfig"]),
    val(&["--interfacename"]),
    val(&["--bridgeslaves"]),
    val(&["--bridgeopts"]),
    flag(&["--no-activate"]),
    val(&["--bindto"]),
    val(&["--ipv4-dns-search"]),
    val(&["--ipv6-dns-search"]),
    flag(&["--ipv4-ignore-auto-dns"]),
    flag(&["--ipv6-ignore-auto-dns"]),
];
const SERVICES: &[Opt] = &[val(&["--disabled"]), val(&["--enabled"])];
const ROOTPW: &[Opt] = &[
    flag(&["--iscrypted"]),
    flag(&["--lock"]),
    flag(&["--plaintext"]),
    flag(&["--allow-ssh"]),
];
const USER: &[Opt] = &[
    val(&["--homedir"]),
    flag(&["--iscrypted"]),
    val(&["--name"]),
    val(&["--password"]),
    val(&["--shell"]),
    val(&["--uid"]),
    flag(&["--lock"]),
    flag(&["--plaintext"]),
    val(&["--gecos"]),
    val(&["--gid"]),
    val(&["--groups"]),
];
const GROUP: &[Opt] = &[val(&["--name"]), val(&["--gid"])];
const SSHKEY: &[Opt] = &[val(&["--username"])];
const TIMEZONE: &[Opt] = &[
    flag(&["--utc", "--isUtc"]),
    flag(&["--nontp"]),
    val(&["--ntpservers"]),
];
const TIMESOURCE: &[Opt] = &[
    val(&["--ntp-server"]),
    val(&["--ntp-pool"]),
    flag(&["--ntp-disable"]),
    flag(&["--nts"]),
];
const LANG: &[Opt] = &[val(&["--addsupport"])];
const KEYBOARD: &[Opt] = &[
    val(&["--vckeymap"]),
    val(&["--xlayouts"]),
    val(&["--switch"]),
];
const SELINUX: &[Opt] = &[
    flag(&["--disabled"]),
    flag(&["--enforcing"]),
    flag(&["--permissive"]),
];
const FIREWALL: &[Opt] = &[
    flag(&["--disabled", "--disable"]),
    flag(&["--enabled", "--enable"]),
    val(&["--port"]),
    val(&["--trust"]),
    val(&["--service"]),
    flag(&["--ftp"]),
    flag(&["--http"]),
    flag(&["--smtp"]),
    flag(&["--ssh"]),
    val(&["--remove-service"]),
    flag(&["--use-system-defaults"]),
];
const REPO: &[Opt] = &[
    val(&["--name"]),
    val(&["--baseurl"]),
    val(&["--mirrorlist"]),
    val(&["--cost"]),
    val(&["--excludepkgs"]),
    val(&["--includepkgs"]),
    val(&["--proxy"]),
    flag(&["--noverifyssl"]),
    flag(&["--install"]),
    val(&["--metalink"]),
    val(&["--sslcacert"]),
    val(&["--sslclientcert"]),
    val(&["--sslclientkey"]),
];
const URL: &[Opt] = &[
    val(&["--proxy"]),
    flag(&["--noverifyssl"]),
    val(&["--mirrorlist"]),
    val(&["--url"]),
    val(&["--metalink"]),
    val(&["--sslcacert"]),
    val(&["--sslclientcert"]),
    val(&["--sslclientkey"]),
];
const PACKAGES: &[Opt] = &[
    flag(&["--excludedocs"]),
    flag(&["--ignoremissing"]),
    flag(&["--default"]),
    val(&["--instLangs", "--inst-langs"]),
    flag(&["--multilib"]),
    flag(&["--nocore"]),
    val(&["--timeout"]),
    val(&["--retries"]),
    flag(&["--excludeWeakdeps", "--exclude-weakdeps"]),
    flag(&["--ignorebroken"]),
];
const SCRIPT: &[Opt] = &[
    flag(&["--erroronfail"]),
    val(&["--interpreter"]),
    val(&["--log", "--logfile"]),
    flag(&["--nochroot"]),
];

/// Kickstart commands kiln does not model, and what they mean for an image build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Only affects the installer run (its UI, how it ends, disks it wipes): a warning.
    InstallerOnly(&'static str),
    /// Would change the image in a way a kiln definition cannot express: an error.
    Refused(&'static str),
}

fn classify(name: &str) -> Option<Class> {
    use Class::*;
    Some(match name {
        "text" | "graphical" | "cmdline" => InstallerOnly("the installer's user interface"),
        "reboot" | "poweroff" | "shutdown" | "halt" => {
            InstallerOnly("what the installer does when it finishes")
        }
        "zerombr" | "clearpart" | "ignoredisk" => {
            InstallerOnly("disks the installer prepares; kiln writes a new disk image from scratch")
        }
        "skipx" | "xconfig" | "firstboot" | "eula" | "logging" | "vnc" | "rdp" | "mediacheck"
        | "autostep" | "updates" | "driverdisk" | "deviceprobe" | "sshpw" | "install"
        | "harddrive" | "cdrom" => InstallerOnly("the installer's own run"),
        "liveimg" | "ostreesetup" | "ostreecontainer" | "bootc" => Refused(
            "kiln installs RPM packages; it does not deploy a live image or an OSTree/bootc image",
        ),
        "nfs" | "method" => Refused("kiln reads packages from `url` and `repo` repositories only"),
        "btrfs" | "logvol" | "volgroup" | "raid" | "reqpart" | "mount" | "snapshot"
        | "stratisfs" | "stratispool" => Refused(
            "kiln writes plain GPT partitions with ext4 or vfat; use `part` with --fstype=ext4",
        ),
        "iscsi" | "iscsiname" | "fcoe" | "zfcp" | "nvdimm" | "multipath" | "dmraid" | "zipl"
        | "hmc" | "device" => {
            Refused("kiln builds a disk image and cannot attach or configure storage hardware")
        }
        "auth" | "authconfig" | "authselect" | "realm" => {
            Refused("kiln cannot configure authentication or join a domain; do it in %post")
        }
        "module" => Refused("kiln does not enable module streams"),
        "rescue" => Refused("rescue mode is not an installation"),
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// The state machine: commands, then sections up to %end.
// ---------------------------------------------------------------------------------------------

const SECTIONS: &[&str] = &[
    "%packages",
    "%pre",
    "%pre-install",
    "%post",
    "%onerror",
    "%traceback",
    "%addon",
    "%anaconda",
    "%certificate",
];

/// Reads a kickstart file and the files it includes. Problems come back with the result; the
/// kickstart is `None` when it cannot be read at all.
pub fn read(path: &Path) -> (Option<Kickstart>, Vec<Problem>, Vec<PathBuf>) {
    let mut reader = Reader {
        lines: Vec::new(),
        problems: Vec::new(),
        sources: Vec::new(),
        chain: Vec::new(),
    };
    let ok = reader.file(&super::normalize(path), None);
    let mut problems = reader.problems;
    if !ok {
        return (None, problems, reader.sources);
    }
    let mut ks = Kickstart {
        root: reader.lines.first().map(|l| Arc::clone(&l.file)),
        ..Kickstart::default()
    };
    let lines = reader.lines;
    let mut i = 0;
    while i < lines.len() {
        let line = &lines[i];
        i += 1;
        let trimmed = line.text.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        // kiln's one extension: a command may continue on the next line after a backslash.
        let mut joined = line.text.trim_end_matches(['\n', '\r']).to_string();
        while ends_with_escape(&joined) && i < lines.len() && !trimmed.starts_with('%') {
            joined.pop();
            joined.push(' ');
            joined.push_str(lines[i].text.trim_end_matches(['\n', '\r']));
            i += 1;
        }
        let toks = match split(&joined, true) {
            Ok(t) if !t.is_empty() => t,
            Ok(_) => continue,
            Err(e) => {
                problems.push(e.problem(line));
                continue;
            }
        };
        let words: Vec<(String, Loc)> = toks
            .iter()
            .map(|t| {
                // Continued lines are located at the command's first line.
                let col = joined[..t.start.min(joined.len())].chars().count() as u32 + 1;
                (t.text.clone(), line.loc(col, t.end - t.start))
            })
            .collect();
        let cmd = Cmd {
            name: words[0].0.clone(),
            loc: words[0].1.clone(),
            words,
        };
        if cmd.name.starts_with('%') {
            if !SECTIONS.contains(&cmd.name.as_str()) {
                problems.push(
                    Problem::error(format!("unknown kickstart section `{}`", cmd.name))
                        .at(cmd.loc.clone())
                        .help(format!("sections are {}", SECTIONS.join(", "))),
                );
            }
            i = section(&mut ks, &cmd, &lines, i, &mut problems);
            continue;
        }
        if let Err(p) = command(&mut ks, &cmd) {
            problems.push(p);
        }
    }
    (Some(ks), problems, reader.sources)
}

fn ends_with_escape(s: &str) -> bool {
    s.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1
}

/// Reads a section's body from `lines[i..]` up to `%end`; returns the index after it.
fn section(
    ks: &mut Kickstart,
    header: &Cmd,
    lines: &[Line],
    mut i: usize,
    problems: &mut Vec<Problem>,
) -> usize {
    let name = header.name.as_str();
    let is_script = matches!(
        name,
        "%pre" | "%pre-install" | "%post" | "%onerror" | "%traceback"
    );
    let mut body: Vec<&Line> = Vec::new();
    let mut closed = false;
    while i < lines.len() {
        let line = &lines[i];
        let t = line.text.trim();
        let blank = t.is_empty() || t.starts_with('#');
        if blank && !is_script {
            i += 1;
            continue;
        }
        if t.starts_with('%') {
            let first = t.split_whitespace().next().unwrap_or("");
            if first == "%end" {
                closed = true;
                i += 1;
                break;
            }
            if SECTIONS.contains(&first) {
                break;
            }
        }
        body.push(line);
        i += 1;
    }
    if !closed {
        problems.push(
            Problem::error(format!("section `{name}` does not end with `%end`"))
                .at(header.loc.clone())
                .help("close every section with a line `%end`"),
        );
    }
    let result = match name {
        "%packages" => packages(ks, header, &body),
        _ if is_script => script(ks, header, &body),
        _ => {
            ks.other.push(Other {
                name: name.to_string(),
                loc: header.loc.clone(),
            });
            Ok(())
        }
    };
    if let Err(p) = result {
        problems.push(p);
    }
    i
}

fn packages(ks: &mut Kickstart, header: &Cmd, body: &[&Line]) -> Result<(), Problem> {
    let p = parse_opts(header, PACKAGES)?;
    let pk = &mut ks.packages;
    pk.seen = true;
    pk.header = Some(header.loc.clone());
    // As pykickstart: each header sets the switches again; --inst-langs only when given.
    pk.excludedocs = p.flag("--excludedocs");
    pk.nocore = p.flag("--nocore");
    pk.exclude_weakdeps = p.flag("--excludeWeakdeps");
    if let Some(l) = p.value("--instLangs") {
        pk.inst_langs = Some(l.to_string());
    }
    if p.flag("--default") {
        pk.refused.push(
            Problem::error(
                "`%packages --default`: the installer's default package set is not known to kiln",
            )
            .at(p.loc_of("--default").unwrap().clone())
            .help("list the packages and groups to install"),
        );
    }
    if p.flag("--ignoremissing") || p.flag("--ignorebroken") {
        let o = if p.flag("--ignoremissing") {
            "--ignoremissing"
        } else {
            "--ignorebroken"
        };
        pk.refused.push(
            Problem::error(format!(
                "`%packages {o}`: kiln fails when a package cannot be installed, it never skips one"
            ))
            .at(p.loc_of(o).unwrap().clone())
            .help("remove the option and the packages the repositories do not have"),
        );
    }
    if p.flag("--multilib") {
        pk.refused.push(
            Problem::error("`%packages --multilib`: kiln installs other-architecture packages only when asked for by name")
                .at(p.loc_of("--multilib").unwrap().clone())
                .help("list the i686 packages you need as `name.i686`"),
        );
    }
    let mut pkgs: BTreeSet<String> = pk.packages.iter().cloned().collect();
    let mut excl: BTreeSet<String> = pk.excluded.iter().cloned().collect();
    for line in body {
        let loc = line.start();
        let text = line.text.split('#').next().unwrap_or("").trim();
        if text.is_empty() {
            continue;
        }
        if let Some(env) = text.strip_prefix("@^") {
            pk.environment = Some(env.to_string());
            pk.env_loc = Some(loc);
        } else if let Some(g) = text.strip_prefix('@') {
            let words: Vec<&str> = g.split_whitespace().collect();
            let nodefaults = words.contains(&"--nodefaults");
            let optional = words.contains(&"--optional");
            if nodefaults && optional {
                return Err(
                    Problem::error("a group cannot have both --nodefaults and --optional").at(loc),
                );
            }
            let name = words
                .iter()
                .filter(|w| !matches!(**w, "--nodefaults" | "--optional"))
                .copied()
                .collect::<Vec<_>>()
                .join(" ");
            if !pk.groups.iter().any(|x| x.name == name) {
                pk.groups.push(PkgGroup {
                    name,
                    include: if nodefaults {
                        "required"
                    } else if optional {
                        "all"
                    } else {
                        "default"
                    },
                    loc,
                });
            }
        } else if let Some(x) = text.strip_prefix('-') {
            if x.is_empty() {
                return Err(Problem::error("`-` names nothing to exclude").at(loc));
            }
            if let Some(env) = x.strip_prefix("@^") {
                if pk.environment.as_deref() == Some(env) {
                    pk.environment = None;
                }
            } else if let Some(g) = x.strip_prefix('@') {
                pk.groups.retain(|y| y.name != g);
                pk.excluded_groups.push(g.to_string());
                pk.refused.push(
                    Problem::error(format!("excluding the group `@{g}` is not supported: kiln can leave out packages, not groups"))
                        .at(loc)
                        .help("exclude the group's packages by name (`-name`)"),
                );
            } else {
                // pykickstart's set algebra: a later line wins over an earlier one.
                pkgs.remove(x);
                excl.insert(x.to_string());
                pk.order.push((format!("-{x}"), loc));
            }
        } else {
            excl.remove(text);
            pkgs.insert(text.to_string());
            pk.order.push((text.to_string(), loc));
        }
    }
    pk.packages = pkgs.into_iter().collect();
    pk.excluded = excl.into_iter().collect();
    Ok(())
}

fn script(ks: &mut Kickstart, header: &Cmd, body: &[&Line]) -> Result<(), Problem> {
    let mut spec: Vec<Opt> = SCRIPT.to_vec();
    let kind = &header.name[1..];
    // Only %post takes --nochroot; %onerror and %traceback take no --log.
    if kind != "post" {
        spec.retain(|o| o.names[0] != "--nochroot");
    }
    let p = parse_opts(header, &spec)?;
    let text: String = body.iter().map(|l| l.text.as_str()).collect();
    if text.trim().is_empty() {
        return Ok(());
    }
    ks.scripts.push(Script {
        r#type: match kind {
            "pre" => "pre",
            "pre-install" => "pre-install",
            "post" => "post",
            "onerror" => "onerror",
            _ => "traceback",
        },
        interpreter: p.value("--interpreter").unwrap_or("/bin/sh").to_string(),
        chroot: kind == "post" && !p.flag("--nochroot"),
        error_on_fail: p.flag("--erroronfail"),
        log: p.value("--log").map(str::to_string),
        body: text,
        loc: header.loc.clone(),
    });
    Ok(())
}

fn command(ks: &mut Kickstart, cmd: &Cmd) -> Result<(), Problem> {
    let loc = cmd.loc.clone();
    let one_arg = |p: &Parsed, what: &str| -> Result<Option<String>, Problem> {
        match p.args.as_slice() {
            [] => Ok(None),
            [(a, _)] => Ok(Some(a.clone())),
            [_, (extra, l), ..] => Err(Problem::error(format!(
                "`{}` takes one {what}; `{extra}` is one too many",
                cmd.name
            ))
            .at(l.clone())
            .help("quote values that contain spaces")),
        }
    };
    let no_args = |p: &Parsed| -> Result<(), Problem> {
        match p.args.first() {
            None => Ok(()),
            Some((a, l)) => {
                Err(Problem::error(format!("`{}` takes no argument `{a}`", cmd.name)).at(l.clone()))
            }
        }
    };
    match cmd.name.as_str() {
        "part" | "partition" => {
            let p = parse_opts(cmd, PART)?;
            let Some(mountpoint) = one_arg(&p, "mount point")? else {
                return Err(Problem::error(
                    "`part` needs a mount point (`/`, `/boot/efi`, `biosboot`, `swap` …)",
                )
                .at(loc));
            };
            let mut refused = Vec::new();
            for (o, why) in [
                ("--encrypted", "encrypted partitions"),
                ("--noformat", "reusing an existing file system"),
                ("--onpart", "placing it on an existing partition"),
                ("--recommended", "a size chosen by the installer"),
                ("--resize", "resizing an existing partition"),
                ("--hibernation", "a size chosen by the installer"),
                ("--mkfsoptions", "file system creation options"),
                ("--fsprofile", "file system usage profiles"),
            ] {
                if let Some(l) = p.loc_of(o) {
                    refused.push(
                        Problem::error(format!("`part {o}`: kiln does not support {why}"))
                            .at(l.clone())
                            .help("remove the option; kiln writes a new partition with a fresh file system"),
                    );
                }
            }
            ks.partitions.push(Partition {
                mountpoint,
                size: p.int("--size", cmd)?,
                grow: p.flag("--grow"),
                maxsize: p.int("--maxsize", cmd)?,
                fstype: p.value("--fstype").map(str::to_string),
                label: p.value("--label").map(str::to_string),
                fsoptions: p.value("--fsoptions").map(str::to_string),
                ondisk: p.value("--ondisk").map(str::to_string),
                loc,
                refused,
            });
        }
        "autopart" => {
            let p = parse_opts(cmd, AUTOPART)?;
            no_args(&p)?;
            ks.autopart = Some(Autopart {
                r#type: p
                    .value("--type")
                    .map(str::to_string)
                    .or_else(|| p.flag("--nolvm").then(|| "plain".to_string())),
                fstype: p.value("--fstype").map(str::to_string),
                encrypted: p.flag("--encrypted"),
                loc,
            });
        }
        "bootloader" => {
            let p = parse_opts(cmd, BOOTLOADER)?;
            no_args(&p)?;
            for o in ["--password", "--md5pass", "--extlinux"] {
                if let Some(l) = p.loc_of(o) {
                    ks.notes.push(
                        Problem::error(format!("`bootloader {o}` is not supported: kiln installs grub2 or systemd-boot without a boot password"))
                            .at(l.clone())
                            .help("remove the option, or set the password in %post with grub2-setpassword"),
                    );
                }
            }
            for o in [
                "--location",
                "--timeout",
                "--driveorder",
                "--boot-drive",
                "--leavebootorder",
                "--nombr",
                "--default",
            ] {
                if let Some(l) = p.loc_of(o) {
                    ks.notes.push(
                        Problem::warning(format!("`bootloader {o}` is not used: kiln writes a UEFI boot setup with the bootloader's defaults"))
                            .at(l.clone()),
                    );
                }
            }
            // As pykickstart: switches are set again, values only when given.
            let prev = ks.bootloader.take();
            let prev = prev.as_ref();
            ks.bootloader = Some(Bootloader {
                append: p
                    .value("--append")
                    .map(str::to_string)
                    .or_else(|| prev.and_then(|b| b.append.clone())),
                disabled: p.flag("--disabled"),
                sdboot: p.flag("--sdboot"),
                timeout: p.int("--timeout", cmd)?.or(prev.and_then(|b| b.timeout)),
                location: p
                    .value("--location")
                    .map(str::to_string)
                    .or_else(|| prev.and_then(|b| b.location.clone())),
                loc,
            });
        }
        "network" => {
            let p = parse_opts(cmd, NETWORK)?;
            no_args(&p)?;
            if let Some(h) = p.value("--hostname") {
                ks.hostname = Some(h.to_string());
                ks.locs.insert("hostname", loc.clone());
            }
            let (mut installer, mut refused) = (Vec::new(), Vec::new());
            let dhcp = p.value("--bootproto").is_none_or(|b| b == "dhcp");
            for (o, _, l) in &p.opts {
                if *o == "--hostname" {
                    continue;
                }
                if NETWORK_INSTALLER_ONLY.contains(o) && dhcp {
                    installer.push(*o);
                } else {
                    refused.push((*o, l));
                }
            }
            if !installer.is_empty() {
                ks.notes.push(
                    Problem::warning(format!("`network {}` configures the installer's connection and is not carried into the image", installer.join(" ")))
                        .at(loc.clone())
                        .help("the image's network comes from its packages (cloud-init, systemd-networkd, NetworkManager)"),
                );
            }
            for (o, l) in refused {
                ks.notes.push(
                    Problem::error(format!("`network {o}` cannot be represented: kiln writes no network configuration"))
                        .at(l.clone())
                        .help("write the configuration file (a systemd-networkd .network or NetworkManager keyfile) in %post"),
                );
            }
        }
        "services" => {
            let p = parse_opts(cmd, SERVICES)?;
            no_args(&p)?;
            // As pykickstart: a later `services` line replaces only the lists it gives.
            let prev = ks.services.take();
            let keep = |given: Option<&str>, old: Option<Vec<String>>| match given {
                Some(v) => comma_split(v),
                None => old.unwrap_or_default(),
            };
            let (pe, pd) = match prev {
                Some(s) => (Some(s.enabled), Some(s.disabled)),
                None => (None, None),
            };
            ks.services = Some(Services {
                enabled: keep(p.value("--enabled"), pe),
                disabled: keep(p.value("--disabled"), pd),
                loc,
            });
        }
        "rootpw" => {
            let p = parse_opts(cmd, ROOTPW)?;
            let password = one_arg(&p, "password")?;
            if password.is_none() && !p.flag("--lock") {
                return Err(Problem::error("`rootpw` needs a password or --lock").at(loc));
            }
            ks.rootpw = Some(RootPw {
                password,
                iscrypted: p.flag("--iscrypted") && !p.flag("--plaintext"),
                lock: p.flag("--lock"),
                allow_ssh: p.flag("--allow-ssh"),
                loc,
            });
        }
        "user" => {
            let p = parse_opts(cmd, USER)?;
            no_args(&p)?;
            let Some(name) = p.value("--name") else {
                return Err(Problem::error("`user` needs --name").at(loc));
            };
            ks.users.push(User {
                name: name.to_string(),
                groups: p.list("--groups"),
                uid: p.int("--uid", cmd)?,
                gid: p.int("--gid", cmd)?,
                homedir: p.value("--homedir").map(str::to_string),
                shell: p.value("--shell").map(str::to_string),
                password: p.value("--password").map(str::to_string),
                iscrypted: p.flag("--iscrypted") && !p.flag("--plaintext"),
                lock: p.flag("--lock"),
                gecos: p.value("--gecos").map(str::to_string),
                loc,
            });
        }
        "group" => {
            let p = parse_opts(cmd, GROUP)?;
            no_args(&p)?;
            let Some(name) = p.value("--name") else {
                return Err(Problem::error("`group` needs --name").at(loc));
            };
            ks.groups.push(Group {
                name: name.to_string(),
                gid: p.int("--gid", cmd)?,
                loc,
            });
        }
        "sshkey" => {
            let p = parse_opts(cmd, SSHKEY)?;
            let Some(username) = p.value("--username") else {
                return Err(Problem::error("`sshkey` needs --username").at(loc));
            };
            let Some(key) = one_arg(&p, "key (quote it)")? else {
                return Err(Problem::error("`sshkey` needs the key, in quotes").at(loc));
            };
            ks.sshkeys.push(SshKey {
                username: username.to_string(),
                key,
                loc,
            });
        }
        "timezone" => {
            let p = parse_opts(cmd, TIMEZONE)?;
            ks.timezone = Some(Timezone {
                timezone: one_arg(&p, "time zone")?,
                utc: p.flag("--utc"),
                nontp: p.flag("--nontp"),
                ntpservers: p.list("--ntpservers"),
                loc,
            });
        }
        "timesource" => {
            let p = parse_opts(cmd, TIMESOURCE)?;
            no_args(&p)?;
            if p.flag("--ntp-disable") {
                ks.ntp_disabled = Some(loc);
            } else {
                ks.notes.push(
                    Problem::error("`timesource` with servers cannot be represented: kiln does not edit chrony.conf")
                        .at(loc)
                        .help("write the servers into /etc/chrony.conf in %post"),
                );
            }
        }
        "lang" => {
            let p = parse_opts(cmd, LANG)?;
            ks.lang = one_arg(&p, "language")?;
            ks.locs.insert("lang", loc.clone());
            if ks.lang.is_none() {
                return Err(Problem::error("`lang` needs a language (`en_US.UTF-8`)").at(loc));
            }
            if let Some(l) = p.loc_of("--addsupport") {
                ks.notes.push(
                    Problem::warning("`lang --addsupport` is not used: kiln installs no language packs by itself")
                        .at(l.clone())
                        .help("add the glibc-langpack-* packages to %packages"),
                );
            }
        }
        "keyboard" => {
            let p = parse_opts(cmd, KEYBOARD)?;
            ks.keyboard = Some(Keyboard {
                keyboard: one_arg(&p, "layout")?,
                vckeymap: p.value("--vckeymap").map(str::to_string),
                xlayouts: p.list("--xlayouts"),
                loc,
            });
            if let Some(l) = p.loc_of("--switch") {
                ks.notes.push(
                    Problem::warning(
                        "`keyboard --switch` is not used: kiln writes only the console keymap",
                    )
                    .at(l.clone()),
                );
            }
        }
        "selinux" => {
            let p = parse_opts(cmd, SELINUX)?;
            no_args(&p)?;
            // argparse's store_const: the last option given wins.
            ks.selinux = p
                .opts
                .last()
                .map(|(o, _, _)| o.trim_start_matches('-').to_string());
            ks.locs.insert("selinux", loc.clone());
        }
        "firewall" => {
            let p = parse_opts(cmd, FIREWALL)?;
            no_args(&p)?;
            let enabled = p.opts.iter().rev().find_map(|(o, _, _)| match *o {
                "--enabled" => Some(true),
                "--disabled" => Some(false),
                _ => None,
            });
            // --service, --port, --trust and --remove-service extend their lists, and the
            // legacy --ssh-style switches add to the services, all in the order written.
            let (mut services, mut ports, mut trusts, mut remove) =
                (vec![], vec![], vec![], vec![]);
            for (o, v, _) in &p.opts {
                let v = v.as_deref().map(comma_split).unwrap_or_default();
                match *o {
                    "--service" => services.extend(v),
                    "--port" => ports.extend(v),
                    "--trust" => trusts.extend(v),
                    "--remove-service" => remove.extend(v),
                    "--ssh" | "--smtp" | "--http" | "--ftp" => services.push(o[2..].to_string()),
                    _ => {}
                }
            }
            ks.firewall = Some(Firewall {
                enabled,
                services,
                ports,
                trusts,
                remove_services: remove,
                use_system_defaults: p.flag("--use-system-defaults"),
                loc,
            });
        }
        "repo" => {
            let p = parse_opts(cmd, REPO)?;
            no_args(&p)?;
            let Some(name) = p.value("--name") else {
                return Err(Problem::error("`repo` needs --name").at(loc));
            };
            for o in [
                "--proxy",
                "--noverifyssl",
                "--sslcacert",
                "--sslclientcert",
                "--sslclientkey",
            ] {
                if let Some(l) = p.loc_of(o) {
                    ks.notes.push(
                        Problem::error(format!("`repo {o}` is not supported by kiln's downloader"))
                            .at(l.clone())
                            .help(
                                "remove it (kiln uses the system's CA certificates and no proxy)",
                            ),
                    );
                }
            }
            ks.repos.push(Repo {
                name: name.to_string(),
                baseurl: p.value("--baseurl").map(str::to_string),
                mirrorlist: p.value("--mirrorlist").map(str::to_string),
                metalink: p.value("--metalink").map(str::to_string),
                cost: p.int("--cost", cmd)?,
                excludepkgs: p.list("--excludepkgs"),
                includepkgs: p.list("--includepkgs"),
                install: p.flag("--install"),
                loc,
            });
        }
        "url" => {
            let p = parse_opts(cmd, URL)?;
            no_args(&p)?;
            for o in [
                "--proxy",
                "--noverifyssl",
                "--sslcacert",
                "--sslclientcert",
                "--sslclientkey",
            ] {
                if let Some(l) = p.loc_of(o) {
                    ks.notes.push(
                        Problem::error(format!("`url {o}` is not supported by kiln's downloader"))
                            .at(l.clone())
                            .help(
                                "remove it (kiln uses the system's CA certificates and no proxy)",
                            ),
                    );
                }
            }
            ks.url = Some(Url {
                url: p.value("--url").map(str::to_string),
                mirrorlist: p.value("--mirrorlist").map(str::to_string),
                metalink: p.value("--metalink").map(str::to_string),
                loc,
            });
        }
        other => match classify(other) {
            Some(_) => ks.other.push(Other {
                name: other.to_string(),
                loc,
            }),
            None => {
                return Err(Problem::error(format!("unknown kickstart command `{other}`"))
                    .at(loc)
                    .help("see the kickstart reference (pykickstart's current version) for the commands"));
            }
        },
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Conversion: the kickstart as a definition tree, located at the kickstart's lines.
// ---------------------------------------------------------------------------------------------

/// Builds definition nodes; every node points at the kickstart line it came from.
fn s(v: impl Into<String>, loc: &Loc) -> Node {
    // Kickstart text has no kiln variables: a literal `${` must survive expansion.
    Node::str(v.into().replace("${", "$${"), loc.clone())
}

/// Text that is never expanded (file and script contents).
fn raw(v: impl Into<String>, loc: &Loc) -> Node {
    Node::str(v, loc.clone())
}

fn int(v: i64, loc: &Loc) -> Node {
    let mut n = Node::new(NodeKind::Int(v.into()), loc.clone());
    n.literal = Some(v.to_string());
    n
}

fn boolean(v: bool, loc: &Loc) -> Node {
    Node::new(NodeKind::Bool(v), loc.clone())
}

fn seq(items: Vec<Node>, loc: &Loc) -> Node {
    Node::new(NodeKind::Seq(items), loc.clone())
}

/// A mapping under construction.
struct Map {
    entries: Vec<(Key, Node)>,
    loc: Loc,
}

impl Map {
    fn new(loc: &Loc) -> Self {
        Map {
            entries: Vec::new(),
            loc: loc.clone(),
        }
    }

    fn put(&mut self, key: &str, value: Node) -> &mut Self {
        let k = Key {
            name: key.to_string(),
            loc: value.loc.clone(),
        };
        self.entries.push((k, value));
        self
    }

    fn opt(&mut self, key: &str, value: Option<Node>) -> &mut Self {
        if let Some(v) = value {
            self.put(key, v);
        }
        self
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn node(self) -> Node {
        Node::new(NodeKind::Map(self.entries), self.loc)
    }
}

/// The definition name a kickstart file gets: its file name without `.ks`, made a valid name.
pub fn name_for(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.is_empty() {
        "kickstart".into()
    } else {
        name
    }
}

/// The repository id kiln gives the `url` command's installation source (anaconda's own name).
pub const URL_REPO_ID: &str = "anaconda";

/// Turns a kickstart into a definition tree. Problems say what was not carried over and why.
pub fn convert(ks: &Kickstart, path: &Path, root: &Loc) -> (Node, Vec<Problem>) {
    let mut problems: Vec<Problem> = ks.notes.clone();
    let mut top = Map::new(root);
    top.put("name", s(name_for(path), root));

    for o in &ks.other {
        problems.push(other_problem(o));
    }

    // Repositories: `url` first (the installation source), then `repo` lines.
    let mut repos = Vec::new();
    let mut files = Vec::new();
    if let Some(u) = &ks.url {
        repos.push(repository(
            URL_REPO_ID,
            u.url.as_deref(),
            u.mirrorlist.as_deref(),
            u.metalink.as_deref(),
            None,
            &[],
            &u.loc,
        ));
    }
    for r in &ks.repos {
        if !r.includepkgs.is_empty() {
            problems.push(
                Problem::error(format!("`repo --includepkgs` (repository `{}`) cannot be represented: kiln repositories take only excludes", r.name))
                    .at(r.loc.clone())
                    .help("list the packages you do not want from it under --excludepkgs instead"),
            );
        }
        repos.push(repository(
            &r.name,
            r.baseurl.as_deref(),
            r.mirrorlist.as_deref(),
            r.metalink.as_deref(),
            r.cost,
            &r.excludepkgs,
            &r.loc,
        ));
        if r.install {
            files.push(repo_file(r));
        }
    }
    if !repos.is_empty() {
        top.put("repositories", seq(repos, root));
    }

    let (system, extra_packages) = system_node(ks, root, files, &mut problems);
    top.put(
        "packages",
        packages_node(&ks.packages, root, extra_packages, &mut problems),
    );
    if !system.is_empty() {
        top.put("system", system.node());
    }

    if let Some(disk) = disk_node(ks, &mut problems) {
        let mut outputs = Map::new(root);
        outputs.put("disk", disk);
        top.put("outputs", outputs.node());
    }
    (top.node(), problems)
}

fn other_problem(o: &Other) -> Problem {
    if o.name.starts_with('%') {
        return match o.name.as_str() {
            "%anaconda" => Problem::warning("section `%anaconda` configures the installer's user interface; it is not used")
                .at(o.loc.clone()),
            "%certificate" => Problem::error("section `%certificate` cannot be represented")
                .at(o.loc.clone())
                .help("put the certificate in the image with a %post script (or a definition's `system.files`)"),
            _ => Problem::error(format!("section `{}` (an installer add-on) cannot be represented", o.name))
                .at(o.loc.clone())
                .help("remove it, or do what it configures in %post"),
        };
    }
    match classify(&o.name) {
        Some(Class::InstallerOnly(why)) => {
            Problem::warning(format!("`{}` is not used: it is about {why}", o.name))
                .at(o.loc.clone())
        }
        Some(Class::Refused(why)) => {
            Problem::error(format!("`{}` cannot be represented: {why}", o.name)).at(o.loc.clone())
        }
        None => Problem::error(format!("unknown kickstart command `{}`", o.name)).at(o.loc.clone()),
    }
}

#[allow(clippy::too_many_arguments)]
fn repository(
    id: &str,
    baseurl: Option<&str>,
    mirrorlist: Option<&str>,
    metalink: Option<&str>,
    cost: Option<i64>,
    excludes: &[String],
    loc: &Loc,
) -> Node {
    let mut m = Map::new(loc);
    m.put("id", s(id, loc));
    if let Some(b) = baseurl {
        m.put("baseurl", seq(vec![s(b, loc)], loc));
    }
    m.opt("mirrorlist", mirrorlist.map(|v| s(v, loc)));
    m.opt("metalink", metalink.map(|v| s(v, loc)));
    if let Some(c) = cost {
        m.put("cost", int(c, loc));
    }
    if !excludes.is_empty() {
        m.put(
            "excludes",
            seq(excludes.iter().map(|e| s(e, loc)).collect(), loc),
        );
    }
    // Anaconda does not check the signatures of kickstart repositories, and kickstart cannot
    // name a key: the definition says so (and validation warns) rather than failing for want of
    // a `gpgkey`.
    m.put("gpgcheck", boolean(false, loc));
    m.node()
}

/// `repo --install`: the repository as a dnf `.repo` file in the image, as anaconda writes it.
fn repo_file(r: &Repo) -> Node {
    let mut text = format!("[{}]\nname={}\n", r.name, r.name);
    if let Some(b) = &r.baseurl {
        text.push_str(&format!("baseurl={b}\n"));
    }
    if let Some(m) = &r.mirrorlist {
        text.push_str(&format!("mirrorlist={m}\n"));
    }
    if let Some(m) = &r.metalink {
        text.push_str(&format!("metalink={m}\n"));
    }
    if let Some(c) = r.cost {
        text.push_str(&format!("cost={c}\n"));
    }
    if !r.excludepkgs.is_empty() {
        text.push_str(&format!("excludepkgs={}\n", r.excludepkgs.join(",")));
    }
    text.push_str("enabled=1\n");
    let mut m = Map::new(&r.loc);
    m.put(
        "path",
        s(format!("/etc/yum.repos.d/{}.repo", r.name), &r.loc),
    );
    m.put("content", raw(text, &r.loc));
    m.put("mode", s("0644", &r.loc));
    m.node()
}

fn packages_node(pk: &Packages, root: &Loc, extra: Vec<Node>, problems: &mut Vec<Problem>) -> Node {
    let loc = pk.header.as_ref().unwrap_or(root);
    problems.extend(pk.refused.iter().cloned());
    let mut m = Map::new(loc);
    let mut install = Vec::new();
    if !pk.nocore {
        // Anaconda always adds the core group unless told otherwise.
        install.push(s("@core", loc));
    }
    if let (Some(env), Some(l)) = (&pk.environment, &pk.env_loc) {
        problems.push(
            Problem::error(format!("environment group `@^{env}` is not supported: kiln installs comps groups, not environments"))
                .at(l.clone())
                .help("list the environment's groups (`@name`) instead"),
        );
    }
    for g in &pk.groups {
        if g.include != "default" {
            problems.push(
                Problem::error(format!("group `@{}`: --nodefaults and --optional are not supported; kiln installs a group's mandatory and default packages", g.name))
                    .at(g.loc.clone())
                    .help("drop the option and list the packages you want (or do not want) by name"),
            );
        }
        let name = format!("@{}", g.name);
        if !install
            .iter()
            .any(|n: &Node| n.as_text() == Some(name.as_str()))
        {
            install.push(s(name, &g.loc));
        }
    }
    let mut seen = BTreeSet::new();
    let mut excludes = Vec::new();
    for (name, l) in &pk.order {
        if let Some(x) = name.strip_prefix('-') {
            if pk.excluded.binary_search_by(|e| e.as_str().cmp(x)).is_ok()
                && seen.insert(name.clone())
            {
                excludes.push(s(x, l));
            }
        } else if pk.packages.binary_search(name).is_ok() && seen.insert(name.clone()) {
            install.push(s(name.as_str(), l));
        }
    }
    for e in extra {
        if !install.iter().any(|n| n.as_text() == e.as_text()) {
            install.push(e);
        }
    }
    m.put("install", seq(install, loc));
    if !excludes.is_empty() {
        m.put("exclude", seq(excludes, loc));
    }
    if pk.exclude_weakdeps {
        m.put("weak-deps", boolean(false, loc));
    }
    if pk.excludedocs {
        m.put("docs", boolean(false, loc));
    }
    if let Some(langs) = &pk.inst_langs {
        let list: Vec<Node> = langs
            .split([':', ','])
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| s(l, loc))
            .collect();
        if list.is_empty() {
            problems.push(
                Problem::error("`%packages --inst-langs=` (no languages) cannot be represented: kiln's empty `languages` keeps them all")
                    .at(loc.clone())
                    .help("name the languages to keep, e.g. --inst-langs=en"),
            );
        } else {
            m.put("languages", seq(list, loc));
        }
    }
    m.node()
}

/// The `system` mapping, and packages the settings need (firewalld for `firewall --enabled`).
fn system_node(
    ks: &Kickstart,
    root: &Loc,
    files: Vec<Node>,
    problems: &mut Vec<Problem>,
) -> (Map, Vec<Node>) {
    let mut sys = Map::new(root);
    let at = |what: &str| ks.locs.get(what).unwrap_or(root);
    if let Some(h) = &ks.hostname {
        sys.put("hostname", s(h, at("hostname")));
    }
    if let Some(l) = &ks.lang {
        sys.put("locale", s(l, at("lang")));
    }
    if let Some(k) = &ks.keyboard {
        let keymap = k
            .vckeymap
            .clone()
            .or_else(|| k.keyboard.clone())
            .or_else(|| k.xlayouts.first().cloned());
        if !k.xlayouts.is_empty() {
            problems.push(
                Problem::warning("`keyboard --xlayouts` is not written: kiln sets only the console keymap (/etc/vconsole.conf)")
                    .at(k.loc.clone())
                    .help("configure X11 layouts in %post with localectl set-x11-keymap, if the image has a desktop"),
            );
        }
        sys.opt("keymap", keymap.map(|v| s(v, &k.loc)));
    }
    let mut mask = Vec::new();
    if let Some(t) = &ks.timezone {
        sys.opt("timezone", t.timezone.as_ref().map(|z| s(z, &t.loc)));
        if !t.utc && t.timezone.is_some() {
            problems.push(
                Problem::warning("`timezone` without --utc: kiln keeps the hardware clock in UTC (it writes no /etc/adjtime)")
                    .at(t.loc.clone())
                    .help("add --utc to say so"),
            );
        }
        if !t.ntpservers.is_empty() {
            problems.push(
                Problem::error(
                    "`timezone --ntpservers` cannot be represented: kiln does not edit chrony.conf",
                )
                .at(t.loc.clone())
                .help("write the servers into /etc/chrony.conf in %post"),
            );
        }
        if t.nontp {
            mask.push(s("chronyd.service", &t.loc));
        }
    }
    if let Some(l) = &ks.ntp_disabled
        && !ks.timezone.as_ref().is_some_and(|t| t.nontp)
    {
        mask.push(s("chronyd.service", l));
    }
    if let Some(m) = &ks.selinux {
        sys.put("selinux", s(m, at("selinux")));
    }
    if let Some(b) = &ks.bootloader
        && let Some(a) = &b.append
    {
        let args: Vec<Node> = a.split_whitespace().map(|w| s(w, &b.loc)).collect();
        if !args.is_empty() {
            sys.put("kernel-cmdline", seq(args, &b.loc));
        }
    }
    // Anaconda creates the groups a `user --groups` names that do not exist; kiln's users
    // stage does the same with a `system.groups` entry without gid (a no-op for a group the
    // image's packages already made).
    let mut groups: Vec<Node> = Vec::new();
    let mut named: Vec<&str> = Vec::new();
    for g in &ks.groups {
        let mut m = Map::new(&g.loc);
        m.put("name", s(&g.name, &g.loc));
        if let Some(gid) = g.gid {
            m.put("gid", int(gid, &g.loc));
        }
        groups.push(m.node());
        named.push(&g.name);
    }
    for u in &ks.users {
        for g in &u.groups {
            if !named.contains(&g.as_str()) {
                let mut m = Map::new(&u.loc);
                m.put("name", s(g, &u.loc));
                groups.push(m.node());
                named.push(g);
            }
        }
    }
    if !groups.is_empty() {
        sys.put("groups", seq(groups, root));
    }
    let users = users_node(ks, problems);
    if !users.is_empty() {
        sys.put("users", seq(users, root));
    }

    let mut services = Map::new(root);
    let mut enable = Vec::new();
    let mut disable = Vec::new();
    if let Some(sv) = &ks.services {
        enable.extend(sv.enabled.iter().map(|u| s(u, &sv.loc)));
        disable.extend(sv.disabled.iter().map(|u| s(u, &sv.loc)));
    }
    let mut extra_packages = Vec::new();
    if let Some(f) = &ks.firewall {
        match f.enabled {
            Some(false) => mask.push(s("firewalld.service", &f.loc)),
            Some(true) => {
                enable.push(s("firewalld", &f.loc));
                // Anaconda installs firewalld when the firewall is enabled.
                extra_packages.push(s("firewalld", &f.loc));
            }
            None => {}
        }
        if !f.services.is_empty()
            || !f.ports.is_empty()
            || !f.trusts.is_empty()
            || !f.remove_services.is_empty()
        {
            problems.push(
                Problem::error("`firewall` --service/--port/--trust/--remove-service cannot be represented: kiln does not write firewalld zones")
                    .at(f.loc.clone())
                    .help("keep `firewall --enabled` and run `firewall-offline-cmd --add-service=NAME` (or --add-port) in %post"),
            );
        }
    }
    if !enable.is_empty() {
        services.put("enable", seq(enable, root));
    }
    if !disable.is_empty() {
        services.put("disable", seq(disable, root));
    }
    if !mask.is_empty() {
        services.put("mask", seq(mask, root));
    }
    if !services.is_empty() {
        sys.put("services", services.node());
    }
    if !files.is_empty() {
        sys.put("files", seq(files, root));
    }
    let scripts = scripts_node(ks, root, problems);
    if !scripts.is_empty() {
        sys.put("scripts", scripts.node());
    }
    (sys, extra_packages)
}

fn users_node(ks: &Kickstart, problems: &mut Vec<Problem>) -> Vec<Node> {
    // One entry per user name: `sshkey` and `rootpw` add to a `user` line's entry.
    let mut order: Vec<String> = Vec::new();
    let mut maps: BTreeMap<String, Map> = BTreeMap::new();
    fn entry(
        maps: &mut BTreeMap<String, Map>,
        name: &str,
        loc: &Loc,
        order: &mut Vec<String>,
    ) -> Map {
        if let Some(m) = maps.remove(name) {
            return m;
        }
        order.push(name.to_string());
        let mut m = Map::new(loc);
        m.put("name", s(name, loc));
        m
    }
    for u in &ks.users {
        let mut m = entry(&mut maps, &u.name, &u.loc, &mut order);
        if let Some(uid) = u.uid {
            m.put("uid", int(uid, &u.loc));
        }
        if let Some(gid) = u.gid {
            m.put("gid", int(gid, &u.loc));
        }
        if !u.groups.is_empty() {
            m.put(
                "groups",
                seq(u.groups.iter().map(|g| s(g, &u.loc)).collect(), &u.loc),
            );
        }
        m.opt("home", u.homedir.as_ref().map(|h| s(h, &u.loc)));
        m.opt("shell", u.shell.as_ref().map(|h| s(h, &u.loc)));
        m.opt("comment", u.gecos.as_ref().map(|h| s(h, &u.loc)));
        password(
            &mut m,
            &format!("user `{}`", u.name),
            u.password.as_deref(),
            u.iscrypted,
            u.lock,
            &u.loc,
            problems,
        );
        maps.insert(u.name.clone(), m);
    }
    if let Some(r) = &ks.rootpw {
        let mut m = entry(&mut maps, "root", &r.loc, &mut order);
        password(
            &mut m,
            "rootpw",
            r.password.as_deref(),
            r.iscrypted,
            r.lock,
            &r.loc,
            problems,
        );
        if r.allow_ssh {
            problems.push(
                Problem::error("`rootpw --allow-ssh` cannot be represented: kiln does not change sshd's configuration")
                    .at(r.loc.clone())
                    .help("give root an `sshkey` instead, or write PermitRootLogin into /etc/ssh/sshd_config.d/ in %post"),
            );
        }
        maps.insert("root".into(), m);
    }
    let mut keys: BTreeMap<String, Vec<Node>> = BTreeMap::new();
    for k in &ks.sshkeys {
        if !maps.contains_key(&k.username) {
            let m = entry(&mut maps, &k.username, &k.loc, &mut order);
            maps.insert(k.username.clone(), m);
        }
        keys.entry(k.username.clone())
            .or_default()
            .push(s(&k.key, &k.loc));
    }
    order
        .into_iter()
        .map(|name| {
            let mut m = maps.remove(&name).expect("every ordered name has an entry");
            if let Some(k) = keys.remove(&name) {
                let loc = k[0].loc.clone();
                m.put("ssh-authorized-keys", seq(k, &loc));
            }
            m.node()
        })
        .collect()
}

fn password(
    m: &mut Map,
    what: &str,
    password: Option<&str>,
    iscrypted: bool,
    lock: bool,
    loc: &Loc,
    problems: &mut Vec<Problem>,
) {
    match password {
        None => {}
        Some(p) if !iscrypted => problems.push(
            Problem::error(format!("{what}: a plain-text password is refused; kiln never stores passwords in clear"))
                .at(loc.clone())
                .help(format!(
                    "hash it (`openssl passwd -6` or `mkpasswd -m yescrypt`) and write --iscrypted with the hash{}",
                    if p.is_empty() { "" } else { ", or use --lock and an sshkey" }
                )),
        ),
        Some(p) if is_crypt_hash(p) => {
            m.put("password-hash", s(p, loc));
        }
        Some(p) => {
            // `rootpw --iscrypted locked` and the like: no password can match such a value, so
            // the account has no usable password, which is what a locked password means.
            if !lock {
                problems.push(
                    Problem::warning(format!("{what}: `{p}` is not a crypt(3) hash, so no password can match it; the password is locked"))
                        .at(loc.clone())
                        .help("add --lock to say so, or give a real hash (`openssl passwd -6`)"),
                );
            }
            m.put("password-locked", boolean(true, loc));
            return;
        }
    }
    if lock {
        m.put("password-locked", boolean(true, loc));
    }
}

fn scripts_node(ks: &Kickstart, root: &Loc, problems: &mut Vec<Problem>) -> Map {
    let mut post = Vec::new();
    for sc in &ks.scripts {
        let at = format!(
            "{}:{}",
            sc.loc
                .file
                .path
                .file_name()
                .map(|f| f.to_string_lossy())
                .unwrap_or_default(),
            sc.loc.line
        );
        match sc.r#type {
            "post" => {}
            "pre" => {
                problems.push(
                    Problem::warning("%pre runs in the installer before anything is installed; kiln has no installer and does not run it")
                        .at(sc.loc.clone())
                        .help("if it writes files that are %include-d, write them beside the kickstart instead"),
                );
                continue;
            }
            "pre-install" => {
                problems.push(
                    Problem::error("%pre-install cannot be represented: kiln has no step between partitioning and installing packages")
                        .at(sc.loc.clone())
                        .help("move the work to %post"),
                );
                continue;
            }
            other => {
                problems.push(
                    Problem::warning(format!(
                        "%{other} runs only when the installer fails; kiln does not run it"
                    ))
                    .at(sc.loc.clone()),
                );
                continue;
            }
        }
        if !sc.chroot {
            problems.push(
                Problem::error("%post --nochroot cannot be represented: kiln runs scripts only inside the image, never on the build host")
                    .at(sc.loc.clone())
                    .help("write it as a plain %post, with paths inside the image (drop the /mnt/sysimage prefix)"),
            );
            continue;
        }
        if let Some(log) = &sc.log {
            problems.push(
                Problem::warning(format!("%post --log={log}: kiln shows the script's output in its own log and writes no log file into the image"))
                    .at(sc.loc.clone()),
            );
        }
        if !sc.error_on_fail {
            problems.push(
                Problem::warning("%post without --erroronfail: kiln stops the build when a script fails, where anaconda would go on")
                    .at(sc.loc.clone())
                    .help("add --erroronfail to say so, or end the script with `exit 0`"),
            );
        }
        let mut m = Map::new(&sc.loc);
        m.put("name", s(format!("%post at {at}"), &sc.loc));
        if sc.interpreter != "/bin/sh" {
            m.put("interpreter", s(&sc.interpreter, &sc.loc));
        }
        m.put("content", raw(&sc.body, &sc.loc));
        post.push(m.node());
    }
    let mut m = Map::new(root);
    if !post.is_empty() {
        m.put("post-install", seq(post, root));
    }
    m
}

/// Maps kickstart `part` sizes (MiB) and file system names onto kiln partitions.
fn disk_node(ks: &Kickstart, problems: &mut Vec<Problem>) -> Option<Node> {
    let bootloader = ks.bootloader.as_ref();
    if ks.partitions.is_empty() && ks.autopart.is_none() {
        if let Some(b) = bootloader
            && b.sdboot
        {
            problems.push(
                Problem::warning("`bootloader --sdboot` is not used: the kickstart has no `part` or `autopart`, so kiln makes no disk image from it")
                    .at(b.loc.clone()),
            );
        }
        return None;
    }
    if !ks.partitions.is_empty()
        && let Some(a) = &ks.autopart
    {
        problems.push(
            Problem::error("`autopart` and `part` cannot be used together")
                .at(a.loc.clone())
                .help("keep one of them"),
        );
    }
    let first = ks
        .partitions
        .first()
        .map(|p| &p.loc)
        .or(ks.autopart.as_ref().map(|a| &a.loc))
        .expect("a partition or autopart");
    let mut disk = Map::new(first);
    let mut parts = Vec::new();
    let mut total: u64 = 2; // MiB: the GPT before the first partition and its backup after the last
    if let Some(a) = &ks.autopart {
        match a.r#type.as_deref() {
            None | Some("plain") => problems.push(
                Problem::warning("`autopart`: kiln uses its default layout, a 200MiB EFI system partition at /boot/efi and an ext4 root filling the disk")
                    .at(a.loc.clone())
                    .help("write `part` lines for another layout"),
            ),
            Some(t) => problems.push(
                Problem::error(format!("`autopart --type={t}` cannot be represented: kiln writes plain GPT partitions with ext4 and vfat"))
                    .at(a.loc.clone())
                    .help("use `autopart --type=plain`, or `part` lines"),
            ),
        }
        if a.encrypted {
            problems.push(
                Problem::error("`autopart --encrypted`: kiln does not write encrypted partitions")
                    .at(a.loc.clone()),
            );
        }
        if let Some(f) = a.fstype.as_deref().filter(|f| *f != "ext4") {
            problems.push(
                Problem::error(format!(
                    "`autopart --fstype={f}`: kiln's root file system is ext4"
                ))
                .at(a.loc.clone()),
            );
        }
    }
    let growing = ks.partitions.iter().filter(|p| p.grow).count();
    for p in &ks.partitions {
        problems.extend(p.refused.iter().cloned());
        let loc = &p.loc;
        let fstype = p.fstype.as_deref();
        let (name, ptype, fs, mount): (String, &str, Option<&str>, Option<&str>) = match (
            p.mountpoint.as_str(),
            fstype,
        ) {
            ("biosboot", _) | (_, Some("biosboot")) => {
                ("bios-boot".into(), "bios-boot", None, None)
            }
            ("swap", _) | (_, Some("swap")) => ("swap".into(), "swap", None, None),
            ("/boot/efi", _) | (_, Some("efi")) => {
                ("esp".into(), "esp", Some("vfat"), Some("/boot/efi"))
            }
            (m, _) if m.starts_with('/') => {
                let (name, ptype) = match m {
                    "/" => ("root".to_string(), "root"),
                    "/boot" => ("boot".to_string(), "xbootldr"),
                    "/home" => ("home".to_string(), "home"),
                    "/srv" => ("srv".to_string(), "srv"),
                    "/var" => ("var".to_string(), "var"),
                    "/tmp" => ("tmp".to_string(), "tmp"),
                    other => (other.trim_matches('/').replace('/', "-"), "linux"),
                };
                (name, ptype, Some("ext4"), Some(m))
            }
            (m, _) => {
                problems.push(
                    Problem::error(format!("`part {m}` cannot be represented: kiln writes plain partitions mounted at a path (`/`, `/boot`, `/boot/efi`), `biosboot` or `swap`"))
                        .at(loc.clone())
                        .help("LVM physical volumes, RAID members, btrfs volumes and PReP boot partitions are not supported"),
                );
                continue;
            }
        };
        let fs = match (fs, fstype) {
            (Some(_), Some("ext4" | "efi" | "vfat")) | (Some(_), None) => fs,
            (None, _) => None,
            (Some(_), Some(other)) => {
                problems.push(
                    Problem::error(format!("`part {} --fstype={other}`: kiln writes ext4 (and vfat for the EFI system partition)", p.mountpoint))
                        .at(loc.clone())
                        .help("use --fstype=ext4"),
                );
                continue;
            }
        };
        let fs = if ptype == "esp" { Some("vfat") } else { fs };
        let mut m = Map::new(loc);
        m.put("name", s(&name, loc));
        m.put("type", s(ptype, loc));
        let size = match (p.size, p.grow) {
            (_, true) if growing == 1 => {
                if p.maxsize.is_some() {
                    problems.push(
                        Problem::error(format!("`part {} --grow --maxsize`: kiln's growing partition fills the disk, without a limit", p.mountpoint))
                            .at(loc.clone())
                            .help("drop --maxsize, or give a fixed --size without --grow"),
                    );
                }
                total += p.size.unwrap_or(0).max(0) as u64;
                s("rest", loc)
            }
            (_, true) => {
                problems.push(
                    Problem::error(format!(
                        "`part {} --grow`: only one partition can grow in a kiln disk layout",
                        p.mountpoint
                    ))
                    .at(loc.clone())
                    .help("give the others a fixed --size"),
                );
                continue;
            }
            (Some(mib), false) if mib > 0 => {
                total += mib as u64;
                s(format!("{mib}MiB"), loc)
            }
            _ => {
                problems.push(
                    Problem::error(format!(
                        "`part {}` needs --size (in MiB) or --grow",
                        p.mountpoint
                    ))
                    .at(loc.clone())
                    .help("kiln does not guess partition sizes"),
                );
                continue;
            }
        };
        m.put("size", size);
        m.opt("filesystem", fs.map(|f| s(f, loc)));
        m.opt("fs-label", p.label.as_ref().map(|l| s(l, loc)));
        m.opt("mount", mount.map(|v| s(v, loc)));
        let mut options: Vec<Node> = p
            .fsoptions
            .as_deref()
            .map(comma_split)
            .unwrap_or_default()
            .into_iter()
            .map(|o| s(o, loc))
            .collect();
        if options.is_empty() && ptype == "esp" {
            options.push(s("umask=0077", loc));
        }
        if !options.is_empty() {
            m.put("mount-options", seq(options, loc));
        }
        if let Some(d) = &p.ondisk {
            problems.push(
                Problem::warning(format!(
                    "`part {} --ondisk={d}` is not used: a kiln disk image is one disk",
                    p.mountpoint
                ))
                .at(loc.clone()),
            );
        }
        parts.push(m.node());
    }
    // The default 5 GiB, or just enough for the partitions (a growing one at its --size).
    let default_mib = 5 * 1024;
    if total > default_mib {
        disk.put("size", s(format!("{total}MiB"), first));
    }
    if let Some(b) = bootloader {
        if b.disabled {
            disk.put("bootloader", s("none", &b.loc));
        } else if b.sdboot {
            disk.put("bootloader", s("systemd-boot", &b.loc));
        }
    }
    if !parts.is_empty() {
        disk.put("partitions", seq(parts, first));
    }
    Some(disk.node())
}

/// Reads a kickstart and converts it: the definition tree (`None` if the file could not be
/// read), every problem found, and every file read.
pub fn load(path: &Path) -> (Option<Node>, Vec<Problem>, Vec<PathBuf>) {
    let (ks, mut problems, sources) = read(path);
    let Some(ks) = ks else {
        return (None, problems, sources);
    };
    if problems.iter().any(Problem::is_error) {
        return (None, problems, sources);
    }
    let file = ks
        .root
        .clone()
        .unwrap_or_else(|| SourceFile::new(super::normalize(path), ""));
    let root = Loc::new(&file, 1, 1, 0);
    let (node, found) = convert(&ks, path, &root);
    problems.extend(found);
    (Some(node), problems, sources)
}

// ---------------------------------------------------------------------------------------------
// YAML output for `kiln import kickstart`.
// ---------------------------------------------------------------------------------------------

/// Writes a definition tree as YAML that kiln reads back to the same tree.
pub fn to_yaml(node: &Node) -> String {
    let mut out = String::new();
    if let NodeKind::Map(entries) = &node.kind {
        emit_map(entries, 0, &mut out);
    }
    out
}

fn emit_map(entries: &[(Key, Node)], indent: usize, out: &mut String) {
    for (i, (k, v)) in entries.iter().enumerate() {
        // The first entry of a map inside a list follows its `- `.
        if i > 0 || indent == 0 || !out.ends_with("- ") {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str(&k.name);
        out.push(':');
        emit_value(v, indent, out);
    }
}

fn emit_value(v: &Node, indent: usize, out: &mut String) {
    match &v.kind {
        NodeKind::Map(entries) if entries.is_empty() => out.push_str(" {}\n"),
        NodeKind::Map(entries) => {
            out.push('\n');
            emit_map(entries, indent + 2, out);
        }
        NodeKind::Seq(items) if items.is_empty() => out.push_str(" []\n"),
        NodeKind::Seq(items) => {
            let flow: Vec<String> = items.iter().filter_map(flow_scalar).collect();
            let width: usize = flow.iter().map(|f| f.len() + 2).sum();
            if flow.len() == items.len() && indent + width < 90 {
                out.push_str(&format!(" [{}]\n", flow.join(", ")));
                return;
            }
            out.push('\n');
            for item in items {
                out.push_str(&" ".repeat(indent + 2));
                out.push_str("- ");
                match &item.kind {
                    NodeKind::Map(entries) if !entries.is_empty() => {
                        emit_map(entries, indent + 4, out)
                    }
                    _ => {
                        let mut tmp = String::new();
                        emit_value(item, indent + 4, &mut tmp);
                        out.push_str(tmp.trim_start_matches(' '));
                    }
                }
            }
        }
        NodeKind::Str(text) if text.contains('\n') && block_ok(text) => {
            let trailing = text.len() - text.trim_end_matches('\n').len();
            let chomp = match trailing {
                0 => "-",
                1 => "",
                _ => "+",
            };
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            let leading_space = text
                .lines()
                .take_while(|l| l.trim().is_empty())
                .any(|l| !l.is_empty())
                || first.starts_with(' ');
            let ind = if leading_space { "2" } else { "" };
            out.push_str(&format!(" |{ind}{chomp}\n"));
            let pad = " ".repeat(indent + 2);
            let body = if trailing > 0 {
                &text[..text.len() - 1]
            } else {
                &text[..]
            };
            for line in body.split('\n') {
                if !line.is_empty() {
                    out.push_str(&pad);
                    out.push_str(line);
                }
                out.push('\n');
            }
        }
        _ => {
            out.push(' ');
            out.push_str(&flow_scalar(v).unwrap_or_default());
            out.push('\n');
        }
    }
}

/// A scalar written on one line: plain when YAML reads it back as the same string, quoted
/// (JSON's double-quoted form, which YAML shares) otherwise.
fn flow_scalar(v: &Node) -> Option<String> {
    Some(match &v.kind {
        NodeKind::Null => "null".into(),
        NodeKind::Bool(b) => b.to_string(),
        NodeKind::Int(i) => i.to_string(),
        NodeKind::Float(f) => f.to_string(),
        NodeKind::Str(s) if plain_ok(s) => s.clone(),
        NodeKind::Str(s) => serde_json::to_string(s).expect("strings serialize"),
        _ => return None,
    })
}

fn plain_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    (first.is_ascii_alphanumeric() || first == '/')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '+' | '=' | '-'))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        )
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

/// Whether a literal block scalar can carry this text exactly.
fn block_ok(s: &str) -> bool {
    !s.chars().any(|c| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{feff}' | '\u{85}' | '\u{2028}' | '\u{2029}')
    }) && !s.starts_with('\n')
        && !s
            .lines()
            .any(|l| l.ends_with([' ', '\t']) && l.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        split(line, true)
            .unwrap()
            .into_iter()
            .map(|t| t.text)
            .collect()
    }

    #[test]
    fn splits_like_shlex() {
        assert_eq!(words("part / --size 100"), ["part", "/", "--size", "100"]);
        assert_eq!(words("a 'b c' \"d e\""), ["a", "b c", "d e"]);
        assert_eq!(words("x --name=\"a b\"c"), ["x", "--name=a bc"]);
        assert_eq!(
            words(r#"a "q\"x" "b\n" 'c\d'"#),
            ["a", "q\"x", "b\\n", "c\\d"]
        );
        assert_eq!(words(r"a b\ c \#d"), ["a", "b c", "#d"]);
        assert_eq!(words("text # comment"), ["text"]);
        assert_eq!(
            words("url --mirrorlist=http://x?a#frag"),
            ["url", "--mirrorlist=http://x?a"]
        );
        assert_eq!(words("a \"\" ''"), ["a", "", ""]);
        assert_eq!(words("a '#b'"), ["a", "#b"]);
        assert_eq!(split("a 'b", true), Err(SplitError::NoClosingQuote(2)));
        assert!(matches!(
            split("a b\\", true),
            Err(SplitError::NoEscapedCharacter(_))
        ));
        let t = split("  part  /", true).unwrap();
        assert_eq!((t[1].start, t[1].end), (8, 9));
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kiln-ks-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn includes_are_relative_and_cycles_named() {
        let d = tmp("inc");
        std::fs::create_dir_all(d.join("sub")).unwrap();
        write(&d, "sub/b.ks", "lang en_US.UTF-8\n%include c.ks\n");
        write(&d, "sub/c.ks", "%packages\nbash\n%end\n");
        let a = write(&d, "a.ks", "%include sub/b.ks\n");
        let (ks, problems, sources) = read(&a);
        assert!(problems.is_empty(), "{problems:?}");
        let ks = ks.unwrap();
        assert_eq!(ks.lang.as_deref(), Some("en_US.UTF-8"));
        assert_eq!(ks.packages.packages, ["bash"]);
        assert_eq!(sources.len(), 3);

        write(&d, "x.ks", "%include y.ks\n");
        write(&d, "y.ks", "\n%include x.ks\n");
        let (_, problems, _) = read(&d.join("x.ks"));
        let msg = problems[0].to_string();
        assert!(
            msg.contains("y.ks:2:1") && msg.contains("loops back"),
            "{msg}"
        );

        write(&d, "m.ks", "lang C\n%include nope.ks\n");
        let (_, problems, _) = read(&d.join("m.ks"));
        let msg = problems[0].to_string();
        assert!(msg.contains("m.ks:2:1") && msg.contains("nope.ks"), "{msg}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn packages_follow_pykickstart() {
        let d = tmp("pkgs");
        let f = write(
            &d,
            "p.ks",
            "%packages --nocore --excludedocs --inst-langs=en:de\nbash # shell\n-vim\nvim\n-kernel\n@core --nodefaults\n@core\n   \n# c\n%end\n%packages\n-bash\n%end\n",
        );
        let (ks, problems, _) = read(&f);
        assert!(problems.is_empty(), "{problems:?}");
        let p = ks.unwrap().packages;
        assert_eq!(p.packages, ["vim"]);
        assert_eq!(p.excluded, ["bash", "kernel"]);
        assert_eq!(p.groups.len(), 1);
        assert_eq!(p.groups[0].include, "required");
        // The second header sets the switches again.
        assert!(!p.nocore && !p.excludedocs);
        assert_eq!(p.inst_langs.as_deref(), Some("en:de"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn scripts_keep_their_body_and_includes_inside() {
        let d = tmp("scripts");
        write(&d, "body.sh", "echo included\n");
        let f = write(
            &d,
            "s.ks",
            "%post --interpreter=/usr/bin/python3 --erroronfail\n\n# kept\nprint(1)\n%include body.sh\n  %end\n%post --nochroot\n%end\n%pre\necho\n%end\n",
        );
        let (ks, problems, _) = read(&f);
        assert!(problems.is_empty(), "{problems:?}");
        let ks = ks.unwrap();
        // An empty script is dropped, as pykickstart does.
        assert_eq!(ks.scripts.len(), 2);
        assert_eq!(ks.scripts[0].body, "\n# kept\nprint(1)\necho included\n");
        assert_eq!(ks.scripts[0].interpreter, "/usr/bin/python3");
        assert!(ks.scripts[0].error_on_fail && ks.scripts[0].chroot);
        assert_eq!(ks.scripts[1].r#type, "pre");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn errors_name_file_and_line() {
        let d = tmp("errors");
        let cases = [
            (
                "lang C\nbogus --x\n",
                "e.ks:2:1: unknown kickstart command `bogus`",
            ),
            (
                "part / --sise 10\n",
                "e.ks:1:8: `part` has no option `--sise`",
            ),
            (
                "%packages\nbash\n",
                "e.ks:1:1: section `%packages` does not end with `%end`",
            ),
            (
                "services --enabled\n",
                "e.ks:1:10: `services`: --enabled needs a value",
            ),
            (
                "user --name=a --uid=x\n",
                "e.ks:1:15: `user`: --uid takes a whole number, not `x`",
            ),
            ("%foo\n%end\n", "e.ks:1:1: unknown kickstart section `%foo`"),
            ("lang 'C\n", "e.ks:1:6: this quote is never closed"),
        ];
        for (text, want) in cases {
            let f = write(&d, "e.ks", text);
            let (_, problems, _) = read(&f);
            assert!(
                problems
                    .iter()
                    .any(|p| p.to_string().ends_with(want) && p.is_error()),
                "{text:?}: {problems:?}"
            );
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn options_take_abbreviations_and_continuations() {
        let d = tmp("opts");
        let f = write(
            &d,
            "o.ks",
            "rootpw --iscrypt --lock '$6$abc$def'\ntimezone --isUtc \\\n  Etc/UTC\nselinux --permissive --enforcing\n",
        );
        let (ks, problems, _) = read(&f);
        assert!(problems.is_empty(), "{problems:?}");
        let ks = ks.unwrap();
        let r = ks.rootpw.unwrap();
        assert!(r.iscrypted && r.lock);
        assert_eq!(r.password.as_deref(), Some("$6$abc$def"));
        let tz = ks.timezone.unwrap();
        assert_eq!(tz.timezone.as_deref(), Some("Etc/UTC"));
        assert!(tz.utc);
        assert_eq!(ks.selinux.as_deref(), Some("enforcing"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    fn convert_text(text: &str) -> (String, Vec<Problem>) {
        let d = tmp("conv");
        let f = write(&d, "image.ks", text);
        let (node, problems, _) = load(&f);
        std::fs::remove_dir_all(&d).unwrap();
        (node.map(|n| to_yaml(&n)).unwrap_or_default(), problems)
    }

    #[test]
    fn plain_passwords_are_refused_never_kept() {
        let (yaml, problems) =
            convert_text("rootpw secret\nuser --name=a --password=pw --plaintext\n");
        assert!(!yaml.contains("secret") && !yaml.contains("pw\n"));
        let errors: Vec<_> = problems.iter().filter(|p| p.is_error()).collect();
        assert_eq!(errors.len(), 2, "{problems:?}");
        assert!(
            errors[0]
                .to_string()
                .contains("plain-text password is refused")
        );
    }

    #[test]
    fn converts_the_image_commands() {
        let (yaml, problems) = convert_text(
            "%packages --nocore --excludeWeakdeps\nbash\n-nano\n%end\n\
             part /boot/efi --size=200 --fstype=efi\npart / --size=4000 --grow --fstype=ext4 --label=root\n\
             bootloader --append=\"console=ttyS0 quiet\"\nservices --enabled=sshd --disabled=kdump\n\
             firewall --disabled\nsshkey --username=root \"ssh-ed25519 AAAA me\"\n\
             timezone Etc/UTC --utc\nnetwork --hostname=box\nselinux --permissive\n",
        );
        assert!(!problems.iter().any(Problem::is_error), "{problems:?}");
        assert!(yaml.contains("install: [bash]"), "{yaml}");
        assert!(yaml.contains("exclude: [nano]"), "{yaml}");
        assert!(
            yaml.contains("kernel-cmdline: [console=ttyS0, quiet]"),
            "{yaml}"
        );
        assert!(yaml.contains("mask: [firewalld.service]"), "{yaml}");
        assert!(yaml.contains("size: rest"), "{yaml}");
        assert!(yaml.contains("fs-label: root"), "{yaml}");
    }

    proptest::proptest! {
        #[test]
        fn yaml_round_trips_any_text(text in "(?s)[ -~\t\n\u{e9}\u{2603}]{0,60}") {
            let f = SourceFile::new("t.yaml", "");
            let loc = Loc::new(&f, 1, 1, 0);
            let mut m = Map::new(&loc);
            m.put("name", s("x", &loc));
            m.put("content", raw(text.clone(), &loc));
            m.put("list", seq(vec![raw(text.clone(), &loc), raw("a", &loc)], &loc));
            let yaml = to_yaml(&m.node());
            let back = super::super::node::parse(&SourceFile::new("t.yaml", yaml.clone())).unwrap();
            proptest::prop_assert_eq!(back.get("content").and_then(Node::as_text), Some(text.as_str()), "{}", yaml);
            let list = back.get("list").and_then(Node::as_seq).unwrap();
            proptest::prop_assert_eq!(list[0].as_text(), Some(text.as_str()), "{}", yaml);
        }

        #[test]
        fn split_never_panics_and_rejoins_plain_words(words in proptest::collection::vec("[a-z0-9/=.-]{1,8}", 0..6)) {
            let line = words.join("  ");
            let got: Vec<String> = split(&line, true).unwrap().into_iter().map(|t| t.text).collect();
            proptest::prop_assert_eq!(got, words);
        }

        #[test]
        fn quoted_words_survive(word in "[ -~]{0,12}") {
            // Single quotes keep everything but the quote itself.
            let w = word.replace('\'', "");
            let line = format!("cmd '{w}'");
            let got: Vec<String> = split(&line, true).unwrap().into_iter().map(|t| t.text).collect();
            proptest::prop_assert_eq!(got, vec!["cmd".to_string(), w]);
        }
    }
}
