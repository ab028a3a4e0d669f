"""One item step of a matrix step, the stand-in of one that cannot be expanded, a dependent's fan-in,
and what a dependent reads of the items' outputs: pure (core/matrix.py puts them together)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from zen_flow.api.constants import ANNOTATION_MATRIX
from zen_flow.core.matrix_parameters import MATRIX, input_names


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


def stand_in(step: Any) -> Any:
    """A matrix step that cannot be expanded, as one step: its matrix parameters (those with a usable
    name) as empty values, so that its template's placeholders still resolve for the other rules."""
    if not isinstance(step, Mapping):
        return step
    matrix = step.get(MATRIX)
    params = matrix.get("parameters") if isinstance(matrix, Mapping) else None
    inputs = input_names(step)
    names = [
        p["name"]
        for p in (params if isinstance(params, list | tuple) else ())
        if isinstance(p, Mapping) and isinstance(p.get("name"), str) and p["name"] and p["name"] not in inputs
    ]
    return _with_inputs(step, dict.fromkeys(names, ""))


def item_step(step: Mapping[str, Any], name: str, item: str, given: Mapping[str, str]) -> dict[str, Any]:
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


def fan_in(step: Any, groups: Mapping[str, tuple[str, ...]]) -> Any:
    """`step` depending on every item of the matrix steps it names. The first item takes the matrix
    step's place and the others are appended, so every other dependency keeps its index (and its field
    path in the validator's errors), but after an item the step also names itself, kept once."""
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
    # Each name once, at its first place: `[build, build-0]` would name build-0 twice. (Not a set of
    # everything: a dependency that is no string is the validator's to report, and may not hash.)
    seen: set[str] = set()
    kept: list[Any] = []
    for dep in [*first, *rest]:
        if isinstance(dep, str):
            if dep in seen:
                continue
            seen.add(dep)
        kept.append(dep)
    return {**step, "dependencies": kept}


def aggregate(values: Sequence[str | None]) -> str:
    """The value a dependent reads as `<matrix step>:$.outputs.parameters.NAME`: a JSON array of every
    item's value in index order, null for an item without one (skipped, or failed and continued)."""
    return json.dumps(list(values), ensure_ascii=False, separators=(",", ":"))
