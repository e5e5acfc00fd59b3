"""The no-op record (``homelab.cli._record``) and the hosts' hand-written imports: one named below its host's folder
without ``..`` is read by the record's walk of hosts/ (a link: where it leads and that file), so it is not
resolved and stat'ed again beside the lab; any other (absolute, with ``..``, inside a ``__pycache__``) is.  Either
way an edit of the file, or of where a link leads, means the record no longer answers."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from homelab import cli, uptodate


@pytest.fixture
def lab(tmp_path, monkeypatch):
    monkeypatch.setenv("HOMELAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(uptodate, "RECORD", True)
    root = tmp_path / "lab"
    (root / "hosts" / "a" / "sub").mkdir(parents=True)
    (root / "hosts" / "a" / "__pycache__").mkdir()
    (root / "hosts" / "cluster.py").write_text("cluster = 1\n")
    (root / "hosts" / "a" / "host.py").write_text("host = 1\n")
    (root / "hosts" / "a" / "hw.nix").write_text("{ }\n")
    (root / "hosts" / "a" / "sub" / "disks.nix").write_text("{ }\n")
    (root / "hosts" / "a" / "__pycache__" / "odd.nix").write_text("{ }\n")
    (root / "shared").mkdir()
    (root / "shared" / "common.nix").write_text("{ }\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "abs.nix").write_text("{ }\n")
    (outside / "linked.nix").write_text("{ }\n")
    (root / "hosts" / "a" / "link.nix").symlink_to(outside / "linked.nix")
    imports = ("./hw.nix", "sub/disks.nix", "link.nix", "../../shared/common.nix", str(outside / "abs.nix"),
               "__pycache__/odd.nix")
    host = types.SimpleNamespace(hostname="a", imports=imports)
    return root, types.SimpleNamespace(hosts=[host]), outside


def _record(root: Path, lab) -> dict:
    res = types.SimpleNamespace(verified=types.SimpleNamespace(files=1, hand_written=6), written=(), unchanged=(),
                                digests={})
    cli._record(root, lab, None, None, res, "1 host", [])
    record = uptodate.lookup(str(root))
    assert record is not None
    return record


def test_only_imports_the_walk_of_hosts_does_not_read_are_stat_ed_beside_the_lab(lab):
    root, model, outside = lab
    record = _record(root, model)
    hand = [x for x in record["extra"] if x.endswith(".nix")]  # the rest: the code this process ran, nix
    assert hand == sorted([str(root / "shared" / "common.nix"), str(outside / "abs.nix"),
                           str(root / "hosts" / "a" / "__pycache__" / "odd.nix")])


@pytest.mark.parametrize("edit", ["hosts/a/hw.nix", "hosts/a/sub/disks.nix", "linked", "relinked", "shared",
                                  "absolute", "pycache"])
def test_an_edit_of_any_import_means_no_answer(lab, edit):
    root, model, outside = lab
    _record(root, model)
    path = {"shared": root / "shared" / "common.nix", "absolute": outside / "abs.nix",
            "linked": outside / "linked.nix", "pycache": root / "hosts" / "a" / "__pycache__" / "odd.nix",
            }.get(edit, root / edit)
    if edit == "relinked":
        (outside / "other.nix").write_text("{ }\n")
        (root / "hosts" / "a" / "link.nix").unlink()
        (root / "hosts" / "a" / "link.nix").symlink_to(outside / "other.nix")
    else:
        path.write_text("{ x = 1; }\n")
    assert uptodate.lookup(str(root)) is None
