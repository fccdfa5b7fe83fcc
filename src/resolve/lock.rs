//! The lockfile: for each architecture, the exact packages (NEVRA, repository, location, sha256,
//! size) a definition resolved to, plus a hash of the inputs so a stale lock is detected.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::definition::{Arch, Definition};

pub const FORMAT: u32 = 1;

/// One locked package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    pub nevra: String,
    pub repo: String,
    pub location: String,
    pub sha256: String,
    pub size: u64,
}

/// A repository as it was when locked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedRepo {
    pub id: String,
    pub baseurl: String,
    /// sha256 of the repomd.xml the packages were chosen from.
    pub revision: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedArch {
    /// Hash of everything in the definition that decides the package set for this arch.
    pub inputs: String,
    pub repositories: Vec<LockedRepo>,
    pub packages: Vec<LockedPackage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lockfile {
    pub version: u32,
    pub definition: String,
    pub architectures: BTreeMap<String, LockedArch>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot read lockfile {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("lockfile {path} is malformed: {message}")]
    Malformed { path: PathBuf, message: String },
    #[error("lockfile {path} has format version {found}; this kiln reads version {FORMAT}")]
    Version { path: PathBuf, found: u32 },
    #[error("lockfile {path} has no entry for {arch}; run `kiln lock` again")]
    MissingArch { path: PathBuf, arch: Arch },
    #[error(
        "lockfile {path} is out of date for {arch}: the definition's repositories or packages changed since it was written; run `kiln lock` again"
    )]
    Stale { path: PathBuf, arch: Arch },
}

/// Where the lockfile of a definition lives: `NAME.lock.yaml` beside `NAME.yaml`.
pub fn path_for(definition: &Path) -> PathBuf {
    let stem = definition
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    definition.with_file_name(format!("{stem}.lock.yaml"))
}

/// A URL as the lockfile records it: local repositories inside the definition's directory are
/// written relative to it (`file:sample-repo`), so a lockfile stays valid in another checkout.
pub fn portable_url(url: &str, def_dir: &Path) -> String {
    let dir = std::path::absolute(def_dir).unwrap_or_else(|_| def_dir.to_path_buf());
    let prefix = format!("file://{}/", crate::definition::normalize(&dir).display());
    match url.strip_prefix(&prefix) {
        Some(rest) => format!("file:{rest}"),
        None if url == prefix.trim_end_matches('/') => "file:.".to_string(),
        None => url.to_string(),
    }
}

/// Hash of what resolution depends on: repositories, the package lists and switches, the
/// release and architecture. Cosmetic changes (names, descriptions, outputs) do not change it.
pub fn inputs_hash(def: &Definition, arch: Arch, def_dir: &Path) -> String {
    let repos: Vec<serde_json::Value> = def
        .repositories
        .iter()
        .filter(|r| r.enabled)
        .map(|r| {
            let baseurl: Vec<String> = r.baseurl.iter().map(|u| portable_url(u, def_dir)).collect();
            serde_json::json!({
                "id": r.id, "baseurl": baseurl, "metalink": r.metalink, "mirrorlist": r.mirrorlist,
                "priority": r.priority, "cost": r.cost, "excludes": r.excludes,
            })
        })
        .collect();
    let runtime = def
        .outputs
        .oci
        .as_ref()
        .map(|o| o.runtime_packages.clone())
        .unwrap_or_default();
    let inputs = serde_json::json!({
        "arch": arch.rpm_name(),
        "releasever": def.releasever,
        "repositories": repos,
        "install": def.packages.install,
        "remove": def.packages.remove,
        "exclude": def.packages.exclude,
        "weak-deps": def.packages.weak_deps,
        "runtime-packages": runtime,
    });
    format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(inputs.to_string().as_bytes()))
    )
}

impl Lockfile {
    /// Renders the lockfile: YAML, one package per line, sorted, so diffs read well.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# kiln lockfile for {}: the exact packages `kiln build --locked` installs.",
            self.definition
        );
        let _ = writeln!(
            s,
            "# Written by `kiln lock`; do not edit. Run `kiln lock` again after changing the definition."
        );
        let _ = writeln!(s, "version: {}", self.version);
        let _ = writeln!(s, "definition: {}", quote(&self.definition));
        let _ = writeln!(s, "architectures:");
        for (arch, a) in &self.architectures {
            let _ = writeln!(s, "  {arch}:");
            let _ = writeln!(s, "    inputs: {}", quote(&a.inputs));
            let _ = writeln!(s, "    repositories:");
            for r in &a.repositories {
                let _ = writeln!(
                    s,
                    "      - {{id: {}, baseurl: {}, revision: {}}}",
                    quote(&r.id),
                    quote(&r.baseurl),
                    quote(&r.revision)
                );
            }
            let _ = writeln!(s, "    packages:");
            for p in &a.packages {
                let _ = writeln!(
                    s,
                    "      - {{nevra: {}, repo: {}, sha256: {}, size: {}, location: {}}}",
                    quote(&p.nevra),
                    quote(&p.repo),
                    quote(&p.sha256),
                    p.size,
                    quote(&p.location)
                );
            }
        }
        s
    }

    pub fn read(path: &Path) -> Result<Lockfile, LockError> {
        let text = std::fs::read_to_string(path).map_err(|source| LockError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let options = serde_saphyr::options! { strict_booleans: true };
        let lock: Lockfile = serde_saphyr::from_str_with_options(&text, options).map_err(|e| {
            LockError::Malformed {
                path: path.to_path_buf(),
                message: e.to_string(),
            }
        })?;
        if lock.version != FORMAT {
            return Err(LockError::Version {
                path: path.to_path_buf(),
                found: lock.version,
            });
        }
        Ok(lock)
    }

    /// The locked packages for `arch`, if the lock still matches the definition.
    pub fn for_arch(
        &self,
        path: &Path,
        def: &Definition,
        arch: Arch,
    ) -> Result<&LockedArch, LockError> {
        let def_dir = path.parent().unwrap_or(Path::new("."));
        let a = self
            .architectures
            .get(arch.rpm_name())
            .ok_or_else(|| LockError::MissingArch {
                path: path.to_path_buf(),
                arch,
            })?;
        if a.inputs != inputs_hash(def, arch, def_dir) {
            return Err(LockError::Stale {
                path: path.to_path_buf(),
                arch,
            });
        }
        Ok(a)
    }
}

/// YAML double-quoted scalar (always quoted: versions like 1.10 must stay text).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Lockfile {
        let mut architectures = BTreeMap::new();
        architectures.insert(
            "x86_64".to_string(),
            LockedArch {
                inputs: "sha256:00".into(),
                repositories: vec![LockedRepo {
                    id: "base".into(),
                    baseurl: "file:///r \"x\"".into(),
                    revision: "ab".into(),
                }],
                packages: vec![LockedPackage {
                    nevra: "bash-1:5.2-1.x86_64".into(),
                    repo: "base".into(),
                    location: "Packages/bash.rpm".into(),
                    sha256: "cd".into(),
                    size: 42,
                }],
            },
        );
        Lockfile {
            version: FORMAT,
            definition: "demo.yaml".into(),
            architectures,
        }
    }

    #[test]
    fn renders_and_reads_back() {
        let lock = sample();
        let text = lock.render();
        assert!(text.contains("      - {nevra: \"bash-1:5.2-1.x86_64\", repo: \"base\", sha256: \"cd\", size: 42, location: \"Packages/bash.rpm\"}\n"));
        let dir = std::env::temp_dir().join(format!("kiln-lock-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("demo.lock.yaml");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(Lockfile::read(&path).unwrap(), lock);
        std::fs::write(&path, text.replace("version: 1", "version: 9")).unwrap();
        assert!(matches!(
            Lockfile::read(&path),
            Err(LockError::Version { found: 9, .. })
        ));
        std::fs::write(&path, "packages: [").unwrap();
        assert!(matches!(
            Lockfile::read(&path),
            Err(LockError::Malformed { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn local_urls_are_recorded_relative_to_the_definition() {
        let dir = std::path::absolute("examples").unwrap();
        let url = format!("file://{}/sample-repo", dir.display());
        assert_eq!(
            portable_url(&url, Path::new("examples")),
            "file:sample-repo"
        );
        assert_eq!(
            portable_url("https://x/y", Path::new("examples")),
            "https://x/y"
        );
        assert_eq!(
            portable_url("file:///srv/repo", Path::new("examples")),
            "file:///srv/repo"
        );
    }

    #[test]
    fn lock_path() {
        assert_eq!(
            path_for(Path::new("a/demo.yaml")),
            PathBuf::from("a/demo.lock.yaml")
        );
    }
}
