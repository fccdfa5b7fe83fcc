#!/usr/bin/env python3
"""Resolve an install request into an empty root with libsolv, the way dnf does, and print
the package set as JSON in the shape of `kiln resolve --json`.

    libsolv_resolve.py --repo file:///tmp/kiln-bench/repos/full [--repo URL…] [--arch x86_64]
                       [--no-weak-deps] [--exclude GLOB…] [--solv-cache DIR]
                       [--filelists auto|always|never] [--no-best] [--json] [--] SPEC…

SPEC is a package name, name.arch, a provide (`pkgconfig(zlib)`, `foo >= 1.2`), a file path
or `@group`.  Output (stdout, --json):

    {"packages": [{"nevra", "name", "arch", "repo", "size", "installsize"}…],
     "seconds_load": …, "seconds_solve": …, …}

Exit status: 0 solved; 1 unsolvable or a spec matches nothing (problems on stderr, and
`"problems"` in the JSON); 2 usage or metadata error.

Semantics (what dnf 4/5 do for `dnf install SPEC…` into an empty --installroot):
  * pool arch x86_64 (x86_64 + noarch + the compatible 32-bit arches), no installed system;
  * each SPEC goes through pool.select(NAME | PROVIDES | FILELIST | DOTARCH | REL | CANON):
    a package name wins over a provide of the same spelling; a SPEC matching nothing is an
    error ("No match for argument"), as with dnf's default strict=true;
  * @group: the comps group's mandatory + default packagereqs, each installed by name;
    a member that does not exist or is excluded is skipped with a warning (as dnf does);
  * jobs are SOLVER_INSTALL | SOLVER_FORCEBEST (dnf's best=true; --no-best drops it);
  * solver flags as libdnf sets them: ALLOW_VENDORCHANGE, KEEP_ORPHANS, BEST_OBEY_POLICY,
    YUM_OBSOLETES; --no-weak-deps = SOLVER_FLAG_IGNORE_RECOMMENDED;
  * dnf's default installonlypkgs become SOLVER_MULTIVERSION jobs (no effect on an empty root);
  * --exclude GLOB: fnmatch on the package name; matching packages are taken out of
    pool.considered (dnf's excludes: invisible to selection and to dependency resolution);
  * filelists.xml is loaded like dnf5: only when a SPEC is a path that primary.xml cannot
    know (createrepo puts only /etc/*, *bin/* and /usr/lib/sendmail there) (`auto`);
    `always` is dnf4's behaviour.

Timing: seconds_load covers reading repomd.xml, decompressing and parsing primary (and
filelists) or reading libsolv's own .solv cache (--solv-cache DIR: written on the first
run, keyed by the repomd.xml checksum), addfileprovides and createwhatprovides.
seconds_solve covers excludes, selection, comps, job set-up, the solve and the transaction.
Writing a .solv cache file (first run only) is not counted in either.
"""
import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import urllib.parse  # noqa: E402
import xml.etree.ElementTree as ET  # noqa: E402

import solv  # noqa: E402

T_IMPORTED = time.perf_counter()

REPO_NS = "{http://linux.duke.edu/metadata/repo}"
# dnf's default installonlypkgs (libdnf5 conf: installonlypkgs)
INSTALLONLY = ["kernel", "kernel-PAE", "installonlypkg(kernel)", "installonlypkg(kernel-module)",
               "installonlypkg(vm)", "multiversion(kernel)"]
CACHE_FORMAT = "1"


class UsageError(Exception):
    pass


def repo_path(url):
    u = urllib.parse.urlparse(url)
    if u.scheme == "file":
        return urllib.parse.unquote(u.path)
    if u.scheme == "":
        return os.path.abspath(url)
    raise UsageError(f"{url}: only file:// repositories are supported")


def is_primary_path(path):
    # createrepo_c's primary file filter (and dnf5's rule for when filelists are needed)
    return path.startswith("/etc/") or "bin/" in path or path == "/usr/lib/sendmail"


def read_repomd(root):
    path = os.path.join(root, "repodata", "repomd.xml")
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as e:
        raise UsageError(f"{path}: {e.strerror}") from None
    locs = {}
    for data in ET.fromstring(blob).iter(REPO_NS + "data"):
        loc = data.find(REPO_NS + "location")
        if loc is not None:
            locs[data.get("type")] = os.path.join(root, loc.get("href"))
    return blob, locs


def open_compressed(path):
    """A solv file object for path, decompressed.  libsolv's own xfopen when it can (the PyPI
    build does gzip/xz/bzip2 but not zstd); otherwise decompress here into an in-memory file."""
    fp = solv.xfopen(path)
    if fp is not None:
        return fp
    if path.endswith(".zst"):
        import zstandard
        with open(path, "rb") as f:
            data = zstandard.ZstdDecompressor().stream_reader(f).read()
    elif path.endswith(".lz4"):
        import lz4.frame
        with open(path, "rb") as f:
            data = lz4.frame.decompress(f.read())
    else:
        raise UsageError(f"{path}: cannot open")
    fd = os.memfd_create("md")
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    fp = solv.xfopen_fd(None, fd)
    os.close(fd)
    return fp


def load_repo(pool, url, want_filelists, cache_dir, stats):
    root = repo_path(url)
    name = os.path.basename(root.rstrip("/")) or root
    repomd, locs = read_repomd(root)
    if "primary" not in locs:
        raise UsageError(f"{root}: repomd.xml has no primary")
    use_fl = want_filelists and "filelists" in locs
    repo = pool.add_repo(name)
    cache_file = None
    if cache_dir:
        key = hashlib.sha256(repomd + root.encode() + CACHE_FORMAT.encode()).hexdigest()[:32]
        cache_file = os.path.join(cache_dir, f"{name}-{key}{'-fl' if use_fl else ''}.solv")
        if os.path.exists(cache_file):
            fp = solv.xfopen(cache_file)
            if fp is not None and repo.add_solv(fp):
                fp.close()
                stats["sources"].append(f"{name}: .solv cache")
                return repo, locs, None
            repo.empty()
    fp = solv.xfopen(os.path.join(root, "repodata", "repomd.xml"))
    repo.add_repomdxml(fp, 0)
    fp.close()
    fp = open_compressed(locs["primary"])
    if not repo.add_rpmmd(fp, None, 0):
        raise UsageError(f"{locs['primary']}: {pool.errstr}")
    fp.close()
    if use_fl:
        fp = open_compressed(locs["filelists"])
        if not repo.add_rpmmd(fp, None, solv.Repo.REPO_EXTEND_SOLVABLES):
            raise UsageError(f"{locs['filelists']}: {pool.errstr}")
        fp.close()
    repo.internalize()
    stats["sources"].append(f"{name}: xml{' + filelists' if use_fl else ''}")
    return repo, locs, cache_file


def write_cache(repo, cache_file):
    os.makedirs(os.path.dirname(cache_file), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(cache_file))
    fp = solv.xfopen_fd(None, fd)
    ok = repo.write(fp)
    fp.close()
    if ok:
        os.chmod(tmp, 0o644)
        os.replace(tmp, cache_file)
    else:
        os.unlink(tmp)


def comps_groups(locs_list):
    """{group id: [package names]} from the comps of every repository (mandatory + default)."""
    groups = {}
    for locs in locs_list:
        path = locs.get("group") or locs.get("group_gz") or locs.get("group_zst")
        if not path:
            continue
        with open(path, "rb") as f:
            blob = f.read()
        if path.endswith(".gz"):
            import gzip
            blob = gzip.decompress(blob)
        elif path.endswith(".zst"):
            import zstandard
            blob = zstandard.ZstdDecompressor().stream_reader(blob).read()
        for g in ET.fromstring(blob).iter("group"):
            gid = g.findtext("id")
            names = groups.setdefault(gid, [])
            for req in g.iter("packagereq"):
                if req.get("type", "mandatory") in ("mandatory", "default") and req.text:
                    if req.text not in names:
                        names.append(req.text.strip())
    return groups


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", action="append", required=True, metavar="URL",
                    help="file:///path (a directory with repodata/); repeatable")
    ap.add_argument("--arch", default="x86_64")
    ap.add_argument("--no-weak-deps", action="store_true")
    ap.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                    help="fnmatch on package names; repeatable")
    ap.add_argument("--solv-cache", metavar="DIR",
                    help="read/write libsolv .solv caches here (written on the first run)")
    ap.add_argument("--filelists", choices=["auto", "always", "never"], default="auto")
    ap.add_argument("--no-best", action="store_true", help="drop SOLVER_FORCEBEST (dnf best=false)")
    ap.add_argument("--json", action="store_true", help="JSON on stdout (otherwise one NEVRA a line)")
    ap.add_argument("specs", nargs="+", metavar="SPEC")
    return ap.parse_args(argv)


def main(argv):
    a = parse_args(argv)
    stats = {"sources": []}
    out = {"resolver": "libsolv", "libsolv": getattr(solv, "__version__", None) or _solv_version()}

    t0 = time.perf_counter()
    pool = solv.Pool()
    pool.setdisttype(solv.Pool.DISTTYPE_RPM)
    pool.setarch(a.arch)
    want_fl = a.filelists == "always" or (
        a.filelists == "auto" and any(s.startswith("/") and not is_primary_path(s) for s in a.specs))
    to_cache, locs_list = [], []
    for url in a.repo:
        repo, locs, cache_file = load_repo(pool, url, want_fl, a.solv_cache, stats)
        locs_list.append(locs)
        if cache_file:
            to_cache.append((repo, cache_file))
    pool.addfileprovides()
    pool.createwhatprovides()
    t_loaded = time.perf_counter()
    # first run with --solv-cache: write the caches (not timed)
    for repo, cache_file in to_cache:
        write_cache(repo, cache_file)
    t1 = time.perf_counter()

    problems, warnings = [], []
    excluded = set()
    if a.exclude:
        # fnmatch on names, done by libsolv (SELECTION_GLOB uses fnmatch(3)); the rest of the
        # pool stays considered.  A Python loop over 63k solvables would cost ~0.1 s.
        for g in a.exclude:
            sel = pool.select(g, solv.Selection.SELECTION_NAME | solv.Selection.SELECTION_GLOB
                              | solv.Selection.SELECTION_FLAT)
            excluded.update(s.id for s in sel.solvables())
        pool.set_considered_list([i for i in range(2, len(pool.solvables)) if i not in excluded])
        out["excluded"] = len(excluded)

    def matches(sel):
        # pool.select ignores pool.considered; dnf's queries do not see excluded packages
        return not sel.isempty() and any(s.id not in excluded for s in sel.solvables())

    jobs = []
    groups = None
    flags = (solv.Selection.SELECTION_NAME | solv.Selection.SELECTION_PROVIDES
             | solv.Selection.SELECTION_FILELIST | solv.Selection.SELECTION_DOTARCH
             | solv.Selection.SELECTION_REL | solv.Selection.SELECTION_CANON)
    install = solv.Job.SOLVER_INSTALL | (0 if a.no_best else solv.Job.SOLVER_FORCEBEST)
    for spec in a.specs:
        if spec.startswith("@"):
            if groups is None:
                groups = comps_groups(locs_list)
            gid = spec[1:]
            if gid not in groups:
                problems.append(f"No match for group: {gid}")
                continue
            for n in groups[gid]:
                sel = pool.select(n, solv.Selection.SELECTION_NAME)
                if not matches(sel):
                    warnings.append(f"group {gid}: no match for package {n} (skipped)")
                    continue
                jobs += sel.jobs(install)
            continue
        sel = pool.select(spec, flags)
        if not matches(sel):
            problems.append(f"No match for argument: {spec}")
            continue
        jobs += sel.jobs(install)
    for p in INSTALLONLY:
        jobs.append(pool.Job(solv.Job.SOLVER_MULTIVERSION | solv.Job.SOLVER_SOLVABLE_PROVIDES,
                             pool.str2id(p)))

    packages = []
    if not problems:
        solver = pool.Solver()
        solver.set_flag(solv.Solver.SOLVER_FLAG_ALLOW_VENDORCHANGE, 1)
        solver.set_flag(solv.Solver.SOLVER_FLAG_KEEP_ORPHANS, 1)
        solver.set_flag(solv.Solver.SOLVER_FLAG_BEST_OBEY_POLICY, 1)
        solver.set_flag(solv.Solver.SOLVER_FLAG_YUM_OBSOLETES, 1)
        if a.no_weak_deps:
            solver.set_flag(solv.Solver.SOLVER_FLAG_IGNORE_RECOMMENDED, 1)
        for p in solver.solve(jobs):
            infos = []
            for r in p.findallproblemrules():
                for info in r.allinfos():
                    if info.problemstr() not in infos:
                        infos.append(info.problemstr())
            if len(infos) <= 1:
                problems.append(f"Problem {p.id}: {infos[0] if infos else p}")
            else:
                problems.append(f"Problem {p.id}:\n" + "\n".join(f"  - {i}" for i in infos))
        if not problems:
            for s in solver.transaction().newsolvables():
                packages.append({
                    "nevra": f"{s.name}-{s.evr}.{s.arch}",
                    "name": s.name,
                    "arch": s.arch,
                    "repo": s.repo.name,
                    "size": s.lookup_num(solv.SOLVABLE_DOWNLOADSIZE),
                    "installsize": s.lookup_num(solv.SOLVABLE_INSTALLSIZE),
                })
            packages.sort(key=lambda p: (p["name"], p["arch"], p["nevra"]))
    t2 = time.perf_counter()

    out.update({
        "packages": packages,
        "count": len(packages),
        "seconds_import": round(T_IMPORTED - T_START, 6),
        "seconds_load": round(t_loaded - t0, 6),
        "seconds_cache_write": round(t1 - t_loaded, 6),
        "seconds_solve": round(t2 - t1, 6),
        "solvables": sum(r.nsolvables for r in pool.repos),
        "metadata": stats["sources"],
        "weak_deps": not a.no_weak_deps,
        "warnings": warnings,
    })
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if problems:
        out["problems"] = problems
        print("\n".join(problems), file=sys.stderr)
    if a.json:
        json.dump(out, sys.stdout, indent=None, separators=(",", ":"))
        sys.stdout.write("\n")
    else:
        for p in packages:
            print(p["nevra"])
        print(f"# {len(packages)} packages; load {out['seconds_load']:.3f}s "
              f"solve {out['seconds_solve']:.3f}s", file=sys.stderr)
    return 1 if problems else 0


def _solv_version():
    try:
        from importlib.metadata import version
        return version("solv")
    except Exception:
        return None


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except UsageError as e:
        print(f"libsolv_resolve: {e}", file=sys.stderr)
        sys.exit(2)
