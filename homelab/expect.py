"""What must be true on a running host, derived from the model (for the testinfra suite in vm-tests/).

``python -m homelab expect hosts/yomogi --json`` prints one host's checks;
without a host it prints every host's, keyed by name.  The suite in
``vm-tests/`` reads that JSON (or calls :func:`lab_expectations` directly) and
runs each check against a target: a NixOS test-driver VM, a ``build-vm``
image over SSH, or the real machine.

Every check carries a *scope*:

* ``host``: true once the host has booted its configuration, even alone
  (a single VM, a freshly deployed machine);
* ``cluster``: needs the rest of the lab too (the node joined Kubernetes, the
  DNS host reachable over the LAN, something behind the ingress NodePorts).

Nothing here is hand-copied from the generated files: services, ports and
rules follow from the roles and the cluster the same way :mod:`homelab.compile`
turns them into NixOS options.  Where a check relies on what nixpkgs does with
those options (unit names, kernel modules the kubelet module loads, the DNS
addon's service address), the fact and its nixpkgs file are in
:data:`NIXPKGS_FACTS`.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from typing import Any

import attrs

from .model import (
    CephStorage,
    ControlPlane,
    DnsServer,
    Host,
    IngressProxy,
    Lab,
    Tailscale,
    Worker,
)

SCHEMA = 1
SCOPES = ("host", "cluster")
KINDS = ("service", "kernel_module", "listening", "firewall_rule", "systemd_property", "dns", "proxy")

# What nixpkgs (nixos-26.05) does with the options homelab sets, relied on below.
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
    "iptables-rules": "nixos/modules/services/networking/firewall-iptables.nix: `-A nixos-fw -p tcp --dport P -j "
                      "nixos-fw-accept` per allowed port, `-A nixos-fw -i IF -j nixos-fw-accept` per trusted "
                      "interface; extraCommands run after them",
    "nftables-rules": "nixos/modules/services/networking/firewall-nftables.nix: table inet nixos-fw, chain "
                      "input-allow holds the allowed ports, trusted interfaces and extraInputRules",
    "tailscale-port": "nixos/modules/services/networking/tailscale.nix: port default 41641, openFirewall opens it "
                      "for UDP",
}

TAILSCALE_PORT = 41641
KUBELET_PORT = 10250
ETCD_PORT = 2379
CFSSL_PORT = 8888


@attrs.frozen
class Check:
    """One thing that must be true on a host.  ``id`` is unique per host and stable across runs."""

    id: str
    kind: str
    scope: str
    why: str
    spec: dict[str, Any] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "scope": self.scope, "why": self.why, **self.spec}


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


# ---------------------------------------------------------------- builders


class _Acc:
    """Collects checks; a second check with the same id is the same fact and is dropped."""

    def __init__(self) -> None:
        self.checks: dict[str, Check] = {}

    def add(self, kind: str, ident: str, scope: str, why: str, **spec: Any) -> None:
        cid = f"{kind}:{ident}"
        old = self.checks.get(cid)
        if old is None:
            self.checks[cid] = Check(cid, kind, scope, why, spec)
        elif old.scope == "cluster" and scope == "host":  # the stronger claim wins
            self.checks[cid] = Check(cid, kind, scope, why, spec)

    def service(self, unit: str, scope: str, why: str) -> None:
        self.add("service", unit, scope, why, unit=unit)

    def module(self, name: str, why: str) -> None:
        self.add("kernel_module", name, "host", why, module=name)

    def port(self, proto: str, port: int, scope: str, why: str) -> None:
        self.add("listening", f"{proto}/{port}", scope, why, proto=proto, port=port)

    def prop(self, unit: str, prop: str, value: str, match: str, why: str) -> None:
        self.add("systemd_property", f"{unit}:{prop}:{value}", "host", why,
                 unit=unit, property=prop, value=value, match=match)


def _firewall(acc: _Acc, host: Host, lab: Lab, open_tcp: list[int], open_udp: list[int],
              trusted_ifaces: list[str]) -> None:
    cluster = lab.cluster
    names = {cluster.pod_cidr: "the pod range", cluster.service_cidr: "the service range", cluster.lan: "the LAN"}
    if cluster.firewall == "nftables":
        table = {"backend": "nftables", "list": "nft list chain inet nixos-fw input-allow"}
        for net in cluster.trusted_ranges:
            acc.add("firewall_rule", f"accept {net}", "host", f"trust {names.get(net, 'an extra trusted range')}",
                    match="line", rule=f"ip saddr {net} accept", **table)
        for proto, ports in (("tcp", open_tcp), ("udp", open_udp)):
            for p in sorted(set(ports)):
                acc.add("firewall_rule", f"{proto} dport {p}", "host", f"open {proto.upper()} port {p}",
                        match="regex", rule=rf"{proto} dport (\{{[^}}]*\b{p}\b[^}}]*\}}|{p}) accept", **table)
        for iface in trusted_ifaces:
            acc.add("firewall_rule", f"iifname {iface}", "host", f"trust the {iface} interface",
                    match="regex", rule=rf'iifname (\{{[^}}]*"{iface}"[^}}]*\}}|"{iface}") accept', **table)
        return
    table = {"backend": "iptables", "list": "iptables -w -S nixos-fw"}
    for net in cluster.trusted_ranges:
        acc.add("firewall_rule", f"accept {net}", "host", f"trust {names.get(net, 'an extra trusted range')}",
                match="line", rule=f"-A nixos-fw -s {net} -j nixos-fw-accept", **table)
    for proto, ports in (("tcp", open_tcp), ("udp", open_udp)):
        for p in sorted(set(ports)):
            acc.add("firewall_rule", f"{proto} dport {p}", "host", f"open {proto.upper()} port {p}",
                    match="line", rule=f"-A nixos-fw -p {proto} -m {proto} --dport {p} -j nixos-fw-accept", **table)
    for iface in trusted_ifaces:
        acc.add("firewall_rule", f"iface {iface}", "host", f"trust the {iface} interface",
                match="line", rule=f"-A nixos-fw -i {iface} -j nixos-fw-accept", **table)


def _first_host(net: ipaddress.IPv4Network) -> str:
    return str(net.network_address + 1)


def dns_addon_ip(service_cidr: ipaddress.IPv4Network) -> str:
    """The DNS addon's Service address, as nixpkgs' addons/dns.nix computes it (x.y.z.254)."""
    return ".".join(str(service_cidr.network_address).split(".")[:3]) + ".254"


def host_expectations(lab: Lab, host: Host) -> HostExpectations:
    """Everything that must hold on ``host`` once it runs the configuration homelab generated for it."""
    cluster = lab.cluster
    acc = _Acc()
    open_tcp: list[int] = []
    open_udp: list[int] = []
    trusted_ifaces: list[str] = []
    k8s = host.has(ControlPlane) or host.has(Worker)
    cp_host = lab.control_plane

    if cluster.firewall == "nftables":  # the nftables firewall is a table loaded by nftables.service
        acc.service("nftables.service", "host", "networking.firewall.enable with nftables (every host)")
    else:
        acc.service("firewall.service", "host", "networking.firewall.enable (every host)")
    if host.options.get("services.openssh.enable") is True:
        acc.service("sshd.service", "host", "services.openssh.enable in host.py")
        acc.port("tcp", 22, "host", "sshd")
    for m in host.kernel_modules:
        acc.module(m, "kernel_modules in host.py")

    if k8s:
        why = "Kubernetes node (nixpkgs kubelet.nix loads it)"
        acc.module("br_netfilter", why)
        acc.module("overlay", why)
        acc.service("containerd.service", "host", "container runtime of every Kubernetes node")

    cp = host.role(ControlPlane)
    if cp is not None:
        why = "ControlPlane role (services.kubernetes.roles = master + node)"
        for unit in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-addon-manager",
                     "kubelet", "kube-proxy", "flannel"):
            acc.service(f"{unit}.service", "host", why)
        if cluster.easy_certs:
            acc.service("cfssl.service", "host", "easyCerts: the cluster CA runs on the control plane")
            acc.service("certmgr.service", "host", "easyCerts: certificates for the node's own services")
            acc.port("tcp", CFSSL_PORT, "host", "cfssl, the easyCerts CA")
        acc.port("tcp", cluster.api_port, "host", "kube-apiserver securePort")
        acc.port("tcp", ETCD_PORT, "host", "etcd clients")
        acc.port("tcp", KUBELET_PORT, "host", "kubelet")
        if host.arch == "aarch64" and cp.arm64_overrides:
            acc.prop("etcd.service", "Environment", "ETCD_UNSUPPORTED_ARCH=arm64", "contains",
                     "etcd refuses to start on arm64 without it (ControlPlane on aarch64)")

    if host.has(Worker) and cp is None:
        why = "Worker role: runs once the node joined the cluster (nixos-kubernetes-node-join)"
        for unit in ("kubelet", "kube-proxy", "flannel"):
            acc.service(f"{unit}.service", "cluster", why)
        if cluster.easy_certs:
            acc.service("certmgr.service", "cluster", "easyCerts: certificates fetched from the control plane")
        acc.port("tcp", KUBELET_PORT, "cluster", "kubelet")

    ceph = host.role(CephStorage)
    if ceph is not None:
        why = "CephStorage role: Rook's CSI driver needs it"
        acc.module("ceph", why)
        acc.module("rbd", why)
        acc.prop("containerd.service", "LimitNOFILE", str(ceph.containerd_nofile), "equals",
                 "CephStorage role: Ceph daemons open many files")
        if k8s:
            acc.prop("kubelet.service", "ExecStart", f"--root-dir={ceph.kubelet_root_dir}", "contains",
                     "CephStorage role: Rook expects the kubelet root directory set explicitly")

    ingress_hosts = lab.with_role(IngressProxy)
    answer = str(ingress_hosts[0].tailscale_address) if ingress_hosts else None
    dns = host.role(DnsServer)
    if dns is not None:
        why = "DnsServer role (CoreDNS)"
        acc.service("coredns.service", "host", why)
        acc.port("tcp", dns.port, "host", why)
        acc.port("udp", dns.port, "host", why)
        if dns.open_firewall:
            open_tcp.append(dns.port)
            open_udp.append(dns.port)
        if answer is not None:
            zone = cluster.domain
            for name in (zone, f"www.{zone}", f"a.b.{zone}"):
                acc.add("dns", f"{name}@127.0.0.1:{dns.port}", "host",
                        f"split DNS: names under {zone} answer with {ingress_hosts[0].hostname}'s Tailscale address",
                        server="127.0.0.1", port=dns.port, name=name, answer=answer)
            lookalike = f"{zone}.homelab-lookalike.invalid"
            acc.add("dns", f"{lookalike}@127.0.0.1:{dns.port}", "host",
                    "a look-alike outside the zone must not get the ingress address",
                    server="127.0.0.1", port=dns.port, name=lookalike, not_answer=answer)

    # From every node: the lab's DNS host answers the zone over the LAN, and the cluster DNS works.
    if k8s:
        for dns_host in lab.with_role(DnsServer):
            role = dns_host.role(DnsServer)
            if answer is None or dns_host.hostname == host.hostname:
                continue
            name = f"probe.{cluster.domain}"
            acc.add("dns", f"{name}@{dns_host.ip}:{role.port}", "cluster",
                    f"split DNS served by {dns_host.hostname} over the LAN",
                    server=str(dns_host.ip), port=role.port, name=name, answer=answer)
        if cp_host is not None and cp_host.role(ControlPlane).dns_addon:
            server = dns_addon_ip(cluster.service_cidr)
            name = "kubernetes.default.svc.cluster.local"
            acc.add("dns", f"{name}@{server}:53", "cluster", "cluster DNS (the CoreDNS addon) answers Services",
                    server=server, port=53, name=name, answer=_first_host(cluster.service_cidr))

    ing = host.role(IngressProxy)
    if ing is not None:
        why = "IngressProxy role (nginx stream)"
        acc.service("nginx.service", "host", why)
        for listen, nodeport in ((ing.http_port, ing.http_nodeport), (ing.https_port, ing.https_nodeport)):
            acc.port("tcp", listen, "host", why)
            acc.add("proxy", f"{listen}->{nodeport}", "cluster",
                    f"nginx passes {listen} through to the NodePort {nodeport} (Traefik)",
                    listen=listen, upstream=f"127.0.0.1:{nodeport}", nodeport=nodeport)
        if ing.open_firewall:
            open_tcp += [ing.http_port, ing.https_port]

    ts = host.role(Tailscale)
    if ts is not None:
        acc.service("tailscaled.service", "host", "Tailscale role")
        open_udp.append(TAILSCALE_PORT)
        trusted_ifaces.append(ts.interface)

    _firewall(acc, host, lab, open_tcp, open_udp, trusted_ifaces)
    checks = tuple(sorted(acc.checks.values(), key=lambda c: (KINDS.index(c.kind), c.id)))
    ts_addr = str(host.tailscale_address) if host.tailscale_address is not None else None
    return HostExpectations(host.hostname, host.system, str(host.ip), ts_addr, tuple(r.label for r in host.roles),
                            tuple(type(r).__name__ for r in host.roles), checks)


def lab_expectations(lab: Lab) -> dict[str, HostExpectations]:
    return {h.hostname: host_expectations(lab, h) for h in lab.hosts}


# ---------------------------------------------------------------- CLI


def _configure(p) -> None:
    p.add_argument("hosts", nargs="*", help="host folders, e.g. hosts/yomogi (all hosts when none named)")
    p.add_argument("--json", action="store_true", help="print JSON (one host: its object; else keyed by host)")
    p.add_argument("--scope", choices=SCOPES, help="only checks of this scope")


def _text(e: HostExpectations, scope: str | None) -> str:
    lines = [f"{e.host} ({e.system}, {e.address}; {', '.join(e.roles)}):"]
    for kind, checks in e.by_kind().items():
        checks = [c for c in checks if scope is None or c.scope == scope]
        if not checks:
            continue
        lines.append(f"  {kind.replace('_', ' ')}:")
        for c in checks:
            tag = "" if c.scope == "host" else "  [cluster]"
            lines.append(f"    {c.id.split(':', 1)[1]}{tag}  — {c.why}")
    return "\n".join(lines)


def cmd_expect(args) -> int:
    from .cli import load_selected, resolve_targets

    root, only = resolve_targets(args.hosts, args.root)
    lab, _ = load_selected(root, only)
    names = only or [h.hostname for h in lab.hosts]
    out = {n: host_expectations(lab, lab.host(n)) for n in names}
    if args.scope:
        out = {n: attrs.evolve(e, checks=tuple(c for c in e.checks if c.scope == args.scope))
               for n, e in out.items()}
    if args.json:
        data: Any = {n: e.to_json() for n, e in out.items()}
        if only and len(only) == 1:
            data = data[only[0]]
        json.dump(data, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        print("\n\n".join(_text(e, None) for e in out.values()))
    return 0


def _register() -> None:
    from .cli import command

    command("expect", "print what must be true on a running host (derived from the model), for vm-tests/",
            "python -m homelab expect hosts/yomogi --json", _configure)(cmd_expect)


_register()
