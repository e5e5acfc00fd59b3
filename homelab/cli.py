"""How a lab is asked for: ``python -m homelab <command>`` (also installed as ``homelab``).

Every command is registered here, and only here: the domain modules (build,
expect, graph, plan, vm...) know nothing of argparse, and are imported only when
their command runs, so ``homelab build`` does not load what ``homelab vm`` needs.

The lab is found like git finds a repository: from the current folder upward,
the first folder holding ``hosts/cluster.py`` (``--root`` names it instead).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Callable

from .about import program, set_program
from .errors import (
    EXIT_BAD_INPUT,
    EXIT_CHANGED,
    EXIT_CODES,  # noqa: F401 - homelab.cli.EXIT_CODES, as before the table moved
    EXIT_CRASH,
    EXIT_GENERATED,
    EXIT_INTERRUPTED,
    EXIT_MISSING,
    EXIT_OK,
    EXIT_STEP_FAILED,  # noqa: F401
    GeneratedCodeError,
    HomelabError,
    LabError,
    MissingTool,
    NotVerified,
    ReadBackError,
    UsageError,
    exit_table,
)

# The one exit-code table lives in homelab.errors (with the errors that carry the codes); --help prints it.
EXIT_VERIFY = EXIT_GENERATED  # the names this module used before homelab.errors held the table
EXIT_NO_NIX = EXIT_MISSING
Usage = UsageError  # a command-line mistake (exit 2)
Missing = MissingTool  # a tool or device the command needs is not there (exit 4)


def _err(*lines: str) -> None:
    for line in lines:
        print(line, file=sys.stderr)


# ---------------------------------------------------------------- finding the lab


def find_root(start: Path | None = None) -> Path:
    """The lab folder: ``start`` (default: the current folder) or the nearest parent holding hosts/cluster.py."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "hosts" / "cluster.py").is_file():
            return d
    raise UsageError(f"no lab here: neither {here} nor a folder above it holds hosts/cluster.py "
                "(run `homelab init DIR` to start one, or pass --root)")


def resolve_targets(targets: list[str], root: str | None) -> tuple[Path, list[str] | None]:
    """``hosts/yomogi`` arguments -> (lab root, host names), or all hosts when none are named.

    Host paths are relative to the current folder (or to ``--root`` when it is
    given and the path does not exist here); the lab root is the folder holding
    their ``hosts/``.  Without host paths, the lab is ``--root`` or found upward.
    """
    lab_root: Path | None = Path(root).resolve() if root else None
    names: list[str] = []
    for t in targets:
        p = Path(t).resolve()
        if root and not p.exists():
            p = (Path(root) / t).resolve()
        if not (p.parent.name == "hosts" and p.is_dir()) and _bare(t):  # `homelab build yomogi`
            p = _host_named(t, lab_root)
        if p.parent.name != "hosts":
            raise UsageError(f"{t}: name a host folder such as hosts/yomogi")
        if lab_root is not None and p.parent.parent != lab_root:
            raise UsageError(f"{t}: is not in the lab at {lab_root}")
        if not p.is_dir():
            raise UsageError(f"{t}: no such host folder")
        lab_root = p.parent.parent
        names.append(p.name)
    if lab_root is None:
        lab_root = find_root()
    elif not names and not (lab_root / "hosts").is_dir():
        raise UsageError(f"--root {root}: no hosts/ folder there")
    return lab_root, (list(dict.fromkeys(names)) or None)


def _bare(t: str) -> bool:
    return bool(t) and "/" not in t and t not in (".", "..")


def _host_named(name: str, lab_root: Path | None) -> Path:
    """A bare host name, as the folder hosts/<name> of the lab (``--root``, else found upward)."""
    lab = lab_root or find_root()
    folder = lab / "hosts" / name
    if not (folder / "host.py").is_file():
        known = sorted(d.name for d in (lab / "hosts").iterdir() if (d / "host.py").is_file()) \
            if (lab / "hosts").is_dir() else []
        raise Usage(f"{name}: no such host in the lab at {lab} (no hosts/{name}/host.py; its hosts: "
                    f"{', '.join(known) or 'none'})")
    return folder


def _root(args) -> Path:
    return resolve_targets([], args.root)[0]


def load_selected(root: Path, only: list[str] | None, *, placeholders: bool = False, loaded=None, compiling=None):
    """The validated lab and its warnings; LabError if a named host has no host.py (homelab.load)."""
    from .load import load_selected as load

    return load(root, only, placeholders=placeholders, loaded=loaded, compiling=compiling)


def _nix(args):
    from .pynix_eval import Nix

    return Nix(timeout=getattr(args, "nix_timeout", 120.0))


def _typed(options_class, args):
    """An operation's typed options (an attrs class whose fields are named as the command's flags) from args."""
    import attrs

    return options_class(**{f.name: getattr(args, f.name) for f in attrs.fields(options_class)})


def _dump(data) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


# ---------------------------------------------------------------- commands


def cmd_build(args) -> int:
    from . import precompile  # stands alone: its helper compiles the host.py files while the rest is imported

    root, only = resolve_targets(args.hosts, args.root)
    compiling = precompile.early(str(root / "hosts"))
    try:
        from . import gcpause, splitprep

        # the lab's millions of objects live until the command ends: the collector, back on after the build,
        # would scan them again for each few thousand the no-op record makes (1.5 s of a 10,000-host build's 2 s
        # record); a whole build of a large lab compiles its shared modules beside the validation
        # (homelab.splitprep.ahead)
        with gcpause.paused(), splitprep.ahead(not only and not args.check and not args.no_verify) as loaded:
            return _build_command(args, root, only, loaded, compiling)
    finally:
        if compiling is not None:
            compiling.close()  # the load closed it, unless it never ran


def _build_command(args, root: Path, only: list[str] | None, loaded=None, compiling=None) -> int:
    from . import build

    lab, warnings = load_selected(root, only, loaded=loaded, compiling=compiling)
    said: list[str] = []  # the warnings, as printed: a recorded build replays them
    for w in warnings:
        said.append(str(w))
        _err(str(w))
    if args.no_verify:
        _err("warning: --no-verify: the files are written WITHOUT being read back by nix")
    res = build.build(root, lab=lab, hosts=only, check=args.check, force=args.force,
                      verify_with_nix=not args.no_verify, nix=_nix(args))
    if args.check:
        if res.stale:
            print(f"out of date (run `{program()} build`):")
            for rel in res.stale:
                print(f"  {rel}")
            return EXIT_CHANGED
        print(f"up to date: {len(lab.hosts) if only is None else len(only)} host"
              f"{'s' if (only is None and len(lab.hosts) != 1) or (only and len(only) != 1) else ''}, generated "
              "files match their sources")
        return EXIT_OK
    for w in res.warnings:
        if w not in warnings:
            said.append(str(w))
            _err(str(w))
    if res.also_built:
        _err(f"note: also building {', '.join(res.also_built)}: they import module files this build changes")
    rep = res.verified
    split = "the slower of two processes; " if res.processes == 2 else ""  # homelab.shard: they ran at once
    verified = (f"; nix read back {rep.files} generated files and parsed {rep.hand_written} hand-written ones in "
                f"{res.verify_seconds:.2f} s ({split}{rep.nix_calls} nix process{'es' if rep.nix_calls != 1 else ''})") \
        if rep else \
        "; NOT verified by nix (--no-verify)"
    n = len(res.hosts)
    hosts = f"{n} host{'s' if n != 1 else ''}"
    print(f"{hosts}: wrote {len(res.written)}, unchanged {len(res.unchanged)}"
          + (f", removed {len(res.removed)}" if res.removed else "") + verified)
    if not args.quiet:
        for rel in res.written:
            print(f"  wrote {rel}")
        for rel in res.removed:
            print(f"  removed {rel}")
    _record(root, lab, only, args, res, hosts, said)
    return EXIT_OK


def _record(root: Path, lab, only, args, res, hosts: str, said: list[str]) -> None:
    """After a whole build nix verified, from ``python -m homelab``: what the next no-op build may answer with."""
    from . import uptodate

    if not uptodate.RECORD:
        return
    if only is not None or res.verified is None:  # a part of the lab, or unverified: nothing to answer with
        uptodate.forget(root)
        return
    import shutil

    rep = res.verified
    files = len(res.written) + len(res.unchanged)
    from .load import realpath

    folders: dict[str, str] = {}  # each host's folder resolved once
    base = str(root / "hosts") + "/"  # plain strings: a lab of 10,000 hosts has 10,000 imports
    hand = sorted({realpath(_joined(base + h.hostname, imp), folders) for h in lab.hosts for imp in h.imports
                   if not _walked(imp)})
    nix = shutil.which("nix-instantiate")
    extra = hand + uptodate.loaded_code() + ([os.path.realpath(nix)] if nix else [])
    uptodate.save(str(root), extra,
                  check_line=f"up to date: {hosts}, generated files match their sources",
                  build_line=f"{hosts}: wrote 0, unchanged {files}; nothing changed since the build of {{when}}, "
                             f"which nix verified ({rep.files} generated files read back, {rep.hand_written} "
                             "hand-written ones parsed)",
                  warnings=said, known=res.digests)


def _walked(imp: str) -> bool:
    """Whether the record's walk of hosts/ (``uptodate.fingerprint``) reads a host's import ``imp`` itself: named
    below the host's folder without ``..``, it is a file of that walk (a link: where it leads, that file's times
    and content; a linked folder on the way is walked too), so it needs no place among the files outside the lab
    (resolving and stat'ing 10,000 hardware files took 40,000 system calls).  Any other import is resolved and
    stat'ed beside the lab."""
    from .uptodate import SKIPPED  # what the walk leaves out

    parts = imp.split("/")
    return not imp.startswith("/") and ".." not in parts and not any(p in SKIPPED for p in parts)


def _joined(folder: str, imp: str) -> str:
    """``str(Path(folder) / imp)`` for a host's relative import, without pathlib's cost: no ``.`` or empty parts,
    ``..`` kept (a link before it decides where it leads)."""
    if imp.startswith("/"):
        return str(Path(folder) / imp)
    parts = [p for p in imp.split("/") if p not in ("", ".")]
    return "/".join([folder, *parts]) if parts else folder


def cmd_check(args) -> int:
    from .build import prepare
    from .load import load

    root = _root(args)
    lab, problems = load(root)
    if lab is not None and not any(p.severity == "error" for p in problems):
        try:
            prepared = prepare(lab, problems)
            problems = list(prepared.warnings)
        except LabError as e:
            problems = [p for p in problems if p.severity != "error"] + e.problems
        else:  # the hand-written imports, as a build reads them: with nix, when there is one
            from . import readback
            from .pynix_eval import nix_available

            if nix_available():
                problems += readback.hand_written_problems(root, prepared.compiled, _nix(args),
                                                         sorted(prepared.compiled.hosts), prepared.pre)
    errors = [p for p in problems if p.severity == "error"]
    nixos: list = []
    if getattr(args, "nixos", False) and not errors:
        from .nixos_check import nixos_problems

        nixos = nixos_problems(root, lab, args, _nix(args), _err)
        if nixos is None:
            return EXIT_NO_NIX
        problems += nixos
        errors = [p for p in problems if p.severity == "error"]
    if args.json:
        _dump({"version": 1, "ok": not errors, "hosts": [h.hostname for h in lab.hosts] if lab else [],
               "problems": [{"where": p.where, "field": p.field, "reason": p.reason, "severity": p.severity}
                            for p in problems]})
        return EXIT_BAD_INPUT if errors else EXIT_OK
    if errors:
        raise LabError(problems)
    for w in problems:
        _err(str(w))
    evaluated = "; NixOS evaluated every host's system through the flake" if getattr(args, "nixos", False) else ""
    print(f"ok: {len(lab.hosts)} hosts, {len(problems)} warning{'s' if len(problems) != 1 else ''}{evaluated}")
    return EXIT_OK


def cmd_show(args) -> int:
    from . import build, files

    root, only = resolve_targets(args.hosts, args.root)
    lab, warnings = load_selected(root, only)
    p = build.prepare(lab, warnings)
    stale = files.stale(root, p.texts(only), prune=False)
    if stale:
        _err("note: these files differ from what a build would write; showing what is on disk:",
             *[f"  {s}" for s in stale])
    out = build.show(root, only, _nix(args))
    if args.json:
        _dump(out if len(out) != 1 or not only else out[only[0]])
    else:
        for h, opts in out.items():
            print(f"{h}:")
            for k, v in opts.items():
                print(f"  {k} = {json.dumps(v)}")
    return EXIT_OK


def cmd_plan(args) -> int:
    from . import plan as planmod

    root, only = resolve_targets(args.hosts, args.root)
    plan = planmod.compute(root, only)
    if args.json:
        _dump(plan)
    else:
        for w in plan["warnings"]:
            _err(f"{w['where']}: {w['field']}: warning: {w['reason']}")
        sys.stdout.write(planmod.render(plan, diffs=not args.no_diff, colour=planmod.use_colour(sys.stdout)))
    return EXIT_CHANGED if plan["changed"] else EXIT_OK


def cmd_graph(args) -> int:
    from . import graph
    from .load import load_or_raise

    root = _root(args)
    lab, _warnings = load_or_raise(root)
    topo = graph.topology(lab)
    if args.update_readme or args.check_readme:
        return _readme_command(args, root, graph.readme_block(topo), (graph.README_START, graph.README_END),
                               "Diagram", "diagram", "graph")
    if args.json:
        _dump(dict(topo, mermaid=graph.mermaid(topo), table=graph.table(topo)))
    elif args.format == "table":
        sys.stdout.write(graph.table(topo))
    else:
        sys.stdout.write(graph.mermaid(topo))
    return EXIT_OK


def _readme_command(args, root: Path, block: str, markers: tuple[str, str], heading: str, what: str,
                    command: str) -> int:
    """--update-readme / --check-readme for a generated README block (the diagram, the policy table)."""
    from . import graph

    readme = Path(args.readme) if args.readme else root / "README.md"
    try:
        old = readme.read_text(encoding="utf-8") if readme.exists() else ""
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{readme}: cannot be read: {getattr(e, 'strerror', None) or e}") from None
    new = graph.replace_block(old, block, markers, heading)
    if args.check_readme:
        if new != old:
            print(f"{readme}: the {what} is out of date (run `{program()} {command} --update-readme`)")
            return EXIT_CHANGED
        print(f"{readme}: the {what} is up to date")
        return EXIT_OK
    if new != old:
        graph.write_atomic(readme, new)
        print(f"{readme}: {what} updated")
    else:
        print(f"{readme}: {what} already up to date")
    return EXIT_OK


def cmd_policy(args) -> int:
    from . import policy
    from .load import load_or_raise

    root = _root(args)
    lab, _warnings = load_or_raise(root)
    if args.update_readme or args.check_readme:
        return _readme_command(args, root, policy.readme_block(lab), (policy.README_START, policy.README_END),
                               "Network policy", "policy table", "policy")
    if args.json:
        _dump(policy.to_json(lab))
    else:
        sys.stdout.write(policy.table(lab))
    return EXIT_OK


def cmd_expect(args) -> int:
    from . import expect

    root, only = resolve_targets(args.hosts, args.root)
    lab, _ = load_selected(root, only)
    names = only or [h.hostname for h in lab.hosts]
    out = expect.lab_expectations(lab, names, scope=args.scope)
    if args.json:
        data = {n: e.to_json() for n, e in out.items()}
        _dump(data[only[0]] if only and len(only) == 1 else data)
    else:
        print("\n\n".join(expect.text(e) for e in out.values()))
    return EXIT_OK


def cmd_vm(args) -> int:
    from . import vm

    root, only = resolve_targets(args.hosts, args.root)
    lab, _ = load_selected(root, only)
    return vm.run(lab, root, list(only or []), _typed(vm.VmOptions, args))


def cmd_init(args) -> int:
    from . import init

    done = init.init(Path(args.dir), example=args.example, force=args.force, homelab_url=args.homelab_url)
    prog = program()
    print(f"{prog} init: a new lab in {done.root} ({done.example} example)")
    if not args.quiet:
        for rel in done.written:
            print(f"  wrote {rel}")
    for rel in done.kept:
        print(f"  kept {rel} (already there)")
    if done.git:
        print(f"git: {done.git}")
    print("next:")
    for rel in done.placeholders:
        print(f"  replace {rel} with the machine's own (nixos-generate-config --show-hardware-config)")
    print(f"  cd {shlex.quote(str(done.root))} && {prog} build{' && git add -A' if done.tracked else ''} && {prog} test")
    return EXIT_OK


def cmd_test(args) -> int:
    from . import labtest

    if args.suite_path:
        from .harness import VM_TESTS

        print(VM_TESTS)
        return EXIT_OK
    root, only = resolve_targets(args.hosts, args.root)
    if not args.json:
        print(f"homelab test: the lab in {root}")

    def show(o) -> None:
        if not args.json:
            print(f"  {o.status:<8} {o.name}: " + o.detail.replace("\n", "\n" + " " * 11))

    outcomes = labtest.run(root, nix=_nix(args), hosts=only, vm=args.vm, report=show)
    counts = {s: sum(o.status == s for o in outcomes) for s in (labtest.PASSED, labtest.FAILED, labtest.SKIPPED)}
    if args.json:
        _dump({"version": 1, "root": str(root), "ok": not counts[labtest.FAILED],
               "results": [o.to_json() for o in outcomes]})
    else:
        print(", ".join(f"{n} {s}" for s, n in counts.items()))
    return EXIT_CHANGED if counts[labtest.FAILED] else EXIT_OK
def cmd_deploy(args) -> int:
    from . import deploy

    root, only = resolve_targets(args.hosts, args.root)
    lab, warnings = load_selected(root, only)
    for w in warnings:
        _err(str(w))
    return deploy.deploy(lab, root, only, _typed(deploy.DeployOptions, args))


def cmd_verify(args) -> int:
    from . import deploy

    root, only = resolve_targets(args.hosts, args.root)
    lab, _ = load_selected(root, only)
    return deploy.verify(lab, root, only, _typed(deploy.VerifyOptions, args))


def cmd_completion(args) -> int:
    from . import completion

    sys.stdout.write(completion.script(args.shell, build_parser("homelab")))
    return EXIT_OK


def cmd_wake(args) -> int:
    from . import power

    root, only = resolve_targets(args.hosts, args.root)
    lab, _ = load_selected(root, only)
    return power.wake(lab, root, only[0], _typed(power.WakeOptions, args))


def cmd_sleep(args) -> int:
    from . import power

    root, only = resolve_targets(args.hosts, args.root)
    lab, _ = load_selected(root, only)
    return power.sleep(lab, root, only[0], _typed(power.SleepOptions, args))


def cmd_secrets(args) -> int:
    """``homelab secrets set|edit|rekey|list|hostkey``: the library is homelab.secretstore; this parses and reports."""
    from . import secretstore as st

    from .load import load_or_raise

    root = _root(args)
    lab, _ = load_or_raise(root, secrets=False)  # what it reports, these commands fix
    return _secrets(st, root, lab, args)


def _secrets(st, root: Path, lab, args) -> int:
    from .model import SECRET_NAME

    if args.action == "set" and not SECRET_NAME.match(args.name):
        raise Usage(f"secrets set: the name given is not a secret name (lower-case letters, digits, '.', '_' and "
                    f"'-'; up to 63) {NOT_SHOWN}: homelab secrets set NAME --host HOST < file-holding-the-value")
    if args.action == "set" and args.stray:
        raise Usage("secrets set: the value comes from standard input, never from the command line (where shell "
                    "history and ps show it); the extra argument was not used, and it may be in your shell's "
                    "history now: if it was a real secret, replace it")
    return {"set": _secrets_set, "edit": _secrets_edit, "rekey": _secrets_rekey, "hostkey": _secrets_hostkey,
            "list": _secrets_list}[args.action](st, root, lab, args)


def _secrets_set(st, root: Path, lab, args) -> int:
    if sys.stdin.isatty():
        import getpass

        value = getpass.getpass(f"value of {args.name} (not echoed): ").encode()
    else:
        value = sys.stdin.buffer.read()
    hosts = [_host_name(h) for h in args.host]
    e = st.set_secret(root, lab, args.name, value, hosts=hosts, cluster=args.cluster, add=not args.only)
    del value
    print(f"wrote {st.age_file(e.name)} ({len((root / st.age_file(e.name)).read_bytes())} bytes) for "
          + ", ".join(e.readers))
    return EXIT_OK


def _secrets_edit(st, root: Path, lab, args) -> int:
    changed = st.edit(root, lab, args.name, identity=args.identity)
    print(f"{st.age_file(args.name)}: " + ("encrypted again with the new value" if changed else "unchanged"))
    return EXIT_OK


def _secrets_rekey(st, root: Path, lab, args) -> int:
    done = st.rekey(root, lab, identity=args.identity, names=args.names or None)
    for r in done:
        change = "; ".join(x for x in (f"now also {', '.join(r.added)}" if r.added else "",
                                       f"no longer {', '.join(r.removed)}" if r.removed else "") if x)
        print(f"rekeyed {st.age_file(r.name)}" + (f": {change}" if change else " (same readers)"))
    if not done:
        print("no secrets in this lab yet")
    return EXIT_OK


def _secrets_hostkey(st, root: Path, lab, args) -> int:
    name = _host_name(args.host_dir)
    pub = st.make_host_key(root, lab, name, force=args.force)
    print(f"wrote {st.host_key_pub(name)} ({pub.split()[0]} {st.fingerprint(pub)}) and {st.host_key_age(name)} "
          "(the private half, encrypted to the admins); `homelab install` hands it to the machine")
    if any(name in e.hosts for e in st.read_record(root).values()):
        print(f"secrets for {name} were encrypted to its old key: run `homelab secrets rekey`")
    return EXIT_OK


def _secrets_list(st, root: Path, lab, args) -> int:
    rows = st.status(root, lab)
    if args.json:
        import attrs

        _dump({"version": 1, "secrets": [attrs.asdict(r) for r in rows]})
        return EXIT_OK
    if not rows:
        print("no secrets in this lab yet (homelab secrets set NAME --host HOST < value)")
    for r in rows:
        who = ", ".join([*r.hosts, *(["the cluster"] if r.cluster else [])]) or "nobody yet"
        print(f"{r.name}: for {who}; {r.size} bytes; readable by: {', '.join(r.readers) or 'nobody (not set)'}")
        if r.needed_by:
            print(f"  needed by: {', '.join(r.needed_by)}")
        if r.missing:
            print(f"  cannot read it: {', '.join(r.missing)} (set it, or `homelab secrets rekey`)")
        if r.unknown:
            print(f"  {r.unknown} reader key{'s' if r.unknown != 1 else ''} no longer in the lab: `homelab secrets "
                  "rekey` takes them off")
    return EXIT_OK


def cmd_install(args) -> int:
    """``homelab install hosts/<name> --target root@ADDRESS``: the library is homelab.install."""
    from . import install as inst
    from . import secretstore as st

    root, only = resolve_targets(args.hosts, args.root)
    if (args.target is None) == (args.sd_card is None):
        raise Usage("install: give --target USER@ADDRESS (nixos-anywhere over SSH) or --sd-card DEVICE (a Raspberry "
                    "Pi's card), one of them")
    opts = inst.options(only[0], args.target, port=args.port, identity=args.identity or (), dry_run=args.dry_run,
                        hardware_config=not args.no_hardware_config, sd_card=args.sd_card)
    lab, warnings = load_selected(root, only, placeholders=inst.placeholders_taken(opts))
    for w in warnings:
        _err(str(w))
    rc = inst.install(root, lab, opts)  # its errors carry their exit codes (2, 4)
    if args.dry_run:
        return EXIT_OK
    if rc != 0:
        what = "writing the SD card" if args.sd_card else "nixos-anywhere"
        _err(f"homelab install: {what} failed (exit {rc}); its output above says why")
        return EXIT_STEP_FAILED
    print(f"installed {only[0]}; add what changed to git: {st.host_key_pub(only[0])} {st.host_key_age(only[0])} "
          f"hosts/{only[0]}/hardware-configuration.nix, then `homelab build` and `homelab deploy`")
    return EXIT_OK


def _host_name(arg: str) -> str:
    """``hosts/yomogi`` or ``yomogi`` -> ``yomogi``."""
    p = Path(arg)
    return p.name if p.parent.name == "hosts" or p.parent == Path(".") else arg


# ---------------------------------------------------------------- parser


def _hosts(p, help_: str = "hosts by name or folder, e.g. yomogi or hosts/yomogi (all hosts when none are named)",
           nargs: str = "*"):
    p.add_argument("hosts", nargs=nargs, help=help_)


def _build_args(p) -> None:
    _hosts(p)
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 and list stale files if any")
    p.add_argument("--force", action="store_true", help="overwrite generated files even if edited by hand")
    p.add_argument("--no-verify", action="store_true",
                   help="write without reading the files back with nix (the output says so)")
    p.add_argument("--no-cache", action="store_true",
                   help="build in full even when nothing changed since the last build (a host.py that reads "
                        "files or environment variables of its own needs it; see homelab/uptodate.py)")


def _check_args(p) -> None:
    p.add_argument("--json", action="store_true", help="print JSON: {ok, hosts, problems: [{where, field, reason, "
                   "severity}]}")
    p.add_argument("--nixos", action="store_true", help="also evaluate each host's real NixOS system through the "
                   "lab's flake (needs nixpkgs: exit 4 where it cannot be fetched); run it before deploying")
    p.add_argument("--override-input", nargs=2, action="append", default=[], metavar=("INPUT", "FLAKE_REF"),
                   help="with --nixos: use FLAKE_REF for the flake's input INPUT (e.g. a local nixpkgs checkout)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="with --nixos: hosts evaluated at once (default: up to 4, at most the cores)")


def _show_args(p) -> None:
    _hosts(p)
    p.add_argument("--json", action="store_true", help="print JSON: {option path: value}")


def _plan_args(p) -> None:
    _hosts(p, "host folders, e.g. hosts/yomogi (default: every host, and generated files no longer produced "
               "count too)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON (see docs/json.md)")
    p.add_argument("--no-diff", action="store_true", help="list the files only, without the diff")


def _readme_args(p, what: str, marker: str) -> None:
    """--update-readme / --check-readme / --readme for a block the command keeps in the README."""
    p.add_argument("--update-readme", action="store_true",
                   help=f"rewrite the {what} between the README's <!-- homelab {marker} --> markers")
    p.add_argument("--check-readme", action="store_true",
                   help=f"write nothing; exit 1 if the README's {what} is out of date")
    p.add_argument("--readme", help="the README to update or check (default: README.md in the lab's folder)")


def _graph_args(p) -> None:
    p.add_argument("--format", choices=("mermaid", "table"), default="mermaid",
                   help="mermaid diagram (default) or the hardware/role table (markdown)")
    p.add_argument("--json", action="store_true", help="print the topology as JSON (see docs/json.md)")
    _readme_args(p, "diagram", "graph")


def _policy_args(p) -> None:
    p.add_argument("--json", action="store_true", help="print the flow table as JSON (see docs/json.md)")
    _readme_args(p, "policy table", "policy")


def _expect_args(p) -> None:
    _hosts(p)
    p.add_argument("--json", action="store_true", help="print JSON (one host: its object; else keyed by host)")
    p.add_argument("--scope", choices=("host", "cluster"), help="only checks of this scope")


def _vm_args(p) -> None:
    _hosts(p, "host folders, e.g. hosts/yomogi (several boot side by side)", "+")
    p.add_argument("--dry-run", action="store_true", help="print the exact commands; run nothing")
    p.add_argument("--workdir", help="where keys, disk images and logs go (default: a new temporary folder)")
    p.add_argument("--ssh-port", type=int, help="the first host's forwarded SSH port (default: a free one)")
    p.add_argument("--boot-timeout", type=float, default=600, help="seconds to wait for SSH (default 600)")
    p.add_argument("--allow-tcg", action="store_true",
                   help="boot without KVM under QEMU's emulation (very slow); by default a missing KVM stops here")
    p.add_argument("--keep", action="store_true", help="leave the VMs running after the suite")
    p.add_argument("--suite", help="the vm-tests folder (default: the one homelab ships)")
    p.add_argument("--junitxml", help="write the suite's JUnit XML report here")
    p.add_argument("--pytest-args", default="", metavar="ARGS",
                   help='extra arguments for pytest, one string (e.g. "-k dns -x")')


def _init_args(p) -> None:
    p.add_argument("dir", metavar="DIR", help="the new lab's folder (created if missing)")
    p.add_argument("--example", choices=("starter", "seed"), default="starter",
                   help="starter: a control plane and a worker (default); seed: the seed article's three hosts")
    p.add_argument("--force", action="store_true",
                   help="write into a folder that is not empty (existing files are kept, never overwritten)")
    p.add_argument("--homelab-url", metavar="FLAKEREF",
                   help="the homelab flake the lab's flake.nix uses (default: the starter's)")


def _test_args(p) -> None:
    _hosts(p, "host folders, e.g. hosts/yomogi (every host when none are named)")
    p.add_argument("--vm", action="store_true",
                   help="also run the VM tests (nix flake check on the lab's flake; needs nixpkgs and KVM, minutes)")
    p.add_argument("--json", action="store_true", help="print {ok, results: [{name, status, detail}]} as JSON")
    p.add_argument("--suite-path", action="store_true",
                   help="print the folder of the vm-tests suite homelab ships (for pytest against live hosts) and "
                        "exit")
def _ssh_args(p) -> None:
    p.add_argument("--ssh-config", metavar="FILE", help="an ssh_config for every ssh call (ssh -F; also given to "
                   "nixos-rebuild through NIX_SSHOPTS and to the suite)")
    p.add_argument("--connect-timeout", type=int, default=10, metavar="SECONDS",
                   help="how long each ssh call may wait for a host to answer (ssh -o ConnectTimeout; default 10)")


def _checks_args(p, settle: float) -> None:
    p.add_argument("--suite", help="the vm-tests folder (default: the lab's vm-tests/, else the one homelab ships)")
    p.add_argument("--settle", type=float, default=settle, metavar="SECONDS",
                   help=f"run the checks again while some fail, for up to this long (default {settle:.0f})")


def _deploy_args(p) -> None:
    _hosts(p, "host folders, e.g. hosts/tokiwa (default: every host)")
    p.add_argument("--dry-run", action="store_true", help="print the exact commands, in order; run nothing")
    p.add_argument("--parallel", type=int, default=2, metavar="N",
                   help="switch up to N hosts at a time after the control plane (default 2)")
    p.add_argument("--no-rollback", action="store_true",
                   help="leave a host that fails its checks at its new generation (the rollout still stops)")
    p.add_argument("--ready-timeout", type=float, default=300, metavar="SECONDS",
                   help="how long a joined worker may take to be Ready (default 300)")
    _checks_args(p, 120)  # services are still starting right after a switch
    _ssh_args(p)


def _verify_args(p) -> None:
    _hosts(p)
    p.add_argument("--scope", choices=("host", "cluster"), default="cluster",
                   help="cluster (default: everything a running lab must pass) or host (what holds on a lone host)")
    p.add_argument("--dry-run", action="store_true", help="print the suite's command; run nothing")
    _checks_args(p, 0)
    _ssh_args(p)


def _wake_args(p) -> None:
    _hosts(p, "the host folder, e.g. hosts/tokiwa", 1)
    p.add_argument("--broadcast", metavar="ADDR", help="where the magic packet goes (default: the LAN's broadcast "
                   "address)")
    p.add_argument("--port", type=int, default=9, metavar="N", help="UDP port of the magic packet (default 9)")
    p.add_argument("--no-wait", action="store_true", help="send the magic packet and stop")
    p.add_argument("--timeout", type=float, default=600, metavar="SECONDS",
                   help="how long to wait for SSH and the node to be Ready (default 600)")
    _ssh_args(p)


def _completion_args(p) -> None:
    from .completion import SHELLS

    p.add_argument("shell", choices=SHELLS, help="the shell to complete in")


def _sleep_args(p) -> None:
    _hosts(p, "the host folder, e.g. hosts/tokiwa", 1)
    p.add_argument("--force", action="store_true", help="power off the control plane while workers are up, or a "
                   "node whose drain failed")
    p.add_argument("--no-wait", action="store_true", help="do not wait until the host stops answering SSH")
    p.add_argument("--timeout", type=float, default=300, metavar="SECONDS",
                   help="how long to wait until the host is off (default 300)")
    _ssh_args(p)


def _secrets_args(p) -> None:
    p.quiet_values = True  # its errors never repeat what was typed (_Parser)
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    s = sub.add_parser("set", help="encrypt a secret from standard input (never the command line) to its readers")
    s.add_argument("name", help="the secret's name, as in Secret(\"name\")")
    s.add_argument("stray", nargs="*", help=argparse.SUPPRESS)  # a value given here is refused, never echoed
    s.add_argument("--host", action="append", default=[], metavar="H",
                   help="a host that decrypts it at activation (agenix); repeat for several")
    s.add_argument("--cluster", action="store_true", help="for Kubernetes: the admins put it into the cluster")
    s.add_argument("--only", action="store_true",
                   help="readers are exactly these hosts (default: add them to the secret's hosts)")
    e = sub.add_parser("edit", help="$EDITOR on a secret's value (a private 0600 file, removed after)")
    e.add_argument("name")
    r = sub.add_parser("rekey", help="encrypt secrets again to their readers' current keys (values kept)")
    r.add_argument("names", nargs="*", help="only these secrets (default: all)")
    k = sub.add_parser("hostkey", help="make a host's SSH host key before its install (public half in the lab, "
                       "private half encrypted to the admins)")
    k.add_argument("host_dir", metavar="hosts/NAME")
    k.add_argument("--force", action="store_true", help="replace the host key the lab has")
    ls = sub.add_parser("list", help="who can read what")
    ls.add_argument("--json", action="store_true", help="print JSON")
    for q in (s, e, r, k, ls):
        q.quiet_values = True
        q.add_argument("--root", default=argparse.SUPPRESS,
                       help="the lab's folder (default: found from the current folder upward)")
    for q in (e, r):
        q.add_argument("--identity", metavar="FILE", action="append",
                       help="your private SSH key (default: $HOMELAB_AGE_IDENTITY, ~/.ssh/id_ed25519, ~/.ssh/id_rsa)")


def _install_args(p) -> None:
    _hosts(p, "the host folder, e.g. hosts/tokiwa", 1)
    p.add_argument("--target", metavar="USER@ADDRESS",
                   help="where the machine answers SSH now (any Linux, or a NixOS installer), e.g. root@192.168.10.11")
    p.add_argument("--sd-card", metavar="DEVICE", help="instead: write an aarch64 host's SD card image to this card "
                   "(e.g. /dev/sdb) and its host key onto the card's root partition")
    p.add_argument("--port", type=int, default=22, help="its SSH port (default 22)")
    p.add_argument("--identity", metavar="FILE", action="append",
                   help="your private SSH key, to decrypt the host key (default: $HOMELAB_AGE_IDENTITY, ~/.ssh/id_*)")
    p.add_argument("--no-hardware-config", action="store_true",
                   help="keep the lab's hardware-configuration.nix (default: nixos-anywhere writes the machine's own)")
    p.add_argument("--dry-run", action="store_true", help="print the exact commands; run nothing")


# name -> (function, help, example, arguments)
COMMANDS: dict[str, tuple[Callable, str, str, Callable | None]] = {
    "build": (cmd_build, "write the NixOS modules of the named hosts (all when none named), verified by nix",
              "python -m homelab build hosts/yomogi", _build_args),
    "check": (cmd_check, "validate the whole lab and list every problem", "python -m homelab check --json", _check_args),
    "show": (cmd_show, "print the NixOS option values a host sets, read back from the files by nix",
             "python -m homelab show hosts/yomogi --json", _show_args),
    "plan": (cmd_plan, "show which generated files a build would change, with a diff; writes nothing "
             "(exit 1 when something would change)", "python -m homelab plan hosts/yomogi", _plan_args),
    "graph": (cmd_graph, "draw the lab from the model: mermaid diagram, hardware/role table, or JSON",
              "python -m homelab graph --format table", _graph_args),
    "policy": (cmd_policy, "print the lab's network policy: who may reach which host on which port, and why",
               "python -m homelab policy", _policy_args),
    "expect": (cmd_expect, "print what must be true on a running host (derived from the model), for vm-tests",
               "python -m homelab expect hosts/yomogi --json", _expect_args),
    "vm": (cmd_vm, "build a host's VM, boot it with SSH forwarded, run the vm-tests suite on it, shut it down",
           "python -m homelab vm hosts/tokiwa --dry-run", _vm_args),
    "init": (cmd_init, "start a new lab in a folder: hosts, flake.nix, README, .gitignore, CI script",
             "python -m homelab init mylab", _init_args),
    "test": (cmd_test, "run homelab's tests on the lab: generated files current, nix read-back, the firewall, "
             "nginx and CoreDNS run by real programs, the VM tests with --vm (exit 1 when one fails)",
             "python -m homelab test", _test_args),
    "deploy": (cmd_deploy, "switch the hosts with nixos-rebuild (control plane first), join new workers, check "
               "each live and roll back a host that fails (exit 1)", "python -m homelab deploy --dry-run",
               _deploy_args),
    "verify": (cmd_verify, "run the live checks (the vm-tests suite over SSH) against running hosts (exit 1 when "
               "one fails)", "python -m homelab verify hosts/tokiwa", _verify_args),
    "wake": (cmd_wake, "power a host on with a Wake-on-LAN magic packet, wait for SSH and its node to be Ready",
             "python -m homelab wake hosts/tokiwa", _wake_args),
    "sleep": (cmd_sleep, "drain a host's node and power it off over SSH (not the control plane while workers are "
              "up)", "python -m homelab sleep hosts/tokiwa", _sleep_args),
    "secrets": (cmd_secrets, "the lab's age-encrypted secrets: set, edit, rekey, list, hostkey (values on stdin, "
                "never in arguments)", "python -m homelab secrets set tailscale-auth-key --host yomogi < key.txt",
                _secrets_args),
    "install": (cmd_install, "install NixOS onto a machine with nixos-anywhere, with its host key made beforehand "
                "(so its secrets decrypt on first boot) and its hardware-configuration.nix written into the lab",
                "python -m homelab install hosts/tokiwa --target root@192.168.10.11 --dry-run", _install_args),
    "completion": (cmd_completion, "print a shell completion script (bash, zsh or fish) for the homelab command",
                   "python -m homelab completion bash > ~/.local/share/bash-completion/completions/homelab",
                   _completion_args),
}

# The codes of the one table (EXIT_CODES) each command ends with, and what each means for it: its --help lists
# these (and 70, 130, which every command may end with) instead of the whole table.
_BAD = "a problem in the lab description or a usage mistake, named by host, field and reason; nothing written"
_BUG = "nix or the option contract disagrees with what homelab generated: a homelab bug"
_NIX = "nix is missing or cannot be used here (the message says how to fix it)"
_README = "--check-readme: the README's block is out of date"
EXITS_OF: dict[str, dict[int, str]] = {
    "build": {EXIT_OK: "written (with --check: every generated file is up to date)",
              EXIT_CHANGED: "--check: a generated file is out of date (listed)",
              EXIT_BAD_INPUT: _BAD + " (also a generated file edited by hand)", EXIT_GENERATED: _BUG,
              EXIT_MISSING: _NIX + "; --no-verify writes without it"},
    "check": {EXIT_OK: "no problem (warnings may be listed); with --nixos, NixOS evaluated every host",
              EXIT_BAD_INPUT: _BAD + "; with --nixos, also what NixOS refuses, named by host", EXIT_GENERATED: _BUG,
              EXIT_MISSING: _NIX + "; with --nixos, also when the flake's inputs (nixpkgs) cannot be fetched"},
    "show": {EXIT_OK: "printed", EXIT_BAD_INPUT: _BAD, EXIT_GENERATED: _BUG, EXIT_MISSING: _NIX},
    "plan": {EXIT_OK: "nothing would change", EXIT_CHANGED: "a build would change files (listed)",
             EXIT_BAD_INPUT: _BAD},
    "graph": {EXIT_OK: "printed (or the README's diagram updated or up to date)", EXIT_CHANGED: _README,
              EXIT_BAD_INPUT: _BAD},
    "policy": {EXIT_OK: "printed (or the README's policy table updated or up to date)", EXIT_CHANGED: _README,
               EXIT_BAD_INPUT: _BAD},
    "expect": {EXIT_OK: "printed", EXIT_BAD_INPUT: _BAD},
    "vm": {EXIT_OK: "the suite passed on the VMs (or --dry-run printed the commands)",
           EXIT_CHANGED: "the suite failed on a VM", EXIT_BAD_INPUT: _BAD,
           EXIT_MISSING: "nix, KVM (without --allow-tcg), ssh or ssh-keygen is missing",
           EXIT_STEP_FAILED: "a VM's build or boot failed; its output says why"},
    "init": {EXIT_OK: "the lab was written", EXIT_BAD_INPUT: "refused (a folder not empty without --force, one "
             "holding a lab, a bad --homelab-url); nothing written"},
    "test": {EXIT_OK: "every part passed (or was skipped, saying why)", EXIT_CHANGED: "a part failed",
             EXIT_BAD_INPUT: _BAD, EXIT_MISSING: _NIX},
    # the README's table of the operations says the same, word for word (tests/test_cli_conveniences.py)
    "deploy": {EXIT_OK: "every host switched and passed its checks, and the cluster checks passed",
               EXIT_CHANGED: "a host failed its switch, checks or join, or was unreachable (a failed switch or failed "
                             "checks are rolled back unless `--no-rollback`), or the cluster checks failed",
               EXIT_BAD_INPUT: "bad input, invalid lab, stale generated files, no flake",
               EXIT_MISSING: "ssh or pytest-testinfra missing; neither nixos-rebuild nor nix (or no flake.lock to pin "
                             "nixos-rebuild by)"},
    "verify": {EXIT_OK: "every check passed",
               EXIT_CHANGED: "a check failed, a host did not answer SSH, or the suite could not run",
               EXIT_BAD_INPUT: "bad input", EXIT_MISSING: "ssh or pytest-testinfra missing"},
    "wake": {EXIT_OK: "the host answers SSH (and its node is Ready and uncordoned)",
             EXIT_CHANGED: "not up in time, or the packet could not be sent",
             EXIT_BAD_INPUT: "bad input, no `wake_on_lan`", EXIT_MISSING: "ssh missing"},
    "sleep": {EXIT_OK: "drained and off", EXIT_CHANGED: "drain or power-off failed, or the host did not answer",
              EXIT_BAD_INPUT: "bad input; the control plane while workers are up (without `--force`)",
              EXIT_MISSING: "ssh missing"},
    "completion": {EXIT_OK: "printed", EXIT_BAD_INPUT: "a shell homelab has no completion for"},
    "secrets": {EXIT_OK: "done (set, edited, rekeyed, listed, a host key made)",
                EXIT_BAD_INPUT: _BAD + " (also: not a reader of the secret, no admin key age can encrypt to, a "
                "value given as an argument)",
                EXIT_MISSING: "age (or ssh-keygen, for hostkey) is missing"},
    "install": {EXIT_OK: "installed (or --dry-run printed the commands)",
                EXIT_BAD_INPUT: _BAD + " (also: stale generated files, no flake, a host key without its private "
                "half, not a block device)",
                EXIT_MISSING: "nixos-anywhere and nix (or age, ssh-keygen) are missing",
                EXIT_STEP_FAILED: "nixos-anywhere, or writing the SD card, failed; its output says why"},
}
ALWAYS = (EXIT_CRASH, EXIT_INTERRUPTED)  # any command may end so


def _exit_table(command: str | None = None) -> str:
    """The whole table, or (for one command) its own codes and what they mean for it."""
    if command is None:
        return exit_table()
    table = dict(EXIT_CODES)
    own = {**EXITS_OF[command], **{code: table[code] for code in ALWAYS}}
    return "exit codes:\n" + "\n".join(f"  {code:>3}  {own[code]}" for code in sorted(own))


def _version() -> str:
    from . import __version__

    return __version__


NOT_SHOWN = "(not shown: it may be a secret's value; values come from standard input only)"


class _Parser(argparse.ArgumentParser):
    """argparse, except that under ``homelab secrets`` an error never repeats what was typed: argparse quotes an
    unknown choice or an ignored ``--flag=...`` argument, and a value may be what was typed there."""

    quiet_values = False

    def error(self, message: str):
        if self.quiet_values:
            import re

            message = re.sub(r"(invalid choice: |explicit argument )'.*?'(?= \(choose from|$)", rf"\1{NOT_SHOWN}",
                             message)
        super().error(message)


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """parse_args, except that arguments ``homelab secrets`` does not understand are refused without naming them."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        if getattr(args, "command", None) == "secrets":
            sub = getattr(args, "action", None)
            parser.exit(2, f"{program()}: error: secrets{' ' + sub if sub else ''}: {len(extra)} argument"
                           f"{'s' if len(extra) != 1 else ''} not understood {NOT_SHOWN}; if one was a real "
                           "secret, it may be in your shell's history now: replace it\n")
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    prog = prog or program()
    p = _Parser(
        prog=prog,
        description="Typed NixOS + Kubernetes home lab: hosts/*.py -> NixOS modules, proven by real nix.",
        epilog=f"example: {prog} build hosts/yomogi\n\n" + _exit_table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"homelab {_version()}")
    p.add_argument("--debug", action="store_true", help="show the full traceback when homelab crashes")
    p.add_argument("-q", "--quiet", action="store_true", help="errors, warnings and the result only: no progress "
                   "lines, no list of files written")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (fn, help_, example, configure) in COMMANDS.items():
        example = example.replace("python -m homelab", prog, 1)
        sp = sub.add_parser(name, help=help_, description=help_,
                            epilog=f"example: {example}\n\n{_exit_table(name)}",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        sp.set_defaults(func=fn)
        sp.add_argument("--root", help="the lab's folder (holding hosts/); default: found from the current "
                        "folder upward")
        # also after the command (`homelab verify --quiet`); SUPPRESS keeps a --quiet given before it
        sp.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="errors, warnings and the result only: no progress lines, no list of files written")
        if configure:
            configure(sp)
    return p


def _run(args) -> int:
    from .pynix_eval import NixError, NixNotFound, NixUnusable

    try:
        return args.func(args)
    except UsageError as e:
        _err(f"homelab: {e}")
        return e.exit_code
    except NotVerified as e:
        _err(f"homelab: {args.command} reads every file back with nix before writing, and {e.message}; nothing "
             "was written (install nix, e.g. apt-get install nix-bin, or pass --no-verify to write unverified "
             "files)")
        return e.exit_code
    except MissingTool as e:
        _err(f"homelab: {args.command}: {e}")
        return e.exit_code
    except LabError as e:
        errors = [p for p in e.problems if p.severity == "error"]
        _err(f"homelab: {len(errors)} problem{'s' if len(errors) != 1 else ''}; nothing was written:")
        for p in e.problems:
            _err(f"  {p}")
        return e.exit_code
    except GeneratedCodeError as e:
        _err("homelab: the generated code breaks homelab's own rules (a homelab bug; please report it); nothing "
             "was written:", *[f"  {p}" for p in e.problems])
        return e.exit_code
    except ReadBackError as e:
        _err("homelab: nix disagrees with the model (a homelab bug; please report it); nothing was written:",
             *[f"  {p}" for p in e.problems])
        return e.exit_code
    except HomelabError as e:
        _err(f"homelab: {args.command}: {e}")
        return e.exit_code
    except NixUnusable as e:  # nix is there but cannot be used: nix's reason and how to fix it
        _err(f"homelab: {args.command} needs nix, and {e.message}; nothing was written",
             f"  to fix: {e.fix}")
        return EXIT_MISSING
    except NixNotFound as e:  # homelab.pynix_eval stands alone (no homelab imports): its errors map here
        _err(f"homelab: {args.command} needs nix: {e.message}; nothing was written")
        return EXIT_MISSING
    except NixError as e:
        _err(f"homelab: nix failed: {e}")
        return EXIT_GENERATED


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """The command line; ``prog``: the name the user ran it by (``homelab``, ``python -m homelab``)."""
    if prog:
        set_program(prog)
    parser = build_parser()
    args = _parse(parser, argv)
    try:
        with _sigterm_interrupts():
            rc = _run(args)
            sys.stdout.flush()  # a closed pipe shows here, not at exit
        return rc
    except Terminated:
        _err("homelab: interrupted (SIGTERM)")
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        _err("homelab: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return _closed_stdout()
    except Exception:  # noqa: BLE001 - a crash is a bug: say so, keep the traceback for --debug
        import traceback

        if args.debug:
            traceback.print_exc()
        else:
            last = traceback.format_exc().strip().splitlines()[-1]
            _err(f"homelab: crashed ({last}); this is a homelab bug, please report it. Run again with "
                 "--debug to see the traceback.")
        return EXIT_CRASH


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command was (like Ctrl-C's KeyboardInterrupt), so that every ``finally`` and
    ``with`` on the way out runs: a build's staging folder and its nix processes go, as on Ctrl-C."""


class _sigterm_interrupts:
    """SIGTERM raises :class:`Terminated` in the main thread while the command runs (once: a second SIGTERM
    ends the process at once), Ctrl-C KeyboardInterrupt as before; both wait while a nix process starts
    (homelab.pynix_eval.hold_interrupt).  The handlers before are put back after."""

    def __enter__(self):
        import signal
        import threading

        self._before: dict = {}
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            self._before[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._terminated)
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when started ignoring it
                self._before[signal.SIGINT] = signal.signal(signal.SIGINT, self._interrupted)
        return self

    @staticmethod
    def _terminated(signum, frame):
        import signal

        from .pynix_eval import hold_interrupt

        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if not hold_interrupt(Terminated):  # held while a nix process starts: raised once it is known
            raise Terminated()

    @staticmethod
    def _interrupted(signum, frame):
        from .pynix_eval import hold_interrupt

        if not hold_interrupt(KeyboardInterrupt):
            raise KeyboardInterrupt()

    def __exit__(self, *exc):
        import signal

        for sig, handler in self._before.items():
            signal.signal(sig, handler)
        return False


def _closed_stdout() -> int:
    """stdout was closed by the reader (``homelab show | head -1``): stop quietly, like other CLIs."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_OK
