#!/usr/bin/env python3
"""pyks_dump.py FILE.ks - parses a kickstart with pykickstart (following %include) and prints, as
JSON, what `kiln import kickstart --json` prints for it, for tests/kickstart.rs to compare."""
import json
import os
import sys

from pykickstart import constants as c
from pykickstart.parser import KickstartParser
from pykickstart.version import makeVersion


def opt(v):
    """pykickstart keeps unset text options as "" or None; kiln as null."""
    return v if v not in ("", None, False) else None


def main(path):
    handler = makeVersion()
    parser = KickstartParser(handler)
    # %include paths are relative to the including file; pykickstart tries the working
    # directory first, so run from the file's directory.
    os.chdir(os.path.dirname(os.path.abspath(path)))
    parser.readKickstart(os.path.basename(path))
    h = handler
    p = h.packages
    group_kind = {c.GROUP_DEFAULT: "default", c.GROUP_REQUIRED: "required", c.GROUP_ALL: "all"}
    out = {
        "packages": {
            "packages": sorted(p.packageList),
            "groups": [{"name": g.name, "include": group_kind[g.include]} for g in p.groupList],
            "environment": p.environment,
            "excluded": sorted(p.excludedList),
            "excluded_groups": [g.name for g in p.excludedGroupList],
            "nocore": p.nocore,
            "excludedocs": p.excludeDocs,
            "inst_langs": p.instLangs,
            "exclude_weakdeps": p.excludeWeakdeps,
            "seen": p.seen,
        },
        "users": [
            {
                "name": u.name,
                "groups": u.groups,
                "uid": u.uid,
                "gid": u.gid,
                "homedir": opt(u.homedir),
                "shell": opt(u.shell),
                "password": opt(u.password),
                "iscrypted": u.isCrypted,
                "lock": u.lock,
                "gecos": opt(u.gecos),
            }
            for u in h.user.userList
        ],
        "groups": [{"name": g.name, "gid": g.gid} for g in h.group.groupList],
        "rootpw": {"password": opt(h.rootpw.password), "iscrypted": h.rootpw.isCrypted,
                   "lock": h.rootpw.lock} if h.rootpw.seen else None,
        "sshkeys": [{"username": k.username, "key": k.key} for k in h.sshkey.sshUserList],
        "services": {"enabled": h.services.enabled, "disabled": h.services.disabled}
        if h.services.seen else None,
        "timezone": {"timezone": opt(h.timezone.timezone), "utc": h.timezone.isUtc,
                     "nontp": h.timezone.nontp, "ntpservers": list(h.timezone.ntpservers or [])}
        if h.timezone.seen else None,
        "lang": opt(h.lang.lang) if h.lang.seen else None,
        "keyboard": {"keyboard": opt(h.keyboard._keyboard), "vckeymap": opt(h.keyboard.vc_keymap),
                     "xlayouts": h.keyboard.x_layouts} if h.keyboard.seen else None,
        "hostname": next((n.hostname for n in reversed(h.network.network) if n.hostname), None),
        "selinux": {c.SELINUX_ENFORCING: "enforcing", c.SELINUX_PERMISSIVE: "permissive",
                    c.SELINUX_DISABLED: "disabled", None: None}[h.selinux.selinux],
        "bootloader": {"append": opt(h.bootloader.appendLine), "disabled": h.bootloader.disabled,
                       "sdboot": h.bootloader.sdboot, "timeout": h.bootloader.timeout,
                       "location": h.bootloader.location if "--location" in h.bootloader.currentLine else None}
        if h.bootloader.seen else None,
        "partitions": [
            {
                "mountpoint": pd.mountpoint,
                "size": pd.size,
                "grow": pd.grow,
                "maxsize": pd.maxSizeMB or None,
                "fstype": opt(pd.fstype),
                "label": opt(pd.label),
                "fsoptions": opt(pd.fsopts),
                "ondisk": opt(pd.disk),
            }
            for pd in h.partition.partitions
        ],
        "autopart": {"type": {None: None, c.AUTOPART_TYPE_PLAIN: "plain", c.AUTOPART_TYPE_LVM: "lvm",
                              c.AUTOPART_TYPE_BTRFS: "btrfs", c.AUTOPART_TYPE_LVM_THINP: "thinp",
                              c.AUTOPART_TYPE_STRATIS: "stratis"}[h.autopart.type],
                     "fstype": opt(h.autopart.fstype), "encrypted": h.autopart.encrypted}
        if h.autopart.seen else None,
        "repos": [
            {
                "name": r.name,
                "baseurl": opt(r.baseurl),
                "mirrorlist": opt(r.mirrorlist),
                "metalink": opt(r.metalink),
                "cost": r.cost,
                "excludepkgs": r.excludepkgs,
                "includepkgs": r.includepkgs,
                "install": r.install,
            }
            for r in h.repo.repoList
        ],
        "url": {"url": opt(h.url.url), "mirrorlist": opt(h.url.mirrorlist),
                "metalink": opt(h.url.metalink)} if h.url.seen else None,
        "firewall": {"enabled": h.firewall.enabled, "services": h.firewall.services,
                     "ports": h.firewall.ports, "trusts": h.firewall.trusts,
                     "remove_services": h.firewall.remove_services,
                     "use_system_defaults": h.firewall.use_system_defaults}
        if h.firewall.seen else None,
        "scripts": [
            {
                "type": {c.KS_SCRIPT_PRE: "pre", c.KS_SCRIPT_PREINSTALL: "pre-install",
                         c.KS_SCRIPT_POST: "post", c.KS_SCRIPT_ONERROR: "onerror",
                         c.KS_SCRIPT_TRACEBACK: "traceback"}[s.type],
                "interpreter": s.interp,
                "chroot": s.inChroot,
                "error_on_fail": s.errorOnFail,
                "log": s.logfile,
                "body": s.script,
            }
            for s in h.scripts
        ],
    }
    json.dump(out, sys.stdout, indent=2, sort_keys=True)
    print()


if __name__ == "__main__":
    main(sys.argv[1])
