//! `kiln inspect IMAGE`: what a built disk holds, read in-process: container, partition table,
//! file systems (labels, UUIDs), kernel command line and package count.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::ExitCode;

use super::{Ui, exit};
use crate::emit::disk::ext4::read::Ext4Reader;

/// GPT partition types kiln names (Discoverable Partitions Specification).
const TYPES: [(&str, &str); 10] = [
    ("c12a7328-f81f-11d2-ba4b-00a0c93ec93b", "EFI system"),
    ("bc13c2ff-59e6-4262-a352-b275fd6f7172", "XBOOTLDR /boot"),
    ("21686148-6449-6e6f-744e-656564454649", "BIOS boot"),
    ("4f68bce3-e8cd-4db1-96e7-fbcaf984b709", "root (x86-64)"),
    ("b921b045-1df0-41c3-af44-4c6f280d3fae", "root (arm64)"),
    ("933ac7e1-2eb4-4f13-b844-0e14e2aef915", "home"),
    ("4d21b016-b534-45c2-a9fb-5c16e091fd2d", "var"),
    ("0657fd6d-a4ab-43c4-84e5-0933c84b4f4f", "swap"),
    ("0fc63daf-8483-4772-8e79-3d69d8477de4", "Linux data"),
    ("3b8f8425-20e0-4f3b-907f-1a25a76f98e8", "srv"),
];

/// A GUID as GPT stores it (the first three fields little-endian), in text.
fn guid(b: &[u8]) -> String {
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{}-{}",
        b[3],
        b[2],
        b[1],
        b[0],
        b[5],
        b[4],
        b[7],
        b[6],
        hex::encode(&b[8..10]),
        hex::encode(&b[10..16])
    )
}

fn read_at(f: &File, at: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, at)?;
    Ok(buf)
}

fn mib(bytes: u64) -> String {
    if bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

struct Part {
    number: usize,
    type_guid: String,
    part_guid: String,
    name: String,
    start: u64,
    size: u64,
}

/// Everything kiln reads from the image, as lines; an error says what could not be read.
pub fn describe(path: &Path) -> Result<Vec<String>, String> {
    let f = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    let io = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut lines = Vec::new();
    let head = read_at(&f, 0, 8).map_err(io)?;
    if head.starts_with(b"QFI\xfb") {
        return Err(format!(
            "{}: a qcow2 image; kiln inspect reads raw and VHD disks (convert with `qemu-img convert -O raw`)",
            path.display()
        ));
    }
    // A fixed VHD is the raw disk and a 512-byte footer.
    let size = if len >= 512 && read_at(&f, len - 512, 8).map_err(io)? == b"conectix" {
        let footer = read_at(&f, len - 512, 512).map_err(io)?;
        let current = u64::from_be_bytes(footer[48..56].try_into().expect("8 bytes"));
        let kind = u32::from_be_bytes(footer[60..64].try_into().expect("4 bytes"));
        lines.push(format!(
            "container: VHD ({}), virtual size {} ({current} bytes)",
            if kind == 2 { "fixed" } else { "not fixed" },
            mib(current)
        ));
        current
    } else {
        lines.push(format!("container: raw, {} ({len} bytes)", mib(len)));
        len
    };
    let hdr = read_at(&f, 512, 92).map_err(io)?;
    if &hdr[0..8] != b"EFI PART" {
        return Err(format!("{}: no GPT partition table", path.display()));
    }
    let entries_lba = u64::from_le_bytes(hdr[72..80].try_into().expect("8 bytes"));
    let count = u32::from_le_bytes(hdr[80..84].try_into().expect("4 bytes")) as usize;
    let esize = u32::from_le_bytes(hdr[84..88].try_into().expect("4 bytes")) as usize;
    if esize < 128 || count > 1024 {
        return Err(format!("{}: a GPT header kiln cannot read", path.display()));
    }
    lines.push(format!(
        "partition table: GPT, disk GUID {}",
        guid(&hdr[56..72])
    ));
    let table = read_at(&f, entries_lba * 512, count * esize).map_err(io)?;
    let mut parts = Vec::new();
    for (i, e) in table.chunks(esize).enumerate() {
        if e[..16].iter().all(|&b| b == 0) {
            continue;
        }
        let first = u64::from_le_bytes(e[32..40].try_into().expect("8 bytes"));
        let last = u64::from_le_bytes(e[40..48].try_into().expect("8 bytes"));
        let name: Vec<u16> = e[56..128]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&c| c != 0)
            .collect();
        parts.push(Part {
            number: i + 1,
            type_guid: guid(&e[0..16]),
            part_guid: guid(&e[16..32]),
            name: String::from_utf16_lossy(&name),
            start: first * 512,
            size: (last + 1 - first) * 512,
        });
    }
    let mut root = None;
    for p in &parts {
        let kind = TYPES
            .iter()
            .find(|(g, _)| *g == p.type_guid)
            .map_or(p.type_guid.as_str(), |(_, n)| n);
        lines.push(format!(
            "  {} {:<8} {:<16} at {} size {:<8} PARTUUID {}",
            p.number,
            p.name,
            kind,
            mib(p.start),
            mib(p.size),
            p.part_guid
        ));
        if p.start + p.size > size {
            lines.push("    (ends past the disk)".into());
            continue;
        }
        let boot = read_at(&f, p.start, 512).map_err(io)?;
        if &boot[82..90] == b"FAT32   " {
            let id = u32::from_le_bytes(boot[67..71].try_into().expect("4 bytes"));
            lines.push(format!(
                "    vfat (FAT32), label {:?}, UUID {:04X}-{:04X}",
                String::from_utf8_lossy(&boot[71..82]).trim_end(),
                id >> 16,
                id & 0xffff
            ));
        } else if let Ok(r) = Ext4Reader::open(f.try_clone().map_err(io)?, p.start) {
            let info = r.info();
            lines.push(format!(
                "    ext4, label {:?}, UUID {}",
                info.label,
                uuid::Uuid::from_bytes(info.uuid).hyphenated()
            ));
            if r.stat("/etc/os-release").is_ok() || r.stat("/usr/lib/os-release").is_ok() {
                root = Some(r);
            }
        }
    }
    if let Some(r) = root {
        match r.read_file("/etc/kernel/cmdline") {
            Ok(c) => lines.push(format!(
                "kernel command line: {}",
                String::from_utf8_lossy(&c).trim()
            )),
            Err(_) => lines.push("kernel command line: (no /etc/kernel/cmdline)".into()),
        }
        lines.push(format!("packages: {}", package_count(&r)?));
    }
    Ok(lines)
}

/// The rpm database's package count, read from a copy of rpmdb.sqlite.
fn package_count(r: &Ext4Reader) -> Result<String, String> {
    let Ok(db) = r.read_file("/usr/lib/sysimage/rpm/rpmdb.sqlite") else {
        return Ok("no rpm database".into());
    };
    // sqlite reads files: the copy lives in the temporary directory while it is queried.
    struct Gone(std::path::PathBuf);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let tmp = Gone(
        std::env::temp_dir().join(format!("kiln-inspect-{}-rpmdb.sqlite", std::process::id())),
    );
    std::fs::write(&tmp.0, db).map_err(|e| format!("{}: {e}", tmp.0.display()))?;
    let n: i64 =
        rusqlite::Connection::open_with_flags(&tmp.0, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|conn| conn.query_row("SELECT count(*) FROM Packages", [], |row| row.get(0)))
            .map_err(|e| format!("the image's rpm database: {e}"))?;
    Ok(n.to_string())
}

pub fn inspect(ui: &Ui, image: &Path) -> ExitCode {
    match describe(image) {
        Ok(lines) => {
            println!("{}", image.display());
            for l in lines {
                println!("{l}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            ui.error(e);
            ExitCode::from(exit::FAILURE)
        }
    }
}
