"""The option contract: every NixOS option path homelab emits, with its nixpkgs type.

Each row records an option as nixpkgs declares it for :data:`NIXPKGS_RELEASE`:
the type (modelled with the :mod:`homelab.optiontypes` building blocks), the
file that declares it (``declared_in``, relative to the nixpkgs root), the
most important caveat (``note``) and how sure we are (``status``).  The
nixpkgs snapshots read, the defaults and the reasoning behind each row are in
docs/nixpkgs-facts.md; tests/test_contract.py keeps that document and this
table in step, and checks that the generator emits every row.

``status`` is ``"confirmed"`` when the declaration was read in a nixpkgs
snapshot taken after the 26.05 branch-off and an older upstream read (or the
26.05 release notes) agrees, and ``"partial"`` when only an unattributed copy
or only the post-branch snapshot was available.  Nobody has read the
release-26.05 branch file itself (see the document): check with ``nix eval``
against the pinned nixpkgs where it is reachable.

``homelab.verify`` refuses a generated file that sets a path not listed here
or a value that does not fit its type; raw options a user sets in ``host.py``
are the user's business and exempt.  ``<name>`` in a path matches any
attribute name (``attrsOf``/``submodule`` keys).

Where the contract's type is deliberately stricter than nixpkgs (it only has
to accept what homelab writes), the note says so.
"""

from __future__ import annotations

import functools
from typing import Any

import attrs

from . import optiontypes as t

NIXPKGS_RELEASE = "nixos-26.05"

CONFIRMED = "confirmed"
PARTIAL = "partial"


@attrs.frozen
class OptionFact:
    path: str
    type: t.OptionType
    declared_in: str
    note: str = ""
    status: str = attrs.field(default=CONFIRMED, validator=attrs.validators.in_((CONFIRMED, PARTIAL)))

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.path.split("."))


@attrs.frozen
class AttrNamesToTrue(t.OptionType):
    """``boot.kernelModules`` since nixos-25.11: a list of names or a set of name -> bool.

    nixpkgs coerces a list to ``{ name = true; }``, merges the sets key by key
    (a bool per name: ``true`` against ``false`` conflicts unless one side is
    ``lib.mkForce``d), then hands the modules the names set to true in
    attribute order, i.e. sorted.  The merged value here is that sorted list; no
    definition order survives.
    """

    nix = "coercedTo (listOf str) (attrsOf bool), applied to its sorted true names"

    def check(self, v: Any) -> str | None:
        if isinstance(v, list):
            return t.ListOf(t.str_).check(v)
        return t.AttrsOf(t.bool_).check(v)

    def merge(self, values: list[Any]) -> Any:
        as_sets = [{n: True for n in v} if isinstance(v, list) else v for v in values]
        merged = t.AttrsOf(t.bool_).merge(as_sets)
        return sorted(k for k, on in merged.items() if on)


# networking.interfaces.<name>.ipv4.addresses elements (addrOpts 4)
_addr = t.Submodule({"address": t.str_, "prefixLength": t.Scalar("ints.between 0 32", int, lo=0, hi=32)})
# coercedTo str (address only) (submodule gatewayOpts)
_gateway = t.Either((t.str_, t.Submodule({"address": t.str_, "interface": t.NullOr(t.str_),
                                           "metric": t.NullOr(t.int_), "source": t.NullOr(t.str_)})))
# attrsOf (nullOr (oneOf [ str path package ]))
_env = t.AttrsOf(t.NullOr(t.Either((t.str_, t.path, t.Package()))))
# nixpkgs: [[:alnum:]] in a POSIX class, i.e. ASCII letters and digits; "" is allowed (name from DHCP)
_hostname = t.strMatching(r"|[A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?")
# nixpkgs "kernelParam": tokens without whitespace, spaces only inside double quotes ([:space:] is ASCII)
_kernel_param = t.strMatching(r'([^" \t\n\r\f\v]|"[^"]*")+')

K8S = "nixos/modules/services/cluster/kubernetes/"
NET = "nixos/modules/tasks/network-interfaces.nix"
FW = "nixos/modules/services/networking/firewall.nix"
UNIT = "nixos/lib/systemd-unit-options.nix"
KERNEL = "nixos/modules/system/boot/kernel.nix"
TAILSCALE = "nixos/modules/services/networking/tailscale.nix"
NGINX = "nixos/modules/services/web-servers/nginx/default.nix"
COREDNS = "nixos/modules/services/networking/coredns.nix"

OPTIONS: tuple[OptionFact, ...] = (
    # networking
    OptionFact("networking.hostName", _hostname, NET,
               "strMatching: one label, no dots (the domain goes in networking.domain), at most 63 characters"),
    OptionFact("networking.extraHosts", t.lines, "nixos/modules/config/networking.nix",
               "appended verbatim to /etc/hosts after the localhost and networking.hosts lines"),
    OptionFact("networking.nameservers", t.ListOf(t.str_), NET),
    OptionFact("networking.defaultGateway", t.NullOr(_gateway), NET,
               "nullOr (coercedTo str (submodule gatewayOpts)); homelab writes the submodule form"),
    OptionFact("networking.useDHCP", t.bool_, NET,
               "default true; applies to interfaces without a static address"),
    OptionFact("networking.interfaces.<name>.ipv4.addresses", t.ListOf(_addr), NET,
               "prefixLength is ints.between 0 32 (a Nix int); address is an unchecked string"),
    OptionFact("networking.firewall.enable", t.bool_, FW, "default true: the firewall is on unless disabled"),
    OptionFact("networking.firewall.trustedInterfaces", t.ListOf(t.str_), FW,
               "the module always adds lo; traffic on a trusted interface skips every port rule"),
    OptionFact("networking.firewall.allowedTCPPorts", t.ListOf(t.port), FW,
               "apply sorts and de-duplicates the merged list (homelab show prints the plain concatenation)"),
    OptionFact("networking.firewall.allowedUDPPorts", t.ListOf(t.port), FW,
               "apply sorts and de-duplicates the merged list; tailscale's openFirewall adds its port here"),
    OptionFact("networking.firewall.extraCommands", t.lines,
               "nixos/modules/services/networking/firewall-iptables.nix",
               "iptables backend only: runs after the generated accept rules, just before the final refuse "
               "jump; the nftables firewall asserts it is empty"),
    OptionFact("networking.firewall.extraInputRules", t.lines,
               "nixos/modules/services/networking/firewall-nftables.nix",
               "nftables backend only: appended at the end of the input-allow chain; unused under iptables"),
    OptionFact("networking.nftables.enable", t.bool_, "nixos/modules/services/networking/nftables.nix",
               "true selects the nftables firewall (networking.firewall.backend's default) and blacklists "
               "the ip_tables kernel module"),
    # kubernetes
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
    # systemd
    OptionFact("systemd.services.<name>.environment", _env, UNIT,
               "null leaves a variable unset; systemd.services itself is declared in "
               "nixos/modules/system/boot/systemd.nix", status=PARTIAL),
    OptionFact("systemd.services.<name>.serviceConfig", t.AttrsOf(t.unitOption), UNIT,
               "addCheck (attrsOf unitOption) checkService: Type= and Restart= values are checked too",
               status=PARTIAL),
    # boot
    OptionFact("boot.kernelModules", AttrNamesToTrue(), KERNEL,
               "since 25.11 a list or a name -> bool set; the result is sorted, so no load order survives"),
    OptionFact("boot.kernelParams", t.ListOf(_kernel_param), KERNEL,
               "each element is one token; spaces only inside double quotes"),
    OptionFact("boot.kernelPackages", t.Package(), KERNEL,
               "types.raw in nixpkgs (default pkgs.linuxPackages); the contract only accepts a pkgs package "
               "set on purpose; linuxPackages_rpi4 warns on use since 2026-04"),
    OptionFact("boot.loader.systemd-boot.enable", t.bool_,
               "nixos/modules/system/boot/loader/systemd-boot/systemd-boot.nix",
               "enabling it also sets boot.loader.grub.enable to mkDefault false"),
    OptionFact("boot.loader.efi.canTouchEfiVariables", t.bool_, "nixos/modules/system/boot/loader/efi.nix",
               "default false"),
    OptionFact("boot.loader.grub.enable", t.bool_, "nixos/modules/system/boot/loader/grub/grub.nix",
               "default true on any non-container host; extlinux does not turn it off, so homelab does",
               status=PARTIAL),
    OptionFact("boot.loader.generic-extlinux-compatible.enable", t.bool_,
               "nixos/modules/system/boot/loader/generic-extlinux-compatible/default.nix",
               "writes /boot/extlinux/extlinux.conf for U-Boot"),
    # services
    OptionFact("services.coredns.enable", t.bool_, COREDNS),
    OptionFact("services.coredns.config", t.lines, COREDNS, "written verbatim as the Corefile"),
    OptionFact("services.nginx.enable", t.bool_, NGINX, status=PARTIAL),
    OptionFact("services.nginx.streamConfig", t.lines, NGINX, "placed inside the stream { } block by the module",
               status=PARTIAL),
    OptionFact("services.tailscale.enable", t.bool_, TAILSCALE),
    OptionFact("services.tailscale.openFirewall", t.bool_, TAILSCALE,
               "default false; true adds services.tailscale.port (41641) to allowedUDPPorts"),
    OptionFact("services.tailscale.interfaceName", t.str_, TAILSCALE, "default tailscale0"),
    OptionFact("services.tailscale.authKeyFile", t.NullOr(t.path), TAILSCALE,
               "nullOr path: homelab writes a string, since a Nix path literal would copy the key into the store"),
    # system
    OptionFact("nixpkgs.hostPlatform", t.Either((t.str_, t.Scalar("attrs", dict))), "nixos/modules/misc/nixpkgs.nix",
               "either str attrs, elaborated by apply; no default; homelab writes the system string"),
    OptionFact("system.stateVersion", t.str_, "nixos/modules/misc/version.nix",
               "an assertion requires the form YY.MM"),
)

BY_PATH: dict[str, OptionFact] = {o.path: o for o in OPTIONS}


# Rows by (number of parts, first part), in contract order: lookup runs for every attribute
# of every generated file (flatten, merge), and a scan of every row per call dominated the
# build time of large labs (bench/bench.py).
_INDEX: dict[tuple[int, str], tuple[OptionFact, ...]] = {}
for _o in OPTIONS:
    _INDEX[(len(_o.parts), _o.parts[0])] = _INDEX.get((len(_o.parts), _o.parts[0]), ()) + (_o,)


def lookup(parts: tuple[str, ...]) -> OptionFact | None:
    """The contract row whose path matches ``parts`` (``<name>`` matches any one part)."""
    return _lookup(tuple(parts))


@functools.lru_cache(maxsize=8192)
def _lookup(parts: tuple[str, ...]) -> OptionFact | None:
    if not parts:
        return None
    for o in _INDEX.get((len(parts), parts[0]), ()):
        if all(a == b or a == "<name>" for a, b in zip(o.parts, parts)):
            return o
    return None
