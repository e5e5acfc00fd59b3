"""Applying the cluster layer to a running lab, and checking it live (``homelab deploy`` / ``verify``).

After the hosts are switched and their checks passed, ``homelab deploy`` applies ``cluster/helmfile.yaml``
on the control plane, over SSH, as root with the cluster-admin kubeconfig (like every kubectl call of
homelab's), in this order:

1. **Node labels**: ``kubectl label node <name> k=v... --overwrite`` for every node with labels.  A kubelet
   registers ``--node-labels`` only when it first registers its node, so a node that joined before its labels
   changed gets them here.
2. **Secrets**: each Kubernetes Secret the releases read (Traefik's ACME tokens), with its Namespace, as one
   manifest on the **stdin** of ``kubectl apply -f -``.  The values come from a callable the caller gives
   (the lab's age-encrypted secret store decrypts them for the admin); they never reach an argument list, a
   file, a log or the dry-run.
3. **Releases**, in the helmfile's order: ``helm upgrade --install <name> <chart> --repo <url> --version <v>
   --namespace <ns> --create-namespace --wait -f -`` with the release's values file on stdin (the control plane
   has helm: ``modules/k8s/helm.nix``).

``homelab verify`` (cluster scope) then checks: Traefik answers through nginx on each ingress host's 80
(an HTTP response) and 443 (a TLS handshake), and Ceph reports ``HEALTH_OK``
(``kubectl get cephcluster``).
"""

from __future__ import annotations

import base64
import json
import shlex
import socket
import ssl
import subprocess
from typing import Callable, Iterable, Sequence

import attrs

from . import helmfile
from .component import components
from .labels import node_labels
from .model import Host, Lab, Secret
from .remote import ADMIN_KUBECONFIG, MissingTool, SshOptions, ssh_argv, tail

__all__ = ["ClusterStep", "plan", "render", "apply", "Reveal", "LiveCheck", "live_checks"]

Reveal = Callable[[Secret], bytes]  # a lab secret's value, for the admin (the secrets store's reveal)
HELM_TIMEOUT = 900  # seconds one release may take (helm --wait waits for its pods)


@attrs.frozen
class ClusterStep:
    """One command on the control plane; ``secrets``: the Secret manifest it reads on stdin (built at run
    time from the secret store, never printed); ``values``: the values file it reads on stdin."""

    what: str
    argv: tuple[str, ...]
    secrets: tuple = ()  # KubeSecret objects whose manifest goes to stdin
    values: str | None = None  # path of a values file (relative to the lab) that goes to stdin

    def shell(self, root=None) -> str:
        cmd = shlex.join(self.argv)
        if self.values is not None:
            return f"{cmd} < {shlex.quote(str(root) + '/' + self.values if root is not None else self.values)}"
        if self.secrets:
            names = ", ".join(f"{s.namespace}/{s.name} ({', '.join(sorted(s.data))})" for s in self.secrets)
            return f"{cmd}   # stdin: Namespace + Secret {names}, values from the lab's secret store"
        return cmd


def _kubectl(cp: Host, opts: SshOptions, *args: str) -> tuple[str, ...]:
    return tuple(ssh_argv(cp, ["env", f"KUBECONFIG={ADMIN_KUBECONFIG}", "kubectl", *args], opts, root=True))


def _helm(cp: Host, opts: SshOptions, *args: str) -> tuple[str, ...]:
    return tuple(ssh_argv(cp, ["env", f"KUBECONFIG={ADMIN_KUBECONFIG}", "helm", *args], opts, root=True))


def plan(lab: Lab, opts: SshOptions) -> list[ClusterStep]:
    """The commands that apply the lab's cluster layer, in order (none for a lab without releases)."""
    rels = helmfile.releases(lab)
    if not rels or lab.control_plane is None:
        return []
    cp = lab.control_plane
    steps = []
    for h in lab.kubernetes_nodes:
        labels = node_labels(lab, h)
        if labels:
            steps.append(ClusterStep(f"label node {h.hostname}", _kubectl(
                cp, opts, "label", "node", h.hostname, *(f"{k}={v}" for k, v in labels.items()), "--overwrite")))
    secrets = helmfile.kube_secrets(lab)
    if secrets:
        steps.append(ClusterStep("create the releases' Secrets", _kubectl(cp, opts, "apply", "-f", "-"),
                                 secrets=tuple(secrets)))
    for r in rels:
        steps.append(ClusterStep(f"release {r.name} ({r.chart} {r.version})", _helm(
            cp, opts, "upgrade", "--install", r.name, r.chart, "--repo", r.repository.url, "--version", r.version,
            "--namespace", r.namespace, "--create-namespace", "--wait", "--timeout", f"{HELM_TIMEOUT}s", "-f", "-"),
            values=f"{helmfile.CLUSTER_DIR}/{r.values_path}"))
    return steps


def render(steps: Sequence[ClusterStep], root=None) -> str:
    """The dry-run: every command, in order (values files under ``root``)."""
    if not steps:
        return ""
    lines = ["# the cluster layer (cluster/helmfile.yaml), on the control plane, once every host passed"]
    for s in steps:
        lines.append(f"# {s.what}")
        lines.append(s.shell(root))
    return "\n".join(lines) + "\n"


def secret_manifest(secrets: Iterable, reveal: Reveal) -> bytes:
    """A v1 List: each Secret's Namespace, then the Secret with its values (base64), as kubectl reads it."""
    items = []
    for ns in dict.fromkeys(s.namespace for s in secrets):
        items.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    for s in secrets:
        items.append({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                      "metadata": {"name": s.name, "namespace": s.namespace,
                                   "labels": {"app.kubernetes.io/managed-by": "homelab"}},
                      "data": {k: base64.b64encode(reveal(v)).decode() for k, v in sorted(s.data.items())}})
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items}).encode()


@attrs.frozen
class StepResult:
    step: ClusterStep
    rc: int
    output: str


def apply(root, steps: Sequence[ClusterStep], reveal: Reveal, *, say: Callable[[str], None] = print,
          timeout: float = HELM_TIMEOUT + 60) -> list[StepResult]:
    """Run the steps in order, stopping at the first failure; the results of those that ran."""
    from pathlib import Path

    out = []
    for s in steps:
        say(s.what)
        if s.secrets:
            stdin = secret_manifest(s.secrets, reveal)
        elif s.values is not None:
            stdin = (Path(root) / s.values).read_bytes()
        else:
            stdin = b""
        try:
            r = subprocess.run(list(s.argv), input=stdin, capture_output=True, timeout=timeout)
        except FileNotFoundError:
            raise MissingTool(s.argv[0]) from None
        except subprocess.TimeoutExpired:
            out.append(StepResult(s, 124, f"timed out after {timeout:.0f} s"))
            break
        text = (r.stdout + r.stderr).decode(errors="replace")
        out.append(StepResult(s, r.returncode, tail(text)))
        if r.returncode != 0:
            break
    return out


# ---------------------------------------------------------------- live checks


@attrs.frozen
class LiveCheck:
    name: str
    ok: bool
    detail: str


def http_through(address: str, port: int, timeout: float = 10) -> LiveCheck:
    """An HTTP request to ``address:port`` gets an HTTP response (Traefik answers, 404 for an unknown host)."""
    name = f"Traefik through nginx on {address}:{port} (http)"
    try:
        with socket.create_connection((address, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"GET / HTTP/1.1\r\nHost: homelab-verify.invalid\r\nConnection: close\r\n\r\n")
            first = s.recv(64).split(b"\r\n", 1)[0].decode(errors="replace")
    except OSError as e:
        return LiveCheck(name, False, f"no connection: {e}")
    if first.startswith("HTTP/"):
        return LiveCheck(name, True, first)
    return LiveCheck(name, False, f"not an HTTP response: {first!r}")


def tls_through(address: str, port: int, timeout: float = 10) -> LiveCheck:
    """A TLS handshake with ``address:port`` completes (Traefik terminates TLS; its certificate is not judged
    here: Let's Encrypt's needs the lab's DNS names)."""
    name = f"Traefik through nginx on {address}:{port} (tls)"
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((address, port), timeout=timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname="homelab-verify.invalid") as s:
            version = s.version()
    except (OSError, ssl.SSLError) as e:
        return LiveCheck(name, False, f"no TLS handshake: {e}")
    return LiveCheck(name, True, f"handshake done ({version})")


def ceph_health(lab: Lab, opts: SshOptions, namespace: str, timeout: float = 60) -> LiveCheck:
    argv = _kubectl(lab.control_plane, opts, "-n", namespace, "get", "cephcluster", "-o",
                    "jsonpath={.items[*].status.ceph.health}")
    try:
        r = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise MissingTool(argv[0]) from None
    except subprocess.TimeoutExpired:
        return LiveCheck("Ceph health", False, f"kubectl timed out after {timeout:.0f} s")
    if r.returncode != 0:
        return LiveCheck("Ceph health", False, f"kubectl failed (exit {r.returncode}): {tail(r.stderr)}")
    health = r.stdout.strip()
    return LiveCheck("Ceph health", health == "HEALTH_OK", health or "no CephCluster status yet")


def live_checks(lab: Lab, opts: SshOptions, *, address_of: Callable[[Host], str] | None = None) -> list[LiveCheck]:
    """The cluster layer's live checks: Traefik through each ingress host's nginx, Ceph's health."""
    from .roles.ingress import IngressProxy
    from .roles.rook_ceph import RookCeph

    address_of = address_of or (lambda h: str(h.ip))
    out = []
    if any(r.name == "traefik" for r in helmfile.releases(lab)):
        for h, role in lab.roles_of_type(IngressProxy):
            out.append(http_through(address_of(h), role.http_port))
            out.append(tls_through(address_of(h), role.https_port))
    rook = next((c for c in components(lab) if isinstance(c, RookCeph)), None)
    if rook is not None:
        out.append(ceph_health(lab, opts, rook.namespace))
    return out
