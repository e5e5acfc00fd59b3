"""What the tests of homelab.readback's parts share: an override as nix reads one back, and a spy on
``readback.flatten`` counting what is flattened whole."""

from __future__ import annotations

import pytest

from homelab import readback


def force(content, priority=50):
    """``lib.mkOverride priority content`` as nix reads it back (``lib.mkForce`` by default)."""
    return {"_type": "override", "priority": priority, "content": content}


@pytest.fixture
def flattened(monkeypatch):
    """The nested sets flattened whole (a file's definitions), one entry per call."""
    calls: list[dict] = []
    real = readback.flatten

    def spy(nested, prefix=(), contract=None):
        if prefix == ():
            calls.append(nested)
        return real(nested, prefix, contract)

    monkeypatch.setattr(readback, "flatten", spy)
    return calls
