"""The finally steps' gate: whether every step that is not finally has ended, so that the finally
steps may start (API.md "Finally steps"), and what their `when` sees then (`flow.outcome`); and the
stops that end steps before their time.

A finally step starts only in a plan whose input, the status stored, already has every other step
ended (`PlanState.main_ended_before`). The plan that ends the last of them writes that status, the
finally steps still Pending (`COMMIT_WAIT`), and the watch event of its own write brings the next plan,
which starts them: one status write later. How the other steps ended can hang on what a plan saw of
the flow's annotations and of the clock (a decision given, changed or taken back, a gate's timeout, a
stop); if that write is lost (a conflict with a write to the flow, a crash), no finally step ran on it,
and the next plan decides those steps again from the stored status. Their outcome is the stored one,
never one a lost write held. A flow without finally steps writes nothing more.

Fail-fast ends the other steps here rather than in the conclude pass, once none of them runs, in the
write the finally steps then wait for.

A graceful stop (`workflow.kube-zen.io/stop: RunFinally`) ends the other steps here too, at once, as a
stop does (running Jobs deleted, the steps Failed, the rest Skipped, no retry), and the finally steps
that have not run start once that is stored, with `flow.outcome` Failed; those already running go on.
A Flow step's running child is stopped gracefully instead of deleted, as the grace does below
(planner.child_stops, which also records the stop in the step's message, so that it stays the cause).
Every plan does it again from the flow and its Jobs: after a lost status write or a restart, the stopped
steps are ended again (their Jobs gone: `Observation.own_delete`), never started again, and the finally
steps' Jobs are taken over (`adopt`), never created twice. A stop, a graceful stop escalated to one, a
replacement or the flow deadline ends everything at once (`conclude`).

The finally grace (`executionPolicy.finallyGraceSeconds`, planner.grace) is a graceful stop the clock
asks for: from its point on, every plan ends the other steps here as the graceful stop does, with its
own message, and the flow ends DeadlineExceeded; what it ended is read back from the steps' messages. A
Flow step's running child is stopped gracefully instead of deleted (`stop_child`), so its own finally
steps run; the step, and the finally steps after it, wait for the child to end (the deadline deletes it).
A child whose stop stopped nothing (its main steps had ended) may succeed: the step succeeds then. A
child a graceful stop stopped before the point stays the stop's (its recorded cause): the flow ends
Stopped.

What a graceful stop or the grace ended stays ended, and decides how the flow ends (`cut_off`), even once
the request is removed or the policy edited: the flow ends Stopped or DeadlineExceeded, never as if those
steps had run (a flow whose stop or grace only skipped steps would otherwise end Succeeded); and a Job
of theirs still running (its delete, held for the write, never went out) is deleted (`delete_again`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from zen_flow.api.constants import FlowPhase, StepPhase
from zen_flow.api.flow_status import StepStatus
from zen_flow.core.expressions import WhenContext
from zen_flow.planner.actions import DeleteJob, EventSpec
from zen_flow.planner.create_refusals import unnoted
from zen_flow.planner.events import WARNING
from zen_flow.planner.grace import GRACE_EVENT, GRACE_MESSAGES, grace_point
from zen_flow.planner.interventions import STOPPED_MESSAGES
from zen_flow.planner.memo import MEMO_STEPS, IdentityMemo
from zen_flow.planner.node_avoidance import without_avoiding
from zen_flow.planner.observation import Observation
from zen_flow.planner.status import COMMIT_WAIT, REASON_DEADLINE, REASON_STOPPED
from zen_flow.planner.steps import StepWork, cause_of, ended_in_run
from zen_flow.planner.tolerance import NOT_RETRIED

# A stored status's Failed steps a graceful stop or the grace ended, by the Job they had (`delete_again`).
_stopped_jobs: IdentityMemo[Mapping[str, StepStatus]] = IdentityMemo(MEMO_STEPS)


def stopped_jobs(steps: tuple[StepStatus, ...]) -> Mapping[str, StepStatus]:
    prefixes = STOPPED_MESSAGES + GRACE_MESSAGES
    return {
        s.job_ref.name: s
        for s in steps
        if s.job_ref is not None and s.phase == StepPhase.FAILED and (s.message or "").startswith(prefixes)
    }


class Finale(Observation):
    # What the finally steps' `when` sees: `flow.outcome` besides (set once the other steps have ended).
    final_context: WhenContext

    def close_main(self) -> bool:
        """Have all the steps that are not finally ended, so that the finally steps may start? Under
        fail-fast, once none of them runs, those that would never start end here (Skipped), so the
        finally steps start in this same plan; under a graceful stop or the finally grace, all of them
        end here at once. A stop, a replacement or the flow deadline ends everything at once
        (`conclude`): no finally step starts after them."""
        if self.stopped is not None or self.deadline_passed or self.group.replaced is not None:
            return False
        final = self.final
        # The grace alone, once its point has come: a graceful stop seen with it (a backlog, the grace's
        # write lost) ends nothing more, as one that came after the write. One that came before the point
        # ended the other steps then: the grace finds nothing left (and the flow ends Stopped).
        ending = self.closing or self.stopping
        if ending is not None:
            self.stop_all(ending, spare_final=True)
            if not self.final_outcome_known():
                return False  # a child flow runs its own finally steps first (`stop_child`)
        elif not self.final_outcome_known():
            if self.failure is None:
                return False
            main = [w for name, w in self.moving.items() if name not in final]
            self.fail_retrying(main)
            if any(w.phase == StepPhase.RUNNING for w in main):
                return False
            self.works.wake_all()
            for name, w in self.moving.items():
                if name not in final and not w.terminal:
                    w.drop(self.now, "the flow failed")
        failed = self.main_failed or self.main_cut_off()
        outcome = FlowPhase.FAILED if failed else FlowPhase.SUCCEEDED
        self.final_context = replace(
            self.when_context, flow={**self.when_context.flow, "outcome": outcome.value}
        )
        return True

    def awaits_commit(self, w: StepWork) -> bool:
        """Must the finally step `w`, ready to start, wait for the next plan: the status this one read does
        not have the other steps ended (they ended in this plan)? Said in its message."""
        if not w.spec.is_finally:
            return False
        if self.main_ended_before():
            return False  # and `schedule_pending` has cleared the message
        w.message = COMMIT_WAIT
        return True

    def final_outcome_known(self) -> bool:
        """Has every step that is not finally ended (settled or dormant steps are read cheaply)?"""
        final = self.final
        if not self.works.dormant <= final:
            return False
        return all(w.terminal for name, w in self.moving.items() if name not in final)

    def fail_retrying(self, works: Sequence[StepWork]) -> None:
        for w in works:
            if w.phase == StepPhase.RETRYING:
                w.fail(self.now, f"{NOT_RETRIED}; {without_avoiding(unnoted(w.message) or '')}")

    def stop_all(self, reason: str, job_reason: str | None = None, *, spare_final: bool = False) -> None:
        """End every step that has not ended (`spare_final`: but the finally steps) for `reason`, their
        running Jobs deleted (background propagation, so their pods go too)."""
        if spare_final and self.final_outcome_known():
            return  # nothing left to end: the finally steps' own plans stay as cheap as before
        self.works.wake_all()
        for w in self.moving.values():
            if w.terminal or (spare_final and w.spec.is_finally):
                continue
            if w.phase == StepPhase.RUNNING:
                name = w.job_ref.name if w.job_ref is not None else ""
                job = self.jobs.get(name)
                if reason in (self.closing, self.stopping) and self.stop_child(w, job, reason):
                    continue
                if job is not None and not job.finished and not job.deleting:
                    # A graceful ending's deletes follow the write that records it (DeleteJob).
                    self.actions.append(
                        DeleteJob(name, w.name, job_reason or reason, after_write=spare_final)
                    )
            self.end_now(w, reason)
            self.stop_acted |= reason == self.stop_reason
            self.main_stop_acted |= reason == self.stop_reason and not w.spec.is_finally
            self.grace_acted |= reason == self.closing

    def delete_again(self) -> None:
        """A step the stored status says a graceful stop or the grace ended whose Job still runs: the write
        that recorded it landed and the delete, sent after it (DeleteJob), did not go out (the write's
        answer lost, a restart). Deleted now, whatever became of the request since (taken back, set again
        by another user, the grace point passed, the policy edited): those steps stay ended. Not held for
        this plan's write: the stored status records it already. Read from the flow's live Jobs, so a
        plan's cost follows what is happening; a retry or rerun makes a new Job name, never one of these."""
        live = [name for name, job in self.jobs.items() if not job.finished and not job.deleting]
        if not live:
            return
        steps = self.flow.status.steps
        ended = _stopped_jobs.get(steps, lambda: stopped_jobs(steps))
        final = self.final
        for name in live:
            s = ended.get(name)
            if s is not None and s.name not in final:
                self.actions.append(DeleteJob(name, s.name, cause_of(s.message or "")))

    def cut_off(self) -> tuple[str, str] | None:
        """Why the steps that are not finally were ended before their time in this run, and the flow's
        Failed reason: a graceful stop (or a stop now: Stopped), or the finally grace (DeadlineExceeded),
        by this plan or one before it (`said_before`). One taken back since (the request removed, the
        policy edited) still counts, said as it was written: those steps stay ended. A stop that ended
        a step comes first; the grace then had nothing left to end. So does a graceful stop whose Flow
        step's child is stopping, or ended stopped in this plan (`child_stop`, planner.child_stops)."""
        stored = bool(self.final) and self.final_outcome_known()  # only then did one end them all
        if (
            self.stop_acted
            or self.child_stop is not None
            or (stored and self.said_before(stop=True) is not None)
        ):
            return self.stop_reason or self.child_stop or self.said_before(stop=True) or "", REASON_STOPPED
        if self.grace_acted or self.grace_held or (stored and self.said_before(stop=False) is not None):
            return self.closing or self.said_before(stop=False) or "", REASON_DEADLINE
        return None

    def main_cut_off(self) -> bool:
        """Did a stop or the finally grace cut a step that is not finally short in this run (`cut_off`,
        without the finally steps)? What `flow.outcome` says besides their failures: a graceful stop that
        came once they had ended stops nothing of theirs, so a finally step's Job found gone under it
        (the step ends "stopped by", and the flow Stopped) changes no finally step's `when`, and every
        plan of the run sees the same outcome."""
        stored = self.final_outcome_known()
        if self.main_stop_acted or self.child_stop is not None:
            return True
        if stored and self.said_before(stop=True, main=True) is not None:
            return True
        return self.grace_acted or self.grace_held or (stored and self.said_before(stop=False) is not None)

    def ended_early(self) -> tuple[FlowPhase, str, str] | None:
        """How a flow whose steps have all ended ends when a stop or the grace cut it off (`cut_off`),
        whatever its finally steps did; a failed one is said too, but after a stop now (the stop only:
        as in `conclude`, whose write this plan may be making again)."""
        cut = self.cut_off()
        if cut is None:
            return None
        said, reason = cut
        if self.final_failure and not (reason == REASON_STOPPED and self.stopped is not None):
            said = f"{said}; {self.final_failure}"
        return FlowPhase.FAILED, said, reason

    def stopped_before(self) -> bool:
        """Had a stop ended a step of this run before this plan (`said_before`)?"""
        return self.said_before(stop=True) is not None

    def grace_before(self) -> bool:
        """Had the grace ended a step of this run before this plan (`said_before`)?"""
        return self.said_before(stop=False) is not None

    def said_before(self, *, stop: bool, main: bool = False) -> str | None:
        """What a stop (`stop`) or the finally grace said when it ended a step of this run before this
        plan, read back from the stored messages (`ended_in_run`; None: it ended none). For a stop, a
        finally step counts too: one whose Job a stop now deleted before its value changed to RunFinally;
        the grace never ends one, and a finally step whose message happens to begin the same way (a
        child flow's words) is no sign of it. What an earlier run wrote into a step a partial rerun kept
        does not count: this stop may have stopped nothing. `main`: the steps that are not finally only.
        """
        if not self._said:
            self._said = self._read_said()
        return self._said[(stop, main or not stop)]

    def _read_said(self) -> dict[tuple[bool, bool], str | None]:
        """`said_before`'s three answers, keyed (stop, only the steps that are not finally), from one
        scan of the settled steps: each is the first step in spec order that says it."""
        began, final = self.flow.status.start_time, self.final
        said: dict[tuple[bool, bool], str | None] = {
            (True, False): None,
            (True, True): None,
            (False, True): None,
        }
        for s in self.works.settled():
            main = s.name not in final
            wanted = said[True, False] is None or (main and said[True, True] is None)
            if wanted and ended_in_run(s, began, STOPPED_MESSAGES):
                cause = cause_of(s.message or "")
                if said[True, False] is None:
                    said[True, False] = cause
                if main and said[True, True] is None:
                    said[True, True] = cause
            if main and said[False, True] is None and ended_in_run(s, began, GRACE_MESSAGES):
                said[False, True] = cause_of(s.message or "")
            if all(v is not None for v in said.values()):
                break
        return said

    def wake_for_grace(self) -> None:
        """Wake the flow at its grace point too (the deadline's wake-up is `run`'s), until it has come."""
        if self.final and self.closing is None and self.start_time is not None:
            point = grace_point(self.flow.spec.execution_policy, self.start_time)
            if point is not None and point > self.now:
                self.wakeups.append(point)

    def announce_grace(self, events: tuple[EventSpec, ...]) -> tuple[EventSpec, ...]:
        """One Warning event by the plan whose grace first ended a step (a status diff cannot tell: the
        flow is Running before and after; its end says FlowDeadlineExceeded). A child stopped gracefully
        is not ended yet: the event comes when it ends stopped (planner.observation)."""
        if not self.grace_acted or self.grace_before():
            return events
        said = f"{self.closing}: the other steps were stopped, the finally steps run, then the flow fails"
        return (*events, EventSpec(WARNING, GRACE_EVENT, said))
