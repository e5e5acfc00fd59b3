"""The whole mutation run in the time two cores have: mutmut's mutants, one collection, a fork per mutant.

``./lab mutate --all`` (tools/mutate.py) runs this.  mutmut 3 generates the mutants (``mutants/``, each mutated
function behind a trampoline) and maps every test to the functions it reaches, with each test's duration
(``mutants/mutmut-stats.json``).  mutmut's own scheduler then starts a new pytest session per mutant: a
collection and the session's fixtures again, seconds each, and every covering test of a mutant that survives
(a minute and more for the functions most tests reach).  7,700 mutants do not fit an afternoon on two cores
that way.  This scheduler:

- collects the tests once, in this process, and forks a child per mutant after collection: the child turns
  its mutant on and runs the mutant's tests in-process, quickest first, stopping at the first failure
  (killed, exit 1); every test passing is a survivor (exit 0);
- gives each mutant ``--budget`` seconds (wall clock, in its child) to run its covering tests, quickest
  first by their recorded duration (the first test always runs to its end, within ``--timeout``; a later
  one is stopped when the budget is spent): a mutant still alive when its time is up is counted **survived**, the
  conservative verdict (a test it had no time for might have killed it); ``mutants/budget.json`` says which
  survivors ran out of time ("budget") and which passed every covering test ("all"), so the first can be run
  again against all of them (``--budget 0 --redo``);
- asks first the tests that killed other mutants of the same function, then of the same module
  (``mutants/killers.json`` keeps which test killed each mutant);
- stops a child after ``--timeout`` seconds (exit 36: mutmut's "timeout": an endless loop the mutant made);
- writes each verdict into mutmut's own records (``mutants/homelab/<module>.py.meta``), so ``mutmut results``,
  ``mutmut show`` and ``tools/mutate.py --report`` read them, and a stopped run resumes where it stopped.

The child starts from a process where no mutant ever ran, so nothing a mutant computed (a cache, a module
global) outlives it.  The session's shared fixtures (the seed lab built once, nix found) are set up in the
parent before the first fork, by the code as it is: a child does not build them again, and a test comparing
what a mutant generates with the seed lab's files compares it with what the real code wrote.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import pytest

KILLED, SURVIVED, TIMEOUT, NO_TESTS = 1, 0, 36, 33
BUDGET = 10  # a child's exit: every test it had time for passed (counted survived)


def _metas(root: Path) -> dict[Path, dict]:
    return {p: json.loads(p.read_text()) for p in sorted((root / "homelab").glob("*.py.meta"))}


def _save(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _function(mutant: str) -> str:
    return mutant.rsplit("__mutmut_", 1)[0]


def _for_module(test_file: str, module: str) -> bool:
    """A --first file named for a module (tests/test_firewall_behaviour.py) is asked of that module's mutants
    only; a file named for none of the mutated modules, of every mutant."""
    named = [m for m in _MODULES if f"test_{m}_" in test_file or test_file == f"test_{m}.py"]
    return not named or module in named


_MODULES: list[str] = []


class Scheduler:
    """A pytest plugin: after collection, runs the mutants instead of the tests."""

    def __init__(self, mutants: list[str], stats: dict, budget: float, timeout: float, jobs: int,
                 first: list[str] = ()) -> None:
        self.mutants, self.stats, self.first_files = mutants, stats, list(first)
        self.first: list = []  # tests asked of every mutant before its own (--first): new tests the map predates
        self.budget, self.timeout, self.jobs = budget, timeout, jobs
        self.verdicts: dict[str, int] = {}
        # the tests that killed mutants, per function and per module: asked first (a test that caught one bug in
        # a function is the likeliest to catch the next); kept in mutants/killers.json across runs
        self.killers: dict[str, dict[str, int]] = {}
        path = Path.cwd() / "killers.json"
        self.killed_by: dict[str, str] = json.loads(path.read_text()) if path.is_file() else {}
        for m, t in self.killed_by.items():
            self._count(m, t)
        self.killdir = Path(tempfile.mkdtemp(prefix="homelab-mutate-"))
        self.ran: dict[str, list[int]] = {}   # mutant -> [tests run at most, covering tests]

    def _count(self, mutant: str, test: str) -> None:
        fn = _function(mutant)
        for key in (fn, fn.split(".x")[0]):
            self.killers.setdefault(key, {})
            self.killers[key][test] = self.killers[key].get(test, 0) + 1

    def tests_for(self, mutant: str, items: dict) -> list:
        """The mutant's covering tests: those that killed mutants of its function, then of its module, then
        the rest, quickest first (by their recorded duration)."""
        dur = self.stats["duration_by_test"]
        fn = _function(mutant)
        own, mod = self.killers.get(fn, {}), self.killers.get(fn.split(".x")[0], {})
        quick = self.budget or 1e9  # a slow killer is not asked first: every later mutant would pay for it

        def key(t):
            d = dur.get(t, 0.0)
            return (-own.get(t, 0) if d < quick / 2 else 0, -mod.get(t, 0) if d < quick / 4 else 0, d, t)

        names = sorted((t for t in self.stats["tests_by_mangled_function_name"].get(fn, ()) if t in items), key=key)
        module = fn.split(".x")[0].rsplit(".", 1)[-1]
        # the --first tests too: those that killed the function's (then the module's) other mutants first, else
        # in file order (a budget spent on a file's first tests would leave its killer of this function unasked)
        first = sorted((i for i in self.first if _for_module(i.path.name, module)),
                       key=lambda i: (-own.get(i.nodeid, 0), -mod.get(i.nodeid, 0)))
        return first + [items[t] for t in names if items[t] not in first]

    def pick_first(self, session) -> None:
        """The --first tests, each run once with no mutant on: those that fail so are left out, and named."""
        wanted = [i for i in session.items if i.nodeid.split("::")[0] in self.first_files]
        if not wanted:
            return
        pid = os.fork()
        if pid == 0:
            from _pytest.runner import runtestprotocol

            bad = [item.nodeid for i, item in enumerate(wanted)
                   if any(r.failed for r in runtestprotocol(item, nextitem=wanted[i + 1] if i + 1 < len(wanted)
                                                            else None, log=False))]
            (self.killdir / "first-failing").write_text("\n".join(bad))
            os._exit(0)
        os.waitpid(pid, 0)
        bad = set((self.killdir / "first-failing").read_text().split("\n")) - {""}
        for b in sorted(bad):
            print(f"mutate: left out of --first (fails with no mutant on): {b}", file=sys.__stderr__)
        self.first = [i for i in wanted if i.nodeid not in bad]

    WARM = ("nix", "seed_root", "seed", "seed_compiled", "repo_lab")

    def warm(self, session) -> None:
        """Set up the session's shared fixtures here, once, with no mutant on (the seed lab built by the code as
        it is, as the committed files are), so that no child builds them again.  A warm-up test that fails
        stops the run.  Only session-scoped fixtures stay: the warm-up test's module is torn down."""
        from _pytest.runner import runtestprotocol

        dur = self.stats["duration_by_test"]
        items = sorted(session.items, key=lambda i: dur.get(i.nodeid, 1e9))
        for name in self.WARM:
            item = next((i for i in items if name in getattr(i, "fixturenames", ())), None)
            if item is None:
                continue
            other = next((i for i in items if i.path != item.path), None)
            if other is None:  # one test file: nothing to tear its module down to, keeping the session's fixtures;
                continue       # each child sets the fixture up itself (slower, the same verdicts)
            if any(r.failed for r in runtestprotocol(item, nextitem=other, log=False)):
                raise SystemExit(f"mutate: {item.nodeid} fails with no mutant on: fix that first")

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session):
        self.pick_first(session)
        self.warm(session)
        items = {i.nodeid: i for i in session.items}
        self.control(items)
        running: dict[int, tuple[str, float]] = {}
        todo = list(self.mutants)
        done, start = 0, time.monotonic()
        while todo or running:
            while todo and len(running) < self.jobs:
                m = todo.pop(0)
                tests = self.tests_for(m, items)
                if not tests:
                    self.verdicts[m] = NO_TESTS
                    continue
                pid = os.fork()
                if pid == 0:
                    self._child(m, tests)
                running[pid] = (m, time.monotonic())
            pid, status = os.wait()
            m, began = running.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            self._reap(pid, m)
            self.ran[m] = "budget" if code == BUDGET else "all"
            code = SURVIVED if code == BUDGET else code
            self.verdicts[m] = code if code in (KILLED, SURVIVED, TIMEOUT) else KILLED if code > 0 else TIMEOUT
            done += 1
            if done % 25 == 0 or not (todo or running):
                rate = done / (time.monotonic() - start)
                print(f"mutate: {done}/{len(self.mutants)} run, {rate:.2f} per second", file=sys.__stderr__,
                      flush=True)
                self.flush()
        return True

    def control(self, items: dict) -> None:
        """Each function's budgeted tests, with no mutant on, must pass: else a verdict would mean nothing."""
        seen = set()
        for m in self.mutants:
            fn = _function(m)
            if fn in seen:
                continue
            seen.add(fn)
            tests = self.tests_for(fn + "__mutmut_control", items)
            pid = os.fork()
            if pid == 0:
                self._child(fn.rsplit(".", 1)[0] + ".no_mutant", tests)
            code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            self._reap(pid, None)
            if code not in (SURVIVED, BUDGET):
                names = ", ".join(t.nodeid for t in tests)
                raise SystemExit(f"mutate: the tests of {fn} fail with no mutant on ({names}): fix that first")
            if len(seen) >= 3 and len(self.mutants) > 50:
                break  # a sample of the functions: each control costs a function's budget

    def _reap(self, pid: int, mutant: str | None) -> None:
        """After child ``pid``: its temporary folders go; the test that killed ``mutant`` (if one did) is noted."""
        for tmp in self.killdir.glob(f"tmp{pid}-*"):
            shutil.rmtree(tmp, ignore_errors=True)
        note = self.killdir / str(pid)
        if note.is_file():
            if mutant is not None:
                self.killed_by[mutant] = note.read_text()
                self._count(mutant, self.killed_by[mutant])
            note.unlink()

    def _child(self, mutant: str, tests: list) -> None:
        from _pytest.runner import runtestprotocol
        from mutmut.mutation.trampoline import set_mutant_under_test

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        signal.signal(signal.SIGALRM, lambda *_: os._exit(TIMEOUT))
        signal.alarm(max(1, int(self.timeout)))
        code = SURVIVED
        try:
            # a temporary folder of its own, removed by the parent: pytest's numbered folders would pile up in
            # /tmp/pytest-of-<user> (each child numbering and pruning them: the run slowed as it went)
            tests[0].config._tmp_path_factory._basetemp = Path(tempfile.mkdtemp(dir=self.killdir,
                                                                                 prefix=f"tmp{os.getpid()}-"))
            # the homelab processes a test starts record their verified builds here, not in the session's folder:
            # a build with this mutant on is never answered from a record the real code (or another mutant) made
            os.environ["HOMELAB_CACHE_DIR"] = str(tests[0].config._tmp_path_factory._basetemp / "homelab-cache")
            # (a test's ``python -m homelab`` imports homelab from mutants/ through PYTHONPATH and inherits
            # MUTANT_UNDER_TEST: the mutant runs there too, so --unmapped mutants are judged by such tests)
            set_mutant_under_test(mutant)
            began = time.monotonic()
            for i, item in enumerate(tests):
                left = self.budget - (time.monotonic() - began)
                if i and self.budget:
                    if left <= 0:
                        code = BUDGET
                        break
                    # the first test runs to its end (or --timeout); the others only while the budget lasts
                    signal.signal(signal.SIGALRM, lambda *_: os._exit(BUDGET))
                    signal.setitimer(signal.ITIMER_REAL, left)
                reports = runtestprotocol(item, nextitem=tests[i + 1] if i + 1 < len(tests) else None, log=False)
                if any(r.failed for r in reports):
                    (self.killdir / str(os.getpid())).write_text(item.nodeid)
                    code = KILLED
                    break
        except BaseException:  # a mutant that breaks the test machinery itself is caught by it
            code = KILLED
        os._exit(code)

    def flush(self) -> None:
        root = Path.cwd()
        for path, meta in _metas(root).items():
            mine = {k: v for k, v in self.verdicts.items() if k in meta["exit_code_by_key"]}
            if mine:
                meta["exit_code_by_key"].update(mine)
                _save(path, meta)
        _save(root / "killers.json", self.killed_by)
        budget = root / "budget.json"
        old = json.loads(budget.read_text()) if budget.is_file() else {}
        old.update(self.ran)
        _save(budget, old)


def run(patterns: list[str], budget: float, timeout: float, jobs: int, redo: bool, first: list[str] = (),
        only: str = "") -> int:
    """Judge every mutant matching ``patterns`` (all when empty) not judged yet (``redo``: judged ones too)."""
    import fnmatch

    root = Path.cwd()
    stats = json.loads((root / "mutmut-stats.json").read_text())
    mutants: list[str] = []  # in the order of the patterns: the first ones are judged first
    metas = list(_metas(root).values())
    for pattern in patterns or ["*"]:
        for meta in metas:
            mutants += [name for name, code in meta["exit_code_by_key"].items()
                        if fnmatch.fnmatch(name, pattern) and (redo or code is None) and name not in mutants
                        and (not only or code == {"survived": SURVIVED, "unmapped": NO_TESTS}[only])]
    print(f"mutate: {len(mutants)} mutants to judge, budget {budget or 'all'} s of tests each, "
          f"{jobs} at a time", flush=True)
    if not mutants:
        return 0
    files = sorted({t.split("::")[0] for m in mutants
                    for t in stats["tests_by_mangled_function_name"].get(_function(m), ())})
    files = sorted(set(files) | set(first))
    _MODULES[:] = sorted({p.name.removesuffix(".py.meta") for p in (root / "homelab").glob("*.py.meta")})
    sched = Scheduler(mutants, stats, budget, timeout, jobs, first)
    pytest.main(["-q", "-p", "no:randomly", "-p", "no:cacheprovider", "--rootdir=.", "--continue-on-collection-errors",
                 *files], plugins=[sched])
    sched.flush()
    shutil.rmtree(sched.killdir, ignore_errors=True)
    return 0
