"""pynix_eval: the real nix binary behind a small Python interface (timeouts, batching, clear errors)."""

from __future__ import annotations

import time

import pytest

from homelab import pynix_eval
from homelab.pynix_eval import Nix, NixEvalError, NixNotFound, NixTimeout, nix_string


def test_evaluates_to_json(nix):
    assert nix.eval_expr('{ a = 1 + 1; b = [ "x" true null ]; }') == {"a": 2, "b": ["x", True, None]}


def test_errors_carry_nixs_own_message(nix):
    with pytest.raises(NixEvalError) as e:
        nix.eval_expr('{ a = 1 + "x"; }')
    assert "cannot add" in e.value.message or "cannot coerce" in e.value.message or "add" in e.value.message
    assert "\x1b[" not in e.value.message  # no colour codes


def test_batch_is_one_process_and_a_bad_item_is_named(nix):
    n0 = nix.calls
    assert nix.eval_many({"x": "1", "y": "[ 2 ]", "z": '"s"'}) == {"x": 1, "y": [2], "z": "s"}
    assert nix.calls - n0 == 1
    with pytest.raises(NixEvalError) as e:
        nix.eval_many({"good": "1", "bad": "throw \"boom\"", "also": "2"})
    assert e.value.key == "bad" and "boom" in e.value.message


def test_timeout_kills_nix_and_says_so():
    nix = Nix(timeout=0.5)
    slow = "builtins.foldl' (a: b: a + b) 0 (builtins.genList (x: x) 100000000)"
    t0 = time.monotonic()
    with pytest.raises(NixTimeout, match="did not finish within 0.5 s"):
        nix.eval_expr(slow)
    assert time.monotonic() - t0 < 5


def test_parse_files_names_the_broken_file(nix, tmp_path):
    good, bad = tmp_path / "good.nix", tmp_path / "bad.nix"
    good.write_text("{ a = 1; }\n")
    bad.write_text("{ a = ; }\n")
    nix.parse_files([good])
    with pytest.raises(NixEvalError) as e:
        nix.parse_files([good, bad])
    assert e.value.key == str(bad)


def test_missing_nix_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NixNotFound, match="apt-get install nix-bin"):
        Nix().eval_expr("1")


def test_big_expressions_go_through_stdin(nix):
    items = " ".join(f'"k{i}" = {i};' for i in range(20000))  # > 128 KiB, the argv string limit
    assert len(items) > 200_000
    assert nix.eval_expr("builtins.length (builtins.attrNames { " + items + " })") == 20000


def test_a_big_expression_is_written_whole_however_long_the_writing_takes(monkeypatch):
    """The wait for nix is cut in slices (so a signal is acted on): writing stdin goes on across them.  With
    slices far shorter than writing 4 MB takes, nix got the first slice's part only and waited for the rest
    until the time limit (a 10,000-host build's read-back did, whenever writing took over 0.25 s)."""
    monkeypatch.setattr(pynix_eval, "_SLICE", 0.001)
    text = "a" * 4_000_000
    assert Nix(timeout=20).eval_expr(f'builtins.stringLength "{text}"') == 4_000_000


def test_nix_string_round_trips(nix):
    s = 'a "quoted" ${not interpolated} back\\slash\nnew line'
    assert nix.eval_expr(nix_string(s)) == s


def test_flakes_are_enabled_for_flake_commands(nix, tmp_path):
    (tmp_path / "flake.nix").write_text('{ outputs = { self }: { answer = 42; }; }\n')
    assert nix.flake_eval(f"path:{tmp_path}#answer") == 42


def test_eval_file_with_an_attribute(nix, tmp_path):
    f = tmp_path / "lab.nix"
    f.write_text('{ hosts = { yomogi = { system = "aarch64-linux"; }; }; }\n')
    assert nix.eval_file(f, attr="hosts.yomogi") == {"system": "aarch64-linux"}
