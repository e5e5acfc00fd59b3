"""The file work with fewer system calls per host (README "Sixth measurement: nix and the file system") does what
it did: a temporary's folder is made when it is missing (no folder is looked at first), stale temporaries are
found in real host folders only (each folder's type from the listing of hosts/), and a half empties its staging
folders by the files it wrote, leaving a folder that holds anything else."""

from __future__ import annotations

import os
import stat
import types

from homelab import files, shard


def test_temporaries_go_into_folders_made_when_missing_and_into_those_there(tmp_path):
    (tmp_path / "hosts" / "a").mkdir(parents=True)
    texts = {"hosts/a/default.nix": "a\n", "hosts/new/default.nix": "new\n", "modules/x/y/z.nix": "z\n",
             "hosts/lab.nix": "lab\n"}
    temps: list = []
    files.write_temps(tmp_path, texts, "abcd1234", True, temps)
    assert sorted(rel for rel, _ in temps) == sorted(texts)
    for rel, tmp in temps:
        assert tmp == tmp_path / rel.rsplit("/", 1)[0] / f".{rel.rsplit('/', 1)[1]}.abcd1234.tmp"
        assert tmp.read_text() == texts[rel] and stat.S_IMODE(tmp.stat().st_mode) == 0o644
    assert sorted(files.stale_temps(tmp_path)) == sorted(tmp for _, tmp in temps)


def test_stale_temporaries_are_looked_for_in_real_host_folders_only(tmp_path):
    name = ".default.nix.aaaaaaaa.tmp"
    (tmp_path / "hosts" / "a").mkdir(parents=True)
    (tmp_path / "hosts" / "a" / name).write_text("half")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / name).write_text("not the lab's")
    (tmp_path / "hosts" / "linked").symlink_to("../elsewhere")  # a link where a host folder could be: not walked
    (tmp_path / "hosts" / "b").mkdir()
    (tmp_path / "hosts" / "b" / name).mkdir()  # a folder with a temporary's name
    (tmp_path / "hosts" / "b" / ".hw.nix.bbbbbbbb.tmp").symlink_to("../a/" + name)  # a link with one
    (tmp_path / "hosts" / ".x.nix.cccccccc.tmp").write_text("a file, not a folder, in hosts/")
    assert files.stale_temps(tmp_path) == [tmp_path / "hosts" / ".x.nix.cccccccc.tmp", tmp_path / "hosts" / "a" / name]


def test_a_half_empties_its_staging_folders_by_the_files_it_wrote(tmp_path):
    base = tmp_path / "stage"
    for h in ("a", "b", "c"):
        (base / "hosts" / h).mkdir(parents=True)
        (base / "hosts" / h / "default.nix").write_text("entry")
        (base / "hosts" / h / "hw.nix").write_text("hand")
    (base / "hosts" / "b" / "other.nix").write_text("not written by this half")
    compiled = types.SimpleNamespace(hosts={
        "a": types.SimpleNamespace(hand_written=("hosts/a/hw.nix",)),
        "b": types.SimpleNamespace(hand_written=("hosts/b/hw.nix",)),
        "c": types.SimpleNamespace(hand_written=("hosts/c/hw.nix",)),
        "z": types.SimpleNamespace(hand_written=("hosts/c/hw.nix",)),  # the other half's host imports c's file
    })
    job = types.SimpleNamespace(base=str(base), shared=types.SimpleNamespace(compiled=compiled))
    half = types.SimpleNamespace(hosts=["a", "b", "c"])
    staged = [f"hosts/{h}/{n}" for h in ("a", "b", "c") for n in ("default.nix", "hw.nix")]
    shard._unstage(job, half, staged)
    left = sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())
    assert left == ["hosts/b/other.nix", "hosts/c/default.nix", "hosts/c/hw.nix"]
    assert sorted(os.listdir(base / "hosts")) == ["b", "c"]
