"""The progress deadline: a Running flow none of whose steps changed phase for too long is not
progressing (condition Progressing=False, reason ProgressDeadlineExceeded), like a Deployment past its
progressDeadlineSeconds.

Metrics carry no flow names (cardinality), so this condition is how an operator finds the one flow that
is stuck: the controller counts such flows per namespace (zen_flow_jobflows_not_progressing) and the
condition names the flow, the steps it waits on and since when. Nothing is stopped: a step may
legitimately run longer than the deadline; the flow goes on and the condition turns True again at the
next step transition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from zen_flow.api.constants import ConditionType, FlowPhase, StepPhase
from zen_flow.api.flow_status import JobFlowStatus, StepStatus
from zen_flow.api.meta import format_time
from zen_flow.planner.timing import after, utc

REASON_PROGRESSING = "StepsProgressing"
REASON_STALLED = "ProgressDeadlineExceeded"


@dataclass(frozen=True)
class Stall:
    """The Progressing condition's inputs: when a step last changed phase, and why (if) that is too long
    ago."""

    last_progress: datetime | None
    stalled: str | None = None  # the condition's message when Progressing is False for lack of progress


def phases_changed(old: JobFlowStatus, phase: FlowPhase, steps: Sequence[StepStatus]) -> bool:
    """Did the flow or one of its steps change phase between `old` and this plan?"""
    if old.phase != phase.value or len(old.steps) != len(steps):
        return True
    if steps is old.steps:  # the plan changed no step (`Works.statuses`)
        return False
    # Most entries of a long flow are the old objects themselves: identity first.
    return any(
        a is not b and (a.name != b.name or a.phase != b.phase) for a, b in zip(old.steps, steps, strict=True)
    )


def stalled(status: JobFlowStatus) -> str | None:
    """The message of a Progressing=False ProgressDeadlineExceeded condition, or None."""
    cond = next((c for c in status.conditions if c.type == ConditionType.PROGRESSING), None)
    return cond.message or "" if cond is not None and cond.reason == REASON_STALLED else None


def last_progress(
    old: JobFlowStatus, phase: FlowPhase, steps: Sequence[StepStatus], now: datetime
) -> datetime | None:
    """`now` when the flow or one of its steps changes phase in this plan (or the flow starts); else the
    time recorded before. A status written before the field existed falls back to its latest step
    timestamp, so an upgrade does not declare every long-running flow stuck."""
    if phase == FlowPhase.PENDING:
        return old.last_progress_time
    if phases_changed(old, phase, steps):
        return now
    if old.last_progress_time is not None:
        return old.last_progress_time
    seen = [t for s in old.steps for t in (s.start_time, s.completion_time) if t is not None]
    if old.start_time is not None:
        seen.append(old.start_time)
    return max((utc(t) for t in seen), default=now)


def judge(
    phase: FlowPhase, steps: Sequence[StepStatus], last: datetime | None, deadline: float, now: datetime
) -> tuple[Stall, datetime | None]:
    """(the verdict, when to look again): a Running flow with a deadline (> 0) is stalled once `deadline`
    seconds passed since `last`; before that, the planner wakes up at that instant to say so."""
    if phase != FlowPhase.RUNNING or deadline <= 0 or last is None:
        return Stall(last), None
    due = after(last, deadline)
    if now < due:
        return Stall(last), due
    waiting = [s.name for s in steps if s.phase in (StepPhase.RUNNING, StepPhase.RETRYING)]
    on = f"; still running: {', '.join(waiting[:5])}{' ...' if len(waiting) > 5 else ''}" if waiting else ""
    message = f"no step changed phase for {_span(deadline)} (last change {format_time(last)}){on}"
    return Stall(last, message), None


def _span(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts) or "0s"
