//! Repositories: repomd.xml, primary/filelists/comps (gz, xz, zstd, bz2) from file:// and https://,
//! checksum-verified, parsed once and cached by repomd checksum, gathered into one package pool.

pub mod cache;
pub mod comps;
pub mod decompress;
pub mod filelists;
pub mod pool;
pub mod primary;
pub mod repomd;
pub mod strings;
pub mod transport;
pub mod xml;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::BufReader;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use sha2::Digest;

pub use pool::{DepKind, Pool};
use pool::{RepoData, RepoInfo};
use repomd::Repomd;
use transport::FetchError;

/// A repository to load, as the definition (or the command line) describes it.
#[derive(Debug, Clone)]
pub struct RepoSpec {
    pub id: String,
    pub baseurls: Vec<String>,
    pub metalink: Option<String>,
    pub mirrorlist: Option<String>,
    pub priority: u8,
    pub cost: u32,
}

impl From<&crate::definition::Repository> for RepoSpec {
    fn from(r: &crate::definition::Repository) -> Self {
        RepoSpec {
            id: r.id.clone(),
            baseurls: r.baseurl.clone(),
            metalink: r.metalink.clone(),
            mirrorlist: r.mirrorlist.clone(),
            priority: r.priority,
            cost: r.cost,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("repository `{repo}`: {source}")]
    Fetch {
        repo: String,
        #[source]
        source: FetchError,
    },
    #[error("repository `{repo}`: {file} is malformed: {message}")]
    Parse {
        repo: String,
        file: String,
        message: String,
    },
    #[error("repository `{repo}`: {message}")]
    Invalid { repo: String, message: String },
    #[error(
        "repository `{repo}`: no cached metadata, and --offline forbids downloading it from {url}"
    )]
    Offline { repo: String, url: String },
}

/// How metadata may be obtained.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub cache_dir: PathBuf,
    /// Re-download remote metadata even if the cached copy is fresh.
    pub refresh: bool,
    /// Never touch the network: use cached metadata however old.
    pub offline: bool,
    /// How long cached remote metadata is used without asking the server (dnf's
    /// `metadata_expire`). Local (file://) repositories are always checked.
    pub metadata_expire: Duration,
    /// File paths that will be asked for (requested files) beyond the dependencies in the pool.
    pub wanted_files: Vec<String>,
    /// Print what is loaded from where.
    pub verbose: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            cache_dir: cache::cache_root(),
            refresh: false,
            offline: false,
            metadata_expire: Duration::from_secs(6 * 3600),
            wanted_files: Vec::new(),
            verbose: false,
        }
    }
}

/// What happened for one repository.
#[derive(Debug, Clone)]
pub struct RepoLoad {
    pub id: String,
    pub packages: usize,
    /// The parsed metadata came from the cache (no XML was parsed).
    pub from_cache: bool,
    /// The network was used.
    pub network: bool,
}

/// Loads every repository into one pool.
pub fn load(specs: &[RepoSpec], opts: &LoadOptions) -> Result<(Pool, Vec<RepoLoad>), RepoError> {
    let mut pool = Pool::new();
    let mut report = Vec::new();
    let mut sources = Vec::new();
    for spec in specs {
        let loaded = load_one(spec, opts)?;
        if opts.verbose {
            eprintln!(
                "kiln: repository `{}`: {} packages ({})",
                spec.id,
                loaded.data.packages.len(),
                if loaded.report.from_cache {
                    "cached metadata"
                } else {
                    "metadata parsed"
                }
            );
        }
        report.push(loaded.report);
        sources.push((loaded.bases, loaded.repomd, loaded.dir));
        pool.add_repo(loaded.info, loaded.data);
    }
    add_file_provides(&mut pool, &sources, specs, opts)?;
    Ok((pool, report))
}

struct Loaded {
    info: RepoInfo,
    data: RepoData,
    report: RepoLoad,
    bases: Vec<String>,
    repomd: Repomd,
    dir: PathBuf,
}

fn short_hash(parts: &[&str]) -> String {
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..8])
}

fn fetch_err(repo: &str) -> impl Fn(FetchError) -> RepoError + '_ {
    move |source| RepoError::Fetch {
        repo: repo.to_string(),
        source,
    }
}

fn load_one(spec: &RepoSpec, opts: &LoadOptions) -> Result<Loaded, RepoError> {
    let origin: Vec<&str> = spec
        .baseurls
        .iter()
        .map(String::as_str)
        .chain(spec.metalink.as_deref())
        .chain(spec.mirrorlist.as_deref())
        .collect();
    if origin.is_empty() {
        return Err(RepoError::Invalid {
            repo: spec.id.clone(),
            message: "no baseurl, metalink or mirrorlist".into(),
        });
    }
    let dir = opts.cache_dir.join("metadata").join(format!(
        "{}-{}",
        sanitize(&spec.id),
        short_hash(&origin)
    ));
    let remote = origin.iter().any(|u| transport::is_remote(u));
    let cached_repomd = dir.join("repomd.xml");
    let fresh = !opts.refresh
        && std::fs::metadata(&cached_repomd)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age < opts.metadata_expire);
    let mut network = false;

    let (bases, repomd_bytes) = if remote && (fresh || opts.offline) && cached_repomd.exists() {
        let bytes = std::fs::read(&cached_repomd).map_err(|e| RepoError::Invalid {
            repo: spec.id.clone(),
            message: format!("cannot read the cached {}: {e}", cached_repomd.display()),
        })?;
        (
            read_bases(&dir).unwrap_or_else(|| spec.baseurls.clone()),
            bytes,
        )
    } else {
        if remote && opts.offline {
            return Err(RepoError::Offline {
                repo: spec.id.clone(),
                url: origin[0].to_string(),
            });
        }
        network = remote;
        let bases = base_urls(spec)?;
        let bytes = transport::get_from(&bases, "repodata/repomd.xml", None)
            .map_err(fetch_err(&spec.id))?;
        if remote {
            // Remember what was fetched and from where, so the next run within
            // metadata_expire needs no network at all.
            let _ = cache::write_atomic(&cached_repomd, &bytes);
            let _ = cache::write_atomic(&dir.join("baseurls"), bases.join("\n").as_bytes());
        }
        (bases, bytes)
    };
    let revision = hex::encode(sha2::Sha256::digest(&repomd_bytes));
    let repomd = Repomd::parse(&repomd_bytes).map_err(|message| RepoError::Parse {
        repo: spec.id.clone(),
        file: "repodata/repomd.xml".into(),
        message,
    })?;

    let cache_file = dir.join("primary.kiln");
    let cached = std::fs::read(&cache_file)
        .ok()
        .and_then(|b| cache::decode(&b, &revision));
    let from_cache = cached.is_some();
    let data = match cached {
        Some(d) => d,
        None => {
            if remote && opts.offline {
                return Err(RepoError::Offline {
                    repo: spec.id.clone(),
                    url: bases.first().cloned().unwrap_or_default(),
                });
            }
            network |= remote;
            let data = parse_metadata(spec, &bases, &repomd)?;
            if let Err(e) = cache::write_atomic(&cache_file, &cache::encode(&data, &revision))
                && opts.verbose
            {
                eprintln!(
                    "kiln: cannot write the metadata cache {}: {e}",
                    cache_file.display()
                );
            }
            data
        }
    };
    let info = RepoInfo {
        id: spec.id.clone(),
        baseurl: bases.first().cloned().unwrap_or_default(),
        priority: spec.priority,
        cost: spec.cost,
        revision,
    };
    Ok(Loaded {
        report: RepoLoad {
            id: spec.id.clone(),
            packages: data.packages.len(),
            from_cache,
            network,
        },
        info,
        data,
        bases,
        repomd,
        dir,
    })
}

fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn read_bases(dir: &std::path::Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(dir.join("baseurls")).ok()?;
    let v: Vec<String> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    (!v.is_empty()).then_some(v)
}

/// The base URLs to read from: `baseurl`, then the mirrors a metalink or mirror list names.
fn base_urls(spec: &RepoSpec) -> Result<Vec<String>, RepoError> {
    let mut out = spec.baseurls.clone();
    if let Some(ml) = &spec.metalink {
        let bytes = transport::get(ml).map_err(fetch_err(&spec.id))?;
        out.extend(metalink_urls(&bytes).map_err(|message| RepoError::Parse {
            repo: spec.id.clone(),
            file: ml.clone(),
            message,
        })?);
    }
    if let Some(ml) = &spec.mirrorlist {
        let bytes = transport::get(ml).map_err(fetch_err(&spec.id))?;
        out.extend(
            String::from_utf8_lossy(&bytes)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    if out.is_empty() {
        return Err(RepoError::Invalid {
            repo: spec.id.clone(),
            message: "the metalink or mirror list names no mirrors".into(),
        });
    }
    Ok(out)
}

/// Mirror base URLs from a metalink document (its URLs point at repodata/repomd.xml).
fn metalink_urls(bytes: &[u8]) -> Result<Vec<String>, String> {
    let mut urls = Vec::new();
    let mut xml = xml::XmlStream::new(bytes);
    xml.for_each(|ctx, item| {
        if let xml::Item::End(b"url") = item {
            let u = ctx.text.trim();
            if let Some(base) = u.strip_suffix("/repodata/repomd.xml")
                && transport::is_remote(u)
            {
                urls.push(base.to_string());
            }
        }
        Ok(())
    })?;
    Ok(urls)
}

fn parse_metadata(
    spec: &RepoSpec,
    bases: &[String],
    repomd: &Repomd,
) -> Result<RepoData, RepoError> {
    let parse_err = |file: &str, message: String| RepoError::Parse {
        repo: spec.id.clone(),
        file: file.to_string(),
        message,
    };
    let mut data = RepoData::new();
    let primary = repomd
        .find(&["primary"])
        .ok_or_else(|| RepoError::Invalid {
            repo: spec.id.clone(),
            message: "repomd.xml lists no primary metadata".into(),
        })?;
    let bytes = transport::get_from(
        bases,
        &primary.href,
        Some((&primary.checksum_type, &primary.checksum)),
    )
    .map_err(fetch_err(&spec.id))?;
    let reader = decompress::open(BufReader::new(&bytes[..]))
        .map_err(|e| parse_err(&primary.href, e.to_string()))?;
    primary::parse(reader, &mut data).map_err(|m| parse_err(&primary.href, m))?;
    if let Some(group) = repomd.find(&["group_gz", "group"]) {
        let bytes = transport::get_from(
            bases,
            &group.href,
            Some((&group.checksum_type, &group.checksum)),
        )
        .map_err(fetch_err(&spec.id))?;
        let reader = decompress::open(BufReader::new(&bytes[..]))
            .map_err(|e| parse_err(&group.href, e.to_string()))?;
        comps::parse(reader, &mut data).map_err(|m| parse_err(&group.href, m))?;
    }
    Ok(data)
}

/// File dependencies primary.xml cannot answer are looked up in filelists.xml (once per
/// repository revision and set of paths; the answer is cached).
fn add_file_provides(
    pool: &mut Pool,
    sources: &[(Vec<String>, Repomd, PathBuf)],
    specs: &[RepoSpec],
    opts: &LoadOptions,
) -> Result<(), RepoError> {
    let mut wanted: BTreeSet<String> = opts
        .wanted_files
        .iter()
        .filter(|p| p.starts_with('/'))
        .cloned()
        .collect();
    for d in &pool.deps {
        if !d.is_rich() && pool.str(d.name).starts_with('/') {
            wanted.insert(pool.str(d.name).to_string());
        }
    }
    wanted.retain(|p| {
        pool.strings
            .lookup(p)
            .is_none_or(|s| pool.providers_raw(s).is_empty())
    });
    if wanted.is_empty() {
        return Ok(());
    }
    let key = short_hash(&wanted.iter().map(String::as_str).collect::<Vec<_>>());
    let mut found = Vec::new();
    for (repo, (bases, repomd, dir)) in sources.iter().enumerate() {
        let spec = &specs[repo];
        let cache_file = dir.join(format!("filelists-{key}.lookup"));
        let revision = &pool.repos[repo].revision;
        let by_checksum: HashMap<&str, u32> = pool
            .packages
            .iter()
            .enumerate()
            .filter(|(_, p)| p.repo == repo as u32)
            .map(|(i, p)| (pool.str(p.checksum), i as u32))
            .collect();
        let lookup = match read_lookup(&cache_file, revision) {
            Some(l) => l,
            None => {
                let Some(fl) = repomd.find(&["filelists"]) else {
                    continue;
                };
                if opts.offline && bases.iter().any(|b| transport::is_remote(b)) {
                    return Err(RepoError::Offline {
                        repo: spec.id.clone(),
                        url: bases[0].clone(),
                    });
                }
                if opts.verbose {
                    eprintln!(
                        "kiln: repository `{}`: reading filelists for {} file dependencies",
                        spec.id,
                        wanted.len()
                    );
                }
                let bytes =
                    transport::get_from(bases, &fl.href, Some((&fl.checksum_type, &fl.checksum)))
                        .map_err(fetch_err(&spec.id))?;
                let reader =
                    decompress::open(BufReader::new(&bytes[..])).map_err(|e| RepoError::Parse {
                        repo: spec.id.clone(),
                        file: fl.href.clone(),
                        message: e.to_string(),
                    })?;
                let l = filelists::find(reader, &wanted).map_err(|message| RepoError::Parse {
                    repo: spec.id.clone(),
                    file: fl.href.clone(),
                    message,
                })?;
                let _ = write_lookup(&cache_file, revision, &l);
                l
            }
        };
        for (path, ids) in lookup {
            for id in ids {
                if let Some(&pkg) = by_checksum.get(id.as_str()) {
                    found.push((path.clone(), pkg));
                }
            }
        }
    }
    pool.add_files(found);
    Ok(())
}

fn read_lookup(path: &std::path::Path, revision: &str) -> Option<BTreeMap<String, Vec<String>>> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    if lines.next()? != revision {
        return None;
    }
    let mut out = BTreeMap::new();
    for line in lines {
        let (path, ids) = line.split_once('\t')?;
        out.insert(
            path.to_string(),
            ids.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        );
    }
    Some(out)
}

fn write_lookup(
    path: &std::path::Path,
    revision: &str,
    l: &BTreeMap<String, Vec<String>>,
) -> std::io::Result<()> {
    let mut text = format!("{revision}\n");
    for (p, ids) in l {
        text.push_str(&format!("{p}\t{}\n", ids.join(",")));
    }
    cache::write_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metalinks() {
        let doc = br#"<metalink><files><file name="repomd.xml"><resources>
<url protocol="https" type="https">https://m1.example/pub/base/x86_64/repodata/repomd.xml</url>
<url protocol="rsync" type="rsync">rsync://m2.example/base/repodata/repomd.xml</url>
</resources></file></files></metalink>"#;
        assert_eq!(
            metalink_urls(doc).unwrap(),
            ["https://m1.example/pub/base/x86_64"]
        );
    }
}
