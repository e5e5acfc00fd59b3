"""Where a large lab's hosts are checked (homelab.validate.validate with homelab.forked, issue 19): each host once,
the last ones in a child when the lab splits (``HOMELAB_PARALLEL_FROM``: from that many hosts on; 0 never), the
early child's when a build started one (homelab.splitprep.ahead), and an error raised here as in one process."""

from __future__ import annotations

import os

import pytest

from homelab import forked, splitprep
from homelab import validate as V
from homelab.errors import Problem
from homelab.model import Lab

from .test_lab_growth import grown_lab

needs_fork = pytest.mark.skipif(not forked.possible(), reason="no fork, a single core or other threads here")


def _where_checked(monkeypatch) -> list[str]:
    """Add a host rule that says, as a warning of each host, which process checked it; returns the hosts this
    process checked, in order."""
    parent = os.getpid()
    here: list[str] = []

    def checked_by(ctx):
        if os.getpid() == parent:
            here.append(ctx.host.hostname)
            return [Problem(ctx.where, "checked", "here", "warning")]
        return [Problem(ctx.where, "checked", "in a child", "warning")]

    monkeypatch.setattr(V, "HOST_RULES", (*V.HOST_RULES, checked_by))
    return here


def _checked(problems) -> list[tuple[str, str]]:
    return [(p.where.removeprefix("hosts/"), p.reason) for p in problems if p.field == "checked"]


def _split_once(lab: Lab, problems, here: list[str]) -> int:
    """Assert every host was checked once, in order: the first ones here (none in a lab of 2 hosts) and the rest
    (at least one) in a child; returns how many were checked here."""
    names = [h.hostname for h in lab.hosts]
    mine = len(here)
    assert mine < len(names)
    assert here == names[:mine]
    assert _checked(problems) == [(n, "here") for n in names[:mine]] + [(n, "in a child") for n in names[mine:]]
    return mine


@needs_fork
def test_a_split_lab_checks_each_host_once_the_last_ones_in_the_child(monkeypatch):
    lab = grown_lab(30, "iptables")
    here = _where_checked(monkeypatch)
    monkeypatch.setenv("HOMELAB_PARALLEL_FROM", "2")
    _split_once(lab, V.validate(lab), here)
    assert forked._RUNNING == set()


@needs_fork
def test_a_build_s_early_child_checks_the_last_hosts_once(monkeypatch):
    lab = grown_lab(10, "iptables")
    here = _where_checked(monkeypatch)
    monkeypatch.setenv("HOMELAB_PARALLEL_FROM", "2")
    with splitprep.ahead() as loaded:
        loaded(lab)
        problems = V.validate(lab)
        assert V._ELSEWHERE == {}
    assert _split_once(lab, problems, here) == 10 - int(10 * splitprep._THEIR_HOSTS)  # its share: the last 30 %
    assert forked._RUNNING == set()


@needs_fork
@pytest.mark.parametrize(("parallel_from", "hosts", "split"), [
    ("0", 30, False),  # 0: never
    ("1", 2, True),
    ("2", 2, True),  # from that many hosts on
    ("30", 30, True),
    ("31", 30, False),
    ("1", 1, False),  # one host: nothing to split
])
def test_the_lab_splits_from_homelab_parallel_from_hosts_on(monkeypatch, parallel_from, hosts, split):
    lab = grown_lab(hosts, "iptables")
    here = _where_checked(monkeypatch)
    monkeypatch.setenv("HOMELAB_PARALLEL_FROM", parallel_from)
    problems = V.validate(lab)
    names = [h.hostname for h in lab.hosts]
    if split:
        _split_once(lab, problems, here)
    else:
        assert here == names
        assert _checked(problems) == [(n, "here") for n in names]


@needs_fork
def test_a_rule_raising_on_this_process_s_hosts_beside_the_early_child_raises_here(monkeypatch):
    lab = grown_lab(10, "iptables")

    def raises_on_n005(ctx):
        if ctx.host.hostname == "n005":
            raise RuntimeError("a bug in a rule, on n005")
        return []

    monkeypatch.setattr(V, "HOST_RULES", (*V.HOST_RULES, raises_on_n005))
    monkeypatch.setenv("HOMELAB_PARALLEL_FROM", "2")
    with splitprep.ahead() as loaded:
        loaded(lab)
        with pytest.raises(RuntimeError, match="^a bug in a rule, on n005$"):
            V.validate(lab)
    assert splitprep._PENDING == {} and V._ELSEWHERE == {} and forked._RUNNING == set()
