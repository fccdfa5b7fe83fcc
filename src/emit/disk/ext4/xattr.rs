//! Extended attributes: in the inode's spare space first, the rest in one external block with
//! its header, hashes and checksum. POSIX ACLs are converted to ext4's compact on-disk form.

use std::collections::BTreeMap;

use super::Ext4Error;
use super::crc;
use super::inode::INLINE_XATTR_OFFSET;
use super::layout::{BLOCK, INODE_SIZE};

pub const MAGIC: u32 = 0xEA02_0000;
/// Most inodes one xattr block may be shared by (the kernel's limit).
pub const MAX_REFCOUNT: u32 = 1024;
const BLOCK_HEADER: usize = 32;
const ENTRY_HEADER: usize = 16;

/// Name prefixes and their on-disk indexes; the ACL names are whole names.
const PREFIXES: &[(&str, u8)] = &[
    ("system.posix_acl_access", 2),
    ("system.posix_acl_default", 3),
    ("user.", 1),
    ("trusted.", 4),
    ("security.", 6),
    ("system.", 7),
];

/// The prefix and full-name table, for the reader.
pub fn prefix(index: u8) -> Option<&'static str> {
    PREFIXES.iter().find(|p| p.1 == index).map(|p| p.0)
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Attr {
    index: u8,
    name: Vec<u8>,
    value: Vec<u8>,
}

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

fn entry_len(a: &Attr) -> usize {
    pad4(ENTRY_HEADER + a.name.len())
}

/// The entry hash, over the name and the value's little-endian words (zero-padded).
pub fn entry_hash(name: &[u8], value: &[u8]) -> u32 {
    let mut h = 0u32;
    for &c in name {
        h = (h << 5) ^ (h >> 27) ^ c as u32;
    }
    for w in value.chunks(4) {
        let mut word = [0u8; 4];
        word[..w.len()].copy_from_slice(w);
        h = (h << 16) ^ (h >> 16) ^ u32::from_le_bytes(word);
    }
    h
}

/// The VFS form of an ACL (`version 2`, 8-byte entries) in ext4's form (`version 1`, 4-byte
/// entries for the owner, group, mask and other).
fn acl_to_disk(path: &str, name: &str, v: &[u8]) -> Result<Vec<u8>, Ext4Error> {
    let bad = || Ext4Error::Xattr {
        path: path.into(),
        name: name.into(),
        message: "not a POSIX ACL in the kernel's xattr format (version 2)".into(),
    };
    if v.len() < 4 || !(v.len() - 4).is_multiple_of(8) || v[..4] != 2u32.to_le_bytes() {
        return Err(bad());
    }
    let mut out = 1u32.to_le_bytes().to_vec();
    for e in v[4..].chunks(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        out.extend_from_slice(&e[..4]);
        match tag {
            0x02 | 0x08 => out.extend_from_slice(&e[4..8]),
            0x01 | 0x04 | 0x10 | 0x20 => {}
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

/// The reverse of [`acl_to_disk`], for the reader.
pub fn acl_from_disk(v: &[u8]) -> Option<Vec<u8>> {
    if v.len() < 4 || v[..4] != 1u32.to_le_bytes() {
        return None;
    }
    let mut out = 2u32.to_le_bytes().to_vec();
    let mut at = 4;
    while at + 4 <= v.len() {
        let tag = u16::from_le_bytes([v[at], v[at + 1]]);
        out.extend_from_slice(&v[at..at + 4]);
        if matches!(tag, 0x02 | 0x08) {
            out.extend_from_slice(v.get(at + 4..at + 8)?);
            at += 8;
        } else {
            out.extend_from_slice(&u32::MAX.to_le_bytes());
            at += 4;
        }
    }
    Some(out)
}

fn split(path: &str, xattrs: &BTreeMap<String, Vec<u8>>) -> Result<Vec<Attr>, Ext4Error> {
    let mut out = Vec::new();
    for (full, value) in xattrs {
        let err = |message: &str| Ext4Error::Xattr {
            path: path.into(),
            name: full.clone(),
            message: message.into(),
        };
        let (p, index) = PREFIXES
            .iter()
            .find(|(p, i)| {
                if *i == 2 || *i == 3 {
                    full == p
                } else {
                    full.starts_with(p)
                }
            })
            .ok_or_else(|| err("no ext4 name space (user., trusted., security., system.)"))?;
        let name = full.as_bytes()[p.len()..].to_vec();
        if name.len() > 255 {
            return Err(err("name longer than 255 bytes"));
        }
        let value = if *index == 2 || *index == 3 {
            acl_to_disk(path, full, value)?
        } else {
            value.clone()
        };
        out.push(Attr {
            index: *index,
            name,
            value,
        });
    }
    // The order the kernel keeps in blocks and searches by.
    out.sort_by(|a, b| (a.index, a.name.len(), &a.name).cmp(&(b.index, b.name.len(), &b.name)));
    Ok(out)
}

/// Writes entries at `entries_at` and their values downward from `end` within `area`; value
/// offsets count from `base`. Returns the entries' hashes.
fn lay_out(
    area: &mut [u8],
    base: usize,
    entries_at: usize,
    end: usize,
    attrs: &[&Attr],
) -> Vec<u32> {
    let mut at = entries_at;
    let mut vend = end;
    let mut hashes = Vec::new();
    for a in attrs {
        let offs = if a.value.is_empty() {
            0
        } else {
            vend -= pad4(a.value.len());
            area[vend..vend + a.value.len()].copy_from_slice(&a.value);
            vend - base
        };
        let h = entry_hash(&a.name, &a.value);
        area[at] = a.name.len() as u8;
        area[at + 1] = a.index;
        area[at + 2..at + 4].copy_from_slice(&(offs as u16).to_le_bytes());
        area[at + 8..at + 12].copy_from_slice(&(a.value.len() as u32).to_le_bytes());
        area[at + 12..at + 16].copy_from_slice(&h.to_le_bytes());
        area[at + 16..at + 16 + a.name.len()].copy_from_slice(&a.name);
        at += entry_len(a);
        hashes.push(h);
    }
    hashes
}

/// An inode's xattrs: the inline area (for the inode's spare space, empty if none) and the
/// external block's content (checksum left zero: it depends on where the block goes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Encoded {
    pub inline: Vec<u8>,
    pub block: Option<Vec<u8>>,
}

pub fn encode(path: &str, xattrs: &BTreeMap<String, Vec<u8>>) -> Result<Encoded, Ext4Error> {
    if xattrs.is_empty() {
        return Ok(Encoded::default());
    }
    let attrs = split(path, xattrs)?;
    // After the 4-byte magic; the entry list ends with 4 zero bytes.
    let space = INODE_SIZE - INLINE_XATTR_OFFSET - 4;
    let (mut inline, mut external) = (Vec::new(), Vec::new());
    let mut used = 4;
    for a in &attrs {
        let need = entry_len(a) + pad4(a.value.len());
        if external.is_empty() && used + need <= space {
            inline.push(a);
            used += need;
        } else {
            external.push(a);
        }
    }
    let mut out = Encoded::default();
    if !inline.is_empty() {
        let mut area = vec![0u8; INODE_SIZE - INLINE_XATTR_OFFSET];
        area[..4].copy_from_slice(&MAGIC.to_le_bytes());
        let end = area.len();
        lay_out(&mut area, 4, 4, end, &inline);
        out.inline = area;
    }
    if !external.is_empty() {
        let need: usize = external
            .iter()
            .map(|a| entry_len(a) + pad4(a.value.len()))
            .sum::<usize>()
            + BLOCK_HEADER
            + 4;
        if need > BLOCK {
            return Err(Ext4Error::Xattr {
                path: path.into(),
                name: external
                    .iter()
                    .map(|a| {
                        prefix(a.index).unwrap_or("?").to_string()
                            + &String::from_utf8_lossy(&a.name)
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                message: format!(
                    "{need} bytes of extended attributes do not fit the inode and one {BLOCK}-byte block"
                ),
            });
        }
        let mut b = vec![0u8; BLOCK];
        b[..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&1u32.to_le_bytes()); // refcount, set when placed
        b[8..12].copy_from_slice(&1u32.to_le_bytes()); // blocks
        let hashes = lay_out(&mut b, 0, BLOCK_HEADER, BLOCK, &external);
        let mut h = 0u32;
        for e in hashes {
            h = (h << 16) ^ (h >> 16) ^ e;
        }
        b[12..16].copy_from_slice(&h.to_le_bytes());
        out.block = Some(b);
    }
    Ok(out)
}

/// Fills in an xattr block's reference count and its checksum for block number `at`.
pub fn seal_block(b: &mut [u8], refcount: u32, at: u64, fs_seed: u32) {
    b[4..8].copy_from_slice(&refcount.to_le_bytes());
    b[16..20].fill(0);
    let c = crc::update(crc::update(fs_seed, &at.to_le_bytes()), b);
    b[16..20].copy_from_slice(&c.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(list: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect()
    }

    #[test]
    fn small_attributes_stay_in_the_inode() {
        let e = encode(
            "/x",
            &attrs(&[("security.selinux", b"system_u:object_r:etc_t:s0\0")]),
        )
        .unwrap();
        assert_eq!(e.inline.len(), 96);
        assert!(e.block.is_none());
        assert_eq!(e.inline[..4], MAGIC.to_le_bytes());
        assert_eq!(e.inline[4], 7); // "selinux"
        assert_eq!(e.inline[5], 6); // security.
    }

    #[test]
    fn capability_and_label_spill_into_a_block() {
        let cap = [1u8; 20];
        let e = encode(
            "/usr/bin/ping",
            &attrs(&[
                ("security.capability", &cap),
                ("security.selinux", b"system_u:object_r:ping_exec_t:s0\0"),
            ]),
        )
        .unwrap();
        let b = e.block.expect("spills");
        assert!(!e.inline.is_empty());
        // The block holds the longer name, "selinux" (7) sorts before "capability" (10).
        assert_eq!(b[BLOCK_HEADER], 10);
        let h = u32::from_le_bytes(b[BLOCK_HEADER + 12..BLOCK_HEADER + 16].try_into().unwrap());
        assert_eq!(h, entry_hash(b"capability", &cap));
        assert_eq!(u32::from_le_bytes(b[12..16].try_into().unwrap()), h);
    }

    #[test]
    fn oversized_values_are_refused() {
        let big = vec![7u8; 5000];
        assert!(matches!(
            encode("/f", &attrs(&[("user.big", &big)])),
            Err(Ext4Error::Xattr { .. })
        ));
        assert!(encode("/f", &attrs(&[("nonsense", b"1")])).is_err());
    }

    #[test]
    fn acls_round_trip() {
        let mut vfs = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (1u16, 6u16, u32::MAX),
            (2, 4, 1000),
            (4, 4, u32::MAX),
            (0x10, 4, u32::MAX),
            (0x20, 0, u32::MAX),
        ] {
            vfs.extend_from_slice(&tag.to_le_bytes());
            vfs.extend_from_slice(&perm.to_le_bytes());
            vfs.extend_from_slice(&id.to_le_bytes());
        }
        let disk = acl_to_disk("/", "system.posix_acl_access", &vfs).unwrap();
        assert_eq!(disk.len(), 4 + 4 * 4 + 8);
        assert_eq!(acl_from_disk(&disk).unwrap(), vfs);
    }

    #[test]
    fn block_checksum_depends_on_its_place() {
        let e = encode("/f", &attrs(&[("user.a", &[1u8; 200])])).unwrap();
        let mut a = e.block.clone().unwrap();
        let mut b = e.block.unwrap();
        seal_block(&mut a, 1, 100, 5);
        seal_block(&mut b, 1, 101, 5);
        assert_ne!(a[16..20], b[16..20]);
    }
}
