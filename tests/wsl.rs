//! `kiln build --format wsl` on the fixture repositories, checked as WSL would see the archive:
//! configuration files, modes and owners, masked units, the OOBE run for real, and the
//! DistributionInfo.json entry; builds are byte-identical; what cannot work is refused.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Repo, kiln_build, run, temp_dir, text, write_definition};

/// One member of the archive as Python's tarfile reads it.
#[derive(Debug, Clone, serde::Deserialize)]
struct Member {
    #[serde(rename = "type")]
    kind: String,
    mode: u32,
    uid: u32,
    gid: u32,
    link: String,
    size: u64,
    /// The first 4 bytes (hex) of regular files.
    magic: String,
}

/// Every member of a `.wsl` (any compression), by name.
fn members(wsl: &Path) -> BTreeMap<String, Member> {
    let script = r#"
import json, sys, tarfile
out = {}
with tarfile.open(sys.argv[1]) as t:
    for m in t.getmembers():
        magic = t.extractfile(m).read(4).hex() if m.isfile() else ""
        out[m.name] = {"type": m.type.decode(), "mode": m.mode, "uid": m.uid, "gid": m.gid,
                       "link": m.linkname, "size": m.size, "magic": magic}
json.dump(out, sys.stdout)
"#;
    let out = run(Command::new("python3").args(["-c", script]).arg(wsl));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The content of one member.
fn member_bytes(wsl: &Path, name: &str) -> Vec<u8> {
    let script = "import sys, tarfile\nt = tarfile.open(sys.argv[1])\nsys.stdout.buffer.write(t.extractfile(sys.argv[2]).read())";
    run(Command::new("python3")
        .args(["-c", script])
        .arg(wsl)
        .arg(name))
    .stdout
}

/// Follows symlinks inside the archive, as the distribution would see its files.
fn resolve<'a>(m: &'a BTreeMap<String, Member>, path: &str) -> Option<(String, &'a Member)> {
    let mut parts: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .rev()
        .map(str::to_string)
        .collect();
    let mut cur: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(c) = parts.pop() {
        if c == ".." {
            cur.pop();
            continue;
        }
        if c == "." {
            continue;
        }
        cur.push(c);
        let name = cur.join("/");
        let e = m.get(&name)?;
        if e.kind == "2" {
            hops += 1;
            if hops > 40 {
                return None;
            }
            cur.pop();
            if e.link.starts_with('/') {
                cur.clear();
            }
            parts.extend(
                e.link
                    .split('/')
                    .filter(|c| !c.is_empty())
                    .rev()
                    .map(str::to_string),
            );
        }
    }
    let name = cur.join("/");
    m.get(&name).map(|e| (name, e))
}

/// A minimal INI reader: section → key → value (keys as written).
fn ini(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = String::new();
    for l in text.lines().map(str::trim) {
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if let Some(s) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.to_string();
            continue;
        }
        let (k, v) = l.split_once('=').expect("key = value");
        out.entry(section.clone())
            .or_default()
            .insert(k.trim().to_string(), v.trim().to_string());
    }
    out
}

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

const MASKED: [&str; 9] = [
    "systemd-resolved.service",
    "systemd-networkd.service",
    "systemd-networkd.socket",
    "systemd-networkd-wait-online.service",
    "NetworkManager.service",
    "NetworkManager-wait-online.service",
    "tmp.mount",
    "console-getty.service",
    "systemd-vconsole-setup.service",
];

/// The keys WSL reads from /etc/wsl.conf (learn.microsoft.com/windows/wsl/wsl-config).
const WSL_CONF: [(&str, &[&str]); 7] = [
    (
        "automount",
        &["enabled", "mountFsTab", "root", "options", "ldconfig"],
    ),
    (
        "network",
        &["generateHosts", "generateResolvConf", "hostname"],
    ),
    ("interop", &["enabled", "appendWindowsPath"]),
    ("user", &["default"]),
    ("boot", &["systemd", "command", "protectBinfmt"]),
    ("gpu", &["enabled"]),
    ("time", &["useWindowsTimezone"]),
];

fn wsl_definition(dir: &Path) -> PathBuf {
    // A minimal valid .ico: header (reserved 0, type 1, one image) and one 16x16 entry.
    let mut ico = vec![0u8, 0, 1, 0, 1, 0, 16, 16, 0, 0, 1, 0, 32, 0];
    ico.extend_from_slice(&40u32.to_le_bytes());
    ico.extend_from_slice(&22u32.to_le_bytes());
    ico.extend(std::iter::repeat_n(0u8, 40));
    std::fs::write(dir.join("azl.ico"), &ico).unwrap();
    std::fs::write(
        dir.join("profile.json"),
        r#"{"profiles":[{"colorScheme":"Campbell","fontWeight":"bold"}]}"#,
    )
    .unwrap();
    let body = r#"version: "4.0"
description: Azure Linux 4.0 for WSL (test)
packages:
  install: [base-files, base-passwd, bash, coreutils, systemd, systemd-sysv, passwd, login, sudo, ca-certificates, tzdata, iproute2, procps]
  docs: false
system:
  hostname: wsl
  users:
    - name: builder
      uid: 1500
      password-hash: "$6$rounds=5000$salt$0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01234567890123"
  files:
    # Debian's pam-auth-update writes these in a maintainer script the fixture rewrap drops;
    # the OOBE's chpasswd needs them, as on any distribution.
    - path: /etc/pam.d/common-auth
      content: "auth [success=1 default=ignore] pam_unix.so nullok\nauth requisite pam_deny.so\nauth required pam_permit.so\n"
    - path: /etc/pam.d/common-account
      content: "account [success=1 new_authtok_reqd=done default=ignore] pam_unix.so\naccount requisite pam_deny.so\naccount required pam_permit.so\n"
    - path: /etc/pam.d/common-password
      content: "password [success=1 default=ignore] pam_unix.so obscure yescrypt\npassword requisite pam_deny.so\npassword required pam_permit.so\n"
    - path: /etc/pam.d/common-session
      content: "session [default=1] pam_permit.so\nsession requisite pam_deny.so\nsession required pam_permit.so\nsession required pam_unix.so\n"
    # What Azure Linux's wsl-setup %post writes: kiln must keep it.
    - path: /etc/wsl.conf
      mode: "0644"
      content: |
        [boot]
        systemd=true
        [interop]
        appendWindowsPath=false
outputs:
  wsl:
    default-name: AzureLinux
    friendly-name: Azure Linux 4.0
    icon: azl.ico
    terminal-profile: profile.json
    base-url: https://example.com/wsl/
"#;
    write_definition(dir, "azl-wsl", Repo::Debian("server"), body)
}

#[test]
fn wsl_distribution_from_debian_server_is_what_wsl_expects() {
    let dir = temp_dir("wsl-server");
    let def = wsl_definition(&dir);
    let out_dir = dir.join("out");
    let out = kiln_build(&def, &out_dir, "wsl,dir");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("kept the image's own /etc/wsl.conf"), "{err}");
    assert!(
        err.contains("/etc/shadow: password hashes of builder left out"),
        "{err}"
    );
    let wsl = out_dir.join("azl-wsl-x86_64.wsl");
    let bytes = std::fs::read(&wsl).unwrap();
    assert_eq!(&bytes[..3], &[0x1f, 0x8b, 8], "gzip");
    let m = members(&wsl);

    // Rooted at /: relative names, the root directory first, numeric owners only.
    let first = m.keys().next().unwrap();
    assert_eq!(first, ".");
    assert!(
        m.keys()
            .all(|n| !n.starts_with('/') && !n.split('/').any(|c| c == "..")),
        "absolute or climbing names"
    );
    assert_eq!((m["."].mode, m["."].uid, m["."].gid), (0o755, 0, 0));

    // The configuration files: root-owned 0644, with the keys WSL reads.
    for f in ["etc/wsl-distribution.conf", "etc/wsl.conf"] {
        let e = &m[f];
        assert_eq!(
            (e.kind.as_str(), e.mode, e.uid, e.gid),
            ("0", 0o644, 0, 0),
            "{f}"
        );
    }
    let conf = ini(&text(&member_bytes(&wsl, "etc/wsl-distribution.conf")));
    assert_eq!(conf["oobe"]["command"], "/usr/libexec/wsl/oobe.sh");
    assert_eq!(conf["oobe"]["defaultUid"], "1000");
    assert_eq!(conf["oobe"]["defaultName"], "AzureLinux");
    assert_eq!(conf["shortcut"]["enabled"], "true");
    assert_eq!(conf["windowsterminal"]["enabled"], "true");
    let icon = conf["shortcut"]["icon"].trim_start_matches('/').to_string();
    assert_eq!(
        member_bytes(&wsl, &icon),
        std::fs::read(dir.join("azl.ico")).unwrap()
    );
    assert!(m[&icon].size <= 1 << 20);
    let profile = conf["windowsterminal"]["profileTemplate"]
        .trim_start_matches('/')
        .to_string();
    assert_eq!(
        member_bytes(&wsl, &profile),
        std::fs::read(dir.join("profile.json")).unwrap()
    );
    let wsl_conf = text(&member_bytes(&wsl, "etc/wsl.conf"));
    assert!(
        wsl_conf.contains("appendWindowsPath=false"),
        "the image's own wsl.conf: {wsl_conf}"
    );
    let wsl_conf = ini(&wsl_conf);
    assert_eq!(wsl_conf["boot"]["systemd"], "true");
    for (section, keys) in &wsl_conf {
        for k in keys.keys() {
            assert!(
                WSL_CONF
                    .iter()
                    .any(|(s, ks)| s == section && ks.iter().any(|x| x.eq_ignore_ascii_case(k))),
                "wsl.conf: [{section}] {k} is no key WSL knows"
            );
        }
    }
    let oobe = &m["usr/libexec/wsl/oobe.sh"];
    assert_eq!(
        (oobe.kind.as_str(), oobe.mode, oobe.uid, oobe.gid),
        ("0", 0o755, 0, 0)
    );

    // No resolv.conf, no kernel, no password hashes.
    assert!(!m.contains_key("etc/resolv.conf"));
    assert!(
        !m.keys()
            .any(|n| n.starts_with("boot/vmlinuz") || n.starts_with("boot/initr")),
        "a kernel or initramfs is in the archive"
    );
    let shadow = text(&member_bytes(&wsl, "etc/shadow"));
    for line in shadow.lines() {
        let pw = line.split(':').nth(1).unwrap_or("");
        assert!(!pw.contains('$'), "a password hash in /etc/shadow: {line}");
    }
    let passwd = text(&member_bytes(&wsl, "etc/passwd"));
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("root:") && l.split(':').nth(2) == Some("0"))
    );

    // Units WSL discourages are masked, where the image has them; systemd's networkd and
    // console-getty are in Debian's systemd package.
    let tree = out_dir.join("azl-wsl-x86_64");
    let mut masked = 0;
    for unit in MASKED {
        let has = [
            "lib/systemd/system",
            "usr/lib/systemd/system",
            "etc/systemd/system",
        ]
        .iter()
        .any(|d| tree.join(d).join(unit).symlink_metadata().is_ok());
        if has {
            let e = m
                .get(&format!("etc/systemd/system/{unit}"))
                .unwrap_or_else(|| panic!("{unit} is not masked"));
            assert_eq!(
                (e.kind.as_str(), e.link.as_str()),
                ("2", "/dev/null"),
                "{unit}"
            );
            masked += 1;
        }
    }
    assert!(masked >= 3, "only {masked} of the units were in the image");

    // /bin/sh and /sbin/init are ELF programs.
    for p in ["bin/sh", "sbin/init"] {
        let (name, e) = resolve(&m, p).unwrap_or_else(|| panic!("{p} is missing"));
        assert_eq!(e.kind, "0", "{p} -> {name}");
        assert_eq!(e.magic, "7f454c46", "{p} -> {name} is not ELF");
    }
    assert!(
        resolve(&m, "sbin/init")
            .unwrap()
            .0
            .ends_with("systemd/systemd")
    );

    // DistributionInfo.json: the entry `wsl --install` reads, with the file's sha256.
    let info: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out_dir.join("azl-wsl.DistributionInfo.json")).unwrap(),
    )
    .unwrap();
    let e = &info["ModernDistributions"]["AzureLinux"][0];
    assert_eq!(e["Name"], "AzureLinux-4.0");
    assert_eq!(e["FriendlyName"], "Azure Linux 4.0");
    assert_eq!(e["Default"], true);
    assert_eq!(
        e["Amd64Url"]["Url"],
        "https://example.com/wsl/azl-wsl-x86_64.wsl"
    );
    assert_eq!(e["Amd64Url"]["Sha256"], sha256(&wsl));
    assert!(e.get("Arm64Url").is_none());

    // A second build is byte-identical.
    let again = dir.join("again");
    let o = kiln_build(&def, &again, "wsl");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        std::fs::read(again.join("azl-wsl-x86_64.wsl")).unwrap() == bytes,
        "two .wsl builds differ"
    );
    assert_eq!(
        std::fs::read(again.join("azl-wsl.DistributionInfo.json")).unwrap(),
        std::fs::read(out_dir.join("azl-wsl.DistributionInfo.json")).unwrap()
    );
    let names: Vec<String> = std::fs::read_dir(&again)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with('.')),
        "temporary files left: {names:?}"
    );

    // The OOBE creates the first user, as WSL would run it (as root, in the distribution).
    if unsafe { libc::geteuid() } == 0 {
        let rootfs = dir.join("rootfs");
        std::fs::create_dir(&rootfs).unwrap();
        run(Command::new("tar")
            .args(["--numeric-owner", "-xpzf"])
            .arg(&wsl)
            .arg("-C")
            .arg(&rootfs));
        let mut child = Command::new("chroot")
            .arg(&rootfs)
            .arg("/usr/libexec/wsl/oobe.sh")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"Bad Name\nalice\ns3cret\nother\nalice\ns3cret\ns3cret\n")
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
        let said = text(&o.stdout);
        assert!(said.contains("Use lower-case letters"), "{said}");
        assert!(said.contains("The passwords differ"), "{said}");
        let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
        let alice: Vec<&str> = passwd
            .lines()
            .find(|l| l.starts_with("alice:"))
            .unwrap_or_else(|| panic!("no alice in {passwd}"))
            .split(':')
            .collect();
        assert_eq!(alice[2], "1000");
        assert_eq!(alice[5], "/home/alice");
        let group = std::fs::read_to_string(rootfs.join("etc/group")).unwrap();
        assert!(
            group
                .lines()
                .any(|l| l.starts_with("sudo:") && l.split(':').nth(3).unwrap().contains("alice")),
            "{group}"
        );
        let shadow = std::fs::read_to_string(rootfs.join("etc/shadow")).unwrap();
        let pw = shadow
            .lines()
            .find(|l| l.starts_with("alice:"))
            .unwrap()
            .split(':')
            .nth(1)
            .unwrap()
            .to_string();
        assert!(pw.starts_with('$'), "alice has no password: {pw}");
        // Run again, it sees the user and does nothing.
        let o = run(Command::new("chroot")
            .arg(&rootfs)
            .arg("/usr/libexec/wsl/oobe.sh")
            .stdin(std::process::Stdio::null()));
        assert!(text(&o.stdout).is_empty());
    }
}

/// A definition on the kiln fixture repository with a WSL output.
fn fixture_definition(dir: &Path, name: &str, packages: &str, wsl: &str) -> PathBuf {
    let body = format!("packages:\n  install: [{packages}]\noutputs:\n  wsl:\n{wsl}");
    write_definition(dir, name, Repo::Fixture, &body)
}

#[test]
fn kernel_is_left_out_and_other_compressions_work() {
    let dir = temp_dir("wsl-fixture");
    for (compression, magic) in [("xz", &[0xfd, b'7', b'z', b'X'][..]), ("none", &b"."[..])] {
        let def = fixture_definition(
            &dir,
            &format!("fxwsl-{compression}"),
            "fx-filesystem, fx-busybox, fx-kernel",
            &format!("    systemd: false\n    compression: {compression}\n"),
        );
        let out_dir = dir.join(format!("out-{compression}"));
        let out = kiln_build(&def, &out_dir, "wsl");
        assert!(out.status.success(), "{}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(err.contains("left out the kernel and initramfs"), "{err}");
        let wsl = out_dir.join(format!("fxwsl-{compression}-x86_64.wsl"));
        assert!(
            std::fs::read(&wsl).unwrap().starts_with(magic),
            "{compression}"
        );
        let m = members(&wsl);
        for gone in [
            "boot/vmlinuz-6.2.0-1.x86_64",
            "boot/initramfs-6.2.0-1.x86_64.img",
            "usr/lib/modules/6.2.0-1.x86_64/vmlinuz",
        ] {
            assert!(!m.contains_key(gone), "{gone} is in the archive");
        }
        assert!(m.contains_key("usr/lib/modules/6.2.0-1.x86_64/modules.dep"));
        let conf = ini(&text(&member_bytes(&wsl, "etc/wsl.conf")));
        assert_eq!(conf["boot"]["systemd"], "false");
        // No systemd: nothing to mask, no /sbin/init added.
        assert!(!m.keys().any(|n| n.starts_with("etc/systemd/system/")));
    }
}

#[test]
fn images_wsl_cannot_use_are_refused_and_leave_nothing() {
    let dir = temp_dir("wsl-refused");
    for (name, wsl, want) in [
        (
            "nosystemd",
            "    systemd: true\n",
            "outputs.wsl.systemd is on but the image has no systemd",
        ),
        (
            "nouser",
            "    systemd: false\n    oobe: {enabled: false}\n",
            "default-uid 1000 is no user of the image and the OOBE, which would create it, is off",
        ),
    ] {
        let def = fixture_definition(&dir, name, "fx-filesystem, fx-busybox", wsl);
        let out_dir = dir.join(format!("out-{name}"));
        // The OCI image is written first; the failing WSL output takes it away again.
        let out = kiln_build(&def, &out_dir, "oci,wsl");
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = text(&out.stderr);
        assert!(err.contains(want), "{name}: {err}");
        assert!(
            err.contains(&format!(
                "removed {}",
                out_dir.join(format!("{name}.oci")).display()
            )),
            "{name}: {err}"
        );
        assert_eq!(
            std::fs::read_dir(&out_dir).unwrap().count(),
            0,
            "{name}: something was left in the output directory"
        );
    }
}
