"""homelab.expect, exactly: the checks a host of a small lab built here gets (services, kernel modules, firewall
rules, what each class of client must and must not reach), which of two checks with one id is kept, the JSON and
the terminal text (issue 19 item 3: the survivors of homelab.expect)."""

from __future__ import annotations

import attrs

from homelab import DnsServer, OpenPort, Tailscale
from homelab.checks import check, kernel_module, service, systemd_property
from homelab.expect import HostExpectations, _Acc, _closed_port, host_expectations, text

from . import labkit

SSH_WHY = "sshd: admins log in with their keys (homelab deploy, kubectl on the host)"
WG_WHY = "WireGuard: tailnet peers reach this host directly from anywhere"
FLANNEL_WHY = "flannel: pod traffic between nodes (VXLAN)"
KUBELET_WHY = "the API server reaches the kubelet (logs, exec, port-forward)"
IPT = "-A nixos-fw {} -j nixos-fw-accept"


def of(e: HostExpectations, kind: str) -> list:
    return [c for c in e.checks if c.kind == kind]


def tokiwa(lab):
    return host_expectations(lab, lab.host("tokiwa"))


# ---------------------------------------------------------------- services and kernel modules


def test_every_host_has_the_firewall_service_of_its_backend_and_says_why():
    def firewall_units(lab):
        return {c.spec["unit"]: (c.scope, c.why) for c in of(tokiwa(lab), "service") if "firewall" in c.why}

    assert firewall_units(labkit.lab()) == {
        "firewall.service": ("host", "networking.firewall.enable (every host)")}
    assert firewall_units(labkit.lab(firewall="nftables")) == {
        "nftables.service": ("host", "networking.firewall.enable with nftables (every host)")}
    assert [c.to_json() for c in of(tokiwa(labkit.lab(firewall="nftables")), "service")
            if c.spec["unit"] == "nftables.service"] == [
        {"id": "service:nftables.service", "kind": "service", "scope": "host", "unit": "nftables.service",
         "why": "networking.firewall.enable with nftables (every host)"}]
    assert {c.spec["unit"] for c in of(tokiwa(labkit.lab()), "service")} == {
        "certmgr.service", "containerd.service", "firewall.service", "flannel.service", "kube-proxy.service",
        "kubelet.service", "sshd.service", "tailscaled.service"}


def test_kernel_modules_of_host_py_are_checks_that_say_where_they_come_from():
    lab = labkit.evolve_host(labkit.lab(), "tokiwa", kernel_modules=["nbd", "ceph"])
    assert [c.to_json() for c in of(tokiwa(lab), "kernel_module")] == [
        {"id": "kernel_module:br_netfilter", "kind": "kernel_module", "scope": "host", "module": "br_netfilter",
         "why": "Kubernetes node (nixpkgs kubelet.nix loads it)"},
        # host.py's modules come first: the same module a role loads keeps host.py's reason
        {"id": "kernel_module:ceph", "kind": "kernel_module", "scope": "host", "module": "ceph",
         "why": "kernel_modules in host.py"},
        {"id": "kernel_module:nbd", "kind": "kernel_module", "scope": "host", "module": "nbd",
         "why": "kernel_modules in host.py"},
        {"id": "kernel_module:overlay", "kind": "kernel_module", "scope": "host", "module": "overlay",
         "why": "Kubernetes node (nixpkgs kubelet.nix loads it)"},
        {"id": "kernel_module:rbd", "kind": "kernel_module", "scope": "host", "module": "rbd",
         "why": "CephStorage role: Rook's CSI driver needs it"}]


# ---------------------------------------------------------------- what other hosts' roles ask of this one


def test_a_host_gets_the_checks_every_other_hosts_roles_ask_of_it():
    # hanaakari, a second DNS server, comes first among the hosts whose roles ask things of other hosts; yomogi's
    # DNS server, after it, still asks hanaakari to resolve the zone through yomogi
    hosts = labkit.seed_hosts()
    hosts[2] = attrs.evolve(hosts[2], roles=[*hosts[2].roles, DnsServer()])
    lab = labkit.lab(hosts)
    dns = {c.id: (c.scope, c.why) for c in of(host_expectations(lab, lab.host("hanaakari")), "dns")
           if c.scope == "cluster"}
    assert dns == {
        "dns:kubernetes.default.svc.cluster.local@10.0.0.254:53": (
            "cluster", "cluster DNS (the CoreDNS addon) answers Services"),
        "dns:probe.home.example.com@100.64.0.10:53": (
            "cluster", "split DNS served by yomogi over the tailnet: hanaakari's Tailscale address"),
        "dns:probe.home.example.com@192.168.10.10:53": (
            "cluster", "split DNS served by yomogi over the LAN: hanaakari's LAN address")}


# ---------------------------------------------------------------- firewall rules


def test_firewall_rules_are_listed_per_family_with_why_and_who_asks():
    rules = {c.id: (c.why, c.spec) for c in of(tokiwa(labkit.lab()), "firewall_rule")}

    def v4(line, why, listing="iptables -w -S nixos-fw"):
        return line, (why, {"match": "line", "rule": line, "backend": "iptables", "list": listing})

    def v6(line, why):
        return f"firewall_rule:ip6 {line}", v4(line, why, "ip6tables -w -S nixos-fw")[1]

    expected = dict([
        v4(IPT.format("-p udp -m udp --dport 41641"), f"{WG_WHY} (Tailscale)"),
        v4(IPT.format("-s 100.64.0.0/10 -i tailscale0 -p tcp -m tcp --dport 22"), f"{SSH_WHY} (homelab)"),
        v4(IPT.format("-s 192.168.10.0/24 -i enp1s0 -p tcp -m tcp --dport 22"), f"{SSH_WHY} (homelab)"),
        v4(IPT.format("-s 192.168.10.10/32 -i enp1s0 -p tcp -m tcp --dport 10250"), f"{KUBELET_WHY} (Worker)"),
        *(v4(IPT.format(f"-s 192.168.10.{n}/32 -i enp1s0 -p udp -m udp --dport 8472"), f"{FLANNEL_WHY} (Worker)")
          for n in (10, 11, 12)),
        v6(IPT.format("-p udp -m udp --dport 41641"), f"{WG_WHY} (Tailscale)"),
        v6(IPT.format("-s fd7a:115c:a1e0::/48 -i tailscale0 -p tcp -m tcp --dport 22"), f"{SSH_WHY} (homelab)"),
    ])
    expected = {(k if k.startswith("firewall_rule:") else f"firewall_rule:{k}"): v for k, v in expected.items()}
    assert rules == expected


def test_nftables_rules_of_both_families_are_one_table_without_an_ip6_prefix():
    assert [c.id for c in of(tokiwa(labkit.lab(firewall="nftables")), "firewall_rule")] == [
        'firewall_rule:iifname "enp1s0" ip saddr 192.168.10.0/24 tcp dport 22 accept',
        'firewall_rule:iifname "enp1s0" ip saddr 192.168.10.10 tcp dport 10250 accept',
        'firewall_rule:iifname "enp1s0" ip saddr 192.168.10.10 udp dport 8472 accept',
        'firewall_rule:iifname "enp1s0" ip saddr 192.168.10.11 udp dport 8472 accept',
        'firewall_rule:iifname "enp1s0" ip saddr 192.168.10.12 udp dport 8472 accept',
        'firewall_rule:iifname "tailscale0" ip saddr 100.64.0.0/10 tcp dport 22 accept',
        'firewall_rule:iifname "tailscale0" ip6 saddr fd7a:115c:a1e0::/48 tcp dport 22 accept',
        "firewall_rule:udp dport 41641 accept"]


def test_a_rule_the_shared_node_file_holds_is_checked_as_that_files_rule():
    # tokiwa opens 8472/udp to yomogi itself too: the same rule as the node file's for yomogi, which its own file
    # leaves out; the check is the node file's, with the node flow's reason
    lab = labkit.evolve_host(labkit.lab(), "tokiwa", open_ports=[
        OpenPort(8472, proto="udp", source="host:yomogi", reason="yomogi's own VXLAN experiment")])
    line = IPT.format("-s 192.168.10.10/32 -i enp1s0 -p udp -m udp --dport 8472")
    assert [c.why for c in of(tokiwa(lab), "firewall_rule") if c.spec["rule"] == line] == [
        f"{FLANNEL_WHY} (Worker)"]


# ---------------------------------------------------------------- what each class of client must reach


def test_each_class_of_client_is_probed_on_every_port_and_one_closed_port_of_both_protocols():
    def row(client, source, stands_for, proto, port, why=None):
        expect = "accept" if why else "refuse"
        why = why or f"nothing in the flow table lets {stands_for} reach {port}/{proto}"
        return {"id": f"reach:{client}->{proto}/{port}", "kind": "reach", "scope": "cluster", "why": why,
                "client": client, "source": source, "address": "192.168.10.11", "proto": proto, "port": port,
                "expect": expect, "stands_for": stands_for, "clients": 1}

    def probes(client, source, stands_for, accepted):
        return [row(client, source, stands_for, proto, port, accepted.get((proto, port)))
                for proto, port in [("tcp", 10250), ("tcp", 22), ("tcp", 8081), ("udp", 41641), ("udp", 8081),
                                    ("udp", 8472)]]

    everyone = {("tcp", 22): SSH_WHY, ("udp", 41641): WG_WHY}
    assert [c.to_json() for c in of(tokiwa(labkit.lab()), "reach")] == [
        *probes("host:hanaakari", "192.168.10.12", "Kubernetes nodes", {**everyone, ("udp", 8472): FLANNEL_WHY}),
        *probes("host:yomogi", "192.168.10.10", "the control plane",
                {**everyone, ("udp", 8472): FLANNEL_WHY, ("tcp", 10250): KUBELET_WHY}),
        *probes("lan-client", "192.168.10.254", "the LAN client", everyone)]


def test_the_closed_port_probed_is_the_first_from_8081_the_host_does_not_open():
    lab = labkit.evolve_host(labkit.lab(), "tokiwa", open_ports=[
        OpenPort(8081, source="lan", reason="a dashboard"), OpenPort(8082, proto="udp", source="lan", reason="x")])
    lan = {(c.spec["proto"], c.spec["port"]): c.spec["expect"] for c in of(tokiwa(lab), "reach")
           if c.spec["client"] == "lan-client"}
    # the ports of the flow table, each with its own protocol, then 8083 (8081 and 8082 are taken) of both
    assert lan == {("tcp", 22): "accept", ("tcp", 10250): "refuse", ("tcp", 8081): "accept", ("udp", 8082): "accept",
                   ("tcp", 8083): "refuse", ("udp", 41641): "accept", ("udp", 8083): "refuse",
                   ("udp", 8472): "refuse"}


def test_a_host_that_opens_every_port_from_8081_to_8999_is_probed_closed_on_9000():
    # a range of game servers: `homelab expect` once stopped with StopIteration here
    lab = labkit.evolve_host(labkit.lab(), "tokiwa", open_ports=[
        OpenPort(p, source="lan", reason="game servers") for p in range(8081, 9000)])
    lan = [c for c in of(tokiwa(lab), "reach") if c.spec["client"] == "lan-client"]
    assert {(c.spec["proto"], c.spec["port"]) for c in lan if c.spec["expect"] == "refuse"} == {
        ("tcp", 10250), ("udp", 8472), ("tcp", 9000), ("udp", 9000)}
    assert len(lan) == 919 + 6


def test_a_host_whose_flow_table_names_every_port_gets_no_probe_outside_it(monkeypatch):
    """No closed port left (a flow table naming all 65,535 ports: too many for a fast test, so ``_closed_port``
    says so here): every class of client is probed on the flow table's ports only, none on a port "None"."""
    from homelab import expect

    def reach(lab):
        return [(c.spec["client"], c.spec["proto"], c.spec["port"], c.spec["expect"]) for c in of(tokiwa(lab), "reach")]

    want = [r for r in reach(labkit.lab()) if r[2] != 8081]
    assert len(want) == 12
    monkeypatch.setattr(expect, "_closed_port", lambda taken: None)
    assert reach(labkit.lab()) == want


def test_the_closed_port_wraps_round_to_the_low_ports_and_is_none_when_every_port_is_named():
    assert _closed_port(set()) == 8081
    assert _closed_port(set(range(8081, 65536))) == 1
    assert _closed_port(set(range(8081, 65536)) | {1, 2}) == 3
    assert _closed_port(set(range(1, 65536))) is None


# ---------------------------------------------------------------- the host's summary and its JSON


def test_a_host_without_a_tailscale_address_has_none_in_its_json():
    hosts = labkit.seed_hosts()
    hosts[1] = attrs.evolve(hosts[1], tailscale_address=None,
                            roles=[r for r in hosts[1].roles if not isinstance(r, Tailscale)])
    e = tokiwa(labkit.lab(hosts))
    assert (e.tailscale_address, e.to_json()["tailscale_address"]) == (None, None)
    assert tokiwa(labkit.lab()).tailscale_address == "100.64.0.11"


def _hand_made() -> HostExpectations:
    return HostExpectations("kiri", "x86_64-linux", "192.168.10.20", None, ("worker", "dns"), ("Worker", "DnsServer"), (
        service("sshd.service", "host", "admins log in"),
        systemd_property("etcd.service", "Environment", "A=b:c", "contains", "arm64"),
        check("reach", "lan-client->tcp/22", "cluster", "ssh from the LAN", port=22)))


def test_host_expectations_json_names_every_field():
    assert _hand_made().to_json() == {
        "schema": 1, "host": "kiri", "system": "x86_64-linux", "address": "192.168.10.20", "tailscale_address": None,
        "roles": ["worker", "dns"], "role_kinds": ["Worker", "DnsServer"], "checks": [
            {"id": "service:sshd.service", "kind": "service", "scope": "host", "why": "admins log in",
             "unit": "sshd.service"},
            {"id": "systemd_property:etcd.service:Environment:A=b:c", "kind": "systemd_property", "scope": "host",
             "why": "arm64", "unit": "etcd.service", "property": "Environment", "value": "A=b:c",
             "match": "contains"},
            {"id": "reach:lan-client->tcp/22", "kind": "reach", "scope": "cluster", "why": "ssh from the LAN",
             "port": 22}]}


def test_text_lists_each_kind_that_has_checks_with_the_whole_thing_checked_and_cluster_tags():
    assert text(_hand_made()) == "\n".join([
        "kiri (x86_64-linux, 192.168.10.20; worker, dns):",
        "  service:",
        "    sshd.service  — admins log in",
        "  systemd property:",
        "    etcd.service:Environment:A=b:c  — arm64",
        "  reach:",
        "    lan-client->tcp/22  [cluster]  — ssh from the LAN"])


# ---------------------------------------------------------------- one id, one check


def test_of_two_checks_with_one_id_the_host_scope_wins_else_the_first_stays():
    def kept(*cs):
        acc = _Acc()
        for c in cs:
            acc.add(c)
        return [(c.scope, c.why) for c in acc.checks.values()]

    host1, host2 = service("x.service", "host", "first"), service("x.service", "host", "second")
    cluster1, cluster2 = service("x.service", "cluster", "first"), service("x.service", "cluster", "second")
    assert kept(host1, host2) == [("host", "first")]
    assert kept(cluster1, cluster2) == [("cluster", "first")]
    assert kept(cluster1, host2) == [("host", "second")]
    assert kept(host1, cluster2) == [("host", "first")]
    assert kept(host1, kernel_module("x", "other")) == [("host", "first"), ("host", "other")]
