//! The staging tree: a manifest of every path (type, mode, owner, mtime, xattrs, hardlinks) over a
//! content directory on disk. Ownership lives in the manifest, so no stage needs root to record it.

pub mod accounts;
pub mod mtree;

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What a path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A regular file; its content is on disk. Files sharing a `link` group are hardlinks.
    File {
        size: u64,
        link: Option<u32>,
    },
    Dir,
    Symlink {
        target: String,
    },
    CharDev {
        major: u32,
        minor: u32,
    },
    BlockDev {
        major: u32,
        minor: u32,
    },
    Fifo,
    Socket,
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::File { .. } => "file",
            Kind::Dir => "dir",
            Kind::Symlink { .. } => "link",
            Kind::CharDev { .. } => "char",
            Kind::BlockDev { .. } => "block",
            Kind::Fifo => "fifo",
            Kind::Socket => "socket",
        }
    }
}

/// One path of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// Permission bits with setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    /// Extended attributes, e.g. `security.capability`, `security.selinux`.
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl Entry {
    pub fn dir(mode: u32) -> Self {
        Entry {
            kind: Kind::Dir,
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: BTreeMap::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("{path}: {message}")]
    Unsafe { path: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {message}")]
    Conflict { path: String, message: String },
}

fn io_err(path: &str) -> impl FnOnce(io::Error) -> TreeError + '_ {
    move |source| TreeError::Io {
        path: path.to_string(),
        source,
    }
}

/// How many symlinks one path may go through (as Linux's MAXSYMLINKS).
const MAX_SYMLINKS: usize = 40;

/// The staging tree.
#[derive(Debug)]
pub struct Tree {
    root: PathBuf,
    entries: BTreeMap<String, Entry>,
    next_link: u32,
    /// Whether the disk carries the image's owners and modes too (the builder is root). Then
    /// scriptlets see real owners and a rescan may trust the disk's.
    real_owners: bool,
}

/// Splits an image path into its components, refusing `..` and empty input.
pub fn components(path: &str) -> Result<Vec<&str>, TreeError> {
    if !path.starts_with('/') {
        return Err(TreeError::Unsafe {
            path: path.into(),
            message: "not an absolute path".into(),
        });
    }
    let mut out = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                return Err(TreeError::Unsafe {
                    path: path.into(),
                    message: "contains `..`".into(),
                });
            }
            c if c.contains('\0') => {
                return Err(TreeError::Unsafe {
                    path: path.into(),
                    message: "contains a NUL byte".into(),
                });
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

fn join(parts: &[&str]) -> String {
    if parts.is_empty() {
        return "/".into();
    }
    let mut s = String::new();
    for p in parts {
        s.push('/');
        s.push_str(p);
    }
    s
}

impl Tree {
    /// A new, empty tree whose content lives in `root` (created; it must be empty).
    pub fn create(root: &Path) -> Result<Tree, TreeError> {
        let name = root.display().to_string();
        fs::create_dir_all(root).map_err(io_err(&name))?;
        if fs::read_dir(root).map_err(io_err(&name))?.next().is_some() {
            return Err(TreeError::Unsafe {
                path: name,
                message: "the staging directory is not empty".into(),
            });
        }
        let mut entries = BTreeMap::new();
        entries.insert("/".to_string(), Entry::dir(0o755));
        Ok(Tree {
            root: root.to_path_buf(),
            entries,
            next_link: 1,
            // SAFETY: geteuid has no preconditions.
            real_owners: unsafe { libc::geteuid() } == 0,
        })
    }

    /// Records owners and modes in the manifest only, even as root (for tests of the rootless
    /// path).
    pub fn without_real_owners(mut self) -> Self {
        self.real_owners = false;
        self
    }

    /// Whether owners and modes on disk are the image's (see [`Tree::rescan`]).
    pub fn real_owners(&self) -> bool {
        self.real_owners
    }

    /// Puts an entry's mtime (and, as root, its owner and mode) on the disk copy, so that a
    /// later rescan sees only what really changed.
    fn sync(&self, path: &str) -> Result<(), TreeError> {
        let Some(e) = self.entries.get(path) else {
            return Ok(());
        };
        if matches!(
            e.kind,
            Kind::CharDev { .. } | Kind::BlockDev { .. } | Kind::Fifo | Kind::Socket
        ) {
            return Ok(());
        }
        let disk = self.disk_path(path);
        if self.real_owners {
            std::os::unix::fs::lchown(&disk, Some(e.uid), Some(e.gid)).map_err(io_err(path))?;
            // After chown, which clears setuid bits.
            if !matches!(e.kind, Kind::Symlink { .. }) {
                fs::set_permissions(&disk, fs::Permissions::from_mode(e.mode))
                    .map_err(io_err(path))?;
            }
        }
        set_mtime(&disk, e.mtime).map_err(io_err(path))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn entries(&self) -> &BTreeMap<String, Entry> {
        &self.entries
    }

    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path)
    }

    pub fn get_mut(&mut self, path: &str) -> Option<&mut Entry> {
        self.entries.get_mut(path)
    }

    /// Where an image path's content is on disk (for an already resolved path).
    pub fn disk_path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// Resolves symlinks in the directories of `path` the way the image would see them (as if
    /// chrooted), leaving the last component alone. A link that climbs above `/` is refused: a
    /// write must never leave the tree.
    pub fn resolve_parent(&self, path: &str) -> Result<String, TreeError> {
        let parts = components(path)?;
        let Some((last, dirs)) = parts.split_last() else {
            return Ok("/".into());
        };
        let dir = self.resolve_dirs(path, dirs, 0)?;
        let mut full = dir;
        full.push(last.to_string());
        Ok(join(&full.iter().map(String::as_str).collect::<Vec<_>>()))
    }

    /// `path` with its directories resolved as the image sees them ([`Tree::resolve_parent`]),
    /// or as given when that fails (a symlink loop, or one climbing above `/`): such a path names
    /// nothing in the tree, so lookups with it find nothing either way.
    pub fn canonical(&self, path: &str) -> String {
        self.resolve_parent(path)
            .unwrap_or_else(|_| path.to_string())
    }

    /// Resolves a whole path, following a final symlink too.
    pub fn resolve(&self, path: &str) -> Result<String, TreeError> {
        let parts = components(path)?;
        let resolved = self.resolve_dirs(path, &parts, 0)?;
        Ok(join(
            &resolved.iter().map(String::as_str).collect::<Vec<_>>(),
        ))
    }

    fn resolve_dirs(
        &self,
        orig: &str,
        parts: &[&str],
        depth: usize,
    ) -> Result<Vec<String>, TreeError> {
        let mut out: Vec<String> = Vec::new();
        let mut hops = depth;
        let mut queue: Vec<String> = parts.iter().rev().map(|s| s.to_string()).collect();
        while let Some(c) = queue.pop() {
            if c == ".." {
                if out.pop().is_none() {
                    return Err(TreeError::Unsafe {
                        path: orig.into(),
                        message: "a symlink on the way leads above `/`".into(),
                    });
                }
                continue;
            }
            if c.is_empty() || c == "." {
                continue;
            }
            out.push(c);
            let here = join(&out.iter().map(String::as_str).collect::<Vec<_>>());
            if let Some(Entry {
                kind: Kind::Symlink { target },
                ..
            }) = self.entries.get(&here)
            {
                hops += 1;
                if hops > MAX_SYMLINKS {
                    return Err(TreeError::Unsafe {
                        path: orig.into(),
                        message: "too many levels of symlinks".into(),
                    });
                }
                out.pop();
                if target.starts_with('/') {
                    out.clear();
                }
                for t in target.split('/').rev() {
                    queue.push(t.to_string());
                }
            }
        }
        Ok(out)
    }

    /// Makes sure a directory (and its parents) exist; new ones get `mode`, root-owned.
    pub fn mkdir_p(&mut self, path: &str, mode: u32, mtime: i64) -> Result<String, TreeError> {
        let resolved = self.resolve(path)?;
        let parts = components(&resolved)?;
        for i in 1..=parts.len() {
            let p = join(&parts[..i]);
            match self.entries.get(&p) {
                Some(Entry {
                    kind: Kind::Dir, ..
                }) => continue,
                Some(other) => {
                    return Err(TreeError::Conflict {
                        path: p,
                        message: format!("is a {}, not a directory", other.kind.name()),
                    });
                }
                None => {
                    let disk = self.disk_path(&p);
                    fs::create_dir(&disk)
                        .or_else(|e| {
                            if e.kind() == io::ErrorKind::AlreadyExists
                                && disk.symlink_metadata().is_ok_and(|m| m.is_dir())
                            {
                                Ok(())
                            } else {
                                Err(e)
                            }
                        })
                        .map_err(io_err(&p))?;
                    let mut e = Entry::dir(mode);
                    e.mtime = mtime;
                    self.entries.insert(p.clone(), e);
                    self.sync(&p)?;
                }
            }
        }
        Ok(resolved)
    }

    /// Adds or replaces a directory with this metadata.
    pub fn put_dir(&mut self, path: &str, entry: Entry) -> Result<String, TreeError> {
        let p = self.resolve(path)?;
        if let Some(existing) = self.entries.get(&p)
            && existing.kind != Kind::Dir
        {
            return Err(TreeError::Conflict {
                path: p,
                message: format!("is a {}, not a directory", existing.kind.name()),
            });
        }
        self.mkdir_p(&p, entry.mode, entry.mtime)?;
        self.entries.insert(p.clone(), entry);
        self.sync(&p)?;
        Ok(p)
    }

    /// Where a new non-directory entry goes: its parent directory created, anything there
    /// before removed. Returns the resolved path.
    fn prepare(&mut self, path: &str) -> Result<String, TreeError> {
        let p = self.resolve_parent(path)?;
        let parent = match p.rsplit_once('/') {
            Some(("", _)) => "/".to_string(),
            Some((d, _)) => d.to_string(),
            None => "/".to_string(),
        };
        self.mkdir_p(&parent, 0o755, 0)?;
        if let Some(old) = self.entries.get(&p) {
            if old.kind == Kind::Dir {
                return Err(TreeError::Conflict {
                    path: p,
                    message: "is a directory".into(),
                });
            }
            self.remove(&p)?;
        }
        Ok(p)
    }

    /// Writes a regular file from `content`; returns the resolved path and size.
    pub fn write_file(
        &mut self,
        path: &str,
        content: &mut dyn Read,
        mut entry: Entry,
    ) -> Result<String, TreeError> {
        let p = self.prepare(path)?;
        let disk = self.disk_path(&p);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&disk)
            .map_err(io_err(&p))?;
        let size = io::copy(content, &mut f).map_err(io_err(&p))?;
        f.flush().map_err(io_err(&p))?;
        // Content on disk stays readable and writable by the builder; the image's mode is in
        // the manifest.
        fs::set_permissions(
            &disk,
            fs::Permissions::from_mode(0o644 | (entry.mode & 0o111)),
        )
        .map_err(io_err(&p))?;
        drop(f);
        entry.kind = Kind::File { size, link: None };
        self.entries.insert(p.clone(), entry);
        self.sync(&p)?;
        Ok(p)
    }

    /// Moves a file already on disk on the tree's file system (a spooled payload member) to
    /// `path`: no second copy of the content is written. `size` is its length (the caller has
    /// checked it); `prepared`: the file already has the mode, owner and mtime the tree would
    /// give it.
    pub fn adopt_file(
        &mut self,
        path: &str,
        spooled: &Path,
        size: u64,
        mut entry: Entry,
        prepared: bool,
    ) -> Result<String, TreeError> {
        let p = self.prepare(path)?;
        let disk = self.disk_path(&p);
        if let Err(e) = fs::rename(spooled, &disk) {
            // Another file system: copy instead.
            if e.raw_os_error() != Some(libc::EXDEV) {
                return Err(io_err(&p)(e));
            }
            let mut src = fs::File::open(spooled).map_err(io_err(&p))?;
            return self.write_file(path, &mut src, entry);
        }
        entry.kind = Kind::File { size, link: None };
        if prepared {
            self.entries.insert(p.clone(), entry);
            return Ok(p);
        }
        fs::set_permissions(
            &disk,
            fs::Permissions::from_mode(0o644 | (entry.mode & 0o111)),
        )
        .map_err(io_err(&p))?;
        self.entries.insert(p.clone(), entry);
        self.sync(&p)?;
        Ok(p)
    }

    /// Makes `path` a hardlink of the existing file `existing`.
    pub fn hardlink(&mut self, path: &str, existing: &str) -> Result<String, TreeError> {
        let src = self.resolve(existing)?;
        let Some(Entry {
            kind: Kind::File { size, link },
            ..
        }) = self.entries.get(&src).cloned()
        else {
            return Err(TreeError::Conflict {
                path: existing.into(),
                message: "is not a regular file to link to".into(),
            });
        };
        let group = match link {
            Some(g) => g,
            None => {
                let g = self.next_link;
                self.next_link += 1;
                if let Some(Entry {
                    kind: Kind::File { link, .. },
                    ..
                }) = self.entries.get_mut(&src)
                {
                    *link = Some(g);
                }
                g
            }
        };
        let p = self.prepare(path)?;
        fs::hard_link(self.disk_path(&src), self.disk_path(&p)).map_err(io_err(&p))?;
        let mut e = self.entries[&src].clone();
        e.kind = Kind::File {
            size,
            link: Some(group),
        };
        self.entries.insert(p.clone(), e);
        Ok(p)
    }

    /// Adds a symlink.
    pub fn symlink(
        &mut self,
        path: &str,
        target: &str,
        mut entry: Entry,
    ) -> Result<String, TreeError> {
        let p = self.prepare(path)?;
        std::os::unix::fs::symlink(target, self.disk_path(&p)).map_err(io_err(&p))?;
        entry.kind = Kind::Symlink {
            target: target.to_string(),
        };
        self.entries.insert(p.clone(), entry);
        self.sync(&p)?;
        Ok(p)
    }

    /// Records a device node, FIFO or socket. Only the manifest holds it: creating device nodes
    /// needs privileges, and backends write them from the manifest.
    pub fn special(&mut self, path: &str, entry: Entry) -> Result<String, TreeError> {
        let p = self.prepare(path)?;
        self.entries.insert(p.clone(), entry);
        Ok(p)
    }

    /// Removes a path (a directory with everything under it).
    pub fn remove(&mut self, path: &str) -> Result<(), TreeError> {
        let p = path.to_string();
        let Some(e) = self.entries.remove(&p) else {
            return Ok(());
        };
        let disk = self.disk_path(&p);
        match e.kind {
            Kind::Dir => {
                let prefix = format!("{}/", p.trim_end_matches('/'));
                let below: Vec<String> = self
                    .entries
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in below {
                    self.entries.remove(&k);
                }
                if disk.symlink_metadata().is_ok() {
                    fs::remove_dir_all(&disk).map_err(io_err(&p))?;
                }
            }
            Kind::CharDev { .. } | Kind::BlockDev { .. } | Kind::Fifo | Kind::Socket => {}
            _ => {
                if disk.symlink_metadata().is_ok() {
                    fs::remove_file(&disk).map_err(io_err(&p))?;
                }
            }
        }
        Ok(())
    }

    /// Reads a file's content (following symlinks inside the image).
    pub fn read(&self, path: &str) -> Result<Vec<u8>, TreeError> {
        let p = self.resolve(path)?;
        match self.entries.get(&p) {
            Some(Entry {
                kind: Kind::File { .. },
                ..
            }) => fs::read(self.disk_path(&p)).map_err(io_err(&p)),
            _ => Err(TreeError::Io {
                path: p,
                source: io::Error::new(io::ErrorKind::NotFound, "no such file in the image"),
            }),
        }
    }

    /// Reads a file as text, or `None` if it does not exist.
    pub fn read_text(&self, path: &str) -> Option<String> {
        self.read(path)
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// Replaces a file's content, keeping (or creating with `entry`) its metadata.
    pub fn put_text(&mut self, path: &str, text: &str, entry: Entry) -> Result<String, TreeError> {
        let keep = self
            .resolve(path)
            .ok()
            .and_then(|p| self.entries.get(&p).cloned());
        let entry = match keep {
            Some(e) if matches!(e.kind, Kind::File { link: None, .. }) => e,
            _ => entry,
        };
        self.write_file(path, &mut text.as_bytes(), entry)
    }

    /// Brings the manifest up to date with the disk after something ran over it (scriptlets):
    /// new paths are added, removed ones dropped, changed ones updated. As root the disk's
    /// owners and modes are the image's; rootless, existing entries keep theirs and new ones
    /// belong to root.
    pub fn rescan(&mut self) -> Result<Changes, TreeError> {
        let owners = self.real_owners;
        let mut seen: BTreeMap<String, fs::Metadata> = BTreeMap::new();
        walk(&self.root, &self.root, &mut seen)
            .map_err(io_err(&self.root.display().to_string()))?;
        let mut changes = Changes::default();
        let specials: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                matches!(
                    e.kind,
                    Kind::CharDev { .. } | Kind::BlockDev { .. } | Kind::Fifo | Kind::Socket
                )
            })
            .map(|(k, _)| k.clone())
            .collect();
        let gone: Vec<String> = self
            .entries
            .keys()
            .filter(|k| *k != "/" && !seen.contains_key(*k) && !specials.contains(k))
            .cloned()
            .collect();
        for k in gone {
            self.entries.remove(&k);
            changes.removed.push(k);
        }
        let mut inodes: BTreeMap<(u64, u64), u32> = BTreeMap::new();
        for (path, meta) in seen {
            let disk = self.disk_path(&path);
            let kind = if meta.file_type().is_dir() {
                Kind::Dir
            } else if meta.file_type().is_symlink() {
                Kind::Symlink {
                    target: fs::read_link(&disk)
                        .map_err(io_err(&path))?
                        .to_string_lossy()
                        .into_owned(),
                }
            } else if meta.file_type().is_file() {
                let link = if meta.nlink() > 1 {
                    let key = (meta.dev(), meta.ino());
                    let next = &mut self.next_link;
                    Some(*inodes.entry(key).or_insert_with(|| {
                        let g = *next;
                        *next += 1;
                        g
                    }))
                } else {
                    None
                };
                Kind::File {
                    size: meta.len(),
                    link,
                }
            } else {
                // Sockets or FIFOs made by a scriptlet: keep them in the manifest only.
                Kind::Fifo
            };
            let mtime = meta.mtime();
            match self.entries.get_mut(&path) {
                Some(e) => {
                    let disk_mode = meta.permissions().mode() & 0o7777;
                    let changed = e.kind != kind
                        || (matches!(kind, Kind::File { .. }) && e.mtime != mtime)
                        || (owners
                            && (e.uid != meta.uid() || e.gid != meta.gid() || e.mode != disk_mode));
                    if changed {
                        let link_only = matches!((&e.kind, &kind), (Kind::File { size: a, .. }, Kind::File { size: b, .. }) if a == b)
                            && e.mtime == mtime;
                        e.kind = kind;
                        if owners {
                            e.uid = meta.uid();
                            e.gid = meta.gid();
                            e.mode = disk_mode;
                        }
                        e.mtime = mtime;
                        if !link_only {
                            changes.changed.push(path);
                        }
                    }
                }
                None => {
                    let e = Entry {
                        kind,
                        mode: meta.permissions().mode() & 0o7777,
                        uid: if owners { meta.uid() } else { 0 },
                        gid: if owners { meta.gid() } else { 0 },
                        mtime,
                        xattrs: BTreeMap::new(),
                    };
                    self.entries.insert(path.clone(), e);
                    changes.added.push(path);
                }
            }
        }
        Ok(changes)
    }

    /// Sets every mtime later than `epoch` to `epoch` (reproducible outputs).
    pub fn clamp_mtimes(&mut self, epoch: i64) {
        for e in self.entries.values_mut() {
            if e.mtime > epoch {
                e.mtime = epoch;
            }
        }
    }
}

/// Sets a path's modification time without following a final symlink (its atime is left).
pub(crate) fn set_mtime(disk: &Path, mtime: i64) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(disk.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let t = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        t,
    ];
    // SAFETY: `c` is a valid NUL-terminated path and `times` holds two timespecs.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// What a rescan found.
#[derive(Debug, Default, Clone)]
pub struct Changes {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, fs::Metadata>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path)?;
        let rel = path.strip_prefix(root).map_err(io::Error::other)?;
        let key = format!("/{}", rel.to_string_lossy());
        let is_dir = meta.file_type().is_dir();
        out.insert(key, meta);
        if is_dir {
            walk(root, &path, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, Tree) {
        let d = tempfile::tempdir().unwrap();
        let t = Tree::create(&d.path().join("root"))
            .unwrap()
            .without_real_owners();
        (d, t)
    }

    fn file(mode: u32) -> Entry {
        Entry {
            kind: Kind::File {
                size: 0,
                link: None,
            },
            mode,
            uid: 0,
            gid: 0,
            mtime: 1,
            xattrs: BTreeMap::new(),
        }
    }

    #[test]
    fn writes_through_image_symlinks() {
        let (_d, mut t) = tree();
        t.mkdir_p("/usr/bin", 0o755, 0).unwrap();
        t.symlink("/bin", "usr/bin", file(0o777)).unwrap();
        t.symlink("/sbin", "/usr/bin", file(0o777)).unwrap();
        let p = t
            .write_file("/bin/sh", &mut &b"#!"[..], file(0o755))
            .unwrap();
        assert_eq!(p, "/usr/bin/sh");
        let p = t
            .write_file("/sbin/init", &mut &b""[..], file(0o755))
            .unwrap();
        assert_eq!(p, "/usr/bin/init");
        assert_eq!(t.read("/bin/sh").unwrap(), b"#!");
        assert!(t.disk_path("/usr/bin/sh").is_file());
    }

    #[test]
    fn refuses_escapes() {
        let (d, mut t) = tree();
        assert!(matches!(
            t.write_file("/etc/../../x", &mut &b""[..], file(0o644)),
            Err(TreeError::Unsafe { .. })
        ));
        t.symlink("/up", "../../..", file(0o777)).unwrap();
        let e = t
            .write_file("/up/evil", &mut &b""[..], file(0o644))
            .unwrap_err();
        assert!(matches!(e, TreeError::Unsafe { .. }), "{e}");
        // An absolute link is followed inside the image, never on the host.
        t.symlink("/etc", "/host-etc", file(0o777)).unwrap();
        let p = t
            .write_file("/etc/passwd", &mut &b"x"[..], file(0o644))
            .unwrap();
        assert_eq!(p, "/host-etc/passwd");
        assert!(!d.path().join("evil").exists());
    }

    #[test]
    fn symlink_loops_are_refused() {
        let (_d, mut t) = tree();
        t.symlink("/a", "b", file(0o777)).unwrap();
        t.symlink("/b", "a", file(0o777)).unwrap();
        assert!(t.write_file("/a/x", &mut &b""[..], file(0o644)).is_err());
    }

    #[test]
    fn hardlinks_share_a_group_and_content() {
        let (_d, mut t) = tree();
        t.write_file("/a", &mut &b"data"[..], file(0o644)).unwrap();
        t.hardlink("/b", "/a").unwrap();
        let (a, b) = (t.get("/a").unwrap(), t.get("/b").unwrap());
        assert_eq!(a.kind, b.kind);
        assert!(matches!(
            a.kind,
            Kind::File {
                link: Some(_),
                size: 4
            }
        ));
    }

    #[test]
    fn rescan_sees_what_ran_over_the_disk() {
        let (_d, mut t) = tree();
        t.mkdir_p("/etc", 0o755, 0).unwrap();
        t.write_file("/etc/a", &mut &b"1"[..], file(0o600)).unwrap();
        t.write_file("/etc/gone", &mut &b"1"[..], file(0o644))
            .unwrap();
        fs::write(t.disk_path("/etc/new"), b"hello").unwrap();
        fs::remove_file(t.disk_path("/etc/gone")).unwrap();
        let c = t.rescan().unwrap();
        assert_eq!(c.added, ["/etc/new"]);
        assert_eq!(c.removed, ["/etc/gone"]);
        // Rootless: the manifest keeps the mode it had.
        assert_eq!(t.get("/etc/a").unwrap().mode, 0o600);
        assert!(matches!(
            t.get("/etc/new").unwrap().kind,
            Kind::File { size: 5, .. }
        ));
    }

    #[test]
    fn unchanged_files_stay_unchanged_after_a_rescan() {
        let d = tempfile::tempdir().unwrap();
        let mut t = Tree::create(&d.path().join("root")).unwrap();
        let mut e = file(0o4755);
        e.uid = 12;
        e.gid = 34;
        e.mtime = 1_700_000_000;
        t.mkdir_p("/usr/bin", 0o755, 0).unwrap();
        t.write_file("/usr/bin/su", &mut &b"x"[..], e.clone())
            .unwrap();
        let c = t.rescan().unwrap();
        assert!(c.changed.is_empty() && c.added.is_empty(), "{c:?}");
        let got = t.get("/usr/bin/su").unwrap();
        assert_eq!((got.mtime, got.mode), (1_700_000_000, 0o4755));
        if t.real_owners() {
            assert_eq!((got.uid, got.gid), (12, 34));
            let m = fs::symlink_metadata(t.disk_path("/usr/bin/su")).unwrap();
            assert_eq!((m.uid(), m.mode() & 0o7777), (12, 0o4755));
        }
    }

    #[test]
    fn directories_do_not_replace_files() {
        let (_d, mut t) = tree();
        t.write_file("/x", &mut &b""[..], file(0o644)).unwrap();
        assert!(matches!(
            t.mkdir_p("/x/y", 0o755, 0),
            Err(TreeError::Conflict { .. })
        ));
    }
}
