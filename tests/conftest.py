"""Shared fixtures: the seed lab (frozen, for the article's facts), the repository's own lab, the real nix.

Two labs, kept apart on purpose:

* the **seed lab** is homelab's first example, ``homelab/examples/seed`` (what ``homelab init
  --example seed`` writes): a frozen copy of the article's lab. Tests that assert the article's
  values (yomogi is an aarch64 control plane, the zone is home.example.com, ...) use it, built
  in a scratch folder (``seed_root``, ``lab_copy``);
* the **repository's lab** is whatever the top-level ``hosts/`` holds. Tests that hold for any
  valid lab (the flake follows it, its generated files are current, ``homelab test`` passes on
  it) use it, so a user who edits ``hosts/`` keeps a green suite.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

from homelab import build
from homelab.compile import compile_lab
from homelab.harness import EXAMPLES
from homelab.load import load_or_raise
from homelab.pynix_eval import Nix, nix_available

REPO = Path(__file__).resolve().parent.parent

# `python -m homelab build` records each whole build it verified (homelab/uptodate.py); the homelab processes
# the tests start record into a folder of this test run, never into the user's ~/.cache
os.environ["HOMELAB_CACHE_DIR"] = tempfile.mkdtemp(prefix="homelab-test-cache-")
atexit.register(shutil.rmtree, os.environ["HOMELAB_CACHE_DIR"], True)
SEED = EXAMPLES / "seed"  # the seed lab's sources: hosts/cluster.py, host.py and hardware files

# ≥ 1,000 examples in CI (HYPOTHESIS_PROFILE=ci); a quick profile for editing; more at night.
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile("ci", max_examples=1000, deadline=None, print_blob=True)
settings.register_profile("nightly", max_examples=10000, deadline=None)
# mutation testing (tools/mutate): every mutant reruns the tests, so fewer examples; exact tests do the killing
settings.register_profile("mutmut", max_examples=10, deadline=None, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def copy_lab(src: Path, dst: Path) -> Path:
    """A lab's hosts/, and modules/ and cluster/ (when built), copied to ``dst``."""
    shutil.copytree(src / "hosts", dst / "hosts", ignore=shutil.ignore_patterns("__pycache__"))
    for built in ("modules", "cluster"):
        if (src / built).is_dir():
            shutil.copytree(src / built, dst / built)
    return dst


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def nix() -> Nix:
    if not nix_available():
        pytest.skip("nix-instantiate not found: install nix (apt-get install nix-bin); ./lab test does")
    return Nix(timeout=60)


@pytest.fixture(scope="session")
def seed_root(tmp_path_factory) -> Path:
    """The seed lab, built (hosts/ and modules/) in a scratch folder once per session; do not edit it."""
    root = copy_lab(SEED, tmp_path_factory.mktemp("seed"))
    build.build(root, verify_with_nix=nix_available())
    return root


@pytest.fixture(scope="session")
def seed(seed_root):
    """(lab, warnings) of the seed lab."""
    return load_or_raise(seed_root)


@pytest.fixture(scope="session")
def seed_compiled(seed):
    return compile_lab(seed[0])


@pytest.fixture
def lab_copy(seed_root, tmp_path: Path) -> Path:
    """A scratch copy of the built seed lab (hosts/ and modules/) to edit and build."""
    return copy_lab(seed_root, tmp_path)


@pytest.fixture(scope="session")
def repo_lab():
    """(lab, warnings) of the repository's own lab, whatever hosts/ holds."""
    return load_or_raise(REPO)


@pytest.fixture(autouse=True, scope="session")
def _subprocesses_run_unmutated_code():
    """Under mutmut's own scheduler (``./lab mutate PATTERN``), only this process runs the mutant: a homelab
    started as a new process runs the unmutated code (mutmut keeps the mutant's name in-process when the
    variable is gone).  Session-wide, so that module-scoped fixtures that start homelab see it gone too.
    ``./lab mutate --all`` (tools/mutate_forks.py) sets up the session before it forks a child per mutant, and
    the child names its mutant afterwards: there the homelab processes a test starts run the mutant too (each
    child with its own record folder), which is how ``--unmapped`` judges code only such processes reach."""
    os.environ.pop("MUTANT_UNDER_TEST", None)


# The suite's longest tests (CPU seconds under HYPOTHESIS_PROFILE=ci, one core each), collected first.  xdist
# 3.8 (`./lab test`: -n auto, --dist load) gives each worker a first run of consecutive tests and the rest to
# whichever is free: a two-minute test collected late ran alone at the end of the run while the other worker
# had nothing left (the round trip through nix started 2m40s before the end of a whole run; the workers ended
# 84 s apart).  Collected first, they start at once and the short tests fill in around them (39 s apart).
# Only tests whose fixtures are session- or function-scoped (or cheap) are moved: a module-scoped fixture would
# be set up once more for a test taken out of its module.
LONGEST_FIRST = (
    "tests/test_roundtrip_lab.py::test_random_labs_round_trip_through_nix",  # ~115 s
    "tests/test_injection.py::test_hostile_strings_stay_strings",  # ~64 s
    "tests/test_expect.py::test_expectations_agree_with_the_generated_options",  # ~33 s
    "tests/test_nixvalue.py::test_any_data_round_trips_through_nix",  # ~21 s
    "tests/test_cluster_layer.py::test_any_values_read_back_exactly",  # ~19 s
    "tests/test_nixvalue.py::test_any_string_round_trips_through_nix",  # ~8 s
)


def pytest_collection_modifyitems(items):
    """The longest tests first (LONGEST_FIRST), the rest in file order.  Under ./lab mutate: the quickest tests
    first.  mutmut runs a mutant's tests with -x, so a killed mutant costs its quickest failing test, not its
    file order's first (mutmut hands the tests over unordered)."""
    import sys

    state = sys.modules.get("mutmut.state")
    if state is None or os.environ.get("MUTANT_UNDER_TEST", "") in ("", "stats", "fail", "list_all_tests"):
        rank = {nodeid: i for i, nodeid in enumerate(LONGEST_FIRST)}
        items.sort(key=lambda item: rank.get(item.nodeid, len(rank)))  # stable: the rest keep their order
        return
    durations = state.state().duration_by_test
    items.sort(key=lambda item: durations.get(item.nodeid, 0.0))
