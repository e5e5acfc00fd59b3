"""A function run by a forked child while this process goes on, its result handed back pickled.

For work that splits in two (validating a large lab's hosts: :func:`homelab.validate.validate`) on a machine
with a second core.  Nothing depends on the child: :meth:`Child.result` says whether it answered, and the
caller does that part itself when it did not (it died, it raised, its answer did not pickle), so an error is
raised exactly as it would have been in one process.  Standalone: imports nothing from homelab.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
from typing import Any, Callable

__all__ = ["PARALLEL_FROM", "threshold", "possible", "Child", "start"]

PARALLEL_FROM = 1000  # hosts (homelab.shard uses it too): below this a fork costs more than it saves


def threshold() -> int:
    """From how many hosts on work is split in two processes: ``HOMELAB_PARALLEL_FROM`` (as for the two-process
    build, homelab.shard; 0 never), else :data:`PARALLEL_FROM`."""
    value = os.environ.get("HOMELAB_PARALLEL_FROM", "")
    try:
        return int(value) if value.strip() else PARALLEL_FROM
    except ValueError:
        return PARALLEL_FROM


def possible() -> bool:
    """A child can run beside this process: fork exists, there is a second core, no other thread runs here (a
    child forked while another thread holds a lock could wait for it forever), and no child of :func:`start`
    runs already (it has the second core: a build's shared compile, :func:`homelab.splitprep.ahead`, beside
    which this process validates alone; a third process would cost CPU and gain nothing on two cores)."""
    return hasattr(os, "fork") and (os.cpu_count() or 1) >= 2 and threading.active_count() == 1 and not _RUNNING


_RUNNING: set[int] = set()  # the pids of this process's children not yet waited for


class Child:
    """A forked child computing ``fn(*args)``: :meth:`result` once (it waits for the child), or :meth:`stop`."""

    def __init__(self, pid: int, fd: int):
        self._pid, self._fd = pid, fd

    def result(self) -> tuple[bool, Any]:
        """(True, what the child's call returned), or (False, None) when the child gave no answer."""
        chunks = []
        try:
            with os.fdopen(self._fd, "rb") as f:
                while chunk := f.read(1 << 20):
                    chunks.append(chunk)
        finally:
            status = self._wait()
        if status != 0 or not chunks:
            return False, None
        try:
            return True, pickle.loads(b"".join(chunks))
        except Exception:  # noqa: BLE001 - an answer that does not load is no answer
            return False, None

    def stop(self) -> None:
        """End the child (when its answer is no longer wanted) and wait for it."""
        try:
            os.kill(self._pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.close(self._fd)
        except OSError:
            pass
        self._wait()

    def _wait(self) -> int | None:
        try:
            _pid, status = os.waitpid(self._pid, 0)
        except ChildProcessError:
            return None
        finally:
            _RUNNING.discard(self._pid)
        return os.waitstatus_to_exitcode(status)


def start(fn: Callable[..., Any], *args: Any) -> Child:
    """Fork a child that runs ``fn(*args)`` and writes its pickled result; it leaves without running anything
    else of this process's (no atexit handler, no flush of this process's buffers)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # a Ctrl-C ends the child at once; the parent handles it
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            data = pickle.dumps(fn(*args), protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(w, "wb") as out:
                out.write(data)
            code = 0
        except BaseException:  # noqa: BLE001 - the parent does the work itself and meets the error there
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    _RUNNING.add(pid)
    return Child(pid, r)
