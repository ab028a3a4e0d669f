"""`validate_jobflowtemplate`: every rule for a JobFlowTemplate, all errors at once (the webhook and
`zen-flow validate`); `validate_clusterjobflowtemplate` the same rules for a ClusterJobFlowTemplate, whose
spec is the same and only its scope differs.

A template's spec is a JobFlow's definition (steps, arguments, executionPolicy, resourceTemplates), so it
is checked with the JobFlow validator itself, as a flow of the template's name, and its errors keep
their paths (`spec.steps[0].dependencies[0]: Not found: "ghost"`): a mistake is refused when the
template is written, not at the creation of every flow made from it. Its name is the value of the
`workflow.kube-zen.io/template` label on those flows, so it has at most 63 characters, and it cannot
name another template (no chains: a flow is one template's snapshot).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zen_flow.api.constants import API_VERSION, CLUSTER_TEMPLATE_KIND, KIND, LABEL_TEMPLATE, TEMPLATE_KIND
from zen_flow.validation.child_templates import matrix_arguments
from zen_flow.validation.errors import FieldError, forbidden, listed
from zen_flow.validation.flow import validate_jobflow
from zen_flow.validation.flow_steps import self_references
from zen_flow.validation.limits import MAX_FLOW_NAME
from zen_flow.validation.reader import Reader
from zen_flow.validation.template import check_metadata_maps


def validate_jobflowtemplate(obj: Mapping[str, Any]) -> list[FieldError]:
    """Every problem with `obj` (a raw JobFlowTemplate); an empty list means valid."""
    return _validate(obj, TEMPLATE_KIND)


def validate_clusterjobflowtemplate(obj: Mapping[str, Any]) -> list[FieldError]:
    """Every problem with `obj` (a raw ClusterJobFlowTemplate); an empty list means valid."""
    return _validate(obj, CLUSTER_TEMPLATE_KIND)


def _validate(obj: Mapping[str, Any], kind: str) -> list[FieldError]:
    errors: list[FieldError] = []
    r = Reader(errors)
    root = r.resource(obj, kind)
    if root is None:
        return errors
    meta = r.mapping(root.get("metadata"), "metadata", require=True)
    name = _check_name(r, meta) if meta is not None else ""
    spec = r.mapping(root.get("spec"), "spec", require=True)
    if spec is None:
        return errors
    if spec.get("templateRef") is not None:
        r.add(forbidden("spec.templateRef", f"a {kind} holds steps; it cannot name another template"))
        return errors
    flow = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name or "template"},
        "spec": _with_unfilled_matrix_arguments(spec),
    }
    for i, _ in self_references(spec.get("steps"), name, kind != "JobFlowTemplate"):
        r.add(
            forbidden(
                f"spec.steps[{i}].flow.templateRef.name",
                f"a {kind}'s Flow step cannot run the template itself: each child would make another, until "
                "the nesting depth limit fails it",
            )
        )
    stopped: list[bool] = []
    for error in validate_jobflow(flow, stopped=stopped):  # listed with the template's own
        # The flow's metadata is ours (the template's name, checked above); its spec is the template's.
        if error.path == "spec" or error.path.startswith(("spec.", "spec[")):
            r.add(error)
    return listed(errors, stopped=any(stopped))


# What an empty argument a matrix reads stands for in a template: one item of an empty value, as the
# stand-in of a matrix that cannot be expanded (core/matrix_items.py), so every other rule still runs.
UNFILLED = '[""]'


def _with_unfilled_matrix_arguments(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    """`spec` with each argument a matrix reads whose value is empty (or unset) taken as one empty item:
    a template is not yet a flow, and its flows set the values (`zen-flow submit -p`, templateRef
    arguments), which are checked as JSON arrays when the flow is made."""
    read = matrix_arguments(spec)
    arguments = spec.get("arguments")
    params = arguments.get("parameters") if isinstance(arguments, Mapping) else None
    if not read or not isinstance(arguments, Mapping) or not isinstance(params, list):
        return spec
    filled = [
        {**p, "value": UNFILLED}
        if isinstance(p, Mapping) and p.get("name") in read and p.get("value") in (None, "")
        else p
        for p in params
    ]
    return {**spec, "arguments": {**arguments, "parameters": filled}}


def _check_name(r: Reader, meta: Mapping[str, Any]) -> str:
    why = f"it is the value of the {LABEL_TEMPLATE} label on the flows made from it"
    name, _ = r.object_name(meta, MAX_FLOW_NAME, why)
    check_metadata_maps(r, meta, "metadata", own_keys=False)
    return name
