"""The CLI as a user runs it: build, no-op builds, --check, one host, pruning, show, usage errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from homelab.cli import main

from .conftest import copy_lab


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """path -> (inode, mtime_ns, bytes) of every file under hosts/ and modules/."""
    out = {}
    for p in sorted([*root.rglob("hosts/**/*"), *root.rglob("modules/**/*"), *root.rglob("cluster/**/*")]):
        if p.is_file() and "__pycache__" not in p.parts:
            st = p.stat()
            out[p.relative_to(root).as_posix()] = (st.st_ino, st.st_mtime_ns, p.read_bytes())
    return out


def _generated(root: Path) -> list[Path]:
    return [*root.glob("hosts/*/default.nix"), *root.glob("modules/**/*.nix"), root / "hosts/lab.nix",  # the lab's modules/ only
            *root.glob("cluster/*.yaml"), *root.glob("cluster/values/*.yaml")]


def test_build_from_scratch_writes_every_file(lab_copy, nix, capsys):
    for p in _generated(lab_copy):
        p.unlink()
    assert main(["build", "--root", str(lab_copy)]) == 0
    out = capsys.readouterr().out
    # 16 modules (helm on the control plane among them) + hosts/lab.nix, which nix reads back; the cluster layer's
    # helmfile and 3 values files
    assert "wrote 21" in out and "nix read back 17 generated files" in out


def test_the_repository_lab_built_from_scratch_is_what_is_committed(repo, tmp_path, nix, capsys):
    """Whatever hosts/ holds: its sources alone give exactly the generated files beside them."""
    copy_lab(repo, tmp_path)
    committed = {p.relative_to(repo): p.read_bytes() for p in _generated(repo)}
    for p in _generated(tmp_path):
        p.unlink()
    assert main(["build", "--root", str(tmp_path)]) == 0
    assert f"wrote {len(committed)}," in capsys.readouterr().out
    assert {p.relative_to(tmp_path): p.read_bytes() for p in _generated(tmp_path)} == committed


def test_a_no_op_build_rewrites_nothing(lab_copy, nix, capsys):
    before = snapshot(lab_copy)
    assert main(["build", "--root", str(lab_copy)]) == 0
    assert "wrote 0, unchanged 21" in capsys.readouterr().out
    assert snapshot(lab_copy) == before  # same inodes, same mtimes, same bytes


def test_check_lists_stale_files_and_exits_1(lab_copy, capsys):
    assert main(["build", "--check", "--root", str(lab_copy)]) == 0
    host_py = lab_copy / "hosts/tokiwa/host.py"
    host_py.write_text(host_py.read_text().replace('interface="enp1s0"', 'interface="enp2s0"'))
    before = snapshot(lab_copy)
    assert main(["build", "--check", "--root", str(lab_copy)]) == 1
    out = capsys.readouterr().out
    assert "hosts/tokiwa/default.nix" in out and "modules/k8s/base.nix" not in out
    assert snapshot(lab_copy) == before
    # a node's address is in every node's /etc/hosts: the shared base module goes stale too
    host_py.write_text(host_py.read_text().replace("192.168.10.11/24", "192.168.10.21/24"))
    assert main(["build", "--check", "--root", str(lab_copy)]) == 1
    assert "modules/k8s/base.nix" in capsys.readouterr().out


def test_building_one_host_writes_only_its_files(lab_copy, nix, capsys):
    host_py = lab_copy / "hosts/tokiwa/host.py"
    host_py.write_text(host_py.read_text().replace('roles=[', 'kernel_params=["mitigations=auto"],\n    roles=['))
    y = lab_copy / "hosts/yomogi/host.py"
    y.write_text(y.read_text().replace('"services.openssh.enable": True', '"services.openssh.enable": True, '
                                       '"time.timeZone": "Asia/Tokyo"'))
    before = snapshot(lab_copy)
    assert main(["build", str(lab_copy / "hosts/tokiwa")]) == 0
    captured = capsys.readouterr()
    assert "1 host: wrote 1, unchanged 8" in captured.out and "also building" not in captured.err
    after = snapshot(lab_copy)
    assert [p for p in after if after[p] != before.get(p)] == ["hosts/tokiwa/default.nix"]
    assert main(["build", "--check", "--root", str(lab_copy)]) == 1  # yomogi is still stale
    assert capsys.readouterr().out.split() == ["out", "of", "date", "(run", "`homelab", "build`):",
                                               "hosts/yomogi/default.nix"]


def test_removed_host_and_unused_modules_are_pruned(lab_copy, nix, capsys):
    import shutil

    shutil.rmtree(lab_copy / "hosts/hanaakari")
    # the DNS zone now points at no ingress host: drop the DnsServer role from yomogi too
    y = lab_copy / "hosts/yomogi/host.py"
    y.write_text(y.read_text().replace('        DnsServer(forward=["1.1.1.1", "1.0.0.1"]),\n', ""))
    # and the cluster layer loses its ingress and its only Ceph disk: Traefik and Rook Ceph go too (the seed lab
    # lists Traefik, for its ACME resolver: drop that)
    c = lab_copy / "hosts/cluster.py"
    text = c.read_text()
    start, end = text.index("    components=["), text.index("    ],\n", text.index("    components=[")) + len("    ],\n")
    c.write_text(text[:start] + text[end:])
    assert main(["build", "--root", str(lab_copy)]) == 0
    out = capsys.readouterr().out
    assert "removed modules/ingress/nginx-stream.nix" in out
    assert "removed modules/dns/coredns.nix" in out
    assert {ln for ln in out.splitlines() if ln.startswith("  removed cluster/")} == {
        "  removed cluster/helmfile.yaml", "  removed cluster/values/traefik.yaml",
        "  removed cluster/values/rook-ceph.yaml", "  removed cluster/values/rook-ceph-cluster.yaml"}
    assert not (lab_copy / "modules/ingress/nginx-stream.nix").exists()
    assert main(["build", "--check", "--root", str(lab_copy)]) == 0


def test_show_reads_the_files_on_disk_through_nix(lab_copy, nix, capsys):
    assert main(["show", str(lab_copy / "hosts/yomogi"), "--json"]) == 0
    opts = json.loads(capsys.readouterr().out)
    assert opts["services.kubernetes.roles"] == ["master", "node"]
    # show reads what is on disk, not Python memory: a forced edit shows up
    f = lab_copy / "modules/k8s/ceph.nix"
    f.write_text(f.read_text().replace('"1048576"', '"65536"'))
    assert main(["show", str(lab_copy / "hosts/yomogi"), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["systemd.services.containerd.serviceConfig"]["LimitNOFILE"] == "65536"
    assert "modules/k8s/ceph.nix" in captured.err  # and says the file differs from the model


def test_usage_mistakes_exit_2_without_traceback(lab_copy, capsys):
    assert main(["build", str(lab_copy / "hosts/nosuchhost")]) == 2
    err = capsys.readouterr().err
    assert "nosuchhost" in err and "Traceback" not in err
    assert main(["build", str(lab_copy / "modules")]) == 2
    assert "name a host folder" in capsys.readouterr().err


def test_missing_nix_refuses_to_write_unverified_files(lab_copy, tmp_path, capsys, monkeypatch):
    (lab_copy / "modules/k8s/ceph.nix").unlink()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["build", "--root", str(lab_copy)]) == 4
    captured = capsys.readouterr()
    assert "nothing was written" in captured.err and "nix-bin" in captured.err and "--no-verify" in captured.err
    assert not (lab_copy / "modules/k8s/ceph.nix").exists()


def test_no_verify_writes_and_says_so_in_the_output(lab_copy, tmp_path, capsys, monkeypatch):
    (lab_copy / "modules/k8s/ceph.nix").unlink()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["build", "--no-verify", "--root", str(lab_copy)]) == 0
    captured = capsys.readouterr()
    assert "WITHOUT being read back by nix" in captured.err and "NOT verified by nix" in captured.out
    assert (lab_copy / "modules/k8s/ceph.nix").exists()


def test_python_dash_m_homelab_runs_as_a_program(lab_copy, nix):
    # the installed package (pip install -e .), run from the lab's folder as a user does
    r = subprocess.run([sys.executable, "-m", "homelab", "build", "hosts/yomogi"], cwd=lab_copy,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "1 host: wrote 0, unchanged 12" in r.stdout
    assert "warning: a control plane booted from an SD card" in r.stderr


@pytest.mark.parametrize("cmd", ["build", "check", "show", "graph", "plan", "expect", "init", "test"])
def test_every_command_has_help_with_an_example(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    assert "example: homelab " in capsys.readouterr().out  # in-process: named `homelab`


def test_a_hand_written_import_that_does_not_parse_is_a_user_problem(lab_copy, nix, capsys):
    hw = lab_copy / "hosts/tokiwa/hardware-configuration.nix"
    hw.write_text("{ ... }: { fileSystems = ; }\n")
    (lab_copy / "modules/k8s/ceph.nix").unlink()
    before = snapshot(lab_copy)
    assert main(["build", "--root", str(lab_copy)]) == 2
    err = capsys.readouterr().err
    assert "hosts/tokiwa: imports: hardware-configuration.nix is not valid Nix" in err
    assert "Traceback" not in err and str(lab_copy) not in err
    assert snapshot(lab_copy) == before
