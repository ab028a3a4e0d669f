"""`-p NAME=VALUE`: a flow's arguments (spec.arguments.parameters) overridden when it is read from a file,
and the values a Manual gate asks for given with its approval (`gate_values_patch`).

Only declared arguments may be overridden: a name the flow does not declare is an error naming it
(a typo must not silently run with the default). The result is validated like any flow, so an enum
violation reads exactly as the webhook would report it. A flow made from a JobFlowTemplate
(`spec.templateRef`, no steps) declares nothing itself: its template does, which only the cluster has, so
each `-p` sets a value of the flow's arguments and the webhook refuses a name the template does not
declare (`template_arguments` builds them for `zen-flow submit --from-template`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from typing import Any

from zen_flow.api import JobFlow, Step
from zen_flow.api.constants import APPROVE_PREFIX, VALUES_PREFIX
from zen_flow.cli.session import UsageError
from zen_flow.core.decision_values import is_true
from zen_flow.core.gate_values import (
    ValuesError,
    missing,
    read_values,
    supplied_of,
    unknown_names,
    value_problem,
)
from zen_flow.validation.errors import FieldError, not_found

ARGUMENTS = "spec.arguments.parameters"


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    """{name: value} from NAME=VALUE strings (the value may hold '='; the last of a repeated name wins)."""
    out: dict[str, str] = {}
    for item in items:
        name, equals, value = item.partition("=")
        if not equals or not name:
            raise ValueError(f"-p {item!r}: expected NAME=VALUE")
        out[name] = value
    return out


def override_arguments(doc: Mapping[str, Any], overrides: Mapping[str, str]) -> tuple[Any, list[FieldError]]:
    """A copy of the JobFlow `doc` with the arguments' values replaced, and an error per unknown name."""
    if not overrides:
        return doc, []
    flow = copy.deepcopy(dict(doc))
    spec = flow.get("spec")
    arguments = spec.get("arguments") if isinstance(spec, dict) else None
    params = arguments.get("parameters") if isinstance(arguments, dict) else None
    declared = {p.get("name"): p for p in params or () if isinstance(p, dict)}
    if isinstance(spec, dict) and spec.get("templateRef") is not None and spec.get("steps") is None:
        given: dict[str, Any] = {str(n): p.get("value") for n, p in declared.items()}
        given.update(overrides)
        spec["arguments"] = {**(arguments or {}), **template_arguments(given)}
        return flow, []
    errors = []
    for name, value in overrides.items():
        if name in declared:
            declared[name]["value"] = value
        else:
            known = ", ".join(sorted(str(n) for n in declared)) or "none"
            errors.append(not_found(ARGUMENTS, name, f"the flow declares no such argument ({known})"))
    return flow, errors


def gate_values_patch(flow: JobFlow, step: Step, items: list[str]) -> dict[str, str]:
    """The values annotation `-p NAME=VALUE` writes on an approved gate, merged over those already given
    (empty: nothing to write, values equal to those given included), checked as the webhook would, so a
    typo, or a change of values an approval already stands on, is said before anything is sent."""
    try:
        given = parse_overrides(items)
    except ValueError as err:
        raise UsageError(str(err)) from None
    params = supplied_of(step)
    key = VALUES_PREFIX + step.name
    if given and not params:
        raise UsageError(f"step {step.name} of jobflow {flow.metadata.name} asks for no values (-p)")
    if unknown := unknown_names(params, given):
        declared = ", ".join(p.name for p in params)
        raise UsageError(f"step {step.name} asks for no value {unknown[0]!r} (it asks for: {declared})")
    by_name = {p.name: p for p in params}
    for name, text in given.items():
        if (problem := value_problem(by_name[name], text)) is not None:
            raise UsageError(f"step {step.name}: {problem}")
    try:
        values = read_values(flow.metadata.annotations.get(key))
    except ValuesError:
        values = {}  # the webhook refused it, or none checked it: the new values replace it
    merged = {**values, **given}
    if given and merged == values and key in flow.metadata.annotations:
        return {}  # a second approver of the same values: their approval alone
    approve = flow.metadata.annotations.get(APPROVE_PREFIX + step.name)
    if given and is_true(approve, tallied=step.approval is not None):
        # The webhook's rule (validation/gate_values.py): an approval approves the values it was given with.
        shown = json.dumps(values, separators=(",", ":"), ensure_ascii=False)
        raise UsageError(
            f"step {step.name} of jobflow {flow.metadata.name} carries an approval of other values "
            f"({shown}): take the approvals back first (kubectl annotate jobflow {flow.metadata.name} "
            f"{APPROVE_PREFIX}{step.name}-), then approve with the new values"
        )
    if lacking := missing(params, merged):
        raise UsageError(
            f"step {step.name} needs a value for parameter {lacking[0]!r}: "
            f"zen-flow approve {flow.metadata.name} {step.name} -p {lacking[0]}=..."
        )
    return {key: json.dumps(merged, separators=(",", ":"), ensure_ascii=False)} if given else {}


def template_arguments(values: Mapping[str, Any]) -> dict[str, Any]:
    """A flow's `spec.arguments` giving `values` to its template's arguments (empty: none)."""
    return (
        {"parameters": [{"name": name, "value": value} for name, value in values.items()]} if values else {}
    )
