"""What a `when` expression says about the flow before it runs, for admission to check against the spec:
the step outputs and flow arguments it reads by name, the literals it compares a step's phase with, and
its comparisons of an output or an argument (always a string) with a number or a bool.

Read from the tokens (expression_scanner.py), not from a parse tree, so only forms spelled out in full
are reported: `steps.a.outputs.parameters.x`, `steps["a"]["outputs"]["parameters"]["x"]`,
`flow.arguments.x`, `steps.a.phase == 'Succeeded'`, `steps[s].phase != 'Failed'`. Anything computed
(`steps[s].outputs.parameters[name]`, `flow.arguments[key]`) is not, so whatever is reported is
certainly what the expression reads or compares, and a rule built on it refuses only what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from zen_flow.core.expression_scanner import Token, step_name_end, tokens

_BOOLS = frozenset({"true", "false"})
# A comparison operator, as the scanner tokenizes it (one character per punctuation token).
_PAIRS = frozenset({"==", "!=", "<=", ">="})


@dataclass(frozen=True, slots=True)
class TypedComparison:
    """`reference op literal` (or `literal op reference`) where the literal is a number or a bool."""

    reference: str  # as written
    operator: str
    literal: str


@dataclass(frozen=True, slots=True)
class Facts:
    outputs: tuple[tuple[str, str], ...]  # (step, output parameter), in order of appearance
    arguments: tuple[str, ...]
    phase_literals: tuple[str, ...]  # string literals compared with a step's phase
    typed_comparisons: tuple[TypedComparison, ...]


def _member(toks: list[Token], k: int) -> tuple[str, int] | None:
    """A member access at toks[k]: `.name` or `["name"]`; (the name, the index after it)."""
    if k + 1 < len(toks) and toks[k].text == "." and toks[k + 1].kind == "ident":
        return toks[k + 1].text, k + 2
    if k + 2 < len(toks) and toks[k].text == "[" and toks[k + 1].kind == "string" and toks[k + 2].text == "]":
        return toks[k + 1].value, k + 3
    return None


def _closing(toks: list[Token], k: int) -> int | None:
    """The index of the `]` that closes the `[` at toks[k]."""
    depth = 0
    for i in range(k, len(toks)):
        if toks[i].text in "[(":
            depth += 1
        elif toks[i].text in "])":
            depth -= 1
            if depth == 0:
                return i if toks[i].text == "]" else None
    return None


def _step(src: str, toks: list[Token], k: int) -> tuple[str | None, int] | None:
    """After `steps` at toks[k]: (the step's name, or None when computed, `steps[s]`; the index after)."""
    if k + 2 < len(toks) and toks[k + 1].text == "." and toks[k + 2].kind == "ident":
        last = step_name_end(toks, k + 2)
        if last + 1 < len(toks) and toks[last + 1].text == "(":
            return None  # a macro on the map: steps.exists(s, ...)
        return src[toks[k + 2].start : toks[last].end], last + 1
    if (member := _member(toks, k + 1)) is not None:
        return member
    if k + 1 < len(toks) and toks[k + 1].text == "[" and (end := _closing(toks, k + 1)) is not None:
        return None, end + 1
    return None


def _operator(toks: list[Token], k: int) -> tuple[str, int] | None:
    """A comparison operator at toks[k]; (it, the index after)."""
    if k + 1 < len(toks) and toks[k].text + toks[k + 1].text in _PAIRS and toks[k + 1].start == toks[k].end:
        return toks[k].text + toks[k + 1].text, k + 2
    if k < len(toks) and toks[k].text in "<>" and toks[k].kind == "punct":
        return toks[k].text, k + 1
    return None


def _operator_before(toks: list[Token], k: int) -> tuple[str, int] | None:
    """A comparison operator that ends at toks[k - 1]; (it, the index of its first token)."""
    if k >= 2 and toks[k - 2].text + toks[k - 1].text in _PAIRS and toks[k - 1].start == toks[k - 2].end:
        return toks[k - 2].text + toks[k - 1].text, k - 2
    if k >= 1 and toks[k - 1].text in "<>" and toks[k - 1].kind == "punct":
        return toks[k - 1].text, k - 1
    return None


def _typed_literal(src: str, toks: list[Token], k: int) -> str | None:
    """A number or bool literal that starts at toks[k] (`0`, `-1`, `2.5`, `3u`, `true`), as written."""
    first = k
    if k < len(toks) and toks[k].text == "-":
        k += 1
    if k >= len(toks) or toks[k].kind != "ident":
        return None
    text = toks[k].text
    if text in _BOOLS and first == k:
        return text
    if not text[0].isdigit():
        return None
    # `2.5` is three tokens: `2`, `.`, `5`.
    if k + 2 < len(toks) and toks[k + 1].text == "." and toks[k + 2].text[:1].isdigit():
        k += 2
    return src[toks[first].start : toks[k].end]


def _typed_literal_before(src: str, toks: list[Token], k: int) -> str | None:
    """A number or bool literal that ends at toks[k - 1], as written."""
    if k < 1 or toks[k - 1].kind != "ident":
        return None
    text = toks[k - 1].text
    if text in _BOOLS:
        return text
    start = k - 3 if k >= 3 and toks[k - 2].text == "." and toks[k - 3].text[:1].isdigit() else k - 1
    if not toks[start].text[:1].isdigit():
        return None
    if start >= 1 and toks[start - 1].text == "-":
        start -= 1
    return src[toks[start].start : toks[k - 1].end]


def _read_on(toks: list[Token], end: int) -> bool:
    """Is the reference that ends at toks[end - 1] read further (`.size()`, `[0]`)? Then what is compared is
    not the reference's string (`3 == flow.arguments.env.size()` compares numbers)."""
    return end < len(toks) and toks[end].text in (".", "[", "(")


def _operand_of_plus(toks: list[Token], k: int) -> bool:
    """Is the literal at toks[k] one operand of a `+` (`'Succ' + 'eeded' == ...`)?"""
    return k >= 1 and toks[k - 1].text == "+"


def _compared(toks: list[Token], start: int, end: int, src: str) -> list[TypedComparison]:
    """The reference toks[start:end] compared directly with a number or a bool, on either side."""
    if _read_on(toks, end):
        return []
    text = src[toks[start].start : toks[end - 1].end]
    if (op := _operator(toks, end)) is not None and (literal := _typed_literal(src, toks, op[1])):
        return [TypedComparison(text, op[0], literal)]
    op = _operator_before(toks, start)
    if op is not None and (literal := _typed_literal_before(src, toks, op[1])) is not None:
        return [TypedComparison(text, op[0], literal)]
    return []


def _phase_literals(toks: list[Token], start: int, end: int) -> list[str]:
    """String literals that the phase read at toks[start:end] is compared with (==, !=, in [...])."""
    found: list[str] = []
    after = _operator(toks, end)
    if after is not None and after[0] in ("==", "!=") and after[1] < len(toks):
        operand_of_plus = after[1] + 1 < len(toks) and toks[after[1] + 1].text == "+"
        if toks[after[1]].kind == "string" and not operand_of_plus:
            found.append(toks[after[1]].value)
    elif end + 1 < len(toks) and toks[end].text == "in" and toks[end + 1].text == "[":
        close = _closing(toks, end + 1)
        items = toks[end + 2 : close] if close is not None else []
        if all(t.kind == "string" or t.text == "," for t in items):
            found.extend(t.value for t in items if t.kind == "string")
    before = _operator_before(toks, start)
    if (
        before is not None
        and before[0] in ("==", "!=")
        and before[1] >= 1
        and toks[before[1] - 1].kind == "string"
        and not _operand_of_plus(toks, before[1] - 1)
        and not _read_on(toks, end)
    ):
        found.append(toks[before[1] - 1].value)
    return found


@lru_cache(maxsize=4096)  # admission checks a flow's conditions again on each update
def facts(expr: str) -> Facts:
    """What `expr` reads and compares (see the module docstring); raises ExpressionError when it does
    not tokenize."""
    toks = tokens(expr)
    outputs: list[tuple[str, str]] = []
    arguments: list[str] = []
    phases: list[str] = []
    typed: list[TypedComparison] = []
    for k, tok in enumerate(toks):
        if tok.kind != "ident" or (k > 0 and toks[k - 1].text == "."):
            continue
        if tok.text == "steps" and (step := _step(expr, toks, k)) is not None:
            name, at = step
            member = _member(toks, at)
            if member is not None and member[0] == "phase":
                phases.extend(_phase_literals(toks, k, member[1]))
            elif member is not None and member[0] == "outputs":
                inner = _member(toks, member[1])
                if inner is not None and inner[0] == "parameters":
                    output = _member(toks, inner[1])
                    if output is not None and name is not None:
                        outputs.append((name, output[0]))
                    if output is not None:
                        typed.extend(_compared(toks, k, output[1], expr))
        elif tok.text == "flow":
            member = _member(toks, k + 1)
            argument = _member(toks, member[1]) if member is not None and member[0] == "arguments" else None
            if argument is not None:
                arguments.append(argument[0])
                typed.extend(_compared(toks, k, argument[1], expr))
    return Facts(tuple(outputs), tuple(arguments), tuple(phases), tuple(typed))


@dataclass(frozen=True, slots=True)
class MemberRead:
    """`root.field` (or `root["field"]`) as an expression reads it, and a literal it is compared with
    directly (==, !=, <, ...), as written: a number or bool, or a string (`string`)."""

    field: str
    literal: str | None = None
    string: bool = False
    operator: str | None = None  # the comparison's, when there is a literal
    value: str | None = None  # a string literal's, decoded


@lru_cache(maxsize=1024)
def member_reads(expr: str, root: str) -> tuple[MemberRead, ...]:
    """The fields of the variable `root` that `expr` reads by name (retryPolicy.expression's
    `lastRetry`), in order; raises ExpressionError when it does not tokenize."""
    toks = tokens(expr)
    found: list[MemberRead] = []
    for k, tok in enumerate(toks):
        if tok.kind != "ident" or tok.text != root or (k > 0 and toks[k - 1].text == "."):
            continue
        member = _member(toks, k + 1)
        if member is None:
            continue
        field, end = member
        if typed := _compared(toks, k, end, expr):
            found.append(MemberRead(field, typed[0].literal, operator=typed[0].operator))
        elif (compared := _string_compared(toks, k, end)) is not None:
            op, at = compared
            literal = expr[toks[at].start : toks[at].end]
            found.append(MemberRead(field, literal, string=True, operator=op, value=toks[at].value))
        else:
            found.append(MemberRead(field, string=True))
    return tuple(found)


def _string_compared(toks: list[Token], start: int, end: int) -> tuple[str, int] | None:
    """A string literal the reference toks[start:end] is compared with directly, on either side:
    (the operator, the literal's index)."""
    if _read_on(toks, end):
        return None
    after = _operator(toks, end)
    if after is not None and after[1] < len(toks) and toks[after[1]].kind == "string":
        at = after[1]
        if not (at + 1 < len(toks) and toks[at + 1].text in ("+", ".", "[")):
            return after[0], at
    before = _operator_before(toks, start)
    if before is not None and before[1] >= 1 and toks[before[1] - 1].kind == "string":
        at = before[1] - 1
        if not _operand_of_plus(toks, at):
            return before[0], at
    return None
