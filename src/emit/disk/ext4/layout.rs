//! The file system's geometry (groups, inode tables, backup superblock groups) and the on-disk
//! superblock and group descriptor table that describe it.

use super::Ext4Error;
use super::crc;

pub const BLOCK: usize = 4096;
pub const BLOCK_U64: u64 = BLOCK as u64;
pub const INODE_SIZE: usize = 256;
pub const INODES_PER_BLOCK: u32 = (BLOCK / INODE_SIZE) as u32;
pub const BLOCKS_PER_GROUP: u32 = 8 * BLOCK as u32;
pub const DESC_SIZE: usize = 64;
pub const FIRST_INO: u32 = 11;
pub const LOG_GROUPS_PER_FLEX: u32 = 4;
/// Space after the 128-byte base inode that the extra fields use (to `i_projid`).
pub const EXTRA_ISIZE: u16 = 32;

pub const COMPAT_HAS_JOURNAL: u32 = 0x4;
pub const COMPAT_EXT_ATTR: u32 = 0x8;
pub const COMPAT_DIR_INDEX: u32 = 0x20;
pub const INCOMPAT_FILETYPE: u32 = 0x2;
pub const INCOMPAT_EXTENTS: u32 = 0x40;
pub const INCOMPAT_64BIT: u32 = 0x80;
pub const INCOMPAT_FLEX_BG: u32 = 0x200;
pub const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
pub const RO_COMPAT_LARGE_FILE: u32 = 0x2;
pub const RO_COMPAT_HUGE_FILE: u32 = 0x8;
pub const RO_COMPAT_DIR_NLINK: u32 = 0x20;
pub const RO_COMPAT_EXTRA_ISIZE: u32 = 0x40;
pub const RO_COMPAT_METADATA_CSUM: u32 = 0x400;

pub const BG_INODE_UNINIT: u16 = 0x1;
pub const BG_BLOCK_UNINIT: u16 = 0x2;
pub const BG_ITABLE_ZEROED: u16 = 0x4;

/// How the blocks of the file system are divided into groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    pub blocks: u64,
    pub groups: u32,
    pub inodes_per_group: u32,
    pub itable_blocks: u32,
    pub gdt_blocks: u32,
}

impl Geometry {
    /// Lays out `size` bytes (floored to whole blocks) the way mke2fs would: one inode per
    /// `inode_ratio` bytes, and a last group too small for its own metadata dropped.
    pub fn new(size: u64, inode_ratio: u64) -> Result<Geometry, Ext4Error> {
        if !(1024..=64 << 20).contains(&inode_ratio) {
            return Err(Ext4Error::Options(format!(
                "inode_ratio {inode_ratio} is outside 1024..=67108864 bytes per inode"
            )));
        }
        let mut blocks = size / BLOCK_U64;
        loop {
            let too_small = || Ext4Error::TooSmall {
                size,
                needed: 64 * BLOCK_U64,
                what: "the smallest file system kiln writes".into(),
            };
            if blocks < 64 {
                return Err(too_small());
            }
            if blocks >= (1u64 << 32) * BLOCKS_PER_GROUP as u64 {
                return Err(Ext4Error::Options(format!(
                    "{size} bytes is more than an ext4 file system with 4 KiB blocks can hold"
                )));
            }
            let groups = blocks.div_ceil(BLOCKS_PER_GROUP as u64) as u32;
            let want = (blocks * BLOCK_U64 / inode_ratio).max(FIRST_INO as u64 + 1);
            let per_group = want.div_ceil(groups as u64);
            let ipg = (per_group.div_ceil(INODES_PER_BLOCK as u64) * INODES_PER_BLOCK as u64)
                .min(BLOCKS_PER_GROUP as u64) as u32;
            let itable_blocks = ipg / INODES_PER_BLOCK;
            let gdt_blocks = (groups as u64 * DESC_SIZE as u64).div_ceil(BLOCK_U64) as u32;
            let geo = Geometry {
                blocks,
                groups,
                inodes_per_group: ipg,
                itable_blocks,
                gdt_blocks,
            };
            let last = groups - 1;
            let rem = blocks % BLOCKS_PER_GROUP as u64;
            let overhead = 3
                + itable_blocks as u64
                + if geo.has_super(last) {
                    1 + gdt_blocks as u64
                } else {
                    0
                };
            if rem != 0 && rem < overhead + 50 {
                if groups == 1 {
                    return Err(too_small());
                }
                // As mke2fs: a runt last group would hold little but its own bitmaps.
                blocks -= rem;
                continue;
            }
            return Ok(geo);
        }
    }

    pub fn inodes(&self) -> u32 {
        self.groups * self.inodes_per_group
    }

    pub fn group_first(&self, g: u32) -> u64 {
        g as u64 * BLOCKS_PER_GROUP as u64
    }

    pub fn group_len(&self, g: u32) -> u32 {
        (self.blocks - self.group_first(g)).min(BLOCKS_PER_GROUP as u64) as u32
    }

    /// Whether group `g` holds a superblock copy (sparse_super: 0, 1 and powers of 3, 5, 7).
    pub fn has_super(&self, g: u32) -> bool {
        if g <= 1 {
            return true;
        }
        [3u32, 5, 7].iter().any(|&p| {
            let mut n = p;
            while n < g {
                match n.checked_mul(p) {
                    Some(m) => n = m,
                    None => return false,
                }
            }
            n == g
        })
    }
}

/// One group's descriptor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupDesc {
    pub block_bitmap: u64,
    pub inode_bitmap: u64,
    pub inode_table: u64,
    pub free_blocks: u32,
    pub free_inodes: u32,
    pub used_dirs: u32,
    pub flags: u16,
    pub itable_unused: u32,
    pub block_bitmap_csum: u32,
    pub inode_bitmap_csum: u32,
}

fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

impl GroupDesc {
    fn encode(&self, group: u32, seed: u32) -> [u8; DESC_SIZE] {
        let mut d = [0u8; DESC_SIZE];
        put32(&mut d, 0x00, self.block_bitmap as u32);
        put32(&mut d, 0x04, self.inode_bitmap as u32);
        put32(&mut d, 0x08, self.inode_table as u32);
        put16(&mut d, 0x0C, self.free_blocks as u16);
        put16(&mut d, 0x0E, self.free_inodes as u16);
        put16(&mut d, 0x10, self.used_dirs as u16);
        put16(&mut d, 0x12, self.flags);
        put16(&mut d, 0x18, self.block_bitmap_csum as u16);
        put16(&mut d, 0x1A, self.inode_bitmap_csum as u16);
        put16(&mut d, 0x1C, self.itable_unused as u16);
        put32(&mut d, 0x20, (self.block_bitmap >> 32) as u32);
        put32(&mut d, 0x24, (self.inode_bitmap >> 32) as u32);
        put32(&mut d, 0x28, (self.inode_table >> 32) as u32);
        put16(&mut d, 0x2C, (self.free_blocks >> 16) as u16);
        put16(&mut d, 0x2E, (self.free_inodes >> 16) as u16);
        put16(&mut d, 0x30, (self.used_dirs >> 16) as u16);
        put16(&mut d, 0x32, (self.itable_unused >> 16) as u16);
        put16(&mut d, 0x38, (self.block_bitmap_csum >> 16) as u16);
        put16(&mut d, 0x3A, (self.inode_bitmap_csum >> 16) as u16);
        // metadata_csum: crc32c over the group number and the descriptor (checksum field zero).
        let c = crc::update(crc::update(seed, &group.to_le_bytes()), &d);
        put16(&mut d, 0x1E, c as u16);
        d
    }
}

/// The whole descriptor table, padded to whole blocks.
pub fn encode_gdt(descs: &[GroupDesc], gdt_blocks: u32, seed: u32) -> Vec<u8> {
    let mut out = vec![0u8; gdt_blocks as usize * BLOCK];
    for (g, d) in descs.iter().enumerate() {
        out[g * DESC_SIZE..(g + 1) * DESC_SIZE].copy_from_slice(&d.encode(g as u32, seed));
    }
    out
}

/// What the superblock records beyond the geometry.
#[derive(Debug, Clone)]
pub struct SuperFields {
    pub uuid: [u8; 16],
    pub hash_seed: [u8; 16],
    pub label: [u8; 16],
    pub timestamp: i64,
    pub reserved_blocks: u64,
    pub free_blocks: u64,
    pub free_inodes: u32,
    /// `i_block` and size of the journal inode (the superblock keeps a backup), if any.
    pub journal: Option<([u8; 60], u64)>,
}

/// Splits a time into the 32-bit field and the superblock's 8-bit high part.
fn sb_time(t: i64) -> (u32, u8) {
    let t = t.clamp(0, (1i64 << 40) - 1);
    (t as u32, (t >> 32) as u8)
}

/// The 1024-byte superblock as stored in group `group` (copies differ only in that number).
pub fn encode_superblock(geo: &Geometry, f: &SuperFields, group: u32) -> [u8; 1024] {
    let mut s = [0u8; 1024];
    let inodes = geo.inodes();
    put32(&mut s, 0x00, inodes);
    put32(&mut s, 0x04, geo.blocks as u32);
    put32(&mut s, 0x08, f.reserved_blocks as u32);
    put32(&mut s, 0x0C, f.free_blocks as u32);
    put32(&mut s, 0x10, f.free_inodes);
    put32(&mut s, 0x14, 0); // first data block: 0 with 4 KiB blocks
    put32(&mut s, 0x18, 2); // log2(block size) - 10
    put32(&mut s, 0x1C, 2);
    put32(&mut s, 0x20, BLOCKS_PER_GROUP);
    put32(&mut s, 0x24, BLOCKS_PER_GROUP);
    put32(&mut s, 0x28, geo.inodes_per_group);
    let (t, t_hi) = sb_time(f.timestamp);
    put32(&mut s, 0x30, t); // last write
    put16(&mut s, 0x36, 0xFFFF); // max mount count: -1, no forced checks
    put16(&mut s, 0x38, 0xEF53);
    put16(&mut s, 0x3A, 1); // clean
    put16(&mut s, 0x3C, 1); // errors: continue
    put32(&mut s, 0x40, t); // last check
    put32(&mut s, 0x4C, 1); // dynamic revision
    put32(&mut s, 0x54, FIRST_INO);
    put16(&mut s, 0x58, INODE_SIZE as u16);
    put16(&mut s, 0x5A, group as u16);
    let mut compat = COMPAT_EXT_ATTR | COMPAT_DIR_INDEX;
    if f.journal.is_some() {
        compat |= COMPAT_HAS_JOURNAL;
    }
    put32(&mut s, 0x5C, compat);
    put32(
        &mut s,
        0x60,
        INCOMPAT_FILETYPE | INCOMPAT_EXTENTS | INCOMPAT_64BIT | INCOMPAT_FLEX_BG,
    );
    put32(
        &mut s,
        0x64,
        RO_COMPAT_SPARSE_SUPER
            | RO_COMPAT_LARGE_FILE
            | RO_COMPAT_HUGE_FILE
            | RO_COMPAT_DIR_NLINK
            | RO_COMPAT_EXTRA_ISIZE
            | RO_COMPAT_METADATA_CSUM,
    );
    s[0x68..0x78].copy_from_slice(&f.uuid);
    s[0x78..0x88].copy_from_slice(&f.label);
    if let Some((iblock, size)) = &f.journal {
        put32(&mut s, 0xE0, 8);
        // The backup of the journal inode's block map, so e2fsck can rebuild a lost one.
        s[0x10C..0x10C + 60].copy_from_slice(iblock);
        put32(&mut s, 0x10C + 60, (size >> 32) as u32);
        put32(&mut s, 0x10C + 64, *size as u32);
        s[0xFD] = 1; // journal backup: inode blocks
    }
    s[0xEC..0xFC].copy_from_slice(&f.hash_seed);
    s[0xFC] = 1; // default hash: half_md4
    put16(&mut s, 0xFE, DESC_SIZE as u16);
    put32(&mut s, 0x100, 0x000C); // default mount options: user_xattr, acl
    put32(&mut s, 0x108, t); // mkfs time
    put32(&mut s, 0x150, (geo.blocks >> 32) as u32);
    put32(&mut s, 0x154, (f.reserved_blocks >> 32) as u32);
    put32(&mut s, 0x158, (f.free_blocks >> 32) as u32);
    put16(&mut s, 0x15C, EXTRA_ISIZE);
    put16(&mut s, 0x15E, EXTRA_ISIZE);
    // Signed directory hash, as mke2fs on x86 sets it; fixed so the bytes do not depend on the
    // build host's `char`.
    put32(&mut s, 0x160, 0x1);
    s[0x174] = LOG_GROUPS_PER_FLEX as u8;
    s[0x175] = 1; // checksum type: crc32c
    s[0x274] = t_hi; // last write, high byte
    s[0x276] = t_hi; // mkfs time
    s[0x277] = t_hi; // last check
    let c = crc::update(!0, &s[..0x3FC]);
    put32(&mut s, 0x3FC, c);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_groups_are_powers_of_3_5_7() {
        let geo = Geometry::new(1 << 40, 16384).unwrap();
        let with: Vec<u32> = (0..100).filter(|&g| geo.has_super(g)).collect();
        assert_eq!(with, [0, 1, 3, 5, 7, 9, 25, 27, 49, 81]);
    }

    #[test]
    fn runt_last_group_is_dropped_and_sizes_are_floored() {
        let geo = Geometry::new(32768 * 4096 + 40 * 4096 + 123, 16384).unwrap();
        assert_eq!((geo.blocks, geo.groups), (32768, 1));
        let geo = Geometry::new(32768 * 4096 + 2000 * 4096 + 4095, 16384).unwrap();
        assert_eq!((geo.blocks, geo.groups), (34768, 2));
        assert_eq!(geo.group_len(1), 2000);
    }

    #[test]
    fn inode_counts_follow_the_ratio() {
        // As `mke2fs -t ext4` for 1 GiB: 8 groups of 8192 inodes.
        let geo = Geometry::new(1 << 30, 16384).unwrap();
        assert_eq!(
            (geo.groups, geo.inodes_per_group, geo.itable_blocks),
            (8, 8192, 512)
        );
        assert!(Geometry::new(100 * 4096, 16).is_err());
        assert!(matches!(
            Geometry::new(10 * 4096, 16384),
            Err(Ext4Error::TooSmall { .. })
        ));
    }

    #[test]
    fn descriptor_checksum_covers_the_group_number() {
        let d = GroupDesc {
            block_bitmap: 5,
            ..Default::default()
        };
        let a = d.encode(0, 1234);
        let b = d.encode(1, 1234);
        assert_ne!(a[0x1E..0x20], b[0x1E..0x20]);
        let mut z = a;
        z[0x1E] = 0;
        z[0x1F] = 0;
        let c = crc::update(crc::update(1234, &0u32.to_le_bytes()), &z);
        assert_eq!(u16::from_le_bytes([a[0x1E], a[0x1F]]), c as u16);
    }
}
