//! kiln's ext4 writer: a file system written straight from the staging tree's manifest into a
//! byte range of a sparse disk image, with e2fsprogs only as the test oracle.
//!
//! What it writes is what `mke2fs -t ext4` makes on Debian 12 with 4 KiB blocks (has_journal,
//! ext_attr, dir_index, filetype, extent, 64bit, flex_bg, sparse_super, large_file, huge_file,
//! dir_nlink, extra_isize, metadata_csum; 256-byte inodes) except `resize_inode`: the image is
//! written for its final size, and growing it online (cloud-init's growpart + resize2fs) works
//! without reserved GDT blocks since Linux 3.7, which converts to meta_bg as it grows.
//!
//! Times: every inode's atime, ctime, mtime and crtime are its manifest mtime (clamped to the
//! 1970–2446 range ext4 holds), so an unchanged file reads the same in every build; inodes that
//! are not in the manifest (lost+found, the journal, made-up mount points) and the superblock
//! carry `timestamp`. Inode generations are 0. Nothing depends on the clock or randomness.
//!
//! Layout: per 16-group flex group, the block bitmaps, inode bitmaps and inode tables at its
//! start; then the journal; then each inode's blocks in inode order (directory blocks, file
//! data, extent tree blocks, xattr blocks). All-zero blocks are never written: the image must
//! read as zeros in the range (a fresh sparse file), which is also why every inode table is
//! marked zeroed.

mod alloc;
mod crc;
mod dir;
mod inode;
mod journal;
mod layout;
mod plan;
pub mod read;
mod xattr;

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;

use crate::tree::{Kind, Tree};
use alloc::{Allocator, out_of_space};
use inode::{EXTENTS_FL, Extent, Inode};
use layout::{BLOCK, BLOCK_U64, Geometry, GroupDesc, INODE_SIZE};

pub use read::{Ext4Reader, ReadError};

/// How the file system is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ext4Options {
    pub uuid: [u8; 16],
    /// The directory hash seed (used once the kernel indexes a directory).
    pub hash_seed: [u8; 16],
    /// The volume label, at most 16 bytes.
    pub label: String,
    /// SOURCE_DATE_EPOCH: the superblock's times and those of inodes not in the manifest.
    pub timestamp: i64,
    /// Blocks reserved for root, in percent (mke2fs `-m`).
    pub reserved_percent: u32,
    /// Bytes per inode (mke2fs `-i`).
    pub inode_ratio: u64,
    /// Journal size in blocks; `None`: mke2fs's default for the size, `Some(0)`: no journal.
    pub journal_blocks: Option<u32>,
}

impl Default for Ext4Options {
    fn default() -> Self {
        Ext4Options {
            uuid: [0; 16],
            hash_seed: [0; 16],
            label: String::new(),
            timestamp: 0,
            reserved_percent: 5,
            inode_ratio: 16384,
            journal_blocks: None,
        }
    }
}

/// What goes into the filesystem: the subtree of `tree` at `root` ("/" for the root fs,
/// "/boot" for a separate /boot…); paths in `mounts` (other partitions' mount points below
/// root, e.g. "/boot/efi") are written as empty directories (keeping their own mode/owner).
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub tree: &'a Tree,
    pub root: &'a str,
    pub mounts: &'a [String],
}

/// What was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub blocks: u64,
    pub blocks_used: u64,
    pub free_blocks: u64,
    pub inodes: u32,
    pub inodes_used: u32,
    pub free_inodes: u32,
    pub journal_blocks: u32,
    /// Bytes actually written to the image (all-zero blocks are skipped).
    pub bytes_written: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum Ext4Error {
    #[error("ext4 options: {0}")]
    Options(String),
    #[error("a {size}-byte ext4 file system is too small for {what}: it needs {needed} bytes")]
    TooSmall {
        size: u64,
        needed: u64,
        what: String,
    },
    #[error(
        "the tree does not fit the ext4 file system: out of blocks writing {what} \
         ({used} of {blocks} 4 KiB blocks used; the tree's files hold {content_bytes} bytes)"
    )]
    Full {
        what: String,
        blocks: u64,
        used: u64,
        content_bytes: u64,
    },
    #[error(
        "the tree needs {needed} inodes but a {size}-byte ext4 file system with one inode per \
         {ratio} bytes has {available}; lower inode_ratio or grow the partition"
    )]
    TooManyInodes {
        needed: u64,
        available: u32,
        size: u64,
        ratio: u64,
    },
    #[error("{path}: {message}")]
    Tree { path: String, message: String },
    #[error("{path}: extended attribute {name}: {message}")]
    Xattr {
        path: String,
        name: String,
        message: String,
    },
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
    #[error("writing the image at byte {offset}: {source}")]
    Write {
        offset: u64,
        #[source]
        source: io::Error,
    },
}

/// Positioned writes into the partition's range that skip all-zero blocks.
struct Dev<'a> {
    f: &'a File,
    offset: u64,
    blocks: u64,
    written: u64,
    /// The checksum seed, for the metadata written along with data.
    seed: u32,
}

fn is_zero(b: &[u8]) -> bool {
    let mut c = b.chunks_exact(16);
    c.all(|w| u128::from_ne_bytes(w.try_into().unwrap_or([1; 16])) == 0)
        && c.remainder().iter().all(|&x| x == 0)
}

impl Dev<'_> {
    fn write_raw(&mut self, byte: u64, data: &[u8]) -> Result<(), Ext4Error> {
        let at = self.offset + byte;
        self.f
            .write_all_at(data, at)
            .map_err(|source| Ext4Error::Write { offset: at, source })?;
        self.written += data.len() as u64;
        Ok(())
    }

    /// Writes whole blocks from `block` on, leaving out the all-zero ones.
    fn write(&mut self, block: u64, data: &[u8]) -> Result<(), Ext4Error> {
        let n = data.len().div_ceil(BLOCK) as u64;
        if block + n > self.blocks {
            return Err(Ext4Error::Write {
                offset: self.offset + block * BLOCK_U64,
                source: io::Error::other("past the end of the file system"),
            });
        }
        let mut run: Option<usize> = None;
        let chunks: Vec<&[u8]> = data.chunks(BLOCK).collect();
        for (i, c) in chunks.iter().enumerate() {
            match (is_zero(c), run) {
                (false, None) => run = Some(i),
                (true, Some(s)) => {
                    self.write_raw((block + s as u64) * BLOCK_U64, &data[s * BLOCK..i * BLOCK])?;
                    run = None;
                }
                _ => {}
            }
        }
        if let Some(s) = run {
            self.write_raw((block + s as u64) * BLOCK_U64, &data[s * BLOCK..])?;
        }
        Ok(())
    }
}

/// Writes an ext4 file system of `size` bytes (floored to 4 KiB blocks) holding `src` into
/// `dev` at `offset`. `dev` must already be as long as the whole image and read as zeros there.
pub fn write(
    dev: &File,
    offset: u64,
    size: u64,
    src: &Source,
    opts: &Ext4Options,
) -> Result<Report, Ext4Error> {
    if opts.label.len() > 16 {
        return Err(Ext4Error::Options(format!(
            "label {:?} is {} bytes, ext4 holds 16",
            opts.label,
            opts.label.len()
        )));
    }
    if opts.reserved_percent > 50 {
        return Err(Ext4Error::Options(format!(
            "reserved_percent {} is more than 50",
            opts.reserved_percent
        )));
    }
    let dev_len = dev
        .metadata()
        .map_err(|source| Ext4Error::Write { offset, source })?
        .len();
    if offset.checked_add(size).is_none_or(|end| end > dev_len) {
        return Err(Ext4Error::Options(format!(
            "the range {offset}+{size} is past the end of the {dev_len}-byte image"
        )));
    }
    let geo = Geometry::new(size, opts.inode_ratio)?;
    let plan = plan::plan(src, opts.timestamp)?;
    let highest = plan.nodes.last().map_or(layout::FIRST_INO, |n| n.ino);
    if highest > geo.inodes() {
        return Err(Ext4Error::TooManyInodes {
            needed: highest as u64,
            available: geo.inodes(),
            size,
            ratio: opts.inode_ratio,
        });
    }
    let seed = crc::fs_seed(&opts.uuid);
    let mut alloc = Allocator::new(geo.blocks);
    let mut dev = Dev {
        f: dev,
        offset,
        blocks: geo.blocks,
        written: 0,
        seed,
    };

    // Superblock copies and descriptor tables first, then each flex group's metadata.
    for g in 0..geo.groups {
        if geo.has_super(g) {
            alloc.mark_range(geo.group_first(g), 1 + geo.gdt_blocks as u64);
        }
    }
    let mut descs = vec![GroupDesc::default(); geo.groups as usize];
    let flex = 1u32 << layout::LOG_GROUPS_PER_FLEX;
    let meta_err = |what: &str| Ext4Error::TooSmall {
        size,
        needed: (geo.groups as u64 * (2 + geo.itable_blocks as u64) + 1 + geo.gdt_blocks as u64)
            * BLOCK_U64,
        what: what.into(),
    };
    for f0 in (0..geo.groups).step_by(flex as usize) {
        let members = f0..(f0 + flex).min(geo.groups);
        let goal = geo.group_first(f0);
        for g in members.clone() {
            descs[g as usize].block_bitmap = alloc
                .alloc_run(goal, 1)
                .ok_or_else(|| meta_err("its bitmaps"))?;
        }
        for g in members.clone() {
            descs[g as usize].inode_bitmap = alloc
                .alloc_run(goal, 1)
                .ok_or_else(|| meta_err("its bitmaps"))?;
        }
        for g in members {
            descs[g as usize].inode_table = alloc
                .alloc_run(goal, geo.itable_blocks as u64)
                .ok_or_else(|| meta_err("its inode tables"))?;
        }
    }

    let mut inodes: Vec<(u32, [u8; INODE_SIZE])> = Vec::with_capacity(plan.nodes.len() + 1);
    let journal_blocks = opts
        .journal_blocks
        .unwrap_or_else(|| journal::default_blocks(geo.blocks));
    let mut journal_backup = None;
    if journal_blocks > 0 {
        if journal_blocks < journal::MIN_BLOCKS || journal_blocks as u64 > geo.blocks / 2 {
            return Err(Ext4Error::Options(format!(
                "a journal of {journal_blocks} blocks: it must be at least {} and at most half \
                 of the file system's {} blocks",
                journal::MIN_BLOCKS,
                geo.blocks
            )));
        }
        let mut extents = Vec::new();
        let mut logical = 0u64;
        while logical < journal_blocks as u64 {
            let (at, n) = alloc
                .alloc_data(journal_blocks as u64 - logical)
                .ok_or_else(|| Ext4Error::TooSmall {
                    size,
                    needed: (alloc.used() + journal_blocks as u64 - logical) * BLOCK_U64,
                    what: format!("its metadata and a {journal_blocks}-block journal"),
                })?;
            inode::push_run(&mut extents, logical, at, n);
            logical += n;
        }
        dev.write(
            extents[0].physical,
            &journal::superblock(journal_blocks, &opts.uuid),
        )?;
        let ino = 8;
        let (i_block, tree) = extent_blocks(&extents, ino, seed, &mut alloc, &plan, "the journal")?;
        let tree_n = tree.len() as u64;
        for (at, b) in tree {
            dev.write(at, &b)?;
        }
        let size = journal_blocks as u64 * BLOCK_U64;
        let node = Inode {
            mode: inode::S_IFREG | 0o600,
            uid: 0,
            gid: 0,
            size,
            time: opts.timestamp,
            links: 1,
            blocks: journal_blocks as u64 + tree_n,
            flags: EXTENTS_FL,
            i_block,
            file_acl: 0,
            inline_xattrs: Vec::new(),
        };
        inodes.push((ino, node.encode(ino, seed)));
        journal_backup = Some((i_block, size));
    }

    // Every inode's blocks, in inode order.
    let mut xattr_blocks: Vec<(u64, Vec<u8>, u32)> = Vec::new();
    let mut xattr_index: HashMap<Vec<u8>, usize> = HashMap::new();
    for n in &plan.nodes {
        let e = &n.entry;
        let xa = xattr::encode(&n.path, &e.xattrs)?;
        let mut file_acl = 0;
        let mut blocks = 0u64;
        if let Some(b) = xa.block {
            let i = match xattr_index.get(&b) {
                Some(&i) if xattr_blocks[i].2 < xattr::MAX_REFCOUNT => {
                    xattr_blocks[i].2 += 1;
                    i
                }
                _ => {
                    let (at, _) = alloc
                        .alloc_data(1)
                        .ok_or_else(|| out_of_space(&n.path, &alloc, plan.content_bytes))?;
                    xattr_blocks.push((at, b.clone(), 1));
                    xattr_index.insert(b, xattr_blocks.len() - 1);
                    xattr_blocks.len() - 1
                }
            };
            file_acl = xattr_blocks[i].0;
            blocks += 1;
        }
        let (type_bits, size, flags, i_block, data_blocks) = match &e.kind {
            Kind::Dir => {
                let min = if n.ino == plan::LOST_FOUND_INO { 4 } else { 1 };
                let mut content = dir::dir_blocks(n.ino, n.parent, &n.children, min);
                for b in &mut content {
                    dir::seal(b, n.ino, seed);
                }
                let flat: Vec<u8> = content.concat();
                let (i_block, used) = write_data(&mut dev, &mut alloc, &plan, n, &flat)?;
                (inode::S_IFDIR, flat.len() as u64, EXTENTS_FL, i_block, used)
            }
            Kind::File { size, .. } => {
                let (i_block, used) = write_file(&mut dev, &mut alloc, &plan, n, src.tree, *size)?;
                (inode::S_IFREG, *size, EXTENTS_FL, i_block, used)
            }
            Kind::Symlink { target } => {
                let t = target.as_bytes();
                if t.is_empty() || t.len() >= BLOCK {
                    return Err(Ext4Error::Tree {
                        path: n.path.clone(),
                        message: format!(
                            "a symlink target of {} bytes (ext4 holds 1 to {})",
                            t.len(),
                            BLOCK - 1
                        ),
                    });
                }
                if t.len() < 60 {
                    // A fast symlink: the target lives in the block map's place.
                    let mut i_block = [0u8; 60];
                    i_block[..t.len()].copy_from_slice(t);
                    (inode::S_IFLNK, t.len() as u64, 0, i_block, 0)
                } else {
                    let (i_block, used) = write_data(&mut dev, &mut alloc, &plan, n, t)?;
                    (inode::S_IFLNK, t.len() as u64, EXTENTS_FL, i_block, used)
                }
            }
            Kind::CharDev { major, minor } => {
                (inode::S_IFCHR, 0, 0, inode::device_block(*major, *minor), 0)
            }
            Kind::BlockDev { major, minor } => {
                (inode::S_IFBLK, 0, 0, inode::device_block(*major, *minor), 0)
            }
            Kind::Fifo => (inode::S_IFIFO, 0, 0, [0; 60], 0),
            Kind::Socket => (inode::S_IFSOCK, 0, 0, [0; 60], 0),
        };
        let node = Inode {
            mode: type_bits | (e.mode & 0o7777) as u16,
            uid: e.uid,
            gid: e.gid,
            size,
            time: e.mtime,
            links: n.links as u16,
            blocks: blocks + data_blocks,
            flags,
            i_block,
            file_acl,
            inline_xattrs: xa.inline,
        };
        inodes.push((n.ino, node.encode(n.ino, seed)));
    }
    for (at, mut b, refs) in xattr_blocks {
        xattr::seal_block(&mut b, refs, at, seed);
        dev.write(at, &b)?;
    }
    inodes.sort_by_key(|(ino, _)| *ino);

    // Inode tables, bitmaps and descriptors.
    let ipg = geo.inodes_per_group;
    let mut used_inodes: Vec<Vec<u32>> = vec![Vec::new(); geo.groups as usize];
    used_inodes[0].extend(0..layout::FIRST_INO - 1); // the reserved inodes 1–10
    let mut dirs = vec![0u32; geo.groups as usize];
    for n in &plan.nodes {
        let g = ((n.ino - 1) / ipg) as usize;
        if n.ino >= layout::FIRST_INO {
            used_inodes[g].push((n.ino - 1) % ipg);
        }
        if n.entry.kind == Kind::Dir {
            dirs[g] += 1;
        }
    }
    let mut i = 0;
    while i < inodes.len() {
        // One inode table block at a time, holding every inode that falls into it.
        let first = inodes[i].0;
        let g = (first - 1) / ipg;
        let blk_in_table = ((first - 1) % ipg) / layout::INODES_PER_BLOCK;
        let mut buf = vec![0u8; BLOCK];
        while i < inodes.len() {
            let (ino, raw) = &inodes[i];
            let (g2, idx) = ((ino - 1) / ipg, (ino - 1) % ipg);
            if g2 != g || idx / layout::INODES_PER_BLOCK != blk_in_table {
                break;
            }
            let at = (idx % layout::INODES_PER_BLOCK) as usize * INODE_SIZE;
            buf[at..at + INODE_SIZE].copy_from_slice(raw);
            i += 1;
        }
        dev.write(descs[g as usize].inode_table + blk_in_table as u64, &buf)?;
    }
    let last = geo.groups - 1;
    for g in 0..geo.groups {
        let d = &mut descs[g as usize];
        let used = &used_inodes[g as usize];
        let backups = if geo.has_super(g) {
            1 + geo.gdt_blocks
        } else {
            0
        };
        let used_blocks = alloc.used_in_group(&geo, g);
        d.free_blocks = geo.group_len(g) - used_blocks;
        d.free_inodes = ipg - used.len() as u32;
        d.used_dirs = dirs[g as usize];
        d.itable_unused = ipg - used.iter().max().map_or(0, |m| m + 1);
        d.flags = layout::BG_ITABLE_ZEROED;
        if used.is_empty() {
            d.flags |= layout::BG_INODE_UNINIT;
        } else {
            let bm = alloc::inode_bitmap(used, ipg);
            d.inode_bitmap_csum = crc::update(seed, &bm[..(ipg / 8) as usize]);
            dev.write(d.inode_bitmap, &bm)?;
        }
        // Only a group holding nothing but its superblock copy may leave its block bitmap to be
        // computed: the kernel would not know about other groups' metadata placed in it.
        if g != 0 && g != last && used_blocks == backups {
            d.flags |= layout::BG_BLOCK_UNINIT;
        } else {
            let bm = alloc.group_bitmap(&geo, g);
            d.block_bitmap_csum = crc::update(seed, &bm);
            dev.write(d.block_bitmap, &bm)?;
        }
    }

    let inodes_used = layout::FIRST_INO - 1 + plan.nodes.len() as u32 - 1;
    let fields = layout::SuperFields {
        uuid: opts.uuid,
        hash_seed: opts.hash_seed,
        label: {
            let mut l = [0u8; 16];
            l[..opts.label.len()].copy_from_slice(opts.label.as_bytes());
            l
        },
        timestamp: opts.timestamp,
        reserved_blocks: geo.blocks * opts.reserved_percent as u64 / 100,
        free_blocks: geo.blocks - alloc.used(),
        free_inodes: geo.inodes() - inodes_used,
        journal: journal_backup,
    };
    let gdt = layout::encode_gdt(&descs, geo.gdt_blocks, seed);
    for g in 0..geo.groups {
        if !geo.has_super(g) {
            continue;
        }
        let sb = layout::encode_superblock(&geo, &fields, g);
        let first = geo.group_first(g);
        if g == 0 {
            // The primary sits 1024 bytes into block 0, after the boot sector's place.
            dev.write_raw(1024, &sb)?;
        } else {
            let mut b = vec![0u8; BLOCK];
            b[..1024].copy_from_slice(&sb);
            dev.write(first, &b)?;
        }
        dev.write(first + 1, &gdt)?;
    }
    Ok(Report {
        blocks: geo.blocks,
        blocks_used: alloc.used(),
        free_blocks: fields.free_blocks,
        inodes: geo.inodes(),
        inodes_used,
        free_inodes: fields.free_inodes,
        journal_blocks,
        bytes_written: dev.written,
    })
}

/// Allocates and writes an extent tree's blocks, returning the root for `i_block`.
fn extent_blocks(
    extents: &[Extent],
    ino: u32,
    seed: u32,
    alloc: &mut Allocator,
    plan: &plan::Plan,
    what: &str,
) -> Result<inode::ExtentTree, Ext4Error> {
    inode::extent_tree(extents, ino, seed, || {
        alloc
            .alloc_data(1)
            .map(|(at, _)| at)
            .ok_or_else(|| out_of_space(what, alloc, plan.content_bytes))
    })
}

/// Writes a small in-memory content (directory, slow symlink) as data blocks of `n`.
fn write_data(
    dev: &mut Dev,
    alloc: &mut Allocator,
    plan: &plan::Plan,
    n: &plan::Node,
    data: &[u8],
) -> Result<([u8; 60], u64), Ext4Error> {
    let total = data.len().div_ceil(BLOCK) as u64;
    let mut extents = Vec::new();
    let mut logical = 0u64;
    while logical < total {
        let (at, len) = alloc
            .alloc_data(total - logical)
            .ok_or_else(|| out_of_space(&n.path, alloc, plan.content_bytes))?;
        let from = (logical * BLOCK_U64) as usize;
        let to = (((logical + len) * BLOCK_U64) as usize).min(data.len());
        let mut chunk = data[from..to].to_vec();
        chunk.resize((len * BLOCK_U64) as usize, 0);
        dev.write(at, &chunk)?;
        inode::push_run(&mut extents, logical, at, len);
        logical += len;
    }
    finish_extents(dev, alloc, plan, n, &extents, total)
}

fn finish_extents(
    dev: &mut Dev,
    alloc: &mut Allocator,
    plan: &plan::Plan,
    n: &plan::Node,
    extents: &[Extent],
    data_blocks: u64,
) -> Result<([u8; 60], u64), Ext4Error> {
    let (root, tree) = extent_blocks(extents, n.ino, dev.seed, alloc, plan, &n.path)?;
    let tree_n = tree.len() as u64;
    for (at, b) in tree {
        dev.write(at, &b)?;
    }
    Ok((root, data_blocks + tree_n))
}

/// Where the data after `pos` starts in a (possibly sparse) file, or `None` if only a hole
/// is left; file systems without SEEK_DATA report all of it as data.
fn seek(f: &File, pos: u64, whence: libc::c_int) -> Option<u64> {
    // SAFETY: lseek on a file descriptor we own has no memory effects.
    let r = unsafe { libc::lseek(f.as_raw_fd(), pos as libc::off_t, whence) };
    if r < 0 { None } else { Some(r as u64) }
}

/// Copies a regular file's content from the staging tree, leaving holes for its all-zero
/// blocks; returns its block map root and the blocks it uses.
fn write_file(
    dev: &mut Dev,
    alloc: &mut Allocator,
    plan: &plan::Plan,
    n: &plan::Node,
    tree: &Tree,
    size: u64,
) -> Result<([u8; 60], u64), Ext4Error> {
    const CHUNK: usize = 256 * BLOCK;
    let tree_path = n.tree_path.as_deref().unwrap_or(&n.path);
    let read_err = |source| Ext4Error::Read {
        path: tree_path.to_string(),
        source,
    };
    if size > (1u64 << 32) * BLOCK_U64 - BLOCK_U64 {
        return Err(Ext4Error::Tree {
            path: n.path.clone(),
            message: format!("{size} bytes is more than an ext4 file can hold"),
        });
    }
    let mut extents = Vec::new();
    let mut used = 0u64;
    if size > 0 {
        let f = File::open(tree.disk_path(tree_path)).map_err(read_err)?;
        let actual = f.metadata().map_err(read_err)?.len();
        if actual != size {
            return Err(Ext4Error::SizeChanged {
                path: tree_path.to_string(),
                expected: size,
                actual,
            });
        }
        let end = size.div_ceil(BLOCK_U64) * BLOCK_U64;
        let mut buf = vec![0u8; CHUNK];
        let mut pos = 0u64;
        while pos < end {
            let Some(data) = seek(&f, pos, libc::SEEK_DATA)
                .or(Some(pos))
                .filter(|&d| d < size)
            else {
                break;
            };
            let data = data / BLOCK_U64 * BLOCK_U64;
            let hole = seek(&f, data, libc::SEEK_HOLE)
                .unwrap_or(size)
                .div_ceil(BLOCK_U64)
                * BLOCK_U64;
            let hole = hole.clamp(data + BLOCK_U64, end);
            let mut at = data;
            while at < hole {
                let len = ((hole - at) as usize).min(CHUNK);
                let real = ((size - at) as usize).min(len);
                buf[real..len].fill(0);
                f.read_exact_at(&mut buf[..real], at).map_err(read_err)?;
                write_chunk(
                    dev,
                    alloc,
                    plan,
                    n,
                    &buf[..len],
                    at / BLOCK_U64,
                    &mut extents,
                )?;
                at += len as u64;
            }
            pos = hole;
        }
        used = extents.iter().map(|e| e.len as u64).sum();
    }
    finish_extents(dev, alloc, plan, n, &extents, used)
}

/// Writes the non-zero blocks of `buf` (file blocks from `first`) and records their extents.
fn write_chunk(
    dev: &mut Dev,
    alloc: &mut Allocator,
    plan: &plan::Plan,
    n: &plan::Node,
    buf: &[u8],
    first: u64,
    extents: &mut Vec<Extent>,
) -> Result<(), Ext4Error> {
    let blocks: Vec<&[u8]> = buf.chunks(BLOCK).collect();
    let mut i = 0;
    while i < blocks.len() {
        if is_zero(blocks[i]) {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < blocks.len() && !is_zero(blocks[j]) {
            j += 1;
        }
        // Blocks i..j are data: place them, in pieces if metadata is in the way.
        let mut k = i;
        while k < j {
            let (at, len) = alloc
                .alloc_data((j - k) as u64)
                .ok_or_else(|| out_of_space(&n.path, alloc, plan.content_bytes))?;
            let len = len as usize;
            dev.write(at, &buf[k * BLOCK..(k + len) * BLOCK])?;
            inode::push_run(extents, first + k as u64, at, len as u64);
            k += len;
        }
        i = j;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
