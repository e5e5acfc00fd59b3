"""secretuse.secrets_of reads a class's ``__attrs_attrs__`` itself (issue 19: twice per value through attrs.has and
attrs.fields, for every role of every host, twice a build): the same (field, Secret) pairs, in the same order, as
through attrs' own functions, on every shape of value it walks."""

from __future__ import annotations

import attrs

from homelab import Secret, Tailscale
from homelab.load import load_or_raise
from homelab.harness import EXAMPLES
from homelab.secretuse import host_secrets, secrets_of


def _through_attrs(obj, _depth=0):
    """secrets_of as it was, through attrs.has and attrs.fields."""
    if not attrs.has(type(obj)) or _depth > 8:
        return
    for f in attrs.fields(type(obj)):
        v = getattr(obj, f.name)
        items = v if isinstance(v, (list, tuple)) else (v.values() if isinstance(v, dict) else (v,))
        for item in items:
            if isinstance(item, Secret):
                yield f"{type(obj).__name__}.{f.name}", item
            elif attrs.has(type(item)):
                yield from _through_attrs(item, _depth + 1)


@attrs.frozen
class _Box:
    inner: object = None
    many: tuple = ()
    named: dict = attrs.Factory(dict)


class _PlainSubclass(_Box):  # not decorated itself: inherits the attrs fields
    pass


class _Shadow(_Box):  # as a value (the class itself), its class attribute is no field of a value
    inner = Secret("shadow")


class _NotAttrs:
    secret = Secret("never-found")


def _deep(n):
    value = Secret("deep")
    for _ in range(n):
        value = _Box(inner=value)
    return value


VALUES = [
    None, 1, "x", Secret("alone"), _NotAttrs(), Tailscale(), Tailscale(auth_key=Secret("tailscale-auth-key")),
    _Box(inner=Secret("a"), many=(Secret("b"), _Box(inner=Secret("c")), 3), named={"k": Secret("d"), "j": _Box()}),
    _PlainSubclass(inner=Secret("e"), many=[_NotAttrs(), Secret("f")]),
    _Box(inner=_PlainSubclass(named={"x": Secret("g")})),
    _Box(inner=_NotAttrs(), many=(list[int], int, _Box, _Shadow)),  # classes, generic aliases
    _Shadow, _deep(8), _deep(9), _deep(10),  # the depth limit
]


def test_the_same_pairs_as_through_attrs():
    for v in VALUES:
        assert list(secrets_of(v)) == list(_through_attrs(v)), v
    assert [s.name for _, s in secrets_of(VALUES[7])] == ["a", "b", "c", "d"]
    assert [s.name for _, s in secrets_of(VALUES[8])] == ["e", "f"]
    assert list(secrets_of(_deep(8))) and not list(secrets_of(_deep(10)))


def test_the_seed_lab_the_same_as_through_attrs():
    lab = load_or_raise(EXAMPLES / "seed")
    lab = lab[0] if isinstance(lab, tuple) else lab
    found = list(secrets_of(lab.cluster))
    assert found == list(_through_attrs(lab.cluster))
    assert {s.name for _, s in found} >= {"cloudflare-dns-api-token", "cloudflare-zone-api-token"}
    for h in lab.hosts:
        assert host_secrets(h) == sorted({s.name for r in h.roles for _, s in _through_attrs(r)})
