"""The host's own firewall section, made once per key for hosts alike (firewall.host_section, issue 19: at 10,000
hosts most have the same rules), is what working it out for each host alone gives (_alone), for
hosts that differ in each thing the key must hold, in any order (the first host of a key makes the section the
others get)."""

from __future__ import annotations

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from homelab import ControlPlane, Host, Lab, OpenPort, Tailscale, Worker, firewall
from homelab.role import Flow, HostContext, Role

from . import labkit


def _alone(ctx, nodes):
    """The host's own section worked out alone from its node rules (what host_section gives without its memo)."""
    return firewall._own_section(ctx, nodes.texts if nodes is not None else None)


@attrs.frozen
class Odd(Role):
    """A lab's own role with a flow on ``port`` (a bool there, equal to 1, is refused: role.Flow checks the port)."""

    port: object = 1

    def flows(self, ctx):
        yield Flow(self.port, "tcp", "lan", "odd")


@attrs.frozen
class ControlPlaneLike(Role):
    """A lab's own role with the class name, flows and sources of ControlPlane, on a host that is not the control
    plane: the same rows as the control plane's, where a source ``control-plane`` stands for another host."""

    def flows(self, ctx):
        return list(ControlPlane().flows(ctx))

    def sources(self, ctx):
        return ControlPlane().sources(ctx)


ControlPlaneLike.__name__ = "ControlPlane"


@attrs.frozen
class WorkerLike(Role):
    """Worker's name, sources and flows less those from the nodes: no node-rules file (the comment says so)."""

    def flows(self, ctx):
        return [f for f in Worker().flows(ctx) if f.source.kind != "nodes"]

    def sources(self, ctx):
        return Worker().sources(ctx)


WorkerLike.__name__ = "Worker"


def _host(name: str, n: int, **kw) -> Host:
    base = dict(hostname=name, system="x86_64-linux", state_version="25.05", interface="enp1s0",
                address=f"192.168.10.{n}", roles=[Worker(), Tailscale()])
    base.update(kw)
    return Host(**base)


def _variants() -> list[Host]:
    """Twins, and hosts that differ from them in one thing the section depends on."""
    return [
        _host("cp", 10, roles=[ControlPlane(), Tailscale()]),
        _host("w1", 11),
        _host("w2", 12),  # w1's twin: the same section
        _host("eth", 13, interface="eth0"),  # another LAN interface
        _host("nov6", 14, options={"networking.enableIPv6": False}),  # no ip6tables rules
        _host("ts1", 15, roles=[Worker(), Tailscale(interface="ts1")]),  # the tailnet on another interface
        _host("admin", 16),  # named in the admins: no rule from its own address
        _host("self", 17, open_ports=[OpenPort(9000, source="host:self", reason="itself")]),
        _host("other", 18, open_ports=[OpenPort(9000, source="host:self", reason="itself")]),  # self's flows
        _host("mimic", 19, roles=[ControlPlaneLike(), Tailscale()]),  # the control plane's flows, not it
        _host("nonode", 20, roles=[WorkerLike(), Tailscale()]),  # w1's own flows, no rules from the nodes
        _host("one", 21, roles=[Odd(1)]),
        _host("two", 22, roles=[Odd(2)]),  # one's flow on another port
        _host("nas", 23, roles=[]),
        _host("nas-eth", 24, roles=[], interface="eth0"),  # nas on another interface (no rules from the nodes)
    ]


def _lab(hosts: list[Host], backend: str) -> Lab:
    return labkit.lab(hosts, firewall=backend, admins=["lan", "tailnet", "host:admin"])


@settings(max_examples=60, deadline=None)
@given(order=st.permutations(range(len(_variants()))), backend=st.sampled_from(["iptables", "nftables"]))
def test_each_host_gets_the_section_worked_out_for_it_alone(order, backend):
    hosts = [_variants()[i] for i in order]
    fast, slow = _lab(hosts, backend), _lab(hosts, backend)
    got = {h.hostname: firewall.host_section(HostContext(fast, h)) for h in fast.hosts}
    want = {}
    for h in slow.hosts:
        ctx = HostContext(slow, h)
        want[h.hostname] = _alone(ctx, firewall.node_rules(ctx))
    assert got == want
    assert got["w1"] is got["w2"]  # the twins' section was made once
    assert got["w1"] is not None


def test_what_the_key_tells_apart_is_written_apart():
    """The cases above differ where they should (else the first test could not catch a key that merges them)."""
    lab = _lab(_variants(), "iptables")
    sec = {h.hostname: firewall.host_section(HostContext(lab, h)) for h in lab.hosts}
    text = {name: s.defs[0][1] for name, s in sec.items()}
    assert sec["nas-eth"] != sec["nas"]
    for name in ("eth", "nov6", "ts1", "admin", "nonode"):
        assert sec[name] != sec["w1"], name
    assert text["self"] != text["other"] and text["mimic"] != text["cp"] and text["one"] != text["two"]
    assert "nodes" not in sec["nonode"].comment and "nodes" in sec["w1"].comment
    assert "--dport 2 " in text["two"] and "--dport 1 " in text["one"]
    assert "192.168.10.16/32" in text["w1"] and "192.168.10.16/32" not in text["admin"]


def test_the_lan_facts_and_the_pod_sources_are_each_lab_s_own():
    """Worked out once per lab (compile._lan, kubernetes.node_sources): a second lab with other ranges gets its own,
    and each host's entry file writes its lab's."""
    from homelab.compile import host_sections
    from homelab.roles import kubernetes

    a = labkit.lab()
    b = labkit.lab(lan="10.9.0.0/20", gateway="10.9.0.2", nameservers=["10.9.0.3", "10.9.0.4"], pod_cidr="10.77.0.0/16",
                   hosts=[attrs.evolve(h, address=f"10.9.0.{10 + i}") for i, h in enumerate(labkit.seed_hosts())])
    for lab, lan, gw, ns, pods in ((a, "192.168.10.0/24", "192.168.10.1", ["192.168.10.1"], "10.1.0.0/16"),
                                   (b, "10.9.0.0/20", "10.9.0.2", ["10.9.0.3", "10.9.0.4"], "10.77.0.0/16"),
                                   (a, "192.168.10.0/24", "192.168.10.1", ["192.168.10.1"], "10.1.0.0/16")):
        for h in lab.hosts:
            ctx = HostContext(lab, h)
            sec = host_sections(ctx)[1]
            assert sec.comment == f"LAN {lan}"
            assert dict(sec.defs)[("networking", "defaultGateway")] == {"address": gw, "interface": h.interface}
            assert dict(sec.defs)[("networking", "nameservers")] == ns
            assert dict(sec.defs)[("networking", "interfaces", h.interface, "ipv4", "addresses")] == \
                [{"address": str(h.ip), "prefixLength": int(lan.split("/")[1])}]
            assert kubernetes.node_sources(ctx) == [("pods", kubernetes.Match(4, i, pods))
                                                   for i in kubernetes.POD_INTERFACES]
    first, second = host_sections(HostContext(a, a.hosts[0]))[1], host_sections(HostContext(a, a.hosts[1]))[1]
    assert dict(first.defs)[("networking", "nameservers")] is not dict(second.defs)[("networking", "nameservers")]


@attrs.frozen
class Broken(Role):
    """A lab's own role whose sources fail: asked only when a flow's source is a role's word (pods, tailnet)."""

    def sources(self, ctx):
        raise RuntimeError("broken sources")


def test_a_role_whose_sources_fail_fails_only_where_the_slow_path_asks_it():
    quiet = labkit.lab([_host("b1", 11, roles=[Broken()]), _host("b2", 12, roles=[Broken()])], admins=["lan"])
    sections = [firewall.host_section(HostContext(quiet, h)) for h in quiet.hosts]
    assert [s.defs for s in sections] == [_alone(HostContext(quiet, h), None).defs
                                          for h in quiet.hosts]
    asked = labkit.lab([_host("b1", 11, roles=[Broken()])], admins=["lan", "tailnet"])
    import pytest
    with pytest.raises(RuntimeError, match="broken sources"):
        firewall.host_section(HostContext(asked, asked.hosts[0]))


@settings(max_examples=30, deadline=None)
@given(order=st.permutations(range(len(_variants()))), backend=st.sampled_from(["iptables", "nftables"]),
       rules_first=st.booleans())
def test_the_node_texts_are_the_node_rules_texts(order, backend, rules_first):
    """node_texts (what a half of a two-process build makes when the node rules were made in another process) is
    node_rules' texts, whichever of the two a process asks for first."""
    hosts = [_variants()[i] for i in order]
    lab, other = _lab(hosts, backend), _lab(hosts, backend)
    for h in lab.hosts:
        ctx, fresh = HostContext(lab, h), HostContext(other, h)
        if rules_first:
            nodes = firewall.node_rules(ctx)
            texts = firewall.node_texts(ctx)
        else:
            texts = firewall.node_texts(ctx)
            nodes = firewall.node_rules(ctx)
        assert texts == (nodes.texts if nodes is not None else None)
        assert firewall.node_texts(fresh) == texts  # made alone, in a lab that never made the node rules
    assert firewall.node_texts(HostContext(lab, next(h for h in lab.hosts if h.hostname == "w1")))


@attrs.frozen
class FromNodes(Role):
    """A lab's own role with a flow from the nodes, on a lab that has no Kubernetes node."""

    def flows(self, ctx):
        yield Flow(9100, "tcp", "nodes", "scraped by the nodes")


def test_a_host_with_flows_from_the_nodes_of_a_lab_without_nodes_still_names_the_node_rules_file():
    lab = labkit.lab([_host("solo", 11, roles=[FromNodes()])])
    ctx = HostContext(lab, lab.hosts[0])
    assert firewall.node_rules(ctx).texts == frozenset() and firewall.node_texts(ctx) == frozenset()
    sec = firewall.host_section(ctx)
    assert sec.comment == ("Who may reach this host, and why: its rows of the lab's flow table (`homelab policy`). "
                           "Those from the Kubernetes nodes are in the firewall-from-nodes file it imports. Nothing "
                           "else gets in.")
    assert sec == _alone(ctx, firewall.node_rules(ctx))
