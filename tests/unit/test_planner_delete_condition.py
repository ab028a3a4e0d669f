"""Condition JobDeleteFailing (planner/delete_refusals.py): True naming the first refused Job while deletes
fail, False once a plan gets by without one, absent on a flow none of whose deletes ever failed; its
transition time moves only when it flips, and a first blip leaves it as it was."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from zen_flow.api.flow_status import JobFlowStatus
from zen_flow.planner import DeleteJob, DeleteRefusal, EventSpec, untold, with_delete_condition
from zen_flow.planner.lifecycle import ENDED_REASON, stray_events

T0 = datetime(2025, 1, 1, tzinfo=UTC)
FORBIDDEN = DeleteRefusal(
    DeleteJob("flow-a-1", "a", "timed out after 60s"),
    "DeleteForbidden",
    "Job flow-a-1 (step a) delete refused: 403 denied by policy freeze",
)
FAILED = DeleteRefusal(
    DeleteJob("flow-b-2", "b", ENDED_REASON), "DeleteFailed", "Job flow-b-2 (step b) delete failed, no answer"
)


def cond(status: JobFlowStatus) -> tuple[str, str, str, datetime | None] | None:
    found = next((c for c in status.conditions if c.type == "JobDeleteFailing"), None)
    if found is None:
        return None
    return found.status, found.reason, found.message or "", found.last_transition_time


def test_absent_until_a_delete_fails_then_true_then_false_once_they_pass() -> None:
    clean = JobFlowStatus(phase="Running")
    assert cond(with_delete_condition(clean, clean, [], T0, deleted=True)) is None
    failing = with_delete_condition(clean, clean, [FORBIDDEN, FAILED], T0)
    assert cond(failing) == (
        "True",
        "DeleteForbidden",
        f"{FORBIDDEN.message} (and 1 more) (retried with backoff)",
        T0,
    )
    # Still failing later: the transition time stays.
    later = T0 + timedelta(minutes=5)
    assert cond(with_delete_condition(failing, failing, [FORBIDDEN], later))[3] == T0
    passed = with_delete_condition(failing, failing, [], later, deleted=True)
    assert cond(passed) == ("False", "JobsDeleted", "", later)
    # The Job ended on its own, or someone else deleted it: nothing left to delete.
    assert cond(with_delete_condition(failing, failing, [], later))[:2] == ("False", "NoDeletesRefused")
    # False stays False, said once.
    assert cond(with_delete_condition(passed, passed, [], later + timedelta(minutes=1))) == cond(passed)


def test_a_first_blip_leaves_it_as_it_was() -> None:
    clean = JobFlowStatus(phase="Running")
    assert cond(with_delete_condition(clean, clean, [FAILED], T0, quiet=True)) is None
    failing = with_delete_condition(clean, clean, [FORBIDDEN], T0)
    planned = JobFlowStatus(phase="Running")  # the planner never names it: carried on
    assert cond(with_delete_condition(failing, planned, [FAILED], T0, quiet=True)) == cond(failing)


def test_a_stray_whose_delete_failed_is_not_told_as_deleted() -> None:
    told = EventSpec("Normal", "StepSucceeded", "step a succeeded")
    strays = stray_events([FAILED.delete, DeleteJob("flow-c-0", "c", ENDED_REASON)])
    kept = untold((told, *strays), [FORBIDDEN, FAILED])
    assert kept == (told, strays[1])


def test_a_true_conditions_message_stays_while_its_reason_and_its_job_do() -> None:
    """The answer's text varies (a webhook's request id, a lost answer's error, how many more): each
    status written brings the flow back at once past the backoff, so the same refusal of the same Job is
    not written again; another Job or another reason is."""
    clean = JobFlowStatus(phase="Running")
    failing = with_delete_condition(clean, clean, [FORBIDDEN], T0)
    later = T0 + timedelta(minutes=1)
    varied = replace(FORBIDDEN, message=f"{FORBIDDEN.message} (request 7f3a)")
    assert with_delete_condition(failing, failing, [varied, FAILED], later) is failing
    # Its Job went, another is still refused: that one is named now.
    other = with_delete_condition(failing, failing, [FAILED], later)
    assert cond(other) == ("True", "DeleteFailed", f"{FAILED.message} (retried with backoff)", T0)
    # The same Job, another answer's kind: said.
    blip = DeleteRefusal(FORBIDDEN.delete, "DeleteFailed", "Job flow-a-1 (step a) delete failed, no answer")
    assert cond(with_delete_condition(failing, failing, [blip], later))[1:3] == (
        "DeleteFailed",
        f"{blip.message} (retried with backoff)",
    )
    # A Job whose name begins with the named one's is another Job.
    longer = DeleteRefusal(DeleteJob("flow-a-10", "a", ""), "DeleteForbidden", "Job flow-a-10 (step a) ...")
    assert cond(with_delete_condition(failing, failing, [longer], later))[2].startswith("Job flow-a-10 ")
