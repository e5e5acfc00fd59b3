"""The jinja2 templates in ``homelab/templates``: the module frame, and the config texts roles embed.

The roles fill their own templates (the CoreDNS Corefile in
:mod:`homelab.roles.dns_server`, the nginx stream block in
:mod:`homelab.roles.ingress`); this module only loads and renders them.
"""

from __future__ import annotations

import functools

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
