"""A two-process build (homelab/shard.py) that goes back to one process says why, in one line on stderr, unless the
one-process build stops on the reason and names it itself (a problem of the lab's); ``HOMELAB_DEBUG=1`` says
every reason.  A silent fall-back once hid a bug that made every 10,000-host build take 274 s.

``HOMELAB_PARALLEL_FROM=2`` sends a lab of 8 hosts down the two-process path.  The one-process build of the
same lab is the reference: the files written are the same, and stderr is its stderr with the one line added.
A stand-in ``nix-instantiate`` runs the real one, except for the first nix process that holds ``hosts/lab.nix``
(the second process's: it reads back the lab's data file), which it fails or makes wait; the one-process
build after it runs the real nix throughout.  That process reads back and checks the hand-written imports at
once; when it fails, each runs alone (and fails as it does alone): to fail the half, the stand-in fails that
read-back too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from homelab import files, shard
from tests.test_bench_runs import bench_module

from .conftest import REPO, copy_lab
from .stopkit import alive

HOSTS = 8
SAID = "homelab: building in one process instead of two: "

STAND_IN = """#!{python}
import os, subprocess, sys, time
argv = sys.argv[1:]
data = sys.stdin.read() if "-" in argv else None
if "hosts/lab.nix" in " ".join(argv) + (data or ""):
    first = False
    for n in range({times}):
        try:
            os.mkdir({marker!r} + str(n))
            first = True
            break
        except FileExistsError:
            pass
    if first:
        with open({pids!r}, "a") as f:
            f.write(f"{{os.getpid()}}\\n")
        if {mode!r} == "fail":
            sys.stderr.write("error: planted failure of the second process's read-back\\n")
            sys.exit(1)
        time.sleep(60)
        sys.exit(1)
p = subprocess.run([{real!r}, *argv], input=data, text=True, capture_output=True,
                   stdin=None if data is not None else subprocess.DEVNULL)
sys.stdout.write(p.stdout)
sys.stderr.write(p.stderr)
sys.exit(p.returncode)
"""


@pytest.fixture(scope="module")
def lab_source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shard-fallback-lab")
    bench = bench_module()
    bench.write_lab(bench.synthetic_lab(HOSTS), root)
    return root


@pytest.fixture(autouse=True)
def _two_processes_here():
    if not shard.available():
        pytest.skip("no fork or a single core: the two-process path is never taken here")


def stand_in(tmp_path: Path, mode: str, times: int = 1) -> tuple[Path, Path]:
    """A folder holding the stand-in nix-instantiate (``mode``: "fail" or "wait", the first ``times`` processes that
    hold hosts/lab.nix), and the file its pid goes to."""
    real = shutil.which("nix-instantiate")
    if real is None:
        pytest.skip("nix is not installed (Debian: apt-get install nix-bin)")
    bindir, pids = tmp_path / "bin", tmp_path / "stand-in-pids"
    bindir.mkdir()
    script = bindir / "nix-instantiate"
    script.write_text(STAND_IN.format(python=sys.executable, marker=str(tmp_path / "stand-in-used"), pids=str(pids),
                                      mode=mode, real=real, times=times))
    script.chmod(0o755)
    return bindir, pids


def run(root: Path, cache: Path, parallel_from: int, *args: str, **env: str) -> subprocess.CompletedProcess:
    e = dict(os.environ, HOMELAB_PARALLEL_FROM=str(parallel_from), HOMELAB_CACHE_DIR=str(cache),
             PYTHONPATH=str(REPO), **env)
    e.pop("HOMELAB_DEBUG", None)
    e.update(env)
    return subprocess.run([sys.executable, "-m", "homelab", "build", "-q", "--root", str(root), *args],
                          capture_output=True, text=True, timeout=300, env=e)


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def warned(lab_source, tmp_path_factory) -> list[str]:
    """The lab's own warnings, as every build of it says them first (`build --check` runs no nix)."""
    p = run(lab_source, tmp_path_factory.mktemp("cache-check"), 0, "--check")
    lines = p.stderr.splitlines()
    assert lines and all(": warning: " in line for line in lines), p.stderr
    return lines


def test_a_nix_failure_in_the_second_process_is_said_in_one_line(lab_source, warned, tmp_path, nix):
    one = copy_lab(lab_source, tmp_path / "one")
    two = copy_lab(lab_source, tmp_path / "two")
    bindir, pids = stand_in(tmp_path, "fail", times=2)
    a = run(one, tmp_path / "cache-one", 0)
    b = run(two, tmp_path / "cache-two", 2, PATH=f"{bindir}:{os.environ['PATH']}")
    assert (a.returncode, b.returncode) == (0, 0), b.stderr
    assert len(pids.read_text().split()) == 2  # the stand-in failed the half's nix process, then its read-back
    assert "(2 nix processes)" in b.stdout  # the build was done again, in one process
    assert a.stderr.splitlines() == warned
    assert b.stderr.splitlines() == [*warned, SAID + "nix failed: planted failure of the second process's read-back"]
    assert tree(one) == tree(two) and files.stale_temps(two) == []


def test_a_half_whose_one_nix_process_fails_reads_back_and_checks_alone(lab_source, warned, tmp_path, nix):
    """The second process's nix (its read-back and its clash check at once) fails; each then runs alone, with
    the real nix: the build stays in two processes, says nothing more, and writes what one process writes."""
    one = copy_lab(lab_source, tmp_path / "one")
    two = copy_lab(lab_source, tmp_path / "two")
    bindir, pids = stand_in(tmp_path, "fail", times=1)
    a = run(one, tmp_path / "cache-one", 0)
    b = run(two, tmp_path / "cache-two", 2, PATH=f"{bindir}:{os.environ['PATH']}")
    assert (a.returncode, b.returncode) == (0, 0), b.stderr
    assert len(pids.read_text().split()) == 1
    # this half's one process, the child's failed one, then its read-back and its clash check
    assert "(the slower of two processes; 4 nix processes)" in b.stdout, b.stdout
    assert a.stderr.splitlines() == b.stderr.splitlines() == warned
    assert tree(one) == tree(two) and files.stale_temps(two) == []


def test_a_clash_check_warning_is_said_with_why_the_build_took_one_process(lab_source, warned, tmp_path, nix):
    """A hand-written import sets an option homelab sets, with an expression of ``config``: a warning, which a
    two-process build does not pass on; the one-process build says it (after the line)."""
    runs = []
    for name, parallel in (("one", 0), ("two", 2)):
        root = copy_lab(lab_source, tmp_path / name)
        (root / "hosts" / "n0007" / "hardware-configuration.nix").write_text(
            '{ config, ... }:\n{\n  fileSystems."/" = { device = "/dev/disk/by-label/nixos"; fsType = "ext4"; };\n'
            "  networking.hostName = config.system.name;\n}\n")
        p = run(root, tmp_path / f"cache-{name}", parallel)
        assert p.returncode == 0 and "(2 nix processes)" in p.stdout, p.stdout + p.stderr
        runs.append((p.stderr.splitlines(), tree(root)))
    clash = ("hosts/n0007: imports: warning: hardware-configuration.nix sets networking.hostName with an expression "
             "homelab cannot evaluate without nixpkgs, and homelab sets it to 'n0007' in hosts/n0007/default.nix; "
             "unless one of them is lib.mkForce, NixOS will refuse the two")
    assert runs[0][0] == [*warned, clash]
    assert runs[1][0] == [*warned, SAID + "the hand-written imports' clash check warns (said below); a build with "
                          "such warnings runs in one process", clash]
    assert runs[0][1] == runs[1][1]


def test_a_problem_in_the_lab_is_said_once_and_with_homelab_debug_the_reason_too(lab_source, warned, tmp_path,
                                                                                 nix):
    """A hand edit in the second process's half: the one-process build names it (exit 2) and nothing more is
    said (tests/test_shard.py compares the whole output); HOMELAB_DEBUG=1 adds the reason the two processes
    gave up."""
    root = copy_lab(lab_source, tmp_path / "lab")
    assert run(root, tmp_path / "cache", 0).returncode == 0
    entry = root / "hosts" / "n0006" / "default.nix"
    entry.write_text(entry.read_text() + "# mine\n")
    before = tree(root)
    quiet = run(root, tmp_path / "cache", 2)
    debug = run(root, tmp_path / "cache", 2, HOMELAB_DEBUG="1")
    assert (quiet.returncode, debug.returncode) == (2, 2)
    edited = ("hosts/n0006/default.nix: file: was edited by hand since homelab generated it; put the change into "
              "host.py (options= or imports=) and run the build again, or run it with --force to overwrite the edit")
    said = ["homelab: 1 problem; nothing was written:", f"  {edited}"]
    assert quiet.stderr.splitlines() == [*warned, *said]
    assert debug.stderr.splitlines() == [*warned, SAID + "a problem in the lab: " + edited, *said]
    assert tree(root) == before and files.stale_temps(root) == []


def _in_process(root: Path, monkeypatch, nix_handle) -> object:
    from homelab import build

    monkeypatch.setenv("HOMELAB_PARALLEL_FROM", "2")
    monkeypatch.delenv("HOMELAB_DEBUG", raising=False)
    return build.build(root, nix=nix_handle)


def test_a_nix_time_out_in_the_second_process_is_said(lab_source, tmp_path, nix, monkeypatch, capfd):
    """In-process (a library caller's build): the second process's read-back waits past the handle's limit."""
    from homelab.pynix_eval import Nix

    one = copy_lab(lab_source, tmp_path / "one")
    two = copy_lab(lab_source, tmp_path / "two")
    assert run(one, tmp_path / "cache-one", 0).returncode == 0
    bindir, pids = stand_in(tmp_path, "wait")
    capfd.readouterr()
    t0 = time.monotonic()
    res = _in_process(two, monkeypatch, Nix(timeout=5.0, bindir=str(bindir)))
    assert 5.0 <= time.monotonic() - t0 < 60
    assert res.verified is not None and res.verified.nix_calls == 2  # built again, in one process
    assert capfd.readouterr().err.splitlines() == [SAID + "nix-instantiate --eval did not finish within 5 s"]
    assert [pid for pid in map(int, pids.read_text().split()) if alive(pid)] == []
    assert tree(one) == tree(two) and files.stale_temps(two) == []


def test_an_exception_in_this_half_is_said_and_the_waiting_child_ends_its_nix(lab_source, tmp_path, nix, monkeypatch,
                                                                             capfd):
    """In-process, without homelab.cli's signal handlers: this process's half fails (a planted bug) while the child
    waits for its nix.  One line says so; the child, asked to stop, ends its nix before it exits (killed outright,
    it left that nix running); the one-process build writes the files."""
    from homelab.pynix_eval import Nix

    one = copy_lab(lab_source, tmp_path / "one")
    two = copy_lab(lab_source, tmp_path / "two")
    assert run(one, tmp_path / "cache-one", 0).returncode == 0
    bindir, pids = stand_in(tmp_path, "wait")
    me, digest = os.getpid(), shard._digest_sources

    def planted(*args):
        if os.getpid() != me:
            return digest(*args)
        deadline = time.monotonic() + 60
        while not pids.exists() and time.monotonic() < deadline:  # the child's read-back has started
            time.sleep(0.01)
        raise RuntimeError("planted")

    monkeypatch.setattr(shard, "_digest_sources", planted)
    capfd.readouterr()
    res = _in_process(two, monkeypatch, Nix(bindir=str(bindir)))
    assert res.verified is not None and res.verified.nix_calls == 2
    assert capfd.readouterr().err.splitlines() == [
        SAID + "RuntimeError: planted (a bug in homelab's two-process build: please report it)"]
    waited = [int(x) for x in pids.read_text().split()]
    assert len(waited) == 1 and not alive(waited[0])
    assert tree(one) == tree(two) and files.stale_temps(two) == []

