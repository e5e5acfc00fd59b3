"""``make_host_key`` (``homelab secrets hostkey``) and ``default_identities``, in-process with the real ssh-keygen
and age (issue 19 item 3: the CLI tests reach them only through ``python -m homelab``).

A new host key: exactly two files written (the public half in the lab, 0644, one line; the private half encrypted to
the admins only), the private half a working unencrypted OpenSSH key of that public half, no plaintext left behind,
no prompt on a terminal.  Refusals (a key the lab has, no admin key, no ssh-keygen, ssh-keygen failing) have their
whole message and write nothing.
"""

from __future__ import annotations

import glob
import os
import pty
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import attrs
import pytest

from homelab import secretstore as st
from homelab.model import PLACEHOLDER_KEY

from . import secretlab

PUB = "ssh_host_ed25519_key.pub"
REFUSED = ("hosts/{h}: ssh_host_ed25519_key.pub exists already; a new key means the machine must get it too "
           "(homelab install) and every secret it reads rekeyed: pass --force to replace it")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A lab whose alpha and beta have host keys in the lab and gamma has none, made once per module."""
    return secretlab.loaded(tmp_path_factory.mktemp("hostkey"), host_keys=("alpha", "beta"))


@pytest.fixture
def lab(base, tmp_path, monkeypatch):
    """A fresh copy of the lab; the current folder an empty scratch folder (nothing may be written there)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return secretlab.fresh(base, tmp_path, monkeypatch)


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def mode(p: Path) -> int:
    return os.stat(p).st_mode & 0o7777


def error(call, kind=st.SecretsError) -> str:
    with pytest.raises(kind) as e:
        call()
    return str(e.value)


def private_folders() -> set[str]:
    return set(glob.glob("/dev/shm/homelab-secret-*")) | set(glob.glob(os.path.join(
        os.environ.get("TMPDIR", "/tmp"), "homelab-secret-*")))


def bare(key: str) -> str:
    return " ".join(key.split()[:2])


def test_a_new_host_key_is_its_public_half_in_the_lab_and_its_private_half_encrypted_to_the_admins(lab, tmp_path):
    root, keys, lab_ = lab
    before, folders = files(root), private_folders()
    public = st.make_host_key(root, lab_, "gamma")
    assert re.fullmatch(r"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI[A-Za-z0-9+/]{43} root@gamma", public), public
    after = files(root)
    age = "secrets/host-keys/gamma.age"
    assert set(after) == set(before) | {f"hosts/gamma/{PUB}", age}
    assert {k: v for k, v in after.items() if k in before} == before  # nothing else touched
    assert after[f"hosts/gamma/{PUB}"] == (public + "\n").encode()
    assert mode(root / "hosts" / "gamma" / PUB) == 0o644
    assert mode(root / age) == 0o644  # encrypted: only the admins' keys open it
    assert after[age].startswith(st.AGE_MAGIC)
    assert st.recipient_tags(after[age]) == (st.key_tag(bare((keys / "admin.pub").read_text())),)
    private = st.reveal_host_key(root, "gamma", str(keys / "admin"))
    assert private.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----\n")
    assert private.endswith(b"-----END OPENSSH PRIVATE KEY-----\n")
    saved = tmp_path / "gamma_key"
    saved.write_bytes(private)
    saved.chmod(0o600)
    derived = subprocess.run(["ssh-keygen", "-y", "-P", "", "-f", str(saved)], capture_output=True, text=True,
                             stdin=subprocess.DEVNULL, timeout=30)
    assert derived.returncode == 0, derived.stderr  # no passphrase: the machine's sshd reads it as it is
    assert bare(derived.stdout) == bare(public)
    assert st.read_host_key(root, "gamma") == bare(public)
    assert os.listdir(".") == []  # nothing in the current folder
    assert private_folders() == folders  # the plaintext's folder is gone


def test_a_host_key_the_lab_has_is_replaced_only_with_force(lab):
    root, keys, lab_ = lab
    before = files(root)
    assert error(lambda: st.make_host_key(root, lab_, "alpha")) == REFUSED.format(h="alpha")
    assert error(lambda: st.make_host_key(root, lab_, "alpha", force=False)) == REFUSED.format(h="alpha")
    assert files(root) == before
    old = (root / "hosts" / "alpha" / PUB).read_text()
    public = st.make_host_key(root, lab_, "alpha", force=True)
    assert bare(public) != bare(old) and public.endswith(" root@alpha")
    assert (root / "hosts" / "alpha" / PUB).read_text() == public + "\n"
    made = files(root)
    assert set(made) == set(before) | {"secrets/host-keys/alpha.age"}
    assert error(lambda: st.make_host_key(root, lab_, "alpha")) == REFUSED.format(h="alpha")
    assert files(root) == made  # the new key and its encrypted half stay as they are


def test_a_host_key_for_a_lab_without_an_admin_key_is_refused(lab):
    root, _, lab_ = lab
    nobody = attrs.evolve(lab_, cluster=attrs.evolve(lab_.cluster, admin_keys=[PLACEHOLDER_KEY]))
    before, folders = files(root), private_folders()
    assert error(lambda: st.make_host_key(root, nobody, "gamma")) == (
        "cluster: admin_keys: no key age can encrypt to (an ssh-ed25519 or ssh-rsa key of yours; the placeholder "
        "is nobody's), so no admin could read, edit or rekey a secret")
    assert files(root) == before and private_folders() == folders


def test_without_ssh_keygen_nothing_is_written(lab, tmp_path, monkeypatch):
    root, _, lab_ = lab
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    before = files(root)
    assert error(lambda: st.make_host_key(root, lab_, "gamma"), st.AgeMissing) == (
        "ssh-keygen is not on PATH (Debian: openssh-client)")
    assert files(root) == before


def test_ssh_keygen_failing_is_reported_with_its_exit_code_and_message(lab, tmp_path, monkeypatch):
    """The real ssh-keygen, asked to save the key into a folder that does not exist."""
    root, _, lab_ = lab
    gone = tmp_path / "gone"
    monkeypatch.setattr(st, "private_dir", lambda: str(gone))
    before = files(root)
    assert error(lambda: st.make_host_key(root, lab_, "gamma")) == (
        f'ssh-keygen failed (exit 1): Saving key "{gone}/ssh_host_ed25519_key" failed: No such file or directory')
    assert files(root) == before and not gone.exists()


def test_a_host_key_is_made_without_asking_anything_on_a_terminal(lab):
    """Run where a terminal is the controlling one (as an admin's shell is): nothing appears on it, nothing is read
    from it (the key has no passphrase, given as such)."""
    root, _, lab_ = lab
    try:
        os.close(os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY))
    except OSError as e:
        pytest.skip(f"no pseudo-terminal to run under ({e})")
    pid, fd = pty.fork()
    if pid == 0:  # the child: a new session whose controlling terminal is the pty
        try:
            st.make_host_key(root, lab_, "gamma")
            os._exit(0)
        except BaseException:
            os._exit(3)
    shown = b""
    deadline = time.monotonic() + 60
    status = None
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # the child's side closed
                    chunk = b""
                shown += chunk
                if shown:  # something asked on the terminal: it would wait for an answer
                    break
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            status = None
    finally:
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    assert shown == b""
    assert status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert (root / "hosts" / "gamma" / PUB).is_file()


# ---------------------------------------------------------------- default_identities


def test_the_default_identities_are_homelab_age_identity_else_the_home_ssh_keys(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("HOMELAB_AGE_IDENTITY", raising=False)
    assert st.default_identities() == []
    ssh = home / ".ssh"
    ssh.mkdir()
    (ssh / "id_ecdsa").write_text("")
    (ssh / "id_ed25519.pub").write_text("")
    (ssh / "id_ed25519").mkdir()  # a folder: not a key
    assert st.default_identities() == []
    (ssh / "id_rsa").write_text("")
    assert st.default_identities() == [str(ssh / "id_rsa")]
    (ssh / "id_ed25519").rmdir()
    (ssh / "id_ed25519").write_text("")
    assert st.default_identities() == [str(ssh / "id_ed25519"), str(ssh / "id_rsa")]
    monkeypatch.setenv("HOMELAB_AGE_IDENTITY", "")  # empty: not set
    assert st.default_identities() == [str(ssh / "id_ed25519"), str(ssh / "id_rsa")]
    monkeypatch.setenv("HOMELAB_AGE_IDENTITY", "/keys/one::/keys/with space:")
    assert st.default_identities() == ["/keys/one", "/keys/with space"]  # taken as given, empty parts left out
    monkeypatch.setenv("HOMELAB_AGE_IDENTITY", "/keys/only")
    assert st.default_identities() == ["/keys/only"]
