"""The charts the cluster layer pins ship inside the homelab package, so an installed homelab (pip, or the flake's
``packages.homelab``) renders them without a clone and without ``HOMELAB_CHARTS``.

The package is laid out as setuptools lays out an install, from pyproject.toml's own package data (setuptools'
``build_py`` into a scratch folder: the files a wheel holds), and a Python started there asks where the charts are.
"""

from __future__ import annotations

import os
import subprocess
import sys

from homelab.proofs.cluster import read_helmfile

from .conftest import REPO


def _installed_copy(tmp_path):
    lib = tmp_path / "lib"
    r = subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q", "build_py",
                        "--build-lib", str(lib)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return lib


def test_an_installed_homelab_carries_and_finds_every_chart_the_seed_lab_pins(seed_root, tmp_path):
    lib = _installed_copy(tmp_path)
    shipped = lib / "homelab" / "charts"
    releases = read_helmfile(seed_root / "cluster" / "helmfile.yaml")
    pinned = {f"{r.chart.split('/', 1)[1]}-{r.version}.tgz" for r in releases}
    assert pinned == {"traefik-37.1.0.tgz", "rook-ceph-v1.18.9.tgz", "rook-ceph-cluster-v1.18.9.tgz"}
    assert sorted(p.name for p in shipped.iterdir()) == sorted(
        pinned | {"README.md", "traefik-LICENSE", "rook-LICENSE", "ceph-csi-operator-LICENSE"})
    for name in pinned:  # the same bytes as the source tree's
        assert (shipped / name).read_bytes() == (REPO / "homelab" / "charts" / name).read_bytes()
    env = {k: v for k, v in os.environ.items() if k != "HOMELAB_CHARTS"}
    r = subprocess.run([sys.executable, "-c", "from homelab.proofs.cluster import find_charts; print(find_charts())"],
                       cwd=tmp_path, env={**env, "PYTHONPATH": str(lib)}, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(shipped)
