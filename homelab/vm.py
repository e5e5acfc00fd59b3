"""``homelab vm hosts/<h>``: build a host's VM, boot it with SSH on a free local port, run the
vm-tests suite against it over SSH, and shut it down.

The VM is the host's own configuration with the VM adapter (homelab/vm-tests/adapter.nix) as its
``virtualisation.vmVariant``: ``nixos-rebuild build-vm --flake <lab>#<h>`` when the host's system is
this machine's, else ``nix build <lab>#vm-<h>`` (an aarch64 host as an x86_64 VM, and so on).

QEMU's user network plays the LAN: ``QEMU_NET_OPTS`` gives it the lab's LAN and gateway, so the
host keeps its generated address and interface (renamed by the adapter); SSH is forwarded from
127.0.0.1:<free port> to the host's address.  A fresh key goes into the VM's shared folder; the
adapter authorizes it for root.  Each VM is alone, so the suite runs with ``--homelab-scope host``.

``--dry-run`` prints the exact commands and runs nothing.
"""

from __future__ import annotations

import ipaddress
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import attrs

from .harness import FLAKES, kvm_problem, lab_test_args
from .errors import EXIT_FAILED, EXIT_OK, EXIT_STEP_FAILED, LabError, MissingTool, Problem, UsageError
from .model import Host, Lab



def local_system() -> str:
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(), platform.machine().lower())
    return f"{machine}-linux"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slirp_dns(lab: Lab) -> str:
    """An address in the LAN that no host, gateway or nameserver uses: QEMU's own DNS sits there."""
    taken = {lab.cluster.gateway, *lab.cluster.nameservers, *(h.ip for h in lab.hosts)}
    for addr in reversed(list(lab.cluster.lan.hosts())):
        if addr not in taken:
            return str(addr)
    raise LabError([Problem("cluster", "lan", "has no free address left for the VM network's DNS")])


def qemu_net_opts(lab: Lab, host: Host, port: int) -> str:
    """QEMU user network = the lab's LAN; SSH from 127.0.0.1:port to the host's own address."""
    lan: ipaddress.IPv4Network = lab.cluster.lan
    return (f"net={lan},host={lab.cluster.gateway},dns={slirp_dns(lab)},"
            f"hostfwd=tcp:127.0.0.1:{port}-{host.ip}:22")


@attrs.frozen
class Step:
    what: str  # for progress output
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    cwd: str | None = None

    def shell(self) -> str:
        cmd = shlex.join(self.argv)
        if self.env:
            cmd = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env) + " " + cmd
        if self.cwd:
            cmd = f"cd {shlex.quote(self.cwd)} && {cmd}"
        return cmd


@attrs.frozen
class VmHost:
    name: str
    system: str
    port: int
    dir: str
    build: Step
    runner: str  # the VM's start script
    boot: Step
    poweroff: Step
    console: str


@attrs.frozen
class VmRun:
    workdir: str
    key: str
    ssh_config: str
    keygen: Step
    hosts: tuple[VmHost, ...]
    suite: Step
    expectations: str


def make_run(lab: Lab, names: list[str], root: Path, workdir: Path, ports: list[int], *, system: str,
              nixos_rebuild: bool, suite_dir: Path, python: str = sys.executable,
              junitxml: str | None = None, extra: tuple[str, ...] = ()) -> VmRun:
    root = root.resolve()
    key = workdir / "id_ed25519"
    ssh_config = workdir / "ssh_config"
    hosts = []
    for name, port in zip(names, ports):
        h = lab.host(name)
        d = workdir / name
        if h.system == system and nixos_rebuild:
            build = Step(f"[{name}] build: nixos-rebuild build-vm",
                         ("nixos-rebuild", "build-vm", "--flake", f"{root}#{name}"), cwd=str(d))
        else:
            why = "" if h.system == system else f" ({h.system} host as a {system} VM)"
            build = Step(f"[{name}] build: nix build{why}",
                         ("nix", *FLAKES, "build", f"{root}#vm-{name}", "--out-link", str(d / "result")))
        runner = str(d / "result" / "bin" / f"run-{name}-vm")
        env = (
            ("NIX_DISK_IMAGE", str(d / f"{name}.qcow2")),
            ("SHARED_DIR", str(d / "shared")),
            ("TMPDIR", str(d)),
            ("QEMU_NET_OPTS", qemu_net_opts(lab, h, port)),
        )
        boot = Step(f"[{name}] boot: ssh on 127.0.0.1:{port}", (runner,), env)
        poweroff = Step(f"[{name}] shutdown", ("ssh", "-F", str(ssh_config), name, "poweroff"))
        hosts.append(VmHost(name, h.system, port, str(d), build, runner, boot, poweroff, str(d / "console.log")))
    keygen = Step("ssh key for the VMs", ("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "homelab-vm",
                                          "-f", str(key)))
    expectations = workdir / "expectations.json"
    argv = [python, "-m", "pytest", str(suite_dir), *lab_test_args(root, suite_dir),
            "--hosts=" + ",".join(f"ssh://{n}" for n in names),
            f"--ssh-config={ssh_config}", f"--expectations={expectations}", "--homelab-scope=host"]
    if len(names) > 1:
        argv += ["-n", str(len(names)), "--dist=loadgroup"]
    if junitxml:
        argv.append(f"--junitxml={junitxml}")
    argv += list(extra)
    suite = Step("suite: vm-tests over ssh", tuple(argv), cwd=str(root))
    return VmRun(str(workdir), str(key), str(ssh_config), keygen, tuple(hosts), suite, str(expectations))


def ssh_config_text(plan: VmRun) -> str:
    blocks = []
    for h in plan.hosts:
        blocks.append("\n".join([
            f"Host {h.name}",
            "  HostName 127.0.0.1",
            f"  Port {h.port}",
            "  User root",
            f"  IdentityFile {plan.key}",
            "  IdentitiesOnly yes",
            "  StrictHostKeyChecking no",
            "  UserKnownHostsFile /dev/null",
            "  LogLevel ERROR",
            "  ConnectTimeout 5",
            "  BatchMode yes",
            # one SSH connection per VM for all the suite's commands
            "  ControlMaster auto",
            "  ControlPersist 60",
            f"  ControlPath {plan.workdir}/ssh-%C",  # in the private work folder, removed with it
        ]))
    return "\n\n".join(blocks) + "\n"


# ---------------------------------------------------------------- running


def _say(msg: str) -> None:
    print(f"homelab vm: {msg}", flush=True)


def _wait_for_ssh(h: VmHost, proc: subprocess.Popen, ssh_config: str, timeout: float) -> float:
    t0 = last = time.monotonic()
    while True:
        if proc.poll() is not None:
            tail = Path(h.console).read_text(errors="replace")[-2000:] if Path(h.console).exists() else ""
            raise RuntimeError(f"[{h.name}] the VM exited (code {proc.returncode}) before SSH answered; "
                               f"console ({h.console}) ends:\n{tail}")
        try:
            r = subprocess.run(["ssh", "-F", ssh_config, h.name, "true"], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
            if r.returncode == 0:
                return time.monotonic() - t0
        except subprocess.TimeoutExpired:
            pass
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"[{h.name}] no SSH after {timeout:.0f} s; console log: {h.console}")
        if time.monotonic() - last >= 15:
            last = time.monotonic()
            _say(f"[{h.name}] waiting for ssh ({last - t0:.0f} s)")
        time.sleep(3)


def _stop(h: VmHost, proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    _say(h.poweroff.what)
    try:
        subprocess.run(list(h.poweroff.argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        pass
    try:
        proc.wait(timeout=60)
        return
    except subprocess.TimeoutExpired:
        pass
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def untracked_entries(root: Path, names: list[str]) -> list[str]:
    """Generated entries a git flake would not see (flakes in a git checkout only see tracked files)."""
    if not (root / ".git").exists() or shutil.which("git") is None:
        return []
    out = []
    for n in names:
        rel = f"hosts/{n}/default.nix"
        r = subprocess.run(["git", "-C", str(root), "ls-files", "--error-unmatch", rel], capture_output=True)
        if r.returncode != 0:
            out.append(rel)
    return out


def execute(plan: VmRun, lab: Lab, *, boot_timeout: float, keep: bool, running: list[str] | None = None) -> int:
    """Build, boot, test and stop; ``running`` gets the names of VMs left running (``keep``)."""
    from .expect import lab_expectations

    work = Path(plan.workdir)
    work.mkdir(parents=True, exist_ok=True)
    exp = lab_expectations(lab)
    Path(plan.expectations).write_text(
        json.dumps({h.name: exp[h.name].to_json() for h in plan.hosts}, indent=2, sort_keys=True) + "\n")
    if not Path(plan.key).exists():
        subprocess.run(list(plan.keygen.argv), check=True)
    Path(plan.ssh_config).write_text(ssh_config_text(plan))
    pub = Path(plan.key + ".pub").read_text()
    timings: dict[str, dict[str, float]] = {h.name: {} for h in plan.hosts}
    rc = _build_all(plan, pub, timings)
    if rc is not None:
        return rc
    procs: dict[str, subprocess.Popen] = {}
    rc = EXIT_STEP_FAILED
    try:
        rc = _boot_and_test(plan, procs, timings, boot_timeout)
    except RuntimeError as e:
        _say(str(e))
    finally:
        _leave_or_stop(plan, procs, keep, running)
    _summary(plan, timings, rc)
    return rc


def _build_all(plan: VmRun, pub: str, timings: dict[str, dict[str, float]]) -> int | None:
    """Build every host's VM (the admins' key shared with it); EXIT_STEP_FAILED at the first that fails."""
    for h in plan.hosts:
        (Path(h.dir) / "shared").mkdir(parents=True, exist_ok=True)
        (Path(h.dir) / "shared" / "authorized_keys").write_text(pub)
        _say(f"{h.build.what}: {h.build.shell()}")
        t0 = time.monotonic()
        r = subprocess.run(list(h.build.argv), cwd=h.build.cwd)
        timings[h.name]["build"] = time.monotonic() - t0
        if r.returncode != 0 or not Path(h.runner).exists():
            _say(f"[{h.name}] build failed (exit {r.returncode}); nothing was booted")
            return EXIT_STEP_FAILED
    return None


def _boot_and_test(plan: VmRun, procs: dict[str, subprocess.Popen], timings: dict[str, dict[str, float]],
                   boot_timeout: float) -> int:
    """Boot every VM, wait for SSH on each, run the suite: EXIT_OK or EXIT_FAILED (RuntimeError: a VM died)."""
    for h in plan.hosts:
        _say(f"{h.boot.what}; console in {h.console}")
        with open(h.console, "wb") as console:
            procs[h.name] = subprocess.Popen(list(h.boot.argv), env={**os.environ, **dict(h.boot.env)},
                                             stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                                             start_new_session=True)
    for h in plan.hosts:
        timings[h.name]["boot"] = _wait_for_ssh(h, procs[h.name], plan.ssh_config, boot_timeout)
        _say(f"[{h.name}] up after {timings[h.name]['boot']:.0f} s")
    _say(f"{plan.suite.what}: {plan.suite.shell()}")
    return EXIT_OK if subprocess.run(list(plan.suite.argv), cwd=plan.suite.cwd).returncode == 0 else EXIT_FAILED


def _leave_or_stop(plan: VmRun, procs: dict[str, subprocess.Popen], keep: bool, running: list[str] | None) -> None:
    if keep and procs:
        for h in plan.hosts:
            if h.name in procs and procs[h.name].poll() is None:
                _say(f"[{h.name}] left running: ssh -F {plan.ssh_config} {h.name}  (pid {procs[h.name].pid})")
                if running is not None:
                    running.append(h.name)
    else:
        for h in plan.hosts:
            if h.name in procs:
                _stop(h, procs[h.name])


def _summary(plan: VmRun, timings: dict[str, dict[str, float]], rc: int) -> None:
    _say("summary:")
    for h in plan.hosts:
        t = timings[h.name]
        parts = [f"built in {t['build']:.0f} s" if "build" in t else "not built",
                 f"booted in {t['boot']:.0f} s" if "boot" in t else "not booted"]
        _say(f"  {h.name} ({h.system}): {', '.join(parts)}")
    _say({EXIT_OK: "suite passed", EXIT_FAILED: "suite found problems (see above)",
          EXIT_STEP_FAILED: "stopped before the suite ran"}[rc])


# ---------------------------------------------------------------- the command


@attrs.frozen
class VmOptions:
    """``homelab vm``'s options, typed (the command line's flags; the same defaults)."""

    dry_run: bool = False  # print the exact commands; run nothing
    workdir: str | None = None  # keys, disk images and logs (default: a new temporary folder)
    ssh_port: int | None = None  # the first host's forwarded SSH port (default: a free one)
    boot_timeout: float = 600
    allow_tcg: bool = False  # boot without KVM under QEMU's emulation
    keep: bool = False  # leave the VMs running after the suite
    suite: str | None = None
    junitxml: str | None = None
    pytest_args: str = ""


def _ssh_ports(first: int | None, n: int) -> list[int]:
    """The forwarded SSH ports: ``first`` and the next ones, or free ports."""
    if first is not None:
        if not 1024 <= first <= 65535 - n:
            raise UsageError(f"--ssh-port {first}: pick a port from 1024 to {65535 - n}")
        return [first + i for i in range(n)]
    ports: list[int] = []
    while len(ports) < n:
        p = free_port()
        if p not in ports:
            ports.append(p)
    return ports


def _print_dry_run(plan: VmRun, names: list[str], kvm: str | None) -> None:
    print(f"# homelab vm: {', '.join(names)} on {local_system()}; work in {plan.workdir}")
    if kvm:
        print(f"# note: {kvm}; a real run stops here unless --allow-tcg")
    print(f"mkdir -p {shlex.quote(plan.workdir)}")
    print(f"# write {plan.expectations} (python -m homelab expect --json) and {plan.ssh_config}")
    print(plan.keygen.shell())
    for h in plan.hosts:
        print(f"mkdir -p {shlex.quote(h.dir + '/shared')} && cp {shlex.quote(plan.key + '.pub')} "
              f"{shlex.quote(h.dir + '/shared/authorized_keys')}")
        print(h.build.shell())
    for h in plan.hosts:
        print(f"{h.boot.shell()} > {shlex.quote(h.console)} 2>&1 &")
    for h in plan.hosts:
        print(f"until ssh -F {shlex.quote(plan.ssh_config)} {h.name} true; do sleep 3; done")
    print(plan.suite.shell())
    for h in plan.hosts:
        print(h.poweroff.shell())


def run(lab: Lab, root: Path, names: list[str], options: VmOptions) -> int:
    """``homelab vm``: build and boot the hosts' VMs, run the vm-tests suite on them, stop them."""
    from .harness import VM_TESTS

    suite_dir = Path(options.suite) if options.suite else VM_TESTS
    if not (suite_dir / "conftest.py").is_file():
        raise UsageError(f"no vm-tests suite at {suite_dir} (pass --suite DIR)")
    ports = _ssh_ports(options.ssh_port, len(names))
    workdir = Path(options.workdir).resolve() if options.workdir else None
    own = workdir is None  # a folder of our own: made private (0700) and removed on every way out
    if own:
        workdir = Path(tempfile.gettempdir()) / "homelab-vm-<new>"
    plan = make_run(lab, names, root, workdir, ports, system=local_system(),
                     nixos_rebuild=shutil.which("nixos-rebuild") is not None, suite_dir=suite_dir.resolve(),
                     junitxml=options.junitxml, extra=tuple(shlex.split(options.pytest_args)))
    kvm = None if options.allow_tcg else kvm_problem()
    for rel in untracked_entries(root, names):
        _say(f"warning: {rel} is not tracked by git, so the flake cannot see it: git add hosts/")
    if options.dry_run:
        _print_dry_run(plan, names, kvm)
        return EXIT_OK
    if kvm:
        raise MissingTool(f"{kvm}. A VM without KVM runs under QEMU's emulation and crawls; pass --allow-tcg to "
                      "run it anyway")
    for tool in ("ssh", "ssh-keygen", "nix"):
        if shutil.which(tool) is None:
            raise MissingTool(f"{tool} not found on PATH (the flake's devShell has them: nix develop)")
    if own:  # mkdtemp: mode 0700, only this user can read the SSH key inside
        workdir = Path(tempfile.mkdtemp(prefix="homelab-vm-"))
        plan = make_run(lab, names, root, workdir, ports, system=local_system(),
                         nixos_rebuild=shutil.which("nixos-rebuild") is not None, suite_dir=suite_dir.resolve(),
                         junitxml=options.junitxml, extra=tuple(shlex.split(options.pytest_args)))
    running: list[str] = []
    try:
        return execute(plan, lab, boot_timeout=options.boot_timeout, keep=options.keep, running=running)
    finally:  # the suite's end, a failed build or boot, an error, Ctrl-C: the key never outlives the run
        if running:
            _say(f"the VMs' SSH key and disks stay in {workdir} while they run; remove it when done")
        else:
            _close_ssh(plan)
            if own:
                shutil.rmtree(workdir, ignore_errors=True)


def _close_ssh(plan: VmRun) -> None:
    """End the SSH connections the run shared (their sockets live in the work folder)."""
    if not Path(plan.ssh_config).is_file():
        return
    for h in plan.hosts:
        try:
            subprocess.run(["ssh", "-F", plan.ssh_config, "-O", "exit", h.name], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            pass
