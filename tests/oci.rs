//! `kiln build --format oci` on the fixture repository, checked with the real consumers: skopeo
//! inspects and copies the layout, umoci unpacks it (rootless) and the result must equal the
//! staging tree; Python's tarfile reads the layer's PAX headers; two builds are byte-identical.

mod common;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Repo, kiln_build, read_mtree, run, temp_dir, text, unescape, write_definition};

/// A fixture definition with an OCI output; `oci` is the body of `outputs.oci`.
fn definition(dir: &Path, name: &str, oci: &str) -> PathBuf {
    let body = format!(
        "version: \"2.1\"\npackages:\n  install: [fx-app, fx-files]\nsystem:\n  hostname: fx-oci\noutputs:\n  oci:\n{oci}"
    );
    write_definition(dir, name, Repo::Fixture, &body)
}

fn lgetxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (len >= 0).then(|| {
        buf.truncate(len as usize);
        buf
    })
}

/// The owner umoci recorded for a rootless unpack (`user.rootlesscontainers`, a protobuf with
/// uid = field 1 and gid = field 2; absent means the unpacking user, i.e. the image's 0).
fn rootless_owner(path: &Path) -> (u32, u32) {
    let Some(b) = lgetxattr(path, "user.rootlesscontainers") else {
        return (0, 0);
    };
    let (mut uid, mut gid) = (0u32, 0u32);
    let mut i = 0;
    while i < b.len() {
        let key = b[i];
        i += 1;
        let mut v: u64 = 0;
        let mut shift = 0;
        loop {
            let byte = b[i];
            i += 1;
            v |= ((byte & 0x7f) as u64) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        match key >> 3 {
            1 => uid = v as u32,
            2 => gid = v as u32,
            _ => {}
        }
    }
    // rootlesscontainers' NoopID (u32::MAX): this id is the unpacking user's, i.e. 0 (a setgid
    // root:staff directory records only its gid).
    let noop = |id: u32| if id == u32::MAX { 0 } else { id };
    (noop(uid), noop(gid))
}

/// The layer's members as Python's tarfile reads them: name → [type, mode, uid, gid, uname,
/// linkname, pax keys].
fn tar_members(layer: &Path) -> BTreeMap<String, serde_json::Value> {
    let script = r#"
import json, sys, tarfile
out = {}
with tarfile.open(sys.argv[1]) as t:
    for m in t.getmembers():
        out[m.name] = [m.type.decode(), m.mode, m.uid, m.gid, m.uname, m.linkname,
                       {k: v.encode('utf-8', 'surrogateescape').hex() for k, v in m.pax_headers.items()}]
json.dump(out, sys.stdout)
"#;
    let out = run(Command::new("python3").args(["-c", script]).arg(layer));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn json_file(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

#[test]
fn oci_image_is_read_by_skopeo_and_umoci_and_equals_the_tree() {
    let dir = temp_dir("oci-base");
    let def = definition(
        &dir,
        "fxoci",
        "    variant: base\n    entrypoint: [/usr/bin/fx-app]\n    cmd: [--serve]\n    env: {FX_MODE: prod}\n    exposed-ports: [\"8080\", 53/udp]\n    workdir: /var/lib\n    labels: {org.opencontainers.image.source: \"https://example.com/fx\"}\n    tags: [\"2.1\", latest]\n",
    );
    let out_dir = dir.join("out");
    let out = kiln_build(&def, &out_dir, "oci,dir");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let layout = out_dir.join("fxoci.oci");
    let names: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with('.')),
        "temporary files left: {names:?}"
    );

    // The layout as skopeo reads it.
    let inspect = run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:2.1", layout.display())));
    let inspect: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Os"], "linux");
    assert_eq!(inspect["Created"], "2023-11-14T22:13:20Z");
    assert_eq!(inspect["Labels"]["org.opencontainers.image.version"], "2.1");
    assert_eq!(
        inspect["Labels"]["org.opencontainers.image.source"],
        "https://example.com/fx"
    );
    let config = run(Command::new("skopeo")
        .args(["inspect", "--config"])
        .arg(format!("oci:{}:latest", layout.display())));
    let config: serde_json::Value = serde_json::from_slice(&config.stdout).unwrap();
    let c = &config["config"];
    assert_eq!(c["Entrypoint"], serde_json::json!(["/usr/bin/fx-app"]));
    assert_eq!(c["Cmd"], serde_json::json!(["--serve"]));
    assert_eq!(c["WorkingDir"], "/var/lib");
    assert!(c["ExposedPorts"]["8080/tcp"].is_object() && c["ExposedPorts"]["53/udp"].is_object());
    let env: Vec<&str> = c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"FX_MODE=prod") && env.iter().any(|e| e.starts_with("PATH=")),
        "{env:?}"
    );
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);
    let archive = dir.join("docker.tar");
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:2.1", layout.display()))
        .arg(format!("docker-archive:{}:fxoci:2.1", archive.display())));
    assert!(std::fs::metadata(&archive).unwrap().len() > 0);

    // umoci unpacks it, rootless, to the staging tree exactly.
    let bundle = dir.join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:2.1", layout.display()))
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    assert_unpacked_equals_tree(
        &rootfs,
        &out_dir.join("fxoci-x86_64"),
        &out_dir.join("fxoci-x86_64.mtree"),
    );

    // The layer as a tar: numeric owners only, hardlinks, PAX xattrs (file capabilities).
    let index = json_file(&layout.join("index.json"));
    let manifest_desc = &index["manifests"][0];
    let m = json_file(&blob(&layout, manifest_desc["digest"].as_str().unwrap()));
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let members = tar_members(&blob(&layout, m["layers"][0]["digest"].as_str().unwrap()));
    assert!(
        members.values().all(|v| v[4] == ""),
        "user names in the layer"
    );
    let ping = &members["usr/bin/fx-ping"];
    assert!(
        ping[6]["SCHILY.xattr.security.capability"]
            .as_str()
            .is_some(),
        "{ping:?}"
    );
    assert_eq!(members["usr/bin/fx-setuid"][1], 0o4755);
    let (a, b) = (
        &members["usr/share/fx/files/hardlink-a"],
        &members["usr/share/fx/files/hardlink-b"],
    );
    assert!(
        (a[0] == "1" && a[5] == "usr/share/fx/files/hardlink-b")
            || (b[0] == "1" && b[5] == "usr/share/fx/files/hardlink-a"),
        "{a:?} {b:?}"
    );
    // Every mtime is clamped to SOURCE_DATE_EPOCH.
    assert!(members.contains_key("etc/hostname"));
}

/// umoci's rootless unpack equals the staging tree kiln published beside the image: every path
/// of the mtree manifest with its type, mode, owner (umoci's xattr), link target and content,
/// and nothing else.
fn assert_unpacked_equals_tree(rootfs: &Path, tree: &Path, mtree: &Path) {
    let manifest = read_mtree(mtree);
    let mut seen = 0;
    for (path, kv) in &manifest {
        if path == "." {
            continue;
        }
        let rel = path.trim_start_matches("./");
        let got = rootfs.join(rel);
        let md = std::fs::symlink_metadata(&got)
            .unwrap_or_else(|e| panic!("{path} is missing from umoci's rootfs: {e}"));
        let kind = match md.file_type() {
            t if t.is_dir() => "dir",
            t if t.is_symlink() => "link",
            t if t.is_file() => "file",
            t if t.is_char_device() => "char",
            t if t.is_block_device() => "block",
            t if t.is_fifo() => "fifo",
            _ => "other",
        };
        assert_eq!(kind, kv["type"], "{path}: type");
        if kind != "link" {
            assert_eq!(
                format!("{:04o}", md.mode() & 0o7777),
                kv["mode"],
                "{path}: mode"
            );
        }
        let (uid, gid) = rootless_owner(&got);
        assert_eq!(uid.to_string(), kv["uid"], "{path}: uid");
        assert_eq!(gid.to_string(), kv["gid"], "{path}: gid");
        match kind {
            "link" => assert_eq!(
                std::fs::read_link(&got).unwrap().to_string_lossy(),
                unescape(&kv["link"]),
                "{path}: target"
            ),
            "file" => assert!(
                std::fs::read(&got).unwrap() == std::fs::read(tree.join(rel)).unwrap(),
                "{path}: content differs"
            ),
            _ => {}
        }
        seen += 1;
    }
    let count = walkdir(rootfs);
    assert_eq!(
        count, seen,
        "umoci's rootfs has paths the manifest does not"
    );
}

fn walkdir(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        n += 1;
        if e.file_type().unwrap().is_dir() {
            n += walkdir(&e.path());
        }
    }
    n
}

/// Every file of a layout, with its bytes.
fn layout_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for sub in ["oci-layout", "index.json"] {
        out.insert(sub.to_string(), std::fs::read(dir.join(sub)).unwrap());
    }
    for e in std::fs::read_dir(dir.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        out.insert(
            e.file_name().to_string_lossy().into_owned(),
            std::fs::read(e.path()).unwrap(),
        );
    }
    out
}

#[test]
fn builds_are_byte_identical_and_zstd_layers_work() {
    let dir = temp_dir("oci-repro");
    for (name, oci) in [
        ("fxgz", "    variant: base\n"),
        ("fxzst", "    variant: base\n    compression: zstd\n"),
    ] {
        let def = definition(&dir, name, oci);
        let a = dir.join(format!("{name}-a"));
        let b = dir.join(format!("{name}-b"));
        for out in [&a, &b] {
            let o = kiln_build(&def, out, "oci");
            assert!(o.status.success(), "{}", text(&o.stderr));
        }
        let (fa, fb) = (
            layout_files(&a.join(format!("{name}.oci"))),
            layout_files(&b.join(format!("{name}.oci"))),
        );
        assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
        assert!(fa == fb, "{name}: the two builds differ");
        // Every blob is named by its digest.
        for (n, bytes) in &fa {
            if n.len() == 64 {
                use sha2::Digest;
                assert_eq!(&hex::encode(sha2::Sha256::digest(bytes)), n);
            }
        }
        let layout = a.join(format!("{name}.oci"));
        let tag = format!("oci:{}:2.1", layout.display());
        let inspect = run(Command::new("skopeo").arg("inspect").arg(&tag));
        let inspect: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
        let m = run(Command::new("skopeo").args(["inspect", "--raw"]).arg(&tag));
        let m: serde_json::Value = serde_json::from_slice(&m.stdout).unwrap();
        let want = if name == "fxzst" {
            "application/vnd.oci.image.layer.v1.tar+zstd"
        } else {
            "application/vnd.oci.image.layer.v1.tar+gzip"
        };
        assert_eq!(m["layers"][0]["mediaType"], want);
        assert_eq!(inspect["Layers"][0], m["layers"][0]["digest"]);
    }
}

/// A definition on a Debian-binary fixture repository (`minimal` or `server`).
fn debian_definition(dir: &Path, name: &str, profile: &'static str, body: &str) -> PathBuf {
    write_definition(
        dir,
        name,
        Repo::Debian(profile),
        &format!("version: \"1\"\n{body}"),
    )
}

/// Unpacks `layout:tag` with umoci (rootless) and returns the rootfs.
fn unpack(layout: &Path, tag: &str, bundle: &Path) -> PathBuf {
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(bundle));
    bundle.join("rootfs")
}

/// Whether `path` exists in `rootfs`, following symlinks as the image would (inside it).
fn exists_in(rootfs: &Path, path: &str) -> bool {
    let mut cur = PathBuf::from("/");
    let mut parts: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .rev()
        .map(str::to_string)
        .collect();
    let mut hops = 0;
    while let Some(c) = parts.pop() {
        if c == ".." {
            cur.pop();
            continue;
        }
        let next = cur.join(&c);
        let disk = rootfs.join(next.strip_prefix("/").unwrap());
        match std::fs::symlink_metadata(&disk) {
            Err(_) => return false,
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                assert!(hops < 40, "symlink loop at {path}");
                let t = std::fs::read_link(&disk).unwrap();
                let t = t.to_string_lossy();
                if t.starts_with('/') {
                    cur = PathBuf::from("/");
                }
                parts.extend(
                    t.split('/')
                        .filter(|c| !c.is_empty())
                        .rev()
                        .map(str::to_string),
                );
            }
            Ok(_) => cur = next,
        }
    }
    true
}

const MANIFEST_QF: &str = "%{NAME}\\t%{VERSION}-%{RELEASE}\\t%{INSTALLTIME}\\t%{BUILDTIME}\\t%{VENDOR}\\t%{EPOCH}\\t%{SIZE}\\t%{ARCH}\\t%{EPOCHNUM}\\t%{SOURCERPM}\\n";

#[test]
fn runtime_image_from_debian_server_has_no_shell_and_runs_as_nonroot() {
    let dir = temp_dir("oci-runtime");
    let def = debian_definition(
        &dir,
        "pyrt",
        "server",
        "packages:\n  install: [base-files, base-passwd, ca-certificates, tzdata]\n  docs: false\noutputs:\n  oci:\n    variant: runtime\n    runtime-packages: [python3]\n    cmd: [\"-c\", \"import os; print('uid', os.getuid())\"]\n",
    );
    let out_dir = dir.join("out");
    let out = kiln_build(&def, &out_dir, "oci,dir");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("left out of the runtime image: dash, dpkg"),
        "{err}"
    );
    let layout = out_dir.join("pyrt.oci");
    let config = run(Command::new("skopeo")
        .args(["inspect", "--config"])
        .arg(format!("oci:{}:1", layout.display())));
    let config: serde_json::Value = serde_json::from_slice(&config.stdout).unwrap();
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/usr/bin/python3"])
    );
    let rootfs = unpack(&layout, "1", &dir.join("bundle"));

    // No shell, no package manager, no rpm database.
    for p in [
        "/bin/sh",
        "/usr/bin/sh",
        "/bin/bash",
        "/bin/dash",
        "/usr/bin/dpkg",
        "/usr/bin/rpm",
        "/usr/lib/sysimage/rpm",
        "/var/lib/rpm",
        "/var/lib/dpkg",
    ] {
        assert!(!exists_in(&rootfs, p), "{p} is in the runtime image");
    }
    // The runtime, the CA certificates and the time zones are.
    for p in [
        "/usr/bin/python3",
        "/usr/share/zoneinfo/Europe/Berlin",
        "/usr/share/ca-certificates/mozilla",
        "/etc/ssl/certs",
    ] {
        assert!(
            exists_in(&rootfs, p),
            "{p} is missing from the runtime image"
        );
    }
    // Accounts, homes and /tmp.
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    let users: BTreeMap<&str, Vec<&str>> = passwd
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0], f)
        })
        .collect();
    assert_eq!(users["root"][2], "0");
    assert_eq!(
        users["nonroot"][2..6],
        ["65532", "65532", "nonroot", "/home/nonroot"]
    );
    assert_eq!(users["nobody"][2], "65534");
    assert!(
        users
            .values()
            .all(|f| f[6] != "/bin/bash" && f[6] != "/bin/sh"),
        "login shells that are not in the image: {passwd}"
    );
    let group = std::fs::read_to_string(rootfs.join("etc/group")).unwrap();
    assert!(
        group.lines().any(|l| l.starts_with("nonroot:x:65532:")),
        "{group}"
    );
    let home = rootfs.join("home/nonroot");
    assert_eq!(
        std::fs::symlink_metadata(&home).unwrap().mode() & 0o7777,
        0o700
    );
    assert_eq!(rootless_owner(&home), (65532, 65532));
    assert_eq!(
        std::fs::symlink_metadata(rootfs.join("tmp"))
            .unwrap()
            .mode()
            & 0o7777,
        0o1777
    );

    // The package manifest equals what rpm reads from the full tree's database, less the
    // packages that were left out.
    let tree = out_dir.join("pyrt-x86_64");
    let q = run(Command::new("rpm").arg("--root").arg(&tree).args([
        "--dbpath",
        "/usr/lib/sysimage/rpm",
        "-qa",
        "--qf",
        MANIFEST_QF,
    ]));
    let mut want: Vec<String> = text(&q.stdout)
        .lines()
        .filter(|l| !l.starts_with("dash\t") && !l.starts_with("dpkg\t"))
        .map(str::to_string)
        .collect();
    want.sort();
    let mut got: Vec<String> =
        std::fs::read_to_string(rootfs.join("var/lib/rpmmanifest/container-manifest-2"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
    got.sort();
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
    let m1 =
        std::fs::read_to_string(rootfs.join("var/lib/rpmmanifest/container-manifest-1")).unwrap();
    assert!(m1.lines().any(|l| l.starts_with("python3-3.11")), "{m1}");

    // The entrypoint runs, as nonroot, in the unpacked image (needs root for chroot).
    if unsafe { libc::geteuid() } == 0 {
        let ran = run(Command::new("chroot")
            .arg("--userspec=65532:65532")
            .arg(&rootfs)
            .args(["/usr/bin/python3", "-c", "import os, ssl, zoneinfo; zoneinfo.ZoneInfo('Europe/Berlin'); print('uid', os.getuid())"]));
        assert_eq!(text(&ran.stdout).trim(), "uid 65532");
    }

    // A second build is byte-identical.
    let again = dir.join("again");
    let o = kiln_build(&def, &again, "oci");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        layout_files(&layout) == layout_files(&again.join("pyrt.oci")),
        "two runtime builds differ"
    );
}

#[test]
fn base_image_from_debian_minimal_unpacks_to_the_staging_tree() {
    // Realistic content: the Essential set of Debian rewrapped as RPMs (setgid files owned by
    // system groups, hardlinks, long paths, dpkg's and perl's trees).
    let dir = temp_dir("oci-debian-base");
    let def = debian_definition(
        &dir,
        "debbase",
        "minimal",
        "packages:\n  install: [base-files, base-passwd, bash, coreutils, util-linux]\noutputs:\n  oci:\n    variant: base\n    cmd: [/bin/bash]\n",
    );
    let out_dir = dir.join("out");
    let out = kiln_build(&def, &out_dir, "oci,dir");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let layout = out_dir.join("debbase.oci");
    run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:1", layout.display())));
    let archive = dir.join("docker.tar");
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:1", layout.display()))
        .arg(format!("docker-archive:{}:debbase:1", archive.display())));
    let rootfs = unpack(&layout, "1", &dir.join("bundle"));
    assert_unpacked_equals_tree(
        &rootfs,
        &out_dir.join("debbase-x86_64"),
        &out_dir.join("debbase-x86_64.mtree"),
    );
    // The base variant keeps the shell and the rpm database.
    assert!(exists_in(&rootfs, "/bin/bash"));
    assert!(exists_in(&rootfs, "/usr/lib/sysimage/rpm/rpmdb.sqlite"));
}

#[test]
fn distroless_keeps_a_shell_the_definition_names_and_drops_the_others() {
    let dir = temp_dir("oci-distroless");
    let def = debian_definition(
        &dir,
        "dldebug",
        "minimal",
        "packages:\n  install: [base-files, base-passwd, busybox-static]\noutputs:\n  oci:\n    variant: distroless\n    entrypoint: [/bin/busybox]\n",
    );
    let out_dir = dir.join("out");
    let out = kiln_build(&def, &out_dir, "oci");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("kept because the definition asks for them: busybox-static"),
        "{err}"
    );
    let rootfs = unpack(&out_dir.join("dldebug.oci"), "1", &dir.join("bundle"));
    assert!(exists_in(&rootfs, "/bin/busybox"));
    for p in ["/bin/sh", "/bin/bash", "/bin/dash", "/usr/bin/dpkg"] {
        assert!(!exists_in(&rootfs, p), "{p} is in the distroless image");
    }
    let manifest =
        std::fs::read_to_string(rootfs.join("var/lib/rpmmanifest/container-manifest-2")).unwrap();
    assert!(manifest.lines().any(|l| l.starts_with("busybox-static\t")));
    assert!(
        !manifest.lines().any(|l| l.starts_with("bash\t")),
        "{manifest}"
    );
}

#[test]
fn runtime_without_a_command_is_refused_and_leaves_nothing() {
    let dir = temp_dir("oci-runtime-bad");
    let def = debian_definition(
        &dir,
        "tzonly",
        "minimal",
        "packages:\n  install: [base-files]\noutputs:\n  oci:\n    variant: runtime\n    runtime-packages: [base-passwd]\n",
    );
    let out_dir = dir.join("out");
    let out = kiln_build(&def, &out_dir, "oci");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot tell which program of the runtime package `base-passwd` to start; set `entrypoint`"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0);
}

#[test]
fn tar_writer_edge_cases_read_back_by_python() {
    use kiln::emit::tar::{TarOptions, write_tree};
    use kiln::tree::{Entry, Kind, Tree};
    let dir = temp_dir("tar-edges");
    let mut tree = Tree::create(&dir.join("root")).unwrap();
    let entry = |mode, uid, gid, mtime| Entry {
        kind: Kind::Dir,
        mode,
        uid,
        gid,
        mtime,
        xattrs: BTreeMap::new(),
    };
    // A path too long for ustar's name and prefix, a link target over 100 bytes, ids and an
    // mtime ustar cannot hold, an xattr, devices, a FIFO and a socket.
    let deep = format!("/{}/{}", "d".repeat(200), "f".repeat(90));
    tree.mkdir_p(&format!("/{}", "d".repeat(200)), 0o755, 5)
        .unwrap();
    tree.write_file(
        &deep,
        &mut &b"deep"[..],
        entry(0o640, 3_000_000, 7, 9_000_000_000),
    )
    .unwrap();
    let target = format!("/{}", "t".repeat(150));
    tree.symlink("/long-link", &target, entry(0o777, 0, 0, 5))
        .unwrap();
    let mut capped = entry(0o755, 0, 0, 5);
    capped.xattrs.insert(
        "security.capability".into(),
        vec![1, 0, 0, 2, 0x80, 0, 0, 0],
    );
    tree.write_file("/capped", &mut &b"x"[..], capped).unwrap();
    let mut null = entry(0o666, 0, 0, 5);
    null.kind = Kind::CharDev { major: 1, minor: 3 };
    tree.special("/null", null).unwrap();
    let mut fifo = entry(0o600, 0, 0, 5);
    fifo.kind = Kind::Fifo;
    tree.special("/fifo", fifo).unwrap();
    let mut sock = entry(0o600, 0, 0, 5);
    sock.kind = Kind::Socket;
    tree.special("/sock", sock).unwrap();

    let tar = dir.join("t.tar");
    let opts = TarOptions {
        clamp_mtime: 10_000_000_000,
        root_entry: true,
        ..TarOptions::default()
    };
    let summary = write_tree(&tree, &opts, std::fs::File::create(&tar).unwrap()).unwrap();
    assert_eq!(summary.skipped_sockets, ["/sock"]);
    assert_eq!(summary.bytes, std::fs::metadata(&tar).unwrap().len());
    let m = tar_members(&tar);
    let deep_rel = deep.trim_start_matches('/');
    let d = &m[deep_rel];
    assert_eq!(
        (
            d[0].as_str().unwrap(),
            d[1].as_u64(),
            d[2].as_u64(),
            d[3].as_u64()
        ),
        ("0", Some(0o640), Some(3_000_000), Some(7))
    );
    assert_eq!(m["long-link"][5], target);
    assert_eq!(m["long-link"][0], "2");
    assert_eq!(
        m["capped"][6]["SCHILY.xattr.security.capability"],
        "0100000280000000"
    );
    assert_eq!(m["null"][0], "3");
    assert_eq!(m["fifo"][0], "6");
    assert!(m.contains_key("."), "{:?}", m.keys().collect::<Vec<_>>());
    assert!(!m.keys().any(|k| k.contains("sock")));
    // GNU tar agrees on content and mtime (a PAX mtime beyond ustar's 8 GiB seconds).
    let out = run(Command::new("tar").args(["-xOf"]).arg(&tar).arg(deep_rel));
    assert_eq!(out.stdout, b"deep");
    let out = run(Command::new("tar")
        .args(["--full-time", "-tvf"])
        .arg(&tar)
        .arg(deep_rel));
    assert!(
        text(&out.stdout).contains("2255-03-14"),
        "{}",
        text(&out.stdout)
    );
}
