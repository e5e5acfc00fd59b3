"""``homelab vm`` leaves no private key behind: its work folder is private (0700) and removed on every way out.

The VM's programs are stand-ins on PATH (ssh-keygen makes a real-looking key pair, nix "builds", ssh
answers), so the real command runs end to end here without nixpkgs or KVM; ``TMPDIR`` points at a folder
of the test's own, which must be empty afterwards.  Each way out is taken for real: a build that fails, a
VM that dies while booting, and Ctrl-C (SIGINT sent to homelab by the stand-in build, as a terminal would).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from homelab.cli import EXIT_INTERRUPTED, EXIT_STEP_FAILED
from homelab.harness import VM_TESTS

REPO = Path(__file__).resolve().parent.parent

SSH_KEYGEN = """#!/bin/sh
# ssh-keygen -q -t ed25519 -N '' -C homelab-vm -f KEY
for a; do key=$a; done
printf 'PRIVATE KEY of the test\\n' > "$key"; chmod 600 "$key"
printf 'ssh-ed25519 AAAA homelab-vm\\n' > "$key.pub"
"""
SSH = """#!/bin/sh
# 'true' (is the VM up?) fails: nothing listens; poweroff and -O exit succeed
for a; do last=$a; done
[ "$last" = true ] && exit 255
exit 0
"""
# nix ... build <flake>#vm-<h> --out-link <dir>/result: records the work folder's mode, then does $NIX_STUB
NIX = """#!/bin/sh
for a; do prev=$last; last=$a; done
out=$last
work=$(dirname "$(dirname "$out")")
stat -c %a "$work" > "$STUB_LOG/mode"
ls "$work" > "$STUB_LOG/files"
case "$NIX_STUB" in
  fail) exit 1 ;;
  interrupt) kill -INT "$PPID"; exec sleep 30 ;;  # exec: the build homelab kills on Ctrl-C is the sleeper (a
    # sleep of its own would hold homelab's stdout open and the test would wait the 30 s for it)
  vm-dies)
    mkdir -p "$out/bin"
    printf '#!/bin/sh\\necho booting; exit 3\\n' > "$out/bin/run-tokiwa-vm"
    chmod +x "$out/bin/run-tokiwa-vm" ;;
esac
"""


@pytest.fixture
def stubs(tmp_path: Path) -> dict[str, str]:
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for name, text in (("ssh-keygen", SSH_KEYGEN), ("ssh", SSH), ("nix", NIX)):
        (bin_ / name).write_text(text)
        (bin_ / name).chmod(0o755)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    log = tmp_path / "log"
    log.mkdir()
    env = dict(os.environ, PATH=f"{bin_}:/usr/bin:/bin", TMPDIR=str(tmp), STUB_LOG=str(log),
               PYTHONDONTWRITEBYTECODE="1")
    return env


def vm(lab: Path, env: dict[str, str], how: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "homelab", "vm", "hosts/tokiwa", "--allow-tcg", "--boot-timeout",
                           "20", "--suite", str(VM_TESTS)], cwd=lab, env=dict(env, NIX_STUB=how),
                          capture_output=True, text=True, timeout=300,
                          # Ctrl-C reaches homelab whatever started the suite: a shell's background job (nohup, a
                          # CI runner) hands its children SIGINT ignored, and Python then never raises on it
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.mark.parametrize("how, rc", [("fail", EXIT_STEP_FAILED), ("vm-dies", EXIT_STEP_FAILED),
                                     ("interrupt", EXIT_INTERRUPTED)])
def test_the_work_folder_is_private_and_removed_on_every_way_out(lab_copy, stubs, how, rc):
    r = vm(lab_copy, stubs, how)
    assert r.returncode == rc, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    log = Path(stubs["STUB_LOG"])
    assert (log / "mode").read_text().strip() == "700"  # while it existed, only this user could enter it
    assert "id_ed25519" in (log / "files").read_text().split()  # ... and it held the key
    assert list(Path(stubs["TMPDIR"]).iterdir()) == [], "homelab vm left files in TMPDIR"


def test_a_workdir_the_user_named_is_kept(lab_copy, stubs, tmp_path):
    work = tmp_path / "mine"
    r = subprocess.run([sys.executable, "-m", "homelab", "vm", "hosts/tokiwa", "--allow-tcg", "--workdir", str(work),
                        "--suite", str(VM_TESTS)], cwd=lab_copy, env=dict(stubs, NIX_STUB="fail"),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == EXIT_STEP_FAILED, r.stdout + r.stderr
    assert (work / "id_ed25519").is_file()  # the user asked for this folder; homelab does not delete it
    assert stat.S_IMODE((work / "id_ed25519").stat().st_mode) == 0o600
