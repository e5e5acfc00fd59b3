"""readback.flatten looks up the contract only for attribute sets (issue 19: a lookup per leaf of 10,000 entry
files): on every shape of nested value it cuts exactly where a lookup at every key cut."""

from __future__ import annotations

import pytest

from homelab import optiontypes as t
from homelab import readback
from homelab.contract import Contract, OptionFact

C = Contract((OptionFact("test.set", t.AttrsOf(t.str_), "t.nix"), OptionFact("test.flag", t.bool_, "t.nix"),
              OptionFact("test.<name>.opt", t.str_, "t.nix"), OptionFact("tool", t.Package(), "t.nix")))


def force(content, priority=50):  # lib.mkForce as nix prints it
    return {"_type": "override", "priority": priority, "content": content}


def _reference(nested: dict, prefix=()) -> list:
    """flatten as it was: the contract asked at every key."""
    out = []
    for k, v in nested.items():
        path = prefix + (k,)
        if C.lookup(path) is None and isinstance(v, dict) and v and "_type" not in v:
            out += _reference(v, path)
        elif (C.lookup(path) is None and t.is_override(v) and isinstance(v["content"], dict)
              and v["content"] and "_type" not in v["content"]):
            out += [(p, readback._with_priority(x, v["priority"])) for p, x in _reference(v["content"], path)]
        else:
            out.append((path, v))
    return out


PKG = {"_type": "pkg", "attrPath": "htop"}

SHAPES = [
    {"test": {"set": {"k": "v"}, "flag": True}},
    {"test": {"set": {}}, "empty": {}},  # an empty set: a value, whether an option or not
    {"other": {"deep": {"deeper": {"x": 1, "y": [1, {"z": 2}]}}}},
    {"other": force({})},  # an override of nothing: kept whole
    {"other": force({"a": 1, "b": force(2, 10)})},  # pushed down; the inner override counts
    {"other": force({"_type": "pkg", "attrPath": "x"})},  # an override of a package: kept whole
    {"other": force("text")},
    {"tool": force(PKG), "other": PKG},
    {"test": {"node-1": {"opt": "a", "more": {"x": True}}}},  # <name> matches any name
    {"test": force({"set": {"k": "v"}, "flag": force(False, 1000)})},
    {"x": {"_type": "if", "content": {"a": 1}}},  # another _type: a value
    {"a": {"b": {"c": force({"d": {"e": 1}})}}},
]


@pytest.mark.parametrize("nested", SHAPES)
def test_flatten_cuts_where_a_lookup_at_every_key_cut(nested):
    assert readback.flatten(nested, (), C) == _reference(nested)
    assert readback.flatten(nested, ("pre",), C) == _reference(nested, ("pre",))
