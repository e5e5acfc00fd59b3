"""`homelab policy`: the flow table as people read it, and the README's copy of it kept current."""

from __future__ import annotations

import json

from homelab import cli, policy
from homelab.firewall import flow_table
from tests import labkit

from .conftest import REPO


def test_rows_are_the_flow_table_and_nothing_else():
    lab = labkit.wide_lab()
    got = {(r["host"], r["port"], r["proto"], r["source"], r["by"]) for r in policy.rows(lab)}
    assert got == {(r.host, r.port, r.proto, str(r.source), r.by) for r in flow_table(lab)}
    # the escape hatch and the worked example role are rows too, with their reasons
    assert ("tokiwa", 8123, "tcp", "lan", "host.py") in got
    assert {(h, 9100, "tcp", "host:yomogi", "NodeExporter") for h in ("hanaakari", "tokiwa")} <= got
    assert ("yomogi", 9090, "tcp", "admins", "Monitoring") in got
    # admins are spelled out where a person reads the table
    assert "admins (tailnet, 192.168.50.64/27)" in policy.table(lab)


def test_table_merges_protocols_of_one_row_and_escapes_pipes():
    lab = labkit.lab()
    lines = policy.table(lab).splitlines()
    dns = [ln for ln in lines if ln.startswith("| yomogi") and " 53/" in ln]
    assert [ln.split("|")[3].strip() for ln in dns] == ["lan", "pods", "tailnet"]
    assert all(" 53/tcp+udp " in ln for ln in dns)
    assert len({len(ln) for ln in lines}) == 1  # padded columns


def test_cli_json_and_readme_check(tmp_path, capsys):
    assert cli.main(["policy", "--json", "--root", str(REPO)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["version"] == 1 and data["rows"] and {"host", "port", "proto", "from", "why", "by"} <= set(data["rows"][0])
    readme = tmp_path / "README.md"
    readme.write_text("# a lab\n")
    assert cli.main(["policy", "--check-readme", "--readme", str(readme), "--root", str(REPO)]) == 1
    assert cli.main(["policy", "--update-readme", "--readme", str(readme), "--root", str(REPO)]) == 0
    text = readme.read_text()
    assert text.startswith("# a lab\n\n## Network policy\n\n<!-- homelab policy -->")
    assert cli.main(["policy", "--check-readme", "--readme", str(readme), "--root", str(REPO)]) == 0


def test_the_repository_readme_shows_the_seed_labs_policy(capsys):
    """The README's table is the frozen seed lab's (or, in a fork that redrew it, the fork's own lab's), so
    editing hosts/ alone never makes it stale (tests/test_readme_fork.py edits a copy to show it)."""
    from tests.readme_checks import readme_problems

    assert readme_problems(REPO) == []