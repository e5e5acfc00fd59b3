"""``python -m homelab`` and the ``homelab`` command.

A no-op ``build`` is answered from the record of the last one (homelab/uptodate.py) before
the rest of homelab is even imported; everything else goes to the command line (homelab/cli.py).
"""

import sys


def run() -> int:
    from . import uptodate

    argv = sys.argv[1:]
    try:
        rc = uptodate.answer(argv)
        if rc is not None:
            sys.stdout.flush()
            return rc
    except BrokenPipeError:
        from .cli import _closed_stdout

        return _closed_stdout()
    uptodate.RECORD = True
    from .about import invoked_as
    from .cli import main

    return main(argv, prog=invoked_as(sys.argv[0], getattr(sys, "orig_argv", None)))


if __name__ == "__main__":
    sys.exit(run())
