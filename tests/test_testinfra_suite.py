"""The vm-tests suite itself, run against real targets this machine can offer, plus ``homelab vm``.

Two network namespaces stand in for two lab hosts, wired on the lab's LAN with the hosts'
own interface names and addresses:

* ``yomogi``: the NixOS firewall chains with the generated rules of its flow table, except the
  rules that let the nodes reach cfssl (left out on purpose); a DNS server on port 53 whose zone
  rule is deliberately too narrow (one label deep), standing in for CoreDNS;
* ``hanaakari``: Debian's nginx running the generated stream config, with a backend on the HTTP
  NodePort only (the HTTPS NodePort has none, on purpose).

Each namespace has its own /etc/hosts (``ip netns exec`` mounts ``/etc/netns/<name>/hosts`` over it), as
NixOS writes it from the host's generated options; hanaakari's leaves out tokiwa's line on purpose.

The suite runs against them (a) through the NixOS-driver backend, with a machine object that
executes in the namespace exactly like the test driver's (``set -euo pipefail``, stdout only),
(b) unchanged through testinfra's own ``local://`` backend inside the namespace, with
pytest-xdist and --junitxml, and (c) over real SSH to sshd in both namespaces, two hosts in
parallel, as against a deployed lab.  All must report the same verdicts, and each is asserted:
what was set up holds, what was broken fails.  The firewall is also probed from the other
namespace (``reach`` checks: hanaakari plays the client of yomogi's flow table and back).  Services, kernel modules and systemd properties
belong to this machine's kernel and systemd, so their verdicts are compared with what this
machine has.  Everything stays inside namespaces the test creates; every process is ended and
every namespace deleted, also on failure.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import socket
import struct
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from homelab.compile import compile_lab
from homelab.expect import lab_expectations
from homelab.harness import lab_test_args
from homelab.vm import VmRun, free_port, kvm_problem, make_run, qemu_net_opts, slirp_dns, ssh_config_text
from homelab import readback

from homelab.harness import VM_TESTS

from . import labkit
from .conftest import REPO

SUITE = VM_TESTS
if str(SUITE) not in sys.path:
    sys.path.insert(0, str(SUITE))

from homelab_vmtests import probes  # noqa: E402
from homelab_vmtests.targets import SetupError, lab_host_for, parse_overrides  # noqa: E402

NGINX_STREAM = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
NETNS_ETC = Path("/etc/netns")  # ip netns exec mounts /etc/netns/<name>/<file> over /etc/<file>
BROKEN_ZONE = r"^([^.]+\.)?home\.example\.com\.$"  # one label deep only: a.b.home.example.com is missed
WRONG_ANSWER = "10.9.9.9"


# ---------------------------------------------------------------- probes (pure)


def dns_reply(query: bytes, answers: list[str], rcode: int = 0) -> bytes:
    qid = struct.unpack(">H", query[:2])[0]
    question = query[12:]
    out = struct.pack(">HHHHHH", qid, 0x8180 | rcode, 1, len(answers), 0, 0) + question
    for ip in answers:  # a name compression pointer to the question name at offset 12
        out += struct.pack(">HHHIH", 0xC00C, 1, 1, 60, 4) + ipaddress.IPv4Address(ip).packed
    return out


def test_dns_query_and_reply_round_trip():
    q = probes.dns_query("a.b.home.example.com")
    assert q[12:] == b"\x01a\x01b\x04home\x07example\x03com\x00\x00\x01\x00\x01"
    r = probes.parse_dns_reply(dns_reply(q, ["100.64.0.12", "100.64.0.13"]))
    assert (r.error, r.rcode, r.answers) == (None, 0, ["100.64.0.12", "100.64.0.13"])
    assert probes.parse_dns_reply(dns_reply(q, [], rcode=3)).describe() == "NXDOMAIN, A records none"
    assert probes.parse_dns_reply(q).error == "the reply is not a DNS response"
    assert "too short" in probes.parse_dns_reply(b"\x00\x01").error
    assert "malformed" in probes.parse_dns_reply(dns_reply(q, ["1.2.3.4"])[:-6]).error
    as_od = " ".join(str(b) for b in dns_reply(q, ["1.2.3.4"]))
    assert probes.parse_dns_output(as_od).answers == ["1.2.3.4"]
    assert "could not connect" in probes.parse_dns_output("CONNECT-FAILED\n").error


def test_dns_command_writes_exactly_the_query():
    # the printf format, run by a real bash, produces the framed query byte for byte
    cmd = probes.dns_command("127.0.0.1", 53, "www.home.example.com")
    fmt = re.search(r"printf '([^']*)'", cmd.replace("'\"'\"'", "'")).group(1)
    out = subprocess.run(["bash", "-c", f"printf '{fmt}'"], capture_output=True, check=True).stdout
    q = probes.dns_query("www.home.example.com")
    assert out == struct.pack(">H", len(q)) + q


def test_proc_net_parsing():
    text = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 00000000:1F90 00000000:0000 01 00000000:00000000 00:00000000 00000000     0        0 2 1
   2: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 0A 0 0 0 0 0 0 3 1
"""
    assert probes.listening_ports(text, "tcp") == {53, 443}
    assert probes.listening_ports(text.replace(" 0A ", " 07 "), "udp") == {53, 443}


def test_property_and_exchange_parsing():
    assert probes.property_matches("1048576\n", "1048576", "equals")
    assert not probes.property_matches("524288", "1048576", "equals")
    assert probes.property_matches("PATH=/x ETCD_UNSUPPORTED_ARCH=arm64", "ETCD_UNSUPPORTED_ARCH=arm64", "contains")
    # the kubelet's root dir: nixpkgs' flag first, the role's last; only the last one counts
    start = "{ path=/nix/store/k/bin/kubelet ; argv[]=/nix/store/k/bin/kubelet --root-dir=/var/lib/kubernetes "
    assert probes.property_matches(start + "--v=2 --root-dir=/var/lib/kubelet ; }", "--root-dir=/var/lib/kubelet",
                                   "last")
    assert not probes.property_matches(start.replace("kubernetes ", "kubelet ") + "--root-dir=/var/lib/kubernetes",
                                       "--root-dir=/var/lib/kubelet", "last")
    assert not probes.property_matches("", "--root-dir=/var/lib/kubelet", "last")
    assert not probes.property_matches("", "ETCD_UNSUPPORTED_ARCH=arm64", "contains")
    assert probes.parse_exchange("CONNECT-FAILED\n").describe() == "connection refused or timed out"
    assert probes.parse_exchange("\n").describe() == "connected, but no bytes came back"
    assert probes.parse_exchange("SFRUUC8xLjAgMjAwIE9LDQoNCmhp\n").reply == b"HTTP/1.0 200 OK\r\n\r\nhi"


def test_hosts_and_image_listings_parse():
    getent = "127.0.0.2       yomogi\n192.168.10.10   yomogi\n"
    assert probes.hosts_addresses(getent) == ["127.0.0.2", "192.168.10.10"]
    assert probes.hosts_addresses("") == []
    assert probes.hosts_command("x; rm -rf /") == "getent -s files hosts 'x; rm -rf /'; true"
    ctr = "docker.io/library/coredns:homelab\ndocker.io/library/pause:latest\n\n"
    assert probes.listed_images(ctr) == {"docker.io/library/coredns:homelab", "docker.io/library/pause:latest"}


# ---------------------------------------------------------------- which lab host a target is


def backend(spec: str):
    import testinfra

    return testinfra.get_host(spec).backend


@pytest.fixture(scope="module")
def expectations(seed) -> dict:
    lab, _ = seed
    return {n: e.to_json() for n, e in lab_expectations(lab).items()}


def test_targets_map_to_lab_hosts(expectations):
    assert lab_host_for(backend("ssh://root@yomogi"), expectations, {}, None, 3) == "yomogi"
    assert lab_host_for(backend("ssh://root@192.168.10.11:2222"), expectations, {}, None, 3) == "tokiwa"
    assert lab_host_for(backend("ssh://admin@100.64.0.12"), expectations, {}, None, 3) == "hanaakari"
    assert lab_host_for(backend("ssh://root@yomogi.tail1234.ts.net"), expectations, {}, None, 3) == "yomogi"
    assert lab_host_for(backend("local://"), expectations, {}, "tokiwa", 1) == "tokiwa"
    mapping, default = parse_overrides(["ssh://127.0.0.1=hanaakari"])
    assert lab_host_for(backend("ssh://root@127.0.0.1:40022"), expectations, mapping, default, 2) == "hanaakari"
    with pytest.raises(SetupError, match="cannot tell which lab host"):
        lab_host_for(backend("ssh://root@10.20.30.40"), expectations, {}, None, 1)
    with pytest.raises(SetupError, match="ambiguous"):
        lab_host_for(backend("ssh://root@10.20.30.40"), expectations, {}, "yomogi", 2)
    with pytest.raises(SetupError, match="no such host"):
        lab_host_for(backend("local://"), expectations, {}, "nosuch", 1)


def test_driver_backend_needs_its_machines():
    from homelab_vmtests import driver

    driver.register()
    with pytest.raises(RuntimeError, match="only works in-process inside the NixOS test driver"):
        driver.DriverBackend("nosuch").run("true")


def pytest_run(*args: str, cwd: Path, prefix: tuple[str, ...] = (), timeout: float = 300):
    """The suite as a user runs it from ``cwd`` (a folder of a lab: the suite finds the lab from there)."""
    return subprocess.run([*prefix, sys.executable, "-m", "pytest", str(SUITE), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def test_unknown_target_is_a_usage_error_before_any_connection(seed_root, tmp_path):
    r = pytest_run("--hosts=ssh://root@10.20.30.40", "--collect-only", "-q", cwd=seed_root / "hosts")
    assert r.returncode == 4 and "cannot tell which lab host this is" in r.stderr
    r = pytest_run("--expectations=/nonexistent.json", "--collect-only", "-q", cwd=seed_root)
    assert r.returncode == 4 and "cannot read JSON" in r.stderr
    r = pytest_run("--hosts=ssh://root@tokiwa", "--collect-only", "-q", cwd=tmp_path)  # no lab around tmp_path
    assert r.returncode == 4 and "no lab here" in r.stderr and "--lab-root DIR or --expectations FILE" in r.stderr


def test_scope_and_host_selection_is_deselection(seed_root, tmp_path):
    r = pytest_run("--hosts=ssh://root@tokiwa,ssh://root@192.168.10.12", "--homelab-scope=host", "--collect-only",
                   "-q", f"--lab-root={seed_root}", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    ids = [line for line in r.stdout.splitlines() if "::" in line]
    assert ids and all(("tokiwa/" in i and "ssh://tokiwa" in i) or ("hanaakari/" in i and "ssh://192.168.10.12" in i)
                       for i in ids)
    assert not any("kubelet.service-ssh://tokiwa" in i for i in ids)  # a worker's kubelet needs the cluster
    assert "deselected" in r.stdout


# ---------------------------------------------------------------- namespaces


def _netns_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root for network namespaces and iptables inside them"
    for tool in ("ip", "iptables", "bash", "timeout", "od", "dd", "base64"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    name = f"hlti{os.getpid()}p"
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if r.returncode != 0:
        return f"`ip netns add` fails here: {r.stderr.strip()}"
    try:
        r = subprocess.run(["ip", "netns", "exec", name, "iptables", "-w", "-N", "probe"], capture_output=True,
                           text=True)
        if r.returncode != 0:
            return f"iptables does not work in a network namespace here: {r.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    if shutil.which("nginx") is None or not NGINX_STREAM.exists():
        return f"needs Debian's nginx with the stream module ({NGINX_STREAM})"
    return None


DNS_SERVER = r'''
import ipaddress, re, socket, struct, sys, threading
port, zone_re, answer, wrong = int(sys.argv[1]), re.compile(sys.argv[2]), sys.argv[3], sys.argv[4]
tailnet_answer, tailnet = sys.argv[6], ipaddress.ip_network("100.64.0.0/10")  # CoreDNS's view for the tailnet

def name_of(q):
    i, labels = 12, []
    while q[i]:
        labels.append(q[i + 1:i + 1 + q[i]].decode()); i += 1 + q[i]
    return ".".join(labels) + ".", i + 5

def reply(q, client):
    name, end = name_of(q)
    if zone_re.match(name):
        ips = [tailnet_answer if ipaddress.ip_address(client) in tailnet else answer]
    elif name.count(".") > 3 and name.endswith(sys.argv[5]):
        ips = [wrong]  # the narrow zone rule sends deeper names elsewhere
    else:
        ips = []
    flags = 0x8180 | (0 if ips else 3)
    out = struct.pack(">HHHHHH", struct.unpack(">H", q[:2])[0], flags, 1, len(ips), 0, 0) + q[12:end]
    for ip in ips:
        out += struct.pack(">HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(ip)
    return out

def serve(conn, client):
    with conn:
        n = struct.unpack(">H", conn.recv(2))[0]
        q = b""
        while len(q) < n:
            q += conn.recv(n - len(q))
        r = reply(q, client)
        conn.sendall(struct.pack(">H", len(r)) + r)

tcp = socket.socket(); tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); tcp.bind(("0.0.0.0", port)); tcp.listen()
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("0.0.0.0", port))
print("ready", flush=True)
while True:
    c, (client, _) = tcp.accept()
    threading.Thread(target=serve, args=(c, client), daemon=True).start()
'''

HTTP_BACKEND = r'''
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
print("ready", flush=True)
while True:
    c, _ = s.accept()
    with c:
        c.settimeout(5)
        data = b""
        try:
            # read the whole request first: closing with unread bytes sends a RST, and nginx may then
            # drop the reply before passing it on (seen under load)
            while b"\r\n\r\n" not in data:
                chunk = c.recv(4096)
                if not chunk:
                    break
                data += chunk
            c.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nnodeport backend\n")
            c.shutdown(socket.SHUT_WR)
            while c.recv(4096):
                pass
        except OSError:
            pass
'''

DRIVER_RUN = r'''
import json, subprocess, sys
suite, expectations, scope, junit, namespaces = sys.argv[1:6]
sys.path.insert(0, suite)
from homelab_vmtests import driver

class NamespaceMachine:
    """The NixOS test driver's Machine.execute contract, for a network namespace of this machine."""
    def __init__(self, ns):
        self.ns = ns
    def execute(self, command, check_return=True, check_output=True, timeout=900):
        p = subprocess.run(["ip", "netns", "exec", self.ns, "bash", "-c", "set -euo pipefail; " + command],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=timeout)
        return p.returncode, p.stdout.decode(errors="replace")

machines = {name: NamespaceMachine(ns) for name, ns in json.loads(namespaces).items()}
pending = driver.settle(machines, expectations, scope=scope, timeout=2, poll=0.5)
print("PENDING " + json.dumps(pending), flush=True)
sys.exit(driver.run_suite(machines, expectations=expectations, scope=scope, junitxml=junit))
'''


class Lab2:
    """The two namespaces and what runs in them."""

    def __init__(self, tmp: Path, seed):
        self.tmp = tmp
        self.lab, _ = seed
        self.ns = {"yomogi": f"hlti{os.getpid()}y", "hanaakari": f"hlti{os.getpid()}h"}
        self.procs: list[subprocess.Popen] = []

    def sh(self, host: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run(["ip", "netns", "exec", self.ns[host], *cmd], capture_output=True, text=True, timeout=30)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} in {host}: {r.stderr.strip()}")
        return r

    def start(self, host: str, *cmd: str, ready: bool = True) -> None:
        p = subprocess.Popen(["ip", "netns", "exec", self.ns[host], *cmd], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.procs.append(p)
        if ready:
            line = p.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"{cmd[0]} in {host} did not start: {line}{p.stderr.read()}")

    def up(self) -> None:
        lab = self.lab
        y, h = lab.host("yomogi"), lab.host("hanaakari")
        prefix = lab.cluster.lan.prefixlen
        # each namespace's /etc/hosts, as NixOS writes it from the generated options (hanaakari's without tokiwa)
        for host, ns in self.ns.items():
            hopts, _ = readback.merge_host([(rel, readback.nest(self.compiled.files[rel].definitions()))
                                          for rel in self.compiled.files_of(host)])
            lines = [(ip, names) for ip, names in labkit.etc_hosts(hopts, host)
                     if not (host == "hanaakari" and "tokiwa" in names)]
            (NETNS_ETC / ns).mkdir(parents=True, exist_ok=True)
            (NETNS_ETC / ns / "hosts").write_text("".join(f"{ip} {' '.join(names)}\n" for ip, names in lines))
        for ns in self.ns.values():
            subprocess.run(["ip", "netns", "add", ns], check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        # the LAN: one veth pair, each end named like the host's own interface
        subprocess.run(["ip", "link", "add", "hltiy0", "netns", self.ns["yomogi"], "type", "veth", "peer", "name",
                        "hltih0", "netns", self.ns["hanaakari"]], check=True)
        for host, dev, me in (("yomogi", "hltiy0", y), ("hanaakari", "hltih0", h)):
            self.sh(host, "ip", "link", "set", dev, "name", me.interface)
            self.sh(host, "ip", "addr", "add", f"{me.ip}/{prefix}", "dev", me.interface)
            self.sh(host, "ip", "link", "set", me.interface, "up")
        # the tailnet: another pair, named tailscale0 on both ends, with the hosts' Tailscale addresses
        subprocess.run(["ip", "link", "add", "hltity0", "netns", self.ns["yomogi"], "type", "veth", "peer", "name",
                        "hltith0", "netns", self.ns["hanaakari"]], check=True)
        for host, dev, me in (("yomogi", "hltity0", y), ("hanaakari", "hltith0", h)):
            self.sh(host, "ip", "link", "set", dev, "name", "tailscale0")
            self.sh(host, "ip", "addr", "add", f"{me.tailscale_address}/10", "dev", "tailscale0")
            self.sh(host, "ip", "link", "set", "tailscale0", "up")

        # yomogi: the NixOS firewall skeleton (IPv4 and IPv6) with the generated extraCommands, except the
        # rules that let the nodes reach cfssl (left out on purpose)
        opts, problems = readback.merge_host([(rel, readback.nest(self.compiled.files[rel].definitions()))
                                            for rel in self.compiled.files_of("yomogi")])
        assert problems == []
        assert "networking.firewall.allowedTCPPorts" not in opts and "networking.firewall.trustedInterfaces" not in opts
        for tool in ("iptables", "ip6tables"):
            for r in ["-N nixos-fw-accept", "-A nixos-fw-accept -j ACCEPT", "-N nixos-fw-refuse",
                      "-A nixos-fw-refuse -j DROP", "-N nixos-fw", "-A nixos-fw -i lo -j nixos-fw-accept",
                      "-A nixos-fw -m conntrack --ctstate ESTABLISHED,RELATED -j nixos-fw-accept"]:
                self.sh("yomogi", tool, "-w", *r.split())
        self.sh("yomogi", "ip6tables", "-w", "-A", "nixos-fw", "-p", "icmpv6", "-j", "nixos-fw-accept")
        self.dropped = [ln for ln in opts["networking.firewall.extraCommands"].splitlines() if "--dport 8888" in ln]
        assert self.dropped, "the seed's control plane lets the nodes reach cfssl"
        for line in opts["networking.firewall.extraCommands"].splitlines():
            if line and not line.startswith("#") and line not in self.dropped:
                tool, rest = line.split(" ", 1)
                self.sh("yomogi", tool, *rest.split())  # the generated line has -w
        for tool in ("iptables", "ip6tables"):
            self.sh("yomogi", tool, "-w", "-A", "nixos-fw", "-j", "nixos-fw-refuse")
            self.sh("yomogi", tool, "-w", "-A", "INPUT", "-j", "nixos-fw")

        # yomogi: a DNS server with a zone rule that is one label too narrow
        (self.tmp / "dns.py").write_text(DNS_SERVER)
        answer = str(h.ip)  # what the DNS host answers its LAN clients and itself: the ingress host's LAN address
        # and its tailnet clients: the ingress host's Tailscale address
        self.start("yomogi", sys.executable, str(self.tmp / "dns.py"), "53", BROKEN_ZONE, answer, WRONG_ANSWER,
                   lab.cluster.domain + ".", str(h.tailscale_address))

        # hanaakari: nginx with the generated stream config; a backend on the HTTP NodePort only
        hopts, _ = readback.merge_host([(rel, readback.nest(self.compiled.files[rel].definitions()))
                                      for rel in self.compiled.files_of("hanaakari")])
        conf = self.tmp / "nginx.conf"
        conf.write_text(f"load_module {NGINX_STREAM};\npid {self.tmp}/nginx.pid;\nerror_log {self.tmp}/error.log;\n"
                        f"events {{}}\nstream {{\n{hopts['services.nginx.streamConfig']}}}\n")
        self.sh("hanaakari", "nginx", "-t", "-c", str(conf), "-p", str(self.tmp))
        self.start("hanaakari", "nginx", "-c", str(conf), "-p", str(self.tmp), "-g", "daemon off;", ready=False)
        (self.tmp / "backend.py").write_text(HTTP_BACKEND)
        ingress = h.role(__import__("homelab").IngressProxy)
        self.start("hanaakari", sys.executable, str(self.tmp / "backend.py"), str(ingress.http_nodeport))
        deadline = time.monotonic() + 10
        while 80 not in probes.listening_ports(self.sh("hanaakari", "cat", "/proc/net/tcp").stdout, "tcp"):
            if time.monotonic() > deadline:
                raise RuntimeError("nginx did not listen on 80: " + (self.tmp / "error.log").read_text())
            time.sleep(0.1)

    def down(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, 15)
                except ProcessLookupError:
                    pass
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
                p.wait(timeout=5)
            for f in (p.stdout, p.stderr):
                if f:
                    f.close()
        for ns in self.ns.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            shutil.rmtree(NETNS_ETC / ns, ignore_errors=True)
        with contextlib.suppress(OSError):  # an empty /etc/netns means nothing; another rig may still use it
            NETNS_ETC.rmdir()


@pytest.fixture(scope="module")
def lab2(seed, tmp_path_factory):
    why = _netns_unavailable()
    if why:
        pytest.skip(why)
    rig = Lab2(tmp_path_factory.mktemp("targets"), seed)
    rig.compiled = compile_lab(rig.lab)
    try:
        rig.up()
        exp = {n: e.to_json() for n, e in lab_expectations(rig.lab).items() if n in rig.ns}
        rig.expectations = rig.tmp / "expectations.json"
        rig.expectations.write_text(json.dumps(exp))
        rig.checks = exp
        yield rig
    finally:
        rig.down()


def junit_verdicts(path: Path) -> dict[tuple[str, str], str]:
    """(lab host, check id) -> passed / failed / skipped, from a --junitxml report."""
    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        if "lab_host" not in props:
            continue
        verdict = "failed" if case.find("failure") is not None or case.find("error") is not None else \
            "skipped" if case.find("skipped") is not None else "passed"
        out[(props["lab_host"], props["check"])] = verdict
    return out


def machine_truth(check: dict) -> bool:
    """What this machine's kernel and systemd say, for the checks that are theirs, asked directly."""
    if check["kind"] == "kernel_module":
        m = check["module"].replace("-", "_")
        modules = Path("/proc/modules")
        return os.path.isdir(f"/sys/module/{m}") or (modules.exists() and any(
            line.split()[0] == m for line in modules.read_text().splitlines()))
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return False
    if check["kind"] == "service":
        r = subprocess.run([systemctl, "is-active", check["unit"]], capture_output=True, text=True)
        return r.stdout.strip() == "active"
    r = subprocess.run([systemctl, "show", f"--property={check['property']}", "--value", check["unit"]],
                       capture_output=True, text=True)
    v = r.stdout.strip()
    if check["match"] == "last":
        flag = check["value"].split("=", 1)[0] + "="
        return [w for w in v.split() if w.startswith(flag)][-1:] == [check["value"]]
    return v == check["value"] if check["match"] == "equals" else check["value"] in v


def expected_verdicts(rig, scope: str, hosts: tuple[str, ...]) -> dict[tuple[str, str], str]:
    lab = rig.lab
    fails = {
        ("yomogi", "dns:a.b.home.example.com@127.0.0.1:53"),  # the zone rule is one label too narrow
        ("hanaakari", "proxy:443->31443"),  # no backend on the HTTPS NodePort
        ("hanaakari", "hosts_entry:tokiwa"),  # its /etc/hosts leaves tokiwa out
    } | {("yomogi", f"firewall_rule:{line.removeprefix('iptables -w ')}") for line in rig.dropped}  # left out on purpose
    # what listens in the namespaces: the stand-in DNS server (TCP and a silent UDP socket), nginx
    listening = {("yomogi", "tcp", 53), ("yomogi", "udp", 53), ("hanaakari", "tcp", 80), ("hanaakari", "tcp", 443)}
    out = {}
    for name in hosts:
        for c in rig.checks[name]["checks"]:
            if scope == "host" and c["scope"] != "host":
                continue
            key = (name, c["id"])
            if c["kind"] in ("service", "kernel_module", "systemd_property"):
                ok = machine_truth(c)
            elif key in fails:
                ok = False
            elif c["kind"] == "firewall_rule":
                ok = name == "yomogi"  # hanaakari's namespace has no NixOS firewall
            elif c["kind"] == "listening":
                ok = (name, c["proto"], c["port"]) in listening and c["bind"] == "any"
            elif c["kind"] == "dns":
                # answered by the stand-in server: locally on yomogi, over the LAN veth from hanaakari and over
                # the tailnet veth from hanaakari's Tailscale address (through yomogi's firewall: the LAN and the
                # tailnet may ask its DNS), each with the address the stand-in's view gives that client
                ok = c["server"] in ("127.0.0.1", str(lab.host("yomogi").ip), str(lab.host("yomogi").tailscale_address))
            elif c["kind"] == "proxy":
                ok = True
            elif c["kind"] == "reach":
                client = c["client"].removeprefix("host:")
                if c["client"] == "lan-client" or client not in hosts:
                    out[key] = "skipped"  # no machine plays that client in this run
                    continue
                # yomogi drops what its loaded rules do not accept (cfssl's rules were left out); hanaakari
                # has no firewall at all, so everything gets through there
                through = c["expect"] == "accept" and not (c["proto"] == "tcp" and c["port"] == 8888) \
                    if name == "yomogi" else True
                silent_listener = c["proto"] == "udp" and (name, "udp", c["port"]) in listening
                if c["expect"] == "refuse":
                    ok = not through
                elif c["proto"] == "udp" and (silent_listener or not through):
                    out[key] = "skipped"  # no answer from a UDP port: a drop and a silent listener look alike
                    continue
                else:
                    ok = through
            elif c["kind"] == "hosts_entry":
                ok = True  # the namespace's own /etc/hosts, from the generated options
            elif c["kind"] == "image":
                ok = False  # no containerd in the namespaces: the probe must say so, not pass
            else:
                raise AssertionError(c)
            out[key] = "passed" if ok else "failed"
    return out


@pytest.fixture(scope="module")
def driver_run(lab2):
    junit = lab2.tmp / "driver.xml"
    r = subprocess.run([sys.executable, "-c", DRIVER_RUN, str(SUITE), str(lab2.expectations), "cluster", str(junit),
                        json.dumps(lab2.ns)], capture_output=True, text=True, timeout=600)
    return r, junit


def test_suite_through_the_driver_backend(lab2, driver_run):
    r, junit = driver_run
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]  # some checks fail on purpose
    got = junit_verdicts(junit)
    want = expected_verdicts(lab2, "cluster", ("yomogi", "hanaakari"))
    assert got == want
    assert {v for v in want.values()} == {"passed", "failed", "skipped"}
    # split DNS from a tailnet client: hanaakari asks yomogi's Tailscale address over the tailnet, through yomogi's
    # generated firewall, and gets hanaakari's Tailscale address (the LAN one gets the LAN address)
    assert {cid: got[("hanaakari", cid)] for cid in ("dns:probe.home.example.com@100.64.0.10:53",
                                                   "dns:probe.home.example.com@192.168.10.10:53")} == {
        "dns:probe.home.example.com@100.64.0.10:53": "passed", "dns:probe.home.example.com@192.168.10.10:53": "passed"}
    # the suite's own words for the deliberate faults
    out = r.stdout
    assert f"no rule `{lab2.dropped[0].removeprefix('iptables -w ')}`" in out
    assert "TCP 192.168.10.10:8888 from host:hanaakari: no answer (dropped), expected the firewall to accept it" in out
    assert f"got NOERROR, A records ['{WRONG_ANSWER}'], expected A 192.168.10.12" in out
    assert "port 443 -> 127.0.0.1:31443: connected, but no bytes came back" in out
    assert "/etc/hosts does not name tokiwa (only DNS might)" in out
    assert "listing containerd's images (k8s.io) failed (exit 127): bash: line 1: ctr: command not found" in out \
        or shutil.which("ctr") is not None
    assert "the NodePort does not answer either" in out
    # the per-host summary, naming the target
    assert "homelab: per host" in out and "yomogi via nixos-driver://yomogi:" in out
    assert "not as expected: proxy:443->31443" in out


def test_settle_waits_for_what_can_come_and_reports_the_rest(driver_run):
    r, _ = driver_run
    pending = json.loads(next(line for line in r.stdout.splitlines() if line.startswith("PENDING "))[8:])
    assert "listening:tcp/6443" in pending["yomogi"] and "listening:tcp/53" not in pending["yomogi"]
    assert "listening:tcp/80" not in pending["hanaakari"]
    assert "not settled after" in r.stdout


def test_suite_unchanged_through_testinfra_local_backend_with_xdist(lab2, driver_run):
    junit = lab2.tmp / "local.xml"
    r = pytest_run("--hosts=local://", "--lab-host=yomogi", f"--expectations={lab2.expectations}",
                   "--homelab-scope=host", "-n", "2", "--dist=loadgroup", f"--junitxml={junit}",
                   prefix=("ip", "netns", "exec", lab2.ns["yomogi"]), cwd=lab2.tmp)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    assert "2 workers" in r.stdout
    local = junit_verdicts(junit)
    assert local == expected_verdicts(lab2, "host", ("yomogi",))
    # the same target through the driver backend gave the same verdicts, check for check
    through_driver = junit_verdicts(driver_run[1])
    assert {k: through_driver[k] for k in local} == local
    assert "yomogi via local:" in r.stdout


def test_the_tailnet_dns_check_is_skipped_where_the_targets_are_on_no_tailnet(lab2):
    """The test VMs are on no tailnet: with --homelab-no-tailnet (the cluster VM test passes it) the split-DNS
    check asked over the tailnet is skipped, saying why, while the LAN one still runs."""
    junit = lab2.tmp / "no-tailnet.xml"
    r = pytest_run("--hosts=local://", "--lab-host=hanaakari", f"--expectations={lab2.expectations}",
                   "--homelab-no-tailnet", "-k", "dns", "-rs", f"--junitxml={junit}",
                   prefix=("ip", "netns", "exec", lab2.ns["hanaakari"]), cwd=lab2.tmp)
    got = {cid: v for (_, cid), v in junit_verdicts(junit).items() if cid.startswith("dns:probe.")}
    assert got == {"dns:probe.home.example.com@100.64.0.10:53": "skipped",
                   "dns:probe.home.example.com@192.168.10.10:53": "passed"}, r.stdout[-3000:]
    assert "asked over the tailnet, and these targets are on none (--homelab-no-tailnet)" in r.stdout


SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)


def test_suite_over_ssh_to_live_hosts(lab2, tmp_path):
    """Target (c), a deployed lab: `pytest vm-tests --hosts=ssh://yomogi,ssh://hanaakari -n 2`, for real.

    sshd runs in both namespaces; pytest runs on hanaakari's side and reaches yomogi over the LAN
    through yomogi's firewall (its SSH port opened as services.openssh.openFirewall would).
    """
    if SSHD is None or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("needs OpenSSH's sshd, ssh and ssh-keygen (Debian: openssh-server, openssh-client)")
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "hostkey")], check=True)
    shutil.copy(f"{key}.pub", tmp_path / "authorized_keys")
    where = {"yomogi": (str(lab2.lab.host("yomogi").ip), 22), "hanaakari": ("127.0.0.1", 2201)}
    privsep = Path("/run/sshd")
    made_privsep = not privsep.exists()
    privsep.mkdir(mode=0o755, exist_ok=True)
    procs = []
    rule = ["-p", "tcp", "--dport", "22", "-j", "nixos-fw-accept"]
    lab2.sh("yomogi", "iptables", "-w", "-I", "nixos-fw", "1", *rule)
    try:
        for host, (_, port) in where.items():
            conf = tmp_path / f"sshd-{host}.conf"
            conf.write_text(textwrap.dedent(f"""\
                Port {port}
                ListenAddress 0.0.0.0
                HostKey {tmp_path / 'hostkey'}
                PidFile {tmp_path / f'sshd-{host}.pid'}
                AuthorizedKeysFile {tmp_path / 'authorized_keys'}
                PermitRootLogin prohibit-password
                PasswordAuthentication no
                KbdInteractiveAuthentication no
                UsePAM no
                StrictModes no
                ClientAliveInterval 5
                ClientAliveCountMax 12
                """))
            procs.append(subprocess.Popen(["ip", "netns", "exec", lab2.ns[host], SSHD, "-D", "-e", "-f", str(conf)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True))
        deadline = time.monotonic() + 10
        for host, (_, port) in where.items():
            while port not in probes.listening_ports(lab2.sh(host, "cat", "/proc/net/tcp").stdout, "tcp"):
                assert time.monotonic() < deadline, f"sshd in {host} did not start"
                time.sleep(0.1)
        cfg = tmp_path / "ssh_config"
        cfg.write_text("".join(f"Host {h}\n  HostName {a}\n  Port {p}\n" for h, (a, p) in where.items())
                       + f"Host *\n  User root\n  IdentityFile {key}\n  IdentitiesOnly yes\n"
                       "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
                       "  BatchMode yes\n  ConnectTimeout 5\n"
                       # one connection per host for all the checks (the path must stay short for a socket)
                       f"  ControlMaster auto\n  ControlPersist 30\n  ControlPath /tmp/hlti{os.getpid()}-%C\n")
        junit = tmp_path / "ssh.xml"
        r = pytest_run("--hosts=ssh://yomogi,ssh://hanaakari", f"--ssh-config={cfg}",
                       f"--expectations={lab2.expectations}", "-n", "2", "--dist=loadgroup", f"--junitxml={junit}",
                       prefix=("ip", "netns", "exec", lab2.ns["hanaakari"]), timeout=600, cwd=lab2.tmp)
        assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
        assert "2 workers" in r.stdout
        want = expected_verdicts(lab2, "cluster", ("yomogi", "hanaakari"))
        want[("yomogi", "listening:tcp/22")] = "passed"  # sshd answers there now
        got = junit_verdicts(junit)
        differ = sorted(k for k in want if got.get(k) != want[k])
        assert got == want, f"{differ}\n" + r.stdout[-6000:]
        assert "yomogi via ssh://yomogi:" in r.stdout and "hanaakari via ssh://hanaakari:" in r.stdout
    finally:
        for p in procs:
            # each connection has its own sshd process in a session of its own: end those first (the
            # listener's process group does not include them), then the listener
            subprocess.run(["pkill", "-TERM", "-P", str(p.pid)], capture_output=True)
            try:
                os.killpg(p.pid, 15)
            except ProcessLookupError:
                pass
            p.wait(timeout=10)
            p.stderr.close()
        lab2.sh("yomogi", "iptables", "-w", "-D", "nixos-fw", *rule, check=False)
        for sock in Path("/tmp").glob(f"hlti{os.getpid()}-*"):  # control sockets of ssh masters now gone
            sock.unlink(missing_ok=True)
        if made_privsep:
            privsep.rmdir()


class RecordingMachine:
    """Answers like a booted lab host would, and records what the cluster steps ask (no VM here)."""

    def __init__(self, name: str, log: list, answers: dict[str, str]):
        self.name, self.log, self.answers = name, log, answers

    def _record(self, verb: str, what: str) -> None:
        self.log.append((self.name, verb, what))

    def wait_for_unit(self, unit, timeout=900):
        self._record("unit", unit)

    def succeed(self, cmd, timeout=None):
        self._record("succeed", cmd)
        return "the-token\n" if cmd.startswith("cat ") else ""

    def wait_until_succeeds(self, cmd, timeout=900):
        self._record("wait", cmd)
        return ""

    def execute(self, cmd, check_return=True, check_output=True, timeout=900):
        self._record("execute", cmd)
        server = re.search(r"/dev/tcp/([0-9.]+)/", cmd).group(1)
        q = probes.dns_query("x")
        return 0, " ".join(str(b) for b in dns_reply(q, [self.answers[server]]))


def test_cluster_steps_follow_the_lab(expectations, tmp_path):
    from homelab_vmtests import cluster

    path = tmp_path / "expectations.json"
    path.write_text(json.dumps(expectations))
    log: list = []
    answers = {"192.168.10.10": "192.168.10.12", "10.0.0.254": "10.0.0.1"}
    machines = {n: RecordingMachine(n, log, answers) for n in ("hanaakari", "tokiwa", "yomogi")}
    steps: list[str] = []

    class Step:
        def __init__(self, name):
            steps.append(name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    cluster.run(machines, str(path), subtest=Step, echo_text="hello-echo", suite=False)
    assert steps[0].startswith("control plane") and steps[-1].startswith("nginx -> NodePort")
    assert log[0] == ("yomogi", "unit", "kube-apiserver.service")
    joins = [(n, c) for n, v, c in log if "nixos-kubernetes-node-join" in c]
    assert joins == [("hanaakari", "echo the-token | nixos-kubernetes-node-join"),
                     ("tokiwa", "echo the-token | nixos-kubernetes-node-join")]
    ready = [c for n, v, c in log if "kubectl get node " in c]
    assert ready == [f"kubectl get node {n} --no-headers | grep -w Ready" for n in ("yomogi", "hanaakari", "tokiwa")]
    apply = next(c for n, v, c in log if "kubectl apply" in c)
    manifest = json.loads(shlex.split(apply)[1])
    assert sorted(p["nodePort"] for p in manifest["items"][1]["spec"]["ports"]) == [31080, 31443]
    assert ("yomogi", "wait", "kubectl -n kube-system rollout status deployment/coredns --timeout=20s") in log
    assert ("yomogi", "wait", "kubectl exec deploy/homelab-echo -- nslookup kubernetes.default.svc.cluster.local | "
            "grep -F '10.0.0.1'") in log
    assert ("yomogi", "wait", "kubectl exec deploy/homelab-echo -- nslookup probe.home.example.com 192.168.10.10 | "
            "grep -F '192.168.10.12'") in log
    asked = {(n, re.search(r"/dev/tcp/([0-9.]+)/", c).group(1)) for n, v, c in log if v == "execute"}
    assert asked == {(n, s) for n in ("hanaakari", "tokiwa") for s in answers} | {("yomogi", "10.0.0.254")}
    curls = [(n, c) for n, v, c in log if c.startswith("curl")]
    assert ("hanaakari", "curl -sf --max-time 5 http://127.0.0.1:80/ | grep -F hello-echo") in curls
    assert ("hanaakari", "curl -sf --max-time 5 http://127.0.0.1:443/ | grep -F hello-echo") in curls
    assert any(n != "hanaakari" and "http://192.168.10.12:80/" in c for n, c in curls)


# ---------------------------------------------------------------- homelab vm


def test_vm_plan_native_and_cross(seed, tmp_path):
    lab, _ = seed
    plan = make_run(lab, ["tokiwa", "yomogi"], REPO, tmp_path, [40100, 40101], system="x86_64-linux",
                     nixos_rebuild=True, suite_dir=SUITE, junitxml="r.xml", extra=("-k", "dns"))
    tokiwa, yomogi = plan.hosts
    assert tokiwa.build.argv == ("nixos-rebuild", "build-vm", "--flake", f"{REPO}#tokiwa")
    assert tokiwa.build.cwd == str(tmp_path / "tokiwa")
    assert yomogi.build.argv == ("nix", "--extra-experimental-features", "nix-command flakes", "build",
                                 f"{REPO}#vm-yomogi", "--out-link", str(tmp_path / "yomogi" / "result"))
    assert "aarch64-linux host as a x86_64-linux VM" in yomogi.build.what
    assert tokiwa.runner == str(tmp_path / "tokiwa" / "result" / "bin" / "run-tokiwa-vm")
    env = dict(tokiwa.boot.env)
    assert env["QEMU_NET_OPTS"] == ("net=192.168.10.0/24,host=192.168.10.1,dns=192.168.10.254,"
                                    "hostfwd=tcp:127.0.0.1:40100-192.168.10.11:22")
    assert env["SHARED_DIR"] == str(tmp_path / "tokiwa" / "shared")
    assert env["NIX_DISK_IMAGE"] == str(tmp_path / "tokiwa" / "tokiwa.qcow2")
    own = lab_test_args(REPO, SUITE)  # this repository's own vm-tests/, beside the suite (tests/test_lab_vm_tests.py)
    assert plan.suite.argv[1:] == ("-m", "pytest", str(SUITE), *own, "--hosts=ssh://tokiwa,ssh://yomogi",
                                   f"--ssh-config={tmp_path / 'ssh_config'}",
                                   f"--expectations={tmp_path / 'expectations.json'}", "--homelab-scope=host",
                                   "-n", "2", "--dist=loadgroup", "--junitxml=r.xml", "-k", "dns")
    assert tokiwa.poweroff.argv == ("ssh", "-F", str(tmp_path / "ssh_config"), "tokiwa", "poweroff")
    text = ssh_config_text(plan)
    assert "Host tokiwa\n  HostName 127.0.0.1\n  Port 40100\n  User root\n" in text and "Port 40101" in text
    assert f"IdentityFile {tmp_path / 'id_ed25519'}" in text and "StrictHostKeyChecking no" in text
    # without nixos-rebuild, the same VM comes from the flake's packages
    plan = make_run(lab, ["tokiwa"], REPO, tmp_path, [40100], system="x86_64-linux", nixos_rebuild=False,
                     suite_dir=SUITE)
    assert plan.hosts[0].build.argv[-3:] == (f"{REPO}#vm-tokiwa", "--out-link", str(tmp_path / "tokiwa" / "result"))
    assert "-n" not in plan.suite.argv


def test_vm_network_helpers(seed):
    lab, _ = seed
    assert slirp_dns(lab) == "192.168.10.254"
    assert qemu_net_opts(lab, lab.host("hanaakari"), 2222).endswith("hostfwd=tcp:127.0.0.1:2222-192.168.10.12:22")
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # it really is free
    assert kvm_problem("/nonexistent/kvm") == "/nonexistent/kvm does not exist: no KVM here"


def homelab_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "homelab", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_vm_dry_run_prints_the_exact_commands(seed_root, tmp_path):
    r = homelab_cli("vm", "hosts/yomogi", "hosts/tokiwa", "--dry-run", "--ssh-port", "40100", "--workdir",
                    str(tmp_path / "w"), "--junitxml", "report.xml", "--pytest-args", "-k dns", cwd=seed_root)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    w = tmp_path / "w"
    assert f"ssh-keygen -q -t ed25519 -N '' -C homelab-vm -f {w}/id_ed25519" in lines
    assert any(line.endswith(f"'{seed_root}#vm-yomogi' --out-link {w}/yomogi/result") for line in lines)
    assert (f"NIX_DISK_IMAGE={w}/yomogi/yomogi.qcow2 SHARED_DIR={w}/yomogi/shared TMPDIR={w}/yomogi "
            "QEMU_NET_OPTS=net=192.168.10.0/24,host=192.168.10.1,dns=192.168.10.254,hostfwd=tcp:127.0.0.1:40100-"
            f"192.168.10.10:22 {w}/yomogi/result/bin/run-yomogi-vm > {w}/yomogi/console.log 2>&1 &") in lines
    assert any(f"-m pytest {SUITE} --hosts=ssh://yomogi,ssh://tokiwa" in line and "-k dns" in line
               and "--junitxml=report.xml" in line for line in lines)  # the suite homelab ships
    assert lines[-2:] == [f"ssh -F {w}/ssh_config yomogi poweroff", f"ssh -F {w}/ssh_config tokiwa poweroff"]
    assert not w.exists()  # a dry run creates nothing


def test_vm_bad_input_is_reported_not_raised(seed_root):
    r = homelab_cli("vm", "hosts/nosuch", "--dry-run", cwd=seed_root)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "no such host folder" in r.stderr
    r = homelab_cli("vm", "hosts/tokiwa", "--dry-run", "--ssh-port", "80", cwd=seed_root)
    assert r.returncode == 2 and "--ssh-port 80" in r.stderr
    r = homelab_cli("vm", "hosts/tokiwa", "--dry-run", "--suite", "/nonexistent", cwd=seed_root)
    assert r.returncode == 2 and "no vm-tests suite" in r.stderr


def test_vm_real_run(repo_lab):
    if os.environ.get("HOMELAB_VM_TESTS") != "1":
        pytest.skip("boots a NixOS VM (needs the pinned nixpkgs, KVM and minutes): run with HOMELAB_VM_TESTS=1")
    problem = kvm_problem()
    if problem:
        pytest.skip(f"needs KVM: {problem}")
    host = repo_lab[0].hosts[0].hostname  # a host of this repository's lab, through its flake
    r = subprocess.run([sys.executable, "-m", "homelab", "vm", f"hosts/{host}"], cwd=REPO, capture_output=True,
                       text=True, timeout=3 * 3600)
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-5000:]
    assert "suite passed" in r.stdout


class Outsider(RecordingMachine):
    """The LAN machine that is no lab host: answers each firewall probe as a host firewall ``opened`` would."""

    def __init__(self, log: list, opened: set[tuple[str, str, int]]):
        super().__init__("outsider", log, {})
        self.opened = opened

    def succeed(self, cmd, timeout=None):
        self._record("succeed", cmd)
        m = re.search(r"/dev/(tcp|udp)/([0-9.]+)/(\d+)", cmd)
        got_through = (m.group(2), m.group(1), int(m.group(3))) in self.opened
        return "closed\n" if got_through else "silent\n"


def test_the_outsider_is_refused_what_only_nodes_may_reach(expectations, tmp_path):
    from homelab_vmtests import cluster

    path = tmp_path / "expectations.json"
    path.write_text(json.dumps(expectations))
    lan = [(c["address"], c["proto"], c["port"], c["expect"]) for e in expectations.values() for c in e["checks"]
           if c["kind"] == "reach" and c["client"] == "lan-client"]
    allowed = {(a, pr, p) for a, pr, p, x in lan if x == "accept"}
    assert ("192.168.10.10", "tcp", 8888) not in allowed and ("192.168.10.10", "tcp", 22) in allowed
    answers = {"192.168.10.10": "192.168.10.12", "10.0.0.254": "10.0.0.1"}

    def run_with(opened):
        log: list = []
        machines = {n: RecordingMachine(n, log, answers) for n in ("hanaakari", "tokiwa", "yomogi")}
        outsider = Outsider(log, opened)
        cluster.run(machines, str(path), echo_text="hello-echo", suite=False, outsider=outsider)
        return [c for n, v, c in log if n == "outsider" and v == "succeed"]

    # a lab whose firewalls do what the flow table says: every lan-client check probed once, all fine
    probed = run_with(allowed)
    assert len(probed) == len(lan) == len({(a, pr, p) for a, pr, p, _ in lan})
    # a firewall that lets the outsider reach cfssl: the step fails and names it
    with pytest.raises(AssertionError, match=r"yomogi: tcp/8888: refused by the host .*expected refuse"):
        run_with(allowed | {("192.168.10.10", "tcp", 8888)})
    # one that drops the admins' SSH: also caught
    with pytest.raises(AssertionError, match=r"tcp/22: no answer \(dropped\), expected accept"):
        run_with(allowed - {("192.168.10.11", "tcp", 22)})
