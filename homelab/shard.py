"""A large lab's build from its rendering on: the per-host work on both cores.

After the lab is loaded, validated and its shared module files compiled (everything the whole lab decides:
:func:`homelab.splitprep.shared`), the rest of a build is work per host and per file: make and precheck each
host's entry file (:func:`homelab.splitprep.half`), render the text, stage it for nix, have nix read it back
and call the hand-written imports, compare, write the temporary beside its target.  From ``PARALLEL_FROM``
hosts on (``HOMELAB_PARALLEL_FROM`` overrides it) a whole build does that work in two processes: this
one, and a child forked here that takes the entry files of the last 46 % of the hosts (each with
its own nix processes).  The child hands back only small things (paths, temporaries, digests), never
the objects it made.

Nothing is decided differently.  Both halves stage into one folder; the child reads the shared module
files only after this process staged them.  Each writes its temporaries only once its nix read every
one of its files back as the model says and found no hand-written clash, warning or error; the
renames (modules first, then the hosts' entries), the deletions and the durability syncs are done
here, only after both halves succeeded, under the lab's lock.  Anything else (a problem of any kind
in either half, its hosts' precheck's too, a warning of the clash check, a child that crashed or was killed, no nix) takes back
every temporary and returns None: the caller then builds the single-process way, which finds the
same problem and says it exactly as a build of a small lab does, or succeeds the same way.  Generated
files are byte for byte those of the single-process build.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from . import files, readback, render, splitprep
from .compile import LAB_DATA
from .precompile import available

if TYPE_CHECKING:
    from .compile import Compiled
    from .errors import Problem
    from .model import Lab
    from .pynix_eval import Nix

__all__ = ["PARALLEL_FROM", "threshold", "wanted", "Done", "build"]

PARALLEL_FROM = 1000  # hosts: below this a build stays in one process (forking and two more nix processes cost)


def threshold() -> int:
    """From how many hosts on a whole build runs in two processes (``HOMELAB_PARALLEL_FROM``, else
    ``PARALLEL_FROM``; 0 never)."""
    value = os.environ.get("HOMELAB_PARALLEL_FROM", "")
    try:
        return int(value) if value.strip() else PARALLEL_FROM
    except ValueError:
        return PARALLEL_FROM


def wanted(hosts: int) -> bool:
    """Whether a whole build of a lab of ``hosts`` hosts runs its per-file work in two processes."""
    n = threshold()
    return 0 < n <= hosts and hosts >= 2 and available()


@attrs.frozen
class Done:
    """What a two-process build wrote, and what nix read back."""

    hosts: tuple[str, ...]
    warnings: tuple[Problem, ...]  # the lab's (:func:`homelab.splitprep.shared`)
    written: tuple[str, ...]
    unchanged: tuple[str, ...]
    removed: tuple[str, ...]
    report: readback.Report
    seconds: float  # staging and reading back, the slower half
    digests: dict[str, str]  # lab-relative path -> SHA-256 of its content, as this build read or wrote it


class _Fallback(Exception):
    """The two-process build stops here; the single-process build decides what to say."""


@attrs.frozen
class _Half:
    """One half of the work: its hosts, its module files, and whether it writes the lab's data file
    (hosts/lab.nix, the child) or the cluster layer (this process)."""

    hosts: list[str]
    rels: list[str]
    data: bool
    cluster: bool


def _halves(compiled: Compiled) -> tuple[_Half, _Half]:
    """This process: the first 54 % of the hosts (sorted), every file but the others' entries, and the cluster
    layer; the child: the other hosts, their entry files and the lab's data file (split at 50 %, the child's
    half took 0.8 s more of CPU at 10,000 hosts, about as much as 400 hosts' entries)."""
    names = sorted(compiled.hosts)
    cut = len(names) * 27 // 50  # 54 %: the child's hosts/lab.nix (a line per host) costs as much as 4 % of entries
    first, second = names[:cut], names[cut:]
    theirs = {compiled.hosts[h].entry for h in second}
    ours = [*compiled.files, *(compiled.hosts[h].entry for h in first)]  # compile_shared's: no entry among its files
    return _Half(first, ours, False, True), _Half(second, sorted(theirs), True, False)


def _texts(lab: Lab, compiled: Compiled, half: _Half) -> dict[str, str]:
    """The texts of ``half``'s files."""
    out = {rel: render.module_text(compiled.files[rel]) for rel in half.rels}
    if half.data and compiled.data is not None:
        out[compiled.data.path] = render.data_text(compiled.data)
    if half.cluster:
        from . import helmfile

        out.update(helmfile.texts(lab))
    return dict(sorted(out.items()))


def _digest_sources(root: Path, lab: Lab, compiled: Compiled, hosts: list[str], out: dict[str, str]) -> None:
    """SHA-256 of each host's host.py and hand-written imports (what the no-op record hashes otherwise); those in
    ``out`` already (hashed as they were staged) are not read again."""
    for h in hosts:
        for rel in (f"{lab.where(h)}/host.py", *compiled.hosts[h].hand_written):
            if rel in out:
                continue
            try:
                with open(root / rel, "rb") as f:
                    out[rel] = hashlib.sha256(f.read()).hexdigest()
            except OSError:
                continue  # the record looks at it itself


@attrs.frozen
class _Job:
    root: Path
    base: str  # the staging folder
    shared: splitprep.Shared
    nix: Any
    force: bool
    token: str
    generated: frozenset[str]  # every path this build writes


def _verify(job: _Job, half: _Half, compiled: Compiled, pre: readback.Precheck) -> int:
    """nix reads ``half``'s files back from the staging folder and calls its hand-written imports: the number of
    nix processes, or _Fallback for any problem or warning."""
    from .pynix_eval import Nix

    nix = job.nix or Nix()
    calls = nix.calls
    base = Path(job.base)
    specs, clash_check = readback.start_clash_check(base, compiled, nix, half.hosts, pre)
    with readback.clash_check_running(nix, clash_check):
        rep = readback.read_back(base, compiled, nix, half.hosts, pre=pre, with_data=half.data)
        if rep.problems:
            raise _Fallback("nix read back something else than the model says")
        clashes = readback.hand_written_clashes(base, compiled, nix, half.hosts, pre, specs=specs,
                                                described=clash_check.result if clash_check else None)
        if clashes:
            raise _Fallback("the hand-written imports have something to say")
    return nix.calls - calls


def _work(job: _Job, half: _Half, first: bool, staged_ours, staged_theirs) -> dict[str, Any]:
    """One half's work up to its temporaries; ``staged_ours()`` is called once its hand-written files are staged,
    ``staged_theirs()`` waits until the other half's are (the child waits for this process's).  A dict of what
    it did; the temporaries it made are listed in it as they are made."""
    compiled, pre = splitprep.half(job.shared, half.hosts, half.data)  # Refused: the one-process build says it
    if not first:  # beside this process's half (10,000 folders listed: 0.5 s); never this build's own
        files.remove_stale_temps(job.root, keep=job.token)
    texts = _texts(job.shared.lab, compiled, half)
    plan = files.plan(job.root, texts, prune=False, force=job.force)
    t0 = time.perf_counter()
    made: set[str] = set()
    readback.stage_texts(job.base, texts, made)
    hand = sorted({r for h in half.hosts for r in compiled.hosts[h].hand_written})
    staged_theirs()
    digests: dict[str, str] = {}  # the hand-written imports' as they are staged, then what is written
    readback.stage_hand_written(job.base, job.root, hand, job.generated, skip_present=not first, digests=digests,
                                made=made)
    staged_ours()
    calls = _verify(job, half, compiled, pre)
    seconds = time.perf_counter() - t0
    temps: list[tuple[str, Path]] = []
    done = {"temps": temps, "unchanged": list(plan.unchanged), "calls": calls, "seconds": seconds,
            "digests": digests}
    files.write_temps(job.root, plan.write, job.token, True, temps, digests)
    for rel in plan.unchanged:
        digests[rel] = hashlib.sha256(texts[rel].encode("utf-8")).hexdigest()
    _digest_sources(job.root, job.shared.lab, compiled, half.hosts, digests)
    _unstage(job, half)
    return done


def _unstage(job: _Job, half: _Half) -> None:
    """This half's hosts' folders of the staging copy removed, now that its nix read them: each half removes its
    own beside the other (10,000 folders removed after both took about 1 s).  A folder holding a hand-written
    import of the other half's hosts stays (the other half's nix may still read it); what is left goes with the
    staging folder."""
    mine = set(half.hosts)
    theirs = {rel.split("/", 2)[1] for h, plan in job.shared.compiled.hosts.items() if h not in mine
              for rel in plan.hand_written if rel.startswith("hosts/") and rel.count("/") >= 2}
    base = job.base + "/hosts/"
    for h in half.hosts:
        if h in theirs:
            continue
        folder = base + h
        try:
            for name in os.listdir(folder):
                os.unlink(f"{folder}/{name}")
            os.rmdir(folder)
        except OSError:  # a folder inside, or anything else: removed with the staging folder
            continue


def build(root: Path, lab: Lab, warnings: tuple[Problem, ...], nix: Nix | None, *,
          force: bool = False) -> Done | None:
    """Prepare, render, verify and write the whole lab in two processes (see the module's text); None: nothing
    was written, build it in one process (which says what is wrong, if anything is)."""
    if not root.is_dir():  # a lab built in code into a new folder: made only once verified
        return None
    try:
        shared = splitprep.shared(lab, warnings)
    except Exception:  # noqa: BLE001 - the single-process build finds it again and says it
        return None
    compiled = shared.compiled
    ours, theirs = _halves(compiled)
    if not theirs.rels:
        return None
    problems: list = []
    whole_texts = set(compiled.files) | {plan.entry for plan in compiled.hosts.values()} | {LAB_DATA}
    with files.locked(root):  # the temporaries a killed build left: removed by the child (_work)
        from . import helmfile

        generated = frozenset(whole_texts | set(helmfile.texts(lab)))
        delete = files.pruned(root, generated, force, problems)
        if problems:
            return None
        committed = False
        try:
            with tempfile.TemporaryDirectory(prefix="homelab-verify-", dir=readback._scratch_dir()) as base:
                job = _Job(root, base, shared, nix, force, files._temp_token(), generated)
                halves = _run_both(job, ours, theirs)
            if halves is None:
                return None
            temps = [t for h in halves for t in h["temps"]]
            files.commit(root, temps, delete, True)
            committed = True
        finally:
            if not committed:  # ours and the child's temporaries: the lock keeps every other build out
                files.remove_stale_temps(root)
    return _done(shared, halves, temps, delete)


def _done(shared: splitprep.Shared, halves: list[dict[str, Any]], temps: list, delete: list[str]) -> Done:
    """The build's account, as the single-process build gives it (nix read each generated file back as the model
    says: the merged option values are the precheck's, merged when asked)."""
    compiled = shared.compiled
    names = sorted(compiled.hosts)
    generated = {rel for h in names for rel in compiled.files_of(h)}
    hand = {r for h in names for r in compiled.hosts[h].hand_written}
    report = readback.Report(len(generated) + 1, len(hand), splitprep.options(shared, names), [],  # + hosts/lab.nix
                             sum(h["calls"] for h in halves))
    digests = {k: v for h in halves for k, v in h["digests"].items()}
    return Done(tuple(names), shared.warnings, tuple(sorted(rel for rel, _ in temps)), tuple(sorted(r for h in halves for r in h["unchanged"])),
                tuple(delete), report, max(h["seconds"] for h in halves), digests)


def _run_both(job: _Job, ours: _Half, theirs: _Half) -> list[dict[str, Any]] | None:
    """Both halves' results (this process's first), or None when either did not finish its work."""
    results_r, results_w = os.pipe()
    staged_r, staged_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: its half, its result down the pipe, and out without running anything of ours
        _child(job, theirs, results_w, staged_r, (results_r, staged_w))
    os.close(results_w)
    os.close(staged_r)
    mine: dict[str, Any] | None = None
    theirs_done: dict[str, Any] | None = None
    finished = False
    try:
        try:
            mine = _work(job, ours, True, lambda: _signal(staged_w), lambda: None)
        except Exception:  # noqa: BLE001 - the single-process build finds it again and says it
            mine = None
        finally:
            _close(staged_w)  # a child still waiting goes on (and finds the folder as it is) or fails
        if mine is not None:
            theirs_done = _read_result(results_r)
        finished = True
    finally:
        _close(results_r)
        _end(pid, kill=not finished or mine is None)
    if mine is None or theirs_done is None:
        return None
    return [mine, theirs_done]


def _child(job: _Job, half: _Half, out: int, staged: int, unused: tuple[int, int]) -> None:
    code = 0
    try:
        for fd in unused:
            os.close(fd)
        if os.environ.get("HOMELAB_TEST_SHARD_CRASH"):  # test hook: a child that dies after its temporaries
            _work(job, half, False, lambda: None, lambda: _wait(staged))
            os._exit(70)
        try:
            done: dict[str, Any] | None = _work(job, half, False, lambda: None, lambda: _wait(staged))
            done["temps"] = [(rel, str(tmp)) for rel, tmp in done["temps"]]
        except Exception:  # noqa: BLE001 - the parent builds in one process and says what is wrong
            done = None
        data = pickle.dumps(done, protocol=pickle.HIGHEST_PROTOCOL)
        with os.fdopen(out, "wb") as f:
            f.write(data)
    except BaseException:  # noqa: BLE001 - the parent reads nothing, and builds in one process
        code = 1
    finally:
        os._exit(code)


def _signal(fd: int) -> None:
    os.write(fd, b"1")


def _wait(fd: int) -> None:
    if os.read(fd, 1) != b"1":
        raise _Fallback("the other half did not stage its files")


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _read_result(fd: int) -> dict[str, Any] | None:
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    if not chunks:
        return None
    try:
        done = pickle.loads(b"".join(chunks))
    except Exception:  # noqa: BLE001 - a half-written result is no result
        return None
    if done is not None:
        done["temps"] = [(rel, Path(tmp)) for rel, tmp in done["temps"]]
    return done


def _end(pid: int, kill: bool) -> None:
    """The child is gone when this returns (``kill``: killed first, when this process stops early)."""
    try:
        if kill:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ChildProcessError, ProcessLookupError):
        pass
