"""Small builders for labs in tests: the seed lab as Python objects, easy to vary."""

from __future__ import annotations

import attrs

from homelab import (  # noqa: I001
    CephStorage,
    Cluster,
    ControlPlane,
    DnsServer,
    Host,
    IngressProxy,
    Lab,
    RaspberryPi4,
    Tailscale,
    Worker,
)


def cluster(**kw) -> Cluster:
    base = dict(name="seed", domain="home.example.com", lan="192.168.10.0/24", gateway="192.168.10.1",
                nameservers=["192.168.10.1"])
    base.update(kw)
    return Cluster(**base)


def seed_hosts() -> list[Host]:
    return [
        Host(hostname="yomogi", system="aarch64-linux", state_version="25.05", interface="end0",
             address="192.168.10.10",
             tailscale_address="100.64.0.10", boot=RaspberryPi4(),
             roles=[ControlPlane(), CephStorage(), DnsServer(), Tailscale()]),
        Host(hostname="tokiwa", system="x86_64-linux", state_version="25.05", interface="enp1s0",
             address="192.168.10.11",
             tailscale_address="100.64.0.11", roles=[Worker(), CephStorage(), Tailscale()]),
        Host(hostname="hanaakari", system="x86_64-linux", state_version="25.05", interface="enp1s0",
             address="192.168.10.12",
             tailscale_address="100.64.0.12", roles=[Worker(), CephStorage(), IngressProxy(), Tailscale()]),
    ]


def lab(hosts=None, **cluster_kw) -> Lab:
    return Lab(cluster(**cluster_kw), hosts if hosts is not None else seed_hosts())


def evolve_host(lab_: Lab, name: str, **kw) -> Lab:
    hosts = [attrs.evolve(h, **kw) if h.hostname == name else h for h in lab_.hosts]
    return Lab(lab_.cluster, hosts, lab_.sources)


def wide_lab(**cluster_kw) -> Lab:
    """The seed hosts on other ranges, with what the seed lab lacks: admins on a network of their own, a node
    exporter on every host scraped by the control plane, and a port one host opens itself (an OpenPort)."""
    from homelab import Monitoring, NodeExporter, OpenPort

    base = dict(lan="192.168.50.0/24", gateway="192.168.50.1", nameservers=["192.168.50.1"],
                pod_cidr="10.244.0.0/16", service_cidr="10.96.0.0/16", admins=["tailnet", "192.168.50.64/27"])
    base.update(cluster_kw)
    hosts = []
    for i, h in enumerate(seed_hosts()):
        roles = [*h.roles, NodeExporter()] + ([Monitoring()] if h.hostname == "yomogi" else [])
        extra = {"open_ports": [OpenPort(8123, source="lan", reason="Home Assistant")]} \
            if h.hostname == "tokiwa" else {}
        hosts.append(attrs.evolve(h, address=f"192.168.50.{10 + i}", roles=roles, **extra))
    return lab(hosts, **base)


def etc_hosts(options: dict, hostname: str) -> list[tuple[str, list[str]]]:
    """/etc/hosts as NixOS writes it from a host's option values (nixos/modules/config/networking.nix): localhost,
    then networking.hosts, whose own 127.0.0.2 line names the host, one line per address in attribute-name
    order, then networking.extraHosts verbatim."""
    hosts: dict[str, list[str]] = {"127.0.0.2": [hostname]}
    for ip, names in options.get("networking.hosts", {}).items():
        hosts[ip] = hosts.get(ip, []) + list(names)
    lines = [("127.0.0.1", ["localhost"])] + [(ip, hosts[ip]) for ip in sorted(hosts) if hosts[ip]]
    for line in options.get("networking.extraHosts", "").splitlines():
        if line.split():
            lines.append((line.split()[0], line.split()[1:]))
    return lines


def resolve(hosts: list[tuple[str, list[str]]], name: str) -> list[str]:
    """The addresses glibc (with `multi on`) and Go's resolver find for ``name``, in file order."""
    return [ip for ip, names in hosts if name.lower() in (n.lower() for n in names)]
