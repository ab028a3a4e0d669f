"""A flow's matrix steps at admission (`spec.steps[].matrix`, expanded by core/matrix.py): what cannot
be expanded, as field errors, and the effective flow's steps, each with the path of the step it comes
from, for every other rule to check as ordinary steps."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
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


def said_once(errors: Sequence[FieldError], expansion: MatrixExpansion) -> list[FieldError]:
    """`errors` with each one said once: the items of a matrix step share its path, so one mistake in
    its template would be said per item (256 near-identical errors, a 46 KB message). An error that
    names an item is kept for the first item that has it, saying how many items share it."""
    prefixes = _matrix_step_paths(expansion)
    kept: dict[tuple[str, str, str], int] = {}  # (path, type, detail with the item's name) -> index
    shared: list[int] = []  # per kept error: how many items share it
    out: list[FieldError] = []
    for error in errors:
        name = _matrix_step_of(error.path, prefixes)
        item = re.compile(rf"(?<![\w.-]){re.escape(name)}-\d+(?![\w.-])") if name else None
        detail = item.sub("\0", error.detail) if item is not None else error.detail
        key = (error.path, str(error.type), detail)
        if key in kept:
            shared[kept[key]] += detail != error.detail
            continue
        kept[key] = len(out)
        out.append(error)
        shared.append(1)
    for k, count in enumerate(shared):
        if count > 1:
            out[k] = replace(
                out[k], detail=f"{out[k].detail} (and {count - 1} more items of this matrix step)"
            )
    return out


def _matrix_step_paths(expansion: MatrixExpansion) -> dict[str, str]:
    """{`spec.steps[N]`: its name} of the matrix steps expanded into items."""
    steps = expansion.spec["steps"]
    origins = expansion.origins or tuple(range(len(steps)))
    items = {item: name for name, group in expansion.groups.items() for item in group}
    return {
        f"spec.steps[{origin}]": items[step["name"]]
        for origin, step in zip(origins, steps, strict=True)
        if isinstance(step, dict) and isinstance(step.get("name"), str) and step["name"] in items
    }


def _matrix_step_of(path: str, prefixes: Mapping[str, str]) -> str:
    head, _, _ = path.partition("]")
    return prefixes.get(head + "]", "") if head.startswith("spec.steps[") else ""
