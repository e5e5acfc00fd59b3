"""homelab.validate's rules one by one, asserted exactly: the Problem (where, field, reason, severity) a user
sees for each refusal or warning, and silence where the lab is fine.  Fast: the rules are called on labs built
in memory (no nix, no files)."""

from __future__ import annotations

import attrs
import pytest

from homelab import validate as v
from homelab.errors import LabError, Problem
from homelab.model import PLACEHOLDER_KEY, Host, Lab
from homelab.role import HostContext
from homelab.roles import ControlPlane, Worker
from tests.labkit import cluster, lab as seed_lab

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBa3Nh4mTg0q7mS0xXN1q0r9k2Zb1m0n0p0q0r0s0t0u you@laptop"


def facts(nodes=None, dns_addon=False, **kw) -> v.ClusterFacts:
    kw.setdefault("admin_keys", [KEY])
    return v.ClusterFacts(cluster(**kw), nodes, dns_addon)


def err(field, reason):
    return Problem("cluster", field, reason)


def warn(field, reason):
    return Problem("cluster", field, reason, "warning")


# ---------------------------------------------------------------- the cluster's rules


def test_gateway_must_be_a_usable_lan_address():
    assert list(v.gateway_outside_lan(facts())) == []
    assert list(v.gateway_outside_lan(facts(gateway="192.168.11.1"))) == [
        err("gateway", "192.168.11.1 is outside the LAN 192.168.10.0/24")]
    for edge in ("192.168.10.0", "192.168.10.255"):
        assert list(v.gateway_outside_lan(facts(gateway=edge))) == [
            err("gateway", f"{edge} is the LAN's network or broadcast address")]


def test_overlapping_ranges_names_each_pair():
    assert list(v.overlapping_ranges(facts())) == []
    assert list(v.overlapping_ranges(facts(service_cidr="10.1.0.0/24", lan="100.64.1.0/24", gateway="100.64.1.1"))) == [
        err("pod_cidr", "10.1.0.0/16 overlaps service_cidr 10.1.0.0/24"),
        err("lan", "100.64.1.0/24 overlaps Tailscale's range 100.64.0.0/10"),
    ]
    # the range two places on (pod range against the LAN) is compared too
    assert list(v.overlapping_ranges(facts(pod_cidr="192.168.0.0/16"))) == [
        err("pod_cidr", "192.168.0.0/16 overlaps lan 192.168.10.0/24")]


def test_pod_range_size_against_the_nodes():
    assert list(v.pod_range_of_the_wrong_size(facts(pod_cidr="10.1.0.0/25"))) == [
        err("pod_cidr", "10.1.0.0/25 is smaller than the /24 the controller manager gives each node; use a /16 or so")]
    assert list(v.pod_range_of_the_wrong_size(facts(pod_cidr="10.1.0.0/24", nodes=1))) == []
    assert list(v.pod_range_of_the_wrong_size(facts(pod_cidr="10.1.0.0/24", nodes=2))) == [
        err("pod_cidr", "10.1.0.0/24 has room for 1 node subnet (/24 each) and the lab has 2 Kubernetes nodes")]
    assert list(v.pod_range_of_the_wrong_size(facts(pod_cidr="10.1.0.0/23", nodes=2))) == []
    assert list(v.pod_range_of_the_wrong_size(facts(pod_cidr="10.1.0.0/23", nodes=3))) == [
        err("pod_cidr", "10.1.0.0/23 has room for 2 node subnets (/24 each) and the lab has 3 Kubernetes nodes")]
    assert list(v.pod_range_of_the_wrong_size(facts(pod_cidr="10.1.0.0/21", nodes=8))) == []
    assert list(v.pod_range_of_the_wrong_size(facts(pod_cidr="10.1.0.0/21", nodes=9))) == [
        err("pod_cidr", "10.1.0.0/21 has room for 8 node subnets (/24 each) and the lab has 9 Kubernetes nodes")]
    assert list(v.pod_range_of_the_wrong_size(facts(pod_cidr="10.1.0.0/21"))) == []  # nodes not known
    assert list(v.pod_range_of_the_wrong_size(facts(pod_cidr="10.0.0.0/16", service_cidr="10.2.0.0/24"))) == []
    assert list(v.pod_range_of_the_wrong_size(facts(pod_cidr="10.0.0.0/15", service_cidr="10.2.0.0/24",
                                                    nodes=3))) == [
        warn("pod_cidr", "10.0.0.0/15 is trusted by every host's firewall and is broader than the lab needs (a /16 "
             "has room for 256 nodes)")]


def test_service_range_at_most_a_slash_12():
    assert list(v.service_range_too_large(facts(service_cidr="10.16.0.0/12"))) == []
    assert list(v.service_range_too_large(facts(service_cidr="10.32.0.0/11"))) == [
        err("service_cidr", "10.32.0.0/11 is too large; kube-apiserver accepts /12 or narrower")]


def test_dns_addon_address_must_lie_in_the_service_range():
    assert list(v.dns_addon_address_outside_service_range(facts(dns_addon=True))) == []
    small = facts(dns_addon=True, service_cidr="10.0.0.0/25")
    assert list(v.dns_addon_address_outside_service_range(small)) == [
        err("service_cidr", "the DNS addon's address 10.0.0.254 (nixpkgs takes the range's first three octets and "
            ".254) lies outside 10.0.0.0/25; use a /24 or wider")]
    assert list(v.dns_addon_address_outside_service_range(facts(service_cidr="10.0.0.0/25"))) == []


def test_dns_addon_rule_follows_the_control_planes_dns_addon():
    hosts = [attrs.evolve(h, roles=[ControlPlane()] if h.hostname == "yomogi" else [Worker()])
             for h in seed_lab().hosts]
    lab = Lab(cluster(service_cidr="10.0.0.0/25", admin_keys=[KEY]), hosts)
    addon = err("service_cidr", "the DNS addon's address 10.0.0.254 (nixpkgs takes the range's first three octets "
                "and .254) lies outside 10.0.0.0/25; use a /24 or wider")
    assert addon in v.validate(lab)
    off = Lab(lab.cluster, [attrs.evolve(h, roles=[ControlPlane(dns_addon=False)]) if h.hostname == "yomogi" else h
                            for h in hosts])
    assert addon not in v.validate(off)


def test_no_nameserver():
    assert list(v.no_nameserver(facts())) == []
    assert list(v.no_nameserver(facts(nameservers=[]))) == [
        err("nameservers", "is empty: hosts get static addresses with DHCP off, so they would have no DNS server at "
            "all (no package downloads, no image pulls); list at least one, e.g. the router")]


def test_api_name_on_loopback():
    for name in ("localhost", "api.localhost", "localhost.localdomain"):
        assert list(v.api_name_on_loopback(facts(api_name=name))) == [
            err("api_name", f"{name} resolves to the loopback address on every host, so the workers would talk to "
                "themselves instead of the control plane; name the API like api.kube")]


def test_api_name_not_on_loopback():
    for name in ("api.kube", "mylocalhost", "localhost.kube", "localhost.localdomain.kube"):
        assert list(v.api_name_on_loopback(facts(api_name=name))) == [], name


def test_nameserver_inside_cluster_ranges():
    assert list(v.nameserver_inside_cluster_ranges(facts())) == []
    got = list(v.nameserver_inside_cluster_ranges(facts(nameservers=["192.168.10.1", "10.1.0.5", "10.0.0.10"])))
    assert got == [
        err("nameservers[1]", "10.1.0.5 lies in the pod_cidr 10.1.0.0/16, which hosts cannot use for their own "
            "name lookups"),
        err("nameservers[2]", "10.0.0.10 lies in the service_cidr 10.0.0.0/24, which hosts cannot use for their "
            "own name lookups (a Service address answers only once kube-proxy runs on a node, and never on a host "
            "outside Kubernetes: until then no name resolves, not even to fetch what starts kube-proxy); list the "
            "router or another resolver on the LAN"),
    ]


def test_repeated_nameserver():
    assert list(v.repeated_nameserver(facts(nameservers=["192.168.10.1", "192.168.10.2"]))) == []
    assert list(v.repeated_nameserver(facts(nameservers=["192.168.10.1", "192.168.10.2", "192.168.10.1"]))) == [
        err("nameservers", "lists the same address twice")]


def test_admins_too_wide():
    assert list(v.admins_too_wide(facts(admins=["lan", "tailnet", "host:tokiwa", "192.168.50.0/24"]))) == []
    assert list(v.admins_too_wide(facts(admins=["lan", "world", "8.8.8.0/24", "nodes", "pods"]))) == [
        warn("admins[1]", "\"world\" lets anyone on the internet try SSH and the API server; name your networks "
             "instead"),
        warn("admins[2]", "8.8.8.0/24 is not a private range: hosts on the internet could try SSH and the API "
             "server"),
        err("admins[3]", "nodes cannot be an admin source (say \"lan\", \"tailnet\", \"host:<name>\" or a network)"),
        err("admins[4]", "pods cannot be an admin source (say \"lan\", \"tailnet\", \"host:<name>\" or a network)"),
    ]


def test_no_usable_admin_key():
    assert list(v.no_usable_admin_key(facts())) == []
    assert list(v.no_usable_admin_key(facts(admin_keys=[]))) == [
        warn("admin_keys", "is empty: password logins are off, so nobody can log in over SSH (homelab deploy needs "
             "it); add your public key")]
    assert list(v.no_usable_admin_key(facts(admin_keys=[KEY, PLACEHOLDER_KEY]))) == [
        warn("admin_keys", "holds homelab's placeholder key, which nobody can log in with; put your own public key "
             "there")]


def test_easy_certs_in_production():
    warning = warn("easy_certs", "easyCerts is not meant for a production cluster (nixpkgs says so, and so does the "
                   "seed article)")
    assert list(v.easy_certs_in_production(facts(production=True))) == [warning]
    assert list(v.easy_certs_in_production(facts(production=True, easy_certs=False))) == []
    assert list(v.easy_certs_in_production(facts())) == []


def test_validate_cluster_reports_every_rule_in_order():
    c = cluster(gateway="192.168.10.0", pod_cidr="10.1.0.0/23", nameservers=[], admin_keys=[], production=True)
    assert v.validate_cluster(c, nodes=3) == [
        err("gateway", "192.168.10.0 is the LAN's network or broadcast address"),
        err("pod_cidr", "10.1.0.0/23 has room for 2 node subnets (/24 each) and the lab has 3 Kubernetes nodes"),
        err("nameservers", "is empty: hosts get static addresses with DHCP off, so they would have no DNS server at "
            "all (no package downloads, no image pulls); list at least one, e.g. the router"),
        warn("admin_keys", "is empty: password logins are off, so nobody can log in over SSH (homelab deploy needs "
             "it); add your public key"),
        warn("easy_certs", "easyCerts is not meant for a production cluster (nixpkgs says so, and so does the "
             "seed article)"),
    ]
    assert v.validate_cluster(c) == [  # nodes unknown: no node count to judge the pod range by
        err("gateway", "192.168.10.0 is the LAN's network or broadcast address"),
        err("nameservers", "is empty: hosts get static addresses with DHCP off, so they would have no DNS server at "
            "all (no package downloads, no image pulls); list at least one, e.g. the router"),
        warn("admin_keys", "is empty: password logins are off, so nobody can log in over SSH (homelab deploy needs "
             "it); add your public key"),
        warn("easy_certs", "easyCerts is not meant for a production cluster (nixpkgs says so, and so does the "
             "seed article)"),
    ]
    small = cluster(service_cidr="10.0.0.0/25", admin_keys=[KEY])
    addon = err("service_cidr", "the DNS addon's address 10.0.0.254 (nixpkgs takes the range's first three octets "
                "and .254) lies outside 10.0.0.0/25; use a /24 or wider")
    assert v.validate_cluster(small, dns_addon=True) == [addon]
    assert v.validate_cluster(small) == []
