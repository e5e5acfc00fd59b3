"""A build never half-writes: kill it at every step and at random moments, then look at every file.

Two ways of killing ``python -m homelab build`` with SIGKILL:

* at every step of the write phase: with ``HOMELAB_TEST_STOP_AT=k`` set, homelab.files
  names each step on stderr ("temp <file>", "rename <file>", "delete <file>") and
  waits after the k-th; the test kills the process there, for every k.  The
  state must then be exactly what the steps so far imply: each file old or new
  (or absent where it is created or removed), never truncated or mixed, modules
  renamed before the entry files that import them.
* at random moments, without any hook, in a generated lab of many hosts.

After each kill every generated file is parsed by real nix and compared with the
two texts it may have, and a later build must finish the job: no stale
``.*.tmp`` left, every file new, ``build --check`` clean.
"""

from __future__ import annotations

import os
import random
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from homelab import files
from homelab.build import prepare
from homelab.load import load_or_raise

from .conftest import copy_lab
from .test_bad_inputs import apply_edits, run_cli

C, Y, T, H = "hosts/cluster.py", "hosts/yomogi/host.py", "hosts/tokiwa/host.py", "hosts/hanaakari/host.py"

# From the seed lab (old) to a lab where almost every generated file changes (new):
# new cluster ranges and API port, a new Tailscale interface name, other NodePorts, no
# DNS server any more (modules/dns/coredns.nix goes away) and a fourth host (its
# default.nix is created).
NEW_LAB_EDITS = [
    (C, "api_port=6443", "api_port=6444"),
    (C, 'pod_cidr="10.1.0.0/16"', 'pod_cidr="10.2.0.0/16"'),
    *[(f, "Tailscale()", 'Tailscale(interface="ts0")') for f in (Y, T, H)],
    *[(f, '"services.openssh.enable": True', '"services.openssh.enable": True, "time.timeZone": "Asia/Tokyo"')
      for f in (Y, T, H)],
    (T, "CephStorage()", "CephStorage(containerd_nofile=2097152)"),
    (Y, "CephStorage()", "CephStorage(containerd_nofile=2097152)"),
    (H, 'CephStorage(disks=["/dev/sda"])', 'CephStorage(disks=["/dev/sda"], containerd_nofile=2097152)'),
    (H, "http_nodeport=31080, https_nodeport=31443", "http_nodeport=31081, https_nodeport=31444"),
    (Y, '        DnsServer(forward=["1.1.1.1", "1.0.0.1"]),\n', ""),
    ("hosts/kusa/host.py", None, '''from homelab import Host, Tailscale, Worker

host = Host(hostname="kusa", system="x86_64-linux", state_version="26.05", interface="enp2s0",
            address="192.168.10.13/24", tailscale_address="100.64.0.13", roles=[Worker(), Tailscale(interface="ts0")],
            options={'fileSystems."/"': {"device": "/dev/disk/by-label/nixos"}})
'''),
]

STOP_ENV = "HOMELAB_TEST_STOP_AT"


def generated_texts(root: Path, paths) -> dict[str, str | None]:
    return {rel: (root / rel).read_text() if (root / rel).is_file() else None for rel in paths}


def start_build(root: Path, *extra: str, stop_at: int | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop(STOP_ENV, None)
    if stop_at is not None:
        env[STOP_ENV] = str(stop_at)
    return subprocess.Popen([sys.executable, "-m", "homelab", "build", "--root", str(root), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)


def kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
    if proc.stderr:
        proc.stderr.close()


def read_markers(proc: subprocess.Popen, n: int, deadline: float) -> list[tuple[str, str]]:
    """Read stderr until ``n`` step markers were printed; (step, file) of each."""
    fd = proc.stderr.fileno()
    buf = b""
    seen: list[tuple[str, str]] = []
    while len(seen) < n:
        left = deadline - time.monotonic()
        assert left > 0, f"build printed only {seen} within the time limit"
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 65536)  # raw reads: a buffered readline would hide lines from select
        assert chunk, f"build ended after {seen} (exit {proc.poll()}): {buf.decode(errors='replace')}"
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if line.startswith(b"homelab-test-step "):
                _, step, rel = line.decode().split()
                seen.append((step, rel))
    return seen


def imports_present(root: Path, state: dict[str, str | None]) -> list[str]:
    """Entry files importing a generated module that is not on disk (must never happen)."""
    missing = []
    for rel, text in state.items():
        if text is None or not rel.endswith("/default.nix"):
            continue
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("../../modules/") and not (root / rel).parent.joinpath(line).resolve().is_file():
                missing.append(f"{rel} imports {line}")
    return missing


def assert_old_or_new(root: Path, old: dict, new: dict, nix) -> dict[str, str | None]:
    state = generated_texts(root, old.keys() | new.keys())
    for rel, text in state.items():
        assert text in (old.get(rel), new.get(rel)), f"{rel} is neither the old nor the new text:\n{text}"
    present = [root / rel for rel, text in state.items() if text is not None and rel.endswith(".nix")]
    nix.parse_files(present)  # raises NixEvalError naming a file nix cannot read (the cluster layer's YAML: above)
    assert not imports_present(root, state)
    return state


def finish_with_a_later_build(root: Path, new: dict) -> None:
    rc, out, err = run_cli("build", "--root", str(root))
    assert rc == 0, err
    assert files.stale_temps(root) == []
    assert not [p for p in root.rglob(".*.tmp")], "a temporary survived the later build"
    for rel, text in generated_texts(root, new.keys()).items():
        assert text == new[rel], rel
    rc, out, err = run_cli("build", "--check", "--root", str(root))
    assert rc == 0, out + err


@pytest.fixture(scope="module")
def versions(tmp_path_factory, seed_root):
    """(template lab: old generated files + new sources, old texts, new texts)."""
    base = tmp_path_factory.mktemp("atomic")
    template = copy_lab(seed_root, base / "template")
    old_paths = files.generated_on_disk(template)
    old = {rel: (template / rel).read_text() for rel in old_paths}
    apply_edits(template, NEW_LAB_EDITS)
    texts = prepare(load_or_raise(template)[0]).texts()
    new: dict[str, str | None] = {rel: None for rel in old}
    new.update(texts)
    return template, old, new


def test_the_new_lab_changes_creates_and_removes_files(versions):
    """The test below is only as good as its change: most files change, one appears, one goes."""
    _, old, new = versions
    changed = [rel for rel in new if old.get(rel) != new[rel]]
    assert len(changed) >= 12
    assert "hosts/kusa/default.nix" in changed and old.get("hosts/kusa/default.nix") is None
    assert new["modules/dns/coredns.nix"] is None and old["modules/dns/coredns.nix"]


def test_kill_after_every_step(versions, tmp_path, nix):
    template, old, new = versions
    writes = sorted((rel for rel in new if new[rel] is not None and new[rel] != old.get(rel)),
                    key=files._rename_order)
    deletes = [rel for rel in new if new[rel] is None and old.get(rel) is not None]
    steps = [("temp", rel) for rel in writes] + [("rename", rel) for rel in writes] + \
            [("delete", rel) for rel in deletes]
    temps_left = 0
    for k in range(1, len(steps) + 1):
        root = tmp_path / f"kill-{k}"
        shutil.copytree(template, root)
        proc = start_build(root, "--no-verify", stop_at=k)
        try:
            seen = read_markers(proc, k, time.monotonic() + 60)
        finally:
            kill(proc)
        assert seen == steps[:k], "the build's steps are not the planned ones, in the planned order"
        state = assert_old_or_new(root, old, new, nix)
        done = {rel for step, rel in seen if step in ("rename", "delete")}
        for rel, text in state.items():
            want = new.get(rel) if rel in done else old.get(rel)
            assert text == want, f"after {seen[-1]}: {rel} is {'new' if text == new.get(rel) else 'old'}"
        temps = files.stale_temps(root)
        assert len(temps) == len({rel for step, rel in seen if step == "temp"} - done)
        temps_left += len(temps)
        finish_with_a_later_build(root, new)
    assert temps_left, "no kill left a temporary behind, so the clean-up was never exercised"


def test_kill_while_verifying(versions, tmp_path, nix):
    """Killed before the write phase (nix still reading the staged copy): nothing changed, nothing left."""
    template, old, new = versions
    root = tmp_path / "lab"
    shutil.copytree(template, root)
    before = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    proc = start_build(root, stop_at=1)
    try:
        read_markers(proc, 1, time.monotonic() + 60)  # first write step: verification is over
    finally:
        kill(proc)
    # kill a second build as early as possible, during load/verify
    proc = start_build(root)
    time.sleep(0.05)
    kill(proc)
    state = assert_old_or_new(root, old, new, nix)
    assert sum(text != old.get(rel) for rel, text in state.items()) == 0
    after = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert {k: v for k, v in after.items() if not files._TEMP.match(Path(k).name)} == before
    finish_with_a_later_build(root, new)


def test_stale_temporaries_are_removed_and_never_read(lab_copy: Path):
    junk = [lab_copy / "modules/k8s/.base.nix.abcd_123.tmp", lab_copy / "hosts/tokiwa/.default.nix.zz9x8y7w.tmp"]
    for p in junk:
        p.write_text("{ this is not nix")  # a half-written temporary
    keep = lab_copy / "hosts/tokiwa/.notes.tmp"  # not ours: never touched
    keep.write_text("mine")
    rc, out, err = run_cli("build", "--check", "--root", str(lab_copy))
    assert rc == 0, out + err  # stale temporaries do not make the lab look out of date
    rc, out, err = run_cli("check", "--root", str(lab_copy))
    assert rc == 0, err
    apply_edits(lab_copy, [(C, "api_port=6443", "api_port=6444")])
    rc, out, err = run_cli("build", "--root", str(lab_copy))
    assert rc == 0, err
    assert not any(p.exists() for p in junk)
    assert keep.read_text() == "mine"


# ---------------------------------------------------------------- random kills in a big lab

N_WORKERS = 120


def big_lab(root: Path, seed_root: Path) -> None:
    copy_lab(seed_root, root)
    for i in range(N_WORKERS):
        name = f"w{i:03d}"
        (root / "hosts" / name).mkdir()
        (root / "hosts" / name / "host.py").write_text(
            "from homelab import Host, Tailscale, Worker\n\n"
            f'host = Host(hostname="{name}", system="x86_64-linux", state_version="26.05", interface="enp1s0",\n'
            f'            address="192.168.10.{20 + i}/24", tailscale_address="100.64.1.{i}",\n'
            f'            roles=[Worker(), Tailscale()], options={{"networking.hostId": "{i:08x}",\n'
            f'                                                    \'fileSystems."/"\': {{"device": "/dev/sda2"}}}})\n')


def test_random_kills_in_a_big_lab(tmp_path, nix, seed_root):
    template = tmp_path / "template"
    big_lab(template, seed_root)
    rc, out, err = run_cli("build", "--no-verify", "--root", str(template))
    assert rc == 0, err
    old = generated_texts(template, files.generated_on_disk(template))
    apply_edits(template, [(C, 'nameservers=["192.168.10.1", "1.1.1.1"]', 'nameservers=["192.168.10.1"]'),
                           (C, "api_port=6443", "api_port=6444")])
    texts = prepare(load_or_raise(template)[0]).texts()
    new = {**{rel: None for rel in old}, **texts}
    assert sum(old.get(rel) != text for rel, text in new.items()) > N_WORKERS

    # how long a whole build takes here, to spread the kills over it
    probe = tmp_path / "probe"
    shutil.copytree(template, probe)
    t0 = time.monotonic()
    proc = start_build(probe)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    proc.stderr.close()
    whole = time.monotonic() - t0

    seed = int(os.environ.get("HOMELAB_KILL_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    outcomes = {"old": 0, "mixed": 0, "new": 0}
    for i in range(8):
        root = tmp_path / f"kill-{i}"
        shutil.copytree(template, root)
        proc = start_build(root)
        time.sleep(rng.uniform(0.5, 1.0) * whole)
        kill(proc)
        state = assert_old_or_new(root, old, new, nix)
        n_new = sum(text == new.get(rel) != old.get(rel) for rel, text in state.items())
        outcomes["old" if n_new == 0 else "new" if state == new else "mixed"] += 1
        finish_with_a_later_build(root, new)
    print(f"random kills (HOMELAB_KILL_SEED={seed}, build {whole:.2f} s): {outcomes}")
