"""The values a lab writes as Nix, besides plain data: packages, function calls, priorities, frozen sets.

``Pkg("htop")`` is ``pkgs.htop``; ``PkgCall("dockerTools.pullImage", {...})`` is a call of a nixpkgs
function; ``force(v)`` / ``default(v)`` are ``lib.mkForce`` / ``lib.mkDefault``.  Every value is
immutable all the way down (:func:`freeze`: lists become tuples, dicts :class:`FrozenDict`), so a
Host holding them can be hashed and shared.  :mod:`homelab.model` re-exports all of them.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import attrs

from . import fields
from .fields import instance_of

# How deep an option value may nest (lists in sets in lists...).  NixOS modules rarely go past 6; a
# value nested deeper than this, or one that contains itself, is refused as a mistake, before it could
# exhaust the emitter's or nix's recursion.
MAX_VALUE_DEPTH = 32

# ---------------------------------------------------------------- immutable values


class FrozenDict(dict):
    """A dict that cannot change and can be hashed (its values are frozen too).

    A dict subclass, so JSON, ``==`` with plain dicts and ``isinstance(v, dict)``
    keep working; every method that would change it raises TypeError.
    """

    __slots__ = ("_hash",)

    def _refuse(self, *a: Any, **kw: Any) -> None:
        raise TypeError("a FrozenDict cannot be changed; build a new one (dict(d, key=value))")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _refuse  # type: ignore

    def __hash__(self) -> int:  # type: ignore[override]
        try:
            return self._hash
        except AttributeError:
            h = hash(frozenset(self.items()))
            object.__setattr__(self, "_hash", h)
            return h

    def __repr__(self) -> str:
        return dict.__repr__(self)

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: dict) -> FrozenDict:
        return self

    def __reduce__(self):
        return (FrozenDict, (dict(self),))


class TooDeep(ValueError):
    pass


def freeze(value: Any, depth: int = 0) -> Any:
    """``value`` with lists as tuples and dicts as FrozenDicts, all the way down.

    ValueError (:class:`TooDeep`) for a value nested deeper than
    :data:`MAX_VALUE_DEPTH` levels, which is also what a list or dict that
    contains itself looks like; TypeError for a set (it has no order to write).
    """
    if depth > MAX_VALUE_DEPTH:
        raise TooDeep(f"is nested more than {MAX_VALUE_DEPTH} levels deep (or contains itself); NixOS options "
                      "are never that deep")
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Priority):
        return Priority(freeze(value.value, depth + 1), value.priority)
    if isinstance(value, PkgCall):
        return PkgCall(value.function, freeze(value.args, depth + 1))
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v, depth + 1) for v in value)
    if isinstance(value, Mapping):
        return FrozenDict((k, freeze(v, depth + 1)) for k, v in value.items())
    if isinstance(value, (set, frozenset)):
        raise TypeError("a set has no order; use a list")
    return value  # Pkg, addresses, and what the emitter refuses with its own reason


def _freeze_or_keep(value: Any) -> Any:
    try:
        return freeze(value)
    except (ValueError, TypeError, RecursionError):
        return value  # validation reports it


# ---------------------------------------------------------------- values written as Nix expressions


@attrs.frozen
class Pkg:
    """A package from nixpkgs, written as ``pkgs.<name>`` (for raw options)."""

    name: str = attrs.field(validator=fields.typed(
        str, "a package attribute path (a string)",
        lambda v: re.fullmatch(r"[A-Za-z_][A-Za-z0-9_'-]*(\.[A-Za-z_][A-Za-z0-9_'-]*)*", v) is not None,
        lambda v: f"{v!r} is not a package attribute path such as 'htop' or 'linuxPackages_rpi4'"))


@attrs.frozen
class PkgCall:
    """A call of a nixpkgs function, written as ``pkgs.<function> { <args> }``."""

    function: str = attrs.field(validator=fields.typed(
        str, "a function path (a string)",
        lambda v: re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", v) is not None,
        lambda v: f"{v!r} is not a function path such as 'dockerTools.pullImage'"))
    args: Mapping[str, Any] = attrs.field(converter=_freeze_or_keep,
                                          validator=instance_of(dict, "an attribute set of arguments"))

    @property
    def inner(self) -> Any:
        """The value it wraps (what homelab.secrets looks inside)."""
        return self.args


@attrs.frozen
class Priority:
    """A value with a module-system priority: ``lib.mkForce`` (50), ``lib.mkDefault`` (1000)."""

    value: Any = attrs.field(converter=_freeze_or_keep)
    # lib.mkOverride takes any integer; the module system's own range is 10 (mkVMOverride) to 1500
    priority: int = attrs.field(validator=fields.typed(
        int, "a whole number", lambda v: 0 <= v <= 100_000,
        lambda v: f"{v!r} is not a module priority (0-100000; mkForce is 50, mkDefault 1000)"))

    @property
    def inner(self) -> Any:
        """The value it wraps (what homelab.secrets looks inside)."""
        return self.value


def force(value: Any) -> Priority:
    return Priority(value, 50)


def default(value: Any) -> Priority:
    return Priority(value, 1000)
