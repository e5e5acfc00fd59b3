"""Monitoring and NodeExporter: Prometheus scraping a node exporter on the hosts that carry one.

The worked example of a role written only through homelab's public interface
(:mod:`homelab.role`, :mod:`homelab.fields`, :mod:`homelab.checks`): nothing
here reaches into homelab's internals, so a lab could keep this file beside its
``hosts/`` and it would work the same.  ``tests/test_roles_plugin.py`` holds it to
that.

* :class:`NodeExporter` runs ``services.prometheus.exporters.node`` and lets in
  only the hosts with the :class:`Monitoring` role, on its port.
* :class:`Monitoring` runs Prometheus with one scrape job whose targets are every
  node exporter of the lab, generated from the model (``<LAN address>:<port>``).

Facts from nixpkgs (nixos-26.05):
``services/monitoring/prometheus/exporters.nix`` (each exporter's ``enable``,
``port``, ``listenAddress`` default 0.0.0.0, ``openFirewall`` default false; the
unit is ``prometheus-<name>-exporter.service``; the node exporter's port
defaults to 9100 in ``exporters/node.nix``) and
``services/monitoring/prometheus/default.nix`` (``port`` 9090, ``listenAddress``,
``scrapeConfigs``: a list of scrape_config submodules with ``job_name`` and
``static_configs`` of ``targets``).
"""

from __future__ import annotations

from typing import Iterable

import attrs

from homelab import checks, fields
from homelab.role import (
    ADMINS,
    PARTIAL,
    Edge,
    Flow,
    GraphPart,
    HostContext,
    Module,
    OptionFact,
    Port,
    Problem,
    Role,
    Source,
    section,
    types,
)

EXPORTERS = "nixos/modules/services/monitoring/prometheus/exporters.nix"
PROMETHEUS = "nixos/modules/services/monitoring/prometheus/default.nix"

_static_config = types.Submodule({"targets": types.ListOf(types.str_), "labels": types.AttrsOf(types.str_)})
_scrape_config = types.Submodule({"job_name": types.str_, "static_configs": types.ListOf(_static_config)})


@attrs.frozen
class NodeExporter(Role):
    """Prometheus node exporter; its port is open only to the lab's Monitoring host(s)."""

    port: int = attrs.field(default=9100, validator=fields.port)

    label = "node exporter"
    options = (
        OptionFact("services.prometheus.exporters.node.enable", types.bool_, EXPORTERS,
                   nix_type="`bool` (an enable option)",
                   nix_default="`false`",
                   evidence="S"),
        OptionFact("services.prometheus.exporters.node.port", types.port, EXPORTERS, "default 9100 "
                   "(exporters/node.nix)", status=PARTIAL,
                   nix_type="`port`",
                   nix_default="`9100` (from `exporters/node.nix`)",
                   evidence="S (the option; the default's file not read)"),
        OptionFact("services.prometheus.exporters.node.openFirewall", types.bool_, EXPORTERS,
                   "default false; true would open the port to every source",
                   nix_type="`bool`",
                   nix_default="`false`; `true` opens the port to every source (`firewallFilter`)",
                   evidence="S"),
    )

    def compile(self, ctx: HostContext) -> Iterable[Module]:
        yield Module("modules/monitoring/node-exporter.nix", "Prometheus node exporter", (
            section("Host metrics for Prometheus; the firewall lets in only the monitoring host (see the host's "
                    "flow table), never everyone.",
                    ("services.prometheus.exporters.node.enable", True),
                    ("services.prometheus.exporters.node.port", self.port),
                    ("services.prometheus.exporters.node.openFirewall", False)),
        ))

    def ports(self, ctx: HostContext) -> Iterable[Port]:
        yield Port(self.port, "tcp", "the node exporter", field="NodeExporter.port")

    def flows(self, ctx: HostContext) -> Iterable[Flow]:
        for host in ctx.lab.with_role(Monitoring):
            yield Flow(self.port, "tcp", Source.of_host(host.hostname),
                       f"Prometheus on {host.hostname} scrapes the node exporter")

    @classmethod
    def check_lab(cls, lab) -> Iterable[Problem]:
        if not lab.with_role(Monitoring):
            exporters = ", ".join(lab.where(h) for h in lab.with_role(cls))
            yield Problem(exporters, "NodeExporter", "no host has the Monitoring role, so nothing scrapes these "
                          "exporters (and their port stays closed to everyone)", "warning")

    def expectations(self, ctx: HostContext) -> Iterable[checks.Check]:
        yield checks.service("prometheus-node-exporter.service", "host", "NodeExporter role")
        yield checks.listening("tcp", self.port, "host", "NodeExporter role")


@attrs.frozen
class Monitoring(Role):
    """Prometheus, scraping the node exporter of every host of the lab that has one."""

    port: int = attrs.field(default=9090, validator=fields.port)
    scrape_interval: str = attrs.field(default="30s", validator=fields.typed(
        str, "a duration such as '30s'", lambda v: v[:-1].isdigit() and v[-1] in "smh",
        lambda v: f"{v!r} is not a duration such as '30s', '5m' or '1h'"))

    label = "monitoring"
    options = (
        OptionFact("services.prometheus.enable", types.bool_, PROMETHEUS,
                   nix_type="`bool` (an enable option)",
                   nix_default="`false`",
                   evidence="S"),
        OptionFact("services.prometheus.port", types.port, PROMETHEUS, "default 9090", status=PARTIAL,
                   nix_type="`port`",
                   nix_default="`9090`",
                   evidence="S (the listen flag; the default not read)"),
        OptionFact("services.prometheus.globalConfig.scrape_interval", types.NullOr(types.str_), PROMETHEUS,
                   "nullOr str; null means Prometheus' own default (1m)", status=PARTIAL,
                   nix_type="`nullOr str` (null: Prometheus' own `1m`)",
                   nix_default="`null`",
                   evidence="S"),
        OptionFact("services.prometheus.scrapeConfigs", types.ListOf(_scrape_config), PROMETHEUS,
                   "listOf scrape_config submodules (job_name, static_configs = [ { targets; labels; } ])",
                   status=PARTIAL,
                   nix_type="`listOf` scrape_config submodules (`job_name` str; `static_configs`: `nullOr "
                            "(listOf { targets; labels; })`)",
                   nix_default="`[ ]`",
                   evidence="S"),
    )

    def targets(self, ctx: HostContext) -> list[tuple[str, str]]:
        """(hostname, ``address:port``) of every node exporter in the lab."""
        return [(h.hostname, f"{h.ip}:{r.port}") for h, r in ctx.lab.roles_of_type(NodeExporter)]

    def compile(self, ctx: HostContext) -> Iterable[Module]:
        static = [{"targets": [target], "labels": {"host": name}} for name, target in self.targets(ctx)]
        yield Module("modules/monitoring/prometheus.nix", "Prometheus for the lab", (
            section("Prometheus scrapes every node exporter of the lab (targets generated from hosts/).",
                    ("services.prometheus.enable", True),
                    ("services.prometheus.port", self.port),
                    ("services.prometheus.globalConfig.scrape_interval", self.scrape_interval),
                    ("services.prometheus.scrapeConfigs", [{"job_name": "node", "static_configs": static}])),
        ))

    def ports(self, ctx: HostContext) -> Iterable[Port]:
        yield Port(self.port, "tcp", "Prometheus", field="Monitoring.port")

    def flows(self, ctx: HostContext) -> Iterable[Flow]:
        yield Flow(self.port, "tcp", ADMINS, "Prometheus' web UI and API, for the admins")

    def expectations(self, ctx: HostContext) -> Iterable[checks.Check]:
        yield checks.service("prometheus.service", "host", "Monitoring role")
        yield checks.listening("tcp", self.port, "host", "Monitoring role")

    def graph(self, ctx: HostContext) -> GraphPart:
        edges = tuple(Edge(ctx.host.hostname, name, (f"scrape {target}",), "-.->")
                      for name, target in self.targets(ctx) if name != ctx.host.hostname)
        return GraphPart(edges=edges, key="monitoring", path={
            "host": ctx.host.hostname, "port": self.port, "targets": [t for _, t in self.targets(ctx)]})
