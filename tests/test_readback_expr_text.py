"""The read-back's expressions are made with two shortcuts (homelab/readback.py ``_under``, homelab/pynix_eval.py
``nix_string``'s plain-string path): each must give exactly the text of the way it replaced, kept here as the
reference: ``str(base / rel)`` of pathlib, and nix_string escaping every string."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from homelab import readback
from homelab.pynix_eval import nix_string


def escaped(s: str) -> str:
    """nix_string as it was: every string escaped."""
    if "\x00" in s:
        raise ValueError("Nix strings cannot contain NUL")
    return '"' + (s.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${")
                  .replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")) + '"'


ODD = ["hosts/n0001/default.nix", "modules/k8s/base.nix", "a b/c d.nix", "ünï/cödé.nix", "a//b.nix", "./a.nix",
       "a/./b.nix", "a/.", "a/", "/abs/x.nix", ".", "..", "../x.nix", "a/../b.nix", ".hidden/x.nix", "a/.b", "a./b",
       "x", "hosts/n0001/../../modules/a.nix", "a/b//", "$x/${y}.nix", 'q"uote/back\\slash.nix', "tab\there"]


@pytest.mark.parametrize("base", [Path("/"), Path("/tmp/lab"), Path("/dev/shm/homelab-verify-x/")])
@pytest.mark.parametrize("rel", ODD)
def test_a_path_under_the_lab_is_pathlibs(base, rel):
    assert readback._under(base, rel) == str(base / rel)


def test_random_paths_are_pathlibs():
    rng = random.Random(7)
    parts = ["a", "b", ".", "..", "", "n0001", "x.nix", " ", "ü"]
    for _ in range(5000):
        rel = "/".join(rng.choice(parts) for _ in range(rng.randint(1, 5)))
        for base in (Path("/"), Path("/tmp/lab")):
            assert readback._under(base, rel) == str(base / rel), rel


STRINGS = ["", "plain", "/tmp/lab/hosts/n0001/default.nix", "$", "$x", "${x}", "a$", "$${", "\\", '"', "\n", "\r",
           "\t", "ünï", "日本", "a\\${b}", "'' ${", "\x01\x7f"]


@pytest.mark.parametrize("s", STRINGS)
def test_a_nix_string_is_the_escaped_one(s):
    assert nix_string(s) == escaped(s)


def test_random_nix_strings_are_the_escaped_ones():
    rng = random.Random(11)
    alphabet = 'ab/.$ {}"\\\n\r\tü\x01'
    for _ in range(20000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
        assert nix_string(s) == escaped(s), repr(s)
    with pytest.raises(ValueError):
        nix_string("a\x00b")


def test_the_read_back_expression_names_each_file_by_its_path(tmp_path):
    """evaluation_expr's text for a few files: each loaded from the path pathlib gives it."""
    rels = ["hosts/a b/default.nix", "modules/x.nix"]
    expr = readback.evaluation_expr(tmp_path, rels, ["hosts/a b/hw.nix"], [], "hosts/lab.nix")
    root = tmp_path.resolve()
    for rel in rels:
        assert f"{escaped(rel)} = load (/. + {escaped(str(root / rel))});" in expr
    assert f'"hosts/a b/hw.nix" = builtins.typeOf (import (/. + {escaped(str(root / "hosts/a b/hw.nix"))}));' in expr
    assert f"data = import (/. + {escaped(str(root / 'hosts/lab.nix'))});" in expr


def pkg_names_reference(compiled) -> list[tuple[str, str]]:
    """readback._pkg_names as it was: a call for every value."""
    from homelab.model import Pkg, PkgCall, Priority

    names: set[tuple[str, str]] = set()

    def walk(v):
        if type(v) in (str, int, bool, float, type(None)):
            return
        if isinstance(v, Pkg):
            names.add(("pkg", v.name))
        elif isinstance(v, PkgCall):
            names.add(("call", v.function))
            walk(v.args)
        elif isinstance(v, Priority):
            walk(v.value)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)

    for f in compiled.files.values():
        for _, v in f.definitions():
            walk(v)
    return sorted(names)


def test_the_pkgs_a_lab_names_are_found_wherever_they_are():
    """Packages at the top of a definition, in lists, tuples, sets, frozen sets, under mkForce, in a call's
    arguments, under a call in a list in a set...: the stand-in pkgs holds each."""
    from homelab.model import FrozenDict, Pkg, PkgCall, Priority
    from homelab.nixmodule import ModuleFile, Section

    defs = [
        (("a",), Pkg("htop")),
        (("b",), [1, "x", Pkg("git"), (Pkg("jq"), None)]),
        (("c",), {"k": Pkg("vim"), "deep": {"list": [{"p": Pkg("linuxPackages_rpi4.v4l2loopback")}]}}),
        (("d",), Priority(Pkg("curl"), 50)),
        (("e",), Priority([Pkg("wget")], 1000)),
        (("f",), PkgCall("dockerTools.pullImage", {"imageName": "x", "pkg": Pkg("bash")})),
        (("g",), [PkgCall("buildEnv", {"paths": [Pkg("coreutils")]})]),
        (("h",), FrozenDict({"z": Priority({"y": Pkg("zsh")}, 50)})),
        (("i",), "pkgs.notapackage"),
        (("j",), Priority("plain", 50)),
    ]
    files = {"m.nix": ModuleFile("m.nix", "t", "s", (), (Section("x", tuple(defs[:5])),
                                                         Section("y", tuple(defs[5:]))))}

    class Compiled:  # what _pkg_names reads of a Compiled: its files
        pass

    compiled = Compiled()
    compiled.files = files
    got = readback._pkg_names(compiled)
    assert got == pkg_names_reference(compiled)
    assert got == sorted({("pkg", n) for n in ("htop", "git", "jq", "vim", "linuxPackages_rpi4.v4l2loopback", "curl",
                                               "wget", "bash", "coreutils", "zsh")}
                         | {("call", "dockerTools.pullImage"), ("call", "buildEnv")})
