"""When a Running step's Job counts as pending, when its pods are read, and when it has waited too long
(`podPendingTimeoutSeconds`).

A Job is *pending* while it has not finished, is not suspended or being deleted, and has no ready pod
(its `status.ready`, from the Job informer's cache: nothing is read for it). A pending Job's pods are read
STUCK_AFTER_SECONDS after its attempt began (sooner when the step's podPendingTimeoutSeconds is
shorter), then every REREAD_SECONDS while it stays pending, and once more when its timeout is due: a
step fails for it only on a read made at or after that moment, never on an older one (the pod may have
started since). Reads are made by the controller before planning (controller/plan_runner.py), at most
READS_PER_PLAN per flow and plan, those waiting longest first; the plan gets the last read of each Job
(`PodWait`) and wakes the flow when the next one is due (the work queue's timers: nothing polls).

The time a step has waited counts from when its attempt began (its Job created or resumed, as for
timeoutSeconds), or from when its current pod began to wait if that is later (created to replace one
that failed, an init container that finished, a container the kubelet restarts): only time with no
container running counts, and a pod that runs, even one that is not ready yet, is never failed by it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from itertools import compress

from zen_flow.api.constants import StepPhase
from zen_flow.api.job import Job
from zen_flow.api.jobflow import JobFlow, Step
from zen_flow.planner.memo import MEMO_STEPS, IdentityMemo
from zen_flow.planner.pod_waits import PodWait
from zen_flow.planner.shape import shape_of
from zen_flow.planner.steps import JOB_NAME, PHASE
from zen_flow.planner.timing import after, after_cut, normalize, utc

_looks: IdentityMemo[float] = IdentityMemo(MEMO_STEPS)
# A pending Job's pods are first read this long after its attempt began: most pods run well within it.
STUCK_AFTER_SECONDS = 30
# A pending Job's pods are read again after this long (its message follows what changed).
REREAD_SECONDS = 30
# A read that was due and not made (more than READS_PER_PLAN were due, or it failed): tried again after.
READ_RETRY_SECONDS = 5
READS_PER_PLAN = 8
# What a step that waited too long says (and the Warning event it sends, planner/events.py).
PENDING_TIMEOUT_MARK = "PodPendingTimeout"


def pending(job: Job) -> bool:
    """Has the Job no ready pod, while it should have one (not finished, suspended or being deleted)? As
    the Job controller reports it (`status.ready: 0`): a Job it has not reported on yet is not looked at
    (there is nothing to say of it: its pod may not exist yet), until its first report."""
    return job.status.ready == 0 and not (job.finished or job.suspended or job.deleting)


def first_look_after(flow: JobFlow) -> float:
    """How long after one of the flow's Jobs turns pending its pods may first be due for a read: the
    controller looks at the flow then (the Job's update that says so is no plan's business at once)."""
    policy = flow.spec.execution_policy
    default = policy.pod_pending_timeout_seconds if policy is not None else None

    def derive() -> float:
        bounds = [
            t
            for s in flow.spec.steps
            if not (s.is_flow or s.is_manual)
            and (t := s.pod_pending_timeout_seconds if s.pod_pending_timeout_seconds is not None else default)
        ]
        return float(min([STUCK_AFTER_SECONDS, *bounds]))

    return _looks.get(flow.spec.steps, derive, context=default)


def pending_timeout(flow: JobFlow, step: Step) -> int | None:
    """The step's podPendingTimeoutSeconds, or the flow's (executionPolicy); None: no bound. A Job step's
    only: a Flow step's child flow and a Manual step have no pod of their own."""
    if step.is_flow or step.is_manual:
        return None
    if step.pod_pending_timeout_seconds is not None:
        return step.pod_pending_timeout_seconds
    policy = flow.spec.execution_policy
    return policy.pod_pending_timeout_seconds if policy is not None else None


def attempt_began(job: Job, attempt_start_time: datetime | None, fallback: datetime) -> datetime:
    """When the attempt of `job` began: its creation, or its last resume, never before the controller,
    by its own clock, created it or saw it resumed (`attempt_start_time`; Observation.began)."""
    theirs = job.resumed_at or job.metadata.creation_timestamp or job.status.start_time
    if theirs is None:
        return attempt_start_time or fallback
    return theirs if attempt_start_time is None else max(theirs, attempt_start_time)


def waiting_since(began: datetime, wait: PodWait | None) -> datetime:
    """Whence the wait counts: the attempt's start, or when its current pod began to wait, if later."""
    if wait is None or wait.since is None:
        return began
    return max(utc(began), utc(wait.since))


def first_look(since: datetime, timeout: int | None) -> datetime:
    """When a wait that began at `since` is first looked at (and named in the step's message)."""
    return after_cut(since, min(STUCK_AFTER_SECONDS, timeout) if timeout else STUCK_AFTER_SECONDS)


def timeout_due(since: datetime, timeout: int) -> datetime:
    """When a wait that began at `since` (a timestamp cut to the second) has lasted `timeout` seconds:
    never early, at most a second late (as timeoutSeconds)."""
    return after_cut(since, timeout)


def next_read(began: datetime, timeout: int | None, wait: PodWait | None) -> datetime:
    """When the pods of a pending Job whose attempt began at `began` are to be read next, given the last
    read (`wait`): the first look, then every REREAD_SECONDS, and at the timeout."""
    since = waiting_since(began, wait)
    first = first_look(since, timeout)
    if wait is None or wait.read_at < first:
        return first
    due = after(wait.read_at, REREAD_SECONDS)
    if timeout and not wait.running and wait.read_at < (ends := timeout_due(since, timeout)):
        due = min(due, ends)
    return due


def pods_to_read(
    flow: JobFlow, jobs: Sequence[Job], now: datetime, seen: Mapping[str, PodWait]
) -> tuple[str, ...]:
    """The pending Jobs of Running Job steps whose pods are due to be read at `now` (`next_read`), given
    the last reads (`seen`, by Job name), those waiting longest for it first; at most READS_PER_PLAN."""
    if not any(map(pending, jobs)):  # the usual case: every Job's pod is ready, or the Job ended
        return ()
    steps = flow.status.steps
    running = {
        s.job_ref.name: s
        for s in compress(steps, map(StepPhase.RUNNING.__eq__, map(PHASE, steps)))
        if s.job_ref and s.job_ref.name
    }
    if not running:
        return ()
    now = normalize(now)
    specs = shape_of(flow).specs
    due: list[tuple[datetime, str]] = []
    for job in compress(jobs, map(running.__contains__, map(JOB_NAME, jobs))):
        name = job.metadata.name
        status = running[name]
        spec = specs.get(status.name)
        if spec is None or spec.is_flow or spec.is_manual or not pending(job):
            continue
        wait = current(seen.get(name), job)
        began = attempt_began(job, status.attempt_start_time, now)
        when = next_read(began, pending_timeout(flow, spec), wait)
        if now >= when:
            due.append((when, name))
    due.sort()
    return tuple(name for _, name in due[:READS_PER_PLAN])


def current(wait: PodWait | None, job: Job) -> PodWait | None:
    """`wait` if it is a read of this very Job (not of one of the same name before it)."""
    if wait is None or (wait.job_uid and job.metadata.uid and wait.job_uid != job.metadata.uid):
        return None
    return wait
