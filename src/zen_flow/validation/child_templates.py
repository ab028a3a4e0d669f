"""The templates a flow's Flow steps name, checked against the templates themselves: pure.

A `type: Flow` step runs the JobFlowTemplate (or ClusterJobFlowTemplate) its `flow.templateRef` names,
with its `flow.arguments` (planner/children.py). The JobFlow rules (flow_steps.py) check the step alone;
these rules need the template, which the validating webhook reads (webhook/child_templates.py) and hands
in: the template must exist, the step may pass only arguments it declares, must pass those it declares
without a value (an argument a matrix of the template reads, left empty for its flows to fill), and a
value without placeholders must be one of the argument's `enum`. They are the rules the child's own
expansion applies (expansion.py), said at the flow's admission instead of when the step runs, and named
by the step's field: `spec.steps[3].flow.templateRef.name: Not found: "x": JobFlowTemplate "x" not
found in namespace "y"`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from zen_flow.validation.errors import FieldError, not_found, not_supported, quote, required
from zen_flow.validation.expansion import TemplateName, template_ref

# A value holding a placeholder is known only when the step runs.
PLACEHOLDER = "{{"


@dataclass(frozen=True)
class ChildStep:
    """One Flow step: where it is (`spec.steps[3]`), the template it names and the arguments it passes."""

    index: int
    path: str
    template: TemplateName
    arguments: tuple[Mapping[str, Any], ...]


def child_steps(steps: Any, path: str = "spec.steps", *, cluster_only: bool = False) -> list[ChildStep]:
    """The Flow steps of raw `steps` that name a template (`cluster_only`: a ClusterJobFlowTemplate, the
    only kind a ClusterJobFlowTemplate's own steps can be checked against: the namespace of its flows is
    not known yet)."""
    found: list[ChildStep] = []
    for i, step in enumerate(steps if isinstance(steps, list) else ()):
        if not isinstance(step, Mapping) or step.get("type") != "Flow":
            continue
        flow = step.get("flow")
        ref = template_ref(flow) if isinstance(flow, Mapping) else None
        if ref is None or (cluster_only and not ref.cluster):
            continue
        assert isinstance(flow, Mapping)
        arguments = flow.get("arguments")
        params = arguments.get("parameters") if isinstance(arguments, Mapping) else None
        given = tuple(p for p in (params if isinstance(params, list) else ()) if isinstance(p, Mapping))
        found.append(ChildStep(i, f"{path}[{i}]", ref, given))
    return found


def missing_child_template(step: ChildStep, namespace: str) -> FieldError:
    """The error of a Flow step whose template does not exist."""
    ref = step.template
    place = "" if ref.cluster else f" in namespace {quote(namespace)}"
    return not_found(step.path + ".flow.templateRef.name", ref.name, f"{ref.subject} not found{place}")


@dataclass(frozen=True)
class TemplateArguments:
    """What the steps naming one template are checked against, derived from it once (a review may hold
    500 Flow steps naming one 500-step template)."""

    declared: Mapping[str, Mapping[str, Any]]
    # The names the step must pass: declared without a value, or left empty for a matrix to read.
    needed: tuple[str, ...]

    @classmethod
    def of(cls, template: Mapping[str, Any]) -> TemplateArguments:
        """The arguments raw `template` declares."""
        spec = _mapping(template.get("spec"))
        declared = {
            p["name"]: p
            for p in _items(_mapping(spec.get("arguments")).get("parameters"))
            if isinstance(p.get("name"), str)
        }
        unfilled = matrix_arguments(spec)
        needed = tuple(
            name
            for name, param in declared.items()
            if (value := param.get("value")) is None or (value == "" and name in unfilled)
        )
        return cls(declared, needed)


def check_child_arguments(step: ChildStep, template: TemplateArguments) -> list[FieldError]:
    """The step's arguments against those its template declares."""
    declared = template.declared
    subject = step.template.subject
    base = step.path + ".flow.arguments.parameters"
    errors: list[FieldError] = []
    given: set[str] = set()
    for i, param in enumerate(step.arguments):
        name, value = param.get("name"), param.get("value")
        if not isinstance(name, str):
            continue  # the JobFlow rules report it
        given.add(name)
        if name not in declared:
            names = ", ".join(sorted(declared)) or "none"
            errors.append(
                not_found(
                    f"{base}[{i}].name", name, f"{subject} declares no such argument (it declares: {names})"
                )
            )
            continue
        choices = declared[name].get("enum")
        if (
            isinstance(choices, list)
            and choices
            and isinstance(value, str)
            and PLACEHOLDER not in value
            and value not in choices
        ):
            errors.append(
                not_supported(
                    f"{base}[{i}].value", value, [str(c) for c in choices], f"the enum of {subject}"
                )
            )
    for name in template.needed:
        if name not in given:
            errors.append(
                required(
                    base,
                    f"{subject} declares argument {quote(name)} without a value: the step must pass one",
                )
            )
    return errors


def matrix_arguments(spec: Mapping[str, Any]) -> frozenset[str]:
    """The arguments a matrix of raw `spec` reads (`valueFrom.argument`): one a template leaves empty is
    its flows' to fill."""
    return frozenset(
        source["argument"]
        for step in _items(spec.get("steps"))
        if isinstance(step.get("matrix"), Mapping)
        for param in _items(step["matrix"].get("parameters"))
        if isinstance(source := param.get("valueFrom"), Mapping) and isinstance(source.get("argument"), str)
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _items(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []
