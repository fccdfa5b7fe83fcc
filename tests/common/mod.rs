//! Helpers shared by the integration tests: the repository root and the definition files in it.
// Each test crate compiles this module and uses only some of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

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
