"""What an aarch64 host is given that only x86 machines have: known architecture mismatches, found offline.

A Raspberry Pi's configuration copied from an x86 machine keeps ``kvm-intel`` in its kernel modules or
Intel microcode in its options; NixOS either fails to load the module at every boot or cannot evaluate
the system at all (the microcode packages are built for x86 only).  ``homelab check`` and ``build``
warn about each, naming the field; ``homelab check --nixos`` is where NixOS itself judges the rest.
"""

from __future__ import annotations

# kernel modules only x86 kernels have (arch/x86/kvm, x86 power and temperature drivers)
X86_MODULES = {
    "kvm-intel": "Intel VT-x virtualisation", "kvm_intel": "Intel VT-x virtualisation",
    "kvm-amd": "AMD-V virtualisation", "kvm_amd": "AMD-V virtualisation",
    "intel_rapl_msr": "Intel power limits", "intel_pmc_core": "Intel power management",
    "coretemp": "Intel CPU temperatures", "k10temp": "AMD CPU temperatures",
}
# raw options that only mean something on x86 (nixos/modules/hardware/cpu/*-microcode.nix, ...sgx.nix)
X86_OPTIONS = {
    "hardware.cpu.intel.updateMicrocode": "Intel CPU microcode",
    "hardware.cpu.amd.updateMicrocode": "AMD CPU microcode",
    "hardware.cpu.intel.sgx.provision.enable": "Intel SGX",
    "hardware.cpu.amd.sev.enable": "AMD SEV",
}
MODULE_OPTIONS = ("boot.kernelModules", "boot.initrd.kernelModules", "boot.initrd.availableKernelModules")


def arch_mismatches(host) -> list[tuple[str, str]]:
    """(field, reason) for what an aarch64 host is given that only x86 machines have."""
    from .model import Priority, option_path

    if host.system != "aarch64-linux":
        return []
    out = []
    for i, m in enumerate(host.kernel_modules):
        if m in X86_MODULES:
            out.append((f"kernel_modules[{i}]", f"{m} is an x86 kernel module ({X86_MODULES[m]}); this host is "
                        "aarch64-linux, whose kernel has none: loading it fails at every boot"))
    for path, value in sorted(host.options.items()):
        plain = value.value if isinstance(value, Priority) else value
        dotted = ".".join(option_path(path))
        if dotted in X86_OPTIONS and plain not in (False, None):
            out.append((f"options[{path!r}]", f"{X86_OPTIONS[dotted]} is for x86 machines; this host is "
                        "aarch64-linux (nixpkgs builds that firmware for x86 only, so NixOS cannot evaluate it)"))
        if dotted in MODULE_OPTIONS and isinstance(plain, (list, tuple)):
            for m in plain:
                if m in X86_MODULES:
                    out.append((f"options[{path!r}]", f"{m} is an x86 kernel module ({X86_MODULES[m]}); this "
                                "host is aarch64-linux, whose kernel has none"))
    return out
