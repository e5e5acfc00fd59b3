#!/usr/bin/env python3
"""How fast is homelab?  One run prints every figure the README's "Performance" section records.

    python bench/bench.py                      # seed lab, 10/100/1000 hosts, verify batching at 100 hosts
    python bench/bench.py --sizes 3 --quick    # a smoke run (what tests/test_bench_runs.py does)
    python bench/bench.py --no-seed --sizes 100 1000 10000 --repeat 3   # the README's scale figures

Every time is a whole ``python -m homelab ...`` process, as a user starts it (interpreter start-up,
imports, nix included), run ``--repeat`` times: the median, with the fastest and slowest run.

1. The seed lab (homelab/examples/seed, built in a scratch folder): ``build`` from
   nothing (every file written), two ways: in the lab's folder after its generated files
   were deleted ("cold"; on ext4, creating files in the minutes after thousands were
   deleted is several times slower), and into a new copy of the lab's sources, never
   built ("new": a user's first build); ``build`` again with nothing changed (a no-op: answered
   from the record of the last verified build, homelab/uptodate.py); the same no-op with
   ``--no-cache`` (the whole pipeline: load, validate, compile, render, verify with nix,
   compare); and ``build --check``.
2. Synthetic labs of N hosts made with the library's own API (Cluster, Host and the
   roles), written out as hosts/<name>/host.py files (the repr of each Host, which
   loads back to an equal Host: the run checks that): the same five figures, plus one
   pass through the library, phase by phase, so a slow phase shows.
3. Offline verification at 100 hosts (or the largest size asked for): one nix
   process for every generated and hand-written file, versus one process per file.

Every whole process's peak memory (its ``ru_maxrss``, as ``wait4`` reports it) and CPU time (user + system, the
process and every process it waited for: nix, the compile helper, a large build's second half) are printed
beside its time: on a machine other work shares, the CPU time is the figure that compares between runs.

Targets (the issues'): a no-op build of the seed lab <= 0.15 s, of 1,000 hosts <= 1.5 s; a build of
10,000 hosts from nothing <= 10 s and <= 1 GiB peak; ``homelab expect --json`` of 1,000 hosts <= 10 s.
Exit status 0 whether or not a target is met (it is a measurement, not a test);
"MISS" marks a missed target in the output.
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from homelab import (  # noqa: E402
    CephStorage,
    Cluster,
    ControlPlane,
    DnsServer,
    Host,
    IngressProxy,
    Lab,
    RaspberryPi4,
    Tailscale,
    Worker,
)
from homelab import files, render, readback  # noqa: E402
from homelab.compile import compile_lab  # noqa: E402
from homelab.harness import EXAMPLES  # noqa: E402
from homelab.load import load_or_raise  # noqa: E402
from homelab.model import TAILSCALE_RANGE  # noqa: E402
from homelab.pynix_eval import Nix  # noqa: E402

SEED_NOOP_TARGET = 0.15  # seconds: `python -m homelab build` of the seed lab, nothing changed
BIG_NOOP_TARGET = 1.5  # seconds: the same for 1,000 hosts
COLD_10K_TARGET = 10.0  # seconds: `build` of 10,000 hosts from nothing (every file written)
COLD_10K_MEMORY = 1024.0  # MiB: its peak memory
EXPECT_1K_TARGET = 10.0  # seconds: `homelab expect --json` of a 1,000-host lab


# ---------------------------------------------------------------- synthetic labs


def synthetic_lab(n: int) -> Lab:
    """A valid lab of ``n`` hosts (n >= 2), built with the public API.

    Host 0 is an aarch64 control plane and the split-DNS server, host 1 the
    ingress and a Ceph node; the rest are workers, every third with Ceph (two
    Ceph configurations, so shared files are deduplicated into variants), every
    fifth with an extra kernel module.  Every host is on Tailscale and imports a
    hand-written hardware-configuration.nix.
    """
    if n < 2:
        raise ValueError("a synthetic lab needs at least 2 hosts (control plane + ingress)")
    lan = ipaddress.IPv4Network("192.168.0.0/16")
    cluster = Cluster(name="bench", domain="lab.example.net", lan=str(lan), gateway="192.168.0.1",
                      nameservers=["192.168.0.1"], pod_cidr="10.64.0.0/10")  # a /24 per node, for 1000s
    hosts = []
    for i in range(n):
        roles: list = []
        kw: dict = {}
        if i == 0:
            roles = [ControlPlane(), DnsServer(forward=["1.1.1.1", "9.9.9.9"])]
            kw = dict(system="aarch64-linux", interface="end0", boot=RaspberryPi4(sd_card=False),
                      description="Raspberry Pi 4, 8 GB, USB SSD")
        else:
            roles = [Worker()]
            if i == 1:
                roles.append(IngressProxy())
            if i == 1 or i % 3 == 0:
                roles.append(CephStorage(disks=["/dev/sda"]) if i % 2 else
                             CephStorage(containerd_nofile=524288))
            kw = dict(system="x86_64-linux", interface="enp1s0", description=f"synthetic mini PC #{i}")
            if i % 5 == 0:
                kw["kernel_modules"] = ["kvm-intel"]
        kw["state_version"] = "26.05"  # a new lab's hosts start on the release homelab targets
        roles.append(Tailscale())
        hosts.append(Host(
            hostname=f"n{i:04d}",
            address=str(lan.network_address + 10 + i),
            tailscale_address=str(TAILSCALE_RANGE.network_address + 10 + i),
            roles=roles,
            imports=["./hardware-configuration.nix"],
            options={"services.openssh.enable": True},
            **kw,
        ))
    return Lab(cluster, hosts)


HEADER = ("# Generated by bench/bench.py: a synthetic host for the benchmark.\n"
          "from ipaddress import IPv4Address, IPv4Interface, IPv4Network\n"
          "from homelab import *\n\n")


def write_lab(lab: Lab, root: Path) -> None:
    """hosts/cluster.py and hosts/<name>/host.py (+ hardware-configuration.nix) for ``lab``."""
    (root / "hosts").mkdir(parents=True, exist_ok=True)
    (root / "hosts" / "cluster.py").write_text(HEADER + f"cluster = {lab.cluster!r}\n")
    for h in lab.hosts:
        d = root / "hosts" / h.hostname
        d.mkdir(exist_ok=True)
        (d / "host.py").write_text(HEADER + f"host = {h!r}\n")
        (d / "hardware-configuration.nix").write_text(
            "{ ... }:\n{\n  fileSystems.\"/\" = { device = \"/dev/disk/by-label/nixos\"; fsType = \"ext4\"; };\n}\n")


def copy_sources(root: Path, dest: Path) -> None:
    """A new copy of the lab's sources at ``dest`` (a folder not there yet): everything under ``root``/hosts but
    the files homelab generated (:func:`homelab.files.generated_on_disk`), Python's caches and a build's
    temporaries; a lab never built, as a user's first build finds it (no file deleted beside it)."""
    generated = {root / rel for rel in files.generated_on_disk(root)}

    def ignore(folder: str, names: list[str]) -> set[str]:
        return {n for n in names if n == "__pycache__" or files._TEMP.match(n) or Path(folder, n) in generated}

    shutil.copytree(root / "hosts", dest / "hosts", ignore=ignore)


def same_generated(a: Path, b: Path) -> bool | str:
    """True when the labs at ``a`` and ``b`` hold the same generated files, byte for byte; else the first path
    that differs (or is in one only)."""
    ga, gb = files.generated_on_disk(a), files.generated_on_disk(b)
    if ga != gb:
        return sorted(set(ga) ^ set(gb))[0]
    return next((rel for rel in ga if (a / rel).read_bytes() != (b / rel).read_bytes()), True)


def clear_generated(root: Path) -> None:
    """Every generated file gone (modules/, cluster/, hosts/lab.nix, each host's default.nix): a build from nothing."""
    shutil.rmtree(root / "modules", ignore_errors=True)
    shutil.rmtree(root / "cluster", ignore_errors=True)
    (root / "hosts" / "lab.nix").unlink(missing_ok=True)
    for p in (root / "hosts").glob("*/default.nix"):
        p.unlink()


# ---------------------------------------------------------------- timing


@dataclass
class Timing:
    runs: list[float]
    peaks: list[float] = field(default_factory=list)  # MiB: each run's peak resident memory (the homelab process)
    cpus: list[float] = field(default_factory=list)  # s: each run's CPU time, user + system, of its process tree

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def peak(self) -> float:
        """The highest peak resident memory of the runs, MiB (0 when not measured)."""
        return max(self.peaks, default=0.0)

    @property
    def cpu(self) -> float:
        """The median CPU time of the runs (user + system, the process and every process it waited for), s."""
        return statistics.median(self.cpus) if self.cpus else 0.0

    def __str__(self) -> str:
        mem = f", peak {self.peak:.0f} MiB" if self.peaks else ""
        cpu = f", CPU {self.cpu:.2f} s" if self.cpus else ""
        return f"{self.median:7.3f} s  ({min(self.runs):.3f}-{max(self.runs):.3f}, {len(self.runs)} runs{mem}{cpu})"


# the peak resident memory of the last homelab process run (MiB), from the kernel's own account of it, and its CPU
# time (user + system, s: the process and the processes it waited for: nix, the compile helper, a build's second half)
_LAST_PEAK: list[float] = [0.0]
_LAST_CPU: list[float] = [0.0]

# Linux keeps a process's peak memory across exec, and a child started from this process (vfork) begins with
# this process's peak: after a 10,000-host lab is built here, every child would seem to need as much.  So the
# homelab processes are started by a small spawner started first, and their ru_maxrss is theirs (a floor of the
# spawner's ~10 MiB).
_SPAWNER_CODE = r"""
import json, os, subprocess, sys
for line in sys.stdin:
    job = json.loads(line)
    with open(job["out"], "wb") as out, open(job["err"], "wb") as err:
        p = subprocess.Popen(job["argv"], env=job["env"], stdout=out, stderr=err)
        _, status, usage = os.wait4(p.pid, 0)
    print(json.dumps([os.waitstatus_to_exitcode(status), usage.ru_maxrss, usage.ru_utime + usage.ru_stime]),
          flush=True)
"""
_SPAWNER: list[subprocess.Popen] = []


def _spawn(argv: list[str], env: dict[str, str], out: str, err: str) -> tuple[int, int, float]:
    """(exit code, ru_maxrss in KiB, user + system CPU seconds) of ``argv``, run by the spawner."""
    if not _SPAWNER:
        _SPAWNER.append(subprocess.Popen([sys.executable, "-c", _SPAWNER_CODE], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True))
    sp = _SPAWNER[0]
    sp.stdin.write(json.dumps({"argv": argv, "env": env, "out": out, "err": err}) + "\n")
    sp.stdin.flush()
    code, maxrss, cpu = json.loads(sp.stdout.readline())
    return code, maxrss, cpu


def homelab(root: Path, cache: Path, *argv: str) -> bytes:
    """``python -m homelab <argv> --root <root>`` as a new process; exit 0 expected; its standard output.

    Its peak memory is the child's ``ru_maxrss`` as ``wait4`` reports it (that process alone: nix runs as a
    process of its own), kept in ``_LAST_PEAK``."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               HOMELAB_CACHE_DIR=str(cache))
    with tempfile.TemporaryDirectory(prefix="homelab-bench-run-") as d:
        out, err = Path(d) / "out", Path(d) / "err"
        code, maxrss, cpu = _spawn([sys.executable, "-m", "homelab", *argv, "--root", str(root)], env, str(out),
                                   str(err))
        _LAST_PEAK[0] = maxrss / 1024  # KiB on Linux
        _LAST_CPU[0] = cpu
        if code != 0:
            raise SystemExit(f"homelab {' '.join(argv)} exited {code}:\n{err.read_text(errors='replace')}")
        return out.read_bytes()


def timed(fn: Callable[[], object], repeat: int, before: Callable[[], object] | None = None) -> Timing:
    runs, peaks, cpus = [], [], []
    for _ in range(repeat):
        if before:
            before()
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
        peaks.append(_LAST_PEAK[0])
        cpus.append(_LAST_CPU[0])
    return Timing(runs, peaks, cpus)


def mark(value: float, target: float) -> str:
    return "ok" if value <= target else "MISS"


# ---------------------------------------------------------------- the runs


def whole_process(root: Path, cache: Path, repeat: int, cold_repeat: int, expect: bool = False
                  ) -> dict[str, Timing]:
    """The five figures of one lab folder (from nothing two ways, no-op, full, check), each a whole process (and
    ``homelab expect --json`` with ``expect``)."""
    run = functools.partial(homelab, root, cache)
    shutil.rmtree(cache, ignore_errors=True)  # from nothing: no record of an earlier build either
    def from_nothing() -> None:  # no generated file and no record of an earlier build
        clear_generated(root)
        shutil.rmtree(cache, ignore_errors=True)

    # from nothing, two ways: a new copy of the lab's sources, never built (first: nothing deleted on this file
    # system by this lab yet), each run its own copy, kept until the benchmark ends (deleting 10,000 files makes
    # ext4 slow to create files for minutes after: that would be the other case); and the lab's own folder
    # after its generated files were deleted ("cold", the figure kept since the first table)
    copies: list[Path] = []

    def new_copy() -> None:
        copies.append(root.parent / f"{root.name}-new{len(copies)}")
        copy_sources(root, copies[-1])
        shutil.rmtree(cache, ignore_errors=True)

    out = {"new": timed(lambda: homelab(copies[-1], cache, "build"), cold_repeat, new_copy)}
    out["cold"] = timed(lambda: run("build"), cold_repeat, from_nothing)
    differs = same_generated(root, copies[-1])  # the two ways must write the same files
    if differs is not True:
        raise SystemExit(f"{root.name}: a new copy of the sources built other files: {differs}")
    run("build")  # recorded
    out["noop"] = timed(lambda: run("build"), repeat)
    out["full"] = timed(lambda: run("build", "--no-cache"), cold_repeat)
    out["check"] = timed(lambda: run("build", "--check"), repeat)
    if expect:
        size: list[int] = []
        out["expect"] = timed(lambda: size.append(len(run("expect", "--json"))), cold_repeat)
        out["expect_bytes"] = size[-1]  # type: ignore[assignment]
    return out


def bench_seed(repeat: int, tmp: Path) -> dict[str, Timing]:
    root = tmp / "seed"
    shutil.copytree(EXAMPLES / "seed" / "hosts", root / "hosts", ignore=shutil.ignore_patterns("__pycache__"))
    return whole_process(root, tmp / "cache", repeat, repeat)


def bench_size(n: int, repeat: int, tmp: Path, *, expect: bool = True, phases: bool = True) -> dict:
    root = tmp / f"lab{n}"
    lab = synthetic_lab(n)
    write_lab(lab, root)
    loaded, _ = load_or_raise(root)
    if loaded != lab:  # the host.py files must describe exactly the lab built with the API
        raise SystemExit(f"{n} hosts: the written host.py files do not load back to the same lab")
    del lab, loaded
    cold_repeat = repeat if n <= 100 else max(1, repeat // 2) if n <= 1000 else 1
    out: dict = whole_process(root, tmp / "cache", repeat if n <= 1000 else 1, cold_repeat, expect)
    if not phases:  # one pass through the library would double the run at this size: left out
        out.update(files=0, lines=0)
        return out
    # phases, through the library (what the CLI does, step by step), once
    t = time.perf_counter
    t0 = t(); loaded, _ = load_or_raise(root)                                   # noqa: E702
    t1 = t(); compiled = compile_lab(loaded)                                    # noqa: E702
    t2 = t(); pre = readback.precheck(compiled)                                   # noqa: E702
    t3 = t(); texts = render.render_all(compiled)                               # noqa: E702
    t4 = t(); files.plan(root, texts)                                           # noqa: E702
    t5 = t(); rep = readback.read_back(root, compiled, Nix(timeout=600), pre=pre)    # noqa: E702
    t6 = t()
    if pre.all_problems() or rep.problems:
        raise SystemExit(f"{n} hosts: verification failed: {(pre.all_problems() or rep.problems)[:3]}")
    out.update(load=t1 - t0, compile=t2 - t1, precheck=t3 - t2, render=t4 - t3, plan=t5 - t4, verify=t6 - t5,
               files=len(texts), lines=sum(x.count("\n") for x in texts.values()))
    return out


def bench_verify_batching(n: int, tmp: Path) -> dict[str, float]:
    """One nix process for all files vs one per file (generated and hand-written), same checks."""
    root = tmp / f"lab{n}"
    if not (root / "hosts").exists():
        write_lab(synthetic_lab(n), root)
    homelab(root, tmp / "cache", "build", "--no-verify")
    lab, _ = load_or_raise(root)
    compiled = compile_lab(lab)
    nix = Nix(timeout=600)
    t0 = time.perf_counter()
    batch = readback.evaluate(root, compiled, nix)
    one = time.perf_counter() - t0
    calls_one = nix.calls
    generated = sorted(compiled.files)
    hand = sorted({r for p in compiled.hosts.values() for r in p.hand_written})
    pkgs = readback._pkg_names(compiled)
    nix = Nix(timeout=600)
    per: dict = {"generated": {}, "handWritten": {}}
    t0 = time.perf_counter()
    for rel in generated:
        per["generated"].update(nix.eval_expr(readback.evaluation_expr(root, [rel], [], pkgs))["generated"])
    for rel in hand:
        per["handWritten"].update(nix.eval_expr(readback.evaluation_expr(root, [], [rel], pkgs))["handWritten"])
    many = time.perf_counter() - t0
    base = str(root.resolve()) + "/"
    for entry in per["generated"].values():
        entry["imports"] = [i.removeprefix(base) for i in entry["imports"]]
    batch.pop("data", None)  # hosts/lab.nix: data, not a module; the per-file run leaves it out
    if per != batch:
        raise SystemExit("per-file evaluation disagrees with the batched one")
    return dict(one=one, one_calls=calls_one, many=many, many_calls=nix.calls, files=len(generated) + len(hand))


# ---------------------------------------------------------------- report


def machine() -> str:
    cores = os.cpu_count() or 0
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem = 0.0
    try:
        nixv = Nix().version()
    except Exception:  # noqa: BLE001
        nixv = "nix not found"
    return (f"{cores} cores, {mem:.0f} GiB RAM, {platform.system()} {platform.machine()}, "
            f"Python {platform.python_version()}, {nixv}")


def calibrate() -> float:
    """CPU seconds of a fixed pure-Python workload (formatting, dicts, sorting: the kind of work a build does; no
    homelab code), the fastest of 5 runs: how fast this machine is at the moment.  On a virtual machine whose host
    is busy elsewhere every figure slows down, CPU times included (the same build measured 16 s and 25 s of CPU an
    hour apart here): read the other figures beside this one."""
    best = float("inf")
    for _ in range(5):
        t = time.process_time()
        d = {}
        for i in range(200_000):
            k = f"n{i:05d}"
            d[k] = (k.upper(), i * 7 % 13)
        sorted(d.items(), key=lambda kv: kv[1])
        best = min(best, time.process_time() - t)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="example: python bench/bench.py --sizes 10 100 1000")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000],
                    help="synthetic lab sizes in hosts (each >= 2; default 10 100 1000)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="runs per figure (default 7; 1 with --quick; the full builds of labs over 100 hosts "
                         "run half as often)")
    ap.add_argument("--verify-hosts", type=int, default=None,
                    help="lab size for the one-vs-many nix process comparison (default 100, or the largest size "
                         "with --quick)")
    ap.add_argument("--quick", action="store_true", help="one run per figure: a smoke test, not a measurement")
    ap.add_argument("--no-seed", action="store_true", help="skip the seed lab")
    ap.add_argument("--expect-up-to", type=int, default=1000, metavar="N",
                    help="time `homelab expect --json` for labs of up to N hosts (default 1000)")
    ap.add_argument("--phases-up-to", type=int, default=1000, metavar="N",
                    help="one pass through the library, phase by phase, for labs of up to N hosts (default 1000)")
    args = ap.parse_args(argv)
    if any(n < 2 for n in args.sizes):
        ap.error("every size must be at least 2 hosts")
    repeat = args.repeat or (1 if args.quick else 7)
    _spawn(["true"], dict(os.environ), os.devnull, os.devnull)  # the spawner starts while this process is small
    sizes = sorted(set(args.sizes))
    vhosts = args.verify_hosts or (max(sizes) if args.quick else 100)

    print(f"homelab benchmark, {time.strftime('%Y-%m-%d')}: whole `python -m homelab` processes, median of "
          f"{repeat} runs (fastest-slowest)")
    print(f"machine: {machine()}")
    print(f"machine speed: a fixed Python workload took {calibrate():.3f} s of CPU (bench.calibrate; smaller is "
          "faster; compare figures measured at the same speed)")
    with tempfile.TemporaryDirectory(prefix="homelab-bench-") as t:
        tmp = Path(t)
        if not args.no_seed:
            s = bench_seed(repeat, tmp)
            print("\nseed lab (3 hosts), through the CLI:")
            print(f"  build, every file written               {s['cold']}  (after clearing the generated files)")
            print(f"  build into a new copy of the sources    {s['new']}  (never built)")
            print(f"  build, nothing changed (no-op)          {s['noop']}  target <= {SEED_NOOP_TARGET:g} s: "
                  f"{mark(s['noop'].median, SEED_NOOP_TARGET)}")
            print(f"  build --no-cache, nothing changed       {s['full']}  (the whole pipeline, nix included)")
            print(f"  build --check, nothing changed          {s['check']}")
        print("\nsynthetic labs, `python -m homelab build` (medians): cold = every file written, after clearing the "
              "generated\n  files (the lab's own folder: creating files right after deleting thousands is slow on "
              "ext4); new = every\n  file written into a new copy of the lab's sources, never built; no-op = nothing "
              "changed;\n  full = nothing changed, --no-cache (load, validate, compile, render, verify with nix, "
              "compare);\n  then one pass through the library, phase by phase (seconds)")
        print(f"  {'hosts':>6} {'files':>6} {'lines':>8} {'cold':>8} {'new':>8} {'no-op':>7} {'full':>8} "
              f"{'check':>7} | "
              f"{'load':>6} {'compile':>7} {'precheck':>8} {'render':>6} {'plan':>6} {'verify':>6}")
        results = {}
        for n in sizes:
            r = bench_size(n, repeat, tmp, expect=n <= args.expect_up_to, phases=n <= args.phases_up_to)
            results[n] = r
            if n <= args.phases_up_to:
                phases = (f"{r['load']:>6.3f} {r['compile']:>7.3f} {r['precheck']:>8.3f} {r['render']:>6.3f} "
                          f"{r['plan']:>6.3f} {r['verify']:>6.3f}")
            else:
                phases = "(phases not run at this size)"
            print(f"  {n:>6} {r['files'] or '-':>6} {r['lines'] or '-':>8} {r['cold'].median:>7.3f}s "
                  f"{r['new'].median:>7.3f}s {r['noop'].median:>6.3f}s {r['full'].median:>7.3f}s "
                  f"{r['check'].median:>6.3f}s | {phases}",
                  flush=True)
        print("\n  whole processes with their peak memory (the homelab process's ru_maxrss, from wait4):")
        for n in sizes:
            r = results[n]
            target = (f"  target <= {BIG_NOOP_TARGET:g} s: {mark(r['noop'].median, BIG_NOOP_TARGET)}"
                      if n == 1000 else "")
            print(f"  {n} hosts: no-op {r['noop']}{target}")
            def target10k(t: Timing) -> str:
                if n != 10000:
                    return ""
                ok = t.median <= COLD_10K_TARGET and t.peak <= COLD_10K_MEMORY
                return f"  target <= {COLD_10K_TARGET:g} s and <= {COLD_10K_MEMORY:g} MiB: {'ok' if ok else 'MISS'}"
            print(f"  {n} hosts: cold {r['cold']}{target10k(r['cold'])}  (after clearing the generated files)")
            print(f"  {n} hosts: new {r['new']}{target10k(r['new'])}  (a new copy of the sources, never built)")
            print(f"  {n} hosts: full {r['full']}")
            if "expect" in r:
                target = (f"  target <= {EXPECT_1K_TARGET:g} s: {mark(r['expect'].median, EXPECT_1K_TARGET)}"
                          if n == 1000 else "")
                print(f"  {n} hosts: expect --json {r['expect']}, {r['expect_bytes'] / 2**20:.1f} MiB of JSON{target}")
        if len(sizes) >= 2:
            a, b = sizes[-2], sizes[-1]
            ratio = results[b]["full"].median / results[a]["full"].median
            mem = results[b]["full"].peak / max(results[a]["full"].peak, 1)
            print(f"\nscaling of the full build: {b} hosts / {a} hosts = {ratio:.2f} in time, {mem:.2f} in peak memory "
                  f"(hosts x{b / a:g})")
        v = bench_verify_batching(vhosts, tmp)
        print(f"\nmachine speed after the runs: {calibrate():.3f} s (as above)")
        print(f"\noffline verification at {vhosts} hosts ({v['files']} files), in-process:")
        print(f"  one nix process for all files        {v['one']:7.3f} s  ({v['one_calls']} process)")
        print(f"  one nix process per file             {v['many']:7.3f} s  ({v['many_calls']} processes)")
        print(f"  ratio                                {v['many'] / v['one']:7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
