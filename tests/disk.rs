//! `kiln build --format vhd,raw` of a bootable Debian-binary image, checked with the standard
//! disk tools and kiln's ext4 reader against the staging tree; and, with KILN_BOOT_TESTS=1 (CI
//! sets it), booted under QEMU (q35, TCG, OVMF) to multi-user.target.

mod common;

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{Repo, kiln_build, read_mtree, run, temp_dir, text, unescape, write_definition};
use kiln::emit::disk::ext4::read::{Ext4Reader, FileKind};
use kiln::emit::disk::sparse;

/// A VM image from the Debian `server` fixtures: systemd-boot, a kernel whose initramfs
/// initramfs-tools makes in the sandbox, a user, and a unit that reports on ttyS0 and powers
/// off. (No `rootdelay=300`: that Azure default would stall the initramfs for five minutes.)
const BODY: &str = r#"version: "1"
description: kiln boot test
packages:
  install: [base-files, base-passwd, bash, coreutils, systemd, systemd-sysv, udev, kmod, util-linux, linux-image-amd64, initramfs-tools, grep, gzip, cpio, findutils, sed, mawk, dash, libc-bin, systemd-boot-efi, login, passwd]
  docs: false
system:
  hostname: kiln-boot
  kernel-cmdline: [console=ttyS0, earlyprintk=ttyS0, net.ifnames=0]
  users:
    - name: azureuser
      uid: 1000
  files:
    - path: /etc/systemd/system/kiln-report.service
      content: |
        [Unit]
        Description=Report the image to the serial console
        After=multi-user.target
        [Service]
        Type=oneshot
        StandardOutput=tty
        TTYPath=/dev/ttyS0
        ExecStart=/bin/sh -c 'echo "KILN-REPORT hostname=$(cat /proc/sys/kernel/hostname) users=$(cut -d: -f1 /etc/passwd | tr "\n" " ")"'
        ExecStartPost=/bin/systemctl --no-block poweroff
        [Install]
        WantedBy=multi-user.target
  services:
    enable: [kiln-report.service]
outputs:
  disk:
    formats: [vhd]
    bootloader: systemd-boot
"#;

struct Built {
    dir: PathBuf,
    out: PathBuf,
}

/// The image, built once per test process (about a minute: the initramfs dominates).
fn built() -> &'static Built {
    static B: OnceLock<Built> = OnceLock::new();
    B.get_or_init(|| {
        let dir = temp_dir("disk");
        let def = write_definition(&dir, "bootvm", Repo::Debian("server"), BODY);
        let out = dir.join("out");
        let o = kiln_build(&def, &out, "vhd,raw,dir");
        assert!(o.status.success(), "{}", text(&o.stderr));
        Built { dir, out }
    })
}

/// Partitions as sfdisk reads them: (name, start byte, size in bytes).
fn partitions(raw: &Path) -> Vec<(String, u64, u64)> {
    let o = run(Command::new("sfdisk").arg("--json").arg(raw));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or("").to_string(),
                p["start"].as_u64().unwrap() * 512,
                p["size"].as_u64().unwrap() * 512,
            )
        })
        .collect()
}

/// Copies one partition of `img` into its own sparse file (fsck.fat takes no offset).
fn extract(img: &Path, start: u64, size: u64, to: &Path) {
    let src = File::open(img).unwrap();
    let dst = File::create(to).unwrap();
    dst.set_len(size).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    for (from, len) in sparse::data_ranges(&src, start + size).unwrap() {
        let (a, b) = (from.max(start), (from + len).min(start + size));
        let mut at = a;
        while at < b {
            let n = ((b - at) as usize).min(buf.len());
            src.read_exact_at(&mut buf[..n], at).unwrap();
            dst.write_all_at(&buf[..n], at - start).unwrap();
            at += n as u64;
        }
    }
}

#[test]
fn vhd_passes_the_disk_tools_and_holds_the_staging_tree() {
    let b = built();
    let vhd = b.out.join("bootvm-x86_64.vhd");
    let raw = b.out.join("bootvm-x86_64.raw");

    // The container: exact virtual size, identical content to the raw disk, a valid GPT.
    let info = run(Command::new("qemu-img")
        .args(["info", "-f", "vpc", "--output=json"])
        .arg(&vhd));
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["virtual-size"], 5u64 << 30);
    assert_eq!(
        (std::fs::metadata(&vhd).unwrap().len() - 512) % (1 << 20),
        0
    );
    run(Command::new("qemu-img")
        .args(["compare", "-f", "vpc", "-F", "raw"])
        .arg(&vhd)
        .arg(&raw));
    let v = run(Command::new("sgdisk").arg("-v").arg(&raw));
    assert!(
        text(&v.stdout).contains("No problems found"),
        "{}",
        text(&v.stdout)
    );
    // Sparse: the 5 GiB disk holds a few hundred MiB.
    let allocated = sparse::allocated(&File::open(&vhd).unwrap()).unwrap();
    assert!(allocated < 1 << 30, "{allocated} bytes allocated");

    let parts = partitions(&raw);
    assert_eq!(parts.len(), 2, "{parts:?}");
    let (esp_start, esp_size) = (parts[0].1, parts[0].2);
    let (root_start, root_size) = (parts[1].1, parts[1].2);
    assert_eq!(esp_size, 200 << 20);

    // The ESP: fsck.fat clean, systemd-boot and the kernel's entry on it.
    let esp = b.dir.join("esp.img");
    extract(&raw, esp_start, esp_size, &esp);
    let f = Command::new("fsck.fat")
        .args(["-n"])
        .arg(&esp)
        .output()
        .unwrap();
    assert!(
        f.status.success(),
        "fsck.fat -n:\n{}{}",
        text(&f.stdout),
        text(&f.stderr)
    );
    let dir = run(Command::new("mdir")
        .args(["-/", "-b", "-i"])
        .arg(&esp)
        .arg("::"));
    let listing = text(&dir.stdout);
    for want in [
        "::/EFI/BOOT/BOOTX64.EFI",
        "::/loader/loader.conf",
        "::/bootvm/",
    ] {
        assert!(listing.contains(want), "{want} not on the ESP:\n{listing}");
    }
    // Gone once checked: CI disks are small.
    let _ = std::fs::remove_file(&esp);

    // The root: e2fsck clean, read in place (`?offset=` is e2fsprogs' unix I/O option), and
    // every path of the manifest in it as the tree has it.
    let e = Command::new("e2fsck")
        .args(["-fn"])
        .arg(format!("{}?offset={root_start}", raw.display()))
        .output()
        .unwrap();
    assert!(
        e.status.success(),
        "e2fsck -fn:\n{}{}",
        text(&e.stdout),
        text(&e.stderr)
    );
    assert!(
        text(&e.stdout).contains(&format!("/{} blocks", root_size / 4096)),
        "e2fsck read another file system:\n{}",
        text(&e.stdout)
    );
    let reader = Ext4Reader::open(File::open(&raw).unwrap(), root_start).unwrap();
    let manifest = read_mtree(&b.out.join("bootvm-x86_64.mtree"));
    let tree = b.out.join("bootvm-x86_64");
    let mut checked = 0;
    for (path, kv) in &manifest {
        let p = path.trim_start_matches('.');
        let p = if p.is_empty() { "/" } else { p };
        // What is below the ESP's mount point is on the ESP.
        if p.starts_with("/boot/efi/") {
            continue;
        }
        let st = reader
            .stat(p)
            .unwrap_or_else(|e| panic!("{p} is not in the ext4 root: {e}"));
        let kind = match st.kind {
            FileKind::File => "file",
            FileKind::Dir => "dir",
            FileKind::Symlink => "link",
            FileKind::CharDev => "char",
            FileKind::BlockDev => "block",
            FileKind::Fifo => "fifo",
            FileKind::Socket => "socket",
        };
        assert_eq!(kind, kv["type"], "{p}: type");
        assert_eq!(format!("{:04o}", st.mode), kv["mode"], "{p}: mode");
        assert_eq!(st.uid.to_string(), kv["uid"], "{p}: uid");
        assert_eq!(st.gid.to_string(), kv["gid"], "{p}: gid");
        match kind {
            "link" => assert_eq!(reader.read_link(p).unwrap(), unescape(&kv["link"]), "{p}"),
            "file" => assert!(
                reader.read_file(p).unwrap() == std::fs::read(tree.join(&p[1..])).unwrap(),
                "{p}: content differs"
            ),
            _ => {}
        }
        checked += 1;
    }
    assert!(checked > 5000, "only {checked} paths");
    // fstab names the two filesystems by UUID.
    let fstab = text(&reader.read_file("/etc/fstab").unwrap());
    assert!(
        fstab.contains(" / ext4 defaults 0 1") && fstab.contains(" /boot/efi vfat umask=0077 0 2"),
        "{fstab}"
    );
}

#[test]
fn two_disk_builds_are_byte_identical() {
    let b = built();
    let def = b.dir.join("bootvm.yaml");
    let again = b.dir.join("again");
    let o = kiln_build(&def, &again, "vhd");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let cmp = run(Command::new("cmp")
        .arg(b.out.join("bootvm-x86_64.vhd"))
        .arg(again.join("bootvm-x86_64.vhd")));
    assert!(cmp.status.success());
    let _ = std::fs::remove_dir_all(&again);
}

#[test]
fn vhd_boots_to_multi_user_under_qemu() {
    if std::env::var_os("KILN_BOOT_TESTS").is_none() {
        eprintln!("skipped: set KILN_BOOT_TESTS=1 to boot the VHD under QEMU (about a minute)");
        return;
    }
    let b = built();
    let vhd = b.out.join("bootvm-x86_64.vhd");
    let vars = b.dir.join("OVMF_VARS.fd");
    std::fs::copy("/usr/share/OVMF/OVMF_VARS.fd", &vars).unwrap();
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-machine",
            "q35,accel=tcg",
            "-m",
            "1024",
            "-smp",
            "2",
            "-nographic",
        ])
        .args([
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-net",
            "none",
            "-no-reboot",
        ])
        .arg("-drive")
        .arg("if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd")
        .arg("-drive")
        .arg(format!("if=pflash,format=raw,file={}", vars.display()))
        .arg("-drive")
        .arg(format!(
            "file={},format=vpc,if=virtio,snapshot=on",
            vhd.display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64 (Debian package qemu-system-x86) runs");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stdout.read_to_end(&mut all);
        all
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > Duration::from_secs(600) {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let console = text(&reader.join().unwrap());
    assert!(
        status.is_some(),
        "the VM did not power off within 10 minutes:\n{console}"
    );
    assert!(
        console.contains("multi-user.target"),
        "no multi-user.target:\n{console}"
    );
    let report = console
        .lines()
        .find(|l| l.starts_with("KILN-REPORT"))
        .unwrap_or_else(|| panic!("no report on ttyS0:\n{console}"));
    assert!(report.contains("hostname=kiln-boot"), "{report}");
    assert!(report.contains(" azureuser "), "{report}");
    assert!(report.contains("users=root "), "{report}");
    eprintln!(
        "booted and reported in {:.0} s",
        start.elapsed().as_secs_f64()
    );
}

#[test]
fn kiln_inspect_reads_the_disk_back() {
    let b = built();
    let raw = b.out.join("bootvm-x86_64.raw");
    let o = run(Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("inspect")
        .arg(b.out.join("bootvm-x86_64.vhd")));
    let said = text(&o.stdout);
    assert!(
        said.contains("container: VHD (fixed), virtual size 5 GiB (5368709120 bytes)"),
        "{said}"
    );
    // The same partitions, GUIDs and file systems as sfdisk and blkid-style readers see.
    let sf = run(Command::new("sfdisk").arg("--json").arg(&raw));
    let sf: serde_json::Value = serde_json::from_slice(&sf.stdout).unwrap();
    let table = &sf["partitiontable"];
    assert!(
        said.contains(&format!(
            "disk GUID {}",
            table["id"].as_str().unwrap().to_lowercase()
        )),
        "{said}"
    );
    for p in table["partitions"].as_array().unwrap() {
        let uuid = p["uuid"].as_str().unwrap().to_lowercase();
        assert!(said.contains(&format!("PARTUUID {uuid}")), "{uuid}: {said}");
    }
    assert!(
        said.contains("EFI system") && said.contains("root (x86-64)"),
        "{said}"
    );
    assert!(
        said.contains("vfat (FAT32), label \"ESP\"")
            || said.contains("vfat (FAT32), label \"esp\""),
        "{said}"
    );
    assert!(said.contains("ext4, label \"root\""), "{said}");
    assert!(
        said.contains("kernel command line: console=ttyS0 earlyprintk=ttyS0 net.ifnames=0"),
        "{said}"
    );
    let tree = b.out.join("bootvm-x86_64");
    let qa = run(Command::new("rpm").arg("--root").arg(&tree).args([
        "--dbpath",
        "/usr/lib/sysimage/rpm",
        "-qa",
    ]));
    let n = text(&qa.stdout).lines().count();
    assert!(said.contains(&format!("packages: {n}\n")), "{n}: {said}");
    // The raw disk reads the same, less the container line.
    let o = run(Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("inspect")
        .arg(&raw));
    assert!(
        text(&o.stdout).contains("container: raw, 5 GiB"),
        "{}",
        text(&o.stdout)
    );
    // Not a disk: a clear error.
    let o = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("inspect")
        .arg(b.dir.join("bootvm.yaml"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("no GPT partition table"),
        "{}",
        text(&o.stderr)
    );
}
