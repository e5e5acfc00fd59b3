"""The Nix value emitter: exact output for the shapes we write, exact round trips through real nix."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homelab import Pkg, default, force
from homelab.nixvalue import NixValueError, _indented_ok, attr_name, quote, render
from homelab.pynix_eval import MAX_ARG_EXPR, NixEvalError
from homelab.readback import STUB_LIB, stub_pkgs, to_json


HEAD = f"let lib = {STUB_LIB}; pkgs = {stub_pkgs(['htop', 'linuxPackages_rpi4', 'a.b'])}; in [\n"


def element(value) -> str:
    """One value as an element of the list nix evaluates: rendered, in parentheses, on its own line."""
    return f"  ({render(value, '  ')})"


def nix_eval_values(nix, values: list) -> list:
    """Render each value, evaluate them all in one nix process, return the JSON nix prints."""
    return nix.eval_expr(HEAD + "\n".join(element(v) for v in values) + "\n]")


def test_scalars_render_as_nix_writes_them():
    assert render(True) == "true" and render(False) == "false"
    assert render(None) == "null"
    assert render(6443) == "6443"
    assert render(-1) == "(-1)"  # bare -1 after a function would parse as subtraction
    assert render("api.kube") == '"api.kube"'


def test_lists_and_attrsets_follow_nixfmt_layout():
    assert render([]) == "[ ]"
    assert render({}) == "{ }"
    assert render(["node"]) == '[ "node" ]'
    assert render(["ceph", "rbd"]) == '[\n  "ceph"\n  "rbd"\n]'
    assert render({"LimitNOFILE": "1048576"}, "  ") == '{\n    LimitNOFILE = "1048576";\n  }'


def test_attribute_names_are_quoted_only_when_nix_needs_it():
    assert attr_name("systemd-boot") == "systemd-boot"
    assert attr_name("ETCD_UNSUPPORTED_ARCH") == "ETCD_UNSUPPORTED_ARCH"
    assert attr_name("with") == '"with"'  # a keyword
    assert attr_name("or") == '"or"'
    assert attr_name("9lives") == '"9lives"'
    assert attr_name("a.b") == '"a.b"'
    assert attr_name("${x}") == '"\\${x}"'


def test_dangerous_characters_are_escaped_in_double_quoted_strings():
    assert quote('a"b') == '"a\\"b"'
    assert quote("a\\b") == '"a\\\\b"'
    assert quote("${pkgs.evil}") == '"\\${pkgs.evil}"'
    assert quote("line\nnext") == '"line\\nnext"'
    with pytest.raises(NixValueError):
        quote("nul\x00")
    with pytest.raises(NixValueError):
        quote("half a pair \ud800")


def test_multi_line_text_uses_an_indented_string_only_when_it_round_trips():
    assert _indented_ok("iptables -A nixos-fw -s 10.1.0.0/16 -j nixos-fw-accept\n")
    assert not _indented_ok("no final newline")
    assert _indented_ok("it's\n")  # a lone quote is plain text in an indented string
    assert not _indented_ok("it''s\n")  # two quotes would end the string
    assert not _indented_ok("a '${x}\n")  # the escape of ${ would put two more quotes after it
    assert not _indented_ok("cost '$5\n")
    assert not _indented_ok("  all lines indented\n  so nix would strip it\n")
    assert not _indented_ok("a\n   \nb\n")  # whitespace-only line
    assert render("a\nb\n", "  ") == "''\n    a\n    b\n  ''"
    assert render("a\nb") == '"a\\nb"'


def test_priorities_and_packages_render_as_lib_and_pkgs_calls(nix):
    values = [force(False), default(["x"]), force(-5), Pkg("htop"), Pkg("a.b")]
    assert render(force(False)) == "lib.mkForce false"
    assert render(default(1)) == "lib.mkDefault 1"
    assert render(Pkg("linuxPackages_rpi4")) == "pkgs.linuxPackages_rpi4"
    assert nix_eval_values(nix, values) == [to_json(v) for v in values]


def test_priority_inside_a_list_is_refused():
    with pytest.raises(NixValueError):
        render([force(1)])


def test_refuses_values_nix_cannot_hold():
    with pytest.raises(NixValueError):
        render(2**63)
    with pytest.raises(NixValueError):
        render(1.5)
    with pytest.raises(NixValueError):
        render({1: "x"})


# Hostile text: the characters that matter to Nix's two string syntaxes, plus any unicode.
nix_meta = st.sampled_from(["$", "{", "}", "${", "$${", "''", "'''", "'", "\\", '"', "\n", "\r", "\t", " ", "''${",
                            "''\\", "\\${", "#", "/*", "*/"])
hostile = st.lists(st.one_of(nix_meta, st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=4)),
                   max_size=12).map("".join)
multiline = st.lists(st.one_of(st.text(st.characters(exclude_characters="\x00\n", exclude_categories=["Cs"]), max_size=12), nix_meta),
                     min_size=1, max_size=6).map(lambda xs: "\n".join(xs) + "\n")


def drawn(strategy) -> list[tuple[list, list[str]]]:
    """Every example hypothesis draws from ``strategy`` (as many as the profile asks: >= 1,000 in CI), with its
    values rendered as list elements.  Rendering happens while hypothesis draws, so a value ``render`` refuses
    fails as a hypothesis example does, shrunk."""
    examples = []

    @settings(suppress_health_check=[HealthCheck.too_slow])
    @given(strategy)
    def draw(values):
        examples.append((values, [element(v) for v in values]))

    draw()
    assert len(examples) >= settings().max_examples  # hypothesis drew every example the profile asks for
    return examples


def each_round_trips(nix, examples, same) -> None:
    """Real nix reads every example's values back ``same`` (got, values) as they went in.

    The examples go to nix in as few processes as hold them: the list one example's values make, with the
    next examples' values after them, each element on its own line as before, up to MAX_ARG_EXPR bytes (so nix
    reads the expression from argv, as it read one example's).  A nix process costs ~40 ms of CPU, most of
    this test when every example had its own; what nix reads of each example and what must come back are
    unchanged, and each example now also sits between others.  When a batch does not come back whole, its
    examples are read back one by one and the smallest that fails is the failure (if only the batch fails,
    the batch is)."""
    batches, batch, size = [], [], len(HEAD.encode()) + 1
    for values, lines in examples:
        n = sum(len(ln.encode()) + 1 for ln in lines)
        if batch and size + n > MAX_ARG_EXPR:
            batches.append(batch)
            batch, size = [], len(HEAD.encode()) + 1
        batch.append((values, lines))
        size += n
    batches.append(batch)
    for batch in batches:
        expr = HEAD + "\n".join(ln for _, lines in batch for ln in lines) + "\n]"
        try:
            got = nix.eval_expr(expr)
        except NixEvalError:
            got = None
        if isinstance(got, list) and len(got) == sum(len(values) for values, _ in batch):
            at, whole = 0, True
            for values, _ in batch:
                whole = whole and same(got[at:at + len(values)], values)
                at += len(values)
            if whole:
                continue
        failing = []
        for values, _ in batch:
            try:
                back = nix_eval_values(nix, values)
            except NixEvalError as e:
                failing.append((values, e))
                continue
            if not same(back, values):
                failing.append((values, back))
        if failing:
            values, back = min(failing, key=lambda f: len(repr(f[0])))
            pytest.fail(f"{len(failing)} of {len(batch)} examples do not round-trip through nix; the smallest, "
                        f"{values!r}, came back as {back!r}")
        pytest.fail(f"each of these {len(batch)} examples round-trips alone, but not together: "
                    f"{[values for values, _ in batch]!r} came back as {got!r}")


def test_any_string_round_trips_through_nix(nix):
    examples = drawn(st.lists(st.one_of(hostile, multiline), min_size=1, max_size=8))
    each_round_trips(nix, examples, lambda got, strings: got == strings)


json_leaf = st.one_of(st.booleans(), st.none(), st.integers(-(2**63), 2**63 - 1), hostile)
nix_data = st.recursive(
    json_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(hostile, inner, max_size=4)),
    max_leaves=12,
)


def test_any_data_round_trips_through_nix(nix):
    examples = drawn(st.lists(nix_data, min_size=1, max_size=4))
    # nix prints attribute sets with sorted keys; compare as JSON data
    each_round_trips(nix, examples,
                     lambda got, values: json.dumps(got, sort_keys=True) == json.dumps(values, sort_keys=True))
