"""Behaviour of the core modules that only a new process exercised before (found by mutation testing:
``./lab mutate``), asserted in-process so that a planted bug there fails a test."""

from __future__ import annotations

from homelab import verify
from homelab.expect import host_expectations, lab_expectations
from tests import labkit

OV = lambda p, v: {"_type": "override", "priority": p, "content": v}  # noqa: E731


def test_lab_expectations_by_scope_split_the_checks_between_host_and_cluster():
    lab = labkit.lab()
    every = lab_expectations(lab)
    host = lab_expectations(lab, scope="host")
    cluster = lab_expectations(lab, scope="cluster")
    assert sorted(every) == sorted(host) == sorted(cluster) == ["hanaakari", "tokiwa", "yomogi"]
    for name, e in every.items():
        assert {c.scope for c in host[name].checks} == {"host"}
        assert {c.scope for c in cluster[name].checks} == {"cluster"}
        assert sorted(c.id for c in host[name].checks + cluster[name].checks) == sorted(c.id for c in e.checks)
        assert e.to_json() == host_expectations(lab, lab.host(name)).to_json()
    assert list(lab_expectations(lab, ["tokiwa"])) == ["tokiwa"]


def test_an_override_inside_a_forced_group_is_the_one_that_counts():
    # force({"enable": default(False), "allowPing": True}) set on networking.firewall
    nested = {"networking": {"firewall": OV(50, {"enable": OV(1000, False), "allowPing": True})}}
    assert dict(verify.flatten(nested)) == {
        ("networking", "firewall", "enable"): OV(1000, False),
        ("networking", "firewall", "allowPing"): OV(50, True),
    }


def test_a_conflict_names_the_option_the_message_and_every_file():
    c = verify.Conflict(("networking", "hostName"), "conflicting definitions 'a' and 'b'",
                        ("hosts/x/default.nix", "hosts/x/extra.nix"))
    assert str(c) == ("networking.hostName: conflicting definitions 'a' and 'b' (defined in hosts/x/default.nix, "
                      "hosts/x/extra.nix)")


def test_show_merges_with_the_labs_own_contract_rows():
    """A lab's own role brings contract rows: the options read back are cut at its option paths, not below."""
    import attrs

    from homelab import Worker
    from homelab.compile import compile_lab
    from homelab.role import Module, OptionFact, Role, section, types

    @attrs.frozen
    class Settings(Role):
        options = (OptionFact("services.foo.settings", types.AttrsOf(types.str_), "test"),)

        def compile(self, ctx):
            yield Module("modules/foo.nix", "foo", (section("", ("services.foo.settings", {"a": "1"})),))

    lab = labkit.evolve_host(labkit.lab(), "tokiwa", roles=[Worker(), Settings()])
    compiled = compile_lab(lab)
    pre = verify.precheck(compiled)
    evaluated = {"generated": {rel: {"imports": [verify._import_target(rel, i) for i in compiled.files[rel].imports],
                                     "defs": pre.nested[rel]} for rel in compiled.files}}
    options, conflicts = verify.host_options(evaluated, compiled, "tokiwa")
    assert conflicts == []
    assert options["services.foo.settings"] == {"a": "1"}
    assert "services.foo.settings.a" not in options
    assert options == pre.merged["tokiwa"]
