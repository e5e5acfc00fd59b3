"""Which secrets a lab asks for: every ``Secret("<name>")`` in its hosts' roles and in its cluster's settings.

Pure lab logic (no files): homelab.compile writes each host's list into hosts/lab.nix (what the flake gives
agenix), and homelab.secretstore checks each against the lab's age files.
"""

from __future__ import annotations

from typing import Iterator

from .model import Host, Lab, Secret


def secrets_of(obj: object, _depth: int = 0) -> Iterator[tuple[str, Secret]]:
    """(field, Secret) for every Secret an attrs value holds: in its fields, in lists/dicts of them, and in the
    attrs values among them (a cluster component's own fields), the field named as ``Class.field``."""
    # a class's ``__attrs_attrs__`` is what attrs.has looks for and attrs.fields returns (for the class of a value,
    # never a generic alias, these are all they do): read once, without the two calls per value
    fields = getattr(type(obj), "__attrs_attrs__", None)
    if fields is None or _depth > 8:
        return
    for f in fields:
        v = getattr(obj, f.name)
        items = v if isinstance(v, (list, tuple)) else (v.values() if isinstance(v, dict) else (v,))
        for item in items:
            if isinstance(item, Secret):
                yield f"{type(obj).__name__}.{f.name}", item
            elif getattr(type(item), "__attrs_attrs__", None) is not None:
                yield from secrets_of(item, _depth + 1)


def needed(lab: Lab) -> dict[str, dict[str, str]]:
    """host -> {secret name: the field that asks for it}: the secrets each host decrypts at activation."""
    out: dict[str, dict[str, str]] = {}
    for h in lab.hosts:
        found: dict[str, str] = {}
        for role in h.roles:
            for field, s in secrets_of(role):
                found.setdefault(s.name, field)
        if found:
            out[h.hostname] = dict(sorted(found.items()))
    return out


def cluster_needed(lab: Lab) -> dict[str, str]:
    """{secret name: field} for the Secrets the cluster's own settings name: the admins put them into Kubernetes."""
    found: dict[str, str] = {}
    for field, s in secrets_of(lab.cluster):
        found.setdefault(s.name, field)
    return dict(sorted(found.items()))


def host_secrets(host: Host) -> list[str]:
    """The names of the secrets ``host`` decrypts at activation, sorted."""
    return sorted({s.name for role in host.roles for _, s in secrets_of(role)})
