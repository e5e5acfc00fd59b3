"""The clash check's nix walks the option paths it asks about as a tree (only the names a hand-written file has);
it finds exactly what looking up each path alone found (the expression before the tree, kept here as the
reference): found or not, priority, value, whether it could be told, under mkIf/mkMerge, where a value throws,
a path that is a prefix of another, odd names, files that are not attribute sets."""

from __future__ import annotations

from pathlib import Path

from homelab import bootable, readback
from homelab.pynix_eval import Nix, nix_available, nix_string

import pytest

# what the check's ``found`` was before the tree: each path looked up alone, in the order of the list
ONE_BY_ONE = """  found = v: paths: builtins.filter (d: d.found)
    (builtins.genList (i: { at = i; } // describe v (builtins.elemAt paths i)) (builtins.length paths));
"""

FILES = {
    "plain.nix": '{ ... }: { networking.hostName = "x"; networking.useDHCP = false; test.n = 3; }',
    "forced.nix": '{ lib, ... }: { services.openssh.enable = lib.mkForce true; test.d = lib.mkDefault "a"; }',
    "under-if.nix": '{ lib, ... }: { services = lib.mkIf true { nginx.enable = true; }; test.n = lib.mkIf true 1; }',
    "merged.nix": '{ lib, ... }: lib.mkMerge [ { networking.hostName = "m"; } ]',
    "config.nix": '{ config, pkgs, ... }: { networking.hostName = config.x; test.pkg = pkgs.hello; }',
    "throws.nix": '{ boot = throw "no"; networking = { hostName = "a"; useDHCP = throw "later"; }; }',
    "typed.nix": '{ networking = { _type = "odd"; hostName = "t"; }; test = { _type = throw "x"; n = 1; }; }',
    "prefix.nix": '{ a = { b = 1; c = { d = null; }; }; test.list = [ 1 2 ]; test.set = { x = 1; }; }',
    "names.nix": '{ "a.b" = 1; "" = { x = 2; }; fileSystems."/" = { device = "d"; }; }',
    "list.nix": '[ { networking.hostName = "l"; } ]',
    "string.nix": '{ ... }: "not a module"',
    "whole-throws.nix": '{ ... }: throw "nothing"',
    "float.nix": '{ test.f = 1.5; test.b = false; test.s = "${"in"}terp"; }',
}

PATHS = [("networking", "hostName"), ("networking", "useDHCP"), ("services", "openssh", "enable"),
         ("services", "nginx", "enable"), ("test", "n"), ("test", "d"), ("test", "pkg"), ("test", "list"),
         ("test", "set"), ("test", "set", "x"), ("test", "f"), ("test", "b"), ("test", "s"), ("a",), ("a", "b"),
         ("a", "c", "d"), ("a.b",), ("", "x"), ("fileSystems", "/"), ("boot", "isContainer"), ("nothing", "here")]


def _reference(root: Path, specs: dict, nix: Nix) -> dict:
    """What the check found with each path looked up alone (the expression before the tree)."""
    paths = readback._paths(specs)
    expr = readback.HAND_EXPR.split("  # the paths asked about, as a tree")[0] + ONE_BY_ONE + \
        readback.HAND_EXPR.split("          else [ ]);\n", 1)[1]
    expr = expr.replace("found (top spec.file) spec.tree", "found (top spec.file) spec.paths")
    listed = readback._paths_nix(paths)
    files = " ".join(f"{nix_string(h)} = {{ file = (/. + {nix_string(str(root / h))}); inherit paths; }};"
                     for h in specs)
    out = nix.eval_expr(expr % {"lib": readback.HAND_LIB, "files": f"(let paths = {listed}; in {{ {files} }})",
                                "modules": bootable.modules_nix(), "boot_paths": readback._paths_nix(bootable.PATHS)})
    return {h: {paths[d.pop("at")]: d for d in found} for h, found in out["clashes"].items()}


@pytest.mark.skipif(not nix_available(), reason="needs nix-instantiate")
def test_the_tree_finds_what_each_path_looked_up_alone_found(tmp_path):
    for name, text in FILES.items():
        (tmp_path / name).write_text(text + "\n")
    specs = {name: (["h"], set(PATHS)) for name in FILES}
    nix = Nix()
    found, _boot = readback._describe(tmp_path, specs, nix)
    want = _reference(tmp_path, specs, nix)
    assert found == want
    # and the files do define what they say (the comparison is not between two empty answers)
    assert sorted(found["plain.nix"]) == [("networking", "hostName"), ("networking", "useDHCP"), ("test", "n")]
    assert found["forced.nix"][("services", "openssh", "enable")] == {"found": True, "priority": 50, "known": True,
                                                                        "value": True}
    assert sorted(found["prefix.nix"]) == [("a",), ("a", "b"), ("a", "c", "d"), ("test", "list"), ("test", "set"),
                                           ("test", "set", "x")]
    assert sorted(found["names.nix"]) == [("", "x"), ("a.b",), ("fileSystems", "/")]
    assert found["under-if.nix"] == {("test", "n"): {"found": True, "conditional": True}}
    assert sorted(found["throws.nix"]) == [("networking", "hostName"), ("networking", "useDHCP")]
    assert found["typed.nix"] == {} and found["list.nix"] == {} and found["string.nix"] == {}


def test_the_tree_of_paths_names_each_path_where_it_ends():
    assert readback._tree_nix([("a", "b"), ("a",), ("c",)]) == (
        '{ at = [  ]; sub = { "a" = { at = [ 1 ]; sub = { "b" = { at = [ 0 ]; sub = {  }; }; }; }; '
        '"c" = { at = [ 2 ]; sub = {  }; }; }; }')
    assert readback._tree_nix([]) == "{ at = [  ]; sub = {  }; }"
