"""``homelab init DIR``: start a lab of your own, ready to build.

What it writes is the ``starter`` example shipped with homelab (``homelab/examples/starter``,
also the flake's ``templates.default``, so ``nix flake init -t <homelab>`` gives the same
files): ``flake.nix`` (``homelab.lib.mkLab { root = ./.; }``), ``README.md``, ``.gitignore``,
``ci.sh`` (``homelab build --check && homelab test``), ``hosts/cluster.py`` and two hosts, a
control plane and a worker. Each host imports a ``hardware-configuration.nix`` placeholder
that ``homelab build`` refuses (host, field, reason) until it is replaced by the machine's own.

``--example seed`` writes the seed article's lab (yomogi, tokiwa, hanaakari, with their
hardware files) in place of the two example hosts.

A folder that is not empty is refused unless ``force`` is given; even then no existing file
is overwritten (each is reported as kept), and a folder that already holds a lab
(``hosts/cluster.py``) is always refused.

The lab is made a git repository (``git init``) with the files it wrote added (``git add``), because a
flake in a git repository sees only the files git tracks; a folder already inside a git repository has
the files added to that one.  Nothing is committed.  Without git, ``init`` says so and what to run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import attrs

from .errors import LabError, Problem
from .harness import EXAMPLES

EXAMPLE_NAMES = ("starter", "seed")
# inputs.homelab.url of the starter flake.nix; `init --homelab-url` writes another
DEFAULT_FLAKE_URL = "github:homelab/homelab"
_URL_LINE = f'inputs.homelab.url = "{DEFAULT_FLAKE_URL}";'

__all__ = ["EXAMPLE_NAMES", "DEFAULT_FLAKE_URL", "Written", "files_of", "init"]


@attrs.frozen
class Written:
    """What ``init`` did: the lab's folder, the files written and the ones already there (kept)."""

    root: Path
    example: str
    written: tuple[str, ...]
    kept: tuple[str, ...] = ()
    placeholders: tuple[str, ...] = ()  # hardware files to replace before `homelab build` accepts the lab
    git: str = ""  # what was done with git, for people
    tracked: bool = False  # the written files are in a git repository's index


def _tree(base: Path) -> dict[str, Path]:
    return {p.relative_to(base).as_posix(): p for p in sorted(base.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def files_of(example: str = "starter") -> dict[str, Path]:
    """The files an example writes (path in the lab -> the shipped file)."""
    if example not in EXAMPLE_NAMES:
        raise LabError([Problem("init", "example", f"{example!r} is not an example; there are: "
                                + ", ".join(EXAMPLE_NAMES))])
    files = _tree(EXAMPLES / "starter")
    if example != "starter":  # the starter's flake, README, .gitignore and CI script; the example's hosts
        files = {rel: p for rel, p in files.items() if not rel.startswith("hosts/")}
        files.update(_tree(EXAMPLES / example))
    return files


def _url_ok(url: str) -> bool:
    return bool(url) and not any(c in url for c in '"\\$\n\r\t ') and ":" in url


def init(target: Path | str, *, example: str = "starter", force: bool = False,
         homelab_url: str | None = None, git: bool = True) -> Written:
    """Write a new lab into ``target`` (created if missing).  LabError (nothing written) when refused."""
    from .load import is_placeholder

    target = Path(target)
    files = files_of(example)
    problems = []
    if homelab_url is not None and not _url_ok(homelab_url):
        problems.append(Problem("init", "homelab-url", f"{homelab_url!r} is not a flake reference (such as "
                                "github:owner/homelab or path:/src/homelab)"))
    if target.exists() and not target.is_dir():
        problems.append(Problem("init", str(target), "is a file, not a folder"))
    elif (target / "hosts" / "cluster.py").exists():
        problems.append(Problem("init", str(target), "already holds a lab (hosts/cluster.py)"))
    elif target.is_dir() and any(target.iterdir()) and not force:
        problems.append(Problem("init", str(target), "is not empty; pick a new folder, or pass --force to add the "
                                "lab's files to it (existing files are kept, never overwritten)"))
    if problems:
        raise LabError(problems)

    written, kept = [], []
    target.mkdir(parents=True, exist_ok=True)
    for rel, src in files.items():
        dst = target / rel
        if dst.exists() or dst.is_symlink():
            kept.append(rel)
            continue
        text = src.read_bytes()
        if rel == "flake.nix" and homelab_url:
            text = text.replace(_URL_LINE.encode(), f'inputs.homelab.url = "{homelab_url}";'.encode())
        _write_new(dst, text, executable=os.access(src, os.X_OK) or rel.endswith(".sh"))
        written.append(rel)
    placeholders = tuple(rel for rel in written if rel.endswith(".nix") and is_placeholder(target / rel))
    tracked, said = track(target, written) if git else (False, "")
    return Written(target, example, tuple(written), tuple(kept), placeholders, said, tracked)


def track(target: Path, written: list[str]) -> tuple[bool, str]:
    """``git add`` the written files, in a new repository unless ``target`` is inside one: (added, what was done)."""
    exe = shutil.which("git")
    if exe is None:
        return False, ("git is not installed, so the lab is not a git repository; once it is there, run `git init "
                       "&& git add -A` in the lab (a flake in a git repository sees only the files git tracks)")

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([exe, "-C", str(target), *args], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)

    inside = git("rev-parse", "--show-toplevel")
    top = Path(inside.stdout.strip()) if inside.returncode == 0 else None
    if top is None:
        r = git("init", "-q")
        if r.returncode != 0:
            return False, (f"`git init` failed ({r.stderr.strip() or f'exit {r.returncode}'}); run `git init && git "
                           "add -A` in the lab")
    n = len(written)
    if written:
        r = git("add", "--", *written)
        if r.returncode != 0:
            return False, f"`git add` failed ({r.stderr.strip() or f'exit {r.returncode}'}); run `git add -A` in the lab"
    files = f"{n} file{'s' if n != 1 else ''}"
    if top is None:
        return True, f"made it a git repository and added its {files} (flakes see only tracked files); nothing committed"
    return True, (f"added its {files} to the git repository at {top} (flakes see only tracked files); nothing "
                  "committed")


def _write_new(dst: Path, data: bytes, *, executable: bool) -> None:
    """Write a new file whole or not at all: a temporary file beside it, then a rename."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o755 if executable else 0o644)
        os.replace(tmp, dst)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
