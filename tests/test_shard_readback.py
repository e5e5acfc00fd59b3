"""Each half of a two-process build (homelab/shard.py) reads back with nix the files it writes, and only those: every
generated file is read back once in the build, each module file by this process's half, each entry file by the
half of its host, the lab's data file by the child's.

A file whose text says something other than the model (a definition planted in it as it is rendered, in the
half that writes it) must stop the two-process build: nothing written, and the one-process build then finds and
says it (``shard.build`` returns None, and with ``HOMELAB_DEBUG`` says why).  Were a module file read back by
neither half (or an entry file by the wrong one), its planted definition would be written.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from homelab import files, load, render, shard
from tests.test_bench_runs import bench_module

from .conftest import copy_lab

HOSTS = 8
PLANT = '  homelab.planted = "by the test";\n}\n'


@pytest.fixture(scope="module")
def lab_source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shard-readback-lab")
    bench = bench_module()
    bench.write_lab(bench.synthetic_lab(HOSTS), root)
    return root


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def planted(text: str) -> str:
    """``text`` (a module file's or the data file's: an attribute set closed on its last line) with one more
    definition."""
    assert text.endswith("}\n")
    return text[:-2] + PLANT


def two_process_build(root: Path, nix, monkeypatch, capfd, rel: str | None):
    """shard.build of the lab under ``root`` in this process (the child is forked from it, and renders with the
    same functions), with ``rel``'s text planted; what it returned, and what it said on stderr."""
    module_text, data_text = render.module_text, render.data_text
    monkeypatch.setattr(render, "module_text", lambda f: planted(module_text(f)) if f.path == rel else module_text(f))
    monkeypatch.setattr(render, "data_text", lambda d: planted(data_text(d)) if d.path == rel else data_text(d))
    monkeypatch.setenv("HOMELAB_DEBUG", "1")
    lab, warnings = load.load_or_raise(root)
    capfd.readouterr()
    done = shard.build(root, lab, tuple(warnings), nix)
    return done, capfd.readouterr().err


@pytest.fixture(scope="module")
def halves(lab_source):
    from homelab import splitprep

    lab, warnings = load.load_or_raise(lab_source)
    ours, theirs = shard._halves(splitprep.shared(lab, warnings).compiled)
    return ours, theirs


def test_each_generated_file_is_read_back_by_the_half_that_writes_it(halves):
    """The split the planted files below are chosen from: modules in this process's half, entries split."""
    ours, theirs = halves
    assert not set(ours.rels) & set(theirs.rels)
    assert any(r.startswith("modules/") for r in ours.rels)
    assert {r.split("/")[0] for r in theirs.rels} == {"hosts"} and theirs.data and not ours.data


@pytest.mark.parametrize("which", ["first module", "last module", "this process's entry", "the child's entry",
                                   "data"])
def test_a_planted_definition_in_any_half_stops_the_two_process_build(lab_source, halves, nix, tmp_path,
                                                                      monkeypatch, capfd, which):
    if not shard.available():
        pytest.skip("no fork or a single core: the two-process path is never taken here")
    ours, theirs = halves
    modules = sorted(r for r in ours.rels if r.startswith("modules/"))
    rel = {"first module": modules[0], "last module": modules[-1],
           "this process's entry": sorted(r for r in ours.rels if r.startswith("hosts/"))[-1],
           "the child's entry": sorted(theirs.rels)[0], "data": "hosts/lab.nix"}[which]
    root = copy_lab(lab_source, tmp_path / "lab")
    before = tree(root)
    done, err = two_process_build(root, nix, monkeypatch, capfd, rel)
    assert done is None
    assert err.splitlines() == ["homelab: building in one process instead of two: nix read back something other "
                                "than the model says"]
    assert tree(root) == before and files.stale_temps(root) == []


def test_nothing_planted_builds_in_two_processes(lab_source, nix, tmp_path, monkeypatch, capfd):
    """The reference of the test above: the same build without a planted definition writes every file."""
    if not shard.available():
        pytest.skip("no fork or a single core: the two-process path is never taken here")
    root = copy_lab(lab_source, tmp_path / "lab")
    done, err = two_process_build(root, nix, monkeypatch, capfd, None)
    assert done is not None and err == ""
    assert set(done.written) == {rel for rel in tree(root) if rel not in tree(lab_source)}
