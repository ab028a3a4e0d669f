"""The metrics of a status write whose answer was lost (a timeout, a 409 to the client's retry of the
applied write) are counted when the cache shows that the write landed, as its Events are told then: once,
never twice. ZenFlowJobFlowsFailing and ZenFlowStepsFailing read these counters, and answers get lost
mostly while the apiserver is in trouble. The controller runs its real worker loop against
FakeApiServer."""

from __future__ import annotations

import pytest
from controller_rig import Rig, applied_then

from zen_flow_dev.testing.apiserver_fake import conflict
from zen_flow_dev.testing.flows import job_step, make_flow

ONE = make_flow([job_step("a")], name="one", namespace="team")
RETRY = make_flow([job_step("a", retryPolicy={"limit": 2})], name="retry", namespace="team")
TEAM_SUCCEEDED = {"namespace": "team", "phase": "Succeeded"}


def sample(rig: Rig, family: str, labels: dict[str, str]) -> float:
    return rig.metrics.registry.get_sample_value(family, labels) or 0.0


def ended(rig: Rig) -> tuple[float, float, float]:
    """(flows completed, steps succeeded, flow durations observed), of namespace team."""
    return (
        sample(rig, "zen_flow_jobflow_completions_total", TEAM_SUCCEEDED),
        sample(rig, "zen_flow_step_transitions_total", TEAM_SUCCEEDED),
        sample(rig, "zen_flow_jobflow_duration_seconds_count", TEAM_SUCCEEDED),
    )


async def turns(rig: Rig, seconds: float = 1.0, n: int = 1) -> None:
    for _ in range(n):
        rig.api.sync()
        await rig.settle(seconds)


@pytest.mark.parametrize(
    "answer",
    [TimeoutError("answer lost"), conflict("one"), None],
    ids=["timeout", "409-to-retry", "answered"],
)
@pytest.mark.parametrize("rig", [ONE], indirect=True)
async def test_a_flow_end_is_counted_once_whatever_became_of_the_answer(
    rig: Rig, answer: BaseException | None
) -> None:
    await turns(rig, n=2)
    assert rig.step("a") == "Running"
    applied = applied_then(rig.api, answer) if answer is not None else ["answered"]
    rig.api.finish_job("team", rig.job("a"))
    await turns(rig)
    assert applied
    assert rig.flow.status.phase == "Succeeded"
    await turns(rig, 2, 3)
    assert "FlowSucceeded" in [reason for _, reason, _ in rig.api.events]
    assert ended(rig) == (1, 1, 1)


@pytest.mark.parametrize("rig", [RETRY], indirect=True)
async def test_a_retry_whose_write_answer_was_lost_is_counted_once(rig: Rig) -> None:
    await turns(rig, n=2)
    rig.api.finish_job("team", rig.job("a"), succeeded=False)
    await turns(rig)
    rig.api.sync()
    applied = applied_then(rig.api, TimeoutError("answer lost"))
    # The backoff (10 s) ends: the retry's Job is created, its write lands, the answer is lost.
    await turns(rig, 5, 6)
    step = rig.flow.status.step("a")
    assert applied
    assert step is not None
    assert step.retry_count == 1
    assert sample(rig, "zen_flow_step_retries_total", {"namespace": "team"}) == 1
