"""What a lab means in NixOS: model -> module files of option definitions, through the roles.

Pure functions.  The pipeline asks each role of each host for its modules
(:meth:`homelab.role.Role.compile`) and its per-host definitions, adds what
every host has (name, platform, LAN, boot, kernel, the host's flow table, the
raw options from ``host.py``) to the host's entry file ``hosts/<name>/default.nix``,
and shares module files between hosts whose roles ask for the same thing (and
between hosts whose firewall rules from the Kubernetes nodes are the same:
``modules/network/firewall-from-nodes.nix``, one rule per node, written once).

The result (:class:`Compiled`) is the single source of truth: it is rendered to
Nix, checked against the option contract, merged per host once, and compared
with what real nix reads back from the written files.
"""

from __future__ import annotations

import posixpath
from typing import Any

import attrs

from . import access, firewall
from . import contract as contracts
from .model import Host, Lab, option_path
from .nixmodule import Module, ModuleFile, OptPath, Section, opt, section
from .role import HostContext

__all__ = ["Compiled", "DataFile", "HostFiles", "ModuleFile", "Section", "compile_lab", "compile_shared", "entry_file",
           "opt", "section",
           "CLUSTER_SOURCE", "LAB_DATA"]

CLUSTER_SOURCE = "hosts/cluster.py"
LAB_DATA = "hosts/lab.nix"


@attrs.frozen
class HostFiles:
    hostname: str
    entry: str  # hosts/<name>/default.nix
    modules: tuple[str, ...]  # generated files this host imports, in order
    hand_written: tuple[str, ...]  # hand-written imports, relative to the lab root


@attrs.frozen
class DataFile:
    """A generated Nix file that holds data, not a module: ``hosts/lab.nix``, what the flake reads first."""

    path: str
    title: str
    source: str
    value: Any


@attrs.frozen
class Compiled:
    files: dict[str, ModuleFile]
    hosts: dict[str, HostFiles]
    contract: contracts.Contract = attrs.field(eq=False)
    data: DataFile | None = None

    def files_of(self, hostname: str) -> list[str]:
        plan = self.hosts[hostname]
        return [plan.entry, *plan.modules]


# ---------------------------------------------------------------- hosts


def wake_on_lan_section(host: Host) -> Section | None:
    """The host entry's Wake-on-LAN definitions (None without ``wake_on_lan``)."""
    wol = host.wake_on_lan
    if wol is None:
        return None
    base = ("networking", "interfaces", host.interface, "wakeOnLan")
    return section(
        f"Wake-on-LAN: a magic packet for {wol.mac} powers the host on (homelab wake). Applied when the "
        "interface appears, so from the next boot; the firmware must allow waking from off too.",
        ((*base, "enable"), True),
        ((*base, "policy"), ["magic"]),
    )


def _lan(lab: Lab) -> tuple[str, str, int, tuple[str, ...]]:
    """The LAN facts every host's entry file writes (the comment, the gateway, the prefix length, the name
    servers), as text once per lab: the lab and its cluster never change."""
    c = lab.cluster
    return lab.derived("compile: LAN", lambda: (f"LAN {c.lan}", str(c.gateway), c.lan.prefixlen,
                                                 tuple([str(a) for a in c.nameservers])))


def host_sections(ctx: HostContext) -> list[Section]:
    """The definitions of a host's own entry file, in the order a person would write them."""
    host = ctx.host
    lan, gateway, prefix, nameservers = _lan(ctx.lab)
    out = [
        section(
            "",
            ("networking.hostName", host.hostname),
            ("nixpkgs.hostPlatform", host.system),
            ("system.stateVersion", host.state_version),
        ),
        section(
            lan,
            ("networking.useDHCP", False),
            (("networking", "interfaces", host.interface, "ipv4", "addresses"),  # "eth0.10" is one name
             [{"address": str(host.ip), "prefixLength": prefix}]),
            ("networking.defaultGateway", {"address": gateway, "interface": host.interface}),
            ("networking.nameservers", list(nameservers)),
        ),
    ]
    wol = wake_on_lan_section(host)
    if wol is not None:
        out.append(wol)
    for role in host.roles:
        for sec in role.host_sections(ctx):
            if sec not in out:
                out.append(sec)
    for comment, defs in host.boot.sections(host):
        out.append(section(comment, *defs))
    extra = []
    if host.kernel_modules:
        extra.append(("boot.kernelModules", list(host.kernel_modules)))
    if host.kernel_params:
        extra.append(("boot.kernelParams", list(host.kernel_params)))
    if extra:
        out.append(section("Kernel settings from host.py.", *extra))
    rules = firewall.host_section(ctx)
    if rules is not None:
        out.append(rules)
    if host.options:
        out.append(Section(
            "Raw options from host.py.",
            tuple((option_path(k), v) for k, v in sorted(host.options.items())),
            user=True,
        ))
    return out


def lab_data(lab: Lab) -> DataFile:
    """``hosts/lab.nix``: each host's facts the flake needs before NixOS evaluates (system, LAN, SSH, tags)."""
    from .secretuse import host_secrets

    hosts = {}
    for h in lab.hosts:
        kube = "control-plane" if h.is_control_plane else ("worker" if h.is_kubernetes_node else None)
        hosts[h.hostname] = {
            "system": h.system,
            "interface": h.interface,
            "address": str(h.ip),
            "tailscaleAddress": str(h.tailscale_address) if h.tailscale_address is not None else None,
            "kubernetes": kube,
            "roles": [type(r).__name__ for r in h.roles],
            "tags": list(dict.fromkeys(type(r).role_tag() for r in h.roles)),
            # colmena's deployment.* names: where to reach the host, and where its system is built
            "deploy": {"targetUser": h.ssh.user, "targetHost": h.ssh.host or str(h.ip), "targetPort": h.ssh.port,
                       "buildOnTarget": h.build_host == "target",
                       "buildHost": h.build_host if h.build_host not in (None, "target") else None},
        }
        secrets = host_secrets(h)
        if secrets:  # agenix decrypts them at activation (nix/lib.nix): secrets/<name>.age -> /run/agenix/<name>
            hosts[h.hostname]["secrets"] = secrets
    c = lab.cluster
    from .firewall import lan_client_address

    network = {"lan": str(c.lan), "prefixLength": c.lan.prefixlen, "gateway": str(c.gateway),
               # a LAN address no lab host uses: the cluster VM test's outsider, the checks' "lan-client"
               "lanClient": lan_client_address(lab)}
    return DataFile(LAB_DATA, "the lab's hosts as data, for the flake (homelab.lib.mkLab)",
                    f"{CLUSTER_SOURCE} and every hosts/<name>/host.py",
                    {"cluster": c.name, "network": network, "hosts": hosts})


def _rel_from_host(path: str) -> str:
    return "../../" + path


def variant_key(sections: tuple[Section, ...]) -> tuple[tuple[str, bool, str], ...]:
    """What tells two modules of one path apart: each section's comment, whether it is the user's, and the
    ``repr`` of its definitions (which, unlike ``==``, tells ``True`` from ``1``).  It holds what
    ``repr(sections)`` holds (one determines the other), without the attrs-made ``repr`` of each section."""
    return tuple([(s.comment, s.user, repr(s.defs)) for s in sections])


class _Variants:
    """The module files hosts ask for: one per (path, definitions), with the hosts using each, in first-use order."""

    def __init__(self, lab: Lab):
        self.lab = lab
        self.variants: dict[tuple[str, str], tuple[Module, str, type | None]] = {}
        self.users: dict[tuple[str, str], list[str]] = {}
        # id(module) -> key: a module shared by many hosts (the same object, e.g. modules/k8s/base.nix with every
        # node's name) is written out as a key once
        self.keys_of: dict[int, tuple[Module, tuple[str, str]]] = {}

    def use(self, m: Module, role: type | None, where: str) -> tuple[str, str]:
        """``m``'s key, counting a use by the host at ``where`` (``lab.where(host)``, worked out once per host)."""
        known = self.keys_of.get(id(m))
        if known is not None and known[0] is m:
            key = known[1]
        else:
            key = (m.path, variant_key(m.sections))
            self.keys_of[id(m)] = (m, key)
        if key not in self.variants:
            why = f"the {role.__name__} role in host.py" if m.source is None else m.source
            self.variants[key] = (m, why, role)
        self.users.setdefault(key, []).append(where)
        return key

    def files(self) -> tuple[dict[str, ModuleFile], dict[tuple[str, str], str]]:
        """The module files, and each variant's path: the variant most hosts use keeps the plain name."""
        files: dict[str, ModuleFile] = {}
        path_of: dict[tuple[str, str], str] = {}
        order = list(self.variants)
        for key in sorted(order, key=lambda k: (k[0], -len(self.users[k]), order.index(k))):
            m, why, owner = self.variants[key]
            path, n = m.path, 2
            while path in files:  # same role, configured differently on another host
                path = m.path.removesuffix(".nix") + f"-{n}.nix"
                n += 1
            # which hosts use a file is left out on purpose: adding a host must not rewrite shared files
            source = CLUSTER_SOURCE + (f" and {why}" if why else "")
            files[path] = ModuleFile(path, m.title, source, (), m.sections, owner)
            path_of[key] = path
        return files, path_of


def _host_files(host: Host, modules: list[str]) -> HostFiles:
    """A host's plan: its entry ``hosts/<name>/default.nix``, the module files and hand-written files it imports."""
    hostdir = f"hosts/{host.hostname}"
    # normalized: a file several hosts import (../common.nix) is one file, parsed and judged once per host
    hand = tuple(dict.fromkeys(posixpath.normpath(f"{hostdir}/{p}") for p in host.imports))
    return HostFiles(host.hostname, f"{hostdir}/default.nix", tuple(modules), hand)


def compile_lab(lab: Lab) -> Compiled:
    """The module files of every host.  The lab must have passed validation.

    Hosts whose roles ask for the same module (same path, same definitions) share
    one file.  When hosts configure a role differently, the variant most hosts
    use keeps the plain name (ties: the first host by name) and the others get
    ``-2``, ``-3``.
    """
    shared = compile_shared(lab)
    files = dict(shared.files)
    for host in lab.hosts:
        entry = entry_file(lab, host, shared.hosts[host.hostname])
        files[entry.path] = entry
    return Compiled(files, shared.hosts, shared.contract, lab_data(lab))


def compile_shared(lab: Lab) -> Compiled:
    """What :func:`compile_lab` decides for the whole lab: the shared module files (a variant's name depends on
    how many hosts use it) and each host's plan (its entry's path, the module files and hand-written files it
    imports), without the hosts' entry files (:func:`entry_file`, a host at a time) and the lab's data file
    (:func:`lab_data`).  A large lab's build makes those in the two processes it forks (homelab/splitprep.py)."""
    variants = _Variants(lab)
    wanted: dict[str, list[tuple[str, str]]] = {}
    shared = [firewall.base_module(lab.cluster), access.module(lab.cluster)]  # every host's; computed once
    for host in lab.hosts:
        ctx = HostContext(lab, host)
        where = lab.where(host)
        keys = [variants.use(m, None, where) for m in shared]
        nodes = firewall.node_rules(ctx)  # the host's rules from the nodes, in a file shared with like hosts
        if nodes is not None:
            keys.insert(1, variants.use(nodes.module, None, where))
        for role in host.roles:
            for m in role.compile(ctx):
                keys.append(variants.use(m, type(role), where))
        wanted[host.hostname] = list(dict.fromkeys(keys))

    files, path_of = variants.files()
    plans = {host.hostname: _host_files(host, [path_of[k] for k in wanted[host.hostname]]) for host in lab.hosts}
    return Compiled(files, plans, contracts.of_roles(lab.role_types), None)


def entry_file(lab: Lab, host: Host, plan: HostFiles) -> ModuleFile:
    """``hosts/<name>/default.nix`` of one host (``plan``: its :class:`HostFiles` from :func:`compile_shared`):
    imports the host's module files and hand-written imports, then its own part."""
    return ModuleFile(
        plan.entry,
        f"NixOS configuration of {host.hostname}",
        f"{lab.where(host)}/host.py and {CLUSTER_SOURCE}",
        tuple(_rel_from_host(m) for m in plan.modules) + tuple(p if p.startswith(".") else "./" + p
                                                                for p in host.imports),
        tuple(host_sections(HostContext(lab, host))),
    )


__all__ += ["OptPath"]
