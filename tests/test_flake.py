"""The flake, evaluated by real nix.

Here nixpkgs cannot be fetched, so the flake's outputs are evaluated against a stand-in
(tests/stand-in-nixpkgs, via ``--override-input nixpkgs``) that records what each output asks of
nixpkgs: the system, the NixOS modules (imports followed, files named, selected definitions),
the test nodes and scripts, the Python packages.  The tests assert that wiring against the model,
and ``nix flake check --no-build`` applies nix's own output rules.

Where the pinned nixpkgs is reachable, the same flake is evaluated against it for real; the VM
tests themselves (``nix flake check``) also need KVM and run when HOMELAB_VM_TESTS=1.  Otherwise
those tests are skipped with the reason printed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from homelab import contract
from homelab import ControlPlane
from homelab.pynix_eval import Nix, NixError
from homelab.roles import kubernetes
from homelab.verify import to_json

from .conftest import REPO

STAND_IN = REPO / "tests" / "stand-in-nixpkgs"
FLAKE_PARTS = ["flake.nix", "flake.lock", "pyproject.toml", "README.md", "hosts", "modules", "vm-tests", "homelab"]
OVERRIDE = ["--no-write-lock-file", "--override-input", "nixpkgs", f"path:{STAND_IN}"]
STORE_SOURCE = re.compile(r"^/nix/store/[0-9a-z]{32}-source/")


def copy_flake(dst: Path, src: Path = REPO) -> Path:
    """The flake's files as a plain folder (a path: flake sees untracked files; git is never touched)."""
    dst.mkdir(parents=True, exist_ok=True)
    for part in FLAKE_PARTS:
        s = src / part
        if s.is_dir():
            shutil.copytree(s, dst / part, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
        elif s.is_file():
            shutil.copy2(s, dst / part)
    if not (dst / "README.md").exists():
        (dst / "README.md").write_text("# homelab\n")
    return dst


def rel(path: str | None) -> str | None:
    return None if path is None else STORE_SOURCE.sub("", path)


class Flake:
    def __init__(self, nix: Nix, path: Path):
        self.nix, self.path, self.ref = nix, path, f"path:{path}"

    def eval(self, attr: str, apply: str | None = None):
        return self.nix.flake_eval(f"{self.ref}#{attr}", apply=apply, extra=OVERRIDE)

    def run(self, *args: str) -> str:
        return self.nix.flake([*args, *OVERRIDE, self.ref])


@pytest.fixture(scope="module")
def flake(nix, tmp_path_factory) -> Flake:
    return Flake(nix, copy_flake(tmp_path_factory.mktemp("flake") / "lab"))


@pytest.fixture(scope="module")
def show(flake):
    return json.loads(flake.run("flake", "show", "--json"))


@pytest.fixture(scope="module")
def configs(flake):
    return flake.eval("nixosConfigurations", apply="cs: builtins.mapAttrs (n: c: c.standIn) cs")


@pytest.fixture(scope="module")
def checks(flake):
    return flake.eval("checks.x86_64-linux", apply="cs: builtins.mapAttrs (n: c: c.standIn) cs")


@pytest.fixture(scope="module")
def packages(flake):
    return flake.eval("packages", apply="ps: builtins.mapAttrs (s: builtins.mapAttrs (n: p: p.standIn // "
                                        "{ storePath = p.outPath; })) ps")


def files(records) -> list[str]:
    return [rel(r["file"]) for r in records if r.get("file")]


def defs(records, path: str) -> list:
    return [r["defs"][path] for r in records if path in r.get("defs", {})]


def adapter_of(records) -> dict:
    found = [r for r in records if rel(r.get("file")) == "vm-tests/adapter.nix"]
    assert len(found) == 1, files(records)
    return found[0]["defs"]


def force(value):
    return {"_type": "override", "priority": 50, "content": value}


def when(cond, value):
    return {"_type": "if", "condition": cond, "content": value}


# ---------------------------------------------------------------- files and lock


def test_every_nix_file_parses(nix):
    paths = [p for p in REPO.rglob("*.nix") if ".git" not in p.parts]
    assert {"flake.nix", "vm-tests/adapter.nix", "vm-tests/host-test.nix", "vm-tests/cluster-test.nix",
            "tests/stand-in-nixpkgs/stand-in.nix"} <= {p.relative_to(REPO).as_posix() for p in paths}
    nix.parse_files(paths)


def test_lock_pins_a_revision_of_the_contract_release():
    lock = json.loads((REPO / "flake.lock").read_text())
    node = lock["nodes"][lock["nodes"]["root"]["inputs"]["nixpkgs"]]
    assert node["original"] == {"type": "github", "owner": "NixOS", "repo": "nixpkgs",
                                "ref": contract.NIXPKGS_RELEASE}
    locked = node["locked"]
    assert locked["type"] == "github" and locked["repo"] == "nixpkgs"
    assert re.fullmatch(r"[0-9a-f]{40}", locked["rev"])
    assert re.fullmatch(r"sha256-[A-Za-z0-9+/]{43}=", locked["narHash"])
    assert isinstance(locked["lastModified"], int)
    assert f'"github:NixOS/nixpkgs/{contract.NIXPKGS_RELEASE}"' in (REPO / "flake.nix").read_text()


def test_lock_agrees_with_the_inputs(flake):
    # --no-update-lock-file: nix refuses, instead of silently re-locking, if flake.nix and flake.lock disagree
    meta = json.loads(flake.nix.flake(["flake", "metadata", "--json", "--no-update-lock-file", flake.ref]))
    lock = json.loads((REPO / "flake.lock").read_text())
    assert meta["locks"]["nodes"]["nixpkgs"] == lock["nodes"]["nixpkgs"]


# ---------------------------------------------------------------- outputs (stand-in nixpkgs)


def test_outputs_follow_the_lab(show, seed_compiled):
    hosts = sorted(seed_compiled.hosts)
    roles = sorted(p.removeprefix("modules/").removesuffix(".nix").replace("/", "-")
                   for p in seed_compiled.files if p.startswith("modules/"))
    assert sorted(show["nixosModules"]) == sorted(roles + hosts)
    assert sorted(show["nixosConfigurations"]) == hosts
    assert sorted(show["checks"]) == ["x86_64-linux"]
    assert sorted(show["checks"]["x86_64-linux"]) == sorted(["cluster"] + [f"host-{h}" for h in hosts])
    for system in ("x86_64-linux", "aarch64-linux"):
        assert sorted(show["packages"][system]) == sorted(["default", "homelab", "expectations"]
                                                          + [f"vm-{h}" for h in hosts])
        assert list(show["devShells"][system]) == ["default"]
        assert system in show["formatter"]


def test_flake_check_accepts_the_outputs(flake):
    # nix's own rules: modules are open-formal functions or attribute sets, packages/checks/devShells
    # are derivations, nixosConfigurations have a toplevel derivation, system names are valid.
    flake.run("flake", "check", "--no-build")


def test_configurations_are_the_hosts(configs, seed, seed_compiled):
    lab, _ = seed
    for host in lab.hosts:
        c = configs[host.hostname]
        plan = seed_compiled.hosts[host.hostname]
        assert c["arguments"] == ["modules"]  # the platform comes from the module, not a `system` argument
        assert c["system"] == host.system and c["hostName"] == host.hostname
        got = files(c["modules"])
        assert got[0] == plan.entry
        assert sorted(got) == sorted([plan.entry, *plan.modules, *plan.hand_written])
        # nixos-rebuild build-vm gets the adapter, as a VM of the host's own system
        assert c["vm"]["system"] == host.system
        a = adapter_of(c["vm"]["modules"])
        assert a["nixpkgs.hostPlatform"] == force(host.system)
        assert a["virtualisation.interfaces"]["condition"] is False  # test-driver networking only
        assert a["services.openssh.enable"] == when(True, True)
    assert configs["yomogi"]["system"] == "aarch64-linux"


def test_vm_packages_are_vms_of_the_package_system(packages, seed):
    lab, _ = seed
    for system in ("x86_64-linux", "aarch64-linux"):
        for host in lab.hosts:
            vm = packages[system][f"vm-{host.hostname}"]
            assert vm["kind"] == "vm" and vm["vm"]["system"] == system
            a = adapter_of(vm["vm"]["modules"])
            assert a["nixpkgs.hostPlatform"] == force(system)
            # a cross-architecture VM seeds homelab's CoreDNS image, whatever the lab pins
            assert a["services.kubernetes.addons.dns.corednsImage"]["condition"] is (host.system != system)


def test_per_host_checks(checks, packages, seed, seed_compiled):
    lab, _ = seed
    expectations = packages["x86_64-linux"]["expectations"]
    for host in lab.hosts:
        t = checks[f"host-{host.hostname}"]
        plan = seed_compiled.hosts[host.hostname]
        assert t["kind"] == "nixos-test" and t["name"] == f"homelab-host-{host.hostname}"
        assert list(t["nodes"]) == [host.hostname]
        node = t["nodes"][host.hostname]
        assert {plan.entry, *plan.modules, *plan.hand_written, "vm-tests/adapter.nix"} == set(files(node))
        assert t["nodeSystems"] == {host.hostname: "x86_64-linux"}
        a = adapter_of(node)
        assert a["nixpkgs.hostPlatform"] == force("x86_64-linux")
        assert a["virtualisation.interfaces"] == when(True, {host.interface: {"vlan": 1}})
        assert a["networking.primaryIPAddress"] == when(True, force(str(host.ip)))
        assert a["virtualisation.memorySize"] == (2048 if host.has(ControlPlane) else 1536)
        assert a["boot.kernelPackages"] == force({"_type": "pkg", "attrPath": "linuxPackages"})
        for loader in ("grub", "systemd-boot", "generic-extlinux-compatible"):
            assert a[f"boot.loader.{loader}.enable"] == force(False)
        assert t["pkgsReadOnly"] is False  # the host sets nixpkgs.hostPlatform itself
        assert t["forceAccel"] is True
        assert {"pytest", "pytest-testinfra"} <= set(t["extraPythonPackages"])
        script = t["testScript"]
        assert f'{{"{host.hostname}": {host.hostname}}}' in script and 'scope="host"' in script
        assert "run_suite(" in script and "settle(" in script and expectations["storePath"] in script
        assert re.search(r'sys.path.insert\(0, "/nix/store/[0-9a-z]{32}-vm-tests"\)', script)
    assert expectations["kind"] == "run-command" and expectations["inputs"] == ["homelab-0.1.0"]
    assert "homelab expect --root" in expectations["script"] and "--json > $out" in expectations["script"]


def test_cluster_check(checks, packages, seed, seed_compiled):
    lab, _ = seed
    t = checks["cluster"]
    names = sorted(seed_compiled.hosts)
    assert sorted(t["nodes"]) == sorted(names + ["outsider"])  # a LAN machine that is no lab host
    assert t["nodeSystems"] == {n: "x86_64-linux" for n in names} | {"outsider": None}  # the driver's default system
    for n in names:
        plan = seed_compiled.hosts[n]
        assert {plan.entry, "vm-tests/adapter.nix"} <= set(files(t["nodes"][n]))
    # the aarch64 control plane's VM is x86_64: the adapter gives it exactly the image every node's
    # modules/k8s/base.nix builds, so the Deployment it renders names what the workers seed
    image = to_json(kubernetes.coredns_image())
    yomogi = adapter_of(t["nodes"]["yomogi"])
    assert yomogi["services.kubernetes.addons.dns.corednsImage"] == when(True, force(image))
    for n in names:
        base = [r for r in t["nodes"][n] if rel(r.get("file")) == "modules/k8s/base.nix"]
        assert defs(base, "services.kubernetes.addons.dns.corednsImage") == [image]
    images = defs(t["defaults"], "services.kubernetes.kubelet.seedDockerImages")
    assert len(images) == 1 and images[0][0].endswith("docker-image-homelab-echo.tar.gz")
    machines = "{" + ", ".join(f'"{n}": {n}' for n in names) + "}"
    script = t["testScript"]
    expectations = packages["x86_64-linux"]["expectations"]["storePath"]
    assert f'cluster.run({machines}, "{expectations}"' in script
    assert 'echo_text="homelab-nodeport-ok"' in script and "start_all()" in script
    assert "outsider=outsider" in script
    assert t["forceAccel"] is True and t["pkgsReadOnly"] is False


def test_cli_package_is_pyproject(packages):
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for system in ("x86_64-linux", "aarch64-linux"):
        p = packages[system]["default"]
        assert p == packages[system]["homelab"]
        assert p["kind"] == "python-application" and p["pyproject"] is True
        assert (p["pname"], p["version"]) == (pyproject["name"], pyproject["version"])
        assert p["dependencies"] == [re.match(r"[A-Za-z0-9_.-]+", d).group(0) for d in pyproject["dependencies"]]
        assert p["build-system"] == ["setuptools"] and p["meta"]["mainProgram"] == "homelab"
        assert p["makeWrapperArgs"][:3] == ["--suffix", "PATH", ":"] and p["makeWrapperArgs"][3].endswith("-nix/bin")
        assert p["pythonImportsCheck"] == ["homelab"]
        src = Path(p["src"])
        assert sorted(os.listdir(src)) == ["README.md", "homelab", "pyproject.toml"]
        assert not list(src.rglob("__pycache__"))
        assert (src / "homelab" / "templates" / "module.nix.j2").is_file()


def test_dev_shell_and_formatter(flake):
    shell = flake.eval("devShells.x86_64-linux.default.standIn")
    names = [p["name"] for p in shell["packages"]]
    assert {"nix", "kubectl", "openssh", "nixfmt"} <= set(names)
    env = next(p["standIn"] for p in shell["packages"] if p["name"] == "python3-env")
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [re.match(r"[A-Za-z0-9_.-]+", d).group(0)
              for d in pyproject["dependencies"] + pyproject["optional-dependencies"]["test"]]
    assert env["packages"] == wanted
    assert flake.eval("formatter.x86_64-linux.name") == "nixfmt"


# ---------------------------------------------------------------- in step with hosts/


KIRI = '''"""kiri: a second worker."""

from homelab import Host, Tailscale, Worker

host = Host(
    hostname="kiri",
    system="x86_64-linux",
    state_version="26.05",
    interface="eno1",
    address="192.168.10.13/24",
    tailscale_address="100.64.0.13",
    roles=[Worker(), Tailscale()],
)
'''


def homelab_build(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "homelab", "build"], cwd=root, capture_output=True, text=True,
                          timeout=300)


def test_adding_and_removing_a_host_changes_the_outputs(nix, tmp_path):
    root = copy_flake(tmp_path / "lab")
    (root / "hosts" / "kiri").mkdir()
    (root / "hosts" / "kiri" / "host.py").write_text(KIRI)
    r = homelab_build(root)
    assert r.returncode == 0, r.stderr
    assert (root / "hosts" / "kiri" / "default.nix").is_file()
    f = Flake(nix, root)
    configs = f.eval("nixosConfigurations", apply="builtins.attrNames")
    assert configs == ["hanaakari", "kiri", "tokiwa", "yomogi"]
    assert "kiri" in f.eval("nixosModules", apply="builtins.attrNames")
    assert "host-kiri" in f.eval("checks.x86_64-linux", apply="builtins.attrNames")
    assert "vm-kiri" in f.eval("packages.x86_64-linux", apply="builtins.attrNames")
    assert sorted(f.eval("checks.x86_64-linux.cluster.standIn.nodes", apply="builtins.attrNames")) == sorted(
        configs + ["outsider"])
    node = f.eval("checks.x86_64-linux.host-kiri.standIn.nodes.kiri")
    assert adapter_of(node)["virtualisation.interfaces"] == when(True, {"eno1": {"vlan": 1}})

    # and removing one: the build prunes its generated entry, the flake forgets it
    shutil.rmtree(root / "hosts" / "tokiwa")
    (root / "hosts" / "tokiwa").mkdir()  # a leftover folder without default.nix is not a host
    r = homelab_build(root)
    assert r.returncode == 0, r.stderr
    assert f.eval("nixosConfigurations", apply="builtins.attrNames") == ["hanaakari", "kiri", "yomogi"]
    assert "host-tokiwa" not in f.eval("checks.x86_64-linux", apply="builtins.attrNames")


def test_a_host_named_like_a_module_is_refused(nix, tmp_path):
    root = copy_flake(tmp_path / "lab")
    (root / "hosts" / "k8s-base").mkdir()
    (root / "hosts" / "k8s-base" / "default.nix").write_text('{ ... }: { nixpkgs.hostPlatform = "x86_64-linux"; }\n')
    with pytest.raises(NixError, match="modules/ and hosts/ both define k8s-base"):
        Flake(nix, root).eval("nixosModules", apply="builtins.attrNames")


def test_an_entry_without_a_platform_says_to_build(nix, tmp_path):
    root = copy_flake(tmp_path / "lab")
    (root / "hosts" / "old").mkdir()
    (root / "hosts" / "old" / "default.nix").write_text("{ ... }: { networking.hostName = \"old\"; }\n")
    with pytest.raises(NixError, match=r"hosts/old/default.nix sets no nixpkgs.hostPlatform: run `python -m "
                                       r"homelab build`"):
        Flake(nix, root).eval("checks.x86_64-linux.host-old.standIn.nodes")


# ---------------------------------------------------------------- the real nixpkgs (where it can be had)

_REAL: dict[str, str | None] = {}
NETWORK_TROUBLE = re.compile(r"unable to download|Couldn't resolve host|Could not resolve|Connection refused|"
                             r"timed out|Network is unreachable|HTTP error", re.I)


def real_nixpkgs_unavailable(nix: Nix) -> str | None:
    """Why the pinned nixpkgs cannot be fetched here, or None once it is in the store."""
    if "why" not in _REAL and os.environ.get("HOMELAB_NIXPKGS") != "1":
        # fetching the pin reaches out to the network (nix 2.8 does so even with --offline): opt in
        _REAL["why"] = ("needs the pinned nixpkgs, fetched from the network: set HOMELAB_NIXPKGS=1 where it can "
                        "be fetched (off by default, so the suite never reaches past this machine)")
    if "why" not in _REAL:
        lock = json.loads((REPO / "flake.lock").read_text())["nodes"]["nixpkgs"]["locked"]
        ref = f"github:{lock['owner']}/{lock['repo']}/{lock['rev']}?narHash={lock['narHash']}"
        try:
            nix.flake(["flake", "metadata", "--json", ref], timeout=900)
            _REAL["why"] = None
        except NixError as e:
            if not NETWORK_TROUBLE.search(e.message):
                raise
            line = next(ln for ln in e.message.splitlines() if NETWORK_TROUBLE.search(ln))
            _REAL["why"] = (f"needs the pinned nixpkgs ({lock['rev'][:12]}), which cannot be fetched here: "
                            + line.strip()[:200])
    return _REAL["why"]


def test_real_nixpkgs_evaluates_every_host(nix, tmp_path, seed):
    why = real_nixpkgs_unavailable(nix)
    if why:
        pytest.skip(why)
    root = copy_flake(tmp_path / "lab")
    real = Nix(timeout=1800)
    out = real.flake_eval(f"path:{root}#nixosConfigurations", apply="cs: builtins.mapAttrs (n: c: { "
                          "platform = c.config.nixpkgs.hostPlatform.system; "
                          "toplevel = c.config.system.build.toplevel.drvPath; "
                          "vm = c.config.system.build.vm.drvPath; }) cs", extra=["--no-write-lock-file"])
    lab, _ = seed
    assert {n: v["platform"] for n, v in out.items()} == {h.hostname: h.system for h in lab.hosts}
    real.flake(["flake", "check", "--no-build", "--no-write-lock-file", f"path:{root}"], timeout=3600)


def test_real_vm_tests(nix, tmp_path):
    if os.environ.get("HOMELAB_VM_TESTS") != "1":
        pytest.skip("the VM tests boot NixOS under QEMU for many minutes and need the pinned nixpkgs and KVM; "
                    "run them with HOMELAB_VM_TESTS=1 (or `nix flake check` directly)")
    why = real_nixpkgs_unavailable(nix)
    if why:
        pytest.skip(why)
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("needs KVM (/dev/kvm readable and writable) for the NixOS VM tests")
    root = copy_flake(tmp_path / "lab")
    Nix(timeout=4 * 3600).flake(["flake", "check", "-L", "--no-write-lock-file", f"path:{root}"])


def test_a_raw_option_naming_another_interface_does_not_add_a_vm_card(nix, tmp_path):
    root = copy_flake(tmp_path / "lab")
    host_py = root / "hosts/tokiwa/host.py"
    host_py.write_text(host_py.read_text().replace(
        'options={"services.openssh.enable": True},',
        'options={"services.openssh.enable": True, "networking.interfaces.eno1.wakeOnLan.enable": True},'))
    assert subprocess.run([sys.executable, "-m", "homelab", "build", "--root", str(root)], capture_output=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}).returncode == 0
    checks = Flake(nix, root).eval("checks.x86_64-linux", apply="cs: builtins.mapAttrs (n: c: c.standIn) cs")
    node = checks["host-tokiwa"]["nodes"]["tokiwa"]
    assert adapter_of(node)["virtualisation.interfaces"] == when(True, {"enp1s0": {"vlan": 1}})
