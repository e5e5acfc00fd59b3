"""Wake-on-LAN and the power schedule in the model: what they refuse, what they compile to, and the schedule's
script run by a real bash with GNU date.  (The magic packet on the wire, and wake/sleep against hosts over SSH,
are in tests/test_ops_live.py.)"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import sys
from zoneinfo import ZoneInfo

import pytest

from homelab import LabError, PowerSchedule, WakeOnLan
from homelab.compile import compile_lab
from homelab.expect import lab_expectations
from homelab.compile import wake_on_lan_section
from homelab.power import magic_packet
from homelab.validate import validate

from . import labkit, opslab
from .conftest import REPO

# ---------------------------------------------------------------- Wake-on-LAN


def test_mac_addresses_are_normalised_and_group_addresses_refused():
    assert WakeOnLan(mac="02-00-00-00-00-1A").mac == "02:00:00:00:00:1a"
    assert WakeOnLan(mac="A8:A1:59:00:12:34").mac == "a8:a1:59:00:12:34"
    assert WakeOnLan(mac="02:00:00:00:00:11").locally_administered
    assert not WakeOnLan(mac="a8:a1:59:00:12:34").locally_administered
    for bad in ("01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00", "02:00:00:00:00",
                "02:00-00:00:00:11", "02:00:00:00:00:1g", "0200.0000.0011", 20000000011, None):
        with pytest.raises(LabError) as e:
            WakeOnLan(mac=bad)
        assert e.value.problems[0].field == "WakeOnLan.mac", bad
        reason = e.value.problems[0].reason
        assert reason.startswith(f"{bad!r} is not a unicast MAC address" if isinstance(bad, str) else
                                 f"{bad!r} is an int, not a unicast MAC address" if bad is not None else
                                 "None is not a unicast MAC address"), reason


def test_a_bad_mac_in_host_py_is_reported_with_host_and_field(tmp_path):
    root = opslab.write_seed_lab(tmp_path / "lab")
    p = root / "hosts" / "tokiwa" / "host.py"
    p.write_text(p.read_text().replace("02:00:00:00:00:11", "01:00:5e:00:00:01"))
    r = subprocess.run([sys.executable, "-m", "homelab", "check"], cwd=root, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "hosts/tokiwa: WakeOnLan.mac: '01:00:5e:00:00:01' is not a unicast MAC address" in r.stderr


def test_magic_packet_is_six_ff_then_the_mac_sixteen_times():
    mac = bytes([0x02, 0, 0, 0, 0, 0x11])
    p = magic_packet("02:00:00:00:00:11")
    assert len(p) == 102 and p[:6] == b"\xff" * 6
    assert [p[6 + 6 * i:12 + 6 * i] for i in range(16)] == [mac] * 16
    assert magic_packet("02:00:00:00:00:12") != p


def test_wake_on_lan_is_two_options_on_the_lan_interface():
    lab = labkit.evolve_host(labkit.lab(), "tokiwa", wake_on_lan=WakeOnLan(mac="02:00:00:00:00:11"))
    sec = wake_on_lan_section(lab.host("tokiwa"))
    assert sec.defs == ((("networking", "interfaces", "enp1s0", "wakeOnLan", "enable"), True),
                        (("networking", "interfaces", "enp1s0", "wakeOnLan", "policy"), ["magic"]))
    assert wake_on_lan_section(lab.host("hanaakari")) is None
    entry = compile_lab(lab).files["hosts/tokiwa/default.nix"]
    assert sec in entry.sections
    others = compile_lab(lab).files["hosts/hanaakari/default.nix"]
    assert not any("wakeOnLan" in path for s in others.sections for path, _ in s.defs)


# ---------------------------------------------------------------- the power schedule


def test_schedule_fields_and_rules():
    for bad in ("24:00", "7:00", "07:60", "0700", 700):
        with pytest.raises(LabError) as e:
            PowerSchedule(off_at=bad)
        assert e.value.problems[0].field == "PowerSchedule.off_at"
    with pytest.raises(LabError) as e:
        PowerSchedule(off_at="23:30", wake_at="7:00")
    assert e.value.problems[0].field == "PowerSchedule.wake_at"
    lab = labkit.lab()
    lab = labkit.evolve_host(lab, "tokiwa", roles=[*lab.host("tokiwa").roles, PowerSchedule("23:30", "23:30")])
    lab = labkit.evolve_host(lab, "yomogi", roles=[*lab.host("yomogi").roles, PowerSchedule("23:30")])
    got = {(p.where, p.field, p.severity) for p in validate(lab) if "PowerSchedule" in p.field}
    assert got == {("hosts/tokiwa", "PowerSchedule.wake_at", "error"),
                   ("hosts/yomogi", "PowerSchedule.off_at", "warning")}


def _schedule_lab(schedule: PowerSchedule):
    lab = labkit.lab()
    return labkit.evolve_host(lab, "tokiwa", roles=[*lab.host("tokiwa").roles, schedule])


def test_schedule_compiles_to_one_timed_oneshot_service():
    c = compile_lab(_schedule_lab(PowerSchedule(off_at="23:30", wake_at="07:00")))
    f = c.files["modules/power/schedule.nix"]
    defs = {".".join(p): v for p, v in f.definitions()}
    assert set(defs) == {f"systemd.services.homelab-power-off.{k}" for k in
                         ("description", "startAt", "path", "serviceConfig", "script")}
    svc = "systemd.services.homelab-power-off."
    assert defs[svc + "startAt"] == "*-*-* 23:30:00"
    assert defs[svc + "serviceConfig"] == {"Type": "oneshot"}
    assert [p.name for p in defs[svc + "path"]] == ["util-linux"]
    assert "modules/power/schedule.nix" in c.hosts["tokiwa"].modules
    assert "modules/power/schedule.nix" not in c.hosts["hanaakari"].modules
    # without a wake time: power off only, nothing on PATH
    defs = {".".join(p): v for p, v in compile_lab(_schedule_lab(PowerSchedule(off_at="01:00")))
            .files["modules/power/schedule.nix"].definitions()}
    assert defs[svc + "script"] == "systemctl poweroff\n" and svc + "path" not in defs
    checks = {c.id: c for c in lab_expectations(_schedule_lab(PowerSchedule("23:30")))["tokiwa"].checks}
    assert checks["service:homelab-power-off.timer"].scope == "host"
    assert checks["systemd_property:homelab-power-off.timer:TimersCalendar:OnCalendar=*-*-* 23:30:00"].spec[
        "match"] == "contains"


@pytest.fixture
def fake_tools(tmp_path):
    """rtcwake and systemctl that record their arguments (a test's stand-ins; date and bash are real)."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    log = tmp_path / "calls"
    for tool in ("rtcwake", "systemctl"):
        (bin_ / tool).write_text(f"#!/bin/sh\necho \"{tool} $*\" >> {log}\nexit ${{FAIL_{tool.upper()}:-0}}\n")
        (bin_ / tool).chmod(0o755)
    return bin_, log


@pytest.mark.parametrize("tz", ["Europe/Berlin", "America/New_York", "UTC"])
def test_schedule_script_sets_the_alarm_for_the_next_wake_time_then_powers_off(fake_tools, tz):
    if shutil.which("bash") is None or shutil.which("date") is None:
        pytest.skip("needs bash and GNU date")
    if subprocess.run(["date", "-d", "tomorrow 07:00", "+%s"], capture_output=True).returncode != 0:
        pytest.skip("needs GNU date (date -d)")
    bin_, log = fake_tools
    now = datetime.datetime.now(ZoneInfo(tz))
    for hours in (2, -2):  # a wake time still ahead today, and one already past (so: tomorrow)
        t = now + datetime.timedelta(hours=hours)
        if t.date() != now.date() or abs((t - now).total_seconds()) < 120:
            continue  # around midnight the day changes: the other case covers it
        wake_at = t.strftime("%H:%M")
        script = PowerSchedule(off_at="23:30", wake_at=wake_at).script()
        log.unlink(missing_ok=True)
        # NixOS runs a service's script with set -e
        r = subprocess.run(["bash", "-e", "-c", script], env={"PATH": f"{bin_}:/usr/bin:/bin", "TZ": tz},
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        day = now.date() if hours > 0 else now.date() + datetime.timedelta(days=1)
        want = datetime.datetime.combine(day, datetime.time(t.hour, t.minute), ZoneInfo(tz))
        assert log.read_text().splitlines() == [f"rtcwake -m no -t {int(want.timestamp())}", "systemctl poweroff"]


def test_schedule_script_stays_on_when_the_alarm_cannot_be_set(fake_tools):
    bin_, log = fake_tools
    script = PowerSchedule(off_at="23:30", wake_at="07:00").script()
    r = subprocess.run(["bash", "-e", "-c", script], env={"PATH": f"{bin_}:/usr/bin:/bin", "FAIL_RTCWAKE": "1"},
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert [line.split()[0] for line in log.read_text().splitlines()] == ["rtcwake"]  # no poweroff


# ---------------------------------------------------------------- wake and sleep: refusals before anything is sent


def test_wake_and_sleep_refuse_bad_input(tmp_path):
    root = opslab.write_seed_lab(tmp_path / "lab")

    def run(*args):
        return subprocess.run([sys.executable, "-m", "homelab", *args], cwd=root, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)

    r = run("wake", "hosts/tokiwa", "--broadcast", "192.168.10.999", "--no-wait")
    assert r.returncode == 2 and "--broadcast 192.168.10.999: not an IPv4 address" in r.stderr
    r = run("wake", "hosts/tokiwa", "--port", "0", "--no-wait")
    assert r.returncode == 2 and "--port 0" in r.stderr
    r = run("wake", "hosts/yomogi", "--no-wait")
    assert r.returncode == 2 and "hosts/yomogi: has no wake_on_lan" in r.stderr
    r = run("wake", "hosts/tokiwa", "hosts/hanaakari")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = run("sleep", "hosts/tokiwa", "--ssh-config", str(tmp_path / "nope"))
    assert r.returncode == 2 and "no such file" in r.stderr
