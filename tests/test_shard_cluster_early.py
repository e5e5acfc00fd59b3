"""A two-process build makes the cluster layer's texts before it takes the shared compile (homelab/shard.py: while a
child started early still compiles): an error making them is raised where it always was, after the lab was found
valid, and a lab that does not validate still says so first."""

from __future__ import annotations

import pytest

from homelab import build as build_mod
from homelab import files, helmfile, shard
from homelab.errors import LabError
from tests import labkit


@pytest.fixture(autouse=True)
def _two_processes_here():
    if not shard.available():
        pytest.skip("no fork or a single core: the two-process path is never taken here")


def _broken(calls: list[int]):
    def texts(lab):
        calls.append(len(lab.hosts))
        raise RuntimeError("a bug in the cluster layer")
    return texts


def test_an_error_making_the_cluster_layer_is_raised_as_before(tmp_path, monkeypatch):
    lab = labkit.lab()
    build_mod.prepare(lab)  # a valid lab
    calls: list[int] = []
    monkeypatch.setattr(helmfile, "texts", _broken(calls))
    with pytest.raises(RuntimeError, match="^a bug in the cluster layer$"):
        shard.build(tmp_path, lab, (), None)
    assert calls == [3, 3]  # made early, and again where it is raised
    assert sorted(p.name for p in tmp_path.iterdir()) == [] and files.stale_temps(tmp_path) == []
    with files.locked(tmp_path):  # the lab's lock was given back
        pass


def test_a_lab_that_does_not_validate_says_so_before_the_cluster_layers_error(tmp_path, monkeypatch, capsys):
    lab = labkit.evolve_host(labkit.lab(), "tokiwa", address="192.168.10.10")  # yomogi's address
    with pytest.raises(LabError):
        build_mod.prepare(lab)
    calls: list[int] = []
    monkeypatch.setattr(helmfile, "texts", _broken(calls))
    assert shard.build(tmp_path, lab, (), None) is None  # the one-process build names the lab's problem
    assert calls == [3] and list(tmp_path.iterdir()) == []
    assert capsys.readouterr().err == ""  # a problem of the lab's: the one-process build says it


def test_the_cluster_layer_is_made_once(tmp_path, monkeypatch):
    lab = labkit.lab()
    build_mod.prepare(lab)
    real = helmfile.texts
    made: list[dict[str, str]] = []

    def counting(lab_):
        made.append(real(lab_))
        return made[-1]

    monkeypatch.setattr(helmfile, "texts", counting)
    stop = RuntimeError("stopped before the fork")

    def no_fork(*args, **kwargs):
        raise stop

    monkeypatch.setattr(shard, "_run_both", no_fork)
    with pytest.raises(RuntimeError) as e:
        shard.build(tmp_path, lab, (), None)
    assert e.value is stop and len(made) == 1 and made[0] == real(lab)
