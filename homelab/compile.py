"""What a lab means in NixOS: model -> module files of option definitions.

Pure functions.  Each role has one function returning the sections of its
module file; the arm64, Ceph and firewall rules live here and nowhere else.
The result (:class:`Compiled`) is the single source of truth: it is rendered
to Nix, checked against the option contract, and compared with what real nix
reads back from the written files.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs

from . import configs
from .model import (
    ARM64_COREDNS,
    CephStorage,
    Cluster,
    ControlPlane,
    CorednsImage,
    DnsServer,
    Host,
    IngressProxy,
    Lab,
    Pkg,
    PkgCall,
    RaspberryPi4,
    Role,
    SystemdBoot,
    Tailscale,
    Worker,
    option_path,
)

Path = tuple[str, ...]


def opt(dotted: str) -> Path:
    return tuple(dotted.split("."))


@attrs.frozen
class Section:
    """A group of definitions under one comment, like a paragraph of a hand-written module."""

    comment: str
    defs: tuple[tuple[Path, Any], ...]
    user: bool = False  # raw options from host.py: the user's own, exempt from the contract


@attrs.frozen
class ModuleFile:
    path: str  # relative to the lab root
    title: str  # what the file is about, for its header
    source: str  # what it was generated from
    imports: tuple[str, ...]  # as written in the file, relative to it
    sections: tuple[Section, ...]

    def definitions(self) -> list[tuple[Path, Any]]:
        return [d for s in self.sections for d in s.defs]


@attrs.frozen
class HostPlan:
    hostname: str
    entry: str  # hosts/<name>/default.nix
    modules: tuple[str, ...]  # generated files this host imports, in order
    hand_written: tuple[str, ...]  # hand-written imports, relative to the lab root


@attrs.frozen
class Compiled:
    files: dict[str, ModuleFile]
    hosts: dict[str, HostPlan]

    def files_of(self, hostname: str) -> list[str]:
        plan = self.hosts[hostname]
        return [plan.entry, *plan.modules]


def section(comment: str, *defs: tuple[str | Path, Any], user: bool = False) -> Section:
    """Definitions by dotted path ("services.x.enable") or, where a name may hold a dot, by tuple."""
    return Section(comment, tuple((p if isinstance(p, tuple) else opt(p), v) for p, v in defs), user)


# ---------------------------------------------------------------- roles
# Each returns (file path stem, title, sections).  The stem is shared by every
# host whose role compiles to the same sections.

CLUSTER_SOURCE = "hosts/cluster.py"


def k8s_base(cluster: Cluster, lab: Lab) -> tuple[str, str, list[Section]]:
    cp = lab.control_plane
    assert cp is not None  # validate guarantees one control plane
    return "modules/k8s/base.nix", "Kubernetes settings shared by every node", [
        section(
            "Every node finds the API server by name; the control plane's LAN address answers for it.",
            ("networking.extraHosts", f"{cp.ip} {cluster.api_name}\n"),
        ),
        section(
            "With securePort set, apiserverAddress must carry the port: its default has none.",
            ("services.kubernetes.masterAddress", cluster.api_name),
            ("services.kubernetes.apiserverAddress", cluster.api_url),
            ("services.kubernetes.clusterCidr", str(cluster.pod_cidr)),
            ("services.kubernetes.easyCerts", cluster.easy_certs),
        ),
    ]


def control_plane(role: ControlPlane, cluster: Cluster, lab: Lab) -> tuple[str, str, list[Section]]:
    cp = lab.control_plane
    assert cp is not None
    etcd = section(
        "easyCerts names the single etcd member after masterAddress (initialCluster in nixpkgs' pki.nix); "
        "etcd must carry that name, not the host's.",
        ("services.etcd.name", cluster.api_name),
    )
    apiserver = section(
        "",
        ("services.kubernetes.roles", ["master", "node"]),
        ("services.kubernetes.apiserver.advertiseAddress", str(cp.ip)),
        ("services.kubernetes.apiserver.securePort", cluster.api_port),
        ("services.kubernetes.apiserver.serviceClusterIpRange", str(cluster.service_cidr)),
        ("services.kubernetes.apiserver.allowPrivileged", role.allow_privileged),
    )
    dns = section("Cluster DNS (the CoreDNS addon).", ("services.kubernetes.addons.dns.enable", role.dns_addon))
    sections = [apiserver, dns] + ([etcd] if cluster.easy_certs else [])
    if isinstance(role.coredns_image, CorednsImage) and not (cp.arch == "aarch64" and role.arm64_overrides):
        sections.append(section("The DNS addon's image, pinned in host.py.",
                                ("services.kubernetes.addons.dns.corednsImage", coredns_image(role.coredns_image))))
    return "modules/k8s/master.nix", "Kubernetes control plane: roles master + node", sections


def coredns_image(image: CorednsImage) -> PkgCall:
    return PkgCall("dockerTools.pullImage", attrs.asdict(image))


def arm64_control_plane(role: ControlPlane, cluster: Cluster, lab: Lab) -> tuple[str, str, list[Section]]:
    image = ARM64_COREDNS if role.coredns_image == "auto" else role.coredns_image
    sections = [
        section("etcd refuses to start on arm64 unless told the architecture is unsupported on purpose.",
                ("systemd.services.etcd.environment", {"ETCD_UNSUPPORTED_ARCH": "arm64"})),
    ]
    if role.dns_addon and image is not None:
        sections.append(section(
            "The DNS addon's CoreDNS image, pinned for arm64 as in the seed lab (up to nixos-25.11 the "
            "default image failed on arm64, nixpkgs #398895).",
            ("services.kubernetes.addons.dns.corednsImage", coredns_image(image))))
    return "modules/k8s/arm64.nix", "arm64 overrides for a control plane on aarch64", sections


def worker(role: Worker, cluster: Cluster, lab: Lab) -> tuple[str, str, list[Section]]:
    return "modules/k8s/node.nix", "Kubernetes worker: role node", [
        section("", ("services.kubernetes.roles", ["node"])),
        section("The kubelet talks to the API server by its name.",
                ("services.kubernetes.kubelet.kubeconfig.server", cluster.api_url)),
    ]


def ceph(role: CephStorage, cluster: Cluster, lab: Lab) -> tuple[str, str, list[Section]]:
    return "modules/k8s/ceph.nix", "Rook Ceph prerequisites", [
        section("Ceph's CSI driver maps RBD volumes and mounts CephFS through these kernel modules.",
                ("boot.kernelModules", ["ceph", "rbd"])),
        section("Rook expects the kubelet's root directory to be set explicitly.",
                ("services.kubernetes.kubelet.extraOpts", f"--root-dir={role.kubelet_root_dir}")),
        section("Ceph daemons open many files; the default containerd limit is too low for them.",
                ("systemd.services.containerd.serviceConfig", {"LimitNOFILE": str(role.containerd_nofile)})),
    ]


def dns_server(role: DnsServer, cluster: Cluster, lab: Lab) -> tuple[str, str, list[Section]]:
    ingress = lab.with_role(IngressProxy)[0]
    corefile = configs.corefile(
        zone=cluster.domain,
        answer_ip=str(ingress.tailscale_address),
        ttl=role.ttl,
        forward=[str(a) for a in role.forward],
        cache=role.cache_seconds,
        port=role.port,
    )
    sections = [section(
        f"Split DNS: every name under {cluster.domain} answers with {ingress.hostname}'s Tailscale "
        "address; the rest is forwarded.",
        ("services.coredns.enable", True),
        ("services.coredns.config", corefile),
    )]
    if role.open_firewall:
        sections.append(section("", ("networking.firewall.allowedTCPPorts", [role.port]),
                                ("networking.firewall.allowedUDPPorts", [role.port])))
    return "modules/dns/coredns.nix", "Split-DNS server for the lab's zone", sections


def ingress_proxy(role: IngressProxy, cluster: Cluster, lab: Lab) -> tuple[str, str, list[Section]]:
    stream = configs.nginx_stream(routes=[
        ("traefik_http", role.http_port, role.http_nodeport),
        ("traefik_https", role.https_port, role.https_nodeport),
    ])
    sections = [section(
        "TCP passthrough to Traefik's NodePorts; Traefik terminates TLS.",
        ("services.nginx.enable", True),
        ("services.nginx.streamConfig", stream),
    )]
    if role.open_firewall:
        sections.append(section("", ("networking.firewall.allowedTCPPorts", [role.http_port, role.https_port])))
    return "modules/ingress/nginx-stream.nix", "Ingress: nginx stream proxy to Traefik", sections


def tailscale(role: Tailscale, cluster: Cluster, lab: Lab) -> tuple[str, str, list[Section]]:
    defs: list[tuple[str, Any]] = [
        ("services.tailscale.enable", True),
        ("services.tailscale.openFirewall", True),
        ("services.tailscale.interfaceName", role.interface),
    ]
    if role.auth_key_file:
        defs.append(("services.tailscale.authKeyFile", role.auth_key_file))
    return "modules/network/tailscale.nix", "Tailscale on every host", [
        section("", *defs),
        section("Peers on the tailnet are trusted like the LAN.",
                ("networking.firewall.trustedInterfaces", [role.interface])),
    ]


def firewall(cluster: Cluster, lab: Lab) -> tuple[str, str, list[Section]]:
    ranges = [str(n) for n in cluster.trusted_ranges]
    why = ("Trust the pod range, the service range and the LAN (computed from hosts/cluster.py), "
           "nothing wider.")
    if cluster.firewall == "nftables":
        rules = "".join(f"ip saddr {r} accept\n" for r in ranges)
        return "modules/network/firewall.nix", "Firewall trust ranges (nftables)", [
            section("", ("networking.firewall.enable", True), ("networking.nftables.enable", True)),
            section(why, ("networking.firewall.extraInputRules", rules)),
        ]
    rules = "".join(f"iptables -A nixos-fw -s {r} -j nixos-fw-accept\n" for r in ranges)
    return "modules/network/firewall.nix", "Firewall trust ranges (iptables)", [
        section("", ("networking.firewall.enable", True)),
        section(why, ("networking.firewall.extraCommands", rules)),
    ]


ROLE_COMPILERS: dict[type, Callable[..., tuple[str, str, list[Section]]]] = {
    ControlPlane: control_plane,
    Worker: worker,
    CephStorage: ceph,
    DnsServer: dns_server,
    IngressProxy: ingress_proxy,
    Tailscale: tailscale,
}


# ---------------------------------------------------------------- hosts


def host_sections(host: Host, cluster: Cluster) -> list[Section]:
    prefix = cluster.lan.prefixlen
    out = [
        section(
            "",
            ("networking.hostName", host.hostname),
            ("nixpkgs.hostPlatform", host.system),
            ("system.stateVersion", host.state_version),
        ),
        section(
            f"LAN {cluster.lan}",
            ("networking.useDHCP", False),
            (("networking", "interfaces", host.interface, "ipv4", "addresses"),  # "eth0.10" is one name
             [{"address": str(host.ip), "prefixLength": prefix}]),
            ("networking.defaultGateway", {"address": str(cluster.gateway), "interface": host.interface}),
            ("networking.nameservers", [str(a) for a in cluster.nameservers]),
        ),
    ]
    if host.has(ControlPlane) or host.has(Worker):
        out.append(section(
            "Kubernetes uses the LAN address, not another interface's (Tailscale adds one).",
            ("services.kubernetes.kubelet.nodeIp", str(host.ip)),
            ("services.flannel.iface", host.interface),
        ))
    if isinstance(host.boot, RaspberryPi4):
        boot = [("boot.loader.grub.enable", False), ("boot.loader.generic-extlinux-compatible.enable", True)]
        if host.boot.kernel_packages:
            boot.append(("boot.kernelPackages", Pkg(host.boot.kernel_packages)))
        out.append(section("Raspberry Pi 4: extlinux boot, no GRUB.", *boot))
    elif isinstance(host.boot, SystemdBoot):
        out.append(section(
            "UEFI boot.",
            ("boot.loader.systemd-boot.enable", True),
            ("boot.loader.efi.canTouchEfiVariables", True),
        ))
    extra = []
    if host.kernel_modules:
        extra.append(("boot.kernelModules", list(host.kernel_modules)))
    if host.kernel_params:
        extra.append(("boot.kernelParams", list(host.kernel_params)))
    if extra:
        out.append(section("Kernel settings from host.py.", *extra))
    if host.options:
        out.append(Section(
            "Raw options from host.py.",
            tuple((option_path(k), v) for k, v in sorted(host.options.items())),
            user=True,
        ))
    return out


def _rel_from_host(path: str) -> str:
    return "../../" + path


def compile_lab(lab: Lab) -> Compiled:
    """The module files of every host.  The lab must have passed validation.

    Hosts whose role compiles to the same definitions share one file.  When
    hosts configure a role differently, the variant most hosts use keeps the
    plain name (ties: the first host by name) and the others get ``-2``, ``-3``.
    """
    cluster = lab.cluster
    # (stem, sections) of each variant, in first-use order, and the hosts using it
    variants: dict[tuple[str, str], tuple[str, str, list[Section], str]] = {}
    users: dict[tuple[str, str], list[str]] = {}
    wanted: dict[str, list[tuple[str, str]]] = {}

    def use(stem: str, title: str, sections: list[Section], why: str, host: Host) -> tuple[str, str]:
        key = (stem, repr(sections))
        variants.setdefault(key, (stem, title, sections, why))
        users.setdefault(key, []).append(f"{lab.sources.get(host.hostname, 'hosts/' + host.hostname)}/host.py")
        return key

    # lab-wide files, computed once (k8s_base looks up the control plane: once per host was quadratic)
    fw = firewall(cluster, lab)
    base = None
    for host in lab.hosts:
        keys = [use(*fw, "", host)]
        if host.has(ControlPlane) or host.has(Worker):
            base = base or k8s_base(cluster, lab)
            keys.append(use(*base, "", host))
        for role in host.roles:
            name = type(role).__name__
            keys.append(use(*ROLE_COMPILERS[type(role)](role, cluster, lab), f"the {name} role in host.py", host))
            if isinstance(role, ControlPlane) and host.arch == "aarch64" and role.arm64_overrides:
                keys.append(use(*arm64_control_plane(role, cluster, lab), "an aarch64 ControlPlane in host.py",
                                host))
        wanted[host.hostname] = keys

    files: dict[str, ModuleFile] = {}
    path_of: dict[tuple[str, str], str] = {}
    order = list(variants)
    for key in sorted(order, key=lambda k: (k[0], -len(users[k]), order.index(k))):
        stem, title, sections, why = variants[key]
        path, n = stem, 2
        while path in files:  # same role, configured differently on another host
            path = stem.removesuffix(".nix") + f"-{n}.nix"
            n += 1
        # which hosts use a file is left out on purpose: adding a host must not rewrite shared files
        source = CLUSTER_SOURCE + (f" and {why}" if why else "")
        files[path] = ModuleFile(path, title, source, (), tuple(sections))
        path_of[key] = path

    plans: dict[str, HostPlan] = {}
    for host in lab.hosts:
        hostdir = f"hosts/{host.hostname}"
        source = f"{lab.sources.get(host.hostname, hostdir)}/host.py"
        modules = [path_of[k] for k in wanted[host.hostname]]
        hand = tuple(f"{hostdir}/{p.removeprefix('./')}" for p in host.imports)
        entry = f"{hostdir}/default.nix"
        files[entry] = ModuleFile(
            entry,
            f"NixOS configuration of {host.hostname}",
            f"{source} and {CLUSTER_SOURCE}",
            tuple(_rel_from_host(m) for m in modules)
            + tuple(p if p.startswith(".") else "./" + p for p in host.imports),
            tuple(host_sections(host, cluster)),
        )
        plans[host.hostname] = HostPlan(host.hostname, entry, tuple(modules), hand)
    return Compiled(files, plans)
