"""The ends of a flow's life: a spec that cannot run (fail once, no retry loop) and a finished flow
(never changes again; deleted when its TTL expires).

The TTL of a finished flow, by its outcome (first found wins):
  1. `executionPolicy.ttlStrategy.secondsAfterSuccess` (Succeeded) or `.secondsAfterFailure` (Failed);
  2. `executionPolicy.ttlSecondsAfterFinished`;
  3. DEFAULT_TTL_SECONDS_AFTER_FINISHED (86400).
The strategy comes first although the mutating webhook (and the CRD schema) writes the default
`ttlSecondsAfterFinished` into every flow: were it the other way round, that default would always win.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from zen_flow.api.constants import DEFAULT_TTL_SECONDS_AFTER_FINISHED, FlowPhase, StepPhase
from zen_flow.api.flow_status import JobFlowStatus
from zen_flow.api.jobflow import JobFlow
from zen_flow.planner.actions import DeleteFlow, DeleteJob, Plan
from zen_flow.planner.approvals import with_origin
from zen_flow.planner.events import derive_events
from zen_flow.planner.status import REASON_INVALID, assemble
from zen_flow.planner.steps import StepWork
from zen_flow.planner.timing import after, normalize, until

_LISTED_ERRORS = 10


def ttl_rule(flow: JobFlow, phase: FlowPhase) -> tuple[str, int]:
    """(the field that decides, its seconds) for a flow that ended `phase` (Succeeded or Failed)."""
    policy = flow.spec.execution_policy
    if policy is None:
        return "ttlSecondsAfterFinished", DEFAULT_TTL_SECONDS_AFTER_FINISHED
    strategy = policy.ttl_strategy
    if strategy is not None:
        if phase == FlowPhase.SUCCEEDED:
            field, own = "ttlStrategy.secondsAfterSuccess", strategy.seconds_after_success
        else:
            field, own = "ttlStrategy.secondsAfterFailure", strategy.seconds_after_failure
        if own is not None and own >= 0:  # a negative one is the validator's to report: not ours
            return field, own
    ttl = policy.ttl_seconds_after_finished
    return "ttlSecondsAfterFinished", DEFAULT_TTL_SECONDS_AFTER_FINISHED if ttl is None or ttl < 0 else ttl


def ttl_expiry(flow: JobFlow, phase: FlowPhase, completion_time: datetime) -> datetime:
    return after(completion_time, ttl_rule(flow, phase)[1])


def terminal_plan(flow: JobFlow, now: datetime) -> Plan:
    """A Succeeded or Failed flow: only the TTL acts, and a spec edited since (a suspend, say) is
    acknowledged in `observedGeneration`: tools that judge health by it (kstatus: Argo CD, Flux) would
    otherwise take the flow for never reconciled."""
    status = flow.status
    generation = flow.metadata.generation
    if generation and status.observed_generation != generation:
        status = status.model_copy(update={"observed_generation": generation})
    finished = status.completion_time or status.start_time or flow.metadata.creation_timestamp
    if flow.metadata.deletion_timestamp is not None or finished is None:
        return Plan((), status, (), None)
    outcome = FlowPhase.SUCCEEDED if status.phase == FlowPhase.SUCCEEDED else FlowPhase.FAILED
    field, seconds = ttl_rule(flow, outcome)
    expiry = after(finished, seconds)
    if now >= expiry:
        return Plan((DeleteFlow(f"{field}={seconds}s expired"),), status, (), None)
    return Plan((), status, (), until(now, expiry))


def fail_invalid(
    flow: JobFlow,
    errors: Sequence[str],
    now: datetime,
    *,
    reason: str = REASON_INVALID,
    prefix: str = "invalid spec",
    base: JobFlowStatus | None = None,
    unborn: Collection[str] = (),
) -> Plan:
    """An invalid spec: the flow fails once with condition Valid=False (reason InvalidSpec). Another
    `reason` fails it the same way for a cause found while executing the plan (condition Failed only);
    `base` is then that plan's status: the steps it started are Running, and every Running step's Job is
    stopped, as when a flow is stopped (a failed flow with Jobs still running would hold their pods),
    but for the `unborn` ones (the Jobs the apiserver refused: their steps fail with the flow)."""
    now = normalize(now)
    # A plan that created Jobs was not terminal, whatever the cached flow says (a rerun starts from a
    # Failed flow).
    if base is None and flow.status.phase in (FlowPhase.SUCCEEDED, FlowPhase.FAILED):
        return terminal_plan(flow, now)
    listed = "; ".join(errors[:_LISTED_ERRORS]) or "unknown error"
    more = f" (+{len(errors) - _LISTED_ERRORS} more)" if len(errors) > _LISTED_ERRORS else ""
    failure = f"{prefix}: {listed}{more}"
    cause = "the flow spec is invalid" if reason == REASON_INVALID else prefix
    current = flow.status if base is None else base
    old = {s.name: s for s in current.steps}
    works: dict[str, StepWork] = {}
    stops: list[DeleteJob] = []
    for spec in flow.spec.steps:
        if not spec.name or spec.name in works:
            continue
        work = StepWork.load(spec, old.get(spec.name))
        if work.phase == StepPhase.RUNNING:
            if base is not None and work.job_ref is not None and work.job_ref.name not in unborn:
                stops.append(DeleteJob(work.job_ref.name, spec.name, cause))
            work.fail(now, cause)
        elif work.phase == StepPhase.RETRYING:
            work.fail(now, f"{cause}; {work.message or ''}")
        elif not work.terminal:
            work.drop(now, cause)
        works[spec.name] = work
    status = assemble(
        flow,
        [w.status() for w in works.values()],
        FlowPhase.FAILED,
        failure=failure,
        failed_reason=reason,
        start_time=current.start_time,
        audit=with_origin(current.audit, flow.metadata.annotations),  # the plan's approvals too
        now=now,
    )
    # Only the flow's own events: one event per never-run step would be noise here.
    events = tuple(e for e in derive_events(flow.status, status, {}) if e.reason.startswith("Flow"))
    return Plan(tuple(stops), status, events, max(0.0, until(now, ttl_expiry(flow, FlowPhase.FAILED, now))))
