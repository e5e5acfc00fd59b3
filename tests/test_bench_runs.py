"""bench/bench.py keeps running (no timing is asserted here), and the fixes it led to keep working."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from homelab import files
from homelab.load import load

REPO = Path(__file__).resolve().parent.parent


def bench_module():
    spec = importlib.util.spec_from_file_location("homelab_bench", REPO / "bench" / "bench.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # as an import would (its dataclass looks itself up there)
    spec.loader.exec_module(mod)
    return mod


def test_bench_script_runs_on_a_tiny_size(nix):
    p = subprocess.run([sys.executable, str(REPO / "bench" / "bench.py"), "--sizes", "2", "3", "--quick"],
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout
    assert "machine: " in out and "cores" in out
    assert "seed lab (3 hosts), through the CLI:" in out
    seed = [line.split("  ")[1].strip() for line in out.splitlines() if line.startswith("  build")]
    assert seed == ["build, every file written", "build into a new copy of the sources",
                    "build, nothing changed (no-op)", "build --no-cache, nothing changed",
                    "build --check, nothing changed"]
    rows = {line.split()[0] for line in out.splitlines() if line.strip()[:1].isdigit() and "s |" in line}
    assert rows == {"2", "3"}
    assert "scaling of the full build: 3 hosts / 2 hosts = " in out
    # every whole process's peak memory beside its time, and homelab expect timed too
    figures = [line.split(":")[1].split()[0] for line in out.splitlines() if line.startswith("  3 hosts: ")]
    assert figures == ["no-op", "cold", "new", "full", "expect"], out
    assert all(re.search(r" runs, peak \d+ MiB, CPU \d+\.\d\d s\)", line)
               for line in out.splitlines() if line.startswith("  3 hosts: "))
    assert "offline verification at 3 hosts" in out and "processes)" in out


def test_bench_rejects_a_size_below_two():
    p = subprocess.run([sys.executable, str(REPO / "bench" / "bench.py"), "--sizes", "1", "--quick"],
                       capture_output=True, text=True, timeout=60, cwd=REPO)
    assert p.returncode == 2 and "at least 2 hosts" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.parametrize("n", [2, 7])
def test_synthetic_lab_is_valid_and_round_trips_through_host_py(tmp_path, n):
    bench = bench_module()
    lab = bench.synthetic_lab(n)
    bench.write_lab(lab, tmp_path)
    loaded, problems = load(tmp_path)
    assert [p for p in problems if p.severity == "error"] == []
    assert loaded == lab and len(loaded.hosts) == n


def test_a_new_copy_holds_the_sources_and_nothing_generated(tmp_path, nix):
    """bench's "new" figure builds a copy of the lab's sources: every hand-written file (host.py, cluster.py, the
    hardware files, a hand-written default.nix below a host's folder), no generated file, cache or temporary; its
    build writes what the lab's own build wrote."""
    bench = bench_module()
    root = tmp_path / "lab"
    bench.write_lab(bench.synthetic_lab(3), root)
    (root / "hosts" / "n0001" / "extra").mkdir()
    (root / "hosts" / "n0001" / "extra" / "default.nix").write_text("{ ... }: { }\n")  # hand-written, same name
    p = subprocess.run([sys.executable, "-m", "homelab", "build", "--root", str(root)], capture_output=True,
                       text=True, timeout=300, cwd=REPO)
    assert p.returncode == 0, p.stderr
    (root / "hosts" / "n0002" / "__pycache__").mkdir()
    (root / "hosts" / "n0002" / "__pycache__" / "host.cpython-311.pyc").write_bytes(b"x")
    (root / "hosts" / "n0002" / ".default.nix.abcd1234.tmp").write_text("left by a killed build")
    sources = {"hosts/cluster.py", "hosts/n0001/extra/default.nix",
               *(f"hosts/n000{i}/{f}" for i in range(3) for f in ("host.py", "hardware-configuration.nix"))}
    everything = {q.relative_to(root).as_posix() for q in root.rglob("*") if q.is_file()}
    assert set(files.generated_on_disk(root)) <= everything - sources and len(everything - sources) > 10 + 2

    bench.copy_sources(root, tmp_path / "copy")
    copied = {q.relative_to(tmp_path / "copy").as_posix() for q in (tmp_path / "copy").rglob("*") if q.is_file()}
    assert copied == sources
    assert all((tmp_path / "copy" / rel).read_bytes() == (root / rel).read_bytes() for rel in sources)
    assert bench.same_generated(root, tmp_path / "copy") == "cluster/helmfile.yaml"  # nothing generated there yet
    p = subprocess.run([sys.executable, "-m", "homelab", "build", "--root", str(tmp_path / "copy")],
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    assert p.returncode == 0, p.stderr
    assert bench.same_generated(root, tmp_path / "copy") is True
    (tmp_path / "copy" / "hosts" / "n0001" / "default.nix").write_text("# Generated by homelab\n")
    assert bench.same_generated(root, tmp_path / "copy") == "hosts/n0001/default.nix"


def test_long_expressions_go_through_stdin(nix):
    from homelab.pynix_eval import MAX_ARG_EXPR
    expr = "{ " + " ".join(f"a{i} = {i};" for i in range(MAX_ARG_EXPR // 8)) + " }"
    assert len(expr) > 131072  # longer than Linux lets one argv string be
    out = nix.eval_expr(expr)
    assert len(out) == MAX_ARG_EXPR // 8 and out["a7"] == 7


@pytest.mark.parametrize("count", [files.BATCH_SYNC_FROM - 1, files.BATCH_SYNC_FROM + 40])
def test_apply_writes_every_file_either_way(tmp_path, count):
    texts = {f"hosts/h{i}/default.nix": f"# Generated by homelab\n{{ }}: {i}\n" for i in range(count)}
    (tmp_path / "hosts" / "h0").mkdir(parents=True)
    (tmp_path / "hosts" / "h0" / "default.nix").write_text("old")
    files.apply(tmp_path, files.Plan(texts, (), ()))
    for rel, text in texts.items():
        assert (tmp_path / rel).read_text() == text
        assert oct((tmp_path / rel).stat().st_mode & 0o777) == oct(0o644)
    assert not [p for p in tmp_path.rglob("*.tmp")]
