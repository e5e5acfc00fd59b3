"""``homelab deploy`` and ``homelab verify``: switch the lab's machines, join the workers, check them live.

Built on NixOS's own tools, not a deployer of homelab's own:

1. **Refuse** an invalid lab, or generated files a build would change (``build --check``).
2. **Switch** each host with ``nixos-rebuild switch --flake <lab>#<host> --target-host <user@host> --no-reexec``
   (``--build-host`` where the host is built elsewhere: a Raspberry Pi builds its own system; ``--sudo`` when
   SSH is not root; SSH options in ``NIX_SSHOPTS``).  The control plane goes first, then the other hosts,
   up to ``--parallel`` at a time.  The generation before and after is read on the host
   (``nixos-rebuild list-generations --json``).
3. **Check** the host live: the vm-tests suite (the same expectations as the VM tests) over SSH,
   scoped to that host, retried for up to ``--settle`` seconds while services come up.
4. **Roll back** a host that fails its checks (``nixos-rebuild switch --rollback``, run against the host)
   and stop the rollout; ``--no-rollback`` leaves it as it is.
5. **Join** each worker whose node is not Ready: ssh to the control plane prints the API token, a pipe
   carries it to ssh to the worker, where ``nixos-kubernetes-node-join`` reads it from stdin.  The token
   never passes through homelab, a file, an argument or a log.  Then wait until the node is Ready.
6. Once every host passed, the **cluster** checks of all of them.

``--dry-run`` prints the exact commands in order and runs nothing.  ``homelab verify`` runs step 3 alone
(the cluster scope by default, as a running lab should pass it).
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import json
import os
import shlex
import shutil
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
import attrs

from . import cluster_deploy, helmfile, remote
from .errors import EXIT_FAILED, EXIT_MISSING, EXIT_OK, MissingTool, UsageError
from .model import Host, Lab
from .remote import Kube, SshOptions, Say, nix_sshopts, ssh_argv
from .vm import Step, untracked_entries

SUITE_RETRY = 10.0  # seconds between two runs of the live checks while a host settles
READY_POLL = 2.0


def suite_dir(root: Path) -> Path:
    """The vm-tests suite the live checks run: the lab's own ``vm-tests/``, else the one homelab ships."""
    from .harness import VM_TESTS

    own = root / "vm-tests"
    if (own / "conftest.py").is_file():
        return own
    return VM_TESTS


# ---------------------------------------------------------------- the steps


@attrs.frozen
class Join:
    status: Step  # kubectl get node, on the control plane
    token: Step  # prints the API token on the control plane ...
    join: Step  # ... piped into nixos-kubernetes-node-join on the worker
    node: str


@attrs.frozen
class HostSteps:
    name: str
    kind: str  # control plane | worker | host
    built: str  # where the system is built, for people
    generation: Step
    switch: Step
    checks: Step
    rollback: Step
    report: str  # the suite's JUnit XML
    join: Join | None = None


@attrs.frozen
class DeploySteps:
    root: str
    workdir: str
    parallel: int
    rollback: bool
    first: tuple[HostSteps, ...]  # the control plane, alone
    then: tuple[HostSteps, ...]  # everyone else, up to `parallel` at a time
    cluster: Step | None
    cluster_report: str

    @property
    def hosts(self) -> tuple[HostSteps, ...]:
        return self.first + self.then


def testinfra_spec(host: Host) -> str:
    port = f":{host.ssh.port}" if host.ssh.port != 22 else ""
    return f"ssh://{host.ssh.user}@{host.ssh.host or host.ip}{port}"


def checks_step(lab_root: Path, hosts: list[Host], scope: str, report: str, opts: SshOptions, suite: Path,
                python: str, *, progress: bool = False) -> Step:
    """The vm-tests suite against ``hosts`` over SSH, each target named as its lab host.

    ``progress``: with homelab's plugin that reports each host's start and finish (homelab/liveprogress.py).
    """
    # only testinfra's plugin: pytest plugins installed beside homelab neither slow nor change the checks
    from .harness import lab_test_args

    plugins = ["-p", "testinfra.plugin"] + (["-p", "homelab.liveprogress"] if progress else [])
    argv = [python, "-m", "pytest", *plugins, str(suite), *lab_test_args(lab_root, suite),
            "--hosts=" + ",".join(testinfra_spec(h) for h in hosts), f"--lab-root={lab_root}"]
    if len(hosts) == 1:
        argv.append(f"--lab-host={hosts[0].hostname}")
    else:
        argv += [f"--lab-host={h.ssh.host or h.ip}={h.hostname}" for h in hosts]
    if opts.config:
        argv.append(f"--ssh-config={opts.config}")
    argv += [f"--homelab-scope={scope}", f"--junitxml={report}", "-q"]
    who = hosts[0].hostname if len(hosts) == 1 else "the cluster"
    return Step(f"live checks of {who} ({scope} scope)", tuple(argv), (("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1"),),
                cwd=str(lab_root))


def _rebuild(host: Host, args: list[str], opts: SshOptions,
             program: tuple[str, ...] = ("nixos-rebuild",)) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    argv = [*program, *args, "--target-host", host.ssh_target]
    return tuple(argv), (("NIX_SSHOPTS", nix_sshopts(host, opts)),)


def host_steps(lab: Lab, root: Path, host: Host, workdir: Path, opts: SshOptions, suite: Path,
               python: str, rebuild: tuple[str, ...] = ("nixos-rebuild",)) -> HostSteps:
    name = host.hostname
    flake = f"{root}#{name}"
    build = host.build_host
    extra: list[str] = []
    if build is None:
        built = "built here"
    elif build == "target":
        built = f"built on {name} itself"
        extra = ["--build-host", host.ssh_target]
    else:
        built = f"built on {build}"
        extra = ["--build-host", lab.host(build).ssh_target]
    sudo = ["--sudo"] if host.ssh.user != "root" else []
    argv, env = _rebuild(host, ["switch", "--flake", flake], opts, rebuild)
    switch = Step(f"switch ({built})", argv + tuple(extra) + ("--no-reexec", *sudo), env)
    argv, env = _rebuild(host, ["switch", "--rollback", "--flake", flake], opts, rebuild)
    rollback = Step("roll back to the previous generation", argv + ("--no-reexec", *sudo), env)
    generation = Step("generation", tuple(ssh_argv(host, ["nixos-rebuild", "list-generations", "--json"], opts)))
    report = str(workdir / f"{name}.xml")
    checks = checks_step(root, [host], "host", report, opts, suite, python)
    kind = "control plane" if host.is_control_plane else ("worker" if host.is_kubernetes_node else "host")
    join = None
    cp = lab.control_plane
    if host.is_kubernetes_node and not host.is_control_plane and cp is not None and lab.cluster.easy_certs:
        kube = Kube(cp, opts)
        node = remote.node_name(host)
        join = Join(
            Step(f"is {node} Ready? (kubectl on {cp.hostname})", tuple(kube.status_argv(node))),
            Step(f"the API token, on {cp.hostname}", tuple(ssh_argv(cp, ["cat", remote.TOKEN_PATH], opts,
                                                                     root=True))),
            Step(f"nixos-kubernetes-node-join on {name}", tuple(ssh_argv(
                host, ["timeout", str(remote.JOIN_TIMEOUT), "nixos-kubernetes-node-join"], opts, root=True))),
            node)
    return HostSteps(name, kind, built, generation, switch, checks, rollback, report, join)


def make_steps(lab: Lab, root: Path, names: list[str], workdir: Path, *, parallel: int, rollback: bool,
               opts: SshOptions, suite: Path, python: str = sys.executable,
               rebuild: tuple[str, ...] = ("nixos-rebuild",)) -> DeploySteps:
    """``rebuild``: the nixos-rebuild command (remote.rebuild_program: PATH's, or the lab's pinned one)."""
    root = root.resolve()
    hosts = [lab.host(n) for n in sorted(names)]
    steps = {h.hostname: host_steps(lab, root, h, workdir, opts, suite, python, rebuild) for h in hosts}
    first = tuple(steps[h.hostname] for h in hosts if h.is_control_plane)
    then = tuple(steps[h.hostname] for h in hosts if not h.is_control_plane)
    report = str(workdir / "cluster.xml")
    cluster = checks_step(root, hosts, "cluster", report, opts, suite, python) if hosts else None
    return DeploySteps(str(root), str(workdir), parallel, rollback, first, then, cluster, report)


def secretstore_errors(root: Path, lab: Lab) -> list[str]:
    """Each secret the cluster layer needs and the lab's secret store lacks (homelab.secretstore)."""
    from .secretstore import cluster_missing_errors

    return cluster_missing_errors(root, lab)


def selection_problems(lab: Lab, names: list[str]) -> list[str]:
    """What makes a deploy of these hosts impossible as described (bad input, exit 2)."""
    out = []
    for n in names:
        h = lab.host(n)
        b = h.build_host
        if b not in (None, "target"):
            if b not in {x.hostname for x in lab.hosts}:
                out.append(f"{lab.where(h)}: build_on: {b!r} is not a host of this lab")
            elif lab.host(b).ssh.port != h.ssh.port:
                out.append(f"{lab.where(h)}: build_on: {b} listens for SSH on port {lab.host(b).ssh.port} and {n} on "
                           f"{h.ssh.port}; nixos-rebuild gives both the same NIX_SSHOPTS, so use one port (or name "
                           "the ports in an ssh_config and give the hosts' names as Ssh(host=...))")
    return out


def render_steps(plan: DeploySteps, lab: Lab) -> str:
    """``--dry-run``: the exact commands, in order; what only runs on a condition is a comment."""
    firsts = ", ".join(h.name for h in plan.first)
    thens = ", ".join(h.name for h in plan.then)
    order = " then ".join(x for x in (firsts, f"{thens} (up to {plan.parallel} at a time)" if thens else "") if x)
    out = [f"# homelab deploy of the lab in {plan.root}: {order}",
           "# each host: its generation, switch, its generation again, its live checks (the vm-tests suite over SSH);",
           "# a host failing its checks is " + ("rolled back and the rollout stops" if plan.rollback
                                                 else "left as it is (--no-rollback) and the rollout stops"),
           f"# the suite's reports go to {plan.workdir}"]
    for hs in plan.hosts:
        h = lab.host(hs.name)
        out += ["", f"# {hs.name}: {hs.kind}, {h.system}, {hs.built}", hs.generation.shell(), hs.switch.shell(),
                hs.generation.shell(), hs.checks.shell()]
        if plan.rollback:
            out.append(f"#   if a check fails (then the rollout stops): {hs.rollback.shell()}")
        if hs.join:
            j = hs.join
            out += ["#   then, unless the node is Ready already:", j.status.shell(),
                    "#   join it with the control plane's API token, passed from one ssh to the other by a pipe:",
                    f"{j.token.shell()} | {j.join.shell()}",
                    f"#   and wait until it is Ready: the same kubectl get node, every {READY_POLL:.0f} s"]
    if plan.cluster:
        out += ["", "# once every host passed: the cluster checks", plan.cluster.shell()]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- running


@attrs.define
class HostResult:
    name: str
    ok: bool = False
    result: str = "not started: the rollout stopped"
    before: int | None = None
    after: int | None = None
    rolled_back_to: int | None = None
    seconds: float | None = None
    started: bool = False

    def generations(self) -> str:
        if not self.started:
            return "-"
        if self.after is None and self.rolled_back_to is None:  # unreachable, or its generation unreadable
            return "?" if self.before is None else str(self.before)
        parts = [self.before, self.after] + ([self.rolled_back_to] if self.rolled_back_to is not None else [])
        return " -> ".join("?" if g is None else str(g) for g in parts)


def current_generation(stdout: str) -> int | None:
    """The current generation from ``nixos-rebuild list-generations --json`` (newest first, one is current)."""
    try:
        gens = json.loads(stdout)
        return next(int(g["generation"]) for g in gens if g.get("current"))
    except (ValueError, TypeError, KeyError, StopIteration, AttributeError):
        return None


def failed_checks(report: str) -> list[str]:
    """The ids of the checks that failed, from the suite's JUnit XML (its ``check`` property)."""
    try:
        tree = ET.parse(report)
    except (OSError, ET.ParseError):
        return []
    out = []
    for case in tree.iter("testcase"):
        if case.find("failure") is None and case.find("error") is None:
            continue
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        cid = props.get("check") or case.get("name", "?")
        host = props.get("lab_host")
        out.append(f"{host}: {cid}" if host else cid)
    return list(dict.fromkeys(out))


@attrs.frozen
class Verdict:
    ok: bool
    ran: bool  # False: the suite could not run at all (not the host's fault)
    failed: tuple[str, ...] = ()
    detail: str = ""


def run_checks(step: Step, report: str, settle: float, say: Say, who: str, on_event=None) -> Verdict:
    """Run the suite; while checks fail, again every SUITE_RETRY s for up to ``settle`` s.

    ``on_event``: called with each host's start and finish while the suite runs (a step with ``progress``).
    """
    deadline = time.monotonic() + settle
    while True:
        if on_event is None:
            r = remote.run(step.argv, timeout=1800, env=_env(step), cwd=step.cwd)
        else:
            from .reach import run_with_progress

            r = run_with_progress(step.argv, timeout=1800, env=_env(step), cwd=step.cwd, on_event=on_event)
        if r.returncode in (0, 5):  # 5: nothing to check in this scope
            return Verdict(True, True)
        failed = tuple(failed_checks(report))
        if r.returncode != 1:
            return Verdict(False, False, failed, f"the suite could not run (pytest exit {r.returncode}):\n"
                                                 f"{remote.tail(r.stdout + r.stderr)}")
        if time.monotonic() + SUITE_RETRY > deadline:
            return Verdict(False, True, failed, remote.tail(r.stdout, 20))
        say(who, f"{len(failed)} check{'s' if len(failed) != 1 else ''} not as expected yet; again in "
                 f"{SUITE_RETRY:.0f} s")
        time.sleep(SUITE_RETRY)


class Rollout:
    def __init__(self, plan: DeploySteps, lab: Lab, opts: SshOptions, *, settle: float, ready_timeout: float, say: Say):
        self.plan, self.lab, self.opts = plan, lab, opts
        self.settle, self.ready_timeout, self.say = settle, ready_timeout, say
        self.stop = threading.Event()
        self.results = {hs.name: HostResult(hs.name) for hs in plan.hosts}

    def generation(self, hs: HostSteps) -> tuple[int | None, str]:
        r = remote.run(hs.generation.argv, timeout=120)
        if r.returncode != 0:
            return None, f"exit {r.returncode}: {r.stderr.strip()[-300:]}"
        return current_generation(r.stdout), ""

    def host(self, hs: HostSteps) -> HostResult:
        res = self.results[hs.name]
        if self.stop.is_set():
            return res
        res.started = True
        t0 = time.monotonic()
        try:
            self._host(hs, res)
        finally:
            res.seconds = time.monotonic() - t0
            if not res.ok:
                self.stop.set()
        return res

    def _host(self, hs: HostSteps, res: HostResult) -> None:
        say = self.say
        res.before, why = self.generation(hs)
        if why:
            res.result = f"unreachable ({why})"
            say(hs.name, f"cannot read its generation over SSH: {why}")
            return
        say(hs.name, f"generation {res.before}; switching ({hs.built})")
        r = remote.run(hs.switch.argv, timeout=6 * 3600, env=_env(hs.switch))
        res.after, _ = self.generation(hs)
        if r.returncode != 0:
            res.result = f"switch failed (nixos-rebuild exit {r.returncode})"
            say(hs.name, f"nixos-rebuild failed (exit {r.returncode}):\n{remote.tail(r.stdout + r.stderr, 20)}")
            if res.after is not None and res.after != res.before:
                self.roll_back(hs, res, "the switch failed")
            return
        say(hs.name, f"generation {res.before} -> {res.after}; live checks ({hs.checks.what})")
        v = run_checks(hs.checks, hs.report, self.settle, say, hs.name)
        if not v.ran:
            res.result = "checks could not run"
            say(hs.name, v.detail)
            return
        if not v.ok:
            n = len(v.failed)
            res.result = f"{n} check{'s' if n != 1 else ''} failed"
            output = f"\n{v.detail}" if v.detail else ""  # the suite's output, none when it printed nothing
            say(hs.name, f"{res.result}: {', '.join(v.failed) or '(see the output)'}{output}")
            if res.after is not None and res.after == res.before:
                # the switch made no new generation (the configuration is the one the host ran): a rollback
                # would go to the generation before it, one further back than where the deploy found the host
                res.result += f", not rolled back: the switch left it on generation {res.after}, as it was"
                say(hs.name, f"left at generation {res.after}: the switch made no new generation to roll back from")
                return
            self.roll_back(hs, res, res.result)
            return
        if hs.join is not None:
            joined = self.join(hs, res)
            if joined is None:
                return
            res.result = "switched, joined, checks passed" if joined else "switched, checks passed"
        else:
            res.result = "switched, checks passed"
        res.ok = True
        say(hs.name, res.result)

    def roll_back(self, hs: HostSteps, res: HostResult, why: str) -> None:
        if not self.plan.rollback:
            res.result += ", not rolled back (--no-rollback)"
            self.say(hs.name, f"{why}: left at generation {res.after} (--no-rollback)")
            return
        self.say(hs.name, f"{why}: rolling back")
        r = remote.run(hs.rollback.argv, timeout=1800, env=_env(hs.rollback))
        res.rolled_back_to, _ = self.generation(hs)
        if r.returncode != 0:
            res.result += f", rollback FAILED (exit {r.returncode})"
            self.say(hs.name, f"the rollback failed:\n{remote.tail(r.stdout + r.stderr)}")
        else:
            res.result += f", rolled back to {res.rolled_back_to}"
            self.say(hs.name, f"rolled back to generation {res.rolled_back_to}")

    def join(self, hs: HostSteps, res: HostResult) -> bool | None:
        """True when joined now, False when it was Ready already, None when the join failed."""
        j = hs.join
        kube = Kube(self.lab.control_plane, self.opts)
        try:
            status = kube.status(j.node)
            if status.ready == "True":
                self.say(hs.name, f"node {j.node} is Ready already: no join")
                return False
            self.say(hs.name, f"node {j.node} is {status.describe()}: joining it with the control plane's token")
            p = remote.pipe(j.token.argv, j.join.argv, timeout=remote.JOIN_TIMEOUT + 30)
            if p.source_rc != 0:
                res.result = "join failed: no token"
                self.say(hs.name, f"could not read the API token on {self.lab.control_plane.hostname} "
                                  f"(exit {p.source_rc}):\n{remote.tail(p.source_err)}")
                return None
            if p.sink_rc != 0:
                res.result = f"join failed (exit {p.sink_rc})"
                self.say(hs.name, f"nixos-kubernetes-node-join failed (exit {p.sink_rc}):\n{remote.tail(p.sink_out)}")
                return None
            status = kube.wait_ready(j.node, self.ready_timeout, READY_POLL)
        except remote.KubeError as e:
            res.result = "join failed: kubectl"
            self.say(hs.name, str(e))
            return None
        if status.ready != "True":
            res.result = f"joined, not Ready after {self.ready_timeout:.0f} s"
            self.say(hs.name, f"node {j.node} is {status.describe()} after {self.ready_timeout:.0f} s")
            return None
        self.say(hs.name, f"node {j.node} joined and Ready")
        return True

    def run(self) -> bool:
        for hs in self.plan.first:
            self.host(hs)
        if self.plan.then and not self.stop.is_set():
            with concurrent.futures.ThreadPoolExecutor(max_workers=self.plan.parallel) as pool:
                list(pool.map(self.host, self.plan.then))
        return all(r.ok for r in self.results.values())


def _env(step: Step) -> dict[str, str] | None:
    return {**os.environ, **dict(step.env)} if step.env else None


def table(results: list[HostResult]) -> str:
    rows = [("host", "generation", "result", "time")]
    for r in results:
        rows.append((r.name, r.generations(), r.result, "-" if r.seconds is None else f"{r.seconds:.0f} s"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row[:3], widths)) + "  " + row[3] for row in rows) + "\n"


@attrs.frozen
class DeployOptions:
    """``homelab deploy``'s options, typed (the command line's flags; the same defaults)."""

    dry_run: bool = False  # print the exact commands, in order; run nothing
    parallel: int = 2  # switch up to this many hosts at a time after the control plane
    no_rollback: bool = False  # leave a host that fails its checks at its new generation
    ready_timeout: float = 300  # seconds a joined worker may take to be Ready
    settle: float = 120  # run the checks again while some fail, for up to this long
    suite: str | None = None  # the vm-tests folder (default: the lab's vm-tests/, else homelab's)
    ssh_config: str | None = None  # an ssh_config for every ssh call (ssh -F)
    connect_timeout: int = 10  # seconds each ssh call may wait for a host to answer (ssh -o ConnectTimeout)


@attrs.frozen
class VerifyOptions:
    """``homelab verify``'s options (the live checks), typed."""

    scope: str = "cluster"  # or "host": what holds on a lone host
    dry_run: bool = False
    settle: float = 0
    suite: str | None = None
    ssh_config: str | None = None
    connect_timeout: int = 10  # the SSH probe of each host, and every ssh call of the checks
    quiet: bool = False  # no progress lines (each host's start and finish)


# ---------------------------------------------------------------- the commands



def _suite(options, root: Path) -> Path:
    suite = Path(options.suite).resolve() if options.suite else suite_dir(root)
    if not (suite / "conftest.py").is_file():
        raise UsageError(f"no vm-tests suite at {suite} (pass --suite DIR)")
    return suite


def _need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            hint = " (on NixOS it is there; elsewhere: nix shell nixpkgs#nixos-rebuild-ng)" if tool == "nixos-rebuild" \
                else ""
            raise MissingTool(f"{tool} is not on PATH{hint}")
    if importlib.util.find_spec("testinfra") is None:
        raise MissingTool("pytest-testinfra is not installed, and the live checks need it (pip install "
                          "'nixos-homelab[test]', homelab's package with its test extras)")


def _fresh(lab: Lab, root: Path) -> None:
    """Refuse generated files a build would change: the flake would deploy something else than the lab says."""
    from . import build

    res = build.build(root, lab=lab, check=True)
    if res.stale:
        from .about import program

        raise UsageError("generated files are out of date, so the flake does not describe this lab; run "
                         f"`{program()} build` first:\n" + "\n".join(f"  {rel}" for rel in res.stale))
    if not (root / "flake.nix").is_file():
        raise UsageError(f"no flake.nix in {root}: nixos-rebuild --flake needs the lab's flake (`homelab init` makes one)")


def _rebuild_program(root: Path, dry_run: bool, say: Say) -> tuple[str, ...] | None:
    """nixos-rebuild from PATH or the lab's pinned one (remote.rebuild_program); None: neither (said why)."""
    try:
        return tuple(remote.rebuild_program(root))
    except MissingTool as e:
        if not dry_run:
            say.err(f"{e}; nothing was deployed")
            return None
        sys.stdout.write(f"# note: {e}\n")
        return ("nixos-rebuild",)


def _print_deploy(lab: Lab, root: Path, names: list[str], only: list[str] | None, options: DeployOptions,
                  opts: SshOptions, suite: Path, rebuild) -> int:
    """``deploy --dry-run``: the exact commands, in order, the cluster layer's after them."""
    workdir = Path(tempfile.gettempdir()) / "homelab-deploy-<new>"
    plan = make_steps(lab, root, names, workdir, parallel=options.parallel, rollback=not options.no_rollback,
                      opts=opts, suite=suite, rebuild=rebuild)
    if rebuild[0] != "nixos-rebuild":
        sys.stdout.write("# nixos-rebuild is not on PATH: the lab's pinned one runs through nix run\n")
    sys.stdout.write(render_steps(plan, lab))
    layer = "" if only else cluster_deploy.render(cluster_deploy.plan(lab, opts), root)
    if layer:
        sys.stdout.write("\n" + layer)
    return EXIT_OK


def _apply_cluster_layer(lab: Lab, root: Path, only: list[str] | None, opts: SshOptions, say: Say) -> bool:
    """The cluster layer, with a whole-lab deploy: labels, Secrets, helm releases; False when a step failed."""
    steps = [] if only else cluster_deploy.plan(lab, opts)
    if steps:
        done = cluster_deploy.apply(root, steps, reveal_secret(root), say=lambda m: say("cluster layer", m))
        failed = [r for r in done if r.rc != 0]
        if failed:
            print(f"the cluster layer failed at: {failed[0].step.what} (exit {failed[0].rc})\n{failed[0].output}")
            return False
        print(f"applied the cluster layer: {len(steps)} steps ({', '.join(r.name for r in helmfile.releases(lab))})")
    return True


def _refusals(lab: Lab, root: Path, names: list[str], only: list[str] | None, options: DeployOptions) -> list[str]:
    """UsageError for a bad selection or option; the cluster secrets not set (a dry run only warns of them)."""
    if options.parallel < 1:
        raise UsageError(f"--parallel {options.parallel}: give 1 or more")
    problems = selection_problems(lab, names)
    if problems:
        raise UsageError("\n".join(problems))
    # a whole-lab deploy ends with the cluster layer, which creates Kubernetes Secrets from the secret store: a
    # cluster secret not set stops it before any host is touched (the build only warns: nothing else needs it)
    unset = [] if only else secretstore_errors(root, lab)
    if unset and not options.dry_run:
        raise UsageError("\n".join(unset) + "\nnothing was deployed")
    return unset


def deploy(lab: Lab, root: Path, only: list[str] | None, options: DeployOptions) -> int:
    """``homelab deploy``: switch the hosts, join new workers, check each live, roll back a failing host."""

    names = list(only or [h.hostname for h in lab.hosts])
    unset = _refusals(lab, root, names, only, options)
    _fresh(lab, root)
    opts = SshOptions.from_options(options)
    suite = _suite(options, root)
    say = Say("deploy")
    for e in unset:  # the dry run shows the plan, and says what a real deploy would refuse
        say.err(f"warning: {e}; without --dry-run, deploy stops here before anything runs")
    for rel in untracked_entries(root, names):
        say.err(f"warning: {rel} is not tracked by git, so the flake cannot see it: git add hosts/")
    rebuild = _rebuild_program(root, options.dry_run, say)
    if rebuild is None:
        return EXIT_MISSING
    if options.dry_run:
        return _print_deploy(lab, root, names, only, options, opts, suite, rebuild)
    try:
        _need("ssh")
    except MissingTool as e:
        say.err(f"{e}; nothing was deployed")
        return EXIT_MISSING
    with tempfile.TemporaryDirectory(prefix="homelab-deploy-") as work:
        plan = make_steps(lab, root, names, Path(work), parallel=options.parallel, rollback=not options.no_rollback,
                          opts=opts, suite=suite, rebuild=rebuild)
        rollout = Rollout(plan, lab, opts, settle=options.settle, ready_timeout=options.ready_timeout, say=say)
        try:
            ok = rollout.run()
            cluster = None
            if ok and plan.cluster is not None:
                switched = plan.hosts[0].name if len(plan.hosts) == 1 else f"all {len(plan.hosts)}"
                say("cluster", f"{switched} switched; {plan.cluster.what}")
                cluster = run_checks(plan.cluster, plan.cluster_report, options.settle, say, "cluster")
        except MissingTool as e:
            say.err(f"{e}")
            return EXIT_MISSING
    print()
    sys.stdout.write(table([rollout.results[hs.name] for hs in plan.hosts]))
    if not ok:
        stopped = [r.name for r in rollout.results.values() if not r.started]
        print("the rollout stopped" + (f"; not deployed: {', '.join(stopped)}" if stopped else ""))
        return EXIT_FAILED
    if cluster is not None and not cluster.ok:
        if cluster.ran:
            print(f"the cluster checks failed: {', '.join(cluster.failed) or '(see above)'}")
        else:
            print(f"the cluster checks could not run: {cluster.detail}")
        print("nothing was rolled back: every host passed its own checks and keeps its new generation (roll one "
              "back with: nixos-rebuild switch --rollback --target-host <user@host>)")
        return EXIT_FAILED
    if not _apply_cluster_layer(lab, root, only, opts, say):
        return EXIT_FAILED
    print(f"deployed {len(plan.hosts)} host{'s' if len(plan.hosts) != 1 else ''}; host and cluster checks passed")
    return EXIT_OK


def reveal_secret(root: Path, identity=None):
    """A lab secret's value for the admin, decrypted from the lab's age-encrypted store
    (:func:`homelab.secretstore.reveal`, the admin's key); the value goes to kubectl's stdin only."""
    def reveal(secret):
        from .secretstore import reveal as store_reveal

        return store_reveal(root, secret.name, identity)
    return reveal


def verify(lab: Lab, root: Path, only: list[str] | None, options: VerifyOptions) -> int:
    """``homelab verify``: the live checks of the named hosts (all when none), one suite run.

    Each host is probed over SSH first (one bounded ``ssh ... true``, all at once): a host that does not answer
    is reported with ssh's reason and left out, the others are checked.  Each host's start and finish is
    shown on stderr while the suite runs (not with ``--quiet``).
    """
    from . import reach

    names = sorted(only or [h.hostname for h in lab.hosts])
    opts = SshOptions.from_options(options)
    suite = _suite(options, root)
    say = Say("verify", stream=sys.stderr, quiet=options.quiet)
    hosts = [lab.host(n) for n in names]
    if options.dry_run:
        report = str(Path(tempfile.gettempdir()) / "homelab-verify-<new>" / "verify.xml")
        print("# each host answers SSH? (a host that does not is reported and left out of the checks)")
        for h in hosts:
            print(shlex.join(reach.probe_argv(h, opts)))
        print(checks_step(root.resolve(), hosts, options.scope, report, opts, suite, sys.executable,
                          progress=True).shell())
        return EXIT_OK
    try:
        _need("ssh")
    except MissingTool as e:
        say.err(str(e))
        return EXIT_MISSING
    say("lab", f"probing {len(hosts)} host{'s' if len(hosts) != 1 else ''} over SSH (ConnectTimeout="
               f"{opts.connect_timeout} s)")
    down = reach.unreachable(hosts, opts)
    for name, why in down.items():
        say.err(f"cannot reach {name} ({reach.address(lab.host(name))}) over SSH: {why}")
    up = [h for h in hosts if h.hostname not in down]
    v = _check_live(root, up, options, opts, suite, say) if up else Verdict(True, True)
    # the cluster layer's live checks (Traefik through nginx, Ceph's health), with the cluster scope of the lab
    layer = cluster_deploy.live_checks(lab, opts) if options.scope == "cluster" and not only and not down else []
    for c in layer:
        say("cluster layer", f"{'ok' if c.ok else 'FAILED'}: {c.name}: {c.detail}")
    return _verify_verdict(v, names, [h.hostname for h in up], down, options.scope, layer)


def _check_live(root: Path, up: list[Host], options: VerifyOptions, opts: SshOptions, suite: Path, say: Say
                ) -> Verdict:
    """The suite against the hosts that answer SSH, each host's start and finish said as the suite runs."""
    def progress(event: dict) -> None:
        if event.get("event") == "start":
            say(event["host"], f"checking ({event['checks']} checks, {options.scope} scope)")
        elif event.get("event") == "finish":
            failed = event["failed"]
            say(event["host"], f"{failed} of {event['passed'] + failed + event['skipped']} checks failed"
                if failed else f"{event['passed']} checks passed" + (f", {event['skipped']} skipped"
                                                                     if event["skipped"] else ""))

    with tempfile.TemporaryDirectory(prefix="homelab-verify-") as work:
        report = str(Path(work) / "verify.xml")
        step = checks_step(root.resolve(), up, options.scope, report, opts, suite, sys.executable, progress=True)
        return run_checks(step, report, options.settle, say, ", ".join(h.hostname for h in up), on_event=progress)


def _verify_verdict(v: Verdict, names: list[str], checked: list[str], down: dict, scope: str, layer: list) -> int:
    """What ``homelab verify`` prints at the end, and its exit code."""
    not_checked = f"not checked (no SSH): {', '.join(down)}" if down else ""
    layer_failed = [c.name for c in layer if not c.ok]
    if v.ok and not down and not layer_failed:
        print(f"all checks passed on {', '.join(names)} ({scope} scope)"
              + (f"; the cluster layer's {len(layer)} checks too" if layer else ""))
        return EXIT_OK
    if v.ok and layer_failed:
        print("the cluster layer's checks failed: " + ", ".join(layer_failed))
        return EXIT_FAILED
    if v.ok:
        if checked:
            print(f"all checks passed on {', '.join(checked)} ({scope} scope)")
        print(not_checked)
        return EXIT_FAILED
    if not v.ran:
        print(v.detail)
        if not_checked:
            print(not_checked)
        return EXIT_FAILED
    print(f"{len(v.failed)} check{'s' if len(v.failed) != 1 else ''} failed:")
    for f in v.failed:
        print(f"  {f}")
    if v.detail:  # the suite's output, none when it printed nothing
        print(v.detail)
    if not_checked:
        print(not_checked)
    return EXIT_FAILED


__all__ = ["deploy", "verify", "make_steps", "render_steps", "suite_dir", "DeploySteps", "HostSteps", "Rollout",
           "current_generation", "failed_checks"]
