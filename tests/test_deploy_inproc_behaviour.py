"""``homelab deploy`` and ``homelab verify`` in-process (issue 19 item 3): the rollout of each host (generation,
switch, checks, rollback, join) and of the lab, the verdicts, the tables, the refusals and the dry-run text,
exactly.  The machines are a stand-in (:class:`Net`) answering what deploy runs through ``homelab.remote`` by
the exact argv, and a stand-in clock; everything else is deploy's own code.  The subprocess tests
(tests/test_deploy.py, test_ops_live.py) run the same over real SSH, at ~5 s a test."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import attrs
import pytest

from homelab import cluster_deploy, deploy, reach, remote
from homelab.errors import MissingTool, UsageError
from homelab.harness import VM_TESTS
from homelab.load import load_or_raise
from homelab.remote import SshOptions

from . import labkit, opslab

TOKEN = ("ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "root@192.168.10.10",
         "cat /var/lib/kubernetes/secrets/apitoken.secret")
SSHOPTS = {"NIX_SSHOPTS": "-o BatchMode=yes -o ConnectTimeout=10"}
AUTOLOAD = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
WORK = re.compile(r"/[^=]*homelab-(deploy|verify)-[^/]+")


def gens(current: int) -> str:
    """``nixos-rebuild list-generations --json``: newest first, one current."""
    return json.dumps([{"generation": current + 1, "current": False}, {"generation": current, "current": True},
                       {"generation": current - 1, "current": False}])


def junit(*failed: tuple[str, str]) -> str:
    """The suite's JUnit XML with these (lab_host, check) failing and one check passing."""
    cases = "".join(f'<testcase name="t{i}"><properties><property name="check" value="{c}"/>'
                    f'<property name="lab_host" value="{h}"/></properties><failure message="x"/></testcase>'
                    for i, (h, c) in enumerate(failed))
    return f'<testsuites><testsuite>{cases}<testcase name="fine"/></testsuite></testsuites>'


class Clock:
    """time.monotonic and time.sleep: each command run takes a second, a sleep as long as asked."""

    def __init__(self):
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


class Net:
    """The machines: each argv deploy runs gets the next of its replies (the last one repeats).

    A reply is ``(rc, stdout, stderr)``, optionally with a 4th item ``(path, text)`` written before it returns
    (the suite's report).  ``log`` holds ``(label, timeout, env beyond os.environ, cwd)`` of each run."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self.replies: dict[tuple, tuple[str, list]] = {}
        self.log: list[tuple] = []
        self.pipes: list[tuple] = []
        self.events: dict[tuple, list[dict]] = {}
        self.delay = 0.0  # real seconds each command takes (to see how many run at once)
        self.running = 0
        self.most = 0
        self.lock = threading.Lock()

    def on(self, argv, label: str, *replies) -> None:
        self.replies[tuple(argv)] = (label, list(replies))

    def key(self, argv) -> tuple:
        key = []
        for a in argv:  # deploy's temporary work folder is <work> in the plans the tests make
            m = WORK.search(a)
            if m:
                self.work = m.group(0)
                a = a.replace(self.work, "<work>")
            key.append(a)
        return tuple(key)

    def _reply(self, argv):
        label, queue = self.replies[self.key(argv)]
        rep = queue.pop(0) if len(queue) > 1 else queue[0]
        if len(rep) == 4:
            Path(rep[3][0].replace("<work>", getattr(self, "work", "<work>"))).write_text(rep[3][1])
        return label, rep[:3]

    def run(self, argv, *, timeout, env=None, cwd=None):
        label, (rc, out, err) = self._reply(argv)
        extra = None if env is None else {k: v for k, v in env.items() if os.environ.get(k) != v}
        if env is not None:
            assert set(env) >= set(os.environ), "the environment of deploy's own process is kept"
        with self.lock:
            self.log.append((label, timeout, extra, cwd))
            self.clock.now += 1
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(self.delay)
        with self.lock:
            self.running -= 1
        return subprocess.CompletedProcess(list(argv), rc, out, err)

    def pipe(self, source, sink, *, timeout):
        assert tuple(source) == TOKEN
        label, (rc, out, err) = self._reply(sink)
        self.pipes.append((label, timeout))
        src_rc = 0 if rc >= 0 else -rc  # a negative reply: the token could not be read
        return remote.Piped(src_rc, rc if rc >= 0 else 0, err if rc < 0 else "", out)

    def with_progress(self, argv, *, timeout, env, cwd, on_event):
        for e in self.events.get(self.key(argv), []):
            on_event(e)
        return self.run(argv, timeout=timeout, env=env, cwd=cwd)


class Said:
    """A stand-in for remote.Say: the progress lines and the errors, in order."""

    def __init__(self):
        self.lines: list[tuple[str, str]] = []
        self.errs: list[str] = []

    def __call__(self, who: str, msg: str) -> None:
        self.lines.append((who, msg))

    def err(self, msg: str) -> None:
        self.errs.append(msg)


@pytest.fixture
def net(monkeypatch):
    clock = Clock()
    n = Net(clock)
    monkeypatch.setattr(deploy, "time", clock)
    monkeypatch.setattr(remote, "time", clock)
    monkeypatch.setattr(remote, "run", n.run)
    monkeypatch.setattr(remote, "pipe", n.pipe)
    monkeypatch.setattr(reach, "run_with_progress", n.with_progress)
    return n


def plan_of(tmp_path, lab=None, names=None, *, rollback=True, parallel=1):
    lab = lab or labkit.lab()
    plan = deploy.make_steps(lab, tmp_path, names or [h.hostname for h in lab.hosts], tmp_path,
                             parallel=parallel, rollback=rollback, opts=SshOptions(), suite=VM_TESTS, python="py")
    return lab, plan, {hs.name: hs for hs in plan.hosts}


def rollout(plan, lab, said, *, settle=0.0, ready_timeout=300.0):
    return deploy.Rollout(plan, lab, SshOptions(), settle=settle, ready_timeout=ready_timeout, say=said)


def result(r: deploy.HostResult) -> dict:
    return attrs.asdict(r)


def ok(out: str = "") -> tuple:
    return (0, out, "")


def host_net(net, hs, before, after, *, switch=ok("built\n"), checks=ok(), later=None):
    """The replies for one host: its generation before and after, the switch and the checks."""
    net.on(hs.generation.argv, "generation", ok(gens(before)), ok(gens(after)),
           *([ok(gens(later))] if later is not None else []))
    net.on(hs.switch.argv, "switch", switch)
    net.on(hs.checks.argv, "checks", checks)
    net.on(hs.rollback.argv, "rollback", ok("rolled\n"))


# ---------------------------------------------------------------- one host


def test_a_host_that_switches_and_passes_its_checks(tmp_path, net):
    lab, plan, hs = plan_of(tmp_path, names=["yomogi"])
    cp = hs["yomogi"]
    host_net(net, cp, 40, 41)
    said = Said()
    res = rollout(plan, lab, said).host(cp)
    assert result(res) == dict(name="yomogi", ok=True, result="switched, checks passed", before=40, after=41,
                               rolled_back_to=None, seconds=4.0, started=True)
    assert net.log == [("generation", 120, None, None), ("switch", 6 * 3600, SSHOPTS, None),
                       ("generation", 120, None, None), ("checks", 1800, AUTOLOAD, str(tmp_path.resolve()))]
    assert said.lines == [("yomogi", "generation 40; switching (built on yomogi itself)"),
                          ("yomogi", "generation 40 -> 41; live checks (live checks of yomogi (host scope))"),
                          ("yomogi", "switched, checks passed")]
    assert res.generations() == "40 -> 41"


def test_a_host_whose_generation_cannot_be_read_is_unreachable_and_not_switched(tmp_path, net):
    lab, plan, hs = plan_of(tmp_path, names=["yomogi"])
    cp = hs["yomogi"]
    net.on(cp.generation.argv, "generation", (255, "", "x" * 400 + "ssh: connect to host refused\n  "))
    said = Said()
    ro = rollout(plan, lab, said)
    res = ro.host(cp)
    why = "exit 255: " + ("x" * 400 + "ssh: connect to host refused")[-300:]
    assert result(res) == dict(name="yomogi", ok=False, result=f"unreachable ({why})", before=None, after=None,
                               rolled_back_to=None, seconds=1.0, started=True)
    assert net.log == [("generation", 120, None, None)]
    assert said.lines == [("yomogi", f"cannot read its generation over SSH: {why}")]
    assert ro.stop.is_set()
    assert res.generations() == "?"


def test_a_failed_switch_that_made_a_generation_is_rolled_back(tmp_path, net):
    lab, plan, hs = plan_of(tmp_path, names=["tokiwa"])
    w = hs["tokiwa"]
    out = "".join(f"line {i}\n" for i in range(30))
    host_net(net, w, 60, 61, switch=(1, out, "error: activation failed\n"), later=60)
    said = Said()
    res = rollout(plan, lab, said).host(w)
    assert result(res) == dict(name="tokiwa", ok=False, before=60, after=61, rolled_back_to=60, seconds=5.0,
                               result="switch failed (nixos-rebuild exit 1), rolled back to 60", started=True)
    assert [x[0] for x in net.log] == ["generation", "switch", "generation", "rollback", "generation"]
    assert net.log[3] == ("rollback", 1800, SSHOPTS, None)
    tail = "\n".join(f"    line {i}" for i in range(11, 30)) + "\n    error: activation failed"
    assert said.lines == [("tokiwa", "generation 60; switching (built here)"),
                          ("tokiwa", f"nixos-rebuild failed (exit 1):\n{tail}"),
                          ("tokiwa", "the switch failed: rolling back"),
                          ("tokiwa", "rolled back to generation 60")]
    assert res.generations() == "60 -> 61 -> 60"


@pytest.mark.parametrize("after", [60, None])
def test_a_failed_switch_without_a_new_generation_is_not_rolled_back(tmp_path, net, after):
    lab, plan, hs = plan_of(tmp_path, names=["tokiwa"])
    w = hs["tokiwa"]
    host_net(net, w, 60, 60, switch=(2, "", "boom\n"))
    if after is None:
        net.on(w.generation.argv, "generation", ok(gens(60)), (255, "", "gone\n"))
    said = Said()
    res = rollout(plan, lab, said).host(w)
    assert result(res) == dict(name="tokiwa", ok=False, before=60, after=after, rolled_back_to=None, seconds=3.0,
                               result="switch failed (nixos-rebuild exit 2)", started=True)
    assert [x[0] for x in net.log] == ["generation", "switch", "generation"]
    assert said.lines[1:] == [("tokiwa", "nixos-rebuild failed (exit 2):\n    boom")]
    assert res.generations() == ("60 -> 60" if after else "60")


def test_failing_checks_roll_the_host_back_to_the_generation_it_had(tmp_path, net):
    lab, plan, hs = plan_of(tmp_path, names=["tokiwa"])
    w = hs["tokiwa"]
    report = (w.report, junit(("tokiwa", "kubelet active"), ("tokiwa", "port 10250 open")))
    host_net(net, w, 60, 61, checks=(1, "F.\nsummary\n", "", report), later=60)
    said = Said()
    res = rollout(plan, lab, said).host(w)
    assert result(res) == dict(name="tokiwa", ok=False, before=60, after=61, rolled_back_to=60, seconds=6.0,
                               result="2 checks failed, rolled back to 60", started=True)
    assert [x[0] for x in net.log] == ["generation", "switch", "generation", "checks", "rollback", "generation"]
    assert said.lines[2:] == [
        ("tokiwa", "2 checks failed: tokiwa: kubelet active, tokiwa: port 10250 open\n    F.\n    summary"),
        ("tokiwa", "2 checks failed: rolling back"),
        ("tokiwa", "rolled back to generation 60")]


def test_one_failing_check_without_rollback_leaves_the_host_and_says_so(tmp_path, net):
    lab, plan, hs = plan_of(tmp_path, names=["tokiwa"], rollback=False)
    w = hs["tokiwa"]
    host_net(net, w, 60, 61, checks=(1, "", "", (w.report, junit(("tokiwa", "kubelet active")))))
    said = Said()
    res = rollout(plan, lab, said).host(w)
    assert res.result == "1 check failed, not rolled back (--no-rollback)"
    assert (res.after, res.rolled_back_to, res.ok) == (61, None, False)
    assert [x[0] for x in net.log] == ["generation", "switch", "generation", "checks"]
    assert said.lines[2:] == [("tokiwa", "1 check failed: tokiwa: kubelet active"),
                              ("tokiwa", "1 check failed: left at generation 61 (--no-rollback)")]


def test_failing_checks_without_a_report_and_a_switch_that_changed_nothing(tmp_path, net):
    lab, plan, hs = plan_of(tmp_path, names=["tokiwa"])
    w = hs["tokiwa"]
    host_net(net, w, 60, 60, checks=(1, "E\n", ""))
    said = Said()
    res = rollout(plan, lab, said).host(w)
    assert res.result == "0 checks failed, not rolled back: the switch left it on generation 60, as it was"
    assert (res.before, res.after, res.rolled_back_to) == (60, 60, None)
    assert [x[0] for x in net.log] == ["generation", "switch", "generation", "checks"]
    assert said.lines[2:] == [("tokiwa", "0 checks failed: (see the output)\n    E"),
                              ("tokiwa", "left at generation 60: the switch made no new generation to roll back from")]


def test_a_failed_rollback_is_in_the_result(tmp_path, net):
    lab, plan, hs = plan_of(tmp_path, names=["tokiwa"])
    w = hs["tokiwa"]
    host_net(net, w, 60, 61, checks=(1, "", "", (w.report, junit(("tokiwa", "a"), ("tokiwa", "b"), ("x", "c")))),
             later=61)
    net.on(w.rollback.argv, "rollback", (3, "o\n", "no rollback generation\n"))
    said = Said()
    res = rollout(plan, lab, said).host(w)
    assert res.result == "3 checks failed, rollback FAILED (exit 3)"
    assert res.rolled_back_to == 61
    assert res.generations() == "60 -> 61 -> 61"
    assert said.lines[-1] == ("tokiwa", "the rollback failed:\n    o\n    no rollback generation")


def test_checks_that_cannot_run_are_not_the_hosts_fault(tmp_path, net):
    lab, plan, hs = plan_of(tmp_path, names=["tokiwa"])
    w = hs["tokiwa"]
    host_net(net, w, 60, 61, checks=(4, "usage: pytest\n", "bad option\n"))
    said = Said()
    res = rollout(plan, lab, said).host(w)
    assert (res.result, res.ok, res.rolled_back_to) == ("checks could not run", False, None)
    assert [x[0] for x in net.log] == ["generation", "switch", "generation", "checks"]
    assert said.lines[2:] == [("tokiwa", "the suite could not run (pytest exit 4):\n    usage: pytest\n    bad option")]


# ---------------------------------------------------------------- joining a worker


def kube_status(net, hs, *replies):
    net.on(hs.join.status.argv, "kubectl get node", *replies)


@pytest.mark.parametrize("case", ["ready", "joined", "no token", "join fails", "kubectl", "not ready"])
def test_a_worker_is_joined_unless_its_node_is_ready(tmp_path, net, case):
    lab, plan, hs = plan_of(tmp_path, names=["tokiwa"])
    w = hs["tokiwa"]
    host_net(net, w, 60, 61)
    join = {"joined": ok("joined\n"), "no token": (-1, "", "cat: no such file\n"),
            "join fails": (7, "certmgr: no\n", ""), "not ready": ok()}.get(case, ok())
    net.on(w.join.join.argv, "join", join)
    status = {
        "ready": [ok("True/\n")],
        "joined": [(1, "", "Error from server (NotFound): nodes \"tokiwa\" not found\n"), ok("False/\n"),
                   ok("True/\n")],
        "no token": [ok("False/true\n")], "join fails": [ok("Unknown/\n")],
        "kubectl": [(1, "", "The connection to the server was refused\n")],
        "not ready": [ok("False/\n")],
    }[case]
    kube_status(net, w, *status)
    said = Said()
    res = rollout(plan, lab, said, ready_timeout=5).host(w)
    want = {"ready": "switched, checks passed", "joined": "switched, joined, checks passed",
            "no token": "join failed: no token", "join fails": "join failed (exit 7)",
            "kubectl": "join failed: kubectl", "not ready": "joined, not Ready after 5 s"}[case]
    assert (res.result, res.ok) == (want, case in ("ready", "joined"))
    said_join = {
        "ready": ["node tokiwa is Ready already: no join", "switched, checks passed"],
        "joined": ["node tokiwa is not in the cluster: joining it with the control plane's token",
                   "node tokiwa joined and Ready", "switched, joined, checks passed"],
        "no token": ["node tokiwa is Ready=False, cordoned: joining it with the control plane's token",
                     "could not read the API token on yomogi (exit 1):\n    cat: no such file"],
        "join fails": ["node tokiwa is Ready=Unknown: joining it with the control plane's token",
                       "nixos-kubernetes-node-join failed (exit 7):\n    certmgr: no"],
        "kubectl": ["kubectl on yomogi failed (exit 1):\n    The connection to the server was refused"],
        "not ready": ["node tokiwa is Ready=False: joining it with the control plane's token",
                      "node tokiwa is Ready=False after 5 s"],
    }[case]
    assert said.lines[2:] == [("tokiwa", m) for m in said_join]
    assert net.pipes == ([] if case in ("ready", "kubectl") else [("join", remote.JOIN_TIMEOUT + 30)])
    kubectl = [x for x in net.log if x[0] == "kubectl get node"]
    assert kubectl == [("kubectl get node", 60, None, None)] * {"ready": 1, "joined": 3, "no token": 1,
                                                                 "join fails": 1, "kubectl": 1, "not ready": 3}[case]
    if case == "not ready":
        assert net.clock.slept == [2.0]  # polled every 2 s for up to 5 s (each poll takes 1 s here)


def test_joined_is_said_in_the_table(tmp_path, net):
    lab, plan, hs = plan_of(tmp_path, names=["tokiwa"])
    w = hs["tokiwa"]
    host_net(net, w, 60, 61)
    net.on(w.join.join.argv, "join", ok())
    kube_status(net, w, (1, "", "(NotFound)"), ok("True/"))
    res = rollout(plan, lab, Said()).host(w)
    assert deploy.table([res]) == ("host    generation  result                           time\n"
                                   "tokiwa  60 -> 61    switched, joined, checks passed  6 s\n")


# ---------------------------------------------------------------- the lab


def whole_lab_net(net, hs, failing=None):
    for i, (name, h) in enumerate(sorted(hs.items())):
        g = 10 * (i + 1)
        rep = (1, "", "", (h.report, junit((name, "kubelet active")))) if name == failing else ok()
        host_net(net, h, g, g + 1, checks=rep, later=g)
        if h.join is not None:
            kube_status(net, h, ok("True/"))


def test_the_control_plane_goes_first_then_the_workers(tmp_path, net):
    lab, plan, hs = plan_of(tmp_path)
    whole_lab_net(net, hs)
    said = Said()
    ro = rollout(plan, lab, said)
    assert ro.run() is True
    assert [who for who, m in said.lines if m.startswith("generation") and "switching" in m] == [
        "yomogi", "hanaakari", "tokiwa"]
    assert list(ro.results) == ["yomogi", "hanaakari", "tokiwa"]
    assert deploy.table(list(ro.results.values())) == (
        "host       generation  result                   time\n"
        "yomogi     30 -> 31    switched, checks passed  4 s\n"
        "hanaakari  10 -> 11    switched, checks passed  5 s\n"
        "tokiwa     20 -> 21    switched, checks passed  5 s\n")


@pytest.mark.parametrize("failing", ["yomogi", "hanaakari"])
def test_a_failing_host_stops_the_rollout(tmp_path, net, failing):
    lab, plan, hs = plan_of(tmp_path)
    whole_lab_net(net, hs, failing)
    ro = rollout(plan, lab, Said())
    assert ro.run() is False
    assert {n: (r.started, r.ok) for n, r in ro.results.items()} == {
        "yomogi": (True, failing != "yomogi"), "hanaakari": (failing == "hanaakari", False),
        "tokiwa": (False, False)}
    assert ro.results["tokiwa"].result == "not started: the rollout stopped"
    assert ro.results["tokiwa"].generations() == "-"
    assert ro.results["tokiwa"].seconds is None


@pytest.mark.parametrize("parallel", [1, 2])
def test_workers_run_up_to_parallel_at_a_time(tmp_path, net, parallel):
    lab, plan, hs = plan_of(tmp_path, parallel=parallel)
    whole_lab_net(net, hs)
    net.delay = 0.01
    ro = rollout(plan, lab, Said())
    assert ro.run() is True
    assert {n: r.result for n, r in ro.results.items()} == dict.fromkeys(hs, "switched, checks passed")
    if parallel == 1:
        assert net.most == 1  # (with 2, two at once is likely, not certain: not asserted)


# ---------------------------------------------------------------- the live checks


def step_of(tmp_path):
    return deploy.checks_step(tmp_path, [labkit.lab().host("tokiwa")], "host", str(tmp_path / "r.xml"),
                              SshOptions(), VM_TESTS, "py")


@pytest.mark.parametrize("rc", [0, 5])
def test_checks_pass_with_exit_0_or_nothing_to_check(tmp_path, net, rc):
    step = step_of(tmp_path)
    net.on(step.argv, "checks", (rc, "", ""))
    assert deploy.run_checks(step, str(tmp_path / "r.xml"), 100, Said(), "tokiwa") == deploy.Verdict(True, True)
    assert net.log == [("checks", 1800, AUTOLOAD, str(tmp_path))]


def test_checks_are_run_again_while_the_host_settles(tmp_path, net):
    step = step_of(tmp_path)
    report = str(tmp_path / "r.xml")
    two = (1, "", "", (report, junit(("tokiwa", "a"), ("tokiwa", "b"))))
    one = (1, "", "", (report, junit(("tokiwa", "a"))))
    net.on(step.argv, "checks", two, one, ok())
    said = Said()
    assert deploy.run_checks(step, report, 25, said, "tokiwa") == deploy.Verdict(True, True)
    assert said.lines == [("tokiwa", "2 checks not as expected yet; again in 10 s"),
                          ("tokiwa", "1 check not as expected yet; again in 10 s")]
    assert net.clock.slept == [10.0, 10.0]


def test_checks_still_failing_when_the_time_is_up(tmp_path, net):
    step = step_of(tmp_path)
    report = str(tmp_path / "r.xml")
    out = "".join(f"o{i}\n" for i in range(25))
    net.on(step.argv, "checks", (1, out, "err\n", (report, junit(("tokiwa", "a"), ("tokiwa", "a"), ("y", "b")))))
    said = Said()
    v = deploy.run_checks(step, report, 10.5, said, "tokiwa")
    assert v == deploy.Verdict(False, True, ("tokiwa: a", "y: b"), "\n".join(f"    o{i}" for i in range(5, 25)))
    assert said.lines == []  # 1 s for the run + 10 s to wait is past the 10.5 s
    assert net.clock.slept == []
    assert deploy.run_checks(step, report, 11, Said(), "tokiwa") == v  # 1 + 10 s is not past 11 s: once more
    assert net.clock.slept == [10.0]


def test_checks_that_cannot_run(tmp_path, net):
    step = step_of(tmp_path)
    net.on(step.argv, "checks", (2, "o\n", "e\n"))
    assert deploy.run_checks(step, str(tmp_path / "none.xml"), 100, Said(), "x") == deploy.Verdict(
        False, False, (), "the suite could not run (pytest exit 2):\n    o\n    e")


# ---------------------------------------------------------------- the table


def test_the_table_aligns_columns_and_says_what_is_unknown():
    rows = [deploy.HostResult("yomogi", True, "switched, checks passed", 40, 41, None, 61.4, True),
            deploy.HostResult("tokiwa", False, "unreachable (exit 255: x)", None, None, None, 0.4, True),
            deploy.HostResult("hanaakari", False, "2 checks failed, rolled back to 9", 9, None, 9, 90.5, True),
            deploy.HostResult("nas", False, "checks could not run", 7, None, None, 2.0, True),
            deploy.HostResult("pi")]
    assert deploy.table(rows) == (
        "host       generation   result                             time\n"
        "yomogi     40 -> 41     switched, checks passed            61 s\n"
        "tokiwa     ?            unreachable (exit 255: x)          0 s\n"
        "hanaakari  9 -> ? -> 9  2 checks failed, rolled back to 9  90 s\n"
        "nas        7            checks could not run               2 s\n"
        "pi         -            not started: the rollout stopped   -\n")


# ---------------------------------------------------------------- homelab deploy, the command

STANDIN_SSH = """#!/bin/sh
# stand-in ssh for the cluster layer's steps: logs its arguments and the size of its stdin
n=$(/usr/bin/wc -c)
echo "$*|$n" >> "$SSH_LOG"
case "$*" in *helm*) echo "helm says hi"; exit "${SSH_HELM_RC:-0}";; esac
exit 0
"""


@pytest.fixture
def lab_dir(tmp_path) -> Path:
    return opslab.write_seed_lab(tmp_path / "lab")


def path_with(tmp_path, monkeypatch, *tools) -> Path:
    """PATH holding only ``tools``: "ssh" the stand-in above, "nixos-rebuild" one never run, else the real one."""
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    for t in tools:
        if t == "ssh":
            (d / "ssh").write_text(STANDIN_SSH)
            (d / "ssh").chmod(0o755)
        elif t == "nixos-rebuild":
            os.symlink("/bin/false", d / t)
        else:
            os.symlink(shutil_which(t), d / t)
    monkeypatch.setenv("PATH", str(d))
    monkeypatch.setenv("SSH_LOG", str(tmp_path / "ssh.log"))
    return d


def shutil_which(t):
    import shutil

    return shutil.which(t)


def lab_of(root: Path):
    return load_or_raise(root)[0]


def run_deploy(root, only=None, **kw):
    kw.setdefault("parallel", 1)
    return deploy.deploy(lab_of(root), root, only, deploy.DeployOptions(**kw))




def lab_net(net, lab, root, names, failing=None, cluster=ok()):
    """The replies for a deploy of ``names`` (the workers' nodes Ready already) and of the cluster checks."""
    plan = deploy.make_steps(lab, root, names, Path("<work>"), parallel=1, rollback=True, opts=SshOptions(),
                             suite=VM_TESTS)
    hs = {h.name: h for h in plan.hosts}
    whole_lab_net(net, hs, failing)
    if plan.cluster is not None:
        net.on(plan.cluster.argv, "cluster checks", cluster)
    return plan


def out_err(capsys):
    c = capsys.readouterr()
    return c.out, c.err


PASSED = """\
homelab deploy [   1.0s] yomogi: generation 30; switching (built on yomogi itself)
homelab deploy [   3.0s] yomogi: generation 30 -> 31; live checks (live checks of yomogi (host scope))
homelab deploy [   4.0s] yomogi: switched, checks passed
homelab deploy [   5.0s] hanaakari: generation 10; switching (built here)
homelab deploy [   7.0s] hanaakari: generation 10 -> 11; live checks (live checks of hanaakari (host scope))
homelab deploy [   9.0s] hanaakari: node hanaakari is Ready already: no join
homelab deploy [   9.0s] hanaakari: switched, checks passed
"""
ALL_PASSED = PASSED + """\
homelab deploy [  10.0s] tokiwa: generation 20; switching (built here)
homelab deploy [  12.0s] tokiwa: generation 20 -> 21; live checks (live checks of tokiwa (host scope))
homelab deploy [  14.0s] tokiwa: node tokiwa is Ready already: no join
homelab deploy [  14.0s] tokiwa: switched, checks passed
homelab deploy [  14.0s] cluster: all 3 switched; live checks of the cluster (cluster scope)
"""
TABLE = """
host       generation  result                   time
yomogi     30 -> 31    switched, checks passed  4 s
hanaakari  10 -> 11    switched, checks passed  5 s
tokiwa     20 -> 21    switched, checks passed  5 s
"""
KEPT = ("nothing was rolled back: every host passed its own checks and keeps its new generation (roll one back with: "
        "nixos-rebuild switch --rollback --target-host <user@host>)\n")


def test_deploy_of_one_host(lab_dir, tmp_path, monkeypatch, net, capsys):
    path_with(tmp_path, monkeypatch, "ssh", "nixos-rebuild")
    lab_net(net, lab_of(lab_dir), lab_dir, ["yomogi"])
    assert run_deploy(lab_dir, ["yomogi"]) == 0
    assert out_err(capsys) == ("""\
homelab deploy [   1.0s] yomogi: generation 10; switching (built on yomogi itself)
homelab deploy [   3.0s] yomogi: generation 10 -> 11; live checks (live checks of yomogi (host scope))
homelab deploy [   4.0s] yomogi: switched, checks passed
homelab deploy [   4.0s] cluster: yomogi switched; live checks of yomogi (cluster scope)

host    generation  result                   time
yomogi  10 -> 11    switched, checks passed  4 s
deployed 1 host; host and cluster checks passed
""", "")
    assert [x[0] for x in net.log] == ["generation", "switch", "generation", "checks", "cluster checks"]
    assert net.log[-1][1:] == (1800, AUTOLOAD, str(lab_dir))
    assert not (tmp_path / "ssh.log").exists()  # no cluster layer for a selection


def test_deploy_of_the_lab_ends_with_the_cluster_layer(lab_dir, tmp_path, monkeypatch, net, capsys):
    path_with(tmp_path, monkeypatch, "ssh", "nixos-rebuild")
    lab_net(net, lab_of(lab_dir), lab_dir, ["yomogi", "tokiwa", "hanaakari"])
    assert run_deploy(lab_dir) == 0
    assert out_err(capsys) == (ALL_PASSED + TABLE + """\
homelab deploy [  15.0s] cluster layer: label node hanaakari
homelab deploy [  15.0s] cluster layer: release traefik (traefik 37.1.0)
applied the cluster layer: 2 steps (traefik)
deployed 3 hosts; host and cluster checks passed
""", "")
    cp = "-o BatchMode=yes -o ConnectTimeout=10 root@192.168.10.10 env KUBECONFIG=/etc/kubernetes/cluster-admin.kubeconfig"
    values = (lab_dir / "cluster" / "values" / "traefik.yaml").stat().st_size
    assert (tmp_path / "ssh.log").read_text().splitlines() == [
        f"{cp} kubectl label node hanaakari proxy=true --overwrite|0",
        f"{cp} helm upgrade --install traefik traefik --repo https://traefik.github.io/charts --version 37.1.0 "
        f"--namespace traefik --create-namespace --wait --timeout 900s -f -|{values}"]


def test_deploy_whose_cluster_layer_fails(lab_dir, tmp_path, monkeypatch, net, capsys):
    path_with(tmp_path, monkeypatch, "ssh", "nixos-rebuild")
    monkeypatch.setenv("SSH_HELM_RC", "6")
    lab_net(net, lab_of(lab_dir), lab_dir, ["yomogi", "tokiwa", "hanaakari"])
    assert run_deploy(lab_dir) == 1
    assert out_err(capsys) == (ALL_PASSED + TABLE + """\
homelab deploy [  15.0s] cluster layer: label node hanaakari
homelab deploy [  15.0s] cluster layer: release traefik (traefik 37.1.0)
the cluster layer failed at: release traefik (traefik 37.1.0) (exit 6)
    helm says hi
""", "")


@pytest.mark.parametrize("cluster, said, verdict", [
    ((1, "", "", ("<work>/cluster.xml", junit(("tokiwa", "dns"), ("yomogi", "api")))),
     "homelab deploy [  15.0s] cluster: 2 checks not as expected yet; again in 10 s\n",
     "the cluster checks failed: tokiwa: dns, yomogi: api\n"),
    ((1, "", ""), "homelab deploy [  15.0s] cluster: 0 checks not as expected yet; again in 10 s\n",
     "the cluster checks failed: (see above)\n"),
    ((3, "INTERNALERROR\n", ""), "",
     "the cluster checks could not run: the suite could not run (pytest exit 3):\n    INTERNALERROR\n")])
def test_deploy_whose_cluster_checks_fail_keeps_every_host(lab_dir, tmp_path, monkeypatch, net, capsys, cluster,
                                                          said, verdict):
    path_with(tmp_path, monkeypatch, "ssh", "nixos-rebuild")
    lab_net(net, lab_of(lab_dir), lab_dir, ["yomogi", "tokiwa", "hanaakari"], cluster=cluster)
    assert run_deploy(lab_dir, settle=15) == 1
    assert out_err(capsys) == (ALL_PASSED + said + TABLE + verdict + KEPT, "")
    assert "rollback" not in [x[0] for x in net.log]
    assert not (tmp_path / "ssh.log").exists()


@pytest.mark.parametrize("failing", ["hanaakari", "tokiwa"])
def test_deploy_stops_at_a_failing_host(lab_dir, tmp_path, monkeypatch, net, capsys, failing):
    path_with(tmp_path, monkeypatch, "ssh", "nixos-rebuild")
    lab_net(net, lab_of(lab_dir), lab_dir, ["yomogi", "tokiwa", "hanaakari"], failing=failing)
    assert run_deploy(lab_dir, no_rollback=True, settle=5) == 1
    head, g, t = (PASSED.split("homelab deploy [   5.0s]")[0], 10, 5) if failing == "hanaakari" else (PASSED, 20, 10)
    hanaakari = ("hanaakari  10 -> 11    switched, checks passed                          5 s\n"
                 if failing == "tokiwa" else "")
    assert out_err(capsys) == (head + f"""\
homelab deploy [{t:6.1f}s] {failing}: generation {g}; switching (built here)
homelab deploy [{t + 2:6.1f}s] {failing}: generation {g} -> {g + 1}; live checks (live checks of {failing} (host scope))
homelab deploy [{t + 3:6.1f}s] {failing}: 1 check failed: {failing}: kubelet active
homelab deploy [{t + 3:6.1f}s] {failing}: 1 check failed: left at generation {g + 1} (--no-rollback)

host       generation  result                                           time
yomogi     30 -> 31    switched, checks passed                          4 s
""" + hanaakari + ("hanaakari  10 -> 11    1 check failed, not rolled back (--no-rollback)  4 s\n"
                   "tokiwa     -           not started: the rollout stopped                 -\n"
                   "the rollout stopped; not deployed: tokiwa\n" if failing == "hanaakari" else
                   "tokiwa     20 -> 21    1 check failed, not rolled back (--no-rollback)  4 s\n"
                   "the rollout stopped\n"), "")


# ---------------------------------------------------------------- deploy's dry run and refusals


def dry(lab_dir, tmp_path, monkeypatch, capsys, only=None, **kw):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    rc = run_deploy(lab_dir, only, dry_run=True, **kw)
    return (rc, *out_err(capsys))


def test_dry_run_prints_the_pinned_plan_and_runs_nothing(lab_dir, tmp_path, monkeypatch, net, capsys):
    from .test_deploy import PINNED

    path_with(tmp_path, monkeypatch, "ssh", "nixos-rebuild")
    want = (PINNED.replace("$LAB", str(lab_dir)).replace("$PYTHON", sys.executable)
            .replace("$SUITE", str(VM_TESTS)).replace("$TMP", str(tmp_path / "tmp")))
    assert dry(lab_dir, tmp_path, monkeypatch, capsys, parallel=2) == (0, want, "")
    assert net.log == [] and not (tmp_path / "ssh.log").exists()


def test_dry_run_of_a_selection_without_rollback_and_the_pinned_nixos_rebuild(lab_dir, tmp_path, monkeypatch,
                                                                             net, capsys):
    path_with(tmp_path, monkeypatch, "ssh", "nix")
    rc, out, err = dry(lab_dir, tmp_path, monkeypatch, capsys, ["tokiwa", "yomogi"], no_rollback=True, parallel=3)
    rb = shlex_join(remote.rebuild_program(lab_dir))
    pin = remote.pinned_nixpkgs(lab_dir)
    assert pin.startswith("github:NixOS/nixpkgs/")
    assert rb == f"nix --extra-experimental-features 'nix-command flakes' run '{pin}#nixos-rebuild-ng' --"
    work, py = tmp_path / "tmp" / "homelab-deploy-<new>", sys.executable
    gen = "'nixos-rebuild list-generations --json'"
    base = "-o BatchMode=yes -o ConnectTimeout=10"
    checks = (f"cd {lab_dir} && PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {py} -m pytest -p testinfra.plugin {VM_TESTS} "
              f"--hosts=ssh://root@192.168.10.{{ip}} --lab-root={lab_dir} --lab-host={{name}} --homelab-scope=host "
              f"'--junitxml={work}/{{name}}.xml' -q")
    assert (rc, err) == (0, "")
    assert out == f"""\
# nixos-rebuild is not on PATH: the lab's pinned one runs through nix run
# homelab deploy of the lab in {lab_dir}: yomogi then tokiwa (up to 3 at a time)
# each host: its generation, switch, its generation again, its live checks (the vm-tests suite over SSH);
# a host failing its checks is left as it is (--no-rollback) and the rollout stops
# the suite's reports go to {work}

# yomogi: control plane, aarch64-linux, built on yomogi itself
ssh {base} root@192.168.10.10 {gen}
NIX_SSHOPTS='{base}' {rb} switch --flake '{lab_dir}#yomogi' --target-host root@192.168.10.10 --build-host root@192.168.10.10 --no-reexec
ssh {base} root@192.168.10.10 {gen}
{checks.format(ip=10, name="yomogi")}

# tokiwa: worker, x86_64-linux, built here
ssh {base} root@192.168.10.11 {gen}
NIX_SSHOPTS='{base}' {rb} switch --flake '{lab_dir}#tokiwa' --target-host root@192.168.10.11 --no-reexec
ssh {base} root@192.168.10.11 {gen}
{checks.format(ip=11, name="tokiwa")}
#   then, unless the node is Ready already:
ssh {base} root@192.168.10.10 'env KUBECONFIG=/etc/kubernetes/cluster-admin.kubeconfig kubectl get node tokiwa -o '"'"'jsonpath={{.status.conditions[?(@.type=="Ready")].status}}/{{.spec.unschedulable}}'"'"''
#   join it with the control plane's API token, passed from one ssh to the other by a pipe:
ssh {base} root@192.168.10.10 'cat /var/lib/kubernetes/secrets/apitoken.secret' | ssh {base} root@192.168.10.11 'timeout 300 nixos-kubernetes-node-join'
#   and wait until it is Ready: the same kubectl get node, every 2 s

# once every host passed: the cluster checks
cd {lab_dir} && PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {py} -m pytest -p testinfra.plugin {VM_TESTS} --hosts=ssh://root@192.168.10.11,ssh://root@192.168.10.10 --lab-root={lab_dir} --lab-host=192.168.10.11=tokiwa --lab-host=192.168.10.10=yomogi --homelab-scope=cluster '--junitxml={work}/cluster.xml' -q
"""


def shlex_join(argv):
    import shlex

    return shlex.join(argv)


def test_render_steps_of_lone_hosts_outside_kubernetes(tmp_path):
    nas = deploy.Host(hostname="nas", system="x86_64-linux", state_version="25.05", interface="enp1s0",
                      address="192.168.10.20", roles=[])
    lab = deploy.Lab(labkit.cluster(), [nas])
    plan = deploy.make_steps(lab, tmp_path, ["nas"], Path("/w"), parallel=4, rollback=False, opts=SshOptions(),
                             suite=VM_TESTS, python="py")
    base = "-o BatchMode=yes -o ConnectTimeout=10"
    gen = f"ssh {base} root@192.168.10.20 'nixos-rebuild list-generations --json'"
    checks = (f"cd {tmp_path} && PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 py -m pytest -p testinfra.plugin {VM_TESTS} "
              f"--hosts=ssh://root@192.168.10.20 --lab-root={tmp_path} --lab-host=nas")
    assert deploy.render_steps(plan, lab) == f"""\
# homelab deploy of the lab in {tmp_path}: nas (up to 4 at a time)
# each host: its generation, switch, its generation again, its live checks (the vm-tests suite over SSH);
# a host failing its checks is left as it is (--no-rollback) and the rollout stops
# the suite's reports go to /w

# nas: host, x86_64-linux, built here
{gen}
NIX_SSHOPTS='{base}' nixos-rebuild switch --flake '{tmp_path}#nas' --target-host root@192.168.10.20 --no-reexec
{gen}
{checks} --homelab-scope=host --junitxml=/w/nas.xml -q

# once every host passed: the cluster checks
{checks} --homelab-scope=cluster --junitxml=/w/cluster.xml -q
"""
    empty = deploy.make_steps(lab, tmp_path, [], Path("/w"), parallel=1, rollback=True, opts=SshOptions(),
                              suite=VM_TESTS, python="py")
    assert deploy.render_steps(empty, lab) == (
        f"# homelab deploy of the lab in {tmp_path}: \n"
        "# each host: its generation, switch, its generation again, its live checks (the vm-tests suite over SSH);\n"
        "# a host failing its checks is rolled back and the rollout stops\n"
        "# the suite's reports go to /w\n")


def test_dry_run_warns_of_untracked_generated_files(lab_dir, tmp_path, monkeypatch, net, capsys):
    path_with(tmp_path, monkeypatch, "ssh", "nixos-rebuild", "git")
    subprocess.run(["git", "init", "-q", str(lab_dir)], check=True)
    subprocess.run(["git", "-C", str(lab_dir), "add", "hosts/tokiwa/default.nix"], check=True)
    rc, out, err = dry(lab_dir, tmp_path, monkeypatch, capsys)
    assert rc == 0 and out.startswith("# homelab deploy of the lab in")
    assert err == ("homelab deploy: warning: hosts/hanaakari/default.nix is not tracked by git, so the flake cannot "
                   "see it: git add hosts/\n"
                   "homelab deploy: warning: hosts/yomogi/default.nix is not tracked by git, so the flake cannot see "
                   "it: git add hosts/\n")


def test_without_nixos_rebuild_nor_nix_nothing_is_deployed(lab_dir, tmp_path, monkeypatch, net, capsys):
    path_with(tmp_path, monkeypatch, "ssh")
    assert run_deploy(lab_dir) == 4
    why = ("nixos-rebuild is not on PATH, and nix (to run the lab's pinned one) is not either: install nix (Debian: "
           "apt-get install nix-bin), or run homelab from the lab's `nix develop`")
    assert out_err(capsys) == ("", f"homelab deploy: {why}; nothing was deployed\n")
    rc, out, err = dry(lab_dir, tmp_path, monkeypatch, capsys, ["tokiwa"])
    assert (rc, err) == (0, "")
    assert out.startswith(f"# note: {why}\n# homelab deploy of the lab in {lab_dir}: tokiwa (up to 1 at a time)\n")
    assert "\nNIX_SSHOPTS='-o BatchMode=yes -o ConnectTimeout=10' nixos-rebuild switch --flake" in out
    assert net.log == []


def test_without_ssh_nothing_is_deployed(lab_dir, tmp_path, monkeypatch, net, capsys):
    path_with(tmp_path, monkeypatch, "nixos-rebuild")
    assert run_deploy(lab_dir) == 4
    assert out_err(capsys) == ("", "homelab deploy: ssh is not on PATH; nothing was deployed\n")
    assert net.log == []


def test_a_tool_missing_during_the_rollout_ends_it(lab_dir, tmp_path, monkeypatch, net, capsys):
    path_with(tmp_path, monkeypatch, "ssh", "nixos-rebuild")

    def missing(argv, **kw):
        raise MissingTool(f"{argv[0]} vanished")
    monkeypatch.setattr(remote, "run", missing)
    assert run_deploy(lab_dir, ["tokiwa"]) == 4
    assert out_err(capsys) == ("", "homelab deploy: ssh vanished\n")


@pytest.mark.parametrize("parallel", [1, 3])
def test_deploy_switches_the_workers_as_many_at_a_time_as_parallel_says(lab_dir, tmp_path, monkeypatch, net, capsys,
                                                                        parallel):
    """--parallel reaches the rollout: the workers after the control plane go through a pool of exactly that size."""
    import concurrent.futures

    path_with(tmp_path, monkeypatch, "ssh", "nixos-rebuild")
    lab_net(net, lab_of(lab_dir), lab_dir, ["yomogi", "tokiwa", "hanaakari"])
    pools = []
    real = concurrent.futures.ThreadPoolExecutor

    class Pool(real):
        def __init__(self, max_workers=None, *a, **kw):
            pools.append(max_workers)
            super().__init__(max_workers, *a, **kw)

    monkeypatch.setattr(concurrent.futures, "ThreadPoolExecutor", Pool)
    assert run_deploy(lab_dir, parallel=parallel) == 0
    assert pools == [parallel]
    assert out_err(capsys)[0].splitlines()[-1] == "deployed 3 hosts; host and cluster checks passed"


def refusal(lab_dir, only=None, lab=None, **kw) -> str:
    with pytest.raises(UsageError) as e:
        deploy.deploy(lab or lab_of(lab_dir), lab_dir, only, deploy.DeployOptions(**kw))
    return str(e.value)


def test_deploy_refuses_a_bad_parallel_a_bad_build_host_and_stale_files(lab_dir, tmp_path, monkeypatch, net):
    path_with(tmp_path, monkeypatch, "ssh", "nixos-rebuild")
    assert refusal(lab_dir, parallel=0) == "--parallel 0: give 1 or more"
    assert refusal(lab_dir, parallel=-3, dry_run=True) == "--parallel -3: give 1 or more"
    lab = labkit.evolve_host(lab_of(lab_dir), "tokiwa", build_on="nope")
    assert refusal(lab_dir, ["tokiwa"], lab=lab) == \
        f"{lab.where(lab.host('tokiwa'))}: build_on: 'nope' is not a host of this lab"
    lab = labkit.evolve_host(lab, "hanaakari", build_on="nix")
    assert refusal(lab_dir, ["tokiwa", "hanaakari"], lab=lab) == (
        f"{lab.where(lab.host('tokiwa'))}: build_on: 'nope' is not a host of this lab\n"
        f"{lab.where(lab.host('hanaakari'))}: build_on: 'nix' is not a host of this lab")
    (lab_dir / "flake.nix").unlink()
    newer = labkit.evolve_host(lab_of(lab_dir), "tokiwa", state_version="24.11")
    assert refusal(lab_dir, lab=newer, dry_run=True) == ("generated files are out of date, so the flake does not describe this "
                                              "lab; run `homelab build` first:\n  hosts/tokiwa/default.nix")
    newer = labkit.evolve_host(newer, "hanaakari", state_version="24.11")
    assert refusal(lab_dir, lab=newer, dry_run=True) == (
        "generated files are out of date, so the flake does not describe this lab; run `homelab build` first:\n"
        "  hosts/hanaakari/default.nix\n  hosts/tokiwa/default.nix")
    assert refusal(lab_dir, dry_run=True) == \
        f"no flake.nix in {lab_dir}: nixos-rebuild --flake needs the lab's flake (`homelab init` makes one)"
    (lab_dir / "flake.nix").write_text("{ }\n")
    assert refusal(lab_dir, suite=str(tmp_path)) == f"no vm-tests suite at {tmp_path} (pass --suite DIR)"
    assert net.log == []


# ---------------------------------------------------------------- homelab verify


def verify_net(net, lab, root, names, scope, *, down=(), checks=ok(), events=(), opts=SshOptions()):
    for n in names:
        h = lab.host(n)
        net.on(reach.probe_argv(h, opts), f"probe {n}",
               (255, "", f"ssh: connect to host {h.ip} port 22: Connection refused\n") if n in down else ok())
    up = [lab.host(n) for n in sorted(names) if n not in down]
    if up:
        step = deploy.checks_step(root.resolve(), up, scope, "<work>/verify.xml", opts, VM_TESTS,
                                  sys.executable, progress=True)
        net.on(step.argv, "checks", checks)
        net.events[tuple(step.argv)] = list(events)


def run_verify(root, only=None, **kw):
    return deploy.verify(lab_of(root), root, only, deploy.VerifyOptions(**kw))


def test_verify_dry_run_prints_the_probes_and_the_checks(lab_dir, tmp_path, monkeypatch, net, capsys):
    path_with(tmp_path, monkeypatch, "ssh")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    cfg = tmp_path / "cfg"
    cfg.write_text("")
    assert run_verify(lab_dir, ["yomogi", "tokiwa"], dry_run=True, scope="host", ssh_config=str(cfg),
                      connect_timeout=3) == 0
    base = f"-F {cfg} -o BatchMode=yes -o ConnectTimeout=3"
    assert out_err(capsys) == (f"""\
# each host answers SSH? (a host that does not is reported and left out of the checks)
ssh {base} root@192.168.10.11 true
ssh {base} root@192.168.10.10 true
cd {lab_dir} && PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {sys.executable} -m pytest -p testinfra.plugin -p homelab.liveprogress \
{VM_TESTS} --hosts=ssh://root@192.168.10.11,ssh://root@192.168.10.10 --lab-root={lab_dir} \
--lab-host=192.168.10.11=tokiwa --lab-host=192.168.10.10=yomogi --ssh-config={cfg} --homelab-scope=host \
'--junitxml={tmp_path}/tmp/homelab-verify-<new>/verify.xml' -q
""", "")
    assert net.log == []


EVENTS = [{"event": "start", "host": "tokiwa", "checks": 12}, {"event": "start", "host": "yomogi", "checks": 20},
          {"event": "finish", "host": "tokiwa", "passed": 10, "failed": 0, "skipped": 2},
          {"event": "finish", "host": "yomogi", "passed": 17, "failed": 3, "skipped": 1},
          {"event": "finish", "host": "x", "passed": 4, "failed": 0, "skipped": 0},
          {"event": "other", "host": "y"}]


def test_verify_says_each_hosts_start_and_finish_and_passes(lab_dir, tmp_path, monkeypatch, net, capsys):
    path_with(tmp_path, monkeypatch, "ssh")
    lab = lab_of(lab_dir)
    verify_net(net, lab, lab_dir, ["yomogi", "tokiwa"], "host", events=EVENTS, checks=(5, "", ""))
    assert run_verify(lab_dir, ["yomogi", "tokiwa"], scope="host", settle=30) == 0
    assert out_err(capsys) == ("all checks passed on tokiwa, yomogi (host scope)\n", """\
homelab verify [   0.0s] lab: probing 2 hosts over SSH (ConnectTimeout=10 s)
homelab verify [   2.0s] tokiwa: checking (12 checks, host scope)
homelab verify [   2.0s] yomogi: checking (20 checks, host scope)
homelab verify [   2.0s] tokiwa: 10 checks passed, 2 skipped
homelab verify [   2.0s] yomogi: 3 of 21 checks failed
homelab verify [   2.0s] x: 4 checks passed
""")
    assert net.log == [("probe tokiwa", 20, None, None), ("probe yomogi", 20, None, None),
                       ("checks", 1800, AUTOLOAD, str(lab_dir))]


def test_verify_reports_a_host_that_does_not_answer_and_checks_the_others(lab_dir, tmp_path, monkeypatch, net,
                                                                          capsys):
    path_with(tmp_path, monkeypatch, "ssh")
    lab = lab_of(lab_dir)
    verify_net(net, lab, lab_dir, ["yomogi", "tokiwa", "hanaakari"], "cluster", down=["tokiwa"],
               checks=(1, "F\n", "", ("<work>/verify.xml", junit(("yomogi", "api")))))
    monkeypatch.setattr(cluster_deploy, "live_checks", None)  # not with a host down
    assert run_verify(lab_dir, quiet=True) == 1
    assert out_err(capsys) == (
        "1 check failed:\n  yomogi: api\n    F\nnot checked (no SSH): tokiwa\n",
        "homelab verify: cannot reach tokiwa (192.168.10.11) over SSH: Connection refused\n")
    assert [x[0] for x in net.log] == ["probe hanaakari", "probe tokiwa", "probe yomogi", "checks"]


def test_verify_of_hosts_none_of_which_answers(lab_dir, tmp_path, monkeypatch, net, capsys):
    path_with(tmp_path, monkeypatch, "ssh")
    lab = lab_of(lab_dir)
    verify_net(net, lab, lab_dir, ["tokiwa"], "cluster", down=["tokiwa"])
    assert run_verify(lab_dir, ["tokiwa"]) == 1
    assert out_err(capsys) == (
        "not checked (no SSH): tokiwa\n",
        "homelab verify [   0.0s] lab: probing 1 host over SSH (ConnectTimeout=10 s)\n"
        "homelab verify: cannot reach tokiwa (192.168.10.11) over SSH: Connection refused\n")
    assert [x[0] for x in net.log] == ["probe tokiwa"]


@pytest.mark.parametrize("failing", [False, True])
def test_verify_of_the_lab_adds_the_cluster_layers_checks(lab_dir, tmp_path, monkeypatch, net, capsys, failing):
    path_with(tmp_path, monkeypatch, "ssh")
    lab = lab_of(lab_dir)
    names = ["yomogi", "tokiwa", "hanaakari"]
    verify_net(net, lab, lab_dir, names, "cluster", opts=SshOptions(None, 4))
    asked = []

    def live_checks(lab_, opts):  # the stand-in for Traefik and Ceph, over the network
        asked.append((lab_, opts))
        return [cluster_deploy.LiveCheck("traefik http", True, "200"),
                cluster_deploy.LiveCheck("traefik https", not failing, "refused" if failing else "200")]
    monkeypatch.setattr(cluster_deploy, "live_checks", live_checks)
    assert run_verify(lab_dir, connect_timeout=4) == int(failing)
    assert asked == [(lab, SshOptions(None, 4))]
    out, err = out_err(capsys)
    assert out == ("the cluster layer's checks failed: traefik https\n" if failing else
                   "all checks passed on hanaakari, tokiwa, yomogi (cluster scope); the cluster layer's 2 checks too\n")
    assert err.splitlines()[-2:] == [
        "homelab verify [   4.0s] cluster layer: ok: traefik http: 200",
        f"homelab verify [   4.0s] cluster layer: {'FAILED: traefik https: refused' if failing else 'ok: traefik https: 200'}"]


def test_verify_without_ssh(lab_dir, tmp_path, monkeypatch, net, capsys):
    path_with(tmp_path, monkeypatch)
    assert run_verify(lab_dir) == 4
    assert out_err(capsys) == ("", "homelab verify: ssh is not on PATH\n")
    assert net.log == []


def verdict(v, names=("a", "b"), checked=("a", "b"), down=None, scope="host", layer=()):
    return deploy._verify_verdict(v, list(names), list(checked), down or {}, scope, list(layer))


def test_verify_verdicts(capsys):
    bad = cluster_deploy.LiveCheck("ceph", False, "HEALTH_ERR")
    good = cluster_deploy.LiveCheck("traefik", True, "200")
    assert verdict(deploy.Verdict(True, True)) == 0
    assert verdict(deploy.Verdict(True, True), layer=[good]) == 0
    assert verdict(deploy.Verdict(True, True), layer=[good, bad]) == 1
    assert verdict(deploy.Verdict(True, True), checked=["a"], down={"b": "x", "c": "y"}) == 1
    assert verdict(deploy.Verdict(True, True), checked=[], down={"b": "x"}, layer=[bad]) == 1
    assert verdict(deploy.Verdict(False, False, (), "could not run")) == 1
    assert verdict(deploy.Verdict(False, False, (), "could not run"), down={"b": "x"}) == 1
    assert verdict(deploy.Verdict(False, True, ("a: x", "b: y"), "tail")) == 1
    assert verdict(deploy.Verdict(False, True, ("a: x",), "tail"), down={"b": "x"}) == 1
    assert out_err(capsys) == ("""\
all checks passed on a, b (host scope)
all checks passed on a, b (host scope); the cluster layer's 1 checks too
the cluster layer's checks failed: ceph
all checks passed on a (host scope)
not checked (no SSH): b, c
the cluster layer's checks failed: ceph
could not run
could not run
not checked (no SSH): b
2 checks failed:
  a: x
  b: y
tail
1 check failed:
  a: x
tail
not checked (no SSH): b
""", "")
    assert verdict(deploy.Verdict(True, True), checked=[], down={"b": "x"}) == 1
    assert out_err(capsys) == ("not checked (no SSH): b\n", "")


def test_need_says_which_tool_is_missing(monkeypatch, tmp_path):
    path_with(tmp_path, monkeypatch, "ssh")
    deploy._need("ssh")
    with pytest.raises(MissingTool) as e:
        deploy._need("ssh", "nixos-rebuild")
    assert str(e.value) == "nixos-rebuild is not on PATH (on NixOS it is there; elsewhere: nix shell " \
                           "nixpkgs#nixos-rebuild-ng)"
    with pytest.raises(MissingTool) as e:
        deploy._need("kubectl", "ssh")
    assert str(e.value) == "kubectl is not on PATH"
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "testinfra" else real(n, *a))
    with pytest.raises(MissingTool) as e:
        deploy._need()
    assert str(e.value) == ("pytest-testinfra is not installed, and the live checks need it (pip install "
                            "'nixos-homelab[test]', homelab's package with its test extras)")


def test_failed_checks_names_each_failing_or_erroring_check_once(tmp_path):
    report = tmp_path / "r.xml"
    report.write_text(
        '<testsuites><testsuite name="s">'
        '<testcase name="t1"><properties><property name="check" value="kubelet"/>'
        '<property name="lab_host" value="tokiwa"/></properties><failure message="x"/></testcase>'
        '<testcase name="t2"><properties><property name="check" value="dns"/></properties><error message="e"/>'
        '</testcase>'
        '<testcase name="test_plain"><failure/></testcase>'
        '<testcase><error/></testcase>'
        '<testcase name="t1again"><properties><property name="check" value="kubelet"/>'
        '<property name="lab_host" value="tokiwa"/></properties><failure/></testcase>'
        '<testcase name="passed"><properties><property name="check" value="fine"/></properties></testcase>'
        '<testcase name="skipped"><skipped/></testcase>'
        '</testsuite></testsuites>')
    assert deploy.failed_checks(str(report)) == ["tokiwa: kubelet", "dns", "test_plain", "?"]
    report.write_text("<testsuites><testcase")
    assert deploy.failed_checks(str(report)) == []
    assert deploy.failed_checks(str(tmp_path / "none.xml")) == []


def test_selection_problems_of_build_hosts(tmp_path):
    from homelab import Ssh

    lab = labkit.evolve_host(labkit.lab(), "tokiwa", build_on="hanaakari", ssh=Ssh(port=2222))
    lab = labkit.evolve_host(lab, "hanaakari", build_on="target")
    lab = labkit.evolve_host(lab, "yomogi", build_on="elsewhere")
    assert deploy.selection_problems(lab, ["hanaakari", "tokiwa", "yomogi"]) == [
        f"{lab.where(lab.host('tokiwa'))}: build_on: hanaakari listens for SSH on port 22 and tokiwa on 2222; "
        "nixos-rebuild gives both the same NIX_SSHOPTS, so use one port (or name the ports in an ssh_config and give "
        "the hosts' names as Ssh(host=...))",
        f"{lab.where(lab.host('yomogi'))}: build_on: 'elsewhere' is not a host of this lab"]
    assert deploy.selection_problems(lab, ["hanaakari"]) == []


def test_cluster_secrets_not_set_stop_a_whole_lab_deploy_and_a_dry_run_warns(tmp_path, monkeypatch, net, capsys):
    from .test_cluster_deploy import _acme_lab_folder

    root = _acme_lab_folder(tmp_path / "lab")
    path_with(tmp_path, monkeypatch, "ssh", "nixos-rebuild")
    errors = [f"cluster: Acme.env: secret '{n}' is not set (secrets/{n}.age is missing), and the cluster layer "
              f"creates a Kubernetes Secret from it; set it first: homelab secrets set {n} --cluster "
              "< file-holding-the-value" for n in ("cloudflare-dns-api-token", "cloudflare-zone-api-token")]
    assert deploy.secretstore_errors(root, lab_of(root)) == errors
    assert refusal(root) == "\n".join(errors) + "\nnothing was deployed"
    assert refusal(root, parallel=0) == "--parallel 0: give 1 or more"
    rc, out, err = dry(root, tmp_path, monkeypatch, capsys)
    assert rc == 0 and out.startswith("# homelab deploy of the lab in")
    assert err == "".join(f"homelab deploy: warning: {e}; without --dry-run, deploy stops here before anything "
                          "runs\n" for e in errors)
    rc, out, err = dry(root, tmp_path, monkeypatch, capsys, ["tokiwa"])
    assert (rc, err) == (0, "")
    assert net.log == [] and not (tmp_path / "ssh.log").exists()


# ---------------------------------------------------------------- more of the rollout and of verify, exactly


def test_a_host_whose_checks_fail_at_first_is_checked_again_by_name_while_it_settles(tmp_path, net):
    lab, plan, hs = plan_of(tmp_path, names=["tokiwa"])
    w = hs["tokiwa"]
    host_net(net, w, 60, 61)
    net.on(w.checks.argv, "checks", (1, "F\n", "", (w.report, junit(("tokiwa", "kubelet active")))), ok())
    kube_status(net, w, ok("True/"))
    said = Said()
    res = rollout(plan, lab, said, settle=30).host(w)
    assert (res.result, res.ok, res.after, res.rolled_back_to) == ("switched, checks passed", True, 61, None)
    assert said.lines == [("tokiwa", "generation 60; switching (built here)"),
                          ("tokiwa", "generation 60 -> 61; live checks (live checks of tokiwa (host scope))"),
                          ("tokiwa", "1 check not as expected yet; again in 10 s"),
                          ("tokiwa", "node tokiwa is Ready already: no join"),
                          ("tokiwa", "switched, checks passed")]
    assert [x[0] for x in net.log] == ["generation", "switch", "generation", "checks", "checks", "kubectl get node"]
    assert net.clock.slept == [10.0]


def test_deploy_whose_control_plane_fails_rolls_it_back_and_deploys_no_worker(lab_dir, tmp_path, monkeypatch, net,
                                                                            capsys):
    path_with(tmp_path, monkeypatch, "ssh", "nixos-rebuild")
    lab_net(net, lab_of(lab_dir), lab_dir, ["yomogi", "tokiwa", "hanaakari"], failing="yomogi")
    plan = lab_net(net, lab_of(lab_dir), lab_dir, ["yomogi"])
    cp = plan.hosts[0]
    net.on(cp.checks.argv, "checks", (1, "F.\n", "", (cp.report, junit(("yomogi", "api server")))))
    assert run_deploy(lab_dir, settle=0) == 1
    assert out_err(capsys) == ("""\
homelab deploy [   1.0s] yomogi: generation 10; switching (built on yomogi itself)
homelab deploy [   3.0s] yomogi: generation 10 -> 11; live checks (live checks of yomogi (host scope))
homelab deploy [   4.0s] yomogi: 1 check failed: yomogi: api server
    F.
homelab deploy [   4.0s] yomogi: 1 check failed: rolling back
homelab deploy [   6.0s] yomogi: rolled back to generation 10

host       generation      result                             time
yomogi     10 -> 11 -> 10  1 check failed, rolled back to 10  6 s
hanaakari  -               not started: the rollout stopped   -
tokiwa     -               not started: the rollout stopped   -
the rollout stopped; not deployed: hanaakari, tokiwa
""", "")
    assert [x[0] for x in net.log] == ["generation", "switch", "generation", "checks", "rollback", "generation"]
    assert not (tmp_path / "ssh.log").exists()


def test_deploy_of_a_worker_with_the_labs_pinned_nixos_rebuild_joined_but_not_ready_in_time(
        lab_dir, tmp_path, monkeypatch, net, capsys):
    path_with(tmp_path, monkeypatch, "ssh", "nix")
    rebuild = tuple(remote.rebuild_program(lab_dir))
    assert rebuild[0] == "nix" and rebuild[-2:] == (f"{remote.pinned_nixpkgs(lab_dir)}#nixos-rebuild-ng", "--")
    lab = lab_of(lab_dir)
    plan = deploy.make_steps(lab, lab_dir, ["tokiwa"], Path("<work>"), parallel=1, rollback=True,
                             opts=SshOptions(), suite=VM_TESTS, rebuild=rebuild)
    w = plan.hosts[0]
    host_net(net, w, 60, 61)
    net.on(plan.cluster.argv, "cluster checks", ok())
    net.on(w.join.join.argv, "join", ok("joined\n"))
    kube_status(net, w, (1, "", 'Error from server (NotFound): nodes "tokiwa" not found\n'), ok("False/\n"))
    assert run_deploy(lab_dir, ["tokiwa"], ready_timeout=5) == 1
    assert out_err(capsys) == ("""\
homelab deploy [   1.0s] tokiwa: generation 60; switching (built here)
homelab deploy [   3.0s] tokiwa: generation 60 -> 61; live checks (live checks of tokiwa (host scope))
homelab deploy [   5.0s] tokiwa: node tokiwa is not in the cluster: joining it with the control plane's token
homelab deploy [   9.0s] tokiwa: node tokiwa is Ready=False after 5 s

host    generation  result                       time
tokiwa  60 -> 61    joined, not Ready after 5 s  9 s
the rollout stopped
""", "")
    assert [x[0] for x in net.log] == ["generation", "switch", "generation", "checks"] + ["kubectl get node"] * 3
    assert net.log[1] == ("switch", 6 * 3600, SSHOPTS, None)
    # the suite's reports went to a new folder homelab-deploy-* in the temporary folder, as the dry run says
    work = Path(net.work)
    assert (work.parent, work.name.startswith("homelab-deploy-"), work.exists()) == (
        Path(tempfile.gettempdir()), True, False)


def test_verify_checks_again_while_the_hosts_settle_naming_them(lab_dir, tmp_path, monkeypatch, net, capsys):
    path_with(tmp_path, monkeypatch, "ssh")
    lab = lab_of(lab_dir)
    verify_net(net, lab, lab_dir, ["yomogi", "tokiwa"], "host")
    step = deploy.checks_step(lab_dir.resolve(), [lab.host("tokiwa"), lab.host("yomogi")], "host",
                              "<work>/verify.xml", SshOptions(), VM_TESTS, sys.executable, progress=True)
    failing = (1, "", "", ("<work>/verify.xml", junit(("tokiwa", "a"), ("yomogi", "b"))))
    net.on(step.argv, "checks", failing, ok())
    assert run_verify(lab_dir, ["yomogi", "tokiwa"], scope="host", settle=30) == 0
    assert out_err(capsys) == ("all checks passed on tokiwa, yomogi (host scope)\n", """\
homelab verify [   0.0s] lab: probing 2 hosts over SSH (ConnectTimeout=10 s)
homelab verify [   3.0s] tokiwa, yomogi: 2 checks not as expected yet; again in 10 s
""")
    assert [x[0] for x in net.log] == ["probe tokiwa", "probe yomogi", "checks", "checks"]
    work = Path(net.work)
    assert (work.parent, work.name.startswith("homelab-verify-"), work.exists()) == (
        Path(tempfile.gettempdir()), True, False)


def test_verify_says_which_hosts_passed_when_another_does_not_answer(lab_dir, tmp_path, monkeypatch, net, capsys):
    path_with(tmp_path, monkeypatch, "ssh")
    lab = lab_of(lab_dir)
    verify_net(net, lab, lab_dir, ["yomogi", "tokiwa", "hanaakari"], "cluster", down=["tokiwa"])
    monkeypatch.setattr(cluster_deploy, "live_checks", None)  # not with a host down
    assert run_verify(lab_dir, quiet=True) == 1
    assert out_err(capsys) == (
        "all checks passed on hanaakari, yomogi (cluster scope)\nnot checked (no SSH): tokiwa\n",
        "homelab verify: cannot reach tokiwa (192.168.10.11) over SSH: Connection refused\n")


def test_verify_names_every_failing_check_of_the_cluster_layer(capsys):
    layer = [cluster_deploy.LiveCheck("ceph", False, "HEALTH_ERR"), cluster_deploy.LiveCheck("traefik", True, "200"),
             cluster_deploy.LiveCheck("traefik https", False, "refused")]
    assert verdict(deploy.Verdict(True, True), layer=layer) == 1
    assert out_err(capsys) == ("the cluster layer's checks failed: ceph, traefik https\n", "")


def test_verify_prints_no_blank_line_when_the_failing_suite_printed_nothing(capsys):
    assert verdict(deploy.Verdict(False, True, ("a: x", "b: y"), "")) == 1
    assert verdict(deploy.Verdict(False, True, ("a: x",), ""), down={"b": "x"}) == 1
    assert out_err(capsys) == ("2 checks failed:\n  a: x\n  b: y\n1 check failed:\n  a: x\nnot checked (no SSH): b\n", "")
