//! qcow2 (version 3, 64 KiB clusters) from a sparse raw disk image: only non-zero clusters are
//! stored; the tables follow the data so the file is written in one pass, deterministically.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::sparse::{data_ranges, is_zero};

pub const CLUSTER_BITS: u32 = 16;
pub const CLUSTER: u64 = 1 << CLUSTER_BITS;
/// 16-bit refcounts (refcount_order 4), qemu's default.
const REFCOUNT_ORDER: u32 = 4;
const REFCOUNTS_PER_BLOCK: u64 = CLUSTER / 2;
const L2_ENTRIES: u64 = CLUSTER / 8;
/// "Refcount is exactly one": set on every L1 and L2 entry of an image without snapshots.
const COPIED: u64 = 1 << 63;
const HEADER_LEN: u32 = 104;

#[derive(Debug, thiserror::Error)]
pub enum Qcow2Error {
    #[error("qcow2: the raw image is {file} bytes, expected the virtual size {size}")]
    SizeMismatch { size: u64, file: u64 },
    #[error("qcow2: {0}")]
    Io(#[from] io::Error),
}

/// What [`write_qcow2`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qcow2Summary {
    /// Data clusters stored (the rest read as zeros).
    pub data_clusters: u64,
    /// Length of the qcow2 file.
    pub file_size: u64,
}

/// Writes `raw` (a disk image of `size` bytes) to `dst` (fresh and empty) as qcow2.
pub fn write_qcow2(raw: &File, dst: &File, size: u64) -> Result<Qcow2Summary, Qcow2Error> {
    let len = raw.metadata()?.len();
    if len != size {
        return Err(Qcow2Error::SizeMismatch { size, file: len });
    }
    let vclusters = size.div_ceil(CLUSTER);
    // Host cluster of each guest cluster stored, in guest order; cluster 0 is the header.
    let mut map: Vec<(u64, u64)> = Vec::new();
    let mut next = 1u64;
    let mut buf = vec![0u8; CLUSTER as usize];
    let mut last = None;
    for (start, end) in data_ranges(raw, size)? {
        let mut c = start / CLUSTER;
        while c * CLUSTER < end {
            // Ranges can share a cluster; visit it once.
            if last == Some(c) {
                c += 1;
                continue;
            }
            last = Some(c);
            let off = c * CLUSTER;
            let n = CLUSTER.min(size - off) as usize;
            buf[n..].fill(0);
            raw.read_exact_at(&mut buf[..n], off)?;
            if !is_zero(&buf) {
                dst.write_all_at(&buf, next * CLUSTER)?;
                map.push((c, next));
                next += 1;
            }
            c += 1;
        }
    }
    let data_clusters = map.len() as u64;

    // L2 tables for the L1 slots that have data, in order.
    let l1_len = vclusters.div_ceil(L2_ENTRIES);
    let mut l1 = vec![0u64; l1_len as usize];
    let mut l2: Vec<(u64, Vec<u64>)> = Vec::new();
    for &(guest, host) in &map {
        let slot = guest / L2_ENTRIES;
        if l2.last().is_none_or(|(s, _)| *s != slot) {
            l2.push((slot, vec![0u64; L2_ENTRIES as usize]));
        }
        if let Some((_, t)) = l2.last_mut() {
            t[(guest % L2_ENTRIES) as usize] = (host * CLUSTER) | COPIED;
        }
    }
    let mut table = vec![0u8; CLUSTER as usize];
    for (slot, entries) in &l2 {
        for (i, e) in entries.iter().enumerate() {
            table[i * 8..i * 8 + 8].copy_from_slice(&e.to_be_bytes());
        }
        dst.write_all_at(&table, next * CLUSTER)?;
        l1[*slot as usize] = (next * CLUSTER) | COPIED;
        next += 1;
    }
    let l1_offset = next * CLUSTER;
    let l1_clusters = (l1_len * 8).div_ceil(CLUSTER).max(1);
    next += l1_clusters;

    // The refcount structures count themselves: grow them until they cover everything.
    let (mut blocks, mut rt_clusters) = (0u64, 0u64);
    loop {
        let total = next + blocks + rt_clusters;
        let nb = total.div_ceil(REFCOUNTS_PER_BLOCK);
        let nrt = (nb * 8).div_ceil(CLUSTER).max(1);
        if (nb, nrt) == (blocks, rt_clusters) {
            break;
        }
        (blocks, rt_clusters) = (nb, nrt);
    }
    let rt_offset = next * CLUSTER;
    let first_block = next + rt_clusters;
    let total = first_block + blocks;

    let mut rt = vec![0u8; (rt_clusters * CLUSTER) as usize];
    for b in 0..blocks {
        let at = (b * 8) as usize;
        rt[at..at + 8].copy_from_slice(&((first_block + b) * CLUSTER).to_be_bytes());
    }
    dst.write_all_at(&rt, rt_offset)?;
    let mut block = vec![0u8; CLUSTER as usize];
    for b in 0..blocks {
        block.fill(0);
        let from = b * REFCOUNTS_PER_BLOCK;
        let to = (from + REFCOUNTS_PER_BLOCK).min(total);
        for c in from..to {
            let at = ((c - from) * 2) as usize;
            block[at..at + 2].copy_from_slice(&1u16.to_be_bytes());
        }
        dst.write_all_at(&block, (first_block + b) * CLUSTER)?;
    }

    let mut l1_bytes = vec![0u8; (l1_clusters * CLUSTER) as usize];
    for (i, e) in l1.iter().enumerate() {
        l1_bytes[i * 8..i * 8 + 8].copy_from_slice(&e.to_be_bytes());
    }
    dst.write_all_at(&l1_bytes, l1_offset)?;

    let mut h = vec![0u8; CLUSTER as usize];
    let put32 = |h: &mut [u8], at: usize, v: u32| h[at..at + 4].copy_from_slice(&v.to_be_bytes());
    let put64 = |h: &mut [u8], at: usize, v: u64| h[at..at + 8].copy_from_slice(&v.to_be_bytes());
    h[0..4].copy_from_slice(b"QFI\xfb");
    put32(&mut h, 4, 3);
    // 8: backing file offset, 16: its size: none.
    put32(&mut h, 20, CLUSTER_BITS);
    put64(&mut h, 24, size);
    // 32: no encryption.
    put32(&mut h, 36, l1_len as u32);
    put64(&mut h, 40, l1_offset);
    put64(&mut h, 48, rt_offset);
    put32(&mut h, 56, rt_clusters as u32);
    // 60: no snapshots, 64: their offset; 72..96: no incompatible, compatible or autoclear
    // features.
    put32(&mut h, 96, REFCOUNT_ORDER);
    put32(&mut h, 100, HEADER_LEN);
    // After the header, the end-of-extensions marker (type 0, length 0): zeros already.
    dst.write_all_at(&h, 0)?;
    let file_size = total * CLUSTER;
    dst.set_len(file_size)?;
    Ok(Qcow2Summary {
        data_clusters,
        file_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &std::path::Path, name: &str) -> File {
        File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join(name))
            .unwrap()
    }

    #[test]
    fn stores_only_nonzero_clusters_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let raw = file(dir.path(), "raw");
        raw.set_len(1 << 30).unwrap();
        raw.write_all_at(b"first", 0).unwrap();
        raw.write_all_at(b"far", (700 << 20) + 3).unwrap();
        // A zero block inside data: allocated in the raw file, but not stored.
        raw.write_all_at(&[0u8; 4096], 5 << 20).unwrap();
        let q = file(dir.path(), "q");
        let s = write_qcow2(&raw, &q, 1 << 30).unwrap();
        assert_eq!(s.data_clusters, 2);
        assert_eq!(q.metadata().unwrap().len(), s.file_size);
        let mut h = [0u8; 104];
        q.read_exact_at(&mut h, 0).unwrap();
        assert_eq!(&h[..4], b"QFI\xfb");
        assert_eq!(u64::from_be_bytes(h[24..32].try_into().unwrap()), 1 << 30);
        // Follow L1 → L2 → data for the far cluster.
        let l1_off = u64::from_be_bytes(h[40..48].try_into().unwrap());
        let guest = ((700u64 << 20) + 3) / CLUSTER;
        let mut e = [0u8; 8];
        q.read_exact_at(&mut e, l1_off + guest / L2_ENTRIES * 8)
            .unwrap();
        let l2_off = u64::from_be_bytes(e) & !COPIED;
        q.read_exact_at(&mut e, l2_off + guest % L2_ENTRIES * 8)
            .unwrap();
        let data = u64::from_be_bytes(e) & !COPIED;
        let mut got = [0u8; 3];
        q.read_exact_at(&mut got, data + 3).unwrap();
        assert_eq!(&got, b"far");
        let again = file(dir.path(), "q2");
        write_qcow2(&raw, &again, 1 << 30).unwrap();
        assert!(
            std::fs::read(dir.path().join("q")).unwrap()
                == std::fs::read(dir.path().join("q2")).unwrap()
        );
    }
}
