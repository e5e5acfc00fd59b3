# Fail fast without KVM: a VM test that falls back to QEMU's TCG emulation crawls for hours.
# `qemu.forceAccel` (nixpkgs PR #509553, before the 26.05 branch-off) aborts the test when /dev/kvm
# is missing or not accessible; set only where the pinned nixpkgs declares it.
{ lib, options, ... }:
{
  config = lib.optionalAttrs (options ? qemu && options.qemu ? forceAccel) {
    qemu.forceAccel = true;
  };
}
