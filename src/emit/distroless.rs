//! The distroless and runtime variants of an OCI image, as a view of the staging tree: without
//! shells, package managers and the rpm database; with root/nonroot/nobody, /tmp and a manifest.

use std::collections::BTreeSet;

use super::tar::{Overlay, TarOptions};
use super::{EmitError, Image};
use crate::install::package::Package;
use crate::install::rpmdb;
use crate::tree::Tree;
use crate::tree::accounts::{Accounts, Group, User};

/// Where the package manifest goes: the path and format Azure Linux (CBL-Mariner) distroless
/// images use, which Syft, Trivy and Qualys read in place of an rpm database.
pub const MANIFEST_DIR: &str = "/var/lib/rpmmanifest";

/// `container-manifest-2`: one line per package, the fields of
/// `rpm -qa --qf '%{NAME}\t%{VERSION}-%{RELEASE}\t%{INSTALLTIME}\t%{BUILDTIME}\t%{VENDOR}\t%{EPOCH}\t%{SIZE}\t%{ARCH}\t%{EPOCHNUM}\t%{SOURCERPM}\n'`.
pub const MANIFEST_QUERYFORMAT: &str = "%{NAME}\\t%{VERSION}-%{RELEASE}\\t%{INSTALLTIME}\\t%{BUILDTIME}\\t%{VENDOR}\\t%{EPOCH}\\t%{SIZE}\\t%{ARCH}\\t%{EPOCHNUM}\\t%{SOURCERPM}\\n";

/// The nonroot user distroless images run as, and nobody.
pub const NONROOT: u32 = 65532;
pub const NOBODY: u32 = 65534;

const BIN_DIRS: [&str; 4] = ["/usr/bin", "/usr/sbin", "/bin", "/sbin"];
/// Programs that make an image have a shell.
const SHELLS: [&str; 15] = [
    "sh", "bash", "rbash", "dash", "ash", "zsh", "ksh", "ksh93", "mksh", "csh", "tcsh", "fish",
    "yash", "busybox", "toybox",
];
/// Programs that make an image have a package manager.
const PACKAGE_MANAGERS: [&str; 14] = [
    "rpm",
    "rpmdb",
    "rpmkeys",
    "rpmquery",
    "rpmverify",
    "dnf",
    "dnf5",
    "dnf-3",
    "yum",
    "tdnf",
    "microdnf",
    "dpkg",
    "apt",
    "apt-get",
];
/// State of the rpm database and the package managers, which a distroless image does not keep.
const PACKAGE_STATE: [&str; 9] = [
    "/usr/lib/sysimage/rpm",
    "/var/lib/rpm",
    "/usr/lib/sysimage/dnf",
    "/usr/lib/sysimage/libdnf5",
    "/var/lib/dnf",
    "/var/cache/dnf",
    "/var/cache/libdnf5",
    "/var/lib/dpkg",
    "/var/cache/yum",
];

/// The layer of a distroless image: what to leave out of the tree and put over it.
#[derive(Debug, Default)]
pub struct Layer {
    pub opts: TarOptions,
    /// Packages left out (shells and package managers nothing asked for by name), sorted.
    pub removed: Vec<String>,
    /// Shells or package managers kept because the definition lists them by name.
    pub kept: Vec<String>,
    /// Packages the manifest lists, in install order.
    pub listed: Vec<String>,
    /// The same packages as indexes into [`Image::packages`] (what the image's SBOM lists).
    pub packages: Vec<usize>,
}

/// The programs that make an image a shell or package manager image, as tree paths.
fn forbidden_paths(tree: &Tree) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for dir in BIN_DIRS {
        for name in SHELLS.iter().chain(PACKAGE_MANAGERS.iter()) {
            out.insert(tree.canonical(&format!("{dir}/{name}")));
        }
    }
    out
}

/// A package spec of the definition (`name`, `name.arch`, `name >= 1.0`, a NEVRA) names `pkg`.
fn names(spec: &str, pkg: &Package) -> bool {
    let first = spec.split_whitespace().next().unwrap_or("");
    first == pkg.name || first == pkg.nevra() || first == format!("{}.{}", pkg.name, pkg.arch)
}

/// Builds the distroless view of `image`. `explicit` are the definition's package specs
/// (`packages.install` and `runtime-packages`): a shell or package manager named there stays.
pub fn layer(image: &Image<'_>, explicit: &[String]) -> Result<Layer, EmitError> {
    let tree = image.tree;
    let forbidden = forbidden_paths(tree);
    let mut layer = Layer {
        opts: TarOptions {
            clamp_mtime: image.epoch,
            ..TarOptions::default()
        },
        ..Layer::default()
    };

    // Which packages go: those owning a shell or package manager, unless asked for by name.
    let mut gone = vec![false; image.packages.len()];
    for (i, p) in image.packages.iter().enumerate() {
        let owns = p
            .files
            .iter()
            .any(|f| !f.is_dir() && forbidden.contains(&tree.canonical(&f.path)));
        if !owns {
            continue;
        }
        if explicit.iter().any(|s| names(s, p)) {
            layer.kept.push(p.name.clone());
        } else {
            gone[i] = true;
            layer.removed.push(p.name.clone());
        }
    }
    layer.removed.sort();
    layer.kept.sort();

    // Their files go, except those a remaining package owns too; their directories go when
    // nothing is left in them.
    let mut keep_paths = BTreeSet::new();
    let mut drop_files = BTreeSet::new();
    let mut drop_dirs = BTreeSet::new();
    for (i, p) in image.packages.iter().enumerate() {
        for f in &p.files {
            let c = tree.canonical(&f.path);
            if !gone[i] {
                keep_paths.insert(c);
            } else if f.is_dir() {
                drop_dirs.insert(c);
            } else {
                drop_files.insert(c);
            }
        }
    }
    let exclude = &mut layer.opts.exclude;
    for f in drop_files.difference(&keep_paths) {
        if tree.get(f).is_some() {
            exclude.insert(f.clone());
        }
    }
    // Whatever still provides a shell or package manager (an alternatives link, a scriptlet's
    // copy) goes too, unless a package named in the definition owns it.
    for f in &forbidden {
        if tree.get(f).is_some() && !keep_paths.contains(f) {
            exclude.insert(f.clone());
        }
    }
    for s in PACKAGE_STATE {
        let c = tree.canonical(s);
        if tree.get(&c).is_some() {
            exclude.insert(c);
        }
    }
    // Deepest first, so a directory emptied by removing its subdirectories goes too.
    let dirs: Vec<&String> = drop_dirs.difference(&keep_paths).collect();
    for d in dirs.into_iter().rev() {
        let prefix = format!("{d}/");
        let occupied = tree
            .entries()
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .any(|(p, _)| !layer.opts.excluded(p));
        if !occupied && tree.get(d).is_some() {
            layer.opts.exclude.insert(d.clone());
        }
    }

    accounts(tree, &mut layer)?;
    // /tmp: world-writable and sticky, whatever the packages made of it.
    let tmp = tree.canonical("/tmp");
    layer.opts.overlay.insert(tmp, Overlay::dir(0o1777, 0, 0));

    // The manifest scanners read instead of the rpm database.
    let kept: Vec<(usize, &Package)> = image
        .packages
        .iter()
        .enumerate()
        .filter(|(i, _)| !gone[*i])
        .collect();
    let mut m1 = String::new();
    let mut m2 = String::new();
    for (k, p) in &kept {
        m1.push_str(&format!(
            "{}-{}-{}.{}\n",
            p.name, p.version, p.release, p.arch
        ));
        m2.push_str(&manifest_line(p, rpmdb::install_time(image.epoch, *k)));
        layer.listed.push(p.nevra());
        layer.packages.push(*k);
    }
    layer.opts.ensure_dirs(tree, MANIFEST_DIR);
    layer.opts.overlay.insert(
        format!("{MANIFEST_DIR}/container-manifest-1"),
        Overlay::file(m1, 0o644),
    );
    layer.opts.overlay.insert(
        format!("{MANIFEST_DIR}/container-manifest-2"),
        Overlay::file(m2, 0o644),
    );
    Ok(layer)
}

/// One line of `container-manifest-2` (see [`MANIFEST_QUERYFORMAT`]); absent tags print as rpm
/// prints them, `(none)`.
pub fn manifest_line(p: &Package, install_time: u32) -> String {
    let none = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
    format!(
        "{}\t{}-{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
        p.name,
        p.version,
        p.release,
        install_time,
        p.build_time,
        none(&p.info.vendor),
        if p.info.has_epoch {
            p.epoch.to_string()
        } else {
            "(none)".into()
        },
        p.info.size,
        p.arch,
        p.epoch,
        none(&p.info.source_rpm),
    )
}

/// passwd and group with root (0), nonroot (65532, home /home/nonroot) and nobody (65534) added
/// where missing; login shells that left with the shell packages become /sbin/nologin.
fn accounts(tree: &Tree, layer: &mut Layer) -> Result<(), EmitError> {
    let mut acc = Accounts::read(tree);
    let nologin = "/sbin/nologin";
    let want: [(&str, u32, &str, &str); 3] = [
        ("root", 0, "root", "/root"),
        ("nonroot", NONROOT, "nonroot", "/home/nonroot"),
        ("nobody", NOBODY, "Kernel Overflow User", "/"),
    ];
    for (name, id, gecos, home) in want {
        if acc.group(name).is_none() && !acc.groups.iter().any(|g| g.gid == id) {
            acc.groups.push(Group {
                name: name.into(),
                gid: id,
                members: Vec::new(),
            });
        }
        match acc.user(name) {
            Some(u) if u.uid != id => {
                return Err(EmitError::Invalid(format!(
                    "distroless: the image's user `{name}` has uid {} but distroless images need it to be {id}; drop it from the definition or pick another name",
                    u.uid
                )));
            }
            Some(_) => {}
            None => {
                if let Some(other) = acc.users.iter().find(|u| u.uid == id) {
                    if name == "nobody" {
                        // Debian's and others' nobody may be called otherwise; uid 65534 is there.
                        continue;
                    }
                    return Err(EmitError::Invalid(format!(
                        "distroless: uid {id} belongs to `{}` but distroless images reserve it for `{name}`",
                        other.name
                    )));
                }
                acc.users.push(User {
                    name: name.into(),
                    uid: id,
                    gid: id,
                    gecos: gecos.into(),
                    home: home.into(),
                    shell: nologin.into(),
                });
            }
        }
    }
    for u in &mut acc.users {
        let present = layer.opts.lookup(tree, &tree.canonical(&u.shell)).is_some();
        if !present {
            u.shell = nologin.into();
        }
    }
    let shadow = tree.read_text("/etc/shadow");
    let gshadow = tree.read_text("/etc/gshadow");
    let files = acc.render(
        shadow.as_deref().unwrap_or(""),
        gshadow.as_deref().unwrap_or(""),
    );
    layer.opts.ensure_dirs(tree, "/etc");
    let o = &mut layer.opts.overlay;
    o.insert("/etc/passwd".into(), Overlay::file(files.passwd, 0o644));
    o.insert("/etc/group".into(), Overlay::file(files.group, 0o644));
    // shadow files only where the image has them (setup/shadow-utils); nothing logs in anyway.
    if shadow.is_some() {
        o.insert("/etc/shadow".into(), Overlay::file(files.shadow, 0));
    }
    if gshadow.is_some() {
        o.insert("/etc/gshadow".into(), Overlay::file(files.gshadow, 0));
    }
    layer.opts.ensure_dirs(tree, "/home");
    let root_home = tree.canonical("/root");
    if tree.get(&root_home).is_none() {
        layer
            .opts
            .overlay
            .insert(root_home, Overlay::dir(0o700, 0, 0));
    }
    let home = tree.canonical("/home/nonroot");
    layer
        .opts
        .overlay
        .insert(home, Overlay::dir(0o700, NONROOT, NONROOT));
    Ok(())
}

/// The program a runtime image starts: a command named like the runtime package
/// (`python3` → `/usr/bin/python3`, which Debian's python3-minimal owns), else the runtime
/// package's own command whose name begins its name (`nodejs` → `/usr/bin/node`).
pub fn runtime_entrypoint<'a>(image: &Image<'a>, runtime: &[String]) -> Option<String> {
    let first = runtime.first()?;
    let pkg = image.packages.iter().find(|p| names(first, p))?;
    let commands = |p: &'a Package| {
        p.files
            .iter()
            .filter(|f| (f.is_regular() && f.mode & 0o111 != 0) || f.is_symlink())
            .map(|f| f.path.as_str())
            .filter(|path| {
                path.rsplit_once('/')
                    .is_some_and(|(dir, _)| BIN_DIRS.contains(&dir))
            })
    };
    let base = |path: &str| path.rsplit('/').next().unwrap_or(path).to_string();
    let exact = image
        .packages
        .iter()
        .flat_map(|p| commands(p))
        .filter(|path| base(path) == pkg.name)
        .min_by_key(|path| {
            BIN_DIRS
                .iter()
                .position(|d| path.starts_with(&format!("{d}/")))
        });
    let chosen = exact.or_else(|| {
        commands(pkg)
            .filter(|path| pkg.name.starts_with(&base(path)))
            .max_by_key(|path| (base(path).len(), std::cmp::Reverse(path.to_string())))
    })?;
    // As the image sees it: /bin/x in a merged-/usr image is /usr/bin/x.
    Some(image.tree.canonical(chosen))
}
