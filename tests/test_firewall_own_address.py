"""The kernel fact behind the shared node rules: a packet from outside carrying the host's own address is a martian.

Every node's firewall lists the rules from the nodes in one file shared by the nodes
(``modules/network/firewall-from-nodes.nix``), so each lists its own LAN address among the sources
too.  That rule must never let anything in.  It does not: Linux validates a packet's source in the
routing decision, after PREROUTING and before the input chain, and drops one whose source is an address
of the receiving host (``fib_validate_source`` in net/ipv4/fib_frontend.c, called from
``ip_route_input_slow`` in net/ipv4/route.c), unless ``accept_local`` is set.

Here the real kernel shows it, in namespaces the test makes: a "host" with its address on ``lan0``,
the own-address accept rule (as homelab writes it, with a counter) in an input chain, and a peer on the
LAN sending UDP with the host's own address as its source.  The packet reaches PREROUTING, never the
input chain, and no socket receives it, with the kernel's reverse-path filter off (its fast path) and
loose (systemd's default).  With ``accept_local`` set, the same packet does reach the rule: the test can
see a packet get through, so a quiet counter means the kernel dropped it.  No NixOS reverse-path filter
is loaded for those: the kernel alone drops it.  NixOS's ``checkReversePath`` (on by default) is a second
layer: its filter, as either firewall loads it, drops the packet in PREROUTING even with ``accept_local``.
"""

from __future__ import annotations

import re
import socket

import pytest

from homelab.firewall import Match, rule
from homelab.proofs.firewall import nft_unavailable
from homelab.proofs.netns import Namespaces, veth

HOST, PEER = "192.0.2.10", "192.0.2.20"  # documentation range, inside the test's namespaces only
PORT = 8472  # flannel's VXLAN port: a node rule's port
IP_TRANSPARENT = 19  # linux/in.h: send from an address this namespace does not have (needs CAP_NET_ADMIN)


def _listen() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", PORT))
    s.settimeout(0.5)
    return s


def _send_as_host(count: int) -> None:
    """From the peer: UDP with the host's own address as source (a spoofed packet on the LAN)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
        s.bind((HOST, 40000))
        for _ in range(count):
            s.sendto(b"spoofed", (HOST, PORT))
    finally:
        s.close()


def _received(s: socket.socket) -> int:
    got = 0
    try:
        while True:
            s.recvfrom(64)
            got += 1
    except TimeoutError:
        return got
    finally:
        s.close()


def _counters(fw) -> dict[str, int]:
    listing = fw.exec("nft", "list", "table", "ip", "probe").stdout
    return {chain: int(n) for chain, n in re.findall(r"chain (\w+) \{.*?counter packets (\d+)", listing, re.S)}


# NixOS's reverse-path filter (checkReversePath, on by default), as its two firewalls load it
# (docs/firewall-skeleton.md; homelab.proofs.firewall builds the same skeletons)
NIXOS_RPFILTER = {
    "nftables": """table inet rp {
  chain rpfilter {
    type filter hook prerouting priority mangle + 10; policy drop;
    meta nfproto ipv4 udp sport . udp dport { 67 . 68, 68 . 67 } accept comment "DHCPv4 client/server"
    fib saddr . mark . iif oif exists accept
  }
}
""",
    "iptables": ["-t mangle -N nixos-fw-rpfilter", "-t mangle -A nixos-fw-rpfilter -m rpfilter --validmark -j RETURN",
                 "-t mangle -A nixos-fw-rpfilter -j DROP", "-t mangle -A PREROUTING -j nixos-fw-rpfilter"],
}


def _run(rp_filter: int, accept_local: int, nixos_rpfilter: str | None = None) -> tuple[dict[str, int], int]:
    """(packets counted in prerouting and by the own-address input rule, datagrams the host's socket got)."""
    with Namespaces("own-address") as ns:
        fw, peer = ns.new("fw"), ns.new("peer")
        veth(fw, "lan0", peer, "eth0")
        fw.ip("addr", "add", f"{HOST}/24", "dev", "lan0")
        peer.ip("addr", "add", f"{PEER}/24", "dev", "eth0")
        mac = re.search(r"link/ether (\S+)", fw.ip("link", "show", "lan0").stdout).group(1)
        peer.ip("neigh", "replace", HOST, "lladdr", mac, "dev", "eth0")  # no ARP needed for the spoofed send
        for conf in ("all", "lan0"):
            fw.exec("sysctl", "-qw", f"net.ipv4.conf.{conf}.rp_filter={rp_filter}",
                    f"net.ipv4.conf.{conf}.accept_local={accept_local}")
        accept = rule("nftables", Match(4, "lan0", f"{HOST}/32"), "udp", PORT)  # what a node-rules file holds
        fw.exec("nft", "-f", "-", input=f"""table ip probe {{
  chain pre {{
    type filter hook prerouting priority raw; policy accept;
    iifname "lan0" ip saddr {HOST} udp dport {PORT} counter
  }}
  chain input {{
    type filter hook input priority filter; policy drop;
    {accept.replace(" accept", " counter accept")}
  }}
}}
""")
        if nixos_rpfilter == "nftables":
            fw.exec("nft", "-f", "-", input=NIXOS_RPFILTER["nftables"])
        elif nixos_rpfilter == "iptables":
            for line in NIXOS_RPFILTER["iptables"]:
                fw.exec("iptables-nft", "-w", *line.split())
        sock = fw.call(_listen)
        peer.call(_send_as_host, 3)
        got = fw.call(_received, sock)
        return _counters(fw), got


@pytest.fixture(scope="module")
def nft():
    why = nft_unavailable()
    if why:
        pytest.skip(f"nft in a network namespace: {why}")


@pytest.mark.netns
@pytest.mark.parametrize("rp_filter", [0, 2], ids=["rp_filter-off", "rp_filter-loose"])
def test_the_hosts_own_address_from_outside_never_reaches_the_input_chain(nft, rp_filter):
    counted, got = _run(rp_filter, accept_local=0)
    assert counted == {"pre": 3, "input": 0} and got == 0


@pytest.mark.netns
def test_with_accept_local_the_same_packets_reach_the_rule(nft):
    """The control: the test sees a packet get through when the kernel lets it, so 0 above is the kernel's drop."""
    counted, got = _run(0, accept_local=1)
    assert counted == {"pre": 3, "input": 3} and got == 3


@pytest.mark.netns
@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_nixos_reverse_path_filter_drops_them_even_with_accept_local(nft, backend):
    """NixOS's own filter (checkReversePath) refuses a local source too: a second layer, whatever accept_local."""
    if backend == "iptables":
        from homelab.proofs.firewall import iptables_unavailable

        why = iptables_unavailable("iptables-nft")
        if why:
            pytest.skip(f"iptables-nft: {why}")
    counted, got = _run(0, accept_local=1, nixos_rpfilter=backend)
    assert counted == {"pre": 3, "input": 0} and got == 0
