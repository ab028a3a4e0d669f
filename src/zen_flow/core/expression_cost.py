"""A static bound on what a `when` expression can cost, checked at admission (like Kubernetes' CEL cost
estimates, in a simpler form).

Without comprehensions a CEL expression cannot loop, though it is not cheap for that: a chain of `+`
copies ever longer strings (quadratic in the chain's length, times the size of the flow's annotations),
and `matches` compiles its pattern on every call. Those are bounded in time instead (below). The
comprehension macros (`all`, `exists`, `exists_one` or `existsOne`, `map`, `filter`) are what
multiplies: nested ones multiply their iteration counts, and one that iterates over another's result
can grow its elements at every link of the chain (`l.map(x, x + x).map(x, x + x)...` doubles them each
time). So, at admission:

- comprehensions nest at most `MAX_NESTING` deep;
- a comprehension never iterates over another comprehension's result;
- the iterations, counted with each receiver's largest possible size (`steps`: the flow's step count;
  a list literal: its length; anything else: `UNKNOWN_SIZE`), stay within `MAX_ITERATIONS`.

This is an estimate over tokens, not a type-checked cost model; the controller evaluates every
expression but the constants and phase tests in a separate process under a time budget, so an estimate
that errs cannot stall it.
"""

from __future__ import annotations

from dataclasses import dataclass

from zen_flow.core.expression_scanner import ExpressionError, Token, is_comprehension, tokens

MAX_NESTING = 2
MAX_ITERATIONS = 1_000_000
UNKNOWN_SIZE = 1_000
_OPENERS = {"(": ")", "[": "]", "{": "}"}


@dataclass(frozen=True)
class Cost:
    comprehensions: int
    nesting: int
    iterations: int


def estimate_cost(source: str, step_count: int) -> Cost:
    """The expression's comprehension count, nesting and worst-case iterations; `ExpressionError` when
    it is over a limit (the message says which and how to fix it)."""
    toks = tokens(source)
    closing = _match_brackets(toks)
    calls = [i for i in range(1, len(toks) - 1) if is_comprehension(toks, i)]
    spans = {i: (i + 1, closing.get(i + 1, len(toks))) for i in calls}
    enclosing = {
        call: [
            c for c in calls if c != call and spans[c][0] < spans[call][0] and spans[call][1] <= spans[c][1]
        ]
        for call in calls
    }
    deepest = 1 + max((len(outer) for outer in enclosing.values()), default=-1)
    if deepest > MAX_NESTING:
        raise ExpressionError(
            f"comprehensions nested {deepest} deep (at most {MAX_NESTING}): "
            "put at most one comprehension inside another"
        )
    total = 0
    for call in calls:
        product = 1
        for c in (*enclosing[call], call):
            product *= _receiver_size(toks, c, closing, step_count)
        total += product
    if total > MAX_ITERATIONS:
        raise ExpressionError(
            f"comprehensions could run {total:,} iterations (at most {MAX_ITERATIONS:,}); "
            "iterate over `steps` or short lists, and do not nest them"
        )
    return Cost(len(calls), deepest, total)


def _match_brackets(toks: list[Token]) -> dict[int, int]:
    """Index of each opening bracket -> index of its closing one (unbalanced input: best effort; such an
    expression does not compile anyway)."""
    stack: list[int] = []
    out: dict[int, int] = {}
    for i, tok in enumerate(toks):
        if tok.kind != "punct":
            continue
        if tok.text in _OPENERS:
            stack.append(i)
        elif tok.text in _OPENERS.values() and stack and _OPENERS[toks[stack[-1]].text] == tok.text:
            out[stack.pop()] = i
    return out


def _receiver_size(toks: list[Token], call: int, closing: dict[int, int], step_count: int) -> int:
    """The largest number of elements the macro at `call` can iterate over."""
    last = call - 2  # the token before the dot
    if last < 0:
        return UNKNOWN_SIZE
    opening = {close: open_ for open_, close in closing.items()}
    tok = toks[last]
    if tok.text == ")" and last in opening:
        inner = [i for i in range(max(opening[last] - 1, 1), last) if is_comprehension(toks, i)]
        if inner:
            raise ExpressionError(
                f"'{toks[call].text}' iterates over the result of '{toks[inner[0]].text}': "
                "write a single comprehension instead of chaining them"
            )
        return UNKNOWN_SIZE
    if tok.text == "]" and last in opening:
        start = opening[last]
        previous = toks[start - 1] if start > 0 else None
        if previous is None or (previous.kind == "punct" and previous.text not in (")", "]", "}")):
            return _list_length(toks, start, last, closing)
        return UNKNOWN_SIZE  # an index expression: x[0]
    if tok.kind == "ident" and tok.text == "steps" and (last == 0 or toks[last - 1].text != "."):
        return max(step_count, 1)
    return UNKNOWN_SIZE


def _list_length(toks: list[Token], start: int, end: int, closing: dict[int, int]) -> int:
    if end == start + 1:
        return 0
    count, i = 1, start + 1
    while i < end:
        if i in closing:
            i = closing[i] + 1
            continue
        if toks[i].text == ",":
            count += 1
        i += 1
    return count
