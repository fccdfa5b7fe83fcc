//! Fixed VHD, the format Azure takes: the raw disk followed by a 512-byte big-endian footer
//! (Virtual Hard Disk Image Format Specification, "Hard Disk Footer Format").

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::MIB;
use super::sparse::copy_sparse;

/// Seconds from the Unix epoch to the VHD epoch, 2000-01-01 00:00:00 UTC.
const VHD_EPOCH: i64 = 946_684_800;
/// What the footer names as its creator: "win ", as Hyper-V (Azure's hypervisor) writes. The
/// field is informational for Azure, but qemu reads it: for creators it does not know ("kiln",
/// or Azure's "wa" in qemu 7.2, Debian 12's) it takes the size from the CHS geometry, which
/// rounds 5 GiB down to 5368430592 bytes; for "win " (and "qem2", "d2v ") it takes `current
/// size`, the exact size. The creator version field carries kiln's own version instead.
pub const CREATOR_APP: &[u8; 4] = b"win ";
/// The host OS field: "Wi2k", what both Hyper-V and qemu write (the only other value the
/// specification defines is Macintosh's "Mac ").
pub const CREATOR_HOST: &[u8; 4] = b"Wi2k";
pub const FOOTER_LEN: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum VhdError {
    #[error("VHD: virtual size {size} bytes is not a whole number of MiB, which Azure requires")]
    NotMib { size: u64 },
    #[error("VHD: the raw image is {file} bytes, expected the virtual size {size}")]
    SizeMismatch { size: u64, file: u64 },
    #[error("VHD: {0}")]
    Io(#[from] io::Error),
}

/// Cylinders, heads and sectors per track for `size` bytes, by the specification's algorithm
/// (Appendix: CHS calculation). Sizes past its 127 GiB limit get the maximum geometry.
pub fn chs(size: u64) -> (u16, u8, u8) {
    let total = (size / 512).min(65535 * 16 * 255);
    let (spt, heads, cth) = if total >= 65535 * 16 * 63 {
        (255, 16, total / 255)
    } else {
        let mut spt = 17;
        let mut cth = total / spt;
        let mut heads = cth.div_ceil(1024).max(4);
        if cth >= heads * 1024 || heads > 16 {
            spt = 31;
            heads = 16;
            cth = total / spt;
        }
        if cth >= heads * 1024 {
            spt = 63;
            heads = 16;
            cth = total / spt;
        }
        (spt, heads, cth)
    };
    ((cth / heads) as u16, heads as u8, spt as u8)
}

/// The one's complement of the byte sum of the footer with its checksum field zeroed.
pub fn checksum(footer: &[u8; FOOTER_LEN]) -> u32 {
    let sum = footer
        .iter()
        .enumerate()
        .filter(|(i, _)| !(64..68).contains(i))
        .fold(0u32, |s, (_, &b)| s.wrapping_add(u32::from(b)));
    !sum
}

/// kiln's version as the footer's creator version (major in the high 16 bits).
fn creator_version() -> u32 {
    let major: u32 = env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap_or(0);
    let minor: u32 = env!("CARGO_PKG_VERSION_MINOR").parse().unwrap_or(0);
    (major << 16) | (minor & 0xffff)
}

/// The footer of a fixed disk of `size` bytes. `unique_id` identifies the image (derived from
/// it, so rebuilds match); `epoch` is SOURCE_DATE_EPOCH, clamped to the VHD clock's range.
pub fn footer(size: u64, unique_id: [u8; 16], epoch: i64) -> Result<[u8; FOOTER_LEN], VhdError> {
    if size == 0 || !size.is_multiple_of(MIB) {
        return Err(VhdError::NotMib { size });
    }
    let mut f = [0u8; FOOTER_LEN];
    f[0..8].copy_from_slice(b"conectix");
    // Features: bit 1 "reserved", which the specification says must always be set.
    f[8..12].copy_from_slice(&2u32.to_be_bytes());
    f[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    // Data offset: none, for a fixed disk.
    f[16..24].copy_from_slice(&u64::MAX.to_be_bytes());
    let ts = (epoch - VHD_EPOCH).clamp(0, i64::from(u32::MAX)) as u32;
    f[24..28].copy_from_slice(&ts.to_be_bytes());
    f[28..32].copy_from_slice(CREATOR_APP);
    f[32..36].copy_from_slice(&creator_version().to_be_bytes());
    f[36..40].copy_from_slice(CREATOR_HOST);
    f[40..48].copy_from_slice(&size.to_be_bytes());
    f[48..56].copy_from_slice(&size.to_be_bytes());
    let (c, h, s) = chs(size);
    f[56..58].copy_from_slice(&c.to_be_bytes());
    f[58] = h;
    f[59] = s;
    // Disk type 2: fixed.
    f[60..64].copy_from_slice(&2u32.to_be_bytes());
    f[68..84].copy_from_slice(&unique_id);
    // Saved state (84) and the reserved rest stay zero.
    let sum = checksum(&f);
    f[64..68].copy_from_slice(&sum.to_be_bytes());
    Ok(f)
}

/// Turns `image`, a raw disk of exactly `size` bytes, into a fixed VHD in place by appending
/// the footer.
pub fn append_footer(
    image: &File,
    size: u64,
    unique_id: [u8; 16],
    epoch: i64,
) -> Result<(), VhdError> {
    let f = footer(size, unique_id, epoch)?;
    let len = image.metadata()?.len();
    if len != size {
        return Err(VhdError::SizeMismatch { size, file: len });
    }
    image.write_all_at(&f, size)?;
    Ok(())
}

/// Writes a fixed VHD to `dst` (fresh and empty) from the raw disk `raw` of `size` bytes,
/// copying only its non-zero blocks.
pub fn write_vhd(
    raw: &File,
    dst: &File,
    size: u64,
    unique_id: [u8; 16],
    epoch: i64,
) -> Result<(), VhdError> {
    let f = footer(size, unique_id, epoch)?;
    let len = raw.metadata()?.len();
    if len != size {
        return Err(VhdError::SizeMismatch { size, file: len });
    }
    copy_sparse(raw, dst, size)?;
    dst.write_all_at(&f, size)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_follows_the_specification() {
        // 5 GiB: the 63-sector branch.
        assert_eq!(chs(5 << 30), (10402, 16, 63));
        // Small disks: 17 sectors per track, at least 4 heads.
        assert_eq!(chs(MIB), (30, 4, 17));
        // From 65535 * 16 * 63 sectors (~31.5 GiB) on, 255 sectors per track; capped.
        assert_eq!(chs(30 << 30).2, 63);
        assert_eq!(chs(40 << 30).2, 255);
        assert_eq!(chs(2 << 40), (65535, 16, 255));
    }

    #[test]
    fn footer_fields_and_checksum() {
        let f = footer(5 << 30, [7; 16], 1_700_000_000).unwrap();
        assert_eq!(&f[0..8], b"conectix");
        assert_eq!(u32::from_be_bytes(f[8..12].try_into().unwrap()), 2);
        assert_eq!(u32::from_be_bytes(f[12..16].try_into().unwrap()), 0x10000);
        assert_eq!(&f[16..24], &[0xff; 8]);
        assert_eq!(
            u32::from_be_bytes(f[24..28].try_into().unwrap()),
            1_700_000_000 - 946_684_800
        );
        assert_eq!(u64::from_be_bytes(f[40..48].try_into().unwrap()), 5 << 30);
        assert_eq!(u64::from_be_bytes(f[48..56].try_into().unwrap()), 5 << 30);
        assert_eq!(u32::from_be_bytes(f[60..64].try_into().unwrap()), 2);
        assert_eq!(&f[68..84], &[7; 16]);
        let stored = u32::from_be_bytes(f[64..68].try_into().unwrap());
        let sum: u32 = f
            .iter()
            .enumerate()
            .filter(|(i, _)| !(64..68).contains(i))
            .map(|(_, &b)| u32::from(b))
            .sum();
        assert_eq!(stored, !sum);
        // Before 2000: clamped, not wrapped.
        let old = footer(MIB, [0; 16], 0).unwrap();
        assert_eq!(&old[24..28], &[0; 4]);
        assert!(matches!(
            footer(MIB + 512, [0; 16], 0),
            Err(VhdError::NotMib { .. })
        ));
    }
}
