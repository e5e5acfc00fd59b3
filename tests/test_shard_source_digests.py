"""The no-op record's digest of each host.py, in a two-process build (homelab/shard.py), is the SHA-256 of the bytes
the load ran to make that host (homelab.load.source_digest: kept from the load, by the precompile helper or by
this process's own compile), not of the file as it is later: a host.py edited during the build makes the next
build rebuild.  ``HOMELAB_PARALLEL_FROM=2`` sends a lab of 6 hosts down the two-process path; ``PRECOMPILE_FROM``
set to 1 has the helper compile them (the load's other path, compiling in this process, with it left as it is).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from homelab import build, load, shard, uptodate
from tests.test_bench_runs import bench_module

from .conftest import copy_lab

HOSTS = 6


@pytest.fixture(scope="module")
def lab_source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("source-digests-lab")
    bench = bench_module()
    bench.write_lab(bench.synthetic_lab(HOSTS), root)
    return root


@pytest.fixture(autouse=True)
def _two_processes_here():
    if not shard.available():
        pytest.skip("no fork or a single core: the two-process path is never taken here")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("helper", [True, False], ids=["helper-compiled", "compiled-here"])
def test_a_host_py_edited_during_the_build_keeps_the_digest_of_what_was_loaded(lab_source, tmp_path, nix,
                                                                              monkeypatch, helper):
    root = copy_lab(lab_source, tmp_path / "lab")
    names = sorted(p.name for p in (root / "hosts").iterdir() if (p / "host.py").is_file())
    loaded = {f"hosts/{h}/host.py": (root / "hosts" / h / "host.py").read_bytes() for h in names}
    if helper:
        monkeypatch.setattr(load, "PRECOMPILE_FROM", 1)
    real = shard._digest_sources
    edited: list[str] = []

    def edit_then_digest(root_, lab, compiled, hosts, out):
        # between the load and the record, in each half's own process: the first host's host.py changes, its size
        # kept (a comment's letter)
        p = root_ / "hosts" / hosts[0] / "host.py"
        data = p.read_bytes()
        p.write_bytes(data[:-2] + (b"X" if data[-2:-1] != b"X" else b"Y") + data[-1:])
        edited.append(hosts[0])  # this process's list (the child's is its own copy)
        return real(root_, lab, compiled, hosts, out)

    monkeypatch.setattr(shard, "_digest_sources", edit_then_digest)
    monkeypatch.setenv("HOMELAB_PARALLEL_FROM", "2")
    monkeypatch.delenv("HOMELAB_DEBUG", raising=False)
    res = build.build(root, nix=nix)
    assert res.processes == 2
    now = {rel: (root / rel).read_bytes() for rel in loaded}
    changed = sorted(rel for rel in loaded if now[rel] != loaded[rel])
    assert len(changed) == 2 and f"hosts/{edited[0]}/host.py" in changed  # one host of each half
    # every host.py's digest is the loaded content's, the edited two included
    assert {rel: d for rel, d in res.digests.items() if rel.endswith("/host.py")} == \
        {rel: _sha(data) for rel, data in loaded.items()}
    # so the record made from them does not match the lab now: the next build rebuilds
    cache = tmp_path / "cache"
    monkeypatch.setenv("HOMELAB_CACHE_DIR", str(cache))
    assert uptodate.fingerprint(str(root), [], res.digests) != uptodate.fingerprint(str(root), [])
    for rel in changed:  # put back: the digests then match the files exactly
        (root / rel).write_bytes(loaded[rel])
    assert uptodate.fingerprint(str(root), [], res.digests) == uptodate.fingerprint(str(root), [])


def test_the_digest_is_only_for_the_very_host_the_load_made_from_that_path(lab_source, tmp_path):
    """source_digest answers for the Host object the last load made from that host.py; another load (the file
    edited since), another path or an equal Host made elsewhere: None (the build then reads the file)."""
    root = copy_lab(lab_source, tmp_path / "lab")
    lab, problems = load.load(root, secrets=False)
    assert lab is not None
    host = lab.hosts[0]
    path = root / "hosts" / host.hostname / "host.py"
    assert load.source_digest(host, str(path)) == _sha(path.read_bytes())
    assert load.source_digest(host, str(path) + "x") is None
    import attrs

    assert load.source_digest(attrs.evolve(host), str(path)) is None  # equal, not the one loaded
    path.write_bytes(path.read_bytes() + b"\n# edited\n")
    again, _ = load.load(root, secrets=False)
    assert load.source_digest(host, str(path)) is None  # the earlier load's host: forgotten
    assert load.source_digest(again.host(host.hostname), str(path)) == _sha(path.read_bytes())


def test_a_hardware_file_edited_before_its_staging_is_staged_and_recorded_as_loaded(lab_source, tmp_path, nix,
                                                                                    monkeypatch):
    """The hand-written imports the load read whole (homelab.load.import_contents) are staged for nix as the load
    read them and hashed so for the record: one edited after the load (before it is staged) does not reach nix,
    and the next build rebuilds."""
    from homelab import readback

    root = copy_lab(lab_source, tmp_path / "lab")
    hw = sorted(p.relative_to(root).as_posix() for p in (root / "hosts").glob("*/hardware-configuration.nix"))
    assert len(hw) == HOSTS
    loaded = {rel: (root / rel).read_bytes() for rel in hw}
    real = readback.stage_hand_written
    seen: list[str] = []
    mine: list[str] = []

    def edit_then_stage(base, root_, hand, *args, **kw):
        for rel in hand:  # this half's, each edited (size kept) after the load, before it is staged
            p = root_ / rel
            data = p.read_bytes()
            p.write_bytes(data + b"# edited\n")  # still Nix: what nix reads decides, not a parse error
        hand = list(hand)
        mine.extend(hand)
        real(base, root_, hand, *args, **kw)
        seen.extend(rel for rel in hand if (Path(base) / rel).read_bytes() == loaded[rel])  # what nix reads

    monkeypatch.setattr(readback, "stage_hand_written", edit_then_stage)
    monkeypatch.setenv("HOMELAB_PARALLEL_FROM", "2")
    monkeypatch.delenv("HOMELAB_DEBUG", raising=False)
    res = build.build(root, nix=nix)
    assert res.processes == 2
    assert mine and seen == mine  # this process's half staged the loaded bytes (the child's lists are its own)
    assert all((root / rel).read_bytes() != loaded[rel] for rel in hw)  # both halves edited theirs
    assert {rel: d for rel, d in res.digests.items() if rel in loaded} == {rel: _sha(b) for rel, b in loaded.items()}
    assert uptodate.fingerprint(str(root), [], res.digests) != uptodate.fingerprint(str(root), [])
    for rel in hw:
        (root / rel).write_bytes(loaded[rel])
    assert uptodate.fingerprint(str(root), [], res.digests) == uptodate.fingerprint(str(root), [])


def test_the_imports_read_whole_are_the_last_loads_only(lab_source, tmp_path):
    """import_contents holds what the last load read whole, for the lab that load made only: a file that grew past
    the head read since is not answered from an earlier load, nor a lab another load or code made (the build then
    reads each file)."""
    root = copy_lab(lab_source, tmp_path / "lab")
    hw = root / "hosts" / "n0000" / "hardware-configuration.nix"
    lab, _ = load.load(root, secrets=False, placeholders=True)
    assert lab is not None and load.import_contents(lab)[str(hw)] == hw.read_bytes()
    import attrs

    from homelab.model import Lab

    changed = Lab(lab.cluster, [attrs.evolve(lab.hosts[0]), *lab.hosts[1:]], lab.sources)
    assert load.import_contents(changed) == {}  # a host made since (in code): nothing of the load's is used
    hw.write_bytes(hw.read_bytes() + b"# " + b"x" * load._HEAD + b"\n")
    again, _ = load.load(root, secrets=False, placeholders=True)
    assert again is not None and str(hw) not in load.import_contents(again)
    assert load.import_contents(lab) == {}  # the earlier load's lab
    assert sorted(load.import_contents(again)) == sorted(str(p) for p in (root / "hosts").glob("*/hardware-configuration.nix")
                                                    if p != hw)
