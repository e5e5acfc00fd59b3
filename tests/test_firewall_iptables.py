"""The generated iptables ``extraCommands``, run by real iptables inside NixOS's chain skeleton.

For every host of the seed lab (and of a variant with other ranges), the proof
(:func:`homelab.proofs.firewall.prove_iptables`, which ``homelab test`` runs too) reads back
through nix the options homelab generated (``extraCommands``,
``allowedTCPPorts``/``allowedUDPPorts``, ``trustedInterfaces``), builds in a fresh network
namespace the rules NixOS's ``firewall-start`` script builds around them
(docs/firewall-skeleton.md lists each fact and where it comes from), runs the whole thing as one
``bash -e`` script the way NixOS does, and then sends real TCP and UDP from peer namespaces.
Each probe's expected verdict comes from the model (trusted ranges, roles), not from the rules;
then the host's expectations (``homelab expect``) must be listed by the real iptables.

Both iptables back ends are run: ``iptables-nft`` (what ``pkgs.iptables`` is in
current nixpkgs) and ``iptables-legacy`` (``pkgs.iptables-legacy``).
Needs root, ``ip netns`` and working iptables; otherwise skipped with the reason.
"""

from __future__ import annotations

import attrs
import pytest

from homelab.expect import lab_expectations
from homelab.proofs import ProofFailed
from homelab.proofs.firewall import IPTABLES, iptables_unavailable, nixos_firewall_start, prove_iptables
from homelab.proofs.netns import read_back, read_back_lab
from tests import labkit


@pytest.fixture(params=sorted(IPTABLES))
def binary(request):
    name = IPTABLES[request.param]
    why = iptables_unavailable(name)
    if why:
        pytest.skip(f"{name}: {why}")
    return name


def _labs(nix, seed_root):
    return {
        "seed": read_back(seed_root, nix),
        # same hosts, other ranges (and one extra trusted range): the rules follow the model
        "wide": read_back_lab("iptables-wide", labkit.lab(
            lan="192.168.50.0/24", gateway="192.168.50.1", nameservers=["192.168.50.1"],
            pod_cidr="10.244.0.0/16", service_cidr="10.96.0.0/16", extra_trusted=["172.20.0.0/24"],
            hosts=[attrs.evolve(h, address=f"192.168.50.{10 + i}") for i, h in enumerate(labkit.seed_hosts())]),
            nix),
    }


CASES = [("seed", "hanaakari"), ("seed", "tokiwa"), ("seed", "yomogi"), ("wide", "yomogi")]


@pytest.mark.netns
@pytest.mark.parametrize("which,hostname", CASES, ids=[f"{w}-{h}" for w, h in CASES])
def test_generated_extra_commands_accept_and_refuse_what_the_model_says(nix, seed_root, binary, which, hostname,
                                                                        tmp_path):
    rb = _labs(nix, seed_root)[which]
    host = rb.lab.host(hostname)
    rules = [c.to_json() for c in lab_expectations(rb.lab, [hostname])[hostname].checks if c.kind == "firewall_rule"]
    summary = prove_iptables(rb.lab, host, rb.options[hostname], binary, tmp_path, rules)
    assert summary.endswith(f"; {len(rules)} expected rules listed") and len(rules) >= 4


@pytest.mark.netns
def test_a_firewall_that_differs_from_the_model_fails_the_proof(nix, seed_root, tmp_path):
    """Break the generated rules on purpose: the proof must say so (a dropped LAN rule, a wider range)."""
    if iptables_unavailable("iptables-nft"):
        pytest.skip(iptables_unavailable("iptables-nft"))
    rb = read_back(seed_root, nix)
    host = rb.lab.host("tokiwa")
    opts = dict(rb.options["tokiwa"])
    lan_rule = f"iptables -A nixos-fw -s {rb.lab.cluster.lan} -j nixos-fw-accept\n"
    assert lan_rule in opts["networking.firewall.extraCommands"]
    opts["networking.firewall.extraCommands"] = opts["networking.firewall.extraCommands"].replace(lan_rule, "")
    with pytest.raises(ProofFailed, match=r"probes wrong:\n.*expect accept \(inside the LAN"):
        prove_iptables(rb.lab, host, opts, "iptables-nft", tmp_path)
    opts["networking.firewall.extraCommands"] = "iptables -A nixos-fw -s 10.0.0.0/8 -j nixos-fw-accept\n"
    with pytest.raises(ProofFailed, match=r"expect refuse \(outside every trusted range"):
        prove_iptables(rb.lab, host, opts, "iptables-nft", tmp_path)


def test_skeleton_script_keeps_extra_commands_verbatim_before_the_final_refuse():
    text = "iptables -A nixos-fw -s 10.1.0.0/16 -j nixos-fw-accept\n# a comment\n"
    script = nixos_firewall_start(text, ["lo"], [80], [])
    body = script.splitlines()
    at = body.index("iptables -A nixos-fw -s 10.1.0.0/16 -j nixos-fw-accept")
    assert body[at + 1] == "# a comment"
    assert body[at + 3:] == ["ip46tables -A nixos-fw -j nixos-fw-log-refuse", "ip46tables -A INPUT -j nixos-fw"]
    assert body.index("ip46tables -A nixos-fw -p tcp --dport 80 -j nixos-fw-accept") < at
