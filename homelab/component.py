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

A lab lists its components in ``Cluster(components=[...])``.  The built-in ones follow the roles
when a lab does not list them: an ``IngressProxy`` host brings ``Traefik()``, a ``CephStorage`` host with
disks brings ``RookCeph()`` (``homelab.helmfile.components``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Mapping

import attrs

from .errors import Problem

if TYPE_CHECKING:
    from .model import Lab, Secret

__all__ = ["Component", "Release", "Repository", "KubeSecret", "RELEASE_NAME"]

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


class Component:
    """Base of every cluster component.  Subclass with ``@attrs.frozen``."""

    label: ClassVar[str] = "component"

    def releases(self, lab: Lab) -> Iterable[Release]:
        return ()

    def secrets(self, lab: Lab) -> Iterable[KubeSecret]:
        return ()

    def check(self, lab: Lab) -> Iterable[Problem]:
        return ()

    def error(self, field: str, reason: str) -> Problem:
        """A problem with one of this component's fields: ``cluster: <Component>.<field>: <reason>``."""
        return Problem("cluster", f"{type(self).__name__}.{field}", reason)
