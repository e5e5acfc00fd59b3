"""What a home lab is: typed, frozen, hashable value objects, validated where they are built.

A lab is one :class:`Cluster` (the shared network and Kubernetes facts) and
several :class:`Host` objects, each with a tuple of roles.  Field validators sit
beside their fields (:mod:`homelab.fields`); lab-wide rules live in
:mod:`homelab.validate` and in each role's module (:mod:`homelab.roles`).

Every value is immutable all the way down: lists become tuples and dicts become
:class:`FrozenDict` when an object is built, so a Host can be hashed, shared and
put in a set, and nothing can change it after it was validated.
"""

from __future__ import annotations

import functools
import ipaddress
import posixpath
import re
from collections.abc import Mapping as _Mapping  # isinstance: typing.Mapping's check goes through typing's Python code
from typing import Any, Iterator, Mapping

import attrs

from . import fields, labels
from .boot import Boot, RaspberryPi4, SystemdBoot
from .errors import report
from .fields import (
    a_bool,
    converter,
    dns_label,
    dns_name,
    instance_of,
    interface_name,
    one_of,
    port,
    safe_text,
    to_address,
    to_addresses,
    to_network,
    to_optional_address,
    to_strs,
)
from .role import SOURCE_HELP, SOURCES_HELP, Role, Source
from .values import MAX_VALUE_DEPTH, FrozenDict, Pkg, PkgCall, Priority, TooDeep, default, force, freeze  # noqa: F401

SYSTEMS = ("x86_64-linux", "aarch64-linux")
NODEPORT_RANGE = fields.NODEPORT_RANGE
TAILSCALE_RANGE = ipaddress.ip_network("100.64.0.0/10")
__all__ = [
    "Cluster", "Host", "Lab", "Role", "Secret", "Ssh", "WakeOnLan", "FrozenDict", "Pkg", "PkgCall", "Priority", "force", "default",
    "SystemdBoot", "RaspberryPi4", "SYSTEMS", "TAILSCALE_RANGE", "NODEPORT_RANGE", "option_path", "freeze",
]


# ---------------------------------------------------------------- option paths

# An option path as a user writes it: dotted names, a name with a dot in double quotes.
_SEGMENT = r'(?:[^."\s\\]+|"(?:[^"\\\x00-\x1f]|\\["\\])*")'
_OPTION_PATH = re.compile(rf"[A-Za-z_][A-Za-z0-9_'-]*(?:\.{_SEGMENT})*\Z")
# What a NixOS module may hold besides option definitions (nixpkgs lib/modules.nix): as the first part
# of a raw option path these are not options, and NixOS refuses or misreads them.
_MODULE_KEYS = ("imports", "options", "config", "_file", "key", "disabledModules", "meta", "freeformType",
                "_class")


@functools.lru_cache(maxsize=4096)  # the same few keys on every host of a large lab
def option_path(dotted: str) -> tuple[str, ...]:
    """'environment.etc."a.conf".text' -> ('environment', 'etc', 'a.conf', 'text')."""
    parts = re.findall(_SEGMENT, dotted)
    return tuple(re.sub(r'\\(["\\])', r"\1", p[1:-1]) if p.startswith('"') else p for p in parts)


def option_path_problem(path: Any) -> str | None:
    """Why ``path`` is not an option path a host.py may set, or None."""
    if type(path) is str:  # noqa: E721 - exactly str: the same few paths on every host of a large lab
        return _str_path_problem(path)
    if not isinstance(path, str):
        return fields.wrong_type(path, "a dotted option path (a string)")
    return _str_path_problem.__wrapped__(path)


@functools.lru_cache(maxsize=4096)
def _str_path_problem(path: str) -> str | None:
    if not _OPTION_PATH.fullmatch(path):
        return (f"{path!r} is not a dotted option path such as 'services.openssh.enable' "
                "(quote a name that holds a dot: 'environment.etc.\"a.conf\".text')")
    parts = option_path(path)
    if len(parts) > MAX_VALUE_DEPTH:
        return (f"{path[:40]!r}... has {len(parts)} parts; NixOS option paths have a handful (at most "
                f"{MAX_VALUE_DEPTH} here)")
    head = parts[0]
    if head in _MODULE_KEYS:
        what = {"imports": "use Host(imports=[...]) for Nix files",
                "config": "write the path without 'config.'",
                "options": "raw options set values; they cannot declare options"}.get(head, "it is not an option")
        return f"{path!r} starts with {head!r}, which is a module keyword, not an option: {what}"
    return None


# ---------------------------------------------------------------- deploy target


# each pattern compiled once: re.fullmatch(pattern, ...) looks the pattern up in re's cache for every host
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_SSH_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.:-]*[A-Za-z0-9])?")
_RELEASE = re.compile(r"\d\d\.\d\d")
_KERNEL_MODULE = re.compile(r"[A-Za-z0-9_-]+")
_KERNEL_PARAM = re.compile(r"[^\s\"'\\$`]+")
_IMPORT = re.compile(r"(\.\./|\./)?[A-Za-z0-9_][A-Za-z0-9_./-]*\.nix")


@attrs.frozen
class Ssh:
    """How homelab reaches a host over SSH (``homelab deploy``, ``verify``, ``wake``, ``sleep``).

    ``host`` is a name or address; None means the host's LAN address.
    """

    user: str = attrs.field(default="root", validator=fields.typed(
        str, "a user name", lambda v: _USER.fullmatch(v) is not None,
        lambda v: f"{v!r} is not a user name (lower-case letters, digits, '_' and '-')"))
    host: str | None = attrs.field(default=None, validator=fields.optional_text(
        lambda v: _SSH_HOST.fullmatch(v) is not None,
        "a host name or address (a string), or None", lambda v: f"{v!r} is not a host name or address"))
    port: int = attrs.field(default=22, validator=port)


# ---------------------------------------------------------------- secrets


SECRET_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}\Z")
SECRET_RUNTIME_DIR = "/run/agenix"  # agenix's age.secretsDir default (modules/age.nix)


@attrs.frozen
class Secret:
    """A secret named, never given: ``Secret("tailscale-auth-key")``.

    The value lives age-encrypted in the lab (``secrets/<name>.age``, readable by the hosts and admins it
    was encrypted to); generated files only ever name it (a runtime path on the host, or a Kubernetes
    Secret in the cluster), so no value reaches the Nix store, argv or a generated file.
    """

    name: str = attrs.field(validator=fields.typed(
        str, "a secret name", lambda v: SECRET_NAME.match(v) is not None,
        lambda v: f"{v!r} is not a secret name (lower-case letters, digits, '.', '_' and '-'; up to 63)"))

    @property
    def path(self) -> str:
        """Where agenix decrypts it on a host: ``config.age.secrets.<name>.path`` as homelab's flake sets it."""
        return f"{SECRET_RUNTIME_DIR}/{self.name}"


# ---------------------------------------------------------------- access


_PUBKEY = re.compile(r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|"
                     r"sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}( [^\x00-\x1f\x7f]*)?\Z")
# homelab's own stand-in for a public key (the seed lab and `homelab init` write it): structurally valid, and
# nobody holds its private half, so nobody logs in with it; validation warns while it is in the lab
PLACEHOLDER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGhvbWVsYWItcGxhY2Vob2xkZXItcmVwbGFjZS1tZSEh placeholder"


def _public_key(k: Any) -> str:
    if not isinstance(k, str):
        raise TypeError(k)
    if not _PUBKEY.match(k):
        raise ValueError(k)
    return k


ADMIN_KEY_FIX = "copy the whole line of the admin's public key again (e.g. ~/.ssh/id_ed25519.pub)"


def _whole_keys(inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    """Each key's base64 decodes (strictly) to a key of the type it names: the pattern lets a line cut short
    through.  A key the converter refused (not a string, not the pattern) was reported there."""
    if not fields.is_list(value):
        return
    for i, k in enumerate(value):
        if isinstance(k, str) and _PUBKEY.match(k) and fields.ssh_key_blob(k) is None:
            report(f"{fields.field_name(inst, attribute)}[{i}]", fields.whole_key_reason(k, ADMIN_KEY_FIX))


def _source(v: Any) -> Source:
    return Source.parse(v)


def sources_converter(what: str):
    """A list of sources, each checked on its own; one word or network alone is a list of one."""
    per_item = fields.list_converter(_source, what, SOURCE_HELP)

    def convert(value: Any, self_: Any, field: attrs.Attribute) -> Any:
        if isinstance(value, (str, Source)):
            value = (value,)
        return per_item.converter(value, self_, field)

    return attrs.Converter(convert, takes_self=True, takes_field=True)


to_sources = sources_converter(SOURCES_HELP)


@attrs.frozen
class OpenPort:
    """A port a host opens to a source for something you run yourself, with the reason (the escape hatch).

    ``OpenPort(8123, source="lan", reason="Home Assistant")`` becomes a row of the
    host's flow table: the firewall lets the LAN reach 8123/tcp, and nothing else.
    """

    port: int = attrs.field(validator=fields.port)
    proto: str = attrs.field(default="tcp", validator=one_of("tcp", "udp"))
    source: Source = attrs.field(default="lan", converter=converter(lambda v: Source.parse(v), SOURCE_HELP))
    reason: str = attrs.field(default="", validator=fields.typed(
        str, "a reason", lambda v: bool(v.strip()) and bool(fields.SAFE_TEXT.match(v)),
        lambda v: "says why the port is open: give a reason (it is written beside the rule)"
        if not v.strip() else f"{v!r} contains control characters"))


def _open_port(p: Any) -> OpenPort:
    if not isinstance(p, OpenPort):
        raise TypeError(p)
    return p


def _mac(v: Any) -> str:
    """'02-00-00-00-00-1A' -> '02:00:00:00:00:1a'; ValueError for anything that is not a unicast MAC."""
    if not isinstance(v, str):
        raise TypeError(v)
    m = re.fullmatch(r"([0-9A-Fa-f]{2})([:-])([0-9A-Fa-f]{2})(?:\2[0-9A-Fa-f]{2}){4}", v)
    if m is None:
        raise ValueError(v)
    mac = v.replace("-", ":").lower()
    first = int(mac[:2], 16)
    if first & 1 or mac == "00:00:00:00:00:00":  # a group address or nothing: no NIC has it
        raise ValueError(v)
    return mac


@attrs.frozen
class WakeOnLan:
    """The host's LAN interface wakes the machine when a magic packet for ``mac`` arrives (``homelab wake``).

    ``mac`` is the LAN interface's own hardware address (``ip link show <interface>``).  homelab writes
    ``networking.interfaces.<interface>.wakeOnLan``; the firmware (BIOS/UEFI) must allow waking from off too.
    """

    mac: str = attrs.field(converter=fields.converter(
        _mac, "a unicast MAC address such as '02:00:00:00:00:11' (six hex pairs; not a group address)"))

    @property
    def locally_administered(self) -> bool:
        """Set by software, not burned into a NIC: the seed lab's placeholders are (02:...)."""
        return isinstance(self.mac, str) and bool(int(self.mac[:2], 16) & 2)


# ---------------------------------------------------------------- host & cluster


def generated_path(rel: str) -> bool:
    """A lab-relative path homelab writes: a host's entry module, the data file, anything under modules/."""
    parts = rel.split("/")
    return rel == "hosts/lab.nix" or parts[0] == "modules" or (
        len(parts) == 3 and parts[0] == "hosts" and parts[2] == "default.nix")


_ROLES = "a list of roles (ControlPlane(), Worker(), CephStorage(), ... or a role of your own)"


def _roles_converter(value: Any, self_: Any, field: attrs.Attribute) -> Any:
    """``roles``: a role or a list of roles; each item that is not a role is reported on its own."""
    if isinstance(value, Role):
        return (value,)
    if not fields.is_list(value):
        report("roles", fields.wrong_type(value, _ROLES))
        return value
    bad = False
    for i, r in enumerate(value):
        if isinstance(r, type) and issubclass(r, Role):
            report(f"roles[{i}]", f"{r.__name__} is the role's class, not a role: call it, {r.__name__}()")
            bad = True
        elif not (isinstance(r, Role) and attrs.has(type(r))):
            report(f"roles[{i}]", fields.wrong_type(r, "a role (ControlPlane(), Worker(), ... or a role of your "
                                                       "own, an attrs class subclassing homelab.role.Role)"))
            bad = True
    return value if bad else tuple(value)


def _host_address(v: Any) -> ipaddress.IPv4Address | ipaddress.IPv4Interface:
    """'192.168.10.11' -> address; '192.168.10.11/24' -> interface (prefix kept for checks)."""
    if isinstance(v, (ipaddress.IPv4Address, ipaddress.IPv4Interface)):
        return v
    if not isinstance(v, str):
        raise TypeError(v)
    if "/" in v:
        return ipaddress.IPv4Interface(v)
    return ipaddress.IPv4Address(v)


def _options(value: Any) -> Any:
    """``options``: a FrozenDict of option path -> frozen value; a bad entry is reported and left out."""
    if not isinstance(value, _Mapping):
        report("options", fields.wrong_type(value, "a dict of option path -> value"))
        return FrozenDict()
    out = {}
    for path, v in value.items():
        why = option_path_problem(path)
        if why:
            report("options", why)
            continue
        try:
            out[path] = freeze(v)
        except (ValueError, TypeError, RecursionError) as e:
            reason = str(e) if not isinstance(e, RecursionError) else "contains itself"
            report(f"options[{path!r}]", reason)
    return FrozenDict(out)


def _component(v: Any) -> Any:
    from .component import Component

    if not isinstance(v, Component):
        raise TypeError(v)
    return v


def _labels(value: Any, self_: Any, field: attrs.Attribute) -> Any:
    return labels.to_labels(value, self_, field)


@attrs.frozen
class Cluster:
    """The lab's shared facts: LAN, Kubernetes ranges, API name, DNS zone."""

    plain_field_names = True

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
    # who may ssh in and reach the API server (and the lab's admin pages): the seed lab's are its LAN and
    # its tailnet; a list of "lan", "tailnet", "host:<name>" or networks
    admins: tuple[Source, ...] = attrs.field(default=("lan", "tailnet"), converter=to_sources)
    # SSH public keys allowed to log in as root (password login is off): what `homelab deploy` uses
    admin_keys: tuple[str, ...] = attrs.field(default=(), converter=fields.list_converter(
        _public_key, "a list of SSH public keys (one line each, e.g. \"ssh-ed25519 AAAA... you@laptop\")",
        "an SSH public key (one line, e.g. \"ssh-ed25519 AAAA... you@laptop\")"), validator=_whole_keys)
    production: bool = attrs.field(default=False, validator=a_bool)
    # the cluster layer's components (homelab.component): Traefik(acme=...), RookCeph(mons=...) or a lab's own;
    # the built-in ones its roles imply join unless listed (homelab.component.components)
    components: tuple[Any, ...] = attrs.field(default=(), converter=fields.list_converter(
        _component, "a list of cluster components (e.g. [Traefik(acme=Acme(...)), RookCeph()])",
        "a cluster component (Traefik(...), RookCeph(...) or an attrs class subclassing homelab.component.Component)"))

    @property
    def api_url(self) -> str:
        return f"https://{self.api_name}:{self.api_port}"



@attrs.frozen
class Host:
    """One NixOS machine of the lab.

    ``imports`` are hand-written Nix files next to ``host.py`` (e.g.
    ``hardware-configuration.nix``); ``options`` sets raw NixOS options by dotted
    path, for what the roles do not cover.
    """

    plain_field_names = True

    hostname: str = attrs.field(validator=dns_label)
    system: str = attrs.field(validator=one_of(*SYSTEMS))
    interface: str = attrs.field(validator=interface_name)
    # "192.168.10.11" or, with the LAN's prefix, "192.168.10.11/24"
    address: ipaddress.IPv4Address | ipaddress.IPv4Interface = attrs.field(converter=converter(
        _host_address, "an IPv4 address (e.g. 192.168.10.11 or 192.168.10.11/24)"))
    roles: tuple[Role, ...] = attrs.field(converter=attrs.Converter(_roles_converter, takes_self=True,
                                                                    takes_field=True))
    tailscale_address: ipaddress.IPv4Address | None = attrs.field(default=None, converter=to_optional_address)
    boot: Boot = attrs.field(
        factory=SystemdBoot,
        validator=fields.instance_of((SystemdBoot, RaspberryPi4), "SystemdBoot() or RaspberryPi4()"),
    )
    kernel_modules: tuple[str, ...] = attrs.field(default=(), converter=to_strs)
    kernel_params: tuple[str, ...] = attrs.field(default=(), converter=to_strs)
    imports: tuple[str, ...] = attrs.field(default=(), converter=to_strs)
    options: Mapping[str, Any] = attrs.field(factory=FrozenDict, converter=_options)
    # system.stateVersion, written explicitly (nixpkgs' default follows the running release, with a warning):
    # the release the host was first installed with; it never changes with upgrades
    state_version: str = attrs.field(kw_only=True, validator=fields.typed(
        str, "a NixOS release such as '26.05'", lambda v: _RELEASE.fullmatch(v) is not None,
        lambda v: f"{v!r} is not a NixOS release such as '26.05'"),
        metadata={"required": "the NixOS release the host was first installed with, e.g. '26.05' (system."
                              "stateVersion: NixOS keeps that release's data formats; never change it on an "
                              "installed host)"})
    description: str = attrs.field(default="", validator=safe_text)  # hardware, for the table
    ssh: Ssh = attrs.field(factory=Ssh, validator=instance_of(Ssh, "Ssh(user=..., host=..., port=...)"))
    # where `homelab deploy` builds the system: "local" (this machine), "target" (the host itself), another
    # lab host's name (a build host), or "auto": the target itself for aarch64 (a Raspberry Pi builds its own
    # system; nothing needs emulation), this machine otherwise
    open_ports: tuple[OpenPort, ...] = attrs.field(default=(), converter=fields.list_converter(
        _open_port, "a list of OpenPort(port, proto=..., source=..., reason=...)",
        "an OpenPort(port, proto=..., source=..., reason=...)"))
    build_on: str = attrs.field(default="auto", validator=fields.typed(
        str, "\"auto\", \"local\", \"target\" or a host name",
        lambda v: v in ("auto", "local", "target") or fields.LABEL.match(v) is not None,
        lambda v: f"{v!r} is not \"auto\", \"local\", \"target\" or a host name"))
    # Wake-on-LAN on the LAN interface (homelab wake / sleep); None: the host is woken by hand
    wake_on_lan: WakeOnLan | None = attrs.field(default=None, validator=fields.check(
        lambda v: v is None or isinstance(v, WakeOnLan), lambda v: fields.wrong_type(v, "WakeOnLan(mac=...) or None")))
    # Kubernetes node labels its kubelet registers (with those its roles add, homelab.labels); the cluster
    # layer selects nodes by them (Traefik's nodeSelector)
    labels: Mapping[str, str] = attrs.field(factory=FrozenDict, converter=attrs.Converter(
        _labels, takes_self=True, takes_field=True))

    @property
    def ip(self) -> ipaddress.IPv4Address:
        """The LAN address without any prefix the user wrote."""
        a = self.address
        return a.ip if isinstance(a, ipaddress.IPv4Interface) else a

    @kernel_modules.validator
    def _kmods(self, attribute, value):
        for m in value if isinstance(value, tuple) else ():
            if isinstance(m, str) and not _KERNEL_MODULE.fullmatch(m):  # non-strings: reported already
                report(attribute.name, f"{m!r} is not a kernel module name")

    @kernel_params.validator
    def _kparams(self, attribute, value):
        for p in value if isinstance(value, tuple) else ():
            if isinstance(p, str) and (not p or not _KERNEL_PARAM.fullmatch(p)):
                report(attribute.name, f"{p!r} is not a kernel parameter (no spaces, quotes, '$' or '\\')")

    @imports.validator
    def _imports(self, attribute, value):
        for p in value if isinstance(value, tuple) and all(isinstance(x, str) for x in value) else ():
            if not _IMPORT.fullmatch(p) or "/../" in p[3:]:
                report(attribute.name, f"{p!r} is not a relative path to a .nix file")
            elif p.rstrip("/").endswith("default.nix") and "/" not in p.replace("./", "", 1):
                report(attribute.name, f"{p!r} is the generated entry module itself")
            elif isinstance(self.hostname, str) and generated_path(target := posixpath.normpath(
                    f"hosts/{self.hostname}/{p}")):
                report(attribute.name, f"{p!r} is {target}, a file homelab generates; import only hand-written "
                       "Nix (what a generated file sets comes from host.py: roles, options)")

    def has(self, role_type: type) -> bool:
        return any(isinstance(r, role_type) for r in self.roles)

    def role(self, role_type: type):
        for r in self.roles:
            if isinstance(r, role_type):
                return r
        return None

    @property
    def is_kubernetes_node(self) -> bool:
        """Runs a kubelet: one of its roles says so (ControlPlane, Worker)."""
        return any(r.kubernetes_node for r in self.roles)

    @property
    def is_control_plane(self) -> bool:
        return any(r.control_plane for r in self.roles)

    @property
    def arch(self) -> str:
        return self.system.split("-")[0] if isinstance(self.system, str) else "?"

    @property
    def build_host(self) -> str | None:
        """Where the system is built: None for this machine, "target" for the host itself, or a host name."""
        where = self.build_on
        if where == "auto":
            where = "target" if self.arch == "aarch64" else "local"
        return None if where == "local" else where

    @property
    def ssh_target(self) -> str:
        """``user@host`` for ssh (the LAN address unless ``ssh.host`` names another)."""
        return f"{self.ssh.user}@{self.ssh.host or self.ip}"


@attrs.frozen
class Lab:
    """A whole lab: the cluster and its hosts (sorted by hostname)."""

    cluster: Cluster
    hosts: tuple[Host, ...] = attrs.field(converter=lambda hs: tuple(sorted(hs, key=lambda h: str(h.hostname))))
    # where each host came from (hostname -> "hosts/<dir>"), for messages and headers
    sources: Mapping[str, str] = attrs.field(factory=FrozenDict, converter=FrozenDict, eq=False)

    def host(self, name: str) -> Host:
        return self._by_name[name]

    @functools.cached_property
    def _by_name(self) -> dict[str, Host]:
        return {h.hostname: h for h in self.hosts}

    def where(self, host: Host | str) -> str:
        """Where a host came from, for messages: ``hosts/<folder>``."""
        name = host if isinstance(host, str) else host.hostname
        return self.sources.get(name, f"hosts/{name}")

    def with_role(self, role_type: type) -> list[Host]:
        # asked for by roles on every host: found once per lab
        return list(self.derived(("with_role", role_type), lambda: tuple(h for h in self.hosts if h.has(role_type))))

    def roles_of_type(self, role_type: type) -> Iterator[tuple[Host, Any]]:
        for h in self.hosts:
            r = h.role(role_type)
            if r is not None:
                yield h, r

    @functools.cached_property
    def role_types(self) -> tuple[type, ...]:
        """Every role class the lab uses, in the order of first use (hosts by name, roles in order)."""
        return tuple(dict.fromkeys(type(r) for h in self.hosts for r in h.roles))

    @functools.cached_property
    def kubernetes_nodes(self) -> tuple[Host, ...]:
        return tuple(h for h in self.hosts if h.is_kubernetes_node)

    @functools.cached_property
    def _derived(self) -> dict[Any, Any]:
        return {}

    def derived(self, key: Any, compute: Any) -> Any:
        """``compute()``, once per lab: what roles derive from the whole lab (every node's name and address)
        is the same for each of its hosts.  The lab is immutable, so the value never goes stale."""
        cache = self._derived
        if key not in cache:
            cache[key] = compute()
        return cache[key]

    @functools.cached_property
    def control_plane(self) -> Host | None:
        cps = [h for h in self.hosts if h.is_control_plane]
        return cps[0] if len(cps) == 1 else None
