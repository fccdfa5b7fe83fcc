//! `kiln resolve` and `kiln lock`: repositories from the definition or the command line, the
//! resolved set as a table or JSON, and the lockfile written or checked.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::json;

use super::{RepoArgs, Ui, exit, load};
use crate::definition::{Arch, Definition, Repository};
use crate::repo::{self, LoadOptions, RepoSpec};
use crate::resolve::{self, Request, Resolved, lock};

pub struct ResolveArgs {
    pub args: Vec<String>,
    pub repos: RepoArgs,
    pub arch: Vec<Arch>,
    pub json: bool,
    pub no_weak_deps: bool,
    pub exclude: Vec<String>,
    pub verify: bool,
    pub verbose: bool,
}

/// `--verify`: the answer must be a closed, conflict-free set. Prints what is wrong.
fn verified(ui: &Ui, r: &Resolved) -> bool {
    let problems = crate::resolve::eval::check_closure(&r.pool, &r.resolution.packages);
    for p in &problems {
        ui.error(format!("verify ({}): {p}", r.arch));
    }
    problems.is_empty()
}

pub(crate) fn load_options(repos: &RepoArgs, verbose: bool) -> LoadOptions {
    let mut o = LoadOptions {
        refresh: repos.refresh,
        offline: repos.offline,
        verbose,
        ..LoadOptions::default()
    };
    if let Some(d) = &repos.cache_dir {
        o.cache_dir = d.clone();
    }
    o
}

/// A URL from the command line: a local path becomes a file:// URL.
fn normalize_url(u: &str) -> String {
    if u.contains("://") {
        return u.to_string();
    }
    let p = std::path::absolute(Path::new(u)).unwrap_or_else(|_| PathBuf::from(u));
    format!("file://{}", crate::definition::normalize(&p).display())
}

/// `ID=URL` or `URL`.
fn split_repo(arg: &str) -> (Option<&str>, &str) {
    match arg.split_once('=') {
        Some((id, url)) if !id.is_empty() && !id.contains('/') && !id.contains(':') => {
            (Some(id), url)
        }
        _ => (None, arg),
    }
}

/// Applies `--repo` to a definition: `ID=URL` replaces that repository's locations, a bare URL
/// adds a repository.
pub(crate) fn apply_repo_overrides(
    def: &mut Definition,
    overrides: &[String],
    arch: Arch,
) -> Result<(), String> {
    let mut added = 0;
    for o in overrides {
        let (id, url) = split_repo(o);
        let url = normalize_url(
            &url.replace("$basearch", arch.rpm_name())
                .replace("$releasever", &def.releasever),
        );
        match id {
            Some(id) => {
                let Some(r) = def.repositories.iter_mut().find(|r| r.id == id) else {
                    let known: Vec<&str> = def.repositories.iter().map(|r| r.id.as_str()).collect();
                    return Err(format!(
                        "--repo {o}: the definition has no repository `{id}` (it has: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ));
                };
                r.baseurl = vec![url];
                r.metalink = None;
                r.mirrorlist = None;
                r.enabled = true;
            }
            None => {
                added += 1;
                def.repositories.push(cli_repo(format!("cli-{added}"), url));
            }
        }
    }
    Ok(())
}

fn cli_repo(id: String, url: String) -> Repository {
    Repository {
        id,
        name: None,
        baseurl: vec![url],
        metalink: None,
        mirrorlist: None,
        gpgkey: Vec::new(),
        gpgcheck: false,
        repo_gpgcheck: false,
        priority: 99,
        cost: 1000,
        enabled: true,
        excludes: Vec::new(),
    }
}

pub fn resolve(ui: &Ui, a: ResolveArgs) -> ExitCode {
    let opts = load_options(&a.repos, a.verbose);
    // Without --repo, the one argument is a definition.
    if a.repos.repo.is_empty() {
        let [definition] = a.args.as_slice() else {
            ui.error("give a definition file, or --repo URL and the packages to resolve");
            return ExitCode::from(exit::USAGE);
        };
        return resolve_definition(ui, Path::new(definition), &a, &opts);
    }
    // A first argument that is a definition file, followed by nothing else, is the definition
    // mode with overrides.
    if let [first] = a.args.as_slice()
        && (first.ends_with(".yaml") || first.ends_with(".yml"))
        && Path::new(first).is_file()
    {
        return resolve_definition(ui, Path::new(first), &a, &opts);
    }
    if a.args.is_empty() {
        ui.error("name the packages to resolve after the --repo options");
        return ExitCode::from(exit::USAGE);
    }
    let arch = match a.arch.as_slice() {
        [] => Arch::X86_64,
        [one] => *one,
        _ => {
            ui.error("without a definition, resolve one architecture at a time");
            return ExitCode::from(exit::USAGE);
        }
    };
    let specs: Vec<RepoSpec> = a
        .repos
        .repo
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (id, url) = split_repo(r);
            let url = url.replace("$basearch", arch.rpm_name());
            RepoSpec::from(&cli_repo(
                id.map(str::to_string)
                    .unwrap_or_else(|| format!("repo{}", i + 1)),
                normalize_url(&url),
            ))
        })
        .collect();
    let mut o = opts.clone();
    o.wanted_files = a
        .args
        .iter()
        .filter(|s| s.starts_with('/'))
        .cloned()
        .collect();
    let started = std::time::Instant::now();
    let (pool, loads) = match repo::load(&specs, &o) {
        Ok(x) => x,
        Err(e) => {
            ui.error(e);
            return ExitCode::from(exit::FAILURE);
        }
    };
    let request = Request {
        install: a.args.clone(),
        exclude: a.exclude.clone(),
        remove: Vec::new(),
        repo_excludes: vec![Vec::new(); specs.len()],
        arch,
        weak_deps: !a.no_weak_deps,
    };
    let loaded = started.elapsed();
    let result = resolve::solver::resolve(&pool, &request);
    if a.verbose {
        eprintln!(
            "kiln: metadata loaded in {} ms, resolved in {} ms",
            loaded.as_millis(),
            (started.elapsed() - loaded).as_millis()
        );
    }
    match result {
        Ok(resolution) => {
            let r = Resolved {
                arch,
                pool,
                resolution,
                loads,
            };
            if a.verify && !verified(ui, &r) {
                return ExitCode::from(exit::FAILURE);
            }
            if a.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&result_json(&r)).expect("JSON")
                );
            } else {
                print_table(ui, &r);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            ui.error(e);
            ExitCode::from(exit::FAILURE)
        }
    }
}

fn resolve_definition(ui: &Ui, path: &Path, a: &ResolveArgs, opts: &LoadOptions) -> ExitCode {
    let Some(loaded) = load(
        ui,
        path,
        crate::definition::LoadOptions {
            arches: a.arch.clone(),
            repo_files: a.repos.repo_file.clone(),
            ..Default::default()
        },
    ) else {
        return ExitCode::from(exit::FAILURE);
    };
    let mut results = Vec::new();
    for image in &loaded.images {
        let mut def = image.definition.clone();
        if let Err(e) = apply_repo_overrides(&mut def, &a.repos.repo, image.arch) {
            ui.error(e);
            return ExitCode::from(exit::USAGE);
        }
        if a.no_weak_deps {
            def.packages.weak_deps = false;
        }
        def.packages.exclude.extend(a.exclude.iter().cloned());
        match resolve::resolve_definition(&def, image.arch, opts) {
            Ok(r) if a.verify && !verified(ui, &r) => return ExitCode::from(exit::FAILURE),
            Ok(r) => results.push(r),
            Err(e) => {
                ui.error(format!("{} ({}): {e}", path.display(), image.arch));
                return ExitCode::from(exit::FAILURE);
            }
        }
    }
    if a.json {
        let v = json!({
            "definition": path.display().to_string(),
            "results": results.iter().map(result_json).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v).expect("JSON"));
    } else {
        for r in &results {
            print_table(ui, r);
        }
    }
    ExitCode::SUCCESS
}

fn result_json(r: &Resolved) -> serde_json::Value {
    let pool = &r.pool;
    let packages: Vec<serde_json::Value> = r
        .resolution
        .packages
        .iter()
        .map(|&p| {
            let pk = &pool.packages[p as usize];
            json!({
                "nevra": pool.nevra(p),
                "name": pool.str(pk.name),
                "epoch": pk.epoch,
                "version": pool.str(pk.version),
                "release": pool.str(pk.release),
                "arch": pool.str(pk.arch),
                "repo": pool.repos[pk.repo as usize].id,
                "size": pk.size,
                "installed_size": pk.installed_size,
                "location": pool.str(pk.location),
                "checksum": format!("{}:{}", pool.str(pk.checksum_type), pool.str(pk.checksum)),
                "license": pool.str(pk.license),
            })
        })
        .collect();
    let (download, installed) = totals(r);
    json!({
        "arch": r.arch.rpm_name(),
        "packages": packages,
        "total": {"count": r.resolution.packages.len(), "download_size": download, "installed_size": installed},
        "repositories": r.loads.iter().map(|l| json!({"id": l.id, "packages": l.packages, "cached": l.from_cache})).collect::<Vec<_>>(),
        "notes": r.resolution.notes,
    })
}

fn totals(r: &Resolved) -> (u64, u64) {
    r.resolution.packages.iter().fold((0, 0), |(d, i), &p| {
        let pk = &r.pool.packages[p as usize];
        (d + pk.size, i + pk.installed_size)
    })
}

/// Sizes for people: 1.5 MiB.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn print_table(ui: &Ui, r: &Resolved) {
    let pool = &r.pool;
    let rows: Vec<[String; 5]> = r
        .resolution
        .packages
        .iter()
        .map(|&p| {
            let pk = &pool.packages[p as usize];
            [
                pool.str(pk.name).to_string(),
                pool.evr(p),
                pool.str(pk.arch).to_string(),
                pool.repos[pk.repo as usize].id.clone(),
                human_size(pk.size),
            ]
        })
        .collect();
    let header = ["Package", "Version", "Arch", "Repository", "Size"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {:>w4$}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
            w4 = widths[4]
        )
    };
    println!("{}", line(header));
    for row in &rows {
        println!(
            "{}",
            line([&row[0], &row[1], &row[2], &row[3], &row[4]]).trim_end()
        );
    }
    let (download, installed) = totals(r);
    println!(
        "{} packages for {}: {} to download, {} installed",
        rows.len(),
        r.arch,
        human_size(download),
        human_size(installed)
    );
    for n in &r.resolution.notes {
        ui.info(format!("note: {n}"));
    }
}

pub fn lock(ui: &Ui, path: &Path, repos: &RepoArgs, check: bool, verbose: bool) -> ExitCode {
    let opts = crate::definition::LoadOptions {
        arches: Vec::new(),
        repo_files: repos.repo_file.clone(),
        ..Default::default()
    };
    let Some(loaded) = load(ui, path, opts) else {
        return ExitCode::from(exit::FAILURE);
    };
    let lock_path = lock::path_for(path);
    if check {
        let lockfile = match lock::Lockfile::read(&lock_path) {
            Ok(l) => l,
            Err(e) => {
                ui.error(e);
                return ExitCode::from(exit::FAILURE);
            }
        };
        for image in &loaded.images {
            let mut def = image.definition.clone();
            if let Err(e) = apply_repo_overrides(&mut def, &repos.repo, image.arch) {
                ui.error(e);
                return ExitCode::from(exit::USAGE);
            }
            if let Err(e) = lockfile.for_arch(&lock_path, &def, image.arch) {
                ui.error(e);
                return ExitCode::from(exit::FAILURE);
            }
        }
        ui.info(format!(
            "ok: {} matches {}",
            lock_path.display(),
            path.display()
        ));
        return ExitCode::SUCCESS;
    }
    let opts = load_options(repos, verbose);
    let mut architectures = std::collections::BTreeMap::new();
    for image in &loaded.images {
        let mut def = image.definition.clone();
        if let Err(e) = apply_repo_overrides(&mut def, &repos.repo, image.arch) {
            ui.error(e);
            return ExitCode::from(exit::USAGE);
        }
        match resolve::resolve_definition(&def, image.arch, &opts) {
            Ok(r) => {
                let dir = path.parent().unwrap_or(Path::new("."));
                architectures.insert(image.arch.rpm_name().to_string(), r.locked(&def, dir));
            }
            Err(e) => {
                ui.error(format!("{} ({}): {e}", path.display(), image.arch));
                return ExitCode::from(exit::FAILURE);
            }
        }
    }
    let lockfile = lock::Lockfile {
        version: lock::FORMAT,
        definition: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        architectures,
    };
    if let Err(e) = repo::cache::write_atomic(&lock_path, lockfile.render().as_bytes()) {
        ui.error(format!("cannot write {}: {e}", lock_path.display()));
        return ExitCode::from(exit::FAILURE);
    }
    let counts: Vec<String> = lockfile
        .architectures
        .iter()
        .map(|(a, l)| format!("{} packages for {a}", l.packages.len()))
        .collect();
    ui.info(format!(
        "wrote {}: {}",
        lock_path.display(),
        counts.join(", ")
    ));
    ExitCode::SUCCESS
}
