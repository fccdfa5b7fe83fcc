//! `extends:` merging of definition trees: mappings merge key by key, lists append (named items
//! merge by name, argument lists are replaced), `packages.remove` subtracts, plain values override.

use super::node::{Key, Node, NodeKind};

/// Lists whose items are merged by a naming key instead of appended.
const KEYED_LISTS: &[(&[&str], &str)] = &[
    (&["repositories"], "id"),
    (&["system", "users"], "name"),
    (&["system", "groups"], "name"),
    (&["system", "files"], "path"),
    (&["system", "directories"], "path"),
    (&["system", "scripts", "post-install"], "name"),
    (&["system", "scripts", "finalize"], "name"),
    (&["outputs", "disk", "partitions"], "name"),
];

/// Lists a derived definition replaces as a whole: argument vectors and selections, where
/// appending would change their meaning.
const REPLACED_LISTS: &[&[&str]] = &[
    &["architectures"],
    &["repositories", "*", "baseurl"],
    &["repositories", "*", "gpgkey"],
    &["outputs", "disk", "formats"],
    &["outputs", "disk", "partitions", "*", "mount-options"],
    &["outputs", "oci", "entrypoint"],
    &["outputs", "oci", "cmd"],
    &["outputs", "oci", "platforms"],
    &["outputs", "oci", "tags"],
];

/// A human-readable table of the merge rules, for docs and `--help`.
pub fn rules() -> Vec<(String, &'static str)> {
    let mut out: Vec<(String, &'static str)> =
        KEYED_LISTS.iter().map(|(p, k)| (p.join("."), *k)).collect();
    out.extend(REPLACED_LISTS.iter().map(|p| (p.join("."), "replaced")));
    out
}

fn path_is(path: &[String], pattern: &[&str]) -> bool {
    path.len() == pattern.len() && path.iter().zip(pattern).all(|(a, b)| *b == "*" || a == b)
}

/// Merges `over` (the derived definition) on top of `base`.
pub fn merge(base: Node, over: Node) -> Node {
    merge_at(base, over, &mut Vec::new())
}

fn merge_at(base: Node, over: Node, path: &mut Vec<String>) -> Node {
    match (base.kind, over.kind) {
        (NodeKind::Map(base_map), NodeKind::Map(over_map)) => {
            let merged = if path_is(path, &["packages"]) {
                merge_packages(base_map, over_map, path)
            } else {
                merge_maps(base_map, over_map, path)
            };
            Node {
                kind: NodeKind::Map(merged),
                loc: over.loc,
                literal: None,
            }
        }
        (NodeKind::Seq(base_items), NodeKind::Seq(over_items)) => {
            let items = if REPLACED_LISTS.iter().any(|p| path_is(path, p)) {
                over_items
            } else if let Some((_, key)) = KEYED_LISTS.iter().find(|(p, _)| path_is(path, p)) {
                merge_keyed(base_items, over_items, key, path)
            } else {
                append_unique(base_items, over_items)
            };
            Node {
                kind: NodeKind::Seq(items),
                loc: over.loc,
                literal: None,
            }
        }
        // A plain value, or a change of shape: the derived definition wins.
        (_, kind) => Node {
            kind,
            loc: over.loc,
            literal: over.literal,
        },
    }
}

fn merge_maps(
    mut base: Vec<(Key, Node)>,
    over: Vec<(Key, Node)>,
    path: &mut Vec<String>,
) -> Vec<(Key, Node)> {
    for (key, value) in over {
        match base.iter().position(|(k, _)| k.name == key.name) {
            Some(i) => {
                let (_, old) = base.remove(i);
                path.push(key.name.clone());
                let merged = merge_at(old, value, path);
                path.pop();
                // The derived definition's key location is where the merged value now "lives".
                base.insert(i, (key, merged));
            }
            None => base.push((key, value)),
        }
    }
    base
}

fn scalar_text(n: &Node) -> Option<&str> {
    n.as_text()
}

fn append_unique(mut base: Vec<Node>, over: Vec<Node>) -> Vec<Node> {
    for item in over {
        let duplicate =
            scalar_text(&item).is_some_and(|t| base.iter().any(|b| scalar_text(b) == Some(t)));
        if !duplicate {
            base.push(item);
        }
    }
    base
}

fn item_key<'a>(n: &'a Node, key: &str) -> Option<&'a str> {
    n.get(key).and_then(Node::as_text)
}

fn merge_keyed(
    mut base: Vec<Node>,
    over: Vec<Node>,
    key: &str,
    path: &mut Vec<String>,
) -> Vec<Node> {
    for item in over {
        let existing = item_key(&item, key)
            .and_then(|name| base.iter().position(|b| item_key(b, key) == Some(name)));
        match existing {
            Some(i) => {
                let old = base.remove(i);
                path.push("*".into());
                let merged = merge_at(old, item, path);
                path.pop();
                base.insert(i, merged);
            }
            None => base.push(item),
        }
    }
    base
}

/// `packages`: a derived `remove` takes names out of the inherited `install`, and a derived
/// `install` takes names back out of the inherited `remove`; the rest merges as usual.
fn merge_packages(
    mut base: Vec<(Key, Node)>,
    over: Vec<(Key, Node)>,
    path: &mut Vec<String>,
) -> Vec<(Key, Node)> {
    let names = |map: &Vec<(Key, Node)>, key: &str| -> Vec<String> {
        map.iter()
            .find(|(k, _)| k.name == key)
            .and_then(|(_, v)| v.as_seq())
            .map(|items| {
                items
                    .iter()
                    .filter_map(|n| n.as_text().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let removed = names(&over, "remove");
    let added = names(&over, "install");
    let retain = |map: &mut Vec<(Key, Node)>, key: &str, drop: &[String]| {
        if let Some((_, NodeKind::Seq(items))) = map
            .iter_mut()
            .find(|(k, _)| k.name == key)
            .map(|(k, v)| (k, &mut v.kind))
        {
            items.retain(|n| n.as_text().is_none_or(|t| !drop.iter().any(|d| d == t)));
        }
    };
    retain(&mut base, "install", &removed);
    retain(&mut base, "remove", &added);
    // A name both installed and removed by the same file is left for validation to report.
    merge_maps(base, over, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::node::{SourceFile, parse};

    fn yaml(text: &str) -> Node {
        parse(&SourceFile::new("t.yaml", text)).unwrap()
    }

    fn texts(n: &Node) -> Vec<String> {
        n.as_seq()
            .unwrap()
            .iter()
            .map(|i| i.as_text().unwrap_or("?").to_string())
            .collect()
    }

    #[test]
    fn maps_merge_scalars_override_lists_append() {
        let base = yaml(
            "name: base\nsystem:\n  hostname: a\n  locale: C.UTF-8\npackages:\n  install: [bash, vim]\n",
        );
        let over = yaml("name: child\nsystem:\n  hostname: b\npackages:\n  install: [vim, curl]\n");
        let m = merge(base, over);
        assert_eq!(m.get("name").unwrap().as_text(), Some("child"));
        let sys = m.get("system").unwrap();
        assert_eq!(sys.get("hostname").unwrap().as_text(), Some("b"));
        assert_eq!(sys.get("locale").unwrap().as_text(), Some("C.UTF-8"));
        assert_eq!(
            texts(m.get("packages").unwrap().get("install").unwrap()),
            ["bash", "vim", "curl"]
        );
    }

    #[test]
    fn remove_subtracts_and_install_readds() {
        let base = yaml("packages:\n  install: [bash, vim, nano]\n  remove: [emacs]\n");
        let over = yaml("packages:\n  install: [emacs]\n  remove: [vim]\n");
        let m = merge(base, over);
        let p = m.get("packages").unwrap();
        assert_eq!(texts(p.get("install").unwrap()), ["bash", "nano", "emacs"]);
        assert_eq!(texts(p.get("remove").unwrap()), ["vim"]);
    }

    #[test]
    fn named_items_merge_by_key() {
        let base = yaml(
            "repositories:\n  - id: a\n    baseurl: [x, y]\n    priority: 5\n  - id: b\n    baseurl: [z]\n",
        );
        let over =
            yaml("repositories:\n  - id: a\n    baseurl: [mirror]\n  - id: c\n    baseurl: [w]\n");
        let m = merge(base, over);
        let repos = m.get("repositories").unwrap().as_seq().unwrap();
        assert_eq!(repos.len(), 3);
        assert_eq!(texts(repos[0].get("baseurl").unwrap()), ["mirror"]);
        assert_eq!(repos[0].get("priority").unwrap().as_text(), Some("5"));
        assert_eq!(repos[2].get("id").unwrap().as_text(), Some("c"));
    }

    #[test]
    fn argument_lists_are_replaced() {
        let base = yaml(
            "outputs:\n  oci:\n    entrypoint: [/bin/sh, -c]\narchitectures: [x86_64, aarch64]\n",
        );
        let over =
            yaml("outputs:\n  oci:\n    entrypoint: [/usr/bin/python3]\narchitectures: [x86_64]\n");
        let m = merge(base, over);
        let oci = m.get("outputs").unwrap().get("oci").unwrap();
        assert_eq!(texts(oci.get("entrypoint").unwrap()), ["/usr/bin/python3"]);
        assert_eq!(texts(m.get("architectures").unwrap()), ["x86_64"]);
    }

    #[test]
    fn merged_values_keep_their_origin() {
        let base = parse(&SourceFile::new(
            "base.yaml",
            "system:\n  locale: C.UTF-8\n",
        ))
        .unwrap();
        let over = parse(&SourceFile::new("child.yaml", "system:\n  hostname: h\n")).unwrap();
        let m = merge(base, over);
        let sys = m.get("system").unwrap();
        assert_eq!(sys.get("locale").unwrap().loc.to_string(), "base.yaml:2:11");
        assert_eq!(
            sys.get("hostname").unwrap().loc.to_string(),
            "child.yaml:2:13"
        );
    }
}
