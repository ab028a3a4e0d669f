"""A failed attempt that the other retry rules would retry asks its step's `retryPolicy.expression`
(core/retry_condition.py) whether a retry can help: false, an error or a non-bool result fails the step
for good, its message ending with why (`not retried: retryPolicy.expression "..." is false`).

Decided once, when the plan observes the failure: the step then turns Retrying or Failed, and the
status write records the verdict; no later plan asks again for that attempt. What the expression sees
is the same for any plan that observes the same failure (a status write lost, a restart, another
replica): the Job's Failed condition and the pod list already read for the exit codes (kube/pods.py);
for an attempt the controller ended or someone deleted, fixed moments: a timeout ran its
timeoutSeconds, a pending timeout its podPendingTimeoutSeconds, a deleted Job until its
deletionTimestamp. An expression that is not a constant goes to the plan's evaluator (the controller's
sandboxed workers), as `when` does; when the evaluator defers (`Deferred`, `Unavailable`) only the
verdict waits: the step stays Running, its message saying the failure it waits on (a flow-wide failure
ending it meanwhile keeps that: planner.lifecycle), and a later plan observes the failure again, but a
timeout still deletes its Job at once (planner.observation). The words are planner/retry_messages.py's.
"""

from __future__ import annotations

from datetime import datetime

from zen_flow.api.job import Job
from zen_flow.core.expressions import Deferred, Unavailable
from zen_flow.core.retry_condition import (
    ERROR,
    FAILED,
    UNKNOWN_EXIT_CODE,
    LastRetry,
    check_retry,
)
from zen_flow.planner.approval_gates import ApprovalGates
from zen_flow.planner.events import TIMEOUT_MARK
from zen_flow.planner.outputs import PodMessages
from zen_flow.planner.pending_pods import PENDING_TIMEOUT_MARK, attempt_began, attempt_start, pending_timeout
from zen_flow.planner.reports import first_exit_code, interrupted
from zen_flow.planner.retry_messages import refusal, waiting
from zen_flow.planner.shape import retry_expression
from zen_flow.planner.steps import StepWork, bound
from zen_flow.planner.timing import DEFERRED_RETRY_SECONDS, UNAVAILABLE_RETRY_SECONDS, after

# A pending timeout whose verdict waits is recorded in the step's message, cut to this, so that a later
# plan, finding the Job gone, knows it as ours (`pending_said`); its lastRetry.message is cut the same.
PENDING_SAID = 180


def seconds_between(began: datetime | None, ended: datetime) -> float:
    return max(0.0, (ended - began).total_seconds()) if began is not None else 0.0


def last_retry(message: str, pod: PodMessages | None, *, ran_to_exit: bool, seconds: float) -> LastRetry:
    """`lastRetry` of an attempt that failed with `message` after `seconds`: `ran_to_exit` when its Job
    failed for its pods' failures (not a deadline, a timeout, a deletion), `pod` what the failed pod's
    read found."""
    code = first_exit_code(pod)
    exited = ran_to_exit and code is not None and not interrupted(pod)
    return LastRetry(
        exit_code=UNKNOWN_EXIT_CODE if code is None else code,
        status=FAILED if exited else ERROR,
        duration=seconds,
        message=message,
    )


def pending_said(said: str) -> str:
    """A pending timeout's failure as its verdict sees it, and as its step records it while that waits."""
    return bound(said, PENDING_SAID)


class RetryGate(ApprovalGates):
    """The retry condition, for the observe pass (planner.observation)."""

    def retry_refused(
        self, w: StepWork, error: str, said: str, last: LastRetry | None
    ) -> str | Deferred | None:
        """`w`'s message when its failed attempt is not retried: `error`, what it says already, then
        why (the quoted expression cut first, the failure kept); None when its expression allows the
        retry (or it has none); a `Deferred` when a later plan decides (its wakeup added). `said`: the
        failure, for `lastRetry` when `last` is None (no pod ran to an exit: `ended_early`)."""
        expr = retry_expression(w.spec)
        if expr is None:
            return None
        if last is None:
            last = self.unexited(w, said, None)
        try:
            verdict = check_retry(expr, last, self.when_context.flow, self.evaluate)
        except Deferred as err:  # `Unavailable` too: nothing is known of the condition, never a no
            unavailable = isinstance(err, Unavailable)
            # The words of a mere Deferred (how long this plan evaluated) change with each plan: left out.
            w.message = waiting(last.message, str(err) if unavailable else None)
            wait = UNAVAILABLE_RETRY_SECONDS if unavailable else DEFERRED_RETRY_SECONDS
            self.wakeups.append(after(self.now, wait))
            return err
        if verdict.value:
            return None
        return refusal(error, verdict.reason, expr)

    def unexited(self, w: StepWork, said: str, job: Job | None) -> LastRetry:
        """`lastRetry` of an attempt no pod of which ran to an exit, ended by the controller or gone
        (`said`: why), measured to a fixed moment so that every plan deciding it sees the same: a timeout
        ran its timeoutSeconds, a pending timeout its podPendingTimeoutSeconds, a Job being deleted from
        its start to its deletionTimestamp; one already gone, to now (nothing else is left of it)."""
        spec = w.spec
        if said.startswith(TIMEOUT_MARK) and spec.timeout_seconds:
            return LastRetry(UNKNOWN_EXIT_CODE, ERROR, float(spec.timeout_seconds), said)
        if said.startswith(PENDING_TIMEOUT_MARK) and (pending := pending_timeout(self.flow, spec)):
            return LastRetry(UNKNOWN_EXIT_CODE, ERROR, float(pending), pending_said(said))
        if job is not None:
            began: datetime | None = attempt_began(job, w.attempt_start_time, w.start_time or self.now)
        else:
            began = attempt_start(w)
        ended = (job.metadata.deletion_timestamp if job is not None else None) or self.now
        return LastRetry(UNKNOWN_EXIT_CODE, ERROR, seconds_between(began, ended), said)
