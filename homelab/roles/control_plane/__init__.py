"""ControlPlane: the Kubernetes control plane (NixOS roles master + node), on exactly one host.

Everything about it: its settings, the modules it writes (the shared node base,
``modules/k8s/master.nix`` and, on aarch64, ``modules/k8s/arm64.nix``), the
API-address rules, the ports it listens on, what must run, and the API arrows
of the diagram.

The aarch64 rule lives here, once (:func:`arm64_overrides`): etcd refuses to
start on arm64 without ``ETCD_UNSUPPORTED_ARCH=arm64``.

The DNS addon's image is a cluster-wide choice made here (``coredns_image``)
and written for every node (:func:`homelab.roles.kubernetes.dns_image`): each
node seeds its own image and the Deployment names the control plane's, so all
nodes must seed one name:tag.  Up to nixos-25.11 the addon's default image was
an amd64-only pull (nixpkgs #398895), which is why the seed article pinned an
arm64 one; 26.05 builds the default from ``pkgs.coredns`` on each node, tagged
with its store hash (one tag per architecture), so homelab builds the same
image with a fixed tag instead.

Facts from nixpkgs (nixos-26.05): ``kubernetes/apiserver.nix`` (advertise
address, securePort, ``preferredAddressTypes``; ``services.etcd.name`` is
``mkDefault masterAddress`` there), ``kubernetes/pki.nix`` (easyCerts: cfssl,
the cluster CA, on port 8888), ``kubernetes/addons/dns.nix``
(``corednsImage``, a package since 26.05).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Iterable

import attrs

from ... import checks, fields
from ... import optiontypes as t
from ...component import releases
from ...contract import PARTIAL, OptionFact
from ...errors import Problem
from ...model import Pkg, PkgCall
from ...role import ADMINS, NODES, PODS, Edge, Flow, GraphPart, HostContext, Module, Port, Role, section
from .. import kubernetes

CFSSL_PORT = 8888  # easyCerts' CA (services.cfssl.port) on the control plane
ETCD_PORT = 2379
# Ports the control plane listens on besides every node's and the API server's own.
# (etcd listens on 127.0.0.1 only under easyCerts; the controller manager and the scheduler on 127.0.0.1:10252
# and 10251: kubernetes/pki.nix, controller-manager.nix, scheduler.nix)
CONTROL_PLANE_PORTS = (
    Port(ETCD_PORT, "tcp", "etcd", loopback=True),
    Port(2380, "tcp", "etcd (peer)", loopback=True),
    Port(10252, "tcp", "kube-controller-manager", loopback=True),
    Port(10251, "tcp", "kube-scheduler", loopback=True),
)
# How the API server reaches kubelets (kube-apiserver --kubelet-preferred-address-types)
PREFERRED_ADDRESS_TYPES = "Hostname"
CONTROL_PLANE_UNITS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-addon-manager",
                       *kubernetes.NODE_UNITS)


@attrs.frozen
class CorednsImage:
    """A pinned CoreDNS image for the Kubernetes DNS addon, pulled from a registry.

    Written on every Kubernetes node as ``services.kubernetes.addons.dns.corednsImage =
    pkgs.dockerTools.pullImage { ... }`` (nixos-26.05 renamed the old
    ``addons.dns.coredns`` attribute set to ``corednsImage``, a package).
    ``sha256`` is the hash of the pulled image for ``arch``: a pin is one
    architecture's image, so every Kubernetes node of the lab must be of that
    architecture (homelab refuses a pin in a mixed lab).
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

    @property
    def system_arch(self) -> str:
        """The NixOS architecture whose nodes can run it (aarch64, x86_64)."""
        return {"arm64": "aarch64", "amd64": "x86_64"}[self.arch]


# The seed article's pin: coredns/coredns 1.10.1 for arm64.  Up to nixos-25.11
# the addon pulled that image with an amd64 hash, which failed on arm64
# (nixpkgs #398895); the article pinned the same digest with the arm64 hash.
# No longer the default: 26.05 builds the image from pkgs.coredns, and a pin
# is one architecture's image, so it only fits a lab whose nodes are all
# aarch64: ControlPlane(coredns_image=ARM64_COREDNS) there.
ARM64_COREDNS = CorednsImage(
    imageName="coredns/coredns",
    imageDigest="sha256:a0ead06651cf580044aeb0a0feba63591858fb2e43ade8c9dea45a6a89ae7e5e",
    finalImageTag="1.10.1",
    sha256="0c4vdbklgjrzi6qc5020dvi8x3mayq4li09rrq2w0hcjdljj0yf9",
)


HELM_OPTION = OptionFact("environment.systemPackages", t.ListOf(t.Package()), "nixos/modules/config/system-path.nix",
                         "listOf package; definitions concatenate (the module adds corePackages and "
                         "defaultPackages); linked into /run/current-system/sw", status=PARTIAL,
                         nix_type="`listOf package`: definitions concatenate",
                         nix_default="`[ ]`; the module itself adds `corePackages` and `defaultPackages`",
                         evidence="S")


def helm_module(lab) -> Module | None:
    """``modules/k8s/helm.nix`` for the control plane when the lab has releases: helm, which ``homelab deploy``
    runs there (with the cluster-admin kubeconfig) to apply them."""
    if not releases(lab):
        return None
    return Module("modules/k8s/helm.nix", "helm on the control plane, for the cluster layer", (
        section("`homelab deploy` applies cluster/helmfile.yaml from here: helm upgrade --install per release, "
                "with the cluster-admin kubeconfig.", ("environment.systemPackages", [Pkg("kubernetes-helm")])),),
        source="the cluster layer (cluster/helmfile.yaml)")


@attrs.frozen
class ControlPlane(Role):
    """Kubernetes control plane: NixOS roles master + node, API server, DNS addon.

    On an aarch64 host etcd gets ``ETCD_UNSUPPORTED_ARCH=arm64``; leave
    ``arm64_overrides`` on unless you know your etcd build supports arm64.

    ``coredns_image`` is the DNS addon's image, written for every Kubernetes
    node: ``"auto"`` builds ``coredns:homelab`` from ``pkgs.coredns`` on each
    node (right on any mix of architectures); ``None`` keeps nixpkgs' default,
    tagged with its store hash, which only agrees between nodes of one
    architecture; a :class:`CorednsImage` pulls that pin, one architecture's
    image, on every node.
    """

    allow_privileged: bool = attrs.field(default=True, validator=fields.a_bool)
    dns_addon: bool = attrs.field(default=True, validator=fields.a_bool)
    # "auto": coredns:homelab built on every node; None: nixpkgs' default image (single-architecture labs);
    # a CorednsImage: that pin on every node (all of its architecture)
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
    lab_needs = "one host must run the Kubernetes control plane"
    options = kubernetes.OPTIONS + (HELM_OPTION,)

    # ---------------------------------------------------------------- compile

    def dns_image(self) -> PkgCall | None:
        """What every node writes as the DNS addon's image (None: nothing, nixpkgs' default or no addon)."""
        if not self.dns_addon or self.coredns_image is None:
            return None
        if isinstance(self.coredns_image, CorednsImage):
            return self.coredns_image.package()
        return kubernetes.coredns_image()

    def dns_image_reference(self) -> str | None:
        """The image every node must hold in containerd for the DNS Deployment (None: unknown or no addon)."""
        if not self.dns_addon or self.coredns_image is None:
            return None
        if isinstance(self.coredns_image, CorednsImage):
            return kubernetes.image_reference(self.coredns_image.imageName, self.coredns_image.finalImageTag)
        return kubernetes.image_reference(kubernetes.COREDNS_IMAGE_NAME, kubernetes.COREDNS_IMAGE_TAG)

    def compile(self, ctx: HostContext) -> Iterable[Module]:
        yield from kubernetes.node_modules(ctx)
        yield self._master(ctx)
        helm = helm_module(ctx.lab)  # the cluster layer is applied from the control plane
        if helm is not None:
            yield helm
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
            section("The API server reaches kubelets by name (every node's /etc/hosts has them); easyCerts' "
                    "kubelet certificates name only that.",
                    ("services.kubernetes.apiserver.preferredAddressTypes", PREFERRED_ADDRESS_TYPES)),
            section("Cluster DNS (the CoreDNS addon).", ("services.kubernetes.addons.dns.enable", self.dns_addon)),
        ]
        return Module("modules/k8s/master.nix", "Kubernetes control plane: roles master + node", sections)

    def _arm64(self) -> Module:
        sections = [
            section("etcd refuses to start on arm64 unless told the architecture is unsupported on purpose.",
                    ("systemd.services.etcd.environment", {"ETCD_UNSUPPORTED_ARCH": "arm64"})),
        ]
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

    def sources(self, ctx: HostContext):
        return kubernetes.node_sources(ctx)

    def flows(self, ctx: HostContext) -> Iterable[Flow]:
        c = ctx.cluster
        yield from kubernetes.node_flows(ctx)
        for source, who in ((NODES, "the nodes' kubelets, kube-proxy and flannel"),
                            (PODS, "pods (in-cluster clients, through the kubernetes Service)"),
                            (ADMINS, "admins (kubectl)")):
            yield Flow(c.api_port, "tcp", source, f"the API server, for {who}")
        if c.easy_certs:
            yield Flow(CFSSL_PORT, "tcp", NODES, "cfssl, the easyCerts CA: nodes fetch their certificates")

    def check(self, ctx: HostContext) -> Iterable[Problem]:
        yield from kubernetes.node_problems(ctx)
        if ctx.host.arch == "aarch64" and not self.arm64_overrides:
            yield self.error(ctx, "arm64_overrides", "etcd does not start on aarch64 without "
                             "ETCD_UNSUPPORTED_ARCH=arm64; leave arm64_overrides on")

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
                yield Problem(lab.where(h), "hostname", f"{h.hostname!r} is also the cluster's api_name: every "
                              f"node's /etc/hosts maps this worker's name to {h.ip} (networking.hosts) ahead of "
                              "the API line (extraHosts), so the API name would lead every node to this worker; "
                              "rename the host or api_name")
        if c.api_port in fields.NODEPORT_RANGE:
            yield Problem("cluster", "api_port", f"{c.api_port} lies in the NodePort range 30000-32767: a Service "
                          "given that NodePort would take the API's traffic on every node (kube-proxy redirects "
                          "it), and workers could no longer reach the API")
        yield from cls._dns_image_problems(lab, cp)
        for h in nodes:
            if h is not cp and h.ip in c.lan and cp.ip not in c.lan:
                yield Problem(lab.where(h), "roles", f"this worker cannot reach the API address {c.api_name}: "
                              f"the control plane {cp.ip} is not on the LAN {c.lan}")

    @staticmethod
    def _dns_image_problems(lab, cp) -> Iterable[Problem]:
        """Every node seeds the DNS image it writes, the Deployment runs the control plane's: they must agree."""
        role = kubernetes.control_plane_role(lab)
        if not isinstance(role, ControlPlane) or not role.dns_addon:
            return
        arches = sorted({h.arch for h in lab.kubernetes_nodes})
        where = f"{lab.where(cp)}"
        if isinstance(role.coredns_image, CorednsImage):
            other = [h for h in lab.kubernetes_nodes if h.arch != role.coredns_image.system_arch]
            if other:
                names = ", ".join(f"{h.hostname} ({h.arch})" for h in other)
                yield Problem(where, "ControlPlane.coredns_image", f"the pinned image is for "
                              f"{role.coredns_image.arch}, and every Kubernetes node seeds it for the CoreDNS "
                              f"Deployment, which may run on any node: {names} cannot run it; drop the pin "
                              "(\"auto\" builds coredns:homelab on every node for its own architecture)")
        elif role.coredns_image is None and len(arches) > 1:
            yield Problem(where, "ControlPlane.coredns_image", "None keeps nixpkgs' default image, tagged with its "
                          f"store hash, which differs between architectures ({', '.join(arches)} here): the CoreDNS "
                          "Deployment names the control plane's tag, and replicas on other nodes cannot find it "
                          "(imagePullPolicy Never); use \"auto\"")

    # ---------------------------------------------------------------- expectations and diagram

    def expectations(self, ctx: HostContext) -> Iterable[checks.Check]:
        c, host = ctx.cluster, ctx.host
        yield from kubernetes.node_expectations(ctx, "host")
        why = "ControlPlane role (services.kubernetes.roles = master + node)"
        for unit in CONTROL_PLANE_UNITS:
            yield checks.service(f"{unit}.service", "host", why)
        if c.easy_certs:
            yield checks.service("cfssl.service", "host", "easyCerts: the cluster CA runs on the control plane")
            yield checks.service("certmgr.service", "host", "easyCerts: certificates for the node's own services")
            yield checks.listening("tcp", CFSSL_PORT, "host", "cfssl, the easyCerts CA")
        yield checks.listening("tcp", c.api_port, "host", "kube-apiserver securePort")
        yield checks.listening("tcp", ETCD_PORT, "host", "etcd clients (easyCerts binds it to 127.0.0.1)",
                               loopback=c.easy_certs)
        yield checks.listening("tcp", kubernetes.KUBELET_PORT, "host", "kubelet")
        yield checks.systemd_property("kube-apiserver.service", "ExecStart",
                                      f"--kubelet-preferred-address-types={PREFERRED_ADDRESS_TYPES}", "contains",
                                      "the API server reaches kubelets by the name their certificates carry")
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
