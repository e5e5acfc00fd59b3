"""The seed lab's cluster: one LAN, one Kubernetes cluster, one private DNS zone.

Edit this file, then run `python -m homelab build`.
"""

from homelab import Cluster

cluster = Cluster(
    name="seed",
    domain="home.example.com",  # the split-DNS zone; every name under it goes to the ingress host
    lan="192.168.10.0/24",
    gateway="192.168.10.1",
    nameservers=["192.168.10.1", "1.1.1.1"],
    pod_cidr="10.1.0.0/16",  # services.kubernetes.clusterCidr (flannel)
    service_cidr="10.0.0.0/24",  # apiserver.serviceClusterIpRange
    api_name="api.kube",
    api_port=6443,
    easy_certs=True,  # fine for a home lab; nixpkgs advises against it in production
)
