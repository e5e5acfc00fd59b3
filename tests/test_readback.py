"""The verifier: the option combiner, the contract, and nix catching a file that differs from the model."""

from __future__ import annotations

import attrs
import pytest

from homelab import render, readback
from homelab.roles import builtin_contract
from homelab import optiontypes as t
from homelab.compile import ModuleFile, Section, compile_lab, opt
from tests import labkit

OV = lambda p, v: {"_type": "override", "priority": p, "content": v}  # noqa: E731

BUILTIN_CONTRACT = builtin_contract()


def test_lists_concatenate_in_module_order():
    assert t.merge_definitions(t.ListOf(t.str_), [["ceph", "rbd"], ["dm_crypt"]]) == ["ceph", "rbd", "dm_crypt"]


def test_lines_join_with_newlines_and_separated_strings_with_their_separator():
    assert t.merge_definitions(t.lines, ["a", "b"]) == "a\nb"
    assert t.merge_definitions(t.separatedString(" "), ["--root-dir=/x", "--v=2"]) == "--root-dir=/x --v=2"


def test_attribute_sets_merge_per_key_and_scalars_conflict():
    env = BUILTIN_CONTRACT.by_path["systemd.services.<name>.environment"].type
    assert t.merge_definitions(env, [{"A": "1"}, {"B": "2"}]) == {"A": "1", "B": "2"}
    with pytest.raises(t.MergeConflict):
        t.merge_definitions(env, [{"A": "1"}, {"A": "2"}])
    with pytest.raises(t.MergeConflict):
        t.merge_definitions(t.bool_, [True, False])
    assert t.merge_definitions(t.bool_, [True, True]) is True


def test_stronger_priority_hides_weaker_definitions():
    assert t.merge_definitions(t.bool_, [True, OV(50, False)]) is False  # mkForce wins
    assert t.merge_definitions(t.bool_, [OV(1000, True), False]) is False  # mkDefault loses
    assert t.merge_definitions(t.ListOf(t.str_), [OV(1000, ["a"]), ["b"], ["c"]]) == ["b", "c"]


def test_types_check_values():
    roles = BUILTIN_CONTRACT.by_path["services.kubernetes.roles"].type
    assert roles.check(["master", "node"]) is None
    assert roles.check(["worker"]) is not None
    assert t.port.check(6443) is None and t.port.check(70000) is not None
    assert t.bool_.check(1) is not None and t.int_.check(True) is not None
    assert t.Package().check({"_type": "pkg", "attrPath": "htop"}) is None
    assert t.Package().check("htop") is not None


def test_contract_lookup_matches_name_placeholders():
    assert BUILTIN_CONTRACT.lookup(opt("systemd.services.etcd.environment")).path == "systemd.services.<name>.environment"
    assert BUILTIN_CONTRACT.lookup(opt("networking.interfaces.end0.ipv4.addresses")) is not None
    assert BUILTIN_CONTRACT.lookup(opt("services.kubernetes.roles.extra")) is None


def test_every_path_the_seed_lab_emits_is_in_the_contract(seed_compiled):
    for f in seed_compiled.files.values():
        assert readback.contract_problems(f) == []
        for sec in f.sections:
            if not sec.user:
                for path, _ in sec.defs:
                    assert BUILTIN_CONTRACT.lookup(path) is not None, ".".join(path)


def test_a_path_outside_the_contract_is_refused():
    f = ModuleFile("modules/x.nix", "x", "test", (), (Section("", ((opt("services.kubernetes.rolez"), ["node"]),)),))
    assert "not in the option contract" in readback.contract_problems(f)[0]


def test_a_value_that_does_not_fit_its_type_is_refused():
    f = ModuleFile("modules/x.nix", "x", "test", (),
                   (Section("", ((opt("services.kubernetes.roles"), ["worker"]),)),))
    assert "does not fit" in readback.contract_problems(f)[0]


def test_user_raw_options_are_exempt_from_the_contract_but_still_merged():
    f = ModuleFile("hosts/a/default.nix", "x", "test", (),
                   (Section("", ((opt("services.openssh.enable"), True),), user=True),))
    assert readback.contract_problems(f) == []


def test_precheck_finds_a_user_option_conflicting_with_a_role():
    lab = labkit.evolve_host(labkit.lab(), "tokiwa", options={"services.kubernetes.roles": ["master"]})
    problems = readback.precheck(compile_lab(lab)).all_problems()
    assert any("services.kubernetes.roles" in p for p in problems) is False  # lists concatenate: no conflict
    lab = labkit.evolve_host(labkit.lab(), "tokiwa", options={"services.kubernetes.easyCerts": False})
    problems = readback.precheck(compile_lab(lab)).all_problems()
    assert any("services.kubernetes.easyCerts" in p and "conflicting" in p for p in problems)


def test_force_lets_a_user_option_win(nix, tmp_path):
    from homelab import force

    lab = labkit.evolve_host(labkit.lab(), "tokiwa", options={"services.kubernetes.easyCerts": force(False)})
    compiled = compile_lab(lab)
    assert readback.precheck(compiled).all_problems() == []
    write_lab(tmp_path, compiled)
    report = readback.read_back(tmp_path, compiled, nix)
    assert report.problems == []
    assert report.options["tokiwa"]["services.kubernetes.easyCerts"] is False
    assert report.options["hanaakari"]["services.kubernetes.easyCerts"] is True


def test_nix_catches_a_file_that_differs_from_the_model(nix, tmp_path, seed_compiled):
    write_lab(tmp_path, seed_compiled)
    assert readback.read_back(tmp_path, seed_compiled, nix).problems == []
    ceph = tmp_path / "modules/k8s/ceph.nix"
    ceph.write_text(ceph.read_text().replace('"1048576"', '"4096"'))
    problems = readback.read_back(tmp_path, seed_compiled, nix).problems
    assert any("modules/k8s/ceph.nix" in p and "LimitNOFILE" in p for p in problems)


def test_nix_catches_a_missing_import(nix, tmp_path, seed_compiled):
    write_lab(tmp_path, seed_compiled)
    entry = tmp_path / "hosts/tokiwa/default.nix"
    entry.write_text(entry.read_text().replace("    ../../modules/k8s/ceph.nix\n", ""))
    problems = readback.read_back(tmp_path, seed_compiled, nix).problems
    assert any(p.startswith("hosts/tokiwa/default.nix: imports") for p in problems)


def test_generated_modules_must_not_read_config(nix, tmp_path, seed_compiled):
    from homelab.pynix_eval import NixEvalError

    write_lab(tmp_path, seed_compiled)
    base = tmp_path / "modules/k8s/base.nix"
    text = base.read_text()
    assert text.count("{ pkgs, ... }:") == 1
    base.write_text(text.replace("{ pkgs, ... }:", "{ config, pkgs, ... }:").replace(
        '"api.kube";', "config.networking.hostName;", 1))
    with pytest.raises(NixEvalError, match="must not read config"):
        readback.read_back(tmp_path, seed_compiled, nix)


def write_lab(root, compiled) -> None:
    """The generated files of ``compiled`` under ``root``, with empty hand-written imports."""
    for rel, text in render.render_all(compiled).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    for plan in compiled.hosts.values():
        for rel in plan.hand_written:
            (root / rel).write_text("{ ... }: { }\n")


def test_nest_and_flatten_are_inverse_on_contract_paths(seed_compiled):
    for f in seed_compiled.files.values():
        defs = [(p, readback.to_json(v)) for p, v in f.definitions()]
        assert sorted(readback.flatten(readback.nest(f.definitions()))) == sorted(defs)


def test_the_dns_image_is_one_choice_written_for_every_node():
    from homelab import ControlPlane, CorednsImage, SystemdBoot
    from homelab.roles import kubernetes

    from homelab.expect import host_expectations
    from homelab.validate import validate

    image = opt("services.kubernetes.addons.dns.corednsImage")

    def errors(lab) -> list:
        return [p for p in validate(lab) if p.severity == "error"]

    def images(lab) -> dict[str, list]:
        """host -> every corednsImage definition in the files it imports."""
        c = compile_lab(lab)
        return {h: [v for rel in c.files_of(h) for p, v in c.files[rel].definitions() if p == image]
                for h in c.hosts}

    def seeded(lab) -> dict[str, list]:
        """host -> the images its expectations say containerd must hold."""
        return {h.hostname: [c.spec["reference"] for c in host_expectations(lab, h).checks if c.kind == "image"]
                for h in lab.hosts}

    # "auto": the tagged image, in the shared base module, on all three nodes of the mixed seed lab
    seed = labkit.lab()
    assert images(seed) == {h: [kubernetes.coredns_image()] for h in ("hanaakari", "tokiwa", "yomogi")}
    assert seeded(seed) == {h: ["docker.io/library/coredns:homelab"] for h in ("hanaakari", "tokiwa", "yomogi")}
    assert dict(compile_lab(seed).files["modules/k8s/arm64.nix"].definitions()) == {
        opt("systemd.services.etcd.environment"): {"ETCD_UNSUPPORTED_ARCH": "arm64"}}
    # an all-x86 lab may keep nixpkgs' default (nothing written) or pull a pin on every node
    x86 = labkit.evolve_host(seed, "yomogi", system="x86_64-linux", boot=SystemdBoot())
    lab = labkit.evolve_host(x86, "yomogi", roles=[ControlPlane(coredns_image=None)])
    assert errors(lab) == [] and images(lab) == {h: [] for h in ("hanaakari", "tokiwa", "yomogi")}
    assert seeded(lab) == {h: [] for h in ("hanaakari", "tokiwa", "yomogi")}  # its tag is a store hash
    pin = CorednsImage("coredns/coredns", "sha256:" + "0" * 64, "1.12.2", "a" * 52, arch="amd64")
    lab = labkit.evolve_host(x86, "yomogi", roles=[ControlPlane(coredns_image=pin)])
    assert errors(lab) == [] and images(lab) == {h: [pin.package()] for h in ("hanaakari", "tokiwa", "yomogi")}
    assert seeded(lab) == {h: ["docker.io/coredns/coredns:1.12.2"] for h in ("hanaakari", "tokiwa", "yomogi")}
    # without the addon nothing is seeded
    lab = labkit.evolve_host(seed, "yomogi", roles=[ControlPlane(dns_addon=False)])
    assert images(lab) == {h: [] for h in ("hanaakari", "tokiwa", "yomogi")}


def test_an_option_name_with_a_dot_is_written_quoted_and_read_back(nix, tmp_path):
    lab = labkit.evolve_host(labkit.lab(), "tokiwa", options={
        'environment.etc."k3s/registries.yaml".text': "mirrors: {}\n",
        'environment.etc."q\\"uote".text': "x",
    })
    compiled = compile_lab(lab)
    write_lab(tmp_path, compiled)
    text = (tmp_path / "hosts/tokiwa/default.nix").read_text()
    assert 'environment.etc."k3s/registries.yaml".text = ' in text
    report = readback.read_back(tmp_path, compiled, nix)
    assert report.problems == []
    # show's keys are Nix attribute paths: a name with a dot stays quoted
    assert report.options["tokiwa"]['environment.etc."k3s/registries.yaml".text'] == "mirrors: {}\n"
    assert report.options["tokiwa"]['environment.etc."q\\"uote".text'] == "x"


def test_a_vlan_interface_is_refused_with_the_reason():
    from homelab import LabError

    with pytest.raises(LabError, match="VLAN interface .* does not write networking.vlans"):
        labkit.evolve_host(labkit.lab(), "tokiwa", interface="enp1s0.10")