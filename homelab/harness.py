"""What homelab ships besides its Python code, found beside the installed package.

* :data:`VM_TESTS`: the vm-tests harness. It holds the testinfra suite (``conftest.py``,
  ``test_lab.py``, ``homelab_vmtests/``), which ``homelab vm`` runs over SSH and
  ``pytest <VM_TESTS> --hosts=ssh://...`` runs against a deployed lab. It also holds the NixOS
  test files the flake's ``lib.mkLab`` uses (``adapter.nix``, ``host-test.nix``,
  ``cluster-test.nix``).
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

__all__ = ["PACKAGE", "VM_TESTS", "EXAMPLES", "FLAKES", "kvm_problem"]


def kvm_problem(device: str = "/dev/kvm") -> str | None:
    """Why this machine cannot run a VM with KVM (None: it can)."""
    if not os.path.exists(device):
        return f"{device} does not exist: no KVM here"
    if not os.access(device, os.R_OK | os.W_OK):
        return f"{device} is not accessible to this user (add yourself to the kvm group)"
    return None
