"""The package's name on PyPI is not ``homelab`` (a 2019 smart home security platform holds it): every place
that tells a person what to ``pip install`` names pyproject.toml's distribution, and the command and the
import stay ``homelab``."""

from __future__ import annotations

import re
import tomllib

from homelab.about import DISTRIBUTION
from homelab.init import files_of

from .conftest import REPO

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def pip_installs(text: str) -> list[str]:
    """What each ``pip install ...`` in ``text`` installs (options left out)."""
    out = []
    for m in re.finditer(r"pip install((?: [^\s`),]+)+)", text):
        out += [w.strip("'\"") for w in m.group(1).split() if not w.startswith("-")]
    return out


def test_the_distribution_is_not_pypis_homelab_and_the_command_and_import_stay():
    name = PROJECT["project"]["name"]
    assert name == DISTRIBUTION == "nixos-homelab"
    assert PROJECT["project"]["scripts"] == {"homelab": "homelab.__main__:run"}
    assert PROJECT["tool"]["setuptools"]["packages"]["find"]["include"][0] == "homelab"


def test_what_the_lab_and_the_readme_say_to_install_is_pyprojects_name():
    name = PROJECT["project"]["name"]
    starter = files_of("starter")
    for where, text in (("starter README.md", starter["README.md"].read_text()),
                        ("starter ci.sh", starter["ci.sh"].read_text()),
                        ("README.md", (REPO / "README.md").read_text())):
        installs = pip_installs(text)
        assert installs, f"{where} says nothing about installing homelab"
        # a published name must be ours; else a path (a clone: `.`, `.[test]`)
        wrong = [w for w in installs if not (w.startswith(".") or re.fullmatch(rf"{re.escape(name)}(\[[\w,]+\])?", w))]
        assert wrong == [], f"{where} says to pip install {wrong}"
    assert pip_installs(starter["README.md"].read_text()).count(name) == 1
    assert pip_installs(starter["ci.sh"].read_text()) == [name]
