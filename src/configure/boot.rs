//! Boot files of disk images, made the way the distribution makes them: the initramfs by the
//! image's own dracut or initramfs-tools (in the sandbox), and Boot Loader Specification entries.

use crate::install::sandbox;
use crate::tree::{Kind, Tree, TreeError};

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error(
        "a bootable disk needs a kernel and the image has none: install `kernel` (Azure Linux) or `linux-image-amd64` (Debian)"
    )]
    NoKernel,
    #[error(
        "bootloader systemd-boot: the image has no {path}; install systemd-boot (Azure Linux) or systemd-boot-efi (Debian)"
    )]
    NoSystemdBoot { path: String },
    #[error(
        "bootloader grub2: the image has no GRUB for EFI ({target}); install grub2-efi-{efi_arch} (Azure Linux) or grub-efi-amd64-bin and grub-common (Debian), or choose `bootloader: systemd-boot`"
    )]
    NoGrub { target: String, efi_arch: String },
    #[error(
        "the image has a kernel ({version}) but no initramfs generator: install dracut (Azure Linux) or initramfs-tools"
    )]
    NoGenerator { version: String },
    #[error("{tool} failed for {version} (exit status {status:?}):\n{output}")]
    Failed {
        tool: String,
        version: String,
        status: Option<i32>,
        output: String,
    },
    #[error("{tool} for {version} exited 0 but wrote no {path}")]
    Missing {
        tool: String,
        version: String,
        path: String,
    },
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
    #[error(transparent)]
    Tree(#[from] TreeError),
}

/// An installed kernel and where its boot files are in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    pub version: String,
    /// The kernel image: `/usr/lib/modules/V/vmlinuz` (Fedora, Azure Linux) or `/boot/vmlinuz-V`
    /// (Debian).
    pub image: String,
    /// The initramfs, once made.
    pub initrd: Option<String>,
}

fn is_file(tree: &Tree, path: &str) -> bool {
    tree.resolve(path)
        .ok()
        .and_then(|p| {
            tree.get(&p)
                .map(|e| matches!(e.kind, Kind::File { size, .. } if size > 0))
        })
        .unwrap_or(false)
}

/// The kernels installed in the tree, in version-directory order.
pub fn kernels(tree: &Tree) -> Vec<Kernel> {
    let mut out: Vec<Kernel> = Vec::new();
    for dir in ["/usr/lib/modules", "/lib/modules"] {
        let Ok(dir) = tree.resolve(dir) else { continue };
        let prefix = format!("{dir}/");
        let versions: Vec<String> = tree
            .entries()
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .filter(|(p, e)| e.kind == Kind::Dir && !p[prefix.len()..].contains('/'))
            .map(|(p, _)| p[prefix.len()..].to_string())
            .collect();
        for v in versions {
            if out.iter().any(|k| k.version == v) {
                continue;
            }
            let image = [format!("{dir}/{v}/vmlinuz"), format!("/boot/vmlinuz-{v}")]
                .into_iter()
                .find(|p| is_file(tree, p));
            if let Some(image) = image {
                let initrd = [
                    format!("/boot/initramfs-{v}.img"),
                    format!("/boot/initrd.img-{v}"),
                    format!("{dir}/{v}/initramfs.img"),
                ]
                .into_iter()
                .find(|p| is_file(tree, p));
                out.push(Kernel {
                    version: v,
                    image,
                    initrd,
                });
            }
        }
    }
    out
}

/// Makes the initramfs of `kernel` with the image's own generator, unless the image has one
/// already (a package's %posttrans may have made it). Returns its path in the tree.
/// Both tools honour SOURCE_DATE_EPOCH (cpio mtimes), and dracut's `--reproducible` sorts and
/// clamps the archive, so the same image gives the same initramfs.
pub fn make_initramfs(tree: &mut Tree, kernel: &Kernel, epoch: i64) -> Result<String, BootError> {
    if let Some(i) = &kernel.initrd {
        return Ok(i.clone());
    }
    let v = &kernel.version;
    // dracut as Azure Linux runs it for images (no host-only: the build host is not the VM);
    // initramfs-tools for Debian-based trees.
    let (tool, path, argv): (&str, String, Vec<String>) = if is_file(tree, "/usr/bin/dracut") {
        let path = format!("/boot/initramfs-{v}.img");
        let argv = [
            "/usr/bin/dracut",
            "--no-hostonly",
            "--reproducible",
            "--force",
            "--kver",
            v,
            &path,
        ];
        ("dracut", path.clone(), argv.map(str::to_string).to_vec())
    } else if is_file(tree, "/usr/sbin/mkinitramfs") {
        let path = format!("/boot/initrd.img-{v}");
        let argv = ["/usr/sbin/mkinitramfs", "-o", &path, v];
        (
            "mkinitramfs",
            path.clone(),
            argv.map(str::to_string).to_vec(),
        )
    } else {
        return Err(BootError::NoGenerator { version: v.clone() });
    };
    run_tool(tree, tool, &format!("kernel {v}"), &argv, &path, epoch)?;
    Ok(path)
}

/// Runs one of the image's own tools in the sandbox (with SOURCE_DATE_EPOCH, which dracut,
/// initramfs-tools and grub-mkimage honour) and requires the file it should write. `what` names
/// the kernel version or GRUB platform in errors.
fn run_tool(
    tree: &mut Tree,
    tool: &str,
    what: &str,
    argv: &[String],
    output: &str,
    epoch: i64,
) -> Result<(), BootError> {
    let epoch_text = epoch.to_string();
    let out = sandbox::run_with_env(
        tree.root(),
        argv,
        b"",
        &[("SOURCE_DATE_EPOCH", epoch_text.as_str())],
    )?;
    tree.rescan()?;
    if !out.success() {
        return Err(BootError::Failed {
            tool: tool.into(),
            version: what.into(),
            status: out.status,
            output: out.output,
        });
    }
    if !is_file(tree, output) {
        return Err(BootError::Missing {
            tool: tool.into(),
            version: what.into(),
            path: output.into(),
        });
    }
    Ok(())
}

/// A Boot Loader Specification type #1 entry (`/loader/entries/ID-VERSION.conf`), as
/// kernel-install's 90-loaderentry writes it. `linux` and `initrd` are paths on the partition
/// the boot loader reads.
pub fn bls_entry(title: &str, version: &str, linux: &str, initrd: &str, options: &str) -> String {
    format!(
        "title      {title}\nversion    {version}\nlinux      {linux}\ninitrd     {initrd}\noptions    {options}\n"
    )
}

/// A filesystem of the disk and where the image mounts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount: String,
    /// `ext4` or `vfat`.
    pub fs_type: String,
    /// The filesystem's UUID (`xxxxxxxx-…` for ext4, `XXXX-XXXX` for FAT).
    pub uuid: String,
    /// Mount options; empty means `defaults`.
    pub options: Vec<String>,
}

/// /etc/fstab by filesystem UUID: root checked first (pass 1), the others after (pass 2), no
/// swap (Azure's OS disk has none).
pub fn fstab(mounts: &[Mount]) -> String {
    let mut sorted: Vec<&Mount> = mounts.iter().collect();
    // Parents before children, as mount(8) -a needs them.
    sorted.sort_by_key(|m| {
        (
            m.mount.matches('/').count() - usize::from(m.mount == "/"),
            m.mount.clone(),
        )
    });
    let mut out = String::from("# Written by kiln from the disk layout of the image definition.\n");
    for m in sorted {
        let options = if m.options.is_empty() {
            "defaults".to_string()
        } else {
            m.options.join(",")
        };
        let pass = if m.mount == "/" { 1 } else { 2 };
        out.push_str(&format!(
            "UUID={} {} {} {options} 0 {pass}\n",
            m.uuid, m.mount, m.fs_type
        ));
    }
    out
}

/// What the boot files of a disk image need to know about it.
#[derive(Debug, Clone)]
pub struct BootPlan {
    /// Where the EFI system partition is mounted in the image (`/boot/efi`).
    pub esp: String,
    /// The entry title (`Azure Linux 4.0`) and the token naming the kernel directories and
    /// entries on the ESP (kernel-install's entry token: the image name here, as the machine
    /// id is empty until first boot).
    pub title: String,
    pub token: String,
    /// The kernel command line: `root=…` first, then the definition's.
    pub options: String,
    /// EFI architecture suffix: `x64` or `aa64`.
    pub efi_arch: String,
}

fn file_entry(mode: u32, epoch: i64) -> crate::tree::Entry {
    crate::tree::Entry {
        kind: Kind::File {
            size: 0,
            link: None,
        },
        mtime: epoch,
        ..crate::tree::Entry::dir(mode)
    }
}

/// Copies `from` (a file of the tree) to `to`, replacing what is there.
fn copy_in(tree: &mut Tree, from: &str, to: &str, epoch: i64) -> Result<(), BootError> {
    let bytes = tree.read(from)?;
    if tree.get(to).is_some() {
        tree.remove(to)?;
    }
    if let Some((dir, _)) = to.rsplit_once('/') {
        tree.mkdir_p(dir, 0o755, epoch)?;
    }
    tree.write_file(to, &mut bytes.as_slice(), file_entry(0o644, epoch))?;
    Ok(())
}

/// systemd-boot on the ESP, as `bootctl install` and kernel-install lay it out: the loader as
/// `/EFI/systemd/` and the removable-media fallback `/EFI/BOOT/BOOT<ARCH>.EFI`, each kernel and
/// its initramfs (made now if needed) under `/TOKEN/VERSION/`, one BLS entry per kernel, newest
/// first by default. Returns the kernels installed.
pub fn install_systemd_boot(
    tree: &mut Tree,
    plan: &BootPlan,
    epoch: i64,
) -> Result<Vec<Kernel>, BootError> {
    let arch = &plan.efi_arch;
    let loader = format!("/usr/lib/systemd/boot/efi/systemd-boot{arch}.efi");
    if !is_file(tree, &loader) {
        return Err(BootError::NoSystemdBoot { path: loader });
    }
    let mut found = kernels(tree);
    if found.is_empty() {
        return Err(BootError::NoKernel);
    }
    let esp = plan.esp.trim_end_matches('/');
    let loader_src = tree.resolve(&loader)?;
    copy_in(
        tree,
        &loader_src,
        &format!("{esp}/EFI/systemd/systemd-boot{arch}.efi"),
        epoch,
    )?;
    copy_in(
        tree,
        &loader_src,
        &format!("{esp}/EFI/BOOT/BOOT{}.EFI", arch.to_ascii_uppercase()),
        epoch,
    )?;
    for k in &mut found {
        let initrd = make_initramfs(tree, k, epoch)?;
        k.initrd = Some(initrd.clone());
        let dir = format!("/{}/{}", plan.token, k.version);
        let image = tree.resolve(&k.image)?;
        copy_in(tree, &image, &format!("{esp}{dir}/linux"), epoch)?;
        let initrd = tree.resolve(&initrd)?;
        copy_in(tree, &initrd, &format!("{esp}{dir}/initrd"), epoch)?;
        let entry = bls_entry(
            &plan.title,
            &k.version,
            &format!("{dir}/linux"),
            &format!("{dir}/initrd"),
            &plan.options,
        );
        let path = format!("{esp}/loader/entries/{}-{}.conf", plan.token, k.version);
        tree.mkdir_p(&format!("{esp}/loader/entries"), 0o755, epoch)?;
        tree.put_text(&path, &entry, file_entry(0o644, epoch))?;
    }
    // systemd-boot sorts entries by version itself; the default pattern picks the newest of
    // this image's, and no timeout keeps the boot fast on a VM nobody watches.
    let conf = format!("timeout 0\ndefault {}-*\n", plan.token);
    tree.put_text(
        &format!("{esp}/loader/loader.conf"),
        &conf,
        file_entry(0o644, epoch),
    )?;
    Ok(found)
}

/// The kernel command line Azure's VM images use when the definition gives none: the serial
/// console Azure's boot diagnostics read, a long root wait for slow first attach, and classic
/// interface names that the Azure agent expects.
pub const AZURE_CMDLINE: [&str; 4] = [
    "console=ttyS0",
    "earlyprintk=ttyS0",
    "rootdelay=300",
    "net.ifnames=0",
];

/// What GRUB needs to know about the disk beyond [`BootPlan`].
#[derive(Debug, Clone)]
pub struct GrubPlan {
    pub boot: BootPlan,
    /// Where the filesystem holding /boot is mounted (`/`, or `/boot` when it is separate), and
    /// its UUID, which GRUB searches for.
    pub boot_mount: String,
    pub boot_fs_uuid: String,
}

/// GRUB's platform directory for an EFI architecture suffix.
fn grub_target(efi_arch: &str) -> &'static str {
    if efi_arch == "aa64" {
        "arm64-efi"
    } else {
        "x86_64-efi"
    }
}

/// The first file of the tree matching `{esp}/EFI/*/NAME` outside `EFI/BOOT`: where the
/// distribution's shim and grub packages put their signed binaries (`EFI/azurelinux/`).
fn vendor_efi(tree: &Tree, esp: &str, name: &str) -> Option<String> {
    let prefix = format!("{esp}/EFI/");
    tree.entries()
        .range(prefix.clone()..)
        .take_while(|(p, _)| p.starts_with(&prefix))
        .map(|(p, _)| p.clone())
        .find(|p| {
            let rest = &p[prefix.len()..];
            rest.split('/').count() == 2
                && rest.rsplit('/').next() == Some(name)
                && !rest.starts_with("BOOT/")
                && is_file(tree, p)
        })
}

/// Modules built into a GRUB image kiln makes: what finding the root by UUID, reading ext4 and
/// FAT, a serial console and the Linux EFI loader take, and `blscfg` where the image's GRUB has
/// it. The ESP holds no module directory, so nothing can be loaded later.
const GRUB_MODULES: &[&str] = &[
    "part_gpt",
    "part_msdos",
    "fat",
    "ext2",
    "normal",
    "configfile",
    "search",
    "search_fs_uuid",
    "search_fs_file",
    "search_label",
    "linux",
    "echo",
    "test",
    "all_video",
    "efi_gop",
    "serial",
    "terminal",
    "gzio",
    "boot",
    "chain",
    "loadenv",
    "minicmd",
    "ls",
    "cat",
    "reboot",
    "halt",
    "sleep",
    "regexp",
    "blscfg",
];

/// GRUB's main configuration. With a GRUB that has `blscfg` (Fedora's and Azure Linux's) the
/// menu comes from /boot/loader/entries, as on an installed system; otherwise kiln writes the
/// same entries as menuentries, newest kernel first.
pub fn grub_cfg(plan: &GrubPlan, blscfg: bool, entries: &[(String, String, String)]) -> String {
    let mut out = String::from(
        "# Written by kiln. The menu is the Boot Loader Specification entries in /boot/loader/entries.\n",
    );
    out.push_str("set timeout=0\n");
    if plan
        .boot
        .options
        .split(' ')
        .any(|o| o.starts_with("console=ttyS"))
    {
        out.push_str("serial --unit=0 --speed=115200\nterminal_input serial console\nterminal_output serial console\n");
    }
    out.push_str(&format!(
        "insmod part_gpt\ninsmod ext2\nsearch --no-floppy --fs-uuid --set=root {}\n",
        plan.boot_fs_uuid
    ));
    if blscfg {
        out.push_str("insmod blscfg\nblscfg\n");
        return out;
    }
    for (version, linux, initrd) in entries {
        out.push_str(&format!(
            "menuentry '{} ({version})' --id '{}-{version}' {{\n\tlinux {linux} {}\n\tinitrd {initrd}\n}}\n",
            plan.boot.title.replace('\'', ""),
            plan.boot.token,
            plan.boot.options
        ));
    }
    out
}

/// The stub on the ESP that GRUB reads first: find the filesystem holding /boot and read the
/// real configuration there (what Fedora's grub2-efi writes to `EFI/<vendor>/grub.cfg`).
pub fn grub_stub(boot_fs_uuid: &str, prefix: &str) -> String {
    format!(
        "search --no-floppy --fs-uuid --set=dev {boot_fs_uuid}\nset prefix=($dev){prefix}\nexport $prefix\nconfigfile $prefix/grub.cfg\n"
    )
}

/// GRUB 2 for UEFI with Boot Loader Specification entries, as Azure Linux lays it out: each
/// kernel at /boot/vmlinuz-VERSION with its initramfs (made now if needed), an entry per kernel
/// in /boot/loader/entries, the main configuration in /boot/grub2 (or /boot/grub), and on the
/// ESP the removable-media path `EFI/BOOT/BOOT<ARCH>.EFI`: shim when the image has it, with
/// GRUB beside it, else GRUB itself. GRUB is the image's signed binary (`EFI/<vendor>/grub*.efi`)
/// or, when the image has only GRUB's modules, one made by its own `grub-mkimage`.
pub fn install_grub2(
    tree: &mut Tree,
    plan: &GrubPlan,
    epoch: i64,
) -> Result<Vec<Kernel>, BootError> {
    let arch = plan.boot.efi_arch.clone();
    let target = grub_target(&arch);
    let esp = plan.boot.esp.trim_end_matches('/').to_string();
    let upper = arch.to_ascii_uppercase();
    let mut found = kernels(tree);
    if found.is_empty() {
        return Err(BootError::NoKernel);
    }
    let modules = format!("/usr/lib/grub/{target}");
    let signed = vendor_efi(tree, &esp, &format!("grub{arch}.efi"));
    let mkimage = ["/usr/bin/grub2-mkimage", "/usr/bin/grub-mkimage"]
        .into_iter()
        .find(|p| is_file(tree, p));
    let shim = vendor_efi(tree, &esp, &format!("shim{arch}.efi"));
    let grub_dir = if tree.get("/boot/grub2").is_some() || mkimage == Some("/usr/bin/grub2-mkimage")
    {
        "/boot/grub2"
    } else {
        "/boot/grub"
    };
    // Paths as GRUB sees them: relative to the filesystem holding /boot.
    let on_boot = |p: &str| -> String {
        if plan.boot_mount == "/" {
            p.to_string()
        } else {
            p.strip_prefix(plan.boot_mount.trim_end_matches('/'))
                .unwrap_or(p)
                .to_string()
        }
    };
    let boot_efi = format!("{esp}/EFI/BOOT");
    tree.mkdir_p(&boot_efi, 0o755, epoch)?;
    let loader_name = if shim.is_some() {
        format!("grub{arch}.efi")
    } else {
        format!("BOOT{upper}.EFI")
    };
    let blscfg = match &signed {
        Some(g) => {
            let g = tree.resolve(g)?;
            copy_in(tree, &g, &format!("{boot_efi}/{loader_name}"), epoch)?;
            // Fedora's signed GRUB has blscfg built in.
            true
        }
        None => {
            let (Some(mkimage), true) = (mkimage, tree.get(&modules).is_some()) else {
                return Err(BootError::NoGrub {
                    target: target.into(),
                    efi_arch: arch.clone(),
                });
            };
            let have = |m: &str| is_file(tree, &format!("{modules}/{m}.mod"));
            let mods: Vec<String> = GRUB_MODULES
                .iter()
                .filter(|m| have(m))
                .map(|m| m.to_string())
                .collect();
            let out = format!("{boot_efi}/{loader_name}");
            if tree.get(&out).is_some() {
                tree.remove(&out)?;
            }
            let mut argv: Vec<String> = [
                mkimage,
                "-O",
                target,
                "-d",
                &modules,
                "-p",
                "/EFI/BOOT",
                "-o",
                &out,
            ]
            .map(str::to_string)
            .to_vec();
            argv.extend(mods.iter().cloned());
            run_tool(tree, mkimage, target, &argv, &out, epoch)?;
            mods.iter().any(|m| m == "blscfg")
        }
    };
    if let Some(shim) = &shim {
        let shim = tree.resolve(shim)?;
        copy_in(tree, &shim, &format!("{boot_efi}/BOOT{upper}.EFI"), epoch)?;
    }
    let stub = grub_stub(&plan.boot_fs_uuid, &on_boot(grub_dir));
    tree.put_text(
        &format!("{boot_efi}/grub.cfg"),
        &stub,
        file_entry(0o644, epoch),
    )?;
    if let Some(g) = &signed
        && let Some((vendor_dir, _)) = g.rsplit_once('/')
    {
        let vendor_dir = vendor_dir.to_string();
        tree.put_text(
            &format!("{vendor_dir}/grub.cfg"),
            &stub,
            file_entry(0o644, epoch),
        )?;
    }
    // Kernels where grub2's kernel-install plugin puts them, and one entry each.
    tree.mkdir_p("/boot/loader/entries", 0o755, epoch)?;
    let mut menu = Vec::new();
    for k in &mut found {
        let initrd = make_initramfs(tree, k, epoch)?;
        k.initrd = Some(initrd.clone());
        let linux = format!("/boot/vmlinuz-{}", k.version);
        if tree.resolve(&k.image)? != tree.canonical(&linux) {
            let image = tree.resolve(&k.image)?;
            copy_in(tree, &image, &linux, epoch)?;
        }
        let (linux, initrd) = (on_boot(&linux), on_boot(&initrd));
        let entry = bls_entry(
            &plan.boot.title,
            &k.version,
            &linux,
            &initrd,
            &plan.boot.options,
        );
        tree.put_text(
            &format!(
                "/boot/loader/entries/{}-{}.conf",
                plan.boot.token, k.version
            ),
            &entry,
            file_entry(0o644, epoch),
        )?;
        menu.push((k.version.clone(), linux, initrd));
    }
    menu.sort_by(|a, b| crate::resolve::evr::vercmp(&b.0, &a.0));
    tree.mkdir_p(grub_dir, 0o755, epoch)?;
    tree.put_text(
        &format!("{grub_dir}/grub.cfg"),
        &grub_cfg(plan, blscfg, &menu),
        file_entry(0o600, epoch),
    )?;
    // grubby and grub2-mkconfig in the running VM keep to the same command line and BLS menu.
    if tree.get("/etc/default/grub").is_none() {
        let cmdline = plan
            .boot
            .options
            .split(' ')
            .filter(|o| !o.starts_with("root=") && *o != "rw" && *o != "ro")
            .collect::<Vec<_>>()
            .join(" ");
        let text = format!(
            "GRUB_TIMEOUT=0\nGRUB_DISTRIBUTOR=\"{}\"\nGRUB_DEFAULT=saved\nGRUB_DISABLE_SUBMENU=true\nGRUB_TERMINAL_OUTPUT=\"console serial\"\nGRUB_SERIAL_COMMAND=\"serial --speed=115200\"\nGRUB_CMDLINE_LINUX=\"{cmdline}\"\nGRUB_DISABLE_RECOVERY=true\nGRUB_ENABLE_BLSCFG=true\n",
            plan.boot.title.replace('"', "")
        );
        tree.mkdir_p("/etc/default", 0o755, epoch)?;
        tree.put_text("/etc/default/grub", &text, file_entry(0o644, epoch))?;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Entry;

    fn file(mode: u32) -> Entry {
        Entry {
            kind: Kind::File {
                size: 0,
                link: None,
            },
            ..Entry::dir(mode)
        }
    }

    #[test]
    fn kernels_are_found_in_both_layouts() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Tree::create(&dir.path().join("root")).unwrap();
        // Fedora/Azure Linux: the image inside the modules directory, initramfs in /boot.
        t.mkdir_p("/usr/lib/modules/6.12.1-1.azl4.x86_64", 0o755, 0)
            .unwrap();
        t.put_text(
            "/usr/lib/modules/6.12.1-1.azl4.x86_64/vmlinuz",
            "MZ",
            file(0o755),
        )
        .unwrap();
        t.mkdir_p("/boot", 0o755, 0).unwrap();
        t.put_text("/boot/initramfs-6.12.1-1.azl4.x86_64.img", "x", file(0o600))
            .unwrap();
        // Debian: /lib -> usr/lib, the image in /boot, no initramfs yet.
        t.symlink("/lib", "usr/lib", Entry::dir(0o777)).unwrap();
        t.mkdir_p("/usr/lib/modules/6.1.0-57-amd64", 0o755, 0)
            .unwrap();
        t.put_text("/boot/vmlinuz-6.1.0-57-amd64", "MZ", file(0o644))
            .unwrap();
        // Modules without a kernel image (a leftover) are not a kernel.
        t.mkdir_p("/usr/lib/modules/5.0-old", 0o755, 0).unwrap();
        let k = kernels(&t);
        assert_eq!(
            k,
            [
                Kernel {
                    version: "6.1.0-57-amd64".into(),
                    image: "/boot/vmlinuz-6.1.0-57-amd64".into(),
                    initrd: None,
                },
                Kernel {
                    version: "6.12.1-1.azl4.x86_64".into(),
                    image: "/usr/lib/modules/6.12.1-1.azl4.x86_64/vmlinuz".into(),
                    initrd: Some("/boot/initramfs-6.12.1-1.azl4.x86_64.img".into()),
                },
            ]
        );
        // Without any generator the kernel that needs one is refused with advice.
        let err = make_initramfs(&mut t, &k[0], 0).unwrap_err().to_string();
        assert!(
            err.contains("install dracut (Azure Linux) or initramfs-tools"),
            "{err}"
        );
        // One that has its initramfs keeps it, generator or not.
        assert_eq!(
            make_initramfs(&mut t, &k[1], 0).unwrap(),
            "/boot/initramfs-6.12.1-1.azl4.x86_64.img"
        );
    }

    #[test]
    fn bls_entries_look_like_kernel_install_writes_them() {
        assert_eq!(
            bls_entry(
                "Azure Linux 4.0",
                "6.12.1-1.azl4.x86_64",
                "/6.12.1-1.azl4.x86_64/linux",
                "/6.12.1-1.azl4.x86_64/initrd",
                "root=PARTUUID=x console=ttyS0"
            ),
            "title      Azure Linux 4.0\nversion    6.12.1-1.azl4.x86_64\nlinux      /6.12.1-1.azl4.x86_64/linux\ninitrd     /6.12.1-1.azl4.x86_64/initrd\noptions    root=PARTUUID=x console=ttyS0\n"
        );
    }

    #[test]
    fn systemd_boot_goes_onto_the_esp_with_one_entry_per_kernel() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Tree::create(&dir.path().join("root")).unwrap();
        t.mkdir_p("/usr/lib/systemd/boot/efi", 0o755, 0).unwrap();
        let plan = BootPlan {
            esp: "/boot/efi".into(),
            title: "Azure Linux 4.0".into(),
            token: "azl-vm".into(),
            options: "root=PARTUUID=0000 rw console=ttyS0".into(),
            efi_arch: "x64".into(),
        };
        let err = install_systemd_boot(&mut t, &plan, 5)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no /usr/lib/systemd/boot/efi/systemd-bootx64.efi"),
            "{err}"
        );
        t.put_text(
            "/usr/lib/systemd/boot/efi/systemd-bootx64.efi",
            "MZ-boot",
            file(0o644),
        )
        .unwrap();
        let err = install_systemd_boot(&mut t, &plan, 5)
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs a kernel"), "{err}");
        t.mkdir_p("/usr/lib/modules/6.12.1", 0o755, 0).unwrap();
        t.put_text("/usr/lib/modules/6.12.1/vmlinuz", "MZ-kernel", file(0o755))
            .unwrap();
        t.mkdir_p("/boot", 0o755, 0).unwrap();
        t.put_text("/boot/initramfs-6.12.1.img", "initrd", file(0o600))
            .unwrap();
        let k = install_systemd_boot(&mut t, &plan, 5).unwrap();
        assert_eq!(k.len(), 1);
        assert_eq!(
            t.read_text("/boot/efi/EFI/BOOT/BOOTX64.EFI").unwrap(),
            "MZ-boot"
        );
        assert_eq!(
            t.read_text("/boot/efi/EFI/systemd/systemd-bootx64.efi")
                .unwrap(),
            "MZ-boot"
        );
        assert_eq!(
            t.read_text("/boot/efi/azl-vm/6.12.1/linux").unwrap(),
            "MZ-kernel"
        );
        assert_eq!(
            t.read_text("/boot/efi/azl-vm/6.12.1/initrd").unwrap(),
            "initrd"
        );
        let entry = t
            .read_text("/boot/efi/loader/entries/azl-vm-6.12.1.conf")
            .unwrap();
        assert!(
            entry.contains("linux      /azl-vm/6.12.1/linux\n"),
            "{entry}"
        );
        assert!(
            entry.contains("options    root=PARTUUID=0000 rw console=ttyS0\n"),
            "{entry}"
        );
        assert_eq!(
            t.read_text("/boot/efi/loader/loader.conf").unwrap(),
            "timeout 0\ndefault azl-vm-*\n"
        );
        assert_eq!(t.get("/boot/efi/loader/loader.conf").unwrap().mtime, 5);
        // Installing again (a rebuild of the same tree) replaces, never fails on, its files.
        install_systemd_boot(&mut t, &plan, 5).unwrap();
    }

    fn grub_plan() -> GrubPlan {
        GrubPlan {
            boot: BootPlan {
                esp: "/boot/efi".into(),
                title: "Azure Linux 4.0".into(),
                token: "azl-vm".into(),
                options: "root=PARTUUID=0000 rw console=ttyS0 net.ifnames=0".into(),
                efi_arch: "x64".into(),
            },
            boot_mount: "/".into(),
            boot_fs_uuid: "1111-uuid".into(),
        }
    }

    #[test]
    fn grub2_uses_the_images_signed_grub_behind_shim_with_bls_entries() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Tree::create(&dir.path().join("root")).unwrap();
        t.mkdir_p("/usr/lib/modules/6.12.1", 0o755, 0).unwrap();
        t.put_text("/usr/lib/modules/6.12.1/vmlinuz", "MZ-kernel", file(0o755))
            .unwrap();
        t.mkdir_p("/boot", 0o755, 0).unwrap();
        t.put_text("/boot/initramfs-6.12.1.img", "initrd", file(0o600))
            .unwrap();
        let err = install_grub2(&mut t, &grub_plan(), 5)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no GRUB for EFI (x86_64-efi); install grub2-efi-x64"),
            "{err}"
        );
        t.mkdir_p("/boot/efi/EFI/azurelinux", 0o700, 0).unwrap();
        t.put_text(
            "/boot/efi/EFI/azurelinux/grubx64.efi",
            "MZ-grub",
            file(0o700),
        )
        .unwrap();
        t.put_text(
            "/boot/efi/EFI/azurelinux/shimx64.efi",
            "MZ-shim",
            file(0o700),
        )
        .unwrap();
        t.mkdir_p("/boot/grub2", 0o755, 0).unwrap();
        let k = install_grub2(&mut t, &grub_plan(), 5).unwrap();
        assert_eq!(k.len(), 1);
        let text = |p: &str| t.read_text(p).unwrap_or_else(|| panic!("no {p}"));
        // shim at the removable-media path loads grubx64.efi from beside itself.
        assert_eq!(text("/boot/efi/EFI/BOOT/BOOTX64.EFI"), "MZ-shim");
        assert_eq!(text("/boot/efi/EFI/BOOT/grubx64.efi"), "MZ-grub");
        let stub = "search --no-floppy --fs-uuid --set=dev 1111-uuid\nset prefix=($dev)/boot/grub2\nexport $prefix\nconfigfile $prefix/grub.cfg\n";
        assert_eq!(text("/boot/efi/EFI/BOOT/grub.cfg"), stub);
        assert_eq!(text("/boot/efi/EFI/azurelinux/grub.cfg"), stub);
        assert_eq!(text("/boot/vmlinuz-6.12.1"), "MZ-kernel");
        assert_eq!(
            text("/boot/loader/entries/azl-vm-6.12.1.conf"),
            bls_entry(
                "Azure Linux 4.0",
                "6.12.1",
                "/boot/vmlinuz-6.12.1",
                "/boot/initramfs-6.12.1.img",
                "root=PARTUUID=0000 rw console=ttyS0 net.ifnames=0"
            )
        );
        let cfg = text("/boot/grub2/grub.cfg");
        assert!(
            cfg.contains("search --no-floppy --fs-uuid --set=root 1111-uuid\n"),
            "{cfg}"
        );
        assert!(cfg.contains("terminal_output serial console\n"), "{cfg}");
        assert!(cfg.ends_with("insmod blscfg\nblscfg\n"), "{cfg}");
        let default = text("/etc/default/grub");
        assert!(
            default.contains("GRUB_CMDLINE_LINUX=\"console=ttyS0 net.ifnames=0\"\n")
                && default.contains("GRUB_ENABLE_BLSCFG=true\n"),
            "{default}"
        );
        // Again on the same tree (a rebuild) replaces its files.
        install_grub2(&mut t, &grub_plan(), 5).unwrap();
    }

    #[test]
    fn grub_without_blscfg_gets_menuentries_newest_first_relative_to_boot() {
        let mut plan = grub_plan();
        plan.boot_mount = "/boot".into();
        let cfg = grub_cfg(
            &plan,
            false,
            &[
                (
                    "6.12.10".into(),
                    "/vmlinuz-6.12.10".into(),
                    "/initramfs-6.12.10.img".into(),
                ),
                (
                    "6.12.9".into(),
                    "/vmlinuz-6.12.9".into(),
                    "/initramfs-6.12.9.img".into(),
                ),
            ],
        );
        assert!(!cfg.contains("blscfg\n"), "{cfg}");
        let first = cfg.find("menuentry 'Azure Linux 4.0 (6.12.10)' --id 'azl-vm-6.12.10' {\n\tlinux /vmlinuz-6.12.10 root=PARTUUID=0000 rw console=ttyS0 net.ifnames=0\n\tinitrd /initramfs-6.12.10.img\n}\n");
        let second = cfg.find("(6.12.9)");
        assert!(first.is_some() && first < second, "{cfg}");
    }

    #[test]
    fn fstab_mounts_by_uuid_parents_first() {
        let m = |mount: &str, fs: &str, uuid: &str, opts: &[&str]| Mount {
            mount: mount.into(),
            fs_type: fs.into(),
            uuid: uuid.into(),
            options: opts.iter().map(|o| o.to_string()).collect(),
        };
        let text = fstab(&[
            m("/boot/efi", "vfat", "1A2B-3C4D", &["umask=0077"]),
            m("/", "ext4", "0a1b2c3d-0000-4000-8000-000000000001", &[]),
            m("/boot", "ext4", "0a1b2c3d-0000-4000-8000-000000000002", &[]),
        ]);
        assert_eq!(
            text,
            "# Written by kiln from the disk layout of the image definition.\n\
             UUID=0a1b2c3d-0000-4000-8000-000000000001 / ext4 defaults 0 1\n\
             UUID=0a1b2c3d-0000-4000-8000-000000000002 /boot ext4 defaults 0 2\n\
             UUID=1A2B-3C4D /boot/efi vfat umask=0077 0 2\n"
        );
    }
}
