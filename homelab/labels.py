"""Kubernetes node labels: the ones a host's kubelet registers, from ``Host.labels`` and its roles.

A host's labels are its own (``Host(labels={"role": "application"})``) and those its roles add
(:meth:`homelab.role.Role.node_labels`: ``IngressProxy`` adds ``proxy: "true"``).  Each Kubernetes node's
kubelet registers them with ``--node-labels`` (nixpkgs' ``kubelet.nix`` has no option for node labels;
``services.kubernetes.kubelet.extraOpts`` comes last on its command line), and the cluster layer selects
nodes by them (Traefik's ``nodeSelector``), so a pod lands only where the model put it.

The kubelet applies ``--node-labels`` when it registers its node; it refuses to start with a label in the
``kubernetes.io`` / ``k8s.io`` namespaces other than its own (``kubelet.kubernetes.io``,
``node.kubernetes.io``), so homelab refuses those too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .errors import Problem
from .errors import report
from .fields import field_name, wrong_type
from .values import FrozenDict

__all__ = ["label_problem", "to_labels", "node_labels", "node_labels_flag", "selects"]

# Kubernetes' label syntax (apimachinery validation: IsQualifiedName / IsValidLabelValue)
_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?\Z")
_PREFIX_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
_VALUE = re.compile(r"([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?\Z")
# the namespaces the kubelet keeps for itself, and the ones of them it lets --node-labels use
_RESERVED = ("kubernetes.io", "k8s.io")
_KUBELET_OWN = ("kubelet.kubernetes.io", "node.kubernetes.io")


def _in(domain: str, parent: str) -> bool:
    return domain == parent or domain.endswith("." + parent)


def label_problem(key: Any, value: Any) -> str | None:
    """Why ``key: value`` cannot be a node label the kubelet registers, or None."""
    if not isinstance(key, str):
        return f"the label name {key!r} is a {type(key).__name__}, not a string"
    if not isinstance(value, str):
        return (f"the value of {key!r} is {value!r}, a {type(value).__name__}; label values are strings "
                f"(write \"{str(value).lower() if isinstance(value, bool) else value}\")")
    prefix, _, name = key.rpartition("/")
    if not _NAME.match(name) or (prefix and not (len(prefix) <= 253
                                                 and all(_PREFIX_LABEL.match(p) for p in prefix.split(".")))):
        return (f"{key!r} is not a label name (an optional DNS-name prefix and '/', then 1-63 letters, digits, "
                "'-', '_' or '.', starting and ending with a letter or digit)")
    if not _VALUE.match(value):
        return (f"{value!r} (the value of {key!r}) is not a label value (up to 63 letters, digits, '-', '_' or "
                "'.', starting and ending with a letter or digit)")
    if prefix and any(_in(prefix, r) for r in _RESERVED) and not any(_in(prefix, k) for k in _KUBELET_OWN):
        return (f"{key!r} is in the {prefix!r} namespace, which the kubelet keeps for itself: it refuses to "
                "start with such a --node-labels entry (only kubelet.kubernetes.io/ and node.kubernetes.io/ "
                "are allowed); choose a name without that prefix")
    return None


_NO_LABELS = FrozenDict()


def to_labels(value: Any, self_: Any, field: Any) -> Any:
    """attrs converter: a dict of label name -> value, each checked as the kubelet would."""
    if not isinstance(value, Mapping):
        report(field_name(self_, field), wrong_type(value, "a dict of Kubernetes node labels (e.g. {\"role\": "
                                                           "\"application\"})"))
        return value
    if not value:  # most hosts: no labels of their own
        return _NO_LABELS
    name = field_name(self_, field)
    bad = False
    for k, v in value.items():
        why = label_problem(k, v)
        if why:
            report(f"{name}[{k!r}]", why)
            bad = True
    return value if bad else FrozenDict(sorted(value.items()))


def node_labels(lab, host) -> dict[str, str]:
    """The labels ``host``'s kubelet registers: its own, then its roles' (validation refuses a clash)."""
    from .role import HostContext

    out = dict(host.labels)
    ctx = HostContext(lab, host)
    for role in host.roles:
        out.update(role.node_labels(ctx))
    return dict(sorted(out.items()))


def label_problems(lab, host) -> list[Problem]:
    """A role's label that contradicts the host's own or another role's; labels on a host without a kubelet."""
    from .role import HostContext

    ctx = HostContext(lab, host)
    out: list[Problem] = []
    if host.labels and not host.is_kubernetes_node:
        out.append(ctx.error("labels", "are registered by a kubelet, and this host runs none (give it "
                             "ControlPlane() or Worker(), or drop labels)"))
    owner = {k: ("labels", v) for k, v in host.labels.items()}
    for role in host.roles:
        for k, v in dict(role.node_labels(ctx)).items():
            why = label_problem(k, v)
            if why:
                out.append(role.error(ctx, "node_labels", why))
                continue
            if k in owner and owner[k][1] != v:
                out.append(ctx.error("labels", f"{k}={owner[k][1]} (from {owner[k][0]}) contradicts {k}={v}, "
                                     f"which {type(role).__name__} gives the node"))
            owner.setdefault(k, (type(role).__name__, v))
    return out


def node_labels_flag(labels: Mapping[str, str]) -> str:
    """The kubelet flag: ``--node-labels=proxy=true,role=application`` (names sorted)."""
    return "--node-labels=" + ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Whether a nodeSelector matches a node with ``labels`` (every pair present, equal)."""
    return all(labels.get(k) == v for k, v in selector.items())
