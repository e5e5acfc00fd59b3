"""What the compiler hands on, exactly, for a small lab built here (no nix): the lab's data for the flake, each
host's files and imports, which file a role's module becomes (variants -2, -3), and the kernel settings section."""

from __future__ import annotations

import attrs

from homelab import ControlPlane, Host, Secret, Tailscale, Worker
from homelab.compile import HostFiles, compile_lab, host_sections, lab_data
from homelab.nixmodule import Section
from homelab.role import HostContext
from homelab.roles.control_plane import ControlPlane as ControlPlaneClass
from homelab.roles.tailscale import Tailscale as TailscaleClass
from homelab.roles.worker import Worker as WorkerClass

from . import labkit


def small_lab():
    """A control plane with a Tailscale auth key (a secret), two workers on different LAN interfaces, and a NAS
    outside Kubernetes built on tokiwa, with hand-written imports and kernel settings."""
    s = labkit.seed_hosts()
    return labkit.lab([
        attrs.evolve(s[0], roles=[ControlPlane(), Tailscale(auth_key=Secret("tailscale-auth-key"))]),
        attrs.evolve(s[1], roles=[Worker()]),
        Host(hostname="suzu", system="x86_64-linux", state_version="25.05", interface="eth1",
             address="192.168.10.13", roles=[Worker()]),
        Host(hostname="nas", system="x86_64-linux", state_version="25.05", interface="eth0", address="192.168.10.20",
             roles=[], build_on="tokiwa", imports=["hardware.nix", "./extra.nix"], kernel_modules=["kvm-intel"],
             kernel_params=["quiet"]),
    ])


def _deploy(host: str, target: bool = False, build: str | None = None) -> dict:
    return {"targetUser": "root", "targetHost": host, "targetPort": 22, "buildOnTarget": target, "buildHost": build}


def test_lab_data_gives_the_flake_each_hosts_facts():
    data = lab_data(small_lab()).value
    assert data["hosts"] == {
        "nas": {"system": "x86_64-linux", "interface": "eth0", "address": "192.168.10.20", "tailscaleAddress": None,
                "kubernetes": None, "roles": [], "tags": [], "deploy": _deploy("192.168.10.20", build="tokiwa")},
        "suzu": {"system": "x86_64-linux", "interface": "eth1", "address": "192.168.10.13", "tailscaleAddress": None,
                 "kubernetes": "worker", "roles": ["Worker"], "tags": ["k8s-worker"],
                 "deploy": _deploy("192.168.10.13")},
        "tokiwa": {"system": "x86_64-linux", "interface": "enp1s0", "address": "192.168.10.11",
                   "tailscaleAddress": "100.64.0.11", "kubernetes": "worker", "roles": ["Worker"],
                   "tags": ["k8s-worker"], "deploy": _deploy("192.168.10.11")},
        "yomogi": {"system": "aarch64-linux", "interface": "end0", "address": "192.168.10.10",
                   "tailscaleAddress": "100.64.0.10", "kubernetes": "control-plane",
                   "roles": ["ControlPlane", "Tailscale"], "tags": ["k8s-control-plane", "tailscale"],
                   "deploy": _deploy("192.168.10.10", target=True), "secrets": ["tailscale-auth-key"]},
    }
    assert data["network"] == {"lan": "192.168.10.0/24", "prefixLength": 24, "gateway": "192.168.10.1",
                               "lanClient": "192.168.10.254"}


def test_each_host_gets_its_entry_file_its_module_files_and_its_hand_written_imports():
    compiled = compile_lab(small_lab())
    assert compiled.hosts["nas"] == HostFiles(
        "nas", "hosts/nas/default.nix", ("modules/network/firewall.nix", "modules/network/ssh.nix"),
        ("hosts/nas/hardware.nix", "hosts/nas/extra.nix"))
    assert compiled.files_of("nas") == ["hosts/nas/default.nix", "modules/network/firewall.nix",
                                        "modules/network/ssh.nix"]
    assert compiled.files["hosts/nas/default.nix"].imports == (
        "../../modules/network/firewall.nix", "../../modules/network/ssh.nix", "./hardware.nix", "./extra.nix")


def test_module_files_keep_their_path_and_the_role_that_asked_for_them_variants_numbered_from_2():
    files = compile_lab(small_lab()).files
    assert {p: (f.path, f.owner) for p, f in files.items() if p.startswith("modules/")} == {
        "modules/k8s/arm64.nix": ("modules/k8s/arm64.nix", ControlPlaneClass),
        "modules/k8s/base.nix": ("modules/k8s/base.nix", WorkerClass),
        "modules/k8s/master.nix": ("modules/k8s/master.nix", ControlPlaneClass),
        "modules/k8s/node.nix": ("modules/k8s/node.nix", WorkerClass),
        # the node rules differ by LAN interface (and the control plane's by its ports): three variants
        "modules/network/firewall-from-nodes.nix": ("modules/network/firewall-from-nodes.nix", None),
        "modules/network/firewall-from-nodes-2.nix": ("modules/network/firewall-from-nodes-2.nix", None),
        "modules/network/firewall-from-nodes-3.nix": ("modules/network/firewall-from-nodes-3.nix", None),
        "modules/network/firewall.nix": ("modules/network/firewall.nix", None),
        "modules/network/ssh.nix": ("modules/network/ssh.nix", None),
        "modules/network/tailscale.nix": ("modules/network/tailscale.nix", TailscaleClass),
    }


def test_kernel_settings_from_host_py_get_a_section_of_their_own():
    lab = small_lab()
    sections = host_sections(HostContext(lab, next(h for h in lab.hosts if h.hostname == "nas")))
    assert Section("Kernel settings from host.py.", ((("boot", "kernelModules"), ["kvm-intel"]),
                                                      (("boot", "kernelParams"), ["quiet"]))) in sections
    assert [s.comment for s in sections] == ["", "LAN 192.168.10.0/24", "UEFI boot.", "Kernel settings from host.py.",
                                             sections[-1].comment]
    tokiwa = host_sections(HostContext(lab, next(h for h in lab.hosts if h.hostname == "tokiwa")))
    assert "Kernel settings from host.py." not in [s.comment for s in tokiwa]
