"""The precheck's and the clash check's fast paths give what the slow paths give, conflicts and problems included.

:func:`homelab.readback._entry_and_shared_conflicts` skips the merge of a definition no shared module meets whose
merge cannot fail (``_merges_alone``), and judges a plain value once per value and set of modules; the answer must
be :func:`homelab.readback.host_conflicts`' (every definition merged, nothing remembered) for every host, in the
same order, with each host's own files named.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from homelab import optiontypes as t
from homelab import readback
from homelab.contract import Contract, OptionFact
from homelab.readback import Conflict

from .readbackkit import force

_gateway = t.Either((t.str_, t.Submodule({"address": t.str_, "metric": t.NullOr(t.int_)})))
C = Contract((
    OptionFact("test.flag", t.bool_, "test.nix"),
    OptionFact("test.name", t.str_, "test.nix"),
    OptionFact("test.port", t.port, "test.nix"),
    OptionFact("test.maybe", t.NullOr(t.str_), "test.nix"),
    OptionFact("test.lines", t.lines, "test.nix"),
    OptionFact("test.list", t.ListOf(t.str_), "test.nix"),
    OptionFact("test.set", t.AttrsOf(t.str_), "test.nix"),
    OptionFact("test.either", t.Either((t.bool_, t.str_)), "test.nix"),
    OptionFact("test.gateway", t.NullOr(_gateway), "test.nix"),
    OptionFact("test.nulllist", t.NullOr(t.ListOf(t.str_)), "test.nix"),
))
NAMES = ["flag", "name", "port", "maybe", "lines", "list", "set", "either", "gateway", "nulllist", "other"]

plain = st.one_of(st.booleans(), st.integers(0, 2), st.sampled_from(["a", "b", ""]), st.none())
value = st.recursive(plain, lambda inner: st.one_of(st.lists(inner, max_size=2),
                                                    st.dictionaries(st.sampled_from(["address", "k"]), inner,
                                                                    min_size=1, max_size=2)), max_leaves=3)
definition = st.one_of(value, st.builds(force, value, st.sampled_from([50, 100, 1000])))
file_defs = st.dictionaries(st.sampled_from(NAMES), definition, max_size=5).map(lambda d: {"test": d} if d else {})
MODULES = ("modules/m1.nix", "modules/m2.nix", "modules/m3.nix")


@given(modules=st.fixed_dictionaries({m: file_defs for m in MODULES}),
       hosts=st.lists(st.tuples(file_defs, st.lists(st.sampled_from(MODULES), unique=True)), min_size=1, max_size=5))
def test_entry_and_shared_conflicts_are_host_conflicts_for_every_host(modules, hosts):
    memo: dict = {}  # one precheck's: shared by its hosts
    for i, (entry, imported) in enumerate(hosts):
        rel = f"hosts/h{i}/default.nix"
        nested = {**modules, rel: entry}
        fast = readback._entry_and_shared_conflicts((rel, entry), tuple(imported), nested, C, memo)
        slow = readback.host_conflicts([(rel, entry), *[(m, modules[m]) for m in imported]], C)
        assert fast == slow


def test_a_plain_value_judged_once_names_each_hosts_own_file():
    nested = {"modules/m.nix": {"test": {"name": "b", "flag": False, "either": "x"}},
              "hosts/a/default.nix": {"test": {"name": "a", "flag": True, "either": 3}},
              "hosts/b/default.nix": {"test": {"name": "a", "flag": True, "either": 3}},
              "hosts/c/default.nix": {"test": {"name": "b", "flag": 1, "either": 3}}}
    memo: dict = {}
    got = {h: readback._entry_and_shared_conflicts((f"hosts/{h}/default.nix", nested[f"hosts/{h}/default.nix"]),
                                                   ("modules/m.nix",), nested, C, memo) for h in "abc"}

    def both(h, path, message):
        return Conflict(("test", path), message, (f"hosts/{h}/default.nix", "modules/m.nix"))

    assert got == {
        "a": [both("a", "either", "definitions of different kinds: [3, 'x']"),
              both("a", "flag", "conflicting definitions True and False"),
              both("a", "name", "conflicting definitions 'a' and 'b'")],
        "b": [both("b", "either", "definitions of different kinds: [3, 'x']"),
              both("b", "flag", "conflicting definitions True and False"),
              both("b", "name", "conflicting definitions 'a' and 'b'")],
        # 1 == True, but its answer is not the bool's: it is named as it is
        "c": [both("c", "either", "definitions of different kinds: [3, 'x']"),
              both("c", "flag", "conflicting definitions 1 and False")],
    }


def test_one_definition_that_cannot_be_merged_alone_is_still_judged():
    # no shared module defines these: each one value is merged alone, and these do not fit their type
    entry = {"test": {"lines": 5, "list": 7, "either": 2.5, "other": None, "nulllist": 3}}
    got = readback._entry_and_shared_conflicts(("hosts/a/default.nix", entry), (), {}, C, {})
    assert got == readback.host_conflicts([("hosts/a/default.nix", entry)], C)
    assert [(c.path[1], c.message) for c in got] == [
        ("either", "definitions of different kinds: [2.5]"),
        ("lines", "definitions that do not fit lines: [5]"),
        ("list", "definitions that do not fit listOf (str): [7]"),
        ("nulllist", "definitions that do not fit nullOr (listOf (str)): [3]"),
        ("other", "definitions of different kinds: [None]"),
    ]


def test_merges_alone_says_so_only_where_a_merge_of_one_value_cannot_fail():
    cases = [
        (t.bool_, "x", True), (t.NullOr(t.str_), None, True), (t.NullOr(t.NullOr(t.int_)), 3, True),
        (t.ListOf(t.str_), [1, {}], True), (t.ListOf(t.str_), "x", False), (t.ListOf(t.str_), (1,), False),
        (t.lines, "x", True), (t.lines, 1, False), (t.NullOr(t.lines), 1, False),
        (t.Either((t.bool_,)), True, False), (t.AttrsOf(t.str_), None, False), (t.anything, None, False),
    ]
    assert [readback._merges_alone(typ, v) for typ, v, _ in cases] == [alone for *_, alone in cases]
    for typ, v, alone in cases:  # what it says is what the merge does
        if alone:
            assert t.merge_definitions(typ, [v]) == v


def test_a_list_where_a_set_goes_is_a_conflict_not_a_crash():
    # AttrsOf.merge looks a list's items up as keys: [True][True] is an IndexError, a value that does not fit
    entry = {"test": {"set": [True]}}
    want = [Conflict(("test", "set"), "definitions that do not fit attrsOf (str): [[True]]", ("hosts/a/default.nix",))]
    assert readback.host_conflicts([("hosts/a/default.nix", entry)], C) == want
    assert readback._entry_and_shared_conflicts(("hosts/a/default.nix", entry), (), {}, C, {}) == want
    assert readback.merge_host([("hosts/a/default.nix", entry)], C)[1] == want


def test_nest_refuses_a_path_below_null_or_false_as_below_any_value():
    # nest looks a part up without making a set each time: a part set to null, false or {} is there all the same
    for value in (None, False, 0, ""):
        with pytest.raises(ValueError) as e:
            readback.nest([(("a", "b"), value), (("a", "b", "c"), 1)])
        assert str(e.value) == "a.b.c: a.b is already set to a value"
    assert readback.nest([(("a", "b"), {}), (("a", "b", "c"), 1)]) == {"a": {"b": {"c": 1}}}


# ---------------------------------------------------------------- read_back's comparisons

_segment = st.sampled_from(["..", ".", "", "m", "x.nix"])


@given(st.lists(st.tuples(st.lists(st.sampled_from(["hosts", "a", "b"]), max_size=3),
                          st.lists(_segment, min_size=1, max_size=5)), min_size=1, max_size=8))
def test_import_targets_remembered_by_depth_are_those_worked_out_from_the_file(cases):
    readback._TARGETS.clear()
    for folders, segments in cases:
        rel, written = "/".join([*folders, "default.nix"]), "/".join(segments)
        try:
            want = readback._import_target_of(rel, written)
        except IndexError:  # more ".." than folders: the same error from the fast path
            with pytest.raises(IndexError):
                readback._import_target(rel, written)
            continue
        assert readback._import_target(rel, written) == want


def test_import_targets_of_files_as_deep_in_other_folders():
    readback._TARGETS.clear()
    assert [readback._import_target(f"hosts/{h}/default.nix", w) for h in "ab"
            for w in ("../../modules/m.nix", "./hw.nix", "../b/x.nix", "../../x/../y.nix")] == \
        ["modules/m.nix", "hosts/a/hw.nix", "hosts/b/x.nix", "y.nix",
         "modules/m.nix", "hosts/b/hw.nix", "hosts/b/x.nix", "y.nix"]


def test_the_data_file_compared_as_it_is_or_as_json(nix, tmp_path):
    """The model's data compared with nix's JSON as it is first: a value with tuples and addresses is not equal to
    it as it is, but is as JSON; a value nix read otherwise is named either way."""
    import ipaddress

    from homelab.compile import DataFile

    from . import test_readback_behaviour as rb

    def read(value, text):
        rb.write_files(tmp_path, {**rb.ON_DISK, "hosts/lab.nix": text})
        lab = rb.compiled_lab([rb.module_file(rel, *defs, imports=rb.IMPORTS.get(rel, ()))
                               for rel, defs in rb.MODEL.items()],
                              {"a": ("modules/m.nix",), "b": ("modules/m.nix",), "c": ()},
                              hand={"a": ("hosts/a/extra.nix",)}, data=DataFile("hosts/lab.nix", "t", "test", value))
        return readback.read_back(tmp_path, lab, nix).problems

    plain = {"hosts": {"a": {"x": 1, "tags": ["p", "q"]}}}
    shaped = {"hosts": {"a": {"x": 1, "tags": ("p", "q"), "ip": ipaddress.IPv4Address("10.0.0.1")}}}
    assert read(plain, '{ hosts.a = { x = 1; tags = [ "p" "q" ]; }; }') == []
    assert read(shaped, '{ hosts.a = { x = 1; tags = [ "p" "q" ]; ip = "10.0.0.1"; }; }') == []
    assert read(shaped, '{ hosts.a = { x = 1; tags = [ "p" "r" ]; ip = "10.0.0.2"; }; }') == [
        "hosts/lab.nix: hosts.a.ip differs: nix read '10.0.0.2', the model says '10.0.0.1'",
        "hosts/lab.nix: hosts.a.ip differs: nix read '10.0.0.2', the model says '10.0.0.1'",
        "hosts/lab.nix: hosts.a.tags differs: nix read ['p', 'r'], the model says ['p', 'q']",
        "hosts/lab.nix: hosts.a.tags differs: nix read ['p', 'r'], the model says ['p', 'q']",
    ]
    assert read(plain, '{ hosts.a = { x = 1; tags = [ "p" ]; }; }') == [
        "hosts/lab.nix: hosts.a.tags differs: nix read ['p'], the model says ['p', 'q']",
        "hosts/lab.nix: hosts.a.tags differs: nix read ['p'], the model says ['p', 'q']",
    ]


def test_contract_lookup_of_a_list_is_that_of_its_tuple():
    fresh = Contract(C.rows)
    assert fresh.lookup(["test", "flag"]) is fresh.lookup(("test", "flag")) is C.by_path["test.flag"]
    assert fresh.lookup(["test", "nothing"]) is fresh.lookup(("test", "nothing")) is None


_any_value = st.recursive(
    st.one_of(st.booleans(), st.integers(-1, 2), st.floats(allow_nan=False, min_value=0, max_value=1),
              st.sampled_from(["a", "1", "True"]), st.none()),
    lambda inner: st.one_of(st.lists(inner, max_size=2), st.lists(inner, max_size=2).map(tuple),
                            st.dictionaries(st.sampled_from(["a", "b", "1"]), inner, max_size=2)), max_leaves=4)


@given(_any_value, _any_value)
def test_frozen_forms_are_equal_only_for_values_alike_in_repr_and_equality(a, b):
    fa, fb = readback._frozen(a), readback._frozen(b)
    if fa is not None and fa == fb:
        assert (repr(a), a == b, hash(fa) == hash(fb)) == (repr(b), True, True)
    if isinstance(a, (float, tuple)):
        assert fa is None


def test_frozen_tells_apart_what_equality_alone_does_not():
    pairs = [(1, True), ({"a": 1}, {"a": True}), ({"a": 1, "b": 2}, {"b": 2, "a": 1}), ([0], [False])]
    for a, b in pairs:
        assert a == b and readback._frozen(a) != readback._frozen(b)


def test_frozen_has_no_form_for_a_value_holding_a_float_or_a_key_no_string():
    # a set of a float would otherwise share its form with every other set of a float under the same key
    assert [readback._frozen(v) for v in ({"a": 0.5}, {"a": 1, "b": 0.5}, {1: "a"}, [0.5], {"a": [0.5]})] == \
        [None] * 5


def test_what_two_shared_modules_define_together_is_judged_for_each_host():
    nested = {"modules/m1.nix": {"test": {"list": ["a"], "name": "x"}},
              "modules/m2.nix": {"test": {"list": ["b"], "name": "y"}},
              "hosts/a/default.nix": {"test": {"list": ["c"]}}}
    got = readback._entry_and_shared_conflicts(("hosts/a/default.nix", nested["hosts/a/default.nix"]),
                                               ("modules/m1.nix", "modules/m2.nix"), nested, C, {})
    assert got == readback.host_conflicts([(rel, nested[rel]) for rel in nested], C)
    assert [(c.path, c.files) for c in got] == [(("test", "name"), ("modules/m1.nix", "modules/m2.nix"))]


def test_a_set_value_judged_once_per_value_names_each_hosts_own_file():
    nested = {"modules/m.nix": {"test": {"gateway": {"address": "x", "metric": 1}}},
              **{f"hosts/{h}/default.nix": {"test": {"gateway": g}}
                 for h, g in [("a", {"address": "x", "metric": True}), ("b", {"address": "x", "metric": True}),
                              ("c", {"address": "x", "metric": 1}), ("d", {"metric": True, "address": "x"})]}}
    memo: dict = {}
    got = {h: readback._entry_and_shared_conflicts((f"hosts/{h}/default.nix", nested[f"hosts/{h}/default.nix"]),
                                                   ("modules/m.nix",), nested, C, memo) for h in "abcd"}
    assert got == {h: readback.host_conflicts([(f"hosts/{h}/default.nix", nested[f"hosts/{h}/default.nix"]),
                                               ("modules/m.nix", nested["modules/m.nix"])], C) for h in "abcd"}
    assert [(h, [(c.message, c.files[0]) for c in cs]) for h, cs in got.items()] == [
        ("a", [("definitions of different kinds: [{'address': 'x', 'metric': True}, {'address': 'x', 'metric': 1}]",
                "hosts/a/default.nix")]),
        ("b", [("definitions of different kinds: [{'address': 'x', 'metric': True}, {'address': 'x', 'metric': 1}]",
                "hosts/b/default.nix")]),
        ("c", []),
        ("d", [("definitions of different kinds: [{'metric': True, 'address': 'x'}, {'address': 'x', 'metric': 1}]",
                "hosts/d/default.nix")]),
    ]
