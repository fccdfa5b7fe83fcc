//! The image definition: YAML files (with `extends:` and `.repo` files) or kickstart files loaded
//! into located trees, merged, expanded per architecture, typed and validated, with file:line:column diagnostics.

pub mod de;
pub mod error;
pub mod kickstart;
pub mod merge;
pub mod node;
pub mod repofile;
pub mod types;
pub mod validate;
pub mod values;
pub mod vars;

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

pub use error::{DefinitionError, Problem};
pub use types::*;
pub use values::{Arch, Mode, Owner, PartSize, PartitionType, Size};

use node::{Key, Loc, Node, NodeKind, PathSeg, SourceFile};

/// How deep `extends:` chains may go before kiln assumes something is wrong.
const MAX_EXTENDS_DEPTH: usize = 32;

/// Choices made outside the definition file.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Build only these architectures (each must be listed in the definition); empty = all.
    pub arches: Vec<Arch>,
    /// dnf `.repo` files whose repositories replace all of the definition's (`--repo-file`:
    /// mirrors and air-gapped builds).
    pub repo_files: Vec<PathBuf>,
    /// Read the file as a kickstart whatever its name (`anaconda-ks.cfg`); otherwise only
    /// `.ks` files are.
    pub kickstart: bool,
}

/// A loaded, valid definition: one typed definition per architecture.
#[derive(Debug)]
pub struct Loaded {
    pub path: PathBuf,
    pub images: Vec<ArchImage>,
    /// Problems that did not stop the load.
    pub warnings: Vec<Problem>,
    /// Every file read: the definition, its bases, `.repo` files.
    pub sources: Vec<PathBuf>,
}

/// The definition as it applies to one architecture.
#[derive(Debug)]
pub struct ArchImage {
    pub arch: Arch,
    pub definition: Definition,
    /// The merged, expanded tree the definition was read from (for locating later errors).
    pub tree: Node,
}

/// Loads, merges, expands and validates a definition.
pub fn load(path: &Path, options: &LoadOptions) -> Result<Loaded, DefinitionError> {
    std::fs::metadata(path).map_err(|source| DefinitionError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut loader = Loader {
        force_kickstart: options.kickstart,
        ..Loader::default()
    };
    let mut merged = loader.file(&normalize(path), None);
    if let Some(node) = merged.as_mut()
        && !options.repo_files.is_empty()
    {
        loader.replace_repositories(node, &options.repo_files);
    }
    let mut problems = loader.problems;
    let Some(merged) = merged else {
        return Err(DefinitionError::Invalid(problems));
    };

    let mut images = Vec::new();
    match architectures(&merged, options) {
        Ok(arches) => {
            for arch in arches {
                match plan_arch(&merged, arch) {
                    Ok(image) => {
                        let (found, ok) = validate::check(&image.definition, &image.tree, arch);
                        problems.extend(found);
                        if ok {
                            images.push(image);
                        }
                    }
                    Err(found) => problems.extend(found),
                }
            }
        }
        Err(found) => problems.extend(found),
    }

    let problems = dedup(problems);
    if problems.iter().any(Problem::is_error) {
        return Err(DefinitionError::Invalid(problems));
    }
    Ok(Loaded {
        path: path.to_path_buf(),
        images,
        warnings: problems,
        sources: loader.sources,
    })
}

/// The same problem found for several architectures is reported once.
fn dedup(problems: Vec<Problem>) -> Vec<Problem> {
    let mut seen = std::collections::HashSet::new();
    problems
        .into_iter()
        .filter(|p| seen.insert((p.to_string(), p.help.clone())))
        .collect()
}

/// Lexically cleans a path for display (`a/./b/../c` → `a/c`); the file system is not asked.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                // `/..` is `/`.
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(".."),
            },
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

#[derive(Default)]
struct Loader {
    problems: Vec<Problem>,
    sources: Vec<PathBuf>,
    /// The `extends` chain being loaded: canonical path and display path.
    chain: Vec<(PathBuf, PathBuf)>,
    /// The top-level file is a kickstart, whatever its name.
    force_kickstart: bool,
}

impl Loader {
    /// Loads one definition file and everything it extends, merged. `from` is the `extends`
    /// entry that named it. Problems are collected; `None` means this file could not be used.
    fn file(&mut self, display: &Path, from: Option<&Loc>) -> Option<Node> {
        let fail = |problems: &mut Vec<Problem>, p: Problem| {
            problems.push(match from {
                Some(loc) => p.at(loc.clone()),
                None => p,
            });
        };
        let canonical = match std::fs::canonicalize(display) {
            Ok(c) => c,
            Err(e) => {
                fail(
                    &mut self.problems,
                    Problem::error(format!(
                        "cannot read base definition {}: {e}",
                        display.display()
                    ))
                    .help("paths in `extends` are relative to the file that names them"),
                );
                return None;
            }
        };
        if let Some(pos) = self.chain.iter().position(|(c, _)| *c == canonical) {
            let mut names: Vec<String> = self.chain[pos..]
                .iter()
                .map(|(_, d)| d.display().to_string())
                .collect();
            names.push(display.display().to_string());
            fail(
                &mut self.problems,
                Problem::error(format!(
                    "`extends` loops back on itself: {}",
                    names.join(" → ")
                ))
                .help("a definition cannot extend itself, directly or through its bases"),
            );
            return None;
        }
        if self.chain.len() >= MAX_EXTENDS_DEPTH {
            fail(
                &mut self.problems,
                Problem::error(format!(
                    "`extends` chains more than {MAX_EXTENDS_DEPTH} files deep"
                )),
            );
            return None;
        }
        if kickstart::is_kickstart(display) || (self.force_kickstart && from.is_none()) {
            // A kickstart is converted to the tree its YAML equivalent would give; it extends
            // nothing, but a YAML definition may extend it.
            let (node, problems, sources) = kickstart::load(display);
            self.problems.extend(problems);
            self.sources.extend(sources);
            return node;
        }
        let text = match std::fs::read_to_string(display) {
            Ok(t) => t,
            Err(e) => {
                fail(
                    &mut self.problems,
                    Problem::error(format!("cannot read {}: {e}", display.display())),
                );
                return None;
            }
        };
        self.sources.push(canonical.clone());
        let source = SourceFile::new(display, text);
        let mut node = match node::parse(&source) {
            Ok(n) => n,
            Err(p) => {
                self.problems.push(p);
                return None;
            }
        };
        if node.as_map().is_none() {
            self.problems.push(
                Problem::error(format!(
                    "a definition is a mapping of keys (`name:`, `packages:` …), not {}",
                    node.describe()
                ))
                .at(node.loc.clone()),
            );
            return None;
        }

        let bases = self.take_path_list(&mut node, "extends");
        let repo_files = self.take_path_list(&mut node, "repo-files");
        self.inline_repo_files(&mut node, repo_files);

        self.chain.push((canonical, display.to_path_buf()));
        let mut merged: Option<Node> = None;
        let mut ok = true;
        for (base, loc) in bases {
            let path = normalize(&loc.base_dir().join(&base));
            match self.file(&path, Some(&loc)) {
                Some(b) => {
                    merged = Some(match merged {
                        Some(m) => merge::merge(m, b),
                        None => b,
                    })
                }
                None => ok = false,
            }
        }
        self.chain.pop();
        if !ok {
            return None;
        }
        Some(match merged {
            Some(m) => merge::merge(m, node),
            None => node,
        })
    }

    /// Removes `key` (one path or a list of paths) from a definition and returns its entries.
    fn take_path_list(&mut self, node: &mut Node, key: &str) -> Vec<(String, Loc)> {
        let Some((k, value)) = node.remove(key) else {
            return Vec::new();
        };
        let items: Vec<Node> = match value.kind {
            NodeKind::Seq(items) => items,
            NodeKind::Str(_) => vec![value],
            _ => {
                self.problems.push(
                    Problem::error(format!(
                        "expected a path or a list of paths, found {}",
                        value.describe()
                    ))
                    .at(value.loc.clone())
                    .at_path(&[PathSeg::Key(k.name)]),
                );
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            match &item.kind {
                NodeKind::Str(s) if !s.trim().is_empty() => out.push((s.clone(), item.loc)),
                _ => self.problems.push(
                    Problem::error(format!("expected a path, found {}", item.describe()))
                        .at(item.loc.clone())
                        .at_path(&[PathSeg::Key(k.name.clone()), PathSeg::Index(i)]),
                ),
            }
        }
        out
    }

    /// Replaces the merged definition's repositories with those of `files` (`--repo-file`).
    fn replace_repositories(&mut self, node: &mut Node, files: &[PathBuf]) {
        let mut repos = Vec::new();
        for path in files {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    self.problems.push(
                        Problem::error(format!("--repo-file {}: {e}", path.display()))
                            .help("give the path of a dnf .repo file"),
                    );
                    continue;
                }
            };
            if let Ok(c) = std::fs::canonicalize(path) {
                self.sources.push(c);
            }
            let source = SourceFile::new(path.clone(), text);
            let (found, problems) = repofile::parse(&source);
            if found.is_empty() && problems.is_empty() {
                self.problems.push(
                    Problem::error(format!(
                        "--repo-file {} defines no repositories",
                        path.display()
                    ))
                    .help("a .repo file has one [id] section per repository, with baseurl="),
                );
            }
            self.problems.extend(problems);
            repos.extend(found);
        }
        let root_loc = node.loc.clone();
        node.remove("repositories");
        // An architecture's own repositories are the definition's too.
        if let Some(per_arch) = node.get_mut("per-arch").and_then(|n| n.as_map_mut()) {
            for (_, settings) in per_arch.iter_mut() {
                settings.remove("repositories");
            }
        }
        node.as_map_mut().expect("checked to be a mapping").push((
            Key {
                name: "repositories".into(),
                loc: root_loc.clone(),
            },
            Node::new(NodeKind::Seq(repos), root_loc),
        ));
    }

    /// Parses the `.repo` files a definition names and adds their repositories to it.
    fn inline_repo_files(&mut self, node: &mut Node, files: Vec<(String, Loc)>) {
        let mut repos = Vec::new();
        for (file, loc) in files {
            let path = normalize(&loc.base_dir().join(&file));
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    self.problems.push(
                        Problem::error(format!(
                            "cannot read repository file {}: {e}",
                            path.display()
                        ))
                        .at(loc)
                        .at_path(&[PathSeg::Key("repo-files".into())])
                        .help("paths in `repo-files` are relative to the file that names them"),
                    );
                    continue;
                }
            };
            if let Ok(c) = std::fs::canonicalize(&path) {
                self.sources.push(c);
            }
            let source = SourceFile::new(path, text);
            let (found, problems) = repofile::parse(&source);
            if found.is_empty() && problems.is_empty() {
                self.problems.push(
                    Problem::warning(format!("{} defines no repositories", source.path.display()))
                        .at(loc),
                );
            }
            self.problems.extend(problems);
            repos.extend(found);
        }
        if repos.is_empty() {
            return;
        }
        let root_loc = node.loc.clone();
        match node.get_mut("repositories") {
            Some(Node {
                kind: NodeKind::Seq(items),
                ..
            }) => items.extend(repos),
            // A non-list `repositories` is reported by typing; keep the .repo ones out of it.
            Some(_) => {}
            None => node.as_map_mut().expect("checked to be a mapping").push((
                Key {
                    name: "repositories".into(),
                    loc: root_loc.clone(),
                },
                Node::new(NodeKind::Seq(repos), root_loc),
            )),
        }
    }
}

/// The architectures to build: the definition's, narrowed by `--arch`.
fn architectures(merged: &Node, options: &LoadOptions) -> Result<Vec<Arch>, Vec<Problem>> {
    let path = [PathSeg::Key("architectures".into())];
    let declared: Vec<Arch> = match merged.get("architectures") {
        Some(n) => de::from_node(n).map_err(|e| vec![e.into_problem(&path)])?,
        None => default_architectures(),
    };
    if declared.is_empty() {
        let loc = merged.locate(&path).0.clone();
        return Err(vec![
            Problem::error("`architectures` is empty")
                .at(loc)
                .at_path(&path)
                .help("list at least one of x86_64, aarch64 (or remove the key for x86_64)"),
        ]);
    }
    if options.arches.is_empty() {
        let mut unique = declared.clone();
        unique.sort();
        unique.dedup();
        return Ok(unique);
    }
    let mut out = Vec::new();
    for a in &options.arches {
        if !declared.contains(a) {
            let listed: Vec<String> = declared.iter().map(Arch::to_string).collect();
            let loc = merged.locate(&path).0.clone();
            return Err(vec![
                Problem::error(format!(
                    "--arch {a} was asked for, but this definition builds only {}",
                    listed.join(", ")
                ))
                .at(loc)
                .help(format!(
                    "add {a} to `architectures`, or build one of the listed ones"
                )),
            ]);
        }
        if !out.contains(a) {
            out.push(*a);
        }
    }
    Ok(out)
}

/// Text values that are never expanded: file and script bodies belong to the image, and
/// `variables`/`releasever` are the sources of expansion.
const NOT_EXPANDED: &[&[&str]] = &[
    &["variables"],
    &["releasever"],
    &["system", "files", "*", "content"],
    &["system", "scripts", "*", "*", "content"],
];

/// Repository fields that also take dnf's brace-less `$basearch` spelling.
const DNF_EXPANDED: &[&[&str]] = &[
    &["repositories", "*", "baseurl", "*"],
    &["repositories", "*", "metalink"],
    &["repositories", "*", "mirrorlist"],
    &["repositories", "*", "gpgkey", "*"],
];

/// Local paths that are relative to the file they are written in.
const RELATIVE_PATHS: &[&[&str]] = &[
    &["system", "files", "*", "source"],
    &["system", "scripts", "*", "*", "source"],
    &["outputs", "wsl", "icon"],
    &["outputs", "wsl", "terminal-profile"],
];

/// Repository locations that may be URLs or local paths (turned into `file://` URLs).
const REPO_LOCATIONS: &[&[&str]] = &[
    &["repositories", "*", "baseurl", "*"],
    &["repositories", "*", "gpgkey", "*"],
];

fn matches_any(path: &[String], patterns: &[&[&str]]) -> bool {
    patterns
        .iter()
        .any(|p| p.len() <= path.len() && p.iter().zip(path).all(|(a, b)| *a == "*" || a == b))
}

fn matches_exact(path: &[String], patterns: &[&[&str]]) -> bool {
    patterns
        .iter()
        .any(|p| p.len() == path.len() && p.iter().zip(path).all(|(a, b)| *a == "*" || a == b))
}

/// Keys a `per-arch` section may not set: they decide what the architectures are.
const NOT_PER_ARCH: &[&str] = &["name", "architectures", "extends", "repo-files", "per-arch"];

/// The merged tree with the `per-arch` section for `arch` merged on top (and the section gone).
fn apply_per_arch(merged: &Node, arch: Arch) -> Result<Node, Vec<Problem>> {
    let mut tree = merged.clone();
    let Some((key, section)) = tree.remove("per-arch") else {
        return Ok(tree);
    };
    let Some(entries) = section.as_map() else {
        return Err(vec![
            Problem::error(format!(
                "expected a mapping of architectures, found {}",
                section.describe()
            ))
            .at(section.loc.clone())
            .at_path(&[PathSeg::Key(key.name)]),
        ]);
    };
    let mut problems = Vec::new();
    let names: Vec<&str> = Arch::ALL.iter().map(|a| a.rpm_name()).collect();
    let mut chosen = None;
    for (k, v) in entries {
        let path = [
            PathSeg::Key("per-arch".into()),
            PathSeg::Key(k.name.clone()),
        ];
        if !names.contains(&k.name.as_str()) {
            let help = match error::did_you_mean(&k.name, names.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("architectures are {}", names.join(", ")),
            };
            problems.push(
                Problem::error(format!("unknown architecture `{}`", k.name))
                    .at(k.loc.clone())
                    .at_path(&path)
                    .help(help),
            );
            continue;
        }
        let Some(map) = v.as_map() else {
            problems.push(
                Problem::error(format!("expected definition keys, found {}", v.describe()))
                    .at(v.loc.clone())
                    .at_path(&path),
            );
            continue;
        };
        for (inner, _) in map {
            if NOT_PER_ARCH.contains(&inner.name.as_str()) {
                problems.push(
                    Problem::error(format!("`{}` cannot be set per architecture", inner.name))
                        .at(inner.loc.clone())
                        .at_path(&[
                            path[0].clone(),
                            path[1].clone(),
                            PathSeg::Key(inner.name.clone()),
                        ])
                        .help("set it at the top level of the definition"),
                );
            }
        }
        if k.name == arch.rpm_name() {
            chosen = Some(v.clone());
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(match chosen {
        Some(over) => merge::merge(tree, over),
        None => tree,
    })
}

fn plan_arch(merged: &Node, arch: Arch) -> Result<ArchImage, Vec<Problem>> {
    let merged = &apply_per_arch(merged, arch)?;
    let mut problems = Vec::new();
    let mut builtins = BTreeMap::new();
    let releasever = merged
        .get("releasever")
        .and_then(Node::as_text)
        .map(str::to_string)
        .unwrap_or_else(default_releasever);
    builtins.insert("releasever".to_string(), releasever);
    builtins.insert("basearch".to_string(), arch.rpm_name().to_string());
    builtins.insert("arch".to_string(), arch.rpm_name().to_string());

    let var_path = [PathSeg::Key("variables".into())];
    let user: BTreeMap<String, String> = match merged.get("variables") {
        Some(n) => de::from_node(n).map_err(|e| vec![e.into_problem(&var_path)])?,
        None => BTreeMap::new(),
    };
    if let Some(map) = merged.get("variables").and_then(Node::as_map) {
        for (key, _) in map {
            let path = [var_path[0].clone(), PathSeg::Key(key.name.clone())];
            if builtins.contains_key(&key.name) {
                problems.push(
                    Problem::error(format!(
                        "`{}` is a built-in variable and cannot be redefined",
                        key.name
                    ))
                    .at(key.loc.clone())
                    .at_path(&path)
                    .help(if key.name == "releasever" {
                        "set the top-level `releasever:` instead"
                    } else {
                        "built-ins follow the architecture being built; choose another name"
                    }),
                );
            } else if !vars::is_var_name(&key.name) {
                problems.push(
                    Problem::error(format!("`{}` is not a valid variable name", key.name))
                        .at(key.loc.clone())
                        .at_path(&path)
                        .help("variable names use letters, digits and `_`, and do not start with a digit"),
                );
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let table = vars::resolve_table(&builtins, &user).map_err(|(name, e)| {
        let path = [var_path[0].clone(), PathSeg::Key(name)];
        let loc = merged.locate(&path).0.clone();
        vec![
            Problem::error(e.message())
                .at(loc)
                .at_path(&path)
                .help(e.help()),
        ]
    })?;

    let mut tree = merged.clone();
    expand_tree(&mut tree, &table, &mut Vec::new(), &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    let definition: Definition = de::from_node_all(&tree)?;
    Ok(ArchImage {
        arch,
        definition,
        tree,
    })
}

fn expand_tree(
    node: &mut Node,
    table: &BTreeMap<String, String>,
    path: &mut Vec<String>,
    problems: &mut Vec<Problem>,
) {
    if matches_any(path, NOT_EXPANDED) {
        return;
    }
    match &mut node.kind {
        NodeKind::Str(s) => match vars::expand(s, table) {
            Ok(mut v) => {
                if matches_exact(path, DNF_EXPANDED) {
                    v = vars::expand_dnf(&v, table);
                }
                if matches_exact(path, RELATIVE_PATHS) && !v.is_empty() {
                    v = absolute(&node.loc, &v);
                } else if matches_exact(path, REPO_LOCATIONS) && !v.contains("://") {
                    v = format!("file://{}", absolute(&node.loc, &v));
                }
                *s = v;
            }
            Err(e) => problems.push(
                Problem::error(e.message())
                    .at(node.loc.clone())
                    .at_path(&to_segs(path))
                    .help(e.help()),
            ),
        },
        NodeKind::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(i.to_string());
                expand_tree(item, table, path, problems);
                path.pop();
            }
        }
        NodeKind::Map(entries) => {
            for (key, value) in entries.iter_mut() {
                path.push(key.name.clone());
                expand_tree(value, table, path, problems);
                path.pop();
            }
        }
        _ => {}
    }
}

/// A path written in a definition, made absolute against that definition's directory.
fn absolute(loc: &Loc, value: &str) -> String {
    let joined = loc.base_dir().join(value);
    let abs = std::path::absolute(&joined).unwrap_or(joined);
    normalize(&abs).display().to_string()
}

/// Turns the string path used while walking into a path for messages, with list indexes.
fn to_segs(path: &[String]) -> Vec<PathSeg> {
    path.iter()
        .map(|s| match s.parse::<usize>() {
            Ok(i) => PathSeg::Index(i),
            Err(_) => PathSeg::Key(s.clone()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_lexically() {
        assert_eq!(
            normalize(Path::new("a/./b/../c.yaml")),
            PathBuf::from("a/c.yaml")
        );
        assert_eq!(normalize(Path::new("../x/../y")), PathBuf::from("../y"));
        assert_eq!(normalize(Path::new("./")), PathBuf::from("."));
        assert_eq!(normalize(Path::new("/a/../../b")), PathBuf::from("/b"));
    }

    #[test]
    fn pattern_matching() {
        let p: Vec<String> = ["system", "files", "3", "content"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(matches_any(&p, NOT_EXPANDED));
        assert!(!matches_exact(&p, RELATIVE_PATHS));
        let q: Vec<String> = ["repositories", "0", "baseurl", "1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(matches_exact(&q, DNF_EXPANDED));
        assert_eq!(to_segs(&q)[1], PathSeg::Index(0));
    }
}
