"""A function run by a forked child while this process goes on, its result handed back pickled.

For work that splits in two (validating a large lab's hosts: :func:`homelab.validate.validate`) on a machine
with a second core.  Nothing depends on the child: :meth:`Child.result` says whether it answered, and the
caller does that part itself when it did not (it died, it raised, its answer did not pickle), so an error is
raised exactly as it would have been in one process.  A child of :func:`start_each` sends each part of its work
as soon as it is done (:meth:`Child.next`).  Standalone: imports nothing from homelab.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
from typing import Any, Callable, Iterator

__all__ = ["PARALLEL_FROM", "threshold", "possible", "Child", "start", "start_each"]

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
        self._ended = False  # start_each's: no more items to read
        self._reaped = False  # waited for: its pid may be another process's now, never signalled again

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

    def next(self) -> tuple[bool, Any]:
        """A child of :func:`start_each`: (True, the next item it sent), or (False, None) when it sent no more (it
        ended, died or raised first) or the item did not load.  Each item is whole when it is read: one the child
        sent before it died is its answer all the same.  Once the child sent no more it is waited for."""
        if self._ended:
            return False, None
        data = receive(self._fd)
        if data is None:
            self.finish()
            return False, None
        try:
            return True, pickle.loads(data)
        except Exception:  # noqa: BLE001 - an item that does not load is no item
            return False, None

    def finish(self) -> None:
        """A child of :func:`start_each` whose items were all read: wait for it to leave (it does once it wrote
        them); once."""
        if not self._ended:
            self._ended = True
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._wait()

    def stop(self) -> None:
        """End the child (when its answer is no longer wanted) and wait for it; nothing once it was waited for."""
        self._ended = True
        if self._reaped:
            return
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
            self._reaped = True
            _RUNNING.discard(self._pid)
        return os.waitstatus_to_exitcode(status)


def send(fd: int, item: Any) -> None:
    """Write ``item`` to ``fd`` as one message: its pickle's length (8 bytes, little-endian), then the pickle."""
    data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
    _write_all(fd, len(data).to_bytes(8, "little") + data)


def receive(fd: int) -> bytes | None:
    """The pickle of the next message :func:`send` wrote to ``fd``; None when the writer ended before it was whole."""
    head = _read_exactly(fd, 8)
    if len(head) < 8:
        return None
    n = int.from_bytes(head, "little")
    data = _read_exactly(fd, n)
    return data if len(data) == n else None


def _read_exactly(fd: int, n: int) -> bytes:
    """``n`` bytes from ``fd``, fewer when it ends first."""
    chunks = []
    while n > 0:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def start_each(fn: Callable[..., Iterator[Any]], *args: Any) -> Child:
    """Fork a child that sends each item ``fn(*args)`` yields, pickled, as soon as it is made (:meth:`Child.next`
    reads them in order): what it found first is not held back by what it does next.  It leaves as
    :func:`start`'s does."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # as start()'s child
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            for item in fn(*args):
                send(w, item)
            code = 0
        except BaseException:  # noqa: BLE001 - the parent does the rest itself and meets the error there
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    _RUNNING.add(pid)
    return Child(pid, r)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


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
