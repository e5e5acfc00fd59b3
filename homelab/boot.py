"""How a host boots: its boot loader and kernel, compiled into the host's entry module.

Two kinds: :class:`SystemdBoot` for UEFI machines and :class:`RaspberryPi4`.
Each knows what it writes (:meth:`sections`) and what it refuses or warns about
(:meth:`problems`): a Raspberry Pi 4 boot on a machine that is not aarch64 is a
mistake, not a preference.

The Pi's kernel (nixos-26.05, ``pkgs/top-level/linux-kernels.nix``): nixpkgs'
Raspberry Pi kernels (``linuxPackages_rpi4`` and friends) warn on use since
2026-04 ("will be removed in a future release. Please change to use
nixos-hardware"), exist only while ``allowAliases`` is on, and are not what
Hydra builds for aarch64.  nixos-hardware's Pi 4 module still selects the same
kernel.  So :class:`RaspberryPi4` keeps nixpkgs' default kernel
(``pkgs.linuxPackages``, mainline 6.18), which boots a Pi 4 through U-Boot and
extlinux as NixOS's own aarch64 SD image does; ``kernel_packages`` names
another package set when a lab needs one.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Union

import attrs

from . import fields
from .fields import a_bool
from .values import Pkg

if TYPE_CHECKING:
    from .model import Host


@attrs.frozen
class SystemdBoot:
    """UEFI machines: systemd-boot, EFI variables writable."""

    label = "systemd-boot (UEFI)"
    on_sd_card = False

    def sections(self, host: Host) -> list[tuple[str, list[tuple[str, object]]]]:
        return [("UEFI boot.", [("boot.loader.systemd-boot.enable", True),
                                ("boot.loader.efi.canTouchEfiVariables", True)])]

    def problems(self, host: Host) -> list[tuple[str, ...]]:
        """(field, reason[, "warning"]): errors unless marked as a warning."""
        return []


@attrs.frozen
class RaspberryPi4:
    """Raspberry Pi 4: extlinux boot (no GRUB) with nixpkgs' default kernel, usually from an SD card.

    ``kernel_packages`` names another kernel package set (``"linuxPackages_rpi4"``: nixpkgs'
    deprecated Pi kernel, with a warning); None, the default, writes no ``boot.kernelPackages``.
    """

    sd_card: bool = attrs.field(default=True, validator=a_bool)
    kernel_packages: str | None = attrs.field(default=None, validator=fields.optional_text(
        lambda v: re.fullmatch(r"linuxPackages[A-Za-z0-9_]*", v) is not None,
        "a kernel package set such as 'linuxPackages_rpi4' (a string), or None",
        lambda v: f"{v!r} is not a kernel package set such as 'linuxPackages_rpi4'"))
    label = "Raspberry Pi 4 (extlinux)"

    @property
    def on_sd_card(self) -> bool:
        return self.sd_card

    def sections(self, host: Host) -> list[tuple[str, list[tuple[str, object]]]]:
        defs: list[tuple[str, object]] = [("boot.loader.grub.enable", False),
                                          ("boot.loader.generic-extlinux-compatible.enable", True)]
        if self.kernel_packages:
            defs.append(("boot.kernelPackages", Pkg(self.kernel_packages)))
            return [("Raspberry Pi 4: extlinux boot, no GRUB.", defs)]
        return [("Raspberry Pi 4: extlinux boot, no GRUB; nixpkgs' default kernel (U-Boot boots it).", defs)]

    def problems(self, host: Host) -> list[tuple[str, ...]]:
        if host.system != "aarch64-linux":
            return [("boot", f"RaspberryPi4() boots an aarch64 board, and this host's system is {host.system}; "
                             "use SystemdBoot() or system=\"aarch64-linux\"")]
        if self.kernel_packages and self.kernel_packages.startswith("linuxPackages_rpi"):
            return [("RaspberryPi4.kernel_packages", f"{self.kernel_packages} is deprecated in nixos-26.05 (an "
                     "evaluation warning, removal planned, not built by Hydra, so the Pi compiles it); leave "
                     "kernel_packages unset for nixpkgs' default kernel, which boots a Pi 4", "warning")]
        return []


Boot = Union[SystemdBoot, RaspberryPi4]
