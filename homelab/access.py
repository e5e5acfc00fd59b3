"""How admins reach every host: OpenSSH, keys only, its port open to the cluster's admins and nobody else.

Every host gets ``modules/network/ssh.nix`` (one file for the lab): sshd on, no
password or keyboard-interactive logins, root only with a key (what ``homelab
deploy`` uses), the admins' public keys from ``Cluster.admin_keys``, and
``openFirewall`` off — NixOS's default would open port 22 to everyone; the
host's flow table opens it to ``Cluster.admins`` only.

Facts from nixpkgs (nixos-26.05, ``services/networking/ssh/sshd.nix``):
``openFirewall`` defaults to true and adds ``ports`` to the global allowed
ports; ``settings.PasswordAuthentication`` and
``settings.KbdInteractiveAuthentication`` default to true;
``settings.PermitRootLogin`` defaults to ``"prohibit-password"``;
``users.users.<name>.openssh.authorizedKeys.keys`` is ``listOf singleLineStr``
(``nixos/modules/config/users-groups.nix`` declares ``users.users``).
"""

from __future__ import annotations

from typing import Iterable

from . import checks
from . import optiontypes as t
from .contract import OptionFact
from .nixmodule import Module, section
from .role import ADMINS, Flow, HostContext

SSHD = "nixos/modules/services/networking/ssh/sshd.nix"
SSH_PORT = 22

OPTIONS: tuple[OptionFact, ...] = (
    OptionFact("services.openssh.enable", t.bool_, SSHD),
    OptionFact("services.openssh.openFirewall", t.bool_, SSHD,
               "default true: adds ports (22) to the global allowedTCPPorts, open to every source"),
    OptionFact("services.openssh.settings.PasswordAuthentication", t.NullOr(t.bool_), SSHD, "default true"),
    OptionFact("services.openssh.settings.KbdInteractiveAuthentication", t.NullOr(t.bool_), SSHD, "default true"),
    OptionFact("services.openssh.settings.PermitRootLogin",
               t.NullOr(t.Enum(("yes", "without-password", "prohibit-password", "forced-commands-only", "no"))),
               SSHD, "default \"prohibit-password\" (root with a key only)"),
    OptionFact("users.users.<name>.openssh.authorizedKeys.keys", t.ListOf(t.strMatching(r"[^\n]*")), SSHD,
               "listOf singleLineStr, written to /etc/ssh/authorized_keys.d/<user>; users.users itself is "
               "declared in nixos/modules/config/users-groups.nix"),
)


def module(cluster) -> Module:
    """``modules/network/ssh.nix``: the same for every host of the lab."""
    return Module("modules/network/ssh.nix", "SSH for the lab's admins: keys only", (
        section("OpenSSH with keys only; its port is opened to the cluster's admins by each host's flow table, "
                "not to everyone (openFirewall would).",
                ("services.openssh.enable", True),
                ("services.openssh.openFirewall", False),
                ("services.openssh.settings.PasswordAuthentication", False),
                ("services.openssh.settings.KbdInteractiveAuthentication", False),
                ("services.openssh.settings.PermitRootLogin", "prohibit-password")),
        section("The admins' public keys (hosts/cluster.py admin_keys): root logs in with them only.",
                ("users.users.root.openssh.authorizedKeys.keys", list(cluster.admin_keys))),
    ), source="")


def flows(ctx: HostContext) -> Iterable[Flow]:
    yield Flow(SSH_PORT, "tcp", ADMINS, "sshd: admins log in with their keys (homelab deploy, kubectl on the host)")


def expectations(ctx: HostContext) -> Iterable[checks.Check]:
    yield checks.service("sshd.service", "host", "every host: sshd for the lab's admins (keys only)")
    yield checks.listening("tcp", SSH_PORT, "host", "sshd")
