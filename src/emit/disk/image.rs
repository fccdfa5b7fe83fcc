//! The disk backend: per architecture a partitioned disk (GPT, FAT32 ESP, ext4) written
//! in-process from the staging tree, as a fixed VHD, a sparse raw file or qcow2.

use std::fs::File;
use std::path::Path;

use super::layout::{self, Layout};
use super::{qcow2, vhd, write_disk};
use crate::definition::{Definition, DiskFormat, DiskOutput};
use crate::emit::{
    Artifact, Backend, Contents, DigestOf, EmitError, Image, Pending, io_err, sha256_file,
};

/// The disk backend, writing the formats asked for (`--format vhd,raw,qcow2` or the
/// definition's `outputs.disk.formats`).
pub struct Disk {
    pub formats: Vec<DiskFormat>,
}

/// The identity every GUID and UUID of an image's disk derives from: name, version and the
/// packages installed (so the boot files written before emit and the disk agree).
pub fn seed(def: &Definition, packages: &[crate::install::package::Package]) -> [u8; 32] {
    let nevras: Vec<String> = packages.iter().map(|p| p.nevra()).collect();
    layout::identity_seed(&def.name, def.version.as_deref().unwrap_or(""), &nevras)
}

/// The disk layout of `def` for one architecture.
pub fn layout_for(
    def: &Definition,
    arch: crate::definition::Arch,
    packages: &[crate::install::package::Package],
) -> Result<Layout, EmitError> {
    let d = disk_output(def);
    layout::plan(&d, arch, &seed(def, packages)).map_err(|e| EmitError::Invalid(e.to_string()))
}

pub fn disk_output(def: &Definition) -> DiskOutput {
    def.outputs.disk.clone().unwrap_or_default()
}

fn disk_err(e: impl std::fmt::Display) -> EmitError {
    EmitError::Invalid(e.to_string())
}

impl Backend for Disk {
    fn name(&self) -> &'static str {
        "disk"
    }

    fn emit(
        &self,
        def: &Definition,
        images: &[Image<'_>],
        out: &Path,
    ) -> Result<Vec<Artifact>, EmitError> {
        if self.formats.contains(&DiskFormat::Vhdx) {
            return Err(EmitError::Invalid(
                "the vhdx format is not written by kiln yet; use vhd (what Azure takes), raw or qcow2".into(),
            ));
        }
        // Everything is committed once every architecture's disks are written, so a failure in
        // a later one leaves no earlier one behind.
        let mut pending = Vec::new();
        for image in images {
            let seed = seed(def, image.packages);
            let lay = layout::plan(&disk_output(def), image.arch, &seed).map_err(disk_err)?;
            let base = format!("{}-{}", def.name, image.arch.rpm_name());
            let raw_pending = Pending::new(&out.join(format!("{base}.raw")));
            let raw = File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(raw_pending.path())
                .map_err(io_err(raw_pending.path()))?;
            write_disk(&raw, &lay, image.tree, &seed, image.epoch).map_err(disk_err)?;
            let mut done = Vec::new();
            for f in &self.formats {
                match f {
                    DiskFormat::Vhd => {
                        let p = Pending::new(&out.join(format!("{base}.vhd")));
                        let dst = File::create(p.path()).map_err(io_err(p.path()))?;
                        let id = layout::derive_bytes(&seed, "vhd-unique-id");
                        vhd::write_vhd(&raw, &dst, lay.size, id, image.epoch).map_err(disk_err)?;
                        done.push(p);
                    }
                    DiskFormat::Qcow2 => {
                        let p = Pending::new(&out.join(format!("{base}.qcow2")));
                        let dst = File::create(p.path()).map_err(io_err(p.path()))?;
                        qcow2::write_qcow2(&raw, &dst, lay.size).map_err(disk_err)?;
                        done.push(p);
                    }
                    DiskFormat::Raw | DiskFormat::Vhdx => {}
                }
            }
            drop(raw);
            if self.formats.contains(&DiskFormat::Raw) {
                done.push(raw_pending);
            }
            pending.extend(done.into_iter().map(|p| (p, Contents::all(image))));
        }
        let mut artifacts = Vec::new();
        for (p, contents) in pending {
            let path = p.commit()?;
            let (sha256, size) = sha256_file(&path)?;
            artifacts.push(Artifact {
                path,
                size,
                sha256,
                digest_of: DigestOf::File,
                contents: vec![contents],
            });
        }
        Ok(artifacts)
    }
}
