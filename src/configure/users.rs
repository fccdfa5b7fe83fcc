//! Users and groups from the definition, written as groupadd/useradd would on Azure Linux: ids,
//! shadow entries, homes from /etc/skel, subordinate ids, SSH keys.

use std::collections::BTreeMap;

use crate::definition::types::{Group as DefGroup, User as DefUser};
use crate::tree::accounts::{Accounts, User};
use crate::tree::{Entry, Kind, Tree, TreeError};

/// What went wrong, with the definition path (`system.users[1]`) it concerns.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("{at}: {message}")]
    Invalid {
        at: String,
        message: String,
        help: String,
    },
    #[error(transparent)]
    Tree(#[from] TreeError),
}

fn invalid(at: String, message: impl Into<String>, help: impl Into<String>) -> UsersError {
    UsersError::Invalid {
        at,
        message: message.into(),
        help: help.into(),
    }
}

/// shadow-utils' defaults on Fedora-like systems (login.defs): aging fields of new accounts and
/// the subordinate id ranges useradd hands out.
const PASS_MIN_DAYS: u32 = 0;
const PASS_MAX_DAYS: u32 = 99999;
const PASS_WARN_AGE: u32 = 7;
const SUB_ID_MIN: u64 = 100_000;
const SUB_ID_COUNT: u64 = 65_536;

fn entry(kind: Kind, mode: u32, uid: u32, gid: u32, mtime: i64) -> Entry {
    Entry {
        kind,
        mode,
        uid,
        gid,
        mtime,
        xattrs: BTreeMap::new(),
    }
}

/// Applies `groups` then `users`. `epoch` is the build's timestamp (SOURCE_DATE_EPOCH): it
/// dates the shadow entries and the files made.
pub fn apply(
    tree: &mut Tree,
    groups: &[DefGroup],
    users: &[DefUser],
    epoch: i64,
) -> Result<Vec<String>, UsersError> {
    let mut notes = Vec::new();
    if groups.is_empty() && users.is_empty() {
        return Ok(notes);
    }
    let mut acc = Accounts::read(tree);
    for (i, g) in groups.iter().enumerate() {
        let at = format!("system.groups[{i}] ({})", g.name);
        match acc.group(&g.name) {
            Some(existing) => {
                if let Some(want) = g.gid
                    && want != existing.gid
                {
                    return Err(invalid(
                        at,
                        format!(
                            "group {} already exists in the image with gid {} (a package made it)",
                            g.name, existing.gid
                        ),
                        format!(
                            "leave out `gid`, or write gid {}: changing it would leave the package's files with a stale owner",
                            existing.gid
                        ),
                    ));
                }
            }
            None => {
                acc.add_group(&g.name, g.gid, g.system)
                    .map_err(|m| invalid(at, m, "pick a free gid or leave it out"))?;
            }
        }
    }

    // New users and the shadow lines to set once passwd is written.
    let mut shadow: Vec<(String, String, bool)> = Vec::new();
    let mut homes: Vec<(String, u32, u32, bool)> = Vec::new();
    let mut keys: Vec<(String, u32, u32, &[String])> = Vec::new();
    let mut new_regular = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let at = format!("system.users[{i}] ({})", u.name);
        let existing = acc.user(&u.name).cloned();
        let (uid, gid, home) = match existing {
            Some(mut cur) => {
                if let Some(want) = u.uid
                    && want != cur.uid
                {
                    return Err(invalid(
                        at,
                        format!(
                            "user {} already exists in the image with uid {}",
                            u.name, cur.uid
                        ),
                        format!("leave out `uid`, or write uid {}", cur.uid),
                    ));
                }
                if let Some(g) = u.gid {
                    cur.gid = g;
                }
                if let Some(s) = &u.shell {
                    cur.shell = s.clone();
                }
                if let Some(c) = &u.comment {
                    cur.gecos = c.clone();
                }
                if let Some(h) = &u.home {
                    cur.home = h.clone();
                }
                let (uid, gid, home) = (cur.uid, cur.gid, cur.home.clone());
                if let Some(slot) = acc.users.iter_mut().find(|x| x.name == u.name) {
                    *slot = cur;
                }
                (uid, gid, home)
            }
            None => {
                let uid = match u.uid {
                    Some(id) => id,
                    None => acc.free_id(u.system, u.gid.is_none()).ok_or_else(|| {
                        invalid(at.clone(), "no free uid is left", "give `uid` explicitly")
                    })?,
                };
                // useradd -U: a group named after the user, with the same id when it is free.
                let gid = match u.gid {
                    Some(g) => {
                        if !acc.groups.iter().any(|x| x.gid == g) {
                            return Err(invalid(
                                at,
                                format!("primary gid {g} is not a group of the image"),
                                "add the group under system.groups, or leave out `gid` to get a group named after the user",
                            ));
                        }
                        g
                    }
                    None => {
                        let want = if acc.groups.iter().any(|x| x.gid == uid) {
                            None
                        } else {
                            Some(uid)
                        };
                        acc.add_group(&u.name, want, u.system)
                            .map_err(|m| invalid(at.clone(), m, "give `gid` explicitly"))?
                    }
                };
                let home = u.home.clone().unwrap_or_else(|| {
                    if u.name == "root" {
                        "/root".into()
                    } else {
                        format!("/home/{}", u.name)
                    }
                });
                let shell = u.shell.clone().unwrap_or_else(|| "/bin/bash".into());
                if tree
                    .resolve(&shell)
                    .ok()
                    .and_then(|p| tree.get(&p).cloned())
                    .is_none()
                {
                    notes.push(format!(
                        "user {}: the login shell {shell} is not in the image",
                        u.name
                    ));
                }
                acc.add_user(User {
                    name: u.name.clone(),
                    uid,
                    gid,
                    gecos: u.comment.clone().unwrap_or_default(),
                    home: home.clone(),
                    shell,
                })
                .map_err(|m| invalid(at.clone(), m, "pick a free uid or leave it out"))?;
                if !u.system {
                    new_regular.push(u.name.clone());
                }
                // System users get a home only when one is asked for (useradd -r).
                if !u.system || u.home.is_some() {
                    homes.push((home.clone(), uid, gid, true));
                }
                (uid, gid, home)
            }
        };
        for g in &u.groups {
            if acc.group(g).is_none() {
                return Err(invalid(
                    at,
                    format!("supplementary group {g} does not exist in the image"),
                    format!(
                        "add `{g}` under system.groups, or install the package that creates it"
                    ),
                ));
            }
            acc.add_member(g, &u.name);
        }
        let locked = u.password_locked.unwrap_or(u.password_hash.is_none());
        match (&u.password_hash, locked) {
            (Some(h), _) => shadow.push((u.name.clone(), h.clone(), locked)),
            (None, true) => shadow.push((u.name.clone(), String::new(), true)),
            (None, false) => {
                return Err(invalid(
                    at,
                    "password-locked is false but there is no password-hash",
                    "give a crypt(3) hash (`openssl passwd -6`) or drop `password-locked: false`; kiln never writes an empty password",
                ));
            }
        }
        if !u.ssh_authorized_keys.is_empty() {
            keys.push((home.clone(), uid, gid, &u.ssh_authorized_keys));
            if !homes.iter().any(|h| h.0 == home) {
                homes.push((home, uid, gid, false));
            }
        }
    }
    acc.write(tree)?;
    set_shadow(tree, &shadow, epoch)?;
    add_subids(tree, &new_regular)?;
    for (home, uid, gid, fresh) in &homes {
        make_home(tree, home, *uid, *gid, *fresh, epoch)?;
    }
    for (home, uid, gid, k) in keys {
        authorized_keys(tree, &home, uid, gid, k, epoch)?;
    }
    Ok(notes)
}

/// Sets the password field of each listed user: a hash, `!` + hash when locked, or `!` alone.
fn set_shadow(
    tree: &mut Tree,
    wanted: &[(String, String, bool)],
    epoch: i64,
) -> Result<(), TreeError> {
    if wanted.is_empty() {
        return Ok(());
    }
    let days = (epoch.max(0) / 86_400).to_string();
    let text = tree.read_text("/etc/shadow").unwrap_or_default();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for (name, hash, locked) in wanted {
        let pw = match (hash.is_empty(), locked) {
            (true, _) => "!".to_string(),
            (false, true) => format!("!{hash}"),
            (false, false) => hash.clone(),
        };
        match lines
            .iter_mut()
            .find(|l| l.split(':').next() == Some(name.as_str()))
        {
            Some(line) => {
                let mut f: Vec<String> = line.split(':').map(str::to_string).collect();
                f.resize(9, String::new());
                f[1] = pw;
                // Accounts made just now (by kiln or sysusers) get useradd's aging fields.
                if f[2].is_empty() {
                    f[2] = days.clone();
                    f[3] = PASS_MIN_DAYS.to_string();
                    f[4] = PASS_MAX_DAYS.to_string();
                    f[5] = PASS_WARN_AGE.to_string();
                }
                *line = f.join(":");
            }
            None => lines.push(format!(
                "{name}:{pw}:{days}:{PASS_MIN_DAYS}:{PASS_MAX_DAYS}:{PASS_WARN_AGE}:::"
            )),
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    let keep = entry(
        Kind::File {
            size: 0,
            link: None,
        },
        0,
        0,
        0,
        epoch,
    );
    tree.put_text("/etc/shadow", &out, keep)?;
    Ok(())
}

/// useradd gives each new regular user 65536 subordinate ids when /etc/subuid and /etc/subgid
/// exist (rootless containers need them); ranges follow the highest one in use.
fn add_subids(tree: &mut Tree, users: &[String]) -> Result<(), TreeError> {
    for file in ["/etc/subuid", "/etc/subgid"] {
        let Some(text) = tree.read_text(file) else {
            continue;
        };
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        let mut next = SUB_ID_MIN;
        for l in &lines {
            let f: Vec<&str> = l.split(':').collect();
            if let (Some(start), Some(count)) = (
                f.get(1).and_then(|s| s.parse::<u64>().ok()),
                f.get(2).and_then(|s| s.parse::<u64>().ok()),
            ) {
                next = next.max(start + count);
            }
        }
        let mut changed = false;
        for u in users {
            if lines
                .iter()
                .any(|l| l.split(':').next() == Some(u.as_str()))
            {
                continue;
            }
            lines.push(format!("{u}:{next}:{SUB_ID_COUNT}"));
            next += SUB_ID_COUNT;
            changed = true;
        }
        if changed {
            let mut out = lines.join("\n");
            out.push('\n');
            tree.put_text(
                file,
                &out,
                entry(
                    Kind::File {
                        size: 0,
                        link: None,
                    },
                    0o644,
                    0,
                    0,
                    0,
                ),
            )?;
        }
    }
    Ok(())
}

/// Creates a home (0700, as Fedora's HOME_MODE) with a copy of /etc/skel owned by the user. A
/// home that exists is left as it is, as useradd does.
fn make_home(
    tree: &mut Tree,
    home: &str,
    uid: u32,
    gid: u32,
    copy_skel: bool,
    epoch: i64,
) -> Result<(), TreeError> {
    let resolved = tree.resolve(home)?;
    if tree.get(&resolved).is_some() {
        return Ok(());
    }
    if let Some(parent) = resolved
        .rsplit_once('/')
        .map(|(p, _)| if p.is_empty() { "/" } else { p })
    {
        tree.mkdir_p(parent, 0o755, epoch)?;
    }
    tree.put_dir(&resolved, entry(Kind::Dir, 0o700, uid, gid, epoch))?;
    if !copy_skel {
        return Ok(());
    }
    let skel: Vec<(String, Entry)> = tree
        .entries()
        .range("/etc/skel/".to_string()..)
        .take_while(|(k, _)| k.starts_with("/etc/skel/"))
        .map(|(k, e)| (k.clone(), e.clone()))
        .collect();
    for (path, e) in skel {
        let dest = format!("{resolved}/{}", &path["/etc/skel/".len()..]);
        let mut e2 = e.clone();
        e2.uid = uid;
        e2.gid = gid;
        match &e.kind {
            Kind::Dir => {
                tree.put_dir(&dest, e2)?;
            }
            Kind::Symlink { target } => {
                tree.symlink(&dest, target, e2)?;
            }
            Kind::File { .. } => {
                let data = tree.read(&path)?;
                tree.write_file(&dest, &mut data.as_slice(), e2)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Adds keys to `~/.ssh/authorized_keys` (0600 in a 0700 `.ssh`, owned by the user), keeping
/// keys already there and never listing one twice.
fn authorized_keys(
    tree: &mut Tree,
    home: &str,
    uid: u32,
    gid: u32,
    keys: &[String],
    epoch: i64,
) -> Result<(), TreeError> {
    let dir = format!("{}/.ssh", home.trim_end_matches('/'));
    let resolved = tree.resolve(&dir)?;
    if tree.get(&resolved).is_none() {
        tree.put_dir(&resolved, entry(Kind::Dir, 0o700, uid, gid, epoch))?;
    }
    let path = format!("{resolved}/authorized_keys");
    let mut text = tree.read_text(&path).unwrap_or_default();
    for k in keys {
        let k = k.trim();
        if !text.lines().any(|l| l.trim() == k) {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(k);
            text.push('\n');
        }
    }
    let e = entry(
        Kind::File {
            size: 0,
            link: None,
        },
        0o600,
        uid,
        gid,
        epoch,
    );
    tree.write_file(&path, &mut text.as_bytes(), e)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, Tree) {
        let d = tempfile::tempdir().unwrap();
        let mut t = Tree::create(&d.path().join("root"))
            .unwrap()
            .without_real_owners();
        let f = |mode| {
            entry(
                Kind::File {
                    size: 0,
                    link: None,
                },
                mode,
                0,
                0,
                1,
            )
        };
        t.mkdir_p("/etc/skel", 0o755, 1).unwrap();
        t.write_file(
            "/etc/passwd",
            &mut &b"root:x:0:0:root:/root:/bin/bash\n"[..],
            f(0o644),
        )
        .unwrap();
        t.write_file(
            "/etc/group",
            &mut &b"root:x:0:\nwheel:x:10:\n"[..],
            f(0o644),
        )
        .unwrap();
        t.write_file(
            "/etc/shadow",
            &mut &b"root:*:19000:0:99999:7:::\n"[..],
            f(0),
        )
        .unwrap();
        t.write_file("/etc/gshadow", &mut &b"root:::\nwheel:::\n"[..], f(0))
            .unwrap();
        t.write_file("/etc/subuid", &mut &b""[..], f(0o644))
            .unwrap();
        t.write_file("/etc/skel/.bashrc", &mut &b"# bashrc\n"[..], f(0o644))
            .unwrap();
        t.mkdir_p("/root", 0o550, 1).unwrap();
        (d, t)
    }

    fn user(name: &str) -> DefUser {
        DefUser {
            name: name.into(),
            uid: None,
            gid: None,
            groups: vec![],
            home: None,
            shell: None,
            comment: None,
            password_hash: None,
            password_locked: None,
            ssh_authorized_keys: vec![],
            system: false,
        }
    }

    #[test]
    fn users_like_useradd() {
        let (_d, mut t) = tree();
        let mut alice = user("alice");
        alice.groups = vec!["wheel".into()];
        alice.ssh_authorized_keys = vec!["ssh-ed25519 AAAA alice@laptop".into()];
        alice.password_hash = Some("$6$salt$hash".into());
        let mut svc = user("svc");
        svc.system = true;
        let mut root = user("root");
        root.ssh_authorized_keys = vec!["ssh-ed25519 BBBB ops".into()];
        apply(&mut t, &[], &[alice, svc, root], 86_400 * 20_000).unwrap();
        let passwd = t.read_text("/etc/passwd").unwrap();
        assert!(
            passwd.contains("alice:x:1000:1000::/home/alice:/bin/bash\n"),
            "{passwd}"
        );
        assert!(
            passwd.contains("svc:x:999:999::/home/svc:/bin/bash\n"),
            "{passwd}"
        );
        let group = t.read_text("/etc/group").unwrap();
        assert!(
            group.contains("wheel:x:10:alice\n") && group.contains("alice:x:1000:\n"),
            "{group}"
        );
        let shadow = t.read_text("/etc/shadow").unwrap();
        assert!(
            shadow.contains("alice:$6$salt$hash:20000:0:99999:7:::"),
            "{shadow}"
        );
        assert!(
            shadow.contains("svc:!:20000:0:99999:7:::") || shadow.contains("svc:!:"),
            "{shadow}"
        );
        assert!(
            shadow.contains("root:!:19000:0:99999:7:::"),
            "root is locked by default: {shadow}"
        );
        assert_eq!(t.get("/etc/shadow").unwrap().mode, 0);
        // Home from skel, owned by alice; no home for the system user.
        let home = t.get("/home/alice").unwrap();
        assert_eq!((home.mode, home.uid, home.gid), (0o700, 1000, 1000));
        assert_eq!(t.get("/home/alice/.bashrc").unwrap().uid, 1000);
        assert!(t.get("/home/svc").is_none());
        let ssh = t.get("/home/alice/.ssh").unwrap();
        assert_eq!((ssh.mode, ssh.uid), (0o700, 1000));
        let keys = t.get("/home/alice/.ssh/authorized_keys").unwrap();
        assert_eq!((keys.mode, keys.uid, keys.gid), (0o600, 1000, 1000));
        assert_eq!(
            t.read_text("/root/.ssh/authorized_keys").unwrap(),
            "ssh-ed25519 BBBB ops\n"
        );
        assert_eq!(
            t.get("/root").unwrap().mode,
            0o550,
            "an existing home is left alone"
        );
        assert_eq!(t.read_text("/etc/subuid").unwrap(), "alice:100000:65536\n");
    }

    #[test]
    fn mistakes_are_explained() {
        let (_d, mut t) = tree();
        let mut bob = user("bob");
        bob.groups = vec!["docker".into()];
        let e = apply(&mut t, &[], &[bob], 0).unwrap_err();
        assert!(
            matches!(&e, UsersError::Invalid { message, help, .. } if message.contains("docker") && help.contains("system.groups")),
            "{e}"
        );
        let g = DefGroup {
            name: "wheel".into(),
            gid: Some(11),
            system: true,
        };
        let e = apply(&mut t, &[g], &[], 0).unwrap_err().to_string();
        assert!(
            e.contains("system.groups[0] (wheel)") && e.contains("gid 10"),
            "{e}"
        );
        let mut carol = user("carol");
        carol.password_locked = Some(false);
        let e = apply(&mut t, &[], &[carol], 0).unwrap_err().to_string();
        assert!(e.contains("no password-hash"), "{e}");
    }

    #[test]
    fn keys_are_not_duplicated() {
        let (_d, mut t) = tree();
        let mut root = user("root");
        root.ssh_authorized_keys = vec!["k1".into(), "k1".into()];
        apply(&mut t, &[], std::slice::from_ref(&root), 0).unwrap();
        apply(&mut t, &[], &[root], 0).unwrap();
        assert_eq!(t.read_text("/root/.ssh/authorized_keys").unwrap(), "k1\n");
    }
}
