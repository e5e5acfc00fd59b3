"""A small YAML writer for the cluster layer's files: block style, flat, commented, deterministic.

Values are dicts (keys kept in the order given), lists, strings, whole numbers, booleans and None.
:class:`Commented` puts a comment above a value, the way a person annotates values.yaml.  A string is
written plain only where every YAML 1.1 and 1.2 reader (helm's sigs.k8s.io/yaml, PyYAML) reads it back as
that same string; otherwise it is double-quoted as JSON quotes it (a JSON string is a YAML
double-quoted scalar), or written as a literal block when it spans lines.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import attrs

__all__ = ["Commented", "dump", "plain"]


@attrs.frozen
class Commented:
    """``value`` with ``comment`` written above it (wrapped, one ``#`` line each)."""

    value: Any
    comment: str


_PLAIN = re.compile(r"[A-Za-z_/.][A-Za-z0-9_./@+-]*(:[A-Za-z0-9_./@+-]+)*\Z")
# words YAML 1.1 (helm's reader among them) turns into booleans or null
_SPECIAL = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~", "nan", "inf", ".nan", ".inf", "-.inf",
            "+.inf"}
WIDTH = 100


def plain(s: str) -> bool:
    """Whether ``s`` reads back as itself unquoted (no number, boolean or null look-alike)."""
    if not _PLAIN.match(s) or s.lower() in _SPECIAL or s.startswith(".") and s[1:].replace(".", "").isdigit():
        return False
    try:
        float(s.replace("_", ""))
        return False
    except ValueError:
        return True


def quoted(s: str) -> str:
    """A YAML double-quoted scalar: printable characters as they are, every other one (controls, line and
    paragraph separators, unassigned code points) as YAML's ``\\x``, ``\\u`` or ``\\U`` escape."""
    out = ['"']
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif c.isprintable():
            out.append(c)
        else:
            n = ord(c)
            out.append(f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}")
    out.append('"')
    return "".join(out)


def _scalar(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return v if plain(v) else quoted(v)
    raise TypeError(f"no YAML for {type(v).__name__}")


def _key(k: Any) -> str:
    if not isinstance(k, str):
        raise TypeError(f"YAML keys here are strings, not {type(k).__name__}")
    return _scalar(k)


def _comment(text: str, indent: str) -> list[str]:
    out = []
    text = "".join(c if c.isprintable() or c == "\n" else " " for c in text)
    for para in text.split("\n"):
        out += [f"{indent}# {line}" for line in textwrap.wrap(para, WIDTH - len(indent) - 2)] or [f"{indent}#"]
    return out


def _block_string(s: str) -> bool:
    return "\n" in s.rstrip("\n") and s.replace("\n", "").isprintable() and all(
        line == line.rstrip() and "\t" not in line for line in s.split("\n")) and not s.startswith(" ")


def _value_lines(v: Any, indent: str) -> tuple[str, list[str]]:
    """(what follows ``key:`` on its own line, the lines below it)."""
    if isinstance(v, dict):
        if not v:
            return " {}", []
        return "", _mapping(v, indent + "  ")
    if isinstance(v, (list, tuple)):
        if not v:
            return " []", []
        return "", _sequence(v, indent + "  ")
    if isinstance(v, str) and _block_string(v):
        chomp = "" if v.endswith("\n") and not v.endswith("\n\n") else "-"
        if v.endswith("\n\n"):
            raise ValueError("a block string ends in one newline at most")
        return f" |{chomp}", [f"{indent}  {line}" if line else "" for line in v.rstrip("\n").split("\n")]
    return " " + _scalar(v), []


def _mapping(d: dict, indent: str) -> list[str]:
    out: list[str] = []
    for k, v in d.items():
        if isinstance(v, Commented):
            out += _comment(v.comment, indent)
            v = v.value
        head, below = _value_lines(v, indent)
        out.append(f"{indent}{_key(k)}:{head}")
        out += below
    return out


def _sequence(items, indent: str) -> list[str]:
    out: list[str] = []
    for v in items:
        if isinstance(v, Commented):
            out += _comment(v.comment, indent)
            v = v.value
        if isinstance(v, dict) and v:
            inner = _mapping(v, indent + "  ")
            # the first key goes on the dash's line (its comment, if any, above the dash)
            first = next(i for i, line in enumerate(inner) if not line.lstrip().startswith("#"))
            out += [line.replace(indent + "  ", indent, 1) for line in inner[:first]]
            out.append(indent + "- " + inner[first][len(indent) + 2:])
            out += inner[first + 1:]
        else:
            head, below = _value_lines(v, indent)
            out.append(f"{indent}-{head}")
            out += below
    return out


def dump(value: dict) -> str:
    """The YAML text of a mapping (top level), ending with a newline."""
    if not isinstance(value, dict):
        raise TypeError("the top level is a mapping")
    if not value:
        return "{}\n"
    return "\n".join(_mapping(value, "")) + "\n"
