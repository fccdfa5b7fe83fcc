//! RPM headers as raw bytes: reading a package's two headers and building the header rpm stores
//! for the installed package (its signed region verbatim, install-time tags appended).

use std::io::{self, Read};

// Entry types (rpm's rpmTagType).
const T_NULL: u32 = 0;
const T_CHAR: u32 = 1;
const T_INT8: u32 = 2;
const T_INT16: u32 = 3;
const T_INT32: u32 = 4;
const T_INT64: u32 = 5;
const T_STRING: u32 = 6;
const T_BIN: u32 = 7;
pub(super) const T_STRING_ARRAY: u32 = 8;
const T_I18NSTRING: u32 = 9;

// Tags used here (rpmtag.h).
const HEADERIMMUTABLE: u32 = 63;
const SIGSIZE: u32 = 257;
const SIGPGP: u32 = 259;
const SIGMD5: u32 = 261;
const SIGGPG: u32 = 262;
const DSAHEADER: u32 = 267;
const RSAHEADER: u32 = 268;
const SHA1HEADER: u32 = 269;
const LONGSIGSIZE: u32 = 270;
const LONGARCHIVESIZE: u32 = 271;
const SHA256HEADER: u32 = 273;
const VERITYSIGNATURES: u32 = 276;
const VERITYSIGNATUREALGO: u32 = 277;
const OPENPGP: u32 = 278;
const SHA3_256HEADER: u32 = 279;
pub(super) const NAME: u32 = 1000;
const VERSION: u32 = 1001;
const RELEASE: u32 = 1002;
const EPOCH: u32 = 1003;
const INSTALLTIME: u32 = 1008;
const ARCH: u32 = 1022;
const OLDFILENAMES: u32 = 1027;
const FILESTATES: u32 = 1029;
const SOURCERPM: u32 = 1044;
const ARCHIVESIZE: u32 = 1046;
const PREFIXES: u32 = 1098;
const INSTPREFIXES: u32 = 1099;
const SOURCEPACKAGE: u32 = 1106;
pub(super) const BASENAMES: u32 = 1117;
const INSTALLCOLOR: u32 = 1127;
const INSTALLTID: u32 = 1128;
const FILESIGNATURES: u32 = 5090;
const FILESIGNATURELENGTH: u32 = 5091;
const RPMFORMAT: u32 = 5114;
const PACKAGEDIGESTS: u32 = 5118;
const PACKAGEDIGESTALGOS: u32 = 5119;

// Signature header tags (RPMSIGTAG_*) that differ from their main-header twins.
const SIGTAG_SIZE: u32 = 1000;
const SIGTAG_PGP: u32 = 1002;
const SIGTAG_MD5: u32 = 1004;
const SIGTAG_GPG: u32 = 1005;
const SIGTAG_PAYLOADSIZE: u32 = 1007;
const SIGTAG_FILESIGNATURES: u32 = 274;
const SIGTAG_FILESIGNATURELENGTH: u32 = 275;

/// rpm's `HEADER_TAGBASE`: signature tags at or above it are the legacy ones, ignored on v6.
const HEADER_TAGBASE: u32 = 1000;

const LEAD_SIZE: usize = 96;
const LEAD_MAGIC: [u8; 4] = [0xed, 0xab, 0xee, 0xdb];
const HEADER_MAGIC: [u8; 4] = [0x8e, 0xad, 0xe8, 0x01];
/// rpm's limits (`hdrchkTags`, `hdrchkData`): anything larger is a corrupt header.
const MAX_ENTRIES: u32 = 0xffff;
const MAX_DATA: u32 = 0x0fff_ffff;
const ENTRY_SIZE: usize = 16;
/// The region trailer: one index entry's worth of data at the end of the immutable region.
const REGION_TRAILER: usize = 16;

/// One index entry, in host order.
#[derive(Clone, Copy, Debug)]
pub(super) struct Entry {
    pub tag: u32,
    pub ty: u32,
    pub offset: usize,
    pub count: u32,
    /// Length of the entry's data in bytes (computed and checked when parsing).
    pub len: usize,
}

/// A parsed header blob: `il`, `dl`, the index, the data (no magic), borrowed.
pub(super) struct Header<'a> {
    pub entries: Vec<Entry>,
    pub data: &'a [u8],
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Size of one element of a fixed-size type, for alignment and lengths.
fn type_size(ty: u32) -> Option<usize> {
    match ty {
        T_NULL => Some(0),
        T_CHAR | T_INT8 | T_BIN => Some(1),
        T_INT16 => Some(2),
        T_INT32 => Some(4),
        T_INT64 => Some(8),
        _ => None,
    }
}

/// Padding rpm inserts before data of `ty` at offset `at` (`alignDiff`).
fn align_pad(ty: u32, at: usize) -> usize {
    match type_size(ty) {
        Some(size) if size > 1 => (size - at % size) % size,
        _ => 0,
    }
}

impl<'a> Header<'a> {
    /// Parses a header blob as rpm stores it in the database (and as it follows the 8-byte magic
    /// in a package): two big-endian counts, the index, the data. Every entry's data is checked
    /// to lie within the data area.
    pub fn parse(blob: &'a [u8]) -> Result<Self, String> {
        if blob.len() < 8 {
            return Err("header too short".into());
        }
        let il = be32(blob, 0);
        let dl = be32(blob, 4);
        if il == 0 || il > MAX_ENTRIES || dl > MAX_DATA {
            return Err(format!(
                "header counts out of range ({il} entries, {dl} bytes)"
            ));
        }
        let index_end = 8 + il as usize * ENTRY_SIZE;
        if blob.len() != index_end + dl as usize {
            return Err(format!(
                "header size {} does not match its counts ({il} entries, {dl} bytes)",
                blob.len()
            ));
        }
        let data = &blob[index_end..];
        let mut entries = Vec::with_capacity(il as usize);
        for i in 0..il as usize {
            let at = 8 + i * ENTRY_SIZE;
            let (tag, ty, offset, count) = (
                be32(blob, at),
                be32(blob, at + 4),
                be32(blob, at + 8),
                be32(blob, at + 12),
            );
            if ty > T_I18NSTRING {
                return Err(format!("tag {tag}: unknown type {ty}"));
            }
            let offset = offset as usize;
            if offset > data.len() {
                return Err(format!("tag {tag}: data offset {offset} out of range"));
            }
            let len = data_len(ty, count, &data[offset..])
                .ok_or_else(|| format!("tag {tag}: data does not fit in the header"))?;
            entries.push(Entry {
                tag,
                ty,
                offset,
                count,
                len,
            });
        }
        Ok(Header { entries, data })
    }

    pub fn find(&self, tag: u32) -> Option<&Entry> {
        self.entries.iter().find(|e| e.tag == tag)
    }

    pub fn has(&self, tag: u32) -> bool {
        self.find(tag).is_some()
    }

    pub fn raw(&self, e: &Entry) -> &'a [u8] {
        &self.data[e.offset..e.offset + e.len]
    }

    /// The strings of a string-class entry (one for STRING, all for the array types).
    pub fn strings_of(&self, e: &Entry) -> Vec<&'a [u8]> {
        match e.ty {
            T_STRING | T_STRING_ARRAY | T_I18NSTRING => {
                let raw = self.raw(e);
                // The data ends with a NUL (checked by data_len); split drops the empty tail.
                raw[..raw.len().saturating_sub(1)]
                    .split(|&b| b == 0)
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    /// A single string as rpm's headerGet returns it: the string of a STRING entry, the first
    /// (untranslated) string of an I18NSTRING or STRING_ARRAY entry.
    pub fn string(&self, tag: u32) -> Option<&'a [u8]> {
        self.find(tag)
            .and_then(|e| self.strings_of(e).into_iter().next())
    }

    pub fn u32s(&self, tag: u32) -> Option<Vec<u32>> {
        let e = self.find(tag)?;
        (e.ty == T_INT32).then(|| self.raw(e).chunks_exact(4).map(|c| be32(c, 0)).collect())
    }

    /// The elements of an entry as rpm's `td2key` turns them into index keys: each string, each
    /// number in host byte order (the database is read on the image's own machine; x86_64 and
    /// aarch64 are both little-endian), binary data as one key.
    pub fn keys_of(&self, e: &Entry) -> Vec<Vec<u8>> {
        let raw = self.raw(e);
        match e.ty {
            T_STRING | T_STRING_ARRAY => {
                self.strings_of(e).into_iter().map(<[u8]>::to_vec).collect()
            }
            T_I18NSTRING => self
                .strings_of(e)
                .into_iter()
                .take(1)
                .map(<[u8]>::to_vec)
                .collect(),
            T_BIN => vec![raw.to_vec()],
            T_CHAR | T_INT8 => raw.chunks_exact(1).map(<[u8]>::to_vec).collect(),
            T_INT16 => raw
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]).to_le_bytes().to_vec())
                .collect(),
            T_INT32 => raw
                .chunks_exact(4)
                .map(|c| be32(c, 0).to_le_bytes().to_vec())
                .collect(),
            T_INT64 => raw
                .chunks_exact(8)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    u64::from_be_bytes(b).to_le_bytes().to_vec()
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// `name-[epoch:]version-release[.arch]`, as rpm prints `%{NEVRA}`.
    pub fn nevra(&self) -> Option<String> {
        let s = |tag| {
            self.string(tag)
                .map(|b| String::from_utf8_lossy(b).into_owned())
        };
        let mut out = format!("{}-", s(NAME)?);
        if let Some(epoch) = self.u32s(EPOCH).and_then(|v| v.first().copied()) {
            out.push_str(&format!("{epoch}:"));
        }
        out.push_str(&format!("{}-{}", s(VERSION)?, s(RELEASE)?));
        if let Some(arch) = s(ARCH) {
            out.push_str(&format!(".{arch}"));
        }
        Some(out)
    }
}

/// Length of an entry's data (`dataLength`), or None when it runs past `rest`.
fn data_len(ty: u32, count: u32, rest: &[u8]) -> Option<usize> {
    match ty {
        T_STRING | T_STRING_ARRAY | T_I18NSTRING => {
            // A STRING entry holds exactly one string whatever its count says.
            let n = if ty == T_STRING { 1 } else { count };
            if n == 0 {
                return None;
            }
            let mut len = 0;
            for _ in 0..n {
                let nul = rest[len..].iter().position(|&b| b == 0)?;
                len += nul + 1;
            }
            Some(len)
        }
        _ => {
            let len = type_size(ty)?.checked_mul(count as usize)?;
            (len <= rest.len()).then_some(len)
        }
    }
}

/// A package file's two headers, as bytes: the signature header and the main header blob
/// (without their 8-byte magic), plus the file's SHA-256 and SHA-512 (rpm 6 records both).
pub(super) struct PackageHeaders {
    pub signature: Vec<u8>,
    pub main: Vec<u8>,
    pub sha256: String,
    pub sha512: String,
}

/// A reader that hashes everything read through it.
struct Hashing<R> {
    inner: R,
    sha256: sha2::Sha256,
    sha512: sha2::Sha512,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.read(buf)?;
        self.sha256.update(&buf[..n]);
        self.sha512.update(&buf[..n]);
        Ok(n)
    }
}

/// Why a package file could not be read: the file itself (I/O) or its content.
pub(super) enum ReadError {
    Io(io::Error),
    Format(String),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ReadError::Format("file ends inside its headers".into())
        } else {
            ReadError::Io(e)
        }
    }
}

/// Reads one header after its magic; returns the blob (counts, index, data).
fn read_header(r: &mut impl Read, what: &str) -> Result<Vec<u8>, ReadError> {
    let mut intro = [0u8; 16];
    r.read_exact(&mut intro)?;
    if intro[..4] != HEADER_MAGIC {
        return Err(ReadError::Format(format!("bad {what} header magic")));
    }
    let (il, dl) = (be32(&intro, 8), be32(&intro, 12));
    if il == 0 || il > MAX_ENTRIES || dl > MAX_DATA {
        return Err(ReadError::Format(format!(
            "{what} header counts out of range ({il} entries, {dl} bytes)"
        )));
    }
    let mut blob = vec![0u8; 8 + il as usize * ENTRY_SIZE + dl as usize];
    blob[..8].copy_from_slice(&intro[8..]);
    r.read_exact(&mut blob[8..])?;
    Ok(blob)
}

/// Reads a package file: the lead, the signature header (and its padding), the main header,
/// then the payload only to finish the file digests.
pub(super) fn read_package(file: impl Read) -> Result<PackageHeaders, ReadError> {
    use sha2::Digest;
    let mut r = Hashing {
        inner: io::BufReader::with_capacity(1 << 16, file),
        sha256: sha2::Sha256::new(),
        sha512: sha2::Sha512::new(),
    };
    let mut lead = [0u8; LEAD_SIZE];
    r.read_exact(&mut lead)?;
    if lead[..4] != LEAD_MAGIC {
        return Err(ReadError::Format(
            "not an rpm package (bad lead magic)".into(),
        ));
    }
    let signature = read_header(&mut r, "signature")?;
    // The signature header is padded to 8 bytes (magic included) before the main header.
    let pad = (8 - (8 + signature.len()) % 8) % 8;
    r.read_exact(&mut [0u8; 8][..pad])?;
    let main = read_header(&mut r, "main")?;
    io::copy(&mut r, &mut io::sink()).map_err(ReadError::Io)?;
    Ok(PackageHeaders {
        signature,
        main,
        sha256: hex::encode(r.sha256.finalize()),
        sha512: hex::encode(r.sha512.finalize()),
    })
}

/// What rpm adds to a header when it installs the package (psm.c `dbAdd`).
pub(super) struct InstallInfo<'a> {
    /// rpm's FILESTATES codes, one per file.
    pub file_states: &'a [u8],
    pub install_tid: u32,
    pub install_time: u32,
    pub install_color: u32,
}

/// A tag added outside the immutable region: its type, count and big-endian data.
struct Added {
    tag: u32,
    ty: u32,
    count: u32,
    data: Vec<u8>,
}

impl Added {
    fn u32s(tag: u32, v: &[u32]) -> Self {
        Added {
            tag,
            ty: T_INT32,
            count: v.len() as u32,
            data: v.iter().flat_map(|x| x.to_be_bytes()).collect(),
        }
    }

    fn strings(tag: u32, ty: u32, v: &[&[u8]]) -> Self {
        let mut data = Vec::new();
        for s in v {
            data.extend_from_slice(s);
            data.push(0);
        }
        Added {
            tag,
            ty,
            count: v.len() as u32,
            data,
        }
    }
}

/// Signature tags rpm copies into the main header when it reads a package
/// (package.c `xlateTags`, rpm 6's list, a superset of 4.18's): signature tag, header tag,
/// required type, required count (0: any), and whether the tag may legitimately already be in
/// the main header of a v4 package (rpm's "quirk").
const SIGNATURE_TAGS: &[(u32, u32, u32, u32, bool)] = &[
    (SIGTAG_SIZE, SIGSIZE, T_INT32, 1, false),
    (SIGTAG_PGP, SIGPGP, T_BIN, 0, false),
    (SIGTAG_MD5, SIGMD5, T_BIN, 16, false),
    (SIGTAG_GPG, SIGGPG, T_BIN, 0, false),
    (SIGTAG_PAYLOADSIZE, ARCHIVESIZE, T_INT32, 1, true),
    (
        SIGTAG_FILESIGNATURES,
        FILESIGNATURES,
        T_STRING_ARRAY,
        0,
        true,
    ),
    (
        SIGTAG_FILESIGNATURELENGTH,
        FILESIGNATURELENGTH,
        T_INT32,
        1,
        true,
    ),
    (VERITYSIGNATURES, VERITYSIGNATURES, T_STRING_ARRAY, 0, false),
    (VERITYSIGNATUREALGO, VERITYSIGNATUREALGO, T_INT32, 1, false),
    (SHA1HEADER, SHA1HEADER, T_STRING, 1, false),
    (SHA256HEADER, SHA256HEADER, T_STRING, 1, false),
    (SHA3_256HEADER, SHA3_256HEADER, T_STRING, 1, false),
    (DSAHEADER, DSAHEADER, T_BIN, 0, false),
    (RSAHEADER, RSAHEADER, T_BIN, 0, false),
    (LONGSIGSIZE, LONGSIGSIZE, T_INT64, 1, false),
    (LONGARCHIVESIZE, LONGARCHIVESIZE, T_INT64, 1, false),
    (OPENPGP, OPENPGP, T_STRING_ARRAY, 0, false),
];

/// Builds the header blob rpm stores for an installed package: the package's main header
/// (immutable region untouched), plus, outside the region, the signature tags rpm merges in
/// when reading the package, the retrofits it applies, and the install-time tags.
///
/// The region's bytes are copied, never re-encoded: rpm checks them against the header digests
/// and signatures (merged from the signature header) every time it reads the database.
pub(super) fn installed_blob(
    pkg: &PackageHeaders,
    install: &InstallInfo<'_>,
) -> Result<Vec<u8>, String> {
    let main = Header::parse(&pkg.main).map_err(|e| format!("main header: {e}"))?;
    let sig = Header::parse(&pkg.signature).map_err(|e| format!("signature header: {e}"))?;
    check_region(&main)?;
    if main.has(SOURCEPACKAGE) {
        return Err("a source package cannot be installed".into());
    }
    if main.has(OLDFILENAMES) {
        // rpm converts such (pre-4.0 style) file lists on the fly; no current package has one.
        return Err("legacy uncompressed file list (OLDFILENAMES) is not supported".into());
    }
    let rpmformat = main
        .u32s(RPMFORMAT)
        .and_then(|v| v.first().copied())
        .unwrap_or(4);

    let mut added = Vec::new();

    // headerMergeLegacySigs: no translated tag may already be in the main header (except the
    // quirky ones on v3/v4, when the signature header lacks them), then copy each present one.
    for &(stag, xtag, _, _, quirk) in SIGNATURE_TAGS {
        if main.has(xtag) && !(rpmformat < 6 && quirk && !sig.has(stag)) {
            return Err(format!(
                "invalid signature tag {xtag}: also in the main header"
            ));
        }
    }
    for &(stag, xtag, ty, count, _) in SIGNATURE_TAGS {
        if rpmformat >= 6 && stag >= HEADER_TAGBASE {
            continue;
        }
        let Some(e) = sig.find(stag) else { continue };
        if e.ty != ty
            || e.count < 1
            || e.count > 16 * 1024 * 1024
            || (count != 0 && e.count != count)
        {
            return Err(format!(
                "invalid signature tag {xtag} (type {}, count {})",
                e.ty, e.count
            ));
        }
        added.push(Added {
            tag: xtag,
            ty,
            count: e.count,
            data: sig.raw(e).to_vec(),
        });
    }

    // applyRetrofits: binary packages without SOURCERPM get "(none)".
    if !main.has(SOURCERPM) {
        added.push(Added::strings(SOURCERPM, T_STRING, &[b"(none)"]));
    }

    // Relocatable packages installed without relocations record their prefixes as installed
    // (relocation.c addPrefixes).
    if let Some(e) = main.find(PREFIXES)
        && !main.has(INSTPREFIXES)
    {
        added.push(Added {
            tag: INSTPREFIXES,
            ty: e.ty,
            count: e.count,
            data: main.raw(e).to_vec(),
        });
    }

    // psm.c dbAdd.
    if !install.file_states.is_empty() {
        added.push(Added {
            tag: FILESTATES,
            ty: T_CHAR,
            count: install.file_states.len() as u32,
            data: install.file_states.to_vec(),
        });
    }
    added.push(Added::u32s(INSTALLTID, &[install.install_tid]));
    added.push(Added::u32s(INSTALLTIME, &[install.install_time]));
    added.push(Added::u32s(INSTALLCOLOR, &[install.install_color]));

    // rpm 6 records the digests of the package file it verified (%_pkgverify_digests 8:10,
    // SHA-256 and SHA-512, psm.cc mergeAux).
    added.push(Added::strings(
        PACKAGEDIGESTS,
        T_STRING_ARRAY,
        &[pkg.sha256.as_bytes(), pkg.sha512.as_bytes()],
    ));
    added.push(Added::u32s(PACKAGEDIGESTALGOS, &[8, 10]));

    Ok(export(&pkg.main, &main, added))
}

/// Checks that the main header is a v4+ header whose immutable region covers every entry, with
/// its trailer at the end of the data, which is what rpmbuild writes and what `export` copies.
fn check_region(main: &Header<'_>) -> Result<(), String> {
    let first = main.entries[0];
    if first.tag != HEADERIMMUTABLE || first.ty != T_BIN || first.count != REGION_TRAILER as u32 {
        return Err("main header has no immutable region (v3 package?)".into());
    }
    if first.offset + REGION_TRAILER != main.data.len() {
        return Err("main header's region trailer is not at the end of its data".into());
    }
    let trailer = &main.data[first.offset..];
    let ril = (be32(trailer, 8) as i32).unsigned_abs() as usize / ENTRY_SIZE;
    if be32(trailer, 0) != HEADERIMMUTABLE || ril != main.entries.len() {
        return Err(format!(
            "main header's immutable region covers {ril} of {} entries",
            main.entries.len()
        ));
    }
    Ok(())
}

/// rpm's `headerExport` for a header read from a package and then extended: the original
/// region (index entries and data) verbatim, then the added entries sorted by tag, each one's
/// data aligned to its type within the data area.
fn export(blob: &[u8], main: &Header<'_>, mut added: Vec<Added>) -> Vec<u8> {
    added.sort_by_key(|a| a.tag);
    let il = main.entries.len();
    let mut data = main.data.to_vec();
    let mut index = Vec::with_capacity(added.len() * ENTRY_SIZE);
    for a in &added {
        let pad = align_pad(a.ty, data.len());
        data.resize(data.len() + pad, 0);
        index.extend_from_slice(&a.tag.to_be_bytes());
        index.extend_from_slice(&a.ty.to_be_bytes());
        index.extend_from_slice(&(data.len() as u32).to_be_bytes());
        index.extend_from_slice(&a.count.to_be_bytes());
        data.extend_from_slice(&a.data);
    }
    let mut out = Vec::with_capacity(8 + (il + added.len()) * ENTRY_SIZE + data.len());
    out.extend_from_slice(&((il + added.len()) as u32).to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(&blob[8..8 + il * ENTRY_SIZE]);
    out.extend_from_slice(&index);
    out.extend_from_slice(&data);
    out
}

/// The number of files in a main header (BASENAMES), for checking the file states given.
pub(super) fn file_count(main: &[u8]) -> Result<usize, String> {
    let h = Header::parse(main)?;
    Ok(h.find(BASENAMES).map_or(0, |e| e.count as usize))
}
