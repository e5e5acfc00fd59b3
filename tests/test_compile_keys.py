"""How compile tells module variants apart and splits option paths (issue 19: worked out per host, 10,000 times):
the cheaper forms decide exactly what the full ones did."""

from __future__ import annotations

import pytest

from homelab import force
from homelab.compile import variant_key
from homelab.nixmodule import Section, section


def _key(*sections: Section):
    return variant_key(tuple(sections))


@pytest.mark.parametrize("a, b", [
    (section("c", ("x.y", True)), section("c", ("x.y", 1))),  # equal by ==, written differently
    (section("c", ("x.y", 1)), section("c", ("x.y", 1.0))),
    (section("c", ("x.y", [1])), section("c", ("x.y", (1,)))),
    (section("c", ("x.y", force(1))), section("c", ("x.y", 1))),
    (section("c", ("x.y", "1")), section("c", ("x.y", 1))),
    (section("c", ("x.y", 1)), section("d", ("x.y", 1))),
    (section("c", ("x.y", 1)), section("c", ("x.y", 1), user=True)),
    (section("c", ("x.y", 1)), section("c", (("x", "y"), 2))),
    (section("c", ("x.y", 1)), section("c", (("x.y",), 1))),  # one name holding a dot is another path
    (section("c", ("x", {"a": 1, "b": 2})), section("c", ("x", {"b": 2, "a": 1}))),  # order is written too
])
def test_modules_that_would_be_written_differently_are_other_variants(a, b):
    assert _key(a) != _key(b)
    assert (repr((a,)) == repr((b,))) is (_key(a) == _key(b))


def test_equal_modules_made_apart_are_one_variant():
    a = (section("c", ("x.y", {"a": [1, "b"]})), section("", ("z", True)))
    b = (section("c", (("x", "y"), {"a": [1, "b"]})), section("", ("z", True)))
    assert a is not b and variant_key(a) == variant_key(b)
    assert variant_key(a) != variant_key(a[:1])


def test_dotted_paths_are_split_and_tuples_kept():
    s = section("c", ("a.b.c", 1), (("eth0.10", "x"), 2), ("a.b.c", 3))
    assert [p for p, _ in s.defs] == [("a", "b", "c"), ("eth0.10", "x"), ("a", "b", "c")]
    assert all(type(p) is tuple for p, _ in s.defs)

    class Dotted(str):
        pass

    assert section("", (Dotted("q.r"), 1)).defs == ((("q", "r"), 1),)
