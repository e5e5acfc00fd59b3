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

import contextlib
from typing import Any, Callable, Iterable, Iterator

import attrs

from . import contract as contracts
from . import forked, readback
from .compile import Compiled, HostFiles, ModuleFile, compile_shared, entry_file, lab_data
from .errors import Problem
from .model import Host, Lab
from .precompile import available
from .validate import _ELSEWHERE, host_problems, option_clashes, require_valid

__all__ = ["Shared", "Refused", "shared", "half", "options", "ahead"]


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

    found = require_valid(lab)
    warnings = tuple(warnings) + tuple(w for w in found if w not in warnings)
    return Shared(lab, _compiled(lab), warnings)


# The shared compile of a lab a child started early (:func:`ahead`) is making: id(lab) -> (the lab, the child).
_PENDING: dict[int, tuple[Lab, _Ahead]] = {}

# The share of the hosts whose problems that child finds before its compile: the last 25 % (at 10,000 hosts its
# compile takes about 1.2-1.7 s of CPU and its 30 % of the hosts 0.43 s; this process's hand-written imports and
# validation of 70 % about 1.7 s, and it checks the secrets and makes the cluster layer's texts while the child
# compiles, about 0.15 s: with 30 % it waited 0.15-0.2 s for the compile).
_THEIR_HOSTS = 0.25


def _shared_parts(lab: Lab) -> tuple[dict[str, ModuleFile], dict[str, HostFiles]]:
    """What the child hands back of :func:`homelab.compile.compile_shared`: its files and plans (the contract is
    the parent's own, :func:`homelab.contract.of_roles` of the same role classes)."""
    c = compile_shared(lab)
    return c.files, c.hosts


def _ahead_work(lab: Lab, first: int) -> Iterator[tuple[bool, Any]]:
    """The child's work, each part sent as soon as it is done (:func:`homelab.forked.start_each`): (whether it found
    them, the problems of ``lab.hosts[first:]``), then (whether it made them, :func:`_shared_parts`).  The
    validation waits only for the first: this process checks the secrets and starts the build while the child
    compiles.  What raised is left to the parent, which meets the error itself."""

    try:
        found: tuple[bool, Any] = (True, host_problems(lab, lab.hosts[first:]))
    except Exception:  # noqa: BLE001 - checked again in the parent, which raises it
        found = (False, None)
    yield found
    try:
        parts: tuple[bool, Any] = (True, _shared_parts(lab))
    except Exception:  # noqa: BLE001 - compiled again in the parent, which raises it
        parts = (False, None)
    yield parts


class _Ahead:
    """The child started by :func:`ahead`, its two answers read once each, in the order it sends them: the problems
    for the validation, then the shared compile."""

    def __init__(self, child: forked.Child):
        self.child = child
        self.found: tuple[bool, Any] | None = None
        self.made: tuple[bool, Any] | None = None

    def problems(self) -> tuple[bool, Any]:
        if self.found is None:
            answered, value = self.child.next()
            self.found = value if answered else (False, None)
        return self.found

    def parts(self) -> tuple[bool, Any]:
        if self.made is None:
            self.problems()  # sent first
            answered, value = self.child.next()
            self.made = value if answered else (False, None)
            self.child.finish()
        return self.made

    def stop(self) -> None:
        if self.made is None:
            self.child.stop()
            self.found = self.found or (False, None)
            self.made = (False, None)


def _compiled(lab: Lab) -> Compiled:
    """:func:`homelab.compile.compile_shared` of ``lab``: the early child's answer when one was started for this
    lab and answered, else made here (so that an error is raised here, exactly as without the child)."""
    pending = _PENDING.pop(id(lab), None)  # held with the lab itself: no other lab can have its id meanwhile
    if pending is not None:
        made, parts = pending[1].parts()
        if made:
            files, plans = parts
            return Compiled(files, plans, contracts.of_roles(lab.role_types), None)
    return compile_shared(lab)


def wanted(hosts: int) -> bool:
    """Whether a whole build of a lab of ``hosts`` hosts runs its per-file work in two processes (homelab.shard,
    which names it ``shard.wanted``; here because this module decides from it too, below shard)."""
    n = forked.threshold()
    return 0 < n <= hosts and hosts >= 2 and available()


@contextlib.contextmanager
def ahead(whole: bool = True) -> Iterator[Callable[[Lab], None] | None]:
    """For ``homelab build``: a function to call with the lab once its hosts are loaded, before it is validated
    (:func:`homelab.load.load`'s ``loaded``), which starts :func:`homelab.compile.compile_shared` of a lab the
    build will split in two processes (:func:`wanted`) in a forked child, beside the validation
    in this process; :func:`shared` then takes the child's answer.  At 10,000 hosts the shared compile
    (about 1.1 s) no longer waits for validation (about 1.3 s) on one core.  The child first finds the problems of
    the last 25 % of the hosts (``_THEIR_HOSTS``) and sends them (:func:`homelab.validate.validate` takes them from it), then
    compiles: this process checks the secrets and starts the build meanwhile, and waits for the compile only in
    :func:`shared`.

    Nothing depends on the child: when it dies, raises or its answer does not pickle, :func:`shared` compiles
    here and the validation checks those hosts here, so an error is raised as without it; a lab that does not
    validate never uses its compile.  Leaving the
    ``with`` ends a child whose answer was not taken (the lab had a problem, the build went another way).
    ``whole`` False (a build of some hosts, ``--check``, ``--no-verify``: no two-process build): None."""
    started: list[int] = []

    def start(lab: Lab) -> None:
        if id(lab) in _PENDING or not wanted(len(lab.hosts)) or not forked.possible():
            return

        first = len(lab.hosts) - int(len(lab.hosts) * _THEIR_HOSTS)
        try:
            child = _Ahead(forked.start_each(_ahead_work, lab, first))
        except OSError:  # no fork now (no memory, too many processes): compiled and checked in this process
            return
        _PENDING[id(lab)] = (lab, child)
        _ELSEWHERE[id(lab)] = (lab, first, child.problems)
        started.append(id(lab))

    try:
        yield start if whole else None
    finally:
        for key in started:
            _ELSEWHERE.pop(key, None)  # a lab validated before (kept per lab) is not validated again
            pending = _PENDING.pop(key, None)
            if pending is not None:
                pending[1].stop()


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
