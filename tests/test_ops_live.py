"""``homelab deploy``, ``verify``, ``wake`` and ``sleep`` for real: real SSH to sshd in network namespaces
standing in for yomogi, tokiwa and hanaakari, the deployer in a namespace of its own on the same LAN.

On the hosts, stand-ins for ``nixos-rebuild``/``switch-to-configuration``, ``nixos-kubernetes-node-join``,
``kubectl`` and ``systemctl`` record every call and can be told to fail (tests/standins/tools.py); the
deployer runs a stand-in ``nixos-rebuild`` and a recording ``ssh`` in front of the real one; the live
checks are a stand-in suite over real SSH (tests/standins/suite).  homelab itself runs unchanged, as a
subprocess, from the command line.  tests/opslab.py builds the namespaces and the lab folder.

The namespaces and sshd are set up once per module (per xdist worker); every test starts from the same state
(``OpsNet.reset``: first generations, only the control plane in the cluster, every host up) and asserts exactly
what happened.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from homelab.load import load_or_raise

from . import opslab
from homelab.proofs.netns import Netns

pytestmark = pytest.mark.netns
TOKEN_PATH = "/var/lib/kubernetes/secrets/apitoken.secret"
CFG = "-o BatchMode=yes -o ConnectTimeout=10"


@pytest.fixture(scope="module")
def ops_net(tmp_path_factory):
    why = opslab.unavailable()
    if why:
        pytest.skip(why)
    tmp = tmp_path_factory.mktemp("ops")
    root = opslab.write_seed_lab(tmp / "lab")
    lab, _ = load_or_raise(root)
    n = opslab.OpsNet(tmp, root, lab)
    try:
        n.up()
        yield n
    finally:
        n.close()


@pytest.fixture
def net(ops_net):
    ops_net.reset()
    return ops_net


@contextlib.contextmanager
def told(net, host: str, what: str, text: str = ""):
    """A state file of a host's stand-ins (``failing-checks``, ``fail-switch``...) for one run."""
    path = net.state(host) / what
    path.write_text(text)
    try:
        yield
    finally:
        path.unlink()


def table_rows(stdout: str) -> dict[str, tuple[str, str]]:
    """The final table: host -> (generations, result)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("host "))
    rows = {}
    for line in lines[start + 1:]:
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) < 3 or cells[0] not in ("yomogi", "tokiwa", "hanaakari"):
            break
        rows[cells[0]] = (cells[1], cells[2])
    return rows


def switches(net, mark, host):
    return [c for c in net.since(mark, host, "switch-to-configuration")]


def rebuilds(net, mark):
    return [c["argv"] for c in net.since(mark, "workstation", "nixos-rebuild")]


def suites(net, mark):
    return [c for c in net.since(mark, "workstation", "suite")]


def files_under(folder: Path):
    for p in folder.rglob("*"):
        if p.is_file():
            yield p


# ---------------------------------------------------------------- deploy


def last_suite_end(net, mark) -> float:
    return suites(net, mark)[-1]["t1"]


def test_deploy_switches_the_control_plane_first_then_joins_the_workers_two_at_a_time(net):
    token = net.ssh("yomogi", f"cat {TOKEN_PATH}").stdout
    assert re.fullmatch(r"[0-9a-f]{32}", token), token
    # a switch takes a second on each worker: long enough to see two at once
    with told(net, "hanaakari", "switch-seconds", "1.0"), told(net, "tokiwa", "switch-seconds", "1.0"):
        mark = net.mark()
        r = net.homelab("deploy", "--parallel", "2", "--settle", "0", "--ready-timeout", "10")
    assert r.returncode == 0, r.stdout + r.stderr
    lab = str(net.root)

    # nixos-rebuild, exactly: the Pi is built on itself, the workers here
    ssh_opts = f"-F {net.ssh_config} {CFG}"
    assert sorted(rebuilds(net, mark)) == sorted([
        ["switch", "--flake", f"{lab}#yomogi", "--target-host", "root@192.168.10.10", "--build-host",
         "root@192.168.10.10", "--no-reexec"],
        ["switch", "--flake", f"{lab}#hanaakari", "--target-host", "root@192.168.10.12", "--no-reexec"],
        ["switch", "--flake", f"{lab}#tokiwa", "--target-host", "root@192.168.10.11", "--no-reexec"],
    ])
    assert {c["env"]["NIX_SSHOPTS"] for c in net.since(mark, "workstation", "nixos-rebuild")} == {ssh_opts}

    # order: the control plane switched and passed its checks before any worker started
    cp_switch, = switches(net, mark, "yomogi")
    cp_checks = [s for s in suites(net, mark) if "--lab-host=yomogi" in s["argv"]]
    assert len(cp_checks) == 1 and "--homelab-scope=host" in cp_checks[0]["argv"]
    worker_switches = [s for w in ("hanaakari", "tokiwa") for s in switches(net, mark, w)]
    assert len(worker_switches) == 2
    assert all(cp_switch["t1"] < s["t0"] and cp_checks[0]["t1"] < s["t0"] for s in worker_switches)
    # the two workers overlapped (the bound is 2)
    a, b = worker_switches
    assert a["t0"] < b["t1"] and b["t0"] < a["t1"], "the workers did not switch at the same time"

    # each worker joined once, with the control plane's token on stdin and nothing in argv
    for w in ("hanaakari", "tokiwa"):
        joins = net.since(mark, w, "nixos-kubernetes-node-join")
        assert [(j["argv"], j["stdin"], j["rc"]) for j in joins] == [([], token, 0)]
        assert {k: v for k, v in net.node(w).items() if k != "labels"} == {"ready": "True", "cordoned": False}
    kubectl = [c for c in net.since(mark, "yomogi", "kubectl")]
    assert {c["env"]["KUBECONFIG"] for c in kubectl} == {"/etc/kubernetes/cluster-admin.kubeconfig"}
    asked = [c["argv"][:3] for c in kubectl]
    assert sorted(asked) == sorted([["get", "node", "hanaakari"]] * 2 + [["get", "node", "tokiwa"]] * 2
                                   + [["label", "node", "hanaakari"]])

    # then the cluster layer, on the control plane: hanaakari labelled (proxy=true, IngressProxy's), Traefik
    # installed with its values file on stdin (the labkit lab has no disks for Ceph, no ACME secrets)
    assert net.node("hanaakari")["labels"] == {"proxy": "true"}
    helm, = net.since(mark, "yomogi", "helm")
    assert helm["argv"][:3] == ["upgrade", "--install", "traefik"] and helm["rc"] == 0
    assert helm["stdin"] == (net.root / "cluster/values/traefik.yaml").read_text()
    assert helm["t0"] > last_suite_end(net, mark)
    assert "applied the cluster layer: 2 steps (traefik)" in r.stdout

    # the token went nowhere else: no argv or environment of any call, no output, no file of the deployer
    for host in ("workstation", "yomogi", "hanaakari", "tokiwa"):
        for c in net.calls(host):
            assert token not in repr(c["argv"]) and token not in repr(c.get("env")), c
            if c["tool"] != "nixos-kubernetes-node-join":
                assert token not in (c.get("stdin") or ""), c
    assert token not in r.stdout and token not in r.stderr
    for p in files_under(net.ws_dir):
        assert token.encode() not in p.read_bytes(), p
    assert list((net.ws_dir / "tmp").iterdir()) == []  # the deploy's work folder is gone

    # the cluster checks ran last, over all three hosts
    last = suites(net, mark)[-1]
    assert "--homelab-scope=cluster" in last["argv"] and last["rc"] == 0
    assert {a for a in last["argv"] if a.startswith("--lab-host=")} == {
        "--lab-host=192.168.10.10=yomogi", "--lab-host=192.168.10.11=tokiwa", "--lab-host=192.168.10.12=hanaakari"}
    assert table_rows(r.stdout) == {
        "yomogi": ("40 -> 41", "switched, checks passed"),
        "hanaakari": ("50 -> 51", "switched, joined, checks passed"),
        "tokiwa": ("60 -> 61", "switched, joined, checks passed"),
    }


def test_a_failing_check_rolls_back_that_host_once_and_stops_the_rollout(net):
    with told(net, "hanaakari", "failing-checks", "service:containerd.service\n"):
        mark = net.mark()
        r = net.homelab("deploy", "--parallel", "1", "--settle", "0", "--ready-timeout", "10")
    assert r.returncode == 1, r.stdout + r.stderr
    back = [a for a in rebuilds(net, mark) if "--rollback" in a]
    assert back == [["switch", "--rollback", "--flake", f"{net.root}#hanaakari", "--target-host",
                     "root@192.168.10.12", "--no-reexec"]]
    assert [s["argv"] for s in switches(net, mark, "hanaakari")] == [["switch"], ["switch", "--rollback"]]
    assert net.generation("hanaakari")["current"] == 50
    assert net.since(mark, "tokiwa") == []  # never touched: the rollout stopped
    assert "hanaakari: service:containerd.service" in r.stdout
    assert table_rows(r.stdout) == {
        "yomogi": ("40 -> 41", "switched, checks passed"),
        "hanaakari": ("50 -> 51 -> 50", "1 check failed, rolled back to 50"),
        "tokiwa": ("-", "not started: the rollout stopped"),
    }
    assert not any("--homelab-scope=cluster" in s["argv"] for s in suites(net, mark))
    assert "not deployed: tokiwa" in r.stdout


def test_no_rollback_leaves_the_failed_host_as_it_is_and_a_ready_worker_is_not_joined_again(net):
    net.reset(joined=("hanaakari", "tokiwa"))
    with told(net, "tokiwa", "failing-checks", "kernel_module:rbd\n"):
        mark = net.mark()
        r = net.homelab("deploy", "hosts/hanaakari", "hosts/tokiwa", "--no-rollback", "--settle", "0",
                        "--ready-timeout", "10")
    assert r.returncode == 1, r.stdout + r.stderr
    assert not any("--rollback" in a for a in rebuilds(net, mark))
    assert [s["argv"] for s in switches(net, mark, "tokiwa")] == [["switch"]]
    assert net.generation("tokiwa")["current"] == 61
    # hanaakari is Ready already: asked, not joined again
    assert [c["argv"][:3] for c in net.since(mark, "yomogi", "kubectl")] == [["get", "node", "hanaakari"]]
    assert net.since(mark, "hanaakari", "nixos-kubernetes-node-join") == []
    assert table_rows(r.stdout) == {
        "hanaakari": ("50 -> 51", "switched, checks passed"),
        "tokiwa": ("60 -> 61", "1 check failed, not rolled back (--no-rollback)"),
    }


def test_a_failed_switch_that_moved_the_generation_is_rolled_back(net):
    with told(net, "hanaakari", "fail-switch", ""):
        mark = net.mark()
        r = net.homelab("deploy", "hosts/hanaakari", "--settle", "0")
    assert r.returncode == 1, r.stdout + r.stderr
    assert [a[:2] for a in rebuilds(net, mark)] == [["switch", "--flake"], ["switch", "--rollback"]]
    assert table_rows(r.stdout) == {"hanaakari": ("50 -> 51 -> 50",
                                                  "switch failed (nixos-rebuild exit 1), rolled back to 50")}
    assert net.since(mark, "workstation", "suite") == []  # no checks after a failed switch


def test_a_redeploy_that_keeps_the_generation_is_not_rolled_back_one_too_far(net):
    """The configuration the host runs already: the switch makes no new generation.  Its checks fail: rolling
    back would leave it on the generation before the one the deploy found it on."""
    net.set_generation("hanaakari", 50)
    with told(net, "hanaakari", "same-generation"), told(net, "hanaakari", "failing-checks", "kernel_module:rbd\n"):
        mark = net.mark()
        r = net.homelab("deploy", "hosts/hanaakari", "--settle", "0")
    assert r.returncode == 1, r.stdout + r.stderr
    assert not any("--rollback" in a for a in rebuilds(net, mark))
    assert net.generation("hanaakari")["current"] == 50
    assert table_rows(r.stdout) == {"hanaakari": (
        "50 -> 50", "1 check failed, not rolled back: the switch left it on generation 50, as it was")}


@pytest.mark.parametrize("code", [2, 3, 4])
def test_a_suite_that_cannot_run_stops_the_rollout(net, code):
    """pytest exit 2 (interrupted), 3 (internal error), 4 (usage error): no check ran, so none passed."""
    with told(net, "workstation", "suite-exit", str(code)):
        mark = net.mark()
        r = net.homelab("deploy", "hosts/hanaakari", "hosts/tokiwa", "--parallel", "1", "--settle", "0")
    assert r.returncode == 1, r.stdout + r.stderr
    assert [s["rc"] for s in suites(net, mark)] == [code]
    assert len({a[2] for a in rebuilds(net, mark)}) == 1  # one host switched, the other never touched
    rows = table_rows(r.stdout)
    first = next(n for n in ("hanaakari", "tokiwa") if rows[n][0] != "-")
    other = "tokiwa" if first == "hanaakari" else "hanaakari"
    assert rows[first][1] == "checks could not run" and rows[other] == ("-", "not started: the rollout stopped")
    assert f"the suite could not run (pytest exit {code})" in r.stdout


def test_an_unreachable_host_fails_before_anything_is_switched(net):
    net.stop_sshd("tokiwa")
    mark = net.mark()
    r = net.homelab("deploy", "hosts/hanaakari", "hosts/tokiwa", "--parallel", "1", "--settle", "0")
    assert r.returncode == 1, r.stdout + r.stderr
    assert rebuilds(net, mark) == [["switch", "--flake", f"{net.root}#hanaakari", "--target-host",
                                    "root@192.168.10.12", "--no-reexec"]]
    gens, result = table_rows(r.stdout)["tokiwa"]
    assert gens == "?" and result.startswith("unreachable (exit 255: ") and "Connection refused" in result


def test_a_failing_cluster_check_fails_the_deploy_and_rolls_nothing_back(net):
    net.reset(joined=("tokiwa",))
    with told(net, "tokiwa", "failing-checks", "service:kubelet.service\n"):  # a worker's: cluster scope
        mark = net.mark()
        r = net.homelab("deploy", "hosts/tokiwa", "--settle", "0")
    assert r.returncode == 1, r.stdout + r.stderr
    assert [s["rc"] for s in suites(net, mark)] == [0, 1]  # its host checks passed, the cluster's did not
    assert not any("--rollback" in a for a in rebuilds(net, mark))
    assert "the cluster checks failed: tokiwa: service:kubelet.service" in r.stdout
    assert "nothing was rolled back" in r.stdout
    assert table_rows(r.stdout) == {"tokiwa": ("60 -> 61", "switched, checks passed")}


def test_stale_generated_files_are_refused_before_any_connection(net):
    entry = net.root / "hosts" / "tokiwa" / "default.nix"
    old = entry.read_text()
    entry.write_text(old.replace('"tokiwa"', '"tokiwa2"'))
    try:
        mark = net.mark()
        r = net.homelab("deploy", "--dry-run")
        assert r.returncode == 2 and "out of date" in r.stderr and "hosts/tokiwa/default.nix" in r.stderr
        r = net.homelab("deploy")
        assert r.returncode == 2
        assert net.mark() == mark  # nothing ran anywhere
    finally:
        entry.write_text(old)


# ---------------------------------------------------------------- verify


TRAEFIK_STANDIN = r"""
import http.server, socket, ssl, sys, threading
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(404); self.end_headers()
    def log_message(self, *a):
        pass
http_server = http.server.HTTPServer(("0.0.0.0", 80), H)
threading.Thread(target=http_server.serve_forever, daemon=True).start()
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
tls = socket.create_server(("0.0.0.0", 443))
print("ready", flush=True)
while True:
    c, _ = tls.accept()
    try:
        with ctx.wrap_socket(c, server_side=True) as s:
            s.recv(1)
    except (OSError, ssl.SSLError):
        pass
"""


@contextlib.contextmanager
def traefik_standin(net):
    """STAND-IN for Traefik behind nginx on the ingress host: HTTP on 80 (a 404), TLS on 443 (self-signed)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificate for the stand-in Traefik's TLS")
    key, cert = net.tmp / "traefik-key.pem", net.tmp / "traefik-cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=traefik-default",
                    "-days", "1", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    ns = net.hostns["hanaakari"]
    p = subprocess.Popen(["ip", "netns", "exec", ns.name, sys.executable, "-c", TRAEFIK_STANDIN, str(cert), str(key)],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        yield
    finally:
        p.kill()
        p.wait(timeout=10)


def test_verify_runs_the_live_checks_alone(net):
    mark = net.mark()
    r = net.homelab("verify")
    assert r.returncode == 1, r.stdout + r.stderr  # nothing answers on hanaakari's 80 and 443: no Traefik
    assert "the cluster layer's checks failed: Traefik through nginx on 192.168.10.12:80 (http), Traefik through " \
        "nginx on 192.168.10.12:443 (tls)" in r.stdout
    with traefik_standin(net):
        r = net.homelab("verify")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "all checks passed on hanaakari, tokiwa, yomogi (cluster scope); the cluster layer's 2 checks too" \
        in r.stdout
    s = suites(net, mark)[-1]
    assert "--homelab-scope=cluster" in s["argv"] and s["rc"] == 0
    assert rebuilds(net, mark) == []
    with told(net, "tokiwa", "failing-checks", "kernel_module:rbd\n"):
        r = net.homelab("verify", "hosts/tokiwa", "--scope", "host")
    assert r.returncode == 1
    assert "1 check failed:\n  tokiwa: kernel_module:rbd" in r.stdout
    assert "--homelab-scope=host" in suites(net, mark)[-1]["argv"]


PROGRESS = re.compile(r"^homelab verify \[\s*[0-9.]+s\] (\S+): (.*)$")


def test_verify_reports_hosts_that_do_not_answer_ssh_and_checks_the_others(net):
    """One bounded SSH probe per host first: a host whose SYNs vanish times out, one with no sshd is refused;
    both are named with ssh's reason and left out, the control plane is checked, with its start and finish."""
    from homelab.expect import lab_expectations

    tokiwa = net.hostns["tokiwa"]
    drop = ("INPUT", "-p", "tcp", "--dport", "22", "-j", "DROP")
    tokiwa.exec("iptables", "-I", *drop)  # in tokiwa's own namespace: SSH connections get no answer at all
    net.stop_sshd("hanaakari")  # nothing listens on port 22: refused at once
    try:
        mark = net.mark()
        r = net.homelab("verify", "--connect-timeout", "2")
        quiet = net.homelab("verify", "hosts/hanaakari", "hosts/yomogi", "--quiet", "--connect-timeout", "2")
    finally:
        tokiwa.exec("iptables", "-D", *drop)
    assert r.returncode == 1, r.stdout + r.stderr
    s, = suites(net, mark)[:1]
    assert [a for a in s["argv"] if a.startswith("--hosts=")] == ["--hosts=ssh://root@192.168.10.10"]
    lines = r.stderr.splitlines()
    assert [ln for ln in lines if not PROGRESS.match(ln)] == [
        "homelab verify: cannot reach hanaakari (192.168.10.12) over SSH: Connection refused",
        "homelab verify: cannot reach tokiwa (192.168.10.11) over SSH: timed out after 2 s"]
    n = sum(c.scope in ("host", "cluster") for c in lab_expectations(net.lab)["yomogi"].checks)
    assert [PROGRESS.match(ln).groups() for ln in lines if PROGRESS.match(ln)] == [
        ("lab", "probing 3 hosts over SSH (ConnectTimeout=2 s)"),
        ("yomogi", f"checking ({n} checks, cluster scope)"),
        ("yomogi", f"{n} checks passed")]
    assert r.stdout == "all checks passed on yomogi (cluster scope)\nnot checked (no SSH): hanaakari, tokiwa\n"
    # --quiet: the error and the result, no progress
    assert quiet.returncode == 1, quiet.stdout + quiet.stderr
    assert quiet.stderr == "homelab verify: cannot reach hanaakari (192.168.10.12) over SSH: Connection refused\n"
    assert quiet.stdout == "all checks passed on yomogi (cluster scope)\nnot checked (no SSH): hanaakari\n"


def test_verify_shows_each_hosts_start_and_finish_with_its_failures(net):
    with told(net, "tokiwa", "failing-checks", "kernel_module:rbd\n"):
        r = net.homelab("verify", "hosts/tokiwa", "hosts/yomogi", "--scope", "host")
    assert r.returncode == 1, r.stdout + r.stderr
    from homelab.expect import lab_expectations

    n = {h: sum(c.scope == "host" for c in e.checks) for h, e in lab_expectations(net.lab).items()}
    events = sorted(PROGRESS.match(ln).groups() for ln in r.stderr.splitlines() if PROGRESS.match(ln))
    assert events == sorted([("lab", "probing 2 hosts over SSH (ConnectTimeout=10 s)"),
                             ("tokiwa", f"checking ({n['tokiwa']} checks, host scope)"),
                             ("tokiwa", f"1 of {n['tokiwa']} checks failed"),
                             ("yomogi", f"checking ({n['yomogi']} checks, host scope)"),
                             ("yomogi", f"{n['yomogi']} checks passed")])


# ---------------------------------------------------------------- sleep and wake


def receive(ns: Netns, port: int, timeout: float = 20.0) -> tuple[bytes, str]:
    def listen():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", port))
            s.settimeout(timeout)
            data, (src, _) = s.recvfrom(4096)
            return data, src

    return ns.call(listen, timeout=timeout + 2)


def test_sleep_refuses_the_control_plane_while_workers_are_up_and_a_node_whose_drain_failed(net):
    net.reset(joined=("hanaakari", "tokiwa"))
    mark = net.mark()
    r = net.homelab("sleep", "hosts/yomogi")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "yomogi is the control plane and hanaakari, tokiwa are up" in r.stderr
    assert net.since(mark, "yomogi") == [] and net.sshd_running("yomogi")
    # a node whose drain fails stays on
    with told(net, "yomogi", "fail-drain"):
        r = net.homelab("sleep", "hosts/hanaakari")
    assert r.returncode == 1 and "not powered off" in r.stdout
    assert net.since(mark, "hanaakari") == [] and net.sshd_running("hanaakari")
    # --force: the control plane is drained (through itself) and powered off all the same
    mark = net.mark()
    r = net.homelab("sleep", "hosts/yomogi", "--force", "--timeout", "20")
    assert r.returncode == 0, r.stdout + r.stderr
    assert [(c["tool"], c["argv"][:2]) for c in net.since(mark, "yomogi")] == [
        ("kubectl", ["drain", "yomogi"]), ("systemctl", ["poweroff"])]
    assert not net.sshd_running("yomogi")


def test_sleep_drains_then_powers_off_and_wake_brings_the_node_back(net):
    net.reset(joined=("hanaakari", "tokiwa"))
    mark = net.mark()
    r = net.homelab("sleep", "hosts/tokiwa", "--timeout", "20")
    assert r.returncode == 0, r.stdout + r.stderr
    drain, = net.since(mark, "yomogi", "kubectl")
    assert drain["argv"] == ["drain", "tokiwa", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=300s"]
    off, = net.since(mark, "tokiwa", "systemctl")
    assert off["argv"] == ["poweroff"] and drain["t1"] < off["t0"]
    assert not net.sshd_running("tokiwa")
    assert net.node("tokiwa") == {"ready": "True", "cordoned": True}

    # wake: the magic packet arrives as a UDP broadcast on tokiwa's LAN; the "NIC" then starts sshd
    got: dict = {}

    def nic():
        got["packet"], got["src"] = receive(net.hostns["tokiwa"], 9)
        net.start_sshd("tokiwa")

    t = threading.Thread(target=nic)
    t.start()
    time.sleep(0.3)  # the listener is bound before the packet leaves
    mark = net.mark()
    r = net.homelab("wake", "hosts/tokiwa", "--timeout", "30")
    t.join(5)
    assert r.returncode == 0, r.stdout + r.stderr
    mac = bytes([0x02, 0x00, 0x00, 0x00, 0x00, 0x11])
    assert got["packet"] == b"\xff" * 6 + mac * 16 and len(got["packet"]) == 102
    assert got["src"] == opslab.WORKSTATION
    assert "magic packet for 02:00:00:00:00:11 sent to 192.168.10.255:9" in r.stdout
    assert "locally administered" in r.stderr  # the placeholder MAC is called one
    assert [c["argv"][:3] for c in net.since(mark, "yomogi", "kubectl")] == [
        ["get", "node", "tokiwa"], ["uncordon", "tokiwa"], ["get", "node", "tokiwa"]]  # Ready, cordoned: uncordon
    assert net.node("tokiwa") == {"ready": "True", "cordoned": False}


def test_wake_to_another_address_and_port_without_waiting(net):
    got: dict = {}
    t = threading.Thread(target=lambda: got.update(packet=receive(net.hostns["hanaakari"], 4009)[0]))
    t.start()
    time.sleep(0.3)
    r = net.homelab("wake", "hosts/hanaakari", "--broadcast", "192.168.10.12", "--port", "4009", "--no-wait")
    t.join(5)
    assert r.returncode == 0, r.stdout + r.stderr
    assert got["packet"] == b"\xff" * 6 + bytes.fromhex("020000000012") * 16
    r = net.homelab("wake", "hosts/yomogi")
    assert r.returncode == 2 and "has no wake_on_lan" in r.stderr
