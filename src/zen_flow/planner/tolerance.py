"""Which failures `allowFailure` tolerates (API.md "Tolerated failures"): the step's own, once its
retries are spent (its Job's, its gate's rejection or timeout, its child flow's). Not a step the flow's
end cut short: a stop (now or graceful), the flow deadline or its finally grace, a newer Replace flow,
fail-fast cancelling its pending retry ("stops and deadlines are not step failures"), a flow-wide
failure (an invalid spec, a Job the apiserver refused, ...: planner.lifecycle `fail_invalid`). Each of
those says so at the start of the step's message (`CUT_SHORT`), so a failure of the step's own written
in the very status that ends the flow (one completionTime for both) is told apart from one they caused.

One rule, read from the status alone, for the Normal event StepFailureAllowed (planner.events), the
CloudEvents' `allowed` (planner.cloud_events) and `zen-flow get`'s `Failed (allowed)` (cli.render): a
tolerated failure must never be said of a step a stop ended.
"""

from __future__ import annotations

from collections.abc import Mapping

from zen_flow.api.constants import ConditionType, FlowPhase, StepPhase
from zen_flow.api.flow_status import JobFlowStatus, StepStatus
from zen_flow.api.jobflow import Step
from zen_flow.planner.concurrency import REPLACED_MARK
from zen_flow.planner.grace import GRACE_MARK
from zen_flow.planner.interventions import STOP_MARK
from zen_flow.planner.lifecycle import FLOW_FAILED_MARK, INVALID_CAUSE
from zen_flow.planner.plan_state import DEADLINE_EXCEEDED
from zen_flow.planner.status import (
    REASON_DEADLINE,
    REASON_FINALLY_FAILED,
    REASON_INVALID,
    REASON_REPLACED,
    REASON_STEP_FAILED,
    REASON_STOPPED,
)
from zen_flow.planner.steps import cause_of

# How the message of a retrying step begins when fail-fast cancels its retry (planner.finale): the flow
# is failing for another step, so it never had its last attempt.
NOT_RETRIED = "not retried, the flow is failing"
# How the message of a step the flow's end cut short begins (a Retrying one's: that, `; `, its last
# attempt's message): a stop, the grace, the deadline, a replacement, fail-fast, a flow-wide failure.
CUT_SHORT = (STOP_MARK, GRACE_MARK, DEADLINE_EXCEEDED, REPLACED_MARK, NOT_RETRIED, FLOW_FAILED_MARK)
# The Failed reasons of a flow whose steps' messages say what cut them short (`CUT_SHORT`); any other
# reason is a flow-wide failure's.
_SAID_BY_STEPS = frozenset(
    {REASON_STEP_FAILED, REASON_FINALLY_FAILED, REASON_STOPPED, REASON_DEADLINE, REASON_REPLACED}
)


def tolerated(spec: Step | None, step: StepStatus, flow: JobFlowStatus) -> bool:
    """Is `step`'s failure one its `allowFailure` tolerates, in the flow whose status is `flow`?"""
    if spec is None or not spec.allow_failure or step.phase != StepPhase.FAILED:
        return False
    if (step.message or "").startswith(CUT_SHORT):
        return False
    return not _ended_with_flow(step, flow)


def _ended_with_flow(step: StepStatus, flow: JobFlowStatus) -> bool:
    """Did a flow-wide failure end `step` in a status written before `FLOW_FAILED_MARK` existed? Such a
    status is still stored (a finished flow within its TTL, an archive record, a child's parent reading
    it): its ended steps said only the failure's cause (`fail_invalid`: `the flow spec is invalid` or the
    failure's prefix, a retrying step's `; ...` after it), in the write that ended the flow. A step of a
    newer status without the mark failed on its own, and its message is its own cause."""
    if flow.phase != FlowPhase.FAILED or flow.completion_time is None:
        return False
    if step.completion_time != flow.completion_time:
        return False
    cond = next((c for c in flow.conditions if c.type == ConditionType.FAILED), None)
    if cond is None or cond.reason in _SAID_BY_STEPS:
        return False
    cause = INVALID_CAUSE if cond.reason == REASON_INVALID else (cond.message or "").partition(": ")[0]
    return cause_of(step.message or "") == cause


def tolerated_steps(flow: JobFlowStatus, specs: Mapping[str, Step]) -> frozenset[str]:
    """The steps of `flow` whose failure is tolerated (`tolerated`), by name."""
    return frozenset(s.name for s in flow.steps if tolerated(specs.get(s.name), s, flow))
