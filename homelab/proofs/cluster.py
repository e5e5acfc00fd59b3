"""The cluster layer, rendered by real helm and checked against the hosts.

What runs: ``cluster/helmfile.yaml`` is read as helmfile reads it (its releases in order, each chart at its
pinned version, its values files relative to the helmfile), and each release is rendered by real helm::

    helm template <name> <chart .tgz> --version <version> --namespace <namespace> -f <values>...

from a folder of packaged charts (``<chart>-<version>.tgz``: ``$HOMELAB_CHARTS``, else the pinned charts homelab
ships, ``homelab/charts``).  Then:

1. every rendered object of a built-in kind validates against the Kubernetes schemas of the cluster's
   Kubernetes version (kubernetes-validate, strict: no unknown fields); custom resources (CephCluster...)
   are counted, not validated;
2. the objects are checked against the hosts, as nix read the hosts' files back:

   - Traefik's Service: type NodePort, and its ``web``/``websecure`` NodePorts are the ports the ingress
     hosts' nginx ``streamConfig`` streams the IngressProxy's http/https listen ports to;
   - every nodeSelector of a rendered pod template selects exactly the nodes the component means (Traefik:
     the IngressProxy hosts), by the labels each kubelet registers (its ``--node-labels`` in
     ``kubelet.extraOpts``); a selector that matches no node fails;
   - hostPath volumes (the CSI plugin volumes in Rook's operator ConfigMap) are NixOS's paths (``/nix``,
     ``/run/booted-system/kernel-modules/lib/modules/``), both mounted for the RBD and CephFS plugins;
   - Rook's CSI kubelet directory is the kubelet's root directory on the CephStorage nodes (the last
     ``--root-dir`` on its command line, else nixpkgs' ``services.kubernetes.dataDir``);
   - the CephCluster's storage: ``useAllNodes``/``useAllDevices`` false, its nodes exactly the kubelet names
     of the CephStorage hosts with disks, each with exactly their disks; its monitor count odd and at most
     the number of nodes;
   - the ACME token variables come from a Secret (``secretKeyRef``), never a literal value;
   - the ACME resolver waits ``Acme.delay_before_checks`` before checking the DNS-01 TXT record, read from
     the Traefik container's flags as Traefik reads them (``dnsChallenge.propagation.delayBeforeChecks``; the
     article's ``dnsChallenge.delayBeforeCheck`` is deprecated since Traefik v3.3 and refused).

A missing program or chart is a skip with the reason (:class:`Unavailable`), never a pass.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs

from ..labels import selects
from .netns import ProofFailed

__all__ = ["Unavailable", "Rendered", "find_helm", "find_charts", "read_helmfile", "render", "prove",
           "KUBERNETES_VERSION", "NIXOS_PATHS"]

# nixpkgs' kubernetes at the pinned snapshot is 1.36.2 (pkgs/by-name/ku/kubernetes/package.nix); the schemas of
# its minor version
KUBERNETES_VERSION = "1.36.0"
# where NixOS keeps what the CSI plugins need from the host (the seed article; nixos/modules/system/activation)
NIXOS_PATHS = frozenset({"/nix", "/run/booted-system/kernel-modules/lib/modules/"})
NIXPKGS_DATA_DIR = "/var/lib/kubernetes"  # services.kubernetes.dataDir's default (kubernetes/default.nix)
FIXTURES = Path(__file__).resolve().parents[1] / "charts"  # shipped with homelab (package data, licences beside)


class Unavailable(Exception):
    """A program, module or chart the proof needs is missing here; the message says which."""


def find_helm() -> str:
    """helm on PATH, or beside this Python (``./lab test`` installs it into .venv/bin)."""
    for cand in (shutil.which("helm"), str(Path(sys.prefix) / "bin" / "helm")):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise Unavailable("helm is not installed (./lab test installs helm v4 into .venv/bin; or put helm on PATH)")


def find_charts() -> Path:
    explicit = os.environ.get("HOMELAB_CHARTS")
    if explicit:
        return Path(explicit)
    if FIXTURES.is_dir():
        return FIXTURES
    raise Unavailable("no packaged charts: set HOMELAB_CHARTS to a folder of <chart>-<version>.tgz "
                      "(`helm pull <repo>/<chart> --version <version>` for each release of cluster/helmfile.yaml)")


def _yaml():
    try:
        import yaml
    except ImportError:
        raise Unavailable("PyYAML is not installed (pip install homelab[test])") from None
    return yaml


@attrs.frozen
class HelmRelease:
    """A release as helmfile reads it from helmfile.yaml."""

    name: str
    namespace: str
    chart: str  # <repository>/<chart>
    version: str
    values: tuple[Path, ...]


def read_helmfile(path: Path) -> list[HelmRelease]:
    """The releases of a helmfile, in order, with values files resolved against the helmfile's folder."""
    doc = _yaml().safe_load(path.read_text())
    repos = {r["name"] for r in doc.get("repositories", [])}
    out = []
    for r in doc.get("releases", []):
        repo = r["chart"].split("/", 1)[0]
        if repo not in repos:
            raise ProofFailed(f"{path}: release {r['name']} names the repository {repo!r}, which is not listed")
        out.append(HelmRelease(r["name"], r["namespace"], r["chart"], str(r["version"]),
                               tuple(path.parent / v for v in r.get("values", []))))
    return out


@attrs.frozen
class Rendered:
    release: HelmRelease
    objects: tuple[dict, ...]


_RENDERED: dict[tuple, tuple[dict, ...]] = {}  # what helm rendered, by everything it read (one process's memo)


def render(release: HelmRelease, charts: Path, helm: str, *, timeout: float = 120) -> Rendered:
    chart = charts / f"{release.chart.split('/', 1)[1]}-{release.version}.tgz"
    if not chart.is_file():
        raise Unavailable(f"no packaged chart {chart.name} in {charts}")
    key = (helm, str(chart), chart.stat().st_mtime_ns, chart.stat().st_size, release.name, release.namespace,
           release.version, tuple(v.read_bytes() for v in release.values))
    if key not in _RENDERED:
        _RENDERED[key] = _render(release, chart, helm, timeout)
    return Rendered(release, copy.deepcopy(_RENDERED[key]))


def _render(release: HelmRelease, chart: Path, helm: str, timeout: float) -> tuple[dict, ...]:
    argv = [helm, "template", release.name, str(chart), "--version", release.version, "--namespace",
            release.namespace]
    for v in release.values:
        argv += ["-f", str(v)]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
           "HELM_CACHE_HOME": "/nonexistent-helm-cache", "HELM_CONFIG_HOME": "/nonexistent-helm-config",
           "HELM_DATA_HOME": "/nonexistent-helm-data"}
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise ProofFailed(f"helm template {release.name} failed (exit {r.returncode}): {r.stderr.strip()[-800:]}")
    yaml = _yaml()
    return tuple(d for d in yaml.load_all(r.stdout, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) if d)


def validate_schemas(rendered: list[Rendered], version: str = KUBERNETES_VERSION) -> tuple[int, int, list[str]]:
    """(built-in objects validated, custom objects counted, failures).

    kubernetes-validate's own schemas and its way of finding them (``v<version>-local-strict``,
    ``<kind>-<group>-<version>.json``), with one validator per kind instead of one per object (it reloads
    every definition per call, seconds for a chart's CRDs).
    """
    try:
        import jsonschema
        import kubernetes_validate as kv
        from kubernetes_validate import utils
        from referencing import Registry, Resource
    except ImportError:
        raise Unavailable("kubernetes-validate is not installed (pip install homelab[test])") from None
    schema_dir = f"kubernetes-json-schema/v{version}-local-strict"
    definitions = Resource.from_contents(utils.schema_contents(f"{schema_dir}/_definitions.json", version))
    validators: dict[tuple[str, str], Any] = {}
    done = custom = 0
    failures = []
    for r in rendered:
        for o in r.objects:
            api, kind = str(o.get("apiVersion", "")), str(o.get("kind", ""))
            what = f"{r.release.name}: {kind} {o.get('metadata', {}).get('name')}"
            if (api, kind) not in validators:
                name = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api)
                try:
                    schema = utils.schema_contents(f"{schema_dir}/{kind.lower()}-{name}.json", version)
                except FileNotFoundError:
                    validators[(api, kind)] = None
                else:
                    registry = definitions @ (Resource.from_contents(schema) @ Registry())
                    validators[(api, kind)] = jsonschema.validators.Draft202012Validator(schema, registry=registry)
            v = validators[(api, kind)]
            if v is None:
                if "/" not in api or api.split("/")[0] in _BUILTIN_GROUPS:  # a built-in kind Kubernetes lacks
                    failures.append(f"{what}: no schema for the built-in {api} {kind} in Kubernetes {version}")
                else:
                    custom += 1
                continue
            errors = sorted(v.iter_errors(o), key=lambda e: list(e.absolute_path))
            if errors:
                failures.append(f"{what}: {errors[0].message} at {'/'.join(map(str, errors[0].absolute_path))}")
            else:
                done += 1
    del kv
    return done, custom, failures


_BUILTIN_GROUPS = {"rbac.authorization.k8s.io", "networking.k8s.io", "storage.k8s.io", "apiextensions.k8s.io",
                   "policy", "apps", "batch", "admissionregistration.k8s.io", "scheduling.k8s.io",
                   "coordination.k8s.io", "discovery.k8s.io", "autoscaling"}


# ---------------------------------------------------------------- what the hosts say (as nix read them)


def kubelet_words(options: dict) -> list[str]:
    return str(options.get("services.kubernetes.kubelet.extraOpts", "")).split()


def registered_labels(options: dict) -> dict[str, str]:
    """The labels a node's kubelet registers: its ``--node-labels`` words."""
    out: dict[str, str] = {}
    for w in kubelet_words(options):
        if w.startswith("--node-labels="):
            for pair in w.removeprefix("--node-labels=").split(","):
                k, _, v = pair.partition("=")
                out[k] = v
    return out


def kubelet_root_dir(options: dict) -> str:
    """The last ``--root-dir`` on the kubelet's command line (extraOpts come after nixpkgs' dataDir)."""
    dirs = [w.removeprefix("--root-dir=") for w in kubelet_words(options) if w.startswith("--root-dir=")]
    return dirs[-1] if dirs else str(options.get("services.kubernetes.dataDir", NIXPKGS_DATA_DIR))


def kubelet_name(options: dict) -> str:
    """nixpkgs: the lower-cased networking.fqdnOrHostName (homelab refuses a domain on a node)."""
    return str(options["networking.hostName"]).lower()


def nodes(options: dict[str, dict]) -> dict[str, dict]:
    """kubelet name -> options, for every host that runs a kubelet (services.kubernetes.roles set)."""
    return {kubelet_name(o): o for o in options.values() if o.get("services.kubernetes.roles")}


_UPSTREAM = re.compile(r"upstream\s+(\S+)\s*\{\s*server\s+127\.0\.0\.1:(\d+);\s*\}")
_SERVER = re.compile(r"server\s*\{\s*((?:listen\s+[^;]+;\s*)+)proxy_pass\s+(\S+);")


def stream_routes(stream: str) -> dict[int, int]:
    """listen port -> NodePort, from an nginx stream config (``upstream x { server 127.0.0.1:P; }`` and
    ``server { listen L; ... proxy_pass x; }``)."""
    upstream = {m[1]: int(m[2]) for m in _UPSTREAM.finditer(stream)}
    out: dict[int, int] = {}
    for m in _SERVER.finditer(stream):
        for listen in re.findall(r"listen\s+(?:\[::\]:)?(\d+);", m[1]):
            out[int(listen)] = upstream[m[2]]
    return out


# ---------------------------------------------------------------- the proof


def _pod_specs(objects) -> list[tuple[str, dict]]:
    out = []
    for o in objects:
        spec = o.get("spec") or {}
        tmpl = spec.get("template", {}).get("spec") if isinstance(spec.get("template"), dict) else None
        if o.get("kind") in ("Deployment", "DaemonSet", "StatefulSet", "Job", "ReplicaSet") and tmpl is not None:
            out.append((f"{o['kind']} {o['metadata']['name']}", tmpl))
    return out


def _by(objects, kind: str) -> list[dict]:
    return [o for o in objects if o.get("kind") == kind]


def check_against_hosts(lab, rendered: list[Rendered], options: dict[str, dict]) -> tuple[list[str], list[str]]:
    """(what was checked, failures) of the rendered objects against the hosts' options."""
    from ..roles.ingress import IngressProxy

    checked: list[str] = []
    bad: list[str] = []
    node_opts = nodes(options)
    labels = {n: registered_labels(o) for n, o in node_opts.items()}
    by_release = {r.release.name: r.objects for r in rendered}
    ingress = {h.hostname for h in lab.with_role(IngressProxy)}
    _check_selectors(rendered, labels, ingress, checked, bad)
    if "traefik" in by_release:
        _check_traefik(lab, by_release["traefik"], options, checked, bad)
    if "rook-ceph" in by_release:
        _check_rook_operator(lab, by_release["rook-ceph"], options, checked, bad)
    if "rook-ceph-cluster" in by_release:
        _check_rook_cluster(lab, by_release["rook-ceph-cluster"], options, node_opts, checked, bad)
    return checked, bad


def _check_selectors(rendered: list[Rendered], labels: dict, ingress: set[str], checked: list[str],
                     bad: list[str]) -> None:
    """Every nodeSelector selects at least one node, and only nodes it means; hostPaths are NixOS paths."""
    for r in rendered:
        for what, spec in _pod_specs(r.objects):
            sel = spec.get("nodeSelector") or {}
            if not sel:
                continue
            matched = {n for n, ls in labels.items() if selects({k: str(v) for k, v in sel.items()}, ls)}
            if not matched:
                bad.append(f"{r.release.name}: {what}: nodeSelector {sel} matches no node's kubelet labels "
                           f"({ {n: ls for n, ls in sorted(labels.items())} }); its pods would stay Pending")
            elif r.release.name == "traefik" and matched != ingress:
                bad.append(f"traefik: {what}: nodeSelector {sel} selects {sorted(matched)}, the IngressProxy hosts "
                           f"are {sorted(ingress)}")
            else:
                checked.append(f"{r.release.name}: {what}: nodeSelector selects {sorted(matched)}")
            for v in spec.get("volumes", []) or []:
                hp = (v.get("hostPath") or {}).get("path")
                if hp is not None and hp not in NIXOS_PATHS:
                    bad.append(f"{r.release.name}: {what}: hostPath {hp} is not a NixOS path")


def _check_traefik(lab, objs: list, options: dict[str, dict], checked: list[str], bad: list[str]) -> None:
    """Traefik's NodePorts are nginx's upstreams on every ingress host; secrets come from Secrets."""
    from ..roles.ingress import IngressProxy

    services = _by(objs, "Service")
    svc = next((s for s in services if s["spec"].get("type") == "NodePort"), None)
    if svc is None:
        bad.append(f"traefik: no NodePort Service (Services: {[s['metadata']['name'] for s in services]})")
    else:
        ports = {p["name"]: p.get("nodePort") for p in svc["spec"]["ports"]}
        for h in lab.with_role(IngressProxy):
            role = h.role(IngressProxy)
            routes = stream_routes(str(options[h.hostname].get("services.nginx.streamConfig", "")))
            want = {"web": routes.get(role.http_port), "websecure": routes.get(role.https_port)}
            if {k: ports.get(k) for k in want} != want:
                bad.append(f"traefik: Service {svc['metadata']['name']} NodePorts "
                           f"{ {k: ports.get(k) for k in want} }, but nginx on {h.hostname} streams "
                           f"{role.http_port} -> {want['web']} and {role.https_port} -> {want['websecure']}")
            else:
                checked.append(f"traefik: NodePorts web {want['web']}, websecure {want['websecure']} are "
                               f"nginx's upstreams on {h.hostname}")
    for what, spec in _pod_specs(objs):
        for c in spec.get("containers", []):
            for e in c.get("env", []) or []:
                if re.search(r"TOKEN|SECRET|PASSWORD|KEY", e["name"]) and "value" in e:
                    bad.append(f"traefik: {what}: {e['name']} has a literal value; it must come from a Secret")
                elif re.search(r"TOKEN|SECRET|PASSWORD|KEY", e["name"]):
                    checked.append(f"traefik: {e['name']} from Secret "
                                   f"{e['valueFrom']['secretKeyRef']['name']}")
    _check_acme_delay(lab, objs, checked, bad)


_GO_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def go_seconds(text: str) -> float | None:
    """A duration as Traefik's flags read it (github.com/traefik/paerser types/duration.go): a bare integer is seconds,
    else Go's ``time.ParseDuration`` ("10s", "1m30s"); None when it is neither."""
    if re.fullmatch(r"-?\d+", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d*)?)(h|ms|us|µs|ns|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _GO_UNITS[u] for n, u in parts)


def _check_acme_delay(lab, objs: list, checked: list[str], bad: list[str]) -> None:
    """The ACME resolver waits ``Acme.delay_before_checks`` before checking the DNS-01 TXT record, under the key
    the chart's Traefik reads (propagation.delayBeforeChecks; delayBeforeCheck is deprecated since v3.3)."""
    from ..component import components
    from ..roles.traefik import Traefik

    acme = next((c.acme for c in components(lab) if isinstance(c, Traefik)), None)
    if acme is None:
        return
    head = f"--certificatesresolvers.{acme.resolver}.acme.dnschallenge."
    for what, spec in _pod_specs(objs):
        args = [a for c in spec.get("containers", []) for a in c.get("args", []) or []]
        mine = [a for a in args if a.lower().startswith(head)]
        if not mine:
            continue
        for a in mine:
            if a.lower().startswith(head + "delaybeforecheck="):
                bad.append(f"traefik: {what}: {a} is deprecated since Traefik v3.3: propagation.delayBeforeChecks "
                           "is the key")
        delays = [a for a in mine if a.lower().startswith(head + "propagation.delaybeforechecks=")]
        waits = [go_seconds(a.split("=", 1)[1]) for a in delays]
        if waits != ([float(acme.delay_before_checks)] if acme.delay_before_checks else []):
            shown = ", ".join(f"{w:g}s" if w is not None else repr(a.split("=", 1)[1])
                              for w, a in zip(waits, delays)) or "no delay"
            bad.append(f"traefik: {what}: {acme.resolver} waits {shown} before checking the DNS-01 TXT record; "
                       f"Acme(delay_before_checks={acme.delay_before_checks}) asks {acme.delay_before_checks}s")
        elif delays:
            checked.append(f"traefik: {what}: {acme.resolver} waits {waits[0]:g}s before checking the DNS-01 TXT "
                           f"record ({delays[0]})")


def _check_rook_operator(lab, objs: list, options: dict[str, dict], checked: list[str], bad: list[str]) -> None:
    """The CSI plugins mount NixOS's paths (/nix read-only) and the kubelets' --root-dir."""
    from ..roles.ceph import CephStorage

    cms = [o for o in _by(objs, "ConfigMap")
           if o["metadata"]["name"] == "rook-ceph-operator-config"]
    if not cms:
        bad.append("rook-ceph: no rook-ceph-operator-config ConfigMap")
    else:
        data = cms[0].get("data") or {}
        yaml = _yaml()
        # rook v1.18: with the ceph-csi-operator (the chart's default) the node plugins never get
        # CSI_*_PLUGIN_VOLUME (Rook's Driver CRs carry no volumes: rook/rook#16370)
        if data.get("ROOK_USE_CSI_OPERATOR") != "false":
            bad.append(f"rook-ceph: ROOK_USE_CSI_OPERATOR is {data.get('ROOK_USE_CSI_OPERATOR')!r}: the "
                       "ceph-csi-operator's node plugins do not mount the CSI_*_PLUGIN_VOLUME host paths NixOS "
                       "needs (csi.rookUseCsiOperator: false)")
        else:
            checked.append("rook-ceph: Rook's own CSI drivers (ROOK_USE_CSI_OPERATOR false) mount the plugin "
                           "volumes")
        for plugin in ("RBD", "CEPHFS"):
            vols = yaml.safe_load(data.get(f"CSI_{plugin}_PLUGIN_VOLUME", "") or "null") or []
            mounts = yaml.safe_load(data.get(f"CSI_{plugin}_PLUGIN_VOLUME_MOUNT", "") or "null") or []
            paths = {v.get("hostPath", {}).get("path") for v in vols}
            if paths != set(NIXOS_PATHS):
                bad.append(f"rook-ceph: the {plugin} plugin's host paths are {sorted(p for p in paths if p)}, "
                           f"NixOS needs {sorted(NIXOS_PATHS)} (the chart renders no CSI_{plugin}_PLUGIN_VOLUME "
                           "for keys it does not know)" if not paths else
                           f"rook-ceph: the {plugin} plugin's host paths are {sorted(paths)}, NixOS needs "
                           f"{sorted(NIXOS_PATHS)}")
            else:
                checked.append(f"rook-ceph: the {plugin} plugin mounts {sorted(paths)}")
            nix_vol = {v["name"] for v in vols if v.get("hostPath", {}).get("path") == "/nix"}
            if not any(m.get("name") in nix_vol and m.get("mountPath") == "/nix" and m.get("readOnly")
                       for m in mounts):
                bad.append(f"rook-ceph: the {plugin} plugin does not mount /nix read-only at /nix ({mounts})")
        ceph_dirs = {kubelet_root_dir(options[h.hostname]) for h, _ in lab.roles_of_type(CephStorage)}
        got = data.get("ROOK_CSI_KUBELET_DIR_PATH")
        if {got} != ceph_dirs:
            bad.append(f"rook-ceph: the CSI kubelet directory is {got}, the CephStorage nodes' kubelets use "
                       f"{sorted(ceph_dirs)} (--root-dir)")
        else:
            checked.append(f"rook-ceph: CSI kubelet directory {got} is the kubelets' --root-dir")


def _check_rook_cluster(lab, objs: list, options: dict[str, dict], node_opts: dict, checked: list[str],
                        bad: list[str]) -> None:
    """One CephCluster: OSDs on exactly the CephStorage hosts' disks, an odd number of monitors."""
    from ..roles.ceph import CephStorage

    clusters = _by(objs, "CephCluster")
    if len(clusters) != 1:
        bad.append(f"rook-ceph-cluster: {len(clusters)} CephCluster objects, expected 1")
    else:
        spec = clusters[0]["spec"]
        storage = spec.get("storage", {})
        if storage.get("useAllNodes") is not False or storage.get("useAllDevices") is not False:
            bad.append(f"rook-ceph-cluster: useAllNodes {storage.get('useAllNodes')}, useAllDevices "
                       f"{storage.get('useAllDevices')}: Ceph would take nodes or disks the model does not give it")
        got = {n["name"]: sorted(d["name"] for d in n.get("devices", [])) for n in storage.get("nodes", [])}
        want = {kubelet_name(options[h.hostname]): sorted(_rook_device(d) for d in r.disks)
                for h, r in lab.roles_of_type(CephStorage) if r.disks}
        if got != want:
            bad.append(f"rook-ceph-cluster: storage nodes {got}, the CephStorage hosts' disks are {want}")
        else:
            checked.append(f"rook-ceph-cluster: OSDs on exactly {want}")
        unknown = set(got) - set(node_opts)
        if unknown:
            bad.append(f"rook-ceph-cluster: storage nodes {sorted(unknown)} are no kubelet's name")
        # Ceph's default pool size (3 unless cephConfig says) is also its own pools' (.mgr): more copies than
        # OSD hosts (failure domain host) never place, and a one-copy pool warns (POOL_NO_REDUNDANCY) unless
        # told not to: either way the cluster never reaches HEALTH_OK
        conf = (spec.get("cephConfig") or {}).get("global") or {}
        default_size = int(conf.get("osd_pool_default_size", "3"))
        sizes = sorted({p["spec"].get("replicated", {}).get("size") for p in _by(objs, "CephBlockPool")})
        health = []
        if default_size > len(got):
            health.append(f"Ceph's default pool size is {default_size} and {len(got)} OSD host(s) hold copies: "
                          "its own pools (.mgr) stay undersized (cephConfig.global.osd_pool_default_size)")
        if 1 in sizes + [default_size] and conf.get("mon_warn_on_pool_no_redundancy") != "false":
            health.append("a pool with one copy and mon_warn_on_pool_no_redundancy not \"false\": Ceph warns "
                          "POOL_NO_REDUNDANCY")
        if health:
            bad.extend(f"rook-ceph-cluster: {h}, never HEALTH_OK" for h in health)
        else:
            checked.append(f"rook-ceph-cluster: pool sizes {sizes}, default {default_size}, fit {len(got)} OSD "
                           "host(s)")
        mons = spec.get("mon", {}).get("count")
        if not (isinstance(mons, int) and mons % 2 == 1 and mons <= len(node_opts)):
            bad.append(f"rook-ceph-cluster: {mons} monitors for {len(node_opts)} nodes (odd, one per node)")
        else:
            checked.append(f"rook-ceph-cluster: {mons} monitors on {len(node_opts)} nodes")


def _rook_device(disk: str) -> str:
    rest = disk.removeprefix("/dev/")
    return rest if "/" not in rest else disk


@attrs.frozen
class Report:
    releases: tuple[str, ...]
    validated: int
    custom: int
    checked: tuple[str, ...]

    def summary(self) -> str:
        return (f"helm rendered {', '.join(self.releases)}; {self.validated} objects valid for Kubernetes "
                f"{KUBERNETES_VERSION.rsplit('.', 1)[0]} ({self.custom} custom resources); {len(self.checked)} "
                "checks against the hosts held")


def prove(lab, cluster_dir: Path, options: dict[str, dict], *, charts: Path | None = None,
          helm: str | None = None) -> Report:
    """Render the lab's cluster layer (``cluster_dir/helmfile.yaml``) and check it; ProofFailed lists every
    failure; Unavailable when helm, a module or a chart is missing."""
    helmfile = cluster_dir / "helmfile.yaml"
    if not helmfile.is_file():
        raise Unavailable("the lab has no cluster layer (no IngressProxy or CephStorage host with disks)")
    helm = helm or find_helm()
    charts = charts or find_charts()
    rendered = [render(r, charts, helm) for r in read_helmfile(helmfile)]
    done, custom, failures = validate_schemas(rendered)
    checked, bad = check_against_hosts(lab, rendered, options)
    failures += bad
    if failures:
        raise ProofFailed("the cluster layer does not hold:\n  " + "\n  ".join(failures))
    return Report(tuple(r.release.name for r in rendered), done, custom, tuple(checked))
