//! A deterministic tar writer over the staging tree, shared by the OCI and WSL backends: PAX
//! headers, numeric owners, xattrs, hardlinks, devices, sorted entries, clamped mtimes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, Read, Write};

use crate::tree::{Entry, Kind, Tree};

const BLOCK: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("{path}: cannot read its content from the staging tree: {source}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: the manifest says {expected} bytes but the staging tree holds {actual}")]
    SizeChanged {
        path: String,
        expected: u64,
        actual: u64,
    },
    #[error("writing the archive: {0}")]
    Write(#[from] io::Error),
}

/// How the tree is written.
#[derive(Debug, Clone, Default)]
pub struct TarOptions {
    /// Every mtime later than this is written as this (SOURCE_DATE_EPOCH).
    pub clamp_mtime: i64,
    /// Write the root directory as `./` (WSL imports its mode and owner); OCI layers omit it.
    pub root_entry: bool,
    /// Paths (absolute, as in the manifest) left out, with everything below them.
    pub exclude: BTreeSet<String>,
    /// Entries written instead of (or in addition to) the tree's: a backend's own files, so
    /// the staging tree, which other outputs share, stays as it is. Their mtime is
    /// `clamp_mtime`; a parent directory must exist in the tree or the overlay.
    pub overlay: BTreeMap<String, Overlay>,
}

/// An entry a backend adds or replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    pub kind: OverlayKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverlayKind {
    File(Vec<u8>),
    Dir,
    Symlink(String),
}

impl Overlay {
    pub fn file(content: impl Into<Vec<u8>>, mode: u32) -> Overlay {
        Overlay {
            kind: OverlayKind::File(content.into()),
            mode,
            uid: 0,
            gid: 0,
        }
    }
    pub fn dir(mode: u32, uid: u32, gid: u32) -> Overlay {
        Overlay {
            kind: OverlayKind::Dir,
            mode,
            uid,
            gid,
        }
    }
    pub fn symlink(target: &str) -> Overlay {
        Overlay {
            kind: OverlayKind::Symlink(target.to_string()),
            mode: 0o777,
            uid: 0,
            gid: 0,
        }
    }
}

impl TarOptions {
    /// Whether `path` is left out: it or one of its parents is excluded.
    pub fn excluded(&self, path: &str) -> bool {
        if self.exclude.is_empty() {
            return false;
        }
        let mut p = path;
        loop {
            if self.exclude.contains(p) {
                return true;
            }
            match p.rfind('/') {
                Some(0) | None => return false,
                Some(i) => p = &p[..i],
            }
        }
    }

    /// Adds overlay directories (0755, root) for `path` and each parent the archive lacks,
    /// following the tree's symlinks the way the image sees them (`/bin` → `/usr/bin`).
    pub fn ensure_dirs(&mut self, tree: &Tree, path: &str) {
        let mut at = String::new();
        for c in path.split('/').filter(|c| !c.is_empty()) {
            at.push('/');
            at.push_str(c);
            let resolved = tree.canonical(&at);
            let present = self.overlay.contains_key(&resolved)
                || (tree.get(&resolved).is_some_and(|e| e.kind == Kind::Dir)
                    && !self.excluded(&resolved));
            if !present {
                self.overlay
                    .insert(resolved.clone(), Overlay::dir(0o755, 0, 0));
            }
            at = resolved;
        }
    }

    /// What the archive holds at `path`: the overlay's entry, or the tree's unless excluded.
    pub fn lookup<'a>(&'a self, tree: &'a Tree, path: &str) -> Option<Item<'a>> {
        if let Some(o) = self.overlay.get(path) {
            return Some(Item::Overlay(o));
        }
        if self.excluded(path) {
            return None;
        }
        tree.entries().get(path).map(Item::Tree)
    }
}

/// One entry of the archive.
#[derive(Debug, Clone, Copy)]
pub enum Item<'a> {
    Tree(&'a Entry),
    Overlay(&'a Overlay),
}

/// The archive's entries in order: the tree's (less the excluded) merged with the overlay's,
/// which win where both have a path.
pub fn items<'a>(
    tree: &'a Tree,
    opts: &'a TarOptions,
) -> impl Iterator<Item = (&'a str, Item<'a>)> {
    let mut t = tree.entries().iter().peekable();
    let mut o = opts.overlay.iter().peekable();
    std::iter::from_fn(move || {
        loop {
            let take_overlay = match (t.peek(), o.peek()) {
                (None, None) => return None,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some((tp, _)), Some((op, _))) => op.as_str() <= tp.as_str(),
            };
            if take_overlay {
                let (op, ov) = o.next()?;
                if t.peek().is_some_and(|(tp, _)| *tp == op) {
                    t.next();
                }
                return Some((op.as_str(), Item::Overlay(ov)));
            }
            let (tp, te) = t.next()?;
            if !opts.excluded(tp) {
                return Some((tp.as_str(), Item::Tree(te)));
            }
        }
    })
}

/// What was written.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TarSummary {
    pub entries: u64,
    /// Bytes of the uncompressed archive.
    pub bytes: u64,
    /// Sockets cannot be represented in tar; they are left out and named here.
    pub skipped_sockets: Vec<String>,
}

/// Writes `tree` as a tar stream to `out`, entries in manifest (byte) order, so parents come
/// before their children. Owners are numeric only, as OCI and WSL expect.
pub fn write_tree<W: Write>(
    tree: &Tree,
    opts: &TarOptions,
    out: W,
) -> Result<TarSummary, TarError> {
    let mut w = Counting { inner: out, n: 0 };
    let mut summary = TarSummary::default();
    let mut first_of_link: HashMap<u32, String> = HashMap::new();
    for (path, item) in items(tree, opts) {
        let e = match item {
            Item::Tree(e) => e,
            Item::Overlay(_) if path == "/" && !opts.root_entry => continue,
            Item::Overlay(o) => {
                write_overlay(path, o, opts, &mut w)?;
                summary.entries += 1;
                continue;
            }
        };
        let name = if path == "/" {
            if !opts.root_entry {
                continue;
            }
            "./".to_string()
        } else {
            let rel = path.trim_start_matches('/');
            if e.kind == Kind::Dir {
                format!("{rel}/")
            } else {
                rel.to_string()
            }
        };
        let mut h = Header {
            name,
            mode: e.mode & 0o7777,
            uid: e.uid as u64,
            gid: e.gid as u64,
            size: 0,
            mtime: e.mtime.min(opts.clamp_mtime).max(0),
            typeflag: b'0',
            linkname: String::new(),
            devmajor: 0,
            devminor: 0,
            xattrs: e
                .xattrs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .collect(),
        };
        let mut content = None;
        match &e.kind {
            Kind::File { size, link } => {
                let first = link.and_then(|l| first_of_link.get(&l));
                if let Some(target) = first {
                    h.typeflag = b'1';
                    h.linkname = target.trim_start_matches('/').to_string();
                } else {
                    if let Some(l) = link {
                        first_of_link.insert(*l, path.to_string());
                    }
                    h.size = *size;
                    content = Some(*size);
                }
            }
            Kind::Dir => h.typeflag = b'5',
            Kind::Symlink { target } => {
                h.typeflag = b'2';
                h.linkname = target.clone();
            }
            Kind::CharDev { major, minor } => {
                h.typeflag = b'3';
                (h.devmajor, h.devminor) = (*major, *minor);
            }
            Kind::BlockDev { major, minor } => {
                h.typeflag = b'4';
                (h.devmajor, h.devminor) = (*major, *minor);
            }
            Kind::Fifo => h.typeflag = b'6',
            Kind::Socket => {
                summary.skipped_sockets.push(path.to_string());
                continue;
            }
        }
        h.write(&mut w)?;
        if let Some(size) = content {
            copy_content(tree, path, size, &mut w)?;
        }
        summary.entries += 1;
    }
    // The end of the archive: two zero blocks.
    w.write_all(&[0u8; 2 * BLOCK])?;
    w.flush()?;
    summary.bytes = w.n;
    Ok(summary)
}

fn write_overlay<W: Write>(
    path: &str,
    o: &Overlay,
    opts: &TarOptions,
    w: &mut W,
) -> Result<(), TarError> {
    let rel = path.trim_start_matches('/');
    let mut h = Header {
        name: rel.to_string(),
        mode: o.mode & 0o7777,
        uid: o.uid as u64,
        gid: o.gid as u64,
        size: 0,
        mtime: opts.clamp_mtime.max(0),
        typeflag: b'0',
        linkname: String::new(),
        devmajor: 0,
        devminor: 0,
        xattrs: Vec::new(),
    };
    match &o.kind {
        OverlayKind::File(bytes) => {
            h.size = bytes.len() as u64;
            h.write(w)?;
            w.write_all(bytes)?;
            w.write_all(&[0u8; BLOCK][..(BLOCK - bytes.len() % BLOCK) % BLOCK])?;
        }
        OverlayKind::Dir => {
            h.name = if path == "/" {
                "./".into()
            } else {
                format!("{rel}/")
            };
            h.typeflag = b'5';
            h.write(w)?;
        }
        OverlayKind::Symlink(target) => {
            h.typeflag = b'2';
            h.linkname = target.clone();
            h.write(w)?;
        }
    }
    Ok(())
}

fn copy_content<W: Write>(tree: &Tree, path: &str, size: u64, w: &mut W) -> Result<(), TarError> {
    let read_err = |source| TarError::Read {
        path: path.to_string(),
        source,
    };
    let f = File::open(tree.disk_path(path)).map_err(read_err)?;
    let actual = f.metadata().map_err(read_err)?.len();
    if actual != size {
        return Err(TarError::SizeChanged {
            path: path.to_string(),
            expected: size,
            actual,
        });
    }
    let copied = io::copy(&mut f.take(size), w)?;
    if copied != size {
        return Err(TarError::SizeChanged {
            path: path.to_string(),
            expected: size,
            actual: copied,
        });
    }
    let pad = (BLOCK - (size as usize % BLOCK)) % BLOCK;
    w.write_all(&[0u8; BLOCK][..pad])?;
    Ok(())
}

struct Counting<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct Header<'a> {
    name: String,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: i64,
    typeflag: u8,
    linkname: String,
    devmajor: u32,
    devminor: u32,
    xattrs: Vec<(&'a str, &'a [u8])>,
}

/// Largest value an octal field of `len` bytes holds (len - 1 digits and a NUL).
fn octal_max(len: usize) -> u64 {
    (1u64 << (3 * (len as u32 - 1))) - 1
}

impl Header<'_> {
    fn write<W: Write>(&self, w: &mut W) -> io::Result<()> {
        // Everything ustar cannot hold goes into a PAX extended header before the entry.
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        let (prefix, name) = split_name(&self.name).unwrap_or_else(|| {
            pax.push(("path".into(), self.name.clone().into_bytes()));
            (String::new(), truncate(&self.name, 100))
        });
        if self.linkname.len() > 100 {
            pax.push(("linkpath".into(), self.linkname.clone().into_bytes()));
        }
        if self.uid > octal_max(8) {
            pax.push(("uid".into(), self.uid.to_string().into_bytes()));
        }
        if self.gid > octal_max(8) {
            pax.push(("gid".into(), self.gid.to_string().into_bytes()));
        }
        if self.size > octal_max(12) {
            pax.push(("size".into(), self.size.to_string().into_bytes()));
        }
        if self.mtime as u64 > octal_max(12) {
            pax.push(("mtime".into(), self.mtime.to_string().into_bytes()));
        }
        for (k, v) in &self.xattrs {
            pax.push((format!("SCHILY.xattr.{k}"), v.to_vec()));
        }
        if !pax.is_empty() {
            let mut body = Vec::new();
            for (k, v) in &pax {
                body.extend(pax_record(k, v));
            }
            // A fixed name: GNU tar's default embeds the process id, which is not reproducible.
            let base = self.name.trim_end_matches('/');
            let base = base.rsplit('/').next().unwrap_or(base);
            let xname = truncate(&format!("PaxHeaders/{base}"), 100);
            let block = ustar_block(&UstarFields {
                name: &xname,
                prefix: "",
                mode: 0o644,
                uid: 0,
                gid: 0,
                size: body.len() as u64,
                mtime: self.mtime.clamp(0, octal_max(12) as i64) as u64,
                typeflag: b'x',
                linkname: "",
                devmajor: 0,
                devminor: 0,
            });
            w.write_all(&block)?;
            w.write_all(&body)?;
            w.write_all(&[0u8; BLOCK][..(BLOCK - body.len() % BLOCK) % BLOCK])?;
        }
        let block = ustar_block(&UstarFields {
            name: &name,
            prefix: &prefix,
            mode: self.mode,
            uid: self.uid.min(octal_max(8)),
            gid: self.gid.min(octal_max(8)),
            size: self.size.min(octal_max(12)),
            mtime: (self.mtime as u64).min(octal_max(12)),
            typeflag: self.typeflag,
            linkname: &truncate(&self.linkname, 100),
            devmajor: self.devmajor,
            devminor: self.devminor,
        });
        w.write_all(&block)
    }
}

/// Splits a name into ustar's prefix (≤ 155 bytes) and name (≤ 100 bytes) at a `/`, if it fits.
fn split_name(name: &str) -> Option<(String, String)> {
    if name.len() <= 100 {
        return Some((String::new(), name.to_string()));
    }
    if name.len() > 256 {
        return None;
    }
    // A directory's trailing slash belongs to the name part.
    let body = name.trim_end_matches('/');
    let slash = &name[body.len()..];
    for (i, _) in body.match_indices('/') {
        let (p, n) = (&body[..i], &body[i + 1..]);
        if p.len() <= 155 && n.len() + slash.len() <= 100 && !n.is_empty() {
            return Some((p.to_string(), format!("{n}{slash}")));
        }
    }
    None
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// One PAX record: "LEN KEY=VALUE\n", where LEN counts the whole record including itself.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // space, '=', newline
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

struct UstarFields<'a> {
    name: &'a str,
    prefix: &'a str,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    typeflag: u8,
    linkname: &'a str,
    devmajor: u32,
    devminor: u32,
}

fn ustar_block(f: &UstarFields) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    put(&mut b[0..100], f.name.as_bytes());
    octal(&mut b[100..108], f.mode as u64);
    octal(&mut b[108..116], f.uid);
    octal(&mut b[116..124], f.gid);
    octal(&mut b[124..136], f.size);
    octal(&mut b[136..148], f.mtime);
    b[156] = f.typeflag;
    put(&mut b[157..257], f.linkname.as_bytes());
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    // uname and gname stay empty: owners are numeric.
    if matches!(f.typeflag, b'3' | b'4') {
        octal(&mut b[329..337], f.devmajor as u64);
        octal(&mut b[337..345], f.devminor as u64);
    }
    put(&mut b[345..500], f.prefix.as_bytes());
    // The checksum is computed with its own field as spaces.
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|&x| x as u32).sum();
    let s = format!("{sum:06o}\0 ");
    b[148..156].copy_from_slice(s.as_bytes());
    b
}

fn put(field: &mut [u8], v: &[u8]) {
    let n = v.len().min(field.len());
    field[..n].copy_from_slice(&v[..n]);
}

/// Zero-padded octal with a terminating NUL, as GNU tar and Go's archive/tar write it.
fn octal(field: &mut [u8], v: u64) {
    let digits = field.len() - 1;
    let s = format!("{v:0digits$o}");
    field[..digits].copy_from_slice(&s.as_bytes()[s.len() - digits..]);
    field[digits] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        for (k, v) in [("path", "a"), ("path", &"x".repeat(95)), ("uid", "1")] {
            let r = pax_record(k, v.as_bytes());
            let text = String::from_utf8(r.clone()).unwrap();
            let (len, _) = text.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), r.len(), "{text:?}");
        }
        // The boundary where the length gains a digit: 9 + "x" → 10 bytes needs two digits.
        let r = pax_record("k", b"12345");
        assert_eq!(r, b"11 k=12345\n");
    }

    #[test]
    fn names_split_at_a_slash_or_go_to_pax() {
        assert_eq!(
            split_name("usr/bin/x"),
            Some(("".into(), "usr/bin/x".into()))
        );
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(50));
        assert_eq!(split_name(&long), Some(("d".repeat(120), "f".repeat(50))));
        let dir = format!("{}/{}/", "d".repeat(120), "f".repeat(99));
        assert_eq!(
            split_name(&dir),
            Some(("d".repeat(120), format!("{}/", "f".repeat(99))))
        );
        assert_eq!(split_name(&"n".repeat(101)), None);
        assert_eq!(split_name(&format!("{}/x", "d".repeat(156))), None);
    }

    #[test]
    fn header_checksum_and_fields() {
        let b = ustar_block(&UstarFields {
            name: "etc/passwd",
            prefix: "",
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 10,
            mtime: 1_700_000_000,
            typeflag: b'0',
            linkname: "",
            devmajor: 0,
            devminor: 0,
        });
        assert_eq!(&b[124..136], b"00000000012\0");
        let stored = u32::from_str_radix(std::str::from_utf8(&b[148..154]).unwrap(), 8).unwrap();
        let mut c = b;
        c[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, c.iter().map(|&x| x as u32).sum::<u32>());
    }

    fn file_entry(mode: u32) -> Entry {
        Entry {
            kind: Kind::File {
                size: 0,
                link: None,
            },
            ..Entry::dir(mode)
        }
    }

    /// Names, types and modes of a tar stream, read back by a minimal ustar reader.
    fn listing(bytes: &[u8]) -> Vec<(String, u8, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + BLOCK <= bytes.len() && bytes[at] != 0 {
            let b = &bytes[at..at + BLOCK];
            let field = |r: std::ops::Range<usize>| {
                let f = &b[r];
                String::from_utf8_lossy(&f[..f.iter().position(|&c| c == 0).unwrap_or(f.len())])
                    .into_owned()
            };
            let size = u64::from_str_radix(&field(124..135), 8).unwrap() as usize;
            let mode = u32::from_str_radix(&field(100..107), 8).unwrap();
            let body = bytes[at + BLOCK..at + BLOCK + size].to_vec();
            out.push((field(0..100), b[156], mode, body));
            at += BLOCK + size.div_ceil(BLOCK) * BLOCK;
        }
        out
    }

    #[test]
    fn overlay_replaces_and_adds_entries_and_exclusions_drop_subtrees() {
        let dir = tempfile::tempdir().unwrap();
        let mut tree = Tree::create(&dir.path().join("root")).unwrap();
        tree.mkdir_p("/etc", 0o755, 0).unwrap();
        tree.mkdir_p("/usr/lib/sysimage/rpm", 0o755, 0).unwrap();
        tree.mkdir_p("/tmp", 0o755, 0).unwrap();
        tree.put_text(
            "/etc/passwd",
            "root:x:0:0::/root:/bin/bash\n",
            file_entry(0o644),
        )
        .unwrap();
        tree.put_text("/etc/shells", "/bin/bash\n", file_entry(0o644))
            .unwrap();
        tree.put_text(
            "/usr/lib/sysimage/rpm/rpmdb.sqlite",
            "db",
            file_entry(0o644),
        )
        .unwrap();
        let mut opts = TarOptions {
            clamp_mtime: 1_700_000_000,
            ..TarOptions::default()
        };
        opts.exclude.insert("/usr/lib/sysimage/rpm".into());
        opts.exclude.insert("/etc/shells".into());
        opts.overlay
            .insert("/etc/passwd".into(), Overlay::file("root:x:0:0\n", 0o644));
        opts.overlay
            .insert("/tmp".into(), Overlay::dir(0o1777, 0, 0));
        opts.overlay
            .insert("/home".into(), Overlay::dir(0o755, 0, 0));
        opts.overlay
            .insert("/home/nonroot".into(), Overlay::dir(0o700, 65532, 65532));
        opts.overlay
            .insert("/bin".into(), Overlay::symlink("usr/bin"));
        let mut out = Vec::new();
        write_tree(&tree, &opts, &mut out).unwrap();
        let got: Vec<(String, u8, u32)> = listing(&out)
            .iter()
            .map(|(n, t, m, _)| (n.clone(), *t, *m))
            .collect();
        let want = [
            ("bin", b'2', 0o777),
            ("etc/", b'5', 0o755),
            ("etc/passwd", b'0', 0o644),
            ("home/", b'5', 0o755),
            ("home/nonroot/", b'5', 0o700),
            ("tmp/", b'5', 0o1777),
            ("usr/", b'5', 0o755),
            ("usr/lib/", b'5', 0o755),
            ("usr/lib/sysimage/", b'5', 0o755),
        ];
        let want: Vec<(String, u8, u32)> = want
            .iter()
            .map(|(n, t, m)| (n.to_string(), *t, *m))
            .collect();
        assert_eq!(got, want);
        let passwd = listing(&out)
            .into_iter()
            .find(|e| e.0 == "etc/passwd")
            .unwrap();
        assert_eq!(passwd.3, b"root:x:0:0\n");
        assert!(opts.excluded("/usr/lib/sysimage/rpm/x/y"));
        assert!(!opts.excluded("/usr/lib/sysimage/rpmx"));
        assert!(matches!(
            opts.lookup(&tree, "/etc/passwd"),
            Some(Item::Overlay(_))
        ));
        assert!(opts.lookup(&tree, "/etc/shells").is_none());
    }
}
