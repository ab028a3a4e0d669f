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
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from zen_flow.api.constants import (
    DEFAULT_TTL_SECONDS_AFTER_FINISHED,
    FlowPhase,
    JobRetention,
    StepPhase,
)
from zen_flow.api.flow_status import JobFlowStatus, StepStatus
from zen_flow.api.job import Job
from zen_flow.api.jobflow import JobFlow
from zen_flow.core.naming import short_hash
from zen_flow.planner.actions import Action, CreateJob, DeleteFlow, DeleteJob, EventSpec, Plan
from zen_flow.planner.approvals import with_origin
from zen_flow.planner.create_refusals import unnoted
from zen_flow.planner.events import NORMAL, derive_events
from zen_flow.planner.newer_schema import known_again
from zen_flow.planner.node_avoidance import without_avoiding
from zen_flow.planner.retention import retention_deletes, retention_of
from zen_flow.planner.retry_messages import waited_failure
from zen_flow.planner.status import REASON_INVALID, REASON_JOB_REJECTED, all_observed_at
from zen_flow.planner.status_assembly import assemble
from zen_flow.planner.steps import StepWork
from zen_flow.planner.timing import after, normalize, until
from zen_flow.planner.undeleted import undeleted

_LISTED_ERRORS = 10
# The DeleteJob reason for a Job of an ended flow that its status does not record (`strays`), and the
# reason of the Normal event that names it.
ENDED_REASON = "the flow has ended and its status does not record this Job"
STRAY_EVENT = "StrayJobDeleted"
# How the message of a step a flow-wide failure ended begins (`fail_invalid`: Failed, or Skipped after
# `not started: `/`no decision: `), before the failure's cause: planner.tolerance reads it, so that a
# failure of the step's own written in that very status (one completionTime for both) stays tolerated.
# Not "the flow failed": a step the ordinary end of a failed flow dropped says `not started: the flow
# failed` (planner.finale), and a reader must tell the two apart.
FLOW_FAILED_MARK = "flow-wide failure: "
# The cause an invalid spec's steps are ended for (any other flow-wide failure's: its prefix).
INVALID_CAUSE = "the flow spec is invalid"
# The cause of a flow failed by the Jobs the apiserver refused (`fail_rejected`).
JOB_REJECTED_CAUSE = "the apiserver refused a step's Job"
_JOB_NAME_END = re.compile(r"-([0-9a-f]{8})(?:-r([0-9]+))?\Z")  # \Z: `$` also matches before a final "\n"


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


def strays(
    flow: JobFlow, jobs: Iterable[Job], planned: Sequence[Action] = (), *, finished: bool = False
) -> list[DeleteJob]:
    """The deletes of the flow's own Jobs (`jobs`: those it controls) still running once it has ended
    (every one not being deleted already, nor deleted by a `planned` action): nothing of a finished flow
    runs on (one the Job controller has decided, `Job.ending`, runs none any more: left to finish as a
    finished one is). The plan does not ask whether its status records them: a running Job of an ended
    flow is one it does not (a Job a plan created whose status write was lost, and that no later plan took
    over: a rerun's, whose request the next plan refused or no longer saw; or one someone else made under
    the name of a step's Job that never started). `finished` (the plan of a flow that has ended before
    it): also a finished Job of an abandoned rerun (`_abandoned`), which a later rerun would
    otherwise take over as its own attempt instead of running it.
    The controller makes sure the flow it planned from is the stored one before deleting any
    (`ENDED_REASON`): a flow cache behind the Job cache would take a live rerun's Jobs for these."""
    deleted = {a.name for a in planned if isinstance(a, DeleteJob)}
    steps = {short_hash(flow.metadata.name, s.name): s.name for s in flow.spec.steps}
    recorded = {s.name: s for s in flow.status.steps}
    found: list[DeleteJob] = []
    for job in jobs:
        name = job.metadata.name
        if job.deleting or name in deleted:
            continue
        step, attempt = step_attempt(name, steps)
        # An ending one (decided: planner/job_verdicts.py) runs no pod any more, and its step may have
        # ended from its interim condition: left to finish, unless abandoned, as a finished one.
        over = job.finished or job.ending
        if over and not (finished and step and _abandoned(job, attempt, recorded.get(step))):
            continue
        found.append(DeleteJob(name, step, ENDED_REASON))
    return found


def _abandoned(job: Job, attempt: int, step: StepStatus | None) -> bool:
    """Is a finished Job of an ended flow's step (at `attempt`) one its status does not record: above the
    step's `retryCount`, or at it with the step recording no Job of its name and uid? A rerun of a step
    whose last try ended without a Job (Skipped, never run, a finally step a stop left unrun, a timeout)
    keeps its count (interventions.py), so its first Job is at the count, not above it."""
    count = step.retry_count if step is not None else 0
    if attempt != count:
        return attempt > count
    ref = step.job_ref if step is not None else None
    if ref is None or ref.name != job.metadata.name:
        return True
    return bool(ref.uid and job.metadata.uid and ref.uid != job.metadata.uid)


def stray_events(deletes: Iterable[Action]) -> tuple[EventSpec, ...]:
    """One Normal event per Job `strays` deletes: `kubectl describe` says why a Job went (emitted once the
    delete is done, before the status write: `EventSpec.acted`)."""
    return tuple(
        EventSpec(
            NORMAL,
            STRAY_EVENT,
            f"Job {a.name}{f' (step {a.step})' if a.step else ''} deleted: {a.reason}",
            acted=True,
        )
        for a in deletes
        if isinstance(a, DeleteJob) and a.reason == ENDED_REASON
    )


def step_attempt(name: str, steps: Mapping[str, str]) -> tuple[str, int]:
    """(step, attempt) of a Job by its name (`job_name`): the step by the hash of (flow, step) it ends in,
    which truncating a long name never cuts; ("", 0) when no step of the flow has that hash. The cache
    keeps no Job labels (the step label), and a long name's retry is truncated apart from its first."""
    found = _JOB_NAME_END.search(name)
    if found is None or (step := steps.get(found[1])) is None:
        return "", 0
    return step, int(found[2] or 0)


def terminal_plan(flow: JobFlow, now: datetime, jobs: Iterable[Job] = (), *, ttl: bool = True) -> Plan:
    """A Succeeded or Failed flow: only the TTL acts, and a spec edited since (a suspend, a re-applied
    TTL) is acknowledged in `observedGeneration`, the status's and every condition's: tools that judge
    health by it (kstatus: Argo CD, Flux) would otherwise take the flow for never reconciled, and
    `kubectl wait --for=condition=Complete` would wait on to its timeout. A Job of its own that its
    status does not record (`jobs`, `strays`) is deleted, with an event: the status stays as it is, but
    for a Valid=Unknown (NewerSchema) an older leader wrote, said again (newer_schema.known_again).
    Once the TTL has expired only the flow is deleted: the garbage collector takes its Jobs with it,
    and a Job delete the apiserver keeps refusing (an admission policy) cannot hold the flow's deletion
    back; the status, caught up all the same, is written only if an archive record holds the deletion
    back (planner/archiving.py): the reconciler writes none beside a deletion that went through. `ttl`
    False (a verified child flow, planner.lineage): its own TTL does not apply, its parent's retention
    decides."""
    status = flow.status
    generation = flow.metadata.generation
    if (known := known_again(status.conditions, generation or None, now)) is not status.conditions:
        status = status.model_copy(update={"conditions": known})  # an older leader's NewerSchema
    if generation:
        # Each condition too (`kubectl wait` goes by a condition's own), also of a flow edited under an
        # earlier version, which raised only the status's: what they say stays.
        conditions = all_observed_at(status.conditions, generation)
        if status.observed_generation != generation or conditions is not status.conditions:
            update = {"observed_generation": generation, "conditions": conditions}
            status = status.model_copy(update=update)
    finished = status.completion_time or status.start_time or flow.metadata.creation_timestamp
    if flow.metadata.deletion_timestamp is not None:
        return Plan((), status, (), None)  # the garbage collector deletes its Jobs
    if finished is not None and ttl:
        outcome = FlowPhase.SUCCEEDED if status.phase == FlowPhase.SUCCEEDED else FlowPhase.FAILED
        field, seconds = ttl_rule(flow, outcome)
        expiry = after(finished, seconds)
        if now >= expiry:
            return Plan((DeleteFlow(f"{field}={seconds}s expired"),), status, (), None)
    jobs = tuple(jobs)
    # The live Jobs of ended attempts, its status recording them (a delete refused as the flow ended):
    # asked for as such first, never told as strays the status does not record.
    stops = undeleted(flow, {j.metadata.name: j for j in jobs}, flow_ended=True) if jobs else []
    stops.extend(strays(flow, jobs, stops, finished=True))
    events = stray_events(stops)
    # Under jobRetention, its superseded attempts' Jobs and (FailedOnly) its Succeeded steps': the write
    # that ended the flow stored the last ones, so this is the first plan that may delete them.
    if jobs and retention_of(flow) != JobRetention.ALL:
        stops.extend(retention_deletes(flow, {j.metadata.name: j for j in jobs}, stops))
    wake = None if finished is None or not ttl else until(now, expiry)
    return Plan(tuple(stops), status, events, wake)


def fail_invalid(
    flow: JobFlow,
    errors: Sequence[str],
    now: datetime,
    *,
    reason: str = REASON_INVALID,
    prefix: str = "invalid spec",
    base: JobFlowStatus | None = None,
    unborn: Collection[str] = (),
    jobs: Iterable[Job] = (),
) -> Plan:
    """An invalid spec: the flow fails once with condition Valid=False (reason InvalidSpec). Another
    `reason` fails it the same way for a cause found while executing the plan (condition Failed only);
    `base` is then that plan's status: the steps it started are Running, and every Running step's Job is
    stopped, as when a flow is stopped (a failed flow with Jobs still running would hold their pods),
    but for the `unborn` ones (the Jobs the apiserver refused: their steps fail with the flow). `jobs`:
    the Jobs the flow controls; those still running are deleted as an ended flow's (`strays`): a started
    flow found invalid (its matrix no longer expands, after a restart) has Jobs its spec cannot name."""
    now = normalize(now)
    # A plan that created Jobs was not terminal, whatever the cached flow says (a rerun starts from a
    # Failed flow).
    if base is None and flow.status.phase in (FlowPhase.SUCCEEDED, FlowPhase.FAILED):
        return terminal_plan(flow, now, jobs)
    listed = "; ".join(errors[:_LISTED_ERRORS]) or "unknown error"
    more = f" (+{len(errors) - _LISTED_ERRORS} more)" if len(errors) > _LISTED_ERRORS else ""
    failure = f"{prefix}: {listed}{more}"
    cause = INVALID_CAUSE if reason == REASON_INVALID else prefix
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
            # Its Job failed already if its retry condition's verdict waits: that failure stays said.
            failed = waited_failure(work.message, work.retry_count)
            work.fail(now, f"{FLOW_FAILED_MARK}{cause}{f'; {failed}' if failed else ''}")
        elif work.phase == StepPhase.RETRYING:  # its next attempt, and the nodes it avoids, never come
            work.fail(now, f"{FLOW_FAILED_MARK}{cause}; {without_avoiding(unnoted(work.message) or '')}")
        elif not work.terminal:
            work.drop(now, f"{FLOW_FAILED_MARK}{cause}")
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
    # The flow's own events, and the StepFailed of a step that was retrying, or whose Job had failed
    # with the verdict of its retry condition waiting (its failure, as any other failed step's, with its
    # final message); one event per never-run step would be noise here.
    retried = {
        s.name
        for s in flow.status.steps
        if s.phase == StepPhase.RETRYING
        or (s.phase == StepPhase.RUNNING and waited_failure(s.message, s.retry_count))
    }
    specs = {s.name: s for s in flow.spec.steps if s.name in retried}
    events = tuple(
        e
        for e in derive_events(flow.status, status, specs)
        if e.reason.startswith("Flow") or (e.step in retried and e.reason == "StepFailed")
    )
    ended = strays(flow, jobs, stops)
    return Plan(
        (*stops, *ended),
        status,
        (*events, *stray_events(ended)),
        max(0.0, until(now, ttl_expiry(flow, FlowPhase.FAILED, now))),
    )


def unpromised(events: Iterable[EventSpec], ended: JobFlowStatus) -> tuple[EventSpec, ...]:
    """A failing plan's `events` but the StepRetrying of a step the flow's failure then `ended` (Failed
    now): no retry is promised that never comes; `fail_invalid` says its StepFailed instead."""
    failed = {s.name for s in ended.steps if s.phase == StepPhase.FAILED}
    return tuple(e for e in events if not (e.reason == "StepRetrying" and e.step in failed))


def fail_rejected(
    flow: JobFlow, rejected: Sequence[str], now: datetime, planned: Plan, created: Collection[str]
) -> Plan:
    """The apiserver refused (422/400) Jobs `planned` asked for: sending them again would loop, so the
    flow fails flow-wide (reason JobRejected) from what that plan did. `planned.status` is its status with
    the UIDs of the Jobs that were `created` (by name); every other Job it asked for is unborn, and its
    step fails with the flow. The plan's events stay: what it saw happened (a step whose Job failed in it,
    StepFailed, StepFailureAllowed if tolerated, its CloudEvents), and no later reconcile would tell them
    (it diffs the Failed status against itself). All but the StepStarted of a step whose Job was refused:
    that step never started. And not the StepRetrying of a step the plan set to retry, which the flow's
    failure ended instead (`unpromised`): its StepFailed (with its final message, from `fail_invalid`,
    as a step retrying before the plan gets) comes instead. The flow's and those steps' events are
    derived from the planned status, not repeated."""
    unborn = {a.name for a in planned.actions if isinstance(a, CreateJob) and a.name not in created}
    unstarted = {a.step for a in planned.actions if isinstance(a, CreateJob) and a.name in unborn}
    ended = fail_invalid(
        flow.model_copy(update={"status": planned.status}),
        rejected,
        now,
        reason=REASON_JOB_REJECTED,
        prefix=JOB_REJECTED_CAUSE,
        base=planned.status,
        unborn=unborn,
    )
    kept = tuple(
        e
        for e in unpromised(planned.events, ended.status)
        if not (e.reason == "StepStarted" and e.step in unstarted)
    )
    return replace(ended, events=(*kept, *ended.events))
