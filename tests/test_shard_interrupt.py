"""A two-process build (homelab/shard.py) stopped by SIGTERM or Ctrl-C while both halves wait for nix leaves
nothing behind, as a one-process build does (tests/test_interrupted_build.py): exit 130, no file written, no
temporary, no staging folder, and no process of its tree left: neither the forked child nor either half's nix
process (the read-back and the clash check in one, in a session of its own).

A lab of 8 hosts takes the two-process path with ``HOMELAB_PARALLEL_FROM=2``.  A stand-in ``nix-instantiate``
writes down its pid and sleeps, so the build is verifying in both halves for as long as the test needs; the
signal goes once all four have started and the child is there.  SIGTERM goes to homelab's own process (``kill
PID``); Ctrl-C to the whole process group, as a terminal delivers it (the child gets it too).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from homelab import files, shard
from tests.test_shard_fallback import lab_source, warned  # noqa: F401 - fixtures: the 8 hosts, their warnings

from .conftest import REPO, copy_lab
from .stopkit import alive, files_of, sleeping_nix

NIX_PROCESSES = 2  # one in each half: its read-back and its clash check (every host has a hand-written file)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except FileNotFoundError:
        pass
    return out


def _pids(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


@pytest.mark.parametrize("sig, to_group, said", [
    (signal.SIGTERM, False, "homelab: interrupted (SIGTERM)"),  # kill PID: homelab's process only
    (signal.SIGINT, True, "homelab: interrupted"),  # Ctrl-C: the terminal's process group, the child too
    (signal.SIGTERM, True, "homelab: interrupted (SIGTERM)"),  # kill -- -PGID (a service manager's stop)
])
def test_a_two_process_build_stopped_while_both_halves_verify_leaves_nothing(lab_source, warned, tmp_path, sig,
                                                                            to_group, said):
    if not shard.available():
        pytest.skip("no fork or a single core: the two-process path is never taken here")
    root = copy_lab(lab_source, tmp_path / "lab")
    before = files_of(root)
    bindir, tmp, pids = sleeping_nix(tmp_path)
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", TMPDIR=str(tmp), PYTHONPATH=str(REPO),
               HOMELAB_PARALLEL_FROM="2", HOMELAB_CACHE_DIR=str(tmp_path / "cache"))

    def own_group_sigint_default():  # a process group of its own (the terminal's, here); SIGINT not ignored
        os.setpgid(0, 0)
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen([sys.executable, "-m", "homelab", "build", "-q", "--root", str(root)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=own_group_sigint_default)
    tree: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while len(_pids(pids)) < NIX_PROCESSES and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(_pids(pids)) == NIX_PROCESSES, proc.communicate(timeout=30)
        halves = [pid for pid in _children(proc.pid) if pid not in _pids(pids)]
        assert len(halves) == 1, halves  # the forked half (beside this process's nix process)
        assert len(set(_children(halves[0])) & set(_pids(pids))) == 1  # and the child's
        tree = {proc.pid, *halves, *_pids(pids)}
        staged = [p.name for p in tmp.iterdir()]
        assert len(staged) == 1 and staged[0].startswith("homelab-verify-"), staged  # both halves stage there
        if to_group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        left = {pid for pid in tree | set(_pids(pids)) if pid != proc.pid and alive(pid)}
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    assert sorted(left) == [] and len(_pids(pids)) == NIX_PROCESSES
    assert (proc.returncode, err.splitlines()) == (130, [*warned, said]), err
    assert list(tmp.iterdir()) == []
    assert files_of(root) == before and files.stale_temps(root) == [] and out == ""
