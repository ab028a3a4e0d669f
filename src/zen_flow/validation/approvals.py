"""Approval annotations: `approve.workflow.kube-zen.io/<step>` and `reject.workflow.kube-zen.io/<step>`.

Checked at admission (and by `zen-flow validate`), not by the controller: an annotation naming no
Manual step would silently do nothing, so the user hears about it when writing it; but a flow that
already runs is never failed because of one.
"""

from __future__ import annotations

from typing import Any

from zen_flow.api.constants import APPROVE_PREFIX, REJECT_PREFIX, VALUES_PREFIX
from zen_flow.core.gate_values import Supplied
from zen_flow.validation.errors import FieldError, forbidden, invalid, not_found
from zen_flow.validation.expansion import TemplateName, needs_expansion, template_ref
from zen_flow.validation.gate_values import check_values, supplied_params
from zen_flow.validation.steps import is_manual

_ANNOTATIONS = "metadata.annotations"


def has_approvals(meta: Any) -> bool:
    """Does this metadata carry an approval, rejection or values annotation (which the spec's steps
    decide)?"""
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    return isinstance(annotations, dict) and any(
        isinstance(key, str) and key.startswith((APPROVE_PREFIX, REJECT_PREFIX, VALUES_PREFIX))
        for key in annotations
    )


def awaits_expansion(obj: Any) -> bool:
    """A flow naming a JobFlowTemplate, not expanded yet, with approval or values annotations: the steps
    they name are the template's, known once the flow is expanded (by the webhook, which checks them
    then). A client without the template (`zen-flow submit`, `validate`) leaves them to it."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    return has_approvals(meta) and needs_expansion(obj.get("spec"))


def validate_approvals(obj: Any) -> list[FieldError]:
    """Every approval annotation must name a Manual step of the flow; values annotations and the
    approvals of gates with supplied outputs follow gate_values.py."""
    meta: Any = obj.get("metadata") if isinstance(obj, dict) else None
    if not has_approvals(meta):  # most flows: their steps are not read at all
        return []
    annotations: dict[Any, Any] = meta["annotations"]  # has_approvals: both are dicts
    spec = obj.get("spec")
    if needs_expansion(spec):
        return _unexpanded(annotations, template_ref(spec) or TemplateName(""))
    steps = spec.get("steps") if isinstance(spec, dict) else None
    names: set[str] = set()
    manual: set[str] = set()
    gates: dict[str, tuple[Supplied, ...]] = {}
    tallied: set[str] = set()
    for step in steps if isinstance(steps, list | tuple) else ():
        if isinstance(step, dict) and isinstance(step.get("name"), str):
            names.add(step["name"])
            if is_manual(step):
                manual.add(step["name"])
                gates[step["name"]] = supplied_params(step)
                if step.get("approval") is not None:
                    tallied.add(step["name"])
    errors: list[FieldError] = []
    for key in annotations:
        if not isinstance(key, str):
            continue
        for prefix in (APPROVE_PREFIX, REJECT_PREFIX):
            if not key.startswith(prefix):
                continue
            step = key[len(prefix) :]
            path = f"{_ANNOTATIONS}[{key}]"
            if step not in names:
                errors.append(not_found(path, step, "this flow has no step of that name"))
            elif step not in manual:
                errors.append(invalid(path, step, "only Manual steps are approved or rejected"))
    flow = meta.get("name") or meta.get("generateName") or "FLOW"
    return errors + check_values(
        annotations, gates, names, tallied, flow if isinstance(flow, str) else "FLOW"
    )


def _unexpanded(annotations: dict[Any, Any], template: TemplateName) -> list[FieldError]:
    """A decision on a flow still without its template's steps (a webhook that cannot read templates
    leaves the expansion to the controller): neither its step nor who may take it can be checked, and
    it is not taken unchecked; it is refused saying why, rather than "no step of that name"."""
    detail = (
        f"the flow is not expanded from {template.subject} yet (the webhook expands a flow "
        "at its creation when it can read templates, else the controller does once it is created), so "
        "the step this names cannot be checked: decide the gate once the flow holds its steps"
    )
    prefixes = (APPROVE_PREFIX, REJECT_PREFIX, VALUES_PREFIX)
    return [
        forbidden(f"{_ANNOTATIONS}[{key}]", detail)
        for key in annotations
        if isinstance(key, str) and key.startswith(prefixes)
    ]
