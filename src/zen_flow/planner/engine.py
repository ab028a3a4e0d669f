"""`plan(flow, jobs, now)`: one reconcile decision, as a pure function.

Three passes over the steps:
  1. observe: advance started steps from their Jobs (terminal conditions, timeouts, vanished Jobs),
     decide approvals, adopt Jobs a lost status write did not record; then ask the flow's concurrency
     group (`peers`) whether it must wait or has been replaced;
  2. schedule: in topological order, skip what can never run, evaluate `when`, start ready steps and
     due retries (unless suspended, failing fast, or past the deadline; under executionPolicy.parallelism
     only as many as it leaves room for, in spec order: planner.parallelism); the finally steps last,
     once the status stored has every other step ended (planner.finale);
  3. conclude: a flow whose steps have all finished ends as they did; otherwise enforce a stop, a
     replacement or the flow deadline, end a failing flow once nothing runs, derive the phase; under
     executionPolicy.jobRetention LastAttempt, delete the Jobs of superseded attempts, under FailedOnly
     those too and the Jobs of Succeeded steps nothing needs any more (planner.retention).
An unchanged situation yields the input status object itself and no actions (a quiet flow costs no
API calls).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from zen_flow.api.constants import FlowPhase, StepPhase
from zen_flow.api.job import Job
from zen_flow.api.jobflow import JobFlow
from zen_flow.core.expressions import Evaluator
from zen_flow.planner.actions import CreateResource, EventSpec, MemoAnswer, Plan, pruned
from zen_flow.planner.approvals import waiting_message, with_approvals, with_origin
from zen_flow.planner.artifacts import ArtifactOptions
from zen_flow.planner.children import suspensions
from zen_flow.planner.concurrency import REPLACED_JOB_REASON, Peer, judge
from zen_flow.planner.events import NORMAL, QUEUED_EVENT, STOPPED_EVENT, WARNING, naming_blockers
from zen_flow.planner.interventions import request, rerun
from zen_flow.planner.lifecycle import fail_invalid, stray_events, strays, terminal_plan, ttl_expiry
from zen_flow.planner.lineage import TOP_LEVEL, Lineage
from zen_flow.planner.locks import FLOW_LOCK_EVENT, NO_LOCKS, LockView, flow_queued, lock_waiting
from zen_flow.planner.outcome import outcome
from zen_flow.planner.outputs import PodMessages
from zen_flow.planner.parallelism import unwait, waiting
from zen_flow.planner.pending_pods import PendingJob
from zen_flow.planner.plan_state import DEADLINE_EXCEEDED, failure_message
from zen_flow.planner.progress import judge as judge_progress
from zen_flow.planner.progress import last_progress
from zen_flow.planner.readiness import dependency_verdict, uncommitted
from zen_flow.planner.resources import fail_resources, missing, refusals
from zen_flow.planner.retention import retention_deletes
from zen_flow.planner.shape import shape_of
from zen_flow.planner.starts import Starts
from zen_flow.planner.status import (
    COMMIT_WAIT,
    REASON_DEADLINE,
    REASON_FINALLY_FAILED,
    REASON_REPLACED,
    REASON_STEP_FAILED,
    REASON_STOPPED,
)
from zen_flow.planner.steps import StepWork
from zen_flow.planner.timing import normalize, until
from zen_flow.planner.undeleted import undeleted


class _Planner(Starts):
    """Passes 2 and 3, and the run of all three."""

    def schedule(self) -> None:
        if self.final:  # before the finally steps start: no stopped step's Job runs beside them
            self.delete_again()
        self.schedule_all()
        while self.ready:
            ended = self.start_ready()
            if ended is None:
                return
            # A held step whose `when` was decided false (or which failed) at its slot: its dependents may
            # move in this plan, as they would have without a limit (nothing else would wake the flow).
            self.works.wake(self.dependents.get(ended, ()))
            self.ready, self.when_held = [], set()
            self.schedule_all()

    def schedule_all(self) -> None:
        order = self.order
        main = len(order) - len(self.final)  # the shape orders the finally steps last
        # Under a stop too: a step that can never run because a dependency failed for good before it is
        # skipped for that (the failure decided the outcome, the stop came after it); none starts.
        self.schedule_steps(order[:main] if self.final else order)
        if self.final and self.close_main():
            self.schedule_steps(order[main:])

    def schedule_steps(self, names: Sequence[str]) -> None:
        moving = self.moving
        for name in names:
            w = moving.get(name)
            if w is None:
                continue
            if w.phase == StepPhase.RETRYING:
                self.schedule_retry(w)
            elif w.phase == StepPhase.PENDING:
                self.schedule_pending(w)
            if w.terminal:
                self.works.wake(self.dependents.get(name, ()))

    def schedule_retry(self, w: StepWork) -> None:
        self.note_missed(w)
        w.message = unwait(w.message)  # said again below if it is still held
        if self.blocked(w):
            return
        due = w.next_retry_time
        if due is not None and self.now < due:
            self.wakeups.append(due)
            return
        self.start(w, w.retry_count + 1)

    def schedule_pending(self, w: StepWork) -> None:
        if waiting(w.message):
            self.note_missed(w)
            w.message = None  # said again below if it is still held
        elif lock_waiting(w.message):
            w.message = None  # said again below if it still waits for a lock
        elif w.message == COMMIT_WAIT and self.main_ended_before():
            w.message = None  # written: what it may wait for now (a resume, a slot) says itself
        # A dependency this plan ended for a stop, a replacement or the deadline (its Job found gone:
        # `Observation.own_delete`) counts as running, as in the plan that ended it, whose write was lost:
        # `w` then ends for that cause too (`stop_all`), not for "dependency ... failed".
        ready, never = dependency_verdict(w, self.works, self.cut_short)
        if never is not None:
            self.after_timeout(w)  # its own dependents wait too (their `when` may read the timed-out step)
            w.skip(self.now, never)
            return
        if not ready or self.blocked(w) or self.after_timeout(w):
            return
        if uncommitted(w, self.works) or self.awaits_commit(w):
            return
        if (verdict := self.flow.spec.matrix_verdicts.get(w.name)) is not None:
            self.settle_matrix(w, verdict)  # a matrix step whose items an output gives: none (yet)
            return
        if w.spec.when is not None and not w.spec.is_manual and self.limited(w):
            # Decided when a slot is free for the step (`start_ready`), once: not at every plan it waits
            # for one (a 500-wide fan-out at parallelism 20 evaluated its conditions ~116,000 times). A
            # memoized step's was decided when its cache was first read (`start_ready`), if it was.
            if w.name not in self.memo_missed:
                self.when_held.add(w.name)
            self.start(w, w.retry_count)
            return
        if w.spec.when is not None and not self.decide_when(w):
            return
        if w.spec.is_manual:
            self.start_manual(w)
        elif not self.fails_on_skipped_input(w):
            self.start(w, w.retry_count)

    def start_manual(self, w: StepWork) -> None:
        w.await_approval(self.now, waiting_message(w.spec))
        self.observe_approval(w)  # approved (or rejected) before the gate was reached

    # --- pass 3: conclude -----------------------------------------------------------------------------

    def conclude(self) -> tuple[FlowPhase, str | None, str]:
        """(phase, failure message, Failed condition reason)."""
        works = self.moving.values()
        # Steps that have all finished decide, whatever this plan sees besides: a deadline that passed, a
        # stop or a newer Replace flow seen only by a late plan (a restart, a backlog) came after the work
        # was done and stopped nothing, as a Job that completed is a success past its step's timeout.
        if (ended := self.ended()) is not None:
            return ended
        if self.stopped is not None:
            self.stop_all(self.stopped)
            return FlowPhase.FAILED, self.stopped, REASON_STOPPED
        if self.group.replaced is not None:
            self.stop_all(self.group.replaced, REPLACED_JOB_REASON)
            return FlowPhase.FAILED, self.group.replaced, REASON_REPLACED
        if self.deadline_passed:
            self.stop_all(DEADLINE_EXCEEDED)
            return FlowPhase.FAILED, self.deadline_message(), REASON_DEADLINE
        if self.failure is not None:
            # The finally steps are left to run (close_main ended the others before they started).
            self.fail_retrying([w for w in works if not w.spec.is_finally])
            if not any(w.phase == StepPhase.RUNNING for w in works):
                self.works.wake_all()
                for w in self.moving.values():
                    if not w.terminal and not w.spec.is_finally:
                        w.drop(self.now, "the flow failed")
        if (ended := self.ended()) is not None:
            return ended
        if self.suspended:
            phase = FlowPhase.SUSPENDED
        elif any(w.phase in (StepPhase.RUNNING, StepPhase.RETRYING) for w in works):
            phase = FlowPhase.RUNNING
        elif any(w.phase == StepPhase.PENDING_APPROVAL for w in works):
            phase = FlowPhase.PAUSED
        elif self.held_back() or (self.start_time is None and not self.begun()):
            phase = FlowPhase.PENDING
        else:
            phase = FlowPhase.RUNNING
        if (cut := self.cut_off()) is not None:
            return phase, *cut  # a graceful stop or the grace: the finally steps run, then it fails so
        return phase, self.failure or self.final_failure, REASON_STEP_FAILED

    def ended(self) -> tuple[FlowPhase, str | None, str] | None:
        """The flow's outcome when every step is terminal: Succeeded unless a step failed; else None."""
        if self.works.dormant or not all(w.terminal for w in self.moving.values()):
            return None
        if self.ended_for is not None:
            # This plan found a Job the replacement or the deadline deleted (`own_delete`): the flow ends
            # as the plan that deleted it did, its write lost, not as its steps did since.
            return FlowPhase.FAILED, *self.ended_for
        if (early := self.ended_early()) is not None:
            # A stop or the finally grace ended a step (planner.finale): Stopped or DeadlineExceeded.
            return early
        final, specs = self.final, self.specs
        # A failure allowFailure tolerates fails nothing: the flow's status says it (planner.status).
        failures = [s for s in self.works.statuses() if s.phase == StepPhase.FAILED]
        failures = [s for s in failures if not specs[s.name].allow_failure]
        failed = next((s for s in failures if s.name not in final), None)
        if failed is None and final:
            failed = next(iter(failures), None)
        if failed is None:
            return FlowPhase.SUCCEEDED, None, REASON_STEP_FAILED
        if failed.name in final:  # the main steps succeeded (or failed with continueOnFailure/allowFailure)
            message = self.final_failure or failure_message(failed.name, True, failed.message)
            return FlowPhase.FAILED, message, REASON_FINALLY_FAILED
        return (
            FlowPhase.FAILED,
            self.failure or f"step {failed.name} failed: {failed.message}",
            REASON_STEP_FAILED,
        )

    def run(self) -> Plan:
        self.observe()
        started = self.start_time is not None or self.begun()
        if self.stopping is not None and not started:
            # Nothing ran to clean up after: a graceful stop of a flow that has not started (queued in
            # its concurrency group, creating its resources) is a stop now, not a wait for a slot.
            self.stopped, self.stopping = self.stopping, None
        self.group = judge(self.flow, self.peers, started=started)
        if started or self.group.holds or self.stopped is not None:
            self.slot = None  # a started flow holds its slot; one its group holds back takes none
        self.take_own_locks()  # before its objects: a flow waiting for its locks makes none
        if self.start_time is None and self.adopted_since is not None and not self.held_back():
            # A lost write's plan started it (its Jobs adopted now): it began when they were created,
            # and its deadline may have passed meanwhile; known before anything starts (`blocked`).
            self.began_at(self.adopted_since)
        if not self.blocked():
            # Only a flow that may start steps now gets its objects (not a queued or suspended one).
            self.creating = missing(self.flow)
            self.actions.extend(self.creating)
        self.schedule()
        if self.start_time is None and not self.held_back() and self.begun():
            self.start_time = self.now
            deadline = self._deadline()
            if deadline is not None:
                self.wakeups.append(deadline)
        elif not self.deadline_passed and (deadline := self._deadline()) is not None:
            self.wakeups.append(deadline)
        self.wake_for_grace()
        phase, failure, reason = self.conclude()
        if not phase.terminal:  # a suspended parent suspends its running children, a resumed one resumes them
            self.actions.extend(suspensions(self.flow, self.moving.values(), self.jobs))
        self.actions.extend(retention_deletes(self.flow, self.jobs, self.actions))
        # A Job whose delete the apiserver refused, its attempt's end stored: asked again until it goes.
        self.actions.extend(undeleted(self.flow, self.jobs, self.actions))
        steps = self.works.statuses()
        stall, due = judge_progress(
            phase,
            steps,
            last_progress(self.flow.status, phase, steps, self.now),
            self.progress_deadline,
            self.now,
        )
        if due is not None:
            self.wakeups.append(due)
        status, events = outcome(
            self.flow,
            steps,
            phase,
            failure=failure,
            reason=reason,
            start_time=self.start_time,
            audit=with_approvals(
                with_origin(self.flow.status.audit, self.flow.metadata.annotations),
                self.approvals,
                self.flow.spec.steps,
            ),
            now=self.now,
            group=self.group,
            creating=self.creating,
            stall=stall,
            slot=self.slot,
            lock_wait=self.lock_wait.message if self.lock_wait is not None else None,
            held_locks=self.held_locks,
        )
        if self.lock_blockers:
            events = naming_blockers(events, self.lock_blockers)
        if self.lock_wait is not None:
            # Its own event instead of FlowQueued, once per wait (also after a wait for a slot), naming who
            # is in its way: the status message, stable while it waits, names only the locks.
            events = tuple(e for e in events if e.reason != QUEUED_EVENT)
            if not flow_queued(self.flow):
                said = f"{self.lock_wait.message} ({self.lock_wait.blocker})"
                events = (*events, EventSpec(NORMAL, FLOW_LOCK_EVENT, said))
        if self.stopping is not None or self.child_stop is not None:  # also a stop removed, recorded
            events = self.announce_stop(events, phase)
        if self.closing is not None:
            events = self.announce_grace(events)
        if phase.terminal:
            # Nothing of its own runs on behind an ended flow: a Job no step records (a lost write's that
            # nothing took over, one someone else made for a step that never started) is deleted too.
            stops = strays(self.flow, self.jobs.values(), self.actions)
            self.actions.extend(stops)
            events = (*events, *stray_events(stops))
            # TTL counts from now; the deletion itself happens on a later reconcile, after the final
            # status (and its events) are written.
            # A verified child's own TTL does not apply: it goes with its parent (planner.lineage).
            self.wakeups = [] if self.lineage.child else [ttl_expiry(self.flow, phase, self.now)]
        requeue = [max(0.0, until(self.now, t)) for t in self.wakeups if t > self.now or phase.terminal]
        return Plan(
            actions=pruned(self.actions),  # a child it deletes is not patched too
            status=status,
            events=events,
            requeue_after=min(requeue) if requeue else None,
            lookups=tuple(self.lookups),
        )

    def announce_stop(self, events: tuple[EventSpec, ...], phase: FlowPhase) -> tuple[EventSpec, ...]:
        """One FlowStopped event per graceful stop, by the plan that stopped the other steps (the flow's
        end says FlowFailed only): a status diff cannot tell, the flow is Running before and after."""
        if self.stopped_before():
            return tuple(e for e in events if e.reason != STOPPED_EVENT)
        if self.stop_acted and not phase.terminal:
            said = f"{self.stopping or self.child_stop}: the finally steps run, then the flow fails"
            return (*events, EventSpec(WARNING, STOPPED_EVENT, said))
        return events


def plan(
    flow: JobFlow,
    jobs: Sequence[Job],
    now: datetime,
    *,
    peers: Sequence[Peer] = (),
    evaluate: Evaluator | None = None,
    messages: Mapping[str, PodMessages] | None = None,
    transfers: ArtifactOptions | None = None,
    progress_deadline: float = 0.0,
    memos: Mapping[str, MemoAnswer] | None = None,
    slot: str | None = None,
    lineage: Lineage | None = None,
    locks: LockView = NO_LOCKS,
    pods: Mapping[str, PendingJob] | None = None,
) -> Plan:
    """Decide what to do for `flow`, given the Jobs it owns (any attempt), the current time, and the
    other flows of its concurrency group (`peers`; none for a flow without the concurrency-key label).
    `evaluate` runs the `when` expressions that are not phase tests (the controller's is time-bounded);
    `messages` holds the termination messages of the Jobs `outputs.jobs_to_read` names; `transfers`
    shapes the artifact transfer containers (planner.artifacts); `progress_deadline` is how many seconds a
    Running flow may go without a step changing phase before it is marked not progressing (0: never);
    `memos` holds the cache entries read for the memoized steps a previous plan named in `Plan.lookups`
    (a memoized step ready to start whose entry is not here waits for it: planner.memoization); `slot`:
    why the flow waits for a limit on running flows (planner.slots.SlotBook.claim), None when it may start;
    `lineage`: its place among child flows (planner.lineage; None: a top-level flow); `locks`: what the
    namespace's other flows hold and wait for of the locks its steps declare (planner.lock_book); `pods`:
    what the controller knows of each pending Job (since when it has seen it pending, its last read of its
    pods), by Job name (planner.pending_pods names the Jobs to read)."""
    lineage = lineage or TOP_LEVEL
    now = normalize(now)
    said: EventSpec | None = None  # what became of a rerun request
    if (retry := request(flow)) is not None:
        flow, said = rerun(flow, retry, now)
    if flow.status.phase in (FlowPhase.SUCCEEDED, FlowPhase.FAILED):
        # A Job the rerun's plan created, its status write lost, runs on when this plan no longer
        # honours the request (refused now, or removed): `terminal_plan` deletes it.
        ended = terminal_plan(flow, now, jobs, ttl=not lineage.child)
        return replace(ended, events=(said, *ended.events)) if said is not None else ended
    shape = shape_of(flow)
    if shape.errors:
        return fail_invalid(flow, shape.errors, now)
    result = _Planner(
        flow,
        jobs,
        now,
        shape,
        peers,
        evaluate,
        messages or {},
        transfers or ArtifactOptions(),
        progress_deadline,
        memos or {},
        slot,
        lineage,
        locks,
        pods or {},
    ).run()
    if any(isinstance(a, CreateResource) for a in result.actions) and (refused := refusals(flow)):
        # A template with a key of zen-flow's own that got past admission: the flow fails as when the
        # apiserver refuses a template, before any object is made (planner/resources.py).
        result = fail_resources(flow, refused, now, planned=result)
    return replace(result, events=(said, *result.events)) if said is not None else result
