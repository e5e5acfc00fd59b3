"""``homelab deploy`` of a whole lab whose cluster layer needs secrets, in-process (issue 19 item 3).

The seed example lab (Traefik with the article's Let's Encrypt resolver, Rook Ceph on hanaakari's SSD: three
Helm releases) with a fresh admin key; both Cloudflare tokens are set in its secret store with the real ``age``.
After every host passed (the stand-in network of tests/test_deploy_inproc_behaviour.py), deploy applies the
cluster layer through a stand-in ``ssh`` that records each call: the Secret reaches kubectl's standard input
holding the values decrypted with the admin's key ($HOMELAB_AGE_IDENTITY), and the summary names every release.
"""

from __future__ import annotations

import base64
import json
import shutil
import sys
from pathlib import Path

from homelab import build, deploy
from homelab.model import PLACEHOLDER_KEY
from homelab.secretstore import set_secret

from . import secretlab
from .conftest import REPO
from .test_deploy_inproc_behaviour import lab_net, lab_of, net, out_err, path_with  # noqa: F401 (net: a fixture)

TOKENS = {"cloudflare-dns-api-token": b"dns-token-5be1\n", "cloudflare-zone-api-token": b"zone-token-09c2"}

RECORDER = f"""#!{sys.executable}
import json, os, sys
data = sys.stdin.buffer.read()
with open(os.environ["SSH_CALLS"], "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "stdin": data.decode("latin-1")}}) + "\\n")
"""


def seed_lab_with_secrets(tmp_path: Path) -> Path:
    """The seed example lab, its admin key a fresh one (private half in tmp_path/keys/admin), built, with both
    cluster secrets set."""
    secretlab.need_tools()
    root = tmp_path / "lab"
    shutil.copytree(REPO / "homelab" / "examples" / "seed", root)
    admin = secretlab.keygen(tmp_path / "keys" / "admin", "admin@laptop")
    cluster = root / "hosts" / "cluster.py"
    cluster.write_text(cluster.read_text().replace("admin_keys=[PLACEHOLDER_KEY]", f"admin_keys=[{admin!r}]"))
    assert PLACEHOLDER_KEY not in cluster.read_text() and admin in cluster.read_text()
    shutil.copy(REPO / "flake.nix", root / "flake.nix")
    shutil.copy(REPO / "flake.lock", root / "flake.lock")
    build.build(root, verify_with_nix=False)
    lab = lab_of(root)
    for name, value in TOKENS.items():
        set_secret(root, lab, name, value, cluster=True)
    return root


def test_deploy_of_the_lab_creates_the_secrets_from_the_store_and_applies_every_release(tmp_path, monkeypatch,
                                                                                        net, capsys):
    root = seed_lab_with_secrets(tmp_path)
    path_with(tmp_path, monkeypatch, "nixos-rebuild", "age")
    (tmp_path / "bin" / "ssh").write_text(RECORDER)
    (tmp_path / "bin" / "ssh").chmod(0o755)
    monkeypatch.setenv("SSH_CALLS", str(tmp_path / "calls.jsonl"))
    monkeypatch.setenv("HOMELAB_AGE_IDENTITY", str(tmp_path / "keys" / "admin"))
    lab = lab_of(root)
    lab_net(net, lab, root, ["yomogi", "tokiwa", "hanaakari"])
    assert deploy.deploy(lab, root, None, deploy.DeployOptions(parallel=1)) == 0
    out, err = out_err(capsys)
    assert err == ""
    assert out.split("\n\n")[-1].splitlines() == [
        "host       generation  result                   time",
        "yomogi     30 -> 31    switched, checks passed  4 s",
        "hanaakari  10 -> 11    switched, checks passed  5 s",
        "tokiwa     20 -> 21    switched, checks passed  5 s",
        "homelab deploy [  15.0s] cluster layer: label node hanaakari",
        "homelab deploy [  15.0s] cluster layer: create the releases' Secrets",
        "homelab deploy [  15.0s] cluster layer: release rook-ceph (rook-ceph v1.18.9)",
        "homelab deploy [  15.0s] cluster layer: release rook-ceph-cluster (rook-ceph-cluster v1.18.9)",
        "homelab deploy [  15.0s] cluster layer: release traefik (traefik 37.1.0)",
        "applied the cluster layer: 5 steps (rook-ceph, rook-ceph-cluster, traefik)",
        "deployed 3 hosts; host and cluster checks passed"]
    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    kube = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "root@192.168.10.10",
            "env KUBECONFIG=/etc/kubernetes/cluster-admin.kubeconfig "]
    assert [c["argv"][:-1] for c in calls] == [kube[:-1]] * 5
    assert [c["argv"][-1].removeprefix(kube[-1]).split()[:3] for c in calls] == [
        ["kubectl", "label", "node"], ["kubectl", "apply", "-f"], ["helm", "upgrade", "--install"],
        ["helm", "upgrade", "--install"], ["helm", "upgrade", "--install"]]
    manifest = json.loads(calls[1]["stdin"])
    assert [(i["kind"], i["metadata"]["name"]) for i in manifest["items"]] == [
        ("Namespace", "traefik"), ("Secret", "cloudflare-resolver-env")]
    assert {k: base64.b64decode(v) for k, v in manifest["items"][1]["data"].items()} == {
        "CF_DNS_API_TOKEN": TOKENS["cloudflare-dns-api-token"], "CF_ZONE_API_TOKEN": TOKENS["cloudflare-zone-api-token"]}
