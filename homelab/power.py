"""Wake and sleep: power the lab's machines on and off without logging in to each.

* ``Host(wake_on_lan=WakeOnLan(mac=...))`` writes
  ``networking.interfaces.<interface>.wakeOnLan = { enable = true; policy = [ "magic" ]; }``
  (nixpkgs ``tasks/network-interfaces.nix``: a systemd.link ``WakeOnLan=magic`` for the interface,
  applied when udev sets the device up, so after the next boot).
* ``homelab wake hosts/<h>`` sends the magic packet (6 bytes 0xFF, then the MAC 16 times) as one UDP
  datagram to the LAN's broadcast address, port 9, then waits for SSH and, for a Kubernetes node, for the
  node to be Ready, and uncordons it (``homelab sleep`` cordoned it).
* ``homelab sleep hosts/<h>`` drains the node through the control plane (cordon, evict), then powers the
  host off over SSH and waits until it stops answering.  It refuses to power off the control plane while
  workers are up, unless ``--force``.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from pathlib import Path

import attrs

from . import remote
from .errors import EXIT_FAILED, EXIT_MISSING, EXIT_OK, MissingTool, UsageError
from .model import Lab
from .remote import Kube, Say, SshOptions, ssh_argv

WOL_PORT = 9  # the discard port, where Wake-on-LAN senders conventionally aim
RESEND = 30.0  # seconds between magic packets while waiting for the host
POLL = 2.0


@attrs.frozen
class WakeOptions:
    """``homelab wake``'s options, typed (the command line's flags; the same defaults)."""

    broadcast: str | None = None  # where the magic packet goes (default: the LAN's broadcast address)
    port: int = WOL_PORT
    no_wait: bool = False  # send the magic packet and stop
    timeout: float = 600  # seconds to wait for SSH and the node to be Ready
    ssh_config: str | None = None
    connect_timeout: int = 10  # seconds each ssh call may wait for the host to answer


@attrs.frozen
class SleepOptions:
    """``homelab sleep``'s options, typed."""

    force: bool = False  # power off the control plane while workers are up, or a node whose drain failed
    no_wait: bool = False  # do not wait until the host stops answering SSH
    timeout: float = 300  # seconds to wait until the host is off
    ssh_config: str | None = None
    connect_timeout: int = 10  # seconds each ssh call may wait for the host to answer


def magic_packet(mac: str) -> bytes:
    """6 bytes 0xFF, then the 6 bytes of the MAC 16 times: 102 bytes."""
    raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"{mac!r} is not a MAC address")
    return b"\xff" * 6 + raw * 16


def send_magic_packet(mac: str, broadcast: str, port: int = WOL_PORT) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        s.sendto(magic_packet(mac), (broadcast, port))


def lan_broadcast(lab: Lab) -> str:
    return str(lab.cluster.lan.broadcast_address)



def _need_ssh() -> None:
    import shutil

    if shutil.which("ssh") is None:
        raise MissingTool("ssh is not on PATH")


# ---------------------------------------------------------------- wake


def _wake_target(lab: Lab, host, options: WakeOptions) -> str:
    """Where the magic packet goes; UsageError for a host without Wake-on-LAN or bad options."""
    if host.wake_on_lan is None:
        raise UsageError(f"{lab.where(host)}: has no wake_on_lan; add wake_on_lan=WakeOnLan(mac=\"<its LAN MAC>\") "
                         "to host.py (and deploy it once, while the host is up)")
    try:
        broadcast = str(ipaddress.IPv4Address(options.broadcast)) if options.broadcast else lan_broadcast(lab)
    except ValueError:
        raise UsageError(f"--broadcast {options.broadcast}: not an IPv4 address") from None
    if not 1 <= options.port <= 65535:
        raise UsageError(f"--port {options.port}: not a UDP port (1-65535)")
    return broadcast


def wake(lab: Lab, root: Path, name: str, options: WakeOptions) -> int:
    """``homelab wake``: the magic packet, then SSH, then (a node) Ready and uncordoned."""
    host = lab.host(name)
    where = lab.where(host)
    broadcast = _wake_target(lab, host, options)
    say = Say("wake")
    mac = host.wake_on_lan.mac
    if host.wake_on_lan.locally_administered:
        say.err(f"note: {where}: WakeOnLan.mac {mac} is a locally administered address, as placeholders are; a "
                f"NIC's own address usually is not (see `ip link show {host.interface}` on the host)")
    opts = SshOptions.from_options(options)
    if not options.no_wait:
        try:
            _need_ssh()
        except MissingTool as e:
            say.err(str(e))
            return EXIT_MISSING

    def send() -> bool:
        try:
            send_magic_packet(mac, broadcast, options.port)
        except OSError as e:
            say(name, f"cannot send to {broadcast}:{options.port}: {e}")
            return False
        say(name, f"magic packet for {mac} sent to {broadcast}:{options.port}")
        return True

    if not send():
        return EXIT_FAILED
    if options.no_wait:
        return EXIT_OK
    t0 = time.monotonic()
    deadline = t0 + options.timeout
    next_send = t0 + RESEND
    while not remote.answers(host, opts):
        now = time.monotonic()
        if now >= deadline:
            say(name, f"no SSH after {options.timeout:.0f} s (is Wake-on-LAN enabled in its firmware, and was the "
                      "configuration with wake_on_lan deployed before it went off?)")
            return EXIT_FAILED
        if now >= next_send:
            send()
            next_send = now + RESEND
        time.sleep(POLL)
    say(name, f"answers SSH after {time.monotonic() - t0:.0f} s")
    return _node_back(lab, host, opts, deadline, options.timeout, say)


def _node_back(lab: Lab, host, opts: SshOptions, deadline: float, timeout: float, say: Say) -> int:
    """A woken Kubernetes node: wait until it is Ready, uncordon it (``homelab sleep`` cordoned it)."""
    name = host.hostname
    cp = lab.control_plane
    if not host.is_kubernetes_node or cp is None:
        return EXIT_OK
    kube = Kube(cp, opts)
    node = remote.node_name(host)
    try:
        status = kube.wait_ready(node, max(1.0, deadline - time.monotonic()), POLL)
        if status.ready != "True":
            say(name, f"node {node} is {status.describe()} after {timeout:.0f} s")
            return EXIT_FAILED
        if status.cordoned:
            r = remote.run(kube.uncordon_argv(node), timeout=120)
            if r.returncode != 0:
                say(name, f"kubectl uncordon {node} failed (exit {r.returncode}):\n{remote.tail(r.stderr)}")
                return EXIT_FAILED
            status = kube.status(node)
    except remote.KubeError as e:
        say(name, str(e))
        return EXIT_FAILED
    if status.cordoned:
        say(name, f"node {node} is still cordoned")
        return EXIT_FAILED
    say(name, f"node {node} is Ready and schedulable")
    return EXIT_OK


# ---------------------------------------------------------------- sleep


def sleep(lab: Lab, root: Path, name: str, options: SleepOptions) -> int:
    host = lab.host(name)
    opts = SshOptions.from_options(options)
    say = Say("sleep")
    try:
        _need_ssh()
    except MissingTool as e:
        say.err(str(e))
        return EXIT_MISSING
    cp = lab.control_plane
    if host.is_control_plane:
        up = [w.hostname for w in lab.kubernetes_nodes if w is not host and remote.answers(w, opts)]
        if up and not options.force:
            raise UsageError(f"{lab.where(host)}: {name} is the control plane and {', '.join(up)} "
                        f"{'is' if len(up) == 1 else 'are'} up: their kubelets would lose the API. Sleep "
                        f"{'it' if len(up) == 1 else 'them'} first, or pass --force")
    if not remote.answers(host, opts):
        say(name, "does not answer SSH (off already?); nothing done")
        return EXIT_FAILED
    if host.is_kubernetes_node and cp is not None:
        kube = Kube(cp, opts)
        node = remote.node_name(host)
        say(name, f"draining node {node} (kubectl on {cp.hostname})")
        r = remote.run(kube.drain_argv(node), timeout=420)
        if r.returncode != 0:
            say(name, f"kubectl drain {node} failed (exit {r.returncode}):\n{remote.tail(r.stdout + r.stderr)}")
            if not options.force:
                say(name, "not powered off (--force powers off anyway)")
                return EXIT_FAILED
    say(name, "powering off")
    r = remote.run(ssh_argv(host, ["systemctl", "poweroff"], opts, root=True), timeout=60)
    if r.returncode not in (0, 255):  # 255: the connection went down with the host
        say(name, f"systemctl poweroff failed (exit {r.returncode}):\n{remote.tail(r.stderr)}")
        return EXIT_FAILED
    if options.no_wait:
        return EXIT_OK
    if not remote.wait_until(lambda: not remote.answers(host, opts), options.timeout, POLL):
        say(name, f"still answers SSH after {options.timeout:.0f} s")
        return EXIT_FAILED
    say(name, "off" + (f"; wake it with: homelab wake {lab.where(host)}" if host.wake_on_lan else ""))
    return EXIT_OK
