//! The build pipeline up to the staging tree (resolve or lockfile → fetch → install → rpmdb →
//! configure) and the `dir` output, which writes that tree out as a directory and a manifest.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::configure::{self, ConfigureError};
use crate::definition::{Arch, Bootloader, Definition, Filesystem};
use crate::fetch::{self, FetchError, FetchItem, FetchOptions, Signature};
use crate::install::rpmdb::{self, DbPackage, FileState, RpmdbError};
use crate::install::transaction::{self, FileOutcome, InstallError};
use crate::resolve::{Resolved, lock::LockedArch};
use crate::tree::{Entry, Kind, Tree, TreeError, mtree};

/// One package to install, from the resolver or the lockfile.
#[derive(Debug, Clone)]
pub struct Planned {
    pub nevra: String,
    pub repo: String,
    /// Relative to the repository's base URL.
    pub location: String,
    pub sha256: String,
    pub size: u64,
}

/// The packages the resolver chose.
pub fn plan_resolved(r: &Resolved) -> Vec<Planned> {
    let pool = &r.pool;
    r.resolution
        .packages
        .iter()
        .map(|&p| {
            let pk = &pool.packages[p as usize];
            Planned {
                nevra: pool.nevra(p),
                repo: pool.repos[pk.repo as usize].id.clone(),
                location: pool.str(pk.location).to_string(),
                sha256: pool.str(pk.checksum).to_string(),
                size: pk.size,
            }
        })
        .collect()
}

/// The packages a lockfile pins.
pub fn plan_locked(l: &LockedArch) -> Vec<Planned> {
    l.packages
        .iter()
        .map(|p| Planned {
            nevra: p.nevra.clone(),
            repo: p.repo.clone(),
            location: p.location.clone(),
            sha256: p.sha256.clone(),
            size: p.size,
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("disk image: {0}")]
    Disk(String),
    #[error("{nevra}: its repository `{repo}` is not among the definition's enabled repositories")]
    UnknownRepo { nevra: String, repo: String },
    #[error(
        "{nevra}: the lockfile records a {kind} checksum; kiln verifies packages by sha256 only"
    )]
    Checksum { nevra: String, kind: String },
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Install(#[from] InstallError),
    #[error("writing the rpm database: {0}")]
    Rpmdb(#[from] RpmdbError),
    #[error(transparent)]
    Configure(#[from] ConfigureError),
    #[error("staging tree: {0}")]
    Tree(#[from] TreeError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl BuildError {
    pub fn help(&self) -> Option<String> {
        match self {
            BuildError::Configure(c) => c.help(),
            BuildError::UnknownRepo { .. } => {
                Some("run `kiln lock` again, or add the repository back to the definition".into())
            }
            _ => None,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How a build runs.
#[derive(Debug, Clone)]
pub struct StageOptions {
    pub fetch: FetchOptions,
    /// The build's timestamp; by default SOURCE_DATE_EPOCH or else the newest package's build
    /// time, so the same inputs give the same tree.
    pub epoch: Option<i64>,
}

/// Time spent in each step.
#[derive(Debug, Default, Clone)]
pub struct Timings {
    pub fetch: Duration,
    pub install: Duration,
    pub rpmdb: Duration,
    pub configure: Duration,
}

/// A finished staging tree and what happened on the way.
pub struct Staged {
    pub tree: Tree,
    pub epoch: i64,
    /// NEVRAs in install order.
    pub packages: Vec<String>,
    pub downloaded: usize,
    /// The sha256 of each installed package file (as the repository metadata or lockfile
    /// gives it, and as fetch verified it), by its path in the package cache.
    pub rpm_sha256: BTreeMap<PathBuf, String>,
    /// Repositories whose packages were installed without a signature check (`gpgcheck: false`).
    pub unsigned_repos: Vec<String>,
    pub install: transaction::Report,
    pub configure: configure::Report,
    pub timings: Timings,
}

/// Fetch items for the plan: URLs from the repository's base URLs, its keys and gpgcheck.
pub fn fetch_items(
    def: &Definition,
    plan: &[Planned],
) -> Result<(Vec<FetchItem>, Vec<String>), BuildError> {
    let repos: BTreeMap<&str, &crate::definition::Repository> = def
        .repositories
        .iter()
        .filter(|r| r.enabled)
        .map(|r| (r.id.as_str(), r))
        .collect();
    let mut unsigned = std::collections::BTreeSet::new();
    let mut items = Vec::with_capacity(plan.len());
    for p in plan {
        let Some(repo) = repos.get(p.repo.as_str()) else {
            return Err(BuildError::UnknownRepo {
                nevra: p.nevra.clone(),
                repo: p.repo.clone(),
            });
        };
        let sha256 = match p.sha256.split_once(':') {
            Some((kind, _)) => {
                return Err(BuildError::Checksum {
                    nevra: p.nevra.clone(),
                    kind: kind.into(),
                });
            }
            None => p.sha256.clone(),
        };
        if !repo.gpgcheck {
            unsigned.insert(repo.id.clone());
        }
        items.push(FetchItem {
            nevra: p.nevra.clone(),
            urls: repo
                .baseurl
                .iter()
                .map(|b| format!("{}/{}", b.trim_end_matches('/'), p.location))
                .collect(),
            sha256,
            size: p.size,
            gpgcheck: repo.gpgcheck,
            keys: repo.gpgkey.clone(),
        });
    }
    Ok((items, unsigned.into_iter().collect()))
}

/// Builds the staging tree in `root` (which must not exist or be empty).
pub fn stage(
    def: &Definition,
    plan: &[Planned],
    root: &Path,
    opts: &StageOptions,
) -> Result<Staged, BuildError> {
    let mut timings = Timings::default();
    let (items, unsigned_repos) = fetch_items(def, plan)?;
    let t = Instant::now();
    let fetched = fetch::fetch_all(&items, &opts.fetch)?;
    timings.fetch = t.elapsed();
    let downloaded = fetched.iter().filter(|f| !f.from_cache).count();
    debug_assert!(
        fetched
            .iter()
            .zip(&items)
            .all(|(f, i)| i.gpgcheck || f.signature == Signature::NotChecked)
    );

    let rpms: Vec<PathBuf> = fetched.iter().map(|f| f.path.clone()).collect();
    let rpm_sha256 = rpms
        .iter()
        .cloned()
        .zip(items.iter().map(|i| i.sha256.to_ascii_lowercase()))
        .collect();
    // The rpm database needs every package file hashed whole; that runs beside the install.
    let preload = {
        let rpms = rpms.clone();
        std::thread::spawn(move || rpmdb::preload(&rpms))
    };
    let t = Instant::now();
    let mut tree = Tree::create(root)?;
    // Scriptlets run in every image, distroless ones too: those whose interpreter is missing
    // are skipped and reported, and `-p /sbin/ldconfig` ones need no shell. The distroless
    // layer leaves the shell out afterwards (emit::distroless).
    let install_opts = transaction::Options {
        docs: def.packages.docs,
        languages: def.packages.languages.clone(),
        scriptlets: true,
    };
    let report = transaction::install(&mut tree, &rpms, &install_opts);
    let preloaded = preload
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
    let report = report?;
    timings.install = t.elapsed();

    let epoch = opts.epoch.unwrap_or_else(|| {
        report
            .packages
            .iter()
            .map(|p| p.build_time as i64)
            .max()
            .unwrap_or(0)
    });

    let t = Instant::now();
    let db: Vec<DbPackage> = report
        .packages
        .iter()
        .zip(&report.outcomes)
        .enumerate()
        .map(|(k, (p, outcomes))| DbPackage {
            rpm_path: p.path.clone(),
            file_states: outcomes
                .iter()
                .map(|o| match o {
                    FileOutcome::Installed | FileOutcome::Ghost => FileState::Normal,
                    FileOutcome::NotInstalled => FileState::NotInstalled,
                    FileOutcome::WrongColor => FileState::WrongColor,
                })
                .collect(),
            install_time: rpmdb::install_time(epoch, k),
        })
        .collect();
    tree.mkdir_p(&format!("/{}", rpmdb::DBPATH), 0o755, epoch)?;
    // A package the preload could not read is read (and its error reported) again here.
    rpmdb::write_rpmdb_preloaded(
        tree.root(),
        &db,
        epoch.clamp(0, u32::MAX as i64) as u32,
        preloaded.as_ref().ok(),
    )?;
    tree.rescan()?;
    for (path, e) in tree
        .entries()
        .iter()
        .filter(|(p, _)| p.starts_with(&format!("/{}/", rpmdb::DBPATH)))
        .map(|(p, e)| (p.clone(), e.clone()))
        .collect::<Vec<_>>()
    {
        if let Some(m) = tree.get_mut(&path) {
            m.mode = if e.kind == Kind::Dir { 0o755 } else { 0o644 };
            m.uid = 0;
            m.gid = 0;
        }
    }
    timings.rpmdb = t.elapsed();

    let t = Instant::now();
    let configured = configure::configure(&mut tree, &def.system, epoch)?;
    timings.configure = t.elapsed();

    let packages = report.packages.iter().map(|p| p.nevra()).collect();
    Ok(Staged {
        tree,
        epoch,
        packages,
        downloaded,
        rpm_sha256,
        unsigned_repos,
        install: report,
        configure: configured,
        timings,
    })
}

/// Boot files of a disk image, written into the staging tree before the backends run: /etc/fstab
/// by the UUIDs of the disk layout and the bootloader with the kernels and their initramfs.
pub fn prepare_disk(
    tree: &mut Tree,
    def: &Definition,
    arch: Arch,
    packages: &[crate::install::package::Package],
    epoch: i64,
) -> Result<Vec<String>, BuildError> {
    use crate::configure::boot;
    use crate::emit::disk::image;
    let lay =
        image::layout_for(def, arch, packages).map_err(|e| BuildError::Disk(e.to_string()))?;
    let mounts: Vec<boot::Mount> = lay
        .partitions
        .iter()
        .filter_map(|p| {
            let mount = p.mount.clone()?;
            let (fs_type, uuid) = match p.filesystem? {
                Filesystem::Ext4 => ("ext4", p.fs_uuid.hyphenated().to_string()),
                Filesystem::Vfat => ("vfat", p.fat_uuid()),
            };
            Some(boot::Mount {
                mount,
                fs_type: fs_type.into(),
                uuid,
                options: p.mount_options.clone(),
            })
        })
        .collect();
    tree.mkdir_p("/etc", 0o755, epoch)?;
    let entry = Entry {
        kind: Kind::File {
            size: 0,
            link: None,
        },
        mtime: epoch,
        ..Entry::dir(0o644)
    };
    tree.put_text("/etc/fstab", &boot::fstab(&mounts), entry.clone())?;
    let mut notes = Vec::new();
    let disk = image::disk_output(def);
    if disk.bootloader == Bootloader::None {
        tree.clamp_mtimes(epoch);
        return Ok(notes);
    }
    if disk.azure_generation == 1 {
        return Err(BuildError::Disk(
            "Azure generation 1 (BIOS boot) is not written by kiln yet: it needs GRUB's i386-pc \
             core image in the bios-boot partition; use `azure-generation: 2` (UEFI), which \
             every current Azure VM size supports"
                .into(),
        ));
    }
    let esp = lay
        .by_mount("/boot/efi")
        .or_else(|| lay.by_mount("/efi"))
        .ok_or_else(|| {
            BuildError::Disk(
                "a UEFI bootloader needs an EFI system partition mounted at /boot/efi or /efi"
                    .into(),
            )
        })?;
    let root = lay
        .by_mount("/")
        .ok_or_else(|| BuildError::Disk("the disk has no partition mounted at /".into()))?;
    // Azure's defaults when the definition names no kernel arguments; written to
    // /etc/kernel/cmdline too, so kernel-install in the VM keeps them.
    let cmdline: Vec<String> = if def.system.kernel_cmdline.is_empty() {
        let args: Vec<String> = boot::AZURE_CMDLINE.map(str::to_string).to_vec();
        tree.mkdir_p("/etc/kernel", 0o755, epoch)?;
        tree.put_text(
            "/etc/kernel/cmdline",
            &format!("{}\n", args.join(" ")),
            entry,
        )?;
        notes.push(format!(
            "kernel command line: Azure's defaults ({}), as the definition gives none",
            args.join(" ")
        ));
        args
    } else {
        def.system.kernel_cmdline.clone()
    };
    let plan = boot::BootPlan {
        esp: esp.mount.clone().unwrap_or_default(),
        title: def.description.clone().unwrap_or_else(|| def.name.clone()),
        token: def.name.clone(),
        options: format!(
            "root=PARTUUID={} rw {}",
            root.part_guid.hyphenated(),
            cmdline.join(" ")
        )
        .trim_end()
        .to_string(),
        efi_arch: match arch {
            Arch::X86_64 => "x64",
            Arch::Aarch64 => "aa64",
        }
        .into(),
    };
    let (name, kernels) = match disk.bootloader {
        Bootloader::Grub2 => {
            let boot_part = lay.by_mount("/boot").unwrap_or(root);
            let grub = boot::GrubPlan {
                boot_mount: boot_part.mount.clone().unwrap_or_else(|| "/".into()),
                boot_fs_uuid: match boot_part.filesystem {
                    Some(Filesystem::Vfat) => boot_part.fat_uuid(),
                    _ => boot_part.fs_uuid.hyphenated().to_string(),
                },
                boot: plan,
            };
            (
                "GRUB 2",
                boot::install_grub2(tree, &grub, epoch)
                    .map_err(|e| BuildError::Disk(e.to_string()))?,
            )
        }
        _ => (
            "systemd-boot",
            boot::install_systemd_boot(tree, &plan, epoch)
                .map_err(|e| BuildError::Disk(e.to_string()))?,
        ),
    };
    notes.push(format!(
        "{name} installed with {}",
        kernels
            .iter()
            .map(|k| k.version.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    // What the initramfs tool wrote carries the build's clock; the image carries the epoch.
    tree.clamp_mtimes(epoch);
    Ok(notes)
}

/// Makes the disk copy of the tree match the manifest as far as the builder can: as root, device
/// nodes, FIFOs and extended attributes are created; every mtime is set (directories last, as
/// writing into them changes theirs).
pub fn materialize(tree: &Tree) -> Result<(), BuildError> {
    let real = tree.real_owners();
    for (path, e) in tree.entries() {
        let disk = tree.disk_path(path);
        let c = CString::new(disk.as_os_str().as_bytes()).map_err(|_| BuildError::Io {
            path: disk.clone(),
            source: std::io::Error::other("path with NUL"),
        })?;
        if real {
            let node = match e.kind {
                Kind::CharDev { major, minor } => {
                    Some((libc::S_IFCHR, libc::makedev(major, minor)))
                }
                Kind::BlockDev { major, minor } => {
                    Some((libc::S_IFBLK, libc::makedev(major, minor)))
                }
                Kind::Fifo => Some((libc::S_IFIFO, 0)),
                _ => None,
            };
            if let Some((ty, dev)) = node
                && disk.symlink_metadata().is_err()
            {
                // SAFETY: `c` is a valid C string; mknod has no other preconditions.
                if unsafe { libc::mknod(c.as_ptr(), ty | e.mode, dev) } != 0 {
                    return Err(io_err(&disk)(std::io::Error::last_os_error()));
                }
                std::os::unix::fs::lchown(&disk, Some(e.uid), Some(e.gid))
                    .map_err(io_err(&disk))?;
            }
            for (k, v) in &e.xattrs {
                let name = CString::new(k.as_bytes())
                    .map_err(|_| io_err(&disk)(std::io::Error::other("xattr name with NUL")))?;
                // SAFETY: both strings are valid C strings and `v` is a live buffer of its length.
                let r = unsafe {
                    libc::lsetxattr(c.as_ptr(), name.as_ptr(), v.as_ptr().cast(), v.len(), 0)
                };
                if r != 0 {
                    return Err(io_err(&disk)(std::io::Error::last_os_error()));
                }
            }
        }
    }
    // Deepest paths first, so setting a directory's time is not undone by its children.
    let mut paths: Vec<(&String, &Entry)> = tree.entries().iter().collect();
    paths.sort_by_key(|(p, _)| std::cmp::Reverse(p.matches('/').count()));
    for (path, e) in paths {
        if matches!(e.kind, Kind::Socket)
            || (!real
                && matches!(
                    e.kind,
                    Kind::CharDev { .. } | Kind::BlockDev { .. } | Kind::Fifo
                ))
        {
            continue;
        }
        let disk = tree.disk_path(path);
        crate::tree::set_mtime(&disk, e.mtime).map_err(io_err(&disk))?;
    }
    Ok(())
}

/// Where the `dir` output of an image goes: `OUT/NAME-ARCH/` and `OUT/NAME-ARCH.mtree`.
pub fn dir_output_paths(out: &Path, name: &str, arch: &str) -> (PathBuf, PathBuf) {
    (
        out.join(format!("{name}-{arch}")),
        out.join(format!("{name}-{arch}.mtree")),
    )
}

/// Moves the finished tree to `dest` (replacing an older build there) and writes its manifest.
/// The tree's root must be on the same file system as `dest` (it is built beside it).
pub fn write_dir(tree: &Tree, dest: &Path, manifest: &Path) -> Result<(), BuildError> {
    materialize(tree)?;
    let text = mtree::render(tree);
    crate::repo::cache::write_atomic(manifest, text.as_bytes()).map_err(io_err(manifest))?;
    let old = dest.with_file_name(format!(
        ".{}.old-{}",
        dest.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let had_old = dest.symlink_metadata().is_ok();
    if had_old {
        std::fs::rename(dest, &old).map_err(io_err(dest))?;
    }
    std::fs::rename(tree.root(), dest).map_err(io_err(dest))?;
    if had_old {
        remove_tree(&old).map_err(io_err(&old))?;
    }
    Ok(())
}

/// Removes a directory tree even where modes forbid it (0555 dirs, as root needs nothing).
pub fn remove_tree(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if path.symlink_metadata().is_err() {
        return Ok(());
    }
    // Directories the image keeps read-only would stop a rootless removal.
    fn open_up(p: &Path) {
        if let Ok(m) = p.symlink_metadata()
            && m.is_dir()
        {
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755));
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    open_up(&e.path());
                }
            }
        }
    }
    if std::fs::remove_dir_all(path).is_ok() {
        return Ok(());
    }
    open_up(path);
    std::fs::remove_dir_all(path)
}
