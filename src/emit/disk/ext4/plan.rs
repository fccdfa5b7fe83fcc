//! What goes into the file system, decided before any block is written: the entries of the
//! source subtree, their inode numbers (sorted path order), directory listings and link counts.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use super::dir::{self, DirEntry};
use super::layout::FIRST_INO;
use super::{Ext4Error, Source};
use crate::tree::{Entry, Kind};

pub const ROOT_INO: u32 = 2;
pub const LOST_FOUND_INO: u32 = FIRST_INO;
/// The kernel's link count limit; directories beyond it count 1 (dir_nlink).
const LINK_MAX: u32 = 65000;

/// One inode to write.
#[derive(Debug)]
pub struct Node<'a> {
    pub ino: u32,
    /// Its first path in the file system (for messages).
    pub path: String,
    /// Its path in the staging tree, where file content is; `None` for made-up directories.
    pub tree_path: Option<String>,
    pub entry: Cow<'a, Entry>,
    pub links: u32,
    /// Directories: the parent's inode (`..`).
    pub parent: u32,
    /// Directories: their names, in order.
    pub children: Vec<DirEntry>,
}

/// The inodes in number order: 2 (root), 11 (lost+found), then 12… in path order.
#[derive(Debug)]
pub struct Plan<'a> {
    pub nodes: Vec<Node<'a>>,
    /// Sum of the files' sizes (for a message when they do not fit).
    pub content_bytes: u64,
}

pub fn file_type(kind: &Kind) -> u8 {
    match kind {
        Kind::File { .. } => dir::FT_REG,
        Kind::Dir => dir::FT_DIR,
        Kind::Symlink { .. } => dir::FT_SYMLINK,
        Kind::CharDev { .. } => dir::FT_CHR,
        Kind::BlockDev { .. } => dir::FT_BLK,
        Kind::Fifo => dir::FT_FIFO,
        Kind::Socket => dir::FT_SOCK,
    }
}

fn parent_and_name(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some(("", name)) => ("/", name),
        Some((p, name)) => (p, name),
        None => ("/", path),
    }
}

fn made_up_dir(mode: u32, time: i64) -> Entry {
    let mut e = Entry::dir(mode);
    e.mtime = time;
    e
}

pub fn plan<'a>(src: &Source<'a>, timestamp: i64) -> Result<Plan<'a>, Ext4Error> {
    let root = if src.root == "/" {
        ""
    } else {
        src.root.trim_end_matches('/')
    };
    let invalid = |path: &str, message: &str| Ext4Error::Tree {
        path: path.into(),
        message: message.into(),
    };
    match src.tree.get(if root.is_empty() { "/" } else { root }) {
        Some(Entry {
            kind: Kind::Dir, ..
        }) => {}
        _ => {
            return Err(invalid(
                src.root,
                "the file system's root is not a directory in the tree",
            ));
        }
    }
    let mounts: Vec<String> = src
        .mounts
        .iter()
        .filter_map(|m| {
            let m = m.trim_end_matches('/');
            let rest = m.strip_prefix(root)?;
            rest.starts_with('/').then(|| rest.to_string())
        })
        .collect();
    let below_mount = |p: &str| {
        mounts.iter().any(|m| {
            p.len() > m.len() && p.starts_with(m.as_str()) && p.as_bytes()[m.len()] == b'/'
        })
    };

    // File system path → (tree path, entry).
    let mut entries: BTreeMap<String, (Option<String>, Cow<'a, Entry>)> = BTreeMap::new();
    let prefix = format!("{root}/");
    let start = if root.is_empty() { "/" } else { root };
    for (path, e) in src.tree.entries().range(start.to_string()..) {
        let fs_path = if path == start {
            "/".to_string()
        } else if let Some(rest) = path.strip_prefix(&prefix) {
            format!("/{rest}")
        } else if path.as_str() < prefix.as_str() {
            // e.g. "/boot-x" sorts between "/boot" and "/boot/".
            continue;
        } else {
            break;
        };
        if below_mount(&fs_path) {
            continue;
        }
        entries.insert(fs_path, (Some(path.clone()), Cow::Borrowed(e)));
    }
    for m in &mounts {
        // A mount point missing from the tree, and its missing parents, are made root-owned 0755.
        let mut at = String::new();
        for c in m.split('/').filter(|c| !c.is_empty()) {
            at.push('/');
            at.push_str(c);
            match entries.get(&at) {
                Some((_, e)) if e.kind != Kind::Dir => {
                    return Err(invalid(
                        &at,
                        "a mount point (or its parent) is not a directory",
                    ));
                }
                Some(_) => {}
                None => {
                    entries.insert(
                        at.clone(),
                        (None, Cow::Owned(made_up_dir(0o755, timestamp))),
                    );
                }
            }
        }
    }
    match entries.get("/lost+found") {
        Some((_, e)) if e.kind != Kind::Dir => {
            return Err(invalid(
                "/lost+found",
                "must be a directory (e2fsck needs it)",
            ));
        }
        Some(_) => {}
        None => {
            entries.insert(
                "/lost+found".into(),
                (None, Cow::Owned(made_up_dir(0o700, timestamp))),
            );
        }
    }

    // Inode numbers: hardlinks share the number of their group's first path.
    let mut ino_of: HashMap<&str, u32> = HashMap::new();
    let mut group_ino: HashMap<u32, u32> = HashMap::new();
    let mut nodes: Vec<Node<'a>> = Vec::new();
    let mut next = FIRST_INO + 1;
    let mut content_bytes = 0;
    for (path, (tree_path, e)) in &entries {
        let ino = match path.as_str() {
            "/" => ROOT_INO,
            "/lost+found" => LOST_FOUND_INO,
            _ => {
                if let Kind::File { link: Some(g), .. } = e.kind
                    && let Some(&ino) = group_ino.get(&g)
                {
                    ino_of.insert(path, ino);
                    continue;
                }
                let n = next;
                next = next
                    .checked_add(1)
                    .ok_or_else(|| invalid(path, "more than 2^32 inodes"))?;
                n
            }
        };
        if let Kind::File {
            link: Some(g),
            size,
        } = e.kind
        {
            group_ino.insert(g, ino);
            content_bytes += size;
        } else if let Kind::File { size, .. } = e.kind {
            content_bytes += size;
        }
        ino_of.insert(path, ino);
        nodes.push(Node {
            ino,
            path: path.clone(),
            tree_path: tree_path.clone(),
            entry: e.clone(),
            links: if e.kind == Kind::Dir { 2 } else { 0 },
            parent: ROOT_INO,
            children: Vec::new(),
        });
    }
    // Root first, then lost+found, then the rest: number order.
    nodes.sort_by_key(|n| n.ino);
    let index = |ino: u32| -> usize {
        match ino {
            ROOT_INO => 0,
            LOST_FOUND_INO => 1,
            n => (n - FIRST_INO) as usize + 1,
        }
    };
    for (path, (_, e)) in &entries {
        if path == "/" {
            continue;
        }
        let (parent, name) = parent_and_name(path);
        if name.len() > 255 {
            return Err(invalid(path, "a name longer than 255 bytes"));
        }
        let Some(&pino) = ino_of.get(parent) else {
            return Err(invalid(path, "its parent directory is not in the tree"));
        };
        let ino = ino_of[path.as_str()];
        let p = &mut nodes[index(pino)];
        if p.entry.kind != Kind::Dir {
            return Err(invalid(path, "its parent is not a directory"));
        }
        p.children.push(DirEntry {
            name: name.as_bytes().to_vec(),
            ino,
            file_type: file_type(&e.kind),
        });
        if e.kind == Kind::Dir {
            p.links += 1;
            nodes[index(ino)].parent = pino;
        } else {
            nodes[index(ino)].links += 1;
        }
    }
    for n in &mut nodes {
        if n.links > LINK_MAX {
            if n.entry.kind == Kind::Dir {
                n.links = 1;
            } else {
                return Err(invalid(
                    &n.path,
                    &format!("{} hardlinks, more than ext4's {LINK_MAX}", n.links),
                ));
            }
        }
    }
    Ok(Plan {
        nodes,
        content_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Tree;

    fn file() -> Entry {
        Entry {
            kind: Kind::File {
                size: 0,
                link: None,
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 5,
            xattrs: BTreeMap::new(),
        }
    }

    #[test]
    fn subtree_mounts_and_hardlinks() {
        let d = tempfile::tempdir().unwrap();
        let mut t = Tree::create(&d.path().join("r"))
            .unwrap()
            .without_real_owners();
        t.put_text("/boot/a", "1", file()).unwrap();
        t.hardlink("/boot/b", "/boot/a").unwrap();
        t.put_text("/boot/efi/EFI/x", "2", file()).unwrap();
        t.put_text("/boot-other", "3", file()).unwrap();
        t.put_text("/etc/z", "4", file()).unwrap();
        let mounts = vec!["/boot/efi".to_string(), "/var".to_string()];
        let src = Source {
            tree: &t,
            root: "/boot",
            mounts: &mounts,
        };
        let p = plan(&src, 9).unwrap();
        let paths: Vec<(&str, u32, u32)> = p
            .nodes
            .iter()
            .map(|n| (n.path.as_str(), n.ino, n.links))
            .collect();
        assert_eq!(
            paths,
            [
                ("/", 2, 4),
                ("/lost+found", 11, 2),
                ("/a", 12, 2),
                ("/efi", 13, 2)
            ]
        );
        let names: Vec<&[u8]> = p.nodes[0]
            .children
            .iter()
            .map(|c| c.name.as_slice())
            .collect();
        assert_eq!(names, [&b"a"[..], b"b", b"efi", b"lost+found"]);
        assert!(p.nodes[3].children.is_empty());
    }

    #[test]
    fn the_root_must_be_a_directory() {
        let d = tempfile::tempdir().unwrap();
        let mut t = Tree::create(&d.path().join("r"))
            .unwrap()
            .without_real_owners();
        t.put_text("/boot", "x", file()).unwrap();
        let src = Source {
            tree: &t,
            root: "/boot",
            mounts: &[],
        };
        assert!(matches!(plan(&src, 0), Err(Ext4Error::Tree { .. })));
    }
}
