"""homelab's floors (pyproject.toml [tool.importlinter], README "How it is built"), enforced.

A module imports only from its own floor or those below it, counting imports inside functions: the
import-linter contract says so, and this file runs it on the package as it is, and on a copy of it
with one lazy import that climbs (a compiler module reaching for the command line), which must break
it. No module of homelab takes part in an import cycle either, inside a floor or across.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = REPO / "pyproject.toml"

pytest.importorskip("importlinter", reason="import-linter is not installed (pip install -e '.[test]')")


def _lint(package_parent: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` with the repository's contracts, on the ``homelab`` package found in ``package_parent``."""
    code = ("import sys; from importlinter.cli import lint_imports; "
            f"sys.exit(lint_imports(config_filename={str(PYPROJECT)!r}, no_cache=True, no_logo=True))")
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(package_parent), "PATH": "/usr/bin:/bin"})


def test_every_module_stays_on_its_floor(tmp_path):
    r = _lint(REPO, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Contracts: 1 kept, 0 broken." in r.stdout


def test_a_lazy_import_that_climbs_breaks_the_floors(tmp_path):
    copy = tmp_path / "src"
    shutil.copytree(REPO / "homelab", copy / "homelab", ignore=shutil.ignore_patterns("__pycache__"))
    compile_py = copy / "homelab" / "compile.py"
    compile_py.write_text(compile_py.read_text() + "\n\ndef _climb():\n    from .cli import main\n\n    return main\n")
    r = _lint(copy, tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "homelab.compile is not allowed to import homelab.cli" in r.stdout
    assert "- homelab.compile -> homelab.cli" in r.stdout


def test_no_import_cycle_anywhere_in_homelab():
    import grimp

    graph = grimp.build_graph("homelab", exclude_type_checking_imports=True, cache_dir=None)
    modules = sorted(graph.modules)
    edges = {m: sorted(set(graph.find_modules_directly_imported_by(m)) & set(modules)) for m in modules}
    cycles = _strongly_connected(edges)
    assert cycles == [], cycles


def _strongly_connected(edges: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: every set of two or more modules that import each other, in a ring."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = len(index)
                stack.append(v)
                on_stack.add(v)
            if i < len(edges[v]):
                work.append((v, i + 1))
                w = edges[v][i]
                if w not in index:
                    work.append((w, 0))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            for w in edges[v]:
                if w in on_stack:
                    low[v] = min(low[v], low[w])
            if low[v] == index[v]:
                ring = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    ring.append(w)
                    if w == v:
                        break
                if len(ring) > 1:
                    out.append(sorted(ring))
    return out


def test_the_cycle_finder_finds_a_ring():
    assert _strongly_connected({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert _strongly_connected({"a": ["b"], "b": [], "c": ["a"]}) == []
