"""Lab-wide facts that rules used to recompute for every host (issue 19: a 10,000-host build from nothing),
now found once per lab: the verdicts they give stay exactly what they were."""

from __future__ import annotations

import attrs
import pytest

from . import labkit
from homelab import CephStorage, Host, RookCeph, Worker
from homelab.validate import problems_of


def _ceph_lab(extra_workers: int):
    hosts = [attrs.evolve(h, roles=[CephStorage(disks=["/dev/sda"]) if isinstance(r, CephStorage) else r
                                    for r in h.roles]) for h in labkit.seed_hosts()]
    hosts += [Host(hostname=f"plain{i}", system="x86_64-linux", state_version="25.05", interface="enp1s0",
                   address=f"192.168.10.{30 + i}", roles=[Worker()]) for i in range(extra_workers)]
    return labkit.lab(hosts, components=[RookCeph()])


def test_rook_names_every_node_whose_kubelet_directory_the_csi_plugin_misses():
    lab = _ceph_lab(3)
    found = [(p.where, p.field, p.severity, p.reason) for p in problems_of(lab) if p.field == "RookCeph.hosts"]
    # the Ceph hosts' kubelets use /var/lib/kubelet; a node without CephStorage keeps nixpkgs' directory
    assert found == [("cluster", "RookCeph.hosts", "warning",
                      "the CSI plugin registers under the kubelet directory /var/lib/kubelet, which the kubelet of "
                      "plain0, plain1, plain2 does not use: pods there cannot mount Ceph volumes (give those hosts "
                      "CephStorage())")]


def test_rook_names_ten_such_nodes_and_counts_the_rest():
    lab = _ceph_lab(13)
    found = [p.reason for p in problems_of(lab) if p.field == "RookCeph.hosts"]
    names = ", ".join(sorted(f"plain{i}" for i in range(13))[:10])
    assert found == ["the CSI plugin registers under the kubelet directory /var/lib/kubelet, which the kubelet of "
                     f"{names} and 3 more does not use: pods there cannot mount Ceph volumes (give those hosts "
                     "CephStorage())"]


def test_rook_says_nothing_when_every_node_has_the_ceph_hosts_kubelet_directory():
    assert [p for p in problems_of(_ceph_lab(0)) if p.field == "RookCeph.hosts"] == []


def test_realpath_with_its_folders_kept_answers_what_os_path_realpath_does(tmp_path, monkeypatch):
    import itertools
    import os

    from homelab.load import realpath

    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "x" / "y").mkdir(parents=True)
    (tmp_path / "a" / "b" / "c" / "f.nix").write_text("")
    (tmp_path / "x" / "y" / "g.nix").write_text("")
    (tmp_path / "a" / "lx").symlink_to(tmp_path / "x")  # a folder link, absolute
    (tmp_path / "a" / "b" / "lg.nix").symlink_to("../../x/y/g.nix")  # a file link, relative
    (tmp_path / "a" / "b" / "lc").symlink_to("c")
    (tmp_path / "x" / "back").symlink_to("../a")
    (tmp_path / "a" / "dangling").symlink_to("nowhere")
    monkeypatch.chdir(tmp_path)
    names = ["a", "b", "c", "f.nix", "lx", "y", "g.nix", "lg.nix", "lc", "..", ".", "x", "back", "missing",
             "dangling"]
    folders: dict[str, str] = {}  # kept across every path, as a load keeps it
    asked = 0
    for k in (1, 2, 3):
        for combo in itertools.product(names, repeat=k):
            for base in (str(tmp_path) + "/", ""):
                path = base + "/".join(combo)
                assert realpath(path, folders) == os.path.realpath(path), path
                asked += 1
    assert asked == 2 * (15 + 15**2 + 15**3)


@pytest.mark.parametrize("text, marked", [
    ("# homelab: replace this file\n{ }\n", True),
    ("# homelab: replace this file\r\n{ }\n", True),
    ("# homelab: replace this file\r{ }\n", True),  # an old Mac line end: a line of its own, as text mode reads it
    ("  # homelab: replace this file  \n", True),
    ("# homelab: replace this file", True),
    ("# homelab: replace this file, done\n", False),
    ("{ }\n# homelab: replace this file\n", False),
    ("\ufeff# homelab: replace this file\n", False),  # a BOM is not stripped (utf-8, not utf-8-sig)
    ("# homelab: replace this file" + " " * 5000 + "\n{ }\n", True),  # a first line longer than the head read
    ("x" * 5000 + "\n", False),
    ("", False),
])
def test_a_placeholder_is_known_by_its_first_line(tmp_path, text, marked):
    from homelab.load import PLACEHOLDER, is_placeholder

    assert PLACEHOLDER == "# homelab: replace this file"
    f = tmp_path / "hardware-configuration.nix"
    f.write_bytes(text.encode())
    assert is_placeholder(f) is marked
    assert is_placeholder(tmp_path / "missing.nix") is False
