"""The no-op build's record (homelab/uptodate.py), in-process: where it lives, what it holds, when ``answer`` prints
it (only when every input of the build is unchanged) and what it prints, and ``forget``.

No nix and no subprocess: ``answer``, ``save`` and ``lookup`` are called directly on a scratch lab, with the cache in
a scratch folder, so each test takes milliseconds.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import sys
import types
from pathlib import Path

import pytest

from homelab import uptodate

CHECK = "up to date: a, generated files match their sources"
BUILD = "a: wrote 0, unchanged 3; nothing changed since the build of {when}, which nix verified"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("HOMELAB_CACHE_DIR", str(path))
    return path


@pytest.fixture
def lab(tmp_path, cache, monkeypatch) -> Path:
    """A lab (hosts/cluster.py, one host, a generated file) and a hand-written file outside it; the current folder
    is outside the lab, so only ``--root`` finds it."""
    root = tmp_path / "lab"
    (root / "hosts" / "a").mkdir(parents=True)
    (root / "hosts" / "cluster.py").write_text("cluster = 1\n")
    (root / "hosts" / "a" / "host.py").write_text("roles = []\n")
    (root / "modules").mkdir()
    (root / "modules" / "a.nix").write_text("{ }\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return root


def key(root: Path) -> str:
    return hashlib.sha256(os.path.realpath(root).encode()).hexdigest()[:32]


def save(root: Path, extra: list[str] | None = None, warnings: list[str] | None = None, build: str = BUILD) -> None:
    uptodate.save(str(root), extra or [], check_line=CHECK, build_line=build, warnings=warnings or [])


def answered(capsys, *argv: str):
    """(exit code or None, stdout, stderr) of ``answer(["build", *argv])``."""
    rc = uptodate.answer(["build", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def not_answered(capsys, root: Path) -> None:
    assert answered(capsys, "--root", str(root)) == (None, "", "")
    assert uptodate.lookup(str(root)) is None


# ---------------------------------------------------------------- where the record lives


def test_the_cache_folder_is_homelab_cache_dir_else_xdg_cache_home_else_home_dot_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOMELAB_CACHE_DIR", str(tmp_path / "explicit"))
    assert uptodate.cache_dir() == str(tmp_path / "explicit")
    monkeypatch.setenv("HOMELAB_CACHE_DIR", "")  # empty: not set
    assert uptodate.cache_dir() == str(tmp_path / "xdg" / "homelab")
    monkeypatch.delenv("HOMELAB_CACHE_DIR")
    assert uptodate.cache_dir() == str(tmp_path / "xdg" / "homelab")
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    assert uptodate.cache_dir() == str(tmp_path / "home" / ".cache" / "homelab")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert uptodate.cache_dir() == str(tmp_path / "home" / ".cache" / "homelab")


def test_the_record_of_a_lab_is_one_file_named_for_its_real_folder(lab, cache, tmp_path):
    link = tmp_path / "link-to-lab"
    link.symlink_to(lab)
    expected = str(cache / "builds" / f"{key(lab)}.json")
    assert len(key(lab)) == 32
    assert uptodate.record_path(str(lab)) == expected
    assert uptodate.record_path(str(link)) == expected  # the same lab, reached through a link
    assert uptodate.record_path(str(tmp_path / "other")) != expected


# ---------------------------------------------------------------- what it holds


def test_a_saved_record_holds_exactly_the_build_its_lines_and_when(lab, cache, tmp_path):
    hand = tmp_path / "hand.nix"
    hand.write_text("{ }\n")
    old = os.umask(0o022)
    try:
        # whole seconds, and strftime's clock (C time(), a coarse clock) may lag datetime's by a few milliseconds
        second = datetime.timedelta(seconds=1)
        before = (datetime.datetime.now() - second).replace(microsecond=0)
        save(lab, extra=[str(hand)], warnings=["warning: one", "warning: two"])
        after = datetime.datetime.now() + second
    finally:
        os.umask(old)
    builds = cache / "builds"
    assert sorted(os.listdir(builds)) == [f"{key(lab)}.json"]  # no temporary file left behind
    assert os.stat(builds).st_mode & 0o777 == 0o700
    record = json.loads((builds / f"{key(lab)}.json").read_text(encoding="utf-8"))
    when = record.pop("when")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", when), when
    assert before <= datetime.datetime.strptime(when, "%Y-%m-%d %H:%M:%S") <= after, (before, when, after)
    assert record == {"version": uptodate.VERSION, "root": os.path.realpath(lab), "extra": [str(hand)],
                      "fingerprint": uptodate.fingerprint(str(lab), [str(hand)]),
                      "check": CHECK, "build": BUILD, "warnings": ["warning: one", "warning: two"]}
    assert uptodate.lookup(str(lab)) == dict(record, when=when)


def test_a_lab_reached_through_a_link_is_recorded_under_its_real_folder(lab, tmp_path):
    link = tmp_path / "link-to-lab"
    link.symlink_to(lab)
    save(link)
    record = uptodate.lookup(str(lab))
    assert record is not None and record["root"] == os.path.realpath(lab)
    assert uptodate.lookup(str(link)) == record


def test_a_new_save_replaces_the_record(lab, cache):
    save(lab, build="first {when}")
    save(lab, build="second {when}")
    assert uptodate.lookup(str(lab))["build"] == "second {when}"
    assert sorted(os.listdir(cache / "builds")) == [f"{key(lab)}.json"]


def test_no_writable_cache_means_no_record_and_no_error(lab, tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("HOMELAB_CACHE_DIR", str(tmp_path / "a-file" / "cache"))
    save(lab)
    assert uptodate.lookup(str(lab)) is None


def test_forget_removes_the_record_and_forgetting_twice_is_fine(lab):
    save(lab)
    path = uptodate.record_path(str(lab))
    assert os.path.isfile(path)
    uptodate.forget(str(lab))
    assert not os.path.exists(path)
    assert uptodate.lookup(str(lab)) is None
    uptodate.forget(str(lab))


# ---------------------------------------------------------------- which records hold


def _write_record(lab: Path, **changes) -> None:
    path = uptodate.record_path(str(lab))
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    record.update(changes)
    Path(path).write_text(json.dumps(record), encoding="utf-8")


def test_a_record_of_another_version_folder_or_form_does_not_hold(lab, tmp_path):
    hand = tmp_path / "hand.nix"
    hand.write_text("{ }\n")
    save(lab, extra=[str(hand)])
    assert uptodate.lookup(str(lab)) is not None
    fp = uptodate.fingerprint(str(lab), [str(hand)])
    for changes in ({"version": uptodate.VERSION + 1},
                    {"root": str(tmp_path / "other")},
                    {"extra": "abc", "fingerprint": uptodate.fingerprint(str(lab), ["a", "b", "c"])},
                    {"extra": {str(hand): 1}},
                    {"fingerprint": "0" * 64}):
        _write_record(lab, version=uptodate.VERSION, root=os.path.realpath(lab), extra=[str(hand)], fingerprint=fp)
        assert uptodate.lookup(str(lab)) is not None
        _write_record(lab, **changes)
        assert uptodate.lookup(str(lab)) is None, changes
    for text in ("not json", "[1, 2]", '{"version": 1, "root": null, "extra": [], "fingerprint": null}', ""):
        Path(uptodate.record_path(str(lab))).write_text(text, encoding="utf-8")
        assert uptodate.lookup(str(lab)) is None, text


def test_a_record_is_looked_up_only_for_its_own_lab(lab, tmp_path):
    save(lab)
    other = tmp_path / "other"
    (other / "hosts").mkdir(parents=True)
    assert uptodate.lookup(str(other)) is None


# ---------------------------------------------------------------- answer: what it prints


def test_build_prints_the_recorded_build_line_with_its_time_and_the_warnings_on_stderr(lab, capsys):
    save(lab, warnings=["warning: one", "warning: two"])
    when = uptodate.lookup(str(lab))["when"]
    line = BUILD.replace("{when}", when) + "\n"
    for argv in (("--root", str(lab)), (f"--root={lab}",), ("-q", "--root", str(lab)), ("--root", str(lab), "--quiet")):
        assert answered(capsys, *argv) == (0, line, "warning: one\nwarning: two\n"), argv


def test_build_check_prints_the_recorded_check_line(lab, capsys):
    save(lab)
    for argv in (("--check", "--root", str(lab)), ("--root", str(lab), "--check"), (f"--root={lab}", "-q", "--check")):
        assert answered(capsys, *argv) == (0, CHECK + "\n", ""), argv


def test_build_finds_the_lab_upward_from_the_current_folder(lab, capsys, monkeypatch):
    save(lab)
    monkeypatch.chdir(lab / "hosts" / "a")
    assert answered(capsys, "--check") == (0, CHECK + "\n", "")


def test_a_root_with_an_equals_sign_in_its_name(tmp_path, cache, capsys, monkeypatch):
    root = tmp_path / "lab=one"
    (root / "hosts").mkdir(parents=True)
    (root / "hosts" / "cluster.py").write_text("")
    monkeypatch.chdir(tmp_path)
    save(root)
    assert answered(capsys, f"--root={root}", "--check") == (0, CHECK + "\n", "")


def test_only_build_and_its_own_options_are_answered(lab, capsys, monkeypatch):
    save(lab)
    monkeypatch.chdir(lab)  # the lab is found from here too
    assert answered(capsys) == (0, BUILD.replace("{when}", uptodate.lookup(str(lab))["when"]) + "\n", "")
    for argv in ([], ["check"], ["deploy", "--root", str(lab)], ["BUILD"], ["--check", "build"]):
        assert uptodate.answer(argv) is None, argv
    for extra in (["--check", "--check"], ["--root"], ["--bogus"], ["--root", str(lab), "--root", str(lab)],
                  [f"--root={lab}", f"--root={lab}"], ["--root", str(lab), f"--root={lab}"], ["a"], ["-Q"],
                  ["--no-cache"], ["--CHECK"], ["--ROOT", str(lab)], [f"--ROOT={lab}"]):
        assert answered(capsys, *extra) == (None, "", ""), extra


def test_no_lab_no_record_no_answer(lab, tmp_path, capsys):
    assert answered(capsys) == (None, "", "")  # the current folder is in no lab
    assert answered(capsys, "--root", str(lab)) == (None, "", "")  # a lab never built


# ---------------------------------------------------------------- answer: only when nothing changed


def test_an_edit_keeping_size_and_times_is_not_answered(lab, capsys):
    host = lab / "hosts" / "a" / "host.py"
    save(lab)
    st = os.stat(host)
    host.write_text("roles = {}\n")  # same size
    os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(host).st_size == st.st_size and os.stat(host).st_mtime_ns == st.st_mtime_ns
    not_answered(capsys, lab)


def test_a_linked_host_py_edited_or_pointed_elsewhere_is_not_answered(lab, tmp_path, capsys):
    host = lab / "hosts" / "a" / "host.py"
    for name in ("one.py", "two.py"):
        (tmp_path / name).write_text("roles = []\n")
    host.unlink()
    host.symlink_to(tmp_path / "one.py")
    save(lab)
    assert uptodate.lookup(str(lab)) is not None
    (tmp_path / "one.py").write_text("roles = {}\n")  # the file it leads to, same size
    not_answered(capsys, lab)
    save(lab)
    host.unlink()
    host.symlink_to(tmp_path / "two.py")  # same content elsewhere
    not_answered(capsys, lab)


def test_a_changed_homelab_source_is_not_answered(lab, tmp_path, capsys, monkeypatch):
    """``loaded_code`` (the files of the modules this process ran) is what the CLI records beside the lab."""
    source = tmp_path / "fake_role.py"
    source.write_text("X = 1\n")
    module = types.ModuleType("homelab_fake_role")
    module.__file__ = str(source)
    monkeypatch.setitem(sys.modules, "homelab_fake_role", module)
    save(lab, extra=uptodate.loaded_code())
    assert answered(capsys, "--root", str(lab))[0] == 0
    source.write_text("X = 22\n")
    not_answered(capsys, lab)


def test_a_changed_environment_variable_the_build_reads_is_not_answered(lab, capsys, monkeypatch):
    monkeypatch.setenv("TERM", "before")
    save(lab)
    monkeypatch.setenv("TERM", "after")  # not read by a build
    assert answered(capsys, "--root", str(lab))[0] == 0
    for name in ("HOMELAB_ROLE_PATH", "NIX_PATH", "PATH", "PYTHONPATH"):
        save(lab)
        monkeypatch.setenv(name, os.environ.get(name, "") + ":/changed")
        not_answered(capsys, lab)


def test_a_new_generated_file_is_not_answered(lab, capsys):
    save(lab)
    (lab / "modules" / "b.nix").write_text("{ }\n")
    not_answered(capsys, lab)


# ---------------------------------------------------------------- loaded_code


def test_loaded_code_is_every_loaded_module_file_absolute_sorted_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "fake_relative", types.SimpleNamespace(__file__="rel/fake.py"))
    monkeypatch.setitem(sys.modules, "fake_again", types.SimpleNamespace(__file__=str(tmp_path / "rel" / "fake.py")))
    monkeypatch.setitem(sys.modules, "fake_none", types.SimpleNamespace(__file__=None))
    monkeypatch.setitem(sys.modules, "fake_without", types.SimpleNamespace())
    uptodate.loaded_code()  # anything a first call imports (a coverage or mutation tool's hook) is loaded now
    code = uptodate.loaded_code()
    assert code == sorted(set(code))
    assert all(isinstance(f, str) and os.path.isabs(f) for f in code)
    assert code.count(str(tmp_path / "rel" / "fake.py")) == 1
    assert {os.path.abspath(uptodate.__file__), os.path.abspath(json.__file__)} <= set(code)
    assert not any(f.endswith("rel/fake.py") and f != str(tmp_path / "rel" / "fake.py") for f in code)
    expected = sorted({os.path.abspath(m.__file__) for m in list(sys.modules.values())
                       if getattr(m, "__file__", None)})
    assert code == expected


# ---------------------------------------------------------------- _lab_root


def test_the_lab_root_is_the_given_folder_resolved_or_the_nearest_one_holding_hosts_cluster_py(lab, tmp_path,
                                                                                                monkeypatch):
    link = tmp_path / "link-to-lab"
    link.symlink_to(lab)
    real = os.path.realpath(lab)
    assert uptodate._lab_root(str(link)) == real
    assert uptodate._lab_root(str(tmp_path / "not-a-lab")) == str(tmp_path / "not-a-lab")  # --root is taken as given
    monkeypatch.chdir(lab / "hosts" / "a")
    assert uptodate._lab_root(None) == real
    monkeypatch.chdir(link / "hosts")
    assert uptodate._lab_root(None) == real
    monkeypatch.chdir(lab)
    assert uptodate._lab_root(None) == real
    (lab / "hosts" / "a" / "cluster.py").write_text("")  # hosts/a/cluster.py: not hosts/a/hosts/cluster.py
    monkeypatch.chdir(lab / "hosts" / "a")
    assert uptodate._lab_root(None) == real
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert uptodate._lab_root(None) is None
    (tmp_path / "folder" / "hosts" / "cluster.py").mkdir(parents=True)  # a folder, not the file
    monkeypatch.chdir(tmp_path / "folder")
    assert uptodate._lab_root(None) is None
