"""The ingress host's generated ``services.nginx.streamConfig``, run by Debian's real nginx on loopback.

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
line naming its NodePort, then echoes.  The test asserts ``nginx -t`` passes,
and that bytes flow both ways through each stream path and land on the right
NodePort.  Every wait is bounded; nginx is stopped and the sockets closed even
when the test fails.
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

import attrs
import pytest

from homelab import IngressProxy
from tests import labkit
from tests.netns import plain, read_back_lab, read_back_seed

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
IO_TIMEOUT = 2.0
START_DEADLINE = 5.0  # nginx answering on its ports after start (it takes milliseconds)

LISTEN = re.compile(r"^(?P<indent>[ \t]*)listen[ \t]+(?P<port>\d+)[ \t]*;[ \t]*$", re.M)
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
    seen_up: list[int] = []

    def on_listen(m: re.Match) -> str:
        seen_listen.append(int(m["port"]))
        return f"{m['indent']}listen 127.0.0.1:{listen[int(m['port'])]};"

    def on_up(m: re.Match) -> str:
        seen_up.append(int(m["port"]))
        return f"{m['indent']}server 127.0.0.1:{upstream[int(m['port'])]};"

    out = UPSTREAM_SERVER.sub(on_up, LISTEN.sub(on_listen, stream))
    assert sorted(seen_listen) == sorted(listen), f"listen ports {seen_listen}, model says {sorted(listen)}"
    assert sorted(seen_up) == sorted(upstream), f"upstream ports {seen_up}, model says {sorted(upstream)}"
    before, after = stream.splitlines(), out.splitlines()
    assert len(before) == len(after)
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(changed) == len(listen) + len(upstream), changed
    assert not re.search(r"^\s*listen\s+(?!127\.0\.0\.1:)", out, re.M), "a listen line was not remapped"
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


@pytest.fixture(scope="module")
def nginx_ok():
    if not os.path.exists(NGINX):
        pytest.skip("nginx is not installed (apt-get install nginx)")
    flags = nginx_build()
    if "--with-stream" not in flags:
        pytest.skip("this nginx has no stream module (Debian: apt-get install libnginx-mod-stream)")
    return flags


def _ingress_variant():
    hosts = [attrs.evolve(h, roles=[IngressProxy(http_nodeport=30080, https_nodeport=32443, http_port=8080,
                                                 https_port=8443) if isinstance(r, IngressProxy) else r
                                    for r in h.roles])
             for h in labkit.seed_hosts()]
    return labkit.lab(hosts=hosts)


@pytest.mark.parametrize("which", ["seed", "other-ports"])
def test_nginx_streams_both_ports_to_the_right_nodeport(nix, nginx_ok, which, tmp_path):
    rb = read_back_seed(nix) if which == "seed" else read_back_lab("nginx-other-ports", _ingress_variant(), nix)
    (host,) = rb.lab.with_role(IngressProxy)
    role = host.role(IngressProxy)
    stream = plain(rb.options[host.hostname]["services.nginx.streamConfig"])
    assert plain(rb.options[host.hostname]["services.nginx.enable"]) is True
    routes = {role.http_port: role.http_nodeport, role.https_port: role.https_nodeport}

    backends = {nodeport: Backend(nodeport) for nodeport in routes.values()}
    proc = None
    try:
        listen = {port: free_port() for port in routes}
        conf_text = nginx_conf(remap(stream, listen, {n: b.port for n, b in backends.items()}), tmp_path, nginx_ok)
        conf = tmp_path / "nginx.conf"
        conf.write_text(conf_text)
        base = [NGINX, "-p", f"{tmp_path}/", "-e", str(tmp_path / "error.log"), "-c", str(conf)]

        t = subprocess.run([*base, "-t"], capture_output=True, text=True, timeout=10)
        assert t.returncode == 0, f"nginx -t failed:\n{t.stderr}\n--- nginx.conf ---\n{conf_text}"
        assert "syntax is ok" in t.stderr and "test is successful" in t.stderr

        proc = subprocess.Popen([*base, "-g", "daemon off;"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        deadline = time.monotonic() + START_DEADLINE
        pending = set(listen.values())
        while pending:
            assert proc.poll() is None, f"nginx exited: {(tmp_path / 'error.log').read_text()}"
            assert time.monotonic() < deadline, f"nginx did not listen on {pending} within {START_DEADLINE} s"
            for port in list(pending):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    pending.discard(port)
                except OSError:
                    time.sleep(0.05)
        for port, nodeport in routes.items():
            payload = f"through listen {port} ".encode() + os.urandom(256 * 1024)
            greeting, echo = exchange(listen[port], payload)
            assert greeting == backends[nodeport].greeting(), (
                f"listen {port} reached {greeting!r}; the model routes it to NodePort {nodeport}")
            assert echo == payload, f"listen {port}: {len(echo)} of {len(payload)} bytes came back intact"
        errors = [ln for ln in (tmp_path / "error.log").read_text().splitlines()
                  if re.search(r"\[(emerg|alert|crit|error)\]", ln)]
        assert not errors, errors
    finally:
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()  # SIGTERM: nginx's fast shutdown, workers included
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)  # the process group this test started
                    proc.wait(5)
            proc.stdout.close()
            proc.stderr.close()
        for b in backends.values():
            b.close()


def test_remap_refuses_a_config_whose_ports_differ_from_the_model():
    text = "upstream a {\n  server 127.0.0.1:31080;\n}\nserver {\n  listen 80;\n  proxy_pass a;\n}\n"
    assert "listen 127.0.0.1:5000;" in remap(text, {80: 5000}, {31080: 5001})
    with pytest.raises(AssertionError):
        remap(text, {80: 5000, 443: 5002}, {31080: 5001})
    with pytest.raises(AssertionError):
        remap(text.replace("listen 80;", "listen 0.0.0.0:80;"), {80: 5000}, {31080: 5001})
