"""`homelab test` on labs that are not the seed lab as shipped: the repository's, a changed one, a new one.

The acceptance of issue 8: a copy of this repository's lab with a worker added and the pod range and
the domain changed, built, passes `homelab test` (exit 0); so does a lab made by `homelab init` once
its hardware placeholders are replaced (before that, it is refused with exit 2). A stale file, a
lab outside any folder, and a proof that does not hold give their exit codes.

Parts that need root (network namespaces) or a program (nginx, nft) are skipped with the reason
where they cannot run; the tests accept "skipped" only together with such a reason.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from homelab import DnsServer, IngressProxy, helmfile, labtest
from homelab.cli import main
from homelab.init import init
from homelab.load import load_or_raise
from homelab.proofs import netns

from .conftest import REPO, copy_lab

MACHINE_REASONS = ("need root", "not installed", "no stream module", "fails in a network namespace", "need KVM",
                   "`ip netns add` failed")


def homelab(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "homelab", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})


def results(root: Path, *args: str) -> dict[str, tuple[str, str]]:
    """`homelab test --json` on the lab: part -> (status, detail); fails unless it exits 0."""
    r = homelab("test", "--json", *args, cwd=root)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    data = json.loads(r.stdout)
    assert data["version"] == 1 and data["ok"] is True and Path(data["root"]) == root.resolve()
    return {o["name"]: (o["status"], o["detail"]) for o in data["results"]}


def assert_all_passed(got: dict[str, tuple[str, str]], lab, hosts: list[str] | None = None) -> None:
    """Every part the lab calls for is there, and passed, or was skipped for a reason of this machine."""
    names = hosts or [h.hostname for h in lab.hosts]
    ingress = [h.hostname for h in lab.with_role(IngressProxy) if h.hostname in names]
    dns = [h.hostname for h in lab.with_role(DnsServer) if h.hostname in names]
    tool = "nft" if lab.cluster.firewall == "nftables" else labtest.IPTABLES
    firewall = [f"firewall {n} ({tool})" for n in names]
    if f"firewall ({tool})" in got:  # the machine cannot run any: one skip says why
        firewall = [f"firewall ({tool})"]
    want = ["generated files", "nix", *firewall,
            *([f"CoreDNS zone {n}" for n in dns] if dns else ["CoreDNS zone"]),
            *([f"nginx stream {n}" for n in ingress] if ingress else ["nginx stream"]), "cluster layer (helm)",
            "vm-tests"]
    assert list(got) == want
    for name, (status, detail) in got.items():
        if name in ("nginx stream", "CoreDNS zone"):
            assert status == "skipped" and "no host (of those tested) has the" in detail
        elif name == "cluster layer (helm)" and not helmfile.releases(lab):
            assert status == "skipped" and "the lab has no cluster layer" in detail, detail
        elif name == "cluster layer (helm)" and status == "skipped":
            assert "helm is not installed" in detail, detail  # ./lab test installs it; pip alone does not
        elif name == "vm-tests":
            assert status == "skipped" and any(r in detail for r in ("homelab test --vm", "KVM", "no flake.nix")), detail
        elif status == "skipped":
            assert any(r in detail for r in MACHINE_REASONS), f"{name} skipped for no machine reason: {detail}"
        else:
            assert status == "passed", f"{name}: {detail}"
    assert got["generated files"][0] == got["nix"][0] == "passed"


def test_the_repository_lab_passes_homelab_test(repo_lab):
    lab, _ = repo_lab
    assert_all_passed(results(REPO), lab)


def _free_address(lab) -> str:
    taken = {lab.cluster.gateway, *lab.cluster.nameservers, *(h.ip for h in lab.hosts)}
    return str(next(a for a in lab.cluster.lan.hosts() if a not in taken and int(a) & 0xFF >= 10))


def test_acceptance_a_changed_copy_of_the_repository_lab_passes(repo_lab, nix, tmp_path):
    """Add a worker, change the pod range and the domain, build: homelab test passes on the new lab."""
    lab, _ = repo_lab
    root = copy_lab(REPO, tmp_path / "lab")
    pod = "10.244.0.0/16" if str(lab.cluster.pod_cidr) != "10.244.0.0/16" else "10.248.0.0/16"
    with open(root / "hosts" / "cluster.py", "a", encoding="utf-8") as f:
        f.write(f'\nimport attrs\ncluster = attrs.evolve(cluster, pod_cidr="{pod}", domain="lab.example.org")\n')
    added = next(n for n in (f"kiri{i}" for i in range(100)) if not (root / "hosts" / n).exists())
    (root / "hosts" / added).mkdir()
    (root / "hosts" / added / "host.py").write_text(
        f'from homelab import Host, Worker\n\nhost = Host(hostname="{added}", system="x86_64-linux", state_version="26.05", '
        f'interface="eno1", address="{_free_address(lab)}/{lab.cluster.lan.prefixlen}", roles=[Worker()],\n'
        '            options={\'fileSystems."/"\': {"device": "/dev/disk/by-label/nixos"}})\n')
    r = homelab("build", cwd=root)
    assert r.returncode == 0, r.stderr
    changed, _ = load_or_raise(root)
    assert (str(changed.cluster.pod_cidr), changed.cluster.domain) == (pod, "lab.example.org")
    assert added in {h.hostname for h in changed.hosts} and len(changed.hosts) == len(lab.hosts) + 1
    got = results(root)
    assert_all_passed(got, changed)
    for name, (status, detail) in got.items():
        if name.startswith("CoreDNS zone") and status == "passed":
            assert " in lab.example.org answered " in detail
    # the changed ranges are in the files nix read back, not only in the model
    rb = netns.read_back(root, nix, cache=False)
    assert rb.options[added]["services.kubernetes.clusterCidr"] == pod


def test_a_lab_made_by_init_is_refused_until_its_placeholders_are_replaced_then_passes(tmp_path):
    root = tmp_path / "mylab"
    r = homelab("init", str(root), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for command in ("build", "test"):
        r = homelab(command, cwd=root)
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert [ln.strip() for ln in r.stderr.splitlines()[1:]] == [
            f"hosts/{h}: imports: ./hardware-configuration.nix is the placeholder `homelab init` wrote: replace it "
            "with this machine's own (on the machine: nixos-generate-config --show-hardware-config), or let "
            f"`python -m homelab install hosts/{h} --target root@ADDRESS` write it (nixos-anywhere generates it "
            "there); NixOS refuses a host without a root file system" for h in ("control", "worker1")]
    assert not (root / "hosts" / "lab.nix").exists()  # nothing written
    for h in ("control", "worker1"):
        (root / "hosts" / h / "hardware-configuration.nix").write_text(
            '{ ... }: { fileSystems."/" = { device = "/dev/disk/by-label/nixos"; fsType = "ext4"; }; }\n')
    assert homelab("build", cwd=root / "hosts" / "control").returncode == 0  # found from inside the lab
    lab, _ = load_or_raise(root)
    assert_all_passed(results(root), lab)


def test_an_nftables_lab_passes(lab_copy):
    cluster_py = lab_copy / "hosts" / "cluster.py"
    cluster_py.write_text(cluster_py.read_text().replace("easy_certs=True,", 'easy_certs=True,\n    firewall="nftables",'))
    assert homelab("build", cwd=lab_copy).returncode == 0
    lab, _ = load_or_raise(lab_copy)
    assert lab.cluster.firewall == "nftables"
    assert_all_passed(results(lab_copy, "hosts/tokiwa", "hosts/yomogi"), lab, ["tokiwa", "yomogi"])


def test_stale_files_fail_and_stop_the_rest(lab_copy):
    host_py = lab_copy / "hosts" / "tokiwa" / "host.py"
    host_py.write_text(host_py.read_text().replace('roles=[', 'kernel_params=["quiet"],\n    roles=['))
    r = homelab("test", cwd=lab_copy)
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[1] == ("  failed   generated files: out of date (run `homelab build`): hosts/tokiwa/default.nix")
    assert lines[2].startswith("  skipped  the rest: ") and lines[3] == "0 passed, 1 failed, 1 skipped"


def test_where_the_lab_is(lab_copy, tmp_path_factory):
    outside = tmp_path_factory.mktemp("nolab")
    r = homelab("test", "--json", "hosts/tokiwa", "--root", str(lab_copy), cwd=outside)  # relative to --root
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["root"] == str(lab_copy.resolve())
    r = homelab("test", cwd=outside)
    assert r.returncode == 2 and "no lab here" in r.stderr and "homelab init DIR" in r.stderr
    r = homelab("test", "--suite-path", cwd=outside)
    assert r.returncode == 0 and (Path(r.stdout.strip()) / "conftest.py").is_file()


def test_a_proof_that_does_not_hold_fails_with_exit_1(lab_copy, monkeypatch, capsys):
    """A model whose flow table lets the LAN reach a port the generated rules do not open: the real firewall
    refuses those probes, and homelab test says so (exit 1)."""
    why = netns.netns_unavailable()
    if why:
        pytest.skip(why)
    from homelab import firewall
    from homelab.role import Flow, Source

    real = firewall.flow_table

    def opening_more(lab):
        rows = real(lab)
        return rows + [firewall.Row("tokiwa", 8123, "tcp", Source("lan"), "a port the files do not open", "test")]

    monkeypatch.setattr(firewall, "flow_table", opening_more)
    assert main(["test", str(lab_copy / "hosts" / "tokiwa")]) == 1
    out = capsys.readouterr().out
    assert "  failed   firewall tokiwa (iptables-nft): tokiwa: " in out and "probes wrong" in out
    assert "LAN client: tcp" in out and ":8123 via enp1s0: expect accept (8123/tcp from lan: a port the files do " \
        "not open (test)) -> got refuse" in out
    # files, nix (and the cluster layer, where helm is installed); firewall; nginx, dns (cluster), vm
    assert out.rstrip().endswith("3 passed, 1 failed, 3 skipped" if _have_helm() else "2 passed, 1 failed, 4 skipped")


def _have_helm() -> bool:
    from homelab.proofs import cluster

    try:
        cluster.find_helm()
    except cluster.Unavailable:
        return False
    return True
