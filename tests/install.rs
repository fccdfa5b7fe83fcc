//! The install transaction on the real fixture packages: scriptlet and trigger order, owners from
//! sysusers, %config/%ghost/%doc, capabilities and setuid, hardlinks, and refusing bad packages.

mod common;

use std::path::PathBuf;

use common::{debian_repo, fixture_repo, temp_dir};
use kiln::install::transaction::{FileOutcome, Options, install};
use kiln::tree::{Kind, Tree};

fn rpm(file: &str) -> PathBuf {
    fixture_repo().join("Packages").join(file)
}

fn base() -> Vec<PathBuf> {
    [
        "fx-setup-2.15.0-1.noarch.rpm",
        "fx-filesystem-3.18-1.noarch.rpm",
        "fx-busybox-1.35.0-1.x86_64.rpm",
    ]
    .iter()
    .map(|f| rpm(f))
    .collect()
}

#[test]
fn fx_app_scriptlets_run_in_rpm_order_with_sysusers_owners() {
    let dir = temp_dir("install-app");
    let mut tree = Tree::create(&dir.join("root")).unwrap();
    let mut rpms = base();
    rpms.extend(
        [
            "fx-libfoo-2.0-1.x86_64.rpm",
            "fx-app-1.1-1.x86_64.rpm",
            "fx-app-plugins-1.0-1.x86_64.rpm",
        ]
        .iter()
        .map(|f| rpm(f)),
    );
    let report = install(&mut tree, &rpms, &Options::default()).unwrap();
    let log = tree
        .read_text("/var/log/fx-scriptlets.log")
        .expect("the scriptlets logged");
    // RPM >= 4.20 (Azure Linux 4.0 has RPM 6) ignores Recommends when ordering, so fx-app comes
    // before the plugins that require it; rpm 4.18 put the plugins first.
    let expected = "fx-app %pre 1\nfx-app %post 1\nfx-app-plugins %triggerin 1 1\nfx-app %posttrans 1\n\
                    fx-app %transfiletriggerin 0\nfx-app %transfiletriggerin file /usr/lib/fx-app/plugins/hello.plugin\n";
    assert_eq!(log, expected);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let names: Vec<&str> = report.packages.iter().map(|p| p.name.as_str()).collect();
    let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert!(pos("fx-setup") < pos("fx-filesystem"));
    assert!(pos("fx-libfoo") < pos("fx-app") && pos("fx-app") < pos("fx-app-plugins"));
    // Files of the fxapp user declared in the package's sysusers.d file.
    let passwd = tree.read_text("/etc/passwd").unwrap();
    assert!(
        passwd.lines().any(|l| l.starts_with("fxapp:x:950:950:")),
        "{passwd}"
    );
    let owned: Vec<_> = tree
        .entries()
        .iter()
        .filter(|(_, e)| e.uid == 950)
        .map(|(p, _)| p.clone())
        .collect();
    assert!(!owned.is_empty(), "no file belongs to fxapp");
    // /etc/shadow keeps mode 0000 in the manifest.
    assert_eq!(tree.get("/etc/shadow").unwrap().mode, 0);
    // The %ghost log is owned (rpm records it as installed) but not created.
    let app = report
        .packages
        .iter()
        .position(|p| p.name == "fx-app")
        .unwrap();
    let ghosts: Vec<_> = report.packages[app]
        .files
        .iter()
        .zip(&report.outcomes[app])
        .filter(|(f, _)| f.flags & kiln::install::package::flags::GHOST != 0)
        .collect();
    assert!(!ghosts.is_empty());
    for (f, o) in ghosts {
        assert_eq!(*o, FileOutcome::Ghost, "{}", f.path);
        assert!(tree.get(&f.path).is_none(), "{} is a ghost", f.path);
    }
    // Merged /usr: /bin/sh resolves through the filesystem's symlinks.
    assert_eq!(tree.resolve_parent("/bin/sh").unwrap(), "/usr/bin/sh");
    assert_eq!(tree.resolve("/bin/sh").unwrap(), "/usr/bin/busybox");
}

#[test]
fn files_keep_modes_caps_links_and_names() {
    let dir = temp_dir("install-files");
    let mut tree = Tree::create(&dir.join("root")).unwrap();
    let mut rpms = base();
    rpms.push(rpm("fx-files-1.0-1.x86_64.rpm"));
    let report = install(&mut tree, &rpms, &Options::default()).unwrap();
    let files = report
        .packages
        .iter()
        .position(|p| p.name == "fx-files")
        .unwrap();
    let pkg = &report.packages[files];
    let mut setuid = 0;
    let mut caps = 0;
    let mut links = std::collections::BTreeMap::new();
    for (f, o) in pkg.files.iter().zip(&report.outcomes[files]) {
        if *o != FileOutcome::Installed {
            continue;
        }
        let path = tree.resolve_parent(&f.path).unwrap();
        let e = tree
            .get(&path)
            .unwrap_or_else(|| panic!("{} is missing", f.path));
        assert_eq!(e.mode, f.mode & 0o7777, "{}", f.path);
        if f.mode & 0o4000 != 0 {
            setuid += 1;
        }
        if !f.caps.is_empty() {
            caps += 1;
            assert!(e.xattrs.contains_key("security.capability"), "{}", f.path);
        }
        if let Kind::File {
            link: Some(g),
            size,
        } = e.kind
        {
            links.entry(g).or_insert_with(Vec::new).push(path.clone());
            assert_eq!(size, f.size, "{}", f.path);
        }
        if f.is_symlink() {
            assert_eq!(
                e.kind,
                Kind::Symlink {
                    target: f.linkto.clone()
                }
            );
        }
    }
    assert!(setuid > 0 && caps > 0);
    assert!(
        links.values().any(|v| v.len() == 2),
        "the hardlink pair shares a group: {links:?}"
    );
}

#[test]
fn docs_and_languages_can_be_left_out() {
    let dir = temp_dir("install-nodocs");
    let mut tree = Tree::create(&dir.join("root")).unwrap();
    let mut rpms = base();
    rpms.push(rpm("fx-files-1.0-1.x86_64.rpm"));
    let opts = Options {
        docs: false,
        ..Options::default()
    };
    let report = install(&mut tree, &rpms, &opts).unwrap();
    let files = report
        .packages
        .iter()
        .position(|p| p.name == "fx-files")
        .unwrap();
    let mut docs = 0;
    for (f, o) in report.packages[files]
        .files
        .iter()
        .zip(&report.outcomes[files])
    {
        let doc = f.flags & kiln::install::package::flags::DOC != 0;
        let license = f.flags & kiln::install::package::flags::LICENSE != 0;
        if doc && !license {
            docs += 1;
            assert_eq!(*o, FileOutcome::NotInstalled, "{}", f.path);
            assert!(tree.get(&f.path).is_none());
        }
        if license {
            assert_eq!(*o, FileOutcome::Installed, "licenses stay: {}", f.path);
        }
    }
    assert!(docs > 0);
    // The package's doc directory held only docs, so (as with rpm) it is not made either.
    let dirs: Vec<&str> = report.packages[files]
        .files
        .iter()
        .zip(&report.outcomes[files])
        .filter(|(f, o)| f.is_dir() && **o == FileOutcome::NotInstalled)
        .map(|(f, _)| f.path.as_str())
        .collect();
    assert!(
        dirs.iter().any(|d| d.starts_with("/usr/share/doc/")),
        "{dirs:?}"
    );
    for d in dirs {
        assert!(tree.get(d).is_none(), "{d}");
    }
}

#[test]
fn a_failing_post_is_reported_and_the_package_stays() {
    let dir = temp_dir("install-failing");
    let mut tree = Tree::create(&dir.join("root")).unwrap();
    let mut rpms = base();
    rpms.push(rpm("fx-failing-post-1.0-1.noarch.rpm"));
    rpms.push(rpm("fx-lua-1.0-1.noarch.rpm"));
    let report = install(&mut tree, &rpms, &Options::default()).unwrap();
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    let f = &report.failed[0];
    assert_eq!(
        (f.package.as_str(), f.scriptlet.as_str(), f.status),
        ("fx-failing-post-1.0-1.noarch", "%post", Some(1))
    );
    assert!(report.packages.iter().any(|p| p.name == "fx-failing-post"));
    assert!(
        report
            .skipped
            .iter()
            .any(|s| s.package.starts_with("fx-lua") && s.message.contains("Lua")),
        "{:?}",
        report.skipped
    );
    assert!(
        tree.read_text("/var/log/fx-scriptlets.log")
            .unwrap()
            .contains("fx-failing-post %post 1")
    );
}

#[test]
fn scriptlets_can_be_turned_off() {
    let dir = temp_dir("install-noscripts");
    let mut tree = Tree::create(&dir.join("root")).unwrap();
    let mut rpms = base();
    rpms.push(rpm("fx-failing-post-1.0-1.noarch.rpm"));
    let opts = Options {
        scriptlets: false,
        ..Options::default()
    };
    let report = install(&mut tree, &rpms, &opts).unwrap();
    assert_eq!(report.ran, 0);
    assert!(report.failed.is_empty());
    assert!(tree.read_text("/var/log/fx-scriptlets.log").is_none());
}

/// Builds a small package with the rpm crate (rpmbuild cannot make hostile ones).
fn hostile_rpm(
    dir: &std::path::Path,
    name: &str,
    build: impl FnOnce(&mut rpm::PackageBuilder),
) -> PathBuf {
    let mut b = rpm::PackageBuilder::new(name, "1.0", "MIT", "noarch", "a hostile test package");
    b.release("1");
    build(&mut b);
    let pkg = b.build().unwrap();
    let path = dir.join(format!("{name}-1.0-1.noarch.rpm"));
    pkg.write_file(&path).unwrap();
    path
}

/// Every path under `dir`, outside `root`.
fn outside(dir: &std::path::Path, root: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p != root {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn dot_dot_paths_are_refused_naming_package_and_path() {
    let dir = temp_dir("install-dotdot");
    let pkgs = dir.join("pkgs");
    std::fs::create_dir_all(&pkgs).unwrap();
    let evil = hostile_rpm(&pkgs, "evil-dotdot", |b| {
        b.with_file_contents(
            b"pwned".to_vec(),
            rpm::FileOptions::new("/etc/../../../../evil-dotdot"),
        )
        .unwrap();
    });
    let root = dir.join("root");
    let mut tree = Tree::create(&root).unwrap();
    let err = install(&mut tree, &[evil], &Options::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("evil-dotdot-1.0-1.noarch")
            && err.contains("/etc/../../../../evil-dotdot")
            && err.contains(".."),
        "{err}"
    );
    assert_eq!(outside(&dir, &root), [pkgs]);
    assert!(!std::path::Path::new("/evil-dotdot").exists());
}

#[test]
fn writes_through_an_escaping_symlink_are_refused() {
    let dir = temp_dir("install-escape");
    let pkgs = dir.join("pkgs");
    std::fs::create_dir_all(&pkgs).unwrap();
    // The link alone is harmless; the file written through it is not.
    let link = hostile_rpm(&pkgs, "evil-link", |b| {
        b.with_symlink(rpm::FileOptions::symlink(
            "/etc/escape",
            "../../../../../..",
        ))
        .unwrap();
    });
    let file = hostile_rpm(&pkgs, "evil-write", |b| {
        b.with_file_contents(
            b"pwned".to_vec(),
            rpm::FileOptions::new("/etc/escape/tmp/evil-write"),
        )
        .unwrap();
        b.requires(rpm::Dependency::any("evil-link"));
    });
    let root = dir.join("root");
    let mut tree = Tree::create(&root).unwrap();
    let err = install(&mut tree, &[link, file], &Options::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("evil-write-1.0-1.noarch")
            && err.contains("/etc/escape/tmp/evil-write")
            && err.contains("above `/`"),
        "{err}"
    );
    assert_eq!(outside(&dir, &root), [pkgs]);
    assert!(!std::path::Path::new("/tmp/evil-write").exists());
}

#[test]
fn conflicting_files_are_refused_identical_ones_shared() {
    let dir = temp_dir("install-conflict");
    let pkgs = dir.join("pkgs");
    std::fs::create_dir_all(&pkgs).unwrap();
    let a = hostile_rpm(&pkgs, "clash-a", |b| {
        b.with_file_contents(b"a".to_vec(), rpm::FileOptions::new("/etc/clash.conf"))
            .unwrap();
    });
    let b2 = hostile_rpm(&pkgs, "clash-b", |b| {
        b.with_file_contents(b"b".to_vec(), rpm::FileOptions::new("/etc/clash.conf"))
            .unwrap();
    });
    let same = hostile_rpm(&pkgs, "clash-same", |b| {
        b.with_file_contents(b"a".to_vec(), rpm::FileOptions::new("/etc/clash.conf"))
            .unwrap();
    });
    let mut tree = Tree::create(&dir.join("root-ok")).unwrap();
    install(&mut tree, &[a.clone(), same], &Options::default())
        .expect("identical files may be shared");
    let mut tree = Tree::create(&dir.join("root-clash")).unwrap();
    let err = install(&mut tree, &[a, b2], &Options::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/etc/clash.conf") && err.contains("clash-a") && err.contains("clash-b"),
        "{err}"
    );
}

/// rpm's own transaction order for these packages (in this command-line order), from the
/// tsort debug lines of a test install into an empty database.
fn rpm_order(dir: &std::path::Path, rpms: &[PathBuf]) -> Vec<String> {
    let db = dir.join("rpmdb");
    std::fs::create_dir_all(&db).unwrap();
    let out = std::process::Command::new("rpm")
        .arg("--dbpath")
        .arg(&db)
        .args(["-i", "--test", "--nosignature", "--ignorearch", "-vv"])
        .args(rpms)
        .output()
        .expect("rpm runs");
    let text = String::from_utf8_lossy(&out.stderr);
    let mut names = Vec::new();
    let mut on = false;
    for line in text.lines() {
        if line.contains("tsorting packages") {
            on = true;
            continue;
        }
        if on {
            let Some(nevra) = line
                .split_whitespace()
                .last()
                .and_then(|w| w.strip_prefix('+'))
            else {
                break;
            };
            if !line.starts_with("D:") {
                break;
            }
            names.push(nevra.to_string());
        }
    }
    assert!(!names.is_empty(), "no order from rpm:\n{text}");
    names
}

fn kiln_order(rpms: &[PathBuf]) -> Vec<String> {
    let pkgs: Vec<_> = rpms
        .iter()
        .map(|p| kiln::install::package::read(p).unwrap().0)
        .collect();
    // The host's rpm is 4.18, which still orders by weak dependencies.
    kiln::install::order::order_with(&pkgs, kiln::install::order::Rules::Rpm418)
        .into_iter()
        .map(|i| {
            let p = &pkgs[i];
            let e = if p.epoch > 0 {
                format!("{}:", p.epoch)
            } else {
                String::new()
            };
            format!("{}-{e}{}-{}.{}", p.name, p.version, p.release, p.arch)
        })
        .collect()
}

#[test]
fn transaction_order_is_rpms() {
    let dir = temp_dir("install-order");
    let mut sets: Vec<Vec<PathBuf>> = Vec::new();
    let mut boot: Vec<PathBuf> = std::fs::read_dir(debian_repo("boot").join("Packages"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    boot.sort();
    sets.push(boot.clone());
    boot.reverse();
    sets.push(boot);
    let mut app = base();
    app.extend(
        [
            "fx-libfoo-2.0-1.x86_64.rpm",
            "fx-app-1.1-1.x86_64.rpm",
            "fx-app-plugins-1.0-1.x86_64.rpm",
            "fx-files-1.0-1.x86_64.rpm",
        ]
        .iter()
        .map(|f| rpm(f)),
    );
    sets.push(app);
    for (i, set) in sets.iter().enumerate() {
        let want = rpm_order(&dir.join(i.to_string()), set);
        assert_eq!(kiln_order(set), want, "set {i}");
    }
}

#[test]
fn sysusers_provides_create_accounts_before_pre() {
    use base64::Engine as _;
    let dir = temp_dir("install-sysusers");
    let pkgs = dir.join("pkgs");
    std::fs::create_dir_all(&pkgs).unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    // What rpmbuild 4.19+ generates from `u svc 333 "Service" /var/lib/svc` and `g svclog 334`.
    let svc = hostile_rpm(&pkgs, "svc", |b| {
        b.provides(rpm::Dependency::eq(
            "user(svc)",
            b64("u svc 333 \"Service\" /var/lib/svc"),
        ));
        b.provides(rpm::Dependency::eq("group(svclog)", b64("g svclog 334")));
        b.requires(rpm::Dependency::script_pre("/bin/sh"));
        b.pre_install_script(
            "grep -q '^svc:x:333:333:Service:/var/lib/svc:' /etc/passwd || exit 7",
        );
        b.with_file_contents(
            b"x".to_vec(),
            rpm::FileOptions::new("/var/lib/svc/state")
                .user("svc")
                .group("svclog"),
        )
        .unwrap();
    });
    let mut rpms = base();
    rpms.push(svc);
    let mut tree = Tree::create(&dir.join("root")).unwrap();
    let report = install(&mut tree, &rpms, &Options::default()).unwrap();
    assert!(
        report.failed.is_empty() && report.warnings.is_empty(),
        "{:?} {:?}",
        report.failed,
        report.warnings
    );
    let e = tree.get("/var/lib/svc/state").unwrap();
    assert_eq!((e.uid, e.gid), (333, 334));
    assert!(
        tree.read_text("/etc/group")
            .unwrap()
            .contains("svclog:x:334:")
    );
}
