"""Pass 1 of a plan: advance started steps from their Jobs (terminal conditions, timeouts, vanished
Jobs), decide approvals (planner/approval_gates.py), and adopt Jobs a lost status write did not record."""

from __future__ import annotations

from datetime import datetime

from zen_flow.api.constants import StepPhase, failed_nodes_kept
from zen_flow.api.job import JOB_FAILED, Job
from zen_flow.core.expressions import Deferred
from zen_flow.core.retry_condition import LastRetry
from zen_flow.planner.actions import DeleteJob
from zen_flow.planner.backoff import retry_delay, retry_limit
from zen_flow.planner.children import CHILD_STOPPED_REASON
from zen_flow.planner.concurrency import judge
from zen_flow.planner.events import TIMEOUT_MARK
from zen_flow.planner.interventions import child_gone, stop_held
from zen_flow.planner.jobs import adoptable, deadline_origin, job_deadline
from zen_flow.planner.node_avoidance import avoiding, avoids, failed_nodes, remember
from zen_flow.planner.outputs import (
    OutputError,
    capture_outputs,
    explains_failure,
    reads_messages,
)
from zen_flow.planner.parallelism import unwait
from zen_flow.planner.pending_pods import PENDING_TIMEOUT_MARK, attempt_began, attempt_start
from zen_flow.planner.plan_state import DEADLINE_EXCEEDED
from zen_flow.planner.pod_waits import without_wait
from zen_flow.planner.reports import download_failure, exit_summary
from zen_flow.planner.retry_gate import RetryGate, last_retry, seconds_between
from zen_flow.planner.retry_messages import WAITING
from zen_flow.planner.shape import retry_expression
from zen_flow.planner.status import COMMIT_WAIT, REASON_DEADLINE, REASON_REPLACED
from zen_flow.planner.steps import HELD_PREFIXES, MAX_MESSAGE, StepWork, bound, held, unheld
from zen_flow.planner.timing import after, after_cut, normalize

# The Job controller's reason when a Job's activeDeadlineSeconds passed.
JOB_DEADLINE_REASON = "DeadlineExceeded"
# The Job controller's reason when a FailJob rule of the Job's podFailurePolicy matched: the user declared
# that failure final (Kubernetes: "terminate the Job on failures that are non-retriable").
JOB_POD_FAILURE_POLICY_REASON = "PodFailurePolicy"
NOT_RETRIED_FAIL_JOB = "not retried (a FailJob rule of its podFailurePolicy marked it final)"
# How soon to look again at a completed Job whose pod's termination messages were not read yet.
MESSAGES_RETRY_SECONDS = 1.0


class Observation(RetryGate):
    """The observe pass (see `zen_flow.planner.engine`)."""

    def observe(self) -> None:
        later: list[StepWork] = []
        for w in self.moving.values():
            if w.phase == StepPhase.PENDING_APPROVAL:
                self.observe_approval(w)
            elif w.phase == StepPhase.RUNNING:
                self.observe_running(w)
            if w.phase == StepPhase.PENDING and w.spec.dependencies:
                # After its dependencies are observed, whatever the spec's order: one timed out here
                # leaves its Job alone (`adopt`).
                later.append(w)
            else:
                self.adopt(w)
        for w in later:
            self.adopt(w)
        self.works.wake(
            [d for w in self.moving.values() if w.terminal for d in self.dependents.get(w.name, ())]
        )

    def own_delete(self, w: StepWork) -> str | None:
        """Why this controller deleted `w`'s Job, found gone or going before it finished, if something
        this plan sees ends it (in `conclude`'s order): a stop now, a newer Replace flow, the flow
        deadline, the finally grace (planner.grace; not a finally step's), a graceful stop. Then that
        delete's status write was lost (a 409, a restart): `w` ends as the plan that deleted it ended it,
        and the flow as it did (`ended_for`, `stop_acted`, `grace_acted`). Under a graceful stop a
        finally step counts too: its Job was deleted by a stop now whose value was then changed to
        RunFinally, never by the graceful stop (a Job someone else deleted meanwhile ends the same way:
        the flow is being stopped)."""
        if self.stopped is not None:
            self.stop_acted = True
            return self.stopped
        if (replaced := self.replacement()) is not None:
            self.ended_for = replaced, REASON_REPLACED
            return replaced
        if self.deadline_passed:
            self.ended_for = self.deadline_message(), REASON_DEADLINE
            return DEADLINE_EXCEEDED
        if w.spec.is_flow and (stop := stop_held(w.message)) is not None:
            # A graceful stop recorded before the grace point came (planner.child_stops): it stays the
            # cause, as it does when the child ends stopped. The graceful stop never deletes its child,
            # so the child went some other way, said: deleted outside zen-flow, or by a stop now taken
            # back (removed, or set back to RunFinally) before the write ending the step landed.
            self.stop_acted = True
            self.main_stop_acted |= not w.spec.is_finally
            self.child_stop = stop
            ref = w.job_ref
            name = ref.name if ref is not None and ref.name else self.job_name(w.name, w.retry_count)
            return child_gone(stop, name)
        if self.closing is not None and not w.spec.is_finally:
            # The grace point has come: the grace's (planner.finale, `close_main`), whether the graceful
            # stop came before or after it, as with the write kept (a stop seen after the point ends
            # nothing more).
            self.grace_acted = True
            return self.closing
        if self.stopping is not None:
            self.stop_acted = True
            # A finally step's Job gone under a graceful stop ends the step, not the other steps' run:
            # `flow.outcome` stays as they ended (planner.finale, `main_cut_off`).
            self.main_stop_acted |= not w.spec.is_finally
            return self.stopping
        return None

    def replacement(self) -> str | None:
        """Why a newer Replace flow of its group ends this one, asked before the plan judges the group
        (a flow with a Running step has started)."""
        return judge(self.flow, self.peers, started=True).replaced

    def adopt(self, w: StepWork) -> None:
        """A Job of the next attempt exists although status does not know it: the status write after
        the create was lost. Take it over (never create it twice); repeat for several lost writes. One
        being deleted before it finished is not (`adoptable`): `create` waits for it to go; unless it is
        our own delete for a stop, a replacement or the deadline (`own_delete`) whose plan's write was lost
        too: then the step ran, and ends as that plan ended it (`job_gone`), not as one never started."""
        while not w.spec.is_manual and w.phase in (StepPhase.PENDING, StepPhase.RETRYING):
            attempt = w.retry_count + (1 if w.phase == StepPhase.RETRYING else 0)
            name = self.job_name(w.name, attempt)
            job = self.jobs.get(name)
            if job is None:
                return
            if (w.spec.is_finally and not self.main_ended_before()) or self.after_timeout(w):
                # None is created before the stored status ends the other steps (planner.finale), nor
                # before it ends a dependency this plan timed out (`after_timeout`): not ours (forged, or
                # left by a controller older than those rules); taken over, if at all, after.
                return
            since = self.created(w, job)
            if not adoptable(job) and not self.overran(w, job, since) and self.own_delete(w) is None:
                # Not our own delete for its timeout, a stop, a replacement or the deadline whose write
                # was lost (those end the step as that plan did: `job_gone`, and the flow had begun):
                # wait for it.
                return
            # The budget is unchanged: a Retrying step's reservation becomes its retry count.
            # What it said while held for a slot, or waiting for the status write, is over: it runs.
            message = None if w.message == COMMIT_WAIT else unwait(w.message)
            w.start(self.job_ref(name, job, child=w.spec.is_flow), since, attempt=attempt, message=message)
            self.adopted_since = since if self.adopted_since is None else min(self.adopted_since, since)
            self.observe_running(w)

    def overran(self, w: StepWork, job: Job, since: datetime) -> bool:
        """Is `job`, an attempt of `w` no status records, past `w`'s timeout? Then, being deleted, it was
        deleted for its timeout (by a plan that adopted it, its write lost too; or by someone else once
        it ran too long): taken over, it ends as a timeout (`gone`), as when the status records it, and
        is not run again under its name; nor taken for a stop's delete (`own_delete` says a stop acted)."""
        timeout = w.spec.timeout_seconds
        if not timeout or timeout <= 0 or job.suspended:
            return False
        return self.now >= after_cut(attempt_began(job, since, since), timeout)

    def created(self, w: StepWork, job: Job) -> datetime:
        """When an adopted Job's attempt began: its creation, not this plan (which may come an outage
        later: a restart, a failover), so that the outage adds nothing to the flow's deadline and
        finally grace, nor to the step's timeout. Never after now (the cluster's clock may be ahead of
        ours), nor before the attempt could start by this controller's clock (the cluster's may be
        behind): before the step's retry was due (`next_retry_time`) or its dependencies ended, else a
        retry adopted moments after its create could time out at once. The flow's deadline may still
        fire early by the skew when no such time bounds the attempt."""
        created = job.metadata.creation_timestamp
        since = self.now if created is None else min(self.now, normalize(created))
        floors = [w.next_retry_time] if w.phase == StepPhase.RETRYING else []
        for dep in w.spec.dependencies:
            d = self.works.get(dep)
            floors.append(d.completion_time if d is not None and d is not w else None)
        # Still never after now: a retry this plan scheduled is due later by the plan's own clock.
        return min(self.now, max([since, *(normalize(f) for f in floors if f is not None)]))

    def observe_running(self, w: StepWork) -> None:
        ref = w.job_ref
        name = ref.name if ref is not None and ref.name else self.job_name(w.name, w.retry_count)
        job = self.jobs.get(name)
        what = "JobFlow" if w.spec.is_flow else "Job"
        if job is None or (ref is not None and ref.uid and job.metadata.uid and ref.uid != job.metadata.uid):
            self.job_gone(w, None, f"{what} {name} not found (deleted outside zen-flow)")
            return
        if ref is None or ref.uid is None or ref.name != name:
            w.job_ref = self.job_ref(name, job, child=w.spec.is_flow)
        if job.complete:
            self.complete(w, job)
            return
        if job.failed and w.spec.is_flow:  # its child failed (or was refused): the child's words
            cond = job.condition(JOB_FAILED)
            said = (cond.message if cond is not None else None) or f"child flow {name} failed"
            # A user stopped the child itself: what they asked for, not a failure to retry.
            stopped = cond is not None and cond.reason == CHILD_STOPPED_REASON
            if stopped and not w.spec.is_finally and self.stopped_child(w, said):
                return
            self.attempt_failed(w, said, final=stopped)
            return
        if job.failed:
            if (explains_failure(w.spec) or retry_expression(w.spec)) and name not in self.messages:
                self.wakeups.append(after(self.now, MESSAGES_RETRY_SECONDS))  # see `complete`
                return
            cond = job.condition(JOB_FAILED)
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
            final = cond is not None and cond.reason == JOB_POD_FAILURE_POLICY_REASON
            # The nodes its failed pods ran on, read with their exit codes; not when a deadline ended it
            # (the node did nothing wrong).
            if avoids(w.spec) and (cond is None or cond.reason != JOB_DEADLINE_REASON):
                kept = failed_nodes_kept(w.spec.retry_policy.limit if w.spec.retry_policy else None)
                w.failed_nodes = remember(w.failed_nodes, failed_nodes(self.messages.get(name)), kept)
            said = f"Job failed{': ' + detail if detail else ''}"
            self.attempt_failed(w, said, final=final, last=self.last(w, job, name, said))
            return
        if job.deleting:
            self.job_gone(w, job, f"{what} {name} was deleted outside zen-flow")
            return
        self.keep_stopping(w, job)  # a graceful stop its message records still stops its child
        if job.suspended:
            # No pod runs, and the step's timeout waits, as the Job's own activeDeadlineSeconds does; the
            # resume wakes the flow (its `Suspended` condition turns False). Its pods' wait is not news.
            w.message = held(without_wait(w.message), child=w.spec.is_flow)
            return
        if w.message is not None and w.message.startswith(HELD_PREFIXES):
            # Resumed since the last plan: its run restarts now by our clock (see `began`).
            w.message = unheld(w.message)
            w.attempt_start_time = self.now
        if (stuck := self.watch_pods(w, job)) is not None:
            # Its Job is deleted now, whatever the verdict: only a retry condition's verdict may wait
            # (`RetryGate`); the step then records why it failed, for the plan that finds the Job gone.
            self.actions.append(DeleteJob(name, w.name, PENDING_TIMEOUT_MARK))
            self.timed_out.add(w.name)  # its pod may have started since the read: as `after_timeout`
            self.attempt_failed(w, stuck)  # its verdict waiting, its message says `pending_said`
            return
        timeout = w.spec.timeout_seconds
        if timeout is not None and timeout > 0:
            due = after_cut(self.began(w, job), timeout)
            if self.now >= due:
                # Deleted now, whatever the verdict (a retry condition's may wait): the plan that finds
                # it gone says the same (`gone`).
                self.actions.append(DeleteJob(name, w.name, f"{TIMEOUT_MARK} {timeout}s"))
                self.timed_out.add(w.name)  # it may have completed before the delete: `after_timeout`
                self.attempt_failed(w, f"{TIMEOUT_MARK} {timeout}s")
            else:
                self.wakeups.append(due)

    def job_gone(self, w: StepWork, job: Job | None, why: str) -> None:
        """`w`'s Job is gone or going before it finished. Our own delete for its timeout stays a timeout
        (`gone`), whatever else this plan sees (a stop landed since); our own delete for a stop, a
        replacement or the flow deadline, whose status write was lost (a 409: the stop annotation
        itself bumps the resourceVersion; a restart), ends the step as that plan ended it
        (`own_delete`), never as a failure to retry; anything else is a failed attempt."""
        message = w.message or ""
        if message.startswith(PENDING_TIMEOUT_MARK):  # our own delete, its verdict waiting: see above
            why = message.partition(f"; {WAITING}")[0]  # `waiting`
        said = self.gone(w, job, why)
        cause = self.own_delete(w) if said == why else None
        if cause is None:
            last = self.unexited(w, said, job) if retry_expression(w.spec) is not None else None
            self.attempt_failed(w, said, last=last)
            return
        self.end_now(w, cause)
        self.cut_short.add(w.name)

    def began(self, w: StepWork, job: Job) -> datetime:
        """Whence the step's timeout counts: the Job's creation, or the last resume of a Job that was
        suspended (a queue's wait, or a preemption, does not count: the Job controller restarts its
        activeDeadlineSeconds then too); never before the attempt began by the controller's own clock
        (`attempt_start_time`): the Job's timestamps come from the cluster's clocks, and one behind ours
        would make the timeout fire early. Our record is the plan's time (cut to the second) before the
        create, so it is at most that much early, which `after_cut`'s second covers."""
        return attempt_began(job, w.attempt_start_time, w.start_time or self.now)

    def gone(self, w: StepWork, job: Job | None, why: str) -> str:
        """Why a Running step's Job went away: `why`, unless its timeout had passed (then it was our own
        delete for the timeout, whose status write was lost: said as a timeout, whoever noticed). Only
        when that is known: a held Job's timeout never ran, and without the Job only the status says when
        the attempt began (`attempt_start_time`; in a status written before it existed, `start_time`
        for a first attempt)."""
        timeout = w.spec.timeout_seconds
        if not timeout or timeout <= 0 or (job is not None and job.suspended):
            return why
        if job is None and (w.message or "").startswith(HELD_PREFIXES):
            return why
        began = self.began(w, job) if job is not None else attempt_start(w)
        if began is not None and self.now >= after_cut(began, timeout):
            return f"{TIMEOUT_MARK} {timeout}s"
        return why

    def complete(self, w: StepWork, job: Job) -> None:
        """The Job completed: capture the output parameters; they go out in the same status write that
        marks the step Succeeded. One that cannot be captured fails the step (retrying reruns the work)."""
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
        w.succeed(self.now, None)
        self.save_result(w)  # only a success by running is stored

    def last(self, w: StepWork, job: Job, name: str, said: str) -> LastRetry | None:
        """`lastRetry` of `w`'s failed Job (only for a step with a retry condition): `said` when its
        pods' failures (or a deadline not its timeout's) failed it, counted up to its Failed condition."""
        if retry_expression(w.spec) is None:
            return None
        cond = job.condition(JOB_FAILED)
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

    def after_timeout(self, w: StepWork) -> bool:
        """Does `w` depend on a step this plan ended by its timeout (or on one it ended on that account)?
        Then `w` waits for the next plan, whose input, the stored status, has that end: decided on the
        clock, it can turn otherwise in a plan after this one's write is lost (an approval seen with the
        gate's timeout passed wins; the Job deleted for its timeout may have completed first), and `w`
        must not run on an outcome the status never held. A Pending `w` that ends here anyway (skipped
        by its dependencies) passes the wait on to its own dependents. Timeouts are rare: nothing is read
        otherwise, and no status write is added to other transitions."""
        timed_out = self.timed_out
        if not timed_out or timed_out.isdisjoint(w.spec.dependencies):
            return False
        timed_out.add(w.name)
        return True
