//! Helpers shared by the integration tests: the repository root and the definition files in it.
// Each test crate compiles this module and uses only some of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.yaml` file under `dir` (relative to the repository root), recursively, sorted; the
/// paths returned are relative to the root too, so messages about them stay short and stable.
pub fn yaml_files(dir: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path.strip_prefix(root()).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(&root().join(dir), &mut out);
    out.sort();
    out
}

/// The definitions kiln ships or documents, which must all be valid.
pub fn shipped_definitions() -> Vec<PathBuf> {
    let mut files = yaml_files("examples");
    files.extend(yaml_files("image-configs"));
    files.extend(yaml_files("tests/definitions/valid"));
    files
}

/// The fixture repository, built once per test process.
pub fn fixture_repo() -> &'static Path {
    static REPO: OnceLock<PathBuf> = OnceLock::new();
    REPO.get_or_init(|| {
        let out = Command::new(root().join("tests/fixtures/build"))
            .current_dir(root())
            .output()
            .expect("tests/fixtures/build runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .next()
                .unwrap(),
        )
    })
}

/// The Debian-binary fixture repository of a profile (`minimal`, `boot`, `server`), built once.
pub fn debian_repo(profile: &str) -> PathBuf {
    debian_fixture(&format!("debian-{profile}"))
}

/// A repository `tests/fixtures/build --debian` makes (`debian-server`, `azl-alias`), built once.
pub fn debian_fixture(name: &str) -> PathBuf {
    static REPOS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    let repos = REPOS.get_or_init(|| {
        let out = Command::new(root().join("tests/fixtures/build"))
            .arg("--debian")
            .current_dir(root())
            .output()
            .expect("tests/fixtures/build runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(PathBuf::from)
            .collect()
    });
    repos
        .iter()
        .find(|p| p.ends_with(name))
        .unwrap_or_else(|| panic!("no {name} among {repos:?}"))
        .clone()
}

/// A fresh scratch directory for one test, under target/test-tmp (removed and recreated).
pub fn temp_dir(name: &str) -> PathBuf {
    let base = root().join("target/test-tmp");
    // Directories of test processes that are gone are removed, whichever test made them: disk
    // images and trees add up to gigabytes, and CI's disk is small. KILN_KEEP_TEST_DIRS=1 keeps
    // them for a look after a failure.
    if std::env::var_os("KILN_KEEP_TEST_DIRS").is_none()
        && let Ok(entries) = std::fs::read_dir(&base)
    {
        for e in entries.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = file
                .rsplit_once('-')
                .and_then(|(_, pid)| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let d = base.join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The SOURCE_DATE_EPOCH the build tests use.
pub const EPOCH: &str = "1700000000";

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `cmd`, which must succeed; its output otherwise goes into the panic.
pub fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// `kiln build DEF --format FORMATS --output OUT` with the tests' package cache,
/// SOURCE_DATE_EPOCH and no colour, to add arguments or environment to.
pub fn kiln_build_cmd(def: &Path, out: &Path, formats: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.args([
        "build",
        def.to_str().unwrap(),
        "--format",
        formats,
        "--output",
    ])
    .arg(out)
    .env("KILN_CACHE_DIR", root().join("target/test-tmp/build-cache"))
    .env("NO_COLOR", "1")
    .env("SOURCE_DATE_EPOCH", EPOCH);
    cmd
}

pub fn kiln_build(def: &Path, out: &Path, formats: &str) -> std::process::Output {
    kiln_build_cmd(def, out, formats).output().unwrap()
}

/// The repository a test definition installs from.
pub enum Repo {
    /// The kiln fixture repository (tests/fixtures/specs).
    Fixture,
    /// A Debian-binary repository: `minimal`, `boot` or `server`.
    Debian(&'static str),
}

/// Writes `dir/NAME.yaml`: name, x86_64, the repository with its key, then `body` (YAML).
pub fn write_definition(dir: &Path, name: &str, repo: Repo, body: &str) -> PathBuf {
    let (path, key) = match repo {
        Repo::Fixture => (fixture_repo().to_path_buf(), "RPM-GPG-KEY-kiln-test"),
        Repo::Debian(profile) => (debian_repo(profile), "RPM-GPG-KEY-test"),
    };
    let def = format!(
        "name: {name}\narchitectures: [x86_64]\nrepositories:\n  - id: repo\n    baseurl: [file://{repo}]\n    gpgkey: [file://{repo}/{key}]\n{body}",
        repo = path.display()
    );
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, def).unwrap();
    file
}

/// kiln's mtree manifest: path → keyword map (paths unescaped, `.` is the root).
pub fn read_mtree(path: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut words = line.split(' ');
        let name = unescape(words.next().unwrap());
        let kv = words
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        out.insert(name, kv);
    }
    out
}

pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            out.push(u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap());
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// pyspdxtools (PyPI spdx-tools, installed by tests/run) must accept the SPDX document.
pub fn spdx_validate(doc: &Path) {
    let out = Command::new("pyspdxtools")
        .arg("-i")
        .arg(doc)
        .output()
        .expect("pyspdxtools (pip install spdx-tools; tests/run installs it)");
    assert!(
        out.status.success(),
        "pyspdxtools rejects {}:\n{}{}",
        doc.display(),
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// `fsck.fat -n -v` on the FAT file system at `[start, start + size)` of a disk image, which is
/// copied out sparsely first (fsck.fat takes no offset) and removed after; returns what it said.
pub fn fsck_fat_at(img: &Path, start: u64, size: u64, scratch: &Path) -> String {
    use std::os::unix::fs::FileExt;
    let part = scratch.join("fat-partition.img");
    {
        let src = std::fs::File::open(img).unwrap();
        let dst = std::fs::File::create(&part).unwrap();
        dst.set_len(size).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        for (from, to) in kiln::emit::disk::sparse::data_ranges(&src, start + size).unwrap() {
            let mut at = from.max(start);
            while at < to {
                let n = ((to - at) as usize).min(buf.len());
                src.read_exact_at(&mut buf[..n], at).unwrap();
                dst.write_all_at(&buf[..n], at - start).unwrap();
                at += n as u64;
            }
        }
    }
    let out = Command::new("fsck.fat")
        .args(["-n", "-v"])
        .arg(&part)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&part);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "fsck.fat -n:\n{all}");
    all
}

/// `e2fsck -fn` on the ext4 file system at byte `offset` of a disk image, read in place
/// (`?offset=` is e2fsprogs' unix I/O option); returns its report.
pub fn e2fsck_at(img: &Path, offset: u64) -> String {
    let e = Command::new("e2fsck")
        .arg("-fn")
        .arg(format!("{}?offset={offset}", img.display()))
        .output()
        .unwrap();
    assert!(
        e.status.success(),
        "e2fsck -fn:\n{}{}",
        text(&e.stdout),
        text(&e.stderr)
    );
    text(&e.stdout)
}
