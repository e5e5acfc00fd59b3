"""A reader that stops early (``homelab show | head -1``) ends a command quietly, as with other CLIs.

Each read command runs as a real process in a real shell pipeline, several times, with and without
``--json``: once with ``head -1`` (which closes the pipe after the first line, while homelab may still be
writing) and once with ``true`` (which closes it before homelab writes anything, so every run hits the
closed pipe).  stderr must be empty of tracebacks and "Exception ignored" noise, and the exit code is 0 (the
reader chose to stop; nothing went wrong in the lab).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

READ_COMMANDS = [["show"], ["show", "--json"], ["expect"], ["expect", "--json"], ["plan"], ["plan", "--json"],
                 ["graph"], ["graph", "--json"], ["graph", "--format", "table"], ["check", "--json"]]
RUNS = 3


@pytest.mark.parametrize("argv", READ_COMMANDS, ids=" ".join)
def test_a_closed_stdout_ends_the_command_quietly(lab_copy, nix, argv):
    cmd = " ".join([sys.executable, "-m", "homelab", *argv])
    for reader in ["head -1"] * RUNS + ["true"] * RUNS:
        script = f'{cmd} 2>err.txt | {reader} >/dev/null; echo "rc=${{PIPESTATUS[0]}}"'
        r = subprocess.run(["bash", "-c", script], cwd=lab_copy, capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
        err = (lab_copy / "err.txt").read_text()
        assert r.stdout.strip() == "rc=0", f"{cmd} | {reader}: {r.stdout}\n{err}"
        assert "Traceback" not in err and "Exception ignored" not in err and "BrokenPipe" not in err, err


def test_the_whole_output_still_arrives_when_it_is_read(lab_copy, nix):
    """Positive control: the pipeline reads everything when the reader does (the handling hides no output)."""
    r = subprocess.run(["bash", "-c", f"{sys.executable} -m homelab expect --json | wc -c"], cwd=lab_copy,
                       capture_output=True, text=True, timeout=120)
    direct = subprocess.run([sys.executable, "-m", "homelab", "expect", "--json"], cwd=lab_copy,
                            capture_output=True, text=True, timeout=120)
    assert int(r.stdout.strip()) == len(direct.stdout.encode()) > 1000
