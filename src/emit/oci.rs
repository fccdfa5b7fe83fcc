//! The OCI backend: an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256`) with one
//! layer per architecture, its config and manifest, and an image index when there are several.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::Serialize;

use super::compress::{ParallelGzip, zstd_encoder};
use super::tar::{TarOptions, write_tree};
use super::{
    Artifact, Backend, Contents, DigestOf, EmitError, Hashing, Image, Pending, create, distroless,
    io_err,
};
use crate::definition::{Definition, LayerCompression, OciOutput, OciVariant};

const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MT_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const MT_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub struct Oci;

#[derive(Serialize, Clone)]
struct Descriptor {
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    digest: String,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<Platform>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

#[derive(Serialize, Clone)]
struct Platform {
    architecture: &'static str,
    os: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'static str>,
}

#[derive(Serialize)]
struct Manifest<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    config: Descriptor,
    layers: Vec<Descriptor>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Index {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    manifests: Vec<Descriptor>,
}

#[derive(Serialize)]
struct Config<'a> {
    created: &'a str,
    architecture: &'static str,
    os: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'static str>,
    config: ContainerConfig,
    rootfs: RootFs,
    history: Vec<History<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    exposed_ports: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    env: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cmd: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    working_dir: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

#[derive(Serialize)]
struct History<'a> {
    created: &'a str,
    created_by: String,
    comment: String,
}

/// RFC 3339 (UTC) for a Unix time, as OCI's `created` wants it.
pub fn rfc3339(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Writes `bytes` as a blob; returns its descriptor.
fn put_blob(
    layout: &Path,
    media_type: &'static str,
    bytes: &[u8],
) -> Result<Descriptor, EmitError> {
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes));
    let path = layout.join("blobs/sha256").join(&digest);
    std::fs::write(&path, bytes).map_err(io_err(&path))?;
    Ok(Descriptor {
        media_type,
        digest: format!("sha256:{digest}"),
        size: bytes.len() as u64,
        platform: None,
        annotations: BTreeMap::new(),
    })
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("OCI documents always serialize")
}

/// The layer: the tree as a tar, compressed; returns (descriptor, diff_id).
fn put_layer(
    layout: &Path,
    image: &Image<'_>,
    opts: &TarOptions,
    compression: LayerCompression,
) -> Result<(Descriptor, String), EmitError> {
    let tmp = layout.join("blobs/sha256/.layer.tmp");
    let file = create(&tmp)?;
    let compressed = Hashing::new(file);
    let (outer, media_type) = match compression {
        LayerCompression::Gzip => {
            // No file name and mtime 0 in the gzip header, blocks cut at fixed offsets: the
            // bytes depend only on the tree, not on the number of cores.
            let gz =
                ParallelGzip::with_available_parallelism(compressed, flate2::Compression::new(6));
            let (diff, gz) = tar_into(image, opts, gz)?;
            let outer = gz.finish().map_err(io_err(&tmp))?;
            ((diff, outer), MT_LAYER_GZIP)
        }
        LayerCompression::Zstd => {
            let z = zstd_encoder(compressed, 3).map_err(io_err(&tmp))?;
            let (diff, z) = tar_into(image, opts, z)?;
            let outer = z.finish().map_err(io_err(&tmp))?;
            ((diff, outer), MT_LAYER_ZSTD)
        }
    };
    let (diff, outer) = outer;
    let (digest, size, mut file) = outer.finish();
    file.flush().map_err(io_err(&tmp))?;
    drop(file);
    let path = layout.join("blobs/sha256").join(&digest);
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    Ok((
        Descriptor {
            media_type,
            digest: format!("sha256:{digest}"),
            size,
            platform: None,
            annotations: BTreeMap::new(),
        },
        format!("sha256:{diff}"),
    ))
}

/// Writes the tree as a tar into `encoder`; returns the tar's sha256 (the diff_id) and the
/// encoder, still to be finished.
fn tar_into<E: Write>(
    image: &Image<'_>,
    opts: &TarOptions,
    encoder: E,
) -> Result<(String, E), EmitError> {
    let mut raw = Hashing::new(encoder);
    let summary = write_tree(image.tree, opts, &mut raw)?;
    for path in &summary.skipped_sockets {
        crate::say::warning(format!(
            "{path}: a socket cannot be stored in a tar layer; left out of the image"
        ));
    }
    let (diff, _, encoder) = raw.finish();
    Ok((diff, encoder))
}

fn platform(image: &Image<'_>) -> Platform {
    Platform {
        architecture: image.arch.oci_name(),
        os: "linux",
        variant: (image.arch.oci_name() == "arm64").then_some("v8"),
    }
}

/// Labels kiln sets from the definition; the definition's own labels override them.
fn labels(def: &Definition, o: &OciOutput, created: &str) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    l.insert("org.opencontainers.image.title".into(), def.name.clone());
    l.insert("org.opencontainers.image.created".into(), created.into());
    if let Some(v) = &def.version {
        l.insert("org.opencontainers.image.version".into(), v.clone());
    }
    if let Some(d) = &def.description {
        l.insert("org.opencontainers.image.description".into(), d.clone());
    }
    l.extend(o.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    l
}

impl Backend for Oci {
    fn name(&self) -> &'static str {
        "oci"
    }

    fn emit(
        &self,
        def: &Definition,
        images: &[Image<'_>],
        out: &Path,
    ) -> Result<Vec<Artifact>, EmitError> {
        let o = def.outputs.oci.clone().unwrap_or_else(|| OciOutput {
            variant: OciVariant::Base,
            runtime_packages: Vec::new(),
            entrypoint: None,
            cmd: None,
            user: None,
            workdir: None,
            env: BTreeMap::new(),
            labels: BTreeMap::new(),
            exposed_ports: Vec::new(),
            compression: LayerCompression::Gzip,
            tags: Vec::new(),
            platforms: Vec::new(),
        });
        let explicit: Vec<String> = def
            .packages
            .install
            .iter()
            .chain(&o.runtime_packages)
            .cloned()
            .collect();
        let dest = out.join(format!("{}.oci", def.name));
        let pending = Pending::new(&dest);
        let layout = pending.path().to_path_buf();
        let _ = std::fs::remove_dir_all(&layout);
        let blobs = layout.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;

        // `platforms` picks which of the built architectures the image holds (validation made
        // sure each names a listed architecture).
        let chosen: Vec<&Image<'_>> = images
            .iter()
            .filter(|i| {
                o.platforms.is_empty()
                    || o.platforms.iter().any(|p| {
                        p.trim_end_matches("/v8") == format!("linux/{}", i.arch.oci_name())
                    })
            })
            .collect();
        if chosen.is_empty() {
            return Err(EmitError::Invalid(format!(
                "outputs.oci.platforms ({}) names none of the architectures built ({})",
                o.platforms.join(", "),
                images
                    .iter()
                    .map(|i| i.arch.rpm_name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let mut manifests = Vec::new();
        let mut contents = Vec::new();
        for image in chosen {
            let created = rfc3339(image.epoch);
            let (opts, entrypoint, user) = match o.variant {
                OciVariant::Base => {
                    contents.push(Contents::all(image));
                    (
                        TarOptions {
                            clamp_mtime: image.epoch,
                            ..TarOptions::default()
                        },
                        o.entrypoint.clone(),
                        o.user.clone(),
                    )
                }
                OciVariant::Distroless | OciVariant::Runtime => {
                    let layer = distroless::layer(image, &explicit)?;
                    contents.push(Contents {
                        arch: image.arch,
                        packages: layer.packages.clone(),
                    });
                    if !layer.removed.is_empty() {
                        crate::say::note(format!(
                            "{} ({}): shells and package managers left out of the {} image: {}",
                            def.name,
                            image.arch,
                            format!("{:?}", o.variant).to_lowercase(),
                            layer.removed.join(", ")
                        ));
                    }
                    if !layer.kept.is_empty() {
                        crate::say::note(format!(
                            "{} ({}): kept because the definition asks for them: {}",
                            def.name,
                            image.arch,
                            layer.kept.join(", ")
                        ));
                    }
                    let entrypoint = match (&o.entrypoint, o.variant) {
                        (Some(e), _) => Some(e.clone()),
                        (None, OciVariant::Runtime) => Some(vec![
                            distroless::runtime_entrypoint(image, &o.runtime_packages)
                                .ok_or_else(|| {
                                    EmitError::Invalid(format!(
                                        "outputs.oci: cannot tell which program of the runtime package `{}` to start; set `entrypoint`",
                                        o.runtime_packages.first().map_or("", String::as_str)
                                    ))
                                })?,
                        ]),
                        (None, _) => None,
                    };
                    let user = o
                        .user
                        .clone()
                        .unwrap_or_else(|| format!("{0}:{0}", distroless::NONROOT));
                    (layer.opts, entrypoint, Some(user))
                }
            };
            let (layer, diff_id) = put_layer(&layout, image, &opts, o.compression)?;
            let mut env: Vec<String> = Vec::new();
            if !o.env.contains_key("PATH") {
                env.push(format!("PATH={DEFAULT_PATH}"));
            }
            env.extend(o.env.iter().map(|(k, v)| format!("{k}={v}")));
            let p = platform(image);
            let config = Config {
                created: &created,
                architecture: p.architecture,
                os: p.os,
                variant: p.variant,
                config: ContainerConfig {
                    user,
                    exposed_ports: o
                        .exposed_ports
                        .iter()
                        .map(|port| {
                            let key = if port.contains('/') {
                                port.clone()
                            } else {
                                format!("{port}/tcp")
                            };
                            (key, serde_json::Map::new())
                        })
                        .collect(),
                    env,
                    entrypoint,
                    cmd: o.cmd.clone(),
                    working_dir: o.workdir.clone(),
                    labels: labels(def, &o, &created),
                },
                rootfs: RootFs {
                    kind: "layers",
                    diff_ids: vec![diff_id],
                },
                history: vec![History {
                    created: &created,
                    created_by: format!("kiln build ({})", def.name),
                    comment: format!(
                        "{} packages installed from RPM repositories ({} variant)",
                        image.packages.len(),
                        format!("{:?}", o.variant).to_lowercase()
                    ),
                }],
            };
            let config = put_blob(&layout, MT_CONFIG, &json(&config))?;
            let no_annotations = BTreeMap::new();
            let manifest = Manifest {
                schema_version: 2,
                media_type: MT_MANIFEST,
                config,
                layers: vec![layer],
                annotations: &no_annotations,
            };
            let mut d = put_blob(&layout, MT_MANIFEST, &json(&manifest))?;
            d.platform = Some(p);
            manifests.push(d);
        }

        // One architecture: index.json names the manifest; several: it names an image index.
        let top = if manifests.len() == 1 {
            manifests.remove(0)
        } else {
            let index = Index {
                schema_version: 2,
                media_type: MT_INDEX,
                manifests,
            };
            put_blob(&layout, MT_INDEX, &json(&index))?
        };
        let tags = if o.tags.is_empty() {
            vec![def.version.clone().unwrap_or_else(|| "latest".into())]
        } else {
            o.tags.clone()
        };
        let refs = tags
            .iter()
            .map(|t| {
                let mut d = top.clone();
                d.annotations
                    .insert("org.opencontainers.image.ref.name".into(), t.clone());
                d
            })
            .collect();
        let index = Index {
            schema_version: 2,
            media_type: MT_INDEX,
            manifests: refs,
        };
        let path = layout.join("index.json");
        std::fs::write(&path, json(&index)).map_err(io_err(&path))?;
        let path = layout.join("oci-layout");
        std::fs::write(&path, br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io_err(&path))?;
        let dest = pending.commit()?;
        Ok(vec![Artifact {
            path: dest,
            size: top.size,
            sha256: top.digest.trim_start_matches("sha256:").to_string(),
            digest_of: DigestOf::OciManifest,
            contents,
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_735_689_600), "2025-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_798_761_599), "2026-12-31T23:59:59Z");
    }
}
