//! The parsed-metadata cache: a repository's packages, dependencies, files and groups in a
//! compact binary form keyed by its repomd.xml checksum, so an unchanged repository is never
//! parsed twice. Every id is bounds-checked on load; anything inconsistent is a cache miss.

use std::path::{Path, PathBuf};

use super::pool::{DEP_KINDS, DepEntry, Group, GroupPackage, GroupReq, Package, RepoData};
use super::strings::{Sid, Strings};

const MAGIC: &[u8; 8] = b"KILNREPO";
const FORMAT: u32 = 1;

/// Where kiln keeps downloaded and parsed metadata: `$KILN_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln`.
pub fn cache_root() -> PathBuf {
    if let Some(d) = std::env::var_os("KILN_CACHE_DIR") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("kiln")
}

/// Writes `bytes` to `path` through a temporary file and a rename, so readers never see a
/// half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

struct Writer(Vec<u8>);

impl Writer {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn sid(&mut self, s: Sid) {
        self.u32(s.0);
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
    }
}

/// Serializes a repository's metadata, tagged with the checksum it is valid for.
pub fn encode(data: &RepoData, revision: &str) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(1 << 20));
    w.0.extend_from_slice(MAGIC);
    w.u32(FORMAT);
    w.bytes(revision.as_bytes());
    let (blob, ends) = data.strings.parts();
    w.bytes(blob.as_bytes());
    w.u64(ends.len() as u64);
    ends.iter().for_each(|&e| w.u32(e));
    w.u64(data.packages.len() as u64);
    for p in &data.packages {
        for s in [
            p.name,
            p.arch,
            p.version,
            p.release,
            p.location,
            p.checksum_type,
            p.checksum,
            p.license,
            p.sourcerpm,
            p.summary,
            p.url,
            p.vendor,
        ] {
            w.sid(s);
        }
        w.u32(p.epoch);
        w.u64(p.size);
        w.u64(p.installed_size);
        w.u64(p.build_time);
        p.deps.iter().for_each(|&d| w.u32(d));
        p.files.iter().for_each(|&f| w.u32(f));
    }
    w.u64(data.deps.len() as u64);
    for d in &data.deps {
        w.sid(d.name);
        w.u32(d.flags as u32);
        w.u32(d.epoch);
        w.sid(d.version);
        w.sid(d.release);
    }
    w.u64(data.files.len() as u64);
    data.files.iter().for_each(|&f| w.sid(f));
    w.u64(data.groups.len() as u64);
    for g in &data.groups {
        w.sid(g.id);
        w.sid(g.name);
        w.u64(g.packages.len() as u64);
        for gp in &g.packages {
            w.sid(gp.name);
            w.u32(gp.kind as u32);
            w.sid(gp.requires);
        }
    }
    w.0.extend_from_slice(b"END");
    w.0
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    fn len(&mut self, item_size: usize) -> Option<usize> {
        let n = usize::try_from(self.u64()?).ok()?;
        // A length larger than what is left cannot be right.
        (n.checked_mul(item_size)? <= self.buf.len() - self.pos).then_some(n)
    }
    fn bytes(&mut self) -> Option<&[u8]> {
        let n = self.len(1)?;
        self.take(n)
    }
}

/// Reads a cache file; `None` if it is missing, for another revision, or damaged.
pub fn decode(bytes: &[u8], revision: &str) -> Option<RepoData> {
    let mut r = Reader { buf: bytes, pos: 0 };
    if r.take(8)? != MAGIC || r.u32()? != FORMAT || r.bytes()? != revision.as_bytes() {
        return None;
    }
    let blob = String::from_utf8(r.bytes()?.to_vec()).ok()?;
    let n = r.len(4)?;
    let ends = (0..n).map(|_| r.u32()).collect::<Option<Vec<_>>>()?;
    let strings = Strings::from_parts(blob, ends)?;
    let nstr = strings.len() as u32;
    let sid = |r: &mut Reader| -> Option<Sid> { r.u32().filter(|&s| s < nstr).map(Sid) };

    let n = r.len(4 * 13 + 8 * 3 + 4 * (DEP_KINDS + 1 + 2))?;
    let mut packages = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = [Sid::EMPTY; 12];
        for slot in s.iter_mut() {
            *slot = sid(&mut r)?;
        }
        let epoch = r.u32()?;
        let (size, installed_size, build_time) = (r.u64()?, r.u64()?, r.u64()?);
        let mut deps = [0u32; DEP_KINDS + 1];
        for d in deps.iter_mut() {
            *d = r.u32()?;
        }
        let files = [r.u32()?, r.u32()?];
        packages.push(Package {
            name: s[0],
            arch: s[1],
            version: s[2],
            release: s[3],
            location: s[4],
            checksum_type: s[5],
            checksum: s[6],
            license: s[7],
            sourcerpm: s[8],
            summary: s[9],
            url: s[10],
            vendor: s[11],
            epoch,
            size,
            installed_size,
            build_time,
            deps,
            files,
            repo: 0,
        });
    }
    let n = r.len(20)?;
    let mut deps = Vec::with_capacity(n);
    for _ in 0..n {
        deps.push(DepEntry {
            name: sid(&mut r)?,
            flags: u8::try_from(r.u32()?).ok()?,
            epoch: r.u32()?,
            version: sid(&mut r)?,
            release: sid(&mut r)?,
        });
    }
    let n = r.len(4)?;
    let files = (0..n).map(|_| sid(&mut r)).collect::<Option<Vec<_>>>()?;
    let n = r.len(8)?;
    let mut groups = Vec::with_capacity(n);
    for _ in 0..n {
        let (id, name) = (sid(&mut r)?, sid(&mut r)?);
        let m = r.len(12)?;
        let mut pkgs = Vec::with_capacity(m);
        for _ in 0..m {
            let name = sid(&mut r)?;
            let kind = match r.u32()? {
                0 => GroupReq::Mandatory,
                1 => GroupReq::Default,
                2 => GroupReq::Optional,
                3 => GroupReq::Conditional,
                _ => return None,
            };
            pkgs.push(GroupPackage {
                name,
                kind,
                requires: sid(&mut r)?,
            });
        }
        groups.push(Group {
            id,
            name,
            packages: pkgs,
        });
    }
    if r.take(3)? != b"END" || r.pos != bytes.len() {
        return None;
    }
    // Ranges must be ordered and inside the arrays they index.
    let ranges_ok = packages.iter().all(|p| {
        p.deps.windows(2).all(|w| w[0] <= w[1])
            && p.deps[DEP_KINDS] as usize <= deps.len()
            && p.files[0] <= p.files[1]
            && p.files[1] as usize <= files.len()
    });
    ranges_ok.then_some(RepoData {
        strings,
        packages,
        deps,
        files,
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::{comps, primary};

    fn sample() -> RepoData {
        let mut data = RepoData::new();
        primary::parse(primary::tests::PRIMARY.as_bytes(), &mut data).unwrap();
        comps::parse(
            &b"<comps><group><id>core</id><name>Core</name><packagelist><packagereq type=\"mandatory\">foo</packagereq></packagelist></group></comps>"[..],
            &mut data,
        )
        .unwrap();
        data
    }

    #[test]
    fn round_trips() {
        let data = sample();
        let bytes = encode(&data, "abc");
        let back = decode(&bytes, "abc").unwrap();
        assert_eq!(back.packages.len(), data.packages.len());
        assert_eq!(back.deps, data.deps);
        assert_eq!(back.files, data.files);
        assert_eq!(back.strings.get(back.packages[0].name), "foo");
        assert_eq!(back.groups[0].packages[0].kind, GroupReq::Mandatory);
        assert_eq!(encode(&back, "abc"), bytes);
    }

    #[test]
    fn damage_is_a_miss_not_a_panic() {
        let bytes = encode(&sample(), "abc");
        assert!(decode(&bytes, "other").is_none());
        for cut in [0, 5, 20, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode(&bytes[..cut], "abc").is_none(), "cut at {cut}");
        }
        // Flip bytes all over: never a panic, and any result is internally consistent.
        for i in (12..bytes.len()).step_by(7) {
            let mut b = bytes.clone();
            b[i] ^= 0xff;
            if let Some(d) = decode(&b, "abc") {
                for p in &d.packages {
                    let _ = d.strings.get(p.name);
                }
            }
        }
    }
}
