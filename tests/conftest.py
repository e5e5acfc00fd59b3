"""Shared fixtures: the repo's seed lab, a scratch copy of it, and the real nix."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import settings

from homelab.compile import compile_lab
from homelab.load import load_or_raise
from homelab.pynix_eval import Nix, nix_available

REPO = Path(__file__).resolve().parent.parent

# ≥ 1,000 examples in CI (HYPOTHESIS_PROFILE=ci); a quick profile for editing; more at night.
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile("ci", max_examples=1000, deadline=None, print_blob=True)
settings.register_profile("nightly", max_examples=10000, deadline=None)
# mutation testing (tools/mutate): every mutant reruns the tests, so fewer examples; exact tests do the killing
settings.register_profile("mutmut", max_examples=10, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def nix() -> Nix:
    if not nix_available():
        pytest.skip("nix-instantiate not found: install nix (apt-get install nix-bin); ./lab test does")
    return Nix(timeout=60)


@pytest.fixture(scope="session")
def seed():
    """(lab, warnings) of the committed seed lab."""
    return load_or_raise(REPO)


@pytest.fixture(scope="session")
def seed_compiled(seed):
    return compile_lab(seed[0])


@pytest.fixture
def lab_copy(tmp_path: Path) -> Path:
    """A scratch copy of the seed lab (hosts/ and modules/) to edit and build."""
    shutil.copytree(REPO / "hosts", tmp_path / "hosts", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "modules", tmp_path / "modules")
    return tmp_path


@pytest.fixture(autouse=True)
def _subprocesses_run_unmutated_code(monkeypatch):
    """Under mutation testing (./lab mutate), only this process runs the mutant: a homelab started as a new
    process runs the unmutated code (mutmut keeps the mutant's name in-process when the variable is gone)."""
    monkeypatch.delenv("MUTANT_UNDER_TEST", raising=False)
