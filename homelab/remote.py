"""Reaching the lab's machines over SSH: the commands ``homelab deploy``, ``verify``, ``wake`` and ``sleep`` run.

Every command is an argument list, never a shell string put together from
values.  What runs on the host is one string made with :func:`shlex.join`,
because ssh hands it to the host's login shell.  A host reached as a user
other than root runs what needs root through ``sudo -n`` (it fails rather than
waits for a password).  Every ssh call is non-interactive (``BatchMode``) and
bounded (``ConnectTimeout`` and a timeout on the whole call).

The Kubernetes side goes through the control plane: ``kubectl`` runs there as
root with the cluster-admin kubeconfig that nixpkgs writes under easyCerts.

nixpkgs facts used here (nixos-26.05, docs/nixpkgs-facts.md):

* ``services/cluster/kubernetes/pki.nix``: the API token the workers need sits
  at ``/var/lib/kubernetes/secrets/apitoken.secret`` on the control plane (a
  link to cfssl's own, readable by root only); ``nixos-kubernetes-node-join``
  takes no arguments, reads the token from stdin, needs root and waits without
  a timeout for its certificates;
* ``services/cluster/kubernetes/default.nix`` + ``pki.nix``: the control plane
  has ``/etc/kubernetes/cluster-admin.kubeconfig`` (key readable by root);
* ``kubelet.nix``: the node name is ``kubelet.hostname``, by default
  ``networking.fqdnOrHostName`` (homelab sets no ``networking.domain``).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

import attrs

from .errors import MissingTool, UsageError
from .model import Host

ADMIN_KUBECONFIG = "/etc/kubernetes/cluster-admin.kubeconfig"
TOKEN_PATH = "/var/lib/kubernetes/secrets/apitoken.secret"
JOIN_TIMEOUT = 300  # seconds nixos-kubernetes-node-join may wait for its certificates (it has no limit itself)
# Ready status and cordon of a node in one call: "True/" (schedulable) or "True/true" (cordoned)
NODE_STATUS = 'jsonpath={.status.conditions[?(@.type=="Ready")].status}/{.spec.unschedulable}'
DRAIN = ("--ignore-daemonsets", "--delete-emptydir-data", "--timeout=300s")


@attrs.frozen
class SshOptions:
    """What every ssh call gets: ``config`` (``ssh -F``) and the connect timeout."""

    config: str | None = None
    connect_timeout: int = 10

    def args(self) -> list[str]:
        out = ["-F", self.config] if self.config else []
        return out + ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}"]

    @classmethod
    def from_options(cls, options) -> "SshOptions":
        """From a command's typed options (``ssh_config``, ``connect_timeout``): deploy, verify, wake, sleep."""
        if options.ssh_config and not Path(options.ssh_config).is_file():
            raise UsageError(f"--ssh-config {options.ssh_config}: no such file")
        if options.connect_timeout < 1:
            raise UsageError(f"--connect-timeout {options.connect_timeout}: give 1 or more seconds")
        return cls(str(Path(options.ssh_config).resolve()) if options.ssh_config else None,
                   connect_timeout=options.connect_timeout)


def as_root(host: Host, cmd: Sequence[str]) -> list[str]:
    """``cmd`` as root on ``host``: unchanged for root, else through ``sudo -n``."""
    return list(cmd) if host.ssh.user == "root" else ["sudo", "-n", *cmd]


def ssh_argv(host: Host, cmd: Sequence[str], opts: SshOptions, *, root: bool = False) -> list[str]:
    """``ssh [-F cfg] -o BatchMode=yes ... [-p N] user@host '<cmd>'``."""
    remote = as_root(host, cmd) if root else list(cmd)
    argv = ["ssh", *opts.args()]
    if host.ssh.port != 22:
        argv += ["-p", str(host.ssh.port)]
    return argv + [host.ssh_target, shlex.join(remote)]


def nix_sshopts(host: Host, opts: SshOptions) -> str:
    """``NIX_SSHOPTS`` for nixos-rebuild: the same options as :func:`ssh_argv` (it takes no port in the target)."""
    extra = ["-p", str(host.ssh.port)] if host.ssh.port != 22 else []
    return shlex.join(opts.args() + extra)


def node_name(host: Host) -> str:
    """The host's Kubernetes node name: ``kubelet.hostname``, which defaults to the FQDN or the host name."""
    opts = host.options
    name = opts.get("services.kubernetes.kubelet.hostname")
    if isinstance(name, str):
        return name
    domain = opts.get("networking.domain")
    return f"{host.hostname}.{domain}" if isinstance(domain, str) and domain else host.hostname


# ---------------------------------------------------------------- nixos-rebuild, here or the lab's pinned one


def pinned_nixpkgs(lab_root) -> str | None:
    """The lab flake's locked nixpkgs as a flake reference (``github:NixOS/nixpkgs/<rev>``), from its flake.lock."""
    import json
    from pathlib import Path

    try:
        lock = json.loads((Path(lab_root) / "flake.lock").read_text(encoding="utf-8"))
        nodes = lock["nodes"]
        node = nodes[nodes[lock.get("root", "root")]["inputs"]["nixpkgs"]]["locked"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if node.get("type") == "github" and all(isinstance(node.get(k), str) for k in ("owner", "repo", "rev")):
        return f"github:{node['owner']}/{node['repo']}/{node['rev']}"
    return None


REBUILD_PACKAGE = "nixos-rebuild-ng"  # nixpkgs' attribute; mainProgram "nixos-rebuild"


def rebuild_program(lab_root) -> list[str]:
    """``nixos-rebuild`` from PATH; else the one of the lab's pinned nixpkgs, through ``nix run``.

    The package is ``nixos-rebuild-ng`` (pkgs/by-name/ni/nixos-rebuild-ng; its program is ``nixos-rebuild``);
    the attribute ``nixos-rebuild`` is only a deprecated alias of it (pkgs/top-level/aliases.nix, added
    2025-12-02; before that the Bash version, without --no-reexec), so the lab's pinned one is run by its own
    name (docs/nixpkgs-facts.md, "nixos-rebuild is nixos-rebuild-ng").
    MissingTool says exactly how when neither works (no nix, or a lab flake without a lock to pin it by).
    """
    import shutil

    if shutil.which("nixos-rebuild"):
        return ["nixos-rebuild"]
    if not shutil.which("nix"):
        raise MissingTool("nixos-rebuild is not on PATH, and nix (to run the lab's pinned one) is not either: install "
                          "nix (Debian: apt-get install nix-bin), or run homelab from the lab's `nix develop`")
    ref = pinned_nixpkgs(lab_root)
    if ref is None:
        raise MissingTool(f"nixos-rebuild is not on PATH, and {lab_root}/flake.lock pins no github nixpkgs to run it "
                          "from: run `nix flake lock` in the lab (then homelab runs `nix run "
                          "github:NixOS/nixpkgs/<rev>#nixos-rebuild-ng`), or install it: nix profile install "
                          "nixpkgs#nixos-rebuild-ng")
    return ["nix", "--extra-experimental-features", "nix-command flakes", "run", f"{ref}#{REBUILD_PACKAGE}", "--"]


# ---------------------------------------------------------------- running


def run(argv: Sequence[str], *, timeout: float, env: dict[str, str] | None = None,
        cwd: str | None = None) -> subprocess.CompletedProcess:
    """Run ``argv`` with no stdin, capturing text output; a timeout is exit 124, like coreutils' timeout."""
    try:
        return subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                              timeout=timeout, env=env, cwd=cwd)
    except FileNotFoundError:
        raise MissingTool(argv[0]) from None
    except subprocess.TimeoutExpired as e:
        def text(b):
            return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")
        return subprocess.CompletedProcess(list(argv), 124, text(e.stdout), text(e.stderr) + f"\ntimed out after "
                                           f"{timeout:.0f} s")


@attrs.frozen
class Piped:
    source_rc: int
    sink_rc: int
    source_err: str
    sink_out: str


def pipe(source: Sequence[str], sink: Sequence[str], *, timeout: float) -> Piped:
    """``source | sink`` with the bytes passing from one process to the other only, never through homelab.

    Used for the join token: ssh to the control plane prints it, ssh to the worker reads it.
    """
    try:
        a = subprocess.Popen(list(source), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise MissingTool(source[0]) from None
    try:
        b = subprocess.Popen(list(sink), stdin=a.stdout, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except FileNotFoundError:
        a.kill()
        a.wait()
        raise MissingTool(sink[0]) from None
    a.stdout.close()  # the sink holds the only reading end now
    try:
        out, _ = b.communicate(timeout=timeout)
        _, err = a.communicate(timeout=max(1.0, timeout / 10))
    except subprocess.TimeoutExpired:
        for p in (b, a):
            p.kill()
        out = b.communicate()[0] or b""
        a.communicate()
        return Piped(124 if a.returncode is None or a.returncode < 0 else a.returncode, 124, "",
                     out.decode(errors="replace") + f"\ntimed out after {timeout:.0f} s")
    return Piped(a.returncode, b.returncode, err.decode(errors="replace"), out.decode(errors="replace"))


def tail(text: str, lines: int = 12) -> str:
    kept = [ln for ln in text.strip().splitlines() if ln.strip()][-lines:]
    return "\n".join("    " + ln for ln in kept)


def wait_until(pred: Callable[[], bool], timeout: float, interval: float) -> bool:
    """Call ``pred`` until it is true (True) or ``timeout`` seconds have passed (False); at least once."""
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() + interval > deadline:
            return False
        time.sleep(interval)


def answers(host: Host, opts: SshOptions) -> bool:
    """The host accepts SSH (``ssh ... true`` succeeds)."""
    return run(ssh_argv(host, ["true"], opts), timeout=opts.connect_timeout + 10).returncode == 0


class Say:
    """Progress lines, one per step, safe to call from several threads: ``homelab deploy [ 12.3s] tokiwa: ...``."""

    def __init__(self, command: str, *, stream=None, quiet: bool = False):
        self.command = command
        self.stream = stream  # default: stdout (looked up at each call)
        self.quiet = quiet  # progress lines off (--quiet); err() still speaks
        self.t0 = time.monotonic()
        self.lock = threading.Lock()

    def __call__(self, who: str, msg: str) -> None:
        if self.quiet:
            return
        with self.lock:
            print(f"homelab {self.command} [{time.monotonic() - self.t0:6.1f}s] {who}: {msg}",
                  file=self.stream or sys.stdout, flush=True)

    def err(self, msg: str) -> None:
        with self.lock:
            print(f"homelab {self.command}: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- Kubernetes, through the control plane


class KubeError(Exception):
    pass


@attrs.frozen
class NodeStatus:
    registered: bool
    ready: str = ""  # True, False, Unknown
    cordoned: bool = False

    def describe(self) -> str:
        if not self.registered:
            return "not in the cluster"
        return f"Ready={self.ready or '?'}" + (", cordoned" if self.cordoned else "")


@attrs.frozen
class Kube:
    """kubectl on the control plane, as root, with the cluster-admin kubeconfig."""

    control_plane: Host
    opts: SshOptions

    def argv(self, *args: str) -> list[str]:
        return ssh_argv(self.control_plane, ["env", f"KUBECONFIG={ADMIN_KUBECONFIG}", "kubectl", *args], self.opts,
                        root=True)

    def status_argv(self, node: str) -> list[str]:
        return self.argv("get", "node", node, "-o", NODE_STATUS)

    def status(self, node: str) -> NodeStatus:
        r = run(self.status_argv(node), timeout=60)
        if r.returncode == 0:
            ready, _, cordoned = r.stdout.strip().partition("/")
            return NodeStatus(True, ready, cordoned == "true")
        if "NotFound" in r.stderr:
            return NodeStatus(False)
        raise KubeError(f"kubectl on {self.control_plane.hostname} failed (exit {r.returncode}):\n{tail(r.stderr)}")

    def wait_ready(self, node: str, timeout: float, interval: float = 2.0) -> NodeStatus:
        last = [NodeStatus(False)]

        def ready() -> bool:
            last[0] = self.status(node)
            return last[0].ready == "True"

        wait_until(ready, timeout, interval)
        return last[0]

    def drain_argv(self, node: str) -> list[str]:
        return self.argv("drain", node, *DRAIN)

    def uncordon_argv(self, node: str) -> list[str]:
        return self.argv("uncordon", node)
