"""Python files compiled by a second process while this one runs them (a large lab's host.py files).

Loading a lab of thousands of hosts spends about a third of its time compiling host.py files, work
that needs nothing but the file.  :class:`Precompiled` forks a helper that compiles the files in
order and hands each one's code back (``marshal``) through a pipe, so the compiling runs on the
second core while this process runs the files already compiled.  ``next_code()`` gives the files'
code in the order given.  When the helper is behind (a busy machine gives it less of a core), this
process does not wait: it compiles a file from the end of the list meanwhile, marked in memory the
two share so that the helper stops before it, and waits only once nothing is left to take.

Nothing depends on the helper: a file it could not compile (a syntax error, a file it could not
read) comes back as None, and so does every file after the helper stopped for any reason; the
caller then compiles the file itself, so its error is exactly the one it would have had.
Standalone: imports nothing from homelab.
"""

from __future__ import annotations

import marshal
import mmap
import os
import queue
import signal
import threading
from types import CodeType

__all__ = ["Precompiled", "compile_file", "available"]


def compile_file(path: str) -> CodeType:
    """``path``'s code, as running it as a script compiles it (no ``__future__`` flags of the caller)."""
    with open(path, "rb") as f:
        source = f.read()
    return compile(source, path, "exec", dont_inherit=True)


def available() -> bool:
    """Whether a helper can run beside this process: fork exists and there is a second core."""
    return hasattr(os, "fork") and (os.cpu_count() or 1) >= 2


def _compiled(path: str) -> CodeType | None:
    try:
        return compile_file(path)
    except Exception:  # noqa: BLE001 - None: the caller compiles it and meets the error itself
        return None


class Precompiled:
    """The code of ``paths``, compiled by a forked helper: call ``next_code()`` once per path, in order, then
    ``close()`` (also when stopping early: it ends the helper)."""

    def __init__(self, paths: list[str]):
        self._paths = list(paths)
        self._items: queue.SimpleQueue = queue.SimpleQueue()
        self._ended = False
        self._next = 0  # the index next_code() gives next
        self._tail = len(self._paths)  # the files from here on are compiled here (the helper stops before them)
        self._own: dict[int, CodeType | None] = {}
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
                    self._own[self._tail] = _compiled(self._paths[self._tail])
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
            if not data:
                return None
            try:
                return marshal.loads(data)
            except (ValueError, EOFError, TypeError):
                return None
        return None

    def close(self) -> None:
        """End the helper (if it is still compiling) and wait for it."""
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


def _compile_all(paths: list[str], taken: mmap.mmap, fd: int) -> None:
    with os.fdopen(fd, "wb") as out:
        for index, path in enumerate(paths):
            if taken[index]:  # the parent took the files from here on
                break
            try:
                data = marshal.dumps(compile_file(path))
            except Exception:  # noqa: BLE001 - an empty record: the parent compiles it and meets the error itself
                data = b""
            out.write(index.to_bytes(4, "little") + len(data).to_bytes(8, "little"))
            out.write(data)
            out.flush()  # each record as soon as it is made: the parent may be waiting for it
