"""Pass 1 of a plan: advance started steps from their Jobs (terminal conditions, planner/job_verdicts.py;
timeouts, vanished Jobs), decide approvals (planner/approval_gates.py), and adopt Jobs a lost status write
did not record."""

from __future__ import annotations

from datetime import datetime

from zen_flow.api.constants import StepPhase
from zen_flow.api.job import JOB_FAILED, Job
from zen_flow.planner.actions import DeleteJob
from zen_flow.planner.children import CHILD_STOPPED_REASON
from zen_flow.planner.concurrency import judge
from zen_flow.planner.events import TIMEOUT_MARK
from zen_flow.planner.interventions import child_gone, stop_held
from zen_flow.planner.job_verdicts import JobVerdicts, ended_before
from zen_flow.planner.jobs import adoptable
from zen_flow.planner.parallelism import unwait
from zen_flow.planner.pending_pods import PENDING_TIMEOUT_MARK, attempt_began, attempt_start
from zen_flow.planner.plan_state import DEADLINE_EXCEEDED
from zen_flow.planner.pod_waits import without_wait
from zen_flow.planner.retry_messages import WAITING
from zen_flow.planner.shape import retry_expression
from zen_flow.planner.status import COMMIT_WAIT, REASON_DEADLINE, REASON_REPLACED
from zen_flow.planner.steps import HELD_PREFIXES, StepWork, held, unheld
from zen_flow.planner.timing import after_cut, normalize


class Observation(JobVerdicts):
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
        is not run again under its name; nor taken for a stop's delete (`own_delete` says a stop acted).
        Not one the Job controller had decided before its timeout (`ended_before`): no plan deletes that."""
        timeout = w.spec.timeout_seconds
        if not timeout or timeout <= 0 or job.suspended:
            return False
        due = after_cut(attempt_began(job, since, since), timeout)
        return self.now >= due and not ended_before(job, due)

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
            self.job_failed(w, job, name, job.condition(JOB_FAILED))
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
            if self.now < due:
                self.wakeups.append(due)
            elif job.ending and not w.spec.is_flow:
                # Decided by the Job controller, its pods terminating: it ends as decided (`end_decided`).
                self.end_decided(w, job, name, due)
            else:
                # Deleted now, whatever the verdict (a retry condition's may wait): the plan that finds
                # it gone says the same (`gone`).
                self.actions.append(DeleteJob(name, w.name, f"{TIMEOUT_MARK} {timeout}s"))
                self.timed_out.add(w.name)  # it may have completed before the delete: `after_timeout`
                self.attempt_failed(w, f"{TIMEOUT_MARK} {timeout}s")

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

    def gone(self, w: StepWork, job: Job | None, why: str) -> str:
        """Why a Running step's Job went away: `why`, unless its timeout had passed (then it was our own
        delete for the timeout, whose status write was lost: said as a timeout, whoever noticed). Only
        when that is known: a held Job's timeout never ran, and without the Job only the status says when
        the attempt began (`attempt_start_time`; in a status written before it existed, `start_time`
        for a first attempt); and not for a Job the Job controller had decided before its timeout
        (`ended_before`: no plan deletes it for that timeout)."""
        timeout = w.spec.timeout_seconds
        if not timeout or timeout <= 0 or (job is not None and job.suspended):
            return why
        if job is None and (w.message or "").startswith(HELD_PREFIXES):
            return why
        began = self.began(w, job) if job is not None else attempt_start(w)
        due = None if began is None else after_cut(began, timeout)
        if due is not None and self.now >= due and not (job is not None and ended_before(job, due)):
            return f"{TIMEOUT_MARK} {timeout}s"
        return why

    def after_timeout(self, w: StepWork) -> bool:
        """Does `w` depend on a step this plan ended by its timeout (or on one it ended on that account)?
        Then `w` waits for the next plan, whose input, the stored status, has that end: decided on the
        clock, it can turn otherwise in a plan after this one's write is lost (an approval seen with the
        gate's timeout passed wins; the Job deleted for its timeout may have completed first), and `w`
        must not run on an outcome the status never held. So too a gate decided in this plan
        (planner.approval_gates): the decision read from the annotations can be changed before the write
        lands (a reject after the approve refuses it, 409; an approval taken back), and the next plan
        decides again. A Pending `w` that ends here anyway (skipped by its dependencies) passes the wait
        on to its own dependents. Timeouts and decisions are rare: nothing is read otherwise, and no
        status write is added to other transitions (a decision writes the gate's end anyway)."""
        timed_out = self.timed_out
        if not timed_out or timed_out.isdisjoint(w.spec.dependencies):
            return False
        timed_out.add(w.name)
        return True
