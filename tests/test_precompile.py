"""A large lab's host.py files are compiled by a second process while this one runs them (homelab.precompile):
the lab, every problem and every message are exactly those of compiling each file here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from homelab import load, precompile
from homelab.precompile import Precompiled

from .test_lab_growth import grown_lab

HEADER = "from ipaddress import IPv4Address, IPv4Interface, IPv4Network\nfrom homelab import *\n\n"
HW = '{ ... }:\n{\n  fileSystems."/" = { device = "/dev/disk/by-label/nixos"; fsType = "ext4"; };\n}\n'


def _write(root: Path, n: int) -> None:
    lab = grown_lab(n, "iptables")
    (root / "hosts").mkdir(parents=True)
    (root / "hosts" / "cluster.py").write_text(HEADER + f"cluster = {lab.cluster!r}\n")
    for h in lab.hosts:
        d = root / "hosts" / h.hostname
        d.mkdir()
        (d / "host.py").write_text(HEADER + f"host = {h!r}\n")
        (d / "hardware-configuration.nix").write_text(HW)


def _loaded(root: Path, monkeypatch, helper: bool, used: list[int]):
    monkeypatch.setattr(load, "PRECOMPILE_FROM", 2 if helper else 10**9)
    real = Precompiled.next_code

    def counting(self):
        code = real(self)
        used.append(code is not None)
        return code

    monkeypatch.setattr(Precompiled, "next_code", counting)
    return load.load(root)


@pytest.mark.skipif(not precompile.available(), reason="no fork or a single core: the helper is not used here")
def test_a_lab_loads_the_same_with_the_helper(tmp_path, monkeypatch):
    _write(tmp_path, 12)
    used: list[int] = []
    assert _loaded(tmp_path, monkeypatch, True, used) == _loaded(tmp_path, monkeypatch, False, [])
    assert used == [True] * 12  # every host.py came compiled from the helper


@pytest.mark.skipif(not precompile.available(), reason="no fork or a single core: the helper is not used here")
def test_broken_host_files_give_the_same_problems_with_the_helper(tmp_path, monkeypatch):
    _write(tmp_path, 12)
    hosts = sorted(p for p in (tmp_path / "hosts").iterdir() if p.is_dir())
    (hosts[3] / "host.py").write_text(HEADER + "host = Host(hostname='n003',\n")  # a syntax error
    (hosts[5] / "host.py").write_text(HEADER + "host = Hots(hostname='n005')\n")  # runs, then fails
    (hosts[8] / "host.py").chmod(0)  # unreadable (root reads it anyway: then it simply loads)
    used: list[int] = []
    with_helper = _loaded(tmp_path, monkeypatch, True, used)
    without = _loaded(tmp_path, monkeypatch, False, [])
    assert with_helper == without
    lab, problems = with_helper
    assert lab is None
    errors = [(p.where, p.field, p.reason) for p in problems if p.severity == "error"]
    assert errors == [("hosts/n003", "host.py", "syntax error on line 4: '(' was never closed"),
                      ("hosts/n005", "host.py line 4", "NameError: name 'Hots' is not defined")]
    assert used.count(False) == 1 + (os.geteuid() != 0)  # the file with the syntax error was compiled here


def test_the_helper_gives_none_for_what_it_cannot_compile_and_ends_when_closed(tmp_path):
    good, bad, missing = tmp_path / "good.py", tmp_path / "bad.py", tmp_path / "missing.py"
    good.write_text("x = 1 + 1\n")
    bad.write_text("x = (\n")
    helper = Precompiled([str(good), str(bad), str(missing), str(good)])
    codes = [helper.next_code() for _ in range(4)]
    helper.close()
    assert [c is not None for c in codes] == [True, False, False, True]
    ns: dict = {}
    exec(codes[0], ns)
    assert ns["x"] == 2 and codes[0].co_filename == str(good)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # no helper left behind, not even a zombie


def test_a_helper_closed_early_is_ended(tmp_path):
    paths = []
    for i in range(300):
        p = tmp_path / f"f{i}.py"
        p.write_text(f"x = {i}\n" * 200)
        paths.append(str(p))
    helper = Precompiled(paths)
    assert helper.next_code() is not None
    helper.close()  # stops it wherever it is
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def _files(tmp_path: Path, n: int) -> list[str]:
    paths = []
    for i in range(n):
        p = tmp_path / f"f{i}.py"
        p.write_text(f"x = {i}\n" + "y = [1, 2, 3]\n" * 50)
        paths.append(str(p))
    return paths


def _x(code) -> int:
    ns: dict = {}
    exec(code, ns)
    return ns["x"]


def test_a_helper_that_does_not_move_is_not_waited_for(tmp_path):
    """A busy machine may give the helper no time at all: this process compiles every file itself meanwhile."""
    import signal
    import threading

    paths = _files(tmp_path, 40)
    helper = Precompiled(paths)
    os.kill(helper._pid, signal.SIGSTOP)
    codes: list = []
    try:
        t = threading.Thread(target=lambda: codes.extend(helper.next_code() for _ in paths), daemon=True)
        t.start()
        t.join(20)
        assert not t.is_alive(), "next_code() waited for a stopped helper"
    finally:
        os.kill(helper._pid, signal.SIGCONT)
        helper.close()
    assert [_x(c) for c in codes] == list(range(40))
    assert [c.co_filename for c in codes] == paths


def test_a_helper_ahead_compiles_every_file(tmp_path):
    import time

    paths = _files(tmp_path, 40)
    helper = Precompiled(paths)
    deadline = time.monotonic() + 30
    while helper._items.qsize() < 41 and time.monotonic() < deadline:  # every record and the end are here
        time.sleep(0.01)
    codes = [helper.next_code() for _ in paths]
    helper.close()
    assert [_x(c) for c in codes] == list(range(40))
    assert helper._tail == 40  # nothing was compiled here


def test_the_helper_stops_before_the_files_taken_from_the_end(tmp_path):
    import mmap

    from homelab.precompile import _compile_all

    paths = _files(tmp_path, 6)
    taken = mmap.mmap(-1, 6)
    taken[4] = taken[5] = 1
    r, w = os.pipe()
    _compile_all(paths, taken, w)  # closes w
    with os.fdopen(r, "rb") as f:
        data = f.read()
    indexes = []
    while data:
        index, size = int.from_bytes(data[:4], "little"), int.from_bytes(data[4:12], "little")
        indexes.append(index)
        data = data[12 + size:]
    assert indexes == [0, 1, 2, 3]
