//! Benchmark helper: a `kiln build --format dir` output (tree and mtree manifest, loaded untimed)
//! written as the fixed VHD the disk backend makes of it (timed). See benches/disk/vhd/run.
//!
//! `dir2vhd TREE MTREE VHD RUNS [NAME VERSION NEVRAS]`: the default Azure layout (5 GiB, 200 MiB
//! ESP, ext4 root), SOURCE_DATE_EPOCH as the build's epoch. With the image's name, version and a
//! file of its installed packages' NEVRAs (one a line), the identity seed is the build's, so the
//! VHD is byte for byte the one `kiln build` wrote. Prints one line per run:
//! `write SECONDS sha256 SECONDS DIGEST` (the disk written and synced; then the artifact's
//! sha256, which the backend computes for every artifact).

use std::collections::BTreeMap;
use std::fs::File;
use std::process::Command;
use std::time::Instant;

use kiln::definition::{Arch, DiskOutput};
use kiln::emit::disk::{layout, vhd, write_disk};
use kiln::tree::{Kind, Tree};

/// mtree's `\ooo` escapes back to bytes.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            out.push(u8::from_str_radix(&s[i + 1..i + 4], 8).expect("octal escape"));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("UTF-8 path")
}

/// Puts the manifest's owners, modes, times, xattrs and special files on the rescanned tree:
/// a rescan reads no xattrs and keeps device nodes out, and the build's manifest is the truth.
fn apply_mtree(tree: &mut Tree, mtree: &str) {
    let mut seen = 0;
    for line in mtree.lines().filter(|l| !l.starts_with('#')) {
        let mut words = line.split(' ');
        let name = unescape(words.next().expect("path"));
        let path = match name.trim_start_matches('.') {
            "" => "/".to_string(),
            p => p.to_string(),
        };
        let kv: BTreeMap<&str, &str> = words.filter_map(|w| w.split_once('=')).collect();
        let dev = || {
            let d: Vec<u32> = kv["device"]
                .split(',')
                .skip(1)
                .map(|n| n.parse().expect("device number"))
                .collect();
            (d[0], d[1])
        };
        let special = match kv["type"] {
            "char" => Some(Kind::CharDev {
                major: dev().0,
                minor: dev().1,
            }),
            "block" => Some(Kind::BlockDev {
                major: dev().0,
                minor: dev().1,
            }),
            "fifo" => Some(Kind::Fifo),
            "socket" => Some(Kind::Socket),
            _ => None,
        };
        if let Some(kind) = special {
            let mut e = kiln::tree::Entry::dir(0);
            e.kind = kind;
            tree.special(&path, e).expect("special file");
        }
        let e = tree
            .get_mut(&path)
            .unwrap_or_else(|| panic!("{path} is in the manifest, not in the tree"));
        e.mode = u32::from_str_radix(kv["mode"], 8).expect("mode");
        e.uid = kv["uid"].parse().expect("uid");
        e.gid = kv["gid"].parse().expect("gid");
        e.mtime = kv["time"]
            .split('.')
            .next()
            .and_then(|t| t.parse().ok())
            .expect("time");
        e.xattrs = kv
            .iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix("xattr.")?;
                Some((unescape(name), hex::decode(v).expect("xattr value")))
            })
            .collect();
        seen += 1;
    }
    assert_eq!(
        seen,
        tree.entries().len(),
        "the tree has paths the manifest does not"
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (dir, mtree, image, runs, ident) = match args.as_slice() {
        [_, d, m, i, r] => (d, m, i, r, None),
        [_, d, m, i, r, n, v, p] => (d, m, i, r, Some((n, v, p))),
        _ => {
            eprintln!("usage: dir2vhd TREE MTREE VHD RUNS [NAME VERSION NEVRAS]");
            std::process::exit(2);
        }
    };
    let runs: usize = runs.parse().expect("RUNS");
    let epoch: i64 = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|e| e.parse().ok())
        .unwrap_or(1_700_000_000);
    let seed = match ident {
        Some((name, version, nevras)) => {
            let list: Vec<String> = std::fs::read_to_string(nevras)
                .expect("NEVRAS")
                .lines()
                .map(str::to_string)
                .collect();
            layout::identity_seed(name, version, &list)
        }
        None => [7; 32],
    };

    let stage = format!("{image}.stage");
    let _ = std::fs::remove_dir_all(&stage);
    let mut tree = Tree::create(stage.as_ref()).expect("staging directory");
    let cp = Command::new("cp")
        .args(["-a", &format!("{dir}/."), &stage])
        .status()
        .expect("cp");
    assert!(cp.success());
    tree.rescan().expect("rescan");
    apply_mtree(&mut tree, &std::fs::read_to_string(mtree).expect("MTREE"));

    let raw_path = format!("{image}.raw");
    for _ in 0..runs {
        let _ = std::fs::remove_file(image);
        let t = Instant::now();
        // As the backend: the layout, the raw disk beside the artifact, the VHD copied from it
        // (only its data), the raw file removed.
        let lay = layout::plan(&DiskOutput::default(), Arch::X86_64, &seed).expect("layout");
        let raw = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&raw_path)
            .expect("raw");
        write_disk(&raw, &lay, &tree, &seed, epoch).expect("disk");
        let dst = File::create(image).expect("VHD");
        let id = layout::derive_bytes(&seed, "vhd-unique-id");
        vhd::write_vhd(&raw, &dst, lay.size, id, epoch).expect("vhd");
        drop(raw);
        std::fs::remove_file(&raw_path).expect("remove raw");
        // What the other two measurements include too: the image on disk.
        dst.sync_all().expect("sync");
        let write = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let (digest, _) = kiln::emit::sha256_file(image.as_ref()).expect("sha256");
        println!(
            "write {write:.3} sha256 {:.3} {digest}",
            t.elapsed().as_secs_f64()
        );
    }
    let _ = std::fs::remove_dir_all(&stage);
}
