//! RPM payloads, streamed: the compressed cpio archive after the header is decompressed and read
//! member by member, so a package's content never has to fit in memory.

use std::io::{self, BufRead, BufReader, Read};

/// Decompresses a payload stream according to the header's PAYLOADCOMPRESSOR.
pub fn decompressor<'a>(
    compressor: &str,
    input: impl BufRead + 'a,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match compressor {
        "gzip" => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        "xz" | "lzma" => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(input)),
        "zstd" => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
        "bzip2" => Box::new(bzip2::bufread::MultiBzDecoder::new(input)),
        "identity" | "" => Box::new(input),
        other => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("payload compressor `{other}` is not supported"),
            ));
        }
    })
}

/// One cpio member's header.
#[derive(Debug, Clone)]
pub struct Member {
    /// The path as rpm writes it (`./usr/bin/x`), made absolute (`/usr/bin/x`).
    pub path: String,
    pub mode: u32,
    pub size: u64,
    pub nlink: u32,
    pub ino: u32,
}

/// Reads a "newc" cpio archive member by member.
pub struct Cpio<R: Read> {
    input: BufReader<R>,
    /// Bytes of the current member's data not yet read.
    remaining: u64,
    /// Padding after the current member's data.
    pad: u64,
    done: bool,
}

fn hex_field(b: &[u8]) -> io::Result<u64> {
    let s = std::str::from_utf8(b).map_err(|_| bad("a header field is not text"))?;
    u64::from_str_radix(s, 16).map_err(|_| bad("a header field is not hexadecimal"))
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("corrupt payload: {msg}"),
    )
}

impl<R: Read> Cpio<R> {
    pub fn new(input: R) -> Self {
        Cpio {
            input: BufReader::with_capacity(1 << 16, input),
            remaining: 0,
            pad: 0,
            done: false,
        }
    }

    fn skip(&mut self, n: u64) -> io::Result<()> {
        let copied = io::copy(&mut (&mut self.input).take(n), &mut io::sink())?;
        if copied != n {
            return Err(bad("the archive ends inside a member"));
        }
        Ok(())
    }

    /// The next member, skipping whatever of the previous one's data was not read.
    pub fn next_member(&mut self) -> io::Result<Option<Member>> {
        if self.done {
            return Ok(None);
        }
        let rest = self.remaining + self.pad;
        self.remaining = 0;
        self.pad = 0;
        self.skip(rest)?;
        let mut h = [0u8; 110];
        self.input
            .read_exact(&mut h)
            .map_err(|_| bad("the archive ends before its trailer"))?;
        match &h[..6] {
            b"070701" | b"070702" => {}
            b"07070X" => {
                return Err(bad(
                    "rpm's stripped cpio format (files over 4 GiB) is not supported",
                ));
            }
            _ => return Err(bad("not a newc cpio archive")),
        }
        let field = |i: usize| hex_field(&h[6 + i * 8..14 + i * 8]);
        let ino = field(0)? as u32;
        let mode = field(1)? as u32;
        let nlink = field(4)? as u32;
        let size = field(6)?;
        let namesize = field(11)?;
        if namesize == 0 || namesize > 65536 {
            return Err(bad("a member name has an impossible length"));
        }
        let mut name = vec![0u8; namesize as usize];
        self.input
            .read_exact(&mut name)
            .map_err(|_| bad("the archive ends inside a name"))?;
        name.pop(); // NUL
        let name = String::from_utf8(name).map_err(|_| bad("a member name is not UTF-8"))?;
        // The name is padded so that header + name is a multiple of 4.
        let name_pad = (4 - (110 + namesize) % 4) % 4;
        self.skip(name_pad)?;
        if name == "TRAILER!!!" {
            self.done = true;
            return Ok(None);
        }
        self.remaining = size;
        self.pad = (4 - size % 4) % 4;
        let path = match name.strip_prefix('.') {
            Some(p) if p.starts_with('/') => p.to_string(),
            _ if name.starts_with('/') => name,
            _ => format!("/{name}"),
        };
        Ok(Some(Member {
            path,
            mode,
            size,
            nlink,
            ino,
        }))
    }

    /// The current member's data.
    pub fn data(&mut self) -> impl Read + '_ {
        DataReader { cpio: self }
    }
}

struct DataReader<'a, R: Read> {
    cpio: &'a mut Cpio<R>,
}

impl<R: Read> Read for DataReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cpio.remaining == 0 {
            return Ok(0);
        }
        let max = buf.len().min(self.cpio.remaining as usize);
        let n = self.cpio.input.read(&mut buf[..max])?;
        if n == 0 {
            return Err(bad("the archive ends inside a file"));
        }
        self.cpio.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, mode: u32, data: &[u8]) -> Vec<u8> {
        let namesize = name.len() + 1;
        let mut h = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            1,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            namesize,
            0
        )
        .into_bytes();
        h.extend_from_slice(name.as_bytes());
        h.push(0);
        while h.len() % 4 != 0 {
            h.push(0);
        }
        h.extend_from_slice(data);
        while h.len() % 4 != 0 {
            h.push(0);
        }
        h
    }

    #[test]
    fn reads_members_and_data() {
        let mut a = member("./usr/bin/x", 0o100755, b"hello");
        a.extend(member("./etc", 0o40755, b""));
        a.extend(member("TRAILER!!!", 0, b""));
        let mut c = Cpio::new(&a[..]);
        let m = c.next_member().unwrap().unwrap();
        assert_eq!((m.path.as_str(), m.size), ("/usr/bin/x", 5));
        let mut s = String::new();
        c.data().read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
        let m = c.next_member().unwrap().unwrap();
        assert_eq!(m.path, "/etc");
        assert!(c.next_member().unwrap().is_none());
        assert!(c.next_member().unwrap().is_none());
    }

    #[test]
    fn unread_data_is_skipped_and_truncation_is_an_error() {
        let mut a = member("./a", 0o100644, b"0123456789");
        a.extend(member("./b", 0o100644, b"z"));
        a.extend(member("TRAILER!!!", 0, b""));
        let mut c = Cpio::new(&a[..]);
        c.next_member().unwrap();
        assert_eq!(c.next_member().unwrap().unwrap().path, "/b");
        let cut = &a[..a.len() - 60];
        let mut c = Cpio::new(cut);
        c.next_member().unwrap();
        assert!(c.next_member().and_then(|_| c.next_member()).is_err());
        assert!(Cpio::new(&b"garbage"[..]).next_member().is_err());
    }
}
