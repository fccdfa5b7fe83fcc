//! One package as the installer needs it: identity, file list with modes, owners, flags, links
//! and capabilities, scriptlets and triggers — read from the RPM header with the rpm crate.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use rpm::{IndexTag, PackageMetadata};

/// rpm's RPMFILE_* flags.
pub mod flags {
    pub const CONFIG: u32 = 1 << 0;
    pub const DOC: u32 = 1 << 1;
    pub const MISSINGOK: u32 = 1 << 3;
    pub const NOREPLACE: u32 = 1 << 4;
    pub const GHOST: u32 = 1 << 6;
    pub const LICENSE: u32 = 1 << 7;
    pub const README: u32 = 1 << 8;
    pub const ARTIFACT: u32 = 1 << 12;
}

/// One file of a package, from the header.
#[derive(Debug, Clone)]
pub struct PkgFile {
    pub path: String,
    /// st_mode: type and permission bits.
    pub mode: u32,
    pub user: String,
    pub group: String,
    pub mtime: u32,
    pub size: u64,
    pub flags: u32,
    pub linkto: String,
    /// (device, inode) pairs identify hardlinks within the package.
    pub inode: (u32, u32),
    pub rdev: u32,
    pub caps: String,
    pub lang: String,
    pub color: u32,
    pub digest: String,
}

impl PkgFile {
    pub fn file_type(&self) -> u32 {
        self.mode & 0o170000
    }
    pub fn is_dir(&self) -> bool {
        self.file_type() == 0o040000
    }
    pub fn is_symlink(&self) -> bool {
        self.file_type() == 0o120000
    }
    pub fn is_regular(&self) -> bool {
        self.file_type() == 0o100000
    }
}

/// A scriptlet: interpreter (with arguments) and body.
#[derive(Debug, Clone)]
pub struct Scriptlet {
    pub program: Vec<String>,
    pub body: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerKind {
    In,
    Un,
    PostUn,
    PreIn,
}

/// A trigger: classic (on package names) or file trigger (on path prefixes).
#[derive(Debug, Clone)]
pub struct Trigger {
    pub kind: TriggerKind,
    pub script: Scriptlet,
    /// Package names (classic) or path prefixes (file triggers).
    pub conditions: Vec<String>,
    /// File triggers: rpm runs higher priorities first (default 1000000).
    pub priority: u32,
}

/// Which tag a dependency came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepKind {
    Requires,
    Recommends,
    Suggests,
    Supplements,
    Enhances,
    OrderWith,
}

/// One dependency with its rpmsense flags and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderDep {
    pub name: String,
    pub flags: u32,
    /// `[epoch:]version[-release]`, empty when unversioned.
    pub evr: String,
    pub kind: DepKind,
}

/// A capability the package provides, with its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provide {
    pub name: String,
    pub flags: u32,
    pub evr: String,
}

/// What the installer needs from one package.
#[derive(Debug, Clone)]
pub struct Package {
    pub path: PathBuf,
    pub name: String,
    pub epoch: u32,
    pub version: String,
    pub release: String,
    pub arch: String,
    pub build_time: u64,
    pub files: Vec<PkgFile>,
    pub pretrans: Option<Scriptlet>,
    pub pre: Option<Scriptlet>,
    pub post: Option<Scriptlet>,
    pub posttrans: Option<Scriptlet>,
    pub triggers: Vec<Trigger>,
    pub file_triggers: Vec<Trigger>,
    pub trans_file_triggers: Vec<Trigger>,
    /// The dependencies transaction ordering looks at, in rpm's order of tags.
    pub order_deps: Vec<OrderDep>,
    pub provides: Vec<Provide>,
    pub payload_compressor: String,
    pub info: Info,
}

/// What package manifests and SBOMs report about a package; `None` where the header has no such
/// tag (rpm prints those as `(none)`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Info {
    pub has_epoch: bool,
    pub vendor: Option<String>,
    pub license: Option<String>,
    pub source_rpm: Option<String>,
    pub url: Option<String>,
    pub summary: Option<String>,
    /// Installed size in bytes (`%{SIZE}`).
    pub size: u64,
}

impl Package {
    pub fn nevra(&self) -> String {
        let epoch = if self.epoch > 0 {
            format!("{}:", self.epoch)
        } else {
            String::new()
        };
        format!(
            "{}-{epoch}{}-{}.{}",
            self.name, self.version, self.release, self.arch
        )
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PackageError {
    pub path: String,
    pub message: String,
}

/// Reads the header of an RPM file.
pub fn read(path: &Path) -> Result<(Package, PackageMetadata), PackageError> {
    let err = |m: String| PackageError {
        path: path.display().to_string(),
        message: m,
    };
    let file = File::open(path).map_err(|e| err(e.to_string()))?;
    let meta = PackageMetadata::parse(&mut BufReader::new(file))
        .map_err(|e| err(format!("not a readable RPM: {e}")))?;
    let pkg = from_metadata(path, &meta).map_err(err)?;
    Ok((pkg, meta))
}

fn strings(h: &rpm::Header<IndexTag>, tag: IndexTag) -> Vec<String> {
    h.get_entry_data_as_string_array(tag)
        .map(|v| v.into_iter().map(str::to_string).collect())
        .unwrap_or_default()
}

fn u32s(h: &rpm::Header<IndexTag>, tag: IndexTag) -> Vec<u32> {
    h.get_entry_data_as_u32_array(tag).unwrap_or_default()
}

fn scriptlet(s: Result<rpm::Scriptlet, rpm::Error>) -> Option<Scriptlet> {
    let s = s.ok()?;
    let program = s.program.unwrap_or_else(|| vec!["/bin/sh".to_string()]);
    // A scriptlet with a program but no body (e.g. `%post -p /sbin/ldconfig`) is still run.
    if s.script.is_empty() && program.is_empty() {
        return None;
    }
    Some(Scriptlet {
        program,
        body: s.script,
    })
}

fn triggers(list: Result<Vec<rpm::Trigger>, rpm::Error>, priorities: &[u32]) -> Vec<Trigger> {
    list.unwrap_or_default()
        .into_iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let bits = t.conditions.first().map(|c| c.flags.bits()).unwrap_or(0);
            // RPMSENSE_TRIGGERIN/UN/POSTUN/PREIN
            let kind = if bits & (1 << 16) != 0 {
                TriggerKind::In
            } else if bits & (1 << 17) != 0 {
                TriggerKind::Un
            } else if bits & (1 << 18) != 0 {
                TriggerKind::PostUn
            } else if bits & (1 << 25) != 0 {
                TriggerKind::PreIn
            } else {
                return None;
            };
            Some(Trigger {
                kind,
                script: Scriptlet {
                    program: if t.program.is_empty() {
                        vec!["/bin/sh".into()]
                    } else {
                        t.program
                    },
                    body: t.script,
                },
                conditions: t.conditions.into_iter().map(|c| c.name).collect(),
                priority: priorities.get(i).copied().unwrap_or(1_000_000),
            })
        })
        .collect()
}

fn from_metadata(path: &Path, meta: &PackageMetadata) -> Result<Package, String> {
    let h = &meta.header;
    let basenames = strings(h, IndexTag::RPMTAG_BASENAMES);
    let dirnames = strings(h, IndexTag::RPMTAG_DIRNAMES);
    let dirindexes = u32s(h, IndexTag::RPMTAG_DIRINDEXES);
    let n = basenames.len();
    let modes: Vec<u32> = h
        .get_entry_data_as_u16_array(IndexTag::RPMTAG_FILEMODES)
        .unwrap_or_default()
        .into_iter()
        .map(u32::from)
        .collect();
    let users = strings(h, IndexTag::RPMTAG_FILEUSERNAME);
    let groups = strings(h, IndexTag::RPMTAG_FILEGROUPNAME);
    let mtimes = u32s(h, IndexTag::RPMTAG_FILEMTIMES);
    let sizes: Vec<u64> = match h.get_entry_data_as_u64_array(IndexTag::RPMTAG_LONGFILESIZES) {
        Ok(v) => v,
        Err(_) => u32s(h, IndexTag::RPMTAG_FILESIZES)
            .into_iter()
            .map(u64::from)
            .collect(),
    };
    let fflags = u32s(h, IndexTag::RPMTAG_FILEFLAGS);
    let links = strings(h, IndexTag::RPMTAG_FILELINKTOS);
    let inodes = u32s(h, IndexTag::RPMTAG_FILEINODES);
    let devices = u32s(h, IndexTag::RPMTAG_FILEDEVICES);
    let rdevs: Vec<u32> = h
        .get_entry_data_as_u16_array(IndexTag::RPMTAG_FILERDEVS)
        .unwrap_or_default()
        .into_iter()
        .map(u32::from)
        .collect();
    let caps = strings(h, IndexTag::RPMTAG_FILECAPS);
    let langs = strings(h, IndexTag::RPMTAG_FILELANGS);
    let colors = u32s(h, IndexTag::RPMTAG_FILECOLORS);
    let digests = strings(h, IndexTag::RPMTAG_FILEDIGESTS);
    let need = |v: usize, what: &str| -> Result<(), String> {
        if v != n {
            Err(format!(
                "the header's {what} list has {v} entries for {n} files"
            ))
        } else {
            Ok(())
        }
    };
    if n > 0 {
        need(dirindexes.len(), "directory index")?;
        need(modes.len(), "mode")?;
        need(users.len(), "owner")?;
        need(groups.len(), "group")?;
    }
    let get = |v: &Vec<String>, i: usize| v.get(i).cloned().unwrap_or_default();
    let mut files = Vec::with_capacity(n);
    for i in 0..n {
        let dir = dirnames
            .get(dirindexes[i] as usize)
            .ok_or_else(|| format!("file {i} points at a directory the header does not have"))?;
        files.push(PkgFile {
            path: format!("{dir}{}", basenames[i]),
            mode: modes[i],
            user: users[i].clone(),
            group: groups[i].clone(),
            mtime: mtimes.get(i).copied().unwrap_or(0),
            size: sizes.get(i).copied().unwrap_or(0),
            flags: fflags.get(i).copied().unwrap_or(0),
            linkto: get(&links, i),
            inode: (
                devices.get(i).copied().unwrap_or(0),
                inodes.get(i).copied().unwrap_or(i as u32),
            ),
            rdev: rdevs.get(i).copied().unwrap_or(0),
            caps: get(&caps, i),
            lang: get(&langs, i),
            color: colors.get(i).copied().unwrap_or(0),
            digest: get(&digests, i),
        });
    }
    let mut order_deps = Vec::new();
    for (kind, names, fl, vers) in [
        (
            DepKind::Requires,
            IndexTag::RPMTAG_REQUIRENAME,
            IndexTag::RPMTAG_REQUIREFLAGS,
            IndexTag::RPMTAG_REQUIREVERSION,
        ),
        (
            DepKind::Recommends,
            IndexTag::RPMTAG_RECOMMENDNAME,
            IndexTag::RPMTAG_RECOMMENDFLAGS,
            IndexTag::RPMTAG_RECOMMENDVERSION,
        ),
        (
            DepKind::Suggests,
            IndexTag::RPMTAG_SUGGESTNAME,
            IndexTag::RPMTAG_SUGGESTFLAGS,
            IndexTag::RPMTAG_SUGGESTVERSION,
        ),
        (
            DepKind::Supplements,
            IndexTag::RPMTAG_SUPPLEMENTNAME,
            IndexTag::RPMTAG_SUPPLEMENTFLAGS,
            IndexTag::RPMTAG_SUPPLEMENTVERSION,
        ),
        (
            DepKind::Enhances,
            IndexTag::RPMTAG_ENHANCENAME,
            IndexTag::RPMTAG_ENHANCEFLAGS,
            IndexTag::RPMTAG_ENHANCEVERSION,
        ),
        (
            DepKind::OrderWith,
            IndexTag::RPMTAG_ORDERNAME,
            IndexTag::RPMTAG_ORDERFLAGS,
            IndexTag::RPMTAG_ORDERVERSION,
        ),
    ] {
        let flags = u32s(h, fl);
        let versions = strings(h, vers);
        for (i, name) in strings(h, names).into_iter().enumerate() {
            order_deps.push(OrderDep {
                name,
                flags: flags.get(i).copied().unwrap_or(0),
                evr: versions.get(i).cloned().unwrap_or_default(),
                kind,
            });
        }
    }
    let prov_flags = u32s(h, IndexTag::RPMTAG_PROVIDEFLAGS);
    let prov_versions = strings(h, IndexTag::RPMTAG_PROVIDEVERSION);
    let provides = strings(h, IndexTag::RPMTAG_PROVIDENAME)
        .into_iter()
        .enumerate()
        .map(|(i, name)| Provide {
            name,
            flags: prov_flags.get(i).copied().unwrap_or(0),
            evr: prov_versions.get(i).cloned().unwrap_or_default(),
        })
        .collect();
    // Summary and the like may be i18n strings; their first (C locale) value is the one.
    let text = |tag| {
        h.get_entry_data_as_string(tag)
            .or_else(|_| h.get_entry_data_as_i18n_string(tag))
            .ok()
            .map(str::to_string)
    };
    let ftprio = u32s(h, IndexTag::RPMTAG_FILETRIGGERPRIORITIES);
    let tftprio = u32s(h, IndexTag::RPMTAG_TRANSFILETRIGGERPRIORITIES);
    Ok(Package {
        path: path.to_path_buf(),
        name: meta.get_name().map_err(|e| e.to_string())?.to_string(),
        epoch: meta.get_epoch().unwrap_or(0),
        version: meta.get_version().map_err(|e| e.to_string())?.to_string(),
        release: meta.get_release().map_err(|e| e.to_string())?.to_string(),
        arch: meta.get_arch().map_err(|e| e.to_string())?.to_string(),
        build_time: meta.get_build_time().unwrap_or(0),
        files,
        pretrans: scriptlet(meta.get_pre_trans_script()),
        pre: scriptlet(meta.get_pre_install_script()),
        post: scriptlet(meta.get_post_install_script()),
        posttrans: scriptlet(meta.get_post_trans_script()),
        triggers: triggers(meta.get_triggers(), &[]),
        file_triggers: triggers(meta.get_file_triggers(), &ftprio),
        trans_file_triggers: triggers(meta.get_trans_file_triggers(), &tftprio),
        order_deps,
        provides,
        payload_compressor: h
            .get_entry_data_as_string(IndexTag::RPMTAG_PAYLOADCOMPRESSOR)
            .unwrap_or("gzip")
            .to_string(),
        info: Info {
            has_epoch: meta.get_epoch().is_ok(),
            vendor: text(IndexTag::RPMTAG_VENDOR),
            license: text(IndexTag::RPMTAG_LICENSE),
            source_rpm: text(IndexTag::RPMTAG_SOURCERPM),
            url: text(IndexTag::RPMTAG_URL),
            summary: text(IndexTag::RPMTAG_SUMMARY),
            size: h
                .get_entry_data_as_u64(IndexTag::RPMTAG_LONGSIZE)
                .or_else(|_| {
                    h.get_entry_data_as_u32(IndexTag::RPMTAG_SIZE)
                        .map(u64::from)
                })
                .unwrap_or(0),
        },
    })
}
