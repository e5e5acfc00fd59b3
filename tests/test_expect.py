"""homelab.expect: what must be true on a running host, derived from the model.

Unit tests pin the seed lab's expectations; property tests generate labs and check that every
expectation agrees with the option values homelab.compile generates for the same host (so the
suite in vm-tests/ checks what the generated files actually configure, never a second copy).
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import sys

import attrs
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from homelab import (
    CephStorage,
    Cluster,
    ControlPlane,
    DnsServer,
    Host,
    IngressProxy,
    Lab,
    LabError,
    RaspberryPi4,
    SystemdBoot,
    Tailscale,
    Worker,
)
from homelab import firewall, readback
from homelab.validate import validate
from homelab.compile import compile_lab
from homelab.expect import KINDS, SCOPES, SCHEMA, host_expectations, lab_expectations
from homelab.proofs.firewall import suite_probes
from homelab.roles.dns_server import proof as coredns
from homelab.roles.kubernetes import dns_addon_ip, image_reference
from homelab.roles.tailscale import TAILSCALE_PORT

from . import labkit


def merged_options(lab: Lab) -> dict[str, dict]:
    """Each host's option values as homelab generates them (files merged the way NixOS merges types), by host
    name: the lab compiled once (compile_lab is a pure function of the lab), every host merged once."""
    compiled = compile_lab(lab)
    merged = {}
    for hostname in compiled.hosts:
        files = [(rel, readback.nest(compiled.files[rel].definitions())) for rel in compiled.files_of(hostname)]
        merged[hostname], problems = readback.merge_host(files)
        assert problems == []
    return merged


def of(e, kind):
    return [c for c in e.checks if c.kind == kind]


# ---------------------------------------------------------------- the seed lab


def test_seed_yomogi(seed):
    lab, _ = seed
    e = host_expectations(lab, lab.host("yomogi"))
    assert e.system == "aarch64-linux" and e.address == "192.168.10.10" and e.tailscale_address == "100.64.0.10"
    assert e.role_kinds == ("ControlPlane", "CephStorage", "DnsServer", "Tailscale")
    services = {c.spec["unit"]: c.scope for c in of(e, "service")}
    assert services == {u: "host" for u in [
        "firewall.service", "sshd.service", "containerd.service", "etcd.service", "kube-apiserver.service",
        "kube-controller-manager.service", "kube-scheduler.service", "kube-addon-manager.service",
        "kubelet.service", "kube-proxy.service", "flannel.service", "cfssl.service", "certmgr.service",
        "coredns.service", "tailscaled.service"]}
    assert {c.spec["module"] for c in of(e, "kernel_module")} == {"br_netfilter", "overlay", "ceph", "rbd"}
    assert {(c.spec["proto"], c.spec["port"], c.spec["bind"]) for c in of(e, "listening")} == {
        ("tcp", 22, "any"), ("tcp", 6443, "any"), ("tcp", 2379, "loopback"), ("tcp", 10250, "any"),
        ("tcp", 8888, "any"), ("tcp", 53, "any"), ("udp", 53, "any")}
    props = {(c.spec["unit"], c.spec["property"]): (c.spec["value"], c.spec["match"]) for c in of(e, "systemd_property")}
    assert props == {
        ("etcd.service", "Environment"): ("ETCD_UNSUPPORTED_ARCH=arm64", "contains"),
        ("containerd.service", "LimitNOFILE"): ("1048576", "equals"),
        ("kubelet.service", "ExecStart"): ("--root-dir=/var/lib/kubelet", "last"),
        ("kube-apiserver.service", "ExecStart"): ("--kubelet-preferred-address-types=Hostname", "contains"),
        ("kube-proxy.service", "ExecStart"): ("--proxy-mode=iptables --nodeport-addresses=127.0.0.0/8", "contains"),
    }
    # the firewall rules it must list: exactly the seed's flow table (written out by hand in test_seed_lab)
    from .test_seed_lab import _seed_policy

    rules = {(c.spec["list"], c.spec["rule"]) for c in of(e, "firewall_rule")}
    assert rules == {("iptables -w -S nixos-fw" if r.startswith("iptables ") else "ip6tables -w -S nixos-fw",
                      r.split(" ", 1)[1].removeprefix("-w ")) for r in _seed_policy()["yomogi"]}
    # what a LAN client and the other nodes must and must not reach (probed by the cluster VM test and live)
    reach = {(c.spec["client"], c.spec["proto"], c.spec["port"]): c.spec["expect"] for c in of(e, "reach")}
    accepted = {k for k, v in reach.items() if v == "accept"}
    # one probe per class of client yomogi's firewall tells apart: the LAN client, and the two other nodes (the
    # same rows hold both), played by the first of them by name
    assert accepted == {("lan-client", "tcp", 22), ("lan-client", "tcp", 6443), ("lan-client", "tcp", 53),
                        ("lan-client", "udp", 53), ("lan-client", "udp", 41641)} | {
        ("host:hanaakari", proto, port)
        for proto, port in (("tcp", 22), ("tcp", 6443), ("tcp", 8888), ("udp", 8472), ("tcp", 53), ("udp", 53),
                            ("udp", 41641))}
    assert {(c.spec["client"], c.spec["stands_for"], c.spec["clients"]) for c in of(e, "reach")} == {
        ("lan-client", "the LAN client", 1), ("host:hanaakari", "Kubernetes nodes", 2)}
    assert ("lan-client", "tcp", 8888) in reach and ("lan-client", "udp", 8472) in reach  # refused, and probed
    assert {c.scope for c in of(e, "reach")} == {"cluster"}
    dns = {(c.spec["name"], c.spec["server"], c.spec.get("answer"), c.spec.get("not_answer"), c.scope)
           for c in of(e, "dns")}
    assert dns == {
        ("home.example.com", "127.0.0.1", "192.168.10.12", None, "host"),
        ("www.home.example.com", "127.0.0.1", "192.168.10.12", None, "host"),
        ("a.b.home.example.com", "127.0.0.1", "192.168.10.12", None, "host"),
        ("home.example.com.homelab-lookalike.invalid", "127.0.0.1", None, "192.168.10.12", "host"),
        ("kubernetes.default.svc.cluster.local", "10.0.0.254", "10.0.0.1", None, "cluster"),
    }
    assert of(e, "proxy") == []
    assert [(c.spec["reference"], c.scope) for c in of(e, "image")] == [("docker.io/library/coredns:homelab", "host")]
    assert {(c.spec["name"], c.spec["address"], c.scope) for c in of(e, "hosts_entry")} == {
        ("tokiwa", "192.168.10.11", "host"), ("hanaakari", "192.168.10.12", "host"),
        ("api.kube", "192.168.10.10", "host")}


def test_image_references_are_what_containerd_lists():
    assert image_reference("coredns", "homelab") == "docker.io/library/coredns:homelab"
    assert image_reference("coredns/coredns", "1.10.1") == "docker.io/coredns/coredns:1.10.1"
    assert image_reference("ghcr.io/x/coredns", "1") == "ghcr.io/x/coredns:1"
    assert image_reference("localhost/coredns", "1") == "localhost/coredns:1"
    assert image_reference("registry:5000/coredns", "1") == "registry:5000/coredns:1"


def test_seed_workers_and_ingress(seed):
    lab, _ = seed
    tokiwa = host_expectations(lab, lab.host("tokiwa"))
    scopes = {c.spec["unit"]: c.scope for c in of(tokiwa, "service")}
    assert scopes["containerd.service"] == "host"
    assert {u for u, s in scopes.items() if s == "cluster"} == {
        "kubelet.service", "kube-proxy.service", "flannel.service", "certmgr.service"}
    assert not any(c.spec["unit"] == "etcd.service" for c in of(tokiwa, "systemd_property"))
    # the kubelet seeds the DNS image; a worker's kubelet runs once it joined
    assert [(c.spec["reference"], c.scope) for c in of(tokiwa, "image")] == [
        ("docker.io/library/coredns:homelab", "cluster")]
    # the DNS host answers the zone over the LAN, from every other node, and over the tailnet, from every other
    # host on it, with the address each kind of client reaches the ingress host at (once the lab is up)
    assert sorted((c.spec["server"], c.spec["name"], c.spec["answer"], c.spec.get("client"))
                  for c in of(tokiwa, "dns") if c.scope == "cluster" and c.spec["server"] != "10.0.0.254") == [
        ("100.64.0.10", "probe.home.example.com", "100.64.0.12", "tailnet"),
        ("192.168.10.10", "probe.home.example.com", "192.168.10.12", None)]
    hana = host_expectations(lab, lab.host("hanaakari"))
    assert sorted((c.spec["listen"], c.spec["upstream"], c.scope) for c in of(hana, "proxy")) == [
        (80, "127.0.0.1:31080", "cluster"), (443, "127.0.0.1:31443", "cluster")]
    assert {("tcp", 80), ("tcp", 443)} <= {(c.spec["proto"], c.spec["port"]) for c in of(hana, "listening")}
    assert "nginx.service" in {c.spec["unit"] for c in of(hana, "service")}


def test_dns_addon_ip_follows_nixpkgs_rule():
    assert dns_addon_ip(ipaddress.ip_network("10.0.0.0/24")) == "10.0.0.254"
    assert dns_addon_ip(ipaddress.ip_network("10.96.0.0/12")) == "10.96.0.254"


def test_nftables_expectations_match_what_nft_prints():
    firewall_matches = suite_probes().firewall_matches
    lab = labkit.lab(firewall="nftables")
    e = host_expectations(lab, lab.host("tokiwa"))
    rules = {c.id: c.spec for c in of(e, "firewall_rule")}
    assert all(s["backend"] == "nftables" and s["list"] == "nft list chain inet nixos-fw input-allow" for s in
               rules.values())
    # how `nft list chain inet nixos-fw input-allow` prints tokiwa's chain (tests/test_firewall_nftables.py
    # checks the same against the real nft): its own file's rules, then those of the node-rules file it imports
    # (every node, tokiwa's own address .11 too)
    listing = """table inet nixos-fw {
\tchain input-allow {
\t\tmeta l4proto . th dport @temp-ports accept
\t\ticmp type echo-request accept comment "allow ping"
\t\tiifname "enp1s0" ip saddr 192.168.10.0/24 tcp dport 22 accept
\t\tiifname "tailscale0" ip saddr 100.64.0.0/10 tcp dport 22 accept
\t\tiifname "tailscale0" ip6 saddr fd7a:115c:a1e0::/48 tcp dport 22 accept
\t\tiifname "enp1s0" ip saddr 192.168.10.10 tcp dport 10250 accept
\t\tudp dport 41641 accept
\t\tiifname "enp1s0" ip saddr 192.168.10.10 udp dport 8472 accept
\t\tiifname "enp1s0" ip saddr 192.168.10.11 udp dport 8472 accept
\t\tiifname "enp1s0" ip saddr 192.168.10.12 udp dport 8472 accept
\t}
}"""
    assert len(rules) == 8
    for cid, spec in rules.items():
        assert firewall_matches(listing, spec["rule"], spec["match"]), cid
    # a rule that is not there is not found: a wider source, another interface, another port
    kubelet = next(s for s in rules.values() if "10250" in s["rule"])
    for wrong in ("ip saddr 192.168.10.0/24 tcp dport 10250", 'iifname "tailscale0" ip saddr 192.168.10.10 tcp',
                  "192.168.10.10 tcp dport 10251"):
        original = 'iifname "enp1s0" ip saddr 192.168.10.10 tcp dport 10250'
        changed = listing.replace(original, wrong if wrong.startswith("iif") else f'iifname "enp1s0" {wrong}')
        assert not firewall_matches(changed, kubelet["rule"], kubelet["match"]), wrong


# ---------------------------------------------------------------- agreement with compile (properties)

label = st.from_regex(r"[a-z]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)


@st.composite
def labs(draw) -> Lab:
    lan = ipaddress.ip_network(draw(st.sampled_from(["192.168.10.0/24", "192.168.0.0/16", "172.16.5.0/24"])))
    cluster = Cluster(
        name=draw(label), domain=f"{draw(label)}.{draw(label)}", lan=str(lan),
        gateway=str(lan.network_address + 1), nameservers=[str(lan.network_address + 1)],
        pod_cidr=draw(st.sampled_from(["10.1.0.0/16", "10.244.0.0/16"])),
        service_cidr=draw(st.sampled_from(["10.0.0.0/24", "10.96.0.0/20"])),
        api_port=draw(st.integers(1024, 29999)), easy_certs=draw(st.booleans()),  # below the NodePort range
        firewall=draw(st.sampled_from(["iptables", "nftables"])),
        admins=draw(st.sampled_from([["lan", "tailnet"], ["tailnet"], ["172.31.0.0/16"]])),
    )
    n = draw(st.integers(1, 4))
    names = draw(st.lists(label, min_size=n, max_size=n, unique=True))
    cp_i, ing_i, dns_i = (draw(st.integers(0, n - 1)) for _ in range(3))
    hosts = []
    for i, name in enumerate(names):
        system = draw(st.sampled_from(["x86_64-linux", "aarch64-linux"]))
        # arm64_overrides off is refused on aarch64 (etcd would not start): only x86_64 may turn it off
        roles = [ControlPlane(dns_addon=draw(st.booleans()),
                              arm64_overrides=draw(st.booleans()) if system == "x86_64-linux" else True)
                 if i == cp_i else Worker()]
        if draw(st.booleans()):
            roles.append(CephStorage(containerd_nofile=draw(st.integers(1024, 2**20)),
                                     kubelet_root_dir=draw(st.sampled_from(["/var/lib/kubelet", "/srv/kubelet"]))))
        if i == ing_i:
            roles.append(IngressProxy(http_nodeport=draw(st.integers(30000, 31000)),
                                      https_nodeport=draw(st.integers(31001, 32767)),
                                      http_port=draw(st.sampled_from([80, 8080])),
                                      clients=draw(st.sampled_from([[], ["lan"], ["lan", "tailnet", "world"]]))))
        if i == dns_i:
            roles.append(DnsServer(port=draw(st.sampled_from([53, 5353])),
                                   clients=draw(st.sampled_from([[], ["lan", "pods"], ["tailnet"]]))))
        if draw(st.booleans()) or i == ing_i:  # the split-DNS zone answers with the ingress host's tailnet address
            roles.append(Tailscale(interface=draw(st.sampled_from(["tailscale0", "ts0"]))))
        options = {"services.openssh.enable": True} if draw(st.booleans()) else {}
        hosts.append(Host(
            hostname=name, system=system, state_version="26.05", interface="enp1s0",
            address=str(lan.network_address + 10 + i),
            tailscale_address=f"100.64.0.{10 + i}",
            boot=RaspberryPi4() if system == "aarch64-linux" else SystemdBoot(), roles=roles, options=options,
            kernel_modules=draw(st.lists(st.sampled_from(["wireguard", "dm_crypt"]), unique=True, max_size=2)),
        ))
    lab = Lab(cluster, hosts)
    # only labs homelab accepts: expectations of a lab validation refuses prove nothing (a port the API
    # shares with another service is the rare refusal left)
    assume(not [p for p in validate(lab) if p.severity == "error"])
    return lab


@given(labs())
@settings(deadline=None)
def test_expectations_agree_with_the_generated_options(lab):
    options = merged_options(lab)
    assert sorted(options) == sorted(h.hostname for h in lab.hosts)
    for host in lab.hosts:
        # random labs may break lab-wide rules, which host_expectations(lab, host) refuses unless told
        opts = options[host.hostname]
        e = host_expectations(lab, host, validated=True)
        ids = [c.id for c in e.checks]
        assert len(ids) == len(set(ids))
        assert all(c.kind in KINDS and c.scope in SCOPES for c in e.checks)
        assert json.loads(json.dumps(e.to_json())) == e.to_json() and e.to_json()["schema"] == SCHEMA
        units = {c.spec["unit"] for c in of(e, "service")}
        rules = {c.spec["rule"] for c in of(e, "firewall_rule")}

        # firewall: the rules it must list are exactly the generated ones (comments aside), as the backend lists them
        if lab.cluster.firewall == "iptables":
            generated = {(("iptables -w -S nixos-fw" if ln.startswith("iptables ") else "ip6tables -w -S nixos-fw"),
                          ln.split(" ", 1)[1].removeprefix("-w ")) for ln in opts["networking.firewall.extraCommands"].splitlines()
                         if ln and not ln.startswith("#")}
        else:
            generated = {("nft list chain inet nixos-fw input-allow", ln)
                         for ln in opts["networking.firewall.extraInputRules"].splitlines() if ln and not ln.startswith("#")}
        assert {(c.spec["list"], c.spec["rule"]) for c in of(e, "firewall_rule")} == generated
        assert not any(k in opts for k in ("networking.firewall.allowedTCPPorts", "networking.firewall.allowedUDPPorts",
                                           "networking.firewall.trustedInterfaces"))

        # services follow the generated roles and services
        roles = set(opts.get("services.kubernetes.roles", []))
        assert ("kube-apiserver.service" in units) == ("master" in roles)
        assert ("kubelet.service" in units) == bool(roles)
        assert ("coredns.service" in units) == bool(opts.get("services.coredns.enable"))
        assert ("nginx.service" in units) == bool(opts.get("services.nginx.enable"))
        assert ("tailscaled.service" in units) == bool(opts.get("services.tailscale.enable"))
        assert ("nftables.service" in units) == bool(opts.get("networking.nftables.enable"))
        assert ("firewall.service" in units) == (not opts.get("networking.nftables.enable"))
        assert ("cfssl.service" in units) == ("master" in roles and opts["services.kubernetes.easyCerts"] is True)

        # kernel modules: at least those the files load
        assert set(opts.get("boot.kernelModules", [])) <= {c.spec["module"] for c in of(e, "kernel_module")}

        # systemd properties are the generated values
        props = {(c.spec["unit"], c.spec["property"]): c.spec["value"] for c in of(e, "systemd_property")
                 if not c.spec["value"].startswith("--node-labels=")}
        # the kubelet's labels: exactly the generated --node-labels word, when there is one
        extra = opts.get("services.kubernetes.kubelet.extraOpts", "").split()
        assert [c.spec["value"] for c in of(e, "systemd_property") if c.spec["value"].startswith("--node-labels=")] \
            == [w for w in extra if w.startswith("--node-labels=")]
        limit = opts.get("systemd.services.containerd.serviceConfig", {}).get("LimitNOFILE")
        assert props.get(("containerd.service", "LimitNOFILE")) == limit
        arch = opts.get("systemd.services.etcd.environment", {}).get("ETCD_UNSUPPORTED_ARCH")
        assert props.get(("etcd.service", "Environment")) == (None if arch is None else f"ETCD_UNSUPPORTED_ARCH={arch}")
        root_dir = props.get(("kubelet.service", "ExecStart"))
        assert (root_dir is not None) == ("--root-dir=" in opts.get("services.kubernetes.kubelet.extraOpts", ""))
        if root_dir:
            assert root_dir in opts["services.kubernetes.kubelet.extraOpts"]

        # split DNS: every answer is the one the generated Corefile gives; ports are the Corefile's
        for c in of(e, "dns"):
            assert c.scope == "cluster" or c.spec["server"] == "127.0.0.1"  # a lone host only asks itself
            if c.spec["name"].endswith(".svc.cluster.local"):
                assert c.spec["answer"] == str(lab.cluster.service_cidr.network_address + 1)
                continue
            # who asks: the host itself (loopback), or over the LAN from its LAN address, or over the tailnet
            # (its Tailscale address to the server's): the Corefile answers each what CoreDNS's views give it
            tailnet = c.spec.get("client") == "tailnet"
            assert c.spec.get("client") in (None, "tailnet")
            dns_host = host if c.spec["server"] == "127.0.0.1" else next(
                h for h in lab.with_role(DnsServer) if c.spec["server"] == str(h.tailscale_address if tailnet else h.ip))
            client = "127.0.0.1" if c.spec["server"] == "127.0.0.1" else str(host.tailscale_address if tailnet
                                                                               else host.ip)
            corefile = options[dns_host.hostname]["services.coredns.config"]
            assert f".:{c.spec['port']} {{" in corefile
            block = coredns.serving_block(coredns.server_blocks(corefile), client, c.spec["port"])
            assert block is not None and coredns.acl_allows(block, client)
            kind, record = coredns.resolve(c.spec["name"] + ".", "A", coredns.template_blocks(block["tokens"]))
            got = record.split()[-1] if kind == "answer" else None
            assert got == c.spec["answer"] if "answer" in c.spec else (kind != "answer" and c.spec["not_answer"])
            zone_re = re.search(r'match "([^"]+)"', corefile).group(1)
            assert bool(re.match(zone_re, c.spec["name"] + ".")) == ("answer" in c.spec)

        # names: each hosts_entry is what the host's generated /etc/hosts answers first; every other node is named
        hosts = labkit.etc_hosts(opts, host.hostname)
        entries = {c.spec["name"]: c.spec["address"] for c in of(e, "hosts_entry")}
        assert all(labkit.resolve(hosts, n)[:1] == [a] for n, a in entries.items())
        if host.is_kubernetes_node:
            assert {n.hostname for n in lab.kubernetes_nodes if n is not host} <= set(entries)
        if "master" in roles:  # the API server dials kubelets by exactly the names checked above
            flag = f"--kubelet-preferred-address-types={opts['services.kubernetes.apiserver.preferredAddressTypes']}"
            assert props.get(("kube-apiserver.service", "ExecStart")) == flag == \
                "--kubelet-preferred-address-types=Hostname"

        # the DNS image: each node must hold what the control plane's Deployment names, as the node builds it
        cp_image = options[lab.control_plane.hostname].get("services.kubernetes.addons.dns.corednsImage")
        images = {(c.spec["reference"], c.scope) for c in of(e, "image")}
        if cp_image is None:
            assert images == set()
        else:
            assert opts["services.kubernetes.addons.dns.corednsImage"] == cp_image  # one name:tag everywhere
            ref = image_reference(cp_image["args"]["name"], cp_image["args"]["tag"])
            assert images == {(ref, "host" if "master" in roles else "cluster")}

        # the proxy path is the generated nginx stream config
        for c in of(e, "proxy"):
            stream = opts["services.nginx.streamConfig"]
            assert f"listen {c.spec['listen']};" in stream and f"server {c.spec['upstream']};" in stream


def test_every_check_id_is_stable_and_scoped(seed):
    lab, _ = seed
    a = lab_expectations(lab)
    b = lab_expectations(lab)
    assert {n: e.to_json() for n, e in a.items()} == {n: e.to_json() for n, e in b.items()}
    for e in a.values():
        for c in e.checks:
            assert c.id.startswith(c.kind + ":")


def test_the_etcd_arm64_expectation_follows_the_override():
    """On aarch64 the override is required (validation refuses it off); an x86_64 control plane has no such
    expectation."""
    lab = labkit.lab()
    yomogi = lab.host("yomogi")
    off = attrs.evolve(yomogi, roles=tuple(attrs.evolve(r, arm64_overrides=False) if isinstance(r, ControlPlane)
                                           else r for r in yomogi.roles))
    lab2 = labkit.evolve_host(lab, "yomogi", roles=off.roles)
    with pytest.raises(LabError, match="leave arm64_overrides on"):  # refused as a lab, so only by hand:
        host_expectations(lab2, lab2.host("yomogi"))
    checks = host_expectations(lab2, lab2.host("yomogi"), validated=True).checks
    assert not [c for c in checks if c.spec.get("unit") == "etcd.service" and c.kind == "systemd_property"]
    etcd = [c for c in host_expectations(lab, yomogi).checks if c.spec.get("unit") == "etcd.service"
            and c.kind == "systemd_property"]
    assert [c.spec["value"] for c in etcd] == ["ETCD_UNSUPPORTED_ARCH=arm64"]
    x86 = labkit.evolve_host(lab, "yomogi", system="x86_64-linux", boot=SystemdBoot(), roles=off.roles)
    assert not [p for p in validate(x86) if p.severity == "error"]
    assert not [c for c in host_expectations(x86, x86.host("yomogi")).checks if c.spec.get("unit") == "etcd.service"
                and c.kind == "systemd_property"]


# ---------------------------------------------------------------- the command


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "homelab", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def test_cli_json_is_the_model(seed_root, seed):
    lab, _ = seed
    r = run_cli("expect", "hosts/yomogi", "--json", cwd=seed_root)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == host_expectations(lab, lab.host("yomogi")).to_json()
    r = run_cli("expect", "--json", "--scope", "host", cwd=seed_root)
    data = json.loads(r.stdout)
    assert sorted(data) == ["hanaakari", "tokiwa", "yomogi"]
    assert all(c["scope"] == "host" for e in data.values() for c in e["checks"])


def test_cli_text_and_bad_input(seed_root, lab_copy):
    r = run_cli("expect", "hosts/hanaakari", cwd=seed_root)
    assert r.returncode == 0 and "proxy:" in r.stdout and "80->31080  [cluster]" in r.stdout
    r = run_cli("expect", "hosts/nosuch", cwd=seed_root)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    (lab_copy / "hosts" / "tokiwa" / "host.py").write_text("from homelab import Host\nhost = Host(hostname='tokiwa')\n")
    r = run_cli("expect", "--json", cwd=lab_copy)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "hosts/tokiwa" in r.stderr
