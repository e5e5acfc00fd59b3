"""The summary line of a build says how its verify time was measured: a two-process build (homelab/shard.py)
prints the slower process's seconds (both halves ran at once) and says so; a one-process build as before.
``HOMELAB_PARALLEL_FROM=2`` sends a lab of 8 hosts down the two-process path."""

from __future__ import annotations

import re

import pytest

from homelab import shard
from tests.test_shard_fallback import HOSTS, copy_lab, lab_source, run, tree  # noqa: F401 - lab_source: a fixture


@pytest.mark.parametrize("parallel_from, how", [(0, "2 nix processes"),
                                                (2, "the slower of two processes; 2 nix processes")])
def test_the_summary_says_whose_verify_time_it_prints(lab_source, tmp_path, nix, parallel_from, how):  # noqa: F811
    if parallel_from and not shard.available():
        pytest.skip("no fork or a single core: the two-process path is never taken here")
    root = copy_lab(lab_source, tmp_path / "lab")
    before = set(tree(root))
    p = run(root, tmp_path / "cache", parallel_from)
    assert p.returncode == 0, p.stderr
    written = len(set(tree(root)) - before)
    hand = HOSTS  # a hand-written hardware file per host
    nix_read = written - len([f for f in tree(root) if f.startswith("cluster/")])  # helm's YAML is not nix's
    line = p.stdout.splitlines()[0]
    assert re.fullmatch(re.escape(f"{HOSTS} hosts: wrote {written}, unchanged 0; nix read back {nix_read} generated "
                                  f"files and parsed {hand} hand-written ones in ") + r"\d+\.\d\d s "
                        + re.escape(f"({how})"), line), line
