"""hanaakari: Intel N97 mini PC (16 GB, 512 GB NVMe + 1 TB USB SSD), worker, Ceph disk, ingress."""

from homelab import CephStorage, Host, IngressProxy, Tailscale, WakeOnLan, Worker

host = Host(
    hostname="hanaakari",
    system="x86_64-linux",
    state_version="25.05",  # the NixOS release it was first installed with (system.stateVersion); never change it
    description="Intel N97 mini PC, 16 GB, 512 GB NVMe + 1 TB USB SSD",
    interface="enp1s0",
    address="192.168.10.12/24",
    tailscale_address="100.64.0.12",
    roles=[
        Worker(),
        CephStorage(disks=["/dev/sda"]),  # the 1 TB USB SSD, handed to Rook Ceph
        IngressProxy(http_nodeport=31080, https_nodeport=31443),  # Traefik's NodePorts
        Tailscale(),
    ],
    imports=["./hardware-configuration.nix"],
    options={"services.openssh.enable": True},
    # PLACEHOLDER MAC (a locally administered address): replace it with the NIC's own,
    # from `ip link show enp1s0` on hanaakari, before relying on `homelab wake`
    wake_on_lan=WakeOnLan(mac="02:00:00:00:00:12"),
    # its kubelet registers role=application (IngressProxy adds proxy=true): Traefik's nodeSelector, as the
    # seed article's values have it
    labels={"role": "application"},
)
