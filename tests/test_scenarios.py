"""Scenarios with user impact that no other test covered (issue 19), each asserting exact behaviour.

- a host with ``networking.enableIPv6 = false``, however written, gets no ip6tables/ip6 rules (firewall-start
  runs under ``set -e``: an ip6tables line on a host without IPv6 stops the whole firewall);
- ``DnsServer(clients=[..., "world"])`` is refused: an open resolver;
- the API port on CoreDNS's health port (8080) is refused on the host that runs both;
- option names that only end in a secret word are caught by the secrets scanner.
"""

from __future__ import annotations

import attrs
import pytest

from homelab import DnsServer, Lab, Tailscale, Worker, render
from homelab.build import check
from homelab.compile import compile_lab
from homelab.errors import LabError
from homelab.model import default, force
from homelab.secrets import option_problems

from . import labkit


def _ipv6_lab(firewall: str, value) -> Lab:
    lab = labkit.lab()
    lab = Lab(attrs.evolve(lab.cluster, firewall=firewall), lab.hosts)
    opts = {"networking.enableIPv6": value} if value is not None else {}
    if isinstance(value, tuple):  # nested: {"networking": {"enableIPv6": ...}}
        opts = {"networking": {"enableIPv6": value[0]}}
    return labkit.evolve_host(lab, "tokiwa", options=opts)


def _tokiwa_text(lab: Lab) -> str:
    compiled = compile_lab(lab)
    texts = render.render_all(compiled)
    return "".join(texts[rel] for rel in compiled.files_of("tokiwa"))


@pytest.mark.parametrize("firewall,v6_word", [("iptables", "ip6tables "), ("nftables", "ip6 saddr")])
@pytest.mark.parametrize("value", [False, force(False), default(False), (False,)],
                         ids=["plain", "force", "default", "nested"])
def test_a_host_without_ipv6_gets_no_ipv6_rules(firewall, v6_word, value):
    lab = _ipv6_lab(firewall, value)
    check(lab)
    text = _tokiwa_text(lab)
    assert v6_word not in text
    # the same host with IPv6 on has them (tailnet clients come over IPv6 too): the assertion above can fail
    on = _tokiwa_text(_ipv6_lab(firewall, None))
    assert v6_word in on
    # and its IPv4 rules are the same either way
    v4 = [ln for ln in on.splitlines() if "dport" in ln and v6_word not in ln]
    assert v4 == [ln for ln in text.splitlines() if "dport" in ln]


@pytest.mark.parametrize("clients", [["lan", "world"], ["0.0.0.0/0"], ["tailnet", "::/0"]])
def test_an_open_resolver_is_refused(clients):
    with pytest.raises(LabError) as e:
        DnsServer(clients=clients)
    bad = next(i for i, c in enumerate(clients) if c in ("world", "0.0.0.0/0", "::/0"))
    assert [(p.field, p.severity) for p in e.value.problems] == [(f"DnsServer.clients[{bad}]", "error")]
    assert "open resolver" in e.value.problems[0].reason


def test_a_resolver_for_named_networks_is_accepted():
    assert [str(s) for s in DnsServer(clients=["lan", "10.0.0.0/8", "tailnet"]).clients] == [
        "lan", "10.0.0.0/8", "tailnet"]


def test_the_api_port_on_corednss_health_port_is_refused():
    lab = labkit.lab()  # yomogi runs the control plane and DnsServer
    lab = Lab(attrs.evolve(lab.cluster, api_port=8080), lab.hosts)
    with pytest.raises(LabError) as e:
        check(lab)
    assert [(p.where, p.field) for p in e.value.problems] == [("cluster", "api_port")]
    assert "CoreDNS's health endpoint" in e.value.problems[0].reason
    # without DnsServer on the control plane, 8080 is free there
    yomogi = lab.host("yomogi")
    fine = labkit.evolve_host(lab, "yomogi", roles=[r for r in yomogi.roles if not isinstance(r, DnsServer)])
    fine = labkit.evolve_host(fine, "tokiwa", roles=[Worker(), DnsServer(), Tailscale()])
    assert not [p for p in check_quietly(fine) if p.severity == "error"]


def check_quietly(lab: Lab):
    try:
        return check(lab)
    except LabError as e:
        return e.problems


@pytest.mark.parametrize("path,flagged", [
    ("services.grafana.settings.security.admin_password", True),
    ("services.myapp.auth_token", True),
    ("services.myapp.settings.db-secret", True),
    ("services.myapp.smtpPassword", True),
    ("services.myapp.api_key", True),
    ("services.myapp.passwordHint", False),
    ("services.myapp.tokenTtl", False),
    ("services.myapp.admin_passwordFile", False),  # a *File option names a file: the absolute path below
])
def test_option_names_ending_in_a_secret_word_are_caught(path, flagged):
    parts = tuple(path.split("."))
    value = "/run/secrets/x" if path.endswith("File") else "hunter2"
    found = option_problems(parts, value)
    assert bool(found) == flagged, found
    if flagged:
        assert found == [f"{path} would put a secret in clear into the world-readable Nix store; put it in a file "
                         f"outside the store and set {path}File (or the option's *File variant) to its path"]


def test_a_secret_word_in_a_nested_set_is_caught_with_its_path():
    found = option_problems(("services", "grafana", "settings"), {"security": {"admin_password": "hunter2"},
                                                                  "server": {"http_port": 3000}})
    assert found == ["services.grafana.settings.security.admin_password would put a secret in clear into the "
                     "world-readable Nix store; put it in a file outside the store and set "
                     "services.grafana.settings.security.admin_passwordFile (or the option's *File variant) to "
                     "its path"]


@pytest.mark.parametrize("ns", ["10.0.0.254", "10.0.0.10"])  # the DNS addon's Service address; any Service's
def test_a_nameserver_in_the_service_range_is_refused_and_says_why(ns):
    lab = labkit.lab(nameservers=["192.168.10.1", ns])
    with pytest.raises(LabError) as e:
        check(lab)
    assert [(p.where, p.field, p.reason) for p in e.value.problems] == [(
        "cluster", "nameservers[1]", f"{ns} lies in the service_cidr 10.0.0.0/24, which hosts cannot use for their "
        "own name lookups (a Service address answers only once kube-proxy runs on a node, and never on a host "
        "outside Kubernetes: until then no name resolves, not even to fetch what starts kube-proxy); list the "
        "router or another resolver on the LAN")]
