"""Mutation testing of homelab's core modules: ``./lab mutate [--all options | mutmut run arguments]``.

A developer command run before a release, not in CI (the whole run takes hours on two cores; CI runs a fast
sample, tests/test_mutation_sample.py).  mutmut 3 plants one small bug at a time (a flipped comparison, a
changed constant, a dropped call) in the modules named in ``pyproject.toml`` ``[tool.mutmut]`` (model,
validate, firewall, compile, render, nixvalue, readback, files, uptodate, secretstore, deploy, expect) and
maps each test to the functions it reaches; a mutant is killed when a test that reaches its function fails.

    ./lab mutate --all                         # the whole run, tools/mutate_forks.py's scheduler (resumes)
    ./lab mutate --all --budget 3 "homelab.validate.*"      # one module, 3 s of tests per mutant
    ./lab mutate --all --redo --survivors --budget 0 --first tests/test_new.py -- "homelab.model.*"
                                               # survivors again, against all their tests and new ones first
    ./lab mutate "homelab.nixvalue*"           # mutmut's own scheduler (a pytest session per mutant: slow)
    ./lab mutate --sample 20                   # mutmut's scheduler on every k-th mutant, ~20 per module
    .venv/bin/python tools/mutate.py --report  # the scores of what has run, nothing new
    .venv/bin/python tools/mutate.py --survivors "homelab.model.*"   # each survivor's diff
    .venv/bin/python tools/mutate.py --apply NAME DIR      # plant a mutant in another worktree's copy
    .venv/bin/python tools/mutate.py --ci-sample 1         # refresh CI's sample from the run's kills
    .venv/bin/python tools/mutate.py --carry OLD_MUTANTS   # after the mutants were made again: keep the
                                               # verdicts of functions whose code did not change

Tests run with the ``mutmut`` hypothesis profile (few examples, no example database: exact tests do the
killing), and a homelab started as a new process by a test runs the unmutated code (see tests/conftest.py).
"""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTMUT = [sys.executable, "-m", "mutmut"]


def scores(text: str) -> dict[str, collections.Counter]:
    """``mutmut results --all true`` lines (``homelab.model.x_freeze__mutmut_3: killed``) -> counts per module."""
    out: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in text.splitlines():
        m = re.match(r"\s*(homelab\.\w+)\.\S+: (.+)$", line)
        if m:
            out[m.group(1)][m.group(2).strip()] += 1
    return out


SAMPLE = ROOT / "mutants" / "homelab-sample.txt"


def mutant_names() -> dict[str, list[str]]:
    """Every mutant mutmut generated, per module (from its .meta files), in a stable order."""
    out: dict[str, list[str]] = {}
    for meta in sorted((ROOT / "mutants" / "homelab").glob("*.py.meta")):
        names = sorted(json.loads(meta.read_text())["exit_code_by_key"])
        out[f"homelab.{meta.name.removesuffix('.py.meta')}"] = names
    return out


def sample(per_module: int) -> list[str]:
    """Every k-th mutant of each module, about ``per_module`` of them: a systematic sample."""
    names = mutant_names()
    if not names:  # mutmut generates the mutants (and maps tests to functions) on its first run
        subprocess.call([*MUTMUT, "run", "homelab.no-such-module*"], cwd=ROOT,
                        env=dict(os.environ, HYPOTHESIS_PROFILE="mutmut"))
        names = mutant_names()
    picked = []
    for mod, ns in names.items():
        step = max(1, len(ns) // per_module)
        picked += ns[::step][:per_module]
    return picked


def equivalents(docs: Path = ROOT / "docs" / "mutation", kind: str = "equivalent") -> set[str]:
    """The mutants docs/mutation/equivalent-<module>.md judges equivalent: the first column of each table row,
    `homelab.m.x_f__mutmut_3`, `_7` (a number alone: the same function), `x_g__mutmut_2` (the same module).
    ``kind="killed"``: those docs/mutation/killed-<module>.md lists, each watched failing a test when planted."""
    out: set[str] = set()
    for md in sorted(docs.glob(f"{kind}-*.md")):
        module = f"homelab.{md.stem.removeprefix(f'{kind}-')}"
        for line in md.read_text().splitlines():
            if not line.startswith("| `"):
                continue
            fn = None
            for tok in re.findall(r"`([^`]+)`", line.split(" | ")[0]):
                m = re.fullmatch(r"(?:(homelab\.\w+)\.)?(x\S+?)__mutmut_(\d+)", tok)
                if m:
                    fn = f"{m.group(1) or module}.{m.group(2)}"
                    out.add(f"{fn}__mutmut_{m.group(3)}")
                elif fn and re.fullmatch(r"_(\d+)", tok):
                    out.add(f"{fn}__mutmut{tok}")
    return out


def report() -> int:
    env = dict(os.environ, HYPOTHESIS_PROFILE="mutmut")
    text = subprocess.run([*MUTMUT, "results", "--all", "true"], cwd=ROOT, env=env, capture_output=True,
                          text=True).stdout
    if SAMPLE.is_file():
        only = set(SAMPLE.read_text().split())
        text = "\n".join(ln for ln in text.splitlines() if ln.strip().split(":")[0] in only)
        print(f"the sample in {SAMPLE.relative_to(ROOT)} ({len(only)} mutants); delete it to score everything")
    per = scores(text)
    if not per:
        print("no mutation results yet: run ./lab mutate")
        return 1
    eq = equivalents()
    survivors = {ln.strip().split(":")[0] for ln in text.splitlines() if ln.strip().endswith(": survived")}
    for name in survivors & eq:
        per[name.split(".x")[0]]["equivalent"] += 1
    # survivors of the run that a test kills when the mutant is planted in the source (tools/mutate.py --apply):
    # code that runs at import time (the trampoline cannot switch it), a test that fails on the code the
    # mutants were made from (it tests a later fix), a budget that ran out first
    for name in (survivors - eq) & equivalents(kind="killed"):
        per[name.split(".x")[0]]["planted"] += 1
    print(f"{'module':<22} {'killed':>7} {'survived':>9} {'of them equivalent':>19} {'killed planted':>15} "
          f"{'no tests':>9} {'not run':>8} {'score':>7} {'with planted':>13}")
    total = collections.Counter()
    for mod, c in sorted(per.items()):
        total += c
        print(_row(mod, c))
    print(_row("all", total))
    print("score: killed / (killed + survived - equivalent); equivalent: docs/mutation/equivalent-<module>.md; "
          "no tests: no test the run maps reaches the function (in-process); timeouts count as killed; "
          "killed planted: survivors of the run docs/mutation/killed-<module>.md names with the test that fails "
          "when the mutant is planted (tools/mutate.py --apply); with planted: (killed + killed planted) / the same")
    return 0


def run_all(argv: list[str]) -> int:
    """``--all [--budget S] [--timeout S] [--jobs N] [--redo [--survivors]] [--first FILE ...] [pattern ...]``: tools/mutate_forks.py's scheduler."""
    import argparse

    ap = argparse.ArgumentParser(prog="tools/mutate.py --all")
    ap.add_argument("--budget", type=float, default=3.0, help="seconds (wall clock) a mutant has for its tests (0: all)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds before a mutant's run is a timeout")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--redo", action="store_true", help="judge again mutants that have a verdict")
    ap.add_argument("--survivors", action="store_true", help="only mutants that survived (with --redo)")
    ap.add_argument("--unmapped", action="store_true",
                    help="only mutants no test reaches in-process (\"no tests\": code a test reaches only through a "
                         "`python -m homelab` it starts), judged by the --first files (with --redo)")
    ap.add_argument("--first", nargs="*", default=[], metavar="TEST_FILE",
                    help="test files asked of every mutant first (tests written since mutmut mapped them; each "
                         "must pass with no mutant on)")
    ap.add_argument("patterns", nargs="*", help="mutant names or globs (homelab.render.*)")
    a = ap.parse_args(argv)
    os.environ["HYPOTHESIS_PROFILE"] = "mutmut"
    if not (ROOT / "mutants" / "mutmut-stats.json").is_file():  # mutmut generates the mutants and the test map
        subprocess.call([*MUTMUT, "run", "homelab.no-such-module*"], cwd=ROOT)
    os.chdir(ROOT / "mutants")
    sys.path.insert(0, str(ROOT / "mutants"))
    sys.path.insert(0, str(ROOT / "tools"))
    import mutate_forks

    t = time.monotonic()
    rc = mutate_forks.run(a.patterns, a.budget, a.timeout, a.jobs, a.redo, a.first,
                          "survived" if a.survivors else "unmapped" if a.unmapped else "")
    print(f"mutate: {time.monotonic() - t:.0f} s")
    os.chdir(ROOT)
    report()
    return rc


def survivors(patterns: list[str]) -> int:
    """``--survivors [pattern ...]``: each surviving mutant's diff, and whether it ran all its covering tests."""
    import fnmatch

    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    budget = ROOT / "mutants" / "budget.json"
    ran = json.loads(budget.read_text()) if budget.is_file() else {}
    for meta in sorted((ROOT / "mutants" / "homelab").glob("*.py.meta")):
        path = f"homelab/{meta.name.removesuffix('.meta')}"
        for name, code in sorted(json.loads(meta.read_text())["exit_code_by_key"].items()):
            if code == 0 and (not patterns or any(fnmatch.fnmatch(name, p) for p in patterns)):
                tests = {"budget": "ran out of time", "all": "passed every covering test"}.get(str(ran.get(name)), "ran its tests by their recorded time")
                print(f"## {name} ({tests})\n```diff\n{get_diff_for_mutant(name, path=path)}\n```\n")
    return 0


def _method(module, cls: str, fn: str):
    """Method ``fn`` of class ``cls`` (mutmut's own lookup takes the first method of that name in any class)."""
    import libcst as cst

    for child in module.body:
        if isinstance(child, cst.ClassDef) and child.name.value == cls and isinstance(child.body, cst.IndentedBlock):
            return next((m for m in child.body.body if isinstance(m, cst.FunctionDef) and m.name.value == fn), None)
    return None


def apply_to(name: str, target: Path) -> int:
    """``--apply NAME DIR``: write mutant NAME into DIR's copy of its module (another worktree, to watch a new
    test fail against it); ``git checkout`` there undoes it."""
    import libcst as cst
    from mutmut.mutation.diff_apply import find_top_level_function_or_method, read_functions_from_index
    from mutmut.utils.format_utils import orig_function_and_class_names_from_key

    os.chdir(ROOT)
    path = Path(*name.split(".x")[0].split(".")).with_suffix(".py")  # homelab.files.x_plan__mutmut_3
    _, mutant = read_functions_from_index(name, path)
    fn, cls = orig_function_and_class_names_from_key(name)
    fn = fn.rpartition(".")[-1]
    orig = cst.parse_module((target / path).read_text())
    old = _method(orig, cls, fn) if cls else find_top_level_function_or_method(orig, fn)
    if old is None:
        print(f"{f'{cls}.' if cls else ''}{fn} is not in {target / path}", file=sys.stderr)
        return 2
    (target / path).write_text(orig.deep_replace(old, mutant.with_changes(name=cst.Name(fn))).code)
    print(f"applied {name} to {target / path}")
    return 0


SAMPLE_FIXTURE = ROOT / "tests" / "fixtures" / "mutation-sample.json"


def ci_sample(per_module: int) -> int:
    """``--ci-sample N``: N killed mutants per module, each with the test that killed it, written to
    tests/fixtures/mutation-sample.json for tests/test_mutation_sample.py (the fast sample CI runs: each mutant
    planted in a copy of homelab/, its killing test must fail).  Only one-line mutants whose line is unique
    in its file, so that the plant is a plain text replacement."""
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    killers = json.loads((ROOT / "mutants" / "killers.json").read_text())
    picked = []
    for meta in sorted((ROOT / "mutants" / "homelab").glob("*.py.meta")):
        path = f"homelab/{meta.name.removesuffix('.meta')}"
        text = (ROOT / path).read_text()
        lines = text.splitlines()
        mine = []
        for name, code in sorted(json.loads(meta.read_text())["exit_code_by_key"].items()):
            if code != 1 or name not in killers or "[" in killers[name]:
                continue
            diff = get_diff_for_mutant(name, path=path).splitlines()[2:]
            old = [ln[1:] for ln in diff if ln.startswith("-")]
            new = [ln[1:] for ln in diff if ln.startswith("+")]
            if len(old) == 1 == len(new) and lines.count(old[0]) == 1 and old[0].strip():
                mine.append({"mutant": name, "file": path, "old": old[0], "new": new[0], "test": killers[name]})
        step = max(1, len(mine) // per_module)
        picked += mine[::step][:per_module]
    SAMPLE_FIXTURE.write_text(json.dumps(picked, indent=1) + "\n")
    print(f"{len(picked)} mutants in {SAMPLE_FIXTURE.relative_to(ROOT)}")
    return 0


def carry(old: Path) -> int:
    """``--carry OLD_MUTANTS``: after mutmut made the mutants again (new code; it forgets every verdict), copy
    back from OLD_MUTANTS (a copy of an earlier run's ``mutants/`` folder) the verdict of every mutant of a
    function whose code has not changed (the same hash in both runs' records: the same mutants, numbered the
    same) and its budget note; the tests that killed earlier mutants are kept as the scheduler's hints.
    Mutants of changed or new functions stay "not checked" for the next ``--all``."""
    new_root = ROOT / "mutants"
    budget, killers = ({}, {})
    for name, into in (("budget.json", budget), ("killers.json", killers)):
        if (old / name).is_file():
            into.update(json.loads((old / name).read_text()))
    kept_budget = json.loads((new_root / "budget.json").read_text()) if (new_root / "budget.json").is_file() else {}
    kept_killers = json.loads((new_root / "killers.json").read_text()) if (new_root / "killers.json").is_file() else {}
    carried = fresh = 0
    for meta in sorted((new_root / "homelab").glob("*.py.meta")):
        module = f"homelab.{meta.name.removesuffix('.py.meta')}"
        before = old / "homelab" / meta.name
        if not before.is_file():
            continue
        now, then = json.loads(meta.read_text()), json.loads(before.read_text())
        same = {fn for fn, h in now["hash_by_function_name"].items() if then["hash_by_function_name"].get(fn) == h}
        for key in now["exit_code_by_key"]:
            fn = key.removeprefix(f"{module}.").rpartition("__mutmut_")[0]
            if fn in same and then["exit_code_by_key"].get(key) is not None:
                now["exit_code_by_key"][key] = then["exit_code_by_key"][key]
                if key in budget:
                    kept_budget[key] = budget[key]
                carried += 1
            else:
                fresh += 1
        meta.write_text(json.dumps(now, indent=4))
    (new_root / "budget.json").write_text(json.dumps(kept_budget, indent=1))
    # every earlier kill stays a hint of which tests to ask a function's mutants first (the scheduler's order)
    (new_root / "killers.json").write_text(json.dumps({**killers, **kept_killers}, indent=1))
    print(f"carried {carried} verdicts of unchanged functions from {old}; {fresh} mutants to judge")
    return 0


def _row(name: str, c: collections.Counter) -> str:
    killed = c["killed"] + c["timeout"]
    real = killed + c["survived"] - c["equivalent"]
    both = killed + c["planted"]
    return (f"{name:<22} {killed:>7} {c['survived']:>9} {c['equivalent']:>19} {c['planted']:>15} {c['no tests']:>9} "
            f"{c['not checked']:>8} {(100 * killed / real if real else 0):>6.1f}% "
            f"{(100 * both / real if real else 0):>12.1f}%")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--ci-sample"]:
        return ci_sample(int(argv[1]))
    if argv[:1] == ["--carry"] and len(argv) == 2:
        return carry(Path(argv[1]).resolve())
    if argv[:1] == ["--report"]:
        return report()
    if argv[:1] == ["--survivors"]:
        return survivors(argv[1:])
    if argv[:1] == ["--apply"] and len(argv) == 3:
        return apply_to(argv[1], Path(argv[2]).resolve())
    if argv[:1] == ["--all"]:
        return run_all(argv[1:])
    env = dict(os.environ, HYPOTHESIS_PROFILE="mutmut")
    if argv[:1] == ["--sample"]:
        names = sample(int(argv[1]))
        SAMPLE.write_text("\n".join(names) + "\n")
        argv = argv[2:] + names
    elif not argv:
        SAMPLE.unlink(missing_ok=True)
    rc = subprocess.call([*MUTMUT, "run", *argv], cwd=ROOT, env=env)
    report()
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
