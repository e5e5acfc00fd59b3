"""A host's own firewall section is made once per key for hosts alike (firewall.host_section); a value the key
would hold by equality but that writes itself otherwise (an int or str subclass, a Match that equals another
Match of other fields) must not make a host get another host's section: each host gets exactly the section worked
out for it alone, whichever host of the lab comes first."""

from __future__ import annotations

import attrs
import pytest

from homelab import Host, Tailscale, firewall
from homelab.role import Flow, HostContext, Role
from homelab.sources import Match

from . import labkit


class Service(int):
    """A port that writes itself as its service name (iptables and nft accept ``--dport ssh``)."""

    def __format__(self, spec):
        return "ssh" if int(self) == 22 else int.__format__(self, spec)

    __str__ = __format__


class Loud(str):
    """A reason that writes itself in capitals."""

    def __format__(self, spec):
        return self.upper()

    __str__ = __format__


class Wild(str):
    """An interface name that writes itself as an iptables wildcard (``ts+``: every ts interface)."""

    def __format__(self, spec):
        return str.__str__(self) + "+"

    __str__ = __format__


class Mask(str):
    """A network that writes itself with a dotted netmask (``10.0.0.0/255.0.0.0``)."""

    def __format__(self, spec):
        import ipaddress
        return ipaddress.ip_network(str.__str__(self)).with_netmask

    __str__ = __format__


@attrs.frozen(eq=False)
class ByFamily(Match):
    """A Match that equals every Match of its IP version (a lab's own, compared loosely)."""

    def __eq__(self, other):
        return isinstance(other, Match) and other.family == self.family

    def __hash__(self):
        return hash(self.family)


@attrs.frozen
class Opens(Role):
    """A lab's own role: one flow from the LAN on ``port`` because ``why``."""

    port: object = 8022
    why: object = "a shell"

    def flows(self, ctx):
        yield Flow(self.port, "tcp", "lan", self.why)


@attrs.frozen
class Says(Role):
    """A lab's own role that says what the source word ``tailnet`` stands for on its host (``m``), and opens a
    port to it."""

    m: object = None

    def flows(self, ctx):
        yield Flow(9000, "tcp", "tailnet", "the tailnet's clients")

    def sources(self, ctx):
        yield "tailnet", self.m


def _host(name: str, n: int, roles) -> Host:
    return Host(hostname=name, system="x86_64-linux", state_version="25.05", interface="enp1s0",
                address=f"192.168.10.{n}", roles=roles)


def _sections(hosts: list[Host], backend: str) -> tuple[dict, dict]:
    """Each host's section as host_section gives it, and as worked out alone in a lab of its own making."""
    fast, slow = labkit.lab(hosts, firewall=backend), labkit.lab(hosts, firewall=backend)
    got = {h.hostname: firewall.host_section(HostContext(fast, h)) for h in fast.hosts}
    want = {h.hostname: firewall._own_section(HostContext(slow, h), None) for h in slow.hosts}
    return got, want


PAIRS = {
    # (a plain host, its twin whose value writes itself otherwise)
    "port": ([Opens(22)], [Opens(Service(22))]),
    "why": ([Opens()], [Opens(why=Loud("a shell"))]),
    "iface": ([Says(Match(4, "ts", "100.64.0.0/10")), Tailscale()],
              [Says(Match(4, Wild("ts"), "100.64.0.0/10")), Tailscale()]),
    "net": ([Says(Match(4, "ts0", "10.0.0.0/8"))], [Says(Match(4, "ts0", Mask("10.0.0.0/8")))]),
    "match": ([Says(ByFamily(4, "ts0", "10.0.0.1/32"))], [Says(ByFamily(4, "ts0", "10.0.0.2/32"))]),
}


# nft writes a network through str.removesuffix, which gives a plain str: Mask writes itself only in iptables
CASES = [(what, backend) for what in sorted(PAIRS) for backend in ("iptables", "nftables")
         if (what, backend) != ("net", "nftables")]


@pytest.mark.parametrize("what, backend", CASES)
@pytest.mark.parametrize("plain_first", [True, False])
def test_a_value_written_its_own_way_gets_the_section_of_its_own_host(what, plain_first, backend):
    plain, other = PAIRS[what]
    hosts = [_host("plain", 11, plain), _host("other", 12, other)]
    got, want = _sections(hosts if plain_first else hosts[::-1], backend)
    assert got == want
    assert want["plain"] != want["other"]  # the two are written apart (else the test could not tell)


def test_twins_whose_flows_name_another_host_get_the_section_made_once():
    """A source ``host:<name>`` naming another host is the lab's alone (that host's address): twins with such a
    flow share one key, so the section is made once for them (only the named host itself is worked out alone)."""
    from homelab import OpenPort

    port = OpenPort(9100, source="host:mon", reason="scraped by mon")
    hosts = [_host("mon", 10, [Opens()]), _host("a", 11, [Opens()]), _host("b", 12, [Opens()])]
    hosts = [attrs.evolve(h, open_ports=[port]) for h in hosts]
    got, want = _sections(hosts, "iptables")
    assert got == want
    assert got["a"] is got["b"]
    rule = "iptables -w -A nixos-fw -s 192.168.10.10/32 -i enp1s0 -p tcp -m tcp --dport 9100 -j nixos-fw-accept"
    assert rule in got["a"].defs[0][1].splitlines() and rule not in got["mon"].defs[0][1].splitlines()
