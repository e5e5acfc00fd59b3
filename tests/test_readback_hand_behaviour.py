"""Exact behaviour of homelab.readback's check of the hand-written imports (issue 19 item 3: the tests that judge
its mutants): which generated definitions it asks nix about, the problem of a definition that clashes, the boot
facts, files nix cannot call or parse, the clash check's nix process started beside the read-back's, and the
staging copy a build verifies.

A contract of its own (``CH``) makes the tests independent of the built-in rows, and tells apart a function that
uses the lab's contract from one that falls back to the built-in one.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homelab import bootable
from homelab import optiontypes as t
from homelab import readback
from homelab.compile import Compiled, HostFiles
from homelab.contract import Contract, OptionFact
from homelab.errors import Problem
from homelab.nixmodule import ModuleFile, Section
from homelab.pynix_eval import NixEvalError

from .readbackkit import flattened, force  # noqa: F401 - flattened is a fixture

CH = Contract((
    OptionFact("test.alpha", t.bool_, "test.nix"),
    OptionFact("test.flag", t.bool_, "test.nix"),
    OptionFact("test.lines", t.lines, "test.nix"),
    OptionFact("test.attrs", t.Scalar("attrs", dict), "test.nix"),  # a value that is a set, but does not merge
    OptionFact("test.tool", t.Package(), "test.nix"),
    OptionFact("boot.isContainer", t.bool_, "test.nix"),
    OptionFact("boot.loader.systemd-boot.enable", t.bool_, "test.nix"),
))



def lab(files: dict[str, tuple], hosts: dict[str, tuple[str, ...]], hand: dict[str, tuple[str, ...]] = {}
        ) -> Compiled:
    """A compiled lab of ``files`` (path -> definitions), ``hosts`` (name -> module files besides its entry) and
    ``hand`` (name -> its hand-written imports), checked against CH."""
    return Compiled({rel: ModuleFile(rel, "t", "test", (), (Section("", defs),)) for rel, defs in files.items()},
                    {h: HostFiles(h, f"hosts/{h}/default.nix", mods, hand.get(h, ())) for h, mods in hosts.items()},
                    CH, None)


def write(root: Path, texts: dict[str, str]) -> None:
    for rel, text in texts.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


# ---------------------------------------------------------------- one definition against a generated one

FLAG = (("test", "flag"), True, "hosts/a/default.nix", t.bool_)  # a generated definition the clash check asks about
CANNOT_MERGE = ("; NixOS cannot merge the two: drop it from the file (homelab writes it from host.py) or wrap it in "
                "lib.mkForce")


def found(value=None, priority=100, **more):
    """What nix says of a definition it found in a hand-written file (readback.HAND_EXPR's ``leaf``)."""
    return {"found": True, "priority": priority, **({"known": True, "value": value} if value is not None else {}),
            **more}


@pytest.mark.parametrize("d", [
    {"found": False},                              # the file does not define it
    {"found": True, "conditional": True},          # under mkIf / mkMerge: NixOS judges
    found(False, priority=None, known=True),       # an override whose priority nix could not tell
    found(True),                                   # the same value: NixOS merges them
    found(False, priority=50),                     # lib.mkForce in the hand-written file wins
    found(False, priority=1000),                   # lib.mkDefault there: homelab's wins
])
def test_clash_leaves_what_nixos_can_merge_or_must_judge(d):
    assert readback._clash("a", "hosts/a/extra.nix", FLAG, d) == []


def test_clash_names_the_host_file_option_and_both_values():
    assert readback._clash("a", "hosts/a/extra.nix", FLAG, found(False)) == [
        Problem("hosts/a", "imports", "extra.nix sets test.flag = False, which homelab sets to True in "
                "hosts/a/default.nix" + CANNOT_MERGE)]
    # a value nix could not tell (a set, a list) is not shown
    assert readback._clash("b", "hosts/shared.nix", FLAG, found(known=False)) == [
        Problem("hosts/b", "imports", "shared.nix sets test.flag, which homelab sets to True in hosts/a/default.nix"
                + CANNOT_MERGE)]
    # at the same priority as a generated lib.mkForce; homelab's value shown without its override, a package by name
    tool = (("test", "tool"), force({"_type": "pkg", "attrPath": "htop"}), "modules/m.nix", t.Package())
    assert readback._clash("a", "hosts/a/extra.nix", tool, found("vim", priority=50)) == [
        Problem("hosts/a", "imports", "extra.nix sets test.tool = 'vim', which homelab sets to pkgs.htop in "
                "modules/m.nix" + CANNOT_MERGE)]
    forced = (("test", "flag"), force(True), "modules/m.nix", t.bool_)
    assert readback._clash("a", "hosts/a/extra.nix", forced, found(False, priority=50)) == [
        Problem("hosts/a", "imports", "extra.nix sets test.flag = False, which homelab sets to True in modules/m.nix"
                + CANNOT_MERGE)]


def test_clash_warns_of_an_expression_of_pkgs_or_config():
    assert readback._clash("a", "hosts/a/extra.nix", FLAG, found(known=False, needs=True)) == [
        Problem("hosts/a", "imports", "extra.nix sets test.flag with an expression homelab cannot evaluate without "
                "nixpkgs, and homelab sets it to True in hosts/a/default.nix; unless one of them is lib.mkForce, "
                "NixOS will refuse the two", "warning")]


# ---------------------------------------------------------------- what the clash check asks nix about

FLAG_P, ALPHA, LINES, ATTRS = ("test", "flag"), ("test", "alpha"), ("test", "lines"), ("test", "attrs")
FILES = {  # a and b import m; a imports hw.nix and shared.nix, b shared.nix; c nothing hand-written
    "hosts/a/default.nix": ((FLAG_P, True), (LINES, "a"), (ATTRS, {"x": "1"})),
    "hosts/b/default.nix": ((FLAG_P, False),),
    "hosts/c/default.nix": ((FLAG_P, True),),
    "modules/m.nix": ((ALPHA, True), (LINES, "m")),
}
HOSTS = {"a": ("modules/m.nix",), "b": ("modules/m.nix",), "c": ()}
HAND = {"a": ("hosts/a/hw.nix", "hosts/shared.nix"), "b": ("hosts/shared.nix",)}


def test_clash_specs_ask_each_file_about_what_its_importers_define_that_does_not_merge(flattened):
    compiled = lab(FILES, HOSTS, HAND)
    pre = readback.precheck(compiled)
    flattened.clear()
    specs, host_leaves = readback.clash_specs(compiled, ["a", "b", "c"], pre)
    # lines merge: never asked; the set of test.attrs is one value of its (lab's) contract type, not a set of options
    assert specs == {"hosts/a/hw.nix": (["a"], {FLAG_P, ATTRS, ALPHA}),
                     "hosts/shared.nix": (["a", "b"], {FLAG_P, ATTRS, ALPHA})}
    assert host_leaves("a") == [(FLAG_P, True, "hosts/a/default.nix", t.bool_),
                                (ATTRS, {"x": "1"}, "hosts/a/default.nix", t.Scalar("attrs", dict)),
                                (ALPHA, True, "modules/m.nix", t.bool_)]
    assert host_leaves("b") == [(FLAG_P, False, "hosts/b/default.nix", t.bool_), (ALPHA, True, "modules/m.nix", t.bool_)]
    assert host_leaves("c") == [(FLAG_P, True, "hosts/c/default.nix", t.bool_)]
    assert flattened == []  # the precheck flattened each file by this contract already
    assert readback.clash_specs(compiled, ["b"], pre)[0] == {"hosts/shared.nix": (["b"], {FLAG_P, ALPHA})}
    # a precheck without them (or made with another contract): each file flattened here, once, the same answers
    for made in [(None, {}), (Contract(()), pre.flat[1])]:
        flattened.clear()
        specs_, host_leaves_ = readback.clash_specs(compiled, ["a", "b", "c"], attrs.evolve(pre, flat=made))
        assert specs_ == specs
        assert [host_leaves_(h) for h in "abc"] == [host_leaves(h) for h in "abc"]
        assert len(flattened) == 4  # the entries of a, b and c, and m once


# ---------------------------------------------------------------- the boot facts of the hand-written imports

LOADER = ("boot", "loader", "systemd-boot", "enable")
NO_ROOT = Problem("hosts/a", "imports", "no root file system: fileSystems.\"/\" is defined in none of its imports "
                  "(hw.nix) nor in its options; NixOS refuses the system (\"The ‘fileSystems’ option does not specify "
                  "your root file system.\"): put this machine's own there (nixos-generate-config "
                  "--show-hardware-config on it)")


def boot_facts(complete: bool = True, **at: list[dict]) -> dict:
    """What nix read of one hand-written file for the boot check: per bootable.PATHS, what each of its modules
    defines there (``root=[...]`` for fileSystems."/")."""
    names = {"root": bootable.ROOT_FS}
    return {"complete": complete, "facts": [at.get(next((k for k, p in names.items() if p == path), ""), [])
                                            for path in bootable.PATHS]}


@pytest.mark.parametrize("boot, problems", [
    ({"hosts/a/hw.nix": boot_facts(root=[found(known=False)])}, []),           # hw.nix mounts /
    ({"hosts/a/hw.nix": boot_facts()}, [NO_ROOT]),                            # read whole: nothing mounts /
    ({"hosts/a/hw.nix": boot_facts(complete=False)}, []),                     # an import nix could not follow
    ({"hosts/a/hw.nix": boot_facts(root=[{"blocked": True}])}, []),           # a module nix could not read
    ({"hosts/a/hw.nix": boot_facts(root=[{"found": True, "conditional": True}])}, []),  # under mkIf: NixOS judges
    ({}, []),                                                                 # nix could not call hw.nix
])
def test_boot_problems_of_a_host_judge_only_what_nix_read_whole(boot, problems):
    compiled = lab({"hosts/a/default.nix": ((LOADER, True),)}, {"a": ()}, {"a": ("hosts/a/hw.nix",)})
    assert readback.boot_problems(compiled, readback.precheck(compiled), "a", boot) == problems


def test_the_clash_check_judges_each_hosts_boot_with_what_nix_read_of_its_imports(nix, tmp_path):
    # a's hardware file mounts nothing, b's mounts /: read whole by nix, only a lacks a root file system
    write(tmp_path, {"hosts/a/hw.nix": "{ ... }: { }",
                     "hosts/b/hw.nix": '{ ... }: { fileSystems."/" = { device = "/dev/sda1"; fsType = "ext4"; }; }'})
    compiled = lab({"hosts/a/default.nix": ((LOADER, True),), "hosts/b/default.nix": ((LOADER, True),)},
                   {"a": (), "b": ()}, {"a": ("hosts/a/hw.nix",), "b": ("hosts/b/hw.nix",)})
    assert readback.hand_written_clashes(tmp_path, compiled, nix, ["a", "b"], readback.precheck(compiled)) == [NO_ROOT]


# ---------------------------------------------------------------- with real nix: the clash check of a lab

CONTAINER = ("boot", "isContainer")  # no boot problems: these tests are about clashes
CLASH_FILES = {rel: defs + (((CONTAINER, True),) if rel.startswith("hosts/") else ()) for rel, defs in FILES.items()}
HW = '{ lib, ... }: { test.flag = false; test.alpha = lib.mkForce false; test.lines = "x"; }'


def clash(host: str, file: str, value: str, generated: str) -> Problem:
    return Problem(f"hosts/{host}", "imports", f"{file} sets test.flag = {value}, which homelab sets to True in "
                   f"{generated}" + CANNOT_MERGE)


def test_the_clash_check_started_beside_the_read_back_judges_each_importer_of_each_file(nix, tmp_path, flattened):
    write(tmp_path, {"hosts/a/hw.nix": HW, "hosts/shared.nix": "{ ... }: { test.flag = false; }"})
    compiled = lab(CLASH_FILES, HOSTS, HAND)
    pre = readback.precheck(compiled)
    calls = nix.calls
    specs, pending = readback.start_clash_check(tmp_path, compiled, nix, ["a", "b", "c"], pre)
    assert isinstance(pending, readback.Pending)
    flattened.clear()
    out = readback.hand_written_clashes(tmp_path, compiled, nix, ["a", "b", "c"], pre, specs=specs,
                                        described=pending.result)
    # b sets test.flag = false itself: the shared file agrees with it, not with a
    assert out == [clash("a", "hw.nix", "False", "hosts/a/default.nix"),
                   clash("a", "shared.nix", "False", "hosts/a/default.nix")]
    assert flattened == [] and nix.calls == calls + 1  # what start_clash_check worked out and asked, used as it is
    assert readback.hand_written_clashes(tmp_path, compiled, nix, ["a", "b", "c"], pre) == out  # the same, alone
    # no host asked for has a hand-written import: nothing to ask nix, no process started
    specs, pending = readback.start_clash_check(tmp_path, compiled, nix, ["c"], pre)
    assert (specs[0], pending) == ({}, None)
    assert readback.hand_written_clashes(tmp_path, compiled, nix, ["c"], pre) == []
    assert nix.calls == calls + 2


def test_a_hand_written_file_nix_cannot_call_is_a_warning_for_each_of_its_importers(nix, tmp_path):
    """The files asked together fail; each is asked alone: the ones nix cannot call are named, the others judged."""
    abort = '{ ... }: builtins.abort "needs the real nixpkgs" // { test.flag = false; }'
    write(tmp_path, {"hosts/a/hw.nix": HW, "hosts/shared.nix": abort, "hosts/c/bad.nix": abort})
    compiled = lab(CLASH_FILES, HOSTS, {"a": ("hosts/a/hw.nix",), "b": ("hosts/shared.nix",),
                                        "c": ("hosts/shared.nix", "hosts/c/bad.nix")})
    calls = nix.calls

    def warning(host: str, file: str) -> Problem:
        return Problem(f"hosts/{host}", "imports", f"{file}: could not be evaluated without nixpkgs to look for "
                       "definitions that clash with homelab's; NixOS will judge them", "warning")

    assert readback.hand_written_clashes(tmp_path, compiled, nix, ["a", "b", "c"], readback.precheck(compiled)) == [
        warning("b", "shared.nix"), warning("c", "shared.nix"), warning("c", "bad.nix"),
        clash("a", "hw.nix", "False", "hosts/a/default.nix")]
    assert nix.calls == calls + 4


def test_hand_written_problems_name_each_file_that_is_not_nix_for_each_importer(nix, tmp_path):
    write(tmp_path, {"hosts/a/a.nix": "{ ... }: { }", "hosts/b/hw.nix": "{ broken", "hosts/shared.nix": "{ x = ; }"})
    compiled = lab(CLASH_FILES, HOSTS, {"a": ("hosts/a/a.nix",), "b": ("hosts/b/hw.nix", "hosts/shared.nix"),
                                        "c": ("hosts/shared.nix",)})
    base = f"{tmp_path.resolve()}/"

    def reason(rel: str) -> str:
        with pytest.raises(NixEvalError) as e:
            nix.parse_files([base + rel])
        assert base + rel in e.value.message  # nix names the file where it is: the problem names it in the lab
        return f"{rel.rsplit('/', 1)[1]} is not valid Nix: {e.value.message.replace(base, '')}"

    hw, shared = reason("hosts/b/hw.nix"), reason("hosts/shared.nix")
    assert readback.hand_written_problems(tmp_path, compiled, nix, ["a", "b", "c"], readback.precheck(compiled)) == [
        Problem("hosts/b", "imports", hw), Problem("hosts/b", "imports", shared), Problem("hosts/c", "imports", shared)]
    # the hosts asked about only
    assert readback.hand_written_problems(tmp_path, compiled, nix, ["c"], readback.precheck(compiled)) == [
        Problem("hosts/c", "imports", shared)]


# ---------------------------------------------------------------- the clash check's thread

def test_pending_gives_what_the_call_returned_or_raises_what_it_raised():
    assert readback.Pending(divmod, 7, 2).result() == (3, 1)
    failing = readback.Pending(int, "x")
    failing.wait()
    with pytest.raises(ValueError) as e:
        failing.result()
    assert str(e.value) == "invalid literal for int() with base 10: 'x'"


def test_pending_does_not_keep_the_process_alive():
    """A build stopped (Ctrl-C) while the clash check's nix process runs ends at once: the thread is a daemon."""
    before = set(threading.enumerate())
    p = readback.Pending(time.sleep, 0.05)
    assert [th.daemon for th in set(threading.enumerate()) - before] == [True]
    p.wait()


def test_ctrl_c_the_kernel_hands_the_clash_checks_thread_is_acted_on_while_waiting_for_it():
    """The kernel may deliver SIGINT to any thread; Python acts on it in the main thread only, so waiting for the
    clash check must wake up to do so, not wait for its nix process to end first."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers can only be set in the main thread")
    started, release, finished = threading.Event(), threading.Event(), threading.Event()
    ident: list[int] = []

    def call():
        ident.append(threading.get_ident())
        started.set()
        release.wait(10)
        finished.set()

    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        p = readback.Pending(call)
        assert started.wait(10)
        # sent from a third thread once the main one waits (raised inside pytest.raises whenever it comes)
        threading.Timer(0.1, signal.pthread_kill, (ident[0], signal.SIGINT)).start()
        with pytest.raises(KeyboardInterrupt):
            p.wait()
        assert not finished.is_set()  # acted on while the call still ran
    finally:
        release.set()
        signal.signal(signal.SIGINT, old)
    # (not p.wait(): Python 3.11's Thread.join marks a thread stopped when a KeyboardInterrupt interrupts it)
    assert finished.wait(10)


@pytest.mark.parametrize("raised, ended", [(None, False), (ValueError, False), (KeyboardInterrupt, True)])
def test_the_clash_check_is_waited_for_and_only_ctrl_c_ends_the_builds_nix_processes(nix, raised, ended):
    """Leaving the work beside a clash check: its call is done first (its nix process reads the staging copy);
    Ctrl-C (KeyboardInterrupt, as SIGTERM is raised too) ends every nix process of the handle at once, nothing else
    does; the handle serves again afterwards, and what was raised goes on."""
    import subprocess

    release, finished = threading.Event(), threading.Event()

    def call():
        release.wait(10)
        finished.set()

    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)  # as the handle runs nix: in a session of its own
    nix.running.add(proc)
    try:
        pending = readback.Pending(call)
        threading.Timer(0.05, release.set).start()
        if raised is None:
            with readback.clash_check_running(nix, pending):
                pass
        else:
            with pytest.raises(raised):
                with readback.clash_check_running(nix, pending):
                    raise raised()
        assert finished.is_set()
        assert (proc.poll() is not None) == ended
        assert nix.eval_expr("1 + 1") == 2
    finally:
        nix.running.discard(proc)
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------- the staging copy a build verifies

@pytest.fixture
def no_tmpdir(monkeypatch):
    monkeypatch.delenv("TMPDIR", raising=False)
    if not (os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK | os.X_OK)):
        pytest.skip("/dev/shm is not a writable folder on this machine")


def test_the_staging_copy_is_in_memory_unless_tmpdir_says_where(no_tmpdir, monkeypatch, tmp_path):
    assert readback._scratch_dir() == "/dev/shm"
    with readback.staged({}, tmp_path, []) as tmp:
        assert (os.path.dirname(tmp), os.path.basename(tmp).startswith("homelab-verify-")) == ("/dev/shm", True)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # tempfile reads TMPDIR again
    assert readback._scratch_dir() is None
    with readback.staged({}, tmp_path, []) as tmp:
        assert os.path.dirname(tmp) == str(tmp_path)


@pytest.mark.parametrize("isdir, access", [
    (False, None),                     # no /dev/shm
    (True, os.F_OK),                   # there, but read-only (a container's): only F_OK granted
])
def test_the_staging_copy_leaves_a_dev_shm_it_cannot_use(no_tmpdir, monkeypatch, isdir, access):
    real_isdir, real_access = os.path.isdir, os.access
    monkeypatch.setattr(os.path, "isdir", lambda p: isdir if p == "/dev/shm" else real_isdir(p))
    monkeypatch.setattr(os, "access", lambda p, mode: (access is None or mode == access) if p == "/dev/shm"
                        else real_access(p, mode))
    assert readback._scratch_dir() is None


def test_the_staging_copy_holds_the_texts_the_hand_written_imports_and_the_nix_files_beside_them(tmp_path):
    root = tmp_path / "lab"
    write(root, {
        "hosts/a/default.nix": "old entry",            # generated: the text to verify is staged instead
        "hosts/a/gen.nix": "old generated",            # the same
        "hosts/a/hw.nix": "hw",                        # imported
        "hosts/a/disks.nix": "disks",                  # beside it: hw.nix may import it
        "hosts/a/.hidden.nix": "hidden", "hosts/a/notes.txt": "notes",  # not Nix files a module imports
        "hosts/lib/common.nix": "common",              # imported by another host
        "hosts/lib/default.nix": "lib default",        # a default.nix beside it: never copied
        "hosts/other/x.nix": "x",                      # in no folder an import is in
    })
    (root / "hosts/a/folder.nix").mkdir()              # a folder, not a file
    texts = {"flake.nix": "flake", "hosts/a/default.nix": "entry", "hosts/a/gen.nix": "generated", "modules/m.nix": "m"}
    # hosts/_gone: a folder that does not exist (sorted before the others); hosts/a/missing.nix: a file that does not
    hand = ["hosts/a/hw.nix", "hosts/lib/common.nix", "hosts/_gone/hw.nix", "hosts/a/missing.nix"]
    with readback.staged(texts, root, hand) as tmp:
        got = {str(p.relative_to(tmp)): p.read_text() for p in Path(tmp).rglob("*") if p.is_file()}
        folders = sorted(str(p.relative_to(tmp)) for p in Path(tmp).rglob("*") if p.is_dir())
    assert got == {**texts, "hosts/a/hw.nix": "hw", "hosts/a/disks.nix": "disks", "hosts/lib/common.nix": "common"}
    assert folders == ["hosts", "hosts/_gone", "hosts/a", "hosts/lib", "modules"]
    assert not os.path.exists(tmp)


def test_hand_written_problems_name_an_import_that_is_a_symbolic_link_to_a_file_that_is_not_nix(nix, tmp_path):
    """nix names the file the link leads to (it follows the link to parse it): the problem still names the host's
    import (`homelab check` said "nix failed", exit 3, without naming the host)."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "hw.nix").write_text("{ broken")
    (tmp_path / "lab" / "hosts" / "a").mkdir(parents=True)
    (tmp_path / "lab" / "hosts" / "a" / "hw.nix").symlink_to("../../../elsewhere/hw.nix")
    compiled = lab(CLASH_FILES, {"a": ()}, {"a": ("hosts/a/hw.nix",)})
    with pytest.raises(NixEvalError) as e:
        nix.parse_files([tmp_path / "elsewhere" / "hw.nix"])
    assert readback.hand_written_problems(tmp_path / "lab", compiled, nix, ["a"], readback.precheck(compiled)) == [
        Problem("hosts/a", "imports", f"hw.nix is not valid Nix: {e.value.message}")]


def test_hand_written_problems_pass_on_a_nix_failure_that_names_no_imported_file(tmp_path):
    """nix failing for a reason of its own (out of memory, a broken store: no file of the lab named) is nix's error,
    raised as it came for the command to report, never a problem pinned on an import nor a crash.  The real nix
    here always names the file it could not parse, so a stand-in raises what such a failure raises."""
    write(tmp_path, {"hosts/a/hw.nix": "{ ... }: { }"})
    compiled = lab(CLASH_FILES, {"a": ()}, {"a": ("hosts/a/hw.nix",)})
    failure = NixEvalError("out of memory", key=None)

    class FailingNix:
        def parse_files(self, paths):
            raise failure

    with pytest.raises(NixEvalError) as e:
        readback.hand_written_problems(tmp_path, compiled, FailingNix(), ["a"], readback.precheck(compiled))
    assert e.value is failure


_boot_value = st.one_of(st.booleans(), st.builds(force, st.booleans(), st.sampled_from([50, 100, 1000])))
_boot_defs = st.lists(st.tuples(st.sampled_from([LOADER, ("boot", "isContainer")]), _boot_value), max_size=2,
                      unique_by=lambda d: d[0]).map(tuple)


@given(mods=st.fixed_dictionaries({m: _boot_defs for m in ("modules/m1.nix", "modules/m2.nix")}),
       hosts=st.lists(st.tuples(_boot_defs, st.lists(st.sampled_from(["modules/m1.nix", "modules/m2.nix"]),
                                                     unique=True).map(tuple)), min_size=1, max_size=4))
@settings(max_examples=60)
def test_boot_problems_with_shared_modules_worked_out_once_are_each_hosts(mods, hosts):
    names = [f"h{i}" for i in range(len(hosts))]
    files = {**mods, **{f"hosts/{n}/default.nix": defs for n, (defs, _) in zip(names, hosts)}}
    compiled = lab(files, {n: m for n, (_, m) in zip(names, hosts)}, {n: (f"hosts/{n}/hw.nix",) for n in names})
    pre = readback.precheck(compiled)
    boot = {f"hosts/{n}/hw.nix": boot_facts(root=[found(known=False)] if i % 2 else []) for i, n in enumerate(names)}
    shared: dict = {}
    assert [readback.boot_problems(compiled, pre, n, boot, shared) for n in names] == \
        [readback.boot_problems(compiled, pre, n, boot) for n in names]


_clash_defs = st.lists(st.tuples(st.sampled_from([FLAG_P, ALPHA, LINES, ATTRS]), st.booleans()), max_size=3,
                       unique_by=lambda d: d[0]).map(tuple)
_MODS = ("modules/m1.nix", "modules/m2.nix", "modules/m3.nix")


@given(mods=st.fixed_dictionaries({m: _clash_defs for m in _MODS}),
       hosts=st.lists(st.tuples(_clash_defs, st.lists(st.sampled_from(_MODS), unique=True).map(tuple),
                                st.sampled_from([(), ("hosts/shared.nix",), ("hosts/own.nix", "hosts/shared.nix")])),
                      min_size=1, max_size=4))
@settings(max_examples=60)
def test_clash_specs_with_module_sets_worked_out_once_are_each_hosts(mods, hosts):
    names = [f"h{i}" for i in range(len(hosts))]
    files = {**mods, **{f"hosts/{n}/default.nix": defs for n, (defs, _, _) in zip(names, hosts)}}
    compiled = lab(files, {n: m for n, (_, m, _) in zip(names, hosts)},
                   {n: tuple(h.replace("own", n) for h in hand) for n, (_, _, hand) in zip(names, hosts)})
    pre = readback.precheck(compiled)

    def slow_leaves(h):  # every file of the host flattened here, in its order, the paths that do not merge kept
        return [(path, value, rel, typ) for rel in compiled.files_of(h)
                for path, value in readback.flatten(pre.nested[rel], (), CH)
                if not readback._merges(typ := readback.option_type(path, CH))]

    slow_specs: dict = {}
    for n in names:
        for hand in compiled.hosts[n].hand_written:
            slow_specs.setdefault(hand, ([], set()))[0].append(n)
            slow_specs[hand][1].update(leaf[0] for leaf in slow_leaves(n))
    specs, host_leaves = readback.clash_specs(compiled, names, pre)
    assert specs == slow_specs
    assert [host_leaves(n) for n in names] == [slow_leaves(n) for n in names]
