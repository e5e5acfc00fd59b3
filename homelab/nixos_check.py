"""``homelab check --nixos``: each host's real NixOS system, evaluated through the lab's flake.

What a build proves offline stops at the option contract: a raw option homelab does not write
(``services.jellyfin.enabel``) or an import's own mistakes are NixOS's to judge.  Where nixpkgs
can be fetched (or a local copy is named with ``--override-input nixpkgs ...``), this evaluates
``nixosConfigurations.<host>.config.system.build.toplevel.drvPath`` for every host, the derivation
``nixos-rebuild`` would build, a few hosts at a time (:func:`jobs`), and reports NixOS's errors
(failed assertions, options that do not exist, type errors) against the lab's own files.

First the flake's inputs are fetched once (``nix flake archive``): when that fails for want of a
network or a source (nixpkgs not reachable), nothing was checked, and the command says so (exit 4),
never a pass.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import attrs

from .errors import MissingTool
from .pynix_eval import Nix, NixError, NixEvalError

# what nix says when a source cannot be fetched (libstore/filetransfer.cc, libfetchers)
_UNREACHABLE = re.compile(r"unable to download|Couldn't resolve host|Could not resolve host|Couldn't connect|"
                          r"Connection refused|Failed to connect|cannot fetch|unable to fetch|"
                          r"Timeout was reached|Network is unreachable|does not exist in the Nix store and cannot be "
                          r"substituted|getting status of '[^']*': No such file or directory", re.IGNORECASE)
_STORE_SOURCE = re.compile(r"/nix/store/[0-9a-z]{32}-source/([^\s'`\"),:]+)")


class InputsUnreachable(MissingTool):
    """The lab's flake inputs (nixpkgs) could not be fetched: nothing was evaluated (exit 4, never a pass)."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


@attrs.frozen
class HostResult:
    host: str
    drv: str | None  # the system's derivation, when NixOS evaluated it
    error: str | None  # NixOS's error, with the lab's files named as the lab names them


def jobs(hosts: int, limit: int | None = None) -> int:
    """How many nix processes evaluate at once: at most 4 (an evaluation of NixOS takes ~1 GB), the cores."""
    return max(1, min(limit or 4, os.cpu_count() or 1, hosts))


def nix_error(message: str) -> str:
    """nix's own error, without what it printed before it (lock file notes) or the trace hint after."""
    lines = message.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("error:")), 0)
    kept = [ln for ln in lines[start:] if not ln.lstrip().startswith("(use '--show-trace'")]
    text = "\n".join(kept).strip()
    return text[len("error:"):].strip() if text.startswith("error:") else text


def lab_relative(message: str, root: Path) -> str:
    """NixOS's message with the lab's files (copied to the store as the flake's source) named as in the lab."""
    def sub(m: re.Match) -> str:
        rel = m.group(1)
        if (root / rel).exists():
            return rel + (f" (written from {rel.rsplit('/', 1)[0]}/host.py)" if re.fullmatch(
                r"hosts/[^/]+/default\.nix", rel) else "")
        return m.group(0)

    return _STORE_SOURCE.sub(sub, message)


def flake_ref(root: Path) -> str:
    """The lab as ``nixos-rebuild --flake`` and ``homelab vm`` name it: a git checkout is a git flake (tracked
    files only), any other folder a path flake."""
    return str(Path(root).resolve())


def untracked(root: Path, paths: Sequence[str]) -> list[str]:
    """Of ``paths`` (lab-relative), those a git flake would not see: the lab is in a git repository and git does
    not track them.  Empty when the lab is no git repository (a path flake sees every file) or git is missing."""
    import shutil
    import subprocess

    if shutil.which("git") is None or not paths:
        return []
    top = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if top.returncode != 0:
        return []
    r = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--", *paths], capture_output=True, text=True)
    tracked = {p for p in r.stdout.split("\0") if p}
    return [p for p in paths if p not in tracked]


def fetch_inputs(nix: Nix, root: Path, overrides: Sequence[str], timeout: float) -> None:
    """Fetch the flake's inputs once, before any evaluation; InputsUnreachable when they cannot be fetched."""
    try:
        nix.flake(["flake", "archive", "--no-write-lock-file", "--option", "download-attempts", "2",
                   *overrides, flake_ref(root)], timeout=timeout)
    except NixEvalError as e:
        if _UNREACHABLE.search(e.message) or _UNREACHABLE.search(e.stderr or ""):
            raise InputsUnreachable(nix_error(e.message)) from None
        raise


def evaluate_host(nix: Nix, root: Path, host: str, overrides: Sequence[str], timeout: float) -> HostResult:
    attr = f"{flake_ref(root)}#nixosConfigurations.{host}.config.system.build.toplevel.drvPath"
    try:
        out = nix.flake(["eval", "--raw", "--no-write-lock-file", *overrides, attr], timeout=timeout)
    except NixError as e:
        return HostResult(host, None, lab_relative(nix_error(e.message), Path(root).resolve()))
    return HostResult(host, out.strip(), None)


def check_nixos(root: Path, hosts: Sequence[str], *, nix: Nix | None = None, overrides: Sequence[str] = (),
                parallel: int | None = None, timeout: float = 900) -> list[HostResult]:
    """Every host's NixOS system evaluated through the lab's flake, ``parallel`` at a time (:func:`jobs`).

    InputsUnreachable when the inputs cannot be fetched; NixEvalError when the flake itself cannot be read.
    """
    nix = nix or Nix(timeout=timeout)
    fetch_inputs(nix, root, overrides, timeout)
    with ThreadPoolExecutor(max_workers=jobs(len(hosts), parallel)) as pool:
        return list(pool.map(lambda h: evaluate_host(nix, root, h, overrides, timeout), hosts))


# ---------------------------------------------------------------- the command


def nixos_problems(root: Path, lab, args, nix: Nix, say) -> list | None:
    """For ``homelab check --nixos``: a problem per host NixOS refuses; None (after saying why) when nothing
    could be evaluated (no flake, or its inputs cannot be fetched), which is never a pass."""
    from .errors import LabError, Problem
    from .pynix_eval import NixNotFound

    root = Path(root)
    if not (root / "flake.nix").is_file():
        raise LabError([Problem("lab", "flake.nix", "is missing: --nixos evaluates each host through the lab's "
                                "flake (homelab init writes one)")])
    overrides = [x for name, ref in args.override_input for x in ("--override-input", name, ref)]
    names = [h.hostname for h in lab.hosts]
    generated = sorted(str(p.relative_to(root)) for p in [root / "flake.nix", root / "hosts" / "lab.nix",
                                                          *(root / "hosts").glob("*/default.nix"),
                                                          *(root / "modules").rglob("*.nix")] if p.is_file())
    missing = untracked(root, generated)
    if missing:  # the flake would not see them, and NixOS's errors would say so less clearly
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise LabError([Problem("lab", "git", f"{shown} not tracked by git, so the lab's flake cannot see "
                                f"{'it' if len(missing) == 1 else 'them'}: run `git add -A` in the lab first")])
    n = jobs(len(names), args.jobs)
    say(f"homelab: evaluating {len(names)} NixOS system{'s' if len(names) != 1 else ''} through the flake, "
        f"{n} at a time")
    try:
        results = check_nixos(root, names, nix=nix, overrides=overrides, parallel=n,
                              timeout=max(getattr(args, "nix_timeout", 120.0), 900))
    except InputsUnreachable as e:
        say("homelab: check --nixos: the lab's flake inputs (nixpkgs and the others flake.nix names) cannot be "
            f"fetched here, so no NixOS system was evaluated: {e.message}. Run it where they are reachable, or "
            "name local copies with --override-input nixpkgs <flake-ref>")
        return None
    except NixNotFound:
        raise
    out = []
    for r in results:
        if r.error is not None:
            out.append(Problem(lab.where(r.host), "nixos", f"NixOS refuses the system: {r.error}"))
        else:
            say(f"  {lab.where(r.host)}: NixOS evaluated {r.drv}")
    return out
