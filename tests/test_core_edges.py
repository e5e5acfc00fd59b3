"""Behaviour of the core modules that only a new process exercised before (found by mutation testing:
``./lab mutate``), asserted in-process so that a planted bug there fails a test."""

from __future__ import annotations

import pytest

from homelab import readback
from homelab.errors import LabError
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
    assert dict(readback.flatten(nested)) == {
        ("networking", "firewall", "enable"): OV(1000, False),
        ("networking", "firewall", "allowPing"): OV(50, True),
    }


def test_a_conflict_names_the_option_the_message_and_every_file():
    c = readback.Conflict(("networking", "hostName"), "conflicting definitions 'a' and 'b'",
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
    pre = readback.precheck(compiled)
    evaluated = {"generated": {rel: {"imports": [readback._import_target(rel, i) for i in compiled.files[rel].imports],
                                     "defs": pre.nested[rel]} for rel in compiled.files}}
    options, conflicts = readback.host_options(evaluated, compiled, "tokiwa")
    assert conflicts == []
    assert options["services.foo.settings"] == {"a": "1"}
    assert "services.foo.settings.a" not in options
    assert options == pre.merged["tokiwa"]


def test_a_package_inside_a_package_calls_arguments_reaches_nix(lab_copy, nix):
    """pkgs.f { p = pkgs.hello; }: the stand-in pkgs must know hello too, or nix cannot read the file back."""
    import contextlib
    import io
    import json

    from homelab.cli import main

    host_py = lab_copy / "hosts/tokiwa/host.py"
    host_py.write_text(host_py.read_text().replace(
        'options={"services.openssh.enable": True}',
        'options={"services.openssh.enable": True, "services.x.image": __import__("homelab").PkgCall('
        '"dockerTools.pullImage", {"helper": __import__("homelab").Pkg("hello")})}'))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(["build", "--root", str(lab_copy)]) == 0, err.getvalue()
        assert main(["show", str(lab_copy / "hosts/tokiwa"), "--json"]) == 0, err.getvalue()
    shown = json.loads(out.getvalue()[out.getvalue().index("{"):])
    assert shown["services.x.image"] == {"_type": "pkg-call", "function": "dockerTools.pullImage",
                                         "args": {"helper": {"_type": "pkg", "attrPath": "hello"}}}


def test_files_read_back_without_the_data_file(nix, tmp_path):
    """hosts/lab.nix is compared when it is there; a folder without it still evaluates (data null), and the
    module files verify clean."""
    from homelab.compile import compile_lab
    from homelab.render import render_all

    lab = labkit.lab()
    compiled = compile_lab(lab)
    for rel, text in render_all(compiled).items():
        if rel != "hosts/lab.nix":
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / rel).write_text(text)
    assert readback.evaluate(tmp_path, compiled, nix)["data"] is None
    report = readback.read_back(tmp_path, compiled, nix)
    assert report.problems == [] and report.files == len(render_all(compiled)) - 1


def test_a_build_reports_which_files_it_left_unchanged(lab_copy, nix):
    from homelab import build

    first = build.build(lab_copy)
    assert first.written == () and first.removed == ()
    assert sorted(first.unchanged) == sorted([*(p.relative_to(lab_copy).as_posix() for p in
                                                lab_copy.glob("modules/**/*.nix")),
                                              *(f"hosts/{h}/default.nix" for h in ("hanaakari", "tokiwa", "yomogi")),
                                              "hosts/lab.nix", "cluster/helmfile.yaml",
                                              *(p.relative_to(lab_copy).as_posix() for p in
                                                lab_copy.glob("cluster/values/*.yaml"))])


def test_the_emitter_writes_numbers_and_forced_sets_as_nixfmt_does():
    from homelab import nixvalue
    from homelab.model import Priority

    assert [nixvalue.render(v) for v in (0, 1, -1, -3)] == ["0", "1", "(-1)", "(-3)"]
    # a forced attribute set inside an indented block keeps that block's indentation
    assert nixvalue.render(Priority({"a": [1, 2]}, 50), "  ") == (
        "lib.mkForce {\n    a = [\n      1\n      2\n    ];\n  }")


def test_the_emitter_says_why_it_refuses_a_value():
    import pytest

    from homelab import force, nixvalue

    with pytest.raises(nixvalue.NixValueError, match="^Nix strings cannot contain NUL characters$"):
        nixvalue.quote("a\x00b")
    with pytest.raises(nixvalue.NixValueError, match="^cannot write object <object object at"):
        nixvalue.render(object())
    with pytest.raises(nixvalue.NixValueError, match="apply to a whole option value, not a list element"):
        nixvalue.render([force(1)])


def test_a_path_outside_the_contract_is_named_dotted():
    from homelab.compile import ModuleFile, Section, opt

    f = ModuleFile("modules/x.nix", "x", "a test", (), (Section("", ((opt("services.nosuch.enable"), True),)),))
    assert readback.contract_problems(f) == [
        "modules/x.nix: services.nosuch.enable is not in the option contract (the core rows in homelab/contract.py "
        "or the options of the role that writes it)"]


def test_plan_names_a_file_a_build_would_refuse_to_overwrite(lab_copy):
    from homelab import plan

    f = lab_copy / "modules/k8s/ceph.nix"
    f.write_text(f.read_text().replace('"1048576"', '"65536"'))
    files = {x["path"]: x for x in plan.compute(lab_copy, None)["files"]}
    assert list(files) == ["modules/k8s/ceph.nix"]
    assert files["modules/k8s/ceph.nix"]["blocked"].startswith("was edited by hand since homelab generated it")


def test_expect_text_lists_each_kind_with_scope_tags():
    from homelab.expect import text

    e = lab_expectations(labkit.lab(), ["hanaakari"])["hanaakari"]
    lines = text(e).splitlines()
    assert lines[0] == "hanaakari (x86_64-linux, 192.168.10.12; worker, ceph, ingress, tailscale):"
    assert "  service:" in lines and "  proxy:" in lines
    assert "    kubelet.service  [cluster]  — Worker role: runs once the node joined the cluster " \
           "(nixos-kubernetes-node-join)" in lines
    assert "    containerd.service  — container runtime of every Kubernetes node" in lines  # host scope: no tag
    assert len([ln for ln in lines if ln.startswith("    ")]) == len(e.checks)


def test_two_definitions_of_one_set_in_a_file_join_and_a_repeated_leaf_is_refused():
    import pytest

    from homelab.compile import opt

    joined = readback.nest([(opt("a.b"), {"x": {"y": 1}}), (opt("a.b"), {"x": {"z": 2}})])
    assert joined == {"a": {"b": {"x": {"y": 1, "z": 2}}}}
    with pytest.raises(ValueError, match=r"^a\.b\.x\.y is defined twice in one file$"):
        readback.nest([(opt("a.b"), {"x": {"y": 1}}), (opt("a.b"), {"x": {"y": 2}})])


def test_files_plan_and_stale_prune_by_default(lab_copy):
    """The library's defaults: a generated file no longer produced is to be deleted (plan) and is stale."""
    from homelab import files
    from homelab.compile import compile_lab
    from homelab.render import render_all

    texts = render_all(compile_lab(labkit.lab()))
    extra = lab_copy / "modules/old/gone.nix"
    extra.parent.mkdir()
    extra.write_text((lab_copy / "modules/k8s/ceph.nix").read_text())  # generated, with a valid hash
    assert "modules/old/gone.nix" in files.plan(lab_copy, texts).delete
    assert "modules/old/gone.nix" in files.stale(lab_copy, texts)
    assert "modules/old/gone.nix" not in files.plan(lab_copy, texts, prune=False).delete
    with pytest.raises(LabError):  # and a hand edit blocks, unless forced
        edited = dict(texts)
        (lab_copy / "modules/k8s/ceph.nix").write_text(texts["modules/k8s/ceph.nix"].replace("1048576", "1"))
        files.plan(lab_copy, {k: v.replace("rbd", "rbd2") for k, v in edited.items()})
