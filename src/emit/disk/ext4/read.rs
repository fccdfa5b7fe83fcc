//! A small ext4 reader for tests and `kiln inspect`: superblock facts, and paths' metadata,
//! directory listings, content, symlink targets and xattrs, following extent trees.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::xattr;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading the image at byte {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("not an ext4 file system: {0}")]
    NotExt4(String),
    #[error("{path}: no such file or directory")]
    NotFound { path: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("inode {ino}: {message}")]
    Corrupt { ino: u32, message: String },
}

/// What the superblock says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuperInfo {
    pub uuid: [u8; 16],
    pub label: String,
    pub block_size: u32,
    pub blocks: u64,
    pub free_blocks: u64,
    pub inodes: u32,
    pub free_inodes: u32,
    pub feature_compat: u32,
    pub feature_incompat: u32,
    pub feature_ro_compat: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    CharDev,
    BlockDev,
    Fifo,
    Socket,
}

/// One inode's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub ino: u32,
    pub kind: FileKind,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub links: u16,
    pub mtime: i64,
    /// Device nodes: (major, minor).
    pub rdev: (u32, u32),
}

/// An open ext4 file system inside an image file.
#[derive(Debug)]
pub struct Ext4Reader {
    file: File,
    offset: u64,
    info: SuperInfo,
    inodes_per_group: u32,
    inode_size: u32,
    desc_size: u32,
    tables: Vec<u64>,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Ext4Reader {
    pub fn open(file: File, offset: u64) -> Result<Ext4Reader, ReadError> {
        let mut r = Ext4Reader {
            file,
            offset,
            info: SuperInfo {
                uuid: [0; 16],
                label: String::new(),
                block_size: 1024,
                blocks: 0,
                free_blocks: 0,
                inodes: 0,
                free_inodes: 0,
                feature_compat: 0,
                feature_incompat: 0,
                feature_ro_compat: 0,
            },
            inodes_per_group: 0,
            inode_size: 0,
            desc_size: 32,
            tables: Vec::new(),
        };
        let s = r.read_at(1024, 1024)?;
        if le16(&s, 0x38) != 0xEF53 {
            return Err(ReadError::NotExt4("no 0xEF53 magic".into()));
        }
        let log = le32(&s, 0x18);
        if log > 6 {
            return Err(ReadError::NotExt4(format!("block size 2^{}", log + 10)));
        }
        let incompat = le32(&s, 0x60);
        let wide = incompat & 0x80 != 0;
        let hi = |at: usize| if wide { (le32(&s, at) as u64) << 32 } else { 0 };
        r.info = SuperInfo {
            uuid: s[0x68..0x78].try_into().unwrap_or([0; 16]),
            label: String::from_utf8_lossy(&s[0x78..0x88])
                .trim_end_matches('\0')
                .to_string(),
            block_size: 1024 << log,
            blocks: le32(&s, 0x04) as u64 | hi(0x150),
            free_blocks: le32(&s, 0x0C) as u64 | hi(0x158),
            inodes: le32(&s, 0x00),
            free_inodes: le32(&s, 0x10),
            feature_compat: le32(&s, 0x5C),
            feature_incompat: incompat,
            feature_ro_compat: le32(&s, 0x64),
        };
        r.inodes_per_group = le32(&s, 0x28);
        r.inode_size = le16(&s, 0x58) as u32;
        r.desc_size = if wide { le16(&s, 0xFE) as u32 } else { 32 };
        let per_group = le32(&s, 0x20) as u64;
        if r.inodes_per_group == 0 || per_group == 0 || r.inode_size < 128 || r.desc_size < 32 {
            return Err(ReadError::NotExt4("zero group or inode sizes".into()));
        }
        let first_data = le32(&s, 0x14) as u64;
        let groups = (r.info.blocks - first_data).div_ceil(per_group);
        let bs = r.info.block_size as u64;
        let gdt = r.read_at(
            (first_data + 1) * bs,
            (groups * r.desc_size as u64) as usize,
        )?;
        r.tables = gdt
            .chunks(r.desc_size as usize)
            .map(|d| {
                le32(d, 0x08) as u64
                    | if wide {
                        (le32(d, 0x28) as u64) << 32
                    } else {
                        0
                    }
            })
            .collect();
        Ok(r)
    }

    pub fn info(&self) -> &SuperInfo {
        &self.info
    }

    fn read_at(&self, at: u64, len: usize) -> Result<Vec<u8>, ReadError> {
        let mut b = vec![0u8; len];
        let offset = self.offset + at;
        self.file
            .read_exact_at(&mut b, offset)
            .map_err(|source| ReadError::Io { offset, source })?;
        Ok(b)
    }

    fn block(&self, n: u64) -> Result<Vec<u8>, ReadError> {
        let bs = self.info.block_size as u64;
        self.read_at(n * bs, bs as usize)
    }

    /// The raw inode `ino`.
    pub fn inode(&self, ino: u32) -> Result<Vec<u8>, ReadError> {
        if ino == 0 || ino > self.info.inodes {
            return Err(ReadError::Corrupt {
                ino,
                message: "no such inode".into(),
            });
        }
        let (g, i) = (
            (ino - 1) / self.inodes_per_group,
            (ino - 1) % self.inodes_per_group,
        );
        let at = self.tables[g as usize] * self.info.block_size as u64
            + i as u64 * self.inode_size as u64;
        self.read_at(at, self.inode_size as usize)
    }

    /// A file's physical blocks as (logical, physical, length) runs.
    fn extents(&self, ino: u32, node: &[u8]) -> Result<Vec<(u64, u64, u64)>, ReadError> {
        let corrupt = |m: &str| ReadError::Corrupt {
            ino,
            message: m.into(),
        };
        if le16(node, 0) != 0xF30A {
            return Err(corrupt(
                "no extent header (block-mapped files are not read)",
            ));
        }
        let (entries, depth) = (le16(node, 2) as usize, le16(node, 6));
        if 12 + entries * 12 > node.len() {
            return Err(corrupt("extent header count past its node"));
        }
        let mut out = Vec::new();
        for k in 0..entries {
            let e = &node[12 + k * 12..24 + k * 12];
            if depth == 0 {
                let len = le16(e, 4) as u64;
                // Unwritten extents (len > 32768) read as zeros: left out.
                if len <= 32768 {
                    let phys = (le16(e, 6) as u64) << 32 | le32(e, 8) as u64;
                    out.push((le32(e, 0) as u64, phys, len));
                }
            } else {
                let child = (le16(e, 8) as u64) << 32 | le32(e, 4) as u64;
                out.extend(self.extents(ino, &self.block(child)?)?);
            }
        }
        Ok(out)
    }

    fn stat_ino(&self, ino: u32) -> Result<(Stat, Vec<u8>), ReadError> {
        let b = self.inode(ino)?;
        let mode = le16(&b, 0);
        let kind = match mode & 0o170000 {
            0o100000 => FileKind::File,
            0o040000 => FileKind::Dir,
            0o120000 => FileKind::Symlink,
            0o020000 => FileKind::CharDev,
            0o060000 => FileKind::BlockDev,
            0o010000 => FileKind::Fifo,
            0o140000 => FileKind::Socket,
            _ => {
                return Err(ReadError::Corrupt {
                    ino,
                    message: format!("mode {mode:o}"),
                });
            }
        };
        let (w0, w1) = (le32(&b, 0x28), le32(&b, 0x2C));
        let rdev = if w0 != 0 {
            (w0 >> 8 & 0xff, w0 & 0xff)
        } else {
            ((w1 >> 8) & 0xfff, (w1 & 0xff) | ((w1 >> 12) & 0xfff00))
        };
        let mut mtime = le32(&b, 0x10) as i32 as i64;
        if self.inode_size > 128 && le16(&b, 0x80) >= 24 {
            mtime += ((le32(&b, 0x88) & 3) as i64) << 32;
        }
        let st = Stat {
            ino,
            kind,
            mode: (mode & 0o7777) as u32,
            uid: le16(&b, 0x02) as u32 | (le16(&b, 0x78) as u32) << 16,
            gid: le16(&b, 0x18) as u32 | (le16(&b, 0x7A) as u32) << 16,
            size: le32(&b, 0x04) as u64 | (le32(&b, 0x6C) as u64) << 32,
            links: le16(&b, 0x1A),
            mtime,
            rdev: if matches!(kind, FileKind::CharDev | FileKind::BlockDev) {
                rdev
            } else {
                (0, 0)
            },
        };
        Ok((st, b))
    }

    fn content(&self, ino: u32, raw: &[u8], size: u64) -> Result<Vec<u8>, ReadError> {
        let mut out = vec![0u8; size as usize];
        let bs = self.info.block_size as u64;
        for (logical, phys, len) in self.extents(ino, &raw[0x28..0x28 + 60])? {
            let start = logical * bs;
            if start >= size {
                continue;
            }
            let n = (len * bs).min(size - start);
            let data = self.read_at(phys * bs, n as usize)?;
            out[start as usize..(start + n) as usize].copy_from_slice(&data);
        }
        Ok(out)
    }

    fn entries(&self, ino: u32) -> Result<Vec<(String, u32, u8)>, ReadError> {
        let (st, raw) = self.stat_ino(ino)?;
        if st.kind != FileKind::Dir {
            return Err(ReadError::Corrupt {
                ino,
                message: "not a directory".into(),
            });
        }
        let data = self.content(ino, &raw, st.size)?;
        let mut out = Vec::new();
        for block in data.chunks(self.info.block_size as usize) {
            let mut at = 0;
            while at + 8 <= block.len() {
                let rec = le16(block, at + 4) as usize;
                let name_len = block[at + 6] as usize;
                if rec < 8 || at + rec > block.len() || 8 + name_len > rec {
                    return Err(ReadError::Corrupt {
                        ino,
                        message: format!("directory entry at {at} with length {rec}"),
                    });
                }
                let child = le32(block, at);
                let name = &block[at + 8..at + 8 + name_len];
                if child != 0 && name != b"." && name != b".." {
                    out.push((
                        String::from_utf8_lossy(name).into_owned(),
                        child,
                        block[at + 7],
                    ));
                }
                at += rec;
            }
        }
        Ok(out)
    }

    fn lookup(&self, path: &str) -> Result<u32, ReadError> {
        let mut ino = 2;
        for c in path.split('/').filter(|c| !c.is_empty()) {
            ino = self
                .entries(ino)?
                .into_iter()
                .find(|(n, _, _)| n == c)
                .map(|e| e.1)
                .ok_or_else(|| ReadError::NotFound { path: path.into() })?;
        }
        Ok(ino)
    }

    /// The metadata of `path` (symlinks are not followed).
    pub fn stat(&self, path: &str) -> Result<Stat, ReadError> {
        Ok(self.stat_ino(self.lookup(path)?)?.0)
    }

    /// The names in a directory (without `.` and `..`) and their inode numbers, in disk order.
    pub fn read_dir(&self, path: &str) -> Result<Vec<(String, u32)>, ReadError> {
        Ok(self
            .entries(self.lookup(path)?)?
            .into_iter()
            .map(|(n, i, _)| (n, i))
            .collect())
    }

    /// Every path below the root with its metadata (an inode reached by several hardlinks is
    /// listed under each), in path order.
    pub fn walk(&self) -> Result<BTreeMap<String, Stat>, ReadError> {
        let mut out = BTreeMap::new();
        out.insert("/".to_string(), self.stat_ino(2)?.0);
        let mut todo = vec![("".to_string(), 2u32)];
        while let Some((dir, ino)) = todo.pop() {
            for (name, child, _) in self.entries(ino)? {
                let path = format!("{dir}/{name}");
                let st = self.stat_ino(child)?.0;
                if st.kind == FileKind::Dir {
                    todo.push((path.clone(), child));
                }
                out.insert(path, st);
            }
        }
        Ok(out)
    }

    pub fn read_file(&self, path: &str) -> Result<Vec<u8>, ReadError> {
        self.file_of(self.lookup(path)?)
            .map_err(|e| with_path(e, path))
    }

    /// A regular file's content, by inode.
    pub fn file_of(&self, ino: u32) -> Result<Vec<u8>, ReadError> {
        let (st, raw) = self.stat_ino(ino)?;
        if st.kind != FileKind::File {
            return Err(ReadError::Corrupt {
                ino,
                message: "not a regular file".into(),
            });
        }
        self.content(ino, &raw, st.size)
    }

    pub fn read_link(&self, path: &str) -> Result<String, ReadError> {
        self.link_of(self.lookup(path)?)
            .map_err(|e| with_path(e, path))
    }

    /// A symlink's target, by inode.
    pub fn link_of(&self, ino: u32) -> Result<String, ReadError> {
        let (st, raw) = self.stat_ino(ino)?;
        if st.kind != FileKind::Symlink {
            return Err(ReadError::Corrupt {
                ino,
                message: "not a symlink".into(),
            });
        }
        let bytes = if st.size < 60 && le32(&raw, 0x20) & 0x80000 == 0 {
            raw[0x28..0x28 + st.size as usize].to_vec()
        } else {
            self.content(ino, &raw, st.size)?
        };
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Extended attributes, by full name; ACLs in the kernel's xattr form.
    pub fn xattrs(&self, path: &str) -> Result<BTreeMap<String, Vec<u8>>, ReadError> {
        self.xattrs_of(self.lookup(path)?)
    }

    /// Extended attributes, by inode.
    pub fn xattrs_of(&self, ino: u32) -> Result<BTreeMap<String, Vec<u8>>, ReadError> {
        let raw = self.inode(ino)?;
        let mut out = BTreeMap::new();
        let extra = if raw.len() > 128 {
            le16(&raw, 0x80) as usize
        } else {
            0
        };
        let ibody = 128 + extra;
        if ibody + 4 <= raw.len() && le32(&raw, ibody) == xattr::MAGIC {
            let area = &raw[ibody + 4..];
            parse_entries(ino, area, 0, area, &mut out)?;
        }
        let acl = le32(&raw, 0x68) as u64 | (le16(&raw, 0x76) as u64) << 32;
        if acl != 0 {
            let b = self.block(acl)?;
            if le32(&b, 0) != xattr::MAGIC {
                return Err(ReadError::Corrupt {
                    ino,
                    message: "xattr block without its magic".into(),
                });
            }
            parse_entries(ino, &b, 32, &b, &mut out)?;
        }
        Ok(out)
    }
}

/// Names the path in an error about the inode it led to.
fn with_path(e: ReadError, path: &str) -> ReadError {
    match e {
        ReadError::Corrupt { message, .. } => ReadError::Invalid {
            path: path.into(),
            message,
        },
        e => e,
    }
}

/// Reads xattr entries from `entries_at` in `area`; value offsets count from `values`' start.
fn parse_entries(
    ino: u32,
    area: &[u8],
    entries_at: usize,
    values: &[u8],
    out: &mut BTreeMap<String, Vec<u8>>,
) -> Result<(), ReadError> {
    let corrupt = |m: String| ReadError::Corrupt { ino, message: m };
    let mut at = entries_at;
    while at + 16 <= area.len() && le32(area, at) != 0 {
        let name_len = area[at] as usize;
        let index = area[at + 1];
        let offs = le16(area, at + 2) as usize;
        let size = le32(area, at + 8) as usize;
        let name = area
            .get(at + 16..at + 16 + name_len)
            .ok_or_else(|| corrupt(format!("xattr name at {at} past its area")))?;
        let value = values
            .get(offs..offs + size)
            .ok_or_else(|| corrupt(format!("xattr value at {offs}+{size} past its area")))?;
        let p = xattr::prefix(index).unwrap_or("unknown.");
        let (full, value) = if index == 2 || index == 3 {
            (
                p.to_string(),
                xattr::acl_from_disk(value).unwrap_or_else(|| value.to_vec()),
            )
        } else {
            (
                format!("{p}{}", String::from_utf8_lossy(name)),
                value.to_vec(),
            )
        };
        out.insert(full, value);
        at += (16 + name_len + 3) & !3;
    }
    Ok(())
}
