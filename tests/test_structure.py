"""The shape of the code a newcomer meets (issue 15): short functions, validation as named rules, one list
of source words, roles that tell the generic code what it needs to know about them.

These read homelab's own source and model; the floors themselves are tests/test_layers.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from homelab import validate
from homelab.role import SOURCE_HELP, SOURCE_WORDS, Source
from tests import labkit

PACKAGE = Path(__file__).resolve().parent.parent / "homelab"
MAX_LINES = 60


def long_functions(root: Path, limit: int = MAX_LINES) -> list[str]:
    """``path:line name (n lines)`` of every function or method under ``root`` longer than ``limit`` lines."""
    out = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    out.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({n} lines)")
    return out


def test_no_function_in_homelab_is_longer_than_60_lines():
    assert long_functions(PACKAGE) == []


def test_the_measure_counts_a_long_function(tmp_path):
    body = "\n".join(f"        x{i} = {i}" for i in range(60))
    (tmp_path / "m.py").write_text(f"def short():\n    pass\n\n\nclass C:\n    def long(self):\n{body}\n")
    assert long_functions(tmp_path) == [f"{tmp_path.name}/m.py:6 long (61 lines)"]
    assert long_functions(tmp_path, 61) == []


@pytest.mark.parametrize("rules", [validate.CLUSTER_RULES, validate.HOST_RULES, validate.LAB_RULES],
                         ids=["cluster", "host", "lab"])
def test_each_rule_is_a_short_named_function(rules):
    for rule in rules:
        assert rule.__name__ not in ("<lambda>", "check", "rule") and rule.__name__.islower(), rule
        src = Path(rule.__code__.co_filename).read_text().splitlines()
        node = next(n for n in ast.walk(ast.parse("\n".join(src)))
                    if isinstance(n, ast.FunctionDef) and n.name == rule.__name__)
        assert node.end_lineno - node.lineno + 1 <= 25, rule.__name__


def test_a_rule_runs_alone_and_names_what_it_refuses():
    facts = validate.ClusterFacts(labkit.cluster())
    assert list(validate.repeated_nameserver(facts)) == []
    twice = validate.ClusterFacts(labkit.cluster(nameservers=["192.168.10.1", "192.168.10.1"]))
    assert [(p.where, p.field, p.reason) for p in validate.repeated_nameserver(twice)] == [
        ("cluster", "nameservers", "lists the same address twice")]


def test_every_source_word_is_in_the_one_message():
    for word in SOURCE_WORDS:
        assert f'"{word}"' in SOURCE_HELP
        assert Source.parse(word).kind == word
    assert SOURCE_HELP.count('"') == 2 * (len(SOURCE_WORDS) + 2)  # the words, "host:<name>" and the example


def test_a_host_rule_runs_alone_on_one_host():
    from homelab.role import HostContext

    lab = labkit.lab()
    assert [list(validate.field_without_its_role(HostContext(lab, h))) for h in lab.hosts] == [[], [], []]
    bare = labkit.evolve_host(lab, "tokiwa", roles=[labkit.Worker()])
    tokiwa = bare.host("tokiwa")
    assert [(p.where, p.field, p.reason, p.severity) for p in validate.field_without_its_role(
        HostContext(bare, tokiwa))] == [
        ("hosts/tokiwa", "tailscale_address", "is set but the host has no Tailscale() role, so nothing brings that "
         "address up", "warning")]


def test_the_roles_say_where_their_sources_arrive():
    from homelab.sources import matches, source_interface

    lab = labkit.lab()
    yomogi = lab.host("yomogi")
    assert source_interface(lab, yomogi, "tailnet") == "tailscale0"
    assert [(m.family, m.iface, m.net) for m in matches(lab, yomogi, Source.parse("tailnet"))] == [
        (4, "tailscale0", "100.64.0.0/10"), (6, "tailscale0", "fd7a:115c:a1e0::/48")]
    assert [(m.iface, m.net) for m in matches(lab, yomogi, Source.parse("pods"))] == [
        ("mynet", "10.1.0.0/16"), ("flannel.1", "10.1.0.0/16")]
    no_tailscale = labkit.evolve_host(lab, "yomogi", roles=[r for r in yomogi.roles if type(r).__name__ != "Tailscale"])
    assert matches(no_tailscale, no_tailscale.host("yomogi"), Source.parse("tailnet")) == []
