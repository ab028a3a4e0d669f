"""A running step's Job that the controller's Job cache stops showing while it runs: no second attempt
runs beside it, and nothing deletes it. One whose managed-by label was removed (the Job informer is
label-selected) gets its label back and runs on, its result planned from; one a Job watch lost for a
while (a watch that hangs until its watchdog reopens it) runs on once the cache shows it again. The
controller runs its real worker loop against FakeApiServer, on a FakeClock."""

from __future__ import annotations

from controller_rig import Rig, running

from zen_flow.api.constants import LABEL_MANAGED_BY
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


async def test_a_job_relabelled_away_gets_its_label_back_and_its_success_is_kept() -> None:
    # Review item 2: the Job finished while unseen. Its result is planned from; it is never deleted,
    # nor run again.
    async with running(FLOW) as rig:
        first = await started(rig)
        rig.api.relabel("team", first, {LABEL_MANAGED_BY: "someone"})
        rig.api.finish_job("team", first)  # it succeeds, unseen
        said = await watch(rig, 30, first)
        assert said == []
        assert rig.api.job_labels[("team", first)] == {LABEL_MANAGED_BY: "zen-flow"}
        assert ("Warning", "JobRelabelled") in [(t, r) for t, r, _ in rig.api.events]
        assert (rig.step("a"), rig.api.job_creates) == ("Succeeded", [first])
        assert ("team", first) in rig.api.jobs


async def test_a_job_missing_from_the_cache_for_long_is_waited_for_with_a_warning_never_deleted() -> None:
    async with running(FLOW) as rig:
        first = await started(rig)
        rig.api.unwatched.add(("team", first))  # a Job watch stuck for good
        said = await watch(rig, 900, first)
        assert said == []
        assert (rig.step("a"), rig.api.job_creates) == ("Running", [first])
        assert ("team", first) in rig.api.jobs
        warned = [m for t, r, m in rig.api.events if (t, r) == ("Warning", "JobNotInCache")]
        assert len(warned) == 1
        assert warned[0].startswith(f"Job {first} exists")
        # The flow deleted meanwhile: nothing of it is kept.
        assert rig.controller._runner.unseen.kept() == 1
        rig.api.on_flow_deleted = rig.controller.on_flow_deleted  # as the flow informer calls it
        rig.api.remove_flow(rig.key)
        rig.api.sync()
        await rig.settle()
        assert rig.controller._runner.unseen.kept() == 0


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
