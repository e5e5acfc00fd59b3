"""homelab.shapes: a file compiled from an earlier file's code of the same shape is exactly what compile() makes of it
(every attribute of the code, every position, every constant with its type), and a file that is not certainly the
same is compiled by compile() (its error is compile's).  Random host.py texts (hypothesis) in pairs of one skeleton
with different literals, edge cases of constant folding and of constants the compiler shares, and whole loads."""

from __future__ import annotations

import ast
import random
import string
import sys
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homelab import load, shapes

ATTRS = ("co_code", "co_names", "co_varnames", "co_cellvars", "co_freevars", "co_filename", "co_name", "co_qualname",
         "co_firstlineno", "co_linetable", "co_exceptiontable", "co_flags", "co_stacksize", "co_argcount",
         "co_posonlyargcount", "co_kwonlyargcount", "co_nlocals")


def const_form(c):
    t = type(c)
    if t is tuple:
        return (t, tuple(const_form(x) for x in c))
    if t is frozenset:
        return (t, frozenset(const_form(x) for x in c))
    if hasattr(c, "co_code"):
        return (t, code_form(c))
    if t is str:  # and whether it is the interned one (compile() interns the strings that look like names)
        return (t, c, sys.intern("".join(list(c))) is c)
    return (t, repr(c))


def code_form(c) -> tuple:
    """Everything of a code object that running it or a traceback of it can show."""
    return tuple(getattr(c, a) for a in ATTRS) + (tuple(c.co_positions()), tuple(const_form(x) for x in c.co_consts))


def outcome(source: bytes, name: str, fast: bool):
    try:
        code = shapes.compile_source(source, name) if fast else compile(source, name, "exec", dont_inherit=True)
    except SyntaxError as e:  # noqa: PERF203
        return ("error", type(e), e.msg, e.lineno, e.offset, e.end_lineno, e.end_offset, e.text)
    except (ValueError, OverflowError) as e:
        return ("error", type(e), str(e))
    return ("code", code_form(code))


class Counted:
    """shapes' compile() counted (each call is a file compiled, not made from its shape)."""

    def __enter__(self):
        self.calls = 0

        def counting(*args, **kwargs):
            self.calls += 1
            return compile(*args, **kwargs)

        shapes.compile = counting
        shapes.reset()
        return self

    def __exit__(self, *exc):
        del shapes.compile
        shapes.reset()


def warned(source: bytes, name: str, fast: bool):
    """outcome(), and the warnings compiling it gave (SyntaxWarning: a call of a literal, ...)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = outcome(source, name, fast)
    return out, [(w.category, str(w.message), w.filename, w.lineno) for w in caught]


def same_as_compile(texts: list[str]) -> int:
    """Compile ``texts`` in order with a fresh shape table; each must be exactly compile()'s, with compile()'s
    warnings.  How many were made from a shape (not compiled)."""
    with Counted() as counted:
        for i, text in enumerate(texts):
            src = text.encode()
            name = f"/lab/hosts/h{i}/host.py"
            assert warned(src, name, True) == warned(src, name, False), text
    return len(texts) - counted.calls


# --- random texts: a skeleton with holes for literals, filled twice -------------------------------------------------

STRS = ["", "a", "b", "ab", "ba", "x", "host", "hostname", "roles", "*", "0", "#", "a#b", "é", "日本", "'", '"', "\\",
        "a\nb", "lan", "wan", "n0001", "n0002", "10.0.0.1", "10.0.0.2", " ", "\t", "a'b", 'a"b', "''", "__doc__"]
INTS = [0, 1, 2, 7, 10, 22, 80, 443, 31080, 1048576, 10**17, 10**18, 10**19]
STYLES = ["'{}'", '"{}"', "'''{}'''", '"""{}"""', "r'{}'", "b'{}'", "f'{}'", "u'{}'", "repr"]
INT_STYLES = ["{}", "{}", "{}", "0x{:x}", "{}.0", "{}j", "0{}", "{}_0"]


def render_str(v: str, style: str) -> str:
    if style != "repr":
        text = style.format(v)
        try:
            if style[0] not in "bf" and ast.literal_eval(text) == v:
                return text
        except (SyntaxError, ValueError):
            pass
        if style[0] in "bf":
            try:
                ast.parse(text)
                return text
            except SyntaxError:
                pass
    return repr(v)


def render_int(v: int, style: str) -> str:
    return style.format(v)


@st.composite
def skeletons(draw):
    """A host.py-like text as a list of pieces: str (code) or ("s"|"n", style) (a hole)."""
    names = st.sampled_from(["host", "Host", "Worker", "x", "hostname", "roles", "a", "IPv4Address", "d", "print"])

    def expr(depth: int) -> list:
        kinds = ["lit", "lit", "name", "const"] + (["call", "tuple", "list", "dict", "set", "op", "neg", "sub",
                                                     "concat", "attr", "callit"] if depth < 3 else [])
        k = draw(st.sampled_from(kinds))
        if k == "lit":
            if draw(st.booleans()):
                return [("s", draw(st.sampled_from(STYLES)))]
            return [("n", draw(st.sampled_from(INT_STYLES)))]
        if k == "name":
            return [draw(names)]
        if k == "const":
            return [draw(st.sampled_from(["None", "True", "False", "..."]))]
        if k == "call":
            out = [draw(names), "("]
            for j in range(draw(st.integers(0, 3))):
                if draw(st.booleans()):
                    out += [draw(names), "="]
                out += expr(depth + 1) + [", " if draw(st.booleans()) else ",\n    "]
            return out + [")"]
        if k in ("tuple", "list", "set"):
            o, c = {"tuple": "()", "list": "[]", "set": "{}"}[k]
            out = [o]
            n = draw(st.integers(1 if k == "set" else 0, 3))
            for j in range(n):
                out += expr(depth + 1) + [", "]
            return out + [c]
        if k == "dict":
            out = ["{"]
            for j in range(draw(st.integers(0, 3))):
                out += expr(depth + 1) + [": "] + expr(depth + 1) + [", "]
            return out + ["}"]
        if k == "op":
            return expr(depth + 1) + [draw(st.sampled_from([" + ", " * ", " % ", " == ", " - ", " in "]))] \
                + expr(depth + 1)
        if k == "neg":
            return ["-"] + expr(depth + 1)
        if k == "sub":
            return expr(depth + 1) + ["["] + expr(depth + 1) + ["]"]
        if k == "concat":
            return [("s", draw(st.sampled_from(STYLES))), draw(st.sampled_from([" ", "", "\n  "])),
                    ("s", draw(st.sampled_from(STYLES)))]
        if k == "attr":
            return expr(depth + 1) + [".", draw(names)]
        return ["("] + expr(depth + 1) + [")("] + expr(depth + 1) + [")"]

    pieces: list = []
    if draw(st.booleans()):
        pieces += [("s", draw(st.sampled_from(['"""{}"""', "'{}'", "repr"]))), "\n"]
    for i in range(draw(st.integers(1, 6))):
        k = draw(st.sampled_from(["assign", "assign", "annotated", "import", "bare", "if", "comment", "call"]))
        if k == "assign":
            pieces += [draw(names), " = "] + expr(0) + ["\n"]
        elif k == "annotated":
            pieces += [draw(names), ": ", draw(names), " = "] + expr(0) + ["\n"]
        elif k == "import":
            pieces += [draw(st.sampled_from(["from homelab import *\n", "from ipaddress import IPv4Address\n",
                                             "import os\n", "from . import x\n", "from __future__ import annotations\n"]))]
        elif k == "bare":
            pieces += expr(0) + ["\n"]
        elif k == "if":
            pieces += ["if "] + expr(1) + [":\n    ", draw(names), " = "] + expr(1) + ["\n"]
        elif k == "comment":
            pieces += [draw(st.sampled_from(["# a comment\n", "# it's 'quoted' #1\n", "x = 1  # tail 'q\n"]))]
        else:
            pieces += expr(0) + ["  # after\n" if draw(st.booleans()) else "\n"]
    return pieces


def fill(pieces: list, values: list) -> str:
    out = []
    it = iter(values)
    for p in pieces:
        if isinstance(p, str):
            out.append(p)
        elif p[0] == "s":
            out.append(render_str(next(it), p[1]))
        else:
            out.append(render_int(next(it), p[1]))
    return "".join(out)


def holes(pieces: list) -> list:
    return [p[0] for p in pieces if not isinstance(p, str)]


def like(v, rnd: random.Random):
    """A value of the same kind and length as ``v`` (so that the file keeps its shape), often another one."""
    if isinstance(v, int):
        s = str(v)
        return int(rnd.choice("123456789") + "".join(rnd.choice(string.digits) for _ in s[1:])) if v else rnd.choice(
            [0, 1, 5])
    return "".join(rnd.choice("abxy") if c in string.ascii_letters else c for c in v)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(skeletons(), st.data())
def test_random_texts_compile_the_same(pieces, data):
    kinds = holes(pieces)
    first = [data.draw(st.sampled_from(STRS) if k == "s" else st.sampled_from(INTS)) for k in kinds]
    rnd = random.Random(data.draw(st.integers(0, 2**32)))
    second = [like(v, rnd) for v in first]
    third = [data.draw(st.sampled_from(STRS) if k == "s" else st.sampled_from(INTS)) for k in kinds]
    same_as_compile([fill(pieces, first), fill(pieces, second), fill(pieces, third), fill(pieces, first)])


# --- what homelab and its users write: one compile per shape ----------------------------------------------------

BENCH = ("# Generated by bench/bench.py: a synthetic host for the benchmark.\n"
         "from ipaddress import IPv4Address, IPv4Interface, IPv4Network\nfrom homelab import *\n\n"
         "host = Host(hostname='{name}', system='x86_64-linux', interface='enp1s0', address=IPv4Address('{ip}'), "
         "roles=(Worker(), IngressProxy(http_nodeport=31080, https_nodeport=31443, clients=('lan', 'tailnet')), "
         "CephStorage(containerd_nofile=1048576, disks=('/dev/sda',))), options={{'services.openssh.enable': True}}, "
         "description='synthetic mini PC #{n}', labels={{}})\n")


def test_bench_style_files_compiled_once_per_shape():
    texts = [BENCH.format(name=f"n{i:04d}", ip=f"192.168.0.{10 + i % 190}", n=10 + i % 90) for i in range(200)]
    assert same_as_compile(texts) == 198  # two shapes: addresses of 2 and of 3 digits


def test_seed_host_copied_to_a_new_host_is_made_from_its_shape():
    seed = Path(load.__file__).parent / "examples" / "seed" / "hosts"
    text = (seed / "tokiwa" / "host.py").read_text()
    copy = text.replace("tokiwa", "kasumi").replace("10.11", "10.13").replace("0.11", "0.13").replace(":11", ":13")
    assert copy != text
    assert same_as_compile([text, copy]) == 1
    starter = Path(load.__file__).parent / "examples" / "starter" / "hosts" / "worker1" / "host.py"
    w1 = starter.read_text()
    assert same_as_compile([w1, w1.replace("worker1", "worker2")]) == 1


# --- edge cases: each a file of a shape made first, then files of the same shape --------------------------------

EDGES = [
    # constant folding: the value of the result is not a literal's
    ["x = (1, 1)[1]\n", "x = (5, 5)[5]\n", "x = (2, 2)[0]\n"],
    ["x = -1\n", "x = -5\n"],
    ["x = 'a' 'b'\n", "x = 'c' 'd'\n", "x = 'ab' 'ab'\n"],
    ["x = 'ab' \\\n 'cd'\ny = 'abcd'\n", "x = 'ab' \\\n 'cd'\ny = 'abce'\n"],
    ["x = 2 * 2\ny = 4\nz = 2\n", "x = 3 * 3\ny = 4\nz = 3\n"],
    ["x = 2 + 2\ny = 4\nz = 2\n", "x = 3 + 3\ny = 4\nz = 3\n"],
    ["x = 'a' % 'b'\ny = 'a'\n", "x = 'c' % 'd'\ny = 'c'\n"],
    ["if 0:\n    x = 1\n", "if 1:\n    x = 1\n"],
    ["x = 1 in [1, 2]\n", "x = 3 in [3, 4]\n"],
    ["x = 'abc'[0]\n", "x = 'xyz'[1]\n"],
    # constants the compiler makes from names: a literal equal to one is shared with it
    ["from homelab import *\nx = 0\n", "from homelab import *\nx = 5\n", "from homelab import *\nx = 0\n"],
    ["host = Host(hostname='hostname')\n", "host = Host(hostname='aaaaname')\n", "host = Host(hostname='hostname')\n"],
    ["x: int = 'x'\n", "x: int = 'y'\n", "x: int = 'x'\n"],
    ["from homelab import *\nx = '*'\n", "from homelab import *\nx = 'a'\n", "from homelab import *\nx = '*'\n"],
    ["from __future__ import annotations\nx: Literal['a'] = 1\n", "from __future__ import annotations\nx: Literal['b'] = 1\n"],
    ["from __future__ import annotations\nx: Literal['a'] = 'a'\n",
     "from __future__ import annotations\nx: Literal['b'] = 'b'\n"],
    # ... and a later file's literal equal to one (the first file's were not)
    ["from homelab import *\nx = 5\n", "from homelab import *\nx = 0\n"],
    ["x: int = 'y'\n", "x: int = 'x'\n"],
    ["host = Host(hostname='aaaaname')\n", "host = Host(hostname='hostname')\n"],
    # equal literals share a constant: the files must agree on which are equal
    ["x = ('a', 'a')\n", "x = ('a', 'b')\n", "x = ('b', 'b')\n", "x = ('c', 'c')\n"],
    ["x = ('a', 'b')\n", "x = ('c', 'c')\n", "x = ('d', 'e')\n"],
    ["x = 1\ny = True\n", "x = 2\ny = True\n", "x = 1\ny = True\n"],
    ["x = {'a': 1, 'a': 2}\n", "x = {'a': 1, 'b': 2}\n"],
    ["x = {1, 1, 2}\n", "x = {3, 3, 4}\n", "x = {3, 4, 4}\n"],
    # the docstring, a bare literal statement (dropped), comments with quotes, strings with '#'
    ['"""doc a"""\nx = 1\n', '"""doc b"""\nx = 2\n'],
    ["x = 1\n'dropped'\ny = 2\n", "x = 3\n'dropped'\ny = 4\n"],
    ["x = '#'  # it's\ny = \"'\"\n", "x = '!'  # it's\ny = \"-\"\n"],
    # strings: prefixes, escapes, unicode (columns are byte offsets), line breaks in triple quotes
    ["x = r'a\\b'\n", "x = r'c\\d'\n"],
    ["x = 'é'; y = f(1)\n", "x = 'ab'; y = f(1)\n", "x = 'ée'; y = f(1)\n"],
    ["x = ('é', f(1))\n", "x = ('ab', f(1))\n"],
    ["x = ('é', f(1))\n", "x = ('a', f(1))\n", "x = ('b', f(1))\n"],  # as many characters, not as many bytes
    ["x = '''a\nb'''\ny = z(1)\n", "x = '''c\nd'''\ny = z(1)\n"],
    ["x = '\\n'\n", "x = '\\t'\n"],
    # numbers: other notations, too many digits
    ["x = 0x10\n", "x = 0x20\n"],
    ["x = 1_000\n", "x = 2_000\n"],
    ["x = 1.5\n", "x = 2.5\n"],
    ["x = " + "9" * 5000 + "\n", "x = " + "8" * 5000 + "\n"],
    ["x = 1\n", "x = 01\n"],
    # calls, subscripts and attributes of literals (compile-time warnings), ==, :=
    ["x = 'a'(1)\n", "x = 'b'(2)\n"],
    ["x = [1, 2]['a']\n", "x = [3, 4]['b']\n"],
    ["x = 'a'.upper()\n", "x = 'b'.upper()\n"],
    ["host = None[7]\n", "host = None[8]\n"],  # found by hypothesis: compile() warns
    ["host = True(7)\n", "host = True(8)\n"],
    ["host = ...[7]\n", "host = ...[8]\n"],
    ["x = y == 1\n", "x = y == 2\n"],
    ["x = (y := 1)\n", "x = (y := 2)\n"],
    # syntax errors: the same error, the same place
    ["x = (1, 2\n", "x = (3, 4\n"],
    ["host = Host(hostname='a', hostname='b')\n", "host = Host(hostname='c', hostname='d')\n"],
    ["x = 'abc\n", "x = 'abd\n"],
    ["x = 1 2\n", "x = 3 4\n"],
    ["x = 'a' = 1\n", "x = 'b' = 2\n"],
    ["x = 1\n\0y = 2\n", "x = 3\n\0y = 4\n"],
    ["# -*- coding: latin-1 -*-\nx = 'a'\n", "# -*- coding: latin-1 -*-\nx = 'b'\n"],
    ["\ufeffx = 'a'\n", "\ufeffx = 'b'\n"],
    ["x = 'a'\r\ny = 1\r\n", "x = 'b'\r\ny = 2\r\n", "x = 'b'\ny = 2\n"],
    ["def f():\n    return 'a'\nx = f()\n", "def f():\n    return 'b'\nx = f()\n"],
    ["x = [i for i in (1, 2)]\n", "x = [i for i in (3, 4)]\n"],
]


@pytest.mark.parametrize("texts", EDGES, ids=[t[0][:30] for t in EDGES])
def test_edge_cases_compile_the_same(texts):
    same_as_compile(texts)


def test_made_files_really_are_made():
    """The fast way is taken where it is safe (else the tests above would prove nothing)."""
    assert same_as_compile(["x = ('a', 'b')\n", "x = ('c', 'd')\n", "x = ('e', 'f')\n"]) == 2
    assert same_as_compile(["from homelab import *\nhost = Host(hostname='aa', roles=[Worker(port=1)])  # x\n",
                            "from homelab import *\nhost = Host(hostname='bb', roles=[Worker(port=2)])  # yy\n"]) == 1
    assert same_as_compile(["x = 'é'; y = f(1)\n", "x = 'ée'; y = f(1)\n"]) == 0  # 2 bytes and 3: not one shape
    assert same_as_compile(["x = 1 in [1, 2]\n", "x = 3 in [3, 4]\n"]) == 0


def test_files_of_their_own_shapes_stop_the_looking():
    """After GIVE_UP files of which fewer than a quarter were made from a shape, every file is compiled (and still
    the same); a new lab (reset) looks again."""
    own = [f"x{i} = 'a'\n" + "y = 1\n" * i for i in range(shapes.GIVE_UP)]
    alike = ["x = ('a', 'b')\n", "x = ('c', 'd')\n"]
    assert same_as_compile(own + alike) == 0
    assert same_as_compile(own[:shapes.GIVE_UP - 2] + alike) == 1


# --- whole files run: the same namespace, the same problems with the same lines ---------------------------------

RUN = [
    "from homelab import *\nhost = Host(hostname='{h}', system='x86_64-linux', interface='eth0',\n"
    "    address='192.168.1.{n}/24', roles=[Worker()])\n",
    "from homelab import *\nhost = Host(hostname='{h}', system='x86_64-linux', interface='eth0',\n"
    "    address='192.168.1.{n}/24', frob={n})\n",
    "from homelab import *\nx = 1\nhost = Host(hostname='{h}', system='x86_64-linux', interface='eth0',\n"
    "    address='192.168.1.{n}/24', roles=[Worker(nope='{h}')])\n",
    "from homelab import *\n\n\nhost = Host(hostname='{h}', system='x86_64-linux', interface='eth0',\n"
    "    address='192.168.1.{n}/99', roles=[])\n",
    "from homelab import *\nhost = int('{h}')\n",
    "from homelab import *\nhost = Host(hostname='{h}', system='x86_64-linux', interface='eth0',\n"
    "    address=IPv4Address('192.168.1.{n}'), tailscale_address=open('/nonexistent/{h}'))\n",
    "from homelab import *\nexit({n})\n",
]


@pytest.mark.parametrize("template", RUN, ids=range(len(RUN)))
def test_runs_give_the_same_hosts_and_problems(tmp_path, template):
    paths = []
    for i, (h, n) in enumerate([("aa", 10), ("bb", 11), ("cc", 12), ("dd", 99)]):
        p = tmp_path / h / "host.py"
        p.parent.mkdir()
        p.write_text(template.format(h=h, n=n))
        paths.append(p)
    with Counted() as counted:
        fast = [load._run(p, f"hosts/{p.parent.name}", shapes.compile_source(p.read_bytes(), str(p))) for p in paths]
    assert counted.calls == 1  # one compile, three made from its shape
    slow = [load._run(p, f"hosts/{p.parent.name}", compile(p.read_bytes(), str(p), "exec", dont_inherit=True))
            for p in paths]
    for (fns, fps), (sns, sps) in zip(fast, slow):
        assert fps == sps
        assert {k: v for k, v in fns.items() if k != "__builtins__"} == \
            {k: v for k, v in sns.items() if k != "__builtins__"}
