"""A Flow step's running child stopped gracefully by its parent, not deleted: at the parent's finally grace
point (planner.grace) or under its graceful stop (`workflow.kube-zen.io/stop: RunFinally`), the child
gets its own `RunFinally` stop (`StopChild`, unless a stop is set on it already), so that its own finally
steps run too. The step runs on until the child ends, then ends for what stopped it, never retried (a
child whose stop stopped nothing, its main steps ended, may succeed: the step succeeds then), and the
parent's finally steps start after it. The parent's deadline, a stop now, or a graceful stop escalated to
one, deletes a child still running, as it deletes a running Job (and the plan that does sends it no
StopChild: `actions.pruned`).

What stopped it is read back from the stored status: the grace from the clock (its point has come), a
graceful stop from the step's own message (`interventions.stopping_child`), written by the plan that
first held the step for it. So a stop that came first stays the cause whatever a later plan sees (a
restart; the request removed; the grace point come meanwhile: the flow ends Stopped, not
DeadlineExceeded), and whatever else ends the child's run (its step's timeout, the child deleted or
failing) ends the step for the stop too, never retried (`ended_for_stop`). Lost writes: the StopChild
patch waits for the status write that records the stop (`after_write`); a patch lost is sent again by
the next plan while the child carries no stop, the request removed or not (under the resourceVersion it
saw: a stop a user set since is never overwritten); the status write lost, no patch goes out and the
record is written again by the next plan that holds the step, or, the request removed meanwhile, the
child runs on and the flow goes on as if never stopped (the stop never reached the stored status: taken
back in time, it stopped nothing); the write that ends the step lost, the next plan ends it again from
the same record.
"""

from __future__ import annotations

from zen_flow.api.job import Job
from zen_flow.planner.actions import StopChild
from zen_flow.planner.child_job import ChildFlowJob
from zen_flow.planner.interventions import stop_held, stop_request, stopping_child
from zen_flow.planner.pod_watch import PodWatch
from zen_flow.planner.steps import HELD_CHILD, StepWork, held


class ChildStops(PodWatch):
    """Flow steps whose child their parent stops gracefully (see the module)."""

    def stop_child(self, w: StepWork, job: Job | None, reason: str) -> bool:
        """At the grace point, or under a graceful stop, a Flow step's running child is not deleted but
        stopped gracefully (its `workflow.kube-zen.io/stop: RunFinally`, unless a stop is set on it
        already), so that its own finally steps run too, in what is left of the parent's deadline, which
        deletes it if it still runs then (as a stop now does). The step runs on until the child ends,
        then ends for what stopped it if the stop stopped it (`stopped_child`; a child that succeeds
        anyway succeeds), and the parent's finally steps start after it: they wait for the child's whole
        finally phase, out of the parent's grace. A graceful stop is recorded in the step's message
        (`stopping_child`): a stop that came first stays the cause whatever a later plan sees (the grace
        point come, the request removed), read back from the stored status (`stop_held`)."""
        if not w.spec.is_flow or not isinstance(job, ChildFlowJob) or job.flow is None:
            return False
        if job.finished or job.deleting:
            return False
        stop = stop_held(w.message) or (reason if reason == self.stopping else None)
        self.ask_stop(w, job, stop)
        # Nothing is ended yet (no `grace_acted` nor `stop_acted`, no warning): a child whose own main
        # steps had ended stops nothing and may still succeed, and the flow then ends as its steps did.
        if stop is None:
            self.grace_held = True
        else:
            self.hold_for_stop(w, stop)
        return True

    def ask_stop(self, w: StepWork, job: ChildFlowJob, stop: str | None) -> None:
        """Send the child its stop (`StopChild`) unless it carries one, or this plan sent it already."""
        name = job.metadata.name
        if stop_request(job.child) is not None:
            return
        if any(isinstance(a, StopChild) and a.name == name for a in self.actions):
            return
        seen = job.child.metadata.resource_version or ""
        by = f"parent flow {self.flow.metadata.name}" + (f" ({stop})" if stop is not None else "")
        self.actions.append(StopChild(name, w.name, job.metadata.uid, seen, by=by, after_write=True))

    def keep_stopping(self, w: StepWork, job: Job) -> None:
        """`w`'s child runs on: a graceful stop its message records still stops it, the request removed
        or not (said by the flow: `cut_off`), and the child is asked again while it carries no stop (the
        patch lost, the request removed before it landed: only the record still knows it)."""
        if not w.spec.is_flow or (stop := stop_held(w.message)) is None:
            return
        self.child_stop = stop
        if isinstance(job, ChildFlowJob) and job.flow is not None:
            self.ask_stop(w, job, stop)

    def hold_for_stop(self, w: StepWork, stop: str) -> None:
        """`w` runs on, its child stopping for the graceful stop `stop`: said in its message (after the
        suspension a suspended child's step says first), and by the flow meanwhile (`cut_off`)."""
        if stop_held(w.message) is None:
            record = stopping_child(stop)
            w.message = held(record, child=True) if (w.message or "").startswith(HELD_CHILD) else record
        self.child_stop = stop

    def ended_for_stop(self, w: StepWork, said: str, stop: str | None = None) -> bool:
        """`w`'s attempt ended (`said`: its child ended stopped, failed, timed out, or went): does a
        graceful stop hold it, recorded in its message (else `stop`)? Then it ends for that stop, never
        retried, whatever ended the attempt: the stop came first, and the flow ends Stopped."""
        stop = (stop_held(w.message) if w.spec.is_flow else None) or stop
        if stop is None:
            return False
        self.end_now(w, f"{stop}; {said}")
        self.child_stop = stop  # said by the flow (planner.finale `cut_off`), the request removed or not
        self.stop_acted = True  # a step ended for the stop: announced (engine.announce_stop)
        return True

    def stopped_child(self, w: StepWork, said: str) -> bool:
        """`w`'s child ended stopped (`said`): did its parent stop it (`stop_child`)? Then `w` ends
        for that, never retried: a graceful stop recorded in its message (one that came first stays the
        cause, whatever this plan sees), else the grace whose point has come, else a graceful stop whose
        record a lost write did not keep. A child only its own user stopped fails its step, not retried."""
        if self.ended_for_stop(w, said):
            return True
        if self.closing is not None:
            self.end_now(w, f"{self.closing}; {said}")
            self.grace_acted = True  # a step ended for the grace: announced (finale.announce_grace)
            return True
        return self.ended_for_stop(w, said, self.stopping)
