"""The last step of a plan: the new status and the events its transitions deserve."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from zen_flow.api.constants import (
    ANNOTATION_RESUME_REQUESTED_BY,
    ANNOTATION_SUSPEND_REQUESTED_BY,
    FlowPhase,
)
from zen_flow.api.flow_status import Audit, JobFlowStatus, StepStatus
from zen_flow.api.jobflow import JobFlow
from zen_flow.planner.actions import CreateResource, EventSpec
from zen_flow.planner.concurrency import Verdict
from zen_flow.planner.events import NORMAL, derive_events
from zen_flow.planner.locks import REASON_WAITING_FOR_LOCK, flow_queued
from zen_flow.planner.progress import Stall
from zen_flow.planner.resources import REASON_RESOURCES_CREATED, describe, resource_ref
from zen_flow.planner.shape import shape_of
from zen_flow.planner.status import (
    MAX_FLOW_MESSAGE,
    REASON_QUEUED,
    REASON_WAITING_FOR_SLOT,
    cut,
)
from zen_flow.planner.status_assembly import assemble
from zen_flow.planner.tolerance import tolerated_steps


def outcome(
    flow: JobFlow,
    steps: Sequence[StepStatus],
    phase: FlowPhase,
    *,
    failure: str | None,
    reason: str,
    start_time: datetime | None,
    audit: Audit | None,
    now: datetime,
    group: Verdict,
    creating: tuple[CreateResource, ...],
    stall: Stall,
    slot: str | None = None,
    lock_wait: str | None = None,
    held_locks: tuple[str, ...] = (),
) -> tuple[JobFlowStatus, tuple[EventSpec, ...]]:
    """`slot`: why the flow waits for a slot (planner.slots), when its group does not hold it back;
    `lock_wait`: why it waits for its own locks, when neither does; `held_locks`: those it holds."""
    old = flow.status
    queued: str | None
    if group.waiting:
        queued, queued_reason = group.waiting, REASON_QUEUED
    elif slot:
        queued, queued_reason = slot, REASON_WAITING_FOR_SLOT
    else:
        queued, queued_reason = lock_wait, REASON_WAITING_FOR_LOCK
    status = assemble(
        flow,
        steps,
        phase,
        failure=failure,
        failed_reason=reason,
        start_time=start_time,
        audit=audit,
        now=now,
        queued=queued,
        stall=stall,
        queued_reason=queued_reason,
        held_locks=held_locks,
    )
    if creating:
        # Recorded now, in the write that follows the creates; the controller fills in the UIDs.
        refs = (*old.resource_refs, *(resource_ref(flow, c) for c in creating))
        update: dict[str, Any] = {"resource_refs": refs}
        if phase == FlowPhase.PENDING:
            update["message"] = cut(f"creating {describe(creating)}", MAX_FLOW_MESSAGE)
        status = status.model_copy(update=update)
    specs = shape_of(flow).specs
    # Every plan of a flow comes here, most with nothing new to tell: the steps are read only then.
    tolerated = tolerated_steps(status, specs) if status is not old else frozenset()
    annotations = flow.metadata.annotations
    by = (annotations.get(ANNOTATION_SUSPEND_REQUESTED_BY), annotations.get(ANNOTATION_RESUME_REQUESTED_BY))
    events = derive_events(old, status, specs, tolerated, suspended=bool(flow.spec.suspend), by=by)
    if creating:
        events += (EventSpec(NORMAL, REASON_RESOURCES_CREATED, cut(describe(creating), 1024)),)
    # Said when it starts, or when it starts to wait for its own locks: the older flows stop then
    # (planner.concurrency), and have ended by the time it takes the locks they held.
    began_waiting = lock_wait is not None and not flow_queued(flow)
    if group.replacing and old.start_time is None and (status.start_time is not None or began_waiting):
        events += (EventSpec(NORMAL, "ReplacingFlows", group.replacing_message()),)
    return status, events
