"""How a host boots: its boot loader and kernel, compiled into the host's entry module.

Two kinds: :class:`SystemdBoot` for UEFI machines and :class:`RaspberryPi4`.
Each knows what it writes (:meth:`sections`) and what it refuses
(:meth:`problems`): a Raspberry Pi 4 boot on a machine that is not aarch64 is a
mistake, not a preference.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Union

import attrs

from . import fields
from .fields import a_bool

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

    def problems(self, host: Host) -> list[tuple[str, str]]:
        return []


@attrs.frozen
class RaspberryPi4:
    """Raspberry Pi 4: extlinux boot (no GRUB) with the rpi4 kernel, usually from an SD card."""

    sd_card: bool = attrs.field(default=True, validator=a_bool)
    # nixpkgs is moving the Pi kernels to nixos-hardware; None keeps the default kernel
    kernel_packages: str | None = attrs.field(default="linuxPackages_rpi4", validator=fields.optional_text(
        lambda v: re.fullmatch(r"linuxPackages[A-Za-z0-9_]*", v) is not None,
        "a kernel package set such as 'linuxPackages_rpi4' (a string), or None",
        lambda v: f"{v!r} is not a kernel package set such as 'linuxPackages_rpi4'"))
    label = "Raspberry Pi 4 (extlinux)"

    @property
    def on_sd_card(self) -> bool:
        return self.sd_card

    def sections(self, host: Host) -> list[tuple[str, list[tuple[str, object]]]]:
        from .model import Pkg

        defs: list[tuple[str, object]] = [("boot.loader.grub.enable", False),
                                          ("boot.loader.generic-extlinux-compatible.enable", True)]
        if self.kernel_packages:
            defs.append(("boot.kernelPackages", Pkg(self.kernel_packages)))
        return [("Raspberry Pi 4: extlinux boot, no GRUB.", defs)]

    def problems(self, host: Host) -> list[tuple[str, str]]:
        if host.system != "aarch64-linux":
            return [("boot", f"RaspberryPi4() boots an aarch64 board, and this host's system is {host.system}; "
                             "use SystemdBoot() or system=\"aarch64-linux\"")]
        return []


Boot = Union[SystemdBoot, RaspberryPi4]
