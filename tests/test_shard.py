"""A large lab's build in two processes (homelab/shard.py) writes what the one-process build writes, byte for
byte, and fails as it fails: same message, same exit code, nothing written.

``HOMELAB_PARALLEL_FROM`` forces the two-process path on a lab of 8 hosts (and ``0`` turns it off), so each
build here takes about a second, not the minutes of a lab of thousands.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from homelab import files, shard
from tests.test_bench_runs import bench_module

REPO = Path(__file__).resolve().parent.parent
HOSTS = 8


@pytest.fixture(scope="module")
def lab_source(tmp_path_factory) -> Path:
    """A synthetic lab of 8 hosts (the benchmark's, each with a hand-written hardware file), as host.py files."""
    root = tmp_path_factory.mktemp("shard-lab")
    bench = bench_module()
    bench.write_lab(bench.synthetic_lab(HOSTS), root)
    return root


def copy_lab(src: Path, dst: Path) -> Path:
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)
    return dst


def build(root: Path, cache: Path, parallel_from: int, *args: str, **env: str) -> subprocess.CompletedProcess:
    e = dict(os.environ, HOMELAB_PARALLEL_FROM=str(parallel_from), HOMELAB_CACHE_DIR=str(cache),
             PYTHONPATH=str(REPO), **env)
    return subprocess.run([sys.executable, "-m", "homelab", "build", "-q", "--root", str(root), *args],
                          capture_output=True, text=True, timeout=300, env=e)


def tree(root: Path) -> dict[str, str]:
    """Every file of the lab (sources and generated ones), by path: the SHA-256 of its content."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def test_the_threshold_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("HOMELAB_PARALLEL_FROM", raising=False)
    assert shard.threshold() == shard.PARALLEL_FROM == 1000
    assert not shard.wanted(999)
    monkeypatch.setenv("HOMELAB_PARALLEL_FROM", "4")
    assert (shard.wanted(3), shard.wanted(4) or not shard.available()) == (False, True)
    monkeypatch.setenv("HOMELAB_PARALLEL_FROM", "0")
    assert not shard.wanted(10_000)
    monkeypatch.setenv("HOMELAB_PARALLEL_FROM", "many")
    assert shard.threshold() == 1000


def test_two_processes_write_the_files_one_process_writes(lab_source, tmp_path, nix):
    if not shard.available():
        pytest.skip("no fork or a single core: the two-process path is never taken here")
    one = copy_lab(lab_source, tmp_path / "one")
    two = copy_lab(lab_source, tmp_path / "two")
    for lab in (one, two):  # temporaries a killed build left, in each half's folders: removed
        for folder in ("hosts/n0001", "hosts/n0007", "hosts"):
            (lab / folder / ".default.nix.abcd1234.tmp").write_text("half")
    a = build(one, tmp_path / "cache-one", 0)
    b = build(two, tmp_path / "cache-two", 2)
    assert (a.returncode, b.returncode) == (0, 0), a.stderr + b.stderr
    assert "(2 nix processes)" in a.stdout and "(the slower of two processes; 2 nix processes)" in b.stdout
    assert a.stderr == b.stderr  # the same warnings
    summary = [line.split(";")[0] for line in (a.stdout, b.stdout)]
    generated = [rel for rel in tree(two) if rel not in tree(lab_source)]
    assert summary[0] == summary[1] == f"{HOSTS} hosts: wrote {len(generated)}, unchanged 0"
    assert tree(one) == tree(two)
    assert files.stale_temps(one) == files.stale_temps(two) == []
    # the no-op record made from the digests the two halves handed back holds: nothing changed, nothing built
    again = build(two, tmp_path / "cache-two", 2)
    assert again.returncode == 0 and "nothing changed since the build of" in again.stdout, again.stdout
    # and it still sees an edit that keeps the size
    host_py = two / "hosts" / "n0007" / "host.py"
    host_py.write_text(host_py.read_text().replace("synthetic mini PC #7", "synthetic mini PC #8"))
    edited = build(two, tmp_path / "cache-two", 2)
    assert edited.returncode == 0 and "nothing changed" not in edited.stdout, edited.stdout


def test_a_problem_in_the_childs_half_is_said_as_one_process_says_it(lab_source, tmp_path, nix):
    """n0007 (in the child's half) imports a hand-written file that is not valid Nix: the same error, exit 2,
    nothing written, no temporary left."""
    if not shard.available():
        pytest.skip("no fork or a single core: the two-process path is never taken here")
    runs = []
    for name, parallel in (("one", 0), ("two", 2)):
        root = copy_lab(lab_source, tmp_path / name)
        (root / "hosts" / "n0007" / "hardware-configuration.nix").write_text("{ fileSystems = ; }\n")
        before = tree(root)
        p = build(root, tmp_path / f"cache-{name}", parallel)
        assert tree(root) == before and files.stale_temps(root) == []
        runs.append((p.returncode, p.stdout, p.stderr.replace(str(root), "ROOT")))
    assert runs[0][0] == 2 and "hosts/n0007" in runs[0][2] and "is not valid Nix" in runs[0][2]
    assert runs[1] == runs[0]


def test_a_hand_edit_in_the_childs_half_is_refused_as_one_process_refuses_it(lab_source, tmp_path, nix):
    if not shard.available():
        pytest.skip("no fork or a single core: the two-process path is never taken here")
    runs = []
    for name, parallel in (("one", 0), ("two", 2)):
        root = copy_lab(lab_source, tmp_path / name)
        assert build(root, tmp_path / f"cache-{name}", 0).returncode == 0
        entry = root / "hosts" / "n0006" / "default.nix"
        entry.write_text(entry.read_text() + "# mine\n")
        host_py = root / "hosts" / "n0001" / "host.py"  # a change for a build to write, in this process's half
        host_py.write_text(host_py.read_text().replace("synthetic mini PC #1", "synthetic mini PC #one"))
        before = tree(root)
        p = build(root, tmp_path / f"cache-{name}", parallel)
        assert tree(root) == before and files.stale_temps(root) == []
        runs.append((p.returncode, p.stdout, p.stderr))
    assert runs[0][0] == 2 and "hosts/n0006/default.nix: file: was edited by hand" in runs[0][2], runs[0]
    assert runs[1] == runs[0]


def test_a_child_that_dies_leaves_nothing_half_done(lab_source, tmp_path, nix):
    """The child dies after writing its temporaries: they are taken back, and the build is done in one process,
    with the same files."""
    if not shard.available():
        pytest.skip("no fork or a single core: the two-process path is never taken here")
    one = copy_lab(lab_source, tmp_path / "one")
    two = copy_lab(lab_source, tmp_path / "two")
    a = build(one, tmp_path / "cache-one", 0)
    b = build(two, tmp_path / "cache-two", 2, HOMELAB_TEST_SHARD_CRASH="1")
    assert (a.returncode, b.returncode) == (0, 0), b.stderr
    assert "(2 nix processes)" in b.stdout  # built again, in one process, and says why (tests/test_shard_fallback.py)
    said = ("homelab: building in one process instead of two: the second process ended without its result "
            "(exit status 70)")
    assert (a.stderr + said + "\n", tree(one)) == (b.stderr, tree(two))
    assert files.stale_temps(two) == []


@pytest.mark.parametrize("imp", ["./hw.nix", "hw.nix", "../common.nix", "sub//a.nix", "./a/./b.nix", ".", "./",
                                 "../../x/../y.nix", "/etc/nixos/hw.nix", "//abs.nix", "a/"])
@pytest.mark.parametrize("root", ["/tmp/lab", "/tmp/lab/", "rel/lab", "/", "."])
def test_the_records_import_paths_are_pathlibs(root, imp):
    """The no-op record joins 10,000 imports as strings: each exactly the path pathlib gives (realpath then
    resolves the same name, link by link)."""
    from homelab.cli import _joined

    assert _joined(str(Path(root) / "hosts") + "/n1", imp) == str(Path(root) / "hosts" / "n1" / imp)


def test_a_lab_built_into_a_new_folder_takes_the_one_process_path(tmp_path, nix):
    """The two-process path takes the lab's lock and writes temporaries into the folder before nix has read
    anything back: a folder that does not exist yet is left to the one-process build, which makes it only once
    nix verified the files."""
    from homelab import build as build_mod
    from tests import labkit

    lab = labkit.lab()
    build_mod.prepare(lab)  # a valid lab
    assert shard.build(tmp_path / "new", lab, (), nix) is None
    assert not (tmp_path / "new").exists()
