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
  one veth per other interface a flow names: tailscale0, the pods' bridge and
  VXLAN device), peer namespaces send real TCP and UDP from source addresses
  just inside and just outside every source of the flow table, and the
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

from .. import readback, render
from ..errors import ProofFailed
from ..compile import Compiled, compile_lab
from ..load import load_or_raise
from ..model import Host, Lab
from ..pynix_eval import Nix
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
    report: readback.Report | None = None  # what nix read (files, hand-written imports, processes)


_READ_BACK: dict[str, ReadBack] = {}


def read_back(root: Path, nix: Nix, *, cache: bool = True) -> ReadBack:
    """A lab folder's generated files on disk, evaluated by nix and checked against its model.

    ``cache``: remember the answer for this folder (for tests that read one lab many times).
    """
    key = f"root:{Path(root).resolve()}"
    if key not in _READ_BACK or not cache:
        lab, _ = load_or_raise(root)
        compiled = compile_lab(lab)
        rep = readback.read_back(Path(root), compiled, nix)
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
        with readback.staged(texts, Path(root or "."), hand) as tmp:
            rep = readback.read_back(Path(tmp), compiled, nix)
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


def _family(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def listen(kind: str, addr: str, port: int) -> socket.socket:
    """A bound socket (call inside the namespace that should own it); '::' listens on IPv6 only."""
    s = socket.socket(_family(addr), socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if _family(addr) == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((addr, port))
    if kind == "tcp":
        s.listen(64)
    return s


def probe(kind: str, src: str, dst: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """True when ``dst:port`` answered with its marker, False on a timeout (a dropped packet).

    Anything else (refused, unreachable, wrong answer) is an error in the test's
    wiring, not a firewall verdict, and raises.
    """
    s = socket.socket(_family(dst), socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
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


# ---------------------------------------------------------------- the firewall rig

TEST_V6_PREFIX = "2001:db8:10::"  # documentation range: the host's and the LAN client's IPv6 addresses
OUTSIDE = "203.0.113.7"  # an internet address, arriving from the router on the LAN interface
TAILNET_V6_PEER = "fd7a:115c:a1e0::7"
POD_INTERFACES = ("mynet", "flannel.1")  # nixpkgs' CNI bridge; flannel's VXLAN device


@dataclass(frozen=True)
class Client:
    """Somebody who sends probes to the host under test: where from (peer and interface), which address,
    and which kinds of flow source the test itself counts them as (not homelab.firewall's reading)."""

    name: str
    via: str  # the interface on the host the packets arrive on
    src: str
    kinds: frozenset  # e.g. {"lan", "admins", "host:tokiwa", "nodes"}; every client is also "world"


@dataclass(frozen=True)
class Probe:
    client: str
    via: str
    kind: str  # tcp | udp
    src: str
    dst: str
    port: int
    expect: bool  # accepted?
    why: str

    def __str__(self) -> str:
        verdict = "accept" if self.expect else "refuse"
        return f"{self.client}: {self.kind} {self.src} -> {self.dst}:{self.port} via {self.via}: expect {verdict} ({self.why})"


def clients(lab: Lab, host: Host) -> list[Client]:
    """Every kind of client the flow table distinguishes, plus spoofed sources on the wrong interface."""
    from ..firewall import lan_client_address, tailnet_interface

    c = lab.cluster
    admins = {str(a) for a in c.admins}

    def adm(*kinds: str) -> set[str]:
        return {"admins"} if admins & set(kinds) else set()

    out = [Client("LAN client", host.interface, lan_client_address(lab), frozenset({"lan", *adm("lan")}))]
    for other in lab.hosts:
        if other is host:
            continue
        kinds = {"lan", f"host:{other.hostname}", *adm("lan", f"host:{other.hostname}")}
        if other.is_kubernetes_node:
            kinds.add("nodes")
        if other.is_control_plane:
            kinds.add("control-plane")
        out.append(Client(f"node {other.hostname}", host.interface, str(other.ip), frozenset(kinds)))
    out.append(Client("outside (internet via the router)", host.interface, OUTSIDE, frozenset()))
    pod = str(c.pod_cidr.network_address + 2 * 256 + 5)
    out.append(Client("pod address on the LAN (spoofed)", host.interface, str(c.pod_cidr.network_address + 3 * 256 + 5),
                      frozenset()))
    out.append(Client("service address on the LAN", host.interface, str(c.service_cidr.network_address + 9),
                      frozenset()))
    out.append(Client("tailnet address on the LAN (spoofed)", host.interface, "100.64.99.9", frozenset()))
    out.append(Client("IPv6 client on the LAN", host.interface, TEST_V6_PREFIX + "7", frozenset()))
    if host.is_kubernetes_node:
        out.append(Client("pod on this node", "mynet", str(c.pod_cidr.network_address + 5), frozenset({"pods"})))
        out.append(Client("pod on another node (VXLAN)", "flannel.1", pod, frozenset({"pods"})))
    ts = tailnet_interface(lab, host)
    if ts:
        peer = next((str(h.tailscale_address) for h in lab.hosts if h.tailscale_address and h is not host),
                    "100.64.0.77")
        out.append(Client("tailnet device", ts, peer, frozenset({"tailnet", *adm("tailnet")})))
        out.append(Client("tailnet device (IPv6)", ts, TAILNET_V6_PEER, frozenset({"tailnet", *adm("tailnet")})))
        out.append(Client("stranger on the tailnet interface", ts, "198.51.100.9", frozenset()))
    return out


def counts_as(client: Client, source) -> bool:
    """Whether the test counts ``client`` as a flow source (kind, host:<name> or an explicit network)."""
    if source.kind == "world":
        return True
    if source.kind == "network":
        return ipaddress.ip_address(client.src) in ipaddress.ip_network(source.network)
    return str(source) in client.kinds


@dataclass
class FirewallRig:
    """The host under test in namespace ``fw``, with a peer namespace per incoming interface.

    The probes' verdicts come from the lab's flow table *rows* (port, protocol, source) and the test's own
    reading of who counts as which source (:func:`clients`), not from the generated rules.
    """

    lab: Lab
    host: Host
    ns: Namespaces
    fw: Netns = None  # type: ignore[assignment]
    peers: dict[str, Netns] = field(default_factory=dict)
    probes: list[Probe] = field(default_factory=list)
    reply_probe: Probe | None = None
    v6: str = TEST_V6_PREFIX + "1"
    clients: list[Client] = field(default_factory=list)

    def build(self) -> "FirewallRig":
        from ..firewall import flow_table

        lab, host = self.lab, self.host
        cluster = lab.cluster
        from .invariants import ports_of_interest

        rows = [r for r in flow_table(lab) if r.host == host.hostname]
        # the flow table's ports, and those the invariants speak of (etcd, the kubelet...) opened or not
        ports = sorted({r.port for r in rows} | ports_of_interest(lab, host))
        closed = next(p for p in range(CLOSED_PORT, CLOSED_PORT + 100) if p not in ports)
        probed = ports + [closed]
        self.clients = everyone = clients(lab, host)
        self.fw = fw = self.ns.new("fw")

        # one peer namespace per interface the host receives on, named like the host's interface
        prefix = cluster.lan.prefixlen
        v6_dst: dict[str, str] = {}
        for n, iface in enumerate(dict.fromkeys(c.via for c in everyone)):
            peer = self.peers[iface] = self.ns.new(f"p{n}")
            veth(fw, iface, peer, "eth0")
            # IPv6 neighbour discovery answers only for an interface's own addresses: one per link
            v6_dst[iface] = self.v6 if iface == host.interface else f"{TAILNET_V6_PEER.rsplit(':', 1)[0]}:{n + 1}"
            if iface != host.interface:
                fw.ip("addr", "add", f"{v6_dst[iface]}/128", "dev", iface, "nodad")
            # the host's addresses, as the peer reaches them over this link
            peer.ip("route", "add", f"{host.ip}/32", "dev", "eth0")
            peer.ip("-6", "route", "add", f"{v6_dst[iface]}/128", "dev", "eth0")
        fw.ip("addr", "add", f"{host.ip}/{prefix}", "dev", host.interface)
        fw.ip("addr", "add", f"{self.v6}/64", "dev", host.interface, "nodad")
        for c in everyone:
            self._client(c, v6_dst, rows, probed)

        # loopback is always trusted (NixOS's firewall.nix adds lo)
        for kind in ("tcp", "udp"):
            self.probes.append(Probe("the host itself", "lo", kind, "127.0.0.1", "127.0.0.1", closed, True,
                                     "loopback (lo) is always trusted"))

        servers = Servers()
        for kind in ("tcp", "udp"):
            for port in probed:
                servers.add(fw.call(listen, kind, "0.0.0.0", port), kind, port)
                servers.add(fw.call(listen, kind, "::", port), kind, port)

        # the reply to a connection the host opened itself: to the internet, on a closed port
        lan = self.peers[host.interface]
        servers.add(lan.call(listen, "tcp", OUTSIDE, closed), "tcp", closed)
        self.reply_probe = Probe("the host itself", "out", "tcp", str(host.ip), OUTSIDE, closed, True,
                                 "reply to a connection the host opened (established/related)")
        servers.start()
        self.ns.on_close(servers.close)
        return self

    def _client(self, c: Client, v6_dst: dict[str, str], rows: list, probed: list[int]) -> None:
        """One client: its address in its peer namespace, the route back, and its probes with their verdicts."""
        host, fw = self.host, self.fw
        v6 = ":" in c.src
        plen = 128 if v6 else 32
        self.peers[c.via].ip("addr", "add", f"{c.src}/{plen}", "dev", "eth0", *(["nodad"] if v6 else []))
        on_link = c.via == host.interface and ipaddress.ip_address(c.src) in (
            ipaddress.ip_network(TEST_V6_PREFIX + "/64") if v6 else self.lab.cluster.lan)
        if not on_link:
            # a route back the way it came, so the reverse-path filter passes and only the firewall decides
            fw.ip(*(["-6"] if v6 else []), "route", "add", f"{c.src}/{plen}", "dev", c.via)
        dst = v6_dst[c.via] if v6 else str(host.ip)
        for kind in ("tcp", "udp"):
            for port in probed:
                flow = next((r for r in rows if r.port == port and r.proto == kind and counts_as(c, r.source)), None)
                why = (f"{r_why(flow)}" if flow else f"no row lets {c.name} reach {port}/{kind}")
                self.probes.append(Probe(c.name, c.via, kind, c.src, dst, port, flow is not None, why))

    def _where(self, p: Probe) -> Netns:
        return self.fw if p.via in ("lo", "out") else self.peers[p.via]

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

    def check_verdicts(self) -> dict[Probe, bool]:
        """Every probe's verdict must be the one the flow table gives; ProofFailed lists the wrong ones."""
        results = self.run()
        wrong = [f"{p} -> got {'accept' if ok else 'refuse'}" for p, ok in results.items() if ok != p.expect]
        if wrong:
            raise ProofFailed(f"{self.host.hostname}: {len(wrong)} of {len(results)} probes wrong:\n"
                              + "\n".join(wrong))
        if not any(not p.expect for p in results) or not any(p.expect and p.via == self.host.interface
                                                             for p in results):
            raise ProofFailed("the probes expect only refusals or only acceptances: they prove nothing")
        self.check_invariants(results)
        return results

    def check_invariants(self, results: dict[Probe, bool]) -> None:
        """What any homelab firewall must do whatever its flow table says (:mod:`.invariants`)."""
        from .invariants import violations

        broken = violations(self.lab, self.host, self.clients, results)
        if broken:
            raise ProofFailed(f"{self.host.hostname}: {len(broken)} probes break the firewall's invariants:\n"
                              + "\n".join(broken))


def r_why(row) -> str:
    return f"{row.port}/{row.proto} from {row.source}: {row.why} ({row.by})"


def temp_bin(links: dict[str, str]) -> tempfile.TemporaryDirectory:
    """A directory of symlinks (name -> target program) to put first on PATH."""
    d = tempfile.TemporaryDirectory(prefix="homelab-bin-")
    for name, target in links.items():
        os.symlink(target, Path(d.name) / name)
    return d


def iter_lines(text: str) -> Iterable[str]:
    return (ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#"))
