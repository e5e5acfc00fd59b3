"""Expectations grow with the lab, not its square, and still prove every verdict of the flow table.

Reach checks are one probe per class of client a host's firewall tells apart (firewall.probe_classes),
not one per other lab host; the entries of files every node shares (the rules from the nodes, /etc/hosts)
are looked for on a window of nodes per host (firewall.node_window).  Counted here, never timed.
"""

from __future__ import annotations

import ipaddress
import json

import attrs
import pytest

from homelab import ControlPlane, Host, Lab, OpenPort, Tailscale, Worker
from homelab import firewall
from homelab.expect import lab_expectations
from homelab.role import HostContext

from .test_lab_growth import grown_lab


def naive_admits(lab: Lab, host: Host, address: str, proto: str, port: int) -> bool:
    """The flow table read the slow way, row by row (no index, no matcher): does a LAN packet get in?"""
    a = ipaddress.ip_address(address)
    for flow, _ in firewall.host_flows(HostContext(lab, host)):
        if (flow.proto, flow.port) != (proto, port):
            continue
        for m in firewall.matches(lab, host, flow.source):
            if m.family == 4 and m.iface in (None, host.interface) and (
                    m.net is None or a in ipaddress.ip_network(m.net)):
                return True
    return False


def mixed_lab() -> Lab:
    """Nodes, a control plane, a NAS outside Kubernetes, ports opened to one host, to a network, to the admins."""
    lab = grown_lab(12, "iptables")
    hosts = list(lab.hosts)
    lan = ipaddress.ip_network("10.20.0.0/16")
    hosts.append(Host(hostname="nas", system="x86_64-linux", state_version="26.05", interface="eno1",
                      address=str(lan.network_address + 200),
                      open_ports=[OpenPort(2049, source="host:n005", reason="NFS for n005's backups"),
                                  OpenPort(445, source="10.20.0.0/27", reason="SMB for the first desks"),
                                  OpenPort(9100, source="admins", reason="node exporter")],
                      roles=[Tailscale()]))
    hosts.append(Host(hostname="printer", system="x86_64-linux", state_version="26.05", interface="eno1",
                      address=str(lan.network_address + 100), roles=[]))
    return Lab(attrs.evolve(lab.cluster, admins=["10.20.0.0/28", "tailnet"]), hosts)


def test_one_probe_per_class_proves_every_verdict_of_the_flow_table():
    lab = mixed_lab()
    lan_client = firewall.lan_client_address(lab)
    everyone = [("lan-client", lan_client)] + [(f"host:{h.hostname}", str(h.ip)) for h in lab.hosts]
    for host in lab.hosts:
        classes = firewall.probe_classes(lab, host)
        ports = sorted({(f.proto, f.port) for f, _ in firewall.host_flows(HostContext(lab, host))}) + [
            ("tcp", 8999), ("udp", 8999)]
        members = [m for pc in classes for m in pc.members()]
        # every client but the host itself is in exactly one class, and the sizes say so
        assert sorted(members) == sorted(c for c in everyone if c[0] != f"host:{host.hostname}"), host.hostname
        assert [pc.size for pc in classes] == [len(pc.members()) for pc in classes]
        for pc in classes:
            assert (pc.client, pc.address) in pc.members()
            for proto, port in ports:
                want = naive_admits(lab, host, pc.address, proto, port)
                assert (firewall.admits(lab, host, 4, host.interface, pc.address, proto, port) is not None) == want
                for client, address in pc.members():  # the probe speaks for each member: same verdict
                    assert naive_admits(lab, host, address, proto, port) == want, (host.hostname, client, port)
        # and classes are really told apart: two classes differ on some port
        for i, a in enumerate(classes):
            for b in classes[i + 1:]:
                assert any(naive_admits(lab, host, a.address, *p) != naive_admits(lab, host, b.address, *p)
                           for p in ports), (host.hostname, a.description, b.description)


def test_the_nas_classes_name_who_they_stand_for():
    lab = mixed_lab()
    nas = {(pc.client, pc.description, pc.size) for pc in firewall.probe_classes(lab, lab.host("nas"))}
    # n005 alone may use NFS; the admins' 10.20.0.0/28 (n000..n005) the node exporter, the first desks'
    # 10.20.0.0/27 (n000..n011) SMB; the printer and the LAN client (the LAN's top address) neither
    assert nas == {
        ("lan-client", "the LAN client and lab hosts outside Kubernetes", 2),
        ("host:n000", "the control plane, in 10.20.0.0/27, 10.20.0.0/28; Kubernetes nodes, in 10.20.0.0/27, "
                      "10.20.0.0/28", 5),
        ("host:n005", "host:n005 (Kubernetes nodes), in 10.20.0.0/27, 10.20.0.0/28", 1),
        ("host:n006", "Kubernetes nodes, in 10.20.0.0/27", 6)}


def _counts(n: int) -> tuple[int, int, int]:
    e = lab_expectations(grown_lab(n, "iptables"))
    checks = sum(len(x.checks) for x in e.values())
    reach = sum(1 for x in e.values() for c in x.checks if c.kind == "reach")
    size = len(json.dumps({k: v.to_json() for k, v in e.items()}))
    return checks, reach, size


def test_expectations_grow_linearly_with_the_lab():
    c = {n: _counts(n) for n in (24, 48, 72)}
    checks = {n: c[n][0] for n in c}
    reach = {n: c[n][1] for n in c}
    # each 24 more hosts add as many checks (and probes) as the 24 before: nothing per pair of hosts
    assert checks[72] - checks[48] == checks[48] - checks[24] > 0, checks
    assert reach[72] - reach[48] == reach[48] - reach[24] > 0, reach
    # the JSON grows by about the same amount each step (names get no longer: n0xx)
    step1, step2 = c[48][2] - c[24][2], c[72][2] - c[48][2]
    assert abs(step2 - step1) < 0.02 * step1, (step1, step2)


@pytest.mark.parametrize("n", [5, 9, 10, 20])
def test_every_node_entry_is_looked_for_on_some_host(n):
    """The window: every other node in small labs; else each node's rules and name are looked for on WINDOW hosts."""
    lab = grown_lab(n, "iptables")
    e = lab_expectations(lab)
    nodes = [h for h in lab.hosts if h.is_kubernetes_node]
    seen: dict[str, int] = {h.hostname: 0 for h in nodes}
    for h in nodes:
        names = {c.spec["name"] for c in e[h.hostname].checks if c.kind == "hosts_entry"} - {"api.kube"}
        rules = {c.spec["rule"] for c in e[h.hostname].checks if c.kind == "firewall_rule"}
        from_nodes = {o.hostname for o in nodes if any(f"-s {o.ip}/32 -i enp1s0 -p udp -m udp --dport 8472 " in r
                                                       for r in rules)}
        assert names == firewall.node_window(lab, h) and from_nodes == names | {h.hostname}, h.hostname
        for name in names:
            seen[name] += 1
    want = n - 1 if n - 1 <= firewall.WINDOW else firewall.WINDOW
    assert set(seen.values()) == {want}, seen


def test_reach_checks_for_a_worker_in_a_big_lab_are_a_handful():
    lab = grown_lab(60, "iptables")
    w = lab.host("n030")
    got = {(pc.client, pc.description, pc.size) for pc in firewall.probe_classes(lab, w)}
    assert got == {("lan-client", "the LAN client", 1), ("host:n000", "the control plane", 1),
                   ("host:n001", "Kubernetes nodes", 58)}


def test_control_plane_is_not_a_probe_of_itself():
    lab = grown_lab(6, "iptables")
    cp = lab.host("n000")
    assert ControlPlane in {type(r) for r in cp.roles} and Worker not in {type(r) for r in cp.roles}
    assert all(m[0] != "host:n000" for pc in firewall.probe_classes(lab, cp) for m in pc.members())
