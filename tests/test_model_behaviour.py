"""homelab.model's own rules, asserted exactly: what each converter accepts, what it makes of it, and the
Problem (where, field, reason) a user sees when it refuses.  Fast: no nix, no files."""

from __future__ import annotations

from collections.abc import Mapping

import attrs
import pytest

from homelab.errors import LabError, Problem, collecting, located
from homelab.fields import wrong_type
from homelab.model import Host, Lab, generated_path, option_path, option_path_problem, sources_converter
from homelab.role import SOURCE_HELP, Role, Source
from homelab.roles import Worker
from homelab.values import MAX_VALUE_DEPTH, FrozenDict
from tests.labkit import cluster


def problems(make) -> list[Problem]:
    """The problems ``make()`` reports, as the loader gathers them (located in hosts/h)."""
    with located("hosts/h"), collecting() as sink:
        make()
    return sink


def refused(make) -> list[Problem]:
    """Outside the loader the first problem raises LabError at once."""
    with pytest.raises(LabError) as e:
        make()
    return e.value.problems


# ---------------------------------------------------------------- sources_converter


@attrs.frozen
class _Clients:
    """A role-like class with a list of sources, built from the converter factory itself (not the module-level
    ``to_sources`` that import time made)."""

    clients: tuple = attrs.field(default=("lan",), converter=sources_converter("a list of who may ask"))


def test_sources_converter_reads_one_source_or_a_list_into_a_tuple_of_sources():
    assert _Clients("lan").clients == (Source("lan"),)
    assert _Clients(Source("world")).clients == (Source("world"),)
    assert _Clients(["tailnet", "host:tokiwa", "192.168.20.0/24"]).clients == (
        Source("tailnet"), Source("host", "tokiwa"), Source("network", network="192.168.20.0/24"))
    assert _Clients(()).clients == ()


def test_sources_converter_names_the_field_and_each_bad_item():
    assert refused(lambda: _Clients(["lan", "lann"])) == [
        Problem("lab", "_Clients.clients[1]", f"'lann' is not {SOURCE_HELP}")]
    assert refused(lambda: _Clients(5)) == [
        Problem("lab", "_Clients.clients", "5 is an int, not a list of who may ask")]
    assert problems(lambda: _Clients(["lann", 7, "pods"])) == [
        Problem("hosts/h", "_Clients.clients[0]", f"'lann' is not {SOURCE_HELP}"),
        Problem("hosts/h", "_Clients.clients[1]", f"7 is an int, not {SOURCE_HELP}")]
    assert refused(lambda: _Clients("lann")) == [Problem("lab", "_Clients.clients[0]", f"'lann' is not {SOURCE_HELP}")]


def test_cluster_admins_field_is_named_plainly():
    assert refused(lambda: cluster(admins=["lan", "nope"])) == [
        Problem("lab", "admins[1]", f"'nope' is not {SOURCE_HELP}")]


ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGhvbWVsYWItcGxhY2Vob2xkZXItcmVwbGFjZS1tZSEh"


def test_cluster_admin_keys_cut_short_or_of_another_type_are_refused_naming_each():
    """The pattern alone let a line cut short through (only the secrets commands refused it); the same strict
    check (homelab.fields.ssh_key_blob) now runs where the field is defined: each bad key named, none else
    (what the pattern refuses first, as the converter reports it, then each key that is not whole)."""
    why = ("is not a whole {} key (its base64 does not decode to one; a line cut short or mistyped?); copy the whole "
           "line of the admin's public key again (e.g. ~/.ssh/id_ed25519.pub)")
    rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7"  # cut short, and its type still whole: age refuses it later
    keys = [f"{ED25519} a@b", "ssh-ed25519 AAAAB x@y", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI!Gh2", rsa,
            "ssh-ed25519 " + rsa.split()[1], "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY= e@x"]
    assert problems(lambda: cluster(admin_keys=keys)) == [
        Problem("hosts/h", "admin_keys[2]", "'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI!Gh2' is not an SSH public key "
                "(one line, e.g. \"ssh-ed25519 AAAA... you@laptop\")"),
        Problem("hosts/h", "admin_keys[1]", "'ssh-ed25519 AAAAB' " + why.format("ssh-ed25519")),
        Problem("hosts/h", "admin_keys[4]", f"'ssh-ed25519 {rsa.split()[1]}' " + why.format("ssh-ed25519"))]
    assert refused(lambda: cluster(admin_keys=("ssh-rsa AAAA",))) == [
        Problem("lab", "admin_keys[0]", "'ssh-rsa AAAA' " + why.format("ssh-rsa"))]
    assert cluster(admin_keys=keys[:1] + keys[3:4] + keys[5:]).admin_keys == (keys[0], rsa, keys[5])
    assert problems(lambda: cluster(admin_keys=[5, "ssh-ed25519 AAAA"])) == [  # the type first, once per key
        Problem("hosts/h", "admin_keys[0]", "5 is an int, not an SSH public key (one line, e.g. \"ssh-ed25519 "
                "AAAA... you@laptop\")"),
        Problem("hosts/h", "admin_keys[1]", "'ssh-ed25519 AAAA' " + why.format("ssh-ed25519"))]


# ---------------------------------------------------------------- option paths


def test_option_path_unquotes_a_quoted_name_and_its_escapes():
    assert option_path('environment.etc."a.conf".text') == ("environment", "etc", "a.conf", "text")
    assert option_path(r'environment.etc."a\"b\\c.conf".text') == ("environment", "etc", 'a"b\\c.conf', "text")
    assert option_path("services.openssh.enable") == ("services", "openssh", "enable")


def test_option_path_problem_says_why_exactly():
    assert option_path_problem("services.openssh.enable") is None
    assert option_path_problem('environment.etc."a.conf".text') is None
    assert option_path_problem(5) == "5 is an int, not a dotted option path (a string)"
    assert option_path_problem("services..x") == (
        "'services..x' is not a dotted option path such as 'services.openssh.enable' "
        "(quote a name that holds a dot: 'environment.etc.\"a.conf\".text')")
    assert option_path_problem("imports.x") == (
        "'imports.x' starts with 'imports', which is a module keyword, not an option: use Host(imports=[...]) "
        "for Nix files")
    assert option_path_problem("config.services.x") == (
        "'config.services.x' starts with 'config', which is a module keyword, not an option: write the path "
        "without 'config.'")
    assert option_path_problem("options.foo") == (
        "'options.foo' starts with 'options', which is a module keyword, not an option: raw options set values; "
        "they cannot declare options")
    assert option_path_problem("meta.maintainers") == (
        "'meta.maintainers' starts with 'meta', which is a module keyword, not an option: it is not an option")
    # only the first part is a keyword's place: an option may well have a part named "config" or "options"
    assert option_path_problem("services.config.options") is None


def test_option_path_problem_of_a_str_subclass_is_that_of_its_text():
    class Path(str):
        pass

    assert option_path_problem(Path("services.openssh.enable")) is None
    assert option_path_problem(Path("imports.x")) == option_path_problem("imports.x")
    assert option_path_problem(Path("services..x")) == (
        "'services..x' is not a dotted option path such as 'services.openssh.enable' "
        "(quote a name that holds a dot: 'environment.etc.\"a.conf\".text')")


def test_option_path_problem_limits_the_number_of_parts():
    longest = ".".join(f"p{i}" for i in range(MAX_VALUE_DEPTH))
    assert option_path_problem(longest) is None
    too_long = longest + ".x"
    assert option_path_problem(too_long) == (
        f"{too_long[:40]!r}... has {MAX_VALUE_DEPTH + 1} parts; NixOS option paths have a handful (at most "
        f"{MAX_VALUE_DEPTH} here)")


# ---------------------------------------------------------------- Host.options


def _host(**kw) -> Host:
    base = dict(hostname="h", system="x86_64-linux", interface="eth0", address="192.168.10.5", roles=[],
                state_version="25.05")
    base.update(kw)
    return Host(**base)


class _Loop(Mapping):
    """A mapping whose every lookup looks itself up again: freezing it never ends (a RecursionError)."""

    def __getitem__(self, key):
        return self[key]

    def __iter__(self):
        return iter(["k"])

    def __len__(self):
        return 1


def test_host_options_freezes_good_entries_and_reports_each_bad_one():
    got = problems(lambda: _host(options={
        "imports.x": 1, "services.a.enable": True, "x..y": 2, "services.b.list": [1, [2]],
        "services.c.set": {1, 2}, "services.d.loop": _Loop(), "services.e.enable": False}))
    assert got == [
        Problem("hosts/h", "options", "'imports.x' starts with 'imports', which is a module keyword, not an "
                "option: use Host(imports=[...]) for Nix files"),
        Problem("hosts/h", "options", "'x..y' is not a dotted option path such as 'services.openssh.enable' "
                "(quote a name that holds a dot: 'environment.etc.\"a.conf\".text')"),
        Problem("hosts/h", "options['services.c.set']", "a set has no order; use a list"),
        Problem("hosts/h", "options['services.d.loop']", "contains itself"),
    ]
    h = _host(options={"services.a.enable": True, "services.b.list": [1, [2]]})
    assert h.options == FrozenDict({"services.a.enable": True, "services.b.list": (1, (2,))})
    assert type(h.options) is FrozenDict


def test_host_options_must_be_a_dict():
    assert refused(lambda: _host(options=["services.a.enable"])) == [
        Problem("lab", "options", "['services.a.enable'] is a list, not a dict of option path -> value")]
    # while collecting, the bad value is left out: the host still has an (empty) options mapping
    with collecting():
        assert _host(options=5).options == FrozenDict()


# ---------------------------------------------------------------- Host.roles


def test_host_roles_reads_one_role_or_a_list_into_a_tuple():
    w = Worker()
    assert _host(roles=w).roles == (w,)
    assert _host(roles=[w]).roles == (w,)
    assert type(_host(roles=[w]).roles) is tuple


class _NotAttrsRole(Role):
    """A Role subclass that is not an attrs class: homelab cannot read its fields."""


def test_host_roles_reports_each_item_that_is_not_a_role():
    what = ("a role (ControlPlane(), Worker(), ... or a role of your own, an attrs class subclassing "
            "homelab.role.Role)")
    plain = _NotAttrsRole()
    assert problems(lambda: _host(roles=[Worker(), Worker, "worker", plain, Lab])) == [
        Problem("hosts/h", "roles[1]", "Worker is the role's class, not a role: call it, Worker()"),
        Problem("hosts/h", "roles[2]", wrong_type("worker", what)),
        Problem("hosts/h", "roles[3]", wrong_type(plain, what)),
        Problem("hosts/h", "roles[4]", wrong_type(Lab, what)),
    ]
    assert wrong_type("worker", what) == f"'worker' is a str, not {what}"
    # an attrs instance that is not a Role is refused too
    assert refused(lambda: _host(roles=[cluster()])) == [Problem("lab", "roles[0]", wrong_type(cluster(), what))]
    assert refused(lambda: _host(roles="worker")) == [
        Problem("lab", "roles", "'worker' is a str, not a list of roles (ControlPlane(), Worker(), CephStorage(), "
                "... or a role of your own)")]


# ---------------------------------------------------------------- generated paths


def test_generated_path_is_exactly_what_homelab_writes():
    for rel in ("hosts/lab.nix", "modules/kubernetes.nix", "modules/x/y.nix", "hosts/yomogi/default.nix"):
        assert generated_path(rel) is True, rel
    for rel in ("hosts/yomogi/hardware-configuration.nix", "hosts/yomogi/sub/default.nix", "hosts/default.nix",
                "other/yomogi/default.nix", "hosts/lab.nix.bak", "lab.nix", "x/modules/a.nix", "hosts/modules/a.nix",
                "hosts/yomogi/DEFAULT.NIX"):
        assert generated_path(rel) is False, rel


def test_host_imports_refuses_a_generated_file():
    assert refused(lambda: _host(imports=["../lab.nix"])) == [
        Problem("lab", "imports", "'../lab.nix' is hosts/lab.nix, a file homelab "
                "generates; import only hand-written Nix (what a generated file sets comes from host.py: roles, "
                "options)")]


# ---------------------------------------------------------------- Lab


def test_lab_where_names_a_host_by_its_folder():
    a, b = _host(hostname="a"), _host(hostname="b", address="192.168.10.6")
    lab = Lab(cluster(), [b, a], {"a": "hosts/01-a"})
    assert [h.hostname for h in lab.hosts] == ["a", "b"]
    assert lab.where(a) == "hosts/01-a"
    assert lab.where("a") == "hosts/01-a"
    assert lab.where(b) == "hosts/b"
    assert lab.where("b") == "hosts/b"


def test_lab_with_role_lists_the_hosts_that_have_it():
    a = _host(hostname="a", roles=[Worker()])
    b = _host(hostname="b", address="192.168.10.6")
    lab = Lab(cluster(), [b, a])
    assert lab.with_role(Worker) == [a]
    assert lab.with_role(Worker) == [a]  # the second time from the lab's cache
    assert lab.with_role(Role) == [a]
