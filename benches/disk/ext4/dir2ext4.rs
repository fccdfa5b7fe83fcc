//! Benchmark helper: a host directory (copied into a staging tree and rescanned, untimed) written
//! as an ext4 image by kiln's writer (timed). `dir2ext4 DIR IMAGE SIZE_MIB [RUNS]`.

use std::fs::File;
use std::process::Command;
use std::time::Instant;

use kiln::emit::disk::ext4::{self, Ext4Options, Source};
use kiln::tree::Tree;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, image, size, rest @ ..] = args.as_slice() else {
        eprintln!("usage: dir2ext4 DIR IMAGE SIZE_MIB [RUNS]");
        std::process::exit(2);
    };
    let size: u64 = size.parse::<u64>().expect("SIZE_MIB") << 20;
    let runs: usize = rest.first().map_or(5, |r| r.parse().expect("RUNS"));
    let stage = format!("{image}.stage");
    let _ = std::fs::remove_dir_all(&stage);
    let mut tree = Tree::create(stage.as_ref()).expect("staging directory");
    let cp = Command::new("cp")
        .args(["-a", &format!("{dir}/."), &stage])
        .status()
        .expect("cp");
    assert!(cp.success());
    tree.rescan().expect("rescan");
    let opts = Ext4Options {
        uuid: *b"kiln-bench-uuid!",
        hash_seed: *b"kiln-bench-seed!",
        timestamp: 1_700_000_000,
        ..Default::default()
    };
    let src = Source {
        tree: &tree,
        root: "/",
        mounts: &[],
    };
    let mut times = Vec::new();
    for _ in 0..runs {
        let _ = std::fs::remove_file(image);
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(image)
            .expect("image");
        f.set_len(size).expect("set_len");
        let t = Instant::now();
        let rep = ext4::write(&f, 0, size, &src, &opts).expect("ext4 write");
        f.sync_all().expect("sync");
        times.push(t.elapsed().as_secs_f64());
        eprintln!("{rep:?}");
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{} entries: median {:.3} s, min {:.3} s, max {:.3} s",
        tree.entries().len(),
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
    let _ = std::fs::remove_dir_all(&stage);
}
