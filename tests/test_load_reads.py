"""How loading looks into a lab's files (issue 19: 10,000 host.py and as many hardware files): the plain
system calls read what a file object reads, and leave no descriptor open."""

from __future__ import annotations

import os

import pytest

from homelab.load import _read_head, is_placeholder, unreadable


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("size, n", [(0, 4096), (3, 4096), (4096, 4096), (5000, 4096), (5000, 1), (70000, 65536)])
def test_the_head_is_the_first_bytes_or_the_whole_file(tmp_path, size, n):
    f = tmp_path / "f"
    data = bytes((i * 7) % 251 for i in range(size))
    f.write_bytes(data)
    before = _open_fds()
    assert _read_head(f, n) == data[:n]
    assert _read_head(str(f), n) == data[:n]
    assert _open_fds() == before


def test_a_file_that_is_not_there_raises_and_leaves_nothing_open(tmp_path):
    before = _open_fds()
    with pytest.raises(FileNotFoundError):
        _read_head(tmp_path / "missing", 1)
    assert _open_fds() == before


def test_unreadable_says_what_is_wrong_with_each_kind_of_path(tmp_path):
    (tmp_path / "ok.py").write_text("x = 1\n")
    (tmp_path / "empty.py").write_text("")
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link.py").symlink_to("ok.py")
    (tmp_path / "dangling.py").symlink_to("nowhere.py")
    (tmp_path / "to-dir").symlink_to("dir")
    got = {name: unreadable(tmp_path / name)
           for name in ("ok.py", "empty.py", "dir", "fifo", "link.py", "dangling.py", "to-dir", "missing.py")}
    assert got == {"ok.py": None, "empty.py": None, "dir": "is a folder, not a Python file",
                   "fifo": "is not a regular file", "link.py": None,
                   "dangling.py": "is a symbolic link to nowhere.py, which does not exist",
                   "to-dir": "is a folder, not a Python file", "missing.py": "is missing"}


def test_a_placeholder_behind_a_link_is_one(tmp_path):
    (tmp_path / "real.nix").write_text("# homelab: replace this file\n{ }\n")
    (tmp_path / "hw.nix").symlink_to("real.nix")
    assert is_placeholder(tmp_path / "hw.nix") is True
