"""Reading a `when` expression before CEL does: its tokens, and the rewrite of dotted step names.

`steps.extract-a.phase` is not CEL (CEL reads `steps.extract - a.phase`), so a dotted step reference
whose name is not a plain CEL identifier is rewritten to the index form `steps["extract-a"]`; the
expression's *shape* names one placeholder wherever it names a step, so that admission compiles each
shape once (expressions.py). `scan_phase_tests` reads the conditions nearly every flow writes without
tokenizing them; a property test holds it to `scan`.
"""

from __future__ import annotations

import ast
import re
from typing import NamedTuple

# CEL reserved words cannot follow a dot either; the rewrite turns `steps.in.phase` into `steps["in"]...`.
_RESERVED = frozenset(
    {
        *("as", "break", "const", "continue", "else", "false", "for", "function", "if", "import", "in"),
        *("let", "loop", "package", "namespace", "null", "return", "true", "var", "void"),
    }
)
# One token per match, in this order: a string literal starts with its quote, after an optional prefix
# (r: raw, b: bytes, any case), so it is tried before a word; a triple quote before a single one.
_SCANNER = re.compile(
    r"(?P<space>\s+)|(?P<comment>//[^\n]*\n?)"
    r"|(?P<quote>(?P<prefix>(?i:rb|br|r|b)?)(?P<q>'''|\"\"\"|'|\"))"
    r"|(?P<ident>\w+)|(?P<punct>.)",
    re.DOTALL,
)


# `steps.<name>.phase == 'Succeeded'`: a name as the rewrite reads it (words joined by runs of '-', no
# spaces), a quoted word; several joined by && or ||. See scan_phase_tests.
_PHASE_TEST_SOURCE = r"steps\.(\w+(?:-+\w+)*)\.phase\s*[=!]=\s*(?:'\w*'|\"\w*\")"
_PHASE_TEST = re.compile(_PHASE_TEST_SOURCE)
_PHASE_TESTS = re.compile(rf"\s*{_PHASE_TEST_SOURCE}(?:\s*(?:&&|\|\|)\s*{_PHASE_TEST_SOURCE})*\s*")
_PHASE_TEST_ALONE = re.compile(rf"\s*{_PHASE_TEST_SOURCE}\s*")  # the commonest condition: one test


def _body(raw: bool, quote: str) -> re.Pattern[str]:
    """The rest of a string literal after its opening quote: an escape pairs a backslash with the next
    character (a raw literal has none); a triple-quoted literal ends at the first unescaped triple."""
    if raw:
        inner = ".*?" if len(quote) == 3 else f"[^{quote}]*"
    else:
        inner = r"(?:[^\\]|\\.)*?" if len(quote) == 3 else rf"(?:[^\\{quote}]|\\.)*"
    return re.compile(inner + quote, re.DOTALL)


_BODIES = {(raw, quote): _body(raw, quote) for raw in (False, True) for quote in ("'''", '"""', "'", '"')}
# CEL's comprehension macros: the only constructs that loop (see expression_cost.py). The CEL library
# also takes `existsOne` for `exists_one` (missing here once, it let a nested one pass as linear).
MACROS = frozenset({"all", "exists", "exists_one", "existsOne", "map", "filter"})
# Functions whose cost is not linear in their inputs either: the CEL library compiles a `matches`
# pattern on every call, and `"".matches("\\w{290}")` takes ~40 ms to compile.
COSTLY_FUNCTIONS = frozenset({"matches"})
# What a step reference becomes in an expression's shape (see the module docstring).
_PLACEHOLDER = "_s"


class ExpressionError(ValueError):
    """A `when` expression that does not compile; the message says where and why."""


class Token(NamedTuple):  # a tuple: an expression of a few hundred characters makes a hundred of them
    kind: str  # "ident" | "string" | "punct"
    text: str
    start: int
    end: int
    value: str = ""  # decoded value of a string literal


def tokens(src: str) -> list[Token]:
    out: list[Token] = []
    pos, n = 0, len(src)
    scan = _SCANNER.match
    while pos < n:
        m = scan(src, pos)  # always matches: its last alternative is any one character
        assert m is not None
        kind, end = m.lastgroup, m.end()
        if kind == "quote":
            quote = m.group("q")
            closed = _BODIES["r" in m.group("prefix").lower(), quote].match(src, end)
            if closed is None:
                raise ExpressionError(f"unterminated string literal at offset {pos}")
            stop = closed.end()
            text, body = src[pos:stop], src[end : stop - len(quote)]
            out.append(Token("string", text, pos, stop, _decode(text, body) if "\\" in body else body))
            end = stop
        elif kind == "ident" or kind == "punct":
            out.append(Token(kind, m.group(), pos, end))
        pos = end  # "space" and "comment" are skipped
    return out


def is_comprehension(toks: list[Token], i: int) -> bool:
    """Is toks[i] the name of a comprehension macro called as a method (`x.all(`)?"""
    return (
        0 < i < len(toks) - 1
        and toks[i].kind == "ident"
        and toks[i].text in MACROS
        and toks[i - 1].text == "."
        and toks[i + 1].text == "("
    )


def is_costly_call(toks: list[Token], i: int) -> bool:
    """Is toks[i] a call of a `COSTLY_FUNCTIONS` function (`s.matches(` or `matches(s, `)?"""
    return (
        i < len(toks) - 1
        and toks[i].kind == "ident"
        and toks[i].text in COSTLY_FUNCTIONS
        and toks[i + 1].text == "("
    )


def _decode(literal: str, body: str) -> str:
    # CEL string escapes are a subset of Python's; bytes or odd escapes fall back to the raw body.
    try:
        value = ast.literal_eval(literal)
    except (ValueError, SyntaxError):
        return body
    return value if isinstance(value, str) else body


def _is_identifier(name: str) -> bool:
    return name.isidentifier() and name.isascii() and name not in _RESERVED


def step_name_end(toks: list[Token], first: int) -> int:
    """The index of the last token of the step name after `steps.` that starts at toks[first] (an ident):
    ident tokens joined by runs of '-' (DNS labels allow "a--b"), all glued together without spaces."""
    m = first
    while True:
        j = m + 1
        while j < len(toks) and toks[j].text == "-" and toks[j].start == toks[j - 1].end:
            j += 1
        if j == m + 1 or j >= len(toks) or toks[j].kind != "ident" or toks[j].start != toks[j - 1].end:
            return m
        m = j


def _rewrite(src: str, toks: list[Token]) -> tuple[str, str, frozenset[str], bool]:
    """Rewrite dotted dashed step references; return (CEL source, its shape, referenced steps, dynamic
    use?). The shape names `_PLACEHOLDER` wherever the source names a step after `steps.`."""
    pieces: list[str] = []
    shape: list[str] = []
    last = 0
    refs: set[str] = set()
    dynamic = False
    k = 0
    while k < len(toks):
        tok = toks[k]
        if tok.kind != "ident" or tok.text != "steps" or (k > 0 and toks[k - 1].text == "."):
            k += 1
            continue
        nxt = toks[k + 1] if k + 1 < len(toks) else None
        if nxt is not None and nxt.text == "." and k + 2 < len(toks) and toks[k + 2].kind == "ident":
            m = step_name_end(toks, k + 2)
            name = src[toks[k + 2].start : toks[m].end]
            after = toks[m + 1] if m + 1 < len(toks) else None
            if after is not None and after.text == "(" and m == k + 2:
                dynamic = True  # a macro or method on the map: steps.exists(s, ...)
            else:
                refs.add(name)
                kept = src[last : nxt.start]
                if _is_identifier(name):
                    pieces.append(src[last : toks[m].end])
                    shape.extend((kept, "." + _PLACEHOLDER))
                else:
                    pieces.extend((kept, f'["{name}"]'))
                    shape.extend((kept, f'["{_PLACEHOLDER}"]'))
                last = toks[m].end
            k = m + 1
            continue
        if (
            nxt is not None
            and nxt.text == "["
            and k + 3 < len(toks)
            and toks[k + 2].kind == "string"
            and toks[k + 3].text == "]"
        ):
            refs.add(toks[k + 2].value)
            k += 4
            continue
        dynamic = True
        k += 1
    pieces.append(src[last:])
    shape.append(src[last:])
    return "".join(pieces), "".join(shape), frozenset(refs), dynamic


class Scanned(NamedTuple):
    cel_source: str
    shape: str  # see the module docstring
    references: frozenset[str]
    dynamic: bool
    loops: bool
    flow_fields: frozenset[str] | None  # see flow_fields


def flow_fields(toks: list[Token]) -> frozenset[str] | None:
    """The members of `flow` the expression reads (`flow.labels`, `flow["labels"]`); None when it uses
    `flow` any other way (`flow[x]`, `flow.all(...)`, a macro variable named `flow`) and may read them
    all. An evaluation is then given only these: the annotations alone can be 256 KiB (`kubectl apply`
    keeps the whole manifest in one), and CEL converts every variable it is given on every call."""
    fields: set[str] = set()
    for k, tok in enumerate(toks):
        if tok.kind != "ident" or tok.text != "flow" or (k > 0 and toks[k - 1].text == "."):
            continue
        following = [t.text for t in toks[k + 1 : k + 4]]
        if following[:1] == ["."] and len(following) > 1 and toks[k + 2].kind == "ident":
            if following[2:] == ["("]:
                return None  # a macro or method on the whole map
            fields.add(toks[k + 2].text)
        elif following[:1] == ["["] and len(following) == 3 and toks[k + 2].kind == "string":
            if following[2] != "]":
                return None
            fields.add(toks[k + 2].value)
        else:
            return None
    return frozenset(fields)


def scan(expr: str) -> Scanned:
    """Tokenize and rewrite; raises ExpressionError for an unterminated string literal."""
    toks = tokens(expr)
    cel_source, shape, refs, dynamic = _rewrite(expr, toks)
    loops = any(is_comprehension(toks, i) or is_costly_call(toks, i) for i in range(len(toks)))
    return Scanned(cel_source, shape, refs, dynamic, loops, flow_fields(toks))


def scan_phase_tests(expr: str) -> Scanned | None:
    """`scan` for the conditions nearly every flow writes, `steps.<name>.phase == '<Phase>'` (or !=)
    joined by && or ||, without tokenizing: a new 500-step flow brings 500 of them, and tokenizing
    each took ~40 µs. None for anything else (the caller scans it); a test holds both to the same result."""
    if _PHASE_TESTS.fullmatch(expr) is None:
        return None
    cel: list[str] = []
    shape: list[str] = []
    refs: set[str] = set()
    last = 0
    for m in _PHASE_TEST.finditer(expr):
        name = m.group(1)
        refs.add(name)
        head = expr[last : m.start(1) - 1]  # up to and including "steps"
        if _is_identifier(name):
            cel.append(expr[last : m.end(1)])
            shape.append(head + "." + _PLACEHOLDER)
        else:
            cel.append(f'{head}["{name}"]')
            shape.append(f'{head}["{_PLACEHOLDER}"]')
        last = m.end(1)
    cel.append(expr[last:])
    shape.append(expr[last:])
    return Scanned("".join(cel), "".join(shape), frozenset(refs), False, False, frozenset())


def phase_test_references(expr: str) -> frozenset[str] | None:
    """The steps named by a condition of `scan_phase_tests`'s form, without building its rewrite; None
    for any other expression. Such a condition always compiles (its shape is phase comparisons joined by
    && and ||) and never loops, so these names are all that admission checks of it: a new 500-step flow
    brings 500 conditions, and compiling each one for its references took ~10 µs."""
    if (alone := _PHASE_TEST_ALONE.fullmatch(expr)) is not None:
        return frozenset((alone.group(1),))
    if _PHASE_TESTS.fullmatch(expr) is None:
        return None
    return frozenset(m.group(1) for m in _PHASE_TEST.finditer(expr))
