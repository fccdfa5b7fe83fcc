//! The rpm database kiln writes, checked with rpm itself: the host's rpm (4.18, sqlite backend)
//! installs fixture packages into a scratch root, kiln rewrites the database from the same
//! packages, and the two databases, and rpm's queries and verification over them, must agree.
//!
//! rpm needs root for `--root` (it chroots): without it these tests say so and do nothing.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use kiln::install::rpmdb::{DbPackage, FileState, RpmdbError, read_names, write_rpmdb};
use rusqlite::Connection;
use sha2::Digest;

const DBPATH: &str = "/usr/lib/sysimage/rpm";
/// SOURCE_DATE_EPOCH for rpm's installs: rpm then records it as the transaction id and gives
/// the k-th package it installs the install time SOURCE_DATE_EPOCH + k.
const EPOCH: u32 = 1_735_689_600;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Skips (loudly) a test that needs rpm --root, i.e. root.
macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("SKIPPED: rpm --root needs root (chroot); run the tests as root");
            return;
        }
    };
}

fn fixture_packages() -> &'static Path {
    static REPO: OnceLock<PathBuf> = OnceLock::new();
    REPO.get_or_init(|| {
        let out = Command::new(common::root().join("tests/fixtures/build"))
            .current_dir(common::root())
            .output()
            .expect("run tests/fixtures/build");
        assert!(
            out.status.success(),
            "tests/fixtures/build failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        PathBuf::from(stdout.lines().next().expect("a repository path")).join("Packages")
    })
}

fn rpm_file(name: &str) -> PathBuf {
    let path = fixture_packages().join(format!("{name}.rpm"));
    assert!(path.exists(), "no fixture package {}", path.display());
    path
}

fn rpm_files(names: &[&str]) -> Vec<PathBuf> {
    names.iter().map(|n| rpm_file(n)).collect()
}

fn run(cmd: &mut Command) -> Output {
    cmd.env("LC_ALL", "C")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `rpm --root ROOT --dbpath /usr/lib/sysimage/rpm ARGS`.
fn rpm(root: &Path, args: &[&str]) -> Output {
    run(Command::new("rpm")
        .arg("--root")
        .arg(root)
        .args(["--dbpath", DBPATH])
        .args(args))
}

/// Like `rpm`, but the command must succeed; returns its output lines.
fn rpm_ok(root: &Path, args: &[&str]) -> Vec<String> {
    let out = rpm(root, args);
    assert!(
        out.status.success(),
        "rpm {args:?} failed ({}):\n{}{}",
        out.status,
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out).lines().map(str::to_owned).collect()
}

/// `rpm -qp --qf '%{NEVRA}'` of a package file.
fn nevra_of(file: &Path) -> String {
    let out = run(Command::new("rpm")
        .args(["-qp", "--nosignature", "--nodigest", "--qf", "%{NEVRA}"])
        .arg(file));
    assert!(out.status.success(), "rpm -qp {}", file.display());
    stdout(&out)
}

/// Installs package files into ROOT with the host's rpm (files and rpm's own database), as a
/// reference. Returns the files in the order rpm installed them (its database order).
fn host_install(root: &Path, files: &[PathBuf], extra: &[&str]) -> Vec<PathBuf> {
    let out = run(Command::new("rpm")
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .arg("--root")
        .arg(root)
        .args([
            "--dbpath",
            DBPATH,
            "-i",
            "--nodeps",
            "--noscripts",
            "--nosignature",
        ])
        .args(extra)
        .args(files));
    assert!(
        out.status.success(),
        "host rpm -i failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let by_nevra: BTreeMap<String, PathBuf> =
        files.iter().map(|f| (nevra_of(f), f.clone())).collect();
    rpm_ok(root, &["-qa", "--qf", "%{NEVRA}\n"])
        .iter()
        .map(|n| by_nevra[n].clone())
        .collect()
}

/// File flags from a package's header, in header order.
fn file_flags(file: &Path) -> Vec<rpm::FileFlags> {
    rpm::PackageMetadata::open(file)
        .unwrap()
        .get_file_entries()
        .unwrap()
        .iter()
        .map(|f| f.flags())
        .collect()
}

/// The packages as kiln's installer would describe them after installing them in this order
/// (install times as rpm gives them under SOURCE_DATE_EPOCH), file states from `state`.
fn db_packages(files: &[PathBuf], state: impl Fn(rpm::FileFlags) -> FileState) -> Vec<DbPackage> {
    files
        .iter()
        .enumerate()
        .map(|(k, f)| DbPackage {
            rpm_path: f.clone(),
            file_states: file_flags(f).into_iter().map(&state).collect(),
            install_time: EPOCH + k as u32,
        })
        .collect()
}

/// The file states rpm gives a package installed with --excludedocs (transaction.c
/// `skipInstallFiles`): %doc files are not installed, and neither is a directory of the package
/// left empty by that (deepest first).
fn excluded_docs_states(file: &Path) -> Vec<FileState> {
    let meta = rpm::PackageMetadata::open(file).unwrap();
    let entries = meta.get_file_entries().unwrap();
    let mut states: Vec<FileState> = entries
        .iter()
        .map(|f| {
            if f.flags().contains(rpm::FileFlags::DOC) {
                FileState::NotInstalled
            } else {
                FileState::Normal
            }
        })
        .collect();
    // Per directory: files still installed in it, and whether any was left out.
    let mut dirs: BTreeMap<String, (usize, bool)> = BTreeMap::new();
    for (f, state) in entries.iter().zip(&states) {
        let d = dirs.entry(f.dirname().to_owned()).or_default();
        if *state == FileState::Normal {
            d.0 += 1;
        } else {
            d.1 = true;
        }
    }
    let names: Vec<String> = dirs.keys().rev().cloned().collect();
    for dir in names {
        let (installed, emptied) = dirs[&dir];
        if installed > 0 || !emptied {
            continue;
        }
        let path = dir.trim_end_matches('/');
        if let Some(i) = entries
            .iter()
            .position(|f| f.path() == Path::new(path) && f.file_type() == rpm::FileType::Dir)
        {
            states[i] = FileState::NotInstalled;
            let parent = dirs.get_mut(entries[i].dirname()).unwrap();
            parent.0 -= 1;
            parent.1 = true;
        }
    }
    states
}

fn all_normal(_: rpm::FileFlags) -> FileState {
    FileState::Normal
}

fn db_file(root: &Path) -> PathBuf {
    root.join("usr/lib/sysimage/rpm/rpmdb.sqlite")
}

/// Everything in a database that rpm reads: the schema, the package blobs, every index row
/// (in rowid order, which is rpm's insertion order), and user_version.
#[derive(Debug, PartialEq)]
struct Dump {
    schema: Vec<(String, String, String, Option<String>)>,
    user_version: i64,
    packages: Vec<(i64, Vec<u8>)>,
    indexes: BTreeMap<String, Vec<(Vec<u8>, i64, i64)>>,
}

fn dump(root: &Path) -> Dump {
    let db = Connection::open_with_flags(db_file(root), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let schema: Vec<(String, String, String, Option<String>)> = db
        .prepare("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY rowid")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        // rpm's `PRAGMA optimize` at close adds statistics; they are not part of its schema.
        .filter(|(_, name, _, _)| name != "sqlite_stat1")
        .collect();
    let user_version = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    let packages = db
        .prepare("SELECT hnum, blob FROM Packages ORDER BY rowid")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut indexes = BTreeMap::new();
    for (ty, name, _, _) in &schema {
        if ty != "table" || name == "Packages" || name.starts_with("sqlite_") {
            continue;
        }
        let rows = db
            .prepare(&format!(
                "SELECT CAST(key AS BLOB), hnum, idx, typeof(key) FROM '{name}' ORDER BY rowid"
            ))
            .unwrap()
            .query_map([], |r| {
                let ty: String = r.get(3)?;
                let mut key: Vec<u8> = r.get(0)?;
                // Keep the storage class in the comparison: rpm binds text and blobs apart.
                key.extend_from_slice(format!(" <{ty}>").as_bytes());
                Ok((key, r.get(1)?, r.get(2)?))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        indexes.insert(name.clone(), rows);
    }
    Dump {
        schema,
        user_version,
        packages,
        indexes,
    }
}

/// A header blob's index entries: (tag, type, offset, count).
fn blob_entries(blob: &[u8]) -> Vec<(u32, u32, u32, u32)> {
    let be = |at: usize| u32::from_be_bytes(blob[at..at + 4].try_into().unwrap());
    (0..be(0) as usize)
        .map(|i| {
            let at = 8 + 16 * i;
            (be(at), be(at + 4), be(at + 8), be(at + 12))
        })
        .collect()
}

/// rpm 6 records the package file's digests (PACKAGEDIGESTS 5118, PACKAGEDIGESTALGOS 5119);
/// rpm 4.18 does not. They are the highest tags kiln adds, so they come last in the index and
/// the data: check them against the file, then cut them off, leaving what rpm 4.18 writes.
fn strip_package_digests(blob: &[u8], file: &Path) -> Vec<u8> {
    let entries = blob_entries(blob);
    let il = entries.len();
    let (digests, algos) = (entries[il - 2], entries[il - 1]);
    assert_eq!(
        (digests.0, digests.1, digests.3),
        (5118, 8, 2),
        "{entries:?}"
    );
    assert_eq!((algos.0, algos.1, algos.3), (5119, 4, 2));
    let data = &blob[8 + 16 * il..];
    let content = fs::read(file).unwrap();
    let expected = format!(
        "{}\0{}\0",
        hex::encode(sha2::Sha256::digest(&content)),
        hex::encode(sha2::Sha512::digest(&content))
    );
    let start = digests.2 as usize;
    assert_eq!(&data[start..start + expected.len()], expected.as_bytes());
    assert_eq!(&data[algos.2 as usize..], [0, 0, 0, 8, 0, 0, 0, 10]);

    let mut out = Vec::new();
    out.extend_from_slice(&(il as u32 - 2).to_be_bytes());
    out.extend_from_slice(&digests.2.to_be_bytes());
    out.extend_from_slice(&blob[8..8 + 16 * (il - 2)]);
    out.extend_from_slice(&data[..start]);
    out
}

/// Asserts kiln's database in ROOT is rpm's `reference`, apart from rpm 6's package digests.
fn assert_same_as_rpm(root: &Path, reference: &Dump, files: &[PathBuf]) {
    let ours = dump(root);
    assert_eq!(ours.schema, reference.schema, "sqlite_master differs");
    assert_eq!(ours.user_version, reference.user_version);
    assert_eq!(ours.packages.len(), reference.packages.len());
    for (((hnum, blob), (ref_hnum, ref_blob)), file) in
        ours.packages.iter().zip(&reference.packages).zip(files)
    {
        assert_eq!(hnum, ref_hnum);
        let stripped = strip_package_digests(blob, file);
        if &stripped != ref_blob {
            panic!(
                "header of {} differs from rpm's:\nkiln: {:?}\nrpm:  {:?}",
                file.display(),
                blob_entries(&stripped),
                blob_entries(ref_blob)
            );
        }
    }
    for (table, rows) in &reference.indexes {
        assert_eq!(
            ours.indexes.get(table),
            Some(rows),
            "index table {table} differs"
        );
    }
    assert_eq!(ours.indexes.len(), reference.indexes.len());
}

/// `rpm -qa` in its default format (name-version-release.arch).
fn rpm_qa_nvra(root: &Path) -> Vec<String> {
    rpm_ok(root, &["-qa"])
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Several packages of every kind: install-only kernels in two versions, multilib, rich
/// dependencies, triggers and file triggers, %ghost, %config, file capabilities, weak
/// dependencies, epochs, tildes and carets.
const MANY: &[&str] = &[
    "fx-filesystem-3.18-1.noarch",
    "fx-setup-2.15.0-1.noarch",
    "fx-busybox-1.35.0-1.x86_64",
    "fx-release-4.0-1.noarch",
    "fx-libfoo-2.0-1.x86_64",
    "fx-libfoo-2.0-1.i686",
    "fx-app-1.1-1.x86_64",
    "fx-app-plugins-1.0-1.x86_64",
    "fx-app-theme-1.0-1.noarch",
    "fx-app-lang-de-1.0-1.noarch",
    "fx-langpack-de-1.0-1.noarch",
    "fx-kernel-6.1.0-1.x86_64",
    "fx-kernel-6.2.0-1.x86_64",
    "fx-files-1.0-1.x86_64",
    "fx-tools-3.1-2.x86_64",
    "fx-data-20240101-1.noarch",
    "fx-filedep-filelists-1.0-1.noarch",
    "fx-alpha-1.0-1.noarch",
    "fx-beta-1.0-1.noarch",
    "fx-gamma-1.0-1.noarch",
    "fx-rich-or-1.0-1.noarch",
    "fx-rich-and-1.0-1.noarch",
    "fx-rich-if-1.0-1.noarch",
    "fx-rich-ifelse-1.0-1.noarch",
    "fx-rich-unless-1.0-1.noarch",
    "fx-rich-unlesselse-1.0-1.noarch",
    "fx-rich-nested-1.0-1.noarch",
    "fx-rich-without-1.0-1.noarch",
    "fx-web-nginx-1.24.0-1.x86_64",
    "fx-new-2.0-1.noarch",
    "fx-epoch-0.9-1.noarch",
    "fx-caret-1.0^git20240101-1.noarch",
    "fx-tilde-1.0~rc1-1.noarch",
    "fx-lua-1.0-1.noarch",
];

#[test]
fn database_is_the_one_rpm_writes_and_rpm_queries_it() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let order = host_install(root, &rpm_files(MANY), &[]);
    let reference = dump(root);
    let rpm_qa = rpm_ok(root, &["-qa", "--qf", "%{NEVRA}\n"]);
    let rpm_verify = rpm(root, &["-V", "-a"]);

    // Written over rpm's own database (WAL mode, with -wal and -shm files beside it).
    assert!(root.join("usr/lib/sysimage/rpm/rpmdb.sqlite-shm").exists());
    write_rpmdb(root, &db_packages(&order, all_normal), EPOCH).unwrap();
    let dir = root.join("usr/lib/sysimage/rpm");
    let mut left: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, [".rpm.lock", "rpmdb.sqlite"]);

    assert_same_as_rpm(root, &reference, &order);

    // Queries through every kind of index.
    let qa = rpm_ok(root, &["-qa", "--qf", "%{NEVRA}\n"]);
    assert_eq!(qa, rpm_qa);
    assert_eq!(
        sorted(qa.clone()),
        sorted(
            MANY.iter()
                .map(|n| n.replace("fx-epoch-0.9", "fx-epoch-1:0.9"))
                .collect()
        )
    );
    assert_eq!(read_names(root).unwrap(), qa);
    let q = |args: &[&str]| sorted(rpm_ok(root, args));
    assert_eq!(
        q(&["-q", "fx-kernel"]),
        ["fx-kernel-6.1.0-1.x86_64", "fx-kernel-6.2.0-1.x86_64"]
    );
    assert_eq!(q(&["-q", "fx-libfoo.i686"]), ["fx-libfoo-2.0-1.i686"]);
    assert_eq!(q(&["-qf", "/usr/bin/fx-tool"]), ["fx-tools-3.1-2.x86_64"]);
    assert_eq!(
        q(&["-qf", "/boot/vmlinuz-6.2.0-1.x86_64"]),
        ["fx-kernel-6.2.0-1.x86_64"]
    );
    assert_eq!(
        q(&["-qf", "/usr/share/doc/fx-libfoo/README"]),
        ["fx-libfoo-2.0-1.i686", "fx-libfoo-2.0-1.x86_64"]
    );
    assert_eq!(
        q(&["-q", "--whatprovides", "libfoo.so.2()(64bit)"]),
        ["fx-libfoo-2.0-1.x86_64"]
    );
    assert_eq!(
        q(&["-q", "--whatprovides", "/bin/sh"]),
        ["fx-busybox-1.35.0-1.x86_64"]
    );
    assert_eq!(
        q(&["-q", "--whatprovides", "fx-old"]),
        ["fx-new-2.0-1.noarch"]
    );
    assert_eq!(
        q(&["-q", "--whatrequires", "fx-libfoo"]),
        ["fx-app-1.1-1.x86_64", "fx-rich-nested-1.0-1.noarch"]
    );
    // Rich dependencies are filed under the names inside them.
    assert_eq!(
        q(&["-q", "--whatrequires", "fx-alpha"]),
        [
            "fx-rich-and-1.0-1.noarch",
            "fx-rich-if-1.0-1.noarch",
            "fx-rich-ifelse-1.0-1.noarch",
            "fx-rich-nested-1.0-1.noarch",
            "fx-rich-or-1.0-1.noarch",
        ]
    );
    assert_eq!(
        q(&["-q", "--whatconflicts", "fx-alpha"]),
        [
            "fx-rich-unless-1.0-1.noarch",
            "fx-rich-unlesselse-1.0-1.noarch"
        ]
    );
    // The condition of `unless` is filed negated ("!fx-beta"), its `else` branch plainly.
    assert_eq!(
        q(&["-q", "--whatconflicts", "fx-beta"]),
        ["fx-rich-unlesselse-1.0-1.noarch"]
    );
    assert_eq!(
        q(&["-q", "--whatobsoletes", "fx-old"]),
        ["fx-new-2.0-1.noarch"]
    );
    assert_eq!(
        q(&["-q", "--whatrecommends", "fx-app-plugins"]),
        ["fx-app-1.1-1.x86_64"]
    );
    assert_eq!(
        q(&["-q", "--whatsuggests", "fx-app-doc"]),
        ["fx-app-1.1-1.x86_64"]
    );
    assert_eq!(
        q(&["-q", "--whatsupplements", "fx-langpack-de"]),
        ["fx-app-lang-de-1.0-1.noarch"]
    );
    assert_eq!(
        q(&["-q", "--whatenhances", "fx-app"]),
        ["fx-app-theme-1.0-1.noarch"]
    );
    assert_eq!(
        q(&["-q", "--triggeredby", "fx-app"]),
        ["fx-app-plugins-1.0-1.x86_64"]
    );
    assert_eq!(
        q(&["-q", "--qf", "%{NEVRA}\n", "--whatprovides", "fx-epoch"]),
        ["fx-epoch-1:0.9-1.noarch"]
    );
    let info = rpm_ok(root, &["-qi", "fx-files"]).join("\n");
    assert!(info.contains("Name        : fx-files"), "{info}");
    assert!(info.contains("Install Date:"), "{info}");
    let caps = rpm_ok(root, &["-q", "--filecaps", "fx-files"]).join("\n");
    assert!(caps.contains("/usr/bin/fx-ping\tcap_net_raw=ep"), "{caps}");
    assert_eq!(
        rpm_ok(
            root,
            &["-q", "--qf", "%{INSTALLTID} %{INSTALLCOLOR}\n", "fx-files"]
        ),
        [format!("{EPOCH} 3")]
    );
    // The Installtid, Sigmd5 and Sha1header indexes.
    assert_eq!(
        q(&["-q", "--tid", &EPOCH.to_string()]),
        sorted(rpm_qa_nvra(root))
    );
    let out = run(Command::new("rpm")
        .args(["-qp", "--nosignature", "--qf", "%{SIGMD5} %{SHA1HEADER}"])
        .arg(rpm_file("fx-files-1.0-1.x86_64")));
    let ids = stdout(&out);
    let (pkgid, hdrid) = ids.split_once(' ').unwrap();
    assert_eq!(q(&["-q", "--pkgid", pkgid]), ["fx-files-1.0-1.x86_64"]);
    assert_eq!(q(&["-q", "--hdrid", hdrid]), ["fx-files-1.0-1.x86_64"]);

    // rpm's verification reads the same (same dependency problems, same fxapp-owned files).
    let ours = rpm(root, &["-V", "-a"]);
    assert!(
        stdout(&rpm_verify).contains("conflicts with (installed) fx-rich-unlesselse"),
        "{}",
        stdout(&rpm_verify)
    );
    assert_eq!(stdout(&ours), stdout(&rpm_verify));
    assert_eq!(ours.status.code(), rpm_verify.status.code());
}

/// Packages whose dependencies are all met and whose files need no user but root.
const CLEAN: &[&str] = &[
    "fx-filesystem-3.18-1.noarch",
    "fx-setup-2.15.0-1.noarch",
    "fx-busybox-1.35.0-1.x86_64",
    "fx-release-4.0-1.noarch",
    "fx-files-1.0-1.x86_64",
    "fx-kernel-6.1.0-1.x86_64",
    "fx-kernel-6.2.0-1.x86_64",
    "fx-libfoo-2.0-1.x86_64",
    "fx-libfoo-2.0-1.i686",
    "fx-tools-3.1-2.x86_64",
    "fx-data-20240101-1.noarch",
    "fx-filedep-primary-1.0-1.noarch",
    "fx-alpha-1.0-1.noarch",
    "fx-beta-1.0-1.noarch",
    "fx-gamma-1.0-1.noarch",
    "fx-rich-or-1.0-1.noarch",
    "fx-rich-and-1.0-1.noarch",
    "fx-rich-nested-1.0-1.noarch",
];

#[test]
fn rpm_verify_is_clean_and_sees_a_changed_file() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let order = host_install(root, &rpm_files(CLEAN), &[]);
    let own = rpm(root, &["-V", "-a"]);
    assert_eq!(stdout(&own), "", "rpm's own database does not verify clean");
    fs::remove_dir_all(root.join("usr/lib/sysimage/rpm")).unwrap();

    write_rpmdb(root, &db_packages(&order, all_normal), EPOCH).unwrap();
    let out = rpm(root, &["-V", "-a"]);
    assert_eq!(stdout(&out), "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let tool = root.join("usr/bin/fx-tool");
    let mut content = fs::read(&tool).unwrap();
    content.push(b'\n');
    fs::write(&tool, content).unwrap();
    let out = rpm(root, &["-V", "-a"]);
    let report = stdout(&out);
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), 1, "{report}");
    assert!(lines[0].starts_with("S.5"), "{report}");
    assert!(lines[0].ends_with(" /usr/bin/fx-tool"), "{report}");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn files_not_installed_are_not_reported_missing() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let names = [
        "fx-filesystem-3.18-1.noarch",
        "fx-setup-2.15.0-1.noarch",
        "fx-busybox-1.35.0-1.x86_64",
        "fx-files-1.0-1.x86_64",
        "fx-libfoo-2.0-1.x86_64",
    ];
    // rpm --excludedocs leaves %doc files out and marks them "not installed".
    let order = host_install(root, &rpm_files(&names), &["--excludedocs"]);
    let reference = dump(root);
    let doc = root.join("usr/share/doc/fx-libfoo/README");
    assert!(!doc.exists());

    let packages: Vec<DbPackage> = db_packages(&order, all_normal)
        .into_iter()
        .map(|mut p| {
            p.file_states = excluded_docs_states(&p.rpm_path);
            p
        })
        .collect();
    write_rpmdb(root, &packages, EPOCH).unwrap();
    assert_same_as_rpm(root, &reference, &order);
    let out = rpm(root, &["-V", "-a"]);
    assert_eq!(stdout(&out), "");
    assert!(out.status.success());

    // The same files recorded as installed are missing: the check above is not vacuous.
    write_rpmdb(root, &db_packages(&order, all_normal), EPOCH).unwrap();
    let report = stdout(&rpm(root, &["-V", "-a"]));
    assert!(
        report.contains("missing   d /usr/share/doc/fx-libfoo/README"),
        "{report}"
    );
}

#[test]
fn rpm_runs_a_transaction_on_the_database() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let order = host_install(
        root,
        &rpm_files(&[
            "fx-filesystem-3.18-1.noarch",
            "fx-setup-2.15.0-1.noarch",
            "fx-busybox-1.35.0-1.x86_64",
            "fx-libfoo-2.0-1.x86_64",
            "fx-app-1.1-1.x86_64",
        ]),
        &[],
    );
    fs::remove_dir_all(root.join("usr/lib/sysimage/rpm")).unwrap();
    write_rpmdb(root, &db_packages(&order, all_normal), EPOCH).unwrap();

    // Without --nodeps: rpm resolves fx-app-plugins' requirements from kiln's Providename
    // index, fires fx-app-plugins' trigger on fx-app (Name index) and fx-app's file trigger on
    // the plugin it installs (Transfiletriggername index).
    rpm_ok(
        root,
        &[
            "-i",
            "--nosignature",
            rpm_file("fx-app-plugins-1.0-1.x86_64").to_str().unwrap(),
        ],
    );
    // rpm opened it for writing and switched it to WAL, as it does its own databases.
    assert_eq!(&fs::read(db_file(root)).unwrap()[18..20], [2, 2]);
    let log = fs::read_to_string(root.join("var/log/fx-scriptlets.log")).unwrap();
    assert!(log.contains("fx-app-plugins %triggerin 1 1"), "{log}");
    assert!(
        log.contains("fx-app %transfiletriggerin file /usr/lib/fx-app/plugins/hello.plugin"),
        "{log}"
    );
    assert_eq!(
        rpm_ok(root, &["-qa", "--qf", "%{NAME}\n"]).last().unwrap(),
        "fx-app-plugins"
    );
    assert_eq!(
        rpm_ok(root, &["-q", "--whatrequires", "fx-app"]),
        ["fx-app-plugins-1.0-1.x86_64"]
    );
}

#[test]
fn identical_input_gives_identical_bytes() {
    let files = rpm_files(&[
        "fx-filesystem-3.18-1.noarch",
        "fx-setup-2.15.0-1.noarch",
        "fx-files-1.0-1.x86_64",
        "fx-kernel-6.1.0-1.x86_64",
        "fx-kernel-6.2.0-1.x86_64",
        "fx-rich-nested-1.0-1.noarch",
    ]);
    let write = |time_shift: u32, tid: u32| {
        let tmp = tempfile::tempdir().unwrap();
        let mut packages = db_packages(&files, all_normal);
        for p in &mut packages {
            p.install_time += time_shift;
        }
        write_rpmdb(tmp.path(), &packages, tid).unwrap();
        let names = read_names(tmp.path()).unwrap();
        let dir = tmp.path().join("usr/lib/sysimage/rpm");
        let entries: Vec<_> = fs::read_dir(&dir).unwrap().collect();
        assert_eq!(entries.len(), 1, "only rpmdb.sqlite is left");
        (fs::read(dir.join("rpmdb.sqlite")).unwrap(), names)
    };
    let (a, names) = write(0, EPOCH);
    let (b, _) = write(0, EPOCH);
    assert!(a == b, "two writes of the same packages differ");
    assert_eq!(
        names,
        [
            "fx-filesystem-3.18-1.noarch",
            "fx-setup-2.15.0-1.noarch",
            "fx-files-1.0-1.x86_64",
            "fx-kernel-6.1.0-1.x86_64",
            "fx-kernel-6.2.0-1.x86_64",
            "fx-rich-nested-1.0-1.noarch",
        ]
    );
    // Rollback-journal format (file header bytes 18 and 19 are 1, not WAL's 2): readable
    // without -wal and -shm files, even from a read-only image; rpm switches it to WAL on its
    // first write.
    assert_eq!(&a[18..20], [1, 1], "legacy (rollback journal) file format");
    let (c, _) = write(1, EPOCH);
    assert!(a != c, "install time is not recorded");
    let (d, _) = write(0, EPOCH + 1);
    assert!(a != d, "transaction id is not recorded");
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let files = rpm_file("fx-files-1.0-1.x86_64");

    let missing = DbPackage {
        rpm_path: root.join("nope.rpm"),
        file_states: vec![],
        install_time: EPOCH,
    };
    let err = write_rpmdb(root, &[missing], EPOCH).unwrap_err();
    assert!(matches!(err, RpmdbError::ReadPackage { .. }), "{err}");
    assert!(err.to_string().contains("nope.rpm"), "{err}");

    let not_rpm = root.join("not.rpm");
    fs::write(&not_rpm, b"this is not a package").unwrap();
    let bad = DbPackage {
        rpm_path: not_rpm,
        file_states: vec![],
        install_time: EPOCH,
    };
    let err = write_rpmdb(root, &[bad], EPOCH).unwrap_err();
    assert!(matches!(err, RpmdbError::BadPackage { .. }), "{err}");

    // A package cut short inside its header.
    let content = fs::read(&files).unwrap();
    let cut = root.join("short.rpm");
    fs::write(&cut, &content[..300]).unwrap();
    let short = DbPackage {
        rpm_path: cut,
        file_states: vec![FileState::Normal; file_flags(&files).len()],
        install_time: EPOCH,
    };
    let err = write_rpmdb(root, &[short], EPOCH).unwrap_err();
    assert!(matches!(err, RpmdbError::BadPackage { .. }), "{err}");

    let wrong_count = DbPackage {
        rpm_path: files.clone(),
        file_states: vec![FileState::Normal; 3],
        install_time: EPOCH,
    };
    let err = write_rpmdb(root, &[wrong_count], EPOCH).unwrap_err();
    assert!(
        matches!(err, RpmdbError::FileStates { given: 3, .. }),
        "{err}"
    );
    assert!(!db_file(root).exists(), "a failed write leaves no database");
    assert!(read_names(root).is_err());
    let leftovers = fs::read_dir(root.join("usr/lib/sysimage/rpm"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(leftovers, 0, "a failed write leaves no temporary file");
}

/// A root installed by dnf (through librpm, the way a real system gets its database) has the
/// same schema as kiln's database.
#[test]
fn schema_matches_a_dnf_installed_root() {
    require_root!();
    let repo = fixture_packages().parent().unwrap().to_path_buf();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    fs::create_dir_all(&home).unwrap();
    fs::write(home.join(".rpmmacros"), format!("%_dbpath {DBPATH}\n")).unwrap();
    let dnf_root = tmp.path().join("dnf-root");
    let out = run(Command::new("dnf")
        .env("HOME", &home)
        .arg("-c")
        .arg(repo.join("kiln-fixture.repo"))
        .args([
            "--setopt=reposdir=/nonexistent",
            "--disableplugin=local",
            "--releasever=4.0",
        ])
        .arg("--installroot")
        .arg(&dnf_root)
        .args(["-y", "-q", "install", "fx-app"]));
    // dnf leaves a gpg-agent for the keyring it keeps in the root (repo_gpgcheck).
    for pubring in fs::read_dir(dnf_root.join("var/cache/dnf"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(pubring.path().join("pubring"))
            .args(["--kill", "gpg-agent"])
            .output();
    }
    assert!(
        out.status.success(),
        "dnf install failed:\n{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    let dnf = dump(&dnf_root);
    assert!(
        dnf.packages.len() >= 5,
        "dnf installed {}",
        dnf.packages.len()
    );

    let ours_root = tmp.path().join("kiln-root");
    write_rpmdb(
        &ours_root,
        &db_packages(&rpm_files(&["fx-setup-2.15.0-1.noarch"]), all_normal),
        EPOCH,
    )
    .unwrap();
    let ours = dump(&ours_root);
    assert_eq!(ours.schema, dnf.schema);
    assert_eq!(ours.user_version, dnf.user_version);
}
