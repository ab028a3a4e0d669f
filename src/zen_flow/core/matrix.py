"""Matrix fan-out (`spec.steps[].matrix`): a step run once per combination of values, expanded: pure.

A matrix step `build` with parameters `os: [linux, darwin]` and `arch: [amd64, arm64]` stands for the
item steps `build-0` ... `build-3`, one per combination in product order (the first parameter varies
slowest), each a copy of the step without `matrix`, with one literal input parameter per matrix
parameter appended (`{name: os, value: linux}`) and the annotation `workflow.kube-zen.io/matrix` (the
item's values as a JSON object) in its `metadata`, so its Job and pod carry it. A step that depends on
`build` depends on every item instead (fan-in). Nothing else is new at run time: the validator, the
planner and the CLI all work on this *effective* flow, so every item is checked and run as an ordinary
step. The stored flow keeps its `matrix` (unlike a templateRef, nothing is written back).

`expand_matrix` works on the raw spec (a dict as the apiserver holds it) and never raises: a matrix it
cannot expand is a `MatrixProblem` with the field's path, and its step stays one step (its matrix
parameters as empty input values), so the other rules still check the rest of the flow. A spec with no
matrix comes back as the very same object, for the cost of one look at each step.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Any

from pydantic import ValidationError

from zen_flow.api.constants import ANNOTATION_MATRIX
from zen_flow.api.jobflow import JobFlow, JobFlowSpec
from zen_flow.core.naming import MAX_NAME, is_dns1123_subdomain

MATRIX = "matrix"
MAX_PARAMETERS = 8  # CRD maxItems
MAX_VALUES = 256  # per parameter, CRD maxItems
MAX_VALUE = 4096  # characters of one value, CRD maxLength
MAX_ITEMS = 256  # items of one matrix step (the product of its parameters' value counts)
MAX_EFFECTIVE_STEPS = 500  # validation.limits.MAX_STEPS: the flow after expansion

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


@dataclass(frozen=True)
class MatrixExpansion:
    """The effective spec; `groups`: each expanded matrix step's items in index order; `origins`: for
    each effective step, the index in `spec.steps` of the step it comes from (None when no matrix)."""

    spec: Mapping[str, Any]
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    origins: tuple[int, ...] | None = None
    problems: tuple[MatrixProblem, ...] = ()
    values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # item -> its values


def has_matrix(spec: Any) -> bool:
    """Does a raw spec have a step with `matrix` (cheap: one key lookup per step)?"""
    steps = spec.get("steps") if isinstance(spec, Mapping) else None
    # isinstance of dict, not of Mapping (an ABC check, 4 times slower): a decoded spec holds dicts.
    return isinstance(steps, list | tuple) and any(
        isinstance(s, dict) and s.get(MATRIX) is not None for s in steps
    )


def expand_matrix(spec: Mapping[str, Any]) -> MatrixExpansion:
    """The effective spec of `spec` (see the module's docstring); `spec` itself when it has no matrix."""
    if not has_matrix(spec):
        return MatrixExpansion(spec)
    steps: list[Any] = list(spec["steps"])
    arguments = _arguments(spec.get("arguments"))
    problems: list[MatrixProblem] = []
    names = {s.get("name"): i for i, s in reversed(list(enumerate(steps))) if isinstance(s, Mapping)}
    # Each matrix step's parameter names and value columns (None: it cannot be expanded). The items
    # are only built once their count is known to fit: 500 steps of 256 items would be 128,000.
    combos: dict[int, tuple[tuple[str, ...], list[list[str]]] | None] = {}
    for i, step in enumerate(steps):
        if isinstance(step, Mapping) and step.get(MATRIX) is not None:
            combos[i] = _combinations(step, f"spec.steps[{i}]", arguments, problems)
    counts = {i: _count(found[1]) for i, found in combos.items() if found is not None}
    total = len(steps) - len(counts) + sum(counts.values())
    if total > MAX_EFFECTIVE_STEPS:
        biggest = max(counts, key=counts.__getitem__)
        problems.append(
            MatrixProblem(
                TOO_MANY,
                "spec.steps",
                total,
                f"the flow would have {total} steps once its matrix steps are expanded into their items "
                f"(spec.steps[{biggest}].matrix alone makes {counts[biggest]}): use fewer items or steps",
                MAX_EFFECTIVE_STEPS,
            )
        )
        combos = dict.fromkeys(combos)  # no item is built: each matrix step stays one stand-in
    taken: dict[str, str] = {}  # item name -> the path of the step it comes from
    for i, found in combos.items():
        if found is None:
            continue
        name = steps[i].get("name")
        path = f"spec.steps[{i}]"
        if not isinstance(name, str) or not name:
            combos[i] = None  # the validator reports the name
            continue
        count = counts[i]
        longest = f"{name}-{count - 1}"
        if len(longest) > MAX_NAME:
            problems.append(
                MatrixProblem(
                    INVALID,
                    path + "." + MATRIX,
                    longest,
                    f"its items are named {name}-0 to {longest}, step names that must be no more than "
                    f"{MAX_NAME} characters (they are label values): shorten the step's name or use "
                    "fewer items",
                )
            )
            combos[i] = None
            continue
        clash = next(
            (
                (item, where)
                for k in range(count)
                if (item := f"{name}-{k}") in names or item in taken
                for where in (taken.get(item) or f"spec.steps[{names[item]}]",)
            ),
            None,
        )
        if clash is not None:
            problems.append(
                MatrixProblem(
                    DUPLICATE,
                    path + ".name",
                    clash[0],
                    f"its matrix item {clash[0]} has the name of {_whose(clash[1])}: rename one",
                )
            )
            combos[i] = None
            continue
        taken.update((f"{name}-{k}", path) for k in range(count))
    groups: dict[str, tuple[str, ...]] = {}
    values: dict[str, dict[str, str]] = {}
    effective: list[Any] = []
    origins: list[int] = []
    for i, step in enumerate(steps):
        if i not in combos:
            effective.append(step)
            origins.append(i)
            continue
        found = combos[i]
        if found is None:
            effective.append(_stand_in(step))
            origins.append(i)
            continue
        params, columns = found
        name = step["name"]
        items = tuple(f"{name}-{k}" for k in range(counts[i]))
        groups[name] = items
        for item, row in zip(items, product(*columns), strict=True):
            given = dict(zip(params, row, strict=True))
            values[item] = given
            effective.append(_item(step, name, item, given))
            origins.append(i)
    if groups:
        effective = [_fan_in(s, groups) for s in effective]
    return MatrixExpansion({**spec, "steps": effective}, groups, tuple(origins), tuple(problems), values)


def _whose(path: str) -> str:
    return f"the step at {path}" if path.startswith("spec.steps[") else path


def _arguments(raw: Any) -> dict[str, Any]:
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


def _input_names(step: Mapping[str, Any]) -> set[str]:
    inputs = step.get("inputs")
    params = inputs.get("parameters") if isinstance(inputs, Mapping) else None
    return {
        p["name"]
        for p in (params if isinstance(params, list | tuple) else ())
        if isinstance(p, Mapping) and isinstance(p.get("name"), str)
    }


def _combinations(
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
                "a Manual step is an approval gate and cannot fan out; put the matrix on a Job step",
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
    inputs = _input_names(step)
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
    if len(problems) > before:
        return None
    count = _count(columns)
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


def _count(columns: Sequence[Sequence[str]]) -> int:
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


def _with_inputs(step: Mapping[str, Any], given: Mapping[str, str]) -> dict[str, Any]:
    """`step` without `matrix`, with one literal input parameter per entry of `given` appended."""
    out = {k: v for k, v in step.items() if k != MATRIX}
    inputs = step.get("inputs")
    if inputs is None or isinstance(inputs, Mapping):
        inputs = dict(inputs or {})
        params = inputs.get("parameters")
        if params is None or isinstance(params, list | tuple):
            extra = [{"name": n, "value": v} for n, v in given.items()]
            inputs["parameters"] = [*(params or ()), *extra]
            out["inputs"] = inputs
    return out


def _stand_in(step: Any) -> Any:
    """A matrix step that cannot be expanded, as one step: its matrix parameters (those with a usable
    name) as empty values, so that its template's placeholders still resolve for the other rules."""
    if not isinstance(step, Mapping):
        return step
    matrix = step.get(MATRIX)
    params = matrix.get("parameters") if isinstance(matrix, Mapping) else None
    inputs = _input_names(step)
    names = [
        p["name"]
        for p in (params if isinstance(params, list | tuple) else ())
        if isinstance(p, Mapping) and isinstance(p.get("name"), str) and p["name"] and p["name"] not in inputs
    ]
    return _with_inputs(step, dict.fromkeys(names, ""))


def _item(step: Mapping[str, Any], name: str, item: str, given: Mapping[str, str]) -> dict[str, Any]:
    out = _with_inputs(step, given)
    out["name"] = item
    meta = step.get("metadata")
    if meta is None or isinstance(meta, Mapping):
        meta = dict(meta or {})
        notes = meta.get("annotations")
        if notes is None or isinstance(notes, Mapping):
            text = json.dumps(dict(given), ensure_ascii=False, separators=(",", ":"))
            meta["annotations"] = {**(notes or {}), ANNOTATION_MATRIX: text}
            out["metadata"] = meta
    outputs = step.get("outputs")
    if isinstance(outputs, Mapping) and _reads_own_prefix(outputs, name):
        # An output's jsonPath may name its own step (`build:$.succeeded`): each item reads its own Job.
        out["outputs"] = {
            **outputs,
            "parameters": [_renamed_output(p, name, item) for p in outputs["parameters"]],
        }
    return out


def _reads_own_prefix(outputs: Mapping[str, Any], name: str) -> bool:
    params = outputs.get("parameters")
    return isinstance(params, list | tuple) and any(_json_path(p).startswith(name + ":") for p in params)


def _json_path(param: Any) -> str:
    source = param.get("valueFrom") if isinstance(param, Mapping) else None
    found = source.get("jsonPath") if isinstance(source, Mapping) else None
    return found if isinstance(found, str) else ""


def _renamed_output(param: Any, name: str, item: str) -> Any:
    path = _json_path(param)
    if not path.startswith(name + ":"):
        return param
    return {**param, "valueFrom": {**param["valueFrom"], "jsonPath": item + path[len(name) :]}}


def _fan_in(step: Any, groups: Mapping[str, tuple[str, ...]]) -> Any:
    """`step` depending on every item of the matrix steps it names. The first item takes the matrix
    step's place and the others are appended, so every other dependency keeps its index (and its field
    path in the validator's errors)."""
    deps = step.get("dependencies") if isinstance(step, Mapping) else None
    if not isinstance(deps, list | tuple) or not any(isinstance(d, str) and d in groups for d in deps):
        return step
    first: list[Any] = []
    rest: list[str] = []
    for dep in deps:
        items = groups.get(dep) if isinstance(dep, str) else None
        if items is None:
            first.append(dep)
        else:
            first.append(items[0])
            rest.extend(items[1:])
    return {**step, "dependencies": [*first, *rest]}


def item_values(expansion: MatrixExpansion, item: str) -> Mapping[str, str] | None:
    """The matrix values an item runs with, None for a step that is no item."""
    return expansion.values.get(item)


def aggregate(values: Sequence[str | None]) -> str:
    """The value a dependent reads as `<matrix step>:$.outputs.parameters.NAME`: a JSON array of every
    item's value in index order, null for an item without one (skipped, or failed and continued)."""
    return json.dumps(list(values), ensure_ascii=False, separators=(",", ":"))


def effective_spec(spec: JobFlowSpec) -> tuple[JobFlowSpec, tuple[MatrixProblem, ...]]:
    """`expand_matrix` of a decoded spec (the controller's and the CLI's): the effective spec, with its
    `matrix_groups`, and the problems; `spec` itself when it has no matrix. A spec with problems still
    comes back expanded as far as it can be (its broken matrix steps as one step each)."""
    if not any(s.matrix is not None for s in spec.steps):
        return spec, ()
    expansion = expand_matrix(spec.model_dump(by_alias=True, exclude_none=True, mode="json"))
    try:
        found = JobFlowSpec.model_validate(expansion.spec)
    except ValidationError as err:  # not expected (the items are made of the model's own fields): never raise
        why = MatrixProblem(
            INVALID, "spec.steps", None, f"its items do not parse: {err.error_count()} errors"
        )
        return spec, (*expansion.problems, why)
    return found.model_copy(update={"matrix_groups": dict(expansion.groups)}), expansion.problems


def effective_flow(flow: JobFlow) -> JobFlow:
    """`flow` with its effective spec (`effective_spec`), `flow` itself when it has no matrix."""
    spec, _ = effective_spec(flow.spec)
    return flow if spec is flow.spec else flow.model_copy(update={"spec": spec})


def describe(problem: MatrixProblem) -> str:
    """A problem in one line, as the controller's Valid=False condition says it."""
    value = "" if problem.value is None else f": {json.dumps(problem.value, default=str)}"
    limit = f" (at most {problem.limit})" if problem.limit else ""
    detail = f": {problem.detail}" if problem.detail else ""
    return f"{problem.path}: {problem.kind}{value}{limit}{detail}"
