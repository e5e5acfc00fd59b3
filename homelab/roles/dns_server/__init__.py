"""DnsServer: split DNS with CoreDNS — the lab's zone answers with the ingress host's Tailscale address.

Every name under ``cluster.domain`` (and the apex) gets an A record pointing at
the host with the :class:`~homelab.roles.ingress.IngressProxy` role, at its
Tailscale address; everything else is forwarded upstream, with a cache.  The
Corefile is ``Corefile.j2`` beside this file.

Facts from nixpkgs (nixos-26.05): ``services/networking/coredns.nix`` writes
``services.coredns.config`` verbatim as the Corefile.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Iterable

import attrs

from ... import checks, configs, fields
from ... import optiontypes as t
from ...contract import OptionFact
from ...errors import Problem, report
from ...model import to_sources
from ...role import (Edge, Flow, GraphPart, HostContext, Module, Node, Port, Proof, ProofContext, Role, Source,
                     section)
from ...sources import matches
from ..ingress import IngressProxy
from ..tailscale import Tailscale

COREDNS = "nixos/modules/services/networking/coredns.nix"
HEALTH_PORT = 8080  # CoreDNS's health plugin (its default port), bound to loopback here


def zone_regex(zone: str) -> str:
    """The CoreDNS ``match`` regex for the zone apex and every name below it."""
    return "^(.+\\.)?" + re.escape(zone).replace("\\-", "-") + "\\.$"


def corefile(*, zone: str, answer_ip: str, ttl: int, forward: list[str], cache: int, port: int,
             allow: list[str]) -> str:
    return configs.role_text(__file__, "Corefile.j2", zone=zone, regex=zone_regex(zone), answer_ip=answer_ip, ttl=ttl,
                        forward=forward, cache=cache, port=port, allow=allow, health_port=HEALTH_PORT)


def _prove_zone(role: DnsServer, ctx: ProofContext) -> str:
    """The Corefile nix read back: its template answers every name in the zone, and no look-alike (proof.py)."""
    from .proof import prove_zone

    ingress = ctx.lab.with_role(IngressProxy)
    answer = str(ingress[0].tailscale_address) if ingress else "?"
    return prove_zone(ctx.option("services.coredns.config"), ctx.lab.cluster.domain, answer, role.ttl,
                      list(role.forward))


@attrs.frozen
class DnsServer(Role):
    """Split DNS: CoreDNS answers the lab's zone with the ingress host's Tailscale address.

    Every name under ``cluster.domain`` (and the apex) gets an A record pointing
    at the host with the IngressProxy role; everything else is forwarded.
    """

    forward: tuple[ipaddress.IPv4Address, ...] = attrs.field(
        default=("1.1.1.1", "1.0.0.1"), converter=fields.to_addresses
    )
    ttl: int = attrs.field(default=60, validator=fields.positive_int)
    cache_seconds: int = attrs.field(default=30, validator=fields.positive_int)
    port: int = attrs.field(default=53, validator=fields.port)
    # who may ask it: LAN clients, the tailnet and the pods by default; never the world (an open resolver)
    clients: tuple[Source, ...] = attrs.field(default=("lan", "tailnet", "pods"), converter=to_sources)

    label = "dns"
    tag = "dns"
    proofs = (Proof("CoreDNS zone", _prove_zone),)
    options = (
        OptionFact("services.coredns.enable", t.bool_, COREDNS,
                   nix_type="`bool` (an enable option)",
                   nix_default="`false`",
                   evidence="S"),
        OptionFact("services.coredns.config", t.lines, COREDNS, "written verbatim as the Corefile",
                   nix_type="`lines`",
                   nix_default="`\"\"`",
                   evidence="S"),
    )

    @clients.validator
    def _clients(self, attribute, value):
        if not isinstance(value, tuple):
            return
        for i, source in enumerate(value):
            everyone = source.kind == "world" or (
                source.kind == "network" and ipaddress.ip_network(source.network).prefixlen == 0)
            if everyone:
                report(f"{fields.field_name(self, attribute)}[{i}]",
                       f"{str(source)!r} lets anyone on the Internet ask this server: an open resolver, used to "
                       "amplify attacks on others; name the networks that need it (lan, tailnet, pods, a network)")

    @forward.validator
    def _forward(self, attribute, value):
        if isinstance(value, tuple) and not value:
            report(fields.field_name(self, attribute), "needs at least one upstream resolver")

    def answer_host(self, lab):
        """The ingress host every name of the zone points at (the lab must have exactly one)."""
        return lab.with_role(IngressProxy)[0]

    def compile(self, ctx: HostContext) -> Iterable[Module]:
        c = ctx.cluster
        ingress = self.answer_host(ctx.lab)
        text = corefile(zone=c.domain, answer_ip=str(ingress.tailscale_address), ttl=self.ttl,
                        forward=[str(a) for a in self.forward], cache=self.cache_seconds, port=self.port,
                        allow=self.acl_networks(ctx))
        yield Module("modules/dns/coredns.nix", "Split-DNS server for the lab's zone", (section(
            f"Split DNS: every name under {c.domain} answers with {ingress.hostname}'s Tailscale "
            "address; the rest is forwarded. The firewall lets only its clients reach the port; the acl refuses "
            "the rest too (CoreDNS before 1.14.7 answers from its cache before the acl runs).",
            ("services.coredns.enable", True),
            ("services.coredns.config", text),
        ),))

    def acl_networks(self, ctx: HostContext) -> list[str]:
        """The networks CoreDNS answers (its acl): the clients' networks, and the host itself."""
        nets = ["127.0.0.0/8", "::1/128"]
        for source in self.clients:
            nets += [m.net or ("0.0.0.0/0" if m.family == 4 else "::/0") for m in matches(ctx.lab, ctx.host, source)]
        return list(dict.fromkeys(nets))

    def flows(self, ctx: HostContext) -> Iterable[Flow]:
        for source in self.clients:
            for proto in ("udp", "tcp"):
                yield Flow(self.port, proto, source, f"split DNS for the zone {ctx.cluster.domain}")

    def ports(self, ctx: HostContext) -> Iterable[Port]:
        yield Port(self.port, "tcp", "the DNS server", field="DnsServer.port")
        yield Port(self.port, "udp", "the DNS server", field="DnsServer.port")
        yield Port(HEALTH_PORT, "tcp", "CoreDNS's health endpoint", loopback=True)

    def check(self, ctx: HostContext) -> Iterable[Problem]:
        own = {ctx.host.ip, ctx.host.tailscale_address}
        for i, a in enumerate(self.forward):
            if a.is_unspecified or a.is_multicast or a == ipaddress.IPv4Address("255.255.255.255"):
                yield self.error(ctx, f"forward[{i}]", f"{a} is not the address of a DNS server")
            elif a in own or a.is_loopback:
                if self.port == 53:  # CoreDNS forwards to port 53: this very server, every query loops
                    yield self.error(ctx, f"forward[{i}]", f"{a} is this host, and its DNS server is this one "
                                     "(port 53): every name outside the zone would be forwarded back to itself")
                else:  # another resolver may listen on port 53 here (unbound...): the user can mean it
                    yield self.warn(ctx, f"forward[{i}]", f"{a} is this host: names outside the zone go to whatever "
                                    "answers on its port 53, which homelab does not set up")
        if not ctx.host.has(Tailscale):
            yield ctx.warn("roles", "DnsServer without Tailscale(): tailnet clients cannot reach this split-DNS "
                           "server")

    @classmethod
    def check_lab(cls, lab) -> Iterable[Problem]:
        c = lab.cluster
        ingress = lab.with_role(IngressProxy)
        dns_hosts = ", ".join(lab.where(h) for h in lab.with_role(cls))
        if not ingress:
            yield Problem(dns_hosts, "DnsServer", f"the zone {c.domain} must point at a host with the IngressProxy "
                          "role, and no host has one")
        elif len(ingress) > 1:
            names = ", ".join(lab.where(h) for h in ingress)
            yield Problem(dns_hosts, "DnsServer", f"several hosts have the IngressProxy role ({names}); the zone "
                          f"{c.domain} can point at one")
        elif ingress[0].tailscale_address is None:
            yield Problem(lab.where(ingress[0]), "tailscale_address",
                          f"the split-DNS zone {c.domain} answers with the ingress host's Tailscale address, and "
                          f"{ingress[0].hostname} has none")
        elif not ingress[0].has(Tailscale):
            yield Problem(lab.where(ingress[0]), "roles",
                          f"the split-DNS zone {c.domain} answers with this host's Tailscale address, and it has "
                          "no Tailscale() role")
        yield from _forwarding_loops(lab)
        if c.api_name == c.domain or c.api_name.endswith("." + c.domain):
            yield Problem("cluster", "api_name", f"{c.api_name} lies in the split-DNS zone {c.domain}; hosts "
                          "resolve it through extraHosts, tailnet clients would get the ingress host", "warning")

    def expectations(self, ctx: HostContext) -> Iterable[checks.Check]:
        why = "DnsServer role (CoreDNS)"
        yield checks.service("coredns.service", "host", why)
        yield checks.listening("tcp", self.port, "host", why)
        yield checks.listening("udp", self.port, "host", why)
        ingress = self.answer_host(ctx.lab)
        answer = str(ingress.tailscale_address)
        zone = ctx.cluster.domain
        for name in (zone, f"www.{zone}", f"a.b.{zone}"):
            yield checks.dns(name, "127.0.0.1", self.port, "host", f"split DNS: names under {zone} answer with "
                             f"{ingress.hostname}'s Tailscale address", answer=answer)
        lookalike = f"{zone}.homelab-lookalike.invalid"
        yield checks.dns(lookalike, "127.0.0.1", self.port, "host",
                         "a look-alike outside the zone must not get the ingress address", not_answer=answer)

    def expectations_for(self, ctx: HostContext, other: HostContext) -> Iterable[checks.Check]:
        """From every other Kubernetes node: this server answers the zone over the LAN."""
        if other.host.is_kubernetes_node:
            ingress = self.answer_host(ctx.lab)
            yield checks.dns(f"probe.{ctx.cluster.domain}", str(ctx.host.ip), self.port, "cluster",
                             f"split DNS served by {ctx.host.hostname} over the LAN",
                             answer=str(ingress.tailscale_address))

    def graph(self, ctx: HostContext) -> GraphPart:
        lab, h = ctx.lab, ctx.host
        ingress = lab.with_role(IngressProxy)
        answer = ingress[0] if len(ingress) == 1 else None
        upstream = list(dict.fromkeys(str(a) for _, r in lab.roles_of_type(DnsServer) for a in r.forward))
        zone, where = "*." + lab.cluster.domain, f"{h.tailscale_address or h.ip}:{self.port}"
        edges = []
        if any(x.tailscale_address for x in lab.hosts):
            edges.append(Edge("client", h.hostname, (f"split DNS: {zone}", where)))
        if answer is not None:
            edges.append(Edge(h.hostname, answer.hostname, (f"{zone} A {answer.tailscale_address}",), "-.->"))
        edges.append(Edge(h.hostname, "upstream", ("other names: forward",)))
        return GraphPart(
            nodes=(Node("upstream", ("upstream DNS", ", ".join(upstream))),),
            edges=tuple(edges), key="split_dns", path={
                "zone": lab.cluster.domain, "server": h.hostname, "server_address": str(h.tailscale_address or h.ip),
                "port": self.port, "answer_host": answer.hostname if answer else None,
                "answer_address": str(answer.tailscale_address) if answer and answer.tailscale_address else None,
                "ttl": self.ttl, "forward": [str(a) for a in self.forward]})


def _forwarding_loops(lab) -> Iterable[Problem]:
    """Split-DNS servers of the lab that forward to each other in a circle (a query would never leave)."""
    servers = {h.hostname: r for h, r in lab.roles_of_type(DnsServer) if r.port == 53}
    by_addr = {a: h.hostname for h in lab.hosts if h.hostname in servers for a in (h.ip, h.tailscale_address) if a}
    nxt = {name: sorted({by_addr[a] for a in r.forward if a in by_addr} - {name}) for name, r in servers.items()}
    for start in sorted(nxt):
        path, todo = {start: [start]}, [start]
        while todo:
            cur = todo.pop()
            for n in nxt[cur]:
                if n == start:
                    circle = " -> ".join(path[cur] + [start])
                    yield Problem(lab.where(lab.host(start)), "DnsServer.forward", f"forwards in a circle ({circle}): "
                                  "a name outside the zone would go round until CoreDNS gives up")
                    todo = []
                    break
                if n not in path:
                    path[n] = path[cur] + [n]
                    todo.append(n)
