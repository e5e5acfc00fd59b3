"""Each half of a two-process build lists its hosts' folders once (shard._listed, README "Eighth measurement:
staging and system calls"): the stale temporaries a killed build left there are removed from that listing (the
child's look at the lab skips those folders), and the hand-written imports are staged from it (no look at each
file, no second listing).  These tests prove both give what the ways they replace give: the same files staged,
the same digests, the same temporaries removed and kept, on missing, linked and odd files too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from homelab import files, readback, shard

from .conftest import REPO
from tests.test_bench_runs import bench_module

TOKEN = "ourtoken"


def _lab(root: Path) -> None:
    """Host folders with what a lab's folders hold, and the odd things a user's may."""
    for h in ("a", "b", "c", "d", "e"):
        (root / "hosts" / h).mkdir(parents=True)
        (root / "hosts" / h / "host.py").write_text(f"# {h}\n")
    (root / "hosts" / "a" / "hw.nix").write_text("{ a = 1; }\n")
    (root / "hosts" / "a" / "disks.nix").write_text("{ disks = 1; }\n")  # beside an import: staged too
    (root / "hosts" / "a" / ".hidden.nix").write_text("{ }\n")  # hidden: never staged
    (root / "hosts" / "a" / "default.nix").write_text("old entry\n")  # the generated entry: never staged
    (root / "hosts" / "a" / "gen.nix").write_text("generated elsewhere\n")  # a generated path: never staged
    (root / "common").mkdir()
    (root / "common" / "shared.nix").write_text("{ shared = 1; }\n")
    (root / "hosts" / "b" / "hw.nix").symlink_to("../../common/shared.nix")  # a link to a file: followed
    (root / "hosts" / "c" / "hw.nix").mkdir()  # a folder where the import should be: not a file
    # d's import is missing; e imports a file in a folder no half lists
    (root / "hosts" / "e" / "other.nix").write_text("{ other = 1; }\n")
    (root / "hosts" / "e" / "link.nix").symlink_to("nowhere.nix")  # a dangling link beside an import


HAND = {"a": ("hosts/a/hw.nix",), "b": ("hosts/b/hw.nix",), "c": ("hosts/c/hw.nix",), "d": ("hosts/d/hw.nix",),
        "e": ("common/shared.nix", "hosts/e/other.nix")}
GENERATED = frozenset({"hosts/a/gen.nix", *(f"hosts/{h}/default.nix" for h in HAND)})


def _job(root: Path, base: str = "") -> types.SimpleNamespace:
    compiled = types.SimpleNamespace(hosts={h: types.SimpleNamespace(hand_written=r) for h, r in HAND.items()})
    lab = types.SimpleNamespace(where=lambda h: f"hosts/{h}")
    return types.SimpleNamespace(root=root, base=base, token=TOKEN, host_dirs=files.host_folders(root),
                                 shared=types.SimpleNamespace(compiled=compiled, lab=lab))


def _staged(base: Path) -> dict[str, object]:
    return {p.relative_to(base).as_posix(): (p.read_bytes() if p.is_file() else "folder")
            for p in sorted(base.rglob("*"))}


@pytest.mark.parametrize("hosts", [["a", "b", "c", "d", "e"], ["a", "c"], ["b", "d", "e"]])
def test_staging_from_the_listing_stages_what_looking_at_each_file_stages(tmp_path, hosts):
    root = tmp_path / "lab"
    _lab(root)
    hand = sorted({r for h in hosts for r in HAND[h]})
    answers = []
    for way in ("looked", "listed"):
        base = tmp_path / way
        base.mkdir()
        listed = shard._listed(_job(root), types.SimpleNamespace(hosts=hosts)) if way == "listed" else None
        if way == "listed":
            assert sorted(listed) == [f"hosts/{h}" for h in hosts]  # every host folder listed, nothing else
        digests: dict[str, str] = {}
        staged: list[str] = []
        readback.stage_hand_written(str(base), root, hand, GENERATED, digests=digests, staged=staged, listed=listed)
        answers.append((_staged(base), digests, staged))
    assert answers[0] == answers[1]
    if "a" in hosts:  # what the old way stages, named: the import, its neighbour; not hidden, entry, generated
        assert {k for k in answers[1][0] if k.startswith("hosts/a/")} == {"hosts/a/hw.nix", "hosts/a/disks.nix"}
    if "c" in hosts:  # a folder is not a file: nothing copied, no digest
        assert "hosts/c/hw.nix" not in answers[1][1]


def test_a_file_changed_after_the_listing_is_staged_and_digested_as_read(tmp_path):
    """The listing says only which names are there; the content staged and digested is what is read then."""
    root = tmp_path / "lab"
    _lab(root)
    listed = shard._listed(_job(root), types.SimpleNamespace(hosts=["a"]))
    (root / "hosts" / "a" / "hw.nix").write_text("{ a = 2; }\n")  # edited after the listing
    base = tmp_path / "stage"
    base.mkdir()
    digests: dict[str, str] = {}
    readback.stage_hand_written(str(base), root, ["hosts/a/hw.nix"], GENERATED, digests=digests, listed=listed)
    import hashlib
    assert (base / "hosts/a/hw.nix").read_text() == "{ a = 2; }\n"
    assert digests == {"hosts/a/hw.nix": hashlib.sha256(b"{ a = 2; }\n").hexdigest()}


def test_a_file_gone_after_the_listing_is_an_error_as_when_it_goes_after_the_look(tmp_path):
    root = tmp_path / "lab"
    _lab(root)
    listed = shard._listed(_job(root), types.SimpleNamespace(hosts=["a"]))
    (root / "hosts" / "a" / "hw.nix").unlink()
    base = tmp_path / "stage"
    base.mkdir()
    with pytest.raises(FileNotFoundError):
        readback.stage_hand_written(str(base), root, ["hosts/a/hw.nix"], GENERATED, listed=listed)
    assert not (base / "hosts/a/hw.nix").exists()


def _temps(root: Path) -> None:
    """Temporaries of killed builds (and this build's own, and things that only look like them) everywhere."""
    stale = ".default.nix.zzzzzzzz.tmp"
    for h in ("a", "b", "e"):
        (root / "hosts" / h / stale).write_text("half")
        (root / "hosts" / h / f".default.nix.{TOKEN}.tmp").write_text("this build's")
    (root / "hosts" / "c" / ".hw.nix.yyyyyyyy.tmp").mkdir()  # a folder with a temporary's name
    (root / "hosts" / "d" / ".x.nix.wwwwwwww.tmp").symlink_to("host.py")  # a link with one
    (root / "hosts" / ".lab.nix.vvvvvvvv.tmp").write_text("in hosts/")
    (root / "hosts" / "notahost").mkdir()  # a folder of hosts/ no host came from: the child's look finds it
    (root / "hosts" / "notahost" / stale).write_text("half")
    (root / "elsewhere").mkdir()
    (root / "elsewhere" / stale).write_text("not the lab's")
    (root / "hosts" / "f").symlink_to("../elsewhere")  # a host folder that is a link: never walked
    (root / "modules" / "k8s").mkdir(parents=True)
    (root / "modules" / "k8s" / ".base.nix.uuuuuuuu.tmp").write_text("half")
    (root / "hosts" / "a" / ".notes.tmp").write_text("not a temporary's name")


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def test_the_halves_and_the_child_remove_the_stale_temporaries_the_old_look_removes(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    for root in (old, new):
        _lab(root)
        _temps(root)
    HAND["f"] = ()
    try:
        gone_old = files.remove_stale_temps(old, keep=TOKEN)
        job = _job(new)
        listed = {}
        for half in (["a", "b", "c"], ["d", "e", "f"]):  # the two halves, then the child's look at the rest
            listed.update(shard._listed(job, types.SimpleNamespace(hosts=half)))
        gone_child = files.remove_stale_temps(new, keep=TOKEN, skip=shard._scanned(job))
    finally:
        del HAND["f"]
    assert _files(new) == _files(old)
    assert {p.relative_to(new).as_posix() for p in gone_child} == {
        "hosts/.lab.nix.vvvvvvvv.tmp", "hosts/notahost/.default.nix.zzzzzzzz.tmp", "modules/k8s/.base.nix.uuuuuuuu.tmp"}
    assert {p.relative_to(old).as_posix() for p in gone_old} == {
        *(f"hosts/{h}/.default.nix.zzzzzzzz.tmp" for h in "abe"), "hosts/.lab.nix.vvvvvvvv.tmp",
        "hosts/notahost/.default.nix.zzzzzzzz.tmp", "modules/k8s/.base.nix.uuuuuuuu.tmp"}
    assert "hosts/f" not in listed  # a link: neither listed nor walked
    # a removed temporary is not in the listing the staging uses
    assert {e.name for e in listed["hosts/a"]} == {"host.py", "hw.nix", "disks.nix", ".hidden.nix", "default.nix",
                                                   "gen.nix", f".default.nix.{TOKEN}.tmp", ".notes.tmp"}


def test_a_two_process_build_removes_every_stale_temporary_and_writes_what_one_process_writes(tmp_path, nix):
    if not shard.available():
        pytest.skip("no fork or a single core: the two-process path is never taken here")
    src = tmp_path / "src"
    bench = bench_module()
    bench.write_lab(bench.synthetic_lab(8), src)
    names = sorted(p.name for p in (src / "hosts").iterdir() if p.is_dir())
    trees = []
    for parallel_from in ("0", "2"):
        root = tmp_path / f"lab{parallel_from}"
        shutil.copytree(src, root)
        for h in names:  # both halves' hosts
            (root / "hosts" / h / ".default.nix.zzzzzzzz.tmp").write_text("{ this is not nix")
            (root / "hosts" / h / "disks.nix").write_text("{ }\n")
        env = dict(os.environ, HOMELAB_PARALLEL_FROM=parallel_from, HOMELAB_CACHE_DIR=str(tmp_path / f"c{parallel_from}"),
                   PYTHONPATH=str(REPO))
        env.pop("HOMELAB_DEBUG", None)
        p = subprocess.run([sys.executable, "-m", "homelab", "build", "-q", "--no-cache", "--root", str(root)],
                           capture_output=True, text=True, timeout=300, env=env)
        assert p.returncode == 0, p.stderr
        assert "one process instead of two" not in p.stderr
        assert files.stale_temps(root) == []
        trees.append({p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
                      if p.is_file() and "__pycache__" not in p.parts})
    assert trees[0] == trees[1]


def _plan_or_problems(root: Path, texts: dict[str, str], listed, force: bool) -> object:
    from homelab.errors import LabError
    try:
        return files.plan(root, texts, prune=False, listed=listed, force=force)
    except LabError as e:
        return [str(p) for p in e.problems]


@pytest.mark.parametrize("force", [False, True])
def test_planning_from_the_listing_plans_what_looking_at_each_file_plans(tmp_path, force):
    root = tmp_path / "lab"
    _lab(root)
    first = {f"hosts/{h}/default.nix": f"# entry {h}\n" for h in HAND}
    (root / "hosts" / "a" / "default.nix").unlink(missing_ok=True)
    # b's entry: a directory where it goes; c's: a hand-written file; d's: what the build writes (unchanged)
    (root / "hosts" / "b" / "default.nix").mkdir()
    (root / "hosts" / "c" / "default.nix").write_text("not generated\n")
    (root / "hosts" / "d" / "default.nix").write_text(first["hosts/d/default.nix"])
    (root / "hosts" / "x").write_text("a file where a host's folder goes\n")
    texts = {**first, "hosts/x/default.nix": "# x\n", "modules/new.nix": "# new\n"}
    names = {f"hosts/{h}": {e.name for e in entries}
             for h, entries in ((h, list(os.scandir(root / "hosts" / h))) for h in HAND)}
    answers = []
    for subset in (texts, {k: v for k, v in texts.items() if k not in ("hosts/b/default.nix", "hosts/x/default.nix")}):
        looked = _plan_or_problems(root, subset, None, force)
        assert looked == _plan_or_problems(root, subset, names, force)
        answers.append(looked)
    assert answers[0] == [  # the problems, in their order, and a plan
        "hosts/b/default.nix: file: is not a regular file; homelab will not replace it",
        *([] if force else ["hosts/c/default.nix: file: exists and was not generated by homelab; move it away (or "
                            "import it from host.py) or run the build with --force"]),
        "hosts/x: file: is in the way: homelab needs a folder there to write hosts/x/default.nix"]
    assert isinstance(answers[1], files.Plan) or answers[1] == [
        "hosts/c/default.nix: file: exists and was not generated by homelab; move it away (or import it from "
        "host.py) or run the build with --force"]
    assert files.plan(root, {"hosts/a/default.nix": "a\n", "hosts/d/default.nix": first["hosts/d/default.nix"]},
                      prune=False, listed=names) == files.Plan({"hosts/a/default.nix": "a\n"}, (),
                                                                 ("hosts/d/default.nix",))
