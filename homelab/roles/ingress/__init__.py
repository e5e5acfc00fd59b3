"""IngressProxy: nginx ``stream`` passes 80 and 443 straight through to Traefik's NodePorts.

No load balancer, by design (the seed article): the ingress host's nginx
forwards raw TCP to ``127.0.0.1:<NodePort>``, where kube-proxy hands it to
Traefik, which terminates TLS.  The stream block is
``nginx-stream.conf.j2`` beside this file.

Facts from nixpkgs (nixos-26.05): ``services/web-servers/nginx/default.nix``
places ``services.nginx.streamConfig`` inside its ``stream { }`` block.
"""

from __future__ import annotations

from typing import Iterable

import attrs

from ... import checks, configs, fields
from ... import optiontypes as t
from ...contract import PARTIAL, OptionFact
from ...errors import Problem
from ...model import to_sources
from ...role import (Edge, Flow, GraphPart, HostContext, Module, Node, Port, Proof, ProofContext, Role, Source,
                     section)

NGINX = "nixos/modules/services/web-servers/nginx/default.nix"


def nginx_stream(*, routes: list[tuple[str, int, int]]) -> str:
    """``routes``: (upstream name, listen port, NodePort on 127.0.0.1)."""
    return configs.role_text(__file__, "nginx-stream.conf.j2", routes=routes)


def _nginx_unavailable() -> str | None:
    from .proof import nginx_unavailable

    return nginx_unavailable()


def _prove_nginx(role: IngressProxy, ctx: ProofContext) -> str:
    """The stream config nix read back, in a real nginx: bytes reach the right NodePort (proof.py)."""
    from .proof import prove_stream

    routes = {role.http_port: role.http_nodeport, role.https_port: role.https_nodeport}
    return prove_stream(ctx.option("services.nginx.streamConfig"), routes, ctx.work)


@attrs.frozen
class IngressProxy(Role):
    """nginx ``stream`` proxy: 80 and 443 on the host to Traefik's NodePorts."""

    http_nodeport: int = attrs.field(default=31080, validator=fields.nodeport)
    https_nodeport: int = attrs.field(default=31443, validator=fields.nodeport)
    http_port: int = attrs.field(default=80, validator=fields.port)
    https_port: int = attrs.field(default=443, validator=fields.port)
    # who may reach 80/443: LAN clients and the tailnet by default; add "world" to publish the lab
    clients: tuple[Source, ...] = attrs.field(default=("lan", "tailnet"), converter=to_sources)

    label = "ingress"
    tag = "ingress"
    proofs = (Proof("nginx stream", _prove_nginx, _nginx_unavailable),)
    options = (
        OptionFact("services.nginx.enable", t.bool_, NGINX, status=PARTIAL,
                   nix_type="`bool` (an enable option)",
                   nix_default="`false`",
                   evidence="IX (copies from many eras agree)"),
        OptionFact("services.nginx.streamConfig", t.lines, NGINX, "placed inside the stream { } block by the "
                   "module", status=PARTIAL,
                   nix_type="`lines`",
                   nix_default="`\"\"`",
                   evidence="IX, as above"),
        OptionFact("services.nginx.virtualHosts", t.AttrsOf(t.Scalar("submodule", dict)), NGINX,
                   "attrsOf submodule; default { localhost = { }; }, a server on port 80 (IPv4 and IPv6), which any "
                   "definition replaces", status=PARTIAL,
                   nix_type="`attrsOf` vhost submodule",
                   nix_default="`{ localhost = { }; }`: an HTTP server listening on port 80 (IPv4, and IPv6 "
                               "when enabled); any definition replaces the default",
                   evidence="option documentation of the module + IX"),
    )

    @property
    def routes(self) -> tuple[tuple[str, int, int], ...]:
        """(name, listen port, NodePort) of each path through the proxy."""
        return (("http", self.http_port, self.http_nodeport), ("https", self.https_port, self.https_nodeport))

    def compile(self, ctx: HostContext) -> Iterable[Module]:
        stream = nginx_stream(routes=[(f"traefik_{name}", listen, nodeport) for name, listen, nodeport in self.routes])
        yield Module("modules/ingress/nginx-stream.nix", "Ingress: nginx stream proxy to Traefik", (
            section("TCP passthrough to Traefik's NodePorts; Traefik terminates TLS.",
                    ("services.nginx.enable", True),
                    ("services.nginx.streamConfig", stream)),
            section("No HTTP server: nixpkgs' default virtual host (localhost) would listen on port 80 too, and "
                    "nginx would not start.",
                    ("services.nginx.virtualHosts", {})),
        ))

    def node_labels(self, ctx: HostContext) -> dict[str, str]:
        """``proxy: "true"``: Traefik's nodeSelector, so it runs on the host whose nginx streams to it."""
        return {"proxy": "true"}

    def ports(self, ctx: HostContext) -> Iterable[Port]:
        yield Port(self.http_port, "tcp", "the ingress proxy (http)", field="IngressProxy.http_port")
        yield Port(self.https_port, "tcp", "the ingress proxy (https)", field="IngressProxy.https_port")

    def flows(self, ctx: HostContext) -> Iterable[Flow]:
        for name, listen, nodeport in self.routes:
            for source in self.clients:
                yield Flow(listen, "tcp", source, f"the ingress: {name} to Traefik's NodePort {nodeport}")

    def check(self, ctx: HostContext) -> Iterable[Problem]:
        if not ctx.host.is_kubernetes_node:
            yield ctx.error("roles", "IngressProxy needs a Kubernetes node on the host (ControlPlane() or Worker())")
        if self.http_nodeport == self.https_nodeport:
            yield self.error(ctx, "https_nodeport", f"{self.https_nodeport} is the http NodePort too")
        for f in ("http_port", "https_port"):
            if getattr(self, f) in fields.NODEPORT_RANGE:
                yield self.error(ctx, f, f"{getattr(self, f)} lies in the NodePort range 30000-32767, where "
                                 "kube-proxy takes the traffic before nginx sees it")

    def expectations(self, ctx: HostContext) -> Iterable[checks.Check]:
        why = "IngressProxy role (nginx stream)"
        yield checks.service("nginx.service", "host", why)
        for _, listen, nodeport in self.routes:
            yield checks.listening("tcp", listen, "host", why)
            yield checks.proxy(listen, nodeport, f"nginx passes {listen} through to the NodePort {nodeport} (Traefik)")

    def graph(self, ctx: HostContext) -> GraphPart:
        lab, h = ctx.lab, ctx.host
        index = [x.hostname for x in lab.with_role(IngressProxy)].index(h.hostname)
        traefik = "traefik" if index == 0 else f"traefik{index + 1}"
        address = str(h.tailscale_address or h.ip)
        edges = []
        if any(x.tailscale_address for x in lab.hosts):
            listen = ", ".join(f":{listen}" for _, listen, _ in self.routes)
            edges.append(Edge("client", h.hostname, (f"{listen} to {address}",)))
        routes = ", ".join(f"{listen} → {nodeport}" for _, listen, nodeport in self.routes)
        edges.append(Edge(h.hostname, traefik, ("nginx stream", routes)))
        ports = ", ".join(str(nodeport) for _, _, nodeport in self.routes)
        return GraphPart(
            nodes=(Node(traefik, ("Traefik", f"NodePorts {ports}"), "svc", "cluster", "subroutine"),),
            edges=tuple(edges), key="ingress", path={
                "host": h.hostname, "address": address, "proxy": "nginx stream", "target": "Traefik",
                "routes": [{"name": name, "listen": listen, "nodeport": nodeport}
                           for name, listen, nodeport in self.routes]})
