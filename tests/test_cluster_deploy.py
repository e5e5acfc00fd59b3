"""Applying the cluster layer (homelab deploy) and checking it live (homelab verify), against stand-ins.

A stand-in ``ssh`` (a real process first on PATH) records each call's argv and the bytes it read on stdin,
and prints what the control plane's kubectl would; the steps, their order, what reaches stdin and what never
reaches an argument list are asserted on those records.  Traefik's answers through nginx are checked against
real servers on loopback: an HTTP server and a TLS server (openssl's self-signed certificate).
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from homelab import cluster_deploy, helmfile
from homelab.load import load_or_raise
from homelab.remote import SshOptions

CANARY = {"cloudflare-dns-api-token": b"canary-dns-token-7f3a9", "cloudflare-zone-api-token": b"canary-zone-token-c41e"}

STANDIN = r'''#!/usr/bin/env python3
import json, os, sys
data = sys.stdin.buffer.read()
log = os.environ["STANDIN_LOG"]
with open(log, "a") as f:
    f.write(json.dumps({"argv": sys.argv[1:], "stdin": data.decode("latin-1")}) + "\n")
fail = os.environ.get("STANDIN_FAIL", "")
if fail and fail in sys.argv[-1]:
    print("Error: INSTALLATION FAILED: stand-in says no", file=sys.stderr)
    sys.exit(1)
if "get cephcluster" in sys.argv[-1]:
    print(os.environ.get("STANDIN_HEALTH", "HEALTH_OK"), end="")
'''


@pytest.fixture
def standin(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "ssh").write_text(STANDIN)
    (bindir / "ssh").chmod(0o755)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STANDIN_LOG", str(log))

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return calls


def reveal(secret):
    return CANARY[secret.name]


@pytest.fixture
def acme_root(tmp_path):
    """The article's lab (Traefik with its ACME resolver, Rook Ceph), its cluster layer written to a folder."""
    from .test_cluster_layer import acme_lab, write

    lab = acme_lab()
    write(tmp_path / "lab", lab)
    return lab, tmp_path / "lab"


def test_the_steps_in_order_with_secrets_and_values_on_stdin_only(acme_root, standin):
    lab, seed_root = acme_root
    steps = cluster_deploy.plan(lab, SshOptions())
    assert [s.what for s in steps] == [
        "label node hanaakari", "create the releases' Secrets", "release rook-ceph (rook-ceph v1.18.9)",
        "release rook-ceph-cluster (rook-ceph-cluster v1.18.9)", "release traefik (traefik 37.1.0)"]
    said = []
    results = cluster_deploy.apply(seed_root, steps, reveal, say=said.append)
    assert [r.rc for r in results] == [0] * 5 and said == [s.what for s in steps]
    calls = standin()
    assert [c["argv"][-1].split()[3:6] for c in calls] == [
        ["label", "node", "hanaakari"], ["apply", "-f", "-"], ["upgrade", "--install", "rook-ceph"],
        ["upgrade", "--install", "rook-ceph-cluster"], ["upgrade", "--install", "traefik"]]
    assert all(c["argv"][-2] == "root@192.168.10.10" for c in calls)  # all on the control plane
    manifest = json.loads(calls[1]["stdin"])
    assert [(i["kind"], i["metadata"]["name"]) for i in manifest["items"]] == [
        ("Namespace", "traefik"), ("Secret", "cloudflare-resolver-env")]
    secret = manifest["items"][1]
    assert secret["metadata"]["namespace"] == "traefik"
    assert {k: base64.b64decode(v) for k, v in secret["data"].items()} == {
        "CF_DNS_API_TOKEN": CANARY["cloudflare-dns-api-token"], "CF_ZONE_API_TOKEN": CANARY["cloudflare-zone-api-token"]}
    for c, name in zip(calls[2:], ("rook-ceph", "rook-ceph-cluster", "traefik")):
        assert c["stdin"] == (seed_root / "cluster" / "values" / f"{name}.yaml").read_text()
    # the values never reach an argument list, the dry-run or any file of the lab
    shown = cluster_deploy.render(steps, seed_root)
    forms = [v for value in CANARY.values() for v in (value.decode(), base64.b64encode(value).decode())]
    for form in forms:
        assert not any(form in " ".join(c["argv"]) for c in calls)
        assert form not in shown
        assert not [p for p in seed_root.rglob("*") if p.is_file() and form.encode() in p.read_bytes()]


def test_a_failing_release_stops_the_rest(acme_root, standin, monkeypatch):
    lab, seed_root = acme_root
    monkeypatch.setenv("STANDIN_FAIL", "--install rook-ceph-cluster")
    results = cluster_deploy.apply(seed_root, cluster_deploy.plan(lab, SshOptions()), reveal, say=lambda m: None)
    assert [(r.step.what, r.rc) for r in results][-2:] == [("release rook-ceph (rook-ceph v1.18.9)", 0),
                                                          ("release rook-ceph-cluster (rook-ceph-cluster v1.18.9)", 1)]
    assert "INSTALLATION FAILED" in results[-1].output
    assert len(standin()) == 4  # traefik was never attempted


def test_no_release_no_step():
    from . import labkit
    import attrs
    from homelab import DnsServer, IngressProxy

    hosts = [attrs.evolve(h, roles=[r for r in h.roles if not isinstance(r, (IngressProxy, DnsServer))])
             for h in labkit.seed_hosts()]
    lab = labkit.lab(hosts)
    assert helmfile.releases(lab) == () and cluster_deploy.plan(lab, SshOptions()) == []


def test_ceph_health_is_read_through_kubectl(seed_root, standin, monkeypatch):
    lab, _ = load_or_raise(seed_root)
    ok = cluster_deploy.ceph_health(lab, SshOptions(), "rook-ceph")
    assert (ok.ok, ok.detail) == (True, "HEALTH_OK")
    assert standin()[0]["argv"][-1] == ("env KUBECONFIG=/etc/kubernetes/cluster-admin.kubeconfig kubectl -n rook-ceph "
                                       "get cephcluster -o 'jsonpath={.items[*].status.ceph.health}'")
    monkeypatch.setenv("STANDIN_HEALTH", "HEALTH_WARN")
    warn = cluster_deploy.ceph_health(lab, SshOptions(), "rook-ceph")
    assert (warn.ok, warn.detail) == (False, "HEALTH_WARN")


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # what Traefik answers for a host it has no route for
        self.send_response(404)
        self.end_headers()

    def log_message(self, *a):
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_traefik_answers_http_and_tls_through_the_proxy(tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ok = cluster_deploy.http_through("127.0.0.1", server.server_address[1], timeout=5)
        assert (ok.ok, ok.detail) == (True, "HTTP/1.0 404 Not Found")
    finally:
        server.shutdown()
        server.server_close()
    closed = cluster_deploy.http_through("127.0.0.1", _free_port(), timeout=5)
    assert not closed.ok and closed.detail.startswith("no connection:")
    # a TCP server that is not HTTP (nginx streaming to a NodePort where something else listens)
    raw = socket.socket()
    raw.bind(("127.0.0.1", 0))
    raw.listen(1)

    def babble():
        c, _ = raw.accept()
        c.sendall(b"SSH-2.0-not-traefik\r\n")
        c.close()
    threading.Thread(target=babble, daemon=True).start()
    other = cluster_deploy.http_through("127.0.0.1", raw.getsockname()[1], timeout=5)
    raw.close()
    assert not other.ok and other.detail == "not an HTTP response: 'SSH-2.0-not-traefik'"

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificate for the TLS stand-in")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=traefik-default",
                    "-days", "1", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)

    def serve_tls():
        c, _ = lsock.accept()
        try:
            with ctx.wrap_socket(c, server_side=True) as s:
                s.recv(1)
        except (OSError, ssl.SSLError):
            pass
    threading.Thread(target=serve_tls, daemon=True).start()
    tls = cluster_deploy.tls_through("127.0.0.1", lsock.getsockname()[1], timeout=5)
    lsock.close()
    assert tls.ok and tls.detail.startswith("handshake done (TLSv1.")
    plain = cluster_deploy.tls_through("127.0.0.1", _free_port(), timeout=5)
    assert not plain.ok and plain.detail.startswith("no TLS handshake:")


def test_the_secret_store_fills_the_kubernetes_secret_through_stdin(tmp_path, standin, monkeypatch):
    """The join with the secrets work: values set with the real age in a lab's store (homelab.secretstore)
    reach kubectl's stdin, decrypted with the admin's key, and no argument, file or dry-run."""
    from homelab import Secret, deploy
    from homelab.component import KubeSecret
    from homelab.secretstore import set_secret

    from . import secretlab

    secretlab.need_tools()
    root, keys = secretlab.make(tmp_path, ts_hosts=())
    lab, _ = load_or_raise(root)
    for name, value in CANARY.items():
        set_secret(root, lab, name, value, cluster=True)
    ks = KubeSecret("traefik", "cloudflare-resolver-env", {"CF_DNS_API_TOKEN": Secret("cloudflare-dns-api-token"),
                                                          "CF_ZONE_API_TOKEN": Secret("cloudflare-zone-api-token")})
    step = cluster_deploy.ClusterStep("create the releases' Secrets", ("ssh", "root@cp", "kubectl apply -f -"),
                                      secrets=(ks,))
    results = cluster_deploy.apply(root, [step], deploy.reveal_secret(root, str(keys / "admin")),
                                   say=lambda m: None)
    assert [r.rc for r in results] == [0]
    call, = standin()
    secret = json.loads(call["stdin"])["items"][1]
    assert {k: base64.b64decode(v) for k, v in secret["data"].items()} == {
        "CF_DNS_API_TOKEN": CANARY["cloudflare-dns-api-token"], "CF_ZONE_API_TOKEN": CANARY["cloudflare-zone-api-token"]}
    for value in CANARY.values():
        assert value.decode() not in " ".join(call["argv"]) and value.decode() not in step.shell()
        assert not [p for p in root.rglob("*") if p.is_file() and value in p.read_bytes()]


def _acme_lab_folder(root: Path) -> Path:
    """tests/opslab's seed lab folder (flake and all), its cluster running Traefik with the article's resolver."""
    import textwrap

    from homelab import build

    from . import opslab

    opslab.write_seed_lab(root)
    (root / "hosts" / "cluster.py").write_text(textwrap.dedent('''\
        import attrs

        from homelab import Traefik
        from tests import labkit
        from tests.test_cluster_layer import ACME

        cluster = attrs.evolve(labkit.cluster(), components=[Traefik(acme=ACME)])
        '''))
    build.build(root, verify_with_nix=False)
    return root


def test_deploy_refuses_to_start_without_the_cluster_secrets_the_build_only_warns(tmp_path):
    """A cluster-only secret not set: `homelab build` warns (naming it and the command that sets it), a whole-lab
    `homelab deploy` stops with exit 2 before it runs anything, its dry run warns, a deploy of named hosts (no
    cluster layer) does not care."""
    from .test_deploy import homelab as run_homelab

    root = _acme_lab_folder(tmp_path / "lab")
    fix = {n: f"secret '{n}' is not set (secrets/{n}.age is missing)" for n in
           ("cloudflare-dns-api-token", "cloudflare-zone-api-token")}
    warned = [f"cluster: Acme.env: warning: {why}: `homelab deploy` creates the Kubernetes Secret from it and "
              f"refuses to run without it; set it: homelab secrets set {n} --cluster < file-holding-the-value"
              for n, why in fix.items()]
    from homelab.load import load

    _, problems = load(root)  # what build, check and deploy load: warnings only, for these
    assert [str(p) for p in problems if "cloudflare" in p.reason] == warned
    assert {p.severity for p in problems if "cloudflare" in p.reason} == {"warning"}

    bin_ = tmp_path / "bin"
    bin_.mkdir()
    marker = tmp_path / "ran"
    for tool in ("ssh", "nixos-rebuild", "nix"):
        (bin_ / tool).write_text(f"#!/bin/sh\necho {tool} \"$@\" >> {marker}\nexit 1\n")
        (bin_ / tool).chmod(0o755)
    r = run_homelab(root, "deploy", env={"PATH": f"{bin_}:{os.environ['PATH']}"})
    assert r.returncode == 2, r.stderr
    errors = [f"cluster: Acme.env: {why}, and the cluster layer creates a Kubernetes Secret from it; set it first: "
              f"homelab secrets set {n} --cluster < file-holding-the-value" for n, why in fix.items()]
    assert [ln for ln in r.stderr.splitlines() if "warning:" not in ln] == [
        f"homelab: {errors[0]}", errors[1], "nothing was deployed"]
    assert [ln for ln in r.stderr.splitlines() if "warning:" in ln and "cloudflare" in ln] == warned
    assert not marker.exists()  # no ssh, no nixos-rebuild: nothing ran

    r = run_homelab(root, "deploy", "--dry-run", env={"PATH": f"{bin_}:{os.environ['PATH']}"})
    assert r.returncode == 0, r.stderr
    assert [ln for ln in r.stderr.splitlines() if "without --dry-run" in ln] == [
        f"homelab deploy: warning: {e}; without --dry-run, deploy stops here before anything runs" for e in errors]
    r = run_homelab(root, "deploy", "hosts/tokiwa", "--dry-run", env={"PATH": f"{bin_}:{os.environ['PATH']}"})
    assert r.returncode == 0 and "without --dry-run" not in r.stderr, r.stderr
    assert not marker.exists()

    (root / "secrets").mkdir()
    for n in fix:  # set (the build and deploy look for the file; its content is the secrets store's business)
        (root / "secrets" / f"{n}.age").write_bytes(b"age-encryption.org/v1\n--- x\n")
    r = run_homelab(root, "deploy", "--dry-run", env={"PATH": f"{bin_}:{os.environ['PATH']}"})
    assert r.returncode == 0 and "cloudflare-dns-api-token" not in r.stderr, r.stderr
