"""A small lab folder for the secrets tests: throwaway ssh-ed25519 keys made with the real ssh-keygen.

``make(tmp)`` writes hosts/cluster.py whose admin key is a fresh key (its private half in ``keys/admin``), and
three hosts (``alpha`` control plane, ``beta`` and ``gamma`` workers) with Tailscale asking for
``Secret("tailscale-auth-key")`` on alpha and beta; each host's public host key is in the lab and its private
half in ``keys/<host>`` (outside the lab), the way the machine would hold it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import REPO

HOSTS = {"alpha": "192.168.20.10", "beta": "192.168.20.11", "gamma": "192.168.20.12"}
TS_HOSTS = ("alpha", "beta")


def need_tools() -> None:
    for tool in ("age", "ssh-keygen"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian: apt-get install age openssh-client; ./lab test does)")


def keygen(path: Path, comment: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True,
                   stdin=subprocess.DEVNULL)
    return path.with_suffix(".pub").read_text().strip() if path.suffix else Path(str(path) + ".pub").read_text().strip()


def make(tmp: Path, *, ts_hosts=TS_HOSTS, host_keys=tuple(HOSTS), imports: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """(lab root, keys folder); ``imports``: every host's hand-written imports (the caller writes the files)."""
    root, keys = tmp / "lab", tmp / "keys"
    admin = keygen(keys / "admin", "admin@laptop")
    (root / "hosts").mkdir(parents=True)
    (root / "hosts" / "cluster.py").write_text(textwrap.dedent(f'''\
        from homelab import Cluster

        cluster = Cluster(name="s", domain="s.example.org", lan="192.168.20.0/24", gateway="192.168.20.1",
                          nameservers=["192.168.20.1"], admin_keys=[{admin!r}])
        '''))
    for i, (name, ip) in enumerate(HOSTS.items()):
        d = root / "hosts" / name
        d.mkdir()
        role = "ControlPlane()" if name == "alpha" else "Worker()"
        ts = ('Tailscale(auth_key=Secret("tailscale-auth-key"))' if name in ts_hosts else "Tailscale()")
        # without imports, the root file system a build asks for (homelab/bootable.py) comes from the options
        disk = "" if imports else ", options={'fileSystems.\"/\"': {'device': '/dev/disk/by-label/nixos'}}"
        (d / "host.py").write_text(textwrap.dedent(f'''\
            from homelab import ControlPlane, Host, Secret, Tailscale, Worker

            host = Host(hostname={name!r}, system="x86_64-linux", state_version="26.05", interface="enp1s0",
                        address={ip!r}, tailscale_address="100.64.1.{10 + i}", roles=[{role}, {ts}],
                        imports={list(imports)!r}{disk})
            '''))
        pub = keygen(keys / name, f"root@{name}")
        if name in host_keys:
            (d / "ssh_host_ed25519_key.pub").write_text(pub + "\n")
    return root, keys


def loaded(tmp: Path, **make_args) -> tuple[Path, Path, object]:
    """(lab root, keys folder, the loaded Lab) of a lab ``make`` writes (after checking age and ssh-keygen)."""
    from homelab.load import load_or_raise

    need_tools()
    root, keys = make(tmp, **make_args)
    return root, keys, load_or_raise(root, secrets=False)[0]


def fresh(base: tuple[Path, Path, object], tmp_path: Path, monkeypatch) -> tuple[Path, Path, object]:
    """A copy of a module's lab (``loaded``'s triple) for one test at ``tmp_path``/lab, with no age identity from
    the environment (HOMELAB_AGE_IDENTITY): each test file adds what else it keeps away (~/.ssh, the cwd)."""
    root, keys, lab_ = base
    copy = tmp_path / "lab"
    shutil.copytree(root, copy)
    monkeypatch.delenv("HOMELAB_AGE_IDENTITY", raising=False)
    return copy, keys, lab_


def homelab(root: Path, *args: str, stdin: bytes | None = None, env: dict | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
    e = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "homelab", *args], cwd=root, env=e, input=stdin,
                          capture_output=True, timeout=timeout)
