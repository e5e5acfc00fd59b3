"""pynix_eval: run the real ``nix`` binary from Python, with timeouts, batching and clear errors.

Standalone: imports nothing from homelab, so other projects can copy or import it.

    from homelab.pynix_eval import Nix
    nix = Nix()
    nix.eval_expr('{ a = 1 + 1; }')            # -> {'a': 2}
    nix.eval_many({"x": "1", "y": "[ 2 ]"})    # one nix process -> {'x': 1, 'y': [2]}
    nix.parse_files(["a.nix", "b.nix"])        # one nix process; NixError names the bad file

Evaluation uses ``nix-instantiate --eval --strict --json --readonly-mode``: it
reads files and writes nothing to the Nix store.  Flake commands go through
``nix`` with ``nix-command flakes`` enabled via NIX_CONFIG.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["Nix", "NixError", "NixNotFound", "NixUnusable", "NixTimeout", "NixEvalError", "nix_string",
           "nix_available", "unusable"]

FLAKE_FEATURES = "experimental-features = nix-command flakes"
# Linux caps a single argv string at 128 KiB (MAX_ARG_STRLEN); longer expressions go through stdin.
MAX_ARG_EXPR = 100_000


class NixError(Exception):
    """nix failed; ``message`` is nix's own error text, without the noise."""

    def __init__(self, message: str, *, command: Sequence[str] = (), stderr: str = "", key: str | None = None):
        self.message = message
        self.command = list(command)
        self.stderr = stderr
        self.key = key  # which batch item failed, when known
        super().__init__(message if key is None else f"{key}: {message}")


class NixNotFound(NixError):
    pass


class NixUnusable(NixNotFound):
    """nix is installed but cannot be used here: its daemon is not reachable, or this user may not use the
    Nix store.  Not a problem of what nix was asked to read; ``fix`` says what to do about it."""

    def __init__(self, message: str, *, fix: str, command: Sequence[str] = (), stderr: str = ""):
        super().__init__(message, command=command, stderr=stderr)
        self.fix = fix


class NixTimeout(NixError):
    pass


class NixEvalError(NixError):
    pass


_CALLS_LOCK = threading.Lock()
_NOT_KEPT = object()

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def clean_message(stderr: str) -> str:
    """nix's error text without colour codes, trace noise and blank lines."""
    text = _ANSI.sub("", stderr)
    lines = [ln.rstrip() for ln in text.splitlines()]
    # newer nix prints "error:" blocks with "… while evaluating" traces; keep the error and its location
    keep = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith(("…", "(stack trace", "warning: "))]
    return "\n".join(keep).strip() or "nix failed without a message"


# What nix 2.8 prints when it cannot be used at all (seen here, Debian's nix-bin 2.8.0):
#   error: cannot connect to socket at '/nix/var/nix/daemon-socket/socket': No such file or directory
#   error: cannot connect to socket at '/run/x/socket': Connection refused        (NIX_REMOTE=daemon / unix://...)
#   error: could not set permissions on '/nix/var/nix/profiles/per-user' to 755: Operation not permitted
#   error: creating directory '/nix/var/nix/profiles': Permission denied         (a user who does not own the store)
#   error: opening lock file '/nix/var/nix/db/big-lock': Permission denied
# A denial counts only on nix's own folders (its state, store and log folders), never on a file nix was asked to
# read: "opening file '/home/me/lab/x.nix': Permission denied" stays an evaluation error.
_SOCKET = re.compile(r"cannot connect to socket at '(?P<path>[^']*)'(?:: (?P<why>.+))?")
_DENIED = re.compile(r"'(?P<path>/[^']*)'.*?: (?P<why>Permission denied|Operation not permitted|Read-only file system)")


def _nix_dirs(env: Mapping[str, str]) -> tuple[str, ...]:
    state = env.get("NIX_STATE_DIR") or "/nix/var/nix"
    return tuple(d.rstrip("/") + "/" for d in (state, env.get("NIX_STORE_DIR") or "/nix/store",
                                                env.get("NIX_LOG_DIR") or "/nix/var/log/nix", "/nix/var"))


# What nix 2.8 printed here when two processes (or four) made a store that did not exist yet at once (a build
# runs the read-back and the clash check side by side): each checks for gcroots/ and then makes
# gcroots/profiles, or reads db/schema while the other is still writing it.  The loser's error names nix's own
# state folder; run once more, it finds the store made:
#   error: creating symlink from '<state>/gcroots/profiles' to '<state>/profiles': File exists
#   error: '<state>/db/schema' is corrupt
_MAKING_STORE = re.compile(r"^error: (?:creating symlink from '(?P<link>[^']*)' to '[^']*': File exists"
                           r"|'(?P<schema>[^']*)/db/schema' is corrupt)$", re.M)
MAKING_STORE_RETRIES = 2  # the store is made by then (the other process only has to finish writing it)


def making_store(stderr: str, env: Mapping[str, str]) -> bool:
    """Whether nix failed because another nix was making the same new store at that moment (see above): a
    path in nix's state folder (``.../nix/var/nix``, the default's and a ``store = <folder>`` store's layout,
    or $NIX_STATE_DIR), never a file nix was asked to read."""
    state = (env.get("NIX_STATE_DIR") or "").rstrip("/")
    for m in _MAKING_STORE.finditer(clean_message(stderr)):
        path = m["link"] or m["schema"] + "/db/schema"
        if "/nix/var/nix/" in path or (state and path.startswith(state + "/")):
            return True
    return False


def unusable(stderr: str, env: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """``(what went wrong, how to fix it)`` when nix's error says nix itself cannot be used here, else None."""
    env = os.environ if env is None else env
    text = clean_message(stderr)
    m = _SOCKET.search(text)
    if m:
        sock = m["path"]
        return (f"nix cannot reach the nix daemon: cannot connect to socket at '{sock}'"
                + (f": {m['why'].strip()}" if m["why"] else ""),
                "start the nix daemon (systemctl start nix-daemon; on Debian the nix-setup-systemd package sets it "
                "up) and make sure this user may use its socket (Debian: adduser $USER nix-users), or run as root "
                "with the store used directly (unset NIX_REMOTE)")
    dirs = _nix_dirs(env)
    for line in text.splitlines():
        m = _DENIED.search(line)
        if m and ((m["path"].rstrip("/") + "/").startswith(dirs) or "could not set permissions on" in line):
            try:
                import pwd

                user = pwd.getpwuid(os.geteuid()).pw_name
            except (ImportError, KeyError):
                user = f"uid {os.geteuid()}"
            return (f"this user ({user}) may not use the Nix store: {line.removeprefix('error: ').strip()}",
                    "run homelab as a user the nix daemon serves (Debian: apt-get install nix-setup-systemd, then "
                    "adduser $USER nix-users and log in again), or as the user who owns /nix (root on Debian's "
                    "nix-bin)")
    return None


_SLICE = 0.25  # seconds: how long a wait for nix may block before Python looks at its signals again


def _communicate(proc: subprocess.Popen, stdin: str | None, limit: float) -> tuple[str, str]:
    """``proc.communicate`` within ``limit`` seconds, in slices: a SIGTERM or SIGINT the kernel hands to another
    thread (the clash check's) sets Python's flag only, and the main thread acts on it when its wait returns.
    ``stdin`` is written by a thread of its own: communicate() called again after a slice does not go on
    writing its input (CPython watches stdin only on the call given the input), so nix waited for the rest of a
    large expression until the time limit (a 10,000-host read-back did)."""
    writer = None
    if stdin is not None and proc.stdin is not None:
        pipe, proc.stdin = proc.stdin, None  # communicate() now reads nix's output only
        writer = threading.Thread(target=_write_all, args=(pipe, stdin), name="homelab-nix-stdin", daemon=True)
        writer.start()
    deadline = time.monotonic() + limit
    try:
        while True:
            try:
                return proc.communicate(None, timeout=max(0.0, min(_SLICE, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline:
                    raise
    finally:
        if writer is not None:  # done (nix read it all, or ended: the caller kills nix on a time-out)
            writer.join(_SLICE)


def _write_all(pipe, text: str) -> None:
    """``text`` to nix's stdin, then end of file; nix that ended early (an error) reads no more: not ours to say."""
    try:
        pipe.write(text)
        pipe.close()
    except (BrokenPipeError, OSError, ValueError):
        try:
            pipe.close()
        except (BrokenPipeError, OSError, ValueError):
            pass


def _output_file() -> int:
    """A new file for a process's standard output, unnamed: in memory where Linux has ``memfd_create``."""
    if hasattr(os, "memfd_create"):
        try:
            return os.memfd_create("homelab-nix-output", os.MFD_CLOEXEC)
        except OSError:  # not allowed here (a seccomp filter): a temporary file instead
            pass
    import tempfile

    fd, path = tempfile.mkstemp(prefix="homelab-nix-output-")
    os.unlink(path)
    return fd


def _read_from_start(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 24):
        chunks.append(chunk)
    return b"".join(chunks)


def _translate(data: bytes, encoding: str, errors: str) -> str:
    """``data`` as ``subprocess.Popen(text=True)`` hands out what it read from a pipe (its ``_translate_newlines``)."""
    return data.decode(encoding, errors).replace("\r\n", "\n").replace("\r", "\n")


_HOLD: dict[str, Any] = {"depth": 0, "held": None}  # the main thread's (signal handlers run there)


def hold_interrupt(exc: type[BaseException]) -> bool:
    """For a signal handler that raises ``exc`` (homelab.cli's, for SIGTERM and SIGINT): True when the main
    thread is starting a nix process, and ``exc`` is raised as soon as Popen has returned it.  Raised between
    the fork and Popen's return, the new process would be unknown, and outlive homelab in its own session."""
    if _HOLD["depth"] and threading.current_thread() is threading.main_thread():
        _HOLD["held"] = _HOLD["held"] or exc
        return True
    return False


class _held_interrupts:
    def __enter__(self):
        self._main = threading.current_thread() is threading.main_thread()
        if self._main:
            _HOLD["depth"] += 1
        return self

    def __exit__(self, kind, value, tb):
        if self._main:
            _HOLD["depth"] -= 1
            held = _HOLD["held"] if not _HOLD["depth"] else None
            if held is not None:
                _HOLD["held"] = None
                if kind is None:
                    raise held()
        return False


class _Popen(subprocess.Popen):
    """A Popen that puts itself into ``started`` and its handle's ``running`` before it forks: an interruption
    while Popen waits for the exec (the process is there, Popen has not returned it) still finds it."""

    def __init__(self, started: list, nix: "Nix", *args: Any, **kwargs: Any):
        with _CALLS_LOCK:
            started.append(self)
            nix.running.add(self)
        super().__init__(*args, **kwargs)


def _end(proc: subprocess.Popen) -> None:
    """Kill ``proc`` (once it was forked) and reap it."""
    if getattr(proc, "pid", None) is None:  # interrupted before the fork: nothing runs
        return
    _kill(proc)
    try:
        proc.wait()
    except ChildProcessError:  # reaped meanwhile by the thread that runs it
        pass


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL to nix's process group (it runs in a session of its own), unless it is gone already."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


_ESCAPED = re.compile(r'[\\"$\n\r\t\x00]')  # what nix_string escapes or refuses ("$" only before "{")


def nix_string(s: str) -> str:
    """A Nix double-quoted string literal equal to ``s`` (for building expressions)."""
    if _ESCAPED.search(s) is None:  # most strings (a lab's paths: 30,000 of them a build): nothing to escape
        return '"' + s + '"'
    if "\x00" in s:
        raise ValueError("Nix strings cannot contain NUL")
    return '"' + (s.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${")
                  .replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")) + '"'


def nix_available(binary: str = "nix-instantiate") -> bool:
    return shutil.which(binary) is not None


def _names_of(path: str) -> list[str]:
    """``path`` and the paths nix may name it by in a message: where its symbolic links lead, link by link as nix
    follows them (each relative to the link's folder), and the real path."""
    names, p = [path], path
    for _ in range(40):
        if not os.path.islink(p):
            break
        p = os.path.normpath(os.path.join(os.path.dirname(p), os.readlink(p)))
        names.append(p)
    return names + [os.path.realpath(path)]


@dataclass
class Nix:
    """A handle on the nix binaries.  ``timeout`` (seconds) bounds every call."""

    timeout: float = 120.0
    bindir: str | None = None  # where nix-instantiate and nix live; default: PATH
    extra_env: Mapping[str, str] = field(default_factory=dict)
    calls: int = 0  # how many nix processes this handle has started (for benchmarks and tests)
    # the nix processes running now (from any thread): stop() ends them when the caller is interrupted
    running: set = field(default_factory=set, repr=False, compare=False)
    stopped: bool = field(default=False, repr=False, compare=False)
    # expression -> its value, evaluated by eval_together and not asked for yet (eval_expr hands it out once)
    kept: dict = field(default_factory=dict, repr=False, compare=False)

    def _bin(self, name: str) -> str:
        if self.bindir:
            path = os.path.join(self.bindir, name)
            if os.access(path, os.X_OK):
                return path
        found = shutil.which(name)
        if not found:
            raise NixNotFound(f"{name} not found on PATH; install nix (on Debian: apt-get install nix-bin)",
                              command=[name])
        return found

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        conf = env.get("NIX_CONFIG", "")
        if "experimental-features" not in conf:
            conf = (conf + "\n" if conf else "") + FLAKE_FEATURES
        env["NIX_CONFIG"] = conf
        env.update(self.extra_env)
        return env

    def run(self, args: Sequence[str], *, timeout: float | None = None, cwd: str | Path | None = None,
            stdin: str | None = None, key: str | None = None) -> str:
        """Run a nix binary; return stdout.  Raises NixTimeout / NixEvalError / NixNotFound."""
        cmd = [self._bin(args[0]), *args[1:]]
        limit = self.timeout if timeout is None else timeout
        with _CALLS_LOCK:  # one handle may start nix processes from two threads (homelab.readback.Pending)
            self.calls += 1
        env = self._env()
        for attempt in range(1 + MAKING_STORE_RETRIES):
            returncode, out, err = self._run_once(cmd, args, env, stdin, cwd, limit, key)
            if returncode == 0 or attempt == MAKING_STORE_RETRIES or not making_store(err, env):
                break
            time.sleep(0.05 * (attempt + 1))  # another nix is making the store: it is done in moments
            with _CALLS_LOCK:
                self.calls += 1
        if returncode != 0:
            broken = unusable(err, env)
            if broken:
                raise NixUnusable(broken[0], fix=broken[1], command=cmd, stderr=err)
            raise NixEvalError(clean_message(err), command=cmd, stderr=err, key=key)
        return out

    def _run_once(self, cmd: list[str], args: Sequence[str], env: dict[str, str], stdin: str | None,
                  cwd: str | Path | None, limit: float, key: str | None) -> tuple[int, str, str]:
        started: list[subprocess.Popen] = []  # the process, known before Popen returns (an interruption there)
        # nix's standard output goes to a file in memory, read once nix is done: through a pipe, Python woke up for
        # every few KiB nix wrote (3,000 times for the 16 MB of a 10,000-host half's read-back: 0.15-0.2 s of
        # Python's CPU, and as much of nix's); stderr stays a pipe
        out_fd = _output_file()
        try:
            with _held_interrupts():  # Ctrl-C or SIGTERM while Popen starts it: raised once ``proc`` is known
                proc = _Popen(started, self, cmd, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                              stdout=out_fd, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env,
                              start_new_session=True)
            with _CALLS_LOCK:
                stopped = self.stopped
            if stopped:  # started as stop() ran: ended like the others
                _kill(proc)
            _, err = _communicate(proc, stdin, limit)
            # decoded as Popen's text mode decodes a pipe's (stderr's encoding and errors, newlines translated)
            out = _translate(_read_from_start(out_fd), proc.stderr.encoding, proc.stderr.errors)
        except subprocess.TimeoutExpired:
            _kill(proc)
            proc.communicate()
            raise NixTimeout(f"{' '.join(args[:2])} did not finish within {limit:g} s", command=cmd, key=key)
        except BaseException:  # interrupted (Ctrl-C, SIGTERM): nix runs in a session of its own, so end it here
            for p in started:
                _end(p)
            raise
        finally:
            os.close(out_fd)
            with _CALLS_LOCK:
                self.running.difference_update(started)
        return proc.returncode, out, err

    def stop(self) -> None:
        """End every nix process this handle runs now (another thread's too): the caller was interrupted.  Until
        the caller sets ``stopped`` back to False, one started meanwhile is ended at once."""
        with _CALLS_LOCK:
            self.stopped = True  # one a thread starts from now on is ended at once
            procs = list(self.running)
        for proc in procs:
            _end(proc)  # gone before the caller goes on (no zombie once homelab exits)

    # ------------------------------------------------------------ evaluation

    def eval_expr(self, expr: str, *, timeout: float | None = None, cwd: str | Path | None = None,
                  key: str | None = None) -> Any:
        """Evaluate a Nix expression strictly and return it as JSON data."""
        if self.kept and cwd is None:
            with _CALLS_LOCK:
                value = self.kept.pop(expr, _NOT_KEPT)
            if value is not _NOT_KEPT:  # evaluated already, with the others of its eval_together
                return value
        args = ["nix-instantiate", "--eval", "--strict", "--json", "--readonly-mode"]
        if len(expr.encode()) > MAX_ARG_EXPR:  # too long for one argv string: read it from stdin
            out = self.run([*args, "-"], stdin=expr, timeout=timeout, cwd=cwd, key=key)
        else:
            out = self.run([*args, "--expr", expr], timeout=timeout, cwd=cwd, key=key)
        return json.loads(out)

    def eval_together(self, exprs: Iterable[str], *, timeout: float | None = None) -> bool:
        """Evaluate several expressions in one nix process (one start, and each file they read is parsed once), and
        keep each value for the next :meth:`eval_expr` of exactly that expression (its text; no ``cwd``), which
        hands it out once instead of starting nix: for a caller whose expressions read files that do not change
        until it has asked for each (what nix prints is a function of the expression and the files it reads).

        False when that process fails (an error in any of them): nothing is kept, and each expression is evaluated
        on its own when asked for, failing or not as it does alone.  nix missing or unusable, and the time limit,
        are raised as :meth:`eval_expr` raises them (each alone would take as long, or longer)."""
        exprs = list(dict.fromkeys(exprs))  # the same text twice: one value
        if not exprs:
            return True
        try:
            values = self.eval_expr("[\n" + "\n".join(f"(\n{e}\n)" for e in exprs) + "\n]", timeout=timeout)
        except NixEvalError:
            return False
        with _CALLS_LOCK:
            self.kept.update(zip(exprs, values))
        return True

    def eval_file(self, path: str | Path, *, attr: str | None = None, timeout: float | None = None) -> Any:
        args = ["nix-instantiate", "--eval", "--strict", "--json", "--readonly-mode", str(path)]
        if attr:
            args += ["-A", attr]
        return json.loads(self.run(args, timeout=timeout))

    def eval_many(self, exprs: Mapping[str, str], *, timeout: float | None = None,
                  cwd: str | Path | None = None) -> dict[str, Any]:
        """Evaluate several expressions in one nix process.

        If the batch fails, each expression is evaluated on its own to find the
        culprit, and the NixEvalError raised carries its ``key``.
        """
        if not exprs:
            return {}
        body = " ".join(f"{nix_string(k)} = ({v});" for k, v in exprs.items())
        try:
            return self.eval_expr("{ " + body + " }", timeout=timeout, cwd=cwd)
        except NixEvalError as batch_error:
            for k, v in exprs.items():
                self.eval_expr(v, timeout=timeout, cwd=cwd, key=k)  # raises for the first bad one
            raise batch_error  # the batch failed but no single item did: report the batch

    def parse_files(self, paths: Iterable[str | Path], *, timeout: float | None = None) -> None:
        """Parse every file with one nix process; NixEvalError names the first file that fails."""
        paths = [str(p) for p in paths]
        if not paths:
            return
        try:
            self.run(["nix-instantiate", "--parse", *paths], timeout=timeout)
        except NixEvalError as e:
            # a file that is a symbolic link is named by nix where it leads (nix follows the link to parse it)
            bad = next((p for p in paths if any(n in e.message for n in _names_of(p))), None)
            if bad is None:
                raise
            raise NixEvalError(e.message, command=e.command, stderr=e.stderr, key=bad) from None

    def version(self) -> str:
        return self.run(["nix-instantiate", "--version"]).strip()

    # ------------------------------------------------------------ flakes

    def flake(self, args: Sequence[str], *, timeout: float | None = None, cwd: str | Path | None = None) -> str:
        """Run ``nix <args>`` with flakes enabled, e.g. ``["flake", "show", "--json", path]``."""
        return self.run(["nix", *args], timeout=timeout, cwd=cwd)

    def flake_eval(self, installable: str, *, apply: str | None = None, extra: Sequence[str] = (),
                   timeout: float | None = None) -> Any:
        args = ["eval", "--json", installable, *extra]
        if apply:
            args += ["--apply", apply]
        return json.loads(self.flake(args, timeout=timeout))
