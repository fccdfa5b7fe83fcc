//! The OpenPGP public keys package signatures must verify against: read from files or URLs
//! (remote ones kept in the cache), loaded into the rpm crate's verifier, identified by fingerprint.

use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::repo::{cache, transport};

/// How a key could not be obtained or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key {key}: cannot read it: {message}")]
    Read { key: String, message: String },
    #[error("key {key}: unsupported location (use a path, file://, http:// or https://)")]
    Scheme { key: String },
    #[error("key {key}: not in the key cache ({}), and offline mode forbids downloading it", path.display())]
    Offline { key: String, path: PathBuf },
    #[error("key {key}: not an armored OpenPGP public key kiln can use: {message}")]
    Parse { key: String, message: String },
}

/// One primary key or subkey found in a key file.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    /// Lowercase hex fingerprint.
    pub fingerprint: String,
    /// Lowercase hex 64-bit key id.
    pub key_id: String,
    /// Fingerprint of the primary key this one belongs to (itself for a primary key).
    pub primary: String,
}

impl KeyInfo {
    /// Whether a signature's issuer (a fingerprint or a key id, hex) names this key.
    pub fn matches(&self, issuer: &str) -> bool {
        issuer.eq_ignore_ascii_case(&self.fingerprint) || issuer.eq_ignore_ascii_case(&self.key_id)
    }
}

/// The keys one set of key files holds.
pub struct Keyring {
    pub verifier: rpm::signature::pgp::Verifier,
    pub keys: Vec<KeyInfo>,
}

impl Keyring {
    /// The primary keys' fingerprints, for messages.
    pub fn primaries(&self) -> Vec<String> {
        let mut v: Vec<String> = self.keys.iter().map(|k| k.primary.clone()).collect();
        v.dedup();
        v
    }
}

/// Where a key is read from, once its location has been understood.
enum Source {
    Local(PathBuf),
    Remote(String),
}

fn source(key: &str) -> Result<Source, KeyError> {
    if let Some(p) = transport::file_path(key) {
        Ok(Source::Local(p))
    } else if transport::is_remote(key) {
        Ok(Source::Remote(key.to_string()))
    } else if key.contains("://") {
        Err(KeyError::Scheme { key: key.into() })
    } else {
        Ok(Source::Local(PathBuf::from(key)))
    }
}

/// Where a downloaded key is kept: keys rarely change, and like dnf (which imports a key once)
/// kiln does not ask the server again, so a fully cached build needs no network.
fn cached_key_path(cache_dir: &Path, url: &str) -> PathBuf {
    let h = hex::encode(sha2::Sha256::digest(url.as_bytes()));
    cache_dir.join("keys").join(format!("{}.asc", &h[..32]))
}

async fn read_key(
    key: &str,
    cache_dir: &Path,
    offline: bool,
    client: &reqwest::Client,
) -> Result<Vec<u8>, KeyError> {
    let read_err = |message: String| KeyError::Read {
        key: key.into(),
        message,
    };
    match source(key)? {
        Source::Local(path) => tokio::fs::read(&path)
            .await
            .map_err(|e| read_err(format!("{}: {e}", path.display()))),
        Source::Remote(url) => {
            let cached = cached_key_path(cache_dir, &url);
            if let Ok(bytes) = tokio::fs::read(&cached).await {
                return Ok(bytes);
            }
            if offline {
                return Err(KeyError::Offline {
                    key: key.into(),
                    path: cached,
                });
            }
            let resp = client
                .get(&url)
                .send()
                .await
                .map_err(|e| read_err(super::download::error_chain(&e)))?;
            if !resp.status().is_success() {
                return Err(read_err(format!("server answered {}", resp.status())));
            }
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| read_err(super::download::error_chain(&e)))?
                .to_vec();
            // Only a key that parses is remembered (the caller parses it before using it; a
            // bad download must not stick), so the cache write happens after `parse`.
            parse(key, &bytes)?;
            let _ = cache::write_atomic(&cached, &bytes);
            Ok(bytes)
        }
    }
}

/// Reads and parses every key file of one repository into one keyring.
pub async fn load(
    keys: &[String],
    cache_dir: &Path,
    offline: bool,
    client: &reqwest::Client,
) -> Result<Keyring, KeyError> {
    let mut verifier = rpm::signature::pgp::Verifier::new();
    let mut infos = Vec::new();
    for key in keys {
        let bytes = read_key(key, cache_dir, offline, client).await?;
        infos.extend(parse(key, &bytes)?);
        verifier
            .load_from_asc_bytes(&bytes)
            .map_err(|e| KeyError::Parse {
                key: key.clone(),
                message: e.to_string(),
            })?;
    }
    Ok(Keyring {
        verifier,
        keys: infos,
    })
}

/// The keys (primary and subkeys) in an armored key file, with their fingerprints.
pub fn parse(key: &str, armored: &[u8]) -> Result<Vec<KeyInfo>, KeyError> {
    let perr = |message: String| KeyError::Parse {
        key: key.into(),
        message,
    };
    let text = std::str::from_utf8(armored).map_err(|e| perr(format!("not text: {e}")))?;
    let blocks = dearmor(text).map_err(perr)?;
    if blocks.is_empty() {
        return Err(perr("no `BEGIN PGP PUBLIC KEY BLOCK` armor".into()));
    }
    let mut out = Vec::new();
    for block in blocks {
        let mut primary = String::new();
        for (tag, body) in packets(&block).map_err(perr)? {
            if tag != 6 && tag != 14 {
                continue;
            }
            let (fingerprint, key_id) = fingerprint(body).map_err(perr)?;
            if tag == 6 {
                primary = fingerprint.clone();
            }
            out.push(KeyInfo {
                fingerprint,
                key_id,
                primary: primary.clone(),
            });
        }
    }
    if out.is_empty() {
        return Err(perr("the armor holds no public key packet".into()));
    }
    Ok(out)
}

/// The binary contents of every `PGP PUBLIC KEY BLOCK` in an armored text.
fn dearmor(text: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if line != "-----BEGIN PGP PUBLIC KEY BLOCK-----" {
            continue;
        }
        // Armor headers (`Version: …`) end at the first empty line.
        let mut in_headers = true;
        let mut b64 = String::new();
        let mut ended = false;
        for line in lines.by_ref() {
            if line.starts_with("-----END PGP PUBLIC KEY BLOCK") {
                ended = true;
                break;
            }
            if in_headers {
                if line.is_empty() {
                    in_headers = false;
                } else if !line.contains(':') {
                    // No headers at all: this is already data.
                    in_headers = false;
                    b64.push_str(line);
                }
                continue;
            }
            if line.starts_with('=') {
                continue; // the CRC24 checksum line
            }
            b64.push_str(line);
        }
        if !ended {
            return Err("unterminated armor block".into());
        }
        blocks.push(base64_decode(&b64)?);
    }
    Ok(blocks)
}

fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return Err(format!("invalid base64 character `{}`", c as char)),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// OpenPGP packets (RFC 9580 §4.2): (tag, body).
fn packets(mut data: &[u8]) -> Result<Vec<(u8, &[u8])>, String> {
    let mut out = Vec::new();
    let short = || "truncated OpenPGP packet".to_string();
    while let Some(&first) = data.first() {
        if first & 0x80 == 0 {
            return Err("not an OpenPGP packet stream".into());
        }
        let (tag, len, hdr): (u8, usize, usize) = if first & 0x40 != 0 {
            let tag = first & 0x3f;
            let o = *data.get(1).ok_or_else(short)? as usize;
            match o {
                0..=191 => (tag, o, 2),
                192..=223 => {
                    let o2 = *data.get(2).ok_or_else(short)? as usize;
                    (tag, ((o - 192) << 8) + o2 + 192, 3)
                }
                255 => {
                    let b = data.get(2..6).ok_or_else(short)?;
                    (
                        tag,
                        u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize,
                        6,
                    )
                }
                // Partial body lengths are only allowed for data packets, never in a key.
                _ => return Err("partial-length packet in a key".into()),
            }
        } else {
            let tag = (first >> 2) & 0x0f;
            match first & 3 {
                0 => (tag, *data.get(1).ok_or_else(short)? as usize, 2),
                1 => {
                    let b = data.get(1..3).ok_or_else(short)?;
                    (tag, u16::from_be_bytes([b[0], b[1]]) as usize, 3)
                }
                2 => {
                    let b = data.get(1..5).ok_or_else(short)?;
                    (
                        tag,
                        u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize,
                        5,
                    )
                }
                _ => (tag, data.len() - 1, 1),
            }
        };
        let end = hdr.checked_add(len).ok_or_else(short)?;
        let body = data.get(hdr..end).ok_or_else(short)?;
        out.push((tag, body));
        data = &data[end..];
    }
    Ok(out)
}

/// Fingerprint and key id of a public-key packet body (v4: SHA-1, v5 and v6: SHA-256).
fn fingerprint(body: &[u8]) -> Result<(String, String), String> {
    match body.first() {
        Some(4) => {
            let len = u16::try_from(body.len()).map_err(|_| "key packet too long")?;
            let mut data = Vec::with_capacity(body.len() + 3);
            data.push(0x99);
            data.extend_from_slice(&len.to_be_bytes());
            data.extend_from_slice(body);
            let fp = sha1(&data);
            Ok((hex::encode(fp), hex::encode(&fp[12..])))
        }
        Some(&v @ (5 | 6)) => {
            let len = u32::try_from(body.len()).map_err(|_| "key packet too long")?;
            let mut h = sha2::Sha256::new();
            h.update([if v == 6 { 0x9b } else { 0x9a }]);
            h.update(len.to_be_bytes());
            h.update(body);
            let fp = h.finalize();
            Ok((hex::encode(fp), hex::encode(&fp[..8])))
        }
        Some(v) => Err(format!("unsupported key packet version {v}")),
        None => Err("empty key packet".into()),
    }
}

/// SHA-1 (FIPS 180-4), only to compute v4 key fingerprints for matching and messages: signature
/// verification itself is the rpm crate's, and nothing here is a security decision.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xefcd_ab89,
        0x98ba_dcfe,
        0x1032_5476,
        0xc3d2_e1f0,
    ];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (wi, c) in w.iter_mut().zip(block.chunks_exact(4)) {
            *wi = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5a82_7999),
                20..=39 => (b ^ c ^ d, 0x6ed9_eba1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8f1b_bcdc),
                _ => (b ^ c ^ d, 0xca62_c1d6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (hv, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *hv = hv.wrapping_add(v);
        }
    }
    let mut out = [0u8; 20];
    for (o, v) in out.chunks_exact_mut(4).zip(h) {
        o.copy_from_slice(&v.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_vectors() {
        assert_eq!(
            hex::encode(sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex::encode(sha1(b"")),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
        let long = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        assert_eq!(
            hex::encode(sha1(long)),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVs\nbG8h").unwrap(), b"hello!");
        assert!(base64_decode("a*b").is_err());
    }

    #[test]
    fn bad_armor_is_an_error_not_a_panic() {
        for text in [
            "",
            "hello",
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQ==\n",
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxsBN\n-----END PGP PUBLIC KEY BLOCK-----\n",
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n/////w==\n-----END PGP PUBLIC KEY BLOCK-----\n",
        ] {
            assert!(parse("k", text.as_bytes()).is_err(), "{text:?}");
        }
    }

    #[test]
    fn packets_and_fingerprints() {
        // A v4 Ed25519 public-key packet body; gpg's fingerprints of real keys are compared
        // with these in tests/fetch.rs.
        let body = hex::decode(
            "045374e8e21609092b06010401da470f01010740b7d9e86a9d2f8ab53f1a84ecd0e8d35e\
             0e0db2dd95c0abe1e12bd6dc5cf5ef41",
        )
        .unwrap();
        // The same packet with a new-format header (tag 6) and an old-format one (tag 14).
        let mut stream = vec![0xc6, body.len() as u8];
        stream.extend_from_slice(&body);
        stream.extend_from_slice(&[0xb8, body.len() as u8]);
        stream.extend_from_slice(&body);
        let p = packets(&stream).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].0, p[1].0), (6, 14));
        assert_eq!(p[0].1, &body[..]);
        let (fp, id) = fingerprint(&body).unwrap();
        assert_eq!(fp.len(), 40);
        assert_eq!(id, fp[24..]);
        // Truncated streams are errors.
        assert!(packets(&stream[..10]).is_err());
        assert!(packets(&[0x00]).is_err());
        assert!(fingerprint(&[3, 1, 2]).is_err());
    }
}
