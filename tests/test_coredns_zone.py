"""The DNS host's generated Corefile: does its ``template`` answer exactly the lab's zone?

The proof is :func:`homelab.roles.dns_server.proof.prove_zone` (``homelab test`` runs it too; its module
docstring says how the Corefile is read and which CoreDNS behaviour is reproduced, and why no
real CoreDNS runs).  Here it runs on the seed lab and on a variant with another zone, and the
lexer and the RE2/Python subset check are pinned.
"""

from __future__ import annotations

import re

import attrs
import pytest

from homelab import DnsServer, IngressProxy
from homelab.proofs import ProofFailed
from homelab.roles.dns_server.proof import (answer_for, corefile_tokens, names, prove_zone, python_pattern, resolve,
                                    template_block, template_blocks)
from homelab.proofs.netns import plain, read_back, read_back_lab
from homelab.role import HostContext
from tests import labkit


def _labs(nix, seed_root):
    def variant():
        hosts = [attrs.evolve(h, roles=[DnsServer(ttl=300, forward=["9.9.9.9"]) if isinstance(r, DnsServer) else r
                                        for r in h.roles])
                 for h in labkit.seed_hosts()]
        return labkit.lab(hosts=hosts, domain="lab-1.example.org")

    return {"seed": lambda: read_back(seed_root, nix),
            "other-zone": lambda: read_back_lab("coredns-other", variant(), nix)}


def _zone(rb):
    (dns_host,) = rb.lab.with_role(DnsServer)
    role = dns_host.role(DnsServer)
    corefile = plain(rb.options[dns_host.hostname]["services.coredns.config"])
    return corefile, rb.lab.cluster.domain, role.clients_and_answers(HostContext(rb.lab, dns_host)), role


@pytest.mark.parametrize("which", ["seed", "other-zone"])
def test_template_answers_every_name_in_the_zone_and_nothing_else(nix, seed_root, which):
    rb = _labs(nix, seed_root)[which]()
    corefile, zone, answer, role = _zone(rb)
    (ingress,) = rb.lab.with_role(IngressProxy)
    inside, outside = names(zone)
    assert answer == {"this host": ("127.0.0.1", str(ingress.ip)), "lan": ("192.168.10.7", str(ingress.ip)),
                      "tailnet (IPv4)": ("100.64.0.7", str(ingress.tailscale_address)),
                      "tailnet (IPv6)": ("fd7a:115c:a1e0::7", str(ingress.tailscale_address)),
                      "pods": ("10.1.0.7", str(ingress.ip))}
    assert prove_zone(corefile, zone, answer, role.ttl, list(role.forward)) == (
        f"{len(inside)} names in {zone} answered A {ingress.ip} to this host, lan, pods; A {ingress.tailscale_address} "
        f"to tailnet (IPv4), tailnet (IPv6) (other types: empty NOERROR), {len(outside)} look-alikes not; the rest "
        "forwarded to " + ", ".join(map(str, role.forward)) + "; the world refused")
    block = template_block(corefile)
    assert all(answer_for(q, block) for q in inside) and not any(answer_for(q, block) for q in outside)
    blocks = template_blocks(corefile)
    assert {resolve(q, "AAAA", blocks) for q in inside} == {("empty", "NOERROR")}
    assert {resolve(q, "AAAA", blocks) for q in outside} == {("next", None)}


def test_without_the_second_template_aaaa_questions_go_upstream_and_the_proof_fails(nix, seed_root):
    corefile, zone, answer, role = _zone(_labs(nix, seed_root)["seed"]())
    start = corefile.index("template IN ANY")
    broken = corefile[:start] + corefile[corefile.index("}", start) + 1:]
    assert len(template_blocks(broken)) == len(template_blocks(corefile)) - 1
    with pytest.raises(ProofFailed, match=rf"client \([^)]*\): AAAA {re.escape(zone)}\. gets \('next', None\)"):
        prove_zone(broken, zone, answer, role.ttl, list(role.forward))
    nx = corefile.replace("rcode NOERROR", "rcode NXDOMAIN")
    assert nx != corefile
    with pytest.raises(ProofFailed, match=rf"client \([^)]*\): AAAA {re.escape(zone)}\. gets \('empty', 'NXDOMAIN'\)"):
        prove_zone(nx, zone, answer, role.ttl, list(role.forward))


def test_a_zone_rule_one_label_too_narrow_fails_the_proof(nix, seed_root):
    corefile, zone, answer, role = _zone(_labs(nix, seed_root)["seed"]())
    (pattern,) = template_block(corefile)["match"][0]
    narrow = "^(www\\.)?" + zone.replace(".", "\\.") + "\\.$"  # the apex and www only
    broken = corefile.replace(pattern, narrow)
    assert broken != corefile
    with pytest.raises(ProofFailed,
                       match=rf"client \([^)]*\): a\.b\.c\.{re.escape(zone)}\. is in .* but gets no answer"):
        prove_zone(broken, zone, answer, role.ttl, list(role.forward))
    with pytest.raises(ProofFailed, match="answered"):
        prove_zone(corefile, zone, "10.9.9.9", role.ttl, list(role.forward))


def test_lexer_keeps_backslashes_and_unescapes_only_quotes():
    toks = corefile_tokens('match "^(.+\\.)?a\\.b\\.$" # comment "x"\nanswer "say \\"hi\\"" bare\n')
    assert toks == [("match", 1), ("^(.+\\.)?a\\.b\\.$", 1), ("answer", 2), ('say "hi"', 2), ("bare", 2)]


def test_shared_subset_check_refuses_what_python_and_re2_read_differently():
    assert python_pattern(r"^(.+\.)?a\.b\.$") == r"^(.+\.)?a\.b\.\Z"
    for bad in (r"^a\d$", r"^(?i)a$", r"^a{2}$", r"^[ab]$", r"^a\Z"):
        with pytest.raises(ProofFailed):
            python_pattern(bad)
    # why the trailing $ is translated: Python's $ also matches before a final newline, RE2's does not
    assert re.search(r"^a\.$", "a.\n") and not re.search(python_pattern(r"^a\.$"), "a.\n")
