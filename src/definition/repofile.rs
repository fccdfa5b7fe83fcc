//! dnf `.repo` files: the INI dialect dnf reads (sections, `key=value`, indented continuation
//! lines, dnf's boolean spellings), turned into located repository nodes for the definition.

use std::sync::Arc;

use super::error::Problem;
use super::node::{Key, Loc, Node, NodeKind, SourceFile};

/// dnf options kiln reads, and how their values are typed.
enum Kind {
    Text,
    List,
    Bool,
    Int,
}

fn option(key: &str) -> Option<(&'static str, Kind)> {
    Some(match key {
        "name" => ("name", Kind::Text),
        "baseurl" => ("baseurl", Kind::List),
        "metalink" => ("metalink", Kind::Text),
        "mirrorlist" => ("mirrorlist", Kind::Text),
        "gpgkey" => ("gpgkey", Kind::List),
        // dnf5 renamed gpgcheck to pkg_gpgcheck; both mean the same.
        "gpgcheck" | "pkg_gpgcheck" => ("gpgcheck", Kind::Bool),
        "repo_gpgcheck" => ("repo_gpgcheck", Kind::Bool),
        "priority" => ("priority", Kind::Int),
        "cost" => ("cost", Kind::Int),
        "enabled" => ("enabled", Kind::Bool),
        "exclude" | "excludepkgs" => ("excludes", Kind::List),
        _ => return None,
    })
}

/// dnf options that change nothing about which packages kiln resolves or how it verifies them.
const IGNORED: &[&str] = &[
    "async",
    "bandwidth",
    "countme",
    "deltarpm",
    "deltarpm_percentage",
    "enabled_metadata",
    "fastestmirror",
    "ip_resolve",
    "max_parallel_downloads",
    "metadata_expire",
    "minrate",
    "module_hotfixes",
    "retries",
    "skip_if_unavailable",
    "throttle",
    "timeout",
    "type",
    "user_agent",
];

/// dnf options kiln does not implement and that would change the result if ignored.
const UNSUPPORTED: &[&str] = &[
    "includepkgs",
    "mediaid",
    "password",
    "proxy",
    "proxy_password",
    "proxy_username",
    "sslcacert",
    "sslclientcert",
    "sslclientkey",
    "sslverify",
    "username",
];

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

struct Section {
    id: String,
    loc: Loc,
    /// (key as written, value, location of the key, location of the value)
    entries: Vec<(String, String, Loc, Loc)>,
}

/// Parses a `.repo` file. Returns the repositories as definition nodes, and the problems found
/// (errors stop the file from being used; warnings are reported alongside).
pub fn parse(file: &Arc<SourceFile>) -> (Vec<Node>, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut sections: Vec<Section> = Vec::new();

    for (i, raw) in file.text.lines().enumerate() {
        let line = (i + 1) as u32;
        let trimmed = raw.trim_end();
        if trimmed.trim_start().is_empty()
            || trimmed.trim_start().starts_with('#')
            || trimmed.trim_start().starts_with(';')
        {
            continue;
        }
        let indent = trimmed.len() - trimmed.trim_start().len();
        // An indented line continues the previous value (multi-line baseurl lists).
        if indent > 0
            && let Some(entry) = sections.last_mut().and_then(|s| s.entries.last_mut())
        {
            entry.1.push('\n');
            entry.1.push_str(trimmed.trim_start());
            continue;
        }
        let text = trimmed.trim_start();
        let col = indent as u32 + 1;
        if let Some(rest) = text.strip_prefix('[') {
            let Some(id) = rest.strip_suffix(']') else {
                problems.push(
                    Problem::error("section header without a closing `]`")
                        .at(Loc::new(file, line, col, text.len()))
                        .help("write it as `[repository-id]`"),
                );
                continue;
            };
            let id = id.trim();
            let loc = Loc::new(file, line, col + 1, id.len());
            if id == "main" {
                problems.push(
                    Problem::error("`[main]` holds dnf's global options, not a repository")
                        .at(loc.clone())
                        .help("put repositories in their own sections; kiln takes no global dnf options"),
                );
            }
            if let Some(prev) = sections.iter().find(|s| s.id == id) {
                problems.push(
                    Problem::error(format!(
                        "repository `{id}` is defined twice in this file (first at line {})",
                        prev.loc.line
                    ))
                    .at(loc.clone()),
                );
            }
            sections.push(Section {
                id: id.to_string(),
                loc,
                entries: Vec::new(),
            });
            continue;
        }
        let Some((key, value)) = text.split_once('=') else {
            problems.push(
                Problem::error(format!("cannot read this line: `{text}`"))
                    .at(Loc::new(file, line, col, text.len()))
                    .help("dnf .repo lines are `[section]`, `key=value`, indented continuations or `#` comments"),
            );
            continue;
        };
        let Some(section) = sections.last_mut() else {
            problems.push(
                Problem::error("option before any `[repository]` section").at(Loc::new(
                    file,
                    line,
                    col,
                    key.len(),
                )),
            );
            continue;
        };
        let value_start = key.len() + 1 + (value.len() - value.trim_start().len());
        let key = key.trim();
        let value = value.trim();
        section.entries.push((
            key.to_string(),
            value.to_string(),
            Loc::new(file, line, col, key.len()),
            Loc::new(file, line, col + value_start as u32, value.len()),
        ));
    }

    let repos = sections
        .into_iter()
        .map(|s| section_to_node(s, &mut problems))
        .collect();
    (repos, problems)
}

fn section_to_node(section: Section, problems: &mut Vec<Problem>) -> Node {
    let mut map: Vec<(Key, Node)> = vec![(
        Key {
            name: "id".into(),
            loc: section.loc.clone(),
        },
        Node::str(section.id.clone(), section.loc.clone()),
    )];
    for (key, value, key_loc, value_loc) in section.entries {
        let Some((name, kind)) = option(&key) else {
            if IGNORED.contains(&key.as_str()) {
                continue;
            }
            let p = if UNSUPPORTED.contains(&key.as_str()) {
                Problem::error(format!("dnf option `{key}` is not supported by kiln"))
                    .help("remove it, or mirror the repository somewhere kiln can read without it")
            } else {
                Problem::warning(format!("unknown dnf option `{key}` is ignored"))
            };
            problems.push(p.at(key_loc));
            continue;
        };
        let node_kind = match kind {
            Kind::Text => NodeKind::Str(value),
            Kind::List => NodeKind::Seq(
                value
                    .split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|s| !s.is_empty())
                    .map(|s| Node::str(s, value_loc.clone()))
                    .collect(),
            ),
            Kind::Bool => match parse_bool(&value) {
                Some(b) => NodeKind::Bool(b),
                None => {
                    problems.push(
                        Problem::error(format!("`{key}={value}` is not a boolean"))
                            .at(value_loc)
                            .help("dnf booleans are 1/0, yes/no, true/false or on/off"),
                    );
                    continue;
                }
            },
            Kind::Int => match value.parse::<i128>() {
                Ok(n) => NodeKind::Int(n),
                Err(_) => {
                    problems.push(
                        Problem::error(format!("`{key}={value}` is not a number")).at(value_loc),
                    );
                    continue;
                }
            },
        };
        if let Some(existing) = map.iter().position(|(k, _)| k.name == name) {
            // dnf keeps the last value of a repeated option.
            map.remove(existing);
        }
        let literal = matches!(node_kind, NodeKind::Int(_)).then(|| value_literal(&node_kind));
        map.push((
            Key {
                name: name.into(),
                loc: key_loc,
            },
            Node {
                kind: node_kind,
                loc: value_loc,
                literal,
            },
        ));
    }
    Node::new(NodeKind::Map(map), section.loc)
}

fn value_literal(kind: &NodeKind) -> String {
    match kind {
        NodeKind::Int(i) => i.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPO: &str = "\
# Azure Linux
[azl-base]
name=Azure Linux $releasever base
baseurl=https://a.example/$releasever/base/$basearch
        https://b.example/$releasever/base/$basearch
gpgkey=file:///etc/pki/k1 file:///etc/pki/k2
gpgcheck=1
repo_gpgcheck = no
priority=10
enabled=True
skip_if_unavailable=False
excludepkgs=kernel*,foo

[second]
metalink=https://m.example/?repo=x&arch=$basearch
pkg_gpgcheck=0
";

    fn get<'a>(n: &'a Node, k: &str) -> &'a Node {
        n.get(k).unwrap_or_else(|| panic!("no {k}"))
    }

    #[test]
    fn parses_dnf_repo_files() {
        let f = SourceFile::new("a.repo", REPO);
        let (repos, problems) = parse(&f);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(repos.len(), 2);
        let r = &repos[0];
        assert_eq!(get(r, "id").as_text(), Some("azl-base"));
        let urls: Vec<_> = get(r, "baseurl")
            .as_seq()
            .unwrap()
            .iter()
            .map(|n| n.as_text().unwrap())
            .collect();
        assert_eq!(
            urls,
            [
                "https://a.example/$releasever/base/$basearch",
                "https://b.example/$releasever/base/$basearch"
            ]
        );
        assert_eq!(get(r, "gpgkey").as_seq().unwrap().len(), 2);
        assert!(matches!(get(r, "gpgcheck").kind, NodeKind::Bool(true)));
        assert!(matches!(
            get(r, "repo_gpgcheck").kind,
            NodeKind::Bool(false)
        ));
        assert!(matches!(get(r, "priority").kind, NodeKind::Int(10)));
        assert_eq!(get(r, "excludes").as_seq().unwrap().len(), 2);
        assert_eq!(get(r, "priority").loc.line, 9);
        assert!(matches!(
            get(&repos[1], "gpgcheck").kind,
            NodeKind::Bool(false)
        ));
    }

    #[test]
    fn reports_bad_lines_with_locations() {
        let f = SourceFile::new(
            "b.repo",
            "[x]\nbaseurl=file:///r\ngpgcheck=maybe\nsslverify=0\nfoo=1\nnot a line\n",
        );
        let (_, problems) = parse(&f);
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            text,
            [
                "b.repo:6:1: cannot read this line: `not a line`",
                "b.repo:3:10: `gpgcheck=maybe` is not a boolean",
                "b.repo:4:1: dnf option `sslverify` is not supported by kiln",
                "b.repo:5:1: unknown dnf option `foo` is ignored",
            ]
        );
        assert!(!problems[3].is_error());
    }

    #[test]
    fn rejects_main_and_duplicates() {
        let f = SourceFile::new("c.repo", "[main]\n[a]\nname=x\n[a]\n");
        let (_, problems) = parse(&f);
        assert_eq!(problems.len(), 2);
        assert!(problems[1].message.contains("defined twice"));
    }
}
