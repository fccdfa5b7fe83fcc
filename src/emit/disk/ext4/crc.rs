//! CRC32C (Castagnoli) as ext4 and jbd2 use it, and the seeds its metadata checksums chain from.
//! The raw register update without final inversion, as the kernel's `ext4_chksum`.

const POLY: u32 = 0x82F6_3B78;

/// Slicing-by-8 tables, built at compile time: metadata checksums cover every inode and
/// directory block, so the byte-at-a-time loop would show in large trees.
static TABLES: [[u32; 256]; 8] = tables();

const fn tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut s = 1;
    while s < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        s += 1;
    }
    t
}

/// Feeds `data` into the CRC register `crc` (no pre- or post-inversion).
pub fn update(mut crc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let lo = crc ^ u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        let hi = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
        crc = TABLES[7][(lo & 0xff) as usize]
            ^ TABLES[6][((lo >> 8) & 0xff) as usize]
            ^ TABLES[5][((lo >> 16) & 0xff) as usize]
            ^ TABLES[4][(lo >> 24) as usize]
            ^ TABLES[3][(hi & 0xff) as usize]
            ^ TABLES[2][((hi >> 8) & 0xff) as usize]
            ^ TABLES[1][((hi >> 16) & 0xff) as usize]
            ^ TABLES[0][(hi >> 24) as usize];
    }
    for &b in chunks.remainder() {
        crc = (crc >> 8) ^ TABLES[0][((crc ^ b as u32) & 0xff) as usize];
    }
    crc
}

/// The standard CRC32C of `data` (as in iSCSI, RFC 3720); the tests check the table with it.
#[cfg(test)]
pub fn crc32c(data: &[u8]) -> u32 {
    !update(!0, data)
}

/// The file system's checksum seed: every metadata checksum starts from it.
pub fn fs_seed(uuid: &[u8; 16]) -> u32 {
    update(!0, uuid)
}

/// An inode's seed, which its inode, extent and directory block checksums start from.
pub fn inode_seed(fs_seed: u32, ino: u32, generation: u32) -> u32 {
    update(
        update(fs_seed, &ino.to_le_bytes()),
        &generation.to_le_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bitwise(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ POLY
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn known_vectors() {
        // RFC 3720 B.4 and the usual check value.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62A8_AB43);
        let inc: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c(&inc), 0x46DD_794E);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn chaining_equals_one_pass() {
        let data = b"the quick brown fox jumps over the lazy dog";
        let (a, b) = data.split_at(13);
        assert_eq!(update(update(!0, a), b), update(!0, data));
    }

    proptest! {
        #[test]
        fn sliced_equals_bitwise(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(crc32c(&data), bitwise(&data));
        }
    }
}
