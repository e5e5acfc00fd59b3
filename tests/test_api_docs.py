"""The Python API's worked example (docs/api.md, and the README's short one) runs, as written, with real nix.

Every ```python block of the document runs in order, in one namespace, in a scratch folder; each
block asserts what it shows, so a documented call that stops working fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import REPO

BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def blocks(path: Path, section: str | None = None) -> list[str]:
    text = path.read_text(encoding="utf-8")
    if section is not None:
        start = text.index(section)
        end = text.find("\n## ", start + len(section))
        text = text[start:end if end != -1 else None]
    return BLOCK.findall(text)


@pytest.mark.parametrize("doc,section", [("docs/api.md", None), ("README.md", "## Python API")])
def test_the_documented_example_runs(doc, section, nix, tmp_path, monkeypatch):
    code = blocks(REPO / doc, section)
    assert code, f"{doc} has no python example"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    namespace: dict = {"__name__": "__homelab_doc__"}
    for i, block in enumerate(code):
        exec(compile(block, f"{doc} python block {i + 1}", "exec"), namespace)  # noqa: S102 - our own docs

