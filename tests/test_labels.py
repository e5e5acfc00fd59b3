"""Kubernetes node labels: Host.labels and the labels roles add, registered by each kubelet (--node-labels)."""

from __future__ import annotations

import attrs
import pytest

from homelab import Host, IngressProxy, Lab, LabError, Worker, readback
from homelab.build import check
from homelab.labels import label_problem, node_labels, node_labels_flag, selects
from homelab.role import Role

from . import labkit


@pytest.fixture(scope="module")
def options(seed_root, seed_compiled, nix):
    report = readback.read_back(seed_root, seed_compiled, nix)
    assert report.problems == []
    return report.options


def test_each_seed_kubelet_registers_exactly_its_labels(options, seed):
    """What nix reads back: hanaakari's kubelet gets role=application (host.py) and proxy=true (IngressProxy),
    beside CephStorage's --root-dir; the other nodes register no labels of homelab's."""
    words = {h: options[h].get("services.kubernetes.kubelet.extraOpts", "").split() for h in options}
    assert words == {
        "hanaakari": ["--node-labels=proxy=true,role=application", "--root-dir=/var/lib/kubelet"],
        "tokiwa": ["--root-dir=/var/lib/kubelet"],
        "yomogi": ["--root-dir=/var/lib/kubelet"],
    }
    lab = seed[0]
    assert {h.hostname: node_labels(lab, h) for h in lab.hosts} == {
        "hanaakari": {"proxy": "true", "role": "application"}, "tokiwa": {}, "yomogi": {}}


def test_labels_move_with_the_ingress_role():
    """IngressProxy's label follows the role: moved to tokiwa, tokiwa's kubelet registers proxy=true."""
    hosts = []
    for h in labkit.seed_hosts():
        roles = [r for r in h.roles if not isinstance(r, IngressProxy)]
        if h.hostname == "tokiwa":
            roles.append(IngressProxy())
        hosts.append(attrs.evolve(h, roles=roles))
    lab = labkit.lab(hosts)
    check(lab)
    assert {h.hostname: node_labels(lab, h) for h in lab.hosts} == {
        "hanaakari": {}, "tokiwa": {"proxy": "true"}, "yomogi": {}}


@pytest.mark.parametrize("key,value,reason", [
    ("kubernetes.io/role", "x", "namespace, which the kubelet keeps for itself"),
    ("node-role.kubernetes.io/worker", "", "namespace, which the kubelet keeps for itself"),
    ("foo.k8s.io/bar", "x", "namespace, which the kubelet keeps for itself"),
    ("role", True, "label values are strings"),
    ("-role", "x", "is not a label name"),
    ("role", "a b", "is not a label value"),
    ("role", "x" * 64, "is not a label value"),
    ("Example.COM/role", "x", "is not a label name"),
])
def test_bad_labels_are_refused_with_the_reason(key, value, reason):
    with pytest.raises(LabError) as e:
        labkit.evolve_host(labkit.lab(), "hanaakari", labels={key: value})
    [p] = e.value.problems
    assert p.field == f"labels[{key!r}]" and reason in p.reason


@pytest.mark.parametrize("key,value", [("node.kubernetes.io/pool", "a"), ("kubelet.kubernetes.io/x", ""),
                                       ("example.com/tier", "front_1.a"), ("proxy", "true")])
def test_labels_the_kubelet_accepts(key, value):
    assert label_problem(key, value) is None


def test_a_label_on_a_host_without_a_kubelet_is_refused():
    lab = labkit.lab()
    extra = Host(hostname="nas", system="x86_64-linux", state_version="25.05", interface="eth0",
                 address="192.168.10.20", roles=[], labels={"role": "storage"})
    with pytest.raises(LabError) as e:
        check(Lab(lab.cluster, [*lab.hosts, extra]))
    assert [(p.where, p.field) for p in e.value.problems] == [("hosts/nas", "labels")]


def test_a_role_label_contradicting_the_hosts_is_refused():
    lab = labkit.evolve_host(labkit.lab(), "hanaakari", labels={"proxy": "false"})
    with pytest.raises(LabError) as e:
        check(lab)
    [p] = e.value.problems
    assert (p.where, p.field) == ("hosts/hanaakari", "labels") and "proxy=false" in p.reason


def test_a_lab_role_adds_its_own_labels(tmp_path):
    @attrs.frozen
    class Gpu(Role):
        def node_labels(self, ctx):
            return {"example.com/gpu": "true"}

    hosts = [attrs.evolve(h, roles=[*h.roles, Gpu()]) if h.hostname == "tokiwa" else h for h in labkit.seed_hosts()]
    lab = labkit.lab(hosts)
    check(lab)
    assert node_labels(lab, lab.host("tokiwa")) == {"example.com/gpu": "true"}
    assert node_labels_flag(node_labels(lab, lab.host("tokiwa"))) == "--node-labels=example.com/gpu=true"


def test_the_flag_lists_every_label_sorted():
    assert node_labels_flag({"role": "application", "proxy": "true"}) == "--node-labels=proxy=true,role=application"


def test_worker_labels_need_no_other_role():
    lab = labkit.evolve_host(labkit.lab(), "tokiwa", labels={"tier": "batch"})
    check(lab)
    assert isinstance(lab.host("tokiwa").roles[0], Worker)
    assert node_labels(lab, lab.host("tokiwa")) == {"tier": "batch"}


def test_a_node_selector_selects_a_node_only_when_every_pair_is_one_of_its_labels():
    """What the cluster layer's proof matches each rendered nodeSelector with (homelab.proofs.cluster)."""
    node = {"proxy": "true", "role": "application"}
    selectors = [{}, {"proxy": "true"}, {"proxy": "true", "role": "application"}, {"role": "application",
                 "proxy": "yes"}, {"proxy": "false"}, {"zone": "a"}, {"proxy": "true", "zone": "a"}]
    assert [selects(s, node) for s in selectors] == [True, True, True, False, False, False, False]
    assert [selects(s, {}) for s in selectors] == [True, False, False, False, False, False, False]
