"""How a Running step's attempt ends from its Job's conditions: `Complete` (its outputs captured),
`Failed` (said with its reason, its pods' exit codes, the deadline that stopped it; final when a FailJob
rule matched), and what is retried (`attempt_failed`).

Since Kubernetes 1.31 the Job controller first writes an interim condition, `SuccessCriteriaMet` or
`FailureTarget`, and `Complete` or `Failed` only once the Job's remaining pods have terminated (a
successPolicy's leftovers, the pods a failure stops): up to their terminationGracePeriodSeconds later.
The outcome is decided then (the Job controller never takes an interim condition back), so a step whose
Job is ending is not ended by its `timeoutSeconds` meanwhile: its Job is not deleted (a success would be
lost, and a FailJob rule's final failure become a retry), and the terminal condition ends the step as
usual. It is waited for up to the pods' grace period and ENDING_MARGIN_SECONDS after the interim
condition (`end_decided`); one that has not come by then (pods stuck terminating on a node that went
away) no longer holds the step: it ends from the interim condition as the terminal one would have ended
it, the Job left to the Job controller. Only a step whose timeout passed is ended that way (without a
timeout a step waits for its Job as ever), and the flow's activeDeadlineSeconds stays a hard stop.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from zen_flow.api.constants import failed_nodes_kept
from zen_flow.api.job import JOB_SUCCESS_CRITERIA_MET, Job
from zen_flow.api.jobflow import Step
from zen_flow.api.meta import Condition
from zen_flow.core.expressions import Deferred
from zen_flow.core.retry_condition import LastRetry
from zen_flow.planner.backoff import retry_delay, retry_limit
from zen_flow.planner.events import TIMEOUT_MARK
from zen_flow.planner.jobs import deadline_origin, job_deadline
from zen_flow.planner.node_avoidance import avoiding, avoids, failed_nodes, remember
from zen_flow.planner.outputs import OutputError, capture_outputs, explains_failure, reads_messages
from zen_flow.planner.pending_pods import attempt_began
from zen_flow.planner.reports import download_failure, exit_summary
from zen_flow.planner.retry_gate import RetryGate, last_retry, seconds_between
from zen_flow.planner.shape import retry_expression
from zen_flow.planner.steps import MAX_MESSAGE, StepWork, bound
from zen_flow.planner.timing import after, after_cut, normalize

# The Job controller's reason when a Job's activeDeadlineSeconds passed.
JOB_DEADLINE_REASON = "DeadlineExceeded"
# The Job controller's reason when a FailJob rule of the Job's podFailurePolicy matched: the user declared
# that failure final (Kubernetes: "terminate the Job on failures that are non-retriable").
JOB_POD_FAILURE_POLICY_REASON = "PodFailurePolicy"
NOT_RETRIED_FAIL_JOB = "not retried (a FailJob rule of its podFailurePolicy marked it final)"
# How soon to look again at a completed Job whose pod's termination messages were not read yet.
MESSAGES_RETRY_SECONDS = 1.0
# A pod's terminationGracePeriodSeconds when its template sets none (Kubernetes' default).
DEFAULT_POD_GRACE_SECONDS = 30
# Beyond the pods' grace period, how long an ending Job's terminal condition is waited for: the kubelet
# reporting the pods' end, the Job controller counting it.
ENDING_MARGIN_SECONDS = 30


def ending_wait(step: Step) -> int:
    """How long after its interim condition a step waits for its Job's terminal condition: its pods'
    terminationGracePeriodSeconds (the template's when it is a number, else Kubernetes' default) and
    ENDING_MARGIN_SECONDS."""
    grace: Any = _pod_spec(step.template).get("terminationGracePeriodSeconds")
    if not isinstance(grace, int) or isinstance(grace, bool) or grace < 0:
        grace = DEFAULT_POD_GRACE_SECONDS
    return int(grace) + ENDING_MARGIN_SECONDS


def ended_before(job: Job, due: datetime) -> bool:
    """Was `job` decided (an interim condition) before `due`, its step's timeout? Then no plan deleted it
    for that timeout (`end_decided`): one found deleted went some other way."""
    cond = job.interim
    stamp = cond.last_transition_time if cond is not None else None
    return stamp is not None and normalize(stamp) < due


def _pod_spec(template: Any) -> Mapping[str, Any]:
    try:
        pod = template["spec"]["template"]["spec"]
    except (KeyError, TypeError):
        return {}
    return pod if isinstance(pod, Mapping) else {}


class JobVerdicts(RetryGate):
    """A step's attempt ended by its Job (see the module), for the observe pass (planner.observation)."""

    def began(self, w: StepWork, job: Job) -> datetime:
        """Whence the step's timeout counts: the Job's creation, or the last resume of a Job that was
        suspended (a queue's wait, or a preemption, does not count: the Job controller restarts its
        activeDeadlineSeconds then too); never before the attempt began by the controller's own clock
        (`attempt_start_time`): the Job's timestamps come from the cluster's clocks, and one behind ours
        would make the timeout fire early. Our record is the plan's time (cut to the second) before the
        create, so it is at most that much early, which `after_cut`'s second covers."""
        return attempt_began(job, w.attempt_start_time, w.start_time or self.now)

    def end_decided(self, w: StepWork, job: Job, name: str, due: datetime) -> None:
        """`w`'s timeout (`due`) has passed while its Job is ending (`Job.interim`): wait for the terminal
        condition up to `ending_wait` after the interim one (a wake-up then), and then end the step from
        the interim condition. Its Job is never deleted here."""
        cond = job.interim
        if cond is None:
            return
        wait = ending_wait(w.spec)
        since = due if cond.last_transition_time is None else normalize(cond.last_transition_time)
        until = after_cut(since, wait)
        if self.now < until:
            self.wakeups.append(until)
            return
        if cond.type == JOB_SUCCESS_CRITERIA_MET:
            reason = f" ({cond.reason})" if cond.reason else ""
            decided = f"its Job's {cond.type} condition{reason} decided it"
            self.complete(w, job, f"{decided}; its pods had not terminated {wait}s later")
        else:
            self.job_failed(w, job, name, cond, f"its pods had not terminated {wait}s after {cond.type}")

    def complete(self, w: StepWork, job: Job, message: str | None = None) -> None:
        """The Job completed (or met its success criteria: `end_decided`): capture the output parameters;
        they go out in the same status write that marks the step Succeeded. One that cannot be captured
        fails the step (retrying reruns the work)."""
        name = job.metadata.name
        if reads_messages(self.flow, w.spec) and name not in self.messages:
            # Its pod's termination messages have not been read yet (the controller reads them before
            # planning, see outputs.jobs_to_read): stay Running and look again in a moment.
            self.wakeups.append(after(self.now, MESSAGES_RETRY_SECONDS))
            return
        try:
            w.outputs = capture_outputs(self.flow, w.spec, job, w.outputs, self.messages.get(name))
        except OutputError as err:
            w.fail(self.now, str(err))
            self.note_failure(w)
            return
        w.succeed(self.now, message)
        self.save_result(w)  # only a success by running is stored

    def job_failed(self, w: StepWork, job: Job, name: str, cond: Condition | None, late: str = "") -> None:
        """The Job failed (`cond`: its Failed condition; or its FailureTarget, `late` saying why it is
        taken for the Job's end: `end_decided`)."""
        if (explains_failure(w.spec) or retry_expression(w.spec)) and name not in self.messages:
            self.wakeups.append(after(self.now, MESSAGES_RETRY_SECONDS))  # see `complete`
            return
        timeout = w.spec.timeout_seconds
        limit = ""
        if cond is not None and cond.reason == JOB_DEADLINE_REASON:
            defaults = self.flow.spec.step_defaults
            if timeout and job_deadline(w.spec) == timeout:
                # The Job's own activeDeadlineSeconds (our timeoutSeconds) stopped it before we did:
                # the same timeout, said and judged the same way whoever noticed first (its lastRetry
                # is `unexited`'s: which of the two ends the attempt is a race, whatever its pods say).
                self.attempt_failed(w, f"{TIMEOUT_MARK} {timeout}s")
                return
            if (origin := deadline_origin(w.spec, defaults)) is not None:
                # The template's own, smaller deadline stopped it (or the flow's default, for a step
                # bounding its run time in no way of its own): not the step's timeout; say which.
                limit = f" ({origin})"
        detail = ": ".join(x for x in (cond.reason, cond.message) if x) if cond is not None else ""
        detail += limit
        if exits := exit_summary(self.messages.get(name)):  # e.g. main: exit code 137 (OOMKilled)
            detail = f"{exits}; {detail}" if detail else exits
        if why := download_failure(self.messages.get(name)):
            detail = f"{why} ({detail})" if detail else why
        if late:
            detail = f"{detail}; {late}" if detail else late
        final = cond is not None and cond.reason == JOB_POD_FAILURE_POLICY_REASON
        # The nodes its failed pods ran on, read with their exit codes; not when a deadline ended it
        # (the node did nothing wrong).
        if avoids(w.spec) and (cond is None or cond.reason != JOB_DEADLINE_REASON):
            kept = failed_nodes_kept(w.spec.retry_policy.limit if w.spec.retry_policy else None)
            w.failed_nodes = remember(w.failed_nodes, failed_nodes(self.messages.get(name)), kept)
        said = f"Job failed{': ' + detail if detail else ''}"
        self.attempt_failed(w, said, final=final, last=self.last(w, job, name, said, cond))

    def last(self, w: StepWork, job: Job, name: str, said: str, cond: Condition | None) -> LastRetry | None:
        """`lastRetry` of `w`'s failed Job (only for a step with a retry condition): `said` when its
        pods' failures (or a deadline not its timeout's) failed it, counted up to its Failed (or
        FailureTarget) condition `cond`."""
        if retry_expression(w.spec) is None:
            return None
        ended = cond.last_transition_time if cond is not None else None
        return last_retry(
            said,
            self.messages.get(name),
            ran_to_exit=cond is None or cond.reason != JOB_DEADLINE_REASON,
            seconds=seconds_between(self.began(w, job), ended or self.now),
        )

    def attempt_failed(
        self, w: StepWork, error: str, *, final: bool = False, last: LastRetry | None = None
    ) -> bool:
        """The attempt failed: retried when its retryPolicy allows, unless `final` (a FailJob rule), its
        retry condition says no (`RetryGate`; `last`: what it sees, None when no pod ran to an exit), or
        a graceful stop its message records holds it (planner.child_stops: it ends for the stop). False
        when nothing is decided: the retry condition waits for a later plan, the step stays Running."""
        if self.ended_for_stop(w, error):
            return True
        limit = retry_limit(w.spec)
        done = w.retry_count
        if final and limit:  # said first: a long failure message is cut at its end
            w.fail(self.now, f"attempt {done + 1} failed, {NOT_RETRIED_FAIL_JOB}: {error}")
            self.note_failure(w)
            return True
        said = error
        error = f"attempt {done + 1} failed: {error}" if limit else error
        if done < limit and self.budget_used < self.budget and (self.failure is None or w.spec.is_finally):
            refused = self.retry_refused(w, error, said, last)
            if isinstance(refused, Deferred):
                return False
            if refused is not None:
                w.fail(self.now, refused)
                self.note_failure(w)
                return True
            self.budget_used += 1
            # The delay counts from now, when we see the failure, not from the Job's Failed condition: its
            # time comes from the cluster's clock, and one behind ours would retry early. It is usually the
            # same second; a plan made late (a restart, a backlog) retries late, never early. The planner's
            # now is cut to the second, so the delay counts from the next one.
            if w.failed_nodes and avoids(w.spec):  # said last, never cut: the error gives way
                note = avoiding(w.failed_nodes)
                error = f"{bound(error, MAX_MESSAGE - len(note) - 2)}; {note}"
            w.retry_at(after_cut(self.now, retry_delay(w.spec.retry_policy, done)), error)
            return True
        if limit and done >= limit:
            # Past the limit only by reruns (`zen-flow retry` uses the retry counter too): say so rather
            # than "3/2".
            reruns = f", reruns: {done - limit}" if done > limit else ""
            error += f" (retries exhausted: {limit}/{limit}{reruns})"
        elif limit and self.budget_used >= self.budget:
            error += f" (flow retry budget backoffLimit={self.budget} used up)"
        w.fail(self.now, error)
        self.note_failure(w)
        return True
