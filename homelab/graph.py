"""What the lab looks like: a mermaid diagram and a hardware/role table, drawn from the model.

Everything here is read from a :class:`~homelab.model.Lab` (never from the
generated files): the hosts with their roles and architecture, the LAN and
its router, the Tailscale tailnet, the split-DNS path (tailnet client ->
CoreDNS on the DNS host -> the ingress host's Tailscale address; other names
forwarded upstream), the ingress path (nginx stream on the ingress host ->
Traefik's NodePorts) and the control-plane API every node talks to.

:func:`topology` builds one plain dict (the ``--json`` shape, see
docs/json.md); :func:`mermaid` and :func:`table` render it.

    python -m homelab graph                  # mermaid
    python -m homelab graph --format table   # markdown table
    python -m homelab graph --json           # the topology as JSON
    python -m homelab graph --update-readme  # refresh the diagram in README.md
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from .cli import EXIT_CHANGED, EXIT_OK, command
from .errors import LabError, Problem
from .load import load_or_raise
from .model import (
    TAILSCALE_RANGE,
    CephStorage,
    ControlPlane,
    DnsServer,
    Host,
    IngressProxy,
    Lab,
    RaspberryPi4,
    Tailscale,
    Worker,
)

JSON_VERSION = 1
README_START = "<!-- homelab graph -->"
README_END = "<!-- /homelab graph -->"


# ---------------------------------------------------------------- the topology (the --json shape)


def _boot(h: Host) -> str:
    if isinstance(h.boot, RaspberryPi4):
        return h.boot.label + (", SD card" if h.boot.sd_card else "")
    return h.boot.label


def _kubernetes(h: Host) -> str | None:
    if h.has(ControlPlane):
        return "control-plane"
    if h.has(Worker):
        return "worker"
    return None


def host_row(h: Host) -> dict[str, Any]:
    """One host as the table and the JSON show it."""
    ceph = h.role(CephStorage)
    ts = h.role(Tailscale)
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
        "tailscale_interface": ts.interface if ts is not None else None,
        "boot": _boot(h),
        "ceph_disks": list(ceph.disks) if ceph is not None else [],
    }


def topology(lab: Lab) -> dict[str, Any]:
    """The lab as a plain dict: cluster facts, one row per host, and the paths traffic takes."""
    c = lab.cluster
    ingress = lab.with_role(IngressProxy)
    answer = ingress[0] if len(ingress) == 1 else None
    split_dns = []
    for h in lab.with_role(DnsServer):
        role = h.role(DnsServer)
        split_dns.append({
            "zone": c.domain,
            "server": h.hostname,
            "server_address": str(h.tailscale_address or h.ip),
            "port": role.port,
            "answer_host": answer.hostname if answer else None,
            "answer_address": str(answer.tailscale_address) if answer and answer.tailscale_address else None,
            "ttl": role.ttl,
            "forward": [str(a) for a in role.forward],
        })
    ingress_paths = []
    for h in ingress:
        role = h.role(IngressProxy)
        ingress_paths.append({
            "host": h.hostname,
            "address": str(h.tailscale_address or h.ip),
            "proxy": "nginx stream",
            "target": "Traefik",
            "routes": [
                {"name": "http", "listen": role.http_port, "nodeport": role.http_nodeport},
                {"name": "https", "listen": role.https_port, "nodeport": role.https_nodeport},
            ],
        })
    cp = lab.control_plane
    api = None
    if cp is not None:
        api = {
            "url": c.api_url,
            "name": c.api_name,
            "port": c.api_port,
            "server": cp.hostname,
            "address": str(cp.ip),
            "clients": [h.hostname for h in lab.hosts if h.has(Worker) and h is not cp],
        }
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
        "hosts": [host_row(h) for h in lab.hosts],
        "paths": {"split_dns": split_dns, "ingress": ingress_paths, "api": api},
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
    disks = f"ceph disks: {', '.join(row['ceph_disks'])}" if row["ceph_disks"] else ""
    return _label(row["hostname"], " · ".join(row["roles"]) or "no roles", f"{row['arch']} · {row['description']}"
                  if row["description"] else row["arch"], addr, disks)


def mermaid(topo: dict[str, Any]) -> str:
    """A mermaid flowchart of the topology (``graph TB``), deterministic for a given lab."""
    c = topo["cluster"]
    hosts = topo["hosts"]
    paths = topo["paths"]
    k8s = [h for h in hosts if h["kubernetes"]]
    others = [h for h in hosts if not h["kubernetes"]]
    on_tailnet = any(h["tailscale_address"] for h in hosts)
    lines = ["graph TB"]
    lines += [f"  classDef {name} {style};" for name, style in CLASSES.items()]
    lines.append("")
    lines.append('  internet(("Internet")):::ext')
    upstream = list(dict.fromkeys(a for d in paths["split_dns"] for a in d["forward"]))
    if upstream:
        lines.append(f"  upstream({_label('upstream DNS', ', '.join(upstream))}):::ext")
    if on_tailnet:
        lines.append(f'  subgraph tailnet[{_label("Tailscale tailnet " + c["tailnet"])}]')
        lines.append(f"    client({_label('tailnet client', 'laptop / phone')}):::ext")
        lines.append("  end")
    lines.append(f'  subgraph lan[{_label("LAN " + c["lan"])}]')
    lines.append(f"    router({_label('router', c['gateway'])}):::net")
    if k8s:
        lines.append(f'    subgraph k8s[{_label("Kubernetes cluster " + c["name"])}]')
        for h in k8s:
            cls = "cp" if h["kubernetes"] == "control-plane" else "worker"
            lines.append(f"      {node_id(h['hostname'])}[{host_label(h)}]:::{cls}")
        for i, ing in enumerate(paths["ingress"]):
            ports = ", ".join(str(r["nodeport"]) for r in ing["routes"])
            lines.append(f"      {_traefik_id(i)}[[{_label(ing['target'], 'NodePorts ' + ports)}]]:::svc")
        lines.append("    end")
    for h in others:
        lines.append(f"    {node_id(h['hostname'])}[{host_label(h)}]:::host")
    lines.append("  end")
    lines.append("")
    lines.append("  internet --- router")
    for h in hosts:
        lines.append(f"  router ---|{_label('LAN ' + h['lan_address'])}| {node_id(h['hostname'])}")
    api = paths["api"]
    if api:
        for name in api["clients"]:
            lines.append(f"  {node_id(name)} -->|{_label('API ' + api['url'])}| {node_id(api['server'])}")
    for d in paths["split_dns"]:
        server = node_id(d["server"])
        zone, where = "*." + d["zone"], f"{d['server_address']}:{d['port']}"
        if on_tailnet:
            lines.append(f"  client -->|{_label('split DNS: ' + zone, where)}| {server}")
        if d["answer_host"]:
            answer = f"{zone} A {d['answer_address']}"
            lines.append(f"  {server} -.->|{_label(answer)}| {node_id(d['answer_host'])}")
        if d["forward"]:
            lines.append(f"  {server} -->|{_label('other names: forward')}| upstream")
    for i, ing in enumerate(paths["ingress"]):
        listen = ", ".join(f":{r['listen']}" for r in ing["routes"])
        if on_tailnet:
            lines.append(f"  client -->|{_label(listen + ' to ' + ing['address'])}| {node_id(ing['host'])}")
        routes = ", ".join(f"{r['listen']} → {r['nodeport']}" for r in ing["routes"])
        lines.append(f"  {node_id(ing['host'])} -->|{_label(ing['proxy'], routes)}| {_traefik_id(i)}")
    return "\n".join(lines) + "\n"


def _traefik_id(i: int) -> str:
    return "traefik" if i == 0 else f"traefik{i + 1}"


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


def replace_block(readme: str, block: str) -> str:
    """The README with the marked block replaced (or a "## Diagram" section appended when absent)."""
    start, end = readme.find(README_START), readme.find(README_END)
    if start == -1 and end == -1:
        sep = "" if not readme or readme.endswith("\n\n") else ("\n" if readme.endswith("\n") else "\n\n")
        return f"{readme}{sep}## Diagram\n\n{block}\n"
    if start == -1 or end == -1 or end < start:
        raise LabError([Problem("README.md", "markers", f"needs both {README_START} and {README_END}, in order")])
    return readme[:start] + block + readme[end + len(README_END):]


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- command


def _configure(p) -> None:
    p.add_argument("--format", choices=("mermaid", "table"), default="mermaid",
                   help="mermaid diagram (default) or the hardware/role table (markdown)")
    p.add_argument("--json", action="store_true", help="print the topology as JSON (see docs/json.md)")
    p.add_argument("--update-readme", action="store_true",
                   help="rewrite the diagram between the README's <!-- homelab graph --> markers")
    p.add_argument("--check-readme", action="store_true",
                   help="write nothing; exit 1 if the README's diagram is out of date")
    p.add_argument("--readme", help="the README to update or check (default: README.md in the lab's folder)")


@command("graph", "draw the lab from the model: mermaid diagram, hardware/role table, or JSON",
         "python -m homelab graph --format table", _configure)
def cmd_graph(args) -> int:
    root = Path(args.root) if args.root else Path.cwd()
    lab, _warnings = load_or_raise(root)
    topo = topology(lab)
    if args.update_readme or args.check_readme:
        readme = Path(args.readme) if args.readme else root / "README.md"
        old = readme.read_text(encoding="utf-8") if readme.is_file() else ""
        new = replace_block(old, readme_block(topo))
        if args.check_readme:
            if new != old:
                print(f"{readme}: the diagram is out of date (run `python -m homelab graph --update-readme`)")
                return EXIT_CHANGED
            print(f"{readme}: the diagram is up to date")
            return EXIT_OK
        if new != old:
            _write_atomic(readme, new)
            print(f"{readme}: diagram updated")
        else:
            print(f"{readme}: diagram already up to date")
        return EXIT_OK
    if args.json:
        out = dict(topo, mermaid=mermaid(topo), table=table(topo))
        print(json.dumps(out, indent=2, sort_keys=True))
    elif args.format == "table":
        sys.stdout.write(table(topo))
    else:
        sys.stdout.write(mermaid(topo))
    return EXIT_OK


__all__ = ["topology", "mermaid", "table", "readme_block", "replace_block"]
