"""A whole build of a large lab compiles its shared module files in a child forked once the hosts are loaded,
beside the validation (homelab.splitprep.ahead): the answer is the one-process compile's, and whatever the child
does (dies, raises, the lab does not validate) the build goes on or fails exactly as without it.

``HOMELAB_PARALLEL_FROM=2`` makes the benchmark's synthetic lab of 8 hosts a lab the build splits.
"""

from __future__ import annotations

import os
import time

import pytest

from homelab import forked, render, splitprep
from homelab import validate as V
from homelab.compile import compile_shared
from homelab.errors import LabError
from homelab.load import load_or_raise
from tests.test_bench_runs import bench_module
from tests.test_shard import copy_lab

validating: list[int] = []  # the validation's children (the ``children`` fixture's)

needs_fork = pytest.mark.skipif(not forked.possible(), reason="no fork, a single core or other threads here")


@pytest.fixture(scope="module")
def lab_source(tmp_path_factory):
    root = tmp_path_factory.mktemp("ahead-lab")
    bench = bench_module()
    bench.write_lab(bench.synthetic_lab(8), root)
    return root


@pytest.fixture
def split(monkeypatch):
    monkeypatch.setenv("HOMELAB_PARALLEL_FROM", "2")


@pytest.fixture
def children(monkeypatch) -> list[tuple[int, list[bool]]]:
    """Each child forked for the shared compile (its pid) and, for each answer asked of it, whether it came, as the
    caller was told (first its hosts' problems, then the compile: homelab.forked.start_each; the validation's
    children are left out: a lab equal to one validated before is not validated again)."""
    seen: list[tuple[int, list[bool]]] = []
    real_start, real_each, real_next = forked.start, forked.start_each, forked.Child.next
    validating.clear()

    def start(fn, *args):
        child = real_start(fn, *args)
        validating.append(child._pid)
        return child

    def start_each(fn, *args):
        child = real_each(fn, *args)
        seen.append((child._pid, []))
        return child

    def next_(self):
        answered, value = real_next(self)
        for pid, answers in seen:
            if pid == self._pid:
                answers.append(answered)
        return answered, value

    monkeypatch.setattr(forked, "start", start)
    monkeypatch.setattr(forked, "start_each", start_each)
    monkeypatch.setattr(forked.Child, "next", next_)
    return seen


def _texts(compiled) -> dict[str, str]:
    return {rel: render.module_text(f) for rel, f in compiled.files.items()}


def _gone(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


@needs_fork
def test_the_early_childs_answer_is_the_one_process_compile(lab_source, split, children):
    with splitprep.ahead() as loaded:
        lab, warnings = load_or_raise(lab_source, loaded=loaded)
        assert len(children) == 1 and len(splitprep._PENDING) == 1
        compiled = splitprep.shared(lab, warnings).compiled
    assert children[0][1] == [True, True]  # its hosts' problems, then its compile
    here = compile_shared(lab)
    assert (compiled.files, compiled.hosts, compiled.data) == (here.files, here.hosts, None)
    assert compiled.contract is here.contract  # this process's own (homelab.contract.of_roles)
    assert _texts(compiled) == _texts(here) and len(compiled.files) > 5
    assert splitprep._PENDING == {}


@needs_fork
def test_a_child_that_dies_leaves_the_compile_to_this_process(lab_source, split, children, monkeypatch):
    parent = os.getpid()
    real = splitprep._shared_parts

    def dies_in_the_child(lab):
        if os.getpid() != parent:
            os._exit(9)
        return real(lab)

    monkeypatch.setattr(splitprep, "_shared_parts", dies_in_the_child)
    with splitprep.ahead() as loaded:
        lab, warnings = load_or_raise(lab_source, loaded=loaded)
        compiled = splitprep.shared(lab, warnings).compiled
    assert children[0][1] == [True, False]  # its hosts' problems came before it died
    here = compile_shared(lab)
    assert (compiled.files, compiled.hosts) == (here.files, here.hosts)


@needs_fork
def test_a_compile_that_raises_raises_here_as_without_the_child(lab_source, split, children, monkeypatch):
    def broken(lab):
        raise RuntimeError(f"a bug in compile, {len(lab.hosts)} hosts")

    monkeypatch.setattr(splitprep, "compile_shared", broken)
    lab, warnings = load_or_raise(lab_source)
    with pytest.raises(RuntimeError, match="^a bug in compile, 8 hosts$"):
        splitprep.shared(lab, warnings)
    assert children == []
    with splitprep.ahead() as loaded:
        lab, warnings = load_or_raise(lab_source, loaded=loaded)
        with pytest.raises(RuntimeError, match="^a bug in compile, 8 hosts$"):
            splitprep.shared(lab, warnings)
    # the child answered twice (the problems of its hosts; that its compile raised there too), so it was made here
    assert [answers for _, answers in children] == [[True, True]]
    assert splitprep._PENDING == {}


@needs_fork
def test_a_lab_that_does_not_validate_ends_the_child_and_says_the_same(lab_source, tmp_path, split, children):
    root = copy_lab(lab_source, tmp_path / "bad")
    host_py = root / "hosts" / "n0005" / "host.py"
    text = host_py.read_text()
    host_py.write_text(text.replace("IPv4Address('192.168.0.15')", "IPv4Address('192.168.0.12')"))
    with pytest.raises(LabError) as without:
        load_or_raise(root)
    before = len(children)
    with pytest.raises(LabError) as early:
        with splitprep.ahead() as loaded:
            load_or_raise(root, loaded=loaded)
    assert [str(p) for p in early.value.problems] == [str(p) for p in without.value.problems]
    assert any("192.168.0.12" in str(p) for p in early.value.problems)
    assert len(children) == before + 1
    ours = children[before][0]  # never asked for its answer, ended
    assert children[before][1] == [] and _gone(ours)
    assert splitprep._PENDING == {}


def test_no_child_when_the_build_does_not_split(lab_source, monkeypatch, children):
    with splitprep.ahead(False) as loaded:
        assert loaded is None
    monkeypatch.setenv("HOMELAB_PARALLEL_FROM", "9")  # 8 hosts: one process
    with splitprep.ahead() as loaded:
        lab, warnings = load_or_raise(lab_source, loaded=loaded)
        assert splitprep._PENDING == {}
    monkeypatch.setenv("HOMELAB_PARALLEL_FROM", "0")
    with splitprep.ahead() as loaded:
        load_or_raise(lab_source, loaded=loaded)
        assert splitprep._PENDING == {}
    assert children == []


@needs_fork
def test_the_validation_runs_in_this_process_beside_the_shared_compile(lab_source, tmp_path, split, children):
    root = copy_lab(lab_source, tmp_path / "lab")  # a lab no other test validated (a validation is kept per lab)
    with splitprep.ahead() as loaded:
        lab, warnings = load_or_raise(root, loaded=loaded)
        assert len(children) == 1 and validating == []  # the second core is the compile's: no third process
        splitprep.shared(lab, warnings)
    assert forked._RUNNING == set()
    root = copy_lab(lab_source, tmp_path / "again")
    host_py = root / "hosts" / "n0001" / "host.py"
    host_py.write_text(host_py.read_text().replace("synthetic mini PC #1'", "another mini PC'"))
    load_or_raise(root)  # without the shared compile's child: the validation's own
    assert len(validating) == 1 and forked._RUNNING == set()


def _validated(lab, early: bool) -> list:
    fresh = type(lab)(lab.cluster, lab.hosts, lab.sources)  # nothing worked out before
    if not early:
        return V.validate(fresh)
    with splitprep.ahead() as loaded:
        loaded(fresh)
        assert id(fresh) in V._ELSEWHERE
        found = V.validate(fresh)
        assert V._ELSEWHERE == {}
    return found


@needs_fork
def test_the_last_hosts_problems_come_from_the_child_as_one_process_finds_them(split, children):
    from tests.test_validate_split import EXPECTED, _problem_lab, _where

    lab = _problem_lab()  # 30 hosts, problems on n005, n020 (here) and n025, n027 (the child's last 7)
    one = _validated(lab, early=False)
    assert [p for p in _where(one) if p[0].startswith("hosts/")] == EXPECTED
    assert _validated(lab, early=True) == one
    assert [answers for _, answers in children] == [[True]]


@needs_fork
def test_a_rule_raising_on_the_childs_hosts_raises_here(split, children, monkeypatch):
    from tests.test_validate_split import _problem_lab

    lab = _problem_lab()

    def raises_on_n025(ctx):
        if ctx.host.hostname == "n025":
            raise RuntimeError("a bug in a rule, on n025")
        return []

    monkeypatch.setattr(V, "HOST_RULES", (*V.HOST_RULES, raises_on_n025))
    for early in (False, True):
        with pytest.raises(RuntimeError, match="^a bug in a rule, on n025$"):
            _validated(lab, early)
    assert [answers for _, answers in children] == [[True]]  # it answered: its compile, not those problems
    assert splitprep._PENDING == {} and forked._RUNNING == set()


@needs_fork
def test_a_child_that_dies_leaves_its_hosts_problems_to_this_process(split, children, monkeypatch):
    from tests.test_validate_split import _problem_lab, dies_in_a_child

    lab = _problem_lab()
    one = _validated(lab, early=False)
    monkeypatch.setattr(V, "HOST_RULES", (*V.HOST_RULES, dies_in_a_child()))
    assert _validated(lab, early=True) == one
    assert [answers for _, answers in children] == [[False]]


@needs_fork
def test_the_validation_does_not_wait_for_the_shared_compile(lab_source, tmp_path, split, children, monkeypatch):
    """The child sends its hosts' problems before it compiles: the validation (and what the build does next, the
    secrets' check) goes on while the child compiles.  Here the child's compile waits until the validation has
    returned; had the validation waited for the compile, the child would give up and die (the compile then made
    here)."""
    parent = os.getpid()
    validated = tmp_path / "validated"
    real = splitprep._shared_parts

    def after_the_validation(lab):
        if os.getpid() != parent:
            for _ in range(100):  # 5 s at most
                if validated.exists():
                    return real(lab)
                time.sleep(0.05)
            os._exit(7)  # the validation waited for the compile: no compile from this child
        return real(lab)

    monkeypatch.setattr(splitprep, "_shared_parts", after_the_validation)
    lab = load_or_raise(lab_source)[0]
    fresh = type(lab)(lab.cluster, lab.hosts, lab.sources)  # nothing worked out before
    with splitprep.ahead() as loaded:
        loaded(fresh)
        found = V.validate(fresh)
        validated.touch()
        compiled = splitprep.shared(fresh, ()).compiled
    assert [answers for _, answers in children] == [[True, True]]  # the compile came from the child
    assert found == V.validate(type(lab)(lab.cluster, lab.hosts, lab.sources))
    here = compile_shared(lab)
    assert (compiled.files, compiled.hosts) == (here.files, here.hosts)
    assert splitprep._PENDING == {} and forked._RUNNING == set()
