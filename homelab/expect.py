"""What must be true on a running host, derived from the model (for the testinfra suite in vm-tests/).

``python -m homelab expect hosts/yomogi --json`` prints one host's checks;
without a host it prints every host's, keyed by name.  The suite reads that JSON
(or calls :func:`lab_expectations` directly) and runs each check against a
target: a NixOS test-driver VM, a ``build-vm`` image over SSH, or the real
machine.

Nothing here is hand-copied from the generated files.  Each role says what must
hold because of it (:meth:`homelab.role.Role.expectations`, and
``expectations_for`` for what it needs on other hosts); what every host has
(the firewall service, sshd for the admins, host kernel modules) is added here;
the firewall rules and what each client must and must not reach come from the
lab's flow table (:mod:`homelab.firewall`), the same data the rules are written from.  Where a check relies on
what nixpkgs does with an option (unit names, kernel modules the kubelet module
loads, the DNS addon's service address), the fact and its nixpkgs file are in
:data:`NIXPKGS_FACTS` and in the role's module.
"""

from __future__ import annotations

import itertools
from typing import Any

import attrs

from . import access, checks, firewall
from .checks import KINDS, SCOPES, Check
from .model import Lab
from .role import HostContext
from .validate import require_valid

SCHEMA = 1
__all__ = ["SCHEMA", "SCOPES", "KINDS", "Check", "HostExpectations", "host_expectations", "lab_expectations",
           "NIXPKGS_FACTS", "text"]

# What nixpkgs (nixos-26.05) does with the options homelab sets, relied on by the checks.
K8S = "nixos/modules/services/cluster/kubernetes/"
NIXPKGS_FACTS: dict[str, str] = {
    "units": "systemd units: etcd (services/databases/etcd.nix), kube-apiserver, kube-controller-manager, "
             "kube-scheduler, kube-addon-manager, kubelet, kube-proxy, flannel, certmgr + cfssl with easyCerts "
             f"({K8S}*.nix, pki.nix), containerd (virtualisation/containerd.nix), coredns "
             "(services/networking/coredns.nix), nginx, tailscaled, sshd, firewall "
             "(services/networking/firewall-iptables.nix; with nftables the rules are a table of "
             "nftables.service, firewall-nftables.nix)",
    "kubelet-modules": f"{K8S}kubelet.nix: boot.kernelModules = [ \"br_netfilter\" \"overlay\" ]",
    "kubelet-port": f"{K8S}kubelet.nix: services.kubernetes.kubelet.port default 10250",
    "cfssl-port": "nixos/modules/services/security/cfssl.nix: port default 8888 (the easyCerts CA on the master)",
    "etcd-port": "nixos/modules/services/databases/etcd.nix: client URLs on port 2379",
    "dns-addon": f"{K8S}addons/dns.nix: clusterIp default = first three octets of "
                 "apiserver.serviceClusterIpRange + .254; clusterDomain default cluster.local",
    "apiserver-service": "the first address of the service range is the `kubernetes` Service (kube-apiserver)",
    "dns-image": f"{K8S}addons/dns.nix: every node with the addon seeds corednsImage (kubelet.nix imports it with "
                 "`ctr -n k8s.io image import`); the control plane's Deployment runs imageName:imageTag with "
                 "imagePullPolicy Never",
    "iptables-rules": "nixos/modules/services/networking/firewall-iptables.nix: `-A nixos-fw -p tcp --dport P -j "
                      "nixos-fw-accept` per allowed port, `-A nixos-fw -i IF -j nixos-fw-accept` per trusted "
                      "interface; extraCommands run after them",
    "nftables-rules": "nixos/modules/services/networking/firewall-nftables.nix: table inet nixos-fw, chain "
                      "input-allow holds the allowed ports, trusted interfaces and extraInputRules",
    "tailscale-port": "nixos/modules/services/networking/tailscale.nix: port default 41641, openFirewall opens it "
                      "for UDP",
}


@attrs.frozen
class HostExpectations:
    host: str
    system: str
    address: str
    tailscale_address: str | None
    roles: tuple[str, ...]
    role_kinds: tuple[str, ...]  # the role classes' names (ControlPlane, Worker, ...), for scripts
    checks: tuple[Check, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "host": self.host,
            "system": self.system,
            "address": self.address,
            "tailscale_address": self.tailscale_address,
            "roles": list(self.roles),
            "role_kinds": list(self.role_kinds),
            "checks": [c.to_json() for c in self.checks],
        }

    def by_kind(self) -> dict[str, list[Check]]:
        out: dict[str, list[Check]] = {k: [] for k in KINDS}
        for c in self.checks:
            out[c.kind].append(c)
        return out


class _Acc:
    """Collects checks; a second check with the same id is the same fact: the stronger scope (host) wins."""

    def __init__(self) -> None:
        self.checks: dict[str, Check] = {}

    def add(self, c: Check) -> None:
        old = self.checks.get(c.id)
        if old is None or (old.scope == "cluster" and c.scope == "host"):
            self.checks[c.id] = c


def _firewall_checks(ctx: HostContext) -> list[Check]:
    """Every accept rule of the host's flow table, as the firewall must list it on the running host (of the rules
    from the nodes, in the file every node shares, those of :func:`homelab.checks.node_window`)."""
    backend = ctx.cluster.firewall
    out: list[Check] = []
    nodes = firewall.node_rules(ctx)
    own = firewall.own_rules(ctx, nodes)
    if nodes is not None:  # the shared file's rules: those of the nodes the host looks for (node_window)
        window = {f"{ctx.lab.host(n).ip}/32" for n in checks.node_window(ctx.lab, ctx.host)} | {
            f"{ctx.host.ip}/32"}
        own += [r for r in nodes.rules if r.net in window]
    for r in own:
        listing, line = r.listed(backend)
        ident = line if backend == "nftables" or r.family == 4 else f"ip6 {line}"
        out.append(checks.check("firewall_rule", ident, "host", f"{r.flow.why} ({r.by})", match="line", rule=line,
                                backend=backend, list=listing))
    return out


def _closed_port(taken: set[int]) -> int | None:
    """The port a probe must find closed: the first from 8081 up (then from 1 up) that no flow of the host names
    in either protocol; None when the host's flow table names every port (nothing outside it to probe)."""
    return next((p for p in itertools.chain(range(8081, 65536), range(1, 8081)) if p not in taken), None)


def _reach_checks(ctx: HostContext) -> list[Check]:
    """What each class of client must and must not reach on the host: every port of its flow table and one outside.

    One probe per class of LAN client the host's firewall tells apart (:func:`homelab.firewall.probe_classes`:
    the LAN client, the nodes, the control plane, hosts outside Kubernetes, a host a flow names...), not one
    per lab host: every verdict of the flow table is still probed, and the checks grow with the lab, not its
    square.  ``stands_for`` says whom the probe speaks for, ``clients`` how many.

    Scope ``cluster``: a probe needs a client of that kind on the lab's network (the cluster VM test's
    outsider on the LAN, a node).  ``expect`` is "accept" or "refuse", from the flow table.
    """
    lab, host = ctx.lab, ctx.host
    ports = sorted({(f.proto, f.port) for f, _ in firewall.host_flows(ctx)})
    closed = _closed_port({p for _, p in ports})
    outside = [("tcp", closed), ("udp", closed)] if closed is not None else []
    out: list[Check] = []
    for pc in firewall.probe_classes(lab, host):
        iface = firewall.client_interface(host, pc.client)
        for proto, port in ports + outside:
            flow = firewall.admits(lab, host, 4, iface, pc.address, proto, port) if iface else None
            expect = "accept" if flow else "refuse"
            why = flow.why if flow else f"nothing in the flow table lets {pc.description} reach {port}/{proto}"
            out.append(checks.check("reach", f"{pc.client}->{proto}/{port}", "cluster", why, client=pc.client,
                                    source=pc.address, address=str(host.ip), proto=proto, port=port, expect=expect,
                                    stands_for=pc.description, clients=pc.size))
    return out


def _asking_roles(lab: Lab) -> tuple:
    """(host, role) of every role that says what must hold on other hosts (overrides ``expectations_for``):
    found once per lab, so a host's expectations do not walk every role of every other host."""
    from .role import Role

    def find():
        return tuple((h, r) for h in lab.hosts for r in h.roles
                     if type(r).expectations_for is not Role.expectations_for)

    return lab.derived("expect: asking roles", find)


def host_expectations(lab: Lab, host, *, validated: bool = False) -> HostExpectations:
    """Everything that must hold on ``host`` once it runs the configuration homelab generated for it.

    The lab is validated first (LabError lists every problem), unless the caller says it did
    (``validated``): expectations of an invalid lab mean nothing.
    """
    if not validated:
        require_valid(lab)
    ctx = HostContext(lab, host)
    acc = _Acc()
    if lab.cluster.firewall == "nftables":  # the nftables firewall is a table loaded by nftables.service
        acc.add(checks.service("nftables.service", "host", "networking.firewall.enable with nftables (every host)"))
    else:
        acc.add(checks.service("firewall.service", "host", "networking.firewall.enable (every host)"))
    for c in access.expectations(ctx):
        acc.add(c)
    for m in host.kernel_modules:
        acc.add(checks.kernel_module(m, "kernel_modules in host.py"))
    for role in host.roles:
        for c in role.expectations(ctx):
            acc.add(c)
    for other, role in _asking_roles(lab):
        if other is host:
            continue
        for c in role.expectations_for(HostContext(lab, other), ctx):
            acc.add(c)
    for c in _firewall_checks(ctx) + _reach_checks(ctx):
        acc.add(c)
    ordered = tuple(sorted(acc.checks.values(), key=lambda c: (KINDS.index(c.kind), c.id)))
    ts = str(host.tailscale_address) if host.tailscale_address is not None else None
    return HostExpectations(host.hostname, host.system, str(host.ip), ts, tuple(r.label for r in host.roles),
                            tuple(type(r).__name__ for r in host.roles), ordered)


def lab_expectations(lab: Lab, names: list[str] | None = None, scope: str | None = None
                     ) -> dict[str, HostExpectations]:
    """Every host's expectations (or the named hosts'), optionally only checks of one scope."""
    require_valid(lab)
    out = {}
    for name in names or [h.hostname for h in lab.hosts]:
        e = host_expectations(lab, lab.host(name), validated=True)
        if scope:
            e = attrs.evolve(e, checks=tuple(c for c in e.checks if c.scope == scope))
        out[name] = e
    return out


def text(e: HostExpectations) -> str:
    """One host's expectations for a terminal."""
    lines = [f"{e.host} ({e.system}, {e.address}; {', '.join(e.roles)}):"]
    for kind, cs in e.by_kind().items():
        if not cs:
            continue
        lines.append(f"  {kind.replace('_', ' ')}:")
        for c in cs:
            tag = "" if c.scope == "host" else "  [cluster]"
            lines.append(f"    {c.id.split(':', 1)[1]}{tag}  — {c.why}")
    return "\n".join(lines)
