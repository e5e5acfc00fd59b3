"""How a lab is asked for: ``python -m homelab <command>`` (also installed as ``homelab``).

Exit codes: 0 done; 1 something is out of date (``build --check``); 2 the lab
description (or a file in the way) is wrong, nothing was written; 3 nix said
the generated files are wrong (a bug in homelab: please report it); 4 the
command needs nix and none is installed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Callable

from . import files, render, verify
from .compile import Compiled, compile_lab
from .errors import LabError, Problem
from .load import load, load_or_raise
from .model import Lab
from .pynix_eval import Nix, NixError, NixNotFound

EXIT_OK, EXIT_CHANGED, EXIT_BAD_INPUT, EXIT_VERIFY, EXIT_NO_NIX = 0, 1, 2, 3, 4


class Usage(Exception):
    """A command-line mistake, reported like a lab problem (exit 2)."""


def _err(*lines: str) -> None:
    for line in lines:
        print(line, file=sys.stderr)


def resolve_targets(targets: list[str], root: str | None) -> tuple[Path, list[str] | None]:
    """``hosts/yomogi`` arguments -> (lab root, host names), or all hosts when none are named.

    Host paths are relative to ``--root`` when given, else to the current folder;
    the lab root is the folder holding their ``hosts/``.
    """
    base = Path(root or ".")
    lab_root: Path | None = Path(root).resolve() if root else None
    names: list[str] = []
    for t in targets:
        p = (base / t).resolve()
        if p.parent.name != "hosts":
            raise Usage(f"{t}: name a host folder such as hosts/yomogi")
        if lab_root is not None and p.parent.parent != lab_root:
            raise Usage(f"{t}: is not in the lab at {lab_root}")
        if not p.is_dir():
            raise Usage(f"{t}: no such host folder")
        lab_root = p.parent.parent
        names.append(p.name)
    return (lab_root or Path.cwd()), (names or None)


def load_selected(root: Path, only: list[str] | None) -> tuple[Lab, list[Problem]]:
    """The validated lab and its warnings; LabError if a named host has no host.py."""
    lab, warnings = load_or_raise(root)
    if only:
        known = {h.hostname for h in lab.hosts}
        missing = [n for n in only if n not in known]
        if missing:
            raise LabError([Problem(f"hosts/{n}", "host.py", "no such host (no hosts/<name>/host.py)")
                            for n in missing])
    return lab, warnings


def prepare(root: Path, only: list[str] | None) -> tuple[Lab, Compiled, dict[str, str], list[Problem]]:
    """Load, validate, compile, precheck and render: everything before a byte is written."""
    lab, warnings = load_selected(root, only)
    compiled = compile_lab(lab)
    pre = verify.precheck(compiled)
    if pre:
        raise LabError([Problem("build", "generated code", p) for p in pre])
    return lab, compiled, render.render_all(compiled, only), warnings


def _nix(args) -> Nix:
    return Nix(timeout=getattr(args, "nix_timeout", 120.0))


# ---------------------------------------------------------------- commands


def hosts_sharing_changes(root: Path, compiled: Compiled, only: list[str]) -> list[str]:
    """``only`` plus every other host whose configuration a build of ``only`` would change.

    Hosts share module files: rewriting one that another host's entry (as it is
    on disk) imports changes that host too, so that host is built as well.
    """
    hosts = set(only)
    while True:
        texts = render.render_all(compiled, sorted(hosts))
        changed = [rel for rel, text in texts.items() if rel.startswith("modules/")
                   and (not (root / rel).is_file() or files.read_exact(root / rel) != text)]
        extra = set()
        for name, plan in compiled.hosts.items():
            entry = root / plan.entry
            if name in hosts or not entry.is_file():
                continue
            on_disk = files.read_exact(entry)
            if any(f"../../{rel}\n" in on_disk for rel in changed):
                extra.add(name)
        if not extra:
            return sorted(hosts)
        hosts |= extra


def cmd_build(args) -> int:
    root, only = resolve_targets(args.hosts, args.root)
    lab, compiled, texts, warnings = prepare(root, only)
    for w in warnings:
        _err(str(w))
    if only and not args.check:
        wider = hosts_sharing_changes(root, compiled, only)
        if wider != sorted(only):
            others = [h for h in wider if h not in only]
            _err(f"note: also building {', '.join(others)}: they import module files this build changes")
            only, texts = wider, render.render_all(compiled, wider)
    prune = only is None
    if args.check:
        stale = files.stale(root, texts, prune=prune)
        if stale:
            print("out of date (run `python -m homelab build`):")
            for rel in stale:
                print(f"  {rel}")
            return EXIT_CHANGED
        print(f"up to date: {len(texts)} generated files")
        return EXIT_OK
    plan = files.plan(root, texts, prune=prune, force=args.force)
    verified = ""
    if not args.no_verify:
        hosts = only or sorted(compiled.hosts)
        hand = [r for h in hosts for r in compiled.hosts[h].hand_written]
        t0 = time.perf_counter()
        try:
            with verify.staged(texts, root, hand) as tmp:
                rep = verify.verify(Path(tmp), compiled, _nix(args), only, prechecked=True)  # by prepare()
        except NixNotFound as e:
            _err(f"not verified: {e.message}")
            rep = None
        if rep is not None:
            if rep.problems:
                _err("nix disagrees with the model; nothing was written:", *[f"  {p}" for p in rep.problems])
                return EXIT_VERIFY
            verified = (f"; nix read back {rep.files} generated files and parsed {rep.hand_written} hand-written "
                        f"ones in {time.perf_counter() - t0:.2f} s ({rep.nix_calls} nix process)")
    files.apply(root, plan)
    n_hosts = len(only or compiled.hosts)
    print(f"{n_hosts} host{'s' if n_hosts != 1 else ''}: wrote {len(plan.write)}, unchanged {len(plan.unchanged)}"
          + (f", removed {len(plan.delete)}" if plan.delete else "") + verified)
    for rel in plan.write:
        print(f"  wrote {rel}")
    for rel in plan.delete:
        print(f"  removed {rel}")
    return EXIT_OK


def cmd_check(args) -> int:
    root = Path(args.root) if args.root else Path.cwd()
    if args.json:
        return _check_json(root)
    lab, warnings = load_or_raise(root)
    compiled = compile_lab(lab)
    pre = verify.precheck(compiled)
    if pre:
        raise LabError([Problem("build", "generated code", p) for p in pre])
    for w in warnings:
        _err(str(w))
    print(f"ok: {len(lab.hosts)} hosts, {len(warnings)} warning{'s' if len(warnings) != 1 else ''}")
    return EXIT_OK


def _check_json(root: Path) -> int:
    """``check --json`` (shape in docs/json.md): every problem as data; exit 2 when one is an error."""
    lab, problems = load(root)
    if lab is not None and not any(p.severity == "error" for p in problems):
        problems += [Problem("build", "generated code", p) for p in verify.precheck(compile_lab(lab))]
    errors = [p for p in problems if p.severity == "error"]
    print(json.dumps({"version": 1, "ok": not errors, "hosts": [h.hostname for h in lab.hosts] if lab else [],
                      "problems": [{"where": p.where, "field": p.field, "reason": p.reason, "severity": p.severity}
                                   for p in problems]}, indent=2))
    return EXIT_BAD_INPUT if errors else EXIT_OK


def cmd_show(args) -> int:
    root, only = resolve_targets(args.hosts, args.root)
    lab, compiled, texts, _ = prepare(root, only)
    stale = files.stale(root, texts, prune=False)
    if stale:
        _err("note: these files differ from what a build would write; showing what is on disk:",
             *[f"  {s}" for s in stale])
    missing = [rel for rel in texts if not (root / rel).is_file()]
    if missing:
        raise LabError([Problem(rel, "file", "does not exist yet; run `python -m homelab build`") for rel in missing])
    evaluated = verify.evaluate(root, compiled, _nix(args), only or sorted(compiled.hosts))
    out: dict[str, dict] = {}
    problems: list[str] = []
    for h in only or sorted(compiled.hosts):
        out[h], ps = verify.host_options(evaluated, compiled, h)
        problems += ps
    if args.json:
        print(json.dumps(out if len(out) != 1 or not only else out[only[0]], indent=2, sort_keys=True))
    else:
        for h, opts in out.items():
            print(f"{h}:")
            for k, v in opts.items():
                print(f"  {k} = {json.dumps(v)}")
    for p in problems:
        _err(f"conflict: {p}")
    return EXIT_VERIFY if problems else EXIT_OK


# ---------------------------------------------------------------- parser

COMMANDS: dict[str, tuple[Callable, str, str, Callable | None]] = {}

# Modules that add commands with @command(...).  One line each; they are imported
# when the parser is built, so a command's code stays beside what it is about.
COMMAND_MODULES: tuple[str, ...] = (
    "homelab.graph",
    "homelab.plan",
    "homelab.expect", "homelab.vm",
)


def command(name: str, help_: str, example: str, configure: Callable[[argparse.ArgumentParser], None] | None = None):
    """Register ``fn(args) -> exit code`` as ``homelab <name>``; ``configure`` adds its arguments."""
    def deco(fn):
        COMMANDS[name] = (fn, help_, example, configure)
        return fn
    return deco


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="homelab",
        description="Typed NixOS + Kubernetes home lab: hosts/*.py -> NixOS modules, proven by real nix.",
        epilog="example: python -m homelab build hosts/yomogi",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(name, fn, help_, example):
        sp = sub.add_parser(name, help=help_, description=help_, epilog=f"example: {example}",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        sp.set_defaults(func=fn)
        sp.add_argument("--root", help="the lab's folder (holding hosts/); default: from the host paths or .")
        return sp

    b = add("build", cmd_build, "write the NixOS modules of the named hosts (all when none named)",
            "python -m homelab build hosts/yomogi")
    b.add_argument("hosts", nargs="*", help="host folders, e.g. hosts/yomogi")
    b.add_argument("--check", action="store_true", help="write nothing; exit 1 and list stale files if any")
    b.add_argument("--force", action="store_true", help="overwrite generated files even if edited by hand")
    b.add_argument("--no-verify", action="store_true", help="skip reading the files back with nix")
    c = add("check", cmd_check, "validate the whole lab and list every problem", "python -m homelab check --json")
    c.add_argument("--json", action="store_true", help="print JSON: {ok, hosts, problems: [{where, field, reason, "
                   "severity}]}")
    s = add("show", cmd_show, "print the NixOS option values a host sets, read back from the files by nix",
            "python -m homelab show hosts/yomogi --json")
    s.add_argument("hosts", nargs="*", help="host folders, e.g. hosts/yomogi")
    s.add_argument("--json", action="store_true", help="print JSON: {option path: value}")
    for module in COMMAND_MODULES:
        importlib.import_module(module)
    for name, (fn, help_, example, configure) in sorted(COMMANDS.items()):
        sp = add(name, fn, help_, example)
        if configure:
            configure(sp)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except Usage as e:
        _err(f"homelab: {e}")
        return EXIT_BAD_INPUT
    except LabError as e:
        errors = [p for p in e.problems if p.severity == "error"]
        _err(f"homelab: {len(errors)} problem{'s' if len(errors) != 1 else ''}; nothing was written:")
        for p in e.problems:
            _err(f"  {p}")
        return EXIT_BAD_INPUT
    except NixNotFound as e:
        _err(f"homelab: {args.command} needs nix: {e.message}")
        return EXIT_NO_NIX
    except NixError as e:
        _err(f"homelab: nix failed: {e}")
        return EXIT_VERIFY
    except KeyboardInterrupt:
        return 130
