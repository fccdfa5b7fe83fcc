//! The rpm database inside the image (`/usr/lib/sysimage/rpm/rpmdb.sqlite`), written exactly as
//! rpm's sqlite backend writes it (rpm 4.16 to 6), so that rpm and dnf in the image read it.

mod header;
mod richdep;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql};

use header::{Header, InstallInfo, PackageHeaders, ReadError};

/// Where the database lives inside the root (rpm's `%_dbpath` on Fedora and Azure Linux).
pub const DBPATH: &str = "usr/lib/sysimage/rpm";
/// The database file inside [`DBPATH`].
pub const DBFILE: &str = "rpmdb.sqlite";

/// rpm's transaction color (`%_transaction_color`): 3 on every 64-bit platform kiln builds
/// (x86_64, aarch64), recorded as each package's INSTALLCOLOR.
const TRANSACTION_COLOR: u32 = 3;

/// One installed package, in install order.
#[derive(Clone, Debug)]
pub struct DbPackage {
    /// The `.rpm` file (already verified by fetch); its signature and main header are read.
    pub rpm_path: PathBuf,
    /// One per file in the header's file list (BASENAMES order).
    pub file_states: Vec<FileState>,
    /// Seconds since the epoch (kiln passes `SOURCE_DATE_EPOCH`).
    pub install_time: u32,
}

/// What became of a package's file on disk (rpm's `rpmfileState`, stored as FILESTATES).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FileState {
    /// Installed from this package.
    Normal,
    /// Replaced by another package's file (a conflict rpm allowed).
    Replaced,
    /// Deliberately not installed: an excluded `%doc`, a `%lang` file not kept, a path
    /// excluded from the image. `rpm -V` skips it.
    NotInstalled,
    /// Under a `%_netsharedpath`: not touched.
    NetShared,
    /// A multilib file that lost to the other architecture's version.
    WrongColor,
}

impl FileState {
    fn code(self) -> u8 {
        match self {
            FileState::Normal => 0,
            FileState::Replaced => 1,
            FileState::NotInstalled => 2,
            FileState::NetShared => 3,
            FileState::WrongColor => 4,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RpmdbError {
    #[error("cannot read package {}: {source}", path.display())]
    ReadPackage { path: PathBuf, source: io::Error },
    #[error("package {}: {reason}", path.display())]
    BadPackage { path: PathBuf, reason: String },
    #[error("package {}: {given} file states given for {files} files in its header", path.display())]
    FileStates {
        path: PathBuf,
        given: usize,
        files: usize,
    },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("rpm database {}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("rpm database {}: package {hnum}: {reason}", path.display())]
    BadBlob {
        path: PathBuf,
        hnum: i64,
        reason: String,
    },
}

/// An index table: its name (rpm's tag name), the header tag it indexes, whether keys are
/// text (string tags) and whether the tag is an array (then rpm also indexes `hnum`).
struct Index {
    table: &'static str,
    tag: u32,
    text: bool,
    array: bool,
}

const REQUIRENAME: u32 = 1049;
const REQUIREFLAGS: u32 = 1048;
const CONFLICTNAME: u32 = 1054;
const TRIGGERNAME: u32 = 1066;
const GROUP: u32 = 1016;
const RECOMMENDNAME: u32 = 5046;
const SUGGESTNAME: u32 = 5049;
const SUPPLEMENTNAME: u32 = 5052;
const ENHANCENAME: u32 = 5055;
const FILETRIGGERNAME: u32 = 5069;
const FILETRIGGERINDEX: u32 = 5070;
const TRANSFILETRIGGERNAME: u32 = 5079;
const TRANSFILETRIGGERINDEX: u32 = 5080;

/// rpm's `dbiTags`, in its order: tables are created and rows inserted in this order.
const INDEXES: [Index; 18] = [
    idx("Name", header::NAME, true, false),
    idx("Basenames", header::BASENAMES, true, true),
    idx("Group", GROUP, true, false),
    idx("Requirename", REQUIRENAME, true, true),
    idx("Providename", 1047, true, true),
    idx("Conflictname", CONFLICTNAME, true, true),
    idx("Obsoletename", 1090, true, true),
    idx("Triggername", TRIGGERNAME, true, true),
    idx("Dirnames", 1118, true, true),
    idx("Installtid", 1128, false, false),
    idx("Sigmd5", 261, false, false),
    idx("Sha1header", 269, true, false),
    idx("Filetriggername", FILETRIGGERNAME, true, true),
    idx("Transfiletriggername", TRANSFILETRIGGERNAME, true, true),
    idx("Recommendname", RECOMMENDNAME, true, true),
    idx("Suggestname", SUGGESTNAME, true, true),
    idx("Supplementname", SUPPLEMENTNAME, true, true),
    idx("Enhancename", ENHANCENAME, true, true),
];

const fn idx(table: &'static str, tag: u32, text: bool, array: bool) -> Index {
    Index {
        table,
        tag,
        text,
        array,
    }
}

/// rpmds.h's `isTransientReq`: requirements needed only while installing (scriptlet
/// prerequisites, `rpmlib()` features) are left out of the Requirename index, so rpm's
/// `--whatrequires` and erase checks ignore them.
fn is_transient_req(flags: u32) -> bool {
    const POSTTRANS: u32 = 1 << 5;
    const PRETRANS: u32 = 1 << 7;
    const SCRIPT_PRE: u32 = 1 << 9;
    const SCRIPT_POST: u32 = 1 << 10;
    const SCRIPT_PREUN: u32 = 1 << 11;
    const SCRIPT_POSTUN: u32 = 1 << 12;
    const PREUNTRANS: u32 = 1 << 20;
    const POSTUNTRANS: u32 = 1 << 21;
    const RPMLIB: u32 = 1 << 24;
    const KEYRING: u32 = 1 << 26;
    const META: u32 = 1 << 29;
    let install_only = SCRIPT_PRE | SCRIPT_POST | RPMLIB | KEYRING | PRETRANS | POSTTRANS;
    let erase_only = SCRIPT_PREUN | SCRIPT_POSTUN | PREUNTRANS | POSTUNTRANS;
    flags & install_only != 0 && flags & erase_only == 0 && flags & META == 0
}

/// One row of an index table.
struct Row {
    index: usize,
    key: Vec<u8>,
    idx: u32,
}

/// The index rows rpm writes for one header (`tag2index` for each of `dbiTags`), in order.
fn index_rows(h: &Header<'_>) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for (index, ix) in INDEXES.iter().enumerate() {
        let Some(entry) = h.find(ix.tag) else {
            // rpm files packages without a group under "Unknown" (legacy behaviour).
            if ix.tag == GROUP {
                rows.push(Row {
                    index,
                    key: b"Unknown".to_vec(),
                    idx: 0,
                });
            }
            continue;
        };
        let keys = h.keys_of(entry);
        let req_flags = if ix.tag == REQUIRENAME {
            h.u32s(REQUIREFLAGS)
        } else {
            None
        };
        let trigger_index = match ix.tag {
            FILETRIGGERNAME => Some(h.u32s(FILETRIGGERINDEX).unwrap_or_default()),
            TRANSFILETRIGGERNAME => Some(h.u32s(TRANSFILETRIGGERINDEX).unwrap_or_default()),
            _ => None,
        };
        for (i, key) in keys.iter().enumerate() {
            let idx = match &trigger_index {
                // File triggers are filed under their trigger's number, not their position.
                Some(t) => *t
                    .get(i)
                    .ok_or_else(|| format!("file trigger {i} has no trigger index"))?,
                None => i as u32,
            };
            if let Some(flags) = req_flags.as_ref().and_then(|f| f.get(i))
                && is_transient_req(*flags)
            {
                continue;
            }
            // rpm files each trigger name once.
            if ix.tag == TRIGGERNAME && keys[..i].contains(key) {
                continue;
            }
            let rich = key.first() == Some(&b'(')
                && entry.ty == header::T_STRING_ARRAY
                && matches!(
                    ix.tag,
                    REQUIRENAME
                        | CONFLICTNAME
                        | SUGGESTNAME
                        | SUPPLEMENTNAME
                        | RECOMMENDNAME
                        | ENHANCENAME
                );
            rows.push(Row {
                index,
                key: key.clone(),
                idx,
            });
            if rich {
                for name in richdep::index_names(key) {
                    rows.push(Row {
                        index,
                        key: name,
                        idx,
                    });
                }
            }
        }
    }
    Ok(rows)
}

/// A package ready for the database: its header blob and its index rows.
struct Prepared {
    blob: Vec<u8>,
    rows: Vec<Row>,
}

/// Reads a package file: its headers, and the digests of the whole file.
fn read_headers(path: &Path) -> Result<PackageHeaders, RpmdbError> {
    let file = fs::File::open(path).map_err(|source| RpmdbError::ReadPackage {
        path: path.to_path_buf(),
        source,
    })?;
    header::read_package(file).map_err(|e| match e {
        ReadError::Io(source) => RpmdbError::ReadPackage {
            path: path.to_path_buf(),
            source,
        },
        ReadError::Format(reason) => RpmdbError::BadPackage {
            path: path.to_path_buf(),
            reason,
        },
    })
}

/// Package files read ahead of [`write_rpmdb_preloaded`]: reading hashes whole files, which a
/// build can do while the transaction still runs.
pub struct Preloaded(std::collections::HashMap<PathBuf, PackageHeaders>);

/// Reads `paths` on all cores.
pub fn preload(paths: &[PathBuf]) -> Result<Preloaded, RpmdbError> {
    let read = parallel(paths, |p| read_headers(p))?;
    Ok(Preloaded(paths.iter().cloned().zip(read).collect()))
}

fn prepare(
    pkg: &DbPackage,
    install_tid: u32,
    pre: Option<&Preloaded>,
) -> Result<Prepared, RpmdbError> {
    let path = &pkg.rpm_path;
    let bad = |reason: String| RpmdbError::BadPackage {
        path: path.clone(),
        reason,
    };
    let read;
    let headers: &PackageHeaders = match pre.and_then(|p| p.0.get(path)) {
        Some(h) => h,
        None => {
            read = read_headers(path)?;
            &read
        }
    };
    let files = header::file_count(&headers.main).map_err(bad)?;
    if files != pkg.file_states.len() {
        return Err(RpmdbError::FileStates {
            path: path.clone(),
            given: pkg.file_states.len(),
            files,
        });
    }
    let states: Vec<u8> = pkg.file_states.iter().map(|s| s.code()).collect();
    let blob = header::installed_blob(
        headers,
        &InstallInfo {
            file_states: &states,
            install_tid,
            install_time: pkg.install_time,
            install_color: TRANSACTION_COLOR,
        },
    )
    .map_err(bad)?;
    let rows = index_rows(&Header::parse(&blob).map_err(bad)?).map_err(bad)?;
    Ok(Prepared { blob, rows })
}

/// Reads and prepares every package, on all cores (reading means hashing whole files).
/// Results come back in package order, so the first failing package is the one reported.
fn prepare_all(
    packages: &[DbPackage],
    install_tid: u32,
    pre: Option<&Preloaded>,
) -> Result<Vec<Prepared>, RpmdbError> {
    parallel(packages, |pkg| prepare(pkg, install_tid, pre))
}

/// `f` over `items` on all cores; results in item order, the first error wins.
fn parallel<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> Result<R, RpmdbError> + Sync,
) -> Result<Vec<R>, RpmdbError> {
    use std::sync::atomic::{AtomicUsize, Ordering};

    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len().max(1));
    let mut done: Vec<(usize, Result<R, RpmdbError>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        mine.push((i, f(item)));
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            // A panic here is a bug in this module, not bad input: let it propagate.
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// An index key bound as rpm binds it: TEXT for string tags (bytes as they are, even if not
/// UTF-8), BLOB otherwise.
struct Key<'a> {
    bytes: &'a [u8],
    text: bool,
}

impl ToSql for Key<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(if self.text {
            ValueRef::Text(self.bytes)
        } else {
            ValueRef::Blob(self.bytes)
        }))
    }
}

/// Creates the schema with rpm's own statements (sqlite.c `init_table`, `init_index`), in the
/// order rpm opens its tables, so `sqlite_master` matches a database rpm created.
fn create_schema(db: &Connection) -> rusqlite::Result<()> {
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS 'Packages' (\
         hnum INTEGER PRIMARY KEY AUTOINCREMENT,\
         blob BLOB NOT NULL)",
    )?;
    for ix in &INDEXES {
        let keytype = if ix.text { "TEXT" } else { "BLOB" };
        db.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS '{t}' (\
             key '{keytype}' NOT NULL, \
             hnum INTEGER NOT NULL, \
             idx INTEGER NOT NULL, \
             FOREIGN KEY (hnum) REFERENCES 'Packages'(hnum))",
            t = ix.table
        ))?;
        let mut cols = Vec::new();
        if ix.text {
            cols.push("key");
        }
        if ix.array {
            cols.push("hnum");
        }
        for col in cols {
            db.execute_batch(&format!(
                "CREATE INDEX IF NOT EXISTS '{t}_{col}_idx' ON '{t}'({col} ASC)",
                t = ix.table
            ))?;
        }
    }
    Ok(())
}

fn fill(db: &mut Connection, prepared: &[Prepared]) -> rusqlite::Result<()> {
    let tx = db.transaction()?;
    {
        let mut put_pkg = tx.prepare("INSERT INTO 'Packages' VALUES(?, ?)")?;
        let mut put_idx = INDEXES
            .iter()
            .map(|ix| tx.prepare(&format!("INSERT INTO '{}' VALUES(?, ?, ?)", ix.table)))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for (n, p) in prepared.iter().enumerate() {
            let hnum = n as i64 + 1;
            put_pkg.execute((hnum, &p.blob))?;
            for row in &p.rows {
                let key = Key {
                    bytes: &row.key,
                    text: INDEXES[row.index].text,
                };
                put_idx[row.index].execute((key, hnum, row.idx))?;
            }
        }
    }
    tx.commit()
}

/// Writes `ROOT/usr/lib/sysimage/rpm/rpmdb.sqlite` for `packages` (in install order: they get
/// hnum 1..n), replacing any database there. `install_tid` is the transaction id rpm records
/// for all of them (INSTALLTID).
///
/// Each package's header is stored as rpm stores an installed one (see `header.rs`), and the
/// index tables get the rows rpm's `tag2index` would insert, in the same order. The file is
/// built fresh in one transaction with a fixed page size and no WAL, then renamed into place:
/// the same packages and times give the same bytes.
pub fn write_rpmdb(
    root: &Path,
    packages: &[DbPackage],
    install_tid: u32,
) -> Result<(), RpmdbError> {
    write_rpmdb_preloaded(root, packages, install_tid, None)
}

/// [`write_rpmdb`] using package files already read by [`preload`] (others are read now).
pub fn write_rpmdb_preloaded(
    root: &Path,
    packages: &[DbPackage],
    install_tid: u32,
    pre: Option<&Preloaded>,
) -> Result<(), RpmdbError> {
    let prepared = prepare_all(packages, install_tid, pre)?;

    let dir = root.join(DBPATH);
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RpmdbError::Io { path, source }
    };
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let target = dir.join(DBFILE);
    // Built beside the target and renamed over it, so the database is never half-written.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{DBFILE}.kiln-{}-{n}.tmp", std::process::id()));
    remove_if_present(&tmp).map_err(io_err(&tmp))?;

    let result = write_file(&tmp, &prepared).and_then(|()| {
        fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io_err(&tmp))?;
        // A WAL or journal left by an earlier database would be replayed into the new one.
        for suffix in ["-wal", "-shm", "-journal"] {
            let stale = dir.join(format!("{DBFILE}{suffix}"));
            remove_if_present(&stale).map_err(io_err(&stale))?;
        }
        fs::rename(&tmp, &target).map_err(io_err(&target))?;
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&dir))
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn write_file(path: &Path, prepared: &[Prepared]) -> Result<(), RpmdbError> {
    let sql = |source| RpmdbError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let mut db = Connection::open(path).map_err(sql)?;
    // rpm's page size (SQLite's default, pinned so a differently built SQLite cannot change the
    // layout). No journal at all: the file is new and discarded on failure, and a rollback
    // journal or WAL would only leave files behind; rpm switches it to WAL when it first writes.
    db.execute_batch(
        "PRAGMA page_size = 4096;
         PRAGMA journal_mode = OFF;
         PRAGMA synchronous = OFF;",
    )
    .map_err(sql)?;
    create_schema(&db).map_err(sql)?;
    fill(&mut db, prepared).map_err(sql)?;
    db.close().map_err(|(_, e)| sql(e))?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).map_err(|source| RpmdbError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The NEVRAs (`name-[epoch:]version-release.arch`) of the packages in ROOT's rpm database, in
/// database order, read from the stored headers.
pub fn read_names(root: &Path) -> Result<Vec<String>, RpmdbError> {
    let path = root.join(DBPATH).join(DBFILE);
    let sql = |source| RpmdbError::Sqlite {
        path: path.clone(),
        source,
    };
    if !path.exists() {
        return Err(RpmdbError::Io {
            path: path.clone(),
            source: io::Error::from(io::ErrorKind::NotFound),
        });
    }
    let db = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql)?;
    let mut stmt = db
        .prepare("SELECT hnum, blob FROM 'Packages' ORDER BY hnum")
        .map_err(sql)?;
    let mut rows = stmt.query([]).map_err(sql)?;
    let mut names = Vec::new();
    while let Some(row) = rows.next().map_err(sql)? {
        let hnum: i64 = row.get(0).map_err(sql)?;
        let blob: Vec<u8> = row.get(1).map_err(sql)?;
        let bad = |reason: String| RpmdbError::BadBlob {
            path: path.clone(),
            hnum,
            reason,
        };
        let h = Header::parse(&blob).map_err(bad)?;
        names.push(
            h.nevra()
                .ok_or_else(|| bad("header has no name, version or release".into()))?,
        );
    }
    Ok(names)
}

/// The install time kiln records for the `k`-th package installed: as rpm under
/// SOURCE_DATE_EPOCH, one second apart, so `rpm -qa --last` keeps the install order.
pub fn install_time(epoch: i64, k: usize) -> u32 {
    (epoch + k as i64).clamp(0, u32::MAX as i64) as u32
}
