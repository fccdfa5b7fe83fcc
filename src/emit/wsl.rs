//! The WSL backend: a `.wsl` file (a tar rooted at `/`, gzip by default) per architecture with
//! WSL's configuration, a first-run script and masked units, plus a DistributionInfo.json entry.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::Serialize;

use super::compress::ParallelGzip;
use super::tar::{Overlay, OverlayKind, TarOptions, write_tree};
use super::{
    Artifact, Backend, Contents, DigestOf, EmitError, Hashing, Image, Pending, create, io_err,
};
use crate::definition::{Arch, Definition, TarCompression, WslOutput};
use crate::tree::accounts::Accounts;
use crate::tree::{Kind, Tree};

/// Where kiln's first-run script goes when the definition names no OOBE command.
pub const OOBE_SCRIPT: &str = "/usr/libexec/wsl/oobe.sh";
/// Where the icon and the terminal profile template go.
pub const ASSET_DIR: &str = "/usr/lib/wsl";

/// Units WSL's guidance says to disable or mask when systemd runs: WSL manages networking,
/// name resolution, /tmp and the console itself.
pub const MASKED_UNITS: [&str; 9] = [
    "systemd-resolved.service",
    "systemd-networkd.service",
    "systemd-networkd.socket",
    "systemd-networkd-wait-online.service",
    "NetworkManager.service",
    "NetworkManager-wait-online.service",
    "tmp.mount",
    "console-getty.service",
    "systemd-vconsole-setup.service",
];

/// The sections and keys WSL reads from /etc/wsl.conf (learn.microsoft.com, "wsl.conf").
const WSL_CONF_KEYS: [(&str, &[&str]); 7] = [
    (
        "automount",
        &["enabled", "mountfstab", "root", "options", "ldconfig"],
    ),
    (
        "network",
        &["generatehosts", "generateresolvconf", "hostname"],
    ),
    ("interop", &["enabled", "appendwindowspath"]),
    ("user", &["default"]),
    ("boot", &["systemd", "command", "protectbinfmt"]),
    ("gpu", &["enabled"]),
    ("time", &["usewindowstimezone"]),
];

pub struct Wsl;

/// Paths a unit can be found under, highest priority first.
const UNIT_DIRS: [&str; 4] = [
    "/etc/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

#[derive(Serialize)]
struct Url {
    #[serde(rename = "Url")]
    url: String,
    #[serde(rename = "Sha256")]
    sha256: String,
}

#[derive(Serialize)]
struct DistributionInfo {
    #[serde(rename = "ModernDistributions")]
    modern_distributions: BTreeMap<String, Vec<ModernDistribution>>,
}

#[derive(Serialize)]
struct ModernDistribution {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "FriendlyName")]
    friendly_name: String,
    #[serde(rename = "Default")]
    default: bool,
    #[serde(rename = "Amd64Url", skip_serializing_if = "Option::is_none")]
    amd64: Option<Url>,
    #[serde(rename = "Arm64Url", skip_serializing_if = "Option::is_none")]
    arm64: Option<Url>,
}

/// The distribution's registered name (`defaultName`): `default-name`, else the image name.
fn default_name(def: &Definition, w: &WslOutput) -> String {
    w.default_name.clone().unwrap_or_else(|| def.name.clone())
}

/// The `.wsl` file of one architecture.
pub fn file_name(def: &Definition, arch: Arch) -> String {
    format!("{}-{}.wsl", def.name, arch.rpm_name())
}

/// Whether `path` (all symlinks followed, as in the image) is a regular file of the layer.
fn resolves_to_file(tree: &Tree, opts: &TarOptions, path: &str) -> Option<String> {
    let mut p = path.to_string();
    for _ in 0..40 {
        let c = tree.canonical(&p);
        match opts.lookup(tree, &c)? {
            super::tar::Item::Tree(e) => match &e.kind {
                Kind::File { .. } => return Some(c),
                Kind::Symlink { target } => p = join_link(&c, target),
                _ => return None,
            },
            super::tar::Item::Overlay(o) => match &o.kind {
                OverlayKind::File(_) => return Some(c),
                OverlayKind::Symlink(target) => p = join_link(&c, target),
                OverlayKind::Dir => return None,
            },
        }
    }
    None
}

/// A symlink's target as an absolute path (relative targets are relative to its directory).
fn join_link(link: &str, target: &str) -> String {
    if target.starts_with('/') {
        return target.to_string();
    }
    let dir = link.rsplit_once('/').map_or("", |(d, _)| d);
    let mut parts: Vec<&str> = dir.split('/').filter(|c| !c.is_empty()).collect();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// A relative symlink target from `link` to `target` (both absolute).
fn relative_link(link: &str, target: &str) -> String {
    let from: Vec<&str> = link.split('/').filter(|c| !c.is_empty()).collect();
    let to: Vec<&str> = target.split('/').filter(|c| !c.is_empty()).collect();
    let dir = &from[..from.len().saturating_sub(1)];
    let common = dir.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out: Vec<&str> = vec![".."; dir.len() - common];
    out.extend(&to[common..]);
    out.join("/")
}

/// Puts a file into the layer unless the image already has one there.
fn fill(tree: &Tree, opts: &mut TarOptions, path: &str, content: Vec<u8>, mode: u32) -> bool {
    let c = tree.canonical(path);
    if opts.lookup(tree, &c).is_some() {
        return false;
    }
    if let Some((dir, _)) = c.rsplit_once('/') {
        opts.ensure_dirs(tree, dir);
    }
    opts.overlay.insert(c, Overlay::file(content, mode));
    true
}

/// Checks /etc/wsl.conf for sections and keys WSL does not know; returns them.
pub fn unknown_wsl_conf_keys(text: &str) -> Vec<String> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if let Some(s) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.trim().to_ascii_lowercase();
            continue;
        }
        let key = l
            .split('=')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let known = WSL_CONF_KEYS
            .iter()
            .any(|(s, keys)| *s == section && keys.contains(&key.as_str()));
        if !known {
            out.push(format!("[{section}] {key}"));
        }
    }
    out
}

/// The OOBE script: asks for a user name and password, creates the user with `uid`, puts it
/// in the administrators' group the image has (wheel or sudo). POSIX sh, no bashisms.
pub fn oobe_script(uid: u32) -> String {
    format!(
        r#"#!/bin/sh
# First-run setup for WSL (written by kiln): creates the default user, uid {uid}.
# WSL runs this as root the first time the distribution starts; a non-zero exit makes it ask
# again next time.
set -u
uid={uid}

# getent where there is one; else the files themselves (a minimal image may lack getent).
known() {{
    if command -v getent >/dev/null 2>&1; then
        getent "$1" "$2" >/dev/null 2>&1
        return
    fi
    while IFS=: read -r n _ id _; do
        if [ "$n" = "$2" ] || [ "$id" = "$2" ]; then return 0; fi
    done <"/etc/$1"
    return 1
}}

if known passwd "$uid"; then
    exit 0
fi

echo 'Create the default user account. The name does not need to match your Windows user name.'
echo 'See https://aka.ms/wslusers'

admin=
for g in wheel sudo; do
    if known group "$g"; then
        admin=$g
        break
    fi
done

ask_password() {{
    if [ -t 0 ]; then stty -echo; fi
    printf '%s' "$1"
    IFS= read -r answer || answer=
    if [ -t 0 ]; then stty echo; fi
    echo
}}

while :; do
    printf 'New user name: '
    IFS= read -r name || exit 1
    case $name in
        ''|*[!a-z0-9_-]*|[0-9-]*)
            echo 'Use lower-case letters, digits, "_" and "-", starting with a letter or "_".'
            continue
            ;;
    esac
    if known passwd "$name"; then
        echo "$name exists already."
        continue
    fi
    ask_password 'Password: '
    first=$answer
    ask_password 'Password again: '
    if [ "$first" != "$answer" ]; then
        echo 'The passwords differ; try again.'
        continue
    fi
    if [ -z "$first" ]; then
        echo 'The password must not be empty.'
        continue
    fi
    if command -v useradd >/dev/null 2>&1; then
        useradd --create-home --uid "$uid" --user-group ${{admin:+--groups "$admin"}} \
            --shell /bin/bash --comment '' "$name" || continue
    elif command -v adduser >/dev/null 2>&1; then
        adduser -D -u "$uid" -s /bin/sh "$name" || continue
        if [ -n "$admin" ]; then addgroup "$name" "$admin" || true; fi
    else
        echo 'Neither useradd nor adduser is installed; cannot create the user.' >&2
        exit 1
    fi
    if ! printf '%s:%s\n' "$name" "$first" | chpasswd; then
        # chpasswd goes through PAM; passwd asks on the terminal instead.
        if ! passwd "$name"; then
            echo "No password set: the account is locked. Set one with 'wsl -u root passwd $name'." >&2
        fi
    fi
    break
done
echo "Created $name (uid $uid)${{admin:+, a member of $admin}}."
"#
    )
}

/// The content of /etc/wsl-distribution.conf.
fn distribution_conf(
    w: &WslOutput,
    name: &str,
    oobe: Option<&str>,
    icon: Option<&str>,
    profile: Option<&str>,
) -> String {
    let mut s = String::from(
        "# Written by kiln (outputs.wsl). See https://aka.ms/wsldistributionconf\n\n[oobe]\n",
    );
    if let Some(cmd) = oobe {
        s.push_str(&format!("command = {cmd}\n"));
    }
    s.push_str(&format!("defaultUid = {}\n", w.default_uid));
    s.push_str(&format!("defaultName = {name}\n"));
    s.push_str(&format!("\n[shortcut]\nenabled = {}\n", w.shortcut));
    if let Some(i) = icon {
        s.push_str(&format!("icon = {i}\n"));
    }
    s.push_str(&format!(
        "\n[windowsterminal]\nenabled = {}\n",
        profile.is_some()
    ));
    if let Some(p) = profile {
        s.push_str(&format!("profileTemplate = {p}\n"));
    }
    s
}

/// Password fields that hold no hash: empty, locked or disabled markers.
fn is_hash(field: &str) -> bool {
    let f = field.trim_start_matches('!');
    !f.is_empty() && f != "*" && f != "x"
}

/// shadow or gshadow without password hashes (locked instead); returns the new text and the
/// names whose hash was dropped.
fn without_hashes(text: &str) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut dropped = Vec::new();
    for line in text.lines() {
        let mut f: Vec<&str> = line.split(':').collect();
        if f.len() > 1 && is_hash(f[1]) {
            dropped.push(f[0].to_string());
            f[1] = "!";
        }
        out.push_str(&f.join(":"));
        out.push('\n');
    }
    (out, dropped)
}

/// What a `.wsl` archive holds beyond the staging tree, as exclusions and overlay.
pub struct Layer {
    pub opts: TarOptions,
    /// Things worth telling (what was filled in, what was kept, what was taken out).
    pub notes: Vec<String>,
}

/// Builds the WSL view of `image`.
pub fn layer(def: &Definition, w: &WslOutput, image: &Image<'_>) -> Result<Layer, EmitError> {
    let tree = image.tree;
    let mut opts = TarOptions {
        clamp_mtime: image.epoch,
        root_entry: true,
        ..TarOptions::default()
    };
    let mut notes = Vec::new();

    // WSL writes these itself, and the kernel and initramfs come from WSL.
    let resolv = tree.canonical("/etc/resolv.conf");
    if tree.get(&resolv).is_some() {
        opts.exclude.insert(resolv);
    }
    let mut kernel_files = Vec::new();
    for (path, e) in tree.entries() {
        let base = path.rsplit('/').next().unwrap_or("");
        let in_boot = path.starts_with("/boot/");
        let in_modules = path.starts_with("/usr/lib/modules/") || path.starts_with("/lib/modules/");
        let kernel = (in_boot
            && (base.starts_with("vmlinuz")
                || base.starts_with("initramfs")
                || base.starts_with("initrd")))
            || (in_modules
                && (base == "vmlinuz"
                    || base.starts_with("initramfs")
                    || base.starts_with("initrd")));
        if kernel && e.kind != Kind::Dir {
            kernel_files.push(path.clone());
        }
    }
    if !kernel_files.is_empty() {
        notes.push(format!(
            "left out the kernel and initramfs ({}); WSL brings its own",
            kernel_files.join(", ")
        ));
        opts.exclude.extend(kernel_files);
    }

    // Accounts: root must be there, and no password hashes.
    let acc = Accounts::read(tree);
    if acc.user("root").is_none_or(|u| u.uid != 0) {
        return Err(EmitError::Invalid(
            "/etc/passwd has no root user with uid 0; WSL needs one (install `setup` or `filesystem`, or add it)".into(),
        ));
    }
    for f in ["/etc/shadow", "/etc/gshadow"] {
        let c = tree.canonical(f);
        if let Some(text) = tree.read_text(&c) {
            let (clean, dropped) = without_hashes(&text);
            if !dropped.is_empty() {
                let mode = tree.get(&c).map_or(0, |e| e.mode);
                notes.push(format!(
                    "{f}: password hashes of {} left out (WSL images carry none; the OOBE sets the first user's)",
                    dropped.join(", ")
                ));
                opts.overlay.insert(c, Overlay::file(clean, mode));
            }
        }
    }
    let uid_exists = acc.users.iter().any(|u| u.uid == w.default_uid);
    if !w.oobe.enabled && !uid_exists && w.default_uid != 0 {
        return Err(EmitError::Invalid(format!(
            "outputs.wsl: default-uid {} is no user of the image and the OOBE, which would create it, is off; add the user under system.users or set oobe.enabled: true",
            w.default_uid
        )));
    }

    // The icon and terminal profile.
    let name = default_name(def, w);
    let icon = match &w.icon {
        Some(src) => {
            let bytes = std::fs::read(src).map_err(io_err(Path::new(src)))?;
            if bytes.len() > 1 << 20 {
                return Err(EmitError::Invalid(format!(
                    "outputs.wsl.icon: {src} is {} bytes; WSL takes at most 1 MiB",
                    bytes.len()
                )));
            }
            if !bytes.starts_with(&[0, 0, 1, 0]) {
                return Err(EmitError::Invalid(format!(
                    "outputs.wsl.icon: {src} is not a Windows icon (.ico) file"
                )));
            }
            let dest = format!("{ASSET_DIR}/{name}.ico");
            opts.ensure_dirs(tree, ASSET_DIR);
            opts.overlay
                .insert(tree.canonical(&dest), Overlay::file(bytes, 0o644));
            Some(dest)
        }
        None => None,
    };
    let profile = match &w.terminal_profile {
        Some(src) => {
            let bytes = std::fs::read(src).map_err(io_err(Path::new(src)))?;
            if let Err(e) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                return Err(EmitError::Invalid(format!(
                    "outputs.wsl.terminal-profile: {src} is not JSON: {e}"
                )));
            }
            let dest = format!("{ASSET_DIR}/terminal-profile.json");
            opts.ensure_dirs(tree, ASSET_DIR);
            opts.overlay
                .insert(tree.canonical(&dest), Overlay::file(bytes, 0o644));
            Some(dest)
        }
        None => None,
    };

    // The OOBE command: the definition's, else kiln's script.
    let oobe = if !w.oobe.enabled {
        None
    } else if let Some(cmd) = &w.oobe.command {
        Some(cmd.clone())
    } else {
        let wrote = fill(
            tree,
            &mut opts,
            OOBE_SCRIPT,
            oobe_script(w.default_uid).into_bytes(),
            0o755,
        );
        if !wrote {
            notes.push(format!("kept the image's own {OOBE_SCRIPT}"));
        }
        Some(OOBE_SCRIPT.to_string())
    };
    if let Some(cmd) = &oobe {
        let program = cmd.split_whitespace().next().unwrap_or("");
        if resolves_to_file(tree, &opts, program).is_none() {
            return Err(EmitError::Invalid(format!(
                "outputs.wsl.oobe.command: {program} is not in the image"
            )));
        }
        if let Some(interp) = script_interpreter(tree, &opts, program)
            && resolves_to_file(tree, &opts, &interp).is_none()
        {
            return Err(EmitError::Invalid(format!(
                "the OOBE script {program} needs {interp}, which the image does not have"
            )));
        }
    }

    // The two configuration files: the image's own win (Azure Linux's wsl-setup writes them).
    let conf = distribution_conf(
        w,
        &name,
        oobe.as_deref(),
        icon.as_deref(),
        profile.as_deref(),
    );
    if !fill(
        tree,
        &mut opts,
        "/etc/wsl-distribution.conf",
        conf.into_bytes(),
        0o644,
    ) {
        notes.push("kept the image's own /etc/wsl-distribution.conf".into());
    }
    let wsl_conf = format!(
        "# Written by kiln (outputs.wsl). See https://aka.ms/wslconf\n[boot]\nsystemd={}\n",
        w.systemd
    );
    let wsl_conf_path = tree.canonical("/etc/wsl.conf");
    if !fill(
        tree,
        &mut opts,
        "/etc/wsl.conf",
        wsl_conf.into_bytes(),
        0o644,
    ) {
        notes.push("kept the image's own /etc/wsl.conf".into());
        if let Some(text) = tree.read_text(&wsl_conf_path) {
            let unknown = unknown_wsl_conf_keys(&text);
            if !unknown.is_empty() {
                notes.push(format!(
                    "/etc/wsl.conf has settings WSL does not know: {}",
                    unknown.join(", ")
                ));
            }
        }
    }
    // Both root-owned 0644, whoever wrote them.
    for p in ["/etc/wsl-distribution.conf", "/etc/wsl.conf"] {
        let c = tree.canonical(p);
        if let Some(super::tar::Item::Tree(e)) = opts.lookup(tree, &c)
            && (e.mode & 0o7777 != 0o644 || e.uid != 0 || e.gid != 0)
            && matches!(e.kind, Kind::File { .. })
        {
            let bytes = tree
                .read(&c)
                .map_err(|e| EmitError::Invalid(e.to_string()))?;
            notes.push(format!("{p}: made root-owned 0644, as WSL expects"));
            opts.overlay.insert(c, Overlay::file(bytes, 0o644));
        }
    }

    if resolves_to_file(tree, &opts, "/bin/sh").is_none() {
        return Err(EmitError::Invalid(
            "the image has no /bin/sh, which WSL runs commands with; install bash or another shell"
                .into(),
        ));
    }
    if w.systemd {
        mask_units(tree, &mut opts, &mut notes);
        if resolves_to_file(tree, &opts, "/sbin/init").is_none() {
            let systemd = ["/usr/lib/systemd/systemd", "/lib/systemd/systemd"]
                .iter()
                .find_map(|p| resolves_to_file(tree, &opts, p));
            match systemd {
                Some(target) => {
                    let link = tree.canonical("/sbin/init");
                    if let Some((dir, _)) = link.rsplit_once('/') {
                        opts.ensure_dirs(tree, dir);
                    }
                    let rel = relative_link(&link, &target);
                    notes.push(format!("added /sbin/init -> {rel} for systemd"));
                    opts.overlay.insert(link, Overlay::symlink(&rel));
                }
                None => {
                    return Err(EmitError::Invalid(
                        "outputs.wsl.systemd is on but the image has no systemd (/usr/lib/systemd/systemd); install systemd or set systemd: false".into(),
                    ));
                }
            }
        }
    }
    Ok(Layer { opts, notes })
}

/// The interpreter a script starts with (`#!/bin/sh` → `/bin/sh`), if it is a script.
fn script_interpreter(tree: &Tree, opts: &TarOptions, program: &str) -> Option<String> {
    let path = resolves_to_file(tree, opts, program)?;
    let bytes = match opts.overlay.get(&path) {
        Some(Overlay {
            kind: OverlayKind::File(b),
            ..
        }) => b.clone(),
        _ => tree.read(&path).ok()?,
    };
    let first = bytes.split(|&b| b == b'\n').next()?;
    let rest = first.strip_prefix(b"#!")?;
    let text = String::from_utf8_lossy(rest);
    text.split_whitespace().next().map(str::to_string)
}

/// Masks the units WSL discourages that the image has (`/etc/systemd/system/UNIT -> /dev/null`).
fn mask_units(tree: &Tree, opts: &mut TarOptions, notes: &mut Vec<String>) {
    let mut masked = Vec::new();
    for unit in MASKED_UNITS {
        let present = UNIT_DIRS
            .iter()
            .map(|d| tree.canonical(&format!("{d}/{unit}")))
            .any(|p| opts.lookup(tree, &p).is_some());
        if !present {
            continue;
        }
        let link = tree.canonical(&format!("/etc/systemd/system/{unit}"));
        if let Some(super::tar::Item::Tree(e)) = opts.lookup(tree, &link)
            && matches!(&e.kind, Kind::Symlink { target } if target == "/dev/null")
        {
            continue;
        }
        opts.ensure_dirs(tree, "/etc/systemd/system");
        opts.overlay.insert(link, Overlay::symlink("/dev/null"));
        masked.push(unit);
    }
    if !masked.is_empty() {
        notes.push(format!("masked for WSL: {}", masked.join(", ")));
    }
}

impl Backend for Wsl {
    fn name(&self) -> &'static str {
        "wsl"
    }

    fn emit(
        &self,
        def: &Definition,
        images: &[Image<'_>],
        out: &Path,
    ) -> Result<Vec<Artifact>, EmitError> {
        let w = def.outputs.wsl.clone().unwrap_or_default();
        let mut artifacts = Vec::new();
        let mut pending = Vec::new();
        for image in images {
            let layer = layer(def, &w, image)?;
            for n in &layer.notes {
                crate::say::note(format!("{} ({}): {n}", def.name, image.arch));
            }
            let dest = out.join(file_name(def, image.arch));
            let p = Pending::new(&dest);
            let file = create(p.path())?;
            let hashed = Hashing::new(file);
            let summary;
            let hashed = match w.compression {
                TarCompression::Gzip => {
                    // The same bytes whatever the number of cores (see compress.rs).
                    let mut gz = ParallelGzip::with_available_parallelism(
                        hashed,
                        flate2::Compression::new(6),
                    );
                    summary = write_tree(image.tree, &layer.opts, &mut gz)?;
                    gz.finish().map_err(io_err(p.path()))?
                }
                TarCompression::Xz => {
                    let mut xz = liblzma::write::XzEncoder::new(hashed, 6);
                    summary = write_tree(image.tree, &layer.opts, &mut xz)?;
                    xz.finish().map_err(io_err(p.path()))?
                }
                TarCompression::None => {
                    let mut plain = hashed;
                    summary = write_tree(image.tree, &layer.opts, &mut plain)?;
                    plain
                }
            };
            for s in &summary.skipped_sockets {
                crate::say::warning(format!(
                    "{s}: a socket cannot be stored in a tar; left out of the .wsl"
                ));
            }
            let (sha256, size, mut file) = hashed.finish();
            file.flush().map_err(io_err(p.path()))?;
            drop(file);
            pending.push((p, image.arch, sha256, size));
        }

        // DistributionInfo.json: the ModernDistributions entry `wsl --install` reads.
        let name = default_name(def, &w);
        let url = |arch: Arch| {
            let file = file_name(def, arch);
            match &w.base_url {
                Some(base) => format!("{}/{file}", base.trim_end_matches('/')),
                None => file,
            }
        };
        let find = |a: Arch| pending.iter().find(|(_, arch, _, _)| *arch == a);
        let entry = ModernDistribution {
            name: match &def.version {
                Some(v) => format!("{name}-{v}"),
                None => name.clone(),
            },
            friendly_name: w
                .friendly_name
                .clone()
                .or_else(|| def.description.clone())
                .unwrap_or_else(|| name.clone()),
            default: true,
            amd64: find(Arch::X86_64).map(|(_, a, sha, _)| Url {
                url: url(*a),
                sha256: sha.clone(),
            }),
            arm64: find(Arch::Aarch64).map(|(_, a, sha, _)| Url {
                url: url(*a),
                sha256: sha.clone(),
            }),
        };
        let mut flavors = BTreeMap::new();
        flavors.insert(name, vec![entry]);
        let info = DistributionInfo {
            modern_distributions: flavors,
        };
        let info_dest = out.join(format!("{}.DistributionInfo.json", def.name));
        let info_pending = Pending::new(&info_dest);
        let mut text = serde_json::to_string_pretty(&info).expect("JSON serializes");
        text.push('\n');
        std::fs::write(info_pending.path(), &text).map_err(io_err(info_pending.path()))?;

        for ((p, _, sha256, size), image) in pending.into_iter().zip(images) {
            let path = p.commit()?;
            artifacts.push(Artifact {
                path,
                size,
                sha256,
                digest_of: DigestOf::File,
                contents: vec![Contents::all(image)],
            });
        }
        let (sha256, size) = super::sha256_file(info_pending.path())?;
        let path = info_pending.commit()?;
        artifacts.push(Artifact {
            path,
            size,
            sha256,
            digest_of: DigestOf::File,
            contents: Vec::new(),
        });
        Ok(artifacts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_join_and_relativize() {
        assert_eq!(join_link("/bin/sh", "bash"), "/bin/bash");
        assert_eq!(
            join_link("/usr/sbin/init", "../lib/systemd/systemd"),
            "/usr/lib/systemd/systemd"
        );
        assert_eq!(
            join_link("/sbin/init", "/lib/systemd/systemd"),
            "/lib/systemd/systemd"
        );
        assert_eq!(
            relative_link("/usr/sbin/init", "/usr/lib/systemd/systemd"),
            "../lib/systemd/systemd"
        );
        assert_eq!(
            relative_link("/sbin/init", "/lib/systemd/systemd"),
            "../lib/systemd/systemd"
        );
    }

    #[test]
    fn password_hashes_are_dropped_and_markers_kept() {
        let (text, dropped) = without_hashes(
            "root:!::0:99999:7:::\nalice:$6$salt$hash:19000:0:99999:7:::\nbob:!$y$j9T$x:1::::::\nsvc:*:1::::::\nnew:::::::\n",
        );
        assert_eq!(dropped, ["alice", "bob"]);
        assert_eq!(
            text,
            "root:!::0:99999:7:::\nalice:!:19000:0:99999:7:::\nbob:!:1::::::\nsvc:*:1::::::\nnew:::::::\n"
        );
    }

    #[test]
    fn wsl_conf_keys_are_checked_against_what_wsl_reads() {
        let text = "[boot]\nsystemd=true\n# comment\n[network]\ngenerateResolvConf = false\nhostnme=x\n[fancy]\nx=1\n";
        assert_eq!(
            unknown_wsl_conf_keys(text),
            ["[network] hostnme", "[fancy] x"]
        );
    }

    #[test]
    fn oobe_script_parses_with_sh() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("oobe.sh");
        std::fs::write(&script, oobe_script(1000)).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-n")
            .arg(&script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
