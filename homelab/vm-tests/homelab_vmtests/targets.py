"""Which expectations apply to which target: loading them, and telling which lab host a target is.

Expectations come from a JSON file written by ``python -m homelab expect --json``
(one host's object, or all hosts keyed by name), or, when homelab is importable,
straight from the lab under ``--lab-root`` (default: the lab around the current folder).

A target (a testinfra host) is matched to a lab host without contacting it, so
that every pytest-xdist worker collects the same tests:

1. ``--lab-host NAME`` (when there is one target) or ``--lab-host TARGET=NAME``;
2. the target's address is a lab host's name, LAN address or Tailscale address
   (``ssh://root@yomogi``, ``ssh://root@192.168.10.10``);
3. its first DNS label is a lab host's name (``ssh://root@yomogi.home.arpa``);
4. ``local://`` is the machine pytest runs on, named by its hostname.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any, Iterable

SCHEMA = 1


class SetupError(Exception):
    """The suite cannot start: a clear sentence, no traceback."""


def load_expectations(path: str | None, lab_root: str | None) -> dict[str, dict[str, Any]]:
    if path:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise SetupError(f"--expectations {path}: cannot read JSON ({e})") from None
        if isinstance(data, dict) and "checks" in data:
            data = {data.get("host", "?"): data}
        if not isinstance(data, dict) or not all(isinstance(v, dict) and "checks" in v for v in data.values()):
            raise SetupError(f"--expectations {path}: not the output of `python -m homelab expect --json`")
        for name, e in data.items():
            if e.get("schema") != SCHEMA:
                raise SetupError(f"--expectations {path}: host {name} has schema {e.get('schema')!r}, "
                                 f"this suite reads schema {SCHEMA}; regenerate it with this homelab")
        return data
    try:
        from homelab.cli import Usage, find_root
        from homelab.errors import LabError
        from homelab.expect import lab_expectations
        from homelab.load import load_or_raise
    except ImportError as e:
        raise SetupError(f"homelab is not importable ({e}): install it (pip install -e .) or pass "
                         "--expectations FILE written by `python -m homelab expect --json`") from None
    if lab_root:
        root = Path(lab_root)
        if not (root / "hosts" / "cluster.py").is_file():
            raise SetupError(f"no lab at {root} (no hosts/cluster.py): pass --lab-root DIR or --expectations FILE")
    else:
        try:  # the lab around the current folder, as homelab finds it
            root = find_root()
        except Usage as e:
            raise SetupError(f"{e}; or pass --lab-root DIR or --expectations FILE") from None
    try:
        lab, _ = load_or_raise(root)
    except LabError as e:
        raise SetupError("the lab description has problems:\n" + "\n".join(f"  {p}" for p in e.problems)) from None
    return {n: e.to_json() for n, e in lab_expectations(lab).items()}


def parse_overrides(values: Iterable[str]) -> tuple[dict[str, str], str | None]:
    """``--lab-host`` values -> (target id -> lab host, default lab host)."""
    mapping: dict[str, str] = {}
    default: str | None = None
    for v in values:
        if "=" in v:
            target, _, name = v.rpartition("=")
            mapping[target] = name
        elif default is not None and default != v:
            raise SetupError("--lab-host NAME without TARGET= can be given once; use TARGET=NAME for several")
        else:
            default = v
    return mapping, default


def target_address(backend: Any) -> str | None:
    """The address a testinfra backend talks to (None for the local machine)."""
    if backend.get_connection_type() == "local":
        return None
    host = getattr(backend, "host", None)  # ssh / paramiko backends keep a HostSpec
    name = getattr(host, "name", None)
    return name or backend.get_hostname()


def lab_host_for(backend: Any, expectations: dict[str, dict[str, Any]], mapping: dict[str, str],
                 default: str | None, n_targets: int) -> str:
    tid = backend.get_pytest_id()
    for key in (tid, backend.get_hostname()):
        if key in mapping:
            return _known(mapping[key], expectations, f"--lab-host {key}=")
    if default is not None:
        if n_targets != 1:
            raise SetupError(f"--lab-host {default} is ambiguous with {n_targets} targets; use TARGET={default}")
        return _known(default, expectations, "--lab-host")
    addr = target_address(backend)
    if addr is None:
        addr = socket.gethostname()
    for name, e in expectations.items():
        if addr in (name, e.get("address"), e.get("tailscale_address")):
            return name
    short = addr.split(".")[0]
    if short in expectations:
        return short
    raise SetupError(f"{tid}: cannot tell which lab host this is (known: {', '.join(sorted(expectations))}); "
                     f"pass --lab-host NAME or --lab-host {tid}=NAME")


def _known(name: str, expectations: dict[str, Any], where: str) -> str:
    if name not in expectations:
        raise SetupError(f"{where}{name}: no such host in the expectations (known: {', '.join(sorted(expectations))})")
    return name
