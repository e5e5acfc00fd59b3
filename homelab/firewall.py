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

from .checks import WINDOW, node_window  # noqa: F401 - which shared entries live checks name
from .errors import LabError, Problem
from .nixmodule import Module, Section, section
from .role import Flow, HostContext, Source
from .sources import Match, _ipv6_off, matches, node_matches, option_value, source_interface  # noqa: F401

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
        name = type(role).__name__
        try:
            out += [(f, name) for f in role.flows(ctx)]
        except LabError as e:  # a Flow the role (a lab's own, say) built with a source no one can read
            raise LabError([Problem(ctx.where, f"{name}.flows", f"{p.field}: {p.reason}") for p in e.problems]) \
                from None
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
    net: str | None = None  # the source network it accepts (None: anyone)

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
            out[text] = Rule(text, m.family, flow, by, m.net)
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
    texts = frozenset(r.text for r in rules)
    lab.derived(("firewall: node texts", lan_if, flows), lambda: texts)  # node_texts of this key: known now
    return NodeRules(module, tuple(rules), texts)


def node_texts(ctx: HostContext) -> frozenset[str] | None:
    """``node_rules(ctx).texts``, or None when the host has no flows from the nodes: all a host's own firewall
    section needs of its node rules (which of its rules they hold already, and that there are some).  Made as
    :func:`_node_rules` makes them (the same :func:`rule` of each flow from the nodes and each node), without
    its Rule objects, text and module file, when :func:`node_rules` was not asked for this key in this process:
    each half of a two-process build makes its hosts' entry files, and the shared module files (the node rules'
    among them) were made in another process."""
    flows = tuple((f, by) for f, by in host_flows(ctx) if from_nodes(f.source))
    if not flows:
        return None
    lab, lan_if = ctx.lab, ctx.host.interface
    return lab.derived(("firewall: node texts", lan_if, flows), lambda: frozenset(
        [rule(lab.cluster.firewall, m, f.proto, f.port) for f, _by in flows for m in node_matches(lab, lan_if)]))


def own_rules(ctx: HostContext, nodes: NodeRules | None) -> list[Rule]:
    """The host's rules for its own entry file: all but those from the nodes (and none ``nodes`` already holds)."""
    return _rules(ctx.cluster.firewall, ((f, by, m) for f, by in host_flows(ctx) if not from_nodes(f.source)
                                         for m in matches(ctx.lab, ctx.host, f.source)),
                  nodes.texts if nodes is not None else frozenset())


def host_section(ctx: HostContext) -> Section | None:
    """The host's own firewall rules for its entry file, each group under a comment that says why.

    Most hosts of a large lab have the same rules (the same roles on the same interface): the section is made
    once per :func:`_section_key` (the very same :class:`Section` for each of those hosts), and the hosts that
    key cannot speak for (the control plane, a host some source names) are worked out alone."""
    key = _section_key(ctx)
    if key is None:
        return _own_section(ctx, node_texts(ctx))
    made = ctx.lab.derived("firewall: own sections", dict)  # the lab's: key -> section (one look-up of the key)
    sec = made.get(key, _NONE)
    if sec is _NONE:
        sec = made[key] = _own_section(ctx, node_texts(ctx))
    return sec


_NONE = object()  # not made yet (a section may be None)


def _section_key(ctx: HostContext) -> tuple | None:
    """All that :func:`_own_section` reads of the host, or None when the host is one such a key cannot hold.

    The section is the lab's backend (the key is per lab: :meth:`homelab.model.Lab.derived`), the host's rules
    (:func:`own_rules`) and its node rules (:func:`node_rules`, whose rules it leaves out, and whose presence the
    comment tells).  The node rules are the lab's for the host's LAN interface and its flows from the nodes.  The
    own rules are its other flows, each with who asks for it, each source made concrete
    (:func:`homelab.sources.matches`).  What ``matches`` reads of the host: whether IPv6 is off, its LAN
    interface, whether it is the host a ``host:<name>`` or ``control-plane`` source stands for (then no key:
    such a host is its own case), and what its roles say a role's source word stands for on it (each role's
    ``sources``, read once here as ``matches`` reads them); every other source is the lab's alone (the LAN,
    the world, a network, the nodes, another host's address).  So the key is the LAN interface, IPv6 off, every
    flow with who asks for it (:func:`host_flows`) and what the roles say.  The flows are compared by value, so
    a value that equals another's but is written differently (an ``int`` or ``str`` subclass) is left to the
    slow path."""
    lab, host = ctx.lab, ctx.host
    if host is lab.control_plane:
        return None
    flows = host_flows(ctx)
    named = lab.derived("firewall: named hosts", lambda: frozenset(
        s.host for s in lab.cluster.admins if s.kind == "host"))
    for f, by in flows:
        if type(f.port) is not int or type(f.why) is not str or type(by) is not str:
            return None
        s = f.source
        if s.kind == "host" and s.host == host.hostname:
            return None
    if host.hostname in named:
        return None
    said = []
    try:
        for r in host.roles:
            for k, m in r.sources(ctx):
                if type(m) is not Match or type(k) is not str or type(m.iface) not in _PLAIN or \
                        type(m.net) not in _PLAIN or type(m.family) is not int:
                    return None
                said.append((k, m))
    except Exception:  # a lab's own role that fails here: the slow path asks it only when a flow needs it
        return None
    off = lab.derived(("firewall: ipv6 off", id(host)), lambda: (host, _ipv6_off(host)))[1]  # as matches() keeps it
    return (host.interface, off, flows, tuple(said))


_PLAIN = (str, type(None))


def _own_section(ctx: HostContext, skip: frozenset[str] | None) -> Section | None:
    """The host's own section; ``skip``: the texts of its node rules (None: it has none)."""
    rules = _rules(ctx.cluster.firewall, ((f, by, m) for f, by in host_flows(ctx) if not from_nodes(f.source)
                                          for m in matches(ctx.lab, ctx.host, f.source)),
                   skip if skip is not None else frozenset())
    if not rules:
        return None
    where = " Those from the Kubernetes nodes are in the firewall-from-nodes file it imports." \
        if skip is not None else ""
    return section("Who may reach this host, and why: its rows of the lab's flow table (`homelab policy`)."
                   f"{where} Nothing else gets in.", (_option(ctx.cluster), _text(rules)))


def accept_local_problems(ctx: HostContext) -> list[str]:
    """Why the host's raw options break the node rules' premise (:data:`OWN_ADDRESS`): each option that turns
    ``accept_local`` on (a ``boot.kernel.sysctl`` entry) on a host that has rules from the nodes."""
    from .model import Priority, option_path

    def on(path: tuple[str, ...], value) -> bool:
        if isinstance(value, Priority):
            return on(path, value.value)
        if isinstance(value, dict):
            return any(on(path + (str(k),), v) for k, v in value.items())
        return any(p.replace("/", ".").endswith("accept_local") for p in path) and value not in (0, False, "0", None)

    found = [path for path, value in sorted(ctx.host.options.items()) if on(option_path(path), value)]
    # the options first: most hosts set none, and the node rules would be worked out for nothing
    return found if found and node_rules(ctx) is not None else []


# ---------------------------------------------------------------- what a probe from a source should see


@attrs.frozen
class Matcher:
    """A source made concrete on one host, for asking "is this address in?" in constant time: per (IP version,
    interface or None), anyone, a set of single addresses (the nodes'), and networks."""

    parts: tuple[tuple[int, str | None, bool, frozenset, tuple], ...]

    @classmethod
    def of(cls, ms: Iterable[Match]) -> Matcher:
        groups: dict[tuple[int, str | None], tuple[bool, set, list]] = {}
        for m in ms:
            anyone, addrs, nets = groups.setdefault((m.family, m.iface), (False, set(), []))
            if m.net is None:
                groups[(m.family, m.iface)] = (True, addrs, nets)
                continue
            net = ipaddress.ip_network(m.net)
            if net.num_addresses == 1:
                addrs.add(net.network_address)
            else:
                nets.append(net)
        return cls(tuple((f, i, anyone, frozenset(addrs), tuple(nets))
                         for (f, i), (anyone, addrs, nets) in groups.items()))

    def admits(self, family: int, iface: str | None, address) -> bool:
        for f, i, anyone, addrs, nets in self.parts:
            if f == family and (i is None or i == iface) and (
                    anyone or address in addrs or any(address in n for n in nets)):
                return True
        return False


def source_matcher(lab: Lab, host: Host, source: Source) -> Matcher:
    """:func:`matches` of ``source`` on ``host`` as a :class:`Matcher`; the nodes' (a rule per node) built once
    per LAN interface of the lab, not once per host."""
    if from_nodes(source):
        v6 = _ipv6_off(host)  # the node rules are IPv4: the same either way, but keyed apart to stay exact
        return lab.derived(("firewall: node matcher", host.interface, v6),
                           lambda: Matcher.of(matches(lab, host, source)))
    return Matcher.of(matches(lab, host, source))


def flow_index(lab: Lab, host: Host) -> dict[tuple[str, int], tuple[tuple[Flow, Matcher], ...]]:
    """The host's flows by (protocol, port), each with its source's :class:`Matcher`: once per host of the lab."""
    def build() -> tuple[Host, dict]:
        out: dict[tuple[str, int], list[tuple[Flow, Matcher]]] = {}
        for flow, _by in host_flows(HostContext(lab, host)):
            out.setdefault((flow.proto, flow.port), []).append((flow, source_matcher(lab, host, flow.source)))
        return host, {k: tuple(v) for k, v in out.items()}

    return lab.derived(("firewall: index", id(host)), build)[1]


def admits(lab: Lab, host: Host, family: int, iface: str, address: str, proto: str, port: int) -> Flow | None:
    """The flow that lets a packet in (from ``address`` on ``iface``), or None when the firewall must drop it.

    Answered from the host's :func:`flow_index`: the flows on that port only, each source a set lookup."""
    a = ipaddress.ip_address(address)
    for flow, m in flow_index(lab, host).get((proto, port), ()):
        if m.admits(family, iface, a):
            return flow
    return None


def lan_client_address(lab: Lab) -> str:
    """A LAN address no lab host and not the gateway uses: where a probe plays "a LAN client" (the highest free)."""
    c = lab.cluster
    def find() -> str:
        taken = {h.ip for h in lab.hosts} | {c.gateway}
        n = c.lan.num_addresses
        top, usable = (c.lan.broadcast_address - 1, n - 2) if n > 2 else (c.lan.broadcast_address, n)
        return str(next(top - i for i in range(usable) if top - i not in taken))  # as reversed(lan.hosts())

    return lab.derived("firewall: lan client", find)


@attrs.frozen
class ClientKind:
    """Lab clients on the LAN that no source of the lab's flow table tells apart (every host's flows, the admins):
    the same verdict on every port of every host.  ``members``: (client, address), the LAN client first."""

    key: tuple
    members: tuple[tuple[str, str], ...]
    description: str
    names: frozenset[str] = attrs.field(eq=False)  # the members' client names


def client_kinds(lab: Lab) -> tuple[ClientKind, ...]:
    """The lab's LAN clients (a LAN client that is no lab host, then every lab host) grouped by what any source
    could single out: a host a flow names, being a Kubernetes node, the control plane, each network a flow names
    and the LAN.  Worked out once per lab; a handful of kinds however many hosts there are."""
    return lab.derived("firewall: client kinds", lambda: _client_kinds(lab))


def _sources(lab: Lab) -> list[Source]:
    out = {f.source: None for h in lab.hosts for f, _ in host_flows(HostContext(lab, h))}
    for s in list(out):
        if s.kind == "admins":
            out.update(dict.fromkeys(lab.cluster.admins))
    return list(out)


def _client_kinds(lab: Lab) -> tuple[ClientKind, ...]:
    sources = _sources(lab)
    named = {s.host for s in sources if s.kind == "host"}
    nets = [n for n in dict.fromkeys(ipaddress.ip_network(s.network) for s in sources if s.kind == "network")
            if n.version == 4]
    lan = lab.cluster.lan
    cp = lab.control_plane
    nodes = {h.hostname for h in lab.kubernetes_nodes}
    groups: dict[tuple, list[tuple[str, str]]] = {}
    lan_client = lan_client_address(lab)
    candidates = [("lan-client", None, lan_client)] + [(f"host:{h.hostname}", h, str(h.ip)) for h in lab.hosts]
    for client, h, address in candidates:
        a = ipaddress.ip_address(address)
        key = (h.hostname if h is not None and h.hostname in named else None,
               h is not None and h.hostname in nodes, h is not None and h is cp,
               tuple(a in n for n in nets), a in lan)
        groups.setdefault(key, []).append((client, address))
    out = []
    for key, members in groups.items():
        name, node, is_cp, inside, in_lan = key
        outside = "lab hosts outside Kubernetes"
        who = ("the control plane" if is_cp else "Kubernetes nodes" if node else
               outside if members[0][0] != "lan-client" else
               "the LAN client" if len(members) == 1 else f"the LAN client and {outside}")
        if name is not None:
            who = f"host:{name} ({who})"
        where = [str(n) for n, i in zip(nets, inside) if i] + ([] if in_lan else ["outside the LAN"])
        out.append(ClientKind(key, tuple(members), who + (f", in {', '.join(where)}" if where else ""),
                              frozenset(c for c, _ in members)))
    return tuple(out)


@attrs.frozen
class ProbeClass:
    """Clients a host's firewall cannot tell apart (the same answer on every port of its flow table), probed once
    from ``client``: one or more :class:`ClientKind` s, the host itself left out."""

    client: str
    address: str
    kinds: tuple[ClientKind, ...]
    host: str  # the host probed (not a member)

    def members(self) -> list[tuple[str, str]]:
        return [m for k in self.kinds for m in k.members if m[0] != f"host:{self.host}"]

    @property
    def size(self) -> int:
        """How many clients the probe speaks for."""
        me = f"host:{self.host}"
        return sum(len(k.members) - (me in k.names) for k in self.kinds)

    @property
    def description(self) -> str:
        return "; ".join(k.description for k in self.kinds)


def probe_classes(lab: Lab, host: Host) -> list[ProbeClass]:
    """The classes of LAN client ``host``'s firewall tells apart, each with the client that plays it in a probe.

    Two clients are in one class when every source of the host's flows holds both or neither: the flow table
    gives them the same verdict on every port.  So one probe per class and port proves every verdict of the
    host's flow table for every lab host and LAN client; the probes grow with the host's flows, not the lab.
    """
    sources = list(dict.fromkeys(f.source for f, _ in host_flows(HostContext(lab, host))))
    matchers = [source_matcher(lab, host, s) for s in sources]
    me = f"host:{host.hostname}"
    out: dict[tuple[bool, ...], list] = {}
    for kind in client_kinds(lab):
        rep = next(((c, a) for c, a in kind.members if c != me), None)
        if rep is None:
            continue
        a = ipaddress.ip_address(rep[1])
        sig = tuple(m.admits(4, host.interface, a) for m in matchers)
        if sig in out:
            out[sig][2].append(kind)
        else:
            out[sig] = [rep[0], rep[1], [kind]]
    return [ProbeClass(c, a, tuple(kinds), host.hostname) for c, a, kinds in out.values()]


def client_interface(host: Host, client: str) -> str | None:
    """The interface a probe client's packets arrive on at ``host`` (all of them come over the LAN)."""
    return host.interface if client == "lan-client" or client.startswith("host:") else None
