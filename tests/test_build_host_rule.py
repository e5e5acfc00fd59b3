"""validate's build_on rule (looked up in the lab's host names, worked out once per lab): a name of the lab
passes, any other name is the one problem, on each host that gives it."""

from __future__ import annotations

from homelab.validate import validate

from . import labkit


def _build_on_problems(lab) -> list[tuple[str, str, str]]:
    return [(p.where, p.field, p.reason) for p in validate(lab) if p.field == "build_on"]


def test_a_lab_host_passes_and_other_names_are_refused_on_each_host():
    lab = labkit.lab()
    names = sorted(h.hostname for h in lab.hosts)
    ok = labkit.evolve_host(lab, names[0], build_on=names[1])
    assert _build_on_problems(ok) == []
    bad = labkit.evolve_host(labkit.evolve_host(ok, names[1], build_on="nope"), names[2], build_on="nix")
    assert _build_on_problems(bad) == [
        (bad.where(bad.host(names[1])), "build_on", "'nope' is not a host of this lab (say \"local\", \"target\" or a "
         "lab host's name)"),
        (bad.where(bad.host(names[2])), "build_on", "'nix' is not a host of this lab (say \"local\", \"target\" or a "
         "lab host's name)"),
    ]
    assert _build_on_problems(labkit.evolve_host(lab, names[0], build_on="target")) == []
    assert _build_on_problems(labkit.evolve_host(lab, names[0], build_on="local")) == []
