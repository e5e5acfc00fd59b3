"""Lab-wide rules: what no single field can know.  Every problem at once, with host and field.

Field validators (in :mod:`homelab.model`) check one value; this module checks
how values fit together: addresses inside the LAN and unique, ranges that do
not overlap, one control plane that every node can reach, a DNS zone that
points at an ingress host, no secrets where generated files would carry them
into the world-readable Nix store, and raw ``options`` that do not fight what
homelab generates.  Each problem names where (``hosts/<name>`` or
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
from typing import Any, Iterator

from . import model
from .errors import Problem
from .model import (
    NODEPORT_RANGE,
    TAILSCALE_RANGE,
    CephStorage,
    Cluster,
    ControlPlane,
    DnsServer,
    IngressProxy,
    Lab,
    Pkg,
    Priority,
    Tailscale,
    Worker,
)

NODE_POD_PREFIX = 24  # kube-controller-manager --node-cidr-mask-size (IPv4 default)
MAX_SERVICE_HOST_BITS = 20  # kube-apiserver: the service range must be /12 or narrower
# Ports a control plane host already listens on (etcd client/peer, kubelet, controller manager, scheduler).
CONTROL_PLANE_PORTS = {2379: "etcd", 2380: "etcd (peer)", 10250: "the kubelet",
                       10257: "kube-controller-manager", 10259: "kube-scheduler"}
# Ports every Kubernetes node listens on (kubelet, kube-proxy metrics and health).
NODE_PORTS = {10250: "the kubelet", 10249: "kube-proxy (metrics)", 10256: "kube-proxy (health)"}
EASYCERTS_PORT = 8888  # cfssl on the control plane when easyCerts is on


# ---------------------------------------------------------------- secrets
# Generated files and everything nix evaluates from them end up world-readable
# in /nix/store.  Secrets belong in files outside the store, named by path.

_SECRET_VALUES: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"tskey-[A-Za-z0-9_-]{4,}"), "a Tailscale key"),
    (re.compile(r"^\$(1|2[abxy]?|5|6|7|y|gy|sha1|md5|argon2(?:id|i|d))\$"), "a password hash (crypt format)"),
    (re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----"), "a private key"),
    (re.compile(r"AGE-SECRET-KEY-1[0-9A-Z]{10,}"), "an age secret key"),
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})"), "a GitHub token"),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), "an AWS access key"),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), "a Slack token"),
    (re.compile(r"\b[a-z0-9]{6}\.(?=[a-z0-9]*[0-9])(?=[a-z0-9]*[a-z])[a-z0-9]{16}\b"),
     "a Kubernetes bootstrap token"),
)

# Option names (last path component, lower case) that hold a secret in clear.
_SECRET_NAMES = ("password", "hashedpassword", "initialpassword", "initialhashedpassword", "secret",
                 "token", "apikey", "apitoken", "authkey", "privatekey", "clientsecret", "secretkey", "psk")


def secret_kind(text: Any) -> str | None:
    """What secret ``text`` looks like ("a Tailscale key", ...), or None."""
    if not isinstance(text, str):
        return None
    for pattern, kind in _SECRET_VALUES:
        if pattern.search(text):
            return kind
    return None


def redact(text: str) -> str:
    """A secret-looking value as it may appear in a message: its first characters only."""
    return repr(text[:6] + "…")


def _in_store(path: str) -> bool:
    return path == "/nix/store" or path.startswith("/nix/store/")


def _secret_name(name: str) -> bool:
    low = name.lower().replace("_", "").replace("-", "")
    return any(low == n or low.endswith(n) for n in _SECRET_NAMES)


def _strings(value: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str | None, Any]]:
    """(attribute path, name it sits under, value) for every leaf and key of an option value."""
    if isinstance(value, Priority):
        yield from _strings(value.value, path)
    elif isinstance(value, model.PkgCall):
        yield from _strings(value.args, path)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v, path)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield path + (str(k),), None, k
            yield from _strings(v, path + (str(k),))
    else:
        yield path, path[-1] if path else None, value


def _secret_problems(option: str, value: Any) -> list[str]:
    out: list[str] = []
    for path, name, leaf in _strings(value, model.option_path(option)):
        dotted = ".".join(path)
        kind = secret_kind(leaf)
        if kind:
            target = (f"{dotted}File" if name and _secret_name(name) else "the option's *File variant")
            if kind == "a Tailscale key":
                target = "Tailscale(auth_key_file=...) or services.tailscale.authKeyFile"
            out.append(f"{redact(leaf)} looks like {kind}; generated files and the Nix store are world-readable, "
                       f"so put it in a file outside the store and set {target} to that file's absolute path")
        elif name and isinstance(leaf, str) and leaf and _secret_name(name):
            out.append(f"{dotted} would put a secret in clear into the world-readable Nix store; put it in a "
                       f"file outside the store and set {dotted}File (or the option's *File variant) to its path")
        elif name and name.endswith("File") and isinstance(leaf, str) and not leaf.startswith("/"):
            out.append(f"{dotted} = {leaf!r} is not an absolute path (a *File option names a file, "
                       "it does not hold the secret)")
        elif name and _secret_name(name.removesuffix("File")) and isinstance(leaf, str) and _in_store(leaf):
            out.append(f"{dotted} = {leaf!r} lies in the Nix store, which every user can read; keep secrets "
                       "outside it (e.g. /run/secrets)")
    return out


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
_NIX_EXPRS = (Pkg, model.PkgCall)


def _option_value_problems(value: Any, top: bool = True) -> str | None:
    if isinstance(value, Priority):
        if not top:
            return "lib.mkForce/mkDefault (force()/default()) can only wrap a whole option value"
        return _option_value_problems(value.value, top=False)
    if isinstance(value, model.PkgCall):
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
            why = _option_value_problems(v, top=False)
            if why:
                return why
        return None
    return f"{type(value).__name__} values cannot be written as Nix (use str, int, bool, None, list, dict, Pkg)"


def _where(lab: Lab, hostname: str) -> str:
    return lab.sources.get(hostname, f"hosts/{hostname}")


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
    for i, ns in enumerate(c.nameservers):
        for name, net in (("pod_cidr", c.pod_cidr), ("service_cidr", c.service_cidr)):
            if ns in net:
                err("cluster", f"nameservers[{i}]", f"{ns} lies in the {name} {net}, which hosts cannot use "
                    "for their own name lookups")
    if len(set(c.nameservers)) != len(c.nameservers):
        err("cluster", "nameservers", "lists the same address twice")
    for net in c.extra_trusted:
        if any(net == r or net.subnet_of(r) for r in (c.pod_cidr, c.service_cidr, c.lan)):
            warn("cluster", "extra_trusted", f"{net} is trusted already (it lies in the pod, service or LAN range)")
        elif any(net.supernet_of(r) for r in (c.pod_cidr, c.service_cidr, c.lan)) or net.prefixlen < 16:
            warn("cluster", "extra_trusted", f"{net} is broader than the lab needs; the pod, service and LAN "
                 "ranges are trusted already")
        elif net.overlaps(TAILSCALE_RANGE):
            warn("cluster", "extra_trusted", f"{net} overlaps Tailscale's range; the tailnet is trusted by its "
                 "interface already, trusting its addresses trusts them on every interface")
        elif not net.is_private:
            warn("cluster", "extra_trusted", f"{net} is not a private range; the firewall would trust hosts "
                 "on the internet")
    if c.easy_certs and c.production:
        warn("cluster", "easy_certs", "easyCerts is not meant for a production cluster (nixpkgs says so, and "
             "so does the seed article)")
    return out


def validate(lab: Lab) -> list[Problem]:
    """Problems (errors and warnings) of the lab as a whole."""
    out: list[Problem] = []
    c = lab.cluster

    def err(where: str, field: str, reason: str) -> None:
        out.append(Problem(where, field, reason))

    def warn(where: str, field: str, reason: str) -> None:
        out.append(Problem(where, field, reason, "warning"))

    nodes = [h for h in lab.hosts if h.has(ControlPlane) or h.has(Worker)]
    cps = lab.with_role(ControlPlane)

    out += validate_cluster(c, len(nodes), any(cp.role(ControlPlane).dns_addon for cp in cps))

    # ---- the API address: every node must reach the control plane by api_name:api_port
    if len(cps) == 1:
        cp = cps[0]
        cpw = _where(lab, cp.hostname)
        try:
            api_ip = ipaddress.IPv4Address(c.api_name)
        except ValueError:
            api_ip = None
        if api_ip is not None and api_ip != cp.ip:
            workers = ", ".join(_where(lab, h.hostname) for h in nodes if h is not cp) or "no node"
            err("cluster", "api_name", f"{c.api_name} is not the control plane's address {cp.ip}; the workers "
                f"({workers}) would have no way to reach the API")
        for h in nodes:
            if h is not cp and h.hostname == c.api_name:
                warn(_where(lab, h.hostname), "hostname", f"{h.hostname!r} is also the cluster's api_name: NixOS maps "
                     "a host's own name to 127.0.0.2 ahead of extraHosts, so on this worker the API name resolves "
                     "to itself first and reaches the control plane only after a refused connection; rename the "
                     "host or api_name")
        if c.api_port in NODEPORT_RANGE:
            err("cluster", "api_port", f"{c.api_port} lies in the NodePort range 30000-32767: a Service given that "
                "NodePort would take the API's traffic on every node (kube-proxy redirects it), and workers could "
                "no longer reach the API")
        taken = dict(CONTROL_PLANE_PORTS)
        ing, dns = cp.role(IngressProxy), cp.role(DnsServer)
        if ing is not None:
            taken[ing.http_port] = "the ingress proxy (http)"
            taken[ing.https_port] = "the ingress proxy (https)"
        if dns is not None:
            taken[dns.port] = "the DNS server"
        if c.api_port in taken:
            err("cluster", "api_port", f"{c.api_port} is taken on the control plane {cp.hostname} by "
                f"{taken[c.api_port]} ({cpw}); workers could not reach the API")
        for h in nodes:
            if h is not cp and h.ip in c.lan and cp.ip not in c.lan:
                err(_where(lab, h.hostname), "roles", f"this worker cannot reach the API address {c.api_name}: "
                    f"the control plane {cp.ip} is not on the LAN {c.lan}")

    # ---- hosts, one by one
    seen_names: dict[str, str] = {}
    seen_lan: dict[Any, str] = {}
    seen_ts: dict[Any, str] = {}
    any_ceph = any(x.has(CephStorage) for x in lab.hosts)
    for h in lab.hosts:
        w = _where(lab, h.hostname)
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
            if h.tailscale_address in seen_ts:
                err(w, "tailscale_address", f"{h.tailscale_address} is used by {seen_ts[h.tailscale_address]} too")
            seen_ts.setdefault(h.tailscale_address, w)
            if not h.has(Tailscale):
                warn(w, "tailscale_address", "is set but the host has no Tailscale() role, so nothing brings "
                     "that address up")
        kinds: dict[type, int] = {}
        for r in h.roles:
            kinds[type(r)] = kinds.get(type(r), 0) + 1
        for k, n in kinds.items():
            if n > 1:
                err(w, "roles", f"{k.__name__} is given {n} times")
        if h.has(ControlPlane) and h.has(Worker):
            err(w, "roles", "ControlPlane already makes this host a Kubernetes node; drop Worker()")
        if (h.has(CephStorage) or h.has(IngressProxy)) and not (h.has(ControlPlane) or h.has(Worker)):
            role = "CephStorage" if h.has(CephStorage) else "IngressProxy"
            err(w, "roles", f"{role} needs a Kubernetes node on the host (ControlPlane() or Worker())")
        ing = h.role(IngressProxy)
        if ing is not None:
            if ing.http_nodeport == ing.https_nodeport:
                err(w, "IngressProxy.https_nodeport", f"{ing.https_nodeport} is the http NodePort too")
            if ing.http_port == ing.https_port:
                err(w, "IngressProxy.https_port", f"{ing.https_port} is the http port too")
            for f in ("http_port", "https_port"):
                if getattr(ing, f) in NODEPORT_RANGE:
                    err(w, f"IngressProxy.{f}", f"{getattr(ing, f)} lies in the NodePort range 30000-32767, "
                        "where kube-proxy takes the traffic before nginx sees it")
        dns = h.role(DnsServer)
        if dns is not None and ing is not None and dns.port in (ing.http_port, ing.https_port):
            err(w, "DnsServer.port", f"{dns.port} is taken by the ingress proxy")
        # what Kubernetes itself listens on here
        k8s_ports: dict[int, str] = {}
        if h.has(ControlPlane) or h.has(Worker):
            k8s_ports.update(NODE_PORTS)
        if h.has(ControlPlane):
            k8s_ports.update(CONTROL_PLANE_PORTS)
            k8s_ports[c.api_port] = "the API server"
            if c.easy_certs:
                k8s_ports[EASYCERTS_PORT] = "easyCerts' cfssl"
        for role_name, role, fields in (("IngressProxy", ing, ("http_port", "https_port")),
                                        ("DnsServer", dns, ("port",))):
            for f in fields if role is not None else ():
                taken_by = k8s_ports.get(getattr(role, f))
                if taken_by:
                    err(w, f"{role_name}.{f}", f"{getattr(role, f)} is taken on this host by {taken_by}")
        if dns is not None and not h.has(Tailscale):
            warn(w, "roles", "DnsServer without Tailscale(): tailnet clients cannot reach this split-DNS server")
        cp = h.role(ControlPlane)
        if cp is not None and h.arch == "aarch64" and not cp.arm64_overrides:
            err(w, "ControlPlane.arm64_overrides", "etcd does not start on aarch64 without "
                "ETCD_UNSUPPORTED_ARCH=arm64 and the DNS addon's default image does not run there; "
                "leave arm64_overrides on")
        if cp is not None and h.boot.on_sd_card and any_ceph:
            warn(w, "boot", "a control plane booted from an SD card is too slow for a cluster running Ceph "
                 "(the seed article saw ~43% I/O wait); consider an SSD")
        ceph = h.role(CephStorage)
        if ceph is not None and len(set(ceph.disks)) != len(ceph.disks):
            err(w, "CephStorage.disks", "lists the same device twice")
        ts = h.role(Tailscale)
        if ts is not None and ts.interface == h.interface:
            err(w, "Tailscale.interface", f"{ts.interface} is the LAN interface too")
        if ts is not None and ts.auth_key_file and _in_store(ts.auth_key_file):
            err(w, "Tailscale.auth_key_file", f"{ts.auth_key_file!r} lies in the Nix store, which every user can "
                "read; keep the key outside it (e.g. /run/secrets/tailscale-authkey)")
        for path, value in h.options.items():
            why = _text_problem(path) if isinstance(path, str) else None
            if why:
                err(w, f"options[{path!r}]", f"the option path {why}")
                continue
            why = _option_value_problems(value)
            if why:
                err(w, f"options[{path!r}]", why)
            else:
                for reason in _secret_problems(path, value):
                    err(w, f"options[{path!r}]", reason)
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
    elif len(cps) > 1:
        names = ", ".join(_where(lab, h.hostname) for h in cps)
        err("cluster", "roles", f"several hosts have the ControlPlane role ({names}); homelab supports one")
    if any(h.has(DnsServer) for h in lab.hosts):
        ingress = lab.with_role(IngressProxy)
        dns_hosts = ", ".join(_where(lab, h.hostname) for h in lab.with_role(DnsServer))
        if not ingress:
            err(dns_hosts, "DnsServer", f"the zone {c.domain} must point at a host with the IngressProxy role, "
                "and no host has one")
        elif len(ingress) > 1:
            names = ", ".join(_where(lab, h.hostname) for h in ingress)
            err(dns_hosts, "DnsServer", f"several hosts have the IngressProxy role ({names}); the zone "
                f"{c.domain} can point at one")
        elif ingress[0].tailscale_address is None:
            err(_where(lab, ingress[0].hostname), "tailscale_address",
                f"the split-DNS zone {c.domain} answers with the ingress host's Tailscale address, and "
                f"{ingress[0].hostname} has none")
        elif not ingress[0].has(Tailscale):
            err(_where(lab, ingress[0].hostname), "roles",
                f"the split-DNS zone {c.domain} answers with this host's Tailscale address, and it has no "
                "Tailscale() role")
    if c.api_name == c.domain or c.api_name.endswith("." + c.domain):
        warn("cluster", "api_name", f"{c.api_name} lies in the split-DNS zone {c.domain}; hosts resolve it "
             "through extraHosts, tailnet clients would get the ingress host")
    if not any(p.severity == "error" for p in out):
        out += option_clashes(lab)
    return out


def option_clashes(lab: Lab) -> list[Problem]:
    """Raw ``options`` of a host that fight what homelab generates for it (needs an otherwise valid lab).

    An option set both by homelab and in the same generated file cannot be
    overridden there (Nix forbids defining an attribute twice); an option set
    in another generated module conflicts unless both merge (lists, lines) or
    the user wraps the value in ``force(...)``.
    """
    from . import verify  # late: verify imports the compiler, which needs a validated lab
    from .compile import compile_lab

    out: list[Problem] = []
    compiled = compile_lab(lab)
    cache: dict[str, list[tuple[str, ...]]] = {}

    def generated_paths(rel: str) -> list[tuple[str, ...]]:
        if rel not in cache:
            cache[rel] = [path for sec in compiled.files[rel].sections if not sec.user for path, _ in sec.defs]
        return cache[rel]

    for h in lab.hosts:
        if not h.options:
            continue
        w = _where(lab, h.hostname)
        plan = compiled.hosts[h.hostname]
        user = {model.option_path(k): k for k in h.options}
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
            continue
        # merge (the costly part) only where a user path meets a path the host's modules set
        if not any(_related(up, path) for rel in plan.modules for path in generated_paths(rel) for up in user):
            continue
        try:
            nested = [(rel, verify.nest(compiled.files[rel].definitions())) for rel in compiled.files_of(h.hostname)]
        except ValueError as e:
            out.append(Problem(w, "options", str(e)))
            continue
        _, conflicts = verify.merge_host(nested)
        for text in conflicts:
            dotted = text.split(":", 1)[0]
            key = next((k for up, k in user.items() if dotted == k or dotted.startswith(k + ".")
                        or k.startswith(dotted + ".")), None)
            if key is not None:
                out.append(Problem(w, f"options[{key!r}]", f"{text.split(':', 1)[1].strip()}; wrap the value in "
                                   "force(...) to override homelab's definition"))
    return out


def _related(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """One option path equals the other or lies inside it."""
    n = min(len(a), len(b))
    return a[:n] == b[:n]
