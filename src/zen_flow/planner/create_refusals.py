"""A plan written without the Job creates the apiserver refused for now (403: a ResourceQuota, an admission
policy, missing RBAC; a 5xx: a failing webhook; no answer), and the condition that says so.

Such a create is tried again with backoff, but the rest of the plan stands: the Jobs it did create run,
and its deletes went out (a succeeded step's Job deleted by jobRetention is what frees a `count/jobs.batch`
quota). Writing nothing until every create passes left the flow's status stale while its Jobs ran: their
start times taken from whichever later plan adopted them (a timeout counted from then), the flow's start
unrecorded (admission let its steps be edited under running Jobs), dependents and slots acting on it.

So the status is written as the plan made it, but for the refused steps: each keeps the entry it had
(Pending, or Retrying for a retry's attempt) with a message naming the refusal, and a flow that nothing
started yet stays Pending and unstarted. Condition JobCreateFailing is True while creates are refused
and False once a plan's creates pass; the planner never names it, so every status written carries it on
(`with_create_condition`, by planner.failing_condition's rule: its message as first written while the
same step is refused for the same reason).

A refused step's message is a note before what it said (a failed attempt's error), taken off once its
create goes out (`unnoted`, read by planner.starts when it starts the next attempt) or no plan tries it
any more (a suspended flow). A step whose Job name is held by one on its way out (being deleted, a
deleted flow's awaiting the garbage collector: REASON_NAME_TAKEN) is held back the same way, saying
whose, but sets no condition: nothing refuses its create, it waits. The same kind of answer in other
words leaves it as written (each write brings the flow back at once, past the backoff). A first 5xx or
lost answer is usually a blip the retry gets past: it holds its step back but says nothing (`quiet`), so
a one-off does not flap the condition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from zen_flow.api.constants import JOB_CREATE_FAILING, FlowPhase, StepPhase
from zen_flow.api.flow_status import JobFlowStatus, StepStatus
from zen_flow.api.jobflow import JobFlow
from zen_flow.planner.actions import EventSpec, Plan
from zen_flow.planner.events import WARNING
from zen_flow.planner.failing_condition import FailingCondition, Refused, with_failing
from zen_flow.planner.progress import REASON_STALLED, judge, last_progress, phases_changed, stalled
from zen_flow.planner.retry_messages import failure_kept
from zen_flow.planner.status import (
    MAX_CONDITION_MESSAGE,
    MAX_FLOW_MESSAGE,
    conditions,
    cut,
    listing,
    progress,
    summary,
)
from zen_flow.planner.status_assembly import flow_message_of
from zen_flow.planner.steps import MAX_MESSAGE, bound
from zen_flow.planner.timing import until

__all__ = ["JOB_CREATE_FAILING", "CreateRefusal", "refused_creates", "unnoted", "with_create_condition"]

REASON_CREATE_FORBIDDEN = "CreateForbidden"  # 403: a quota, a policy, RBAC (also the Warning event's)
REASON_CREATE_FAILED = "CreateFailed"  # a 5xx, no answer (also the Warning event's, when repeated)
REASON_JOBS_CREATED = "JobsCreated"  # False: the last plan's creates passed
# A name held by one on its way out (being deleted; a deleted flow's awaiting the garbage collector): its
# step waits like a refused one, but no create is failing (controller/executor.py JobNameTaken).
REASON_NAME_TAKEN = "JobNameTaken"
REASON_NONE_REFUSED = "NoCreatesRefused"  # False: the last plan created nothing, and nothing was refused
CREATE_FAILING = FailingCondition(JOB_CREATE_FAILING, REASON_JOBS_CREATED, REASON_NONE_REFUSED)
RETRIED = "retried with backoff"
# How a refused step's message starts (controller/executor.py `refusal`), and what joins what it said before.
NOTES = (
    "Job create refused: ",
    "JobFlow create refused: ",
    "Job create failed, ",
    "JobFlow create failed, ",
    "Job create waits: ",
    "JobFlow create waits: ",
)
BEFORE = "; before: "


@dataclass(frozen=True)
class CreateRefusal:
    """A step whose Job (or child flow) create failed and is tried again: `reason` is the condition's,
    `message` the step's (`Job create refused: 403 ...`)."""

    step: str
    reason: str
    message: str


def unnoted(message: str | None) -> str | None:
    """A step's `message` without a refusal's note before it."""
    if message is None or not message.startswith(NOTES):
        return message
    return message.partition(BEFORE)[2] or None


def refused_creates(
    flow: JobFlow,
    planned: Plan,
    refusals: Sequence[CreateRefusal],
    now: datetime,
    *,
    deadline: float = 0.0,
    quiet: bool = False,
) -> Plan:
    """`planned` without the starts of the refused steps: its status, and its events of those steps (a
    StepStarted that never happened, a FlowStarted when nothing started). `deadline`: the progress
    deadline, judged from the last real phase change (each retry plans the refused start as one).
    `quiet`: a first blip, the refused steps keep their messages and the flow's says nothing of it (not
    of a step whose name is taken, REASON_NAME_TAKEN: it waits for a Job on its way out, saying so)."""
    if not refusals:
        return planned
    old, new = flow.status, planned.status
    why = {r.step: r.message for r in refusals}
    taken = {r.step for r in refusals if r.reason == REASON_NAME_TAKEN}
    steps = tuple(
        _held(old.step(s.name), s, why[s.name], quiet and s.name not in taken) if s.name in why else s
        for s in new.steps
    )
    # Begun: a step moved in this plan beside the refused ones (started, skipped, reached a gate), or the
    # flow holds its own locks; a rerun's settled steps, kept from before, do not count.
    before = {s.name: s.phase for s in old.steps}
    begun = (
        old.start_time is not None
        or bool(new.held_locks)
        or any(s.phase != before.get(s.name, StepPhase.PENDING) for s in steps if s.name not in why)
    )
    phase = FlowPhase(new.phase) if new.phase else FlowPhase.PENDING
    if not begun:
        phase = FlowPhase.PENDING
    elif phase == FlowPhase.RUNNING and not _moving(steps):
        gated = any(s.phase == StepPhase.PENDING_APPROVAL for s in steps)
        phase = FlowPhase.PAUSED if gated else FlowPhase.RUNNING
    names = [r.step for r in refusals if r.step not in taken]
    said = f"Job create refused: {listing(names)} ({RETRIED})" if names and not quiet else ""
    if taken:  # the names held by Jobs on their way out: the steps' messages say whose
        waits = f"Job name taken by one being deleted: {listing([s for s in why if s in taken])} (waiting)"
        said = f"{said}; {waits}" if said else waits
    if any(s.phase in (StepPhase.FAILED, StepPhase.PENDING_APPROVAL) for s in steps):
        # What the plan said of a failure or a gate's approvals, which only it knows how to say.
        rest = new.message or ""
    else:
        rest = flow_message_of(flow, phase, steps, None)
    message = cut(f"{said}; {rest}" if said and rest else said or rest or "", MAX_FLOW_MESSAGE)
    counts = progress(steps)
    update: dict[str, Any] = {
        "steps": steps,
        "phase": phase.value,
        "message": message,
        "progress": counts,
        "progress_summary": summary(counts),
    }
    # The times the plan set for the refused starts, at its `now`: kept, each retry would write again
    # (and its watch event bring the next at once, not after the backoff).
    kept = last_progress(old, phase, steps, now)
    update["last_progress_time"] = kept
    stall, due = judge(phase, steps, kept, deadline, now)
    if not begun or not phases_changed(old, phase, steps):
        update["estimated_completion_time"] = old.estimated_completion_time
    if not begun:
        update["start_time"] = None
    if phase.value != new.phase or stall.stalled is not None:
        # Only from a plan that started something (Running), to Pending or Paused: not queued, not stalled.
        update["conditions"] = conditions(
            old.conditions,
            phase,
            message=message,
            failed_reason="",
            waiting=[s.name for s in steps if s.phase == StepPhase.PENDING_APPROVAL],
            generation=new.observed_generation,
            now=now,
            stalled=stall.stalled,
        )
    elif message != new.message:  # the conditions that carry the flow's message carry this one
        said_before = cut(new.message or "", MAX_CONDITION_MESSAGE)
        update["conditions"] = tuple(
            c.model_copy(update={"message": cut(message, MAX_CONDITION_MESSAGE)})
            if c.message and c.message == said_before
            else c
            for c in new.conditions
        )
    status = new.model_copy(update=update)
    events = tuple(
        e
        for e in planned.events
        if e.acted
        or (
            e.step not in why
            and (begun or e.reason != "FlowStarted")
            and (stall.stalled is None or e.reason not in ("FlowProgressing", REASON_STALLED))
        )
    )
    if stall.stalled is not None and stalled(old) is None:
        events = (*events, EventSpec(WARNING, REASON_STALLED, stall.stalled))
    wake = planned.requeue_after
    if due is not None:
        wake = min(until(now, due), wake) if wake is not None else until(now, due)
    return replace(planned, status=status, events=events, requeue_after=wake)


def with_create_condition(
    old: JobFlowStatus,
    status: JobFlowStatus,
    refusals: Sequence[CreateRefusal],
    now: datetime,
    *,
    created: bool = False,
    quiet: bool = False,
    taken: Sequence[str] = (),
) -> JobFlowStatus:
    """`status` with condition JobCreateFailing (planner.failing_condition): True naming the first
    refusal, False once a plan of a flow that had it got by without one (JobsCreated when it `created`
    something). `quiet`: as it was (a first blip). The notes of steps no longer refused are taken off
    their messages (not those of the steps `taken` holds back: a name held by one on its way out)."""
    if quiet:
        return with_failing(old, status, CREATE_FAILING, None, now, quiet=True)
    before = next((c for c in old.conditions if c.type == JOB_CREATE_FAILING), None)
    if before is not None and before.status == "True":
        status = _unnote(status, {r.step for r in refusals} | set(taken))
    refused = None
    if refusals:
        first = refusals[0]
        steps = [r.step for r in refusals]
        named = f"step {first.step}" if len(steps) == 1 else f"steps {listing(steps)}"
        # A message naming one of these steps first: `step b: ...`, `steps b, c: ...`.
        leads = tuple(lead for s in steps for lead in (f"step {s}: ", f"steps {s}, "))
        refused = Refused(first.reason, f"{named}: {first.message} ({RETRIED})", leads)
    return with_failing(old, status, CREATE_FAILING, refused, now, passed=created)


def _unnote(status: JobFlowStatus, refused: set[str]) -> JobFlowStatus:
    steps = tuple(
        s if s.name in refused or s.message is None or not s.message.startswith(NOTES)
        else replace(s, message=unnoted(s.message))
        for s in status.steps
    )  # fmt: skip
    if all(a is b for a, b in zip(steps, status.steps, strict=True)):
        return status
    return status.model_copy(update={"steps": steps})


def _held(before: StepStatus | None, planned: StepStatus, message: str, quiet: bool) -> StepStatus:
    """The refused step as it was before this plan (Pending, or Retrying), saying why it did not start
    before what it said (a failed attempt's error)."""
    held = before if before is not None else StepStatus(name=planned.name)
    if quiet or (held.message is not None and _kind(held.message) == _kind(message)):
        # A first blip; or the same kind of answer as the note says, in other words (a quota's usage, a
        # webhook's request id): as written, since each write brings the flow back past the backoff.
        return held
    said = unnoted(held.message)
    if not said:
        return replace(held, message=bound(message))
    # The apiserver's answer is long (a quota's, a webhook's) and said in condition JobCreateFailing: the
    # note is cut first, so the failure keeps its start up to its exit code (its next attempt says it).
    said = " ".join(said.split())
    note = bound(message, MAX_MESSAGE - len(BEFORE) - failure_kept(said))
    return replace(held, message=f"{note}{BEFORE}{bound(said, MAX_MESSAGE - len(note) - len(BEFORE))}")


def _kind(message: str) -> tuple[str, ...] | None:
    """The kind of answer a refusal's note says (`Job create refused: 403`, `Job create failed, no`),
    None for a message that is no note."""
    return tuple(message.split(" ", 4)[:4]) if message.startswith(NOTES) else None


def _moving(steps: Sequence[StepStatus]) -> bool:
    return any(s.phase in (StepPhase.RUNNING, StepPhase.RETRYING) for s in steps)
