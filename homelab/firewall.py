"""The lab's network policy, built once as data — the flow table — and the firewall rules made from it.

Every row says who may reach which host on which port, and why: the role (or
the host's own ``open_ports``) that needs it.  Nothing else gets in: NixOS's
firewall drops the rest, and homelab opens no port to everyone through
``allowedTCPPorts`` and trusts no interface as a whole (``lo`` aside, which
NixOS always trusts).

From the one table come:

* the firewall rules, for both backends and both IP versions: iptables
  ``networking.firewall.extraCommands`` lines appended to the ``nixos-fw`` chain
  (``ip6tables`` for IPv6 sources), or nftables ``networking.firewall.extraInputRules``
  in the ``input-allow`` chain of table ``inet nixos-fw``.  A host's rules from the
  Kubernetes nodes (flows whose source is ``nodes``: one rule per node) are in a
  module file shared by every host whose node rules are the same
  (:func:`node_rules`, ``modules/network/firewall-from-nodes.nix``), so the lab's
  files grow with the lab, not with its square; the host's other rules are in its
  own entry file (:func:`host_section`).  Both options are ``lines``: NixOS joins
  the two files' text, and accept rules do not depend on their order;
* the expectations the vm-tests and the namespace tests probe, positive and
  negative (:mod:`homelab.expect`);
* the README's policy table (``homelab policy``).

A source becomes concrete per host (:func:`matches`): a lab host is its LAN
address on the LAN interface, the nodes are every node's LAN address (the host's
own too, see :data:`OWN_ADDRESS`) on the LAN interface; LAN clients are the LAN range on
the LAN interface; the pods are the pod range on the pods' own interfaces (the
CNI bridge and flannel's VXLAN device — a pod address arriving on the LAN is
refused); the tailnet is Tailscale's ranges (IPv4 and IPv6) on the Tailscale
interface (the roles say where the pods and the tailnet arrive: :mod:`homelab.sources`); the world is anyone, both IP versions.  Service-range addresses are
never sources (kube-proxy rewrites them before the input chain).

Facts from nixpkgs (nixos-26.05): ``services/networking/firewall-iptables.nix``
(``extraCommands`` runs after the generated accept rules, before the final
refuse jump; plain ``iptables`` lines are IPv4 only) and
``firewall-nftables.nix`` (``extraInputRules`` at the end of ``input-allow``);
docs/firewall-skeleton.md has the chain skeletons the namespace tests rebuild.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Iterable

import attrs

from .nixmodule import Module, Section, section
from .role import Flow, HostContext, Source
from .sources import Match, matches, node_matches, source_interface

if TYPE_CHECKING:
    from .model import Cluster, Host, Lab

NFT_LIST = "nft list chain inet nixos-fw input-allow"
NFT_LIST_INPUT = "nft list chain inet nixos-fw input"  # trusted interfaces are accepted here, before input-allow
IPT_LIST = "iptables -w -S nixos-fw"
IP6T_LIST = "ip6tables -w -S nixos-fw"
NODE_RULES = "modules/network/firewall-from-nodes.nix"  # the rules from the nodes; variants -2, -3...
# Why the node rules may list the host's own LAN address (kernel behaviour, docs/nixpkgs-facts.md)
OWN_ADDRESS = ("the rule for the host's own address never matches: Linux drops a packet arriving from outside with "
               "one of the host's own addresses as its source (a martian) before the input chain, unless "
               "accept_local is set (off by default; homelab refuses it on a node)")


@attrs.frozen
class Row:
    """One row of the lab's flow table: ``source`` may reach ``host`` on ``port``/``proto`` because of ``by``."""

    host: str
    port: int
    proto: str
    source: Source
    why: str
    by: str  # the role's class name, or "host.py" (open_ports), or "homelab" (sshd)


def base_module(cluster: Cluster) -> Module:
    """``modules/network/firewall.nix``: the firewall on (one file for the lab); the rules are elsewhere."""
    if cluster.firewall == "nftables":
        return Module("modules/network/firewall.nix", "Firewall on (nftables)", (
            section("Everything not in the host's flow table is dropped; its rules are in the host's own file, "
                    "those from the Kubernetes nodes in the firewall-from-nodes file it imports.",
                    ("networking.firewall.enable", True), ("networking.nftables.enable", True)),
            section("A firewall reload must not flush the whole ruleset: kube-proxy's and flannel's tables live "
                    "there too (nixpkgs flushes it by default on hosts first installed before 23.11).",
                    ("networking.nftables.flushRuleset", False)),
        ), source="")
    return Module("modules/network/firewall.nix", "Firewall on (iptables)", (
        section("Everything not in the host's flow table is dropped; its rules are in the host's own file, "
                    "those from the Kubernetes nodes in the firewall-from-nodes file it imports.",
                ("networking.firewall.enable", True)),
    ), source="")


# ---------------------------------------------------------------- the table


def host_flows(ctx: HostContext) -> tuple[tuple[Flow, str], ...]:
    """The host's rows of the flow table, as (flow, who asks for it): homelab's sshd, each role, open_ports.

    Asked for by the compiler (twice: the node rules and the host's own), the expectations and every probe
    verdict (:func:`admits`), so worked out once per host of the lab.
    """
    # keyed by the host object (the entry keeps it alive, so its id is never reused meanwhile)
    _host, flows = ctx.lab.derived(("firewall: flows", id(ctx.host)), lambda: (ctx.host, _host_flows(ctx)))
    return flows


def _host_flows(ctx: HostContext) -> tuple[tuple[Flow, str], ...]:
    from . import access

    out: list[tuple[Flow, str]] = [(f, "homelab") for f in access.flows(ctx)]
    for role in ctx.host.roles:
        out += [(f, type(role).__name__) for f in role.flows(ctx)]
    for p in ctx.host.open_ports:
        out.append((Flow(p.port, p.proto, p.source, p.reason), "host.py"))
    return tuple(out)


def flow_table(lab: Lab) -> list[Row]:
    """The lab's whole network policy: every host's rows, hosts by name."""
    return [Row(h.hostname, f.port, f.proto, f.source, f.why, by)
            for h in lab.hosts for f, by in host_flows(HostContext(lab, h))]


# ---------------------------------------------------------------- sources made concrete


def tailnet_interface(lab: Lab, host: Host) -> str | None:
    """The interface tailnet peers arrive on at ``host`` (the role that brings the tailnet says), or None."""
    return source_interface(lab, host, "tailnet")


# ---------------------------------------------------------------- rules


def rule(backend: str, m: Match, proto: str, port: int) -> str:
    """One accept rule, written in the form the backend lists it (``iptables -S``, ``nft list``)."""
    if backend == "nftables":
        parts = []
        if m.iface:
            parts.append(f'iifname "{m.iface}"')
        if m.net:
            net = m.net.removesuffix("/32") if m.family == 4 else m.net.removesuffix("/128")
            parts.append(f"{'ip' if m.family == 4 else 'ip6'} saddr {net}")
        return " ".join(parts + [f"{proto} dport {port} accept"])
    cmd = "iptables" if m.family == 4 else "ip6tables"
    src = f" -s {m.net}" if m.net else ""
    iface = f" -i {m.iface}" if m.iface else ""
    # -w, as nixpkgs' own ip46tables passes it: iptables-legacy then waits for the xtables lock kube-proxy and
    # flannel take too, instead of failing firewall-start; nixpkgs' iptables-nft accepts and ignores it
    return f"{cmd} -w -A nixos-fw{src}{iface} -p {proto} -m {proto} --dport {port} -j nixos-fw-accept"


@attrs.frozen
class Rule:
    text: str  # as written into extraCommands / extraInputRules
    family: int
    flow: Flow
    by: str

    def listed(self, backend: str) -> tuple[str, str]:
        """(the command that lists the chain, the rule as it shows there)."""
        if backend == "nftables":
            return NFT_LIST, self.text
        return (IPT_LIST if self.family == 4 else IP6T_LIST), self.text.split(" ", 1)[1].removeprefix("-w ")


def host_rules(ctx: HostContext) -> list[Rule]:
    """Every accept rule of the host, without repeats: those of its own file (:func:`own_rules`), then those of
    the node-rules file it imports (:func:`node_rules`), each file's in flow-table order."""
    nodes = node_rules(ctx)
    return own_rules(ctx, nodes) + list(nodes.rules if nodes is not None else ())


def _option(cluster: Cluster) -> str:
    return ("networking.firewall.extraInputRules" if cluster.firewall == "nftables"
            else "networking.firewall.extraCommands")


def _text(rules: Iterable[Rule]) -> str:
    """The rules as the option's text: each group of rules under a comment that says why."""
    lines: list[str] = []
    last = None
    for r in rules:
        head = (r.flow.port, r.flow.proto, str(r.flow.source), r.flow.why)
        if head != last:
            lines.append(f"# {r.flow.port}/{r.flow.proto} from {r.flow.source}: {r.flow.why} ({r.by})")
            last = head
        lines.append(r.text)
    return "".join(line + "\n" for line in lines)


def _rules(backend: str, pairs: Iterable[tuple[Flow, str, Match]], skip: frozenset[str] = frozenset()) -> list[Rule]:
    """One rule per (flow, who asks for it, match), in order, without repeats and without those in ``skip``."""
    out: dict[str, Rule] = {}
    for flow, by, m in pairs:
        text = rule(backend, m, flow.proto, flow.port)
        if text not in skip and text not in out:
            out[text] = Rule(text, m.family, flow, by)
    return list(out.values())


def from_nodes(source: Source) -> bool:
    """Whether a flow's rules go into the shared node-rules file: its source is every Kubernetes node."""
    return source.kind == "nodes"


@attrs.frozen
class NodeRules:
    """A host's rules from the nodes, and the module file that holds them (shared with like hosts)."""

    module: Module
    rules: tuple[Rule, ...]
    texts: frozenset[str]


def node_rules(ctx: HostContext) -> NodeRules | None:
    """The host's rules whose source is the nodes, or None when it has none.

    They depend only on the host's LAN interface and its flows from the nodes (:func:`node_matches`), never on
    the host itself (its own address is among the nodes': :data:`OWN_ADDRESS`).  So they are worked out
    once per distinct set, and hosts with the same set get the very same :class:`Module`, which the
    compiler writes once (``modules/network/firewall-from-nodes.nix``; other sets ``-2``, ``-3``).
    """
    flows = tuple((f, by) for f, by in host_flows(ctx) if from_nodes(f.source))
    if not flows:
        return None
    lab, lan_if = ctx.lab, ctx.host.interface
    return lab.derived(("firewall: node rules", lan_if, flows), lambda: _node_rules(lab, lan_if, flows))


def _node_rules(lab: Lab, lan_if: str, flows: tuple[tuple[Flow, str], ...]) -> NodeRules:
    rules = _rules(lab.cluster.firewall, ((f, by, m) for f, by in flows for m in node_matches(lab, lan_if)))
    ports = ", ".join(dict.fromkeys(f"{f.port}/{f.proto}" for f, _ in flows))
    module = Module(NODE_RULES, f"Firewall: what the Kubernetes nodes may reach ({ports})", (section(
        "Who among the Kubernetes nodes may reach the hosts that import this file, and why: their rows of the "
        "lab's flow table from the nodes (`homelab policy`), one rule per node; each host's other rules are in "
        "its own file. Every node's LAN address is listed, the importing host's own included, so one file "
        f"serves them all; {OWN_ADDRESS}.",
        (_option(lab.cluster), _text(rules))),), source="every node's address in its host.py")
    return NodeRules(module, tuple(rules), frozenset(r.text for r in rules))


def own_rules(ctx: HostContext, nodes: NodeRules | None) -> list[Rule]:
    """The host's rules for its own entry file: all but those from the nodes (and none ``nodes`` already holds)."""
    return _rules(ctx.cluster.firewall, ((f, by, m) for f, by in host_flows(ctx) if not from_nodes(f.source)
                                         for m in matches(ctx.lab, ctx.host, f.source)),
                  nodes.texts if nodes is not None else frozenset())


def host_section(ctx: HostContext) -> Section | None:
    """The host's own firewall rules for its entry file, each group under a comment that says why."""
    nodes = node_rules(ctx)
    rules = own_rules(ctx, nodes)
    if not rules:
        return None
    where = " Those from the Kubernetes nodes are in the firewall-from-nodes file it imports." if nodes else ""
    return section("Who may reach this host, and why: its rows of the lab's flow table (`homelab policy`)."
                   f"{where} Nothing else gets in.", (_option(ctx.cluster), _text(rules)))


def accept_local_problems(ctx: HostContext) -> list[str]:
    """Why the host's raw options break the node rules' premise (:data:`OWN_ADDRESS`): each option that turns
    ``accept_local`` on (a ``boot.kernel.sysctl`` entry) on a host that has rules from the nodes."""
    from .model import Priority, option_path

    if node_rules(ctx) is None:
        return []

    def on(path: tuple[str, ...], value) -> bool:
        if isinstance(value, Priority):
            return on(path, value.value)
        if isinstance(value, dict):
            return any(on(path + (str(k),), v) for k, v in value.items())
        return any(p.replace("/", ".").endswith("accept_local") for p in path) and value not in (0, False, "0", None)

    return [path for path, value in sorted(ctx.host.options.items()) if on(option_path(path), value)]


# ---------------------------------------------------------------- what a probe from a source should see


def admits(lab: Lab, host: Host, family: int, iface: str, address: str, proto: str, port: int) -> Flow | None:
    """The flow that lets a packet in (from ``address`` on ``iface``), or None when the firewall must drop it."""
    a = ipaddress.ip_address(address)
    for flow, _by in host_flows(HostContext(lab, host)):
        if flow.proto != proto or flow.port != port:
            continue
        for m in matches(lab, host, flow.source):
            if m.family == family and (m.iface is None or m.iface == iface) and (
                    m.net is None or a in ipaddress.ip_network(m.net)):
                return flow
    return None


def lan_client_address(lab: Lab) -> str:
    """A LAN address no lab host and not the gateway uses: where a probe plays "a LAN client" (the highest free)."""
    c = lab.cluster
    taken = {h.ip for h in lab.hosts} | {c.gateway}
    return str(next(a for a in reversed(list(c.lan.hosts())) if a not in taken))


def probe_clients(lab: Lab, host: Host) -> list[tuple[str, str]]:
    """(client, source address) the live checks probe ``host`` from: a LAN client and every other lab host."""
    return [("lan-client", lan_client_address(lab))] + [(f"host:{h.hostname}", str(h.ip))
                                                         for h in lab.hosts if h is not host]


def client_interface(host: Host, client: str) -> str | None:
    """The interface a probe client's packets arrive on at ``host`` (all of them come over the LAN)."""
    return host.interface if client == "lan-client" or client.startswith("host:") else None
