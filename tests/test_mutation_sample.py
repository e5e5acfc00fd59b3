"""The mutation run's fast sample, run by CI (issue 19, item 3; README "Mutation testing").

The whole run (``./lab mutate --all``) takes hours; this takes seconds.  tests/fixtures/mutation-sample.json
holds a few mutants per core module that the whole run killed, each with the test that killed it
(``tools/mutate.py --ci-sample N`` writes it after a run).  Each is planted here as mutmut made it, as a plain
one-line replacement, in a copy of the repository (as mutmut's own ``mutants/``); the killing test, run in
the copy, must fail.  When the
code around a sampled line changes, the plant no longer applies and its case fails naming the mutant:
regenerate the sample after the next run (or drop the entry).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from .conftest import REPO

SAMPLE = json.loads((REPO / "tests" / "fixtures" / "mutation-sample.json").read_text())


@pytest.mark.parametrize("m", SAMPLE, ids=[m["mutant"] for m in SAMPLE])
def test_the_test_that_killed_a_sampled_mutant_still_kills_it(m, tmp_path):
    source = (REPO / m["file"]).read_text()
    lines = source.splitlines(keepends=True)
    at = [i for i, ln in enumerate(lines) if ln.rstrip("\n") == m["old"]]
    assert len(at) == 1, f"{m['mutant']}: its line is no longer once in {m['file']}: regenerate the sample"
    copy = copy_repo(tmp_path)
    lines[at[0]] = m["new"] + "\n"
    (copy / m["file"]).write_text("".join(lines))
    r = run_test(m["test"], copy)
    assert r.returncode == 1, f"{m['mutant']} was not killed by {m['test']} (exit {r.returncode}):\n{r.stdout[-2000:]}"


def copy_repo(tmp_path):
    """The repository's files (not its git, venv or caches), as tests and homelab see them."""
    skip = shutil.ignore_patterns(".git", ".venv", "mutants", "__pycache__", ".hypothesis", "*.egg-info",
                                  ".pytest_cache")
    return shutil.copytree(REPO, tmp_path / "repo", ignore=skip, symlinks=True)


def run_test(nodeid: str, copy) -> subprocess.CompletedProcess:
    """One test of the suite, run in ``copy`` of the repository (its homelab imported, not this one)."""
    env = dict(os.environ, PYTHONPATH=str(copy), HYPOTHESIS_PROFILE="mutmut")
    for k in [k for k in env if k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))]:
        env.pop(k)
    return subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-n", "0", nodeid],
                          cwd=copy, env=env, capture_output=True, text=True, timeout=300)


def test_the_copy_is_what_runs_and_passes_unmutated(tmp_path):
    """The harness itself: the killing tests run against the copy (not the installed homelab), and an unmutated
    copy passes them, so a failure above is the mutant's."""
    copy = copy_repo(tmp_path)
    (copy / "tests" / "test_zz_where.py").write_text(
        "import homelab\n\ndef test_where():\n    assert homelab.__file__ == %r\n"
        % str(copy / "homelab" / "__init__.py"))
    assert run_test("tests/test_zz_where.py", copy).returncode == 0
    for test in sorted({m["test"] for m in SAMPLE})[:3]:
        r = run_test(test, copy)
        assert r.returncode == 0, f"{test} fails on an unmutated copy:\n{r.stdout[-2000:]}"
