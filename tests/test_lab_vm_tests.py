"""A lab's own testinfra tests (its top-level vm-tests/) run beside the suite homelab ships.

``homelab vm`` and ``homelab verify``/``deploy`` put the folder on pytest's command line after the
packaged suite, with the suite's settings; the tests get the suite's fixtures (testinfra's ``host``,
homelab's ``lab_host``). Shown here for real: a lab with a test of its own, run by pytest against this
machine (testinfra's local backend) as the lab host ``tokiwa``. The flake side is in tests/test_flake.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from homelab.deploy import checks_step
from homelab.harness import VM_TESTS, lab_test_args, lab_tests
from homelab.load import load_or_raise
from homelab.remote import SshOptions
from homelab.vm import make_run

from .conftest import REPO, SEED

OWN_TEST = '''
def test_own_check(host, lab_host):
    assert lab_host == "tokiwa"
    assert host.run("echo lab-test").stdout.strip() == "lab-test"
'''


def lab_with_tests(tmp_path: Path) -> Path:
    root = tmp_path / "lab"
    shutil.copytree(SEED / "hosts", root / "hosts")
    (root / "vm-tests").mkdir()
    (root / "vm-tests" / "test_own.py").write_text(OWN_TEST)
    return root


def test_the_folder_counts_when_it_holds_tests(tmp_path):
    root = lab_with_tests(tmp_path)
    assert lab_tests(root) == (root / "vm-tests").resolve()
    assert lab_test_args(root, VM_TESTS) == [str((root / "vm-tests").resolve()), "-c", str(VM_TESTS / "pytest.ini")]
    assert lab_tests(tmp_path) is None  # no vm-tests/
    (root / "vm-tests" / "conftest.py").write_text("")  # a whole suite of its own: run instead, not beside
    assert lab_tests(root) is None
    assert lab_tests(REPO) == (REPO / "vm-tests").resolve()  # this repository keeps its seed checks there


def test_vm_and_verify_run_them_beside_the_suite(tmp_path):
    root = lab_with_tests(tmp_path)
    lab, _ = load_or_raise(root)
    own = str((root / "vm-tests").resolve())
    run = make_run(lab, ["tokiwa"], root, tmp_path / "work", [40100], system="x86_64-linux", nixos_rebuild=False,
                   suite_dir=VM_TESTS)
    argv = list(run.suite.argv)
    assert argv[3:7] == [str(VM_TESTS), own, "-c", str(VM_TESTS / "pytest.ini")]
    step = checks_step(root, [lab.host("tokiwa")], "host", "r.xml", SshOptions(), VM_TESTS, sys.executable)
    assert list(step.argv)[5:9] == [str(VM_TESTS), own, "-c", str(VM_TESTS / "pytest.ini")]


def test_a_labs_own_test_runs_with_the_suites_fixtures(tmp_path):
    root = lab_with_tests(tmp_path)
    argv = [sys.executable, "-m", "pytest", "-p", "testinfra.plugin", str(VM_TESTS), *lab_test_args(root, VM_TESTS),
            "--hosts=local://", f"--lab-root={root}", "--lab-host=tokiwa", "--homelab-scope=host",
            "-k", "test_own_check", "-q", "-p", "no:cacheprovider"]
    r = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed" in r.stdout, r.stdout
    (root / "vm-tests" / "test_own.py").write_text(OWN_TEST.replace('"tokiwa"', '"yomogi"'))
    r = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONPATH": str(REPO)})
    assert r.returncode == 1 and "1 failed" in r.stdout, r.stdout + r.stderr
