"""The finally grace: `spec.executionPolicy.finallyGraceSeconds`, the last seconds of the flow's
`activeDeadlineSeconds` kept for its finally steps (Tekton's `timeouts.tasks` beside `timeouts.finally`).

At the grace point, `status.startTime + activeDeadlineSeconds - finallyGraceSeconds`, the steps that are
not finally end as a graceful stop ends them (planner.finale: running Jobs deleted with background
propagation, running steps Failed, the others Skipped, no retry), and the finally steps start one status
write later with `flow.outcome` Failed; at the deadline itself whatever still runs stops as without a
grace (the stop now). The flow ends Failed, reason DeadlineExceeded, whatever its finally steps did.

Nothing is remembered but the status: every plan asks the clock whether the point has come (`closing`),
and reads back from the steps' messages (`ended_by_grace`) whether the grace ended a step of this run, as
a stop is read back (planner.interventions.stopped_in_run). A lost status write, a restart, so end the
same steps again for the same cause. A flow with no finally step has nothing to keep the time for: the
grace changes nothing there (admission warns). Unset, nothing here is asked, and nothing changes.
"""

from __future__ import annotations

from datetime import datetime

from zen_flow.api.constants import StepPhase
from zen_flow.api.flow_status import StepStatus
from zen_flow.api.jobflow import ExecutionPolicy
from zen_flow.planner.steps import NO_DECISION, NOT_STARTED
from zen_flow.planner.timing import after

# How the message of a step the grace ended begins (after `not started: ` or `no decision: ` for one
# it Skipped): no Job failure, skip or stop says this (`flow deadline exceeded` is the stop now's).
GRACE_MARK = "flow deadline: the last "
_GRACE_MESSAGES = (GRACE_MARK, NOT_STARTED + GRACE_MARK, NO_DECISION + GRACE_MARK)
# The Warning event of the plan whose grace ended the other steps (the flow's end says
# FlowDeadlineExceeded then).
GRACE_EVENT = "FlowDeadlineGrace"


def grace_of(policy: ExecutionPolicy | None) -> tuple[int, int] | None:
    """(activeDeadlineSeconds, finallyGraceSeconds) when both are set and the grace is shorter than the
    deadline (admission refuses any other grace; one that got past it changes nothing), else None."""
    if policy is None or policy.finally_grace_seconds is None or policy.active_deadline_seconds is None:
        return None
    deadline, grace = policy.active_deadline_seconds, policy.finally_grace_seconds
    return (deadline, grace) if 0 < grace < deadline else None


def grace_point(policy: ExecutionPolicy | None, start: datetime | None) -> datetime | None:
    """When the steps that are not finally end for the finally steps (None: no grace, or not started)."""
    found = grace_of(policy)
    if found is None or start is None:
        return None
    deadline, grace = found
    return after(start, deadline - grace)


def grace_message(policy: ExecutionPolicy | None) -> str:
    """What a step the grace ended says, and the flow it fails."""
    deadline, grace = grace_of(policy) or (0, 0)
    return f"{GRACE_MARK}{grace}s of activeDeadlineSeconds ({deadline}s) are kept for the finally steps"


def closing(policy: ExecutionPolicy | None, start: datetime | None, now: datetime) -> str | None:
    """Why the steps that are not finally must end now, the grace point having come; else None. Asked
    only of a flow with finally steps."""
    point = grace_point(policy, start)
    return grace_message(policy) if point is not None and now >= point else None


def ended_by_grace(step: StepStatus, run_start: datetime | None) -> bool:
    """Did the grace end this step in the current run (its message; it ended no earlier than the run
    began: `run_start`, the status's startTime, which a rerun resets)? A step a partial rerun kept keeps
    what an earlier run's grace wrote."""
    message = step.message
    return (
        message is not None
        and step.phase in (StepPhase.FAILED, StepPhase.SKIPPED)
        and message.startswith(_GRACE_MESSAGES)
        and (run_start is None or (step.completion_time is not None and step.completion_time >= run_start))
    )
