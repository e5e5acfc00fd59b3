"""A no-op ``homelab build``, answered without building again.

A build is a pure function of what it reads: the lab's sources (everything under
``hosts/``), the generated files under ``modules/`` and ``hosts/``, the hand-written
Nix they import, the Python code that ran (homelab, attrs, jinja2, a lab's own role
modules, the interpreter's own library), the nix it verified with, and the
environment variables homelab and nix read.  After a whole ``build`` that nix
verified, the CLI records a fingerprint of all of that: for each file of the lab its
size, modification and change times, inode and the hash of its content (a link: where it
leads, and that file's), for each folder its entries; for the code and nix outside the
lab, size, times and inode.  The next ``build`` (or ``build --check``) of the whole lab
first compares fingerprints; when nothing differs, it prints the recorded result and
stops, in the time it takes to read the lab's files and stat the rest.  Anything else runs the full build.

What the fingerprint cannot see: a host.py that reads other files or environment
variables of its own (``build --no-cache`` always runs in full).  The records live
in ``$HOMELAB_CACHE_DIR`` (default ``$XDG_CACHE_HOME/homelab``, else
``~/.cache/homelab``), one small JSON file per lab folder; deleting them is safe.

This module imports only the standard library: it runs before the rest of homelab
is loaded, which is most of a no-op's time otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time

VERSION = 1
RECORD = False  # set by ``python -m homelab`` / the ``homelab`` command: a whole process may record a build
ENV_PREFIXES = ("HOMELAB_", "NIX")  # what homelab and nix read; PATH and PYTHONPATH too
# the lab's sources and the generated files (hosts/lab.nix, the entries, the cluster layer's helmfile and values);
# secrets/: whether each host can read the secrets it needs is part of the build's answer
# (homelab.secretstore.lab_problems)
WATCHED = ("hosts", "modules", "cluster", "secrets")
SKIPPED = ("__pycache__",)  # Python's byte-code caches: rewritten by the interpreter, not read by the build


def cache_dir() -> str:
    explicit = os.environ.get("HOMELAB_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "homelab")


def record_path(root: str) -> str:
    key = hashlib.sha256(os.path.realpath(root).encode()).hexdigest()[:32]
    return os.path.join(cache_dir(), "builds", f"{key}.json")


def _stat(path: str) -> list:
    try:
        st = os.stat(path)
    except OSError as e:
        return [path, "missing", e.errno]
    return [path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _digest(path: str) -> list:
    """The content of a file (links followed): its SHA-256, or why it cannot be read."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as e:
        return ["unreadable", e.errno]
    return [h.hexdigest()]


def _tree(root: str, out: list, known: dict[str, str] | None = None, base: str = "") -> None:
    """Every file and folder under ``root``, in a fixed order: a file's lstat and its content's hash, a link's
    target (its stat and content, or the folder it leads to, walked once), a folder's entries.

    The content is hashed, not only stat'ed: an edit that keeps a file's size and times (within one tick of the
    file system's clock, or by a tool that sets them back) is a change too.  ``known``: the hashes of regular
    files the build read or wrote itself (their path under ``base``, the lab's folder), not read again.
    """
    cut = len(base) + 1
    stack = [root]
    seen = {os.path.realpath(root)}
    while stack:
        d = stack.pop()
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as e:
            out.append([d, "unreadable", e.errno])
            continue
        names = []
        for e in entries:
            if e.name in SKIPPED:
                continue
            names.append(e.name)
            try:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                    continue
                st = e.stat(follow_symlinks=False)
            except OSError as err:
                out.append([e.path, "unreadable", err.errno])
                continue
            item = [e.path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
            if e.is_symlink():
                try:
                    item += ["->", os.readlink(e.path)]
                except OSError as err:
                    item += ["->", "unreadable", err.errno]
                item.append(_stat(e.path))  # what it leads to (followed), or why not
                if os.path.isdir(e.path):
                    real = os.path.realpath(e.path)
                    if real not in seen:  # a linked folder is walked once, whatever links to it
                        seen.add(real)
                        stack.append(e.path)
                    out.append(item)
                    continue
            digest = known.get(e.path[cut:]) if known and not e.is_symlink() else None
            item.append([digest] if digest else _digest(e.path))
            out.append(item)
        out.append([d, "folder", names])


def fingerprint(root: str, extra: list[str], known: dict[str, str] | None = None) -> str:
    """One hash of everything a build of the lab at ``root`` read (``extra``: files outside its folders;
    ``known``: lab-relative path -> SHA-256 of files whose content the build hashed already)."""
    root = os.path.realpath(root)
    items: list = [VERSION, sys.version, sys.executable,
                   sorted((k, v) for k, v in os.environ.items()
                          if k.startswith(ENV_PREFIXES) or k in ("PATH", "PYTHONPATH"))]
    for name in WATCHED:
        _tree(os.path.join(root, name), items, known, root)
    for path in extra:
        items.append(_stat(path))
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()


def loaded_code() -> list[str]:
    """The files of every Python module this process ran (homelab, its dependencies, a lab's own roles)."""
    out = set()
    for m in list(sys.modules.values()):
        f = getattr(m, "__file__", None)
        if f:
            out.add(os.path.abspath(f))
    return sorted(out)


def save(root: str, extra: list[str], check_line: str, build_line: str, warnings: list[str],
         known: dict[str, str] | None = None) -> None:
    """Record a whole, verified build of ``root`` (after its files were written; ``known``: see fingerprint)."""
    record = {"version": VERSION, "root": os.path.realpath(root), "extra": extra,
              "fingerprint": fingerprint(root, extra, known), "when": time.strftime("%Y-%m-%d %H:%M:%S"),
              "check": check_line, "build": build_line, "warnings": warnings}
    path = record_path(root)
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.replace(tmp, path)
    except OSError:  # no cache: every build runs in full, which is only slower
        pass


def forget(root: str) -> None:
    try:
        os.unlink(record_path(root))
    except OSError:
        pass


def lookup(root: str) -> dict | None:
    """The recorded build of ``root`` when nothing it read has changed since; else None."""
    try:
        with open(record_path(root), encoding="utf-8") as f:
            record = json.load(f)
        if (record.get("version") != VERSION or record.get("root") != os.path.realpath(root)
                or not isinstance(record.get("extra"), list)):
            return None
        if fingerprint(root, [str(x) for x in record["extra"]]) != record.get("fingerprint"):
            return None
        return record
    except (OSError, ValueError, TypeError, AttributeError):
        return None


# ---------------------------------------------------------------- the command line's fast path


def _lab_root(root: str | None) -> str | None:
    """The lab folder as the CLI finds it (--root, or upward from here to a folder with hosts/cluster.py)."""
    if root is not None:
        return os.path.realpath(root)
    here = os.path.realpath(os.getcwd())
    while True:
        if os.path.isfile(os.path.join(here, "hosts", "cluster.py")):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def answer(argv: list[str]) -> int | None:
    """``build`` / ``build --check`` of a whole lab whose record still holds: print it and return 0.

    None: anything else (another command, other options, host paths, a changed lab), left to the CLI.
    """
    if not argv or argv[0] != "build":
        return None
    args, root, check = argv[1:], None, False
    while args:
        a = args.pop(0)
        if a == "--check" and not check:
            check = True
        elif a in ("-q", "--quiet"):  # a no-op build lists no files anyway
            pass
        elif a == "--root" and args and root is None:
            root = args.pop(0)
        elif a.startswith("--root=") and root is None:
            root = a.split("=", 1)[1]
        else:
            return None
    lab = _lab_root(root)
    if lab is None:
        return None
    record = lookup(lab)
    if record is None:
        return None
    for w in record["warnings"]:
        print(w, file=sys.stderr)
    print(record["check"] if check else record["build"].replace("{when}", record["when"]))
    return 0
