"""The option contract: well-formed rows, every row emitted by the generator, documented in docs/nixpkgs-facts.md.

Seven labs between them exercise every branch of the compiler that writes an
option: the seed lab (iptables, an aarch64 Raspberry Pi control plane), the
seed lab with Prometheus monitoring, the same lab with the nftables firewall, a host with a Tailscale auth key file, a
Raspberry Pi host with its own kernel settings, an x86 control plane with a
pinned CoreDNS image, and workers with Wake-on-LAN and power schedules.  A contract row none of them emits is dead weight (or a
missing lab here) and fails the test.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

from homelab import (
    CephStorage,
    ControlPlane,
    CorednsImage,
    DnsServer,
    PkgCall,
    RaspberryPi4,
    SystemdBoot,
    Tailscale,
    Worker,
    contract,
    render,
    readback,
)
from homelab import optiontypes as t
from homelab.compile import Compiled, compile_lab
from homelab.roles import builtin_contract
from homelab.validate import validate
from tests import labkit

BUILTIN_CONTRACT = builtin_contract()
DOC = Path(__file__).resolve().parent.parent / "docs" / "nixpkgs-facts.md"
AUTH_KEY_FILE = "/run/secrets/tailscale-auth-key"
AMD64_COREDNS = CorednsImage(
    imageName="coredns/coredns",
    imageDigest="sha256:" + "0123456789abcdef" * 4,
    finalImageTag="1.12.2",
    sha256="sha256-" + "A" * 43 + "=",
    arch="amd64",
)


def _build(lab) -> Compiled:
    errors = [str(p) for p in validate(lab) if p.severity == "error"]
    assert errors == [], errors
    return compile_lab(lab)


def seed_lab():
    return labkit.lab()


def nftables_lab():
    return labkit.lab(firewall="nftables")


def tailscale_key_lab():
    return labkit.evolve_host(labkit.lab(), "tokiwa",
                              roles=[Worker(), CephStorage(), Tailscale(auth_key_file=AUTH_KEY_FILE)])


def raspberry_pi_lab(kernel_packages="linuxPackages_rpi4"):
    """The Pi control plane with its own kernel settings (k8s on a Pi wants the memory cgroup)."""
    return labkit.evolve_host(
        labkit.lab(), "yomogi",
        boot=RaspberryPi4(kernel_packages=kernel_packages),
        kernel_modules=("br_netfilter",),
        kernel_params=("cgroup_enable=memory", "console=ttyS1,115200"),
    )


def x86_control_plane_lab():
    """An all-x86 lab, its control plane on tokiwa, with the DNS addon's image pinned in host.py (a pin is one
    architecture's image: every node must be of it)."""
    lab = labkit.lab()
    lab = labkit.evolve_host(lab, "tokiwa", roles=[ControlPlane(coredns_image=AMD64_COREDNS), CephStorage(),
                                                   Tailscale()])
    return labkit.evolve_host(lab, "yomogi", system="x86_64-linux", boot=SystemdBoot(),
                              roles=[Worker(), CephStorage(), DnsServer(), Tailscale()])


def monitoring_lab():
    """Every host runs a node exporter; yomogi also runs Prometheus (the worked example role)."""
    from homelab import Monitoring, NodeExporter

    lab = labkit.lab()
    for h in lab.hosts:
        extra = [NodeExporter(), Monitoring()] if h.hostname == "yomogi" else [NodeExporter()]
        lab = labkit.evolve_host(lab, h.hostname, roles=[*h.roles, *extra])
    return lab


def power_lab():
    """The workers wake on LAN; tokiwa powers off at night and its RTC wakes it, hanaakari only powers off."""
    from homelab import PowerSchedule, WakeOnLan

    lab = labkit.lab()
    lab = labkit.evolve_host(lab, "tokiwa", wake_on_lan=WakeOnLan(mac="02:00:00:00:00:11"),
                             roles=[*lab.host("tokiwa").roles, PowerSchedule(off_at="23:30", wake_at="07:00")])
    return labkit.evolve_host(lab, "hanaakari", wake_on_lan=WakeOnLan(mac="02:00:00:00:00:12"),
                              roles=[*lab.host("hanaakari").roles, PowerSchedule(off_at="01:00")])


LABS = {
    "seed": seed_lab,
    "monitoring": monitoring_lab,
    "nftables": nftables_lab,
    "tailscale-auth-key": tailscale_key_lab,
    "raspberry-pi": raspberry_pi_lab,
    "x86-coredns-pin": x86_control_plane_lab,
    "power": power_lab,
}


@pytest.fixture(scope="module")
def compiled() -> dict[str, Compiled]:
    return {name: _build(make()) for name, make in LABS.items()}


def _emitted(c: Compiled) -> list[tuple[str, tuple[str, ...], object]]:
    """(file, option path, value) of every generated definition (raw user options left out)."""
    return [(rel, path, value) for rel, f in c.files.items() for s in f.sections if not s.user
            for path, value in s.defs]


def _rows(c: Compiled) -> set[str]:
    return {BUILTIN_CONTRACT.lookup(path).path for _, path, _ in _emitted(c)}


# ---------------------------------------------------------------- (a) rows are well formed


@pytest.mark.parametrize("fact", BUILTIN_CONTRACT.rows, ids=lambda o: o.path)
def test_every_row_names_a_nixos_module_file_and_a_type(fact):
    assert re.fullmatch(r"nixos/(modules|lib)/[A-Za-z0-9_./-]+\.nix", fact.declared_in), fact.declared_in
    assert isinstance(fact.type, t.OptionType)
    assert str(fact.type).strip() not in ("", "?")
    assert fact.status in (contract.CONFIRMED, contract.PARTIAL)


def test_paths_are_unique_and_lookup_finds_each_row():
    assert len(BUILTIN_CONTRACT.by_path) == len(BUILTIN_CONTRACT.rows)
    for o in BUILTIN_CONTRACT.rows:
        concrete = tuple("x" if p == "<name>" else p for p in o.parts)
        assert BUILTIN_CONTRACT.lookup(concrete) is o


# ---------------------------------------------------------------- (b) the generator uses every row


@pytest.mark.parametrize("name", LABS)
def test_every_emitted_path_is_a_contract_row_and_fits_its_type(compiled, name):
    c = compiled[name]
    for rel, path, _ in _emitted(c):
        assert BUILTIN_CONTRACT.lookup(path) is not None, f"{rel}: {'.'.join(path)}"
    assert readback.precheck(c).all_problems() == []


def test_every_contract_row_is_emitted_by_one_of_the_labs(compiled):
    used = set().union(*(_rows(c) for c in compiled.values()))
    unused = sorted(set(BUILTIN_CONTRACT.by_path) - used)
    assert unused == [], f"contract rows no lab emits (remove them or add a lab that needs them): {unused}"


def test_the_firewall_backend_decides_between_extra_commands_and_extra_input_rules(compiled):
    iptables, nftables = _rows(compiled["seed"]), _rows(compiled["nftables"])
    assert "networking.firewall.extraCommands" in iptables
    assert not {"networking.firewall.extraInputRules", "networking.nftables.enable"} & iptables
    # the nftables firewall asserts extraCommands == "": never write it there
    assert {"networking.firewall.extraInputRules", "networking.nftables.enable"} <= nftables
    assert "networking.firewall.extraCommands" not in nftables


def test_apiserver_address_is_written_with_the_port(compiled):
    for c in compiled.values():
        values = {".".join(p): v for _, p, v in _emitted(c)}
        assert values["services.kubernetes.apiserverAddress"] == "https://api.kube:6443"
        assert values["services.kubernetes.apiserver.advertiseAddress"]  # the case where nixpkgs drops the port


def test_auth_key_file_is_written_as_a_string_not_a_nix_path(compiled):
    texts = render.render_all(compiled["tailscale-auth-key"])
    written = [rel for rel, x in texts.items() if f'services.tailscale.authKeyFile = "{AUTH_KEY_FILE}";' in x]
    assert len(written) == 1  # tokiwa's own tailscale module; the other hosts share the one without a key
    assert not any(re.search(r"authKeyFile = [./]", x) for x in texts.values())


def test_a_coredns_pin_is_pulled_with_docker_tools_on_every_node(compiled):
    c = compiled["x86-coredns-pin"]
    pins = [(rel, v) for rel, p, v in _emitted(c) if ".".join(p) == "services.kubernetes.addons.dns.corednsImage"]
    assert [rel for rel, _ in pins] == ["modules/k8s/base.nix"]  # the one module every node imports
    assert all("modules/k8s/base.nix" in c.files_of(h) for h in c.hosts)
    value = pins[0][1]
    assert isinstance(value, PkgCall) and value.function == "dockerTools.pullImage"
    assert value.args["arch"] == "amd64" and value.args["finalImageTag"] == "1.12.2"
    # without a pin every node builds homelab's tagged image, in the same shared module
    seed_images = [(rel, v.function) for rel, p, v in _emitted(compiled["seed"])
                   if ".".join(p) == "services.kubernetes.addons.dns.corednsImage"]
    assert seed_images == [("modules/k8s/base.nix", "dockerTools.buildImage")]


def test_raspberry_pi_without_kernel_packages_keeps_the_default_kernel():
    c = _build(raspberry_pi_lab(kernel_packages=None))
    entry = {".".join(p): v for rel, p, v in _emitted(c) if rel == "hosts/yomogi/default.nix"}
    assert "boot.kernelPackages" not in entry
    assert entry["boot.loader.grub.enable"] is False  # extlinux does not switch GRUB off by itself
    assert entry["boot.loader.generic-extlinux-compatible.enable"] is True


def test_systemd_boot_hosts_leave_grub_to_the_systemd_boot_module(compiled):
    c = compiled["seed"]
    assert isinstance(labkit.lab().host("tokiwa").boot, SystemdBoot)
    entry = {".".join(p) for rel, p, _ in _emitted(c) if rel == "hosts/tokiwa/default.nix"}
    assert "boot.loader.systemd-boot.enable" in entry
    assert "boot.loader.grub.enable" not in entry


def test_the_five_labs_read_back_through_real_nix(compiled, nix):
    for name, c in compiled.items():
        with tempfile.TemporaryDirectory() as tmp:
            for rel, text in render.render_all(c).items():
                (Path(tmp) / rel).parent.mkdir(parents=True, exist_ok=True)
                (Path(tmp) / rel).write_text(text)
            report = readback.read_back(Path(tmp), c, nix)
        assert report.problems == [], name


# ---------------------------------------------------------------- types as strict as nixpkgs


def _type(path: str) -> t.OptionType:
    return BUILTIN_CONTRACT.by_path[path].type


def test_host_name_is_one_label_as_nixpkgs_requires():
    ty = _type("networking.hostName")
    assert ty.check("yomogi") is None and ty.check("") is None and ty.check("a" * 63) is None
    for bad in ("yomogi.home.example.com", "-x", "x-", "a" * 64, "ä"):
        assert ty.check(bad) is not None, bad


def test_kernel_params_are_single_tokens_with_spaces_only_inside_quotes():
    ty = _type("boot.kernelParams")
    assert ty.check(["console=ttyS1,115200", 'dyndbg="file x.c +p"']) is None
    for bad in (["a b"], [""], ["a\tb"], ['x="unclosed']):
        assert ty.check(bad) is not None, bad


def test_prefix_length_is_an_int_between_0_and_32():
    ty = _type("networking.interfaces.<name>.ipv4.addresses")
    assert ty.check([{"address": "192.168.10.10", "prefixLength": 24}]) is None
    assert ty.check([{"address": "192.168.10.10", "prefixLength": 33}]) is not None
    assert ty.check([{"address": "192.168.10.10", "prefixLength": "24"}]) is not None


def test_secure_port_is_a_plain_int_and_kubeconfig_server_is_not_nullable():
    assert _type("services.kubernetes.apiserver.securePort").check(6443) is None
    assert _type("services.kubernetes.apiserver.securePort").check("6443") is not None
    assert _type("services.kubernetes.kubelet.kubeconfig.server").check(None) is not None


def test_kernel_modules_merge_as_a_set_of_names():
    ty = _type("boot.kernelModules")
    assert t.merge_definitions(ty, [["rbd", "ceph"], ["br_netfilter", "ceph"]]) == ["br_netfilter", "ceph", "rbd"]
    # a user's attribute-set definition merges with homelab's list; names set to false are left out
    assert t.merge_definitions(ty, [["ceph"], {"dm_crypt": True, "loop": False}]) == ["ceph", "dm_crypt"]
    with pytest.raises(t.MergeConflict):
        t.merge_definitions(ty, [["rbd"], {"rbd": False}])  # true and false for one name conflict
    forced_off = {"_type": "override", "priority": 50, "content": False}
    assert t.merge_definitions(ty, [["ceph", "rbd"], {"rbd": forced_off}]) == ["ceph"]
    assert ty.check({"ceph": "yes"}) is not None and ty.check(["ceph", 1]) is not None


def test_authkeyfile_is_an_absolute_path_or_null():
    ty = _type("services.tailscale.authKeyFile")
    assert ty.check(None) is None and ty.check(AUTH_KEY_FILE) is None
    assert ty.check("secrets/key") is not None


# ---------------------------------------------------------------- (c) the document keeps up with the table


def _doc_rows() -> dict[str, list[str]]:
    """Table rows of the document whose first cell is a contract path: path -> cells."""
    rows: dict[str, list[str]] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        path = cells[0].strip("`")
        if path in BUILTIN_CONTRACT.by_path:
            rows[path] = cells
    return rows


def test_the_document_mentions_every_contract_path():
    text = DOC.read_text(encoding="utf-8")
    missing = [o.path for o in BUILTIN_CONTRACT.rows if f"`{o.path}`" not in text]
    assert missing == [], f"docs/nixpkgs-facts.md does not mention {missing}"


def test_the_document_table_is_generated_from_the_option_facts():
    """docs/nixpkgs-facts.md's contract table is the facts' own rows (python -m homelab.factsdoc rewrites it)."""
    from homelab import factsdoc

    text = DOC.read_text(encoding="utf-8")
    assert factsdoc.replaced(text) == text, "the table is stale: run `python -m homelab.factsdoc`"
    for o in BUILTIN_CONTRACT.rows:  # each row carries its evidence
        assert o.nix_type and o.nix_default and o.evidence, o.path


def test_the_document_table_agrees_with_the_contract():
    rows = _doc_rows()
    assert sorted(rows) == sorted(BUILTIN_CONTRACT.by_path), "one table row per contract path"
    for o in BUILTIN_CONTRACT.rows:
        cells = rows[o.path]
        assert any(f"`{o.declared_in}`" in c for c in cells), f"{o.path}: declaring file {o.declared_in}"
        assert cells[-1].lower().startswith(o.status), f"{o.path}: status {o.status}, document {cells[-1]}"
    assert f"`{contract.NIXPKGS_RELEASE}`" in DOC.read_text(encoding="utf-8")
