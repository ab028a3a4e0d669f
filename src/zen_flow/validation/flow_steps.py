"""The rules of a `type: Flow` step (a child flow made from a JobFlowTemplate: planner/children.py).

A Flow step names its template and the values of its arguments; it runs nothing of its own, so what only
makes sense for a Job (a template, a matrix, memoize, artifacts, outputs read from a pod) or a gate (a
message, approval) is refused, naming the field, and so is a placeholder in `flow.arguments` naming no
input parameter of the step (validation/placeholders.py), as in a Job template. Whether the template
exists and takes the arguments needs the template: the validating webhook reads it and checks that
(child_templates.py); at run time a missing template or an undeclared argument still fails the step,
naming it (the template may be deleted or changed after the flow was admitted).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zen_flow.core.naming import is_dns1123_subdomain
from zen_flow.validation.errors import Path, duplicate, forbidden, invalid, too_many
from zen_flow.validation.reader import Reader

MAX_FLOW_ARGUMENTS = 64
MAX_ARGUMENT_VALUE = 4096
# Fields a Flow step refuses, and why.
_NOT_ON_A_FLOW_STEP = {
    "template": "a Flow step runs the template flow.templateRef names, not a Job",
    "memoize": "a Flow step's result is its child flow's, which is not memoized",
    "message": "only a Manual step shows a message",
    "approval": "only a Manual step is approved",
    "podPendingTimeoutSeconds": "a Flow step has no pod of its own: set it on its template's steps",
    "metadata": "a Flow step's child flow carries only the labels the controller gives it (parent, "
    "parent-step, attempt, depth): put labels and annotations in the template",
}


def check_flow_step(r: Reader, step: Mapping[str, Any], path: Path) -> None:
    """The rules of one step of `type: Flow` (`path`: spec.steps[N])."""
    for field, why in _NOT_ON_A_FLOW_STEP.items():
        if step.get(field) is not None:
            r.add(forbidden(f"{path}.{field}", why))
    _check_io(r, step, path)
    flow = r.mapping(step.get("flow"), path + ".flow", require=True)
    if flow is None:
        return
    ref = r.mapping(flow.get("templateRef"), path + ".flow.templateRef", require=True)
    if ref is not None:
        name = r.string(ref.get("name"), path + ".flow.templateRef.name", require=True)
        if name is not None and not (is_dns1123_subdomain(name) and len(name) <= 63):
            r.add(
                invalid(
                    path + ".flow.templateRef.name", name, "must be a template's name (at most 63 characters)"
                )
            )
        r.boolean(ref.get("clusterScope"), path + ".flow.templateRef.clusterScope")
    args = r.mapping(flow.get("arguments"), path + ".flow.arguments")
    if args is None:
        return
    params = args.get("parameters")
    if isinstance(params, list) and len(params) > MAX_FLOW_ARGUMENTS:
        r.add(too_many(path + ".flow.arguments.parameters", len(params), MAX_FLOW_ARGUMENTS))
    seen: set[str] = set()
    for item_path, param in r.mappings(params, path + ".flow.arguments.parameters"):
        name = r.string(param.get("name"), item_path + ".name", require=True)
        if name is not None and name in seen:
            r.add(duplicate(item_path + ".name", name))
        elif name is not None:
            seen.add(name)
        value = r.string(param.get("value"), item_path + ".value", require=True)
        if value is not None and len(value) > MAX_ARGUMENT_VALUE:
            r.add(invalid(item_path + ".value", "...", f"must be at most {MAX_ARGUMENT_VALUE} characters"))


def _check_io(r: Reader, step: Mapping[str, Any], path: Path) -> None:
    """Input parameters feed the arguments' placeholders; outputs are read from the child's status."""
    inputs = step.get("inputs")
    if isinstance(inputs, dict) and inputs.get("artifacts"):
        r.add(forbidden(path + ".inputs.artifacts", "a Flow step has no pod to put files in"))
    outputs = step.get("outputs")
    if not isinstance(outputs, dict):
        return
    if outputs.get("artifacts"):
        r.add(forbidden(path + ".outputs.artifacts", "a Flow step has no pod to store files from"))
    for i, param in enumerate(outputs.get("parameters") or ()):
        source = param.get("valueFrom") if isinstance(param, dict) else None
        if not isinstance(source, dict):
            continue
        for field in ("terminationMessage", "supplied"):
            if source.get(field) is not None:
                r.add(
                    forbidden(
                        f"{path}.outputs.parameters[{i}].valueFrom.{field}",
                        "a Flow step's outputs come from its child flow's status: use jsonPath "
                        "(e.g. $.steps[0].outputs.parameters[0].value: the child's first step in its "
                        "spec order, its first output)",
                    )
                )


def flow_field_forbidden(r: Reader, step: Mapping[str, Any], path: Path) -> None:
    """`flow` on a step that is not of type Flow."""
    if step.get("flow") is not None:
        r.add(forbidden(path + ".flow", "only a step of type: Flow runs a child flow"))


def self_references(steps: Any, template: str, cluster: bool) -> list[tuple[int, str]]:
    """The Flow steps of template `template` (`cluster`: a ClusterJobFlowTemplate) that name it: a flow
    made from it would nest itself until the depth limit fails it."""
    found: list[tuple[int, str]] = []
    for i, step in enumerate(steps if isinstance(steps, list) else ()):
        flow = step.get("flow") if isinstance(step, dict) and step.get("type") == "Flow" else None
        ref = flow.get("templateRef") if isinstance(flow, dict) else None
        if isinstance(ref, dict) and ref.get("name") == template and bool(ref.get("clusterScope")) == cluster:
            found.append((i, template))
    return found
