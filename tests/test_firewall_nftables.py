"""The generated nftables ``extraInputRules``, loaded by real ``nft -f`` inside NixOS's table skeleton.

Variants of the seed lab with ``Cluster(firewall="nftables")`` are rendered, read back through
nix, and for each host the proof (:func:`homelab.proofs.firewall.prove_nftables`, which
``homelab test`` runs too) places its ``extraInputRules`` in the ``inet nixos-fw`` table NixOS
builds (input chain -> input-allow chain, extraInputRules last in input-allow; see
docs/firewall-skeleton.md), loads it with ``nft -f`` in a fresh namespace, probes it with real
TCP and UDP, IPv4 and IPv6, from every kind of client the flow table distinguishes, and matches
the host's expectations against ``nft list``.  Needs root, ``ip netns`` and nft; otherwise
skipped with the reason.
"""

from __future__ import annotations

import pytest

from homelab.expect import lab_expectations
from homelab.proofs import ProofFailed
from homelab.proofs.firewall import nft_unavailable, nixos_fw_table, prove_nftables
from homelab.proofs.netns import read_back_lab
from tests import labkit

LABS = {"seed": lambda: labkit.lab(firewall="nftables"), "wide": lambda: labkit.wide_lab(firewall="nftables")}
CASES = [("seed", "hanaakari"), ("seed", "tokiwa"), ("seed", "yomogi"), ("wide", "tokiwa")]


@pytest.fixture(scope="module")
def nft_ok():
    why = nft_unavailable()
    if why:
        pytest.skip(why)


def _lab(nix, which):
    return read_back_lab(f"nftables-{which}", LABS[which](), nix)


def _rules(rb, hostname):
    return [c.to_json() for c in lab_expectations(rb.lab, [hostname])[hostname].checks if c.kind == "firewall_rule"]


@pytest.mark.netns
@pytest.mark.parametrize("which,hostname", CASES, ids=[f"{w}-{h}" for w, h in CASES])
def test_generated_extra_input_rules_accept_and_refuse_what_the_flow_table_says(nix, nft_ok, which, hostname,
                                                                               tmp_path):
    rb = _lab(nix, which)
    opts = rb.options[hostname]
    assert opts.get("networking.firewall.extraCommands", "") == ""  # firewall-nftables.nix asserts it empty
    for option in ("allowedTCPPorts", "allowedUDPPorts", "trustedInterfaces"):
        assert f"networking.firewall.{option}" not in opts, option
    rules = _rules(rb, hostname)
    summary = prove_nftables(rb.lab, rb.lab.host(hostname), opts, tmp_path, rules)
    assert summary.endswith(f"; {len(rules)} expected rules listed") and len(rules) >= 5


@pytest.mark.netns
def test_a_missing_rule_fails_the_proof(nix, nft_ok, tmp_path):
    """The VXLAN rule from the control plane dropped on purpose: the probe from that node says so."""
    rb = _lab(nix, "seed")
    opts = dict(rb.options["tokiwa"])
    vxlan = 'iifname "enp1s0" ip saddr 192.168.10.10 udp dport 8472 accept\n'
    assert vxlan in opts["networking.firewall.extraInputRules"]
    opts["networking.firewall.extraInputRules"] = opts["networking.firewall.extraInputRules"].replace(vxlan, "")
    with pytest.raises(ProofFailed, match=r"node yomogi: udp 192.168.10.10 -> \S+:8472 via enp1s0: expect accept"):
        prove_nftables(rb.lab, rb.lab.host("tokiwa"), opts, tmp_path, _rules(rb, "tokiwa"))


def test_table_keeps_extra_input_rules_last_in_input_allow():
    text = nixos_fw_table("ip saddr 10.1.0.0/16 accept\n", ["lo", "tailscale0"], [80, 443], [])
    allow = text[text.index("chain input-allow {"):]
    assert allow.index("tcp dport { 80, 443 } accept") < allow.index("ip saddr 10.1.0.0/16 accept")
    tail = [ln.strip() for ln in allow.splitlines() if ln.strip()]
    assert tail[-3:] == ["ip saddr 10.1.0.0/16 accept", "}", "}"]
    assert 'iifname { "lo", "tailscale0" } accept' in text
