//! Partition layout: where each partition of a disk definition goes (1 MiB aligned), its GPT type
//! GUID, and the partition GUIDs, filesystem UUIDs and FAT volume ids derived from the image.

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{MIB, SECTOR};
use crate::definition::{Arch, DiskOutput, Filesystem, PartSize, Partition, PartitionType};

/// Entries in each GPT partition array (the UEFI minimum, what every tool writes).
pub const GPT_ENTRIES: u64 = 128;
/// Bytes of one GPT partition entry.
pub const GPT_ENTRY_SIZE: u64 = 128;
/// Sectors the partition array takes (16 KiB).
pub const GPT_ARRAY_SECTORS: u64 = GPT_ENTRIES * GPT_ENTRY_SIZE / SECTOR;
/// Longest GPT partition name, in UTF-16 code units.
pub const GPT_NAME_MAX: usize = 36;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error(
        "disk size {size} bytes is not a whole number of MiB (Azure requires it; try {mib}MiB)"
    )]
    DiskNotMib { size: u64, mib: u64 },
    #[error("partition `{name}`: size {size} bytes is not a whole number of MiB")]
    SizeNotMib { name: String, size: u64 },
    #[error("partition `{name}`: size is zero")]
    SizeZero { name: String },
    #[error(
        "partitions `{first}` and `{second}` both ask for the `rest` of the disk; only one may"
    )]
    TwoRest { first: String, second: String },
    #[error(
        "partition `{name}` does not fit: it would end at {end_mib} MiB, but the {disk_mib} MiB disk \
         has room up to {room_mib} MiB (the last MiB holds the backup GPT)"
    )]
    DoesNotFit {
        name: String,
        end_mib: u64,
        disk_mib: u64,
        room_mib: u64,
    },
    #[error(
        "partition `{name}` (rest) gets no space: the other partitions use {used_mib} MiB of the \
         {room_mib} MiB available"
    )]
    NoRoomForRest {
        name: String,
        used_mib: u64,
        room_mib: u64,
    },
    #[error("partition `{name}`: GPT label `{label}` is longer than {GPT_NAME_MAX} UTF-16 units")]
    LabelTooLong { name: String, label: String },
    #[error("partition `{name}`: type `{guid}` is not a GUID")]
    BadTypeGuid { name: String, guid: String },
    #[error("{count} partitions; a GPT holds at most {GPT_ENTRIES}")]
    TooMany { count: usize },
    #[error("the disk defines no partitions")]
    Empty,
    #[error("{what} `{value}` is not a UUID (like 0fc63daf-8483-4772-8e79-3d69d8477de4)")]
    BadUuid { what: String, value: String },
    #[error("partition `{name}`: FAT volume id `{value}` is not 8 hex digits as XXXX-XXXX")]
    BadVolumeId { name: String, value: String },
    #[error("{what} `{value}` is given twice; GUIDs on one disk must differ")]
    DuplicateUuid { what: String, value: String },
}

/// A UUID the definition gives, or the one derived for `purpose`.
fn given_or_derived(
    given: Option<&str>,
    what: impl Fn() -> String,
    seed: &[u8],
    purpose: &str,
) -> Result<Uuid, LayoutError> {
    match given {
        Some(v) => Uuid::parse_str(v).map_err(|_| LayoutError::BadUuid {
            what: what(),
            value: v.to_string(),
        }),
        None => Ok(derive_uuid(seed, purpose)),
    }
}

/// Parses a FAT volume id as blkid and fstab write it (`1A2B-3C4D`).
pub fn parse_volume_id(v: &str) -> Option<u32> {
    let (hi, lo) = v.split_once('-')?;
    if hi.len() != 4 || lo.len() != 4 {
        return None;
    }
    Some((u32::from_str_radix(hi, 16).ok()? << 16) | u32::from_str_radix(lo, 16).ok()?)
}

/// One partition, placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// GPT entry number, from 1, in definition order.
    pub number: u32,
    /// The definition's name for it.
    pub name: String,
    /// GPT partition name (PARTLABEL).
    pub label: String,
    pub type_guid: Uuid,
    /// PARTUUID.
    pub part_guid: Uuid,
    /// First byte on the disk (a multiple of 1 MiB).
    pub start: u64,
    /// Length in bytes (a multiple of 1 MiB).
    pub size: u64,
    pub filesystem: Option<Filesystem>,
    /// Filesystem label (the definition's, or the partition name).
    pub fs_label: String,
    /// The filesystem UUID (ext4), derived like the partition GUID.
    pub fs_uuid: Uuid,
    /// The FAT volume serial number (what `blkid` shows as UUID `XXXX-XXXX`).
    pub fat_volume_id: u32,
    pub mount: Option<String>,
    pub mount_options: Vec<String>,
}

impl Placed {
    pub fn first_lba(&self) -> u64 {
        self.start / SECTOR
    }
    /// Last sector, inclusive (as GPT stores it).
    pub fn last_lba(&self) -> u64 {
        (self.start + self.size) / SECTOR - 1
    }
    /// The FAT volume id as `blkid` and /etc/fstab write it.
    pub fn fat_uuid(&self) -> String {
        format!(
            "{:04X}-{:04X}",
            self.fat_volume_id >> 16,
            self.fat_volume_id & 0xffff
        )
    }
}

/// A whole disk, placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Virtual size in bytes (a multiple of 1 MiB).
    pub size: u64,
    pub disk_guid: Uuid,
    pub partitions: Vec<Placed>,
}

impl Layout {
    /// Sectors on the disk.
    pub fn sectors(&self) -> u64 {
        self.size / SECTOR
    }
    /// First sector partitions may use: after the MBR, primary header and array.
    pub fn first_usable_lba(&self) -> u64 {
        2 + GPT_ARRAY_SECTORS
    }
    /// Last sector partitions may use: before the backup array and header.
    pub fn last_usable_lba(&self) -> u64 {
        self.sectors() - 2 - GPT_ARRAY_SECTORS
    }
    /// The partition mounted at `mount`, if any.
    pub fn by_mount(&self, mount: &str) -> Option<&Placed> {
        self.partitions
            .iter()
            .find(|p| p.mount.as_deref() == Some(mount))
    }
}

/// The identity seed of an image: what its GUIDs and UUIDs derive from. Same name, version and
/// package set, same GUIDs; change any and they all change.
pub fn identity_seed(name: &str, version: &str, packages: &[String]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [name, version] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    let mut sorted: Vec<&String> = packages.iter().collect();
    sorted.sort();
    for p in sorted {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().into()
}

/// 16 bytes derived from the seed for one purpose (`disk`, `part/root`, `fs/root` …).
pub fn derive_bytes(seed: &[u8], purpose: &str) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"kiln disk identity v1\0");
    h.update((seed.len() as u64).to_le_bytes());
    h.update(seed);
    h.update(purpose.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b
}

/// A UUID derived from the seed. Laid out as RFC 9562 version 8 ("custom"): the bits are a hash,
/// not random, and v8 says so where v4 would claim randomness. Linux, systemd and blkid only
/// compare UUIDs, never interpret the version.
pub fn derive_uuid(seed: &[u8], purpose: &str) -> Uuid {
    let mut b = derive_bytes(seed, purpose);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    Uuid::from_bytes(b)
}

/// The GPT type GUID of a partition type on an architecture (the Discoverable Partitions
/// Specification's, so systemd-gpt-auto-generator finds root, /usr, /home … without fstab).
pub fn type_guid(t: &PartitionType, arch: Arch) -> Option<Uuid> {
    let s = match t {
        PartitionType::Esp => "c12a7328-f81f-11d2-ba4b-00a0c93ec93b",
        PartitionType::Xbootldr => "bc13c2ff-59e6-4262-a352-b275fd6f7172",
        PartitionType::BiosBoot => "21686148-6449-6e6f-744e-656564454649",
        PartitionType::Root => match arch {
            Arch::X86_64 => "4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
            Arch::Aarch64 => "b921b045-1df0-41c3-af44-4c6f280d3fae",
        },
        PartitionType::Usr => match arch {
            Arch::X86_64 => "8484680c-9521-48c6-9c11-b0720656f69e",
            Arch::Aarch64 => "b0e01050-ee5f-4390-949a-9101b17104e9",
        },
        PartitionType::Home => "933ac7e1-2eb4-4f13-b844-0e14e2aef915",
        PartitionType::Srv => "3b8f8425-20e0-4f3b-907f-1a25a76f98e8",
        PartitionType::Var => "4d21b016-b534-45c2-a9fb-5c16e091fd2d",
        PartitionType::Tmp => "7ec6f557-3bc5-4aca-b293-16ef5df639d1",
        PartitionType::Swap => "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f",
        PartitionType::Linux => "0fc63daf-8483-4772-8e79-3d69d8477de4",
        PartitionType::Guid(g) => g,
    };
    Uuid::parse_str(s).ok()
}

/// Places the partitions of `disk` on a disk of `disk.size` bytes for `arch`, with identifiers
/// derived from `seed` (see [`identity_seed`]).
pub fn plan(disk: &DiskOutput, arch: Arch, seed: &[u8]) -> Result<Layout, LayoutError> {
    let mut l = place(disk.size.bytes(), &disk.effective_partitions(), arch, seed)?;
    l.disk_guid = given_or_derived(
        disk.disk_guid.as_deref(),
        || "disk-guid".to_string(),
        seed,
        "disk",
    )?;
    // Given GUIDs can collide with each other or with derived ones; firmware and udev would
    // then pick either partition.
    let mut seen = std::collections::BTreeSet::new();
    for g in std::iter::once(l.disk_guid).chain(l.partitions.iter().map(|p| p.part_guid)) {
        if !seen.insert(g) {
            return Err(LayoutError::DuplicateUuid {
                what: "GUID".into(),
                value: g.hyphenated().to_string(),
            });
        }
    }
    Ok(l)
}

/// [`plan`] for an explicit size and partition list.
pub fn place(
    size: u64,
    parts: &[Partition],
    arch: Arch,
    seed: &[u8],
) -> Result<Layout, LayoutError> {
    if !size.is_multiple_of(MIB) || size == 0 {
        return Err(LayoutError::DiskNotMib {
            size,
            mib: size.div_ceil(MIB).max(1),
        });
    }
    if parts.is_empty() {
        return Err(LayoutError::Empty);
    }
    if parts.len() as u64 > GPT_ENTRIES {
        return Err(LayoutError::TooMany { count: parts.len() });
    }
    let sectors = size / SECTOR;
    // Partitions start at the first MiB boundary after the primary GPT and end on the last MiB
    // boundary before the backup GPT, so every partition is a whole number of MiB.
    let first = ((2 + GPT_ARRAY_SECTORS) * SECTOR).next_multiple_of(MIB);
    let room_end = (sectors.saturating_sub(1 + GPT_ARRAY_SECTORS) * SECTOR) / MIB * MIB;

    let mut rest: Option<&str> = None;
    let mut fixed_total = 0u64;
    for p in parts {
        match p.size {
            PartSize::Fixed(s) => {
                let s = s.bytes();
                if s == 0 {
                    return Err(LayoutError::SizeZero {
                        name: p.name.clone(),
                    });
                }
                if !s.is_multiple_of(MIB) {
                    return Err(LayoutError::SizeNotMib {
                        name: p.name.clone(),
                        size: s,
                    });
                }
                fixed_total = fixed_total.saturating_add(s);
            }
            PartSize::Rest => {
                if let Some(first) = rest {
                    return Err(LayoutError::TwoRest {
                        first: first.into(),
                        second: p.name.clone(),
                    });
                }
                rest = Some(&p.name);
            }
        }
    }
    let room = room_end.saturating_sub(first);
    let rest_size = match rest {
        Some(name) if fixed_total >= room => {
            return Err(LayoutError::NoRoomForRest {
                name: name.into(),
                used_mib: fixed_total / MIB,
                room_mib: room / MIB,
            });
        }
        Some(_) => room - fixed_total,
        None => 0,
    };

    let mut out = Vec::with_capacity(parts.len());
    let mut at = first;
    for (i, p) in parts.iter().enumerate() {
        let len = match p.size {
            PartSize::Fixed(s) => s.bytes(),
            PartSize::Rest => rest_size,
        };
        let end = at.saturating_add(len);
        if end > room_end {
            return Err(LayoutError::DoesNotFit {
                name: p.name.clone(),
                end_mib: end / MIB,
                disk_mib: size / MIB,
                room_mib: room_end / MIB,
            });
        }
        let label = p.label.clone().unwrap_or_else(|| p.name.clone());
        if label.encode_utf16().count() > GPT_NAME_MAX {
            return Err(LayoutError::LabelTooLong {
                name: p.name.clone(),
                label,
            });
        }
        let type_guid = type_guid(&p.part_type, arch).ok_or_else(|| LayoutError::BadTypeGuid {
            name: p.name.clone(),
            guid: p.part_type.to_string(),
        })?;
        // Keyed by the partition's name, not its position: inserting a partition does not
        // renumber the others' identities.
        let fat = derive_bytes(seed, &format!("fat/{}", p.name));
        let derived_fat = u32::from_le_bytes([fat[0], fat[1], fat[2], fat[3]]);
        let what = |k: &str| format!("partition `{}`: {k}", p.name);
        let part_guid = given_or_derived(
            p.part_uuid.as_deref(),
            || what("part-uuid"),
            seed,
            &format!("part/{}", p.name),
        )?;
        // A vfat filesystem's "UUID" is its volume id; ext4's is a UUID.
        let (fs_uuid, fat_volume_id) = match (p.filesystem, p.fs_uuid.as_deref()) {
            (Some(Filesystem::Vfat), Some(v)) => (
                derive_uuid(seed, &format!("fs/{}", p.name)),
                parse_volume_id(v).ok_or_else(|| LayoutError::BadVolumeId {
                    name: p.name.clone(),
                    value: v.to_string(),
                })?,
            ),
            (_, given) => (
                given_or_derived(given, || what("fs-uuid"), seed, &format!("fs/{}", p.name))?,
                derived_fat,
            ),
        };
        out.push(Placed {
            number: i as u32 + 1,
            name: p.name.clone(),
            label,
            type_guid,
            part_guid,
            start: at,
            size: len,
            filesystem: p.filesystem,
            fs_label: p.fs_label.clone().unwrap_or_else(|| p.name.clone()),
            fs_uuid,
            fat_volume_id,
            mount: p.mount.clone(),
            mount_options: p.mount_options.clone(),
        });
        at = end;
    }
    Ok(Layout {
        size,
        disk_guid: derive_uuid(seed, "disk"),
        partitions: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::Size;

    fn part(name: &str, t: PartitionType, size: PartSize) -> Partition {
        Partition {
            name: name.into(),
            label: None,
            part_type: t,
            size,
            filesystem: None,
            fs_label: None,
            mount: None,
            mount_options: Vec::new(),
            part_uuid: None,
            fs_uuid: None,
        }
    }

    fn mib(n: u64) -> PartSize {
        PartSize::Fixed(Size(n * MIB))
    }

    fn default_disk() -> DiskOutput {
        serde_saphyr::from_str("{}").unwrap()
    }

    #[test]
    fn given_identifiers_are_used_and_checked() {
        let mut d: DiskOutput = serde_saphyr::from_str(
            "disk-guid: 11111111-2222-4333-8444-555555555555\npartitions:\n  - {name: esp, type: esp, size: 200MiB, filesystem: vfat, mount: /boot/efi, fs-uuid: 1A2B-3C4D}\n  - {name: root, type: root, size: rest, filesystem: ext4, mount: /, part-uuid: 0fc63daf-8483-4772-8e79-3d69d8477de4, fs-uuid: 6e8b1c3a-0d43-4c55-9a3f-2b7f1c0e9d11}\n",
        )
        .unwrap();
        let l = plan(&d, Arch::X86_64, b"seed").unwrap();
        let derived = plan(&default_disk(), Arch::X86_64, b"seed").unwrap();
        assert_eq!(
            l.disk_guid.to_string(),
            "11111111-2222-4333-8444-555555555555"
        );
        assert_eq!(l.partitions[0].fat_uuid(), "1A2B-3C4D");
        // What is not given stays derived.
        assert_eq!(l.partitions[0].part_guid, derived.partitions[0].part_guid);
        assert_eq!(
            l.partitions[1].part_guid.to_string(),
            "0fc63daf-8483-4772-8e79-3d69d8477de4"
        );
        assert_eq!(
            l.partitions[1].fs_uuid.to_string(),
            "6e8b1c3a-0d43-4c55-9a3f-2b7f1c0e9d11"
        );
        d.partitions[0].fs_uuid = Some("1A2B3C4D".into());
        assert!(matches!(
            plan(&d, Arch::X86_64, b"seed"),
            Err(LayoutError::BadVolumeId { .. })
        ));
        d.partitions[0].fs_uuid = None;
        d.partitions[1].fs_uuid = Some("not-a-uuid".into());
        let e = plan(&d, Arch::X86_64, b"seed").unwrap_err().to_string();
        assert_eq!(
            e,
            "partition `root`: fs-uuid `not-a-uuid` is not a UUID (like 0fc63daf-8483-4772-8e79-3d69d8477de4)"
        );
        d.partitions[1].fs_uuid = None;
        d.partitions[0].part_uuid = Some("0FC63DAF-8483-4772-8E79-3D69D8477DE4".into());
        assert!(matches!(
            plan(&d, Arch::X86_64, b"seed"),
            Err(LayoutError::DuplicateUuid { .. })
        ));
    }

    #[test]
    fn azure_default_is_esp_then_root_filling_5gib() {
        let l = plan(&default_disk(), Arch::X86_64, b"seed").unwrap();
        assert_eq!(l.size, 5 << 30);
        let [esp, root] = &l.partitions[..] else {
            panic!("{l:?}")
        };
        assert_eq!((esp.start, esp.size), (MIB, 200 * MIB));
        assert_eq!(
            esp.type_guid.to_string(),
            "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
        );
        assert_eq!(esp.mount.as_deref(), Some("/boot/efi"));
        assert_eq!(root.start, 201 * MIB);
        // Up to the last MiB, which holds the backup GPT.
        assert_eq!(root.start + root.size, (5 << 30) - MIB);
        assert_eq!(
            root.type_guid.to_string(),
            "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"
        );
        assert!(root.last_lba() <= l.last_usable_lba());
        assert_eq!(l.first_usable_lba(), 34);
        assert_eq!(l.last_usable_lba(), (5 << 30) / 512 - 34);
        let arm = plan(&default_disk(), Arch::Aarch64, b"seed").unwrap();
        assert_eq!(
            arm.partitions[1].type_guid.to_string(),
            "b921b045-1df0-41c3-af44-4c6f280d3fae"
        );
    }

    #[test]
    fn identifiers_follow_the_seed_and_are_v8() {
        let a = plan(&default_disk(), Arch::X86_64, b"one").unwrap();
        let b = plan(&default_disk(), Arch::X86_64, b"one").unwrap();
        let c = plan(&default_disk(), Arch::X86_64, b"two").unwrap();
        assert_eq!(a, b);
        assert_ne!(a.disk_guid, c.disk_guid);
        assert_ne!(a.partitions[0].part_guid, c.partitions[0].part_guid);
        let ids = [
            a.disk_guid,
            a.partitions[0].part_guid,
            a.partitions[1].part_guid,
            a.partitions[0].fs_uuid,
            a.partitions[1].fs_uuid,
        ];
        for (i, u) in ids.iter().enumerate() {
            assert_eq!(u.get_version_num(), 8, "{u}");
            assert_eq!(u.get_variant(), uuid::Variant::RFC4122);
            assert!(ids[i + 1..].iter().all(|o| o != u), "{u} repeats");
        }
        assert_ne!(a.partitions[0].fat_volume_id, c.partitions[0].fat_volume_id);
        assert_eq!(a.partitions[0].fat_uuid().len(), 9);
    }

    #[test]
    fn every_named_type_has_its_dps_guid() {
        for name in PartitionType::NAMES {
            let t: PartitionType = name.parse().unwrap();
            assert!(type_guid(&t, Arch::X86_64).is_some(), "{name}");
        }
        let t = PartitionType::Guid("0FC63DAF-8483-4772-8E79-3D69D8477DE4".into());
        assert_eq!(
            type_guid(&t, Arch::X86_64).unwrap().to_string(),
            "0fc63daf-8483-4772-8e79-3d69d8477de4"
        );
    }

    #[test]
    fn rest_in_the_middle_and_fixed_after_it() {
        let parts = [
            part("bios", PartitionType::BiosBoot, mib(1)),
            part("root", PartitionType::Root, PartSize::Rest),
            part("data", PartitionType::Linux, mib(100)),
        ];
        let l = place(1024 * MIB, &parts, Arch::X86_64, b"s").unwrap();
        let p = &l.partitions;
        assert_eq!((p[0].start, p[0].size), (MIB, MIB));
        assert_eq!(p[1].start, 2 * MIB);
        assert_eq!(p[2].start, p[1].start + p[1].size);
        assert_eq!(p[2].start + p[2].size, 1023 * MIB);
        assert_eq!(p.iter().map(|p| p.number).collect::<Vec<_>>(), [1, 2, 3]);
    }

    #[test]
    fn errors_name_the_partition() {
        let e = place(
            1024 * MIB,
            &[
                part("a", PartitionType::Root, PartSize::Rest),
                part("b", PartitionType::Linux, PartSize::Rest),
            ],
            Arch::X86_64,
            b"",
        )
        .unwrap_err();
        assert_eq!(
            e,
            LayoutError::TwoRest {
                first: "a".into(),
                second: "b".into()
            }
        );
        let e = place(
            1024 * MIB,
            &[part(
                "odd",
                PartitionType::Linux,
                PartSize::Fixed(Size(MIB + 512)),
            )],
            Arch::X86_64,
            b"",
        )
        .unwrap_err();
        assert!(e.to_string().contains("`odd`"), "{e}");
        assert!(e.to_string().contains("whole number of MiB"), "{e}");
        let e = place(
            100 * MIB,
            &[
                part("esp", PartitionType::Esp, mib(50)),
                part("big", PartitionType::Linux, mib(49)),
            ],
            Arch::X86_64,
            b"",
        )
        .unwrap_err();
        assert!(
            matches!(&e, LayoutError::DoesNotFit { name, .. } if name == "big"),
            "{e}"
        );
        // Exactly full fits.
        place(
            100 * MIB,
            &[
                part("esp", PartitionType::Esp, mib(50)),
                part("big", PartitionType::Linux, mib(48)),
            ],
            Arch::X86_64,
            b"",
        )
        .unwrap();
        let e = place(
            100 * MIB,
            &[
                part("esp", PartitionType::Esp, mib(98)),
                part("root", PartitionType::Root, PartSize::Rest),
            ],
            Arch::X86_64,
            b"",
        )
        .unwrap_err();
        assert!(
            matches!(&e, LayoutError::NoRoomForRest { name, .. } if name == "root"),
            "{e}"
        );
        let e = place(
            100 * MIB + 1,
            &[part("x", PartitionType::Linux, mib(1))],
            Arch::X86_64,
            b"",
        )
        .unwrap_err();
        assert!(e.to_string().contains("101MiB"), "{e}");
        let mut long = part("long", PartitionType::Linux, mib(1));
        long.label = Some("x".repeat(37));
        let e = place(100 * MIB, &[long], Arch::X86_64, b"").unwrap_err();
        assert!(matches!(e, LayoutError::LabelTooLong { .. }), "{e}");
    }
}
