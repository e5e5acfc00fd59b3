"""A two-process build's renames (homelab/shard.py, ``_commit``): after both halves succeeded, this process renames
the files not under hosts/ (modules, the cluster layer), then gives the go, and each half renames its own files
under hosts/ at once.  Nothing is renamed without the go; an entry is never in place before the modules; a child
that dies halfway through its renames leaves the rest to this process (the files are those of a one-process
build); a rename that fails fails the build as a one-process commit's does (the error raised, no temporary left).

``HOMELAB_PARALLEL_FROM=2`` sends a lab of 8 hosts down the two-process path (hosts n0000-n0003 are this
process's, n0004-n0007 the child's).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from homelab import files, shard
from tests.test_bench_runs import bench_module

from .conftest import copy_lab
from .test_shard_fallback import run, tree

HOSTS = 8
PARENTS = [f"hosts/n000{i}/default.nix" for i in range(4)]
CHILDS = [f"hosts/n000{i}/default.nix" for i in range(4, 8)] + ["hosts/lab.nix"]


@pytest.fixture(scope="module")
def lab_source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shard-renames-lab")
    bench = bench_module()
    bench.write_lab(bench.synthetic_lab(HOSTS), root)
    return root


@pytest.fixture(scope="module")
def one_process(lab_source, tmp_path_factory, nix) -> dict[str, bytes]:
    """Every file of the lab as the one-process build writes it."""
    one = copy_lab(lab_source, tmp_path_factory.mktemp("one") / "lab")
    p = run(one, tmp_path_factory.mktemp("cache-one"), 0)
    assert p.returncode == 0, p.stderr
    return tree(one)


@pytest.fixture(autouse=True)
def _two_processes_here():
    if not shard.available():
        pytest.skip("no fork or a single core: the two-process path is never taken here")


def test_the_halves_split_the_entries_as_these_tests_expect(lab_source):
    from homelab.compile import compile_lab
    from homelab.load import load_or_raise

    ours, theirs = shard._halves(compile_lab(load_or_raise(lab_source)[0]))
    assert (ours.hosts, theirs.hosts) == ([f"n000{i}" for i in range(4)], [f"n000{i}" for i in range(4, 8)])


def test_every_file_is_renamed_once_and_the_modules_before_any_entry(lab_source, one_process, tmp_path):
    """The write steps both processes name on stderr (the test hook of homelab.files, never stopping here): each
    generated file renamed exactly once, every file outside hosts/ before the first under hosts/."""
    two = copy_lab(lab_source, tmp_path / "two")
    p = run(two, tmp_path / "cache-two", 2, HOMELAB_TEST_STOP_AT=str(10**9))
    assert p.returncode == 0, p.stderr
    assert "(the slower of two processes; 2 nix processes)" in p.stdout
    renamed = [line.split()[2] for line in p.stderr.splitlines() if line.startswith("homelab-test-step rename ")]
    generated = sorted(set(one_process) - set(tree(lab_source)))
    assert sorted(renamed) == generated and len(renamed) == len(set(renamed))
    first_entry = min(i for i, rel in enumerate(renamed) if rel.startswith("hosts/"))
    assert all(not rel.startswith("hosts/") for rel in renamed[:first_entry])
    assert first_entry == len([rel for rel in generated if not rel.startswith("hosts/")])
    assert renamed.index("cluster/helmfile.yaml") == first_entry - 1  # after the values files it names
    assert tree(two) == one_process and files.stale_temps(two) == []


def test_a_child_that_dies_halfway_through_its_renames_leaves_the_rest_to_this_process(lab_source, one_process,
                                                                                       tmp_path):
    two = copy_lab(lab_source, tmp_path / "two")
    p = run(two, tmp_path / "cache-two", 2, HOMELAB_TEST_SHARD_CRASH="after-go")
    assert (p.returncode, p.stderr) == (0, run(lab_source, tmp_path / "cache-check", 0, "--check").stderr)
    assert "(the slower of two processes; 2 nix processes)" in p.stdout  # not built again in one process
    assert tree(two) == one_process and files.stale_temps(two) == []


def _failing_rename(monkeypatch, which: int):
    """files.rename_all failing with EIO at this process's ``which``-th call (1: the files outside hosts/, before
    the go; 2: its own entries, after it); the child's calls untouched."""
    me, real, calls = os.getpid(), files.rename_all, []

    def planted(root, temps):
        if os.getpid() == me:
            calls.append(len(temps))
            if len(calls) == which:
                raise OSError(5, "planted failure of a rename")
        return real(root, temps)

    monkeypatch.setattr(files, "rename_all", planted)
    monkeypatch.setenv("HOMELAB_PARALLEL_FROM", "2")
    return calls


def test_a_rename_failing_before_the_go_renames_nothing(lab_source, tmp_path, nix, monkeypatch):
    """This process's first rename fails: the error is raised (as from a one-process commit), the child never
    renames (it is told no go), and no temporary is left: the lab is as it was."""
    from homelab import build

    two = copy_lab(lab_source, tmp_path / "two")
    monkeypatch.setenv("HOMELAB_CACHE_DIR", str(tmp_path / "cache"))
    before = tree(two)
    calls = _failing_rename(monkeypatch, 1)
    with pytest.raises(OSError, match="planted failure of a rename"):
        build.build(two)
    assert len(calls) == 1 and calls[0] > 0
    assert tree(two) == before and files.stale_temps(two) == []


def test_a_rename_failing_after_the_go_fails_as_a_one_process_commit(lab_source, one_process, tmp_path, nix,
                                                                    monkeypatch):
    """This process's own entries fail to rename after the go: the error is raised; the modules are in place, this
    process's entries are not, each of the child's files is old or new (it was told to go, then asked to stop),
    and no temporary is left."""
    from homelab import build

    two = copy_lab(lab_source, tmp_path / "two")
    monkeypatch.setenv("HOMELAB_CACHE_DIR", str(tmp_path / "cache"))
    _failing_rename(monkeypatch, 2)
    with pytest.raises(OSError, match="planted failure of a rename"):
        build.build(two)
    now, sources = tree(two), tree(lab_source)
    made = {rel for rel in now if rel not in sources}
    outside = {rel for rel in one_process if rel not in sources and not rel.startswith("hosts/")}
    assert outside and outside <= made and made <= outside | set(CHILDS)
    assert all(now[rel] == one_process[rel] for rel in made)
    assert files.stale_temps(two) == []


@pytest.mark.parametrize("to_group, after_go", [(False, True), (True, True), (False, False)])
def test_a_build_stopped_during_its_renames_leaves_each_file_old_or_new_and_no_process(lab_source, one_process,
                                                                                      tmp_path, to_group, after_go):
    """SIGTERM while this process waits in the middle of its renames (the test hook holds it there): at its second
    own entry (after the go), or at its second file outside hosts/ (before the go).  Exit 130, every generated
    file absent or as the one-process build writes it, no temporary, the child gone (asked to stop, or done);
    after the go the files outside hosts/ are all in place, before it no file under hosts/ is."""
    import signal
    import subprocess
    import sys
    import time

    from .conftest import REPO
    from .stopkit import alive

    two = copy_lab(lab_source, tmp_path / "two")
    sources = tree(lab_source)
    outside = [rel for rel in one_process if rel not in sources and not rel.startswith("hosts/")]
    ours = len(outside) + len(PARENTS)  # this process's temporaries: then the renames outside hosts/, then its own
    stop_at = ours + (len(outside) if after_go else 0) + 2  # (the child's steps end well before: 2 x 5)
    env = dict(os.environ, HOMELAB_PARALLEL_FROM="2", HOMELAB_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(REPO),
               HOMELAB_TEST_STOP_AT=str(stop_at))
    proc = subprocess.Popen([sys.executable, "-m", "homelab", "build", "-q", "--root", str(two)], env=env,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, start_new_session=True)
    steps, renamed = 0, []
    deadline = time.monotonic() + 120
    for line in proc.stderr:  # both processes name their steps; the parent holds at its stop_at-th
        if line.startswith("homelab-test-step "):
            steps += 1
            if line.startswith("homelab-test-step rename "):
                renamed.append(line.split()[2])
            if len([rel for rel in renamed if rel in (PARENTS if after_go else outside)]) == 2:
                break
        assert time.monotonic() < deadline
    children = [int(x) for t in os.listdir(f"/proc/{proc.pid}/task")
                for x in open(f"/proc/{proc.pid}/task/{t}/children").read().split()]
    time.sleep(0.3)  # the child's renames, if it is still at them
    (os.killpg if to_group else os.kill)(proc.pid if not to_group else os.getpgid(proc.pid), signal.SIGTERM)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 130, rest
    assert "homelab: interrupted (SIGTERM)" in rest
    assert children and not any(alive(pid) for pid in children)
    now = tree(two)
    made = {rel for rel in now if rel not in sources}
    if after_go:
        assert set(outside) <= made and made <= set(outside) | set(PARENTS) | set(CHILDS)
    else:
        assert made == set(renamed) and len(made) == 2 and made <= set(outside)
    assert all(now[rel] == one_process[rel] for rel in made)
    assert {rel for rel in made if rel in PARENTS} == {rel for rel in renamed if rel in PARENTS}
    assert files.stale_temps(two) == []


_WINDOW = r'''
import fcntl, json, os, sys, tempfile
from pathlib import Path
from homelab import build, shard
root = Path(sys.argv[1])
real_exit = tempfile.TemporaryDirectory.__exit__
class Staging(tempfile.TemporaryDirectory):
    def __exit__(self, *a):
        real_exit(self, *a)
        if a[0] is None:
            raise KeyboardInterrupt  # as a Ctrl-C that reaches this process only (a notebook's interrupt)
shard.tempfile = type("T", (), {"TemporaryDirectory": Staging})
try:
    build.build(root)
    outcome = "built"
except KeyboardInterrupt:
    outcome = "interrupted"
me = str(os.getpid())
children = [p for p in os.listdir("/proc") if p.isdigit() and os.path.exists(f"/proc/{p}/stat")
            and open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1] == me]
fd = os.open(root, os.O_RDONLY)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    lock = "free"
except BlockingIOError:
    lock = "held"
print(json.dumps({"outcome": outcome, "children": children, "lock": lock, "fds": len(os.listdir("/proc/self/fd"))}))
'''


def test_a_library_build_stopped_after_its_staging_is_removed_leaves_no_child_holding_the_lock(lab_source, tmp_path):
    """A Ctrl-C that reaches a library caller's process (a notebook's kernel) in the moment between the staging
    folder's removal and the build taking over the child that waits for the go: the child is ended and the lab's
    lock free (the child was forked under it: alive, it held it as long as the caller's process lived), nothing
    renamed, no temporary left."""
    import json
    import subprocess
    import sys

    lab = copy_lab(lab_source, tmp_path / "lab")
    before = tree(lab)
    env = dict(os.environ, HOMELAB_PARALLEL_FROM="2", HOMELAB_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    p = subprocess.run([sys.executable, "-c", _WINDOW, str(lab)], env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout.splitlines()[-1])
    assert (got["outcome"], got["children"], got["lock"]) == ("interrupted", [], "free")
    assert tree(lab) == before
