"""`homelab init`: a new lab, ready to build; refusals that write nothing; the CI script it ships runs."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from homelab import LabError
from homelab.cli import main
from homelab.harness import EXAMPLES
from homelab.init import DEFAULT_FLAKE_URL, files_of, init

from .conftest import REPO

HARDWARE = '{ ... }: { fileSystems."/" = { device = "/dev/disk/by-label/nixos"; fsType = "ext4"; }; }\n'


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and ".git" not in p.relative_to(root).parts}


def test_init_writes_the_starter_lab(tmp_path, capsys):
    assert main(["init", str(tmp_path / "mylab")]) == 0
    root = tmp_path / "mylab"
    assert tree(root) == {rel: src.read_bytes() for rel, src in files_of("starter").items()}
    assert sorted(tree(root)) == [".gitignore", "README.md", "ci.sh", "flake.nix", "hosts/cluster.py",
                                  "hosts/control/hardware-configuration.nix", "hosts/control/host.py",
                                  "hosts/worker1/hardware-configuration.nix", "hosts/worker1/host.py"]
    assert os.stat(root / "ci.sh").st_mode & stat.S_IXUSR
    flake = (root / "flake.nix").read_text()
    assert 'inputs.homelab.inputs.nixpkgs.follows = "nixpkgs";' in flake
    assert "outputs = { homelab, agenix, ... }: homelab.lib.mkLab { root = ./.; inherit agenix; };" in flake
    assert 'inputs.homelab.inputs.agenix.follows = "agenix";' in flake
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"homelab init: a new lab in {root} (starter example)"
    assert out[-3:] == [
        "  replace hosts/control/hardware-configuration.nix with the machine's own (nixos-generate-config "
        "--show-hardware-config)",
        "  replace hosts/worker1/hardware-configuration.nix with the machine's own (nixos-generate-config "
        "--show-hardware-config)",
        f"  cd {root} && homelab build && git add -A && homelab test"]


def test_the_seed_example_builds_to_the_seed_labs_files(seed_root, tmp_path):
    done = init(tmp_path / "seed", example="seed")
    assert done.placeholders == ()
    assert {r for r in done.written if r.startswith("hosts/")} == {
        p.relative_to(EXAMPLES / "seed").as_posix() for p in (EXAMPLES / "seed").rglob("*") if p.is_file()}
    assert {r for r in done.written if not r.startswith("hosts/")} == {".gitignore", "README.md", "ci.sh",
                                                                        "flake.nix"}
    assert main(["build", "--root", str(done.root)]) == 0
    built = {rel: data for rel, data in tree(done.root).items() if rel.startswith(("hosts/", "modules/", "cluster/"))}
    assert built == tree(seed_root)


def test_refusals_write_nothing(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine\n")
    assert main(["init", str(taken)]) == 2
    err = capsys.readouterr().err
    assert f"init: {taken}: is not empty; pick a new folder, or pass --force" in err and "Traceback" not in err
    assert tree(taken) == {"notes.txt": b"mine\n"}

    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(LabError, match="is a file, not a folder"):
        init(a_file)
    with pytest.raises(LabError, match="'flake' is not an example; there are: starter, seed"):
        init(tmp_path / "new", example="flake")
    with pytest.raises(LabError, match="is not a flake reference"):
        init(tmp_path / "new", homelab_url='github:x/y"; evil = "')
    assert not (tmp_path / "new").exists()

    lab = tmp_path / "lab"
    init(lab)
    before = tree(lab)
    with pytest.raises(LabError, match=r"already holds a lab \(hosts/cluster.py\)"):
        init(lab, force=True)
    assert tree(lab) == before


def test_force_adds_files_and_keeps_what_is_there(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    (root / "README.md").write_text("# my own readme\n")
    done = init(root, force=True)
    assert done.kept == ("README.md",)
    assert (root / "README.md").read_text() == "# my own readme\n"
    assert set(done.written) == set(files_of("starter")) - {"README.md"}


def test_homelab_url_is_written_into_the_flake(tmp_path):
    init(tmp_path / "lab", homelab_url="path:/src/homelab")
    flake = (tmp_path / "lab" / "flake.nix").read_text()
    assert 'inputs.homelab.url = "path:/src/homelab";' in flake and DEFAULT_FLAKE_URL not in flake


def test_the_ci_script_passes_on_a_current_lab_and_fails_on_a_stale_one(tmp_path):
    root = init(tmp_path / "lab").root
    for h in ("control", "worker1"):
        (root / "hosts" / h / "hardware-configuration.nix").write_text(HARDWARE)
    assert main(["build", "--root", str(root)]) == 0
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "homelab").write_text(f"#!/bin/sh\nexec {sys.executable} -m homelab \"$@\"\n")
    (bindir / "homelab").chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "PYTHONPATH": str(REPO)}
    r = subprocess.run([str(root / "ci.sh")], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "up to date: 2 hosts" in r.stdout and ", 0 failed, " in r.stdout
    host_py = root / "hosts" / "worker1" / "host.py"
    host_py.write_text(host_py.read_text().replace("192.168.1.11/24", "192.168.1.12/24"))
    r = subprocess.run([str(root / "ci.sh")], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 1 and "hosts/worker1/default.nix" in r.stdout and "homelab test:" not in r.stdout
