"""Lab-wide rules: what no single field can know.  Every problem at once, with host and field."""

from __future__ import annotations

import ipaddress
from typing import Any

from .errors import Problem
from .model import (
    TAILSCALE_RANGE,
    CephStorage,
    ControlPlane,
    DnsServer,
    IngressProxy,
    Lab,
    Pkg,
    Priority,
    Tailscale,
    Worker,
)


def _where(lab: Lab, hostname: str) -> str:
    return lab.sources.get(hostname, f"hosts/{hostname}")


def _option_value_problems(value: Any, top: bool = True) -> str | None:
    if isinstance(value, Priority):
        if not top:
            return "lib.mkForce/mkDefault (force()/default()) can only wrap a whole option value"
        return _option_value_problems(value.value, top=False)
    if isinstance(value, bool) or value is None or isinstance(value, Pkg):
        return None
    if isinstance(value, int):
        return None if -(2**63) <= value < 2**63 else f"{value} does not fit in a Nix integer"
    if isinstance(value, str):
        return "contains a NUL character, which Nix strings cannot hold" if "\x00" in value else None
    if isinstance(value, (list, tuple)):
        for v in value:
            why = _option_value_problems(v, top=False)
            if why:
                return why
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str) or "\x00" in k:
                return f"attribute name {k!r} is not a string"
            why = _option_value_problems(v, top=False)
            if why:
                return why
        return None
    return f"{type(value).__name__} values cannot be written as Nix (use str, int, bool, None, list, dict, Pkg)"


def validate(lab: Lab) -> list[Problem]:
    """Problems (errors and warnings) of the lab as a whole."""
    out: list[Problem] = []
    c = lab.cluster

    def err(where: str, field: str, reason: str) -> None:
        out.append(Problem(where, field, reason))

    def warn(where: str, field: str, reason: str) -> None:
        out.append(Problem(where, field, reason, "warning"))

    # ---- cluster ranges
    if c.gateway not in c.lan:
        err("cluster", "gateway", f"{c.gateway} is outside the LAN {c.lan}")
    ranges = [("pod_cidr", c.pod_cidr), ("service_cidr", c.service_cidr), ("lan", c.lan),
              ("Tailscale's range", TAILSCALE_RANGE)]
    for i, (na, a) in enumerate(ranges):
        for nb, b in ranges[i + 1:]:
            if a.overlaps(b):
                err("cluster", na, f"{a} overlaps {nb} {b}")
    for net in c.extra_trusted:
        if any(net != r and net.supernet_of(r) for r in (c.pod_cidr, c.service_cidr, c.lan)) or net.prefixlen < 16:
            warn("cluster", "extra_trusted", f"{net} is broader than the lab needs; the pod, service and LAN "
                 "ranges are trusted already")
    if c.easy_certs and c.production:
        warn("cluster", "easy_certs", "easyCerts is not meant for a production cluster (nixpkgs says so, and "
             "so does the seed article)")

    # ---- hosts, one by one
    seen_names: dict[str, str] = {}
    seen_lan: dict[Any, str] = {}
    seen_ts: dict[Any, str] = {}
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
        dns = h.role(DnsServer)
        if dns is not None and ing is not None and dns.port in (ing.http_port, ing.https_port):
            err(w, "DnsServer.port", f"{dns.port} is taken by the ingress proxy")
        cp = h.role(ControlPlane)
        if cp is not None and h.arch == "aarch64" and not cp.arm64_overrides:
            err(w, "ControlPlane.arm64_overrides", "etcd does not start on aarch64 without "
                "ETCD_UNSUPPORTED_ARCH=arm64 and the DNS addon's default image does not run there; "
                "leave arm64_overrides on")
        if cp is not None and h.boot.on_sd_card and any(x.has(CephStorage) for x in lab.hosts):
            warn(w, "boot", "a control plane booted from an SD card is too slow for a cluster running Ceph "
                 "(the seed article saw ~43% I/O wait); consider an SSD")
        if h.has(Worker) and lab.control_plane is not None and lab.control_plane.ip not in c.lan:
            err(w, "roles", f"this worker cannot reach the API address {c.api_name}")
        ts = h.role(Tailscale)
        if ts is not None and ts.interface == h.interface:
            err(w, "Tailscale.interface", f"{ts.interface} is the LAN interface too")
        for path, value in h.options.items():
            why = _option_value_problems(value)
            if why:
                err(w, f"options[{path!r}]", why)

    # ---- the lab as a whole
    cps = lab.with_role(ControlPlane)
    if not cps:
        err("lab", "roles", "no host has the ControlPlane role; one host must run the Kubernetes control plane")
    elif len(cps) > 1:
        names = ", ".join(h.hostname for h in cps)
        err("lab", "roles", f"several hosts have the ControlPlane role ({names}); homelab supports one")
    if any(h.has(DnsServer) for h in lab.hosts):
        ingress = lab.with_role(IngressProxy)
        dns_hosts = ", ".join(_where(lab, h.hostname) for h in lab.with_role(DnsServer))
        if not ingress:
            err(dns_hosts, "DnsServer", f"the zone {c.domain} must point at a host with the IngressProxy role, "
                "and no host has one")
        elif len(ingress) > 1:
            err(dns_hosts, "DnsServer", "several hosts have the IngressProxy role; the zone can point at one")
        elif ingress[0].tailscale_address is None:
            err(_where(lab, ingress[0].hostname), "tailscale_address",
                f"the split-DNS zone {c.domain} answers with the ingress host's Tailscale address, and "
                f"{ingress[0].hostname} has none")
    if c.api_name == c.domain or c.api_name.endswith("." + c.domain):
        warn("cluster", "api_name", f"{c.api_name} lies in the split-DNS zone {c.domain}; hosts resolve it "
             "through extraHosts, tailnet clients would get the ingress host")
    return out
