"""Lab-wide rules: what no single field can know.  Every problem at once, with host and field.

Field validators (:mod:`homelab.fields`, beside the fields) check one value;
this module checks how values fit together: addresses inside the LAN and
unique, ranges that do not overlap, the lab's one port table (no two things
on a host listen on the same port), no secrets where generated files would
carry them into the world-readable Nix store, and raw ``options`` that do not
fight what homelab generates.  What a role needs of the lab (one control plane
every node can reach, a DNS zone that points at an ingress host...) is the
role's own rule, in its module (``Role.check`` and ``Role.check_lab``); this
module runs them.  Each problem names where (``hosts/<name>`` or
``cluster``), the field, and the reason; warnings are risky choices that
still build.

Facts from nixpkgs (nixos-26.05; see docs/nixpkgs-facts.md) relied on here:

* ``nixos/modules/services/cluster/kubernetes/addons/dns.nix``: the DNS addon's
  ``clusterIp`` defaults to the first three octets of
  ``apiserver.serviceClusterIpRange`` followed by ``.254``.
* ``nixos/modules/config/networking.nix``: ``networking.hosts`` maps
  ``127.0.0.2`` to the host's own ``hostName``, and ``networking.hostFiles``
  puts those entries before ``networking.extraHosts`` (where homelab puts the
  API name) in ``/etc/hosts``; ``host.conf`` has ``multi on``.
* kube-apiserver refuses a ``--service-cluster-ip-range`` wider than /12; the
  controller manager gives each node a /24 of the pod range
  (``--node-cidr-mask-size`` default 24).
"""

from __future__ import annotations

import ipaddress
import weakref
from typing import Any, Callable, Iterator

import attrs

from . import firewall, forked
from .errors import LabError, Problem
from .component import problems as component_problems
from .hardware import arch_mismatches
from .labels import label_problems
from .model import PLACEHOLDER_KEY, TAILSCALE_RANGE, Cluster, Lab, Pkg, PkgCall, Priority
from .role import ADMIN_SOURCES, HostContext, Port, Source
from .secrets import option_problems, redact, secret_kind
from .model import option_path as model_option_path

NODE_POD_PREFIX = 24  # kube-controller-manager --node-cidr-mask-size (IPv4 default)
MAX_SERVICE_HOST_BITS = 20  # kube-apiserver: the service range must be /12 or narrower


# ---------------------------------------------------------------- option values


def _text_problem(s: str) -> str | None:
    """Why ``s`` cannot be written into a generated file (UTF-8 text read by nix), or None."""
    if "\x00" in s:
        return "contains a NUL character, which Nix strings cannot hold"
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"contains {s[e.start]!r}, a lone surrogate that cannot be written as UTF-8"
    return None


# values the emitter writes as Nix expressions
_NIX_EXPRS = (Pkg, PkgCall)


def _option_value_problems(value: Any, top: bool = True) -> str | None:
    if isinstance(value, Priority):
        if not top:
            return "lib.mkForce/mkDefault (force()/default()) can only wrap a whole option value"
        return _option_value_problems(value.value, top=False)
    if isinstance(value, PkgCall):
        return _option_value_problems(value.args, top=False)  # the arguments are written as Nix values too
    if isinstance(value, bool) or value is None or isinstance(value, _NIX_EXPRS):
        return None
    if isinstance(value, int):
        return None if -(2**63) <= value < 2**63 else f"{value} does not fit in a Nix integer"
    if isinstance(value, str):
        return _text_problem(value)
    if isinstance(value, (list, tuple)):
        for v in value:
            why = _option_value_problems(v, top=False)
            if why:
                return why
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                return f"attribute name {k!r} is not a string"
            if _text_problem(k):
                return f"attribute name {k!r} {_text_problem(k)}"
            if k == "_type":  # NixOS reads a set with _type as mkIf/mkOverride/...: never plain data
                return ("attribute name '_type' marks the module system's own values (mkIf, mkOverride...); use "
                        "force()/default() for priorities, and another name for data")
            why = _option_value_problems(v, top=False)
            if why:
                return why
        return None
    return f"{type(value).__name__} values cannot be written as Nix (use str, int, bool, None, list, dict, Pkg)"


# ---------------------------------------------------------------- the rules


@attrs.frozen
class ClusterFacts:
    """What the cluster rules look at: hosts/cluster.py, and what the hosts add when they are known."""

    cluster: Cluster
    nodes: int | None = None  # how many Kubernetes nodes, when known
    dns_addon: bool = False  # the control plane runs the DNS addon


def _cluster(field: str, reason: str, severity: str = "error") -> Problem:
    return Problem("cluster", field, reason, severity)


def gateway_outside_lan(f: ClusterFacts) -> Iterator[Problem]:
    c = f.cluster
    if c.gateway not in c.lan:
        yield _cluster("gateway", f"{c.gateway} is outside the LAN {c.lan}")
    elif c.gateway in (c.lan.network_address, c.lan.broadcast_address):
        yield _cluster("gateway", f"{c.gateway} is the LAN's network or broadcast address")


def overlapping_ranges(f: ClusterFacts) -> Iterator[Problem]:
    c = f.cluster
    ranges = [("pod_cidr", c.pod_cidr), ("service_cidr", c.service_cidr), ("lan", c.lan),
              ("Tailscale's range", TAILSCALE_RANGE)]
    for i, (na, a) in enumerate(ranges):
        for nb, b in ranges[i + 1:]:
            if a.overlaps(b):
                yield _cluster(na, f"{a} overlaps {nb} {b}")


def pod_range_of_the_wrong_size(f: ClusterFacts) -> Iterator[Problem]:
    c = f.cluster
    if c.pod_cidr.prefixlen > NODE_POD_PREFIX:
        yield _cluster("pod_cidr", f"{c.pod_cidr} is smaller than the /{NODE_POD_PREFIX} the controller manager "
                       "gives each node; use a /16 or so")
    elif f.nodes is not None and 2 ** (NODE_POD_PREFIX - c.pod_cidr.prefixlen) < f.nodes:
        room = 2 ** (NODE_POD_PREFIX - c.pod_cidr.prefixlen)
        yield _cluster("pod_cidr", f"{c.pod_cidr} has room for {room} node subnet{'s' if room != 1 else ''} "
                       f"(/{NODE_POD_PREFIX} each) and the lab has {f.nodes} Kubernetes nodes")
    elif c.pod_cidr.prefixlen < 16:
        yield _cluster("pod_cidr", f"{c.pod_cidr} is trusted by every host's firewall and is broader than the "
                       "lab needs (a /16 has room for 256 nodes)", "warning")


def service_range_too_large(f: ClusterFacts) -> Iterator[Problem]:
    c = f.cluster
    if 32 - c.service_cidr.prefixlen > MAX_SERVICE_HOST_BITS:
        yield _cluster("service_cidr", f"{c.service_cidr} is too large; kube-apiserver accepts /12 or narrower")


def dns_addon_address_outside_service_range(f: ClusterFacts) -> Iterator[Problem]:
    c = f.cluster
    if f.dns_addon:
        dns_ip = ipaddress.IPv4Address(".".join(str(c.service_cidr.network_address).split(".")[:3]) + ".254")
        if dns_ip not in c.service_cidr:
            yield _cluster("service_cidr", f"the DNS addon's address {dns_ip} (nixpkgs takes the range's first "
                           f"three octets and .254) lies outside {c.service_cidr}; use a /24 or wider")


def no_nameserver(f: ClusterFacts) -> Iterator[Problem]:
    if not f.cluster.nameservers:
        # every host gets a static address with networking.useDHCP = false, so nothing else gives it a resolver
        yield _cluster("nameservers", "is empty: hosts get static addresses with DHCP off, so they would have no "
                       "DNS server at all (no package downloads, no image pulls); list at least one, e.g. the router")


def api_name_on_loopback(f: ClusterFacts) -> Iterator[Problem]:
    name = f.cluster.api_name
    if name == "localhost" or name.endswith(".localhost") or name == "localhost.localdomain":
        # /etc/hosts maps localhost to 127.0.0.1 before homelab's extraHosts line (RFC 6761 reserves *.localhost)
        yield _cluster("api_name", f"{name} resolves to the loopback address on every host, so the workers "
                       "would talk to themselves instead of the control plane; name the API like api.kube")


def nameserver_inside_cluster_ranges(f: ClusterFacts) -> Iterator[Problem]:
    c = f.cluster
    for i, ns in enumerate(c.nameservers):
        for name, net in (("pod_cidr", c.pod_cidr), ("service_cidr", c.service_cidr)):
            if ns in net:
                yield _cluster(f"nameservers[{i}]", f"{ns} lies in the {name} {net}, which hosts cannot use "
                               f"for their own name lookups{_SERVICE_NAMESERVER if name == 'service_cidr' else ''}")


# a Service address (the DNS addon's too) answers only through kube-proxy's rules on a node: until kube-proxy
# runs, and always on a host outside Kubernetes, the host would have no DNS at all (no nixos-rebuild downloads, no
# image pulls for the kubelet that would start kube-proxy)
_SERVICE_NAMESERVER = (" (a Service address answers only once kube-proxy runs on a node, and never on a host outside "
                       "Kubernetes: until then no name resolves, not even to fetch what starts kube-proxy); list the "
                       "router or another resolver on the LAN")


def repeated_nameserver(f: ClusterFacts) -> Iterator[Problem]:
    if len(set(f.cluster.nameservers)) != len(f.cluster.nameservers):
        yield _cluster("nameservers", "lists the same address twice")


def admins_too_wide(f: ClusterFacts) -> Iterator[Problem]:
    for i, src in enumerate(f.cluster.admins):
        if src.kind == "world":  # a warning: a lab behind a router's NAT may mean it
            yield _cluster(f"admins[{i}]", "\"world\" lets anyone on the internet try SSH and the API server; "
                           "name your networks instead", "warning")
        elif src.kind == "network":
            net = ipaddress.ip_network(src.network)
            if not net.is_private:
                yield _cluster(f"admins[{i}]", f"{net} is not a private range: hosts on the internet could try "
                               "SSH and the API server", "warning")
        elif src.kind not in ADMIN_SOURCES:
            yield _cluster(f"admins[{i}]", f"{src} cannot be an admin source (say \"lan\", \"tailnet\", "
                           "\"host:<name>\" or a network)")


def no_usable_admin_key(f: ClusterFacts) -> Iterator[Problem]:
    keys = f.cluster.admin_keys
    if not keys:
        yield _cluster("admin_keys", "is empty: password logins are off, so nobody can log in over SSH (homelab "
                       "deploy needs it); add your public key", "warning")
    elif PLACEHOLDER_KEY in keys:
        yield _cluster("admin_keys", "holds homelab's placeholder key, which nobody can log in with; put your "
                       "own public key there", "warning")


def easy_certs_in_production(f: ClusterFacts) -> Iterator[Problem]:
    if f.cluster.easy_certs and f.cluster.production:
        yield _cluster("easy_certs", "easyCerts is not meant for a production cluster (nixpkgs says so, and "
                       "so does the seed article)", "warning")


# The rules of hosts/cluster.py on its own, in the order their problems are reported.
CLUSTER_RULES = (gateway_outside_lan, overlapping_ranges, pod_range_of_the_wrong_size, service_range_too_large,
                 dns_addon_address_outside_service_range, no_nameserver, api_name_on_loopback,
                 nameserver_inside_cluster_ranges, repeated_nameserver, admins_too_wide, no_usable_admin_key,
                 easy_certs_in_production)


def validate_cluster(c: Cluster, nodes: int | None = None, dns_addon: bool = False) -> list[Problem]:
    """Problems of hosts/cluster.py on its own (``nodes``: how many Kubernetes nodes, when known).

    The loader runs this even when some host.py fails, so a broken host file does
    not hide the cluster's own problems.
    """
    facts = ClusterFacts(c, nodes, dns_addon)
    return [p for rule in CLUSTER_RULES for p in rule(facts)]


# Addresses in Tailscale's range that it never gives a node (tailscale.com/docs/reference/reserved-ip-addresses;
# the ChromeOS range is tailscale's util/linuxfw chromeOSVMRange, never allocated).
TAILSCALE_RESERVED = (
    (ipaddress.IPv4Network("100.100.100.100/32"), "is Tailscale's own service address (Quad100: MagicDNS and the "
     "local API answer there on every node); no node can have it"),
    (ipaddress.IPv4Network("100.100.100.0/24"), "lies in 100.100.100.0/24, which Tailscale reserves for its own "
     "services"),
    (ipaddress.IPv4Network("100.100.0.0/24"), "lies in 100.100.0.0/24, which Tailscale reserves"),
    (ipaddress.IPv4Network("100.115.92.0/23"), "lies in 100.115.92.0/23, which Tailscale never assigns (ChromeOS "
     "uses it for its VMs)"),
)


def tailscale_reserved(addr: ipaddress.IPv4Address) -> str | None:
    """Why a Tailscale address in the CGNAT range cannot be a node's, or None."""
    if addr in (TAILSCALE_RANGE.network_address, TAILSCALE_RANGE.broadcast_address):
        return f"is the network or broadcast address of {TAILSCALE_RANGE}"
    return next((why for net, why in TAILSCALE_RESERVED if addr in net), None)


def port_table(ctx: HostContext) -> list[tuple[Port, str]]:
    """Every port the host's roles listen on, with the role that asked for it (the lab's one port table)."""
    return [(p, type(role).__name__) for role in ctx.host.roles for p in role.ports(ctx)]


def port_clashes(ctx: HostContext) -> list[Problem]:
    """Two things on one host that listen on the same port: reported at the setting that chose the number."""
    out: list[Problem] = []
    taken: dict[tuple[int, str], Port] = {}
    for p, _role in port_table(ctx):
        key = (p.number, p.proto)
        first = taken.setdefault(key, p)
        if first is p or first.what == p.what:
            continue
        chosen, other = (p, first) if p.field or not first.field else (first, p)
        if chosen.on_cluster:
            out.append(Problem("cluster", chosen.field, f"{p.number} is taken on {ctx.host.hostname} by "
                               f"{other.what} ({ctx.where}); workers could not reach {chosen.what}"))
        else:
            proto = "" if p.proto == "tcp" else f"/{p.proto}"
            out.append(ctx.error(chosen.field or "roles", f"{p.number}{proto} is taken on this host by {other.what}"))
    return out


def _first(lab: Lab, what: str, key) -> dict[Any, Any]:
    """The first host of the lab (in order) for each value of ``key(host)`` (None: not counted)."""
    def compute() -> dict[Any, Any]:
        first: dict[Any, Any] = {}
        for h in lab.hosts:
            k = key(h)
            if k is not None:
                first.setdefault(k, h)
        return first
    return lab.derived(("validate: first", what), compute)


def repeated_hostname(ctx: HostContext) -> Iterator[Problem]:
    h = ctx.host
    first = _first(ctx.lab, "hostname", lambda x: x.hostname)[h.hostname]
    if first is not h:
        yield ctx.error("hostname", f"{h.hostname!r} is used by {ctx.lab.where(first)} too")


def repeated_lan_address(ctx: HostContext) -> Iterator[Problem]:
    h = ctx.host
    first = _first(ctx.lab, "ip", lambda x: x.ip)[h.ip]
    if first is not h:
        yield ctx.error("address", f"{h.ip} is used by {ctx.lab.where(first)} too")


def address_outside_lan(ctx: HostContext) -> Iterator[Problem]:
    h, c = ctx.host, ctx.cluster
    if h.ip not in c.lan:
        yield ctx.error("address", f"{h.ip} is outside the LAN {c.lan}")
    elif h.ip in (c.lan.network_address, c.lan.broadcast_address):
        yield ctx.error("address", f"{h.ip} is the LAN's network or broadcast address")
    elif h.ip == c.gateway:
        yield ctx.error("address", f"{h.ip} is the LAN's gateway")
    if isinstance(h.address, ipaddress.IPv4Interface) and h.address.network.prefixlen != c.lan.prefixlen:
        yield ctx.error("address", f"prefix /{h.address.network.prefixlen} does not match the LAN {c.lan}")


def tailscale_address_unusable(ctx: HostContext) -> Iterator[Problem]:
    addr = ctx.host.tailscale_address
    if addr is None:
        return
    if addr not in TAILSCALE_RANGE:
        yield ctx.error("tailscale_address", f"{addr} is outside Tailscale's range {TAILSCALE_RANGE}")
    else:
        why = tailscale_reserved(addr)
        if why:
            yield ctx.error("tailscale_address", f"{addr} {why}")
    first = _first(ctx.lab, "tailscale_address", lambda x: x.tailscale_address)[addr]
    if first is not ctx.host:
        yield ctx.error("tailscale_address", f"{addr} is used by {ctx.lab.where(first)} too")


def field_without_its_role(ctx: HostContext) -> Iterator[Problem]:
    """A host field only a role brings to life (``Role.host_fields``), set on a host without that role."""
    host = ctx.host
    kinds = None
    for role_type, field, what in _host_fields(ctx.lab):
        if getattr(host, field) is not None:
            kinds = {type(r) for r in host.roles} if kinds is None else kinds
            if role_type not in kinds:
                yield ctx.warn(field, f"is set but the host has no {role_type.__name__}() role, so nothing brings "
                               f"{what} up")


def _host_fields(lab: Lab) -> tuple[tuple[type, str, str], ...]:
    """Every (role type, host field, what it brings up) of ``Role.host_fields``, built-in roles first: once per
    lab, not once per host."""
    from .roles import BUILTIN

    return lab.derived("validate: host fields", lambda: tuple(
        (role_type, field, what) for role_type in dict.fromkeys((*BUILTIN, *lab.role_types))
        for field, what in role_type.host_fields))


def repeated_role(ctx: HostContext) -> Iterator[Problem]:
    kinds: dict[type, int] = {}
    for r in ctx.host.roles:
        kinds[type(r)] = kinds.get(type(r), 0) + 1
    for k, n in kinds.items():
        if n > 1:
            yield ctx.error("roles", f"{k.__name__} is given {n} times")


def boot_problems(ctx: HostContext) -> Iterator[Problem]:
    for field, reason, *severity in ctx.host.boot.problems(ctx.host):
        yield Problem(ctx.where, field, reason, *severity)


def build_host_not_in_lab(ctx: HostContext) -> Iterator[Problem]:
    h = ctx.host
    # the lab's host names worked out once per lab, not once per host that names a build host (N x N)
    if h.build_host not in (None, "target") and h.build_host not in _first(ctx.lab, "hostname", lambda x: x.hostname):
        yield ctx.error("build_on", f"{h.build_on!r} is not a host of this lab (say \"local\", \"target\" or a "
                        "lab host's name)")


def node_label_problems(ctx: HostContext) -> Iterator[Problem]:
    """The host's Kubernetes node labels (homelab.labels)."""
    yield from label_problems(ctx.lab, ctx.host)


def role_problems(ctx: HostContext) -> Iterator[Problem]:
    for role in ctx.host.roles:
        yield from role.check(ctx)


def option_that_cannot_be_written(ctx: HostContext) -> Iterator[Problem]:
    """A raw option whose path or value cannot be written as Nix, or that would leak a secret."""
    for path, value in ctx.host.options.items():
        field = f"options[{path!r}]"
        why = _text_problem(path) if isinstance(path, str) else None
        if why:
            yield ctx.error(field, f"the option path {why}")
            continue
        why = _option_value_problems(value)
        if why:
            yield ctx.error(field, why)
        else:
            for reason in option_problems(model_option_path(path), value):
                yield ctx.error(field, reason)


def unreadable_flow(ctx: HostContext) -> Iterator[Problem]:
    """Every role's flows read once here, so a bad one (a source no one can read) is a problem like any."""
    try:
        firewall.host_flows(ctx)
    except LabError as e:
        yield from e.problems


def _flows_readable(ctx: HostContext) -> bool:
    try:
        firewall.host_flows(ctx)
        return True
    except LabError:
        return False


def world_open_ports(ctx: HostContext) -> list[Problem]:
    """A warning for every port the host opens to the world itself (``open_ports`` with ``source="world"``),
    naming what listens there, from the host's port table (or sshd, on its port)."""
    from .access import SSH_PORT

    if not any(isinstance(p.source, Source) and p.source.kind == "world" for p in ctx.host.open_ports):
        return []  # most hosts: nothing open to the world, no port table to build
    listening: dict[tuple[int, str], list[str]] = {(SSH_PORT, "tcp"): ["sshd (homelab)"]}
    for p, role in port_table(ctx):
        where = " on 127.0.0.1 only" if p.loopback else ""
        listening.setdefault((p.number, p.proto), []).append(f"{p.what} ({role}{where})")
    out = []
    for i, p in enumerate(ctx.host.open_ports):
        if not isinstance(p.source, Source) or p.source.kind != "world":
            continue
        what = listening.get((p.port, p.proto))
        there = (f"{' and '.join(dict.fromkeys(what))} listens there" if what
                 else f"what listens there ({p.reason}) is not homelab's")
        out.append(ctx.warn(f"open_ports[{i}]", f"{p.port}/{p.proto} is open to the world: {there}, and anyone on "
                            "the internet can now reach it (name a network or \"lan\" unless you mean to publish "
                            "it)"))
    return out


def architecture_mismatch(ctx: HostContext) -> Iterator[Problem]:
    for field, reason in arch_mismatches(ctx.host):
        yield ctx.warn(field, reason)


def accept_local_on(ctx: HostContext) -> Iterator[Problem]:
    if not _flows_readable(ctx):
        return
    for path in firewall.accept_local_problems(ctx):
        yield ctx.error(f"options[{path!r}]", "turns accept_local on: a packet from outside carrying this host's "
                        "own address would then reach its firewall, whose rules from the Kubernetes nodes accept "
                        "every node's address, this host's own too (one file serves all the nodes); leave "
                        "accept_local off")


def secret_in_kernel_params(ctx: HostContext) -> Iterator[Problem]:
    for i, p in enumerate(ctx.host.kernel_params):
        kind = secret_kind(p)
        if kind:
            yield ctx.error(f"kernel_params[{i}]", f"{redact(p)} looks like {kind}; the kernel command line is "
                            "readable by every user and lands in the Nix store")


def option_inside_another(ctx: HostContext) -> Iterator[Problem]:
    paths = sorted(ctx.host.options)
    for a, b in zip(paths, paths[1:]):
        if b.startswith(a + "."):
            yield ctx.error(f"options[{b!r}]", f"{a!r} is set too; set one of them (put {b[len(a) + 1:]!r} inside "
                            f"the value of {a!r})")


# The rules of each host, in the order their problems are reported.
HOST_RULES = (repeated_hostname, repeated_lan_address, address_outside_lan, tailscale_address_unusable,
              field_without_its_role, repeated_role, boot_problems, build_host_not_in_lab, port_clashes,
              node_label_problems, role_problems, option_that_cannot_be_written, unreadable_flow, world_open_ports,
              architecture_mismatch, accept_local_on, secret_in_kernel_params,
              option_inside_another)


def needed_role_missing(lab: Lab) -> Iterator[Problem]:
    """A role every lab needs (``Role.lab_needs``: the control plane) that no host has."""
    from .roles import BUILTIN

    for role_type in dict.fromkeys((*BUILTIN, *lab.role_types)):
        if role_type.lab_needs and not lab.with_role(role_type):
            yield Problem("cluster", "roles", f"no host has the {role_type.__name__} role; {role_type.lab_needs}")


def role_lab_problems(lab: Lab) -> Iterator[Problem]:
    """Each role type's lab-wide rules (``Role.check_lab``); a control-plane role's only once there is one."""
    has_cp = any(h.is_control_plane for h in lab.hosts)
    for role_type in lab.role_types:
        if role_type.control_plane and not has_cp:
            continue
        yield from role_type.check_lab(lab)


def cluster_component_problems(lab: Lab) -> Iterator[Problem]:
    """The cluster layer's components (homelab.component)."""
    yield from component_problems(lab)


def lan_without_a_free_address(lab: Lab) -> Iterator[Problem]:
    """A LAN the gateway and the hosts fill: the lab's checks and the flake's VM tests play "a LAN client" from a
    free LAN address (``lanClient`` in hosts/lab.nix, homelab.firewall.lan_client_address)."""
    c = lab.cluster
    n = c.lan.num_addresses
    ends = {c.lan.network_address, c.lan.broadcast_address} if n > 2 else set()
    taken = {a for a in {h.ip for h in lab.hosts} | {c.gateway} if a in c.lan and a not in ends}
    if len(taken) >= n - len(ends):
        yield _cluster("lan", f"{c.lan} has no free address once the gateway and the hosts take theirs; the lab's "
                              "checks and the flake's VM tests play a LAN client from one: use a larger LAN")


# The rules of the lab as a whole, after every host's.
LAB_RULES = (needed_role_missing, role_lab_problems, cluster_component_problems, lan_without_a_free_address)


def validate(lab: Lab) -> list[Problem]:
    """Problems (errors and warnings) of the lab as a whole: the cluster's, each host's, then the lab's."""
    cps = [h for h in lab.hosts if h.is_control_plane]
    dns_addon = any(getattr(r, "dns_addon", False) for h in cps for r in h.roles if r.control_plane)
    out = validate_cluster(lab.cluster, len(lab.kubernetes_nodes), dns_addon)
    hosts = lab.hosts
    delegated = _ELSEWHERE.pop(id(lab), None)  # held with the lab itself: no other lab can have its id meanwhile
    if delegated is not None:  # the last hosts are checked by a build's shared compile's child, after its compile
        _lab, mine, answer = delegated
        stop: Callable[[], None] = lambda: None  # noqa: E731 - that child is ended by whoever started it
    elif len(hosts) < 2 or not 0 < forked.threshold() <= len(hosts) or not forked.possible():
        out += host_problems(lab, hosts)
        out += [p for rule in LAB_RULES for p in rule(lab)]
        return out
    else:
        # a large lab: the last hosts are checked by a child on the other core, while this process checks the
        # first ones and then the lab as a whole (about a third of the work, hence the 40 %)
        mine = len(hosts) * 2 // 5
        child = forked.start(host_problems, lab, hosts[mine:])
        answer, stop = child.result, child.stop
    try:
        out += host_problems(lab, hosts[:mine])
        try:
            lab_problems, lab_error = [p for rule in LAB_RULES for p in rule(lab)], None
        except Exception as e:  # noqa: BLE001 - raised below, unless a host's rule raises first (as in one process)
            lab_problems, lab_error = [], e
    except BaseException:
        stop()
        raise
    answered, theirs = answer()
    out += theirs if answered else host_problems(lab, hosts[mine:])  # no answer: here, as in one process
    if lab_error is not None:
        raise lab_error
    return out + lab_problems


# labs whose last hosts another process checks: id(lab) -> (the lab, the index of the first of them, a function
# giving (whether it answered, their problems)); taken by validate() (homelab.splitprep.ahead)
_ELSEWHERE: dict[int, tuple[Lab, int, Callable[[], tuple[bool, Any]]]] = {}


def host_problems(lab: Lab, hosts) -> list[Problem]:
    """The problems of each of ``hosts`` (the lab's), in their order: every host rule of each."""
    out: list[Problem] = []
    for h in hosts:
        ctx = HostContext(lab, h)
        out += [p for rule in HOST_RULES for p in rule(ctx)]
    return out


def option_clashes(lab: Lab, compiled, pre) -> tuple[list[Problem], set[str]]:
    """Raw ``options`` of hosts that fight what homelab generates, from the build's own compile and merge.

    An option set both by homelab and in the same generated file cannot be
    overridden there (Nix forbids defining an attribute twice); an option set
    in another generated module conflicts unless both merge (lists, lines) or
    the user wraps the value in ``force(...)``.  Returns the problems and the
    hosts whose merge conflicts they explain (any other conflict is homelab's
    own bug).
    """
    out: list[Problem] = []
    explained: set[str] = set()
    for h in lab.hosts:
        if not h.options:
            continue
        w = lab.where(h)
        plan = compiled.hosts[h.hostname]
        user = {model_option_path(k): k for k in h.options}
        for up, key in user.items():  # a path inside an option that holds no attributes (a str, a list...)
            for n in range(1, len(up)):
                fact = compiled.contract.lookup(up[:n])
                if fact is not None and fact.type.check({}) is not None:
                    out.append(Problem(w, f"options[{key!r}]", f"{'.'.join(up[:n])} is an option of type "
                                       f"{fact.type}; it has no attribute {up[n]!r} (set {'.'.join(up[:n])} itself)"))
                    break
        entry = compiled.files[plan.entry]
        clashed: set[str] = set()
        for sec in entry.sections:
            if sec.user:
                continue
            for path, value in sec.defs:
                for up, key in user.items():
                    # a user path below an attribute set homelab writes merges into it (Nix joins
                    # `a = { ... }; a.b = ...;`); the same path, or one above, is defined twice
                    below_a_set = len(up) > len(path) and isinstance(value, dict)
                    if _related(up, path) and not below_a_set and key not in clashed:
                        clashed.add(key)
                        out.append(Problem(w, f"options[{key!r}]", f"homelab sets {'.'.join(path)} itself in "
                                           f"{plan.entry}; change the host.py field that makes it instead"))
        if clashed:
            explained.add(h.hostname)
            continue
        for c in pre.conflicts.get(h.hostname, ()):
            key = next((k for up, k in user.items() if _related(up, c.path)), None)
            if key is not None:
                explained.add(h.hostname)
                out.append(Problem(w, f"options[{key!r}]", f"{c.message} (defined in {', '.join(c.files)}); wrap "
                                   "the value in force(...) to override homelab's definition"))
    return out, explained


def _related(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """One option path equals the other or lies inside it."""
    n = min(len(a), len(b))
    return a[:n] == b[:n]


# every lab validated in this process and its problems, while the lab lives (labs are immutable and hashable)
_VALIDATED: weakref.WeakKeyDictionary[Lab, tuple[Problem, ...]] = weakref.WeakKeyDictionary()


def problems_of(lab: Lab) -> tuple[Problem, ...]:
    """:func:`validate`, once per lab: loading a lab and building it check it once."""
    found = _VALIDATED.get(lab)
    if found is None:
        found = _VALIDATED[lab] = tuple(validate(lab))
    return found


def require_valid(lab: Lab) -> tuple[Problem, ...]:
    """Validate a lab (loaded, or built in code): its warnings, or LabError carrying every error at once.

    Each problem names where (``hosts/<name>`` or ``cluster``), the field and the reason.  A lab is
    checked once however often it is asked (loading a lab checks it).
    """
    if not isinstance(lab, Lab):
        raise LabError([Problem("lab", "lab", f"expected a homelab Lab, got {type(lab).__name__}")])
    problems = problems_of(lab)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise LabError(errors)
    return tuple(p for p in problems if p.severity != "error")
