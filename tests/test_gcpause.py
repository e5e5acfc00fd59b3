"""The cyclic collector is off while a lab loads and builds (homelab.gcpause), and on again after, whatever
happened inside."""

from __future__ import annotations

import gc

import pytest

from homelab import build, gcpause
from homelab.errors import LabError


def test_paused_turns_the_collector_off_and_back_on():
    assert gc.isenabled()
    with gcpause.paused():
        assert not gc.isenabled()
        with gcpause.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner block leaves it to the outer one
    assert gc.isenabled()


def test_paused_restores_the_collector_after_an_error_and_leaves_it_off_when_it_was():
    with pytest.raises(ValueError):
        with gcpause.paused():
            raise ValueError
    assert gc.isenabled()
    gc.disable()
    try:
        with gcpause.paused():
            pass
        assert not gc.isenabled()  # the caller turned it off: it stays off
    finally:
        gc.enable()


def test_a_build_runs_without_the_collector_and_gives_it_back(lab_copy, nix, monkeypatch):
    seen = []
    real = build.prepare

    def watching(*a, **kw):
        seen.append(gc.isenabled())
        return real(*a, **kw)

    monkeypatch.setattr(build, "prepare", watching)
    build.build(lab_copy, nix=nix)
    (lab_copy / "hosts" / "tokiwa" / "host.py").write_text("host = 1\n")
    with pytest.raises(LabError):
        build.build(lab_copy, nix=nix)
    assert seen == [False] and gc.isenabled()
