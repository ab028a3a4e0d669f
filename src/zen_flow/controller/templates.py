"""Flows that reach the controller naming a JobFlowTemplate (or, `templateRef.clusterScope: true`, a
ClusterJobFlowTemplate) and with no steps of their own.

The mutating webhook expands such a flow when it is created (webhook/templates.py); one created while
the webhook was down, or on a cluster without it, reaches the controller as it was written. It must not
stall nor run as an empty flow: the controller expands it the same way (validation/expansion.py, on the
flow as the apiserver holds it, read with a GET: the cached model carries defaults the user never wrote,
which would end up in the spec; the template read is the one that stored spec names, not the cache's,
which may predate an edit of templateRef) and writes the expansion with a merge patch conditional on the
resourceVersion it read (a write conflict only requeues it). The stored spec is `expand`'s, as the
webhook stores it: templateRef removed, the flow labelled (a `cluster-template` label removed from a flow
of a namespace's template). The watch event of that write brings the flow back as an ordinary one.

A template that the apiserver does not let the controller read (403: a controller bound by RoleBindings
only cannot read a cluster-scoped template) is retried with the queue's backoff, the flow left Pending,
for FORBIDDEN_GRACE_SECONDS (RBAC applied after the controller in one rollout), with one Warning Event
TemplateForbidden naming the field and the missing grant; then the flow fails with that reason.

A flow that cannot be expanded ends Failed with condition Valid=False, never retried for ever: a template
that does not exist, reason TemplateNotFound, and a Warning Event of that reason, both naming it and the
field; a template still unreadable after the retries above (TemplateForbidden); an expansion `expand`
refuses, or that the JobFlow validator refuses (reason InvalidSpec, errors named by field: a template
written without the webhook was never checked); a write the apiserver refuses for good (an admission
policy, RBAC: a 4xx other than a conflict or throttling), with its message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from zen_flow import planner
from zen_flow.api import JobFlow
from zen_flow.api.constants import FlowPhase
from zen_flow.kube.errors import ApiError, Forbidden
from zen_flow.logging import get_logger
from zen_flow.planner.events import NORMAL, WARNING
from zen_flow.planner.status import REASON_INVALID, REASON_TEMPLATE_FORBIDDEN, REASON_TEMPLATE_NOT_FOUND
from zen_flow.validation import validate_jobflow
from zen_flow.validation.expansion import (
    TemplateName,
    expand,
    is_cron_run,
    merge_patch,
    missing_template,
    needs_expansion,
    template_name_problem,
    template_ref,
    unreadable_template,
)

log = get_logger(__name__)

TEMPLATE_EXPANDED = "TemplateExpanded"
# How the failed flow's message begins: `cannot expand the flow: spec.templateRef.name: Not found: ...`.
PREFIX = "cannot expand the flow"
# How a refused write's error begins, before the apiserver's message.
REFUSED = "the apiserver refused the expanded flow"
# Refusals that sending the write again may cure: a conflict (read again), throttling, a timeout; and a
# flow gone (404), which has nothing left to expand.
RETRIED = frozenset({404, 408, 409, 429})
# How long a flow whose template the controller may not read (403) is retried before it fails: long
# enough for RBAC applied after the controller in one rollout (the retries back off meanwhile).
FORBIDDEN_GRACE_SECONDS = 300


class EventSink(Protocol):
    def emit(self, flow: JobFlow, type_: str, reason: str, message: str) -> None: ...


class TemplateApi(Protocol):
    async def get_flow(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The raw JobFlow as stored; None when it is gone."""
        ...

    async def get_flow_template(
        self, namespace: str, name: str, *, cluster: bool = False
    ) -> Mapping[str, Any] | None:
        """The raw JobFlowTemplate, or (`cluster`) ClusterJobFlowTemplate; None when there is none of that
        name."""
        ...

    async def expand_flow(
        self,
        namespace: str,
        name: str,
        resource_version: str,
        spec: Mapping[str, Any],
        labels: Mapping[str, str | None],
    ) -> None:
        """Merge-patch `spec` (an RFC 7386 patch of the spec) and `labels` (null: removed) into the
        flow, if it is still at `resource_version` (`Conflict` otherwise)."""
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
    def __init__(
        self, api: TemplateApi, events: EventSink, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._api = api
        self._events = events
        self._monotonic = monotonic
        # Flows (by UID) whose template read was refused (403), and when it first was: they are retried
        # until FORBIDDEN_GRACE_SECONDS have passed, the Warning Event sent once, at the first refusal.
        self._forbidden: dict[str, float] = {}

    def forget(self, uid: str) -> None:
        """The flow is gone: nothing more is retried for it."""
        self._forbidden.pop(uid, None)

    def uids(self) -> list[str]:
        return list(self._forbidden)

    async def resolve(self, flow: JobFlow) -> Refusal | None:
        """Expand `flow` (an `unexpanded` one) into its spec; None once written (or when nothing is left
        to expand: the flow is gone, or was written meanwhile), else why it cannot be. `Forbidden` (the
        template's read refused, within FORBIDDEN_GRACE_SECONDS of the first refusal) is retried with
        backoff, as any failed reconcile."""
        assert flow.spec.template_ref is not None  # unexpanded() said so
        named, namespace = flow.spec.template_ref, flow.metadata.namespace
        if not named.name:
            return Refusal(REASON_INVALID, ("spec.templateRef.name: Required value",))
        if (problem := template_name_problem(named.name)) is not None:
            # Never put into a read's URL path (`..` would read the API group's listing).
            return Refusal(REASON_INVALID, (str(problem),))
        # The flow as stored first, and the template its stored spec names: templateRef may be edited
        # until the flow starts, and the cache may not have seen the edit yet. A spec expanded from the
        # template the cache names would be another template's steps, with its labels.
        raw = await self._api.get_flow(namespace, flow.metadata.name)
        spec = raw.get("spec") if raw is not None else None
        if raw is None or not isinstance(spec, Mapping) or not needs_expansion(spec):
            return None  # gone, or written since the cache saw it: its watch event brings it back
        ref = template_ref(spec)
        if ref != TemplateName(named.name, cluster=named.cluster_scope is True):
            return None  # edited since the cache saw it: the edit's watch event brings it back
        assert ref is not None  # equal to the cached one, which has a name
        try:
            template = await self._api.get_flow_template(namespace, ref.name, cluster=ref.cluster)
        except Forbidden as err:
            return self._forbidden_read(flow, ref, err)
        self.forget(flow.metadata.uid)
        if template is None:
            error = str(missing_template(ref, namespace))
            self._events.emit(flow, WARNING, REASON_TEMPLATE_NOT_FOUND, error)
            return Refusal(REASON_TEMPLATE_NOT_FOUND, (error,))
        expansion = expand(spec, template, namespace, run=is_cron_run(raw.get("metadata")))
        if expansion.spec is None:
            return Refusal(REASON_INVALID, tuple(str(e) for e in expansion.errors))
        labels = label_patch(ref, raw)
        if errors := validate_jobflow(stored_flow(raw, expansion.spec, labels)):
            return Refusal(REASON_INVALID, tuple(str(e) for e in errors))
        try:
            await self._api.expand_flow(
                namespace, flow.metadata.name, _version(raw), merge_patch(spec, expansion.spec), labels
            )
        except ApiError as err:
            if err.status in RETRIED or not 400 <= err.status < 500:
                raise
            # An admission policy the validator does not mirror, RBAC: the same write sent again gets the
            # same answer, so the flow fails with it rather than being retried for ever.
            return Refusal(REASON_INVALID, (f"{REFUSED}: {err.message}",))
        log.info("expanded from its template", template=ref.name, cluster=ref.cluster)
        self._events.emit(flow, NORMAL, TEMPLATE_EXPANDED, f"steps taken from {ref.kind} {ref.name}")
        return None

    def _forbidden_read(self, flow: JobFlow, ref: TemplateName, err: Forbidden) -> Refusal:
        """RBAC refuses the controller the template. A grant applied moments later (a rollout that
        applies the controller before its RBAC) must still let the flow run, so the refusal is raised
        (retried with the queue's backoff, the flow left Pending) for FORBIDDEN_GRACE_SECONDS; then the
        flow fails naming the field and the grant rather than being retried for ever."""
        error = str(unreadable_template(ref, flow.metadata.namespace, err.message))
        now, uid = self._monotonic(), flow.metadata.uid
        first = self._forbidden.get(uid)
        if first is None:
            self._forbidden[uid] = first = now
            self._events.emit(
                flow,
                WARNING,
                REASON_TEMPLATE_FORBIDDEN,
                f"{error} (retried with backoff for {FORBIDDEN_GRACE_SECONDS}s, then the flow fails)",
            )
        if now - first < FORBIDDEN_GRACE_SECONDS:
            raise err
        self.forget(flow.metadata.uid)
        return Refusal(REASON_TEMPLATE_FORBIDDEN, (error,))


def label_patch(ref: TemplateName, raw: Mapping[str, Any]) -> dict[str, str | None]:
    """The labels the expansion writes into the stored flow `raw`, as a merge patch: the template's,
    and null for the ones it removes (`TemplateName.stale_labels`)."""
    current = _mapping(raw.get("metadata")).get("labels")
    return {**dict.fromkeys(ref.stale_labels(current)), **ref.labels}


def stored_flow(
    raw: Mapping[str, Any], spec: Mapping[str, Any], labels: Mapping[str, str | None]
) -> dict[str, Any]:
    """The flow as the expansion's write stores it (what the validator checks before it is sent)."""
    meta = _mapping(raw.get("metadata"))
    merged = {
        key: value for key, value in {**_mapping(meta.get("labels")), **labels}.items() if value is not None
    }
    return {**raw, "metadata": {**meta, "labels": merged}, "spec": dict(spec)}


def _version(raw: Mapping[str, Any]) -> str:
    version = _mapping(raw.get("metadata")).get("resourceVersion")
    return version if isinstance(version, str) else ""


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
