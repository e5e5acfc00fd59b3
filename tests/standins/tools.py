"""STAND-INS, for tests only: the programs of a NixOS lab host and of the deployer, faked just enough
for ``homelab deploy``, ``verify``, ``wake`` and ``sleep`` to run against sshd in network namespaces.

Nothing here is NixOS or Kubernetes.  Each stand-in records every call (argv, the stdin it read,
start and end time, exit code) as one JSON line in its host's ``calls.jsonl``, and fails when a file
in its host's state folder says so.  tests/test_ops_live.py writes one small executable per tool
name (``kubectl``, ``nixos-rebuild``...) that calls :func:`main` here, and puts the folder first on
the PATH of the host's SSH sessions (sshd ``SetEnv``) or of the deployer.

Environment:
  HOMELAB_STANDIN_HOST      which lab host this is ("workstation" for the deployer)
  HOMELAB_STANDIN_STATE     that host's state folder
  HOMELAB_STANDIN_CLUSTER   the stand-in cluster's folder: nodes/<name>.json ({"ready", "cordoned"})
  HOMELAB_STANDIN_REAL_SSH  the real ssh, for the deployer's recording ssh

State files of a host: generations.json ({"current": N, "all": [...]}), switch-seconds (how long a
switch takes), fail-switch, fail-join, fail-drain (present: that step fails), same-generation (a switch
leaves the host on its generation: the configuration is the one it runs), failing-checks (check ids the
stand-in suite reports as failed), sshd.pid (what ``systemctl poweroff`` stops).  The deployer's:
suite-exit (the stand-in suite cannot run and exits with that code, as pytest does for usage errors).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

ADMIN_KUBECONFIG = "/etc/kubernetes/cluster-admin.kubeconfig"


def state() -> Path:
    return Path(os.environ["HOMELAB_STANDIN_STATE"])


def host() -> str:
    return os.environ.get("HOMELAB_STANDIN_HOST", "?")


def flag(name: str) -> bool:
    return (state() / name).exists()


def record(tool: str, t0: float, rc: int, stdin: str | None = None, **extra) -> None:
    line = json.dumps({"tool": tool, "host": host(), "argv": sys.argv[1:], "stdin": stdin, "t0": t0,
                       "t1": time.time(), "rc": rc, **extra}) + "\n"
    fd = os.open(state() / "calls.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def load(path: Path, default):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default


def save(path: Path, value) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value))
    tmp.replace(path)


# ---------------------------------------------------------------- the deployer


def ssh(argv: list[str], t0: float) -> int:
    """Records argv and environment, then becomes the real ssh (stdin untouched)."""
    record("ssh", t0, 0, env=dict(os.environ))
    os.execv(os.environ["HOMELAB_STANDIN_REAL_SSH"], ["ssh", *argv])
    return 127


def nixos_rebuild(argv: list[str], t0: float) -> int:
    if argv[:1] == ["list-generations"]:  # on a host: what nixos-rebuild list-generations --json prints
        gens = load(state() / "generations.json", {"current": 1, "all": [1]})
        out = [{"generation": g, "date": "2026-07-01 12:00:00", "nixosVersion": "26.05.stand-in",
                "kernelVersion": "stand-in", "configurationRevision": "Unknown", "specialisations": [],
                "current": g == gens["current"]} for g in sorted(gens["all"], reverse=True)]
        print(json.dumps(out))
        record("nixos-rebuild", t0, 0)
        return 0
    # on the deployer: switch [--rollback] --flake <lab>#<name> --target-host <t> [--build-host <b>] --no-reexec
    target = argv[argv.index("--target-host") + 1]
    flake = argv[argv.index("--flake") + 1]
    remote = ["switch-to-configuration", "switch"] + (["--rollback"] if "--rollback" in argv else [])
    import shlex
    import subprocess

    opts = shlex.split(os.environ.get("NIX_SSHOPTS", ""))
    rc = subprocess.run(["ssh", *opts, target, shlex.join(remote)], stdin=subprocess.DEVNULL).returncode
    if rc == 0 and "--rollback" not in argv:
        print(f"/nix/store/00000000000000000000000000000000-nixos-system-{flake.rpartition('#')[2]}-stand-in")
    record("nixos-rebuild", t0, rc, env={"NIX_SSHOPTS": os.environ.get("NIX_SSHOPTS")})
    return rc


# ---------------------------------------------------------------- a lab host


def switch_to_configuration(argv: list[str], t0: float) -> int:
    seconds = float((state() / "switch-seconds").read_text()) if flag("switch-seconds") else 0.0
    time.sleep(seconds)
    gens = load(state() / "generations.json", {"current": 1, "all": [1]})
    if "--rollback" in argv:
        older = [g for g in gens["all"] if g < gens["current"]]
        if not older:
            print("no generation to roll back to", file=sys.stderr)
            record("switch-to-configuration", t0, 1)
            return 1
        gens["current"] = max(older)
    elif not flag("same-generation"):
        new = max(gens["all"]) + 1
        gens["all"].append(new)
        gens["current"] = new  # nixos-rebuild sets the profile before activating
    # same-generation: the configuration is the one the host runs (nix-env --set keeps its generation)
    save(state() / "generations.json", gens)
    rc = 1 if flag("fail-switch") and "--rollback" not in argv else 0
    if rc:
        print("stand-in: activation failed (fail-switch)", file=sys.stderr)
    record("switch-to-configuration", t0, rc, generation=gens["current"])
    return rc


def nixos_kubernetes_node_join(argv: list[str], t0: float) -> int:
    if argv:
        print("Usage: nixos-kubernetes-node-join (the API token comes on stdin)", file=sys.stderr)
        record("nixos-kubernetes-node-join", t0, 1)
        return 1
    token = sys.stdin.readline().rstrip("\n")
    rc = 0
    if len(token) != 32:
        print(f"Token must be of length 32 (got {len(token)})", file=sys.stderr)
        rc = 1
    elif flag("fail-join"):
        print("stand-in: join failed (fail-join)", file=sys.stderr)
        rc = 1
    else:
        nodes = Path(os.environ["HOMELAB_STANDIN_CLUSTER"]) / "nodes"
        save(nodes / f"{host()}.json", {"ready": "True", "cordoned": False})
        print("Node joined successfully", file=sys.stderr)
    record("nixos-kubernetes-node-join", t0, rc, stdin=token)
    return rc


def kubectl(argv: list[str], t0: float) -> int:
    def done(rc: int, out: str = "", err: str = "") -> int:
        if out:
            print(out)
        if err:
            print(err, file=sys.stderr)
        record("kubectl", t0, rc, env={"KUBECONFIG": os.environ.get("KUBECONFIG")})
        return rc

    if os.environ.get("KUBECONFIG") != ADMIN_KUBECONFIG:
        return done(1, err="stand-in: no cluster-admin kubeconfig (KUBECONFIG unset)")
    if argv == ["apply", "-f", "-"]:  # the cluster layer's Secrets: what kinds came, never their values
        items = json.loads(sys.stdin.read())["items"]
        kinds = [f"{i['kind']}/{i['metadata']['name']}" for i in items]
        record("kubectl", t0, 0, env={"KUBECONFIG": os.environ.get("KUBECONFIG")}, applied=kinds)
        print("\n".join(f"{k.lower()} configured" for k in kinds))
        return 0
    nodes = Path(os.environ["HOMELAB_STANDIN_CLUSTER"]) / "nodes"
    verb, node = (argv + ["", "", ""])[0], (argv + ["", "", ""])[2 if argv[:1] in (["get"], ["label"]) else 1]
    path = nodes / f"{node}.json"
    if not path.exists():
        return done(1, err=f'Error from server (NotFound): nodes "{node}" not found')
    n = load(path, {})
    if verb == "get":
        return done(0, out=f"{n['ready']}/{'true' if n['cordoned'] else ''}")
    if verb == "drain":
        if flag("fail-drain"):
            return done(1, err="stand-in: cannot evict (fail-drain)")
        save(path, dict(n, cordoned=True))
        return done(0, out=f"node/{node} cordoned\nnode/{node} drained")
    if verb == "uncordon":
        save(path, dict(n, cordoned=False))
        return done(0, out=f"node/{node} uncordoned")
    if verb == "label" and argv[-1:] == ["--overwrite"]:
        labels = dict(a.split("=", 1) for a in argv[3:-1])
        save(path, dict(n, labels={**n.get("labels", {}), **labels}))
        return done(0, out=f"node/{node} labeled")
    return done(2, err=f"stand-in kubectl: {verb} is not faked")


def helm(argv: list[str], t0: float) -> int:
    """``helm upgrade --install <name> ... -f -`` on the control plane: records the release and its values."""
    values = sys.stdin.read()
    ok = argv[:2] == ["upgrade", "--install"] and os.environ.get("KUBECONFIG") == ADMIN_KUBECONFIG
    record("helm", t0, 0 if ok else 2, stdin=values, env={"KUBECONFIG": os.environ.get("KUBECONFIG")})
    if ok:
        print(f'Release "{argv[2]}" has been upgraded. Happy Helming!')
    return 0 if ok else 2


def systemctl(argv: list[str], t0: float) -> int:
    if argv != ["poweroff"]:
        record("systemctl", t0, 2)
        return 2
    record("systemctl", t0, 0)
    pid = int((state() / "sshd.pid").read_text())
    os.kill(pid, signal.SIGTERM)  # the host stops answering SSH; this session ends normally
    return 0


def checks(argv: list[str], t0: float) -> int:
    """What the stand-in suite asks a host: the check ids that fail there."""
    path = state() / "failing-checks"
    sys.stdout.write(path.read_text() if path.exists() else "")
    record("homelab-standin-checks", t0, 0)
    return 0


TOOLS = {
    "ssh": ssh,
    "helm": helm,
    "nixos-rebuild": nixos_rebuild,
    "switch-to-configuration": switch_to_configuration,
    "nixos-kubernetes-node-join": nixos_kubernetes_node_join,
    "kubectl": kubectl,
    "systemctl": systemctl,
    "homelab-standin-checks": checks,
}
WORKSTATION = ("ssh", "nixos-rebuild")
TARGET = ("nixos-rebuild", "switch-to-configuration", "nixos-kubernetes-node-join", "kubectl", "systemctl",
          "homelab-standin-checks", "helm")


def main(tool: str) -> None:
    sys.exit(TOOLS[tool](sys.argv[1:], time.time()))


def write_bin(folder: Path, tools: tuple[str, ...]) -> Path:
    """Executables named after ``tools`` in ``folder``, each running this module's stand-in."""
    folder.mkdir(parents=True, exist_ok=True)
    here = Path(__file__).resolve().parent
    for tool in tools:
        p = folder / tool
        p.write_text(f"#!{sys.executable}\n# STAND-IN for tests (tests/standins/tools.py), not the real {tool}\n"
                     f"import sys\nsys.path.insert(0, {str(here)!r})\nimport tools\ntools.main({tool!r})\n")
        p.chmod(0o755)
    return folder
