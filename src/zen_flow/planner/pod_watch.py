"""The observe pass's look at a Running step whose Job has no ready pod: say why its pod waits (from the
controller's last read of its pods, `PlanState.pods`), and end the attempt once it has waited longer than
its podPendingTimeoutSeconds (planner/pending_pods.py says when each thing is due)."""

from __future__ import annotations

from zen_flow.api.job import Job
from zen_flow.planner.memoization import Memoization
from zen_flow.planner.pending_pods import (
    PENDING_TIMEOUT_MARK,
    READ_RETRY_SECONDS,
    attempt_began,
    current,
    first_look,
    next_read,
    pending,
    pending_timeout,
    timeout_due,
    waiting_since,
)
from zen_flow.planner.pod_waits import shown, wait_key
from zen_flow.planner.steps import StepWork
from zen_flow.planner.timing import after


class PodWatch(Memoization):
    def watch_pods(self, w: StepWork, job: Job) -> str | None:
        """Look at the Running Job step `w` whose Job is `job` (not finished, not suspended): its message
        names why its pod waits, or no longer does once it runs. Returns why the attempt fails when it
        has waited past its podPendingTimeoutSeconds (the caller deletes the Job and fails it)."""
        if w.spec.is_flow or not pending(job):
            if w.message is not None and wait_key(w.message) is not None:
                w.message = None  # it runs (or ended): the wait is over
            return None
        name = job.metadata.name
        timeout = pending_timeout(self.flow, w.spec)
        began = attempt_began(job, w.attempt_start_time, w.start_time or self.now)
        wait = current(self.pods.get(name), job)
        read = next_read(began, timeout, wait)
        # A read that was due and is not here (more were due than a plan reads, or it failed): soon.
        self.wakeups.append(read if read > self.now else after(self.now, READ_RETRY_SECONDS))
        if wait is None:
            return None
        since = waiting_since(began, wait)
        if wait.running or wait.read_at < first_look(since, timeout):
            # A container runs (an init container, one not ready yet); or the pod began to wait again
            # since the last look (a new pod): not stuck, or not for long enough to say so yet.
            if wait_key(w.message) is not None:
                w.message = None
            return None
        w.message = shown(w.message, wait)
        if timeout and wait.read_at >= timeout_due(since, timeout):
            return f"{PENDING_TIMEOUT_MARK}: no pod running for {timeout}s; {wait.message}"
        return None
