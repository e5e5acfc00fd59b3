"""Tailscale: the host joins the tailnet; what tailnet peers may reach is the host's flow table's business.

``auth_key=Secret("tailscale-auth-key")`` names the lab's age-encrypted secret
(``homelab secrets set``): agenix decrypts it at activation to
``/run/agenix/<name>`` (``config.age.secrets.<name>.path``), which becomes
``authKeyFile``.  ``auth_key_file`` is a path of your own secret manager's
instead (e.g. sops-nix).  Either way the key itself never enters a generated
file or the Nix store.  On the host, nixpkgs' ``tailscaled-autoconnect`` hands it to
``tailscale up --auth-key "$(cat <authKeyFile>)"``: while that runs, the key is in a process's arguments
(README, Secrets: the threat model).

The tailnet interface is not trusted as a whole: peers reach only the ports
whose flows name the tailnet (or the admins, when the tailnet is among them).
Since 1.52 tailscaled adds its own netfilter rule accepting everything that
arrives on its interface, ahead of NixOS's firewall; homelab turns tailscaled's
netfilter handling off (``tailscale set --netfilter-mode=off``) so the host's
firewall decides (tailscale/tailscale#11717; nixpkgs PR #454518 discusses the
same).  WireGuard's UDP port is opened to the world by a flow, not by
``openFirewall``.

Facts from nixpkgs (nixos-26.05): ``services/networking/tailscale.nix`` —
``openFirewall`` adds ``services.tailscale.port`` (41641) to the allowed UDP
ports of every interface; the module never trusts the interface itself;
``extraSetFlags`` are passed to ``tailscale set`` by ``tailscaled-set.service``;
``authKeyFile`` is ``nullOr path`` (homelab writes a string).
"""

from __future__ import annotations

from typing import Iterable

import attrs

from ... import checks, fields
from ... import optiontypes as t
from ...contract import OptionFact
from ...errors import Problem
from ...model import TAILSCALE_RANGE, Secret
from ...role import WORLD, Flow, HostContext, Module, Port, Role, section
from ...secrets import in_store, redact, secret_kind
from ...sources import Match


def _auth_key_reason(v: object) -> str:
    if isinstance(v, str) and secret_kind(v):
        return (f"{redact(v)} looks like {secret_kind(v)}; generated files and the Nix store are world-readable: "
                f'name the secret instead, auth_key=Secret("tailscale-auth-key"), and set its value with '
                "`homelab secrets set tailscale-auth-key --host <host>` (the key on standard input)")
    if isinstance(v, str):
        return f'{v!r} is a str, not a Secret: write auth_key=Secret("{v}") (a path belongs in auth_key_file)'
    return fields.wrong_type(v, 'a Secret (Secret("tailscale-auth-key")) or None')

TAILSCALE = "nixos/modules/services/networking/tailscale.nix"
TAILSCALE_PORT = 41641  # services.tailscale.port default; openFirewall opens it for UDP
TAILNET_V4 = str(TAILSCALE_RANGE)  # Tailscale's IPv4 range (CGNAT), the one validation checks addresses against
TAILNET_V6 = "fd7a:115c:a1e0::/48"  # Tailscale's IPv6 range (ULA)
# made of constants only, and a Flow is frozen and holds only immutable values: one object serves every host
_FLOW = Flow(TAILSCALE_PORT, "udp", WORLD, "WireGuard: tailnet peers reach this host directly from anywhere")


@attrs.frozen
class Tailscale(Role):
    """Tailscale VPN.  Its interface is not trusted as a whole: the flow table says what tailnet peers reach.

    ``auth_key`` is a secret of the lab (agenix decrypts it on the host); ``auth_key_file`` a path read at run time
    (another secret manager's).  The key itself is never written into generated files.
    """

    auth_key_file: str | None = attrs.field(default=None, validator=fields.optional_path)
    auth_key: Secret | None = attrs.field(default=None, kw_only=True, validator=fields.check(
        lambda v: v is None or isinstance(v, Secret), _auth_key_reason))
    interface: str = attrs.field(default="tailscale0", validator=fields.interface_name)

    label = "tailscale"
    host_fields = (("tailscale_address", "that address"),)
    # services/networking/tailscale.nix: openFirewall adds services.tailscale.port to allowedUDPPorts
    module_ports = (("services.tailscale.openFirewall", "udp", "services.tailscale.port", TAILSCALE_PORT),)
    options = (
        OptionFact("services.tailscale.enable", t.bool_, TAILSCALE,
                   nix_type="`bool` (an enable option)",
                   nix_default="`false`",
                   evidence="S + U1"),
        OptionFact("services.tailscale.openFirewall", t.bool_, TAILSCALE,
                   "default false; true adds services.tailscale.port (41641) to allowedUDPPorts",
                   nix_type="`bool`",
                   nix_default="`false`",
                   evidence="S + U1"),
        OptionFact("services.tailscale.extraSetFlags", t.ListOf(t.str_), TAILSCALE,
                   "passed to `tailscale set` by tailscaled-set.service after tailscaled starts",
                   nix_type="`listOf str`",
                   nix_default="`[ ]`; when non-empty, `tailscaled-set.service` runs `tailscale set <flags>` "
                               "after tailscaled",
                   evidence="S"),
        OptionFact("services.tailscale.extraUpFlags", t.ListOf(t.str_), TAILSCALE,
                   "passed to `tailscale up` by tailscaled-autoconnect (only with authKeyFile); `tailscale up` "
                   "resets every setting it is not given",
                   nix_type="`listOf str`",
                   nix_default="`[ ]`; used only when `authKeyFile` is set: `tailscaled-autoconnect.service` "
                               "runs `tailscale up --auth-key ... <flags>` while the node needs login. "
                               "`tailscale up` resets every preference it is not given",
                   evidence="S (the reset: Tailscale behaviour)"),
        OptionFact("services.tailscale.interfaceName", t.str_, TAILSCALE, "default tailscale0",
                   nix_type="`str`",
                   nix_default="`\"tailscale0\"`",
                   evidence="S + U1"),
        OptionFact("services.tailscale.authKeyFile", t.NullOr(t.path), TAILSCALE,
                   "nullOr path: homelab writes a string, since a Nix path literal would copy the key into the "
                   "store",
                   nix_type="`nullOr path`",
                   nix_default="`null`",
                   evidence="S + U1"),
    )

    def compile(self, ctx: HostContext) -> Iterable[Module]:
        # The module depends on nothing but these three fields (the role class too, kept in the key for a subclass):
        # hosts configured alike get the very same Module, once per lab (the compiler then writes out its variant
        # key once, not per host).  Each value keyed with its type, so that no two values equal by == but written
        # differently (True and 1) share an entry; str, None are all these fields hold.
        key_path = self.auth_key.path if self.auth_key is not None else None
        key = ("tailscale: module", type(self), *((type(v), v) for v in (self.interface, self.auth_key_file,
                                                                            key_path)))
        yield ctx.lab.derived(key, self._module)

    def _module(self) -> Module:
        defs: list[tuple[str, object]] = [
            ("services.tailscale.enable", True),
            ("services.tailscale.openFirewall", False),
            ("services.tailscale.interfaceName", self.interface),
        ]
        if self.auth_key_file:
            defs.append(("services.tailscale.authKeyFile", self.auth_key_file))
        elif self.auth_key is not None:  # agenix's age.secrets.<name>.path, set so by nix/lib.nix
            defs.append(("services.tailscale.authKeyFile", self.auth_key.path))
        return Module("modules/network/tailscale.nix", "Tailscale on every host", (
            section("", *defs),
            section("tailscaled would accept everything arriving on its interface ahead of NixOS's firewall; "
                    "turned off, the host's flow table decides what tailnet peers reach. `tailscale up` resets "
                    "every setting it is not given, so log in with `tailscale up --netfilter-mode=off`.",
                    ("services.tailscale.extraSetFlags", ["--netfilter-mode=off"]),
                    ("services.tailscale.extraUpFlags", ["--netfilter-mode=off"])),
        ))

    def flows(self, ctx: HostContext) -> Iterable[Flow]:
        yield _FLOW

    def ports(self, ctx: HostContext) -> Iterable[Port]:
        yield Port(TAILSCALE_PORT, "udp", "tailscaled")

    def sources(self, ctx: HostContext) -> Iterable[tuple[str, Match]]:
        """The tailnet: Tailscale's ranges, arriving on its interface."""
        yield "tailnet", Match(4, self.interface, TAILNET_V4)
        yield "tailnet", Match(6, self.interface, TAILNET_V6)

    def check(self, ctx: HostContext) -> Iterable[Problem]:
        if self.interface == ctx.host.interface:
            yield self.error(ctx, "interface", f"{self.interface} is the LAN interface too")
        if self.auth_key_file and self.auth_key is not None:
            yield self.error(ctx, "auth_key", "give the key one way: auth_key (a secret of the lab) or auth_key_file "
                             "(a path of your own secret manager), not both")
        if self.auth_key_file and in_store(self.auth_key_file):
            yield self.error(ctx, "auth_key_file", f"{self.auth_key_file!r} lies in the Nix store, which every "
                             "user can read; keep the key outside it (e.g. /run/secrets/tailscale-authkey)")

    def expectations(self, ctx: HostContext) -> Iterable[checks.Check]:
        yield checks.service("tailscaled.service", "host", "Tailscale role")

