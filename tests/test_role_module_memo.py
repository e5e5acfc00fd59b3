"""The Tailscale, CephStorage and Worker roles make their module once per lab and configuration (issue 19: 23,343
module objects at 10,000 hosts for 14 files): each host still gets exactly the module it would get alone, so a
host configured differently from the one that filled the cache never gets that host's module."""

from __future__ import annotations

import attrs

from homelab import CephStorage, Lab, Secret, Tailscale, Worker
from homelab.compile import compile_shared, variant_key
from homelab.role import HostContext

from .labkit import lab as seed_lab


def _written(m):
    """All of a module the compiler reads: its path, title, source and what its sections write."""
    return (m.path, m.title, m.source, variant_key(m.sections))


def _hosts():
    """The seed hosts, many times over, with each memoised role configured in every way its module shows."""
    base = {h.hostname: h for h in seed_lab().hosts}
    tailscales = [Tailscale(), Tailscale(interface="tailscale1"), Tailscale(auth_key_file="/run/keys/ts"),
                  Tailscale(auth_key_file="/run/keys/other"), Tailscale(auth_key=Secret("tailscale-auth-key")),
                  Tailscale(auth_key=Secret("another-key")), Tailscale(interface="tailscale1", auth_key_file="/k")]
    cephs = [CephStorage(), CephStorage(kubelet_root_dir="/srv/kubelet"), CephStorage(containerd_nofile=4096),
             CephStorage(kubelet_root_dir="/srv/kubelet", containerd_nofile=4096), CephStorage(containerd_nofile=1)]
    out = [base["yomogi"]]  # the control plane
    n = 0
    for ts in tailscales:
        for ceph in cephs:
            n += 1
            template = base[("tokiwa", "hanaakari")[n % 2]]  # workers, one with the ingress
            roles = [ceph if isinstance(r, CephStorage) else ts if isinstance(r, Tailscale) else r
                     for r in template.roles]
            out.append(attrs.evolve(template, hostname=f"h{n:03d}", address=f"192.168.10.{20 + n}",
                                    tailscale_address=f"100.64.0.{20 + n}", roles=roles))
    return out


def test_each_host_gets_the_module_it_would_get_alone():
    cluster = seed_lab().cluster
    hosts = _hosts()
    lab = Lab(cluster, hosts)
    checked = set()
    for h in lab.hosts:
        for role in h.roles:
            if not isinstance(role, (Tailscale, CephStorage, Worker)):
                continue
            together = [_written(m) for m in role.compile(HostContext(lab, h))]
            alone_lab = Lab(cluster, hosts)  # a new lab: nothing memoised yet, the module made for this host
            alone = [_written(m) for m in role.compile(HostContext(alone_lab, h))]
            assert together == alone, (h.hostname, role)
            checked.add((type(role).__name__, together[-1]))
    # every configuration above writes a module of its own
    assert sum(1 for name, _ in checked if name == "Tailscale") == 7
    assert sum(1 for name, _ in checked if name == "CephStorage") == 5
    assert sum(1 for name, _ in checked if name == "Worker") == 1


def test_hosts_configured_alike_share_one_module_object():
    lab = Lab(seed_lab().cluster, _hosts())
    made = {}
    kept = []  # every module alive till the end: no id is reused meanwhile
    for h in lab.hosts:
        for role in h.roles:
            if isinstance(role, (Tailscale, CephStorage, Worker)):
                for m in role.compile(HostContext(lab, h)):
                    kept.append(m)
                    made.setdefault(_written(m), set()).add(id(m))
    assert made and all(len(ids) == 1 for ids in made.values())


def test_the_compiled_lab_is_the_one_made_without_the_memo():
    """compile_shared of the whole lab: the same files and plans as when each role's module is made afresh."""
    cluster = seed_lab().cluster
    lab = Lab(cluster, _hosts())
    fast = compile_shared(lab)
    originals = {cls: cls.compile for cls in (Tailscale, CephStorage, Worker)}

    def afresh(cls):
        def compile(self, ctx):
            # the same role's modules, made in a lab of its own that has memoised nothing
            return list(originals[cls](self, HostContext(Lab(cluster, _hosts()), ctx.host)))
        return compile

    try:
        for cls in originals:
            cls.compile = afresh(cls)
        slow = compile_shared(Lab(cluster, _hosts()))
    finally:
        for cls, f in originals.items():
            cls.compile = f
    assert {p: (f.title, f.source, variant_key(f.sections)) for p, f in fast.files.items()} == \
        {p: (f.title, f.source, variant_key(f.sections)) for p, f in slow.files.items()}
    assert fast.hosts == slow.hosts
    assert len([p for p in fast.files if p.startswith("modules/network/tailscale")]) == 7
