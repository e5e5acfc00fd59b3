"""What homelab is called: its name on PyPI, its version, and the program name the user ran.

The distribution is ``nixos-homelab`` (``pip install nixos-homelab``): PyPI's ``homelab`` is another
project.  The command and the import stay ``homelab``.  Messages that tell the user what to run next name
the command they ran: ``homelab build`` after ``homelab``, ``python -m homelab build`` after
``python -m homelab``.  Imports nothing from homelab.
"""

from __future__ import annotations

import os

DISTRIBUTION = "nixos-homelab"
_program = ["homelab"]


def invoked_as(argv0: str, orig_argv: list[str] | None = None) -> str:
    """The program name from ``sys.argv[0]`` (and ``sys.orig_argv`` for ``python -m homelab``)."""
    name = os.path.basename(argv0 or "")
    if name in ("__main__.py", "-m", "-c", ""):  # python -m homelab
        python = os.path.basename(orig_argv[0]) if orig_argv else "python"
        return f"{python or 'python'} -m homelab"
    return name


def program() -> str:
    """The command the user ran (``homelab`` unless told otherwise by the entry point)."""
    return _program[0]


def set_program(name: str) -> None:
    _program[0] = name or "homelab"
