"""What a person expects of a command line (issue 18, item 9): ``--version``; ``init`` makes the lab a git
repository with its files added; the lab README names ``homelab deploy`` and ``homelab install``; messages name
the command that was run; a host by its bare name; ``--quiet``; each command's ``--help`` lists its own exit
codes, from the one table."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import homelab
from homelab.cli import ALWAYS, COMMANDS, EXIT_CODES, EXITS_OF, build_parser, main
from homelab.init import files_of

from .conftest import REPO

SCRIPT = Path(sys.executable).with_name("homelab")  # the console script pip installed beside this Python
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def console_script() -> Path:
    if not SCRIPT.is_file():
        pytest.skip(f"homelab's console script is not installed beside {sys.executable} (pip install -e .)")
    return SCRIPT


def run(argv: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO), **env})


# ---------------------------------------------------------------- --version


def test_version_is_the_packages(tmp_path):
    assert homelab.__version__ == PYPROJECT["version"]
    r = run([str(console_script()), "--version"], tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (0, f"homelab {PYPROJECT['version']}\n", "")


# ---------------------------------------------------------------- the program's name in what it says


def test_messages_name_the_command_that_was_run(lab_copy):
    (lab_copy / "modules" / "k8s" / "ceph.nix").unlink()  # a generated file missing: the lab is out of date
    r = run([str(console_script()), "build", "--check"], lab_copy)
    assert r.returncode == 1 and r.stdout.splitlines()[0] == "out of date (run `homelab build`):"
    r = run([sys.executable, "-m", "homelab", "build", "--check"], lab_copy)
    python = Path(sys.executable).name
    assert r.returncode == 1 and r.stdout.splitlines()[0] == f"out of date (run `{python} -m homelab build`):"
    r = run([str(console_script()), "build", "--help"], lab_copy)
    assert r.stdout.startswith("usage: homelab build ") and "\nexample: homelab build hosts/yomogi\n" in r.stdout
    r = run([sys.executable, "-m", "homelab", "graph", "--format", "nope"], lab_copy)
    assert r.returncode == 2 and r.stderr.startswith(f"usage: {python} -m homelab graph ")


# ---------------------------------------------------------------- a host by its bare name


def test_a_host_by_its_bare_name_as_well_as_its_folder(lab_copy, nix, capsys):
    from homelab.compile import compile_lab
    from homelab.load import load_or_raise

    assert main(["build", "yomogi", "--root", str(lab_copy)]) == 0
    n = len(compile_lab(load_or_raise(lab_copy)[0]).files_of("yomogi")) + 1  # its modules, entry file, hosts/lab.nix
    assert capsys.readouterr().out.splitlines()[0].startswith(f"1 host: wrote 0, unchanged {n};")
    r = run([sys.executable, "-m", "homelab", "expect", "tokiwa", "yomogi", "--json"], lab_copy / "modules")
    assert r.returncode == 0, r.stderr
    by_name = r.stdout
    r = run([sys.executable, "-m", "homelab", "expect", str(lab_copy / "hosts/tokiwa"), "../hosts/yomogi",
             "--json"], lab_copy / "modules")
    assert (r.returncode, r.stdout) == (0, by_name)
    assert main(["build", "pi1", "--root", str(lab_copy)]) == 2
    assert capsys.readouterr().err == (f"homelab: pi1: no such host in the lab at {lab_copy} (no hosts/pi1/host.py; "
                                       "its hosts: hanaakari, tokiwa, yomogi)\n")


# ---------------------------------------------------------------- --quiet


def test_quiet_leaves_out_the_list_of_files_and_the_progress(lab_copy, nix, capsys):
    (lab_copy / "modules" / "k8s" / "ceph.nix").unlink()
    for argv in (["build", "--quiet"], ["-q", "build"]):
        (lab_copy / "modules" / "k8s" / "ceph.nix").unlink(missing_ok=True)
        assert main([*argv, "--root", str(lab_copy)]) == 0
        out = capsys.readouterr().out.splitlines()
        assert len(out) == 1 and out[0].startswith("3 hosts: wrote 1, unchanged "), out
    assert main(["build", "--root", str(lab_copy)]) == 0  # and without: the summary alone, nothing was written
    (lab_copy / "modules" / "k8s" / "ceph.nix").unlink()
    assert main(["build", "--root", str(lab_copy)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "  wrote modules/k8s/ceph.nix"


# ---------------------------------------------------------------- each command's own exit codes


def exit_codes(help_text: str) -> dict[int, str]:
    section = help_text.split("\nexit codes:\n", 1)[1]
    return {int(m[1]): m[2] for m in re.finditer(r"^\s+(\d+)  (.*)$", section, re.M)}


def test_each_commands_help_lists_its_own_exit_codes_from_the_one_table():
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    table = dict(EXIT_CODES)
    assert set(sub.choices) == set(COMMANDS) == set(EXITS_OF)
    for name, parser in sub.choices.items():
        listed = exit_codes(parser.format_help())
        assert set(listed) == set(EXITS_OF[name]) | set(ALWAYS), name
        assert set(listed) <= set(table), name  # every code is one of the table's
        assert {c: listed[c] for c in ALWAYS} == {c: table[c] for c in ALWAYS}
    assert set(exit_codes(sub.choices["build"].format_help())) == {0, 1, 2, 3, 4, 70, 130}
    assert set(exit_codes(sub.choices["expect"].format_help())) == {0, 2, 70, 130}
    assert set(exit_codes(sub.choices["vm"].format_help())) == {0, 1, 2, 4, 5, 70, 130}
    assert exit_codes(build_parser().format_help()) == table  # `homelab --help`: the whole table


def test_the_readmes_table_of_the_operations_is_their_help():
    readme = (REPO / "README.md").read_text()
    rows = {m[1]: [c.strip() for c in m[2].split(" | ")]
            for m in re.finditer(r"^\| `(deploy|verify|wake|sleep)` \| (.+) \|$", readme, re.M)}
    assert set(rows) == {"deploy", "verify", "wake", "sleep"}
    header = re.search(r"^\| command \| 0 \| (.+) \|$", readme, re.M)[0].strip("| ").split(" | ")[1:]
    for name, cells in rows.items():
        assert dict(zip(map(int, header), cells)) == EXITS_OF[name], name


# ---------------------------------------------------------------- init: git, and the README it writes


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def need_git():
    if shutil.which("git") is None:
        pytest.skip("git is not installed")


def test_init_makes_the_lab_a_git_repository_with_its_files_added(tmp_path, need_git, capsys):
    root = tmp_path / "mylab"
    assert main(["init", str(root)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert git(root, "rev-parse", "--show-toplevel").strip() == str(root)
    assert git(root, "ls-files").split() == sorted(files_of("starter"))
    assert git(root, "status", "--porcelain").splitlines() == [f"A  {rel}" for rel in sorted(files_of("starter"))]
    assert "git: made it a git repository and added its 9 files (flakes see only tracked files); nothing " \
           "committed" in out
    assert out[-1] == f"  cd {root} && homelab build && git add -A && homelab test"


def test_init_inside_a_git_repository_adds_to_it(tmp_path, need_git, capsys):
    git(tmp_path, "init", "-q")
    root = tmp_path / "labs" / "home"
    assert main(["init", "--quiet", str(root)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert not (root / ".git").exists()
    assert git(tmp_path, "ls-files").split() == sorted(f"labs/home/{rel}" for rel in files_of("starter"))
    assert out == [f"homelab init: a new lab in {root} (starter example)",  # --quiet: no list of files
                   f"git: added its 9 files to the git repository at {tmp_path} (flakes see only tracked files); "
                   "nothing committed", "next:",
                   "  replace hosts/control/hardware-configuration.nix with the machine's own "
                   "(nixos-generate-config --show-hardware-config)",
                   "  replace hosts/worker1/hardware-configuration.nix with the machine's own "
                   "(nixos-generate-config --show-hardware-config)",
                   f"  cd {root} && homelab build && git add -A && homelab test"]


def test_init_without_git_says_so(tmp_path, monkeypatch, capsys):
    bin_ = tmp_path / "bin"  # a PATH without git
    bin_.mkdir()
    monkeypatch.setenv("PATH", str(bin_))
    root = tmp_path / "mylab"
    assert main(["init", str(root)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert not (root / ".git").exists()
    assert ("git: git is not installed, so the lab is not a git repository; once it is there, run `git init && git "
            "add -A` in the lab (a flake in a git repository sees only the files git tracks)") in out
    assert out[-1] == f"  cd {root} && homelab build && homelab test"


def test_the_lab_readme_names_deploy_and_install():
    readme = files_of("starter")["README.md"].read_text()
    named = set(re.findall(r"`homelab (\w+)", readme))
    assert {"deploy", "install", "verify", "build", "test", "completion"} <= named
    # every command it names is one homelab has (install: being built, issue 16)
    assert named - set(COMMANDS) <= {"install"}
