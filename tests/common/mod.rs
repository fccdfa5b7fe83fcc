//! Helpers shared by the integration tests: the repository root and the definition files in it.
// Each test crate compiles this module and uses only some of it.
#![allow(dead_code)]

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

/// The Debian-binary fixture repository of a profile (`minimal` or `boot`), built once.
pub fn debian_repo(profile: &str) -> PathBuf {
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
        .find(|p| p.ends_with(format!("debian-{profile}")))
        .unwrap_or_else(|| panic!("no debian-{profile} among {repos:?}"))
        .clone()
}

/// A fresh scratch directory for one test, under target/test-tmp (removed and recreated).
pub fn temp_dir(name: &str) -> PathBuf {
    let d = root()
        .join("target/test-tmp")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
