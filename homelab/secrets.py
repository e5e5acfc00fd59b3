"""Secrets never go into generated files: they would land world-readable in /nix/store.

Generated files and everything nix evaluates from them end up in the Nix store,
which every user of the machine can read.  Secrets belong in files outside the
store, named by path (``authKeyFile``, ``passwordFile``...).  These helpers
recognise a secret by its shape (a Tailscale key, a password hash, a private
key...) or by the option it is given to, and say what to do instead without
ever echoing the secret.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

_SECRET_VALUES: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"tskey-[A-Za-z0-9_-]{4,}"), "a Tailscale key"),
    (re.compile(r"^\$(1|2[abxy]?|5|6|7|y|gy|sha1|md5|argon2(?:id|i|d))\$"), "a password hash (crypt format)"),
    (re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----"), "a private key"),
    (re.compile(r"AGE-SECRET-KEY-1[0-9A-Z]{10,}"), "an age secret key"),
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})"), "a GitHub token"),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), "an AWS access key"),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), "a Slack token"),
    (re.compile(r"\b[a-z0-9]{6}\.(?=[a-z0-9]*[0-9])(?=[a-z0-9]*[a-z])[a-z0-9]{16}\b"),
     "a Kubernetes bootstrap token"),
)

# Option names (last path component, lower case) that hold a secret in clear.
_SECRET_NAMES = ("password", "hashedpassword", "initialpassword", "initialhashedpassword", "secret",
                 "token", "apikey", "apitoken", "authkey", "privatekey", "clientsecret", "secretkey", "psk")


def secret_kind(text: Any) -> str | None:
    """What secret ``text`` looks like ("a Tailscale key", ...), or None."""
    if not isinstance(text, str):
        return None
    for pattern, kind in _SECRET_VALUES:
        if pattern.search(text):
            return kind
    return None


def redact(text: str) -> str:
    """A secret-looking value as it may appear in a message: its first characters only."""
    return repr(text[:6] + "…")


def in_store(path: str) -> bool:
    return path == "/nix/store" or path.startswith("/nix/store/")


def _secret_name(name: str) -> bool:
    low = name.lower().replace("_", "").replace("-", "")
    return any(low == n or low.endswith(n) for n in _SECRET_NAMES)


def _strings(value: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str | None, Any]]:
    """(attribute path, name it sits under, value) for every leaf and key of an option value."""
    if isinstance(getattr(type(value), "inner", None), property):  # a PkgCall's args, a Priority's value
        yield from _strings(value.inner, path)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v, path)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield path + (str(k),), None, k
            yield from _strings(v, path + (str(k),))
    else:
        yield path, path[-1] if path else None, value


def option_problems(path: tuple[str, ...], value: Any) -> list[str]:
    """Why the raw option at ``path`` would leak a secret (one reason per leaf), or nothing."""
    out: list[str] = []
    for path, name, leaf in _strings(value, path):
        dotted = ".".join(path)
        kind = secret_kind(leaf)
        if kind:
            target = (f"{dotted}File" if name and _secret_name(name) else "the option's *File variant")
            if kind == "a Tailscale key":
                target = "Tailscale(auth_key_file=...) or services.tailscale.authKeyFile"
            out.append(f"{redact(leaf)} looks like {kind}; generated files and the Nix store are world-readable, "
                       f"so put it in a file outside the store and set {target} to that file's absolute path")
        elif name and isinstance(leaf, str) and leaf and _secret_name(name):
            out.append(f"{dotted} would put a secret in clear into the world-readable Nix store; put it in a "
                       f"file outside the store and set {dotted}File (or the option's *File variant) to its path")
        elif name and name.endswith("File") and isinstance(leaf, str) and not leaf.startswith("/"):
            out.append(f"{dotted} = {leaf!r} is not an absolute path (a *File option names a file, "
                       "it does not hold the secret)")
        elif name and _secret_name(name.removesuffix("File")) and isinstance(leaf, str) and in_store(leaf):
            out.append(f"{dotted} = {leaf!r} lies in the Nix store, which every user can read; keep secrets "
                       "outside it (e.g. /run/secrets)")
    return out


