"""The seed lab's expectations, complete: every check of every kind below, no more and no fewer.

The sets are written here from the facts (the seed article's lab, nixpkgs' kubernetes modules: see
docs/nixpkgs-facts.md), for the seed lab as Python objects (tests/labkit.py, so editing hosts/ changes
nothing here) — not computed by homelab.expect.  A dropped check (the workers' kubelet port, a kernel
module, one proxy path) or an extra one fails.  Firewall rules and reach probes are the flow table's business
and are asserted by the firewall tests against real iptables/nft (and test_expect's probe sets).
"""

from __future__ import annotations

import pytest

from homelab.expect import host_expectations
from tests import labkit

NODE_MODULES = {"br_netfilter", "overlay"}  # kubelet.nix loads them on every Kubernetes node
CEPH_MODULES = {"ceph", "rbd"}  # CephStorage: Rook's CSI driver
WORKER_UNITS = {"kubelet", "kube-proxy", "flannel", "certmgr"}  # run once the node joined (easyCerts: certmgr)
CONTAINERD = ("containerd.service", "LimitNOFILE", "1048576", "equals")  # CephStorage's file limit
ROOT_DIR = ("kubelet.service", "ExecStart", "--root-dir=/var/lib/kubelet", "last")  # CephStorage: the kubelet's last flag
NODEPORTS = ("kube-proxy.service", "ExecStart", "--proxy-mode=iptables --nodeport-addresses=127.0.0.0/8",
             "contains")  # every node: NodePorts on loopback only
SSHD = ("sshd.service", "host")  # every host: admins log in with keys
COREDNS_IMAGE = ("k8s.io", "docker.io/library/coredns:homelab")  # the one tagged image every node seeds
Y, T, H = "192.168.10.10", "192.168.10.11", "192.168.10.12"
CLUSTER_DNS = ("kubernetes.default.svc.cluster.local", "10.0.0.254", 53, "10.0.0.1", None, "cluster", None)  # addons/dns.nix
# split DNS answers each client kind an address it can reach (issue 18 item 1): a node and the DNS host itself are
# LAN clients, so the zone's names answer hanaakari's LAN address, not its Tailscale one
SPLIT_DNS_FROM_NODE = ("probe.home.example.com", "192.168.10.10", 53, H, None, "cluster", None)  # yomogi
# and a tailnet client (another host on the tailnet, asking yomogi's Tailscale address) hanaakari's Tailscale address
SPLIT_DNS_FROM_TAILNET = ("probe.home.example.com", "100.64.0.10", 53, "100.64.0.12", None, "cluster", "tailnet")

EXPECTED = {
    "yomogi": {  # control plane (master + node), CoreDNS split DNS, Ceph, Tailscale; aarch64
        "service": {(u + ".service", "host") for u in (
            "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-addon-manager", "kubelet",
            "kube-proxy", "flannel", "containerd", "cfssl", "certmgr", "coredns", "tailscaled", "firewall", "sshd")},
        "kernel_module": NODE_MODULES | CEPH_MODULES,
        # etcd on loopback (easyCerts); the rest on every address
        "listening": {("tcp", 6443, "host", "any"), ("tcp", 2379, "host", "loopback"), ("tcp", 10250, "host", "any"),
                      ("tcp", 8888, "host", "any"), ("tcp", 53, "host", "any"), ("udp", 53, "host", "any"),
                      ("tcp", 22, "host", "any")},
        "systemd_property": {CONTAINERD, ROOT_DIR, NODEPORTS,
                             ("etcd.service", "Environment", "ETCD_UNSUPPORTED_ARCH=arm64", "contains"),
                             ("kube-apiserver.service", "ExecStart", "--kubelet-preferred-address-types=Hostname",
                              "contains")},
        "hosts_entry": {("api.kube", Y), ("tokiwa", T), ("hanaakari", H)},
        "image": {(*COREDNS_IMAGE, "host")},
        "dns": {CLUSTER_DNS,
                ("home.example.com", "127.0.0.1", 53, H, None, "host", None),
                ("www.home.example.com", "127.0.0.1", 53, H, None, "host", None),
                ("a.b.home.example.com", "127.0.0.1", 53, H, None, "host", None),
                ("home.example.com.homelab-lookalike.invalid", "127.0.0.1", 53, None, H, "host", None)},
        "proxy": set(),
    },
    "tokiwa": {  # worker, Ceph, Tailscale
        "service": {(u + ".service", "cluster") for u in WORKER_UNITS}
        | {("containerd.service", "host"), ("tailscaled.service", "host"), ("firewall.service", "host"), SSHD},
        "kernel_module": NODE_MODULES | CEPH_MODULES,
        "listening": {("tcp", 10250, "cluster", "any"), ("tcp", 22, "host", "any")},
        "systemd_property": {CONTAINERD, ROOT_DIR, NODEPORTS},
        "hosts_entry": {("api.kube", Y), ("yomogi", Y), ("hanaakari", H)},
        "image": {(*COREDNS_IMAGE, "cluster")},  # seeded once the node joined
        "dns": {CLUSTER_DNS, SPLIT_DNS_FROM_NODE, SPLIT_DNS_FROM_TAILNET},
        "proxy": set(),
    },
    "hanaakari": {  # worker, Ceph, nginx stream ingress, Tailscale
        "service": {(u + ".service", "cluster") for u in WORKER_UNITS}
        | {("containerd.service", "host"), ("tailscaled.service", "host"), ("firewall.service", "host"),
           ("nginx.service", "host"), SSHD},
        "kernel_module": NODE_MODULES | CEPH_MODULES,
        "listening": {("tcp", 10250, "cluster", "any"), ("tcp", 80, "host", "any"), ("tcp", 443, "host", "any"),
                      ("tcp", 22, "host", "any")},
        "systemd_property": {CONTAINERD, ROOT_DIR, NODEPORTS,
                             ("kubelet.service", "ExecStart", "--node-labels=proxy=true", "contains")},
        "hosts_entry": {("api.kube", Y), ("yomogi", Y), ("tokiwa", T)},
        "image": {(*COREDNS_IMAGE, "cluster")},
        "dns": {CLUSTER_DNS, SPLIT_DNS_FROM_NODE, SPLIT_DNS_FROM_TAILNET},
        # (listen, NodePort): 80 -> 31080 and 443 -> 31443, pairs, never swapped
        "proxy": {(80, "127.0.0.1:31080", 31080), (443, "127.0.0.1:31443", 31443)},
    },
}


def _key(c):
    s = c.spec
    return {
        "service": lambda: (s["unit"], c.scope),
        "kernel_module": lambda: s["module"],
        "listening": lambda: (s["proto"], s["port"], c.scope, s["bind"]),
        "systemd_property": lambda: (s["unit"], s["property"], s["value"], s["match"]),
        "dns": lambda: (s["name"], s["server"], s["port"], s.get("answer"), s.get("not_answer"), c.scope,
                        s.get("client")),
        "proxy": lambda: (s["listen"], s["upstream"], s["nodeport"]),
        "hosts_entry": lambda: (s["name"], s["address"]),
        "image": lambda: (s["namespace"], s["reference"], c.scope),
    }[c.kind]()


@pytest.mark.parametrize("host", sorted(EXPECTED))
def test_the_seed_hosts_expectations_are_complete(host):
    lab = labkit.lab()
    checks = host_expectations(lab, lab.host(host)).checks
    got: dict[str, set] = {kind: set() for kind in EXPECTED[host]}
    for c in checks:
        if c.kind in got:
            got[c.kind].add(_key(c))
    for kind, want in EXPECTED[host].items():
        assert got[kind] == want, f"{host} {kind}: missing {want - got[kind]}, extra {got[kind] - want}"
    kinds = {c.kind for c in checks}
    # a new kind of check needs its row here; the firewall's rules and probes are the flow table's (firewall tests)
    assert kinds - set(EXPECTED[host]) <= {"firewall_rule", "reach"}, kinds
    ids = [c.id for c in checks]
    assert len(ids) == len(set(ids))
