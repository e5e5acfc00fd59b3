"""homelab's errors, each carrying its exit code, and the one exit-code table.

Every error homelab raises on purpose is a :class:`HomelabError`; its ``exit_code`` is a
row of :data:`EXIT_CODES`, the table ``--help``, the README and every command use (the
command line turns an error into its message and that code; nothing else picks codes).

Problems in a lab description, reported as host + field + reason.

A field validator calls :func:`report`.  Used directly from Python it raises
:class:`LabError` at once (fail fast, like any attrs validator).  While the
loader reads ``hosts/`` it wraps the work in :func:`collecting`, so every
problem of every file is gathered and the user sees them all in one run.
"""

from __future__ import annotations

import contextvars

import attrs

# ---------------------------------------------------------------- the exit-code table (the only one)

EXIT_OK = 0  # done; nothing out of date
EXIT_CHANGED = 1  # out of date, would change, or failed (build --check, plan, graph --check-readme, test)
EXIT_FAILED = EXIT_CHANGED  # the same code, said by commands that act: a host, a proof or the suite failed
EXIT_BAD_INPUT = 2  # a problem in the lab description, a file in the way, or the command line: nothing written
EXIT_GENERATED = 3  # homelab generated something nix or its own contract disagrees with: a homelab bug
EXIT_MISSING = 4  # the command needs nix (or another tool) and it is not installed or not usable: nothing written
EXIT_STEP_FAILED = 5  # a program homelab ran for the user failed (a VM's build or boot); its output says why
EXIT_CRASH = 70  # an unexpected error inside homelab: a bug (EX_SOFTWARE); --debug shows the traceback
EXIT_INTERRUPTED = 130  # Ctrl-C, SIGTERM
EXIT_CODES = (
    (EXIT_OK, "done (also when the reader of the output stops early: `homelab show` piped into `head -1`)"),
    (EXIT_CHANGED, "something differs: files out of date (build --check), a change planned (plan), a stale "
                   "diagram or policy table (graph/policy --check-readme), a proof failing (test), the suite "
                   "failing on a VM (vm); a host failed (deploy, verify, wake, sleep)"),
    (EXIT_BAD_INPUT, "a problem in the lab description, a generated file edited by hand or in the way, or a "
                     "usage mistake; each named by host, field and reason; nothing was written"),
    (EXIT_GENERATED, "homelab generated code that nix or the option contract disagrees with: a homelab bug"),
    (EXIT_MISSING, "a tool or device the command needs (nix, KVM; ssh, nixos-rebuild or nix for deploy; age for "
                   "secrets; a reachable nixpkgs for `check --nixos`) is missing, or cannot be used by this user "
                   "(nix without its daemon); nothing was written"),
    (EXIT_STEP_FAILED, "a program homelab ran failed (a VM's build or boot); its output above says why"),
    (EXIT_CRASH, "homelab crashed: a bug (the traceback is shown with --debug)"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C or SIGTERM); temporary files were removed"),
)


def exit_table() -> str:
    """The table as ``--help`` prints it."""
    return "exit codes:\n" + "\n".join(f"  {code:>3}  {what}" for code, what in EXIT_CODES)


class HomelabError(Exception):
    """An error homelab raises on purpose; ``exit_code`` is its row of :data:`EXIT_CODES`."""

    exit_code: int = EXIT_CRASH


@attrs.frozen
class Problem:
    where: str  # "hosts/yomogi", "cluster", ...
    field: str  # "address", "IngressProxy.http_nodeport", ...
    reason: str
    severity: str = "error"  # or "warning"

    def __str__(self) -> str:
        tag = "" if self.severity == "error" else "warning: "
        return f"{self.where}: {self.field}: {tag}{self.reason}"


class LabError(HomelabError):
    """One or more problems that stop a build before anything is written."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


_where: contextvars.ContextVar[str] = contextvars.ContextVar("where", default="lab")
_sink: contextvars.ContextVar[list[Problem] | None] = contextvars.ContextVar("sink", default=None)


class located:
    """``with located(where):`` problems reported inside the block are attributed to ``where``.

    A class, not a generator: a lab's every host.py runs inside one (thousands per load)."""

    __slots__ = ("_value", "_token")

    def __init__(self, where: str):
        self._value = where

    def __enter__(self) -> None:
        self._token = _where.set(self._value)

    def __exit__(self, *exc: object) -> None:
        _where.reset(self._token)


class collecting:
    """``with collecting() as sink:`` gather problems in ``sink`` instead of raising at the first one."""

    __slots__ = ("_sink", "_token")

    def __enter__(self) -> list[Problem]:
        self._sink: list[Problem] = []
        self._token = _sink.set(self._sink)
        return self._sink

    def __exit__(self, *exc: object) -> None:
        _sink.reset(self._token)


def some_of(names: list[str], shown: int = 10) -> str:
    """``names`` for a message: all of them up to ``shown``, else the first ``shown`` and how many more (a warning
    about 6,000 hosts of a large lab stays one readable line)."""
    if len(names) <= shown:
        return ", ".join(names)
    return f"{', '.join(names[:shown])} and {len(names) - shown} more"


def report(field: str, reason: str) -> None:
    problem = Problem(_where.get(), field, reason)
    sink = _sink.get()
    if sink is None:
        raise LabError([problem])
    sink.append(problem)


class GeneratedCodeError(HomelabError):
    """homelab generated code that breaks its own option contract or does not merge: a homelab bug."""

    exit_code = EXIT_GENERATED

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class ReadBackError(HomelabError):
    """nix read a generated file back and its values are not the model's: a homelab bug."""

    exit_code = EXIT_GENERATED

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class UsageError(HomelabError):
    """A command-line mistake (or a library call with options that cannot work), reported like a lab problem."""

    exit_code = EXIT_BAD_INPUT


class MissingTool(HomelabError):
    """A program or device the command needs is not here (nix, KVM, ssh...)."""

    exit_code = EXIT_MISSING


class NotVerified(MissingTool):
    """nix is needed to verify the files and none was found; nothing was written."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


class ProofFailed(HomelabError, AssertionError):
    """A real program did not do what the model says (or the proof's own wiring is wrong)."""

    exit_code = EXIT_FAILED
