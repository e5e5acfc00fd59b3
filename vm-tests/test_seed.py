"""This repository's own live checks of its lab, the seed article's: run beside the suite homelab ships.

``homelab vm``, ``homelab verify``/``deploy`` and the flake's VM tests pick up a lab's top-level
``vm-tests/`` (``test_*.py`` files, no conftest of their own) and run it with homelab's suite, so these
tests get its fixtures: testinfra's ``host`` and homelab's ``lab_host`` (the lab host the target is).
They hold on a lone host too (``homelab vm`` runs each VM alone).  What the model already says of every
lab is the packaged suite's; these are facts of this lab that the article states.
"""

from __future__ import annotations

import pytest

from homelab_vmtests import probes

ZONE = "home.example.com"  # the article's split-DNS zone (hosts/cluster.py domain)
INGRESS_TAILNET = "100.64.0.12"  # hanaakari, the ingress host, on the tailnet


def test_the_hosts_are_the_articles(host, lab_host):
    assert lab_host in ("yomogi", "tokiwa", "hanaakari")
    assert host.run("hostname").stdout.strip() == lab_host


def test_the_split_dns_zone_sends_the_articles_names_to_hanaakari(host, lab_host):
    if lab_host != "yomogi":
        pytest.skip("the article's DNS server is yomogi")
    for name in (f"grafana.{ZONE}", f"argocd.{ZONE}", ZONE):
        reply = probes.parse_dns_output(host.run(probes.dns_command("127.0.0.1", 53, name)).stdout)
        assert INGRESS_TAILNET in reply.answers, f"{name}: {reply.describe()}"


def test_the_raspberry_pi_control_plane_runs_etcd_on_arm64_terms(host, lab_host):
    if lab_host != "yomogi":
        pytest.skip("the article's control plane is yomogi, a Raspberry Pi 4")
    env = host.run(probes.property_command("etcd.service", "Environment")).stdout
    assert "ETCD_UNSUPPORTED_ARCH=arm64" in env, env
