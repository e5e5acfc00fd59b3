"""The ingress host's generated ``services.nginx.streamConfig``, run by a real nginx on loopback.

What is run: the ``streamConfig`` text as nix evaluated it from the generated
files, inside a minimal nginx.conf shaped like the one NixOS writes
(``nixos/modules/services/web-servers/nginx/default.nix``: ``pid``,
``error_log``, ``events {}``, an ``http {}`` block, then ``stream { <streamConfig> }``
at top level).  Differences, all forced by running unprivileged-port, in a
temporary directory, on Debian:

* Debian builds the stream module as a dynamic module (``--with-stream=dynamic``
  in ``nginx -V``), so the conf starts with ``load_module``; NixOS links it in.
* ``pid``, ``error_log``, the http temp paths and the access log point into the
  test's temporary directory; ``daemon off;`` is given with ``-g`` (NixOS writes
  it into the file).
* Ports are remapped by rewriting the config text, and only these two kinds of
  line may change (anything else in the text is left byte-for-byte):
  ``listen <port>;`` becomes ``listen 127.0.0.1:<free port>;`` and
  ``server 127.0.0.1:<NodePort>;`` becomes ``server 127.0.0.1:<backend port>;``.
  The ports found must be exactly the model's listen ports and NodePorts.

Small Python TCP servers stand in for Traefik's NodePorts: each greets with a
line naming its NodePort, then echoes.  The proof requires that ``nginx -t`` passes,
and that bytes flow both ways through each stream path and land on the right
NodePort.  Every wait is bounded; nginx is stopped and the sockets closed even
when the proof fails (:class:`~homelab.proofs.netns.ProofFailed`).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from ...errors import ProofFailed

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
IO_TIMEOUT = 2.0
START_DEADLINE = 5.0  # nginx answering on its ports after start (it takes milliseconds)

LISTEN = re.compile(r"^(?P<indent>[ \t]*)listen[ \t]+(?P<v6>\[::\]:)?(?P<port>\d+)[ \t]*;[ \t]*$", re.M)
UPSTREAM_SERVER = re.compile(r"^(?P<indent>[ \t]*)server[ \t]+127\.0\.0\.1:(?P<port>\d+)[ \t]*;[ \t]*$", re.M)


def nginx_build() -> dict[str, str]:
    """``nginx -V`` configure flags: {'--modules-path': '/usr/lib/nginx/modules', '--with-stream': 'dynamic', ...}."""
    out = subprocess.run([NGINX, "-V"], capture_output=True, text=True, timeout=10).stderr
    flags: dict[str, str] = {}
    for tok in out.split():
        if tok.startswith("--"):
            k, _, v = tok.partition("=")
            flags[k] = v
    return flags


def remap(stream: str, listen: dict[int, int], upstream: dict[int, int]) -> str:
    """Rewrite listen ports and upstream NodePorts (see the module docstring); fail on anything unexpected."""
    seen_listen: list[int] = []
    seen_v6: list[int] = []
    seen_up: list[int] = []

    def on_listen(m: re.Match) -> str:
        if m["v6"]:  # `listen [::]:80;` -> the same free port on IPv6 loopback
            seen_v6.append(int(m["port"]))
            return f"{m['indent']}listen [::1]:{listen[int(m['port'])]};"
        seen_listen.append(int(m["port"]))
        return f"{m['indent']}listen 127.0.0.1:{listen[int(m['port'])]};"

    def on_up(m: re.Match) -> str:
        seen_up.append(int(m["port"]))
        return f"{m['indent']}server 127.0.0.1:{upstream[int(m['port'])]};"

    out = UPSTREAM_SERVER.sub(on_up, LISTEN.sub(on_listen, stream))
    if sorted(seen_listen) != sorted(listen):
        raise ProofFailed(f"listen ports {seen_listen}, model says {sorted(listen)}")
    if seen_v6 and sorted(seen_v6) != sorted(listen):
        raise ProofFailed(f"IPv6 listen ports {seen_v6}, model says {sorted(listen)} (each on IPv4 and IPv6)")
    if sorted(seen_up) != sorted(upstream):
        raise ProofFailed(f"upstream ports {seen_up}, model says {sorted(upstream)}")
    before, after = stream.splitlines(), out.splitlines()
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    if len(before) != len(after) or len(changed) != len(seen_listen) + len(seen_v6) + len(upstream):
        raise ProofFailed(f"remapping changed more than the listen and upstream lines: {changed}")
    if re.search(r"^\s*listen\s+(?!127\.0\.0\.1:|\[::1\]:)", out, re.M):
        raise ProofFailed("a listen line was not remapped")
    return out


def nginx_conf(stream: str, tmp: Path, flags: dict[str, str]) -> str:
    lines = []
    if flags.get("--with-stream") == "dynamic":
        lines.append(f"load_module {flags.get('--modules-path', '/usr/lib/nginx/modules')}/ngx_stream_module.so;")
    lines += [f"pid {tmp}/nginx.pid;", f"error_log {tmp}/error.log info;", "worker_processes 1;", "",
              "events {", "}", "", "http {", f"  access_log {tmp}/access.log;"]
    temp_directives = {
        "--http-client-body-temp-path": "client_body_temp_path",
        "--http-proxy-temp-path": "proxy_temp_path",
        "--http-fastcgi-temp-path": "fastcgi_temp_path",
        "--http-uwsgi-temp-path": "uwsgi_temp_path",
        "--http-scgi-temp-path": "scgi_temp_path",
    }
    for flag, directive in temp_directives.items():
        if flag in flags:  # compiled in with a system path: point it into tmp
            lines.append(f"  {directive} {tmp}/{directive.removesuffix('_temp_path')};")
    lines += ["}", "", "stream {"]
    lines += [f"  {ln}" if ln.strip() else "" for ln in stream.splitlines()]
    lines += ["}", ""]
    return "\n".join(lines)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Backend:
    """Stands in for one Traefik NodePort: greets with a line naming the NodePort, then echoes to EOF."""

    def __init__(self, nodeport: int):
        self.nodeport = nodeport
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def greeting(self) -> bytes:
        return f"traefik NodePort {self.nodeport}\n".encode()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(IO_TIMEOUT)
            try:
                conn.sendall(self.greeting())
                while chunk := conn.recv(65536):
                    conn.sendall(chunk)
            except OSError:
                pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(1)
        self.sock.close()


def exchange(port: int, payload: bytes) -> tuple[bytes, bytes]:
    """Connect through nginx, read the greeting line, send ``payload`` and read back as many bytes.

    No half-close: nginx's stream proxy ends the whole session when the client
    shuts down its sending side (``proxy_half_close`` is off by default).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as s:
        greeting = b""
        while not greeting.endswith(b"\n"):
            chunk = s.recv(1)
            if not chunk:
                break
            greeting += chunk
        sender = threading.Thread(target=s.sendall, args=(payload,), daemon=True)
        sender.start()
        echo = bytearray()
        while len(echo) < len(payload):
            chunk = s.recv(65536)
            if not chunk:
                break
            echo += chunk
        sender.join(IO_TIMEOUT)
        return greeting, bytes(echo)


def nginx_unavailable() -> str | None:
    """Why the proof cannot run here (no nginx, or one without the stream module), or None."""
    if not os.path.exists(NGINX):
        return "nginx is not installed (Debian: apt-get install nginx-light libnginx-mod-stream)"
    if "--with-stream" not in nginx_build():
        return "this nginx has no stream module (Debian: apt-get install libnginx-mod-stream)"
    return None


def _wait_listening(proc: subprocess.Popen, pending: set[int], workdir: Path) -> None:
    """Until nginx answers on every port (ProofFailed when it exits or takes longer than START_DEADLINE)."""
    deadline = time.monotonic() + START_DEADLINE
    while pending:
        if proc.poll() is not None:
            raise ProofFailed(f"nginx exited: {(workdir / 'error.log').read_text()}")
        if time.monotonic() >= deadline:
            raise ProofFailed(f"nginx did not listen on {pending} within {START_DEADLINE} s")
        for port in list(pending):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                pending.discard(port)
            except OSError:
                time.sleep(0.05)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()  # SIGTERM: nginx's fast shutdown, workers included
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the process group this proof started
            proc.wait(5)
    proc.stdout.close()
    proc.stderr.close()


def prove_stream(stream: str, routes: dict[int, int], workdir: Path) -> str:
    """Run ``stream`` (a streamConfig) in nginx; each listen port in ``routes`` must reach its NodePort.

    A summary, or ProofFailed.
    """
    flags = nginx_build()
    workdir = Path(workdir)
    backends = {nodeport: Backend(nodeport) for nodeport in routes.values()}
    proc = None
    try:
        listen = {port: free_port() for port in routes}
        conf_text = nginx_conf(remap(stream, listen, {n: b.port for n, b in backends.items()}), workdir, flags)
        conf = workdir / "nginx.conf"
        conf.write_text(conf_text)
        base = [NGINX, "-p", f"{workdir}/", "-e", str(workdir / "error.log"), "-c", str(conf)]

        t = subprocess.run([*base, "-t"], capture_output=True, text=True, timeout=10)
        if t.returncode != 0 or "syntax is ok" not in t.stderr or "test is successful" not in t.stderr:
            raise ProofFailed(f"nginx -t failed:\n{t.stderr}\n--- nginx.conf ---\n{conf_text}")

        proc = subprocess.Popen([*base, "-g", "daemon off;"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        _wait_listening(proc, set(listen.values()), workdir)
        for port, nodeport in routes.items():
            payload = f"through listen {port} ".encode() + os.urandom(256 * 1024)
            greeting, echo = exchange(listen[port], payload)
            if greeting != backends[nodeport].greeting():
                raise ProofFailed(f"listen {port} reached {greeting!r}; the model routes it to NodePort {nodeport}")
            if echo != payload:
                raise ProofFailed(f"listen {port}: {len(echo)} of {len(payload)} bytes came back intact")
        errors = [ln for ln in (workdir / "error.log").read_text().splitlines()
                  if re.search(r"\[(emerg|alert|crit|error)\]", ln)]
        if errors:
            raise ProofFailed("nginx logged errors:\n" + "\n".join(errors))
    finally:
        if proc is not None:
            _stop(proc)
        for b in backends.values():
            b.close()
    paths = ", ".join(f"{port} -> NodePort {nodeport}" for port, nodeport in routes.items())
    return f"nginx -t passes; bytes make the round trip on {paths}"
