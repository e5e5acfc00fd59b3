"""Lab-wide facts that rules used to recompute for every host (issue 19: a 10,000-host build from nothing),
now found once per lab: the verdicts they give stay exactly what they were."""

from __future__ import annotations

import attrs

from . import labkit
from homelab import CephStorage, Host, RookCeph, Worker
from homelab.validate import problems_of


def _ceph_lab(extra_workers: int):
    hosts = [attrs.evolve(h, roles=[CephStorage(disks=["/dev/sda"]) if isinstance(r, CephStorage) else r
                                    for r in h.roles]) for h in labkit.seed_hosts()]
    hosts += [Host(hostname=f"plain{i}", system="x86_64-linux", state_version="25.05", interface="enp1s0",
                   address=f"192.168.10.{30 + i}", roles=[Worker()]) for i in range(extra_workers)]
    return labkit.lab(hosts, components=[RookCeph()])


def test_rook_names_every_node_whose_kubelet_directory_the_csi_plugin_misses():
    lab = _ceph_lab(3)
    found = [(p.where, p.field, p.severity, p.reason) for p in problems_of(lab) if p.field == "RookCeph.hosts"]
    # the Ceph hosts' kubelets use /var/lib/kubelet; a node without CephStorage keeps nixpkgs' directory
    assert found == [("cluster", "RookCeph.hosts", "warning",
                      "the CSI plugin registers under the kubelet directory /var/lib/kubelet, which the kubelet of "
                      "plain0, plain1, plain2 does not use: pods there cannot mount Ceph volumes (give those hosts "
                      "CephStorage())")]


def test_rook_says_nothing_when_every_node_has_the_ceph_hosts_kubelet_directory():
    assert [p for p in problems_of(_ceph_lab(0)) if p.field == "RookCeph.hosts"] == []
