"""Tailscale's address ranges are written once: the model's ``TAILSCALE_RANGE`` (which validation checks a
``tailscale_address`` against) and the Tailscale role's IPv6 range; the tailnet source the role gives the flow
table and the DNS server's view of tailnet clients are both made from them, so they cannot drift apart."""

from __future__ import annotations

import ipaddress

from homelab.model import TAILSCALE_RANGE
from homelab.roles import dns_server, tailscale

from .conftest import REPO

LITERALS = ("100.64.0.0/10", "fd7a:115c:a1e0::/48")


def test_the_tailnet_ranges_are_written_once_in_homelabs_source():
    where = {lit: sorted(p.relative_to(REPO).as_posix() for p in (REPO / "homelab").rglob("*")
                         if p.suffix in (".py", ".j2") and lit in p.read_text())
             for lit in LITERALS}
    assert where == {"100.64.0.0/10": ["homelab/model.py"],
                     "fd7a:115c:a1e0::/48": ["homelab/roles/tailscale/__init__.py"]}


def test_the_dns_servers_tailnet_view_is_the_tailscale_roles_source():
    assert TAILSCALE_RANGE == ipaddress.ip_network("100.64.0.0/10")
    assert (tailscale.TAILNET_V4, tailscale.TAILNET_V6) == ("100.64.0.0/10", "fd7a:115c:a1e0::/48")
    assert dns_server.TAILNET_NETS == (tailscale.TAILNET_V4, tailscale.TAILNET_V6)
