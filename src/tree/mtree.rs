//! The manifest as an mtree(5) file: one line per path with type, mode, owner, size, time,
//! link target and xattrs, readable by people and by `bsdtar`/`mtree` tools.

use std::fmt::Write as _;

use super::{Kind, Tree};

/// mtree escapes everything outside printable ASCII (and space, `\`, `#`, `=`) as `\ooo`.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_graphic() && !matches!(b, b'\\' | b'#' | b'=') {
            out.push(b as char);
        } else {
            let _ = write!(out, "\\{b:03o}");
        }
    }
    out
}

/// The whole manifest, sorted by path.
pub fn render(tree: &Tree) -> String {
    let mut out = String::from("#mtree\n");
    for (path, e) in tree.entries() {
        let name = if path == "/" {
            ".".to_string()
        } else {
            format!(".{}", escape(path))
        };
        let _ = write!(
            out,
            "{name} type={} mode={:04o} uid={} gid={} time={}.0",
            e.kind.name(),
            e.mode,
            e.uid,
            e.gid,
            e.mtime
        );
        match &e.kind {
            Kind::File { size, link } => {
                let _ = write!(out, " size={size}");
                if let Some(l) = link {
                    let _ = write!(out, " nlink_group={l}");
                }
            }
            Kind::Symlink { target } => {
                let _ = write!(out, " link={}", escape(target));
            }
            Kind::CharDev { major, minor } | Kind::BlockDev { major, minor } => {
                let _ = write!(out, " device=native,{major},{minor}");
            }
            _ => {}
        }
        for (k, v) in &e.xattrs {
            let _ = write!(out, " xattr.{}={}", escape(k), hex::encode(v));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Entry;

    #[test]
    fn lines_are_escaped_and_complete() {
        let d = tempfile::tempdir().unwrap();
        let mut t = Tree::create(&d.path().join("r")).unwrap();
        let mut e = Entry::dir(0o644);
        e.kind = Kind::File {
            size: 0,
            link: None,
        };
        e.xattrs.insert("security.capability".into(), vec![1, 2]);
        t.write_file("/a b", &mut &b"xy"[..], e.clone()).unwrap();
        t.symlink("/l", "a b", e).unwrap();
        let text = render(&t);
        assert!(text.contains("./a\\040b type=file mode=0644 uid=0 gid=0 time=0.0 size=2 xattr.security.capability=0102\n"), "{text}");
        assert!(text.contains("./l type=link"), "{text}");
        assert!(text.contains("link=a\\040b"), "{text}");
    }
}
