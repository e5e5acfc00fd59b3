"""worker1: a Kubernetes worker."""

from homelab import Host, Worker

host = Host(
    hostname="worker1",
    system="x86_64-linux",
    description="a worker",
    state_version="26.05",  # the NixOS release it was first installed with (system.stateVersion); never change it
    interface="enp1s0",
    address="192.168.1.11/24",
    roles=[Worker()],
    imports=["./hardware-configuration.nix"],
    options={"services.openssh.enable": True},
)
