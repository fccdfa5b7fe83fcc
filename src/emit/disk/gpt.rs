//! The partition table: protective MBR, primary and backup GPT headers and entry arrays, written
//! with the `gpt` crate from a [`Layout`] into the first and last sectors of a disk image.

use std::collections::BTreeMap;
use std::fs::File;

use gpt::disk::LogicalBlockSize;
use gpt::mbr::ProtectiveMBR;
use gpt::partition::Partition;
use gpt::partition_types::{OperatingSystem, Type};

use super::SECTOR;
use super::layout::Layout;
use super::sparse::Region;

#[derive(Debug, thiserror::Error)]
pub enum GptError {
    #[error("writing the GPT: {0}")]
    Gpt(#[from] gpt::GptError),
    #[error("writing the protective MBR: {0}")]
    Mbr(#[from] gpt::mbr::MBRError),
    #[error("the layout is for {layout} bytes but the image file is {file} bytes")]
    SizeMismatch { layout: u64, file: u64 },
    #[error("the image file: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes the protective MBR and both GPTs of `layout` into `image`, a file of at least
/// `layout.size` bytes (a VHD's footer may follow). Nothing else of the image is touched, and
/// unused entries stay holes.
pub fn write_gpt(image: &File, layout: &Layout) -> Result<(), GptError> {
    let len = image.metadata()?.len();
    if len < layout.size {
        return Err(GptError::SizeMismatch {
            layout: layout.size,
            file: len,
        });
    }
    // The crate puts the backup GPT at the end of its device: give it exactly the disk.
    let mut dev = Region::new(image, 0, layout.size);

    // The crate leaves LBA 0 alone; the protective partition covers the whole disk after it
    // (capped at 2^32 - 1 sectors, as the UEFI specification says for larger disks).
    let protective = u32::try_from(layout.sectors() - 1).unwrap_or(u32::MAX);
    ProtectiveMBR::with_lb_size(protective).overwrite_lba0(&mut dev)?;

    let mut disk = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(LogicalBlockSize::Lb512)
        .change_partition_count(true)
        .create_from_device(dev, Some(layout.disk_guid))?;
    let mut table = BTreeMap::new();
    for p in &layout.partitions {
        table.insert(
            p.number,
            Partition {
                part_type_guid: Type {
                    guid: p.type_guid,
                    os: OperatingSystem::None,
                },
                // Set explicitly: the crate would pick a random one.
                part_guid: p.part_guid,
                first_lba: p.start / SECTOR,
                last_lba: p.last_lba(),
                flags: 0,
                name: p.label.clone(),
            },
        );
    }
    disk.update_partitions(table)?;
    disk.write()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::{Arch, DiskOutput};
    use crate::emit::disk::layout;
    use std::os::unix::fs::FileExt;

    #[test]
    fn headers_and_mbr_land_where_uefi_says() {
        let dir = tempfile::tempdir().unwrap();
        let disk: DiskOutput = serde_saphyr::from_str("size: 64MiB\npartitions: [{name: esp, type: esp, size: 8MiB}, {name: root, type: root, size: rest}]").unwrap();
        let l = layout::plan(&disk, Arch::X86_64, b"t").unwrap();
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("disk"))
            .unwrap();
        f.set_len(l.size).unwrap();
        write_gpt(&f, &l).unwrap();
        let mut s = [0u8; 512];
        f.read_exact_at(&mut s, 0).unwrap();
        assert_eq!(&s[510..], &[0x55, 0xaa]);
        assert_eq!(s[446 + 4], 0xee);
        assert_eq!(
            u32::from_le_bytes(s[446 + 12..446 + 16].try_into().unwrap()) as u64,
            l.sectors() - 1
        );
        f.read_exact_at(&mut s, 512).unwrap();
        assert_eq!(&s[..8], b"EFI PART");
        f.read_exact_at(&mut s, l.size - 512).unwrap();
        assert_eq!(&s[..8], b"EFI PART");
        // The disk GUID, mixed-endian as GPT stores it.
        assert_eq!(&s[56..72], &l.disk_guid.to_bytes_le());
        let small = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("small"))
            .unwrap();
        small.set_len(l.size - 512).unwrap();
        assert!(matches!(
            write_gpt(&small, &l),
            Err(GptError::SizeMismatch { .. })
        ));
    }
}
