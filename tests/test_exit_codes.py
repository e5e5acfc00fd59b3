"""One table of exit codes for every command, and what a crash looks like.

A crash (an exception homelab did not expect) is planted in-process with monkeypatch in the function every
command calls, and must come out as exit 70 with one line saying it is a homelab bug, the traceback only
under ``--debug``; Ctrl-C is 130.  The table in ``--help`` and in the README must be the one in
``homelab.cli``.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from homelab import cli
from homelab.cli import EXIT_CODES, EXIT_CRASH, EXIT_INTERRUPTED, main

REPO = Path(__file__).resolve().parent.parent


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def commands(root: Path) -> list[list[str]]:
    return [["build", "--root", str(root)], ["build", "--check", "--root", str(root)], ["check", "--root", str(root)],
            ["check", "--json", "--root", str(root)], ["show", "--root", str(root)], ["plan", "--root", str(root)],
            ["graph", "--root", str(root)], ["expect", "--root", str(root)],
            ["vm", str(root / "hosts/tokiwa"), "--dry-run", "--suite", str(REPO / "vm-tests")]]


def _plant(monkeypatch, exc: BaseException) -> None:
    """Every command loads the lab through homelab.load.load: make it raise ``exc``."""
    import homelab.load

    def boom(root, **kw):
        raise exc

    monkeypatch.setattr(homelab.load, "load", boom)


def test_a_crash_in_any_command_is_exit_70_with_one_line(lab_copy, monkeypatch):
    _plant(monkeypatch, ZeroDivisionError("planted"))
    for argv in commands(lab_copy):
        rc, out, err = run(*argv)
        assert rc == EXIT_CRASH == 70, (argv, rc, err)
        lines = err.strip().splitlines()
        assert lines == ["homelab: crashed (ZeroDivisionError: planted); this is a homelab bug, please report it. "
                         "Run again with --debug to see the traceback."], (argv, err)


def test_debug_shows_the_traceback_of_a_crash(lab_copy, monkeypatch):
    _plant(monkeypatch, KeyError("planted"))
    rc, out, err = run("--debug", "check", "--root", str(lab_copy))
    assert rc == 70
    assert err.startswith("Traceback (most recent call last):") and "KeyError: 'planted'" in err
    assert "in boom" in err  # the planted frame: the real traceback, not a summary


def test_a_crash_never_passes_for_another_exit_code(lab_copy, monkeypatch):
    """Not 0 (done), 1 (out of date), 2 (your mistake) nor 3 (nix disagrees): a RecursionError, a TypeError
    and an OSError from inside homelab are all crashes."""
    for exc in (RecursionError("deep"), TypeError("planted"), OSError(5, "planted")):
        _plant(monkeypatch, exc)
        rc, _, err = run("build", "--root", str(lab_copy))
        assert rc == 70, (exc, err)
        assert "this is a homelab bug" in err


def test_ctrl_c_is_130(lab_copy, monkeypatch):
    _plant(monkeypatch, KeyboardInterrupt())
    rc, out, err = run("check", "--root", str(lab_copy))
    assert (rc, err.strip()) == (EXIT_INTERRUPTED, "homelab: interrupted")


def _table(text: str) -> dict[int, str]:
    return {int(m.group(1)): m.group(2).strip() for m in re.finditer(r"^\s+(\d+)\s{2}(.+)$", text, re.M)}


@pytest.mark.parametrize("command", [None, *cli.COMMANDS])
def test_help_lists_the_one_exit_code_table(command, capsys):
    """``homelab --help``: the whole table; a command's: its own codes, each one of the table's
    (tests/test_cli_conveniences.py checks which)."""
    with pytest.raises(SystemExit):
        main(["--help"] if command is None else [command, "--help"])
    out = capsys.readouterr().out
    table = _table(out[out.index("exit codes:"):])
    whole = {code: " ".join(what.split()) for code, what in EXIT_CODES}
    if command is None:
        assert table == whole
    else:
        assert set(table) <= set(whole) and {0, 70, 130} <= set(table)


def test_the_readme_lists_the_same_table():
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("\n| code | meaning |\n"):]
    table = table[:table.index("\n\n")]  # the table ends at the first blank line (other tables hold numbers too)
    rows = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", table, re.M))
    assert {int(k): v for k, v in rows.items()} == {code: what for code, what in EXIT_CODES}
    assert set(rows) >= {"0", "1", "2", "3", "4", "70", "130"}


def test_nix_refusing_generated_code_is_exit_3_naming_the_lab_file_not_the_staging_copy(lab_copy, nix, monkeypatch):
    """A planted homelab bug: one generated text that is not Nix.  nix refuses it while reading the staged
    copy; the message names modules/k8s/ceph.nix, never the temporary folder."""
    from homelab import build

    texts = build.Prepared.texts

    def broken(self, only=None):
        out = texts(self, only)
        out["modules/k8s/ceph.nix"] = out["modules/k8s/ceph.nix"].replace('"ceph"', '"ceph" =', 1)
        return out

    monkeypatch.setattr(build.Prepared, "texts", broken)
    rc, out, err = run("build", "--root", str(lab_copy))
    assert rc == 3, err
    assert "modules/k8s/ceph.nix" in err
    assert "homelab-verify-" not in err and "/dev/shm" not in err and "/tmp/" not in err, err
