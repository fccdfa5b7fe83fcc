//! The content-addressed package cache: `packages/sha256/<first2>/<sha256>.rpm` for verified
//! packages, `packages/partial/<sha256>.part` for downloads in progress, and per-package locks.
//!
//! Only verified files are renamed into place, and nothing removes a cache entry except a
//! holder of its lock that has just found it damaged, so processes sharing the cache never see
//! a half-written package and never lose one they were handed.

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A cache operation that failed, and on what.
#[derive(Debug, thiserror::Error)]
#[error("package cache: cannot {action} {}: {source}", path.display())]
pub struct StoreError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

fn err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The package area of a cache directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A held per-package lock; released (and its file removed) on drop.
pub struct Lock {
    _file: std::fs::File,
    path: PathBuf,
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Removed while still held (the descriptor in `file` is closed, releasing the flock,
        // only after this): a waiter that opened this file notices that the path no longer
        // names it and takes the lock on a fresh file instead.
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Store {
    pub fn new(cache_dir: &Path) -> Store {
        Store {
            root: cache_dir.join("packages"),
        }
    }

    /// Where the verified package with this (lowercase hex) sha256 lives.
    pub fn package(&self, sha256: &str) -> PathBuf {
        self.root
            .join("sha256")
            .join(&sha256[..2])
            .join(format!("{sha256}.rpm"))
    }

    /// Where its download in progress is kept between attempts and runs.
    pub fn partial(&self, sha256: &str) -> PathBuf {
        self.root.join("partial").join(format!("{sha256}.part"))
    }

    fn lock_path(&self, sha256: &str) -> PathBuf {
        self.root.join("partial").join(format!("{sha256}.lock"))
    }

    /// Takes the lock of one package, waiting (without blocking a thread) while another task
    /// or process holds it.
    pub async fn lock(&self, sha256: &str) -> Result<Lock, StoreError> {
        let path = self.lock_path(sha256);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err("create", dir))?;
        }
        loop {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&path)
                .map_err(err("create the lock", &path))?;
            loop {
                // SAFETY: flock on a descriptor this function owns; no memory is involved.
                let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
                if rc == 0 {
                    break;
                }
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EWOULDBLOCK) | Some(libc::EINTR) => {
                        tokio::time::sleep(Duration::from_millis(25)).await;
                    }
                    _ => return Err(err("lock", &path)(e)),
                }
            }
            // The previous holder may have removed the file after this one was opened.
            let held = file.metadata().map_err(err("inspect the lock", &path))?;
            match std::fs::metadata(&path) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {
                    return Ok(Lock { _file: file, path });
                }
                _ => continue,
            }
        }
    }

    /// Moves a verified file into place (atomically: readers see the old entry or the new one).
    pub fn commit(&self, part: &Path, sha256: &str) -> Result<PathBuf, StoreError> {
        let dest = self.package(sha256);
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(err("create", dir))?;
        }
        std::fs::rename(part, &dest).map_err(err("move a verified package to", &dest))?;
        Ok(dest)
    }

    /// Removes a damaged cache entry (only ever called with the package's lock held).
    pub fn discard(&self, sha256: &str) -> Result<(), StoreError> {
        let path = self.package(sha256);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(err("remove the damaged", &path)(e)),
        }
    }

    /// Removes a partial download that turned out bad.
    pub fn discard_partial(&self, sha256: &str) -> Result<(), StoreError> {
        let path = self.partial(sha256);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(err("remove the bad partial download", &path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let s = Store::new(Path::new("/c"));
        let sha = "ab".repeat(32);
        assert_eq!(
            s.package(&sha),
            PathBuf::from(format!("/c/packages/sha256/ab/{sha}.rpm"))
        );
        assert_eq!(
            s.partial(&sha),
            PathBuf::from(format!("/c/packages/partial/{sha}.part"))
        );
    }

    #[test]
    fn the_lock_excludes_and_is_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::new(dir.path());
        let sha = "cd".repeat(32);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let held = s.lock(&sha).await.unwrap();
            // A second taker waits while the first holds it…
            let waiting = tokio::time::timeout(Duration::from_millis(200), s.lock(&sha)).await;
            assert!(waiting.is_err(), "the lock was taken twice");
            drop(held);
            // …and gets it once released.
            let again = tokio::time::timeout(Duration::from_secs(5), s.lock(&sha)).await;
            assert!(again.is_ok());
        });
        assert!(!s.lock_path(&sha).exists());
    }
}
