"""What a generated NixOS module file is made of: sections of option definitions.

A :class:`Module` is what a role asks for — a file path, a title and its
:class:`Section` s — and a :class:`ModuleFile` is what the build writes: the same
plus its header source and imports.  Definitions are ``(option path, value)``
pairs; the path is dotted (``"services.x.enable"``) or, where a name holds a
dot, a tuple (``("networking", "interfaces", "eth0.10", ...)``).
"""

from __future__ import annotations

from typing import Any

import attrs

OptPath = tuple[str, ...]


def opt(dotted: str) -> OptPath:
    return tuple(dotted.split("."))


_PATHS: dict[str, OptPath] = {}  # dotted path -> its parts: the same few hundred paths in every host's sections


def _parts(p: str | OptPath) -> OptPath:
    if isinstance(p, tuple):
        return p
    if type(p) is not str:  # a str subclass or anything else: split as it is, not remembered
        return opt(p)
    parts = _PATHS.get(p)
    if parts is None:
        parts = opt(p)
        if len(_PATHS) < 1 << 14:
            _PATHS[p] = parts
    return parts


@attrs.frozen
class Section:
    """A group of definitions under one comment, like a paragraph of a hand-written module."""

    comment: str
    defs: tuple[tuple[OptPath, Any], ...]
    user: bool = False  # raw options from host.py: the user's own, exempt from the contract


def section(comment: str, *defs: tuple[str | OptPath, Any], user: bool = False) -> Section:
    """Definitions by dotted path ("services.x.enable") or, where a name may hold a dot, by tuple."""
    return Section(comment, tuple([(_parts(p), v) for p, v in defs]), user)


@attrs.frozen
class Module:
    """A module file a role wants on its host.

    ``path`` is relative to the lab root (``modules/<topic>/<name>.nix``).  Hosts
    whose roles ask for the same path with the same sections share one file;
    different sections under one path become ``<name>-2.nix``, ``-3`` and so on.
    ``source`` completes the header's "Source: hosts/cluster.py and ..." line;
    None says "the <Role> role in host.py", "" leaves it at hosts/cluster.py
    (a file that only depends on the cluster).
    """

    path: str
    title: str
    sections: tuple[Section, ...] = attrs.field(converter=tuple)
    source: str | None = None


@attrs.frozen
class ModuleFile:
    path: str  # relative to the lab root
    title: str  # what the file is about, for its header
    source: str  # what it was generated from
    imports: tuple[str, ...]  # as written in the file, relative to it
    sections: tuple[Section, ...]
    owner: type | None = attrs.field(default=None, eq=False)  # the role class that asked for it, if one did

    def definitions(self) -> list[tuple[OptPath, Any]]:
        return [d for s in self.sections for d in s.defs]
