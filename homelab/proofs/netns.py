"""Network namespaces and the firewall rig: real programs run what homelab generates.

Shared by ``homelab test`` (on any lab) and homelab's own tests.  Three parts:

* **Reading back**: a lab's merged NixOS option values, evaluated by real nix from
  the generated files (what ``python -m homelab show`` prints), never re-derived.
* **Network namespaces**: created with ``ip netns add``, wired with veth pairs,
  entered per *thread* with setns(2).  A socket belongs to the namespace its
  creating thread was in, so servers and clients for every namespace live in
  this one Python process: no helper processes to start or wait for.  Every
  namespace is deleted on exit, also when a proof fails.
* **A firewall rig** shared by the iptables and nftables proofs: one namespace
  stands for the host under test (its LAN interface named as in host.py, plus
  one veth per trusted interface), peer namespaces send real TCP and UDP from
  source addresses just inside and just outside every trusted range, and the
  expected verdict of each probe is computed from the *model* (not from the
  generated rules).

Every network wait is bounded (``PROBE_TIMEOUT`` ≤ 2 s) and all traffic stays in
namespaces the proof created.  A proof that does not hold raises :class:`ProofFailed`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import itertools
import os
import re
import selectors
import shutil
import socket
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from .. import render, verify
from ..compile import Compiled, compile_lab
from ..load import load_or_raise
from ..model import Host, Lab
from ..pynix_eval import Nix
from ..roles import DnsServer, IngressProxy, Tailscale
from ..validate import validate

PROBE_TIMEOUT = 1.0  # seconds a refused (dropped) probe waits; accepted ones answer in milliseconds
THREAD_SLACK = 1.0  # extra time a probe thread may take beyond its socket timeout
CLOSED_PORT = 8080  # a port nothing in the lab opens (checked against the model before use)


# ---------------------------------------------------------------- reading back through nix


@dataclass
class ReadBack:
    lab: Lab
    compiled: Compiled
    options: dict[str, dict[str, Any]]  # host -> merged option values, as nix evaluated them
    report: verify.Report | None = None  # what nix read (files, hand-written imports, processes)


class ProofFailed(AssertionError):
    """A real program did not do what the model says (or the proof's own wiring is wrong)."""


_READ_BACK: dict[str, ReadBack] = {}


def read_back(root: Path, nix: Nix, *, cache: bool = True) -> ReadBack:
    """A lab folder's generated files on disk, evaluated by nix and checked against its model.

    ``cache``: remember the answer for this folder (for tests that read one lab many times).
    """
    key = f"root:{Path(root).resolve()}"
    if key not in _READ_BACK or not cache:
        lab, _ = load_or_raise(root)
        compiled = compile_lab(lab)
        rep = verify.verify(Path(root), compiled, nix)
        if rep.problems:
            raise ProofFailed("the generated files on disk disagree with the model (run `homelab build`):\n"
                              + "\n".join(rep.problems))
        _READ_BACK[key] = ReadBack(lab, compiled, rep.options, rep)
    return _READ_BACK[key]


def read_back_lab(key: str, lab: Lab, nix: Nix, root: Path | None = None) -> ReadBack:
    """A lab built in code: rendered to a temporary tree, then evaluated by nix.

    ``root``: where its hand-written imports are (hosts/<h>/...), if it has any.
    """
    if key not in _READ_BACK:
        errors = [p for p in validate(lab) if p.severity == "error"]
        if errors:
            raise ProofFailed(f"lab {key!r} is invalid: {errors}")
        compiled = compile_lab(lab)
        texts = render.render_all(compiled)
        hand = sorted({r for h in compiled.hosts.values() for r in h.hand_written}) if root else []
        with verify.staged(texts, Path(root or "."), hand) as tmp:
            rep = verify.verify(Path(tmp), compiled, nix)
        if rep.problems:
            raise ProofFailed("\n".join(rep.problems))
        _READ_BACK[key] = ReadBack(lab, compiled, rep.options)
    return _READ_BACK[key]


def plain(value: Any) -> Any:
    """An option value that must not carry a module priority (mkForce/mkDefault) for these proofs."""
    if isinstance(value, dict) and value.get("_type") == "override":
        raise ProofFailed(f"unexpected priority: {value!r}")
    return value


# ---------------------------------------------------------------- processes


class CommandFailed(Exception):
    def __init__(self, cmd: list[str], proc: subprocess.CompletedProcess):
        self.cmd, self.proc = cmd, proc
        super().__init__(f"{' '.join(cmd)} exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()}")


def run(cmd: list[str], *, input: str | None = None, timeout: float = 15, env: dict | None = None,
        check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise CommandFailed(cmd, proc)
    return proc


# ---------------------------------------------------------------- namespaces

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_serial = itertools.count()


def netns_unavailable() -> str | None:
    """Why this machine cannot run namespace tests, or None when it can."""
    if os.geteuid() != 0:
        return "network namespace tests need root (ip netns add, iptables/nft in the namespace)"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    sweep_stale()
    name = f"hlprobe{os.getpid()}"
    try:
        run(["ip", "netns", "add", name], timeout=10)
    except (CommandFailed, OSError, subprocess.TimeoutExpired) as e:
        return f"`ip netns add` failed here: {e}"
    try:
        run(["ip", "-n", name, "link", "set", "lo", "up"], timeout=10)
    except (CommandFailed, OSError, subprocess.TimeoutExpired) as e:
        return f"cannot configure a network namespace here: {e}"
    finally:
        run(["ip", "netns", "del", name], check=False, timeout=10)
    return None


def sweep_stale() -> list[str]:
    """Delete namespaces left by earlier runs of these tests that were killed (their process is gone)."""
    listing = run(["ip", "netns", "list"], check=False).stdout
    removed = []
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.match(r"^hl(\d+)-\d+-", name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            if run(["ip", "netns", "del", name], check=False).returncode == 0:
                removed.append(name)
    return removed


def tool_unavailable(*cmd: str) -> str | None:
    """Why ``cmd`` (run inside a scratch namespace) does not work here, or None when it does."""
    if shutil.which(cmd[0]) is None:
        return f"{cmd[0]} is not installed"
    name = f"hltool{os.getpid()}{next(_serial)}"
    try:
        run(["ip", "netns", "add", name], timeout=10)
        try:
            run(["ip", "netns", "exec", name, *cmd], timeout=10)
        finally:
            run(["ip", "netns", "del", name], check=False, timeout=10)
    except (CommandFailed, OSError, subprocess.TimeoutExpired) as e:
        return f"`{' '.join(cmd)}` fails in a network namespace here: {e}"
    return None


class Netns:
    def __init__(self, name: str):
        self.name = name

    def ip(self, *args: str) -> subprocess.CompletedProcess:
        return run(["ip", "-n", self.name, *args])

    def exec(self, *cmd: str, **kw) -> subprocess.CompletedProcess:
        return run(["ip", "netns", "exec", self.name, *cmd], **kw)

    def enter(self) -> None:
        """Move the *calling thread* into this namespace (only call from a thread made for it)."""
        fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns into {self.name}: {os.strerror(err)}")
        finally:
            os.close(fd)

    def call(self, fn: Callable, *args, timeout: float = 5.0):
        """Run ``fn(*args)`` in a fresh thread inside this namespace and return its result."""
        return run_parallel([(self, fn, args)], timeout)[0]

    def __repr__(self) -> str:
        return f"Netns({self.name})"


def run_parallel(jobs: list[tuple[Netns, Callable, tuple]], timeout: float) -> list:
    """Run each job in its own thread inside its namespace, all at once; results in order."""
    results: list[dict] = [{} for _ in jobs]

    def worker(i: int, ns: Netns, fn: Callable, args: tuple) -> None:
        try:
            ns.enter()
            results[i]["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            results[i]["error"] = e

    threads = [threading.Thread(target=worker, args=(i, *job), daemon=True) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        if t.is_alive():
            raise TimeoutError(f"a namespace job did not finish within {timeout} s")
    out = []
    for r in results:
        if "error" in r:
            raise r["error"]
        out.append(r["value"])
    return out


class Namespaces(contextlib.AbstractContextManager):
    """Namespaces made for one test; closing deletes them all (and closes what was registered)."""

    def __init__(self, tag: str):
        self.tag = tag
        self.made: list[Netns] = []
        self._cleanups: list[Callable[[], None]] = []

    def new(self, role: str) -> Netns:
        ns = Netns(f"hl{os.getpid()}-{next(_serial)}-{role}"[:40])
        run(["ip", "netns", "add", ns.name])
        self.made.append(ns)
        ns.ip("link", "set", "lo", "up")
        return ns

    def on_close(self, fn: Callable[[], None]) -> None:
        self._cleanups.append(fn)

    def close(self) -> None:
        errors = []
        for fn in reversed(self._cleanups):
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - keep cleaning
                errors.append(e)
        self._cleanups.clear()
        for ns in reversed(self.made):
            p = run(["ip", "netns", "del", ns.name], check=False)
            if p.returncode != 0:
                errors.append(CommandFailed(["ip", "netns", "del", ns.name], p))
        self.made.clear()
        if errors:
            raise errors[0]

    def __exit__(self, *exc) -> None:
        self.close()


def veth(a: Netns, a_if: str, b: Netns, b_if: str) -> None:
    """A veth pair created directly inside the namespaces (never touches the host's namespace)."""
    run(["ip", "-n", a.name, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b.name])
    a.ip("link", "set", a_if, "up")
    b.ip("link", "set", b_if, "up")


# ---------------------------------------------------------------- tiny servers


class Servers:
    """TCP and UDP sockets answered by one selector thread: each reply names the port it came in on."""

    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self.sockets: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def add(self, sock: socket.socket, kind: str, port: int) -> None:
        sock.setblocking(False)
        self.sockets.append(sock)
        self.sel.register(sock, selectors.EVENT_READ, (kind, port))

    def start(self) -> None:
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop.is_set():
            for key, _ in self.sel.select(timeout=0.1):
                kind, port = key.data
                try:
                    if kind == "tcp":
                        conn, _ = key.fileobj.accept()
                        with conn:
                            conn.settimeout(PROBE_TIMEOUT)
                            conn.sendall(marker(port))
                    else:
                        _, peer = key.fileobj.recvfrom(2048)
                        key.fileobj.sendto(marker(port), peer)
                except OSError:
                    continue

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        for s in self.sockets:
            s.close()
        self.sel.close()


def marker(port: int) -> bytes:
    return f"homelab-test port {port}\n".encode()


def listen(kind: str, addr: str, port: int) -> socket.socket:
    """A bound socket (call inside the namespace that should own it)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    if kind == "tcp":
        s.listen(64)
    return s


def probe(kind: str, src: str, dst: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """True when ``dst:port`` answered with its marker, False on a timeout (a dropped packet).

    Anything else (refused, unreachable, wrong answer) is an error in the test's
    wiring, not a firewall verdict, and raises.
    """
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.bind((src, 0))
        if kind == "tcp":
            try:
                s.connect((dst, port))
            except TimeoutError:
                return False
            got = b""
            while not got.endswith(b"\n"):
                chunk = s.recv(256)
                if not chunk:
                    break
                got += chunk
        else:
            s.sendto(b"ping", (dst, port))
            try:
                got, _ = s.recvfrom(256)
            except TimeoutError:
                return False
        if got != marker(port):
            raise ProofFailed(f"{kind} {src} -> {dst}:{port} answered {got!r}, expected {marker(port)!r}")
        return True
    finally:
        s.close()


# ---------------------------------------------------------------- addresses


def edge_addresses(net: ipaddress.IPv4Network) -> tuple[list[str], list[str]]:
    """Sources just inside (first and last usable) and just outside (one below, one above) ``net``."""
    inside = {net.network_address + 1, net.broadcast_address - 1} if net.num_addresses > 2 else set(net)
    outside = set()
    if int(net.network_address) > 0:
        outside.add(net.network_address - 1)
    if int(net.broadcast_address) < 2**32 - 1:
        outside.add(net.broadcast_address + 1)
    return sorted(map(str, inside)), sorted(map(str, outside))


def _usable_source(a: ipaddress.IPv4Address) -> bool:
    return not (a.is_loopback or a.is_multicast or a.is_unspecified or a.is_reserved or a.is_link_local
                or int(a) >> 24 == 0 or a == ipaddress.IPv4Address("255.255.255.255"))


# ---------------------------------------------------------------- the firewall rig


@dataclass(frozen=True)
class Probe:
    via: str  # which peer sends it ("lan", a trusted interface, "self" for loopback, "out" for a reply)
    kind: str  # tcp | udp
    src: str
    dst: str
    port: int
    expect: bool  # accepted?
    why: str

    def __str__(self) -> str:
        verdict = "accept" if self.expect else "refuse"
        return f"{self.kind} {self.src} -> {self.dst}:{self.port} via {self.via}: expect {verdict} ({self.why})"


@dataclass
class Expectations:
    """What the model says the host's firewall must do (independent of the generated rules)."""

    trusted_ranges: list[tuple[str, ipaddress.IPv4Network]]
    trusted_interfaces: list[str]
    tcp: set[int]
    udp: set[int]

    @classmethod
    def of(cls, lab: Lab, host: Host) -> "Expectations":
        c = lab.cluster
        ranges = [("pod CIDR", c.pod_cidr), ("service CIDR", c.service_cidr), ("LAN", c.lan)]
        ranges += [(f"extra trusted {n}", n) for n in c.extra_trusted]
        ifaces = ["lo"]  # nixos/modules/services/networking/firewall.nix always trusts lo
        tcp: set[int] = set()
        udp: set[int] = set()
        for role in host.roles:
            if isinstance(role, Tailscale):
                ifaces.append(role.interface)
            elif isinstance(role, IngressProxy) and role.open_firewall:
                tcp |= {role.http_port, role.https_port}
            elif isinstance(role, DnsServer) and role.open_firewall:
                tcp.add(role.port)
                udp.add(role.port)
        return cls(ranges, ifaces, tcp, udp)

    def trusted(self, src: str) -> str | None:
        a = ipaddress.IPv4Address(src)
        for label, net in self.trusted_ranges:
            if a in net:
                return f"inside the {label} {net}"
        return None


@dataclass
class FirewallRig:
    """The host under test in namespace ``fw``, with peers; see the module docstring."""

    lab: Lab
    host: Host
    ns: Namespaces
    expect: Expectations
    fw: Netns = None  # type: ignore[assignment]
    peers: dict[str, Netns] = field(default_factory=dict)
    probes: list[Probe] = field(default_factory=list)
    reply_probe: Probe | None = None

    def build(self) -> "FirewallRig":
        lab, host, ex = self.lab, self.host, self.expect
        cluster = lab.cluster
        closed = [p for p in (CLOSED_PORT, CLOSED_PORT + 1) if p not in ex.tcp | ex.udp][0]
        tcp_ports = sorted(ex.tcp) + [closed]
        udp_ports = sorted(ex.udp) + [closed]
        self.fw = fw = self.ns.new("fw")

        # the LAN: host.interface in fw, eth0 in the peer; the peer owns every LAN-side test source
        lan = self.peers["lan"] = self.ns.new("lan")
        veth(fw, host.interface, lan, "eth0")
        prefix = cluster.lan.prefixlen
        fw.ip("addr", "add", f"{host.ip}/{prefix}", "dev", host.interface)
        taken = {h.ip for h in lab.hosts} | {cluster.gateway}
        peer_base = next(a for a in reversed(list(cluster.lan.hosts())) if a not in taken)
        lan.ip("addr", "add", f"{peer_base}/{prefix}", "dev", "eth0")

        sources: list[str] = []
        for label, net in ex.trusted_ranges:
            inside, outside = edge_addresses(net)
            outside = [a for a in outside if not ex.trusted(a) and _usable_source(ipaddress.IPv4Address(a))]
            if not outside:
                raise ProofFailed(f"no usable source address just outside the {label} {net}")
            sources += [a for a in inside if a != str(host.ip)] + outside
        sources = list(dict.fromkeys(sources))
        for src in sources:
            a = ipaddress.IPv4Address(src)
            if a != peer_base:
                lan.ip("addr", "add", f"{src}/32", "dev", "eth0")
            if a not in cluster.lan:
                # a route back, so the reverse-path filter passes and only the firewall decides
                fw.ip("route", "add", f"{src}/32", "dev", host.interface)
        for src in sources:
            why = ex.trusted(src)
            for kind, ports, allowed in (("tcp", tcp_ports, ex.tcp), ("udp", udp_ports, ex.udp)):
                for port in ports:
                    if why:
                        self.probes.append(Probe("lan", kind, src, str(host.ip), port, True, why))
                    elif port in allowed:
                        self.probes.append(Probe("lan", kind, src, str(host.ip), port, True,
                                                 f"{kind} port {port} is open; source outside every trusted range"))
                    else:
                        self.probes.append(Probe("lan", kind, src, str(host.ip), port, False,
                                                 f"outside every trusted range, {kind} port {port} closed"))

        # each trusted interface but lo: a veth of that name; its peer uses a source no range trusts
        others = [h.tailscale_address for h in lab.hosts if h.tailscale_address and h is not host]
        for n, iface in enumerate(i for i in ex.trusted_interfaces if i != "lo"):
            peer = self.peers[iface] = self.ns.new(f"t{n}")
            veth(fw, iface, peer, "eth0")
            mine = str(host.tailscale_address or f"198.51.100.{2 * n + 1}")
            theirs = str(others[0] if others else f"198.51.100.{2 * n + 2}")
            if ex.trusted(theirs):
                raise ProofFailed(f"{theirs} is inside a trusted range; pick another test address")
            fw.ip("addr", "add", f"{mine}/32", "dev", iface)
            fw.ip("route", "add", f"{theirs}/32", "dev", iface)
            peer.ip("addr", "add", f"{theirs}/32", "dev", "eth0")
            peer.ip("route", "add", f"{mine}/32", "dev", "eth0")
            for kind in ("tcp", "udp"):
                self.probes.append(Probe(iface, kind, theirs, mine, closed, True,
                                         f"arrives on trusted interface {iface}; port {closed} closed"))

        # loopback is always trusted
        for kind in ("tcp", "udp"):
            self.probes.append(Probe("self", kind, "127.0.0.1", "127.0.0.1", closed, True,
                                     "loopback (lo) is always trusted"))

        # servers on every probed port in fw
        servers = Servers()
        for kind, ports in (("tcp", tcp_ports), ("udp", udp_ports)):
            for port in ports:
                servers.add(fw.call(listen, kind, "0.0.0.0", port), kind, port)

        # the reply to a connection the host opened itself: from outside every range, on a closed port
        far = next(p.src for p in self.probes if p.via == "lan" and not p.expect)
        servers.add(lan.call(listen, "tcp", far, closed), "tcp", closed)
        self.reply_probe = Probe("out", "tcp", str(host.ip), far, closed, True,
                                 "reply to a connection the host opened (established/related)")
        servers.start()
        self.ns.on_close(servers.close)
        return self

    def _where(self, p: Probe) -> Netns:
        return {"self": self.fw, "out": self.fw}.get(p.via) or self.peers[p.via]

    def run(self) -> dict[Probe, bool]:
        """Send every probe at once; the verdict of each."""
        probes = self.probes + [self.reply_probe]
        got = run_parallel([(self._where(p), probe, (p.kind, p.src, p.dst, p.port)) for p in probes],
                           PROBE_TIMEOUT + THREAD_SLACK)
        return dict(zip(probes, got))

    def check_wiring(self) -> None:
        """Before any rule is loaded, every probe must get through: a later timeout is the firewall's doing."""
        blocked = [str(p) for p, ok in self.run().items() if not ok]
        if blocked:
            raise ProofFailed("the proof's own wiring drops these (no firewall loaded yet):\n" + "\n".join(blocked))

    def check_verdicts(self) -> int:
        results = self.run()
        wrong = [f"{p} -> got {'accept' if ok else 'refuse'}" for p, ok in results.items() if ok != p.expect]
        if wrong:
            raise ProofFailed(f"{self.host.hostname}: {len(wrong)} of {len(results)} probes wrong:\n"
                              + "\n".join(wrong))
        if not any(not p.expect for p in results) or not any(p.expect and p.via == "lan" for p in results):
            raise ProofFailed("the probes expect only refusals or only acceptances: they prove nothing")
        return len(results)


def temp_bin(links: dict[str, str]) -> tempfile.TemporaryDirectory:
    """A directory of symlinks (name -> target program) to put first on PATH."""
    d = tempfile.TemporaryDirectory(prefix="homelab-bin-")
    for name, target in links.items():
        os.symlink(target, Path(d.name) / name)
    return d


def iter_lines(text: str) -> Iterable[str]:
    return (ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#"))
