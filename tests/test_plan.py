"""`homelab plan`: what a build would change, per host, with diffs; exit 0/1; nothing written.

Every expectation is computed from the model (compile + render of the edited lab), not copied output.
"""

from __future__ import annotations

import difflib
import json
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest

from homelab import cli, helmfile, plan as planmod, render
from homelab.compile import LAB_DATA, compile_lab
from homelab.load import load_or_raise

REPO = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "homelab", *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env=e)


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture
def built(lab_copy: Path) -> Path:
    """A copy of the seed lab, built by this checkout's code (so it starts up to date)."""
    assert cli.main(["build", "--no-verify", "--root", str(lab_copy)]) == 0
    return lab_copy


def expected_texts(root: Path, only=None) -> tuple[dict[str, str], dict[str, list[str]]]:
    lab, _ = load_or_raise(root)
    compiled = compile_lab(lab)
    hosts = only or sorted(compiled.hosts)
    users: dict[str, list[str]] = {}
    for h in hosts:
        for rel in compiled.files_of(h):
            users.setdefault(rel, []).append(h)
    users[LAB_DATA] = list(hosts)  # the lab's data file lists every host
    texts = render.render_all(compiled, only)
    if only is None:  # a whole build also writes the cluster layer, which belongs to no host
        layer = helmfile.texts(lab)
        assert layer and all(rel.startswith("cluster/") for rel in layer)
        texts.update(layer)
        users.update({rel: [] for rel in layer})
    return texts, users


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def plan_json(root: Path, *hosts: str) -> tuple[int, dict]:
    p = run("plan", "--json", "--root", str(root), *hosts)
    assert p.returncode in (0, 1), p.stderr
    assert "Traceback" not in p.stderr
    return p.returncode, json.loads(p.stdout)


# ---------------------------------------------------------------- exit codes and content


def test_nothing_to_do_is_exit_0(built):
    before = snapshot(built)
    p = run("plan", "--root", str(built))
    assert p.returncode == 0, p.stdout + p.stderr
    texts, users = expected_texts(built)
    assert f"nothing would change ({len(texts)} generated files up to date)" in p.stdout
    lab, _ = load_or_raise(built)
    for h in lab.hosts:
        n = sum(1 for hs in users.values() if h.hostname in hs)
        assert f"{h.hostname}: up to date ({n} files)" in p.stdout
    rc, data = plan_json(built)
    assert rc == 0 and data["changed"] is False and data["files"] == []
    assert data["unchanged"] == sorted(texts)
    assert snapshot(built) == before


def test_a_changed_nodeport_is_planned_not_written(built):
    edit(built / "hosts" / "hanaakari" / "host.py", "https_nodeport=31443", "https_nodeport=31444")
    before = snapshot(built)
    texts, users = expected_texts(built)
    differ = sorted(rel for rel, t in texts.items() if (built / rel).read_text() != t)
    assert differ  # the model says something changes
    rc, data = plan_json(built)
    assert rc == 1 and data["changed"] is True
    assert [f["path"] for f in data["files"]] == differ
    for f in data["files"]:
        old, new = (built / f["path"]).read_text(), texts[f["path"]]
        assert f["action"] == "update" and f["blocked"] is None
        assert f["hosts"] == users[f["path"]]
        assert f["diff"] == "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                                        f"a/{f['path']}", f"b/{f['path']}"))
    nginx = next(f for f in data["files"] if f["path"] == "modules/ingress/nginx-stream.nix")
    assert "-      server 127.0.0.1:31443;" in nginx["diff"] and "+      server 127.0.0.1:31444;" in nginx["diff"]
    for h, info in data["hosts"].items():
        assert info["changed"] == [rel for rel in info["files"] if rel in differ]
    assert data["unchanged"] == sorted(set(texts) - set(differ))
    # human output: per host, then the diffs, then a summary; exit 1 too
    p = run("plan", "--root", str(built))
    assert p.returncode == 1
    n_h = len(data["hosts"]["hanaakari"]["changed"])
    assert f"hanaakari: {n_h} of {len(data['hosts']['hanaakari']['files'])} files would change" in p.stdout
    assert "  ~ modules/ingress/nginx-stream.nix" in p.stdout
    # the Traefik values carry the NodePort too: listed as the cluster layer's, not as a file no longer generated
    assert "cluster/values/traefik.yaml" in differ and users["cluster/values/traefik.yaml"] == []
    assert "cluster layer:\n  ~ cluster/values/traefik.yaml\n" in p.stdout and "no longer generated" not in p.stdout
    assert nginx["diff"] in p.stdout + "\n"
    assert f"{len(differ)} file{'s' if len(differ) != 1 else ''} would change" in p.stdout
    assert "\x1b[" not in p.stdout  # not a terminal: no colour
    q = run("plan", "--no-diff", "--root", str(built))
    assert q.returncode == 1 and "@@" not in q.stdout and "modules/ingress/nginx-stream.nix" in q.stdout
    assert snapshot(built) == before  # plan wrote nothing
    # and after the build it would run, nothing is left to do
    assert cli.main(["build", "--no-verify", "--root", str(built)]) == 0
    assert run("plan", "--root", str(built)).returncode == 0


def test_created_and_deleted_files(built):
    (built / "modules" / "dns" / "coredns.nix").unlink()
    (built / "hosts" / "tokiwa" / "host.py").unlink()  # tokiwa leaves the lab; its default.nix stays behind
    rc, data = plan_json(built)
    assert rc == 1
    by = {f["path"]: f for f in data["files"]}
    created = by["modules/dns/coredns.nix"]
    assert created["action"] == "create" and created["diff"].startswith("--- /dev/null\n+++ b/modules/dns/")
    texts, users = expected_texts(built)
    assert created["hosts"] == users["modules/dns/coredns.nix"]
    gone = by["hosts/tokiwa/default.nix"]
    assert gone["action"] == "delete" and gone["hosts"] == []
    assert gone["diff"].startswith("--- a/hosts/tokiwa/default.nix\n+++ /dev/null\n")
    assert "tokiwa" not in data["hosts"]
    p = run("plan", "--no-diff", "--root", str(built))
    assert "no longer generated:\n  - hosts/tokiwa/default.nix" in p.stdout
    assert "  + modules/dns/coredns.nix" in p.stdout


def test_naming_a_host_limits_the_plan(built):
    edit(built / "hosts" / "hanaakari" / "host.py", "https_nodeport=31443", "https_nodeport=31444")
    (built / "modules" / "old.nix").write_text((built / "modules" / "k8s" / "node.nix").read_text())
    rc, data = plan_json(built, str(built / "hosts" / "tokiwa"))
    texts, _ = expected_texts(built, ["tokiwa"])
    assert rc == 0 and list(data["hosts"]) == ["tokiwa"] and data["files"] == []
    assert data["unchanged"] == sorted(texts)
    rc, data = plan_json(built, str(built / "hosts" / "hanaakari"))
    assert rc == 1 and list(data["hosts"]) == ["hanaakari"]
    assert "modules/old.nix" not in [f["path"] for f in data["files"]]  # deletions only for the whole lab
    rc, data = plan_json(built)
    assert "modules/old.nix" in [f["path"] for f in data["files"] if f["action"] == "delete"]


def test_hand_edited_file_is_blocked_and_counts(built):
    target = built / "modules" / "k8s" / "node.nix"
    edit(target, '"node"', '"node" ')
    rc, data = plan_json(built)
    assert rc == 1
    f = next(f for f in data["files"] if f["path"] == "modules/k8s/node.nix")
    assert f["action"] == "update" and "edited by hand" in f["blocked"]
    p = run("plan", "--no-diff", "--root", str(built))
    assert "(blocked: was edited by hand" in p.stdout and "need --force" in p.stdout


def test_bad_input_is_exit_2_without_traceback(built):
    (built / "hosts" / "tokiwa" / "host.py").write_text("host = Host(\n")
    for args in (["plan", "--root", str(built)], ["plan", "--json", "--root", str(built)]):
        p = run(*args)
        assert p.returncode == 2 and "Traceback" not in p.stderr and "hosts/tokiwa" in p.stderr
    p = run("plan", "hosts/nope", "--root", str(built))
    assert p.returncode == 2 and "Traceback" not in p.stderr


# ---------------------------------------------------------------- colour only on a terminal


def run_on_tty(argv: list[str], env: dict) -> str:
    master, slave = pty.openpty()
    e = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    e.update(env)
    proc = subprocess.Popen([sys.executable, "-m", "homelab", *argv], cwd=REPO, stdout=slave, stderr=slave,
                            stdin=subprocess.DEVNULL, env=e)
    os.close(slave)
    chunks = []
    try:
        while True:
            r, _, _ = select.select([master], [], [], 60)
            if not r:
                break
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        proc.wait(timeout=60)
    return b"".join(chunks).decode()


def test_colour_on_a_tty_unless_no_color(built):
    edit(built / "hosts" / "hanaakari" / "host.py", "https_nodeport=31443", "https_nodeport=31444")
    coloured = run_on_tty(["plan", "--root", str(built)], {})
    assert "\x1b[32m+      server 127.0.0.1:31444;" in coloured.replace("\r\n", "\n")
    plain = run_on_tty(["plan", "--root", str(built)], {"NO_COLOR": "1"})
    assert "\x1b[" not in plain and "+      server 127.0.0.1:31444;" in plain
    assert ANSI.sub("", coloured) == plain


def test_use_colour_rules(monkeypatch):
    class Tty:
        def isatty(self):
            return True
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert planmod.use_colour(Tty()) is True
    monkeypatch.setenv("NO_COLOR", "1")
    assert planmod.use_colour(Tty()) is False
    monkeypatch.setenv("NO_COLOR", "")  # an empty NO_COLOR does not count (no-color.org)
    assert planmod.use_colour(Tty()) is True


# ---------------------------------------------------------------- JSON shapes

PLAN_KEYS = {"version", "changed", "hosts", "files", "unchanged", "warnings"}
FILE_KEYS = {"path", "action", "hosts", "blocked", "diff"}
CHECK_KEYS = {"version", "ok", "hosts", "problems"}
PROBLEM_KEYS = {"where", "field", "reason", "severity"}


def test_plan_json_shape(built):
    edit(built / "hosts" / "hanaakari" / "host.py", "https_nodeport=31443", "https_nodeport=31444")
    _, data = plan_json(built)
    assert set(data) == PLAN_KEYS and data["version"] == 1
    for info in data["hosts"].values():
        assert set(info) == {"files", "changed"}
    for f in data["files"]:
        assert set(f) == FILE_KEYS and f["action"] in ("create", "update", "delete")
    for w in data["warnings"]:
        assert set(w) == PROBLEM_KEYS and w["severity"] == "warning"


def test_check_json(built):
    p = run("check", "--json", "--root", str(built))
    data = json.loads(p.stdout)
    lab, warnings = load_or_raise(built)
    assert p.returncode == 0 and set(data) == CHECK_KEYS and data["ok"] is True
    assert data["hosts"] == [h.hostname for h in lab.hosts]
    assert [(x["where"], x["field"], x["reason"], x["severity"]) for x in data["problems"]] == [
        (w.where, w.field, w.reason, w.severity) for w in warnings]
    edit(built / "hosts" / "tokiwa" / "host.py", 'address="192.168.10.11/24"', 'address="192.168.10.300/24"')
    edit(built / "hosts" / "hanaakari" / "host.py", "http_nodeport=31080", "http_nodeport=80")
    p = run("check", "--json", "--root", str(built))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    data = json.loads(p.stdout)
    assert data["ok"] is False
    for x in data["problems"]:
        assert set(x) == PROBLEM_KEYS
    errors = {(x["where"], x["field"]) for x in data["problems"] if x["severity"] == "error"}
    assert ("hosts/tokiwa", "address") in errors
    assert ("hosts/hanaakari", "IngressProxy.http_nodeport") in errors


def test_plan_and_check_json_are_documented():
    doc = (REPO / "docs" / "json.md").read_text()
    for key in PLAN_KEYS | FILE_KEYS | CHECK_KEYS | PROBLEM_KEYS:
        assert re.search(rf"`(?:[\w\[\]]+\.)?{key}`", doc), f"docs/json.md does not document {key!r}"
    for command in ("check", "show", "graph", "plan", "expect"):
        assert f"## `{command} --json`" in doc
