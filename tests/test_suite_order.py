"""The suite's own ordering (tests/conftest.py LONGEST_FIRST) names tests that exist: a renamed test would silently
fall back to file order, and the whole run could end again with a two-minute test alone on one worker."""

from __future__ import annotations

import ast

from .conftest import LONGEST_FIRST, REPO


def test_the_longest_first_are_tests_of_the_suite():
    for nodeid in LONGEST_FIRST:
        path, name = nodeid.split("::")
        tree = ast.parse((REPO / path).read_text())
        tests = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert name in tests, f"{nodeid}: no such test; update LONGEST_FIRST in tests/conftest.py"
    assert len(set(LONGEST_FIRST)) == len(LONGEST_FIRST)


def test_they_are_collected_first(request):
    """The collection this session runs starts with them, in their order (those selected)."""
    selected = {item.nodeid for item in request.session.items}
    wanted = [n for n in LONGEST_FIRST if n in selected]
    assert [item.nodeid for item in request.session.items[:len(wanted)]] == wanted
