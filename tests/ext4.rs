//! kiln's ext4 writer against e2fsprogs: every image must pass `e2fsck -fn`, and `debugfs` (and
//! kiln's own reader) must show every path of the manifest as the tree has it.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln::emit::disk::ext4::read::FileKind;
use kiln::emit::disk::ext4::{self, Ext4Options, Ext4Reader, Report, Source};
use kiln::tree::{Entry, Kind, Tree};
use proptest::prelude::*;
use regex::Regex;

fn opts() -> Ext4Options {
    Ext4Options {
        uuid: *b"kiln-ext4-test!!",
        hash_seed: *b"kiln-hash-seed!!",
        label: "kiln-root".into(),
        timestamp: 1_700_000_000,
        ..Default::default()
    }
}

fn meta(kind: Kind, mode: u32) -> Entry {
    Entry {
        kind,
        mode,
        uid: 0,
        gid: 0,
        mtime: 1_650_000_000,
        xattrs: BTreeMap::new(),
    }
}

fn file(mode: u32) -> Entry {
    meta(
        Kind::File {
            size: 0,
            link: None,
        },
        mode,
    )
}

fn new_tree(dir: &Path) -> Tree {
    Tree::create(&dir.join("root"))
        .unwrap()
        .without_real_owners()
}

/// Writes `tree` into a fresh sparse image of `size` bytes at `offset`.
fn image(
    dir: &Path,
    name: &str,
    tree: &Tree,
    offset: u64,
    size: u64,
    o: &Ext4Options,
) -> (PathBuf, Report) {
    let path = dir.join(name);
    let f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    f.set_len(offset + size).unwrap();
    let src = Source {
        tree,
        root: "/",
        mounts: &[],
    };
    let rep = ext4::write(&f, offset, size, &src, o).unwrap();
    (path, rep)
}

/// `e2fsck -fn` must exit 0 and say nothing but its pass lines and the summary.
fn fsck(img: &str) {
    let out = Command::new("e2fsck").args(["-fn", img]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let odd: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.starts_with("Pass ") && !l.contains(" files ("))
        .collect();
    assert!(
        out.status.success() && odd.is_empty(),
        "e2fsck -fn {img}: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a path should look like in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Want {
    kind: FileKind,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    links: u16,
    target: Option<String>,
    rdev: (u32, u32),
    xattrs: BTreeMap<String, Vec<u8>>,
}

fn expected(tree: &Tree) -> BTreeMap<String, Want> {
    let entries = tree.entries();
    let mut group_links: HashMap<u32, u16> = HashMap::new();
    let mut subdirs: HashMap<&str, u16> = HashMap::new();
    for (p, e) in entries {
        if let Kind::File { link: Some(g), .. } = e.kind {
            *group_links.entry(g).or_default() += 1;
        }
        if e.kind == Kind::Dir && p != "/" {
            let parent = p
                .rsplit_once('/')
                .map(|(a, _)| if a.is_empty() { "/" } else { a })
                .unwrap();
            *subdirs.entry(parent).or_default() += 1;
        }
    }
    let mut out = BTreeMap::new();
    if !entries.contains_key("/lost+found") {
        *subdirs.entry("/").or_default() += 1;
        out.insert(
            "/lost+found".to_string(),
            Want {
                kind: FileKind::Dir,
                mode: 0o700,
                uid: 0,
                gid: 0,
                size: 16384,
                links: 2,
                target: None,
                rdev: (0, 0),
                xattrs: BTreeMap::new(),
            },
        );
    }
    for (p, e) in entries {
        let (kind, size, links, target, rdev) = match &e.kind {
            Kind::File { size, link } => (
                FileKind::File,
                *size,
                link.map_or(1, |g| group_links[&g]),
                None,
                (0, 0),
            ),
            // Directory sizes depend on the layout: checked as whole blocks.
            Kind::Dir => (
                FileKind::Dir,
                0,
                2 + subdirs.get(p.as_str()).copied().unwrap_or(0),
                None,
                (0, 0),
            ),
            Kind::Symlink { target } => (
                FileKind::Symlink,
                target.len() as u64,
                1,
                Some(target.clone()),
                (0, 0),
            ),
            Kind::CharDev { major, minor } => (FileKind::CharDev, 0, 1, None, (*major, *minor)),
            Kind::BlockDev { major, minor } => (FileKind::BlockDev, 0, 1, None, (*major, *minor)),
            Kind::Fifo => (FileKind::Fifo, 0, 1, None, (0, 0)),
            Kind::Socket => (FileKind::Socket, 0, 1, None, (0, 0)),
        };
        out.insert(
            p.clone(),
            Want {
                kind,
                mode: e.mode,
                uid: e.uid,
                gid: e.gid,
                size,
                links,
                target,
                rdev,
                xattrs: e.xattrs.clone(),
            },
        );
    }
    out
}

fn debugfs_kind(s: &str) -> FileKind {
    match s {
        "regular" => FileKind::File,
        "directory" => FileKind::Dir,
        "symlink" => FileKind::Symlink,
        "character special" => FileKind::CharDev,
        "block special" => FileKind::BlockDev,
        "FIFO" => FileKind::Fifo,
        "socket" => FileKind::Socket,
        other => panic!("debugfs type {other:?}"),
    }
}

/// Decodes `ea_get -x` hex bytes.
fn ea_value(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect()
}

/// ACL entries without a qualifier carry an undefined id, which the kernel writes as -1 and
/// e2fsprogs as 0.
fn normalize_acl(name: &str, v: &[u8]) -> Vec<u8> {
    let mut v = v.to_vec();
    if name.starts_with("system.posix_acl") {
        for e in v[4..].chunks_mut(8) {
            if !matches!(u16::from_le_bytes([e[0], e[1]]), 2 | 8) {
                e[4..8].fill(0);
            }
        }
    }
    v
}

/// One debugfs run: `stat` and `ea_list` of every path, then `rdump` of the whole tree for
/// content and symlink targets. Files above `max_content` bytes are left to other checks.
fn check_debugfs(img: &Path, tree: &Tree, dir: &Path, max_content: u64) {
    let want = expected(tree);
    let mut cmds = String::new();
    for (p, w) in &want {
        cmds.push_str(&format!("stat \"{p}\"\nea_list \"{p}\"\n"));
        for name in w.xattrs.keys() {
            cmds.push_str(&format!("ea_get -x \"{p}\" {name}\n"));
        }
    }
    let cmdfile = dir.join("debugfs.cmds");
    fs::write(&cmdfile, cmds).unwrap();
    let out = Command::new("debugfs")
        .arg("-f")
        .arg(&cmdfile)
        .arg(img)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let re_type = Regex::new(r"Type: (.+?)\s+Mode:\s+(\d+)").unwrap();
    let re_owner =
        Regex::new(r"User:\s+(\d+)\s+Group:\s+(\d+)\s+Project:\s+\d+\s+Size: (\d+)").unwrap();
    let re_links = Regex::new(r"Links: (\d+)").unwrap();
    let re_dev = Regex::new(r"Device major/minor number: (\d+):(\d+)").unwrap();
    let re_ea = Regex::new(r"^  (\S+) \((\d+)\)").unwrap();
    let re_get = Regex::new(r"^(\S+) \((\d+)\)(?: = (.*))?$").unwrap();
    // Sections start with the echoed command.
    let mut sections: HashMap<(String, String), String> = HashMap::new();
    let mut cur: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(cmd) = line.strip_prefix("debugfs: ") {
            let (verb, arg) = cmd.split_once(' ').unwrap();
            let arg = match arg.strip_prefix("-x ") {
                Some(a) => a.replace('"', ""),
                None => arg.trim_matches('"').to_string(),
            };
            cur = Some((verb.to_string(), arg));
            sections.insert(cur.clone().unwrap(), String::new());
        } else if let Some(c) = &cur {
            let s = sections.get_mut(c).unwrap();
            s.push_str(line);
            s.push('\n');
        }
    }
    for (p, w) in &want {
        let st = &sections[&("stat".to_string(), p.clone())];
        let t = re_type.captures(st).unwrap_or_else(|| panic!("{p}: {st}"));
        assert_eq!(debugfs_kind(&t[1]), w.kind, "{p}");
        assert_eq!(u32::from_str_radix(&t[2], 8).unwrap(), w.mode, "{p} mode");
        let o = re_owner.captures(st).unwrap();
        assert_eq!(
            (o[1].parse::<u32>().unwrap(), o[2].parse::<u32>().unwrap()),
            (w.uid, w.gid),
            "{p} owner"
        );
        let size: u64 = o[3].parse().unwrap();
        if w.kind == FileKind::Dir {
            assert!(size > 0 && size.is_multiple_of(4096), "{p} size {size}");
        } else {
            assert_eq!(size, w.size, "{p} size");
        }
        let links: u16 = re_links.captures(st).unwrap()[1].parse().unwrap();
        assert_eq!(links, w.links, "{p} links");
        if matches!(w.kind, FileKind::CharDev | FileKind::BlockDev) {
            let d = re_dev.captures(st).unwrap();
            assert_eq!(
                (d[1].parse().unwrap(), d[2].parse().unwrap()),
                w.rdev,
                "{p} device"
            );
        }
        let ea = &sections[&("ea_list".to_string(), p.clone())];
        let names: Vec<String> = ea
            .lines()
            .filter_map(|l| re_ea.captures(l).map(|c| c[1].to_string()))
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            w.xattrs.keys().cloned().collect::<Vec<_>>(),
            "{p} xattr names"
        );
        for (name, value) in &w.xattrs {
            let out = &sections[&("ea_get".to_string(), format!("{p} {name}"))];
            let c = re_get
                .captures(out.lines().next().unwrap_or(""))
                .unwrap_or_else(|| panic!("{p} {name}: {out}"));
            let got = c.get(3).map_or(Vec::new(), |v| ea_value(v.as_str()));
            assert_eq!(got.len(), c[2].parse::<usize>().unwrap(), "{p} {name}");
            assert_eq!(
                normalize_acl(name, &got),
                normalize_acl(name, value),
                "{p} {name}"
            );
        }
    }

    let dump = dir.join("rdump");
    let _ = fs::remove_dir_all(&dump);
    fs::create_dir_all(&dump).unwrap();
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump / {}", dump.display()))
        .arg(img)
        .output()
        .unwrap();
    assert!(out.status.success());
    for (p, w) in &want {
        let host = dump.join(p.trim_start_matches('/'));
        match w.kind {
            FileKind::File if w.size <= max_content => {
                let got = fs::read(&host).unwrap_or_else(|e| panic!("{p}: {e}"));
                assert!(got == tree.read(p).unwrap(), "{p}: content differs");
            }
            FileKind::Symlink => {
                assert_eq!(
                    fs::read_link(&host).unwrap().to_str().unwrap(),
                    w.target.as_deref().unwrap(),
                    "{p}"
                );
            }
            _ => {}
        }
    }
    let _ = fs::remove_dir_all(&dump);
}

/// The same through kiln's reader, walking the image's directories.
fn check_reader(img: &Path, offset: u64, tree: &Tree, max_content: u64) {
    let want = expected(tree);
    let r = Ext4Reader::open(File::open(img).unwrap(), offset).unwrap();
    let got = r.walk().unwrap();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (p, w) in &want {
        let st = &got[p];
        let size = if w.kind == FileKind::Dir {
            w.size.max(st.size)
        } else {
            w.size
        };
        assert_eq!(
            (st.kind, st.mode, st.uid, st.gid, st.size, st.links, st.rdev),
            (w.kind, w.mode, w.uid, w.gid, size, w.links, w.rdev),
            "{p}"
        );
        assert_eq!(r.xattrs_of(st.ino).unwrap(), w.xattrs, "{p}");
        if w.kind == FileKind::File && w.size <= max_content {
            assert!(
                r.file_of(st.ino).unwrap() == tree.read(p).unwrap(),
                "{p}: content"
            );
        }
        if let Some(t) = &w.target {
            assert_eq!(&r.link_of(st.ino).unwrap(), t, "{p}");
        }
    }
}

fn check_all(dir: &Path, tree: &Tree, size: u64) -> (PathBuf, Report) {
    let (img, rep) = image(dir, "fs.img", tree, 0, size, &opts());
    fsck(img.to_str().unwrap());
    check_debugfs(&img, tree, dir, 1 << 30);
    check_reader(&img, 0, tree, 1 << 30);
    (img, rep)
}

fn caps() -> Vec<u8> {
    // VFS_CAP_REVISION_2, cap_net_raw permitted and effective.
    let mut v = vec![0u8; 20];
    v[..4].copy_from_slice(&0x0200_0001u32.to_le_bytes());
    v[4..8].copy_from_slice(&(1u32 << 13).to_le_bytes());
    v
}

fn label(t: &str) -> Vec<u8> {
    format!("system_u:object_r:{t}:s0\0").into_bytes()
}

#[test]
fn hand_made_tree_with_every_kind() {
    let dir = common::temp_dir("ext4-hand");
    let mut t = new_tree(&dir);
    let mut root = Entry::dir(0o755);
    root.xattrs
        .insert("security.selinux".into(), label("root_t"));
    root.mtime = 1_600_000_000;
    t.put_dir("/", root).unwrap();
    let mut ping = file(0o4755);
    ping.xattrs.insert("security.capability".into(), caps());
    ping.xattrs
        .insert("security.selinux".into(), label("ping_exec_t"));
    ping.uid = 70_000;
    ping.gid = 123_456;
    t.put_text("/usr/bin/ping", "\x7fELF ping", ping.clone())
        .unwrap();
    t.hardlink("/usr/bin/ping6", "/usr/bin/ping").unwrap();
    t.hardlink("/usr/sbin/ping", "/usr/bin/ping").unwrap();
    // The same xattrs again: the two spill into one shared block.
    t.put_text("/usr/bin/arping", "\x7fELF arping", ping)
        .unwrap();
    let mut many = file(0o600);
    for i in 0..20 {
        many.xattrs
            .insert(format!("user.attr{i:02}"), vec![i as u8; 100]);
    }
    many.xattrs.insert("user.empty".into(), Vec::new());
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (1u16, 6u16, u32::MAX),
        (2, 4, 1000),
        (4, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 0, u32::MAX),
    ] {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&id.to_le_bytes());
    }
    many.xattrs.insert("system.posix_acl_access".into(), acl);
    t.put_text("/etc/many-xattrs", "x", many).unwrap();
    t.symlink("/bin", "usr/bin", file(0o777)).unwrap();
    t.symlink("/fast59", &"a".repeat(59), file(0o777)).unwrap();
    t.symlink("/slow60", &"b".repeat(60), file(0o777)).unwrap();
    t.symlink(
        "/slow4095",
        &"c/"
            .repeat(2047)
            .chars()
            .chain("d".chars())
            .collect::<String>(),
        file(0o777),
    )
    .unwrap();
    t.special(
        "/dev/sda1",
        meta(Kind::BlockDev { major: 8, minor: 1 }, 0o660),
    )
    .unwrap();
    t.special(
        "/dev/nvme0n1",
        meta(
            Kind::BlockDev {
                major: 259,
                minor: 0,
            },
            0o660,
        ),
    )
    .unwrap();
    t.special(
        "/dev/big",
        meta(
            Kind::CharDev {
                major: 4095,
                minor: 1_000_000,
            },
            0o600,
        ),
    )
    .unwrap();
    t.special(
        "/dev/null",
        meta(Kind::CharDev { major: 1, minor: 3 }, 0o666),
    )
    .unwrap();
    t.special("/run/initctl", meta(Kind::Fifo, 0o600)).unwrap();
    t.special("/run/sock", meta(Kind::Socket, 0o755)).unwrap();
    t.mkdir_p("/tmp", 0o1777, 0).unwrap();
    t.get_mut("/tmp").unwrap().mode = 0o1777;
    let mut future = file(0o644);
    future.mtime = 5_000_000_000;
    t.put_text("/future", "2128", future).unwrap();
    let mut past = file(0o644);
    past.mtime = -100;
    t.put_text("/past", "1969", past).unwrap();
    t.put_text("/empty", "", file(0o644)).unwrap();
    t.put_text(&format!("/{}", "n".repeat(255)), "long name", file(0o644))
        .unwrap();
    // Holes: a zero block in the middle, and trailing zeros.
    let mut holey = vec![1u8; 4096];
    holey.extend(vec![0u8; 8192]);
    holey.extend(vec![2u8; 100]);
    holey.extend(vec![0u8; 5000]);
    t.write_file("/holey", &mut &holey[..], file(0o644))
        .unwrap();
    // Every other block zero: 300 extents, more than the inode's four.
    let mut frag = Vec::new();
    for i in 0..600u32 {
        frag.extend(if i % 2 == 0 {
            vec![(i % 251) as u8 + 1; 4096]
        } else {
            vec![0; 4096]
        });
    }
    t.write_file("/fragmented", &mut &frag[..], file(0o644))
        .unwrap();
    let mut deep = String::new();
    for i in 0..100 {
        deep.push_str(&format!("/d{i}"));
    }
    t.mkdir_p(&deep, 0o750, 7).unwrap();
    t.put_text(&format!("{deep}/leaf"), "deep", file(0o400))
        .unwrap();

    let (img, rep) = check_all(&dir, &t, 64 << 20);
    assert_eq!(rep.blocks, 16384);
    let r = Ext4Reader::open(File::open(&img).unwrap(), 0).unwrap();
    assert_eq!(r.info().label, "kiln-root");
    assert_eq!(&r.info().uuid, b"kiln-ext4-test!!");
    assert_eq!(r.info().free_blocks, rep.free_blocks);
    assert_eq!(r.stat("/future").unwrap().mtime, 5_000_000_000);
    assert_eq!(r.stat("/past").unwrap().mtime, 0);
    // Fragmented: 300 data blocks and one extent index block.
    let out = Command::new("debugfs")
        .args(["-R", "stat /fragmented"])
        .arg(&img)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("Blockcount: 2408"), "{s}");
    let out = Command::new("debugfs")
        .args(["-R", "stat /holey"])
        .arg(&img)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("Blockcount: 16"), "{s}");
    let dump = Command::new("dumpe2fs")
        .arg("-h")
        .arg(&img)
        .output()
        .unwrap();
    let h = String::from_utf8_lossy(&dump.stdout);
    for f in [
        "has_journal",
        "ext_attr",
        "dir_index",
        "filetype",
        "extent",
        "64bit",
        "flex_bg",
        "sparse_super",
        "large_file",
        "huge_file",
        "dir_nlink",
        "extra_isize",
        "metadata_csum",
    ] {
        assert!(h.contains(&format!(" {f}")), "feature {f}: {h}");
    }
    assert!(h.contains("Reserved block count:     819"), "{h}");
    assert!(
        h.contains("Directory Hash Seed:      6b696c6e-2d68-6173-682d-736565642121"),
        "{h}"
    );
}

#[test]
fn wide_directory_of_20000_entries() {
    let dir = common::temp_dir("ext4-wide");
    let mut t = new_tree(&dir);
    t.mkdir_p("/wide", 0o755, 0).unwrap();
    for i in 0..20_000 {
        let p = format!("/wide/entry-with-a-longer-name-{i:06}");
        match i % 4 {
            0 => t.put_text(&p, &format!("{i}"), file(0o644)).map(|_| ()),
            1 => t
                .symlink(&p, &format!("target-{i}"), file(0o777))
                .map(|_| ()),
            2 => t.mkdir_p(&p, 0o700, 0).map(|_| ()),
            _ => t.special(&p, meta(Kind::Fifo, 0o644)).map(|_| ()),
        }
        .unwrap();
    }
    check_all(&dir, &t, 1 << 30);
}

#[test]
fn sparse_file_larger_than_4_gib() {
    let dir = common::temp_dir("ext4-sparse");
    let mut t = new_tree(&dir);
    t.put_text("/big", "", file(0o644)).unwrap();
    let size: u64 = 4608 << 20; // 4.5 GiB
    let disk = t.disk_path("/big");
    let f = File::options().write(true).open(&disk).unwrap();
    f.set_len(size).unwrap();
    let marks: [u64; 4] = [0, 1 << 30, (4 << 30) + 12345, size - 10];
    for (i, &at) in marks.iter().enumerate() {
        f.write_all_at(format!("mark {i}").as_bytes(), at).unwrap();
    }
    drop(f);
    if let Some(Entry {
        kind: Kind::File { size: s, .. },
        ..
    }) = t.get_mut("/big")
    {
        *s = size;
    }
    let (img, _) = image(&dir, "fs.img", &t, 0, 64 << 20, &opts());
    fsck(img.to_str().unwrap());
    check_debugfs(&img, &t, &dir, 1 << 20);
    check_reader(&img, 0, &t, 1 << 20);
    // Four data blocks and nothing else; each mark where it belongs.
    let out = Command::new("debugfs")
        .args(["-R", "stat /big"])
        .arg(&img)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        s.contains("Size: 4831838208") && s.contains("Blockcount: 32"),
        "{s}"
    );
    let re = Regex::new(r"\((\d+)\):(\d+)").unwrap();
    let blocks: Vec<(u64, u64)> = re
        .captures_iter(&s)
        .map(|c| (c[1].parse().unwrap(), c[2].parse().unwrap()))
        .collect();
    assert_eq!(blocks.len(), 4, "{s}");
    let im = File::open(&img).unwrap();
    for (i, &at) in marks.iter().enumerate() {
        let (_, phys) = blocks.iter().find(|(l, _)| *l == at / 4096).unwrap();
        let mut buf = [0u8; 6];
        im.read_exact_at(&mut buf, phys * 4096 + at % 4096).unwrap();
        assert_eq!(&buf, format!("mark {i}").as_bytes());
    }
}

#[test]
fn two_writes_are_byte_identical_and_sparse() {
    let dir = common::temp_dir("ext4-repro");
    let mut t = new_tree(&dir);
    for i in 0..300 {
        let mut e = file(0o644);
        e.xattrs.insert("security.selinux".into(), label("etc_t"));
        e.mtime = 1_000_000_000 + i;
        t.put_text(&format!("/etc/f{i}"), &"data".repeat(i as usize), e)
            .unwrap();
    }
    let size = 1 << 30;
    let (a, _) = image(&dir, "a.img", &t, 0, size, &opts());
    let (b, rep) = image(&dir, "b.img", &t, 0, size, &opts());
    fsck(a.to_str().unwrap());
    assert!(
        fs::read(&a).unwrap() == fs::read(&b).unwrap(),
        "two writes differ"
    );
    let allocated = fs::metadata(&a).unwrap().blocks() * 512;
    assert!(
        allocated < 4 << 20,
        "{allocated} bytes allocated in a {size}-byte image"
    );
    assert!(rep.bytes_written < 4 << 20, "{rep:?}");
    // Another UUID changes the image.
    let mut o = opts();
    o.uuid[0] ^= 1;
    let (c, _) = image(&dir, "c.img", &t, 0, size, &o);
    assert!(fs::read(&a).unwrap() != fs::read(&c).unwrap());
}

#[test]
fn sizes_offsets_and_short_last_groups() {
    let dir = common::temp_dir("ext4-sizes");
    let mut t = new_tree(&dir);
    t.put_text("/etc/hostname", "kiln\n", file(0o644)).unwrap();
    // A size that is no multiple of 4096, with a last group of 5000 blocks, at an offset.
    let size = (2 * 32768 + 5000) * 4096 + 1234;
    let offset = 1 << 20;
    let (img, rep) = image(&dir, "fs.img", &t, offset, size, &opts());
    assert_eq!(rep.blocks, 2 * 32768 + 5000);
    fsck(&format!("{}?offset={offset}", img.display()));
    check_reader(&img, offset, &t, 1 << 20);
    // A last group too small for its own metadata is left out.
    let (img, rep) = image(&dir, "runt.img", &t, 0, (32768 + 20) * 4096, &opts());
    assert_eq!(rep.blocks, 32768);
    fsck(img.to_str().unwrap());
    // Several flex groups (more than 16 groups), and a file system without a journal.
    let mut o = opts();
    o.journal_blocks = Some(0);
    let (img, rep) = image(&dir, "big.img", &t, 0, 20 << 30, &o);
    assert_eq!((rep.blocks, rep.journal_blocks), (5 << 20, 0));
    fsck(img.to_str().unwrap());
    // Too small, too many inodes.
    let f = File::create(dir.join("small.img")).unwrap();
    f.set_len(100 << 10).unwrap();
    let src = Source {
        tree: &t,
        root: "/",
        mounts: &[],
    };
    let e = ext4::write(&f, 0, 100 << 10, &src, &opts()).unwrap_err();
    assert!(e.to_string().contains("too small"), "{e}");
    let mut many = new_tree(&dir.join("many"));
    for i in 0..2000 {
        many.put_text(&format!("/f{i}"), "", file(0o644)).unwrap();
    }
    let f = File::create(dir.join("inodes.img")).unwrap();
    f.set_len(16 << 20).unwrap();
    let src = Source {
        tree: &many,
        root: "/",
        mounts: &[],
    };
    let mut o = opts();
    o.inode_ratio = 1 << 20;
    let e = ext4::write(&f, 0, 16 << 20, &src, &o).unwrap_err();
    assert!(matches!(e, ext4::Ext4Error::TooManyInodes { .. }), "{e}");
}

#[test]
fn a_separate_boot_file_system_with_a_mount_point() {
    let dir = common::temp_dir("ext4-boot");
    let mut t = new_tree(&dir);
    t.mkdir_p("/boot", 0o700, 0).unwrap();
    t.put_text("/boot/vmlinuz", "kernel", file(0o644)).unwrap();
    t.mkdir_p("/boot/efi", 0o700, 0).unwrap();
    t.put_text("/boot/efi/EFI/BOOT/BOOTX64.EFI", "efi", file(0o644))
        .unwrap();
    t.put_text("/etc/fstab", "", file(0o644)).unwrap();
    let f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join("boot.img"))
        .unwrap();
    f.set_len(64 << 20).unwrap();
    let mounts = vec!["/boot/efi".to_string()];
    let src = Source {
        tree: &t,
        root: "/boot",
        mounts: &mounts,
    };
    ext4::write(&f, 0, 64 << 20, &src, &opts()).unwrap();
    fsck(dir.join("boot.img").to_str().unwrap());
    let r = Ext4Reader::open(f, 0).unwrap();
    let got: Vec<String> = r.walk().unwrap().into_keys().collect();
    assert_eq!(got, ["/", "/efi", "/lost+found", "/vmlinuz"]);
    assert_eq!(r.stat("/").unwrap().mode, 0o700);
    assert_eq!(r.stat("/efi").unwrap().mode, 0o700);
}

#[test]
fn fifty_thousand_entries_deep_and_wide() {
    let dir = common::temp_dir("ext4-50k");
    let mut t = new_tree(&dir);
    let mut n = 1;
    'outer: for a in 0..50 {
        let mut d = format!("/a{a}");
        for depth in 0..20 {
            d.push_str(&format!("/level{depth}"));
            t.mkdir_p(&d, 0o755, 0).unwrap();
            n += 1;
            for i in 0..49 {
                if n >= 50_000 {
                    break 'outer;
                }
                let p = format!("{d}/f{i}");
                if i % 7 == 0 {
                    t.symlink(&p, "../x", file(0o777)).unwrap();
                } else {
                    t.put_text(&p, &p, file(0o644)).unwrap();
                }
                n += 1;
            }
        }
    }
    assert!(t.entries().len() >= 50_000);
    check_all(&dir, &t, 1 << 30);
}

/// One step of building a random tree.
#[derive(Debug, Clone)]
struct Op {
    parent: usize,
    name: String,
    kind: u8,
    size: usize,
    seed: u8,
    xattr: u8,
}

fn op() -> impl Strategy<Value = Op> {
    (
        any::<usize>(),
        prop_oneof![4 => "[a-zA-Z0-9_-][a-zA-Z0-9._-]{0,20}", 1 => "[a-z]{200,255}", 1 => "[à-ÿ]{1,10}"],
        0u8..10,
        prop_oneof![3 => 0usize..5000, 1 => 0usize..70_000],
        any::<u8>(),
        0u8..6,
    )
        .prop_map(|(parent, name, kind, size, seed, xattr)| Op { parent, name, kind, size, seed, xattr })
}

fn random_tree(dir: &Path, ops: &[Op]) -> Tree {
    let mut t = new_tree(dir);
    let mut dirs = vec!["/".to_string()];
    let mut files: Vec<String> = Vec::new();
    for o in ops {
        let parent = &dirs[o.parent % dirs.len()];
        if o.name.len() > 255 || o.name == "." || o.name == ".." {
            continue;
        }
        let p = format!("{}/{}", parent.trim_end_matches('/'), o.name);
        if t.get(&p).is_some() || p == "/lost+found" {
            continue;
        }
        let mut e = file(0o600 + (o.seed as u32 % 0o200));
        e.uid = o.seed as u32 * 1000;
        e.gid = o.seed as u32 * 70_000;
        e.mtime = o.seed as i64 * 10_000_000;
        match o.xattr {
            1 => {
                e.xattrs.insert("security.selinux".into(), label("usr_t"));
            }
            2 => {
                e.xattrs.insert("security.selinux".into(), label("bin_t"));
                e.xattrs.insert("security.capability".into(), caps());
            }
            3 => {
                e.xattrs
                    .insert("user.blob".into(), vec![o.seed; o.size % 3000]);
            }
            _ => {}
        }
        match o.kind {
            0 | 1 => {
                e.kind = Kind::Dir;
                e.mode = 0o755;
                t.put_dir(&p, e).unwrap();
                dirs.push(p);
            }
            2..=4 => {
                // Content with zero blocks (holes) when the seed says so.
                let body: Vec<u8> = (0..o.size)
                    .map(|i| {
                        if o.seed % 3 == 0 && (i / 4096) % 2 == 1 {
                            0
                        } else {
                            (i as u8) ^ o.seed
                        }
                    })
                    .collect();
                t.write_file(&p, &mut &body[..], e).unwrap();
                files.push(p);
            }
            5 if !files.is_empty() => {
                let target = files[o.seed as usize % files.len()].clone();
                t.hardlink(&p, &target).unwrap();
            }
            6 => {
                let target = "t/".repeat(o.size % 300) + "end";
                e.mode = 0o777;
                t.symlink(&p, &target, e).unwrap();
            }
            7 => {
                e.kind = Kind::CharDev {
                    major: o.seed as u32,
                    minor: o.size as u32,
                };
                t.special(&p, e).unwrap();
            }
            8 => {
                e.kind = Kind::Fifo;
                t.special(&p, e).unwrap();
            }
            _ => {
                e.kind = Kind::Socket;
                t.special(&p, e).unwrap();
            }
        }
    }
    t
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn random_trees_pass_e2fsck_and_read_back(ops in proptest::collection::vec(op(), 1..150)) {
        let dir = common::temp_dir("ext4-prop");
        let t = random_tree(&dir, &ops);
        check_all(&dir, &t, 64 << 20);
        let _ = fs::remove_dir_all(&dir);
    }
}
