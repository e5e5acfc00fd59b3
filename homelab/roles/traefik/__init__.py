"""Traefik: the cluster's ingress controller, behind the IngressProxy hosts' nginx.

Its values come from the model, so the two layers agree: the Service's NodePorts are the
IngressProxy's (nginx streams 80/443 to them on 127.0.0.1), and its ``nodeSelector`` is the labels every
IngressProxy host's kubelet registers (``homelab.labels``: ``proxy: "true"`` from the role, the host's own
``labels``), so Traefik runs where the proxy is.  With ``acme``, a Let's Encrypt DNS-01 resolver (the seed
article's ``cloudflare-resolver``) whose API tokens come from a Kubernetes Secret, never from values.

Chart: traefik 37.1.0 (the seed article's), https://traefik.github.io/charts.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

import attrs

from ... import fields
from ...component import Component, KubeSecret, Release, Repository, components
from ...errors import Problem, report
from ...labels import node_labels
from ...model import Secret
from ...yamltext import Commented
from ..ingress import IngressProxy

REPOSITORY = Repository("traefik", "https://traefik.github.io/charts")
VERSION = "37.1.0"
LETSENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETSENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*\Z")
# the acme.json fix-up of the seed article (Traefik runs as 65532 and lego wants acme.json private)
ACME_INIT = ("mkdir -p /data\n"
             "touch /data/acme.json\n"
             "chown 65532:65532 /data/acme.json\n"
             "chmod 600 /data/acme.json\n"
             "chown 65532:65532 /data\n"
             "chmod 755 /data\n")
INIT_IMAGE = "busybox:1.37"


def _env(value: Any) -> Mapping[str, Secret]:
    from ...values import FrozenDict

    if not isinstance(value, Mapping):
        raise TypeError(value)
    return FrozenDict(value)


@attrs.frozen
class Acme:
    """A Let's Encrypt DNS-01 certificate resolver.

    ``env``: the environment variables lego's DNS provider reads, each filled from a lab secret
    (``{"CF_DNS_API_TOKEN": Secret("cloudflare-dns-token")}``): they reach Traefik's pod through a Kubernetes
    Secret that ``homelab deploy`` creates from the lab's encrypted secrets.

    ``delay_before_checks``: seconds Traefik waits after creating the TXT record before it checks the record
    has propagated (the article's ``delayBeforeCheck: 10``; 0: no wait).  Traefik v3.3 deprecated
    ``dnsChallenge.delayBeforeCheck`` for ``dnsChallenge.propagation.delayBeforeChecks`` (a duration), which the
    chart's Traefik v3.5.1 reads (``pkg/provider/acme/provider.go``: ``Propagation.DelayBeforeChecks``, passed to
    lego as ``dns01.PropagationWait``; docs/content/migration/v3.md, "v3.2 to v3.3").
    """

    email: str = attrs.field(validator=fields.typed(
        str, "an e-mail address", lambda v: re.fullmatch(r"[^@\s\"'\\]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", v) is not None,
        lambda v: f"{v!r} is not an e-mail address"))
    provider: str = attrs.field(default="cloudflare", validator=fields.typed(
        str, "a lego DNS provider name", lambda v: re.fullmatch(r"[a-z0-9][a-z0-9.-]*", v) is not None,
        lambda v: f"{v!r} is not a lego DNS provider name (e.g. cloudflare)"))
    env: Mapping[str, Secret] = attrs.field(factory=dict, converter=_env)
    resolver: str = attrs.field(default="cloudflare-resolver", validator=fields.dns_label)
    staging: bool = attrs.field(default=False, validator=fields.a_bool)
    delay_before_checks: int = attrs.field(default=10, validator=fields.typed(
        int, "a number of seconds", lambda v: v >= 0, lambda v: f"{v} is negative: give the seconds to wait, or 0"))

    @env.validator
    def _env_ok(self, attribute, value):
        for k, v in value.items():
            if not (isinstance(k, str) and ENV_NAME.match(k)):
                report(f"Acme.env[{k!r}]", f"{k!r} is not an environment variable name (A-Z, 0-9, _)")
            if not isinstance(v, Secret):  # never echo it: it may be the token itself
                report(f"Acme.env[{k!r}]", f"is a {type(v).__name__}; give Secret(\"<name>\"), a secret named, "
                       "never given (the value lives encrypted in the lab)")


@attrs.frozen
class Traefik(Component):
    """Traefik on the IngressProxy hosts, on the IngressProxy's NodePorts."""

    acme: Acme | None = attrs.field(default=None, validator=fields.check(
        lambda v: v is None or isinstance(v, Acme), lambda v: fields.wrong_type(v, "Acme(email=...) or None")))
    namespace: str = attrs.field(default="traefik", validator=fields.dns_label)
    version: str = VERSION

    label = "traefik"

    @classmethod
    def implied(cls, lab) -> Traefik | None:
        """A lab with an IngressProxy host gets Traefik behind it (without ACME) unless it lists one."""
        return cls() if lab.with_role(IngressProxy) else None

    def proxies(self, lab) -> list:
        return [(h, h.role(IngressProxy)) for h in lab.with_role(IngressProxy)]

    def node_selector(self, lab) -> dict[str, str]:
        """The labels every IngressProxy host's kubelet registers (their common ones)."""
        common: dict[str, str] | None = None
        for h, _ in self.proxies(lab):
            labels = node_labels(lab, h)
            common = dict(labels) if common is None else {k: v for k, v in common.items() if labels.get(k) == v}
        return dict(sorted((common or {}).items()))

    def secret_name(self) -> str:
        return f"{self.acme.resolver}-env" if self.acme else ""

    def check(self, lab) -> Iterable[Problem]:
        proxies = self.proxies(lab)
        if not proxies:
            yield self.error("hosts", "no host has the IngressProxy role: nothing streams 80/443 to Traefik's "
                             "NodePorts (give a Kubernetes node IngressProxy(), or drop Traefik)")
            return
        ports = {(p.http_nodeport, p.https_nodeport) for _, p in proxies}
        if len(ports) > 1:
            yield self.error("hosts", "the IngressProxy hosts stream to different NodePorts "
                             f"({', '.join(f'{a}/{b}' for a, b in sorted(ports))}); one Traefik Service has one pair")
        selector = self.node_selector(lab)
        if not selector:
            yield self.error("hosts", "the IngressProxy hosts share no node label to select them by")
        strays = [h.hostname for h in lab.kubernetes_nodes if not h.has(IngressProxy)
                  and all(node_labels(lab, h).get(k) == v for k, v in selector.items())]
        if strays:
            yield self.error("hosts", f"its nodeSelector {selector} also matches {', '.join(strays)}, which has no "
                             "IngressProxy; Traefik could run there")

    def secrets(self, lab) -> Iterable[KubeSecret]:
        if self.acme and self.acme.env:
            yield KubeSecret(self.namespace, self.secret_name(), dict(self.acme.env),
                             f"the {self.acme.provider} API tokens of the {self.acme.resolver} ACME resolver")

    def values(self, lab) -> dict[str, Any]:
        _, proxy = self.proxies(lab)[0]
        values: dict[str, Any] = {
            "ports": Commented({
                "web": {"nodePort": proxy.http_nodeport},
                "websecure": {"nodePort": proxy.https_nodeport},
            }, "The IngressProxy's NodePorts: nginx on the ingress host streams 80 and 443 to them on 127.0.0.1 "
               "(no load balancer, by design)."),
            "service": {"type": "NodePort"},
            "nodeSelector": Commented(self.node_selector(lab), "The labels the IngressProxy hosts' kubelets "
                                      "register (--node-labels): Traefik runs where nginx streams to it."),
        }
        if self.acme is None:
            return values
        a = self.acme
        values["certificatesResolvers"] = Commented({a.resolver: {"acme": {
            "email": a.email,
            "storage": "/data/acme.json",
            "caServer": Commented(LETSENCRYPT_STAGING if a.staging else LETSENCRYPT,
                                  "Let's Encrypt's staging server while testing (Acme(staging=True)): the "
                                  "production one has strict rate limits."),
            "dnsChallenge": {"provider": a.provider, **({"propagation": Commented(
                {"delayBeforeChecks": f"{a.delay_before_checks}s"},
                "Wait before checking that the TXT record has propagated (the article's delayBeforeCheck, "
                "which Traefik v3.3 replaced by propagation.delayBeforeChecks).")} if a.delay_before_checks else {})},
        }}}, "DNS-01: Let's Encrypt never reaches the lab; the provider's DNS proves the name. Ingresses name "
             f"this resolver: traefik.ingress.kubernetes.io/router.tls.certresolver: {a.resolver}")
        values["deployment"] = {"initContainers": Commented([{
            "name": "volume-permissions",
            "image": INIT_IMAGE,
            "command": ["sh", "-c", ACME_INIT],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            "securityContext": {"runAsUser": 0, "runAsNonRoot": False},
        }], "lego refuses an acme.json others can read, and Traefik runs as 65532: create it with that owner "
            "and mode 600 first.")}
        from ..rook_ceph import RookCeph

        rook = next((c for c in components(lab) if isinstance(c, RookCeph)), None)
        persistence: dict[str, Any] = {"enabled": rook is not None, "path": "/data"}
        if rook is not None:
            persistence["storageClass"] = rook.block_storage_class
        values["persistence"] = Commented(persistence, "Certificates kept across restarts" + (
            f", on Ceph ({rook.block_storage_class})." if rook else ": none here (no storage class in the lab); "
            "Traefik asks Let's Encrypt again after a restart."))
        if a.env:
            values["env"] = Commented([
                {"name": k, "valueFrom": {"secretKeyRef": {"name": self.secret_name(), "key": k}}}
                for k, _ in sorted(a.env.items())],
                f"The {a.provider} API tokens, from the Kubernetes Secret {self.secret_name()} that `homelab "
                "deploy` creates from the lab's encrypted secrets: never in this file.")
        return values

    def releases(self, lab) -> Iterable[Release]:
        from ..rook_ceph import RookCeph

        needs = ()
        rook = next((c for c in components(lab) if isinstance(c, RookCeph)), None)
        if self.acme is not None and rook is not None:
            needs = (f"{rook.namespace}/rook-ceph-cluster",)
        yield Release("traefik", self.namespace, REPOSITORY, "traefik", self.version, self.values(lab),
                      "Ingress controller and TLS end, behind nginx on the ingress host", needs)
