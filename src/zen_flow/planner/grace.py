"""The finally grace: `spec.executionPolicy.finallyGraceSeconds`, the last seconds of the flow's
`activeDeadlineSeconds` kept for its finally steps (Tekton's `timeouts.tasks` beside `timeouts.finally`).

At the grace point, `status.startTime + activeDeadlineSeconds - finallyGraceSeconds`, the steps that are
not finally end as a graceful stop ends them (planner.finale: running Jobs deleted with background
propagation, running steps Failed, the others Skipped, no retry), and the finally steps start one status
write later with `flow.outcome` Failed; at the deadline itself whatever still runs stops as without a
grace (the stop now). The flow ends Failed, reason DeadlineExceeded, whatever its finally steps did.

Nothing is remembered but the status: every plan asks the clock whether the point has come (`closing`),
and reads back from the messages of the steps that are not finally (`GRACE_MESSAGES`, `ended_in_run`)
whether the grace ended a step of this run, as a stop is read back (planner.interventions). A lost status
write, a restart, so end the same steps again for the same cause. A flow with no finally step has
nothing to keep the time for: the grace changes nothing there (admission warns). Unset, nothing here is
asked, and nothing changes.
"""

from __future__ import annotations

from datetime import datetime

from zen_flow.api.jobflow import ExecutionPolicy
from zen_flow.planner.steps import ended_early
from zen_flow.planner.timing import after

# How the message of a step the grace ended begins (after `not started: ` or `no decision: ` for one
# it Skipped): no Job failure, skip or stop says this (`flow deadline exceeded` is the stop now's).
GRACE_MARK = "flow deadline: the last "
GRACE_MESSAGES = ended_early(GRACE_MARK)
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
