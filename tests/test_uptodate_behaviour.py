"""The no-op fingerprint (homelab/uptodate.py) in a scratch folder: it changes exactly when something a build reads
changes, and stays when only something it does not read changes.  No nix, no subprocess."""

from __future__ import annotations

import os
from pathlib import Path

from homelab import uptodate


def make_lab(tmp_path: Path) -> Path:
    root = tmp_path / "lab"
    (root / "hosts" / "a").mkdir(parents=True)
    (root / "hosts" / "a" / "host.py").write_text("roles=[]")
    (root / "modules").mkdir()
    return root


def fp(root: Path) -> str:
    return uptodate.fingerprint(str(root), [])


def test_only_the_environment_homelab_and_nix_read_is_part_of_it(tmp_path, monkeypatch):
    root = make_lab(tmp_path)
    first = fp(root)
    monkeypatch.setenv("SOME_UNRELATED_SETTING", "1")
    monkeypatch.setenv("TERM", "changed-terminal")
    assert fp(root) == first
    seen = {first}
    for name in ("PATH", "PYTHONPATH", "HOMELAB_X", "NIX_PATH"):
        monkeypatch.setenv(name, os.environ.get(name, "") + ":/changed")
        seen.add(fp(root))
    assert len(seen) == 5


def test_only_the_watched_folders_are_part_of_it(tmp_path):
    root = make_lab(tmp_path)
    (root / "README.md").write_text("notes")
    (root / "other").mkdir()
    first = fp(root)
    (root / "README.md").write_text("other notes")
    (root / "other" / "new.txt").write_text("x")
    assert fp(root) == first
    seen = {first}
    for name in uptodate.WATCHED:
        d = root / name
        d.mkdir(exist_ok=True)
        (d / "new.nix").write_text("x")
        seen.add(fp(root))
    assert len(seen) == 1 + len(uptodate.WATCHED)


def test_a_file_where_a_watched_folder_was_missing_is_a_change(tmp_path):
    root = make_lab(tmp_path)
    first = fp(root)  # no secrets/, no cluster/
    (root / "secrets").write_text("")
    second = fp(root)
    assert second != first
    (root / "secrets").unlink()
    (root / "cluster").write_text("")
    assert fp(root) not in (first, second)


def test_a_folder_link_pointed_elsewhere_is_a_change_even_between_empty_folders(tmp_path):
    root = make_lab(tmp_path)
    (tmp_path / "e1").mkdir()
    (tmp_path / "e2").mkdir()
    link = root / "hosts" / "b"
    link.symlink_to(tmp_path / "e1")
    first = fp(root)
    link.unlink()
    link.symlink_to(tmp_path / "e2")
    assert fp(root) != first


def test_every_linked_folder_is_walked_and_what_follows_a_link_too(tmp_path):
    """hosts/a1 and hosts/a2 link to two folders outside the lab, hosts/c is a real folder listed after them: an
    edit in any of them is a change."""
    root = make_lab(tmp_path)
    for name in ("e1", "e2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "host.py").write_text("one")
        (root / "hosts" / f"a{name[-1]}").symlink_to(tmp_path / name)
    (root / "hosts" / "c").mkdir()
    (root / "hosts" / "c" / "host.py").write_text("one")
    seen = {fp(root)}
    for edited in (tmp_path / "e1" / "host.py", tmp_path / "e2" / "host.py", root / "hosts" / "c" / "host.py"):
        edited.write_text("two")  # same size
        seen.add(fp(root))
    assert len(seen) == 4
