"""``homelab build`` starts the host.py helper before it imports the rest of homelab (homelab.precompile.early):
the helper lists the host folders itself, so what it compiles may differ from what the load runs (a folder
without host.py, a host.py that is not a file, a host added or removed since): the lab, every problem and every
message are exactly those of compiling each file here."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from homelab import load, precompile
from homelab.precompile import Precompiled

from .test_precompile import HEADER, _write

needs_helper = pytest.mark.skipif(not precompile.available(), reason="no fork or a single core: no helper here")


def _load(root: Path, monkeypatch, compiling: Precompiled | None, used: list[bool]):
    monkeypatch.setattr(load, "PRECOMPILE_FROM", 10**9)  # no helper of the load's own
    real = Precompiled.code_for

    def counting(self, path):
        code = real(self, path)
        used.append(code is not None)
        return code

    monkeypatch.setattr(Precompiled, "code_for", counting)
    try:
        return load.load(root, compiling=compiling)
    finally:
        assert compiling is None or compiling._closed  # the load closed it


def _early(root: Path) -> Precompiled:
    helper = precompile.early(str(root / "hosts"), at_least=2)
    assert helper is not None
    return helper


@needs_helper
def test_a_lab_loads_the_same_with_the_early_helper(tmp_path, monkeypatch):
    _write(tmp_path, 12)
    used: list[bool] = []
    with_helper = _load(tmp_path, monkeypatch, _early(tmp_path), used)
    assert with_helper == _load(tmp_path, monkeypatch, None, [])
    assert with_helper[0] is not None and len(with_helper[0].hosts) == 12
    assert used == [True] * 12  # every host.py came compiled from the helper


@needs_helper
def test_folders_that_changed_since_the_helper_listed_them_load_as_without_it(tmp_path, monkeypatch):
    _write(tmp_path, 12)
    hosts = tmp_path / "hosts"
    (hosts / "notes").mkdir()  # a folder without host.py: not a host
    (hosts / ".hidden").mkdir()
    (hosts / ".hidden" / "host.py").write_text("raise SystemExit(3)\n")
    (hosts / "n004" / "host.py").write_text(HEADER + "host = Host(hostname='n004',\n")  # a syntax error
    helper = _early(tmp_path)
    # after the helper listed the folders: a host removed, one added, one whose host.py became a dangling link
    for f in (hosts / "n002").iterdir():
        f.unlink()
    (hosts / "n002").rmdir()
    (hosts / "n0055").mkdir()
    (hosts / "n0055" / "host.py").write_text((hosts / "n005" / "host.py").read_text().replace("'n005'", "'n0055'"))
    (hosts / "n007" / "host.py").unlink()
    (hosts / "n007" / "host.py").symlink_to("nowhere.py")
    used: list[bool] = []
    with_helper = _load(tmp_path, monkeypatch, helper, used)
    without = _load(tmp_path, monkeypatch, None, [])
    assert with_helper == without
    lab, problems = with_helper
    assert lab is None
    assert [(p.where, p.field) for p in problems if p.severity == "error"] == [("hosts/n007", "host.py"),
                                                                               ("hosts/n004", "host.py")]
    assert [p.reason for p in problems if p.where == "hosts/n004"] == ["syntax error on line 4: '(' was never closed"]
    # the 11 hosts that ran: n0055 was never listed by the helper (compiled here), n004 came back empty
    assert len(used) == 11 and used.count(False) == 2


@needs_helper
def test_a_helper_that_died_leaves_every_file_to_this_process(tmp_path, monkeypatch):
    _write(tmp_path, 12)
    helper = _early(tmp_path)
    os.kill(helper._pid, signal.SIGKILL)
    used: list[bool] = []
    assert _load(tmp_path, monkeypatch, helper, used) == _load(tmp_path, monkeypatch, None, [])
    assert len(used) == 12  # each asked for: what the helper sent before it died, the rest compiled here


def test_no_early_helper_for_a_small_lab_or_no_hosts_folder(tmp_path):
    _write(tmp_path, 5)
    assert precompile.early(str(tmp_path / "hosts"), at_least=7) is None  # 5 folders and cluster.py
    helper = precompile.early(str(tmp_path / "hosts"), at_least=6)
    assert helper is not None and len(helper._paths) == 6
    helper.close()
    assert precompile.early(str(tmp_path / "hosts")) is None  # 5 < FROM
    assert precompile.early(str(tmp_path / "nothing"), at_least=1) is None


@needs_helper
def test_a_load_stopped_before_it_runs_the_hosts_ends_the_helper(tmp_path, monkeypatch):
    _write(tmp_path, 3)
    helper = _early(tmp_path)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(load, "host_sources", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load.load(tmp_path, compiling=helper)
    assert helper._closed
    with pytest.raises(ChildProcessError):
        os.waitpid(helper._pid, os.WNOHANG)
