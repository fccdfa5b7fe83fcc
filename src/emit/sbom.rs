//! SPDX 2.3 JSON software bills of materials: one document beside each image artifact
//! (`ARTIFACT.spdx.json`) listing the RPMs it holds, with licenses, suppliers, purls, checksums.
//!
//! Everything in a document derives from the artifact and its packages (no clock, host or random
//! value), so the same build gives the same bytes. See README.md, "SBOM", for each field.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::oci::rfc3339;
use super::{Artifact, Contents, DigestOf, EmitError, Image, Pending, io_err};
use crate::definition::{Arch, Definition};
use crate::install::package::{DepKind, Package};

/// The purl namespace of every package: the distribution the images are built from.
pub const PURL_NAMESPACE: &str = "azurelinux";
/// What the documents give for a value kiln does not know.
const NOASSERTION: &str = "NOASSERTION";
const DOCUMENT_ID: &str = "SPDXRef-DOCUMENT";
const ARTIFACT_ID: &str = "SPDXRef-Artifact";

#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    #[error("{artifact}: it holds {arch} packages, but no {arch} image was built")]
    NoImage { artifact: PathBuf, arch: Arch },
    #[error("{artifact}: package index {index} is past the {arch} image's {count} packages")]
    NoPackage {
        artifact: PathBuf,
        arch: Arch,
        index: usize,
        count: usize,
    },
    #[error("{nevra}: no sha256 is recorded for its package file {}", path.display())]
    NoChecksum { nevra: String, path: PathBuf },
    #[error(transparent)]
    Emit(#[from] EmitError),
}

/// Where the SBOM of `artifact` goes: the artifact's own name plus `.spdx.json`.
pub fn path_for(artifact: &Path) -> PathBuf {
    let mut name = artifact
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".spdx.json");
    artifact.with_file_name(name)
}

/// Writes the SBOM of `artifact` beside it (temporary name, then rename) and returns it as an
/// artifact of its own. `rpm_sha256` maps each package file's path to its sha256.
pub fn write(
    def: &Definition,
    artifact: &Artifact,
    images: &[Image<'_>],
    rpm_sha256: &BTreeMap<PathBuf, String>,
) -> Result<Artifact, SbomError> {
    let text = document(def, artifact, images, rpm_sha256)?;
    let dest = path_for(&artifact.path);
    let pending = Pending::new(&dest);
    std::fs::write(pending.path(), &text).map_err(io_err(pending.path()))?;
    let path = pending.commit()?;
    Ok(Artifact {
        path,
        size: text.len() as u64,
        sha256: hex::encode(Sha256::digest(text.as_bytes())),
        digest_of: DigestOf::File,
        contents: Vec::new(),
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    spdx_version: &'static str,
    data_license: &'static str,
    #[serde(rename = "SPDXID")]
    spdx_id: &'static str,
    name: String,
    document_namespace: String,
    creation_info: CreationInfo,
    document_describes: Vec<&'static str>,
    packages: Vec<SpdxPackage>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    has_extracted_licensing_infos: Vec<ExtractedLicense>,
    relationships: Vec<Relationship>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreationInfo {
    created: String,
    creators: Vec<String>,
    license_list_version: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpdxPackage {
    #[serde(rename = "SPDXID")]
    spdx_id: String,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_info: Option<String>,
    supplier: String,
    download_location: &'static str,
    files_analyzed: bool,
    checksums: Vec<Checksum>,
    #[serde(skip_serializing_if = "Option::is_none")]
    homepage: Option<String>,
    license_concluded: &'static str,
    license_declared: String,
    copyright_text: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_info: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    external_refs: Vec<ExternalRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    primary_package_purpose: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Checksum {
    algorithm: &'static str,
    checksum_value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExternalRef {
    reference_category: &'static str,
    reference_type: &'static str,
    reference_locator: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExtractedLicense {
    license_id: String,
    extracted_text: String,
    name: String,
    comment: String,
}

#[derive(Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
struct Relationship {
    spdx_element_id: String,
    relationship_type: &'static str,
    related_spdx_element: String,
}

fn relationship(from: &str, kind: &'static str, to: &str) -> Relationship {
    Relationship {
        spdx_element_id: from.into(),
        relationship_type: kind,
        related_spdx_element: to.into(),
    }
}

/// The SPDX document of `artifact`, as pretty JSON with a final newline.
pub fn document(
    def: &Definition,
    artifact: &Artifact,
    images: &[Image<'_>],
    rpm_sha256: &BTreeMap<PathBuf, String>,
) -> Result<String, SbomError> {
    let file_name = artifact
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut ids = IdAllocator::default();
    let mut licenses = Licenses::default();
    let mut packages = Vec::new();
    let mut relationships = BTreeSet::new();
    let mut depends = BTreeSet::new();
    // Every architecture's images may carry a different SOURCE_DATE_EPOCH default (the newest
    // package of each); the document takes the newest of those it describes.
    let mut created = None::<i64>;
    for contents in &artifact.contents {
        let image = images
            .iter()
            .find(|i| i.arch == contents.arch)
            .ok_or_else(|| SbomError::NoImage {
                artifact: artifact.path.clone(),
                arch: contents.arch,
            })?;
        created = Some(created.map_or(image.epoch, |c| c.max(image.epoch)));
        let kept = kept_packages(artifact, image, contents)?;
        let mut spdx_ids = BTreeMap::new();
        for &(index, p) in &kept {
            let sha = rpm_sha256
                .get(&p.path)
                .ok_or_else(|| SbomError::NoChecksum {
                    nevra: p.nevra(),
                    path: p.path.clone(),
                })?;
            let id = ids.allocate(&format!("RPM-{}-{}-{}", p.name, evr(p), p.arch));
            relationships.insert(relationship(ARTIFACT_ID, "CONTAINS", &id));
            packages.push(rpm_package(p, &id, sha, &mut licenses));
            spdx_ids.insert(index, id);
        }
        for (from, to) in dependencies(&kept) {
            depends.insert(relationship(&spdx_ids[&from], "DEPENDS_ON", &spdx_ids[&to]));
        }
    }
    packages.sort_by(|a, b| a.spdx_id.cmp(&b.spdx_id));
    packages.insert(0, artifact_package(def, artifact, &file_name));
    let mut all = vec![relationship(DOCUMENT_ID, "DESCRIBES", ARTIFACT_ID)];
    all.extend(relationships);
    all.extend(depends);

    let doc = Document {
        spdx_version: "SPDX-2.3",
        data_license: "CC0-1.0",
        spdx_id: DOCUMENT_ID,
        name: file_name.clone(),
        document_namespace: namespace(&file_name, artifact, &packages),
        creation_info: CreationInfo {
            created: rfc3339(created.unwrap_or(0)),
            creators: vec![format!("Tool: kiln-{}", env!("CARGO_PKG_VERSION"))],
            license_list_version: license_list_version(),
        },
        document_describes: vec![ARTIFACT_ID],
        packages,
        has_extracted_licensing_infos: licenses.extracted.into_values().collect(),
        relationships: all,
    };
    let mut text = serde_json::to_string_pretty(&doc).expect("SPDX documents serialize");
    text.push('\n');
    Ok(text)
}

/// The packages of `image` that `artifact` holds, with their indexes.
fn kept_packages<'a>(
    artifact: &Artifact,
    image: &'a Image<'_>,
    contents: &Contents,
) -> Result<Vec<(usize, &'a Package)>, SbomError> {
    contents
        .packages
        .iter()
        .map(|&i| {
            image
                .packages
                .get(i)
                .map(|p| (i, p))
                .ok_or_else(|| SbomError::NoPackage {
                    artifact: artifact.path.clone(),
                    arch: contents.arch,
                    index: i,
                    count: image.packages.len(),
                })
        })
        .collect()
}

/// The licence list the expressions were checked against, as SPDX's `M.N`.
fn license_list_version() -> String {
    let v = spdx::license_version();
    let mut parts = v.split('.');
    match (parts.next(), parts.next()) {
        (Some(a), Some(b)) => format!("{a}.{b}"),
        _ => v.to_string(),
    }
}

fn artifact_package(def: &Definition, artifact: &Artifact, file_name: &str) -> SpdxPackage {
    let (purpose, comment) = match &artifact.digest_of {
        DigestOf::File => ("FILE", None),
        DigestOf::OciManifest => (
            "CONTAINER",
            Some(
                "An OCI image layout directory; the checksum is the sha256 of the image manifest \
                 (or image index) blob its index.json names: the image digest."
                    .to_string(),
            ),
        ),
        DigestOf::Mtree(m) => (
            "OPERATING-SYSTEM",
            Some(format!(
                "An image tree directory; the checksum is the sha256 of its mtree manifest {}, \
                 which lists every path with its own sha256.",
                m.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            )),
        ),
    };
    let purpose = match artifact.path.extension().and_then(|e| e.to_str()) {
        Some("wsl") => "ARCHIVE",
        Some("vhd" | "vhdx" | "raw" | "qcow2") => "OPERATING-SYSTEM",
        _ => purpose,
    };
    let external_refs = match artifact.digest_of {
        DigestOf::OciManifest => vec![ExternalRef {
            reference_category: "PACKAGE-MANAGER",
            reference_type: "purl",
            reference_locator: format!(
                "pkg:oci/{}@sha256%3A{}",
                percent_encode(&def.name),
                artifact.sha256
            ),
        }],
        _ => Vec::new(),
    };
    SpdxPackage {
        spdx_id: ARTIFACT_ID.into(),
        name: file_name.into(),
        version_info: def.version.clone(),
        supplier: NOASSERTION.into(),
        download_location: NOASSERTION,
        files_analyzed: false,
        checksums: vec![Checksum {
            algorithm: "SHA256",
            checksum_value: artifact.sha256.clone(),
        }],
        homepage: None,
        license_concluded: NOASSERTION,
        license_declared: NOASSERTION.into(),
        copyright_text: NOASSERTION,
        summary: def.description.clone(),
        source_info: None,
        comment,
        external_refs,
        primary_package_purpose: Some(purpose),
    }
}

fn rpm_package(p: &Package, id: &str, sha256: &str, licenses: &mut Licenses) -> SpdxPackage {
    let one_line = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    SpdxPackage {
        spdx_id: id.into(),
        name: p.name.clone(),
        version_info: Some(evr(p)),
        supplier: match p.info.vendor.as_deref().map(one_line) {
            Some(v) if !v.is_empty() => format!("Organization: {v}"),
            _ => NOASSERTION.into(),
        },
        download_location: NOASSERTION,
        files_analyzed: false,
        checksums: vec![Checksum {
            algorithm: "SHA256",
            checksum_value: sha256.into(),
        }],
        homepage: p
            .info
            .url
            .as_deref()
            .filter(|u| is_plain_url(u))
            .map(Into::into),
        license_concluded: NOASSERTION,
        license_declared: licenses.declare(p.info.license.as_deref()),
        copyright_text: NOASSERTION,
        summary: p.info.summary.as_deref().map(one_line),
        source_info: p
            .info
            .source_rpm
            .as_ref()
            .map(|s| format!("built from the source package {s}")),
        comment: None,
        external_refs: vec![ExternalRef {
            reference_category: "PACKAGE-MANAGER",
            reference_type: "purl",
            reference_locator: purl(p),
        }],
        primary_package_purpose: None,
    }
}

/// `[EPOCH:]VERSION-RELEASE`, the epoch only when the header has one (as rpm prints it).
pub fn evr(p: &Package) -> String {
    if p.info.has_epoch || p.epoch > 0 {
        format!("{}:{}-{}", p.epoch, p.version, p.release)
    } else {
        format!("{}-{}", p.version, p.release)
    }
}

/// `pkg:rpm/azurelinux/NAME@VERSION-RELEASE?arch=ARCH[&epoch=N]`: the purl spec's rpm type, with
/// the epoch as a qualifier and qualifiers sorted by key.
pub fn purl(p: &Package) -> String {
    let mut s = format!(
        "pkg:rpm/{PURL_NAMESPACE}/{}@{}?arch={}",
        percent_encode(&p.name),
        percent_encode(&format!("{}-{}", p.version, p.release)),
        percent_encode(&p.arch)
    );
    if p.info.has_epoch || p.epoch > 0 {
        s.push_str(&format!("&epoch={}", p.epoch));
    }
    s
}

/// Percent-encoding of a purl component: everything but ASCII letters, digits and `.-_~`
/// (so `libstdc++` is `libstdc%2B%2B`, as the purl spec asks for `+`).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether an RPM URL tag is a URL SPDX tools accept as a homepage; anything else is left out.
fn is_plain_url(u: &str) -> bool {
    (u.starts_with("https://") || u.starts_with("http://"))
        && u.len() > "https://".len()
        && u.bytes().all(|b| b.is_ascii_graphic())
        && !u.contains(['"', '<', '>', '\\', '^', '`', '{', '|', '}'])
}

/// SPDX element ids: letters, digits, `.` and `-`, unique within the document.
#[derive(Default)]
struct IdAllocator {
    used: BTreeSet<String>,
}

impl IdAllocator {
    fn allocate(&mut self, wanted: &str) -> String {
        let base = format!("SPDXRef-{}", sanitize(wanted));
        // Two NEVRAs that differ only in characters SPDX ids cannot hold (`+` against `-`)
        // are told apart by a hash of the original.
        let id = if self.used.contains(&base) {
            format!(
                "{base}-{}",
                &hex::encode(Sha256::digest(wanted.as_bytes()))[..8]
            )
        } else {
            base
        };
        self.used.insert(id.clone());
        id
    }
}

/// Every character an SPDX id or LicenseRef cannot hold becomes `-`.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The documentNamespace: a URI unique to this artifact's content, derived from its name, its
/// checksum and every package with its checksum, so rebuilding the same artifact gives the same
/// namespace and any change gives another.
fn namespace(file_name: &str, artifact: &Artifact, packages: &[SpdxPackage]) -> String {
    let mut h = Sha256::new();
    h.update(b"kiln spdx namespace v1\0");
    h.update(file_name.as_bytes());
    h.update(b"\0");
    h.update(artifact.sha256.as_bytes());
    for p in packages {
        h.update(b"\0");
        h.update(p.spdx_id.as_bytes());
        for c in &p.checksums {
            h.update(b"=");
            h.update(c.checksum_value.as_bytes());
        }
    }
    format!(
        "https://spdx.org/spdxdocs/kiln/{}-{}",
        sanitize(file_name),
        hex::encode(h.finalize())
    )
}

/// The license of each package as the document declares it, and the extracted-license entries
/// the `LicenseRef-`s among them need.
#[derive(Default)]
struct Licenses {
    extracted: BTreeMap<String, ExtractedLicense>,
}

/// What an RPM License tag becomes in SPDX.
#[derive(Debug, PartialEq, Eq)]
pub enum Mapped {
    /// A valid SPDX expression (canonical spelling) and the `LicenseRef-`s it uses.
    Expression {
        text: String,
        refs: Vec<String>,
    },
    /// Not an SPDX expression: declared as this `LicenseRef-`, whose text is the tag.
    Other {
        id: String,
    },
    NoAssertion,
}

/// Maps an RPM License tag. Fedora 43's tags are SPDX expressions; older or foreign packages
/// carry free text (`GPLv2+`, `see /usr/share/doc/…/copyright`), which becomes a `LicenseRef-rpm-…`
/// named after the text and a hash of it, so two different texts never share an id.
pub fn map_license(tag: Option<&str>) -> Mapped {
    let Some(tag) = tag.map(str::trim).filter(|t| !t.is_empty()) else {
        return Mapped::NoAssertion;
    };
    if let Some((text, refs)) = spdx_expression(tag) {
        return Mapped::Expression { text, refs };
    }
    // Runs of dashes (from " /") read badly; the hash keeps ids of different texts apart.
    let mut name = sanitize(tag)
        .split('-')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    name.truncate(40);
    let name = name.trim_matches('-').to_string();
    let hash = &hex::encode(Sha256::digest(tag.as_bytes()))[..8];
    Mapped::Other {
        id: if name.is_empty() {
            format!("LicenseRef-rpm-{hash}")
        } else {
            format!("LicenseRef-rpm-{name}-{hash}")
        },
    }
}

/// `tag` in canonical spelling if it is a valid SPDX 2.3 expression (license list ids,
/// exceptions, `LicenseRef-`s of this document), with the `LicenseRef-`s it names.
fn spdx_expression(tag: &str) -> Option<(String, Vec<String>)> {
    spdx::Expression::parse_mode(tag, spdx::ParseMode::STRICT).ok()?;
    let mut words: Vec<String> = Vec::new();
    let mut refs = Vec::new();
    for t in spdx::lexer::Lexer::new_mode(tag, spdx::ParseMode::STRICT) {
        use spdx::lexer::Token;
        let word = match t.ok()?.token {
            Token::Spdx(id) => id.name.to_string(),
            Token::Exception(e) => e.name.to_string(),
            // A reference into another document would need an externalDocumentRefs entry.
            Token::LicenseRef {
                doc_ref: None,
                lic_ref,
            } => {
                let r = format!("LicenseRef-{lic_ref}");
                refs.push(r.clone());
                r
            }
            Token::Plus => {
                words.last_mut()?.push('+');
                continue;
            }
            Token::OpenParen => "(".into(),
            Token::CloseParen => ")".into(),
            Token::With => "WITH".into(),
            Token::And => "AND".into(),
            Token::Or => "OR".into(),
            // SPDX 2.3 has no AdditionRef; unknown words are not SPDX.
            Token::LicenseRef { .. } | Token::AdditionRef { .. } | Token::Unknown(_) => {
                return None;
            }
        };
        words.push(word);
    }
    let text = words.join(" ").replace("( ", "(").replace(" )", ")");
    refs.sort();
    refs.dedup();
    Some((text, refs))
}

impl Licenses {
    /// The `licenseDeclared` value for an RPM License tag, recording what it refers to.
    fn declare(&mut self, tag: Option<&str>) -> String {
        match map_license(tag) {
            Mapped::NoAssertion => NOASSERTION.into(),
            Mapped::Expression { text, refs } => {
                for r in refs {
                    self.extracted
                        .entry(r.clone())
                        .or_insert_with(|| ExtractedLicense {
                            license_id: r.clone(),
                            extracted_text: format!(
                                "{r}: a license the package's RPM License tag names by reference; \
                             the package header carries no license text."
                            ),
                            name: r.trim_start_matches("LicenseRef-").to_string(),
                            comment: "Named by an RPM License tag".into(),
                        });
                }
                text
            }
            Mapped::Other { id } => {
                let tag = tag.unwrap_or_default().trim().to_string();
                self.extracted
                    .entry(id.clone())
                    .or_insert_with(|| ExtractedLicense {
                        license_id: id.clone(),
                        extracted_text: tag.clone(),
                        name: tag,
                        comment: "The RPM License tag, which is not an SPDX license expression"
                            .into(),
                    });
                id
            }
        }
    }
}

/// Which kept packages require which: each Requires of a package, matched against the provides
/// and files of the other kept packages (names only, as the set is already resolved). rpmlib()
/// and rich dependencies are not followed.
fn dependencies(kept: &[(usize, &Package)]) -> BTreeSet<(usize, usize)> {
    let mut providers: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
    for &(i, p) in kept {
        providers.entry(p.name.as_str()).or_default().insert(i);
        for pr in &p.provides {
            providers.entry(pr.name.as_str()).or_default().insert(i);
        }
        for f in &p.files {
            providers.entry(f.path.as_str()).or_default().insert(i);
        }
    }
    let mut out = BTreeSet::new();
    for &(i, p) in kept {
        for d in &p.order_deps {
            if d.kind != DepKind::Requires
                || d.name.starts_with("rpmlib(")
                || d.name.starts_with('(')
            {
                continue;
            }
            for &j in providers.get(d.name.as_str()).into_iter().flatten() {
                if j != i {
                    out.insert((i, j));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install::package::{Info, OrderDep, Provide};

    fn pkg(name: &str, epoch: Option<u32>, version: &str, release: &str, arch: &str) -> Package {
        Package {
            path: PathBuf::from(format!("/cache/{name}.rpm")),
            name: name.into(),
            epoch: epoch.unwrap_or(0),
            version: version.into(),
            release: release.into(),
            arch: arch.into(),
            build_time: 0,
            files: Vec::new(),
            pretrans: None,
            pre: None,
            post: None,
            posttrans: None,
            triggers: Vec::new(),
            file_triggers: Vec::new(),
            trans_file_triggers: Vec::new(),
            order_deps: Vec::new(),
            provides: Vec::new(),
            payload_compressor: String::new(),
            info: Info {
                has_epoch: epoch.is_some(),
                ..Info::default()
            },
        }
    }

    #[test]
    fn purls_encode_names_and_put_the_epoch_in_a_qualifier() {
        assert_eq!(
            purl(&pkg("bash", None, "5.2.37", "1.azl4", "x86_64")),
            "pkg:rpm/azurelinux/bash@5.2.37-1.azl4?arch=x86_64"
        );
        assert_eq!(
            purl(&pkg("libstdc++", Some(0), "15.1", "2~rc1", "aarch64")),
            "pkg:rpm/azurelinux/libstdc%2B%2B@15.1-2~rc1?arch=aarch64&epoch=0"
        );
        assert_eq!(
            purl(&pkg("perl-Foo_Bar", Some(4), "1.0", "3", "noarch")),
            "pkg:rpm/azurelinux/perl-Foo_Bar@1.0-3?arch=noarch&epoch=4"
        );
        assert_eq!(evr(&pkg("x", Some(4), "1.0", "3", "noarch")), "4:1.0-3");
        assert_eq!(evr(&pkg("x", None, "1.0", "3", "noarch")), "1.0-3");
        assert_eq!(percent_encode("a b/c:d@e"), "a%20b%2Fc%3Ad%40e");
    }

    #[test]
    fn spdx_license_tags_are_kept_in_canonical_spelling() {
        for (tag, want) in [
            ("MIT", "MIT"),
            ("GPL-2.0-or-later", "GPL-2.0-or-later"),
            (
                "LGPL-2.1-or-later and (MIT or BSD-3-Clause)",
                "LGPL-2.1-or-later AND (MIT OR BSD-3-Clause)",
            ),
            (
                "GPL-2.0-only WITH Linux-syscall-note",
                "GPL-2.0-only WITH Linux-syscall-note",
            ),
            ("Apache-2.0+", "Apache-2.0+"),
        ] {
            assert_eq!(
                map_license(Some(tag)),
                Mapped::Expression {
                    text: want.into(),
                    refs: Vec::new()
                },
                "{tag}"
            );
        }
        assert_eq!(
            map_license(Some("MIT AND LicenseRef-Fedora-Public-Domain")),
            Mapped::Expression {
                text: "MIT AND LicenseRef-Fedora-Public-Domain".into(),
                refs: vec!["LicenseRef-Fedora-Public-Domain".into()]
            }
        );
    }

    #[test]
    fn other_license_tags_become_license_refs() {
        for tag in [
            "GPLv2+",
            "see /usr/share/doc/zlib1g/copyright",
            "MIT and ASL 2.0",
            "GPL-2.0",
            "MIT OR",
            "DocumentRef-x:LicenseRef-y",
        ] {
            let Mapped::Other { id } = map_license(Some(tag)) else {
                panic!("{tag} taken for SPDX");
            };
            assert!(id.starts_with("LicenseRef-rpm-"), "{id}");
            assert!(
                id["LicenseRef-".len()..]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
                "{id}"
            );
        }
        // Texts that sanitize alike still get different ids.
        assert_ne!(map_license(Some("GPLv2+")), map_license(Some("GPLv2-")));
        assert_eq!(map_license(None), Mapped::NoAssertion);
        assert_eq!(map_license(Some("  ")), Mapped::NoAssertion);
    }

    #[test]
    fn dependencies_follow_names_provides_and_files_of_kept_packages() {
        let mut app = pkg("app", None, "1", "1", "x86_64");
        let dep = |name: &str, kind| OrderDep {
            name: name.into(),
            flags: 0,
            evr: String::new(),
            kind,
        };
        app.order_deps = vec![
            dep("libfoo.so.1()(64bit)", DepKind::Requires),
            dep("/bin/sh", DepKind::Requires),
            dep("rpmlib(CompressedFileNames)", DepKind::Requires),
            dep("docs", DepKind::Recommends),
            dep("(a or b)", DepKind::Requires),
            dep("app", DepKind::Requires),
        ];
        let mut lib = pkg("libfoo", None, "1", "1", "x86_64");
        lib.provides = vec![Provide {
            name: "libfoo.so.1()(64bit)".into(),
            flags: 0,
            evr: String::new(),
        }];
        let mut sh = pkg("bash", None, "5", "1", "x86_64");
        sh.files = vec![crate::install::package::PkgFile {
            path: "/bin/sh".into(),
            mode: 0o120777,
            user: "root".into(),
            group: "root".into(),
            mtime: 0,
            size: 4,
            flags: 0,
            linkto: "bash".into(),
            inode: (0, 0),
            rdev: 0,
            caps: String::new(),
            lang: String::new(),
            color: 0,
            digest: String::new(),
        }];
        let docs = pkg("docs", None, "1", "1", "noarch");
        let kept = [(0, &app), (1, &lib), (2, &sh), (3, &docs)];
        assert_eq!(dependencies(&kept), BTreeSet::from([(0, 1), (0, 2)]));
        // A package left out (the distroless shell) is no dependency target.
        assert_eq!(
            dependencies(&[(0, &app), (1, &lib)]),
            BTreeSet::from([(0, 1)])
        );
    }

    #[test]
    fn ids_are_sanitized_and_unique() {
        let mut ids = IdAllocator::default();
        let a = ids.allocate("RPM-libstdc++-1-1-x86_64");
        let b = ids.allocate("RPM-libstdc---1-1-x86_64");
        assert_eq!(a, "SPDXRef-RPM-libstdc---1-1-x86-64");
        assert_ne!(a, b);
        assert!(b.starts_with("SPDXRef-RPM-libstdc---1-1-x86-64-"), "{b}");
        assert_eq!(
            path_for(Path::new("out/img.oci")),
            PathBuf::from("out/img.oci.spdx.json")
        );
    }

    #[test]
    fn documents_are_deterministic_and_list_only_kept_packages() {
        let def: Definition =
            serde_json::from_value(serde_json::json!({"name": "img", "version": "1"})).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let tree = crate::tree::Tree::create(&dir.path().join("root")).unwrap();
        let mut a = pkg("app", None, "1.0", "1", "x86_64");
        a.info.license = Some("see /usr/share/doc/app/copyright".into());
        a.info.vendor = Some("Contoso\nLtd".into());
        let mut b = pkg("sh", Some(2), "5.0", "1", "x86_64");
        b.info.license = Some("GPL-3.0-or-later".into());
        let packages = vec![a, b];
        let sha: BTreeMap<PathBuf, String> = packages
            .iter()
            .map(|p| (p.path.clone(), "ab".repeat(32)))
            .collect();
        let image = Image {
            tree: &tree,
            arch: Arch::X86_64,
            epoch: 1_700_000_000,
            packages: &packages,
        };
        let artifact = |sha256: &str, kept: Vec<usize>| Artifact {
            path: "out/img.oci".into(),
            size: 1,
            sha256: sha256.into(),
            digest_of: DigestOf::OciManifest,
            contents: vec![Contents {
                arch: Arch::X86_64,
                packages: kept,
            }],
        };
        let images = [image];
        let one = document(&def, &artifact(&"1".repeat(64), vec![0, 1]), &images, &sha).unwrap();
        let again = document(&def, &artifact(&"1".repeat(64), vec![0, 1]), &images, &sha).unwrap();
        assert_eq!(one, again);
        let v: serde_json::Value = serde_json::from_str(&one).unwrap();
        assert_eq!(v["creationInfo"]["created"], "2023-11-14T22:13:20Z");
        assert_eq!(v["packages"].as_array().unwrap().len(), 3);
        let app = &v["packages"][1];
        assert_eq!(app["supplier"], "Organization: Contoso Ltd");
        let license = app["licenseDeclared"].as_str().unwrap();
        assert!(
            license.starts_with("LicenseRef-rpm-see-usr-share-doc-app"),
            "{license}"
        );
        assert_eq!(v["hasExtractedLicensingInfos"][0]["licenseId"], license);
        assert_eq!(
            v["hasExtractedLicensingInfos"][0]["extractedText"],
            "see /usr/share/doc/app/copyright"
        );
        assert_eq!(v["packages"][2]["versionInfo"], "2:5.0-1");
        // Another artifact digest: another namespace.
        let other = document(&def, &artifact(&"2".repeat(64), vec![0, 1]), &images, &sha).unwrap();
        let w: serde_json::Value = serde_json::from_str(&other).unwrap();
        assert_ne!(v["documentNamespace"], w["documentNamespace"]);
        // A distroless view without `sh`: neither the package nor its license is listed.
        let kept = document(&def, &artifact(&"1".repeat(64), vec![0]), &images, &sha).unwrap();
        assert!(!kept.contains("GPL-3.0") && !kept.contains("\"name\": \"sh\""));
        // A package without a recorded checksum is an error, not a silent gap.
        let err = document(
            &def,
            &artifact(&"1".repeat(64), vec![0]),
            &images,
            &BTreeMap::new(),
        );
        assert!(matches!(err, Err(SbomError::NoChecksum { .. })));
    }
}
