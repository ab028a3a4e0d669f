"""Values supplied when a Manual gate is approved, said once for the webhook, the validator, the planner
and the CLI (which must never disagree on what a gate's values are).

A Manual step declares them as output parameters whose `valueFrom` is `supplied: {default, enum,
description}` (Argo's suspend step); the user gives them on the flow, in the annotation
`values.workflow.kube-zen.io/<step>`, a JSON object of strings: `{"env": "prod"}` (`zen-flow approve
FLOW STEP -p env=prod`). When the gate is approved they become its outputs, read by later steps as any
step's outputs are. A value is at most MAX_VALUE_BYTES, as any output value (the status must stay
small); only declared names are taken, so one annotation holds at most the 32 outputs a step declares.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from zen_flow.api.jobflow import Step
from zen_flow.core.jsonpath import surrogate_problem

# As planner/outputs.py MAX_VALUE_BYTES: a supplied value is stored as any output value.
MAX_VALUE_BYTES = 1024
EXAMPLE = '{"env": "prod"}'


@dataclass(frozen=True, slots=True)
class Supplied:
    """One supplied output parameter of a gate: its name, default (None: a value must be given) and the
    values allowed (empty: any)."""

    name: str
    default: str | None = None
    enum: tuple[str, ...] = ()


class ValuesError(ValueError):
    """The annotation is not a JSON object of strings; the message says so."""


def supplied_of(step: Step) -> tuple[Supplied, ...]:
    """The supplied output parameters a (decoded) step declares."""
    params = step.outputs.parameters if step.outputs is not None else ()
    return tuple(
        Supplied(p.name, p.value_from.supplied.default, p.value_from.supplied.enum)
        for p in params
        if p.value_from is not None and p.value_from.supplied is not None
    )


def read_values(text: str | None) -> dict[str, str]:
    """The annotation's values ({} when it is absent); ValuesError for anything but an object of strings."""
    if text is None:
        return {}
    try:
        found = json.loads(text)
    except (ValueError, RecursionError):
        raise ValuesError(f"must be a JSON object of strings, e.g. {EXAMPLE}: it is not JSON") from None
    if not isinstance(found, dict):
        raise ValuesError(f"must be a JSON object of strings, e.g. {EXAMPLE}")
    for name, value in found.items():
        if not isinstance(value, str):
            raise ValuesError(f"must be a JSON object of strings, e.g. {EXAMPLE}: {name!r} is not a string")
        # `"\\ud800"` is valid JSON that Python reads into text no status write could carry.
        if (problem := surrogate_problem(name) or surrogate_problem(value)) is not None:
            raise ValuesError(f"must be a JSON object of strings, e.g. {EXAMPLE}: {name!a} {problem}")
    return found


def value_problem(param: Supplied, value: str) -> str | None:
    """Why `value` cannot be parameter `param`'s, or None."""
    if param.enum and value not in param.enum:
        return f"value {value!r} of parameter {param.name!r} is not one of: {', '.join(param.enum)}"
    size = len(value.encode())
    if size > MAX_VALUE_BYTES:
        return f"value of parameter {param.name!r} has {size} bytes, more than the limit of {MAX_VALUE_BYTES}"
    return None


def unknown_names(params: Sequence[Supplied], values: Mapping[str, str]) -> list[str]:
    declared = {p.name for p in params}
    return sorted(name for name in values if name not in declared)


def missing(params: Sequence[Supplied], values: Mapping[str, str]) -> list[str]:
    """The parameters with neither a value nor a default: an approval cannot open the gate."""
    return [p.name for p in params if p.name not in values and p.default is None]


def gate_values(params: Sequence[Supplied], text: str | None) -> dict[str, str]:
    """Every supplied parameter's value (given, else its default), in declaration order, as the planner
    records them when the gate is approved; ValuesError naming the first parameter that has none or
    whose value is not allowed, or a name the gate does not declare (a typo would else leave the value
    meant for it unused, and its default taken, in a flow the webhook did not check)."""
    values = read_values(text)
    if unknown := unknown_names(params, values):
        declared = ", ".join(p.name for p in params)
        raise ValuesError(f"the gate has no supplied output parameter {unknown[0]!r} (declared: {declared})")
    out: dict[str, str] = {}
    for param in params:
        value = values.get(param.name, param.default)
        if value is None:
            raise ValuesError(f"needs a value for parameter {param.name!r} (it has no default)")
        if (problem := value_problem(param, value)) is not None:
            raise ValuesError(problem)
        out[param.name] = value
    return out
