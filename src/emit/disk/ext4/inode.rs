//! Inodes (256 bytes: base, extra fields with nanosecond times, inline xattrs) and the extent
//! trees that map a file's logical blocks, with index blocks when four extents do not suffice.

use super::Ext4Error;
use super::crc;
use super::layout::{BLOCK, EXTRA_ISIZE, INODE_SIZE};

pub const S_IFIFO: u16 = 0o010000;
pub const S_IFCHR: u16 = 0o020000;
pub const S_IFDIR: u16 = 0o040000;
pub const S_IFBLK: u16 = 0o060000;
pub const S_IFREG: u16 = 0o100000;
pub const S_IFLNK: u16 = 0o120000;
pub const S_IFSOCK: u16 = 0o140000;

pub const EXTENTS_FL: u32 = 0x80000;
const EXTENT_MAGIC: u16 = 0xF30A;
/// Longest initialized extent (a longer length marks an unwritten extent).
pub const MAX_EXTENT_LEN: u64 = 32768;
/// Entries in a 4 KiB extent tree block: (4096 - 12-byte header - 4-byte tail) / 12.
const BLOCK_ENTRIES: usize = (BLOCK - 12 - 4) / 12;
/// Where the inline xattr area starts: after the base inode and its extra fields.
pub const INLINE_XATTR_OFFSET: usize = 128 + EXTRA_ISIZE as usize;

/// An extent tree: the root for `i_block`, and the (block number, content) of its other nodes.
pub type ExtentTree = ([u8; 60], Vec<(u64, Vec<u8>)>);

/// One contiguous run of a file: logical block, physical block, length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub logical: u32,
    pub physical: u64,
    pub len: u16,
}

/// An inode's content before encoding.
#[derive(Debug, Clone)]
pub struct Inode {
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub time: i64,
    pub links: u16,
    /// Blocks charged to the inode (data, extent tree and xattr block), in file system blocks.
    pub blocks: u64,
    pub flags: u32,
    pub i_block: [u8; 60],
    pub file_acl: u64,
    /// The inline xattr area (after the extra fields), or empty.
    pub inline_xattrs: Vec<u8>,
}

/// The seconds field and the extra field (epoch bits; nanoseconds are zero) of a time.
/// Times before 1970 are written as 1970, after 2446 as 2446: the range the format holds.
pub fn time_fields(t: i64) -> (u32, u32) {
    let t = t.clamp(0, (3i64 << 32) + i32::MAX as i64);
    let lo = t as u32;
    let epoch = (t - lo as i32 as i64) >> 32;
    (lo, epoch as u32 & 3)
}

fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

impl Inode {
    pub fn encode(&self, ino: u32, fs_seed: u32) -> [u8; INODE_SIZE] {
        let mut b = [0u8; INODE_SIZE];
        put16(&mut b, 0x00, self.mode);
        put16(&mut b, 0x02, self.uid as u16);
        put32(&mut b, 0x04, self.size as u32);
        let (t, t_extra) = time_fields(self.time);
        for off in [0x08, 0x0C, 0x10, 0x90] {
            put32(&mut b, off, t); // atime, ctime, mtime, crtime
        }
        for off in [0x84, 0x88, 0x8C, 0x94] {
            put32(&mut b, off, t_extra);
        }
        put16(&mut b, 0x18, self.gid as u16);
        put16(&mut b, 0x1A, self.links);
        // huge_file: 48 bits of 512-byte sectors cover 128 PiB, beyond any 4 KiB-block ext4.
        let sectors = self.blocks * (BLOCK as u64 / 512);
        put32(&mut b, 0x1C, sectors as u32);
        put32(&mut b, 0x20, self.flags);
        b[0x28..0x28 + 60].copy_from_slice(&self.i_block);
        put32(&mut b, 0x68, self.file_acl as u32);
        put32(&mut b, 0x6C, (self.size >> 32) as u32);
        put16(&mut b, 0x74, (sectors >> 32) as u16);
        put16(&mut b, 0x76, (self.file_acl >> 32) as u16);
        put16(&mut b, 0x78, (self.uid >> 16) as u16);
        put16(&mut b, 0x7A, (self.gid >> 16) as u16);
        put16(&mut b, 0x80, EXTRA_ISIZE);
        b[INLINE_XATTR_OFFSET..INLINE_XATTR_OFFSET + self.inline_xattrs.len()]
            .copy_from_slice(&self.inline_xattrs);
        let c = crc::update(crc::inode_seed(fs_seed, ino, 0), &b);
        put16(&mut b, 0x7C, c as u16);
        put16(&mut b, 0x82, (c >> 16) as u16);
        b
    }
}

/// `i_block` of a device node: the old 16-bit encoding when major and minor fit a byte each,
/// else the new one in the second word, as Linux writes them.
pub fn device_block(major: u32, minor: u32) -> [u8; 60] {
    let mut b = [0u8; 60];
    if major < 256 && minor < 256 {
        put32(&mut b, 0, (major << 8) | minor);
    } else {
        put32(
            &mut b,
            4,
            (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12),
        );
    }
    b
}

/// Adds a run to an extent list, merging it into the last extent when it continues it.
pub fn push_run(extents: &mut Vec<Extent>, mut logical: u64, mut physical: u64, mut len: u64) {
    while len > 0 {
        if let Some(last) = extents.last_mut() {
            let l = last.len as u64;
            if last.logical as u64 + l == logical
                && last.physical + l == physical
                && l < MAX_EXTENT_LEN
            {
                let take = len.min(MAX_EXTENT_LEN - l);
                last.len = (l + take) as u16;
                logical += take;
                physical += take;
                len -= take;
                continue;
            }
        }
        let take = len.min(MAX_EXTENT_LEN);
        extents.push(Extent {
            logical: logical as u32,
            physical,
            len: take as u16,
        });
        logical += take;
        physical += take;
        len -= take;
    }
}

fn header(entries: usize, max: usize, depth: u16) -> [u8; 12] {
    let mut h = [0u8; 12];
    put16(&mut h, 0, EXTENT_MAGIC);
    put16(&mut h, 2, entries as u16);
    put16(&mut h, 4, max as u16);
    put16(&mut h, 6, depth);
    h
}

fn leaf_entry(e: &Extent) -> [u8; 12] {
    let mut b = [0u8; 12];
    put32(&mut b, 0, e.logical);
    put16(&mut b, 4, e.len);
    put16(&mut b, 6, (e.physical >> 32) as u16);
    put32(&mut b, 8, e.physical as u32);
    b
}

fn index_entry(logical: u32, block: u64) -> [u8; 12] {
    let mut b = [0u8; 12];
    put32(&mut b, 0, logical);
    put32(&mut b, 4, block as u32);
    put16(&mut b, 8, (block >> 32) as u16);
    b
}

/// The extent tree of a file: its `i_block` (the root) and the tree blocks to write, each
/// placed by `alloc` and checksummed for inode `ino`.
pub fn extent_tree(
    extents: &[Extent],
    ino: u32,
    fs_seed: u32,
    mut alloc: impl FnMut() -> Result<u64, Ext4Error>,
) -> Result<ExtentTree, Ext4Error> {
    let mut level: Vec<(u32, [u8; 12])> =
        extents.iter().map(|e| (e.logical, leaf_entry(e))).collect();
    let mut depth = 0u16;
    let mut blocks = Vec::new();
    let seed = crc::inode_seed(fs_seed, ino, 0);
    while level.len() > 4 {
        let mut up = Vec::new();
        for chunk in level.chunks(BLOCK_ENTRIES) {
            let at = alloc()?;
            let mut b = vec![0u8; BLOCK];
            b[..12].copy_from_slice(&header(chunk.len(), BLOCK_ENTRIES, depth));
            for (i, (_, e)) in chunk.iter().enumerate() {
                b[12 + i * 12..24 + i * 12].copy_from_slice(e);
            }
            let tail = 12 + 12 * BLOCK_ENTRIES;
            let c = crc::update(seed, &b[..tail]);
            put32(&mut b, tail, c);
            up.push((chunk[0].0, index_entry(chunk[0].0, at)));
            blocks.push((at, b));
        }
        level = up;
        depth += 1;
    }
    let mut root = [0u8; 60];
    root[..12].copy_from_slice(&header(level.len(), 4, depth));
    for (i, (_, e)) in level.iter().enumerate() {
        root[12 + i * 12..24 + i * 12].copy_from_slice(e);
    }
    Ok((root, blocks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_past_2038_use_the_epoch_bits() {
        assert_eq!(time_fields(1_700_000_000), (1_700_000_000, 0));
        assert_eq!(time_fields(-5), (0, 0));
        let t = (1i64 << 31) + 10;
        let (lo, ex) = time_fields(t);
        assert_eq!((lo as i32 as i64) + ((ex as i64) << 32), t);
        assert_eq!(ex, 1);
    }

    #[test]
    fn runs_merge_up_to_the_extent_limit() {
        let mut e = Vec::new();
        push_run(&mut e, 0, 100, 10);
        push_run(&mut e, 10, 110, 5);
        push_run(&mut e, 20, 115, 1);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].len, 15);
        let mut e = Vec::new();
        push_run(&mut e, 0, 1000, 70000);
        assert_eq!(
            e.iter().map(|x| x.len).collect::<Vec<_>>(),
            [32768, 32768, 4464]
        );
        assert_eq!(e[2].logical, 65536);
    }

    #[test]
    fn five_extents_need_an_index_block() {
        let extents: Vec<Extent> = (0..5)
            .map(|i| Extent {
                logical: i * 10,
                physical: 1000 + i as u64 * 20,
                len: 3,
            })
            .collect();
        let mut next = 500;
        let (root, blocks) = extent_tree(&extents, 12, 77, || {
            next += 1;
            Ok(next)
        })
        .unwrap();
        assert_eq!(blocks.len(), 1);
        assert_eq!(u16::from_le_bytes([root[6], root[7]]), 1, "depth");
        assert_eq!(u16::from_le_bytes([root[2], root[3]]), 1, "entries");
        let leaf = &blocks[0].1;
        assert_eq!(u16::from_le_bytes([leaf[2], leaf[3]]), 5);
        assert_eq!(u16::from_le_bytes([leaf[4], leaf[5]]), 340);
        let c = crc::update(crc::inode_seed(77, 12, 0), &leaf[..4092]);
        assert_eq!(u32::from_le_bytes(leaf[4092..].try_into().unwrap()), c);
        // Four fit in the inode.
        let (_, none) = extent_tree(&extents[..4], 12, 77, || unreachable!()).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn very_fragmented_files_get_two_index_levels() {
        let extents: Vec<Extent> = (0..340 * 5)
            .map(|i| Extent {
                logical: i * 2,
                physical: 10_000 + i as u64 * 2,
                len: 1,
            })
            .collect();
        let mut next = 0;
        let (root, blocks) = extent_tree(&extents, 12, 1, || {
            next += 1;
            Ok(next)
        })
        .unwrap();
        assert_eq!(u16::from_le_bytes([root[6], root[7]]), 2);
        assert_eq!(blocks.len(), 5 + 1);
    }

    #[test]
    fn devices_use_old_and_new_encodings() {
        let b = device_block(8, 1);
        assert_eq!(&b[..8], &[1, 8, 0, 0, 0, 0, 0, 0]);
        let b = device_block(259, 300);
        assert_eq!(&b[..4], &[0; 4]);
        let v = u32::from_le_bytes(b[4..8].try_into().unwrap());
        assert_eq!(v, (300 & 0xff) | (259 << 8) | ((300 & !0xff) << 12));
    }
}
