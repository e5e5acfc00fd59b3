"""Python files compiled by a second process while this one runs them (a large lab's host.py files).

Loading a lab of thousands of hosts spends about a third of its time compiling host.py files, work
that needs nothing but the file.  :class:`Precompiled` forks a helper that compiles the files in
order and hands each one's code back (``marshal``) through a pipe, so the compiling runs on the
second core while this process runs the files already compiled.  ``next_code()`` gives the files'
code in the order given.  When the helper is behind (a busy machine gives it less of a core), this
process does not wait: it compiles a file from the end of the list meanwhile, marked in memory the
two share so that the helper stops before it, and waits only once nothing is left to take.

A command that knows it will load a lab (``homelab build``) starts the helper before it imports the rest of
homelab (:func:`early`): the helper lists the host folders itself and compiles while this process imports,
lists the hosts and runs ``cluster.py`` (at 10,000 hosts about 0.8 s, in which it compiles a third of the
files); the load then asks for each file's code by its path (:meth:`Precompiled.code_for`), and compiles
itself any file the helper did not list.

Nothing depends on the helper: a file it could not compile (a syntax error, a file it could not
read) comes back as None, and so does every file after the helper stopped for any reason; the
caller then compiles the file itself, so its error is exactly the one it would have had.
Standalone: imports nothing from homelab but :mod:`homelab.shapes` (itself standalone).
"""

from __future__ import annotations

import hashlib
import marshal
import mmap
import os
import queue
import signal
import threading
from types import CodeType

from .shapes import compile_source

__all__ = ["Precompiled", "compile_file", "available", "early", "FROM"]

_DIGEST = 32  # bytes of SHA-256 before the code in each record of the helper's

FROM = 200  # files: below this a helper costs more than it saves (homelab.load.PRECOMPILE_FROM)


def compile_file(path: str, digests: dict[str, bytes] | None = None) -> CodeType:
    """``path``'s code, as running it as a script compiles it (no ``__future__`` flags of the caller): compile()'s,
    or the same code made from an earlier file's of the same shape (:mod:`homelab.shapes`).
    ``digests``: given the SHA-256 of the bytes compiled, by ``path`` (once they are read, even if they do not
    compile), so a build's no-op record need not read the file again (homelab.load.source_digest)."""
    with open(path, "rb") as f:
        source = f.read()
    if digests is not None:
        digests[path] = hashlib.sha256(source).digest()
    return compile_source(source, path)


def available() -> bool:
    """Whether a helper can run beside this process: fork exists and there is a second core."""
    return hasattr(os, "fork") and (os.cpu_count() or 1) >= 2


def _compiled(path: str, digests: dict[str, bytes] | None = None) -> CodeType | None:
    try:
        return compile_file(path, digests)
    except Exception:  # noqa: BLE001 - None: the caller compiles it and meets the error itself
        return None


class Precompiled:
    """The code of ``paths``, compiled by a forked helper: call ``next_code()`` once per path, in order, then
    ``close()`` (also when stopping early: it ends the helper)."""

    def __init__(self, paths: list[str]):
        self._paths = list(paths)
        self._index = {p: i for i, p in enumerate(self._paths)}
        self._closed = False
        self._items: queue.SimpleQueue = queue.SimpleQueue()
        self._ended = False
        self._next = 0  # the index next_code() gives next
        self._tail = len(self._paths)  # the files from here on are compiled here (the helper stops before them)
        self._own: dict[int, CodeType | None] = {}
        # path -> SHA-256 of the bytes its code (as next_code/code_for give it) was compiled from
        self.digests: dict[str, bytes] = {}
        # one byte per file, shared with the helper: 1 when this process took it (the helper skips it)
        self._taken = mmap.mmap(-1, max(1, len(self._paths)))
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the helper: compile, write, leave without running anything of the parent's
            code = 0
            try:
                os.close(r)
                _compile_all(self._paths, self._taken, w)
            except BaseException:  # noqa: BLE001 - the parent compiles whatever is missing
                code = 1
            finally:
                os._exit(code)
        os.close(w)
        self._pid = pid
        self._reader = threading.Thread(target=self._read, args=(r,), name="homelab-precompile", daemon=True)
        self._reader.start()

    def _read(self, fd: int) -> None:
        """Move each record from the pipe to the queue as it comes, so the helper never waits on a full pipe."""
        with os.fdopen(fd, "rb") as f:
            while True:
                head = f.read(12)
                if len(head) < 12:
                    break
                index, size = int.from_bytes(head[:4], "little"), int.from_bytes(head[4:], "little")
                data = f.read(size) if size else b""
                if len(data) < size:
                    break
                self._items.put((index, data))
        self._items.put(None)  # the helper is done, or gone

    def next_code(self) -> CodeType | None:
        """The next file's code, or None: compile that file yourself."""
        i = self._next
        self._next += 1
        if i in self._own:  # taken from the end earlier
            return self._own.pop(i)
        while not self._ended:
            try:
                item = self._items.get_nowait()
            except queue.Empty:
                if self._tail > i:  # the helper is behind: compile the last file nobody took, meanwhile
                    self._tail -= 1
                    self._taken[self._tail] = 1
                    self._own[self._tail] = _compiled(self._paths[self._tail], self.digests)
                    if self._tail == i:  # it was this one (the helper may be compiling it too: that is dropped)
                        return self._own.pop(i)
                    continue
                item = self._items.get()
            if item is None:
                self._ended = True
                break
            index, data = item
            if index < i:  # a file this process took while the helper was compiling it too
                continue
            if len(data) <= _DIGEST:
                return None
            try:
                code = marshal.loads(data[_DIGEST:])
            except (ValueError, EOFError, TypeError):
                return None
            self.digests[self._paths[index]] = data[:_DIGEST]  # what the helper compiled this code from
            return code
        return None

    def code_for(self, path: str) -> CodeType | None:
        """The code of ``path``, or None: compile that file yourself.  Asked for in the order of the paths given
        (some may be skipped: the files the helper compiled for nothing); a path it was not given, or one before
        the last asked for, gets None."""
        i = self._index.get(path)
        if i is None or i < self._next:
            return None
        self._next = i
        return self.next_code()

    def close(self) -> None:
        """End the helper (if it is still compiling) and wait for it; once (again: nothing)."""
        if self._closed:
            return
        self._closed = True
        try:
            os.kill(self._pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(self._pid, 0)
        except ChildProcessError:
            pass
        self._reader.join()
        self._taken.close()


def early(folder: str, name: str = "host.py", at_least: int | None = None) -> Precompiled | None:
    """A helper compiling ``folder/<each sub-folder>/name`` (sub-folders by name, as homelab.load.host_sources
    lists them, without looking whether the file is there), or None: fewer than ``at_least`` entries (default
    :data:`FROM`), no second core, ``folder`` unreadable.  For a command that will load the lab (its load closes
    the helper; close it also when the command stops before)."""
    if not available():
        return None
    try:
        with os.scandir(folder) as it:
            names = sorted(e.name for e in it)
    except OSError:
        return None
    paths = [os.path.join(folder, n, name) for n in names if not n.startswith(".") and n != "__pycache__"]
    if len(paths) < (FROM if at_least is None else at_least):
        return None
    try:
        return Precompiled(paths)
    except OSError:  # no fork now (no memory, too many processes): the load compiles every file itself
        return None


def _compile_all(paths: list[str], taken: mmap.mmap, fd: int) -> None:
    with os.fdopen(fd, "wb") as out:
        for index, path in enumerate(paths):
            if taken[index]:  # the parent took the files from here on
                break
            try:
                digests: dict[str, bytes] = {}
                data = marshal.dumps(compile_file(path, digests))
                data = digests[path] + data  # a record: the source's SHA-256, then the code
            except Exception:  # noqa: BLE001 - an empty record: the parent compiles it and meets the error itself
                data = b""
            out.write(index.to_bytes(4, "little") + len(data).to_bytes(8, "little"))
            out.write(data)
            out.flush()  # each record as soon as it is made: the parent may be waiting for it
