"""When a Running step's Job counts as pending, when its pods are read, and when it has waited too long
(`podPendingTimeoutSeconds`).

A Job is *pending* while it has not finished (nor has the Job controller said it is about to:
`SuccessCriteriaMet`, `FailureTarget`), is not suspended or being deleted, and has no ready pod (its
`status.ready`, from the Job informer's cache: nothing is read for it). The controller notes, by its own
clock, when it sees a Job turn so (`PendingJob.seen_at`: the update that reported no ready pod) and when
its pod counts move while it stays so (`moved_at`: a pod ended, another was made). A pending Job's pods
are read STUCK_AFTER_SECONDS after either (sooner when the step's podPendingTimeoutSeconds is shorter),
then again while it stays pending: REREAD_SECONDS after a read that found something new, and after one
that found the same (its pod still runs, not ready; the same cause) as long as that has lasted (30 s,
60 s, 120 s, ...), up to REREAD_MAX_SECONDS; and once more when its timeout is due. A step fails for it
only on a read made at or after that moment from the apiserver's storage (`DueRead.decisive`), never on
an older one (the pod may have started since), nor on a cached one. Reads are made by the controller
before planning (controller/pod_reads.py), at most READS_PER_PLAN per flow and plan, those waiting
longest first; the plan gets what the controller knows of each Job (`PendingJob`) and wakes the flow
when the next read is due (the work queue's timers: nothing polls).

The time a step has waited counts, by the controller's clock, from the latest of: when its attempt
began (its Job created or resumed, as for timeoutSeconds); when the controller saw its Job turn pending,
or its pod counts move; and when its pods last changed (a pod created to replace one that ended, a
container that stopped running, a pod that ended, a deleted pod's grace period: the cluster's clocks,
moved by how far behind the controller's the cluster's showed when it stamped the attempt's Job,
`cluster_lag`). A Job with no pod at all counts from the first of the controller's reads in a row that
found none (what the pods said of such a Job is gone with them). Only time with no container running
counts: a pod that runs, even one that is not ready yet, is never failed by it; nor is a Job whose pods
finished and that the Job controller has yet to count (`settling`): its own verdict comes next.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from itertools import compress
from typing import TypeGuard

from zen_flow.api.constants import StepPhase
from zen_flow.api.job import Job
from zen_flow.api.jobflow import JobFlow, Step
from zen_flow.planner.memo import MEMO_STEPS, IdentityMemo
from zen_flow.planner.pod_waits import NO_POD_REASON, PodWait
from zen_flow.planner.shape import shape_of
from zen_flow.planner.steps import JOB_NAME, PHASE, StepWork
from zen_flow.planner.timing import after, after_cut, normalize, utc

_looks: IdentityMemo[float] = IdentityMemo(MEMO_STEPS)
# A pending Job's pods are first read this long after the controller saw it turn pending (or its pods
# move): most pods run well within it.
STUCK_AFTER_SECONDS = 30
# A pending Job's pods are read again after this long (its message follows what changed), and after
# longer while they stay as they were, up to REREAD_MAX_SECONDS (a pod that runs and is not ready).
REREAD_SECONDS = 30
REREAD_MAX_SECONDS = 300
# A read that was due and not made (more than READS_PER_PLAN were due, or it failed): tried again after.
READ_RETRY_SECONDS = 5
# A read the pod-read limiter refused (its namespace's share spent): tried again after READ_RETRY_SECONDS,
# twice as long after each refusal in a row, up to this; a read made starts again. Many stuck Jobs over a
# namespace's share would otherwise each re-plan their flow every few seconds for nothing.
READ_BACKOFF_MAX_SECONDS = 60
READS_PER_PLAN = 8
# What a step that waited too long says (and the Warning event it sends, planner/events.py).
PENDING_TIMEOUT_MARK = "PodPendingTimeout"


@dataclass(frozen=True)
class PendingJob:
    """What the controller knows of a pending Job (`job_uid`), by its own clock: when it first saw it
    pending (`seen_at`; again after each time it was not), when it last saw the Job's pod counts move
    while it stayed pending (`moved_at`: a pod ended, another was made; None: never), and its last read
    of the Job's pods (`wait`; None before the first); the refusals in a row of a read of it by the
    limiter (`refusals`) and when a read may be tried again after the last (`retry_at`)."""

    job_uid: str
    seen_at: datetime
    wait: PodWait | None = None
    moved_at: datetime | None = None
    refusals: int = 0
    retry_at: datetime | None = None


def refused(look: PendingJob, now: datetime) -> PendingJob:
    """`look` after the limiter refused a read of its pods at `now`: tried again READ_RETRY_SECONDS
    later, twice as long after each refusal in a row (5, 10, 20, 40 s), up to READ_BACKOFF_MAX_SECONDS."""
    refusals = look.refusals + 1
    backoff = min(READ_BACKOFF_MAX_SECONDS, READ_RETRY_SECONDS * 2 ** min(refusals - 1, 16))
    return replace(look, refusals=refusals, retry_at=after(now, backoff))


def pods_moved(old: Job, new: Job) -> bool:
    """Did the Job's pod counts move (a pod made, ended or counted), as the Job controller reports them?
    Its pods changed: a read is worth making soon, whatever the last one found."""
    return _counts(old) != _counts(new)


def _counts(job: Job) -> tuple[int, int, int]:
    return job.status.active, job.status.succeeded, job.status.failed


@dataclass(frozen=True)
class DueRead:
    """A pending Job whose pods are due to be read; `decisive`: the read may fail its step (it is made at
    or after its podPendingTimeoutSeconds), so it is made from the apiserver's storage, not its cache."""

    job: str
    decisive: bool = False


def pending(job: Job) -> bool:
    """Has the Job no ready pod, while it should have one (not finished or about to, suspended or being
    deleted)? As the Job controller reports it (`status.ready: 0`): a Job it has not reported on yet is
    not looked at (there is nothing to say of it: its pod may not exist yet), until its first report."""
    return job.status.ready == 0 and not (job.finished or job.ending or job.suspended or job.deleting)


def successes_needed(step: Step) -> int | None:
    """How many pods of the step's Job must succeed for it to complete (`completions`; 1 when unset and
    its `parallelism` is at most 1); None: a success completes it only once no pod is active. So for a
    work queue (`completions` unset, `parallelism` over 1): Kubernetes completes it once a pod succeeded
    and every pod ended, and a sibling that never runs holds it open. None too when an expression the
    template fills decides it (not known here)."""
    spec = (step.template or {}).get("spec")
    if not isinstance(spec, Mapping):
        return 1
    completions = spec.get("completions")
    if completions is None:
        parallelism = spec.get("parallelism")
        if parallelism is None:  # unset or null: Kubernetes' default, 1
            return 1
        return 1 if _integer(parallelism) and parallelism <= 1 else None
    return completions if _integer(completions) else None


def _integer(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def settling(job: Job, wait: PodWait, needed: int | None = 1) -> bool:
    """Did the read find a pod that finished and that the Job's status does not count yet? The Job
    controller's verdict on it (Complete, a podFailurePolicy's FailJob, a replacement pod) is on its way:
    not a wait, whatever the time. So too a Job whose status counts as many succeeded pods as it needs
    (`needed`: its completions): its Complete condition may come later than a step's bound. A Job that
    counts fewer has more pods to run: its wait counts from its last success (`pods_moved`), and a next
    pod that never comes (a quota refuses it) is a wait like any. When `needed` is None (a work queue, or
    an expression fills it), a success with no pod active may be the last: not a wait; a pod still
    pending beside it is one (a work queue completes only once it ends)."""
    counted = job.status.succeeded
    if wait.uncounted or wait.succeeded > counted:
        return True
    if needed is None:
        return counted > 0 and job.status.active == 0
    return counted >= needed


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


def attempt_start(w: StepWork) -> datetime | None:
    """When `w`'s attempt began by the status alone (its Job unseen): `attempt_start_time`; in a status
    written before that field existed, `start_time` for a first attempt."""
    return w.attempt_start_time or (w.start_time if w.retry_count == 0 else None)


def cluster_lag(job: Job, attempt_start_time: datetime | None) -> timedelta:
    """How far behind the controller's clock the cluster's showed when it stamped the attempt's Job
    (created or resumed) after the controller recorded the attempt's start: what its pods' timestamps
    are moved by (they come from the same clocks), so a cluster behind makes no wait look longer."""
    theirs = job.resumed_at or job.metadata.creation_timestamp
    if theirs is None or attempt_start_time is None:
        return timedelta(0)
    return max(timedelta(0), utc(attempt_start_time) - utc(theirs))


def wait_began(began: datetime, look: PendingJob, lag: timedelta) -> datetime:
    """When the Job's current wait began, by the controller's clock: its attempt's start (`began`), when
    the controller saw it turn pending or its pod counts move, or when its pods last changed (the
    cluster's clocks, moved by `lag`), whichever is latest."""
    since = max(utc(began), utc(look.seen_at), utc(look.moved_at or look.seen_at))
    wait = look.wait
    if wait is not None and not wait.running and wait.since is not None:
        since = max(since, utc(wait.since) + lag)
    return since


def bound_counts_from(began: datetime, look: PendingJob, lag: timedelta) -> datetime:
    """Whence the Job's wait counts towards its podPendingTimeoutSeconds: when it began (`wait_began`),
    and for a Job found with no pod at all, not before the first of the reads in a row that found none
    (its pods' times are gone with them: the controller counts only what it saw)."""
    since = wait_began(began, look, lag)
    wait = look.wait
    if wait is not None and wait.reason == NO_POD_REASON:
        since = max(since, utc(wait.first_seen))
    return since


def stuck(job: Job, wait: PodWait, needed: int | None = 1) -> bool:
    """Did the read find the Job's pods waiting (no container running, none finished uncounted, not as
    many succeeded as the Job needs, `needed`)?"""
    return not wait.running and not settling(job, wait, needed)


def first_look(since: datetime, timeout: int | None) -> datetime:
    """When a wait that began at `since` is first looked at (and named in the step's message)."""
    return after_cut(since, min(STUCK_AFTER_SECONDS, timeout) if timeout else STUCK_AFTER_SECONDS)


def timeout_due(since: datetime, timeout: int) -> datetime:
    """When a wait that began at `since` (a timestamp cut to the second) has lasted `timeout` seconds:
    never early, at most a second late (as timeoutSeconds)."""
    return after_cut(since, timeout)


def reread_after(wait: PodWait) -> float:
    """How long after `wait` the pods are read again: REREAD_SECONDS after a read that found something
    new, else as long as what it found has lasted (30 s, 60 s, 120 s, ...), up to REREAD_MAX_SECONDS."""
    lasted = (utc(wait.read_at) - utc(wait.first_seen)).total_seconds()
    return min(REREAD_MAX_SECONDS, max(REREAD_SECONDS, lasted))


@dataclass(frozen=True)
class ReadTimes:
    """When a pending Job's pods are next read (`due`), and when its step's bound is due (`bound`; None:
    no bound, or nothing to fail: its pod runs, or the Job controller has yet to count a pod's end)."""

    due: datetime
    bound: datetime | None


def read_times(
    job: Job, began: datetime, timeout: int | None, look: PendingJob, lag: timedelta, needed: int | None = 1
) -> ReadTimes:
    """When the pods of the pending Job `job` (its attempt began at `began`) are to be read next, given
    what the controller knows of it (`look`): the first look, then again (`reread_after`), and at the
    timeout."""
    first = first_look(wait_began(began, look, lag), timeout)
    wait = look.wait
    ends = timeout_due(bound_counts_from(began, look, lag), timeout) if timeout else None
    if wait is None or wait.read_at < first:
        return ReadTimes(put_off(first, look, ends), ends)
    if not stuck(job, wait, needed):
        return ReadTimes(put_off(after(wait.read_at, reread_after(wait)), look, None), None)
    due = after(wait.read_at, reread_after(wait))
    if ends is not None and (wait.read_at < ends or not wait.consistent):
        # The read at the bound; past it, a cached read is made again from storage, at once.
        due = min(due, max(ends, wait.read_at))
    return ReadTimes(put_off(due, look, ends), ends)


def put_off(due: datetime, look: PendingJob, bound: datetime | None) -> datetime:
    """A read due at `due`, put off until `look.retry_at` after the limiter refused the last, but never
    past the step's bound: the read at the bound is not the limiter's (controller/pod_reads.py)."""
    retry = look.retry_at
    if retry is None or retry <= due or (bound is not None and bound <= due):
        return due
    return retry if bound is None else min(retry, bound)


def pods_to_read(
    flow: JobFlow, jobs: Sequence[Job], now: datetime, seen: Mapping[str, PendingJob]
) -> tuple[DueRead, ...]:
    """The pending Jobs of Running Job steps whose pods are due to be read at `now` (`read_times`), given
    what the controller knows of each (`seen`, by Job name: one it does not know of is not read), those
    waiting longest for it first; at most READS_PER_PLAN."""
    if not seen or not any(map(pending, jobs)):  # the usual case: every Job's pod is ready, or the Job ended
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
    due: list[tuple[datetime, str, bool]] = []
    for job in compress(jobs, map(running.__contains__, map(JOB_NAME, jobs))):
        name = job.metadata.name
        status = running[name]
        spec = specs.get(status.name)
        if spec is None or spec.is_flow or spec.is_manual or not pending(job):
            continue
        look = current(seen.get(name), job)
        if look is None:
            continue
        began = attempt_began(job, status.attempt_start_time, now)
        lag = cluster_lag(job, status.attempt_start_time)
        times = read_times(job, began, pending_timeout(flow, spec), look, lag, successes_needed(spec))
        if now >= times.due:
            due.append((times.due, name, times.bound is not None and now >= times.bound))
    due.sort()
    return tuple(DueRead(name, decisive) for _, name, decisive in due[:READS_PER_PLAN])


def current(look: PendingJob | None, job: Job) -> PendingJob | None:
    """`look` if it is of this very Job (not of one of the same name before it)."""
    if look is None or (look.job_uid and job.metadata.uid and look.job_uid != job.metadata.uid):
        return None
    return look
