"""A matrix's parameters (`spec.steps[].matrix`) read into value columns, and why one cannot be: pure.

Each parameter gives a column of values, its `values` or a flow argument holding a JSON array; the
items are the columns' product (core/matrix.py builds them). What cannot be read is a `MatrixProblem`
with the field's path, which admission turns into a field error and the controller into its Valid=False
condition (`describe`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from zen_flow.api.constants import MANUAL_MATRIX
from zen_flow.core.naming import is_dns1123_subdomain

MATRIX = "matrix"
MAX_PARAMETERS = 8  # CRD maxItems
MAX_VALUES = 256  # per parameter, CRD maxItems
MAX_VALUE = 4096  # characters of one value, CRD maxLength
MAX_ITEMS = 256  # items of one matrix step (the product of its parameters' value counts)
MAX_EFFECTIVE_STEPS = 500  # validation.limits.MAX_STEPS: the flow after expansion
MAX_PARALLEL, MAX_ITEMS_FIELD = "maxParallel", "maxItems"  # matrix fields, each 1 to MAX_ITEMS

# The kinds of problem, as validation.errors names its constructors.
INVALID, REQUIRED, FORBIDDEN, TOO_MANY, DUPLICATE, NOT_FOUND = (
    "invalid",
    "required",
    "forbidden",
    "too_many",
    "duplicate",
    "not_found",
)
ARRAY = 'a JSON array of 1 to 256 strings, e.g. ["eu-west-1","us-east-1"]'


@dataclass(frozen=True, slots=True)
class MatrixProblem:
    """Why a matrix cannot be expanded: `kind` (INVALID, ...), at `path`, about `value`."""

    kind: str
    path: str
    value: Any
    detail: str
    limit: int = 0  # TOO_MANY: the limit


def argument_values(raw: Any) -> dict[str, Any]:
    params = raw.get("parameters") if isinstance(raw, Mapping) else None
    found: dict[str, Any] = {}
    for p in params if isinstance(params, list | tuple) else ():
        if isinstance(p, Mapping) and isinstance(p.get("name"), str):
            found.setdefault(p["name"], p.get("value"))
    return found


def is_manual_step(step: Mapping[str, Any]) -> bool:
    """As `api.jobflow.Step.is_manual`, on a raw step."""
    kind = step.get("type")
    if isinstance(kind, str) and kind:
        return kind == "Manual"
    return step.get("template") is None


def input_names(step: Mapping[str, Any]) -> set[str]:
    return parameter_names(step, "inputs")


def parameter_names(step: Mapping[str, Any], side: str) -> set[str]:
    """The names of a raw step's `inputs` or `outputs` (`side`) parameters."""
    found = step.get(side)
    params = found.get("parameters") if isinstance(found, Mapping) else None
    return {
        p["name"]
        for p in (params if isinstance(params, list | tuple) else ())
        if isinstance(p, Mapping) and isinstance(p.get("name"), str)
    }


def combinations(
    step: Mapping[str, Any], path: str, arguments: Mapping[str, Any], problems: list[MatrixProblem]
) -> tuple[tuple[str, ...], list[list[str]]] | None:
    """The step's parameter names and their value columns (the items are their product), None (with
    problems) when the matrix cannot be expanded."""
    at = path + "." + MATRIX
    before = len(problems)
    matrix = step.get(MATRIX)
    if is_manual_step(step):
        problems.append(
            MatrixProblem(
                FORBIDDEN,
                at,
                None,
                MANUAL_MATRIX,
            )
        )
    if not isinstance(matrix, Mapping):
        problems.append(MatrixProblem(INVALID, at, matrix, "must be an object with parameters"))
        return None
    raw = matrix.get("parameters")
    params_path = at + ".parameters"
    if not isinstance(raw, list | tuple) or not raw:
        problems.append(
            MatrixProblem(REQUIRED, params_path, None, "a matrix needs 1 to 8 parameters, each with values")
        )
        return None
    if len(raw) > MAX_PARAMETERS:
        problems.append(MatrixProblem(TOO_MANY, params_path, len(raw), "", MAX_PARAMETERS))
    inputs = input_names(step)
    names: list[str] = []
    columns: list[list[str]] = []
    for j, param in enumerate(raw):
        pp = f"{params_path}[{j}]"
        if not isinstance(param, Mapping):
            problems.append(MatrixProblem(INVALID, pp, param, "must be an object with name and values"))
            continue
        name = param.get("name")
        if not isinstance(name, str) or not name:
            problems.append(MatrixProblem(REQUIRED, pp + ".name", None, ""))
        elif not is_dns1123_subdomain(name):
            problems.append(
                MatrixProblem(
                    INVALID,
                    pp + ".name",
                    name,
                    "must be a DNS-1123 subdomain (lower case letters, digits, '-' and '.')",
                )
            )
        elif name in names:
            problems.append(MatrixProblem(DUPLICATE, pp + ".name", name, ""))
        elif name in inputs:
            problems.append(
                MatrixProblem(
                    DUPLICATE,
                    pp + ".name",
                    name,
                    "the step has an input parameter of this name; each item gets the matrix value as "
                    "its input parameter, so the names must differ",
                )
            )
        else:
            names.append(name)
        column = _values(param, pp, arguments, problems)
        if column is not None:
            columns.append(column)
    for key in (MAX_PARALLEL, MAX_ITEMS_FIELD):
        bound_of(matrix, key, at, problems)
    if len(problems) > before:
        return None
    count = count_items(columns)
    declared = bound_of(matrix, MAX_ITEMS_FIELD)
    if declared is not None and count > declared:
        problems.append(
            MatrixProblem(
                TOO_MANY,
                f"{at}.{MAX_ITEMS_FIELD}",
                count,
                f"the matrix makes {count} items (the product of its parameters' value counts), more "
                f"than its {MAX_ITEMS_FIELD}",
                declared,
            )
        )
        return None
    if count > MAX_ITEMS:
        problems.append(
            MatrixProblem(
                TOO_MANY,
                at,
                count,
                f"the matrix makes {count} items (the product of its parameters' value counts)",
                MAX_ITEMS,
            )
        )
        return None
    return tuple(names), columns


def bound_of(matrix: Any, key: str, at: str = "", problems: list[MatrixProblem] | None = None) -> int | None:
    """The matrix's `maxParallel` or `maxItems` (`key`), None when unset or unusable (said in `problems`
    at `at`, when given: an integer 1 to 256)."""
    value = matrix.get(key) if isinstance(matrix, Mapping) else None
    if value is None:
        return None
    # bool is an int in Python, never one in JSON.
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ITEMS:
        return value
    if problems is not None:
        problems.append(
            MatrixProblem(INVALID, f"{at}.{key}", value, f"must be an integer from 1 to {MAX_ITEMS}")
        )
    return None


def count_items(columns: Sequence[Sequence[str]]) -> int:
    """How many items the columns make (their product), without making them."""
    count = 1
    for column in columns:
        count *= len(column)
    return count


def _values(
    param: Mapping[str, Any], path: str, arguments: Mapping[str, Any], problems: list[MatrixProblem]
) -> list[str] | None:
    values, source = param.get("values"), param.get("valueFrom")
    if values is not None and source is not None:
        problems.append(
            MatrixProblem(
                FORBIDDEN, path + ".valueFrom", None, "may not be specified together with values: set one"
            )
        )
        return None
    if values is None and source is None:
        problems.append(
            MatrixProblem(
                REQUIRED, path + ".values", None, "set exactly one of values and valueFrom.argument"
            )
        )
        return None
    if values is not None:
        return _strings(values, path + ".values", problems)
    at = path + ".valueFrom.argument"
    argument = source.get("argument") if isinstance(source, Mapping) else None
    if not isinstance(argument, str) or not argument:
        problems.append(MatrixProblem(REQUIRED, at, None, "the flow argument that holds the values"))
        return None
    if argument not in arguments:
        known = ", ".join(sorted(arguments)) or "none"
        problems.append(
            MatrixProblem(NOT_FOUND, at, argument, f"spec.arguments.parameters has no such name ({known})")
        )
        return None
    text = arguments[argument]
    why = _array_problem(text)
    if why is not None:
        problems.append(
            MatrixProblem(
                INVALID,
                at,
                argument,
                f"the value of argument {json.dumps(argument)} must be {ARRAY}: {why}",
            )
        )
        return None
    found: list[str] = json.loads(text)
    return found


def _array_problem(text: Any) -> str | None:
    """Why an argument's value is not a JSON array of 1-256 strings (each at most MAX_VALUE), or None."""
    if not isinstance(text, str):
        return "it is not a string"
    try:
        found = json.loads(text)
    except ValueError:
        return f"{json.dumps(text[:80])} is not JSON"
    if not isinstance(found, list):
        return "it is JSON, but not an array"
    if not found:
        return "the array is empty"
    if len(found) > MAX_VALUES:
        return f"the array has {len(found)} items"
    if not all(isinstance(v, str) for v in found):
        return "an item is not a string"
    if any(len(v) > MAX_VALUE for v in found):
        return f"an item is longer than {MAX_VALUE} characters"
    return None


def _strings(values: Any, path: str, problems: list[MatrixProblem]) -> list[str] | None:
    if not isinstance(values, list | tuple) or not values:
        problems.append(MatrixProblem(REQUIRED, path, None, "1 to 256 strings"))
        return None
    if len(values) > MAX_VALUES:
        problems.append(MatrixProblem(TOO_MANY, path, len(values), "", MAX_VALUES))
        return None
    good = True
    for k, value in enumerate(values):
        if not isinstance(value, str):
            problems.append(MatrixProblem(INVALID, f"{path}[{k}]", value, "must be a string"))
            good = False
        elif len(value) > MAX_VALUE:
            problems.append(
                MatrixProblem(INVALID, f"{path}[{k}]", value, f"must be no more than {MAX_VALUE} characters")
            )
            good = False
    return list(values) if good else None


def describe(problem: MatrixProblem) -> str:
    """A problem in one line, as the controller's Valid=False condition says it."""
    value = "" if problem.value is None else f": {json.dumps(problem.value, default=str)}"
    limit = f" (at most {problem.limit})" if problem.limit else ""
    detail = f": {problem.detail}" if problem.detail else ""
    return f"{problem.path}: {problem.kind}{value}{limit}{detail}"
