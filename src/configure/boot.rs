//! Boot files of disk images, made the way the distribution makes them: the initramfs by the
//! image's own dracut or initramfs-tools (in the sandbox), and Boot Loader Specification entries.

use crate::install::sandbox;
use crate::tree::{Kind, Tree, TreeError};

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error(
        "the image has a kernel ({version}) but no initramfs generator: install dracut (Azure Linux) or initramfs-tools"
    )]
    NoGenerator { version: String },
    #[error("{tool} failed for kernel {version} (exit status {status:?}):\n{output}")]
    Failed {
        tool: String,
        version: String,
        status: Option<i32>,
        output: String,
    },
    #[error("{tool} for kernel {version} exited 0 but wrote no {path}")]
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
pub fn make_initramfs(tree: &mut Tree, kernel: &Kernel) -> Result<String, BootError> {
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
    let out = sandbox::run(tree.root(), &argv, b"")?;
    tree.rescan()?;
    if !out.success() {
        return Err(BootError::Failed {
            tool: tool.into(),
            version: v.clone(),
            status: out.status,
            output: out.output,
        });
    }
    if !is_file(tree, &path) {
        return Err(BootError::Missing {
            tool: tool.into(),
            version: v.clone(),
            path,
        });
    }
    Ok(path)
}

/// A Boot Loader Specification type #1 entry (`/loader/entries/ID-VERSION.conf`), as
/// kernel-install's 90-loaderentry writes it. `linux` and `initrd` are paths on the partition
/// the boot loader reads.
pub fn bls_entry(title: &str, version: &str, linux: &str, initrd: &str, options: &str) -> String {
    format!(
        "title      {title}\nversion    {version}\nlinux      {linux}\ninitrd     {initrd}\noptions    {options}\n"
    )
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
        let err = make_initramfs(&mut t, &k[0]).unwrap_err().to_string();
        assert!(
            err.contains("install dracut (Azure Linux) or initramfs-tools"),
            "{err}"
        );
        // One that has its initramfs keeps it, generator or not.
        assert_eq!(
            make_initramfs(&mut t, &k[1]).unwrap(),
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
}
