"""tokiwa: Intel N97 mini PC (16 GB, 512 GB NVMe), a worker."""

from homelab import CephStorage, Host, Tailscale, WakeOnLan, Worker

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
    # PLACEHOLDER MAC (a locally administered address): replace it with the NIC's own,
    # from `ip link show enp1s0` on tokiwa, before relying on `homelab wake`
    wake_on_lan=WakeOnLan(mac="02:00:00:00:00:11"),
)
