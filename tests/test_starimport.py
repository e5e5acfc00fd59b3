"""Each host.py's ``from homelab import *`` answered without importlib's search (homelab.starimport): the lab, every
problem and every name a host.py sees are exactly those of the ordinary import."""

from __future__ import annotations

import builtins
import contextlib
import importlib._bootstrap as bootstrap
from pathlib import Path

import pytest

import homelab
from homelab import load, starimport

from .test_precompile import HEADER, _write

ORIGINAL_IMPORT = builtins.__import__


def _variants(root: Path) -> None:
    """Host files that import homelab every way there is, one that imports a name homelab lacks, one that fails."""
    hosts = root / "hosts"
    body = {p.parent.name: p.read_text().removeprefix(HEADER) for p in hosts.glob("*/host.py")}
    (hosts / "n001" / "host.py").write_text("from ipaddress import IPv4Address, IPv4Interface, IPv4Network\nimport homelab\n"
                                            "from homelab import Host, Worker\n"
                                            "from homelab import *\n" + body["n001"])
    (hosts / "n002" / "host.py").write_text("from ipaddress import *\nfrom homelab.model import *\nfrom homelab import *\n"
                                            "names = sorted(k for k in globals() if not k.startswith('__'))\n"
                                            + body["n002"])
    (hosts / "n003" / "host.py").write_text(HEADER + "from homelab import no_such_name\n" + body["n003"])
    (hosts / "n004" / "host.py").write_text(HEADER + "host = Hots(hostname='n004')\n")


def _star_searches(monkeypatch) -> list[str]:
    """The star imports of homelab that importlib searched (its ``_handle_fromlist``, which CPython looks up
    on the module at each call)."""
    seen: list[str] = []
    real = bootstrap._handle_fromlist

    def counting(module, fromlist, import_, *, recursive=False):
        if module is homelab and not recursive and "*" in fromlist:
            seen.append("*")
        return real(module, fromlist, import_, recursive=recursive)

    monkeypatch.setattr(bootstrap, "_handle_fromlist", counting)
    return seen


def _load(root: Path, monkeypatch, quick: bool):
    monkeypatch.setattr(load, "PRECOMPILE_FROM", 10**9)  # compiled here: the import is what differs
    with monkeypatch.context() as m:
        if not quick:
            m.setattr(starimport, "quick", contextlib.nullcontext)
        searched = _star_searches(m)
        out = load.load(root)
    assert builtins.__import__ is ORIGINAL_IMPORT
    return out, len(searched)


def test_a_lab_loads_the_same_with_the_quick_star_import(tmp_path, monkeypatch):
    _write(tmp_path, 8)
    quick, searched = _load(tmp_path, monkeypatch, True)
    plain, searched_plain = _load(tmp_path, monkeypatch, False)
    assert quick == plain
    assert quick[0] is not None and len(quick[0].hosts) == 8
    # importlib searched every host.py's star import only without; cluster.py's (run before the hosts) either way
    assert (searched, searched_plain) == (1, 9)


def test_every_import_form_gives_the_same_lab_and_problems(tmp_path, monkeypatch):
    _write(tmp_path, 6)
    _variants(tmp_path)
    quick, searched = _load(tmp_path, monkeypatch, True)
    plain, _ = _load(tmp_path, monkeypatch, False)
    assert quick == plain
    lab, problems = quick
    assert lab is None
    assert [(p.where, p.field, p.reason) for p in problems if p.severity == "error"] == [
        ("hosts/n003", "host.py line 4", "ImportError: cannot import name 'no_such_name' from 'homelab' "
         f"({Path(homelab.__file__)})"),
        ("hosts/n004", "host.py line 4", "NameError: name 'Hots' is not defined"),
    ]
    assert searched == 1  # cluster.py's


def test_a_star_import_binds_the_names_the_ordinary_one_binds():
    code = compile("from homelab import *\nfrom homelab import Host as H\n", "host.py", "exec")
    plain: dict = {}
    exec(code, plain)
    with starimport.quick():
        assert builtins.__import__ is not ORIGINAL_IMPORT
        quick: dict = {}
        exec(code, quick)
    assert builtins.__import__ is ORIGINAL_IMPORT
    assert quick.keys() == plain.keys() and all(quick[k] is plain[k] for k in plain if k != "__builtins__")
    assert set(plain) - {"__builtins__", "H"} == set(homelab.__all__)


def test_the_import_function_is_back_after_an_error():
    with pytest.raises(ZeroDivisionError):
        with starimport.quick():
            1 / 0
    assert builtins.__import__ is ORIGINAL_IMPORT


def test_a_name_the_package_lacks_leaves_the_import_to_importlib(monkeypatch):
    # a name of __all__ that is not an attribute yet: the star import would have to import it (a submodule)
    monkeypatch.setattr(homelab, "__all__", [*homelab.__all__, "not_loaded_yet"])
    with starimport.quick():
        assert builtins.__import__ is ORIGINAL_IMPORT
    monkeypatch.setattr(homelab, "__all__", [*homelab.__all__[:-1]])
    with starimport.quick():
        assert builtins.__import__ is not ORIGINAL_IMPORT
        homelab.__all__ = list(homelab.__all__)  # another list meanwhile: importlib's way again
        seen = []
        with pytest.MonkeyPatch.context() as m:
            seen = _star_searches(m)
            exec("from homelab import *", {})
        assert seen == ["*"]


def test_two_threads_loading_at_once_leave_the_import_function_as_it_was():
    """Loads in two threads that overlap (A enters, B enters, A leaves, B leaves): the import function in place
    before is back after both, and B's star import meanwhile still gives the package."""
    import builtins
    import threading

    import homelab
    from homelab import starimport

    original = builtins.__import__
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def a():
        with starimport.quick():
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def b():
        a_in.wait(5)
        with starimport.quick():
            b_in.set()
            a_out.wait(5)
            namespace: dict = {}
            exec("from homelab import *", namespace)
            seen["Host"] = namespace.get("Host")

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert builtins.__import__ is original
    assert seen == {"Host": homelab.Host}
