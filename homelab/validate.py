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
import re
import weakref
from typing import Any, Iterator

from . import firewall
from .errors import LabError, Problem
from .component import problems as component_problems
from .hardware import arch_mismatches
from .labels import label_problems
from .model import PLACEHOLDER_KEY, TAILSCALE_RANGE, Cluster, Lab, Pkg, PkgCall, Priority
from .role import HostContext, Port, Source
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


def validate_cluster(c: Cluster, nodes: int | None = None, dns_addon: bool = False) -> list[Problem]:
    """Problems of hosts/cluster.py on its own (``nodes``: how many Kubernetes nodes, when known).

    The loader runs this even when some host.py fails, so a broken host file does
    not hide the cluster's own problems.
    """
    out: list[Problem] = []

    def err(where: str, field: str, reason: str) -> None:
        out.append(Problem(where, field, reason))

    def warn(where: str, field: str, reason: str) -> None:
        out.append(Problem(where, field, reason, "warning"))

    # ---- cluster ranges
    if c.gateway not in c.lan:
        err("cluster", "gateway", f"{c.gateway} is outside the LAN {c.lan}")
    elif c.gateway in (c.lan.network_address, c.lan.broadcast_address):
        err("cluster", "gateway", f"{c.gateway} is the LAN's network or broadcast address")
    ranges = [("pod_cidr", c.pod_cidr), ("service_cidr", c.service_cidr), ("lan", c.lan),
              ("Tailscale's range", TAILSCALE_RANGE)]
    for i, (na, a) in enumerate(ranges):
        for nb, b in ranges[i + 1:]:
            if a.overlaps(b):
                err("cluster", na, f"{a} overlaps {nb} {b}")
    if c.pod_cidr.prefixlen > NODE_POD_PREFIX:
        err("cluster", "pod_cidr", f"{c.pod_cidr} is smaller than the /{NODE_POD_PREFIX} the controller manager "
            "gives each node; use a /16 or so")
    elif nodes is not None and 2 ** (NODE_POD_PREFIX - c.pod_cidr.prefixlen) < nodes:
        room = 2 ** (NODE_POD_PREFIX - c.pod_cidr.prefixlen)
        err("cluster", "pod_cidr", f"{c.pod_cidr} has room for {room} node subnet{'s' if room != 1 else ''} "
            f"(/{NODE_POD_PREFIX} each) and the lab has {nodes} Kubernetes nodes")
    elif c.pod_cidr.prefixlen < 16:
        warn("cluster", "pod_cidr", f"{c.pod_cidr} is trusted by every host's firewall and is broader than the "
             "lab needs (a /16 has room for 256 nodes)")
    if 32 - c.service_cidr.prefixlen > MAX_SERVICE_HOST_BITS:
        err("cluster", "service_cidr", f"{c.service_cidr} is too large; kube-apiserver accepts /12 or narrower")
    if dns_addon:
        dns_ip = ipaddress.IPv4Address(".".join(str(c.service_cidr.network_address).split(".")[:3]) + ".254")
        if dns_ip not in c.service_cidr:
            err("cluster", "service_cidr", f"the DNS addon's address {dns_ip} (nixpkgs takes the range's first "
                f"three octets and .254) lies outside {c.service_cidr}; use a /24 or wider")
    if not c.nameservers:
        # every host gets a static address with networking.useDHCP = false, so nothing else gives it a resolver
        err("cluster", "nameservers", "is empty: hosts get static addresses with DHCP off, so they would have no DNS "
            "server at all (no package downloads, no image pulls); list at least one, e.g. the router")
    if c.api_name == "localhost" or c.api_name.endswith(".localhost") or c.api_name == "localhost.localdomain":
        # /etc/hosts maps localhost to 127.0.0.1 before homelab's extraHosts line (RFC 6761 reserves *.localhost)
        err("cluster", "api_name", f"{c.api_name} resolves to the loopback address on every host, so the workers "
            "would talk to themselves instead of the control plane; name the API like api.kube")
    for i, ns in enumerate(c.nameservers):
        for name, net in (("pod_cidr", c.pod_cidr), ("service_cidr", c.service_cidr)):
            if ns in net:
                # a Service address (the DNS addon's too) answers only through kube-proxy's rules on a node: until
                # kube-proxy runs, and always on a host outside Kubernetes, the host would have no DNS at all
                # (no nixos-rebuild downloads, no image pulls for the kubelet that would start kube-proxy)
                why = (" (a Service address answers only once kube-proxy runs on a node, and never on a host "
                       "outside Kubernetes: until then no name resolves, not even to fetch what starts "
                       "kube-proxy); list the router or another resolver on the LAN") if name == "service_cidr" else ""
                err("cluster", f"nameservers[{i}]", f"{ns} lies in the {name} {net}, which hosts cannot use "
                    f"for their own name lookups{why}")
    if len(set(c.nameservers)) != len(c.nameservers):
        err("cluster", "nameservers", "lists the same address twice")
    for i, src in enumerate(c.admins):
        if src.kind == "world":
            warn("cluster", f"admins[{i}]", "\"world\" lets anyone on the internet try SSH and the API server; "
                 "name your networks instead")  # a warning: a lab behind a router's NAT may mean it
        elif src.kind == "network":
            net = ipaddress.ip_network(src.network)
            if not net.is_private:
                warn("cluster", f"admins[{i}]", f"{net} is not a private range: hosts on the internet could try "
                     "SSH and the API server")
        elif src.kind not in ("lan", "tailnet", "host"):
            err("cluster", f"admins[{i}]", f"{src} cannot be an admin source (say \"lan\", \"tailnet\", "
                "\"host:<name>\" or a network)")
    if not c.admin_keys:
        warn("cluster", "admin_keys", "is empty: password logins are off, so nobody can log in over SSH (homelab "
             "deploy needs it); add your public key")
    elif PLACEHOLDER_KEY in c.admin_keys:
        warn("cluster", "admin_keys", "holds homelab's placeholder key, which nobody can log in with; put your "
             "own public key there")
    if c.easy_certs and c.production:
        warn("cluster", "easy_certs", "easyCerts is not meant for a production cluster (nixpkgs says so, and "
             "so does the seed article)")
    return out


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


def world_open_ports(ctx: HostContext) -> list[Problem]:
    """A warning for every port the host opens to the world itself (``open_ports`` with ``source="world"``),
    naming what listens there, from the host's port table (or sshd, on its port)."""
    from .access import SSH_PORT

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


def validate(lab: Lab) -> list[Problem]:
    """Problems (errors and warnings) of the lab as a whole: generic rules, the port table, every role's rules."""
    out: list[Problem] = []
    c = lab.cluster

    def err(where: str, field: str, reason: str) -> None:
        out.append(Problem(where, field, reason))

    def warn(where: str, field: str, reason: str) -> None:
        out.append(Problem(where, field, reason, "warning"))

    nodes = lab.kubernetes_nodes
    cps = [h for h in lab.hosts if h.is_control_plane]
    dns_addon = any(getattr(r, "dns_addon", False) for h in cps for r in h.roles if r.control_plane)
    out += validate_cluster(c, len(nodes), dns_addon)

    # ---- hosts, one by one
    seen_names: dict[str, str] = {}
    seen_lan: dict[Any, str] = {}
    seen_ts: dict[Any, str] = {}
    for h in lab.hosts:
        w = lab.where(h)
        ctx = HostContext(lab, h)
        if h.hostname in seen_names:
            err(w, "hostname", f"{h.hostname!r} is used by {seen_names[h.hostname]} too")
        seen_names.setdefault(h.hostname, w)
        if h.ip in seen_lan:
            err(w, "address", f"{h.ip} is used by {seen_lan[h.ip]} too")
        seen_lan.setdefault(h.ip, w)
        if h.ip not in c.lan:
            err(w, "address", f"{h.ip} is outside the LAN {c.lan}")
        elif h.ip in (c.lan.network_address, c.lan.broadcast_address):
            err(w, "address", f"{h.ip} is the LAN's network or broadcast address")
        elif h.ip == c.gateway:
            err(w, "address", f"{h.ip} is the LAN's gateway")
        if isinstance(h.address, ipaddress.IPv4Interface) and h.address.network.prefixlen != c.lan.prefixlen:
            err(w, "address", f"prefix /{h.address.network.prefixlen} does not match the LAN {c.lan}")
        if h.tailscale_address is not None:
            if h.tailscale_address not in TAILSCALE_RANGE:
                err(w, "tailscale_address", f"{h.tailscale_address} is outside Tailscale's range {TAILSCALE_RANGE}")
            else:
                why = tailscale_reserved(h.tailscale_address)
                if why:
                    err(w, "tailscale_address", f"{h.tailscale_address} {why}")
            if h.tailscale_address in seen_ts:
                err(w, "tailscale_address", f"{h.tailscale_address} is used by {seen_ts[h.tailscale_address]} too")
            seen_ts.setdefault(h.tailscale_address, w)
            if not any(type(r).__name__ == "Tailscale" for r in h.roles):
                warn(w, "tailscale_address", "is set but the host has no Tailscale() role, so nothing brings "
                     "that address up")
        kinds: dict[type, int] = {}
        for r in h.roles:
            kinds[type(r)] = kinds.get(type(r), 0) + 1
        for k, n in kinds.items():
            if n > 1:
                err(w, "roles", f"{k.__name__} is given {n} times")
        for field, reason, *severity in h.boot.problems(h):
            out.append(Problem(w, field, reason, *severity))
        if h.build_host not in (None, "target") and h.build_host not in {x.hostname for x in lab.hosts}:
            err(w, "build_on", f"{h.build_on!r} is not a host of this lab (say \"local\", \"target\" or a "
                "lab host's name)")
        out += port_clashes(ctx)
        out += label_problems(lab, h)
        for role in h.roles:
            out += role.check(ctx)
        for path, value in h.options.items():
            why = _text_problem(path) if isinstance(path, str) else None
            if why:
                err(w, f"options[{path!r}]", f"the option path {why}")
                continue
            why = _option_value_problems(value)
            if why:
                err(w, f"options[{path!r}]", why)
            else:
                for reason in option_problems(model_option_path(path), value):
                    err(w, f"options[{path!r}]", reason)
        try:
            firewall.host_flows(ctx)  # every role's flows read once here, so a bad one is a problem like any
            flows_ok = True
        except LabError as e:
            out += e.problems
            flows_ok = False
        out += world_open_ports(ctx)
        for field, reason in arch_mismatches(h):
            warn(w, field, reason)
        for path in firewall.accept_local_problems(ctx) if flows_ok else ():
            err(w, f"options[{path!r}]", "turns accept_local on: a packet from outside carrying this host's own "
                "address would then reach its firewall, whose rules from the Kubernetes nodes accept every node's "
                "address, this host's own too (one file serves all the nodes); leave accept_local off")
        for i, p in enumerate(h.kernel_params):
            kind = secret_kind(p)
            if kind:
                err(w, f"kernel_params[{i}]", f"{redact(p)} looks like {kind}; the kernel command line is "
                    "readable by every user and lands in the Nix store")
        paths = sorted(h.options)
        for a, b in zip(paths, paths[1:]):
            if b.startswith(a + "."):
                err(w, f"options[{b!r}]", f"{a!r} is set too; set one of them (put {b[len(a) + 1:]!r} inside "
                    f"the value of {a!r})")

    # ---- the lab as a whole
    if not cps:
        err("cluster", "roles", "no host has the ControlPlane role; one host must run the Kubernetes control plane")
    for role_type in lab.role_types:
        if role_type.control_plane and not cps:
            continue
        out += role_type.check_lab(lab)
    out += component_problems(lab)  # the cluster layer's components
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
