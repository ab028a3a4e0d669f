"""The templates of Flow steps at admission: the validating webhook reads them (a GET each, as the
mutating webhook reads a flow's `spec.templateRef`) and checks each step against its template
(validation/child_templates.py).

- A **JobFlow** (a CREATE, or an UPDATE that changes a Flow step's `flow`) is refused, 422 naming the
  step's field, when a template does not exist, or the step passes an argument the template does not
  declare, omits one it declares without a value, or gives a value outside its enum: the flow runs now,
  and the step would fail when it is reached, maybe hours later. As for `spec.templateRef`, the
  template must exist first: `kubectl apply -f dir/` that creates both in the wrong order refuses the
  flow, and applying again creates it.
- A JobFlow **the controller creates** (its controller owner reference a CronJobFlow: a run; or a
  JobFlow: a Flow step's child) gets the same findings as warnings: a refusal would cost the whole run
  (none of its steps would run, the run time skipped) or fail the parent's step for a problem of one of
  the child's steps. Its definition was checked, with warnings, when it was admitted; the step fails
  when it is reached if the problem is still there.
- A **JobFlowTemplate**, a **ClusterJobFlowTemplate** (its Flow steps naming ClusterJobFlowTemplates only:
  the namespace of its flows is not known) and a **CronJobFlow**'s `jobFlowTemplate` are definitions that
  run later: the same problems are admission warnings, never a refusal, so a library of templates
  naming each other is applied in any order.

A template the webhook cannot read (RBAC, a timeout) is a warning, never a refusal: the step checks it
again when it runs (the child's own admission and expansion), which stays the backstop for a template
deleted or changed after the flow was admitted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from zen_flow.api.constants import CLUSTER_TEMPLATE_KIND, CRON_KIND
from zen_flow.kube.errors import KubeError
from zen_flow.logging import get_logger
from zen_flow.validation.child_templates import (
    ChildStep,
    TemplateArguments,
    check_child_arguments,
    child_steps,
    missing_child_template,
)
from zen_flow.validation.errors import FieldError, quote
from zen_flow.validation.expansion import TemplateName, zen_flow_owner
from zen_flow.webhook.envelope import AdmissionRequest

log = get_logger(__name__)

T = TypeVar("T")

# Distinct templates one review reads, at once (each GET is bounded: kube/flow_templates.py); the Flow
# steps naming others are checked when they run.
MAX_READS = 16
# A request that may hold a Flow step: anything else is answered without decoding its steps again.
FLOW_MARK = b'"Flow"'


class TemplateReader(Protocol):
    async def get(self, namespace: str, name: str, *, cluster: bool = False) -> dict[str, Any] | None: ...


@dataclass
class Findings:
    """What the Flow steps' templates said: `errors` (each names its field) and `notes` (what could not be
    checked, said as warnings)."""

    errors: list[FieldError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_warnings(self, after: str) -> list[str]:
        return [f"{error} ({after})" for error in self.errors] + self.notes


class Offload(Protocol):
    def __call__(self, work: Callable[..., T], /, *args: Any) -> Awaitable[T]: ...


async def check_children(
    children: list[ChildStep], namespace: str, templates: TemplateReader, run: Offload = asyncio.to_thread
) -> Findings:
    """Read each template `children` name (once) and check each step against it, in a thread (`run`: the
    review's, webhook/review_threads.py), for 500 Flow steps take tens of milliseconds the event loop
    keeps for probes and other reviews."""
    names = list(dict.fromkeys(child.template for child in children))
    read = names[:MAX_READS]
    answers = await asyncio.gather(*(_read(templates, namespace, name) for name in read))
    return await run(_judge, children, namespace, dict(zip(read, answers, strict=True)), names)


def _judge(
    children: list[ChildStep],
    namespace: str,
    answers: Mapping[TemplateName, tuple[Mapping[str, Any] | None, str | None]],
    names: list[TemplateName],
) -> Findings:
    found = Findings()
    # Each template's arguments derived once, for all the steps naming it.
    arguments = {
        name: TemplateArguments.of(template)
        for name, (template, _) in answers.items()
        if template is not None
    }
    for child in children:
        if child.template not in answers:
            continue  # past MAX_READS
        template, problem = answers[child.template]
        if problem is not None:
            found.notes.append(
                f"{child.path}.flow.templateRef.name: could not read {child.template.where(namespace)} "
                f"to check the step ({problem}); it is checked when the step runs"
            )
        elif template is None:
            found.errors.append(missing_child_template(child, namespace))
        else:
            found.errors.extend(check_child_arguments(child, arguments[child.template]))
    if len(names) > len(answers):
        found.notes.append(
            f"the Flow steps name {len(names)} templates; the ones past the first {MAX_READS} are "
            "checked when their steps run"
        )
    return found


async def _read(
    templates: TemplateReader, namespace: str, name: TemplateName
) -> tuple[Mapping[str, Any] | None, str | None]:
    try:
        return await templates.get(namespace, name.name, cluster=name.cluster), None
    except KubeError as err:
        log.warning("could not read a Flow step's template", template=name.subject, error=str(err))
        return None, str(err)


def flow_children(request: AdmissionRequest) -> list[ChildStep]:
    """The Flow steps of a JobFlow request to check: all of a CREATE's, and those of an UPDATE whose
    `flow` differs from the stored step of the same name (what was admitted is not checked again)."""
    if request.sub_resource or request.operation not in ("CREATE", "UPDATE"):
        return []
    steps = _steps(request.object.member_part("spec", ("steps",)))
    children = child_steps(steps)
    if request.operation == "CREATE" or not children:
        return children
    old = {
        step.get("name"): step.get("flow")
        for step in _steps(request.old_object.member_part("spec", ("steps",)))
        if isinstance(step, Mapping)
    }
    return [c for c in children if old.get(steps[c.index].get("name"), _ABSENT) != steps[c.index].get("flow")]


def made_by_controller(request: AdmissionRequest) -> str | None:
    """What a JobFlow the controller creates is (`a run of CronJobFlow "nightly"`, `a child flow of
    JobFlow "release"`), by its controller owner reference; None for any other flow."""
    meta = request.object.member_part("metadata", ("ownerReferences",))
    owner = zen_flow_owner(meta)
    if owner is None:
        return None
    what = "a run" if owner.get("kind") == CRON_KIND else "a child flow"
    return f"{what} of {owner.get('kind')} {quote(str(owner.get('name', '')))}"


def definition_children(request: AdmissionRequest, kind: str) -> list[ChildStep]:
    """The Flow steps of a JobFlowTemplate, ClusterJobFlowTemplate or CronJobFlow request, on a CREATE or
    an UPDATE that changes the spec."""
    if request.sub_resource or request.operation not in ("CREATE", "UPDATE"):
        return []
    spec = request.object.raw("spec")
    if request.operation == "UPDATE" and spec == request.old_object.raw("spec"):
        return []
    if kind == CRON_KIND:
        part = request.object.member_part("spec", ("jobFlowTemplate",))
        template = part.get("jobFlowTemplate") if isinstance(part, Mapping) else None
        inner = template.get("spec") if isinstance(template, Mapping) else None
        steps = inner.get("steps") if isinstance(inner, Mapping) else None
        return child_steps(steps, "spec.jobFlowTemplate.spec.steps")
    steps = _steps(request.object.member_part("spec", ("steps",)))
    return child_steps(steps, cluster_only=kind == CLUSTER_TEMPLATE_KIND)


_ABSENT = object()


def _steps(spec: Any) -> list[Any]:
    steps = spec.get("steps") if isinstance(spec, Mapping) else None
    return steps if isinstance(steps, list) else []
