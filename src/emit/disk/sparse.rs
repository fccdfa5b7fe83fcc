//! Sparse files: finding a file's data ranges (SEEK_DATA/SEEK_HOLE), copying only non-zero
//! blocks, and a byte-range view of a disk image that never writes zeros into a hole.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// The granularity at which zero blocks are skipped: the page and file system block size.
pub const BLOCK: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum SparseError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Whether every byte of `buf` is zero.
pub fn is_zero(buf: &[u8]) -> bool {
    // Word-wise: this runs over every byte of every image written.
    // SAFETY: every bit pattern is a valid u64; align_to handles the unaligned ends.
    let (head, words, tail) = unsafe { buf.align_to::<u64>() };
    head.iter().all(|&b| b == 0) && words.iter().all(|&w| w == 0) && tail.iter().all(|&b| b == 0)
}

fn lseek(file: &File, offset: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
    let off = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
    // SAFETY: lseek on a valid descriptor has no memory-safety preconditions.
    let r = unsafe { libc::lseek(file.as_raw_fd(), off, whence) };
    if r < 0 {
        let e = io::Error::last_os_error();
        // ENXIO: no data (or hole) at or after `offset`.
        if e.raw_os_error() == Some(libc::ENXIO) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(r as u64))
}

/// The ranges `[start, end)` of `file` below `len` that may hold data, in order (this moves
/// the descriptor's offset; kiln reads and writes images positionally). On a file
/// system without SEEK_DATA support the whole file is one range (still correct, just slower).
pub fn data_ranges(file: &File, len: u64) -> io::Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < len {
        let start = match lseek(file, at, libc::SEEK_DATA) {
            Ok(Some(s)) => s,
            Ok(None) => break,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(vec![(0, len)]),
            Err(e) => return Err(e),
        };
        if start >= len {
            break;
        }
        let end = lseek(file, start, libc::SEEK_HOLE)?.unwrap_or(len).min(len);
        out.push((start, end));
        at = end;
    }
    Ok(out)
}

/// Whether `[start, start + len)` of `file` reads as a hole (no data allocated there).
fn is_hole(file: &File, start: u64, len: u64) -> io::Result<bool> {
    match lseek(file, start, libc::SEEK_DATA) {
        Ok(Some(d)) => Ok(d >= start + len),
        Ok(None) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Writes `buf` at `offset` of a file whose target range is known to read as zeros, skipping
/// the whole zero blocks, which stay holes.
pub fn write_nonzero_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    let mut i = 0;
    while i < buf.len() {
        // Chunks end on absolute block boundaries, so holes line up with the file system's.
        let abs = offset + i as u64;
        let n = (BLOCK - (abs % BLOCK as u64) as usize).min(buf.len() - i);
        // Coalesce consecutive non-zero blocks into one write.
        if is_zero(&buf[i..i + n]) {
            i += n;
            continue;
        }
        let mut j = i + n;
        while j < buf.len() {
            let m = BLOCK.min(buf.len() - j);
            if is_zero(&buf[j..j + m]) {
                break;
            }
            j += m;
        }
        file.write_all_at(&buf[i..j], abs)?;
        i = j;
    }
    Ok(())
}

/// Copies the first `len` bytes of `src` into `dst` (fresh and empty), writing only non-zero
/// blocks; `dst` ends up exactly `len` bytes long, the rest holes.
pub fn copy_sparse(src: &File, dst: &File, len: u64) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    for (start, end) in data_ranges(src, len)? {
        let mut at = start;
        while at < end {
            let n = ((end - at) as usize).min(buf.len());
            src.read_exact_at(&mut buf[..n], at)?;
            write_nonzero_at(dst, &buf[..n], at)?;
            at += n as u64;
        }
    }
    dst.set_len(len)
}

/// A byte range of a disk image as a file of its own (a partition), for writers that expect
/// `Read + Write + Seek` from offset 0. Writes of zeros into a range that is still a hole are
/// dropped: formatters zero whole tables and the image stays sparse.
#[derive(Debug)]
pub struct Region<'a> {
    file: &'a File,
    start: u64,
    len: u64,
    pos: u64,
}

impl<'a> Region<'a> {
    pub fn new(file: &'a File, start: u64, len: u64) -> Self {
        Region {
            file,
            start,
            len,
            pos: 0,
        }
    }
}

impl Read for Region<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.len.saturating_sub(self.pos)).min(buf.len() as u64) as usize;
        if n == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..n], self.start + self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for Region<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = (self.len.saturating_sub(self.pos)).min(buf.len() as u64) as usize;
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("write past the end of a {} byte partition", self.len),
            ));
        }
        let at = self.start + self.pos;
        if !(is_zero(&buf[..n]) && is_hole(self.file, at, n as u64)?) {
            self.file.write_all_at(&buf[..n], at)?;
        }
        self.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Region<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the partition start",
            )
        })?;
        Ok(self.pos)
    }
}

/// Bytes a file really occupies on disk (st_blocks × 512).
pub fn allocated(file: &File) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(file.metadata()?.blocks() * 512)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_blocks_stay_holes() {
        let dir = tempfile::tempdir().unwrap();
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("img"))
            .unwrap();
        f.set_len(64 << 20).unwrap();
        let mut buf = vec![0u8; 3 * BLOCK];
        buf[BLOCK + 7] = 1;
        write_nonzero_at(&f, &buf, 8 << 20).unwrap();
        let ranges = data_ranges(&f, 64 << 20).unwrap();
        // tmpfs and ext4 both report the one block written (possibly rounded to their block).
        assert_eq!(ranges.len(), 1, "{ranges:?}");
        assert!(ranges[0].0 <= (8 << 20) + BLOCK as u64 + 7);
        assert!(allocated(&f).unwrap() < 1 << 20);
        let mut r = Region::new(&f, 8 << 20, 1 << 20);
        r.seek(SeekFrom::Start(BLOCK as u64)).unwrap();
        let mut b = [0u8; 8];
        r.read_exact(&mut b).unwrap();
        assert_eq!(b, [0, 0, 0, 0, 0, 0, 0, 1]);
        // Zeros over data are written; zeros over a hole are not.
        r.seek(SeekFrom::Start(BLOCK as u64)).unwrap();
        r.write_all(&[0u8; 8]).unwrap();
        r.seek(SeekFrom::Start(BLOCK as u64 + 7)).unwrap();
        r.read_exact(&mut b[..1]).unwrap();
        assert_eq!(b[0], 0);
        let before = allocated(&f).unwrap();
        r.seek(SeekFrom::Start(512 << 10)).unwrap();
        r.write_all(&vec![0u8; 256 << 10]).unwrap();
        assert_eq!(allocated(&f).unwrap(), before);
        r.seek(SeekFrom::End(-1)).unwrap();
        r.write_all(&[1]).unwrap();
        assert!(
            r.write_all(&[1]).is_err(),
            "writes stop at the partition end"
        );

        let g = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("copy"))
            .unwrap();
        copy_sparse(&f, &g, 64 << 20).unwrap();
        assert_eq!(g.metadata().unwrap().len(), 64 << 20);
        // By path: data_ranges moved the descriptors' offsets.
        let a = std::fs::read(dir.path().join("img")).unwrap();
        let b = std::fs::read(dir.path().join("copy")).unwrap();
        assert!(a == b);
        assert!(allocated(&g).unwrap() < 1 << 20);
    }
}
