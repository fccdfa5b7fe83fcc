//! `kiln build`: per architecture, the package set (resolved, or pinned by the lockfile), the
//! staging tree, and the requested outputs; progress and a summary on the terminal.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use super::push::{self, PushArgs};
use super::report::{ArtifactReport, BuildReport, ImageReport, Spinner, StageTime};
use super::resolve::{apply_repo_overrides, load_options};
use super::{Format, RepoArgs, Ui, exit, load};
use crate::build::{self, StageOptions};
use crate::definition::{Arch, DiskFormat};
use crate::emit::disk::image::Disk;
use crate::emit::oci::Oci;
use crate::emit::wsl::Wsl;
use crate::emit::{Artifact, Backend, Contents, DigestOf, Image, sbom};
use crate::fetch::{FetchOptions, Progress};
use crate::resolve::{self, lock};

pub struct BuildArgs {
    pub definition: PathBuf,
    pub output: PathBuf,
    pub formats: Vec<Format>,
    pub arch: Vec<Arch>,
    pub locked: bool,
    pub repos: RepoArgs,
    pub jobs: Option<usize>,
    pub push: Option<PushArgs>,
    /// Where to write the JSON build report.
    pub json: Option<PathBuf>,
    pub verbose: bool,
    pub quiet: bool,
}

/// The formats a definition asks for when `--format` is not given.
fn definition_formats(def: &crate::definition::Definition) -> Vec<Format> {
    let mut out = Vec::new();
    if let Some(d) = &def.outputs.disk {
        for f in &d.formats {
            out.push(match f {
                DiskFormat::Vhd => Format::Vhd,
                DiskFormat::Vhdx => Format::Vhdx,
                DiskFormat::Raw => Format::Raw,
                DiskFormat::Qcow2 => Format::Qcow2,
            });
        }
    }
    if def.outputs.oci.is_some() {
        out.push(Format::Oci);
    }
    if def.outputs.wsl.is_some() {
        out.push(Format::Wsl);
    }
    out
}

fn host_arch() -> &'static str {
    std::env::consts::ARCH
}

/// Scriptlets of a foreign architecture run only through a registered qemu-user emulator.
fn can_run(arch: Arch) -> bool {
    arch.rpm_name() == host_arch()
        || Path::new(&format!(
            "/proc/sys/fs/binfmt_misc/qemu-{}",
            arch.rpm_name()
        ))
        .exists()
}

pub fn build(ui: &Ui, a: BuildArgs) -> ExitCode {
    let started = Instant::now();
    let Some(loaded) = load(
        ui,
        &a.definition,
        crate::definition::LoadOptions {
            arches: a.arch.clone(),
            repo_files: a.repos.repo_file.clone(),
            ..Default::default()
        },
    ) else {
        return ExitCode::from(exit::FAILURE);
    };
    let formats = if a.formats.is_empty() {
        definition_formats(&loaded.images[0].definition)
    } else {
        a.formats.clone()
    };
    if formats.is_empty() {
        ui.error(format!(
            "{}: the definition has no outputs; give `--format dir` to get the image tree",
            a.definition.display()
        ));
        return ExitCode::from(exit::USAGE);
    }
    let pending: Vec<String> = formats
        .iter()
        .filter(|f| matches!(f, Format::Vhdx))
        .map(|f| format!("{f:?}").to_lowercase())
        .collect();
    if !pending.is_empty() {
        ui.error(format!(
            "the {} output{} not implemented yet; `--format vhd` writes the fixed VHD Azure and Hyper-V take, `raw` and `qcow2` the other disk formats",
            pending.join(", "),
            if pending.len() == 1 { " is" } else { "s are" }
        ));
        return ExitCode::from(exit::NOT_IMPLEMENTED);
    }
    let disk_formats: Vec<DiskFormat> = formats
        .iter()
        .filter_map(|f| match f {
            Format::Vhd => Some(DiskFormat::Vhd),
            Format::Raw => Some(DiskFormat::Raw),
            Format::Qcow2 => Some(DiskFormat::Qcow2),
            _ => None,
        })
        .collect();
    // `--push` is checked (and its credentials found) before building; the push comes last.
    let to_push = match &a.push {
        Some(p) => match push::prepare(ui, p, &formats, a.verbose) {
            Ok(p) => Some(p),
            Err(code) => return code,
        },
        None => None,
    };
    for image in &loaded.images {
        if !can_run(image.arch) {
            ui.error(format!(
                "{} cannot be built on this {} host: its scriptlets need an {} emulator (install qemu-user-static and binfmt-support), or build on an {} machine",
                image.arch.rpm_name(),
                host_arch(),
                image.arch.rpm_name(),
                image.arch.rpm_name()
            ));
            return ExitCode::from(exit::FAILURE);
        }
    }
    let lockfile = if a.locked {
        let path = lock::path_for(&a.definition);
        match lock::Lockfile::read(&path) {
            Ok(l) => Some((path, l)),
            Err(e) => {
                ui.error(format!(
                    "{e} (--locked needs the lockfile `kiln lock` writes)"
                ));
                return ExitCode::from(exit::FAILURE);
            }
        }
    } else {
        None
    };
    if let Err(e) = std::fs::create_dir_all(&a.output) {
        ui.error(format!(
            "cannot create the output directory {}: {e}",
            a.output.display()
        ));
        return ExitCode::from(exit::FAILURE);
    }
    let load_opts = load_options(&a.repos, a.verbose);
    let mut fetch = FetchOptions {
        cache_dir: load_opts.cache_dir.clone(),
        offline: a.repos.offline,
        progress: if a.quiet {
            Progress::Quiet
        } else {
            Progress::Auto
        },
        ..FetchOptions::default()
    };
    if let Some(j) = a.jobs {
        fetch.jobs = j.max(1);
    }
    let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => match v.trim().parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                ui.error(format!("SOURCE_DATE_EPOCH={v} is not a number of seconds"));
                return ExitCode::from(exit::USAGE);
            }
        },
        Err(_) => None,
    };
    let opts = StageOptions { fetch, epoch };

    // Every architecture is staged first (each tree in a work directory beside the outputs);
    // then the backends write from the finished trees; then the trees are published (dir) or
    // removed. A failure anywhere removes every work directory.
    let mut works = WorkDirs(Vec::new());
    let mut staged_all = Vec::new();
    let mut stages: Vec<StageTime> = Vec::new();
    let stage = |name: &str, arch: Option<Arch>, d: std::time::Duration| StageTime {
        stage: name.into(),
        arch,
        seconds: d.as_secs_f64(),
    };
    for image in &loaded.images {
        let arch = image.arch;
        let mut def = image.definition.clone();
        if let Err(e) = apply_repo_overrides(&mut def, &a.repos.repo, arch) {
            ui.error(e);
            return ExitCode::from(exit::USAGE);
        }
        let t = Instant::now();
        let plan = match &lockfile {
            Some((path, l)) => match l.for_arch(path, &def, arch) {
                Ok(locked) => build::plan_locked(locked),
                Err(e) => {
                    ui.error(e);
                    return ExitCode::from(exit::FAILURE);
                }
            },
            None => match resolve::resolve_definition(&def, arch, &load_opts) {
                Ok(r) => build::plan_resolved(&r),
                Err(e) => {
                    ui.error(format!("{} ({arch}): {e}", a.definition.display()));
                    return ExitCode::from(exit::FAILURE);
                }
            },
        };
        stages.push(stage(
            if lockfile.is_some() {
                "lockfile"
            } else {
                "resolve"
            },
            Some(arch),
            t.elapsed(),
        ));
        ui.info(format!(
            "{} ({arch}): {} packages to install",
            def.name,
            plan.len()
        ));
        // Built beside its final place, so the finished tree is renamed in, never copied.
        let work = a.output.join(format!(
            ".kiln-work-{}-{}-{}",
            def.name,
            arch.rpm_name(),
            std::process::id()
        ));
        works.0.push(work.clone());
        let staged = match build::stage(&def, &plan, &work.join("root"), &opts) {
            Ok(s) => {
                let t = &s.timings;
                stages.push(stage("fetch", Some(arch), t.fetch));
                stages.push(stage("install", Some(arch), t.install));
                stages.push(stage("rpmdb", Some(arch), t.rpmdb));
                stages.push(stage("configure", Some(arch), t.configure));
                s
            }
            Err(e) => {
                ui.error(format!("{} ({arch}): {e}", a.definition.display()));
                if let Some(h) = e.help() {
                    eprintln!("  help: {}", h.replace('\n', "\n  "));
                }
                return ExitCode::from(exit::FAILURE);
            }
        };
        report(ui, &staged, a.verbose);
        let mut staged = staged;
        if !disk_formats.is_empty() {
            let spin = Spinner::start(a.quiet, format!("{arch}: boot files"));
            let prepared = build::prepare_disk(
                &mut staged.tree,
                &def,
                arch,
                &staged.install.packages,
                staged.epoch,
            );
            stages.push(stage("boot", Some(arch), spin.finish()));
            match prepared {
                Ok(notes) => {
                    for n in notes {
                        ui.info(format!("  {n}"));
                    }
                }
                Err(e) => {
                    ui.error(format!("{} ({arch}): {e}", a.definition.display()));
                    return ExitCode::from(exit::FAILURE);
                }
            }
        }
        staged_all.push((arch, def, staged));
    }

    let images: Vec<Image<'_>> = staged_all
        .iter()
        .map(|(arch, _, s)| Image {
            tree: &s.tree,
            arch: *arch,
            epoch: s.epoch,
            packages: &s.install.packages,
        })
        .collect();
    // Package files are content-addressed, so one map serves every architecture.
    let rpm_sha256: std::collections::BTreeMap<PathBuf, String> = staged_all
        .iter()
        .flat_map(|(_, _, s)| s.rpm_sha256.clone())
        .collect();
    let def = &staged_all[0].1;
    let disk = Disk {
        formats: disk_formats.clone(),
    };
    let backends: [(Format, &dyn Backend); 3] = [
        (Format::Oci, &Oci),
        (Format::Wsl, &Wsl),
        (Format::Vhd, &disk),
    ];
    // A build either delivers every artifact it was asked for or none: what earlier backends
    // wrote (and the SBOMs beside it) goes again when a later one fails.
    let mut written = Written(Vec::new());
    let mut artifacts: Vec<ArtifactReport> = Vec::new();
    let mut sbom_time = std::time::Duration::ZERO;
    // Writes the SBOM of each image artifact and records both in the report.
    let mut record =
        |ui: &Ui, written: &mut Written, list: &[Artifact], t: Instant| -> Result<(), String> {
            for art in list {
                written.0.push(art.path.clone());
                if a.verbose {
                    // An image layout is a directory: its identity is the manifest's digest.
                    let what = match art.digest_of {
                        DigestOf::OciManifest => format!("manifest sha256:{}", art.sha256),
                        _ => format!("{} bytes, sha256:{}", art.size, art.sha256),
                    };
                    ui.info(format!(
                        "wrote {} ({what}) in {:.1}s",
                        art.path.display(),
                        t.elapsed().as_secs_f64()
                    ));
                }
            }
            for art in list {
                if art.contents.is_empty() {
                    artifacts.push(ArtifactReport::new(art, None));
                    continue;
                }
                let ts = Instant::now();
                let doc = sbom::write(def, art, &images, &rpm_sha256)
                    .map_err(|e| format!("{}: SBOM: {e}", art.path.display()))?;
                sbom_time += ts.elapsed();
                written.0.push(doc.path.clone());
                artifacts.push(ArtifactReport::new(art, Some(&doc.path)));
                artifacts.push(ArtifactReport::new(&doc, None));
            }
            Ok(())
        };
    let mut oci_layout = None;
    for (format, backend) in backends {
        let wanted = match format {
            Format::Vhd => !disk_formats.is_empty(),
            f => formats.contains(&f),
        };
        if !wanted {
            continue;
        }
        let t = Instant::now();
        let spin = Spinner::start(a.quiet, format!("writing the {} output", backend.name()));
        let emitted = backend.emit(def, &images, &a.output);
        stages.push(stage(backend.name(), None, spin.finish()));
        match emitted {
            Ok(list) => {
                if let Err(e) = record(ui, &mut written, &list, t) {
                    ui.error(e);
                    return ExitCode::from(exit::FAILURE);
                }
                // The OCI backend's one artifact is the layout directory.
                if format == Format::Oci {
                    oci_layout = list.first().map(|a| a.path.clone());
                }
            }
            Err(e) => {
                ui.error(format!(
                    "{}: {}: {e}",
                    a.definition.display(),
                    backend.name()
                ));
                return ExitCode::from(exit::FAILURE);
            }
        }
    }
    if formats.contains(&Format::Dir) {
        let t = Instant::now();
        for ((arch, def, s), image) in staged_all.iter().zip(&images) {
            let (dest, manifest) = build::dir_output_paths(&a.output, &def.name, arch.rpm_name());
            if let Err(e) = build::write_dir(&s.tree, &dest, &manifest) {
                ui.error(format!("{} ({arch}): {e}", a.definition.display()));
                return ExitCode::from(exit::FAILURE);
            }
            written.0.push(manifest.clone());
            written.0.push(dest.clone());
            // The tree has no bytes of its own: the manifest, which hashes every file, is its
            // identity.
            let (sha256, size) = match crate::emit::sha256_file(&manifest) {
                Ok(h) => h,
                Err(e) => {
                    ui.error(e);
                    return ExitCode::from(exit::FAILURE);
                }
            };
            let list = [
                Artifact {
                    path: dest.clone(),
                    size,
                    sha256: sha256.clone(),
                    digest_of: DigestOf::Mtree(manifest.clone()),
                    contents: vec![Contents::all(image)],
                },
                Artifact {
                    path: manifest.clone(),
                    size,
                    sha256,
                    digest_of: DigestOf::File,
                    contents: Vec::new(),
                },
            ];
            if let Err(e) = record(ui, &mut written, &list, t) {
                ui.error(e);
                return ExitCode::from(exit::FAILURE);
            }
        }
        stages.push(stage("dir", None, t.elapsed()));
    }
    stages.push(stage("sbom", None, sbom_time));
    drop(images);
    let report = BuildReport {
        kiln_version: env!("CARGO_PKG_VERSION"),
        definition: a.definition.clone(),
        name: def.name.clone(),
        version: def.version.clone(),
        images: staged_all
            .iter()
            .map(|(arch, _, s)| ImageReport {
                arch: *arch,
                epoch: s.epoch,
                packages: s.packages.len(),
                installed_size: s.install.packages.iter().map(|p| p.info.size).sum(),
                downloaded: s.downloaded,
                paths: s.tree.entries().len(),
            })
            .collect(),
        stages,
        artifacts,
        total_seconds: started.elapsed().as_secs_f64(),
    };
    if let Some(path) = &a.json
        && let Err(e) = crate::repo::cache::write_atomic(path, report.json().as_bytes())
    {
        ui.error(format!("--json {}: {e}", path.display()));
        return ExitCode::from(exit::FAILURE);
    }
    for line in report.lines() {
        ui.info(line);
    }
    // Every artifact is complete: they stay whatever the push does.
    written.0.clear();
    // Pushed last, once everything was built: a registry never gets an image of a failed build.
    if let (Some(p), Some(layout)) = (&to_push, &oci_layout)
        && let Err(code) = p.run(ui, layout)
    {
        return code;
    }
    ExitCode::SUCCESS
}

/// Artifacts this build wrote, removed if it fails before the end.
struct Written(Vec<PathBuf>);

impl Drop for Written {
    fn drop(&mut self) {
        for p in &self.0 {
            let removed = if p.is_dir() {
                build::remove_tree(p)
            } else {
                std::fs::remove_file(p)
            };
            if removed.is_ok() {
                eprintln!(
                    "note: removed {}: the build failed after writing it",
                    p.display()
                );
            }
        }
    }
}

/// Work directories of this build, removed when it ends, however it ends.
struct WorkDirs(Vec<PathBuf>);

impl Drop for WorkDirs {
    fn drop(&mut self) {
        for w in &self.0 {
            let _ = build::remove_tree(w);
        }
    }
}

fn report(ui: &Ui, s: &build::Staged, verbose: bool) {
    use crate::say::{note, warning};
    for repo in &s.unsigned_repos {
        warning(format!(
            "repository `{repo}` has gpgcheck: false, so its packages were installed without checking their signatures"
        ));
    }
    for f in &s.install.failed {
        warning(format!(
            "scriptlet failed (the package stays installed, as with rpm): {f}"
        ));
    }
    if !s.install.skipped.is_empty() {
        let mut text = format!(
            "{} scriptlet{} not run:",
            s.install.skipped.len(),
            if s.install.skipped.len() == 1 {
                " was"
            } else {
                "s were"
            }
        );
        for n in &s.install.skipped {
            text.push_str(&format!("\n  {} {}: {}", n.package, n.scriptlet, n.message));
        }
        note(text);
    }
    let mut warned = std::collections::BTreeSet::new();
    for w in &s.install.warnings {
        if warned.insert(w) {
            warning(w);
        }
    }
    for n in &s.configure.notes {
        note(n);
    }
    if verbose {
        for u in &s.configure.unlabelled {
            note(format!("no SELinux label for {u}"));
        }
    }
    let t = &s.timings;
    ui.info(format!(
        "  {} packages ({} downloaded), {} scriptlets run, {} paths; fetch {:.1}s, install {:.1}s, rpmdb {:.1}s, configure {:.1}s",
        s.packages.len(),
        s.downloaded,
        s.install.ran,
        s.tree.entries().len(),
        t.fetch.as_secs_f64(),
        t.install.as_secs_f64(),
        t.rpmdb.as_secs_f64(),
        t.configure.as_secs_f64()
    ));
    if let Some(n) = s.configure.labelled {
        ui.info(format!("  SELinux: {n} paths labelled"));
    }
}
