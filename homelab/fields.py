"""Field validators and converters for homelab's value classes — and for your own roles.

Use them beside attrs fields, the way homelab's built-in roles do::

    import attrs
    from homelab import fields

    @attrs.frozen
    class NodeExporter(Role):
        port: int = attrs.field(default=9100, validator=fields.port)

A validator that finds a bad value calls :func:`homelab.errors.report`: from
plain Python that raises :class:`~homelab.errors.LabError` at once; while
homelab loads a lab folder, every problem of every file is collected and shown
together.  The field is named ``<Class>.<field>`` (``IngressProxy.http_port``),
or just ``<field>`` on :class:`~homelab.model.Host` and
:class:`~homelab.model.Cluster`.  A value of the wrong type is reported with the
type that was expected, never with a reason that only fits the right type.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from typing import Any, Callable

import attrs

from .errors import report

LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}\Z")
SAFE_TEXT = re.compile(r"^[^\x00-\x1f\x7f\ud800-\udfff]*\Z")  # no control characters, no lone surrogates
NODEPORT_RANGE = range(30000, 32768)


def _type_name(v: Any) -> str:
    return "None" if v is None else type(v).__name__


def wrong_type(v: Any, what: str) -> str:
    """``'6443' is a str, not a port number`` / ``None is not a port number``."""
    if v is None:
        return f"None is not {what}"
    name = "class" if isinstance(v, type) else type(v).__name__
    article = "an" if name[:1].lower() in "aeiou" else "a"
    return f"{v!r} is {article} {name}, not {what}"


def field_name(inst: Any, attribute: attrs.Attribute) -> str:
    """``address`` on Host and Cluster (their fields are the lab's vocabulary), else ``Class.field``."""
    if getattr(type(inst), "plain_field_names", False):
        return attribute.name
    return f"{type(inst).__name__}.{attribute.name}"


def check(pred: Callable[[Any], bool], reason: Callable[[Any], str]):
    """A validator from a predicate and a reason; an exception in ``pred`` counts as a bad value."""

    def validator(inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        try:
            ok = pred(value)
        except Exception:  # a wrong type is a user mistake, not a crash
            ok = False
        if not ok:
            report(field_name(inst, attribute), reason(value))

    return validator


def typed(pytype: type | tuple[type, ...], what: str, pred: Callable[[Any], bool], reason: Callable[[Any], str]):
    """A validator that first names the expected type, then applies ``pred`` to a value of that type."""

    ints = pytype is int  # True and False are ints to Python, not to the lab

    def validator(inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        # check(is_type and pred, reason or wrong_type) written out: it runs for most fields of every host
        if isinstance(value, pytype) and not (ints and isinstance(value, bool)):
            try:
                if pred(value):
                    return
            except Exception:  # a wrong value is a user mistake, not a crash
                pass
            report(field_name(inst, attribute), reason(value))
        else:
            report(field_name(inst, attribute), wrong_type(value, what))

    return validator


def _text(pred: Callable[[str], bool], reason: Callable[[str], str]):
    return typed(str, "a string", pred, reason)


dns_label = _text(lambda v: bool(LABEL.match(v)),
                  lambda v: f"{v!r} is not a valid DNS label (lower-case letters, digits and '-', "
                  "1-63 characters, not starting or ending with '-')")

dns_name = _text(lambda v: len(v) <= 253 and all(LABEL.match(p) for p in v.split(".")),
                 lambda v: f"{v!r} is not a valid DNS name (dot-separated DNS labels)")

interface_name = _text(
    lambda v: bool(IFNAME.match(v)) and "." not in v,
    lambda v: f"{v!r} is a VLAN interface (name.vid); homelab does not write networking.vlans, so name "
    "the parent interface" if IFNAME.match(v) and "." in v
    else f"{v!r} is not a valid network interface name (1-15 characters from letters, digits, '_', '-')")

safe_text = _text(lambda v: bool(SAFE_TEXT.match(v)), lambda v: f"{v!r} contains control characters")


def _int(pred: Callable[[int], bool], reason: Callable[[int], str], what: str = "a whole number"):
    return typed(int, what, pred, reason)


port = _int(lambda v: 1 <= v <= 65535, lambda v: f"{v!r} is not a TCP/UDP port (1-65535)", "a port number")
nodeport = _int(lambda v: v in NODEPORT_RANGE, lambda v: f"{v!r} is outside the Kubernetes NodePort range "
                "30000-32767", "a port number")
positive_int = _int(lambda v: v > 0, lambda v: f"{v!r} is not a positive whole number")
a_bool = check(lambda v: isinstance(v, bool), lambda v: wrong_type(v, "true or false"))


def ssh_key_blob(key: str) -> bytes | None:
    """The key blob of an SSH public key line (``ssh-ed25519 AAAA... you@laptop``), its base64 decoded strictly,
    when the blob holds a key of the type the line names: it starts with that type as an SSH string, as every
    key's blob does (RFC 4253 6.6); None for a line cut short, mistyped or of another type.  The one check of
    a whole key, for ``Cluster.admin_keys`` and the secrets' readers (homelab.secretstore)."""
    parts = key.split()
    if len(parts) < 2:
        return None
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        return None
    kind = parts[0].encode()
    return blob if blob.startswith(len(kind).to_bytes(4, "big") + kind) else None


def whole_key_reason(key: str, fix: str) -> str:
    """Why ``key`` (no whole key: :func:`ssh_key_blob`) is refused, with ``fix``, the way to a whole one."""
    bare = " ".join(key.split()[:2])
    return (f"{bare!r} is not a whole {key.split()[0]} key (its base64 does not decode to one; a line cut short or "
            f"mistyped?); {fix}")


def one_of(*choices: str):
    what = f"one of: {', '.join(choices)}"
    return check(lambda v: isinstance(v, str) and v in choices,
                 lambda v: f"{v!r} is not {what}" if isinstance(v, str) else wrong_type(v, what))


def _path_reason(v: Any) -> str:
    from .secrets import redact, secret_kind

    if not isinstance(v, str):
        return wrong_type(v, "a file path (a string starting with /)")
    kind = secret_kind(v)
    if kind:  # never echo a secret; say what to do with it
        return (f"{redact(v)} is not an absolute file path; it looks like {kind} itself: put it in a file "
                "outside the Nix store and give that file's path")
    if " " in v or '"' in v or "\\" in v or not SAFE_TEXT.match(v):
        return f"{v!r} holds a space, quote, backslash or control character; it goes into a command line"
    return f"{v!r} is not an absolute file path"


def _is_path(v: Any) -> bool:
    """An absolute path safe to put into a command line or a unit file unquoted."""
    return (isinstance(v, str) and v.startswith("/") and bool(SAFE_TEXT.match(v))
            and not any(c in v for c in ' "\\\'$`'))


absolute_path = check(_is_path, _path_reason)
optional_path = check(lambda v: v is None or _is_path(v), _path_reason)


def instance_of(kind: type | tuple[type, ...], what: str):
    return check(lambda v: isinstance(v, kind), lambda v: wrong_type(v, what))


def optional_text(pred: Callable[[str], bool], what: str, reason: Callable[[str], str]):
    """None, or a string that ``pred`` accepts (a wrong type is named as such)."""
    return check(lambda v: v is None or (isinstance(v, str) and pred(v)),
                 lambda v: reason(v) if isinstance(v, str) else wrong_type(v, what))


# ---------------------------------------------------------------- converters
# Converters turn friendly input ("192.168.10.0/24") into typed values.  When
# the input is unusable they report it; while collecting, the raw value is kept
# so that loading can go on and list every problem.


def converter(parse: Callable[[Any], Any], what: str):
    """An attrs converter from ``parse``: a TypeError from it reports ``'x' is a str, not <what>``, a
    ValueError ``'x' is not <what>``."""

    def convert(value: Any, self_: Any, field: attrs.Attribute) -> Any:
        try:
            return parse(value)
        except TypeError:
            report(field_name(self_, field), wrong_type(value, what))
        except ValueError:
            report(field_name(self_, field), f"{value!r} is not {what}")
        return value  # reached only while collecting

    return attrs.Converter(convert, takes_self=True, takes_field=True)


def is_list(v: Any) -> bool:
    """A list or tuple of values (a string, bytes, a dict or a set is not: each has its own mistake)."""
    return isinstance(v, (list, tuple))


def list_converter(parse: Callable[[Any], Any], what: str, item: str):
    """An attrs converter to a tuple, ``parse`` applied to each item; each bad item is reported on its own
    (``nameservers[1]: 5 is an int, not an IPv4 address``)."""

    def convert(value: Any, self_: Any, field: attrs.Attribute) -> Any:
        name = field_name(self_, field)
        if not is_list(value):
            report(name, wrong_type(value, what))
            return value
        out, bad = [], False
        for i, x in enumerate(value):
            try:
                out.append(parse(x))
            except TypeError:
                report(f"{name}[{i}]", wrong_type(x, item))
                bad = True
            except ValueError:
                report(f"{name}[{i}]", f"{x!r} is not {item}")
                bad = True
        return value if bad else tuple(out)  # the raw value is kept only while collecting

    return attrs.Converter(convert, takes_self=True, takes_field=True)


def parse_network(v: Any) -> ipaddress.IPv4Network:
    if not isinstance(v, (str, ipaddress.IPv4Network)):
        raise TypeError(v)
    if isinstance(v, str) and "/" not in v:
        raise ValueError(v)
    return ipaddress.IPv4Network(v, strict=True)


def parse_address(v: Any) -> ipaddress.IPv4Address:
    if isinstance(v, ipaddress.IPv4Address):
        return v
    if not isinstance(v, str):
        raise TypeError(v)
    return ipaddress.IPv4Address(v)


def optional(parse):
    return lambda v: None if v is None else parse(v)


def a_string(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError(v)
    return v


NETWORK = "an IPv4 network in CIDR form with no host bits (e.g. 192.168.10.0/24)"
to_network = converter(parse_network, NETWORK)
to_address = converter(parse_address, "an IPv4 address (e.g. 192.168.10.11)")
to_optional_address = converter(optional(parse_address), "an IPv4 address (e.g. 100.64.0.3)")
to_addresses = list_converter(parse_address, "a list of IPv4 addresses", "an IPv4 address")
to_networks = list_converter(parse_network, "a list of IPv4 networks in CIDR form", NETWORK)
to_strs = list_converter(a_string, "a list of strings", "a string")
