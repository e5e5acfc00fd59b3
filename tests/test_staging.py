"""The staging copy nix reads (issue 19: a hardware file per host, 10,000 of them): each hand-written import is
copied byte for byte, hashed as it was read when asked, and a file another process staged is left alone."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from homelab.readback import stage_hand_written

REPO = Path(__file__).resolve().parent.parent


def _lab(tmp_path):
    root = tmp_path / "lab"
    (root / "hosts" / "a").mkdir(parents=True)
    (root / "hosts" / "b").mkdir(parents=True)
    (root / "shared").mkdir()
    (root / "hosts" / "a" / "hw.nix").write_bytes(b"{ ... }:\n{ boot.x = \"\xff\xfe not utf-8\"; }\n" * 3000)
    (root / "shared" / "common.nix").write_text("{ }\n")
    (root / "hosts" / "b" / "hw.nix").symlink_to("../../shared/common.nix")
    (root / "hosts" / "a" / "disks.nix").write_text("{ disko = 1; }\n")  # beside an import: staged too
    return root


def test_imports_are_copied_byte_for_byte_and_hashed_as_read(tmp_path):
    root = _lab(tmp_path)
    base = tmp_path / "stage"
    base.mkdir()
    digests: dict[str, str] = {}
    stage_hand_written(str(base), root, ["hosts/a/hw.nix", "hosts/b/hw.nix"], set(), digests=digests)
    for rel in ("hosts/a/hw.nix", "hosts/b/hw.nix", "hosts/a/disks.nix"):
        assert (base / rel).read_bytes() == (root / rel).read_bytes(), rel
        assert not (base / rel).is_symlink()
    assert digests == {rel: hashlib.sha256((root / rel).read_bytes()).hexdigest()
                       for rel in ("hosts/a/hw.nix", "hosts/b/hw.nix")}


def test_copies_get_the_mode_shutil_gives(tmp_path):
    root = _lab(tmp_path)
    (root / "hosts" / "a" / "hw.nix").chmod(0o600)
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    (theirs / "hosts" / "a").mkdir(parents=True)
    stage_hand_written(str(ours), root, ["hosts/a/hw.nix"], set())
    shutil.copyfile(root / "hosts/a/hw.nix", theirs / "hosts/a/hw.nix")
    assert os.stat(ours / "hosts/a/hw.nix").st_mode == os.stat(theirs / "hosts/a/hw.nix").st_mode


def test_a_file_staged_already_is_left_alone_and_not_hashed(tmp_path):
    root = _lab(tmp_path)
    base = tmp_path / "stage"
    (base / "hosts" / "a").mkdir(parents=True)
    (base / "hosts" / "a" / "hw.nix").write_text("the other process's copy\n")
    digests: dict[str, str] = {}
    stage_hand_written(str(base), root, ["hosts/a/hw.nix", "hosts/b/hw.nix"], set(), skip_present=True,
                       digests=digests)
    assert (base / "hosts/a/hw.nix").read_text() == "the other process's copy\n"
    assert set(digests) == {"hosts/b/hw.nix"}


def test_each_file_staged_is_listed_and_an_import_that_is_no_file_is_passed_over(tmp_path):
    """``staged`` (what the two-process build removes again, host folder by host folder) names each file this call
    wrote, the Nix files beside an import too; an import that is a folder, or missing, is no file to copy, in the
    half that leaves present files alone too."""
    root = _lab(tmp_path)
    (root / "hosts" / "c" / "hw.nix").mkdir(parents=True)
    base = tmp_path / "stage"
    base.mkdir()
    for skip_present in (False, True):
        staged: list[str] = []
        stage_hand_written(str(base / str(skip_present)), root, ["hosts/a/hw.nix", "hosts/c/hw.nix",
                                                                 "hosts/d/missing.nix"], set(),
                           skip_present=skip_present, staged=staged)
        assert staged == ["hosts/a/hw.nix", "hosts/a/disks.nix"]
        here = base / str(skip_present)
        assert sorted(str(p.relative_to(here)) for p in here.rglob("*") if not p.is_dir()) == \
            ["hosts/a/disks.nix", "hosts/a/hw.nix"]


def test_generated_files_beside_an_import_are_never_copied(tmp_path):
    root = _lab(tmp_path)
    base = tmp_path / "stage"
    base.mkdir()
    stage_hand_written(str(base), root, ["hosts/a/hw.nix"], {"hosts/a/disks.nix"})
    assert sorted(os.listdir(base / "hosts" / "a")) == ["hw.nix"]


def test_an_import_larger_than_one_read_is_copied_whole(tmp_path):
    root = tmp_path / "lab"
    (root / "hosts" / "a").mkdir(parents=True)
    data = b"# " + bytes(range(32, 127)) * 25_000 + b"\n{ }\n"  # 2.4 MB: several reads of 1 MiB
    (root / "hosts" / "a" / "hw.nix").write_bytes(data)
    base = tmp_path / "stage"
    base.mkdir()
    digests: dict[str, str] = {}
    stage_hand_written(str(base), root, ["hosts/a/hw.nix"], set(), digests=digests)
    assert (base / "hosts/a/hw.nix").read_bytes() == data
    assert digests == {"hosts/a/hw.nix": hashlib.sha256(data).hexdigest()}


def test_the_texts_are_staged_as_utf8_whatever_the_locale(tmp_path):
    """A non-ASCII comment (a reason naming café's printer) is staged as the UTF-8 homelab writes, in a C locale
    too, where Python's own default would be ASCII."""
    texts = {"hosts/a/default.nix": "# the printer of café «Ü»\n{ }\n", "modules/m.nix": "{ }\n"}
    code = ("import sys, json; from homelab.readback import stage_texts; "
            "stage_texts(sys.argv[1], json.loads(sys.argv[2]))")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO), "LC_ALL": "C",
           "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path), json.dumps(texts)], env=env, capture_output=True,
                       text=True, timeout=60)
    assert (p.returncode, p.stderr) == (0, "")
    assert {rel: (tmp_path / rel).read_bytes() for rel in texts} == {rel: t.encode() for rel, t in texts.items()}
