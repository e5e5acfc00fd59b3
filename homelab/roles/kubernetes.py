"""What every Kubernetes node shares, written once: NixOS's services.kubernetes facts.

The :class:`~homelab.roles.control_plane.ControlPlane` and
:class:`~homelab.roles.worker.Worker` roles both make a host a Kubernetes node;
what that means (the shared base module, the per-host node address, the ports
every node listens on, what must run) lives here, and both roles use it.

Facts from nixpkgs (nixos-26.05; see docs/nixpkgs-facts.md) relied on here:

* ``kubernetes/default.nix``: any role turns flannel and easyCerts on
  (mkDefault); ``apiserverAddress`` has no port once ``advertiseAddress`` is set.
* ``kubernetes/kubelet.nix``: the kubelet loads ``br_netfilter`` and ``overlay``
  and listens on 10250; kube-proxy serves health on 10256 and metrics on
  127.0.0.1:10249.
* ``kubernetes/addons/dns.nix``: the DNS addon's Service address is the service
  range's first three octets followed by ``.254``.
"""

from __future__ import annotations

import functools
import ipaddress

from .. import checks
from .. import optiontypes as t
from ..contract import PARTIAL, OptionFact
from ..role import HostContext, Module, Port, section

K8S = "nixos/modules/services/cluster/kubernetes/"

OPTIONS: tuple[OptionFact, ...] = (
    OptionFact("services.kubernetes.roles", t.ListOf(t.Enum(("master", "node"))), K8S + "default.nix",
               "any role turns flannel and easyCerts on by mkDefault; master also enables etcd"),
    OptionFact("services.kubernetes.masterAddress", t.str_, K8S + "default.nix", "no default: must be set"),
    OptionFact("services.kubernetes.apiserverAddress", t.str_, K8S + "default.nix",
               "no option default; with apiserver.advertiseAddress set the module derives "
               "https://<advertiseAddress> without a port, so homelab writes it with the port"),
    OptionFact("services.kubernetes.easyCerts", t.bool_, K8S + "default.nix",
               "default false, mkDefault true once roles is non-empty; nixpkgs: not for production"),
    OptionFact("services.etcd.name", t.str_, "nixos/modules/services/databases/etcd.nix",
               "default networking.hostName; easyCerts' pki.nix sets initialCluster to "
               "[ \"<masterAddress>=https://etcd.local:2380\" ], so the member must be named masterAddress",
               status=PARTIAL),
    OptionFact("services.kubernetes.kubelet.nodeIp", t.NullOr(t.str_), K8S + "kubelet.nix",
               "default null (the kubelet picks an address itself); nixpkgs' own kubernetes tests set it",
               status=PARTIAL),
    OptionFact("services.flannel.iface", t.NullOr(t.str_), "nixos/modules/services/networking/flannel.nix",
               "default null (flannel takes the default route's interface); nixpkgs' kubernetes tests set it",
               status=PARTIAL),
    OptionFact("services.kubernetes.clusterCidr", t.NullOr(t.str_), K8S + "default.nix",
               "default 10.1.0.0/16; also flannel's network"),
    OptionFact("services.kubernetes.apiserver.advertiseAddress", t.NullOr(t.str_), K8S + "apiserver.nix",
               "setting it drops the port from the derived apiserverAddress"),
    OptionFact("services.kubernetes.apiserver.securePort", t.int_, K8S + "apiserver.nix",
               "plain types.int, not types.port; default 6443"),
    OptionFact("services.kubernetes.apiserver.allowPrivileged", t.bool_, K8S + "apiserver.nix",
               "defaults to false"),
    OptionFact("services.kubernetes.apiserver.serviceClusterIpRange", t.str_, K8S + "apiserver.nix",
               "default 10.0.0.0/24; the DNS addon's clusterIp defaults to its first three octets + .254"),
    OptionFact("services.kubernetes.addons.dns.enable", t.bool_, K8S + "addons/dns.nix",
               "option default false, but kubernetes/default.nix sets mkDefault true with any component on"),
    OptionFact("services.kubernetes.addons.dns.corednsImage", t.Package(), K8S + "addons/dns.nix",
               "new in 26.05 (the attrs option addons.dns.coredns was renamed to it); must be a dockerTools "
               "image: the pod runs imageName:imageTag with imagePullPolicy Never; default built from "
               "pkgs.coredns", status=PARTIAL),
    OptionFact("services.kubernetes.kubelet.extraOpts", t.separatedString(" "), K8S + "kubelet.nix",
               "appended last to the kubelet command line; definitions join with one space"),
    OptionFact("services.kubernetes.kubelet.kubeconfig.server", t.str_, K8S + "kubelet.nix",
               "types.str without a default of its own (option set built by mkKubeConfigOptions in "
               "kubernetes/default.nix); kubelet.nix sets mkDefault apiserverAddress"),
)

KUBELET_PORT = 10250
# Ports every Kubernetes node listens on.
NODE_PORTS = (
    Port(KUBELET_PORT, "tcp", "the kubelet"),
    Port(10248, "tcp", "the kubelet (health)", loopback=True),  # kubelet.nix healthz.bind/port
    Port(10249, "tcp", "kube-proxy (metrics)", loopback=True),
    Port(10256, "tcp", "kube-proxy (health)"),
    Port(8472, "udp", "flannel (VXLAN)"),  # flannel's vxlan backend, nixpkgs' default
)
CERTMGR_PORT = Port(9488, "tcp", "certmgr (metrics)", loopback=True)  # certmgr.nix metricsPort; easyCerts runs it


def node_ports(ctx: HostContext) -> tuple[Port, ...]:
    """What every Kubernetes node listens on (certmgr only with easyCerts)."""
    return NODE_PORTS + ((CERTMGR_PORT,) if ctx.cluster.easy_certs else ())
NODE_UNITS = ("kubelet", "kube-proxy", "flannel")


@functools.lru_cache(maxsize=16)
def base_module(api_name: str, api_url: str, pod_cidr: str, easy_certs: bool, cp_ip: str) -> Module:
    """modules/k8s/base.nix: what every node needs to find the control plane (one file for the lab)."""
    return Module("modules/k8s/base.nix", "Kubernetes settings shared by every node", (
        section(
            "Every node finds the API server by name; the control plane's LAN address answers for it.",
            ("networking.extraHosts", f"{cp_ip} {api_name}\n"),
        ),
        section(
            "With securePort set, apiserverAddress must carry the port: its default has none.",
            ("services.kubernetes.masterAddress", api_name),
            ("services.kubernetes.apiserverAddress", api_url),
            ("services.kubernetes.clusterCidr", pod_cidr),
            ("services.kubernetes.easyCerts", easy_certs),
        ),
    ), source="")


def node_modules(ctx: HostContext) -> list[Module]:
    """The modules every Kubernetes node imports (the lab must have its one control plane)."""
    c = ctx.cluster
    cp = ctx.lab.control_plane
    return [base_module(c.api_name, c.api_url, str(c.pod_cidr), c.easy_certs, str(cp.ip))]


def node_host_sections(ctx: HostContext):
    h = ctx.host
    return [section(
        "Kubernetes uses the LAN address, not another interface's (Tailscale adds one).",
        ("services.kubernetes.kubelet.nodeIp", str(h.ip)),
        ("services.flannel.iface", h.interface),
    )]


def dns_addon_ip(service_cidr: ipaddress.IPv4Network) -> str:
    """The DNS addon's Service address, as nixpkgs' addons/dns.nix computes it (x.y.z.254)."""
    return ".".join(str(service_cidr.network_address).split(".")[:3]) + ".254"


def node_expectations(ctx: HostContext) -> list[checks.Check]:
    why = "Kubernetes node (nixpkgs kubelet.nix loads it)"
    return [checks.kernel_module("br_netfilter", why), checks.kernel_module("overlay", why),
            checks.service("containerd.service", "host", "container runtime of every Kubernetes node")]


def cluster_dns_check(ctx: HostContext) -> checks.Check:
    """From a node: the DNS addon answers for the ``kubernetes`` Service (the range's first address)."""
    c = ctx.cluster
    server = dns_addon_ip(c.service_cidr)
    return checks.dns("kubernetes.default.svc.cluster.local", server, 53, "cluster",
                      "cluster DNS (the CoreDNS addon) answers Services",
                      answer=str(c.service_cidr.network_address + 1))
