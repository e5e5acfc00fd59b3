"""The firewall homelab writes, and the rule lines NixOS renders from it: written once, read by compile and expect.

Two things live here:

* the lab-wide trust ranges (``modules/network/firewall.nix``): the pod range,
  the service range and the LAN, computed from ``hosts/cluster.py``;
* the host's flow table (who may reach which port, :class:`homelab.role.Flow`),
  rendered as rules in the host's own entry file.

Both backends: iptables ``networking.firewall.extraCommands`` lines appended to
the ``nixos-fw`` chain, or nftables ``networking.firewall.extraInputRules`` in
the ``input-allow`` chain of table ``inet nixos-fw``.  How NixOS itself renders
``allowedTCPPorts`` and ``trustedInterfaces`` (what ``iptables -S`` or ``nft
list`` then shows) is here too, for the expectations.

Facts from nixpkgs (nixos-26.05): ``services/networking/firewall-iptables.nix``
(``extraCommands`` runs after the generated accept rules, before the final
refuse jump) and ``firewall-nftables.nix`` (``extraInputRules`` at the end of
``input-allow``); docs/firewall-skeleton.md has the chain skeletons.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Iterable

from .nixmodule import Module, Section, section

if TYPE_CHECKING:
    from .model import Cluster, Lab
    from .role import Flow, Source

NFT_LIST = "nft list chain inet nixos-fw input-allow"
NFT_LIST_INPUT = "nft list chain inet nixos-fw input"  # trusted interfaces are accepted here, before input-allow
IPT_LIST = "iptables -w -S nixos-fw"


def range_names(cluster: Cluster) -> dict:
    return {cluster.pod_cidr: "the pod range", cluster.service_cidr: "the service range", cluster.lan: "the LAN"}


def trust_rule(cluster: Cluster, net: ipaddress.IPv4Network) -> str:
    """The rule line that trusts a source range, as written and as listed."""
    if cluster.firewall == "nftables":
        return f"ip saddr {net} accept"
    return f"iptables -A nixos-fw -s {net} -j nixos-fw-accept"


def trust_module(cluster: Cluster) -> Module:
    """``modules/network/firewall.nix``: the firewall on, and the cluster's trusted ranges (one file for the lab)."""
    rules = "".join(trust_rule(cluster, r) + "\n" for r in cluster.trusted_ranges)
    why = ("Trust the pod range, the service range and the LAN (computed from hosts/cluster.py), "
           "nothing wider.")
    if cluster.firewall == "nftables":
        return Module("modules/network/firewall.nix", "Firewall trust ranges (nftables)", (
            section("", ("networking.firewall.enable", True), ("networking.nftables.enable", True)),
            section(why, ("networking.firewall.extraInputRules", rules)),
        ), source="")
    return Module("modules/network/firewall.nix", "Firewall trust ranges (iptables)", (
        section("", ("networking.firewall.enable", True)),
        section(why, ("networking.firewall.extraCommands", rules)),
    ), source="")


# ---------------------------------------------------------------- the flow table


def source_addresses(lab: Lab, source: Source) -> list[str]:
    """The addresses a flow's source stands for (an empty list: nobody, e.g. no host has the role)."""
    c = lab.cluster
    kind = source.kind
    if kind == "host":
        return [str(lab.host(source.host).ip)] if source.host in {h.hostname for h in lab.hosts} else []
    if kind == "nodes":
        return [str(h.ip) for h in lab.kubernetes_nodes]
    if kind == "control-plane":
        return [str(lab.control_plane.ip)] if lab.control_plane else []
    if kind == "pods":
        return [str(c.pod_cidr)]
    if kind == "lan":
        return [str(c.lan)]
    if kind == "world":
        return ["0.0.0.0/0"]
    raise ValueError(f"the firewall cannot write a rule for source {source}")


def flow_rule(backend: str, address: str, flow: Flow) -> str:
    """One accept rule: ``address`` may reach ``flow.port``/``flow.proto``."""
    any_source = address == "0.0.0.0/0"
    if backend == "nftables":
        return ("" if any_source else f"ip saddr {address} ") + f"{flow.proto} dport {flow.port} accept"
    src = "" if any_source else f"-s {address if '/' in address else address + '/32'} "  # as iptables -S lists it
    return f"iptables -A nixos-fw {src}-p {flow.proto} -m {flow.proto} --dport {flow.port} -j nixos-fw-accept"


def flow_rules(lab: Lab, flows: Iterable[Flow]) -> list[tuple[str, Flow]]:
    """(rule line, flow) for every source address of every flow, in order, without repeats."""
    out: list[tuple[str, Flow]] = []
    seen: set[str] = set()
    for flow in flows:
        for address in source_addresses(lab, flow.source):
            rule = flow_rule(lab.cluster.firewall, address, flow)
            if rule not in seen:
                seen.add(rule)
                out.append((rule, flow))
    return out


def flows_section(lab: Lab, flows: list[Flow]) -> Section | None:
    """The host's flow table as firewall rules for its entry file, or None when it has no flows."""
    rules = flow_rules(lab, flows)
    if not rules:
        return None
    text = "".join(rule + "\n" for rule, _ in rules)
    option = "networking.firewall.extraInputRules" if lab.cluster.firewall == "nftables" \
        else "networking.firewall.extraCommands"
    why = "; ".join(dict.fromkeys(f.why for _, f in rules))
    return section(f"Who may reach this host, and why (the lab's flow table): {why}.", (option, text))


# ---------------------------------------------------------------- how NixOS lists what it renders


def listed_port_rule(backend: str, proto: str, port: int) -> tuple[str, str]:
    """(match, rule) of an ``allowed<Proto>Ports`` entry as the backend lists it."""
    if backend == "nftables":
        return "regex", rf"{proto} dport (\{{[^}}]*\b{port}\b[^}}]*\}}|{port}) accept"
    return "line", f"-A nixos-fw -p {proto} -m {proto} --dport {port} -j nixos-fw-accept"


def listed_interface_rule(backend: str, iface: str) -> tuple[str, str]:
    """(match, rule) of a trusted interface as the backend lists it."""
    if backend == "nftables":
        return "regex", rf'iifname (\{{[^}}]*"{iface}"[^}}]*\}}|"{iface}") accept'
    return "line", f"-A nixos-fw -i {iface} -j nixos-fw-accept"


def listed_rule(backend: str, written: str) -> str:
    """A rule homelab wrote, as the backend lists it (``iptables -S`` drops the command name)."""
    return written if backend == "nftables" else written.removeprefix("iptables ")
