"""A host's raw ``options`` are the user's own (homelab.compile.host_sections): written in their own section of
the host's entry file, outside homelab's option contract, and never taken for homelab's definitions (no nix)."""

from __future__ import annotations

import attrs

from homelab import readback
from homelab.compile import compile_lab
from homelab.validate import option_clashes

from . import labkit

RAW = "Raw options from host.py."


def test_a_hosts_raw_options_are_its_own_section_outside_the_contract_and_clash_with_nothing():
    s = labkit.seed_hosts()
    lab = labkit.lab([attrs.evolve(s[0], options={"services.myapp.enable": True, "services.myapp.port": 8123}),
                      *s[1:]])
    compiled = compile_lab(lab)
    entry = compiled.files[compiled.hosts[s[0].hostname].entry]
    assert [(sec.defs, sec.user) for sec in entry.sections if sec.comment == RAW] == [
        (((("services", "myapp", "enable"), True), (("services", "myapp", "port"), 8123)), True)]
    pre = readback.precheck(compiled)  # services.myapp is no option homelab knows: the user's, not checked
    assert (pre.problems, {h: c for h, c in pre.conflicts.items() if c}) == ([], {})
    assert option_clashes(lab, compiled, pre) == ([], set())
