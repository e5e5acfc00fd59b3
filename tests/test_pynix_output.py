"""pynix_eval reads nix's standard output from a file in memory once nix is done, not from a pipe while nix writes:
what it hands back must be what ``subprocess`` with a pipe in text mode hands back (the reference here), for
small, large and odd output, on success and on failure, and no file is left open."""

from __future__ import annotations

import os
import subprocess

import pytest

from homelab.pynix_eval import Nix, NixEvalError


def through_a_pipe(nix: Nix, args: list[str]) -> str:
    """What ``subprocess.run(text=True)`` reads of the same command (the way pynix_eval read it before)."""
    return subprocess.run([nix._bin(args[0]), *args[1:]], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True, env=nix._env(), check=True).stdout


@pytest.mark.parametrize("text", [
    r'"a\r\nb\rc\nd"',  # carriage returns: Popen's text mode turns \r\n and \r into \n
    r'"grüße, 日本, ☃\n"',  # UTF-8, decoded alike
    '""',  # no output at all
])
def test_raw_output_reads_as_a_pipe_in_text_mode_reads_it(nix, text):
    args = ["nix", "eval", "--raw", "--expr", text]
    got = nix.flake(args[1:])
    assert got == through_a_pipe(nix, args)
    assert "\r" not in got


def test_output_larger_than_a_pipe_holds_comes_whole(nix):
    """8 MB of JSON (a pipe holds 64 KiB): every byte, once."""
    expr = 'builtins.genList (i: "line ${toString i} of the read-back") 200000'
    args = ["nix-instantiate", "--eval", "--strict", "--json", "--readonly-mode", "--expr", expr]
    value = nix.eval_expr(expr)
    assert value == [f"line {i} of the read-back" for i in range(200000)]
    assert nix.run(args) == through_a_pipe(nix, args)


def test_no_file_is_left_open(nix):
    fds = set(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    if fds is None:
        pytest.skip("no /proc/self/fd here to count open files")
    nix.eval_expr("[ 1 2 ]")
    with pytest.raises(NixEvalError):
        nix.eval_expr('throw "boom"')
    assert set(os.listdir("/proc/self/fd")) == fds


def test_an_error_after_some_output_is_still_an_error(nix):
    """nix prints part of a list, then fails: the error is raised, no partial value is handed out."""
    with pytest.raises(NixEvalError) as e:
        nix.eval_expr('[ 1 2 (throw "half way") ]')
    assert "half way" in e.value.message
