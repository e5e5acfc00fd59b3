"""The stand-in ``pkgs`` the read-back evaluates the generated files with (nixpkgs is not here).

Offline, homelab cannot know which names nixpkgs has, nor whether ``pkgs.<name>`` is a package or a
function: NixOS judges that (``homelab check --nixos``).  The stand-in must therefore read back every
use the lab makes of a name, through the real CLI and the real nix, and never refuse one itself (it did:
a name both used and called, or a name below a called function, made nix fail and the build exit 3,
homelab's own bug).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
T = "hosts/tokiwa/host.py"

PACKAGES = ('[Pkg("nosuchpackage"), Pkg("fetchurl"), PkgCall("fetchurl", {"url": "https://example.com/a.tar.gz"}), '
            'PkgCall("buildEnv", {"name": "tools", "paths": [Pkg("htop")]}), '
            'PkgCall("buildEnv.override", {"ignoreCollisions": True}), Pkg("buildEnv.meta")]')


def homelab(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "homelab", *args], cwd=root, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_every_use_of_a_package_name_is_read_back_and_left_to_nixos(lab_copy: Path, nix):
    p = lab_copy / T
    text = p.read_text()
    old = '"services.openssh.enable": True'
    assert text.count(old) == 1
    p.write_text("from homelab import Pkg, PkgCall\n" + text.replace(
        old, f'{old}, "environment.systemPackages": {PACKAGES}'))
    r = homelab(lab_copy, "build")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "nix failed" not in r.stderr
    r = homelab(lab_copy, "show", "hosts/tokiwa", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["environment.systemPackages"] == [
        {"_type": "pkg", "attrPath": "nosuchpackage"},
        {"_type": "pkg", "attrPath": "fetchurl"},
        {"_type": "pkg-call", "function": "fetchurl", "args": {"url": "https://example.com/a.tar.gz"}},
        {"_type": "pkg-call", "function": "buildEnv",
         "args": {"name": "tools", "paths": [{"_type": "pkg", "attrPath": "htop"}]}},
        {"_type": "pkg-call", "function": "buildEnv.override", "args": {"ignoreCollisions": True}},
        {"_type": "pkg", "attrPath": "buildEnv.meta"},
    ]
