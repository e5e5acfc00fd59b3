"""The generated iptables ``extraCommands``, run by real iptables inside NixOS's chain skeleton.

For every host of the seed lab (and of a variant with other ranges), the test
reads back through nix the options homelab generated (``extraCommands``,
``allowedTCPPorts``/``allowedUDPPorts``, ``trustedInterfaces``), builds in a
fresh network namespace the rules NixOS's ``firewall-start`` script builds
around them (docs/firewall-skeleton.md lists each fact and where it comes
from), runs the whole thing as one ``bash -e`` script the way NixOS does, and
then sends real TCP and UDP from peer namespaces.  Each probe's expected
verdict comes from the model (trusted ranges, roles), not from the rules.

Both iptables back ends are run: ``iptables-nft`` (what ``pkgs.iptables`` is in
current nixpkgs) and ``iptables-legacy`` (``pkgs.iptables-legacy``).
Needs root, ``ip netns`` and working iptables; otherwise skipped with the reason.
"""

from __future__ import annotations

import os
import shutil

import attrs
import pytest

from tests import labkit
from tests.netns import (
    FirewallRig,
    Namespaces,
    iter_lines,
    netns_unavailable,
    plain,
    read_back_lab,
    read_back_seed,
    temp_bin,
    tool_unavailable,
)

BACKENDS = {"nft": ("iptables-nft", "ip6tables-nft"), "legacy": ("iptables-legacy", "ip6tables-legacy")}


def nixos_firewall_start(extra_commands: str, trusted_interfaces: list[str], tcp: list[int], udp: list[int]) -> str:
    """NixOS's firewall-start script with default options (IPv4 and IPv6), ``extraCommands`` verbatim.

    Facts (see docs/firewall-skeleton.md): ``ip46tables`` runs iptables and ip6tables (IPv6 is on by
    default); rejectPackets=false -> refuse is DROP; logging off; checkReversePath=true -> strict
    rpfilter in the mangle table; allowPing=true; ICMPv6 (but redirects) and DHCPv6 accepted;
    extraCommands just before the final jump to nixos-fw-log-refuse.
    """
    ip46 = "ip46tables"
    lines = [
        "# NixOS firewall-start skeleton, built by tests/test_firewall_iptables.py",
        f'{ip46}() {{ iptables -w "$@"; ip6tables -w "$@"; }}',
        f"{ip46} -N nixos-fw-accept",
        f"{ip46} -A nixos-fw-accept -j ACCEPT",
        f"{ip46} -N nixos-fw-refuse",
        f"{ip46} -A nixos-fw-refuse -j DROP",
        f"{ip46} -N nixos-fw-log-refuse",
        f"{ip46} -A nixos-fw-log-refuse -m pkttype ! --pkt-type unicast -j nixos-fw-refuse",
        f"{ip46} -A nixos-fw-log-refuse -j nixos-fw-refuse",
        f"{ip46} -N nixos-fw",
        f"{ip46} -t mangle -N nixos-fw-rpfilter",
        f"{ip46} -t mangle -A nixos-fw-rpfilter -m rpfilter --validmark -j RETURN",
        "iptables -t mangle -A nixos-fw-rpfilter -p udp --sport 67 --dport 68 -j RETURN",
        "iptables -t mangle -A nixos-fw-rpfilter -s 0.0.0.0 -d 255.255.255.255 -p udp --sport 68 --dport 67 -j RETURN",
        f"{ip46} -t mangle -A nixos-fw-rpfilter -j DROP",
        f"{ip46} -t mangle -A PREROUTING -j nixos-fw-rpfilter",
    ]
    lines += [f"{ip46} -A nixos-fw -i {iface} -j nixos-fw-accept" for iface in trusted_interfaces]
    lines += [f"{ip46} -A nixos-fw -i {pat} -p udp --dport 67 -j nixos-fw-accept"
              for pat in ("ve-+", "vz-+", "vt-+", "ns-+")]
    lines.append(f"{ip46} -A nixos-fw -m conntrack --ctstate ESTABLISHED,RELATED -j nixos-fw-accept")
    lines += [f"{ip46} -A nixos-fw -p tcp --dport {p} -j nixos-fw-accept" for p in tcp]
    lines += [f"{ip46} -A nixos-fw -p udp --dport {p} -j nixos-fw-accept" for p in udp]
    lines.append("iptables -w -A nixos-fw -p icmp --icmp-type echo-request -j nixos-fw-accept")
    lines += [
        "ip6tables -w -A nixos-fw -p icmpv6 --icmpv6-type redirect -j DROP",
        "ip6tables -w -A nixos-fw -p icmpv6 --icmpv6-type 139 -j DROP",
        "ip6tables -w -A nixos-fw -p icmpv6 -j nixos-fw-accept",
        "ip6tables -w -A nixos-fw -d fe80::/64 -p udp --dport 546 -j nixos-fw-accept",
    ]
    lines.append("")
    lines.append(extra_commands)  # verbatim, as NixOS interpolates it into the same script
    lines.append(f"{ip46} -A nixos-fw -j nixos-fw-log-refuse")
    lines.append(f"{ip46} -A INPUT -j nixos-fw")
    return "\n".join(lines) + "\n"


def _normalise(rule: str) -> list[str]:
    """'iptables -w -A nixos-fw -s X -j Y' and iptables -S output compare as the same token list."""
    return [t for t in rule.split() if t not in ("iptables", "ip6tables", "-w")]


@pytest.fixture(scope="module")
def netns_ok():
    why = netns_unavailable()
    if why:
        pytest.skip(why)


@pytest.fixture(params=sorted(BACKENDS))
def backend(request, netns_ok):
    binary, binary6 = BACKENDS[request.param]
    for b in (binary, binary6):
        why = tool_unavailable(b, "-w", "-t", "mangle", "-N", "hlprobe") or tool_unavailable(
            b, "-w", "-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED", "-j", "ACCEPT")
        if why:
            pytest.skip(f"{b}: {why}")
    with temp_bin({"iptables": shutil.which(binary), "ip6tables": shutil.which(binary6)}) as d:
        yield (binary, binary6), d


def _labs(nix):
    return {
        "seed": read_back_seed(nix),
        # other ranges, admins on a network of their own, a node exporter scraped by the control plane, and a
        # port a host opens itself: the rules follow the model
        "wide": read_back_lab("iptables-wide", labkit.wide_lab(), nix),
    }


CASES = [("seed", "hanaakari"), ("seed", "tokiwa"), ("seed", "yomogi"), ("wide", "yomogi"), ("wide", "tokiwa")]


@pytest.mark.netns
@pytest.mark.parametrize("which,hostname", CASES, ids=[f"{w}-{h}" for w, h in CASES])
def test_generated_extra_commands_accept_and_refuse_what_the_flow_table_says(nix, backend, which, hostname,
                                                                           tmp_path):
    (binary, binary6), bindir = backend
    rb = _labs(nix)[which]
    host = rb.lab.host(hostname)
    opts = rb.options[hostname]
    assert plain(opts["networking.firewall.enable"]) is True
    assert not opts.get("networking.nftables.enable"), "this lab asks for the iptables backend"
    # homelab opens nothing to everyone and trusts no interface: the flow table is the whole policy
    assert "networking.firewall.allowedTCPPorts" not in opts and "networking.firewall.allowedUDPPorts" not in opts
    assert "networking.firewall.trustedInterfaces" not in opts
    extra = plain(opts["networking.firewall.extraCommands"])
    script = tmp_path / "firewall-start"
    script.write_text(nixos_firewall_start(extra, ["lo"], [], []))  # firewall.nix always trusts lo

    with Namespaces(hostname) as ns:
        rig = FirewallRig(rb.lab, host, ns).build()
        rig.check_wiring()

        env = {**os.environ, "PATH": f"{bindir}:{os.environ.get('PATH', '/usr/sbin:/usr/bin')}"}
        rig.fw.exec("bash", "-e", str(script), env=env, timeout=30)

        # the generated rules sit exactly where NixOS puts extraCommands: just before the final refuse,
        # IPv4 rules in iptables' chain and IPv6 rules in ip6tables'
        for cmd, tool in (("iptables", binary), ("ip6tables", binary6)):
            listed = [r.split() for r in rig.fw.exec(tool, "-w", "-S", "nixos-fw").stdout.splitlines()]
            generated = [_normalise(r) for r in iter_lines(extra) if r.split()[0] == cmd]
            assert generated, f"no {cmd} rule generated"
            assert listed[-1] == ["-A", "nixos-fw", "-j", "nixos-fw-log-refuse"]
            assert listed[-1 - len(generated):-1] == generated, listed

        results = rig.check_verdicts()
        assert any(not ok for p, ok in results.items() if ":" in p.src), "no IPv6 probe was refused"

        counters = rig.fw.exec(binary, "-w", "-L", "nixos-fw-refuse", "-v", "-n", "-x").stdout.splitlines()
        dropped = int(counters[2].split()[0])
        assert dropped > 0, "refused probes must have reached nixos-fw-refuse:\n" + "\n".join(counters)


def test_skeleton_script_keeps_extra_commands_verbatim_before_the_final_refuse():
    text = "iptables -A nixos-fw -s 10.1.0.0/16 -j nixos-fw-accept\n# a comment\n"
    script = nixos_firewall_start(text, ["lo"], [80], [])
    body = script.splitlines()
    at = body.index("iptables -A nixos-fw -s 10.1.0.0/16 -j nixos-fw-accept")
    assert body[at + 1] == "# a comment"
    assert body[at + 3:] == ["ip46tables -A nixos-fw -j nixos-fw-log-refuse", "ip46tables -A INPUT -j nixos-fw"]
    assert body[1] == 'ip46tables() { iptables -w "$@"; ip6tables -w "$@"; }'  # IPv6 is on by default
    assert body.index("ip46tables -A nixos-fw -p tcp --dport 80 -j nixos-fw-accept") < at
