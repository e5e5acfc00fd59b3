"""nix's first use of a store that does not exist yet, by two nix processes at once.

``homelab build`` runs two nix processes side by side (the read-back and the clash check of the hand-written
imports; a big lab's two halves, four).  On a machine whose store does not exist yet, each makes it, and one
can lose: nix 2.8 checks for ``gcroots`` and then makes ``gcroots/profiles``, or reads ``db/schema`` while the
other is writing it.  The loser failed the build ("File exists", "is corrupt").  Such a nix is run again.

The race itself cannot be made to happen on purpose; its loser can: the real nix on a brand-new private store
(``store = <folder>``, as tests/test_secrets.py points nix at one), run under ``strace`` that fails its first
symlink with EEXIST, exactly what the loser meets.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from homelab.pynix_eval import Nix, NixEvalError, making_store

STATE = "/tmp/s/nix/var/nix"
SEEN = {  # what nix 2.8 said here when two (or four) processes made a new store at once
    "symlink": f"error: creating symlink from '{STATE}/gcroots/profiles' to '{STATE}/profiles': File exists",
    "schema": f"error: '{STATE}/db/schema' is corrupt",
}


def test_nix_losing_the_race_to_make_its_store_is_told_from_other_errors():
    warning = "warning: the group 'nixbld' specified in 'build-users-group' does not exist\n"
    assert {k: making_store(warning + v + "\n", {}) for k, v in SEEN.items()} == {"symlink": True, "schema": True}
    assert making_store("error: '/var/lib/mine/db/schema' is corrupt", {"NIX_STATE_DIR": "/var/lib/mine"})
    assert not any(making_store(text, {}) for text in (
        "error: creating symlink from '/home/me/lab/result' to '/nix/store/x': File exists",  # not nix's own
        "error: '/home/me/lab/db/schema' is corrupt",
        f"error: opening lock file '{STATE}/db/big-lock': Permission denied",  # cannot use nix: not a race
        "error: undefined variable 'x' at /home/me/lab/hosts/a/disks.nix:3:5",
        ""))


def _strace_works() -> bool:
    strace = shutil.which("strace")
    return bool(strace) and subprocess.run([strace, "-f", "-qq", "-o", "/dev/null", "true"],
                                           capture_output=True, timeout=30).returncode == 0


def test_a_nix_that_loses_the_race_to_make_a_brand_new_store_is_run_again(tmp_path):
    if not _strace_works():
        pytest.skip("strace is missing or cannot trace here: it makes the real nix lose the race on purpose "
                    "(Debian: apt-get install strace)")
    real = shutil.which("nix-instantiate")
    if real is None:
        pytest.skip("nix is not installed (Debian: apt-get install nix-bin)")
    bindir, first = tmp_path / "bin", tmp_path / "first-done"
    bindir.mkdir()
    (bindir / "nix-instantiate").write_text(
        f"#!/bin/sh\nif [ -e {first} ]; then exec {real} \"$@\"; fi\n: > {first}\n"
        f"exec {shutil.which('strace')} -f -qq -o /dev/null -e trace=symlink,symlinkat "
        f"-e inject=symlink,symlinkat:error=EEXIST:when=1 {real} \"$@\"\n")
    (bindir / "nix-instantiate").chmod(0o755)
    store = tmp_path / "store"  # brand-new: nix makes it
    conf = "\n".join(filter(None, [os.environ.get("NIX_CONFIG"), f"store = {store}"]))
    nix = Nix(bindir=str(bindir), extra_env={"NIX_CONFIG": conf})
    assert nix.eval_expr("1 + 1") == 2
    assert nix.calls == 2 and first.exists()  # the loser, then once more
    assert (store / "nix" / "var" / "nix" / "db" / "schema").read_text() != ""
    # a real error is not run again
    with pytest.raises(NixEvalError):
        nix.eval_expr("builtins.throw \"no\"")
    assert nix.calls == 3
