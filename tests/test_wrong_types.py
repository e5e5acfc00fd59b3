"""A value of the wrong type, in any field of any built-in class, is reported with the type it should be.

Every attrs class a lab is written with (the model, the boot kinds, every built-in role and their helper
classes) is built once per field with that one field given a value of a type no field accepts (a float, a
bytes object, a set) and, where None is not allowed, None.  The problem must name the field and say what
the value is and what it should have been (``'x' is a str, not a port number`` / ``None is not ...``),
never a reason that only fits a value of the right type (a number reported as "contains control
characters").
"""

from __future__ import annotations

import attrs
import pytest

from homelab import errors
from homelab.boot import RaspberryPi4, SystemdBoot
from homelab.model import Cluster, Host, OpenPort, Pkg, PkgCall, Priority, Secret, Ssh, WakeOnLan
from homelab.roles import BUILTIN, ARM64_COREDNS, CorednsImage, PowerSchedule, Worker

# What each class needs to be built at all (its required fields), valid.
REQUIRED = {
    Cluster: dict(name="seed", domain="home.example.com", lan="192.168.10.0/24", gateway="192.168.10.1",
                  nameservers=["192.168.10.1"]),
    Host: dict(hostname="tokiwa", system="x86_64-linux", interface="enp1s0", address="192.168.10.11",
               roles=[Worker()], state_version="26.05"),
    OpenPort: dict(port=9000),
    WakeOnLan: dict(mac="02:00:00:00:00:1a"),
    PowerSchedule: dict(off_at="23:30"),
    CorednsImage: {f.name: getattr(ARM64_COREDNS, f.name) for f in attrs.fields(CorednsImage)},
    Pkg: dict(name="htop"),
    PkgCall: dict(function="dockerTools.pullImage", args={}),
    Priority: dict(value=1, priority=50),
    Secret: dict(name="tailscale-auth-key"),
}
CLASSES = [Cluster, Host, Ssh, SystemdBoot, RaspberryPi4, CorednsImage, Pkg, PkgCall, Priority, OpenPort, WakeOnLan,
           Secret, *BUILTIN]
# fields that take any value by design: a raw option value (checked where it is used, in options=)
ANY_VALUE = {(Priority, "value")}

WRONG = [3.5, b"bytes", {1, 2}]


def _optional(cls, field) -> bool:
    """None is a valid value of this field (its default is None, or its type says so)."""
    return field.default is None or "None" in str(field.type)


def _cases():
    for cls in CLASSES:
        for f in attrs.fields(cls):
            if (cls, f.name) in ANY_VALUE:
                continue
            for v in WRONG + ([] if _optional(cls, f) else [None]):
                yield pytest.param(cls, f.name, v, id=f"{cls.__name__}.{f.name}={v!r}")


def test_every_field_of_every_class_is_covered():
    fields = {(c, f.name) for c in CLASSES for f in attrs.fields(c)}
    assert len(fields) >= 50
    assert {(c, n) for c, n, _ in (p.values for p in _cases())} == fields - ANY_VALUE


def _expected_type_named(reason: str, value) -> bool:
    if value is None:
        return reason.startswith("None is not ") and len(reason) > len("None is not ") + 3
    head = f"{value!r} is a"
    return reason.startswith(head) and f" {type(value).__name__}, not " in reason


@pytest.mark.parametrize("cls, name, value", list(_cases()))
def test_a_wrong_type_names_the_expected_type(cls, name, value):
    kwargs = dict(REQUIRED.get(cls, {}), **{name: value})
    with errors.located("hosts/x"), errors.collecting() as problems:
        try:
            cls(**kwargs)
        except TypeError as e:  # attrs' own complaints must not happen: a validator or converter answers first
            pytest.fail(f"{cls.__name__}({name}={value!r}) raised {e!r}")
    mine = [p for p in problems if p.field.split("[")[0] in (name, f"{cls.__name__}.{name}")]
    assert mine, f"{cls.__name__}({name}={value!r}) was accepted: {problems}"
    for p in mine:
        assert _expected_type_named(p.reason, value), f"{p.field}: {p.reason}"
