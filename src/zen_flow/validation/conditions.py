"""What admission checks alike of every CEL condition (`when`, retryPolicy.expression): that it compiles,
and that its comprehensions are bounded (core/expression_cost.py); the evaluator bounds the rest in time.
And how both word a value compared with a literal of another type (`mistyped`)."""

from __future__ import annotations

from collections.abc import Callable

from zen_flow.core.expression_cost import estimate_cost
from zen_flow.core.expressions import CompiledWhen, ExpressionError
from zen_flow.validation.errors import Path, invalid
from zen_flow.validation.reader import Reader


def compiled_or_refused(
    r: Reader, path: Path, expr: str, compile_: Callable[[str], CompiledWhen], steps: int
) -> CompiledWhen | None:
    """`expr` compiled by `compile_` (which raises `ExpressionError`), or None with the refusal added;
    `steps`: how many steps a comprehension over `steps` may iterate."""
    try:
        compiled = compile_(expr)
    except ExpressionError as err:
        r.add(invalid(path, expr, f"does not compile: {one_line(str(err))}"))
        return None
    try:
        if compiled.loops:  # only comprehensions iterate; the controller bounds the rest in time
            estimate_cost(compiled.cel_source, steps)
    except ExpressionError as err:
        r.add(invalid(path, expr, f"too expensive: {one_line(str(err))}"))
        return None
    return compiled


def one_line(message: str) -> str:
    """CEL errors come with a caret diagram over several lines; keep the words, on one line."""
    lines = [line.strip() for line in message.splitlines()]
    return " ".join(line for line in lines if line and not line.startswith("|"))


# CEL compares values of two types for equality, and they are never equal (`"0" != 0` is true); its
# orderings (<, <=, >, >=) have no overload across types: they fail, and a failed condition is false.
EQUALITIES = ("==", "!=")


def mistyped(
    subject: str,
    kind: str,
    literal: str,
    other: str,
    operator: str | None,
    *,
    example: str,
    fails: str,
    fix: str,
) -> str:
    """Why `subject`, of type `kind` ("a number"), compared by `operator` with `literal`, of type `other`,
    is refused: an equality always says the same (`example` shows it), an ordering fails every evaluation
    (`fails` says what that does); `fix`: what to write instead."""
    if operator in EQUALITIES:
        return f"compares {subject}, {kind}, with {literal}, which never equals it in CEL ({example}): {fix}"
    return (
        f"orders {subject}, {kind}, against {literal}, {other}: CEL has no such comparison, so every "
        f"evaluation fails ({fails}): {fix}"
    )


def literal_type(literal: str) -> str:
    """The type of a literal that is not a string, as `mistyped` says it."""
    return "a bool" if literal in ("true", "false") else "a number"
