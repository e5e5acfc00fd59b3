"""How each expectation is looked at on a target: a shell command, and a parser for what it prints.

Commands use only what every NixOS (and Debian) system has: bash, coreutils,
systemctl, iptables/nft, glibc's getent, /proc and /sys, and on Kubernetes nodes
containerd's ctr (NixOS's containerd module installs it).  DNS and the proxy path are spoken
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
REACH_TIMEOUT = 2  # seconds a firewall probe waits: an accepted packet on a LAN is answered in milliseconds
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
    if match == "last":  # the winner of a repeated --flag=x: the last such word
        flag = value.split("=", 1)[0] + "="
        return [w for w in actual.split() if w.startswith(flag)][-1:] == [value]
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
    return set(listening_addresses(text, proto))


def _proc_address(hexaddr: str) -> str:
    """/proc/net's hex address (IPv4: 8 hex digits, little-endian; IPv6: 32, four little-endian words)."""
    import ipaddress

    raw = bytes.fromhex(hexaddr)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    a = ipaddress.IPv6Address(words)
    return str(a.ipv4_mapped) if a.ipv4_mapped else str(a)


def listening_addresses(text: str, proto: str) -> dict[int, set[str]]:
    """Port -> the local addresses it is bound to ("0.0.0.0" / "::" for all), from /proc/net text."""
    state = _LISTEN_STATE[proto]
    out: dict[int, set[str]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4 or not parts[0].rstrip(":").isdigit():
            continue
        local, st = parts[1], parts[3]
        if st.upper() == state and ":" in local:
            addr, port = local.rsplit(":", 1)
            out.setdefault(int(port, 16), set()).add(_proc_address(addr))
    return out


def _loopback(addr: str) -> bool:
    import ipaddress

    return ipaddress.ip_address(addr).is_loopback


def bind_verdict(addresses: set[str], bind: str) -> str | None:
    """Why the sockets on a port do not match ``bind`` ("any": reachable from other hosts; "loopback": only
    from the host itself), or None when they do."""
    if not addresses:
        return "nothing listens"
    if bind == "loopback":
        wide = sorted(a for a in addresses if not _loopback(a))
        return f"also bound to {', '.join(wide)}: reachable from other hosts" if wide else None
    if all(_loopback(a) for a in addresses):
        return f"bound to {', '.join(sorted(addresses))} only: other hosts cannot reach it"
    return None


# ---------------------------------------------------------------- reaching a port from another machine


def reach_command(proto: str, address: str, port: int) -> str:
    """From a client: does ``address:port`` let ``proto`` through?  Prints one word.

    TCP: ``open`` (connected), ``closed`` (refused: it got through, nothing listens), ``silent``
    (no answer: dropped).  UDP: ``answered`` (a reply), ``closed`` (port unreachable came back:
    it got through), ``silent`` (no answer: dropped, or a listener that ignores the probe).
    """
    if proto == "tcp":
        return (f"out=$(timeout {REACH_TIMEOUT} bash -c {shlex.quote(f'exec 3<>/dev/tcp/{address}/{int(port)} && echo open')}"
                " 2>&1); rc=$?; if [ $rc = 124 ]; then echo silent; elif [ \"$out\" = open ]; then echo open; "
                "else case \"$out\" in *refused*) echo closed;; *) echo \"error: $out\";; esac; fi")
    script = (f"exec 3<>/dev/udp/{address}/{int(port)} && printf homelab >&3 && read -r -t {REACH_TIMEOUT} -n 1 x <&3 "
              "&& echo answered")
    return (f"out=$(timeout {REACH_TIMEOUT + 1} bash -c {shlex.quote(script)} 2>&1); rc=$?; "
            "case \"$out\" in *answered*) echo answered;; *refused*) echo closed;; *) "
            "if [ $rc -gt 128 ] || [ $rc = 124 ] || [ $rc = 1 ]; then echo silent; else echo \"error: $out\"; fi;; esac")


def reach_verdict(proto: str, word: str, expect: str) -> tuple[str, str]:
    """("pass" | "fail" | "unknown", what was seen) for a probe's word and the expected "accept" / "refuse"."""
    word = word.strip()
    through = word in ("open", "closed", "answered")
    if word.startswith("error") or word not in ("open", "closed", "answered", "silent"):
        return "fail", f"the probe itself failed: {word!r}"
    seen = {"open": "connected", "closed": "refused by the host (it got through the firewall)",
            "answered": "answered", "silent": "no answer (dropped)"}[word]
    if expect == "refuse":
        return ("fail" if through else "pass"), seen
    if through:
        return "pass", seen
    # UDP: a listener that ignores a stray datagram looks like a drop; say so rather than guess
    return ("unknown" if proto == "udp" else "fail"), seen


# ---------------------------------------------------------------- firewall


def firewall_matches(listing: str, rule: str, match: str) -> bool:
    lines = [" ".join(line.split()) for line in listing.splitlines()]
    if match == "line":
        return " ".join(rule.split()) in lines
    if match == "regex":
        pattern = re.compile(rule)
        return any(pattern.search(line) for line in lines)
    raise ValueError(f"unknown match {match!r}")


# ---------------------------------------------------------------- names from /etc/hosts, container images


def hosts_command(name: str) -> str:
    """What the host's own files (/etc/hosts, not DNS) answer for ``name``: glibc's getent, files only."""
    return f"getent -s files hosts {shlex.quote(name)}; true"


def hosts_addresses(text: str) -> list[str]:
    """The addresses ``getent hosts`` printed, in the order a client tries them."""
    return [line.split()[0] for line in text.splitlines() if line.split()]


def images_command(namespace: str) -> str:
    """The images containerd holds in ``namespace`` (``ctr`` comes with NixOS's containerd module)."""
    return f"ctr --namespace {shlex.quote(namespace)} images list --quiet 2>&1"


def listed_images(text: str) -> set[str]:
    return {line.strip() for line in text.splitlines() if line.strip()}


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
