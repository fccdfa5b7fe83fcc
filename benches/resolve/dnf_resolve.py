#!/usr/bin/python3
"""Oracle for the oracle: resolve the same request with Debian's dnf 4 (python3-dnf, the
system Python, not pyenv's) into an empty installroot and print the same JSON shape as
libsolv_resolve.py.  Used to check that libsolv_resolve.py sets up its jobs the way dnf does;
not timed by `run` (dnf's start-up and repository bookkeeping are not what is compared).

    /usr/bin/python3 dnf_resolve.py --repo file:///tmp/kiln-bench/repos/full [--no-weak-deps]
                                    [--exclude GLOB…] [--arch x86_64] [--json] [--] SPEC…

Exit status: 0 solved, 1 unsolvable or no match (dnf's message on stderr), 2 usage.
"""
import argparse
import json
import shutil
import sys
import tempfile

import dnf
import dnf.exceptions


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", action="append", required=True)
    ap.add_argument("--arch", default="x86_64")
    ap.add_argument("--no-weak-deps", action="store_true")
    ap.add_argument("--exclude", action="append", default=[])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("specs", nargs="+")
    a = ap.parse_args(argv)
    root = tempfile.mkdtemp(prefix="kiln-bench-dnfroot-")
    try:
        base = dnf.Base()
        c = base.conf
        c.installroot = root
        c.cachedir = root + "/cache"
        c.reposdir = []
        c.substitutions["releasever"] = "bookworm"
        c.install_weak_deps = not a.no_weak_deps
        c.gpgcheck = False
        c.excludepkgs = a.exclude
        c.arch = a.arch
        for i, url in enumerate(a.repo):
            base.repos.add_new_repo(url.rstrip("/").rsplit("/", 1)[-1] or f"r{i}", c, baseurl=[url])
        base.fill_sack(load_system_repo=False)
        if any(s.startswith("@") for s in a.specs):
            base.read_comps()
        try:
            for s in a.specs:
                if s.startswith("@"):
                    base.group_install(s[1:], ["mandatory", "default"])
                else:
                    base.install(s)
            base.resolve()
        except dnf.exceptions.Error as e:
            print(str(e), file=sys.stderr)
            return 1
        pk = sorted(base.transaction.install_set, key=lambda p: (p.name, p.arch))
        out = {"resolver": "dnf", "packages": [
            {"nevra": f"{p.name}-{p.evr}.{p.arch}", "name": p.name, "arch": p.arch,
             "repo": p.reponame, "size": p.downloadsize} for p in pk]}
        if a.json:
            print(json.dumps(out, separators=(",", ":")))
        else:
            print("\n".join(p["nevra"] for p in out["packages"]))
        return 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
