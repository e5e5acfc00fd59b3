"""PowerSchedule: the host powers itself off at night and, if asked, its real-time clock wakes it in the morning.

Written only through homelab's public interface (:mod:`homelab.role`,
:mod:`homelab.fields`, :mod:`homelab.checks`), like the monitoring example.

``PowerSchedule(off_at="23:30", wake_at="07:00")`` compiles to one oneshot
service, ``homelab-power-off``, started by a timer at ``off_at`` every day.  With
``wake_at`` it first sets the RTC alarm (``rtcwake -m no``: set the alarm, do not
suspend) for the next ``wake_at`` and only then powers off; the script runs with
``set -e``, so a host whose RTC cannot take the alarm stays on instead of staying
off.  Without ``wake_at`` it only powers off (wake it with ``homelab wake``).

Facts from nixpkgs (nixos-26.05): ``nixos/lib/systemd-unit-options.nix``
declares ``description``, ``path``, ``script`` and ``startAt`` of
``systemd.services.<name>``; ``nixos/modules/system/boot/systemd.nix`` turns a
non-empty ``startAt`` into ``systemd.timers.<name>`` with ``OnCalendar`` and
``wantedBy = [ "timers.target" ]`` (no ``Persistent``, so a power-off missed
while the host was off does not fire at the next boot).  The service itself is
wanted by nothing, so switching to a configuration does not start it.
``rtcwake`` is util-linux's (nixpkgs patches it to find ``shutdown`` on PATH).

A scheduled power-off does not drain a Kubernetes node first (the node has no
cluster-admin credentials); its pods move once the node is NotReady.  For a
drained stop use ``homelab sleep``.
"""

from __future__ import annotations

import re
from typing import Iterable

import attrs

from homelab import checks, fields
from homelab.values import Pkg
from homelab.role import PARTIAL, HostContext, Module, OptionFact, Problem, Role, section, types

UNIT = "nixos/lib/systemd-unit-options.nix"
SERVICE = "homelab-power-off"

_CLOCK = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]\Z")


def _clock_reason(v) -> str:
    return f"{v!r} is not a time of day such as '23:30' (24-hour HH:MM)"


clock = fields.typed(str, "a time of day such as '23:30'", lambda v: _CLOCK.match(v) is not None, _clock_reason)
optional_clock = fields.optional_text(lambda v: _CLOCK.match(v) is not None,
                                     "a time of day such as '07:00', or None", _clock_reason)


def on_calendar(hhmm: str) -> str:
    """'23:30' -> systemd's normalized calendar event, as ``systemctl show`` prints it back."""
    return f"*-*-* {hhmm}:00"


@attrs.frozen
class PowerSchedule(Role):
    """Power off every day at ``off_at``; with ``wake_at``, the RTC powers the host on again at that time."""

    off_at: str = attrs.field(validator=clock)
    wake_at: str | None = attrs.field(default=None, validator=optional_clock)

    label = "power schedule"
    tag = "power-schedule"
    options = (
        OptionFact("systemd.services.<name>.description", types.strMatching(r"[^\n]*"), UNIT,
                   "singleLineStr", status=PARTIAL,
                   nix_type="`singleLineStr`",
                   nix_default="`\"\"`",
                   evidence="U5"),
        OptionFact("systemd.services.<name>.startAt", types.Either((types.str_, types.ListOf(types.str_))), UNIT,
                   "either str (listOf str), applied as a list; systemd.nix makes a timer with OnCalendar from it",
                   status=PARTIAL,
                   nix_type="`either str (listOf str)`, applied as a list",
                   nix_default="`[ ]`",
                   evidence="U5 + S",
                   declared_note="(the timer it makes: `nixos/modules/system/boot/systemd.nix`, S)"),
        OptionFact("systemd.services.<name>.path", types.ListOf(types.Either((types.Package(), types.str_))), UNIT,
                   "listOf (oneOf [ package str ]): bin and sbin of each go on the service's PATH", status=PARTIAL,
                   nix_type="`listOf (oneOf [ package str ])`",
                   nix_default="`[ ]`",
                   evidence="U5"),
        OptionFact("systemd.services.<name>.script", types.lines, UNIT,
                   "lines; the service's ExecStart, run with set -e", status=PARTIAL,
                   nix_type="`lines`",
                   nix_default="`\"\"`",
                   evidence="U5"),
    )

    def script(self) -> str:
        if self.wake_at is None:
            return "systemctl poweroff\n"
        return (
            f"# the next {self.wake_at}: today if it is still ahead, else tomorrow (GNU date follows DST)\n"
            f"wake=$(date -d \"today {self.wake_at}\" +%s)\n"
            f"if [ \"$wake\" -le \"$(date +%s)\" ]; then wake=$(date -d \"tomorrow {self.wake_at}\" +%s); fi\n"
            "# set the alarm only (-m no); rtcwake takes the time base of the RTC from /etc/adjtime, UTC without it\n"
            "rtcwake -m no -t \"$wake\"\n"
            "systemctl poweroff\n"
        )

    def compile(self, ctx: HostContext) -> Iterable[Module]:
        wake = f"; the real-time clock wakes it at {self.wake_at}" if self.wake_at else \
            " (no RTC wake: homelab wake powers it on)"
        defs = [
            (f"systemd.services.{SERVICE}.description",
             f"Power off at {self.off_at}" + (f", RTC wake at {self.wake_at}" if self.wake_at else "")),
            (f"systemd.services.{SERVICE}.startAt", on_calendar(self.off_at)),
        ]
        if self.wake_at:
            defs.append((f"systemd.services.{SERVICE}.path", [Pkg("util-linux")]))  # rtcwake
        defs += [
            (f"systemd.services.{SERVICE}.serviceConfig", {"Type": "oneshot"}),
            (f"systemd.services.{SERVICE}.script", self.script()),
        ]
        yield Module("modules/power/schedule.nix", "Power schedule", (
            section(f"Power off every day at {self.off_at}{wake}. The alarm is set before the power-off: if "
                    "rtcwake fails, the host stays on.", *defs),
        ))

    def check(self, ctx: HostContext) -> Iterable[Problem]:
        if self.wake_at == self.off_at:
            yield self.error(ctx, "wake_at", f"{self.wake_at!r} is the power-off time too")
        if ctx.host.is_control_plane and any(h is not ctx.host for h in ctx.lab.kubernetes_nodes):
            yield self.warn(ctx, "off_at", "powering off the control plane stops the Kubernetes API for every "
                            "node until it is back")

    def expectations(self, ctx: HostContext) -> Iterable[checks.Check]:
        timer = f"{SERVICE}.timer"
        yield checks.service(timer, "host", "PowerSchedule role: the power-off timer is armed")
        yield checks.systemd_property(timer, "TimersCalendar", f"OnCalendar={on_calendar(self.off_at)}", "contains",
                                      f"PowerSchedule role: power off at {self.off_at}")

    def notes(self, ctx: HostContext) -> Iterable[str]:
        yield f"off {self.off_at}" + (f", RTC wake {self.wake_at}" if self.wake_at else "")
