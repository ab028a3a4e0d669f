"""A running step's Job that the controller's Job cache stops showing while it runs: no second attempt
runs beside it. One whose managed-by label was removed (the Job informer is label-selected) is waited
for, then deleted, and only then retried, its step saying why; one a Job watch lost for a while (a watch
that hangs until its watchdog reopens it) runs on once the cache shows it again. The controller runs
its real worker loop against FakeApiServer, on a FakeClock."""

from __future__ import annotations

from controller_rig import Rig, running

from zen_flow.api.constants import LABEL_MANAGED_BY
from zen_flow.controller.unseen_jobs import CACHE_LAG_WAIT_SECONDS
from zen_flow_dev.testing.flows import job_step, make_flow

RETRIES = {"limit": 2, "backoff": {"duration": "10s", "type": "Fixed"}}
FLOW = make_flow([job_step("a", retryPolicy=RETRIES)], name="nightly", namespace="team")


async def started(rig: Rig) -> str:
    """The name of step a's first Job, once the status records it and the cache shows both."""
    rig.api.sync()
    await rig.settle()
    rig.api.sync()
    await rig.settle()
    assert rig.step("a") == "Running"
    return rig.job("a")


async def watch(rig: Rig, seconds: float, first: str) -> list[str]:
    """`seconds` of the controller at work, the caches in step with what they may show; step a's
    messages as stored, in order. No two of its attempts' Jobs ever exist at once."""
    said: list[str] = []
    for _ in range(int(seconds)):
        await rig.settle(1)
        rig.api.sync()
        attempts = sorted(name for _, name in rig.api.jobs if name.startswith(first))
        assert len(attempts) <= 1, f"{attempts} run at once"
        step = rig.flow.status.step("a")
        message = step.message if step is not None else None
        if message and (not said or said[-1] != message):
            said.append(message)
    return said


async def test_a_job_relabelled_away_is_deleted_before_its_retry_and_the_step_says_why() -> None:
    async with running(FLOW) as rig:
        first = await started(rig)
        rig.api.relabel("team", first, {LABEL_MANAGED_BY: "someone"})
        said = await watch(rig, CACHE_LAG_WAIT_SECONDS - 10, first)
        assert said == []
        assert (rig.step("a"), rig.api.job_creates) == ("Running", [first])  # waited for, not run again
        said = await watch(rig, 60, first)
        assert said[0] == (
            f"attempt 1 failed: Job {first} deleted: it ran but the controller could not see it "
            f"(label {LABEL_MANAGED_BY} is not zen-flow)"
        )
        assert rig.api.job_creates == [first, f"{first}-r1"]
        assert ("team", first) not in rig.api.jobs
        assert rig.step("a") == "Running"


async def test_a_job_watch_that_lost_a_job_for_minutes_and_heals_leaves_it_running_alone() -> None:
    async with running(FLOW) as rig:
        first = await started(rig)
        rig.api.unwatched.add(("team", first))  # a hung watch: the next relist shows it again
        said = await watch(rig, 200, first)
        rig.api.unwatched.clear()
        said += await watch(rig, 5, first)
        rig.api.finish_job("team", first)
        said += await watch(rig, 5, first)
        assert said == []
        assert rig.step("a") == "Succeeded"
        assert rig.api.job_creates == [first]
