"""A testinfra backend that runs commands through the NixOS test driver's machine objects.

Inside ``nix flake check`` the VMs are reachable only through the driver's
``Machine`` objects (``machine.execute(cmd) -> (status, stdout)``).  This
backend makes them testinfra hosts named ``nixos-driver://<node>``, so the same
suite that runs over SSH runs there unchanged:

    from homelab_vmtests.driver import run_suite
    run_suite({"yomogi": yomogi}, expectations="/nix/store/...-expect.json", scope="host")

The registry is in-process: this backend cannot be combined with pytest-xdist
(``-n``), whose workers are separate processes without the VMs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

from testinfra.backend import BACKENDS
from testinfra.backend.base import BaseBackend, CommandResult

NAME = "nixos-driver"
MACHINES: dict[str, Any] = {}
COMMAND_TIMEOUT = 300  # seconds for one command inside a VM


def register() -> None:
    """Make ``nixos-driver://`` known to testinfra (idempotent)."""
    BACKENDS[NAME] = f"{__name__}.DriverBackend"


class DriverBackend(BaseBackend):
    NAME = NAME

    def __init__(self, hostname: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(hostname, *args, **kwargs)

    def machine(self) -> Any:
        try:
            return MACHINES[self.hostname]
        except KeyError:
            known = ", ".join(sorted(MACHINES)) or "none"
            raise RuntimeError(
                f"{NAME}://{self.hostname}: no such machine registered (known: {known}). This backend only "
                "works in-process inside the NixOS test driver (see homelab_vmtests.driver.run_suite), "
                "without pytest-xdist") from None

    def run(self, command: str, *args: str, **kwargs: Any) -> CommandResult:
        cmd = self.get_command(command, *args)
        # The driver runs every command under `set -euo pipefail`; testinfra's commands expect plain sh rules.
        status, out = self.machine().execute("set +euo pipefail; " + cmd, timeout=COMMAND_TIMEOUT)
        return self.result(status, self.encode(cmd), out.encode(), b"")


SUITE = Path(__file__).resolve().parent.parent


def run_suite(machines: Mapping[str, Any], *, expectations: str | os.PathLike, scope: str = "host",
              junitxml: str | os.PathLike | None = None, extra: Iterable[str] = ()) -> int:
    """Run the vm-tests suite against driver machines (name -> Machine); return pytest's exit code."""
    import pytest

    register()
    MACHINES.clear()
    MACHINES.update(machines)
    args = [
        str(SUITE),
        "--hosts=" + ",".join(f"{NAME}://{name}" for name in machines),
        f"--expectations={expectations}",
        f"--homelab-scope={scope}",
        "-p", "no:cacheprovider",
        "-v",
    ]
    if junitxml:
        args.append(f"--junitxml={junitxml}")
    args += list(extra)
    sys.stdout.flush()
    return int(pytest.main(args))
