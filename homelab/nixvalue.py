"""Write Python data as Nix values, nixfmt (RFC 166) style.

Strings are the dangerous part: anything a user typed must stay inside its Nix
string.  Single-line strings use ``"..."`` with ``\\``, ``"``, ``${`` and control
characters escaped.  Multi-line text (firewall commands, CoreDNS and nginx
configs) uses an indented string ``''...''`` when that form round-trips exactly;
otherwise it falls back to a double-quoted string with ``\\n``.  The hypothesis
tests feed hostile strings through real ``nix`` to hold this to account.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Any

from .model import Pkg, PkgCall, Priority

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_'-]*\Z")
_KEYWORDS = {"if", "then", "else", "assert", "with", "let", "in", "rec", "inherit", "or"}
INT_MIN, INT_MAX = -(2**63), 2**63 - 1


class NixValueError(ValueError):
    pass


# a string with none of the characters quote() escapes or refuses: written as it is, between quotes
_PLAIN = re.compile(r'[^\\"$\n\r\t\x00\ud800-\udfff]*')


def quote(s: str) -> str:
    """A double-quoted Nix string equal to ``s``."""
    if _PLAIN.fullmatch(s):  # most strings: nothing to escape (the checks and replacements below change nothing)
        return f'"{s}"'
    if "\x00" in s:
        raise NixValueError("Nix strings cannot contain NUL characters")
    if any("\ud800" <= c <= "\udfff" for c in s):
        raise NixValueError("a lone surrogate cannot be written as UTF-8")
    out = (
        s.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("${", "\\${")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{out}"'


def attr_name(name: str) -> str:
    """An attribute name, bare when Nix allows it, quoted otherwise."""
    if not isinstance(name, str):
        raise NixValueError(f"attribute names must be strings, not {name!r}")
    return _attr_name(name)


@functools.lru_cache(maxsize=1 << 16)
def _attr_name(name: str) -> str:
    # the same few hundred option names in every host's files (and each host's name once): worked out once each
    if _IDENT.match(name) and name not in _KEYWORDS:
        return name
    return quote(name)


def attr_path(path: tuple[str, ...] | list[str]) -> str:
    if type(path) is tuple:
        try:
            return _attr_path(path)
        except TypeError:  # a name that is no string (unhashable): attr_name says what is wrong
            pass
    return ".".join(attr_name(p) for p in path)


@functools.lru_cache(maxsize=1 << 14)
def _attr_path(path: tuple[str, ...]) -> str:
    return ".".join(attr_name(p) for p in path)


def _indented_ok(s: str) -> bool:
    """Whether ``s`` can be written as an indented string that evaluates back to ``s``.

    Kept deliberately narrow: text ending in a newline; a ``'`` only alone
    (never two in a row, which end the string, and never right before ``$``,
    where the escape of ``${`` would put two more quotes after it); no CR or
    tab; every non-empty line starting with a visible character at column 0
    somewhere (so Nix strips exactly the indentation we add); and no
    whitespace-only lines.
    """
    if not s.endswith("\n") or len(s) < 2:
        return False
    if "''" in s or "'$" in s or "\r" in s or "\t" in s or "\x00" in s:
        return False
    lines = s[:-1].split("\n")
    if any(line.strip() == "" and line != "" for line in lines):
        return False
    if not any(line and not line[0].isspace() for line in lines):
        return False
    # unicode whitespace other than ' ' could be taken for indentation by nobody,
    # but keep the form for plain text only.
    return all(line == "" or not line[0].isspace() or line[0] == " " for line in lines)


def _indented(s: str, indent: str) -> str:
    body = []
    for line in s[:-1].split("\n"):
        line = line.replace("${", "''${")
        body.append(f"{indent}  {line}" if line else "")
    return "''\n" + "\n".join(body) + f"\n{indent}''"


def is_simple(value: Any) -> bool:
    return not isinstance(value, (list, tuple, dict)) and not (isinstance(value, str) and "\n" in value)


def render(value: Any, indent: str = "") -> str:
    """Nix source for ``value``; ``indent`` is the indentation of the line it starts on."""
    # the common types first, by exact type (a lab's files are mostly strings, attribute sets and lists); every
    # other value, subclasses too, goes through _render's checks
    kind = type(value)
    if kind is str:
        return _text(value, indent) if "\n" in value else quote(value)
    if kind is dict:
        if not value:
            return "{ }"
        inner = indent + "  "
        parts = ["{\n"]
        for k, v in value.items():  # a one-line string or null (most of a lab's values) without another call
            kv = type(v)
            text = quote(v) if kv is str and "\n" not in v else "null" if v is None else render(v, inner)
            parts.append(f"{inner}{attr_name(k)} = {text};\n")
        parts.append(f"{indent}}}")
        return "".join(parts)
    if kind is bool:
        return "true" if value else "false"
    if kind is list or kind is tuple:  # what _render does with them, without its checks of the other types first
        return _list(value, indent)
    if kind is int:
        return _int(value)
    return _render(value, indent)


@functools.lru_cache(maxsize=1024)
def _text(value: str, indent: str) -> str:
    # a multi-line string (a host's firewall commands): most hosts of a lab have the same text, written once
    if _indented_ok(value):
        return _indented(value, indent)
    return quote(value)


def _render(value: Any, indent: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return _int(value)
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv4Network)):
        return quote(str(value))
    if isinstance(value, str):
        if "\n" in value and _indented_ok(value):
            return _indented(value, indent)
        return quote(value)
    if isinstance(value, Pkg):
        return "pkgs." + attr_path(value.name.split("."))
    if isinstance(value, PkgCall):
        return "pkgs." + attr_path(value.function.split(".")) + " " + render(value.args, indent)
    if isinstance(value, Priority):
        inner = render(value.value, indent)
        fn = {50: "lib.mkForce", 1000: "lib.mkDefault"}.get(value.priority)
        head = fn if fn else f"lib.mkOverride {value.priority}"
        return f"{head} {inner}"
    if isinstance(value, (list, tuple)):
        return _list(value, indent)
    if isinstance(value, dict):
        if not value:
            return "{ }"
        lines = []
        for k, v in value.items():
            lines.append(f"{indent}  {attr_name(k)} = {render(v, indent + '  ')};\n")
        return "{\n" + "".join(lines) + f"{indent}}}"
    raise NixValueError(f"cannot write {type(value).__name__} {value!r} as a Nix value")


def _int(value: int) -> str:
    if not INT_MIN <= value <= INT_MAX:
        raise NixValueError(f"{value} does not fit in a Nix integer")
    if value == INT_MIN:  # the literal 9223372036854775808 does not exist in Nix
        return f"({INT_MIN + 1} - 1)"
    return f"({value})" if value < 0 else str(value)


def _list(value: list | tuple, indent: str) -> str:
    if not value:
        return "[ ]"
    items = [_element(v, indent + "  ") for v in value]
    if len(items) == 1 and is_simple(value[0]):
        return f"[ {items[0]} ]"
    return "[\n" + "".join(f"{indent}  {i}\n" for i in items) + f"{indent}]"


def _element(value: Any, indent: str) -> str:
    if isinstance(value, Priority):
        raise NixValueError("lib.mkForce / lib.mkDefault apply to a whole option value, not a list element")
    if isinstance(value, PkgCall):  # a function call is two list elements without parentheses
        return f"({render(value, indent)})"
    return render(value, indent)


def uses(value: Any) -> set[str]:
    """Which module arguments (``lib``, ``pkgs``) a value refers to."""
    if isinstance(value, Pkg):
        return {"pkgs"}
    if isinstance(value, PkgCall):
        return {"pkgs"} | uses(value.args)
    if isinstance(value, Priority):
        return {"lib"} | uses(value.value)
    if isinstance(value, (list, tuple)):
        return set().union(*(uses(v) for v in value)) if value else set()
    if isinstance(value, dict):
        return set().union(*(uses(v) for v in value.values())) if value else set()
    return set()


def uses_into(value: Any, out: set[str]) -> None:
    """Add to ``out`` what :func:`uses` gives for ``value``: the plain types (most of a lab's values) by their exact
    type, without :func:`uses`' checks and sets; every other value (a subclass too) through :func:`uses`."""
    kind = type(value)
    if kind is str or kind is bool or kind is int or value is None:
        return
    if kind is dict:
        for v in value.values():
            uses_into(v, out)
    elif kind is list or kind is tuple:
        for v in value:
            uses_into(v, out)
    else:
        out |= uses(value)
