"""The cluster layer: cluster/helmfile.yaml and its values, generated from the model and rendered by real helm.

The proof (homelab/proofs/cluster.py) renders each release of the helmfile from the pinned charts in
homelab/charts (shipped with homelab), validates every built-in object against Kubernetes 1.36's schemas and checks the
objects against the hosts as nix read them back.  Each check is also shown failing on values broken on
purpose.  Without helm (./lab test installs it) the rendering tests skip, saying so.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import attrs
import pytest

from homelab import Acme, CephStorage, DnsServer, IngressProxy, LabError, RookCeph, Secret, Traefik, helmfile, readback
from homelab.build import check, prepare
from homelab.compile import compile_lab
from homelab.proofs import cluster
from homelab.proofs.netns import ProofFailed, read_back

from . import labkit

yaml = pytest.importorskip("yaml", reason="PyYAML is in homelab[test]")


def merged(lab) -> dict[str, dict]:
    """Every host's option values as homelab generates them (merged the way NixOS merges them)."""
    compiled = compile_lab(lab)
    out = {}
    for h in lab.hosts:
        files = [(rel, readback.nest(compiled.files[rel].definitions())) for rel in compiled.files_of(h.hostname)]
        out[h.hostname], problems = readback.merge_host(files)
        assert problems == []
    return out


def write(tmp: Path, lab) -> Path:
    texts = helmfile.texts(lab)
    for rel, text in texts.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(text)
    return tmp / helmfile.CLUSTER_DIR


@pytest.fixture(scope="module")
def helm():
    try:
        return cluster.find_helm()
    except cluster.Unavailable as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def seed_read(seed_root, nix):
    return read_back(seed_root, nix)


def ceph_hosts():
    """The seed hosts with hanaakari's SSD given to Ceph, as the seed lab has it."""
    return [attrs.evolve(h, roles=[CephStorage(disks=["/dev/sda"]) if isinstance(r, CephStorage) and
                                   h.hostname == "hanaakari" else r for r in h.roles]) for h in labkit.seed_hosts()]


ACME = Acme(email="admin@example.com", provider="cloudflare", env={
    "CF_DNS_API_TOKEN": Secret("cloudflare-dns-api-token"), "CF_ZONE_API_TOKEN": Secret("cloudflare-zone-api-token")})


def acme_lab():
    """The seed lab as the article runs it: hanaakari labelled role=application, Traefik with the Cloudflare
    DNS-01 resolver (its tokens named secrets), Rook Ceph on hanaakari's SSD."""
    hosts = [attrs.evolve(h, labels={"role": "application"}) if h.hostname == "hanaakari" else h for h in ceph_hosts()]
    return labkit.lab(hosts, components=[Traefik(acme=ACME), RookCeph()])


@pytest.fixture(scope="module")
def acme(tmp_path_factory):
    """(lab, its folder with cluster/ written, its hosts' options as generated)."""
    lab = acme_lab()
    check(lab)
    root = tmp_path_factory.mktemp("acme")
    write(root, lab)
    return lab, root, merged(lab)


def values(root: Path, name: str) -> dict:
    return yaml.safe_load((root / "cluster" / "values" / f"{name}.yaml").read_text())


# ---------------------------------------------------------------- what is generated


def test_the_seed_labs_releases_in_install_order(seed_root):
    doc = yaml.safe_load((seed_root / "cluster/helmfile.yaml").read_text())
    assert doc["repositories"] == [{"name": "rook-release", "url": "https://charts.rook.io/release"},
                                   {"name": "traefik", "url": "https://traefik.github.io/charts"}]
    assert [(r["name"], r["namespace"], r["chart"], r["version"], r.get("needs"), r["values"])
            for r in doc["releases"]] == [
        ("rook-ceph", "rook-ceph", "rook-release/rook-ceph", "v1.18.9", None, ["values/rook-ceph.yaml"]),
        ("rook-ceph-cluster", "rook-ceph", "rook-release/rook-ceph-cluster", "v1.18.9", ["rook-ceph/rook-ceph"],
         ["values/rook-ceph-cluster.yaml"]),
        # its acme.json on a Ceph volume: after the cluster that provides the StorageClass
        ("traefik", "traefik", "traefik/traefik", "37.1.0", ["rook-ceph/rook-ceph-cluster"], ["values/traefik.yaml"]),
    ]
    assert sorted(p.relative_to(seed_root).as_posix() for p in (seed_root / "cluster").rglob("*") if p.is_file()) \
        == ["cluster/helmfile.yaml", "cluster/values/rook-ceph-cluster.yaml", "cluster/values/rook-ceph.yaml",
            "cluster/values/traefik.yaml"]


def test_the_seed_values_are_the_articles(seed_root, acme):
    t = values(seed_root, "traefik")
    assert {k: t[k] for k in ("ports", "service", "nodeSelector")} == {
        "ports": {"web": {"nodePort": 31080}, "websecure": {"nodePort": 31443}},
        "service": {"type": "NodePort"},
        "nodeSelector": {"proxy": "true", "role": "application"}}  # the article's base values, as strings
    # the seed lab runs the article's resolver (its tokens set with `homelab secrets set ... --cluster`)
    assert set(t) == {"ports", "service", "nodeSelector", "certificatesResolvers", "deployment", "persistence", "env"}
    assert t["certificatesResolvers"]["cloudflare-resolver"]["acme"]["email"] == "you@example.com"
    assert t == {**values(acme[1], "traefik"), "certificatesResolvers": t["certificatesResolvers"]}
    t = values(acme[1], "traefik")  # with the article's resolver
    assert t["persistence"] == {"enabled": True, "path": "/data", "storageClass": "ceph-block"}
    assert [c["name"] for c in t["deployment"]["initContainers"]] == ["volume-permissions"]
    acme = t["certificatesResolvers"]["cloudflare-resolver"]["acme"]
    assert acme == {"email": "admin@example.com", "storage": "/data/acme.json",
                    "caServer": "https://acme-v02.api.letsencrypt.org/directory",
                    # the article's delayBeforeCheck: 10, under the key Traefik v3.3+ reads (the chart runs v3.5.1)
                    "dnsChallenge": {"provider": "cloudflare", "propagation": {"delayBeforeChecks": "10s"}}}
    assert t["env"] == [{"name": n, "valueFrom": {"secretKeyRef": {"name": "cloudflare-resolver-env", "key": n}}}
                        for n in ("CF_DNS_API_TOKEN", "CF_ZONE_API_TOKEN")]
    csi = values(seed_root, "rook-ceph")["csi"]
    vols = [{"name": "lib-modules", "hostPath": {"path": "/run/booted-system/kernel-modules/lib/modules/"}},
            {"name": "host-nix", "hostPath": {"path": "/nix"}}]
    mounts = [{"name": "host-nix", "mountPath": "/nix", "readOnly": True}]
    assert csi == {"rookUseCsiOperator": False, "kubeletDirPath": "/var/lib/kubelet", "csiRBDPluginVolume": vols, "csiRBDPluginVolumeMount": mounts,
                   "csiCephFSPluginVolume": vols, "csiCephFSPluginVolumeMount": mounts}
    spec = values(seed_root, "rook-ceph-cluster")["cephClusterSpec"]
    assert spec["storage"] == {"useAllNodes": False, "useAllDevices": False,
                               "nodes": [{"name": "hanaakari", "devices": [{"name": "sda"}]}]}
    assert spec["mon"] == {"count": 3, "allowMultiplePerNode": False}


def test_every_cluster_file_has_the_generated_header_and_a_true_hash(seed_root):
    from homelab.render import content_hash, is_generated, stored_hash

    for p in (seed_root / "cluster").rglob("*.yaml"):
        text = p.read_text()
        assert is_generated(text) and stored_hash(text) == content_hash(text), p
        assert text.splitlines()[4:] and not any(ln.startswith("{{") or "{{" in ln for ln in text.splitlines())


def test_the_ingress_proxys_ports_change_traefiks_values_in_the_same_build(tmp_path):
    hosts = [attrs.evolve(h, roles=[IngressProxy(http_nodeport=30080, https_nodeport=30443) if isinstance(r, IngressProxy)
                                    else r for r in h.roles]) for h in labkit.seed_hosts()]
    lab = labkit.lab(hosts)
    texts = prepare(lab).texts()
    t = yaml.safe_load(texts["cluster/values/traefik.yaml"])
    assert t["ports"] == {"web": {"nodePort": 30080}, "websecure": {"nodePort": 30443}}
    opts = merged(lab)
    assert cluster.stream_routes(opts["hanaakari"]["services.nginx.streamConfig"]) == {80: 30080, 443: 30443}


def test_a_lab_without_ceph_disks_gets_no_rook_and_without_ingress_no_traefik():
    hosts = [attrs.evolve(h, roles=[CephStorage() if isinstance(r, CephStorage) else r for r in h.roles])
             for h in labkit.seed_hosts()]
    lab = labkit.lab(hosts)
    assert [r.name for r in helmfile.releases(lab)] == ["traefik"]
    hosts = [attrs.evolve(h, roles=[r for r in h.roles if not isinstance(r, (IngressProxy, DnsServer))])
             for h in hosts]
    lab = labkit.lab(hosts)
    assert helmfile.releases(lab) == () and helmfile.texts(lab) == {}
    assert not any(rel.startswith("cluster/") for rel in prepare(lab).texts())


def test_osds_on_exactly_the_ceph_disks_and_mons_that_fit():
    hosts = [attrs.evolve(h, roles=[CephStorage(disks=["/dev/nvme1n1", "/dev/disk/by-id/usb-SSD"])
                                    if isinstance(r, CephStorage) and h.hostname == "tokiwa" else r for r in h.roles])
             for h in ceph_hosts()]
    lab = labkit.lab(hosts)
    spec = yaml.safe_load(helmfile.texts(lab)["cluster/values/rook-ceph-cluster.yaml"])
    assert spec["cephClusterSpec"]["storage"]["nodes"] == [
        {"name": "hanaakari", "devices": [{"name": "sda"}]},
        {"name": "tokiwa", "devices": [{"name": "nvme1n1"}, {"name": "/dev/disk/by-id/usb-SSD"}]}]
    assert spec["cephBlockPools"][0]["spec"]["replicated"] == {"size": 2}
    assert RookCeph().mon_count(lab) == 3
    small = labkit.lab([h for h in hosts if h.hostname in ("yomogi", "hanaakari")])
    assert RookCeph().mon_count(small) == 1


@pytest.mark.parametrize("components,field,reason", [
    ([RookCeph(mons=5)], "RookCeph.mons", "5 monitors need 5 nodes"),
    ([Traefik(namespace="web")], None, None),
])
def test_component_settings_checked_against_the_lab(components, field, reason):
    lab = labkit.lab(ceph_hosts(), components=components)
    if field is None:
        check(lab)
        assert next(r for r in helmfile.releases(lab) if r.name == "traefik").namespace == "web"
        return
    with pytest.raises(LabError) as e:
        check(lab)
    assert [(p.where, p.field) for p in e.value.problems] == [("cluster", field)]
    assert reason in e.value.problems[0].reason


def test_traefik_without_an_ingress_host_and_rook_without_disks_are_refused():
    hosts = [attrs.evolve(h, roles=[CephStorage() if isinstance(r, CephStorage) else r for r in h.roles
                                    if not isinstance(r, (IngressProxy, DnsServer))]) for h in labkit.seed_hosts()]
    with pytest.raises(LabError) as e:
        check(labkit.lab(hosts, components=[Traefik(), RookCeph()]))
    assert [(p.where, p.field, p.reason.split(":")[0]) for p in e.value.problems] == [
        ("cluster", "Traefik.hosts", "no host has the IngressProxy role"),
        ("cluster", "RookCeph.hosts", "no CephStorage host lists disks, so Ceph has nowhere to store data (give a "
                                      "node CephStorage(disks=[\"/dev/...\"]), or drop RookCeph)")]


@pytest.mark.parametrize("delay, reason", [(-1, "-1 is negative: give the seconds to wait, or 0"),
                                           ("10s", "'10s' is a str, not a number of seconds"),
                                           (True, "True is a bool, not a number of seconds")])
def test_the_acme_delay_is_seconds(delay, reason):
    with pytest.raises(LabError) as e:
        Acme(email="a@example.com", delay_before_checks=delay)
    assert [(p.field, p.reason) for p in e.value.problems] == [("Acme.delay_before_checks", reason)]


def test_no_acme_delay_writes_no_propagation_key():
    values = Traefik(acme=Acme(email="a@example.com", delay_before_checks=0)).values(labkit.lab())
    assert values["certificatesResolvers"].value["cloudflare-resolver"]["acme"]["dnsChallenge"] == {
        "provider": "cloudflare"}


def test_acme_tokens_must_be_named_secrets():
    with pytest.raises(LabError) as e:
        Acme(email="a@example.com", env={"CF_DNS_API_TOKEN": "the-token-itself"})
    [p] = e.value.problems
    assert p.field == "Acme.env['CF_DNS_API_TOKEN']" and "Secret(" in p.reason
    assert "the-token-itself" not in p.reason  # a token given by mistake is never echoed


def test_traefik_refuses_a_selector_that_also_picks_another_node():
    lab = labkit.evolve_host(labkit.lab(), "tokiwa", labels={"proxy": "true"})
    with pytest.raises(LabError) as e:
        check(lab)
    [p] = e.value.problems
    assert (p.where, p.field) == ("cluster", "Traefik.hosts") and "also matches tokiwa" in p.reason


# ---------------------------------------------------------------- real helm


SEED_CHECKS = {
        "traefik: Deployment traefik: nodeSelector selects ['hanaakari']",
        "traefik: NodePorts web 31080, websecure 31443 are nginx's upstreams on hanaakari",
        "rook-ceph: the RBD plugin mounts ['/nix', '/run/booted-system/kernel-modules/lib/modules/']",
        "rook-ceph: the CEPHFS plugin mounts ['/nix', '/run/booted-system/kernel-modules/lib/modules/']",
        "rook-ceph: CSI kubelet directory /var/lib/kubelet is the kubelets' --root-dir",
        "rook-ceph: Rook's own CSI drivers (ROOK_USE_CSI_OPERATOR false) mount the plugin volumes",
        "rook-ceph-cluster: OSDs on exactly {'hanaakari': ['sda']}",
        "rook-ceph-cluster: 3 monitors on 3 nodes",
        "rook-ceph-cluster: pool sizes [1], default 1, fit 1 OSD host(s)",
        "traefik: CF_DNS_API_TOKEN from Secret cloudflare-resolver-env",
        "traefik: CF_ZONE_API_TOKEN from Secret cloudflare-resolver-env",
        "traefik: Deployment traefik: cloudflare-resolver waits 10s before checking the DNS-01 TXT record "
        "(--certificatesresolvers.cloudflare-resolver.acme.dnsChallenge.propagation.delayBeforeChecks=10s)",
}


def test_real_helm_renders_the_seed_lab_and_every_check_holds(seed_root, seed_read, helm):
    report = cluster.prove(seed_read.lab, seed_root / "cluster", seed_read.options, helm=helm)
    assert report.releases == ("rook-ceph", "rook-ceph-cluster", "traefik")
    # no ceph-csi-operator subchart (csi.rookUseCsiOperator: false): 78 built-in objects
    assert report.validated > 70 and report.custom == 2  # CephCluster, CephBlockPool
    assert set(report.checked) == SEED_CHECKS


def test_real_helm_renders_the_articles_acme_resolver_too(acme, helm):
    lab, root, options = acme
    report = cluster.prove(lab, root / "cluster", options, helm=helm)
    assert set(report.checked) == SEED_CHECKS


def test_a_changed_lab_renders_and_holds_too(tmp_path, helm):
    """Other NodePorts, the ingress on tokiwa, two OSD hosts: the same build's values still hold."""
    hosts = []
    for h in labkit.seed_hosts():
        roles = [r for r in h.roles if not isinstance(r, IngressProxy)]
        if h.hostname == "tokiwa":
            roles = [CephStorage(disks=["/dev/sdb"]) if isinstance(r, CephStorage) else r for r in roles]
            roles.append(IngressProxy(http_nodeport=30080, https_nodeport=30443))
        hosts.append(attrs.evolve(h, roles=roles))
    hosts = [attrs.evolve(h, roles=[CephStorage(disks=["/dev/sda"]) if isinstance(r, CephStorage) and
                                    h.hostname == "hanaakari" else r for r in h.roles]) for h in hosts]
    lab = labkit.lab(hosts)
    check(lab)
    report = cluster.prove(lab, write(tmp_path, lab), merged(lab), helm=helm)
    assert "traefik: NodePorts web 30080, websecure 30443 are nginx's upstreams on tokiwa" in report.checked
    assert "rook-ceph-cluster: OSDs on exactly {'hanaakari': ['sda'], 'tokiwa': ['sdb']}" in report.checked
    assert "traefik: Deployment traefik: nodeSelector selects ['tokiwa']" in report.checked


def broken(seed_root: Path, tmp: Path, release: str, change) -> Path:
    """A copy of the seed lab's cluster/ with one values file changed by ``change(values)``."""
    root = tmp / "cluster"
    shutil.copytree(seed_root / "cluster", root)
    p = root / "values" / f"{release}.yaml"
    data = yaml.safe_load(p.read_text())
    change(data)
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return root


def failures(seed_read, root: Path, helm, options=None) -> list[str]:
    with pytest.raises(ProofFailed) as e:
        cluster.prove(seed_read.lab, root, options or seed_read.options, helm=helm)
    return str(e.value).splitlines()[1:]


def test_swapped_nodeports_are_caught(seed_root, seed_read, helm, tmp_path):
    def swap(v):
        v["ports"] = {"web": {"nodePort": 31443}, "websecure": {"nodePort": 31080}}
    assert failures(seed_read, broken(seed_root, tmp_path, "traefik", swap), helm) == [
        "  traefik: Service traefik NodePorts {'web': 31443, 'websecure': 31080}, but nginx on hanaakari streams "
        "80 -> 31080 and 443 -> 31443"]


def test_a_node_selector_no_kubelet_registers_is_caught(seed_root, seed_read, helm, tmp_path):
    def other(v):
        v["nodeSelector"] = {"role": "application", "proxy": "yes"}
    [line] = failures(seed_read, broken(seed_root, tmp_path, "traefik", other), helm)
    assert line == ("  traefik: Deployment traefik: nodeSelector {'proxy': 'yes', 'role': 'application'} matches no "
                    "node's kubelet labels ({'hanaakari': {'proxy': 'true', 'role': 'application'}, 'tokiwa': {}, "
                    "'yomogi': {}}); its pods would stay Pending")


def test_a_selector_matching_more_than_the_ingress_hosts_is_caught(seed_root, seed_read, helm):
    options = {h: copy.deepcopy(o) for h, o in seed_read.options.items()}  # copies of our own: the merged are read-only
    options["tokiwa"]["services.kubernetes.kubelet.extraOpts"] += " --node-labels=proxy=true,role=application"
    assert failures(seed_read, seed_root / "cluster", helm, options) == [
        "  traefik: Deployment traefik: nodeSelector {'proxy': 'true', 'role': 'application'} selects "
        "['hanaakari', 'tokiwa'], the IngressProxy hosts are ['hanaakari']"]


def test_csi_keys_the_chart_does_not_know_render_nothing_and_are_caught(seed_root, seed_read, helm, tmp_path):
    """As on rook v1.20, where the csi*PluginVolume keys are gone: nothing renders, and the proof says so."""
    def gone(v):
        for k in ("csiRBDPluginVolume", "csiRBDPluginVolumeMount"):
            v["csi"].pop(k)
        v["csi"]["rbdPluginVolumes"] = [{"name": "host-nix", "hostPath": {"path": "/nix"}}]
    assert failures(seed_read, broken(seed_root, tmp_path, "rook-ceph", gone), helm) == [
        "  rook-ceph: the RBD plugin's host paths are [], NixOS needs ['/nix', "
        "'/run/booted-system/kernel-modules/lib/modules/'] (the chart renders no CSI_RBD_PLUGIN_VOLUME for keys it "
        "does not know)",
        "  rook-ceph: the RBD plugin does not mount /nix read-only at /nix ([])"]


def test_the_ceph_csi_operator_is_refused_it_drops_the_nixos_plugin_volumes(seed_root, seed_read, helm, tmp_path):
    """rook v1.18 defaults to the ceph-csi-operator, whose node plugins never get CSI_*_PLUGIN_VOLUME
    (rook/rook#16370): the values turn it off, and values that leave it on (the chart's default) are caught."""
    assert values(seed_root, "rook-ceph")["csi"]["rookUseCsiOperator"] is False

    def chart_default(v):
        v["csi"].pop("rookUseCsiOperator")
    assert failures(seed_read, broken(seed_root, tmp_path, "rook-ceph", chart_default), helm) == [
        "  rook-ceph: ROOK_USE_CSI_OPERATOR is 'true': the ceph-csi-operator's node plugins do not mount the "
        "CSI_*_PLUGIN_VOLUME host paths NixOS needs (csi.rookUseCsiOperator: false)"]


def test_pools_the_osd_hosts_cannot_hold_healthy_are_caught(seed_root, seed_read, helm, tmp_path):
    """One SSD on one host: Ceph's own pools must get one copy too, and a one-copy pool must not warn, else the
    cluster never reaches HEALTH_OK (what `homelab verify` checks); Rook's cluster-test.yaml sets the same."""
    assert values(seed_root, "rook-ceph-cluster")["cephClusterSpec"]["cephConfig"] == {
        "global": {"osd_pool_default_size": "1", "mon_warn_on_pool_no_redundancy": "false"}}

    def ceph_defaults(v):
        v["cephClusterSpec"].pop("cephConfig")
    assert failures(seed_read, broken(seed_root, tmp_path, "rook-ceph-cluster", ceph_defaults), helm) == [
        "  rook-ceph-cluster: Ceph's default pool size is 3 and 1 OSD host(s) hold copies: its own pools (.mgr) stay "
        "undersized (cephConfig.global.osd_pool_default_size), never HEALTH_OK",
        "  rook-ceph-cluster: a pool with one copy and mon_warn_on_pool_no_redundancy not \"false\": Ceph warns "
        "POOL_NO_REDUNDANCY, never HEALTH_OK"]


def test_a_host_path_nixos_does_not_have_is_caught(seed_root, seed_read, helm, tmp_path):
    def fhs(v):
        v["csi"]["csiCephFSPluginVolume"][0]["hostPath"]["path"] = "/lib/modules"
    assert failures(seed_read, broken(seed_root, tmp_path, "rook-ceph", fhs), helm) == [
        "  rook-ceph: the CEPHFS plugin's host paths are ['/lib/modules', '/nix'], NixOS needs ['/nix', "
        "'/run/booted-system/kernel-modules/lib/modules/']"]


def test_a_csi_kubelet_dir_the_kubelets_do_not_use_is_caught(seed_root, seed_read, helm, tmp_path):
    def nixpkgs_default(v):
        v["csi"]["kubeletDirPath"] = "/var/lib/kubernetes"
    assert failures(seed_read, broken(seed_root, tmp_path, "rook-ceph", nixpkgs_default), helm) == [
        "  rook-ceph: the CSI kubelet directory is /var/lib/kubernetes, the CephStorage nodes' kubelets use "
        "['/var/lib/kubelet'] (--root-dir)"]


def test_ceph_on_every_device_or_another_disk_is_caught(seed_root, seed_read, helm, tmp_path):
    def greedy(v):
        v["cephClusterSpec"]["storage"]["useAllDevices"] = True
        v["cephClusterSpec"]["storage"]["nodes"][0]["devices"].append({"name": "nvme0n1"})
        v["cephClusterSpec"]["mon"]["count"] = 2
    assert failures(seed_read, broken(seed_root, tmp_path, "rook-ceph-cluster", greedy), helm) == [
        "  rook-ceph-cluster: useAllNodes False, useAllDevices True: Ceph would take nodes or disks the model does "
        "not give it",
        "  rook-ceph-cluster: storage nodes {'hanaakari': ['nvme0n1', 'sda']}, the CephStorage hosts' disks are "
        "{'hanaakari': ['sda']}",
        "  rook-ceph-cluster: 2 monitors for 3 nodes (odd, one per node)"]


def test_a_token_in_the_values_is_caught(acme, helm, tmp_path):
    lab, root, options = acme

    def literal(v):
        v["env"][0] = {"name": "CF_DNS_API_TOKEN", "value": "not-a-real-token"}
    with pytest.raises(ProofFailed) as e:
        cluster.prove(lab, broken(root, tmp_path, "traefik", literal), options, helm=helm)
    assert str(e.value).splitlines()[1:] == [
        "  traefik: Deployment traefik: CF_DNS_API_TOKEN has a literal value; it must come from a Secret"]


def test_the_articles_v2_delay_key_and_a_missing_delay_are_caught(seed_root, seed_read, helm, tmp_path):
    """The article's dnsChallenge.delayBeforeCheck is deprecated since Traefik v3.3; v3.5.1 reads
    propagation.delayBeforeChecks, so the values must say that, with the lab's delay."""
    def v2_key(v):
        v["certificatesResolvers"]["cloudflare-resolver"]["acme"]["dnsChallenge"] = {
            "provider": "cloudflare", "delayBeforeCheck": 10}
    assert failures(seed_read, broken(seed_root, tmp_path / "a", "traefik", v2_key), helm) == [
        "  traefik: Deployment traefik: --certificatesresolvers.cloudflare-resolver.acme.dnsChallenge.delayBeforeCheck"
        "=10 is deprecated since Traefik v3.3: propagation.delayBeforeChecks is the key",
        "  traefik: Deployment traefik: cloudflare-resolver waits no delay before checking the DNS-01 TXT record; "
        "Acme(delay_before_checks=10) asks 10s"]

    def other_delay(v):
        v["certificatesResolvers"]["cloudflare-resolver"]["acme"]["dnsChallenge"]["propagation"] = {
            "delayBeforeChecks": "1m"}
    assert failures(seed_read, broken(seed_root, tmp_path / "b", "traefik", other_delay), helm) == [
        "  traefik: Deployment traefik: cloudflare-resolver waits 60s before checking the DNS-01 TXT record; "
        "Acme(delay_before_checks=10) asks 10s"]


def test_an_object_kubernetes_would_refuse_is_caught(seed_root, seed_read, helm, tmp_path):
    def bad(v):
        v["nodeSelector"] = {"role": "application", "proxy": True}  # a boolean label value
    lines = failures(seed_read, broken(seed_root, tmp_path, "traefik", bad), helm)
    assert lines[0] == "  traefik: Deployment traefik: True is not of type 'string', 'null' at spec/template/spec/nodeSelector/proxy"


def test_a_missing_chart_or_helm_skips_never_passes(seed_root, seed_read, tmp_path):
    with pytest.raises(cluster.Unavailable, match="no packaged chart rook-ceph-v1.18.9.tgz"):
        cluster.prove(seed_read.lab, seed_root / "cluster", seed_read.options, charts=tmp_path, helm="/bin/true")
    with pytest.raises(cluster.Unavailable, match="the lab has no cluster layer"):
        cluster.prove(seed_read.lab, tmp_path, seed_read.options, helm="/bin/true")


def test_no_secret_name_is_a_value_and_no_token_lands_in_a_file():
    """The generated files name the secrets (Kubernetes Secret keys), never hold them; the Secret objects are
    names only (tests/test_cluster_deploy.py follows their values to kubectl's stdin and nowhere else)."""
    lab = acme_lab()
    texts = prepare(lab).texts()
    secrets = [s for ks in helmfile.kube_secrets(lab) for s in ks.data.values()]
    assert {s.name for s in secrets} == {"cloudflare-dns-api-token", "cloudflare-zone-api-token"}
    assert all(isinstance(s, Secret) for s in secrets)


def test_graph_and_policy_show_the_cluster_components(seed):
    from homelab import graph, policy

    lab = seed[0]
    topo = graph.topology(lab)
    assert topo["paths"]["releases"] == [
        {"name": "rook-ceph", "namespace": "rook-ceph", "chart": "rook-release/rook-ceph", "version": "v1.18.9"},
        {"name": "rook-ceph-cluster", "namespace": "rook-ceph", "chart": "rook-release/rook-ceph-cluster",
         "version": "v1.18.9"},
        {"name": "traefik", "namespace": "traefik", "chart": "traefik/traefik", "version": "37.1.0"}]
    assert [n for n in topo["nodes"] if n["id"] == "rook"] == [
        {"id": "rook", "lines": ["Rook Ceph v1.18.9", "3 mon · pool ×1"], "class": "svc", "place": "cluster",
         "shape": "subroutine"}]
    assert [e for e in topo["edges"] if e["to"] == "rook"] == [
        {"from": "hanaakari", "to": "rook", "lines": ["OSD sda"], "style": "-->"}]
    assert [(r["release"], r["nodeports"]) for r in policy.to_json(lab)["cluster"]] == [
        ("rook-ceph", []), ("rook-ceph-cluster", []), ("traefik", [31080, 31443])]


# ---------------------------------------------------------------- the YAML writer

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from homelab.yamltext import Commented, dump, plain  # noqa: E402

_scalars = st.one_of(st.text(), st.integers(), st.booleans(), st.none())
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(min_size=1), inner, max_size=4)), max_leaves=12)


@given(st.dictionaries(st.text(min_size=1), _values, max_size=5), st.text())
@settings(deadline=None)
def test_any_values_read_back_exactly(data, comment):
    """Whatever a component puts in its values (hostile strings, YAML 1.1 words, numbers as text) reads back
    as itself, comments included anywhere."""
    assert yaml.safe_load(dump(data) or "{}") == data
    assert yaml.safe_load(dump({"k": Commented(data, comment)})) == {"k": data}


@pytest.mark.parametrize("word", ["true", "yes", "on", "Off", "null", "~", "1e3", "0x1F", "012", ".5", "-1",
                                  "1_000", "", " lead", "trail ", "a: b", "#x", "- x", "x #y", "*a", "&a", "!t"])
def test_strings_a_reader_could_take_for_something_else_are_quoted(word):
    assert not plain(word)
    assert yaml.safe_load(dump({"v": word})) == {"v": word}
