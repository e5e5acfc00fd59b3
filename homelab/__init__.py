"""homelab: a typed NixOS + Kubernetes home lab, compiled to NixOS modules and proven by real nix.

    from homelab import Cluster, Host, ControlPlane, Worker

The model (:mod:`homelab.model`), the built-in roles (:mod:`homelab.roles`), the
role interface for your own roles (:mod:`homelab.role`, :mod:`homelab.fields`,
:mod:`homelab.checks`), and the pipeline as a library (:func:`load_lab`,
:func:`check`, :mod:`homelab.build`, :mod:`homelab.expect`, :mod:`homelab.labtest`).
docs/api.md has a worked example.
"""

import importlib

from . import registry

# What ``from homelab import ...`` gives, and where it lives.  Imported on first use, so that
# ``python -m homelab build`` can answer a no-op build before loading the model (homelab/uptodate.py).
# The built-in roles' and components' names come from their registry (homelab/registry.py, names only).
_EXPORTS = {
    **dict.fromkeys(("LabError", "Problem"), ".errors"),
    **dict.fromkeys(("PLACEHOLDER_KEY", "Cluster", "OpenPort", "FrozenDict", "Host", "Lab", "Pkg", "PkgCall",
                     "Priority", "RaspberryPi4", "Secret", "Ssh", "SystemdBoot", "WakeOnLan", "default", "force"), ".model"),
    "Role": ".role",
    "Component": ".component",
    **{name: f".roles.{folder}" for name, folder in registry.public().items()},
}


def __getattr__(name: str):
    where = _EXPORTS.get(name)
    if where is None:
        raise AttributeError(f"module 'homelab' has no attribute {name!r}")
    value = getattr(importlib.import_module(where, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


def load_lab(root):
    """The validated lab in the folder ``root`` (holding hosts/cluster.py); LabError lists every problem."""
    from pathlib import Path

    from .load import load_or_raise

    lab, _warnings = load_or_raise(Path(root))
    return lab


def check(lab):
    """Validate a lab (e.g. built in code): its warnings, or LabError carrying every error at once."""
    from .build import check as check_lab

    return check_lab(lab)


__all__ = sorted([*_EXPORTS, "check", "load_lab"])
__version__ = "0.1.0"
