//! The EFI system partition: a FAT32 file system written with `hadris-fat` into a byte range of
//! the disk image, holding the staging tree's files under a mount point (e.g. /boot/efi).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use hadris_fat::format::{FatFormatOptions, FatTypeSelection, FatVolumeFormatter};
use hadris_fat::time::{StaticTimeProvider, TimeProvider};
use hadris_fat::{FatDateTime, FatDir, FatType, FatVolume, FatVolumeWriteExt};

use super::SECTOR;
use super::sparse::Region;
use crate::tree::{Kind, Tree};

#[derive(Debug, thiserror::Error)]
pub enum FatError {
    #[error("ESP: formatting {size} bytes as FAT32: {source}")]
    Format {
        size: u64,
        #[source]
        source: hadris_fat::Error,
    },
    #[error("ESP: {size} bytes is too small or too large for FAT32 (it became {got})")]
    NotFat32 { size: u64, got: String },
    #[error("ESP: {path}: {source}")]
    Fat {
        path: String,
        #[source]
        source: hadris_fat::Error,
    },
    #[error("ESP: {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("ESP: {path}: FAT has no {kind}s; only files and directories can go on the ESP")]
    Unsupported { path: String, kind: &'static str },
    #[error("ESP: the partition at byte {offset} is not sector aligned")]
    Unaligned { offset: u64 },
}

/// What [`write_fat32`] put on the file system.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FatSummary {
    pub files: usize,
    pub dirs: usize,
    pub bytes: u64,
}

/// Writes a FAT32 file system of `size` bytes at `offset` of `dev` holding the tree's files and
/// directories under `root` (which becomes the file system's root). Long names are kept (VFAT);
/// file and directory mtimes come from the manifest; creation times, the volume label entry and
/// `.`/`..` entries carry `timestamp` (SOURCE_DATE_EPOCH). FAT has no owners or modes. The same
/// inputs give the same bytes; zero ranges stay holes.
// Eight plain arguments, each one fact about the partition, read better at the call site than
// a struct built for one call.
#[allow(clippy::too_many_arguments)]
pub fn write_fat32(
    dev: &File,
    offset: u64,
    size: u64,
    tree: &Tree,
    root: &str,
    volume_id: u32,
    label: &str,
    timestamp: i64,
) -> Result<FatSummary, FatError> {
    if !offset.is_multiple_of(SECTOR) {
        return Err(FatError::Unaligned { offset });
    }
    let opts = FatFormatOptions::new(size)
        .fat_type(FatTypeSelection::Fat32)
        .volume_label(&fat_label(label))
        .volume_id(volume_id)
        // The partition's first sector, as firmware and fsck.fat expect of a partitioned disk.
        .hidden_sectors(u32::try_from(offset / SECTOR).unwrap_or(u32::MAX));
    let region = Region::new(dev, offset, size);
    let fs = FatVolumeFormatter::format(region, opts)
        .map_err(|source| FatError::Format { size, source })?;
    if fs.fat_type() != FatType::Fat32 {
        return Err(FatError::NotFat32 {
            size,
            got: fs.fat_type().to_string(),
        });
    }
    drop(fs);
    // The formatter stamps the label entry with the wall clock: give it the build's time.
    fix_label_time(dev, offset, fat_time(timestamp)).map_err(|source| FatError::Io {
        path: "volume label".into(),
        source,
    })?;

    let fs = FatVolume::builder(Region::new(dev, offset, size))
        .time_provider(clock(timestamp))
        .open()
        .map_err(|source| FatError::Fat {
            path: "/".into(),
            source,
        })?;
    let summary = fill(&fs, tree, root)?;
    Ok(summary)
}

/// A FAT volume label: at most 11 characters of upper-case ASCII (others become `_`).
fn fat_label(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || " -_".contains(c) {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .take(11)
        .collect()
}

/// A clock stuck at `timestamp`. The volume holds it as `&'static`, so one is leaked per
/// distinct timestamp in the process (a few bytes; builds use one SOURCE_DATE_EPOCH).
fn clock(timestamp: i64) -> &'static dyn TimeProvider {
    static CLOCKS: Mutex<BTreeMap<i64, &'static StaticTimeProvider>> = Mutex::new(BTreeMap::new());
    let mut clocks = CLOCKS.lock().unwrap_or_else(|e| e.into_inner());
    *clocks
        .entry(timestamp)
        .or_insert_with(|| Box::leak(Box::new(StaticTimeProvider(fat_time(timestamp)))))
}

/// A Unix time as a FAT date and time (UTC; FAT has no zone), clamped to FAT's 1980–2107.
pub fn fat_time(t: i64) -> FatDateTime {
    const MIN: i64 = 315_532_800; // 1980-01-01
    const MAX: i64 = 4_354_819_199; // 2107-12-31 23:59:59
    let t = t.clamp(MIN, MAX);
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let mut dt = FatDateTime::new(
        y as u16,
        m as u8,
        d as u8,
        (secs / 3600) as u8,
        (secs / 60 % 60) as u8,
        (secs % 60) as u8,
    );
    // The odd second, in the 10 ms field the creation time has.
    dt.time_tenth = ((secs % 2) * 100) as u8;
    dt
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Rewrites the times of the volume label entry the formatter put first in the root directory.
fn fix_label_time(dev: &File, offset: u64, t: FatDateTime) -> std::io::Result<()> {
    let mut bs = [0u8; 512];
    dev.read_exact_at(&mut bs, offset)?;
    let u16at = |i: usize| u64::from(u16::from_le_bytes([bs[i], bs[i + 1]]));
    let u32at = |i: usize| u64::from(u32::from_le_bytes([bs[i], bs[i + 1], bs[i + 2], bs[i + 3]]));
    let (bps, spc, reserved, fats) = (u16at(11), u64::from(bs[13]), u16at(14), u64::from(bs[16]));
    let (fat_sectors, root_cluster) = (u32at(36), u32at(44));
    let root =
        offset + bps * (reserved + fats * fat_sectors + root_cluster.saturating_sub(2) * spc);
    let mut e = [0u8; 32];
    dev.read_exact_at(&mut e, root)?;
    if e[11] != 0x08 {
        return Ok(());
    }
    let (date, time, _) = t.to_raw();
    e[13] = 0;
    e[14..16].copy_from_slice(&time.to_le_bytes());
    e[16..18].copy_from_slice(&date.to_le_bytes());
    e[18..20].copy_from_slice(&date.to_le_bytes());
    e[22..24].copy_from_slice(&time.to_le_bytes());
    e[24..26].copy_from_slice(&date.to_le_bytes());
    dev.write_all_at(&e, root)
}

fn fat_err(path: &str) -> impl FnOnce(hadris_fat::Error) -> FatError + '_ {
    move |source| FatError::Fat {
        path: path.to_string(),
        source,
    }
}

/// Copies the tree below `root` into the mounted volume, in path order.
fn fill(fs: &FatVolume<Region<'_>>, tree: &Tree, root: &str) -> Result<FatSummary, FatError> {
    let root = root.trim_end_matches('/');
    let prefix = format!("{root}/");
    let mut dirs: BTreeMap<String, FatDir<'_, Region<'_>>> = BTreeMap::new();
    dirs.insert(String::new(), fs.root_dir());
    let mut dir_times: Vec<(String, i64)> = Vec::new();
    let mut summary = FatSummary::default();
    let mut buf = vec![0u8; 1 << 20];

    for (path, entry) in tree.entries() {
        let Some(rel) = path.strip_prefix(&prefix) else {
            continue;
        };
        let (parent, name) = match rel.rsplit_once('/') {
            Some((p, n)) => (p, n),
            None => ("", rel),
        };
        // Parents come before children in path order, so a missing parent is a manifest
        // without its directory entry: refuse rather than guess.
        let Some(dir) = dirs.get(parent) else {
            return Err(FatError::Io {
                path: path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "parent directory is not in the manifest",
                ),
            });
        };
        match &entry.kind {
            Kind::Dir => {
                let d = fs.create_dir(dir, name).map_err(fat_err(path))?;
                dirs.insert(rel.to_string(), d);
                dir_times.push((rel.to_string(), entry.mtime));
                summary.dirs += 1;
            }
            Kind::File { .. } => {
                let fe = fs.create_file(dir, name).map_err(fat_err(path))?;
                let mut w = fs.write_file(&fe).map_err(fat_err(path))?;
                let io = |source| FatError::Io {
                    path: path.clone(),
                    source,
                };
                let mut src = File::open(tree.disk_path(path)).map_err(io)?;
                loop {
                    let n = src.read(&mut buf).map_err(|source| FatError::Io {
                        path: path.clone(),
                        source,
                    })?;
                    if n == 0 {
                        break;
                    }
                    let mut at = 0;
                    while at < n {
                        at += w.write(&buf[at..n]).map_err(fat_err(path))?;
                    }
                    summary.bytes += n as u64;
                }
                w.set_modified(fat_time(entry.mtime));
                w.finish().map_err(fat_err(path))?;
                summary.files += 1;
            }
            other => {
                return Err(FatError::Unsupported {
                    path: path.clone(),
                    kind: other.name(),
                });
            }
        }
    }
    // Last, so that creating their children does not move them again.
    for (rel, mtime) in dir_times {
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", &rel));
        let Some(p) = dirs.get(parent) else {
            continue;
        };
        let entry = p
            .find(name)
            .map_err(fat_err(&rel))?
            .ok_or_else(|| FatError::Fat {
                path: rel.clone(),
                source: hadris_fat::Error::EntryNotFound,
            })?;
        let t = fat_time(mtime);
        fs.set_times(&entry, Some(t), Some(t.to_raw().0), None)
            .map_err(fat_err(&rel))?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fat_times_are_utc_and_clamped() {
        // 2023-11-14 22:13:20 UTC.
        let t = fat_time(1_700_000_000);
        assert_eq!(t, FatDateTime::new(2023, 11, 14, 22, 13, 20));
        assert_eq!(t.time_tenth, 0);
        assert_eq!(fat_time(1_700_000_001).time_tenth, 100);
        assert_eq!(fat_time(0), FatDateTime::new(1980, 1, 1, 0, 0, 0));
        let max = fat_time(i64::MAX);
        assert_eq!(
            (max.date, max.time),
            (
                FatDateTime::new(2107, 12, 31, 23, 59, 58).date,
                FatDateTime::new(2107, 12, 31, 23, 59, 58).time
            )
        );
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn labels_fit_fat() {
        assert_eq!(fat_label("esp"), "ESP");
        assert_eq!(fat_label("boot.é-partition"), "BOOT__-PART");
    }
}
