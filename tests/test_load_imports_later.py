"""The hand-written imports of every host are looked at after the hosts ran (homelab.load._with_import_problems),
once a build's shared compile started beside (homelab.splitprep.ahead): their problems stay where each host's
are, between the problems of the hosts before and after it, and a lab with one loads as no lab, as before."""

from __future__ import annotations

from pathlib import Path

import pytest

from homelab import load
from homelab.about import program
from homelab.errors import LabError
from homelab.load import PLACEHOLDER

from .test_precompile import HEADER, _write


def _imports(root: Path, host: str, *imports: str) -> None:
    host_py = root / "hosts" / host / "host.py"
    text = host_py.read_text()
    assert text.count("imports=()") == 1
    host_py.write_text(text.replace("imports=()", f"imports={tuple(imports)!r}"))


def _said(problems) -> list[tuple[str, str, str]]:
    return [(p.where, p.field, p.reason.split(";")[0]) for p in problems if p.severity == "error"]


def test_import_problems_stay_between_the_hosts_before_and_after(tmp_path):
    _write(tmp_path, 8)
    _imports(tmp_path, "n001", "./missing.nix")
    _imports(tmp_path, "n002", "./hardware-configuration.nix", "./gone.nix", "./hardware-configuration.nix")
    (tmp_path / "hosts" / "n003" / "host.py").write_text(HEADER + "host = Host(hostname='n003',\n")
    _imports(tmp_path, "n005", "./hardware-configuration.nix")
    (tmp_path / "hosts" / "n005" / "hardware-configuration.nix").write_text(PLACEHOLDER + "\n{ }\n")
    _imports(tmp_path, "n007", "./hw.nix")
    (tmp_path / "hosts" / "n006" / "default.nix").write_text("{ }\n")  # where the build writes n006's entry
    (tmp_path / "hosts" / "n007" / "hw.nix").symlink_to("../n006/default.nix")
    lab, problems = load.load(tmp_path)
    assert lab is None
    assert _said(problems) == [
        ("hosts/n001", "imports", "'./missing.nix' does not exist next to host.py"),
        ("hosts/n002", "imports", "'./gone.nix' does not exist next to host.py"),
        ("hosts/n003", "host.py", "syntax error on line 4: '(' was never closed"),
        ("hosts/n005", "imports", "./hardware-configuration.nix is the placeholder `homelab init` wrote: replace it "
                                  "with this machine's own (on the machine: nixos-generate-config "
                                  f"--show-hardware-config), or let `{program()} install hosts/n005 --target "
                                  "root@ADDRESS` write it (nixos-anywhere generates it there)"),
        ("hosts/n007", "imports", "'./hw.nix' leads to hosts/n006/default.nix, a file homelab generates"),
    ]


def test_a_lab_whose_only_problem_is_an_import_does_not_load_and_says_the_clusters_too(tmp_path):
    _write(tmp_path, 4)
    _imports(tmp_path, "n002", "./missing.nix")
    seen = []
    with pytest.raises(LabError) as e:
        load.load_or_raise(tmp_path, loaded=seen.append)
    assert len(seen) == 1 and len(seen[0].hosts) == 4  # the lab was made, then refused
    assert _said(e.value.problems) == [("hosts/n002", "imports", "'./missing.nix' does not exist next to host.py")]
    # the cluster's own warnings are said with it, as when a host.py is broken
    lab, problems = load.load(tmp_path)
    assert lab is None and [p for p in problems if p.where == "cluster"] != []
    assert [str(p) for p in problems if p.severity == "error"] == [str(p) for p in e.value.problems]


def test_a_lab_without_import_problems_loads_with_the_hook_called_once(tmp_path):
    _write(tmp_path, 4)
    _imports(tmp_path, "n002", "./hardware-configuration.nix")
    seen = []
    lab, warnings = load.load_or_raise(tmp_path, loaded=seen.append)
    assert seen == [lab] and lab.host("n002").imports == ("./hardware-configuration.nix",)
