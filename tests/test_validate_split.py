"""A large lab's hosts are validated in two processes (homelab.validate.validate with homelab.forked, issue 19):
the problems, their order and any error raised are exactly those of one process, whatever the child does."""

from __future__ import annotations

import os
import threading
import time

import attrs
import pytest

from homelab import forked
from homelab import validate as V
from homelab.model import Lab, OpenPort
from homelab.roles import Worker

from .test_lab_growth import grown_lab

needs_fork = pytest.mark.skipif(not forked.possible(), reason="no fork, a single core or other threads here")


def _problem_lab() -> Lab:
    """30 hosts with problems in both parts (the first 40 % here, the rest in the child)."""
    lab = grown_lab(30, "iptables")
    hosts = list(lab.hosts)
    hosts[5] = attrs.evolve(hosts[5], tailscale_address="100.100.100.100")
    hosts[20] = attrs.evolve(hosts[20], address=str(hosts[3].address))
    hosts[25] = attrs.evolve(hosts[25], roles=[Worker()])  # a Tailscale address without the role: a warning
    hosts[27] = attrs.evolve(hosts[27], open_ports=[OpenPort(8123, source="world", reason="a web page")])
    return Lab(lab.cluster, hosts)


def _validate(lab: Lab, monkeypatch, split: bool) -> list:
    monkeypatch.setenv("HOMELAB_PARALLEL_FROM", "2" if split else "0")
    return V.validate(Lab(lab.cluster, lab.hosts, lab.sources))  # a fresh lab: nothing worked out before


def _answers(monkeypatch) -> list[bool]:
    """Whether each child answered, as validate() is told."""
    seen: list[bool] = []
    real = forked.Child.result

    def result(self):
        answered, value = real(self)
        seen.append(answered)
        return answered, value

    monkeypatch.setattr(forked.Child, "result", result)
    return seen


def _where(problems) -> list[tuple[str, str, str]]:
    return [(p.where, p.field, p.severity) for p in problems]


EXPECTED = [("hosts/n005", "tailscale_address", "error"), ("hosts/n020", "address", "error"),
            ("hosts/n025", "tailscale_address", "warning"), ("hosts/n027", "open_ports[0]", "warning")]


@needs_fork
def test_two_processes_find_the_same_problems_in_the_same_order(monkeypatch):
    lab = _problem_lab()
    one = _validate(lab, monkeypatch, split=False)
    answers = _answers(monkeypatch)
    two = _validate(lab, monkeypatch, split=True)
    assert answers == [True]  # the child checked the last 18 hosts
    assert [p for p in _where(one) if p[0].startswith("hosts/")] == EXPECTED
    assert two == one


def dies_in_a_child():
    """A host rule that kills any process but this one (a forked child running it dies; here it finds nothing)."""
    parent = os.getpid()

    def dies_in_the_child(ctx):
        if os.getpid() != parent:
            os._exit(9)
        return []

    return dies_in_the_child


@needs_fork
def test_a_child_that_dies_is_done_here(monkeypatch):
    lab = _problem_lab()
    one = _validate(lab, monkeypatch, split=False)
    monkeypatch.setattr(V, "HOST_RULES", (*V.HOST_RULES, dies_in_a_child()))
    answers = _answers(monkeypatch)
    assert _validate(lab, monkeypatch, split=True) == one
    assert answers == [False]


@needs_fork
def test_a_rule_that_raises_in_the_childs_hosts_raises_here_before_a_lab_rule_that_raises(monkeypatch):
    lab = _problem_lab()

    def raises_on_n025(ctx):
        if ctx.host.hostname == "n025":
            raise RuntimeError("a bug in a rule, on n025")
        return []

    def lab_rule_raises(lab_):
        raise ValueError("a bug in a lab rule")

    monkeypatch.setattr(V, "HOST_RULES", (*V.HOST_RULES, raises_on_n025))
    monkeypatch.setattr(V, "LAB_RULES", (*V.LAB_RULES, lab_rule_raises))
    for split in (False, True):
        with pytest.raises(RuntimeError, match="^a bug in a rule, on n025$"):
            _validate(lab, monkeypatch, split=split)
    monkeypatch.setattr(V, "HOST_RULES", V.HOST_RULES[:-1])
    for split in (False, True):
        with pytest.raises(ValueError, match="^a bug in a lab rule$"):
            _validate(lab, monkeypatch, split=split)


def test_no_child_below_the_threshold_nor_beside_another_thread(monkeypatch):
    started: list[int] = []
    monkeypatch.setattr(forked, "start", lambda *a: started.append(1))
    lab = _problem_lab()
    monkeypatch.setenv("HOMELAB_PARALLEL_FROM", "31")
    V.validate(lab)
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        monkeypatch.setenv("HOMELAB_PARALLEL_FROM", "2")
        V.validate(Lab(lab.cluster, lab.hosts))
    finally:
        stop.set()
        t.join()
    assert started == []


def _boom():
    raise RuntimeError("boom")


@needs_fork
def test_a_child_answers_what_its_function_returns_and_nothing_else():
    assert forked.start(sorted, [3, 1, 2]).result() == (True, [1, 2, 3])
    assert forked.start(_boom).result() == (False, None)
    assert forked.start(lambda: (lambda: 1)).result() == (False, None)  # a result that does not pickle
    big = "x" * (3 << 20)  # more than a pipe holds
    assert forked.start(str, big).result() == (True, big)


@needs_fork
def test_a_stopped_child_is_gone():
    child = forked.start(time.sleep, 60)
    started = time.monotonic()
    child.stop()
    assert time.monotonic() - started < 10
    with pytest.raises(ChildProcessError):
        os.waitpid(child._pid, os.WNOHANG)
