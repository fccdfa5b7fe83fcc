//! The image's own user and group databases (/etc/passwd, group, shadow, gshadow): lookups for
//! file ownership, and adding users and groups the way useradd and systemd-sysusers do.

use std::collections::BTreeMap;

use super::{Entry, Kind, Tree, TreeError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub gecos: String,
    pub home: String,
    pub shell: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// The accounts of an image, as read from its files.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    pub users: Vec<User>,
    pub groups: Vec<Group>,
    /// Extra lines of /etc/passwd and /etc/group kiln does not understand (comments, `+`), kept.
    passwd_lines: Vec<String>,
    group_lines: Vec<String>,
    /// The password field of entries read from the files (`x`, `*`…), written back unchanged;
    /// new entries get `x`.
    passwd_pw: std::collections::HashMap<String, String>,
    group_pw: std::collections::HashMap<String, String>,
}

/// The first system id allocated dynamically and the upper ends, as shadow-utils' defaults
/// (SYS_UID_MIN 201 on Fedora-like systems; 999 down, as useradd -r does).
pub const SYSTEM_MAX: u32 = 999;
pub const SYSTEM_MIN: u32 = 201;
pub const USER_MIN: u32 = 1000;
pub const USER_MAX: u32 = 60000;

fn file_entry(mode: u32) -> Entry {
    Entry {
        kind: Kind::File {
            size: 0,
            link: None,
        },
        mode,
        uid: 0,
        gid: 0,
        mtime: 0,
        xattrs: BTreeMap::new(),
    }
}

impl Accounts {
    pub fn read(tree: &Tree) -> Accounts {
        let mut a = Accounts::default();
        for line in tree.read_text("/etc/passwd").unwrap_or_default().lines() {
            let f: Vec<&str> = line.split(':').collect();
            match (
                f.len(),
                f.get(2).and_then(|s| s.parse().ok()),
                f.get(3).and_then(|s| s.parse().ok()),
            ) {
                (7, Some(uid), Some(gid)) => {
                    a.passwd_pw.insert(f[0].into(), f[1].into());
                    a.users.push(User {
                        name: f[0].into(),
                        uid,
                        gid,
                        gecos: f[4].into(),
                        home: f[5].into(),
                        shell: f[6].into(),
                    })
                }
                _ if !line.trim().is_empty() => a.passwd_lines.push(line.to_string()),
                _ => {}
            }
        }
        for line in tree.read_text("/etc/group").unwrap_or_default().lines() {
            let f: Vec<&str> = line.split(':').collect();
            match (f.len(), f.get(2).and_then(|s| s.parse().ok())) {
                (4, Some(gid)) => {
                    a.group_pw.insert(f[0].into(), f[1].into());
                    a.groups.push(Group {
                        name: f[0].into(),
                        gid,
                        members: f[3]
                            .split(',')
                            .filter(|m| !m.is_empty())
                            .map(str::to_string)
                            .collect(),
                    })
                }
                _ if !line.trim().is_empty() => a.group_lines.push(line.to_string()),
                _ => {}
            }
        }
        a
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    pub fn uid_of(&self, name: &str) -> Option<u32> {
        self.user(name).map(|u| u.uid)
    }

    pub fn gid_of(&self, name: &str) -> Option<u32> {
        self.group(name).map(|g| g.gid)
    }

    fn uid_taken(&self, id: u32) -> bool {
        self.users.iter().any(|u| u.uid == id)
    }

    fn gid_taken(&self, id: u32) -> bool {
        self.groups.iter().any(|g| g.gid == id)
    }

    /// A free id: system ids counting down from 999 (as useradd -r), others up from 1000.
    /// With `same_as`, prefers an id free both as uid and gid (so a user's group matches).
    pub fn free_id(&self, system: bool, want_both: bool) -> Option<u32> {
        let free = |id: u32| {
            if want_both {
                !self.uid_taken(id) && !self.gid_taken(id)
            } else {
                !self.uid_taken(id)
            }
        };
        if system {
            (SYSTEM_MIN..=SYSTEM_MAX).rev().find(|&i| free(i))
        } else {
            (USER_MIN..=USER_MAX).find(|&i| free(i))
        }
    }

    pub fn free_gid(&self, system: bool) -> Option<u32> {
        if system {
            (SYSTEM_MIN..=SYSTEM_MAX)
                .rev()
                .find(|&i| !self.gid_taken(i))
        } else {
            (USER_MIN..=USER_MAX).find(|&i| !self.gid_taken(i))
        }
    }

    /// Adds a group unless one of that name exists; returns its gid.
    pub fn add_group(&mut self, name: &str, gid: Option<u32>, system: bool) -> Result<u32, String> {
        if let Some(g) = self.group(name) {
            return Ok(g.gid);
        }
        let gid = match gid {
            Some(g) if self.gid_taken(g) => {
                return Err(format!("gid {g} for group `{name}` is already taken"));
            }
            Some(g) => g,
            None => self
                .free_gid(system)
                .ok_or_else(|| format!("no free gid for group `{name}`"))?,
        };
        self.groups.push(Group {
            name: name.into(),
            gid,
            members: Vec::new(),
        });
        Ok(gid)
    }

    /// Adds a user unless one of that name exists; returns its uid.
    pub fn add_user(&mut self, user: User) -> Result<u32, String> {
        if let Some(u) = self.user(&user.name) {
            return Ok(u.uid);
        }
        if self.uid_taken(user.uid) {
            return Err(format!(
                "uid {} for user `{}` is already taken",
                user.uid, user.name
            ));
        }
        let uid = user.uid;
        self.users.push(user);
        Ok(uid)
    }

    pub fn add_member(&mut self, group: &str, user: &str) {
        if let Some(g) = self.groups.iter_mut().find(|g| g.name == group)
            && !g.members.iter().any(|m| m == user)
        {
            g.members.push(user.into());
        }
    }

    /// Writes passwd and group back, and adds the new names to shadow and gshadow (locked
    /// passwords), keeping what those files already say.
    pub fn write(&self, tree: &mut Tree) -> Result<(), TreeError> {
        let files = self.render(
            &tree.read_text("/etc/shadow").unwrap_or_default(),
            &tree.read_text("/etc/gshadow").unwrap_or_default(),
        );
        tree.mkdir_p("/etc", 0o755, 0)?;
        tree.put_text("/etc/passwd", &files.passwd, file_entry(0o644))?;
        tree.put_text("/etc/group", &files.group, file_entry(0o644))?;
        // Mode 0000 as shadow-utils and Fedora's setup package ship them.
        tree.put_text("/etc/shadow", &files.shadow, file_entry(0))?;
        tree.put_text("/etc/gshadow", &files.gshadow, file_entry(0))?;
        Ok(())
    }

    /// The four files as [`Accounts::write`] writes them, given the current shadow and gshadow.
    pub fn render(&self, shadow: &str, gshadow: &str) -> AccountFiles {
        let mut passwd = String::new();
        for l in &self.passwd_lines {
            passwd.push_str(l);
            passwd.push('\n');
        }
        for u in &self.users {
            let pw = self.passwd_pw.get(&u.name).map_or("x", String::as_str);
            passwd.push_str(&format!(
                "{}:{pw}:{}:{}:{}:{}:{}\n",
                u.name, u.uid, u.gid, u.gecos, u.home, u.shell
            ));
        }
        let mut group = String::new();
        for l in &self.group_lines {
            group.push_str(l);
            group.push('\n');
        }
        for g in &self.groups {
            let pw = self.group_pw.get(&g.name).map_or("x", String::as_str);
            group.push_str(&format!(
                "{}:{pw}:{}:{}\n",
                g.name,
                g.gid,
                g.members.join(",")
            ));
        }
        let mut shadow_lines: Vec<String> = shadow
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        for u in &self.users {
            if !shadow_lines
                .iter()
                .any(|l| l.split(':').next() == Some(u.name.as_str()))
            {
                shadow_lines.push(format!("{}:!*:::::::", u.name));
            }
        }
        let mut gshadow_lines: Vec<String> = gshadow
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        for g in &self.groups {
            match gshadow_lines
                .iter_mut()
                .find(|l| l.split(':').next() == Some(g.name.as_str()))
            {
                Some(line) => {
                    let mut f: Vec<String> = line.split(':').map(str::to_string).collect();
                    if f.len() == 4 {
                        f[3] = g.members.join(",");
                        *line = f.join(":");
                    }
                }
                None => gshadow_lines.push(format!("{}:!::{}", g.name, g.members.join(","))),
            }
        }
        let join = |v: Vec<String>| {
            let mut s = v.join("\n");
            if !s.is_empty() {
                s.push('\n');
            }
            s
        };
        AccountFiles {
            passwd,
            group,
            shadow: join(shadow_lines),
            gshadow: join(gshadow_lines),
        }
    }
}

/// The text of /etc/passwd, group, shadow and gshadow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountFiles {
    pub passwd: String,
    pub group: String,
    pub shadow: String,
    pub gshadow: String,
}

/// One line of a sysusers.d file that kiln applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sysuser {
    User {
        name: String,
        id: Option<String>,
        gecos: String,
        home: Option<String>,
        shell: Option<String>,
    },
    Group {
        name: String,
        id: Option<u32>,
    },
    Member {
        user: String,
        group: String,
    },
}

/// Parses sysusers.d(5) lines: `u`, `g`, `m` (`r` ranges are accepted and ignored).
pub fn parse_sysusers(text: &str) -> Result<Vec<Sysuser>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f = split_quoted(line);
        let field = |i: usize| f.get(i).filter(|s| s.as_str() != "-").cloned();
        // `r` lines (id ranges) have no name: nothing to create.
        if f[0] == "r" {
            continue;
        }
        let name = field(1).ok_or_else(|| format!("line {}: no name", n + 1))?;
        match f[0].trim_end_matches('!').trim_end_matches('^') {
            "u" => out.push(Sysuser::User {
                name,
                id: field(2),
                gecos: field(3).unwrap_or_default(),
                home: field(4),
                shell: field(5),
            }),
            "g" => out.push(Sysuser::Group {
                name,
                id: field(2)
                    .map(|s| {
                        s.parse()
                            .map_err(|_| format!("line {}: group id `{s}` is not a number", n + 1))
                    })
                    .transpose()?,
            }),
            "m" => out.push(Sysuser::Member {
                user: name,
                group: field(2).ok_or_else(|| format!("line {}: `m` needs a group", n + 1))?,
            }),
            other => return Err(format!("line {}: unknown type `{other}`", n + 1)),
        }
    }
    Ok(out)
}

fn split_quoted(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Applies sysusers.d entries as systemd-sysusers would on a first boot: groups, then users
/// (with a same-named group), then memberships; existing names are left as they are.
pub fn apply_sysusers(acc: &mut Accounts, entries: &[Sysuser]) -> Result<(), String> {
    for e in entries {
        if let Sysuser::Group { name, id } = e {
            acc.add_group(name, *id, true)?;
        }
    }
    for e in entries {
        if let Sysuser::User {
            name,
            id,
            gecos,
            home,
            shell,
        } = e
        {
            if acc.user(name).is_some() {
                continue;
            }
            // `u name uid:gid`, `u name uid`, `u name -`, or `u name /path` (id of that file: not
            // knowable here, allocate).
            let (uid, gid) = match id.as_deref() {
                Some(spec) if spec.contains(':') => {
                    let (u, g) = spec.split_once(':').expect("checked");
                    let uid: u32 = u
                        .parse()
                        .map_err(|_| format!("user `{name}`: bad id `{spec}`"))?;
                    let gid = match g.parse::<u32>() {
                        // The gid may already belong to another group: the user joins it.
                        Ok(g) => acc.add_group(name, Some(g), true).unwrap_or(g),
                        Err(_) => acc
                            .gid_of(g)
                            .ok_or_else(|| format!("user `{name}`: no group `{g}`"))?,
                    };
                    (uid, gid)
                }
                Some(spec) if spec.bytes().all(|b| b.is_ascii_digit()) => {
                    let uid: u32 = spec
                        .parse()
                        .map_err(|_| format!("user `{name}`: bad id `{spec}`"))?;
                    let gid = match acc.gid_of(name) {
                        Some(g) => g,
                        None => acc.add_group(name, (!acc.gid_taken(uid)).then_some(uid), true)?,
                    };
                    (uid, gid)
                }
                _ => {
                    let gid_existing = acc.gid_of(name);
                    let uid = match gid_existing {
                        Some(g) if !acc.uid_taken(g) => g,
                        _ => acc
                            .free_id(true, gid_existing.is_none())
                            .ok_or_else(|| format!("no free uid for `{name}`"))?,
                    };
                    let gid = match gid_existing {
                        Some(g) => g,
                        None => acc.add_group(name, (!acc.gid_taken(uid)).then_some(uid), true)?,
                    };
                    (uid, gid)
                }
            };
            acc.add_user(User {
                name: name.clone(),
                uid,
                gid,
                gecos: gecos.clone(),
                home: home.clone().unwrap_or_else(|| "/".into()),
                shell: shell.clone().unwrap_or_else(|| "/usr/sbin/nologin".into()),
            })?;
        }
    }
    for e in entries {
        if let Sysuser::Member { user, group } = e {
            acc.add_group(group, None, true)?;
            acc.add_member(group, user);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, Tree) {
        let d = tempfile::tempdir().unwrap();
        let mut t = Tree::create(&d.path().join("r")).unwrap();
        t.mkdir_p("/etc", 0o755, 0).unwrap();
        t.put_text("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:Kernel Overflow User:/:/sbin/nologin\n", file_entry(0o644)).unwrap();
        t.put_text(
            "/etc/group",
            "root:x:0:\nwheel:x:10:\nnobody:x:65534:\n",
            file_entry(0o644),
        )
        .unwrap();
        (d, t)
    }

    #[test]
    fn reads_and_looks_up() {
        let (_d, t) = tree();
        let a = Accounts::read(&t);
        assert_eq!(a.uid_of("nobody"), Some(65534));
        assert_eq!(a.gid_of("wheel"), Some(10));
        assert_eq!(a.uid_of("nope"), None);
    }

    #[test]
    fn rewriting_keeps_every_field_of_existing_entries() {
        let (_d, mut t) = tree();
        t.put_text(
            "/etc/passwd",
            "root:*:0:0:root:/root:/bin/bash\n",
            file_entry(0o644),
        )
        .unwrap();
        t.put_text("/etc/group", "root:*:0:\n", file_entry(0o644))
            .unwrap();
        let mut a = Accounts::read(&t);
        a.add_group("svc", Some(900), true).unwrap();
        a.write(&mut t).unwrap();
        assert_eq!(
            t.read_text("/etc/passwd").unwrap(),
            "root:*:0:0:root:/root:/bin/bash\n"
        );
        assert_eq!(
            t.read_text("/etc/group").unwrap(),
            "root:*:0:\nsvc:x:900:\n"
        );
    }

    #[test]
    fn sysusers_like_systemd() {
        let (_d, mut t) = tree();
        let mut a = Accounts::read(&t);
        let e = parse_sysusers("# comment\nu fxapp 950 \"fx app\" /var/lib/fx\ng fxlog 951\nm fxapp fxlog\nu dyn - \"Dynamic\"\nr - 500-900\n").unwrap();
        apply_sysusers(&mut a, &e).unwrap();
        assert_eq!(a.uid_of("fxapp"), Some(950));
        assert_eq!(a.gid_of("fxapp"), Some(950));
        assert_eq!(a.group("fxlog").unwrap().members, ["fxapp"]);
        assert_eq!(a.uid_of("dyn"), Some(999));
        assert_eq!(a.gid_of("dyn"), Some(999));
        a.write(&mut t).unwrap();
        let passwd = t.read_text("/etc/passwd").unwrap();
        assert!(
            passwd.contains("fxapp:x:950:950:fx app:/var/lib/fx:/usr/sbin/nologin\n"),
            "{passwd}"
        );
        assert!(
            t.read_text("/etc/shadow")
                .unwrap()
                .contains("fxapp:!*:::::::\n")
        );
        assert!(
            t.read_text("/etc/gshadow")
                .unwrap()
                .contains("fxlog:!::fxapp\n")
        );
        assert_eq!(t.get("/etc/shadow").unwrap().mode, 0);
        // Applying again changes nothing.
        let before = Accounts::read(&t);
        let mut again = before.clone();
        apply_sysusers(&mut again, &e).unwrap();
        assert_eq!(again.users, before.users);
    }

    #[test]
    fn bad_sysusers_lines_are_errors() {
        assert!(parse_sysusers("x foo\n").is_err());
        assert!(parse_sysusers("g foo abc\n").is_err());
        assert!(parse_sysusers("m foo\n").is_err());
    }
}
