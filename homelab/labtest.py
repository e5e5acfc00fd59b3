"""``homelab test``: homelab's own tests, run on a lab (yours, or any valid lab).

What holds for any valid lab is checked on this one, with real programs:

1. **generated files**: the files on disk are what the sources generate (``homelab build --check``);
2. **nix**: real nix reads every generated file back, and the values are the model's, file by
   file and merged per host; hand-written imports parse;
3. **firewall**, per host: the generated rules run by real ``iptables-nft`` (or ``nft`` with
   ``Cluster(firewall="nftables")``) in network namespaces, inside the skeleton NixOS builds.
   Real TCP and UDP probes must get the verdicts the model gives, and the rules must be listed
   as the host's expectations (``homelab expect``) say;
4. **each role's proofs** (``Role.proofs``, the code beside the role), per host with the role, built-in
   roles first: the DNS host's Corefile template answers every name in the zone and no look-alike
   (CoreDNS zone); the ingress host's stream config in a real nginx passes bytes to the right NodePort
   (nginx stream);
5. **cluster layer**: each release of ``cluster/helmfile.yaml`` rendered by real helm from the pinned
   chart, every built-in object valid for the cluster's Kubernetes, and the objects checked against the
   hosts (NodePorts, nodeSelectors, host paths, Ceph's nodes and disks, the kubelet directory);
6. **vm-tests**, with ``--vm``: ``nix flake check`` on the lab's flake: a VM test per host and
   the cluster test (needs the pinned nixpkgs and KVM).

A part that cannot run here is skipped, and the reason is printed. Examples: no root for
namespaces, no nginx, no KVM, or no host with that role.
Exit codes: 0 every part that ran passed; 1 something failed; 2 the lab description has problems;
4 nix is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

import attrs

from .model import Lab
from .pynix_eval import Nix

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"
IPTABLES = "iptables-nft"  # what pkgs.iptables is in current nixpkgs (the NixOS firewall's iptables)

__all__ = ["Outcome", "run", "PASSED", "FAILED", "SKIPPED"]


@attrs.frozen
class Outcome:
    """One part of the test: what, passed/failed/skipped, and the detail (or the reason)."""

    name: str
    status: str
    detail: str = ""

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail}


def _attempt(name: str, proof: Callable[[], str]) -> Outcome:
    from .errors import ProofFailed
    from .proofs.netns import CommandFailed

    try:
        return Outcome(name, PASSED, proof())
    except (ProofFailed, CommandFailed) as e:
        return Outcome(name, FAILED, str(e))


def run(root: Path | str, *, nix: Nix | None = None, hosts: list[str] | None = None, vm: bool = False,
        report: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Run every part on the lab under ``root`` (its named ``hosts`` only, if given); each outcome in order.

    Raises LabError when the lab description has problems (nothing runs), NixNotFound without nix.
    ``report`` is called with each outcome as soon as it is known.
    """
    from . import build
    from .load import load_or_raise

    root = Path(root)
    nix = nix or Nix()
    lab, _ = load_or_raise(root)
    names = hosts or [h.hostname for h in lab.hosts]
    out: list[Outcome] = []

    def add(o: Outcome) -> None:
        out.append(o)
        if report:
            report(o)

    checked = build.build(root, lab=lab, check=True)
    if checked.stale:
        add(Outcome("generated files", FAILED, "out of date (run `homelab build`): " + ", ".join(checked.stale)))
        add(Outcome("the rest", SKIPPED, "every other part reads the generated files, which are out of date"))
        return out
    add(Outcome("generated files", PASSED, f"every generated file matches its sources ({len(checked.hosts)} hosts)"))

    from .proofs.netns import ProofFailed, read_back

    try:
        rb = read_back(root, nix, cache=False)
    except ProofFailed as e:
        add(Outcome("nix", FAILED, str(e)))
        add(Outcome("the rest", SKIPPED, "every other part reads the values nix read back"))
        return out
    rep = rb.report
    add(Outcome("nix", PASSED, f"read back {rep.files} generated files as the model says and parsed "
                               f"{rep.hand_written} hand-written ones ({rep.nix_calls} nix process)"))

    with tempfile.TemporaryDirectory(prefix="homelab-test-") as tmp:
        for o in _firewalls(rb, names, Path(tmp)):
            add(o)
        for o in _role_proofs(rb, names, Path(tmp)):
            add(o)
    add(_cluster_layer(rb, root))
    add(_vm_tests(root, vm))
    return out


def _firewalls(rb, names: list[str], tmp: Path):
    from .expect import lab_expectations
    from .proofs import firewall as fw

    lab: Lab = rb.lab
    nftables = lab.cluster.firewall == "nftables"
    tool = "nft" if nftables else IPTABLES
    why = fw.nft_unavailable() if nftables else fw.iptables_unavailable(IPTABLES)
    if why:
        yield Outcome(f"firewall ({tool})", SKIPPED, why)
        return
    expected = lab_expectations(lab, names)
    for name in names:
        host = lab.host(name)
        rules = [c.to_json() for c in expected[name].checks if c.kind == "firewall_rule"]
        if nftables:
            proof = lambda: fw.prove_nftables(lab, host, rb.options[name], tmp, rules)  # noqa: E731
        else:
            proof = lambda: fw.prove_iptables(lab, host, rb.options[name], IPTABLES, tmp, rules)  # noqa: E731
        yield _attempt(f"firewall {name} ({tool})", proof)


def _role_proofs(rb, names: list[str], tmp: Path):
    """Each proof a role offers (``Role.proofs``), on every tested host with the role: built-in roles first."""
    from .role import ProofContext
    from .roles import BUILTIN

    lab: Lab = rb.lab
    role_types = list(dict.fromkeys((*BUILTIN, *lab.role_types)))
    for role_type in role_types:
        for proof in role_type.proofs:
            hosts = [h for h in lab.with_role(role_type) if h.hostname in names]
            if not hosts:
                yield Outcome(proof.name, SKIPPED, f"no host (of those tested) has the {role_type.__name__} role")
                continue
            why = proof.unavailable()
            for host in hosts:
                name = f"{proof.name} {host.hostname}"
                if why:
                    yield Outcome(name, SKIPPED, why)
                    continue
                work = tmp / f"{proof.name.replace(' ', '-')}-{host.hostname}"
                work.mkdir()
                ctx = ProofContext(lab, host, rb.options[host.hostname], work)
                role = host.role(role_type)
                yield _attempt(name, lambda: proof.run(role, ctx))  # noqa: B023 - called at once


def _cluster_layer(rb, root: Path) -> Outcome:
    """The cluster layer's releases rendered by real helm, validated and checked against the hosts."""
    from .proofs import cluster

    name = "cluster layer (helm)"
    try:
        return Outcome(name, PASSED, cluster.prove(rb.lab, root / "cluster", rb.options).summary())
    except cluster.Unavailable as e:
        return Outcome(name, SKIPPED, str(e))
    except cluster.ProofFailed as e:
        return Outcome(name, FAILED, str(e))


def _vm_tests(root: Path, vm: bool) -> Outcome:
    from .harness import FLAKES, kvm_problem

    name = "vm-tests"
    if not (root / "flake.nix").is_file():
        return Outcome(name, SKIPPED, "the lab has no flake.nix (`homelab init` writes one)")
    kvm = kvm_problem()
    if kvm:
        return Outcome(name, SKIPPED, f"the VM tests need KVM: {kvm}")
    if not vm:
        return Outcome(name, SKIPPED, "they boot NixOS VMs for many minutes and need the pinned nixpkgs: run "
                                      "`homelab test --vm` (nix flake check)")
    if shutil.which("nix") is None:
        return Outcome(name, SKIPPED, "nix (with flakes) is not on PATH")
    r = subprocess.run(["nix", *FLAKES, "flake", "check", "-L", str(root.resolve())],
                       env={**os.environ}, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        return Outcome(name, FAILED, f"`nix flake check` exited {r.returncode} (its log is above)")
    return Outcome(name, PASSED, "nix flake check: a VM test per host and the cluster test")
