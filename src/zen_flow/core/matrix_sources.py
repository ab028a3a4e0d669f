"""Matrix values from an earlier step's output at run time (`valueFrom.jsonPath`, Argo's `withParam`): pure.

`matrix.parameters[].valueFrom.jsonPath: "gen:$.outputs.parameters.list"` names an output parameter of
a Job step the matrix step lists in its `dependencies`; its value, a JSON array, is known only once
`gen` has succeeded. So the effective flow (core/matrix.py) depends on the flow's status too: until
then the matrix step is one *stand-in* step of its own name (it depends on `gen`, so it cannot start,
and its dependents depend on it); once `gen` has succeeded, the array is read from `status.steps` and
the step expands into its items as a static matrix does, or, when there is nothing to run or the value
cannot be used, stays the stand-in with a *verdict* the planner applies when it is ready: Skipped (an
empty array, or `gen` did not succeed) or Failed (not an array of 1-256 usable values, too many steps,
names that clash), its message naming the field. Admission (no status) checks the reference only.

Elements: strings as they are; numbers and booleans as their JSON text (`[1, true]` gives "1" and
"true", as a shell would print them); null, objects and arrays are refused (an item's value is one
input parameter, a string).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from zen_flow.api.constants import StepPhase
from zen_flow.api.flow_status import StepStatus
from zen_flow.api.jobflow import JobFlowSpec
from zen_flow.api.jobflow import MatrixVerdict as Verdict
from zen_flow.core.jsonpath import JsonPathError, parse, read_json, surrogate_problem
from zen_flow.core.matrix_parameters import (
    DUPLICATE,
    FORBIDDEN,
    INVALID,
    MATRIX,
    MAX_ITEMS,
    MAX_ITEMS_FIELD,
    MAX_VALUE,
    MAX_VALUES,
    NOT_FOUND,
    MatrixProblem,
    bound_of,
    is_manual_step,
    parameter_names,
)
from zen_flow.core.naming import MAX_NAME

JSON_PATH = "jsonPath"
FORM = '"<step>:$.outputs.parameters.<name>"'
PENDING, SKIPPED, FAILED = StepPhase.PENDING.value, StepPhase.SKIPPED.value, StepPhase.FAILED.value
_DONE = (StepPhase.SUCCEEDED.value, StepPhase.FAILED.value, StepPhase.SKIPPED.value)


@dataclass(frozen=True, slots=True)
class SourceState:
    """What the status says of one source: the step's phase and its output's value (None: none)."""

    phase: str
    value: str | None


# (step, output parameter) -> its state; the controller's cache key (controller/matrix_flows.py).
Sources = Mapping[tuple[str, str], SourceState]


def parse_source(text: Any) -> tuple[str, str] | None:
    """(step, output parameter) of `<step>:$.outputs.parameters.<name>`, None for any other text."""
    if not isinstance(text, str):
        return None
    step, colon, expr = text.partition(":")
    if not colon or not step or text.startswith("$"):
        return None
    try:
        segments = parse(expr)
    except JsonPathError:
        return None
    if len(segments) != 3 or segments[:2] != ("outputs", "parameters") or not isinstance(segments[2], str):
        return None
    return step, segments[2]


def dynamic_parameters(step: Any) -> list[tuple[int, tuple[str, str] | None]]:
    """The indexes of the step's matrix parameters with `valueFrom.jsonPath`, each with its source
    (None when the text is not of the form)."""
    matrix = step.get(MATRIX) if isinstance(step, Mapping) else None
    params = matrix.get("parameters") if isinstance(matrix, Mapping) else None
    found: list[tuple[int, tuple[str, str] | None]] = []
    for j, param in enumerate(params if isinstance(params, list | tuple) else ()):
        source = param.get("valueFrom") if isinstance(param, Mapping) else None
        if isinstance(source, Mapping) and source.get(JSON_PATH) is not None:
            found.append((j, parse_source(source[JSON_PATH])))
    return found


def step_sources(step: Any) -> tuple[str, ...]:
    """The steps whose outputs the step's matrix reads, each once."""
    return tuple(dict.fromkeys(s[0] for _, s in dynamic_parameters(step) if s is not None))


def is_dynamic(step: Any) -> bool:
    return bool(dynamic_parameters(step))


def source_problems(steps: Sequence[Any], i: int) -> list[MatrixProblem]:
    """What is wrong with the `valueFrom.jsonPath` references of `steps[i]` (admission's rules)."""
    step = steps[i]
    by_name = {s["name"]: s for s in steps if isinstance(s, Mapping) and isinstance(s.get("name"), str)}
    deps = step.get("dependencies")
    deps = deps if isinstance(deps, list | tuple) else ()
    problems: list[MatrixProblem] = []
    for j, source in dynamic_parameters(step):
        at = f"spec.steps[{i}].{MATRIX}.parameters[{j}].valueFrom"
        raw = step[MATRIX]["parameters"][j]["valueFrom"]
        if raw.get("argument") is not None:
            problems.append(MatrixProblem(FORBIDDEN, at, None, "set exactly one of argument and jsonPath"))
        if step[MATRIX]["parameters"][j].get("values") is not None:  # else silently dropped at run time
            problems.append(
                MatrixProblem(FORBIDDEN, at, None, "may not be specified together with values: set one")
            )
        at += "." + JSON_PATH
        text = raw[JSON_PATH]
        if source is None:
            problems.append(MatrixProblem(INVALID, at, text, f"must be {FORM}, an earlier step's output"))
            continue
        ref, output = source
        found = by_name.get(ref)
        if ref == step.get("name"):
            problems.append(MatrixProblem(INVALID, at, text, "a matrix step cannot read its own output"))
        elif not isinstance(found, Mapping):
            problems.append(MatrixProblem(NOT_FOUND, at, text, f"this flow has no step {json.dumps(ref)}"))
        elif found.get(MATRIX) is not None:
            problems.append(
                MatrixProblem(
                    FORBIDDEN,
                    at,
                    text,
                    f"step {json.dumps(ref)} is a matrix step itself: read the items of one Job step",
                )
            )
        elif is_manual_step(found):
            problems.append(MatrixProblem(INVALID, at, text, f"step {json.dumps(ref)} is no Job step"))
        elif output not in (declared := parameter_names(found, "outputs")):
            problems.append(
                MatrixProblem(
                    NOT_FOUND,
                    at,
                    text,
                    f"step {json.dumps(ref)} has no output parameter {json.dumps(output)} "
                    f"(its outputs.parameters: {', '.join(sorted(declared)) or 'none'})",
                )
            )
        elif ref not in deps:
            problems.append(
                MatrixProblem(
                    INVALID,
                    at,
                    text,
                    f"the step must list {json.dumps(ref)} in its dependencies: its items are known "
                    "only once that step has succeeded",
                )
            )
    name = step.get("name")
    if not isinstance(name, str):
        return problems
    # Its items are known only at run time, where a name too long or taken would fail the step: refused
    # now, as a static matrix's are, for every item it may make (its maxItems, 256 unset).
    bound = bound_of(step[MATRIX], MAX_ITEMS_FIELD) or MAX_ITEMS
    longest = f"{name}-{bound - 1}"
    if len(longest) > MAX_NAME:
        problems.append(
            MatrixProblem(
                INVALID,
                f"spec.steps[{i}].{MATRIX}",
                longest,
                f"its matrix items, {name}-0 to at most {longest} (their number is known at run time, "
                f"at most its {MAX_ITEMS_FIELD}, {MAX_ITEMS} unset), are step names that must be no more "
                f"than {MAX_NAME} characters (they are label values): shorten the step's name or lower "
                f"{MAX_ITEMS_FIELD}",
            )
        )
    clash = next((item for k in range(bound) if (item := f"{name}-{k}") in by_name), None)
    if clash is not None:
        problems.append(
            MatrixProblem(
                DUPLICATE,
                f"spec.steps[{i}].name",
                clash,
                f"its matrix items, {name}-0 to at most {longest} (their number is known at run time), "
                f"would include {clash}, the name of the step at "
                f"spec.steps[{steps.index(by_name[clash])}]: rename one",
            )
        )
    return problems


def wanted_sources(spec: JobFlowSpec) -> frozenset[tuple[str, str]]:
    """Every (step, output parameter) the decoded spec's matrices read."""
    return frozenset(
        found
        for step in spec.steps
        if step.matrix is not None
        for p in step.matrix.parameters
        if p.value_from is not None and (found := parse_source(p.value_from.json_path)) is not None
    )


def read_sources(spec: JobFlowSpec, status: Iterable[StepStatus]) -> dict[tuple[str, str], SourceState]:
    """The state of every source the spec's matrices read, from the flow's `status.steps`."""
    return source_states(wanted_sources(spec), status)


def source_states(
    wanted: Iterable[tuple[str, str]], status: Iterable[StepStatus]
) -> dict[tuple[str, str], SourceState]:
    """The state of each of `wanted` in `status.steps`. A source that has not ended is Pending whatever
    it is doing (Running, Retrying), with no value: the state only changes when the items may."""
    wanted = sorted(wanted)
    if not wanted:
        return {}
    entries = {s.name: s for s in status}
    found: dict[tuple[str, str], SourceState] = {}
    for ref, output in wanted:
        entry = entries.get(ref)
        if entry is None or entry.phase not in _DONE:
            found[ref, output] = SourceState(PENDING, None)
            continue
        params = entry.outputs.parameters if entry.outputs is not None else ()
        value = next((p.value for p in params if p.name == output), None)
        found[ref, output] = SourceState(entry.phase, value)
    return found


def resolved_step(
    step: Mapping[str, Any], i: int, sources: Sources | None
) -> tuple[Mapping[str, Any] | None, Verdict | None]:
    """`step` with each `valueFrom.jsonPath` parameter's values read from `sources` (then it expands as
    a static matrix), or (None, the verdict) when it stays the stand-in; (None, None) at admission (no
    sources) or when a reference is broken (`source_problems` says why)."""
    params = step[MATRIX]["parameters"]
    if sources is None:
        return None, None
    columns: dict[int, list[str]] = {}
    verdicts: list[tuple[str, str]] = []
    for j, source in dynamic_parameters(step):
        if source is None:
            return None, None
        at = f"spec.steps[{i}].{MATRIX}.parameters[{j}].valueFrom.{JSON_PATH}"
        ref, output = source
        state = sources.get(source, SourceState(PENDING, None))
        if state.phase not in _DONE:
            verdicts.append(
                (PENDING, f"waiting for the items of its matrix from step {ref}'s output {output}")
            )
        elif state.phase != StepPhase.SUCCEEDED.value:
            verdicts.append(
                (SKIPPED, f"{at}: its matrix items come from step {ref}'s output, and {ref} is {state.phase}")
            )
        elif state.value is None:
            verdicts.append((FAILED, f"{at}: step {ref} succeeded without output parameter {output}"))
        else:
            values, why = read_array(state.value)
            if why is not None:
                verdicts.append((FAILED, f"{at}: step {ref}'s output {output} must be {ARRAY}: {why}"))
            elif not values:
                verdicts.append((SKIPPED, f"{at}: step {ref}'s output {output} is an empty array: no items"))
            else:
                columns[j] = values
    if verdicts:
        # A failure is said before a skip, a skip before a wait: the step cannot start before its
        # sources (its dependencies) ended, so a wait with another verdict is never the last word.
        order = (FAILED, SKIPPED, PENDING)
        phase, why = min(verdicts, key=lambda v: order.index(v[0]))
        return None, Verdict(phase, why, step_sources(step))
    out = [{"name": p.get("name"), "values": columns[j]} if j in columns else p for j, p in enumerate(params)]
    return {**step, MATRIX: {**step[MATRIX], "parameters": out}}, None


ARRAY = f"a JSON array of at most {MAX_VALUES} strings (numbers and booleans count as their JSON text)"


def read_array(text: str) -> tuple[list[str], str | None]:
    """The values of an output holding a JSON array, or why it does not."""
    nested = _nested(text)
    if nested is not None:
        # Refused before parsing: `[[[...` a thousand deep (it fits an output's 1 KiB) would raise
        # RecursionError out of json, and only a flat array of scalars is usable anyway.
        return [], nested
    try:
        found = read_json(text)
    except ValueError:
        return [], f"{json.dumps(text[:80])} is not JSON"
    if not isinstance(found, list):
        return [], "it is JSON, but not an array"
    if len(found) > MAX_VALUES:
        return [], f"the array has {len(found)} items"
    values: list[str] = []
    for k, item in enumerate(found):
        if isinstance(item, str):
            value = item
        elif isinstance(item, bool | int | float):
            value = json.dumps(item)
        else:
            kind = "null" if item is None else "an object" if isinstance(item, dict) else "an array"
            return [], f"item {k} is {kind}, not a string"
        if len(value) > MAX_VALUE:
            return [], f"item {k} is longer than {MAX_VALUE} characters"
        if (problem := surrogate_problem(value)) is not None:
            return [], f"item {k} {problem}"
        values.append(value)
    return values, None


def _nested(text: str) -> str | None:
    """Why the text is no flat array, when something in it is nested (an array or an object in an
    array or an object), in one pass that skips strings, so that no nesting reaches the parser; None
    otherwise (json.loads then reads it)."""
    depth, item, in_string, escaped = 0, 0, False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > 1:
                if text.lstrip().startswith("["):
                    return f"item {item} is {'an array' if char == '[' else 'an object'}, not a string"
                return "it is not a JSON array"
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 1:
            item += 1
    return None
