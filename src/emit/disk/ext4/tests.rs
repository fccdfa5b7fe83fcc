//! Round trips through the writer and kiln's own reader (the e2fsprogs checks are in
//! tests/ext4.rs).

use std::collections::BTreeMap;
use std::fs::File;

use super::read::FileKind;
use super::*;
use crate::tree::Entry;

fn entry(kind: Kind, mode: u32) -> Entry {
    Entry {
        kind,
        mode,
        uid: 1000,
        gid: 70000,
        mtime: 1_600_000_000,
        xattrs: BTreeMap::new(),
    }
}

fn file() -> Entry {
    entry(
        Kind::File {
            size: 0,
            link: None,
        },
        0o644,
    )
}

fn image(dir: &std::path::Path, size: u64) -> File {
    let f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join("img"))
        .unwrap();
    f.set_len(size).unwrap();
    f
}

fn opts() -> Ext4Options {
    Ext4Options {
        uuid: [7; 16],
        hash_seed: [9; 16],
        label: "root".into(),
        timestamp: 1_700_000_000,
        ..Default::default()
    }
}

#[test]
fn round_trip_through_the_reader() {
    let d = tempfile::tempdir().unwrap();
    let mut t = Tree::create(&d.path().join("root"))
        .unwrap()
        .without_real_owners();
    let mut e = file();
    e.xattrs.insert(
        "security.capability".into(),
        vec![1, 0, 0, 2, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    e.xattrs.insert(
        "security.selinux".into(),
        b"system_u:object_r:ping_exec_t:s0\0".to_vec(),
    );
    t.mkdir_p("/usr/bin", 0o755, 5).unwrap();
    t.put_text("/usr/bin/ping", "ELF", e).unwrap();
    t.hardlink("/usr/bin/ping6", "/usr/bin/ping").unwrap();
    t.symlink("/bin", "usr/bin", entry(Kind::Fifo, 0o777))
        .unwrap();
    let long = "x/".repeat(100);
    t.symlink("/long", &long, entry(Kind::Fifo, 0o777)).unwrap();
    t.special(
        "/dev/sda",
        entry(Kind::BlockDev { major: 8, minor: 0 }, 0o660),
    )
    .unwrap();
    t.special(
        "/dev/nvme",
        entry(
            Kind::CharDev {
                major: 511,
                minor: 70000,
            },
            0o600,
        ),
    )
    .unwrap();
    let body: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
    t.write_file("/big", &mut &body[..], file()).unwrap();

    let img = image(d.path(), 64 << 20);
    let src = Source {
        tree: &t,
        root: "/",
        mounts: &[],
    };
    let rep = write(&img, 0, 64 << 20, &src, &opts()).unwrap();
    assert_eq!(rep.inodes_used, 10 + 10);
    assert_eq!(rep.blocks, 16384);

    let r = Ext4Reader::open(img.try_clone().unwrap(), 0).unwrap();
    assert_eq!(r.info().label, "root");
    assert_eq!(r.info().free_blocks, rep.free_blocks);
    let st = r.stat("/usr/bin/ping").unwrap();
    assert_eq!(
        (st.kind, st.mode, st.uid, st.gid, st.links),
        (FileKind::File, 0o644, 1000, 70000, 2)
    );
    assert_eq!(st.ino, r.stat("/usr/bin/ping6").unwrap().ino);
    assert_eq!(r.read_file("/usr/bin/ping6").unwrap(), b"ELF");
    assert_eq!(
        r.xattrs("/usr/bin/ping").unwrap(),
        t.get("/usr/bin/ping").unwrap().xattrs
    );
    assert_eq!(r.read_link("/bin").unwrap(), "usr/bin");
    assert_eq!(r.read_link("/long").unwrap(), long);
    assert_eq!(r.stat("/dev/sda").unwrap().rdev, (8, 0));
    assert_eq!(r.stat("/dev/nvme").unwrap().rdev, (511, 70000));
    assert_eq!(r.read_file("/big").unwrap(), body);
    assert_eq!(r.stat("/").unwrap().links, 5); // itself twice, dev, lost+found, usr
    let names: Vec<String> = r.read_dir("/").unwrap().into_iter().map(|e| e.0).collect();
    assert_eq!(names, ["big", "bin", "dev", "long", "lost+found", "usr"]);
    assert_eq!(r.stat("/lost+found").unwrap().size, 16384);
}

#[test]
fn sizes_and_options_are_checked() {
    let d = tempfile::tempdir().unwrap();
    let t = Tree::create(&d.path().join("root")).unwrap();
    let img = image(d.path(), 1 << 20);
    let src = Source {
        tree: &t,
        root: "/",
        mounts: &[],
    };
    let e = write(&img, 0, 100 << 10, &src, &opts()).unwrap_err();
    assert!(matches!(e, Ext4Error::TooSmall { .. }), "{e}");
    // 1 MiB is small but enough, without a journal (as mke2fs).
    let rep = write(&img, 0, 1 << 20, &src, &opts()).unwrap();
    assert_eq!((rep.blocks, rep.journal_blocks), (256, 0));
    let e = write(&img, 4096, 1 << 20, &src, &opts()).unwrap_err();
    assert!(matches!(e, Ext4Error::Options(_)), "{e}");
    let mut o = opts();
    o.label = "a label of more than sixteen bytes".into();
    assert!(matches!(
        write(&img, 0, 1 << 20, &src, &o),
        Err(Ext4Error::Options(_))
    ));
}

#[test]
fn a_tree_too_large_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let mut t = Tree::create(&d.path().join("root"))
        .unwrap()
        .without_real_owners();
    let body = vec![1u8; 4 << 20];
    t.write_file("/f", &mut &body[..], file()).unwrap();
    let img = image(d.path(), 2 << 20);
    let src = Source {
        tree: &t,
        root: "/",
        mounts: &[],
    };
    let mut o = opts();
    o.journal_blocks = Some(0);
    let e = write(&img, 0, 2 << 20, &src, &o).unwrap_err();
    assert!(
        matches!(
            e,
            Ext4Error::Full {
                content_bytes: 4194304,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("/f"), "{e}");
}
