"""The option contract: every NixOS option path homelab emits, with its nixpkgs type.

Each row was read from the nixpkgs module source named in ``declared_in`` at
the release :data:`NIXPKGS_RELEASE` (see docs/nixpkgs-facts.md for the commit
read and the notes behind each row).  ``homelab.verify`` refuses a generated
file that sets a path not listed here or a value that does not fit its type;
raw options a user sets in ``host.py`` are the user's business and exempt.

``<name>`` in a path matches any attribute name (``attrsOf``/``submodule`` keys).
"""

from __future__ import annotations

import attrs

from . import optiontypes as t

NIXPKGS_RELEASE = "nixos-26.05"


@attrs.frozen
class OptionFact:
    path: str
    type: t.OptionType
    declared_in: str
    note: str = ""

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.path.split("."))


_addr = t.Submodule({"address": t.str_, "prefixLength": t.int_})
_gateway = t.Either((t.str_, t.Submodule({"address": t.str_, "interface": t.NullOr(t.str_),
                                           "metric": t.NullOr(t.int_), "source": t.NullOr(t.str_)})))
_env = t.AttrsOf(t.NullOr(t.Either((t.str_, t.Package()))))

K8S = "nixos/modules/services/cluster/kubernetes/"
NET = "nixos/modules/tasks/network-interfaces.nix"
FW = "nixos/modules/services/networking/firewall.nix"
UNIT = "nixos/lib/systemd-unit-options.nix"

OPTIONS: tuple[OptionFact, ...] = (
    # networking
    OptionFact("networking.hostName", t.strMatching(r"|[A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"), NET),
    OptionFact("networking.extraHosts", t.lines, "nixos/modules/config/networking.nix"),
    OptionFact("networking.nameservers", t.ListOf(t.str_), NET),
    OptionFact("networking.defaultGateway", t.NullOr(_gateway), NET,
               "coercedTo str (submodule gatewayOpts); we write the submodule form"),
    OptionFact("networking.useDHCP", t.bool_, NET),
    OptionFact("networking.interfaces.<name>.ipv4.addresses", t.ListOf(_addr), NET),
    OptionFact("networking.firewall.enable", t.bool_, FW),
    OptionFact("networking.firewall.trustedInterfaces", t.ListOf(t.str_), FW),
    OptionFact("networking.firewall.allowedTCPPorts", t.ListOf(t.port), FW),
    OptionFact("networking.firewall.allowedUDPPorts", t.ListOf(t.port), FW),
    OptionFact("networking.firewall.extraCommands", t.lines,
               "nixos/modules/services/networking/firewall-iptables.nix",
               "iptables backend only; runs just before the final refuse rule"),
    OptionFact("networking.firewall.extraInputRules", t.lines,
               "nixos/modules/services/networking/firewall-nftables.nix",
               "nftables backend only; placed in the input-allow chain"),
    OptionFact("networking.nftables.enable", t.bool_, "nixos/modules/services/networking/nftables.nix"),
    # kubernetes
    OptionFact("services.kubernetes.roles", t.ListOf(t.Enum(("master", "node"))), K8S + "default.nix"),
    OptionFact("services.kubernetes.masterAddress", t.str_, K8S + "default.nix"),
    OptionFact("services.kubernetes.apiserverAddress", t.str_, K8S + "default.nix",
               "defaults to https://<advertiseAddress> without a port; set it when securePort is used"),
    OptionFact("services.kubernetes.easyCerts", t.bool_, K8S + "default.nix",
               "nixpkgs: not for a production-grade cluster"),
    OptionFact("services.kubernetes.clusterCidr", t.NullOr(t.str_), K8S + "default.nix"),
    OptionFact("services.kubernetes.apiserver.advertiseAddress", t.NullOr(t.str_), K8S + "apiserver.nix"),
    OptionFact("services.kubernetes.apiserver.securePort", t.port, K8S + "apiserver.nix"),
    OptionFact("services.kubernetes.apiserver.allowPrivileged", t.bool_, K8S + "apiserver.nix",
               "defaults to false"),
    OptionFact("services.kubernetes.apiserver.serviceClusterIpRange", t.str_, K8S + "apiserver.nix"),
    OptionFact("services.kubernetes.addons.dns.enable", t.bool_, K8S + "addons/dns.nix"),
    OptionFact("services.kubernetes.addons.dns.corednsImage", t.Package(), K8S + "addons/dns.nix",
               "new in 26.05 (renamed from addons.dns.coredns, an attrs); default: an image built from "
               "pkgs.coredns; the pod uses its imageName and imageTag, which dockerTools.pullImage sets"),
    OptionFact("services.kubernetes.kubelet.extraOpts", t.separatedString(" "), K8S + "kubelet.nix"),
    OptionFact("services.kubernetes.kubelet.kubeconfig.server", t.NullOr(t.str_), K8S + "default.nix",
               "declared by the kubeconfig option set mkKubeConfigOptions"),
    # systemd
    OptionFact("systemd.services.<name>.environment", _env, UNIT),
    OptionFact("systemd.services.<name>.serviceConfig", t.AttrsOf(t.unitOption), UNIT),
    # boot
    OptionFact("boot.kernelModules", t.ListOf(t.str_), "nixos/modules/system/boot/kernel.nix"),
    OptionFact("boot.kernelParams", t.ListOf(t.str_), "nixos/modules/system/boot/kernel.nix",
               "listOf (strMatching ...) in nixpkgs: no unquoted spaces"),
    OptionFact("boot.kernelPackages", t.Package(), "nixos/modules/system/boot/kernel.nix"),
    OptionFact("boot.loader.systemd-boot.enable", t.bool_,
               "nixos/modules/system/boot/loader/systemd-boot/systemd-boot.nix"),
    OptionFact("boot.loader.efi.canTouchEfiVariables", t.bool_, "nixos/modules/system/boot/loader/efi.nix"),
    OptionFact("boot.loader.grub.enable", t.bool_, "nixos/modules/system/boot/loader/grub/grub.nix"),
    OptionFact("boot.loader.generic-extlinux-compatible.enable", t.bool_,
               "nixos/modules/system/boot/loader/generic-extlinux-compatible/default.nix"),
    # services
    OptionFact("services.coredns.enable", t.bool_, "nixos/modules/services/networking/coredns.nix"),
    OptionFact("services.coredns.config", t.lines, "nixos/modules/services/networking/coredns.nix"),
    OptionFact("services.nginx.enable", t.bool_, "nixos/modules/services/web-servers/nginx/default.nix"),
    OptionFact("services.nginx.streamConfig", t.lines, "nixos/modules/services/web-servers/nginx/default.nix",
               "wrapped in stream { } by the module"),
    OptionFact("services.tailscale.enable", t.bool_, "nixos/modules/services/networking/tailscale.nix"),
    OptionFact("services.tailscale.openFirewall", t.bool_, "nixos/modules/services/networking/tailscale.nix"),
    OptionFact("services.tailscale.interfaceName", t.str_, "nixos/modules/services/networking/tailscale.nix"),
    OptionFact("services.tailscale.authKeyFile", t.NullOr(t.path), "nixos/modules/services/networking/tailscale.nix"),
    # system
    OptionFact("nixpkgs.hostPlatform", t.str_, "nixos/modules/misc/nixpkgs.nix",
               "either str or attrs (elaborated); we write the system string"),
    OptionFact("system.stateVersion", t.str_, "nixos/modules/misc/version.nix"),
)

BY_PATH: dict[str, OptionFact] = {o.path: o for o in OPTIONS}


def lookup(parts: tuple[str, ...]) -> OptionFact | None:
    """The contract row whose path matches ``parts`` (``<name>`` matches any one part)."""
    for o in OPTIONS:
        p = o.parts
        if len(p) == len(parts) and all(a == b or a == "<name>" for a, b in zip(p, parts)):
            return o
    return None
