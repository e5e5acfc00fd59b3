"""A new user's first day (issue 18, items 1-5): what stood in the way, each pinned by a test.

* a lab's own role writes a source the way a user does (``Flow(8096, "tcp", "lan", ...)``), and every
  place that takes a source takes the same words, from one list;
* a port opened to the world says so, naming what listens there;
* a host without a root file system or a boot loader is refused, naming the host and the option;
* split DNS answers each kind of client with an address it can reach, with or without Tailscale;
* ``homelab check --nixos`` evaluates each host's real system through the lab's flake.
"""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest

from homelab import DnsServer, IngressProxy, OpenPort, cli
from homelab.errors import LabError
from homelab.firewall import flow_table
from homelab.model import Cluster
from homelab.role import LAN, SOURCE_WORDS, Flow, Source
from homelab.validate import problems_of

from . import labkit

# ---------------------------------------------------------------- 5. the same source words everywhere

MEDIA_ROLE = '''
import attrs

from homelab.role import Flow, Port, Role


@attrs.frozen
class Media(Role):
    """Jellyfin, for the LAN: its flow names the source as a user writes it."""

    label = "media"

    def ports(self, ctx):
        yield Port(8096, "tcp", "Jellyfin")

    def flows(self, ctx):
        yield Flow(8096, "tcp", "SOURCE", "Jellyfin, for the LAN")
'''


def _lab_with_media_role(root: Path, source: str) -> Path:
    (root / "roles").mkdir()
    (root / "roles" / "__init__.py").write_text("")
    (root / "roles" / "media.py").write_text(MEDIA_ROLE.replace("SOURCE", source))
    host_py = root / "hosts" / "tokiwa" / "host.py"
    text = host_py.read_text()
    text = text.replace("from homelab import", "from roles.media import Media\nfrom homelab import", 1)
    text = text.replace("roles=[Worker(), CephStorage(), Tailscale()]",
                        "roles=[Worker(), CephStorage(), Tailscale(), Media()]", 1)
    assert "Media()" in text
    host_py.write_text(text)
    return root


def test_a_labs_own_role_may_write_a_source_word(lab_copy, nix, capsys):
    root = _lab_with_media_role(lab_copy, "lan")
    assert cli.main(["build", "--root", str(root)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert cli.main(["show", str(root / "hosts/tokiwa"), "--json"]) == 0
    opts = json.loads(capsys.readouterr().out)
    rules = [ln.split() for ln in opts["networking.firewall.extraCommands"].splitlines()
             if "8096" in ln and not ln.startswith("#")]
    assert [(r[0], r[r.index("-s") + 1], r[r.index("-i") + 1]) for r in rules] == [
        ("iptables", "192.168.10.0/24", "enp1s0")]


def test_a_source_no_one_can_read_in_a_roles_flow_is_named_not_a_crash(lab_copy, capsys):
    root = _lab_with_media_role(lab_copy, "lann")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert cli.main(["build", "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert [ln.strip() for ln in err.splitlines() if "Media" in ln] == [
        "hosts/tokiwa: Media.flows: Flow.source: 'lann' is not a source: \"lan\", \"tailnet\", \"admins\", "
        "\"nodes\", \"pods\", \"control-plane\", \"world\", \"host:<name>\" or a network such as "
        "\"192.168.20.0/24\""]
    assert "Traceback" not in err
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts} == \
        {p: b for p, b in before.items() if "__pycache__" not in p.parts}


@pytest.mark.parametrize("word", SOURCE_WORDS + ("host:yomogi", "192.168.20.0/24", "2001:db8::/64"))
def test_every_source_word_is_taken_alike_everywhere(word):
    """Flow, OpenPort, DnsServer.clients, IngressProxy.clients and Cluster.admins read one word one way."""
    want = Source.parse(word)
    assert Flow(8096, "tcp", word, "x").source == want
    assert OpenPort(8096, source=word, reason="x").source == want
    if word == "world":  # read the same way, and refused on purpose: an open resolver
        with pytest.raises(LabError, match="an open resolver"):
            DnsServer(clients=[word])
    else:
        assert DnsServer(clients=[word]).clients == (want,)
    assert IngressProxy(clients=[word]).clients == (want,)
    assert Cluster(**{**attrs.asdict(labkit.cluster(), recurse=False), "admins": [word]}).admins == (want,)


def test_the_help_for_a_source_lists_the_words_there_are():
    """One list: the message every field gives for a bad source names exactly the words Source.parse takes."""
    for build in (lambda v: Flow(1, "tcp", v, "x"), lambda v: OpenPort(1, source=v, reason="x"),
                  lambda v: DnsServer(clients=[v])):
        with pytest.raises(LabError) as e:
            build("lann")
        (p,) = e.value.problems
        *words, last = p.reason.split(": ", 1)[1].split(", ")
        words = {w.strip('"') for w in [*words, last.split(" or ")[0]]}
        assert words == set(SOURCE_WORDS) | {"host:<name>"}, p.reason


def test_a_flow_with_a_word_is_the_flow_with_the_source():
    assert Flow(8096, "tcp", "lan", "x") == Flow(8096, "tcp", LAN, "x")


# ---------------------------------------------------------------- 4. a port open to the world says so


def _warnings(lab):
    return {(p.where, p.field, p.reason) for p in problems_of(lab) if p.severity == "warning"}


WORLD_TAIL = "and anyone on the internet can now reach it (name a network or \"lan\" unless you mean to publish it)"


def test_a_port_opened_to_the_world_is_a_warning_naming_what_listens_there():
    lab = labkit.evolve_host(labkit.lab(), "yomogi", open_ports=[
        OpenPort(6443, source="world", reason="kubectl from anywhere"),
        OpenPort(8888, source="lan", reason="cfssl for the LAN"),  # not to the world: no word
        OpenPort(53, proto="udp", source="world", reason="dns"),
        OpenPort(22, source="world", reason="ssh"),
        OpenPort(8096, source="world", reason="Jellyfin"),
    ])
    lab = labkit.evolve_host(lab, "tokiwa", open_ports=[OpenPort(10250, source="world", reason="kubelet")])
    base = _warnings(labkit.lab())
    assert _warnings(lab) - base == {
        ("hosts/yomogi", "open_ports[0]", f"6443/tcp is open to the world: the API server (ControlPlane) listens "
                                          f"there, {WORLD_TAIL}"),
        ("hosts/yomogi", "open_ports[2]", f"53/udp is open to the world: the DNS server (DnsServer) listens there, "
                                          f"{WORLD_TAIL}"),
        ("hosts/yomogi", "open_ports[3]", f"22/tcp is open to the world: sshd (homelab) listens there, {WORLD_TAIL}"),
        ("hosts/yomogi", "open_ports[4]", f"8096/tcp is open to the world: what listens there (Jellyfin) is not "
                                          f"homelab's, {WORLD_TAIL}"),
        ("hosts/tokiwa", "open_ports[0]", f"10250/tcp is open to the world: the kubelet (Worker) listens there, "
                                          f"{WORLD_TAIL}"),
    }


def test_the_prometheus_port_open_to_the_world_is_named(capsys, tmp_path):
    from homelab import Monitoring

    lab = labkit.wide_lab()
    lab = labkit.evolve_host(lab, "yomogi", open_ports=[OpenPort(9090, source="world", reason="dashboards")])
    assert ("hosts/yomogi", "open_ports[0]", f"9090/tcp is open to the world: Prometheus (Monitoring) listens "
            f"there, {WORLD_TAIL}") in _warnings(lab)
    assert lab.host("yomogi").has(Monitoring)


def test_check_prints_the_world_warning(lab_copy, capsys):
    host_py = lab_copy / "hosts/yomogi/host.py"
    text = host_py.read_text()
    assert "imports=[" in text
    host_py.write_text(text.replace("from homelab import", "from homelab import OpenPort,", 1).replace(
        "    imports=[", "    open_ports=[OpenPort(6443, source=\"world\", reason=\"kubectl\")],\n    imports=[", 1))
    assert cli.main(["check", "--root", str(lab_copy)]) == 0
    out = capsys.readouterr()
    assert (f"hosts/yomogi: open_ports[0]: warning: 6443/tcp is open to the world: the API server (ControlPlane) "
            f"listens there, {WORLD_TAIL}") in (out.out + out.err).splitlines()
    lab = labkit.evolve_host(labkit.lab(), "yomogi", open_ports=[OpenPort(6443, source="world", reason="k")])
    assert ("yomogi", 6443, "tcp", "world") in {(r.host, r.port, r.proto, str(r.source)) for r in flow_table(lab)}


# ---------------------------------------------------------------- 2. a host that cannot boot is refused

ROOT_MISSING = ("hosts/tokiwa: imports: no root file system: fileSystems.\"/\" is defined in none of its imports "
                "(hardware-configuration.nix) nor in its options; NixOS refuses the system (\"The ‘fileSystems’ "
                "option does not specify your root file system.\"): put this machine's own there "
                "(nixos-generate-config --show-hardware-config on it)")
NO_LOADER = ("hosts/tokiwa: boot: no boot loader: none of boot.loader.systemd-boot.enable, "
             "boot.loader.generic-extlinux-compatible.enable or boot.loader.grub.enable is true once its imports "
             "and options are merged ({why}); keep Host.boot's loader (SystemdBoot(), RaspberryPi4()) on, or set "
             "boot.loader.grub.devices")

GENERATE_CONFIG = '''# what nixos-generate-config writes, near enough
{ config, lib, pkgs, modulesPath, ... }:
{
  imports = [ (modulesPath + "/installer/scan/not-detected.nix") ];
  boot.initrd.availableKernelModules = [ "xhci_pci" "nvme" ];
  boot.kernelModules = [ "kvm-intel" ];
  fileSystems."/" = { device = "/dev/disk/by-uuid/0b2b1b5e"; fsType = "ext4"; };
  fileSystems."/boot" = { device = "/dev/disk/by-uuid/1A2B"; fsType = "vfat"; options = [ "umask=0077" ]; };
  hardware.cpu.intel.updateMicrocode = lib.mkDefault config.hardware.enableRedistributableFirmware;
}
'''


def _problem_lines(err: str, host: str = "hosts/tokiwa") -> list[str]:
    return [ln.strip() for ln in err.splitlines() if ln.strip().startswith(host + ":")]


def _snapshot(root: Path) -> dict:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def _edit_host(root: Path, name: str, old: str, new: str) -> None:
    host_py = root / "hosts" / name / "host.py"
    text = host_py.read_text()
    assert old in text, old
    host_py.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize("hardware", [
    "{ ... }:\n{\n  boot.initrd.availableKernelModules = [ \"nvme\" ];\n}\n",
    "{ ... }:\n{\n  fileSystems.\"/boot\" = { device = \"/dev/sda1\"; fsType = \"vfat\"; };\n}\n",
    "{ lib, ... }:\n{\n  config = { fileSystems.\"/data\" = { device = \"/dev/sdb\"; }; };\n}\n",
    # what nixos-generate-config writes, its root file system left out: its nixpkgs import is one homelab knows
    GENERATE_CONFIG.replace('  fileSystems."/" = { device = "/dev/disk/by-uuid/0b2b1b5e"; fsType = "ext4"; };\n', ""),
])
def test_a_host_without_a_root_file_system_is_refused(lab_copy, nix, capsys, hardware):
    (lab_copy / "hosts/tokiwa/hardware-configuration.nix").write_text(hardware)
    before = _snapshot(lab_copy)
    assert cli.main(["build", "--root", str(lab_copy)]) == 2
    assert _problem_lines(capsys.readouterr().err) == [ROOT_MISSING]
    assert _snapshot(lab_copy) == before
    assert cli.main(["check", "--root", str(lab_copy)]) == 2
    assert _problem_lines(capsys.readouterr().err) == [ROOT_MISSING]


def test_a_host_without_imports_is_refused(lab_copy, nix, capsys):
    _edit_host(lab_copy, "tokiwa", '    imports=["./hardware-configuration.nix"],\n', "")
    before = _snapshot(lab_copy)
    assert cli.main(["build", "--root", str(lab_copy)]) == 2
    assert _problem_lines(capsys.readouterr().err) == [
        "hosts/tokiwa: imports: no root file system: fileSystems.\"/\" is defined anywhere: the host has no imports "
        "(its hardware-configuration.nix) and its options do not set it; NixOS refuses the system (\"The "
        "‘fileSystems’ option does not specify your root file system.\"): put this machine's own there "
        "(nixos-generate-config --show-hardware-config on it)"]
    assert _snapshot(lab_copy) == before
    # a root file system in the raw options is one too
    _edit_host(lab_copy, "tokiwa", 'options={"services.openssh.enable": True}',
               'options={"services.openssh.enable": True, \'fileSystems."/"\': {"device": "/dev/sda2", '
               '"fsType": "ext4"}}')
    assert cli.main(["build", "--root", str(lab_copy)]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("hardware", [
    GENERATE_CONFIG,
    # a root file system in a file the import imports
    "{ ... }:\n{\n  imports = [ ./disks.nix ];\n}\n",
    # under mkIf, or in a nixpkgs profile homelab cannot read: NixOS judges it, homelab does not guess
    "{ lib, ... }:\n{\n  fileSystems = lib.mkIf true { \"/\" = { device = \"/dev/sda2\"; }; };\n}\n",
    "{ modulesPath, ... }:\n{\n  imports = [ \"${modulesPath}/installer/sd-card/sd-image-aarch64.nix\" ];\n}\n",
    "{ lib, ... }: lib.mkMerge [ { fileSystems.\"/\".device = \"/dev/sda2\"; } ]\n",
    # systemd's initrd finding the root by its partition type: NixOS asks for no fileSystems."/" then
    "{ ... }:\n{\n  boot.initrd.systemd.enable = true;\n  boot.initrd.systemd.root = \"gpt-auto\";\n}\n",
])
def test_a_root_file_system_homelab_cannot_rule_out_is_not_refused(lab_copy, nix, capsys, hardware):
    (lab_copy / "hosts/tokiwa/hardware-configuration.nix").write_text(hardware)
    (lab_copy / "hosts/tokiwa/disks.nix").write_text(
        "{ ... }:\n{\n  fileSystems.\"/\" = { device = \"/dev/sda2\"; fsType = \"ext4\"; };\n}\n")
    assert cli.main(["build", "--root", str(lab_copy)]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("hand, why", [
    ("boot.loader.systemd-boot.enable = lib.mkForce false;",
     "GRUB is all that is left (NixOS's default), with no boot.loader.grub.devices: NixOS refuses it"),
    ("boot.loader.systemd-boot.enable = lib.mkForce false; boot.loader.grub.enable = false;",
     "every boot loader is off"),
    ("boot.loader.systemd-boot.enable = lib.mkOverride 10 false; boot.loader.grub.enable = lib.mkDefault true;",
     "GRUB is all that is left (NixOS's default), with no boot.loader.grub.devices: NixOS refuses it"),
])
def test_a_host_without_a_boot_loader_is_refused(lab_copy, nix, capsys, hand, why):
    hw = lab_copy / "hosts/tokiwa/hardware-configuration.nix"
    hw.write_text(hw.read_text().replace("{\n", "{\n  " + hand + "\n", 1).replace("{ ... }:", "{ lib, ... }:", 1))
    before = _snapshot(lab_copy)
    assert cli.main(["build", "--root", str(lab_copy)]) == 2
    assert _problem_lines(capsys.readouterr().err) == [NO_LOADER.format(why=why)]
    assert _snapshot(lab_copy) == before


def test_a_boot_loader_turned_off_in_the_hardware_file_is_refused_and_grub_with_a_device_is_one(lab_copy, nix,
                                                                                              capsys):
    hw = lab_copy / "hosts/tokiwa/hardware-configuration.nix"
    text = hw.read_text()
    hw.write_text(text.replace("{\n", "{\n  boot.loader.systemd-boot.enable = lib.mkForce false;\n", 1)
                  .replace("{ ... }:", "{ lib, ... }:", 1))
    assert "mkForce false" in hw.read_text()
    assert cli.main(["build", "--root", str(lab_copy)]) == 2
    assert _problem_lines(capsys.readouterr().err) == [NO_LOADER.format(
        why="GRUB is all that is left (NixOS's default), with no boot.loader.grub.devices: NixOS refuses it")]
    hw.write_text(hw.read_text().replace("{\n", "{\n  boot.loader.grub.devices = [ \"/dev/sda\" ];\n", 1))
    assert cli.main(["build", "--root", str(lab_copy)]) == 0, capsys.readouterr().err


# ---------------------------------------------------------------- 1. split DNS: each client an address it can reach


def _lan_only_lab():
    """The seed lab without Tailscale anywhere: a LAN-only lab with DnsServer and IngressProxy."""
    from homelab.roles import Tailscale

    hosts = [attrs.evolve(h, tailscale_address=None, roles=[r for r in h.roles if not isinstance(r, Tailscale)])
             for h in labkit.seed_hosts()]
    return labkit.lab(hosts)


def _dns_proof(lab, nix, name):
    from homelab.roles.dns_server import proof as coredns
    from homelab.proofs.netns import plain, read_back_lab
    from homelab.role import HostContext

    rb = read_back_lab(name, lab, nix)
    (host,) = lab.with_role(DnsServer)
    role = host.role(DnsServer)
    corefile = plain(rb.options[host.hostname]["services.coredns.config"])
    answers = role.clients_and_answers(HostContext(lab, host))
    return corefile, answers, coredns.prove_zone(corefile, lab.cluster.domain, answers, role.ttl,
                                                 [str(a) for a in role.forward], role.port)


def test_a_lan_only_lab_builds_without_a_word_about_tailscale_and_answers_the_lan_address(nix):
    lab = _lan_only_lab()
    assert {(p.where, p.field, p.severity) for p in problems_of(lab)} == {
        ("cluster", "admin_keys", "warning"), ("hosts/yomogi", "boot", "warning")}  # no keys; an SD card
    corefile, answers, summary = _dns_proof(lab, nix, "first-day-lan-only")
    assert answers == {"this host": ("127.0.0.1", "192.168.10.12"), "lan": ("192.168.10.7", "192.168.10.12"),
                       "pods": ("10.1.0.7", "192.168.10.12")}
    assert summary == ("5 names in home.example.com answered A 192.168.10.12 to this host, lan, pods (other types: "
                       "empty NOERROR), 9 look-alikes not; the rest forwarded to 1.1.1.1, 1.0.0.1; the world refused")
    assert "view" not in corefile and corefile.count(".:53 {") == 1


def test_the_seed_lab_answers_lan_clients_the_lan_address_and_tailnet_clients_the_tailscale_one(nix):
    from homelab.roles.dns_server.proof import serving_block, server_blocks

    corefile, answers, summary = _dns_proof(labkit.lab(), nix, "first-day-seed")
    assert summary == ("5 names in home.example.com answered A 192.168.10.12 to this host, lan, pods; A 100.64.0.12 "
                       "to tailnet (IPv4), tailnet (IPv6) (other types: empty NOERROR), 9 look-alikes not; the rest "
                       "forwarded to 1.1.1.1, 1.0.0.1; the world refused")
    blocks = server_blocks(corefile)
    assert [(b["keys"], b["views"]) for b in blocks] == [
        ([".:53"], ["incidr(client_ip(), '100.64.0.0/10') || incidr(client_ip(), 'fd7a:115c:a1e0::/48')"]),
        ([".:53"], [])]
    assert [serving_block(blocks, c, 53) is blocks[0] for c in ("100.64.0.7", "fd7a:115c:a1e0::7", "100.127.255.254",
                                                                 "192.168.10.7", "10.1.0.7", "127.0.0.1")] == [
        True, True, True, False, False, False]


def test_the_corefile_that_answered_everyone_the_tailscale_address_fails_the_proof(nix):
    """Before: one block answering the Tailscale address to every client, LAN clients included."""
    from homelab.proofs import ProofFailed
    from homelab.roles.dns_server import proof as coredns
    from homelab.roles.dns_server import Answer, corefile

    lab = labkit.lab()
    _, answers, _ = _dns_proof(lab, nix, "first-day-before")
    old = corefile(zone="home.example.com", answers=[Answer(None, (), "100.64.0.12", "everyone")], ttl=60,
                   forward=["1.1.1.1", "1.0.0.1"], cache=30, port=53,
                   allow=["127.0.0.0/8", "192.168.10.0/24", "100.64.0.0/10", "fd7a:115c:a1e0::/48", "10.1.0.0/16"])
    with pytest.raises(ProofFailed, match=r"^a this host client \(127\.0\.0\.1\): home\.example\.com\. is answered "
                                          r"'home\.example\.com\. 60 IN A 100\.64\.0\.12'; the model says "
                                          r"home\.example\.com\. 60 IN A 192\.168\.10\.12$"):
        coredns.prove_zone(old, "home.example.com", answers, 60, ["1.1.1.1", "1.0.0.1"])
    # the blocks in the wrong order: the block without a view takes every query, the tailnet's too
    tailnet = Answer("tailnet", ("100.64.0.0/10",), "100.64.0.12", "tailnet")
    lan = Answer(None, (), "192.168.10.12", "everyone else")
    swapped = corefile(zone="home.example.com", answers=[lan, tailnet], ttl=60, forward=["1.1.1.1", "1.0.0.1"],
                       cache=30, port=53, allow=["127.0.0.0/8", "192.168.10.0/24", "100.64.0.0/10", "10.1.0.0/16"])
    with pytest.raises(ProofFailed, match=r"^a tailnet \(IPv4\) client \(100\.64\.0\.7\): .* the model says "
                                          r"home\.example\.com\. 60 IN A 100\.64\.0\.12$"):
        coredns.prove_zone(swapped, "home.example.com", answers, 60, ["1.1.1.1", "1.0.0.1"])
    # an acl that lets the world in is an open resolver
    open_ = corefile(zone="home.example.com", answers=[tailnet, lan], ttl=60, forward=["1.1.1.1", "1.0.0.1"],
                     cache=30, port=53, allow=["0.0.0.0/0", "::/0"])
    with pytest.raises(ProofFailed, match=r"^a client from outside the lab \(203\.0\.113\.7\) is answered"):
        coredns.prove_zone(open_, "home.example.com", {"lan": ("192.168.10.7", "192.168.10.12")}, 60,
                           ["1.1.1.1", "1.0.0.1"])


def test_tailscale_warnings_appear_only_where_they_mean_something():
    from homelab.roles import Tailscale

    seed = labkit.lab()
    base = _warnings(seed)
    # the DNS host off the tailnet while the lab has one, with "tailnet" among its clients: a warning
    no_ts = labkit.evolve_host(seed, "yomogi", tailscale_address=None,
                               roles=[r for r in seed.host("yomogi").roles if not isinstance(r, Tailscale)])
    assert _warnings(no_ts) - base == {
        ("hosts/yomogi", "roles", "DnsServer without Tailscale(): tailnet clients cannot reach this split-DNS server "
                                  "(give this host Tailscale(), or leave \"tailnet\" out of DnsServer.clients)")}
    # ... and none when its clients say the tailnet is not meant
    quiet = labkit.evolve_host(no_ts, "yomogi", roles=[DnsServer(clients=["lan", "pods"]) if isinstance(r, DnsServer)
                                                       else r for r in no_ts.host("yomogi").roles])
    assert _warnings(quiet) - base == set()
    # the ingress host off the tailnet: tailnet clients get its LAN address, and are told so
    ingress_off = labkit.evolve_host(seed, "hanaakari", tailscale_address=None, roles=[
        r for r in seed.host("hanaakari").roles if not isinstance(r, Tailscale)])
    assert _warnings(ingress_off) - base == {
        ("hosts/yomogi", "DnsServer.clients", "tailnet clients get hanaakari's LAN address, which they reach only "
                                              "through a subnet router: give hanaakari Tailscale() and a "
                                              "tailscale_address to answer them with that")}
    assert not [p for p in problems_of(ingress_off) if p.severity == "error"]


# ---------------------------------------------------------------- 3. homelab check --nixos


@pytest.fixture(scope="module")
def nixos_lab(tmp_path_factory):
    """The seed lab made by `homelab init`, built, and the homelab flake its `homelab` input is pointed at."""
    from homelab.init import init
    from homelab.pynix_eval import nix_available

    from .test_flake import copy_flake

    if not nix_available():
        pytest.skip("nix-instantiate not found: install nix (apt-get install nix-bin); ./lab test does")
    base = tmp_path_factory.mktemp("nixos")
    homelab_src = copy_flake(base / "homelab")
    root = base / "lab"
    init(root, example="seed")
    return root, homelab_src


def _git_add(root: Path) -> None:
    import subprocess

    if (root / ".git").exists():
        subprocess.run(["git", "-C", str(root), "add", "-A"], check=True, capture_output=True)


def _check_nixos(root: Path, homelab_src: Path, *extra: str):
    import os
    import subprocess
    import sys

    from .conftest import REPO
    from .test_flake import STAND_IN, STAND_IN_AGENIX

    return subprocess.run(
        [sys.executable, "-m", "homelab", "check", "--nixos", "--root", str(root), *extra,
         "--override-input", "homelab", f"path:{homelab_src}", "--override-input", "agenix", f"path:{STAND_IN_AGENIX}"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO), "STAND_IN": str(STAND_IN)})


def test_check_nixos_evaluates_every_host_and_reports_nixos_errors_against_the_hosts_files(nixos_lab, tmp_path):
    import shutil

    from .test_flake import STAND_IN

    src, homelab_src = nixos_lab
    root = tmp_path / "lab"
    shutil.copytree(src, root)
    assert cli.main(["build", "--root", str(root)]) == 0
    stand_in = ("--override-input", "nixpkgs", f"path:{STAND_IN}")
    # `homelab init` made the lab a git repository: the flake sees only what git tracks, and the build's files
    # are not tracked yet
    r = _check_nixos(root, homelab_src, *stand_in)
    assert r.returncode == 2, r.stdout + r.stderr
    modules = len(list((root / "modules").rglob("*.nix")))  # every generated module file, none tracked yet
    assert modules > 4
    assert [ln.strip() for ln in r.stderr.splitlines() if ln.strip().startswith("lab: git:")] == [
        "lab: git: hosts/hanaakari/default.nix, hosts/lab.nix, hosts/tokiwa/default.nix, hosts/yomogi/default.nix "
        f"and {modules} more not tracked by git, so the lab's flake cannot see them: run `git add -A` in the lab "
        "first"]
    _git_add(root)
    r = _check_nixos(root, homelab_src, *stand_in)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == ("ok: 3 hosts, 4 warnings; NixOS evaluated every host's system through the "
                                         "flake")
    evaluated = sorted(ln.split(":")[0].strip() for ln in r.stderr.splitlines() if "NixOS evaluated /nix/store/" in ln)
    assert evaluated == ["hosts/hanaakari", "hosts/tokiwa", "hosts/yomogi"]
    assert "evaluating 3 NixOS systems through the flake, 2 at a time" in r.stderr  # min(4, cores=2, hosts=3)
    # a misspelled option: the offline build takes it (raw options are NixOS's to judge); NixOS does not
    _edit_host(root, "tokiwa", 'options={"services.openssh.enable": True}',
               'options={"services.openssh.enable": True, "services.jellyfin.enabel": True}')
    assert cli.main(["build", "--root", str(root)]) == 0
    _git_add(root)
    r = _check_nixos(root, homelab_src, *stand_in)
    assert r.returncode == 2, r.stdout + r.stderr
    problems = [ln.strip() for ln in r.stderr.splitlines() if ln.strip().startswith("hosts/") and "nixos:" in ln]
    assert problems == [
        "hosts/tokiwa: nixos: NixOS refuses the system: The option `services.jellyfin.enabel' does not exist. "
        "Definition values:"]
    assert "- In `hosts/tokiwa/default.nix (written from hosts/tokiwa/host.py)': true" in r.stderr


def test_check_nixos_without_nixpkgs_says_so_and_is_not_a_pass(nixos_lab, tmp_path):
    import shutil

    src, homelab_src = nixos_lab
    root = tmp_path / "lab"
    shutil.copytree(src, root)
    assert cli.main(["build", "--root", str(root)]) == 0
    _git_add(root)
    # nixpkgs from a server that does not answer (the discard port on loopback): not reachable, deterministically
    r = _check_nixos(root, homelab_src, "--override-input", "nixpkgs", "http://127.0.0.1:9/nixpkgs.tar.gz")
    assert r.returncode == 4, r.stdout + r.stderr
    assert ("homelab: check --nixos: the lab's flake inputs (nixpkgs and the others flake.nix names) cannot be "
            "fetched here, so no NixOS system was evaluated: unable to download 'http://127.0.0.1:9/nixpkgs.tar.gz'"
            in r.stderr)
    assert "ok:" not in r.stdout


def test_x86_only_modules_and_options_on_an_aarch64_host_are_warned_about():
    from homelab import force

    lab = labkit.evolve_host(labkit.lab(), "yomogi", kernel_modules=["kvm-intel", "wireguard"], options={
        "hardware.cpu.intel.updateMicrocode": True, "boot.initrd.kernelModules": force(["kvm_amd"]),
        "hardware.cpu.amd.updateMicrocode": False})
    lab = labkit.evolve_host(lab, "tokiwa", kernel_modules=["kvm-intel"])  # x86_64: right where it is
    assert _warnings(lab) - _warnings(labkit.lab()) == {
        ("hosts/yomogi", "kernel_modules[0]", "kvm-intel is an x86 kernel module (Intel VT-x virtualisation); this "
                                              "host is aarch64-linux, whose kernel has none: loading it fails at every "
                                              "boot"),
        ("hosts/yomogi", "options['hardware.cpu.intel.updateMicrocode']", "Intel CPU microcode is for x86 machines; "
         "this host is aarch64-linux (nixpkgs builds that firmware for x86 only, so NixOS cannot evaluate it)"),
        ("hosts/yomogi", "options['boot.initrd.kernelModules']", "kvm_amd is an x86 kernel module (AMD-V "
                                                                 "virtualisation); this host is aarch64-linux, whose "
                                                                 "kernel has none"),
    }
