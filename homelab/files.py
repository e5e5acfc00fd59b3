"""Writing generated files: atomically, deterministically, never over a hand edit.

A build first decides everything (what to write, what to delete, what it must
refuse), then writes each new file to a temporary beside its target, fsyncs
it, and renames it into place.  A crash at any point leaves every file either
old or new.  A file whose content no longer matches the hash in its header
was edited by hand and is not overwritten without ``force``.

Order of the renames: module files first, then the hosts' entry files that
import them, then deletions, so a crash never leaves an entry importing a
module that is not there yet.  Temporaries a killed build left behind
(``.<name>.nix.XXXXXXXX.tmp``) are removed by the next build.  Builds of one
lab are serialised by an advisory lock on the lab's folder (released by the
kernel even when a build is killed).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import os
import re
import secrets
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Collection, Iterable, Iterator

import attrs

from .errors import LabError, Problem
from .render import content_hash, is_generated, stored_hash


@attrs.frozen
class Plan:
    write: dict[str, str]  # path -> new text (only files whose bytes change)
    delete: tuple[str, ...]  # generated files no longer produced
    unchanged: tuple[str, ...]


def read_exact(path: Path) -> str:
    """A file's text exactly as stored: no newline translation (a CRLF copy is not the same file)."""
    return path.read_bytes().decode("utf-8", errors="replace")


def generated_on_disk(root: Path) -> list[str]:
    """Files homelab generated earlier: modules/**.nix, hosts/*/default.nix and hosts/lab.nix with our header."""
    found = []
    for p in sorted([*root.glob("modules/**/*.nix"), *root.glob("hosts/*/default.nix"), *root.glob("hosts/lab.nix"),
                     *root.glob("cluster/*.yaml"), *root.glob("cluster/values/*.yaml")]):
        if p.is_symlink():  # homelab writes regular files only: a link there was made by hand, never pruned
            continue
        try:
            head = read_exact(p)[:64]
        except OSError:
            continue
        if is_generated(head):
            found.append(p.relative_to(root).as_posix())
    return found


def edited(text: str) -> bool:
    """True when a generated file's text no longer matches its recorded hash."""
    h = stored_hash(text)
    return h is None or h != content_hash(text)


def plan(root: Path, texts: dict[str, str], *, prune: bool = True, force: bool = False,
         listed: dict[str, Collection[str]] | None = None) -> Plan:
    """What a build would do; raises LabError for files it must not touch.  ``listed``: real folders of the lab
    (lab-relative, no link) the caller listed already, each with the names in it: a folder there is not in the
    way, and a file whose name is not in its folder's listing is not there (no look at either)."""
    problems: list[Problem] = []
    write: dict[str, str] = {}
    unchanged: list[str] = []
    in_the_way: dict[str, bool] = {folder: False for folder in listed or ()}  # each folder looked at once (10,000)

    def blocks(folder: str) -> bool:  # a link, or anything but a folder (one lstat: a lab has 10,000 folders)
        if folder not in in_the_way:
            try:
                in_the_way[folder] = not stat.S_ISDIR(os.lstat(root / folder).st_mode)
            except OSError as e:  # not there (made when written): nothing in the way here; as pathlib's
                if e.errno not in _NOT_THERE:  # is_symlink() and exists() said, other errors are raised
                    raise
                in_the_way[folder] = False
        return in_the_way[folder]

    for rel, text in sorted(texts.items()):
        target = root / rel
        parts = rel.split("/")[:-1]  # the folders between the lab's and the file, nearest first
        blocking = next((f for f in ("/".join(parts[:n]) for n in range(len(parts), 0, -1)) if blocks(f)), None)
        if blocking is not None:
            problems.append(Problem(blocking, "file", f"is in the way: homelab needs a folder there to write {rel}"))
            continue
        folder = rel.rpartition("/")[0]
        if listed is not None and folder in listed and rel.rpartition("/")[2] not in listed[folder]:
            write[rel] = text  # not there when its folder was listed: as the look below finds it
            continue
        try:
            os.lstat(target)
        except FileNotFoundError:  # the common case of a build from nothing: one system call
            write[rel] = text
            continue
        except OSError:
            pass  # what it is, the checks below say
        if target.is_symlink() or (target.exists() and not target.is_file()):
            problems.append(Problem(rel, "file", "is not a regular file; homelab will not replace it"))
            continue
        if target.exists():
            old = read_exact(target)
            if old == text:
                unchanged.append(rel)
                continue
            if not force and not is_generated(old):
                problems.append(Problem(rel, "file", "exists and was not generated by homelab; move it away "
                                        "(or import it from host.py) or run the build with --force"))
                continue
            if not force and edited(old):
                problems.append(Problem(rel, "file", "was edited by hand since homelab generated it; put the "
                                        "change into host.py (options= or imports=) and run the build again, "
                                        "or run it with --force to overwrite the edit"))
                continue
        write[rel] = text
    delete = pruned(root, texts, force, problems) if prune else []
    if problems:
        raise LabError(problems)
    return Plan(write, tuple(delete), tuple(unchanged))


_NOT_THERE = (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP)  # what pathlib takes for "no such file"


def pruned(root: Path, produced: Collection[str], force: bool, problems: list[Problem]) -> list[str]:
    """The generated files on disk a build of the whole lab no longer produces (``produced``: every path it
    writes), to delete; one edited by hand adds its problem to ``problems`` instead (unless ``force``)."""
    delete: list[str] = []
    for rel in generated_on_disk(root):
        if rel in produced:
            continue
        old = read_exact(root / rel)
        if edited(old) and not force:
            problems.append(Problem(rel, "file", "is no longer generated but was edited by hand; delete it "
                                    "yourself or run the build with --force"))
        else:
            delete.append(rel)
    return delete


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _syncfs(path: Path) -> bool:
    """Flush the whole filesystem holding ``path`` (Linux ``syncfs``); False where that is not possible."""
    global _SYNCFS
    if _SYNCFS is None:
        try:
            _SYNCFS = ctypes.CDLL(None, use_errno=True).syncfs
        except (OSError, AttributeError):
            _SYNCFS = False
    if _SYNCFS is False:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        return _SYNCFS(fd) == 0
    finally:
        os.close(fd)


_SYNCFS = None
BATCH_SYNC_FROM = 8  # files; below this, one fsync per file is as cheap as a filesystem sync


def apply(root: Path, p: Plan) -> None:
    """Carry out a plan: every file is replaced by rename, so readers see old or new, never half.

    Every new text is on disk before the first rename.  Many files are made durable with
    one ``syncfs`` before the renames and one after (instead of an fsync per file and per
    directory, which took seconds for a thousand hosts); few files, or a system without
    syncfs, get the per-file fsyncs.
    """
    with locked(root):
        remove_stale_temps(root)
        _apply(root, p)


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """The lab's build lock held (an advisory lock on its folder, released by the kernel if the build dies)."""
    lock = os.open(root, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
    finally:
        os.close(lock)


def _apply(root: Path, p: Plan) -> None:
    batch = len(p.write) >= BATCH_SYNC_FROM and _SYNCFS is not False
    temps: list[tuple[str, Path]] = []
    try:
        write_temps(root, p.write, _temp_token(), batch, temps)
        commit(root, temps, p.delete, batch)
        temps = []
    finally:
        for _, tmp in temps:
            tmp.unlink(missing_ok=True)


def write_temps(root: Path, texts: dict[str, str], token: str, batch: bool, temps: list[tuple[str, Path]],
                digests: dict[str, str] | None = None) -> None:
    """Each text written to a new temporary beside its target, appended to ``temps`` as (path, temporary) once
    it exists (so a caller's cleanup finds it); fsynced one by one unless ``batch`` (a filesystem sync will).
    ``digests``: filled with the SHA-256 of each text's bytes, keyed by its lab-relative path."""
    base = str(root) + "/"  # plain strings: a lab of 10,000 hosts writes 10,000 files
    for rel, text in sorted(texts.items(), key=lambda kv: _rename_order(kv[0])):
        folder, _, name = (base + rel).rpartition("/")
        try:
            fd, tmp = _new_temp_in(folder, name, token)
        except FileNotFoundError:  # its folder is not there yet (a folder looked up first cost two system calls
            os.makedirs(folder, exist_ok=True)  # a file, for 10,000 folders that are there)
            fd, tmp = _new_temp_in(folder, name, token)
        try:
            temps.append((rel, tmp))
            data = text.encode("utf-8")
            _write_all(fd, data)
            os.fchmod(fd, 0o644)
            if not batch:
                os.fsync(fd)
        finally:
            os.close(fd)
        if digests is not None:
            digests[rel] = hashlib.sha256(data).hexdigest()
        _test_pause("temp", rel)


def commit(root: Path, temps: list[tuple[str, Path]], delete: Collection[str], batch: bool) -> None:
    """Rename the temporaries into place, in :func:`_rename_order`, then delete ``delete``: every text is on disk
    before the first rename (one filesystem sync when ``batch``, else an fsync each), the renames are durable
    after (a sync, else each folder fsynced)."""
    temps = sorted(temps, key=lambda rt: _rename_order(rt[0]))
    batch = on_disk(root, temps, batch)
    rename_all(root, temps)
    renames_on_disk(root, temps, batch)
    remove_all(root, delete)


def on_disk(root: Path, temps: list[tuple[str, Path]], batch: bool) -> bool:
    """Every temporary's text on disk, before the first rename: one filesystem sync when ``batch`` (True returned:
    the renames are made durable the same way), else each temporary fsynced (``batch`` False: write_temps did)."""
    if not batch:
        return False
    if _syncfs(root):
        return True
    for _, tmp in temps:
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
    return False


def rename_all(root: Path, temps: list[tuple[str, Path]]) -> None:
    """Each temporary renamed onto its target, in the order given (plain strings: 10,000 renames)."""
    base = str(root) + "/"
    pause = bool(os.environ.get("HOMELAB_TEST_STOP_AT"))
    for rel, tmp in temps:
        os.replace(tmp, base + rel)
        if pause:
            _test_pause("rename", rel)


def renames_on_disk(root: Path, temps: list[tuple[str, Path]], batch: bool) -> None:
    """The renames durable: one filesystem sync when ``batch``, else each folder fsynced."""
    if not (batch and _syncfs(root)):
        for d in {(root / rel).parent for rel, _ in temps}:
            _fsync_dir(d)


def remove_all(root: Path, delete: Collection[str]) -> None:
    for rel in delete:
        (root / rel).unlink(missing_ok=True)
        _test_pause("delete", rel)


def _temp_token() -> str:
    """Eight characters naming this build's temporaries (``.<name>.<token>.tmp``, what ``_TEMP`` matches)."""
    return "".join(secrets.choice(_TOKEN_CHARS) for _ in range(8))


_TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"


def _new_temp(target: Path, token: str) -> tuple[int, Path]:
    """A new file beside ``target``, open for writing, readable only by its owner until it is complete: the
    build's own name (one temporary per target, so one token serves the whole build), or a fresh one if that
    name is taken."""
    return _new_temp_in(str(target.parent), target.name, token)


def _new_temp_in(folder: str, name: str, token: str) -> tuple[int, Path]:
    """:func:`_new_temp` for the file ``name`` in ``folder`` (plain strings)."""
    tmp = f"{folder}/.{name}.{token}.tmp"
    try:
        return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), Path(tmp)
    except FileExistsError:
        fd, other = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
        return fd, Path(other)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _rename_order(rel: str) -> tuple[bool, bool, str]:
    """Modules before the entry files (hosts/<name>/default.nix) that import them; values files before the
    helmfile that names them."""
    return (rel.startswith("hosts/"), rel == "cluster/helmfile.yaml", rel)


# what tempfile.mkstemp(prefix=".<name>.", suffix=".tmp") makes for a generated .nix file
_TEMP = re.compile(r"^\..+\.(nix|yaml)\.[a-z0-9_]{8}\.tmp\Z")


def stale_temps(root: Path, skip: Collection[str] = ()) -> list[Path]:
    """Temporaries a killed build left beside generated files (modules/**, hosts/, hosts/*/); ``skip``: the host
    folders (by name) looked at by the caller itself, from listings it takes anyway (:func:`temps_in`)."""
    dirs = [root / "modules", *(root / "modules").rglob("*"), root / "hosts", root / "cluster", root / "cluster" / "values"]
    found = [f for d in dirs if d.is_dir() and not d.is_symlink()
             for f in d.iterdir() if _TEMP.match(f.name) and f.is_file() and not f.is_symlink()]
    hosts = root / "hosts"
    if hosts.is_dir() and not hosts.is_symlink():  # hosts/*/: each folder's type from the listing (10,000 folders)
        for d in _entries(str(hosts)):
            if d.is_dir(follow_symlinks=False) and d.name not in skip:
                found += [Path(p) for p in temps_in(_entries(d.path))]
    return sorted(found)


def temps_in(entries: Iterable[os.DirEntry]) -> list[str]:
    """The paths of the temporaries (``_TEMP``'s names, regular files) in one folder's listing, as
    :func:`stale_temps` finds them there."""
    return [e.path for e in entries if _TEMP.match(e.name) and e.is_file(follow_symlinks=False)]


def host_folders(root: Path) -> frozenset[str]:
    """The names of the real folders (no link) in ``root``/hosts, from one listing; none if hosts/ is not a real
    folder: those :func:`stale_temps` walks."""
    hosts = root / "hosts"
    try:
        if not stat.S_ISDIR(os.lstat(hosts).st_mode):
            return frozenset()
        return frozenset(d.name for d in _entries(str(hosts)) if d.is_dir(follow_symlinks=False))
    except OSError:
        return frozenset()


def _entries(folder: str) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        return list(it)


def remove_stale_temps(root: Path, keep: str | None = None, skip: Collection[str] = ()) -> list[Path]:
    """:func:`stale_temps` removed (``keep``: but those of the build whose token it is, :func:`_temp_token`;
    ``skip``: as for :func:`stale_temps`)."""
    found = stale_temps(root, skip)
    if keep is not None:
        found = [f for f in found if not f.name.endswith(f".{keep}.tmp")]
    for f in found:
        f.unlink(missing_ok=True)
    return found


_steps_done = 0


def _test_pause(step: str, rel: str) -> None:
    """Test hook, off unless HOMELAB_TEST_STOP_AT=N is set: name each write step on stderr, stop at the N-th.

    tests/test_atomic.py kills the build while it waits after step N, for every N,
    to prove that every file is old or new at every point.
    """
    stop = os.environ.get("HOMELAB_TEST_STOP_AT")
    if stop:
        global _steps_done
        _steps_done += 1
        sys.stderr.write(f"homelab-test-step {step} {rel}\n")  # one write (print writes the line's end apart):
        sys.stderr.flush()  # the two processes of a large build name their steps on one stderr
        if _steps_done == int(stop):
            time.sleep(3600)


def stale(root: Path, texts: dict[str, str], *, prune: bool = True) -> list[str]:
    """Paths whose file on disk differs from what a build would write (or should not exist)."""
    out = []
    for rel, text in sorted(texts.items()):
        target = root / rel
        if not target.is_file() or read_exact(target) != text:
            out.append(rel)
    if prune:
        out += [rel for rel in generated_on_disk(root) if rel not in texts]
    return out
