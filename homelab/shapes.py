"""Compiling many host.py files of one shape once (the same text but for the values of their literals).

``homelab init`` / ``add-host`` write every host.py alike, users copy one host to make the next, and a large lab's
files differ only in their strings and numbers: compiling each (~190 us) redoes the same parse and code generation
thousands of times.  :func:`compile_source` splits a file into its literals and the rest; a file whose rest and whose
literals' kinds and lengths equal an earlier file's (its *shape*) gets that file's code with its own constants put in
(``code.replace``): the same instructions, names, line and column table (every literal has the same length, so every
position is the same), ``co_filename`` its own.

Only what is certainly the same goes this way; anything else is compiled as before (``compile()``), so its code and
its errors are exactly compile's.  A file takes the fast way only when ALL of this holds (else: compile):

- UTF-8 without a BOM, no coding declaration, no NUL, no backslash outside comments;
- its tokens are names, the keywords ``from import as None True False``, the operators ``= ( ) [ ] { } , : .`` and
  ``*`` right after ``import``, comments, and literals of two kinds: decimal integers (``0`` or no leading zero, at
  most 18 digits, no ``_``) and strings without prefix or backslash, on one line (``'..'``, ``".."``, or triple-quoted
  with no line break in them).  So no operator, comparison, condition, loop, def, class, lambda or f-string: the
  compiler's constant folding (``-1``, ``2*3``, ``'a' 'b'``, ``x in [..]``, ``(1, 2)[0]``, ``if 0:``) and its
  value-dependent warnings never apply; adjacent strings (implicit concatenation) and a ``(`` / ``[`` / ``.`` right
  after a literal or a closing bracket also go the slow way;
- the literals of the file and of the file its shape was compiled from correspond one to one (equal values in one
  are equal in the other, as compile's constant table merges them), and the leaf constants of the shape's code are
  exactly its literals' values plus ``None``/``True``/``False``/``...`` (nothing folded, nothing dropped unseen).

Standalone: imports nothing from homelab.
"""

from __future__ import annotations

import re
from types import CodeType

__all__ = ["compile_source", "reset", "MAX_SHAPES", "GIVE_UP"]

MAX_SHAPES = 512  # shapes kept per process (a lab of hand-written files, each its own shape, keeps no more)

# The parts of a file that are not code: comments and literals (strings first: a '#' in one is not a comment, a
# quote in a comment is not a string).  A number is one only where no word character is right before it.
_PART = re.compile(
    "((?=[#'\"0-9])(?:"  # the lookahead: a quick test before the alternatives
    r"#[^\r\n]*"
    r"|'''[^\\\r\n]*?'''"
    r'|"""[^\\\r\n]*?"""'
    r"|'[^'\\\r\n]*'"
    r'|"[^"\\\r\n]*"'
    r"|(?<!\w)[0-9][0-9A-Za-z_.]*))")
_INT = re.compile(r"0|[1-9][0-9]{0,17}")
# what the rest may hold (\x00 and \x01: a literal's start and end, '#': a comment)
_REST = re.compile(r"[\w \t\f\r\n=()\[\]{},:.*#\x00\x01]*")
_BAD = re.compile(
    r"[)\]}\x01][ \t\f\r\n#]*[(\[.]"  # a call, subscript or attribute of a literal or of a display
    r"|[)\]}\x01\w][ \t\f\r\n#]*\x00"  # a literal after a literal (implicit concatenation), a display, a prefix
    r"|\.[ \t\f\r\n#]*\x00n"  # .5
    r"|\b(?:None|True|False)[ \t\f\r\n#]*[(\[]|\.[ \t\f\r\n#]*[(\[]"  # None(..), True[..], ...[..]: a warning
    r"|[=:][ \t\f\r\n#]*="  # == :=
    r"|\bfrom[ \t\f\r\n#]*\."  # a relative import (its level a constant besides 0)
)
_STAR = re.compile(r"\bimport[ \t\f]*\*")
_WORD = re.compile(r"[^\W\d]\w*")
_KEYWORDS = frozenset({"False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
                       "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
                       "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
                       "with", "yield", "match", "case"})
_ALLOWED_KEYWORDS = frozenset({"from", "import", "as", "None", "True", "False"})
_SINGLETONS = frozenset({(type(None), None), (bool, True), (bool, False), (type(Ellipsis), Ellipsis)})

# shape -> (its code, its literals' equality classes (_classes), how to make its constants with other values
# (_recipe, per constant), the constants the rest of the file can make) or None: not reused
_SHAPES: dict[str, tuple[CodeType, list, list, frozenset] | None] = {}
# files looked at and files made from a shape: a process whose files rarely share a shape (hand-written, each its own)
# stops looking after GIVE_UP files (the look costs about a sixth of a compile)
_COUNTS = [0, 0]
GIVE_UP = 64


def reset() -> None:
    """Forget every shape and count (a new lab)."""
    _SHAPES.clear()
    _COUNTS[0] = _COUNTS[1] = 0


def _split(text: str) -> tuple[str, list] | None:
    """(the shape: the text with each comment as '#' and each literal as its kind and length, the literals' values) of
    ``text``, or None: a number not a plain decimal integer."""
    parts = _PART.split(text)
    values: list = []
    for i in range(1, len(parts), 2):
        tok = parts[i]
        c = tok[0]
        if c == "#":
            parts[i] = "#"
            continue
        if c == "'" or c == '"':
            q = 3 if len(tok) >= 6 and tok[1] == c and tok[2] == c else 1
            values.append(tok[q:-q])  # interned, if it looks like a name, by the code object made, as by compile()
            k = "s"
        else:
            if not _INT.fullmatch(tok):
                return None
            values.append(int(tok))
            k = "n"
        parts[i] = "\x00" + k + str(len(tok) if tok.isascii() else len(tok.encode())) + "\x01"
    return "".join(parts), values


def _words(shape: str) -> set | None:
    """The words of a shape (the names it uses), or None: a shape not reused (see the module's rules)."""
    if not _REST.fullmatch(shape) or _BAD.search(shape) or shape.count("*") != len(_STAR.findall(shape)):
        return None
    words = set(_WORD.findall(shape))
    if not words.isdisjoint(_KEYWORDS - _ALLOWED_KEYWORDS):
        return None
    return words


def _key(v) -> tuple:
    return (type(v), v)


def _leaves(consts: tuple, into: set) -> bool:
    """Add the leaf constants of ``consts`` (into tuples and frozensets) to ``into``; False: one of a kind not known."""
    for c in consts:
        t = type(c)
        if t is tuple or t is frozenset:
            if not _leaves(tuple(c), into):
                return False
        elif t is str or t is int or c is None or c is True or c is False or c is Ellipsis:
            into.add((t, c))
        else:  # a code object, a float, bytes, a slice ...: not a shape this module reuses
            return False
    return True


def _classes(values: list) -> tuple[list, dict]:
    """Which literals are equal, as compile()'s constant table merges them: per literal, the number of its value's
    key (type and value) in order of first appearance; and those keys in that order."""
    first: dict = {}
    return [first.setdefault((type(v), v), len(first)) for v in values], first


def _recipe(consts: tuple, number: dict):
    """How to make ``consts`` with other values: None (keep it: no literal in it), ('v', n) (the value of key number
    n), (type, [recipe or ('k', constant) per item]) for a tuple or frozenset holding literals."""
    out = []
    changed = False
    for c in consts:
        t = type(c)
        if t is tuple or t is frozenset:
            r = _recipe(tuple(c), number)
            if r is not None:
                out.append((t, r))
                changed = True
                continue
        elif (t, c) in number:
            out.append(("v", number[(t, c)]))
            changed = True
            continue
        out.append(("k", c))
    return out if changed else None


def _make(recipe: list, new: list) -> tuple:
    out = []
    for kind, x in recipe:
        if kind == "k":
            out.append(x)
        elif kind == "v":
            out.append(new[x])
        elif kind is tuple:
            out.append(_make(x, new))
        else:
            out.append(frozenset(_make(x, new)))
    return tuple(out)


def compile_source(source: bytes, filename: str) -> CodeType:
    """``compile(source, filename, "exec", dont_inherit=True)``: the same code, made from an earlier file's of the
    same shape where that is certainly the same (see the module's rules)."""
    split = None
    looked, made = _COUNTS
    if looked >= GIVE_UP and made * 4 < looked:  # most files here have their own shape: compile them all
        return compile(source, filename, "exec", dont_inherit=True)
    _COUNTS[0] = looked + 1
    if not source.startswith(b"\xef\xbb\xbf") and b"\0" not in source and b"coding" not in source:
        try:
            split = _split(source.decode("utf-8"))
        except UnicodeDecodeError:
            split = None
    if split is None:
        return compile(source, filename, "exec", dont_inherit=True)
    shape, values = split
    known = _SHAPES.get(shape, False)
    if known is False:
        code = compile(source, filename, "exec", dont_inherit=True)
        if len(_SHAPES) < MAX_SHAPES:
            _SHAPES[shape] = _template(code, values, _words(shape))
        return code
    if known is None:
        return compile(source, filename, "exec", dont_inherit=True)
    template, classes, recipe, made = known
    mine, keys = _classes(values)
    if mine != classes or not made.isdisjoint(keys):  # equal literals where the first file's were not, or the reverse
        return compile(source, filename, "exec", dont_inherit=True)
    new = [v for _, v in keys]
    consts = tuple(c if r is None else new[r[1]] if r[0] == "v" else _make([r], new)[0]
                   for c, r in zip(template.co_consts, recipe))
    _COUNTS[1] += 1
    return template.replace(co_consts=consts, co_filename=filename)


def _template(code: CodeType, values: list, words: set | None) -> tuple[CodeType, list, list, frozenset] | None:
    """What files of ``code``'s shape are made from: ``code``, its literals' values, the constants the rest of the
    file makes (names of keyword arguments, of imported and annotated names, '*', an import's level 0, the singletons);
    or None: its constants are not exactly its literals' and those (nothing folded, nothing dropped, no literal that is
    also one of those: compile() would share it, and a file with another value would not)."""
    if words is None:
        return None
    own = {(type(v), v) for v in values}
    leaves: set = set()
    if not _leaves(code.co_consts, leaves) or not own <= leaves:
        return None
    made = leaves - own
    possible = {(str, w) for w in words} | {(str, "*"), (int, 0)} | _SINGLETONS
    if not made <= possible or not own.isdisjoint(possible):
        return None
    classes, keys = _classes(values)
    number = {k: n for n, k in enumerate(keys)}
    recipe = [_recipe((c,), number) for c in code.co_consts]
    recipe = [None if r is None else r[0] for r in recipe]
    return code, classes, recipe, frozenset(possible)

