"""How each expectation is looked at on a target: a shell command, and a parser for what it prints.

Commands use only what every NixOS (and Debian) system has: bash, coreutils,
systemctl, iptables/nft, /proc and /sys.  DNS and the proxy path are spoken
over bash's /dev/tcp with the bytes built here, so a target needs no dig, nc or
curl.  Every command is bounded by ``timeout``.

Pure functions; the suite runs the commands through testinfra (any backend).
"""

from __future__ import annotations

import base64
import re
import shlex
import struct
from dataclasses import dataclass, field

TIMEOUT = 5  # seconds for one network read
CONNECT_TIMEOUT = 15  # bash's /dev/tcp has no connect timeout of its own


def _bash(script: str, limit: int = CONNECT_TIMEOUT) -> str:
    return f"timeout {limit} bash -c {shlex.quote(script)}"


def printf_bytes(data: bytes) -> str:
    """A printf format that writes exactly ``data`` (every byte escaped, so no % or quote can leak)."""
    return "".join(f"\\x{b:02x}" for b in data)


# ---------------------------------------------------------------- services and properties


def service_command(unit: str) -> str:
    return f"systemctl is-active {shlex.quote(unit)}"


def service_status_command(unit: str) -> str:
    return f"systemctl status --no-pager --lines=5 {shlex.quote(unit)}"


def property_command(unit: str, prop: str) -> str:
    return f"systemctl show --property={shlex.quote(prop)} --value {shlex.quote(unit)}"


def property_matches(actual: str, value: str, match: str) -> bool:
    actual = actual.strip()
    if match == "equals":
        return actual == value
    if match == "contains":
        return value in actual.split() or value in actual
    raise ValueError(f"unknown match {match!r}")


# ---------------------------------------------------------------- kernel modules


def module_command(name: str) -> str:
    sysname = name.replace("-", "_")
    return (f"if [ -d /sys/module/{shlex.quote(sysname)} ] || grep -q '^{sysname} ' /proc/modules; "
            "then echo loaded; else echo missing; fi")


# ---------------------------------------------------------------- listening sockets

_LISTEN_STATE = {"tcp": "0A", "udp": "07"}  # TCP_LISTEN; an unconnected, bound UDP socket


def listening_command(proto: str) -> str:
    if proto not in _LISTEN_STATE:
        raise ValueError(proto)
    return f"cat /proc/net/{proto} /proc/net/{proto}6 2>/dev/null; true"


def listening_ports(text: str, proto: str) -> set[int]:
    """Ports with a listening (TCP) or bound (UDP) socket in /proc/net/{tcp,udp}[6] text."""
    state = _LISTEN_STATE[proto]
    ports: set[int] = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4 or not parts[0].rstrip(":").isdigit():
            continue
        local, st = parts[1], parts[3]
        if st.upper() == state and ":" in local:
            ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


# ---------------------------------------------------------------- firewall


def firewall_matches(listing: str, rule: str, match: str) -> bool:
    lines = [" ".join(line.split()) for line in listing.splitlines()]
    if match == "line":
        return " ".join(rule.split()) in lines
    if match == "regex":
        pattern = re.compile(rule)
        return any(pattern.search(line) for line in lines)
    raise ValueError(f"unknown match {match!r}")


# ---------------------------------------------------------------- DNS over TCP


def dns_query(name: str, qid: int = 0x484C) -> bytes:
    """A standard query for the A record of ``name`` (recursion desired)."""
    labels = [p for p in name.rstrip(".").split(".") if p]
    qname = b"".join(bytes([len(p)]) + p.encode("ascii") for p in labels) + b"\x00"
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", 1, 1)


def dns_command(server: str, port: int, name: str) -> str:
    """Ask ``server:port`` over TCP for ``name``'s A record; prints the reply as decimal bytes."""
    q = dns_query(name)
    framed = struct.pack(">H", len(q)) + q
    script = (
        "{ "
        f"printf '{printf_bytes(framed)}' >&3; "
        f"set -- $(timeout {TIMEOUT} dd bs=1 count=2 status=none <&3 | od -An -tu1); "
        "if [ $# -ne 2 ]; then echo NO-RESPONSE; else "
        f"timeout {TIMEOUT} dd bs=1 count=$(( $1 * 256 + $2 )) status=none <&3 | od -An -tu1 -v; fi; "
        "true; "
        f"}} 3<>/dev/tcp/{server}/{int(port)} || echo CONNECT-FAILED"
    )
    return _bash(script)


RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


@dataclass
class DnsReply:
    error: str | None = None  # could not ask (no connection, no reply, garbage)
    rcode: int | None = None
    answers: list[str] = field(default_factory=list)  # A records, in order

    def describe(self) -> str:
        if self.error:
            return self.error
        code = RCODES.get(self.rcode or 0, str(self.rcode))
        return f"{code}, A records {self.answers or 'none'}"


def _skip_name(msg: bytes, i: int) -> int:
    while True:
        if i >= len(msg):
            raise ValueError("name runs past the end")
        n = msg[i]
        if n == 0:
            return i + 1
        if n & 0xC0 == 0xC0:
            return i + 2
        i += 1 + n


def parse_dns_reply(msg: bytes) -> DnsReply:
    if len(msg) < 12:
        return DnsReply(error=f"a reply of {len(msg)} bytes is too short for DNS")
    _, flags, qd, an, _, _ = struct.unpack(">HHHHHH", msg[:12])
    if not flags & 0x8000:
        return DnsReply(error="the reply is not a DNS response")
    out = DnsReply(rcode=flags & 0x000F)
    try:
        i = 12
        for _ in range(qd):
            i = _skip_name(msg, i) + 4
        for _ in range(an):
            i = _skip_name(msg, i)
            rtype, _, _, rdlen = struct.unpack(">HHIH", msg[i:i + 10])
            i += 10
            rdata = msg[i:i + rdlen]
            i += rdlen
            if rtype == 1 and rdlen == 4:
                out.answers.append(".".join(str(b) for b in rdata))
    except (ValueError, struct.error) as e:
        return DnsReply(error=f"malformed DNS reply: {e}")
    return out


def parse_dns_output(text: str) -> DnsReply:
    if "CONNECT-FAILED" in text:
        return DnsReply(error="could not connect (nothing listens there, or the firewall refused)")
    if "NO-RESPONSE" in text:
        return DnsReply(error="connected, but no reply came back")
    try:
        data = bytes(int(x) for x in text.split())
    except ValueError:
        return DnsReply(error=f"unexpected output: {text[:200]!r}")
    return parse_dns_reply(data)


# ---------------------------------------------------------------- TCP byte exchange (proxy path)

HTTP_PROBE = b"GET / HTTP/1.0\r\nHost: homelab-check\r\n\r\n"


def exchange_command(address: str, port: int, payload: bytes = HTTP_PROBE, limit: int = 512) -> str:
    """Send ``payload`` to address:port and print what comes back (base64, one line)."""
    script = (
        "{ "
        f"printf '{printf_bytes(payload)}' >&3; "
        f"timeout {TIMEOUT} head -c {int(limit)} <&3 | base64 -w0; echo; true; "
        f"}} 3<>/dev/tcp/{address}/{int(port)} || echo CONNECT-FAILED"
    )
    return _bash(script)


@dataclass
class Exchange:
    connected: bool
    reply: bytes

    def describe(self) -> str:
        if not self.connected:
            return "connection refused or timed out"
        if not self.reply:
            return "connected, but no bytes came back"
        first = self.reply.split(b"\r\n", 1)[0][:60]
        return f"{len(self.reply)} bytes back, starting {first!r}"


def parse_exchange(text: str) -> Exchange:
    if "CONNECT-FAILED" in text:
        return Exchange(False, b"")
    body = text.strip().splitlines()[-1] if text.strip() else ""
    try:
        return Exchange(True, base64.b64decode(body, validate=False))
    except ValueError:
        return Exchange(True, b"")
