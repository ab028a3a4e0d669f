"""The new status of a flow, put together from its steps, its phase and how it got there: the old object
itself when nothing changed, so the controller skips the write.

The parts it is made of (progress, the one-line message, the conditions) are status.py's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from zen_flow.api.constants import FlowPhase, StepPhase
from zen_flow.api.flow_status import Audit, JobFlowStatus, StepStatus
from zen_flow.api.jobflow import JobFlow
from zen_flow.planner.backoff import retry_limit
from zen_flow.planner.estimate import estimate_completion
from zen_flow.planner.parallelism import parallelism_of
from zen_flow.planner.progress import Stall, phases_changed
from zen_flow.planner.status import (
    REASON_QUEUED,
    by_phase,
    conditions,
    flow_message,
    phase_names,
    progress,
    summary,
)


def assemble(
    flow: JobFlow,
    steps: Sequence[StepStatus],
    phase: FlowPhase,
    *,
    failure: str | None,
    failed_reason: str,
    start_time: datetime | None,
    audit: Audit | None,
    now: datetime,
    queued: str | None = None,
    stall: Stall | None = None,
    queued_reason: str = REASON_QUEUED,
    held_locks: tuple[str, ...] | None = None,
) -> JobFlowStatus:
    """The new status; the old object itself when nothing changed, so the controller skips the write.
    `queued`: why a Pending flow is held back, by its concurrency group, a limit on running flows or its
    own locks (condition Queued, with `queued_reason`); `stall`: when a step last changed phase and
    whether that is past the progress deadline (none: as recorded); `held_locks`: the flow's own locks
    it holds (planner.locks), said until it ends."""
    old = flow.status
    step_tuple = tuple(steps)
    counts = progress(step_tuple)
    if old.progress == counts:
        counts = old.progress
    queued = queued if phase == FlowPhase.PENDING else None
    message = flow_message_of(flow, phase, step_tuple, failure, queued)
    generation = flow.metadata.generation or old.observed_generation
    # Re-estimated only when a step or the flow changes phase: between transitions the old estimate
    # stands, so a reconcile that changes nothing else writes nothing.
    if not phases_changed(old, phase, step_tuple):
        estimated = old.estimated_completion_time
    else:
        estimated = estimate_completion(flow, step_tuple, phase, now)
    update: dict[str, Any] = {
        "phase": phase.value,
        "conditions": conditions(
            old.conditions,
            phase,
            message=failure if phase == FlowPhase.FAILED and failure else message,
            failed_reason=failed_reason,
            waiting=phase_names(step_tuple, StepPhase.PENDING_APPROVAL),
            generation=generation,
            now=now,
            queued=queued,
            stalled=stall.stalled if stall is not None else None,
            queued_reason=queued_reason,
            tolerated=StepPhase.FAILED in by_phase(step_tuple),
        ),
        "start_time": start_time,
        "completion_time": old.completion_time or (now if phase.terminal else None),
        "estimated_completion_time": estimated,
        "last_progress_time": stall.last_progress if stall is not None else old.last_progress_time,
        "steps": step_tuple,
        "progress": counts,
        "progress_summary": summary(counts),
        "observed_generation": generation,
        "message": message,
        "audit": audit,
        "held_locks": held_locks if held_locks and not phase.terminal else None,
    }
    if all(getattr(old, key) == value for key, value in update.items()):
        return old
    return old.model_copy(update=update)


def flow_message_of(
    flow: JobFlow,
    phase: FlowPhase,
    steps: tuple[StepStatus, ...],
    failure: str | None,
    queued: str | None = None,
) -> str:
    """The flow's one-line message (status.flow_message) with what its spec says of it: its steps' retry
    limits, its parallelism, the gates that count their approvals."""
    phases = by_phase(steps)
    specs = {s.name: s for s in flow.spec.steps} if StepPhase.RETRYING in phases else {}
    return flow_message(
        phase,
        steps,
        failure,
        queued,
        lambda name: retry_limit(specs[name]) if name in specs else 0,
        parallelism_of(flow),
        _counting(flow) if StepPhase.PENDING_APPROVAL in phases else (),
    )


def _counting(flow: JobFlow) -> set[str]:
    """The gates whose waiting message begins with the controller's count of their approvals."""
    return {s.name for s in flow.spec.steps if s.approval is not None and s.approval.needed > 1}
