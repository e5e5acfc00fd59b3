"""Tailscale: the host joins the tailnet; its interface is trusted like the LAN.

``auth_key_file`` is a path read at run time (e.g. a sops-nix secret): the key
itself never enters a generated file or the Nix store.

Facts from nixpkgs (nixos-26.05): ``services/networking/tailscale.nix`` —
``openFirewall`` adds ``services.tailscale.port`` (41641) to the allowed UDP
ports; ``authKeyFile`` is ``nullOr path`` (homelab writes a string).
"""

from __future__ import annotations

from typing import Iterable

import attrs

from .. import checks, fields
from .. import optiontypes as t
from ..contract import OptionFact
from ..errors import Problem
from ..role import HostContext, Module, Port, Role, section
from ..secrets import in_store

TAILSCALE = "nixos/modules/services/networking/tailscale.nix"
TAILSCALE_PORT = 41641  # services.tailscale.port default; openFirewall opens it for UDP


@attrs.frozen
class Tailscale(Role):
    """Tailscale VPN; its interface is trusted by the firewall.

    ``auth_key_file`` is a path read at run time (e.g. a sops-nix secret); the
    key itself is never written into generated files.
    """

    auth_key_file: str | None = attrs.field(default=None, validator=fields.optional_path)
    interface: str = attrs.field(default="tailscale0", validator=fields.interface_name)

    label = "tailscale"
    options = (
        OptionFact("services.tailscale.enable", t.bool_, TAILSCALE),
        OptionFact("services.tailscale.openFirewall", t.bool_, TAILSCALE,
                   "default false; true adds services.tailscale.port (41641) to allowedUDPPorts"),
        OptionFact("services.tailscale.interfaceName", t.str_, TAILSCALE, "default tailscale0"),
        OptionFact("services.tailscale.authKeyFile", t.NullOr(t.path), TAILSCALE,
                   "nullOr path: homelab writes a string, since a Nix path literal would copy the key into the "
                   "store"),
    )

    def compile(self, ctx: HostContext) -> Iterable[Module]:
        defs: list[tuple[str, object]] = [
            ("services.tailscale.enable", True),
            ("services.tailscale.openFirewall", True),
            ("services.tailscale.interfaceName", self.interface),
        ]
        if self.auth_key_file:
            defs.append(("services.tailscale.authKeyFile", self.auth_key_file))
        yield Module("modules/network/tailscale.nix", "Tailscale on every host", (
            section("", *defs),
            section("Peers on the tailnet are trusted like the LAN.",
                    ("networking.firewall.trustedInterfaces", [self.interface])),
        ))

    def ports(self, ctx: HostContext) -> Iterable[Port]:
        yield Port(TAILSCALE_PORT, "udp", "tailscaled")

    def check(self, ctx: HostContext) -> Iterable[Problem]:
        if self.interface == ctx.host.interface:
            yield self.error(ctx, "interface", f"{self.interface} is the LAN interface too")
        if self.auth_key_file and in_store(self.auth_key_file):
            yield self.error(ctx, "auth_key_file", f"{self.auth_key_file!r} lies in the Nix store, which every "
                             "user can read; keep the key outside it (e.g. /run/secrets/tailscale-authkey)")

    def expectations(self, ctx: HostContext) -> Iterable[checks.Check]:
        yield checks.service("tailscaled.service", "host", "Tailscale role")
        yield checks.open_port(ctx.cluster.firewall, "udp", TAILSCALE_PORT,
                               f"open UDP port {TAILSCALE_PORT} (services.tailscale.openFirewall)")
