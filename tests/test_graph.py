"""`homelab graph`: the diagram, table and JSON say what the model says, and the README's copy is fresh."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import attrs
import pytest

from homelab import cli, graph
from homelab import CephStorage, ControlPlane, DnsServer, IngressProxy, Tailscale, Worker
from tests import labkit
from tests.conftest import SEED

REPO = Path(__file__).resolve().parent.parent


def run(*argv: str, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "homelab", *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


# ---------------------------------------------------------------- a small mermaid reader
# Enough of the flowchart grammar to check what graph.mermaid() writes: node declarations,
# subgraphs and labelled edges.  Every label must be one double-quoted string.

NODE = re.compile(r'^(?P<id>[A-Za-z_][A-Za-z0-9_]*)(?P<open>\(\(|\[\[|\(|\[)"(?P<label>[^"]*)"(?:\)\)|\]\]|\)|\])'
                  r'(?::::(?P<cls>\w+))?$')
EDGE = re.compile(r'^(?P<a>[A-Za-z_]\w*) (?P<arrow>-->|---|-\.->)(?:\|"(?P<label>[^"]*)"\|)? (?P<b>[A-Za-z_]\w*)$')
SUBGRAPH = re.compile(r'^subgraph (?P<id>\w+)\["(?P<label>[^"]*)"\]$')


def parse(text: str) -> dict:
    lines = [ln.strip() for ln in text.splitlines()]
    assert lines[0] == "graph TB"
    nodes: dict[str, dict] = {}
    edges: list[tuple[str, str, str, str]] = []
    stack: list[str] = []
    subgraphs: dict[str, str] = {}
    classes = set()
    for ln in lines[1:]:
        if not ln:
            continue
        if ln.startswith("classDef "):
            classes.add(ln.split()[1])
            continue
        if m := SUBGRAPH.match(ln):
            stack.append(m["id"])
            subgraphs[m["id"]] = m["label"]
            continue
        if ln == "end":
            assert stack, "an 'end' without a subgraph"
            stack.pop()
            continue
        if m := NODE.match(ln):
            assert m["id"] not in nodes, f"node {m['id']} declared twice"
            nodes[m["id"]] = {"label": m["label"], "cls": m["cls"], "in": tuple(stack)}
            continue
        m = EDGE.match(ln)
        assert m, f"not a node, edge or subgraph line: {ln!r}"
        edges.append((m["a"], m["arrow"], m["label"] or "", m["b"]))
    assert not stack, "unclosed subgraph"
    for a, _, _, b in edges:
        assert a in nodes and b in nodes, f"edge {a} -> {b} names an undeclared node"
    for n in nodes.values():
        assert n["cls"] is None or n["cls"] in classes
    return {"nodes": nodes, "edges": edges, "subgraphs": subgraphs}


def unesc(label: str) -> str:
    return (label.replace("#quot;", '"').replace("#lt;", "<").replace("#gt;", ">").replace("#amp;", "&")
            .replace("#35;", "#"))


def edges_between(g: dict, a: str, b: str) -> list[str]:
    return [unesc(lbl) for x, _, lbl, y in g["edges"] if (x, y) == (a, b)]


# ---------------------------------------------------------------- the diagram against the model


@pytest.fixture(scope="module")
def seed_lab():
    from homelab.load import load_or_raise
    return load_or_raise(SEED)[0]


def check_against_model(lab) -> dict:
    """Everything the diagram must say, each fact read from ``lab``."""
    g = parse(graph.mermaid(graph.topology(lab)))
    c = lab.cluster
    nodes = g["nodes"]
    assert f"LAN {c.lan}" in g["subgraphs"].values()
    assert c.name in g["subgraphs"].get("k8s", "") or not any(h.has(ControlPlane) or h.has(Worker)
                                                               for h in lab.hosts)
    assert str(c.gateway) in nodes["router"]["label"]
    for h in lab.hosts:
        nid = graph.node_id(h.hostname)
        label = unesc(nodes[nid]["label"]).split("<br>")
        assert label[0] == h.hostname
        assert label[1] == (" · ".join(r.label for r in h.roles) or "no roles")
        assert label[2].startswith(h.arch)
        if h.description:
            assert h.description in label[2]
        assert str(h.ip) in label[3]
        if h.tailscale_address:
            assert f"ts {h.tailscale_address}" in label[3]
        k8s_node = h.has(ControlPlane) or h.has(Worker)
        assert ("k8s" in nodes[nid]["in"]) == k8s_node
        assert "lan" in nodes[nid]["in"]
        assert nodes[nid]["cls"] == ("cp" if h.has(ControlPlane) else "worker" if h.has(Worker) else "host")
        assert edges_between(g, "router", nid) == [f"LAN {h.ip}"]
        # the control-plane API: every worker talks to the control plane at the cluster's API URL
        cp = lab.control_plane
        if h.has(Worker) and cp is not None:
            assert edges_between(g, nid, graph.node_id(cp.hostname)) == [f"API {c.api_url}"]
        else:
            assert not [e for e in g["edges"] if e[0] == nid and e[2].startswith("API ")]
        ceph = h.role(CephStorage)
        if ceph is not None and ceph.disks:
            assert f"ceph disks: {', '.join(ceph.disks)}" in label
    # split DNS: tailnet client -> DNS host (its Tailscale address and port) -> ingress host's Tailscale address
    for h in lab.with_role(DnsServer):
        role = h.role(DnsServer)
        nid = graph.node_id(h.hostname)
        if "client" in nodes:
            assert edges_between(g, "client", nid) == [f"split DNS: *.{c.domain}<br>"
                                                       f"{h.tailscale_address or h.ip}:{role.port}"]
        ingress = lab.with_role(IngressProxy)[0]
        assert edges_between(g, nid, graph.node_id(ingress.hostname)) == [
            f"*.{c.domain} A {ingress.tailscale_address}"]
        assert edges_between(g, nid, "upstream") == ["other names: forward"]
        for a in role.forward:
            assert str(a) in nodes["upstream"]["label"]
    # ingress: client -> ingress host on its ports; nginx stream -> Traefik on the NodePorts
    for h in lab.with_role(IngressProxy):
        r = h.role(IngressProxy)
        nid = graph.node_id(h.hostname)
        assert edges_between(g, nid, "traefik") == [
            f"nginx stream<br>{r.http_port} → {r.http_nodeport}, {r.https_port} → {r.https_nodeport}"]
        if "client" in nodes:
            assert edges_between(g, "client", nid) == [f":{r.http_port}, :{r.https_port} to {h.tailscale_address}"]
        assert f"NodePorts {r.http_nodeport}, {r.https_nodeport}" in unesc(nodes["traefik"]["label"])
        assert "k8s" in nodes["traefik"]["in"]
    assert ("client" in nodes) == any(h.tailscale_address for h in lab.hosts)
    if "client" in nodes:
        assert nodes["client"]["in"] == ("tailnet",)
    return g


def test_seed_lab_diagram_matches_the_model(seed_lab):
    g = check_against_model(seed_lab)
    # the seed lab has the full picture: 3 hosts + router, internet, upstream, client, traefik, rook (Ceph)
    assert len(g["nodes"]) == len(seed_lab.hosts) + 6


def test_a_varied_lab_is_drawn_from_its_own_values():
    lab = labkit.lab(domain="lab.example.org", api_port=7443, api_name="k8s.internal", name="other")
    lab = labkit.evolve_host(lab, "hanaakari", roles=[
        Worker(), CephStorage(disks=["/dev/sdb", "/dev/sdc"]),
        IngressProxy(http_nodeport=30080, https_nodeport=30443, http_port=8080, https_port=8443), Tailscale()],
        description='N97 "box" #2 <fast> & quiet')
    lab = labkit.evolve_host(lab, "yomogi", roles=[ControlPlane(), DnsServer(forward=["9.9.9.9"], port=5353),
                                                   Tailscale()])
    g = check_against_model(lab)
    text = graph.mermaid(graph.topology(lab))
    for old in ("31080", "31443", "home.example.com", "6443", "1.1.1.1"):
        assert old not in text
    # characters mermaid would misread are written as entities, and read back intact
    assert 'N97 "box" #2 <fast> & quiet' in unesc(g["nodes"]["h_hanaakari"]["label"])
    assert '"box"' not in text and "<fast>" not in text


def test_hosts_outside_kubernetes_and_off_the_tailnet():
    hosts = labkit.seed_hosts() + [
        labkit.Host(hostname="nas-1", system="x86_64-linux", state_version="26.05", interface="eth0",
                    address="192.168.10.20",
                    roles=[], description="a NAS")]
    lab = labkit.lab(hosts=hosts)
    g = check_against_model(lab)
    assert g["nodes"]["h_nas_1"]["in"] == ("lan",)
    assert g["nodes"]["h_nas_1"]["cls"] == "host"
    assert "ts " not in g["nodes"]["h_nas_1"]["label"]
    # no host on Tailscale: no tailnet, no client, the DNS and ingress hosts still drawn
    bare = [attrs.evolve(h, tailscale_address=None, roles=[r for r in h.roles if not isinstance(r, (
        Tailscale, DnsServer))]) for h in labkit.seed_hosts()]
    g = check_against_model(labkit.lab(hosts=bare))
    assert "client" not in g["nodes"] and "tailnet" not in g["subgraphs"]


def test_output_is_deterministic():
    """The same lab draws the same bytes in two processes with different string hashing (set and dict order
    that leaks into the output differs between them) and with its hosts given in another order."""
    import json
    import os
    import subprocess
    import sys

    code = ("import json, sys; from tests import labkit; from homelab import graph; t = graph.topology(labkit.lab()); "
            "sys.stdout.write(json.dumps([graph.mermaid(t), graph.table(t), json.dumps(t, sort_keys=False, "
            "default=str)]))")
    outs = [subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, PYTHONHASHSEED=seed)) for seed in ("1", "2", "3")]
    assert all(o.returncode == 0 for o in outs), [o.stderr for o in outs]
    assert outs[0].stdout == outs[1].stdout == outs[2].stdout
    reordered = labkit.lab(hosts=list(reversed(labkit.seed_hosts())))
    assert json.loads(outs[0].stdout)[0] == graph.mermaid(graph.topology(reordered))


MERMAID_JS = r"""
import { createRequire } from "module";
import { pathToFileURL } from "url";
import fs from "fs";
const req = createRequire(process.env.HOMELAB_MERMAID_DIR + "/");
const { JSDOM } = req("jsdom");
const dom = new JSDOM("<!doctype html><html><body></body></html>");
globalThis.window = dom.window; globalThis.document = dom.window.document;
const mermaid = (await import(pathToFileURL(req.resolve("mermaid")).href)).default;
for (const f of process.argv.slice(2)) {
  try { await mermaid.parse(fs.readFileSync(f, "utf8")); console.log("ok " + f); }
  catch (e) { console.log("ERR " + f + ": " + e.message); process.exitCode = 1; }
}
"""


def test_real_mermaid_parses_the_diagrams(tmp_path, seed_lab):
    """The real mermaid parser (npm mermaid + jsdom in $HOMELAB_MERMAID_DIR) accepts every diagram."""
    where = os.environ.get("HOMELAB_MERMAID_DIR")
    if not where or not shutil.which("node") or not (Path(where) / "node_modules" / "mermaid").is_dir():
        pytest.skip("set HOMELAB_MERMAID_DIR to a folder with `npm install mermaid@11 jsdom` (and have node) "
                    "to parse the diagrams with the real mermaid")
    hostile = labkit.evolve_host(labkit.lab(), "tokiwa", description='a "quoted" #hash <b>tag</b> & [x] {y} |z|')
    files = []
    for i, lab in enumerate([seed_lab, hostile]):
        f = tmp_path / f"d{i}.mmd"
        f.write_text(graph.mermaid(graph.topology(lab)))
        files.append(str(f))
    bad = tmp_path / "bad.mmd"
    bad.write_text("graph TB\n  a[x] -->\n")
    (tmp_path / "parse.mjs").write_text(MERMAID_JS)
    p = subprocess.run(["node", str(tmp_path / "parse.mjs"), *files, str(bad)], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "HOMELAB_MERMAID_DIR": where})
    out = p.stdout.splitlines()
    assert out[:2] == [f"ok {f}" for f in files], p.stdout + p.stderr
    assert out[2].startswith(f"ERR {bad}")  # the parser does reject a broken diagram


# ---------------------------------------------------------------- the table


def parse_table(text: str) -> list[dict[str, str]]:
    rows = [[c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", ln)[1:-1]]
            for ln in text.strip().splitlines()]
    head, sep, *body = rows
    assert all(set(c) == {"-"} for c in sep)
    return [dict(zip(head, r)) for r in body]


def test_table_rows_are_the_hosts():
    lab = labkit.evolve_host(labkit.lab(), "tokiwa", description="mini PC | 16 GB")
    rows = parse_table(graph.table(graph.topology(lab)))
    assert [r["host"] for r in rows] == [h.hostname for h in lab.hosts]
    for r, h in zip(rows, lab.hosts):
        assert r["hardware"] == (h.description or "-")
        assert r["system"] == h.system
        assert r["roles"] == ", ".join(x.label for x in h.roles)
        assert r["LAN"] == str(h.ip)
        assert r["Tailscale"] == str(h.tailscale_address)
        assert r["boot"].startswith(h.boot.label)
    assert {r["host"]: r["hardware"] for r in rows}["tokiwa"] == "mini PC | 16 GB"


def test_cli_table_and_mermaid_and_json(seed_lab):
    topo = graph.topology(seed_lab)
    t = run("graph", "--format", "table", cwd=SEED)
    assert t.returncode == 0, t.stderr
    assert t.stdout == graph.table(topo)
    m = run("graph", cwd=SEED / "hosts" / "yomogi")  # the lab is found from a folder inside it
    assert m.returncode == 0 and m.stdout == graph.mermaid(topo)
    assert "\x1b[" not in m.stdout + t.stdout
    j = run("graph", "--json", "--root", str(SEED))
    assert j.returncode == 0
    data = json.loads(j.stdout)
    assert_graph_json_shape(data)
    assert data["mermaid"] == m.stdout and data["table"] == t.stdout
    assert [h["hostname"] for h in data["hosts"]] == [h.hostname for h in seed_lab.hosts]
    cp = seed_lab.control_plane
    assert [(a["server"], a["url"]) for a in data["paths"]["api"]] == [(cp.hostname, seed_lab.cluster.api_url)]


GRAPH_KEYS = {"version", "cluster", "hosts", "nodes", "edges", "paths", "mermaid", "table"}
CLUSTER_KEYS = {"name", "domain", "lan", "gateway", "nameservers", "pod_cidr", "service_cidr", "tailnet"}
HOST_KEYS = {"hostname", "description", "system", "arch", "roles", "role_types", "kubernetes", "lan_address",
             "interface", "tailscale_address", "boot", "notes"}
DNS_KEYS = {"zone", "server", "server_address", "port", "answer_host", "answer_address", "ttl", "forward"}
INGRESS_KEYS = {"host", "address", "proxy", "target", "routes"}
API_KEYS = {"url", "name", "port", "server", "address", "clients"}


def assert_graph_json_shape(data: dict) -> None:
    assert set(data) == GRAPH_KEYS and data["version"] == 2
    assert set(data["cluster"]) == CLUSTER_KEYS
    for h in data["hosts"]:
        assert set(h) == HOST_KEYS
        assert h["kubernetes"] in ("control-plane", "worker", None)
    assert set(data["paths"]) <= {"split_dns", "ingress", "api", "monitoring", "releases"}
    for d in data["paths"].get("releases", []):
        assert set(d) == {"name", "namespace", "chart", "version"}
    for d in data["paths"].get("split_dns", []):
        assert set(d) == DNS_KEYS
    for i in data["paths"].get("ingress", []):
        assert set(i) == INGRESS_KEYS
        for r in i["routes"]:
            assert set(r) == {"name", "listen", "nodeport"}
    for a in data["paths"].get("api", []):
        assert set(a) == API_KEYS


def test_json_shape_is_documented():
    doc = (REPO / "docs" / "json.md").read_text()
    for key in GRAPH_KEYS | CLUSTER_KEYS | HOST_KEYS | DNS_KEYS | INGRESS_KEYS | API_KEYS:
        assert f"`{key}`" in doc, f"docs/json.md does not document graph key {key!r}"


# ---------------------------------------------------------------- the README's copy


def test_readme_diagram_is_not_stale(seed_lab):
    """The README draws the seed lab (its first example); a fork may redraw it for its own lab instead.

    Either way the block must be exactly what `homelab graph` draws from one of the two, so a diagram
    that is stale for both fails, while editing hosts/ alone never does.
    """
    from homelab.load import load_or_raise

    readme = (REPO / "README.md").read_text()
    assert readme.count(graph.README_START) == 1 and readme.count(graph.README_END) == 1
    start, end = readme.index(graph.README_START), readme.index(graph.README_END) + len(graph.README_END)
    seed_block = graph.readme_block(graph.topology(seed_lab))
    own_block = graph.readme_block(graph.topology(load_or_raise(REPO)[0]))
    assert readme[start:end] in (seed_block, own_block), (
        "README.md's diagram is out of date: run `python -m homelab graph --root homelab/examples/seed "
        "--update-readme --readme README.md` (or without --root for this repository's own lab)")
    p = run("graph", "--check-readme", "--root", str(SEED), "--readme", str(REPO / "README.md"))
    assert p.returncode == (0 if readme[start:end] == seed_block else 1), p.stdout + p.stderr


def test_update_readme_rewrites_only_the_block(lab_copy, tmp_path):
    readme = lab_copy / "README.md"
    readme.write_text("# my lab\n\nintro\n")
    p = run("graph", "--check-readme", "--root", str(lab_copy))
    assert p.returncode == 1 and "out of date" in p.stdout
    p = run("graph", "--update-readme", "--root", str(lab_copy))
    assert p.returncode == 0, p.stderr
    text = readme.read_text()
    assert text.startswith("# my lab\n\nintro\n\n## Diagram\n\n" + graph.README_START)
    assert run("graph", "--check-readme", "--root", str(lab_copy)).returncode == 0
    # a change in the model makes it stale; updating touches nothing outside the markers
    readme.write_text(text + "\n## After\n\nkept\n")
    host_py = lab_copy / "hosts" / "hanaakari" / "host.py"
    host_py.write_text(host_py.read_text().replace("https_nodeport=31443", "https_nodeport=31999"))
    assert run("graph", "--check-readme", "--root", str(lab_copy)).returncode == 1
    assert run("graph", "--update-readme", "--root", str(lab_copy)).returncode == 0
    new = readme.read_text()
    assert "31999" in new and "31443" not in new
    assert new.startswith("# my lab\n\nintro\n\n## Diagram\n\n") and new.endswith("\n## After\n\nkept\n")


def test_broken_markers_are_a_problem_not_a_traceback(lab_copy):
    (lab_copy / "README.md").write_text(f"# x\n{graph.README_END}\n{graph.README_START}\n")
    p = run("graph", "--update-readme", "--root", str(lab_copy))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "markers" in p.stderr


def test_bad_lab_is_exit_2_without_traceback(lab_copy):
    (lab_copy / "hosts" / "tokiwa" / "host.py").write_text("host = Host(\n")
    p = run("graph", "--root", str(lab_copy))
    assert p.returncode == 2 and "Traceback" not in p.stderr and "hosts/tokiwa" in p.stderr


# ---------------------------------------------------------------- help everywhere


def test_every_command_has_help_with_an_example():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert {"build", "check", "show", "graph", "plan"} <= set(sub.choices)
    for name, sp in sub.choices.items():
        text = sp.format_help()
        assert re.search(rf"example: homelab {name}\b", text), f"`{name} --help` has no example"
    p = run("graph", "--help")
    assert p.returncode == 0 and f"example: {Path(sys.executable).name} -m homelab graph" in p.stdout
    assert textwrap.dedent(p.stdout).count("--json") >= 1
