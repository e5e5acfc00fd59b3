"""Edge cases a reviewer found: each one a user could hit, each asserted end to end through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from homelab.cli import main
from tests.test_cli import snapshot


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_building_one_host_also_builds_hosts_sharing_a_changed_module(lab_copy, nix, capsys):
    # hanaakari's Ceph settings now differ; it sorts first, and most hosts keep the plain ceph.nix
    # (a per-host setting: the kubelet directory must be the same on every Ceph host, the cluster's CSI rule)
    edit(lab_copy / "hosts/hanaakari/host.py", 'CephStorage(disks=["/dev/sda"])',
         'CephStorage(disks=["/dev/sda"], containerd_nofile=4096)')
    assert main(["build", str(lab_copy / "hosts/hanaakari")]) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    assert 'LimitNOFILE = "4096"' not in (lab_copy / "modules/k8s/ceph.nix").read_text()  # tokiwa's and yomogi's
    assert 'LimitNOFILE = "4096"' in (lab_copy / "modules/k8s/ceph-2.nix").read_text()
    assert main(["build", "--check", "--root", str(lab_copy)]) == 0, capsys.readouterr().out
    # and when the shared file itself must change, the hosts importing it are built too
    edit(lab_copy / "hosts/tokiwa/host.py", "CephStorage()", "CephStorage(containerd_nofile=4096)")
    assert main(["build", str(lab_copy / "hosts/tokiwa")]) == 0
    err = capsys.readouterr().err
    assert "note: also building" in err
    assert main(["build", "--check", "--root", str(lab_copy)]) == 0


def test_a_crlf_copy_of_a_generated_file_is_not_the_same_file(lab_copy, capsys):
    f = lab_copy / "modules/dns/coredns.nix"
    f.write_bytes(f.read_bytes().replace(b"\n", b"\r\n"))
    assert main(["build", "--check", "--root", str(lab_copy)]) == 1
    assert "modules/dns/coredns.nix" in capsys.readouterr().out
    assert main(["build", "--root", str(lab_copy)]) == 2
    assert "modules/dns/coredns.nix: file: was edited by hand" in capsys.readouterr().err


def test_nested_and_overlapping_package_names(lab_copy, nix, capsys):
    edit(lab_copy / "hosts/yomogi/host.py", 'options={"services.openssh.enable": True},',
         'options={"services.openssh.enable": True, "boot.extraModulePackages": '
         '[Pkg("linuxPackages_rpi4.v4l2loopback")], "environment.systemPackages": [Pkg("dockerTools")]},')
    edit(lab_copy / "hosts/yomogi/host.py", "from homelab import ", "from homelab import Pkg, ")
    edit(lab_copy / "hosts/yomogi/host.py", "boot=RaspberryPi4(),", 'boot=RaspberryPi4(kernel_packages="linuxPackages_rpi4"),')
    assert main(["build", "--root", str(lab_copy)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["show", str(lab_copy / "hosts/yomogi"), "--json"]) == 0
    opts = json.loads(capsys.readouterr().out)
    assert opts["boot.extraModulePackages"] == [{"_type": "pkg", "attrPath": "linuxPackages_rpi4.v4l2loopback"}]
    assert opts["boot.kernelPackages"] == {"_type": "pkg", "attrPath": "linuxPackages_rpi4"}
    assert opts["services.kubernetes.addons.dns.corednsImage"]["function"] == "dockerTools.buildImage"


def test_force_around_a_group_of_options_applies_to_each(lab_copy, nix, capsys):
    edit(lab_copy / "hosts/tokiwa/host.py", 'options={"services.openssh.enable": True},',
         'options={"services.openssh.enable": True, "services.tailscale": force({"openFirewall": True})},')
    edit(lab_copy / "hosts/tokiwa/host.py", "from homelab import ", "from homelab import force, ")
    assert main(["build", "--root", str(lab_copy)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["show", str(lab_copy / "hosts/tokiwa"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["services.tailscale.openFirewall"] is True


def test_a_setting_below_an_attribute_set_homelab_writes_merges(lab_copy, nix, capsys):
    edit(lab_copy / "hosts/tokiwa/host.py", 'options={"services.openssh.enable": True},',
         'options={"services.openssh.enable": True, "networking.defaultGateway.metric": 100},')
    assert main(["build", "--root", str(lab_copy)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["show", str(lab_copy / "hosts/tokiwa"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["networking.defaultGateway"] == {
        "address": "192.168.10.1", "interface": "enp1s0", "metric": 100}


@pytest.mark.parametrize("where, old, new, message", [
    ("tokiwa", "roles=[Worker(), CephStorage(), Tailscale()],",
     "roles=[type('GpuWorker', (), {})(), CephStorage(), Tailscale()],",  # not a Role at all
     "hosts/tokiwa: roles[0]: <"),
    ("tokiwa", 'options={"services.openssh.enable": True},',
     'options={"services.openssh.enable": force(True) if False else __import__("homelab").Priority(True, 10**30)},',
     "is not a module priority"),
    ("tokiwa", 'options={"services.openssh.enable": True},',
     'options={"x.y": __import__("homelab").PkgCall("dockerTools.pullImage", {"a": 1.5})},',
     "float values cannot be written as Nix"),
    ("tokiwa", 'options={"services.openssh.enable": True},',
     'options={"x.y": __import__("homelab").PkgCall("f", {"token": "ghp_' + "a" * 36 + '"})},',
     "looks like"),
    ("hanaakari", "IngressProxy(http_nodeport=31080, https_nodeport=31443)",
     "IngressProxy(http_nodeport=31080, https_nodeport=31443, https_port=10250)",
     "hosts/hanaakari: IngressProxy.https_port: 10250 is taken on this host by the kubelet"),
    ("yomogi", 'DnsServer(forward=["1.1.1.1", "1.0.0.1"])', 'DnsServer(forward=["1.1.1.1"], port=8888)',
     "hosts/yomogi: DnsServer.port: 8888 is taken on this host by easyCerts' cfssl"),
])
def test_more_bad_inputs_are_problems_not_tracebacks(lab_copy, capsys, where, old, new, message):
    host_py = lab_copy / f"hosts/{where}/host.py"
    edit(host_py, old, new)
    edit(host_py, "from homelab import ", "from homelab import force, ")
    before = snapshot(lab_copy)
    assert main(["build", "--root", str(lab_copy)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert snapshot(lab_copy) == before


def test_a_wrong_element_type_is_reported_once(lab_copy, capsys):
    edit(lab_copy / "hosts/tokiwa/host.py", 'options={"services.openssh.enable": True},',
         'options={"services.openssh.enable": True}, kernel_modules=("kvm-intel", 1),')
    assert main(["check", "--root", str(lab_copy)]) == 2
    err = capsys.readouterr().err
    assert "hosts/tokiwa: kernel_modules[1]: 1 is an int, not a string" in err
    assert "TypeError" not in err and "1 problem" in err


def test_a_file_where_a_folder_must_be_is_a_problem(lab_copy, capsys):
    import shutil

    shutil.rmtree(lab_copy / "modules/dns")
    (lab_copy / "modules/dns").write_text("not a folder\n")
    assert main(["build", "--root", str(lab_copy)]) == 2
    err = capsys.readouterr().err
    assert "modules/dns: file: is in the way: homelab needs a folder there to write modules/dns/coredns.nix" in err


def test_show_without_nix_says_nix_is_needed(lab_copy, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["show", str(lab_copy / "hosts/yomogi")]) == 4
    assert "show needs nix" in capsys.readouterr().err


def test_plan_for_one_host_shows_the_hosts_a_build_would_widen_to(lab_copy, capsys):
    edit(lab_copy / "hosts/hanaakari/host.py", "IngressProxy(http_nodeport=31080, https_nodeport=31443)",
         "IngressProxy(http_nodeport=31080, https_nodeport=31444)")
    edit(lab_copy / "hosts/cluster.py", "api_port=6443", "api_port=6444")
    assert main(["plan", str(lab_copy / "hosts/tokiwa"), "--json"]) == 1
    plan = json.loads(capsys.readouterr().out)
    # tokiwa's build changes modules/k8s/base.nix, which yomogi and hanaakari import: they are built too
    assert sorted(plan["hosts"]) == ["hanaakari", "tokiwa", "yomogi"]
    changed = {f["path"] for f in plan["files"]}
    assert {"modules/k8s/base.nix", "modules/k8s/master.nix", "modules/ingress/nginx-stream.nix"} <= changed
