"""A condition's `lastTransitionTime` moves only when its status flips (planner.status.next_condition, which
writes every condition zen-flow keeps: the flow's, a CronJobFlow's, Archived, JobCreateFailing), so
`kubectl wait` and a dashboard see when a flow became Running, not when its message last changed; and a
condition that says what it said is the object it was, so a plan that changes nothing writes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from zen_flow.api.meta import Condition
from zen_flow.planner.status import next_condition

THEN = datetime(2025, 1, 1, tzinfo=UTC)
NOW = THEN + timedelta(hours=1)


def running(true: bool = True, reason: str = "FlowRunning", message: str = "running: a") -> Condition:
    return Condition(
        type="Running",
        status="True" if true else "False",
        reason=reason,
        message=message,
        last_transition_time=THEN,
        observed_generation=1,
    )


def test_a_flip_moves_the_transition_time_to_now() -> None:
    cond = next_condition("Running", False, "FlowSucceeded", "", 1, NOW, running())
    assert (cond.status, cond.reason, cond.message) == ("False", "FlowSucceeded", "")
    assert cond.last_transition_time == NOW


def test_a_new_reason_or_message_keeps_the_transition_time() -> None:
    cond = next_condition("Running", True, "FlowRunning", "running: a, b", 1, NOW, running())
    assert cond.message == "running: a, b"
    assert cond.last_transition_time == THEN
    cond = next_condition("Running", True, "StepsRunning", "running: a", 1, NOW, running())
    assert cond.reason == "StepsRunning"
    assert cond.last_transition_time == THEN


def test_the_same_condition_is_the_old_object_and_a_new_generation_is_recorded() -> None:
    before = running()
    assert next_condition("Running", True, "FlowRunning", "running: a", 1, NOW, before) is before
    cond = next_condition("Running", True, "FlowRunning", "running: a", 2, NOW, before)
    assert cond.observed_generation == 2
    assert cond.last_transition_time == THEN


def test_a_new_condition_or_one_never_timed_starts_now() -> None:
    assert next_condition("Running", True, "FlowRunning", "", 1, NOW, None).last_transition_time == NOW
    untimed = running().model_copy(update={"last_transition_time": None})
    cond = next_condition("Running", True, "FlowRunning", "running: a", 1, NOW, untimed)
    assert cond.last_transition_time == NOW


_CONDITIONS = st.builds(
    Condition,
    type=st.just("Running"),
    status=st.sampled_from(["True", "False", "Unknown"]),
    reason=st.sampled_from(["", "A", "B"]),
    message=st.sampled_from(["", "x", "y"]),
    last_transition_time=st.sampled_from([None, THEN]),
    observed_generation=st.sampled_from([None, 1, 2]),
)


@given(
    st.none() | _CONDITIONS,
    st.booleans(),
    st.sampled_from(["", "A", "B"]),
    st.sampled_from(["", "x", "y"]),
    st.sampled_from([None, 1, 2]),
)
def test_the_condition_says_what_it_is_told_and_keeps_its_time_while_its_status_holds(
    before: Condition | None, true: bool, reason: str, message: str, generation: int | None
) -> None:
    cond = next_condition("Running", true, reason, message, generation, NOW, before)
    status = "True" if true else "False"
    said = (cond.type, cond.status, cond.reason, cond.message, cond.observed_generation)
    assert said == ("Running", status, reason, message, generation)
    held = before is not None and before.status == status and before.last_transition_time is not None
    assert cond.last_transition_time == (THEN if held else NOW)
    assert (cond is before) == (before is not None and before == cond)
