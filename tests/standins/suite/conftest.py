"""STAND-IN for the vm-tests suite, for tests only (tests/test_ops_live.py); not a check of anything real.

It takes the real suite's options (testinfra's ``--hosts`` and ``--ssh-config``, ``--lab-root``,
``--lab-host``, ``--homelab-scope``, ``--junitxml``) and makes one test per target and check of that
target's lab host in the scope, with the real suite's ``user_properties`` (``lab_host``, ``check``), so
homelab reads its report the same way.  Instead of probing a NixOS host, each test asks the target, over
real SSH (testinfra's ssh backend), which check ids it was told to fail (``homelab-standin-checks``,
tests/standins/tools.py).  Each run is recorded in the deployer's calls.jsonl.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

_T0 = time.time()
_FAILING: dict[str, list[str]] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("homelab")
    g.addoption("--expectations")
    g.addoption("--lab-root")
    g.addoption("--lab-host", action="append", default=[])
    g.addoption("--homelab-scope", choices=("host", "cluster"), default="cluster")


def _address(spec: str) -> str:
    return spec.split("://", 1)[1].rpartition("@")[2].split(":")[0]


def _cases(config: pytest.Config) -> list[tuple[str, str, dict]]:
    from homelab.expect import lab_expectations
    from homelab.load import load_or_raise

    lab, _ = load_or_raise(Path(config.getoption("lab_root")))
    expectations = {n: e.to_json() for n, e in lab_expectations(lab).items()}
    targets = [t for t in (config.getoption("hosts") or "").split(",") if t]
    mapping = dict(v.rsplit("=", 1) for v in config.getoption("lab_host") if "=" in v)
    default = [v for v in config.getoption("lab_host") if "=" not in v]
    scope = config.getoption("homelab_scope")
    out = []
    for spec in targets:
        name = mapping.get(_address(spec)) or (default[0] if len(targets) == 1 and default else None)
        if name is None:
            raise pytest.UsageError(f"stand-in suite: which lab host is {spec}? (no --lab-host)")
        for c in expectations[name]["checks"]:
            if scope == "cluster" or c["scope"] == "host":
                out.append((spec, name, c))
    return out


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" in metafunc.fixturenames:
        cases = _cases(metafunc.config)
        metafunc.parametrize("case", cases, ids=[f"{n}/{c['id']}@{s}" for s, n, c in cases])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each test's lab host as a user property from collection on, as the real suite sets it (homelab's progress
    plugin, homelab/liveprogress.py, counts each host's tests by it)."""
    for item in items:
        cs = getattr(item, "callspec", None)
        if cs is not None and "case" in cs.params:
            item.user_properties.append(("lab_host", cs.params["case"][1]))


@pytest.fixture
def failing(request: pytest.FixtureRequest):
    import testinfra

    def get(spec: str) -> list[str]:
        if spec not in _FAILING:
            host = testinfra.get_host(spec, ssh_config=request.config.getoption("ssh_config"))
            _FAILING[spec] = host.run("homelab-standin-checks").stdout.split()
        return _FAILING[spec]

    return get


def pytest_sessionstart(session: pytest.Session) -> None:
    state = os.environ.get("HOMELAB_STANDIN_STATE")
    broken = Path(state) / "suite-exit" if state else None
    if broken is not None and broken.exists():  # a suite that cannot run at all (exit 2: interrupted, 3: internal
        code = int(broken.read_text())  # error, 4: usage error), recorded as it exits
        _record(session, state, code)
        pytest.exit("stand-in suite: told it cannot run (suite-exit)", returncode=code)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = os.environ.get("HOMELAB_STANDIN_STATE")
    if state and not (Path(state) / "suite-exit").exists():
        _record(session, state, int(exitstatus))


def _record(session: pytest.Session, state: str, exitstatus: int) -> None:
    if state:
        line = json.dumps({"tool": "suite", "host": os.environ.get("HOMELAB_STANDIN_HOST"),
                           "argv": list(session.config.invocation_params.args), "t0": _T0, "t1": time.time(),
                           "rc": int(exitstatus)}) + "\n"
        with open(Path(state) / "calls.jsonl", "a") as f:
            f.write(line)
