"""What the lab looks like: a mermaid diagram and a hardware/role table, drawn from the model.

Everything here is read from a :class:`~homelab.model.Lab` (never from the
generated files).  The frame is the same for every lab: the internet, the LAN
and its router, the Tailscale tailnet, the Kubernetes cluster holding its
nodes.  What runs inside comes from the roles (:meth:`homelab.role.Role.graph`):
the control plane draws the API arrows, the DNS server the split-DNS path, the
ingress proxy nginx → Traefik's NodePorts, and a lab's own role whatever it
adds — in the order of the roles (built-ins first, then the lab's own by name),
host by host.

:func:`topology` builds one plain dict (the ``--json`` shape, see
docs/json.md); :func:`mermaid` and :func:`table` render it.

    python -m homelab graph                  # mermaid
    python -m homelab graph --format table   # markdown table
    python -m homelab graph --json           # the topology as JSON
    python -m homelab graph --update-readme  # refresh the diagram in README.md
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from .component import components, releases
from .errors import LabError, Problem
from .model import TAILSCALE_RANGE, Host, Lab
from .role import HostContext

JSON_VERSION = 2
README_START = "<!-- homelab graph -->"
README_END = "<!-- /homelab graph -->"
PLACES = ("outside", "tailnet", "lan", "cluster")


# ---------------------------------------------------------------- the topology (the --json shape)


def _boot(h: Host) -> str:
    label = h.boot.label
    return label + (", SD card" if getattr(h.boot, "sd_card", False) else "")


def _kubernetes(h: Host) -> str | None:
    if h.is_control_plane:
        return "control-plane"
    if h.is_kubernetes_node:
        return "worker"
    return None


def host_row(lab: Lab, h: Host) -> dict[str, Any]:
    """One host as the table and the JSON show it."""
    ctx = HostContext(lab, h)
    return {
        "hostname": h.hostname,
        "description": h.description,
        "system": h.system,
        "arch": h.arch,
        "roles": [r.label for r in h.roles],
        "role_types": [type(r).__name__ for r in h.roles],
        "kubernetes": _kubernetes(h),
        "lan_address": str(h.ip),
        "interface": h.interface,
        "tailscale_address": str(h.tailscale_address) if h.tailscale_address is not None else None,
        "boot": _boot(h),
        "notes": [n for r in h.roles for n in r.notes(ctx)],
    }


def _role_order(lab: Lab) -> list[type]:
    from .roles import BUILTIN

    own = sorted((t for t in lab.role_types if t not in BUILTIN), key=lambda t: (t.__module__, t.__name__))
    return [t for t in BUILTIN if t in lab.role_types] + own



def _add_part(part, nodes: dict[str, dict], edges: list[dict]) -> None:
    """A role's or component's boxes and arrows into the diagram's (the first box of an id wins)."""
    for n in part.nodes:
        nodes.setdefault(n.id, {"id": n.id, "lines": list(n.lines), "class": n.cls, "place": n.place,
                                "shape": n.shape})
    edges += [{"from": e.src, "to": e.dst, "lines": list(e.lines), "style": e.style} for e in part.edges]


def topology(lab: Lab) -> dict[str, Any]:
    """The lab as a plain dict: cluster facts, one row per host, the roles' boxes, arrows and paths."""
    c = lab.cluster
    nodes: dict[str, dict[str, Any]] = {}
    edges: list[dict[str, Any]] = []
    paths: dict[str, list[Any]] = {}
    for role_type in _role_order(lab):
        for h, role in lab.roles_of_type(role_type):
            part = role.graph(HostContext(lab, h))
            if part is None:
                continue
            _add_part(part, nodes, edges)
            if part.key:
                paths.setdefault(part.key, []).append(part.path)
    for comp in components(lab):  # the cluster layer's components (cluster/helmfile.yaml)
        part = comp.graph(lab)
        if part is not None:
            _add_part(part, nodes, edges)
    rels = [{"name": r.name, "namespace": r.namespace, "chart": f"{r.repository.name}/{r.chart}",
             "version": r.version} for r in releases(lab)]
    if rels:
        paths["releases"] = rels
    return {
        "version": JSON_VERSION,
        "cluster": {
            "name": c.name,
            "domain": c.domain,
            "lan": str(c.lan),
            "gateway": str(c.gateway),
            "nameservers": [str(a) for a in c.nameservers],
            "pod_cidr": str(c.pod_cidr),
            "service_cidr": str(c.service_cidr),
            "tailnet": str(TAILSCALE_RANGE),
        },
        "hosts": [host_row(lab, h) for h in lab.hosts],
        "nodes": list(nodes.values()),
        "edges": edges,
        "paths": paths,
    }


# ---------------------------------------------------------------- mermaid

CLASSES = {  # the seed article's palette
    "cp": "fill:#2a7e9e,stroke:#2a7e9e,color:white,font-weight:bold",
    "worker": "fill:#3d874c,stroke:#3d874c,color:white,font-weight:bold",
    "host": "fill:#b58900,stroke:#b58900,color:white,font-weight:bold",
    "net": "fill:#6c48a8,stroke:#6c48a8,color:white,font-weight:bold",
    "svc": "fill:#d9333f,stroke:#d9333f,color:white,font-weight:bold",
    "ext": "fill:#ffffdc,stroke:#b5b58f,color:black",
}


def node_id(hostname: str) -> str:
    """A mermaid node id for a host (DNS labels have '-', ids had better not; '_' is not in DNS labels)."""
    return "h_" + hostname.replace("-", "_")


def esc(text: str) -> str:
    """Text safe inside a double-quoted mermaid label (mermaid's #code; entities)."""
    out = []
    for ch in text:
        if ch == "#":
            out.append("#35;")
        elif ch == '"':
            out.append("#quot;")
        elif ch == "<":
            out.append("#lt;")
        elif ch == ">":
            out.append("#gt;")
        elif ch == "&":
            out.append("#amp;")
        else:
            out.append(ch)
    return "".join(out)


def _label(*lines: str) -> str:
    return '"' + "<br>".join(esc(x) for x in lines if x) + '"'


def host_label(row: dict[str, Any]) -> str:
    addr = row["lan_address"] + (f" · ts {row['tailscale_address']}" if row["tailscale_address"] else "")
    return _label(row["hostname"], " · ".join(row["roles"]) or "no roles", f"{row['arch']} · {row['description']}"
                  if row["description"] else row["arch"], addr, *row["notes"])


_SHAPES = {"round": ("(", ")"), "box": ("[", "]"), "subroutine": ("[[", "]]")}


def _node(n: dict[str, Any]) -> str:
    left, right = _SHAPES[n["shape"]]
    return f"{n['id']}{left}{_label(*n['lines'])}{right}:::{n['class']}"


def _end(name: str, hosts: set[str]) -> str:
    return node_id(name) if name in hosts else name


def mermaid(topo: dict[str, Any]) -> str:
    """A mermaid flowchart of the topology (``graph TB``), deterministic for a given lab."""
    c = topo["cluster"]
    hosts = topo["hosts"]
    names = {h["hostname"] for h in hosts}
    k8s = [h for h in hosts if h["kubernetes"]]
    others = [h for h in hosts if not h["kubernetes"]]
    on_tailnet = any(h["tailscale_address"] for h in hosts)
    placed = {p: [n for n in topo["nodes"] if n["place"] == p] for p in PLACES}
    lines = ["graph TB"]
    lines += [f"  classDef {name} {style};" for name, style in CLASSES.items()]
    lines.append("")
    lines.append('  internet(("Internet")):::ext')
    lines += [f"  {_node(n)}" for n in placed["outside"]]
    if on_tailnet:
        lines.append(f'  subgraph tailnet[{_label("Tailscale tailnet " + c["tailnet"])}]')
        lines.append(f"    client({_label('tailnet client', 'laptop / phone')}):::ext")
        lines += [f"    {_node(n)}" for n in placed["tailnet"]]
        lines.append("  end")
    lines.append(f'  subgraph lan[{_label("LAN " + c["lan"])}]')
    lines.append(f"    router({_label('router', c['gateway'])}):::net")
    lines += [f"    {_node(n)}" for n in placed["lan"]]
    if k8s:
        lines.append(f'    subgraph k8s[{_label("Kubernetes cluster " + c["name"])}]')
        for h in k8s:
            cls = "cp" if h["kubernetes"] == "control-plane" else "worker"
            lines.append(f"      {node_id(h['hostname'])}[{host_label(h)}]:::{cls}")
        lines += [f"      {_node(n)}" for n in placed["cluster"]]
        lines.append("    end")
    for h in others:
        lines.append(f"    {node_id(h['hostname'])}[{host_label(h)}]:::host")
    lines.append("  end")
    lines.append("")
    lines.append("  internet --- router")
    for h in hosts:
        lines.append(f"  router ---|{_label('LAN ' + h['lan_address'])}| {node_id(h['hostname'])}")
    for e in topo["edges"]:
        if "client" in (e["from"], e["to"]) and not on_tailnet:
            continue
        lines.append(f"  {_end(e['from'], names)} {e['style']}|{_label(*e['lines'])}| {_end(e['to'], names)}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- table

TABLE_COLUMNS = ("host", "hardware", "system", "roles", "LAN", "Tailscale", "boot")


def table_rows(topo: dict[str, Any]) -> list[tuple[str, ...]]:
    return [
        (h["hostname"], h["description"] or "-", h["system"], ", ".join(h["roles"]) or "-", h["lan_address"],
         h["tailscale_address"] or "-", h["boot"])
        for h in topo["hosts"]
    ]


def table(topo: dict[str, Any]) -> str:
    """The hardware/role table as markdown, columns padded so it reads in a terminal too."""
    rows = [TABLE_COLUMNS, *[tuple(c.replace("|", "\\|") for c in r) for r in table_rows(topo)]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(TABLE_COLUMNS))]

    def line(cells) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    out = [line(rows[0]), "| " + " | ".join("-" * w for w in widths) + " |"]
    out += [line(r) for r in rows[1:]]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- README


def readme_block(topo: dict[str, Any]) -> str:
    """What goes between the README markers: the diagram and the table."""
    return (f"{README_START}\n"
            "<!-- generated by `python -m homelab graph --update-readme`; do not edit by hand -->\n"
            f"```mermaid\n{mermaid(topo)}```\n\n{table(topo)}{README_END}")


def replace_block(readme: str, block: str, markers: tuple[str, str] = (README_START, README_END),
                  heading: str = "Diagram") -> str:
    """The README with the marked block replaced (or a "## <heading>" section appended when absent)."""
    first, last = markers
    start, end = readme.find(first), readme.find(last)
    if start == -1 and end == -1:
        sep = "" if not readme or readme.endswith("\n\n") else ("\n" if readme.endswith("\n") else "\n\n")
        return f"{readme}{sep}## {heading}\n\n{block}\n"
    if start == -1 or end == -1 or end < start:
        raise LabError([Problem("README.md", "markers", f"needs both {first} and {last}, in order")])
    return readme[:start] + block + readme[end + len(last):]


def write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["topology", "mermaid", "table", "readme_block", "replace_block", "write_atomic"]
