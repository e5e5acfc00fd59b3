"""Checks: one thing that must be true on a running host, as data the vm-tests suite probes.

Roles say what must hold once their host runs (:meth:`homelab.roles.Role.expectations`)
with the small constructors here; :mod:`homelab.expect` gathers them per host.

Every check has a *scope*:

* ``host``: true once the host has booted its configuration, even alone
  (a single VM, a freshly deployed machine);
* ``cluster``: needs the rest of the lab too (the node joined Kubernetes, the
  DNS host reachable over the LAN, something behind the ingress NodePorts).

A check's ``id`` is ``<kind>:<what>``: unique per host and stable across runs.
Two checks with the same id are the same fact; the one with scope ``host`` (the
stronger claim) is kept.
"""

from __future__ import annotations

from typing import Any

import attrs

SCOPES = ("host", "cluster")
KINDS = ("service", "kernel_module", "listening", "firewall_rule", "systemd_property", "dns", "proxy", "hosts_entry",
         "reach", "image")
# reach: from a client of the lab's network (a LAN client, another lab host), proto/port on this host is
# accepted or refused — what the flow table says (homelab/firewall.py)


@attrs.frozen
class Check:
    """One thing that must be true on a host."""

    id: str
    kind: str = attrs.field(validator=attrs.validators.in_(KINDS))
    scope: str = attrs.field(validator=attrs.validators.in_(SCOPES))
    why: str
    spec: dict[str, Any] = attrs.field(factory=dict, hash=False)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "scope": self.scope, "why": self.why, **self.spec}


def check(kind: str, ident: str, scope: str, why: str, **spec: Any) -> Check:
    return Check(f"{kind}:{ident}", kind, scope, why, spec)


def service(unit: str, scope: str, why: str) -> Check:
    """A systemd unit is active."""
    return check("service", unit, scope, why, unit=unit)


def kernel_module(name: str, why: str) -> Check:
    """A kernel module is loaded."""
    return check("kernel_module", name, "host", why, module=name)


def listening(proto: str, port: int, scope: str, why: str, *, loopback: bool = False) -> Check:
    """Something listens on ``proto``/``port``: on an address other hosts can reach (``bind`` "any": the
    wildcard or a non-loopback address), or, with ``loopback``, on 127.0.0.1/::1 only (and never wider)."""
    return check("listening", f"{proto}/{port}", scope, why, proto=proto, port=port,
                 bind="loopback" if loopback else "any")


def systemd_property(unit: str, prop: str, value: str, match: str, why: str) -> Check:
    """``systemctl show -p <prop> <unit>`` ``equals`` or ``contains`` ``value``; ``last``: ``value`` is
    ``--flag=x`` and the last ``--flag=`` word of the property is exactly it (a repeated flag's winner)."""
    return check("systemd_property", f"{unit}:{prop}:{value}", "host", why, unit=unit, property=prop, value=value,
                 match=match)


def dns(name: str, server: str, port: int, scope: str, why: str, *, answer: str | None = None,
        not_answer: str | None = None, client: str | None = None) -> Check:
    """A DNS server answers ``name`` with ``answer`` (or anything but ``not_answer``).  ``client``: the kind of
    client the host asks as, when it is not the LAN's ("tailnet": over its Tailscale address, which a test VM
    without a tailnet does not have)."""
    spec: dict[str, Any] = {"server": server, "port": port, "name": name}
    if client is not None:
        spec["client"] = client
    if answer is not None:
        spec["answer"] = answer
    if not_answer is not None:
        spec["not_answer"] = not_answer
    return check("dns", f"{name}@{server}:{port}", scope, why, **spec)


def proxy(listen: int, nodeport: int, why: str) -> Check:
    """A TCP proxy on ``listen`` passes through to ``127.0.0.1:<nodeport>``."""
    return check("proxy", f"{listen}->{nodeport}", "cluster", why, listen=listen, upstream=f"127.0.0.1:{nodeport}",
                 nodeport=nodeport)


def hosts_entry(name: str, address: str, why: str) -> Check:
    """``getent hosts <name>`` answers ``address`` from the configuration itself (/etc/hosts)."""
    return check("hosts_entry", name, "host", why, name=name, address=address)


def container_image(reference: str, scope: str, why: str, namespace: str = "k8s.io") -> Check:
    """containerd holds the image ``reference`` (as ``ctr -n <namespace> images ls -q`` lists it)."""
    return check("image", reference, scope, why, namespace=namespace, reference=reference)


# ---------------------------------------------------------------- which entries of a file every node shares

WINDOW = 8  # nodes whose entries in a file shared by every node one host's live checks look for


def node_window(lab, host) -> frozenset[str]:
    """The Kubernetes nodes whose entries in the files every node shares (the rules from the nodes, /etc/hosts)
    ``host``'s live checks look for: every other node in a lab of up to :data:`WINDOW` + 1 nodes, else the
    :data:`WINDOW` nodes after it (by address, round the end; a host outside Kubernetes starts at its place
    in the lab).

    The files are the same on every node (nix reads each back once), so the live checks need not list every
    entry on every host: across the lab each entry is looked for on :data:`WINDOW` hosts, and the checks grow
    with the lab, not its square.
    """
    nodes = lab.derived("firewall: nodes by address", lambda: tuple(sorted(lab.kubernetes_nodes, key=lambda h: h.ip)))
    if len(nodes) - host.is_kubernetes_node <= WINDOW:
        return frozenset(h.hostname for h in nodes if h is not host)
    where = lab.derived("firewall: node places", lambda: {h.hostname: i for i, h in enumerate(nodes)})
    if host.hostname in where:
        start = where[host.hostname] + 1
    else:
        start = lab.derived("firewall: host places", lambda: {h.hostname: i for i, h in enumerate(lab.hosts)}
                            )[host.hostname]
    return frozenset(nodes[(start + j) % len(nodes)].hostname for j in range(WINDOW))
