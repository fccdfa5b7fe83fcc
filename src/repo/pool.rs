//! The package pool: every package of every repository with its dependencies and files, as
//! compact records over interned strings, plus the indexes the resolver asks (who provides X).

use std::sync::OnceLock;

use super::strings::{Sid, Strings};
use crate::resolve::evr::{Sense, compare};

/// Kinds of dependency a package carries, in the order they are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepKind {
    Provides = 0,
    Requires = 1,
    Conflicts = 2,
    Obsoletes = 3,
    Recommends = 4,
    Suggests = 5,
    Supplements = 6,
    Enhances = 7,
}

pub const DEP_KINDS: usize = 8;

impl DepKind {
    pub const ALL: [DepKind; DEP_KINDS] = [
        DepKind::Provides,
        DepKind::Requires,
        DepKind::Conflicts,
        DepKind::Obsoletes,
        DepKind::Recommends,
        DepKind::Suggests,
        DepKind::Supplements,
        DepKind::Enhances,
    ];

    /// The element name in primary.xml (`rpm:requires`…).
    pub fn from_tag(tag: &[u8]) -> Option<DepKind> {
        Some(match tag {
            b"rpm:provides" => DepKind::Provides,
            b"rpm:requires" => DepKind::Requires,
            b"rpm:conflicts" => DepKind::Conflicts,
            b"rpm:obsoletes" => DepKind::Obsoletes,
            b"rpm:recommends" => DepKind::Recommends,
            b"rpm:suggests" => DepKind::Suggests,
            b"rpm:supplements" => DepKind::Supplements,
            b"rpm:enhances" => DepKind::Enhances,
            _ => return None,
        })
    }
}

/// Flag bits of a dependency entry beyond the version sense.
pub const FLAG_PRE: u8 = 0x10;
/// The name is a whole rich (boolean) dependency expression.
pub const FLAG_RICH: u8 = 0x20;
pub const SENSE_MASK: u8 = 0x0e;

/// One dependency as repodata states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DepEntry {
    pub name: Sid,
    pub flags: u8,
    pub epoch: u32,
    pub version: Sid,
    pub release: Sid,
}

impl DepEntry {
    pub fn sense(&self) -> Sense {
        Sense(self.flags & SENSE_MASK)
    }
    pub fn is_rich(&self) -> bool {
        self.flags & FLAG_RICH != 0
    }
    pub fn is_pre(&self) -> bool {
        self.flags & FLAG_PRE != 0
    }
    pub fn is_versioned(&self) -> bool {
        self.flags & SENSE_MASK != 0 && !self.version.is_empty()
    }
}

/// One package.
#[derive(Debug, Clone, Default)]
pub struct Package {
    pub name: Sid,
    pub arch: Sid,
    pub epoch: u32,
    pub version: Sid,
    pub release: Sid,
    /// Index into the pool's repositories.
    pub repo: u32,
    pub location: Sid,
    pub checksum_type: Sid,
    pub checksum: Sid,
    pub size: u64,
    pub installed_size: u64,
    pub build_time: u64,
    pub license: Sid,
    pub sourcerpm: Sid,
    pub summary: Sid,
    pub url: Sid,
    pub vendor: Sid,
    /// `deps[k]..deps[k + 1]` are the entries of kind `k` in the pool's `deps`.
    pub deps: [u32; DEP_KINDS + 1],
    /// `files[0]..files[1]` are this package's primary file list in the pool's `files`.
    pub files: [u32; 2],
}

/// A comps group.
#[derive(Debug, Clone, Default)]
pub struct Group {
    pub id: Sid,
    pub name: Sid,
    pub packages: Vec<GroupPackage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupReq {
    Mandatory = 0,
    Default = 1,
    Optional = 2,
    Conditional = 3,
}

#[derive(Debug, Clone, Copy)]
pub struct GroupPackage {
    pub name: Sid,
    pub kind: GroupReq,
    /// For conditional entries: installed only if this package is.
    pub requires: Sid,
}

/// The metadata of one repository, with its own strings (as parsed or read from the cache).
#[derive(Debug, Default)]
pub struct RepoData {
    pub strings: Strings,
    pub packages: Vec<Package>,
    pub deps: Vec<DepEntry>,
    pub files: Vec<Sid>,
    pub groups: Vec<Group>,
}

impl RepoData {
    pub fn new() -> Self {
        RepoData {
            strings: Strings::new(),
            ..Default::default()
        }
    }
}

/// A repository as the pool knows it.
#[derive(Debug, Clone)]
pub struct RepoInfo {
    pub id: String,
    /// Where packages are downloaded from (the base their `location` is relative to).
    pub baseurl: String,
    pub priority: u8,
    pub cost: u32,
    /// The checksum of the repomd.xml the metadata came from.
    pub revision: String,
}

/// Compressed sparse rows: for key `k`, `items[starts[k]..starts[k + 1]]`.
#[derive(Debug, Default)]
struct Index {
    starts: Vec<u32>,
    items: Vec<(u32, u32)>,
}

impl Index {
    fn build(keys: usize, entries: impl Iterator<Item = (Sid, (u32, u32))> + Clone) -> Index {
        let mut counts = vec![0u32; keys + 1];
        for (k, _) in entries.clone() {
            counts[k.0 as usize + 1] += 1;
        }
        for i in 1..counts.len() {
            counts[i] += counts[i - 1];
        }
        let mut fill = counts.clone();
        let mut items = vec![(0, 0); *counts.last().unwrap_or(&0) as usize];
        for (k, v) in entries {
            let slot = &mut fill[k.0 as usize];
            items[*slot as usize] = v;
            *slot += 1;
        }
        Index {
            starts: counts,
            items,
        }
    }

    fn get(&self, k: Sid) -> &[(u32, u32)] {
        let k = k.0 as usize;
        if k + 1 >= self.starts.len() {
            return &[];
        }
        &self.items[self.starts[k] as usize..self.starts[k + 1] as usize]
    }
}

/// Every package of every repository being resolved against.
#[derive(Debug, Default)]
pub struct Pool {
    pub strings: Strings,
    pub packages: Vec<Package>,
    pub deps: Vec<DepEntry>,
    pub files: Vec<Sid>,
    pub repos: Vec<RepoInfo>,
    /// Groups of each repository (same order as `repos`).
    pub groups: Vec<Vec<Group>>,
    /// Files found in filelists.xml for file dependencies primary.xml could not answer:
    /// (path, package).
    pub extra_files: Vec<(Sid, u32)>,
    /// capability name → (package, provide entry index or u32::MAX for a file)
    provides: OnceLock<Index>,
    /// package name → (package, 0)
    names: OnceLock<Index>,
}

/// A file in a package's primary file list provides its path, unversioned.
pub const FILE_PROVIDE: u32 = u32::MAX;

impl Pool {
    pub fn new() -> Self {
        Pool {
            strings: Strings::new(),
            ..Default::default()
        }
    }

    /// Adds one repository's metadata. The first repository's strings are taken over as they
    /// are; later ones are re-interned into them.
    pub fn add_repo(&mut self, info: RepoInfo, data: RepoData) {
        let repo = self.repos.len() as u32;
        self.repos.push(info);
        self.provides = OnceLock::new();
        self.names = OnceLock::new();
        if self.packages.is_empty() && self.strings.len() <= 1 {
            self.strings = data.strings;
            self.deps = data.deps;
            self.files = data.files;
            self.packages = data
                .packages
                .into_iter()
                .map(|mut p| {
                    p.repo = repo;
                    p
                })
                .collect();
            self.groups.push(data.groups);
            return;
        }
        let map: Vec<Sid> = (0..data.strings.len() as u32)
            .map(|i| self.strings.intern(data.strings.get(Sid(i))))
            .collect();
        let m = |s: Sid| map[s.0 as usize];
        let dep_base = self.deps.len() as u32;
        let file_base = self.files.len() as u32;
        self.deps.extend(data.deps.iter().map(|d| DepEntry {
            name: m(d.name),
            version: m(d.version),
            release: m(d.release),
            ..*d
        }));
        self.files.extend(data.files.iter().map(|&f| m(f)));
        for p in data.packages {
            self.packages.push(Package {
                name: m(p.name),
                arch: m(p.arch),
                version: m(p.version),
                release: m(p.release),
                repo,
                location: m(p.location),
                checksum_type: m(p.checksum_type),
                checksum: m(p.checksum),
                license: m(p.license),
                sourcerpm: m(p.sourcerpm),
                summary: m(p.summary),
                url: m(p.url),
                vendor: m(p.vendor),
                deps: p.deps.map(|d| d + dep_base),
                files: p.files.map(|f| f + file_base),
                ..p
            });
        }
        self.groups.push(
            data.groups
                .into_iter()
                .map(|g| Group {
                    id: m(g.id),
                    name: m(g.name),
                    packages: g
                        .packages
                        .into_iter()
                        .map(|gp| GroupPackage {
                            name: m(gp.name),
                            requires: m(gp.requires),
                            ..gp
                        })
                        .collect(),
                })
                .collect(),
        );
    }

    /// Adds file provides found in filelists.xml.
    pub fn add_files(&mut self, files: impl IntoIterator<Item = (String, u32)>) {
        for (path, pkg) in files {
            let sid = self.strings.intern(&path);
            self.extra_files.push((sid, pkg));
        }
        self.extra_files.sort_unstable();
        self.extra_files.dedup();
        self.provides = OnceLock::new();
    }

    pub fn str(&self, s: Sid) -> &str {
        self.strings.get(s)
    }

    pub fn deps_of(&self, pkg: u32, kind: DepKind) -> &[DepEntry] {
        let p = &self.packages[pkg as usize];
        let k = kind as usize;
        &self.deps[p.deps[k] as usize..p.deps[k + 1] as usize]
    }

    pub fn files_of(&self, pkg: u32) -> &[Sid] {
        let p = &self.packages[pkg as usize];
        &self.files[p.files[0] as usize..p.files[1] as usize]
    }

    fn provides_index(&self) -> &Index {
        self.provides.get_or_init(|| {
            let entries = self.packages.iter().enumerate().flat_map(move |(i, p)| {
                let provides = (p.deps[0]..p.deps[1])
                    .map(move |d| (self.deps[d as usize].name, (i as u32, d)));
                let files = (p.files[0]..p.files[1])
                    .map(move |f| (self.files[f as usize], (i as u32, FILE_PROVIDE)));
                provides.chain(files)
            });
            let extra = self
                .extra_files
                .iter()
                .map(|&(path, p)| (path, (p, FILE_PROVIDE)));
            let entries = entries.chain(extra);
            Index::build(self.strings.len(), entries)
        })
    }

    fn names_index(&self) -> &Index {
        self.names.get_or_init(|| {
            let entries = self
                .packages
                .iter()
                .enumerate()
                .map(|(i, p)| (p.name, (i as u32, 0)));
            Index::build(self.strings.len(), entries)
        })
    }

    /// Packages named `name`.
    pub fn by_name(&self, name: Sid) -> impl Iterator<Item = u32> + '_ {
        self.names_index().get(name).iter().map(|&(p, _)| p)
    }

    /// Provide entries named `name`: (package, provide index, or FILE_PROVIDE for a file path).
    pub fn providers_raw(&self, name: Sid) -> &[(u32, u32)] {
        self.provides_index().get(name)
    }

    /// Whether the provide `(pkg, idx)` satisfies a requirement of `name` with range.
    pub fn provide_matches(&self, idx: u32, req: &DepEntry) -> bool {
        if idx == FILE_PROVIDE || !req.is_versioned() {
            return true;
        }
        let p = &self.deps[idx as usize];
        if !p.is_versioned() {
            return true;
        }
        crate::resolve::evr::ranges_overlap(
            Some((
                p.sense(),
                p.epoch,
                self.str(p.version),
                Some(self.str(p.release)),
            )),
            Some((
                req.sense(),
                req.epoch,
                self.str(req.version),
                Some(self.str(req.release)),
            )),
        )
    }

    /// Packages providing `req` (a simple dependency), in pool order, without duplicates.
    pub fn what_provides(&self, req: &DepEntry) -> Vec<u32> {
        let mut out: Vec<u32> = self
            .providers_raw(req.name)
            .iter()
            .filter(|&&(_, idx)| self.provide_matches(idx, req))
            .map(|&(p, _)| p)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Whether package `pkg` itself (its name and EVR) matches `req` (for Obsoletes, which
    /// rpm matches against package names).
    pub fn name_matches(&self, pkg: u32, req: &DepEntry) -> bool {
        let p = &self.packages[pkg as usize];
        if p.name != req.name {
            return false;
        }
        if !req.is_versioned() {
            return true;
        }
        crate::resolve::evr::ranges_overlap(
            Some((
                Sense(Sense::EQUAL),
                p.epoch,
                self.str(p.version),
                Some(self.str(p.release)),
            )),
            Some((
                req.sense(),
                req.epoch,
                self.str(req.version),
                Some(self.str(req.release)),
            )),
        )
    }

    /// Orders two packages by EVR.
    pub fn evr_cmp(&self, a: u32, b: u32) -> std::cmp::Ordering {
        let (pa, pb) = (&self.packages[a as usize], &self.packages[b as usize]);
        compare(
            pa.epoch,
            self.str(pa.version),
            Some(self.str(pa.release)),
            pb.epoch,
            self.str(pb.version),
            Some(self.str(pb.release)),
        )
    }

    /// `name-[epoch:]version-release.arch`
    pub fn nevra(&self, pkg: u32) -> String {
        let p = &self.packages[pkg as usize];
        format!(
            "{}-{}.{}",
            self.str(p.name),
            self.evr(pkg),
            self.str(p.arch)
        )
    }

    /// `[epoch:]version-release`
    pub fn evr(&self, pkg: u32) -> String {
        let p = &self.packages[pkg as usize];
        let epoch = if p.epoch > 0 {
            format!("{}:", p.epoch)
        } else {
            String::new()
        };
        format!("{epoch}{}-{}", self.str(p.version), self.str(p.release))
    }

    /// A dependency as text: `name >= 1.0-1`, or the rich expression.
    pub fn dep_text(&self, d: &DepEntry) -> String {
        let mut s = self.str(d.name).to_string();
        if d.is_versioned() {
            s.push(' ');
            s.push_str(d.sense().op());
            s.push(' ');
            if d.epoch > 0 {
                s.push_str(&format!("{}:", d.epoch));
            }
            s.push_str(self.str(d.version));
            if !d.release.is_empty() {
                s.push('-');
                s.push_str(self.str(d.release));
            }
        }
        s
    }
}
