"""DnsServer: split DNS with CoreDNS — the lab's zone answers each client with an ingress address it can reach.

Every name under ``cluster.domain`` (and the apex) gets an A record pointing at
the host with the :class:`~homelab.roles.ingress.IngressProxy` role: LAN clients,
pods and the host itself get its LAN address; tailnet clients, when both the DNS
host and the ingress host are on the tailnet, get its Tailscale address.  CoreDNS
tells them apart with its ``view`` plugin: a server block whose view matches the
tailnet's client addresses (``incidr(client_ip(), ...)``), then the block for
everyone else.  Everything else is forwarded upstream, with a cache.  The
Corefile is ``Corefile.j2`` beside this file.

Facts from nixpkgs (nixos-26.05): ``services/networking/coredns.nix`` writes
``services.coredns.config`` verbatim as the Corefile.  From CoreDNS 1.14.3 (what
nixpkgs 26.05 packages): ``plugin/view`` (``view NAME { expr EXPRESSION }``, the
expression run by expr-lang with ``client_ip()`` the bare client address and
``incidr(ip, cidr)``; an error counts as false), and ``core/dnsserver/server.go``:
the server blocks of one zone and port are tried in the Corefile's order and the
first whose views all pass serves the query (a block without a view passes).
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
from ...role import (TAILNET, Edge, Flow, GraphPart, HostContext, Module, Node, Port, Proof, ProofContext, Role, Source,
                     section)
from ...sources import matches
from ..ingress import IngressProxy
from ..tailscale import TAILNET_V4, TAILNET_V6, Tailscale

COREDNS = "nixos/modules/services/networking/coredns.nix"
HEALTH_PORT = 8080  # CoreDNS's health plugin (its default port), bound to loopback here
TAILNET_NETS = (TAILNET_V4, TAILNET_V6)  # Tailscale's client addresses (IPv4 CGNAT, IPv6 ULA): the role's own


def zone_regex(zone: str) -> str:
    """The CoreDNS ``match`` regex for the zone apex and every name below it."""
    return "^(.+\\.)?" + re.escape(zone).replace("\\-", "-") + "\\.$"


@attrs.frozen
class Answer:
    """One server block of the Corefile: the clients it serves (a ``view`` over their networks, or None for
    everyone else) and the ingress address the zone answers them."""

    view: str | None
    networks: tuple[str, ...]
    address: str
    who: str

    @property
    def expr(self) -> str:
        return " || ".join(f"incidr(client_ip(), '{n}')" for n in self.networks)


def corefile(*, zone: str, answers: list[Answer], ttl: int, forward: list[str], cache: int, port: int,
             allow: list[str]) -> str:
    blocks = [{"comment": a.who, "view": a.view, "expr": a.expr, "answer_ip": a.address} for a in answers]
    return configs.role_text(__file__, "Corefile.j2", zone=zone, regex=zone_regex(zone), blocks=blocks, ttl=ttl,
                        forward=forward, cache=cache, port=port, allow=allow, health_port=HEALTH_PORT)


def _prove_zone(role: DnsServer, ctx: ProofContext) -> str:
    """The Corefile nix read back: each kind of client gets, for every name in the zone, the ingress address it
    can reach, and no look-alike gets anything (proof.py)."""
    from .proof import prove_zone

    answers = role.clients_and_answers(HostContext(ctx.lab, ctx.host))
    return prove_zone(ctx.option("services.coredns.config"), ctx.lab.cluster.domain, answers, role.ttl,
                      list(role.forward), role.port)


@attrs.frozen
class DnsServer(Role):
    """Split DNS: CoreDNS answers the lab's zone with an address of the ingress host each client can reach.

    Every name under ``cluster.domain`` (and the apex) gets an A record pointing
    at the host with the IngressProxy role (its LAN address, or its Tailscale
    address for tailnet clients); everything else is forwarded.
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

    def tailnet_answer(self, lab, host) -> bool:
        """Tailnet clients get the ingress host's Tailscale address: they may ask (``clients``), reach this host
        (it has Tailscale) and reach the ingress host there (it has Tailscale and an address)."""
        ingress = self.answer_host(lab)
        return (TAILNET in self.clients and host.has(Tailscale) and ingress.has(Tailscale)
                and ingress.tailscale_address is not None)

    def answers(self, lab, host) -> list[Answer]:
        """The Corefile's server blocks, in order: the tailnet's view (when it has one), then everyone else."""
        ingress = self.answer_host(lab)
        out = []
        if self.tailnet_answer(lab, host):
            out.append(Answer("tailnet", TAILNET_NETS, str(ingress.tailscale_address),
                              f"tailnet clients: {ingress.hostname}'s Tailscale address"))
        out.append(Answer(None, (), str(ingress.ip), f"LAN clients, pods and this host: {ingress.hostname}'s LAN "
                          "address"))
        return out

    def clients_and_answers(self, ctx: HostContext) -> dict[str, tuple[str, str]]:
        """For the CoreDNS proof: each kind of client this server answers -> (an address such a client asks
        from, the ingress address it must get).  Tailnet clients must get the Tailscale address (when the
        tailnet has a view), everyone else the LAN address; the addresses come from the flow table's sources."""
        ingress = self.answer_host(ctx.lab)
        lan, ts = str(ingress.ip), str(ingress.tailscale_address)
        out = {"this host": ("127.0.0.1", lan)}
        for source in self.clients:
            for m in matches(ctx.lab, ctx.host, source):
                if m.net is None:
                    continue
                net = ipaddress.ip_network(m.net)
                sample = str(net[min(7, net.num_addresses - 1)])
                on_tailnet = any(ipaddress.ip_address(sample) in ipaddress.ip_network(n) for n in TAILNET_NETS
                                 if ipaddress.ip_network(n).version == net.version)
                want = ts if on_tailnet and self.tailnet_answer(ctx.lab, ctx.host) else lan
                out.setdefault(f"{source} (IPv{m.family})" if source.kind == "tailnet" else str(source), (sample, want))
        return out

    def compile(self, ctx: HostContext) -> Iterable[Module]:
        c = ctx.cluster
        ingress = self.answer_host(ctx.lab)
        answers = self.answers(ctx.lab, ctx.host)
        text = corefile(zone=c.domain, answers=answers, ttl=self.ttl,
                        forward=[str(a) for a in self.forward], cache=self.cache_seconds, port=self.port,
                        allow=self.acl_networks(ctx))
        tailnet = (", and tailnet clients with its Tailscale address (each in a server block of its own, chosen by "
                   "CoreDNS's view plugin from the client's address)" if len(answers) > 1 else "")
        yield Module("modules/dns/coredns.nix", "Split-DNS server for the lab's zone", (section(
            f"Split DNS: every name under {c.domain} answers LAN clients, pods and this host with "
            f"{ingress.hostname}'s LAN address{tailnet}; the rest is forwarded. The firewall lets only its clients reach the port; the acl refuses the rest too (CoreDNS "
            "before 1.14.7 answers from its cache before the acl runs).",
            ("services.coredns.enable", True),
            ("services.coredns.config", text),
        ),))

    def acl_networks(self, ctx: HostContext) -> list[str]:
        """The networks CoreDNS answers (its acl): the clients' networks, and the host itself."""
        nets = ["127.0.0.0/8", "::1/128"]
        for source in self.clients:
            nets += [m.net or ("0.0.0.0/0" if m.family == 4 else "::/0") for m in matches(ctx.lab, ctx.host, source)]
        return list(dict.fromkeys(nets))

    def _serves(self, ctx: HostContext, client) -> bool:
        """Whether CoreDNS answers a client at this address (its acl; the flow table opens the port to the same
        clients): the networks found once per DNS host, not once per client asking."""
        host = ctx.host
        nets = ctx.lab.derived(("DnsServer: acl", id(host)), lambda: (host, tuple(
            ipaddress.ip_network(n) for n in self.acl_networks(ctx))))[1]
        ip = ipaddress.ip_address(client)
        return any(ip.version == n.version and ip in n for n in nets)

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
        # a warning only where there is a tailnet to miss, and the clients name it (clients=[...] without
        # "tailnet" says the lab means it)
        if TAILNET in self.clients and not ctx.host.has(Tailscale) and any(h.has(Tailscale) for h in ctx.lab.hosts):
            yield ctx.warn("roles", "DnsServer without Tailscale(): tailnet clients cannot reach this split-DNS "
                           "server (give this host Tailscale(), or leave \"tailnet\" out of DnsServer.clients)")
        ingress = ctx.lab.with_role(IngressProxy)
        if (len(ingress) == 1 and TAILNET in self.clients and ctx.host.has(Tailscale)
                and not self.tailnet_answer(ctx.lab, ctx.host)):
            yield ctx.warn("DnsServer.clients", f"tailnet clients get {ingress[0].hostname}'s LAN address, which they "
                           f"reach only through a subnet router: give {ingress[0].hostname} Tailscale() and a "
                           "tailscale_address to answer them with that")

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
        answer = str(ingress.ip)  # the host itself asks: the block for everyone but the tailnet
        zone = ctx.cluster.domain
        for name in (zone, f"www.{zone}", f"a.b.{zone}"):
            yield checks.dns(name, "127.0.0.1", self.port, "host", f"split DNS: names under {zone} answer with "
                             f"{ingress.hostname}'s LAN address", answer=answer)
        lookalike = f"{zone}.homelab-lookalike.invalid"
        yield checks.dns(lookalike, "127.0.0.1", self.port, "host",
                         "a look-alike outside the zone must not get the ingress address", not_answer=answer)

    def expectations_for(self, ctx: HostContext, other: HostContext) -> Iterable[checks.Check]:
        """From every other Kubernetes node: this server answers the zone over the LAN.  From every other host on
        the tailnet, when this server takes tailnet clients: over the tailnet (the other host asks this one's
        Tailscale address, from its own), the ingress host's Tailscale address where the tailnet has a view of
        its own, else its LAN address."""
        ingress = self.answer_host(ctx.lab)
        if other.host.is_kubernetes_node and self._serves(ctx, other.host.ip):
            yield checks.dns(f"probe.{ctx.cluster.domain}", str(ctx.host.ip), self.port, "cluster",
                             f"split DNS served by {ctx.host.hostname} over the LAN: {ingress.hostname}'s LAN "
                             "address", answer=str(ingress.ip))
        if (ctx.host.has(Tailscale) and ctx.host.tailscale_address is not None and other.host.has(Tailscale)
                and other.host.tailscale_address is not None and self._serves(ctx, other.host.tailscale_address)):
            view = self.tailnet_answer(ctx.lab, ctx.host)  # else tailnet clients get the LAN address too
            yield checks.dns(f"probe.{ctx.cluster.domain}", str(ctx.host.tailscale_address), self.port, "cluster",
                             f"split DNS served by {ctx.host.hostname} over the tailnet: {ingress.hostname}'s "
                             f"{'Tailscale' if view else 'LAN'} address",
                             answer=str(ingress.tailscale_address if view else ingress.ip), client="tailnet")

    def graph(self, ctx: HostContext) -> GraphPart:
        lab, h = ctx.lab, ctx.host
        ingress = lab.with_role(IngressProxy)
        answer = ingress[0] if len(ingress) == 1 else None
        upstream = list(dict.fromkeys(str(a) for _, r in lab.roles_of_type(DnsServer) for a in r.forward))
        zone, where = "*." + lab.cluster.domain, f"{h.tailscale_address or h.ip}:{self.port}"
        edges = []
        if any(x.tailscale_address for x in lab.hosts):
            edges.append(Edge("client", h.hostname, (f"split DNS: {zone}", where)))
        shown = None
        if answer is not None:
            shown = answer.tailscale_address if self.tailnet_answer(lab, h) else answer.ip
            edges.append(Edge(h.hostname, answer.hostname, (f"{zone} A {shown}",), "-.->"))
        edges.append(Edge(h.hostname, "upstream", ("other names: forward",)))
        return GraphPart(
            nodes=(Node("upstream", ("upstream DNS", ", ".join(upstream))),),
            edges=tuple(edges), key="split_dns", path={
                "zone": lab.cluster.domain, "server": h.hostname, "server_address": str(h.tailscale_address or h.ip),
                "port": self.port, "answer_host": answer.hostname if answer else None,
                "answer_address": str(shown) if shown else None,
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
