"""A new built-in role is one folder and one registry line: the contract, docs/nixpkgs-facts.md's table and the
policy take it up with no other edit.

The package is copied, ``homelab/roles/smartd/`` written (a 30-line role with its option fact and its
evidence) and one line added to the registry (``homelab/registry.py``); a fresh interpreter on the copy then
finds the role among the built-in ones and among what ``from homelab import`` gives, its row in the contract and in the generated table, and its flow in the
policy of a lab that uses it (and validation and the compiler treat it like any other role).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

ROLE = '''"""DiskHealth: smartd on the host, its status page open to the admins (a small built-in role)."""

from __future__ import annotations

import attrs

from ... import checks, fields
from ... import optiontypes as t
from ...contract import OptionFact
from ...role import ADMINS, Flow, Module, Port, Role, section

SMARTD = "nixos/modules/services/monitoring/smartd.nix"


@attrs.frozen
class DiskHealth(Role):
    port: int = attrs.field(default=9633, validator=fields.port)
    label = "disk health"
    options = (OptionFact("services.smartd.enable", t.bool_, SMARTD, nix_type="`bool`", nix_default="`false`",
                          evidence="S"),)

    def compile(self, ctx):
        yield Module("modules/disks/smartd.nix", "Disk health (smartd)",
                     (section("smartd checks every disk's SMART data.", ("services.smartd.enable", True)),))

    def ports(self, ctx):
        yield Port(self.port, "tcp", "the disk health page", field="DiskHealth.port")

    def flows(self, ctx):
        yield Flow(self.port, "tcp", ADMINS, "the disk health page, for the admins")

    def expectations(self, ctx):
        yield checks.service("smartd.service", "host", "DiskHealth role")
'''

PROBE = '''
import json
from homelab import Cluster, ControlPlane, Host, check, factsdoc, policy
from homelab.compile import compile_lab
from homelab.model import Lab
from homelab.roles import BUILTIN, builtin_contract
from homelab.roles.smartd import DiskHealth

lab = Lab(Cluster(name="t", domain="t.example.com", lan="192.168.10.0/24", gateway="192.168.10.1",
                  nameservers=["192.168.10.1"]),
          [Host(hostname="a", system="x86_64-linux", state_version="25.05", interface="enp1s0",
                address="192.168.10.10", roles=[ControlPlane(), DiskHealth()])])
check(lab)
compiled = compile_lab(lab)
import homelab
print(json.dumps({
    "builtin": DiskHealth in BUILTIN and BUILTIN[-1] is DiskHealth,
    "exported": [homelab.DiskHealth is DiskHealth, "DiskHealth" in homelab.__all__, "DiskHealth" in dir(homelab)],
    "contract": builtin_contract().by_path["services.smartd.enable"].declared_in,
    "doc_row": [ln for ln in factsdoc.block().splitlines() if "services.smartd.enable" in ln],
    "policy": [[r["host"], r["port"], r["proto"], r["from"], r["by"]] for r in policy.rows(lab) if r["port"] == 9633],
    "files": sorted(p for p in compiled.files if "smartd" in p),
}))
'''


def test_a_built_in_role_is_one_folder_and_one_registry_line(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO / "homelab", src / "homelab", ignore=shutil.ignore_patterns("__pycache__"))
    (src / "homelab" / "roles" / "smartd").mkdir()
    (src / "homelab" / "roles" / "smartd" / "__init__.py").write_text(ROLE)
    registry = src / "homelab" / "registry.py"
    text = registry.read_text()
    line = '    ("power_schedule", "PowerSchedule"),\n'
    assert text.count(line) == 1
    registry.write_text(text.replace(line, line + '    ("smartd", "DiskHealth"),\n'))

    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                       env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got == {
        "builtin": True,
        "exported": [True, True, True],  # `from homelab import DiskHealth`, as for every built-in role
        "contract": "nixos/modules/services/monitoring/smartd.nix",
        "doc_row": ["| `services.smartd.enable` | `bool` | `false` | `nixos/modules/services/monitoring/smartd.nix` "
                    "| S | confirmed |"],
        "policy": [["a", 9633, "tcp", "admins (lan, tailnet)", "DiskHealth"]],
        "files": ["modules/disks/smartd.nix"],
    }
