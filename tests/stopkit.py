"""Helpers of the tests that stop a build and look for what it left: processes, files, a nix that waits."""

from __future__ import annotations

from pathlib import Path


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def files_of(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes, by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def sleeping_nix(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A stand-in ``nix-instantiate`` that writes its pid down and sleeps (a build verifying for as long as the
    test needs), and a $TMPDIR of the test's own: ``(bindir, tmpdir, pid file)``."""
    bindir, tmp, pids = tmp_path / "bin", tmp_path / "tmp", tmp_path / "nix-pids"
    bindir.mkdir()
    tmp.mkdir()
    (bindir / "nix-instantiate").write_text(f'#!/bin/sh\necho $$ >> {pids}\nexec sleep 60\n')
    (bindir / "nix-instantiate").chmod(0o755)
    return bindir, tmp, pids
