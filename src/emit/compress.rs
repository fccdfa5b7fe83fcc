//! Layer compressors that use every core and stay byte-reproducible: a parallel gzip writer
//! (pigz's scheme: fixed 1 MiB blocks, each primed with the 32 KiB before it) and zstd's own.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// zstd's worker threads. With one worker or more zstd cuts the input into jobs whose size
/// follows from the level alone, so the frame is the same for 1, 2, 4 or 8 workers (checked on
/// a real layer and in the tests below), but it differs from single-threaded mode (0 workers).
/// zstd does not promise that in writing, so the count is fixed rather than the machine's: two
/// machines give the same bytes even if a later zstd made the output depend on it. 4 uses up
/// to four cores; with fewer the workers just take turns.
pub const ZSTD_WORKERS: u32 = 4;

/// A zstd encoder at `level` with a content checksum and [`ZSTD_WORKERS`] workers.
pub fn zstd_encoder<W: Write>(
    inner: W,
    level: i32,
) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
    zstd_with_workers(inner, level, ZSTD_WORKERS)
}

fn zstd_with_workers<W: Write>(
    inner: W,
    level: i32,
    workers: u32,
) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
    let mut z = zstd::stream::write::Encoder::new(inner, level)?;
    z.include_checksum(true)?;
    z.multithread(workers)?;
    Ok(z)
}

/// Input block size. Block boundaries are fixed offsets of the input, never a function of how
/// `write` is called or how many threads run, so the output is the same on every machine. Each
/// block adds an empty stored block and new Huffman tables, yet a real 71 MiB layer came out
/// 0.02 % smaller than one flate2 stream; 1 MiB gives a worker ~15 ms of work per hand-off.
pub const BLOCK: usize = 1 << 20;
/// deflate's window: each block may refer this far back into the previous one.
const WINDOW: usize = 32 * 1024;

/// Writes one gzip member (RFC 1952) of what is written to it: no name, mtime 0, OS 255 (as
/// flate2's `GzBuilder::new().mtime(0)` writes it). Call [`ParallelGzip::finish`] at the end.
pub struct ParallelGzip<W: Write> {
    inner: W,
    level: Compression,
    threads: usize,
    /// The block being filled.
    buf: Vec<u8>,
    /// The last `WINDOW` bytes before `buf`: its dictionary.
    dict: Vec<u8>,
    /// Sequence number of the next block handed out, and of the next one to write.
    next: u64,
    written: u64,
    /// Finished blocks that arrived ahead of their turn.
    ready: BTreeMap<u64, Deflated>,
    /// Emptied input buffers, reused for later blocks.
    spare: Vec<Vec<u8>>,
    crc: Crc,
    header_written: bool,
    /// Workers, started with the first full block (a small layer never starts them).
    pool: Option<Pool>,
}

struct Job {
    seq: u64,
    dict: Vec<u8>,
    data: Vec<u8>,
    last: bool,
}

struct Deflated {
    out: Vec<u8>,
    crc: Crc,
    /// The input buffer, handed back for reuse.
    data: Vec<u8>,
}

struct Pool {
    jobs: Option<SyncSender<Job>>,
    results: Receiver<(u64, io::Result<Deflated>)>,
    handles: Vec<JoinHandle<()>>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the queue ends the workers once they finish their current block.
        self.jobs = None;
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// Deflates one block as raw deflate, primed with `dict`. A block that is not the last ends
/// with a sync flush (an empty stored block), so it ends on a byte boundary and the next
/// block's bytes can simply follow it; the last one ends the stream.
fn deflate_block(level: Compression, dict: &[u8], data: &[u8], last: bool) -> io::Result<Vec<u8>> {
    // A new compressor for every block, never `reset()`: zlib-rs's reset keeps the old window
    // bytes (only a new one zeroes them), and with a dictionary they reach the output: a
    // reused compressor gave different bytes for 10 of the 71 blocks of a real layer,
    // depending on what it had deflated before. A new one costs ~300 KiB of zeroing per block.
    let mut c = Compress::new(level, false);
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    // Slightly more than the worst case of stored blocks, so one call usually does it.
    let mut out = Vec::with_capacity(data.len() + data.len() / 64 + 64);
    let start = c.total_in();
    loop {
        let consumed = (c.total_in() - start) as usize;
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(64));
        }
        let status = c
            .compress_vec(&data[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let all_in = (c.total_in() - start) as usize == data.len();
        match status {
            Status::StreamEnd => break,
            // A flush is complete when it stopped with output space left.
            Status::Ok | Status::BufError if !last && all_in && out.len() < out.capacity() => {
                break;
            }
            Status::Ok | Status::BufError => {}
        }
    }
    Ok(out)
}

fn deflate_job(level: Compression, job: Job) -> io::Result<Deflated> {
    let out = deflate_block(level, &job.dict, &job.data, job.last)?;
    let mut crc = Crc::new();
    crc.update(&job.data);
    Ok(Deflated {
        out,
        crc,
        data: job.data,
    })
}

impl<W: Write> ParallelGzip<W> {
    /// `threads`: how many blocks are deflated at once (1: all in the caller's thread). The
    /// output does not depend on it.
    pub fn new(inner: W, level: Compression, threads: usize) -> Self {
        ParallelGzip {
            inner,
            level,
            threads: threads.max(1),
            buf: Vec::with_capacity(BLOCK),
            dict: Vec::new(),
            next: 0,
            written: 0,
            ready: BTreeMap::new(),
            spare: Vec::new(),
            crc: Crc::new(),
            header_written: false,
            pool: None,
        }
    }

    /// With as many threads as the machine has cores.
    pub fn with_available_parallelism(inner: W, level: Compression) -> Self {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::new(inner, level, n)
    }

    fn header(&self) -> [u8; 10] {
        // XFL as flate2 and gzip set it: 2 for the slowest level, 4 for the fastest.
        let xfl = match self.level.level() {
            9.. => 2,
            0 | 1 => 4,
            _ => 0,
        };
        [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255]
    }

    fn start_pool(&self) -> io::Result<Pool> {
        let (jobs, queue) = mpsc::sync_channel::<Job>(self.threads);
        let queue = Arc::new(Mutex::new(queue));
        let (done, results) = mpsc::channel();
        let mut pool = Pool {
            jobs: Some(jobs),
            results,
            handles: Vec::new(),
        };
        for _ in 0..self.threads {
            let queue = Arc::clone(&queue);
            let done: Sender<(u64, io::Result<Deflated>)> = done.clone();
            let level = self.level;
            let worker = move || {
                loop {
                    // The lock is held only while waiting for the next job.
                    let job = match queue.lock() {
                        Ok(q) => q.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    let seq = job.seq;
                    // A panic must come back as an error: the writer waits for every block.
                    let result =
                        std::panic::catch_unwind(AssertUnwindSafe(|| deflate_job(level, job)))
                            .unwrap_or_else(|_| {
                                Err(io::Error::other("a gzip compression worker failed"))
                            });
                    if done.send((seq, result)).is_err() {
                        return;
                    }
                }
            };
            let handle = std::thread::Builder::new()
                .name("kiln-gzip".into())
                .spawn(worker)?;
            pool.handles.push(handle);
        }
        Ok(pool)
    }

    /// Hands the filled block to a worker (or deflates it here) and starts the next one.
    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        let fresh = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BLOCK));
        let data = std::mem::replace(&mut self.buf, fresh);
        self.buf.clear();
        // Every block but the last is full (BLOCK > WINDOW), so the next block's dictionary
        // is this block's tail; after the last block it is not used.
        let tail = data[data.len().saturating_sub(WINDOW)..].to_vec();
        let job = Job {
            seq: self.next,
            dict: std::mem::replace(&mut self.dict, tail),
            data,
            last,
        };
        self.next += 1;
        if self.threads == 1 || (last && self.pool.is_none()) {
            // One thread, or a stream that fits one block: no workers worth starting.
            let d = deflate_job(self.level, job)?;
            self.ready.insert(self.next - 1, d);
            return self.write_ready();
        }
        if self.pool.is_none() {
            self.pool = Some(self.start_pool()?);
        }
        // Bounded work in flight: the queue holds `threads` jobs and each worker one more.
        while self.next - 1 - self.written >= 2 * self.threads as u64 {
            self.receive(true)?;
        }
        let sent = self
            .pool
            .as_ref()
            .and_then(|p| p.jobs.as_ref())
            .map(|j| j.send(job).is_ok());
        if sent != Some(true) {
            return Err(io::Error::other("a gzip compression worker stopped"));
        }
        while self.receive(false)? {}
        Ok(())
    }

    /// Collects a finished block (waiting for one if `wait`) and writes what is in order.
    /// Returns whether one was collected.
    fn receive(&mut self, wait: bool) -> io::Result<bool> {
        let Some(pool) = &self.pool else {
            return Ok(false);
        };
        let got = if wait {
            match pool.results.recv() {
                Ok(r) => Some(r),
                Err(_) => return Err(io::Error::other("a gzip compression worker stopped")),
            }
        } else {
            pool.results.try_recv().ok()
        };
        let Some((seq, result)) = got else {
            return Ok(false);
        };
        self.ready.insert(seq, result?);
        self.write_ready()?;
        Ok(true)
    }

    /// Writes the finished blocks that come next, in order.
    fn write_ready(&mut self) -> io::Result<()> {
        if !self.header_written {
            let h = self.header();
            self.inner.write_all(&h)?;
            self.header_written = true;
        }
        while let Some(d) = self.ready.remove(&self.written) {
            self.inner.write_all(&d.out)?;
            self.crc.combine(&d.crc);
            self.written += 1;
            let mut data = d.data;
            data.clear();
            if self.spare.len() < 2 * self.threads {
                self.spare.push(data);
            }
        }
        Ok(())
    }

    /// Ends the stream: the last block, then the trailer (CRC-32 and length mod 2^32).
    /// Returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.dispatch(true)?;
        while self.written < self.next {
            if !self.receive(true)? {
                return Err(io::Error::other("a gzip block was lost"));
            }
        }
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.sum().to_le_bytes());
        trailer[4..].copy_from_slice(&self.crc.amount().to_le_bytes());
        self.inner.write_all(&trailer)?;
        self.inner.flush()?;
        self.pool = None;
        // `ParallelGzip` has no Drop of its own, so the writer can be moved out.
        Ok(self.inner)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(BLOCK - self.buf.len());
        self.buf.extend_from_slice(&buf[..n]);
        if self.buf.len() == BLOCK {
            self.dispatch(false)?;
        }
        Ok(n)
    }

    /// Writes out the blocks already finished; a partial block stays until it is full (a
    /// flush must not change where blocks end).
    fn flush(&mut self) -> io::Result<()> {
        while self.receive(false)? {}
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Deterministic, partly compressible input: text-like runs and pseudo-random bytes.
    fn input(len: usize) -> Vec<u8> {
        let mut x: u32 = 0x9e37_79b9;
        (0..len)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                if (i / 4096) % 3 == 0 {
                    x as u8
                } else {
                    b"kiln builds images "[i % 19]
                }
            })
            .collect()
    }

    /// Compresses `data`, written in pieces of `chunk` bytes.
    fn gzip(data: &[u8], threads: usize, chunk: usize) -> Vec<u8> {
        let mut w = ParallelGzip::new(Vec::new(), Compression::new(6), threads);
        for piece in data.chunks(chunk.max(1)) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap()
    }

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        // The single-member decoder: trailing data or a second member would show up here.
        let mut d = flate2::read::GzDecoder::new(gz);
        let mut out = Vec::new();
        d.read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn round_trips_at_every_block_boundary() {
        for len in [
            0,
            1,
            WINDOW - 1,
            WINDOW + 1,
            BLOCK - 1,
            BLOCK,
            BLOCK + 1,
            2 * BLOCK,
            3 * BLOCK + 12_345,
        ] {
            let data = input(len);
            let gz = gzip(&data, 4, 100_000);
            assert_eq!(&gz[..4], &[0x1f, 0x8b, 8, 0], "{len}: header");
            assert_eq!(gunzip(&gz), data, "{len} bytes");
            let crc = u32::from_le_bytes(gz[gz.len() - 8..gz.len() - 4].try_into().unwrap());
            let mut want = Crc::new();
            want.update(&data);
            assert_eq!(crc, want.sum(), "{len}: CRC-32");
            let isize = u32::from_le_bytes(gz[gz.len() - 4..].try_into().unwrap());
            assert_eq!(isize, len as u32, "{len}: ISIZE");
        }
    }

    /// Like a tar of mixed files: text, zero padding, random runs and repeats of all three,
    /// varying from block to block.
    fn tar_like(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rand = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let n = (rand() % 20_000) as usize + 1;
            match rand() % 4 {
                0 => out.extend((0..n).map(|_| rand() as u8)),
                1 => out.extend(std::iter::repeat_n(0u8, n % 1024)),
                2 => out.extend(
                    b"usr/lib/python3.11/site-packages/ 0644 root "
                        .iter()
                        .cycle()
                        .take(n),
                ),
                _ if out.len() > n => out.extend_from_within(out.len() - n..),
                _ => {}
            }
        }
        out.truncate(len);
        out
    }

    #[test]
    fn bytes_do_not_depend_on_threads_or_write_sizes() {
        let data = tar_like(12 * BLOCK + 777);
        let one = gzip(&data, 1, BLOCK);
        assert_eq!(gunzip(&one), data);
        for (threads, chunk) in [(4, 4096), (2, 3 * BLOCK), (3, 100_003), (4, BLOCK)] {
            assert!(gzip(&data, threads, chunk) == one, "{threads} threads");
        }
        let small = input(BLOCK + 5);
        assert_eq!(gzip(&small, 4, 1), gzip(&small, 1, 1));
    }

    #[test]
    fn a_short_stream_matches_the_same_block_deflated_alone() {
        // One block, one thread or four: the same bytes, and the header flate2 writes.
        let data = input(10_000);
        let gz = gzip(&data, 4, 10_000);
        assert_eq!(gz, gzip(&data, 1, 10_000));
        let mut plain = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), Compression::new(6));
        plain.write_all(&data).unwrap();
        let plain = plain.finish().unwrap();
        assert_eq!(gz[..10], plain[..10]);
    }

    #[test]
    fn each_block_refers_back_into_the_previous_one() {
        // A random block, then its last 30 KiB again: primed with the previous block's tail,
        // the second block is a single back-reference; deflated alone it would cost 30 KiB.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut data: Vec<u8> = (0..BLOCK)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        data.extend_from_within(BLOCK - 30 * 1024..);
        let gz = gzip(&data, 2, 64 * 1024);
        let first = gzip(&data[..BLOCK], 1, BLOCK).len();
        assert!(gz.len() < first + 1024, "{} vs {first}", gz.len());
        assert_eq!(gunzip(&gz), data);
    }

    #[test]
    fn zstd_frames_do_not_depend_on_workers_or_write_sizes() {
        let data = tar_like(20 * BLOCK);
        let frame = |workers, chunk: usize| {
            let mut z = zstd_with_workers(Vec::new(), 3, workers).unwrap();
            for piece in data.chunks(chunk) {
                z.write_all(piece).unwrap();
            }
            z.finish().unwrap()
        };
        let four = frame(ZSTD_WORKERS, 64 * 1024);
        assert!(frame(1, 3 * BLOCK) == four);
        assert!(frame(2, 7777) == four);
        assert_eq!(zstd::decode_all(&four[..]).unwrap(), data);
    }
}
