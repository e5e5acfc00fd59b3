"""homelab's built-in roles, one folder each, written against the public interface in :mod:`homelab.role`.

A role's folder holds its Python (``__init__.py``), its templates (``*.j2``, filled with
:func:`homelab.configs.role_text`), the proofs ``homelab test`` runs on its generated config with
real programs (``proof.py``, offered as ``Role.proofs``) and its nixpkgs facts (``options``).
Adding a built-in role is its folder plus its line in :data:`homelab.registry.ROLES`.

=================  ==========================================================
folder             role(s)
=================  ==========================================================
control_plane      ControlPlane (+ CorednsImage, ARM64_COREDNS)
worker             Worker
kubernetes         what every Kubernetes node shares (used by the two above)
ceph               CephStorage
dns_server         DnsServer
ingress            IngressProxy
tailscale          Tailscale
monitoring         NodeExporter, Monitoring (the worked example of a role
                   written only through the public interface)
power_schedule     PowerSchedule (power off at night, RTC wake in the morning)
traefik            Traefik, Acme: the cluster layer's ingress controller
                   (a component, homelab.component; Helm values)
rook_ceph          RookCeph: Rook's operator and Ceph cluster (a component)
=================  ==========================================================

A lab brings its own role the same way: a module beside ``hosts/`` (or an
installed package) that defines an attrs class subclassing
:class:`homelab.role.Role`, imported from ``host.py``.
"""

from importlib import import_module

from .. import registry
from ..contract import Contract, of_roles
from .ceph import CephStorage
from .control_plane import ARM64_COREDNS, ControlPlane, CorednsImage
from .dns_server import DnsServer
from .ingress import IngressProxy
from .monitoring import Monitoring, NodeExporter
from .power_schedule import PowerSchedule
from .rook_ceph import RookCeph
from .tailscale import Tailscale
from .traefik import Acme, Traefik
from .worker import Worker

# The registry of built-in roles, (folder, class) one line each (homelab/registry.py: names only, so that
# ``import homelab`` knows them without importing a role). A new built-in role is its folder and its line there;
# the contract, docs/nixpkgs-facts.md, the policy, validation and `homelab test` take it from BUILTIN.
REGISTRY: tuple[tuple[str, str], ...] = registry.ROLES
BUILTIN: tuple[type, ...] = tuple(getattr(import_module(f".{folder}", __name__), name) for folder, name in REGISTRY)
# The built-in cluster components (the cluster layer, cluster/helmfile.yaml), in install order.
BUILTIN_COMPONENTS: tuple[type, ...] = tuple(getattr(import_module(f".{folder}", __name__), name)
                                             for folder, name in registry.COMPONENTS)


def builtin_contract() -> Contract:
    """The contract of every built-in role (what docs/nixpkgs-facts.md tabulates): ``.rows``, ``.by_path``,
    ``.lookup(parts)``."""
    return of_roles(BUILTIN)


__all__ = ["Acme", "RookCeph", "Traefik", "BUILTIN_COMPONENTS", "ARM64_COREDNS", "BUILTIN", "builtin_contract", "CephStorage", "ControlPlane", "CorednsImage", "DnsServer", "IngressProxy",
           "Monitoring", "NodeExporter", "PowerSchedule", "Tailscale", "Worker"]
