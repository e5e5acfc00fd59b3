"""The seed lab's cluster: one LAN, one Kubernetes cluster, one private DNS zone.

Edit this file, then run `python -m homelab build`.
"""

from homelab import PLACEHOLDER_KEY, Acme, Cluster, Secret, Traefik

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
    # who may ssh in and reach the API server: the LAN and the tailnet (everything else is per role)
    admins=["lan", "tailnet"],
    # root's SSH keys (password logins are off); replace the placeholder with your own public key
    admin_keys=[PLACEHOLDER_KEY],
    # the cluster layer (cluster/helmfile.yaml) follows the roles: Traefik behind hanaakari's nginx, Rook Ceph on
    # its SSD (implied). Traefik gets the article's Let's Encrypt DNS-01 resolver; its Cloudflare tokens (a DNS
    # edit and a zone read token) live in the lab's secret store, and `homelab deploy` makes them a Kubernetes
    # Secret. Until they are set, the build warns and deploy refuses to start:
    #   homelab secrets set cloudflare-dns-api-token --cluster < file   (the same for the zone token)
    components=[
        Traefik(acme=Acme(email="you@example.com", provider="cloudflare", env={
            "CF_DNS_API_TOKEN": Secret("cloudflare-dns-api-token"),
            "CF_ZONE_API_TOKEN": Secret("cloudflare-zone-api-token"),
        })),
    ],
)
