//! The disk backend's pieces: partition layout, GPT, the FAT32 ESP, kiln's ext4 writer, and the
//! raw, fixed VHD and qcow2 files, all written in-process and sparsely (no loops, mounts or root).

pub mod ext4;
pub mod fat;
pub mod gpt;
pub mod image;
pub mod layout;
pub mod qcow2;
pub mod sparse;
pub mod vhd;

/// The logical sector size of every image kiln writes (Azure and qemu both use 512).
pub const SECTOR: u64 = 512;
/// Partition alignment, and the unit Azure requires of a VHD's virtual size.
pub const MIB: u64 = 1024 * 1024;

use std::fs::File;

use crate::definition::Filesystem;
use crate::tree::Tree;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error(transparent)]
    Layout(#[from] layout::LayoutError),
    #[error(transparent)]
    Gpt(#[from] gpt::GptError),
    #[error("partition `{partition}`: {source}")]
    Fat {
        partition: String,
        #[source]
        source: fat::FatError,
    },
    #[error("partition `{partition}`: a vfat partition needs a mount point to take files from")]
    NoMount { partition: String },
    #[error("partition `{partition}`: an ext4 partition needs a mount point to take files from")]
    NoExt4Mount { partition: String },
    #[error("partition `{partition}`: {source}")]
    Ext4 {
        partition: String,
        #[source]
        source: ext4::Ext4Error,
    },
    #[error("disk image: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes what this module knows of a disk into `image` (sized to `layout.size` first, sparse):
/// the partition table and every vfat partition, filled from the tree below its mount point.
/// ext4 partitions are left to the ext4 writer.
pub fn write_partitions(
    image: &File,
    layout: &layout::Layout,
    tree: &Tree,
    epoch: i64,
) -> Result<(), DiskError> {
    image.set_len(layout.size)?;
    gpt::write_gpt(image, layout)?;
    for p in &layout.partitions {
        if p.filesystem != Some(Filesystem::Vfat) {
            continue;
        }
        let mount = p.mount.as_deref().ok_or_else(|| DiskError::NoMount {
            partition: p.name.clone(),
        })?;
        fat::write_fat32(
            image,
            p.start,
            p.size,
            tree,
            mount,
            p.fat_volume_id,
            &p.fs_label,
            epoch,
        )
        .map_err(|source| DiskError::Fat {
            partition: p.name.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Writes the whole raw disk of `tree` laid out as `layout` into `image` (fresh, empty): what
/// [`write_partitions`] writes, then every ext4 partition from the subtree at its mount point
/// (mount points below it become empty directories). The disk backend and the benchmark
/// (`examples/dir2vhd`) both call this, so the benchmark times what a build does.
pub fn write_disk(
    image: &File,
    layout: &layout::Layout,
    tree: &Tree,
    seed: &[u8],
    epoch: i64,
) -> Result<(), DiskError> {
    write_partitions(image, layout, tree, epoch)?;
    let mounts: Vec<String> = layout
        .partitions
        .iter()
        .filter_map(|p| p.mount.clone())
        .collect();
    for p in &layout.partitions {
        if p.filesystem != Some(Filesystem::Ext4) {
            continue;
        }
        let root = p.mount.as_deref().ok_or_else(|| DiskError::NoExt4Mount {
            partition: p.name.clone(),
        })?;
        let inner = below(&mounts, root);
        let opts = ext4::Ext4Options {
            uuid: *p.fs_uuid.as_bytes(),
            hash_seed: layout::derive_bytes(seed, &format!("ext4-hash-seed/{}", p.name)),
            label: p.fs_label.clone(),
            timestamp: epoch,
            reserved_percent: 5,
            inode_ratio: 16384,
            journal_blocks: None,
        };
        let src = ext4::Source {
            tree,
            root,
            mounts: &inner,
        };
        ext4::write(image, p.start, p.size, &src, &opts).map_err(|source| DiskError::Ext4 {
            partition: p.name.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Mount points strictly below `root` (`/boot/efi` is below `/` and `/boot`).
fn below(mounts: &[String], root: &str) -> Vec<String> {
    mounts
        .iter()
        .filter(|m| {
            m.as_str() != root
                && (root == "/" || m.starts_with(&format!("{}/", root.trim_end_matches('/'))))
        })
        .cloned()
        .collect()
}
