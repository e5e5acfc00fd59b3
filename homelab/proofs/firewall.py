"""The generated firewall, run by real iptables or nft inside the skeleton NixOS builds around it.

For one host, from its option values as nix read them back (``extraCommands`` or
``extraInputRules``, and whatever ``allowedTCPPorts``/``allowedUDPPorts``/``trustedInterfaces``
other modules set):

* **iptables**: the rules NixOS's ``firewall-start`` script builds, IPv4 and IPv6 (``ip46tables``),
  with ``extraCommands`` verbatim just before the final refuse, run as one ``bash -e`` script in a
  fresh namespace, with ``iptables``/``ip6tables`` being the nf_tables back end (what
  ``pkgs.iptables`` is in current nixpkgs) or the legacy one;
* **nftables**: the ``inet nixos-fw`` table NixOS loads, ``extraInputRules`` last in
  ``input-allow``, loaded with ``nft -f``.

docs/firewall-skeleton.md lists each skeleton fact and its nixpkgs source.  Then the rig
(:mod:`.netns`) sends real TCP and UDP, IPv4 and IPv6, from every kind of client the flow table
distinguishes; every verdict must be the one the flow table gives.  Then the host's own expectations (``homelab expect``: the rules a running host
must list) are matched against what the real program lists, as the vm-tests suite matches them
on a booted host.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from .. import firewall
from ..model import Host, Lab
from .netns import (
    FirewallRig,
    Namespaces,
    ProofFailed,
    iter_lines,
    netns_unavailable,
    plain,
    temp_bin,
    tool_unavailable,
)

IPTABLES = {"nft": "iptables-nft", "legacy": "iptables-legacy"}  # each with its ip6tables twin


# ---------------------------------------------------------------- the skeletons NixOS builds


def nixos_firewall_start(extra_commands: str, trusted_interfaces: list[str], tcp: list[int], udp: list[int]) -> str:
    """NixOS's firewall-start script with default options (IPv4 and IPv6), ``extraCommands`` verbatim.

    Facts (see docs/firewall-skeleton.md): ``ip46tables`` runs iptables and ip6tables (IPv6 is on by
    default); rejectPackets=false -> refuse is DROP; logging off; checkReversePath=true -> strict
    rpfilter in the mangle table; allowPing=true; ICMPv6 (but redirects) and DHCPv6 accepted;
    extraCommands just before the final jump to nixos-fw-log-refuse.
    """
    ip46 = "ip46tables"
    lines = [
        "# NixOS firewall-start skeleton, built by homelab.proofs.firewall",
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


def _normalise(rule: str) -> list[str]:
    """'iptables -w -A nixos-fw -s X -j Y' and iptables -S output compare as the same token list."""
    return [t for t in rule.split() if t not in ("iptables", "ip6tables", "-w")]


def ip6(binary: str) -> str:
    """The ip6tables twin of an iptables binary (iptables-nft -> ip6tables-nft)."""
    return binary.replace("iptables", "ip6tables", 1)


# ---------------------------------------------------------------- can it run here?


def iptables_unavailable(binary: str) -> str | None:
    """Why ``binary`` (iptables-nft, iptables-legacy) cannot run the proof here, or None."""
    why = netns_unavailable()
    if why:
        return why
    for b in (binary, ip6(binary)):
        why = tool_unavailable(b, "-w", "-t", "mangle", "-N", "hlprobe") or tool_unavailable(
            b, "-w", "-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED", "-j", "ACCEPT")
        if why:
            return why
    return None


def nft_unavailable() -> str | None:
    return netns_unavailable() or tool_unavailable("nft", "add", "table", "inet", "hlprobe")


# ---------------------------------------------------------------- the proofs


def module_ports(lab: Lab) -> tuple[tuple[str, str, str, int], ...]:
    """Ports a nixpkgs module opens because of an option a role writes: (switch, proto, port option, its default),
    as the roles say (``Role.module_ports``)."""
    from ..roles import BUILTIN

    return tuple(dict.fromkeys(m for t in dict.fromkeys((*BUILTIN, *lab.role_types)) for m in t.module_ports))


def _firewall_options(options: dict[str, Any], lab: Lab) -> tuple[list[str], list[int], list[int]]:
    """trustedInterfaces (with lo, which firewall.nix adds), allowedTCPPorts and allowedUDPPorts as NixOS merges them."""
    trusted = ["lo", *plain(options.get("networking.firewall.trustedInterfaces", []))]
    ports = {"tcp": list(plain(options.get("networking.firewall.allowedTCPPorts", []))),
             "udp": list(plain(options.get("networking.firewall.allowedUDPPorts", [])))}
    for switch, proto, port_option, default in module_ports(lab):
        if plain(options.get(switch)) is True:
            ports[proto].append(plain(options.get(port_option, default)))
    return trusted, ports["tcp"], ports["udp"]


def prove_iptables(lab: Lab, host: Host, options: dict[str, Any], binary: str, workdir: Path,
                   expected_rules: list[dict] | None = None, verdicts: dict | None = None) -> str:
    """Run the host's iptables firewall with real ``binary`` and probe it; a summary, or ProofFailed.

    ``verdicts``: filled with each probe's real verdict (Probe -> accepted), for a caller that asserts more."""
    if plain(options.get("networking.firewall.enable")) is not True:
        raise ProofFailed(f"{host.hostname}: networking.firewall.enable is not true")
    if options.get("networking.nftables.enable"):
        raise ProofFailed(f"{host.hostname}: this lab asks for the iptables backend, yet nftables is enabled")
    extra = plain(options.get("networking.firewall.extraCommands", ""))
    trusted, tcp, udp = _firewall_options(options, lab)
    script = Path(workdir) / f"firewall-start-{host.hostname}"
    script.write_text(nixos_firewall_start(extra, trusted, tcp, udp))

    with temp_bin({"iptables": shutil.which(binary), "ip6tables": shutil.which(ip6(binary))}) as bindir, \
            Namespaces(host.hostname) as ns:
        rig = FirewallRig(lab, host, ns).build()
        rig.check_wiring()
        env = {**os.environ, "PATH": f"{bindir}:{os.environ.get('PATH', '/usr/sbin:/usr/bin')}"}
        rig.fw.exec("bash", "-e", str(script), env=env, timeout=30)

        # the generated rules sit exactly where NixOS puts extraCommands: just before the final refuse, IPv4
        # rules in iptables' chain, IPv6 rules in ip6tables'
        listings = {}
        for cmd, tool, listing_cmd in (("iptables", binary, firewall.IPT_LIST), ("ip6tables", ip6(binary),
                                                                                firewall.IP6T_LIST)):
            listing = rig.fw.exec(tool, "-w", "-S", "nixos-fw").stdout
            listings[listing_cmd] = listing
            listed = [r.split() for r in listing.splitlines()]
            generated = [_normalise(r) for r in iter_lines(extra) if r.split()[0] == cmd]
            if listed[-1] != ["-A", "nixos-fw", "-j", "nixos-fw-log-refuse"] or \
                    (generated and listed[-1 - len(generated):-1] != generated):
                raise ProofFailed(f"{host.hostname}: the generated {cmd} rules are not the last ones before the "
                                  f"final refuse:\n{listing}")
        results = rig.check_verdicts()
        if verdicts is not None:
            verdicts.update(results)
        counters = rig.fw.exec(binary, "-w", "-L", "nixos-fw-refuse", "-v", "-n", "-x").stdout.splitlines()
        if int(counters[2].split()[0]) <= 0:
            raise ProofFailed("refused probes must have reached nixos-fw-refuse:\n" + "\n".join(counters))
        rules = _listed_as_expected(host, expected_rules, listings)
    return (f"{len(results)} probes answered as the model says, the invariants hold; {rules} expected rules "
            "listed")


def prove_nftables(lab: Lab, host: Host, options: dict[str, Any], workdir: Path,
                   expected_rules: list[dict] | None = None, verdicts: dict | None = None) -> str:
    """Load the host's nftables firewall with real ``nft -f`` and probe it; a summary, or ProofFailed.

    ``verdicts``: filled with each probe's real verdict (Probe -> accepted), for a caller that asserts more."""
    if plain(options.get("networking.nftables.enable")) is not True:  # selects the nftables backend
        raise ProofFailed(f"{host.hostname}: networking.nftables.enable is not true")
    # firewall-nftables.nix asserts extraCommands == "" with this backend
    if plain(options.get("networking.firewall.extraCommands", "")) != "":
        raise ProofFailed(f"{host.hostname}: extraCommands is set, which the nftables firewall refuses")
    rules = plain(options.get("networking.firewall.extraInputRules", ""))
    trusted, tcp, udp = _firewall_options(options, lab)
    ruleset = Path(workdir) / f"nixos-fw-{host.hostname}.nft"
    ruleset.write_text(nixos_fw_table(rules, trusted, tcp, udp))

    with Namespaces(host.hostname) as ns:
        rig = FirewallRig(lab, host, ns).build()
        rig.check_wiring()
        rig.fw.exec("nft", "-f", str(ruleset), timeout=30)

        # the generated rules are the last rules of input-allow, in order
        listing = rig.fw.exec("nft", "list", "chain", "inet", "nixos-fw", "input-allow").stdout
        listed = [ln.strip() for ln in listing.splitlines()]
        body = listed[listed.index("chain input-allow {") + 1:listed.index("}")]
        generated = list(iter_lines(rules))
        if generated and body[-len(generated):] != generated:
            raise ProofFailed(f"{host.hostname}: the generated rules are not the last of input-allow:\n{listing}")
        results = rig.check_verdicts()
        if verdicts is not None:
            verdicts.update(results)
        probes = len(results)
        listings = {firewall.NFT_LIST: listing,
                    firewall.NFT_LIST_INPUT: rig.fw.exec(*firewall.NFT_LIST_INPUT.split()).stdout}
        expected = _listed_as_expected(host, expected_rules, listings)
    return f"{probes} probes answered as the model says, the invariants hold; {expected} expected rules listed"


def _listed_as_expected(host: Host, expected_rules: list[dict] | None, listings: dict[str, str]) -> int:
    """The host's firewall_rule expectations, matched against what the real program listed."""
    if not expected_rules:
        return 0
    probes = suite_probes()
    missing = []
    for check in expected_rules:
        listing = listings.get(" ".join(check["list"].split()))
        if listing is None:
            raise ProofFailed(f"{host.hostname}: expectation {check['id']} lists with `{check['list']}`, which "
                              "this proof does not run")
        if not probes.firewall_matches(listing, check["rule"], check["match"]):
            missing.append(f"{check['id']} ({check['why']})")
    if missing:
        raise ProofFailed(f"{host.hostname}: the real firewall does not list what `homelab expect` says it must:\n  "
                          + "\n  ".join(missing) + "\nlisted:\n" + "\n".join(listings.values()))
    return len(expected_rules)


_PROBES: list[Any] = []


def suite_probes():
    """The vm-tests suite's probes module (its matchers), loaded from the harness homelab ships."""
    if not _PROBES:
        from ..harness import VM_TESTS

        name = "_homelab_suite_probes"
        spec = importlib.util.spec_from_file_location(name, VM_TESTS / "homelab_vmtests" / "probes.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)
        _PROBES.append(module)
    return _PROBES[0]
