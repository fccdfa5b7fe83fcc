//! The definition's plain system settings: hostname, locale, keymap, time zone, kernel command
//! line, SELinux mode, machine-id, and the files and directories it lists.

use std::collections::BTreeMap;
use std::path::Path;

use crate::definition::types::{DirectoryEntry, FileEntry, SelinuxMode, System};
use crate::definition::values::Owner;
use crate::tree::accounts::Accounts;
use crate::tree::{Entry, Kind, Tree, TreeError};

#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error("{at}: {message}")]
    Invalid {
        at: String,
        message: String,
        help: String,
    },
    #[error(transparent)]
    Tree(#[from] TreeError),
}

fn invalid(
    at: impl Into<String>,
    message: impl Into<String>,
    help: impl Into<String>,
) -> SystemError {
    SystemError::Invalid {
        at: at.into(),
        message: message.into(),
        help: help.into(),
    }
}

fn file(mode: u32, uid: u32, gid: u32, mtime: i64) -> Entry {
    Entry {
        kind: Kind::File {
            size: 0,
            link: None,
        },
        mode,
        uid,
        gid,
        mtime,
        xattrs: BTreeMap::new(),
    }
}

/// Replaces `KEY=…` in a shell-style config file, or adds it, keeping every other line.
fn set_key(text: &str, key: &str, value: &str) -> String {
    let mut out = Vec::new();
    let mut done = false;
    for line in text.lines() {
        let is_key = line
            .trim_start()
            .strip_prefix(key)
            .is_some_and(|r| r.trim_start().starts_with('='));
        if is_key {
            if !done {
                out.push(format!("{key}={value}"));
                done = true;
            }
        } else {
            out.push(line.to_string());
        }
    }
    if !done {
        out.push(format!("{key}={value}"));
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

fn put_config(
    tree: &mut Tree,
    path: &str,
    key: &str,
    value: &str,
    epoch: i64,
) -> Result<(), SystemError> {
    let old = tree.read_text(path).unwrap_or_default();
    tree.mkdir_p(parent(path), 0o755, epoch)?;
    tree.put_text(path, &set_key(&old, key, value), file(0o644, 0, 0, epoch))?;
    Ok(())
}

fn parent(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((p, _)) => p,
    }
}

/// Hostname, locale, keymap, time zone, kernel command line and the SELinux mode.
pub fn apply_settings(
    tree: &mut Tree,
    sys: &System,
    epoch: i64,
) -> Result<Vec<String>, SystemError> {
    let mut notes = Vec::new();
    if let Some(h) = &sys.hostname {
        tree.mkdir_p("/etc", 0o755, epoch)?;
        tree.put_text("/etc/hostname", &format!("{h}\n"), file(0o644, 0, 0, epoch))?;
    }
    if let Some(l) = &sys.locale {
        put_config(tree, "/etc/locale.conf", "LANG", l, epoch)?;
        let base = l.split(['.', '@']).next().unwrap_or(l);
        let known = matches!(base, "C" | "POSIX")
            || tree.entries().keys().any(|k| {
                k.starts_with("/usr/lib/locale/")
                    && k["/usr/lib/locale/".len()..].split(['.', '@', '/']).next() == Some(base)
            });
        if !known {
            notes.push(format!("locale {l}: no compiled locale for it in /usr/lib/locale (install its glibc-langpack); programs will fall back to C"));
        }
    }
    if let Some(k) = &sys.keymap {
        put_config(tree, "/etc/vconsole.conf", "KEYMAP", k, epoch)?;
    }
    if let Some(tz) = &sys.timezone {
        timezone(tree, tz, epoch, &mut notes)?;
    }
    if !sys.kernel_cmdline.is_empty() {
        // kernel-install and the disk backends read it from here, as on Fedora.
        tree.mkdir_p("/etc/kernel", 0o755, epoch)?;
        let line = format!("{}\n", sys.kernel_cmdline.join(" "));
        tree.put_text("/etc/kernel/cmdline", &line, file(0o644, 0, 0, epoch))?;
    }
    if let Some(mode) = sys.selinux {
        let name = match mode {
            SelinuxMode::Enforcing => "enforcing",
            SelinuxMode::Permissive => "permissive",
            SelinuxMode::Disabled => "disabled",
        };
        let old = tree.read_text("/etc/selinux/config").unwrap_or_default();
        tree.mkdir_p("/etc/selinux", 0o755, epoch)?;
        let mut text = set_key(&old, "SELINUX", name);
        if !text
            .lines()
            .any(|l| l.trim_start().starts_with("SELINUXTYPE"))
        {
            text = set_key(&text, "SELINUXTYPE", "targeted");
        }
        tree.put_text("/etc/selinux/config", &text, file(0o644, 0, 0, epoch))?;
    }
    Ok(notes)
}

fn timezone(
    tree: &mut Tree,
    tz: &str,
    epoch: i64,
    notes: &mut Vec<String>,
) -> Result<(), SystemError> {
    let at = format!("system.timezone ({tz})");
    if tz.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(invalid(
            at,
            "is not a time zone name",
            "write a name like `UTC` or `Europe/Berlin`",
        ));
    }
    let zone = format!("/usr/share/zoneinfo/{tz}");
    let present = tree
        .resolve(&zone)
        .ok()
        .and_then(|p| tree.get(&p).cloned())
        .is_some_and(|e| matches!(e.kind, Kind::File { .. }));
    if tree.get("/etc/localtime").is_some() {
        tree.remove("/etc/localtime")?;
    }
    if present {
        tree.mkdir_p("/etc", 0o755, epoch)?;
        let link = Entry {
            kind: Kind::Symlink {
                target: String::new(),
            },
            mode: 0o777,
            uid: 0,
            gid: 0,
            mtime: epoch,
            xattrs: BTreeMap::new(),
        };
        tree.symlink("/etc/localtime", &format!("..{zone}"), link)?;
        return Ok(());
    }
    if tz == "UTC" || tz == "Etc/UTC" {
        // With no /etc/localtime glibc and systemd use UTC, so the image is right without tzdata.
        notes.push("timezone UTC: tzdata is not installed, so /etc/localtime is left out (UTC is the default)".into());
        return Ok(());
    }
    Err(invalid(
        at,
        format!("{zone} is not in the image"),
        "install the `tzdata` package, or check the spelling of the zone",
    ))
}

fn owner_id(acc: &Accounts, o: &Option<Owner>, user: bool, at: &str) -> Result<u32, SystemError> {
    match o {
        None => Ok(0),
        Some(Owner::Id(i)) => Ok(*i),
        Some(Owner::Name(n)) => {
            let found = if user { acc.uid_of(n) } else { acc.gid_of(n) };
            found.ok_or_else(|| {
                let what = if user { "user" } else { "group" };
                invalid(
                    at,
                    format!("{what} {n} does not exist in the image"),
                    format!("add it under system.{what}s, install the package that creates it, or use a number"),
                )
            })
        }
    }
}

/// Writes the definition's directories, then its files (so files can go into them).
pub fn apply_files(
    tree: &mut Tree,
    dirs: &[DirectoryEntry],
    files: &[FileEntry],
    epoch: i64,
) -> Result<(), SystemError> {
    let acc = Accounts::read(tree);
    for (i, d) in dirs.iter().enumerate() {
        let at = format!("system.directories[{i}] ({})", d.path);
        let uid = owner_id(&acc, &d.owner, true, &at)?;
        let gid = owner_id(&acc, &d.group, false, &at)?;
        let mode = d.mode.map_or(0o755, |m| m.0);
        let resolved = tree
            .resolve(&d.path)
            .map_err(|e| invalid(&at, e.to_string(), "give a path inside the image"))?;
        tree.mkdir_p(parent(&resolved), 0o755, epoch)?;
        let mut e = Entry::dir(mode);
        e.uid = uid;
        e.gid = gid;
        e.mtime = epoch;
        tree.put_dir(&resolved, e)
            .map_err(|e| invalid(&at, e.to_string(), "a file or link is already there"))?;
    }
    for (i, f) in files.iter().enumerate() {
        let at = format!("system.files[{i}] ({})", f.path);
        let uid = owner_id(&acc, &f.owner, true, &at)?;
        let gid = owner_id(&acc, &f.group, false, &at)?;
        let mode = f.mode.map_or(0o644, |m| m.0);
        let data: Vec<u8> = match (&f.content, &f.source) {
            (Some(c), _) => c.clone().into_bytes(),
            (None, Some(src)) => std::fs::read(Path::new(src)).map_err(|e| {
                invalid(
                    &at,
                    format!("cannot read {src}: {e}"),
                    "`source` is relative to the definition file",
                )
            })?,
            (None, None) => Vec::new(),
        };
        let resolved = tree
            .resolve_parent(&f.path)
            .map_err(|e| invalid(&at, e.to_string(), "give a path inside the image"))?;
        tree.mkdir_p(parent(&resolved), 0o755, epoch)?;
        if tree.get(&resolved).is_some_and(|e| e.kind == Kind::Dir) {
            return Err(invalid(
                at,
                "a directory is already there",
                "pick another path",
            ));
        }
        tree.write_file(&resolved, &mut data.as_slice(), file(mode, uid, gid, epoch))?;
    }
    Ok(())
}

/// Empties /etc/machine-id so that every machine made from the image gets its own on first
/// boot (systemd treats an empty file as "not yet initialised" and runs first-boot units).
pub fn reset_machine_id(tree: &mut Tree, epoch: i64) -> Result<(), SystemError> {
    tree.mkdir_p("/etc", 0o755, epoch)?;
    let keep = tree
        .get("/etc/machine-id")
        .filter(|e| matches!(e.kind, Kind::File { .. }))
        .map(|e| (e.mode, e.mtime));
    let (mode, _) = keep.unwrap_or((0o444, epoch));
    tree.write_file(
        "/etc/machine-id",
        &mut std::io::empty(),
        file(mode, 0, 0, epoch),
    )?;
    // A D-Bus copy of the id would pin every machine to the same one.
    if let Ok(p) = tree.resolve_parent("/var/lib/dbus/machine-id")
        && tree
            .get(&p)
            .is_some_and(|e| matches!(e.kind, Kind::File { .. }))
    {
        tree.remove(&p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, Tree) {
        let d = tempfile::tempdir().unwrap();
        let t = Tree::create(&d.path().join("root"))
            .unwrap()
            .without_real_owners();
        (d, t)
    }

    #[test]
    fn keys_are_replaced_or_added() {
        assert_eq!(
            set_key("# x\nLANG=C\nLC_X=1\n", "LANG", "en_US.UTF-8"),
            "# x\nLANG=en_US.UTF-8\nLC_X=1\n"
        );
        assert_eq!(set_key("", "KEYMAP", "de"), "KEYMAP=de\n");
    }

    #[test]
    fn settings_are_written() {
        let (_d, mut t) = tree();
        t.mkdir_p("/usr/share/zoneinfo/Europe", 0o755, 0).unwrap();
        t.write_file(
            "/usr/share/zoneinfo/Europe/Berlin",
            &mut &b"TZif"[..],
            file(0o644, 0, 0, 0),
        )
        .unwrap();
        let sys = System {
            hostname: Some("web01".into()),
            locale: Some("C.UTF-8".into()),
            keymap: Some("de".into()),
            timezone: Some("Europe/Berlin".into()),
            kernel_cmdline: vec!["console=ttyS0".into(), "quiet".into()],
            selinux: Some(SelinuxMode::Permissive),
            ..System::default()
        };
        let notes = apply_settings(&mut t, &sys, 5).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(t.read_text("/etc/hostname").unwrap(), "web01\n");
        assert_eq!(t.read_text("/etc/locale.conf").unwrap(), "LANG=C.UTF-8\n");
        assert_eq!(t.read_text("/etc/vconsole.conf").unwrap(), "KEYMAP=de\n");
        assert_eq!(
            t.get("/etc/localtime").unwrap().kind,
            Kind::Symlink {
                target: "../usr/share/zoneinfo/Europe/Berlin".into()
            }
        );
        assert_eq!(
            t.read_text("/etc/kernel/cmdline").unwrap(),
            "console=ttyS0 quiet\n"
        );
        assert_eq!(
            t.read_text("/etc/selinux/config").unwrap(),
            "SELINUX=permissive\nSELINUXTYPE=targeted\n"
        );
    }

    #[test]
    fn a_missing_zone_is_an_error_but_utc_is_fine() {
        let (_d, mut t) = tree();
        let sys = System {
            timezone: Some("Mars/Olympus".into()),
            ..System::default()
        };
        let e = apply_settings(&mut t, &sys, 0).unwrap_err();
        assert!(
            matches!(&e, SystemError::Invalid { help, .. } if help.contains("tzdata")),
            "{e}"
        );
        let sys = System {
            timezone: Some("UTC".into()),
            ..System::default()
        };
        assert_eq!(apply_settings(&mut t, &sys, 0).unwrap().len(), 1);
        assert!(t.get("/etc/localtime").is_none());
    }

    #[test]
    fn files_and_directories() {
        let (_d, mut t) = tree();
        t.mkdir_p("/etc", 0o755, 0).unwrap();
        t.write_file(
            "/etc/passwd",
            &mut &b"root:x:0:0::/root:/bin/sh\napp:x:950:950::/:/sbin/nologin\n"[..],
            file(0o644, 0, 0, 0),
        )
        .unwrap();
        t.write_file(
            "/etc/group",
            &mut &b"root:x:0:\napp:x:950:\n"[..],
            file(0o644, 0, 0, 0),
        )
        .unwrap();
        let dirs = vec![DirectoryEntry {
            path: "/srv/app/data".into(),
            mode: Some(crate::definition::values::Mode(0o750)),
            owner: Some(Owner::Name("app".into())),
            group: Some(Owner::Name("app".into())),
        }];
        let files = vec![FileEntry {
            path: "/srv/app/data/config.toml".into(),
            content: Some("x = 1\n".into()),
            source: None,
            mode: Some(crate::definition::values::Mode(0o600)),
            owner: Some(Owner::Name("app".into())),
            group: None,
        }];
        apply_files(&mut t, &dirs, &files, 7).unwrap();
        let d = t.get("/srv/app/data").unwrap();
        assert_eq!((d.mode, d.uid, d.gid), (0o750, 950, 950));
        let f = t.get("/srv/app/data/config.toml").unwrap();
        assert_eq!((f.mode, f.uid, f.gid, f.mtime), (0o600, 950, 0, 7));
        assert_eq!(t.read_text("/srv/app/data/config.toml").unwrap(), "x = 1\n");
        let bad = vec![FileEntry {
            owner: Some(Owner::Name("nobody2".into())),
            ..files[0].clone()
        }];
        let e = apply_files(&mut t, &[], &bad, 7).unwrap_err().to_string();
        assert!(
            e.contains("system.files[0]") && e.contains("nobody2"),
            "{e}"
        );
    }

    #[test]
    fn machine_id_is_emptied() {
        let (_d, mut t) = tree();
        t.mkdir_p("/etc", 0o755, 0).unwrap();
        t.write_file(
            "/etc/machine-id",
            &mut &b"0123456789abcdef0123456789abcdef\n"[..],
            file(0o444, 0, 0, 0),
        )
        .unwrap();
        reset_machine_id(&mut t, 3).unwrap();
        assert_eq!(t.read_text("/etc/machine-id").unwrap(), "");
        assert_eq!(t.get("/etc/machine-id").unwrap().mode, 0o444);
    }
}
