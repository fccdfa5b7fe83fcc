//! Pushing an OCI image layout to a registry with the OCI distribution API: blobs first (HEAD,
//! then a monolithic or chunked upload), then manifests; anonymous, Basic or Bearer token auth.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use reqwest::blocking::{Body, Client, RequestBuilder, Response};
use reqwest::header::{CONTENT_RANGE, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Blobs up to this size go in one request; larger ones in PATCH chunks of this size.
pub const DEFAULT_CHUNK_SIZE: u64 = 16 << 20;

const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Registries refuse bigger manifests (the distribution spec's suggested limit); reading one
/// whole into memory is fine below it.
const MAX_MANIFEST: u64 = 4 << 20;
/// An index of indexes of … deeper than this is a loop or a broken layout.
const MAX_DEPTH: usize = 8;
const SHORT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("`{reference}` is not a registry reference: {reason}")]
    Reference { reference: String, reason: String },
    #[error("{}: {message}", path.display())]
    Layout { path: PathBuf, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    AuthFile { path: PathBuf, message: String },
    #[error("{registry}/{repository}: {action}: {message}")]
    Network {
        registry: String,
        repository: String,
        action: String,
        message: String,
    },
    #[error("{registry}/{repository}: {action}: the registry answered {status}{body}")]
    Status {
        registry: String,
        repository: String,
        action: String,
        status: StatusCode,
        body: String,
    },
    #[error("{registry}/{repository}: {action}: {reason} (the registry answered {status}{body})")]
    Auth {
        registry: String,
        repository: String,
        action: String,
        reason: String,
        status: StatusCode,
        body: String,
    },
    #[error("{registry}: getting a token from {realm}: {message}")]
    Token {
        registry: String,
        realm: String,
        message: String,
    },
    #[error(
        "{registry}/{repository}: {action}: the registry reports digest {got}, expected {expected}"
    )]
    DigestMismatch {
        registry: String,
        repository: String,
        action: String,
        expected: String,
        got: String,
    },
    #[error("{registry}/{repository}: {action}: {message}")]
    Protocol {
        registry: String,
        repository: String,
        action: String,
        message: String,
    },
}

/// Where to push: `REGISTRY/REPOSITORY[:TAG]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]` as written (`[::1]:5000` for IPv6).
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
}

impl FromStr for Reference {
    type Err = PushError;

    fn from_str(s: &str) -> Result<Reference, PushError> {
        let bad = |reason: String| PushError::Reference {
            reference: s.to_string(),
            reason,
        };
        if s.contains('@') {
            return Err(bad(
                "pushing to a digest is not supported; give a tag (REGISTRY/REPOSITORY:TAG) or none"
                    .into(),
            ));
        }
        if s.contains("://") {
            return Err(bad(
                "give the registry without a scheme (https is the default; --insecure selects http)"
                    .into(),
            ));
        }
        let Some((registry, rest)) = s.split_once('/') else {
            return Err(bad(
                "expected REGISTRY/REPOSITORY[:TAG], e.g. registry.example.com/team/app:1.0".into(),
            ));
        };
        // Docker's rule: the first part names a registry only if it looks like a host; without
        // it `team/app` would silently go to a host called `team`.
        if !(registry.contains(['.', ':']) || registry == "localhost") {
            return Err(bad(format!(
                "`{registry}` is not a registry host; start with one, e.g. registry.example.com/{s} or localhost:5000/{s}"
            )));
        }
        check_host(registry).map_err(bad)?;
        let (repository, tag) = match rest.rsplit_once(':') {
            Some((r, t)) => (r, Some(t)),
            None => (rest, None),
        };
        check_repository(repository).map_err(bad)?;
        if let Some(t) = tag {
            check_tag(t).map_err(bad)?;
        }
        Ok(Reference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: tag.map(str::to_string),
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        Ok(())
    }
}

impl Reference {
    /// The host the API is served from: Docker Hub's name differs from its API host.
    fn api_host(&self) -> &str {
        match self.registry.as_str() {
            "docker.io" | "index.docker.io" => "registry-1.docker.io",
            r => r,
        }
    }
}

fn check_host(host: &str) -> Result<(), String> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((addr, after)) = rest.split_once(']') else {
            return Err(format!("`{host}`: unclosed `[` in the registry address"));
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("`{addr}` is not an IPv6 address"));
        }
        match after {
            "" => (None, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (None, Some(p)),
                None => return Err(format!("`{host}`: expected `:PORT` after `]`")),
            },
        }
    } else {
        match host.split_once(':') {
            Some((n, p)) => (Some(n), Some(p)),
            None => (Some(host), None),
        }
    };
    if let Some(name) = name {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !name.split('.').all(label_ok) {
            return Err(format!("`{name}` is not a valid registry host name"));
        }
    }
    if let Some(p) = port
        && !matches!(p.parse::<u16>(), Ok(n) if n > 0)
    {
        return Err(format!("`{p}` is not a port number"));
    }
    Ok(())
}

/// The distribution spec's repository grammar: lower-case components separated by `/`.
fn check_repository(repo: &str) -> Result<(), String> {
    if repo.is_empty() {
        return Err("the repository name is empty".into());
    }
    if repo.len() > 255 {
        return Err("the repository name is longer than 255 characters".into());
    }
    for c in repo.split('/') {
        if c.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "repository component `{c}` has upper-case letters; repository names are lower case"
            ));
        }
        if !component_ok(c) {
            return Err(format!(
                "`{c}` is not a valid repository component (lower-case letters and digits, separated by single `.`, `_`, `__` or dashes)"
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn component_ok(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
fn check_tag(tag: &str) -> Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag.bytes().next().is_some_and(word)
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{tag}` is not a valid tag (letters, digits, `_`, `.` and `-`, at most 128, not starting with `.` or `-`)"
        ))
    }
}

/// A user name and password for the registry (or its token server).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

// Written by hand so that no `{:?}` anywhere can print the password.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How to push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Plain http instead of https (localhost and test registries).
    pub insecure: bool,
    pub credentials: Option<Credentials>,
    /// Blobs larger than this are uploaded in PATCH chunks of this size.
    pub chunk_size: u64,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            insecure: false,
            credentials: None,
            chunk_size: DEFAULT_CHUNK_SIZE,
        }
    }
}

/// What one tag's push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagReport {
    /// `REGISTRY/REPOSITORY:TAG`.
    pub reference: String,
    /// The digest of the manifest (or image index) the tag names.
    pub digest: String,
    pub blobs_uploaded: usize,
    pub blobs_present: usize,
    /// Blob and manifest bytes sent.
    pub bytes_sent: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PushReport {
    pub tags: Vec<TagReport>,
}

// ---------------------------------------------------------------------------------------------
// Credentials from auth files

/// Where credentials were found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundCredentials {
    pub credentials: Credentials,
    pub file: PathBuf,
    /// The `auths` key that matched.
    pub key: String,
}

/// The auth files read, in order: `$REGISTRY_AUTH_FILE`,
/// `$XDG_RUNTIME_DIR/containers/auth.json`, `~/.config/containers/auth.json`,
/// `~/.docker/config.json`.
pub fn auth_files() -> Vec<PathBuf> {
    auth_files_from(|k| std::env::var_os(k))
}

fn auth_files_from(env: impl Fn(&str) -> Option<OsString>) -> Vec<PathBuf> {
    let set = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let mut out = Vec::new();
    if let Some(f) = set("REGISTRY_AUTH_FILE") {
        out.push(f);
    }
    if let Some(d) = set("XDG_RUNTIME_DIR") {
        out.push(d.join("containers/auth.json"));
    }
    if let Some(h) = set("HOME") {
        out.push(h.join(".config/containers/auth.json"));
        out.push(h.join(".docker/config.json"));
    }
    out
}

#[derive(Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
}

/// Docker Hub's several names as one.
fn canonical_host(host: &str) -> &str {
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        h => h,
    }
}

/// An `auths` key in the form registries are compared in: no scheme, no trailing `/v1/`, and
/// Docker Hub's several names as one.
fn normalize_auth_key(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let mut k = k.trim_end_matches('/');
    for v in ["/v1", "/v2"] {
        k = k.strip_suffix(v).unwrap_or(k);
    }
    let (host, path) = match k.split_once('/') {
        Some((h, p)) => (h, Some(p)),
        None => (k, None),
    };
    let host = canonical_host(host);
    match path {
        Some(p) => format!("{host}/{p}"),
        None => host.to_string(),
    }
}

/// The first auth file (in `files`' order) with an entry for the reference's registry; within
/// a file the most specific key wins (`host/team/app` over `host/team` over `host`), as in
/// containers-auth.json(5). Missing files are skipped; unreadable or malformed ones are errors.
pub fn credentials_from_files(
    files: &[PathBuf],
    reference: &Reference,
) -> Result<Option<FoundCredentials>, PushError> {
    let target = format!(
        "{}/{}",
        canonical_host(&reference.registry),
        reference.repository
    );
    for file in files {
        let text = match std::fs::read(file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(PushError::Io {
                    path: file.clone(),
                    source,
                });
            }
        };
        let parsed: AuthFile = serde_json::from_slice(&text).map_err(|e| PushError::AuthFile {
            path: file.clone(),
            message: format!("not a valid auth file: {e}"),
        })?;
        let best = parsed
            .auths
            .iter()
            .filter_map(|(key, entry)| {
                let k = normalize_auth_key(key);
                let matches = target == k
                    || (target.starts_with(&k) && target.as_bytes().get(k.len()) == Some(&b'/'));
                (matches && entry.auth.is_some()).then_some((k.len(), key, entry))
            })
            .max_by_key(|(len, _, _)| *len);
        let Some((_, key, entry)) = best else {
            continue;
        };
        let bad = |message: &str| PushError::AuthFile {
            path: file.clone(),
            message: format!("auths.\"{key}\".auth: {message}"),
        };
        let encoded = entry.auth.as_deref().unwrap_or_default();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| bad("not base64"))?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad("not UTF-8 text"))?;
        let Some((user, pass)) = decoded.split_once(':') else {
            return Err(bad("expected base64 of USER:PASSWORD"));
        };
        return Ok(Some(FoundCredentials {
            credentials: Credentials {
                username: user.to_string(),
                password: pass.to_string(),
            },
            file: file.clone(),
            key: key.clone(),
        }));
    }
    Ok(None)
}

// ---------------------------------------------------------------------------------------------
// WWW-Authenticate

/// One challenge of a `WWW-Authenticate` header: the scheme (lower case) and its parameters
/// (keys lower case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

/// Parses `Bearer realm="…",service="…",scope="…"` (RFC 7235): several challenges may share one
/// header, and quoted values may hold commas (`scope="repository:a:pull,push"`).
pub fn parse_www_authenticate(header: &str) -> Vec<Challenge> {
    let b = header.as_bytes();
    let mut i = 0;
    let mut out: Vec<Challenge> = Vec::new();
    let is_token = |c: u8| !c.is_ascii_whitespace() && !matches!(c, b',' | b'=' | b'"');
    let skip = |i: &mut usize, also_commas: bool| {
        while *i < b.len() && (b[*i].is_ascii_whitespace() || (also_commas && b[*i] == b',')) {
            *i += 1;
        }
    };
    loop {
        skip(&mut i, true);
        if i >= b.len() {
            break;
        }
        let start = i;
        while i < b.len() && is_token(b[i]) {
            i += 1;
        }
        if i == start {
            // A stray `=` or quote: skip it rather than loop forever.
            i += 1;
            continue;
        }
        let word = &header[start..i];
        let mut j = i;
        skip(&mut j, false);
        if j < b.len() && b[j] == b'=' && !(j + 1 < b.len() && b[j + 1] == b'=') {
            // `key=value` of the current challenge.
            i = j + 1;
            skip(&mut i, false);
            let value = if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut v = String::new();
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    // Copy whole UTF-8 characters, not bytes.
                    let ch = header[i..].chars().next().unwrap_or_default();
                    v.push(ch);
                    i += ch.len_utf8().max(1);
                }
                i += 1;
                v
            } else {
                let s = i;
                while i < b.len() && b[i] != b',' && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                header[s..i].to_string()
            };
            if let Some(c) = out.last_mut() {
                c.params.insert(word.to_ascii_lowercase(), value);
            }
        } else {
            // A new scheme (token68 credentials after it are not used by registries).
            out.push(Challenge {
                scheme: word.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
        }
    }
    out
}

/// The token in a token server's answer: `token`, or OAuth2's `access_token`.
fn token_from_answer(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Answer {
        token: Option<String>,
        access_token: Option<String>,
    }
    let a: Answer = serde_json::from_slice(body).ok()?;
    a.token
        .filter(|t| !t.is_empty())
        .or(a.access_token.filter(|t| !t.is_empty()))
}

/// A registry's error answer, short, for a message: `: CODE: message (detail)` from the
/// distribution spec's `{"errors":[…]}`, else the start of the text.
fn error_body(text: &str) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorItem>,
    }
    #[derive(Deserialize)]
    struct ErrorItem {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
        #[serde(default)]
        detail: serde_json::Value,
    }
    if let Ok(e) = serde_json::from_str::<Errors>(text)
        && !e.errors.is_empty()
    {
        let parts: Vec<String> = e
            .errors
            .iter()
            .map(|i| {
                let mut s = format!("{}: {}", i.code, i.message);
                if let Some(d) = i.detail.as_str().filter(|d| !d.is_empty()) {
                    s.push_str(&format!(" ({d})"));
                }
                s
            })
            .collect();
        return format!(": {}", parts.join("; "));
    }
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.is_empty() {
        return String::new();
    }
    let mut short: String = flat.chars().take(300).collect();
    if short.len() < flat.len() {
        short.push('…');
    }
    format!(": {short}")
}

/// The inclusive byte ranges of a chunked upload.
fn chunks(len: u64, size: u64) -> impl Iterator<Item = (u64, u64)> {
    let size = size.max(1);
    (0..len.div_ceil(size)).map(move |i| (i * size, ((i + 1) * size).min(len) - 1))
}

/// A generous limit for sending `len` bytes: a stalled connection fails instead of hanging,
/// a slow one (down to 32 KiB/s) still finishes.
fn upload_timeout(len: u64) -> Duration {
    Duration::from_secs(120 + len / (32 << 10))
}

// ---------------------------------------------------------------------------------------------
// The layout

#[derive(Deserialize, Clone)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// A manifest or an index, as far as pushing needs to know.
#[derive(Deserialize)]
struct Document {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    manifests: Option<Vec<Descriptor>>,
}

/// The hex of a `sha256:` digest, checked so that it can name a file safely.
fn sha256_hex(digest: &str) -> Option<&str> {
    digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

fn blob_path(layout: &Path, digest: &str) -> Result<PathBuf, PushError> {
    match sha256_hex(digest) {
        Some(h) => Ok(layout.join("blobs/sha256").join(h)),
        None => Err(PushError::Layout {
            path: layout.to_path_buf(),
            message: format!("`{digest}` is not a sha256 digest (only sha256 is supported)"),
        }),
    }
}

/// The tags to push and the descriptor each names, from index.json.
fn select(layout: &Path, tag: Option<&str>) -> Result<Vec<(String, Descriptor)>, PushError> {
    let marker = layout.join("oci-layout");
    if !marker.is_file() {
        return Err(PushError::Layout {
            path: layout.to_path_buf(),
            message: "not an OCI image layout (no oci-layout file)".into(),
        });
    }
    let path = layout.join("index.json");
    let text = std::fs::read(&path).map_err(|source| PushError::Io {
        path: path.clone(),
        source,
    })?;
    let index: Document = serde_json::from_slice(&text).map_err(|e| PushError::Layout {
        path: path.clone(),
        message: format!("not a valid image index: {e}"),
    })?;
    let entries = index.manifests.unwrap_or_default();
    let named: Vec<(&str, &Descriptor)> = entries
        .iter()
        .filter_map(|d| d.annotations.get(REF_NAME).map(|t| (t.as_str(), d)))
        .collect();
    let names = || named.iter().map(|(t, _)| *t).collect::<Vec<_>>().join(", ");
    match tag {
        Some(tag) => {
            // The tag names the destination; the image is the layout's one, or its entry of
            // that name when the layout holds several images.
            if let Some((_, d)) = named.iter().find(|(t, _)| *t == tag) {
                return Ok(vec![(tag.to_string(), (*d).clone())]);
            }
            let first = entries.first().ok_or_else(|| PushError::Layout {
                path: path.clone(),
                message: "the layout holds no image".into(),
            })?;
            if entries.iter().any(|d| d.digest != first.digest) {
                return Err(PushError::Layout {
                    path,
                    message: format!(
                        "the layout holds several images and none is tagged `{tag}`; push one of its tags ({}) or none",
                        names()
                    ),
                });
            }
            Ok(vec![(tag.to_string(), first.clone())])
        }
        None => {
            if named.is_empty() {
                return Err(PushError::Layout {
                    path,
                    message: "no entry of index.json has a tag (org.opencontainers.image.ref.name); give one: REGISTRY/REPOSITORY:TAG".into(),
                });
            }
            let mut out = Vec::new();
            for (t, d) in named {
                check_tag(t).map_err(|message| PushError::Layout {
                    path: path.clone(),
                    message,
                })?;
                out.push((t.to_string(), d.clone()));
            }
            Ok(out)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The registry session

enum Auth {
    Anonymous,
    Basic,
    Bearer(String),
}

#[derive(Default)]
struct Counts {
    uploaded: usize,
    present: usize,
    bytes: u64,
}

struct Session<'a> {
    client: Client,
    /// `scheme://host/v2/`
    base: String,
    registry: String,
    repository: String,
    credentials: Option<&'a Credentials>,
    auth: Auth,
    /// Scopes asked of a token server: push to the repository, and whatever a challenge named.
    scopes: Vec<String>,
    chunk_size: u64,
    layout: PathBuf,
    /// Blobs and manifests known to be in the repository already (in this push).
    done_blobs: HashSet<String>,
    done_manifests: HashSet<String>,
}

/// Pushes the OCI image layout at `layout` to `reference`: with a tag, the layout's image under
/// that tag; without one, every tag the layout's index.json names.
pub fn push(
    layout: &Path,
    reference: &Reference,
    opts: &PushOptions,
) -> Result<PushReport, PushError> {
    let tags = select(layout, reference.tag.as_deref())?;
    // rustls with ring, installed once for the process (as repo::transport does).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::builder()
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        // Per request instead: uploads get a limit that grows with their size.
        .timeout(None)
        .build()
        .map_err(|e| PushError::Network {
            registry: reference.registry.clone(),
            repository: reference.repository.clone(),
            action: "starting the HTTP client".into(),
            message: error_chain(&e),
        })?;
    let scheme = if opts.insecure { "http" } else { "https" };
    let mut s = Session {
        client,
        base: format!("{scheme}://{}/v2/", reference.api_host()),
        registry: reference.registry.clone(),
        repository: reference.repository.clone(),
        credentials: opts.credentials.as_ref(),
        auth: Auth::Anonymous,
        scopes: vec![format!("repository:{}:pull,push", reference.repository)],
        chunk_size: opts.chunk_size.max(1),
        layout: layout.to_path_buf(),
        done_blobs: HashSet::new(),
        done_manifests: HashSet::new(),
    };
    s.ping().map_err(|e| match e {
        // rustls's words for plain http where it expected TLS.
        PushError::Network { message, .. }
            if !opts.insecure && message.contains("corrupt message") =>
        {
            PushError::Network {
                registry: s.registry.clone(),
                repository: s.repository.clone(),
                action: "connecting (GET /v2/)".into(),
                message: format!(
                    "{message} (the registry does not speak https; --insecure uses plain http)"
                ),
            }
        }
        e => e,
    })?;
    let mut report = PushReport::default();
    for (tag, desc) in tags {
        let mut counts = Counts::default();
        s.put_manifest(&desc, &tag, &mut counts, 0)?;
        report.tags.push(TagReport {
            reference: format!("{}/{}:{tag}", reference.registry, reference.repository),
            digest: desc.digest.clone(),
            blobs_uploaded: counts.uploaded,
            blobs_present: counts.present,
            bytes_sent: counts.bytes,
        });
    }
    Ok(report)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

impl Session<'_> {
    fn url(&self, action: &str, rest: &str) -> Result<Url, PushError> {
        let text = format!("{}{}/{rest}", self.base, self.repository);
        Url::parse(&text).map_err(|e| self.protocol(action, format!("bad URL {text}: {e}")))
    }

    fn protocol(&self, action: &str, message: String) -> PushError {
        PushError::Protocol {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            action: action.to_string(),
            message,
        }
    }

    /// The error for an answer that is not the one expected; reads the registry's error body.
    fn status_error(&self, action: &str, resp: Response) -> PushError {
        let status = resp.status();
        let body = error_body(&resp.text().unwrap_or_default());
        let (registry, repository, action) = (
            self.registry.clone(),
            self.repository.clone(),
            action.to_string(),
        );
        let reason = match (status, &self.auth, self.credentials) {
            (StatusCode::UNAUTHORIZED, Auth::Basic, Some(c)) => {
                format!("the credentials of user `{}` were rejected", c.username)
            }
            (StatusCode::UNAUTHORIZED, Auth::Bearer(_), _) => {
                "the registry refused the token its token server gave (no push access to this repository?)".into()
            }
            (StatusCode::UNAUTHORIZED, _, None) => {
                "the registry requires credentials and none were given (--creds USER:PASSWORD or an auth file)".into()
            }
            (StatusCode::UNAUTHORIZED, _, Some(_)) => {
                "the registry asks for an authentication other than Basic or Bearer".into()
            }
            (StatusCode::FORBIDDEN, _, _) => "access denied".into(),
            _ => String::new(),
        };
        if !reason.is_empty() {
            return PushError::Auth {
                registry,
                repository,
                action,
                reason,
                status,
                body,
            };
        }
        PushError::Status {
            registry,
            repository,
            action,
            status,
            body,
        }
    }

    /// Sends the request `build` makes, with the current authorization; on a 401 it answers
    /// the challenge (Basic, or a Bearer token) and sends a fresh request once more. `build`
    /// runs again for that, so a streamed body is reopened rather than replayed.
    fn send(
        &mut self,
        action: &str,
        build: impl Fn(&Client) -> Result<RequestBuilder, PushError>,
    ) -> Result<Response, PushError> {
        let mut answered = false;
        loop {
            let rb = match (&self.auth, self.credentials) {
                (Auth::Basic, Some(c)) => {
                    build(&self.client)?.basic_auth(&c.username, Some(&c.password))
                }
                (Auth::Bearer(t), _) => build(&self.client)?.bearer_auth(t),
                _ => build(&self.client)?,
            };
            let resp = rb.send().map_err(|e| PushError::Network {
                registry: self.registry.clone(),
                repository: self.repository.clone(),
                action: action.to_string(),
                // Upload URLs carry the registry's upload state: not for messages.
                message: error_chain(&e.without_url()),
            })?;
            if resp.status() == StatusCode::UNAUTHORIZED && !answered && self.answer(&resp)? {
                answered = true;
                continue;
            }
            return Ok(resp);
        }
    }

    /// Answers a 401's challenge; false if there is nothing (more) to try.
    fn answer(&mut self, resp: &Response) -> Result<bool, PushError> {
        let challenges: Vec<Challenge> = resp
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_www_authenticate)
            .collect();
        if let Some(b) = challenges.iter().find(|c| c.scheme == "bearer") {
            let Some(realm) = b.params.get("realm") else {
                return Err(self.protocol(
                    "authenticating",
                    "the registry's Bearer challenge has no realm".into(),
                ));
            };
            if let Some(scope) = b.params.get("scope") {
                for s in scope.split_whitespace() {
                    if !self.scopes.iter().any(|x| x == s) {
                        self.scopes.push(s.to_string());
                    }
                }
            }
            let token = self.token(realm, b.params.get("service").map(String::as_str))?;
            self.auth = Auth::Bearer(token);
            return Ok(true);
        }
        if challenges.iter().any(|c| c.scheme == "basic")
            && self.credentials.is_some()
            && !matches!(self.auth, Auth::Basic)
        {
            self.auth = Auth::Basic;
            return Ok(true);
        }
        Ok(false)
    }

    /// A token from the challenge's realm (the Docker token spec), asked with the credentials
    /// when there are any.
    fn token(&self, realm: &str, service: Option<&str>) -> Result<String, PushError> {
        let err = |shown: &str, message: String| PushError::Token {
            registry: self.registry.clone(),
            realm: shown.to_string(),
            message,
        };
        let mut url =
            Url::parse(realm).map_err(|e| err(realm, format!("the realm is not a URL: {e}")))?;
        let shown = url.to_string();
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in &self.scopes {
                q.append_pair("scope", s);
            }
        }
        let mut rb = self.client.get(url).timeout(SHORT_TIMEOUT);
        if let Some(c) = self.credentials {
            rb = rb.basic_auth(&c.username, Some(&c.password));
        }
        let resp = rb
            .send()
            .map_err(|e| err(&shown, error_chain(&e.without_url())))?;
        let status = resp.status();
        let body = resp.bytes().unwrap_or_default();
        if !status.is_success() {
            let why = match (status, self.credentials) {
                (StatusCode::UNAUTHORIZED, Some(c)) => {
                    format!("the credentials of user `{}` were rejected; ", c.username)
                }
                (StatusCode::UNAUTHORIZED, None) => {
                    "credentials are required (--creds USER:PASSWORD or an auth file); ".into()
                }
                _ => String::new(),
            };
            return Err(err(
                &shown,
                format!(
                    "{why}the token server answered {status}{}",
                    error_body(&String::from_utf8_lossy(&body))
                ),
            ));
        }
        token_from_answer(&body).ok_or_else(|| {
            err(
                &shown,
                "the answer has neither `token` nor `access_token`".into(),
            )
        })
    }

    /// `GET /v2/`: is this a registry, and which authentication does it want?
    fn ping(&mut self) -> Result<(), PushError> {
        let action = "connecting (GET /v2/)";
        let url = Url::parse(&self.base)
            .map_err(|e| self.protocol(action, format!("bad URL {}: {e}", self.base)))?;
        let resp = self.send(action, |c| Ok(c.get(url.clone()).timeout(SHORT_TIMEOUT)))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.status_error(action, resp))
        }
    }

    fn location(&self, action: &str, resp: &Response) -> Result<Url, PushError> {
        let loc = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| self.protocol(action, "the answer has no Location header".into()))?;
        // Registries answer with an absolute URL or an absolute path (`/v2/…`); either
        // resolves against the registry's address.
        Url::parse(&self.base)
            .and_then(|b| b.join(loc))
            .map_err(|e| self.protocol(action, format!("the Location header is not a URL: {e}")))
    }

    /// A `Docker-Content-Digest` answer, when there is one, must be the digest sent.
    fn check_digest(&self, action: &str, resp: &Response, expected: &str) -> Result<(), PushError> {
        if let Some(got) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            && got != expected
        {
            return Err(PushError::DigestMismatch {
                registry: self.registry.clone(),
                repository: self.repository.clone(),
                action: action.to_string(),
                expected: expected.to_string(),
                got: got.to_string(),
            });
        }
        Ok(())
    }

    /// Uploads the blob unless the repository has it.
    fn ensure_blob(&mut self, d: &Descriptor, counts: &mut Counts) -> Result<(), PushError> {
        let path = blob_path(&self.layout, &d.digest)?;
        if self.done_blobs.contains(&d.digest) {
            counts.present += 1;
            return Ok(());
        }
        let len = std::fs::metadata(&path)
            .map_err(|source| PushError::Io {
                path: path.clone(),
                source,
            })?
            .len();
        if len != d.size {
            return Err(PushError::Layout {
                path,
                message: format!("{} bytes, but its descriptor says {}", len, d.size),
            });
        }
        let action = format!("checking blob {}", d.digest);
        let url = self.url(&action, &format!("blobs/{}", d.digest))?;
        let resp = self.send(&action, |c| Ok(c.head(url.clone()).timeout(SHORT_TIMEOUT)))?;
        match resp.status() {
            s if s.is_success() => counts.present += 1,
            StatusCode::NOT_FOUND => {
                self.upload(&path, &d.digest, len)?;
                counts.uploaded += 1;
                counts.bytes += len;
            }
            _ => return Err(self.status_error(&action, resp)),
        }
        self.done_blobs.insert(d.digest.clone());
        Ok(())
    }

    /// POST an upload session, then either PUT the whole blob, or PATCH it in chunks (each
    /// answer says where the next goes) and close with an empty PUT; always streamed from
    /// the file.
    fn upload(&mut self, path: &Path, digest: &str, len: u64) -> Result<(), PushError> {
        let action = format!("uploading blob {digest}");
        let start = self.url(&action, "blobs/uploads/")?;
        let resp = self.send(&action, |c| {
            Ok(c.post(start.clone())
                .body(Vec::new())
                .timeout(SHORT_TIMEOUT))
        })?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.status_error(&action, resp));
        }
        let mut location = self.location(&action, &resp)?;
        let open = |from: u64| -> Result<File, PushError> {
            let io = |source| PushError::Io {
                path: path.to_path_buf(),
                source,
            };
            let mut f = File::open(path).map_err(io)?;
            f.seek(SeekFrom::Start(from)).map_err(io)?;
            Ok(f)
        };
        let monolithic = len <= self.chunk_size;
        if !monolithic {
            for (first, last) in chunks(len, self.chunk_size) {
                let n = last - first + 1;
                let url = location.clone();
                let resp = self.send(&action, |c| {
                    Ok(c.patch(url.clone())
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header(CONTENT_RANGE, format!("{first}-{last}"))
                        .body(Body::sized(open(first)?.take(n), n))
                        .timeout(upload_timeout(n)))
                })?;
                if resp.status() != StatusCode::ACCEPTED {
                    return Err(self.status_error(&action, resp));
                }
                // The registry says how much it holds: it must be everything sent so far.
                if let Some(range) = resp.headers().get("range").and_then(|v| v.to_str().ok()) {
                    let end = range
                        .trim_start_matches("bytes=")
                        .split_once('-')
                        .and_then(|(_, e)| e.trim().parse::<u64>().ok());
                    if end != Some(last) {
                        return Err(self.protocol(
                            &action,
                            format!(
                                "after bytes {first}-{last} the registry holds `{range}`, not 0-{last}"
                            ),
                        ));
                    }
                }
                location = self.location(&action, &resp)?;
            }
        }
        let mut url = location;
        url.query_pairs_mut().append_pair("digest", digest);
        let resp = self.send(&action, |c| {
            let rb = c
                .put(url.clone())
                .header(CONTENT_TYPE, "application/octet-stream");
            Ok(if monolithic {
                rb.body(Body::sized(open(0)?, len))
                    .timeout(upload_timeout(len))
            } else {
                rb.body(Vec::new()).timeout(SHORT_TIMEOUT)
            })
        })?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.status_error(&action, resp));
        }
        self.check_digest(&action, &resp, digest)
    }

    /// Pushes a manifest (its blobs first) or an index (its manifests first, by digest), then
    /// PUTs its exact bytes under `name` (a tag or its digest).
    fn put_manifest(
        &mut self,
        d: &Descriptor,
        name: &str,
        counts: &mut Counts,
        depth: usize,
    ) -> Result<(), PushError> {
        let path = blob_path(&self.layout, &d.digest)?;
        let layout_err = |message: String| PushError::Layout {
            path: path.clone(),
            message,
        };
        if depth > MAX_DEPTH {
            return Err(layout_err(format!(
                "image indexes nested more than {MAX_DEPTH} deep"
            )));
        }
        if d.size > MAX_MANIFEST {
            return Err(layout_err(format!(
                "a manifest of {} bytes; registries accept at most {MAX_MANIFEST}",
                d.size
            )));
        }
        let bytes = std::fs::read(&path).map_err(|source| PushError::Io {
            path: path.clone(),
            source,
        })?;
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if actual != d.digest {
            return Err(layout_err(format!(
                "the content's digest is {actual}, not {}: the layout is damaged",
                d.digest
            )));
        }
        let doc: Document = serde_json::from_slice(&bytes)
            .map_err(|e| layout_err(format!("not a valid manifest: {e}")))?;
        // The registry checks Content-Type against the document's own mediaType.
        let media_type = doc
            .media_type
            .clone()
            .or_else(|| d.media_type.clone())
            .unwrap_or_else(|| {
                if doc.manifests.is_some() {
                    MT_INDEX
                } else {
                    MT_MANIFEST
                }
                .to_string()
            });
        match media_type.as_str() {
            MT_INDEX | MT_DOCKER_LIST => {
                for child in doc.manifests.as_deref().unwrap_or_default() {
                    if !self.done_manifests.contains(&child.digest) {
                        self.put_manifest(child, &child.digest, counts, depth + 1)?;
                    }
                }
            }
            MT_MANIFEST | MT_DOCKER_MANIFEST => {
                let Some(config) = &doc.config else {
                    return Err(layout_err("the manifest has no config".into()));
                };
                self.ensure_blob(config, counts)?;
                for layer in &doc.layers {
                    self.ensure_blob(layer, counts)?;
                }
            }
            other => {
                return Err(layout_err(format!(
                    "media type `{other}` is neither an image manifest nor an image index"
                )));
            }
        }
        let action = format!("putting manifest {} as `{name}`", d.digest);
        let url = self.url(&action, &format!("manifests/{name}"))?;
        let resp = self.send(&action, |c| {
            Ok(c.put(url.clone())
                .header(CONTENT_TYPE, media_type.as_str())
                .body(bytes.clone())
                .timeout(SHORT_TIMEOUT))
        })?;
        if !resp.status().is_success() {
            return Err(self.status_error(&action, resp));
        }
        self.check_digest(&action, &resp, &d.digest)?;
        counts.bytes += bytes.len() as u64;
        self.done_manifests.insert(d.digest.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Result<Reference, String> {
        s.parse::<Reference>().map_err(|e| e.to_string())
    }

    #[test]
    fn references_parse() {
        assert_eq!(
            r("127.0.0.1:5000/kiln/test:1").unwrap(),
            Reference {
                registry: "127.0.0.1:5000".into(),
                repository: "kiln/test".into(),
                tag: Some("1".into())
            }
        );
        let x = r("registry.example.com/a/b/c").unwrap();
        assert_eq!((x.repository.as_str(), x.tag), ("a/b/c", None));
        assert_eq!(r("localhost/app:v1.2_3-rc").unwrap().registry, "localhost");
        assert_eq!(r("[::1]:5000/app").unwrap().registry, "[::1]:5000");
        assert_eq!(
            r("x.io/a__b.c-d--e/f_g:latest").unwrap().repository,
            "a__b.c-d--e/f_g"
        );
        assert_eq!(
            r("127.0.0.1:5000/kiln/test:1").unwrap().to_string(),
            "127.0.0.1:5000/kiln/test:1"
        );
        assert_eq!(
            r("docker.io/me/app").unwrap().api_host(),
            "registry-1.docker.io"
        );
    }

    #[test]
    fn bad_references_are_refused_with_a_reason() {
        for (s, want) in [
            ("x.io/app@sha256:abcd", "digest is not supported"),
            ("x.io/app:1@sha256:abcd", "digest is not supported"),
            ("https://x.io/app", "without a scheme"),
            ("app", "expected REGISTRY/REPOSITORY"),
            ("team/app:1", "`team` is not a registry host"),
            ("x.io/", "repository name is empty"),
            ("x.io/App", "upper-case"),
            ("x.io/a//b", "not a valid repository component"),
            ("x.io/a/-b", "not a valid repository component"),
            ("x.io/a..b", "not a valid repository component"),
            ("x.io/a___b", "not a valid repository component"),
            ("x.io/app:", "not a valid tag"),
            ("x.io/app:.x", "not a valid tag"),
            ("x.io/app:a b", "not a valid tag"),
            ("x.io:99999/app", "not a port number"),
            ("x.io:/app", "not a port number"),
            ("-x.io/app", "not a valid registry host name"),
            ("x..io/app", "not a valid registry host name"),
            ("[zz]:1/app", "not an IPv6 address"),
            ("[::1/app", "unclosed"),
        ] {
            let e = r(s).expect_err(s);
            assert!(e.contains(want), "{s}: {e}");
            assert!(e.contains(s), "{s}: the message names the reference: {e}");
        }
        let long = format!("x.io/{}", "a".repeat(256));
        assert!(r(&long).unwrap_err().contains("longer than 255"));
        let long_tag = format!("x.io/a:{}", "t".repeat(129));
        assert!(r(&long_tag).unwrap_err().contains("not a valid tag"));
    }

    #[test]
    fn www_authenticate_challenges_parse() {
        let c = parse_www_authenticate(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].params["realm"], "https://auth.example.com/token");
        assert_eq!(c[0].params["service"], "registry.example.com");
        assert_eq!(c[0].params["scope"], "repository:a/b:pull,push");

        let c = parse_www_authenticate(r#"Basic realm="kiln \"test\" realm", charset=UTF-8"#);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].params["realm"], r#"kiln "test" realm"#);
        assert_eq!(c[0].params["charset"], "UTF-8");

        // Two challenges in one header, odd spacing and case, an unquoted value.
        let c = parse_www_authenticate(
            r#"Basic realm="r1" ,  BEARER  Realm = "https://t/token" , service=svc"#,
        );
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[0].scheme.as_str(), c[0].params["realm"].as_str()),
            ("basic", "r1")
        );
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].params["realm"], "https://t/token");
        assert_eq!(c[1].params["service"], "svc");

        // Garbage never panics nor loops.
        for junk in [
            "",
            "=",
            "\"",
            "Bearer realm=\"unterminated",
            ",,,",
            "a=b",
            "Bearer ==x",
            "Basic é=\"ü\"",
        ] {
            let _ = parse_www_authenticate(junk);
        }
        assert_eq!(parse_www_authenticate("Basic é=\"ü\"")[0].params["é"], "ü");
    }

    #[test]
    fn token_answers_and_error_bodies() {
        assert_eq!(
            token_from_answer(br#"{"token":"t1","expires_in":60}"#).as_deref(),
            Some("t1")
        );
        assert_eq!(
            token_from_answer(br#"{"access_token":"t2"}"#).as_deref(),
            Some("t2")
        );
        assert_eq!(
            token_from_answer(br#"{"token":"","access_token":"t3"}"#).as_deref(),
            Some("t3")
        );
        assert_eq!(token_from_answer(br#"{"expires_in":60}"#), None);
        assert_eq!(token_from_answer(b"not json"), None);

        assert_eq!(
            error_body(
                r#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:ab"}]}"#
            ),
            ": MANIFEST_BLOB_UNKNOWN: blob unknown to registry (sha256:ab)"
        );
        assert_eq!(
            error_body(
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":[{"Type":"repository"}]}]}"#
            ),
            ": UNAUTHORIZED: authentication required"
        );
        assert_eq!(
            error_body("  <html>\n oops </html>\n"),
            ": <html> oops </html>"
        );
        assert_eq!(error_body(""), "");
        assert!(error_body(&"x".repeat(1000)).ends_with('…'));
    }

    #[test]
    fn chunks_cover_the_blob_exactly() {
        let c = |len, size| chunks(len, size).collect::<Vec<_>>();
        assert_eq!(c(10, 4), [(0, 3), (4, 7), (8, 9)]);
        assert_eq!(c(8, 4), [(0, 3), (4, 7)]);
        assert_eq!(c(1, 4), [(0, 0)]);
        assert!(c(0, 4).is_empty());
        assert_eq!(c(3, 0), [(0, 0), (1, 1), (2, 2)]);
    }

    #[test]
    fn credentials_never_show_the_password() {
        let c = Credentials {
            username: "alice".into(),
            password: "s3cret".into(),
        };
        let shown = format!(
            "{c:?} {:?}",
            PushOptions {
                credentials: Some(c.clone()),
                ..Default::default()
            }
        );
        assert!(
            shown.contains("alice") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    #[test]
    fn auth_files_are_looked_up_in_order() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        assert_eq!(
            auth_files_from(env(&[
                ("REGISTRY_AUTH_FILE", "/a/auth.json"),
                ("XDG_RUNTIME_DIR", "/run/user/1"),
                ("HOME", "/home/u"),
            ])),
            [
                PathBuf::from("/a/auth.json"),
                PathBuf::from("/run/user/1/containers/auth.json"),
                PathBuf::from("/home/u/.config/containers/auth.json"),
                PathBuf::from("/home/u/.docker/config.json"),
            ]
        );
        assert_eq!(
            auth_files_from(env(&[("REGISTRY_AUTH_FILE", ""), ("HOME", "/h")])),
            [
                PathBuf::from("/h/.config/containers/auth.json"),
                PathBuf::from("/h/.docker/config.json"),
            ]
        );
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn auth_file_entries_are_matched_by_registry() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        let first = dir.path().join("first.json");
        let second = dir.path().join("second.json");
        // The first file knows other registries only; the second has a scheme-style key, a
        // host key and a more specific repository key.
        std::fs::write(
            &first,
            format!(r#"{{"auths":{{"other.io":{{"auth":"{}"}}}}}}"#, b64("o:o")),
        )
        .unwrap();
        std::fs::write(
            &second,
            format!(
                r#"{{"auths":{{"https://reg.io/v1/":{{"auth":"{}"}},"reg.io/team":{{"auth":"{}"}},"localhost:5000":{{"auth":"{}"}},"https://index.docker.io/v1/":{{"auth":"{}"}}}},"credsStore":"x"}}"#,
                b64("host:pw"),
                b64("team:pw:with:colons"),
                b64("local:pw"),
                b64("hub:pw")
            ),
        )
        .unwrap();
        let files = [missing, first.clone(), second.clone()];
        let find = |s: &str| {
            credentials_from_files(&files, &s.parse().unwrap())
                .unwrap()
                .map(|f| {
                    (
                        f.credentials.username,
                        f.credentials.password,
                        f.file,
                        f.key,
                    )
                })
        };
        assert_eq!(
            find("reg.io/other/app"),
            Some((
                "host".into(),
                "pw".into(),
                second.clone(),
                "https://reg.io/v1/".into()
            ))
        );
        assert_eq!(
            find("reg.io/team/app:1"),
            Some((
                "team".into(),
                "pw:with:colons".into(),
                second.clone(),
                "reg.io/team".into()
            ))
        );
        // `reg.io/teamx` is not under `reg.io/team`.
        assert_eq!(find("reg.io/teamx/app").unwrap().0, "host");
        assert_eq!(find("localhost:5000/app").unwrap().0, "local");
        assert_eq!(find("docker.io/me/app").unwrap().0, "hub");
        assert_eq!(find("other.io/app").unwrap().2, first);
        assert_eq!(find("localhost:5001/app"), None);
        assert_eq!(find("nowhere.io/app"), None);

        // Broken files and entries are errors that name the file, never the secret.
        let broken = dir.path().join("broken.json");
        std::fs::write(&broken, "{not json").unwrap();
        let e = credentials_from_files(std::slice::from_ref(&broken), &"reg.io/a".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("broken.json") && e.contains("not a valid auth file"),
            "{e}"
        );
        let bad = dir.path().join("bad.json");
        for (auth, want) in [
            ("%%%", "not base64"),
            (b64("nocolon").as_str(), "USER:PASSWORD"),
        ] {
            std::fs::write(
                &bad,
                format!(r#"{{"auths":{{"reg.io":{{"auth":"{auth}"}}}}}}"#),
            )
            .unwrap();
            let e =
                credentials_from_files(std::slice::from_ref(&bad), &"reg.io/a".parse().unwrap())
                    .unwrap_err()
                    .to_string();
            assert!(e.contains("bad.json") && e.contains(want), "{e}");
            assert!(!e.contains("nocolon"), "{e}");
        }
        // An entry without `auth` (a credential helper's) is no entry.
        std::fs::write(&bad, r#"{"auths":{"reg.io":{}}}"#).unwrap();
        assert_eq!(
            credentials_from_files(std::slice::from_ref(&bad), &"reg.io/a".parse().unwrap())
                .unwrap(),
            None
        );
    }

    fn layout_with(index: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("index.json"), index).unwrap();
        dir
    }

    #[test]
    fn tags_are_selected_from_index_json() {
        let d1 = format!("sha256:{}", "1".repeat(64));
        let d2 = format!("sha256:{}", "2".repeat(64));
        let entry = |d: &str, tag: Option<&str>| {
            let ann = tag
                .map(|t| format!(r#","annotations":{{"{REF_NAME}":"{t}"}}"#))
                .unwrap_or_default();
            format!(r#"{{"mediaType":"{MT_MANIFEST}","digest":"{d}","size":10{ann}}}"#)
        };
        let index = |entries: &[String]| {
            format!(
                r#"{{"schemaVersion":2,"manifests":[{}]}}"#,
                entries.join(",")
            )
        };
        let tags = |dir: &tempfile::TempDir, tag: Option<&str>| {
            select(dir.path(), tag).map(|v| {
                v.into_iter()
                    .map(|(t, d)| (t, d.digest))
                    .collect::<Vec<_>>()
            })
        };

        let one = layout_with(&index(&[
            entry(&d1, Some("2.1")),
            entry(&d1, Some("latest")),
        ]));
        assert_eq!(
            tags(&one, None).unwrap(),
            [("2.1".into(), d1.clone()), ("latest".into(), d1.clone())]
        );
        // A tag the layout does not have names the destination of its only image.
        assert_eq!(tags(&one, Some("1")).unwrap(), [("1".into(), d1.clone())]);

        let two = layout_with(&index(&[entry(&d1, Some("a")), entry(&d2, Some("b"))]));
        assert_eq!(tags(&two, Some("b")).unwrap(), [("b".into(), d2.clone())]);
        let e = tags(&two, Some("c")).unwrap_err().to_string();
        assert!(e.contains("several images") && e.contains("a, b"), "{e}");

        let untagged = layout_with(&index(&[entry(&d1, None)]));
        assert!(
            tags(&untagged, None)
                .unwrap_err()
                .to_string()
                .contains("give one")
        );
        assert_eq!(
            tags(&untagged, Some("x")).unwrap(),
            [("x".into(), d1.clone())]
        );

        let bad_tag = layout_with(&index(&[entry(&d1, Some("no/slash"))]));
        assert!(
            tags(&bad_tag, None)
                .unwrap_err()
                .to_string()
                .contains("not a valid tag")
        );
        let empty = layout_with(r#"{"schemaVersion":2,"manifests":[]}"#);
        assert!(
            tags(&empty, Some("x"))
                .unwrap_err()
                .to_string()
                .contains("no image")
        );
        let junk = layout_with("[1,2");
        assert!(
            tags(&junk, None)
                .unwrap_err()
                .to_string()
                .contains("not a valid image index")
        );
        let not_layout = tempfile::tempdir().unwrap();
        assert!(
            tags(&not_layout, None)
                .unwrap_err()
                .to_string()
                .contains("no oci-layout")
        );
    }

    #[test]
    fn blob_paths_accept_only_sha256_hex() {
        let l = Path::new("/l");
        assert!(blob_path(l, &format!("sha256:{}", "a".repeat(64))).is_ok());
        for bad in [
            "sha256:../../etc/passwd".to_string(),
            format!("sha512:{}", "a".repeat(128)),
            format!("sha256:{}", "A".repeat(64)),
            "sha256:".into(),
        ] {
            assert!(blob_path(l, &bad).is_err(), "{bad}");
        }
    }
}
