"""The cluster layer's files: ``cluster/helmfile.yaml`` and one values file per release.

The lab's components (``Cluster(components=[...])``, plus the built-in ones its roles imply) give Helm
releases; this module writes them the way the seed author wrote theirs: a helmfile with the chart
repositories and pinned versions, and plain YAML values (homelab is the template engine: no ``.gotmpl``),
each file with homelab's generated-file header and content hash.  A lab without an IngressProxy or
CephStorage host gets no releases, and no files.
"""

from __future__ import annotations

from typing import Any

from .component import Release, components, kube_secrets, releases
from .render import GENERATED_MARK, HASH_PREFIX, content_hash
from .yamltext import Commented, dump

__all__ = ["components", "releases", "kube_secrets", "texts", "HELMFILE", "VALUES_DIR", "CLUSTER_DIR"]  # the first
# three are homelab.component's, named here too

CLUSTER_DIR = "cluster"
HELMFILE = f"{CLUSTER_DIR}/helmfile.yaml"
VALUES_DIR = f"{CLUSTER_DIR}/values"
SOURCE = "hosts/cluster.py and hosts/*/host.py"


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
