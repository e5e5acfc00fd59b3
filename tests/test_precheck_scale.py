"""The precheck holds what grows with the lab, not its square, and finds the same conflicts as a full merge.

Each node's merged firewall text holds a line per node; the precheck no longer builds and keeps it for every
host (HostOptions merges a host's values when asked).  Counted with tracemalloc (bytes allocated, not time).
"""

from __future__ import annotations

import tracemalloc

import pytest

from homelab import readback as verify
from homelab.compile import compile_lab
from homelab.model import force

from . import labkit
from .test_lab_growth import grown_lab


def _peak_bytes(compiled) -> int:
    tracemalloc.start()
    try:
        pre = verify.precheck(compiled)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert pre.ok
    return peak


def test_the_precheck_grows_linearly_with_the_lab():
    per_host = {}
    for n in (150, 300, 600):
        compiled = compile_lab(grown_lab(n, "iptables"))
        per_host[n] = _peak_bytes(compiled) / n
    # a host costs about the same whatever the lab's size (kept merged, each node's firewall text alone would
    # add ~100 bytes per node to every host: 4x more per host at 600 hosts than at 150)
    assert per_host[600] < 1.25 * per_host[150], per_host


def _labs():
    seed = labkit.lab()
    clash = labkit.evolve_host(seed, "tokiwa", options={
        "services.kubernetes.easyCerts": False,  # modules/k8s/base.nix says true: a conflict
        "services.kubernetes.flannel.openFirewallPorts": force(True),  # mkForce wins: no conflict
        "networking.extraHosts": "192.168.10.99 printer\n"})  # lines join with the base module's
    return {"seed": seed, "wide": labkit.wide_lab(), "grown": grown_lab(20, "nftables"), "clash": clash}


@pytest.mark.parametrize("name", sorted(_labs()))
def test_the_precheck_finds_what_a_full_merge_finds(name):
    compiled = compile_lab(_labs()[name])
    pre = verify.precheck(compiled)
    assert pre.problems == []
    for h in compiled.hosts:
        files = [(rel, pre.nested[rel]) for rel in compiled.files_of(h)]
        merged, conflicts = verify.merge_host(files, compiled.contract)
        assert pre.conflicts[h] == conflicts, h
        assert pre.merged[h] == merged, h  # merged when asked: the values a full merge gives
    if name == "clash":
        assert [".".join(c.path) for c in pre.conflicts["tokiwa"]] == ["services.kubernetes.easyCerts"]
