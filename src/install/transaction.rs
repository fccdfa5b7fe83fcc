//! The install transaction: packages in rpm's order, each with %pre, its payload unpacked into
//! the staging tree, %post and triggers; then %posttrans and transaction file triggers.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::package::{self, Package, PkgFile, Scriptlet, TriggerKind, flags};
use super::payload::{Cpio, decompressor};
use super::sandbox;
use crate::tree::accounts::{self, Accounts};
use crate::tree::{Entry, Kind, Tree, TreeError};

/// Choices for a transaction.
#[derive(Debug, Clone)]
pub struct Options {
    /// Install `%doc` files (licenses are always installed).
    pub docs: bool,
    /// Keep translations for these languages only (`%lang` files); empty keeps all.
    pub languages: Vec<String>,
    /// Run scriptlets and triggers (off for distroless images, which have no shell).
    pub scriptlets: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            docs: true,
            languages: Vec::new(),
            scriptlets: true,
        }
    }
}

/// What became of one file of a package (rpm's file states).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileOutcome {
    Installed,
    /// A `%ghost`: owned but neither in the payload nor created; rpm records it as installed.
    Ghost,
    /// Left out on purpose (docs off, a language not kept), with the package's directories
    /// that held nothing else.
    NotInstalled,
    /// Another package's file of the preferred (64-bit) color is there instead.
    WrongColor,
}

/// A scriptlet that failed or was skipped.
#[derive(Debug, Clone)]
pub struct ScriptletNote {
    pub package: String,
    pub scriptlet: String,
    /// Exit status if it ran.
    pub status: Option<i32>,
    pub message: String,
    pub output: String,
}

impl std::fmt::Display for ScriptletNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.package, self.scriptlet, self.message)?;
        if !self.output.trim().is_empty() {
            write!(f, "\n{}", indent(self.output.trim_end()))?;
        }
        Ok(())
    }
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The result of a transaction.
#[derive(Debug, Default)]
pub struct Report {
    /// Packages in the order they were installed.
    pub packages: Vec<Package>,
    /// For each package (same order), the outcome of each header file (header order).
    pub outcomes: Vec<Vec<FileOutcome>>,
    /// Scriptlets that failed without stopping the transaction (%post and later, as rpm).
    pub failed: Vec<ScriptletNote>,
    /// Scriptlets not run, and why.
    pub skipped: Vec<ScriptletNote>,
    pub ran: usize,
    /// Other things worth telling (unknown owners mapped to root…).
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Package(#[from] package::PackageError),
    #[error("{package}: {source}")]
    Tree {
        package: String,
        #[source]
        source: TreeError,
    },
    #[error("{package}: {message}")]
    Payload { package: String, message: String },
    #[error("file {path} from {new} conflicts with the file from {old}")]
    Conflict {
        path: String,
        new: String,
        old: String,
    },
    #[error("{0}")]
    Scriptlet(ScriptletNote),
    #[error("{package} {scriptlet}: {source}")]
    Sandbox {
        package: String,
        scriptlet: String,
        #[source]
        source: sandbox::SandboxError,
    },
}

/// Who owns an installed path, for file conflicts.
struct Owner {
    pkg: usize,
    file: usize,
    digest: String,
    mode: u32,
    linkto: String,
    color: u32,
}

struct Txn<'a> {
    tree: &'a mut Tree,
    opts: &'a Options,
    report: Report,
    owners: HashMap<String, Owner>,
    /// Resolved paths installed by each package (for file triggers).
    installed_paths: Vec<Vec<String>>,
    script_counter: u32,
}

/// Installs the packages (already verified RPM files) into `tree`.
pub fn install(tree: &mut Tree, rpms: &[PathBuf], opts: &Options) -> Result<Report, InstallError> {
    let mut pkgs = Vec::with_capacity(rpms.len());
    for p in rpms {
        pkgs.push(package::read(p)?.0);
    }
    // dnf hands rpm its packages sorted by name; rpm's order breaks ties by that order.
    pkgs.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then_with(|| a.arch.cmp(&b.arch))
            .then_with(|| a.nevra().cmp(&b.nevra()))
    });
    let order = super::order::order(&pkgs);
    let ordered: Vec<Package> = order.into_iter().map(|i| pkgs[i].clone()).collect();
    let outcomes: Vec<Vec<FileOutcome>> =
        ordered.iter().map(|p| planned_outcomes(p, opts)).collect();
    // Payloads are decompressed into a spool beside the tree (same file system, so files are
    // renamed into place) by worker threads running ahead of the transaction, which goes on
    // in order: scriptlets and placement overlap the decompression of later packages.
    let spool_root = spool_dir_for(tree.root());
    let _ = std::fs::remove_dir_all(&spool_root);
    std::fs::create_dir_all(&spool_root).map_err(|e| InstallError::Payload {
        package: String::new(),
        message: format!(
            "cannot make the spool directory {}: {e}",
            spool_root.display()
        ),
    })?;
    let spools = Spools::new(spool_queue(
        ordered.iter().map(|p| p.files.iter().map(|f| f.size).sum()),
    ));
    let real_owners = tree.real_owners();
    let result = std::thread::scope(|s| {
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 4);
        for _ in 0..workers {
            s.spawn(|| spools.work(&ordered, &outcomes, &spool_root, real_owners));
        }
        let r = run(tree, opts, &ordered, &outcomes, &spools);
        spools.stop();
        r
    });
    let _ = std::fs::remove_dir_all(&spool_root);
    result
}

fn spool_dir_for(root: &Path) -> PathBuf {
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    root.with_file_name(format!(".{name}.kiln-spool"))
}

/// The transaction proper, in order.
fn run(
    tree: &mut Tree,
    opts: &Options,
    ordered: &[Package],
    outcomes: &[Vec<FileOutcome>],
    spools: &Spools,
) -> Result<Report, InstallError> {
    let mut t = Txn {
        tree,
        opts,
        report: Report::default(),
        owners: HashMap::new(),
        installed_paths: Vec::new(),
        script_counter: 0,
    };
    for p in ordered {
        if let Some(s) = &p.pretrans {
            t.scriptlet(p, "%pretrans", s, &[], b"", true)?;
        }
    }
    for (i, p) in ordered.iter().enumerate() {
        t.report.packages.push(p.clone());
        t.sysusers(p)?;
        if let Some(s) = &p.pre {
            t.scriptlet(p, "%pre", s, &["1".into()], b"", true)?;
        }
        let spool = spools.take(i)?;
        let placed = t.unpack(i, p, outcomes[i].clone(), &spool);
        let _ = std::fs::remove_dir_all(&spool.dir);
        t.report.outcomes.push(placed?);
        if let Some(s) = &p.post {
            t.scriptlet(p, "%post", s, &["1".into()], b"", false)?;
        }
        t.triggers_after(i)?;
    }
    for p in ordered {
        if let Some(s) = &p.posttrans {
            t.scriptlet(p, "%posttrans", s, &["1".into()], b"", false)?;
        }
    }
    t.trans_file_triggers()?;
    Ok(t.report)
}

/// One package's payload on disk: the regular files with content, by header index, and which
/// header entries the payload had.
struct Spool {
    dir: PathBuf,
    /// Spooled content by header index, and whether the file already has its final mode and
    /// mtime (and owner: root), so placing it is a rename only.
    files: HashMap<usize, (PathBuf, bool)>,
    seen: Vec<bool>,
}

/// Spool results, filled by the workers in install order and taken by the transaction.
struct Spools {
    /// Package indices in the order workers take them.
    queue: Vec<usize>,
    next: std::sync::atomic::AtomicUsize,
    stopped: std::sync::atomic::AtomicBool,
    slots: std::sync::Mutex<Vec<Option<Result<Spool, InstallError>>>>,
    ready: std::sync::Condvar,
}

impl Spools {
    fn new(queue: Vec<usize>) -> Spools {
        let n = queue.len();
        Spools {
            queue,
            next: std::sync::atomic::AtomicUsize::new(0),
            stopped: std::sync::atomic::AtomicBool::new(false),
            slots: std::sync::Mutex::new((0..n).map(|_| None).collect()),
            ready: std::sync::Condvar::new(),
        }
    }

    fn work(
        &self,
        pkgs: &[Package],
        outcomes: &[Vec<FileOutcome>],
        root: &Path,
        real_owners: bool,
    ) {
        use std::sync::atomic::Ordering;
        loop {
            if self.stopped.load(Ordering::Relaxed) {
                return;
            }
            let Some(&i) = self.queue.get(self.next.fetch_add(1, Ordering::Relaxed)) else {
                return;
            };
            let p = &pkgs[i];
            // A panic must not leave the transaction waiting for this slot forever.
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                spool_package(p, &outcomes[i], &root.join(i.to_string()), real_owners)
            }))
            .unwrap_or_else(|_| {
                Err(InstallError::Payload {
                    package: p.nevra(),
                    message: "unpacking the payload failed unexpectedly (a bug in kiln)".into(),
                })
            });
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots[i] = Some(r);
            self.ready.notify_all();
        }
    }

    /// Waits for package `i`'s spool.
    fn take(&self, i: usize) -> Result<Spool, InstallError> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(r) = slots[i].take() {
                return r;
            }
            slots = self.ready.wait(slots).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn stop(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The order in which workers spool packages: by how late each may start and still be ready
/// when the transaction reaches it. In plain install order one large payload (a kernel's
/// modules) late in the transaction would be spooled last, by one worker, while the
/// transaction waits; started first, it overlaps everything before it.
fn spool_queue(sizes: impl Iterator<Item = u64>) -> Vec<usize> {
    // Placing a byte in the transaction costs about a third of spooling it (measured on the
    // Debian boot set), so package i is needed about prefix/3 after the start and takes `size`.
    let mut before = 0u64;
    let mut keyed: Vec<(i128, usize)> = sizes
        .enumerate()
        .map(|(i, size)| {
            let key = (before / 3) as i128 - size as i128;
            before += size;
            (key, i)
        })
        .collect();
    keyed.sort();
    keyed.into_iter().map(|(_, i)| i).collect()
}

/// What becomes of each header file before anything is unpacked: docs and languages left
/// out as asked, %ghost files owned but not created, directories emptied by that.
fn planned_outcomes(p: &Package, opts: &Options) -> Vec<FileOutcome> {
    let mut outcomes = vec![FileOutcome::Installed; p.files.len()];
    for (i, f) in p.files.iter().enumerate() {
        let doc = f.flags & flags::DOC != 0 && f.flags & flags::LICENSE == 0;
        if (doc && !opts.docs) || !keep_lang(&opts.languages, &f.lang) {
            outcomes[i] = FileOutcome::NotInstalled;
        } else if f.flags & flags::GHOST != 0 {
            outcomes[i] = FileOutcome::Ghost;
        }
    }
    skip_emptied_dirs(&p.files, &mut outcomes);
    outcomes
}

fn keep_lang(languages: &[String], lang: &str) -> bool {
    if lang.is_empty() || languages.is_empty() || lang == "C" {
        return true;
    }
    lang.split('|').any(|l| {
        languages.iter().any(|want| {
            l == want
                || l.split(['_', '.', '@']).next()
                    == Some(want.split(['_', '.', '@']).next().unwrap_or(want))
        })
    })
}

/// Streams a package's payload, calling `f` with each member's path, header and data.
fn each_member(
    p: &Package,
    mut f: impl FnMut(&str, &super::payload::Member, &mut dyn Read) -> Result<(), String>,
) -> Result<(), InstallError> {
    let err = |m: String| InstallError::Payload {
        package: p.nevra(),
        message: m,
    };
    let file = File::open(&p.path).map_err(|e| err(e.to_string()))?;
    let mut reader = BufReader::new(file);
    rpm::PackageMetadata::parse(&mut reader).map_err(|e| err(e.to_string()))?;
    let stream = decompressor(&p.payload_compressor, reader).map_err(|e| err(e.to_string()))?;
    let mut cpio = Cpio::new(stream);
    while let Some(m) = cpio.next_member().map_err(|e| err(e.to_string()))? {
        let path = m.path.clone();
        f(&path, &m, &mut cpio.data()).map_err(err)?;
    }
    Ok(())
}

/// Decompresses a package's payload into `dir` (streamed, never whole in memory), so paths can
/// be checked and conflicts decided before anything lands in the tree. Members the header does
/// not list, or whose size differs from it, make the package invalid.
fn spool_package(
    p: &Package,
    outcomes: &[FileOutcome],
    dir: &Path,
    real_owners: bool,
) -> Result<Spool, InstallError> {
    let by_path: HashMap<&str, usize> = p
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.path.as_str(), i))
        .collect();
    std::fs::create_dir_all(dir).map_err(|e| InstallError::Payload {
        package: p.nevra(),
        message: format!("cannot make a spool directory: {e}"),
    })?;
    let mut seen = vec![false; p.files.len()];
    let mut files = HashMap::new();
    let res = each_member(p, |path, m, data| {
        let Some(&i) = by_path.get(path) else {
            return Err(format!(
                "the payload has `{path}`, which the header does not list (a damaged or forged package)"
            ));
        };
        seen[i] = true;
        if outcomes[i] != FileOutcome::Installed || !p.files[i].is_regular() || m.size == 0 {
            return Ok(());
        }
        let tmp = dir.join(i.to_string());
        let mut out = File::create(&tmp).map_err(|e| e.to_string())?;
        let n = std::io::copy(data, &mut out).map_err(|e| e.to_string())?;
        if n != m.size {
            return Err(format!(
                "`{path}`: the payload holds {n} bytes, its header says {}",
                m.size
            ));
        }
        // Done here, in parallel, what the tree would do when placing the file, for the files
        // whose owner needs no lookup in the image's accounts: root's, or any when rootless.
        let f = &p.files[i];
        let root_owned = f.user == "root" && f.group == "root";
        let prepared = if !real_owners || root_owned {
            use std::os::unix::fs::PermissionsExt;
            let mode = if real_owners {
                f.mode & 0o7777
            } else {
                0o644 | (f.mode & 0o111)
            };
            out.set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(|e| e.to_string())?;
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::from(f.mtime));
            out.set_modified(t).map_err(|e| e.to_string())?;
            true
        } else {
            false
        };
        files.insert(i, (tmp, prepared));
        Ok(())
    });
    if let Err(e) = res {
        let _ = std::fs::remove_dir_all(dir);
        return Err(e);
    }
    Ok(Spool {
        dir: dir.to_path_buf(),
        files,
        seen,
    })
}

fn file_entry(mode: u32, uid: u32, gid: u32, mtime: i64) -> Entry {
    Entry {
        kind: Kind::File {
            size: 0,
            link: None,
        },
        mode: mode & 0o7777,
        uid,
        gid,
        mtime,
        xattrs: BTreeMap::new(),
    }
}

impl Txn<'_> {
    fn tree_err(&self, p: &Package) -> impl Fn(TreeError) -> InstallError + use<> {
        let package = p.nevra();
        move |source| InstallError::Tree {
            package: package.clone(),
            source,
        }
    }

    /// Runs one scriptlet in the sandbox. `fatal`: a failure stops the transaction (as rpm does
    /// for %pre and %pretrans); otherwise it is reported.
    fn scriptlet(
        &mut self,
        p: &Package,
        which: &str,
        s: &Scriptlet,
        args: &[String],
        stdin: &[u8],
        fatal: bool,
    ) -> Result<(), InstallError> {
        let note = |message: String, status: Option<i32>, output: String| ScriptletNote {
            package: p.nevra(),
            scriptlet: which.to_string(),
            status,
            message,
            output,
        };
        if !self.opts.scriptlets {
            self.report.skipped.push(note(
                "scriptlets are off for this image".into(),
                None,
                String::new(),
            ));
            return Ok(());
        }
        let interp = s
            .program
            .first()
            .cloned()
            .unwrap_or_else(|| "/bin/sh".into());
        if interp == "<lua>" {
            self.report.skipped.push(note(
                "Lua scriptlets (rpm's embedded interpreter) are not supported by kiln yet".into(),
                None,
                String::new(),
            ));
            return Ok(());
        }
        let present = self
            .tree
            .resolve(&interp)
            .ok()
            .and_then(|r| self.tree.get(&r).cloned())
            .is_some_and(|e| matches!(e.kind, Kind::File { .. }));
        if !present {
            self.report.skipped.push(note(
                format!("its interpreter {interp} is not in the image (yet)"),
                None,
                String::new(),
            ));
            return Ok(());
        }
        let mut argv: Vec<String> = s.program.clone();
        self.script_counter += 1;
        // The script goes where only this run sees it, and is gone before the tree is rescanned.
        let script_name = format!("/.kiln-scriptlet-{}", self.script_counter);
        let script_disk = self.tree.disk_path(&script_name);
        if !s.body.is_empty() {
            std::fs::write(&script_disk, &s.body).map_err(|e| InstallError::Payload {
                package: p.nevra(),
                message: format!("cannot write the {which} scriptlet: {e}"),
            })?;
            argv.push(script_name.clone());
        }
        argv.extend(args.iter().cloned());
        let result = sandbox::run(self.tree.root(), &argv, stdin);
        let _ = std::fs::remove_file(&script_disk);
        let out = result.map_err(|source| InstallError::Sandbox {
            package: p.nevra(),
            scriptlet: which.into(),
            source,
        })?;
        self.report.ran += 1;
        self.tree.rescan().map_err(self.tree_err(p))?;
        if !out.success() {
            let n = note(
                match out.status {
                    Some(c) => format!("exited with status {c}"),
                    None => "was killed by a signal".into(),
                },
                out.status,
                out.output,
            );
            if fatal {
                return Err(InstallError::Scriptlet(n));
            }
            self.report.failed.push(n);
        }
        Ok(())
    }

    /// RPM 4.19 and later (RPM 6 in Azure Linux 4.0) create the users and groups a package
    /// declares before its %pre: rpmbuild turns its sysusers.d lines into `user(NAME) = BASE64`,
    /// `group(…)` and `groupmember(…)` provides, and rpm feeds the decoded lines to
    /// systemd-sysusers. kiln applies them natively.
    fn sysusers(&mut self, p: &Package) -> Result<(), InstallError> {
        use base64::Engine as _;
        const EQUAL: u32 = 8;
        let mut lines = Vec::new();
        for pr in &p.provides {
            let declares = ["user(", "group(", "groupmember("]
                .iter()
                .any(|k| pr.name.starts_with(k));
            if !declares || pr.flags & EQUAL == 0 {
                continue;
            }
            // A plain `user(x)` provide with a version that is no base64 is not a declaration.
            let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(pr.evr.as_bytes())
            else {
                continue;
            };
            let Ok(line) = String::from_utf8(bytes) else {
                continue;
            };
            lines.push(line.trim_end_matches('\0').to_string());
        }
        if lines.is_empty() {
            return Ok(());
        }
        let bad = |m: String| InstallError::Payload {
            package: p.nevra(),
            message: format!("its sysusers declarations (user()/group() provides): {m}"),
        };
        let entries = accounts::parse_sysusers(&lines.join("\n")).map_err(bad)?;
        let mut acc = Accounts::read(self.tree);
        accounts::apply_sysusers(&mut acc, &entries).map_err(bad)?;
        acc.write(self.tree).map_err(self.tree_err(p))
    }

    fn unpack(
        &mut self,
        idx: usize,
        p: &Package,
        mut outcomes: Vec<FileOutcome>,
        spool: &Spool,
    ) -> Result<Vec<FileOutcome>, InstallError> {
        let acc = Accounts::read(self.tree);
        // rpm never looks up root: it is 0 even before /etc/passwd exists.
        let ids = |f: &PkgFile, warnings: &mut Vec<String>| {
            let uid = (f.user == "root")
                .then_some(0)
                .or_else(|| acc.uid_of(&f.user))
                .unwrap_or_else(|| {
                    warnings.push(format!(
                        "{}: user {} does not exist - using root ({})",
                        p.nevra(),
                        f.user,
                        f.path
                    ));
                    0
                });
            let gid = (f.group == "root")
                .then_some(0)
                .or_else(|| acc.gid_of(&f.group))
                .unwrap_or_else(|| {
                    warnings.push(format!(
                        "{}: group {} does not exist - using root ({})",
                        p.nevra(),
                        f.group,
                        f.path
                    ));
                    0
                });
            (uid, gid)
        };
        // hardlink sets: (dev, inode) → files of the set
        let mut link_sets: HashMap<(u32, u32), Vec<usize>> = HashMap::new();
        for (i, f) in p.files.iter().enumerate() {
            if f.is_regular() && outcomes[i] == FileOutcome::Installed {
                link_sets.entry(f.inode).or_default().push(i);
            }
        }
        let mut written: HashMap<(u32, u32), String> = HashMap::new();
        let mut paths = Vec::new();
        let mut warnings = Vec::new();
        let pkg_name = p.nevra();
        let seen = &spool.seen;
        let spooled = &spool.files;
        // Directories first, in path order, so files always find their parents.
        let mut order: Vec<usize> = (0..p.files.len()).collect();
        order.sort_by(|&a, &b| {
            p.files[b]
                .is_dir()
                .cmp(&p.files[a].is_dir())
                .then(p.files[a].path.cmp(&p.files[b].path))
        });
        let result = (|| -> Result<(), InstallError> {
            for i in order {
                let f = &p.files[i];
                if outcomes[i] != FileOutcome::Installed {
                    continue;
                }
                if !seen[i] && !f.is_dir() && f.flags & flags::GHOST == 0 {
                    // rpm lists it but the payload lacks it: only hardlink members without data
                    // may be missing; anything else is a broken package.
                    if !(f.is_regular() && link_sets.get(&f.inode).is_some_and(|s| s.len() > 1)) {
                        return Err(InstallError::Payload {
                            package: pkg_name.clone(),
                            message: format!(
                                "`{}` is in the header but not in the payload",
                                f.path
                            ),
                        });
                    }
                }
                let (uid, gid) = ids(f, &mut warnings);
                let mut entry = file_entry(f.mode, uid, gid, i64::from(f.mtime));
                if !f.caps.is_empty() {
                    let v = super::caps::to_xattr(&f.caps).map_err(|m| InstallError::Payload {
                        package: pkg_name.clone(),
                        message: format!("`{}`: file capability: {m}", f.path),
                    })?;
                    entry.xattrs.insert("security.capability".into(), v);
                }
                if f.is_dir() {
                    entry.kind = Kind::Dir;
                    // A directory shared with other packages keeps the first one's metadata, as
                    // rpm's does for the first installed.
                    let resolved = self.tree.resolve(&f.path).map_err(self.tree_err(p))?;
                    if self
                        .tree
                        .get(&resolved)
                        .is_none_or(|e| e.kind != Kind::Dir || !self.owners.contains_key(&resolved))
                    {
                        self.tree
                            .put_dir(&f.path, entry)
                            .map_err(self.tree_err(p))?;
                    }
                    self.owners.entry(resolved.clone()).or_insert(Owner {
                        pkg: idx,
                        file: i,
                        digest: String::new(),
                        mode: f.mode,
                        linkto: String::new(),
                        color: 0,
                    });
                    paths.push(resolved);
                    continue;
                }
                let resolved = self
                    .tree
                    .resolve_parent(&f.path)
                    .map_err(self.tree_err(p))?;
                if let Some(prev) = self.owners.get(&resolved) {
                    let same =
                        prev.digest == f.digest && prev.mode == f.mode && prev.linkto == f.linkto;
                    if prev.pkg != idx && !same {
                        // Multilib: the 64-bit (color 2) file wins, without a conflict.
                        if prev.color != 0 && f.color != 0 && prev.color != f.color {
                            if f.color < prev.color {
                                outcomes[i] = FileOutcome::WrongColor;
                                continue;
                            }
                            let (op, of) = (prev.pkg, prev.file);
                            self.report.outcomes[op][of] = FileOutcome::WrongColor;
                        } else if prev.mode & 0o170000 != 0o040000 {
                            let old = self.report.packages[prev.pkg].nevra();
                            return Err(InstallError::Conflict {
                                path: f.path.clone(),
                                new: pkg_name.clone(),
                                old,
                            });
                        }
                    } else if prev.pkg != idx {
                        // Identical files may be shared; the first stays.
                        paths.push(resolved);
                        continue;
                    }
                }
                let placed = if f.is_symlink() {
                    self.tree
                        .symlink(&f.path, &f.linkto, entry)
                        .map_err(self.tree_err(p))?
                } else if f.is_regular() {
                    let set = link_sets.get(&f.inode).filter(|s| s.len() > 1);
                    match (set, written.get(&f.inode)) {
                        (Some(_), Some(first)) => {
                            let first = first.clone();
                            self.tree
                                .hardlink(&f.path, &first)
                                .map_err(self.tree_err(p))?
                        }
                        _ => {
                            // The data of a hardlink set sits on one of its members.
                            let data = set
                                .and_then(|s| s.iter().find_map(|j| spooled.get(j)))
                                .or_else(|| spooled.get(&i));
                            let placed = match data {
                                Some((tmp, prepared)) => self
                                    .tree
                                    .adopt_file(&f.path, tmp, f.size, entry, *prepared)
                                    .map_err(self.tree_err(p))?,
                                None => self
                                    .tree
                                    .write_file(&f.path, &mut std::io::empty(), entry)
                                    .map_err(self.tree_err(p))?,
                            };
                            written.insert(f.inode, placed.clone());
                            placed
                        }
                    }
                } else {
                    let (major, minor) = (f.rdev >> 8, f.rdev & 0xff);
                    entry.kind = match f.file_type() {
                        0o020000 => Kind::CharDev { major, minor },
                        0o060000 => Kind::BlockDev { major, minor },
                        0o010000 => Kind::Fifo,
                        _ => Kind::Socket,
                    };
                    self.tree
                        .special(&f.path, entry)
                        .map_err(self.tree_err(p))?
                };
                self.owners.insert(
                    placed.clone(),
                    Owner {
                        pkg: idx,
                        file: i,
                        digest: f.digest.clone(),
                        mode: f.mode,
                        linkto: f.linkto.clone(),
                        color: f.color,
                    },
                );
                paths.push(placed);
            }
            Ok(())
        })();
        result?;
        self.report.warnings.extend(warnings);
        self.installed_paths.push(paths);
        Ok(outcomes)
    }

    /// Classic %triggerin and %filetriggerin after package `i` is in place.
    fn triggers_after(&mut self, i: usize) -> Result<(), InstallError> {
        let new = self.report.packages[i].clone();
        // Triggers of installed packages (this one included) that name the new package, and the
        // new package's triggers on what is already installed.
        let mut runs: Vec<(Package, package::Trigger, Vec<String>)> = Vec::new();
        for q in &self.report.packages[..=i] {
            for t in q.triggers.iter().filter(|t| t.kind == TriggerKind::In) {
                if t.conditions.contains(&new.name) {
                    runs.push((q.clone(), t.clone(), vec!["1".into(), "1".into()]));
                }
            }
        }
        for t in new.triggers.iter().filter(|t| t.kind == TriggerKind::In) {
            let installed_before = self.report.packages[..i]
                .iter()
                .any(|q| t.conditions.contains(&q.name));
            if installed_before && !t.conditions.contains(&new.name) {
                runs.push((new.clone(), t.clone(), vec!["1".into(), "1".into()]));
            }
        }
        for (q, t, args) in runs {
            self.scriptlet(&q, "%triggerin", &t.script, &args, b"", false)?;
        }
        let new_paths = self.installed_paths[i].clone();
        let mut file_runs: Vec<(u32, Package, package::Trigger, Vec<String>)> = Vec::new();
        for q in &self.report.packages[..=i] {
            for t in q.file_triggers.iter().filter(|t| t.kind == TriggerKind::In) {
                let matched = matching(&new_paths, &t.conditions);
                if !matched.is_empty() {
                    file_runs.push((t.priority, q.clone(), t.clone(), matched));
                }
            }
        }
        // Higher priority first, as rpm runs them.
        file_runs.sort_by_key(|r| std::cmp::Reverse(r.0));
        for (_, q, t, matched) in file_runs {
            let input = format!("{}\n", matched.join("\n"));
            self.scriptlet(
                &q,
                "%filetriggerin",
                &t.script,
                &["1".into()],
                input.as_bytes(),
                false,
            )?;
        }
        Ok(())
    }

    /// %transfiletriggerin: once per trigger, with every matching path of the transaction.
    fn trans_file_triggers(&mut self) -> Result<(), InstallError> {
        let all: Vec<String> = self.installed_paths.iter().flatten().cloned().collect();
        let mut runs: Vec<(u32, Package, package::Trigger, Vec<String>)> = Vec::new();
        for q in &self.report.packages {
            for t in q
                .trans_file_triggers
                .iter()
                .filter(|t| t.kind == TriggerKind::In)
            {
                let matched = matching(&all, &t.conditions);
                if !matched.is_empty() {
                    runs.push((t.priority, q.clone(), t.clone(), matched));
                }
            }
        }
        runs.sort_by_key(|r| std::cmp::Reverse(r.0));
        for (_, q, t, matched) in runs {
            let input = format!("{}\n", matched.join("\n"));
            self.scriptlet(
                &q,
                "%transfiletriggerin",
                &t.script,
                &["0".into()],
                input.as_bytes(),
                false,
            )?;
        }
        Ok(())
    }
}

/// As rpm's skipInstallFiles: a directory of the package whose every entry in the package was
/// left out is left out too (so `/usr/share/doc/NAME` is not made when docs are off). Deepest
/// first, so that emptied parents follow.
fn skip_emptied_dirs(files: &[PkgFile], outcomes: &mut [FileOutcome]) {
    let mut dirs: Vec<usize> = (0..files.len()).filter(|&i| files[i].is_dir()).collect();
    dirs.sort_by_key(|&i| std::cmp::Reverse(files[i].path.matches('/').count()));
    for d in dirs {
        let prefix = format!("{}/", files[d].path.trim_end_matches('/'));
        let mut any = false;
        let mut all_skipped = true;
        for (j, f) in files.iter().enumerate() {
            if j != d && f.path.starts_with(&prefix) {
                any = true;
                if outcomes[j] != FileOutcome::NotInstalled {
                    all_skipped = false;
                    break;
                }
            }
        }
        if any && all_skipped {
            outcomes[d] = FileOutcome::NotInstalled;
        }
    }
}

/// Paths matching any of the trigger's prefixes, sorted and unique. As rpm, a path matches when
/// its directory (with a trailing `/`) starts with the prefix: the prefix directory itself does
/// not match, what is in it does.
fn matching(paths: &[String], prefixes: &[String]) -> Vec<String> {
    let mut out: Vec<String> = paths
        .iter()
        .filter(|p| {
            let dir = p.rsplit_once('/').map_or("", |(d, _)| d);
            let dir = format!("{dir}/");
            prefixes.iter().any(|pre| dir.starts_with(pre.as_str()))
        })
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::{matching, spool_queue};

    #[test]
    fn large_payloads_are_spooled_first_the_rest_in_order() {
        let kib = 1024;
        // A 400 MiB kernel late in the transaction starts first; the small packages around it
        // are needed soon after the start and keep their order.
        let sizes = [10 * kib, 5 * kib, 5 * kib, 400 * 1024 * kib, 8 * kib];
        assert_eq!(spool_queue(sizes.into_iter()), [3, 0, 1, 2, 4]);
        // Equal sizes: plain install order.
        assert_eq!(spool_queue([7u64; 4].into_iter()), [0, 1, 2, 3]);
        assert!(spool_queue(std::iter::empty()).is_empty());
    }

    #[test]
    fn file_triggers_match_what_is_below_the_prefix() {
        let paths: Vec<String> = [
            "/usr/lib/x/plugins",
            "/usr/lib/x/plugins/a",
            "/usr/lib/x/plugins/d/b",
            "/usr/lib/x/other",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            matching(&paths, &["/usr/lib/x/plugins".into()]),
            ["/usr/lib/x/plugins/a", "/usr/lib/x/plugins/d/b"]
        );
        assert_eq!(
            matching(&paths, &["/usr/lib/x/plugins/".into()]),
            ["/usr/lib/x/plugins/a", "/usr/lib/x/plugins/d/b"]
        );
    }
}
