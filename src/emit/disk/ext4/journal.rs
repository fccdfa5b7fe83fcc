//! The internal journal's size and its JBD2 superblock: an empty, clean journal (v2 superblock,
//! 64-bit block numbers, checksum v3) that the kernel starts using at the first mount.

use super::crc;
use super::layout::BLOCK;

const JBD2_MAGIC: u32 = 0xC03B_3998;
const SUPERBLOCK_V2: u32 = 4;
const INCOMPAT_64BIT: u32 = 0x2;
const INCOMPAT_CSUM_V3: u32 = 0x10;
const CSUM_TYPE_CRC32C: u8 = 4;
/// The smallest journal JBD2 accepts.
pub const MIN_BLOCKS: u32 = 1024;

/// mke2fs's default journal size for a file system of `blocks` 4 KiB blocks (e2fsprogs
/// 1.47 `ext2fs_default_journal_size`); none below 2048 blocks.
pub fn default_blocks(blocks: u64) -> u32 {
    match blocks {
        0..2048 => 0,
        2048..32768 => 1024,
        32768..262144 => 4096,
        262144..524288 => 8192,
        524288..4194304 => 16384,
        4194304..8388608 => 32768,
        8388608..16777216 => 65536,
        16777216..33554432 => 131072,
        _ => 262144,
    }
}

/// The journal's first block. The kernel would set 64-bit and checksum v3 on a metadata_csum
/// file system at the first mount; setting them here keeps mount from rewriting it.
pub fn superblock(blocks: u32, uuid: &[u8; 16]) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK];
    let mut put = |off: usize, v: u32| b[off..off + 4].copy_from_slice(&v.to_be_bytes());
    put(0x00, JBD2_MAGIC);
    put(0x04, SUPERBLOCK_V2);
    put(0x0C, BLOCK as u32);
    put(0x10, blocks);
    put(0x14, 1); // first log block
    put(0x18, 1); // sequence
    put(0x28, INCOMPAT_64BIT | INCOMPAT_CSUM_V3);
    put(0x40, 1); // users: the file system itself
    b[0x30..0x40].copy_from_slice(uuid);
    b[0x50] = CSUM_TYPE_CRC32C;
    let c = crc::update(!0, &b[..1024]);
    b[0xFC..0x100].copy_from_slice(&c.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_sizes_follow_mke2fs() {
        assert_eq!(default_blocks(1000), 0);
        assert_eq!(default_blocks(262144), 8192); // 1 GiB: 32 MiB, as mke2fs above
        assert_eq!(default_blocks(1 << 30), 262144);
    }

    #[test]
    fn superblock_is_big_endian_and_checksummed() {
        let b = superblock(8192, &[1; 16]);
        assert_eq!(&b[..4], &[0xC0, 0x3B, 0x39, 0x98]);
        let mut z = b[..1024].to_vec();
        z[0xFC..0x100].fill(0);
        assert_eq!(crc::update(!0, &z).to_be_bytes(), b[0xFC..0x100]);
    }
}
