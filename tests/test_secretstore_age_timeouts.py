"""An ``age`` that does not finish in time is an error naming what it was doing, not a homelab crash.

homelab gives age ENCRYPT_SECONDS to encrypt and DECRYPT_SECONDS to decrypt (it may wait for the passphrase
of the admin's key); a run past that was a ``subprocess.TimeoutExpired`` reported as "homelab: crashed ...
a homelab bug" (exit 70).  A stand-in ``age`` that never answers shows it (the real one cannot be made to
hang without a terminal); the limits are shortened for the test.
"""

from __future__ import annotations

import os
import time

import pytest

from homelab import secretstore as st
from homelab.cli import main
from homelab.errors import EXIT_BAD_INPUT

from . import secretlab


@pytest.fixture
def hanging_age(tmp_path, monkeypatch):
    bindir = tmp_path / "stand-in-bin"
    bindir.mkdir()
    (bindir / "age").write_text("#!/bin/sh\nexec sleep 30\n")  # exec: the process killed is the sleeper
    (bindir / "age").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setattr(st, "ENCRYPT_SECONDS", 0.3)
    monkeypatch.setattr(st, "DECRYPT_SECONDS", 0.3)
    return tmp_path


def test_an_age_that_never_finishes_is_a_secrets_error_naming_the_step(hanging_age):
    key = hanging_age / "id"
    key.write_text("not read: age never gets that far\n")
    t = time.monotonic()
    with pytest.raises(st.SecretsError) as e:
        st.encrypt(b"v", [st.Reader("host", "alpha", "ssh-ed25519 AAAA")])
    assert str(e.value) == "age could not encrypt: it did not finish within 0.3 s"
    with pytest.raises(st.SecretsError) as e:
        st.decrypt(b"x", str(key), what="secrets/x.age")
    assert str(e.value) == ("secrets/x.age: age could not decrypt it: no answer within 0.3 s (a passphrase not "
                            "typed?)")
    assert time.monotonic() - t < 10


def test_the_command_line_says_so_with_exit_2_and_writes_nothing(tmp_path, hanging_age, capsys):
    secretlab.need_tools()
    root, keys = secretlab.make(tmp_path / "s")
    # a lab with one secret (what age would be asked to decrypt does not matter: it never answers)
    (root / "secrets").mkdir()
    (root / "secrets" / "secrets.toml").write_text('[x]\nhosts = ["alpha"]\ncluster = false\nreaders = []\n')
    (root / "secrets" / "x.age").write_bytes(b"age-encryption.org/v1\n")
    before = {p.name: p.read_bytes() for p in (root / "secrets").iterdir()}
    assert main(["secrets", "rekey", "--root", str(root), "--identity", str(keys / "admin")]) == EXIT_BAD_INPUT
    out, err = capsys.readouterr()
    assert (out, err) == ("", "homelab: secrets/x.age: age could not decrypt it: no answer within 0.3 s (a passphrase "
                              "not typed?)\n")
    assert {p.name: p.read_bytes() for p in (root / "secrets").iterdir()} == before
