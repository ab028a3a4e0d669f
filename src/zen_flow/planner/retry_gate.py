"""A failed attempt that the other retry rules would retry asks its step's `retryPolicy.expression`
(core/retry_condition.py) whether a retry can help: false, an error or a non-bool result fails the step
for good, its message ending with why (`not retried: retryPolicy.expression "..." is false`).

Decided once, when the plan observes the failure: the step then turns Retrying or Failed, and the
status write records the verdict; no later plan asks again for that attempt. What the expression sees
comes from what that plan reads, the same for any plan that observes the same failure (a status write
lost, a restart, another replica): the Job's Failed condition and the pod list already read for the
exit codes (kube/pods.py). An expression that is not a constant goes to the plan's evaluator (the
controller's sandboxed workers), as `when` does; when the evaluator defers (`Deferred`, `Unavailable`)
nothing is decided: the step stays Running, its failed Job kept, and a later plan observes the failure
again.
"""

from __future__ import annotations

from datetime import datetime

from zen_flow.core.expressions import Deferred, Unavailable
from zen_flow.core.retry_condition import ERROR, FAILED, UNKNOWN_EXIT_CODE, LastRetry, check_retry
from zen_flow.planner.approval_gates import ApprovalGates
from zen_flow.planner.outputs import PodMessages
from zen_flow.planner.reports import first_exit_code, interrupted
from zen_flow.planner.steps import MAX_MESSAGE, StepWork, bound
from zen_flow.planner.timing import DEFERRED_RETRY_SECONDS, UNAVAILABLE_RETRY_SECONDS, after

NOT_RETRIED = "not retried: "
WAITING = "waiting to evaluate retryPolicy.expression: "


def last_retry(
    message: str,
    pod: PodMessages | None,
    *,
    ran_to_exit: bool,
    began: datetime | None,
    ended: datetime,
) -> LastRetry:
    """`lastRetry` of an attempt that failed with `message`: `ran_to_exit` when its Job failed for
    its pods' failures (not a deadline, a timeout, a deletion), `pod` what the failed pod's read found."""
    code = first_exit_code(pod)
    exited = ran_to_exit and code is not None and not interrupted(pod)
    seconds = max(0.0, (ended - began).total_seconds()) if began is not None else 0.0
    return LastRetry(
        exit_code=UNKNOWN_EXIT_CODE if code is None else code,
        status=FAILED if exited else ERROR,
        duration=seconds,
        message=message,
    )


class RetryGate(ApprovalGates):
    """The retry condition, for the observe pass (planner.observation)."""

    def retry_refused(
        self, w: StepWork, error: str, said: str, last: LastRetry | None
    ) -> str | Deferred | None:
        """`w`'s message when its failed attempt is not retried: `error`, what it says already, then
        why (last, never cut); None when its expression allows the retry (or it has none); a
        `Deferred` when a later plan decides (its wakeup added). `said`: the failure, for `lastRetry`
        when `last` is None (no pod ran to an exit: a timeout, a deleted Job, the pending timeout)."""
        policy = w.spec.retry_policy
        expr = policy.expression if policy is not None else None
        if expr is None:
            return None
        if last is None:
            last = LastRetry(UNKNOWN_EXIT_CODE, ERROR, self._ran(w), said)
        try:
            verdict = check_retry(expr, last, self.when_context.flow, self.evaluate)
        except Unavailable as err:  # nothing is known of the condition: decided later, never a no
            w.message = bound(f"{WAITING}{err}")
            self.wakeups.append(after(self.now, UNAVAILABLE_RETRY_SECONDS))
            return err
        except Deferred as err:
            self.wakeups.append(after(self.now, DEFERRED_RETRY_SECONDS))
            return err
        if verdict.value:
            return None
        note = f"{NOT_RETRIED}{verdict.reason}"
        return f"{bound(error, MAX_MESSAGE - len(note) - 2)}; {note}"

    def _ran(self, w: StepWork) -> float:
        began = w.attempt_start_time or (w.start_time if w.retry_count == 0 else None)
        return max(0.0, (self.now - began).total_seconds()) if began is not None else 0.0
