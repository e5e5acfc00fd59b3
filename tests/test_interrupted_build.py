"""A ``homelab build`` stopped by SIGTERM or Ctrl-C while nix reads the files back leaves nothing behind.

The staging folder (``homelab-verify-*``) and the nix processes reading it went on existing after a SIGTERM
(Python's default: die at once, no ``finally``); after Ctrl-C the build waited for the clash check's nix to
end on its own.  A real ``homelab`` process, stopped while it waits for nix: a stand-in ``nix-instantiate``
that writes down its pid and sleeps, so the build is verifying for as long as the test needs (the real nix is
done too soon to be caught there every time).  The signal goes the moment the second nix has started, when
homelab may still be inside Popen (a signal raised there lost the new process, which outlived homelab).  The
staging goes into the test's own $TMPDIR, where it is looked for.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from .conftest import REPO, SEED, copy_lab
from .stopkit import alive, files_of, sleeping_nix


@pytest.mark.parametrize("sig, said", [(signal.SIGTERM, "homelab: interrupted (SIGTERM)"),
                                       (signal.SIGINT, "homelab: interrupted")])
def test_a_build_stopped_while_nix_reads_back_removes_its_staging_folder_and_nix(tmp_path, sig, said):
    root = copy_lab(SEED, tmp_path / "lab")
    before = files_of(root)
    bindir, tmp, pids = sleeping_nix(tmp_path)
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", TMPDIR=str(tmp), PYTHONPATH=str(REPO))
    # Ctrl-C as a terminal delivers it: SIGINT not ignored (a shell's background job inherits it ignored)
    proc = subprocess.Popen([sys.executable, "-m", "homelab", "build", "--root", str(root)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    started: list[int] = []
    try:
        deadline = time.monotonic() + 60
        # both nix processes running: the read-back's and the clash check's (the seed lab has hand-written imports)
        while (not pids.exists() or len(pids.read_text().split()) < 2) and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pids.exists() and len(pids.read_text().split()) == 2, proc.communicate(timeout=30)
        staged = [p.name for p in tmp.iterdir()]
        assert len(staged) == 1 and staged[0].startswith("homelab-verify-")  # it is verifying
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
        started = [int(x) for x in pids.read_text().split()]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in started or ([int(x) for x in pids.read_text().split()] if pids.exists() else []):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert (proc.returncode, err.splitlines()[-1]) == (130, said)
    assert list(tmp.iterdir()) == []
    assert [pid for pid in started if alive(pid)] == [] and len(started) == 2
    assert files_of(root) == before and out == ""


def test_a_nix_handle_serves_again_after_the_build_it_ran_was_interrupted(tmp_path, monkeypatch):
    """In-process: Ctrl-C in the read-back stops the clash check's nix at once and removes the staging
    folder; the caller's Nix handle (a session's, a benchmark's) still runs nix afterwards."""
    import tempfile

    from homelab import build, readback
    from homelab.pynix_eval import Nix, nix_available

    if not nix_available():
        pytest.skip("nix is not installed (Debian: apt-get install nix-bin)")
    root = copy_lab(SEED, tmp_path / "lab")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(readback, "read_back", interrupted)
    nix = Nix()
    with pytest.raises(KeyboardInterrupt):
        build.build(root, nix=nix)
    assert list(tmp.iterdir()) == [] and (nix.running, nix.stopped) == (set(), False)
    assert nix.eval_expr("1 + 1") == 2
