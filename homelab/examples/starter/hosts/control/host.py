"""control: the Kubernetes control plane (also a node)."""

from homelab import ControlPlane, Host

host = Host(
    hostname="control",
    system="x86_64-linux",
    description="the control plane",
    state_version="26.05",  # the NixOS release it was first installed with (system.stateVersion); never change it
    interface="enp1s0",  # the LAN interface's name on this machine (ip link)
    address="192.168.1.10/24",
    roles=[ControlPlane()],
    imports=["./hardware-configuration.nix"],  # hand-written Nix, imported, never touched
    options={"services.openssh.enable": True},  # raw NixOS options for what roles don't cover
)
