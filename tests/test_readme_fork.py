"""A fork that edits hosts/ keeps a green suite: the README's generated tables come from the frozen seed lab.

The repository's lab is copied, hosts/ edited the way a new owner would (another worker, their own pod range
and domain), and the README checks run on the copy; they pass, while the copy's own lab draws a different
diagram and policy table (so a check that read hosts/ would fail).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.readme_checks import SEED, blocks, readme_problems

REPO = Path(__file__).resolve().parent.parent

WORKER = '''from homelab import CephStorage, Host, Tailscale, Worker

host = Host(
    hostname="kusa",
    system="x86_64-linux",
    state_version="25.05",
    interface="enp1s0",
    address="192.168.10.13/24",
    tailscale_address="100.64.0.13",
    roles=[Worker(), CephStorage(), Tailscale()],
)
'''


def fork(tmp_path: Path) -> Path:
    dst = tmp_path / "fork"
    dst.mkdir()
    shutil.copy(REPO / "README.md", dst / "README.md")
    shutil.copytree(REPO / "hosts", dst / "hosts", ignore=shutil.ignore_patterns("default.nix", "lab.nix"))
    cluster = dst / "hosts" / "cluster.py"
    text = cluster.read_text()
    for old, new in (('pod_cidr="10.1.0.0/16"', 'pod_cidr="10.42.0.0/16"'),
                     ('domain="home.example.com"', 'domain="lab.example.org"')):
        assert old in text, old
        text = text.replace(old, new)
    cluster.write_text(text)
    (dst / "hosts" / "kusa").mkdir()
    (dst / "hosts" / "kusa" / "host.py").write_text(WORKER)
    return dst


def test_a_fork_that_edits_hosts_keeps_the_readme_checks_green(tmp_path):
    from homelab.load import load_or_raise

    dst = fork(tmp_path)
    lab = load_or_raise(dst)[0]
    assert [h.hostname for h in lab.hosts] == ["hanaakari", "kusa", "tokiwa", "yomogi"]
    assert (str(lab.cluster.pod_cidr), lab.cluster.domain) == ("10.42.0.0/16", "lab.example.org")
    own, seed = blocks(lab), blocks(load_or_raise(SEED)[0])
    assert own["diagram"][0] != seed["diagram"][0] and own["policy"][0] != seed["policy"][0]
    assert readme_problems(dst) == []
    for command in ("graph", "policy"):  # the commands the README names say the same
        r = subprocess.run([sys.executable, "-m", "homelab", command, "--check-readme", "--root", str(SEED),
                            "--readme", str(dst / "README.md")], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
    # what the suite checked before: the README against the lab in hosts/, which the fork's edits make fail
    r = subprocess.run([sys.executable, "-m", "homelab", "policy", "--check-readme", "--root", str(dst)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr


def test_a_stale_block_is_caught(tmp_path):
    dst = fork(tmp_path)
    from homelab import policy

    readme = dst / "README.md"
    text = readme.read_text()
    start = text.index(policy.README_START)
    row = text.index("| yomogi", start)  # a row of the policy table: its host renamed by hand
    readme.write_text(text[:row] + "| yomogl" + text[row + len("| yomogi"):])
    assert readme_problems(dst) == ["policy: out of date (python -m homelab policy --root homelab/examples/seed "
                                    "--update-readme --readme README.md)"]
