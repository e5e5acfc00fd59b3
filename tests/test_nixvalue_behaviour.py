"""The Nix value emitter, form by form: the whole text it writes, the exact errors it raises, and which module
arguments a value needs (issue 19 item 3: the survivors of homelab.nixvalue).

Every test but the last compares whole emitted texts (no nix needed); the last evaluates the tricky forms with
the real nix and compares what nix reads back with the value written."""

from __future__ import annotations

import ipaddress

import pytest

from homelab import Pkg, PkgCall, Priority, default, force
from homelab.nixvalue import INT_MAX, INT_MIN, NixValueError, attr_name, quote, render, uses
from homelab.readback import STUB_LIB, stub_pkgs, to_json
from homelab.values import FrozenDict, freeze


def _error(fn, *args) -> str:
    with pytest.raises(NixValueError) as e:
        fn(*args)
    return str(e.value)


# ---------------------------------------------------------------- double-quoted strings


def test_quote_escapes_every_character_nix_would_read_differently():
    assert quote('say "hi" \\ ${x}') == '"say \\"hi\\" \\\\ \\${x}"'
    assert quote("cr\rtab\tnl\n") == '"cr\\rtab\\tnl\\n"'
    assert quote("$ { } '' $5") == '"$ { } \'\' $5"'  # nothing else is special inside "..."


def test_quote_refuses_nul_and_both_ends_of_the_surrogate_range_with_their_reason():
    assert _error(quote, "a\x00b") == "Nix strings cannot contain NUL characters"
    for lone in ("\ud800", "\udbff", "\udc00", "\udfff"):
        assert _error(quote, f"x{lone}") == "a lone surrogate cannot be written as UTF-8"
    assert quote("\ud7ff\ue000") == '"\ud7ff\ue000"'  # the neighbours outside the range are plain text


# ---------------------------------------------------------------- attribute names


def test_attribute_names_must_be_strings():
    assert _error(attr_name, 7) == "attribute names must be strings, not 7"
    assert _error(render, {("a",): 1}) == "attribute names must be strings, not ('a',)"


# ---------------------------------------------------------------- multi-line text


def test_two_character_text_ending_in_a_newline_is_an_indented_string():
    assert render("a\n") == "''\n  a\n''"
    assert render("\n") == '"\\n"'  # an empty line alone: no line starts at column 0


def test_indented_strings_escape_dollar_brace_as_nix_wants():
    assert render("echo ${HOME}\nok\n", "  ") == "''\n    echo ''${HOME}\n    ok\n  ''"


def test_text_with_cr_tab_or_nul_never_goes_into_an_indented_string():
    assert render("a\rb\nc\n") == '"a\\rb\\nc\\n"'
    assert render("a\tb\nc\n") == '"a\\tb\\nc\\n"'
    assert _error(render, "a\x00b\nc\n") == "Nix strings cannot contain NUL characters"


def test_indented_string_needs_one_line_at_column_0_and_keeps_space_indented_lines():
    # the last line is the one at column 0: Nix strips only the indentation the emitter adds
    assert render("  a\nb\n") == "''\n    a\n  b\n''"
    assert render("a\n b\n", "  ") == "''\n    a\n     b\n  ''"
    assert render("  a\n  b\n") == '"  a\\n  b\\n"'


def test_a_multi_line_string_alone_in_a_list_goes_on_its_own_lines():
    assert render(["a\nb\n"]) == "[\n  ''\n    a\n    b\n  ''\n]"
    assert render(["a\nb"]) == '[\n  "a\\nb"\n]'
    assert render(["ab"]) == '[ "ab" ]'


# ---------------------------------------------------------------- numbers, addresses, packages, priorities


def test_integers_at_both_ends_of_nix_range_render_and_one_past_is_refused_with_its_reason():
    assert render(INT_MAX) == "9223372036854775807"
    assert render(INT_MIN) == "(-9223372036854775807 - 1)"
    assert render(INT_MIN + 1) == "(-9223372036854775807)"
    assert _error(render, INT_MAX + 1) == "9223372036854775808 does not fit in a Nix integer"
    assert _error(render, INT_MIN - 1) == "-9223372036854775809 does not fit in a Nix integer"


def test_addresses_and_networks_are_written_as_strings():
    assert render(ipaddress.IPv4Address("10.1.0.5")) == '"10.1.0.5"'
    assert render([ipaddress.IPv4Network("10.1.0.0/16")]) == '[ "10.1.0.0/16" ]'


def test_package_paths_are_attribute_paths_below_pkgs():
    assert render(Pkg("linuxPackages_rpi4.v4l2loopback")) == "pkgs.linuxPackages_rpi4.v4l2loopback"
    assert render(PkgCall("dockerTools.pullImage", {"imageName": "x"})) == (
        'pkgs.dockerTools.pullImage {\n  imageName = "x";\n}')


def test_a_function_call_in_a_list_is_parenthesised_and_indented_with_the_list():
    assert render([PkgCall("dockerTools.pullImage", {"imageName": "x", "sha256": "y"}), Pkg("htop")], "  ") == (
        "[\n"
        "    (pkgs.dockerTools.pullImage {\n"
        '      imageName = "x";\n'
        '      sha256 = "y";\n'
        "    })\n"
        "    pkgs.htop\n"
        "  ]")


def test_priorities_other_than_force_and_default_are_lib_mkoverride():
    assert render(Priority(True, 10)) == "lib.mkOverride 10 true"
    assert render(Priority([1, 2], 1500), "  ") == "lib.mkOverride 1500 [\n    1\n    2\n  ]"
    assert render(force("x")) == 'lib.mkForce "x"' and render(default("x")) == 'lib.mkDefault "x"'


def test_a_priority_inside_a_list_is_refused_with_its_reason():
    assert _error(render, [1, default(2)]) == (
        "lib.mkForce / lib.mkDefault apply to a whole option value, not a list element")


def test_subclasses_of_int_str_and_list_are_written_as_their_values():
    # render's fast paths take the exact types only; a subclass (an IntEnum, a str or list type of a lab's own)
    # goes through the checks of every type and is written as the plain value would be
    class Port(int):
        pass

    class Text(str):
        pass

    class Items(list):
        pass

    assert render(Port(8080)) == "8080"
    assert render(Port(-1)) == "(-1)"
    assert render(Text("a\nb\n"), "  ") == "''\n    a\n    b\n  ''"
    assert render(Items([1, "x"]), "  ") == '[\n    1\n    "x"\n  ]'


# ---------------------------------------------------------------- module arguments


def test_the_frozen_values_a_host_holds_are_written_as_the_plain_ones_empty_sets_and_lists_too():
    # a Host's option values are frozen (dicts become FrozenDict, a dict subclass that render's fast path for
    # plain dicts does not take): an empty attribute set in an option must still be `{ }`
    value = {"settings": {}, "extra": [], "nested": {"inner": {}}, "on": True}
    text = "{\n  settings = { };\n  extra = [ ];\n  nested = {\n    inner = { };\n  };\n  on = true;\n}"
    assert render(value) == text
    assert render(freeze(value)) == text
    assert render(FrozenDict()) == "{ }"


def test_uses_names_every_module_argument_a_value_refers_to():
    assert uses(Pkg("htop")) == {"pkgs"}
    assert uses(PkgCall("f", {"a": force(1)})) == {"pkgs", "lib"}
    assert uses(PkgCall("f", {"a": 1})) == {"pkgs"}
    assert uses(force(Pkg("htop"))) == {"lib", "pkgs"}
    assert uses(default(1)) == {"lib"}
    assert uses({"a": {"b": Pkg("htop")}}) == {"pkgs"}
    assert uses({"a": 1, "b": [force(1)]}) == {"lib"}
    assert uses([[Pkg("htop")], 1]) == {"pkgs"}
    assert uses([]) == set() and uses({}) == set() and uses("pkgs.htop") == set()


# ---------------------------------------------------------------- read back by the real nix


def test_the_tricky_forms_evaluate_back_to_their_values(nix):
    values = [INT_MIN, INT_MAX, "cr\rtab\t\"${x}\"\\", "echo ${HOME}\n b\n", "  a\nb\n", "a\n",
              ipaddress.IPv4Address("10.1.0.5"), Pkg("a.b"), Priority({"x": 1}, 10),
              [PkgCall("dockerTools.pullImage", {"imageName": "x"}), Pkg("htop")]]
    body = "\n".join(f"  ({render(v, '  ')})" for v in values)
    pkgs = stub_pkgs(["htop", "a.b", ("call", "dockerTools.pullImage")])
    assert nix.eval_expr(f"let lib = {STUB_LIB}; pkgs = {pkgs}; in [\n{body}\n]") == [to_json(v) for v in values]
