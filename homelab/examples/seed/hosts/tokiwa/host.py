"""tokiwa: Intel N97 mini PC (16 GB, 512 GB NVMe), a worker."""

from homelab import CephStorage, Host, Tailscale, Worker

host = Host(
    hostname="tokiwa",
    system="x86_64-linux",
    state_version="25.05",  # the NixOS release it was first installed with (system.stateVersion); never change it
    description="Intel N97 mini PC, 16 GB, 512 GB NVMe",
    interface="enp1s0",
    address="192.168.10.11/24",
    tailscale_address="100.64.0.11",
    roles=[Worker(), CephStorage(), Tailscale()],
    imports=["./hardware-configuration.nix"],
    options={"services.openssh.enable": True},
)
