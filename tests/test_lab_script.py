"""``./lab``: usage without installing anything; per command, only the packages that command needs.

The script runs for real, in a scratch copy of the repository's top level, with a PATH of its own: the
basic tools it uses are linked in, and stand-ins record what would be installed (``apt-get``), answer
for Python (``python3``) and stand in for the venv's Python.  ``LAB_ROOTFS`` points the script's file
checks (nginx's stream module, sshd) at a scratch tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOOLS = ["bash", "sh", "sed", "dirname", "id", "cat", "printf", "rm", "mkdir", "chmod", "sort", "paste", "tee",
         "touch", "echo", "env", "ls", "test", "[", "mktemp"]
LOG_CMD = '#!/bin/sh\necho "$(basename "$0") $*" >> "$LAB_LOG"\n'
# apt-get records its arguments and whether policy-rc.d keeps services stopped while it installs
APT = LOG_CMD + '[ -e "$LAB_ROOTFS/usr/sbin/policy-rc.d" ] && echo "policy-rc.d present" >> "$LAB_LOG"\nexit 0\n'


@pytest.fixture
def box(tmp_path: Path):
    """(run, log): a scratch checkout with the script, and a function running ``./lab ARGS`` there."""
    top = tmp_path / "repo"
    top.mkdir()
    shutil.copy(REPO / "lab", top / "lab")
    (top / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    venv = top / ".venv/bin"
    venv.mkdir(parents=True)
    (venv / "python").write_text(LOG_CMD)
    (venv / "python").chmod(0o755)
    stamp = top / ".venv/.homelab-installed"
    stamp.write_text("test,mutate\n")
    os.utime(stamp, (2_000_000_000, 2_000_000_000))  # newer than pyproject.toml
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        if found:
            (bin_ / tool).symlink_to(found)
    (bin_ / "basename").symlink_to(shutil.which("basename"))
    (bin_ / "apt-get").write_text(APT)
    (bin_ / "apt-get").chmod(0o755)
    rootfs = tmp_path / "rootfs"
    (rootfs / "usr/sbin").mkdir(parents=True)
    log = tmp_path / "log"

    def run(*args: str, have: tuple[str, ...] = (), venv_module: bool = True) -> tuple[int, str, list[str]]:
        for name in ("python3", "nix-instantiate", "nginx", "iptables", "nft", "ip"):
            (bin_ / name).unlink(missing_ok=True)
        (bin_ / "python3").write_text(LOG_CMD + ("exit 0\n" if venv_module else
                                                 'case "$*" in *"-m venv"*) exit 1 ;; esac\nexit 0\n'))
        (bin_ / "python3").chmod(0o755)
        for name in have:
            (bin_ / name).write_text("#!/bin/sh\nexit 0\n")
            (bin_ / name).chmod(0o755)
        log.write_text("")
        r = subprocess.run(["bash", str(top / "lab"), *args], capture_output=True, text=True, timeout=60,
                           env={"PATH": str(bin_), "LAB_LOG": str(log), "LAB_ROOTFS": str(rootfs), "HOME": "/"})
        return r.returncode, r.stdout + r.stderr, log.read_text().splitlines()

    return run, rootfs


def installs(log: list[str]) -> set[str]:
    lines = [ln for ln in log if ln.startswith("apt-get install")]
    return {w for ln in lines for w in ln.split()[2:] if not w.startswith("-")}


@pytest.mark.parametrize("args", [["help"], ["--help"], ["-h"]])
def test_help_installs_nothing(box, args):
    run, _ = box
    rc, out, log = run(*args)
    assert rc == 0, out
    assert "./lab build" in out and "./lab test" in out
    assert log == []  # no apt-get, no python, no venv


def test_no_command_or_an_unknown_one_is_a_usage_mistake(box):
    run, _ = box
    assert run()[0] == 2
    rc, out, log = run("deploy")
    assert rc == 2 and "unknown command: deploy" in out and log == []


def test_build_installs_nix_only(box):
    run, _ = box
    rc, out, log = run("build", have=("nginx", "iptables", "nft", "ip"))
    assert rc == 0, out
    assert installs(log) == {"nix-bin"}
    assert log[-1] == "python -m homelab build"


def test_build_on_a_machine_without_nginx_or_sshd_still_installs_only_nix(box):
    run, _ = box
    rc, out, log = run("build", "hosts/yomogi")
    assert installs(log) == {"nix-bin"}, log
    assert "policy-rc.d present" not in log
    assert log[-1] == "python -m homelab build hosts/yomogi"


def test_build_with_everything_there_installs_nothing(box):
    run, _ = box
    rc, out, log = run("build", have=("nix-instantiate",))
    assert rc == 0 and not any(ln.startswith("apt-get") for ln in log), log


def test_build_help_installs_no_packages(box):
    run, _ = box
    rc, out, log = run("build", "--help")
    assert not any(ln.startswith("apt-get") for ln in log)
    assert log[-1] == "python -m homelab build --help"


def test_a_missing_venv_module_is_installed_when_the_venv_is_made(box, tmp_path):
    run, _ = box
    rc, out, log = run("build", have=("nix-instantiate",), venv_module=False)
    assert not any(ln.startswith("apt-get") for ln in log)  # the venv is there: nothing to make
    shutil.rmtree(tmp_path / "repo/.venv")
    rc, out, log = run("build", have=("nix-instantiate",), venv_module=False)
    assert installs(log) == {"python3-venv"}


def test_test_installs_the_test_tools_with_their_services_kept_stopped(box):
    run, rootfs = box
    rc, out, log = run("test", "-x")
    assert rc == 0, out
    assert installs(log) == {"nix-bin", "nginx-light", "libnginx-mod-stream", "iptables", "nftables", "iproute2",
                             "openssh-server", "age", "zsh", "fish", "strace"}
    install = next(i for i, ln in enumerate(log) if ln.startswith("apt-get install"))
    assert log[install + 1] == "policy-rc.d present"  # nginx and sshd do not start serving while installed
    assert not (rootfs / "usr/sbin/policy-rc.d").exists()  # and the policy is gone afterwards
    assert log[-1] == "python -m pytest -n auto -x"


def test_an_existing_policy_rc_d_is_left_alone(box):
    run, rootfs = box
    mine = rootfs / "usr/sbin/policy-rc.d"
    mine.write_text("#!/bin/sh\nexit 0\n")
    run("test")
    assert mine.read_text() == "#!/bin/sh\nexit 0\n"
