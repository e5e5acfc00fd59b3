"""The build pipeline as a library: validate -> compile -> render -> verify with nix -> write atomically.

This is what ``python -m homelab build`` runs, and what your own Python calls::

    from homelab import build, load_lab

    lab = load_lab("path/to/lab")                  # LabError listing every problem, or the lab
    result = build.build("path/to/lab", lab=lab)   # verified by nix, written atomically
    print(result.written)

Every entry point validates: an invalid lab raises :class:`~homelab.errors.LabError`
carrying every problem (host, field, reason); nothing is written.  Work is done
once: the lab is compiled once and each host is merged once (the precheck); nix
reads the written files back once, in one process, and when it reads exactly
what the model says, the precheck's merge is the answer.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Collection

import attrs

from . import files, gcpause, readback, render, shard
from .compile import Compiled, compile_lab
from .errors import GeneratedCodeError, LabError, NotVerified, Problem
from .model import Lab
from .pynix_eval import Nix, NixError, NixNotFound, NixUnusable
from .validate import require_valid

__all__ = ["Prepared", "BuildResult", "check", "prepare", "build", "show", "hosts_sharing_changes", "NotVerified"]


@attrs.frozen
class Prepared:
    """A validated lab, compiled once and merged once: everything a build decides before writing."""

    lab: Lab
    compiled: Compiled
    pre: readback.Precheck
    warnings: tuple[Problem, ...] = ()

    def texts(self, only: list[str] | None = None) -> dict[str, str]:
        """The generated files' texts (all, or those of the named hosts), keyed by path; a whole build also
        writes the cluster layer (cluster/helmfile.yaml and its values files, :mod:`homelab.helmfile`)."""
        out = render.render_all(self.compiled, only)
        if only is None:
            from . import helmfile

            out.update(helmfile.texts(self.lab))
        return dict(sorted(out.items()))


check = require_valid  # the public name (homelab.check): the lab's warnings, or LabError with every error


def prepare(lab: Lab, warnings: tuple[Problem, ...] | list[Problem] = ()) -> Prepared:
    """Validate, compile and precheck a lab.

    LabError when the lab has problems, or when a host's raw ``options`` fight
    what homelab generates (the user's to fix); GeneratedCodeError when the
    generated code itself breaks the option contract or does not merge
    (homelab's bug).
    """
    from .validate import option_clashes

    found = check(lab)
    warnings = tuple(warnings) + tuple(w for w in found if w not in warnings)
    compiled = compile_lab(lab)
    pre = readback.precheck(compiled)
    # a role of the lab's own that writes what its contract rows do not allow is the lab's to fix
    own = [Problem(f"role {f.owner.__name__}", "options", f"{problem} (add a row to {f.owner.__name__}.options "
                   f"in {f.owner.__module__}, or write the option it declares)")
           for rel, f in compiled.files.items() if f.owner is not None and not _builtin(f.owner)
           for problem in pre.by_file.get(rel, ())]
    if own:
        raise LabError(own)
    clashes, explained = option_clashes(lab, compiled, pre)
    errors = [p for p in clashes if p.severity == "error"]
    if errors:
        raise LabError(errors)
    bugs = pre.problems + [f"{compiled.hosts[h].entry}: {c}" for h, cs in sorted(pre.conflicts.items())
                           if h not in explained for c in cs]
    if bugs:
        raise GeneratedCodeError(bugs)
    return Prepared(lab, compiled, pre, tuple(warnings) + tuple(clashes))


def _builtin(role: type) -> bool:
    from .roles import BUILTIN

    return role in BUILTIN


def hosts_sharing_changes(root: Path, compiled: Compiled, only: list[str]) -> list[str]:
    """``only`` plus every other host whose configuration a build of ``only`` would change.

    Hosts share module files: rewriting one that another host's entry (as it is
    on disk) imports changes that host too, so that host is built as well.
    """
    hosts = set(only)
    while True:
        texts = render.render_all(compiled, sorted(hosts))
        changed = [rel for rel, text in texts.items() if rel.startswith("modules/")
                   and (not (root / rel).is_file() or files.read_exact(root / rel) != text)]
        extra = set()
        for name, plan in compiled.hosts.items():
            entry = root / plan.entry
            if name in hosts or not entry.is_file():
                continue
            on_disk = files.read_exact(entry)
            if any(f"../../{rel}\n" in on_disk for rel in changed):
                extra.add(name)
        if not extra:
            return sorted(hosts)
        hosts |= extra


def require_hosts(lab: Lab, hosts: list[str] | None) -> None:
    """LabError naming every one of ``hosts`` the lab does not have."""
    known = {h.hostname for h in lab.hosts}
    missing = [n for n in hosts or () if n not in known]
    if missing:
        raise LabError([Problem(f"hosts/{n}", "host.py", "no such host (no hosts/<name>/host.py)") for n in missing])


@attrs.frozen
class BuildResult:
    """What a build did (or, with ``check``, would do)."""

    hosts: tuple[str, ...]
    written: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    stale: tuple[str, ...] = ()  # with check=True: the files a build would change
    also_built: tuple[str, ...] = ()  # hosts added because they import a module file the build changes
    verified: readback.Report | None = None
    verify_seconds: float = 0.0  # with processes=2: the slower process's (both ran at once)
    warnings: tuple[Problem, ...] = ()
    # lab-relative path -> SHA-256 of the content this build read or wrote (a two-process build's; for the no-op
    # record, which then need not read those files again)
    digests: dict[str, str] = attrs.field(factory=dict, repr=False, eq=False)
    processes: int = 1  # how many processes rendered, verified and wrote the files (2: homelab.shard)

    @property
    def changed(self) -> bool:
        return bool(self.written or self.removed or self.stale)


def _read_back_staged(root: Path, p: Prepared, texts: dict[str, str], names: tuple[str, ...],
                      only: list[str] | None, nix: Nix | None, pending_hardware: Collection[str] = ()
                      ) -> tuple[readback.Report, list[Problem]]:
    """nix reads the files back from a staging copy, and calls the hand-written imports: the report and the
    warnings of hand-written definitions that fight generated ones.  ReadBackError, LabError (a clash that
    is an error), NotVerified (no nix); nix's messages name the lab's files, never the staging copy.
    ``pending_hardware``: hosts whose boot is not judged (see :func:`build`)."""
    hand = [r for h in names for r in p.compiled.hosts[h].hand_written]
    try:
        nix = nix or Nix()
        with readback.staged(texts, root, hand) as tmp:
            calls = nix.calls
            # the clash check's nix process runs beside the read-back's (both cores); its answer counts only
            # when nix read every file back as the model says
            specs, clash_check = readback.start_clash_check(Path(tmp), p.compiled, nix, list(names), p.pre)
            with readback.clash_check_running(nix, clash_check):  # Ctrl-C, SIGTERM: its nix ends at once too
                try:
                    rep = readback.read_back(Path(tmp), p.compiled, nix, only, pre=p.pre)
                    clashes = [] if rep.problems else readback.hand_written_clashes(
                        Path(tmp), p.compiled, nix, list(names), p.pre, specs=specs,
                        described=clash_check.result if clash_check else None)
                except NixError as e:  # name the lab's files, never the staging copy
                    if isinstance(e, NixNotFound):
                        raise
                    raise type(e)(_unstaged(e.message, tmp), key=e.key) from None
            rep = attrs.evolve(rep, nix_calls=nix.calls - calls)
    except NixUnusable:  # nix is there but cannot be used: its own message and fix, not "install nix"
        raise
    except NixNotFound as e:
        raise NotVerified(e.message) from None
    if rep.problems:
        raise readback.ReadBackError(rep.problems)
    if pending_hardware:
        from .bootable import is_boot_problem

        pending = {f"hosts/{h}" for h in pending_hardware}
        clashes = [c for c in clashes if not (c.where in pending and is_boot_problem(c))]
    if any(c.severity == "error" for c in clashes):
        raise LabError([c for c in clashes if c.severity == "error"])
    return rep, clashes


def build(root: Path | str, *, lab: Lab | None = None, hosts: list[str] | None = None, check: bool = False,
          force: bool = False, verify_with_nix: bool = True, nix: Nix | None = None,
          warnings: tuple[Problem, ...] = (), pending_hardware: Collection[str] = (),
          dry_run: bool = False) -> BuildResult:
    """Build the lab under ``root`` (every host, or ``hosts``): validate, compile, verify with nix, write.

    ``lab``: an already loaded lab (default: load and validate ``root``).  ``check``:
    write nothing, report stale files.  ``force``: overwrite generated files edited
    by hand.  ``verify_with_nix=False`` writes without reading the files back with
    nix (the CLI asks for ``--no-verify`` and says so).  Raises LabError (the lab
    or a file in the way is wrong), GeneratedCodeError or ReadBackError (homelab's
    bug), NotVerified (no nix); in every case nothing was written.  ``pending_hardware``:
    hosts whose hardware file is still ``homelab init``'s placeholder, which their own
    ``homelab install`` replaces: whether they have a root file system and a boot loader
    is judged then, not now (``homelab install`` builds a lab so).  ``dry_run``: all
    of it, nix included, but writing; ``stale`` lists what it would write or remove.
    """
    with gcpause.paused():  # millions of objects that live until the build ends (homelab.gcpause)
        return _build(Path(root), lab=lab, hosts=hosts, check=check, force=force, verify_with_nix=verify_with_nix,
                      nix=nix, warnings=warnings, pending_hardware=pending_hardware, dry_run=dry_run)


def _build(root: Path, *, lab: Lab | None, hosts: list[str] | None, check: bool, force: bool,
           verify_with_nix: bool, nix: Nix | None, warnings: tuple[Problem, ...], pending_hardware: Collection[str],
           dry_run: bool) -> BuildResult:
    from .load import load_or_raise

    if root.exists() and not root.is_dir():
        raise LabError([Problem(str(root), "folder", "is a file; a lab is built into a folder")])
    if lab is None:
        lab, loaded = load_or_raise(root)
        warnings = tuple(warnings) + tuple(loaded)
    require_hosts(lab, hosts)
    if not hosts and not check and not dry_run and verify_with_nix and shard.wanted(len(lab.hosts)):
        done = shard.build(root, lab, tuple(warnings), nix, force=force)  # None: build in one process
        if done is not None:
            return BuildResult(done.hosts, done.written, done.unchanged, done.removed, (), (), done.report,
                               done.seconds, done.warnings, digests=done.digests, processes=2)
    p = prepare(lab, warnings)
    only = sorted(hosts) if hosts else None
    also: tuple[str, ...] = ()
    if only and not check:
        wider = hosts_sharing_changes(root, p.compiled, only)
        also = tuple(h for h in wider if h not in only)
        only = wider
    texts = p.texts(only)
    prune = only is None
    names = tuple(only or sorted(p.compiled.hosts))
    if check:
        return BuildResult(names, stale=tuple(files.stale(root, texts, prune=prune)), warnings=p.warnings)
    plan = files.plan(root, texts, prune=prune, force=force)
    rep, seconds = None, 0.0
    if verify_with_nix:
        t0 = time.perf_counter()
        rep, clashes = _read_back_staged(root, p, texts, names, only, nix, pending_hardware)
        seconds = time.perf_counter() - t0
        p = attrs.evolve(p, warnings=p.warnings + tuple(clashes))
    if dry_run:
        return BuildResult(names, stale=tuple(sorted([*plan.write, *plan.delete])), verified=rep,
                           verify_seconds=seconds, warnings=p.warnings)
    root.mkdir(parents=True, exist_ok=True)  # a lab built in code may go into a new folder
    files.apply(root, plan)
    return BuildResult(names, tuple(plan.write), plan.unchanged, plan.delete, (), also, rep, seconds, p.warnings)


def _unstaged(text: str, tmp: str) -> str:
    """``text`` with the staging folder's paths written as the lab's own (``modules/k8s/ceph.nix``)."""
    for base in {str(Path(tmp)), str(Path(tmp).resolve())}:
        text = text.replace(base + "/", "")
    return text


def show(root: Path | str, hosts: list[str] | None = None, nix: Nix | None = None, *,
         lab: Lab | None = None) -> dict[str, dict[str, Any]]:
    """The option values each host sets, read back from the generated files on disk by real nix.

    ``lab``: the lab the files were built from (default: load it from ``root``).
    """
    from .load import load_or_raise

    root = Path(root)
    warnings: list[Problem] = []
    if lab is None:
        lab, warnings = load_or_raise(root)
    p = prepare(lab, warnings)
    require_hosts(lab, hosts)
    names = hosts or sorted(p.compiled.hosts)
    missing = [rel for h in names for rel in p.compiled.files_of(h) if not (root / rel).is_file()]
    if missing:
        from .about import program

        raise LabError([Problem(rel, "file", f"does not exist yet; run `{program()} build`") for rel in missing])
    evaluated = readback.evaluate(root, p.compiled, nix or Nix(), names)
    out: dict[str, dict[str, Any]] = {}
    for h in names:
        out[h], conflicts = readback.host_options(evaluated, p.compiled, h)
        if conflicts:
            raise readback.ReadBackError([f"{p.compiled.hosts[h].entry}: {c}" for c in conflicts])
    return out
