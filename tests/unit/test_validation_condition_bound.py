"""The status size bound admission checks a spec against (validation/size.py) counts one condition of
every type a flow's status can hold: the planner's, Archived, JobCreateFailing and JobDeleteFailing.
Counting fewer let a spec through whose worst-case status could outgrow the object limit by their size."""

from __future__ import annotations

from datetime import UTC, datetime

from zen_flow.api.constants import CONDITION_TYPES, FlowPhase
from zen_flow.api.flow_status import JobFlowStatus
from zen_flow.planner import (
    CreateRefusal,
    DeleteJob,
    DeleteRefusal,
    with_create_condition,
    with_delete_condition,
)
from zen_flow.planner.archiving import with_condition
from zen_flow.planner.status import MAX_CONDITION_MESSAGE, conditions
from zen_flow.validation.size import CONDITION_BYTES, FLOW_STATUS_BYTES

NOW = datetime(2025, 1, 1, tzinfo=UTC)
LONG = "x" * 5000


def every_condition() -> JobFlowStatus:
    """A status holding each condition anything writes, each with the longest message it takes."""
    planned = conditions(
        (),
        FlowPhase.RUNNING,
        message=LONG,
        failed_reason="Failed",
        waiting=("gate",),
        generation=1,
        now=NOW,
        queued=LONG,
        stalled=LONG,
    )
    status = JobFlowStatus(conditions=planned)
    status = with_condition(status, True, "Archived", LONG, 1, NOW)
    status = with_create_condition(status, status, [CreateRefusal("a", "CreateForbidden", LONG)], NOW)
    refused = DeleteRefusal(DeleteJob("x", "a", "timed out after 60s"), "DeleteForbidden", LONG)
    return with_delete_condition(status, status, [refused], NOW)


def test_the_bound_counts_one_condition_of_each_type_any_status_holds() -> None:
    held = {c.type for c in every_condition().conditions}
    assert held == set(CONDITION_TYPES)
    assert len(CONDITION_TYPES) == len(held)
    assert len(CONDITION_TYPES) * CONDITION_BYTES <= FLOW_STATUS_BYTES


def test_a_condition_fits_its_share_of_the_bound() -> None:
    for cond in every_condition().conditions:
        assert len(cond.message or "") <= MAX_CONDITION_MESSAGE
        assert len(cond.model_dump_json()) <= CONDITION_BYTES
