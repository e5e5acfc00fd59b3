"""Worker: a Kubernetes node (NixOS role node) whose kubelet talks to the control plane by name.

It joins the cluster with ``nixos-kubernetes-node-join`` (easyCerts: the API
token from the control plane on its standard input); until then its kubelet,
kube-proxy and flannel wait, so what must run here is of scope ``cluster``.
"""

from __future__ import annotations

from typing import Iterable

import attrs

from ... import checks
from ...errors import Problem
from ...role import Flow, HostContext, Module, Port, Role, section
from .. import kubernetes


@attrs.frozen
class Worker(Role):
    """Kubernetes worker: NixOS role node, kubelet talking to the cluster's API address."""

    label = "worker"
    tag = "k8s-worker"
    kubernetes_node = True
    options = kubernetes.OPTIONS

    def compile(self, ctx: HostContext) -> Iterable[Module]:
        yield from kubernetes.node_modules(ctx)
        # The module depends on nothing but the cluster's API URL, the same for every host of a lab (the lab and its
        # cluster never change): made once per lab, every worker gets the very same Module.
        cluster = ctx.cluster
        yield ctx.lab.derived("worker: node module", lambda: Module(
            "modules/k8s/node.nix", "Kubernetes worker: role node", (
                section("", ("services.kubernetes.roles", ["node"])),
                section("The kubelet talks to the API server by its name.",
                        ("services.kubernetes.kubelet.kubeconfig.server", cluster.api_url)),
            )))

    def host_sections(self, ctx: HostContext):
        return kubernetes.node_host_sections(ctx)

    def ports(self, ctx: HostContext) -> Iterable[Port]:
        return kubernetes.node_ports(ctx)

    def flows(self, ctx: HostContext) -> Iterable[Flow]:
        return kubernetes.node_flows(ctx)

    def sources(self, ctx: HostContext):
        return kubernetes.node_sources(ctx)

    def check(self, ctx: HostContext) -> Iterable[Problem]:
        if not ctx.host.is_control_plane:
            yield from kubernetes.node_problems(ctx)
        if ctx.host.is_control_plane:
            yield ctx.error("roles", "ControlPlane already makes this host a Kubernetes node; drop Worker()")

    def expectations(self, ctx: HostContext) -> Iterable[checks.Check]:
        if ctx.host.is_control_plane:
            return
        yield from kubernetes.node_expectations(ctx, "cluster")
        why = "Worker role: runs once the node joined the cluster (nixos-kubernetes-node-join)"
        for unit in kubernetes.NODE_UNITS:
            yield checks.service(f"{unit}.service", "cluster", why)
        if ctx.cluster.easy_certs:
            yield checks.service("certmgr.service", "cluster", "easyCerts: certificates fetched from the control plane")
        yield checks.listening("tcp", kubernetes.KUBELET_PORT, "cluster", "kubelet")
