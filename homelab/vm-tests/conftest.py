"""pytest-testinfra suite: what the lab model says must be true on each host, checked on a real target.

The same suite runs unchanged against

* a NixOS test-driver VM inside ``nix flake check`` (``--hosts=nixos-driver://<node>``, see
  homelab_vmtests/driver.py),
* a ``nixos-rebuild build-vm`` image booted by ``python -m homelab vm hosts/<h>`` (``--hosts=ssh://...``),
* a deployed machine: ``pytest $(homelab test --suite-path) --hosts=ssh://root@yomogi``.

Options (besides testinfra's ``--hosts``, ``--ssh-config``, ``--ssh-identity-file``, ``--sudo``):

``--expectations FILE``  JSON from ``python -m homelab expect --json`` (default: computed from the lab)
``--lab-root DIR``       the lab (holding hosts/) when computing them; default: found from the
                         current folder upward, as homelab does
``--lab-host NAME``      which lab host the target is (or TARGET=NAME, repeatable)
``--homelab-scope``      ``host`` (true on a lone host) or ``cluster`` (everything; the default)
``--homelab-client``     ``NAME=HOST``: who plays a client of the firewall checks (``reach``): e.g.
                         ``lan-client=ssh://me@laptop`` (a machine on the LAN that is not a lab host) or
                         ``lan-client=nixos-driver://outsider``; ``host:<name>`` clients are the targets of
                         those lab hosts in the same run.  A reach check without its client is skipped,
                         saying which client it needs.
``--homelab-no-tailnet``  the targets are on no tailnet (the test VMs: no Tailscale login): the checks
                         asked over it (split DNS from a tailnet client) are skipped, saying so.

Each test is one check of one host; checks of other hosts and of a wider scope are deselected,
not skipped.  With several targets, ``-n N --dist loadgroup`` keeps each host's checks on one worker.
"""

from __future__ import annotations

import collections

import pytest

from homelab_vmtests import driver
from homelab_vmtests.targets import SetupError, lab_host_for, load_expectations, parse_overrides

SCOPES = ("host", "cluster")
_EXPECT = pytest.StashKey[dict]()
_MAP = pytest.StashKey[dict]()
_TARGETS = pytest.StashKey[dict]()  # lab host name -> its testinfra host in this run


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("homelab", "homelab lab expectations")
    g.addoption("--expectations", help="JSON from `python -m homelab expect --json` (one host or all)")
    g.addoption("--lab-root", help="the lab's folder (holding hosts/) when expectations are computed here")
    g.addoption("--lab-host", action="append", default=[], metavar="[TARGET=]NAME",
                help="which lab host a target is, when its address does not say (repeatable)")
    g.addoption("--homelab-scope", choices=SCOPES, default="cluster",
                help="host: only what holds on a lone host; cluster: everything (default)")
    g.addoption("--homelab-client", action="append", default=[], metavar="NAME=HOST",
                help="who plays a firewall client for reach checks, e.g. lan-client=ssh://me@laptop (repeatable)")
    g.addoption("--homelab-no-tailnet", action="store_true",
                help="the targets are on no tailnet (test VMs): checks asked over it are skipped, saying so")


def pytest_configure(config: pytest.Config) -> None:
    driver.register()
    config.addinivalue_line("markers", "homelab_kind(kind): which kind of expectation a test checks")
    try:
        config.stash[_EXPECT] = load_expectations(config.getoption("expectations"), config.getoption("lab_root"))
        config.stash[_MAP] = dict(zip(("mapping", "default"), parse_overrides(config.getoption("lab_host"))))
    except SetupError as e:
        raise pytest.UsageError(str(e)) from None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "check" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("homelab_kind")
    kind = marker.args[0] if marker else None
    params = []
    for name, e in sorted(metafunc.config.stash[_EXPECT].items()):
        for c in e["checks"]:
            if c["kind"] == kind:
                params.append(pytest.param((name, c), id=f"{name}/{c['id'].split(':', 1)[1]}"))
    metafunc.parametrize("check", params, indirect=True)


@pytest.fixture
def check(request: pytest.FixtureRequest) -> dict:
    return request.param[1]


@pytest.fixture
def lab_host(request: pytest.FixtureRequest, host) -> str:
    """The lab host name of the target under test: for a lab's own tests (its top-level vm-tests/), which
    run beside this suite, e.g. ``if lab_host != "yomogi": pytest.skip(...)``."""
    for name, target in request.config.stash.get(_TARGETS, {}).items():
        if target.backend.get_pytest_id() == host.backend.get_pytest_id():
            return name
    pytest.skip("the target is not one of the lab's hosts")


@pytest.fixture
def reach_client(request: pytest.FixtureRequest):
    """``reach_client(name)``: the testinfra host that plays client ``name``, or a skip that says who is missing."""
    import testinfra

    config = request.config
    given = dict(spec.split("=", 1) for spec in config.getoption("homelab_client") if "=" in spec)
    targets = config.stash.get(_TARGETS, {})

    def get(name: str):
        if name in given:
            opt = config.option
            return testinfra.get_host(given[name], ssh_config=getattr(opt, "ssh_config", None),
                                      ssh_identity_file=getattr(opt, "ssh_identity_file", None),
                                      sudo=getattr(opt, "sudo", False))
        if name.startswith("host:") and name[5:] in targets:
            return targets[name[5:]]
        pytest.skip(f"needs a client {name!r}: run with --homelab-client {name}=HOST"
                    + (" or target that lab host too" if name.startswith("host:") else ""))

    return get


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    expectations = config.stash[_EXPECT]
    mp = config.stash[_MAP]
    scope = config.getoption("homelab_scope")
    targets = {}
    for item in items:
        cs = getattr(item, "callspec", None)
        if cs is not None and "_testinfra_host" in cs.params:
            targets[cs.params["_testinfra_host"].backend.get_pytest_id()] = cs.params["_testinfra_host"]
    try:
        lab_of = {tid: lab_host_for(h.backend, expectations, mp["mapping"], mp["default"], len(targets))
                  for tid, h in targets.items()}
    except SetupError as e:
        raise pytest.UsageError(str(e)) from None
    config.stash[_TARGETS] = {name: targets[tid] for tid, name in lab_of.items()}
    keep, drop = [], []
    for item in items:
        cs = getattr(item, "callspec", None)
        if cs is None or "check" not in cs.params or "_testinfra_host" not in cs.params:
            keep.append(item)
            continue
        if not isinstance(cs.params["check"], tuple):  # a kind of check this lab has none of
            drop.append(item)
            continue
        tid = cs.params["_testinfra_host"].backend.get_pytest_id()
        name, c = cs.params["check"]
        if lab_of[tid] != name or (scope == "host" and c["scope"] != "host"):
            drop.append(item)
            continue
        item.user_properties += [("lab_host", name), ("target", tid), ("check", c["id"]), ("scope", c["scope"])]
        item.add_marker(pytest.mark.xdist_group(name=tid))
        keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_report_header(config: pytest.Config) -> list[str]:
    e = config.stash.get(_EXPECT, {})
    n = sum(len(v["checks"]) for v in e.values())
    return [f"homelab: {n} expectations for {', '.join(sorted(e))}; scope {config.getoption('homelab_scope')}"]


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    per: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    failed: dict[str, list[str]] = collections.defaultdict(list)
    for outcome in ("passed", "failed", "error", "skipped"):
        for rep in terminalreporter.stats.get(outcome, []):
            props = dict(getattr(rep, "user_properties", []))
            if "lab_host" not in props:
                continue
            if outcome == "passed" and rep.when != "call":
                continue
            key = f"{props['lab_host']} via {props['target']}"
            per[key][outcome] += 1
            if outcome in ("failed", "error"):
                failed[key].append(props["check"])
    if not per:
        return
    terminalreporter.section("homelab: per host")
    for key in sorted(per):
        c = per[key]
        parts = [f"{c[o]} {o}" for o in ("passed", "failed", "error", "skipped") if c[o]]
        terminalreporter.write_line(f"{key}: {', '.join(parts)}")
        for cid in failed[key]:
            terminalreporter.write_line(f"    not as expected: {cid}")
