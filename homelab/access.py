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
from .contract import SSHD_OPTIONS, OptionFact
from .nixmodule import Module, section
from .role import ADMINS, Flow, HostContext

SSH_PORT = 22

# sshd's option rows are core rows of the contract (every host has sshd): homelab/contract.py
OPTIONS: tuple[OptionFact, ...] = SSHD_OPTIONS


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


# made of constants only, and a Flow is frozen and holds only immutable values: one object serves every host
# (each host asked for a new equal one: 10,000 Flow objects, each through Flow's validators, at 10,000 hosts)
_SSH_FLOW = Flow(SSH_PORT, "tcp", ADMINS, "sshd: admins log in with their keys (homelab deploy, kubectl on the host)")


def flows(ctx: HostContext) -> Iterable[Flow]:
    yield _SSH_FLOW


def expectations(ctx: HostContext) -> Iterable[checks.Check]:
    yield checks.service("sshd.service", "host", "every host: sshd for the lab's admins (keys only)")
    yield checks.listening("tcp", SSH_PORT, "host", "sshd")
