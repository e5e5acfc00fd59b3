"""Deploy's plan, exact and in-process (issue 19 item 3): the commands per host in order with their exact argv,
environment and folder; the live-checks command of one host and of the cluster; the suite folder; the testinfra
target. The subprocess tests in test_deploy.py pin the seed lab's --dry-run; these vary what it holds the same."""

from __future__ import annotations

from pathlib import Path

import attrs

from homelab import Host, Ssh, deploy
from homelab.harness import VM_TESTS
from homelab.remote import SshOptions

from . import labkit

AUTO = ("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
BASE = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=10")
STATUS = "-o 'jsonpath={.status.conditions[?(@.type==\"Ready\")].status}/{.spec.unschedulable}'"


def varied_lab():
    """The seed lab with a control plane reached as a user other than root, a worker on another port built on
    another host, a worker built here as root, and a host outside Kubernetes."""
    lab = labkit.lab()
    lab = labkit.evolve_host(lab, "yomogi", ssh=Ssh(user="ops"))
    lab = labkit.evolve_host(lab, "tokiwa", ssh=Ssh(user="admin", host="tokiwa.lan", port=2222),
                             build_on="hanaakari")
    nas = Host(hostname="nas", system="x86_64-linux", state_version="25.05", interface="enp1s0",
               address="192.168.10.20", roles=[])
    return type(lab)(lab.cluster, [*lab.hosts, nas], lab.sources)


def plan_of(tmp_path: Path, lab=None, names=None, rebuild=("nixos-rebuild",), opts=SshOptions()):
    lab = lab or varied_lab()
    return lab, deploy.make_steps(lab, tmp_path, names or [h.hostname for h in lab.hosts], tmp_path / "work",
                                  parallel=2, rollback=True, opts=opts, suite=VM_TESTS, python="py",
                                  rebuild=rebuild)


def shape(step):
    return step.argv, step.env, step.cwd


def checks_argv(root, spec, lab_host, scope, report):
    return ("py", "-m", "pytest", "-p", "testinfra.plugin", str(VM_TESTS), f"--hosts={spec}", f"--lab-root={root}",
            f"--lab-host={lab_host}", f"--homelab-scope={scope}", f"--junitxml={report}", "-q")


def test_each_host_gets_its_exact_commands_kind_and_build_place(tmp_path):
    lab, plan = plan_of(tmp_path, rebuild=("nix", "run", "pinned#nixos-rebuild", "--"))
    root, work = tmp_path.resolve(), tmp_path / "work"
    assert [h.name for h in plan.first] == ["yomogi"]
    assert [h.name for h in plan.then] == ["hanaakari", "nas", "tokiwa"]
    got = {hs.name: hs for hs in plan.hosts}
    assert {n: (hs.kind, hs.built, hs.report) for n, hs in got.items()} == {
        "yomogi": ("control plane", "built on yomogi itself", str(work / "yomogi.xml")),
        "hanaakari": ("worker", "built here", str(work / "hanaakari.xml")),
        "nas": ("host", "built here", str(work / "nas.xml")),
        "tokiwa": ("worker", "built on hanaakari", str(work / "tokiwa.xml")),
    }
    rb = ("nix", "run", "pinned#nixos-rebuild", "--")
    opts22 = (("NIX_SSHOPTS", "-o BatchMode=yes -o ConnectTimeout=10"),)
    opts2222 = (("NIX_SSHOPTS", "-o BatchMode=yes -o ConnectTimeout=10 -p 2222"),)
    want = {
        "yomogi": ("ops@192.168.10.10", opts22, ("--build-host", "ops@192.168.10.10"), ("--sudo",), ()),
        "hanaakari": ("root@192.168.10.12", opts22, (), (), ()),
        "nas": ("root@192.168.10.20", opts22, (), (), ()),
        "tokiwa": ("admin@tokiwa.lan", opts2222, ("--build-host", "root@192.168.10.12"), ("--sudo",),
                   ("-p", "2222")),
    }
    for name, (target, env, build, sudo, port) in want.items():
        hs = got[name]
        flake = f"{root}#{name}"
        assert shape(hs.switch) == ((*rb, "switch", "--flake", flake, "--target-host", target, *build,
                                     "--no-reexec", *sudo), env, None), name
        assert shape(hs.rollback) == ((*rb, "switch", "--rollback", "--flake", flake, "--target-host", target,
                                       "--no-reexec", *sudo), env, None), name
        assert shape(hs.generation) == (("ssh", *BASE, *port, target, "nixos-rebuild list-generations --json"),
                                        (), None), name
        spec = f"ssh://{target}" + (":2222" if port else "")
        assert shape(hs.checks) == (checks_argv(root, spec, name, "host", work / f"{name}.xml"), (AUTO,),
                                    str(root)), name
        assert hs.checks.what == f"live checks of {name} (host scope)"


def test_only_workers_are_joined_with_the_control_planes_token(tmp_path):
    lab, plan = plan_of(tmp_path)
    got = {hs.name: hs.join for hs in plan.hosts}
    assert got["yomogi"] is None and got["nas"] is None  # Rollout asks `join is not None`
    cp = ("ssh", *BASE, "ops@192.168.10.10")
    for name, target, port in (("hanaakari", "root@192.168.10.12", ()), ("tokiwa", "admin@tokiwa.lan",
                                                                         ("-p", "2222"))):
        j = got[name]
        assert j.node == name
        assert j.status.argv == (*cp, "sudo -n env KUBECONFIG=/etc/kubernetes/cluster-admin.kubeconfig kubectl get "
                                      f"node {name} {STATUS}")
        assert j.token.argv == (*cp, "sudo -n cat /var/lib/kubernetes/secrets/apitoken.secret")
        sudo = "sudo -n " if name == "tokiwa" else ""
        assert j.join.argv == ("ssh", *BASE, *port, target, f"{sudo}timeout 300 nixos-kubernetes-node-join")
    # without easyCerts no token to pass: nobody is joined
    _, plain = plan_of(tmp_path, lab=varied_lab().__class__(labkit.cluster(easy_certs=False), varied_lab().hosts))
    assert [hs.join for hs in plain.hosts] == [None] * 4


def test_the_cluster_checks_name_every_host_by_its_address(tmp_path):
    lab, plan = plan_of(tmp_path)
    root, work = tmp_path.resolve(), tmp_path / "work"
    specs = ["ssh://root@192.168.10.12", "ssh://root@192.168.10.20", "ssh://admin@tokiwa.lan:2222",
             "ssh://ops@192.168.10.10"]
    assert shape(plan.cluster) == (
        ("py", "-m", "pytest", "-p", "testinfra.plugin", str(VM_TESTS), "--hosts=" + ",".join(specs),
         f"--lab-root={root}", "--lab-host=192.168.10.12=hanaakari", "--lab-host=192.168.10.20=nas",
         "--lab-host=tokiwa.lan=tokiwa", "--lab-host=192.168.10.10=yomogi", "--homelab-scope=cluster",
         f"--junitxml={work / 'cluster.xml'}", "-q"), (AUTO,), str(root))
    assert plan.cluster.what == "live checks of the cluster (cluster scope)"
    assert plan.cluster_report == str(work / "cluster.xml")


def test_checks_with_progress_an_ssh_config_and_two_hosts(tmp_path):
    lab = varied_lab()
    two = [lab.host("nas"), lab.host("tokiwa")]
    step = deploy.checks_step(tmp_path, two, "host", "r.xml", SshOptions("/etc/ssh_cfg"), VM_TESTS, "py",
                              progress=True)
    assert shape(step) == (
        ("py", "-m", "pytest", "-p", "testinfra.plugin", "-p", "homelab.liveprogress", str(VM_TESTS),
         "--hosts=ssh://root@192.168.10.20,ssh://admin@tokiwa.lan:2222", f"--lab-root={tmp_path}",
         "--lab-host=192.168.10.20=nas", "--lab-host=tokiwa.lan=tokiwa", "--ssh-config=/etc/ssh_cfg",
         "--homelab-scope=host", "--junitxml=r.xml", "-q"), (AUTO,), str(tmp_path))
    assert step.what == "live checks of the cluster (host scope)"
    one = deploy.checks_step(tmp_path, [lab.host("nas")], "cluster", "r.xml", SshOptions(), VM_TESTS, "py")
    assert shape(one) == (checks_argv(tmp_path, "ssh://root@192.168.10.20", "nas", "cluster", "r.xml"), (AUTO,),
                          str(tmp_path))
    assert one.what == "live checks of nas (cluster scope)"


def test_testinfra_names_the_port_only_when_it_is_not_22():
    h = labkit.seed_hosts()[1]
    assert [deploy.testinfra_spec(attrs.evolve(h, ssh=Ssh(port=p))) for p in (22, 23, 2222)] == [
        "ssh://root@192.168.10.11", "ssh://root@192.168.10.11:23", "ssh://root@192.168.10.11:2222"]


def test_the_suite_is_the_labs_own_vm_tests_when_it_has_a_conftest(tmp_path):
    assert deploy.suite_dir(tmp_path) == VM_TESTS
    (tmp_path / "vm-tests").mkdir()
    assert deploy.suite_dir(tmp_path) == VM_TESTS  # a folder without conftest.py is not a suite
    (tmp_path / "vm-tests" / "conftest.py").write_text("")
    assert deploy.suite_dir(tmp_path) == tmp_path / "vm-tests"
