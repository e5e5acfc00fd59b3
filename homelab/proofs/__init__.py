"""Proofs by real programs: what homelab generates, run by what will read it.

* :mod:`.netns`: reading a lab back through nix; network namespaces; the firewall rig that
  probes a host's firewall with real TCP and UDP.
* :mod:`.firewall`: the generated iptables or nftables rules inside the skeleton NixOS builds,
  run by real ``iptables`` (nft and legacy) or ``nft``.

A role's own proofs live in its folder and are offered as ``Role.proofs``: the ingress host's
nginx stream config in a real nginx (``homelab/roles/ingress/proof.py``), the DNS host's Corefile
template applied to names in and around the zone (``homelab/roles/dns_server/proof.py``).

``homelab test`` (:mod:`homelab.labtest`) runs them on a lab; homelab's own tests run them on
the seed lab and on variants. A proof that does not hold raises :class:`ProofFailed`; where
this machine cannot run one (no root, no nginx), an ``*_unavailable()`` function says why.
"""

from ..errors import ProofFailed

__all__ = ["ProofFailed"]
