"""Nix injection, end to end: hostile user strings never leave their Nix string.

Hostile text (``${…}``, ``''``, ``'''``, ``$${``, ``\\``, quotes, newlines, comment
openers, any NUL-free unicode) is put into every user-controlled field that reaches a
generated file: raw option values, list elements, attribute names inside option
values, option path segments, multi-line option text, CephStorage's kubelet root
dir and Tailscale's key file path.  The lab is validated, compiled, rendered and
written like any build, and real nix evaluates the files (one nix process per
example).  Every file must evaluate to exactly the model's definitions — same
strings, no extra attribute, no evaluation of anything the user typed.

200 examples by default; HYPOTHESIS_PROFILE=ci raises it (see conftest.py).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from homelab import CephStorage, LabError, Tailscale, Worker
from homelab.compile import LAB_DATA, compile_lab
from homelab.render import render_all
from homelab.validate import validate
from homelab.readback import evaluate, nest, to_json

from . import labkit

FRAGMENTS = [
    "${", "}", "${x}", "$${", "$${x}", "''", "'''", "''${", "''\\", "''$", "'", '"', '\\"', "\\", "\\\\",
    "\\${", "$", "\n", "\r\n", "\t", "#", "/*", "*/", ";", "};", " = 1;", "{ }", "rec {",
    '${builtins.abort "injected"}', '${builtins.trace "INJECTED" ""}', "${toString 1}", '" + "',
    "''\n''", "\u2028", "\u00a0", "é", "日本", "\U0001f600", "\x7f", "\x1b[31m",
]

_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
hostile = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(_chars, max_size=4)), max_size=8).map("".join)


def segment_name(s: str) -> str:
    """``s`` without the control characters an option path may not hold (dots and quotes stay)."""
    return "".join(ch for ch in s if ch >= " " and ch != "\x7f")


def path_segment(s: str) -> str:
    """``s`` as one quoted segment of a dotted option path: 'services.y."<s>"' names the attribute s."""
    return '"' + segment_name(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


def file_path(s: str) -> str:
    """``s`` made usable as an absolute file path: paths go into command lines (the kubelet's --root-dir), so
    homelab refuses spaces, quotes, backslashes, '$' and '`' in them (tests/test_bad_inputs.py)."""
    return "/" + "".join(ch for ch in s if ch.isprintable() and ch not in ' "\\\'$`')


def hostile_lab(s: str, t: str):
    options = {
        "services.x.value": s,
        "services.x.list": [s, "plain", t],
        "services.x.attrs": {s: t, "k": s, t + "'": {s: [t]}},
        "services.x.multiline": s + "\n" + t + "\n",
        f"services.y.{path_segment(s)}": t,
    }
    hosts = labkit.seed_hosts()
    hosts[1] = attrs.evolve(hosts[1], options=options, roles=[
        Worker(), CephStorage(kubelet_root_dir=file_path(s)), Tailscale(auth_key_file=file_path(t))])
    return labkit.lab(hosts)


@pytest.fixture(scope="module")
def scratch():
    d = Path(tempfile.mkdtemp(prefix="homelab-injection-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@settings(max_examples=max(200, settings().max_examples), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
@given(s=hostile, t=hostile)
@example(s='${builtins.abort "injected"}', t="''${x}'''")
@example(s='"; injected = true; x = "', t="''\n}; injected = true; x = ''")
@example(s="a\\", t="$${x}\\${y}")
@example(s="#", t="/*")
@example(s="A\n", t="with")  # an identifier with a trailing newline was once written bare (`$` matched before it)
def test_hostile_strings_stay_strings(nix, scratch, s, t):
    try:
        lab = hostile_lab(s, t)
    except LabError:  # a field validator refused it (e.g. a lone '/' path): nothing to write, fine
        assume(False)
    errors = [p for p in validate(lab) if p.severity == "error"]
    assume(not errors)  # e.g. text that looks like a password hash is refused before anything is written
    compiled = compile_lab(lab)
    texts = render_all(compiled, ["tokiwa"])
    root = scratch / "lab"
    shutil.rmtree(root, ignore_errors=True)
    for rel, text in texts.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    calls = nix.calls
    evaluated = evaluate(root, compiled, nix, ["tokiwa"])["generated"]  # one nix process, every file
    assert nix.calls == calls + 1
    assert sorted(evaluated) == sorted(rel for rel in texts if rel != LAB_DATA)
    for rel, got in evaluated.items():  # every attribute of every file, exactly the model's
        assert got["defs"] == nest(compiled.files[rel].definitions()), rel
    # and, spelled out for what the user typed: these attributes, these strings, nothing else
    options = lab.host("tokiwa").options
    x = evaluated["hosts/tokiwa/default.nix"]["defs"]["services"]["x"]
    assert x == {k.split(".")[2]: to_json(v) for k, v in options.items() if k.startswith("services.x.")}
    assert evaluated["hosts/tokiwa/default.nix"]["defs"]["services"]["y"] == {segment_name(s): t}
    ts = next(v for rel, v in evaluated.items() if rel.startswith("modules/network/tailscale"))
    assert ts["defs"]["services"]["tailscale"]["authKeyFile"] == file_path(t)
    ceph = next(v for rel, v in evaluated.items() if rel.startswith("modules/k8s/ceph"))
    assert ceph["defs"]["services"]["kubernetes"]["kubelet"]["extraOpts"] == f"--root-dir={file_path(s)}"


def test_the_examples_reach_the_files(nix, scratch):
    """Guard against a vacuous property: the hostile text really is in the generated text, escaped."""
    lab = hostile_lab('${builtins.abort "injected"}', "''${x}")
    texts = render_all(compile_lab(lab), ["tokiwa"])
    entry = texts["hosts/tokiwa/default.nix"]
    assert '\\${builtins.abort \\"injected\\"}' in entry
    assert "''${x}" in entry or "\\${x}" in entry
