//! Linear directory blocks with checksum tails. The directories' index flag stays clear, which
//! keeps them valid on a dir_index file system (the kernel indexes nothing it did not build).

use super::crc;
use super::layout::BLOCK;

pub const FT_REG: u8 = 1;
pub const FT_DIR: u8 = 2;
pub const FT_CHR: u8 = 3;
pub const FT_BLK: u8 = 4;
pub const FT_FIFO: u8 = 5;
pub const FT_SOCK: u8 = 6;
pub const FT_SYMLINK: u8 = 7;

/// Bytes of a block that entries may use: the last 12 hold the checksum tail.
const USABLE: usize = BLOCK - 12;

/// One name in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub ino: u32,
    pub file_type: u8,
}

fn rec_len(name_len: usize) -> usize {
    (8 + name_len + 3) & !3
}

fn put_entry(b: &mut [u8], at: usize, ino: u32, rec: usize, name: &[u8], ft: u8) {
    b[at..at + 4].copy_from_slice(&ino.to_le_bytes());
    b[at + 4..at + 6].copy_from_slice(&(rec as u16).to_le_bytes());
    b[at + 6] = name.len() as u8;
    b[at + 7] = ft;
    b[at + 8..at + 8 + name.len()].copy_from_slice(name);
}

fn set_rec_len(b: &mut [u8], at: usize, rec: usize) {
    b[at + 4..at + 6].copy_from_slice(&(rec as u16).to_le_bytes());
}

/// The directory's blocks (at least `min_blocks`), without checksums: `.` and `..` first, then
/// `entries` in order; each block's last entry reaches to the checksum tail.
pub fn dir_blocks(ino: u32, parent: u32, entries: &[DirEntry], min_blocks: usize) -> Vec<Vec<u8>> {
    let mut blocks = Vec::new();
    let mut b = vec![0u8; BLOCK];
    put_entry(&mut b, 0, ino, 12, b".", FT_DIR);
    put_entry(&mut b, 12, parent, 12, b"..", FT_DIR);
    let (mut pos, mut last) = (24, 12);
    for e in entries {
        let rec = rec_len(e.name.len());
        if pos + rec > USABLE {
            set_rec_len(&mut b, last, USABLE - last);
            blocks.push(std::mem::replace(&mut b, vec![0u8; BLOCK]));
            pos = 0;
        }
        put_entry(&mut b, pos, e.ino, rec, &e.name, e.file_type);
        last = pos;
        pos += rec;
    }
    set_rec_len(&mut b, last, USABLE - last);
    blocks.push(b);
    while blocks.len() < min_blocks {
        // An empty block: one unused entry spanning it.
        let mut b = vec![0u8; BLOCK];
        set_rec_len(&mut b, 0, USABLE);
        blocks.push(b);
    }
    blocks
}

/// Writes the checksum tail of a directory block of inode `ino`.
pub fn seal(block: &mut [u8], ino: u32, fs_seed: u32) {
    let tail = &mut block[USABLE..];
    tail[..4].copy_from_slice(&0u32.to_le_bytes());
    tail[4..6].copy_from_slice(&12u16.to_le_bytes());
    tail[6] = 0;
    tail[7] = 0xDE;
    let c = crc::update(crc::inode_seed(fs_seed, ino, 0), &block[..USABLE]);
    block[BLOCK - 4..].copy_from_slice(&c.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks a block's entries as the kernel does: (ino, name) of each used one.
    fn walk(b: &[u8]) -> Vec<(u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < USABLE {
            let ino = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
            let rec = u16::from_le_bytes([b[at + 4], b[at + 5]]) as usize;
            let nl = b[at + 6] as usize;
            assert!(
                rec >= rec_len(nl) && rec.is_multiple_of(4) && at + rec <= USABLE,
                "{at} {rec}"
            );
            if ino != 0 {
                out.push((ino, b[at + 8..at + 8 + nl].to_vec()));
            }
            at += rec;
        }
        assert_eq!(at, USABLE);
        out
    }

    #[test]
    fn many_entries_span_several_blocks() {
        let entries: Vec<DirEntry> = (0..1000)
            .map(|i| DirEntry {
                name: format!("file-{i:05}").into_bytes(),
                ino: 100 + i,
                file_type: FT_REG,
            })
            .collect();
        let blocks = dir_blocks(12, 2, &entries, 1);
        // 10-byte names take 20 bytes: 204 per block, 203 in the first after `.` and `..`.
        assert_eq!(blocks.len(), 5);
        let mut all = Vec::new();
        for b in &blocks {
            all.extend(walk(b));
        }
        assert_eq!(all[0], (12, b".".to_vec()));
        assert_eq!(all[1], (2, b"..".to_vec()));
        assert_eq!(all.len(), 1002);
        assert_eq!(all[1001], (1099, b"file-00999".to_vec()));
    }

    #[test]
    fn long_names_and_empty_blocks() {
        let name = vec![b'x'; 255];
        let entries = vec![
            DirEntry {
                name: name.clone(),
                ino: 20,
                file_type: FT_SYMLINK,
            };
            30
        ];
        let blocks = dir_blocks(11, 2, &entries, 4);
        assert!(blocks.len() >= 4);
        let n: usize = blocks.iter().map(|b| walk(b).len()).sum();
        assert_eq!(n, 32);
        let blocks = dir_blocks(11, 2, &[], 4);
        assert_eq!(blocks.len(), 4);
        assert!(walk(&blocks[3]).is_empty());
    }

    #[test]
    fn seal_writes_a_verifiable_tail() {
        let mut b = dir_blocks(12, 2, &[], 1).remove(0);
        seal(&mut b, 12, 99);
        assert_eq!(b[USABLE + 7], 0xDE);
        let c = crc::update(crc::inode_seed(99, 12, 0), &b[..USABLE]);
        assert_eq!(&b[BLOCK - 4..], &c.to_le_bytes());
    }
}
