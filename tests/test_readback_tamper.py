"""Verification compares EVERY generated file: tamper with each one, of each kind, and nix must notice.

The seed lab (as Python objects, tests/labkit.py) is rendered and staged the way a build stages it; then,
one at a time, each generated file — every module under modules/, every host's entry file
hosts/<name>/default.nix and the data file hosts/lab.nix — gets one value changed in its text (the first
and the last value it defines: a string, a number or a boolean), and an entry file also loses an import.
The real nix reads the staged files back; verify must report that file, by name.  A verifier that skipped
one file (or one kind) would let that file's tampering through.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from homelab import readback
from homelab.compile import compile_lab
from homelab.render import render_all
from tests import labkit

# a definition's value on one line: a string, a whole number, true/false (comments and the header skipped)
VALUE = re.compile(r'(?<![\w.-])("(?:[^"\\$]|\\.)*"|\b\d+\b|\btrue\b|\bfalse\b)(?=\s*;|\s*$)')


def tamper(text: str, which: int, packages: list[str] = ()) -> tuple[str, str, str]:
    """``text`` with one value changed: the first (``which`` = 0) or the last (-1) value a line defines; and
    the value before and after, as Python would print them (``'x'``, ``2``, ``True``).  A file whose only
    values are packages (``pkgs.kubernetes-helm``) gets one of them swapped for another of ``packages``."""
    hits = []
    for i, line in enumerate(text.splitlines(keepends=True)):
        if line.lstrip().startswith("#"):
            continue
        for m in VALUE.finditer(line):
            hits.append((i, m))
    if not hits and PKG.search(_definitions(text)):
        return _tamper_package(text, which, packages)
    if not hits:  # a file that defines one multi-line string (a node-rules file): change a port in a line of it
        return _tamper_lines(text, which)
    assert hits, "no value to tamper with"
    i, m = hits[which]
    v = m.group(1)
    new = {"true": "false", "false": "true"}.get(v) or (str(int(v) + 1) if v.isdigit() else v[:-1] + 'x"')
    lines = text.splitlines(keepends=True)
    lines[i] = lines[i][:m.start(1)] + new + lines[i][m.end(1):]
    return "".join(lines), _py(v), _py(new)


PKG = re.compile(r"(?<![\w.-])pkgs\.([A-Za-z_][\w-]*)(?![\w.-])")


def _definitions(text: str) -> str:
    return "".join(ln for ln in text.splitlines(keepends=True) if not ln.lstrip().startswith("#"))


def _tamper_package(text: str, which: int, packages: list[str]) -> tuple[str, str, str]:
    """The first or last package a file's definitions name (``pkgs.<name>``), swapped for another package the lab
    uses (nix's stand-in pkgs holds only those); the names before and after."""
    lines = text.splitlines(keepends=True)
    hits = [(i, m) for i, ln in enumerate(lines) if not ln.lstrip().startswith("#") for m in PKG.finditer(ln)]
    i, m = hits[which]
    was = m.group(1)
    now = next(p for p in sorted(packages) if p != was)
    lines[i] = lines[i][:m.start(1)] + now + lines[i][m.end(1):]
    return "".join(lines), repr(was), repr(now)


def _tamper_lines(text: str, which: int) -> tuple[str, str, str]:
    """A port in the first or last line of a file's indented string ('' ... ''), one higher; the line before and
    after."""
    lines = text.splitlines(keepends=True)
    opened = [i for i, ln in enumerate(lines) if ln.rstrip().endswith("''") and not ln.strip().startswith("''")]
    assert len(opened) == 1, "no value to tamper with"
    body = [i for i in range(opened[0] + 1, len(lines)) if not lines[i].strip().startswith(("#", "''"))
            and re.search(r"dport \d+", lines[i])]
    i = body[which]
    was = lines[i].strip()
    now = re.sub(r"dport (\d+)", lambda m: f"dport {int(m.group(1)) + 1}", was)
    lines[i] = lines[i].replace(was, now)
    return "".join(lines), repr(was), repr(now)


def _py(nix_value: str) -> str:
    if nix_value in ("true", "false"):
        return repr(nix_value == "true")
    if nix_value.isdigit():
        return repr(int(nix_value))
    return repr(nix_value[1:-1])


@pytest.fixture(scope="module")
def seed():
    lab = labkit.lab()
    compiled = compile_lab(lab)
    return compiled, render_all(compiled), readback.precheck(compiled)


@pytest.fixture(scope="module")
def packages(seed):
    """The plain packages (pkgs.<name>) the seed lab's modules use."""
    compiled = seed[0]
    return [name for kind, name in readback._pkg_names(compiled) if kind == "pkg"]


def _verify(tmp: Path, texts: dict[str, str], compiled, pre, nix) -> list[str]:
    shutil.rmtree(tmp, ignore_errors=True)
    for rel, text in texts.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(text)
    return readback.read_back(tmp, compiled, nix, pre=pre).problems


def test_the_untouched_files_verify(seed, nix, tmp_path):
    compiled, texts, pre = seed
    assert _verify(tmp_path / "lab", texts, compiled, pre, nix) == []
    kinds = {"module" if r.startswith("modules/") else "data" if r == "hosts/lab.nix" else "entry" for r in texts}
    assert kinds == {"module", "entry", "data"} and len(texts) >= 13


def _files():
    lab = labkit.lab()
    return sorted(render_all(compile_lab(lab)))


@pytest.mark.parametrize("which", [0, -1], ids=["first-value", "last-value"])
@pytest.mark.parametrize("rel", _files())
def test_a_changed_value_in_any_generated_file_is_noticed(seed, packages, nix, tmp_path, rel, which):
    compiled, texts, pre = seed
    changed, was, now = tamper(texts[rel], which, packages)
    assert changed != texts[rel]
    problems = _verify(tmp_path / "lab", dict(texts, **{rel: changed}), compiled, pre, nix)
    assert problems, f"tampering with {rel} went unnoticed"
    assert all(p.startswith(rel + ":") for p in problems), problems
    # the message shows what nix read and what the model says at the tampered place: two different values,
    # the new one from nix and the old one from the model
    shown = [re.search(r" differs: nix read (.*), the model says (.*)\Z", p, re.S) for p in problems]
    assert any(m and m.group(1) != m.group(2) and "None" not in (m.group(1), m.group(2))
               and (m.group(1), m.group(2)) == (now, was) or (m and now.strip("'") in m.group(1)
                                                               and was.strip("'") in m.group(2)) for m in shown), problems


@pytest.mark.parametrize("rel", [r for r in _files() if r.endswith("/default.nix")])
def test_a_dropped_import_in_any_entry_file_is_noticed(seed, nix, tmp_path, rel):
    compiled, texts, pre = seed
    lines = texts[rel].splitlines(keepends=True)
    imports = [i for i, ln in enumerate(lines) if ln.strip().startswith("../../modules/")]
    assert imports, rel
    del lines[imports[-1]]
    problems = _verify(tmp_path / "lab", dict(texts, **{rel: "".join(lines)}), compiled, pre, nix)
    assert any(p.startswith(f"{rel}: imports ") for p in problems), problems


def test_a_set_replaced_by_a_string_is_reported_not_a_crash(seed, nix, tmp_path):
    """nix reads a string where the model has an attribute set (even a string holding the set's key)."""
    compiled, texts, pre = seed
    rel = "modules/k8s/ceph.nix"
    text = re.sub(r"serviceConfig = \{\s*LimitNOFILE = \"1048576\";\s*\};", 'serviceConfig = "LimitNOFILE";',
                  texts[rel])
    assert text != texts[rel]
    problems = _verify(tmp_path / "lab", dict(texts, **{rel: text}), compiled, pre, nix)
    assert (f"{rel}: systemd.services.containerd.serviceConfig.LimitNOFILE differs: nix read None, the model says "
            "'1048576'") in problems
    # merged again from what nix read, the string cannot be a unit's settings: a conflict, named, not a crash
    assert any(p.startswith("hosts/") and "systemd.services.containerd.serviceConfig: definitions that do not fit"
               in p for p in problems), problems
