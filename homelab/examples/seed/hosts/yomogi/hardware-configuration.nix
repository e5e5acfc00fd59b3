# Hand-written (normally by `nixos-generate-config`): the disks and drivers of yomogi.
# homelab imports this file from default.nix and never writes it.
{ ... }:
{
  boot.initrd.availableKernelModules = [ "xhci_pci" "usbhid" "usb_storage" ];

  fileSystems."/" = {
    device = "/dev/disk/by-label/NIXOS_SD";
    fsType = "ext4";
  };
}
