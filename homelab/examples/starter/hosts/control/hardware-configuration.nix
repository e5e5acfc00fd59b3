# homelab: replace this file
# A placeholder from `homelab init`: this machine's disks, file systems and drivers go here.
# On the machine, run `nixos-generate-config --show-hardware-config` and put its output here
# instead, or let `homelab install hosts/<name> --target root@ADDRESS` do it: nixos-anywhere
# writes the machine's own here (its disks then come from a disko layout among the imports).
# Until then `homelab build` refuses this host: NixOS refuses a system without a root
# file system (fileSystems."/"), and so does homelab.
{ ... }:
{
}
