"""The emitter's shortcuts (issue 19: a 10,000-host lab writes the same names and texts thousands of times):
what is remembered or skipped gives exactly what the full path gives, and never another input's answer."""

from __future__ import annotations

import pytest

from homelab import nixvalue
from homelab.nixvalue import NixValueError, attr_name, attr_path, quote, render


def _quote_slowly(s: str) -> str:
    """quote() without its fast path: every check and replacement."""
    out = (s.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${").replace("\n", "\\n")
           .replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{out}"'


@pytest.mark.parametrize("s", ["", "plain", "a b-c_d.e/f:g@h", "é ☃ 漢字", "$", "$x", "${x}", "a$", 'say "hi"',
                               "back\\slash", "line\nline", "cr\rcr", "tab\ttab", "'", "''", "{ }", "#"])
def test_quote_gives_what_escaping_every_character_gives(s):
    assert quote(s) == _quote_slowly(s)


def test_quote_still_refuses_nul_and_lone_surrogates():
    with pytest.raises(NixValueError, match="NUL"):
        quote("a\x00b")
    with pytest.raises(NixValueError, match="surrogate"):
        quote("a\ud800b")


def test_the_same_text_at_two_indents_is_written_at_each():
    text = "one\ntwo ${x}\n"
    assert render(text) == "''\n  one\n  two ''${x}\n''"
    assert render(text, "    ") == "''\n      one\n      two ''${x}\n    ''"
    assert render(text) == "''\n  one\n  two ''${x}\n''"  # the first answer again, not the last one's


def test_texts_that_differ_are_written_each_as_itself():
    assert render("a\nb\n") == "''\n  a\n  b\n''"
    assert render("a\nb") == '"a\\nb"'  # no final newline: no indented string
    assert render("a\n\tb\n") == '"a\\n\\tb\\n"'  # a tab: no indented string


def test_equal_values_of_other_types_are_written_by_their_type():
    # True == 1 and hash(True) == hash(1): a memo keyed by value alone would answer one with the other's text
    assert [render(v) for v in (True, 1, 0, False)] == ["true", "1", "0", "false"]
    assert render({"a": True}) == "{\n  a = true;\n}"
    assert render({"a": 1}) == "{\n  a = 1;\n}"
    assert render([True, 1]) == "[\n  true\n  1\n]"


def test_str_subclasses_are_written_as_their_text():
    class Name(str):
        pass

    assert render(Name("x\ny\n"), "  ") == render("x\ny\n", "  ") == "''\n    x\n    y\n  ''"
    assert render(Name('q"')) == '"q\\""'


def test_attribute_names_and_paths_once_remembered_stay_right():
    assert [attr_name(n) for n in ("a", "if", "a.b", "x-1", "1x", "a")] == ["a", '"if"', '"a.b"', "x-1", '"1x"', "a"]
    assert attr_path(("services", "if", "a.b")) == 'services."if"."a.b"'
    assert attr_path(["services", "if", "a.b"]) == 'services."if"."a.b"'  # a list: not remembered, the same text
    assert attr_path(("services", "x")) == "services.x"


@pytest.mark.parametrize("path", [("a", 1), ("a", ["b"]), ["a", None]])
def test_a_name_that_is_no_string_is_refused_whatever_the_path_is_made_of(path):
    with pytest.raises(NixValueError, match="attribute names must be strings"):
        attr_path(path)


def test_dict_keys_that_are_no_strings_are_refused():
    with pytest.raises(NixValueError, match="attribute names must be strings"):
        render({1: "x"})


def test_the_memo_is_bounded():
    assert nixvalue._text.cache_info().maxsize is not None
    assert nixvalue._attr_name.cache_info().maxsize is not None
    assert nixvalue._attr_path.cache_info().maxsize is not None


def test_to_json_gives_nix_forms_by_type_whatever_the_container():
    import ipaddress

    from homelab import Pkg, force
    from homelab.readback import to_json

    class Port(int):
        pass

    value = {"a": (1, True, None, 1.5, "s"), "b": [ipaddress.IPv4Address("10.0.0.1"), Pkg("htop")],
             "c": force({"d": Port(5)}), "e": {}}
    assert to_json(value) == {"a": [1, True, None, 1.5, "s"], "b": ["10.0.0.1", {"_type": "pkg", "attrPath": "htop"}],
                              "c": {"_type": "override", "priority": 50, "content": {"d": 5}}, "e": {}}
    assert type(to_json(value)["a"]) is list and to_json(value)["a"][1] is True
