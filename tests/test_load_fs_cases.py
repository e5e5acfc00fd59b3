"""What loading says of every odd thing a lab folder can hold (issue 19: the host folders and hand-written imports
are looked at with fewer system calls, from a folder listing and one lstat and one read per file): the exact
problems, for host folders and host.py files that are links, folders, pipes or missing, and for imports that
are missing, folders, pipes, dangling links, links to a generated file, placeholders (behind links too), in
another folder, through a host folder that is itself a link and through a lab folder reached by a link."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from homelab.load import PLACEHOLDER, host_sources, load

SEED = Path(__file__).resolve().parent.parent / "homelab" / "examples" / "seed"
HW = "{ ... }:\n{\n  fileSystems.\"/\" = { device = \"/dev/disk/by-label/nixos\"; fsType = \"ext4\"; };\n}\n"
GENERATED = "a file homelab generates; import only hand-written Nix (what a generated file sets comes from host.py: " \
            "roles, options)"


def _worker(hosts: Path, name: str, n: int, imports: list[str], folder: Path | None = None) -> Path:
    """A worker ``name`` (address .20+n) importing ``imports``, in ``folder`` (default hosts/<name>)."""
    d = folder or hosts / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "host.py").write_text(
        "from homelab import Host, Worker\n"
        f"host = Host(hostname={name!r}, system='x86_64-linux', state_version='25.05', interface='enp1s0',\n"
        f"            address='192.168.10.{20 + n}', roles=[Worker()], imports={imports!r})\n")
    return d


def _odd_lab(tmp_path: Path) -> Path:
    lab = tmp_path / "lab"
    shutil.copytree(SEED, lab)
    hosts = lab / "hosts"
    (lab / "modules").mkdir(exist_ok=True)
    (lab / "modules" / "made.nix").write_text("{ }\n")
    (lab / "shared").mkdir()
    (lab / "shared" / "ph.nix").write_text(PLACEHOLDER + "\n{ }\n")
    (lab / "shared" / "hw.nix").write_text(HW)
    (lab / "elsewhere").mkdir()

    # host folders and host.py files that are not what they should be
    (hosts / ".hidden").mkdir()
    (hosts / ".hidden" / "host.py").write_text("this is not Python\n")
    (hosts / "__pycache__").mkdir()
    (hosts / "gone").symlink_to(lab / "nowhere")
    (hosts / "notes.txt").write_text("not a host\n")
    (hosts / "empty").mkdir()
    (hosts / "dirhost" / "host.py").mkdir(parents=True)
    (hosts / "danglinghost").mkdir()
    (hosts / "danglinghost" / "host.py").symlink_to("missing.py")
    (hosts / "fifohost").mkdir()
    os.mkfifo(hosts / "fifohost" / "host.py")

    # hosts whose imports are odd, one case each
    d = _worker(hosts, "w01", 1, ["./missing.nix"])
    d = _worker(hosts, "w02", 2, ["./dir.nix"])
    (d / "dir.nix").mkdir()
    d = _worker(hosts, "w03", 3, ["pipe.nix"])
    os.mkfifo(d / "pipe.nix")
    d = _worker(hosts, "w04", 4, ["./dangling.nix"])
    (d / "dangling.nix").symlink_to("nothing.nix")
    d = _worker(hosts, "w05", 5, ["./made.nix"])
    (d / "made.nix").symlink_to("../../modules/made.nix")
    d = _worker(hosts, "w06", 6, ["./ph.nix"])
    (d / "ph.nix").write_text(PLACEHOLDER + "\n{ }\n")
    d = _worker(hosts, "w07", 7, ["./ph-link.nix"])
    (d / "ph-link.nix").symlink_to(lab / "shared" / "ph.nix")
    _worker(hosts, "w08", 8, ["../ph.nix", "../hw.nix", "../gen-link.nix"])  # files beside the host folders
    (hosts / "ph.nix").write_text(PLACEHOLDER + "\n{ }\n")
    (hosts / "hw.nix").write_text(HW)
    (hosts / "lab.nix").write_text("{ }\n")
    (hosts / "gen-link.nix").symlink_to("lab.nix")
    d = _worker(hosts, "w09", 9, ["sub/hw.nix", "./sub/made.nix"])
    (d / "sub").mkdir()
    (d / "sub" / "hw.nix").write_text(HW)
    (d / "sub" / "made.nix").symlink_to(lab / "modules" / "made.nix")
    d = _worker(hosts, "w10", 10, ["./hw.nix", "./ph.nix"])  # a host folder that is a link
    (d / "hw.nix").write_text(HW)
    (d / "ph.nix").write_text(PLACEHOLDER + "\r\n")
    d.rename(lab / "elsewhere" / "w10")
    (hosts / "w10").symlink_to(lab / "elsewhere" / "w10")
    d = _worker(hosts, "w11", 11, ["./gen.nix"])  # a generated file reached through the lab's own folder
    (d / "gen.nix").symlink_to(hosts / "tokiwa" / "default.nix")
    (hosts / "tokiwa" / "default.nix").write_text("{ }\n")
    d = _worker(hosts, "w12", 12, ["./long.nix"])  # a first line longer than the head read
    (d / "long.nix").write_text("#" + "x" * 5000 + "\n{ }\n")
    return lab


def _problems(root: Path, **kw) -> set[tuple[str, str, str]]:
    _lab, problems = load(root, secrets=False, **kw)
    return {(p.where, p.field, p.reason) for p in problems if p.severity == "error"}


def _expected() -> set[tuple[str, str, str]]:
    def ph(host: str, imp: str) -> tuple[str, str, str]:
        from homelab.load import placeholder_problem

        p = placeholder_problem(host, imp)
        return (p.where, p.field, p.reason)

    return {
        ("hosts/gone", "folder", "is a symbolic link to {lab}/nowhere, which does not exist"),
        ("hosts/dirhost", "host.py", "is a folder, not a Python file; nothing was removed"),
        ("hosts/danglinghost", "host.py", "is a symbolic link to missing.py, which does not exist; nothing was removed"),
        ("hosts/fifohost", "host.py", "is not a regular file; nothing was removed"),
        ("hosts/w01", "imports", "'./missing.nix' does not exist next to host.py"),
        ("hosts/w02", "imports", "'./dir.nix' is a folder, not a Python file"),
        ("hosts/w03", "imports", "'pipe.nix' is not a regular file"),
        ("hosts/w04", "imports", "'./dangling.nix' is a symbolic link to nothing.nix, which does not exist"),
        ("hosts/w05", "imports", f"'./made.nix' leads to modules/made.nix, {GENERATED}"),
        ph("w06", "./ph.nix"),
        ph("w07", "./ph-link.nix"),
        ph("w08", "../ph.nix"),
        ("hosts/w08", "imports", f"'../gen-link.nix' leads to hosts/lab.nix, {GENERATED}"),
        ("hosts/w09", "imports", f"'./sub/made.nix' leads to modules/made.nix, {GENERATED}"),
        ph("w10", "./ph.nix"),
        ("hosts/w11", "imports", f"'./gen.nix' leads to hosts/tokiwa/default.nix, {GENERATED}"),
    }


def _with_lab(expected: set[tuple[str, str, str]], lab: Path) -> set[tuple[str, str, str]]:
    return {(w, f, r.replace("{lab}", str(lab))) for w, f, r in expected}


def test_every_odd_file_of_a_lab_is_named_with_its_reason(tmp_path):
    lab = _odd_lab(tmp_path)
    assert _problems(lab) == _with_lab(_expected(), lab)


def test_the_same_through_a_link_to_the_lab_folder(tmp_path):
    lab = _odd_lab(tmp_path)
    (tmp_path / "via").symlink_to(lab)
    assert _problems(tmp_path / "via") == _with_lab(_expected(), lab)


def test_install_takes_the_placeholders_and_nothing_else(tmp_path):
    lab = _odd_lab(tmp_path)
    placeholders = {p for p in _with_lab(_expected(), lab) if "placeholder" in p[2]}
    assert len(placeholders) == 4
    assert _problems(lab, placeholders=True) == _with_lab(_expected(), lab) - placeholders


def test_host_sources_lists_the_host_files_and_the_unreadable_ones(tmp_path):
    lab = _odd_lab(tmp_path)
    found, problems = host_sources(lab)
    assert [p.parent.name for p in found] == ["hanaakari", "tokiwa"] + [f"w{i:02d}" for i in range(1, 13)] + ["yomogi"]
    assert found[-3] == lab / "hosts" / "w11" / "host.py"  # the path as pathlib joins it, not a resolved one
    assert found[-4] == lab / "hosts" / "w10" / "host.py"
    assert {(p.where, p.field) for p in problems} == {("hosts/gone", "folder"), ("hosts/dirhost", "host.py"),
                                                     ("hosts/danglinghost", "host.py"), ("hosts/fifohost", "host.py")}


def test_a_host_folder_replaced_by_a_link_between_two_loads_is_resolved_again(tmp_path):
    """The real path of each host folder is kept for one load only: a folder moved and linked back is seen."""
    lab = _odd_lab(tmp_path)
    assert _problems(lab) == _with_lab(_expected(), lab)
    hosts = lab / "hosts"
    (hosts / "w12").rename(lab / "elsewhere" / "w12")
    (hosts / "w12").symlink_to(lab / "elsewhere" / "w12")
    (lab / "elsewhere" / "w12" / "long.nix").unlink()
    (lab / "elsewhere" / "w12" / "long.nix").symlink_to(hosts / "yomogi" / "default.nix")
    (hosts / "yomogi" / "default.nix").write_text("{ }\n")
    assert _problems(lab) == _with_lab(_expected(), lab) | {
        ("hosts/w12", "imports", f"'./long.nix' leads to hosts/yomogi/default.nix, {GENERATED}")}


def test_a_hosts_folder_kept_where_homelab_writes_makes_every_import_a_generated_file(tmp_path):
    """Each import's real path is worked out from the host folder's real one: hosts/ a link into modules/ (which
    homelab writes) puts every hand-written file there."""
    lab = tmp_path / "lab"
    shutil.copytree(SEED, lab)
    (lab / "modules").mkdir(exist_ok=True)
    (lab / "hosts").rename(lab / "modules" / "src")
    (lab / "hosts").symlink_to("modules/src")
    assert _problems(lab) == {
        (f"hosts/{h}", "imports", f"'./hardware-configuration.nix' leads to modules/src/{h}/hardware-configuration.nix, "
         f"{GENERATED}") for h in ("hanaakari", "tokiwa", "yomogi")}
