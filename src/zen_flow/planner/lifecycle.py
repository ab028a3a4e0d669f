"""The ends of a flow's life: a spec that cannot run (fail once, no retry loop) and a finished flow
(never changes again; deleted when its TTL expires; nothing of its own runs on behind it: `strays`).

The TTL of a finished flow, by its outcome (first found wins):
  1. `executionPolicy.ttlStrategy.secondsAfterSuccess` (Succeeded) or `.secondsAfterFailure` (Failed);
  2. `executionPolicy.ttlSecondsAfterFinished`;
  3. DEFAULT_TTL_SECONDS_AFTER_FINISHED (86400).
The strategy comes first although the mutating webhook (and the CRD schema) writes the default
`ttlSecondsAfterFinished` into every flow: were it the other way round, that default would always win.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime

from zen_flow.api.constants import DEFAULT_TTL_SECONDS_AFTER_FINISHED, FlowPhase, StepPhase
from zen_flow.api.flow_status import JobFlowStatus
from zen_flow.api.job import Job
from zen_flow.api.jobflow import JobFlow
from zen_flow.core.naming import job_name
from zen_flow.planner.actions import Action, DeleteFlow, DeleteJob, Plan
from zen_flow.planner.approvals import with_origin
from zen_flow.planner.events import derive_events
from zen_flow.planner.status import REASON_INVALID, assemble
from zen_flow.planner.steps import StepWork
from zen_flow.planner.timing import after, normalize, until

_LISTED_ERRORS = 10
# The DeleteJob reason for a Job of an ended flow that was still running (`strays`).
ENDED_REASON = "the flow has ended; its status records no such running Job"
_RETRY_SUFFIX = re.compile(r"-r[0-9]+$")


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


def strays(flow: JobFlow, jobs: Iterable[Job], planned: Sequence[Action] = ()) -> list[DeleteJob]:
    """The deletes of the flow's own Jobs (`jobs`: those it controls) still running once it has ended,
    but those `planned` deletes already: nothing of a finished flow runs on. Its status records none of
    them: a Job a plan created whose status write was lost, and that no later plan took over (a rerun's,
    whose request the next plan refused or no longer saw: a stop set, the request changed or removed),
    or one someone else made under the name of a step's Job that never started (`adopt` takes over only
    the next attempt of a step that may start)."""
    deleted = {a.name for a in planned if isinstance(a, DeleteJob)}
    running = [
        j.metadata.name for j in jobs if not j.finished and not j.deleting and j.metadata.name not in deleted
    ]
    if not running:
        return []
    first = {job_name(flow.metadata.name, s.name, 0): s.name for s in flow.spec.steps}
    return [DeleteJob(n, first.get(_RETRY_SUFFIX.sub("", n), ""), ENDED_REASON) for n in running]


def terminal_plan(flow: JobFlow, now: datetime, jobs: Iterable[Job] = ()) -> Plan:
    """A Succeeded or Failed flow: only the TTL acts, and a spec edited since (a suspend, say) is
    acknowledged in `observedGeneration`: tools that judge health by it (kstatus: Argo CD, Flux) would
    otherwise take the flow for never reconciled. A Job of its own still running (`jobs`) is deleted
    (`strays`): the status stays as it is."""
    status = flow.status
    generation = flow.metadata.generation
    if generation and status.observed_generation != generation:
        status = status.model_copy(update={"observed_generation": generation})
    finished = status.completion_time or status.start_time or flow.metadata.creation_timestamp
    if flow.metadata.deletion_timestamp is not None:
        return Plan((), status, (), None)  # the garbage collector deletes its Jobs
    stops = tuple(strays(flow, jobs))
    if finished is None:
        return Plan(stops, status, (), None)
    outcome = FlowPhase.SUCCEEDED if status.phase == FlowPhase.SUCCEEDED else FlowPhase.FAILED
    field, seconds = ttl_rule(flow, outcome)
    expiry = after(finished, seconds)
    if now >= expiry:
        return Plan((*stops, DeleteFlow(f"{field}={seconds}s expired")), status, (), None)
    return Plan(stops, status, (), until(now, expiry))


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
