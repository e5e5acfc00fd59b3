"""The firewall's invariants (homelab/proofs/invariants.py), checked on real verdicts in network namespaces.

They do not come from the flow table: a flow widened by mistake widens the generated rules and the flow
table's expected verdicts alike, which the proofs' verdict check cannot see; the invariants do.

Labs: the seed lab's hosts with a NAS outside Kubernetes beside them (admins on the tailnet only, the
ingress published to the world, an OpenPort to the world), on both back ends.  Then bugs planted on
purpose (a widened VXLAN flow, an open resolver, etcd opened to the LAN): the proofs must fail, naming
the invariant.
"""

from __future__ import annotations

import attrs
import pytest

from homelab import DnsServer, Host, IngressProxy, Lab, OpenPort, Tailscale
from homelab.proofs import ProofFailed
from homelab.proofs.firewall import IPTABLES, iptables_unavailable, nft_unavailable, prove_iptables, prove_nftables
from homelab.proofs.invariants import published
from homelab.proofs.netns import read_back_lab
from homelab.role import LAN, WORLD, Flow

from . import labkit

pytestmark = pytest.mark.netns


def nas_lab(firewall: str) -> Lab:
    lab = labkit.lab(admins=["tailnet"], firewall=firewall)
    hosts = []
    for h in lab.hosts:
        if h.hostname == "hanaakari":
            roles = [IngressProxy(clients=["lan", "tailnet", "world"]) if isinstance(r, IngressProxy) else r
                     for r in h.roles]
            h = attrs.evolve(h, roles=roles, open_ports=[OpenPort(25565, reason="a game server for friends",
                                                                  source="world")])
        hosts.append(h)
    hosts.append(Host(hostname="nas", system="x86_64-linux", state_version="26.05", interface="eno1",
                      address="192.168.10.20", tailscale_address="100.64.0.20", roles=[Tailscale()],
                      open_ports=[OpenPort(445, reason="SMB for the desks", source="lan")]))
    return Lab(lab.cluster, hosts)


def _prove(firewall: str, lab: Lab, key: str, hostname: str, tmp_path, nix, verdicts=None) -> str:
    rb = read_back_lab(key, lab, nix)
    host = rb.lab.host(hostname)
    if firewall == "nftables":
        return prove_nftables(rb.lab, host, rb.options[hostname], tmp_path, verdicts=verdicts)
    return prove_iptables(rb.lab, host, rb.options[hostname], IPTABLES["nft"], tmp_path, verdicts=verdicts)


@pytest.fixture(params=["iptables", "nftables"])
def backend(request):
    why = nft_unavailable() if request.param == "nftables" else iptables_unavailable(IPTABLES["nft"])
    if why:
        pytest.skip(f"{request.param}: {why}")
    return request.param


@pytest.mark.parametrize("hostname", ["yomogi", "tokiwa", "hanaakari", "nas"])
def test_the_invariants_hold_on_a_lab_with_a_nas(nix, backend, hostname, tmp_path):
    verdicts: dict = {}
    summary = _prove(backend, nas_lab(backend), f"invariants-nas-{backend}", hostname, tmp_path, nix, verdicts)
    assert "the invariants hold" in summary
    got = {(p.client, p.kind, p.port): ok for p, ok in verdicts.items()}
    if hostname != "nas":
        # the NAS is on the LAN but no Kubernetes node: flannel's VXLAN, the kubelet, etcd are closed to it
        for kind, port in (("udp", 8472), ("tcp", 10250), ("tcp", 2379), ("tcp", 2380)):
            assert got[("node nas", kind, port)] is False, (kind, port)
    if hostname == "yomogi":
        # nor the API server (the admins are on the tailnet only) nor cfssl; the nodes reach both
        for port in (6443, 8888):
            assert got[("node nas", "tcp", port)] is False and got[("node tokiwa", "tcp", port)] is True
        # its DNS server answers the LAN (the NAS too), never the internet
        assert got[("node nas", "udp", 53)] is True and got[("outside (internet via the router)", "udp", 53)] is False
    if hostname == "hanaakari":
        # published: the ingress and the OpenPort reach the internet, and nothing else does
        world = {(k, port) for (c, k, port), ok in got.items() if ok and c == "outside (internet via the router)"}
        assert world == {("tcp", 80), ("tcp", 443), ("tcp", 25565), ("udp", 41641)}
        assert published(nas_lab(backend), nas_lab(backend).host("hanaakari")) == world


def _widened(monkeypatch, what: str) -> None:
    """Plant a bug in a role's flows: the rules and the flow table's verdicts widen together."""
    from homelab.roles import control_plane, dns_server, kubernetes

    if what == "vxlan":
        real = kubernetes.node_flows
        monkeypatch.setattr(kubernetes, "node_flows", lambda ctx: real(ctx) + [
            Flow(8472, "udp", LAN, "flannel (widened by a planted bug)")])
    elif what == "dns":
        real_dns = dns_server.DnsServer.flows
        monkeypatch.setattr(dns_server.DnsServer, "flows", lambda self, ctx: list(real_dns(self, ctx)) + [
            Flow(self.port, "udp", WORLD, "split DNS (widened by a planted bug)")])
    else:  # etcd to the LAN
        real_cp = control_plane.ControlPlane.flows
        monkeypatch.setattr(control_plane.ControlPlane, "flows", lambda self, ctx: list(real_cp(self, ctx)) + [
            Flow(2379, "tcp", LAN, "etcd (widened by a planted bug)")])


@pytest.mark.parametrize("what,hostname,message", [
    ("vxlan", "tokiwa", r"flannel's VXLAN \(8472/udp\) answered LAN client"),
    ("vxlan", "tokiwa", r"flannel's VXLAN \(8472/udp\) answered node nas"),
    ("dns", "yomogi", r"DNS \(53/udp\) answered outside \(internet via the router\) \(203\.0\.113\.7\): an open "
                      "resolver"),
    ("etcd", "yomogi", r"etcd \(2379/tcp\) answered node nas"),
])
def test_a_widened_flow_breaks_an_invariant(nix, backend, monkeypatch, what, hostname, message, tmp_path):
    _widened(monkeypatch, what)
    lab = nas_lab(backend)
    with pytest.raises(ProofFailed, match=message) as e:
        _prove(backend, lab, f"invariants-{what}-{backend}", hostname, tmp_path, nix)
    # the flow table's own verdicts agreed with the widened rules: only the invariants saw it
    assert "break the firewall's invariants" in str(e.value) and "probes wrong" not in str(e.value)


def test_a_dns_server_cannot_be_told_to_answer_the_world():
    with pytest.raises(Exception, match="open resolver"):
        DnsServer(clients=["world"])
