"""Problems in a lab description, reported as host + field + reason.

A field validator calls :func:`report`.  Used directly from Python it raises
:class:`LabError` at once (fail fast, like any attrs validator).  While the
loader reads ``hosts/`` it wraps the work in :func:`collecting`, so every
problem of every file is gathered and the user sees them all in one run.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

import attrs


@attrs.frozen
class Problem:
    where: str  # "hosts/yomogi", "cluster", ...
    field: str  # "address", "IngressProxy.http_nodeport", ...
    reason: str
    severity: str = "error"  # or "warning"

    def __str__(self) -> str:
        tag = "" if self.severity == "error" else "warning: "
        return f"{self.where}: {self.field}: {tag}{self.reason}"


class LabError(Exception):
    """One or more problems that stop a build before anything is written."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


_where: contextvars.ContextVar[str] = contextvars.ContextVar("where", default="lab")
_sink: contextvars.ContextVar[list[Problem] | None] = contextvars.ContextVar("sink", default=None)


@contextlib.contextmanager
def located(where: str) -> Iterator[None]:
    """Problems reported inside this block are attributed to ``where``."""
    token = _where.set(where)
    try:
        yield
    finally:
        _where.reset(token)


@contextlib.contextmanager
def collecting() -> Iterator[list[Problem]]:
    """Gather problems instead of raising at the first one."""
    sink: list[Problem] = []
    token = _sink.set(sink)
    try:
        yield sink
    finally:
        _sink.reset(token)


def report(field: str, reason: str) -> None:
    problem = Problem(_where.get(), field, reason)
    sink = _sink.get()
    if sink is None:
        raise LabError([problem])
    sink.append(problem)


class GeneratedCodeError(Exception):
    """homelab generated code that breaks its own option contract or does not merge: a homelab bug."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))
