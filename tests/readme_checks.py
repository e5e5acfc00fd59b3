"""The README's generated blocks (the diagram, the policy table), checked the way the suite checks them.

Each block must be what homelab generates from the frozen seed lab (``homelab/examples/seed``), or, in a
fork that redrew it for its own lab, from the lab in the repository's ``hosts/``. A block stale for both
is a problem; editing ``hosts/`` alone never makes one.
"""

from __future__ import annotations

from pathlib import Path

from homelab import graph, policy
from homelab.harness import EXAMPLES
from homelab.load import load_or_raise

SEED = EXAMPLES / "seed"


def blocks(lab) -> dict[str, tuple[str, tuple[str, str]]]:
    """Each generated block of the README for ``lab``: name -> (text, (start marker, end marker))."""
    return {"diagram": (graph.readme_block(graph.topology(lab)), (graph.README_START, graph.README_END)),
            "policy": (policy.readme_block(lab), (policy.README_START, policy.README_END))}


def readme_problems(repo: Path) -> list[str]:
    """What is stale in ``repo``/README.md: one line per block that is neither the seed lab's nor the repo's lab's."""
    readme = (Path(repo) / "README.md").read_text(encoding="utf-8")
    seed = blocks(load_or_raise(SEED)[0])
    own = blocks(load_or_raise(Path(repo))[0])
    out = []
    for name, (text, (start, end)) in seed.items():
        if readme.count(start) != 1 or readme.count(end) != 1:
            out.append(f"{name}: README.md must hold its markers once each")
            continue
        found = readme[readme.index(start):readme.index(end) + len(end)]
        if found not in (text, own[name][0]):
            out.append(f"{name}: out of date (python -m homelab {'graph' if name == 'diagram' else 'policy'} "
                       "--root homelab/examples/seed --update-readme --readme README.md)")
    return out
