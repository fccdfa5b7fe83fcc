//! Fetching packages: concurrent downloads (tokio) with retries and resume, verification before use
//! (size and sha256 from the repository metadata, OpenPGP signature, payload digest), a
//! content-addressed package cache shared safely between concurrent builds.
//!
//! `fetch_all` is the whole API: it takes what the resolver chose (URLs, checksums, keys) and
//! hands back verified files in the cache, in the same order. Layout of the cache (under
//! `FetchOptions::cache_dir`): `packages/sha256/<first2>/<sha256>.rpm` for verified packages,
//! `packages/partial/<sha256>.part` (and `.lock`) for downloads in progress, `keys/` for
//! downloaded signing keys.

mod download;
mod keys;
mod progress;
mod store;
mod verify;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use download::DownloadError;
pub use keys::KeyError;
pub use store::StoreError;
pub use verify::VerifyError;

use download::Settings;
use keys::Keyring;
use progress::{Done, Reporter};
use store::Store;

/// One package to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchItem {
    /// `name-[epoch:]version-release.arch`, for messages.
    pub nevra: String,
    /// Full URLs (`file://`, `http://`, `https://`), tried in order (mirrors).
    pub urls: Vec<String>,
    /// Expected sha256 of the whole `.rpm` (from the repository metadata), hex.
    pub sha256: String,
    /// Expected size in bytes (0 = unknown).
    pub size: u64,
    /// Verify the OpenPGP signature (and the payload digest it covers).
    pub gpgcheck: bool,
    /// Armored public key files or URLs (`file://`, `https://`, plain paths) the signature must
    /// verify against.
    pub keys: Vec<String>,
}

/// How progress is shown on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Progress {
    /// Bars on a terminal, plain lines otherwise.
    #[default]
    Auto,
    /// indicatif bars: overall, and one per download.
    Bars,
    /// A line every few seconds (`fetch: 12/40 packages, 35.2 MiB of 80.1 MiB`) and a summary.
    Lines,
    /// Nothing.
    Quiet,
}

/// How to fetch.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// The cache root (packages go under `packages/`); default `repo::cache::cache_root()`.
    pub cache_dir: PathBuf,
    /// Downloads (and verifications) at the same time; default 6.
    pub jobs: usize,
    /// Use only the cache; a package not in it is an error.
    pub offline: bool,
    pub progress: Progress,
    /// Retries per URL after network errors, 5xx and 429 (with exponential backoff); default 3.
    pub retries: u32,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            cache_dir: crate::repo::cache::cache_root(),
            jobs: 6,
            offline: false,
            progress: Progress::Auto,
            retries: 3,
        }
    }
}

/// What the signature check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// Signed by this key (lowercase hex fingerprint of the key or subkey that verified), and the
    /// payload digest the signed header carries matches.
    Verified { key: String },
    /// `gpgcheck` was off (the caller reports it).
    NotChecked,
}

/// One fetched, verified package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The file in the content-addressed cache.
    pub path: PathBuf,
    /// This call downloaded nothing for it: it was in the cache, or another build sharing the
    /// cache put it there while this one waited for it.
    pub from_cache: bool,
    pub signature: Signature,
}

/// Why packages could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{nevra}: the expected sha256 `{sha256}` is not 64 hexadecimal digits")]
    BadChecksum { nevra: String, sha256: String },
    #[error("{nevra}: no URL to download it from")]
    NoUrls { nevra: String },
    #[error("{nevra}: gpgcheck is on but no key is given to verify its signature against")]
    NoKeys { nevra: String },
    #[error(
        "{nevra}: not in the package cache ({}), and offline mode forbids downloading it{}",
        path.display(),
        damaged_note(damaged)
    )]
    Offline {
        nevra: String,
        path: PathBuf,
        /// The cached copy was there but damaged: why.
        damaged: Option<String>,
    },
    #[error("{nevra}: cannot download it: {}", failures_text(failures))]
    Download {
        nevra: String,
        /// One per URL tried, in order.
        failures: Vec<DownloadError>,
    },
    #[error("{nevra} ({origin}): {source}")]
    Verify {
        nevra: String,
        /// The URL or cache path of the file that failed.
        origin: String,
        #[source]
        source: VerifyError,
    },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("{nevra}: {source}")]
    Cache {
        nevra: String,
        #[source]
        source: StoreError,
    },
    #[error("cannot run the downloads: {0}")]
    Runtime(String),
    #[error("{} packages could not be fetched:{}", .0.len(), several_text(.0))]
    Several(Vec<FetchError>),
}

fn damaged_note(d: &Option<String>) -> String {
    d.as_ref()
        .map(|d| format!(" (the cached copy is damaged: {d})"))
        .unwrap_or_default()
}

fn failures_text(f: &[DownloadError]) -> String {
    f.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Every error on its own line, at most 20 of them.
fn several_text(errors: &[FetchError]) -> String {
    const SHOWN: usize = 20;
    let mut s = String::new();
    for e in errors.iter().take(SHOWN) {
        s.push_str("\n  ");
        s.push_str(&e.to_string());
    }
    if errors.len() > SHOWN {
        s.push_str(&format!("\n  … and {} more", errors.len() - SHOWN));
    }
    s
}

/// Fetches and verifies every package; the result is in the same order as `items`. Every
/// package is attempted, and every failure is reported (one error, or `Several`).
///
/// Blocking: it runs its own tokio runtime (on a separate thread when called from inside one).
pub fn fetch_all(items: &[FetchItem], opts: &FetchOptions) -> Result<Vec<Fetched>, FetchError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let run = || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.jobs.clamp(1, 4))
            .thread_name("kiln-fetch")
            .enable_all()
            .build()
            .map_err(|e| FetchError::Runtime(e.to_string()))?;
        rt.block_on(run(items.to_vec(), opts.clone()))
    };
    // A runtime cannot be started on a thread that is running one (the caller may be async).
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| s.spawn(run).join())
            .unwrap_or_else(|_| Err(FetchError::Runtime("the download thread panicked".into())))
    } else {
        run()
    }
}

/// What every task shares.
struct Ctx {
    items: Vec<FetchItem>,
    store: Store,
    settings: Settings,
    slots: tokio::sync::Semaphore,
    offline: bool,
    keyrings: HashMap<Vec<String>, Arc<Keyring>>,
    reporter: Arc<Reporter>,
}

async fn run(items: Vec<FetchItem>, opts: FetchOptions) -> Result<Vec<Fetched>, FetchError> {
    // rustls with ring, installed once for the process (as repo::transport does).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        // Per read, not per download: a big package on a slow link may take long.
        .read_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| FetchError::Runtime(download::error_chain(&e)))?;

    // Keys first: without them nothing can be verified, cached or not.
    let mut keyrings = HashMap::new();
    for item in &items {
        if item.gpgcheck && !item.keys.is_empty() && !keyrings.contains_key(&item.keys) {
            let ring = keys::load(&item.keys, &opts.cache_dir, opts.offline, &client).await?;
            keyrings.insert(item.keys.clone(), Arc::new(ring));
        }
    }

    let reporter = Reporter::new(&opts.progress, &items);
    let n = items.len();
    let ctx = Arc::new(Ctx {
        items,
        store: Store::new(&opts.cache_dir),
        settings: Settings {
            client,
            retries: opts.retries,
            backoff: Duration::from_millis(250),
        },
        slots: tokio::sync::Semaphore::new(opts.jobs.max(1)),
        offline: opts.offline,
        keyrings,
        reporter: Arc::clone(&reporter),
    });
    let ticker = reporter.wants_lines().then(|| {
        let r = Arc::clone(&reporter);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(progress::LINE_INTERVAL).await;
                eprintln!("{}", r.line());
            }
        })
    });

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let ctx = Arc::clone(&ctx);
        tasks.spawn(async move { (i, fetch_one(&ctx, i).await) });
    }
    let mut results: Vec<Option<Result<Fetched, FetchError>>> = (0..n).map(|_| None).collect();
    let mut lost = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((i, r)) => results[i] = Some(r),
            Err(e) => lost = Some(e.to_string()),
        }
    }
    if let Some(t) = ticker {
        t.abort();
    }
    reporter.close();

    let mut out = Vec::with_capacity(n);
    let mut errors = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Some(Ok(f)) => out.push(f),
            Some(Err(e)) => errors.push(e),
            None => errors.push(FetchError::Runtime(format!(
                "{}: the download task failed: {}",
                ctx.items[i].nevra,
                lost.as_deref().unwrap_or("unknown reason")
            ))),
        }
    }
    match errors.len() {
        0 => Ok(out),
        1 => Err(errors.remove(0)),
        _ => Err(FetchError::Several(errors)),
    }
}

async fn fetch_one(ctx: &Ctx, i: usize) -> Result<Fetched, FetchError> {
    let item = &ctx.items[i];
    let r = fetch_item(ctx, item).await;
    let how = match &r {
        Ok(f) if f.from_cache => Done::Cached,
        Ok(_) => Done::Downloaded,
        Err(_) => Done::Failed,
    };
    ctx.reporter.finished(item.size, how);
    r
}

/// The sha256 in lowercase, if it is one (it becomes a file name, so it must be exactly hex).
fn normalize_sha256(s: &str) -> Option<String> {
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

enum Cached {
    Good(Signature),
    Missing,
    Damaged(VerifyError),
}

async fn fetch_item(ctx: &Ctx, item: &FetchItem) -> Result<Fetched, FetchError> {
    let nevra = &item.nevra;
    let sha = normalize_sha256(&item.sha256).ok_or_else(|| FetchError::BadChecksum {
        nevra: nevra.clone(),
        sha256: item.sha256.clone(),
    })?;
    let keys = if item.gpgcheck {
        let ring = ctx
            .keyrings
            .get(&item.keys)
            .ok_or_else(|| FetchError::NoKeys {
                nevra: nevra.clone(),
            })?;
        Some(Arc::clone(ring))
    } else {
        None
    };
    let cache_err = |source| FetchError::Cache {
        nevra: nevra.clone(),
        source,
    };
    let _slot = ctx
        .slots
        .acquire()
        .await
        .map_err(|e| FetchError::Runtime(e.to_string()))?;

    // Fast path without the lock: a cache entry is only ever replaced by an identical verified
    // file, or removed after it failed verification, so a good one stays good.
    let path = ctx.store.package(&sha);
    let damaged = match check_cached(item, &sha, &path, &keys).await? {
        Cached::Good(signature) => {
            return Ok(Fetched {
                path,
                from_cache: true,
                signature,
            });
        }
        Cached::Missing => None,
        Cached::Damaged(e) => Some(e),
    };
    if ctx.offline {
        return Err(FetchError::Offline {
            nevra: nevra.clone(),
            path,
            damaged: damaged.map(|e| e.to_string()),
        });
    }
    if item.urls.is_empty() {
        return Err(FetchError::NoUrls {
            nevra: nevra.clone(),
        });
    }

    let _lock = ctx.store.lock(&sha).await.map_err(cache_err)?;
    // Another task or process may have fetched it while this one waited for the lock.
    match check_cached(item, &sha, &path, &keys).await? {
        Cached::Good(signature) => {
            return Ok(Fetched {
                path,
                from_cache: true,
                signature,
            });
        }
        Cached::Damaged(_) => ctx.store.discard(&sha).map_err(cache_err)?,
        Cached::Missing => {}
    }
    let (path, signature) = download_verified(ctx, item, &sha, &keys).await?;
    Ok(Fetched {
        path,
        from_cache: false,
        signature,
    })
}

async fn verify_blocking(
    path: PathBuf,
    sha: String,
    size: u64,
    keys: Option<Arc<Keyring>>,
) -> Result<Signature, VerifyError> {
    let p = path.clone();
    tokio::task::spawn_blocking(move || verify::verify_package(&p, &sha, size, keys.as_deref()))
        .await
        .unwrap_or_else(|e| {
            Err(VerifyError::Io {
                path,
                source: std::io::Error::other(format!("the verification task failed: {e}")),
            })
        })
}

async fn check_cached(
    item: &FetchItem,
    sha: &str,
    path: &std::path::Path,
    keys: &Option<Arc<Keyring>>,
) -> Result<Cached, FetchError> {
    if !path.exists() {
        return Ok(Cached::Missing);
    }
    match verify_blocking(path.to_path_buf(), sha.into(), item.size, keys.clone()).await {
        Ok(sig) => Ok(Cached::Good(sig)),
        Err(e) if e.is_content_mismatch() => Ok(Cached::Damaged(e)),
        // Removed (as damaged, by another process) between the check and the read.
        Err(VerifyError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(Cached::Missing)
        }
        // The file is exactly what the metadata names, and that package is bad: another copy
        // would be too.
        Err(source) => Err(FetchError::Verify {
            nevra: item.nevra.clone(),
            origin: path.display().to_string(),
            source,
        }),
    }
}

/// Downloads from the first URL that gives a file with the right sha256, verifies it and moves
/// it into the cache. The partial file is kept across attempts and mirrors (it is the same
/// content wherever it comes from) and removed when what it became fails verification.
async fn download_verified(
    ctx: &Ctx,
    item: &FetchItem,
    sha: &str,
    keys: &Option<Arc<Keyring>>,
) -> Result<(PathBuf, Signature), FetchError> {
    let nevra = &item.nevra;
    let cache_err = |source| FetchError::Cache {
        nevra: nevra.clone(),
        source,
    };
    let part = ctx.store.partial(sha);
    let transfer = ctx.reporter.transfer(nevra, item.size);
    let mut failures = Vec::new();
    for url in &item.urls {
        let mut started_over = false;
        loop {
            let outcome =
                match download::fetch(&ctx.settings, url, &part, item.size, &transfer).await {
                    Ok(o) => o,
                    // The local disk, not the mirror: no other URL will do better.
                    Err(e @ DownloadError::Part { .. }) => {
                        return Err(FetchError::Download {
                            nevra: nevra.clone(),
                            failures: vec![e],
                        });
                    }
                    Err(e) => {
                        failures.push(e);
                        break;
                    }
                };
            match verify_blocking(part.clone(), sha.into(), item.size, keys.clone()).await {
                Ok(signature) => {
                    drop(transfer);
                    let path = ctx.store.commit(&part, sha).map_err(cache_err)?;
                    return Ok((path, signature));
                }
                Err(e) => {
                    ctx.store.discard_partial(sha).map_err(cache_err)?;
                    transfer.set(0);
                    if !e.is_content_mismatch() {
                        return Err(FetchError::Verify {
                            nevra: nevra.clone(),
                            origin: url.clone(),
                            source: e,
                        });
                    }
                    // A continued download may be wrong because of the old part: once more,
                    // from scratch.
                    if outcome.resumed && !started_over {
                        started_over = true;
                        continue;
                    }
                    failures.push(DownloadError::Corrupt {
                        url: url.clone(),
                        source: e,
                    });
                    break;
                }
            }
        }
    }
    Err(FetchError::Download {
        nevra: nevra.clone(),
        failures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_must_be_hex() {
        let good = "AB".repeat(32);
        assert_eq!(normalize_sha256(&good), Some("ab".repeat(32)));
        assert_eq!(normalize_sha256("ab"), None);
        assert_eq!(normalize_sha256(&"../".repeat(22)[..64]), None);
    }

    #[test]
    fn bad_items_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let opts = FetchOptions {
            cache_dir: dir.path().into(),
            progress: Progress::Quiet,
            ..Default::default()
        };
        let item = FetchItem {
            nevra: "a-1-1.noarch".into(),
            urls: vec![],
            sha256: "x".into(),
            size: 0,
            gpgcheck: false,
            keys: vec![],
        };
        let e = fetch_all(std::slice::from_ref(&item), &opts).unwrap_err();
        assert!(matches!(e, FetchError::BadChecksum { .. }), "{e}");
        let item = FetchItem {
            sha256: "ab".repeat(32),
            ..item
        };
        let e = fetch_all(std::slice::from_ref(&item), &opts).unwrap_err();
        assert!(matches!(e, FetchError::NoUrls { .. }), "{e}");
        let e = fetch_all(
            &[FetchItem {
                gpgcheck: true,
                ..item.clone()
            }],
            &opts,
        )
        .unwrap_err();
        assert!(matches!(e, FetchError::NoKeys { .. }), "{e}");
        let e = fetch_all(&[item.clone(), item], &opts).unwrap_err();
        assert!(matches!(&e, FetchError::Several(v) if v.len() == 2), "{e}");
        assert!(fetch_all(&[], &opts).unwrap().is_empty());
    }

    #[test]
    fn works_from_inside_a_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("x.rpm");
        std::fs::write(&src, b"not an rpm").unwrap();
        let opts = FetchOptions {
            cache_dir: dir.path().join("cache"),
            progress: Progress::Quiet,
            ..Default::default()
        };
        let item = FetchItem {
            nevra: "x-1-1.noarch".into(),
            urls: vec![format!("file://{}", src.display())],
            sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"not an rpm")),
            size: 10,
            gpgcheck: false,
            keys: vec![],
        };
        let rt = tokio::runtime::Runtime::new().unwrap();
        let e = rt
            .block_on(async { fetch_all(&[item], &opts) })
            .unwrap_err();
        // It ran (and found the file is no RPM), rather than panicking about nested runtimes.
        assert!(
            matches!(
                &e,
                FetchError::Verify {
                    source: VerifyError::Malformed(_),
                    ..
                }
            ),
            "{e}"
        );
    }
}
