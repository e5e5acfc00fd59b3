"""What homelab ships besides its Python code, found beside the installed package.

* :data:`VM_TESTS`: the vm-tests harness. It holds the testinfra suite (``conftest.py``,
  ``test_lab.py``, ``homelab_vmtests/``), which ``homelab vm`` runs over SSH and
  ``pytest <VM_TESTS> --hosts=ssh://...`` runs against a deployed lab. It also holds the NixOS
  test files the flake's ``lib.mkLab`` uses (``adapter.nix``, ``host-test.nix``,
  ``cluster-test.nix``).
* :func:`lab_tests`: a lab's own testinfra tests (its top-level ``vm-tests/``), run beside that suite.
* :data:`EXAMPLES`: the labs ``homelab init`` writes. ``starter`` is a control plane and a
  worker with the lab's flake, README, .gitignore and CI script; ``seed`` is the seed article's
  lab, hosts only.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
VM_TESTS = PACKAGE / "vm-tests"
EXAMPLES = PACKAGE / "examples"

FLAKES = ["--extra-experimental-features", "nix-command flakes"]  # nix 2.8 needs both for `nix flake ...`

__all__ = ["PACKAGE", "VM_TESTS", "EXAMPLES", "FLAKES", "kvm_problem", "lab_tests", "lab_test_args"]


def lab_tests(root: Path) -> Path | None:
    """The lab's own testinfra tests: its top-level ``vm-tests/`` folder when it holds ``test_*.py`` files (and
    no ``conftest.py``: a folder with one is a whole suite of its own, run instead of homelab's).  ``homelab
    vm``, ``homelab verify``/``deploy`` and the flake's VM tests run them beside the suite homelab ships."""
    own = Path(root) / "vm-tests"
    if not own.is_dir() or (own / "conftest.py").exists() or not any(own.glob("test_*.py")):
        return None
    return own.resolve()


def lab_test_args(root: Path, suite: Path) -> list[str]:
    """pytest's arguments for the lab's own tests beside ``suite``: their folder and the suite's settings (with
    two folders to collect, pytest would otherwise look for its settings above both); none without them."""
    own = lab_tests(root)
    if own is None or Path(suite).resolve() == own:
        return []
    return [str(own), "-c", str(Path(suite) / "pytest.ini")]


def kvm_problem(device: str = "/dev/kvm") -> str | None:
    """Why this machine cannot run a VM with KVM (None: it can)."""
    if not os.path.exists(device):
        return f"{device} does not exist: no KVM here"
    if not os.access(device, os.R_OK | os.W_OK):
        return f"{device} is not accessible to this user (add yourself to the kvm group)"
    return None
