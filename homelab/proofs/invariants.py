"""What must hold of any homelab firewall, stated on its own: not read from the flow table.

The namespace proofs (:mod:`.netns`) check every probe against the flow table's verdict, so a flow
widened by mistake widens the generated rules and the expected verdicts alike, and passes.  These
invariants are checked on the same probes' real verdicts, and come from what the roles are, not
from the rows they write:

* **cluster-only ports** — etcd (2379, 2380), the kubelet (10250), flannel's VXLAN (8472/udp) and
  cfssl (8888) answer only the cluster's own hosts: a Kubernetes node or a pod.  A LAN client, a
  host outside Kubernetes (a NAS, a printer), a tailnet device or the internet never gets through;
* **the world** — a client the proof counts as nobody in particular (the internet behind the
  router, a stranger on the tailnet interface, an unknown IPv6 client, spoofed pod, Service and
  tailnet addresses on the LAN) reaches only what is published: Tailscale's WireGuard port, an
  IngressProxy whose clients name the world, an ``OpenPort`` to the world, and what the admins
  reach when the cluster's admins include the world (sshd, the API server, Prometheus);
* **DNS** never answers the world (no open resolver), whatever the DnsServer's clients say.

The port numbers here are written out (nixpkgs' defaults, docs/nixpkgs-facts.md), on purpose not
imported from the roles that open them.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from ..model import Host, Lab
    from .netns import Client, Probe

# (protocol, port, what answers there): only the cluster's own hosts may reach them
CLUSTER_ONLY = (("tcp", 2379, "etcd"), ("tcp", 2380, "etcd (peer)"), ("tcp", 10250, "the kubelet"),
                ("udp", 8472, "flannel's VXLAN"), ("tcp", 8888, "cfssl, the easyCerts CA"))
TAILSCALE_WIREGUARD = 41641  # services.tailscale.port default; WireGuard peers come from anywhere
SSH = 22
CLUSTER_KINDS = frozenset({"nodes", "control-plane", "pods"})  # the proof's own kinds of cluster client


def _everyone(source) -> bool:
    return source.kind == "world" or (source.kind == "network" and
                                      ipaddress.ip_network(source.network).prefixlen == 0)


def published(lab: Lab, host: Host) -> set[tuple[str, int]]:
    """What the world may reach on ``host``, from the roles' and host.py's own fields."""
    out: set[tuple[str, int]] = set()
    for role in host.roles:
        kind = type(role).__name__
        if kind == "Tailscale":
            out.add(("udp", TAILSCALE_WIREGUARD))
        elif kind == "IngressProxy" and any(_everyone(s) for s in role.clients):
            out |= {("tcp", role.http_port), ("tcp", role.https_port)}
    for p in host.open_ports:
        if _everyone(p.source):
            out.add((p.proto, p.port))
    if any(_everyone(s) for s in lab.cluster.admins):
        out.add(("tcp", SSH))
        if host.is_control_plane:
            out.add(("tcp", lab.cluster.api_port))
        out |= {("tcp", r.port) for r in host.roles if type(r).__name__ == "Monitoring"}
    return out


def dns_ports(host: Host) -> set[int]:
    return {r.port for r in host.roles if type(r).__name__ == "DnsServer"}


def ports_of_interest(lab: Lab, host: Host) -> set[int]:
    """Ports the proof must probe for the invariants, whether or not the flow table opens them."""
    return ({p for _, p, _ in CLUSTER_ONLY} | {p for _, p in published(lab, host)} | dns_ports(host)
            | {lab.cluster.api_port, SSH})


def is_world(client: Client) -> bool:
    """A client the proof counts as no kind of source: only "world" rows may let it in."""
    return not client.kinds


def violations(lab: Lab, host: Host, clients: Iterable[Client], results: dict[Probe, bool]) -> list[str]:
    """Every accepted probe that breaks an invariant, said plainly; empty when all hold."""
    by_name = {c.name: c for c in clients}
    cluster_only = {(proto, port): what for proto, port, what in CLUSTER_ONLY}
    public = published(lab, host)
    dns = dns_ports(host)
    out: list[str] = []
    for p, accepted in results.items():
        client = by_name.get(p.client)
        if not accepted or client is None:
            continue  # refused, or the host itself (loopback, a reply)
        what = cluster_only.get((p.kind, p.port))
        if what and not (client.kinds & CLUSTER_KINDS):
            out.append(f"{host.hostname}: {what} ({p.port}/{p.kind}) answered {p.client} ({p.src}), which is not "
                       "one of the cluster's own hosts")
        if is_world(client):
            if p.port in dns:
                out.append(f"{host.hostname}: DNS ({p.port}/{p.kind}) answered {p.client} ({p.src}): an open "
                           "resolver")
            elif (p.kind, p.port) not in public:
                out.append(f"{host.hostname}: {p.port}/{p.kind} answered {p.client} ({p.src}), though no role "
                           "publishes it and no OpenPort opens it to the world")
    return out
