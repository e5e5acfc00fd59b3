"""The seed article's facts, asserted on the option values real nix reads back from the committed files."""

from __future__ import annotations

import ipaddress

import pytest

from homelab import ARM64_COREDNS, files, render, verify


@pytest.fixture(scope="module")
def options(repo, seed_compiled, nix):
    """host -> option values, as nix reads them from the files committed in this repository."""
    report = verify.verify(repo, seed_compiled, nix)
    assert report.problems == []
    assert report.nix_calls == 1  # one nix process for every file of every host
    return report.options


def test_committed_files_are_what_the_model_generates(repo, seed_compiled):
    texts = render.render_all(seed_compiled)
    assert files.stale(repo, texts, prune=True) == []


def test_every_generated_file_carries_a_hash_that_matches_its_content(seed_compiled):
    for rel, text in render.render_all(seed_compiled).items():
        assert render.stored_hash(text) == render.content_hash(text), rel
        assert not files.edited(text)
        assert files.edited(text.replace("true", "false", 1)) or "true" not in text


def test_roles(options):
    assert options["yomogi"]["services.kubernetes.roles"] == ["master", "node"]
    assert options["tokiwa"]["services.kubernetes.roles"] == ["node"]
    assert options["hanaakari"]["services.kubernetes.roles"] == ["node"]


def test_arm64_control_plane_gets_etcd_override_and_coredns_pin(options):
    y = options["yomogi"]
    assert y["systemd.services.etcd.environment"] == {"ETCD_UNSUPPORTED_ARCH": "arm64"}
    # nixos-26.05: addons.dns.corednsImage is a package; the seed's pin is pulled with dockerTools
    assert y["services.kubernetes.addons.dns.corednsImage"] == {
        "_type": "pkg-call",
        "function": "dockerTools.pullImage",
        "args": {
            "imageName": "coredns/coredns",
            "imageDigest": "sha256:a0ead06651cf580044aeb0a0feba63591858fb2e43ade8c9dea45a6a89ae7e5e",
            "finalImageTag": "1.10.1",
            "sha256": "0c4vdbklgjrzi6qc5020dvi8x3mayq4li09rrq2w0hcjdljj0yf9",
            "arch": "arm64",
        },
    }
    assert ARM64_COREDNS.finalImageTag == "1.10.1"
    for x86 in ("tokiwa", "hanaakari"):
        assert "systemd.services.etcd.environment" not in options[x86]
        assert "services.kubernetes.addons.dns.corednsImage" not in options[x86]


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


def test_trust_ranges_are_the_cluster_ranges_not_10_slash_8(options, seed):
    c = seed[0].cluster
    for host in ("yomogi", "tokiwa", "hanaakari"):
        rules = options[host]["networking.firewall.extraCommands"].splitlines()
        trusted = [ipaddress.ip_network(r.split()[4]) for r in rules]
        assert trusted == [c.pod_cidr, c.service_cidr, c.lan]
        assert all(r.startswith("iptables -A nixos-fw -s ") and r.endswith(" -j nixos-fw-accept") for r in rules)
        assert ipaddress.ip_network("10.0.0.0/8") not in trusted
        assert options[host]["networking.firewall.trustedInterfaces"] == ["tailscale0"]
        assert options[host]["services.tailscale.enable"] is True


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
    `server` of the upstream its `proxy_pass` names."""
    import re

    upstreams = {name: re.findall(r"^\s*server\s+(\S+);", body, re.M)
                 for name, body in re.findall(r"upstream\s+(\S+)\s*\{(.*?)\}", stream, re.S)}
    routes = set()
    for body in re.findall(r"\bserver\s*\{(.*?)\}", stream, re.S):
        listens = re.findall(r"^\s*listen\s+(\d+);", body, re.M)
        passes = re.findall(r"^\s*proxy_pass\s+(\S+);", body, re.M)
        assert len(listens) == 1 and len(passes) == 1 and len(upstreams[passes[0]]) == 1, body
        routes.add((int(listens[0]), upstreams[passes[0]][0]))
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
    assert options["hanaakari"]["networking.firewall.allowedTCPPorts"] == [80, 443]
    assert "services.nginx.enable" not in options["yomogi"]


def test_raspberry_pi_boot_and_uefi_boot(options):
    y = options["yomogi"]
    assert y["boot.loader.grub.enable"] is False
    assert y["boot.loader.generic-extlinux-compatible.enable"] is True
    assert y["boot.kernelPackages"] == {"_type": "pkg", "attrPath": "linuxPackages_rpi4"}
    assert y["nixpkgs.hostPlatform"] == "aarch64-linux"
    for x86 in ("tokiwa", "hanaakari"):
        assert options[x86]["boot.loader.systemd-boot.enable"] is True
        assert options[x86]["nixpkgs.hostPlatform"] == "x86_64-linux"


def test_hand_written_imports_are_imported_and_parsed(repo, seed_compiled, nix):
    report = verify.verify(repo, seed_compiled, nix)
    assert report.hand_written == 3
    assert "./hardware-configuration.nix" in seed_compiled.files["hosts/yomogi/default.nix"].imports


def test_etcd_is_named_like_the_easycerts_initial_cluster_entry(options):
    # nixpkgs' pki.nix: initialCluster = [ "<masterAddress>=https://etcd.local:2380" ]
    assert options["yomogi"]["services.etcd.name"] == options["yomogi"]["services.kubernetes.masterAddress"]
    assert "services.etcd.name" not in options["tokiwa"]


def test_kubernetes_is_pinned_to_the_lan_address_and_interface(options, seed):
    for h in seed[0].hosts:
        assert options[h.hostname]["services.kubernetes.kubelet.nodeIp"] == str(h.ip)
        assert options[h.hostname]["services.flannel.iface"] == h.interface
