"""yomogi: Raspberry Pi 4 (4 GB, SD card), the control plane and the lab's DNS server."""

from homelab import CephStorage, ControlPlane, DnsServer, Host, RaspberryPi4, Tailscale

host = Host(
    hostname="yomogi",
    system="aarch64-linux",
    state_version="25.05",  # the NixOS release it was first installed with (system.stateVersion); never change it
    description="Raspberry Pi 4, 4 GB, 64 GB SD card",
    interface="end0",
    address="192.168.10.10/24",
    tailscale_address="100.64.0.10",
    boot=RaspberryPi4(),  # nixpkgs' default kernel: 26.05 deprecates linuxPackages_rpi4 (see docs)
    roles=[
        ControlPlane(),  # arm64: the etcd override comes from the system, automatically
        CephStorage(),
        DnsServer(forward=["1.1.1.1", "1.0.0.1"]),
        Tailscale(),
    ],
    imports=["./hardware-configuration.nix"],
    options={"services.openssh.enable": True},
)
