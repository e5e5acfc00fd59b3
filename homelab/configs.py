"""Config texts the roles embed in Nix strings (CoreDNS Corefile, nginx stream block).

They are jinja2 templates in ``homelab/templates``; this module only fills them.
"""

from __future__ import annotations

import functools
import re

import jinja2


@functools.cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("homelab", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def text(template: str, **values) -> str:
    return _env().get_template(template).render(**values)


def zone_regex(zone: str) -> str:
    """The CoreDNS ``match`` regex for the zone apex and every name below it."""
    return "^(.+\\.)?" + re.escape(zone).replace("\\-", "-") + "\\.$"


def corefile(*, zone: str, answer_ip: str, ttl: int, forward: list[str], cache: int, port: int) -> str:
    return text(
        "Corefile.j2",
        zone=zone,
        regex=zone_regex(zone),
        answer_ip=answer_ip,
        ttl=ttl,
        forward=forward,
        cache=cache,
        port=port,
    )


def nginx_stream(*, routes: list[tuple[str, int, int]]) -> str:
    """``routes``: (upstream name, listen port, NodePort on 127.0.0.1)."""
    return text("nginx-stream.conf.j2", routes=routes)
