"""homelab: a typed NixOS + Kubernetes home lab, compiled to NixOS modules and proven by real nix.

    from homelab import Cluster, Host, ControlPlane, Worker
"""

from .errors import LabError, Problem
from .model import (
    ARM64_COREDNS,
    CephStorage,
    Cluster,
    ControlPlane,
    CorednsImage,
    DnsServer,
    Host,
    IngressProxy,
    Lab,
    Pkg,
    PkgCall,
    Priority,
    RaspberryPi4,
    SystemdBoot,
    Tailscale,
    Worker,
    default,
    force,
)

__all__ = [
    "ARM64_COREDNS", "CephStorage", "Cluster", "ControlPlane", "CorednsImage", "DnsServer", "Host",
    "IngressProxy", "Lab", "LabError", "Pkg", "PkgCall", "Priority", "Problem", "RaspberryPi4", "SystemdBoot",
    "Tailscale", "Worker", "default", "force",
]
__version__ = "0.1.0"
