//! Transferring one package file from one URL into its partial file: `file://` copies and HTTP(S)
//! downloads that resume with `Range`, with retries and exponential backoff on transient failures.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::progress::Transfer;
use super::verify::VerifyError;
use crate::repo::transport;

/// How one URL failed to give the package.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("{url}: unsupported URL scheme (use file://, http:// or https://)")]
    Scheme { url: String },
    #[error("{url}: not found")]
    NotFound { url: String },
    #[error("{url}: server answered {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: {message} (after {attempts} attempts)")]
    Network {
        url: String,
        message: String,
        attempts: u32,
    },
    #[error("{url}: cannot read {}: {source}", path.display())]
    Local {
        url: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the partial download {}: {source}", path.display())]
    Part {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: {source}")]
    Corrupt {
        url: String,
        #[source]
        source: VerifyError,
    },
}

/// The error and its causes on one line (reqwest's own message rarely says what went wrong).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let m = inner.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = inner.source();
    }
    s
}

/// What one transfer did.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// The transfer continued an earlier partial file (so a bad result may be the old part's
    /// fault rather than the server's).
    pub resumed: bool,
}

/// Settings shared by every transfer.
pub struct Settings {
    pub client: reqwest::Client,
    pub retries: u32,
    /// The first backoff delay; it doubles with every retry.
    pub backoff: Duration,
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);

fn part_err(path: &Path) -> impl Fn(std::io::Error) -> DownloadError + '_ {
    move |source| DownloadError::Part {
        path: path.to_path_buf(),
        source,
    }
}

/// The length of the partial file, or 0 after discarding it when it cannot be a prefix of a
/// `size`-byte file.
async fn existing_part(part: &Path, size: u64) -> Result<u64, DownloadError> {
    let len = match tokio::fs::metadata(part).await {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(part_err(part)(e)),
    };
    if size != 0 && len > size {
        truncate(part).await?;
        return Ok(0);
    }
    Ok(len)
}

async fn truncate(part: &Path) -> Result<(), DownloadError> {
    tokio::fs::File::create(part)
        .await
        .map(drop)
        .map_err(part_err(part))
}

async fn open_append(part: &Path) -> Result<tokio::fs::File, DownloadError> {
    if let Some(dir) = part.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(part_err(part))?;
    }
    tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(part)
        .await
        .map_err(part_err(part))
}

/// Brings `part` to the whole file `url` names (`size` bytes, 0 when unknown), continuing what
/// is already there. The result is not verified here.
pub async fn fetch(
    settings: &Settings,
    url: &str,
    part: &Path,
    size: u64,
    progress: &Transfer,
) -> Result<Outcome, DownloadError> {
    if let Some(path) = transport::file_path(url) {
        return copy_local(url, &path, part, size, progress).await;
    }
    if url.starts_with('/') {
        return copy_local(url, Path::new(url), part, size, progress).await;
    }
    if !transport::is_remote(url) {
        return Err(DownloadError::Scheme { url: url.into() });
    }
    http(settings, url, part, size, progress).await
}

async fn copy_local(
    url: &str,
    src: &Path,
    part: &Path,
    size: u64,
    progress: &Transfer,
) -> Result<Outcome, DownloadError> {
    let local_err = |source| DownloadError::Local {
        url: url.into(),
        path: src.to_path_buf(),
        source,
    };
    let mut input = match tokio::fs::File::open(src).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DownloadError::NotFound { url: url.into() });
        }
        Err(e) => return Err(local_err(e)),
    };
    let src_len = input.metadata().await.map_err(local_err)?.len();
    let mut offset = existing_part(part, size).await?;
    if offset > src_len {
        truncate(part).await?;
        offset = 0;
    }
    progress.set(offset);
    input
        .seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(local_err)?;
    let mut out = open_append(part).await?;
    let mut buf = vec![0u8; 1 << 18];
    loop {
        let n = input.read(&mut buf).await.map_err(local_err)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).await.map_err(part_err(part))?;
        progress.add(n as u64);
    }
    out.flush().await.map_err(part_err(part))?;
    Ok(Outcome {
        resumed: offset > 0,
    })
}

/// Why one HTTP attempt ended without the whole file.
enum Attempt {
    /// Worth trying again (after a delay, at least this long).
    Transient(String, Option<Duration>),
    /// The partial file does not fit what the server has: start over at once, without Range
    /// (this happens at most once per transfer, so it does not count as an attempt).
    Restart(String),
    /// Not worth trying again at this URL.
    Fatal(DownloadError),
}

async fn http(
    settings: &Settings,
    url: &str,
    part: &Path,
    size: u64,
    progress: &Transfer,
) -> Result<Outcome, DownloadError> {
    let attempts = settings.retries.saturating_add(1);
    // Set when a server answers a Range request with the wrong range: ask for the whole file.
    let mut no_range = false;
    let mut last = String::new();
    let mut attempt = 0;
    while attempt < attempts {
        let mut offset = existing_part(part, size).await?;
        if no_range && offset > 0 {
            truncate(part).await?;
            offset = 0;
        }
        progress.set(offset);
        // A part as long as the file was completed by an earlier run that stopped before
        // verifying it: verification decides whether it is good.
        if size != 0 && offset == size {
            return Ok(Outcome { resumed: true });
        }
        match http_attempt(settings, url, part, offset, size, progress).await {
            Ok(resumed) => return Ok(Outcome { resumed }),
            Err(Attempt::Fatal(e)) => return Err(e),
            Err(Attempt::Restart(message)) => {
                last = message;
                if !no_range {
                    no_range = true;
                    continue;
                }
                attempt += 1;
            }
            Err(Attempt::Transient(message, retry_after)) => {
                last = message;
                attempt += 1;
                if attempt < attempts {
                    let backoff = settings
                        .backoff
                        .saturating_mul(2u32.saturating_pow(attempt - 1))
                        .max(retry_after.unwrap_or_default())
                        .min(MAX_BACKOFF);
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }
    Err(DownloadError::Network {
        url: url.into(),
        message: last,
        attempts,
    })
}

/// One request. Returns whether it continued a partial file.
async fn http_attempt(
    settings: &Settings,
    url: &str,
    part: &Path,
    offset: u64,
    size: u64,
    progress: &Transfer,
) -> Result<bool, Attempt> {
    use reqwest::header::{CONTENT_RANGE, RANGE, RETRY_AFTER};
    let mut req = settings.client.get(url);
    if offset > 0 {
        req = req.header(RANGE, format!("bytes={offset}-"));
    }
    let mut resp = req
        .send()
        .await
        .map_err(|e| Attempt::Transient(error_chain(&e), None))?;
    let status = resp.status();
    let resumed = match status.as_u16() {
        206 => {
            // Only a range starting exactly where the part ends can be appended.
            let start = resp
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if start != Some(offset) {
                return Err(Attempt::Restart(format!(
                    "asked for bytes {offset}- and the server sent another range"
                )));
            }
            true
        }
        200 => {
            // The server ignored Range (or none was sent): start over.
            if offset > 0 {
                truncate(part).await.map_err(Attempt::Fatal)?;
                progress.set(0);
            }
            false
        }
        416 => {
            // The part cannot be a prefix of what the server has: start over.
            return Err(Attempt::Restart(
                "server refused the range request (416)".into(),
            ));
        }
        404 | 410 => return Err(Attempt::Fatal(DownloadError::NotFound { url: url.into() })),
        429 | 500..=599 => {
            let after = resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(Attempt::Transient(
                format!("server answered {status}"),
                after,
            ));
        }
        s => {
            return Err(Attempt::Fatal(DownloadError::Status {
                url: url.into(),
                status: s,
            }));
        }
    };
    let mut out = open_append(part).await.map_err(Attempt::Fatal)?;
    let mut written = if resumed { offset } else { 0 };
    let body = loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if let Err(e) = out.write_all(&chunk).await {
                    return Err(Attempt::Fatal(part_err(part)(e)));
                }
                written += chunk.len() as u64;
                progress.add(chunk.len() as u64);
                // More than the package's size cannot be the package: stop filling the disk
                // and let verification reject it.
                if size != 0 && written > size {
                    break Ok(());
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(error_chain(&e)),
        }
    };
    // What arrived stays in the part for the next attempt to continue from.
    out.flush()
        .await
        .map_err(|e| Attempt::Fatal(part_err(part)(e)))?;
    if let Err(message) = body {
        return Err(Attempt::Transient(
            format!("connection lost after {written} bytes: {message}"),
            None,
        ));
    }
    if size != 0 && written < size {
        return Err(Attempt::Transient(
            format!("the server sent {written} of {size} bytes"),
            None,
        ));
    }
    Ok(resumed)
}
