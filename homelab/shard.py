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
one of its files back as the model says and found no hand-written clash, warning or error.  Only after
both halves succeeded, under the lab's lock, are the temporaries renamed: this process syncs the file
system, renames the files outside hosts/ (modules, the cluster layer), then gives the child the go, and
each renames its own files under hosts/ at once (a child that does not finish them leaves the rest to this
process); the durability sync and the deletions are done here.  Anything else (a problem of any kind
in either half, its hosts' precheck's too, a warning of the clash check, a child that crashed or was
killed, no nix) takes back every temporary and returns None: the caller then builds the single-process
way, which finds the same problem and says it exactly as a build of a small lab does, or succeeds the
same way.  Generated
files are byte for byte those of the single-process build.  Why it went back to one process is said in one
line on stderr (``homelab: building in one process instead of two: ...``), unless the single-process build
stops on that reason and names it itself (a problem of the lab's, no nix); ``HOMELAB_DEBUG=1`` says every
reason.

Stopped by SIGTERM or Ctrl-C, this process asks the child to stop (SIGTERM), which ends its nix processes
(each in a session of its own) before it exits, and waits for it: no process of the build outlives it.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from . import files, forked, load, readback, render, splitprep
from .splitprep import wanted  # noqa: F401 - shard.wanted: whether a whole build runs in two processes
from .compile import LAB_DATA
from .forked import PARALLEL_FROM, threshold  # one knob: a large lab's validation and build split alike
from .precompile import available  # noqa: F401 - shard.available: whether this machine can fork a build

if TYPE_CHECKING:
    from .compile import Compiled
    from .errors import Problem
    from .model import Lab
    from .pynix_eval import Nix

__all__ = ["PARALLEL_FROM", "threshold", "wanted", "Done", "build"]

@attrs.frozen
class Done:
    """What a two-process build wrote, and what nix read back."""

    hosts: tuple[str, ...]
    warnings: tuple[Problem, ...]  # the lab's (:func:`homelab.splitprep.shared`)
    written: tuple[str, ...]
    unchanged: tuple[str, ...]
    removed: tuple[str, ...]
    report: readback.Report
    seconds: float  # staging and reading back: the slower half's (the halves run at once)
    digests: dict[str, str]  # lab-relative path -> SHA-256 of its content, as this build read or wrote it


class _Fallback(Exception):
    """The two-process build stops here; the single-process build decides what to say.  ``quiet``: it stops on it
    and names it (a problem of the lab's), so it is said only with ``HOMELAB_DEBUG``."""

    def __init__(self, reason: str, quiet: bool = False):
        super().__init__(reason)
        self.reason, self.quiet = reason, quiet


_Why = tuple[str, bool]  # why a build went back to one process, and whether that build names it itself


def _reason(e: BaseException) -> _Why:
    """What to say of a half's exception, in one line, and whether the single-process build stops on it and
    names it itself (a problem of the lab's: exit 2; no nix: exit 4)."""
    from .errors import LabError
    from .pynix_eval import NixError, NixNotFound, NixTimeout

    if isinstance(e, _Fallback):
        return e.reason, e.quiet
    if isinstance(e, LabError):
        more = len(e.problems) - 1
        first = _line(str(e.problems[0]) if e.problems else str(e))
        return f"a problem in the lab: {first}" + (f" (and {more} more)" if more > 0 else ""), True
    if isinstance(e, (NixNotFound, NixTimeout)):  # "nix-instantiate not found ...", "... did not finish within 120 s"
        return _line(e.message), isinstance(e, NixNotFound)
    if isinstance(e, NixError):
        return f"nix failed: {_line(e.message).removeprefix('error: ')}", False
    if isinstance(e, OSError):
        return f"{type(e).__name__}: {_line(str(e))}", False
    return f"{type(e).__name__}: {_line(str(e))} (a bug in homelab's two-process build: please report it)", False


def _line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] + (" ..." if len(lines) > 1 else "") if lines else "(no message)"


def _tell(*why: _Why) -> None:
    """Why this build goes on in one process, in one line on stderr: the first reason, unless one is the lab's
    (the single-process build names it, and a problem of the other half is likely its consequence).
    ``HOMELAB_DEBUG`` set (not 0): every reason, each on its line."""
    if os.environ.get("HOMELAB_DEBUG", "") not in ("", "0"):
        said = [reason for reason, _ in why]
    else:
        said = [] if any(quiet for _, quiet in why) else [reason for reason, _ in why[:1]]
    for reason in said:
        print(f"homelab: building in one process instead of two: {reason}", file=sys.stderr, flush=True)


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


def _texts(job: _Job, compiled: Compiled, half: _Half) -> dict[str, str]:
    """The texts of ``half``'s files."""
    out = {rel: render.module_text(compiled.files[rel]) for rel in half.rels}
    if half.data and compiled.data is not None:
        out[compiled.data.path] = render.data_text(compiled.data)
    if half.cluster:
        out.update(job.cluster)
    return dict(sorted(out.items()))


def _digest_sources(root: Path, lab: Lab, compiled: Compiled, hosts: list[str], out: dict[str, str]) -> None:
    """SHA-256 of each host's host.py and hand-written imports (what the no-op record hashes otherwise); those in
    ``out`` already (hashed as they were staged) are not read again, nor a host.py whose bytes the load hashed as
    it ran them to make this lab's host (homelab.load.source_digest): an edit since is then a change to the
    record, as an edit of a staged import is."""
    base = str(root) + "/"
    for h in hosts:
        host_py = f"{lab.where(h)}/host.py"
        known = load.source_digest(lab.host(h), base + host_py)  # the bytes the load ran, hashed then
        if known is not None and host_py not in out:
            out[host_py] = known
        for rel in (host_py, *compiled.hosts[h].hand_written):
            if rel in out:
                continue
            try:
                out[rel] = hashlib.sha256(readback.read_all(base + rel)).hexdigest()
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
    cluster: dict[str, str]  # the cluster layer's texts (homelab.helmfile), made once: this process's half writes them
    host_dirs: frozenset[str] = frozenset()  # the real folders in hosts/ (files.host_folders): each half lists its hosts'


def _verify(job: _Job, half: _Half, compiled: Compiled, pre: readback.Precheck) -> int:
    """nix reads ``half``'s files back from the staging folder and calls its hand-written imports: the number of
    nix processes, or _Fallback for any problem or warning."""
    from .pynix_eval import Nix

    nix = job.nix or Nix()
    calls = nix.calls
    base = Path(job.base)
    specs = readback.clash_specs(compiled, half.hosts, pre)
    # The read-back and the clash check in one nix process (the other half's keeps the other core busy): each
    # hand-written import is parsed once, not once by each.  Should it fail, each runs alone as asked below, and
    # fails as it does in a one-process build.
    # Each half reads back the files it writes (``half.rels``: this process's, the shared module files too), so each
    # generated file is read back once in the build: the child's hosts' entries import the module files, and
    # their imports are compared as paths; reading the modules there again cost the child's nix 4.5 MB of Nix
    # to parse and evaluate, and Python as much JSON to compare, at 10,000 hosts.
    together = [readback.evaluate_expr(base, compiled, half.hosts, with_data=half.data, files=half.rels)]
    if specs[0]:
        together.append(readback.describe_expr(base, specs[0]))
    try:
        nix.eval_together(together)
        rep = readback.read_back(base, compiled, nix, half.hosts, pre=pre, with_data=half.data, expr=together[0],
                                 files=half.rels)
        if rep.problems:
            raise _Fallback("nix read back something other than the model says")
        described = (lambda: readback._describe(base, specs[0], nix, together[1])) if specs[0] else None
        clashes = readback.hand_written_clashes(base, compiled, nix, half.hosts, pre, specs=specs, described=described)
        if any(c.severity == "error" for c in clashes):
            raise _Fallback("a hand-written import fights a generated definition", quiet=True)
        if clashes:
            raise _Fallback("the hand-written imports' clash check warns (said below); a build with such warnings "
                            "runs in one process")
    finally:
        for expr in together:  # a value not asked for (the read-back's problems stopped the half) is not kept
            nix.kept.pop(expr, None)
    return nix.calls - calls


def _work(job: _Job, half: _Half, first: bool, staged_ours, staged_theirs) -> dict[str, Any]:
    """One half's work up to its temporaries; ``staged_ours()`` is called once its hand-written files are staged,
    ``staged_theirs()`` waits until the other half's are (the child waits for this process's).  A dict of what
    it did; the temporaries it made are listed in it as they are made."""
    try:
        compiled, pre = splitprep.half(job.shared, half.hosts, half.data)
    except splitprep.Refused as e:  # a problem of the lab's hosts (or homelab's code): the one-process build says it
        raise _Fallback(str(e), quiet=True) from None
    texts = _texts(job, compiled, half)
    listed = _listed(job, half)
    plan = files.plan(job.root, texts, prune=False, force=job.force,
                      listed={folder: {e.name for e in entries} for folder, entries in listed.items()})
    t0 = time.perf_counter()
    made: set[str] = set()
    readback.stage_texts(job.base, texts, made)
    staged = list(texts)  # what this half wrote into the staging folder, to remove (_unstage)
    hand = sorted({r for h in half.hosts for r in compiled.hosts[h].hand_written})
    if not first:  # beside this process's half; never this build's own; the host folders each half lists are
        # skipped (_listed); here, before the child waits for this process's staging (it waited up to 0.8 s when this
        # half was slower)
        files.remove_stale_temps(job.root, keep=job.token, skip=_scanned(job))
    staged_theirs()
    digests: dict[str, str] = {}  # the hand-written imports' as they are staged, then what is written
    readback.stage_hand_written(job.base, job.root, hand, job.generated, skip_present=not first, digests=digests,
                                made=made, staged=staged, listed=listed,
                                contents=load.import_contents(job.shared.lab))
    staged_ours()
    calls = _verify(job, half, compiled, pre)
    seconds = time.perf_counter() - t0
    temps: list[tuple[str, Path]] = []
    done = {"temps": temps, "unchanged": list(plan.unchanged), "calls": calls, "seconds": seconds,
            "digests": digests}
    files.write_temps(job.root, plan.write, job.token, True, temps, digests)
    # The temporaries on their way to the disk while this half hashes and unstages: the sync before the renames
    # (_commit) then waits for little (it waited 0.6-0.7 s for 10,000 files, both cores idle).
    flushing = threading.Thread(target=files._syncfs, args=(job.root,), name="homelab-flush", daemon=True)
    flushing.start()
    for rel in plan.unchanged:
        digests[rel] = hashlib.sha256(texts[rel].encode("utf-8")).hexdigest()
    _digest_sources(job.root, job.shared.lab, compiled, half.hosts, digests)
    _unstage(job, half, staged)
    flushing.join()
    return done


def _scanned(job: _Job) -> set[str]:
    """The host folders (names in hosts/) the halves list themselves (:func:`_listed`): every host's that is a real
    folder; the child's look for stale temporaries skips them."""
    lab = job.shared.lab
    return {f for h in job.shared.compiled.hosts if (f := lab.where(h).removeprefix("hosts/")) in job.host_dirs}


def _listed(job: _Job, half: _Half) -> dict[str, list[os.DirEntry]]:
    """Each of ``half``'s hosts' folders listed once (lab-relative folder -> its entries): the stale temporaries a
    killed build left there removed (but this build's: ``job.token``), as files.remove_stale_temps removes them,
    and the listing kept for staging the hand-written imports (readback.stage_hand_written: no look at each file,
    no second listing).  Only real folders (``job.host_dirs``, as :func:`files.stale_temps` walks them); a folder
    that cannot be listed is left to the ways that look at it themselves."""
    lab = job.shared.lab
    base = str(job.root) + "/"
    keep = f".{job.token}.tmp"
    out: dict[str, list[os.DirEntry]] = {}
    for h in half.hosts:
        where = lab.where(h)
        if where.removeprefix("hosts/") not in job.host_dirs:
            continue
        try:
            with os.scandir(base + where) as it:
                entries = list(it)
        except OSError:
            continue
        stale = [path for path in files.temps_in(entries) if not path.endswith(keep)]
        for path in stale:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        out[where] = [e for e in entries if e.path not in stale] if stale else entries
    return out


def _unstage(job: _Job, half: _Half, staged: list[str]) -> None:
    """This half's hosts' folders of the staging copy removed, now that its nix read them: each half removes its
    own beside the other (10,000 folders removed after both took about 1 s).  A folder holding a hand-written
    import of the other half's hosts stays (the other half's nix may still read it); what is left goes with the
    staging folder.  ``staged``: the files this half wrote there (lab-relative), removed without listing each
    folder (five system calls a folder); a folder that holds anything else then is not empty, and stays."""
    mine = set(half.hosts)
    theirs = {rel.split("/", 2)[1] for h, plan in job.shared.compiled.hosts.items() if h not in mine
              for rel in plan.hand_written if rel.startswith("hosts/") and rel.count("/") >= 2}
    inside: dict[str, list[str]] = {}  # host -> its staged files
    for rel in staged:
        parts = rel.split("/")
        if len(parts) == 3 and parts[0] == "hosts":
            inside.setdefault(parts[1], []).append(rel)
    base = job.base + "/"
    for h in half.hosts:
        if h in theirs:
            continue
        try:
            for rel in inside.get(h, ()):
                os.unlink(base + rel)
            os.rmdir(f"{base}hosts/{h}")
        except OSError:  # something else there, or anything else: removed with the staging folder
            continue


def build(root: Path, lab: Lab, warnings: tuple[Problem, ...], nix: Nix | None, *,
          force: bool = False) -> Done | None:
    """Prepare, render, verify and write the whole lab in two processes (see the module's text); None: nothing
    was written, build it in one process (which says what is wrong, if anything is)."""
    if not root.is_dir():  # a lab built in code into a new folder: made only once verified
        _tell(("the lab's folder does not exist yet", True))
        return None
    from . import helmfile

    # the cluster layer's texts, made while a child started early still compiles the shared module files
    # (homelab.splitprep.ahead); should making them fail, they are made again below, where that error has always
    # been raised (a lab that does not validate says so first, as before)
    try:
        cluster: dict[str, str] | None = helmfile.texts(lab)
    except Exception:  # noqa: BLE001 - raised again below, in its place
        cluster = None
    try:
        shared = splitprep.shared(lab, warnings)
    except Exception as e:  # noqa: BLE001 - the single-process build finds it again and says it
        _tell(_reason(e))
        return None
    compiled = shared.compiled
    ours, theirs = _halves(compiled)
    if not theirs.rels:
        _tell(("no entry file for a second process", True))
        return None
    problems: list = []
    whole_texts = set(compiled.files) | {plan.entry for plan in compiled.hosts.values()} | {LAB_DATA}
    with files.locked(root):  # the temporaries a killed build left: removed by the child (_work)
        if cluster is None:
            cluster = helmfile.texts(lab)
        generated = frozenset(whole_texts | set(cluster))
        delete = files.pruned(root, generated, force, problems)
        if problems:
            _tell((f"a problem in the lab: {_line(str(problems[0]))}", True))
            return None
        committed = False
        child: _Child | None = None
        both = None
        try:
            with tempfile.TemporaryDirectory(prefix="homelab-verify-", dir=readback._scratch_dir()) as base:
                job = _Job(root, base, shared, nix, force, files._temp_token(), generated, cluster,
                           files.host_folders(root))
                why: list[_Why] = []
                both = _run_both(job, ours, theirs, why)
            if both is None:
                _tell(*why)
                return None
            halves, child = both
            temps = [t for h in halves for t in h["temps"]]
            _commit(root, halves, child, delete)
            committed = True
        finally:
            if child is None and both is not None:  # stopped before it was taken over (the staging's removal): a
                child = both[1]  # child waiting for the go would hold the lab's lock as long as this process lives
            if child is not None:  # gone before its temporaries are looked for (stopped if this build stops early)
                child.end(stop=not committed)
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
    return Done(tuple(names), shared.warnings, tuple(sorted(rel for rel, _ in temps)),
                tuple(sorted(r for h in halves for r in h["unchanged"])), tuple(delete), report,
                max(h["seconds"] for h in halves), digests)


def _run_both(job: _Job, ours: _Half, theirs: _Half, why: list[_Why]) -> list[dict[str, Any]] | None:
    """Both halves' results (this process's first), or None when either did not finish its work (``why`` then
    says why)."""
    results_r, results_w = os.pipe()
    staged_r, staged_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)  # Ctrl-C, SIGTERM: raised once the child is known
    try:
        pid = os.fork()
    except OSError as e:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for fd in (results_r, results_w, staged_r, staged_w):
            _close(fd)
        why.append((f"no second process: {_line(str(e))}", False))
        return None
    if pid == 0:  # the child: its half, its result down the pipe, and out without running anything of ours
        _child(job, theirs, results_w, staged_r, (results_r, staged_w), mask)
    os.close(results_w)
    os.close(staged_r)
    mine: dict[str, Any] | None = None
    theirs_done: dict[str, Any] | None = None
    finished = False
    child: _Child | None = None
    status: int | None = None
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # one that came meanwhile is raised here
        try:
            mine = _work(job, ours, True, lambda: _signal(staged_w), lambda: None)
        except Exception as e:  # noqa: BLE001 - the single-process build finds it again and says it
            why.append(_reason(e))  # staged_w is closed below: a child still waiting goes on (and finds the
            # folder as it is) or fails
        if mine is not None:
            theirs_done = _read_result(results_r)
        finished = True
    finally:
        if finished and mine is not None and theirs_done is not None and "fallback" not in theirs_done:
            child = _Child(pid, staged_w, results_r)  # both halves succeeded: it waits for the go (_commit)
        else:
            _close(staged_w)  # a child waiting for the go reads the end: it renames nothing
            status = _end(pid, stop=not finished or mine is None)
            if finished and mine is None:  # the child's own reason, when it stopped before it was asked to
                theirs_done = _read_result(results_r)
            _close(results_r)
    try:
        return _outcome(why, mine, theirs_done, child, status)
    except BaseException:  # Ctrl-C or SIGTERM before the caller has the child: it waits for no go
        if child is not None:
            child.end(stop=True)
        raise


def _outcome(why: list[_Why], mine: dict[str, Any] | None, theirs_done: dict[str, Any] | None,
             child: _Child | None, status: int | None) -> tuple[list[dict[str, Any]], _Child] | None:
    """:func:`_run_both`'s answer from what each half gave (None, and ``why`` says why, unless both succeeded)."""
    gone = bool(why) and why[0][0] == _GONE  # this half stopped because the child had: the child says why
    if gone:
        why.pop(0)
    if theirs_done is not None and "fallback" in theirs_done:
        reason, quiet = theirs_done["fallback"]
        why.append((str(reason), bool(quiet)))
        return None
    if mine is None and not gone:
        return None
    if mine is None or theirs_done is None or child is None:
        why.append((f"the second process ended without its result ({_status(status)})", False))
        return None
    return [mine, theirs_done], child


def _commit(root: Path, halves: list[dict[str, Any]], child: _Child, delete: list[str]) -> None:
    """:func:`homelab.files.commit` with the hosts' files renamed by both halves at once: every temporary's text on
    disk (both halves'); the files that are not under hosts/ (modules, the cluster layer) renamed here, in
    ``files._rename_order``; then the go: the child renames its temporaries under hosts/ (entries, hosts/lab.nix)
    while this process renames its own, so no entry is in place before the modules it imports.  A child that does
    not say it renamed every one (it failed or died): it is waited for, and what is left of its temporaries is
    renamed here, as a one-process commit renames them (and fails as it fails).  Then the renames made durable
    and the deletions."""
    order = files._rename_order
    everything = [t for h in halves for t in h["temps"]]
    batch = files.on_disk(root, everything, True)
    files.rename_all(root, sorted((t for t in everything if not order(t[0])[0]), key=lambda rt: order(rt[0])))
    child.go()
    files.rename_all(root, _entries(halves[0]["temps"]))
    if not child.renamed():
        child.end(stop=False)
        files.rename_all(root, [t for t in _entries(halves[1]["temps"]) if os.path.lexists(t[1])])
    files.renames_on_disk(root, everything, batch)
    files.remove_all(root, delete)


def _entries(temps: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """The temporaries of files under hosts/ (what a half renames after the go), in rename order."""
    order = files._rename_order
    return sorted((t for t in temps if order(t[0])[0]), key=lambda rt: order(rt[0]))


@attrs.define
class _Child:
    """The second process once both halves succeeded: it waits for the go to rename its temporaries under hosts/
    (:func:`_commit`)."""

    pid: int
    go_fd: int  # b"g" written: rename them; closed unwritten: rename nothing and exit
    result_fd: int  # after its result: b"r" once it renamed every one
    ended: bool = False

    def go(self) -> None:
        try:
            os.write(self.go_fd, b"g")
        except BrokenPipeError:  # it is gone: renamed() says so
            pass

    def renamed(self) -> bool:
        try:
            return os.read(self.result_fd, 1) == b"r"
        except OSError:
            return False

    def end(self, stop: bool) -> None:
        """The child gone (asked to stop, then killed if need be, with ``stop``); once."""
        if not self.ended:
            self.ended = True
            _close(self.go_fd)
            _end(self.pid, stop)
            _close(self.result_fd)


_STOPS = {signal.SIGINT, signal.SIGTERM}
STOP_WAIT = 10.0  # seconds the child has to end its nix processes and exit when asked to stop, before SIGKILL


def _child(job: _Job, half: _Half, out: int, staged: int, unused: tuple[int, int], mask) -> None:
    code = 0
    try:
        _stop_on_signals()
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for fd in unused:
            os.close(fd)
        crash = os.environ.get("HOMELAB_TEST_SHARD_CRASH")
        if crash == "1":  # test hook: a child that dies after its temporaries
            _work(job, half, False, lambda: None, lambda: _wait(staged))
            os._exit(70)
        temps: list[tuple[str, Path]] = []
        try:
            done: dict[str, Any] = _work(job, half, False, lambda: None, lambda: _wait(staged))
            temps = done["temps"]
            done["temps"] = [(rel, str(tmp)) for rel, tmp in temps]
        except Exception as e:  # noqa: BLE001 - the parent builds in one process and says why
            done = {"fallback": _reason(e)}
        forked.send(out, done)
        if "fallback" not in done and os.read(staged, 1) == b"g":  # both halves succeeded: the go (_commit)
            mine = _entries(temps)
            if crash == "after-go":  # test hook: a child that dies halfway through its renames
                files.rename_all(job.root, mine[:len(mine) // 2])
                os._exit(71)
            files.rename_all(job.root, mine)
            os.write(out, b"r")
    except BaseException:  # noqa: BLE001 - the parent reads nothing, and builds in one process
        code = 1
    finally:
        os._exit(code)


def _stop_on_signals() -> None:
    """The child: SIGTERM (its parent's, when the parent stops early) and Ctrl-C raise KeyboardInterrupt where it
    is, so that its nix processes end on the way out (a child killed outright left them running); held while a
    nix process starts, like homelab.cli's.  Once: the next (Ctrl-C reaches it and its parent, which then asks it
    too) would cut that short; the parent kills it if it takes longer than ``STOP_WAIT``."""
    from .pynix_eval import hold_interrupt

    def stop(signum, frame):
        for sig in _STOPS:
            signal.signal(sig, signal.SIG_IGN)
        if not hold_interrupt(KeyboardInterrupt):
            raise KeyboardInterrupt()

    signal.signal(signal.SIGTERM, stop)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # a background job's stays ignored
        signal.signal(signal.SIGINT, stop)


_GONE = "the second process ended before this one staged its files"


def _signal(fd: int) -> None:
    try:
        os.write(fd, b"1")
    except BrokenPipeError:  # the child stopped early: its result says why
        raise _Fallback(_GONE) from None


def _wait(fd: int) -> None:
    if os.read(fd, 1) != b"1":
        raise _Fallback("the other half did not stage its files")


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _read_result(fd: int) -> dict[str, Any] | None:
    """The child's result: its length (8 bytes) and its pickle; None if the child ended before it was whole."""
    data = forked.receive(fd)
    if data is None:
        return None
    try:
        done = pickle.loads(data)
    except Exception:  # noqa: BLE001 - a half-written result is no result
        return None
    if done is not None and "temps" in done:
        done["temps"] = [(rel, Path(tmp)) for rel, tmp in done["temps"]]
    return done


def _end(pid: int, stop: bool) -> int | None:
    """The child is gone when this returns: its wait status (None: reaped elsewhere).  ``stop``: this process stops
    early; the child is asked to stop (SIGTERM: it ends its nix processes, each in a session of its own, which a
    SIGKILL would leave running), and killed if it has not exited within ``STOP_WAIT`` seconds or this process
    is interrupted again meanwhile."""
    try:
        if stop:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_WAIT
            try:
                while time.monotonic() < deadline:
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        return status
                    time.sleep(0.005)
            except BaseException:  # interrupted again: no more waiting
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise
            os.kill(pid, signal.SIGKILL)
        return os.waitpid(pid, 0)[1]
    except (ChildProcessError, ProcessLookupError):
        return None


def _status(status: int | None) -> str:
    if status is None:
        return "its exit status is unknown"
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
