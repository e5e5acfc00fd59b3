"""The generated iptables ``extraCommands``, run by real iptables inside NixOS's chain skeleton.

For every host of the seed lab (and of a variant with other ranges, admins on a network of their
own, a node exporter and a port a host opens itself), the proof
(:func:`homelab.proofs.firewall.prove_iptables`, which ``homelab test`` runs too) reads back
through nix the options homelab generated, builds in a fresh network namespace the rules NixOS's
``firewall-start`` script builds around them, IPv4 and IPv6 (docs/firewall-skeleton.md lists each
fact and where it comes from), runs the whole thing as one ``bash -e`` script the way NixOS does,
and then sends real TCP and UDP from every kind of client the flow table distinguishes (a LAN
client, each node, pods on their interfaces, tailnet devices, the internet, IPv6 clients and
spoofed sources). Each probe's expected verdict comes from the flow table's rows and the proof's
own reading of who counts as which source, not from the rules; then the host's expectations
(``homelab expect``) must be listed by the real iptables and ip6tables.

Both back ends are run: ``iptables-nft`` (what ``pkgs.iptables`` is in current nixpkgs) and
``iptables-legacy``, each with its ip6tables twin. Needs root, ``ip netns`` and working iptables;
otherwise skipped with the reason.
"""

from __future__ import annotations

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
    return {"seed": read_back(seed_root, nix), "wide": read_back_lab("iptables-wide", labkit.wide_lab(), nix)}


def _rules(rb, hostname):
    return [c.to_json() for c in lab_expectations(rb.lab, [hostname])[hostname].checks if c.kind == "firewall_rule"]


CASES = [("seed", "hanaakari"), ("seed", "tokiwa"), ("seed", "yomogi"), ("wide", "yomogi"), ("wide", "tokiwa")]


@pytest.mark.netns
@pytest.mark.parametrize("which,hostname", CASES, ids=[f"{w}-{h}" for w, h in CASES])
def test_generated_extra_commands_accept_and_refuse_what_the_flow_table_says(nix, seed_root, binary, which,
                                                                           hostname, tmp_path):
    rb = _labs(nix, seed_root)[which]
    opts = rb.options[hostname]
    # homelab opens nothing to everyone and trusts no interface: the flow table is the whole policy
    for option in ("allowedTCPPorts", "allowedUDPPorts", "trustedInterfaces"):
        assert f"networking.firewall.{option}" not in opts, option
    rules = _rules(rb, hostname)
    assert {r["list"] for r in rules} == {"iptables -w -S nixos-fw", "ip6tables -w -S nixos-fw"}
    summary = prove_iptables(rb.lab, rb.lab.host(hostname), opts, binary, tmp_path, rules)
    assert summary.endswith(f"; {len(rules)} expected rules listed") and len(rules) >= 6


@pytest.mark.netns
def test_a_firewall_that_differs_from_the_flow_table_fails_the_proof(nix, seed_root, tmp_path):
    """Break the generated rules on purpose: the proof must say so (a rule dropped, a rule too wide)."""
    if iptables_unavailable("iptables-nft"):
        pytest.skip(iptables_unavailable("iptables-nft"))
    rb = read_back(seed_root, nix)
    host = rb.lab.host("tokiwa")
    opts = dict(rb.options["tokiwa"])
    text = opts["networking.firewall.extraCommands"]
    ssh_lan = f"iptables -w -A nixos-fw -s {rb.lab.cluster.lan} -i enp1s0 -p tcp -m tcp --dport 22 -j nixos-fw-accept\n"
    assert ssh_lan in text
    opts["networking.firewall.extraCommands"] = text.replace(ssh_lan, "")
    with pytest.raises(ProofFailed, match=r"LAN client: tcp \S+ -> \S+:22 via enp1s0: expect accept"):
        prove_iptables(rb.lab, host, opts, "iptables-nft", tmp_path)
    # the same rule without its source range: now the internet reaches SSH
    opts["networking.firewall.extraCommands"] = text.replace(ssh_lan, ssh_lan.replace(
        f"-s {rb.lab.cluster.lan} ", ""))
    with pytest.raises(ProofFailed, match=r"outside \(internet via the router\): tcp 203.0.113.7 -> \S+:22 via "
                                          r"enp1s0: expect refuse"):
        prove_iptables(rb.lab, host, opts, "iptables-nft", tmp_path)


def test_skeleton_script_keeps_extra_commands_verbatim_before_the_final_refuse():
    text = "iptables -A nixos-fw -s 10.1.0.0/16 -j nixos-fw-accept\n# a comment\n"
    script = nixos_firewall_start(text, ["lo"], [80], [])
    body = script.splitlines()
    at = body.index("iptables -A nixos-fw -s 10.1.0.0/16 -j nixos-fw-accept")
    assert body[at + 1] == "# a comment"
    assert body[at + 3:] == ["ip46tables -A nixos-fw -j nixos-fw-log-refuse", "ip46tables -A INPUT -j nixos-fw"]
    assert body.index("ip46tables -A nixos-fw -p tcp --dport 80 -j nixos-fw-accept") < at
    assert body[1] == 'ip46tables() { iptables -w "$@"; ip6tables -w "$@"; }'  # IPv6 is on by default
