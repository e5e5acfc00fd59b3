"""The cyclic garbage collector paused while a lab is loaded and built.

Loading and building a lab makes millions of objects that live until the build ends (hosts, module
files, nested definitions, what nix read back) and almost no reference cycles.  The collector,
started by allocations, scans the objects it has not yet promoted again and again: about a sixth of
a 10,000-host build's CPU time, to find a few MiB.  ``paused()`` turns it off for a bounded piece of
work and back on after (when it was on); objects without cycles are freed as always, and the few
cycles made meanwhile are collected by the next collection after it.  Standalone: imports nothing
from homelab.
"""

from __future__ import annotations

import contextlib
import gc
from typing import Iterator

__all__ = ["paused"]


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No automatic cyclic collection inside the block (nested blocks: the outermost restores it)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
