"""A build's temporaries: the other half of a sharded build clears the stale ones but never this build's own
(``remove_stale_temps(root, keep=token)``), and each temporary is made beside its target whatever the working folder
holds."""

from __future__ import annotations

from pathlib import Path

from homelab import files


def _put(root: Path, rel: str, text: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def test_the_stale_temporaries_of_other_builds_are_removed_and_this_builds_own_are_kept(tmp_path):
    ours = ["modules/.a.nix.ourtoken.tmp", "hosts/x/.default.nix.ourtoken.tmp"]
    theirs = ["modules/.a.nix.abcd_123.tmp", "hosts/.lab.nix.zz99yy88.tmp", "hosts/x/.default.nix.aaaaaaaa.tmp"]
    for rel in ours + theirs:
        _put(tmp_path, rel, "half")
    removed = files.remove_stale_temps(tmp_path, keep="ourtoken")
    assert removed == sorted(tmp_path / rel for rel in theirs)
    assert files.stale_temps(tmp_path) == sorted(tmp_path / rel for rel in ours)
    assert [(tmp_path / rel).read_text() for rel in ours] == ["half", "half"]


def test_without_a_token_to_keep_every_stale_temporary_is_removed(tmp_path):
    found = ["modules/.a.nix.ourtoken.tmp", "hosts/x/.default.nix.aaaaaaaa.tmp"]
    for rel in found:
        _put(tmp_path, rel, "half")
    assert files.remove_stale_temps(tmp_path) == sorted(tmp_path / rel for rel in found)
    assert files.stale_temps(tmp_path) == []


def test_temporaries_are_made_beside_their_targets_not_in_the_working_folder(tmp_path, monkeypatch):
    """The working folder may hold anything (here a folder named like the lab's missing parts): no temporary goes
    there, each is in its target's folder (made when missing)."""
    root = tmp_path / "lab"
    (root / "hosts" / "a").mkdir(parents=True)
    cwd = tmp_path / "cwd"
    for folder in ("None", "hosts/a", "modules"):
        (cwd / folder).mkdir(parents=True)
    monkeypatch.chdir(cwd)
    texts = {"hosts/a/default.nix": "a\n", "modules/m.nix": "m\n"}
    temps: list = []
    files.write_temps(root, texts, "abcd1234", True, temps)
    assert temps == [("modules/m.nix", root / "modules" / ".m.nix.abcd1234.tmp"),
                     ("hosts/a/default.nix", root / "hosts" / "a" / ".default.nix.abcd1234.tmp")]
    assert [tmp.read_text() for _, tmp in temps] == ["m\n", "a\n"]
    assert sorted(p.relative_to(cwd).as_posix() for p in cwd.rglob("*")) == ["None", "hosts", "hosts/a", "modules"]
