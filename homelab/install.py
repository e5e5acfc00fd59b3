"""``homelab install hosts/<name> --target root@ADDRESS``: NixOS onto a bare machine, with nixos-anywhere.

nixos-anywhere (github:nix-community/nixos-anywhere) boots the target into a NixOS installer by kexec from
any Linux reachable over SSH, partitions its disks with disko, installs ``<lab>#<name>`` and reboots.  homelab
gives it (flags as its docs/cli.md and docs/howtos name them; docs/nixpkgs-facts.md, "nixos-anywhere"):

* ``--flake <lab>#<name>``, ``--target-host <user@address>`` (``-p PORT`` for another SSH port);
* ``--generate-hardware-config nixos-generate-config <lab>/hosts/<name>/hardware-configuration.nix``: the
  machine's own hardware file, written into the lab as nixos-anywhere detects it on the target (without file
  systems: disko's); refused when the host does not import that file, which would then not be installed;
* ``--extra-files <dir>``: ``<dir>/etc/ssh/ssh_host_ed25519_key`` (0600) and its ``.pub``, the host key made
  beforehand (``homelab secrets hostkey``; made here when the lab has none), so the machine boots with the
  key its secrets are encrypted to and agenix decrypts them at the first activation.  The private half is
  decrypted from ``secrets/host-keys/<name>.age`` with the admin's key into a 0700 temporary folder, removed
  on every way out (nixos-anywhere failing, Ctrl-C).

**A lab fresh from ``homelab init``**: its hardware files are still ``init``'s placeholders, which ``homelab
build`` refuses, so the lab's generated files cannot be there yet.  ``install`` (with
``--generate-hardware-config``) takes them: it builds the lab itself, nix reading every file back, the installed
host's placeholder standing for the file nixos-anywhere writes (no file systems: its disko layout must give
``fileSystems."/"``, or it is refused before anything runs) and the other hosts' left to their own installs; then
``git add --intent-to-add``s the generated files git does not track, as nixos-anywhere does with the hardware
file, so the git flake it builds sees them.

nixos-anywhere comes from PATH, else ``nix run github:nix-community/nixos-anywhere --``.  ``--dry-run``
prints the exact commands and runs nothing (the private key is not decrypted).

**A Raspberry Pi** (an aarch64 host, ``--sd-card /dev/sdX``): the lab flake's ``sd-image-<name>`` (nixpkgs'
sd-image-aarch64 module around the host's own modules; its root partition is labelled NIXOS_SD) is built,
written to the card (``zstd -dc ... | dd``), and the host key is written onto the card's root partition
(partition 2) as ``/etc/ssh/ssh_host_ed25519_key`` (0600) before the first boot, mounted in a private folder.
The image never holds the key: it is built in the world-readable Nix store.

What nixos-anywhere needs from the host's configuration that homelab does not write: a disko disk layout
(``system.build.diskoScript``), e.g. disko's module and a ``disk.nix`` among the host's hand-written
``imports``.  Without one it stops before touching the disks, but after the kexec (it builds the host only
then): the machine runs the installer from RAM until it is rebooted.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import attrs

from . import secretstore as st
from .errors import LabError, MissingTool, UsageError
from .model import Lab

NIXOS_ANYWHERE_FLAKE = "github:nix-community/nixos-anywhere"
HOST_KEY_IN_EXTRA = "etc/ssh/ssh_host_ed25519_key"
HARDWARE_FILE = "hardware-configuration.nix"  # where --generate-hardware-config writes, in hosts/<name>/


class InstallError(UsageError):
    """Bad input for an install (exit 2); nothing ran."""


class InstallToolMissing(MissingTool):
    """Neither nixos-anywhere nor nix is on PATH (exit 4)."""


@attrs.frozen
class InstallOptions:
    """What ``homelab install`` is asked: the host, where it is reachable, and how."""

    host: str
    target: str  # user@address, as ssh takes it
    port: int = 22
    identity: tuple[str, ...] = ()  # the admin's private key(s), to decrypt the host key (ssh uses its own)
    dry_run: bool = False
    hardware_config: bool = True  # --generate-hardware-config into the lab
    sd_card: str | None = None  # a block device: write the host's SD image and its key there instead


@attrs.frozen
class InstallPlan:
    host: str
    flake: str
    hardware_file: str
    make_key: bool  # no host key in the lab yet: homelab secrets hostkey first
    argv: tuple[str, ...]  # with EXTRA standing for the private folder


EXTRA = "<private temporary folder>"


def nixos_anywhere() -> list[str]:
    """The nixos-anywhere command: on PATH, else the flake's run through nix."""
    if shutil.which("nixos-anywhere"):
        return ["nixos-anywhere"]
    if shutil.which("nix"):
        return ["nix", "--extra-experimental-features", "nix-command flakes", "run", NIXOS_ANYWHERE_FLAKE, "--"]
    raise InstallToolMissing("nixos-anywhere is not on PATH, and nix (to run github:nix-community/nixos-anywhere) "
                             "is not either: install nix (apt-get install nix-bin)")


def plan(root: Path, lab: Lab, opts: InstallOptions) -> InstallPlan:
    names = {h.hostname for h in lab.hosts}
    if opts.host not in names:
        raise InstallError(f"hosts/{opts.host}: not a host of this lab")
    if opts.sd_card is not None:
        return _sd_plan(root, lab, opts)
    if not _target_ok(opts.target):
        raise InstallError(f"--target {opts.target!r}: give user@address (e.g. root@192.168.10.11)")
    root = root.resolve()
    hw = root / "hosts" / opts.host / "hardware-configuration.nix"
    if opts.hardware_config:
        _imports_hardware_file(lab, opts.host)
    make_key = _key_state(root, opts.host)
    argv = [*nixos_anywhere(), "--flake", f"{root}#{opts.host}"]
    if opts.hardware_config:
        argv += ["--generate-hardware-config", "nixos-generate-config", str(hw)]
    argv += ["--extra-files", EXTRA]
    if opts.port != 22:
        argv += ["--ssh-port", str(opts.port)]
    argv += ["--target-host", opts.target]
    return InstallPlan(opts.host, f"{root}#{opts.host}", str(hw), make_key, tuple(argv))


@attrs.frozen
class SdPlan:
    host: str
    device: str
    partition: str  # the card's root partition (NIXOS_SD)
    make_key: bool
    build: tuple[str, ...]  # nix build of the image, its out-link in the private folder
    image_glob: str  # the compressed image under the out-link


def root_partition(device: str) -> str:
    """The second partition of ``device``: /dev/sdb -> /dev/sdb2, /dev/mmcblk0 -> /dev/mmcblk0p2."""
    return f"{device}p2" if device[-1:].isdigit() else f"{device}2"


def _sd_plan(root: Path, lab: Lab, opts: InstallOptions) -> SdPlan:
    host = lab.host(opts.host)
    if host.system != "aarch64-linux":
        raise InstallError(f"hosts/{opts.host}: --sd-card writes an aarch64 SD card image (a Raspberry Pi), and "
                           f"{opts.host} is {host.system}: install it with --target user@address")
    dev = opts.sd_card
    if not dev.startswith("/dev/") or not (opts.dry_run or _is_block(dev)):
        raise InstallError(f"--sd-card {dev!r}: not a block device (the whole card, e.g. /dev/sdb or /dev/mmcblk0; "
                           "lsblk lists them)")
    root = root.resolve()
    make_key = _key_state(root, opts.host)
    build = ("nix", "--extra-experimental-features", "nix-command flakes", "build",
             f"{root}#packages.aarch64-linux.sd-image-{opts.host}", "--out-link", f"{EXTRA}/image")
    return SdPlan(opts.host, dev, root_partition(dev), make_key, build, f"{EXTRA}/image/sd-image/*.img.zst")


def _imports_hardware_file(lab: Lab, name: str) -> None:
    """The file nixos-anywhere writes is only part of the install when the host imports it (host.py's imports are
    relative to hosts/<name>/); without it the machine would boot without its initrd modules."""
    imports = lab.host(name).imports
    if HARDWARE_FILE not in {os.path.normpath(i) for i in imports}:
        raise InstallError(f"hosts/{name}: imports: nixos-anywhere writes the machine's hardware file to "
                           f"hosts/{name}/{HARDWARE_FILE}, and {name} does not import it (its imports: "
                           f"{', '.join(imports) or 'none'}): add \"./{HARDWARE_FILE}\" to its imports (in place of "
                           "the file it replaces), or pass --no-hardware-config to keep the lab's own")


def _is_block(dev: str) -> bool:
    import stat

    try:
        return stat.S_ISBLK(os.stat(dev).st_mode)
    except OSError:
        return False


def _key_state(root: Path, host: str) -> bool:
    """True when the lab has no host key yet (one is made); refuses a public key without its private half."""
    make_key = not (root / st.host_key_pub(host)).exists()
    if not make_key and not (root / st.host_key_age(host)).exists():
        raise InstallError(f"hosts/{host}: the lab has its host key ({st.host_key_pub(host)}) but not the "
                           f"private half ({st.host_key_age(host)}, what `homelab secrets hostkey` keeps), so the "
                           "new install could not be given it and would make its own, and its secrets would not "
                           f"decrypt: make a new one with `homelab secrets hostkey hosts/{host} --force`, then "
                           "`homelab secrets rekey`, then install")
    return make_key


def render_sd(p: SdPlan) -> str:
    out = [f"# homelab install of {p.host} onto the SD card {p.device}: build its image, write it, then put its host "
           "key onto the card's root partition (never into the image: the Nix store is world-readable)"]
    if p.make_key:
        out.append(f"# the lab has no host key for {p.host}: first, as `homelab secrets hostkey hosts/{p.host}`")
    out += [shlex.join(p.build).replace(shlex.quote(f"{EXTRA}/image"), f"'{EXTRA}/image'"),
            f"zstd -dc {p.image_glob.replace(EXTRA, repr(EXTRA))} | dd of={p.device} bs=4M conv=fsync",
            f"partprobe {p.device}",
            f"mount {p.partition} '{EXTRA}/card'",
            f"# {st.host_key_age(p.host)} decrypted with your key to '{EXTRA}/card/{HOST_KEY_IN_EXTRA}' (0600) and its "
            ".pub (0644), then:",
            f"sync && umount '{EXTRA}/card'",
            f"# then: git add {st.host_key_pub(p.host)} {st.host_key_age(p.host)}; put the card in the Pi and boot it"]
    return "\n".join(out) + "\n"


def install_sd(root: Path, lab: Lab, opts: InstallOptions, p: SdPlan, *, say=print) -> int:
    root = root.resolve()
    if p.make_key:
        pub = st.make_host_key(root, lab, opts.host)
        say(f"made a host key for {opts.host}: {st.host_key_pub(opts.host)} ({st.fingerprint(pub)})")
    public = (root / st.host_key_pub(opts.host)).read_text(encoding="utf-8")
    private = st.reveal_host_key(root, opts.host, list(opts.identity) or None)
    work = st.private_dir()
    card = os.path.join(work, "card")
    mounted = False
    try:
        build = [work if a == EXTRA else a.replace(EXTRA, work) for a in p.build]
        say(f"running: {shlex.join(build)}")
        if subprocess.run(build, stdin=subprocess.DEVNULL).returncode != 0:
            return 1
        import glob

        images = sorted(glob.glob(p.image_glob.replace(EXTRA, work)))
        if len(images) != 1:
            say(f"expected one image under {work}/image/sd-image, found {len(images)}")
            return 1
        say(f"writing {images[0]} to {p.device}")
        from .remote import pipe

        r = pipe(["zstd", "-dc", images[0]], ["dd", f"of={p.device}", "bs=4M", "conv=fsync"], timeout=3600)
        if r.source_rc != 0 or r.sink_rc != 0:
            say(f"writing the card failed (zstd exit {r.source_rc}, dd exit {r.sink_rc}): {r.source_err}{r.sink_out}")
            return 1
        subprocess.run(["partprobe", p.device], stdin=subprocess.DEVNULL)
        os.mkdir(card, 0o700)
        if subprocess.run(["mount", p.partition, card], stdin=subprocess.DEVNULL).returncode != 0:
            return 1
        mounted = True
        write_extra_files(card, private, public)
        del private
        subprocess.run(["sync"])
        return 0
    finally:
        if mounted:
            subprocess.run(["umount", card])
        if not mounted or not os.path.ismount(card):
            st.remove_private(work)


def _target_ok(t: str) -> bool:
    user, at, host = t.partition("@")
    return bool(at and user and host) and not any(c.isspace() for c in t) and not t.startswith("-")


def render(p: InstallPlan, opts: InstallOptions, *, builds: bool = False) -> str:
    """The commands an install runs; ``builds``: it writes the lab's generated files first (:func:`build_first`)."""
    out = [f"# homelab install of {p.host} onto {opts.target}: nixos-anywhere boots it into a NixOS installer "
           "(kexec), partitions it (disko), installs and reboots"]
    if builds:
        from .about import program

        out.append(f"# first, as `{program()} build` would (the placeholder hardware files stand for the ones their "
                   "installs write): write the lab's generated files, then `git add --intent-to-add` them so the "
                   "flake sees them")
    if p.make_key:
        out += [f"# the lab has no host key for {p.host}: first, as `homelab secrets hostkey hosts/{p.host}`:",
                f"#   ssh-keygen -t ed25519 -N '' -C root@{p.host} (in a private folder); the public half to "
                f"{st.host_key_pub(p.host)}, the private half age-encrypted to the admins to {st.host_key_age(p.host)}"]
    out += [f"# the private host key, decrypted from {st.host_key_age(p.host)} with your key, goes to "
            f"{EXTRA}/{HOST_KEY_IN_EXTRA} (0600; the folder is 0700 and removed afterwards)",
            shlex.join(p.argv).replace(shlex.quote(EXTRA), "'" + EXTRA + "'"),
            f"# then: git add {st.host_key_pub(p.host)} {st.host_key_age(p.host)} hosts/{p.host}/hardware-configuration.nix"
            f" && homelab build"]
    return "\n".join(out) + "\n"


def write_extra_files(folder: str, private: bytes, public: str) -> None:
    """``etc/ssh/ssh_host_ed25519_key`` (0600) and ``.pub`` (0644) under ``folder``, as sshd wants them."""
    ssh = os.path.join(folder, "etc", "ssh")
    os.makedirs(ssh, mode=0o755)
    os.chmod(os.path.join(folder, "etc"), 0o755)
    os.chmod(ssh, 0o755)
    key = os.path.join(folder, HOST_KEY_IN_EXTRA)
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    with open(key + ".pub", "w", encoding="utf-8") as f:
        f.write(public.strip() + "\n")
    os.chmod(key + ".pub", 0o644)


def preflight(root: Path, lab: Lab) -> None:
    """Refuse generated files a build would change (the flake would install something else), or no flake."""
    from . import build

    res = build.build(root, lab=lab, check=True)
    if res.stale:
        raise InstallError("generated files are out of date, so the flake does not describe this lab; run "
                           "`homelab build` first:\n" + "\n".join(f"  {rel}" for rel in res.stale))
    if not (root / "flake.nix").is_file():
        raise InstallError(f"no flake.nix in {root}: the install builds the lab's flake")


def placeholders_taken(opts: InstallOptions) -> bool:
    """Whether this install takes ``homelab init``'s placeholder hardware files: nixos-anywhere writes the
    machine's own over its host's (``--generate-hardware-config``), and the others wait for their installs."""
    return opts.sd_card is None and opts.hardware_config


def pending_hardware(root: Path, lab: Lab, opts: InstallOptions) -> dict[str, tuple[str, ...]]:
    """host -> its placeholder imports, which this install takes; the installed host's may only be the file
    nixos-anywhere writes (any other would stay a placeholder: refused as ``homelab build`` refuses it)."""
    from .load import placeholder_imports, placeholder_problem

    if not placeholders_taken(opts):
        return {}
    found = placeholder_imports(root, lab)
    kept = [imp for imp in found.get(opts.host, ()) if os.path.normpath(imp) != HARDWARE_FILE]
    if kept:
        raise LabError([placeholder_problem(opts.host, imp) for imp in kept])
    return found


def build_first(root: Path, lab: Lab, opts: InstallOptions, pending: dict[str, tuple[str, ...]], *,
                say=print) -> bool:
    """A lab with placeholder hardware files cannot be built by ``homelab build``: install builds it, as
    ``build`` would but for the placeholders (the host it installs is judged as nixos-anywhere will leave it,
    its hardware file without file systems; the others when they are installed), and makes the generated
    files visible to the git flake nixos-anywhere builds (``git add --intent-to-add``, as nixos-anywhere does
    with the hardware file).  With ``dry_run`` nothing is written.  True when files were (or would be) written.
    """
    from . import build
    from .bootable import for_install

    if not (root / "flake.nix").is_file():
        raise InstallError(f"no flake.nix in {root}: the install builds the lab's flake")
    others = tuple(h for h in pending if h != opts.host)
    try:
        res = build.build(root, lab=lab, pending_hardware=others, dry_run=opts.dry_run)
    except LabError as e:
        if opts.host not in pending:
            raise
        raise LabError([for_install(p) if p.where == f"hosts/{opts.host}" else p for p in e.problems]) from None
    if opts.dry_run:
        return bool(res.stale)
    if res.written:
        say(f"built the lab: wrote {len(res.written)} generated file{'s' if len(res.written) != 1 else ''}")
    _show_to_git(root, [*res.written, *res.unchanged])
    return bool(res.written)


def _show_to_git(root: Path, paths: list[str]) -> None:
    """``git add --intent-to-add`` the files a git flake would not see yet (nothing outside a git repository)."""
    from .nixos_check import untracked

    missing = untracked(root, sorted(paths))
    if not missing:
        return
    r = subprocess.run(["git", "-C", str(root), "add", "--intent-to-add", "--", *missing], capture_output=True,
                       text=True, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise InstallError(f"git add --intent-to-add of the generated files failed, so the lab's flake would not "
                           f"see them: {r.stderr.strip()}")


def install(root: Path, lab: Lab, opts: InstallOptions, *, say=print) -> int:
    """Run the install; the exit code of nixos-anywhere or of writing the card (0: installed)."""
    pending = pending_hardware(root, lab, opts)
    if not pending:
        preflight(root, lab)
    p = plan(root, lab, opts)
    builds = bool(pending) and build_first(root, lab, opts, pending, say=say)
    if isinstance(p, SdPlan):
        if opts.dry_run:
            sys.stdout.write(render_sd(p))
            return 0
        return install_sd(root, lab, opts, p, say=say)
    if opts.dry_run:
        sys.stdout.write(render(p, opts, builds=builds))
        return 0
    root = root.resolve()
    if p.make_key:
        pub = st.make_host_key(root, lab, opts.host)
        say(f"made a host key for {opts.host}: {st.host_key_pub(opts.host)} ({st.fingerprint(pub)}); secrets for "
            f"{opts.host} need `homelab secrets rekey` if they were set before")
    public = (root / st.host_key_pub(opts.host)).read_text(encoding="utf-8")
    private = st.reveal_host_key(root, opts.host, list(opts.identity) or None)
    work = st.private_dir()
    try:
        os.chmod(work, 0o700)
        write_extra_files(work, private, public)
        del private
        argv = [work if a == EXTRA else a for a in p.argv]
        say(f"running: {shlex.join(argv)}")
        return subprocess.run(argv, stdin=subprocess.DEVNULL).returncode
    finally:
        st.remove_private(work)


def options(host: str, target: str | None, *, port: int = 22, identity: Sequence[str] = (), dry_run: bool = False,
            hardware_config: bool = True, sd_card: str | None = None) -> InstallOptions:
    return InstallOptions(host, target or "", port, tuple(identity), dry_run, hardware_config, sd_card)


__all__ = ["InstallOptions", "InstallPlan", "InstallError", "InstallToolMissing", "plan", "render", "install",
           "options", "nixos_anywhere"]
