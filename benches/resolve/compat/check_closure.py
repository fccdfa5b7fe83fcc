"""Stand-in for the `check_closure` module that debian-rpmmd/deb2rpmmd.py imports
(`from check_closure import ranges_overlap, FLAGS`) but that is missing from
/work/shared/tools/debian-rpmmd/ (the tool's default conflicts repair crashes without it).

The bench harness (`../run`) puts this directory at the END of PYTHONPATH when it runs
make-repos, so the tool's own check_closure.py, once it exists next to deb2rpmmd.py, wins
(a script's own directory comes first on sys.path).

Only rpm's own, documented semantics are implemented here:
  FLAGS           rpm:entry flags attribute -> RPMSENSE bits (LESS 2, GREATER 4, EQUAL 8)
  rpmvercmp       rpm >= 4.15 (tilde and caret)
  ranges_overlap  rpmdsCompare: does a provide (flags, evr) satisfy / overlap a
                  dependency range (flags, evr)?  Unversioned on either side overlaps
                  everything; the release is compared only when both sides have one.
"""

LESS, GREATER, EQUAL = 2, 4, 8
FLAGS = {"LT": LESS, "GT": GREATER, "EQ": EQUAL, "LE": LESS | EQUAL, "GE": GREATER | EQUAL}


def _isdigit(c):
    return "0" <= c <= "9"


def _isalpha(c):
    return ("a" <= c <= "z") or ("A" <= c <= "Z")


def _isalnum(c):
    return _isdigit(c) or _isalpha(c)


def rpmvercmp(a, b):
    if a == b:
        return 0
    i = j = 0
    la, lb = len(a), len(b)
    while i < la or j < lb:
        while i < la and not _isalnum(a[i]) and a[i] not in "~^":
            i += 1
        while j < lb and not _isalnum(b[j]) and b[j] not in "~^":
            j += 1
        ca = a[i] if i < la else ""
        cb = b[j] if j < lb else ""
        if ca == "~" or cb == "~":
            if ca != "~":
                return 1
            if cb != "~":
                return -1
            i += 1
            j += 1
            continue
        if ca == "^" or cb == "^":
            if not ca:
                return -1
            if not cb:
                return 1
            if ca != "^":
                return 1
            if cb != "^":
                return -1
            i += 1
            j += 1
            continue
        if not (ca and cb):
            break
        si, sj = i, j
        if _isdigit(ca):
            while i < la and _isdigit(a[i]):
                i += 1
            while j < lb and _isdigit(b[j]):
                j += 1
            isnum = True
        else:
            while i < la and _isalpha(a[i]):
                i += 1
            while j < lb and _isalpha(b[j]):
                j += 1
            isnum = False
        s1, s2 = a[si:i], b[sj:j]
        if not s1:
            return -1
        if not s2:
            return 1 if isnum else -1
        if isnum:
            s1, s2 = s1.lstrip("0"), s2.lstrip("0")
            if len(s1) != len(s2):
                return 1 if len(s1) > len(s2) else -1
        if s1 != s2:
            return 1 if s1 > s2 else -1
    ca = i < la
    cb = j < lb
    if not ca and not cb:
        return 0
    return -1 if not ca else 1


def _evrcmp(x, y):
    ex, vx, rx = x
    ey, vy, ry = y
    c = int(ex or 0) - int(ey or 0)
    if c:
        return 1 if c > 0 else -1
    c = rpmvercmp(vx or "", vy or "")
    if c:
        return c
    if rx and ry:
        return rpmvercmp(rx, ry)
    return 0


def ranges_overlap(aflags, aevr, bflags, bevr):
    sense_mask = LESS | GREATER | EQUAL
    if not (aflags & sense_mask) or not (bflags & sense_mask) or aevr is None or bevr is None:
        return True
    sense = _evrcmp(aevr, bevr)
    if sense < 0:
        return bool((aflags & GREATER) or (bflags & LESS))
    if sense > 0:
        return bool((aflags & LESS) or (bflags & GREATER))
    return bool((aflags & bflags & EQUAL) or (aflags & bflags & LESS) or (aflags & bflags & GREATER))
