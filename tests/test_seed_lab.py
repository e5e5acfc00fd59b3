"""The seed article's facts, asserted on the option values real nix reads back from the seed lab's files.

The seed lab is the frozen copy in homelab/examples/seed, built in a scratch folder (conftest's
seed_root); the repository's own lab in hosts/ may differ (a user edits it), and only its
generated files being current is checked here.
"""

from __future__ import annotations

import ipaddress
import re

import pytest

from homelab import files, helmfile, readback, render
from homelab.compile import compile_lab
from homelab.roles import kubernetes

from homelab.proofs.netns import read_back_lab

from . import labkit


@pytest.fixture(scope="module")
def options(seed_root, seed_compiled, nix):
    """host -> option values, as nix reads them from the seed lab's generated files."""
    report = readback.read_back(seed_root, seed_compiled, nix)
    assert report.problems == []
    assert report.nix_calls == 1  # one nix process for every file of every host
    return report.options


def test_committed_files_are_what_the_model_generates(repo, repo_lab):
    """This repository's lab, whatever hosts/ holds: the committed files are the model's."""
    texts = render.render_all(compile_lab(repo_lab[0])) | helmfile.texts(repo_lab[0])
    assert files.stale(repo, texts) == []


def test_every_generated_file_carries_a_hash_that_matches_its_content(seed_compiled):
    for rel, text in render.render_all(seed_compiled).items():
        assert render.stored_hash(text) == render.content_hash(text), rel
        assert not files.edited(text)
        assert files.edited(text.replace("true", "false", 1)) or "true" not in text


def test_roles(options):
    assert options["yomogi"]["services.kubernetes.roles"] == ["master", "node"]
    assert options["tokiwa"]["services.kubernetes.roles"] == ["node"]
    assert options["hanaakari"]["services.kubernetes.roles"] == ["node"]


def test_arm64_control_plane_gets_the_etcd_override(options):
    assert options["yomogi"]["systemd.services.etcd.environment"] == {"ETCD_UNSUPPORTED_ARCH": "arm64"}
    for x86 in ("tokiwa", "hanaakari"):
        assert "systemd.services.etcd.environment" not in options[x86]


def test_every_node_seeds_the_image_the_dns_deployment_names(options, seed):
    """The CoreDNS Deployment (rendered on the control plane, imagePullPolicy Never) names the control plane's
    corednsImage as <name>:<tag>; each node seeds its own.  So every node must build one name:tag, from its
    own pkgs (aarch64 yomogi and the x86_64 workers alike): no store-hash tag, no one-architecture pull."""
    lab = seed[0]
    cp = options[lab.control_plane.hostname]["services.kubernetes.addons.dns.corednsImage"]
    assert cp["function"] == "dockerTools.buildImage"
    named = (cp["args"]["name"], cp["args"]["tag"])
    assert named == ("coredns", "homelab")
    for h in lab.kubernetes_nodes:
        image = options[h.hostname]["services.kubernetes.addons.dns.corednsImage"]
        assert (image["function"], image["args"]["name"], image["args"]["tag"]) == ("dockerTools.buildImage", *named)
        # built from the node's own pkgs.coredns, entry point its binary (as nixpkgs' default image)
        assert image["args"]["copyToRoot"] == {"_type": "pkg-call", "function": "buildEnv", "args": {
            "name": "coredns-root", "paths": [{"_type": "pkg", "attrPath": "coredns"}], "pathsToLink": ["/bin"]}}
        assert image["args"]["config"] == {"Entrypoint": ["/bin/coredns"]}
    assert kubernetes.image_reference(*named) == "docker.io/library/coredns:homelab"


def test_ceph_prerequisites_on_all_three(options):
    for host in ("yomogi", "tokiwa", "hanaakari"):
        o = options[host]
        assert o["boot.kernelModules"] == ["ceph", "rbd"]  # exactly: a dropped module must fail
        assert "--root-dir=/var/lib/kubelet" in o["services.kubernetes.kubelet.extraOpts"].split(" ")
        assert o["systemd.services.containerd.serviceConfig"]["LimitNOFILE"] == "1048576"


def test_api_address_and_extra_hosts_on_every_host(options, seed):
    lab = seed[0]
    cp = lab.control_plane
    for host in ("yomogi", "tokiwa", "hanaakari"):
        o = options[host]
        assert f"{cp.ip} api.kube" in o["networking.extraHosts"].splitlines()
        assert o["services.kubernetes.apiserverAddress"] == "https://api.kube:6443"
        assert o["services.kubernetes.masterAddress"] == "api.kube"
        assert o["services.kubernetes.easyCerts"] is True
    assert options["yomogi"]["services.kubernetes.apiserver.securePort"] == 6443
    assert options["yomogi"]["services.kubernetes.apiserver.advertiseAddress"] == "192.168.10.10"
    assert options["yomogi"]["services.kubernetes.apiserver.allowPrivileged"] is True
    for worker in ("tokiwa", "hanaakari"):
        assert options[worker]["services.kubernetes.kubelet.kubeconfig.server"] == "https://api.kube:6443"


def _v4(src: str, iface: str, proto: str, port: int) -> str:
    return f"iptables -w -A nixos-fw -s {src} -i {iface} -p {proto} -m {proto} --dport {port} -j nixos-fw-accept"


def _v6(src: str, iface: str, proto: str, port: int) -> str:
    return f"ip6tables -w -A nixos-fw -s {src} -i {iface} -p {proto} -m {proto} --dport {port} -j nixos-fw-accept"


def _seed_policy() -> dict[str, set[str]]:
    """The seed lab's firewall, written out by hand from its roles (not computed by homelab): who reaches what."""
    lan, ts4, ts6, pods = "192.168.10.0/24", "100.64.0.0/10", "fd7a:115c:a1e0::/48", "10.1.0.0/16"
    y, t, h = "192.168.10.10/32", "192.168.10.11/32", "192.168.10.12/32"
    world = {"iptables -w -A nixos-fw -p udp -m udp --dport 41641 -j nixos-fw-accept",  # WireGuard, from anywhere
             "ip6tables -w -A nixos-fw -p udp -m udp --dport 41641 -j nixos-fw-accept"}

    def admins(lan_if: str, port: int) -> set[str]:  # the LAN and the tailnet
        return {_v4(lan, lan_if, "tcp", port), _v4(ts4, "tailscale0", "tcp", port), _v6(ts6, "tailscale0", "tcp", port)}

    # The rules from the nodes list every node, the host's own LAN address too: they are one file shared by
    # the nodes with the same rules (modules/network/firewall-from-nodes.nix), so the lab's files grow with the
    # lab and not with its square. The own-address rule never matches: Linux drops a packet from outside that
    # carries one of the host's own addresses as a martian before the input chain (accept_local is off).
    # the control plane: its API server reaches its own kubelet over loopback, so no kubelet rule there
    yomogi = (admins("end0", 22) | {_v4(o, "end0", "udp", 8472) for o in (y, t, h)} | world
              | {_v4(n, "end0", "tcp", p) for n in (y, t, h) for p in (6443, 8888)}  # API and cfssl from the nodes
              | {_v4(pods, i, "tcp", 6443) for i in ("mynet", "flannel.1")} | admins("end0", 6443)
              | {_v4(lan, "end0", pr, 53) for pr in ("tcp", "udp")}  # split DNS: LAN, tailnet, pods
              | {_v4(ts4, "tailscale0", pr, 53) for pr in ("tcp", "udp")}
              | {_v6(ts6, "tailscale0", pr, 53) for pr in ("tcp", "udp")}
              | {_v4(pods, i, pr, 53) for i in ("mynet", "flannel.1") for pr in ("tcp", "udp")})
    tokiwa = admins("enp1s0", 22) | world | {_v4(y, "enp1s0", "tcp", 10250)} | {_v4(o, "enp1s0", "udp", 8472)
                                                                               for o in (y, t, h)}
    hanaakari = (admins("enp1s0", 22) | world | {_v4(y, "enp1s0", "tcp", 10250)}
                 | {_v4(o, "enp1s0", "udp", 8472) for o in (y, t, h)}
                 | {_v4(lan, "enp1s0", "tcp", p) for p in (80, 443)}  # the ingress: LAN and tailnet only
                 | {_v4(ts4, "tailscale0", "tcp", p) for p in (80, 443)} | {_v6(ts6, "tailscale0", "tcp", p)
                                                                              for p in (80, 443)})
    return {"yomogi": yomogi, "tokiwa": tokiwa, "hanaakari": hanaakari}


def test_the_firewall_is_exactly_the_seed_labs_flow_table(options):
    """Least privilege: each host lets in exactly who its roles need, from where, and nothing to everyone."""
    for host, want in _seed_policy().items():
        rules = {ln for ln in options[host]["networking.firewall.extraCommands"].splitlines()
                 if ln and not ln.startswith("#")}
        assert rules == want, f"{host}: extra {sorted(rules - want)}; missing {sorted(want - rules)}"
        # nothing opened to every source, no interface trusted as a whole (tailscale0 included)
        for option in ("allowedTCPPorts", "allowedUDPPorts", "trustedInterfaces"):
            assert f"networking.firewall.{option}" not in options[host], option
        assert options[host]["services.tailscale.enable"] is True
        assert options[host]["services.tailscale.openFirewall"] is False
        assert options[host]["services.tailscale.extraSetFlags"] == ["--netfilter-mode=off"]
        assert options[host]["services.openssh.openFirewall"] is False
        assert options[host]["services.kubernetes.flannel.openFirewallPorts"] is False
        assert not any("10.0.0.0/24" in r for r in rules)  # the service range is never a source


def test_split_dns_answers_with_the_ingress_hosts_tailscale_address(options, seed):
    lab = seed[0]
    corefile = options["yomogi"]["services.coredns.config"]
    ingress_ts = lab.host("hanaakari").tailscale_address
    assert f'answer "{{{{ .Name }}}} 60 IN A {ingress_ts}"' in corefile
    assert "template IN A home.example.com" in corefile
    assert "forward . 1.1.1.1 1.0.0.1" in corefile
    assert "services.coredns.enable" not in options["tokiwa"]


def stream_routes(stream: str) -> set[tuple[int, str]]:
    """{(listen port, upstream server)} of an nginx stream config: each server block's `listen` joined to the
    `server` of the upstream its `proxy_pass` names (a server listening on IPv4 and IPv6 is one route)."""
    upstreams = {name: re.findall(r"^\s*server\s+(\S+);", body, re.M)
                 for name, body in re.findall(r"upstream\s+(\S+)\s*\{(.*?)\}", stream, re.S)}
    routes = set()
    for body in re.findall(r"\bserver\s*\{(.*?)\}", stream, re.S):
        listens = set(re.findall(r"^\s*listen\s+(?:\[::\]:)?(\d+);", body, re.M))
        passes = re.findall(r"^\s*proxy_pass\s+(\S+);", body, re.M)
        assert len(listens) == 1 and len(passes) == 1 and len(upstreams[passes[0]]) == 1, body
        routes.add((int(min(listens)), upstreams[passes[0]][0]))
    return routes


def test_stream_routes_reads_pairs_not_substrings():
    """The reader itself: a swapped mapping gives swapped pairs."""
    swapped = ("upstream a {\n  server 127.0.0.1:31443;\n}\nserver {\n  listen 80;\n  proxy_pass a;\n}\n"
               "upstream b {\n  server 127.0.0.1:31080;\n}\nserver {\n  listen 443;\n  proxy_pass b;\n}\n")
    assert stream_routes(swapped) == {(80, "127.0.0.1:31443"), (443, "127.0.0.1:31080")}


def test_ingress_proxy_streams_80_and_443_to_traefik_nodeports(options):
    stream = options["hanaakari"]["services.nginx.streamConfig"]
    # (listen port, upstream server) pairs, read from the config as nginx does: a swap 80<->443 or
    # 31080<->31443 must fail, which substring checks would let through
    assert stream_routes(stream) == {(80, "127.0.0.1:31080"), (443, "127.0.0.1:31443")}
    # each port on IPv4 and IPv6 (tailnet clients may come over IPv6)
    assert sorted(re.findall(r"^\s*listen\s+(\S+);", stream, re.M)) == ["443", "80", "[::]:443", "[::]:80"]
    assert "services.nginx.enable" not in options["yomogi"]


def test_nixpkgs_defaults_that_would_break_or_open_the_lab_are_overridden(options, nix):
    """Each value here disarms a nixpkgs default (docs/nixpkgs-facts.md, least privilege section)."""
    # nginx's default virtual host `localhost` would also listen on port 80: nginx would not start
    assert options["hanaakari"]["services.nginx.virtualHosts"] == {}
    assert {h for h, o in options.items() if "services.nginx.virtualHosts" in o} == {"hanaakari"}
    for host, o in options.items():
        # NodePorts on loopback only: kube-proxy's DNAT runs before the firewall would see them
        assert o["services.kubernetes.proxy.extraOpts"] == (
            "--proxy-mode=iptables --nodeport-addresses=127.0.0.0/8"), host  # nftables mode: no loopback NodePorts
        # tailscaled's own accept-everything rule off, whether the node logs in by set or by up
        assert o["services.tailscale.extraSetFlags"] == ["--netfilter-mode=off"], host
        assert o["services.tailscale.extraUpFlags"] == ["--netfilter-mode=off"], host
        assert "networking.nftables.flushRuleset" not in o, host  # iptables lab: nothing to flush
    rb = read_back_lab("seed-nftables", labkit.lab(firewall="nftables"), nix)
    assert {h: o["networking.nftables.flushRuleset"] for h, o in rb.options.items()} == {
        "yomogi": False, "tokiwa": False, "hanaakari": False}


def test_raspberry_pi_boot_and_uefi_boot(options):
    y = options["yomogi"]
    assert y["boot.loader.grub.enable"] is False
    assert y["boot.loader.generic-extlinux-compatible.enable"] is True
    # nixpkgs' default kernel: 26.05 deprecates linuxPackages_rpi4 (docs/nixpkgs-facts.md)
    assert "boot.kernelPackages" not in y
    assert y["nixpkgs.hostPlatform"] == "aarch64-linux"
    for x86 in ("tokiwa", "hanaakari"):
        assert options[x86]["boot.loader.systemd-boot.enable"] is True
        assert options[x86]["nixpkgs.hostPlatform"] == "x86_64-linux"


def test_hand_written_imports_are_imported_and_parsed(seed_root, seed_compiled, nix):
    report = readback.read_back(seed_root, seed_compiled, nix)
    assert report.hand_written == 3
    assert "./hardware-configuration.nix" in seed_compiled.files["hosts/yomogi/default.nix"].imports


def test_etcd_keeps_the_name_nixpkgs_gives_it(options):
    # nixpkgs' apiserver.nix sets services.etcd.name = mkDefault masterAddress, the name pki.nix's
    # initialCluster lists (<masterAddress>=https://etcd.local:2380): nothing to write, nothing to contradict it
    for host in ("yomogi", "tokiwa", "hanaakari"):
        assert not any(k.startswith("services.etcd.") for k in options[host]), host


def test_kubernetes_is_pinned_to_the_lan_address_and_interface(options, seed):
    for h in seed[0].hosts:
        assert options[h.hostname]["services.kubernetes.kubelet.nodeIp"] == str(h.ip)
        assert options[h.hostname]["services.flannel.iface"] == h.interface


def test_every_node_resolves_every_kubelet_name_the_api_server_uses(options, seed):
    """The API server reaches kubelets by hostname (preferredAddressTypes), verifies their easyCerts serving
    certificate, which names only the kubelet's name, and resolves the name through /etc/hosts: every node's
    hosts file, as NixOS writes it from these options, must lead to that node; nothing is left to the router."""
    lab = seed[0]
    cp = lab.control_plane
    assert options[cp.hostname]["services.kubernetes.apiserver.preferredAddressTypes"] == "Hostname"
    for h in lab.kubernetes_nodes:
        o = options[h.hostname]
        # the kubelet registers as the lower-cased fqdnOrHostName: the hostname, with no domain set
        assert "networking.domain" not in o and "services.kubernetes.kubelet.hostname" not in o
        hosts = labkit.etc_hosts(o, h.hostname)
        for node in lab.kubernetes_nodes:
            found = labkit.resolve(hosts, node.hostname)
            # a node's own name is NixOS's 127.0.0.2 line (its kubelet listens on every address)
            want = ["127.0.0.2", str(node.ip)] if node is h else [str(node.ip)]
            assert found == want, (h.hostname, node.hostname)
        assert labkit.resolve(hosts, lab.cluster.api_name) == [str(cp.ip)]
