//! The disk container pieces through the library (kiln::emit::disk): GPT, FAT32 ESP, raw, fixed
//! VHD and qcow2, checked by the standard tools (sgdisk, sfdisk, fsck.fat, mtools, qemu-img).

mod common;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{run, temp_dir, text};
use kiln::definition::{Arch, DiskOutput};
use kiln::emit::disk::ext4::read::{Ext4Reader, FileKind};
use kiln::emit::disk::layout::{self, Layout, LayoutError};
use kiln::emit::disk::{MIB, qcow2, sparse, vhd, write_disk, write_partitions};
use kiln::tree::{Entry, Kind, Tree};

const EPOCH: i64 = 1_700_000_000;
const LONG_ENTRY: &str =
    "/boot/efi/loader/entries/azurelinux-6.18.0-1.azl4.x86_64-a-rather-long-boot-entry-name.conf";

fn file_entry(mtime: i64) -> Entry {
    Entry {
        kind: Kind::File {
            size: 0,
            link: None,
        },
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime,
        xattrs: Default::default(),
    }
}

/// Bytes that do not compress to zeros: a small LCG, so the EFI binary spans many clusters.
fn pseudo_random(len: usize, mut x: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

/// A staging tree with an ESP's worth of files under /boot/efi, and something outside it.
fn esp_tree(dir: &Path) -> Tree {
    let mut t = Tree::create(&dir.join("tree")).unwrap();
    let m = 1_690_000_000;
    t.mkdir_p("/boot/efi/EFI/BOOT", 0o700, m).unwrap();
    t.mkdir_p("/boot/efi/EFI/azurelinux", 0o700, m + 10)
        .unwrap();
    t.mkdir_p("/boot/efi/loader/entries", 0o700, m + 20)
        .unwrap();
    t.mkdir_p("/etc", 0o755, m).unwrap();
    t.write_file(
        "/boot/efi/EFI/BOOT/BOOTX64.EFI",
        &mut &pseudo_random(900 * 1024, 1)[..],
        file_entry(m + 2),
    )
    .unwrap();
    t.write_file(
        "/boot/efi/EFI/azurelinux/grubx64.efi",
        &mut &pseudo_random(70 * 1024, 2)[..],
        file_entry(m + 4),
    )
    .unwrap();
    t.put_text(
        "/boot/efi/EFI/azurelinux/grub.cfg",
        "search --no-floppy --fs-uuid --set=dev 1234\nconfigfile ($dev)/boot/grub2/grub.cfg\n",
        file_entry(m + 6),
    )
    .unwrap();
    t.put_text(
        LONG_ENTRY,
        "title Azure Linux\nlinux /vmlinuz-6.18.0\noptions root=PARTUUID=x console=ttyS0\n",
        file_entry(m + 8),
    )
    .unwrap();
    t.put_text("/boot/efi/loader/loader.conf", "timeout 0\n", file_entry(m))
        .unwrap();
    t.put_text("/boot/efi/empty", "", file_entry(m)).unwrap();
    t.put_text("/etc/hostname", "not on the esp\n", file_entry(m))
        .unwrap();
    t
}

fn disk(yaml: &str) -> DiskOutput {
    serde_saphyr::from_str(yaml).unwrap()
}

struct Built {
    layout: Layout,
    raw: PathBuf,
    vhd: PathBuf,
    qcow2: PathBuf,
}

fn create(path: &Path) -> File {
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap()
}

/// Writes the raw disk (GPT, ESP, and a stand-in for the root file system's first bytes), then
/// the VHD and qcow2 from it.
fn build(out: &Path, def: &DiskOutput, tree: &Tree) -> Built {
    std::fs::create_dir_all(out).unwrap();
    let seed = layout::identity_seed("azure-vm", "4.0.20261130", &["kernel-6.18".into()]);
    let l = layout::plan(def, Arch::X86_64, &seed).unwrap();
    let raw = out.join("disk.raw");
    let f = create(&raw);
    write_partitions(&f, &l, tree, EPOCH).unwrap();
    if let Some(root) = l.by_mount("/") {
        // Until the ext4 writer lands: a recognisable MiB at the root partition's start.
        f.write_all_at(&pseudo_random(MIB as usize, 3), root.start)
            .unwrap();
    }
    let vhd_path = out.join("disk.vhd");
    let id = layout::derive_bytes(&seed, "vhd");
    vhd::write_vhd(&f, &create(&vhd_path), l.size, id, EPOCH).unwrap();
    let q = out.join("disk.qcow2");
    qcow2::write_qcow2(&f, &create(&q), l.size).unwrap();
    Built {
        layout: l,
        raw,
        vhd: vhd_path,
        qcow2: q,
    }
}

fn sgdisk_verify(img: &Path) {
    let out = run(Command::new("sgdisk").arg("-v").arg(img));
    let s = text(&out.stdout);
    assert!(s.contains("No problems found"), "sgdisk -v:\n{s}");
}

/// The partitions as sfdisk reads them.
fn sfdisk(img: &Path) -> serde_json::Value {
    let out = run(Command::new("sfdisk").arg("--json").arg(img));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["partitiontable"].clone()
}

fn check_table(img: &Path, l: &Layout) {
    sgdisk_verify(img);
    let t = sfdisk(img);
    assert_eq!(t["label"], "gpt");
    assert_eq!(
        t["id"].as_str().unwrap().to_lowercase(),
        l.disk_guid.to_string()
    );
    assert_eq!(t["firstlba"], 34);
    let parts = t["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), l.partitions.len());
    for (got, want) in parts.iter().zip(&l.partitions) {
        assert_eq!(got["start"], want.start / 512, "{got}");
        assert_eq!(got["size"], want.size / 512, "{got}");
        assert_eq!(
            got["type"].as_str().unwrap().to_lowercase(),
            want.type_guid.to_string()
        );
        assert_eq!(
            got["uuid"].as_str().unwrap().to_lowercase(),
            want.part_guid.to_string()
        );
        assert_eq!(got["name"], want.label.as_str());
    }
}

fn fat_clean(img: &Path, start: u64, size: u64, scratch: &Path) {
    let all = common::fsck_fat_at(img, start, size, scratch);
    assert!(all.contains("2 FATs, 32 bit entries"), "{all}");
    for bad in [
        "differ",
        "Free cluster summary wrong",
        "Dirty bit",
        "has no",
        "Bad",
    ] {
        assert!(!all.contains(bad), "fsck.fat -n reports `{bad}`:\n{all}");
    }
}

fn mtools(img: &Path, start: u64) -> String {
    format!("{}@@{start}", img.display())
}

#[test]
fn default_azure_disk_in_every_container() {
    let dir = temp_dir("disk-default");
    let tree = esp_tree(&dir);
    let b = build(&dir.join("out"), &disk("{}"), &tree);
    let l = &b.layout;
    assert_eq!(l.size, 5 << 30);

    // The partition table, read from the raw disk.
    check_table(&b.raw, l);
    let out = run(Command::new("sgdisk").arg("-p").arg(&b.raw));
    let p = text(&out.stdout);
    // gdisk's codes: EF00 EFI system partition, 8304 Linux x86-64 root (/).
    assert!(p.contains("200.0 MiB   EF00  esp"), "{p}");
    assert!(p.contains("8304  root"), "{p}");
    assert!(
        p.contains("Partitions will be aligned on 2048-sector boundaries"),
        "{p}"
    );

    // Raw: sparse.
    for f in [&b.raw, &b.vhd, &b.qcow2] {
        let alloc = sparse::allocated(&File::open(f).unwrap()).unwrap();
        assert!(alloc < 64 * MIB, "{} occupies {alloc} bytes", f.display());
    }

    // VHD: qemu's reading of the footer, the footer itself, the size rule, the contents.
    let out = run(Command::new("qemu-img")
        .args(["info", "-f", "vpc", "--output", "json"])
        .arg(&b.vhd));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["virtual-size"], 5u64 << 30, "{info}");
    let len = std::fs::metadata(&b.vhd).unwrap().len();
    assert_eq!(len, (5 << 30) + 512);
    assert_eq!((len - 512) % MIB, 0);
    let mut footer = [0u8; 512];
    File::open(&b.vhd)
        .unwrap()
        .read_exact_at(&mut footer, len - 512)
        .unwrap();
    assert_eq!(&footer[..8], b"conectix");
    assert_eq!(&footer[60..64], &2u32.to_be_bytes(), "fixed disk");
    assert_eq!(&footer[48..56], &(5u64 << 30).to_be_bytes());
    let sum: u32 = footer
        .iter()
        .enumerate()
        .filter(|(i, _)| !(64..68).contains(i))
        .map(|(_, &b)| u32::from(b))
        .sum();
    assert_eq!(
        u32::from_be_bytes(footer[64..68].try_into().unwrap()),
        !sum,
        "footer checksum"
    );
    let out = run(Command::new("qemu-img")
        .args(["compare", "-f", "vpc", "-F", "raw"])
        .arg(&b.vhd)
        .arg(&b.raw));
    assert!(text(&out.stdout).contains("Images are identical"));

    // qcow2.
    run(Command::new("qemu-img")
        .args(["check", "-f", "qcow2"])
        .arg(&b.qcow2));
    let out = run(Command::new("qemu-img")
        .args(["info", "-f", "qcow2", "--output", "json"])
        .arg(&b.qcow2));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["virtual-size"], 5u64 << 30, "{info}");
    let out = run(Command::new("qemu-img")
        .args(["compare", "-f", "qcow2", "-F", "raw"])
        .arg(&b.qcow2)
        .arg(&b.raw));
    assert!(text(&out.stdout).contains("Images are identical"));

    // The ESP inside the raw disk.
    let esp = &l.partitions[0];
    fat_clean(&b.raw, esp.start, esp.size, &dir);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `write_disk`, what the backend and the VHD benchmark call: the ESP and the ext4 root both
/// written, each with its part of the tree, the ESP's mount point an empty directory in the root.
#[test]
fn write_disk_fills_the_esp_and_the_ext4_root() {
    let dir = temp_dir("disk-whole");
    let tree = esp_tree(&dir);
    let seed = layout::identity_seed("azure-vm", "1", &[]);
    let l = layout::plan(&disk("size: 512MiB"), Arch::X86_64, &seed).unwrap();
    let raw = dir.join("disk.raw");
    write_disk(&create(&raw), &l, &tree, &seed, EPOCH).unwrap();
    check_table(&raw, &l);
    let (esp, root) = (&l.partitions[0], &l.partitions[1]);
    fat_clean(&raw, esp.start, esp.size, &dir);
    common::e2fsck_at(&raw, root.start);
    let r = Ext4Reader::open(File::open(&raw).unwrap(), root.start).unwrap();
    assert_eq!(r.read_file("/etc/hostname").unwrap(), b"not on the esp\n");
    assert_eq!(r.stat("/boot/efi").unwrap().kind, FileKind::Dir);
    assert!(r.read_dir("/boot/efi").unwrap().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn esp_holds_the_tree_with_long_names_and_mtimes() {
    let dir = temp_dir("disk-esp");
    let tree = esp_tree(&dir);
    let b = build(&dir.join("out"), &disk("size: 512MiB"), &tree);
    let esp = &b.layout.partitions[0];
    fat_clean(&b.raw, esp.start, esp.size, &dir);
    let img = mtools(&b.raw, esp.start);

    // Every file reads back identical through mtools.
    let files = [
        "/boot/efi/EFI/BOOT/BOOTX64.EFI",
        "/boot/efi/EFI/azurelinux/grubx64.efi",
        "/boot/efi/EFI/azurelinux/grub.cfg",
        LONG_ENTRY,
        "/boot/efi/loader/loader.conf",
        "/boot/efi/empty",
    ];
    for f in files {
        let inside = f.strip_prefix("/boot/efi").unwrap();
        let out = dir.join("copied");
        let _ = std::fs::remove_file(&out);
        run(Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-n", "-i", &img])
            .arg(format!("::{inside}"))
            .arg(&out));
        assert!(
            std::fs::read(&out).unwrap() == tree.read(f).unwrap(),
            "{f} differs"
        );
    }
    // Nothing from outside the mount point.
    let out = run(Command::new("mdir")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-i", &img, "-/", "-a", "::/"]));
    let listing = text(&out.stdout);
    assert!(!listing.contains("hostname"), "{listing}");
    assert!(
        listing.contains("azurelinux-6.18.0-1.azl4.x86_64-a-rather-long-boot-entry-name.conf"),
        "{listing}"
    );
    assert!(listing.contains("BOOTX64  EFI    921600"), "{listing}");
    // The label and the volume id the layout derived.
    let out = run(Command::new("minfo")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-i", &img, "::"]));
    let info = text(&out.stdout);
    assert!(
        info.contains(&format!("serial number: {:08X}", esp.fat_volume_id)),
        "{info}"
    );
    assert!(info.contains("disk label=\"ESP        \""), "{info}");
    // mtimes from the manifest (UTC; mtools prints them as stored).
    let out = run(Command::new("mdir")
        .env("MTOOLS_SKIP_CHECK", "1")
        .env("TZ", "UTC")
        .args(["-i", &img, "::/EFI/BOOT"]));
    let listing = text(&out.stdout);
    // 1_690_000_002 is 2023-07-22 04:26:42 UTC.
    assert!(listing.contains("2023-07-22   4:26"), "{listing}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn custom_layouts_boot_data_and_bios_boot() {
    let dir = temp_dir("disk-custom");
    let tree = esp_tree(&dir);
    let def = disk(
        "size: 2GiB
partitions:
  - {name: bios, type: bios-boot, size: 1MiB}
  - {name: esp, type: esp, size: 100MiB, filesystem: vfat, mount: /boot/efi, fs-label: EFI}
  - {name: boot, type: xbootldr, size: 300MiB, filesystem: ext4, mount: /boot}
  - {name: root, type: root, size: rest, filesystem: ext4, mount: /}
  - {name: data, label: app-data, type: linux, size: 256MiB, filesystem: ext4, mount: /srv/data}
  - {name: swap, type: swap, size: 64MiB}
",
    );
    let b = build(&dir.join("out"), &def, &tree);
    let l = &b.layout;
    check_table(&b.raw, l);
    let want = [
        ("bios", "21686148-6449-6e6f-744e-656564454649"),
        ("esp", "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"),
        ("boot", "bc13c2ff-59e6-4262-a352-b275fd6f7172"),
        ("root", "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"),
        ("app-data", "0fc63daf-8483-4772-8e79-3d69d8477de4"),
        ("swap", "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f"),
    ];
    for (p, (label, guid)) in l.partitions.iter().zip(want) {
        assert_eq!(
            (p.label.as_str(), p.type_guid.to_string().as_str()),
            (label, guid)
        );
        assert_eq!(p.start % MIB, 0);
        assert_eq!(p.size % MIB, 0);
    }
    let last = l.partitions.last().unwrap();
    assert_eq!(last.start + last.size, (2 << 30) - MIB);
    let esp = &l.partitions[1];
    fat_clean(&b.raw, esp.start, esp.size, &dir);
    let out = run(Command::new("minfo").env("MTOOLS_SKIP_CHECK", "1").args([
        "-i",
        &mtools(&b.raw, esp.start),
        "::",
    ]));
    assert!(text(&out.stdout).contains("disk label=\"EFI        \""));
    run(Command::new("qemu-img")
        .args(["check", "-f", "qcow2"])
        .arg(&b.qcow2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn layout_errors_name_the_partition() {
    let cases = [
        (
            "size: 1GiB\npartitions: [{name: a, type: root, size: rest}, {name: b, type: home, size: rest}]",
            "`a` and `b` both ask for the `rest`",
        ),
        (
            "size: 1GiB\npartitions: [{name: odd, type: linux, size: 1000KiB}]",
            "partition `odd`: size 1024000 bytes is not a whole number of MiB",
        ),
        (
            "size: 1GiB\npartitions: [{name: esp, type: esp, size: 200MiB}, {name: huge, type: linux, size: 900MiB}]",
            "partition `huge` does not fit",
        ),
        (
            "size: 1GiB\npartitions: [{name: esp, type: esp, size: 1023MiB}, {name: root, type: root, size: rest}]",
            "partition `root` (rest) gets no space",
        ),
        ("size: 5000000000", "not a whole number of MiB"),
    ];
    for (yaml, want) in cases {
        let e: LayoutError = layout::plan(&disk(yaml), Arch::X86_64, b"s").unwrap_err();
        assert!(e.to_string().contains(want), "{yaml}: {e}");
    }
}

#[test]
fn two_builds_are_byte_identical() {
    let dir = temp_dir("disk-twice");
    let tree = esp_tree(&dir);
    let a = build(&dir.join("a"), &disk("size: 1GiB"), &tree);
    // FAT stores times in 2-second steps: a wall-clock leak would show across this pause.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let b = build(&dir.join("b"), &disk("size: 1GiB"), &tree);
    for (x, y) in [(&a.raw, &b.raw), (&a.vhd, &b.vhd), (&a.qcow2, &b.qcow2)] {
        let (hx, lx) = kiln::emit::sha256_file(x).unwrap();
        let (hy, ly) = kiln::emit::sha256_file(y).unwrap();
        assert_eq!((hx, lx), (hy, ly), "{} and {}", x.display(), y.display());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
