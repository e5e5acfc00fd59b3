"""How generated files are checked: real nix reads them back, Python compares.

nixpkgs is not needed: each generated module is called with a stand-in
``lib`` whose ``mkForce``/``mkDefault`` return tagged values (so priorities stay
visible) and a stand-in ``pkgs`` whose attributes are tagged package
references.  Generated modules never read ``config``; the stand-in throws if
they do.  One nix process evaluates every file of every host; hand-written
imports are parsed by that same process but not evaluated (they may need
nixpkgs).

Then, per file, what nix evaluated must equal the compiled definitions; per
host, the definitions of all its generated files are merged the way NixOS
merges each option's type (see :mod:`homelab.optiontypes`), and conflicts are
reported.  The merged values are what ``homelab show`` prints.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import posixpath
import re
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Mapping

import attrs

from . import bootable, files
from . import contract as contracts
from . import optiontypes as t
from .compile import Compiled, ModuleFile
from .errors import LabError, Problem, ReadBackError  # noqa: F401 - readback.ReadBackError
from .model import Pkg, PkgCall, Priority
from .nixmodule import OptPath
from .nixvalue import attr_path
from .pynix_eval import Nix, NixEvalError, nix_string
from .roles import builtin_contract

STUB_LIB = """{
    mkOverride = priority: content: { _type = "override"; inherit priority content; };
    mkForce = content: { _type = "override"; priority = 50; inherit content; };
    mkDefault = content: { _type = "override"; priority = 1000; inherit content; };
  }"""

MODULE_ARGS = """{
    inherit lib pkgs;
    config = throw "generated modules must not read config";
    options = throw "generated modules must not read options";
    modulesPath = throw "generated modules must not use modulesPath";
  }"""


# ---------------------------------------------------------------- value forms


_AS_IS = frozenset({str, int, bool, float, type(None)})  # values nix prints as they are


def to_json(value: Any) -> Any:
    """A compiled value in the form nix prints for it (with the stand-ins)."""
    kind = type(value)  # the common types by exact type first; subclasses and the rest below
    if kind in _AS_IS:
        return value
    if kind is dict:
        return {k: to_json(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [to_json(v) for v in value]
    if isinstance(value, Pkg):
        return {"_type": "pkg", "attrPath": value.name}
    if isinstance(value, PkgCall):
        return {"_type": "pkg-call", "function": value.function, "args": to_json(value.args)}
    if isinstance(value, Priority):
        return {"_type": "override", "priority": value.priority, "content": to_json(value.value)}
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv4Network)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def nest(defs: Iterable[tuple[OptPath, Any]]) -> dict:
    """Dotted definitions -> one nested attribute set, as Nix builds it from ``a.b.c = v;`` lines."""
    return _nest([(path, to_json(value)) for path, value in defs])


def _nest(defs: Iterable[tuple[OptPath, Any]]) -> dict:
    """:func:`nest` of definitions whose values are in the form nix prints (:func:`to_json`'s) already."""
    out: dict = {}
    for path, value in defs:
        node = out
        for i, part in enumerate(path[:-1]):
            nxt = node.get(part, _UNSEEN)
            if nxt is _UNSEEN:  # as setdefault(part, {}), without making a set each time
                nxt = node[part] = {}
            elif not isinstance(nxt, dict) or "_type" in nxt:
                raise ValueError(f"{'.'.join(path)}: {'.'.join(path[:i + 1])} is already set to a value")
            node = nxt
        leaf = path[-1]
        if leaf in node:
            if isinstance(node[leaf], dict) and isinstance(value, dict) and "_type" not in value:
                node[leaf] = _deep_union(node[leaf], value, path)
                continue
            raise ValueError(f"{'.'.join(path)} is defined twice in one file")
        node[leaf] = value
    return out


def _deep_union(a: dict, b: dict, path: OptPath) -> dict:
    out = dict(a)
    for k, v in b.items():
        if k in out:
            if isinstance(out[k], dict) and isinstance(v, dict):
                out[k] = _deep_union(out[k], v, path + (k,))
            else:
                raise ValueError(f"{'.'.join(path + (k,))} is defined twice in one file")
        else:
            out[k] = v
    return out


def flatten(nested: dict, prefix: OptPath = (), contract: contracts.Contract | None = None
            ) -> list[tuple[OptPath, Any]]:
    """A nested attribute set -> (option path, value) pairs, cut at the contract's option paths.

    ``lib.mkForce { a = 1; b = 2; }`` set above the options it holds applies to
    each of them, as the module system pushes overrides down to the options.
    """
    out: list[tuple[OptPath, Any]] = []
    _flatten_into(nested, prefix, (contract or builtin_contract()).lookup, out)
    return out


def _flatten_into(nested: dict, prefix: OptPath, lookup: Callable[[OptPath], Any], out: list) -> None:
    for k, v in nested.items():
        path = prefix + (k,)
        # only a non-empty attribute set that is no option is looked into (a leaf needs no lookup)
        if (type(v) is dict or isinstance(v, dict)) and v and lookup(path) is None:
            if "_type" not in v:
                _flatten_into(v, path, lookup, out)
                continue
            content = v["content"] if v.get("_type") == "override" else None
            if isinstance(content, dict) and content and "_type" not in content:
                inner: list[tuple[OptPath, Any]] = []
                _flatten_into(content, path, lookup, inner)
                out += [(p, _with_priority(x, v["priority"])) for p, x in inner]
                continue
        out.append((path, v))


def _with_priority(value: Any, priority: int) -> Any:
    if t.is_override(value):  # an inner override is the one that counts
        return value
    return {"_type": "override", "priority": priority, "content": value}


def option_type(path: OptPath, contract: contracts.Contract | None = None) -> t.OptionType:
    fact = (contract or builtin_contract()).lookup(path)
    return fact.type if fact else t.anything


# ---------------------------------------------------------------- checks without nix


def contract_problems(f: ModuleFile, contract: contracts.Contract | None = None) -> list[str]:
    """Paths not in the contract and values that do not fit their type (generated sections only)."""
    return _contract_problems(f.path, _json_definitions(f), contract or builtin_contract())


def _json_definitions(f: ModuleFile) -> list[tuple[OptPath, Any, Any, bool]]:
    """(path, value, its :func:`to_json` form, whether the user wrote it) of each of ``f``'s definitions, in order
    (``f.definitions()``'s): made once for the contract check and the nesting."""
    return [(path, value, to_json(value), sec.user) for sec in f.sections for path, value in sec.defs]


def _contract_problems(rel: str, defs: list[tuple[OptPath, Any, Any, bool]], contract: contracts.Contract
                       ) -> list[str]:
    out = []
    lookup = contract.lookup
    for path, value, json_value, user in defs:
        if user:
            continue
        fact = lookup(path)
        if fact is None:
            out.append(f"{rel}: {'.'.join(path)} is not in the option contract (the core rows in homelab/contract.py "
                       "or the options of the role that writes it)")
            continue
        why = t.check_with_priority(fact.type, json_value)
        if why:
            out.append(f"{rel}: {'.'.join(path)} = {value!r} does not fit {fact.type}: {why}")
    return out


@attrs.frozen
class Conflict:
    """Definitions of one option that NixOS could not merge."""

    path: OptPath
    message: str
    files: tuple[str, ...]

    def __str__(self) -> str:
        return f"{attr_path(self.path)}: {self.message} (defined in {', '.join(self.files)})"


def _flat(rel: str, nested: dict, contract: contracts.Contract, memo: dict | None) -> list[tuple[OptPath, Any]]:
    flat = memo.get(("flat", rel)) if memo is not None else None
    if flat is None:
        flat = list(flatten(nested, (), contract))
        if memo is not None:
            memo[("flat", rel)] = flat
    return flat


def _definitions(files: list[tuple[str, dict]], contract: contracts.Contract, memo: dict | None
                 ) -> tuple[dict[OptPath, list[Any]], dict[OptPath, list[str]]]:
    defs: dict[OptPath, list[Any]] = {}
    where: dict[OptPath, list[str]] = {}
    for rel, nested in files:
        for path, value in _flat(rel, nested, contract, memo):
            defs.setdefault(path, []).append(value)
            where.setdefault(path, []).append(rel)
    return defs, where


def merge_host(files: list[tuple[str, dict]], contract: contracts.Contract | None = None, *,
               memo: dict | None = None) -> tuple[dict[str, Any], list[Conflict]]:
    """Merge the nested definitions of a host's files (in module order) into option values.

    ``memo``: shared between the hosts of one lab (precheck), it keeps each file's flattened definitions
    and the value of an option only one file defines, so a file many hosts import is worked out once.
    """
    contract = contract or builtin_contract()
    defs, where = _definitions(files, contract, memo)
    merged: dict[str, Any] = {}
    conflicts: list[Conflict] = []
    for path in sorted(defs):
        typ = option_type(path, contract)
        try:
            if memo is not None and len(where[path]) == 1:  # one definition: the same value on every host
                key = ("value", where[path][0], path)
                if key not in memo:
                    memo[key] = t.merge_definitions(typ, defs[path])
                merged[attr_path(path)] = memo[key]
                continue
            merged[attr_path(path)] = t.merge_definitions(typ, defs[path])
        except t.MergeConflict as e:
            conflicts.append(Conflict(path, str(e), tuple(where[path])))
        except (TypeError, AttributeError, LookupError):  # a value of another shape (a string where a set goes)
            conflicts.append(Conflict(path, f"definitions that do not fit {typ}: {defs[path]!r}", tuple(where[path])))
    return merged, conflicts


def _joins(typ: t.OptionType, defs: list[Any]) -> bool:
    """Whether the definitions merge without a conflict by joining: text of a ``lines``-like type, or lists of a
    ``listOf`` (what NixOS keeps of them: those of the strongest priority, each a string or a list)."""
    if not isinstance(typ, (t.Joined, t.ListOf)):
        return False
    kind = str if isinstance(typ, t.Joined) else list
    return all(isinstance(d["content"] if t.is_override(d) else d, kind) for d in defs)


def host_conflicts(files: list[tuple[str, dict]], contract: contracts.Contract | None = None, *,
                   memo: dict | None = None) -> list[Conflict]:
    """The conflicts :func:`merge_host` would report, without building the merged values.

    A host's ``networking.firewall.extraCommands`` is its own rules joined with those of the node-rules file it
    shares with the other nodes (a line per node): built for every host, that is a string per pair of hosts.
    Definitions that only join (:func:`_joins`) cannot conflict and are not joined here; an option whose
    definitions all come from the same shared files is judged once (``memo``).
    """
    contract = contract or builtin_contract()
    defs, where = _definitions(files, contract, memo)
    out = [c for path, values in defs.items()
           if (c := _judge(path, values, where[path], contract, memo)) is not None]
    return sorted(out, key=lambda c: c.path)


def _judge(path: OptPath, values: list[Any], where: list[str], contract: contracts.Contract, memo: dict | None
           ) -> Conflict | None:
    """Whether one option's definitions (in module order, from the files ``where``) conflict."""
    typ = option_type(path, contract)
    if len(values) > 1 and _joins(typ, values):
        return None
    key = ("conflict", tuple(where), path)
    if memo is not None and key in memo:
        return memo[key]
    found = None
    try:
        t.merge_definitions(typ, values)
    except t.MergeConflict as e:
        found = Conflict(path, str(e), tuple(where))
    except (TypeError, AttributeError, LookupError):  # a list where a set goes: an IndexError
        found = Conflict(path, f"definitions that do not fit {typ}: {values!r}", tuple(where))
    if memo is not None and (len(values) == 1 or all(rel.startswith("modules/") for rel in where)):
        memo[key] = found  # one file's value, or shared files': the same answer for every host
    return found


def _entry_and_shared_conflicts(entry: tuple[str, dict], modules: tuple[str, ...], nested: dict[str, dict],
                                contract: contracts.Contract, memo: dict) -> list[Conflict]:
    """:func:`host_conflicts` of a host whose files are its entry (first) and shared ``modules``: what the
    modules define together is worked out once per set of modules (hosts alike share it), so a host costs
    what its own entry defines.  Of that, a definition no shared module meets whose merge cannot fail
    (:func:`_merges_alone`) is not merged, and one of a plain value (strings, ints, bools, nulls, in lists and
    sets: :func:`_frozen`) is judged once per value and set of modules (hosts alike set the same gateway)."""
    key = ("shared", modules)
    got = memo.get(key)
    if got is None:
        sdefs, swhere = _definitions([(rel, nested[rel]) for rel in modules], contract, memo)
        judged = {path: _judge(path, values, swhere[path], contract, memo) for path, values in sdefs.items()}
        # the modules' own conflicts (rarely any), and their answers for plain values of the hosts' entries
        got = memo[key] = (sdefs, swhere, [(path, c) for path, c in judged.items() if c is not None], {})
    sdefs, swhere, bad, answers = got
    rel, defs = entry
    own = _flat(rel, defs, contract, memo)
    if bad:
        mine = {path for path, _ in own}
        out = [c for path, c in bad if path not in mine]
    else:
        out = []
    lookup = contract.lookup
    for path, value in own:
        shared = sdefs.get(path)
        kind = type(value)
        if shared is None and kind is not dict:
            fact = lookup(path)
            if _merges_alone(fact.type if fact is not None else t.anything, value):  # option_type's
                continue
        frozen = _frozen(value)
        if frozen is not None:
            # The answer of _judge(path, [value, *shared], [rel, *shared files]) is made of the path (its type,
            # from this precheck's one contract), the values (the shared ones fixed by ``modules`` within one
            # precheck: ``answers`` is this set of modules') and, only as the Conflict's list of files, ``rel``:
            # so the path and the value's frozen form (:func:`_frozen`: the same only for the same structure of
            # the same exact types, so the same repr and the same merges) hold every other input of the message;
            # the Conflict is made again with this host's files.
            vkey = (path, frozen)
            message = answers.get(vkey, _UNSEEN)
        else:  # no memo: its key would hold this host's entry, asked about once
            message = _UNSEEN
        if message is _UNSEEN:
            found = _judge(path, [value, *(shared or ())], [rel, *swhere.get(path, ())], contract, None)
            if frozen is not None:
                answers[vkey] = None if found is None else found.message
        elif message is None:
            found = None
        else:
            found = Conflict(path, message, (rel, *swhere.get(path, ())))
        if found is not None:
            out.append(found)
    return sorted(out, key=lambda c: c.path)


_PLAIN = frozenset({str, int, bool, type(None)})  # exact types whose == and hash tell values apart as repr does
_UNSEEN = object()


def _frozen(value: Any) -> Any:
    """A hashable stand-in for a value made of exact dicts (string keys, in their order), lists, strings, ints,
    bools and nulls: two values have equal ones only when they are the same structure of the same exact types
    (so the same repr, and every merge of them alike: True is not 1 here); None for any other value (a float,
    a tuple, a subclass)."""
    kind = type(value)
    if kind in _PLAIN:
        return (kind, value)
    if kind is dict:
        items = []
        for k, v in value.items():
            inner = _frozen(v)
            if inner is None or type(k) is not str:
                return None
            items.append((k, inner))
        return (dict, tuple(items))
    if kind is list:
        elems = []
        for v in value:
            inner = _frozen(v)
            if inner is None:
                return None
            elems.append(inner)
        return (list, tuple(elems))
    return None


def _merges_alone(typ: t.OptionType, value: Any) -> bool:
    """Whether ``t.merge_definitions(typ, [value])`` surely returns without raising, known from the classes of
    ``typ`` and ``value`` alone (``value`` no dict, so no override: the definition is kept as it is and
    ``typ.merge([value])`` is all that runs).  False means "merge it to know", never a conflict:

    * ``OptionType.merge`` of one value (bool, str, int, enum, package...) returns it without a comparison;
    * ``NullOr.merge``: null alone is null, else its element type's merge;
    * ``ListOf.merge`` of one list concatenates its elements (it does not look into them);
    * ``Joined.merge`` of one string joins it alone."""
    while type(typ) is t.NullOr:
        if value is None:
            return True
        typ = typ.elem  # type: ignore[attr-defined]
    cls = type(typ)
    if cls.merge is t.OptionType.merge:
        return True
    if cls is t.ListOf:
        return type(value) is list
    if cls is t.Joined:
        return type(value) is str
    return False


class MergedOptions(dict):
    """One host's merged option values, read-only: a write raises TypeError rather than being lost on the next
    :class:`HostOptions` access; ``copy.deepcopy`` gives a dict of one's own.  The values themselves may be shared
    with other hosts' (the precheck's memo): change a deep copy, never them."""

    __slots__ = ()

    def _refuse(self, *a: Any, **kw: Any) -> None:
        raise TypeError("a host's merged option values are read-only; change a copy (copy.deepcopy(values))")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _refuse  # type: ignore

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict) -> dict[str, Any]:
        import copy

        return copy.deepcopy(dict(self), memo)

    def __reduce__(self):
        return dict, (dict(self),)


class HostOptions(Mapping):
    """host -> its option values as NixOS would merge them (:class:`MergedOptions`), merged when asked for; the
    last few hosts asked for are kept, not every host's.

    Kept for every host, the merged values grow with the square of the lab (each node's firewall text
    holds a line per node); the definitions they come from are held once per file.
    """

    KEEP = 4  # hosts whose merged values are kept (the ones asked for last)

    def __init__(self, names: Iterable[str], files_of: Callable[[str], list[tuple[str, dict]]],
                 contract: contracts.Contract, memo: dict | None = None):
        self._names = tuple(sorted(names))
        self._known = frozenset(self._names)  # a lab asks about each of its hosts: a tuple's scan was N x N
        self._files_of = files_of
        self._contract = contract
        self._memo = memo if memo is not None else {}
        self._recent: dict[str, MergedOptions] = {}  # oldest first

    def __getitem__(self, host: str) -> MergedOptions:
        if not self.__contains__(host):
            raise KeyError(host)
        values = self._recent.pop(host, None)
        if values is None:
            values = MergedOptions(merge_host(self._files_of(host), self._contract, memo=self._memo)[0])
            if len(self._recent) >= self.KEEP:
                del self._recent[next(iter(self._recent))]
        self._recent[host] = values
        return values

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, host: object) -> bool:
        try:
            return host in self._known
        except TypeError:  # unhashable: no host's name
            return False

    def restricted(self, names: Iterable[str]) -> HostOptions:
        return HostOptions([n for n in names if n in self._known], self._files_of, self._contract, self._memo)

    def __repr__(self) -> str:
        return f"<option values of {len(self._names)} hosts, merged when asked>"


@attrs.frozen
class Precheck:
    """What can be known before nix runs: contract and nesting problems, and each host's conflicts."""

    problems: list[str]  # in generated code: a homelab bug (or a bug of the lab's own role, see by_file)
    merged: Mapping[str, dict[str, Any]]  # host -> its option values, as NixOS would merge them (HostOptions)
    conflicts: dict[str, list[Conflict]]  # host -> definitions that do not merge
    nested: dict[str, dict]  # file -> its definitions as one nested attribute set
    by_file: dict[str, list[str]] = attrs.field(factory=dict)  # file -> its contract and nesting problems
    # (the contract, file -> its definitions flattened by that contract): those the precheck made, for the clash
    # check (:func:`clash_specs`), which flattens the same nested sets
    flat: tuple[Any, dict[str, list[tuple[OptPath, Any]]]] = attrs.field(default=(None, {}), eq=False, repr=False)

    @property
    def ok(self) -> bool:
        return not self.problems and not any(self.conflicts.values())

    def all_problems(self) -> list[str]:
        return self.problems + [f"hosts/{h}/default.nix: {c}" for h, cs in sorted(self.conflicts.items())
                                for c in cs]


def precheck(compiled: Compiled) -> Precheck:
    """Everything that can be checked before nix runs: contract, nesting, merge conflicts (each host once).

    Memory grows with the lab: each file's definitions are held once, and a host's merged values are
    merged when asked for (:class:`HostOptions`), not kept for every host.
    """
    problems: list[str] = []
    by_file: dict[str, list[str]] = {}
    nested: dict[str, dict] = {}
    contract = compiled.contract
    for rel, f in compiled.files.items():
        defs = _json_definitions(f)  # each value's to_json form once, for both
        ps = _contract_problems(f.path, defs, contract)
        try:
            nested[rel] = _nest([(path, json_value) for path, _, json_value, _ in defs])
        except ValueError as e:
            ps.append(f"{rel}: {e}")
        if ps:
            by_file[rel] = ps
            problems += ps
    conflicts: dict[str, list[Conflict]] = {}
    memo: dict = {}

    def files_of(name: str) -> list[tuple[str, dict]]:
        return [(rel, nested[rel]) for rel in compiled.files_of(name)]

    if problems:
        return Precheck(problems, HostOptions((), files_of, contract, memo), conflicts, nested, by_file)
    for name, plan in compiled.hosts.items():
        conflicts[name] = _entry_and_shared_conflicts((plan.entry, nested[plan.entry]), tuple(plan.modules), nested,
                                                      contract, memo)
    flat = {rel: memo[("flat", rel)] for rel in nested if ("flat", rel) in memo}
    return Precheck(problems, HostOptions(compiled.hosts, files_of, contract, memo), conflicts, nested, by_file,
                    (contract, flat))


# ---------------------------------------------------------------- nix


def _pkg_names(compiled: Compiled) -> list[tuple[str, str]]:
    """(kind, attribute path) of every pkgs reference: ("pkg", "htop"), ("call", "dockerTools.pullImage")."""
    names: set[tuple[str, str]] = set()
    plain = _AS_IS  # most values (a string, a number, a bool): looked at where they are, no call for each

    def walk(v: Any) -> None:
        if isinstance(v, Pkg):
            names.add(("pkg", v.name))
        elif isinstance(v, PkgCall):
            names.add(("call", v.function))
            walk(v.args)
        elif isinstance(v, Priority):
            if type(v.value) not in plain:
                walk(v.value)
        elif isinstance(v, (list, tuple)):
            for x in v:
                if type(x) not in plain:
                    walk(x)
        elif isinstance(v, dict):
            for x in v.values():
                if type(x) not in plain:
                    walk(x)

    for f in compiled.files.values():
        for sec in f.sections:  # f.definitions(), without the list
            for _, v in sec.defs:
                if type(v) not in plain:
                    walk(v)
    return sorted(names)


def stub_pkgs(names: Iterable[str | tuple[str, str]]) -> str:
    """A stand-in ``pkgs``: packages become tagged values, functions return tagged calls.

    A package can hold others (``linuxPackages_rpi4.v4l2loopback``): its tagged
    set carries them as attributes, and :data:`CLEAN` keeps only the tag when
    nix prints it.  Whether nixpkgs has a name, and whether it is a package or a
    function, only nixpkgs can say (``homelab check --nixos``): a name the lab
    both uses and calls, or one with names below a function (``buildEnv.override``,
    as nixpkgs' overridable functions have), is a set with ``__functor`` here,
    never a failure of the stand-in.
    """
    tree: dict = {}
    for item in names:
        kind, name = item if isinstance(item, tuple) else ("pkg", item)
        node = tree
        for p in name.split("."):
            node = node.setdefault(p, {})
        node.setdefault("", set()).add(kind)  # "" never is an attribute name here

    def emit(node: dict, name: str) -> str:
        kinds = node.get("", set())
        call = f'args: {{ _type = "pkg-call"; function = {nix_string(name)}; inherit args; }}'
        if kinds == {"call"} and len(node) == 1:
            return call
        items = [f'_type = "pkg"; attrPath = {nix_string(name)};'] if "pkg" in kinds else []
        items += [f"__functor = _self: {call};"] if "call" in kinds else []
        items += [f"{nix_string(k)} = {emit(v, f'{name}.{k}' if name else k)};" for k, v in sorted(node.items()) if k]
        return "{ " + " ".join(items) + " }"

    return emit(tree, "")


# What nix prints of a module's definitions: a package is its tag only (not the packages it holds).
CLEAN = """v:
    if builtins.isAttrs v then
      (if v._type or null == "pkg" then { inherit (v) _type attrPath; } else builtins.mapAttrs (_: clean) v)
    else if builtins.isList v then map clean v
    else v"""


def _path_expr(p: Path) -> str:
    return f"(/. + {nix_string(str(p))})"


def _under(base: Path, rel: str) -> str:
    """``str(base / rel)``, made by joining the strings when pathlib would not change ``rel`` (a lab's paths: no empty
    or ``.`` part, not absolute), which is 10 times cheaper (30,000 paths a build)."""
    if rel and rel[0] != "/" and rel[-1] != "/" and "//" not in rel and not _DOT_PART.search(rel):
        b = str(base)
        return (b if b.endswith("/") else b + "/") + rel
    return str(base / rel)


_DOT_PART = re.compile(r"(?:^|/)\.(?:/|$)")  # a "." part, which pathlib drops


def evaluation_expr(root: Path, generated: list[str], hand_written: list[str], pkg_names: list[str],
                    data: str | None = None) -> str:
    root = Path(root).resolve()
    files = " ".join(f"{nix_string(rel)} = load (/. + {nix_string(_under(root, rel))});" for rel in generated)
    data_expr = f"import {_path_expr(root / data)}" if data else "null"
    hand = " ".join(f"{nix_string(rel)} = builtins.typeOf (import (/. + {nix_string(_under(root, rel))}));"
                    for rel in hand_written)
    return f"""let
  lib = {STUB_LIB};
  pkgs = {stub_pkgs(pkg_names)};
  args = {MODULE_ARGS};
  clean = {CLEAN};
  load = p: let m = import p; v = if builtins.isFunction m then m args else m; in {{
    imports = map toString (v.imports or [ ]);
    defs = clean (removeAttrs v [ "imports" ]);
  }};
in {{
  generated = {{ {files} }};
  handWritten = {{ {hand} }};
  data = {data_expr};
}}"""


def evaluate(root: Path, compiled: Compiled, nix: Nix | None = None, only: list[str] | None = None, *,
             with_data: bool = True, expr: str | None = None, files: Collection[str] | None = None) -> dict:
    """Evaluate the generated files on disk under ``root`` (one nix process; ``with_data``: and the lab's data
    file, when it is there).  ``expr``: :func:`evaluate_expr` of the same arguments, when the caller made it;
    ``files``: as for :func:`evaluate_expr`."""
    nix = nix or Nix()
    hosts = only if only is not None else sorted(compiled.hosts)
    base = str(Path(root).resolve()) + "/"
    try:
        out = nix.eval_expr(expr if expr is not None else
                            evaluate_expr(root, compiled, only, with_data=with_data, files=files))
    except NixEvalError as e:
        # a hand-written import that does not parse is the user's mistake, not homelab's
        hand = sorted({rel for h in hosts for rel in compiled.hosts[h].hand_written})
        bad = [rel for rel in hand if base + rel in e.message]
        if bad:
            message = e.message.replace(base, "")
            raise LabError([Problem(f"hosts/{h}", "imports", f"{rel.rsplit('/', 1)[1]} is not valid Nix: {message}")
                            for rel in bad for h in _importers(compiled, hosts, rel)]) from None
        raise
    for entry in out["generated"].values():
        entry["imports"] = [i.removeprefix(base) for i in entry["imports"]]
    return out


def evaluate_expr(root: Path, compiled: Compiled, only: list[str] | None = None, *, with_data: bool = True,
                  files: Collection[str] | None = None) -> str:
    """The expression :func:`evaluate` has nix evaluate (for a caller that runs it together with others:
    :meth:`homelab.pynix_eval.Nix.eval_together`).  ``files``: the generated files to read back (default: every
    file of the hosts ``only``: their entries and the modules they import); the hand-written imports are those
    of the hosts ``only`` either way."""
    hosts = only if only is not None else sorted(compiled.hosts)
    generated = sorted(files) if files is not None else sorted({rel for h in hosts for rel in compiled.files_of(h)})
    hand = sorted({rel for h in hosts for rel in compiled.hosts[h].hand_written})
    data = compiled.data.path if with_data and compiled.data is not None \
        and (Path(root) / compiled.data.path).is_file() else None
    return evaluation_expr(root, generated, hand, _pkg_names(compiled), data)


def _importers(compiled: Compiled, hosts: Iterable[str], hand: str) -> list[str]:
    """The hosts among ``hosts`` that import the hand-written file ``hand`` (a shared file: several)."""
    return [h for h in hosts if hand in compiled.hosts[h].hand_written]


_TARGETS: dict[tuple[int, str], str] = {}  # (folders above a file, an import written there) -> its target


def _import_target(rel_file: str, written: str) -> str:
    """hosts/x/default.nix + '../../modules/a.nix' -> 'modules/a.nix' (plain path arithmetic)."""
    depth = rel_file.count("/")
    known = _TARGETS.get((depth, written))
    if known is not None:
        return known
    target = _import_target_of(rel_file, written)
    if written.startswith("../" * depth) and len(_TARGETS) < 4096:
        # its first ".." take away every folder of rel_file: what follows is the same from any file as deep
        _TARGETS[(depth, written)] = target
    return target


def _import_target_of(rel_file: str, written: str) -> str:
    parts = rel_file.split("/")[:-1]
    for p in written.split("/"):
        if p == "..":
            parts.pop()
        elif p not in (".", ""):
            parts.append(p)
    return "/".join(parts)


@attrs.frozen
class Report:
    files: int  # generated files evaluated
    hand_written: int  # hand-written imports parsed
    options: Mapping[str, dict[str, Any]]  # host -> merged option values read back through nix (merged when asked)
    problems: list[str]
    nix_calls: int


def host_options(evaluated: dict, compiled: Compiled, hostname: str) -> tuple[dict[str, Any], list[Conflict]]:
    """Merged option values of one host, from what nix evaluated, walking imports from the entry."""
    return merge_host(_read_files(evaluated, compiled, hostname), compiled.contract)


def _read_files(evaluated: dict, compiled: Compiled, hostname: str) -> list[tuple[str, dict]]:
    """(file, what nix read of it) of one host, in module order, walking imports from the entry."""
    gen = evaluated["generated"]
    order: list[str] = []

    def visit(rel: str) -> None:
        if rel in order or rel not in gen:
            return
        order.append(rel)
        for imp in gen[rel]["imports"]:
            visit(imp)

    visit(compiled.hosts[hostname].entry)
    return [(rel, gen[rel]["defs"]) for rel in order]


def read_back(root: Path, compiled: Compiled, nix: Nix | None = None, only: list[str] | None = None,
              *, pre: Precheck | None = None, with_data: bool = True, expr: str | None = None,
              files: Collection[str] | None = None) -> Report:
    """Check the files under ``root`` against ``compiled`` with real nix; problems are listed, not raised.

    ``pre``: the :func:`precheck` of ``compiled`` when the caller has it (the build does, before
    rendering), so nothing is nested or merged twice.  When nix reads back exactly what the model
    says, file by file, the merged option values are the precheck's; they are merged again from what
    nix read only where a file differs.  ``expr``: :func:`evaluate_expr` of the same arguments, when the caller
    made it already.  ``files``: only these generated files are read back (:func:`evaluate_expr`); the options
    merged from what nix read where a file differs then leave out the others (a caller that reads the rest
    back elsewhere and stops on any problem: :func:`homelab.shard._verify`).
    """
    nix = nix or Nix()
    calls0 = nix.calls
    pre = pre or precheck(compiled)
    problems = pre.all_problems()
    evaluated = evaluate(root, compiled, nix, only, with_data=with_data, expr=expr, files=files)
    gen = evaluated["generated"]
    differs = False
    for rel, entry in sorted(gen.items()):
        f = compiled.files[rel]
        want_imports = [_import_target(rel, i) for i in f.imports]
        if entry["imports"] != want_imports:
            differs = True
            problems.append(f"{rel}: imports {entry['imports']} but the model says {want_imports}")
        want = pre.nested[rel] if rel in pre.nested else nest(f.definitions())
        if entry["defs"] != want:
            differs = True
            for path, value in sorted(set(_leaves(entry["defs"])) ^ set(_leaves(want))):
                problems.append(f"{rel}: {'.'.join(path)} differs: nix read {_get(entry['defs'], path)!r}, "
                                f"the model says {_get(want, path)!r}")
    # nix's JSON equal to the model's value as it is (C-level ==, no copy made): to_json only turns values that
    # equal no JSON value (tuples, packages, addresses) into JSON ones, so it is equal to to_json's too
    if compiled.data is not None and evaluated.get("data") is not None and evaluated["data"] != compiled.data.value:
        want = to_json(compiled.data.value)
        if evaluated["data"] != want:
            differs = True
            for path, value in sorted(set(_leaves(evaluated["data"])) ^ set(_leaves(want))):
                problems.append(f"{compiled.data.path}: {'.'.join(path)} differs: nix read "
                                f"{_get(evaluated['data'], path)!r}, the model says {_get(want, path)!r}")
    names = sorted(only if only is not None else compiled.hosts)
    options: Mapping[str, dict[str, Any]]
    if not differs and all(h in pre.merged for h in names):
        options = pre.merged.restricted(names) if isinstance(pre.merged, HostOptions) else \
            {h: pre.merged[h] for h in names}
    else:  # merged from what nix read, host by host, when asked for
        options = HostOptions(names, lambda h: _read_files(evaluated, compiled, h), compiled.contract)
        for h in names:
            problems += [f"{compiled.hosts[h].entry}: {c}"
                         for c in host_conflicts(_read_files(evaluated, compiled, h), compiled.contract)]
    files = len(gen) + (1 if evaluated.get("data") is not None else 0)
    return Report(files, len(evaluated["handWritten"]), options, problems, nix.calls - calls0)


def _leaves(d: Any, prefix: OptPath = ()) -> list[tuple[OptPath, str]]:
    if isinstance(d, dict) and d:
        return [x for k, v in d.items() for x in _leaves(v, prefix + (k,))]
    return [(prefix, repr(d))]


def _get(d: Any, path: OptPath) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def _scratch_dir() -> str | None:
    """Where to stage: $TMPDIR if set, else /dev/shm when usable (memory: a thousand-host lab's copy
    took seconds to write and delete on disk), else the system default."""
    if os.environ.get("TMPDIR"):
        return None
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


def staged(texts: dict[str, str], root: Path, hand_written: Iterable[str]) -> tempfile.TemporaryDirectory:
    """A temporary lab holding ``texts`` and copies of the hand-written imports, for checking before writing."""
    tmp = tempfile.TemporaryDirectory(prefix="homelab-verify-", dir=_scratch_dir())
    stage_texts(tmp.name, texts)
    stage_hand_written(tmp.name, root, hand_written, texts)
    return tmp


def stage_texts(base: str, texts: dict[str, str], made: set[str] | None = None) -> None:
    """``texts`` written under the folder ``base`` (``made``: folders known to exist there)."""
    base = base + "/"
    made = set() if made is None else made  # plain strings and os calls: a lab has 10,000 folders

    for rel, text in texts.items():
        parent = posixpath.dirname(rel)
        if parent not in made:
            _folder(base + parent)
            made.add(parent)
        _write_new(base + rel, text.encode("utf-8"))


def _folder(path: str) -> None:
    """The folder ``path`` made if it is not there (``os.makedirs``, whose look at the parent first is one more system
    call, 10,000 of them for a lab's host folders)."""
    try:
        os.mkdir(path)
    except FileNotFoundError:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:
        if not os.path.isdir(path):
            raise


def _write_new(dst: str, data: bytes, exclusive: bool = False) -> None:
    """``data`` written to ``dst``, made or truncated, as ``open(dst, "wb")`` writes it (its mode 0o666 less the umask),
    with plain system calls (Python's ``open`` adds three: fstat, ioctl, lseek).  ``exclusive``: FileExistsError
    when ``dst`` is there (a link too, wherever it leads), nothing written."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC) | os.O_CLOEXEC, 0o666)
    try:
        files._write_all(fd, data)
    finally:
        os.close(fd)


def read_all(path: str) -> bytes:
    """A file's content (links followed), with plain system calls: Python's ``open`` adds an fstat, an ioctl and an
    lseek, and a lab has a host.py and a hardware file per host."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _copy(src: str, dst: str, exclusive: bool = False) -> bytes | None:
    """``src``'s content (links followed) written to the new file ``dst``, as shutil.copyfile writes it, with plain
    system calls (a lab has a hardware file per host); the content, as read.  ``exclusive``: None, and ``dst`` left
    as it is, when it is there already (one system call less than looking first)."""
    data = read_all(src)
    try:
        _write_new(dst, data, exclusive)
    except FileExistsError:
        if not exclusive:
            raise
        return None
    return data


def _write_new_or_none(dst: str, data: bytes, exclusive: bool) -> bool:
    """:func:`_write_new`; False (nothing written) when ``exclusive`` and ``dst`` is there already."""
    try:
        _write_new(dst, data, exclusive)
    except FileExistsError:
        if not exclusive:
            raise
        return False
    return True


def stage_hand_written(base: str, root: Path, hand_written: Iterable[str], generated: Collection[str],
                       skip_present: bool = False, digests: dict[str, str] | None = None,
                       made: set[str] | None = None, staged: list[str] | None = None,
                       listed: dict[str, list[os.DirEntry]] | None = None,
                       contents: Mapping[str, bytes] | None = None) -> None:
    """Copies of the hand-written imports under the folder ``base``, and the Nix files beside them, which they
    may import in turn (./disks.nix: read for the root file system); never a ``generated`` path.
    ``skip_present``: leave a file another process staged there already as it is.  ``digests``: each import
    copied gets the SHA-256 of its content as read, by its lab-relative path (what the no-op record needs);
    ``made``: folders known to exist under ``base``; ``staged``: each path this call wrote is appended;
    ``listed``: the listings of folders of the lab (lab-relative) the caller took already, used instead of a look at
    each file there and of listing the folder again (a lab has a folder and a hardware file per host).
    ``contents``: imports' contents read already (by ``root``/<path>: homelab.load.import_contents), staged and
    hashed as they are, not read again."""
    base = base + "/"
    hand_written = list(hand_written)
    root_s = str(root) + "/"
    copied = set()
    made = set() if made is None else made
    for rel in hand_written:
        parent = posixpath.dirname(rel)
        if parent not in made:
            _folder(base + parent)
            made.add(parent)
        known = contents.get(root_s + rel) if contents else None
        if known is not None or _is_file(root_s, rel, parent, listed):
            if known is not None:
                data = known if _write_new_or_none(base + rel, known, skip_present) else None
            else:
                data = _copy(root_s + rel, base + rel, exclusive=skip_present)  # None: staged there already
            if data is not None:
                if digests is not None:
                    digests[rel] = hashlib.sha256(data).hexdigest()
                if staged is not None:
                    staged.append(rel)
            copied.add(rel)
        elif skip_present and os.path.lexists(base + rel):  # not a file here: the other process's copy stays
            copied.add(rel)
    for parent in sorted({posixpath.dirname(rel) for rel in hand_written}):
        try:
            there = [e.name for e in listed[parent]] if listed is not None and parent in listed \
                else os.listdir(root_s + parent)
            names = sorted(n for n in there if n.endswith(".nix") and not n.startswith("."))
        except OSError:  # not a folder (any more)
            continue
        for name in names:
            rel = f"{parent}/{name}" if parent else name
            if name != "default.nix" and rel not in generated and rel not in copied \
                    and not os.path.lexists(base + rel) and os.path.isfile(root_s + rel):
                _copy(root_s + rel, base + rel)
                if staged is not None:
                    staged.append(rel)


def _is_file(root_s: str, rel: str, parent: str, listed: dict[str, list[os.DirEntry]] | None) -> bool:
    """``os.path.isfile`` of the lab's ``rel``, from its folder's listing when the caller took it (a link is
    followed as isfile follows it; a name not listed is not a file)."""
    if listed is None or parent not in listed:
        return os.path.isfile(root_s + rel)
    name = posixpath.basename(rel)
    entry = next((e for e in listed[parent] if e.name == name), None)
    try:
        return entry is not None and entry.is_file()
    except OSError:
        return False


# ---------------------------------------------------------------- hand-written imports against generated code

# What a hand-written module may use of lib at its top levels; anything else makes the check skip the file.
HAND_LIB = """{
    mkOverride = priority: content: { _type = "override"; inherit priority content; };
    mkForce = content: { _type = "override"; priority = 50; inherit content; };
    mkDefault = content: { _type = "override"; priority = 1000; inherit content; };
    mkOptionDefault = content: { _type = "override"; priority = 1500; inherit content; };
    mkIf = condition: content: { _type = "if"; inherit condition content; };
    mkMerge = contents: { _type = "merge"; inherit contents; };
    mkBefore = content: { _type = "order"; priority = 500; inherit content; };
    mkAfter = content: { _type = "order"; priority = 1500; inherit content; };
    mkOrder = priority: content: { _type = "order"; inherit priority content; };
  }"""

HAND_EXPR = """let
  lib = %(lib)s;
  base = {
    inherit lib;
    pkgs = throw "pkgs"; config = throw "config"; options = throw "options";
    modulesPath = "/homelab-stand-in/nixos/modules"; specialArgs = { };
  };
  safe = e: let r = builtins.tryEval e; in if r.success then r.value else null;
  call = m: let fa = builtins.functionArgs m; in
    if fa == { } then m base else m (builtins.mapAttrs (n: _: base.${n} or (throw n)) fa);
  top = p: let m = import p; in if builtins.isFunction m then call m else m;
  get = v: path:
    if path == [ ] then { found = true; value = v; }
    else let n = builtins.head path;
             ok = safe (builtins.isAttrs v && (v._type or null) == null && builtins.hasAttr n v); in
      if ok == true then get (builtins.getAttr n v) (builtins.tail path) else { found = false; };
  scalar = x: let t = safe (builtins.typeOf x); in
    if builtins.elem t [ "string" "int" "bool" "null" "float" ]
    then (let v = safe (builtins.deepSeq x x); in { known = v != null || t == "null"; value = v; })
    else { known = false; };
  leaf = x: let kind = safe (if builtins.isAttrs x then x._type or "set" else "value"); in
    if kind == "override" then { priority = safe x.priority; } // scalar x.content
    else if kind == "value" || kind == "set" then { priority = 100; } // scalar x
    else if kind == null then { priority = 100; known = false; needs = true; }
    else { conditional = true; };
  describe = v: path: let r = get v path; in if r.found then { found = true; } // leaf r.value else { found = false; };
  # the paths asked about, as a tree (homelab.readback._tree_nix): each node { at = [ the paths that end here ];
  # sub = { name = node; }; }.  A path is found where get finds it, walking only the names v has: a hardware
  # file defines none of the 30 paths, each looked up alone cost 30 lookups and a list of 30 sets
  found = v: node: builtins.sort (a: b: a.at < b.at) (walk v node);
  walk = v: node:
    map (i: { at = i; found = true; } // leaf v) node.at
    ++ (if node.sub == { } then [ ] else
          let ok = safe (builtins.isAttrs v && (v._type or null) == null); in
          if ok == true
          then builtins.concatMap (n: walk (builtins.getAttr n v) node.sub.${n})
                 (builtins.attrNames (builtins.intersectAttrs node.sub v))
          else [ ]);
%(modules)s
  files = %(files)s;
in {
  clashes = builtins.mapAttrs (rel: spec: found (top spec.file) spec.tree) files;
  boot = builtins.mapAttrs (rel: spec: bootFacts spec.file %(boot_paths)s) files;
}"""


class _Unknown:
    """A value nix could not tell (a package, an expression of pkgs): equal to nothing."""

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return "<an expression>"


class _Shown(str):
    def __repr__(self) -> str:
        return str(self)


def _merges(typ: t.OptionType) -> bool:
    """Definitions of this type may combine (lists, lines, attribute sets, kernel module sets...); only a type
    whose definitions must all be equal (a bool, a string, a package) is checked for clashes."""
    while isinstance(typ, t.NullOr):
        typ = typ.elem
    return type(typ).merge is not t.OptionType.merge


def hand_written_clashes(root: Path, compiled: Compiled, nix: Nix, hosts: list[str], pre: Precheck, *,
                         specs: tuple[dict[str, Spec], Callable[[str], list[Leaf]]] | None = None,
                         described: Callable[[], Any] | None = None) -> list[Problem]:
    """Hand-written imports that define an option homelab's generated files define too, where NixOS could not
    merge the two (a scalar with another value, at the same priority): errors naming the host, ``imports``
    and the file, before anything is written.

    Each hand-written module is called with a stand-in lib and throwing pkgs/config (one nix process);
    only plain attribute sets are looked into, so a definition under mkIf/mkMerge, or one that needs
    nixpkgs to be known, is left for NixOS to judge.  When nix cannot evaluate a module at all, that file
    is skipped with a warning.  ``specs`` and ``described``: what :func:`start_clash_check` returned (its
    Pending's ``result``), when the nix process was started beside the read-back's.
    """
    asked, host_leaves = clash_specs(compiled, hosts, pre) if specs is None else specs
    out: list[Problem] = []
    results: dict[str, dict[OptPath, Any]] = {}
    boot: dict[str, Any] = {}
    try:
        if asked:
            results, boot = described() if described is not None else _describe(root, asked, nix)
    except NixEvalError:
        for hand in asked:  # one at a time, to name the file nix cannot read this way
            try:
                clashes, facts = _describe(root, {hand: asked[hand]}, nix)
                results.update(clashes)
                boot.update(facts)
            except NixEvalError:
                out += [Problem(f"hosts/{h}", "imports", f"{hand.rsplit('/', 1)[-1]}: could not be evaluated "
                                "without nixpkgs to look for definitions that clash with homelab's; NixOS will "
                                "judge them", "warning") for h in asked[hand][0]]
    for hand, described_ in sorted(results.items()):
        for h in asked[hand][0]:
            for leaf in host_leaves(h):
                if leaf[0] in described_:  # one the file does not define: _clash of _NOT_FOUND, nothing
                    out += _clash(h, hand, leaf, described_[leaf[0]])
    shared: dict[tuple[str, ...], list[list[tuple[int, Any]]]] = {}
    for h in hosts:
        out += boot_problems(compiled, pre, h, boot, shared)
    return out


Spec = tuple[list[str], set[OptPath]]  # a hand-written file's importers, and the option paths to ask nix about
Leaf = tuple[OptPath, Any, str, t.OptionType]


def clash_specs(compiled: Compiled, hosts: list[str], pre: Precheck
                ) -> tuple[dict[str, Spec], Callable[[str], list[Leaf]]]:
    """What the clash check asks nix about (hand-written file -> its importers and the paths any of them
    defines), and each host's generated definitions that could clash (a shared file's found once)."""
    specs: dict[str, Spec] = {}
    of_file: dict[str, list[Leaf]] = {}  # a shared file's leaves, once
    contract = compiled.contract
    made = pre.flat[1] if pre.flat[0] is contract else {}  # the precheck's, flattened by this same contract
    kept: dict[OptPath, t.OptionType | None] = {}  # option path -> its type when it does not merge (the contract's)

    def judged(path: OptPath) -> t.OptionType | None:
        if path not in kept:
            typ = option_type(path, contract)
            kept[path] = None if _merges(typ) else typ
        return kept[path]

    def file_leaves(rel: str) -> list[Leaf]:
        if rel not in of_file:
            flat = made.get(rel)
            if flat is None:
                flat = flatten(pre.nested.get(rel, {}), (), contract)
            of_file[rel] = [(path, value, rel, typ) for path, value in flat if (typ := judged(path)) is not None]
        return of_file[rel]

    of_modules: dict[tuple[str, ...], tuple[list[Leaf], frozenset[OptPath]]] = {}  # hosts alike import the same

    def modules_leaves(modules: tuple[str, ...]) -> tuple[list[Leaf], frozenset[OptPath]]:
        """The leaves of these module files, in order, and their paths: made of the files alone, once."""
        got = of_modules.get(modules)
        if got is None:
            leaves = [leaf for rel in modules for leaf in file_leaves(rel)]
            got = of_modules[modules] = (leaves, frozenset(leaf[0] for leaf in leaves))
        return got

    def host_leaves(h: str) -> list[Leaf]:
        plan = compiled.hosts[h]  # its files: its entry, then its modules (Compiled.files_of)
        return file_leaves(plan.entry) + modules_leaves(tuple(plan.modules))[0]

    # a file several hosts import (../common.nix) is judged against each of them: they set other values
    # (networking.hostName, a role's options); nix describes it once, at the paths any of them defines
    for h in hosts:
        plan = compiled.hosts[h]
        if plan.hand_written:
            paths = {leaf[0] for leaf in file_leaves(plan.entry)} | modules_leaves(tuple(plan.modules))[1]
            for hand in plan.hand_written:
                importers, known = specs.setdefault(hand, ([], set()))
                importers.append(h)
                known |= paths
    return specs, host_leaves


class Pending:
    """A call running in a thread of its own, so that its nix process runs beside another (a lab of thousands of
    hosts keeps both cores busy): ``result()`` waits, then returns what the call returned or raises what it
    raised; ``wait()`` only waits."""

    def __init__(self, fn: Callable[..., Any], *args: Any):
        self._done: tuple[bool, Any] = (False, None)
        self._thread = threading.Thread(target=self._run, args=(fn, args), name="homelab-nix", daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[..., Any], args: tuple) -> None:
        try:
            self._done = (True, fn(*args))
        except BaseException as e:  # noqa: BLE001 - handed to whoever asks for the result
            self._done = (False, e)

    def wait(self) -> None:
        while self._thread.is_alive():  # in slices: a signal the kernel handed to that thread is acted on here
            self._thread.join(0.25)

    def result(self) -> Any:
        self.wait()
        ok, value = self._done
        if not ok:
            raise value
        return value


def start_clash_check(root: Path, compiled: Compiled, nix: Nix, hosts: list[str], pre: Precheck
                      ) -> tuple[tuple[dict[str, Spec], Callable[[str], list[Leaf]]], Pending | None]:
    """The clash check's specs (:func:`clash_specs`) and its nix process, started now (None when no host has a
    hand-written import): give both to :func:`hand_written_clashes`, and wait for the Pending before ``root``
    goes away."""
    specs = clash_specs(compiled, hosts, pre)
    return specs, (Pending(_describe, root, specs[0], nix) if specs[0] else None)


class clash_check_running:
    """``with`` around the work beside a started clash check (:func:`start_clash_check`): on the way out its
    nix process is done before the staging folder goes; Ctrl-C or SIGTERM ends it (and any nix of ``nix``) at
    once instead of waiting for it.  The handle serves its caller again afterwards."""

    def __init__(self, nix: Nix, pending: Pending | None):
        self.nix, self.pending = nix, pending

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, value, tb) -> bool:
        try:
            if kind is not None and issubclass(kind, KeyboardInterrupt):
                self.nix.stop()
        finally:
            if self.pending:
                self.pending.wait()  # its nix process reads the staging copy: done before the copy goes
            self.nix.stopped = False  # no nix of this build runs now
        return False


_NOT_FOUND = {"found": False}


def _clash(h: str, hand: str, leaf: tuple[OptPath, Any, str, t.OptionType], d: dict[str, Any]) -> list[Problem]:
    """The problem (if any) of one definition of a hand-written file against the generated value it meets."""
    path, value, rel, typ = leaf
    if not d.get("found") or d.get("conditional") or d.get("priority") is None:
        return []
    theirs: Any = d["value"] if d.get("known") else _Unknown()
    if d["priority"] != t.DEFAULT_PRIORITY:
        theirs = {"_type": "override", "priority": d["priority"], "content": theirs}
    try:
        t.merge_definitions(typ, [value, theirs])
        return []
    except (t.MergeConflict, TypeError, ValueError):
        pass
    ours = value["content"] if t.is_override(value) else value
    if t.is_pkg(ours):
        ours = _Shown(f"pkgs.{ours['attrPath']}")
    name = hand.rsplit("/", 1)[-1]
    if d.get("needs"):  # an expression of pkgs or config: its priority is not known here
        return [Problem(f"hosts/{h}", "imports", f"{name} sets {attr_path(path)} with an expression homelab cannot "
                        f"evaluate without nixpkgs, and homelab sets it to {ours!r} in {rel}; unless one of them is "
                        "lib.mkForce, NixOS will refuse the two", "warning")]
    shown = "" if not d.get("known") else f" = {d['value']!r}"
    return [Problem(f"hosts/{h}", "imports", f"{name} sets {attr_path(path)}{shown}, which homelab sets to "
                    f"{ours!r} in {rel}; NixOS cannot merge the two: drop it from the file (homelab writes it from "
                    "host.py) or wrap it in lib.mkForce")]


def boot_problems(compiled: Compiled, pre: Precheck, hostname: str, boot: dict[str, Any],
                  shared: dict[tuple[str, ...], list[list[tuple[int, Any]]]] | None = None) -> list[Problem]:
    """A host without a root file system or a boot loader (:mod:`homelab.bootable`): from its generated files
    and raw options as nix read them, and ``boot``, the facts nix read of each hand-written import.

    ``shared``: kept between the hosts of one ``pre`` (one clash check), the definitions of each of
    :data:`homelab.bootable.PATHS` in a set of module files, by their paths: made of their ``pre.nested`` alone,
    they are the same for every host that imports that set."""
    plan = compiled.hosts[hostname]
    if shared is None:
        generated = _boot_definitions([pre.nested[rel] for rel in compiled.files_of(hostname) if rel in pre.nested])
    else:  # its files are its entry, then its modules (Compiled.files_of): the modules' found once
        mine = _boot_definitions([pre.nested[plan.entry]] if plan.entry in pre.nested else [])
        modules = tuple(plan.modules)
        theirs = shared.get(modules)
        if theirs is None:
            theirs = shared[modules] = _boot_definitions([pre.nested[rel] for rel in modules if rel in pre.nested])
        generated = [a + b for a, b in zip(mine, theirs)]  # new lists: the loop below adds to them
    whole = all(rel in boot and boot[rel]["complete"] for rel in plan.hand_written)
    defs = {}
    for i, path in enumerate(bootable.PATHS):
        defs[path] = generated[i]
        for rel in plan.hand_written:
            if rel in boot:
                found, ok = bootable.hand_definitions(boot[rel]["facts"][i])
                defs[path] += found
                whole = whole and ok
    return bootable.problems(f"hosts/{hostname}", tuple(plan.hand_written), defs, whole)


def _boot_definitions(nested: list[dict]) -> list[list[tuple[int, Any]]]:
    """Generated files' definitions of each of :data:`homelab.bootable.PATHS`, in that order."""
    return [bootable.generated_definitions(nested, path) for path in bootable.PATHS]


def _paths(specs: dict) -> list[OptPath]:
    """Every option path any host's generated files define (that does not merge), once: each hand-written file is
    asked about all of them (one list in the expression), and each host reads the answers for its own."""
    return sorted({path for _hosts, paths in specs.values() for path in paths})


def _describe(root: Path, specs: dict, nix: Nix, expr: str | None = None
              ) -> tuple[dict[str, dict[OptPath, Any]], dict[str, Any]]:
    """hand-written file -> option path -> what nix found there (the paths the file defines; nix leaves the others
    out); and hand-written file -> its boot facts
    (:mod:`homelab.bootable`), read by the same nix process.  ``expr``: :func:`describe_expr` of ``specs``, when
    the caller made it."""
    paths = _paths(specs)
    out = nix.eval_expr(expr if expr is not None else describe_expr(root, specs))
    # nix lists only the paths a file defines (each with its place in ``paths``): the others are not found
    return {hand: {paths[d.pop("at")]: d for d in found} for hand, found in out["clashes"].items()}, out["boot"]


def describe_expr(root: Path, specs: dict) -> str:
    """The expression :func:`_describe` has nix evaluate (for a caller that runs it together with others:
    :meth:`homelab.pynix_eval.Nix.eval_together`)."""
    base = Path(root).resolve()
    files = " ".join(f"{nix_string(hand)} = {{ file = (/. + {nix_string(_under(base, hand))}); inherit tree; }};"
                     for hand in specs)
    return HAND_EXPR % {"lib": HAND_LIB, "files": f"(let tree = {_tree_nix(_paths(specs))}; in {{ {files} }})",
                        "modules": bootable.modules_nix(), "boot_paths": _paths_nix(bootable.PATHS)}


def _tree_nix(paths: list[OptPath]) -> str:
    """``paths`` as the tree HAND_EXPR's ``found`` walks: a node is ``{ at = [ i ... ]; sub = { name = node; }; }``,
    ``at`` the places in ``paths`` of the paths that end at it."""
    root: dict = {}  # name -> node; a node: ("at" list, children dict)

    def node_of(path: OptPath) -> tuple[list[int], dict]:
        at, sub = [], root
        for name in path:
            at, sub = sub.setdefault(name, ([], {}))
        return at, sub

    top: list[int] = []
    for i, path in enumerate(paths):
        (node_of(path)[0] if path else top).append(i)

    def emit(at: list[int], sub: dict) -> str:
        names = " ".join(f"{nix_string(n)} = {emit(*sub[n])};" for n in sorted(sub))
        return f"{{ at = [ {' '.join(map(str, at))} ]; sub = {{ {names} }}; }}"

    return emit(top, root)


def _paths_nix(paths) -> str:
    return "[ " + " ".join("[ " + " ".join(nix_string(p) for p in path) + " ]" for path in paths) + " ]"


def hand_written_problems(root: Path, compiled: Compiled, nix: Nix, hosts: list[str], pre: Precheck
                          ) -> list[Problem]:
    """What a build finds in the hand-written imports, for ``homelab check``: files that are not Nix, and
    definitions that clash with generated ones (read where they are, nothing staged)."""
    base = str(Path(root).resolve()) + "/"
    todo = sorted({rel for h in hosts for rel in compiled.hosts[h].hand_written})
    out: list[Problem] = []
    while todo:
        try:
            nix.parse_files([Path(root).resolve() / rel for rel in todo])
            break
        except NixEvalError as e:
            bad = next((rel for rel in todo if e.key and e.key == base + rel), None)
            if bad is None:
                raise
            out += [Problem(f"hosts/{h}", "imports", f"{bad.rsplit('/', 1)[1]} is not valid Nix: "
                            f"{e.message.replace(base, '')}") for h in _importers(compiled, hosts, bad)]
            todo.remove(bad)
    if out:
        return out
    return hand_written_clashes(root, compiled, nix, hosts, pre)
