"""``homelab deploy`` and ``homelab verify`` without machines: the plan, the pinned ``--dry-run`` of the seed lab,
the refusals, and the real vm-tests suite accepting the command lines deploy gives it.

The deploy itself, over real SSH against stand-in hosts, is tests/test_ops_live.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

from homelab import Ssh, deploy
from homelab.expect import lab_expectations
from homelab.harness import VM_TESTS
from homelab.load import load_or_raise
from homelab.remote import SshOptions

from . import labkit, opslab
from .conftest import REPO

# The seed lab's --dry-run, pinned: $LAB, $PYTHON, $SUITE and $TMP stand for this run's paths.
PINNED = r"""# homelab deploy of the lab in $LAB: yomogi then hanaakari, tokiwa (up to 2 at a time)
# each host: its generation, switch, its generation again, its live checks (the vm-tests suite over SSH);
# a host failing its checks is rolled back and the rollout stops
# the suite's reports go to $TMP/homelab-deploy-<new>

# yomogi: control plane, aarch64-linux, built on yomogi itself
ssh -o BatchMode=yes -o ConnectTimeout=10 root@192.168.10.10 'nixos-rebuild list-generations --json'
NIX_SSHOPTS='-o BatchMode=yes -o ConnectTimeout=10' nixos-rebuild switch --flake '$LAB#yomogi' --target-host root@192.168.10.10 --build-host root@192.168.10.10 --no-reexec
ssh -o BatchMode=yes -o ConnectTimeout=10 root@192.168.10.10 'nixos-rebuild list-generations --json'
cd $LAB && PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 $PYTHON -m pytest -p testinfra.plugin $SUITE --hosts=ssh://root@192.168.10.10 --lab-root=$LAB --lab-host=yomogi --homelab-scope=host '--junitxml=$TMP/homelab-deploy-<new>/yomogi.xml' -q
#   if a check fails (then the rollout stops): NIX_SSHOPTS='-o BatchMode=yes -o ConnectTimeout=10' nixos-rebuild switch --rollback --flake '$LAB#yomogi' --target-host root@192.168.10.10 --no-reexec

# hanaakari: worker, x86_64-linux, built here
ssh -o BatchMode=yes -o ConnectTimeout=10 root@192.168.10.12 'nixos-rebuild list-generations --json'
NIX_SSHOPTS='-o BatchMode=yes -o ConnectTimeout=10' nixos-rebuild switch --flake '$LAB#hanaakari' --target-host root@192.168.10.12 --no-reexec
ssh -o BatchMode=yes -o ConnectTimeout=10 root@192.168.10.12 'nixos-rebuild list-generations --json'
cd $LAB && PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 $PYTHON -m pytest -p testinfra.plugin $SUITE --hosts=ssh://root@192.168.10.12 --lab-root=$LAB --lab-host=hanaakari --homelab-scope=host '--junitxml=$TMP/homelab-deploy-<new>/hanaakari.xml' -q
#   if a check fails (then the rollout stops): NIX_SSHOPTS='-o BatchMode=yes -o ConnectTimeout=10' nixos-rebuild switch --rollback --flake '$LAB#hanaakari' --target-host root@192.168.10.12 --no-reexec
#   then, unless the node is Ready already:
ssh -o BatchMode=yes -o ConnectTimeout=10 root@192.168.10.10 'env KUBECONFIG=/etc/kubernetes/cluster-admin.kubeconfig kubectl get node hanaakari -o '"'"'jsonpath={.status.conditions[?(@.type=="Ready")].status}/{.spec.unschedulable}'"'"''
#   join it with the control plane's API token, passed from one ssh to the other by a pipe:
ssh -o BatchMode=yes -o ConnectTimeout=10 root@192.168.10.10 'cat /var/lib/kubernetes/secrets/apitoken.secret' | ssh -o BatchMode=yes -o ConnectTimeout=10 root@192.168.10.12 'timeout 300 nixos-kubernetes-node-join'
#   and wait until it is Ready: the same kubectl get node, every 2 s

# tokiwa: worker, x86_64-linux, built here
ssh -o BatchMode=yes -o ConnectTimeout=10 root@192.168.10.11 'nixos-rebuild list-generations --json'
NIX_SSHOPTS='-o BatchMode=yes -o ConnectTimeout=10' nixos-rebuild switch --flake '$LAB#tokiwa' --target-host root@192.168.10.11 --no-reexec
ssh -o BatchMode=yes -o ConnectTimeout=10 root@192.168.10.11 'nixos-rebuild list-generations --json'
cd $LAB && PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 $PYTHON -m pytest -p testinfra.plugin $SUITE --hosts=ssh://root@192.168.10.11 --lab-root=$LAB --lab-host=tokiwa --homelab-scope=host '--junitxml=$TMP/homelab-deploy-<new>/tokiwa.xml' -q
#   if a check fails (then the rollout stops): NIX_SSHOPTS='-o BatchMode=yes -o ConnectTimeout=10' nixos-rebuild switch --rollback --flake '$LAB#tokiwa' --target-host root@192.168.10.11 --no-reexec
#   then, unless the node is Ready already:
ssh -o BatchMode=yes -o ConnectTimeout=10 root@192.168.10.10 'env KUBECONFIG=/etc/kubernetes/cluster-admin.kubeconfig kubectl get node tokiwa -o '"'"'jsonpath={.status.conditions[?(@.type=="Ready")].status}/{.spec.unschedulable}'"'"''
#   join it with the control plane's API token, passed from one ssh to the other by a pipe:
ssh -o BatchMode=yes -o ConnectTimeout=10 root@192.168.10.10 'cat /var/lib/kubernetes/secrets/apitoken.secret' | ssh -o BatchMode=yes -o ConnectTimeout=10 root@192.168.10.11 'timeout 300 nixos-kubernetes-node-join'
#   and wait until it is Ready: the same kubectl get node, every 2 s

# once every host passed: the cluster checks
cd $LAB && PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 $PYTHON -m pytest -p testinfra.plugin $SUITE --hosts=ssh://root@192.168.10.12,ssh://root@192.168.10.11,ssh://root@192.168.10.10 --lab-root=$LAB --lab-host=192.168.10.12=hanaakari --lab-host=192.168.10.11=tokiwa --lab-host=192.168.10.10=yomogi --homelab-scope=cluster '--junitxml=$TMP/homelab-deploy-<new>/cluster.xml' -q

# the cluster layer (cluster/helmfile.yaml), on the control plane, once every host passed
# label node hanaakari
ssh -o BatchMode=yes -o ConnectTimeout=10 root@192.168.10.10 'env KUBECONFIG=/etc/kubernetes/cluster-admin.kubeconfig kubectl label node hanaakari proxy=true --overwrite'
# release traefik (traefik 37.1.0)
ssh -o BatchMode=yes -o ConnectTimeout=10 root@192.168.10.10 'env KUBECONFIG=/etc/kubernetes/cluster-admin.kubeconfig helm upgrade --install traefik traefik --repo https://traefik.github.io/charts --version 37.1.0 --namespace traefik --create-namespace --wait --timeout 900s -f -' < $LAB/cluster/values/traefik.yaml
"""


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory) -> Path:
    return opslab.write_seed_lab(tmp_path_factory.mktemp("deploy") / "lab")


_REBUILD_BIN: list[str] = []


def rebuild_bin() -> str:
    """A folder with a stand-in ``nixos-rebuild`` (never run by a dry run): deploy finds one on PATH, as on NixOS."""
    if not _REBUILD_BIN:
        import atexit
        import shutil
        import tempfile

        d = tempfile.mkdtemp(prefix="homelab-test-rebuild-")
        atexit.register(shutil.rmtree, d, True)
        os.symlink("/bin/false", os.path.join(d, "nixos-rebuild"))
        _REBUILD_BIN.append(d)
    return _REBUILD_BIN[0]


def homelab(root: Path, *args: str, env: dict | None = None, tmp: Path | None = None) -> subprocess.CompletedProcess:
    e = {**os.environ, "PYTHONPATH": str(REPO), "PATH": f"{rebuild_bin()}:{os.environ['PATH']}", **(env or {})}
    if tmp is not None:
        e["TMPDIR"] = str(tmp)
    return subprocess.run([sys.executable, "-m", "homelab", *args], cwd=root, env=e, capture_output=True, text=True,
                          timeout=120)


def test_dry_run_of_the_seed_lab_is_pinned(lab_dir, tmp_path):
    r = homelab(lab_dir, "deploy", "--dry-run", tmp=tmp_path)
    assert r.returncode == 0, r.stderr
    want = (PINNED.replace("$LAB", str(lab_dir)).replace("$PYTHON", sys.executable)
            .replace("$SUITE", str(VM_TESTS)).replace("$TMP", str(tmp_path)))
    assert r.stdout == want
    assert list(tmp_path.iterdir()) == []  # a dry run makes nothing


def test_dry_run_without_rollback_and_of_one_worker(lab_dir, tmp_path):
    r = homelab(lab_dir, "deploy", "hosts/tokiwa", "--dry-run", "--no-rollback", "--parallel", "3", tmp=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"# homelab deploy of the lab in {lab_dir}: tokiwa (up to 3 at a time)"
    assert "left as it is (--no-rollback)" in lines[2]
    assert not any("--rollback" in line for line in lines)
    switch = [line for line in lines if "nixos-rebuild switch" in line]
    assert switch == [f"NIX_SSHOPTS='-o BatchMode=yes -o ConnectTimeout=10' nixos-rebuild switch --flake "
                      f"'{lab_dir}#tokiwa' --target-host root@192.168.10.11 --no-reexec"]
    assert "--homelab-scope=cluster" in lines[-1] and "--hosts=ssh://root@192.168.10.11 " in lines[-1]


def test_a_user_other_than_root_a_port_and_a_build_host(lab_dir, tmp_path):
    lab, _ = load_or_raise(lab_dir)
    lab = labkit.evolve_host(lab, "tokiwa", ssh=Ssh(user="admin", host="tokiwa.lan", port=2222),
                             build_on="hanaakari")
    lab = labkit.evolve_host(lab, "hanaakari", ssh=Ssh(port=2222))
    opts = SshOptions("/etc/homelab/ssh_config")
    plan = deploy.make_steps(lab, lab_dir, ["tokiwa", "hanaakari"], tmp_path, parallel=2, rollback=True, opts=opts,
                            suite=VM_TESTS, python="python3")
    assert plan.first == () and [h.name for h in plan.then] == ["hanaakari", "tokiwa"]
    t = plan.then[1]
    assert t.switch.argv == ("nixos-rebuild", "switch", "--flake", f"{lab_dir}#tokiwa", "--target-host",
                             "admin@tokiwa.lan", "--build-host", "root@192.168.10.12", "--no-reexec", "--sudo")
    assert dict(t.switch.env) == {"NIX_SSHOPTS": "-F /etc/homelab/ssh_config -o BatchMode=yes -o ConnectTimeout=10 "
                                                 "-p 2222"}
    assert t.rollback.argv[-2:] == ("--no-reexec", "--sudo")
    assert t.generation.argv == ("ssh", "-F", "/etc/homelab/ssh_config", "-o", "BatchMode=yes", "-o",
                                 "ConnectTimeout=10", "-p", "2222", "admin@tokiwa.lan",
                                 "nixos-rebuild list-generations --json")
    # what needs root goes through sudo -n on the worker; the control plane is still reached as root
    assert t.join.join.argv[-1] == "sudo -n timeout 300 nixos-kubernetes-node-join"
    assert t.join.token.argv[-2:] == ("root@192.168.10.10", "cat /var/lib/kubernetes/secrets/apitoken.secret")
    assert "--hosts=ssh://admin@tokiwa.lan:2222" in t.checks.argv and "--ssh-config=/etc/homelab/ssh_config" in \
        t.checks.argv
    # a build host listening on another port than its target cannot share NIX_SSHOPTS
    odd = labkit.evolve_host(lab, "hanaakari", ssh=Ssh(port=22))
    assert deploy.selection_problems(odd, ["tokiwa"]) == [
        "hosts/tokiwa: build_on: hanaakari listens for SSH on port 22 and tokiwa on 2222; nixos-rebuild gives both "
        "the same NIX_SSHOPTS, so use one port (or name the ports in an ssh_config and give the hosts' names as "
        "Ssh(host=...))"]
    assert deploy.selection_problems(lab, ["tokiwa", "hanaakari"]) == []


def test_the_real_suite_collects_what_deploy_asks_for(lab_dir, tmp_path):
    """The vm-tests suite (not the stand-in) takes deploy's command lines: one host's host-scope checks, then all
    checks of every host."""
    lab, _ = load_or_raise(lab_dir)
    plan = deploy.make_steps(lab, lab_dir, [h.hostname for h in lab.hosts], tmp_path, parallel=2, rollback=True,
                            opts=SshOptions(), suite=deploy.suite_dir(lab_dir))
    exp = lab_expectations(lab)
    for step, want in ((plan.then[1].checks, {("tokiwa", c.id) for c in exp["tokiwa"].checks if c.scope == "host"}),
                       (plan.cluster, {(n, c.id) for n, e in exp.items() for c in e.checks})):
        r = subprocess.run([*step.argv, "--collect-only"], cwd=step.cwd,
                           env={**os.environ, **dict(step.env), "PYTHONPATH": str(REPO)},
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        got = set()
        for line in r.stdout.splitlines():
            if "::" in line:
                name, _, cid = line.split("[", 1)[1].split("-ssh://")[0].partition("/")
                got.add((name, cid))
        ids = {(n, c.split(":", 1)[1]) for n, c in want}
        assert got == ids


def test_generations_and_failed_checks_are_read_from_what_the_tools_write(tmp_path):
    gens = [{"generation": 42, "date": "2026-07-01 12:00:00", "nixosVersion": "26.05", "kernelVersion": "6.18",
             "configurationRevision": "Unknown", "specialisations": [], "current": False},
            {"generation": 41, "date": "2026-06-30 12:00:00", "nixosVersion": "26.05", "kernelVersion": "6.18",
             "configurationRevision": "Unknown", "specialisations": [], "current": True}]
    assert deploy.current_generation(json.dumps(gens)) == 41
    assert deploy.current_generation("error: not NixOS") is None
    assert deploy.current_generation(json.dumps([dict(g, current=False) for g in gens])) is None
    # a real pytest run with the suite's user_properties, written as JUnit XML
    (tmp_path / "test_x.py").write_text(
        "import pytest\n"
        "@pytest.mark.parametrize('cid,ok', [('service:a', True), ('service:b', False), ('dns:c', False)])\n"
        "def test_c(request, cid, ok):\n"
        "    request.node.user_properties += [('lab_host', 'tokiwa'), ('check', cid)]\n"
        "    assert ok\n")
    report = tmp_path / "r.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "junit_family=xunit1",
                    f"--junitxml={report}", str(tmp_path / "test_x.py")], capture_output=True, timeout=120)
    assert deploy.failed_checks(str(report)) == ["tokiwa: service:b", "tokiwa: dns:c"]
    assert deploy.failed_checks(str(tmp_path / "missing.xml")) == []


def test_refusals_and_missing_tools(lab_dir, tmp_path):
    r = homelab(lab_dir, "deploy", "--parallel", "0", "--dry-run")
    assert r.returncode == 2 and "--parallel 0" in r.stderr and "Traceback" not in r.stderr
    r = homelab(lab_dir, "deploy", "--dry-run", "--suite", str(tmp_path))
    assert r.returncode == 2 and "no vm-tests suite" in r.stderr
    r = homelab(lab_dir, "deploy", "--dry-run", "--ssh-config", str(tmp_path / "nope"))
    assert r.returncode == 2 and "no such file" in r.stderr
    r = homelab(lab_dir, "deploy", "hosts/nosuch", "--dry-run")
    assert r.returncode == 2 and "no such host folder" in r.stderr
    # no nixos-rebuild here: exit 4 before any connection
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "ssh").symlink_to("/bin/false")
    r = homelab(lab_dir, "deploy", env={"PATH": str(bin_)})
    assert r.returncode == 4 and "nixos-rebuild is not on PATH, and nix (to run the lab's pinned one) is not either" \
        in r.stderr, r.stderr
    # no flake: nixos-rebuild --flake has nothing to read
    bare = tmp_path / "bare"
    opslab.write_seed_lab(bare)
    (bare / "flake.nix").unlink()
    r = homelab(bare, "deploy", "--dry-run")
    assert r.returncode == 2 and "no flake.nix" in r.stderr


def test_verify_dry_run_prints_the_suite_command(lab_dir, tmp_path):
    r = homelab(lab_dir, "verify", "hosts/tokiwa", "hosts/yomogi", "--dry-run", tmp=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == (
        "# each host answers SSH? (a host that does not is reported and left out of the checks)\n"
        "ssh -o BatchMode=yes -o ConnectTimeout=10 root@192.168.10.11 true\n"
        "ssh -o BatchMode=yes -o ConnectTimeout=10 root@192.168.10.10 true\n"
        f"cd {lab_dir} && PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {sys.executable} -m pytest -p testinfra.plugin "
        f"-p homelab.liveprogress {VM_TESTS} --hosts=ssh://root@192.168.10.11,ssh://root@192.168.10.10 --lab-root={lab_dir} "
        "--lab-host=192.168.10.11=tokiwa --lab-host=192.168.10.10=yomogi --homelab-scope=cluster "
        f"'--junitxml={tmp_path}/homelab-verify-<new>/verify.xml' -q\n")


def test_without_nixos_rebuild_deploy_runs_the_labs_pinned_one_through_nix(lab_dir, tmp_path):
    """No nixos-rebuild on PATH (Debian), nix there: the switch is `nix run github:NixOS/nixpkgs/<the lab's locked
    rev>#nixos-rebuild-ng -- switch ...` (the dry run prints the plan the real run executes; nix here is a stand-in).

    The package is ``nixos-rebuild-ng`` (pkgs/by-name/ni/nixos-rebuild-ng, mainProgram ``nixos-rebuild``);
    ``nixos-rebuild`` is only a deprecated alias of it (pkgs/top-level/aliases.nix, "Added 2025-12-02"), which a
    lab pinning an older nixpkgs resolves to the removed Bash version (no --no-reexec) and a later one to a throw.
    """
    lock = json.loads((lab_dir / "flake.lock").read_text())["nodes"]["nixpkgs"]["locked"]
    ref = f"github:NixOS/nixpkgs/{lock['rev']}#nixos-rebuild-ng"
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for tool in ("ssh", "python3", "sh", "env"):
        src = subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        (bin_ / tool).symlink_to(src)
    (bin_ / "nix").symlink_to("/bin/false")
    r = homelab(lab_dir, "deploy", "hosts/tokiwa", "--dry-run", env={"PATH": str(bin_)})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "# nixos-rebuild is not on PATH: the lab's pinned one runs through nix run"
    switch = [ln for ln in lines if " switch --flake " in ln and "--rollback" not in ln]
    assert switch == [f"NIX_SSHOPTS='-o BatchMode=yes -o ConnectTimeout=10' nix --extra-experimental-features "
                      f"'nix-command flakes' run '{ref}' -- switch --flake '{lab_dir}#tokiwa' --target-host "
                      "root@192.168.10.11 --no-reexec"]
    # no lock to pin it by: exit 4 saying exactly how
    nolock = tmp_path / "nolock"
    opslab.write_seed_lab(nolock)
    (nolock / "flake.lock").unlink()
    r = homelab(nolock, "deploy", "hosts/tokiwa", env={"PATH": str(bin_)})
    assert r.returncode == 4
    assert "flake.lock pins no github nixpkgs to run it from: run `nix flake lock` in the lab" in r.stderr
    assert "nix profile install nixpkgs#nixos-rebuild-ng" in r.stderr
