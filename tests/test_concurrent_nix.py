"""The build's two nix processes (the read-back of every file, the clash check of the hand-written imports) run
side by side (homelab.readback.Pending): what each proves and how its failures are reported stay as they were
when they ran one after the other."""

from __future__ import annotations

from pathlib import Path

import pytest

from homelab import build
from homelab.errors import LabError
from homelab.readback import Pending

from .test_bad_inputs import apply_edits, assert_reported, run_cli

HW = "hosts/tokiwa/hardware-configuration.nix"


def test_a_build_starts_one_read_back_and_one_clash_check(lab_copy: Path, nix):
    result = build.build(lab_copy, nix=nix)
    assert result.verified is not None and result.verified.nix_calls == 2
    assert result.verified.problems == []


def test_a_hand_written_import_nix_cannot_call_is_judged_alone_and_named(lab_copy: Path, nix):
    """The batched clash check fails; each file is then asked alone, and the one nix cannot call is a warning."""
    text = (lab_copy / HW).read_text()
    (lab_copy / HW).write_text(text.replace("{ ... }:\n", '{ ... }:\nbuiltins.abort "needs the real nixpkgs" //\n', 1))
    rc, out, err = run_cli("build", "--root", str(lab_copy))
    assert rc == 0, out + err
    assert_reported(err, "hosts/tokiwa", "imports", "warning: hardware-configuration.nix: could not be evaluated "
                    "without nixpkgs to look for definitions that clash with homelab's; NixOS will judge them")
    assert [ln for ln in err.splitlines() if "could not be evaluated" in ln and "hosts/tokiwa" not in ln] == []


def test_a_clash_is_still_refused_with_nothing_written(lab_copy: Path, nix):
    before = {p: p.read_bytes() for p in lab_copy.rglob("*") if p.is_file()}
    apply_edits(lab_copy, [(HW, "{ ... }:\n{\n", '{ ... }:\n{\n  networking.hostName = "elsewhere";\n')])
    with pytest.raises(LabError) as e:
        build.build(lab_copy, nix=nix, force=True)
    assert [(p.where, p.field) for p in e.value.problems] == [("hosts/tokiwa", "imports")]
    assert "networking.hostName" in e.value.problems[0].reason
    after = {p: p.read_bytes() for p in lab_copy.rglob("*") if p.is_file() and p != lab_copy / HW}
    assert after == {p: b for p, b in before.items() if p != lab_copy / HW}


def test_pending_hands_back_the_result_or_the_exception():
    assert Pending(lambda a, b: a + b, 2, 3).result() == 5

    def fails():
        raise ValueError("from the thread")

    with pytest.raises(ValueError, match="from the thread"):
        Pending(fails).result()
