"""The role interface: one role, one folder (``homelab/roles/<name>/``), everything about it in one place.

A role is a frozen attrs class that subclasses :class:`Role`.  Its fields are
its settings (validators beside them, :mod:`homelab.fields`); its methods say
what it means for the lab.  homelab's pipeline (validate → compile → render →
verify → write; expect; graph; plan) knows roles only through these methods, so
a role defined in a lab's own folder works exactly like a built-in one.

=====================  =====================================================
method / attribute     what it gives
=====================  =====================================================
``label``              its name in tables and diagrams ("worker")
``tag``                its deployment tag (``@k8s-worker`` in colmena)
``kubernetes_node``    True when the host runs a kubelet because of it
``control_plane``      True for the one Kubernetes control plane
``options``            contract rows: every NixOS option its modules write
``host_fields``        Host fields only it brings to life (set without it: a warning)
``compile(ctx)``       the module files it adds to its host (:class:`Module`)
``host_sections(ctx)`` per-host definitions for the host's own entry file
``ports(ctx)``         what it listens on (:class:`Port`): the one port table
``flows(ctx)``         who may reach it, and why (:class:`Flow`): the lab's flow table
``sources(ctx)``       where a source word it brings arrives on its host:
                       ("tailnet", Match(...)) pairs (:mod:`homelab.sources`)
``check(ctx)``         problems of this role on this host
``check_lab(lab)``     (classmethod) problems of the lab as a whole, once per role type
``expectations(ctx)``  what must be true on the running host (:mod:`homelab.checks`)
``expectations_for``   what must be true on *another* host because of it
``proofs``             what ``homelab test`` runs with real programs on each host
                       with the role (:class:`Proof`; the code beside the role)
``graph(ctx)``         what the diagram shows (:class:`GraphPart`)
``notes(ctx)``         extra lines for the host's box in the diagram
``node_labels(ctx)``   Kubernetes node labels it gives its host's kubelet
=====================  =====================================================

Every method gets a :class:`HostContext`: the lab, the host, and helpers to
name a problem (``self.error(ctx, "port", "...")`` reports
``hosts/<host>: <Role>.port: ...``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Mapping

import attrs

from . import optiontypes as types
from .checks import Check
from .contract import PARTIAL, OptionFact
from .errors import Problem, ProofFailed, report
from .nixmodule import Module, Section, section

if TYPE_CHECKING:
    from .model import Cluster, Host, Lab

__all__ = ["Role", "HostContext", "Module", "Section", "section", "Port", "Flow", "Source", "GraphPart", "Node",
           "Edge", "Check", "OptionFact", "PARTIAL", "Problem", "types", "NODES", "CONTROL_PLANE", "PODS", "LAN",
           "TAILNET", "ADMINS", "WORLD", "Proof", "ProofContext", "ProofFailed"]

PROTOCOLS = ("tcp", "udp")


@attrs.frozen
class Port:
    """A port a role listens on, for the lab's port table.

    ``field`` names the setting that chose the number (``IngressProxy.http_port``,
    or ``api_port`` of the cluster with ``on_cluster``), so a clash is reported
    where the user can change it.  ``loopback`` marks a port bound to 127.0.0.1
    only: it is in the table (two services cannot share it) but nothing outside
    the host can reach it.
    """

    number: int
    proto: str = attrs.field(validator=attrs.validators.in_(PROTOCOLS))
    what: str
    field: str | None = None
    on_cluster: bool = False
    loopback: bool = False


SOURCE_KINDS = ("host", "nodes", "control-plane", "pods", "lan", "tailnet", "admins", "world", "network")
# what a user may write for a source (Cluster.admins, Host.open_ports, a role's settings)
SOURCE_WORDS = ("lan", "tailnet", "admins", "nodes", "pods", "control-plane", "world")
# what a message says a source may be (the one list: every converter of a source or sources uses it)
SOURCE_HELP = ("a source: " + ", ".join(f'"{w}"' for w in SOURCE_WORDS) + ', "host:<name>" or a network such as '
               '"192.168.20.0/24"')
SOURCES_HELP = "a list of sources (" + SOURCE_HELP.removeprefix("a source: ") + ")"
# the kinds an admin source may be, besides a network (Cluster.admins)
ADMIN_SOURCES = ("lan", "tailnet", "host")


@attrs.frozen(repr=False)
class Source:
    """Who a flow lets in.

    ``host``: one lab host, by its LAN address; ``nodes``: every Kubernetes node (LAN addresses);
    ``control-plane``: the control plane; ``pods``: the pod range, on the pods' own interfaces (the
    CNI bridge and flannel's VXLAN device); ``lan``: LAN clients, on the LAN interface;
    ``tailnet``: Tailscale peers, on the Tailscale interface; ``admins``: the cluster's admins
    (``Cluster.admins``); ``world``: anyone; ``network``: an explicit IPv4/IPv6 network.
    """

    kind: str = attrs.field(validator=attrs.validators.in_(SOURCE_KINDS))
    host: str | None = None  # the hostname, for kind "host"
    network: str | None = None  # the network, for kind "network"

    @classmethod
    def of_host(cls, hostname: str) -> Source:
        return cls("host", hostname)

    @classmethod
    def parse(cls, spec) -> Source:
        """'lan', 'tailnet', 'admins', 'world', 'nodes', 'pods', 'control-plane', 'host:<name>', or a network
        such as '192.168.20.0/24' / '2001:db8::/64' (a bare address means just that address)."""
        import ipaddress

        if isinstance(spec, Source):
            return spec
        if not isinstance(spec, str):
            raise TypeError(spec)
        if spec in SOURCE_WORDS:
            return cls(spec)
        if spec.startswith("host:") and spec[5:]:
            return cls("host", spec[5:])
        return cls("network", network=str(ipaddress.ip_network(spec, strict=True)))

    def __str__(self) -> str:
        if self.kind == "host":
            return f"host:{self.host}"
        if self.kind == "network":
            return str(self.network)
        return self.kind

    def __repr__(self) -> str:  # what a user writes: repr(Cluster(...)) reads back as the same Cluster
        return repr(str(self))


LAN, TAILNET, ADMINS, NODES, PODS, CONTROL_PLANE, WORLD = (Source(k) for k in SOURCE_WORDS)


def _flow_source(value: Any, self_: Any, field: attrs.Attribute) -> Any:
    """A Flow's source, read as every source in the lab is read (:meth:`Source.parse`); a word no one can read
    is reported like any field (``Flow.source: 'lann' is not a source: ...``)."""
    try:
        return Source.parse(value)
    except (TypeError, ValueError):
        name = type(value).__name__
        why = (f"{value!r} is not {SOURCE_HELP}" if isinstance(value, str) else
               f"{value!r} is {'an' if name[:1].lower() in 'aeiou' else 'a'} {name}, not {SOURCE_HELP}")
        report(f"{type(self_).__name__}.{field.name}", why)
        return value  # reached only while collecting


def _flow_port(value: Any) -> None:
    """A Flow's port is a port number: a bool, 0 or a string would be written into a rule (``--dport True``).
    Worded as homelab.fields.port words it (that module sits above this one)."""
    if isinstance(value, bool) or not isinstance(value, int):
        name = type(value).__name__
        report("Flow.port", f"{value!r} is {'an' if name[:1].lower() in 'aeiou' else 'a'} {name}, not a port number")
    elif not 1 <= value <= 65535:
        report("Flow.port", f"{value!r} is not a TCP/UDP port (1-65535)")


@attrs.frozen
class Flow:
    """One row of the lab's flow table: ``source`` may reach this host on ``port``/``proto``, because ``why``.

    ``source`` takes a :class:`Source` or what a user writes for one ("lan", "host:yomogi",
    "192.168.20.0/24"), read by :meth:`Source.parse` like every other source in the lab.
    """

    port: int = attrs.field(validator=lambda self_, field, value: _flow_port(value))
    proto: str = attrs.field(validator=attrs.validators.in_(PROTOCOLS))
    source: Source = attrs.field(converter=attrs.Converter(lambda v, self_, field: _flow_source(v, self_, field),
                                                            takes_self=True, takes_field=True))
    why: str


@attrs.frozen
class Node:
    """A box in the diagram that is not a host: ``place`` is outside, tailnet, lan or cluster."""

    id: str
    lines: tuple[str, ...]
    cls: str = "ext"
    place: str = "outside"
    shape: str = "round"  # round ( ), box [ ], subroutine [[ ]]


@attrs.frozen
class Edge:
    """An arrow: ``src``/``dst`` are hostnames or node ids; ``style`` is mermaid's ``-->``, ``-.->`` or ``---``."""

    src: str
    dst: str
    lines: tuple[str, ...]
    style: str = "-->"


@attrs.frozen
class GraphPart:
    """What a role adds to the diagram, and to ``graph --json`` under ``paths[key]``."""

    nodes: tuple[Node, ...] = ()
    edges: tuple[Edge, ...] = ()
    key: str | None = None
    path: Any = None


@attrs.frozen
class HostContext:
    """What a role method sees: the whole lab and the host the role is on."""

    lab: Lab
    host: Host

    @property
    def cluster(self) -> Cluster:
        return self.lab.cluster

    @property
    def where(self) -> str:
        """``hosts/<folder>``: where problems of this host are reported."""
        return self.lab.where(self.host)

    def error(self, field: str, reason: str) -> Problem:
        """A problem with one of the host's own fields (``roles``, ``address``...)."""
        return Problem(self.where, field, reason)

    def warn(self, field: str, reason: str) -> Problem:
        return Problem(self.where, field, reason, "warning")


@attrs.frozen
class ProofContext:
    """What a role's proof gets: the lab, the host, its option values as nix read them back, a fresh folder."""

    lab: Lab
    host: Host
    options: Mapping[str, Any] = attrs.field(repr=False)  # option path -> value, merged as NixOS merges them
    work: Path

    def option(self, path: str) -> Any:
        """The value nix read back for ``path``; ProofFailed when it still carries a module priority."""
        value = self.options[path]
        if isinstance(value, dict) and value.get("_type") == "override":
            raise ProofFailed(f"unexpected priority: {value!r}")
        return value


@attrs.frozen
class Proof:
    """A proof a role offers ``homelab test``: its generated config run by a real program.

    ``run(role, ctx)`` returns a one-line summary or raises :class:`ProofFailed`;
    ``unavailable()`` says why this machine cannot run it (None: it can).  Each host
    with the role is one part of the test, named ``"<name> <host>"``.
    """

    name: str
    run: Callable[[Any, ProofContext], str]
    unavailable: Callable[[], str | None] = lambda: None


def _kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


class Role:
    """Base of every role; a host's roles say what it does in the lab.  Subclass with ``@attrs.frozen``."""

    label: ClassVar[str] = "role"
    tag: ClassVar[str | None] = None
    kubernetes_node: ClassVar[bool] = False
    control_plane: ClassVar[bool] = False
    options: ClassVar[tuple[OptionFact, ...]] = ()
    proofs: ClassVar[tuple[Proof, ...]] = ()
    # Host fields only this role brings to life, with what they are: (("tailscale_address", "that address"),)
    # (a host that sets one without the role gets a warning)
    host_fields: ClassVar[tuple[tuple[str, str], ...]] = ()
    # Ports a nixpkgs module opens when an option the role writes says so (the firewall proofs allow for them):
    # ((switch option, proto, port option, the port option's default), ...)
    module_ports: ClassVar[tuple[tuple[str, str, str, int], ...]] = ()
    # Why every lab needs a host with this role (None: it does not): "one host must run the ..."
    lab_needs: ClassVar[str | None] = None

    @classmethod
    def role_tag(cls) -> str:
        """The deployment tag (``tag``, or the class name in kebab case: ``NodeExporter`` -> ``node-exporter``)."""
        return cls.tag or _kebab(cls.__name__)

    # -- what it writes
    def compile(self, ctx: HostContext) -> Iterable[Module]:
        return ()

    def host_sections(self, ctx: HostContext) -> Iterable[Section]:
        return ()

    # -- what it needs
    def ports(self, ctx: HostContext) -> Iterable[Port]:
        return ()

    def flows(self, ctx: HostContext) -> Iterable[Flow]:
        return ()

    def sources(self, ctx: HostContext) -> Iterable[tuple[str, Any]]:
        """(source word, :class:`homelab.sources.Match`) pairs: where that source arrives on this host because of
        this role (the Tailscale role: the tailnet on its interface; a Kubernetes node: the pods)."""
        return ()

    # -- what it refuses
    def check(self, ctx: HostContext) -> Iterable[Problem]:
        return ()

    @classmethod
    def check_lab(cls, lab: Lab) -> Iterable[Problem]:
        return ()

    # -- what must hold, and what it looks like
    def expectations(self, ctx: HostContext) -> Iterable[Check]:
        return ()

    def expectations_for(self, ctx: HostContext, other: HostContext) -> Iterable[Check]:
        return ()

    def graph(self, ctx: HostContext) -> GraphPart | None:
        return None

    def notes(self, ctx: HostContext) -> Iterable[str]:
        return ()

    def node_labels(self, ctx: HostContext) -> Mapping[str, str]:
        """Kubernetes node labels this role gives its host (its kubelet registers them, ``homelab.labels``)."""
        return {}

    # -- helpers for role authors
    def error(self, ctx: HostContext, field: str, reason: str) -> Problem:
        """A problem with one of this role's fields: ``hosts/<h>: <Role>.<field>: <reason>``."""
        return Problem(ctx.where, f"{type(self).__name__}.{field}", reason)

    def warn(self, ctx: HostContext, field: str, reason: str) -> Problem:
        return Problem(ctx.where, f"{type(self).__name__}.{field}", reason, "warning")
