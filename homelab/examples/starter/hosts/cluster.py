"""The lab's cluster: one LAN, one Kubernetes cluster, one private DNS zone.

Edit this file and hosts/<name>/host.py, then run `homelab build`.
"""

from homelab import PLACEHOLDER_KEY, Cluster

cluster = Cluster(
    name="lab",
    domain="lab.example.org",  # the lab's private zone (answered by a host with the DnsServer role)
    lan="192.168.1.0/24",
    gateway="192.168.1.1",
    nameservers=["192.168.1.1"],
    pod_cidr="10.1.0.0/16",  # services.kubernetes.clusterCidr (flannel)
    service_cidr="10.0.0.0/24",  # apiserver.serviceClusterIpRange
    api_name="api.kube",
    api_port=6443,
    # who may ssh in and reach the API server (everything else each role opens for itself: `homelab policy`)
    admins=["lan"],
    # root's SSH keys (password logins are off): replace the placeholder with your own public key
    admin_keys=[PLACEHOLDER_KEY],
)
