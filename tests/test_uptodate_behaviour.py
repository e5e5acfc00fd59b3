"""The no-op fingerprint (homelab/uptodate.py) in a scratch folder: it changes exactly when something a build reads
changes, and stays when only something it does not read changes.  No nix, no subprocess."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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


def test_a_folder_its_user_cannot_read_hides_nothing_else(tmp_path):
    """Run by a user who cannot list one folder (mode 000) or stat inside another (mode 444): the rest of the lab
    is still fingerprinted, so an edit beside those folders, or a new entry in the listable one, is a change."""
    import contextlib
    import shutil
    import tempfile

    if os.geteuid() != 0:
        pytest.skip("needs root to act as another user in-process (os.seteuid)")
    nobody = 65534
    base = tempfile.mkdtemp(prefix="homelab-fp-")
    try:
        root = Path(base) / "lab"
        (root / "hosts" / "a").mkdir(parents=True)
        (root / "hosts" / "a" / "host.py").write_text("one")
        (root / "hosts" / "z").mkdir()
        (root / "modules" / "c").mkdir(parents=True)
        (root / "modules" / "c" / "f1.nix").write_text("x")
        for d, _, fs in os.walk(base):
            os.chown(d, nobody, nobody)
            for f in fs:
                os.chown(os.path.join(d, f), nobody, nobody)
        os.chmod(root / "hosts" / "z", 0o000)
        os.chmod(root / "modules" / "c", 0o555 & ~0o111)

        @contextlib.contextmanager
        def as_nobody():
            os.setegid(nobody)
            os.seteuid(nobody)
            try:
                yield
            finally:
                os.seteuid(0)
                os.setegid(0)

        seen = set()
        with as_nobody():
            seen.add(fp(root))
        (root / "hosts" / "a" / "host.py").write_text("two")  # same size, beside the unlistable hosts/z
        with as_nobody():
            seen.add(fp(root))
        (root / "modules" / "c" / "f2.nix").write_text("y")  # a new entry after one that cannot be stat'ed
        with as_nobody():
            seen.add(fp(root))
        assert len(seen) == 3
    finally:
        for d in (Path(base) / "lab" / "hosts" / "z", Path(base) / "lab" / "modules" / "c"):
            with contextlib.suppress(OSError):
                os.chmod(d, 0o755)
        shutil.rmtree(base, ignore_errors=True)


def test_a_file_the_build_hashed_stands_with_the_bytes_the_build_wrote(tmp_path, monkeypatch):
    """``known`` (the SHA-256 of what the build wrote, by lab-relative path) stands in for reading a regular file
    again: the same bytes give the same fingerprint as reading them, and a file edited after the build wrote it
    (before the record) is a change for the next build.  A link is always followed and read, whatever ``known``
    says of its path; extra files outside the lab are stat'ed."""
    import hashlib

    monkeypatch.setenv("HOMELAB_CACHE_DIR", str(tmp_path / "cache"))
    root = make_lab(tmp_path)
    (root / "modules" / "a.nix").write_text("{ }")
    (root / "hosts" / "b.py").symlink_to(root / "hosts" / "a" / "host.py")
    outside = tmp_path / "code.py"
    outside.write_text("x = 1")

    def sha(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    read = uptodate.fingerprint(str(root), [str(outside)])
    written = {"modules/a.nix": sha("{ }"), "hosts/a/host.py": sha("roles=[]"), "hosts/b.py": sha("not read")}
    assert uptodate.fingerprint(str(root), [str(outside)], written) == read
    uptodate.save(str(root), [str(outside)], "check", "build", [], written)
    assert uptodate.lookup(str(root))["fingerprint"] == read

    edited = dict(written, **{"modules/a.nix": sha("{ x = 1; }")})  # the build wrote other bytes than are there now
    assert uptodate.fingerprint(str(root), [str(outside)], edited) != read
    uptodate.save(str(root), [str(outside)], "check", "build", [], edited)
    assert uptodate.lookup(str(root)) is None

    outside.write_text("x = 22")
    assert uptodate.fingerprint(str(root), [str(outside)]) != read
