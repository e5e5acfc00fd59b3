"""A large lab's preparation, split where the lab splits: the whole lab's part before the fork, each host's after.

:func:`homelab.build.prepare` validates, compiles and prechecks a lab in one process.  A two-process build
(:mod:`homelab.shard`) does only what the whole lab decides before it forks (:func:`shared`): validation, which
looks across hosts, and the shared module files, whose names depend on how many hosts use each variant
(:func:`homelab.compile.compile_shared`).  Each half then makes its own hosts' entry files and prechecks them
(:func:`half`): the contract and nesting of each file, each host's merge conflicts, the raw options that fight
what homelab generates; the child makes the lab's data file too.  At 10,000 hosts that is about 4.5 s of CPU
that no longer waits in one process before the fork.

Nothing is decided differently.  Whatever :func:`homelab.build.prepare` would raise for a host, the half that
has the host finds (:class:`Refused`), and the build runs again in one process, which says it exactly as before.
The merged option values the build reports are those of the precheck, merged when asked (:func:`options`).
"""

from __future__ import annotations

from typing import Callable, Iterable

import attrs

from . import readback
from .compile import Compiled, compile_shared, entry_file, lab_data
from .errors import Problem
from .model import Host, Lab

__all__ = ["Shared", "Refused", "shared", "half", "options"]


@attrs.frozen
class Shared:
    """What the whole lab decides, before the fork: the lab, its warnings (as :func:`homelab.build.prepare` gives
    them when it succeeds) and :func:`homelab.compile.compile_shared`'s module files and plans."""

    lab: Lab
    compiled: Compiled  # the shared module files and every host's plan; no entry file, no data file
    warnings: tuple[Problem, ...]


class Refused(Exception):
    """A half found what :func:`homelab.build.prepare` raises for one of its hosts: the build runs in one
    process, which says it."""


def shared(lab: Lab, warnings: tuple[Problem, ...] | list[Problem] = ()) -> Shared:
    """Validate ``lab`` (LabError as :func:`homelab.build.prepare` raises it) and compile what its hosts share."""
    from .validate import require_valid

    found = require_valid(lab)
    warnings = tuple(warnings) + tuple(w for w in found if w not in warnings)
    return Shared(lab, compile_shared(lab), warnings)


@attrs.frozen
class _Part:
    """The hosts of one half, as :func:`homelab.validate.option_clashes` reads a lab: its hosts, and where each is."""

    hosts: list[Host]
    where: Callable[[Host | str], str]


def half(s: Shared, hosts: Iterable[str], data: bool) -> tuple[Compiled, readback.Precheck]:
    """``hosts``' part of the lab compiled and prechecked: the shared module files, these hosts' plans and entry
    files (and, with ``data``, the lab's data file), and their precheck.  Refused when the precheck finds a
    problem or a conflict, or a host's raw options fight what homelab generates (anything
    :func:`homelab.build.prepare` raises for)."""
    from .validate import option_clashes

    names = list(hosts)
    by_name = {h.hostname: h for h in s.lab.hosts}
    files = dict(s.compiled.files)
    plans = {}
    for name in names:
        plan = plans[name] = s.compiled.hosts[name]
        files[plan.entry] = entry_file(s.lab, by_name[name], plan)
    compiled = Compiled(files, plans, s.compiled.contract, lab_data(s.lab) if data else None)
    pre = readback.precheck(compiled)
    if pre.problems or any(pre.conflicts.values()):
        raise Refused("the precheck found a problem")
    clashes, _ = option_clashes(_Part([by_name[n] for n in names], s.lab.where), compiled, pre)
    if clashes:
        raise Refused("a host's raw options fight what homelab generates")
    return compiled, pre


def options(s: Shared, names: Iterable[str]) -> readback.HostOptions:
    """Each of ``names``' option values as NixOS merges them, merged when asked for (the precheck's
    :class:`homelab.readback.HostOptions`): a host's entry file is made again when its values are asked for."""
    by_name = {h.hostname: h for h in s.lab.hosts}
    nested: dict[str, dict] = {}  # the shared module files', once

    def files_of(name: str) -> list[tuple[str, dict]]:
        plan = s.compiled.hosts[name]
        out = [(plan.entry, readback.nest(entry_file(s.lab, by_name[name], plan).definitions()))]
        for rel in plan.modules:
            if rel not in nested:
                nested[rel] = readback.nest(s.compiled.files[rel].definitions())
            out.append((rel, nested[rel]))
        return out

    return readback.HostOptions(names, files_of, s.compiled.contract)
