"""The DNS host's generated Corefile: does it answer exactly the lab's zone, each client with its own address?

Which server block serves a query (CoreDNS 1.14.3, ``core/dnsserver/server.go`` and
``plugin/view``): the blocks of the root zone on the port are tried in the Corefile's
order, and the first whose ``view`` expressions all evaluate true serves it (a block
without a view always does); none: REFUSED.  The expressions homelab writes are
``incidr(client_ip(), 'CIDR')`` terms joined by ``||``, run here with Python's
``ipaddress`` (``client_ip()`` is the bare client address, ``incidr`` parses the CIDR
as Go's ``net.ParseCIDR``); any other expression fails the proof.  The block's ``acl``
(``plugin/acl``): the first rule whose networks hold the client decides.

The Corefile is ``services.coredns.config`` as nix evaluated it from the
generated files.  It is tokenised the way CoreDNS's Corefile lexer does
(coredns/caddy ``caddyfile/lexer.go``: whitespace separates tokens, ``#``
starts a comment, inside double quotes only ``\\"`` is an escape and every
other backslash is kept).  The ``template`` plugin's behaviour that matters
here (coredns ``plugin/template/template.go`` and its README):

* the query name it looks at is ``state.Name()``: the question name, fully
  qualified, lower-cased;
* a template only sees names inside its ZONE arguments (``plugin.Zones.Matches``,
  label-wise: the zone itself or a name ending in ``.<zone>``);
* each ``match`` regex is a Go ``regexp`` tried with ``MatchString``: a search,
  anchored only by the pattern's own ``^``/``$``;
* the ``answer`` is a Go text/template executed with ``.Name`` = that name, and
  the result is parsed as one zone-file record (``dns.NewRR``).

The regex is run here with Python's ``re``.  That is sound only because the
pattern is checked to use nothing but what RE2 and Python read alike: literal
characters, ``\\.``, ``.``, groups, ``?``/``*``/``+``, ``|``, a leading ``^`` and a
trailing ``$``.  The one difference among those is ``$``: RE2 (without the
``m`` flag) matches it only at the very end of the text, while Python's ``$``
also matches before a final newline.  So the trailing ``$`` is run as
Python's ``\\Z``.

A real CoreDNS binary is not used: Debian 12 has no ``coredns`` package
(``apt-cache policy coredns`` shows no candidate), and the project does not
download binaries from elsewhere.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Mapping

from ...errors import ProofFailed


# ---------------------------------------------------------------- Corefile lexer


def corefile_tokens(text: str) -> list[tuple[str, int]]:
    """(token, line) pairs, following the lexer's rules for quotes, escapes and comments."""
    out: list[tuple[str, int]] = []
    val: list[str] = []
    line, start = 1, 1
    quoted = escaped = comment = False
    started = False  # a token is open (a quoted "" is an empty token, still a token)
    for ch in text:
        if quoted:
            if not escaped:
                if ch == "\\":
                    escaped = True
                    continue
                if ch == '"':
                    quoted = False
                    out.append(("".join(val), start))
                    val, started = [], False
                    continue
            if ch == "\n":
                line += 1
            if escaped and ch != '"':
                val.append("\\")  # only a quote is escaped; the backslash stays
            val.append(ch)
            escaped = False
            continue
        if ch.isspace():
            if ch == "\n":
                comment = False
            if started:
                out.append(("".join(val), start))
                val, started = [], False
            if ch == "\n":
                line += 1
            continue
        if ch == "#" and not started:
            comment = True
        if comment:
            continue
        if not started:
            started, start = True, line
            if ch == '"':
                quoted = True
                continue
        val.append(ch)
    if started:
        out.append(("".join(val), start))
    return out


def template_blocks(corefile: str | list[tuple[str, int]]) -> list[dict[str, list[list[str]]]]:
    """Every ``template`` directive, in order: {'args': [[...]], 'match': [[...]], 'answer': [[...]], ...}.

    ``corefile``: the text, or the tokens of one server block."""
    toks = corefile_tokens(corefile) if isinstance(corefile, str) else corefile
    blocks = []
    for i in [i for i, (t, _) in enumerate(toks) if t == "template"]:
        head_line = toks[i][1]
        args = []
        i += 1
        while toks[i][0] != "{":
            if toks[i][1] != head_line:
                raise ProofFailed("template arguments must be on the directive's line")
            args.append(toks[i][0])
            i += 1
        block: dict[str, list[list[str]]] = {"args": [args]}
        i += 1
        while toks[i][0] != "}":
            name, ln = toks[i]
            i += 1
            vals = []
            while toks[i][1] == ln and toks[i][0] != "}":
                vals.append(toks[i][0])
                i += 1
            block.setdefault(name, []).append(vals)
        blocks.append(block)
    return blocks


def template_block(corefile: str) -> dict[str, list[list[str]]]:
    """The first ``template`` directive (the one answering A queries)."""
    blocks = template_blocks(corefile)
    if not blocks:
        raise ProofFailed("the Corefile has no template directive")
    return blocks[0]


def _directive_block(toks: list[tuple[str, int]], i: int) -> tuple[list[str], list[list[str]], int]:
    """The directive at ``toks[i]``: its arguments (on its line), the lines of its ``{ }`` block, and the index
    after it."""
    line = toks[i][1]
    args, i = [], i + 1
    while i < len(toks) and toks[i][1] == line and toks[i][0] != "{":
        args.append(toks[i][0])
        i += 1
    lines: list[list[str]] = []
    if i < len(toks) and toks[i][0] == "{" and toks[i][1] == line:
        i += 1
        while toks[i][0] != "}":
            ln, vals = toks[i][1], []
            while toks[i][1] == ln and toks[i][0] != "}":
                vals.append(toks[i][0])
                i += 1
            lines.append(vals)
        i += 1
    return args, lines, i


def server_blocks(corefile: str) -> list[dict]:
    """The Corefile's server blocks, in order, as CoreDNS sets them up (``core/dnsserver``).

    Each is ``{"keys": [".:53"], "views": [expression, ...], "acl": [(action, [nets])], "tokens": [...]}``:
    a view's ``expr`` arguments joined by one space (the view plugin's ``strings.Join(args, " ")``), the
    acl's ``allow net``/``block`` lines, and the block's own tokens (for its templates).
    """
    toks = corefile_tokens(corefile)
    out, i = [], 0
    while i < len(toks):
        line, keys = toks[i][1], []
        while i < len(toks) and toks[i][1] == line and toks[i][0] != "{":
            keys.append(toks[i][0])
            i += 1
        if i >= len(toks) or toks[i][0] != "{":
            raise ProofFailed(f"line {line}: a server block must open with '{{' after its keys {keys}")
        i += 1
        start, depth = i, 1
        while depth:
            if i >= len(toks):
                raise ProofFailed(f"the server block {keys} is not closed")
            depth += {"{": 1, "}": -1}.get(toks[i][0], 0)
            i += 1
        body = toks[start:i - 1]
        block: dict = {"keys": keys, "views": [], "acl": [], "tokens": body}
        j = 0
        while j < len(body):
            name = body[j][0]
            args, lines, j = _directive_block(body, j)
            if name == "view":
                if len(args) != 1:
                    raise ProofFailed(f"view takes one name, got {args}")
                for ln in lines:
                    if not ln or ln[0] != "expr":
                        raise ProofFailed(f"view {args[0]}: unknown property {ln[:1]}")
                    block["views"].append(" ".join(ln[1:]))
            elif name == "acl":
                for ln in lines:
                    if ln[:2] == ["allow", "net"] or ln[:2] == ["block", "net"]:
                        block["acl"].append((ln[0], ln[2:]))
                    elif ln in (["allow"], ["block"]):
                        block["acl"].append((ln[0], ["0.0.0.0/0", "::/0"]))
                    else:
                        raise ProofFailed(f"acl line {ln} is outside what this proof models")
        out.append(block)
    return out


_INCIDR = re.compile(r"incidr\(client_ip\(\), '([0-9A-Fa-f.:/]+)'\)")


def view_passes(expression: str, client: str) -> bool:
    """A view expression, for a client address: the one form homelab writes (``incidr(client_ip(), 'CIDR')``
    terms joined by ``||``), run as expr-lang does; anything else fails the proof.  ``client_ip()`` is the
    bare address in CoreDNS 1.14.3 (``plugin/pkg/expression``); ``incidr`` parses the CIDR as Go's
    ``net.ParseCIDR`` (host bits allowed)."""
    terms = expression.split(" || ")
    ip = ipaddress.ip_address(client)
    result = False
    for term in terms:
        m = _INCIDR.fullmatch(term)
        if not m:
            raise ProofFailed(f"view expression {expression!r}: {term!r} is outside what this proof models")
        net = ipaddress.ip_network(m.group(1), strict=False)
        result = result or (ip.version == net.version and ip in net)
    return result


def serving_block(blocks: list[dict], client: str, port: int) -> dict | None:
    """The server block CoreDNS routes a query from ``client`` to (``server.go``): the blocks of the root zone
    on the port, in the Corefile's order, the first whose views all pass; None: REFUSED."""
    for b in blocks:
        if b["keys"] != [f".:{port}"]:
            continue
        if all(view_passes(v, client) for v in b["views"]):
            return b
    return None


def acl_allows(block: dict, client: str) -> bool:
    """The acl plugin: the first rule whose networks hold the client decides; no rule at all lets it through."""
    ip = ipaddress.ip_address(client)
    for action, nets in block["acl"]:
        if any(ip.version == n.version and ip in n for n in (ipaddress.ip_network(x, strict=False) for x in nets)):
            return action == "allow"
    return not block["acl"]


# ---------------------------------------------------------------- regex (RE2 ∩ Python)

_SHARED = re.compile(r"\\[.\-]|[A-Za-z0-9_-]|[().?*+|]")


def python_pattern(re2: str) -> str:
    """The same regex for Python's ``re``; fails when it uses anything outside the shared subset."""
    body = re2
    head = tail = ""
    if body.startswith("^"):
        head, body = "^", body[1:]
    if body.endswith("$") and not body.endswith("\\$"):
        tail, body = r"\Z", body[:-1]
    pos = 0
    while pos < len(body):
        m = _SHARED.match(body, pos)
        if not m:
            raise ProofFailed(f"{re2!r}: {body[pos:]!r} is outside the RE2/Python shared subset this proof knows")
        if body.startswith("(?", pos):
            raise ProofFailed(f"{re2!r}: group flags/names are not checked here")
        pos = m.end()
    return head + body + tail


# ---------------------------------------------------------------- the template, applied


def in_zone(name: str, zones: list[str]) -> bool:
    for z in zones:
        z = z.lower().rstrip(".") + "."
        if name == z or name.endswith("." + z):
            return True
    return False


def resolve(qname: str, qtype: str, blocks: list[dict], *, zone_scope: bool = True) -> tuple[str, str | None]:
    """What CoreDNS's template plugin does with a query: ("answer", record), ("empty", rcode) or ("next", None).

    The templates are tried in order (``template.go``'s ServeDNS): one whose zone, class or type does
    not fit is skipped; one whose regex matches answers (its ``answer`` record, or only its ``rcode``);
    one whose regex does not match passes the query on when it has ``fallthrough``, and otherwise
    answers NXDOMAIN.  "next" means the query goes on to the next plugin (``forward``).
    """
    name = qname.lower()
    for block in blocks:
        cls, btype, *zones = block["args"][0]
        if cls != "IN":
            raise ProofFailed(f"template class {cls}: only IN is modelled")
        if zone_scope and not in_zone(name, zones):
            continue
        if btype not in ("ANY", qtype):
            continue
        patterns = [python_pattern(args[0]) for args in block.get("match", [])]
        if not any(re.search(p, name) for p in patterns):
            if block.get("fallthrough") != [[]]:
                return "empty", "NXDOMAIN"
            continue
        if "answer" not in block:
            (rcode,) = block.get("rcode", [["NOERROR"]])[0]
            return "empty", rcode
        (answer,) = block["answer"][0]
        rr, n = re.subn(r"\{\{\s*\.Name\s*\}\}", lambda _: name, answer)
        if n != 1 or "{{" in rr:
            raise ProofFailed(f"answer template uses more than .Name: {answer!r}")
        return "answer", rr
    return "next", None


def answer_for(qname: str, block: dict, *, zone_scope: bool = True) -> str | None:
    """The record one template would answer for an A query of ``qname``, or None."""
    kind, rr = resolve(qname, "A", [block], zone_scope=zone_scope)
    return rr if kind == "answer" else None


def names(zone: str) -> tuple[list[str], list[str]]:
    """Names inside and outside ``zone``, built from it."""
    labels = zone.split(".")
    inside = [f"{zone}.", f"www.{zone}.", f"a.b.c.{zone}.", f"my-app.{zone}.", f"WWW.{zone.upper()}."]
    outside = [
        f"{zone}.evil.net.",  # the zone as a prefix of a foreign name
        f"x{zone}.",  # the zone as a suffix of a longer label
        f"a.x{zone}.",
        zone,  # no final dot
        f"{'.'.join(labels[1:])}.",  # the parent zone
        f"{labels[0]}x{'.'.join(labels[1:])}.",  # a dot replaced by a letter: the regex must escape dots
        f"{zone}x.",
        f"{zone}..",
        f"www.{zone}",  # a subdomain without the final dot
    ]
    return inside, outside


def prove_zone(corefile: str, zone: str, answers: str | Mapping[str, tuple[str, str]], ttl: int,
               forward: list[str], port: int = 53) -> str:
    """The Corefile answers every name in ``zone`` with the address each kind of client can reach, and nothing else.

    ``answers``: client kind -> (an address such a client asks from, the ingress address it must get); a
    bare address means one kind, the host itself asking from 127.0.0.1.  Each client's query is routed to
    its server block as CoreDNS routes it (views, in order), must pass that block's acl, and its templates
    must answer every name in the zone with the client's address.  Other questions about a name in the
    zone (AAAA, MX...) get an empty NOERROR answer, never the upstream resolvers' NXDOMAIN (which would
    tell a client the name does not exist at all); names outside the zone go on to ``forward``.  A client
    from outside the lab (TEST-NET addresses) must be refused.  A summary, or ProofFailed.
    """
    if isinstance(answers, str):
        answers = {"this host": ("127.0.0.1", answers)}
    servers = server_blocks(corefile)
    inside, outside = names(zone)
    told: dict[str, list[str]] = {}
    for kind, (client, address) in answers.items():
        block = serving_block(servers, client, port)
        if block is None:
            raise ProofFailed(f"a {kind} client ({client}) matches no server block on port {port}: REFUSED")
        if not acl_allows(block, client):
            raise ProofFailed(f"a {kind} client ({client}) is refused by the acl of the block it is routed to")
        try:
            _prove_block(block, zone, address, ttl, forward, inside, outside)
        except ProofFailed as e:
            raise ProofFailed(f"a {kind} client ({client}): {e}") from None
        told.setdefault(address, []).append(kind)
    for client in ("203.0.113.7", "2001:db8::7"):  # TEST-NET-3 and the IPv6 documentation range: the world
        block = serving_block(servers, client, port)
        if block is not None and acl_allows(block, client):
            raise ProofFailed(f"a client from outside the lab ({client}) is answered: an open resolver")
    to = "; ".join(f"A {a} to {', '.join(kinds)}" for a, kinds in told.items())
    return (f"{len(inside)} names in {zone} answered {to} (other types: empty NOERROR), {len(outside)} "
            f"look-alikes not; the rest forwarded to {', '.join(map(str, forward))}; the world refused")


def _prove_block(server: dict, zone: str, ingress_address: str, ttl: int, forward: list[str], inside: list[str],
                 outside: list[str]) -> None:
    blocks = template_blocks(server["tokens"])
    block = blocks[0] if blocks else None
    if block is None:
        raise ProofFailed("the Corefile has no template directive")
    cls, qtype, *zones = block["args"][0]
    if (cls, qtype) != ("IN", "A") or [z.rstrip(".").lower() for z in zones] != [zone]:
        raise ProofFailed(f"the template answers {cls} {qtype} in {zones}; the model says IN A in {zone}")
    if len(block.get("match", [])) != 1 or len(block["match"][0]) != 1:
        raise ProofFailed(f"expected one match regex, found {block.get('match')}")
    if block.get("fallthrough") != [[]]:
        raise ProofFailed("names in the zone that do not match must go on to forward (fallthrough)")

    for qname in inside:
        kind, rr = resolve(qname, "A", blocks)
        if kind != "answer":
            raise ProofFailed(f"{qname} is in {zone} but gets no answer")
        owner, rr_ttl, rr_class, rr_type, rdata = rr.split()
        want = (qname.lower(), str(ttl), "IN", "A", str(ingress_address))
        if (owner, rr_ttl, rr_class, rr_type, rdata) != want:
            raise ProofFailed(f"{qname} is answered {rr!r}; the model says {' '.join(want)}")
        for other in ("AAAA", "MX", "TXT"):
            if resolve(qname, other, blocks) != ("empty", "NOERROR"):
                raise ProofFailed(f"{other} {qname} gets {resolve(qname, other, blocks)}; a name in the zone "
                                  "must answer NOERROR with no records, not go upstream")
    for qname in outside:
        # the regex alone must refuse look-alikes: the zone scope is not the only guard
        for qt in ("A", "AAAA"):
            if (resolve(qname, qt, blocks, zone_scope=False) != ("next", None)
                    or resolve(qname, qt, blocks) != ("next", None)):
                raise ProofFailed(f"{qname!r} is outside {zone} but gets an answer to {qt}")

    # what is not templated is forwarded to the model's resolvers
    toks = [t for t, _ in server["tokens"]]
    at = toks.index("forward") if "forward" in toks else -1
    if at < 0 or toks[at + 1] != "." or toks[at + 2:at + 2 + len(forward)] != [str(a) for a in forward]:
        raise ProofFailed(f"other names must be forwarded to {', '.join(map(str, forward))}")
