"""``homelab completion bash|zsh|fish``: scripts generated from the command line's parser, run by the real shells.

bash is always there: the script is sourced and its function called the way bash's programmable completion
calls it (COMP_WORDS, COMP_CWORD), and COMPREPLY is compared with what the parser says.  fish answers
``complete -C`` for real; zsh (when installed) must at least parse the script.  A shell that is not
installed is skipped, saying so.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from homelab.cli import COMMANDS, build_parser, main

from .conftest import REPO


def script(shell: str) -> str:
    r = subprocess.run([sys.executable, "-m", "homelab", "completion", shell], capture_output=True, text=True,
                       timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert r.returncode == 0 and r.stderr == "", r.stderr
    return r.stdout


def options_of(command: str) -> set[str]:
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    return {o for a in sub.choices[command]._actions for o in a.option_strings}


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory):
    path = tmp_path_factory.mktemp("completion") / "homelab.bash"
    path.write_text(script("bash"))
    return path


@pytest.fixture
def lab(tmp_path):
    """A folder that holds a lab (hosts/cluster.py and two hosts), and a folder that is not a host."""
    for rel in ("hosts/cluster.py", "hosts/nas/host.py", "hosts/pi1/host.py", "hosts/notes/README"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    (tmp_path / "hosts" / "pi1" / "deep").mkdir()
    return tmp_path


def complete_bash(bash_script, words: list[str], cwd) -> list[str]:
    """COMPREPLY for the command line ``words`` (the last one being completed)."""
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c",
                        f"source {bash_script}; COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; _homelab; "
                        "printf '%s\\n' \"${COMPREPLY[@]}\""],
                       cwd=cwd, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return [ln for ln in r.stdout.splitlines() if ln]


def test_bash_completes_commands_options_choices_and_the_labs_host_names(bash_script, lab):
    assert set(complete_bash(bash_script, ["homelab", ""], lab)) == set(COMMANDS)
    assert complete_bash(bash_script, ["homelab", "ve"], lab) == ["verify"]
    assert set(complete_bash(bash_script, ["homelab", "deploy", "--"], lab)) == {
        o for o in options_of("deploy") if o.startswith("--")}
    assert complete_bash(bash_script, ["homelab", "verify", "--scope", ""], lab) == ["host", "cluster"]
    assert complete_bash(bash_script, ["homelab", "completion", ""], lab) == ["bash", "zsh", "fish"]
    # host names: the folders of the lab's hosts/ holding a host.py, found from a folder inside the lab too
    assert complete_bash(bash_script, ["homelab", "build", ""], lab) == ["nas", "pi1"]
    assert complete_bash(bash_script, ["homelab", "--quiet", "build", "p"], lab / "hosts" / "pi1" / "deep") == ["pi1"]
    assert complete_bash(bash_script, ["homelab", "build", ""], lab.parent) == []  # no lab there


def test_every_command_and_option_of_the_parser_is_in_each_script():
    """Generated from the parser: nothing to keep in step by hand."""
    for shell in ("bash", "zsh", "fish"):
        text = script(shell)
        for name in COMMANDS:
            assert name in text, (shell, name)
            for opt in options_of(name):
                assert (opt.lstrip("-") if shell == "fish" else opt) in text, (shell, name, opt)


def test_fish_completes_for_real(lab):
    if shutil.which("fish") is None:
        pytest.skip("fish is not installed (Debian: apt-get install fish)")
    path = lab / "homelab.fish"
    path.write_text(script("fish"))

    def complete(line: str) -> list[str]:
        r = subprocess.run(["fish", "--no-config", "-c", f"source {path}; complete -C {line!r}"], cwd=lab,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return [ln.split("\t")[0] for ln in r.stdout.splitlines()]

    assert complete("homelab ve") == ["verify"]
    assert complete("homelab build ") == ["nas", "pi1"]
    assert complete("homelab verify --scope ") == ["cluster", "host"]
    assert set(complete("homelab sleep --")) == {o for o in options_of("sleep") if o.startswith("--")}


def test_zsh_reads_the_script(tmp_path):
    if shutil.which("zsh") is None:
        pytest.skip("zsh is not installed (Debian: apt-get install zsh)")
    path = tmp_path / "_homelab"
    path.write_text(script("zsh"))
    r = subprocess.run(["zsh", "-n", str(path)], capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stderr) == (0, "")
    assert path.read_text().startswith("#compdef homelab\n")


def test_an_unknown_shell_is_a_usage_mistake(capsys):
    with pytest.raises(SystemExit) as e:
        main(["completion", "tcsh"])
    assert e.value.code == 2
    assert "invalid choice: 'tcsh'" in capsys.readouterr().err
