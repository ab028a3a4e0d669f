"""Who holds and who waits for locks (planner/locks.py) in one cached flow: what the lock book
(planner/lock_book.py) keeps of each flow, read from its status and its Jobs alone.

A flow's Running or Retrying steps that declare a lock hold it, and so does a step with an unfinished Job
its status does not record (its start's status write was lost, and the controller restarted or failed
over: the flow's next plan takes that Job over, under no lock check); its Pending steps whose message says
so wait for it (a suspended flow's wait for nothing: they keep no one waiting while it sleeps).

The flow's own locks (`spec.synchronization`) stand beside its steps' as the step named `FLOW`, first (it
takes them before any step starts): held while its status says so (`status.heldLocks`) or while a Job of
it runs (its start's status write was lost: its next plan takes them over with its Jobs), waited for
while its condition Queued says so (reason WaitingForLock) and it is not suspended.

A matrix step's items (core/matrix.py) are holders and waiters of their own, as the planner starts them:
a flow whose matrix step declares locks is read as its effective flow (`expanded`), so each item is a
step with the matrix step's locks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from zen_flow.api.constants import StepPhase
from zen_flow.api.flow_status import JobFlowStatus
from zen_flow.api.job import Job
from zen_flow.api.jobflow import JobFlow
from zen_flow.core.naming import job_name
from zen_flow.planner.bystanders import out_of_line
from zen_flow.planner.locks import (
    FLOW,
    HOLDING_PHASES,
    Order,
    flow_needs,
    flow_queued,
    lock_waiting,
    needs_of,
    order_of,
)
from zen_flow.planner.memo import MEMO_STEPS, IdentityMemo
from zen_flow.planner.slot_standing import JobsFor, ended

Limits = Mapping[str, int]  # lock name -> the limit a step heeds
Steps = Mapping[str, Limits]  # step (or FLOW) -> the locks it holds (or waits for), in spec order
Expand = Callable[[JobFlow], JobFlow]  # a stored flow -> its effective flow (core/matrix.py)
TERMINAL = frozenset({"Succeeded", "Failed", "Skipped"})
SETTLED = frozenset({*HOLDING_PHASES, *TERMINAL})  # a step no longer waiting to take its locks
_DECLARED: IdentityMemo[Steps] = IdentityMemo(MEMO_STEPS)
_MATRIX_LOCKS: IdentityMemo[bool] = IdentityMemo(MEMO_STEPS)


@dataclass(frozen=True)
class FlowLocks:
    """One flow's use of locks as its cached copy shows it."""

    uid: str
    order: Order
    holding: Steps
    waiting: Steps

    def names(self) -> set[str]:
        return {n for limits in (*self.holding.values(), *self.waiting.values()) for n in limits}

    def count(self, steps: Steps, name: str) -> int:
        return sum(1 for limits in steps.values() if name in limits)


def declared(flow: JobFlow) -> Steps:
    """The flow's own locks (as `FLOW`, first) and the steps that declare locks, in spec order, with their
    limits (of an effective flow: a stored matrix step stands for its items, `expanded`); remembered by
    the identity of the spec's steps and of its own synchronization (every informer event of every flow
    asks, and the spec rarely changes)."""
    steps, own = flow.spec.steps, flow.spec.synchronization

    def derive() -> Steps:
        # `zen-flow get` leaves the flows this says declare no lock out of the lines it reads.
        if out_of_line(None, False, None, (own, *(s.synchronization for s in steps))):
            return {}
        found: dict[str, Limits] = {}
        if needs := flow_needs(flow):
            found[FLOW] = {n.name: n.limit for n in needs}
        for s in steps:
            if s.matrix is None and (needs := needs_of(s)):
                found[s.name] = {n.name: n.limit for n in needs}
        return found

    return _DECLARED.get(steps, derive, own)


def expanded(flow: JobFlow, effective: Expand) -> JobFlow:
    """`flow` as the planner runs it when a matrix step of it declares locks (its items hold them), else
    `flow` itself: only those flows pay for an expansion."""
    steps = flow.spec.steps
    if not _MATRIX_LOCKS.get(steps, lambda: any(s.matrix is not None and needs_of(s) for s in steps)):
        return flow
    return effective(flow)


def phases_of(status: JobFlowStatus) -> dict[str, str]:
    """Each step's phase by name, and `FLOW` Running while the status says the flow holds its own locks."""
    phases = {s.name: s.phase for s in status.steps}
    if status.held_locks:
        phases[FLOW] = StepPhase.RUNNING
    return phases


def _running(flow: JobFlow, candidates: Iterable[str], live: Iterable[Job]) -> set[str]:
    """The `candidates` (declared steps) with a `live` Job (unfinished, not being deleted) of their next
    attempt (the first, or a rerun's, as `plan` takes a Job over)."""
    name, attempts = flow.metadata.name, {s.name: s.retry_count for s in flow.status.steps}
    names = {
        job_name(name, step, attempt): step
        for step in candidates
        if step != FLOW
        for attempt in {0, attempts.get(step) or 0}
    }
    if not names:
        return set()
    return {step for job in live if (step := names.get(job.metadata.name)) is not None}


def flow_locks(flow: JobFlow | None, jobs_for: JobsFor | None = None) -> FlowLocks | None:
    """`flow`'s (an effective flow's: `expanded`) holders and waiters; None when it has none (or it
    ended, or is being deleted). `jobs_for`: its cached Jobs by its UID (none: its status alone decides)."""
    if flow is None or ended(flow):
        return None
    found = declared(flow)
    if not found:
        return None
    status = flow.status
    phases = {s.name: s for s in status.steps}
    # Only a step the status shows neither holding nor ended may have a Job it does not record: a
    # 256-item matrix mostly done names few Jobs.
    unsure = [step for step in found if (s := phases.get(step)) is None or s.phase not in SETTLED]
    live = (
        []
        if jobs_for is None
        else [j for j in jobs_for(flow.metadata.uid) if not j.finished and not j.deleting]
    )
    running = _running(flow, unsure, live)
    holding: dict[str, Limits] = {}
    waiting: dict[str, Limits] = {}
    for step, limits in found.items():
        s = phases.get(step)
        if step == FLOW:
            if status.held_locks or live:  # a Job of it runs: the write saying it took them was lost
                holding[step] = limits
            elif flow_queued(flow) and not flow.spec.suspend:
                waiting[step] = limits
        elif s is not None and s.phase in HOLDING_PHASES:
            holding[step] = limits
        elif step in running:
            holding[step] = limits  # its Job runs: the status write recording its start was lost
        elif s is None:
            continue
        elif s.phase == "Pending" and lock_waiting(s.message) and not flow.spec.suspend:
            waiting[step] = limits
    if not holding and not waiting:
        return None
    return FlowLocks(flow.metadata.uid, order_of(flow), holding, waiting)
