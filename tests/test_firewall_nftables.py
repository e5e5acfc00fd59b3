"""The generated nftables ``extraInputRules``, loaded by real ``nft -f`` inside NixOS's table skeleton.

A variant of the seed lab with ``Cluster(firewall="nftables")`` is rendered,
read back through nix, and for each host its ``extraInputRules`` is placed in
the ``inet nixos-fw`` table NixOS builds (input chain -> input-allow chain,
extraInputRules last in input-allow; see docs/firewall-skeleton.md), loaded with
``nft -f`` in a fresh namespace, and probed with real TCP and UDP from peers
just inside and just outside every trusted range.  Needs root, ``ip netns`` and
nft; otherwise skipped with the reason.
"""

from __future__ import annotations

import pytest

from tests import labkit
from tests.netns import (
    FirewallRig,
    Namespaces,
    iter_lines,
    netns_unavailable,
    plain,
    read_back_lab,
    tool_unavailable,
)


def _indent(text: str, by: str) -> str:
    return "".join(f"{by}{ln}\n" if ln.strip() else "\n" for ln in text.splitlines())


def nixos_fw_table(extra_input_rules: str, trusted_interfaces: list[str], tcp: list[int], udp: list[int]) -> str:
    """The ruleset NixOS loads for the nftables firewall with default options (IPv4 and IPv6 rules as written).

    Facts (docs/firewall-skeleton.md): table ``inet nixos-fw`` preceded by an
    empty declaration and a delete (nftables.nix); checkReversePath=true ->
    strict ``rpfilter`` chain; input chain policy drop, trusted interfaces, a ct
    state vmap jumping to ``input-allow`` for new/untracked; rejectPackets=false
    -> nothing after the vmap; allowPing=true; ``extraInputRules`` last in
    input-allow.
    """
    ifaces = ", ".join(f'"{i}"' for i in trusted_interfaces)
    allow = []
    if tcp:
        allow.append(f"tcp dport {{ {', '.join(map(str, tcp))} }} accept")
    if udp:
        allow.append(f"udp dport {{ {', '.join(map(str, udp))} }} accept")
    allow += [
        "meta l4proto . th dport @temp-ports accept",
        'icmp type echo-request accept comment "allow ping"',
        'icmpv6 type != { nd-redirect, 139 } accept comment "ICMPv6 except redirects and node information"',
        'ip6 daddr fe80::/64 udp dport 546 accept comment "DHCPv6 client"',
    ]
    body = f"""set temp-ports {{
  comment "Temporarily opened ports"
  type inet_proto . inet_service
  flags interval
  auto-merge
}}

chain rpfilter {{
  type filter hook prerouting priority mangle + 10; policy drop;
  meta nfproto ipv4 udp sport . udp dport {{ 67 . 68, 68 . 67 }} accept comment "DHCPv4 client/server"
  fib saddr . mark . iif oif exists accept
  jump rpfilter-allow
}}

chain rpfilter-allow {{
}}

chain input {{
  type filter hook input priority filter; policy drop;
  {f'iifname {{ {ifaces} }} accept comment "trusted interfaces"' if ifaces else ""}
  ct state vmap {{
    invalid : drop,
    established : accept,
    related : accept,
    new : jump input-allow,
    untracked : jump input-allow,
  }}
}}

chain input-allow {{
{_indent(chr(10).join(allow), "  ")}
{_indent(extra_input_rules, "  ")}}}
"""
    return f"table inet nixos-fw\ndelete table inet nixos-fw\ntable inet nixos-fw {{\n{_indent(body, '  ')}}}\n"


@pytest.fixture(scope="module")
def nft_ok():
    why = netns_unavailable() or tool_unavailable("nft", "add", "table", "inet", "hlprobe")
    if why:
        pytest.skip(why)


LABS = {"seed": lambda: labkit.lab(firewall="nftables"), "wide": lambda: labkit.wide_lab(firewall="nftables")}
CASES = [("seed", "hanaakari"), ("seed", "tokiwa"), ("seed", "yomogi"), ("wide", "tokiwa")]


@pytest.mark.netns
@pytest.mark.parametrize("which,hostname", CASES, ids=[f"{w}-{h}" for w, h in CASES])
def test_generated_extra_input_rules_accept_and_refuse_what_the_flow_table_says(nix, nft_ok, which, hostname,
                                                                               tmp_path):
    rb = read_back_lab(f"nftables-{which}", LABS[which](), nix)
    host = rb.lab.host(hostname)
    opts = rb.options[hostname]
    assert plain(opts["networking.nftables.enable"]) is True  # selects the nftables backend in firewall.nix
    # firewall-nftables.nix asserts extraCommands == "" with this backend
    assert plain(opts.get("networking.firewall.extraCommands", "")) == ""
    # homelab opens nothing to everyone and trusts no interface: the flow table is the whole policy
    assert "networking.firewall.allowedTCPPorts" not in opts and "networking.firewall.allowedUDPPorts" not in opts
    assert "networking.firewall.trustedInterfaces" not in opts
    rules = plain(opts["networking.firewall.extraInputRules"])
    ruleset = tmp_path / "nixos-fw.nft"
    ruleset.write_text(nixos_fw_table(rules, ["lo"], [], []))

    with Namespaces(hostname) as ns:
        rig = FirewallRig(rb.lab, host, ns).build()
        rig.check_wiring()
        rig.fw.exec("nft", "-f", str(ruleset), timeout=30)

        # the generated rules are the last rules of input-allow, in order, exactly as nft lists them
        listed = [ln.strip() for ln in rig.fw.exec("nft", "list", "chain", "inet", "nixos-fw", "input-allow")
                  .stdout.splitlines()]
        body = listed[listed.index("chain input-allow {") + 1:listed.index("}")]
        generated = list(iter_lines(rules))
        assert body[-len(generated):] == generated, body

        results = rig.check_verdicts()
        assert any(not ok for p, ok in results.items() if ":" in p.src), "no IPv6 probe was refused"


def test_table_keeps_extra_input_rules_last_in_input_allow():
    text = nixos_fw_table("ip saddr 10.1.0.0/16 accept\n", ["lo", "tailscale0"], [80, 443], [])
    allow = text[text.index("chain input-allow {"):]
    assert allow.index("tcp dport { 80, 443 } accept") < allow.index("ip saddr 10.1.0.0/16 accept")
    tail = [ln.strip() for ln in allow.splitlines() if ln.strip()]
    assert tail[-3:] == ["ip saddr 10.1.0.0/16 accept", "}", "}"]
    assert 'iifname { "lo", "tailscale0" } accept' in text
