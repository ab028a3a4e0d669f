"""Flows that reach the controller naming a JobFlowTemplate and with no steps of their own.

The mutating webhook expands such a flow when it is created (webhook/templates.py); one created while
the webhook was down, or on a cluster without it, reaches the controller as it was written. It must not
stall nor run as an empty flow: the controller expands it the same way (validation/expansion.py) and
writes the expansion into the flow's spec with a merge patch conditional on the resourceVersion it read
(a write conflict only requeues it). The watch event of that write brings the flow back as an ordinary
one. A template that does not exist fails the flow: condition Valid=False, reason TemplateNotFound,
and a Warning Event of that reason, both naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from zen_flow import planner
from zen_flow.api import JobFlow
from zen_flow.api.constants import LABEL_TEMPLATE, TEMPLATE_KIND, FlowPhase
from zen_flow.logging import get_logger
from zen_flow.planner.events import NORMAL, WARNING
from zen_flow.planner.status import REASON_INVALID, REASON_TEMPLATE_NOT_FOUND
from zen_flow.validation.expansion import expand, missing_template

log = get_logger(__name__)

TEMPLATE_EXPANDED = "TemplateExpanded"
# How the failed flow's message begins: `cannot expand the flow: spec.templateRef.name: Not found: ...`.
PREFIX = "cannot expand the flow"


class EventSink(Protocol):
    def emit(self, flow: JobFlow, type_: str, reason: str, message: str) -> None: ...


class TemplateApi(Protocol):
    async def get_flow_template(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The raw JobFlowTemplate; None when there is none of that name."""
        ...

    async def expand_flow(
        self,
        namespace: str,
        name: str,
        resource_version: str,
        spec: Mapping[str, Any],
        labels: Mapping[str, str],
    ) -> None:
        """Write `spec`'s members and `labels` into the flow, if it is still at `resource_version`
        (`Conflict` otherwise)."""
        ...


def unexpanded(flow: JobFlow) -> bool:
    """A flow naming a template whose steps were never written into it, and that has not ended (a flow
    failed for its template stays as it is)."""
    return (
        flow.spec.template_ref is not None
        and not flow.spec.steps
        and flow.status.phase not in (FlowPhase.SUCCEEDED, FlowPhase.FAILED)
    )


@dataclass(frozen=True)
class Refusal:
    """Why a flow cannot be expanded: it fails with these errors under `reason`."""

    reason: str
    errors: tuple[str, ...]

    def plan(self, flow: JobFlow, now: datetime) -> planner.Plan:
        return planner.fail_invalid(flow, self.errors, now, reason=self.reason, prefix=PREFIX)


class TemplateResolver:
    def __init__(self, api: TemplateApi, events: EventSink) -> None:
        self._api = api
        self._events = events

    async def resolve(self, flow: JobFlow) -> Refusal | None:
        """Expand `flow` (an `unexpanded` one) into its spec; None once written, else why it cannot be."""
        assert flow.spec.template_ref is not None  # unexpanded() said so
        name, namespace = flow.spec.template_ref.name, flow.metadata.namespace
        template = await self._api.get_flow_template(namespace, name) if name else None
        if template is None:
            if not name:
                return Refusal(REASON_INVALID, ("spec.templateRef.name: Required value",))
            error = str(missing_template(name, namespace))
            self._events.emit(flow, WARNING, REASON_TEMPLATE_NOT_FOUND, error)
            return Refusal(REASON_TEMPLATE_NOT_FOUND, (error,))
        expansion = expand(raw_spec(flow), template, namespace)
        if expansion.spec is None:
            return Refusal(REASON_INVALID, tuple(str(e) for e in expansion.errors))
        await self._api.expand_flow(
            namespace,
            flow.metadata.name,
            flow.metadata.resource_version or "",
            expansion.spec,
            {LABEL_TEMPLATE: name},
        )
        log.info("expanded from its template", template=name)
        self._events.emit(flow, NORMAL, TEMPLATE_EXPANDED, f"steps taken from {TEMPLATE_KIND} {name}")
        return None


def raw_spec(flow: JobFlow) -> dict[str, Any]:
    """The flow's spec as written (the model's empty steps and argument enums are its defaults, not the
    user's)."""
    spec = flow.spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    spec.pop("steps", None)
    arguments = spec.get("arguments")
    for param in arguments.get("parameters", ()) if isinstance(arguments, dict) else ():
        if not param.get("enum"):
            param.pop("enum", None)
    return spec
