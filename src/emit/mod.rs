//! Backends that turn the finished staging tree into artifacts. Each implements [`Backend`]; they
//! share the deterministic tar writer and write every artifact under a temporary name first.
//!
//! Written so far: the OCI image layout, pushing it to a registry (push.rs) and WSL (#5); of the
//! disk formats (#6), the disk backend (disk/): layout, GPT, ESP, ext4, raw, VHD, qcow2.

pub mod compress;
pub mod disk;
pub mod distroless;
pub mod oci;
pub mod push;
pub mod sbom;
pub mod tar;
pub mod wsl;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::definition::{Arch, Definition};
use crate::tree::Tree;

#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Tar(#[from] tar::TarError),
    #[error("{0}")]
    Invalid(String),
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> EmitError + '_ {
    move |source| EmitError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One architecture's finished image, as a backend sees it.
pub struct Image<'a> {
    pub tree: &'a Tree,
    pub arch: Arch,
    /// SOURCE_DATE_EPOCH: the time every artifact carries.
    pub epoch: i64,
    /// Installed packages, in install order (the rpmdb's install times follow it, see
    /// [`crate::install::rpmdb::install_time`]).
    pub packages: &'a [crate::install::package::Package],
}

/// A file or directory a build wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub path: PathBuf,
    /// Size and SHA-256 of the file that identifies the artifact: see [`DigestOf`].
    pub size: u64,
    pub sha256: String,
    pub digest_of: DigestOf,
    /// The images inside, one per architecture, with the packages each holds. Empty for files
    /// that only describe other artifacts (DistributionInfo.json, an mtree manifest); those get
    /// no SBOM.
    pub contents: Vec<Contents>,
}

/// Which file `Artifact::size` and `sha256` are of. A directory has no bytes of its own, so it
/// is identified by the one file that pins all of its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestOf {
    /// The artifact file itself.
    File,
    /// An OCI image layout: the manifest (or, with several platforms, image index) blob that
    /// `index.json` names, i.e. the image digest a registry shows.
    OciManifest,
    /// The `dir` output: its mtree manifest, which lists every path with its sha256.
    Mtree(PathBuf),
}

/// The packages of one architecture's image that an artifact holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contents {
    pub arch: Arch,
    /// Indexes into that image's [`Image::packages`], in install order: all of them, or what a
    /// distroless view keeps.
    pub packages: Vec<usize>,
}

impl Contents {
    /// Every package of `image`.
    pub fn all(image: &Image<'_>) -> Contents {
        Contents {
            arch: image.arch,
            packages: (0..image.packages.len()).collect(),
        }
    }
}

/// A backend: receives the finished images (one per architecture) and its settings from the
/// definition, writes its artifacts into `out`, and never reaches back into earlier stages.
pub trait Backend {
    /// The name `--format` and the definition's `outputs` use.
    fn name(&self) -> &'static str;
    fn emit(
        &self,
        def: &Definition,
        images: &[Image<'_>],
        out: &Path,
    ) -> Result<Vec<Artifact>, EmitError>;
}

/// A file or directory written under a temporary name in its final directory, renamed to its
/// final name by [`Pending::commit`] and removed if dropped before that: an interrupted build
/// never leaves a partial artifact under the final name.
pub struct Pending {
    tmp: PathBuf,
    dest: PathBuf,
    done: bool,
}

impl Pending {
    pub fn new(dest: &Path) -> Pending {
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dest.with_file_name(format!(".{name}.kiln-tmp-{}", std::process::id()));
        Pending {
            tmp,
            dest: dest.to_path_buf(),
            done: false,
        }
    }

    /// Where to write.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Renames the finished file (or directory, replacing an older one) to its final name.
    pub fn commit(mut self) -> Result<PathBuf, EmitError> {
        if self.dest.is_dir() && self.tmp.is_dir() {
            // rename(2) cannot replace a non-empty directory: move the old one aside first.
            let old = self.tmp.with_extension("old");
            std::fs::rename(&self.dest, &old).map_err(io_err(&self.dest))?;
            std::fs::rename(&self.tmp, &self.dest).map_err(io_err(&self.dest))?;
            let _ = std::fs::remove_dir_all(&old);
        } else {
            std::fs::rename(&self.tmp, &self.dest).map_err(io_err(&self.dest))?;
        }
        self.done = true;
        Ok(self.dest.clone())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.tmp);
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// A writer that hashes (SHA-256) and counts what passes through it.
pub struct Hashing<W> {
    pub inner: W,
    sha: Sha256,
    pub len: u64,
}

impl<W: Write> Hashing<W> {
    pub fn new(inner: W) -> Self {
        Hashing {
            inner,
            sha: Sha256::new(),
            len: 0,
        }
    }

    /// The hex digest and length so far, and the inner writer.
    pub fn finish(self) -> (String, u64, W) {
        (hex::encode(self.sha.finalize()), self.len, self.inner)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Creates `path` for writing, buffered.
pub(crate) fn create(path: &Path) -> Result<BufWriter<File>, EmitError> {
    Ok(BufWriter::with_capacity(
        1 << 20,
        File::create(path).map_err(io_err(path))?,
    ))
}

/// The SHA-256 of a file, hex, and its length. Holes are hashed from a zero buffer instead of
/// read: a 5 GiB sparse disk holds a few hundred MiB, and reading its holes made the kernel fill
/// gigabytes of page cache with zeros (most of the disk backend's time).
pub fn sha256_file(path: &Path) -> Result<(String, u64), EmitError> {
    use std::os::unix::fs::FileExt;
    let f = File::open(path).map_err(io_err(path))?;
    let len = f.metadata().map_err(io_err(path))?.len();
    let ranges = disk::sparse::data_ranges(&f, len).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let zeros = vec![0u8; 1 << 20];
    let zero_fill = |h: &mut Sha256, mut n: u64| {
        while n > 0 {
            let k = n.min(zeros.len() as u64) as usize;
            h.update(&zeros[..k]);
            n -= k as u64;
        }
    };
    let mut at = 0;
    for (start, end) in ranges {
        zero_fill(&mut h, start - at);
        let mut pos = start;
        while pos < end {
            let k = (end - pos).min(buf.len() as u64) as usize;
            f.read_exact_at(&mut buf[..k], pos).map_err(io_err(path))?;
            h.update(&buf[..k]);
            pos += k as u64;
        }
        at = end;
    }
    zero_fill(&mut h, len - at);
    Ok((hex::encode(h.finalize()), len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_a_sparse_file_is_that_of_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.raw");
        let f = File::create(&path).unwrap();
        f.set_len(40 << 20).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"data at 3 MiB", 3 << 20).unwrap();
        f.write_all_at(&[7u8; 5000], (40 << 20) - 5000).unwrap();
        drop(f);
        let bytes = std::fs::read(&path).unwrap();
        let want = hex::encode(Sha256::digest(&bytes));
        assert_eq!(sha256_file(&path).unwrap(), (want, 40 << 20));
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(
            sha256_file(&empty).unwrap().0,
            hex::encode(Sha256::digest(b""))
        );
    }

    #[test]
    fn pending_files_appear_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("image.wsl");
        {
            let p = Pending::new(&dest);
            std::fs::write(p.path(), b"half").unwrap();
            // Dropped without commit: an interrupted build.
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let p = Pending::new(&dest);
        std::fs::write(p.path(), b"whole").unwrap();
        assert_eq!(p.commit().unwrap(), dest);
        assert_eq!(std::fs::read(&dest).unwrap(), b"whole");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn pending_directories_replace_older_ones() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("oci");
        std::fs::create_dir(&dest).unwrap();
        std::fs::write(dest.join("old"), b"").unwrap();
        let p = Pending::new(&dest);
        std::fs::create_dir(p.path()).unwrap();
        std::fs::write(p.path().join("new"), b"").unwrap();
        p.commit().unwrap();
        assert!(dest.join("new").exists() && !dest.join("old").exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
