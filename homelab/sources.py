"""What a flow's source stands for on one host: IP version, incoming interface, network.

A source word (``lan``, ``tailnet``, ``pods``...) becomes concrete per host here, for the
firewall rules (:mod:`homelab.firewall`), the probes and a role that needs the networks (the
DnsServer's acl).  Generic words are answered from the lab itself: a lab host is its LAN address
on the LAN interface, the nodes every node's LAN address, the LAN its range, the world anyone,
a network itself.  Words that a role brings are answered by the host's roles
(``Role.sources``): the Tailscale role says where its tailnet arrives, the Kubernetes roles
where pods do; a host with no role answering a word gets nothing for it (nobody).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

import attrs

from .model import option_path
from .role import HostContext, Source
from .values import Priority

if TYPE_CHECKING:
    from .model import Host, Lab

__all__ = ["Match", "matches", "node_matches", "option_value", "role_matches", "source_interface"]


@attrs.frozen
class Match:
    """A source made concrete on one host: IP version, incoming interface (None: any), network (None: any)."""

    family: int
    iface: str | None
    net: str | None


def matches(lab: Lab, host: Host, source: Source) -> list[Match]:
    """What ``source`` stands for on ``host``: an empty list means nobody (e.g. no host has the role)."""
    off = lab.derived(("firewall: ipv6 off", id(host)), lambda: (host, _ipv6_off(host)))[1]  # once per host
    if off:  # no ip6tables chain to add to: IPv4 rules only
        return [m for m in _matches(lab, host, source) if m.family == 4]
    return _matches(lab, host, source)


def _ipv6_off(host: Host) -> bool:
    """Whether the host's raw options turn IPv6 off (``networking.enableIPv6 = false``), however written: plain,
    ``force(False)``/``default(False)`` (any priority beats NixOS's own default, true), or nested sets."""
    return option_value(host.options, ("networking", "enableIPv6")) is False


def option_value(options, path: tuple[str, ...]):
    """The value ``options`` (a host's raw options) give ``path``, priorities taken off; None when unset."""
    def plain(v):
        while isinstance(v, Priority):
            v = v.value
        return v

    def find(items, at: tuple[str, ...]):
        for key, value in items:
            p = at + option_path(key)
            value = plain(value)
            if p == path:
                return value
            if path[:len(p)] == p and isinstance(value, dict):
                found = find(value.items(), p)
                if found is not None:
                    return found
        return None

    return find(options.items(), ())


def node_matches(lab: Lab, lan_if: str) -> list[Match]:
    """The nodes as a source, on a host whose LAN interface is ``lan_if``: every node's LAN address, by address.

    The receiving host's own address is among them when it is a node (homelab.firewall.OWN_ADDRESS), so the
    rules do not depend on which host receives: one shared file holds them (homelab.firewall.node_rules).
    """
    nets = lab.derived("firewall: node sources", lambda: [f"{h.ip}/32" for h in sorted(
        lab.kubernetes_nodes, key=lambda h: h.ip)])
    return [Match(4, lan_if, net) for net in nets]


def role_matches(lab: Lab, host: Host, kind: str) -> list[Match]:
    """What the host's roles say the source word ``kind`` stands for on it (``Role.sources``), without repeats."""
    ctx = HostContext(lab, host)
    return list(dict.fromkeys(m for r in host.roles for k, m in r.sources(ctx) if k == kind))


def source_interface(lab: Lab, host: Host, kind: str) -> str | None:
    """The interface the source word ``kind`` arrives on at ``host`` (``tailnet``: the Tailscale interface)."""
    return next((m.iface for m in role_matches(lab, host, kind) if m.iface), None)


def _matches(lab: Lab, host: Host, source: Source) -> list[Match]:
    c = lab.cluster
    lan_if = host.interface
    kind = source.kind
    if kind == "host":
        other = lab._by_name.get(source.host)  # by name, not a scan of the lab
        return [Match(4, lan_if, f"{other.ip}/32")] if other is not None and other is not host else []
    if kind == "nodes":
        return node_matches(lab, lan_if)
    if kind == "control-plane":
        cp = lab.control_plane
        return [Match(4, lan_if, f"{cp.ip}/32")] if cp is not None and cp is not host else []
    if kind == "lan":
        return [Match(4, lan_if, str(c.lan))]
    if kind == "admins":
        return list(dict.fromkeys(m for s in c.admins for m in _matches(lab, host, s)))
    if kind == "world":
        return [Match(4, None, None), Match(6, None, None)]
    if kind == "network":
        net = ipaddress.ip_network(source.network)
        return [Match(net.version, None, str(net))]
    return role_matches(lab, host, kind)  # pods, tailnet: the roles that bring them say
