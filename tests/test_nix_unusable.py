"""nix installed but unusable is a missing permission or service (exit 4, with how to fix it), not a homelab bug.

Every case runs the real nix (2.8 here) under conditions that make it unusable, never a mock:

* a daemon that is not there: ``NIX_REMOTE=unix://<socket>`` with no socket, or a socket nobody listens on,
  for a command that needs the store (``nix flake metadata`` copies the flake into it);
* a user who may not use the store: nix run as ``nobody`` with ``NIX_STATE_DIR`` a folder root owns (nix
  cannot create its profiles there), the way a non-root user meets a root-owned single-user /nix.

A file of the lab that nix may not read is still nix's evaluation error, not "nix unusable".
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from homelab.harness import EXAMPLES
from homelab.pynix_eval import Nix, NixEvalError, NixUnusable

from .conftest import REPO

DAEMON_FIX = ("start the nix daemon (systemctl start nix-daemon; on Debian the nix-setup-systemd package sets it up) "
              "and make sure this user may use its socket (Debian: adduser $USER nix-users), or run as root with "
              "the store used directly (unset NIX_REMOTE)")
USER_FIX = ("run homelab as a user the nix daemon serves (Debian: apt-get install nix-setup-systemd, then adduser "
            "$USER nix-users and log in again), or as the user who owns /nix (root on Debian's nix-bin)")


def _flake(tmp: Path) -> Path:
    d = tmp / "flake"
    d.mkdir()
    (d / "flake.nix").write_text("{ outputs = _: { }; }\n")
    return d


def test_no_daemon_socket_is_nix_unusable_with_the_fix(nix, tmp_path):
    sock = tmp_path / "daemon-socket"
    broken = Nix(timeout=60, extra_env={"NIX_REMOTE": f"unix://{sock}"})
    with pytest.raises(NixUnusable) as e:
        broken.flake(["flake", "metadata", "--json", f"path:{_flake(tmp_path)}"])
    assert (e.value.message, e.value.fix) == (
        f"nix cannot reach the nix daemon: cannot connect to socket at '{sock}': No such file or directory",
        DAEMON_FIX)


def test_a_socket_nobody_listens_on_is_nix_unusable(nix, tmp_path):
    sock = tmp_path / "socket"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock))  # bound, never listening: connect() is refused
        broken = Nix(timeout=60, extra_env={"NIX_REMOTE": f"unix://{sock}"})
        with pytest.raises(NixUnusable) as e:
            broken.flake(["flake", "metadata", "--json", f"path:{_flake(tmp_path)}"])
    assert e.value.message == f"nix cannot reach the nix daemon: cannot connect to socket at '{sock}': Connection refused"


def _as_nobody() -> list[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root, to run nix as another user (nobody)")
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux) to run nix as another user")
    nobody = pwd.getpwnam("nobody")
    return ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]


@pytest.fixture
def shared_tmp():
    """A folder user nobody can read (pytest's tmp_path is root's alone), removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix="homelab-nobody-", dir="/tmp"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _nobody_env(tmp: Path, **extra: str) -> dict[str, str]:
    state = tmp / "nix-state"  # root's, 0755: nobody cannot create nix's profiles in it
    state.mkdir(exist_ok=True)
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    shutil.chown(home, "nobody")
    return {"PATH": os.environ["PATH"], "HOME": str(home), "PYTHONPATH": str(REPO), "NIX_STATE_DIR": str(state),
            "HOMELAB_CACHE_DIR": str(home / "cache"), **extra}


def test_build_by_a_user_who_may_not_use_the_store_is_exit_4_with_the_fix(nix, shared_tmp):
    who = _as_nobody()
    lab = shared_tmp / "lab"
    shutil.copytree(EXAMPLES / "seed" / "hosts", lab / "hosts", ignore=shutil.ignore_patterns("__pycache__"))
    for p in [lab, *lab.rglob("*")]:
        shutil.chown(p, "nobody")
    env = _nobody_env(shared_tmp)
    r = subprocess.run([*who, sys.executable, "-m", "homelab", "build"], cwd=lab, env=env, capture_output=True,
                       text=True, timeout=300)
    state = env["NIX_STATE_DIR"]
    said = [line for line in r.stderr.splitlines() if ": warning: " not in line]  # the seed lab's own warnings
    assert (r.returncode, r.stdout, said) == (4, "", [
        f"homelab: build needs nix, and this user (nobody) may not use the Nix store: creating directory "
        f"'{state}/profiles': Permission denied; nothing was written",
        f"  to fix: {USER_FIX}"])
    assert not (lab / "modules").exists() and not (lab / "hosts" / "yomogi" / "default.nix").exists()


def test_a_lab_file_nix_may_not_read_stays_an_evaluation_error(nix, shared_tmp):
    """The denial is on the user's file, not on nix's own folders: nix works, the file is the problem."""
    who = _as_nobody()
    secret = shared_tmp / "secret.nix"
    secret.write_text("{ }\n")
    secret.chmod(0o600)  # root's alone
    code = ("import json; from homelab.pynix_eval import Nix\n"
            "try:\n"
            f"    Nix(timeout=60).eval_expr('import {secret}')\n"
            "except Exception as e:\n"
            "    print(json.dumps([type(e).__name__, e.message]))\n")
    # through a daemon socket that is not there: pure evaluation never opens the store, so nix itself works
    env = _nobody_env(shared_tmp, NIX_REMOTE=f"unix://{shared_tmp}/no-socket")
    r = subprocess.run([*who, sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    kind, message = json.loads(r.stdout)
    assert kind == NixEvalError.__name__
    assert message.splitlines()[0] == f"error: opening file '{secret}': Permission denied"
