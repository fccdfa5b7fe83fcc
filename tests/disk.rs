//! `kiln build --format vhd,raw` of bootable Debian-binary images (GRUB 2, systemd-boot), checked
//! with the standard disk tools and kiln's ext4 reader against the staging tree; and, with
//! KILN_BOOT_TESTS=1 (CI sets it), booted under QEMU (q35, TCG, OVMF) to multi-user.target.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use common::{
    Repo, e2fsck_at, fsck_fat_at, kiln_build, read_mtree, run, spdx_validate, temp_dir, text,
    unescape, write_definition,
};
use kiln::emit::disk::ext4::read::{Ext4Reader, FileKind};
use kiln::emit::disk::sparse;
use regex::Regex;

type Manifest = BTreeMap<String, BTreeMap<String, String>>;

/// A VM image from the Debian `server` fixtures: the default bootloader (GRUB 2, made by the
/// image's grub-mkimage), a kernel whose initramfs initramfs-tools makes in the sandbox, a user,
/// and a unit that reports on ttyS0 and powers off. (No `rootdelay=300`: that Azure default
/// would stall the initramfs for five minutes.)
const BODY: &str = r#"version: "1"
description: kiln boot test
packages:
  install: [base-files, base-passwd, bash, coreutils, systemd, systemd-sysv, udev, kmod, util-linux, linux-image-amd64, initramfs-tools, grep, gzip, cpio, findutils, sed, mawk, dash, libc-bin, systemd-boot-efi, grub-efi-amd64-bin, grub-common, login, passwd]
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
"#;

/// Builds and boots one at a time: each takes gigabytes of disk and both cores.
fn heavy() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// The default layout's partitions: a 200 MiB ESP at 1 MiB, the root after it.
const ESP: (u64, u64) = (1 << 20, 200 << 20);
const ROOT_START: u64 = 201 << 20;

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

/// fsck.fat on the ESP, and the paths mtools lists, read in place (`IMAGE@@OFFSET`).
fn check_esp(img: &Path, work: &Path, want: &[&str]) {
    fsck_fat_at(img, ESP.0, ESP.1, work);
    let dir = run(Command::new("mdir")
        .args(["-/", "-b", "-i"])
        .arg(format!("{}@@{}", img.display(), ESP.0))
        .arg("::"));
    let listing = text(&dir.stdout);
    for w in want {
        assert!(listing.contains(w), "{w} not on the ESP:\n{listing}");
    }
}

/// e2fsck -fn on the root partition, read in place; returns its report.
fn check_root(img: &Path) -> String {
    e2fsck_at(img, ROOT_START)
}

/// The root read back by e2fsprogs' own debugfs, in place: `stat` and `ea_list` of every path of
/// the manifest (type, mode, owner, size, mtime, xattr names, fast symlink targets), then every
/// file and slow symlink `dump`ed in batches of at most 64 MiB, compared with the staging tree
/// and removed. Returns how many paths were compared.
fn debugfs_walk(img: &Path, manifest: &Manifest, tree: &Path, work: &Path) -> usize {
    let device = format!("{}?offset={ROOT_START}", img.display());
    let debugfs = |cmds: &str, name: &str| -> String {
        let file = work.join(name);
        std::fs::write(&file, cmds).unwrap();
        let o = run(Command::new("debugfs").arg("-f").arg(&file).arg(&device));
        let _ = std::fs::remove_file(&file);
        text(&o.stdout)
    };
    // Paths as debugfs takes them; what is below the ESP's mount point is on the ESP.
    let paths: Vec<(String, &BTreeMap<String, String>)> = manifest
        .iter()
        .map(|(p, kv)| {
            let p = p.trim_start_matches('.');
            (
                if p.is_empty() {
                    "/".to_string()
                } else {
                    p.to_string()
                },
                kv,
            )
        })
        .filter(|(p, _)| !p.starts_with("/boot/efi/"))
        .collect();
    assert!(paths.iter().all(|(p, _)| !p.contains(['"', '\n'])));
    let mut cmds = String::new();
    for (p, _) in &paths {
        cmds.push_str(&format!("stat \"{p}\"\nea_list \"{p}\"\n"));
    }
    let out = debugfs(&cmds, "stat.cmds");
    let mut sections: HashMap<String, String> = HashMap::new();
    let mut cur = String::new();
    for line in out.lines() {
        if let Some(cmd) = line.strip_prefix("debugfs: ") {
            cur = cmd.to_string();
            sections.insert(cur.clone(), String::new());
        } else if let Some(s) = sections.get_mut(&cur) {
            s.push_str(line);
            s.push('\n');
        }
    }
    let re_type = Regex::new(r"Type: (.+?)\s+Mode:\s+(\d+)").unwrap();
    let re_owner =
        Regex::new(r"User:\s+(\d+)\s+Group:\s+(\d+)\s+Project:\s+\d+\s+Size: (\d+)").unwrap();
    let re_mtime = Regex::new(r"(?m)^ mtime: 0x([0-9a-f]+)").unwrap();
    let re_fast = Regex::new(r#"Fast link dest: "(.*)""#).unwrap();
    let re_ea = Regex::new(r"(?m)^  (\S+) \(\d+\)").unwrap();
    let mut dumps = Vec::new();
    for (p, kv) in &paths {
        let st = &sections[&format!("stat \"{p}\"")];
        let t = re_type.captures(st).unwrap_or_else(|| panic!("{p}: {st}"));
        let kind = match &t[1] {
            "regular" => "file",
            "directory" => "dir",
            "symlink" => "link",
            "character special" => "char",
            "block special" => "block",
            "FIFO" => "fifo",
            other => panic!("{p}: debugfs type {other}"),
        };
        assert_eq!(kind, kv["type"], "{p}: type");
        assert_eq!(
            format!("{:04o}", u32::from_str_radix(&t[2], 8).unwrap()),
            kv["mode"],
            "{p}: mode"
        );
        let o = re_owner.captures(st).unwrap();
        assert_eq!(
            (&o[1], &o[2]),
            (kv["uid"].as_str(), kv["gid"].as_str()),
            "{p}: owner"
        );
        let mtime = i64::from_str_radix(&re_mtime.captures(st).unwrap()[1], 16).unwrap();
        assert_eq!(format!("{mtime}.0"), kv["time"], "{p}: mtime");
        let mut xattrs: Vec<String> = re_ea
            .captures_iter(&sections[&format!("ea_list \"{p}\"")])
            .map(|c| c[1].to_string())
            .collect();
        xattrs.sort();
        let want: Vec<String> = kv
            .keys()
            .filter_map(|k| k.strip_prefix("xattr.").map(unescape))
            .collect();
        assert_eq!(xattrs, want, "{p}: xattrs");
        let size: u64 = o[3].parse().unwrap();
        match kind {
            "file" => {
                assert_eq!(size.to_string(), kv["size"], "{p}: size");
                dumps.push((p.clone(), size));
            }
            "link" => {
                let target = unescape(&kv["link"]);
                assert_eq!(size, target.len() as u64, "{p}: link size");
                match re_fast.captures(st) {
                    Some(c) => assert_eq!(&c[1], target, "{p}: link"),
                    None => dumps.push((p.clone(), size)),
                }
            }
            _ => {}
        }
    }
    // Contents, a batch at a time so that the copy never takes more than 64 MiB of disk.
    let scratch = work.join("debugfs-dump");
    let mut rest = dumps.as_slice();
    while !rest.is_empty() {
        let mut n = 0;
        let mut bytes = 0;
        while n < rest.len() && (n == 0 || bytes + rest[n].1 <= 64 << 20) {
            bytes += rest[n].1;
            n += 1;
        }
        let (batch, more) = rest.split_at(n);
        rest = more;
        std::fs::create_dir_all(&scratch).unwrap();
        let cmds: String = batch
            .iter()
            .enumerate()
            .map(|(i, (p, _))| format!("dump \"{p}\" \"{}/{i}\"\n", scratch.display()))
            .collect();
        debugfs(&cmds, "dump.cmds");
        for (i, (p, _)) in batch.iter().enumerate() {
            let got = std::fs::read(scratch.join(i.to_string()))
                .unwrap_or_else(|e| panic!("debugfs dumped no {p}: {e}"));
            let host = tree.join(&p[1..]);
            let want = match manifest[&format!(".{p}")].get("link") {
                Some(l) => unescape(l).into_bytes(),
                None => std::fs::read(&host).unwrap(),
            };
            assert!(got == want, "{p}: content differs in debugfs's dump");
        }
        std::fs::remove_dir_all(&scratch).unwrap();
    }
    paths.len()
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
    spdx_validate(&b.out.join("bootvm-x86_64.vhd.spdx.json"));
    // Sparse: the 5 GiB disk holds a few hundred MiB.
    let allocated = sparse::allocated(&File::open(&vhd).unwrap()).unwrap();
    assert!(allocated < 1 << 30, "{allocated} bytes allocated");

    let parts = partitions(&raw);
    assert_eq!(parts.len(), 2, "{parts:?}");
    let (esp_start, esp_size) = (parts[0].1, parts[0].2);
    let (root_start, root_size) = (parts[1].1, parts[1].2);
    assert_eq!(esp_size, 200 << 20);

    assert_eq!(
        (esp_start, esp_size, root_start),
        (ESP.0, ESP.1, ROOT_START)
    );

    // The ESP: fsck.fat clean, GRUB (and the stub that finds the root) on it.
    check_esp(
        &raw,
        &b.dir,
        &["::/EFI/BOOT/BOOTX64.EFI", "::/EFI/BOOT/grub.cfg"],
    );
    // The root: e2fsck clean, and every path of the manifest in it as the tree has it.
    let fsck = check_root(&raw);
    assert!(
        fsck.contains(&format!("/{} blocks", root_size / 4096)),
        "e2fsck read another file system:\n{fsck}"
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
    // And the same paths as e2fsprogs reads them.
    let walked = debugfs_walk(&raw, &manifest, &tree, &b.dir);
    assert_eq!(walked, checked);
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
    let _one = heavy();
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

fn boot_tests_on() -> bool {
    if std::env::var_os("KILN_BOOT_TESTS").is_none() {
        eprintln!("skipped: set KILN_BOOT_TESTS=1 to boot the VHD under QEMU (about a minute)");
        return false;
    }
    true
}

/// Boots `vhd` under QEMU (q35, TCG, OVMF) and checks what the report unit printed on ttyS0.
fn boot_and_check(vhd: &Path, work: &Path) {
    let vars = work.join("OVMF_VARS.fd");
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
fn vhd_boots_to_multi_user_under_qemu() {
    if !boot_tests_on() {
        return;
    }
    let b = built();
    let _one = heavy();
    boot_and_check(&b.out.join("bootvm-x86_64.vhd"), &b.dir);
}

/// The other choices: systemd-boot, and dracut (Azure Linux's initramfs tool) in place of
/// initramfs-tools. The loader, the kernel and its entry on the ESP; two builds byte for byte
/// (dracut's `--reproducible`); booted too when boot tests are on.
#[test]
fn systemd_boot_and_dracut_vhd_passes_the_tools_and_boots() {
    let _one = heavy();
    let dir = temp_dir("disk-sdboot");
    let body = BODY
        .replace(
            "    formats: [vhd]\n",
            "    formats: [vhd]\n    bootloader: systemd-boot\n",
        )
        .replace(" initramfs-tools,", " dracut,")
        .replace(" grub-efi-amd64-bin, grub-common,", "");
    assert!(
        body.contains(" dracut,") && !body.contains("initramfs-tools") && !body.contains("grub")
    );
    // debian-dracut: the boot profile with dracut (it conflicts with initramfs-tools, so the
    // two live in different repositories).
    let def = write_definition(&dir, "sdboot", Repo::Debian("dracut"), &body);
    let out = dir.join("out");
    let o = kiln_build(&def, &out, "vhd");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let vhd = out.join("sdboot-x86_64.vhd");
    check_esp(
        &vhd,
        &dir,
        &[
            "::/EFI/BOOT/BOOTX64.EFI",
            "::/EFI/systemd/systemd-bootx64.efi",
            "::/loader/loader.conf",
            "::/loader/entries/sdboot-6.",
            "::/sdboot/6.",
        ],
    );
    check_root(&vhd);
    let reader = Ext4Reader::open(File::open(&vhd).unwrap(), ROOT_START).unwrap();
    let (initrd, _) = reader
        .read_dir("/boot")
        .unwrap()
        .into_iter()
        .find(|(n, _)| n.starts_with("initramfs-"))
        .expect("dracut's /boot/initramfs-V.img");
    assert!(initrd.ends_with(".img"), "{initrd}");
    let again = dir.join("again");
    let o = kiln_build(&def, &again, "vhd");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let cmp = run(Command::new("cmp")
        .arg(&vhd)
        .arg(again.join("sdboot-x86_64.vhd")));
    assert!(cmp.status.success());
    let _ = std::fs::remove_dir_all(&again);
    if boot_tests_on() {
        boot_and_check(&vhd, &dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
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
