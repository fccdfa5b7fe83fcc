//! Reading repository files from `file://`, `http://` and `https://` (rustls) URLs, with
//! timeouts, retries with backoff, mirrors tried in order, and checksums verified.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use sha2::Digest;

/// How one URL could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: {message}")]
    Failed { url: String, message: String },
    #[error("{url}: not found")]
    NotFound { url: String },
    #[error("{url}: {kind} checksum mismatch: expected {expected}, got {actual}")]
    Checksum {
        url: String,
        kind: String,
        expected: String,
        actual: String,
    },
    #[error("{url}: unsupported checksum type `{kind}`")]
    ChecksumType { url: String, kind: String },
    #[error("{url}: unsupported URL scheme (use file://, http:// or https://)")]
    Scheme { url: String },
}

const ATTEMPTS: u32 = 3;

fn client() -> Result<&'static reqwest::blocking::Client, String> {
    static CLIENT: OnceLock<Result<reqwest::blocking::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            // rustls with ring, installed once for the process (no C toolchain needed).
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::blocking::Client::builder()
                .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(30))
                .timeout(Duration::from_secs(300))
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The local path of a `file://` URL.
pub fn file_path(url: &str) -> Option<PathBuf> {
    url.strip_prefix("file://").map(|p| {
        // file://localhost/path and file:///path
        PathBuf::from(p.strip_prefix("localhost").unwrap_or(p))
    })
}

/// Joins a base URL and a relative location (`repodata/repomd.xml`).
pub fn join(base: &str, rel: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        rel.trim_start_matches('/')
    )
}

/// Whether reading this URL touches the network.
pub fn is_remote(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// Reads one URL whole. Network errors and server errors are retried with backoff; a 404 is
/// not.
pub fn get(url: &str) -> Result<Vec<u8>, FetchError> {
    if let Some(path) = file_path(url) {
        return std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => FetchError::NotFound { url: url.into() },
            _ => FetchError::Failed {
                url: url.into(),
                message: e.to_string(),
            },
        });
    }
    if !is_remote(url) {
        return Err(FetchError::Scheme { url: url.into() });
    }
    let client = client().map_err(|message| FetchError::Failed {
        url: url.into(),
        message,
    })?;
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(500 * 2u64.pow(attempt - 1)));
        }
        match client.get(url).send() {
            Ok(resp) if resp.status() == reqwest::StatusCode::NOT_FOUND => {
                return Err(FetchError::NotFound { url: url.into() });
            }
            Ok(resp) if resp.status().is_success() => match resp.bytes() {
                Ok(b) => return Ok(b.to_vec()),
                Err(e) => last = format!("reading the body: {e}"),
            },
            Ok(resp) if resp.status().is_server_error() || resp.status().as_u16() == 429 => {
                last = format!("server answered {}", resp.status());
            }
            Ok(resp) => {
                return Err(FetchError::Failed {
                    url: url.into(),
                    message: format!("server answered {}", resp.status()),
                });
            }
            Err(e) => last = error_chain(&e),
        }
    }
    Err(FetchError::Failed {
        url: url.into(),
        message: format!("{last} (after {ATTEMPTS} attempts)"),
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Hex digest of `data` with the named algorithm (`sha256`, `sha512`, `sha1`/`sha`).
pub fn digest(kind: &str, data: &[u8]) -> Option<String> {
    Some(match kind {
        "sha256" => hex::encode(sha2::Sha256::digest(data)),
        "sha512" => hex::encode(sha2::Sha512::digest(data)),
        "sha384" => hex::encode(sha2::Sha384::digest(data)),
        "sha224" => hex::encode(sha2::Sha224::digest(data)),
        _ => return None,
    })
}

/// Checks `data` against a checksum from repomd.xml or primary.xml.
pub fn verify(url: &str, kind: &str, expected: &str, data: &[u8]) -> Result<(), FetchError> {
    let actual = digest(kind, data).ok_or_else(|| FetchError::ChecksumType {
        url: url.into(),
        kind: kind.into(),
    })?;
    if !actual.eq_ignore_ascii_case(expected) {
        return Err(FetchError::Checksum {
            url: url.into(),
            kind: kind.into(),
            expected: expected.into(),
            actual,
        });
    }
    Ok(())
}

/// Reads `rel` from the first of `bases` that has it, verifying its checksum when one is given.
pub fn get_from(
    bases: &[String],
    rel: &str,
    checksum: Option<(&str, &str)>,
) -> Result<Vec<u8>, FetchError> {
    let mut errors = Vec::new();
    for base in bases {
        let url = join(base, rel);
        match get(&url).and_then(|data| {
            if let Some((kind, expected)) = checksum {
                verify(&url, kind, expected, &data)?;
            }
            Ok(data)
        }) {
            Ok(data) => return Ok(data),
            Err(e) => errors.push(e),
        }
    }
    // With one mirror, its own error; with several, the last (the others were tried first).
    Err(errors.pop().unwrap_or(FetchError::Failed {
        url: rel.into(),
        message: "no base URL to read it from".into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            file_path("file:///srv/repo"),
            Some(PathBuf::from("/srv/repo"))
        );
        assert_eq!(
            file_path("file://localhost/srv"),
            Some(PathBuf::from("/srv"))
        );
        assert_eq!(
            join("https://a/b/", "/repodata/x"),
            "https://a/b/repodata/x"
        );
        assert!(matches!(get("ftp://x/y"), Err(FetchError::Scheme { .. })));
        assert!(matches!(
            get("file:///nonexistent/kiln/x"),
            Err(FetchError::NotFound { .. })
        ));
    }

    #[test]
    fn checksums() {
        let sha = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        assert!(verify("u", "sha256", sha, b"hello").is_ok());
        assert!(verify("u", "sha256", &sha.to_uppercase(), b"hello").is_ok());
        assert!(matches!(
            verify("u", "sha256", sha, b"hellO"),
            Err(FetchError::Checksum { .. })
        ));
        assert!(matches!(
            verify("u", "md5", sha, b"hello"),
            Err(FetchError::ChecksumType { .. })
        ));
    }
}
