"""The jinja2 templates: the module frame in ``homelab/templates``, and the config texts roles embed.

A role keeps its templates in its own folder (the CoreDNS Corefile in
``homelab/roles/dns_server/``, the nginx stream block in ``homelab/roles/ingress/``)
and fills them with :func:`role_text`; this module only loads and renders them.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jinja2


@functools.cache
def _env(folder: str | None) -> jinja2.Environment:
    loader = jinja2.PackageLoader("homelab", "templates") if folder is None else jinja2.FileSystemLoader(folder)
    return jinja2.Environment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        auto_reload=False,  # shipped templates: not stat'ed again on each of a large lab's 20,000 renders
    )


def text(template: str, **values) -> str:
    """A template of ``homelab/templates`` (the module frame)."""
    return _env(None).get_template(template).render(**values)


def role_text(module_file: str, template: str, **values) -> str:
    """A template kept beside a role's code: ``role_text(__file__, "Corefile.j2", ...)``."""
    return _env(str(Path(module_file).resolve().parent)).get_template(template).render(**values)
