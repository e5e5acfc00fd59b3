"""Roles as plugins: a lab brings its own role from its own folder, and it works like a built-in one.

The lab here is a copy of the seed lab with a module of its own beside ``hosts/``
(``roles/disks.py``, defining a ``DiskHealth`` role through the public interface
only) that host.py files import.  It validates, builds, is read back by real nix,
opens its port through the flow table, shows in the diagram and in the
expectations, and its field problems and contract slips are reported like any
other, naming the role.  The shipped worked example (NodeExporter + Monitoring)
is held to the same public interface.
"""

from __future__ import annotations

import ast
import json
import textwrap
from pathlib import Path

import pytest

from homelab import cli
from homelab.expect import lab_expectations
from homelab.load import load, load_or_raise

from .conftest import REPO

PUBLIC = {"homelab", "homelab.role", "homelab.fields", "homelab.checks"}

DISK_ROLE = '''
"""DiskHealth: smartd watches the disks and reports to the lab's monitoring host (a lab's own role)."""

from __future__ import annotations

import attrs

from homelab import checks, fields
from homelab.role import Edge, Flow, GraphPart, Module, Node, OptionFact, Port, Role, Source, section, types

SMARTD = "nixos/modules/services/monitoring/smartd.nix"


@attrs.frozen
class DiskHealth(Role):
    """smartd on the host, and a small status page on ``port`` for the admins."""

    port: int = attrs.field(default=9633, validator=fields.port)
    interval: int = attrs.field(default=1800, validator=fields.positive_int)

    label = "disk health"
    options = (OptionFact("services.smartd.enable", types.bool_, SMARTD),
               OptionFact("services.smartd.extraOptions", types.ListOf(types.str_), SMARTD))

    def compile(self, ctx):
        yield Module("modules/disks/smartd.nix", "Disk health (smartd)", (
            section("smartd checks every disk's SMART data.",
                    ("services.smartd.enable", True),
                    ("services.smartd.extraOptions", [f"--interval={self.interval}"])),
        ))

    def ports(self, ctx):
        yield Port(self.port, "tcp", "the disk health page", field="DiskHealth.port")

    def flows(self, ctx):
        yield Flow(self.port, "tcp", Source("admins"), "the disk health page, for the admins")

    def check(self, ctx):
        if self.interval < 60:
            yield self.error(ctx, "interval", f"{self.interval} s is shorter than smartd allows (60 s)")

    def expectations(self, ctx):
        yield checks.service("smartd.service", "host", "DiskHealth role")

    def graph(self, ctx):
        return GraphPart(nodes=(Node("disks", ("SMART", "disk health")),),
                         edges=(Edge(ctx.host.hostname, "disks", ("smartd",), "-.->"),), key="disk_health",
                         path={"host": ctx.host.hostname, "port": self.port})
'''


def _lab_with_own_role(root: Path, role_text: str = DISK_ROLE, edit=("", "")) -> Path:
    (root / "roles").mkdir()
    (root / "roles" / "__init__.py").write_text("")
    (root / "roles" / "disks.py").write_text(role_text.replace(*edit) if edit[0] else role_text)
    host_py = root / "hosts" / "hanaakari" / "host.py"
    text = host_py.read_text()
    text = text.replace("from homelab import", "from roles.disks import DiskHealth\nfrom homelab import", 1)
    text = text.replace("        Tailscale(),\n    ],", "        Tailscale(),\n        DiskHealth(),\n    ],", 1)
    assert "DiskHealth()" in text
    host_py.write_text(text)
    return root


def test_a_labs_own_role_builds_verifies_and_shows_everywhere(lab_copy, nix, capsys):
    root = _lab_with_own_role(lab_copy)
    assert cli.main(["build", "--root", str(root)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "wrote modules/disks/smartd.nix" in out and "nix read back" in out
    text = (root / "modules/disks/smartd.nix").read_text()
    assert "Source: hosts/cluster.py and the DiskHealth role in host.py" in text
    assert "../../modules/disks/smartd.nix" in (root / "hosts/hanaakari/default.nix").read_text()
    assert "modules/disks/smartd.nix" not in (root / "hosts/tokiwa/default.nix").read_text()
    # read back by real nix, merged like NixOS merges
    assert cli.main(["show", str(root / "hosts/hanaakari"), "--json"]) == 0
    opts = json.loads(capsys.readouterr().out)
    assert opts["services.smartd.enable"] is True and opts["services.smartd.extraOptions"] == ["--interval=1800"]
    # its flow is in the host's firewall, for the admins (LAN and tailnet), and nowhere else
    rules = [ln for ln in opts["networking.firewall.extraCommands"].splitlines() if "9633" in ln and ln[0] != "#"]
    assert sorted(r.split()[0] + " " + r.split()[5] for r in rules) == [
        "ip6tables fd7a:115c:a1e0::/48", "iptables 100.64.0.0/10", "iptables 192.168.10.0/24"]
    assert cli.main(["policy", "--json", "--root", str(root)]) == 0
    assert {(r["host"], r["port"], r["by"]) for r in json.loads(capsys.readouterr().out)["rows"]
            if r["port"] == 9633} == {("hanaakari", 9633, "DiskHealth")}
    # the diagram and the expectations know it through the same interface
    assert cli.main(["graph", "--json", "--root", str(root)]) == 0
    topo = json.loads(capsys.readouterr().out)
    assert topo["paths"]["disk_health"] == [{"host": "hanaakari", "port": 9633}]
    assert "h_hanaakari -.->|\"smartd\"| disks" in topo["mermaid"]
    assert "disk health" in next(h for h in topo["hosts"] if h["hostname"] == "hanaakari")["roles"]
    lab, _ = load_or_raise(root)
    e = lab_expectations(lab, ["hanaakari"])["hanaakari"]
    assert "service:smartd.service" in {c.id for c in e.checks}
    # and the flake's data file tags the host with it
    assert '"disk-health"' in (root / "hosts/lab.nix").read_text()


def test_a_labs_own_role_is_validated_like_a_built_in_one(lab_copy, capsys):
    root = _lab_with_own_role(lab_copy)
    host_py = root / "hosts/hanaakari/host.py"
    host_py.write_text(host_py.read_text().replace("DiskHealth()", 'DiskHealth(port="x", interval=5)'))
    assert cli.main(["check", "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "hosts/hanaakari: DiskHealth.port: 'x' is a str, not a port number" in err
    host_py.write_text(host_py.read_text().replace('DiskHealth(port="x", interval=5)', "DiskHealth(interval=5)"))
    assert cli.main(["check", "--root", str(root)]) == 2
    assert "hosts/hanaakari: DiskHealth.interval: 5 s is shorter than smartd allows (60 s)" in capsys.readouterr().err
    # the one port table: its port against a built-in role's
    host_py.write_text(host_py.read_text().replace("DiskHealth(interval=5)", "DiskHealth(port=443)"))
    assert cli.main(["check", "--root", str(root)]) == 2
    assert "hosts/hanaakari: DiskHealth.port: 443 is taken on this host by the ingress proxy (https)" in \
        capsys.readouterr().err
    host_py.write_text(host_py.read_text().replace("DiskHealth(port=443)", "DiskHealth(colour='red')"))
    assert cli.main(["check", "--root", str(root)]) == 2
    assert "hosts/hanaakari: DiskHealth.colour: is not a field of DiskHealth; it has: port, interval" in \
        capsys.readouterr().err


def test_an_option_the_role_did_not_declare_is_the_labs_problem_not_a_homelab_bug(lab_copy, capsys):
    root = _lab_with_own_role(lab_copy, edit=('("services.smartd.enable", True),',
                                              '("services.smartd.enable", True), ("services.smartd.notify", 1),'))
    before = {p: p.read_bytes() for p in root.rglob("*.nix")}
    assert cli.main(["build", "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "role DiskHealth: options: modules/disks/smartd.nix: services.smartd.notify is not in the option " \
           "contract" in err and "add a row to DiskHealth.options in roles.disks" in err
    assert {p: p.read_bytes() for p in root.rglob("*.nix")} == before


def test_two_labs_in_one_process_keep_their_own_roles(lab_copy, tmp_path):
    """Each lab's `roles` package is its own: loading a second lab forgets the first one's modules."""
    import shutil

    first = _lab_with_own_role(lab_copy)
    second = tmp_path / "second"
    shutil.copytree(first, second)
    (second / "roles" / "disks.py").write_text(DISK_ROLE.replace('label = "disk health"', 'label = "disks II"'))
    labels = []
    for root in (first, second, first):
        lab, problems = load(root)
        assert lab is not None, problems
        labels.append(next(r.label for r in lab.host("hanaakari").roles if type(r).__name__ == "DiskHealth"))
    assert labels == ["disk health", "disks II", "disk health"]


def test_the_worked_example_uses_only_the_public_interface():
    """homelab/roles/monitoring/__init__.py could live in a lab's own folder: it imports nothing else of homelab."""
    tree = ast.parse((REPO / "homelab" / "roles" / "monitoring" / "__init__.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import reaches into homelab's internals"
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
    assert {m for m in imported if m.startswith("homelab")} <= PUBLIC, imported
    assert "homelab" in imported or "homelab.role" in imported


def test_the_worked_example_opens_the_exporter_only_to_the_monitoring_host():
    from tests import labkit
    from homelab.firewall import flow_table

    lab = labkit.wide_lab()
    rows = {(r.host, str(r.source)) for r in flow_table(lab) if r.port == 9100}
    assert rows == {(h, "host:yomogi") for h in ("hanaakari", "tokiwa", "yomogi")}
    # the scrape targets are the model's hosts, at their LAN addresses
    from homelab.compile import compile_lab

    prom = compile_lab(lab).files["modules/monitoring/prometheus.nix"]
    scrape = dict(prom.definitions())[("services", "prometheus", "scrapeConfigs")]
    assert [s["targets"][0] for s in scrape[0]["static_configs"]] == [
        f"{h.ip}:9100" for h in lab.hosts]


@pytest.mark.parametrize("doc", ["README.md"])
def test_the_readme_tells_how_to_write_a_role(doc):
    text = (REPO / doc).read_text()
    section = text[text.index("## Writing a role"):]
    for word in ("homelab.role", "compile", "flows", "ports", "expectations", "options", "check", "graph"):
        assert word in section.split("\n## ")[0], word
