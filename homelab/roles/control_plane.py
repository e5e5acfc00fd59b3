"""ControlPlane: the Kubernetes control plane (NixOS roles master + node), on exactly one host.

Everything about it: its settings, the modules it writes (the shared node base,
``modules/k8s/master.nix`` and, on aarch64, ``modules/k8s/arm64.nix``), the
API-address rules, the ports it listens on, what must run, and the API arrows
of the diagram.

The aarch64 rule lives here, once (:func:`arm64_overrides`): etcd refuses to
start on arm64 without ``ETCD_UNSUPPORTED_ARCH=arm64``, and up to nixos-25.11
the DNS addon's default image was amd64-only (nixpkgs #398895), so the seed lab
pinned an arm64 CoreDNS image.

Facts from nixpkgs (nixos-26.05): ``kubernetes/apiserver.nix`` (advertise
address, securePort), ``kubernetes/pki.nix`` (easyCerts: the single etcd member
is named after ``masterAddress``; cfssl, the cluster CA, on port 8888),
``kubernetes/addons/dns.nix`` (``corednsImage``, a package since 26.05).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Iterable

import attrs

from .. import checks, fields
from ..errors import Problem
from ..model import PkgCall
from ..role import Edge, GraphPart, HostContext, Module, Port, Role, section
from . import kubernetes

CFSSL_PORT = 8888  # easyCerts' CA (services.cfssl.port) on the control plane
ETCD_PORT = 2379
# Ports the control plane listens on besides every node's and the API server's own.
CONTROL_PLANE_PORTS = (
    Port(ETCD_PORT, "tcp", "etcd"),
    Port(2380, "tcp", "etcd (peer)"),
    Port(10257, "tcp", "kube-controller-manager"),
    Port(10259, "tcp", "kube-scheduler"),
)
CONTROL_PLANE_UNITS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-addon-manager",
                       *kubernetes.NODE_UNITS)


@attrs.frozen
class CorednsImage:
    """A pinned CoreDNS image for the Kubernetes DNS addon.

    Written as ``services.kubernetes.addons.dns.corednsImage =
    pkgs.dockerTools.pullImage { ... }`` (nixos-26.05 renamed the old
    ``addons.dns.coredns`` attribute set to ``corednsImage``, a package).
    ``sha256`` is the hash of the pulled image for ``arch``.
    """

    imageName: str = attrs.field(validator=fields.safe_text)
    imageDigest: str = attrs.field(validator=fields.typed(
        str, "an image digest", lambda v: re.fullmatch(r"sha256:[0-9a-f]{64}", v) is not None,
        lambda v: f"{v!r} is not an image digest (sha256:<64 hex digits>)"))
    finalImageTag: str = attrs.field(validator=fields.safe_text)
    sha256: str = attrs.field(validator=fields.typed(
        str, "a Nix hash", lambda v: re.fullmatch(r"[0-9a-z]{52}|sha256-[A-Za-z0-9+/]{43}=", v) is not None,
        lambda v: f"{v!r} is not a Nix hash (52 base-32 characters or sha256-<base64>)"))
    arch: str = attrs.field(default="arm64", validator=fields.one_of("arm64", "amd64"))

    def package(self) -> PkgCall:
        return PkgCall("dockerTools.pullImage", attrs.asdict(self))


# The seed lab's pin: an arm64-capable CoreDNS for the DNS addon on an aarch64
# control plane.  Up to nixos-25.11 the addon pulled coredns/coredns with an
# amd64 hash, which failed on arm64 (nixpkgs #398895); the seed article pinned
# the same digest with the arm64 hash.  nixos-26.05 builds the addon's image
# from pkgs.coredns by default; homelab keeps the seed's pin on aarch64 (so the
# image is the one the lab ran) and lets ControlPlane(coredns_image=None) use
# the nixpkgs default instead.
ARM64_COREDNS = CorednsImage(
    imageName="coredns/coredns",
    imageDigest="sha256:a0ead06651cf580044aeb0a0feba63591858fb2e43ade8c9dea45a6a89ae7e5e",
    finalImageTag="1.10.1",
    sha256="0c4vdbklgjrzi6qc5020dvi8x3mayq4li09rrq2w0hcjdljj0yf9",
)


@attrs.frozen
class ControlPlane(Role):
    """Kubernetes control plane: NixOS roles master + node, API server, DNS addon.

    On an aarch64 host etcd gets ``ETCD_UNSUPPORTED_ARCH=arm64`` and the DNS
    addon the seed's arm64 CoreDNS pin (:data:`ARM64_COREDNS`; see
    ``coredns_image``); leave ``arm64_overrides`` on unless you know your etcd
    build supports arm64.
    """

    allow_privileged: bool = attrs.field(default=True, validator=fields.a_bool)
    dns_addon: bool = attrs.field(default=True, validator=fields.a_bool)
    # "auto": the seed's arm64 pin on aarch64, nixpkgs' own image elsewhere;
    # None: always nixpkgs' image; a CorednsImage: that pin on any system.
    coredns_image: CorednsImage | None | str = attrs.field(
        default="auto",
        validator=fields.check(lambda v: v is None or v == "auto" or isinstance(v, CorednsImage),
                               lambda v: f"{v!r} is not \"auto\", None or a CorednsImage" if isinstance(v, str)
                               else fields.wrong_type(v, "\"auto\", None or a CorednsImage(...)")),
    )
    arm64_overrides: bool = attrs.field(default=True, validator=fields.a_bool)

    label = "control plane"
    tag = "k8s-control-plane"
    kubernetes_node = True
    control_plane = True
    options = kubernetes.OPTIONS

    # ---------------------------------------------------------------- compile

    def compile(self, ctx: HostContext) -> Iterable[Module]:
        yield from kubernetes.node_modules(ctx)
        yield self._master(ctx)
        if arm64_overrides(ctx.host, self):
            yield self._arm64()

    def _master(self, ctx: HostContext) -> Module:
        c, cp = ctx.cluster, ctx.host
        sections = [
            section(
                "",
                ("services.kubernetes.roles", ["master", "node"]),
                ("services.kubernetes.apiserver.advertiseAddress", str(cp.ip)),
                ("services.kubernetes.apiserver.securePort", c.api_port),
                ("services.kubernetes.apiserver.serviceClusterIpRange", str(c.service_cidr)),
                ("services.kubernetes.apiserver.allowPrivileged", self.allow_privileged),
            ),
            section("Cluster DNS (the CoreDNS addon).", ("services.kubernetes.addons.dns.enable", self.dns_addon)),
        ]
        if c.easy_certs:
            sections.append(section(
                "easyCerts names the single etcd member after masterAddress (initialCluster in nixpkgs' "
                "pki.nix); etcd must carry that name, not the host's.",
                ("services.etcd.name", c.api_name)))
        if isinstance(self.coredns_image, CorednsImage) and not arm64_overrides(cp, self):
            sections.append(section("The DNS addon's image, pinned in host.py.",
                                    ("services.kubernetes.addons.dns.corednsImage", self.coredns_image.package())))
        return Module("modules/k8s/master.nix", "Kubernetes control plane: roles master + node", sections)

    def _arm64(self) -> Module:
        image = ARM64_COREDNS if self.coredns_image == "auto" else self.coredns_image
        sections = [
            section("etcd refuses to start on arm64 unless told the architecture is unsupported on purpose.",
                    ("systemd.services.etcd.environment", {"ETCD_UNSUPPORTED_ARCH": "arm64"})),
        ]
        if self.dns_addon and image is not None:
            sections.append(section(
                "The DNS addon's CoreDNS image, pinned for arm64 as in the seed lab (up to nixos-25.11 the "
                "default image failed on arm64, nixpkgs #398895).",
                ("services.kubernetes.addons.dns.corednsImage", image.package())))
        return Module("modules/k8s/arm64.nix", "arm64 overrides for a control plane on aarch64", sections,
                      source="an aarch64 ControlPlane in host.py")

    def host_sections(self, ctx: HostContext):
        return kubernetes.node_host_sections(ctx)

    # ---------------------------------------------------------------- ports and rules

    def ports(self, ctx: HostContext) -> Iterable[Port]:
        yield from kubernetes.node_ports(ctx)
        yield from CONTROL_PLANE_PORTS
        yield Port(ctx.cluster.api_port, "tcp", "the API server", field="api_port", on_cluster=True)
        if ctx.cluster.easy_certs:
            yield Port(CFSSL_PORT, "tcp", "easyCerts' cfssl")

    def check(self, ctx: HostContext) -> Iterable[Problem]:
        if ctx.host.arch == "aarch64" and not self.arm64_overrides:
            yield self.error(ctx, "arm64_overrides", "etcd does not start on aarch64 without "
                             "ETCD_UNSUPPORTED_ARCH=arm64 and the DNS addon's default image does not run there; "
                             "leave arm64_overrides on")

    @classmethod
    def check_lab(cls, lab) -> Iterable[Problem]:
        cps = [h for h in lab.hosts if h.is_control_plane]
        c = lab.cluster
        if len(cps) > 1:
            names = ", ".join(lab.where(h) for h in cps)
            yield Problem("cluster", "roles", f"several hosts have the ControlPlane role ({names}); homelab "
                          "supports one")
            return
        cp = cps[0]
        nodes = lab.kubernetes_nodes
        # the API address: every node must reach the control plane by api_name:api_port
        try:
            api_ip = ipaddress.IPv4Address(c.api_name)
        except ValueError:
            api_ip = None
        if api_ip is not None and api_ip != cp.ip:
            workers = ", ".join(lab.where(h) for h in nodes if h is not cp) or "no node"
            yield Problem("cluster", "api_name", f"{c.api_name} is not the control plane's address {cp.ip}; the "
                          f"workers ({workers}) would have no way to reach the API")
        for h in nodes:
            if h is not cp and h.hostname == c.api_name:
                yield Problem(lab.where(h), "hostname", f"{h.hostname!r} is also the cluster's api_name: NixOS maps "
                              "a host's own name to 127.0.0.2 ahead of extraHosts, so on this worker the API name "
                              "resolves to itself first and reaches the control plane only after a refused "
                              "connection; rename the host or api_name", "warning")
        if c.api_port in fields.NODEPORT_RANGE:
            yield Problem("cluster", "api_port", f"{c.api_port} lies in the NodePort range 30000-32767: a Service "
                          "given that NodePort would take the API's traffic on every node (kube-proxy redirects "
                          "it), and workers could no longer reach the API")
        for h in nodes:
            if h is not cp and h.ip in c.lan and cp.ip not in c.lan:
                yield Problem(lab.where(h), "roles", f"this worker cannot reach the API address {c.api_name}: "
                              f"the control plane {cp.ip} is not on the LAN {c.lan}")

    # ---------------------------------------------------------------- expectations and diagram

    def expectations(self, ctx: HostContext) -> Iterable[checks.Check]:
        c, host = ctx.cluster, ctx.host
        yield from kubernetes.node_expectations(ctx)
        why = "ControlPlane role (services.kubernetes.roles = master + node)"
        for unit in CONTROL_PLANE_UNITS:
            yield checks.service(f"{unit}.service", "host", why)
        if c.easy_certs:
            yield checks.service("cfssl.service", "host", "easyCerts: the cluster CA runs on the control plane")
            yield checks.service("certmgr.service", "host", "easyCerts: certificates for the node's own services")
            yield checks.listening("tcp", CFSSL_PORT, "host", "cfssl, the easyCerts CA")
        yield checks.listening("tcp", c.api_port, "host", "kube-apiserver securePort")
        yield checks.listening("tcp", ETCD_PORT, "host", "etcd clients")
        yield checks.listening("tcp", kubernetes.KUBELET_PORT, "host", "kubelet")
        if arm64_overrides(host, self):
            yield checks.systemd_property("etcd.service", "Environment", "ETCD_UNSUPPORTED_ARCH=arm64", "contains",
                                          "etcd refuses to start on arm64 without it (ControlPlane on aarch64)")
        if self.dns_addon:
            yield kubernetes.cluster_dns_check(ctx)

    def expectations_for(self, ctx: HostContext, other: HostContext) -> Iterable[checks.Check]:
        """Every other node: the cluster DNS answers there too."""
        if self.dns_addon and other.host.is_kubernetes_node:
            yield kubernetes.cluster_dns_check(other)

    def graph(self, ctx: HostContext) -> GraphPart:
        c = ctx.cluster
        clients = [h for h in ctx.lab.kubernetes_nodes if h is not ctx.host]
        edges = tuple(Edge(h.hostname, ctx.host.hostname, (f"API {c.api_url}",)) for h in clients)
        return GraphPart(edges=edges, key="api", path={
            "url": c.api_url, "name": c.api_name, "port": c.api_port, "server": ctx.host.hostname,
            "address": str(ctx.host.ip), "clients": [h.hostname for h in clients]})


def arm64_overrides(host, role: ControlPlane) -> bool:
    """The aarch64 rule, once: an aarch64 control plane gets the etcd override (and the CoreDNS pin)."""
    return host.arch == "aarch64" and role.arm64_overrides
