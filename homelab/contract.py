"""The option contract: every NixOS option path homelab emits, with its nixpkgs type.

The core rows (networking, boot, firewall, systemd, system) are here; each role
brings the rows of the options it writes as its ``options`` (see
:mod:`homelab.roles`), and a lab's contract is :func:`of_roles` of the roles it
uses.

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

The contract of every built-in role (what docs/nixpkgs-facts.md tabulates) is
:func:`homelab.roles.builtin_contract`.

``homelab.readback`` refuses a generated file that sets a path not listed here
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
    """One option as nixpkgs declares it, and the evidence: a row of the contract and of docs/nixpkgs-facts.md.

    ``type`` is the model homelab checks values with; ``nix_type``, ``nix_default`` and ``evidence`` are
    what the document's row says (the type and default in nixpkgs' words, the snapshots read, labelled
    as the document labels them); ``declared_note`` follows the declaring file in its cell.
    """

    path: str
    type: t.OptionType
    declared_in: str
    note: str = ""
    status: str = attrs.field(default=CONFIRMED, validator=attrs.validators.in_((CONFIRMED, PARTIAL)))
    nix_type: str = ""
    nix_default: str = ""
    evidence: str = ""
    declared_note: str = ""

    def doc_row(self) -> str:
        """The row of docs/nixpkgs-facts.md's contract table."""
        declared = f"`{self.declared_in}`" + (f" {self.declared_note}" if self.declared_note else "")
        cells = (f"`{self.path}`", self.nix_type, self.nix_default, declared, self.evidence, self.status)
        return "| " + " | ".join(cells) + " |"

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.path.split("."))


DOC_HEADER = ("| Option path | Type in nixpkgs | Default | Declared in | Snapshot read | Status |\n"
              "|---|---|---|---|---|---|")


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

NET = "nixos/modules/tasks/network-interfaces.nix"
FW = "nixos/modules/services/networking/firewall.nix"
UNIT = "nixos/lib/systemd-unit-options.nix"
KERNEL = "nixos/modules/system/boot/kernel.nix"

CORE_OPTIONS: tuple[OptionFact, ...] = (
    OptionFact("networking.hostName", _hostname, NET,
               "strMatching: one label, no dots (the domain goes in networking.domain), at most 63 characters",
               nix_type="`strMatching \"^$\\|^[[:alnum:]]([[:alnum:]_-]{0,61}[[:alnum:]])?$\"`: one label, no "
                        "dots, at most 63 characters, or empty",
               nix_default="the distribution id, `\"nixos\"`",
               evidence="S"),
    OptionFact("networking.extraHosts", t.lines, "nixos/modules/config/networking.nix",
               "appended verbatim to /etc/hosts after the localhost and networking.hosts lines",
               nix_type="`lines`",
               nix_default="`\"\"`",
               evidence="S"),
    OptionFact("networking.nameservers", t.ListOf(t.str_), NET,
               nix_type="`listOf str`",
               nix_default="`[ ]`",
               evidence="S"),
    OptionFact("networking.defaultGateway", t.NullOr(_gateway), NET,
               "nullOr (coercedTo str (submodule gatewayOpts)); homelab writes the submodule form",
               nix_type="`nullOr` of a string coerced to a submodule with `address` (str, required), "
                        "`interface`, `metric`, `source` (each nullable)",
               nix_default="`null`",
               evidence="S"),
    OptionFact("networking.useDHCP", t.bool_, NET,
               "default true; applies to interfaces without a static address",
               nix_type="`bool`",
               nix_default="`true`",
               evidence="S"),
    OptionFact("networking.interfaces.<name>.ipv4.addresses", t.ListOf(_addr), NET,
               "prefixLength is ints.between 0 32 (a Nix int); address is an unchecked string",
               nix_type="`listOf` submodule: `address` (str), `prefixLength` (`ints.between 0 32`), both required",
               nix_default="`[ ]`",
               evidence="S"),
    OptionFact("networking.interfaces.<name>.wakeOnLan.enable", t.bool_, NET,
               "default false; becomes a systemd.link WakeOnLan= for the interface (applied when udev sets it up)",
               nix_type="`bool`",
               nix_default="`false`",
               evidence="S + U4"),
    OptionFact("networking.interfaces.<name>.wakeOnLan.policy",
               t.ListOf(t.Enum(("phy", "unicast", "multicast", "broadcast", "arp", "magic", "secureon"))), NET,
               "default [ \"magic\" ]; joined with spaces into WakeOnLan=",
               nix_type="`listOf (enum [ \"phy\" \"unicast\" \"multicast\" \"broadcast\" \"arp\" \"magic\" \"secureon\" "
                        "])`",
               nix_default="`[ \"magic\" ]`",
               evidence="S + U4"),
    OptionFact("networking.firewall.enable", t.bool_, FW, "default true: the firewall is on unless disabled",
               nix_type="`bool`",
               nix_default="`true`",
               evidence="S"),
    OptionFact("networking.firewall.extraCommands", t.lines,
               "nixos/modules/services/networking/firewall-iptables.nix",
               "iptables backend only: runs after the generated accept rules, just before the final refuse "
               "jump; the nftables firewall asserts it is empty",
               nix_type="`lines`",
               nix_default="`\"\"`",
               evidence="S + U1"),
    OptionFact("networking.firewall.extraInputRules", t.lines,
               "nixos/modules/services/networking/firewall-nftables.nix",
               "nftables backend only: appended at the end of the input-allow chain; unused under iptables",
               nix_type="`lines`",
               nix_default="`\"\"`",
               evidence="S + U1 + U3"),
    OptionFact("networking.nftables.flushRuleset", t.bool_, "nixos/modules/services/networking/nftables.nix",
               "default stateVersion < 23.11: true flushes every table (kube-proxy's, flannel's) on each reload",
               nix_type="`bool` (an enable option)",
               nix_default="`false`, but `nftables.nix` sets `mkDefault` true when `system.stateVersion` is "
                           "older than 23.11 or `ruleset`/`rulesetFile` is set; true makes every reload run "
                           "`flush ruleset`, dropping kube-proxy's and flannel's tables too; false deletes "
                           "only the module's own `tables`",
               evidence="S"),
    OptionFact("networking.nftables.enable", t.bool_, "nixos/modules/services/networking/nftables.nix",
               "true selects the nftables firewall (networking.firewall.backend's default) and blacklists "
               "the ip_tables kernel module",
               nix_type="`bool`",
               nix_default="`false`",
               evidence="S"),
    OptionFact("systemd.services.<name>.environment", _env, UNIT,
               "null leaves a variable unset; systemd.services itself is declared in "
               "nixos/modules/system/boot/systemd.nix", status=PARTIAL,
               nix_type="`attrsOf (nullOr (oneOf [ str path package ]))`",
               nix_default="`{ }`",
               evidence="IX (a 2024+ copy); the only attributed copy is old",
               declared_note="(`systemd.services` itself: `nixos/modules/system/boot/systemd.nix`)"),
    OptionFact("systemd.services.<name>.serviceConfig", t.AttrsOf(t.unitOption), UNIT,
               "addCheck (attrsOf unitOption) checkService: Type= and Restart= values are checked too",
               status=PARTIAL,
               nix_type="`attrsOf unitOption` with an extra check on `Type=`/`Restart=` values",
               nix_default="`{ }`",
               evidence="IX, as above"),
    OptionFact("boot.kernelModules", AttrNamesToTrue(), KERNEL,
               "since 25.11 a list or a name -> bool set; the result is sorted, so no load order survives",
               nix_type="a list of strings coerced to `attrsOf bool` (name = true); `apply` keeps the names "
                        "set to true, in sorted order",
               nix_default="`{ }`",
               evidence="S + GH #375975"),
    OptionFact("boot.kernelParams", t.ListOf(_kernel_param), KERNEL,
               "each element is one token; spaces only inside double quotes",
               nix_type="`listOf` a \"kernelParam\" string: `strMatching ''([^\"[:space:]]\\|\"[^\"]*\")+''`",
               nix_default="`[ ]`",
               evidence="S"),
    OptionFact("boot.kernelPackages", t.Package(), KERNEL,
               "types.raw in nixpkgs (default pkgs.linuxPackages); the contract only accepts a pkgs package "
               "set on purpose; linuxPackages_rpi4 warns on use since 2026-04, so RaspberryPi4() writes none",
               nix_type="`raw`, with an `apply` that adds `boot.kernelPatches` and kernel features",
               nix_default="`pkgs.linuxPackages` (kernel 6.18 in 26.05); homelab writes it only when "
                           "`RaspberryPi4(kernel_packages=...)` names a set",
               evidence="S + RN"),
    OptionFact("boot.loader.systemd-boot.enable", t.bool_,
               "nixos/modules/system/boot/loader/systemd-boot/systemd-boot.nix",
               "enabling it also sets boot.loader.grub.enable to mkDefault false",
               nix_type="`bool`",
               nix_default="`false`",
               evidence="S (older copies agree)"),
    OptionFact("boot.loader.efi.canTouchEfiVariables", t.bool_, "nixos/modules/system/boot/loader/efi.nix",
               "default false",
               nix_type="`bool`",
               nix_default="`false`",
               evidence="S"),
    OptionFact("boot.loader.grub.enable", t.bool_, "nixos/modules/system/boot/loader/grub/grub.nix",
               "default true on any non-container host; extlinux does not turn it off, so homelab does",
               status=PARTIAL,
               nix_type="`bool`",
               nix_default="`true` unless the system is a container",
               evidence="IX (one copy in S's formatting, older copies agree)"),
    OptionFact("boot.loader.generic-extlinux-compatible.enable", t.bool_,
               "nixos/modules/system/boot/loader/generic-extlinux-compatible/default.nix",
               "writes /boot/extlinux/extlinux.conf for U-Boot",
               nix_type="`bool`",
               nix_default="`false`",
               evidence="S"),
    OptionFact("nixpkgs.hostPlatform", t.Either((t.str_, t.Scalar("attrs", dict))), "nixos/modules/misc/nixpkgs.nix",
               "either str attrs, elaborated by apply; no default; homelab writes the system string",
               nix_type="`either str attrs`, elaborated into a platform by `apply`",
               nix_default="none",
               evidence="S (IX copies agree)"),
    OptionFact("system.stateVersion", t.str_, "nixos/modules/misc/version.nix",
               "an assertion requires the form YY.MM; the default follows the running release (with a warning), "
               "so homelab always writes Host.state_version, which host.py must give",
               nix_type="`str` (an assertion requires `YY.MM`)",
               nix_default="the running release, with a warning",
               evidence="S"),
)


SSHD = "nixos/modules/services/networking/ssh/sshd.nix"

# every host's sshd (homelab/access.py writes them)
SSHD_OPTIONS: tuple[OptionFact, ...] = (
    OptionFact("services.openssh.enable", t.bool_, SSHD,
               nix_type="`bool` (an enable option)",
               nix_default="`false`",
               evidence="S"),
    OptionFact("services.openssh.openFirewall", t.bool_, SSHD,
               "default true: adds ports (22) to the global allowedTCPPorts, open to every source",
               nix_type="`bool`",
               nix_default="`true`: adds `ports` (22) to the global `allowedTCPPorts`, open to every source",
               evidence="S"),
    OptionFact("services.openssh.settings.PasswordAuthentication", t.NullOr(t.bool_), SSHD, "default true",
               nix_type="`nullOr bool`",
               nix_default="`true` (also drives PAM's `unixAuth`)",
               evidence="S"),
    OptionFact("services.openssh.settings.KbdInteractiveAuthentication", t.NullOr(t.bool_), SSHD, "default true",
               nix_type="`nullOr bool`",
               nix_default="`true`",
               evidence="S"),
    OptionFact("services.openssh.settings.PermitRootLogin",
               t.NullOr(t.Enum(("yes", "without-password", "prohibit-password", "forced-commands-only", "no"))),
               SSHD, "default \"prohibit-password\" (root with a key only)",
               nix_type="`nullOr (enum [ \"yes\" \"without-password\" \"prohibit-password\" \"forced-commands-only\" "
                        "\"no\" ])`",
               nix_default="`\"prohibit-password\"`",
               evidence="S"),
    OptionFact("users.users.<name>.openssh.authorizedKeys.keys", t.ListOf(t.strMatching(r"[^\n]*")), SSHD,
               "listOf singleLineStr, written to /etc/ssh/authorized_keys.d/<user>; users.users itself is "
               "declared in nixos/modules/config/users-groups.nix",
               nix_type="`listOf singleLineStr`",
               nix_default="`[ ]`; written to `/etc/ssh/authorized_keys.d/<user>` (`users.users` itself: "
                           "`nixos/modules/config/users-groups.nix`)",
               evidence="S"),
)


class Contract:
    """The option contract of a lab: the core rows and those of every role the lab uses.

    ``lookup`` runs for every attribute of every generated file (flatten, merge), so
    rows are indexed by (number of parts, first part) and answers are cached: a scan
    of every row per call dominated the build time of large labs (bench/bench.py).
    """

    def __init__(self, rows: tuple[OptionFact, ...]):
        by_path: dict[str, OptionFact] = {}
        for o in rows:
            old = by_path.get(o.path)
            if old is not None and old != o:
                raise ValueError(f"two contract rows for {o.path}: {old.declared_in} and {o.declared_in}")
            by_path[o.path] = o
        self.rows = tuple(by_path.values())
        self.by_path = by_path
        self._index: dict[tuple[int, str], tuple[OptionFact, ...]] = {}
        for o in self.rows:
            key = (len(o.parts), o.parts[0])
            self._index[key] = self._index.get(key, ()) + (o,)
        self._cache: dict[tuple[str, ...], OptionFact | None] = {}

    def lookup(self, parts: tuple[str, ...]) -> OptionFact | None:
        """The row whose path matches ``parts`` (``<name>`` matches any one part)."""
        if type(parts) is not tuple:  # a list; a tuple is looked up as it is (most calls: flatten's)
            parts = tuple(parts)
        try:
            return self._cache[parts]
        except KeyError:
            pass
        found = None
        if parts:
            for o in self._index.get((len(parts), parts[0]), ()):
                if all(a == b or a == "<name>" for a, b in zip(o.parts, parts)):
                    found = o
                    break
        if len(self._cache) < 65536:
            self._cache[parts] = found
        return found


@functools.lru_cache(maxsize=64)
def of_roles(role_types: tuple[type, ...]) -> Contract:
    """The contract of a lab that uses these role classes: the core rows (sshd's too) and each role's ``options``."""
    return Contract(CORE_OPTIONS + SSHD_OPTIONS + tuple(o for r in role_types for o in getattr(r, "options", ())))
