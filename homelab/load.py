"""Reading a lab from disk: hosts/cluster.py and hosts/<name>/host.py.

User files are ordinary Python that build model objects.  While they run,
field problems are collected (not raised), so one run lists every mistake in
every file; a crash in a user file becomes a problem naming the file, not a
traceback.

A lab can bring its own roles: any Python module beside ``hosts/`` (e.g.
``roles/backup.py`` or ``myroles.py`` in the lab folder) can be imported from
``host.py`` while the lab loads, because the lab folder is on ``sys.path`` for
that time.  Modules a previous lab loaded from another folder are forgotten
first, so two labs in one process never see each other's roles.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import sys
import traceback
from pathlib import Path
from types import CodeType
from typing import Callable, Iterator

import attrs

from . import gcpause, starimport
from .errors import LabError, Problem, collecting, located
from .precompile import FROM as PRECOMPILE_FROM
from .precompile import Precompiled, compile_file
from .precompile import available as precompile_available
from .model import Cluster, Host, Lab, RaspberryPi4, Ssh, SystemdBoot, WakeOnLan, generated_path
from .role import Role
from .validate import problems_of, validate_cluster

_MISSING = re.compile(r"(?:(\w+)\.__init__\(\) )?missing \d+ required (?:positional |keyword-only )?arguments?: (.*)")
_UNEXPECTED = re.compile(r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'")


def _fielded() -> list[type]:
    """Classes whose unknown keyword arguments are named with the fields they do have: the model's and every
    role class (and the attrs classes role modules define) known in this process."""
    from . import roles  # noqa: F401 - the built-in roles, so their classes are among Role's subclasses

    out: list[type] = [Cluster, Host, RaspberryPi4, SystemdBoot, Ssh, WakeOnLan]
    todo = list(Role.__subclasses__())
    while todo:
        c = todo.pop()
        todo += c.__subclasses__()
        if attrs.has(c):
            out.append(c)
            # the value classes its module defines beside it (CorednsImage beside ControlPlane)
            module = sys.modules.get(c.__module__)
            out += [v for v in vars(module).values() if isinstance(v, type) and attrs.has(v)
                    and v.__module__ == c.__module__ and v not in out] if module else []
    return out


# the lab folders whose modules are importable right now, and the modules each one loaded
_LAB_MODULES: dict[str, set[str]] = {}


@contextlib.contextmanager
def lab_on_path(root: Path) -> Iterator[None]:
    """The lab folder on sys.path while its files run, so host.py can import the lab's own roles."""
    root_s = str(root.resolve())
    for other, names in list(_LAB_MODULES.items()):
        if other != root_s:  # another lab's roles must not leak into this one
            for n in names:
                sys.modules.pop(n, None)
            del _LAB_MODULES[other]
    before = set(sys.modules)
    sys.path.insert(0, root_s)
    try:
        yield
    finally:
        try:
            sys.path.remove(root_s)
        except ValueError:
            pass
        loaded = {n for n in set(sys.modules) - before
                  if (getattr(sys.modules[n], "__file__", None) or "").startswith(root_s + "/")}
        _LAB_MODULES.setdefault(root_s, set()).update(loaded)


def _user_line(e: BaseException, path: Path) -> str:
    """' line N' of the innermost frame of the user's file in ``e``'s traceback, or ''."""
    line = None
    for frame in traceback.extract_tb(e.__traceback__):
        if Path(frame.filename) == path:
            line = frame.lineno
    return f" line {line}" if line else ""


def unreadable(path: Path) -> str | None:
    """Why a lab source file cannot be run, or None: a dangling link, a folder, a device, no permission.

    A host whose host.py cannot be read is an error, never a host that quietly
    left the lab (a build would then prune its generated files)."""
    return _examine(path, 1)[0]


def _examine(path: Path | str, head: int, st: os.stat_result | None = None) -> tuple[str | None, bytes, bool]:
    """:func:`unreadable`'s answer, the file's first ``head`` bytes (b"" when it cannot be read) and whether
    ``path`` itself is a symbolic link: what loading asks of each host.py and hand-written import, found
    with one ``lstat`` (``st``: that ``lstat``, when the caller made it) and one read."""
    if st is None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return "is missing", b"", False
        except OSError as e:
            return f"cannot be read: {e.strerror or e}", b"", False
    link = stat.S_ISLNK(st.st_mode)
    if link:
        path = Path(path)
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        if not path.exists():
            return f"is a symbolic link to {target}, which does not exist", b"", True
        try:
            st = path.stat()
        except OSError as e:
            return f"is a symbolic link to {target}, which cannot be read: {e.strerror or e}", b"", True
    if stat.S_ISDIR(st.st_mode):
        return "is a folder, not a Python file", b"", link
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file", b"", link
    try:
        data = _read_head(path, head)
    except OSError as e:
        return f"cannot be read: {e.strerror or e}", b"", link
    return None, data, link


def _read_head(path: Path | str, n: int) -> bytes:
    """The first ``n`` bytes of a file (fewer: all of it), with plain system calls: a lab has thousands of
    files to look into, and a buffered file object for each cost more than the reading."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while n > 0:
            chunk = os.read(fd, n)
            if not chunk:
                break
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def generated_target(root: Path, path: Path | str, link: bool | None = None) -> str | None:
    """The lab-relative path of the generated file ``path`` leads to (through links too), or None.
    ``link``: whether ``path`` itself is a symbolic link, when its ``lstat`` told already."""
    try:
        real = realpath(str(path), _REAL_DIRS, link)
        base = _real_root(str(root))
    except (OSError, ValueError, RuntimeError):
        return None
    if not real.startswith(base + os.sep):
        return None
    rel = real[len(base) + 1:]
    return rel if generated_path(rel) else None


_REAL_ROOTS: dict[str, str] = {}
_REAL_DIRS: dict[str, str] = {}  # realpath()'s folders, for one load


def realpath(path: str, folders: dict[str, str], link: bool | None = None) -> str:
    """``os.path.realpath(path)``, each folder on the way resolved once per ``folders`` (a dict kept while
    nothing moves, e.g. one load): a lab's thousands of imports sit in a few folders each.  A folder is resolved
    first and the last name then looked at under it, which is what realpath does name by name; ``..``, a folder
    that is not one (missing) and the like go to realpath itself.  Past a symbolic link loop realpath stops
    resolving and the two may differ: give it only paths that were read (unreadable() refuses the others).
    ``link``: whether ``path`` itself is a symbolic link, when known (its last name, looked at under the real
    folder, is the same entry of the same folder)."""
    head, name = os.path.split(path)
    if name in ("", ".", "..") or head in ("", "/"):
        return os.path.realpath(path)
    if head not in folders:
        real = realpath(head, folders)
        folders[head] = real if os.path.isdir(real) else ""  # not a folder (missing, a link loop): realpath's
    if not folders[head]:
        return os.path.realpath(path)
    joined = os.path.join(folders[head], name)
    return os.path.realpath(joined) if (os.path.islink(joined) if link is None else link) else joined


def _real_root(root: str) -> str:
    """The lab folder's real path, worked out once per load (asked for every import of every host)."""
    if root not in _REAL_ROOTS:
        _REAL_ROOTS[root] = os.path.realpath(root)
    return _REAL_ROOTS[root]


def host_sources(root: Path, folders: dict[str, str] | None = None) -> tuple[list[Path], list[Problem]]:
    """Every hosts/<name>/host.py of the lab, and problems with the ones that cannot be read.

    A folder without host.py is not a host (its generated files are pruned by a
    build); a host.py that is there but cannot be read is an error.  ``folders``: a :func:`realpath` cache
    (one load's), given the real path of each host folder that is a folder, not a link (what
    :func:`realpath` would find with two more system calls per host).
    """
    hosts_dir = root / "hosts"
    found: list[Path] = []
    problems: list[Problem] = []
    try:
        with os.scandir(hosts_dir) as it:
            entries = sorted((e.name, e) for e in it)  # by name, as sorting the paths does
    except OSError:
        return found, problems  # no hosts/ folder: cluster.py is reported missing
    real_hosts = None
    for name, entry in entries:
        if name.startswith(".") or name == "__pycache__":
            continue
        d = hosts_dir / name
        host_py = d / "host.py"
        st = None
        try:  # the common case, a real folder holding host.py: the folder's type from the listing, one lstat
            if entry.is_dir(follow_symlinks=False):
                st = os.lstat(host_py)
                if folders is not None:
                    if real_hosts is None:
                        real_hosts = realpath(str(hosts_dir), folders)
                        folders.setdefault(str(hosts_dir), real_hosts)
                    folders.setdefault(str(d), os.path.join(real_hosts, name))
        except OSError:
            st = None  # looked at again below, as for any other entry
        if st is None:
            where = f"hosts/{name}"
            if d.is_symlink() and not d.exists():
                problems.append(Problem(where, "folder", unreadable(d) or "cannot be read"))
                continue
            if not d.is_dir():
                continue
            try:
                present = host_py.is_symlink() or host_py.exists()
                if not present:
                    os.listdir(d)  # an unreadable folder must not pass for an empty one
            except OSError as e:
                problems.append(Problem(where, "host.py", f"cannot be read: {e.strerror or e}"))
                continue
            if not present:
                continue
        why = _examine(host_py, 1, st)[0]
        if why:
            problems.append(Problem(f"hosts/{name}", "host.py", f"{why}; nothing was removed"))
            continue
        found.append(host_py)
    return found, problems


def run_file(path: Path, run_name: str, code: CodeType | None = None,
             digests: dict[str, bytes] | None = None) -> dict:
    """Run a Python file as ``runpy.run_path`` does for a plain script (its globals back; ``__name__`` is
    ``run_name``, ``__file__`` its path, the module in sys.modules while it runs, so classes it defines work),
    without runpy's search for an importer of the path (a zip file, a folder): a lab has thousands of host.py.
    ``code``: the file's code when it was compiled already (:mod:`homelab.precompile`); ``digests``: when this
    compiles it, given the SHA-256 of the bytes it compiled (:func:`homelab.precompile.compile_file`)."""
    import types

    if code is None:
        code = compile_file(str(path), digests)
    module = types.ModuleType(run_name)
    module.__dict__.update(__file__=str(path), __cached__=None, __loader__=None, __package__="", __spec__=None)
    saved = sys.modules.get(run_name)
    sys.modules[run_name] = module
    argv0 = sys.argv[0] if sys.argv else None
    if sys.argv:
        sys.argv[0] = str(path)
    try:
        exec(code, module.__dict__)
    finally:
        if sys.argv:
            sys.argv[0] = argv0
        if saved is None:
            sys.modules.pop(run_name, None)
        else:
            sys.modules[run_name] = saved
    return dict(module.__dict__)


def _run(path: Path, where: str, code: CodeType | None = None,
         digests: dict[str, bytes] | None = None) -> tuple[dict, list[Problem]]:
    problems: list[Problem] = []
    with located(where), collecting() as sink:
        try:
            ns = run_file(path, f"homelab_user_{where.replace('/', '_')}", code, digests)
        except SyntaxError as e:
            problems.append(Problem(where, path.name, f"syntax error on line {e.lineno}: {e.msg}"))
            ns = {}
        except TypeError as e:
            m = _MISSING.search(str(e))
            u = _UNEXPECTED.search(str(e))
            if m:
                cls = next((c for c in _fielded() if c.__name__ == m.group(1)), None)
                hints = {a.name: a.metadata.get("required") for a in attrs.fields(cls)} if cls else {}
                for name in re.findall(r"'([^']+)'", m.group(2)):
                    hint = hints.get(name)
                    problems.append(Problem(where, name, f"is required: {hint}" if hint else "is required"))
            elif u:  # Host(frob=1): name the field, and the fields there are
                cls = next((c for c in _fielded() if c.__name__ == u.group(1)), None)
                names = [a.name for a in attrs.fields(cls)] if cls else []
                known = (f"; it has: {', '.join(names)}" if names else "; it takes no arguments") if cls else ""
                field = u.group(2) if u.group(1) in ("Host", "Cluster") else f"{u.group(1)}.{u.group(2)}"
                problems.append(Problem(where, field, f"is not a field of {u.group(1)}{known}"))
            else:
                problems.append(Problem(where, path.name + _user_line(e, path), f"TypeError: {e}"))
            ns = {}
        except LabError as e:  # raised outside a validator (e.g. by the user's own code)
            problems.extend(e.problems)
            ns = {}
        except SystemExit as e:  # exit() in a user file must not end homelab without a word
            problems.append(Problem(where, path.name + _user_line(e, path), f"called exit({e.code!r}); "
                                    f"{path.name} only describes, it does not exit"))
            ns = {}
        except Exception as e:  # noqa: BLE001 - any crash in user code is a problem to show
            problems.append(Problem(where, path.name + _user_line(e, path), f"{type(e).__name__}: {e}"))
            ns = {}
    return ns, sink + problems


PLACEHOLDER = "# homelab: replace this file"  # the first line of the hardware files `homelab init` writes


def is_placeholder(path: Path) -> bool:
    """A hand-written file still holding ``homelab init``'s placeholder (its first line is the marker)."""
    try:
        head = _read_head(path, _HEAD)  # bytes: a text file object per import cost more than the check
    except OSError:
        return False
    return _placeholder_head(head, path)


def _placeholder_head(head: bytes, path: Path | str) -> bool:
    """:func:`is_placeholder` of the file ``path``, given its first ``_HEAD`` bytes."""
    text = head.decode("utf-8", errors="replace")
    end = _LINE_END.search(text)
    if end is None and len(head) == _HEAD:  # a first line longer than the head: read it as text
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return f.readline().strip() == PLACEHOLDER
        except OSError:
            return False
    return (text[:end.start()] if end else text).strip() == PLACEHOLDER


_HEAD = 4096
_LINE_END = re.compile(r"\r\n|\r|\n")  # what a text file's readline ends a line at (universal newlines)


def placeholder_problem(host: str, imp: str) -> Problem:
    """A host importing ``homelab init``'s placeholder hardware file: refused by every command but ``install``,
    whose nixos-anywhere writes the machine's own over it."""
    from .about import program

    return Problem(f"hosts/{host}", "imports", f"{imp} is the placeholder `homelab init` wrote: replace it with this "
                   "machine's own (on the machine: nixos-generate-config --show-hardware-config), or let "
                   f"`{program()} install hosts/{host} --target root@ADDRESS` write it (nixos-anywhere generates it "
                   "there); NixOS refuses a host without a root file system")


def placeholder_imports(root: Path, lab: Lab) -> dict[str, tuple[str, ...]]:
    """host -> its imports that still hold ``homelab init``'s placeholder (hosts that have none left out)."""
    out = {}
    for h in lab.hosts:
        found = tuple(imp for imp in h.imports if is_placeholder(Path(root) / "hosts" / h.hostname / imp))
        if found:
            out[h.hostname] = found
    return out


def load(root: Path, *, secrets: bool = True, placeholders: bool = False,
         loaded: Callable[[Lab], None] | None = None,
         compiling: Precompiled | None = None) -> tuple[Lab | None, list[Problem]]:
    """The lab under ``root`` and every problem found (errors and warnings).

    ``secrets``: also a secret a host needs and cannot read (``homelab secrets`` itself, which fixes those,
    loads without).  ``placeholders``: take ``homelab init``'s placeholder hardware files as they are
    (``homelab install``, which has nixos-anywhere write the machine's own; :func:`placeholder_imports` lists
    them); every other command refuses them.  ``loaded``: called with the lab once every host.py ran without an
    error, before the lab is validated (``homelab build`` starts its shared compile beside the validation:
    :func:`homelab.splitprep.ahead`).  ``compiling``: a helper started early on this lab's host.py files
    (:func:`homelab.precompile.early`), used and closed here.
    """
    root = Path(root)
    _REAL_ROOTS.clear()  # a folder may have been moved or relinked since the last load
    _SOURCE_DIGESTS.clear()
    _IMPORT_CONTENTS.clear()
    _REAL_DIRS.clear()
    with lab_on_path(root), gcpause.paused():  # thousands of hosts' objects, no garbage (homelab.gcpause)
        try:
            lab, problems = _load(root, placeholders, loaded, compiling)
        finally:
            if compiling is not None:
                compiling.close()
    if secrets and lab is not None:
        from .secretstore import lab_problems

        problems += lab_problems(root, lab)
    return lab, problems


def _load(root: Path, placeholders: bool = False, loaded: Callable[[Lab], None] | None = None,
          compiling: Precompiled | None = None) -> tuple[Lab | None, list[Problem]]:
    problems: list[Problem] = []
    cluster_py = root / "hosts" / "cluster.py"
    cluster = None
    why = unreadable(cluster_py)
    if why == "is missing":
        problems.append(Problem("cluster", "cluster.py", f"is missing (looked in {root / 'hosts'})"))
    elif why:
        problems.append(Problem("cluster", "cluster.py", why))
    else:
        ns, ps = _run(cluster_py, "cluster")
        problems += ps
        cluster = ns.get("cluster")
        if not ps and not isinstance(cluster, Cluster):
            problems.append(Problem("cluster", "cluster", "hosts/cluster.py must set `cluster = Cluster(...)`"))
            cluster = None
    host_files, unread = host_sources(root, _REAL_DIRS)
    problems += unread
    helper = compiling if compiling is not None else Precompiled([str(p) for p in host_files]) \
        if len(host_files) >= PRECOMPILE_FROM and precompile_available() else None
    imports: list[tuple[int, Path, tuple[str, ...], str]] = []
    try:
        with starimport.quick():  # each host.py's `from homelab import *` (homelab.starimport)
            hosts, sources = _load_hosts(host_files, helper, problems, imports)
    finally:
        if helper is not None:
            helper.close()
    if not host_files and not unread and cluster_py.is_file():
        problems.append(Problem("hosts", "host.py", "no hosts/<name>/host.py found"))
    if cluster is None or any(p.severity == "error" for p in problems):
        return None, _refused(cluster, _with_import_problems(root, problems, imports, placeholders))
    lab = Lab(cluster, hosts, sources)
    if loaded is not None:  # before the hand-written imports are looked at: a build's shared compile runs meanwhile
        loaded(lab)
    problems = _with_import_problems(root, problems, imports, placeholders)
    if any(p.severity == "error" for p in problems):
        return None, _refused(cluster, problems)
    return lab, problems + list(problems_of(lab))


def _refused(cluster: Cluster | None, problems: list[Problem]) -> list[Problem]:
    """The problems of a lab that did not load, with the cluster's own (a broken host.py must not hide them)."""
    if isinstance(cluster, Cluster) and not any(p.where == "cluster" for p in problems):
        problems += validate_cluster(cluster)
    return problems


def _with_import_problems(root: Path, problems: list[Problem], imports: list[tuple[int, Path, tuple[str, ...], str]],
                          placeholders: bool) -> list[Problem]:
    """``problems`` with each host's hand-written imports' problems (:func:`_import_problems`) where the host's
    own are: ``imports`` holds, per host that ran, the index in ``problems`` they go at, its host.py, its imports
    and where it is."""
    out: list[Problem] = []
    start = 0
    for at, host_py, imps, where in imports:
        found = _import_problems(root, host_py, imps, where, placeholders)
        if found:
            out += problems[start:at]
            out += found
            start = at
    return out + problems[start:] if start or out else problems


# id(host) -> (that Host, the path of the host.py it came from, the SHA-256 of the bytes run to make it): the
# last load's, so a build's no-op record hashes exactly the host.py content its hosts were made from, without
# reading each file again (:func:`source_digest`).  The Host is kept to make its id certain; cleared by each load.
_SOURCE_DIGESTS: dict[int, tuple[Host, str, bytes]] = {}


def source_digest(host: Host, path: str) -> str | None:
    """The SHA-256 (hex) of the host.py bytes whose run made ``host`` (this very object), read from ``path`` by
    the last load; None when that load did not make it from ``path`` (read the file)."""
    entry = _SOURCE_DIGESTS.get(id(host))
    if entry is None or entry[1] != path:  # held there, that Host's id is no other live object's
        return None
    return entry[2].hex()


def _load_hosts(host_files: list[Path], helper: Precompiled | None, problems: list[Problem],
                imports: list[tuple[int, Path, tuple[str, ...], str]]) -> tuple[list[Host], dict[str, str]]:
    """Run every host.py (``helper``: their code, compiled by a second process): the hosts, and where each came
    from; their problems are added to ``problems``, and what :func:`_with_import_problems` needs to add their
    hand-written imports' problems after them to ``imports`` (looked at later: at 10,000 hosts, 0.5 s of system
    calls a build's shared compile does not wait for)."""
    hosts: list[Host] = []
    sources: dict[str, str] = {}
    for host_py in host_files:
        where = f"hosts/{host_py.parent.name}"
        path = str(host_py)
        code = helper.code_for(path) if helper is not None else None
        compiled: dict[str, bytes] = {}  # the SHA-256 of the bytes of the code run, when compiled here
        ns, ps = _run(host_py, where, code, compiled)  # (filled only when there is no code yet)
        digest = helper.digests.pop(path, None) if code is not None else compiled.get(path)  # the helper's: its code
        problems += ps
        host = ns.get("host")
        if ps:
            continue
        if not isinstance(host, Host):
            problems.append(Problem(where, "host", "host.py must set `host = Host(...)`"))
            continue
        if host.hostname != host_py.parent.name:
            problems.append(Problem(where, "hostname", f"{host.hostname!r} differs from its folder name "
                                    f"{host_py.parent.name!r}; rename one of them"))
            continue
        if host.imports:
            imports.append((len(problems), host_py, host.imports, where))
        if digest is not None:
            _SOURCE_DIGESTS[id(host)] = (host, path, digest)
        hosts.append(host)
        sources[host.hostname] = where
    return hosts, sources


# path -> the whole content of a hand-written import as the last load read it (one under _HEAD bytes): a build
# stages these very bytes for nix and hashes them for its no-op record (:func:`import_contents`), without reading
# each file again; an edit since the load is then a change to the record.  Cleared by each load.
_IMPORT_CONTENTS: dict[str, bytes] = {}


def import_contents(lab: Lab) -> dict[str, bytes]:
    """The hand-written imports' contents the last load read whole, by the path it read them at (``root``/...),
    when ``lab``'s hosts are the very ones that load made (else none: a lab made or changed in code since)."""
    if all(id(h) in _SOURCE_DIGESTS for h in lab.hosts):  # held there, each Host's id is no other object's
        return _IMPORT_CONTENTS
    return {}


def _import_problems(root: Path, host_py: Path, imports: tuple[str, ...], where: str,
                     placeholders: bool) -> list[Problem]:
    """What is wrong with a host's hand-written imports (``imports``: valid relative paths): missing, unreadable,
    a generated file, ``homelab init``'s placeholder.  Each file is looked at with one ``lstat`` and one read:
    a lab has thousands of them."""
    out: list[Problem] = []
    folder = None
    for imp in imports:
        name = imp[2:] if imp.startswith("./") else imp
        if "/" in name:  # in another folder: the path as pathlib spells it
            path = str(host_py.parent / imp)
        else:  # beside host.py, as pathlib would join it ('./' dropped)
            folder = folder or str(host_py.parent)
            path = f"{folder}/{name}"
        why, head, link = _examine(path, _HEAD)
        if why is None and len(head) < _HEAD:  # all of it (a regular file's read stops short only at its end)
            _IMPORT_CONTENTS[path] = head
        if why == "is missing":
            out.append(Problem(where, "imports", f"{imp!r} does not exist next to host.py"))
        elif why:
            out.append(Problem(where, "imports", f"{imp!r} {why}"))
        elif target := generated_target(root, path, link):
            out.append(Problem(where, "imports", f"{imp!r} leads to {target}, a file homelab generates; import only "
                               "hand-written Nix (what a generated file sets comes from host.py: roles, options)"))
        elif not placeholders and _placeholder_head(head, path):
            out.append(placeholder_problem(host_py.parent.name, imp))
    return out


def load_or_raise(root: Path, *, secrets: bool = True, placeholders: bool = False,
                  loaded: Callable[[Lab], None] | None = None,
                  compiling: Precompiled | None = None) -> tuple[Lab, list[Problem]]:
    """The lab and its warnings; LabError listing every error if there is any (``loaded``, ``compiling``: as for
    :func:`load`)."""
    lab, problems = load(root, secrets=secrets, placeholders=placeholders, loaded=loaded, compiling=compiling)
    errors = [p for p in problems if p.severity == "error"]
    if errors or lab is None:
        raise LabError(errors or problems)
    return lab, [p for p in problems if p.severity != "error"]


def load_selected(root: Path, only: list[str] | None, *, placeholders: bool = False,
                  loaded: Callable[[Lab], None] | None = None,
                  compiling: Precompiled | None = None) -> tuple[Lab, list[Problem]]:
    """The validated lab and its warnings; LabError if a named host has no host.py (``loaded``, ``compiling``:
    as for :func:`load`)."""
    lab, warnings = load_or_raise(root, placeholders=placeholders, loaded=loaded, compiling=compiling)
    if only:
        known = {h.hostname for h in lab.hosts}
        missing = [n for n in only if n not in known]
        if missing:
            raise LabError([Problem(f"hosts/{n}", "host.py", "no such host (no hosts/<name>/host.py)")
                            for n in missing])
    return lab, warnings
