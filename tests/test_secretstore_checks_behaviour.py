"""Exact behaviour of homelab/secretstore.py's checks: what the build reports about a lab's secrets
(lab_problems), what `homelab secrets status` shows, and how the lab's files are read (host keys, the record,
age headers), each refusal with its whole message (issue 19 item 3: mutation survivors).

Real age and ssh-keygen where keys or encryption are involved (tests/secretlab.py makes throwaway keys); an age
header is written by hand only where the test is about parsing one age itself would never write.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import attrs
import pytest

from homelab import Secret
from homelab import secretstore as st
from homelab.errors import Problem
from homelab.load import load_or_raise
from homelab.model import PLACEHOLDER_KEY

from . import secretlab
from .conftest import REPO

PUB = "ssh_host_ed25519_key.pub"


def _pub(keys: Path, who: str) -> str:
    return " ".join((keys / f"{who}.pub").read_text().split()[:2])


def _error(call) -> str:
    with pytest.raises(st.SecretsError) as e:
        call()
    return str(e.value)


def _decode_error(data: bytes) -> str:
    """Python's own message for bytes that are not UTF-8 (what the user is shown after "cannot be read: ")."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        return str(e)
    raise AssertionError(f"{data!r} is UTF-8")


NOT_UTF8 = _decode_error(b"\xff")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A lab whose hosts alpha and beta have a host key in the lab and gamma has none."""
    return secretlab.loaded(tmp_path_factory.mktemp("s"), host_keys=("alpha", "beta"))


# ---------------------------------------------------------------- lab_problems: what the build reports


@attrs.frozen
class Svc:
    """A role asking for four secrets (sorted by name, so each kind of problem comes before the next)."""

    a: Secret = Secret("a-unset")
    b: Secret = Secret("b-garbled")
    c: Secret = Secret("c-not-for-it")
    d: Secret = Secret("d-readable")


def test_lab_problems_names_every_secret_a_host_cannot_read_with_its_fix(tmp_path):
    """Hosts in order: one whose host key is a folder, one without a key, one whose key is not UTF-8, one with a
    good key whose secrets are unset, not an age file, encrypted to the admin only, and readable. Every host and
    every secret is reported (one problem never hides the next), each with its whole message."""
    secretlab.need_tools()
    root, keys = tmp_path / "lab", tmp_path / "keys"
    admin = secretlab.keygen(keys / "admin", "admin@laptop")
    ok = secretlab.keygen(keys / "h-ok", "root@h-ok")
    (root / "hosts" / "h-dir" / PUB).mkdir(parents=True)
    (root / "hosts" / "h-bytes").mkdir(parents=True)
    (root / "hosts" / "h-bytes" / PUB).write_bytes(b"\xffssh-ed25519 AAAA")
    (root / "hosts" / "h-ok").mkdir(parents=True)
    (root / "hosts" / "h-ok" / PUB).write_text(ok + "\n")
    (root / "secrets").mkdir()
    (root / "secrets" / "b-garbled.age").write_bytes(b"not age at all\n")
    (root / "secrets" / "c-not-for-it.age").write_bytes(st.encrypt(b"v", [st.Reader("admin", "a", admin)]))
    (root / "secrets" / "d-readable.age").write_bytes(
        st.encrypt(b"v", [st.Reader("admin", "a", admin), st.Reader("host", "h-ok", " ".join(ok.split()[:2]))]))
    hosts = [types.SimpleNamespace(hostname=h, roles=[Svc()]) for h in ("h-dir", "h-nokey", "h-bytes", "h-ok")]
    lab_ = types.SimpleNamespace(hosts=hosts, cluster=None)

    def no_key(name, field):
        return Problem("hosts/h-nokey", field, (
            f"h-nokey decrypts secret {name!r} with its SSH host key, and the lab has none "
            f"(hosts/h-nokey/{PUB}); make it with `homelab secrets hostkey hosts/h-nokey` (a new machine) or copy "
            "the machine's (ssh-keyscan -t ed25519), then `homelab secrets rekey`"))

    assert st.lab_problems(root, lab_) == [
        Problem("hosts/h-dir", PUB, "cannot be read: Is a directory"),
        no_key("a-unset", "Svc.a"), no_key("b-garbled", "Svc.b"), no_key("c-not-for-it", "Svc.c"),
        no_key("d-readable", "Svc.d"),
        Problem("hosts/h-bytes", PUB, f"cannot be read: {NOT_UTF8}"),
        Problem("hosts/h-ok", "Svc.a", "secret 'a-unset' is not set (secrets/a-unset.age is missing); set it: "
                "printf %s \"$VALUE\" | homelab secrets set a-unset --host h-ok"),
        Problem("hosts/h-ok", "Svc.b", "secrets/b-garbled.age: not an age v1 file"),
        Problem("hosts/h-ok", "Svc.c", "h-ok cannot read secret 'c-not-for-it': secrets/c-not-for-it.age is not "
                f"encrypted to its host key (hosts/h-ok/{PUB}); add it: homelab secrets set c-not-for-it --host "
                "h-ok (keeps the other readers), or `homelab secrets rekey` after a host key changed"),
    ]


# ---------------------------------------------------------------- reading a host key


def test_read_host_key_takes_the_key_with_or_without_its_comment(lab):
    root, keys, _ = lab
    alpha = _pub(keys, "alpha")
    assert st.read_host_key(root, "alpha") == alpha
    (root / "hosts" / "beta" / PUB).write_text(f"  {alpha}\n")  # no comment, spaces around
    try:
        assert st.read_host_key(root, "beta") == alpha
    finally:
        (root / "hosts" / "beta" / PUB).write_text(_pub(keys, "beta") + " root@beta\n")
    assert st.read_host_key(root, "gamma") is None  # the lab has none
    assert st.read_host_key(root, "nowhere") is None  # no such host folder


def test_read_host_key_refusals_are_named_with_the_file(tmp_path):
    d = tmp_path / "hosts" / "h"
    d.mkdir(parents=True)
    path = f"hosts/h/{PUB}"
    wrong_type = (f"{path}: not an ssh-ed25519 or ssh-rsa public key (age encrypts to those only); copy the "
                  "machine's /etc/ssh/ssh_host_ed25519_key.pub")
    cases = {
        b"": wrong_type,
        b"ssh-ed25519\n": wrong_type,  # the type without the key
        b"ecdsa-sha2-nistp256 AAAAE2VjZHNh root@h\n": wrong_type,
        b"\xffssh-ed25519 AAAA\n": f"{path}: cannot be read: {NOT_UTF8}",
    }
    rsa_blob = "AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7"  # an ssh-rsa key's blob (cut short)
    cut = f"{path}: not a whole ssh-ed25519 key (its base64 does not decode to one; a line cut short or mistyped?); "
    cut += "copy the machine's /etc/ssh/ssh_host_ed25519_key.pub"
    cases.update({
        b"ssh-ed25519 AAAA root@h\n": cut,  # base64, three zero bytes
        f"ssh-ed25519 {rsa_blob} root@h\n".encode(): cut,  # another type's key
        b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI!Gh2 root@h\n": cut,  # a stray character in the base64
        b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5A root@h\n": cut,  # not even base64 (one strict decode says all three)
    })
    got = {}
    for text, _ in cases.items():
        (d / PUB).write_bytes(text)
        got[text] = _error(lambda: st.read_host_key(tmp_path, "h"))
    assert got == cases
    (d / PUB).unlink()
    (d / PUB).mkdir()
    assert _error(lambda: st.read_host_key(tmp_path, "h")) == f"{path}: cannot be read: Is a directory"


# ---------------------------------------------------------------- reading the record


def test_read_record_reads_each_table_with_its_defaults(tmp_path):
    assert st.read_record(tmp_path) == {}
    (tmp_path / "secrets").mkdir()
    (tmp_path / st.RECORD).write_text('[x]\n\n[y]\nhosts = ["b", "a"]\ncluster = true\nreaders = ["admin é"]\n',
                                      encoding="utf-8")
    assert st.read_record(tmp_path) == {"x": st.Entry("x"), "y": st.Entry("y", ("a", "b"), True, ("admin é",))}


def test_read_record_refuses_what_is_not_a_secrets_table_with_its_whole_message(tmp_path):
    import tomllib
    (tmp_path / "secrets").mkdir()
    rec = "secrets/secrets.toml"
    kinds = "hosts must be a list of host names, cluster true or false"
    cases = {
        '["Bad Name"]\n': f"{rec}: [Bad Name]: not a secret's table",
        "x = 1\n": f"{rec}: [x]: not a secret's table",
        "[x]\nhosts = [1]\n": f"{rec}: [x]: {kinds}",
        '[x]\nhosts = "ab"\n': f"{rec}: [x]: {kinds}",
        '[x]\ncluster = "yes"\n': f"{rec}: [x]: {kinds}",
        '[x]\nreaders = "abc"\n': f"{rec}: [x]: {kinds}",
        "[x]\nreaders = [1]\n": f"{rec}: [x]: {kinds}",
    }
    bad_toml = "[x\n"
    try:
        tomllib.loads(bad_toml)
    except tomllib.TOMLDecodeError as e:
        cases[bad_toml] = f"{rec}: cannot be read: {e}"
    got = {}
    for text in cases:
        (tmp_path / st.RECORD).write_text(text)
        got[text] = _error(lambda: st.read_record(tmp_path))
    assert got == cases
    (tmp_path / st.RECORD).write_bytes(b"\xff")
    assert _error(lambda: st.read_record(tmp_path)) == f"{rec}: cannot be read: {NOT_UTF8}"


def test_lab_files_are_read_as_utf8_whatever_the_locale(tmp_path):
    """A non-ASCII key comment or reader name (an admin called josé) reads the same in a C locale."""
    (tmp_path / "secrets").mkdir()
    (tmp_path / st.RECORD).write_text('[x]\nhosts = ["h"]\nreaders = ["admin josé@laptop SHA256:x"]\n',
                                      encoding="utf-8")
    (tmp_path / "hosts" / "h").mkdir(parents=True)
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGhvbWVsYWItcGxhY2Vob2xkZXItcmVwbGFjZS1tZSEh"
    (tmp_path / "hosts" / "h" / PUB).write_text(f"{key} root@hôte\n", encoding="utf-8")
    code = ("import sys; from pathlib import Path; from homelab import secretstore as st; r = Path(sys.argv[1]); "
            "print(ascii(st.read_record(r)['x'].readers), ascii(st.read_host_key(r, 'h')))")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO), "LC_ALL": "C",
           "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True,
                       timeout=60)
    assert (p.returncode, p.stderr) == (0, "")
    assert p.stdout == f"{ascii(('admin josé@laptop SHA256:x',))} {ascii(key)}\n"


# ---------------------------------------------------------------- age headers


def test_recipient_tags_reads_armored_files_as_age_writes_them(lab):
    root, keys, _ = lab
    alpha, admin = _pub(keys, "alpha"), _pub(keys, "admin")
    armored = subprocess.run([st.age_binary(), "--encrypt", "--armor", "-r", alpha, "-r", admin], input=b"v",
                             capture_output=True, check=True).stdout
    assert armored.startswith(st.ARMOR_BEGIN)
    want = (st.key_tag(alpha), st.key_tag(admin))
    assert st.recipient_tags(b"\n \n" + armored + b"\n\n") == want  # blank lines around it: still armored
    lines = armored.strip().split(b"\n")
    body = lines[1:-1]
    assert _error(lambda: st.recipient_tags(b"\n".join(lines[:-1]))) == "an armored age file without its end line"
    broken = b"\n".join([lines[0], body[0][:10] + b"!" + body[0][10:], *body[1:], lines[-1]])
    assert _error(lambda: st.recipient_tags(broken)) == "an armored age file whose body is not base64"
    assert _error(lambda: st.recipient_tags(b"age-encryption.org/v2\n--- x\n")) == "not an age v1 file"
    assert _error(lambda: st.recipient_tags(st.AGE_MAGIC + b"-> ssh-ed25519 abc def\nAAAA\n")) == (
        "the age header has no end")


def test_recipient_tags_splits_stanzas_the_way_age_does(lab):
    """Only ssh-ed25519 and ssh-rsa stanzas with a tag count; arguments are split on single spaces (a tab is part
    of the stanza's type, so that stanza is no ssh one), bytes that are not ASCII never stop the reading."""
    header = st.AGE_MAGIC + b"\n".join([
        b"-> X25519 notanssh", b"AAAA",
        b"-> ssh-rsa RSATAG", b"AAAA",  # ssh-rsa: the tag alone, no ephemeral share
        b"-> ssh-ed25519", b"AAAA",  # no tag
        b"-> ssh-ed25519\tTABTAG share", b"AAAA",
        b"-> ssh-ed25519 \xc3\xa9 share", b"AAAA",
        b"-> ssh-ed25519 EDTAG share", b"AAAA",
        b"--- mac", b"payload \xff"])
    assert st.recipient_tags(header) == ("RSATAG", "\ufffd\ufffd", "EDTAG")


# ---------------------------------------------------------------- status


def test_status_shows_unset_and_stale_secrets_exactly(tmp_path):
    """tailscale-auth-key is needed by alpha and beta and not set; db is beta's, encrypted to beta and an old
    admin key only (the lab's admin is missing, the old key is unknown); ci is the cluster's, for the admin."""
    secretlab.need_tools()
    root, keys = secretlab.make(tmp_path, host_keys=("alpha", "beta"))
    lab_, _ = load_or_raise(root, secrets=False)
    old = secretlab.keygen(tmp_path / "old" / "admin", "old@laptop")
    beta = st.Reader("host", "beta", _pub(keys, "beta"))
    st.set_secret(root, lab_, "db", b"v", hosts=["beta"])
    (root / "secrets" / "db.age").write_bytes(st.encrypt(b"v", [st.Reader("admin", "old", old), beta]))
    st.set_secret(root, lab_, "ci", b"v", cluster=True)
    size = {n: (root / "secrets" / f"{n}.age").stat().st_size for n in ("db", "ci")}
    assert st.status(root, lab_) == [
        st.Status("ci", (), True, ("admin admin@laptop",), 0, (), size["ci"], ()),
        st.Status("db", ("beta",), False, ("host beta",), 1, ("admin admin@laptop",), size["db"], ()),
        st.Status("tailscale-auth-key", (), False, (), 0, ("admin admin@laptop", "host alpha", "host beta"), 0,
                  ("alpha", "beta")),
    ]


# ---------------------------------------------------------------- admins, names, hosts


def test_an_admin_key_that_is_no_key_is_refused_before_age_runs(lab):
    """A line of Cluster.admin_keys cut short or mistyped passes the model's pattern, and the model refuses it
    (tests/test_model_behaviour.py); a Cluster made with validators off still meets every secrets command's own
    check (status included, which once crashed on it), which names it instead of failing inside age or base64."""
    root, keys, lab_ = lab
    admin = _pub(keys, "admin")
    for i, bad in ((1, "ssh-ed25519 AAAAB"), (1, "ssh-ed25519 AAAA"), (1, "ssh-rsa " + admin.split()[1])):
        with attrs.validators.disabled():
            broken = attrs.evolve(lab_, cluster=attrs.evolve(lab_.cluster, admin_keys=[admin, f"{bad} x@y"]))
        want = (f"cluster: admin_keys[{i}]: {bad!r} is not a whole {bad.split()[0]} key (its base64 does not decode "
                "to one; a line cut short or mistyped?), so age cannot encrypt to it; copy the whole line of the "
                "admin's public key again (e.g. ~/.ssh/id_ed25519.pub)")
        assert [_error(lambda: st.admin_readers(broken)), _error(lambda: st.status(root, broken)),
                _error(lambda: st.set_secret(root, broken, "never", b"v", hosts=["alpha"]))] == [want] * 3
    assert not (root / "secrets" / "never.age").exists()


def test_admin_readers_are_the_keys_age_encrypts_to_in_order(lab):
    root, keys, lab_ = lab
    admin = _pub(keys, "admin")
    rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7"
    cluster = attrs.evolve(lab_.cluster, admin_keys=[
        PLACEHOLDER_KEY, "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY= e@x", f"{admin} admin@laptop", rsa])
    assert st.admin_readers(attrs.evolve(lab_, cluster=cluster)) == [
        st.Reader("admin", "admin@laptop", admin), st.Reader("admin", "admin_keys[3]", rsa)]


def test_a_bad_secret_name_and_an_unknown_host_are_refused_with_their_whole_message(lab):
    root, _, lab_ = lab
    rule = "(lower-case letters, digits, '.', '_' and '-'; up to 63)"
    assert _error(lambda: st.reveal(root, "Bad Name")) == f"'Bad Name' is not a secret name {rule}"
    assert _error(lambda: st.set_secret(root, lab_, "x", b"v", hosts=["alpha", "nope"])) == (
        "--host nope: not a host of this lab (hosts: alpha, beta, gamma)")
    assert _error(lambda: st.make_host_key(root, lab_, "nope")) == (
        "--host nope: not a host of this lab (hosts: alpha, beta, gamma)")
    assert not (root / "secrets" / "x.age").exists()


# ---------------------------------------------------------------- reveal


def test_reveal_names_the_file_an_admin_key_cannot_read(lab):
    root, keys, lab_ = lab
    st.set_secret(root, lab_, "reveal-me", b"the value", hosts=["alpha"])
    assert st.reveal(root, "reveal-me", identity=str(keys / "admin")) == b"the value"
    wrong = str(keys / "gamma")
    assert _error(lambda: st.reveal(root, "reveal-me", identity=wrong)) == (
        f"secrets/reveal-me.age: none of your keys ({wrong}) is among its readers; an admin who can read it runs "
        "`homelab secrets rekey`, or pass --identity")


def test_reveal_host_key_names_the_missing_or_unreadable_key(lab):
    root, keys, lab_ = lab
    assert _error(lambda: st.reveal_host_key(root, "gamma", str(keys / "admin"))) == (
        "hosts/gamma: no host key made by homelab (secrets/host-keys/gamma.age); make one with "
        "`homelab secrets hostkey hosts/gamma`")
    public = st.make_host_key(root, lab_, "gamma")
    try:
        private = st.reveal_host_key(root, "gamma", str(keys / "admin"))
        assert private.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----\n")
        assert public.startswith("ssh-ed25519 ")
        wrong = str(keys / "alpha")
        assert _error(lambda: st.reveal_host_key(root, "gamma", wrong)) == (
            f"secrets/host-keys/gamma.age: none of your keys ({wrong}) is among its readers; an admin who can read "
            "it runs `homelab secrets rekey`, or pass --identity")
    finally:
        (root / "hosts" / "gamma" / PUB).unlink()
        (root / st.host_key_age("gamma")).unlink()


# ---------------------------------------------------------------- the plaintext's private folder


def test_private_dir_is_a_new_0700_folder_on_dev_shm():
    if not (os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK)):
        pytest.skip("no writable /dev/shm on this machine")
    p = st.private_dir()
    try:
        assert os.path.dirname(p) == "/dev/shm"
        assert re.fullmatch(r"homelab-secret-[a-z0-9_]{8}", os.path.basename(p)), p
        assert os.stat(p).st_mode & 0o777 == 0o700
        assert os.listdir(p) == []
    finally:
        os.rmdir(p)


def test_private_dir_falls_back_to_the_temporary_folder_without_a_writable_dev_shm(monkeypatch, tmp_path):
    """A machine whose /dev/shm is read-only, then one without it (the two checks os makes, answered as there)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    access, isdir = os.access, os.path.isdir
    monkeypatch.setattr(os, "access", lambda p, m, *a, **k: (False if p == "/dev/shm" and m & os.W_OK
                                                            else access(p, m, *a, **k)))
    read_only = st.private_dir()
    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(os.path, "isdir", lambda p: False if p == "/dev/shm" else isdir(p))
    missing = st.private_dir()
    for p in (read_only, missing):
        assert os.path.dirname(p) == str(tmp_path)
        assert re.fullmatch(r"homelab-secret-[a-z0-9_]{8}", os.path.basename(p)), p
        assert os.stat(p).st_mode & 0o777 == 0o700
