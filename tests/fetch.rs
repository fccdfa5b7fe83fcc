//! The fetch stage on the real fixture repository (signed RPMs, tests/fixtures/README.md), served
//! from file:// and by an HTTP server in this file that supports Range and can misbehave on
//! request: cut a response short, ignore Range, answer an error once, serve a tampered file.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::root;
use kiln::fetch::{
    DownloadError, FetchError, FetchItem, FetchOptions, Fetched, Progress, Signature, VerifyError,
    fetch_all,
};
use kiln::repo::{self, LoadOptions, RepoSpec};
use sha2::Digest;

// ---------------------------------------------------------------------------------------------
// The fixture repository and its metadata

fn fixture_repo() -> &'static Path {
    static REPO: OnceLock<PathBuf> = OnceLock::new();
    REPO.get_or_init(|| {
        let out = Command::new(root().join("tests/fixtures/build"))
            .output()
            .expect("tests/fixtures/build runs");
        assert!(
            out.status.success(),
            "tests/fixtures/build failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = String::from_utf8(out.stdout).unwrap();
        PathBuf::from(path.lines().next().expect("a path").trim())
    })
}

fn test_key() -> PathBuf {
    fixture_repo().join("RPM-GPG-KEY-kiln-test")
}

/// One package as the repository metadata describes it.
#[derive(Debug, Clone)]
struct Pkg {
    nevra: String,
    location: String,
    sha256: String,
    size: u64,
}

/// Every package of the fixture repository, read from its metadata by kiln itself.
fn packages() -> &'static [Pkg] {
    static PKGS: OnceLock<Vec<Pkg>> = OnceLock::new();
    PKGS.get_or_init(|| {
        let cache = tempfile::tempdir().unwrap();
        let spec = RepoSpec {
            id: "kiln-fixture".into(),
            baseurls: vec![format!("file://{}", fixture_repo().display())],
            metalink: None,
            mirrorlist: None,
            priority: 99,
            cost: 1000,
        };
        let opts = LoadOptions {
            cache_dir: cache.path().into(),
            ..Default::default()
        };
        let (pool, _) = repo::load(&[spec], &opts).expect("the fixture repository loads");
        let mut v: Vec<Pkg> = (0..pool.packages.len() as u32)
            .map(|i| {
                let p = &pool.packages[i as usize];
                assert_eq!(pool.str(p.checksum_type), "sha256");
                Pkg {
                    nevra: pool.nevra(i),
                    location: pool.str(p.location).to_string(),
                    sha256: pool.str(p.checksum).to_string(),
                    size: p.size,
                }
            })
            .collect();
        v.sort_by(|a, b| a.nevra.cmp(&b.nevra));
        assert!(v.len() >= 50, "{} packages", v.len());
        v
    })
}

fn pkg(prefix: &str) -> &'static Pkg {
    packages()
        .iter()
        .find(|p| p.nevra.starts_with(prefix))
        .unwrap_or_else(|| panic!("no package {prefix}"))
}

fn is_unsigned(p: &Pkg) -> bool {
    p.nevra.starts_with("fx-unsigned-")
}

fn file_url(p: &Pkg) -> String {
    format!("file://{}", fixture_repo().join(&p.location).display())
}

fn item(p: &Pkg, urls: Vec<String>, gpgcheck: bool, keys: &[&Path]) -> FetchItem {
    FetchItem {
        nevra: p.nevra.clone(),
        urls,
        sha256: p.sha256.clone(),
        size: p.size,
        gpgcheck,
        keys: keys.iter().map(|k| k.display().to_string()).collect(),
    }
}

fn opts(cache: &Path) -> FetchOptions {
    FetchOptions {
        cache_dir: cache.to_path_buf(),
        jobs: 6,
        offline: false,
        progress: Progress::Quiet,
        retries: 3,
    }
}

fn sha256_file(path: &Path) -> String {
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

fn cache_path(cache: &Path, sha: &str) -> PathBuf {
    cache
        .join("packages/sha256")
        .join(&sha[..2])
        .join(format!("{sha}.rpm"))
}

/// Files under `dir`, recursively (relative paths), sorted.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The primary fingerprints of an armored key file, as gpg reads them (lowercase).
fn gpg_fingerprints(key: &Path) -> Vec<String> {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new("gpg")
        .env("GNUPGHOME", home.path())
        .args(["--batch", "--with-colons", "--show-keys"])
        .arg(key)
        .output()
        .expect("gpg runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut fprs = Vec::new();
    let mut after_pub = false;
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        match f[0] {
            "pub" => after_pub = true,
            "fpr" if after_pub => {
                fprs.push(f[9].to_lowercase());
                after_pub = false;
            }
            _ => after_pub = false,
        }
    }
    let _ = Command::new("gpgconf")
        .arg("--homedir")
        .arg(home.path())
        .args(["--kill", "all"])
        .status();
    fprs
}

/// A second, unrelated signing key (ed25519: generated instantly), exported armored.
fn other_key() -> &'static Path {
    static KEY: OnceLock<PathBuf> = OnceLock::new();
    KEY.get_or_init(|| {
        let dir = root().join("target/test-tmp");
        std::fs::create_dir_all(&dir).unwrap();
        let home = tempfile::Builder::new().prefix("gpg").tempdir().unwrap();
        let gpg = |args: &[&str]| {
            let out = Command::new("gpg")
                .env("GNUPGHOME", home.path())
                .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
                .args(args)
                .output()
                .expect("gpg runs");
            assert!(
                out.status.success(),
                "gpg {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        };
        gpg(&[
            "--quick-gen-key",
            "kiln other test key <other@example.invalid>",
            "ed25519",
            "sign",
            "never",
        ]);
        let armored = gpg(&["--armor", "--export"]);
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(home.path())
            .args(["--kill", "all"])
            .status();
        let path = dir.join(format!("other-key-{}.asc", std::process::id()));
        std::fs::write(&path, armored).unwrap();
        path
    })
}

// ---------------------------------------------------------------------------------------------
// An HTTP server serving the repository directory

#[derive(Default)]
struct Behaviour {
    /// Path → body served instead of the file.
    overrides: HashMap<String, Vec<u8>>,
    /// Path → cut the next response for it after this many body bytes (once).
    cut_once: HashMap<String, usize>,
    /// Answer 200 with the whole file even to Range requests.
    ignore_range: bool,
    /// Path → answer this status once.
    fail_once: HashMap<String, u16>,
    /// Pause after every 16 KiB of body (makes concurrent downloads overlap).
    delay: Duration,
}

#[derive(Debug, Clone)]
struct Logged {
    path: String,
    range: Option<String>,
}

struct Server {
    base: String,
    state: Arc<Mutex<(Behaviour, Vec<Logged>)>>,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new((Behaviour::default(), Vec::new())));
        let st = Arc::clone(&state);
        let dir = dir.to_path_buf();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let st = Arc::clone(&st);
                let dir = dir.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &dir, &st);
                });
            }
        });
        Server { base, state }
    }

    fn url(&self, p: &Pkg) -> String {
        format!("{}/{}", self.base, p.location)
    }

    fn configure(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self.state.lock().unwrap().0);
    }

    fn requests(&self) -> Vec<Logged> {
        self.state.lock().unwrap().1.clone()
    }

    fn requests_for(&self, p: &Pkg) -> Vec<Logged> {
        let want = format!("/{}", p.location);
        self.requests()
            .into_iter()
            .filter(|r| r.path == want)
            .collect()
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(hex) = std::str::from_utf8(&b[i + 1..i + 3])
            && let Ok(v) = u8::from_str_radix(hex, 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve(
    stream: TcpStream,
    dir: &Path,
    state: &Mutex<(Behaviour, Vec<Logged>)>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = percent_decode(line.split_whitespace().nth(1).unwrap_or("/"));
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.trim().eq_ignore_ascii_case("range")
        {
            range = Some(v.trim().to_string());
        }
    }
    let (body, fail, cut, ignore_range, delay) = {
        let mut s = state.lock().unwrap();
        s.1.push(Logged {
            path: path.clone(),
            range: range.clone(),
        });
        let b = &mut s.0;
        let body = match b.overrides.get(&path) {
            Some(o) => Some(o.clone()),
            None if path.contains("..") => None,
            None => std::fs::read(dir.join(path.trim_start_matches('/'))).ok(),
        };
        (
            body,
            b.fail_once.remove(&path),
            b.cut_once.remove(&path),
            b.ignore_range,
            b.delay,
        )
    };
    let mut out = stream;
    let respond = |out: &mut TcpStream, status: &str, extra: &str, body: &[u8]| {
        write!(
            out,
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
            body.len()
        )
    };
    if let Some(code) = fail {
        respond(&mut out, &format!("{code} Failing on purpose"), "", b"")?;
        return Ok(());
    }
    let Some(body) = body else {
        respond(&mut out, "404 Not Found", "", b"")?;
        return Ok(());
    };
    let start = range
        .as_deref()
        .filter(|_| !ignore_range)
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse::<usize>().ok());
    let part = match start {
        Some(s) if s >= body.len() => {
            respond(
                &mut out,
                "416 Range Not Satisfiable",
                &format!("Content-Range: bytes */{}\r\n", body.len()),
                b"",
            )?;
            return Ok(());
        }
        Some(s) => {
            let extra = format!(
                "Content-Range: bytes {s}-{}/{}\r\n",
                body.len() - 1,
                body.len()
            );
            write!(
                out,
                "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
                body.len() - s
            )?;
            &body[s..]
        }
        None => {
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            &body[..]
        }
    };
    let send = cut.map_or(part.len(), |c| c.min(part.len()));
    for chunk in part[..send].chunks(16 * 1024) {
        out.write_all(chunk)?;
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
    }
    out.flush()?;
    // A cut response ends here, with bytes still owed: the client sees the connection drop.
    out.shutdown(Shutdown::Both)?;
    let _ = reader.read(&mut [0u8; 1]);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Helpers for checking results

fn assert_verified(items: &[FetchItem], got: &[Fetched], cache: &Path, key_fpr: &str) {
    assert_eq!(items.len(), got.len());
    for (it, f) in items.iter().zip(got) {
        assert_eq!(f.path, cache_path(cache, &it.sha256), "{}", it.nevra);
        assert_eq!(sha256_file(&f.path), it.sha256, "{}", it.nevra);
        if it.gpgcheck {
            assert_eq!(
                f.signature,
                Signature::Verified {
                    key: key_fpr.into()
                },
                "{}",
                it.nevra
            );
        } else {
            assert_eq!(f.signature, Signature::NotChecked, "{}", it.nevra);
        }
    }
}

fn no_leftovers(cache: &Path) {
    let partial = files_under(&cache.join("packages/partial"));
    assert!(partial.is_empty(), "left in packages/partial: {partial:?}");
}

fn fixture_fpr() -> String {
    let f = gpg_fingerprints(&test_key());
    assert_eq!(f.len(), 1, "{f:?}");
    f[0].clone()
}

// ---------------------------------------------------------------------------------------------
// The tests

/// Case 1: every fixture package from file:// and from http://, signatures verified against the
/// fixture key (fx-unsigned without gpgcheck); a second run takes all from the cache without
/// asking the server anything.
#[test]
fn all_packages_verified_then_cached() {
    let key = test_key();
    let fpr = fixture_fpr();
    let items_for = |url: &dyn Fn(&Pkg) -> String| -> Vec<FetchItem> {
        packages()
            .iter()
            .map(|p| item(p, vec![url(p)], !is_unsigned(p), &[&key]))
            .collect()
    };

    // file://
    let cache = tempfile::tempdir().unwrap();
    let items = items_for(&file_url);
    let got = fetch_all(&items, &opts(cache.path())).unwrap();
    assert_verified(&items, &got, cache.path(), &fpr);
    assert!(got.iter().all(|f| !f.from_cache));
    no_leftovers(cache.path());

    // http://, with plain progress lines
    let server = Server::start(fixture_repo());
    let cache = tempfile::tempdir().unwrap();
    let items = items_for(&|p| server.url(p));
    let o = FetchOptions {
        progress: Progress::Lines,
        ..opts(cache.path())
    };
    let got = fetch_all(&items, &o).unwrap();
    assert_verified(&items, &got, cache.path(), &fpr);
    assert!(got.iter().all(|f| !f.from_cache));
    assert_eq!(server.requests().len(), items.len());
    no_leftovers(cache.path());

    // Again: everything comes from the cache, and the server hears nothing.
    let got = fetch_all(&items, &o).unwrap();
    assert_verified(&items, &got, cache.path(), &fpr);
    assert!(got.iter().all(|f| f.from_cache));
    assert_eq!(server.requests().len(), items.len());
    // Offline too.
    let got = fetch_all(
        &items,
        &FetchOptions {
            offline: true,
            ..opts(cache.path())
        },
    )
    .unwrap();
    assert!(got.iter().all(|f| f.from_cache));
    assert_eq!(server.requests().len(), items.len());
}

/// Case 2: a download cut after half its bytes is continued with a Range request, and the result
/// verifies; a server that ignores Range (answers 200) gets a full download; a partial file left
/// by an earlier run is continued.
#[test]
fn interrupted_download_resumes() {
    let key = test_key();
    let fpr = fixture_fpr();
    let p = pkg("fx-busybox-");
    let half = (p.size / 2) as usize;
    let path = format!("/{}", p.location);

    let server = Server::start(fixture_repo());
    server.configure(|b| {
        b.cut_once.insert(path.clone(), half);
    });
    let cache = tempfile::tempdir().unwrap();
    let items = [item(p, vec![server.url(p)], true, &[&key])];
    let got = fetch_all(&items, &opts(cache.path())).unwrap();
    assert_verified(&items, &got, cache.path(), &fpr);
    let reqs = server.requests_for(p);
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[0].range, None);
    assert_eq!(reqs[1].range, Some(format!("bytes={half}-")), "{reqs:?}");
    no_leftovers(cache.path());

    // The server ignores Range: the retry starts over and still succeeds.
    let server = Server::start(fixture_repo());
    server.configure(|b| {
        b.cut_once.insert(path.clone(), half);
        b.ignore_range = true;
    });
    let cache = tempfile::tempdir().unwrap();
    let items = [item(p, vec![server.url(p)], true, &[&key])];
    let got = fetch_all(&items, &opts(cache.path())).unwrap();
    assert_verified(&items, &got, cache.path(), &fpr);
    let reqs = server.requests_for(p);
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[1].range, Some(format!("bytes={half}-")));
    no_leftovers(cache.path());

    // A part from an earlier run (which was killed) is continued where it stopped.
    let server = Server::start(fixture_repo());
    let cache = tempfile::tempdir().unwrap();
    let part = cache
        .path()
        .join("packages/partial")
        .join(format!("{}.part", p.sha256));
    std::fs::create_dir_all(part.parent().unwrap()).unwrap();
    let whole = std::fs::read(fixture_repo().join(&p.location)).unwrap();
    std::fs::write(&part, &whole[..1000]).unwrap();
    let got = fetch_all(&items_for_server(p, &server, &key), &opts(cache.path())).unwrap();
    assert_eq!(sha256_file(&got[0].path), p.sha256);
    let reqs = server.requests_for(p);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].range.as_deref(), Some("bytes=1000-"));
    no_leftovers(cache.path());

    // A stale part that is not a prefix of the file: the continued download fails its
    // checksum, and kiln downloads it again from scratch.
    let server = Server::start(fixture_repo());
    let cache = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(cache.path().join("packages/partial")).unwrap();
    let part = cache
        .path()
        .join("packages/partial")
        .join(format!("{}.part", p.sha256));
    std::fs::write(&part, vec![0u8; 1000]).unwrap();
    let got = fetch_all(&items_for_server(p, &server, &key), &opts(cache.path())).unwrap();
    assert_eq!(sha256_file(&got[0].path), p.sha256);
    let ranges: Vec<_> = server
        .requests_for(p)
        .into_iter()
        .map(|r| r.range)
        .collect();
    assert_eq!(ranges, vec![Some("bytes=1000-".to_string()), None]);
    no_leftovers(cache.path());
}

fn items_for_server(p: &Pkg, server: &Server, key: &Path) -> Vec<FetchItem> {
    vec![item(p, vec![server.url(p)], true, &[key])]
}

/// Flips one byte at `at` of a copy of the package.
fn tampered(p: &Pkg, at: usize) -> Vec<u8> {
    let mut b = std::fs::read(fixture_repo().join(&p.location)).unwrap();
    b[at] ^= 0x01;
    b
}

/// Case 3: a package with one payload byte changed is refused: by its sha256 when the metadata is
/// right, by the payload digest (the signature covers only the header) when the metadata was made
/// to match, by the signature when a header byte changed. Nothing of it stays in the cache.
#[test]
fn tampered_packages_are_refused() {
    let key = test_key();
    let p = pkg("fx-app-1.0-");
    let path = format!("/{}", p.location);
    let bad_payload = tampered(p, p.size as usize - 100);
    let bad_sha = hex::encode(sha2::Sha256::digest(&bad_payload));
    let server = Server::start(fixture_repo());
    server.configure(|b| {
        b.overrides.insert(path.clone(), bad_payload.clone());
    });
    let cache = tempfile::tempdir().unwrap();

    // The repository's sha256: the download does not match it.
    let items = [item(p, vec![server.url(p)], true, &[&key])];
    let e = fetch_all(&items, &opts(cache.path())).unwrap_err();
    let msg = e.to_string();
    match &e {
        FetchError::Download { nevra, failures } => {
            assert_eq!(nevra, &p.nevra);
            assert!(matches!(
                failures.as_slice(),
                [DownloadError::Corrupt {
                    source: VerifyError::Checksum { .. },
                    ..
                }]
            ));
        }
        other => panic!("{other}"),
    }
    assert!(
        msg.contains(&p.nevra) && msg.contains("sha256 mismatch"),
        "{msg}"
    );
    assert!(msg.contains(&p.sha256) && msg.contains(&bad_sha), "{msg}");

    // Metadata that matches the tampered file: the payload digest catches it, with or
    // without gpgcheck.
    for gpgcheck in [true, false] {
        let items = [FetchItem {
            sha256: bad_sha.clone(),
            ..item(p, vec![server.url(p)], gpgcheck, &[&key])
        }];
        let e = fetch_all(&items, &opts(cache.path())).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(
                &e,
                FetchError::Verify {
                    source: VerifyError::PayloadDigest { .. },
                    ..
                }
            ),
            "{msg}"
        );
        assert!(
            msg.contains(&p.nevra) && msg.contains("payload digest mismatch"),
            "{msg}"
        );
    }

    // A changed header byte (in the build host, inside the signed header).
    let whole = std::fs::read(fixture_repo().join(&p.location)).unwrap();
    let at = whole
        .windows(b"kiln-fixtures".len())
        .position(|w| w == b"kiln-fixtures")
        .expect("the build host is in the header");
    let bad_header = tampered(p, at);
    let bad_header_sha = hex::encode(sha2::Sha256::digest(&bad_header));
    server.configure(|b| {
        b.overrides.insert(path.clone(), bad_header.clone());
    });
    let items = [FetchItem {
        sha256: bad_header_sha.clone(),
        ..item(p, vec![server.url(p)], true, &[&key])
    }];
    let e = fetch_all(&items, &opts(cache.path())).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(
            &e,
            FetchError::Verify {
                source: VerifyError::BadSignature { .. },
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains(&p.nevra) && msg.contains("does not verify"),
        "{msg}"
    );

    // Nothing was kept: not under the real sha256, not under the tampered ones, no partial.
    for sha in [&p.sha256, &bad_sha, &bad_header_sha] {
        assert!(!cache_path(cache.path(), sha).exists());
    }
    let kept = files_under(cache.path());
    assert!(kept.iter().all(|f| !f.starts_with("packages/")), "{kept:?}");
}

/// Case 4: signed by a key that is not trusted, unsigned with gpgcheck, unsigned without.
#[test]
fn signatures_must_be_by_a_trusted_key() {
    let key = test_key();
    let other = other_key();
    let other_fpr = gpg_fingerprints(other);
    let fixture = fixture_fpr();
    let cache = tempfile::tempdir().unwrap();
    let p = pkg("fx-alpha-");

    let e = fetch_all(
        &[item(p, vec![file_url(p)], true, &[other])],
        &opts(cache.path()),
    )
    .unwrap_err();
    let msg = e.to_string();
    match &e {
        FetchError::Verify {
            nevra,
            source: VerifyError::WrongKey { found, expected },
            ..
        } => {
            assert_eq!(nevra, &p.nevra);
            assert_eq!(found, &vec![fixture.clone()]);
            assert_eq!(expected, &other_fpr);
        }
        other => panic!("{other}"),
    }
    assert!(
        msg.contains(&p.nevra) && msg.contains(&fixture) && msg.contains(&other_fpr[0]),
        "{msg}"
    );
    assert!(!cache_path(cache.path(), &p.sha256).exists());

    // Both keys: the right one verifies.
    let got = fetch_all(
        &[item(p, vec![file_url(p)], true, &[other, &key])],
        &opts(cache.path()),
    )
    .unwrap();
    assert_eq!(got[0].signature, Signature::Verified { key: fixture });

    // Unsigned, with gpgcheck: refused, naming the package.
    let u = pkg("fx-unsigned-");
    let e = fetch_all(
        &[item(u, vec![file_url(u)], true, &[&key])],
        &opts(cache.path()),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(
            &e,
            FetchError::Verify {
                source: VerifyError::Unsigned,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains(&u.nevra) && msg.contains("not signed"),
        "{msg}"
    );
    assert!(!cache_path(cache.path(), &u.sha256).exists());

    // Without gpgcheck: accepted, and reported as not checked.
    let got = fetch_all(
        &[item(u, vec![file_url(u)], false, &[])],
        &opts(cache.path()),
    )
    .unwrap();
    assert_eq!(got[0].signature, Signature::NotChecked);
    assert_eq!(sha256_file(&got[0].path), u.sha256);

    // A key file that is not a key.
    let e = fetch_all(
        &[item(
            p,
            vec![file_url(p)],
            true,
            &[&fixture_repo().join("repodata/repomd.xml")],
        )],
        &opts(cache.path()),
    )
    .unwrap_err();
    assert!(matches!(e, FetchError::Key(_)), "{e}");
    assert!(e.to_string().contains("repomd.xml"), "{e}");
}

/// Case 5: three fetchers (two threads here and another process) fill one cache with the same
/// packages at the same time, over a slow server: all succeed with verified files.
#[test]
fn concurrent_fetches_share_the_cache() {
    let key = test_key();
    let fpr = fixture_fpr();
    let server = Server::start(fixture_repo());
    server.configure(|b| b.delay = Duration::from_millis(5));
    let cache = tempfile::tempdir().unwrap();
    let items: Vec<FetchItem> = packages()
        .iter()
        .filter(|p| !is_unsigned(p))
        .map(|p| item(p, vec![server.url(p)], true, &[&key]))
        .collect();

    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_fetcher",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KILN_FETCH_CHILD_CACHE", cache.path())
        .env("KILN_FETCH_CHILD_BASE", &server.base)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| s.spawn(|| fetch_all(&items, &opts(cache.path()))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the child fetcher failed:\n{}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Its plain progress output ends with the summary line.
    assert!(
        stderr.contains(&format!("fetch: {} packages", items.len())),
        "{stderr}"
    );
    for r in results {
        assert_verified(&items, &r.unwrap(), cache.path(), &fpr);
    }
    no_leftovers(cache.path());
    // Each package was downloaded exactly once: whoever held its lock downloaded it, the others
    // waited and took it from the cache.
    assert_eq!(server.requests().len(), items.len());
}

/// The other process of `concurrent_fetches_share_the_cache`: runs only when it is started by
/// that test (with the cache and server in its environment).
#[test]
fn child_fetcher() {
    let (Ok(cache), Ok(base)) = (
        std::env::var("KILN_FETCH_CHILD_CACHE"),
        std::env::var("KILN_FETCH_CHILD_BASE"),
    ) else {
        return;
    };
    let key = test_key();
    let items: Vec<FetchItem> = packages()
        .iter()
        .filter(|p| !is_unsigned(p))
        .map(|p| item(p, vec![format!("{base}/{}", p.location)], true, &[&key]))
        .collect();
    let o = FetchOptions {
        progress: Progress::Lines,
        ..opts(Path::new(&cache))
    };
    let got = fetch_all(&items, &o).unwrap_or_else(|e| panic!("{e}"));
    assert_verified(&items, &got, Path::new(&cache), &fixture_fpr());
}

/// Case 6: offline with an empty cache: a clear error per package.
#[test]
fn offline_needs_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let p = pkg("fx-alpha-");
    let o = FetchOptions {
        offline: true,
        ..opts(cache.path())
    };
    let e = fetch_all(&[item(p, vec![file_url(p)], true, &[&test_key()])], &o).unwrap_err();
    assert!(matches!(&e, FetchError::Offline { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&p.nevra)
            && msg.contains("offline")
            && msg.contains("not in the package cache"),
        "{msg}"
    );
    let q = pkg("fx-beta-");
    let e = fetch_all(
        &[
            item(p, vec![file_url(p)], false, &[]),
            item(q, vec![file_url(q)], false, &[]),
        ],
        &o,
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(&e, FetchError::Several(v) if v.len() == 2),
        "{msg}"
    );
    assert!(msg.contains(&p.nevra) && msg.contains(&q.nevra), "{msg}");
    assert!(files_under(cache.path()).is_empty());
}

/// Case 7: a damaged cache entry (changed byte, truncated) is noticed on use, discarded and fetched
/// again; offline, it is reported as damaged.
#[test]
fn damaged_cache_entries_are_fetched_again() {
    let key = test_key();
    let server = Server::start(fixture_repo());
    let cache = tempfile::tempdir().unwrap();
    let p = pkg("fx-tools-");
    let items = [item(p, vec![server.url(p)], true, &[&key])];
    let got = fetch_all(&items, &opts(cache.path())).unwrap();
    let entry = got[0].path.clone();
    assert_eq!(server.requests_for(p).len(), 1);

    for damage in ["flip", "truncate"] {
        let mut b = std::fs::read(&entry).unwrap();
        if damage == "flip" {
            let at = b.len() / 2;
            b[at] ^= 0xff;
        } else {
            b.truncate(b.len() - 7);
        }
        std::fs::write(&entry, &b).unwrap();

        let e = fetch_all(
            &items,
            &FetchOptions {
                offline: true,
                ..opts(cache.path())
            },
        )
        .unwrap_err();
        assert!(
            matches!(
                &e,
                FetchError::Offline {
                    damaged: Some(_),
                    ..
                }
            ),
            "{damage}: {e}"
        );
        assert!(e.to_string().contains("damaged"), "{e}");

        let before = server.requests_for(p).len();
        let got = fetch_all(&items, &opts(cache.path())).unwrap();
        assert!(!got[0].from_cache, "{damage}");
        assert_eq!(got[0].path, entry);
        assert_eq!(sha256_file(&entry), p.sha256, "{damage}");
        assert_eq!(server.requests_for(p).len(), before + 1, "{damage}");
        no_leftovers(cache.path());
    }
}

/// Mirrors and retries: a 404 on the first mirror moves on to the next; a 503 is retried; a
/// mirror that serves a wrong file is skipped for the next.
#[test]
fn mirrors_and_retries() {
    let key = test_key();
    let fpr = fixture_fpr();
    let good = Server::start(fixture_repo());
    let empty = tempfile::tempdir().unwrap();
    let missing = Server::start(empty.path());
    let p = pkg("fx-gamma-");
    let cache = tempfile::tempdir().unwrap();

    let items = [item(p, vec![missing.url(p), good.url(p)], true, &[&key])];
    let got = fetch_all(&items, &opts(cache.path())).unwrap();
    assert_verified(&items, &got, cache.path(), &fpr);
    assert_eq!(missing.requests_for(p).len(), 1);
    assert_eq!(good.requests_for(p).len(), 1);

    let cache = tempfile::tempdir().unwrap();
    let path = format!("/{}", p.location);
    good.configure(|b| {
        b.fail_once.insert(path.clone(), 503);
    });
    let got = fetch_all(&items, &opts(cache.path())).unwrap();
    assert_verified(&items, &got, cache.path(), &fpr);
    assert_eq!(good.requests_for(p).len(), 3);

    let cache = tempfile::tempdir().unwrap();
    let liar = Server::start(fixture_repo());
    liar.configure(|b| {
        b.overrides.insert(path.clone(), tampered(p, 500));
    });
    let items = [item(p, vec![liar.url(p), good.url(p)], true, &[&key])];
    let got = fetch_all(&items, &opts(cache.path())).unwrap();
    assert_verified(&items, &got, cache.path(), &fpr);

    // Every mirror failing: each one's reason, in order.
    let cache = tempfile::tempdir().unwrap();
    let items = [item(p, vec![missing.url(p), liar.url(p)], true, &[&key])];
    let e = fetch_all(
        &items,
        &FetchOptions {
            retries: 1,
            ..opts(cache.path())
        },
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("not found") && msg.contains("sha256 mismatch"),
        "{msg}"
    );
    assert!(msg.find(&missing.base) < msg.find(&liar.base), "{msg}");
}

/// How long the whole file takes is reported by the harness; this keeps a rough bound on one
/// warm run over the repository so a regression in the per-package cost is noticed.
#[test]
fn a_warm_run_is_fast() {
    let key = test_key();
    let cache = tempfile::tempdir().unwrap();
    let items: Vec<FetchItem> = packages()
        .iter()
        .map(|p| item(p, vec![file_url(p)], !is_unsigned(p), &[&key]))
        .collect();
    // Bars (drawn only on a terminal; here they must simply not get in the way).
    let o = FetchOptions {
        progress: Progress::Bars,
        ..opts(cache.path())
    };
    fetch_all(&items, &o).unwrap();
    let t = Instant::now();
    let got = fetch_all(&items, &opts(cache.path())).unwrap();
    assert!(got.iter().all(|f| f.from_cache));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}
