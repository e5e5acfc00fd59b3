"""``Nix.eval_together``: several expressions in one nix process, each value handed out once to the ``eval_expr`` of
exactly that expression; when that process fails, nothing is kept and each fails (or not) as it does alone."""

from __future__ import annotations

import pytest

from homelab.pynix_eval import Nix, NixEvalError, NixTimeout, nix_available

pytestmark = pytest.mark.skipif(not nix_available(), reason="needs nix-instantiate")


def test_the_values_come_from_one_process_and_each_is_handed_out_once():
    nix = Nix()
    a, b = "{ x = 1 + 1; } # a comment on the last line", "[ (builtins.toJSON { y = null; }) ]"
    assert nix.eval_together([a, b, a]) is True
    assert nix.calls == 1
    assert (nix.eval_expr(b), nix.eval_expr(a)) == (['{"y":null}'], {"x": 2})
    assert nix.calls == 1 and nix.kept == {}
    assert nix.eval_expr(a) == {"x": 2} and nix.calls == 2  # asked again: nix again


def test_a_value_is_kept_for_that_text_only_and_not_for_a_call_in_another_folder(tmp_path):
    (tmp_path / "f.nix").write_text("7\n")
    nix = Nix()
    assert nix.eval_together(["1", "builtins.currentTime * 0 + 2"]) is True
    assert nix.eval_expr(" 1") == 1 and nix.calls == 2  # another text: evaluated
    assert nix.eval_expr("1", cwd=tmp_path) == 1 and nix.calls == 3  # another folder: evaluated
    assert nix.eval_expr("1") == 1 and nix.calls == 3
    assert nix.kept == {"builtins.currentTime * 0 + 2": 2}


def test_a_failing_process_keeps_nothing_and_each_fails_as_it_does_alone():
    nix = Nix()
    good, bad = "{ ok = true; }", 'throw "planted"'
    assert nix.eval_together([good, bad]) is False
    assert nix.kept == {} and nix.calls == 1
    assert nix.eval_expr(good) == {"ok": True} and nix.calls == 2
    with pytest.raises(NixEvalError) as err:
        nix.eval_expr(bad)
    assert "planted" in err.value.message and nix.calls == 3


def test_nothing_to_evaluate_starts_no_nix():
    nix = Nix()
    assert nix.eval_together([]) is True and nix.calls == 0


def test_the_time_limit_is_raised_not_tried_again_alone():
    nix = Nix(timeout=1.0)
    slow = "builtins.length (builtins.genList (i: builtins.toString i) 100000000)"
    with pytest.raises(NixTimeout):
        nix.eval_together(["1", slow])
    assert nix.kept == {} and nix.calls == 1
