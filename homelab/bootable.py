"""Can the host boot?  A root file system and a boot loader, found where NixOS would find them.

NixOS refuses a system without a root file system: both initrds assert it
(nixos-26.05, ``nixos/modules/system/boot/stage-1.nix``: ``!boot.initrd.systemd.enable
-> any (fs: fs.mountPoint == "/") fileSystems``; ``nixos/modules/system/boot/systemd/initrd.nix``:
``root == "fstab" -> any (fs: fs.mountPoint == "/") (attrValues config.fileSystems)``, both with the
message "The ‘fileSystems’ option does not specify your root file system.").  Without a boot loader
NixOS falls back on GRUB (``boot.loader.grub.enable`` defaults to true,
``nixos/modules/system/boot/loader/grub/grub.nix``), which asserts "You must set the option
‘boot.loader.grub.devices’ or 'boot.loader.grub.mirroredBoots' to make the system bootable."

homelab writes neither ``fileSystems."/"`` (that is the machine's own hardware-configuration.nix) nor,
unless told otherwise, anything but the boot loader of ``Host.boot``.  So before a build writes
anything, the host's definitions are looked for in the three places they can come from: the generated
files (with the raw ``options``), and the hand-written imports, read by the build's second nix process
without nixpkgs (each module called with a stand-in ``lib`` and throwing ``pkgs``/``config``, its own
imports of local files followed).  A definition under ``mkIf``/``mkMerge``, one that needs nixpkgs to
be known, or an import homelab cannot follow (a nixpkgs profile other than the two
``nixos-generate-config`` writes) leaves the question to NixOS: homelab refuses only what it saw
whole.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from .errors import Problem
from .nixmodule import OptPath

ROOT_FS: OptPath = ("fileSystems", "/")
GRUB = ("boot", "loader", "grub", "enable")
LOADERS: tuple[OptPath, ...] = (
    ("boot", "loader", "systemd-boot", "enable"),
    ("boot", "loader", "generic-extlinux-compatible", "enable"),
    GRUB,
)
GRUB_TARGETS: tuple[OptPath, ...] = (("boot", "loader", "grub", "devices"), ("boot", "loader", "grub", "device"),
                                     ("boot", "loader", "grub", "mirroredBoots"))
CONTAINER: OptPath = ("boot", "isContainer")  # a container boots nothing itself (NixOS skips both assertions)
# systemd's initrd asserts a root file system only for root = "fstab"; "gpt-auto" finds it by partition type
SYSTEMD_ROOT: OptPath = ("boot", "initrd", "systemd", "root")
PATHS: tuple[OptPath, ...] = (ROOT_FS, *LOADERS, *GRUB_TARGETS, CONTAINER, SYSTEMD_ROOT)

# nixpkgs modules nixos-generate-config imports, known to define no file system and no boot loader
HARMLESS_PROFILES = ("installer/scan/not-detected.nix", "profiles/qemu-guest.nix")

# The Nix that reads a hand-written file's modules (inside readback.HAND_EXPR's let: lib, base, safe, call,
# describe): every module the file brings, its local imports followed (8 levels), and whether all of them
# could be read.
MODULES_NIX = """
  standIn = base.modulesPath + "/";
  harmless = [ %(harmless)s ];
  modulesOf = depth: m:
    let
      isFile = builtins.isPath m;
      isProfile = builtins.isString m && builtins.substring 0 (builtins.stringLength standIn) m == standIn;
      profile = builtins.substring (builtins.stringLength standIn) 4096 m;
      raw = if isFile && builtins.pathExists m then safe (import m)
            else if builtins.isFunction m || builtins.isAttrs m then m else null;
      v = let r = if builtins.isFunction raw then safe (call raw) else raw; in
          if safe (builtins.isAttrs r) == true then r else null;
      imps = if v == null then null else safe (let i = v.imports or [ ]; in builtins.seq (builtins.length i) i);
      body = if v == null then null else safe (
        if v ? config || v ? options then v.config or { } else removeAttrs v [ "imports" ]);
      here = { inherit body; complete = v != null && imps != null && body != null && (v._type or null) == null; };
    in
      if isProfile && builtins.elem profile harmless then [ ]
      else if depth > 8 || isProfile || (!isFile && raw == null) then [ { body = null; complete = false; } ]
      else [ here ] ++ builtins.concatMap (modulesOf (depth + 1)) (if imps == null then [ ] else imps);
  # like get, but a mkIf/mkMerge (or what cannot be read) on the way says so: the path may be defined there
  reach = v: path:
    if path == [ ] then { found = true; value = v; }
    else let n = builtins.head path;
             t = safe (if builtins.isAttrs v then v._type or "none" else "value"); in
      if t == "none" && safe (builtins.hasAttr n v) == true then reach (builtins.getAttr n v) (builtins.tail path)
      else if t == "none" || t == "value" then { found = false; }
      else { found = false; blocked = true; };
  bootFacts = file: paths:
    let mods = modulesOf 0 file;
        fact = m: path: let r = reach m.body path; in if r.found then { found = true; } // leaf r.value else r; in {
      complete = builtins.all (m: m.complete) mods;
      facts = map (path: map (m: if m.body == null then { found = false; } else fact m path) mods) paths;
    };
"""


def modules_nix() -> str:
    # the profiles are plain ASCII paths (no quote, backslash or ${): a JSON string is the same Nix string
    return MODULES_NIX % {"harmless": " ".join(json.dumps(p) for p in HARMLESS_PROFILES)}


# ---------------------------------------------------------------- the judgement


class _Unknown:
    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN = _Unknown()
DEFAULT_PRIORITY = 100


def _lookup(nested: dict, path: OptPath) -> tuple[bool, Any]:
    node: Any = nested
    for p in path:
        if not isinstance(node, dict) or "_type" in node or p not in node:
            return False, None
        node = node[p]
    return True, node


def generated_definitions(nested_files: Iterable[dict], path: OptPath) -> list[tuple[int, Any]]:
    """(priority, value) of ``path`` in the generated files (raw options included), as nix read them back."""
    out = []
    for nested in nested_files:
        found, v = _lookup(nested, path)
        if found:
            if isinstance(v, dict) and v.get("_type") == "override":
                out.append((v["priority"], v["content"]))
            else:
                out.append((DEFAULT_PRIORITY, v))
    return out


def hand_definitions(facts: list[dict]) -> tuple[list[tuple[int, Any]], bool]:
    """(priority, value) of one path in a hand-written file's modules, and whether each was read whole."""
    out, whole = [], True
    for d in facts:
        if d.get("blocked"):
            whole = False
        if not d.get("found"):
            continue
        if d.get("conditional") or d.get("priority") is None:
            whole = False
            continue
        out.append((d["priority"], d["value"] if d.get("known") else UNKNOWN))
    return out, whole


def effective(defs: list[tuple[int, Any]], default: Any) -> Any:
    """The value NixOS gives a scalar option from its definitions: the highest priority's (lowest number)."""
    if not defs:
        return default
    best = min(p for p, _ in defs)
    values = [v for p, v in defs if p == best]
    return values[0] if all(v is not UNKNOWN and v == values[0] for v in values) else UNKNOWN


NO_ROOT = "no root file system"
NO_LOADER = "no boot loader"


def is_boot_problem(p: Problem) -> bool:
    """One of :func:`problems`' (a host without a root file system or a boot loader)."""
    return p.reason.startswith((NO_ROOT + ":", NO_LOADER + ":"))


def for_install(p: Problem) -> Problem:
    """``p`` as ``homelab install`` says it of the host it installs, whose hardware file nixos-anywhere writes
    without file systems (``--no-filesystems``): they must come from the host's disko layout."""
    if not p.reason.startswith(NO_ROOT + ":"):
        return p
    return Problem(p.where, p.field, f"{NO_ROOT}: the hardware file nixos-anywhere writes has no file systems "
                   "(nixos-generate-config --no-filesystems), and fileSystems.\"/\" is defined in none of its other "
                   "imports nor in its options: describe its disks with disko (disko's module and a disk.nix among "
                   "its imports), whose layout gives the file systems")


def problems(where: str, imports: tuple[str, ...], defs: dict[OptPath, list[tuple[int, Any]]], whole: bool
             ) -> list[Problem]:
    """The host's boot problems, from every definition found of :data:`PATHS` (``whole``: nothing was left
    unread, so what was not found is not there)."""
    if not whole:
        return []
    if effective(defs[CONTAINER], False) is True or effective(defs[CONTAINER], False) is UNKNOWN:
        return []
    named = ", ".join(i.rsplit("/", 1)[-1] for i in imports)
    where_looked = f"in none of its imports ({named}) nor in its options" if imports else \
        "anywhere: the host has no imports (its hardware-configuration.nix) and its options do not set it"
    out = []
    root_elsewhere = bool(defs[SYSTEMD_ROOT]) and effective(defs[SYSTEMD_ROOT], "fstab") != "fstab"
    if not defs[ROOT_FS] and not root_elsewhere:
        out.append(Problem(where, "imports", f"{NO_ROOT}: fileSystems.\"/\" is defined {where_looked}; "
                           "NixOS refuses the system (\"The ‘fileSystems’ option does not specify your root file "
                           "system.\"): put this machine's own there (nixos-generate-config --show-hardware-config on "
                           "it)"))
    loaders = {path: effective(defs[path], path == GRUB) for path in LOADERS}
    if UNKNOWN in loaders.values():
        return out
    grub_target = any(defs[p] for p in GRUB_TARGETS)
    if not any(v is True for p, v in loaders.items() if p != GRUB) and not (loaders[GRUB] is True and grub_target):
        why = ("GRUB is all that is left (NixOS's default), with no boot.loader.grub.devices: NixOS refuses it"
               if loaders[GRUB] is True else "every boot loader is off")
        out.append(Problem(where, "boot", f"{NO_LOADER}: none of boot.loader.systemd-boot.enable, "
                           f"boot.loader.generic-extlinux-compatible.enable or boot.loader.grub.enable is true "
                           f"once its imports and options are merged ({why}); keep Host.boot's loader "
                           "(SystemdBoot(), RaspberryPi4()) on, or set boot.loader.grub.devices"))
    return out
