"""The generated nftables ``extraInputRules``, loaded by real ``nft -f`` inside NixOS's table skeleton.

A variant of the seed lab with ``Cluster(firewall="nftables")`` is rendered, read back through
nix, and for each host the proof (:func:`homelab.proofs.firewall.prove_nftables`, which
``homelab test`` runs too) places its ``extraInputRules`` in the ``inet nixos-fw`` table NixOS
builds (input chain -> input-allow chain, extraInputRules last in input-allow; see
docs/firewall-skeleton.md), loads it with ``nft -f`` in a fresh namespace, probes it with real
TCP and UDP from peers just inside and just outside every trusted range, and matches the host's
expectations against ``nft list``.  Needs root, ``ip netns`` and nft; otherwise skipped with
the reason.
"""

from __future__ import annotations

import pytest

from homelab.expect import lab_expectations
from homelab.proofs import ProofFailed
from homelab.proofs.firewall import nft_unavailable, nixos_fw_table, prove_nftables
from homelab.proofs.netns import read_back_lab
from tests import labkit


@pytest.fixture(scope="module")
def nft_ok():
    why = nft_unavailable()
    if why:
        pytest.skip(why)


@pytest.fixture(scope="module")
def nft_lab(nix):
    return read_back_lab("nftables", labkit.lab(firewall="nftables"), nix)


def _rules(rb, hostname):
    return [c.to_json() for c in lab_expectations(rb.lab, [hostname])[hostname].checks if c.kind == "firewall_rule"]


@pytest.mark.netns
@pytest.mark.parametrize("hostname", ["hanaakari", "tokiwa", "yomogi"])
def test_generated_extra_input_rules_accept_and_refuse_what_the_model_says(nix, nft_ok, nft_lab, hostname, tmp_path):
    rules = _rules(nft_lab, hostname)
    summary = prove_nftables(nft_lab.lab, nft_lab.lab.host(hostname), nft_lab.options[hostname], tmp_path, rules)
    assert summary.endswith(f"; {len(rules)} expected rules listed") and len(rules) >= 4


@pytest.mark.netns
def test_a_missing_expected_rule_fails_the_proof(nix, nft_ok, nft_lab, tmp_path):
    """The pod range's rule dropped on purpose: the probes from pods and the listed rules both say so."""
    opts = dict(nft_lab.options["tokiwa"])
    pod_rule = f"ip saddr {nft_lab.lab.cluster.pod_cidr} accept\n"
    assert pod_rule in opts["networking.firewall.extraInputRules"]
    opts["networking.firewall.extraInputRules"] = opts["networking.firewall.extraInputRules"].replace(pod_rule, "")
    with pytest.raises(ProofFailed, match=r"expect accept \(inside the pod CIDR"):
        prove_nftables(nft_lab.lab, nft_lab.lab.host("tokiwa"), opts, tmp_path, _rules(nft_lab, "tokiwa"))


def test_table_keeps_extra_input_rules_last_in_input_allow():
    text = nixos_fw_table("ip saddr 10.1.0.0/16 accept\n", ["lo", "tailscale0"], [80, 443], [])
    allow = text[text.index("chain input-allow {"):]
    assert allow.index("tcp dport { 80, 443 } accept") < allow.index("ip saddr 10.1.0.0/16 accept")
    tail = [ln.strip() for ln in allow.splitlines() if ln.strip()]
    assert tail[-3:] == ["ip saddr 10.1.0.0/16 accept", "}", "}"]
    assert 'iifname { "lo", "tailscale0" } accept' in text
