//! The report `kiln build` ends with: packages, installed size, time per stage and every artifact
//! with its size and sha256, as summary lines on stdout and, with `--json FILE`, as JSON.
//! Stage progress on stderr: a spinner on a terminal, nothing extra without one.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::definition::Arch;
use crate::emit::{Artifact, DigestOf};

/// What `--json FILE` writes (README.md, "Build report").
#[derive(Debug, Serialize)]
pub struct BuildReport {
    pub kiln_version: &'static str,
    pub definition: PathBuf,
    pub name: String,
    pub version: Option<String>,
    pub images: Vec<ImageReport>,
    pub stages: Vec<StageTime>,
    pub artifacts: Vec<ArtifactReport>,
    pub total_seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct ImageReport {
    pub arch: Arch,
    /// SOURCE_DATE_EPOCH as the build used it.
    pub epoch: i64,
    pub packages: usize,
    /// Sum of the packages' installed sizes (rpm's `%{SIZE}`), bytes.
    pub installed_size: u64,
    pub downloaded: usize,
    pub paths: usize,
}

#[derive(Debug, Serialize)]
pub struct StageTime {
    pub stage: String,
    /// The architecture a per-image stage ran for; none for backends, which write all at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<Arch>,
    pub seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct ArtifactReport {
    pub path: PathBuf,
    /// `oci-layout`, `dir`, `mtree`, `wsl`, `distribution-info`, `vhd`, `raw`, `qcow2`, `sbom`.
    pub kind: &'static str,
    /// Size and sha256 of the file named by `digest_of`.
    pub size: u64,
    pub sha256: String,
    /// `file` (the artifact itself), `oci-manifest` (the layout's image manifest or index
    /// blob) or `mtree` (the dir output's manifest).
    pub digest_of: &'static str,
    /// The artifact's SBOM, for artifacts that hold an image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sbom: Option<PathBuf>,
}

impl ArtifactReport {
    pub fn new(a: &Artifact, sbom: Option<&Path>) -> ArtifactReport {
        let ext = a.path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let name = a
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let kind = match (&a.digest_of, ext) {
            (DigestOf::OciManifest, _) => "oci-layout",
            (DigestOf::Mtree(_), _) => "dir",
            (_, "mtree") => "mtree",
            (_, "wsl") => "wsl",
            (_, "vhd") => "vhd",
            (_, "raw") => "raw",
            (_, "qcow2") => "qcow2",
            _ if name.ends_with(".spdx.json") => "sbom",
            _ if name.ends_with(".DistributionInfo.json") => "distribution-info",
            _ => "file",
        };
        ArtifactReport {
            path: a.path.clone(),
            kind,
            size: a.size,
            sha256: a.sha256.clone(),
            digest_of: match a.digest_of {
                DigestOf::File => "file",
                DigestOf::OciManifest => "oci-manifest",
                DigestOf::Mtree(_) => "mtree",
            },
            sbom: sbom.map(Path::to_path_buf),
        }
    }
}

/// Bytes for people: `512 B`, `2.5 KiB`, `1.3 GiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

impl BuildReport {
    /// The summary lines (stdout, unless quiet).
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let version = self
            .version
            .as_deref()
            .map(|v| format!(" {v}"))
            .unwrap_or_default();
        out.push(format!(
            "built {}{version} in {:.1}s",
            self.name, self.total_seconds
        ));
        for i in &self.images {
            out.push(format!(
                "  {}: {} packages, {} installed",
                i.arch,
                i.packages,
                human_size(i.installed_size)
            ));
        }
        let stages: Vec<String> = self
            .stages
            .iter()
            .map(|s| match s.arch {
                Some(a) if self.images.len() > 1 => {
                    format!("{} ({a}) {:.1}s", s.stage, s.seconds)
                }
                _ => format!("{} {:.1}s", s.stage, s.seconds),
            })
            .collect();
        out.push(format!("  time: {}", stages.join(", ")));
        for a in &self.artifacts {
            let what = match a.digest_of {
                "oci-manifest" => " (image manifest)",
                "mtree" => " (mtree manifest)",
                _ => "",
            };
            out.push(format!(
                "  {}  {}  sha256:{}{what}",
                a.path.display(),
                human_size(a.size),
                a.sha256
            ));
        }
        out
    }

    /// The JSON report, pretty, with a final newline.
    pub fn json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("reports serialize");
        s.push('\n');
        s
    }
}

/// A stage in progress: a spinner on stderr when it is a terminal and not quiet; nothing else,
/// since the plain lines after each stage say the same in logs.
pub struct Spinner {
    bar: Option<ProgressBar>,
    start: Instant,
}

impl Spinner {
    pub fn start(quiet: bool, message: String) -> Spinner {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
                bar.set_style(style);
            }
            bar.set_message(message);
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Spinner {
            bar,
            start: Instant::now(),
        }
    }

    /// Stops the spinner (clearing its line) and returns the time the stage took.
    pub fn finish(self) -> Duration {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        self.start.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(2560), "2.5 KiB");
        assert_eq!(human_size(5 << 30), "5.0 GiB");
    }

    #[test]
    fn artifacts_are_named_by_kind() {
        let a = |path: &str, digest_of| {
            ArtifactReport::new(
                &Artifact {
                    path: path.into(),
                    size: 1,
                    sha256: "0".repeat(64),
                    digest_of,
                    contents: Vec::new(),
                },
                None,
            )
            .kind
        };
        assert_eq!(a("o/x.oci", DigestOf::OciManifest), "oci-layout");
        assert_eq!(a("o/x-x86_64", DigestOf::Mtree("o/x.mtree".into())), "dir");
        assert_eq!(a("o/x-x86_64.mtree", DigestOf::File), "mtree");
        assert_eq!(a("o/x.oci.spdx.json", DigestOf::File), "sbom");
        assert_eq!(
            a("o/x.DistributionInfo.json", DigestOf::File),
            "distribution-info"
        );
        assert_eq!(a("o/x-x86_64.qcow2", DigestOf::File), "qcow2");
    }
}
