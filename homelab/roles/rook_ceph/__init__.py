"""Rook Ceph: the operator (chart rook-ceph) and the cluster (chart rook-ceph-cluster), from the model.

- **Operator**: NixOS keeps kernel modules under ``/run/booted-system/kernel-modules/lib/modules/`` and every
  binary under ``/nix``; Ceph's CSI plugins load ``rbd``/``ceph`` and run host tools, so both are mounted into
  the RBD and CephFS plugin pods (the seed article's values).  On rook v1.18.9 these are the chart's
  ``csi.csiRBDPluginVolume`` / ``csiCephFSPluginVolume`` (+ ``...Mount``) keys, which the chart writes into the
  operator's ConfigMap (``CSI_*_PLUGIN_VOLUME``); on v1.20 those keys are gone.  Only Rook's own CSI
  deployment reads them: v1.18 defaults to the ceph-csi-operator (``csi.rookUseCsiOperator: true``), whose
  Driver CRs Rook writes without those volumes (rook/rook#16370), so the values turn it off (``false``, the
  fallback the v1.18 release notes name).  The CSI kubelet directory
  (``csi.kubeletDirPath``) is the nodes' kubelet root directory (CephStorage's ``--root-dir``).
- **Cluster**: OSDs on exactly the CephStorage hosts that list disks (by their kubelet names), on exactly
  those disks (``useAllNodes``/``useAllDevices`` false); monitors and managers as many as the lab's nodes
  allow; one block pool replicated across the OSD hosts (its StorageClass ``ceph-block``).

Chart versions: v1.18.9 (https://charts.rook.io/release).
"""

from __future__ import annotations

from typing import Any, Iterable

import attrs

from ... import fields
from ...component import Component, Release, Repository
from ...errors import Problem, some_of
from ...role import Edge, GraphPart, Node
from ...yamltext import Commented
from .. import kubernetes
from ..ceph import CephStorage

REPOSITORY = Repository("rook-release", "https://charts.rook.io/release")
VERSION = "v1.18.9"
KERNEL_MODULES = "/run/booted-system/kernel-modules/lib/modules/"
NIX = "/nix"
# nixpkgs' kubelet root directory when no --root-dir follows it: services.kubernetes.dataDir's default
NIXPKGS_KUBELET_DIR = "/var/lib/kubernetes"


def kubelet_root_dir(host) -> str:
    """The kubelet's root directory on a node: CephStorage's --root-dir, else nixpkgs' dataDir."""
    role = host.role(CephStorage)
    return role.kubelet_root_dir if role is not None else NIXPKGS_KUBELET_DIR


def device_name(disk: str) -> str:
    """Rook's name for a disk: the kernel name (``sda``) for ``/dev/sda``, the full path for a udev link."""
    rest = disk.removeprefix("/dev/")
    return rest if "/" not in rest else disk


def _mons(v):
    return v is None or (isinstance(v, int) and not isinstance(v, bool) and v in (1, 3, 5))


def _rbd_parameters(ns: str) -> dict[str, str]:
    """The block StorageClass's parameters: RBD images Linux's rbd module maps, and the CSI secrets Rook's
    operator creates in namespace ``ns``."""
    return {
        "imageFormat": "2",
        "imageFeatures": "layering",
        "csi.storage.k8s.io/provisioner-secret-name": "rook-csi-rbd-provisioner",
        "csi.storage.k8s.io/provisioner-secret-namespace": ns,
        "csi.storage.k8s.io/controller-expand-secret-name": "rook-csi-rbd-provisioner",
        "csi.storage.k8s.io/controller-expand-secret-namespace": ns,
        "csi.storage.k8s.io/controller-publish-secret-name": "rook-csi-rbd-provisioner",
        "csi.storage.k8s.io/controller-publish-secret-namespace": ns,
        "csi.storage.k8s.io/node-stage-secret-name": "rook-csi-rbd-node",
        "csi.storage.k8s.io/node-stage-secret-namespace": ns,
        "csi.storage.k8s.io/fstype": "ext4",
    }


@attrs.frozen
class RookCeph(Component):
    """Rook's operator and one Ceph cluster on the CephStorage hosts' disks."""

    # None: as many as fit (3 with three or more Kubernetes nodes, else 1); Ceph wants an odd number
    mons: int | None = attrs.field(default=None, validator=fields.check(
        _mons, lambda v: f"{v!r} is not 1, 3 or 5 (or None): Ceph's monitors need an odd number for a majority"))
    namespace: str = attrs.field(default="rook-ceph", validator=fields.dns_label)
    version: str = VERSION
    block_storage_class: str = "ceph-block"

    label = "rook ceph"

    @classmethod
    def implied(cls, lab) -> RookCeph | None:
        """A lab with a CephStorage host that lists disks gets Rook Ceph on them unless it lists one."""
        return cls() if any(r.disks for _, r in lab.roles_of_type(CephStorage)) else None

    def osd_hosts(self, lab) -> list:
        return [(h, r) for h, r in lab.roles_of_type(CephStorage) if r.disks]

    def mon_count(self, lab) -> int:
        if self.mons is not None:
            return self.mons
        return 3 if len(lab.kubernetes_nodes) >= 3 else 1

    def kubelet_dir(self, lab) -> str:
        """The CephStorage nodes' kubelet root directory (where the CSI plugins register)."""
        ceph = [h for h, _ in lab.roles_of_type(CephStorage)]
        return kubelet_root_dir(ceph[0]) if ceph else NIXPKGS_KUBELET_DIR

    def check(self, lab) -> Iterable[Problem]:
        if not self.osd_hosts(lab):
            yield self.error("hosts", "no CephStorage host lists disks, so Ceph has nowhere to store data (give "
                             "a node CephStorage(disks=[\"/dev/...\"]), or drop RookCeph)")
        dirs = {h.hostname: kubelet_root_dir(h) for h, _ in lab.roles_of_type(CephStorage)}
        if len(set(dirs.values())) > 1:
            yield self.error("hosts", "Ceph's CSI plugin knows one kubelet directory, and the CephStorage hosts' "
                             "kubelets use " + ", ".join(f"{d} ({h})" for h, d in sorted(dirs.items()))
                             + ": give them the same kubelet_root_dir")
        kubelet_dir = self.kubelet_dir(lab)  # once: it looks at every host
        elsewhere = sorted(h.hostname for h in lab.kubernetes_nodes
                           if h.is_kubernetes_node and kubelet_root_dir(h) != kubelet_dir)
        if elsewhere:
            yield Problem("cluster", f"{type(self).__name__}.hosts", "the CSI plugin registers under the kubelet "
                          f"directory {kubelet_dir}, which the kubelet of {some_of(elsewhere)} does not "
                          "use: pods there cannot mount Ceph volumes (give those hosts CephStorage())", "warning")
        if self.mons is not None and self.mons > len(lab.kubernetes_nodes):
            yield self.error("mons", f"{self.mons} monitors need {self.mons} nodes (one per node), and the lab has "
                             f"{len(lab.kubernetes_nodes)}")
        for h, r in lab.roles_of_type(CephStorage):
            if not h.is_kubernetes_node:
                yield self.error("hosts", f"{h.hostname} has CephStorage but runs no kubelet")

    def graph(self, lab) -> GraphPart:
        osd = self.osd_hosts(lab)
        node = Node("rook", ("Rook Ceph " + self.version, f"{self.mon_count(lab)} mon · pool ×{min(3, len(osd))}"),
                    "svc", "cluster", "subroutine")
        return GraphPart(nodes=(node,), edges=tuple(
            Edge(h.hostname, "rook", (f"OSD {', '.join(device_name(d) for d in r.disks)}",)) for h, r in osd))

    def operator_values(self, lab) -> dict[str, Any]:
        def volumes():
            return [{"name": "lib-modules", "hostPath": {"path": KERNEL_MODULES}},
                    {"name": "host-nix", "hostPath": {"path": NIX}}]

        def mounts():
            return [{"name": "host-nix", "mountPath": NIX, "readOnly": True}]

        return {"csi": {
            "rookUseCsiOperator": Commented(False, "Rook's own CSI drivers, not the ceph-csi-operator (v1.18's "
                                            "default): the operator's node plugins do not get the plugin volumes "
                                            "below (rook/rook#16370), and NixOS needs them."),
            "kubeletDirPath": Commented(self.kubelet_dir(lab), "The nodes' kubelet root directory (CephStorage's "
                                        "--root-dir): the CSI plugins register their sockets under it."),
            "csiRBDPluginVolume": Commented(volumes(), "NixOS keeps the kernel's modules under /run/booted-system "
                                            "and every binary under /nix: the CSI plugins load rbd/ceph and run "
                                            "host tools from there."),
            "csiRBDPluginVolumeMount": mounts(),
            "csiCephFSPluginVolume": volumes(),
            "csiCephFSPluginVolumeMount": mounts(),
        }}

    def cluster_values(self, lab) -> dict[str, Any]:
        osd = self.osd_hosts(lab)
        nodes = len(lab.kubernetes_nodes)
        size = min(3, len(osd))
        pool_spec: dict[str, Any] = {"failureDomain": "host", "replicated": {"size": size}}
        if size == 1:
            pool_spec["replicated"]["requireSafeReplicaSize"] = False
        ns = self.namespace
        params = _rbd_parameters(ns)
        return {
            "operatorNamespace": ns,
            "cephClusterSpec": {
                "mon": Commented({"count": self.mon_count(lab), "allowMultiplePerNode": False},
                                 f"One monitor per node, an odd number for a majority; the lab has {nodes} "
                                 f"Kubernetes node{'s' if nodes != 1 else ''}."),
                "mgr": {"count": min(2, nodes), "allowMultiplePerNode": False},
                "storage": Commented({
                    "useAllNodes": False,
                    "useAllDevices": False,
                    "nodes": [{"name": kubernetes.kubelet_name(h),
                               "devices": [{"name": device_name(d)} for d in r.disks]} for h, r in osd],
                }, "Exactly the CephStorage hosts' disks (hosts/<name>/host.py), by the node names their kubelets "
                   "register; never every node or every empty disk."),
                **({"cephConfig": Commented({"global": {
                    "osd_pool_default_size": str(size),
                    **({"mon_warn_on_pool_no_redundancy": "false"} if size == 1 else {}),
                }}, f"{len(osd)} OSD host{'s' if len(osd) != 1 else ''} hold{'s' if len(osd) == 1 else ''} "
                    f"{size} cop{'y' if size == 1 else 'ies'}: Ceph's own pools (.mgr) get that size too, not 3, "
                    "else they stay undersized" + (", and a pool with one copy is expected, not a health warning "
                                                   "(as Rook's cluster-test.yaml)." if size == 1 else "."))}
                   if size < 3 else {}),
            },
            "cephBlockPools": Commented([{
                "name": "ceph-blockpool",
                "spec": pool_spec,
                "storageClass": {
                    "enabled": True,
                    "name": self.block_storage_class,
                    "isDefault": True,
                    "reclaimPolicy": "Delete",
                    "allowVolumeExpansion": True,
                    "volumeBindingMode": "Immediate",
                    "parameters": params,
                },
            }], f"One block pool, a copy on each of {size} OSD host{'s' if size != 1 else ''} (failure domain: "
                "host); its StorageClass is the cluster's default."),
            "cephFileSystems": Commented([], "No CephFS and no object store: the lab's volumes are block volumes."),
            "cephObjectStores": [],
        }

    def releases(self, lab) -> Iterable[Release]:
        yield Release("rook-ceph", self.namespace, REPOSITORY, "rook-ceph", self.version, self.operator_values(lab),
                      "Rook's operator and Ceph's CSI drivers")
        yield Release("rook-ceph-cluster", self.namespace, REPOSITORY, "rook-ceph-cluster", self.version,
                      self.cluster_values(lab), "The Ceph cluster on the CephStorage hosts' disks",
                      (f"{self.namespace}/rook-ceph",))
