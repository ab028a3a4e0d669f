"""The static cost bound on `when` (core/expression_cost.py): nesting, chaining, iteration counts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zen_flow.core.expression_cost import MAX_ITERATIONS, MAX_NESTING, UNKNOWN_SIZE, estimate_cost
from zen_flow.core.expressions import ExpressionError, compile_when


@pytest.mark.parametrize(
    ("expr", "iterations"),
    [
        ("steps.a.phase == 'Succeeded'", 0),
        ("steps.exists(s, steps[s].phase == 'Failed')", 40),
        ("steps.all(a, steps.all(b, true))", 40 + 40 * 40),
        ("size(steps.filter(s, steps[s].phase == 'Failed')) == 0", 40),
        ("[1, 2, 3].exists(x, x == 2)", 3),
        ("[1, 2, 3].existsOne(x, x == 2)", 3),
        ("[[1, 2], [3]].exists(x, x.exists(y, y == 2))", 2 + 2 * UNKNOWN_SIZE),
        ("flow.labels.exists(k, k == 'team')", UNKNOWN_SIZE),
        ("[].all(x, false)", 0),
    ],
)
def test_cheap_expressions_are_admitted_with_their_worst_case(expr: str, iterations: int) -> None:
    compile_when(expr)  # they are real CEL
    assert estimate_cost(expr, step_count=40).iterations == iterations


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("steps.all(a, steps.all(b, steps.all(c, true)))", "comprehensions nested 3 deep (at most 2)"),
        ("[1].existsOne(a, [1].existsOne(b, [1].existsOne(c, true)))", "comprehensions nested 3 deep"),
        ("steps.map(s, s).exists(x, true)", "'exists' iterates over the result of 'map'"),
        ("(steps.filter(s, true)).all(x, true)", "'all' iterates over the result of 'filter'"),
        ("['a'].map(x, x + x).map(x, x + x)", "'map' iterates over the result of 'map'"),
        ("flow.labels.all(k, flow.annotations.all(j, true))", "could run 1,001,000 iterations"),
    ],
)
def test_expensive_expressions_are_refused_saying_why(expr: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        estimate_cost(expr, step_count=500)


def _nested(sizes: list[int]) -> str:
    """Comprehensions nested len(sizes) deep, each over a list literal of the given size."""
    expr = "true"
    for depth, size in reversed(list(enumerate(sizes))):
        expr = f"[{', '.join(['0'] * size)}].all(v{depth}, {expr})"
    return expr


@given(st.lists(st.integers(0, 40), min_size=1, max_size=4))
def test_nesting_and_iterations_are_counted_exactly(sizes: list[int]) -> None:
    expr = _nested(sizes)
    compile_when(expr)
    expected, product = 0, 1
    for size in sizes:
        product *= size
        expected += product
    if len(sizes) > MAX_NESTING:
        with pytest.raises(ExpressionError, match=f"nested {len(sizes)} deep"):
            estimate_cost(expr, step_count=10)
        return
    cost = estimate_cost(expr, step_count=10)
    assert (cost.comprehensions, cost.nesting, cost.iterations) == (len(sizes), len(sizes), expected)
    assert cost.iterations <= MAX_ITERATIONS
