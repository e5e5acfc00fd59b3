"""The cluster layer's unit: a component, which becomes Helm releases (helmfile.yaml + values files).

A component is to the cluster what a role is to a host: a frozen attrs class that subclasses
:class:`Component`; its fields are its settings, its methods say what it means.  homelab writes
``cluster/helmfile.yaml`` and one plain values file per release (``cluster/values/<release>.yaml``)
from what the lab's components return, so the cluster layer and the hosts come from one model.

=====================  =====================================================
method / attribute     what it gives
=====================  =====================================================
``label``              its name in tables and diagrams
``releases(lab)``      its Helm releases (:class:`Release`), in install order
``secrets(lab)``       the Kubernetes Secrets its releases read (:class:`KubeSecret`), filled at deploy
                       time from the lab's encrypted secrets; their values never reach a values file
``check(lab)``         its problems in this lab (:class:`~homelab.errors.Problem`)
``proofs``             what real programs check on its rendered objects (homelab.cluster_proof)
=====================  =====================================================

A lab lists its components in ``Cluster(components=[...])``.  A component class may also say when a lab
gets it without listing it (:meth:`Component.implied`): an ``IngressProxy`` host brings ``Traefik()``, a
``CephStorage`` host with disks brings ``RookCeph()`` (:func:`components`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Mapping

import attrs

from .errors import Problem
from .role import GraphPart

if TYPE_CHECKING:
    from .model import Lab, Secret

__all__ = ["Component", "Release", "Repository", "KubeSecret", "RELEASE_NAME", "components", "releases",
           "kube_secrets", "problems"]

RELEASE_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,51}[a-z0-9])?\Z")  # helm: a DNS label, at most 53


@attrs.frozen
class Repository:
    """A chart repository, as helmfile's ``repositories:`` lists it."""

    name: str
    url: str


@attrs.frozen
class Release:
    """One Helm release: chart ``<repository>/<chart>`` at ``version`` in ``namespace`` with ``values``.

    ``values`` is plain data (dicts, lists, strings, numbers, :class:`homelab.yamltext.Commented` for a
    comment above a value); it becomes ``cluster/values/<name>.yaml``.  ``needs``: releases (by name) that
    must be installed first (helmfile's ``needs:``, as ``<namespace>/<name>``).
    """

    name: str
    namespace: str
    repository: Repository
    chart: str
    version: str
    values: Mapping[str, Any]
    why: str = ""
    needs: tuple[str, ...] = ()

    @property
    def values_path(self) -> str:
        return f"values/{self.name}.yaml"


@attrs.frozen
class KubeSecret:
    """A Kubernetes Secret a release reads: ``data`` maps each key to the lab secret that fills it."""

    namespace: str
    name: str
    data: Mapping[str, Secret]
    why: str = ""


_KINDS: list[type] = []  # every Component class, in the order they were defined (for implied())


class Component:
    """Base of every cluster component.  Subclass with ``@attrs.frozen``."""

    label: ClassVar[str] = "component"

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        # attrs' slotted classes are made anew from the class statement's: the last one of a name is the class
        _KINDS[:] = [k for k in _KINDS if (k.__module__, k.__qualname__) != (cls.__module__, cls.__qualname__)]
        _KINDS.append(cls)

    @classmethod
    def implied(cls, lab: Lab) -> Component | None:
        """The component a lab gets without listing one of this class (None: only when listed)."""
        return None

    def releases(self, lab: Lab) -> Iterable[Release]:
        return ()

    def secrets(self, lab: Lab) -> Iterable[KubeSecret]:
        return ()

    def check(self, lab: Lab) -> Iterable[Problem]:
        return ()

    def graph(self, lab: Lab) -> GraphPart | None:
        """What the diagram shows of it (boxes in the cluster, arrows from hosts), like a role's."""
        return None

    def error(self, field: str, reason: str) -> Problem:
        """A problem with one of this component's fields: ``cluster: <Component>.<field>: <reason>``."""
        return Problem("cluster", f"{type(self).__name__}.{field}", reason)


def components(lab: Lab) -> tuple[Component, ...]:
    """The lab's components: those ``Cluster.components`` lists, then those its roles imply, one per class
    (a listed one replaces the implied one)."""
    def compute():
        given = tuple(getattr(lab.cluster, "components", ()))
        out = list(given)
        for kind in _KINDS:
            if not any(isinstance(c, kind) for c in given):
                c = kind.implied(lab)
                if c is not None:
                    out.append(c)
        return tuple(out)

    return lab.derived("component: components", compute)


def _ordered(rels: list[Release]) -> list[Release]:
    """Releases in install order: each after the releases it needs (else in the components' order)."""
    done: list[Release] = []
    names = {f"{r.namespace}/{r.name}" for r in rels}
    pending = list(rels)
    while pending:
        have = {f"{d.namespace}/{d.name}" for d in done}
        nxt = next((r for r in pending if all(n in have or n not in names for n in r.needs)), None)
        if nxt is None:  # a cycle: keep the given order
            return done + pending
        done.append(nxt)
        pending.remove(nxt)
    return done


def releases(lab: Lab) -> tuple[Release, ...]:
    """Every release of the lab's components, in install order."""
    return lab.derived("component: releases", lambda: tuple(_ordered(
        [r for c in components(lab) for r in c.releases(lab)])))


def kube_secrets(lab: Lab) -> tuple[KubeSecret, ...]:
    """The Kubernetes Secrets the releases read, filled at deploy time from the lab's secrets."""
    return tuple(s for c in components(lab) for s in c.secrets(lab))


def problems(lab: Lab) -> list[Problem]:
    """The components' own problems, and releases that share a name (a values file is named after its release)."""
    out: list[Problem] = []
    seen: dict[str, str] = {}
    for c in components(lab):
        found = list(c.check(lab))
        out += found
        if any(p.severity == "error" for p in found):
            continue
        for r in c.releases(lab):
            if r.name in seen:
                out.append(Problem("cluster", "components", f"two releases are named {r.name!r} ({seen[r.name]} and "
                                   f"{type(c).__name__}); a values file is named after its release"))
            seen.setdefault(r.name, type(c).__name__)
    return out
