"""The generated files grow with the lab, not with its square.

Each Kubernetes node lets every node in (flannel's VXLAN; the API server and cfssl on the control
plane): one rule per node.  Written into every host's own file that was a rule per pair of nodes.
Those rules are in a file shared by the hosts whose rules from the nodes are the same
(``modules/network/firewall-from-nodes.nix``), so a new host adds a line to that file and its own file,
and rewrites no other host's file.
"""

from __future__ import annotations

import ipaddress

import pytest

from homelab import CephStorage, Cluster, ControlPlane, Host, IngressProxy, Lab, Tailscale, Worker, render
from homelab.compile import compile_lab
from homelab.firewall import NODE_RULES


def grown_lab(n: int, firewall: str) -> Lab:
    """A control plane, an ingress host, then workers, every other one with Ceph: the same mix every 2 hosts."""
    lan = ipaddress.ip_network("10.20.0.0/16")
    cluster = Cluster(name="growth", domain="lab.example.net", lan=str(lan), gateway="10.20.0.1",
                      nameservers=["10.20.0.1"], firewall=firewall)
    hosts = []
    for i in range(n):
        roles: list = [ControlPlane()] if i == 0 else [Worker(), IngressProxy()] if i == 1 else \
            [Worker(), CephStorage()] if i % 2 else [Worker()]
        hosts.append(Host(hostname=f"n{i:03d}", system="x86_64-linux", state_version="26.05", interface="enp1s0",
                          address=str(lan.network_address + 10 + i),
                          tailscale_address=str(ipaddress.ip_address("100.64.0.10") + i),
                          roles=[*roles, Tailscale()]))
    return Lab(cluster, hosts)


def lines(texts: dict[str, str], *, where=lambda rel: True) -> int:
    return sum(text.count("\n") for rel, text in texts.items() if where(rel))


@pytest.mark.parametrize("firewall", ["iptables", "nftables"])
def test_generated_lines_grow_linearly_with_the_lab(firewall):
    texts = {n: render.render_all(compile_lab(grown_lab(n, firewall))) for n in (24, 48, 72)}
    total = {n: lines(t) for n, t in texts.items()}
    # each 24 more hosts add as many lines as the 24 before: no line per pair of hosts
    assert total[72] - total[48] == total[48] - total[24] > 0, total
    # a host's own file is the same whatever the lab's size: adding hosts rewrites none
    small, big = texts[24], texts[72]
    entries = [rel for rel in small if rel.startswith("hosts/n") and rel.endswith("/default.nix")]
    assert len(entries) == 24
    assert {rel: small[rel] for rel in entries} == {rel: big[rel] for rel in entries}


@pytest.mark.parametrize("firewall", ["iptables", "nftables"])
def test_rules_from_the_nodes_are_in_the_shared_files_only(firewall):
    lab = grown_lab(30, firewall)
    compiled = compile_lab(lab)
    texts = render.render_all(compiled)
    node_files = {rel for rel in texts if rel.startswith(NODE_RULES.removesuffix(".nix"))}
    # the workers' rules (VXLAN) and the control plane's (VXLAN, API, cfssl): two files for 30 hosts, the
    # variant most hosts import keeping the plain name
    cp_file = NODE_RULES.replace(".nix", "-2.nix")
    assert node_files == {NODE_RULES, cp_file}
    imported = {h: [m for m in plan.modules if m in node_files] for h, plan in compiled.hosts.items()}
    assert imported["n000"] == [cp_file] and all(imported[h.hostname] == [NODE_RULES] for h in lab.hosts[1:])
    cp = str(lab.host("n000").ip)
    for h in lab.hosts:
        entry = texts[compiled.hosts[h.hostname].entry]
        # a node's address in a host's own file: only the control plane's, for its kubelet rule (10250)
        found = {(str(o.ip), ln.strip()) for o in lab.hosts for ln in entry.splitlines()
                 if f" {o.ip} " in ln + " " or f" {o.ip}/32 " in ln}
        assert {a for a, _ in found} <= {cp} and all("10250" in ln for _, ln in found), h.hostname
    for rel, ports in ((NODE_RULES, (8472,)), (cp_file, (8472, 6443, 8888))):
        rules = [ln.strip() for ln in texts[rel].splitlines() if "dport" in ln and not ln.strip().startswith("#")]
        # one rule per node and port, every node's address (the importing host's own too)
        sources = sorted(ipaddress.ip_address(r.split("saddr " if firewall == "nftables" else "-s ")[1].split()[0]
                                              .removesuffix("/32")) for r in rules)
        assert sources == sorted(h.ip for h in lab.hosts for _ in ports), rel
