"""A two-process build compiles and prechecks each host's entry file in the half that has the host
(homelab/splitprep.py): what a half finds is said exactly as the one-process build says it (same message, exit
2, nothing written), and what the halves make is what the one-process compile and precheck make.

``HOMELAB_PARALLEL_FROM`` forces the two-process path on the benchmark's synthetic lab of 8 hosts: this process
takes n0000-n0003, the child n0004-n0007 and hosts/lab.nix.
"""

from __future__ import annotations

import pytest

from homelab import build as build_mod
from homelab import files, readback, shard, splitprep
from homelab.compile import compile_lab
from homelab.load import load_or_raise
from tests.test_bench_runs import bench_module
from tests.test_shard import HOSTS, build, copy_lab, tree


@pytest.fixture(scope="module")
def lab_source(tmp_path_factory):
    root = tmp_path_factory.mktemp("splitprep-lab")
    bench = bench_module()
    bench.write_lab(bench.synthetic_lab(HOSTS), root)
    return root


def _set_options(root, host: str, extra: str) -> None:
    host_py = root / "hosts" / host / "host.py"
    text = host_py.read_text()
    old = "options={'services.openssh.enable': True}"
    assert text.count(old) == 1
    host_py.write_text(text.replace(old, "options={'services.openssh.enable': True, " + extra + "}"))


def _problems(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "warning:" not in line]


# (host, the raw option added to its host.py, the lines the build says); n0001 is in this process's half, n0007
# in the child's
CASES = [
    # found only by the raw options' check (homelab.validate.option_clashes): no precheck problem, no conflict
    ("n0007", "'boot.kernelParams.x': 1",
     ["homelab: 1 problem; nothing was written:",
      "  hosts/n0007: options['boot.kernelParams.x']: boot.kernelParams is an option of type listOf (strMatching "
      "\"([^\" \\t\\n\\r\\f\\v]|\"[^\"]*\")+\"); it has no attribute 'x' (set boot.kernelParams itself)"]),
    ("n0001", "'boot.kernelParams.x': 1",
     ["homelab: 1 problem; nothing was written:",
      "  hosts/n0001: options['boot.kernelParams.x']: boot.kernelParams is an option of type listOf (strMatching "
      "\"([^\" \\t\\n\\r\\f\\v]|\"[^\"]*\")+\"); it has no attribute 'x' (set boot.kernelParams itself)"]),
    # a merge conflict with a shared module file (the precheck's), which the raw option explains
    ("n0001", "'networking.firewall.enable': False",
     ["homelab: 1 problem; nothing was written:",
      "  hosts/n0001: options['networking.firewall.enable']: conflicting definitions False and True (defined in "
      "hosts/n0001/default.nix, modules/network/firewall.nix); wrap the value in force(...) to override homelab's "
      "definition"]),
    # defined twice in the host's own entry (the precheck's nesting problem, said as the raw options' clash)
    ("n0007", "'networking.hostName': 'x'",
     ["homelab: 1 problem; nothing was written:",
      "  hosts/n0007: options['networking.hostName']: homelab sets networking.hostName itself in "
      "hosts/n0007/default.nix; change the host.py field that makes it instead"]),
]


@pytest.mark.parametrize("host,extra,said", CASES, ids=[f"{c[0]}-{c[1].split(':')[0]}" for c in CASES])
def test_a_problem_a_half_finds_is_said_as_one_process_says_it(lab_source, tmp_path, nix, host, extra, said):
    if not shard.available():
        pytest.skip("no fork or a single core: the two-process path is never taken here")
    runs = []
    for name, parallel in (("one", 0), ("two", 2)):
        root = copy_lab(lab_source, tmp_path / name)
        _set_options(root, host, extra)
        before = tree(root)
        p = build(root, tmp_path / f"cache-{name}", parallel)
        assert tree(root) == before and files.stale_temps(root) == []
        runs.append((p.returncode, p.stdout, p.stderr.replace(str(root), "ROOT")))
    assert runs[0][0] == 2 and _problems(runs[0][2]) == said, runs[0]
    assert runs[1] == runs[0]


def test_an_invalid_lab_is_said_as_one_process_says_it(lab_source, tmp_path, nix):
    """Validation (before the fork) refuses the lab: the same message either way."""
    runs = []
    for name, parallel in (("one", 0), ("two", 2)):
        root = copy_lab(lab_source, tmp_path / name)
        host_py = root / "hosts" / "n0006" / "host.py"
        host_py.write_text(host_py.read_text().replace("address=IPv4Address('192.168.0.16')",
                                                       "address=IPv4Address('192.168.0.15')"))
        before = tree(root)
        p = build(root, tmp_path / f"cache-{name}", parallel)
        assert tree(root) == before
        runs.append((p.returncode, p.stdout, _problems(p.stderr)))
    assert runs[0][0] == 2 and runs[0][2][0] == "homelab: 1 problem; nothing was written:", runs[0]
    assert runs[1] == runs[0]


def test_each_half_makes_what_the_one_process_compile_and_precheck_make(lab_source):
    lab, warnings = load_or_raise(lab_source)
    whole = compile_lab(lab)
    pre = readback.precheck(whole)
    s = splitprep.shared(lab, warnings)
    assert s.warnings == build_mod.prepare(lab, warnings).warnings
    assert set(s.compiled.files) == {rel for rel in whole.files if rel.startswith("modules/")}
    assert s.compiled.hosts == whole.hosts and s.compiled.data is None
    names = sorted(whole.hosts)
    for part, data in ((names[:4], False), (names[4:], True)):
        compiled, half_pre = splitprep.half(s, part, data)
        assert compiled.hosts == {h: whole.hosts[h] for h in part}
        assert compiled.files == {rel: f for rel, f in whole.files.items()
                                  if rel.startswith("modules/") or rel in {whole.hosts[h].entry for h in part}}
        assert compiled.data == (whole.data if data else None)
        assert half_pre.nested == {rel: pre.nested[rel] for rel in compiled.files}
        assert half_pre.conflicts == {h: pre.conflicts[h] for h in part} == {h: [] for h in part}
        assert half_pre.problems == []
    # the option values the two-process build reports: the precheck's, merged when asked
    values = splitprep.options(s, names)
    assert list(values) == names
    for h in names:
        assert values[h] == pre.merged[h]


def test_a_two_process_build_reports_the_values_one_process_reports(lab_source, tmp_path, nix, monkeypatch):
    if not shard.available():
        pytest.skip("no fork or a single core: the two-process path is never taken here")
    results = []
    for name, parallel in (("one", "0"), ("two", "2")):
        root = copy_lab(lab_source, tmp_path / name)
        monkeypatch.setenv("HOMELAB_PARALLEL_FROM", parallel)
        results.append(build_mod.build(root, nix=nix))
    one, two = results
    assert (one.verified.nix_calls, two.verified.nix_calls) == (2, 2)  # each took its own path (two in one, one in each half)
    assert (two.hosts, two.written, two.warnings) == (one.hosts, one.written, one.warnings)
    assert (two.verified.files, two.verified.hand_written) == (one.verified.files, one.verified.hand_written)
    assert list(two.verified.options) == list(one.verified.options)
    for h in one.hosts:
        assert two.verified.options[h] == one.verified.options[h]
