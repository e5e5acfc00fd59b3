"""CephStorage: what a Kubernetes node needs before Rook can run Ceph on it.

Three things, from the seed article: the ``ceph`` and ``rbd`` kernel modules
(Ceph's CSI driver maps RBD volumes and mounts CephFS through them), the
kubelet's root directory set explicitly (Rook expects it), and a high
``LimitNOFILE`` for containerd (Ceph daemons open many files).

nixpkgs has no kubelet-only directory option: ``kubelet.nix`` passes
``--root-dir=<services.kubernetes.dataDir>`` (``/var/lib/kubernetes``), and that
directory is also the ``kubernetes`` user's home, every Kubernetes unit's
working directory and the parent of ``secretsPath`` (easyCerts' certificates).
So the root directory is a second ``--root-dir`` in ``kubelet.extraOpts``,
which ``kubelet.nix`` puts last on the command line; the kubelet keeps the last
value of a repeated flag.  Which disks Rook
uses is Helm's business; ``disks`` only shows them in the diagram and table.
"""

from __future__ import annotations

from typing import Iterable

import attrs

from ... import checks, fields
from ...errors import Problem, report
from ...role import HostContext, Module, Role, section
from .. import kubernetes


def _kubelet_extra_opts():
    return next(o for o in kubernetes.OPTIONS if o.path == "services.kubernetes.kubelet.extraOpts")


@attrs.frozen
class CephStorage(Role):
    """Rook Ceph prerequisites: ceph + rbd kernel modules, kubelet root dir, containerd file limit.

    ``disks`` names the devices Rook may use (for the diagram and table; Rook's
    Helm values select them, not NixOS).
    """

    kubelet_root_dir: str = attrs.field(default="/var/lib/kubelet", validator=fields.absolute_path)
    containerd_nofile: int = attrs.field(default=1048576, validator=fields.positive_int)
    disks: tuple[str, ...] = attrs.field(default=(), converter=fields.to_strs)

    label = "ceph"
    tag = "ceph"
    options = (_kubelet_extra_opts(),)

    @disks.validator
    def _disks(self, attribute, value):
        for d in value if isinstance(value, tuple) else ():
            if not (isinstance(d, str) and d.startswith("/dev/") and fields.SAFE_TEXT.match(d)
                    and " " not in d):
                report(fields.field_name(self, attribute), f"{d!r} is not a device path under /dev/")

    def compile(self, ctx: HostContext) -> Iterable[Module]:
        # The module depends on nothing but these two fields (the role class too, kept in the key for a subclass):
        # hosts configured alike get the very same Module, once per lab.  Each value keyed with its type, so that
        # no two values equal by == but written differently (True and 1) share an entry.
        key = ("ceph: module", type(self), type(self.kubelet_root_dir), self.kubelet_root_dir,
               type(self.containerd_nofile), self.containerd_nofile)
        yield ctx.lab.derived(key, self._module)

    def _module(self) -> Module:
        return Module("modules/k8s/ceph.nix", "Rook Ceph prerequisites", (
            section("Ceph's CSI driver maps RBD volumes and mounts CephFS through these kernel modules.",
                    ("boot.kernelModules", ["ceph", "rbd"])),
            section("Rook expects the kubelet's root directory here. nixpkgs passes --root-dir=<kubernetes dataDir> "
                    "(/var/lib/kubernetes) first; this one comes last on the command line, and the last wins.",
                    ("services.kubernetes.kubelet.extraOpts", f"--root-dir={self.kubelet_root_dir}")),
            section("Ceph daemons open many files; the default containerd limit is too low for them.",
                    ("systemd.services.containerd.serviceConfig", {"LimitNOFILE": str(self.containerd_nofile)})),
        ))

    def check(self, ctx: HostContext) -> Iterable[Problem]:
        if not ctx.host.is_kubernetes_node:
            yield ctx.error("roles", "CephStorage needs a Kubernetes node on the host (ControlPlane() or Worker())")
        if len(set(self.disks)) != len(self.disks):
            yield self.error(ctx, "disks", "lists the same device twice")

    @classmethod
    def check_lab(cls, lab) -> Iterable[Problem]:
        cp = lab.control_plane
        if cp is not None and cp.boot.on_sd_card:
            yield Problem(lab.where(cp), "boot", "a control plane booted from an SD card is too slow for a cluster "
                          "running Ceph (the seed article saw ~43% I/O wait); consider an SSD", "warning")

    def expectations(self, ctx: HostContext) -> Iterable[checks.Check]:
        why = "CephStorage role: Rook's CSI driver needs it"
        yield checks.kernel_module("ceph", why)
        yield checks.kernel_module("rbd", why)
        yield checks.systemd_property("containerd.service", "LimitNOFILE", str(self.containerd_nofile), "equals",
                                      "CephStorage role: Ceph daemons open many files")
        if ctx.host.is_kubernetes_node:
            yield checks.systemd_property("kubelet.service", "ExecStart", f"--root-dir={self.kubelet_root_dir}",
                                          "last", "CephStorage role: Rook expects the kubelet root directory "
                                          "there (the last --root-dir on the command line wins)")

    def notes(self, ctx: HostContext) -> Iterable[str]:
        if self.disks:
            yield f"ceph disks: {', '.join(self.disks)}"
