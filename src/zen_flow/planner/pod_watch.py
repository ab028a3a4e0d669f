"""The observe pass's look at a Running step whose Job has no ready pod: say why its pod waits (from what
the controller knows of the Job and its last read of its pods, `PlanState.pods`), and end the attempt
once it has waited longer than its podPendingTimeoutSeconds (planner/pending_pods.py says when each
thing is due). The wait is said after what the step's message said before (planner/pod_waits.py), and
only that part goes when the wait is over."""

from __future__ import annotations

from zen_flow.api.job import Job
from zen_flow.planner.memoization import Memoization
from zen_flow.planner.pending_pods import (
    PENDING_TIMEOUT_MARK,
    READ_RETRY_SECONDS,
    attempt_began,
    cluster_lag,
    current,
    first_look,
    pending,
    pending_timeout,
    read_times,
    stuck,
    successes_needed,
    wait_began,
)
from zen_flow.planner.pod_waits import shown, without_wait
from zen_flow.planner.steps import StepWork
from zen_flow.planner.timing import after


class PodWatch(Memoization):
    def watch_pods(self, w: StepWork, job: Job) -> str | None:
        """Look at the Running Job step `w` whose Job is `job` (not finished, not suspended): its message
        names why its pod waits, or no longer does once it runs. Returns why the attempt fails when it
        has waited past its podPendingTimeoutSeconds (the caller deletes the Job and fails it)."""
        if w.spec.is_flow or not pending(job):
            w.message = without_wait(w.message)  # it runs (or ended): the wait is over
            return None
        look = current(self.pods.get(job.metadata.name), job)
        if look is None:
            # The controller has not seen it pending (it notes every pending Job before it plans): a plan
            # made without its reads.
            return None
        timeout = pending_timeout(self.flow, w.spec)
        began = attempt_began(job, w.attempt_start_time, w.start_time or self.now)
        lag = cluster_lag(job, w.attempt_start_time)
        needed = successes_needed(w.spec)
        times = read_times(job, began, timeout, look, lag, needed)
        # A read that was due and is not here (more were due than a plan reads, or it failed): soon.
        self.wakeups.append(times.due if times.due > self.now else after(self.now, READ_RETRY_SECONDS))
        wait = look.wait
        if wait is None or (look.moved_at is not None and wait.read_at <= look.moved_at):
            # Not read yet; or its pods moved since the read (a pod ended, another was made): what the
            # read found is the past, and the message stays as it is until the next read, due soon.
            return None
        if not stuck(job, wait, needed) or wait.read_at < first_look(wait_began(began, look, lag), timeout):
            # A container runs (an init container, one not ready yet), or a pod finished that the Job
            # controller has yet to count; or the pod began to wait again shortly before the read (a new
            # pod): not stuck, or not for long enough to say so yet.
            w.message = without_wait(w.message)
            return None
        w.message = shown(w.message, wait)
        if times.bound is not None and wait.consistent and wait.read_at >= times.bound:
            return f"{PENDING_TIMEOUT_MARK}: no pod running for {timeout}s; {wait.message}"
        return None
