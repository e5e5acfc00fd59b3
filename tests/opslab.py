"""A lab folder and a stand-in LAN for the operations tests (``homelab deploy``, ``verify``, ``wake``, ``sleep``).

* :func:`write_seed_lab`: a lab folder whose hosts are tests/labkit.py's seed hosts (the workers with
  Wake-on-LAN placeholder MACs), its generated files built, and the repository's flake.
* :class:`OpsNet`: the LAN in network namespaces.  ``ws`` is the deployer, a workstation on the LAN
  (192.168.10.100, bridge ``br0``); each lab host has its own namespace, its LAN interface named as in the
  model and holding its address.  sshd runs in each host's namespace on port 22, inside a private mount
  namespace with fresh tmpfs on /run and /var/lib (the control plane's API token is made there the way
  nixpkgs makes it: 16 random bytes as 32 hex characters).  The stand-in programs of
  tests/standins/tools.py come first on the PATH of the SSH sessions and of the deployer.

Everything stays in namespaces the test made; closing ends every sshd and deletes the namespaces.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from homelab import build

from . import labkit
from .conftest import REPO
from homelab.proofs.netns import Namespaces, veth

STANDINS = REPO / "tests" / "standins"
STANDIN_SUITE = STANDINS / "suite"
WOL = {"tokiwa": "02:00:00:00:00:11", "hanaakari": "02:00:00:00:00:12"}
WORKSTATION = "192.168.10.100"
FIRST_GENERATION = {"yomogi": 40, "hanaakari": 50, "tokiwa": 60}
SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)

sys.path.insert(0, str(STANDINS))
import tools  # noqa: E402  (tests/standins/tools.py)


def write_seed_lab(root: Path) -> Path:
    """tests/labkit.py's seed lab as a lab folder (hosts/*.py importing labkit), built without nix."""
    hosts = root / "hosts"
    hosts.mkdir(parents=True)
    (hosts / "cluster.py").write_text('"""The seed cluster of tests/labkit.py."""\n\nfrom tests import labkit\n\n'
                                      "cluster = labkit.cluster()\n")
    for h in labkit.seed_hosts():
        (hosts / h.hostname).mkdir()
        wol = f", wake_on_lan=WakeOnLan(mac={WOL[h.hostname]!r})" if h.hostname in WOL else ""
        (hosts / h.hostname / "host.py").write_text(textwrap.dedent(f'''\
            """{h.hostname}: the seed host of tests/labkit.py."""

            import attrs

            from homelab import WakeOnLan
            from tests import labkit

            host = attrs.evolve(next(h for h in labkit.seed_hosts() if h.hostname == {h.hostname!r}){wol})
            '''))
    shutil.copy(REPO / "flake.nix", root / "flake.nix")
    shutil.copy(REPO / "flake.lock", root / "flake.lock")
    build.build(root, verify_with_nix=False)
    return root


def unavailable() -> str | None:
    """Why the live operations tests cannot run here, or None."""
    from homelab.proofs.netns import netns_unavailable

    why = netns_unavailable()
    if why:
        return why
    for tool in ("ssh", "ssh-keygen", "unshare", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if SSHD is None:
        return "needs OpenSSH's sshd (Debian: openssh-server)"
    return None


class OpsNet:
    def __init__(self, tmp: Path, root: Path, lab):
        self.tmp, self.root, self.lab = tmp, root, lab
        self.ns = Namespaces("ops")
        self.hostns: dict[str, object] = {}
        self.sshd: dict[str, subprocess.Popen] = {}
        self.ws_dir = tmp / "workstation"
        self.ws_bin = tools.write_bin(tmp / "workstation-bin", tools.WORKSTATION)
        self.target_bin = tools.write_bin(tmp / "target-bin", tools.TARGET)
        self.cluster = tmp / "cluster"
        self.ssh_config = self.ws_dir / "ssh_config"
        self.real_ssh = shutil.which("ssh")

    def state(self, host: str) -> Path:
        return self.ws_dir / "state" if host == "workstation" else self.tmp / "targets" / host

    # -- setting up

    def up(self) -> OpsNet:
        (self.ws_dir / "tmp").mkdir(parents=True)
        (self.ws_dir / "state").mkdir()
        (self.cluster / "nodes").mkdir(parents=True)
        key = self.ws_dir / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.tmp / "hostkey")], check=True)
        shutil.copy(f"{key}.pub", self.tmp / "authorized_keys")
        # curve25519 alone: OpenSSH 9's default post-quantum key exchange costs ~0.3 s a connection on a busy
        # machine, and a deploy makes dozens of them
        self.ssh_config.write_text(f"Host *\n  IdentityFile {key}\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n"
                                   "  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
                                   "  KexAlgorithms curve25519-sha256\n")
        ws = self.ws = self.ns.new("ws")
        ws.ip("link", "add", "br0", "type", "bridge")
        ws.ip("addr", "add", f"{WORKSTATION}/24", "brd", "+", "dev", "br0")
        ws.ip("link", "set", "br0", "up")
        for i, h in enumerate(self.lab.hosts):
            ns = self.hostns[h.hostname] = self.ns.new(h.hostname[:6])
            veth(ws, f"lan{i}", ns, h.interface)
            ws.ip("link", "set", f"lan{i}", "master", "br0")
            ns.ip("addr", "add", f"{h.ip}/24", "brd", "+", "dev", h.interface)
            (self.state(h.hostname) / "home").mkdir(parents=True)
        self.ns.on_close(self._stop_all)
        # the control plane registers itself (its kubelet has its certificates from cfssl on the same host)
        self.reset()
        return self

    def reset(self, joined: tuple[str, ...] = ()) -> None:
        """Every host up at its first generation, told nothing; the control plane and ``joined`` in the cluster."""
        for h in self.lab.hosts:
            state = self.state(h.hostname)
            for flag in ("failing-checks", "fail-switch", "fail-join", "fail-drain", "switch-seconds"):
                (state / flag).unlink(missing_ok=True)
            self.set_generation(h.hostname, FIRST_GENERATION.get(h.hostname, 10))
            if not self.sshd_running(h.hostname):
                self.start_sshd(h.hostname)
        for p in (self.cluster / "nodes").iterdir():
            p.unlink()
        for name in (self.lab.control_plane.hostname, *joined):
            tools.save(self.cluster / "nodes" / f"{name}.json", {"ready": "True", "cordoned": False})

    def set_generation(self, host: str, current: int) -> None:
        tools.save(self.state(host) / "generations.json", {"current": current, "all": [current - 1, current]})

    def generation(self, host: str) -> dict:
        return json.loads((self.state(host) / "generations.json").read_text())

    def node(self, host: str) -> dict | None:
        p = self.cluster / "nodes" / f"{host}.json"
        return json.loads(p.read_text()) if p.exists() else None

    def start_sshd(self, name: str) -> None:
        h = self.lab.host(name)
        state = self.state(name)
        conf = state / "sshd_config"
        env = {"PATH": f"{self.target_bin}:/usr/bin:/bin", "HOME": state / "home", "HOMELAB_STANDIN_HOST": name,
               "HOMELAB_STANDIN_STATE": state, "HOMELAB_STANDIN_CLUSTER": self.cluster}
        conf.write_text(textwrap.dedent(f"""\
            Port 22
            ListenAddress {h.ip}
            HostKey {self.tmp / 'hostkey'}
            PidFile {state / 'sshd.pid'}
            AuthorizedKeysFile {self.tmp / 'authorized_keys'}
            PermitRootLogin prohibit-password
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            UsePAM no
            StrictModes no
            ClientAliveInterval 5
            ClientAliveCountMax 2
            SetEnv {' '.join(f'{k}={v}' for k, v in env.items())}
            """))
        token = ("head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n' > /var/lib/kubernetes/secrets/apitoken.secret"
                 " && chmod 400 /var/lib/kubernetes/secrets/apitoken.secret && "
                 if self.lab.host(name).is_control_plane else "")
        script = ("mount -t tmpfs -o mode=755 tmpfs /run && mkdir -m 755 /run/sshd && "
                  "mount -t tmpfs -o mode=755 tmpfs /var/lib && mkdir -p /var/lib/kubernetes/secrets && "
                  f"{token}exec {SSHD} -D -e -f {conf}")
        (state / "sshd.pid").unlink(missing_ok=True)
        with open(state / "sshd.log", "ab") as log:
            self.sshd[name] = subprocess.Popen(
                ["ip", "netns", "exec", self.hostns[name].name, "unshare", "--mount", "--propagation", "private",
                 "sh", "-c", script], stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 10
        while not (state / "sshd.pid").exists():
            if self.sshd[name].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd for {name} did not start: {(state / 'sshd.log').read_text()[-2000:]}")
            time.sleep(0.05)

    def sshd_running(self, name: str) -> bool:
        return name in self.sshd and self.sshd[name].poll() is None

    def stop_sshd(self, name: str) -> None:
        p = self.sshd.get(name)
        if p is None or p.poll() is not None:
            return  # ended already (systemctl poweroff): its pid may belong to another process by now
        # each connection has its own sshd process: end those first, then the listener
        subprocess.run(["pkill", "-TERM", "-P", str(p.pid)], capture_output=True)
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)

    def _stop_all(self) -> None:
        for name in list(self.sshd):
            self.stop_sshd(name)

    def close(self) -> None:
        self.ns.close()

    # -- running homelab on the workstation

    def env(self) -> dict[str, str]:
        return {**os.environ, "PATH": f"{self.ws_bin}:{os.environ['PATH']}", "TMPDIR": str(self.ws_dir / "tmp"),
                "PYTHONPATH": str(REPO), "HOMELAB_STANDIN_HOST": "workstation",
                "HOMELAB_STANDIN_STATE": str(self.state("workstation")), "HOMELAB_STANDIN_REAL_SSH": self.real_ssh,
                "HOMELAB_STANDIN_CLUSTER": str(self.cluster)}

    def homelab(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd, rest = args[0], args[1:]
        extra = ["--ssh-config", str(self.ssh_config)]
        if cmd in ("deploy", "verify"):
            extra += ["--suite", str(STANDIN_SUITE)]
        return subprocess.run(["ip", "netns", "exec", self.ws.name, sys.executable, "-m", "homelab", cmd, *extra,
                               *rest], cwd=self.root, env=self.env(), capture_output=True, text=True, timeout=timeout)

    def popen_homelab(self, *args: str) -> subprocess.Popen:
        cmd, rest = args[0], args[1:]
        return subprocess.Popen(["ip", "netns", "exec", self.ws.name, sys.executable, "-m", "homelab", cmd,
                                 "--ssh-config", str(self.ssh_config), *rest], cwd=self.root, env=self.env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def ssh(self, host: str, command: str) -> subprocess.CompletedProcess:
        """The test's own look at a host (the real ssh, not recorded)."""
        return subprocess.run(["ip", "netns", "exec", self.ws.name, self.real_ssh, "-F", str(self.ssh_config),
                               f"root@{self.lab.host(host).ip}", command], capture_output=True, text=True, timeout=30)

    # -- what was called

    def calls(self, host: str) -> list[dict]:
        p = self.state(host) / "calls.jsonl"
        return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []

    def mark(self) -> dict[str, int]:
        """How many calls each host has recorded so far (to look at one run's calls only)."""
        return {h: len(self.calls(h)) for h in ["workstation", *(x.hostname for x in self.lab.hosts)]}

    def since(self, mark: dict[str, int], host: str, tool: str | None = None) -> list[dict]:
        return [c for c in self.calls(host)[mark[host]:] if tool is None or c["tool"] == tool]
