"""``readback.HostOptions``: a host's merged option values, merged when asked for (the precheck keeps no host's),
asked for again answered from a small cache, and read-only, so a write is refused instead of being lost on the
next access (or leaking into the values the precheck shares between hosts)."""

from __future__ import annotations

import copy
import json

import pytest

from homelab import readback
from homelab.compile import compile_lab

from . import labkit


@pytest.fixture
def merged():
    return readback.precheck(compile_lab(labkit.lab())).merged


def test_a_host_asked_for_again_is_not_merged_again(merged, monkeypatch):
    calls = []
    real = readback.merge_host

    def counting(files, *a, **kw):
        calls.append(len(files))
        return real(files, *a, **kw)

    monkeypatch.setattr(readback, "merge_host", counting)
    first = merged["tokiwa"]
    again = [merged["tokiwa"]["networking.hostName"], merged["tokiwa"]["services.kubernetes.roles"]]
    assert again == ["tokiwa", ["node"]] and len(calls) == 1
    assert merged["tokiwa"] is first
    assert [merged[h]["networking.hostName"] for h in ("yomogi", "hanaakari", "tokiwa")] == [
        "yomogi", "hanaakari", "tokiwa"]
    assert len(calls) == 3  # yomogi and hanaakari once each, tokiwa still remembered


def test_merged_values_are_read_only_and_copy_into_a_dict_of_ones_own(merged):
    values = merged["hanaakari"]
    with pytest.raises(TypeError):
        values["networking.hostName"] = "other"
    with pytest.raises(TypeError):
        values.update({"networking.hostName": "other"})
    with pytest.raises(TypeError):
        del values["networking.hostName"]
    assert merged["hanaakari"]["networking.hostName"] == "hanaakari"
    mine = copy.deepcopy(values)
    mine["networking.hostName"] = "other"
    mine["services.kubernetes.roles"].append("master")
    assert type(mine) is dict and mine["networking.hostName"] == "other"
    assert merged["hanaakari"]["services.kubernetes.roles"] == ["node"]  # the deep copy shares nothing
    assert json.loads(json.dumps(values)) == dict(values) and values == dict(values)
