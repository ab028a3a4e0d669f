"""A flow's matrix steps at admission (`spec.steps[].matrix`, expanded by core/matrix.py): what cannot
be expanded, as field errors, and the effective flow's steps, each with the path of the step it comes
from, for every other rule to check as ordinary steps."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from zen_flow.core.matrix import MatrixExpansion
from zen_flow.core.matrix_parameters import (
    DUPLICATE,
    FORBIDDEN,
    INVALID,
    NOT_FOUND,
    REQUIRED,
    TOO_MANY,
    MatrixProblem,
)
from zen_flow.validation.errors import (
    FieldError,
    Path,
    duplicate,
    forbidden,
    invalid,
    not_found,
    required,
    too_many,
)
from zen_flow.validation.reader import Reader

_ERRORS: Mapping[str, Callable[[MatrixProblem], FieldError]] = {
    INVALID: lambda p: invalid(p.path, p.value, p.detail),
    REQUIRED: lambda p: required(p.path, p.detail),
    FORBIDDEN: lambda p: forbidden(p.path, p.detail),
    DUPLICATE: lambda p: duplicate(p.path, p.value, p.detail),
    NOT_FOUND: lambda p: not_found(p.path, p.value, p.detail),
    TOO_MANY: lambda p: too_many(p.path, p.value, p.limit, p.detail),
}


def field_error(problem: MatrixProblem) -> FieldError:
    return _ERRORS[problem.kind](problem)


def matrix_items(r: Reader, expansion: MatrixExpansion) -> list[tuple[Path, Mapping[str, Any]]]:
    """Reports `expansion`'s problems; returns its effective steps that are objects, each with the path
    of the stored step it comes from (`spec.steps[2]` for every item of that matrix step)."""
    for problem in expansion.problems:
        r.add(field_error(problem))
    steps = expansion.spec["steps"]
    origins = expansion.origins or tuple(range(len(steps)))
    return [
        (f"spec.steps[{origin}]", step)
        for origin, step in zip(origins, steps, strict=True)
        if isinstance(step, dict)
    ]
