"""``from homelab import *`` answered without importlib's Python code, while a lab's host.py files run.

Every host.py starts with ``from homelab import *``.  For a package, CPython hands such an import to
``importlib._bootstrap._handle_fromlist``, which looks at every name of ``homelab.__all__`` with ``hasattr`` (twice:
``*``, then the list) to import any that is a submodule not loaded yet: about 39 µs a file, 0.39 s of CPU at 10,000
hosts, on the critical path of a large build (the host.py files run in one process).  When every name of
``__all__`` is already an attribute of the package, that search imports nothing and returns the package: so does
:func:`quick`'s ``__import__``, which then binds the names exactly as before (the ``*`` itself is bound by the
interpreter from ``__all__``).  Every other import, and this one when anything differs (another object in
``sys.modules["homelab"]``, a name of ``__all__`` missing), goes to the import it replaced.
"""

from __future__ import annotations

import builtins
import contextlib
import sys
import threading
from typing import Iterator

__all__ = ["quick"]

_PACKAGE = "homelab"
_ACTIVE = threading.Lock()  # held while a hook of quick() is in place: one at a time in a process


@contextlib.contextmanager
def quick() -> Iterator[None]:
    """While inside: ``from homelab import *`` returns the loaded package at once (see the module's text); the
    import function in place before is back on leaving (unless the code inside replaced it meanwhile: theirs
    stays, as it would have)."""
    package = sys.modules.get(_PACKAGE)
    names = getattr(package, "__all__", None)
    if package is None or not isinstance(names, (list, tuple)) \
            or not all(isinstance(n, str) and hasattr(package, n) for n in names):
        yield  # a name a star import would still have to import: importlib's own way
        return
    if not _ACTIVE.acquire(blocking=False):  # another thread's load has it in place: importlib's way here (its
        yield  # hook answers this thread's star imports too while it lasts), so the last to leave never
        return  # puts back a hook another one installed
    before = builtins.__import__

    def _import(name, globals=None, locals=None, fromlist=(), level=0):
        if name == _PACKAGE and level == 0 and fromlist == ("*",) and sys.modules.get(_PACKAGE) is package \
                and package.__dict__.get("__all__") is names:
            return package
        return before(name, globals, locals, fromlist, level)

    builtins.__import__ = _import
    try:
        yield
    finally:
        if builtins.__import__ is _import:
            builtins.__import__ = before
        _ACTIVE.release()
