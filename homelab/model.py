"""What a home lab is: typed, frozen value objects, validated where they are built.

A lab is one :class:`Cluster` (the shared network and Kubernetes facts) and
several :class:`Host` objects, each with a tuple of roles.  Field validators sit
beside their fields; lab-wide rules (one control plane, no overlapping ranges,
...) live in :mod:`homelab.validate`.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Callable, Union

import attrs

from .errors import report

# ---------------------------------------------------------------- validators

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}\Z")
_SAFE_TEXT = re.compile(r"^[^\x00-\x1f\x7f\ud800-\udfff]*\Z")  # no control characters, no lone surrogates
SYSTEMS = ("x86_64-linux", "aarch64-linux")
NODEPORT_RANGE = range(30000, 32768)
TAILSCALE_RANGE = ipaddress.ip_network("100.64.0.0/10")


def _field_name(inst: Any, attribute: attrs.Attribute) -> str:
    if isinstance(inst, (Host, Cluster)):
        return attribute.name
    return f"{type(inst).__name__}.{attribute.name}"


def _check(pred: Callable[[Any], bool], reason: Callable[[Any], str]):
    def validator(inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        try:
            ok = pred(value)
        except Exception:  # a wrong type is a user mistake, not a crash
            ok = False
        if not ok:
            report(_field_name(inst, attribute), reason(value))

    return validator


def dns_label(inst, attribute, value):
    return _check(
        lambda v: isinstance(v, str) and bool(_LABEL.match(v)),
        lambda v: f"{v!r} is not a valid DNS label (lower-case letters, digits and '-', "
        "1-63 characters, not starting or ending with '-')",
    )(inst, attribute, value)


def dns_name(inst, attribute, value):
    return _check(
        lambda v: isinstance(v, str)
        and len(v) <= 253
        and all(_LABEL.match(p) for p in v.split(".")),
        lambda v: f"{v!r} is not a valid DNS name (dot-separated DNS labels)",
    )(inst, attribute, value)


def interface_name(inst, attribute, value):
    return _check(
        lambda v: isinstance(v, str) and bool(_IFNAME.match(v)) and "." not in v,
        lambda v: f"{v!r} is a VLAN interface (name.vid); homelab does not write networking.vlans, so name "
        "the parent interface" if isinstance(v, str) and _IFNAME.match(v) and "." in v
        else f"{v!r} is not a valid network interface name (1-15 characters from letters, digits, '_', '-')",
    )(inst, attribute, value)


def safe_text(inst, attribute, value):
    return _check(
        lambda v: isinstance(v, str) and bool(_SAFE_TEXT.match(v)),
        lambda v: f"{v!r} contains control characters",
    )(inst, attribute, value)


def port(inst, attribute, value):
    return _check(
        lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 65535,
        lambda v: f"{v!r} is not a TCP/UDP port (1-65535)",
    )(inst, attribute, value)


def nodeport(inst, attribute, value):
    return _check(
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v in NODEPORT_RANGE,
        lambda v: f"{v!r} is outside the Kubernetes NodePort range 30000-32767",
    )(inst, attribute, value)


def positive_int(inst, attribute, value):
    return _check(
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
        lambda v: f"{v!r} is not a positive whole number",
    )(inst, attribute, value)


def a_bool(inst, attribute, value):
    return _check(lambda v: isinstance(v, bool), lambda v: f"{v!r} is not true or false")(
        inst, attribute, value
    )


def one_of(*choices: str):
    return _check(
        lambda v: v in choices,
        lambda v: f"{v!r} is not one of: {', '.join(choices)}",
    )


def _path_reason(v: Any) -> str:
    from .validate import redact, secret_kind  # late: validate imports this module

    kind = secret_kind(v)
    if kind:  # never echo a secret; say what to do with it
        return (f"{redact(v)} is not an absolute file path; it looks like {kind} itself: put it in a file "
                "outside the Nix store and give that file's path")
    return f"{v!r} is not an absolute file path"


def absolute_path(inst, attribute, value):
    return _check(
        lambda v: v is None
        or (isinstance(v, str) and v.startswith("/") and bool(_SAFE_TEXT.match(v)) and '"' not in v),
        _path_reason,
    )(inst, attribute, value)


def instance_of(kind: type | tuple[type, ...], what: str):
    return _check(lambda v: isinstance(v, kind), lambda v: f"{v!r} is not {what}")


# An option path as a user writes it: dotted names, a name with a dot in double quotes.
_SEGMENT = r'(?:[^."\s\\]+|"(?:[^"\\\x00-\x1f]|\\["\\])*")'
_OPTION_PATH = re.compile(rf"[A-Za-z_][A-Za-z0-9_'-]*(?:\.{_SEGMENT})*\Z")


def option_path(dotted: str) -> tuple[str, ...]:
    """'environment.etc."a.conf".text' -> ('environment', 'etc', 'a.conf', 'text')."""
    parts = re.findall(_SEGMENT, dotted)
    return tuple(re.sub(r'\\(["\\])', r"\1", p[1:-1]) if p.startswith('"') else p for p in parts)


# ---------------------------------------------------------------- converters
# Converters turn friendly input ("192.168.10.0/24") into typed values.  When
# the input is unusable they report it; while collecting, the raw value is kept
# so that loading can go on and list every problem.


def _converter(parse: Callable[[Any], Any], what: str):
    def convert(value: Any, self_: Any, field: attrs.Attribute) -> Any:
        try:
            return parse(value)
        except (ValueError, TypeError):
            report(_field_name(self_, field), f"{value!r} is not {what}")
            return value  # reached only while collecting

    return attrs.Converter(convert, takes_self=True, takes_field=True)


def _network(v: Any) -> ipaddress.IPv4Network:
    if not isinstance(v, (str, ipaddress.IPv4Network)) or (isinstance(v, str) and "/" not in v):
        raise ValueError(v)
    return ipaddress.IPv4Network(v, strict=True)


def _address(v: Any) -> ipaddress.IPv4Address:
    if isinstance(v, ipaddress.IPv4Address):
        return v
    if not isinstance(v, str):
        raise TypeError(v)
    return ipaddress.IPv4Address(v)


def _optional(parse):
    return lambda v: None if v is None else parse(v)


def _tuple_of(parse):
    def conv(v):
        if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
            raise TypeError(v)
        return tuple(parse(x) for x in v)

    return conv


def _strs(v):
    if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
        raise TypeError(v)
    if not all(isinstance(x, str) for x in v):
        raise TypeError(v)
    return tuple(v)


to_network = _converter(_network, "an IPv4 network in CIDR form with no host bits (e.g. 192.168.10.0/24)")
to_address = _converter(_address, "an IPv4 address (e.g. 192.168.10.11)")
to_optional_address = _converter(_optional(_address), "an IPv4 address (e.g. 100.64.0.3)")
to_addresses = _converter(_tuple_of(_address), "a list of IPv4 addresses")
to_networks = _converter(_tuple_of(_network), "a list of IPv4 networks in CIDR form")
to_strs = _converter(_strs, "a list of strings")


def _host_address(v: Any) -> ipaddress.IPv4Address | ipaddress.IPv4Interface:
    """'192.168.10.11' -> address; '192.168.10.11/24' -> interface (prefix kept for checks)."""
    if isinstance(v, (ipaddress.IPv4Address, ipaddress.IPv4Interface)):
        return v
    if not isinstance(v, str):
        raise TypeError(v)
    if "/" in v:
        return ipaddress.IPv4Interface(v)
    return ipaddress.IPv4Address(v)


def _roles(v: Any) -> tuple:
    if isinstance(v, Role):
        return (v,)
    if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
        raise TypeError(v)
    v = tuple(v)
    if not all(type(r) in ROLE_TYPES for r in v):  # a subclass would have no meaning in NixOS
        raise TypeError(v)
    return v


# ---------------------------------------------------------------- values


@attrs.frozen
class CorednsImage:
    """A pinned CoreDNS image for the Kubernetes DNS addon.

    Written as ``services.kubernetes.addons.dns.corednsImage =
    pkgs.dockerTools.pullImage { ... }`` (nixos-26.05 renamed the old
    ``addons.dns.coredns`` attribute set to ``corednsImage``, a package).
    ``sha256`` is the hash of the pulled image for ``arch``.
    """

    imageName: str = attrs.field(validator=safe_text)
    imageDigest: str = attrs.field(
        validator=_check(
            lambda v: isinstance(v, str) and re.fullmatch(r"sha256:[0-9a-f]{64}", v) is not None,
            lambda v: f"{v!r} is not an image digest (sha256:<64 hex digits>)",
        )
    )
    finalImageTag: str = attrs.field(validator=safe_text)
    sha256: str = attrs.field(
        validator=_check(
            lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-z]{52}|sha256-[A-Za-z0-9+/]{43}=", v)
            is not None,
            lambda v: f"{v!r} is not a Nix hash (52 base-32 characters or sha256-<base64>)",
        )
    )
    arch: str = attrs.field(default="arm64", validator=one_of("arm64", "amd64"))


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
class Pkg:
    """A package from nixpkgs, written as ``pkgs.<name>`` (for raw options)."""

    name: str = attrs.field(
        validator=_check(
            lambda v: isinstance(v, str)
            and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_'-]*(\.[A-Za-z_][A-Za-z0-9_'-]*)*", v) is not None,
            lambda v: f"{v!r} is not a package attribute path such as 'htop' or 'linuxPackages_rpi4'",
        )
    )


@attrs.frozen
class PkgCall:
    """A call of a nixpkgs function, written as ``pkgs.<function> { <args> }``."""

    function: str = attrs.field(validator=_check(
        lambda v: isinstance(v, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", v)
        is not None,
        lambda v: f"{v!r} is not a function path such as 'dockerTools.pullImage'"))
    args: dict = attrs.field(validator=instance_of(dict, "an attribute set of arguments"))


@attrs.frozen
class Priority:
    """A value with a module-system priority: ``lib.mkForce`` (50), ``lib.mkDefault`` (1000)."""

    value: Any
    # lib.mkOverride takes any integer; the module system's own range is 10 (mkVMOverride) to 1500
    priority: int = attrs.field(validator=_check(
        lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 100_000,
        lambda v: f"{v!r} is not a module priority (0-100000; mkForce is 50, mkDefault 1000)"))


def force(value: Any) -> Priority:
    return Priority(value, 50)


def default(value: Any) -> Priority:
    return Priority(value, 1000)


# ---------------------------------------------------------------- roles


class Role:
    """Base of every role; a host's roles say what it does in the lab."""

    label: str = "role"


@attrs.frozen
class ControlPlane(Role):
    """Kubernetes control plane: NixOS roles master + node, API server, DNS addon.

    On an aarch64 host etcd gets ``ETCD_UNSUPPORTED_ARCH=arm64`` and the DNS
    addon the seed's arm64 CoreDNS pin (:data:`ARM64_COREDNS`; see
    ``coredns_image``); leave ``arm64_overrides`` on unless you know your etcd
    build supports arm64.
    """

    allow_privileged: bool = attrs.field(default=True, validator=a_bool)
    dns_addon: bool = attrs.field(default=True, validator=a_bool)
    # "auto": the seed's arm64 pin on aarch64, nixpkgs' own image elsewhere;
    # None: always nixpkgs' image; a CorednsImage: that pin on any system.
    coredns_image: CorednsImage | None | str = attrs.field(
        default="auto",
        validator=_check(lambda v: v is None or v == "auto" or isinstance(v, CorednsImage),
                         lambda v: f"{v!r} is not \"auto\", None or a CorednsImage"),
    )
    arm64_overrides: bool = attrs.field(default=True, validator=a_bool)
    label = "control plane"


@attrs.frozen
class Worker(Role):
    """Kubernetes worker: NixOS role node, kubelet talking to the cluster's API address."""

    label = "worker"


@attrs.frozen
class CephStorage(Role):
    """Rook Ceph prerequisites: ceph + rbd kernel modules, kubelet root dir, containerd file limit.

    ``disks`` names the devices Rook may use (for the diagram and table; Rook's
    Helm values select them, not NixOS).
    """

    kubelet_root_dir: str = attrs.field(default="/var/lib/kubelet", validator=absolute_path)
    containerd_nofile: int = attrs.field(default=1048576, validator=positive_int)
    disks: tuple[str, ...] = attrs.field(default=(), converter=to_strs)
    label = "ceph"

    @disks.validator
    def _disks(self, attribute, value):
        for d in value if isinstance(value, tuple) else ():
            if not (isinstance(d, str) and d.startswith("/dev/") and _SAFE_TEXT.match(d)):
                report(_field_name(self, attribute), f"{d!r} is not a device path under /dev/")


@attrs.frozen
class DnsServer(Role):
    """Split DNS: CoreDNS answers the lab's zone with the ingress host's Tailscale address.

    Every name under ``cluster.domain`` (and the apex) gets an A record pointing
    at the host with the IngressProxy role; everything else is forwarded.
    """

    forward: tuple[ipaddress.IPv4Address, ...] = attrs.field(
        default=("1.1.1.1", "1.0.0.1"), converter=to_addresses
    )
    ttl: int = attrs.field(default=60, validator=positive_int)
    cache_seconds: int = attrs.field(default=30, validator=positive_int)
    port: int = attrs.field(default=53, validator=port)
    open_firewall: bool = attrs.field(default=True, validator=a_bool)
    label = "dns"

    @forward.validator
    def _forward(self, attribute, value):
        if isinstance(value, tuple) and not value:
            report(_field_name(self, attribute), "needs at least one upstream resolver")


@attrs.frozen
class IngressProxy(Role):
    """nginx ``stream`` proxy: 80 and 443 on the host to Traefik's NodePorts."""

    http_nodeport: int = attrs.field(default=31080, validator=nodeport)
    https_nodeport: int = attrs.field(default=31443, validator=nodeport)
    http_port: int = attrs.field(default=80, validator=port)
    https_port: int = attrs.field(default=443, validator=port)
    open_firewall: bool = attrs.field(default=True, validator=a_bool)
    label = "ingress"


@attrs.frozen
class Tailscale(Role):
    """Tailscale VPN; its interface is trusted by the firewall.

    ``auth_key_file`` is a path read at run time (e.g. a sops-nix secret); the
    key itself is never written into generated files.
    """

    auth_key_file: str | None = attrs.field(default=None, validator=absolute_path)
    interface: str = attrs.field(default="tailscale0", validator=interface_name)
    label = "tailscale"


ROLE_TYPES = (ControlPlane, Worker, CephStorage, DnsServer, IngressProxy, Tailscale)


# ---------------------------------------------------------------- boot


@attrs.frozen
class SystemdBoot:
    """UEFI machines: systemd-boot, EFI variables writable."""

    label = "systemd-boot (UEFI)"
    on_sd_card = False


@attrs.frozen
class RaspberryPi4:
    """Raspberry Pi 4: extlinux boot (no GRUB) with the rpi4 kernel, usually from an SD card."""

    sd_card: bool = attrs.field(default=True, validator=a_bool)
    # nixpkgs is moving the Pi kernels to nixos-hardware; None keeps the default kernel
    kernel_packages: str | None = attrs.field(default="linuxPackages_rpi4", validator=_check(
        lambda v: v is None or (isinstance(v, str) and re.fullmatch(r"linuxPackages[A-Za-z0-9_]*", v) is not None),
        lambda v: f"{v!r} is not a kernel package set such as 'linuxPackages_rpi4'"))
    label = "Raspberry Pi 4 (extlinux)"

    @property
    def on_sd_card(self) -> bool:
        return self.sd_card


Boot = Union[SystemdBoot, RaspberryPi4]


# ---------------------------------------------------------------- host & cluster


@attrs.frozen
class Cluster:
    """The lab's shared facts: LAN, Kubernetes ranges, API name, DNS zone."""

    name: str = attrs.field(validator=dns_label)
    domain: str = attrs.field(validator=dns_name)  # the lab's private zone, e.g. home.example.com
    lan: ipaddress.IPv4Network = attrs.field(converter=to_network)
    gateway: ipaddress.IPv4Address = attrs.field(converter=to_address)
    nameservers: tuple[ipaddress.IPv4Address, ...] = attrs.field(converter=to_addresses)
    pod_cidr: ipaddress.IPv4Network = attrs.field(default="10.1.0.0/16", converter=to_network)
    service_cidr: ipaddress.IPv4Network = attrs.field(default="10.0.0.0/24", converter=to_network)
    api_name: str = attrs.field(default="api.kube", validator=dns_name)
    api_port: int = attrs.field(default=6443, validator=port)
    easy_certs: bool = attrs.field(default=True, validator=a_bool)
    firewall: str = attrs.field(default="iptables", validator=one_of("iptables", "nftables"))
    extra_trusted: tuple[ipaddress.IPv4Network, ...] = attrs.field(default=(), converter=to_networks)
    production: bool = attrs.field(default=False, validator=a_bool)

    @property
    def api_url(self) -> str:
        return f"https://{self.api_name}:{self.api_port}"

    @property
    def trusted_ranges(self) -> tuple[ipaddress.IPv4Network, ...]:
        """What the firewall trusts: pods, services, the LAN, then any extra ranges."""
        out: list[ipaddress.IPv4Network] = []
        for net in (self.pod_cidr, self.service_cidr, self.lan, *self.extra_trusted):
            if net not in out:
                out.append(net)
        return tuple(out)


@attrs.frozen
class Host:
    """One NixOS machine of the lab.

    ``imports`` are hand-written Nix files next to ``host.py`` (e.g.
    ``hardware-configuration.nix``); ``options`` sets raw NixOS options by dotted
    path, for what the roles do not cover.
    """

    hostname: str = attrs.field(validator=dns_label)
    system: str = attrs.field(validator=one_of(*SYSTEMS))
    interface: str = attrs.field(validator=interface_name)
    # "192.168.10.11" or, with the LAN's prefix, "192.168.10.11/24"
    address: ipaddress.IPv4Address | ipaddress.IPv4Interface = attrs.field(converter=_converter(
        _host_address, "an IPv4 address (e.g. 192.168.10.11 or 192.168.10.11/24)"))
    roles: tuple[Role, ...] = attrs.field(converter=_converter(
        _roles, "a list of homelab roles (ControlPlane, Worker, CephStorage, DnsServer, IngressProxy, Tailscale)"))
    tailscale_address: ipaddress.IPv4Address | None = attrs.field(default=None, converter=to_optional_address)
    boot: Boot = attrs.field(
        factory=SystemdBoot,
        validator=_check(lambda v: isinstance(v, (SystemdBoot, RaspberryPi4)),
                         lambda v: f"{v!r} is not SystemdBoot() or RaspberryPi4()"),
    )
    kernel_modules: tuple[str, ...] = attrs.field(default=(), converter=to_strs)
    kernel_params: tuple[str, ...] = attrs.field(default=(), converter=to_strs)
    imports: tuple[str, ...] = attrs.field(default=(), converter=to_strs)
    options: dict[str, Any] = attrs.field(factory=dict, validator=instance_of(dict, "a dict of option path -> value"))
    state_version: str = attrs.field(default="25.05", validator=_check(
        lambda v: isinstance(v, str) and re.fullmatch(r"\d\d\.\d\d", v) is not None,
        lambda v: f"{v!r} is not a NixOS release such as '25.05'"))
    description: str = attrs.field(default="", validator=safe_text)  # hardware, for the table

    @property
    def ip(self) -> ipaddress.IPv4Address:
        """The LAN address without any prefix the user wrote."""
        a = self.address
        return a.ip if isinstance(a, ipaddress.IPv4Interface) else a

    @kernel_modules.validator
    def _kmods(self, attribute, value):
        for m in value if isinstance(value, tuple) else ():
            if isinstance(m, str) and not re.fullmatch(r"[A-Za-z0-9_-]+", m):  # non-strings: reported already
                report(attribute.name, f"{m!r} is not a kernel module name")

    @kernel_params.validator
    def _kparams(self, attribute, value):
        for p in value if isinstance(value, tuple) else ():
            if isinstance(p, str) and (not p or not re.fullmatch(r"[^\s\"'\\$`]+", p)):
                report(attribute.name, f"{p!r} is not a kernel parameter (no spaces, quotes, '$' or '\\')")

    @imports.validator
    def _imports(self, attribute, value):
        for p in value if isinstance(value, tuple) and all(isinstance(x, str) for x in value) else ():
            if not re.fullmatch(r"(\.\./|\./)?[A-Za-z0-9_][A-Za-z0-9_./-]*\.nix", p) or "/../" in p[3:]:
                report(attribute.name, f"{p!r} is not a relative path to a .nix file")
            elif p.rstrip("/").endswith("default.nix") and "/" not in p.replace("./", "", 1):
                report(attribute.name, f"{p!r} is the generated entry module itself")

    @options.validator
    def _options(self, attribute, value):
        for path in value if isinstance(value, dict) else ():
            if not isinstance(path, str) or not _OPTION_PATH.fullmatch(path):
                report(attribute.name, f"{path!r} is not a dotted option path such as 'services.openssh.enable' "
                       "(quote a name that holds a dot: 'environment.etc.\"a.conf\".text')")

    def has(self, role_type: type) -> bool:
        return any(isinstance(r, role_type) for r in self.roles)

    def role(self, role_type: type):
        for r in self.roles:
            if isinstance(r, role_type):
                return r
        return None

    @property
    def arch(self) -> str:
        return self.system.split("-")[0] if isinstance(self.system, str) else "?"


@attrs.frozen
class Lab:
    """A whole lab: the cluster and its hosts (sorted by hostname)."""

    cluster: Cluster
    hosts: tuple[Host, ...] = attrs.field(converter=lambda hs: tuple(sorted(hs, key=lambda h: str(h.hostname))))
    # where each host came from (hostname -> "hosts/<dir>"), for messages and headers
    sources: dict[str, str] = attrs.field(factory=dict, eq=False)

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.hostname == name:
                return h
        raise KeyError(name)

    def with_role(self, role_type: type) -> list[Host]:
        return [h for h in self.hosts if h.has(role_type)]

    @property
    def control_plane(self) -> Host | None:
        cps = self.with_role(ControlPlane)
        return cps[0] if len(cps) == 1 else None
