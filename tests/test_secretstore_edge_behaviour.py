"""Edges of homelab/secretstore.py and ``homelab secrets`` that once crashed or did something unexpected.

An editor that deletes the file it was given, a secret named twice to ``rekey``, ssh-keygen past its time
limit, a symlink left in the private folder, an unknown key in secrets.toml: each is a clear error (exit 2,
nothing changed) or done once, never a traceback.  In-process calls with the real ``age`` and throwaway keys
from the real ssh-keygen (tests/secretlab.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from homelab import secretstore as st
from homelab.cli import main
from homelab.errors import EXIT_BAD_INPUT

from . import secretlab


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A lab (admin key; hosts alpha, beta, gamma with their host keys) made once per module."""
    return secretlab.loaded(tmp_path_factory.mktemp("edge"))


@pytest.fixture
def lab(base, tmp_path, monkeypatch):
    """A fresh copy of the lab for one test; no identity from the environment or ~/.ssh."""
    monkeypatch.setenv("HOME", str(tmp_path))
    return secretlab.fresh(base, tmp_path, monkeypatch)


def listing(root: Path) -> dict[str, bytes]:
    d = root / "secrets"
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())} if d.exists() else {}


def private_folders() -> set[str]:
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    return {n for n in os.listdir(shm or "/tmp") if n.startswith("homelab-secret-")}


# ---------------------------------------------------------------- edit


def test_an_editor_that_deletes_the_file_is_an_error_and_changes_nothing(lab, tmp_path, monkeypatch, capsys):
    """It was a crash (FileNotFoundError, exit 70); the editor's own program, through the command line too."""
    root, keys, lab_ = lab
    st.set_secret(root, lab_, "x", b"old", hosts=["alpha"])
    before, folders = listing(root), private_folders()
    editor = tmp_path / "rm-editor"
    editor.write_text('#!/bin/sh\nrm -- "$1"\n')
    editor.chmod(0o755)
    monkeypatch.setenv("VISUAL", str(editor))
    capsys.readouterr()
    assert main(["secrets", "edit", "x", "--root", str(root), "--identity", str(keys / "admin")]) == EXIT_BAD_INPUT
    assert capsys.readouterr() == ("", f"homelab: the editor ({editor}) removed the file it was given, so "
                                       "there is no new value; secrets/x.age is unchanged\n")
    assert listing(root) == before and private_folders() == folders


def test_an_editor_that_leaves_a_folder_where_the_file_was_is_an_error_and_changes_nothing(lab):
    root, keys, lab_ = lab
    st.set_secret(root, lab_, "x", b"old", hosts=["alpha"])
    before = listing(root)

    def folder(argv):
        os.unlink(argv[-1])
        os.mkdir(argv[-1])
        return 0

    with pytest.raises(st.SecretsError) as e:
        st.edit(root, lab_, "x", identity=str(keys / "admin"), run_editor=folder)
    assert str(e.value) == "the edited value cannot be read back (Is a directory); secrets/x.age is unchanged"
    assert listing(root) == before


# ---------------------------------------------------------------- rekey


def test_rekey_of_a_secret_named_twice_rekeys_it_once(lab, capsys):
    root, keys, lab_ = lab
    st.set_secret(root, lab_, "a", b"1", hosts=["alpha"])
    st.set_secret(root, lab_, "b", b"2", hosts=["beta"])
    assert st.rekey(root, lab_, identity=str(keys / "admin"), names=["a", "a"]) == [st.Rekeyed("a", (), ())]
    capsys.readouterr()
    assert main(["secrets", "rekey", "b", "a", "b", "--root", str(root), "--identity", str(keys / "admin")]) == 0
    assert capsys.readouterr() == ("rekeyed secrets/a.age (same readers)\nrekeyed secrets/b.age (same readers)\n", "")


# ---------------------------------------------------------------- host keys


def test_ssh_keygen_past_its_time_limit_is_an_error_and_writes_nothing(lab, monkeypatch, capsys):
    """The real ssh-keygen, given a limit it cannot meet (a microsecond): it was a TimeoutExpired traceback."""
    root, keys, lab_ = lab
    monkeypatch.setattr(st, "KEYGEN_SECONDS", 1e-6)
    pub = root / "hosts" / "alpha" / "ssh_host_ed25519_key.pub"
    before, folders = pub.read_bytes(), private_folders()
    assert main(["secrets", "hostkey", "hosts/alpha", "--force", "--root", str(root)]) == EXIT_BAD_INPUT
    assert capsys.readouterr() == ("", "homelab: hosts/alpha: ssh-keygen did not make the host key within 1e-06 s; "
                                       "nothing was written\n")
    assert pub.read_bytes() == before and not (root / "secrets").exists() and private_folders() == folders


# ---------------------------------------------------------------- the private folder


def test_remove_private_removes_a_symlink_and_leaves_its_target_as_it_was(tmp_path):
    """A link an editor (or anyone) left in the private folder points at a file homelab never wrote: the link
    goes, the file it points to keeps every byte (it was overwritten with zeros); the folder's own files are
    still zeroed."""
    work = tmp_path / "work"
    work.mkdir(mode=0o700)
    outside = tmp_path / "notes.txt"
    outside.write_bytes(b"the user's own file")
    (work / "x").write_bytes(b"plaintext")
    os.link(work / "x", tmp_path / "x-link")  # to see the folder's own file zeroed in place
    os.symlink(outside, work / "x~")
    os.symlink(work / "x", work / "inside")
    st.remove_private(str(work))
    assert not os.path.lexists(work)
    assert outside.read_bytes() == b"the user's own file"
    assert (tmp_path / "x-link").read_bytes() == b"\0" * 9


# ---------------------------------------------------------------- the record


def test_an_unknown_key_in_a_secrets_table_is_named_with_the_known_ones(lab, capsys):
    """``host = [...]`` for ``hosts`` went unnoticed: the secret was for nobody, silently."""
    root, keys, lab_ = lab
    record = root / "secrets" / "secrets.toml"
    record.parent.mkdir()
    record.write_text('[a]\nhosts = ["alpha"]\n\n[b]\nhost = ["beta"]\ncluster = false\nreader = []\n')
    before = listing(root)
    want = ("secrets/secrets.toml: [b]: unknown keys 'host', 'reader' (a secret's table has: cluster, hosts, "
            "readers)")
    with pytest.raises(st.SecretsError) as e:
        st.read_record(root)
    assert str(e.value) == want
    assert main(["secrets", "rekey", "--root", str(root), "--identity", str(keys / "admin")]) == EXIT_BAD_INPUT
    assert capsys.readouterr() == ("", f"homelab: {want}\n")
    record.write_text('[a]\nhost = ["alpha"]\n')
    with pytest.raises(st.SecretsError) as e:
        st.read_record(root)
    assert str(e.value) == ("secrets/secrets.toml: [a]: unknown key 'host' (a secret's table has: cluster, hosts, "
                            "readers)")
    assert listing(root) == {**before, "secrets.toml": b'[a]\nhost = ["alpha"]\n'}
