"""A tiny model of the NixOS option types homelab emits: check a value, merge definitions.

Values here are in *evaluated form*: what ``nix-instantiate --eval --json``
prints for a generated file, with two tagged shapes kept visible by the stand-in
``lib`` and ``pkgs`` (see :mod:`homelab.readback`):

* ``{"_type": "override", "priority": 50, "content": v}`` — ``lib.mkForce v``
* ``{"_type": "pkg", "attrPath": "linuxPackages_rpi4"}`` — ``pkgs.linuxPackages_rpi4``

Merging follows what each NixOS type does with several definitions: lists
concatenate, ``lines`` join with newlines, ``separatedString`` joins with its
separator, attribute sets merge per key, and two different scalars conflict.
Definitions with a stronger priority (lower number) hide weaker ones.
"""

from __future__ import annotations

import re
from typing import Any

import attrs

DEFAULT_PRIORITY = 100


class MergeConflict(ValueError):
    pass


def is_override(v: Any) -> bool:
    return isinstance(v, dict) and v.get("_type") == "override"


def is_pkg(v: Any) -> bool:
    """A package: ``pkgs.<name>`` or the result of a nixpkgs function such as dockerTools.pullImage."""
    return isinstance(v, dict) and v.get("_type") in ("pkg", "pkg-call")


class OptionType:
    nix: str = "?"

    def check(self, v: Any) -> str | None:  # a reason, or None when the value fits
        raise NotImplementedError

    def merge(self, values: list[Any]) -> Any:
        first = values[0]
        for other in values[1:]:
            if other != first:
                raise MergeConflict(f"conflicting definitions {first!r} and {other!r}")
        return first

    def __str__(self) -> str:
        return self.nix


@attrs.frozen
class Scalar(OptionType):
    nix: str
    pytype: type | tuple[type, ...]
    pattern: str | None = None
    lo: int | None = None
    hi: int | None = None

    def check(self, v: Any) -> str | None:
        if isinstance(v, bool) and self.pytype is not bool:
            return f"{v!r} is not {self.nix}"
        if not isinstance(v, self.pytype):
            return f"{v!r} is not {self.nix}"
        if self.pattern is not None and not re.fullmatch(self.pattern, v):
            return f"{v!r} does not match {self.pattern}"
        if self.lo is not None and not (self.lo <= v <= self.hi):
            return f"{v!r} is outside {self.lo}..{self.hi}"
        return None


@attrs.frozen
class Joined(OptionType):
    """``types.lines`` (separator newline) and ``types.separatedString sep``."""

    nix: str
    sep: str

    def check(self, v: Any) -> str | None:
        return None if isinstance(v, str) else f"{v!r} is not a string"

    def merge(self, values: list[Any]) -> Any:
        return self.sep.join(values)


@attrs.frozen
class Enum(OptionType):
    choices: tuple[Any, ...]

    @property
    def nix(self) -> str:  # type: ignore[override]
        return "enum [ " + " ".join(f'"{c}"' for c in self.choices) + " ]"

    def check(self, v: Any) -> str | None:
        return None if v in self.choices else f"{v!r} is not one of {list(self.choices)}"


@attrs.frozen
class ListOf(OptionType):
    elem: OptionType

    @property
    def nix(self) -> str:  # type: ignore[override]
        return f"listOf ({self.elem})"

    def check(self, v: Any) -> str | None:
        if not isinstance(v, list):
            return f"{v!r} is not a list"
        for i, e in enumerate(v):
            why = self.elem.check(e)
            if why:
                return f"element {i}: {why}"
        return None

    def merge(self, values: list[Any]) -> Any:
        return [e for v in values for e in v]


@attrs.frozen
class NullOr(OptionType):
    elem: OptionType

    @property
    def nix(self) -> str:  # type: ignore[override]
        return f"nullOr ({self.elem})"

    def check(self, v: Any) -> str | None:
        return None if v is None else self.elem.check(v)

    def merge(self, values: list[Any]) -> Any:
        if all(v is None for v in values):
            return None
        if any(v is None for v in values):
            raise MergeConflict(f"null defined together with a value: {values!r}")
        return self.elem.merge(values)


@attrs.frozen
class Either(OptionType):
    """``either a b`` / ``oneOf`` / ``coercedTo``: the first alternative that fits."""

    alts: tuple[OptionType, ...]

    @property
    def nix(self) -> str:  # type: ignore[override]
        return "oneOf [ " + " ".join(f"({a})" for a in self.alts) + " ]"

    def check(self, v: Any) -> str | None:
        reasons = [a.check(v) for a in self.alts]
        return None if any(r is None for r in reasons) else f"{v!r} fits none of {self.nix}"

    def merge(self, values: list[Any]) -> Any:
        for a in self.alts:
            if all(a.check(v) is None for v in values):
                return a.merge(values)
        raise MergeConflict(f"definitions of different kinds: {values!r}")


@attrs.frozen
class AttrsOf(OptionType):
    elem: OptionType

    @property
    def nix(self) -> str:  # type: ignore[override]
        return f"attrsOf ({self.elem})"

    def check(self, v: Any) -> str | None:
        if not isinstance(v, dict) or is_pkg(v) or is_override(v):
            return f"{v!r} is not an attribute set"
        for k, e in v.items():
            why = check_with_priority(self.elem, e)
            if why:
                return f"{k}: {why}"
        return None

    def merge(self, values: list[Any]) -> Any:
        keys: list[str] = []
        for v in values:
            keys += [k for k in v if k not in keys]
        return {k: merge_definitions(self.elem, [v[k] for v in values if k in v]) for k in sorted(keys)}


@attrs.frozen
class Submodule(OptionType):
    fields: dict[str, OptionType] = attrs.field(hash=False)

    nix = "submodule"

    def check(self, v: Any) -> str | None:
        if not isinstance(v, dict) or is_pkg(v) or is_override(v):
            return f"{v!r} is not an attribute set"
        for k, e in v.items():
            if k not in self.fields:
                return f"{k!r} is not an option of this submodule (known: {', '.join(self.fields)})"
            why = check_with_priority(self.fields[k], e)
            if why:
                return f"{k}: {why}"
        return None

    def merge(self, values: list[Any]) -> Any:
        keys = sorted({k for v in values for k in v})
        return {k: merge_definitions(self.fields[k], [v[k] for v in values if k in v]) for k in keys}


@attrs.frozen
class Package(OptionType):
    nix = "package"

    def check(self, v: Any) -> str | None:
        return None if is_pkg(v) else f"{v!r} is not a package (pkgs.<name> or a pkgs function's result)"


def check_with_priority(t: OptionType, v: Any) -> str | None:
    if is_override(v):
        if "content" not in v:  # a set a lab's own role wrote by hand, not what force()/default() make
            return f"{v!r} is an override (lib.mkOverride) without its content"
        return t.check(v["content"])
    return t.check(v)


def merge_definitions(t: OptionType, defs: list[Any]) -> Any:
    """Combine one option's definitions (in module order) the way NixOS would."""
    if not defs:
        raise MergeConflict("no definitions")
    best = min((d["priority"] if is_override(d) else DEFAULT_PRIORITY) for d in defs)
    kept = [
        d["content"] if is_override(d) else d
        for d in defs
        if (d["priority"] if is_override(d) else DEFAULT_PRIORITY) == best
    ]
    return t.merge(kept)


# The building blocks, named as nixpkgs names them.
bool_ = Scalar("bool", bool)
str_ = Scalar("str", str)
int_ = Scalar("int", int)
port = Scalar("port", int, lo=0, hi=65535)
path = Scalar("path", str, pattern=r"/.*")
lines = Joined("lines", "\n")


def separatedString(sep: str) -> Joined:
    return Joined(f'separatedString "{sep}"', sep)


def strMatching(pattern: str) -> Scalar:
    return Scalar(f'strMatching "{pattern}"', str, pattern=pattern)


# systemd's unitOption: a value or list of values of the primitive kinds
_unit_atom = Either((bool_, int_, str_))
unitOption = Either((_unit_atom, ListOf(_unit_atom)))
anything = Either((bool_, int_, str_, Package(), ListOf(Scalar("any", object)), Scalar("attrs", dict)))
