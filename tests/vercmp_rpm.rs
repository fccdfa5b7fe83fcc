//! Differential test: kiln's rpmvercmp and EVR ordering against rpm's own (`rpm.vercmp` through
//! `rpm --eval` Lua) on thousands of generated pairs, in one rpm process.

use std::cmp::Ordering;
use std::io::Write;
use std::process::Command;

use kiln::resolve::evr::{Evr, vercmp};

/// A small deterministic generator (xorshift), so failures reproduce without a seed file.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick(&mut self, chars: &[u8]) -> char {
        chars[self.below(chars.len() as u64) as usize] as char
    }
}

/// Versions built from the pieces that matter: digit runs (with leading zeros), letter runs,
/// separators, tildes and carets.
fn version(rng: &mut Rng) -> String {
    let mut s = String::new();
    let parts = 1 + rng.below(5);
    for i in 0..parts {
        if i > 0 || rng.below(8) == 0 {
            s.push(rng.pick(b"..._+~^"));
        }
        match rng.below(3) {
            0 | 1 => {
                for _ in 0..1 + rng.below(4) {
                    s.push(rng.pick(b"0001234567899"));
                }
            }
            _ => {
                for _ in 0..1 + rng.below(3) {
                    s.push(rng.pick(b"abcrgitpreZ"));
                }
            }
        }
    }
    s
}

fn rpm_vercmp(tag: &str, pairs: &[(String, String)]) -> Vec<Ordering> {
    let mut file = std::env::temp_dir();
    file.push(format!("kiln-vercmp-{}-{tag}.txt", std::process::id()));
    let mut f = std::fs::File::create(&file).unwrap();
    for (a, b) in pairs {
        writeln!(f, "{a} {b}").unwrap();
    }
    drop(f);
    let script = format!(
        // rpm's Lua `print` adds no newline between calls: collect, then print once.
        "%{{lua: local t = {{}}; for line in io.lines(\"{}\") do local a,b = line:match(\"^(%S+) (%S+)$\"); t[#t+1] = rpm.vercmp(a,b) end; print(table.concat(t, \"\\n\"))}}",
        file.display()
    );
    let out = Command::new("rpm")
        .args(["--eval", &script])
        .output()
        .expect("rpm is installed (tests/prereqs.txt)");
    std::fs::remove_file(&file).ok();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.trim().parse::<i32>().unwrap().cmp(&0))
        .collect()
}

#[test]
fn vercmp_agrees_with_rpm_on_generated_versions() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut pairs = Vec::new();
    for _ in 0..4000 {
        let a = version(&mut rng);
        // Often compare against a small edit of `a`, where the interesting cases are.
        let b = if rng.below(2) == 0 {
            let mut b = a.clone();
            b.push(rng.pick(b"0a~^.1"));
            b
        } else {
            version(&mut rng)
        };
        pairs.push((a, b));
    }
    let expected = rpm_vercmp("vercmp", &pairs);
    assert_eq!(expected.len(), pairs.len());
    let wrong: Vec<String> = pairs
        .iter()
        .zip(&expected)
        .filter(|((a, b), want)| vercmp(a, b) != **want)
        .map(|((a, b), want)| format!("{a} vs {b}: rpm {want:?}, kiln {:?}", vercmp(a, b)))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} disagreements:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn evr_order_agrees_with_rpm() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let mut pairs = Vec::new();
    for _ in 0..2000 {
        let evr = |rng: &mut Rng| {
            let epoch = if rng.below(4) == 0 {
                format!("{}:", rng.below(3))
            } else {
                String::new()
            };
            format!("{epoch}{}-{}", version(rng), version(rng))
        };
        pairs.push((evr(&mut rng), evr(&mut rng)));
    }
    let expected = rpm_vercmp("evr", &pairs);
    assert_eq!(expected.len(), pairs.len());
    for ((a, b), want) in pairs.iter().zip(&expected) {
        assert_eq!(Evr::parse(a).cmp_full(&Evr::parse(b)), *want, "{a} vs {b}");
    }
}
