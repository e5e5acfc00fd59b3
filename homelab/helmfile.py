"""The cluster layer's files: ``cluster/helmfile.yaml`` and one values file per release.

The lab's components (``Cluster(components=[...])``, plus the built-in ones its roles imply) give Helm
releases; this module writes them the way the seed author wrote theirs: a helmfile with the chart
repositories and pinned versions, and plain YAML values (homelab is the template engine: no ``.gotmpl``),
each file with homelab's generated-file header and content hash.  A lab without an IngressProxy or
CephStorage host gets no releases, and no files.
"""

from __future__ import annotations

from typing import Any

from .component import Component, KubeSecret, Release
from .render import GENERATED_MARK, HASH_PREFIX, content_hash
from .yamltext import Commented, dump

__all__ = ["components", "releases", "kube_secrets", "texts", "HELMFILE", "VALUES_DIR", "CLUSTER_DIR"]

CLUSTER_DIR = "cluster"
HELMFILE = f"{CLUSTER_DIR}/helmfile.yaml"
VALUES_DIR = f"{CLUSTER_DIR}/values"
SOURCE = "hosts/cluster.py and hosts/*/host.py"


def components(lab) -> tuple[Component, ...]:
    """The lab's components: those ``Cluster.components`` lists, then the built-in ones its roles imply
    (Traefik for an IngressProxy host, RookCeph for a CephStorage host with disks) unless listed."""
    def compute():
        from .roles.ceph import CephStorage
        from .roles.ingress import IngressProxy
        from .roles.rook_ceph import RookCeph
        from .roles.traefik import Traefik

        given = tuple(getattr(lab.cluster, "components", ()))
        out = list(given)
        if lab.with_role(IngressProxy) and not any(isinstance(c, Traefik) for c in given):
            out.append(Traefik())
        if any(r.disks for _, r in lab.roles_of_type(CephStorage)) and not any(isinstance(c, RookCeph) for c in given):
            out.append(RookCeph())
        return tuple(out)

    return lab.derived("helmfile: components", compute)


def _ordered(rels: list[Release]) -> list[Release]:
    """Releases in install order: each after the releases it needs (else in the components' order)."""
    done: list[Release] = []
    names = {f"{r.namespace}/{r.name}" for r in rels}
    pending = list(rels)
    while pending:
        for r in pending:
            if all(n in {f"{d.namespace}/{d.name}" for d in done} or n not in names for n in r.needs):
                done.append(r)
                pending.remove(r)
                break
        else:  # a cycle: keep the given order (validation names it)
            done += pending
            break
    return done


def releases(lab) -> tuple[Release, ...]:
    """Every release of the lab's components, in install order."""
    return lab.derived("helmfile: releases", lambda: tuple(_ordered(
        [r for c in components(lab) for r in c.releases(lab)])))


def kube_secrets(lab) -> tuple[KubeSecret, ...]:
    """The Kubernetes Secrets the releases read, filled at deploy time from the lab's secrets."""
    return tuple(s for c in components(lab) for s in c.secrets(lab))


def problems(lab) -> list:
    """The components' own problems, and releases that clash."""
    from .errors import Problem

    out = []
    for c in components(lab):
        out += list(c.check(lab))
    seen: dict[str, str] = {}
    for c in components(lab):
        if any(p.severity == "error" for p in c.check(lab)):
            continue
        for r in c.releases(lab):
            if r.name in seen:
                out.append(Problem("cluster", "components", f"two releases are named {r.name!r} ({seen[r.name]} and "
                                   f"{type(c).__name__}); a values file is named after its release"))
            seen.setdefault(r.name, type(c).__name__)
    return out


def helm_option():
    from . import optiontypes as t
    from .contract import PARTIAL, OptionFact

    return OptionFact("environment.systemPackages", t.ListOf(t.Package()), "nixos/modules/config/system-path.nix",
                      "listOf package; definitions concatenate (the module adds corePackages and defaultPackages); "
                      "linked into /run/current-system/sw", status=PARTIAL)


def helm_module(lab):
    """``modules/k8s/helm.nix`` for the control plane when the lab has releases: helm, which ``homelab deploy``
    runs there (with the cluster-admin kubeconfig) to apply them."""
    from .model import Pkg
    from .nixmodule import Module, section

    if not releases(lab):
        return None
    return Module("modules/k8s/helm.nix", "helm on the control plane, for the cluster layer", (
        section("`homelab deploy` applies cluster/helmfile.yaml from here: helm upgrade --install per release, "
                "with the cluster-admin kubeconfig.", ("environment.systemPackages", [Pkg("kubernetes-helm")])),),
        source="the cluster layer (cluster/helmfile.yaml)")


def _header(title: str, lines: list[str]) -> list[str]:
    return [f"{GENERATED_MARK}: {title}.", f"# Source: {SOURCE}", "# Do not edit: change the source and run "
            "`python -m homelab build`.", HASH_PREFIX, *lines]


def _text(title: str, notes: list[str], body: dict[str, Any]) -> str:
    draft = "\n".join(_header(title, [f"# {n}" for n in notes])) + "\n" + dump(body)
    return draft.replace(HASH_PREFIX + "\n", HASH_PREFIX + content_hash(draft) + "\n", 1)


def helmfile_body(rels: tuple[Release, ...]) -> dict[str, Any]:
    repos = list(dict.fromkeys(r.repository for r in rels))
    return {
        "repositories": [{"name": p.name, "url": p.url} for p in repos],
        "releases": [Commented(_entry(r), r.why) if r.why else _entry(r) for r in rels],
    }


def _entry(r: Release) -> dict[str, Any]:
    return {
        "name": r.name,
        "namespace": r.namespace,
        "createNamespace": True,
        "chart": f"{r.repository.name}/{r.chart}",
        "version": r.version,
        **({"needs": list(r.needs)} if r.needs else {}),
        "values": [r.values_path],
    }


def texts(lab) -> dict[str, str]:
    """The cluster layer's files (path -> text); none for a lab without releases."""
    rels = releases(lab)
    if not rels:
        return {}
    out = {HELMFILE: _text("the cluster layer's Helm releases", [
        "Apply with `homelab deploy` (helm upgrade --install per release, in this order) or `helmfile apply`.",
        "Secrets the releases read are Kubernetes Secrets that `homelab deploy` creates; no value is here."],
        helmfile_body(rels))}
    for r in rels:
        out[f"{CLUSTER_DIR}/{r.values_path}"] = _text(
            f"values of the {r.name} release (chart {r.repository.name}/{r.chart} {r.version})", [], dict(r.values))
    return dict(sorted(out.items()))
