//! Block allocation over one in-memory bitmap of the whole file system, and the per-group block
//! and inode bitmaps cut from it. Allocation only moves forward, so data is laid out in inode order.

use super::Ext4Error;
use super::layout::{BLOCK, BLOCKS_PER_GROUP, Geometry};

/// Which blocks are in use, and where the next data allocation starts looking.
#[derive(Debug)]
pub struct Allocator {
    bits: Vec<u64>,
    blocks: u64,
    used: u64,
    cursor: u64,
}

impl Allocator {
    pub fn new(blocks: u64) -> Allocator {
        Allocator {
            bits: vec![0; blocks.div_ceil(64) as usize],
            blocks,
            used: 0,
            cursor: 0,
        }
    }

    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    pub fn used(&self) -> u64 {
        self.used
    }

    pub fn is_used(&self, b: u64) -> bool {
        self.bits[(b / 64) as usize] & (1 << (b % 64)) != 0
    }

    pub fn mark(&mut self, b: u64) {
        if !self.is_used(b) {
            self.bits[(b / 64) as usize] |= 1 << (b % 64);
            self.used += 1;
        }
    }

    pub fn mark_range(&mut self, start: u64, len: u64) {
        for b in start..start + len {
            self.mark(b);
        }
    }

    /// The first free block at or after `from`.
    fn next_free(&self, mut from: u64) -> Option<u64> {
        while from < self.blocks {
            let word = self.bits[(from / 64) as usize] >> (from % 64);
            if word == u64::MAX >> (from % 64) {
                // The rest of this word is full.
                from = (from / 64 + 1) * 64;
                continue;
            }
            let skip = (!word).trailing_zeros() as u64;
            return Some(from + skip).filter(|&b| b < self.blocks);
        }
        None
    }

    /// `n` contiguous free blocks, the first run at or after `goal`; for metadata that must be
    /// contiguous (an inode table).
    pub fn alloc_run(&mut self, goal: u64, n: u64) -> Option<u64> {
        let mut start = self.next_free(goal)?;
        loop {
            if start + n > self.blocks {
                return None;
            }
            match (start..start + n).find(|&b| self.is_used(b)) {
                None => {
                    self.mark_range(start, n);
                    return Some(start);
                }
                Some(busy) => start = self.next_free(busy)?,
            }
        }
    }

    /// Up to `max` contiguous free blocks from the data cursor on: (start, length).
    pub fn alloc_data(&mut self, max: u64) -> Option<(u64, u64)> {
        let start = self.next_free(self.cursor)?;
        let mut len = 0;
        while len < max && start + len < self.blocks && !self.is_used(start + len) {
            len += 1;
        }
        self.mark_range(start, len);
        self.cursor = start + len;
        Some((start, len))
    }

    /// How many blocks of group `g` are used.
    pub fn used_in_group(&self, geo: &Geometry, g: u32) -> u32 {
        let first = geo.group_first(g);
        let len = geo.group_len(g) as u64;
        let (w0, w1) = ((first / 64) as usize, (first + len).div_ceil(64) as usize);
        // Groups start on multiples of 32768, so only the last word of the last group is partial.
        self.bits[w0..w1].iter().map(|w| w.count_ones()).sum()
    }

    /// Group `g`'s on-disk block bitmap: bits past a short last group are set, as e2fsck expects.
    pub fn group_bitmap(&self, geo: &Geometry, g: u32) -> Vec<u8> {
        let first = geo.group_first(g);
        let len = geo.group_len(g) as u64;
        let mut out = vec![0xFFu8; BLOCK];
        for (i, byte) in out.iter_mut().enumerate() {
            let b0 = first + i as u64 * 8;
            if b0 >= first + len {
                break;
            }
            let mut v = 0u8;
            for k in 0..8u64 {
                let b = b0 + k;
                if b >= first + len || self.is_used(b) {
                    v |= 1 << k;
                }
            }
            *byte = v;
        }
        out
    }
}

/// An inode bitmap block with the first `used` inodes of a group of `per_group` marked; the
/// bits after the group's last inode are padding and set.
pub fn inode_bitmap(used: &[u32], per_group: u32) -> Vec<u8> {
    let mut out = vec![0u8; BLOCK];
    for &i in used {
        out[(i / 8) as usize] |= 1 << (i % 8);
    }
    for i in per_group..BLOCKS_PER_GROUP {
        out[(i / 8) as usize] |= 1 << (i % 8);
    }
    out
}

/// What did not fit.
pub fn out_of_space(what: &str, alloc: &Allocator, needed_bytes: u64) -> Ext4Error {
    Ext4Error::Full {
        what: what.into(),
        blocks: alloc.blocks(),
        used: alloc.used(),
        content_bytes: needed_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_skip_used_blocks() {
        let mut a = Allocator::new(300);
        a.mark_range(0, 70);
        a.mark(75);
        assert_eq!(a.alloc_run(0, 10), Some(76));
        assert_eq!(a.alloc_run(0, 5), Some(70));
        assert_eq!(a.alloc_run(0, 1000), None);
        assert_eq!(a.alloc_data(100), Some((86, 100)));
        assert_eq!(a.used(), 70 + 1 + 10 + 5 + 100);
    }

    #[test]
    fn data_runs_stop_at_metadata_and_the_end() {
        let mut a = Allocator::new(200);
        a.mark(10);
        assert_eq!(a.alloc_data(50), Some((0, 10)));
        assert_eq!(a.alloc_data(50), Some((11, 50)));
        assert_eq!(a.alloc_data(500), Some((61, 139)));
        assert_eq!(a.alloc_data(1), None);
    }

    #[test]
    fn last_group_bitmap_is_padded() {
        let geo = Geometry::new((32768 + 1000) * 4096, 16384).unwrap();
        let mut a = Allocator::new(geo.blocks);
        a.mark(32768);
        let bm = a.group_bitmap(&geo, 1);
        assert_eq!(bm[0], 1);
        assert_eq!(bm[124], 0);
        assert_eq!(bm[125], 0xFF);
        assert_eq!(bm[4095], 0xFF);
        assert_eq!(a.used_in_group(&geo, 1), 1);
    }

    #[test]
    fn inode_bitmap_padding() {
        let bm = inode_bitmap(&[0, 1, 9], 16);
        assert_eq!(&bm[..3], &[0b11, 0b10, 0xFF]);
    }
}
