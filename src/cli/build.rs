//! `kiln build`: per architecture, the package set (resolved, or pinned by the lockfile), the
//! staging tree, and the requested outputs; progress and a summary on the terminal.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::push::{self, PushArgs};
use super::resolve::{apply_repo_overrides, load_options};
use super::{Format, RepoArgs, Ui, exit, load};
use crate::build::{self, StageOptions};
use crate::definition::{Arch, DiskFormat};
use crate::emit::disk::image::Disk;
use crate::emit::oci::Oci;
use crate::emit::wsl::Wsl;
use crate::emit::{Backend, Image};
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
    for image in &loaded.images {
        let arch = image.arch;
        let mut def = image.definition.clone();
        if let Err(e) = apply_repo_overrides(&mut def, &a.repos.repo, arch) {
            ui.error(e);
            return ExitCode::from(exit::USAGE);
        }
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
            Ok(s) => s,
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
            match build::prepare_disk(
                &mut staged.tree,
                &def,
                arch,
                &staged.install.packages,
                staged.epoch,
            ) {
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
    // wrote goes again when a later one fails.
    let mut written = Written(Vec::new());
    let mut oci_layout = None;
    for (format, backend) in backends {
        let wanted = match format {
            Format::Vhd => !disk_formats.is_empty(),
            f => formats.contains(&f),
        };
        if !wanted {
            continue;
        }
        let t = std::time::Instant::now();
        match backend.emit(def, &images, &a.output) {
            Ok(artifacts) => {
                for art in &artifacts {
                    written.0.push(art.path.clone());
                    // An image layout is a directory: its identity is the manifest's digest.
                    let what = if art.path.is_dir() {
                        format!("manifest sha256:{}", art.sha256)
                    } else {
                        format!("{} bytes, sha256:{}", art.size, art.sha256)
                    };
                    ui.info(format!(
                        "wrote {} ({what}) in {:.1}s",
                        art.path.display(),
                        t.elapsed().as_secs_f64()
                    ));
                }
                // The OCI backend's one artifact is the layout directory.
                if format == Format::Oci {
                    oci_layout = artifacts.first().map(|a| a.path.clone());
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
    drop(images);
    if formats.contains(&Format::Dir) {
        for (arch, def, s) in &staged_all {
            let (dest, manifest) = build::dir_output_paths(&a.output, &def.name, arch.rpm_name());
            if let Err(e) = build::write_dir(&s.tree, &dest, &manifest) {
                ui.error(format!("{} ({arch}): {e}", a.definition.display()));
                return ExitCode::from(exit::FAILURE);
            }
            ui.info(format!(
                "wrote {} and {}",
                dest.display(),
                manifest.display()
            ));
        }
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
                std::fs::remove_dir_all(p)
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
    for repo in &s.unsigned_repos {
        eprintln!(
            "warning: repository `{repo}` has gpgcheck: false, so its packages were installed without checking their signatures"
        );
    }
    for f in &s.install.failed {
        eprintln!("warning: scriptlet failed (the package stays installed, as with rpm): {f}");
    }
    if !s.install.skipped.is_empty() {
        eprintln!(
            "note: {} scriptlet{} not run:",
            s.install.skipped.len(),
            if s.install.skipped.len() == 1 {
                " was"
            } else {
                "s were"
            }
        );
        for n in &s.install.skipped {
            eprintln!("  {} {}: {}", n.package, n.scriptlet, n.message);
        }
    }
    let mut warned = std::collections::BTreeSet::new();
    for w in &s.install.warnings {
        if warned.insert(w) {
            eprintln!("warning: {w}");
        }
    }
    for n in &s.configure.notes {
        eprintln!("note: {n}");
    }
    if verbose {
        for u in &s.configure.unlabelled {
            eprintln!("note: no SELinux label for {u}");
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
