"""The registry of homelab's built-in roles and cluster components: which folder of :mod:`homelab.roles`
holds which public class.  Names only, no imports: ``import homelab`` reads it to know what ``from homelab
import ...`` gives without loading a role (a no-op ``homelab build`` answers before the model is loaded,
:mod:`homelab.uptodate`), and :mod:`homelab.roles` imports the classes from it.

A new built-in role is its folder under ``homelab/roles/`` and its line in :data:`ROLES`; the contract,
docs/nixpkgs-facts.md, the policy, validation, ``homelab test`` and ``from homelab import`` take it from here.
"""

from __future__ import annotations

# (folder, class), one line each, in the order the diagram draws their paths and the docs list them
ROLES: tuple[tuple[str, str], ...] = (
    ("control_plane", "ControlPlane"),
    ("worker", "Worker"),
    ("ceph", "CephStorage"),
    ("dns_server", "DnsServer"),
    ("ingress", "IngressProxy"),
    ("tailscale", "Tailscale"),
    ("monitoring", "NodeExporter"),
    ("monitoring", "Monitoring"),
    ("power_schedule", "PowerSchedule"),
)
# the built-in cluster components (the cluster layer, cluster/helmfile.yaml), in install order
COMPONENTS: tuple[tuple[str, str], ...] = (
    ("rook_ceph", "RookCeph"),
    ("traefik", "Traefik"),
)
# other public names a role's folder gives (values its roles take)
EXTRAS: tuple[tuple[str, str], ...] = (
    ("control_plane", "CorednsImage"),
    ("control_plane", "ARM64_COREDNS"),
    ("traefik", "Acme"),
)


def public() -> dict[str, str]:
    """Every public name of the built-in roles' folders -> its folder."""
    return {name: folder for folder, name in ROLES + COMPONENTS + EXTRAS}


__all__ = ["ROLES", "COMPONENTS", "EXTRAS", "public"]
