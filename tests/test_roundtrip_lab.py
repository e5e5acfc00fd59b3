"""Random valid labs: compile -> render -> real nix -> the same values, file by file and merged per host."""

from __future__ import annotations

import ipaddress
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homelab import (
    CephStorage,
    Cluster,
    ControlPlane,
    DnsServer,
    Host,
    IngressProxy,
    Lab,
    RaspberryPi4,
    SystemdBoot,
    Tailscale,
    Worker,
    default,
    force,
)
from homelab import render, readback
from homelab.model import option_path
from homelab.nixvalue import attr_path
from homelab.compile import compile_lab
from homelab.roles.control_plane import CFSSL_PORT, CONTROL_PLANE_PORTS
from homelab.roles.dns_server import HEALTH_PORT
from homelab.roles.kubernetes import CERTMGR_PORT, NODE_PORTS
from homelab import firewall
from homelab.role import HostContext
from homelab.validate import validate

label = st.from_regex(r"[a-z]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
text = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=20)
option_value = st.one_of(st.booleans(), st.integers(-1000, 10**6), text, st.lists(text, max_size=3),
                         st.dictionaries(label, text, max_size=3))


# outside the NodePort range and the ports a control plane already uses (homelab.validate refuses those)
_TAKEN = {p.number for p in (*CONTROL_PLANE_PORTS, *NODE_PORTS)} | {CFSSL_PORT, CERTMGR_PORT.number, HEALTH_PORT}
api_port = st.integers(1024, 29999).filter(lambda p: p not in _TAKEN)


@st.composite
def labs(draw) -> Lab:
    lan = ipaddress.ip_network(draw(st.sampled_from(["192.168.10.0/24", "192.168.0.0/16", "172.16.5.0/24"])))
    pod = draw(st.sampled_from(["10.1.0.0/16", "10.244.0.0/16"]))
    svc = draw(st.sampled_from(["10.0.0.0/24", "10.96.0.0/20"]))
    cluster = Cluster(
        name=draw(label), domain=f"{draw(label)}.{draw(label)}", lan=str(lan),
        gateway=str(lan.network_address + 1), nameservers=[str(lan.network_address + 1)],
        pod_cidr=pod, service_cidr=svc, api_name=f"api.{draw(label)}", api_port=draw(api_port),
        easy_certs=draw(st.booleans()), firewall=draw(st.sampled_from(["iptables", "nftables"])),
    )
    n = draw(st.integers(1, 5))
    names = draw(st.lists(label, min_size=n, max_size=n, unique=True))
    cp_index = draw(st.integers(0, n - 1))
    ingress_index = draw(st.integers(0, n - 1))
    want_dns = draw(st.booleans())
    hosts = []
    for i, name in enumerate(names):
        system = draw(st.sampled_from(["x86_64-linux", "aarch64-linux"]))
        roles = [ControlPlane(allow_privileged=draw(st.booleans()), dns_addon=draw(st.booleans()))
                 if i == cp_index else Worker()]
        if draw(st.booleans()):
            roles.append(CephStorage(containerd_nofile=draw(st.integers(1024, 2**20))))
        if i == ingress_index:
            roles.append(IngressProxy(http_nodeport=draw(st.integers(30000, 31000)),
                                      https_nodeport=draw(st.integers(31001, 32767))))
        if want_dns and i == cp_index:
            roles.append(DnsServer(ttl=draw(st.integers(1, 3600))))
        roles.append(Tailscale(interface=draw(st.sampled_from(["tailscale0", "ts0"]))))
        options = draw(st.dictionaries(st.builds(lambda a, b: f"services.{a}.{b}", label, label), option_value,
                                       max_size=3))
        if draw(st.booleans()):
            options["services.openssh.enable"] = draw(st.sampled_from([True, force(False), default(True)]))
        hosts.append(Host(
            hostname=name, system=system, state_version=draw(st.sampled_from(["25.05", "26.05"])),
            interface=draw(st.sampled_from(["eth0", "end0", "enp1s0"])),
            address=str(lan.network_address + 10 + i), tailscale_address=f"100.64.0.{10 + i}",
            boot=RaspberryPi4() if system == "aarch64-linux" and draw(st.booleans()) else SystemdBoot(),
            roles=roles, kernel_params=draw(st.lists(st.from_regex(r"[a-z_]+=[0-9a-z]+", fullmatch=True),
                                                     max_size=2)),
            options=options, description=draw(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20)),
        ))
    return Lab(cluster, hosts)


def _no_prefix_clash(lab: Lab) -> bool:
    # two random user options like services.a.b and services.a.b.c cannot both exist in one file
    for h in lab.hosts:
        paths = sorted(h.options)
        if any(b.startswith(a + ".") for a in paths for b in paths if a != b):
            return False
    return True


@given(labs())
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_random_labs_round_trip_through_nix(nix, lab):
    from hypothesis import assume

    assume(_no_prefix_clash(lab))
    assert [p for p in validate(lab) if p.severity == "error"] == []
    compiled = compile_lab(lab)
    pre = readback.precheck(compiled)
    problems = pre.all_problems()
    assume(not any("conflicting" in p for p in problems))  # random user options may clash with roles
    assert problems == []
    texts = render.render_all(compiled)
    assert render.render_all(compile_lab(lab)) == texts  # deterministic
    with tempfile.TemporaryDirectory() as tmp:
        for rel, t in texts.items():
            (Path(tmp) / rel).parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / rel).write_text(t)
        report = readback.read_back(Path(tmp), compiled, nix, pre=pre)  # the build hands its precheck over too
    assert report.problems == []
    assert report.nix_calls == 1
    for h in lab.hosts:
        opts = report.options[h.hostname]
        assert opts["networking.hostName"] == h.hostname
        assert opts["nixpkgs.hostPlatform"] == h.system
        rules = opts["networking.firewall.extraInputRules" if lab.cluster.firewall == "nftables"
                     else "networking.firewall.extraCommands"]
        written = [r.text for r in firewall.host_rules(HostContext(lab, h))]
        # the host's own file's rules, then its node-rules file's (lines joins the two with an empty line)
        assert [ln for ln in rules.splitlines() if ln and not ln.startswith("#")] == written
        for raw, v in h.options.items():
            k = attr_path(option_path(raw))  # as nix names it: a keyword segment is quoted (services.a."in")
            want = readback.to_json(v)
            got = opts.get(k, readback.nest([(tuple(k.split(".")), v)]))
            if isinstance(want, dict) and want.get("_type") == "override":
                want = want["content"]
            if isinstance(want, dict) and not want:
                continue  # an empty attribute set defines nothing
            assert got == want or k not in opts and isinstance(want, dict)
