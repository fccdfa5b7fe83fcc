//! The image definition as typed values: identity, repositories, packages, system configuration
//! and outputs. Field docs here become the JSON Schema descriptions `kiln schema` prints.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::values::{Arch, Mode, OneOrMany, Owner, PartSize, PartitionType, Size};

fn yes() -> bool {
    true
}

/// An image definition: what goes into the image and which artifacts come out.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(title = "kiln image definition")]
pub struct Definition {
    /// Image name: lower-case letters, digits, `.`, `_` and `-`; used in artifact names.
    pub name: String,
    /// Image version, free-form (`4.0.20261130`); recorded in OCI labels and reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "literal_text")]
    pub version: Option<String>,
    /// One-line description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Architectures to build; each is resolved and built separately. Default: [x86_64].
    #[serde(default = "default_architectures")]
    pub architectures: Vec<Arch>,
    /// The distribution release (`$releasever` / `${releasever}`). Default: "4.0".
    #[serde(default = "default_releasever")]
    #[schemars(schema_with = "literal_text")]
    pub releasever: String,
    /// Base definitions this one builds on, as paths relative to this file. Merged in order,
    /// then this file on top: mappings merge key by key, lists append (lists of named items such
    /// as repositories, users, partitions and files merge by their name), `packages.remove`
    /// takes names out of inherited `packages.install`, and plain values override.
    #[serde(default, skip_serializing)]
    pub extends: Option<OneOrMany>,
    /// User-defined variables, used as `${name}` in any text value except file and script
    /// contents. Built in: `${releasever}`, `${basearch}` and `${arch}`. Write `$${` for a
    /// literal `${`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    /// Settings for one architecture only, merged over the rest with the `extends` rules:
    /// `per-arch: {aarch64: {packages: {install: [grub2-efi-aa64]}}}`.
    #[serde(default, skip_serializing)]
    #[schemars(skip)]
    pub per_arch: BTreeMap<Arch, serde::de::IgnoredAny>,
    /// RPM repositories to resolve and download packages from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<Repository>,
    /// dnf `.repo` files (paths relative to this file) whose repositories are added to
    /// `repositories`; `$basearch` and `$releasever` are expanded in them.
    #[serde(default, skip_serializing)]
    pub repo_files: Vec<String>,
    /// What to install.
    #[serde(default)]
    pub packages: Packages,
    /// Configuration applied on top of the installed packages.
    #[serde(default)]
    pub system: System,
    /// Artifacts to produce; each is optional.
    #[serde(default)]
    pub outputs: Outputs,
}

/// Text that is often written unquoted and looks like a number (`releasever: 4.0`): kiln reads
/// such plain values exactly as written, so the schema accepts numbers there too.
fn literal_text(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": ["string", "number"],
        "description": "Text; a plain number such as 4.0 is read exactly as written."
    })
}

pub fn default_architectures() -> Vec<Arch> {
    vec![Arch::X86_64]
}

pub fn default_releasever() -> String {
    "4.0".into()
}

/// An RPM repository, with dnf's option names.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Repository {
    /// Unique repository id (dnf's `[section]` name).
    pub id: String,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Base URLs (`https://`, `http://`, `file://`, or a local path relative to this file),
    /// tried in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baseurl: Vec<String>,
    /// A metalink URL, as dnf uses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metalink: Option<String>,
    /// A mirror list URL, as dnf uses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirrorlist: Option<String>,
    /// OpenPGP public keys (URLs or local paths) that package signatures are checked against.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpgkey: Vec<String>,
    /// Check package signatures. Default: true; turning it off is reported in every build.
    #[serde(default = "yes")]
    pub gpgcheck: bool,
    /// Check the signature of the repository metadata (`repomd.xml.asc`). Default: false.
    #[serde(default, alias = "repo-gpgcheck")]
    pub repo_gpgcheck: bool,
    /// Priority, 1 (highest) to 99; packages from a higher-priority repository win. Default: 99.
    #[serde(default = "default_priority")]
    pub priority: u8,
    /// Cost: among repositories of equal priority, the cheaper one is used. Default: 1000.
    #[serde(default = "default_cost")]
    pub cost: u32,
    /// Whether the repository is used at all. Default: true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Package name globs never taken from this repository.
    #[serde(default, alias = "exclude", skip_serializing_if = "Vec::is_empty")]
    pub excludes: Vec<String>,
}

fn default_priority() -> u8 {
    99
}

fn default_cost() -> u32 {
    1000
}

/// The package set.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Packages {
    /// What to install: package names (`bash`, `bash.x86_64`), provides (`pkgconfig(zlib)`,
    /// `webserver`), file paths (`/usr/bin/python3`) and comps groups (`@core`).
    #[serde(default)]
    pub install: Vec<String>,
    /// Package names taken out of the inherited `install` lists and never installed: if a
    /// dependency needs one, resolution fails and says which package needs it.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Package name globs the resolver never considers (like dnf's `--exclude`).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Install weak dependencies (Recommends, Supplements). Default: true, as dnf.
    #[serde(default = "yes")]
    pub weak_deps: bool,
    /// Install documentation (`%doc` files); licenses are always kept. Default: true.
    #[serde(default = "yes")]
    pub docs: bool,
    /// Locales to keep translations for (`en_US`, `de`); empty keeps all.
    #[serde(default)]
    pub languages: Vec<String>,
}

impl Default for Packages {
    fn default() -> Self {
        Packages {
            install: Vec::new(),
            remove: Vec::new(),
            exclude: Vec::new(),
            weak_deps: true,
            docs: true,
            languages: Vec::new(),
        }
    }
}

/// System configuration applied after the packages are installed.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct System {
    /// Static hostname (`/etc/hostname`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// System locale (`/etc/locale.conf` LANG), e.g. `C.UTF-8` or `en_US.UTF-8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// Console keymap (`/etc/vconsole.conf` KEYMAP), e.g. `us`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keymap: Option<String>,
    /// Time zone (`/etc/localtime` link), e.g. `UTC` or `Europe/Berlin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Groups to create (or adjust, if a package already created them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Group>,
    /// Users to create (or adjust: `root` can get keys and a password hash).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<User>,
    /// systemd units to enable, disable or mask.
    #[serde(default)]
    pub services: Services,
    /// Files to write into the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileEntry>,
    /// Directories to create in the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub directories: Vec<DirectoryEntry>,
    /// Kernel command line arguments, one per item (`console=ttyS0`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernel_cmdline: Vec<String>,
    /// SELinux mode written to `/etc/selinux/config`; files are labelled when a policy is
    /// installed and the mode is not `disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selinux: Option<SelinuxMode>,
    /// Scripts run inside the image.
    #[serde(default)]
    pub scripts: Scripts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SelinuxMode {
    Enforcing,
    Permissive,
    Disabled,
}

/// A group.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Group {
    /// Group name.
    pub name: String,
    /// Numeric group id; allocated like groupadd when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// Allocate the id from the system range (below 1000).
    #[serde(default)]
    pub system: bool,
}

/// A user account.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct User {
    /// Login name.
    pub name: String,
    /// Numeric user id; allocated like useradd when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Primary group id; by default a group named after the user is created (as useradd -U).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// Supplementary groups (e.g. `wheel`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Home directory. Default: `/home/NAME` (`/root` for root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
    /// Login shell. Default: `/bin/bash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    /// GECOS comment (full name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Password as a crypt(3) hash (`openssl passwd -6` or `mkpasswd -m yescrypt`), never
    /// plain text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// Lock the password (login only by key). Default: locked unless a hash is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_locked: Option<bool>,
    /// OpenSSH public keys for `~/.ssh/authorized_keys`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_authorized_keys: Vec<String>,
    /// Allocate the ids from the system range and create no home unless `home` is given.
    #[serde(default)]
    pub system: bool,
}

/// systemd units to enable, disable or mask, by following their `[Install]` sections.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Services {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enable: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disable: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mask: Vec<String>,
}

/// A file written into the image, from inline `content` or a `source` file.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Absolute path in the image.
    pub path: String,
    /// The file's content, verbatim (no variable expansion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// A file to copy, relative to the definition that names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Permission mode. Default: "0644".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Owner. Default: root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// Group. Default: root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Owner>,
}

/// A directory created in the image (with its parents, owned by root).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectoryEntry {
    /// Absolute path in the image.
    pub path: String,
    /// Permission mode. Default: "0755".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Owner. Default: root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// Group. Default: root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Owner>,
}

/// Scripts run in a sandbox over the image with the image's own interpreter.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Scripts {
    /// Run after packages are installed and the system configuration is applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_install: Vec<Script>,
    /// Run last, after everything else, just before the artifacts are written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalize: Vec<Script>,
}

/// A script, inline or from a file.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// A name for logs and errors. Default: the source file name or `script N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The script itself (no variable expansion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// A script file, relative to the definition that names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Interpreter inside the image. Default: `/bin/sh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpreter: Option<String>,
}

/// Artifacts to produce.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Outputs {
    /// A disk image: Azure VHD, and raw, qcow2 or vhdx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskOutput>,
    /// An OCI container image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<OciOutput>,
    /// A WSL distribution (`.wsl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wsl: Option<WslOutput>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    /// Fixed VHD, as Azure requires.
    Vhd,
    /// Dynamic VHDX (Hyper-V).
    Vhdx,
    /// Raw disk image, written sparse.
    Raw,
    /// QEMU copy-on-write v2.
    Qcow2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Bootloader {
    /// GRUB 2 with Boot Loader Specification entries (Azure Linux's default).
    Grub2,
    /// systemd-boot (UEFI only).
    SystemdBoot,
    /// No bootloader (data disks, or images booted another way).
    None,
}

/// A disk image.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DiskOutput {
    /// Container formats to write. Default: [vhd].
    #[serde(default = "default_disk_formats")]
    pub formats: Vec<DiskFormat>,
    /// Virtual disk size, a whole number of MiB. Default: 5GiB.
    #[serde(default = "default_disk_size")]
    pub size: Size,
    /// GPT partitions in disk order. Default: a 200MiB EFI system partition mounted at
    /// /boot/efi and an ext4 root filling the rest (Azure Linux's own layout).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<Partition>,
    /// Bootloader. Default: grub2.
    #[serde(default = "default_bootloader")]
    pub bootloader: Bootloader,
    /// Azure VM generation: 2 (UEFI, the default) or 1 (BIOS).
    #[serde(default = "default_generation")]
    pub azure_generation: u8,
    /// The GPT disk GUID. Default: derived from the image identity (reproducible).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_guid: Option<String>,
}

impl Default for DiskOutput {
    fn default() -> Self {
        DiskOutput {
            formats: default_disk_formats(),
            size: default_disk_size(),
            partitions: Vec::new(),
            bootloader: default_bootloader(),
            azure_generation: default_generation(),
            disk_guid: None,
        }
    }
}

fn default_disk_formats() -> Vec<DiskFormat> {
    vec![DiskFormat::Vhd]
}

fn default_disk_size() -> Size {
    Size(5 * 1024 * Size::MIB)
}

fn default_bootloader() -> Bootloader {
    Bootloader::Grub2
}

fn default_generation() -> u8 {
    2
}

impl DiskOutput {
    /// The partitions that will be written: the definition's, or the Azure default layout.
    pub fn effective_partitions(&self) -> Vec<Partition> {
        if !self.partitions.is_empty() {
            return self.partitions.clone();
        }
        vec![
            Partition {
                name: "esp".into(),
                label: None,
                part_type: PartitionType::Esp,
                size: PartSize::Fixed(Size(200 * Size::MIB)),
                filesystem: Some(Filesystem::Vfat),
                fs_label: None,
                mount: Some("/boot/efi".into()),
                mount_options: vec!["umask=0077".into()],
                part_uuid: None,
                fs_uuid: None,
            },
            Partition {
                name: "root".into(),
                label: None,
                part_type: PartitionType::Root,
                size: PartSize::Rest,
                filesystem: Some(Filesystem::Ext4),
                fs_label: None,
                mount: Some("/".into()),
                mount_options: Vec::new(),
                part_uuid: None,
                fs_uuid: None,
            },
        ]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Filesystem {
    Ext4,
    Vfat,
}

/// A GPT partition.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Partition {
    /// Name used to refer to (and merge) this partition.
    pub name: String,
    /// GPT partition label (PARTLABEL), at most 36 characters. Default: the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Partition type.
    #[serde(rename = "type")]
    pub part_type: PartitionType,
    /// Size, or `rest` for the space left (at most one partition).
    pub size: PartSize,
    /// Filesystem to create; none for raw partitions such as bios-boot or swap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<Filesystem>,
    /// Filesystem label. Default: the partition name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_label: Option<String>,
    /// Mount point in the image (written to /etc/fstab by UUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<String>,
    /// Mount options for /etc/fstab. Default: `defaults`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mount_options: Vec<String>,
    /// The partition GUID (PARTUUID). Default: derived from the image identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_uuid: Option<String>,
    /// The filesystem UUID: a UUID for ext4, `XXXX-XXXX` (hex volume id) for vfat. Default:
    /// derived from the image identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_uuid: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OciVariant {
    /// Shell, dnf5 and rpm present, rpm database kept.
    Base,
    /// No shell and no package manager; root, nonroot (65532) and nobody users.
    Distroless,
    /// Distroless plus a language runtime (`runtime-packages`).
    Runtime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LayerCompression {
    Gzip,
    Zstd,
}

/// An OCI container image.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OciOutput {
    /// Image variant. Default: base.
    #[serde(default = "default_variant")]
    pub variant: OciVariant,
    /// Packages that make up the language runtime of a `runtime` image (e.g. [python3]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtime_packages: Vec<String>,
    /// ENTRYPOINT, as an argument list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// CMD, as an argument list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// User to run as: a name, uid or uid:gid. Default: root for base, nonroot (65532)
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Working directory (absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Image labels, in addition to the `org.opencontainers.image.*` ones kiln sets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Exposed ports: `8080`, `8080/tcp`, `53/udp`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exposed_ports: Vec<String>,
    /// Layer compression. Default: gzip.
    #[serde(default = "default_compression")]
    pub compression: LayerCompression,
    /// Tags for the image in the layout and when pushed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// OCI platforms (`linux/amd64`, `linux/arm64`). Default: one per architecture.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
}

fn default_variant() -> OciVariant {
    OciVariant::Base
}

fn default_compression() -> LayerCompression {
    LayerCompression::Gzip
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TarCompression {
    Gzip,
    Xz,
    None,
}

/// The first-run (OOBE) experience of a WSL distribution.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Oobe {
    /// Run the OOBE on first launch. Default: true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Command WSL runs on first launch. Default: kiln's own script that creates the first
    /// user interactively (`/usr/libexec/wsl/oobe.sh`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

impl Default for Oobe {
    fn default() -> Self {
        Oobe {
            enabled: true,
            command: None,
        }
    }
}

/// A WSL distribution.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WslOutput {
    /// Distribution name WSL registers (`defaultName`). Default: the image name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_name: Option<String>,
    /// Name shown in the Start menu and Windows Terminal. Default: the description or name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub friendly_name: Option<String>,
    /// uid WSL logs in as (`defaultUid`). Default: 1000.
    #[serde(default = "default_wsl_uid")]
    pub default_uid: u32,
    /// First-launch experience.
    #[serde(default)]
    pub oobe: Oobe,
    /// Start menu icon: an `.ico` file of at most 1 MiB, relative to this definition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    /// Windows Terminal profile template (JSON), relative to this definition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal_profile: Option<String>,
    /// Boot with systemd (`[boot] systemd=true` in /etc/wsl.conf). Default: true.
    #[serde(default = "yes")]
    pub systemd: bool,
    /// Create a Start menu shortcut. Default: true.
    #[serde(default = "yes")]
    pub shortcut: bool,
    /// Compression of the tar. Default: gzip (what `.wsl` files use).
    #[serde(default = "default_wsl_compression")]
    pub compression: TarCompression,
    /// Where the `.wsl` files will be published (`https://example.com/wsl/`): the URLs of the
    /// DistributionInfo.json entry kiln writes are this plus the file name. Default: the bare
    /// file name, to be completed before publishing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
}

impl Default for WslOutput {
    fn default() -> Self {
        WslOutput {
            default_name: None,
            friendly_name: None,
            default_uid: default_wsl_uid(),
            oobe: Oobe::default(),
            icon: None,
            terminal_profile: None,
            systemd: true,
            shortcut: true,
            compression: default_wsl_compression(),
            base_url: None,
        }
    }
}

fn default_wsl_uid() -> u32 {
    1000
}

fn default_wsl_compression() -> TarCompression {
    TarCompression::Gzip
}
