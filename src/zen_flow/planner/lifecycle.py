"""The ends of a flow's life: a spec that cannot run (fail once, no retry loop) and a finished flow
(never changes again; deleted when `ttlSecondsAfterFinished` expires)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from zen_flow.api.constants import DEFAULT_TTL_SECONDS_AFTER_FINISHED, FlowPhase, StepPhase
from zen_flow.api.jobflow import JobFlow
from zen_flow.planner.actions import DeleteFlow, Plan
from zen_flow.planner.approvals import with_origin
from zen_flow.planner.events import derive_events
from zen_flow.planner.status import REASON_INVALID, assemble
from zen_flow.planner.steps import StepWork
from zen_flow.planner.timing import after, normalize, until

_LISTED_ERRORS = 10


def ttl_seconds(flow: JobFlow) -> int:
    policy = flow.spec.execution_policy
    ttl = policy.ttl_seconds_after_finished if policy is not None else None
    return DEFAULT_TTL_SECONDS_AFTER_FINISHED if ttl is None or ttl < 0 else ttl


def ttl_expiry(flow: JobFlow, completion_time: datetime) -> datetime:
    return after(completion_time, ttl_seconds(flow))


def terminal_plan(flow: JobFlow, now: datetime) -> Plan:
    """A Succeeded or Failed flow: status unchanged; only the TTL acts."""
    status = flow.status
    finished = status.completion_time or status.start_time or flow.metadata.creation_timestamp
    if flow.metadata.deletion_timestamp is not None or finished is None:
        return Plan((), status, (), None)
    expiry = ttl_expiry(flow, finished)
    if now >= expiry:
        return Plan((DeleteFlow(f"ttlSecondsAfterFinished={ttl_seconds(flow)}s expired"),), status, (), None)
    return Plan((), status, (), until(now, expiry))


def fail_invalid(
    flow: JobFlow,
    errors: Sequence[str],
    now: datetime,
    *,
    reason: str = REASON_INVALID,
    prefix: str = "invalid spec",
) -> Plan:
    """An invalid spec: the flow fails once with condition Valid=False (reason InvalidSpec). Another
    `reason` fails it the same way for a cause found while executing the plan (condition Failed only)."""
    now = normalize(now)
    if flow.status.phase in (FlowPhase.SUCCEEDED, FlowPhase.FAILED):
        return terminal_plan(flow, now)
    listed = "; ".join(errors[:_LISTED_ERRORS]) or "unknown error"
    more = f" (+{len(errors) - _LISTED_ERRORS} more)" if len(errors) > _LISTED_ERRORS else ""
    failure = f"{prefix}: {listed}{more}"
    cause = "the flow spec is invalid" if reason == REASON_INVALID else prefix
    old = {s.name: s for s in flow.status.steps}
    works: dict[str, StepWork] = {}
    for spec in flow.spec.steps:
        if not spec.name or spec.name in works:
            continue
        work = StepWork.load(spec, old.get(spec.name))
        if work.phase == StepPhase.RUNNING:
            work.fail(now, cause)
        elif not work.terminal:
            work.skip(now, f"not started: {cause}")
        works[spec.name] = work
    status = assemble(
        flow,
        [w.status() for w in works.values()],
        FlowPhase.FAILED,
        failure=failure,
        failed_reason=reason,
        start_time=flow.status.start_time,
        audit=with_origin(flow.status.audit, flow.metadata.annotations),
        now=now,
    )
    # Only the flow's own events: one event per never-run step would be noise here.
    events = tuple(e for e in derive_events(flow.status, status, {}) if e.reason.startswith("Flow"))
    return Plan((), status, events, max(0.0, until(now, ttl_expiry(flow, now))))
