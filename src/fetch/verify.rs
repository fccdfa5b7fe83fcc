//! Checking a downloaded or cached package before anything uses it: size and sha256 against the
//! repository metadata, the header's structure, the OpenPGP header signature, and the payload digest.
//!
//! The rpm crate verifies a signature over the header only. The header carries the digest of the
//! compressed payload (PAYLOADDIGEST, tag 5092, algorithm in tag 5093), so a verified header plus
//! a matching payload digest covers the whole package: both are checked here, in one streaming
//! pass over the file. The signature is checked against the header bytes exactly as they are in
//! the file (not as the rpm crate would re-serialize them).

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use rpm::signature::Verifying;
use rpm::{IndexSignatureTag, IndexTag, PackageMetadata};
use sha2::Digest;

use super::Signature;
use super::keys::Keyring;

/// What is wrong with a package file.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("size mismatch: the repository metadata says {expected} bytes, the file has {actual}")]
    Size { expected: u64, actual: u64 },
    #[error("sha256 mismatch: the repository metadata says {expected}, the file has {actual}")]
    Checksum { expected: String, actual: String },
    #[error("not a valid RPM package: {0}")]
    Malformed(String),
    #[error("the package is not signed, and gpgcheck is on")]
    Unsigned,
    #[error(
        "signed by key {}, which is not among the trusted keys (expected {})",
        list(found),
        list(expected)
    )]
    WrongKey {
        found: Vec<String>,
        expected: Vec<String>,
    },
    #[error(
        "the signature by key {key} does not verify: the header or the signature was altered after signing ({message})"
    )]
    BadSignature { key: String, message: String },
    #[error(
        "header digest mismatch: the signature header says sha256 {expected}, the header has {actual}"
    )]
    HeaderDigest { expected: String, actual: String },
    #[error(
        "payload digest mismatch: the header says {algo} {expected}, the payload has {actual} (the payload was changed after the package was built and signed)"
    )]
    PayloadDigest {
        algo: &'static str,
        expected: String,
        actual: String,
    },
    #[error(
        "the header carries no payload digest kiln can check (PAYLOADDIGEST with sha256/sha384/sha512), so its signature would not cover the payload"
    )]
    NoPayloadDigest,
}

impl VerifyError {
    /// The file is not the one the repository metadata describes (damaged, truncated or
    /// replaced): downloading it again may help. Any other failure is a property of the package
    /// the metadata names, and would come back with every copy of it.
    pub fn is_content_mismatch(&self) -> bool {
        matches!(
            self,
            VerifyError::Size { .. } | VerifyError::Checksum { .. }
        )
    }
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

const LEAD_SIZE: usize = 96;
const HEADER_MAGIC: [u8; 3] = [0x8e, 0xad, 0xe8];
// rpm's own limits (hdrchkTags, hdrchkData).
const MAX_TAGS: u32 = 0xffff;
const MAX_DATA: u32 = 0x0fff_ffff;

/// A reader that hashes everything read through it: the whole-file sha256 comes out of the
/// same pass that parses the headers and hashes the payload.
struct Hashing<R> {
    inner: R,
    sha: sha2::Sha256,
    read: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// A payload digest the header declares, and the hasher computing it.
enum PayloadHasher {
    Sha224(sha2::Sha224),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl PayloadHasher {
    /// By OpenPGP hash algorithm id, as PAYLOADDIGESTALGO gives it.
    fn for_algo(algo: u32) -> Option<PayloadHasher> {
        Some(match algo {
            8 => PayloadHasher::Sha256(sha2::Sha256::new()),
            9 => PayloadHasher::Sha384(sha2::Sha384::new()),
            10 => PayloadHasher::Sha512(sha2::Sha512::new()),
            11 => PayloadHasher::Sha224(sha2::Sha224::new()),
            _ => return None,
        })
    }
    fn name(&self) -> &'static str {
        match self {
            PayloadHasher::Sha224(_) => "sha224",
            PayloadHasher::Sha256(_) => "sha256",
            PayloadHasher::Sha384(_) => "sha384",
            PayloadHasher::Sha512(_) => "sha512",
        }
    }
    fn update(&mut self, data: &[u8]) {
        match self {
            PayloadHasher::Sha224(h) => h.update(data),
            PayloadHasher::Sha256(h) => h.update(data),
            PayloadHasher::Sha384(h) => h.update(data),
            PayloadHasher::Sha512(h) => h.update(data),
        }
    }
    fn hex(self) -> String {
        match self {
            PayloadHasher::Sha224(h) => hex::encode(h.finalize()),
            PayloadHasher::Sha256(h) => hex::encode(h.finalize()),
            PayloadHasher::Sha384(h) => hex::encode(h.finalize()),
            PayloadHasher::Sha512(h) => hex::encode(h.finalize()),
        }
    }
}

/// The lead and both headers, read and checked for structure, and where the header starts.
struct Meta {
    bytes: Vec<u8>,
    header_start: usize,
}

/// Verifies the package at `path`: its size (when `size` is not 0) and sha256 against the
/// repository metadata, its header digest and payload digest, and with `keys` its signature.
pub fn verify_package(
    path: &Path,
    sha256: &str,
    size: u64,
    keys: Option<&Keyring>,
) -> Result<Signature, VerifyError> {
    let io_err = |source| VerifyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_err)?;
    let actual = file.metadata().map_err(io_err)?.len();
    if size != 0 && actual != size {
        return Err(VerifyError::Size {
            expected: size,
            actual,
        });
    }
    let mut r = Hashing {
        inner: io::BufReader::with_capacity(1 << 18, file),
        sha: sha2::Sha256::new(),
        read: 0,
    };

    // Parse what can be parsed; whatever fails, the whole file is still hashed, since a file
    // that is not the one the metadata names is reported as such first.
    let parsed = read_meta(&mut r).and_then(|meta| {
        let md = PackageMetadata::parse(&mut &meta.bytes[..])
            .map_err(|e| format!("cannot parse the headers: {e}"))?;
        Ok((meta, md))
    });
    let mut hashers = Vec::new();
    if let Ok((_, md)) = &parsed {
        hashers = payload_hashers(md);
    }
    let mut buf = vec![0u8; 1 << 18];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(e)),
        };
        for (_, h) in hashers.iter_mut() {
            h.update(&buf[..n]);
        }
    }
    let whole = hex::encode(r.sha.finalize());
    if !whole.eq_ignore_ascii_case(sha256) {
        return Err(VerifyError::Checksum {
            expected: sha256.to_string(),
            actual: whole,
        });
    }
    let (meta, md) = parsed.map_err(VerifyError::Malformed)?;
    let header = &meta.bytes[meta.header_start..];

    let signature = match keys {
        Some(keys) => check_signature(&md, header, keys)?,
        None => Signature::NotChecked,
    };

    // The signature header's digest of the header: rpm -K checks it, and so does kiln.
    if let Ok(expected) = md
        .signature
        .get_entry_data_as_string(IndexSignatureTag::RPMSIGTAG_SHA256)
    {
        let actual = hex::encode(sha2::Sha256::digest(header));
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(VerifyError::HeaderDigest {
                expected: expected.to_string(),
                actual,
            });
        }
    }

    let checked = !hashers.is_empty();
    for (expected, h) in hashers {
        let algo = h.name();
        let actual = h.hex();
        if !actual.eq_ignore_ascii_case(&expected) {
            return Err(VerifyError::PayloadDigest {
                algo,
                expected,
                actual,
            });
        }
    }
    // Without a payload digest a header signature says nothing about the payload.
    if keys.is_some() && !checked {
        return Err(VerifyError::NoPayloadDigest);
    }
    Ok(signature)
}

/// The payload digests the header declares that kiln can compute, with their expected values.
fn payload_hashers(md: &PackageMetadata) -> Vec<(String, PayloadHasher)> {
    let mut out = Vec::new();
    if let Ok(expected) = md
        .header
        .get_entry_data_as_string(IndexTag::RPMTAG_PAYLOADSHA256)
    {
        // v6 packages leave the algorithm out: it is sha256 there.
        let algo = md
            .header
            .get_entry_data_as_u32(IndexTag::RPMTAG_PAYLOADSHA256ALGO)
            .unwrap_or(8);
        if let Some(h) = PayloadHasher::for_algo(algo) {
            out.push((expected.to_string(), h));
        }
    }
    if let Ok(expected) = md
        .header
        .get_entry_data_as_string(IndexTag::RPMTAG_PAYLOAD_SHA512)
    {
        out.push((
            expected.to_string(),
            PayloadHasher::Sha512(sha2::Sha512::new()),
        ));
    }
    out
}

/// At least one signature must be by a trusted key and verify over the header bytes.
fn check_signature(
    md: &PackageMetadata,
    header: &[u8],
    keys: &Keyring,
) -> Result<Signature, VerifyError> {
    let raw = md
        .raw_signatures()
        .map_err(|e| VerifyError::Malformed(format!("cannot read its signatures: {e}")))?;
    if raw.is_empty() {
        return Err(VerifyError::Unsigned);
    }
    let infos = md
        .signatures()
        .map_err(|e| VerifyError::Malformed(format!("cannot read its signatures: {e}")))?;
    let mut found = Vec::new();
    let mut bad = None;
    for (sig, info) in raw.iter().zip(&infos) {
        let issuer = info.fingerprint().or(info.key_id()).map(str::to_lowercase);
        let key = match &issuer {
            Some(i) => match keys.keys.iter().find(|k| k.matches(i)) {
                Some(k) => k.fingerprint.clone(),
                None => {
                    found.push(i.clone());
                    continue;
                }
            },
            // No issuer in the signature: the verifier tries every key.
            None => "(no issuer)".to_string(),
        };
        match keys.verifier.verify(header, sig) {
            Ok(()) => return Ok(Signature::Verified { key }),
            Err(e) => {
                if issuer.is_none() {
                    found.push("(signature names no issuer)".into());
                } else {
                    // The OpenPGP library's message can run over several lines (an
                    // assertion's left and right); the first one says what failed.
                    let message = e.to_string();
                    let message = message.lines().next().unwrap_or_default().trim();
                    bad = Some(VerifyError::BadSignature {
                        key,
                        message: message.trim_end_matches([':', ' ']).to_string(),
                    });
                }
            }
        }
    }
    Err(bad.unwrap_or_else(|| VerifyError::WrongKey {
        found,
        expected: keys.primaries(),
    }))
}

fn read_meta(r: &mut impl Read) -> Result<Meta, String> {
    let mut bytes = vec![0u8; LEAD_SIZE];
    r.read_exact(&mut bytes)
        .map_err(|e| format!("the lead: {e}"))?;
    if bytes[..4] != [0xed, 0xab, 0xee, 0xdb] {
        return Err("no RPM lead magic (not an RPM file)".into());
    }
    let dl = read_header(r, &mut bytes, "the signature header")?;
    // The signature header is padded to a multiple of 8 bytes.
    let pad = (8 - dl % 8) % 8;
    let mut padding = [0u8; 8];
    r.read_exact(&mut padding[..pad])
        .map_err(|e| format!("the signature header padding: {e}"))?;
    bytes.extend_from_slice(&padding[..pad]);
    let header_start = bytes.len();
    read_header(r, &mut bytes, "the header")?;
    Ok(Meta {
        bytes,
        header_start,
    })
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Reads one header structure onto `out` and checks it: every index entry's data must lie
/// inside the data store. The rpm crate trusts these offsets (and panics on bad ones), so it
/// only ever sees headers that passed. Returns the data store's length.
fn read_header(r: &mut impl Read, out: &mut Vec<u8>, what: &str) -> Result<usize, String> {
    let mut intro = [0u8; 16];
    r.read_exact(&mut intro)
        .map_err(|e| format!("{what}: {e}"))?;
    if intro[..3] != HEADER_MAGIC || intro[3] != 1 {
        return Err(format!("{what}: bad magic"));
    }
    let (il, dl) = (be32(&intro[8..12]), be32(&intro[12..16]));
    if il == 0 || il > MAX_TAGS || dl > MAX_DATA {
        return Err(format!(
            "{what}: implausible size ({il} entries, {dl} bytes)"
        ));
    }
    let len = il as usize * 16 + dl as usize;
    let mut body = Vec::new();
    // `take` + `read_to_end` grows with the data that is really there, so a lying length
    // cannot make kiln allocate 256 MiB up front.
    r.take(len as u64)
        .read_to_end(&mut body)
        .map_err(|e| format!("{what}: {e}"))?;
    if body.len() != len {
        return Err(format!("{what}: truncated"));
    }
    let (index, data) = body.split_at(il as usize * 16);
    for e in index.chunks_exact(16) {
        let (tag, ty, off, count) = (be32(&e[0..]), be32(&e[4..]), be32(&e[8..]), be32(&e[12..]));
        let bad = |why: &str| format!("{what}: tag {tag}: {why}");
        if off as usize > data.len() {
            return Err(bad("data offset outside the header"));
        }
        let rest = &data[off as usize..];
        let fixed = |unit: usize| {
            (count as usize)
                .checked_mul(unit)
                .filter(|&n| n <= rest.len())
                .map(|_| ())
                .ok_or_else(|| bad("data runs past the end of the header"))
        };
        match ty {
            0 => {}
            1 | 2 | 7 => fixed(1)?,
            3 => fixed(2)?,
            4 => fixed(4)?,
            5 => fixed(8)?,
            6 => {
                if !rest.contains(&0) {
                    return Err(bad("unterminated string"));
                }
            }
            8 | 9 => {
                let mut pos = rest;
                for _ in 0..count {
                    let nul = pos
                        .iter()
                        .position(|&b| b == 0)
                        .ok_or_else(|| bad("unterminated string"))?;
                    pos = &pos[nul + 1..];
                }
            }
            _ => return Err(bad(&format!("unknown data type {ty}"))),
        }
    }
    out.extend_from_slice(&intro);
    out.extend_from_slice(&body);
    Ok(dl as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small unsigned package built with the rpm crate (zstd payload, with PAYLOADDIGEST).
    fn package() -> Vec<u8> {
        let pkg = rpm::PackageBuilder::new("t", "1.0", "MIT", "noarch", "test")
            .with_file_contents(vec![7u8; 5000], rpm::FileOptions::new("/usr/share/t/data"))
            .unwrap()
            .build()
            .unwrap();
        let mut out = Vec::new();
        pkg.write(&mut out).unwrap();
        out
    }

    fn sha(b: &[u8]) -> String {
        hex::encode(sha2::Sha256::digest(b))
    }

    fn verify_bytes(bytes: &[u8], sha256: &str, size: u64) -> Result<Signature, VerifyError> {
        let dir = tempfile::tempdir().unwrap();
        verify_in(dir.path(), bytes, sha256, size)
    }

    fn verify_in(
        dir: &Path,
        bytes: &[u8],
        sha256: &str,
        size: u64,
    ) -> Result<Signature, VerifyError> {
        let path = dir.join("p.rpm");
        std::fs::write(&path, bytes).unwrap();
        verify_package(&path, sha256, size, None)
    }

    #[test]
    fn a_good_package_passes_unchecked() {
        let p = package();
        let s = verify_bytes(&p, &sha(&p), p.len() as u64).unwrap();
        assert!(matches!(s, Signature::NotChecked));
        // Size 0 means unknown.
        assert!(verify_bytes(&p, &sha(&p), 0).is_ok());
    }

    #[test]
    fn size_and_checksum_mismatches() {
        let p = package();
        let e = verify_bytes(&p, &sha(&p), p.len() as u64 + 1).unwrap_err();
        assert!(matches!(e, VerifyError::Size { .. }), "{e}");
        assert!(e.is_content_mismatch());
        let e = verify_bytes(&p, &sha(b"other"), 0).unwrap_err();
        assert!(matches!(e, VerifyError::Checksum { .. }), "{e}");
        assert!(e.is_content_mismatch());
    }

    #[test]
    fn a_changed_payload_is_caught_by_the_payload_digest() {
        let mut p = package();
        let last = p.len() - 10;
        p[last] ^= 0x55;
        // Metadata made to match the altered file: only the payload digest notices.
        let e = verify_bytes(&p, &sha(&p), 0).unwrap_err();
        assert!(matches!(e, VerifyError::PayloadDigest { .. }), "{e}");
        assert!(!e.is_content_mismatch());
        assert!(e.to_string().contains("payload digest mismatch"), "{e}");
    }

    #[test]
    fn damaged_headers_are_errors_not_panics() {
        let p = package();
        let header_end = {
            let mut r = &p[..];
            read_meta(&mut r).unwrap().bytes.len()
        };
        let dir = tempfile::tempdir().unwrap();
        for i in 0..header_end {
            let mut b = p.clone();
            b[i] ^= [0xff, 0x80, 0x01][i % 3];
            // Whatever happens, it must be an answer, not a panic.
            let _ = verify_in(dir.path(), &b, &sha(&b), 0);
        }
        for cut in [0, 10, 96, 100, 120, header_end - 1, header_end + 1] {
            let b = &p[..cut.min(p.len())];
            assert!(verify_bytes(b, &sha(b), 0).is_err(), "cut at {cut}");
        }
    }
}
