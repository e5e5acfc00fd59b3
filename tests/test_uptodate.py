"""A no-op ``homelab build`` is answered from the record of the last whole build, and only then.

Each test runs the real command (``python -m homelab``) on a scratch copy of the seed lab, with the
real nix behind a logging wrapper on PATH: the log says whether a build ran nix (the full pipeline)
or was answered from the record (no nix at all).  Every kind of change a build reads must send the
next build through the full pipeline; see homelab/uptodate.py for what is fingerprinted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from homelab import uptodate

from .conftest import REPO, SEED, copy_lab

ANSWERED = "nothing changed since the build of"


@pytest.fixture
def lab(tmp_path, nix):
    """(run, root): ``run(*args)`` -> (exit code, stdout, stderr, nix processes started)."""
    real = shutil.which("nix-instantiate")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "nix.log"
    wrapper = bindir / "nix-instantiate"
    wrapper.write_text(f'#!/bin/sh\necho call >> "{log}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    root = copy_lab(SEED, tmp_path / "lab")
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}", HOMELAB_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=str(REPO))

    def run(*args, cwd=root, extra_env=None):
        log.write_text("")
        r = subprocess.run([sys.executable, "-m", "homelab", *args], cwd=cwd, capture_output=True, text=True,
                           env=dict(env, **(extra_env or {})), timeout=120)
        return r.returncode, r.stdout, r.stderr, len(log.read_text().split())

    return run, root


def _full(result):
    rc, out, err, calls = result
    assert rc == 0, out + err
    assert calls >= 1 and ANSWERED not in out, out
    return out, err


def _answered(result):
    rc, out, err, calls = result
    assert rc == 0, out + err
    assert calls == 0 and ANSWERED in out, (calls, out)
    return out, err


def test_a_second_build_is_answered_without_nix_and_says_what_was_verified(lab):
    run, root = lab
    out1, err1 = _full(run("build"))
    assert out1.startswith("3 hosts: wrote 21, unchanged 0; nix read back 17 generated files")
    out2, err2 = _answered(run("build"))
    assert out2.startswith("3 hosts: wrote 0, unchanged 21; nothing changed since the build of ")
    assert out2.rstrip().endswith("which nix verified (17 generated files read back, 3 hand-written ones parsed)")
    assert err2 == err1 and "placeholder key" in err2  # the same warnings, replayed
    # --check prints the same line either way, and never runs nix: what shows it was answered is that the
    # model was never imported (Python's own import log)
    rc, out3, err3, calls = run("build", "--check", extra_env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert rc == 0 and out3 == "up to date: 3 hosts, generated files match their sources\n"
    assert "homelab.uptodate" in err3 and "homelab.model" not in err3
    rc, out4, err4, calls = run("build", "--check", "--root", str(root), extra_env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert rc == 0 and out4 == out3 and "homelab.model" not in err4
    (root / "hosts" / "tokiwa" / "host.py").touch()
    rc, out5, err5, calls = run("build", "--check", extra_env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert rc == 0 and out5 == out3 and "homelab.model" in err5  # changed: checked in full
    _full(run("build"))
    # from a host folder below the lab, as the CLI finds the lab
    _answered(run("build", cwd=root / "hosts" / "tokiwa"))


@pytest.mark.parametrize("change", [
    "host.py", "hand-written import", "new host folder", "removed generated file", "environment", "lab role code",
])
def test_a_change_to_anything_the_build_read_runs_the_full_build(lab, change):
    run, root = lab
    if change == "lab role code":
        (root / "lab_roles.py").write_text("X = 1\n")
        p = root / "hosts" / "tokiwa" / "host.py"
        p.write_text("import lab_roles  # noqa: F401\n" + p.read_text())
    _full(run("build"))
    _answered(run("build"))
    extra_env = None
    if change == "host.py":
        p = root / "hosts" / "tokiwa" / "host.py"
        p.write_text(p.read_text().replace('description="', 'description="(edited) ', 1))
    elif change == "hand-written import":
        p = root / "hosts" / "yomogi" / "hardware-configuration.nix"
        p.write_text(p.read_text() + "# a comment\n")
    elif change == "new host folder":
        (root / "hosts" / "spare").mkdir()
    elif change == "removed generated file":
        (root / "modules" / "k8s" / "ceph.nix").unlink()
    elif change == "environment":
        extra_env = {"NIX_CONFIG": "experimental-features = nix-command flakes\nwarn-dirty = false"}
    elif change == "lab role code":
        (root / "lab_roles.py").write_text("X = 2\n")
    out, _ = _full(run("build", extra_env=extra_env))
    if change == "removed generated file":
        assert "wrote 1," in out and "  wrote modules/k8s/ceph.nix" in out
    _answered(run("build", extra_env=extra_env))  # recorded again


def test_a_generated_file_edited_by_hand_is_found_not_answered(lab):
    run, root = lab
    _full(run("build"))
    p = root / "modules" / "k8s" / "ceph.nix"
    p.write_text(p.read_text().replace("1048576", "4096"))
    rc, out, err, calls = run("build")
    assert rc == 2 and "edited by hand" in err and ANSWERED not in out, out + err
    rc, out, err, calls = run("build", "--check")
    assert rc == 1 and "modules/k8s/ceph.nix" in out, out + err


def test_what_is_never_answered_from_the_record(lab, tmp_path):
    run, root = lab
    _full(run("build"))
    _full(run("build", "--no-cache"))  # in full when asked
    _answered(run("build"))  # and recorded again
    rc, out, err, calls = run("build", "hosts/tokiwa")  # a part of the lab: in full, and the record is dropped
    assert rc == 0 and calls >= 1 and ANSWERED not in out, out + err
    _full(run("build"))
    _full(run("build", "--force"))  # options other than --root and --check
    rc, out, err, calls = run("show", "hosts/tokiwa", "--json")  # other commands
    assert rc == 0 and calls == 1 and json.loads(out)["networking.hostName"] == "tokiwa"
    rc, out, err, calls = run("build", "--no-verify")
    assert rc == 0 and calls == 0 and "NOT verified" in out  # written unverified: nothing recorded
    _full(run("build"))
    # a damaged record is no record
    (record,) = (tmp_path / "cache" / "builds").iterdir()
    record.write_text("{not json")
    _full(run("build"))


def test_the_fingerprint_sees_each_kind_of_input(tmp_path):
    """The function itself: files, folders' entries, extra files and the environment each change it."""
    root = tmp_path / "lab"
    (root / "hosts" / "a").mkdir(parents=True)
    (root / "hosts" / "a" / "host.py").write_text("x")
    (root / "modules").mkdir()
    extra = tmp_path / "code.py"
    extra.write_text("y")
    first = uptodate.fingerprint(str(root), [str(extra)])
    assert uptodate.fingerprint(str(root), [str(extra)]) == first
    (root / "hosts" / "a" / "__pycache__").mkdir()  # Python's own byte-code cache is not an input
    assert uptodate.fingerprint(str(root), [str(extra)]) == first
    seen = {first}
    for step in ("file", "folder", "extra", "env"):
        if step == "file":
            (root / "hosts" / "a" / "host.py").write_text("z")  # same size, new content
        elif step == "folder":
            (root / "modules" / "k8s").mkdir()
        elif step == "extra":
            extra.write_text("yy")
        else:
            os.environ["HOMELAB_SOMETHING"] = "1"
        try:
            now = uptodate.fingerprint(str(root), [str(extra)])
        finally:
            os.environ.pop("HOMELAB_SOMETHING", None)
        assert now not in seen, step
        seen.add(now)


def test_an_edit_that_keeps_size_and_times_is_a_change(tmp_path):
    """host.py rewritten in place with the same size, its mtime set back, within one tick of the file system's
    clock (so ctime and inode stay too): every stat field is the same, the content is not."""
    root = tmp_path / "lab"
    (root / "hosts" / "a").mkdir(parents=True)
    (root / "modules").mkdir()
    host = root / "hosts" / "a" / "host.py"
    for _ in range(200):
        host.write_text("roles=[Worker()]")
        before = uptodate.fingerprint(str(root), [])
        st = os.stat(host)
        host.write_text("roles=[Ingress()]"[:16])  # same length
        os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns))
        after = os.stat(host)
        if (after.st_size, after.st_mtime_ns, after.st_ctime_ns, after.st_ino) == (
                st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino):
            assert uptodate.fingerprint(str(root), []) != before
            return
    pytest.skip("this kernel's file system clock gives every write its own ctime (multigrain timestamps): the "
                "stat fields cannot be kept here; test_the_fingerprint_holds_each_files_content covers the content")


def test_the_fingerprint_holds_each_files_content(tmp_path):
    """What the no-op compares holds each lab file's content hash (a link's: the file it leads to), so two trees
    alike in every stat field but one file's bytes fingerprint apart."""
    import hashlib

    root = tmp_path / "lab"
    (root / "hosts" / "a").mkdir(parents=True)
    (root / "hosts" / "a" / "host.py").write_text("roles=[Worker()]")
    (root / "hosts" / "b").mkdir()
    (root / "hosts" / "b" / "host.py").symlink_to("../a/host.py")
    items: list = []
    uptodate._tree(str(root / "hosts"), items)
    digest = hashlib.sha256(b"roles=[Worker()]").hexdigest()
    files = {item[0].removeprefix(str(root) + "/"): item for item in items if item[1] != "folder"}
    assert files["hosts/a/host.py"][-1] == [digest]
    assert files["hosts/b/host.py"][5:7] == ["->", "../a/host.py"] and files["hosts/b/host.py"][-1] == [digest]


def test_a_host_py_that_is_a_link_is_followed(tmp_path):
    """hosts/a/host.py -> ../../shared/worker.py: an edit of the file it leads to (outside hosts/) is a change,
    and so is pointing the link elsewhere; a linked folder is walked."""
    root = tmp_path / "lab"
    (root / "hosts" / "a").mkdir(parents=True)
    (root / "modules").mkdir()
    (root / "shared").mkdir()
    target = root / "shared" / "worker.py"
    target.write_text("one")
    (root / "hosts" / "a" / "host.py").symlink_to("../../shared/worker.py")
    seen = {uptodate.fingerprint(str(root), [])}
    target.write_text("two!")
    seen.add(uptodate.fingerprint(str(root), []))
    other = root / "shared" / "other.py"
    other.write_text("two!")
    (root / "hosts" / "a" / "host.py").unlink()
    (root / "hosts" / "a" / "host.py").symlink_to("../../shared/other.py")
    seen.add(uptodate.fingerprint(str(root), []))
    (root / "elsewhere" / "b").mkdir(parents=True)
    (root / "elsewhere" / "b" / "host.py").write_text("b")
    (root / "hosts" / "b").symlink_to("../elsewhere/b")
    seen.add(uptodate.fingerprint(str(root), []))
    (root / "elsewhere" / "b" / "host.py").write_text("c")
    seen.add(uptodate.fingerprint(str(root), []))
    assert len(seen) == 5


def test_a_linked_host_py_edited_runs_the_full_build(lab):
    """The real command: a host.py that is a link to a file outside hosts/, edited after a build."""
    run, root = lab
    host = root / "hosts" / "tokiwa" / "host.py"
    (root / "shared").mkdir()
    shutil.move(host, root / "shared" / "tokiwa.py")
    host.symlink_to("../../shared/tokiwa.py")
    _full(run("build"))
    _answered(run("build"))
    text = (root / "shared" / "tokiwa.py").read_text()
    (root / "shared" / "tokiwa.py").write_text(text.replace('description=', 'description="x" and ', 1)
                                               if 'description=' in text else text + "\n# edited\n")
    _full(run("build"))
