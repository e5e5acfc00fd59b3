"""What every Kubernetes node shares, written once: NixOS's services.kubernetes facts.

The :class:`~homelab.roles.control_plane.ControlPlane` and
:class:`~homelab.roles.worker.Worker` roles both make a host a Kubernetes node;
what that means (the shared base module, the per-host node address, the ports
every node listens on, what must run) lives here, and both roles use it.

Facts from nixpkgs (nixos-26.05; see docs/nixpkgs-facts.md) relied on here:

* ``kubernetes/default.nix``: any role turns flannel and easyCerts on
  (mkDefault); ``apiserverAddress`` has no port where ``advertiseAddress`` is set
  (the control plane) and takes the node's own ``securePort`` elsewhere.
* ``kubernetes/kubelet.nix``: the kubelet loads ``br_netfilter`` and ``overlay``
  and listens on 10250; kube-proxy serves health on 10256 and metrics on
  127.0.0.1:10249.  The kubelet registers as the lower-cased
  ``networking.fqdnOrHostName`` (kube-proxy as ``networking.hostName``), and
  easyCerts' serving certificate names only that; the API server reaches
  kubelets by that name (``preferredAddressTypes``, see the control plane), so
  every node's ``/etc/hosts`` maps every node's name to its LAN address
  (``networking.hosts``, ``config/networking.nix``).
* ``kubernetes/addons/dns.nix``: the DNS addon's Service address is the service
  range's first three octets followed by ``.254``; the addon is on (mkDefault)
  on every node, each node seeds ``corednsImage`` into its own containerd, and
  the Deployment (rendered on the control plane, ``imagePullPolicy = "Never"``)
  names the control plane's image as ``<imageName>:<imageTag>``.  So every node
  gets one explicitly tagged image, built from its own ``pkgs.coredns``
  (:func:`coredns_image`): one name:tag on every architecture.
"""

from __future__ import annotations

import ipaddress

from ... import checks, labels
from ... import optiontypes as t
from ...contract import PARTIAL, OptionFact
from ...model import Pkg, PkgCall
from ...role import CONTROL_PLANE, NODES, Flow, HostContext, Module, Port, section
from ...sources import Match

K8S = "nixos/modules/services/cluster/kubernetes/"

OPTIONS: tuple[OptionFact, ...] = (
    OptionFact("services.kubernetes.roles", t.ListOf(t.Enum(("master", "node"))), K8S + "default.nix",
               "any role turns flannel and easyCerts on by mkDefault; master also enables etcd",
               nix_type="`listOf (enum [ \"master\" \"node\" ])`",
               nix_default="`[ ]`",
               evidence="S + U2"),
    OptionFact("services.kubernetes.masterAddress", t.str_, K8S + "default.nix", "no default: must be set",
               nix_type="`str`",
               nix_default="none: must be set",
               evidence="S + U2"),
    OptionFact("services.kubernetes.apiserverAddress", t.str_, K8S + "default.nix",
               "no option default; the module derives https://<advertiseAddress> without a port where "
               "apiserver.advertiseAddress is set (the control plane), else https://<masterAddress>:<securePort> "
               "with the node's own securePort; homelab writes it with the port on every node",
               nix_type="`str`",
               nix_default="no option default; the module sets one by `mkDefault` (see below)",
               evidence="S + U2"),
    OptionFact("services.kubernetes.easyCerts", t.bool_, K8S + "default.nix",
               "default false, mkDefault true once roles is non-empty; nixpkgs: not for production",
               nix_type="`bool`",
               nix_default="`false` (`mkDefault true` once `roles` is non-empty)",
               evidence="S + U2"),
    OptionFact("networking.hosts", t.AttrsOf(t.ListOf(t.str_)), "nixos/modules/config/networking.nix",
               "IP -> names, one /etc/hosts line per IP in attribute-name order, after localhost and before "
               "extraHosts; the module itself maps the host's own name to 127.0.0.2",
               nix_type="`attrsOf (listOf str)`: address → names; definitions for one address concatenate",
               nix_default="no option default; the module itself maps `127.0.0.2` to the host's own name (FQDN "
                           "first when `networking.domain` is set)",
               evidence="S"),
    OptionFact("services.kubernetes.apiserver.preferredAddressTypes", t.NullOr(t.str_), K8S + "apiserver.nix",
               "default null: no --kubelet-preferred-address-types flag, Kubernetes' own order (Hostname first)",
               nix_type="`nullOr str`",
               nix_default="`null`: no `--kubelet-preferred-address-types` flag, so Kubernetes' own order "
                           "applies (Hostname first)",
               evidence="S"),
    OptionFact("services.kubernetes.kubelet.nodeIp", t.NullOr(t.str_), K8S + "kubelet.nix",
               "default null (the kubelet picks an address itself); nixpkgs' own kubernetes tests set it",
               status=PARTIAL,
               nix_type="`nullOr str`",
               nix_default="`null`",
               evidence="nixos/tests/kubernetes/base.nix (sets it), review of the S snapshot"),
    OptionFact("services.flannel.iface", t.NullOr(t.str_), "nixos/modules/services/networking/flannel.nix",
               "default null (flannel takes the default route's interface); nixpkgs' kubernetes tests set it",
               status=PARTIAL,
               nix_type="`nullOr str`",
               nix_default="`null`",
               evidence="nixos/tests/kubernetes/base.nix (sets it), review of the S snapshot"),
    OptionFact("services.kubernetes.clusterCidr", t.NullOr(t.str_), K8S + "default.nix",
               "default 10.1.0.0/16; also flannel's network",
               nix_type="`nullOr str`",
               nix_default="`\"10.1.0.0/16\"`",
               evidence="S + U2"),
    OptionFact("services.kubernetes.apiserver.advertiseAddress", t.NullOr(t.str_), K8S + "apiserver.nix",
               "setting it drops the port from the derived apiserverAddress",
               nix_type="`nullOr str`",
               nix_default="`null`",
               evidence="S + U2"),
    OptionFact("services.kubernetes.apiserver.securePort", t.int_, K8S + "apiserver.nix",
               "plain types.int, not types.port; default 6443",
               nix_type="`int` (plain int, not `port`)",
               nix_default="`6443`",
               evidence="S + U2"),
    OptionFact("services.kubernetes.apiserver.allowPrivileged", t.bool_, K8S + "apiserver.nix",
               "defaults to false",
               nix_type="`bool`",
               nix_default="`false`",
               evidence="S + U2"),
    OptionFact("services.kubernetes.apiserver.serviceClusterIpRange", t.str_, K8S + "apiserver.nix",
               "default 10.0.0.0/24; the DNS addon's clusterIp defaults to its first three octets + .254",
               nix_type="`str`",
               nix_default="`\"10.0.0.0/24\"`",
               evidence="S + U2"),
    OptionFact("services.kubernetes.addons.dns.enable", t.bool_, K8S + "addons/dns.nix",
               "option default false, but kubernetes/default.nix sets mkDefault true with any component on",
               nix_type="`bool` (an enable option)",
               nix_default="`false`, but `kubernetes/default.nix` sets `mkDefault true` whenever a Kubernetes "
                           "component is on",
               evidence="S + U1 + U2"),
    OptionFact("services.kubernetes.addons.dns.corednsImage", t.Package(), K8S + "addons/dns.nix",
               "new in 26.05 (the attrs option addons.dns.coredns was renamed to it); every node seeds it, the "
               "control plane's Deployment runs imageName:imageTag with imagePullPolicy Never; the default is "
               "tagged with its store hash, different per architecture, so homelab writes one tagged image "
               "on every node", status=PARTIAL,
               nix_type="`package` (new in 26.05; replaces the `attrs` option `addons.dns.coredns`)",
               nix_default="a `dockerTools.buildImage` image named `coredns` whose entry point is "
                           "`pkgs.coredns`'s binary, with no tag (so tagged with its own store hash)",
               evidence="S + RN + GH #424296"),
    OptionFact("services.kubernetes.kubelet.extraOpts", t.separatedString(" "), K8S + "kubelet.nix",
               "appended last to the kubelet command line; definitions join with one space",
               nix_type="`separatedString \" \"`",
               nix_default="`\"\"`",
               evidence="S + U1"),
    OptionFact("services.kubernetes.proxy.extraOpts", t.separatedString(" "), K8S + "proxy.nix",
               "appended to kube-proxy's command line; definitions join with one space",
               nix_type="`separatedString \" \"`",
               nix_default="`\"\"`; appended last to kube-proxy's command line",
               evidence="S"),
    OptionFact("services.kubernetes.flannel.openFirewallPorts", t.bool_, K8S + "flannel.nix",
               "default true: opens flannel's UDP ports (8285, 8472) to every source on every interface",
               nix_type="`bool`",
               nix_default="`true`: opens flannel's UDP ports 8285 and 8472 to every source on every interface",
               evidence="S"),
    OptionFact("services.kubernetes.kubelet.kubeconfig.server", t.str_, K8S + "kubelet.nix",
               "types.str without a default of its own (option set built by mkKubeConfigOptions in "
               "kubernetes/default.nix); kubelet.nix sets mkDefault apiserverAddress",
               nix_type="`str`",
               nix_default="no option default; `kubelet.nix` sets `mkDefault` to `apiserverAddress`",
               evidence="S + U1 + U2; IX for the call in `kubelet.nix`",
               declared_note="(the option set comes from the helper `mkKubeConfigOptions` in "
                             "`kubernetes/default.nix`)"),
)

KUBELET_PORT = 10250
NODEPORT_ADDRESSES = "127.0.0.0/8"  # kube-proxy --nodeport-addresses: NodePorts on loopback only
# kube-proxy's flags: iptables mode named (its Linux default today; nftables mode serves no NodePorts on loopback,
# and upstream plans to change the default), and NodePorts on loopback only
PROXY_OPTS = f"--proxy-mode=iptables --nodeport-addresses={NODEPORT_ADDRESSES}"
FLANNEL_VXLAN_PORT = 8472  # flannel's vxlan backend (the kubernetes flannel module's default backend)
# where pods' traffic reaches their host: the CNI bridge nixpkgs' kubernetes/flannel.nix names "mynet" (pods of
# this node) and flannel's VXLAN device "flannel.1" (pods of other nodes, flannel's own naming)
POD_INTERFACES = ("mynet", "flannel.1")
# Ports every Kubernetes node listens on.
NODE_PORTS = (
    Port(KUBELET_PORT, "tcp", "the kubelet"),
    Port(10248, "tcp", "the kubelet (health)", loopback=True),  # kubelet.nix healthz.bind/port
    Port(10249, "tcp", "kube-proxy (metrics)", loopback=True),
    Port(10256, "tcp", "kube-proxy (health)"),
    Port(FLANNEL_VXLAN_PORT, "udp", "flannel (VXLAN)"),  # flannel's vxlan backend, nixpkgs' default
)
CERTMGR_PORT = Port(9488, "tcp", "certmgr (metrics)", loopback=True)  # certmgr.nix metricsPort; easyCerts runs it


def node_ports(ctx: HostContext) -> tuple[Port, ...]:
    """What every Kubernetes node listens on (certmgr only with easyCerts)."""
    return NODE_PORTS + ((CERTMGR_PORT,) if ctx.cluster.easy_certs else ())
NODE_UNITS = ("kubelet", "kube-proxy", "flannel")

# The DNS addon's image, the same name:tag on every node (see coredns_image).
COREDNS_IMAGE_NAME = "coredns"
COREDNS_IMAGE_TAG = "homelab"


def coredns_image() -> PkgCall:
    """The DNS addon's CoreDNS image as every node builds it from its own ``pkgs.coredns``.

    nixpkgs' default (addons/dns.nix) is ``dockerTools.buildImage`` named ``coredns`` with the
    coredns binary as entry point and no tag, so the tag is the image's store hash: different on
    each architecture.  This is the same image with a fixed tag, its root built the way
    kubelet.nix builds the pause image every node seeds (a ``buildEnv`` of the package's
    ``/bin``), so the Deployment's ``coredns:homelab`` exists on every node, built for that node.
    """
    return PkgCall("dockerTools.buildImage", {
        "name": COREDNS_IMAGE_NAME,
        "tag": COREDNS_IMAGE_TAG,
        "copyToRoot": PkgCall("buildEnv", {"name": "coredns-root", "paths": [Pkg("coredns")],
                                           "pathsToLink": ["/bin"]}),
        "config": {"Entrypoint": ["/bin/coredns"]},
    })


def image_reference(name: str, tag: str) -> str:
    """The reference containerd lists for an image imported as ``name:tag`` (Docker's normalisation)."""
    first = name.split("/", 1)[0]
    if "/" in name and ("." in first or ":" in first or first == "localhost"):
        return f"{name}:{tag}"
    return f"docker.io/{name if '/' in name else 'library/' + name}:{tag}"


def kubelet_name(host) -> str:
    """The name a node's kubelet registers with: nixpkgs' lower-cased fqdnOrHostName, i.e. the hostname (homelab
    hostnames are lower-case labels, and :func:`node_problems` refuses a networking.domain on a node)."""
    return host.hostname


def node_names(lab) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(LAN address, kubelet names) of every Kubernetes node, by address: what every node's /etc/hosts holds."""
    return lab.derived("kubernetes: node names", lambda: tuple((str(h.ip), (kubelet_name(h),))
                                                 for h in sorted(lab.kubernetes_nodes, key=lambda h: h.ip)))


def base_module(api_name: str, api_url: str, pod_cidr: str, easy_certs: bool, cp_ip: str,
                dns_image: PkgCall | None, nodes: tuple[tuple[str, tuple[str, ...]], ...]) -> Module:
    """modules/k8s/base.nix: what every node needs to find the control plane and every other node (one file for
    the lab)."""
    sections = [
        section(
            "The API server reaches each kubelet by the name it registers with, which its certificate names; "
            "every node resolves every node's name itself, not through the router's DNS.",
            ("networking.hosts", {ip: list(names) for ip, names in nodes}),
        ),
        section(
            "Every node finds the API server by name; the control plane's LAN address answers for it.",
            ("networking.extraHosts", f"{cp_ip} {api_name}\n"),
        ),
        section(
            "apiserverAddress with the port, the same on every node: nixpkgs derives it without one where "
            "advertiseAddress is set (the control plane), and from the node's own securePort elsewhere.",
            ("services.kubernetes.masterAddress", api_name),
            ("services.kubernetes.apiserverAddress", api_url),
            ("services.kubernetes.clusterCidr", pod_cidr),
            ("services.kubernetes.easyCerts", easy_certs),
        ),
        section(
            "flannel would open its UDP ports to every source; the nodes' firewall opens VXLAN to the nodes' "
            "LAN addresses only.",
            ("services.kubernetes.flannel.openFirewallPorts", False),
        ),
        section(
            "NodePorts answer on loopback only: kube-proxy rewrites NodePort traffic before the host's firewall "
            "sees it, so a NodePort on the LAN address would be open to everyone. The ingress proxy reaches "
            "its NodePorts on 127.0.0.1. iptables mode is named: in nftables mode kube-proxy serves no NodePort "
            "on loopback.",
            ("services.kubernetes.proxy.extraOpts", PROXY_OPTS),
        ),
    ]
    if dns_image is not None:
        sections.append(section(
            "Every node seeds the DNS addon's image into its own containerd, and the CoreDNS Deployment "
            "(imagePullPolicy Never) names the control plane's: one name:tag, built on each node for its "
            "own architecture.",
            ("services.kubernetes.addons.dns.corednsImage", dns_image)))
    return Module("modules/k8s/base.nix", "Kubernetes settings shared by every node", sections, source="")


def control_plane_role(lab):
    """The role that makes the lab's control plane one (ControlPlane, or a lab's own)."""
    return next(r for r in lab.control_plane.roles if r.control_plane)


def dns_image(lab) -> PkgCall | None:
    """The DNS addon's image every node writes (None: the addon is off, or nixpkgs' own default is kept)."""
    role = control_plane_role(lab)
    image = getattr(role, "dns_image", None)
    return image() if image is not None else None


def node_modules(ctx: HostContext) -> list[Module]:
    """The modules every Kubernetes node imports (the lab must have its one control plane)."""
    c = ctx.cluster
    cp = ctx.lab.control_plane
    return [ctx.lab.derived("kubernetes: base module", lambda: base_module(
        c.api_name, c.api_url, str(c.pod_cidr), c.easy_certs, str(cp.ip), dns_image(ctx.lab), node_names(ctx.lab)))]


# raw options that would rename a node's kubelet away from the name every node's /etc/hosts and easyCerts use
_RENAMING = ("networking.domain", "networking.fqdn", "services.kubernetes.kubelet.hostname")


def node_problems(ctx: HostContext) -> list:
    """A Kubernetes node's raw options must leave its kubelet named like the host."""
    out = []
    for path in _RENAMING:
        if ctx.host.options.get(path) is not None:
            out.append(ctx.error("options", f"{path!r} renames this node's kubelet (nixpkgs names it after the "
                                 "lower-cased networking.fqdnOrHostName, kube-proxy after networking.hostName), "
                                 "and every node's /etc/hosts and easyCerts' kubelet certificate use the "
                                 f"hostname {ctx.host.hostname!r}; leave it unset on Kubernetes nodes"))
    return out


def node_host_sections(ctx: HostContext):
    h = ctx.host
    out = [section(
        "Kubernetes uses the LAN address, not another interface's (Tailscale adds one).",
        ("services.kubernetes.kubelet.nodeIp", str(h.ip)),
        ("services.flannel.iface", h.interface),
    )]
    node_labels = labels.node_labels(ctx.lab, h)
    if node_labels:
        out.append(section(
            "The node's labels, registered by its kubelet (nixpkgs has no option for them; extraOpts comes last "
            "on the kubelet's command line); the cluster layer's nodeSelectors choose nodes by them.",
            ("services.kubernetes.kubelet.extraOpts", labels.node_labels_flag(node_labels))))
    return out


def node_sources(ctx: HostContext) -> list[tuple[str, Match]]:
    """The pods, on a node: the pod range arriving on the pods' own interfaces (never on the LAN)."""
    # the lab's pod range on each pod interface: the same for every node, made once per lab (the lab, and so its
    # cluster, never changes); a fresh list each time, of the same Match values
    return list(ctx.lab.derived("kubernetes: pod sources", lambda: tuple(
        ("pods", Match(4, i, str(ctx.cluster.pod_cidr))) for i in POD_INTERFACES)))


# made of constants only, and a Flow is frozen and holds only immutable values: one object of each serves every node
_NODE_FLOWS = (
    Flow(KUBELET_PORT, "tcp", CONTROL_PLANE, "the API server reaches the kubelet (logs, exec, port-forward)"),
    Flow(FLANNEL_VXLAN_PORT, "udp", NODES, "flannel: pod traffic between nodes (VXLAN)"),
)


def node_flows(ctx: HostContext) -> list[Flow]:
    """What every node lets in: the control plane's API server reaching its kubelet, the other nodes' VXLAN."""
    return list(_NODE_FLOWS)


def _is_address(name: str) -> bool:
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True


def dns_addon_ip(service_cidr: ipaddress.IPv4Network) -> str:
    """The DNS addon's Service address, as nixpkgs' addons/dns.nix computes it (x.y.z.254)."""
    return ".".join(str(service_cidr.network_address).split(".")[:3]) + ".254"


def node_expectations(ctx: HostContext, kubelet_scope: str) -> list[checks.Check]:
    """What every node must have; ``kubelet_scope``: when its kubelet runs (a worker's only after joining)."""
    why = "Kubernetes node (nixpkgs kubelet.nix loads it)"
    out = [checks.kernel_module("br_netfilter", why), checks.kernel_module("overlay", why),
           checks.service("containerd.service", "host", "container runtime of every Kubernetes node"),
           checks.systemd_property("kube-proxy.service", "ExecStart", PROXY_OPTS,
                                   "contains", "NodePorts answer on loopback only (kube-proxy rewrites them before "
                                   "the firewall sees them)")]
    window = checks.node_window(ctx.lab, ctx.host)  # the shared base module's entries it looks for (all in small labs)
    for other in (ctx.lab.host(n) for n in sorted(window)):
        if other is not ctx.host:  # its own name is NixOS's 127.0.0.2 line
            out.append(checks.hosts_entry(kubelet_name(other), str(other.ip), "the API server reaches kubelets by "
                                          "name, and every node resolves every node's name from /etc/hosts"))
    api = ctx.cluster.api_name
    if not _is_address(api):
        out.append(checks.hosts_entry(api, str(ctx.lab.control_plane.ip), "every node finds the API server by "
                                      "name (extraHosts)"))
    node_labels = labels.node_labels(ctx.lab, ctx.host)
    if node_labels:
        out.append(checks.systemd_property("kubelet.service", "ExecStart", labels.node_labels_flag(node_labels),
                                           "contains", "the node's labels, which the cluster layer's "
                                           "nodeSelectors choose it by (--node-labels)"))
    reference = getattr(control_plane_role(ctx.lab), "dns_image_reference", lambda: None)()
    if reference is not None:
        out.append(checks.container_image(
            reference, kubelet_scope, "the kubelet seeds the DNS addon's image; the CoreDNS Deployment "
            "(imagePullPolicy Never) may run on any node and names exactly this image"))
    return out


def cluster_dns_check(ctx: HostContext) -> checks.Check:
    """From a node: the DNS addon answers for the ``kubernetes`` Service (the range's first address)."""
    c = ctx.cluster
    server = dns_addon_ip(c.service_cidr)
    return checks.dns("kubernetes.default.svc.cluster.local", server, 53, "cluster",
                      "cluster DNS (the CoreDNS addon) answers Services",
                      answer=str(c.service_cidr.network_address + 1))
