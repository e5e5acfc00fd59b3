"""Before the live checks: does each host answer SSH at all?  And, while they run, which host is being checked.

``homelab verify`` once ran the whole suite against a host that did not answer: every check waited for its
own SSH connection to time out, nothing was printed for minutes, and the report listed the failed checks
without saying that SSH never connected.  Now one bounded probe per host comes first
(``ssh -o BatchMode=yes -o ConnectTimeout=N <target> true``, all hosts at once); a host that does not answer
is reported as ``cannot reach tokiwa (192.168.10.11) over SSH: timed out after 10 s`` and left out of the
run, and the others are checked.  While the suite runs, ``homelab.liveprogress`` (a pytest plugin) writes
each host's start and finish to a pipe read here.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import subprocess
import threading
from typing import Callable, Sequence

from . import remote
from .model import Host
from .remote import SshOptions, ssh_argv

_CONNECT = re.compile(r"^ssh: connect to host \S+ port \d+: ")


def probe_argv(host: Host, opts: SshOptions) -> list[str]:
    return ssh_argv(host, ["true"], opts)


def address(host: Host) -> str:
    addr = host.ssh.host or host.ip
    return addr if host.ssh.port == 22 else f"{addr} port {host.ssh.port}"


def why_unreachable(host: Host, opts: SshOptions) -> str | None:
    """Why ``host`` does not answer SSH (ssh's own reason), or None when it does."""
    limit = opts.connect_timeout + 10  # the connection, then the key exchange and `true`
    r = remote.run(probe_argv(host, opts), timeout=limit)
    if r.returncode == 124:
        return f"no answer within {limit} s"
    if r.returncode != 255:  # ssh itself succeeded; `true` ran (or the remote shell said why it did not)
        return None
    lines = [ln.strip() for ln in r.stderr.splitlines() if ln.strip()]
    reason = _CONNECT.sub("", lines[-1]) if lines else "ssh exited 255 without a message"
    if reason in ("Connection timed out", "Operation timed out") or reason.endswith("timed out"):
        return f"timed out after {opts.connect_timeout} s"
    return reason.removeprefix("ssh: ")


def unreachable(hosts: Sequence[Host], opts: SshOptions) -> dict[str, str]:
    """The hosts that do not answer SSH, with why: one probe each, all at once."""
    if not hosts:
        return {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(hosts))) as pool:
        why = dict(zip((h.hostname for h in hosts), pool.map(lambda h: why_unreachable(h, opts), hosts)))
    return {name: reason for name, reason in why.items() if reason is not None}


def run_with_progress(argv: Sequence[str], *, timeout: float, env: dict[str, str] | None, cwd: str | None,
                      on_event: Callable[[dict], None]) -> subprocess.CompletedProcess:
    """``remote.run`` for the suite, with ``homelab.liveprogress``'s events passed to ``on_event`` as they come."""
    from .liveprogress import FD_VARIABLE

    r_fd, w_fd = os.pipe()
    child_env = dict(os.environ if env is None else env)
    child_env[FD_VARIABLE] = str(w_fd)

    def read() -> None:
        with os.fdopen(r_fd, "r", errors="replace") as events:
            for line in events:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                on_event(event)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, errors="replace", env=child_env, cwd=cwd,
                                pass_fds=(w_fd,))
    except FileNotFoundError:
        os.close(w_fd)
        reader.join()
        raise remote.MissingTool(argv[0]) from None
    os.close(w_fd)  # the suite holds the only writing end: the reader ends when the suite does
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        reader.join(5)
        return subprocess.CompletedProcess(list(argv), 124, out, (err or "") + f"\ntimed out after {timeout:.0f} s")
    reader.join(5)
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


__all__ = ["probe_argv", "why_unreachable", "unreachable", "run_with_progress", "address"]
