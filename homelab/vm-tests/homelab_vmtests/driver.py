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
              junitxml: str | os.PathLike | None = None, extra: Iterable[str] = (),
              clients: Mapping[str, Any] | None = None, lab_tests: str | os.PathLike | None = None) -> int:
    """Run the vm-tests suite against driver machines (name -> Machine); return pytest's exit code.

    ``clients``: machines that play a client of the firewall checks (client name -> Machine, e.g.
    ``{"lan-client": outsider}``); they are not targets themselves.  ``lab_tests``: the lab's own tests
    (its top-level ``vm-tests/``), run beside the suite with its settings.
    """
    import pytest

    register()
    MACHINES.clear()
    MACHINES.update(machines)
    clients = dict(clients or {})
    for client, machine in clients.items():
        MACHINES[f"client-{client}"] = machine
    args = [
        str(SUITE),
        "--hosts=" + ",".join(f"{NAME}://{name}" for name in machines),
        f"--expectations={expectations}",
        f"--homelab-scope={scope}",
        *[f"--homelab-client={client}={NAME}://client-{client}" for client in clients],
        "-p", "no:cacheprovider",
        "-v",
    ]
    if junitxml:
        args.append(f"--junitxml={junitxml}")
    args += lab_test_args(lab_tests)
    args += list(extra)
    sys.stdout.flush()
    return int(pytest.main(args))


def lab_test_args(lab_tests: str | os.PathLike | None) -> list[str]:
    """pytest's arguments for a lab's own tests beside the suite: their folder, and the suite's settings
    (with two folders to collect, pytest would otherwise look for settings above both)."""
    if lab_tests is None:
        return []
    return [str(lab_tests), "-c", str(SUITE / "pytest.ini")]


def out_path(name: str) -> str:
    """A file in the test's result ($out), where the driver keeps its logs."""
    return os.path.join(os.environ.get("out", "."), name)


def require_success(rc: int) -> None:
    if rc != 0:
        raise AssertionError(f"the vm-tests suite did not pass (pytest exit code {rc}); see its report above")


def _log(msg: str) -> None:
    print(f"homelab: {msg}", flush=True)


def settle(machines: Mapping[str, Any], expectations: str | os.PathLike, *, scope: str = "host",
           timeout: float = 600, poll: float = 2.0, log=_log) -> dict[str, list[str]]:
    """Wait (bounded) until each machine's services are active and its ports listen.

    Services start in their own time after boot (the apiserver waits for etcd and its
    certificates); the suite should judge a settled machine, not a booting one.  Never raises:
    what is still not as expected after ``timeout`` seconds is returned (and logged), and the
    suite then says exactly what is wrong.
    """
    import json
    import time

    from homelab_vmtests import probes

    data = json.loads(Path(expectations).read_text(encoding="utf-8"))
    if "checks" in data:
        data = {data["host"]: data}
    scopes = ("host",) if scope == "host" else ("host", "cluster")
    deadline = time.monotonic() + timeout
    pending: dict[str, list[str]] = {}
    for name, machine in machines.items():
        checks = [c for c in data[name]["checks"] if c["scope"] in scopes and c["kind"] in ("service", "listening")]
        t0 = last = time.monotonic()
        todo = list(checks)
        while todo:
            still = []
            for c in todo:
                if c["kind"] == "service":
                    _, out = machine.execute("set +euo pipefail; " + probes.service_command(c["unit"]), timeout=60)
                    ok = out.strip() == "active"
                else:
                    _, out = machine.execute("set +euo pipefail; " + probes.listening_command(c["proto"]), timeout=60)
                    ok = c["port"] in probes.listening_ports(out, c["proto"])
                if not ok:
                    still.append(c)
            todo = still
            if not todo or time.monotonic() >= deadline:
                break
            if time.monotonic() - last >= 15:
                last = time.monotonic()
                log(f"[{name}] {last - t0:.0f} s, waiting for {len(todo)} of {len(checks)}: "
                    + ", ".join(c["id"].split(":", 1)[1] for c in todo[:6]) + (" ..." if len(todo) > 6 else ""))
            time.sleep(poll)
        pending[name] = [c["id"] for c in todo]
        if todo:
            log(f"[{name}] not settled after {time.monotonic() - t0:.0f} s: {', '.join(pending[name])}")
        else:
            log(f"[{name}] settled in {time.monotonic() - t0:.0f} s ({len(checks)} services and ports)")
    return pending
