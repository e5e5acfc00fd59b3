"""Python files compiled by a second process while this one runs them (a large lab's host.py files).

Loading a lab of thousands of hosts spends about a third of its time compiling host.py files, work
that needs nothing but the file.  :class:`Precompiled` forks a helper that compiles the files in
order and hands each one's code back (``marshal``) through a pipe, so the compiling runs on the
second core while this process runs the files already compiled.  ``next_code()`` gives the files'
code in the order given, waiting for the helper when it is behind.

Nothing depends on the helper: a file it could not compile (a syntax error, a file it could not
read) comes back as None, and so does every file after the helper stopped for any reason; the
caller then compiles the file itself, so its error is exactly the one it would have had.
Standalone: imports nothing from homelab.
"""

from __future__ import annotations

import marshal
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


class Precompiled:
    """The code of ``paths``, compiled by a forked helper: call ``next_code()`` once per path, in order, then
    ``close()`` (also when stopping early: it ends the helper)."""

    def __init__(self, paths: list[str]):
        self._items: queue.SimpleQueue = queue.SimpleQueue()
        self._ended = False
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the helper: compile, write, leave without running anything of the parent's
            code = 0
            try:
                os.close(r)
                _compile_all(paths, w)
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
                head = f.read(8)
                if len(head) < 8:
                    break
                size = int.from_bytes(head, "little")
                data = f.read(size) if size else b""
                if len(data) < size:
                    break
                self._items.put(data)
        self._items.put(None)  # the helper is done, or gone

    def next_code(self) -> CodeType | None:
        """The next file's code, or None: compile that file yourself."""
        if self._ended:
            return None
        data = self._items.get()
        if data is None:
            self._ended = True
            return None
        if not data:
            return None
        try:
            return marshal.loads(data)
        except (ValueError, EOFError, TypeError):
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


def _compile_all(paths: list[str], fd: int) -> None:
    with os.fdopen(fd, "wb") as out:
        for path in paths:
            try:
                data = marshal.dumps(compile_file(path))
            except Exception:  # noqa: BLE001 - an empty record: the parent compiles it and meets the error itself
                data = b""
            out.write(len(data).to_bytes(8, "little"))
            out.write(data)
